//! @file
//! Warp-level stable ranking of (pair, expert) items: the counting-sort step of compaction,
//! usable inside a user's own routing kernel with counters in caller-owned shared memory.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/warp.cuh"

namespace beam::warp {

//! Ranks the 32 lanes' items by expert, stably: lane l with expert e ≥ 0 gets
//!   rank = counters[e·stride] + #{lanes l' < l with expert e}
//! and afterwards counters[e·stride] has grown by #{lanes with expert e}. A lane with
//! expert < 0 (a skipped pair) gets −1 and counts nothing. Called by all 32 lanes; needs
//! sm_70+ (`__match_any_sync`). Counters may be in shared or global memory and must not be
//! touched by other warps meanwhile.
//!
//! Starting from counters = 0 and calling it on consecutive batches gives each item's rank
//! inside its expert in batch order; starting from the experts' first rows gives rows.
//!
//! @code
//! // experts per lane {2, −1, 0, 2, 0, ...}, counters {0, 0, 5}:
//! // ranks {5, −1, 0, 6, 1, ...}, counters afterwards {k, 0, 5 + m} (k, m: lanes with 0, 2)
//! @endcode
__device__ inline int32_t rank_by_expert(int expert, int32_t* counters, int64_t stride = 1) {
  const unsigned lane = lane_id();
  const unsigned kept = __ballot_sync(0xffffffffu, expert >= 0);
  const unsigned peers = __match_any_sync(0xffffffffu, expert) & kept;
  int32_t rank = -1;
  if (expert >= 0) rank = counters[expert * stride] + __popc(peers & ((1u << lane) - 1u));
  __syncwarp();
  if (expert >= 0 && (peers >> lane) == 1u) counters[expert * stride] += __popc(peers);  // highest peer
  __syncwarp();
  return rank;
}

}  // namespace beam::warp
