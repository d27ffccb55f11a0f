//! @file
//! Gather of the permuted GEMM input: Xp[r] = X[token(r)] for the active rows.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/permute/detail/vector_rows.cuh"

namespace beam::device {

//! Xp[r] = X[sorted_pairs[r] / K] for r < n_active (read on the device from `n_active`,
//! e.g. `offsets + E_local` of `compact`), 16-byte vector copies, one warp per row. The grid
//! is sized by the bound T·K and threads past n_active exit: no host synchronisation.
//!
//! @tparam T  float, __half or __nv_bfloat16
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K < 1, H < 1; T > 0 and a
//!         null pointer; x or xp not 16-byte aligned, or H or a row stride not a multiple of
//!         16 bytes' worth of elements (or < H); else the launch's status. T = 0: success.
template <class T>
[[nodiscard]] cudaError_t gather_rows(const T* x, int64_t x_stride, int64_t tokens, int hidden, int top_k,
                                      const int32_t* sorted_pairs, const int32_t* n_active, T* xp,
                                      int64_t xp_stride, cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/permute/detail/gather_combine_kernels.cuh"

namespace beam::device {

template <class T>
cudaError_t gather_rows(const T* x, int64_t x_stride, int64_t tokens, int hidden, int top_k,
                        const int32_t* sorted_pairs, const int32_t* n_active, T* xp, int64_t xp_stride,
                        cudaStream_t stream) {
  namespace bd = beam::detail;
  if (tokens < 0 || top_k < 1 || hidden < 1) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  if (!sorted_pairs || !n_active || !x || !xp) return cudaErrorInvalidValue;
  if (!bd::vector_rows(x, x_stride, hidden) || !bd::vector_rows<T>(xp, xp_stride, hidden)) return cudaErrorInvalidValue;
  const unsigned grid = bd::warp_per_item_grid(tokens * top_k, bd::row_block_threads);
  bd::gather_rows_kernel<T><<<grid, bd::row_block_threads, 0, stream>>>(x, x_stride, hidden, top_k, sorted_pairs,
                                                                       n_active, xp, xp_stride);
  return cudaGetLastError();
}

}  // namespace beam::device
