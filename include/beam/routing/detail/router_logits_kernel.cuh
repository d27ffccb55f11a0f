//! @file
//! Kernel of beam::device::router_logits: block (i, j) computes tokens [64·i, 64·i + 64) ×
//! rows [64·j, 64·j + 64) of [W_r; W_m; w_g; W_c] (2 × 2 warps of 32 × 32), staging 64-deep slices of
//! both operands through shared tiles with cp.async (two stages in flight), each lane
//! loading 16-byte fragments for warp::router_chunk_mma; every 128 of H (two slices) the
//! segment's chain is added into the total, as warp_router_logits.cuh orders it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/gemm/tile_mma.cuh"
#include "beam/routing/device_router_logits.cuh"
#include "beam/routing/warp_router_logits.cuh"

namespace beam::detail {

constexpr int router_tile = 64;          //!< tokens and rows of a block's output tile
constexpr int router_tile_threads = 128;  //!< 2 × 2 warps of 32 rows × 32 tokens
constexpr int router_slice = 64;          //!< elements of H per stage: half a segment

//! Element offset of 16-byte chunk `chunk` of row `row` in a shared tile of 64-element rows:
//! odd rows swap the halves of the row, so that the two rows of a 16-byte load phase (8 lanes:
//! rows g, g + 1 × chunks 4c..4c+3) fall in distinct banks.
__device__ constexpr int router_tile_offset(int row, int chunk) { return (row * 8 + (chunk ^ ((row & 1) << 2))) * 8; }

//! Rows after the E router and mask rows: the shared gate's, then the constant experts' 2C.
template <class T>
__host__ __device__ inline int extra_router_rows(const device::router_weights<T>& weights) {
  return (weights.shared_gate ? 1 : 0) + 2 * weights.constant_experts;
}

//! Row `row` of [W_r; W_m; w_g; W_c] (E router rows, `mask_rows` mask rows, then the shared
//! gate's row and W_c's rows if any: `rows` in all), or null past the last row.
template <class T>
__device__ inline const T* router_row(const device::router_weights<T>& weights, int num_experts, int mask_rows,
                                      int rows, int row, int hidden_size) {
  if (row >= rows) return nullptr;
  if (row < num_experts) return weights.router + int64_t(row) * weights.router_stride;
  if (row < num_experts + mask_rows) return weights.mask + int64_t(row - num_experts) * weights.mask_stride;
  int extra = row - num_experts - mask_rows;
  if (weights.shared_gate && extra-- == 0) return weights.shared_gate;
  return weights.constant_gate + int64_t(extra) * hidden_size;
}

//! Where token t's logit of an extra row (row − E − mask_rows = `extra`: the shared gate's, then
//! W_c's) goes.
template <class T>
__device__ inline float* extra_logit(const device::router_weights<T>& weights, const device::logits_outputs& out,
                                     int extra, int64_t t) {
  if (weights.shared_gate && extra-- == 0) return out.shared_gate + t;
  return out.constant_gate + t * 2 * weights.constant_experts + extra;
}

template <class T>
__global__ void __launch_bounds__(router_tile_threads)
    router_logits_kernel(const T* __restrict__ hidden, int64_t hidden_stride, int64_t tokens, int hidden_size,
                         device::router_weights<T> weights, int num_experts, int mask_rows, int rows,
                         device::logits_outputs out) {
  constexpr int chunks = router_slice / 8;  // 16-byte chunks per tile row
  __shared__ __align__(16) T w_tile[2][router_tile * router_slice];
  __shared__ __align__(16) T x_tile[2][router_tile * router_slice];
  const int lane = int(threadIdx.x % 32), warp_index = int(threadIdx.x / 32);
  const int g = lane / 4, q = lane % 4;
  const int64_t t0 = int64_t(blockIdx.x) * router_tile;
  const int r0 = int(blockIdx.y) * router_tile;
  const int warp_row = (warp_index / 2) * 32, warp_token = (warp_index % 2) * 32;

  // This thread's copies: tile rows threadIdx.x / 8 + 16·i, chunk threadIdx.x mod 8, for W and x.
  const int copy_chunk = int(threadIdx.x % chunks), copy_row = int(threadIdx.x / chunks);
  constexpr int copies = router_tile * chunks / router_tile_threads;
  const T* w_rows[copies];
  const T* x_rows[copies];
#pragma unroll
  for (int i = 0; i < copies; ++i) {
    const int r = copy_row + i * (router_tile_threads / chunks);
    w_rows[i] = router_row(weights, num_experts, mask_rows, rows, r0 + r, hidden_size);
    x_rows[i] = t0 + r < tokens ? hidden + (t0 + r) * hidden_stride : nullptr;
  }
  const auto load_slice = [&](int slice, int stage) {
    const int k = slice * router_slice + copy_chunk * 8;
#pragma unroll
    for (int i = 0; i < copies; ++i) {
      const int r = copy_row + i * (router_tile_threads / chunks);
      const int offset = router_tile_offset(r, copy_chunk);
      const bool in_h = k < hidden_size;  // H is whole chunks: a chunk is all in or all out
      block::copy_async_16(w_tile[stage] + offset, w_rows[i] && in_h ? w_rows[i] + k : hidden, w_rows[i] && in_h);
      block::copy_async_16(x_tile[stage] + offset, x_rows[i] && in_h ? x_rows[i] + k : hidden, x_rows[i] && in_h);
    }
    block::copy_async_commit();
  };

  float total[2][4][4] = {}, segment[2][4][4] = {};
  const int slices = (hidden_size + router_segment_elements - 1) / router_segment_elements * 2;
  wait_for_dependencies();
  load_slice(0, 0);
  for (int slice = 0; slice < slices; ++slice) {
    const int stage = slice % 2;
    if (slice + 1 < slices) {
      load_slice(slice + 1, 1 - stage);
      block::copy_async_wait<1>();
    } else {
      block::copy_async_wait<0>();
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < router_slice / router_chunk_elements; ++c) {
      int4 w_low[2], w_high[2], x[4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int r = warp_row + 16 * mi + g;
        w_low[mi] = *reinterpret_cast<const int4*>(w_tile[stage] + router_tile_offset(r, 4 * c + q));
        w_high[mi] = *reinterpret_cast<const int4*>(w_tile[stage] + router_tile_offset(r + 8, 4 * c + q));
      }
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        x[ni] = *reinterpret_cast<const int4*>(x_tile[stage] + router_tile_offset(warp_token + 8 * ni + g, 4 * c + q));
      }
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) warp::router_chunk_mma<T>(segment[mi][ni], w_low[mi], w_high[mi], x[ni]);
      }
    }
    if (slice % 2 == 1) {  // a segment ends: s_j joins the total, the next chain starts from +0
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
          for (int v = 0; v < 4; ++v) {
            total[mi][ni][v] += segment[mi][ni][v];
            segment[mi][ni][v] = 0.0f;
          }
        }
      }
    }
    __syncthreads();  // the next load overwrites this stage
  }
  launch_dependents();

  // C fragment: rows g (v = 0, 1) and g + 8 (v = 2, 3) × tokens 2q, 2q + 1.
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const int row = r0 + warp_row + 16 * mi + g + (v / 2) * 8;
      if (row >= rows) continue;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int64_t token = t0 + warp_token + 8 * ni + 2 * q + v % 2;
        if (token >= tokens) continue;
        float* logit = row < num_experts               ? out.router + token * out.router_stride + row
                       : row < num_experts + mask_rows ? out.mask + token * out.mask_stride + (row - num_experts)
                                                       : extra_logit(weights, out, row - num_experts - mask_rows, token);
        *logit = total[mi][ni][v];
      }
    }
  }
}

}  // namespace beam::detail
