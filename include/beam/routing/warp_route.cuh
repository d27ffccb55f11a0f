//! @file
//! Warp-level routing of one token: Top-K candidates, gate weights and the routing rule (the
//! BEAM mask, top-p, threshold, a cap), with
//! the formulas, tie and NaN/Inf rules of beam/reference/routing.cuh.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/dtype.cuh"
#include "beam/core/math.cuh"
#include "beam/routing/detail/warp_scores.cuh"
#include "beam/routing/options.cuh"

namespace beam::warp {

//! The candidate slot a lane holds after `route_token`: lane k < K holds slot k.
struct routed_slot {
  int32_t candidate = -1;  //!< c_k; −1 when the token has fewer than k + 1 non-NaN keys
  float gate = 0.0f;       //!< g_k
  float mask_prob = 0.0f;  //!< m_k = σ(z_{c_k}) (1 under a rule other than the mask, 0 for an empty slot)
  bool keep = false;       //!< m̂_k of the routing rule (the mask: 1[z_{c_k} ≥ 0])

  //! topk_id: c_k if kept, else −1.
  __device__ int32_t id() const { return keep ? candidate : -1; }
  //! ĝ_k = g_k · m̂_k.
  __device__ float weight() const { return keep ? gate : 0.0f; }
};

namespace detail {

//! Order-preserving map of a selection key to an unsigned integer; 0 is reserved for NaN
//! (never selected) and −0 maps like +0, so equal keys tie exactly as on the host.
__device__ inline uint32_t ordered_key(float key) {
  if (key != key) return 0u;
  const uint32_t bits = __float_as_uint(key + 0.0f);  // −0 + 0 = +0
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

//! The float value of an ordered key (inverse of ordered_key; key 0, NaN, is not asked for).
__device__ inline float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

//! Packs (key, expert) for an arg-max: larger key first, then the lower expert; 0 for NaN.
__device__ inline unsigned long long packed_key(uint32_t key, int expert) {
  return key == 0u ? 0ull : (static_cast<unsigned long long>(key) << 32) | (0xffffffffu - unsigned(expert));
}

//! Expert of a packed key.
__device__ inline int packed_expert(unsigned long long packed) { return int(0xffffffffu - unsigned(packed & 0xffffffffu)); }

//! Group-limited Top-K (DeepSeek-V3, reference::limit_to_top_groups): the keys of experts
//! outside the `top_groups` best of G ≤ 32 contiguous groups become 0 (NaN: never selected).
//! Each group's two largest keys by two warp arg-maxes, their float sum its score, held by lane
//! g; then `top_groups` warp arg-maxes over the lanes' scores (ties → lower group, NaN last).
template <int PerLane>
__device__ void limit_to_top_groups(uint32_t (&key)[PerLane], int num_experts, const routing_options& options) {
  const int lane = int(lane_id()), size = num_experts / options.num_groups;
  uint32_t my_group_key = 0u;  // lane g: the ordered key of group g's score
  for (int g = 0; g < options.num_groups; ++g) {
    const int begin = g * size, end = begin + size;  // no integer division: a compare per slot
    unsigned long long first = 0ull;
#pragma unroll
    for (int j = 0; j < PerLane; ++j) {
      const int e = lane + 32 * j;
      const unsigned long long packed = e >= begin && e < end ? packed_key(key[j], e) : 0ull;
      first = packed > first ? packed : first;
    }
    first = warp_max(first);
    unsigned long long second = 0ull;  // the largest below the group's first
#pragma unroll
    for (int j = 0; j < PerLane; ++j) {
      const int e = lane + 32 * j;
      const unsigned long long packed = e >= begin && e < end ? packed_key(key[j], e) : 0ull;
      second = packed < first && packed > second ? packed : second;
    }
    second = warp_max(second);
    const float score = first == 0ull    ? -INFINITY
                        : second == 0ull ? key_value(uint32_t(first >> 32))
                                         : key_value(uint32_t(first >> 32)) + key_value(uint32_t(second >> 32));
    if (lane == g) my_group_key = ordered_key(score);
  }
  uint32_t chosen = 0u;  // bit g: group g keeps its experts
  for (int r = 0; r < options.top_groups; ++r) {
    // (key + 1, −g): a NaN score (key 0) still ranks, after every other group.
    const bool open = lane < options.num_groups && !(chosen >> lane & 1u);
    const unsigned long long packed =
        open ? (static_cast<unsigned long long>(my_group_key) + 1ull) << 32 | (0xffffffffu - unsigned(lane)) : 0ull;
    chosen |= 1u << packed_expert(warp_max(packed));
  }
  for (int g = 0; g < options.num_groups; ++g) {
    if (chosen >> g & 1u) continue;
#pragma unroll
    for (int j = 0; j < PerLane; ++j) {
      const int e = lane + 32 * j;
      if (e >= g * size && e < (g + 1) * size) key[j] = 0u;
    }
  }
}

}  // namespace detail

//! Routes one token with one warp: all 32 lanes call it with the same arguments (uniform
//! control flow), and lane k < K receives candidate slot k, kept or not by `options.rule`;
//! other lanes get an empty slot.
//!
//! Keys (r + b for softmax, σ(r) + b for sigmoid, in float) are compared as order-preserving
//! integers with the expert index as the tie-break (lower wins); NaN keys are never selected.
//! The softmax denominator, the renormalisation sum and every reduction use a fixed butterfly
//! order, so equal inputs give bitwise equal outputs.
//!
//! @tparam MaxExperts  compile-time bound on E, a multiple of 32 (each lane holds
//!                     MaxExperts / 32 logits in registers)
//! @tparam LogitT      float, __half or __nv_bfloat16
//! @param router_row   r[E] of this token
//! @param mask_row     z[E] of this token; unused under a rule other than the mask
//! @param num_experts  E ≤ MaxExperts
//! @param options      K ≤ 32 and the score function, renormalisation, scaling, bias, groups,
//!                     rule (`valid_rule`)
//!
//! @code
//! // One warp per token inside a user kernel:
//! const int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;  // 64-bit: t·2E grows
//! const beam::warp::routed_slot s =
//!     beam::warp::route_token<128>(logits + t * 2 * E, logits + t * 2 * E + E, E, options);
//! if (threadIdx.x % 32 < options.top_k) ids[t * options.top_k + threadIdx.x % 32] = s.id();
//! @endcode
template <int MaxExperts, class LogitT>
__device__ routed_slot route_token(const LogitT* router_row, const LogitT* mask_row, int num_experts,
                                   const routing_options& options) {
  static_assert(MaxExperts % 32 == 0 && MaxExperts >= 32, "MaxExperts must be a positive multiple of 32");
  constexpr int per_lane = MaxExperts / 32;
  const int lane = int(lane_id());
  const bool softmax = options.scoring == score_function::softmax;

  float logit[per_lane];
  const float max_logit = detail::load_logits(router_row, num_experts, logit);
  // Scores: softmax numerators (the denominator is applied to the K winners only) or σ(r).
  float score[per_lane];
  float denominator = 0.0f;
  if (softmax) {
    denominator = detail::softmax_numerators(logit, max_logit, score);
  } else {
#pragma unroll
    for (int j = 0; j < per_lane; ++j) score[j] = sigmoid(logit[j]);
  }
  uint32_t key[per_lane];
#pragma unroll
  for (int j = 0; j < per_lane; ++j) {
    const int e = lane + 32 * j;
    float k = softmax ? logit[j] : score[j];
    if (options.selection_bias != nullptr && e < num_experts) k = k + options.selection_bias[e];
    key[j] = detail::ordered_key(k);
  }
  if (options.num_groups > 1 && options.top_groups < options.num_groups) {
    detail::limit_to_top_groups(key, num_experts, options);
  }

  // K rounds of a warp-wide arg-max over (key, −index).
  routed_slot slot;
  float my_score = 0.0f;
  for (int k = 0; k < options.top_k; ++k) {
    unsigned long long best = 0ull;
#pragma unroll
    for (int j = 0; j < per_lane; ++j) {
      const unsigned long long packed = detail::packed_key(key[j], lane + 32 * j);
      best = packed > best ? packed : best;
    }
    best = detail::warp_max(best);
    if (best == 0ull) break;  // no non-NaN key left: the remaining slots stay empty
    const int winner = detail::packed_expert(best);
    const int owner = winner % 32, owner_slot = winner / 32;
    float winner_score = 0.0f;
#pragma unroll
    for (int j = 0; j < per_lane; ++j) {
      if (j == owner_slot && lane == owner) {
        winner_score = score[j];
        key[j] = 0u;  // taken
      }
    }
    winner_score = __shfl_sync(0xffffffffu, winner_score, owner);
    if (lane == k) {
      slot.candidate = winner;
      my_score = softmax ? winner_score / denominator : winner_score;
    }
  }

  const bool holds = lane < options.top_k && slot.candidate >= 0;
  const float sum = detail::renormalization_sum(my_score, holds, options);
  const float norm = sum > 0.0f ? sum : 1.0f;  // all-zero candidate scores keep g = 0
  const bool masked = uses_mask(options);
  const float z = holds && masked ? to_float(mask_row[slot.candidate]) : 0.0f;
  const float probability = holds ? my_score / norm : 0.0f;
  slot.keep = detail::rule_keeps(holds, probability, z, options);
  if (holds) {
    slot.gate = options.routed_scaling_factor * my_score / norm;
    slot.mask_prob = masked ? sigmoid(z) : 1.0f;
  }
  return slot;
}

}  // namespace beam::warp
