//! @file
//! Kernels of beam::device::gather_rows and beam::device::combine: one warp per row or
//! token, lanes over 16-byte vectors of the row, grid-stride.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/warp.cuh"
#include "beam/permute/detail/vector_rows.cuh"

namespace beam::device {
template <class T>
struct combine_addends;
}  // namespace beam::device

namespace beam::detail {

constexpr int row_block_threads = 256;

//! xp[r] = x[pairs[r] / K] for r < min(*n_rows, row_bound) (n_rows null: row_bound); rows
//! whose pair lies outside [0, num_pairs) (padding sentinels) are left unwritten.
template <class T>
__global__ void __launch_bounds__(row_block_threads)
    gather_rows_kernel(const T* __restrict__ x, int64_t x_stride, int hidden, int top_k,
                       const int32_t* __restrict__ pairs, int64_t num_pairs, int64_t row_bound,
                       const int32_t* __restrict__ n_rows, T* __restrict__ xp, int64_t xp_stride) {
  constexpr int v = vector_elements<T>;
  const int lane = int(warp::lane_id());
  const int64_t rows = n_rows && *n_rows < row_bound ? *n_rows : row_bound;
  const int64_t warps = int64_t(gridDim.x) * (row_block_threads / 32);
  for (int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    const int32_t pair = pairs[r];  // same address for the warp: a broadcast
    if (pair < 0 || pair >= num_pairs) continue;
    const int4* src = reinterpret_cast<const int4*>(x + int64_t(pair / top_k) * x_stride);
    int4* dst = reinterpret_cast<int4*>(xp + r * xp_stride);
    for (int c = lane; c < hidden / v; c += 32) dst[c] = __ldg(src + c);
  }
}

template <class T>
__global__ void __launch_bounds__(row_block_threads)
    combine_kernel(const T* __restrict__ yp, int64_t yp_stride, const int32_t* __restrict__ pair_to_row,
                   const float* __restrict__ topk_weights, int64_t tokens, int hidden, int top_k,
                   device::combine_addends<T> addends, T* out, int64_t out_stride) {
  constexpr int v = vector_elements<T>;
  const int lane = int(warp::lane_id());
  const int64_t warps = int64_t(gridDim.x) * (row_block_threads / 32);
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    for (int c = lane * v; c < hidden; c += 32 * v) {
      float_vector<T> acc = {};
      if (addends.shared) acc = float_vector<T>::load(addends.shared + t * addends.shared_stride + c, false);
      for (int k = 0; k < top_k; ++k) {
        const int32_t row = pair_to_row[t * top_k + k];  // same address for the warp: a broadcast
        if (row < 0) continue;
        const float w = topk_weights ? topk_weights[t * top_k + k] : 1.0f;
        const float_vector<T> y = float_vector<T>::load(yp + row * yp_stride + c);
#pragma unroll
        for (int i = 0; i < v; ++i) acc.v[i] = fmaf(w, y.v[i], acc.v[i]);
      }
      if (addends.residual) {
        const float_vector<T> r = float_vector<T>::load(addends.residual + t * addends.residual_stride + c, false);
#pragma unroll
        for (int i = 0; i < v; ++i) acc.v[i] += r.v[i];
      }
      acc.store(out + t * out_stride + c);
    }
  }
}

}  // namespace beam::detail
