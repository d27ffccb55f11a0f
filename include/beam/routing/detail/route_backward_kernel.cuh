//! @file
//! Kernel of beam::device::route_backward: one warp per token, grid-stride over tokens.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/routing/detail/route_kernel.cuh"
#include "beam/routing/device_route_backward.cuh"
#include "beam/routing/warp_route_backward.cuh"

namespace beam::detail {

template <int MaxExperts, class LogitT, class GradT>
__global__ void __launch_bounds__(route_block_threads)
    route_backward_kernel(device::routing_logits<LogitT> logits, int64_t tokens, int num_experts,
                          routing_options options, const int32_t* __restrict__ candidate_ids,
                          const float* __restrict__ d_topk_weights, warp::aux_grad_scales scales,
                          device::routing_gradients<GradT> grads) {
  wait_for_dependencies();  // the logits, the candidates, ∂L/∂ĝ: the kernels before wrote them
  launch_dependents();
  const int lane = int(warp::lane_id());
  const int K = options.top_k;
  const int64_t warps = int64_t(gridDim.x) * (route_block_threads / 32);
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    const bool slot = lane < K;
    const int32_t candidate = slot ? candidate_ids[t * K + lane] : -1;
    const float d_weight = slot ? d_topk_weights[t * K + lane] : 0.0f;
    const LogitT* mask_row = uses_mask(options) ? logits.mask + t * logits.mask_stride : nullptr;
    GradT* d_mask_row = uses_mask(options) ? grads.d_mask + t * grads.d_mask_stride : nullptr;
    warp::route_token_backward<MaxExperts>(logits.router + t * logits.router_stride, mask_row, num_experts, options,
                                           candidate, d_weight, scales, grads.d_router + t * grads.d_router_stride,
                                           d_mask_row);
  }
}

}  // namespace beam::detail
