//! @file
//! Combine of the expert outputs back into token order, deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/permute/detail/vector_rows.cuh"

namespace beam::device {

//! Optional rows added to every token by `combine`, `[T, H]` each with its row stride.
template <class T>
struct combine_addends {
  const T* shared = nullptr;    //!< shared-expert output
  int64_t shared_stride = 0;
  const T* residual = nullptr;  //!< residual stream
  int64_t residual_stride = 0;
};

//! out[t] = shared[t] + Σ_{k=0}^{K−1} ĝ[t,k] · Yp[pair_to_row[t·K+k]] + residual[t], in float,
//! in exactly that order (bitwise deterministic); skipped pairs (row −1) add nothing, so a
//! token with no active expert gets exact zeros plus its addends. With `topk_weights` null
//! the rows of Yp are taken as already scaled by ĝ. One thread per 16-byte vector of a token,
//! its loads all in flight before the sum waits for them: two dependent round trips for K ≤ 8
//! (the rows' indices, then the rows), one more per further 8 pairs.
//! `out` may be the residual (or shared) array itself, with the same stride: an in-place
//! residual update (each element is read before the same thread writes it).
//!
//! @tparam T  float, __half or __nv_bfloat16 (Yp, addends, out)
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K < 1, H < 1; T > 0 and null
//!         yp, pair_to_row or out; a given array not 16-byte aligned, or H or a row stride not
//!         a multiple of 16 bytes' worth of elements (or < H); else the launch's status.
template <class T>
[[nodiscard]] cudaError_t combine(const T* yp, int64_t yp_stride, const int32_t* pair_to_row,
                                  const float* topk_weights, int64_t tokens, int hidden, int top_k,
                                  const combine_addends<T>& addends, T* out, int64_t out_stride,
                                  cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/permute/detail/gather_combine_kernels.cuh"

namespace beam::device {

template <class T>
cudaError_t combine(const T* yp, int64_t yp_stride, const int32_t* pair_to_row, const float* topk_weights,
                    int64_t tokens, int hidden, int top_k, const combine_addends<T>& addends, T* out,
                    int64_t out_stride, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (tokens < 0 || top_k < 1 || hidden < 1) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  if (!yp || !pair_to_row || !out) return cudaErrorInvalidValue;
  if (!bd::vector_rows(yp, yp_stride, hidden) || !bd::vector_rows<T>(out, out_stride, hidden)) {
    return cudaErrorInvalidValue;
  }
  if (addends.shared && !bd::vector_rows(addends.shared, addends.shared_stride, hidden)) return cudaErrorInvalidValue;
  if (addends.residual && !bd::vector_rows(addends.residual, addends.residual_stride, hidden)) {
    return cudaErrorInvalidValue;
  }
  const int64_t vectors = tokens * (hidden / bd::vector_elements<T>);
  return bd::launch_dependent(bd::combine_kernel<T>, bd::thread_per_item_grid(vectors, bd::combine_block_threads),
                              bd::combine_block_threads, 0, stream,
                              bd::combine_rows<T>{yp, yp_stride, pair_to_row, topk_weights, tokens, hidden, top_k,
                                                  addends, out, out_stride});
}

}  // namespace beam::device
