//! @file
//! Warp pieces shared by the routing primitives: butterfly reductions, and a token's
//! logits and softmax numerators held in registers (expert e = lane + 32·j in slot j).
#pragma once

#include <cuda_runtime.h>

#include "beam/core/dtype.cuh"
#include "beam/core/math.cuh"
#include "beam/core/warp.cuh"
#include "beam/routing/options.cuh"

namespace beam::warp::detail {

__device__ inline float warp_max(float v) {  // fmaxf ignores NaN
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ inline unsigned long long warp_max(unsigned long long v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const unsigned long long other = __shfl_xor_sync(0xffffffffu, v, offset);
    v = other > v ? other : v;
  }
  return v;
}

//! Loads a row of E logits as float into `logit` (NaN past E); returns the warp-wide max.
template <int PerLane, class LogitT>
__device__ float load_logits(const LogitT* row, int num_experts, float (&logit)[PerLane]) {
  const int lane = int(lane_id());
  float max_logit = -INFINITY;
#pragma unroll
  for (int j = 0; j < PerLane; ++j) {
    const int e = lane + 32 * j;
    logit[j] = e < num_experts ? to_float(row[e]) : NAN;
    max_logit = fmaxf(max_logit, logit[j]);
  }
  return warp_max(max_logit);
}

//! The softmax numerator of logit r in a row whose maximum is `max_logit`: e^(r − max).
//! NaN gets 0; when the max is ±∞ (+∞ present, or every logit −∞) the logits equal to the
//! max share equally (numerator 1) and the others get 0.
__device__ inline float softmax_numerator(float r, float max_logit) {
  if (r != r) return 0.0f;
  if (isinf(max_logit)) return r == max_logit ? 1.0f : 0.0f;
  return expf(r - max_logit);
}

//! Softmax numerators of a row held by `load_logits`; returns their warp-wide sum.
template <int PerLane>
__device__ float softmax_numerators(const float (&logit)[PerLane], float max_logit, float (&numerator)[PerLane]) {
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < PerLane; ++j) {
    numerator[j] = softmax_numerator(logit[j], max_logit);
    sum += numerator[j];
  }
  return warp_sum(sum);
}

//! S = Σ of the candidate scores held by the K lanes when renormalising, else 0 (the gates
//! are divided by S when S > 0). Warp-uniform. Decided in float: if every candidate score
//! underflows to 0 in float (e.g. σ(r) for r < −104), S = 0 and the gates are 0, where the
//! double-precision reference still renormalises.
__device__ inline float renormalization_sum(float score, bool holds, const routing_options& options) {
  return options.renormalize ? warp_sum(holds ? score : 0.0f) : 0.0f;
}

//! m̂ of the slot on this lane under `options.rule` and the cap k_max (routing_rule); warp-uniform.
//! `holds`: the lane is a slot k < K with a candidate; `probability`: its q = s_c / S (0 when it
//! holds none); `mask_logit`: its z (the mask rule only). Top-p's Σ_{j<k} q_j adds slot by slot
//! in slot order, in float.
__device__ inline bool rule_keeps(bool holds, float probability, float mask_logit, const routing_options& options) {
  bool keep = holds;
  if (options.rule == routing_rule::mask) {
    keep = holds && mask_keeps(mask_logit);
  } else if (options.rule == routing_rule::threshold) {
    keep = holds && probability >= options.threshold;
  } else if (options.rule == routing_rule::top_p) {
    const int lane = int(lane_id());
    float mass_before = 0.0f;
    for (int k = 0; k < options.top_k; ++k) {
      const float q = __shfl_sync(0xffffffffu, probability, k);
      if (k < lane) mass_before += q;
    }
    keep = holds && mass_before < options.top_p;
  }
  if (options.max_active > 0) {
    const unsigned before = __ballot_sync(0xffffffffu, keep) & ((1u << lane_id()) - 1u);
    keep = keep && __popc(before) < options.max_active;
  }
  return keep;
}

}  // namespace beam::warp::detail
