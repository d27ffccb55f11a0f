//! @file
//! Kernel of beam::device::route_decode: block (i, j) holds 16 weight rows and the tokens of
//! tile j (8 tokens); each warp computes its row's logits for those tokens. The last block to
//! arrive routes every token from the finished logits.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "beam/routing/detail/route_kernel.cuh"
#include "beam/routing/device_route_decode.cuh"
#include "beam/routing/warp_route.cuh"

namespace beam::detail {

constexpr int decode_block_threads = 512;
constexpr int decode_warps = decode_block_threads / 32;
constexpr int decode_token_tile = 8;  //!< tokens of a block (grid y), accumulated by each lane at once

//! Elements of T in one 16-byte load.
template <class T>
inline constexpr int64_t decode_vector_elements = int64_t(16 / sizeof(T));

//! Workspace of route_decode: an arrival counter, then the logits `[T, 2E]` (r | z) in float.
struct decode_workspace {
  size_t logits_offset = 256, bytes;
  int64_t logits_stride;

  decode_workspace(int64_t tokens, int num_experts)
      : bytes(logits_offset + size_t(tokens) * 2 * size_t(num_experts) * sizeof(float)),
        logits_stride(2 * int64_t(num_experts)) {}
  unsigned* arrivals(void* workspace) const { return static_cast<unsigned*>(workspace); }
  float* logits(void* workspace) const {
    return reinterpret_cast<float*>(static_cast<char*>(workspace) + logits_offset);
  }
};

//! Σ_i a_i·b_i over the elements of two 16-byte vectors of T, in float.
template <class T>
__device__ inline float dot16(const int4& a, const int4& b) {
  const T* x = reinterpret_cast<const T*>(&a);
  const T* y = reinterpret_cast<const T*>(&b);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < int(16 / sizeof(T)); ++i) sum = fmaf(to_float(x[i]), to_float(y[i]), sum);
  return sum;
}

template <int MaxExperts, class T>
__global__ void __launch_bounds__(decode_block_threads, 1)
    route_decode_kernel(const T* __restrict__ hidden, int64_t hidden_stride, int64_t tokens, int hidden_size,
                        device::router_weights<T> weights, int num_experts, routing_options options,
                        device::routing_outputs out, float* logits, unsigned* arrivals) {
  constexpr int64_t vector = decode_vector_elements<T>;
  __shared__ float staged[decode_warps][2][MaxExperts];
  __shared__ bool last_block;
  const int lane = int(warp::lane_id()), warp_index = int(threadIdx.x / 32);
  const int64_t logits_stride = 2 * int64_t(num_experts);

  // Phase 1: row `row` of [W_r; W_m] against tokens [t0, t0 + 8).
  const int row = int(blockIdx.x) * decode_warps + warp_index;
  const int rows = options.mask_enabled ? 2 * num_experts : num_experts;
  const int64_t t0 = int64_t(blockIdx.y) * decode_token_tile;
  if (row < rows) {
    const T* w = row < num_experts ? weights.router + row * weights.router_stride
                                   : weights.mask + (row - num_experts) * weights.mask_stride;
    const int64_t chunks = hidden_size / vector;
    float acc[decode_token_tile] = {};
#pragma unroll 2
    for (int64_t c = lane; c < chunks; c += 32) {
      const int4 wv = __ldg(reinterpret_cast<const int4*>(w + c * vector));
#pragma unroll
      for (int i = 0; i < decode_token_tile; ++i) {
        if (t0 + i < tokens) {
          const int4 xv = __ldg(reinterpret_cast<const int4*>(hidden + (t0 + i) * hidden_stride + c * vector));
          acc[i] += dot16<T>(wv, xv);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < decode_token_tile; ++i) {
      const float sum = warp::detail::warp_sum(acc[i]);
      if (lane == 0 && t0 + i < tokens) logits[(t0 + i) * logits_stride + row] = sum;
    }
  }

  // The last block to arrive sees every logit, of all rows and token tiles (fence, then count
  // the arrival).
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    last_block = atomicAdd(arrivals, 1u) == gridDim.x * gridDim.y - 1;
  }
  __syncthreads();
  if (!last_block) return;
  __threadfence();

  // Phase 2: route from the logits, staged per warp in shared memory (L2 reads: the other
  // blocks' writes are not in this block's L1).
  for (int64_t t = warp_index; t < tokens; t += decode_warps) {
    for (int e = lane; e < num_experts; e += 32) {
      staged[warp_index][0][e] = __ldcg(logits + t * logits_stride + e);
      if (options.mask_enabled) staged[warp_index][1][e] = __ldcg(logits + t * logits_stride + num_experts + e);
    }
    __syncwarp();
    const warp::routed_slot s =
        warp::route_token<MaxExperts, float>(staged[warp_index][0], staged[warp_index][1], num_experts, options);
    store_routed_token(out, t, options.top_k, s);
    __syncwarp();
  }
}

}  // namespace beam::detail
