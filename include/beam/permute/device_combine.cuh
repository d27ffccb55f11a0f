//! @file
//! Combine of the expert outputs back into token order, deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/error.cuh"
#include "beam/permute/detail/vector_rows.cuh"

namespace beam::device {

//! Optional rows added to every token by `combine`, `[T, H]` each with its row stride.
template <class T>
struct combine_addends {
  const T* shared = nullptr;    //!< shared-expert output
  int64_t shared_stride = 0;
  const T* residual = nullptr;  //!< residual stream
  int64_t residual_stride = 0;
  const float* shared_gate = nullptr;  //!< optional `[T]` gate logits ℓ: the shared output enters as
                                       //!< σ(ℓ_t) · shared[t] (Qwen2-MoE's shared expert gate)
};

//! out[t] = shared[t] + Σ_{k=0}^{K−1} ĝ[t,k] · Yp[pair_to_row[t·K+k]] + residual[t], in float
//! (shared[t] scaled by σ(ℓ_t) with the addends' shared_gate),
//! in exactly that order (bitwise deterministic); skipped pairs (row −1) add nothing, so a
//! token with no active expert gets exact zeros plus its addends. With `topk_weights` null
//! the rows of Yp are taken as already scaled by ĝ. One thread per 16-byte vector of a token,
//! its loads all in flight before the sum waits for them: two dependent round trips for K ≤ 8
//! (the rows' indices, then the rows), one more per further 8 pairs.
//! `out` may be the residual (or shared) array itself, with the same stride: an in-place
//! residual update (each element is read before the same thread writes it).
//!
//! @tparam T  float, __half or __nv_bfloat16 (Yp, addends, out)
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K or H ∉ [1, 2³⁰]; T > 0 and null
//!         yp, pair_to_row or out; a given array not 16-byte aligned, or H or a row stride not
//!         a multiple of 16 bytes' worth of elements (or < H); else the launch's status.
template <class T>
[[nodiscard]] cudaError_t combine(const T* yp, int64_t yp_stride, const int32_t* pair_to_row,
                                  const float* topk_weights, int64_t tokens, int hidden, int top_k,
                                  const combine_addends<T>& addends, T* out, int64_t out_stride,
                                  cudaStream_t stream = nullptr);

//! The masked sum of an engine's own expert output indexed by pair, Yp `[T·K, H]` with row
//! t·K + k for pair (t, k) (e.g. a fused MoE's `[T, K, H]` output):
//!   out[t] = shared[t] + Σ_{k : topk_ids[t·K+k] ≥ 0} ĝ[t,k] · Yp[t·K + k] + residual[t],
//! in that order, as vLLM's masked_moe_sum. The rows of masked pairs (id −1), which no expert
//! writes, are never read: whatever they hold (NaN included) cannot reach out. Summing all K
//! rows instead would add them. Same arguments, order and errors as combine, with topk_ids
//! `[T, K]` in place of pair_to_row.
template <class T>
[[nodiscard]] cudaError_t combine_masked(const T* yp, int64_t yp_stride, const int32_t* topk_ids,
                                         const float* topk_weights, int64_t tokens, int hidden, int top_k,
                                         const combine_addends<T>& addends, T* out, int64_t out_stride,
                                         cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/permute/detail/gather_combine_kernels.cuh"

namespace beam::device {

namespace detail {

//! The checks of combine and combine_masked (`index`: pair_to_row or topk_ids), then the launch.
template <class T>
cudaError_t launch_combine(const beam::detail::combine_rows<T>& rows, const int32_t* index, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (rows.tokens < 0 || rows.top_k < 1 || rows.top_k > max_extent || rows.hidden < 1 || rows.hidden > max_extent) {
    return cudaErrorInvalidValue;
  }
  if (rows.tokens == 0) return cudaSuccess;
  if (!rows.yp || !index || !rows.out) return cudaErrorInvalidValue;
  if (!bd::vector_rows(rows.yp, rows.yp_stride, rows.hidden) ||
      !bd::vector_rows<T>(rows.out, rows.out_stride, rows.hidden)) {
    return cudaErrorInvalidValue;
  }
  const combine_addends<T>& addends = rows.addends;
  if (addends.shared && !bd::vector_rows(addends.shared, addends.shared_stride, rows.hidden)) {
    return cudaErrorInvalidValue;
  }
  if (addends.residual && !bd::vector_rows(addends.residual, addends.residual_stride, rows.hidden)) {
    return cudaErrorInvalidValue;
  }
  const int64_t vectors = rows.tokens * (rows.hidden / bd::vector_elements<T>);
  return bd::launch_dependent(bd::combine_kernel<T>, bd::thread_per_item_grid(vectors, bd::combine_block_threads),
                              bd::combine_block_threads, 0, stream, rows);
}

}  // namespace detail

template <class T>
cudaError_t combine(const T* yp, int64_t yp_stride, const int32_t* pair_to_row, const float* topk_weights,
                    int64_t tokens, int hidden, int top_k, const combine_addends<T>& addends, T* out,
                    int64_t out_stride, cudaStream_t stream) {
  return detail::launch_combine<T>(
      {yp, yp_stride, pair_to_row, nullptr, topk_weights, tokens, hidden, top_k, addends, out, out_stride}, pair_to_row,
      stream);
}

template <class T>
cudaError_t combine_masked(const T* yp, int64_t yp_stride, const int32_t* topk_ids, const float* topk_weights,
                           int64_t tokens, int hidden, int top_k, const combine_addends<T>& addends, T* out,
                           int64_t out_stride, cudaStream_t stream) {
  return detail::launch_combine<T>(
      {yp, yp_stride, nullptr, topk_ids, topk_weights, tokens, hidden, top_k, addends, out, out_stride}, topk_ids,
      stream);
}

}  // namespace beam::device
