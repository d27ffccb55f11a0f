//! @file
//! Warp-level backward of one token's routing through its rule (the BEAM mask: the STE), with the
//! gradients of the auxiliary losses folded in. Formulas: beam/reference/training.cuh.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/dtype.cuh"
#include "beam/core/math.cuh"
#include "beam/routing/detail/warp_scores.cuh"
#include "beam/routing/options.cuh"

namespace beam::warp {

//! Per-token scales of the auxiliary-loss gradients (0 leaves a term out):
//!   ∂(β·L_reg)/∂z_c = l_reg_scale · σ'(z_c) for every candidate c,       l_reg_scale = β/(T·K)
//!   ∂(α·L_bal)/∂r_j = balance_scale · p_j · (f_j − Σ_e f_e p_e),         balance_scale = α·E/T
//! with p = softmax(r) and f the candidate fractions of the batch (`aux_losses` computes f).
struct aux_grad_scales {
  float l_reg_scale = 0.0f;
  float balance_scale = 0.0f;
  const float* balance_fractions = nullptr;  //!< f[E]; required when balance_scale ≠ 0
};

//! Backward of `route_token` for one token with one warp: all 32 lanes call it with the same
//! row pointers, and lane k < K passes slot k's candidate c_k (from the forward) and ∂L/∂ĝ_k.
//! The scores, gates and the rule's m̂ are recomputed from the logits exactly as the forward
//! computed them, then (the ∂L/∂z term for the mask rule only; the other rules' m̂ is a step
//! function of g with no gradient)
//!   ∂L/∂g_k = ∂L/∂ĝ_k · m̂_k,   ∂L/∂m̂_k = ∂L/∂ĝ_k · g_k,   ∂L/∂z_{c_k} = ∂L/∂m̂_k · σ'(z_{c_k})
//!   ∂L/∂s_{c_k} = λ ∂L/∂g_k, or λ(∂L/∂g_k − Σ_i ∂L/∂g_i s_i)/S when renormalised (S > 0,
//!   s_i = score_i/S)
//!   ∂L/∂r_e = p_e (∂L/∂s_e − Σ_l p_l ∂L/∂s_l) (softmax),   ∂L/∂s_e σ'(r_e) (sigmoid)
//! plus the terms of `aux`. Writes the dense rows ∂L/∂r[E] and ∂L/∂z[E] (zeros off the
//! candidates, except the balance term, which reaches every expert).
//!
//! Candidates outside [0, E) count as empty slots (no gradient). Matches the reference for
//! finite logits; NaN logits have probability 0 and get zero gradient.
//!
//! @tparam MaxExperts  compile-time bound on E, a multiple of 32
//! @tparam LogitT      float, __half or __nv_bfloat16
//! @tparam GradT       storage type of the gradients
//! @param candidate    lane k < K: c_k (−1 for an empty slot); other lanes: ignored
//! @param d_weight     lane k < K: ∂L/∂ĝ_k (every candidate, masked ones included)
//! @param d_mask_row   ∂L/∂z[E]; may be null under a rule other than the mask (nothing is
//!                     written then)
//!
//! @code
//! // Inside a user kernel, one warp per token t (int64_t), after the forward saved candidate_ids:
//! const int k = threadIdx.x % 32;
//! const bool slot = k < options.top_k;
//! beam::warp::route_token_backward<128>(r + t * E, z + t * E, E, options,
//!     slot ? candidate_ids[t * options.top_k + k] : -1, slot ? d_hat[t * options.top_k + k] : 0.0f,
//!     {beta / (T * options.top_k)}, d_r + t * E, d_z + t * E);
//! @endcode
template <int MaxExperts, class LogitT, class GradT>
__device__ void route_token_backward(const LogitT* router_row, const LogitT* mask_row, int num_experts,
                                     const routing_options& options, int32_t candidate, float d_weight,
                                     const aux_grad_scales& aux, GradT* d_router_row, GradT* d_mask_row) {
  static_assert(MaxExperts % 32 == 0 && MaxExperts >= 32, "MaxExperts must be a positive multiple of 32");
  constexpr int per_lane = MaxExperts / 32;
  const int lane = int(lane_id());
  const int K = options.top_k;
  const bool softmax = options.scoring == score_function::softmax;
  const bool balance = aux.balance_scale != 0.0f && aux.balance_fractions != nullptr;

  float logit[per_lane];
  const float max_logit = detail::load_logits(router_row, num_experts, logit);
  float prob[per_lane];  // softmax(r); needed by softmax scoring and by the balance term
  float denominator = 1.0f;
  if (softmax || balance) {
    denominator = detail::softmax_numerators(logit, max_logit, prob);
#pragma unroll
    for (int j = 0; j < per_lane; ++j) prob[j] = denominator > 0.0f ? prob[j] / denominator : 0.0f;  // all NaN: 0
  }

  // Slot k on lane k: the forward's score, gate and mask decision, recomputed bit for bit.
  const bool holds = lane < K && candidate >= 0 && candidate < num_experts;
  const bool masked = uses_mask(options);
  float score = 0.0f, z = 0.0f;
  if (holds) {
    const float r = to_float(router_row[candidate]);
    score = softmax ? detail::softmax_numerator(r, max_logit) / denominator : sigmoid(r);
    if (masked) z = to_float(mask_row[candidate]);
  }
  const float sum = detail::renormalization_sum(score, holds, options);
  const float norm = sum > 0.0f ? sum : 1.0f;
  const float lambda = options.routed_scaling_factor;
  const float gate = lambda * score / norm;
  const bool keep = detail::rule_keeps(holds, holds ? score / norm : 0.0f, z, options);
  const float d_gate = keep ? d_weight : 0.0f;
  // Renormalised: λ(∂L/∂g_k − Σ_i ∂L/∂g_i s_i)/S with the shares s_i = score_i/S, which sum to 1
  // exactly for K = 1, so that the routing term is exactly 0 there (g ≡ λ has no gradient).
  float d_score = lambda * d_gate;
  if (sum > 0.0f) d_score = lambda * (d_gate - detail::warp_sum(d_gate * (score / sum))) / sum;
  const float d_z = holds && masked
                        ? ste_backward(d_weight * gate, z) + l_reg_term_grad(z, aux.l_reg_scale)
                        : 0.0f;
  const float p_dot_d = softmax ? detail::warp_sum(holds ? score * d_score : 0.0f) : 0.0f;

  float f_dot_p = 0.0f;
  if (balance) {
    float partial = 0.0f;
#pragma unroll
    for (int j = 0; j < per_lane; ++j) {
      const int e = lane + 32 * j;
      if (e < num_experts) partial += aux.balance_fractions[e] * prob[j];
    }
    f_dot_p = detail::warp_sum(partial);
  }

  // Scatter the K slots' values to the lanes that hold their experts (candidates are distinct).
  float d_score_of[per_lane] = {}, d_z_of[per_lane] = {};
  for (int k = 0; k < K; ++k) {
    const int32_t c = __shfl_sync(0xffffffffu, holds ? candidate : -1, k);
    const float ds = __shfl_sync(0xffffffffu, d_score, k), dz = __shfl_sync(0xffffffffu, d_z, k);
#pragma unroll
    for (int j = 0; j < per_lane; ++j) {
      if (c == lane + 32 * j) {
        d_score_of[j] += ds;
        d_z_of[j] += dz;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < per_lane; ++j) {
    const int e = lane + 32 * j;
    if (e >= num_experts) continue;
    float d_r = softmax ? prob[j] * (d_score_of[j] - p_dot_d)
                        : (d_score_of[j] == 0.0f ? 0.0f : d_score_of[j] * sigmoid_grad(logit[j]));
    if (balance) d_r += aux.balance_scale * prob[j] * (aux.balance_fractions[e] - f_dot_p);
    d_router_row[e] = from_float<GradT>(d_r);
    if (d_mask_row != nullptr) d_mask_row[e] = from_float<GradT>(d_z_of[j]);
  }
}

}  // namespace beam::warp
