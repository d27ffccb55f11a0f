//! @file
//! Host reference of the grouped GEMM and its epilogues, in double:
//!   acc[r][j] = Σ_k A(r)[k] · B_e[j][k]  for the rows r of group e, [offsets[e], offsets[e+1])
//!   swiglu:     C[r][i] = silu(acc[r][i]) · acc[r][N/2 + i]
//!   scale_rows: C[r][j] = s_r · acc[r][j]
//! the weight gradients C_e = A_eᵀ · B_e over each group's rows (grouped_matmul_tn), and the e4m3
//! weights' dequantisation and activations' quantisation (beam/gemm/weights.cuh).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "beam/core/math.cuh"
#include "beam/gemm/weights.cuh"

namespace beam::reference {

//! acc `[offsets.back(), N]` of a grouped GEMM. Row r of A is `a + source(r)·a_stride`, with
//! source(r) = row_sources[r] when given (a gather) else r; B_e row j is
//! `b + e·N·K + j·K` (row-major `[E, N, K]`).
//! @throws std::invalid_argument for N or K < 1, or offsets empty, not starting at 0 or decreasing
template <class RealA, class RealB>
std::vector<double> grouped_matmul_nt(const RealA* a, int64_t a_stride, const int64_t* row_sources, const RealB* b,
                                      int64_t n, int64_t k, const std::vector<int32_t>& offsets) {
  if (n < 1 || k < 1 || offsets.empty() || offsets.front() != 0 ||
      !std::is_sorted(offsets.begin(), offsets.end())) {
    throw std::invalid_argument("grouped_matmul_nt: bad N, K or offsets (empty, not from 0, decreasing)");
  }
  std::vector<double> acc(static_cast<size_t>(int64_t(offsets.back()) * n));
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    const RealB* b_e = b + int64_t(e) * n * k;
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
      const RealA* row = a + (row_sources ? row_sources[r] : r) * a_stride;
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0.0;
        for (int64_t i = 0; i < k; ++i) sum += double(row[i]) * double(b_e[j * k + i]);
        acc[size_t(r * n + j)] = sum;
      }
    }
  }
  return acc;
}

//! The weights W `[E, N, K]` of e4m3 codes Q and their scales (weights.cuh), exactly:
//! W[e][j][k] = e4m3_value(Q[e][j][k]) · s(e, j, k), block scales taken per half of `halves`.
//! @throws std::invalid_argument for E, N or K < 1, halves ∉ {1, 2} or not dividing N, a
//!         scaling that is not an enumerator, or null scales with a scaling other than none
//! C `[groups, M, N]`: C_e[i][j] = Σ_{r ∈ [offsets[e], offsets[e+1])} A(r)[i] · B(r)[j], in double.
//! Row r of A is `a + r·a_stride`; row r of B is `b + source(r)·b_stride`, source(r) =
//! b_sources[r] when given (a gather; −1: a zero row) else r.
//! @throws std::invalid_argument for M or N < 1, or offsets empty, not starting at 0 or decreasing
template <class Real>
std::vector<double> grouped_matmul_tn(const Real* a, int64_t a_stride, const Real* b, int64_t b_stride,
                                      const int64_t* b_sources, int64_t m, int64_t n,
                                      const std::vector<int32_t>& offsets) {
  if (m < 1 || n < 1 || offsets.empty() || offsets.front() != 0 || !std::is_sorted(offsets.begin(), offsets.end())) {
    throw std::invalid_argument("grouped_matmul_tn: bad M, N or offsets (empty, not from 0, decreasing)");
  }
  std::vector<double> c(static_cast<size_t>(int64_t(offsets.size() - 1) * m * n), 0.0);
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    double* c_e = c.data() + int64_t(e) * m * n;
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
      const int64_t source = b_sources ? b_sources[r] : r;
      if (source < 0) continue;
      const Real* a_r = a + r * a_stride;
      const Real* b_r = b + source * b_stride;
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) c_e[i * n + j] += double(a_r[i]) * double(b_r[j]);
      }
    }
  }
  return c;
}

inline std::vector<double> dequantize_weights(const __nv_fp8_e4m3* q, const float* scales, weight_scales scaling,
                                              int64_t experts, int64_t n, int64_t k, int halves = 1) {
  if (experts < 1 || n < 1 || k < 1 || (halves != 1 && halves != 2) || n % halves != 0 ||
      !valid_weight_scales(scaling) || (scaling != weight_scales::none && !scales)) {
    throw std::invalid_argument("dequantize_weights: bad E, N, K, halves or scales");
  }
  const int64_t per_expert = scales_per_expert(scaling, n, k, halves), k_blocks = (k + weight_block - 1) / weight_block;
  std::vector<double> w(static_cast<size_t>(experts * n * k));
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < k; ++i) {
        const int64_t at = (e * n + j) * k + i;
        const double s = scaling == weight_scales::per_channel ? scales[e * per_expert + j]
                         : scaling == weight_scales::block_128
                             ? scales[e * per_expert + scale_block_row(j, n, halves) * k_blocks + i / weight_block]
                             : 1.0;
        w[size_t(at)] = double(e4m3_value(q[at].__x)) * s;
      }
    }
  }
  return w;
}

//! e4m3 activations (weights.cuh): codes `[rows, K]` and scales `[rows, ⌈K/128⌉]`, row-major.
struct quantized_activations {
  std::vector<__nv_fp8_e4m3> codes;
  std::vector<float> scales;
};

//! Quantises A `[rows, K]` (row r at a + r·stride) to e4m3 in 1 × 128 groups, as weights.cuh says.
//! @throws std::invalid_argument for rows < 0, K < 1 or stride < K
template <class T>
quantized_activations quantize_activations(const T* a, int64_t stride, int64_t rows, int64_t k) {
  if (rows < 0 || k < 1 || stride < k) throw std::invalid_argument("quantize_activations: bad rows, K or stride");
  const int64_t groups = (k + weight_block - 1) / weight_block;
  quantized_activations q{std::vector<__nv_fp8_e4m3>(size_t(rows * k)), std::vector<float>(size_t(rows * groups))};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < groups; ++b) {
      const int64_t begin = b * weight_block, end = std::min(k, begin + weight_block);
      float amax = 0.0f;
      for (int64_t i = begin; i < end; ++i) amax = std::fmax(amax, std::fabs(to_float(a[r * stride + i])));
      const float s = activation_scale(amax);
      q.scales[size_t(r * groups + b)] = s;
      for (int64_t i = begin; i < end; ++i) {
        q.codes[size_t(r * k + i)] = dtype_traits<__nv_fp8_e4m3>::from_float(to_float(a[r * stride + i]) / s);
      }
    }
  }
  return q;
}

//! The values Q · s of quantised activations `[rows, K]`, exactly.
inline std::vector<double> dequantize_activations(const quantized_activations& q, int64_t rows, int64_t k) {
  const int64_t groups = (k + weight_block - 1) / weight_block;
  std::vector<double> a(size_t(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      a[size_t(r * k + i)] =
          double(e4m3_value(q.codes[size_t(r * k + i)].__x)) * q.scales[size_t(r * groups + i / weight_block)];
    }
  }
  return a;
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
