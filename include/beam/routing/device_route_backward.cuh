//! @file
//! Device-level backward of `route_and_mask` through the BEAM mask (STE), with the gradients
//! of the auxiliary losses folded in. Formulas: beam/reference/training.cuh.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "beam/routing/device_route.cuh"
#include "beam/routing/options.cuh"

namespace beam::device {

//! Dense gradients `[T, E]` with their row strides (elements).
template <class GradT>
struct routing_gradients {
  GradT* d_router = nullptr;  //!< ∂L/∂r
  GradT* d_mask = nullptr;    //!< ∂L/∂z; required when the mask is on, unused when off
  int64_t d_router_stride = 0;
  int64_t d_mask_stride = 0;
};

//! The auxiliary losses of L = L_task + α·L_bal + β·L_reg whose gradients the backward adds.
struct aux_loss_terms {
  float balance = 0.0f;                      //!< α
  float l_reg = 0.0f;                        //!< β (ignored unless the rule is the mask)
  const float* balance_fractions = nullptr;  //!< f[E] from `aux_losses`; required when α ≠ 0
};

//! Backward of `route_and_mask` for T tokens, one warp per token: from the logits of the
//! forward, its `candidate_ids` `[T, K]` and ∂L/∂ĝ `[T, K]` (every candidate slot, masked
//! ones included), writes the dense ∂L/∂r and ∂L/∂z `[T, E]`:
//!   ∂L/∂g = ∂L/∂ĝ·m̂,  ∂L/∂m̂ = ∂L/∂ĝ·g,  ∂L/∂z_c = ∂L/∂m̂·σ'(z_c) + (β/(T·K))·σ'(z_c)
//!   ∂L/∂r through the score function and the renormalisation, + α·∂L_bal/∂r
//! (beam::warp::route_token_backward per token). Scores, gates and the mask are recomputed
//! from the logits exactly as the forward did, so the forward need not save them. Every
//! element of both `[T, E]` rows is written (zeros off the candidates). Equal inputs give
//! bitwise equal outputs.
//!
//! @tparam LogitT  float, __half or __nv_bfloat16
//! @tparam GradT   float, __half or __nv_bfloat16
//! @param options  the forward's options
//! @return cudaErrorInvalidValue, writing nothing, when E, K, T or the rule are invalid as for
//!         route_and_mask; T > 0 and a null or narrow (stride < E) logit or gradient array
//!         that the options need, null `candidate_ids` or `d_topk_weights`, α ≠ 0 without
//!         `balance_fractions`, or a non-finite α or β; else the launch's status.
//!         T = 0 succeeds without a CUDA call.
template <class LogitT, class GradT>
[[nodiscard]] cudaError_t route_backward(const routing_logits<LogitT>& logits, int64_t tokens, int num_experts,
                                         const routing_options& options, const int32_t* candidate_ids,
                                         const float* d_topk_weights, const aux_loss_terms& aux,
                                         const routing_gradients<GradT>& grads, cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/routing/detail/dispatch.cuh"
#include "beam/routing/detail/route_backward_kernel.cuh"

namespace beam::device {

namespace detail {

template <class LogitT, class GradT>
cudaError_t check_route_backward_arguments(const routing_logits<LogitT>& logits, int64_t tokens, int num_experts,
                                           const routing_options& options, const int32_t* candidate_ids,
                                           const float* d_topk_weights, const aux_loss_terms& aux,
                                           const routing_gradients<GradT>& grads) {
  if (tokens < 0 || num_experts < 1 || num_experts > max_route_experts) return cudaErrorInvalidValue;
  if (options.top_k < 1 || options.top_k > max_route_top_k || options.top_k > num_experts) return cudaErrorInvalidValue;
  if (!std::isfinite(aux.balance) || !std::isfinite(aux.l_reg)) return cudaErrorInvalidValue;
  if (!valid_rule(options)) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  if (!logits.router || logits.router_stride < num_experts) return cudaErrorInvalidValue;
  if (!grads.d_router || grads.d_router_stride < num_experts) return cudaErrorInvalidValue;
  if (uses_mask(options) && (!logits.mask || logits.mask_stride < num_experts)) return cudaErrorInvalidValue;
  if (uses_mask(options) && (!grads.d_mask || grads.d_mask_stride < num_experts)) return cudaErrorInvalidValue;
  if (!candidate_ids || !d_topk_weights) return cudaErrorInvalidValue;
  if (aux.balance != 0.0f && !aux.balance_fractions) return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace detail

template <class LogitT, class GradT>
cudaError_t route_backward(const routing_logits<LogitT>& logits, int64_t tokens, int num_experts,
                           const routing_options& options, const int32_t* candidate_ids,
                           const float* d_topk_weights, const aux_loss_terms& aux,
                           const routing_gradients<GradT>& grads, cudaStream_t stream) {
  if (const cudaError_t status = detail::check_route_backward_arguments(logits, tokens, num_experts, options,
                                                                        candidate_ids, d_topk_weights, aux, grads);
      status != cudaSuccess || tokens == 0) {
    return status;
  }
  warp::aux_grad_scales scales;
  scales.l_reg_scale = uses_mask(options) ? float(double(aux.l_reg) / (double(tokens) * options.top_k)) : 0.0f;
  scales.balance_scale = float(double(aux.balance) * num_experts / double(tokens));
  scales.balance_fractions = aux.balance_fractions;
  return beam::detail::dispatch_max_experts(num_experts, [&](auto max_experts) {
    return beam::detail::launch_dependent(beam::detail::route_backward_kernel<decltype(max_experts)::value, LogitT, GradT>,
                                          beam::detail::warp_per_item_grid(tokens, beam::detail::route_block_threads),
                                          beam::detail::route_block_threads, 0, stream, logits, tokens, num_experts,
                                          options, candidate_ids, d_topk_weights, scales, grads);
  });
}

}  // namespace beam::device
