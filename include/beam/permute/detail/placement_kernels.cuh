//! @file
//! Kernels of beam::device::select_replicas (one thread per pair) and dispatch_layout (one warp
//! per token).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/core/warp.cuh"
#include "beam/permute/device_placement.cuh"

namespace beam::detail {

constexpr int placement_threads = 256;

template <int = 0>  // a template: one definition across translation units
__global__ void __launch_bounds__(placement_threads)
    select_replicas_kernel(const int32_t* topk_ids, int64_t pairs, int num_logical_experts,
                           device::replica_table replicas, int32_t* physical_ids) {
  wait_for_dependencies();  // the routing: the kernels before wrote it
  launch_dependents();
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += stride) {
    const int32_t e = topk_ids[p];
    int32_t physical = e == -1 ? -1 : -2;
    if (e >= 0 && e < num_logical_experts) {
      const int32_t count = replicas.counts[e];
      if (count >= 1 && count <= replicas.max_replicas) {
        physical = replicas.physical[int64_t(e) * replicas.max_replicas + p % count];
      }
    }
    physical_ids[p] = physical;
  }
}

template <int = 0>  // a template: one definition across translation units
__global__ void __launch_bounds__(placement_threads)
    dispatch_layout_kernel(const int32_t* topk_ids, int64_t tokens, int top_k, int num_experts, int num_ranks,
                           device::dispatch_counts out) {
  wait_for_dependencies();  // the routing and the zeroed counts
  launch_dependents();
  const int lane = int(warp::lane_id());
  const int experts_per_rank = num_experts / num_ranks;
  const int64_t warps = int64_t(gridDim.x) * (placement_threads / 32);
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    const int32_t e = lane < top_k ? topk_ids[t * top_k + lane] : -1;
    const int rank = e >= 0 && e < num_experts ? e / experts_per_rank : -1;
    bool first = rank >= 0;  // the lowest lane of its rank speaks for the token
    for (int j = 0; j < top_k && j < 32; ++j) {
      const int other = __shfl_sync(0xffffffffu, rank, j);
      if (j < lane && other == rank) first = false;
    }
    if (rank >= 0 && out.pairs_per_expert) atomicAdd(out.pairs_per_expert + e, 1);
    if (first) atomicAdd(out.tokens_per_rank + rank, 1);
    if (out.token_in_rank) {
      uint8_t* row = out.token_in_rank + t * num_ranks;
      for (int r = lane; r < num_ranks; r += 32) row[r] = 0;
      __syncwarp();
      if (first) row[rank] = 1;
      __syncwarp();
    }
  }
}

}  // namespace beam::detail
