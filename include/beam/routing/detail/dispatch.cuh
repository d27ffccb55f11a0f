//! @file
//! Runtime E → compile-time register bound for the routing kernels.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

namespace beam::detail {

//! Calls `launch(std::integral_constant<int, MaxExperts>{})` with the smallest of
//! 32, 64, 128, 256, 512 that holds E (each lane keeps MaxExperts / 32 logits in registers);
//! cudaErrorInvalidValue for E outside [1, 512].
template <class Launch>
cudaError_t dispatch_max_experts(int num_experts, Launch&& launch) {
  if (num_experts < 1) return cudaErrorInvalidValue;
  if (num_experts <= 32) return launch(std::integral_constant<int, 32>{});
  if (num_experts <= 64) return launch(std::integral_constant<int, 64>{});
  if (num_experts <= 128) return launch(std::integral_constant<int, 128>{});
  if (num_experts <= 256) return launch(std::integral_constant<int, 256>{});
  if (num_experts <= 512) return launch(std::integral_constant<int, 512>{});
  return cudaErrorInvalidValue;
}

}  // namespace beam::detail
