//! @file
//! Decode fast path: the router logits [x·W_rᵀ | x·W_mᵀ] and `route_and_mask` in one kernel
//! launch, for the few tokens of a decoding step.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "beam/core/error.cuh"
#include "beam/permute/device_compact.cuh"
#include "beam/routing/device_route.cuh"
#include "beam/routing/device_router_logits.cuh"
#include "beam/routing/options.cuh"

namespace beam::device {

//! Largest T and E `route_decode` takes; larger batches use `router_logits` and
//! `route_and_mask`, which route every token exactly as route_decode does.
inline constexpr int64_t max_decode_tokens = 64;
inline constexpr int max_decode_experts = 256;

//! Routes T ≤ 64 tokens from their hidden states x `[T, H]`: r = x·W_rᵀ and z = x·W_mᵀ with
//! the bits of `router_logits` (its summation order, so a token's routing is the same alone,
//! in any batch, and through router_logits + route_and_mask), then exactly `route_and_mask` on
//! the float logits r, z, with the same outputs. One kernel: blocks of 16 weight rows × 8
//! tokens (the grid grows with T), whose 16 warps take one 128-element segment of H each on
//! the tensor cores, the tile's hidden states staged in shared memory and 16-byte weight loads
//! all in flight, each row read from HBM once (and again from L2 for every further 8 tokens);
//! the last block to finish routes every token. Latency: three dependent global round trips
//! for H ≤ 2048 and T ≤ 16 (one more per further 2048 elements of H and per further 16 tokens).
//! Capturable in a CUDA graph; equal inputs give bitwise equal outputs.
//!
//! Two-phase workspace, as in CUB: with `workspace == nullptr` only `workspace_bytes` is set
//! (from T and E alone; it grows with T, so a size queried for T = 64 serves every smaller T).
//! Its first `workspace_counter_bytes` hold a completion counter: **zero them once** after
//! allocating the workspace; every call leaves the counter at zero, so no call needs a memset.
//! Nothing else may write them between calls. A counter that was not zero at a launch (never
//! zeroed, or overwritten) is caught when an arrival finds it at or above the grid's size: the
//! launch then traps (cudaErrorLaunchFailure) rather than route from partial logits; a smaller
//! stale value goes unnoticed.
//!
//! @tparam T  __half or __nv_bfloat16 (hidden states and weights)
//! @return cudaErrorInvalidValue, writing nothing, when T ∉ [0, 64]; E ∉ [1, 256]; K, groups or
//!         rule invalid as for route_and_mask; H ∉ [1, 2³⁰]; T > 0 and null `hidden`, weights the options need,
//!         `topk_ids` or `topk_weights`; a shared or constant gate (router_logits and moe_forward compute
//!         it); a pointer not 16-byte aligned, or H or a row stride
//!         not a multiple of 16 bytes' worth of elements (or a stride < H); `workspace_bytes`
//!         below the queried size (a query checks T, E, K and H only); else the launch's status.
//!
//! @code
//! size_t bytes = 0;
//! beam::device::route_decode<__nv_bfloat16>(nullptr, bytes, x, H, T, H, w, E, options, out);
//! // allocate `bytes` once, zero its first workspace_counter_bytes once, then per decoding step:
//! beam::device::route_decode(workspace, bytes, x, H, T, H, w, E, options, out, stream);
//! @endcode
template <class T>
[[nodiscard]] cudaError_t route_decode(void* workspace, size_t& workspace_bytes, const T* hidden,
                                       int64_t hidden_stride, int64_t tokens, int hidden_size,
                                       const router_weights<T>& weights, int num_experts,
                                       const routing_options& options, const routing_outputs& out,
                                       cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/routing/detail/dispatch.cuh"
#include "beam/routing/detail/route_decode_kernel.cuh"

namespace beam::device {

namespace detail {

inline cudaError_t check_route_decode_shape(int64_t tokens, int hidden_size, int num_experts,
                                           const routing_options& options) {
  if (tokens < 0 || tokens > max_decode_tokens || num_experts < 1 || num_experts > max_decode_experts ||
      hidden_size < 1 || hidden_size > max_extent) {
    return cudaErrorInvalidValue;
  }
  if (options.top_k < 1 || options.top_k > max_route_top_k || options.top_k > num_experts) return cudaErrorInvalidValue;
  if (!valid_groups(options, num_experts)) return cudaErrorInvalidValue;
  if (!valid_rule(options)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

template <class T>
cudaError_t check_route_decode_arrays(const T* hidden, int64_t hidden_stride, int64_t tokens, int hidden_size,
                                      const router_weights<T>& weights, const routing_options& options,
                                      const routing_outputs& out) {
  if (tokens == 0) return cudaSuccess;
  if (const cudaError_t status =
          check_router_inputs(hidden, hidden_stride, hidden_size, weights, uses_mask(options));
      status != cudaSuccess) {
    return status;
  }
  if (!out.topk_ids || !out.topk_weights) return cudaErrorInvalidValue;
  return cudaSuccess;
}


//! route_decode's launch on checked arguments (T > 0); with `Compact` the last block also writes
//! `compacted`, compact's outputs for `compaction` (the routing it made, out.topk_ids: its
//! local experts; single-block compaction, no layouts); the extra rows' logits (a shared gate,
//! constant experts) go to `extras`.
template <bool Compact, class T>
cudaError_t launch_route_decode(void* workspace, const T* hidden, int64_t hidden_stride, int64_t tokens,
                                int hidden_size, const router_weights<T>& weights, int num_experts,
                                const routing_options& options, const routing_outputs& out,
                                const compaction_input& compaction, const compaction_outputs& compacted,
                                const logits_outputs& extras, cudaStream_t stream) {
  namespace bd = beam::detail;
  const bd::decode_workspace layout(tokens, num_experts);
  const int rows = (uses_mask(options) ? 2 * num_experts : num_experts) + bd::extra_router_rows(weights);
  const dim3 grid(unsigned((rows + bd::decode_rows - 1) / bd::decode_rows),
                  unsigned((tokens + bd::decode_token_tile - 1) / bd::decode_token_tile));
  const bd::compact_plan plan(compaction);
  return bd::dispatch_max_experts(num_experts, [&](auto max_experts) {
    constexpr int bound = decltype(max_experts)::value;
    if constexpr (bound > max_decode_experts) {
      return cudaErrorInvalidValue;  // unreachable: E was checked
    } else {
      return bd::launch_dependent(bd::route_decode_kernel<bound, T, Compact>, grid, bd::decode_block_threads, 0,
                                  stream, hidden, hidden_stride, tokens, hidden_size, weights, num_experts, options,
                                  out, layout.logits(workspace), extras, layout.arrivals(workspace), plan,
                                  compacted);
    }
  });
}

}  // namespace detail

template <class T>
cudaError_t route_decode(void* workspace, size_t& workspace_bytes, const T* hidden, int64_t hidden_stride,
                         int64_t tokens, int hidden_size, const router_weights<T>& weights, int num_experts,
                         const routing_options& options, const routing_outputs& out, cudaStream_t stream) {
  static_assert(sizeof(T) == 2, "16-bit hidden states and weights (the tensor cores' bf16 or fp16)");
  if (const cudaError_t status = detail::check_route_decode_shape(tokens, hidden_size, num_experts, options);
      status != cudaSuccess) {
    return status;
  }
  if (beam::detail::extra_router_rows(weights) != 0) return cudaErrorInvalidValue;  // router_logits' and moe_forward's
  const beam::detail::decode_workspace layout(tokens, num_experts);
  if (workspace == nullptr) {
    workspace_bytes = layout.bytes;
    return cudaSuccess;
  }
  if (workspace_bytes < layout.bytes) return cudaErrorInvalidValue;
  if (const cudaError_t status =
          detail::check_route_decode_arrays(hidden, hidden_stride, tokens, hidden_size, weights, options, out);
      status != cudaSuccess) {
    return status;
  }
  if (const cudaError_t status = detail::zero_telemetry(out, num_experts, stream); status != cudaSuccess) {
    return status;
  }
  if (tokens == 0) return cudaSuccess;
  return detail::launch_route_decode<false>(workspace, hidden, hidden_stride, tokens, hidden_size, weights,
                                            num_experts, options, out, {}, {}, {}, stream);
}

}  // namespace beam::device
