//! @file
//! Device-level routing: `route_and_mask` over T tokens on a stream (formulas, tie and
//! NaN/Inf rules: beam/reference/routing.cuh, which it matches).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/routing/options.cuh"

namespace beam::device {

//! Router and mask logits, `[T, E]` each with its own row stride (elements), e.g. both halves
//! of one `[T, 2E]` GEMM output: `{logits, logits + E, 2 * E, 2 * E}`.
template <class LogitT>
struct routing_logits {
  const LogitT* router = nullptr;
  const LogitT* mask = nullptr;  //!< unused unless the rule is the mask
  int64_t router_stride = 0;
  int64_t mask_stride = 0;
};

//! Outputs of `route_and_mask`, all `[T, K]` row-major in device memory except telemetry.
struct routing_outputs {
  int32_t* topk_ids = nullptr;        //!< required: expert id, −1 for masked or empty slots
  float* topk_weights = nullptr;      //!< required: ĝ = g · m̂
  float* mask_probs = nullptr;        //!< optional: m = σ(z) (for L_reg)
  int32_t* candidate_ids = nullptr;   //!< optional: c, masked candidates included (backward)
  int32_t* expert_counts = nullptr;   //!< optional telemetry `[E]`: kept pairs per expert
  unsigned long long* active_pairs = nullptr;  //!< optional telemetry: kept pairs in total
  int32_t* topk_ids_or_zero = nullptr;  //!< optional: topk_ids with expert 0 for −1 (ĝ = 0 there), for
                                        //!< an engine kernel that cannot take −1 ids (SGLang's
                                        //!< convention); not for compact, which would give those pairs rows
};

//! Largest E and K `route_and_mask` supports.
inline constexpr int max_route_experts = 512;
inline constexpr int max_route_top_k = 16;

//! Routes T tokens: Top-K candidates, gate weights and the routing rule (the BEAM mask, top-p,
//! threshold, a cap), one warp per token.
//! Telemetry outputs, when given, are zeroed first and then counted on the device (no host
//! synchronisation; capturable in a CUDA graph). Equal inputs give bitwise equal outputs.
//!
//! @tparam LogitT  float, __half or __nv_bfloat16
//! @return cudaErrorInvalidValue, writing nothing, when T < 0; E ∉ [1, 512]; K ∉ [1, min(E, 16)];
//!         T > 0 and a null router pointer, a null mask pointer under the mask rule, or a null
//!         `topk_ids` / `topk_weights`; a row stride < E; groups that do not fit E
//!         (`valid_groups`); a malformed rule (`valid_rule`); `expert_counts` (int32) with
//!         T > 2³¹ − 1; else the launch's status.
//!         T = 0 succeeds (telemetry zeroed).
//!
//! @code
//! // E = 4, K = 2, r = {1, 3, 2, 0}, z = {0.5, −1, 0, 2}:
//! // topk_ids = {−1, 2}, topk_weights = {0, softmax(r)_2}, candidate_ids = {1, 2}
//! @endcode
template <class LogitT>
[[nodiscard]] cudaError_t route_and_mask(const routing_logits<LogitT>& logits, int64_t tokens, int num_experts,
                                         const routing_options& options, const routing_outputs& out,
                                         cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/routing/detail/dispatch.cuh"
#include "beam/routing/detail/route_kernel.cuh"

namespace beam::device {

namespace detail {

//! The argument checks of route_and_mask (host only, no CUDA call).
template <class LogitT>
cudaError_t check_route_arguments(const routing_logits<LogitT>& logits, int64_t tokens, int num_experts,
                                  const routing_options& options, const routing_outputs& out) {
  if (tokens < 0 || num_experts < 1 || num_experts > max_route_experts) return cudaErrorInvalidValue;
  if (options.top_k < 1 || options.top_k > max_route_top_k || options.top_k > num_experts) return cudaErrorInvalidValue;
  if (!valid_groups(options, num_experts)) return cudaErrorInvalidValue;
  if (!valid_rule(options)) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  if (!logits.router || logits.router_stride < num_experts) return cudaErrorInvalidValue;
  if (uses_mask(options) && (!logits.mask || logits.mask_stride < num_experts)) return cudaErrorInvalidValue;
  if (!out.topk_ids || !out.topk_weights) return cudaErrorInvalidValue;
  if (out.expert_counts && tokens > INT32_MAX) return cudaErrorInvalidValue;  // a count reaches T
  return cudaSuccess;
}

//! Zeroes the telemetry outputs that are given (they are then counted with atomics).
inline cudaError_t zero_telemetry(const routing_outputs& out, int num_experts, cudaStream_t stream) {
  if (out.expert_counts) {
    if (const cudaError_t status = cudaMemsetAsync(out.expert_counts, 0, sizeof(int32_t) * num_experts, stream);
        status != cudaSuccess) {
      return status;
    }
  }
  if (out.active_pairs) return cudaMemsetAsync(out.active_pairs, 0, sizeof(unsigned long long), stream);
  return cudaSuccess;
}

}  // namespace detail

template <class LogitT>
cudaError_t route_and_mask(const routing_logits<LogitT>& logits, int64_t tokens, int num_experts,
                           const routing_options& options, const routing_outputs& out, cudaStream_t stream) {
  if (const cudaError_t status = detail::check_route_arguments(logits, tokens, num_experts, options, out);
      status != cudaSuccess) {
    return status;
  }
  if (const cudaError_t status = detail::zero_telemetry(out, num_experts, stream); status != cudaSuccess) {
    return status;
  }
  if (tokens == 0) return cudaSuccess;
  return beam::detail::dispatch_max_experts(num_experts, [&](auto max_experts) {
    return beam::detail::launch_dependent(beam::detail::route_and_mask_kernel<decltype(max_experts)::value, LogitT>,
                                          beam::detail::warp_per_item_grid(tokens, beam::detail::route_block_threads),
                                          beam::detail::route_block_threads, 0, stream, logits, tokens, num_experts,
                                          options, out);
  });
}

}  // namespace beam::device
