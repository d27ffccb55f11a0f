//! @file
//! Row-major matrix views and the one dense product the reference needs.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace beam::reference {

//! `T` in a position that takes no part in template argument deduction, so optional pointer
//! arguments accept `nullptr`.
template <class T>
using non_deduced = typename std::common_type<T>::type;

//! Read-only view of a row-major matrix with a row stride in elements, so that both
//! halves of a `[T, 2E]` logits array can be viewed in place:
//! `matrix_view<float>{logits, T, E, 2 * E}` (router) and `{logits + E, T, E, 2 * E}` (mask).
template <class Real>
struct matrix_view {
  const Real* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;  //!< elements between row starts; ≥ cols

  const Real& operator()(int64_t r, int64_t c) const { return data[r * stride + c]; }
};

//! Throws `std::invalid_argument` unless `view` is a `rows × cols` view with a valid stride
//! and data (data may be null only when rows == 0).
template <class Real>
void check_view(const matrix_view<Real>& view, int64_t rows, int64_t cols, const char* what) {
  if (view.rows != rows || view.cols != cols || view.stride < cols ||
      (rows > 0 && view.data == nullptr)) {
    throw std::invalid_argument(std::string(what) + ": expected a valid " + std::to_string(rows) +
                                " x " + std::to_string(cols) + " view");
  }
}

//! C = A · Bᵀ with A `[M, N_in]`, B `[N_out, N_in]` (the nn.Linear weight layout), C
//! `[M, N_out]`, all row-major and dense; accumulated in double.
template <class Real>
std::vector<Real> matmul_nt(const Real* a, const Real* b, int64_t m, int64_t n_in, int64_t n_out) {
  std::vector<Real> c(static_cast<size_t>(m * n_out));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n_out; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < n_in; ++k) acc += double(a[i * n_in + k]) * double(b[j * n_in + k]);
      c[i * n_out + j] = Real(acc);
    }
  }
  return c;
}

}  // namespace beam::reference
