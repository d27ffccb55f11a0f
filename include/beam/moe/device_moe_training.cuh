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
//! moe_backward is the rest of the backward, from ∂L/∂y to every gradient of the layer:
//!   ∂L/∂ĝ, ∂L/∂Yp = ĝ·∂L/∂y   combine_backward over the candidates' rows
//!   ∂L/∂r, ∂L/∂z              route_backward (STE, α·L_bal and β·L_reg folded in)
//!   ∂L/∂W2_e = ∂L/∂Yp_eᵀ·A_e   grouped_weight_grad;  ∂L/∂A = ∂L/∂Yp·W2_e  grouped_gemm_nn
//!   [G | U] = X·W13_eᵀ          recomputed (grouped_gemm, store), then swiglu_backward
//!   ∂L/∂W13_e = [∂L/∂G | ∂L/∂U]_eᵀ·X_e;  ∂L/∂X rows = [∂L/∂G | ∂L/∂U]·W13_e
//!   the shared expert likewise over all tokens
//!   ∂L/∂x_t = Σ_k ∂L/∂X[row(t, k)] + shared + ∂L/∂r·W_r + ∂L/∂z·W_m   (combine, router_logits_backward)
//!   ∂L/∂W_r = ∂L/∂rᵀ·x, ∂L/∂W_m = ∂L/∂zᵀ·x
//! Every sum is in a fixed order: the gradients are bitwise deterministic.
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

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "beam/gemm/device_swiglu_backward.cuh"
#include "beam/gemm/device_weight_grad.cuh"
#include "beam/moe/device_moe.cuh"
#include "beam/routing/device_route_backward.cuh"
#include "beam/routing/device_router_logits_backward.cuh"

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
  const T* shared_activations;     //!< the shared expert's A_s `[T, I_s]` (row stride I_s); null without one
};

//! The gradients moe_backward writes (not adds), each optional (null: not computed): ∂L/∂x in
//! T, the weights' in float (fp32 gradients for the optimiser), each array 16-byte aligned and
//! dense (rows as the weights': `[E, 2I, H]`, `[E, H, I]`, `[E, H]`, `[2I_s, H]`, `[H, I_s]`).
template <class T>
struct moe_gradients {
  T* d_x = nullptr;  //!< ∂L/∂x `[T, H]`
  int64_t d_x_stride = 0;
  float* d_w13 = nullptr;
  float* d_w2 = nullptr;
  float* d_router = nullptr;
  float* d_mask_router = nullptr;  //!< under the mask rule
  float* d_shared_w13 = nullptr;   //!< with a shared expert
  float* d_shared_w2 = nullptr;
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

//! The gradients of the layer (file comment) from ∂L/∂y `[T, H]` and the state that
//! moe_training_forward left in `forward_workspace` for the same x, T, layer and options (the
//! loss terms `aux` as route_backward takes them). Two-phase workspace of its own, as
//! moe_forward (a query checks only the sizes). G | U are recomputed, not kept by the forward:
//! one GEMM 1 more for 2·rows·I fewer saved values. A masked candidate (ĝ = 0) sends nothing to
//! its expert's weights or to x, but its ∂L/∂ĝ reaches the mask router. T = 0 writes zero weight
//! gradients.
//!
//! @tparam T  __nv_bfloat16 or __half
//! @return cudaErrorInvalidValue, launching nothing, for what moe_training_forward refuses
//!         (the layer, the options), a null, misaligned or narrow ∂L/∂y or ∂L/∂x (as moe_forward's
//!         output), a gradient array not 16-byte aligned, a weight gradient whose rows (H, 2I
//!         or 2I_s) exceed max_weight_grad_m, a null forward workspace, or what route_backward
//!         refuses of `aux`; cudaErrorInvalidDeviceFunction as moe_forward; else the first
//!         failing launch's status.
template <class T>
[[nodiscard]] cudaError_t moe_backward(void* workspace, size_t& workspace_bytes, const void* forward_workspace,
                                       const T* x, int64_t x_stride, int64_t tokens, const moe_layer<T>& layer,
                                       const routing_options& options, const aux_loss_terms& aux, const T* d_y,
                                       int64_t d_y_stride, const moe_gradients<T>& grads, cudaStream_t stream = nullptr);

}  // namespace beam::device

namespace beam::device {

namespace detail {

//! The training forward's workspace: each array 256-byte aligned, in this order.
struct moe_training_workspace : workspace_layout {
  size_t logits, candidate_ids, topk_ids, topk_weights, mask_probs;
  expert_buffers experts;  //!< over the candidates

  template <class T>
  moe_training_workspace(int64_t tokens, int top_k, const moe_layer<T>& layer) {
    const size_t P = size_t(tokens) * size_t(top_k);
    logits = take(size_t(tokens) * 2 * size_t(router_columns(layer.experts)) * sizeof(float));
    candidate_ids = take(P * sizeof(int32_t));
    topk_ids = take(P * sizeof(int32_t));
    topk_weights = take(P * sizeof(float));
    mask_probs = take(P * sizeof(float));
    experts = expert_buffers::taken(tokens, top_k, layer, *this);
  }
};

//! The backward's workspace: each array 256-byte aligned, in this order.
struct moe_backward_workspace : workspace_layout {
  size_t d_topk_weights, d_logits, d_rows, d_activations, gate_up, shared_d_activations, shared_gate_up, shared_d_x;

  template <class T>
  moe_backward_workspace(int64_t tokens, int top_k, const moe_layer<T>& layer) {
    const size_t P = size_t(tokens) * size_t(top_k), H = size_t(layer.hidden), I = size_t(layer.intermediate),
                 I_s = size_t(layer.shared_intermediate), t = size_t(tokens);
    d_topk_weights = take(P * sizeof(float));
    d_logits = take(t * 2 * size_t(router_columns(layer.experts)) * sizeof(float));
    d_rows = take(P * H * sizeof(T));  // ∂L/∂Yp, then ∂L/∂X of the rows
    d_activations = take(P * I * sizeof(T));
    gate_up = take(P * 2 * I * sizeof(T));  // [G | U], then [∂L/∂G | ∂L/∂U] in place
    shared_d_activations = take(t * I_s * sizeof(T));
    shared_gate_up = take(t * 2 * I_s * sizeof(T));
    shared_d_x = take(I_s > 0 ? t * H * sizeof(T) : 0);
    if (bytes == 0) bytes = beam::detail::workspace_align(1);  // T = 0: a run still needs a non-null workspace
  }
};

//! The sizes and options of a training call (forward or backward), all that a workspace query
//! checks: moe_forward's, and what training implements of a layer (no expert parallelism, no
//! zero-computation experts, no shared expert gate).
template <class T>
cudaError_t check_training_sizes(int64_t tokens, const moe_layer<T>& layer, const routing_options& options) {
  if (const cudaError_t status = check_moe_sizes(tokens, layer, options.top_k, gemm_schedule::automatic);
      status != cudaSuccess) {
    return status;
  }
  if (layer.expert_map || layer.routed_experts != 0 || zero_compute_experts_of(layer) != 0 || layer.shared_gate) {
    return cudaErrorInvalidValue;
  }
  return valid_groups(options, layer.experts) && valid_rule(options) ? cudaSuccess : cudaErrorInvalidValue;
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
          w::at<T>(workspace, ws.experts.expert_rows),
          layer.shared_intermediate > 0 ? w::at<T>(workspace, ws.experts.shared_activations) : nullptr};
}

template <class T>
cudaError_t moe_training_forward(void* workspace, size_t& workspace_bytes, const T* x, int64_t x_stride,
                                 int64_t tokens, const moe_layer<T>& layer, const routing_options& options,
                                 const moe_outputs<T>& out, cudaStream_t stream) {
  using w = detail::moe_training_workspace;
  const gemm_schedule schedule = gemm_schedule::automatic;
  if (const cudaError_t status = detail::check_training_sizes(tokens, layer, options); status != cudaSuccess) {
    return status;
  }
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

namespace detail {

//! The backward's own argument checks (after moe_training_forward's size checks): ∂L/∂y and
//! ∂L/∂x as moe_forward's output, the gradient arrays 16-byte aligned.
template <class T>
cudaError_t check_backward_data(const T* x, int64_t x_stride, int64_t tokens, const moe_layer<T>& layer, bool mask,
                                const T* d_y, int64_t d_y_stride, const moe_gradients<T>& g) {
  if (const cudaError_t status = check_moe_data(x, x_stride, tokens, layer, moe_outputs<T>{const_cast<T*>(d_y), d_y_stride},
                                                true, mask);
      status != cudaSuccess) {
    return status;
  }
  if (tokens > 0 && g.d_x &&
      (reinterpret_cast<uintptr_t>(g.d_x) % 16 != 0 || g.d_x_stride % 8 != 0 || g.d_x_stride < layer.hidden)) {
    return cudaErrorInvalidValue;
  }
  const float* const arrays[] = {g.d_w13, g.d_w2, g.d_router, g.d_mask_router, g.d_shared_w13, g.d_shared_w2};
  for (const float* p : arrays) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return cudaErrorInvalidValue;
  }
  // grouped_weight_grad's M: H (∂L/∂W2, ∂L/∂W2_s), 2I (∂L/∂W13), 2I_s (∂L/∂W13_s)
  const int H = layer.hidden, I = layer.intermediate, I_s = layer.shared_intermediate;
  if (((g.d_w2 || g.d_shared_w2) && H > max_weight_grad_m) || (g.d_w13 && 2 * I > max_weight_grad_m) ||
      (g.d_shared_w13 && 2 * I_s > max_weight_grad_m)) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

//! T = 0: the weight gradients are zeros.
template <class T>
cudaError_t zero_weight_gradients(const moe_layer<T>& layer, bool mask, const moe_gradients<T>& g, cudaStream_t stream) {
  const size_t E = size_t(layer.experts), H = size_t(layer.hidden), I = size_t(layer.intermediate),
               I_s = size_t(layer.shared_intermediate);
  const std::pair<float*, size_t> arrays[] = {{g.d_w13, E * 2 * I * H},   {g.d_w2, E * H * I},
                                              {g.d_router, E * H},        {mask ? g.d_mask_router : nullptr, E * H},
                                              {g.d_shared_w13, 2 * I_s * H}, {g.d_shared_w2, H * I_s}};
  for (const auto& [p, n] : arrays) {
    if (!p || n == 0) continue;
    if (const cudaError_t status = cudaMemsetAsync(p, 0, n * sizeof(float), stream); status != cudaSuccess) return status;
  }
  return cudaSuccess;
}

}  // namespace detail

template <class T>
cudaError_t moe_backward(void* workspace, size_t& workspace_bytes, const void* forward_workspace, const T* x,
                         int64_t x_stride, int64_t tokens, const moe_layer<T>& layer, const routing_options& options,
                         const aux_loss_terms& aux, const T* d_y, int64_t d_y_stride, const moe_gradients<T>& grads,
                         cudaStream_t stream) {
  using w = detail::moe_backward_workspace;
  const gemm_schedule schedule = gemm_schedule::automatic;
  if (const cudaError_t status = detail::check_training_sizes(tokens, layer, options); status != cudaSuccess) {
    return status;
  }
  const bool mask = uses_mask(options);
  if (!(std::isfinite(aux.balance) && std::isfinite(aux.l_reg)) || (aux.balance != 0.0f && !aux.balance_fractions)) {
    return cudaErrorInvalidValue;  // as route_backward: checked before anything runs
  }
  const w ws(tokens, options.top_k, layer);
  if (workspace == nullptr) {
    workspace_bytes = ws.bytes;
    return cudaSuccess;
  }
  if (!forward_workspace) return cudaErrorInvalidValue;
  if (const cudaError_t status = detail::check_backward_data(x, x_stride, tokens, layer, mask, d_y, d_y_stride, grads);
      status != cudaSuccess) {
    return status;
  }
  bool run = false;
  if (const cudaError_t status = detail::begin_layer(workspace, workspace_bytes, ws.bytes, tokens, layer, run); !run) {
    return status == cudaSuccess && tokens == 0 ? detail::zero_weight_gradients(layer, mask, grads, stream) : status;
  }

  const int E = layer.experts, H = layer.hidden, I = layer.intermediate, I_s = layer.shared_intermediate;
  const int K = options.top_k;
  const int64_t P = tokens * K;
  const moe_training_state<T> s = moe_training_saved<T>(forward_workspace, tokens, layer, K);
  float* d_hat = w::at<float>(workspace, ws.d_topk_weights);
  float* d_logits = w::at<float>(workspace, ws.d_logits);
  const int64_t half = detail::router_columns(E), logit_stride = 2 * half;
  const routing_gradients<float> d_routing{d_logits, d_logits + half, logit_stride, logit_stride};
  T* d_rows = w::at<T>(workspace, ws.d_rows);
  T* d_act = w::at<T>(workspace, ws.d_activations);
  T* gate_up = w::at<T>(workspace, ws.gate_up);
  const gemm_groups experts{s.offsets, E, P, P}, all{nullptr, 1, tokens};
  const gemm_b<T> w13{layer.w13, H, int64_t(2) * I * H}, w2_kn{layer.w2, I, int64_t(H) * I},
      w13_kn{layer.w13, H, int64_t(2) * I * H};
  const bool experts_input = grads.d_x || grads.d_w13;  // both need [∂L/∂G | ∂L/∂U]

  // ∂L/∂ĝ of every candidate and ∂L/∂Yp = ĝ·∂L/∂y; the routers' logits.
  cudaError_t status = combine_backward<T>(s.expert_rows, H, s.pair_to_row, s.topk_weights, d_y, d_y_stride, tokens,
                                           H, K, d_hat, d_rows, H, stream);
  if (status == cudaSuccess) {
    status = route_backward<float, float>(s.logits, tokens, E, options, s.candidate_ids, d_hat, aux, d_routing, stream);
  }
  // The routed experts.
  if (status == cudaSuccess && grads.d_w2) {
    status = grouped_weight_grad<T, float>({d_rows, H}, {s.activations, I}, H, I, experts, grads.d_w2, I,
                                           int64_t(H) * I, stream);
  }
  if (status == cudaSuccess && experts_input) {
    status = grouped_gemm_nn<T, T>({d_rows, H}, w2_kn, I, H, experts, {d_act, I}, schedule, stream);
  }
  if (status == cudaSuccess && experts_input) {
    status = grouped_gemm<T, T>({x, x_stride, s.sorted_pairs, K}, w13, 2 * I, H, experts, {gate_up, 2 * I}, schedule,
                                stream);
  }
  if (status == cudaSuccess && experts_input) {
    status = swiglu_backward<T>(gate_up, 2 * I, d_act, I, P, I, gate_up, 2 * I, s.offsets + E, stream);
  }
  if (status == cudaSuccess && grads.d_w13) {
    status = grouped_weight_grad<T, float>({gate_up, 2 * I}, {x, x_stride, s.sorted_pairs, K}, 2 * I, H, experts,
                                           grads.d_w13, H, int64_t(2) * I * H, stream);
  }
  if (status == cudaSuccess && grads.d_x) {  // ∂L/∂X of the rows, over ∂L/∂Yp (read for the last time above)
    status = grouped_gemm_nn<T, T>({gate_up, 2 * I}, w13_kn, H, 2 * I, experts, {d_rows, H}, schedule, stream);
  }
  // The shared expert, a dense SwiGLU MLP over all tokens.
  T* shared_d_x = I_s > 0 && grads.d_x ? w::at<T>(workspace, ws.shared_d_x) : nullptr;
  if (I_s > 0 && (grads.d_x || grads.d_shared_w13 || grads.d_shared_w2)) {
    T* shared_act = w::at<T>(workspace, ws.shared_d_activations);
    T* shared_gu = w::at<T>(workspace, ws.shared_gate_up);
    const bool shared_input = grads.d_x || grads.d_shared_w13;
    if (status == cudaSuccess && grads.d_shared_w2) {
      status = grouped_weight_grad<T, float>({d_y, d_y_stride}, {s.shared_activations, I_s}, H, I_s, all,
                                             grads.d_shared_w2, I_s, int64_t(H) * I_s, stream);
    }
    if (status == cudaSuccess && shared_input) {
      status = grouped_gemm_nn<T, T>({d_y, d_y_stride}, gemm_b<T>{layer.shared_w2, I_s}, I_s, H, all,
                                     {shared_act, I_s}, schedule, stream);
    }
    if (status == cudaSuccess && shared_input) {
      status = grouped_gemm<T, T>({x, x_stride}, gemm_b<T>{layer.shared_w13, H}, 2 * I_s, H, all, {shared_gu, 2 * I_s},
                                  schedule, stream);
    }
    if (status == cudaSuccess && shared_input) {
      status = swiglu_backward<T>(shared_gu, 2 * I_s, shared_act, I_s, tokens, I_s, shared_gu, 2 * I_s, nullptr, stream);
    }
    if (status == cudaSuccess && grads.d_shared_w13) {
      status = grouped_weight_grad<T, float>({shared_gu, 2 * I_s}, {x, x_stride}, 2 * I_s, H, all, grads.d_shared_w13,
                                             H, int64_t(2) * I_s * H, stream);
    }
    if (status == cudaSuccess && grads.d_x) {
      status = grouped_gemm_nn<T, T>({shared_gu, 2 * I_s}, gemm_b<T>{layer.shared_w13, H}, H, 2 * I_s, all,
                                     {shared_d_x, H}, schedule, stream);
    }
  }
  // ∂L/∂x: the rows' sum per token and the shared expert's, then the routers' added.
  if (status == cudaSuccess && grads.d_x) {
    status = combine<T>(d_rows, H, s.pair_to_row, nullptr, tokens, H, K, {shared_d_x, H}, grads.d_x, grads.d_x_stride,
                        stream);
  }
  if (status == cudaSuccess) {
    status = router_logits_backward<T>(x, x_stride, tokens, H, {layer.router, layer.mask_router, H, H}, E, mask,
                                       d_routing, grads.d_x, grads.d_x_stride,
                                       {grads.d_router, grads.d_mask_router, H, H}, stream);
  }
  return status;
}

}  // namespace beam::device
