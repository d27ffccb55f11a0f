//! @file
//! Block-level stable ranking of (pair, expert) items: the counting-sort step of compaction
//! for one block's tile of pairs, with shared memory owned by the caller (as CUB's
//! TempStorage), so a routing kernel of your own can compact the pairs it produces.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/warp.cuh"
#include "beam/permute/warp_rank.cuh"

namespace beam::block {

//! Ranks a block's items by expert, stably in item order. The items are warp-striped: item
//! i of lane l in warp w is item  w·32·Items + i·32 + l  of the block. For an item with
//! expert e ≥ 0
//!   rank = #{earlier items with expert e},   counts[e] = #{items with expert e};
//! an item with expert < 0 (a skipped pair) gets rank −1 and counts nothing. Adding
//! offsets[e] (the exclusive scan of counts) to the ranks gives each item's row: a stable
//! counting sort of the tile.
//!
//! @tparam BlockThreads  threads of the (one-dimensional) block, a multiple of 32
//! @tparam Items         items per thread
//! @tparam MaxExperts    bound on the number of experts (temp_storage: warps · MaxExperts · 4 bytes)
//!
//! @code
//! using ranking = beam::block::expert_ranking<256, 4, 128>;
//! __shared__ ranking::temp_storage storage;
//! __shared__ int32_t counts[128];
//! int experts[4];       // experts[i]: expert of item (threadIdx.x / 32)·128 + i·32 + lane, or −1
//! int32_t ranks[4];
//! ranking(storage).rank(experts, ranks, num_experts, counts);
//! __syncthreads();      // counts complete; storage free for reuse
//! // items 0..7 with experts {1, −1, 0, 1, 1, 0, −1, 2} (in item order), the rest −1:
//! // ranks {0, −1, 0, 1, 2, 1, −1, 0}, counts {2, 3, 1}
//! @endcode
template <int BlockThreads, int Items, int MaxExperts>
class expert_ranking {
  static_assert(BlockThreads % 32 == 0 && BlockThreads > 0, "whole warps");
  static_assert(BlockThreads / 32 * MaxExperts * 4 <= 48 * 1024, "temp_storage fits static shared memory");
  static constexpr int warps = BlockThreads / 32;

 public:
  //! Shared memory of one ranking: a counter per (warp, expert).
  struct temp_storage {
    int32_t counters[warps][MaxExperts];
  };

  __device__ explicit expert_ranking(temp_storage& storage) : storage_(storage) {}

  //! Called by every thread of the block. Experts must be < num_experts ≤ MaxExperts.
  //! `counts[0, num_experts)` (shared or global memory) is written by the block: read it
  //! after a __syncthreads(), which also frees the storage for reuse.
  __device__ void rank(const int (&experts)[Items], int32_t (&ranks)[Items], int num_experts, int32_t* counts) {
    const int lane = int(warp::lane_id()), warp_index = int(threadIdx.x / 32);
    int32_t* mine = storage_.counters[warp_index];
    for (int e = lane; e < num_experts; e += 32) mine[e] = 0;
    __syncwarp();
#pragma unroll
    for (int i = 0; i < Items; ++i) ranks[i] = warp::rank_by_expert(experts[i], mine);  // rank inside the warp
    __syncthreads();
    for (int e = int(threadIdx.x); e < num_experts; e += BlockThreads) {  // scan of each expert over the warps
      int32_t total = 0;
      for (int w = 0; w < warps; ++w) {
        const int32_t c = storage_.counters[w][e];
        storage_.counters[w][e] = total;
        total += c;
      }
      counts[e] = total;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < Items; ++i) {
      if (experts[i] >= 0) ranks[i] += mine[experts[i]];
    }
  }

 private:
  temp_storage& storage_;
};

}  // namespace beam::block
