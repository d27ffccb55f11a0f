//! @file
//! Kernel of beam::device::route_and_mask: one warp per token, grid-stride over tokens.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/routing/device_route.cuh"
#include "beam/routing/warp_route.cuh"

namespace beam::detail {

constexpr int route_block_threads = 128;

//! Writes token t's routed slots (lane k < K: slot k) and counts its telemetry; whole warp.
__device__ inline void store_routed_token(const device::routing_outputs& out, int64_t t, int top_k,
                                          const warp::routed_slot& s) {
  const int lane = int(warp::lane_id());
  if (lane < top_k) {
    const int64_t slot = t * top_k + lane;
    out.topk_ids[slot] = s.id();
    out.topk_weights[slot] = s.weight();
    if (out.topk_ids_or_zero) out.topk_ids_or_zero[slot] = s.keep ? s.candidate : 0;
    if (out.mask_probs) out.mask_probs[slot] = s.mask_prob;
    if (out.candidate_ids) out.candidate_ids[slot] = s.candidate;
    if (out.expert_counts && s.keep) atomicAdd(out.expert_counts + s.candidate, 1);
  }
  if (out.active_pairs) {
    const unsigned kept = __ballot_sync(0xffffffffu, lane < top_k && s.keep);
    if (lane == 0 && kept) atomicAdd(out.active_pairs, static_cast<unsigned long long>(__popc(kept)));
  }
}

//! Tokens to route: n = *options.valid_tokens clamped to [0, T], or T without a count; the
//! tokens after them are padding (empty slots). Read after the kernel's wait: the kernels
//! before may write the count.
__device__ inline int64_t routed_tokens(const routing_options& options, int64_t tokens) {
  if (!options.valid_tokens) return tokens;
  const int64_t n = *options.valid_tokens;
  return n < 0 ? 0 : n < tokens ? n : tokens;
}

template <int MaxExperts, class LogitT>
__global__ void __launch_bounds__(route_block_threads)
    route_and_mask_kernel(device::routing_logits<LogitT> logits, int64_t tokens, int num_experts,
                          routing_options options, device::routing_outputs out) {
  wait_for_dependencies();  // the logits: the kernels before wrote them
  launch_dependents();
  const int64_t warps = int64_t(gridDim.x) * (route_block_threads / 32), routed = routed_tokens(options, tokens);
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    warp::routed_slot s;  // empty for padding
    if (t < routed) {
      const LogitT* mask_row = uses_mask(options) ? logits.mask + t * logits.mask_stride : nullptr;
      s = warp::route_token<MaxExperts>(logits.router + t * logits.router_stride, mask_row, num_experts, options);
    }
    store_routed_token(out, t, options.top_k, s);
  }
}

}  // namespace beam::detail
