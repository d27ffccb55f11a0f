//! @file
//! The router logits' one summation order, shared by every kernel that computes them, so that a
//! token's logits (and so its routing) have the same bits whatever the batch, the token's place
//! in it, and the path (route_decode at T ≤ 64, router_logits at any T):
//!
//!   logit(t, e) = (…((0 + s_0) + s_1) + …) + s_{S−1},   S = ⌈H / 128⌉, float additions,
//!   s_j = the fp32 `mma.sync.m16n8k16` chain (from +0) over the 8 k16 steps of elements
//!         [128·j, 128·j + 128) of x_t and w_e (zero past H): 32-element chunk c feeds steps
//!         2c (its elements 8q..8q+3, q = 0..3) and 2c + 1 (elements 8q+4..8q+7); of a step's
//!         four elements from q, the first two take k slots 2q, 2q+1 and the others 8+2q, 9+2q,
//!         the same slots for x and w.
//!
//! The mapping lets each lane feed both steps of a chunk from one 16-byte load per weight row
//! and token (q = lane mod 4). Segments of 128 keep the dependent mma chain short (8 steps) for
//! the decode kernel, whose warps take one segment each; the tile kernel adds each segment's
//! chain into its total as it goes. Within one architecture the tensor core's result for an
//! output depends only on its row, column and accumulator input, so the order above fixes the
//! bits; across architectures it may not (the mma's internal order is the hardware's).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/gemm/tile_mma.cuh"

namespace beam::detail {

constexpr int router_segment_elements = 128;  //!< elements of one mma chain s_j
constexpr int router_chunk_elements = 32;     //!< elements of one 16-byte load per lane, two k16 steps
constexpr int router_segment_chunks = router_segment_elements / router_chunk_elements;

}  // namespace beam::detail

namespace beam::warp {

//! acc += the two k16 steps of one 32-element chunk for weight rows g and g + 8 and token g
//! (g = lane / 4; acc is the m16n8 C fragment: rows g, g + 8 × tokens 2q, 2q + 1, q = lane mod 4),
//! from this lane's 16-byte loads of elements 8q..8q+7 of the chunk: `w_low` (row g),
//! `w_high` (row g + 8) and `x` (token g).
//! @tparam T  __nv_bfloat16 or __half
template <class T>
__device__ inline void router_chunk_mma(float (&acc)[4], const int4& w_low, const int4& w_high, const int4& x) {
  const auto word = [](const int4& v, int i) { return uint32_t(i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w); };
#pragma unroll
  for (int step = 0; step < 2; ++step) {
    const int first = 2 * step;  // words 0, 1: step 2c; words 2, 3: step 2c + 1
    const uint32_t a[4] = {word(w_low, first), word(w_high, first), word(w_low, first + 1),
                           word(w_high, first + 1)};
    const uint32_t b[2] = {word(x, first), word(x, first + 1)};
    mma_m16n8k16<T>(acc, a, b);
  }
}

}  // namespace beam::warp
