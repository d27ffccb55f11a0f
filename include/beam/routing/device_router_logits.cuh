//! @file
//! Device-level router logits [x·W_rᵀ | x·W_mᵀ] for T tokens, in the one summation order of
//! beam/routing/warp_router_logits.cuh that route_decode shares: batch-invariant routing.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/error.cuh"

namespace beam::device {

//! The two router matrices, W_r and W_m, each `[E, H]` row-major (the layout of a linear
//! layer's weight, out × in) with its row stride (elements).
template <class WeightT>
struct router_weights {
  const WeightT* router = nullptr;
  const WeightT* mask = nullptr;  //!< unused unless the rule is the mask
  int64_t router_stride = 0;
  int64_t mask_stride = 0;
  const WeightT* shared_gate = nullptr;  //!< optional w_g `[H]`: Qwen2-MoE's shared expert gate,
                                         //!< one more row (router_logits and moe_forward only)
  const WeightT* constant_gate = nullptr;  //!< optional W_c `[2C, H]` (rows H apart): the C constant
                                           //!< experts' α logits, 2C more rows (likewise)
  int constant_experts = 0;                //!< C
};

//! Float router and mask logits `[T, E]` each with its own row stride (elements), e.g. both
//! halves of one `[T, 2E]` array: `{logits, logits + E, 2 * E, 2 * E}`; route_and_mask reads
//! them as `routing_logits<float>`.
struct logits_outputs {
  float* router = nullptr;
  float* mask = nullptr;  //!< unused unless the rule is the mask
  int64_t router_stride = 0;
  int64_t mask_stride = 0;
  float* shared_gate = nullptr;    //!< `[T]`: x·w_g, with router_weights::shared_gate
  float* constant_gate = nullptr;  //!< `[T, 2C]` (row stride 2C): x·W_cᵀ, with router_weights::constant_gate
};

//! Largest E router_logits takes (its 2E rows tile a grid dimension of 2¹⁶ − 1 blocks).
inline constexpr int max_router_experts = 1 << 20;

//! r = x·W_rᵀ and, `with_mask` (`uses_mask(options)`), z = x·W_mᵀ (and x·w_g with a shared
//! gate, x·W_cᵀ with constant experts) for T tokens, fp32 accumulation on the tensor cores in the order of
//! warp_router_logits.cuh: a token's logits have the same bits whatever T, its place in the
//! batch and the other tokens, and equal route_decode's (so its routing does too), on one
//! architecture. One launch of 64 × 64 output tiles.
//! Capturable in a CUDA graph.
//!
//! @tparam T  __half or __nv_bfloat16 (hidden states and weights)
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, E ∉ [1, 2²⁰] or H ∉ [1, 2³⁰];
//!         more than 2²² − 64 rows in all (E, E mask rows, the gates' 1 + 2C);
//!         T > 0 and a null `hidden`, weight matrix the mask needs or output; a hidden or weight pointer not
//!         16-byte aligned, or H or a row stride not a multiple of 8 (or a stride < H); an
//!         output stride < E; a shared gate not 16-byte aligned or without its output; C ∉
//!         [0, 2²⁰], or C > 0 with W_c null or not 16-byte aligned or without its output; else
//!         the launch's status. T = 0 writes nothing.
//!
//! @code
//! // x [T, H], W_r and W_m [E, H] (bf16) → logits [T, 2E] (r | z), then the routing:
//! beam::device::router_logits<__nv_bfloat16>(x, H, T, H, {w_r, w_m, H, H}, E, true,
//!                                            {logits, logits + E, 2 * E, 2 * E}, stream);
//! beam::device::route_and_mask<float>({logits, logits + E, 2 * E, 2 * E}, T, E, options, out, stream);
//! @endcode
template <class T>
[[nodiscard]] cudaError_t router_logits(const T* hidden, int64_t hidden_stride, int64_t tokens, int hidden_size,
                                        const router_weights<T>& weights, int num_experts, bool with_mask,
                                        const logits_outputs& out, cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/routing/detail/router_logits_kernel.cuh"

namespace beam::device {

namespace detail {

//! The router inputs both router_logits and route_decode take (T > 0): 16-byte aligned rows
//! whose length and strides are whole 16-byte vectors.
template <class T>
cudaError_t check_router_inputs(const T* hidden, int64_t hidden_stride, int hidden_size,
                                const router_weights<T>& weights, bool with_mask) {
  constexpr int64_t vector = 16 / sizeof(T);
  const auto valid_matrix = [&](const T* data, int64_t stride) {
    return data && reinterpret_cast<uintptr_t>(data) % 16 == 0 && stride >= hidden_size && stride % vector == 0;
  };
  if (hidden_size % vector != 0 || !valid_matrix(hidden, hidden_stride)) return cudaErrorInvalidValue;
  if (!valid_matrix(weights.router, weights.router_stride)) return cudaErrorInvalidValue;
  if (with_mask && !valid_matrix(weights.mask, weights.mask_stride)) return cudaErrorInvalidValue;
  if (weights.shared_gate && reinterpret_cast<uintptr_t>(weights.shared_gate) % 16 != 0) return cudaErrorInvalidValue;
  if (weights.constant_experts < 0 || weights.constant_experts > max_router_experts ||
      (weights.constant_experts > 0 && !valid_matrix(weights.constant_gate, hidden_size))) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

}  // namespace detail

template <class T>
cudaError_t router_logits(const T* hidden, int64_t hidden_stride, int64_t tokens, int hidden_size,
                          const router_weights<T>& weights, int num_experts, bool with_mask,
                          const logits_outputs& out, cudaStream_t stream) {
  static_assert(sizeof(T) == 2, "16-bit hidden states and weights (the tensor cores' bf16 or fp16)");
  if (tokens < 0 || num_experts < 1 || num_experts > max_router_experts || hidden_size < 1 ||
      hidden_size > max_extent) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  if (const cudaError_t status = detail::check_router_inputs(hidden, hidden_stride, hidden_size, weights, with_mask);
      status != cudaSuccess) {
    return status;
  }
  if (!out.router || out.router_stride < num_experts) return cudaErrorInvalidValue;
  if (with_mask && (!out.mask || out.mask_stride < num_experts)) return cudaErrorInvalidValue;
  if (weights.shared_gate && !out.shared_gate) return cudaErrorInvalidValue;
  if (weights.constant_experts > 0 && !out.constant_gate) return cudaErrorInvalidValue;
  namespace bd = beam::detail;
  const int mask_rows = with_mask ? num_experts : 0;
  const int64_t rows = int64_t(num_experts) + mask_rows + bd::extra_router_rows(weights);
  const int64_t token_tiles = (tokens + bd::router_tile - 1) / bd::router_tile;
  const int64_t row_tiles = (rows + bd::router_tile - 1) / bd::router_tile;
  if (token_tiles > 0x7fffffff) return cudaErrorInvalidValue;  // T > 2³⁷: beyond any device's memory
  if (row_tiles > 0xffff) return cudaErrorInvalidValue;         // grid y: 2E + 1 + 2C rows ≤ 2²² − 64
  return bd::launch_dependent(bd::router_logits_kernel<T>, dim3(unsigned(token_tiles), unsigned(row_tiles)),
                              bd::router_tile_threads, 0, stream, hidden, hidden_stride, tokens, hidden_size, weights,
                              num_experts, mask_rows, int(rows), out);
}

}  // namespace beam::device
