//! @file
//! Combine of the expert outputs back into token order, deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/error.cuh"
#include "beam/core/macros.cuh"
#include "beam/permute/detail/vector_rows.cuh"

namespace beam::device {

//! Zero-computation experts (MoE++, LongCat-Flash): the routing's ids [first, first + Z),
//! Z = zero + identity + constant, name experts without weights or GEMM rows, whose terms
//! `combine` adds in slot order. Pair (t, k) with id e in that range and weight
//! ĝ = topk_weights[t·K+k] adds, with i = e − first:
//!   i < zero                        nothing                   (MoE++'s zero expert)
//!   i < zero + identity             ĝ · x_t                   (LongCat-Flash, MoE++'s copy expert)
//!   else, j = i − zero − identity   ĝ · (α₁ x_t + α₂ v_j),    [α₁, α₂] = softmax(ℓ_t[2j], ℓ_t[2j+1])
//!                                                             (MoE++'s constant expert, ℓ = x W_cᵀ)
template <class T>
struct zero_compute_addends {
  int first = 0;     //!< the first zero-computation id (after the FFN experts': E_routed)
  int zero = 0;      //!< counts of each kind, ≥ 0
  int identity = 0;
  int constant = 0;
  const int32_t* topk_ids = nullptr;      //!< `[T, K]`; required when Z > 0
  const float* topk_weights = nullptr;    //!< ĝ `[T, K]`; required when Z > 0
  const T* hidden = nullptr;              //!< x `[T, H]`; required with identity or constant experts
  int64_t hidden_stride = 0;
  const T* constant_vectors = nullptr;    //!< v `[C, H]`, rows H apart; required when C > 0
  const float* constant_logits = nullptr; //!< ℓ `[T, 2C]` (row stride 2C); required when C > 0

  //! Z.
  BEAM_HOST_DEVICE int count() const { return zero + identity + constant; }
};

//! Optional rows added to every token by `combine`, `[T, H]` each with its row stride.
template <class T>
struct combine_addends {
  const T* shared = nullptr;    //!< shared-expert output
  int64_t shared_stride = 0;
  const T* residual = nullptr;  //!< residual stream
  int64_t residual_stride = 0;
  const float* shared_gate = nullptr;  //!< optional `[T]` gate logits ℓ: the shared output enters as
                                       //!< σ(ℓ_t) · shared[t] (Qwen2-MoE's shared expert gate)
  zero_compute_addends<T> zero_compute = {};  //!< optional: the terms of zero-computation experts
};

//! out[t] = shared[t] + Σ_{k=0}^{K−1} ĝ[t,k] · Yp[pair_to_row[t·K+k]] + residual[t], in float
//! (shared[t] scaled by σ(ℓ_t) with the addends' shared_gate; a zero-computation expert's term,
//! zero_compute_addends, in its slot's place),
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
//!         a multiple of 16 bytes' worth of elements (or < H); zero-computation experts with a
//!         negative count, Z > 0 and first < 0 or first + Z > 2³¹ − 1, or (T > 0) a required
//!         array null or not aligned as above (ℓ: 8 bytes); else the launch's status.
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

//! The backward of combine's sum y_t = Σ_k ĝ[t,k] · Yp[pair_to_row[t·K+k]] (+ addends, whose
//! gradient is ∂L/∂y itself) from ∂L/∂y `[T, H]`:
//!   d_topk_weights[t·K+k] = ⟨∂L/∂y_t, Yp[row]⟩   (float; 0 for a skipped pair, row −1)
//!   d_yp[row]             = ĝ[t,k] · ∂L/∂y_t      (optional: null computes ∂L/∂ĝ alone)
//! as reference::combine_backward. A training forward gives every candidate pair a row (masked
//! ones with ĝ = 0, so their d_yp rows are zeros): their ∂L/∂ĝ is the straight-through
//! estimator's signal, for route_backward. One warp per token, each lane's products summed in
//! column order and the lanes in a fixed butterfly: bitwise deterministic. Rows of Yp that no
//! pair names are neither read nor written.
//!
//! @tparam T  float, __half or __nv_bfloat16 (Yp, ∂L/∂y, ∂L/∂Yp)
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K or H ∉ [1, 2³⁰]; T > 0 and null
//!         yp, pair_to_row, topk_weights, d_out or d_topk_weights; a row array (yp, d_out, a
//!         given d_yp) not 16-byte aligned, or H or its stride not a multiple of 16 bytes' worth
//!         of elements (or < H); else the launch's status. T = 0: success, nothing runs.
template <class T>
[[nodiscard]] cudaError_t combine_backward(const T* yp, int64_t yp_stride, const int32_t* pair_to_row,
                                           const float* topk_weights, const T* d_out, int64_t d_out_stride,
                                           int64_t tokens, int hidden, int top_k, float* d_topk_weights, T* d_yp,
                                           int64_t d_yp_stride, cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/permute/detail/gather_combine_kernels.cuh"

namespace beam::device {

namespace detail {

//! Whether zero-computation addends are well formed: counts ≥ 0 and ids within int32; with
//! `data` (T > 0), the arrays their kinds need given and aligned (x rows and v as 16-byte
//! vectors of H, ℓ to 8 bytes).
template <class T>
bool valid_zero_compute(const zero_compute_addends<T>& zc, int hidden, bool data) {
  namespace bd = beam::detail;
  if (zc.zero < 0 || zc.identity < 0 || zc.constant < 0) return false;
  const int64_t count = int64_t(zc.zero) + zc.identity + zc.constant;
  if (count == 0) return true;
  if (zc.first < 0 || zc.first + count > INT32_MAX) return false;
  if (!data) return true;
  if (!zc.topk_ids || !zc.topk_weights) return false;
  if (zc.identity + zc.constant > 0 && !(zc.hidden && bd::vector_rows(zc.hidden, zc.hidden_stride, hidden))) {
    return false;
  }
  return zc.constant == 0 || (zc.constant_vectors && bd::vector_rows(zc.constant_vectors, hidden, hidden) &&
                              zc.constant_logits && reinterpret_cast<uintptr_t>(zc.constant_logits) % 8 == 0);
}

//! The checks of combine and combine_masked (`index`: pair_to_row or topk_ids), then the launch.
template <class T>
cudaError_t launch_combine(const beam::detail::combine_rows<T>& rows, const int32_t* index, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (rows.tokens < 0 || rows.top_k < 1 || rows.top_k > max_extent || rows.hidden < 1 || rows.hidden > max_extent) {
    return cudaErrorInvalidValue;
  }
  if (!valid_zero_compute(rows.addends.zero_compute, rows.hidden, false)) return cudaErrorInvalidValue;
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
  if (!valid_zero_compute(addends.zero_compute, rows.hidden, true)) return cudaErrorInvalidValue;
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
cudaError_t combine_backward(const T* yp, int64_t yp_stride, const int32_t* pair_to_row, const float* topk_weights,
                             const T* d_out, int64_t d_out_stride, int64_t tokens, int hidden, int top_k,
                             float* d_topk_weights, T* d_yp, int64_t d_yp_stride, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (tokens < 0 || top_k < 1 || top_k > max_extent || hidden < 1 || hidden > max_extent) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  if (!yp || !pair_to_row || !topk_weights || !d_out || !d_topk_weights) return cudaErrorInvalidValue;
  if (!bd::vector_rows(yp, yp_stride, hidden) || !bd::vector_rows(d_out, d_out_stride, hidden) ||
      (d_yp && !bd::vector_rows<T>(d_yp, d_yp_stride, hidden))) {
    return cudaErrorInvalidValue;
  }
  const bd::combine_backward_rows<T> rows{yp,     yp_stride, pair_to_row,    topk_weights, d_out, d_out_stride,
                                          tokens, hidden,    top_k,          d_topk_weights, d_yp,  d_yp_stride};
  return bd::launch_dependent(bd::combine_backward_kernel<T>, bd::warp_per_item_grid(tokens, bd::row_block_threads),
                              bd::row_block_threads, 0, stream, rows);
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
