//! @file
//! Kernels of beam::device::router_logits_backward: fp32 tiles of 64 × 64 outputs, 256 threads
//! of 4 × 4 each, the reduction in steps of 16 through shared memory, every output summed by one
//! thread in a fixed order (bitwise deterministic; a token's ∂L/∂x depends on its row alone).
//!   weight gradients   C = ∂L/∂W_m[e][h] = Σ_t D_m[t][e] · x[t][h]     (reduction over tokens)
//!   input gradient     C = ∂L/∂x[t][h] += Σ_m Σ_e D_m[t][e] · W_m[e][h] (over both matrices' experts)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/dtype.cuh"
#include "beam/core/launch.cuh"

namespace beam::detail {

constexpr int router_backward_tile = 64, router_backward_step = 16, router_backward_threads = 256;

//! What both kernels read and write; matrix m = 0 is the router (W_r, ∂L/∂r), m = 1 the mask
//! router (W_m, ∂L/∂z).
template <class T>
struct router_backward_params {
  const T* x;
  int64_t x_stride, tokens;
  int hidden, experts, matrices;  //!< matrices: 1, or 2 with the mask
  const T* w[2];
  int64_t w_stride[2];
  const float* d[2];  //!< ∂L/∂r, ∂L/∂z `[T, E]`
  int64_t d_stride[2];
  T* d_x;  //!< null: no input gradient
  int64_t d_x_stride;
  float* d_w[2];  //!< null: that matrix's gradient is not wanted
  int64_t d_w_stride[2];
};

//! acc[a][b] += Σ_s left[s][4·ty + a] · right[s][4·tx + b] over one step of shared tiles.
__device__ inline void router_backward_step_product(float (&acc)[4][4],
                                                    const float (&left)[router_backward_step][router_backward_tile + 4],
                                                    const float (&right)[router_backward_step][router_backward_tile],
                                                    int ty, int tx) {
#pragma unroll
  for (int s = 0; s < router_backward_step; ++s) {
    const float4 l = *reinterpret_cast<const float4*>(&left[s][4 * ty]);
    const float4 r = *reinterpret_cast<const float4*>(&right[s][4 * tx]);
    const float lv[4] = {l.x, l.y, l.z, l.w}, rv[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int a = 0; a < 4; ++a) {
#pragma unroll
      for (int b = 0; b < 4; ++b) acc[a][b] = fmaf(lv[a], rv[b], acc[a][b]);
    }
  }
}

//! Block (h tile, expert tile, matrix m): ∂L/∂W_m for 64 experts × 64 hidden columns.
template <class T>
__global__ void __launch_bounds__(router_backward_threads) router_weight_grad_kernel(const router_backward_params<T> p) {
  constexpr int tile = router_backward_tile, step = router_backward_step;
  __shared__ alignas(16) float left[step][tile + 4];  // left[s][e]: D_m[t0 + s][e0 + e]
  __shared__ alignas(16) float right[step][tile];     // right[s][h]: x[t0 + s][h0 + h]
  wait_for_dependencies();
  launch_dependents();
  const int m = int(blockIdx.z), h0 = int(blockIdx.x) * tile, e0 = int(blockIdx.y) * tile;
  float* const out = p.d_w[m];
  if (!out) return;
  const float* const d = p.d[m];
  const int tid = int(threadIdx.x), ty = tid / 16, tx = tid % 16;
  float acc[4][4] = {};
  for (int64_t t0 = 0; t0 < p.tokens; t0 += step) {
#pragma unroll
    for (int i = 0; i < step * tile / router_backward_threads; ++i) {
      const int element = tid + i * router_backward_threads, s = element / tile, c = element % tile;
      const int64_t t = t0 + s;
      left[s][c] = t < p.tokens && e0 + c < p.experts ? d[t * p.d_stride[m] + e0 + c] : 0.0f;
      right[s][c] = t < p.tokens && h0 + c < p.hidden ? to_float(p.x[t * p.x_stride + h0 + c]) : 0.0f;
    }
    __syncthreads();
    router_backward_step_product(acc, left, right, ty, tx);
    __syncthreads();
  }
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int e = e0 + 4 * ty + a;
    if (e >= p.experts) continue;
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const int h = h0 + 4 * tx + b;
      if (h < p.hidden) out[int64_t(e) * p.d_w_stride[m] + h] = acc[a][b];
    }
  }
}

//! One 64 × 64 tile of router_input_grad_kernel at tokens t0.., columns h0.. .
template <class T>
__device__ inline void router_input_tile(const router_backward_params<T>& p, int h0, int64_t t0, int tid, int ty,
                                         int tx, float (&left)[router_backward_step][router_backward_tile + 4],
                                         float (&right)[router_backward_step][router_backward_tile]) {
  constexpr int tile = router_backward_tile, step = router_backward_step;
  float acc[4][4] = {};
  for (int m = 0; m < p.matrices; ++m) {
    for (int e0 = 0; e0 < p.experts; e0 += step) {
#pragma unroll
      for (int i = 0; i < step * tile / router_backward_threads; ++i) {
        const int element = tid + i * router_backward_threads;
        const int s = element % step, t = element / step;  // 16 consecutive experts of a token's row
        const int64_t token = t0 + t;
        left[s][t] = token < p.tokens && e0 + s < p.experts ? p.d[m][token * p.d_stride[m] + e0 + s] : 0.0f;
        const int sw = element / tile, h = element % tile;
        right[sw][h] = e0 + sw < p.experts && h0 + h < p.hidden
                           ? to_float(p.w[m][int64_t(e0 + sw) * p.w_stride[m] + h0 + h])
                           : 0.0f;
      }
      __syncthreads();
      router_backward_step_product(acc, left, right, ty, tx);
      __syncthreads();
    }
  }
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int64_t t = t0 + 4 * ty + a;
    if (t >= p.tokens) continue;
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const int h = h0 + 4 * tx + b;
      if (h >= p.hidden) continue;
      T& out = p.d_x[t * p.d_x_stride + h];
      out = from_float<T>(to_float(out) + acc[a][b]);
    }
  }
}

//! Block (h tile, token tile, and every gridDim.y-th token tile after it): ∂L/∂x += Σ_m D_m · W_m
//! for 64 tokens × 64 hidden columns, added to d_x in float and rounded once.
template <class T>
__global__ void __launch_bounds__(router_backward_threads) router_input_grad_kernel(const router_backward_params<T> p) {
  constexpr int tile = router_backward_tile, step = router_backward_step;
  __shared__ alignas(16) float left[step][tile + 4];  // left[s][t]: D_m[t0 + t][e0 + s]
  __shared__ alignas(16) float right[step][tile];     // right[s][h]: W_m[e0 + s][h0 + h]
  wait_for_dependencies();
  launch_dependents();
  const int h0 = int(blockIdx.x) * tile;
  const int tid = int(threadIdx.x), ty = tid / 16, tx = tid % 16;
  for (int64_t t0 = int64_t(blockIdx.y) * tile; t0 < p.tokens; t0 += int64_t(gridDim.y) * tile) {
    router_input_tile(p, h0, t0, tid, ty, tx, left, right);
  }
}

}  // namespace beam::detail
