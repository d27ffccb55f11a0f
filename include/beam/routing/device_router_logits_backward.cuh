//! @file
//! Device-level backward of router_logits (r = x·W_rᵀ, z = x·W_mᵀ), from route_backward's
//! ∂L/∂r and ∂L/∂z `[T, E]` (float):
//!   ∂L/∂W_r = ∂L/∂rᵀ · x,   ∂L/∂W_m = ∂L/∂zᵀ · x                 (written, float)
//!   ∂L/∂x  += ∂L/∂r · W_r + ∂L/∂z · W_m                          (added to ∂L/∂x, in float, rounded once)
//! in fp32 on the CUDA cores (the logits' gradients stay fp32: the mask router's signal is the
//! point of BEAM), each output summed by one thread in a fixed order: bitwise deterministic, and
//! a token's ∂L/∂x independent of the batch around it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/error.cuh"
#include "beam/routing/detail/router_logits_backward_kernel.cuh"
#include "beam/routing/device_route_backward.cuh"
#include "beam/routing/device_router_logits.cuh"

namespace beam::device {

//! ∂L/∂W_r and ∂L/∂W_m `[E, H]` (float) with their row strides; a null matrix is not computed.
struct router_weight_gradients {
  float* router = nullptr;
  float* mask = nullptr;  //!< unused unless with_mask
  int64_t router_stride = 0;
  int64_t mask_stride = 0;
};

//! The backward of router_logits for T tokens (file comment): `d_logits` are ∂L/∂r and (with
//! the mask) ∂L/∂z; `d_hidden` `[T, H]` (optional) receives ∂L/∂x added to what it holds, and
//! `out` the weight gradients it names. The shared gate and constant experts' rows of
//! router_weights are not differentiated here.
//!
//! @tparam T  __half or __nv_bfloat16 (hidden states and weights)
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, E ∉ [1, 2²⁰] or H ∉ [1, 2³⁰];
//!         a weight gradient stride < H; T > 0
//!         and the hidden states or weights refused as router_logits refuses them, a null or
//!         narrow (stride < E) logit gradient that ∂L/∂x or a wanted weight gradient needs, or
//!         a d_hidden stride < H; else the status of the first failing launch. T = 0 writes
//!         zero weight gradients and reads nothing.
template <class T>
[[nodiscard]] cudaError_t router_logits_backward(const T* hidden, int64_t hidden_stride, int64_t tokens,
                                                 int hidden_size, const router_weights<T>& weights, int num_experts,
                                                 bool with_mask, const routing_gradients<float>& d_logits,
                                                 T* d_hidden, int64_t d_hidden_stride,
                                                 const router_weight_gradients& out, cudaStream_t stream = nullptr) {
  static_assert(sizeof(T) == 2, "16-bit hidden states and weights");
  namespace bd = beam::detail;
  if (tokens < 0 || num_experts < 1 || num_experts > max_router_experts || hidden_size < 1 ||
      hidden_size > max_extent) {
    return cudaErrorInvalidValue;
  }
  const bool wants_mask = with_mask && out.mask;
  if ((out.router && out.router_stride < hidden_size) || (wants_mask && out.mask_stride < hidden_size)) {
    return cudaErrorInvalidValue;
  }
  constexpr int tile = bd::router_backward_tile;
  // E ≤ 2²⁰: at most 2¹⁴ expert tiles; token tiles beyond a grid dimension are strided over
  const int64_t h_tiles = (hidden_size + tile - 1) / tile, e_tiles = (num_experts + tile - 1) / tile,
                t_tiles = (tokens + tile - 1) / tile;
  if (tokens == 0) d_hidden = nullptr;  // the weight gradients' zeros only
  if (tokens > 0) {
    if (const cudaError_t status = detail::check_router_inputs(hidden, hidden_stride, hidden_size, weights, with_mask);
        status != cudaSuccess) {
      return status;
    }
    const bool needs_router = d_hidden || out.router, needs_mask = with_mask && (d_hidden || out.mask);
    if (needs_router && (!d_logits.d_router || d_logits.d_router_stride < num_experts)) return cudaErrorInvalidValue;
    if (needs_mask && (!d_logits.d_mask || d_logits.d_mask_stride < num_experts)) return cudaErrorInvalidValue;
    if (d_hidden && d_hidden_stride < hidden_size) return cudaErrorInvalidValue;
  }
  const bd::router_backward_params<T> p{hidden,
                                        hidden_stride,
                                        tokens,
                                        hidden_size,
                                        num_experts,
                                        with_mask ? 2 : 1,
                                        {weights.router, weights.mask},
                                        {weights.router_stride, weights.mask_stride},
                                        {d_logits.d_router, d_logits.d_mask},
                                        {d_logits.d_router_stride, d_logits.d_mask_stride},
                                        d_hidden,
                                        d_hidden_stride,
                                        {out.router, wants_mask ? out.mask : nullptr},
                                        {out.router_stride, out.mask_stride}};
  if (out.router || wants_mask) {
    const cudaError_t status =
        bd::launch_dependent(bd::router_weight_grad_kernel<T>, dim3(unsigned(h_tiles), unsigned(e_tiles), with_mask ? 2 : 1),
                             bd::router_backward_threads, 0, stream, p);
    if (status != cudaSuccess) return status;
  }
  if (!d_hidden) return cudaSuccess;
  return bd::launch_dependent(bd::router_input_grad_kernel<T>,
                              dim3(unsigned(h_tiles), unsigned(t_tiles < 65535 ? t_tiles : 65535)),
                              bd::router_backward_threads, 0, stream, p);
}

}  // namespace beam::device
