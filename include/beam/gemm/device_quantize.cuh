//! @file
//! e4m3 activations for the W8A8 grouped GEMM (weights.cuh): A `[rows, K]` of bf16 / fp16 /
//! fp32 to codes Q `[rows, K]` and scales `[rows, ⌈K/128⌉]`, one power-of-two scale per row and
//! 128-channel group,
//!   s = activation_scale(max |A[r][k]| over the group),  Q[r][k] = e4m3(A[r][k] / s),
//! the same bits as beam::reference::quantize_activations. `warp::quantize_e4m3_group` is the
//! piece for a kernel of your own (e.g. an epilogue that writes e4m3).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <cuda_fp8.h>

#include "beam/core/dtype.cuh"
#include "beam/core/error.cuh"
#include "beam/core/launch.cuh"
#include "beam/core/warp.cuh"
#include "beam/gemm/weights.cuh"

namespace beam::warp {

//! Quantises one 1 × 128 group held by a warp, lane l holding v = its 4 values k = 4l .. 4l + 3
//! (zeros for k past the row's end): returns their codes (byte i: v[i]) and sets `scale` to
//! the group's scale, the same in every lane. All 32 lanes.
__device__ inline uint32_t quantize_e4m3_group(const float (&v)[4], float& scale) {
  // From 0: fmaxf drops NaN, so an all-NaN group's amax is 0, as the reference has it.
  float amax = fmaxf(fmaxf(fmaxf(0.0f, fabsf(v[0])), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
  scale = activation_scale(amax);
  const float inverse = __frcp_rn(scale);  // exact: a power of two, or 0 for an infinite scale
  uint32_t codes = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) codes |= uint32_t(dtype_traits<__nv_fp8_e4m3>::from_float(v[i] * inverse).__x) << (8 * i);
  return codes;
}

}  // namespace beam::warp

namespace beam::device {

//! Quantises A `[rows, K]` (row r at a + r·a_stride) to e4m3 codes (row r at codes + r·code_stride)
//! and scales (row r's groups at scales + r·scale_stride), one warp per 1 × 128 group. With
//! `row_count`, only the first min(*row_count, rows) rows, read on the device (e.g. `offsets + E`
//! of `compact`: the active rows of GEMM 1's output), the grid being sized by `rows`.
//!
//! @tparam T  float, __half or __nv_bfloat16
//! @return cudaErrorInvalidValue, writing nothing, when rows < 0, K ∉ [1, 2³⁰], or rows > 0
//!         and a null pointer, a stride shorter than its row (K; ⌈K/128⌉ for the scales), or
//!         a misaligned a or scales; else the launch's status. rows = 0: success.
template <class T>
[[nodiscard]] cudaError_t quantize_activations(const T* a, int64_t a_stride, int64_t rows, int k,
                                               __nv_fp8_e4m3* codes, int64_t code_stride, float* scales,
                                               int64_t scale_stride, const int32_t* row_count = nullptr,
                                               cudaStream_t stream = nullptr);

}  // namespace beam::device

namespace beam::detail {

constexpr int quantize_block_threads = 256;

template <class T>
__global__ void __launch_bounds__(quantize_block_threads)
    quantize_activations_kernel(const T* __restrict__ a, int64_t a_stride, int64_t rows, int k,
                                __nv_fp8_e4m3* __restrict__ codes, int64_t code_stride, float* __restrict__ scales,
                                int64_t scale_stride, const int32_t* __restrict__ row_count) {
  wait_for_dependencies();  // A and the row count: the kernels before wrote them
  launch_dependents();
  if (row_count) rows = min(rows, int64_t(max(*row_count, 0)));
  const int groups = (k + weight_block - 1) / weight_block, lane = int(warp::lane_id());
  const int64_t warps = int64_t(gridDim.x) * (quantize_block_threads / 32);
  for (int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; item < rows * groups; item += warps) {
    const int64_t r = item / groups;
    const int b = int(item % groups), k0 = b * weight_block + 4 * lane;
    const T* row = a + r * a_stride;
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = k0 + i < k ? to_float(row[k0 + i]) : 0.0f;
    float scale = 0.0f;
    const uint32_t packed = warp::quantize_e4m3_group(v, scale);
    uint8_t* out = reinterpret_cast<uint8_t*>(codes + r * code_stride);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (k0 + i < k) out[k0 + i] = uint8_t(packed >> (8 * i));
    }
    if (lane == 0) scales[r * scale_stride + b] = scale;
  }
}

}  // namespace beam::detail

namespace beam::device {

template <class T>
cudaError_t quantize_activations(const T* a, int64_t a_stride, int64_t rows, int k, __nv_fp8_e4m3* codes,
                                 int64_t code_stride, float* scales, int64_t scale_stride, const int32_t* row_count,
                                 cudaStream_t stream) {
  if (rows < 0 || k < 1 || k > max_extent) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const int groups = (k + weight_block - 1) / weight_block;
  if (!a || !codes || !scales || a_stride < k || code_stride < k || scale_stride < groups ||
      reinterpret_cast<uintptr_t>(a) % alignof(T) != 0 || reinterpret_cast<uintptr_t>(scales) % alignof(float) != 0) {
    return cudaErrorInvalidValue;
  }
  return beam::detail::launch_dependent(
      beam::detail::quantize_activations_kernel<T>,
      beam::detail::warp_per_item_grid(rows * groups, beam::detail::quantize_block_threads),
      beam::detail::quantize_block_threads, 0, stream, a, a_stride, rows, k, codes, code_stride, scales, scale_stride,
      row_count);
}

}  // namespace beam::device
