//! @file
//! Warp basics shared by every stage.
#pragma once

#include <cuda_runtime.h>

namespace beam::warp {

//! This thread's lane in its warp (%laneid), for any block shape.
__device__ inline unsigned lane_id() {
  unsigned lane;
  asm("mov.u32 %0, %%laneid;" : "=r"(lane));
  return lane;
}

}  // namespace beam::warp
