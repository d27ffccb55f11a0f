//! @file
//! beam: Binary Expert Activation Masking for Mixture-of-Experts layers.
//! Umbrella header: every public header of the library.
#pragma once

#include "beam/core/dtype.cuh"
#include "beam/core/error.cuh"
#include "beam/core/macros.cuh"
#include "beam/core/math.cuh"
#include "beam/core/warp.cuh"

#include "beam/routing/device_aux_losses.cuh"
#include "beam/routing/device_route.cuh"
#include "beam/routing/device_route_backward.cuh"
#include "beam/routing/device_route_decode.cuh"
#include "beam/routing/device_router_logits.cuh"
#include "beam/routing/device_router_logits_backward.cuh"
#include "beam/routing/options.cuh"
#include "beam/routing/warp_route.cuh"
#include "beam/routing/warp_route_backward.cuh"
#include "beam/routing/warp_router_logits.cuh"

#include "beam/permute/block_rank.cuh"
#include "beam/permute/device_combine.cuh"
#include "beam/permute/device_compact.cuh"
#include "beam/permute/device_gather.cuh"
#include "beam/permute/device_placement.cuh"
#include "beam/permute/warp_rank.cuh"

#include "beam/gemm/device_grouped_gemm.cuh"
#include "beam/gemm/device_quantize.cuh"
#include "beam/gemm/device_swiglu_backward.cuh"
#include "beam/gemm/device_weight_grad.cuh"
#include "beam/gemm/tile_mma.cuh"
#include "beam/gemm/tile_wgmma.cuh"

#include "beam/moe/device_moe.cuh"
#include "beam/moe/device_moe_training.cuh"

#include "beam/reference/gemm.cuh"
#include "beam/reference/matrix.cuh"
#include "beam/reference/moe.cuh"
#include "beam/reference/permute.cuh"
#include "beam/reference/routing.cuh"
#include "beam/reference/training.cuh"
