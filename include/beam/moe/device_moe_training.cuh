//! @file
//! The BEAM MoE layer's training forward on the device: moe_forward's stages, except that every
//! candidate pair gets a row, masked ones included (the mask enters only as ĝ in the combine):
//!   route     r = x·W_rᵀ, z = x·W_mᵀ (router_logits), then route_and_mask: candidates c, ĝ, m
//!   compact   the candidates, not the kept pairs: a row for every candidate slot
//!   GEMM 1    A = silu(X W1ᵀ) ⊙ (X W3ᵀ) per expert, X rows gathered through sorted_pairs
//!   GEMM 2    Yp = A W2ᵀ per expert, unscaled
//!   combine   y_t = S(x_t) + Σ_k ĝ_tk · Yp[row(t, k)] + residual_t   (S: optional shared expert)
//! It keeps what the backward reads (moe_training_state). The straight-through estimator needs
//! E_c(x) of every candidate: ∂L/∂ĝ_tk = ⟨∂L/∂y_t, Yp[row(t, k)]⟩ is combine_backward over these
//! rows, and route_backward turns it into ∂L/∂r and ∂L/∂z (through σ' for the masked candidates
//! too). A masked candidate costs its GEMM rows here, as the method prescribes for training;
//! inference (moe_forward) gives it none.
//!
//! @code
//! // forward, then the STE's path back to the routers (∂L/∂y given)
//! beam::device::moe_training_forward(ws, bytes, x, H, T, layer, options, {y, H});
//! const auto s = beam::device::moe_training_saved<bf16>(ws, T, layer, options.top_k);
//! beam::device::combine_backward(s.expert_rows, H, s.pair_to_row, s.topk_weights, d_y, H, T, H, K, d_hat,
//!                                d_yp, H);
//! beam::device::route_backward<float, float>(s.logits, T, E, options, s.candidate_ids, d_hat, aux, grads);
//! @endcode
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "beam/moe/device_moe.cuh"
#include "beam/routing/device_route_backward.cuh"

namespace beam::device {

//! What a training forward leaves in its workspace for the backward (moe_training_saved), on
//! the device. P = T·K candidate slots; the rows are the candidates' (compaction over
//! candidate_ids), in expert order.
template <class T>
struct moe_training_state {
  routing_logits<float> logits;    //!< r and z `[T, E]` (z: under the mask rule), as route_backward reads them
  const int32_t* candidate_ids;    //!< c `[T, K]` (−1: an empty slot)
  const int32_t* topk_ids;         //!< `[T, K]`: c where kept, −1 where masked (m̂ = 0)
  const float* topk_weights;       //!< ĝ = g · m̂ `[T, K]`
  const float* mask_probs;         //!< m = σ(z) `[T, K]` (under the mask rule)
  const int32_t* offsets;          //!< `[E + 1]`: each expert's first row; offsets[E] rows in all
  const int32_t* sorted_pairs;     //!< `[P]`: the slot t·K + k of each row
  const int32_t* pair_to_row;      //!< `[P]`: the row of each slot, −1 for an empty slot
  const T* activations;            //!< A `[rows, I]` (row stride I)
  const T* expert_rows;            //!< Yp `[rows, H]` (row stride H): E_c(x), not scaled by ĝ
};

//! y = the layer's training forward of x `[T, H]` (file comment) with `options` (K =
//! options.top_k ≤ 16): the inference layer's output, up to rounding (Yp is rounded to T before
//! the combine scales it), with every candidate computed. Two-phase workspace, as moe_forward
//! (a query checks only the sizes; its pointers may be null); the workspace then holds the
//! moe_training_state until the next call on it. out.topk_ids, out.topk_weights,
//! out.topk_ids_or_zero and out.invalid_ids are not used (the state has the routing).
//!
//! @tparam T  __nv_bfloat16 or __half (activations, weights, router)
//! @return cudaErrorInvalidValue, launching nothing, for the arguments moe_forward refuses, and
//!         for what the training forward does not implement: expert parallelism (expert_map),
//!         zero-computation experts, a shared expert gate, e4m3 weights (the signature takes
//!         T weights only); cudaErrorInvalidDeviceFunction as moe_forward; else the first
//!         failing launch's status. T = 0: success, nothing runs.
template <class T>
[[nodiscard]] cudaError_t moe_training_forward(void* workspace, size_t& workspace_bytes, const T* x, int64_t x_stride,
                                               int64_t tokens, const moe_layer<T>& layer,
                                               const routing_options& options, const moe_outputs<T>& out,
                                               cudaStream_t stream = nullptr);

//! The state the last moe_training_forward with these T, layer and K left in `workspace`.
template <class T>
moe_training_state<T> moe_training_saved(const void* workspace, int64_t tokens, const moe_layer<T>& layer, int top_k);

}  // namespace beam::device

namespace beam::device {

namespace detail {

//! The training forward's workspace: each array 256-byte aligned, in this order.
struct moe_training_workspace {
  size_t logits, candidate_ids, topk_ids, topk_weights, mask_probs;
  expert_buffers experts;  //!< over the candidates
  size_t bytes;

  template <class T>
  moe_training_workspace(int64_t tokens, int top_k, const moe_layer<T>& layer) {
    using beam::detail::workspace_align;
    const size_t P = size_t(tokens) * size_t(top_k);
    size_t at = 0;
    const auto take = [&](size_t n) {
      const size_t offset = at;
      at += workspace_align(n);
      return offset;
    };
    logits = take(size_t(tokens) * 2 * size_t(router_columns(layer.experts)) * sizeof(float));
    candidate_ids = take(P * sizeof(int32_t));
    topk_ids = take(P * sizeof(int32_t));
    topk_weights = take(P * sizeof(float));
    mask_probs = take(P * sizeof(float));
    experts = expert_buffers::taken(tokens, top_k, layer, take);
    bytes = at;
  }
  template <class U>
  static U* at(const void* workspace, size_t offset) {
    return reinterpret_cast<U*>(static_cast<char*>(const_cast<void*>(workspace)) + offset);
  }
};

//! What the training forward implements of a layer: no expert parallelism, no
//! zero-computation experts, no shared expert gate.
template <class T>
bool training_layer(const moe_layer<T>& layer) {
  return !layer.expert_map && layer.routed_experts == 0 && zero_compute_experts_of(layer) == 0 && !layer.shared_gate;
}

}  // namespace detail

template <class T>
moe_training_state<T> moe_training_saved(const void* workspace, int64_t tokens, const moe_layer<T>& layer, int top_k) {
  using w = detail::moe_training_workspace;
  const w ws(tokens, top_k, layer);
  const float* logits = w::at<float>(workspace, ws.logits);
  const int64_t half = detail::router_columns(layer.experts), stride = 2 * half;
  return {{logits, logits + half, stride, stride},
          w::at<int32_t>(workspace, ws.candidate_ids),
          w::at<int32_t>(workspace, ws.topk_ids),
          w::at<float>(workspace, ws.topk_weights),
          w::at<float>(workspace, ws.mask_probs),
          w::at<int32_t>(workspace, ws.experts.offsets),
          w::at<int32_t>(workspace, ws.experts.sorted_pairs),
          w::at<int32_t>(workspace, ws.experts.pair_to_row),
          w::at<T>(workspace, ws.experts.activations),
          w::at<T>(workspace, ws.experts.expert_rows)};
}

template <class T>
cudaError_t moe_training_forward(void* workspace, size_t& workspace_bytes, const T* x, int64_t x_stride,
                                 int64_t tokens, const moe_layer<T>& layer, const routing_options& options,
                                 const moe_outputs<T>& out, cudaStream_t stream) {
  using w = detail::moe_training_workspace;
  const gemm_schedule schedule = gemm_schedule::automatic;
  if (const cudaError_t status = detail::check_moe_sizes(tokens, layer, options.top_k, schedule);
      status != cudaSuccess) {
    return status;
  }
  if (!detail::training_layer(layer)) return cudaErrorInvalidValue;
  if (!valid_groups(options, layer.experts) || !valid_rule(options)) return cudaErrorInvalidValue;
  const w ws(tokens, options.top_k, layer);
  bool run = false;
  if (const cudaError_t status = detail::start_routed_layer(workspace, workspace_bytes, ws.bytes, x, x_stride, tokens,
                                                            layer, out, uses_mask(options), run);
      !run) {
    return status;
  }

  const int E = layer.experts, H = layer.hidden, I = layer.intermediate, I_s = layer.shared_intermediate;
  const int K = options.top_k;
  const int64_t P = tokens * K;
  const moe_training_state<T> s = moe_training_saved<T>(workspace, tokens, layer, K);
  int32_t* candidate_ids = const_cast<int32_t*>(s.candidate_ids);
  const routing_logits<float>& logits = s.logits;  // [T, 2·E4]: r | z, as moe_forward
  cudaError_t status = router_logits<T>(x, x_stride, tokens, H, {layer.router, layer.mask_router, H, H}, E,
                                        uses_mask(options),
                                        {const_cast<float*>(logits.router), const_cast<float*>(logits.mask),
                                         logits.router_stride, logits.mask_stride},
                                        stream);
  if (status == cudaSuccess) {
    status = route_and_mask<float>(s.logits, tokens, E, options,
                                   {const_cast<int32_t*>(s.topk_ids), const_cast<float*>(s.topk_weights),
                                    uses_mask(options) ? const_cast<float*>(s.mask_probs) : nullptr, candidate_ids},
                                   stream);
  }
  // The candidates' rows: compact over candidate_ids, which keep the masked candidates.
  const compaction_outputs compaction{w::at<int32_t>(workspace, ws.experts.counts), const_cast<int32_t*>(s.offsets),
                                      const_cast<int32_t*>(s.sorted_pairs), const_cast<int32_t*>(s.pair_to_row)};
  size_t compaction_bytes = ws.experts.compaction_bytes;
  if (status == cudaSuccess) {
    status = compact(w::at<void>(workspace, ws.experts.compaction), compaction_bytes,
                     detail::compaction_input_of(layer, candidate_ids, tokens, K), compaction, {}, stream);
  }
  T* activations = const_cast<T*>(s.activations);
  T* expert_rows = const_cast<T*>(s.expert_rows);
  const gemm_groups experts{compaction.offsets, E, P, P}, all{nullptr, 1, tokens};
  if (status == cudaSuccess) {
    status = grouped_gemm<T, T>({x, x_stride, compaction.sorted_pairs, K}, gemm_b<T>{layer.w13, H, int64_t(2) * I * H},
                                2 * I, H, experts, {activations, I, gemm_epilogue::swiglu}, schedule, stream);
  }
  if (status == cudaSuccess) {
    status = grouped_gemm<T, T>({activations, I}, gemm_b<T>{layer.w2, I, int64_t(H) * I}, H, I, experts,
                                {expert_rows, H}, schedule, stream);
  }
  T* shared_rows = I_s > 0 ? w::at<T>(workspace, ws.experts.shared_rows) : nullptr;
  if (status == cudaSuccess && I_s > 0) {  // the shared expert: a dense SwiGLU MLP over all tokens
    T* shared_activations = w::at<T>(workspace, ws.experts.shared_activations);
    status = grouped_gemm<T, T>({x, x_stride}, gemm_b<T>{layer.shared_w13, H}, 2 * I_s, H, all,
                                {shared_activations, I_s, gemm_epilogue::swiglu}, schedule, stream);
    if (status == cudaSuccess) {
      status = grouped_gemm<T, T>({shared_activations, I_s}, gemm_b<T>{layer.shared_w2, I_s}, H, I_s, all,
                                  {shared_rows, H}, schedule, stream);
    }
  }
  if (status != cudaSuccess) return status;
  return combine<T>(expert_rows, H, compaction.pair_to_row, s.topk_weights, tokens, H, K,
                    {shared_rows, H, out.residual, out.residual_stride}, out.out, out.out_stride, stream);
}

}  // namespace beam::device
