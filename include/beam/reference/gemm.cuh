//! @file
//! Host reference of the grouped GEMM and its epilogues, in double:
//!   acc[r][j] = Σ_k A(r)[k] · B_e[j][k]  for the rows r of group e, [offsets[e], offsets[e+1])
//!   swiglu:     C[r][i] = silu(acc[r][i]) · acc[r][N/2 + i]
//!   scale_rows: C[r][j] = s_r · acc[r][j]
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "beam/core/math.cuh"

namespace beam::reference {

//! acc `[offsets.back(), N]` of a grouped GEMM. Row r of A is `a + source(r)·a_stride`, with
//! source(r) = row_sources[r] when given (a gather) else r; B_e row j is
//! `b + e·N·K + j·K` (row-major `[E, N, K]`).
//! @throws std::invalid_argument for N or K < 1, or offsets empty, not starting at 0 or decreasing
template <class Real>
std::vector<double> grouped_matmul_nt(const Real* a, int64_t a_stride, const int64_t* row_sources, const Real* b,
                                      int64_t n, int64_t k, const std::vector<int32_t>& offsets) {
  if (n < 1 || k < 1 || offsets.empty() || offsets.front() != 0 ||
      !std::is_sorted(offsets.begin(), offsets.end())) {
    throw std::invalid_argument("grouped_matmul_nt: bad N, K or offsets (empty, not from 0, decreasing)");
  }
  std::vector<double> acc(static_cast<size_t>(int64_t(offsets.back()) * n));
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    const Real* b_e = b + int64_t(e) * n * k;
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
      const Real* row = a + (row_sources ? row_sources[r] : r) * a_stride;
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0.0;
        for (int64_t i = 0; i < k; ++i) sum += double(row[i]) * double(b_e[j * k + i]);
        acc[size_t(r * n + j)] = sum;
      }
    }
  }
  return acc;
}

//! The SwiGLU epilogue on acc `[rows, N]`: `[rows, N/2]`, gate columns first.
//! @throws std::invalid_argument unless N is even and positive
inline std::vector<double> swiglu_columns(const std::vector<double>& acc, int64_t n) {
  if (n < 2 || n % 2 != 0) throw std::invalid_argument("swiglu_columns: N must be even");
  const int64_t rows = int64_t(acc.size()) / n, half = n / 2;
  std::vector<double> out(static_cast<size_t>(rows * half));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < half; ++i) out[size_t(r * half + i)] = silu(acc[size_t(r * n + i)]) * acc[size_t(r * n + half + i)];
  }
  return out;
}

}  // namespace beam::reference
