//! @file
//! Warp, launch and indexing basics shared by every stage.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace beam::warp {

//! This thread's lane in its warp (%laneid), for any block shape.
__device__ inline unsigned lane_id() {
  unsigned lane;
  asm("mov.u32 %0, %%laneid;" : "=r"(lane));
  return lane;
}

namespace detail {

//! Σ over the warp in a fixed butterfly order (every lane gets the same bits).
__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

}  // namespace detail

}  // namespace beam::warp

namespace beam::detail {

//! Blocks of `block_threads` for one warp per item over `items` (at least 1, at most 65535:
//! the kernels grid-stride beyond).
inline unsigned warp_per_item_grid(int64_t items, int block_threads) {
  const int64_t warps_per_block = block_threads / 32;
  const int64_t blocks = (items + warps_per_block - 1) / warps_per_block;
  return unsigned(blocks < 1 ? 1 : blocks < 65535 ? blocks : 65535);
}

//! Blocks of `block_threads` for one thread per item over `items` (at least 1, at most 2³¹ − 1:
//! the kernels grid-stride beyond).
inline unsigned thread_per_item_grid(int64_t items, int block_threads) {
  const int64_t blocks = (items + block_threads - 1) / block_threads;
  return unsigned(blocks < 1 ? 1 : blocks < INT32_MAX ? blocks : INT32_MAX);
}

//! Index of the last of `n` non-decreasing starts that is ≤ value (starts[0] = 0 ≤ value).
__host__ __device__ inline int last_start_at_or_below(const int32_t* starts, int n, int32_t value) {
  int lo = 0, hi = n;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (starts[mid] <= value) lo = mid; else hi = mid;
  }
  return lo;
}

//! n rounded up to 256 bytes: the alignment of every array carved out of a workspace.
inline size_t workspace_align(size_t n) { return (n + 255) / 256 * 256; }

}  // namespace beam::detail

namespace beam::device {

//! Bytes at the start of a workspace of route_decode, moe_forward or moe_experts_forward that
//! hold completion counters: zero them once after allocating the workspace (or zero all of it);
//! every call leaves them at zero, so that no call needs a memset.
inline constexpr size_t workspace_counter_bytes = 2048;

}  // namespace beam::device
