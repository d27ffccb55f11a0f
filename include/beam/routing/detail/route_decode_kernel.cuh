//! @file
//! Kernel of beam::device::route_decode: block (i, j) holds 16 weight rows and the tokens of
//! tile j (8 tokens); each warp computes its row's logits for those tokens. The last block to
//! arrive routes every token from the finished logits. Built for latency: the tile's hidden
//! states reach shared memory through cp.async while each lane has all its weight loads of a
//! slab in flight (one dependent round trip per 32 KiB slab of the tile, one slab for H ≤ 2048
//! in 16-bit types), then the arrival (one), then the logits of the last block's tokens (one
//! per 16 tokens).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/gemm/tile_mma.cuh"
#include "beam/permute/detail/compact_kernels.cuh"
#include "beam/routing/detail/route_kernel.cuh"
#include "beam/routing/device_route_decode.cuh"
#include "beam/routing/warp_route.cuh"

namespace beam::detail {

constexpr int decode_block_threads = 512;
constexpr int decode_warps = decode_block_threads / 32;
constexpr int decode_token_tile = 8;  //!< tokens of a block (grid y), accumulated by each lane at once
constexpr int decode_slab_bytes = 32768;  //!< shared memory: a slab of the tile's hidden states, later the logits
constexpr int decode_slab_loads = decode_slab_bytes / decode_token_tile / 16 / 32;  //!< weight vectors per lane

//! Elements of T in one 16-byte load.
template <class T>
inline constexpr int64_t decode_vector_elements = int64_t(16 / sizeof(T));

//! Elements of a token's row in one slab: 2048 for 16-bit types, 1024 for float.
template <class T>
inline constexpr int decode_slab_elements = int(decode_slab_bytes / decode_token_tile / sizeof(T));

//! Workspace of route_decode: an arrival counter (zero between calls) in the first
//! workspace_counter_bytes, then the logits `[T, 2E]` (r | z) in float.
struct decode_workspace {
  size_t logits_offset = device::workspace_counter_bytes, bytes;
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

//! With `Compact` (moe_forward's decode path), the last block goes on to compact the routing
//! it wrote (`compacted`: compact's outputs for plan = the routing's ids), so that the expert
//! GEMMs follow it directly: no launch of compact.
template <int MaxExperts, class T, bool Compact>
__global__ void __launch_bounds__(decode_block_threads, 1)
    route_decode_kernel(const T* __restrict__ hidden, int64_t hidden_stride, int64_t tokens, int hidden_size,
                        device::router_weights<T> weights, int num_experts, routing_options options,
                        device::routing_outputs out, float* logits, unsigned* arrivals, compact_plan plan,
                        device::compaction_outputs compacted) {
  static_assert(decode_block_threads == compact_single_threads, "the last block compacts as compact's single block");
  static_assert(sizeof(compact_ranking::temp_storage) <= decode_slab_bytes, "the ranking reuses the slab");
  constexpr int64_t vector = decode_vector_elements<T>;
  constexpr int slab = decode_slab_elements<T>;
  static_assert(sizeof(float) * decode_warps * 2 * MaxExperts <= decode_slab_bytes, "the logits fit the slab");
  __shared__ __align__(16) unsigned char shared[decode_slab_bytes];
  T* x_slab = reinterpret_cast<T*>(shared);  // [token of the tile][slab]
  const int lane = int(warp::lane_id()), warp_index = int(threadIdx.x / 32);
  const int64_t logits_stride = 2 * int64_t(num_experts);

  // Phase 1: row `row` of [W_r; W_m] against tokens [t0, t0 + tile), slab by slab of H.
  const int row = int(blockIdx.x) * decode_warps + warp_index;
  const int rows = options.mask_enabled ? 2 * num_experts : num_experts;
  const int64_t t0 = int64_t(blockIdx.y) * decode_token_tile;
  const int tile = int(tokens - t0 < decode_token_tile ? tokens - t0 : decode_token_tile);
  const T* w = row >= rows           ? nullptr
               : row < num_experts ? weights.router + row * weights.router_stride
                                   : weights.mask + (row - num_experts) * weights.mask_stride;
  float acc[decode_token_tile] = {};
  for (int s0 = 0; s0 < hidden_size; s0 += slab) {
    const int vectors = int((hidden_size - s0 < slab ? hidden_size - s0 : slab) / vector);
    int4 wv[decode_slab_loads];  // this lane's weight vectors of the slab, all in flight
#pragma unroll
    for (int j = 0; j < decode_slab_loads; ++j) {
      const int c = lane + 32 * j;
      wv[j] = w && c < vectors ? __ldg(reinterpret_cast<const int4*>(w + s0 + c * vector)) : int4{};
    }
    // The hidden states (and everything this kernel writes) belong to the kernels before it;
    // the router weights, streaming already, do not.
    if (s0 == 0) wait_for_dependencies();
    for (int i = int(threadIdx.x); i < tile * vectors; i += decode_block_threads) {
      const int token = i / vectors, c = i % vectors;
      block::copy_async_16(x_slab + token * slab + c * vector, hidden + (t0 + token) * hidden_stride + s0 + c * vector,
                           true);
    }
    block::copy_async_commit();
    block::copy_async_wait<0>();
    __syncthreads();
    if (w) {
#pragma unroll
      for (int i = 0; i < decode_token_tile; ++i) {
        if (i >= tile) break;
#pragma unroll
        for (int j = 0; j < decode_slab_loads; ++j) {
          const int c = lane + 32 * j;
          if (c < vectors) acc[i] += dot16<T>(wv[j], *reinterpret_cast<const int4*>(x_slab + i * slab + c * vector));
        }
      }
    }
    __syncthreads();  // the next slab overwrites this one
  }
  launch_dependents();
  if (w) {
#pragma unroll
    for (int i = 0; i < decode_token_tile; ++i) {
      const float sum = warp::detail::warp_sum(acc[i]);
      if (lane == 0 && i < tile) logits[(t0 + i) * logits_stride + row] = sum;
    }
  }

  const int64_t routed = routed_tokens(options, tokens);  // in flight while the block arrives
  if (!last_to_arrive(arrivals, gridDim.x * gridDim.y * gridDim.z)) return;

  // Phase 2: route from the logits, staged per warp in shared memory (L2 reads: the other
  // blocks' writes are not in this block's L1), each lane's loads all in flight.
  constexpr int per_lane = MaxExperts / 32;
  auto staged = reinterpret_cast<float (*)[2][MaxExperts]>(shared);
  for (int64_t t = warp_index; t < tokens; t += decode_warps) {
    if (t >= routed) {  // padding: empty slots
      store_routed_token(out, t, options.top_k, warp::routed_slot{});
      continue;
    }
    float r[per_lane], z[per_lane];
#pragma unroll
    for (int j = 0; j < per_lane; ++j) {
      const int e = lane + 32 * j;
      r[j] = e < num_experts ? __ldcg(logits + t * logits_stride + e) : 0.0f;
      z[j] = e < num_experts && options.mask_enabled ? __ldcg(logits + t * logits_stride + num_experts + e) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < per_lane; ++j) {
      const int e = lane + 32 * j;
      if (e < num_experts) {
        staged[warp_index][0][e] = r[j];
        staged[warp_index][1][e] = z[j];
      }
    }
    __syncwarp();
    const warp::routed_slot s =
        warp::route_token<MaxExperts, float>(staged[warp_index][0], staged[warp_index][1], num_experts, options);
    store_routed_token(out, t, options.top_k, s);
    __syncwarp();
  }
  if constexpr (Compact) {
    __syncthreads();  // every token's ids written (visible to the block), the staged logits done with
    compact_in_block(plan, compacted, {}, *reinterpret_cast<compact_ranking::temp_storage*>(shared));
  }
}

}  // namespace beam::detail
