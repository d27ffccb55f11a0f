//! @file
//! Gather of the permuted GEMM input: Xp[r] = X[token(r)] for the active rows, or for the
//! slots of DeepGEMM's masked layout.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/error.cuh"
#include "beam/permute/detail/vector_rows.cuh"

namespace beam::device {

//! Xp[r] = X[sorted_pairs[r] / K] for r < n_active (read on the device from `n_active`,
//! e.g. `offsets + E_local` of `compact`), 16-byte vector copies, one warp per row. The grid
//! is sized by the bound T·K and threads past n_active exit: no host synchronisation.
//!
//! @tparam T  float, __half or __nv_bfloat16
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K or H ∉ [1, 2³⁰]; T > 0 and a
//!         null pointer; x or xp not 16-byte aligned, or H or a row stride not a multiple of
//!         16 bytes' worth of elements (or < H); else the launch's status. T = 0: success.
template <class T>
[[nodiscard]] cudaError_t gather_rows(const T* x, int64_t x_stride, int64_t tokens, int hidden, int top_k,
                                      const int32_t* sorted_pairs, const int32_t* n_active, T* xp,
                                      int64_t xp_stride, cudaStream_t stream = nullptr);

//! Xs[s] = X[slot_pairs[s] / K] for the slots s < num_slots of an engine layout whose pair
//! lies in [0, T·K); padding slots (sentinel T·K) are left unwritten. For DeepGEMM's masked
//! layout: slot_pairs = `masked_layout::slot_pairs`, num_slots = E_local·max_m, and Xs is its
//! `[E_local, max_m, H]` input. Same warp-per-slot copy, grid and checks as gather_rows.
//!
//! @tparam T  float, __half or __nv_bfloat16
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K or H ∉ [1, 2³⁰], num_slots < 0;
//!         T > 0, num_slots > 0 and a null pointer or a misaligned array or stride (as
//!         gather_rows); else the launch's status. T = 0 or num_slots = 0: success.
template <class T>
[[nodiscard]] cudaError_t gather_slots(const T* x, int64_t x_stride, int64_t tokens, int hidden, int top_k,
                                       const int32_t* slot_pairs, int64_t num_slots, T* xs, int64_t xs_stride,
                                       cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/permute/detail/gather_combine_kernels.cuh"

namespace beam::device {

namespace detail {

template <class T>
cudaError_t launch_gather(const T* x, int64_t x_stride, int64_t tokens, int hidden, int top_k, const int32_t* pairs,
                          int64_t row_bound, const int32_t* n_rows, T* xp, int64_t xp_stride, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (tokens < 0 || top_k < 1 || top_k > max_extent || hidden < 1 || hidden > max_extent || row_bound < 0) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0 || row_bound == 0) return cudaSuccess;
  if (!pairs || !x || !xp) return cudaErrorInvalidValue;
  if (!bd::vector_rows(x, x_stride, hidden) || !bd::vector_rows<T>(xp, xp_stride, hidden)) return cudaErrorInvalidValue;
  const unsigned grid = bd::warp_per_item_grid(row_bound, bd::row_block_threads);
  return bd::launch_dependent(bd::gather_rows_kernel<T>, grid, bd::row_block_threads, 0, stream, x, x_stride, hidden,
                              top_k, pairs, tokens * top_k, row_bound, n_rows, xp, xp_stride);
}

}  // namespace detail

template <class T>
cudaError_t gather_rows(const T* x, int64_t x_stride, int64_t tokens, int hidden, int top_k,
                        const int32_t* sorted_pairs, const int32_t* n_active, T* xp, int64_t xp_stride,
                        cudaStream_t stream) {
  if (tokens > 0 && top_k > 0 && !n_active) return cudaErrorInvalidValue;
  return detail::launch_gather(x, x_stride, tokens, hidden, top_k, sorted_pairs, tokens * top_k, n_active, xp,
                               xp_stride, stream);
}

template <class T>
cudaError_t gather_slots(const T* x, int64_t x_stride, int64_t tokens, int hidden, int top_k,
                         const int32_t* slot_pairs, int64_t num_slots, T* xs, int64_t xs_stride, cudaStream_t stream) {
  return detail::launch_gather(x, x_stride, tokens, hidden, top_k, slot_pairs, num_slots, nullptr, xs, xs_stride,
                               stream);
}

}  // namespace beam::device
