//! @file
//! Kernel of beam::device::route_decode: block (i, j) holds 16 weight rows and the tokens of
//! tile j (8 tokens); its 16 warps take one 128-element segment of H each (in rounds of 16
//! segments), each a chain of 8 mma.sync steps, and the block adds the segments' results in
//! order: the summation of warp_router_logits.cuh, so the logits equal router_logits'. The last
//! block to arrive routes every token from the finished logits. Built for latency: the tile's
//! hidden states reach shared memory through cp.async while each lane has all its weight loads
//! of a round in flight (one dependent round trip per 2048 elements of H), then the arrival
//! (one), then the logits of the last block's tokens (one per 16 tokens).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/gemm/tile_mma.cuh"
#include "beam/permute/detail/compact_kernels.cuh"
#include "beam/routing/detail/route_kernel.cuh"
#include "beam/routing/detail/router_logits_kernel.cuh"
#include "beam/routing/device_route_decode.cuh"
#include "beam/routing/warp_route.cuh"
#include "beam/routing/warp_router_logits.cuh"

namespace beam::detail {

constexpr int decode_block_threads = 512;
constexpr int decode_warps = decode_block_threads / 32;
constexpr int decode_rows = 16;       //!< weight rows of a block (grid x): one mma's M
constexpr int decode_token_tile = 8;  //!< tokens of a block (grid y): one mma's N
constexpr int decode_round = decode_warps * router_segment_elements;  //!< elements of H per round: 2048
//! Row stride of the staged hidden states (elements): a round plus 64 bytes, so that the two
//! tokens of a 16-byte load phase fall in distinct banks.
constexpr int decode_slab_stride = decode_round + 32;
//! Shared memory: the round's hidden states; later the staged logits, then compact's ranking.
constexpr int decode_shared_bytes = decode_token_tile * decode_slab_stride * 2;

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

//! With `Compact` (moe_forward's decode path), the last block goes on to compact the routing
//! it wrote (`compacted`: compact's outputs for plan = the routing's ids), so that the expert
//! GEMMs follow it directly: no launch of compact. The logits of extra rows (moe_forward's
//! shared gate x·w_g and constant experts' x·W_cᵀ) go to `extras`' shared_gate and constant_gate.
template <int MaxExperts, class T, bool Compact>
__global__ void __launch_bounds__(decode_block_threads, 1)
    route_decode_kernel(const T* __restrict__ hidden, int64_t hidden_stride, int64_t tokens, int hidden_size,
                        device::router_weights<T> weights, int num_experts, routing_options options,
                        device::routing_outputs out, float* logits, device::logits_outputs extras,
                        unsigned* arrivals, compact_plan plan, device::compaction_outputs compacted) {
  static_assert(sizeof(T) == 2, "16-bit hidden states and weights");
  static_assert(decode_block_threads == compact_single_threads, "the last block compacts as compact's single block");
  static_assert(sizeof(compact_ranking::temp_storage) <= decode_shared_bytes, "the ranking reuses the slab");
  static_assert(sizeof(float) * decode_warps * 2 * MaxExperts <= decode_shared_bytes, "the logits fit the slab");
  static_assert(decode_rows * decode_token_tile <= decode_block_threads, "a thread per output adds the segments");
  constexpr int outputs = decode_rows * decode_token_tile;
  __shared__ __align__(16) unsigned char shared[decode_shared_bytes];
  __shared__ float partial[decode_warps][outputs];  // [segment of the round][token][row]: s_j
  T* x_slab = reinterpret_cast<T*>(shared);  // [token of the tile][decode_slab_stride]
  const int lane = int(warp::lane_id()), warp_index = int(threadIdx.x / 32);
  const int g = lane / 4, q = lane % 4;
  const int64_t logits_stride = 2 * int64_t(num_experts);

  // Phase 1: rows [r0, r0 + 16) of [W_r; W_m] against tokens [t0, t0 + tile), round by round.
  const int r0 = int(blockIdx.x) * decode_rows;
  const int mask_rows = uses_mask(options) ? num_experts : 0;
  const int rows = num_experts + mask_rows + extra_router_rows(weights);
  const int64_t t0 = int64_t(blockIdx.y) * decode_token_tile;
  const int tile = int(tokens - t0 < decode_token_tile ? tokens - t0 : decode_token_tile);
  const T* w_low = router_row(weights, num_experts, mask_rows, rows, r0 + g, hidden_size);
  const T* w_high = router_row(weights, num_experts, mask_rows, rows, r0 + g + 8, hidden_size);
  const int segments = (hidden_size + router_segment_elements - 1) / router_segment_elements;
  float total = 0.0f;  // thread i < 128: output (token i / 16, row i mod 16)
  for (int s0 = 0; s0 < segments; s0 += decode_warps) {
    const int k0 = s0 * router_segment_elements;  // the round's first element
    const int segment = s0 + warp_index;
    int4 wv[2][router_segment_chunks];  // this lane's weight loads of its segment, all in flight
#pragma unroll
    for (int c = 0; c < router_segment_chunks; ++c) {
      const int k = segment * router_segment_elements + c * router_chunk_elements + 8 * q;
      wv[0][c] = w_low && k < hidden_size ? __ldg(reinterpret_cast<const int4*>(w_low + k)) : int4{};
      wv[1][c] = w_high && k < hidden_size ? __ldg(reinterpret_cast<const int4*>(w_high + k)) : int4{};
    }
    // The hidden states (and everything this kernel writes) belong to the kernels before it;
    // the router weights, streaming already, do not.
    if (s0 == 0) wait_for_dependencies();
    const int round_segments = segments - s0 < decode_warps ? segments - s0 : decode_warps;
    const int vectors = round_segments * router_segment_elements / 8;  // zeros past H and past the tile
    for (int i = int(threadIdx.x); i < decode_token_tile * vectors; i += decode_block_threads) {
      const int token = i / vectors, k = k0 + (i % vectors) * 8;
      const bool valid = token < tile && k < hidden_size;
      block::copy_async_16(x_slab + token * decode_slab_stride + (k - k0),
                           valid ? hidden + (t0 + token) * hidden_stride + k : hidden, valid);
    }
    block::copy_async_commit();
    block::copy_async_wait<0>();
    __syncthreads();
    if (warp_index < round_segments) {
      float acc[4] = {};
      const T* x_row = x_slab + g * decode_slab_stride + warp_index * router_segment_elements + 8 * q;
#pragma unroll
      for (int c = 0; c < router_segment_chunks; ++c) {
        const int4 xv = *reinterpret_cast<const int4*>(x_row + c * router_chunk_elements);
        warp::router_chunk_mma<T>(acc, wv[0][c], wv[1][c], xv);
      }
      // C fragment: rows g (v = 0, 1) and g + 8 (v = 2, 3) × tokens 2q, 2q + 1.
#pragma unroll
      for (int v = 0; v < 4; ++v) partial[warp_index][(2 * q + v % 2) * decode_rows + g + (v / 2) * 8] = acc[v];
    }
    __syncthreads();  // the partials are written; the next round overwrites the slab
    if (threadIdx.x < outputs) {
      for (int j = 0; j < round_segments; ++j) total += partial[j][threadIdx.x];  // in segment order
    }
  }
  launch_dependents();
  if (threadIdx.x < outputs) {
    const int token = int(threadIdx.x) / decode_rows, row = r0 + int(threadIdx.x) % decode_rows;
    if (token < tile && row < num_experts + mask_rows) {
      logits[(t0 + token) * logits_stride + row] = total;  // [r | z]: column = row
    } else if (token < tile && row < rows) {
      *extra_logit(weights, extras, row - num_experts - mask_rows, t0 + token) = total;
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
      z[j] = e < num_experts && uses_mask(options) ? __ldcg(logits + t * logits_stride + num_experts + e) : 0.0f;
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
