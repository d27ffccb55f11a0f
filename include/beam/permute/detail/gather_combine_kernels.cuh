//! @file
//! Kernels of beam::device::gather_rows (one warp per row, lanes over its 16-byte vectors) and
//! beam::device::combine (one thread per 16-byte vector of a token), grid-stride.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/launch.cuh"
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

constexpr int combine_block_threads = 128;
//! Pairs of a token whose rows `combine_kernel` has in flight at once.
constexpr int combine_group = 8;

//! Blocks of `block_threads` for one thread per item over `items` (at least 1, at most 2³¹ − 1:
//! the kernel grid-strides beyond).
inline unsigned thread_per_item_grid(int64_t items, int block_threads) {
  const int64_t blocks = (items + block_threads - 1) / block_threads;
  return unsigned(blocks < 1 ? 1 : blocks < INT32_MAX ? blocks : INT32_MAX);
}

//! One thread per (token, 16-byte column vector), so that even one token spreads over H / 8
//! threads. Built for latency: every load a thread needs is issued before the first FMA waits
//! for one (the addends, then per group of 8 pairs the row indices and weights, then the rows
//! they name), so a token costs two dependent round trips for K ≤ 8. The sum keeps the order of
//! the documentation (bitwise deterministic).
template <class T>
__global__ void __launch_bounds__(combine_block_threads)
    combine_kernel(const T* __restrict__ yp, int64_t yp_stride, const int32_t* __restrict__ pair_to_row,
                   const float* __restrict__ topk_weights, int64_t tokens, int hidden, int top_k,
                   device::combine_addends<T> addends, T* out, int64_t out_stride) {
  wait_for_dependencies();  // the expert rows, the addends: the kernels before wrote them
  launch_dependents();
  constexpr int v = vector_elements<T>;
  const int vectors = hidden / v;
  const int64_t items = tokens * vectors;
  for (int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; item < items;
       item += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = item / vectors;
    const int c = int(item % vectors) * v;
    // Raw until the sum: converting a value waits for it, and so would every load after it.
    int4 shared = {}, residual = {};
    if (addends.shared) shared = *reinterpret_cast<const int4*>(addends.shared + t * addends.shared_stride + c);
    if (addends.residual) residual = *reinterpret_cast<const int4*>(addends.residual + t * addends.residual_stride + c);
    float_vector<T> acc = {};
    for (int k0 = 0; k0 < top_k; k0 += combine_group) {
      int32_t row[combine_group];
      float w[combine_group];
      int4 y[combine_group];
#pragma unroll
      for (int j = 0; j < combine_group; ++j) {
        const bool pair = k0 + j < top_k;
        row[j] = pair ? pair_to_row[t * top_k + k0 + j] : -1;
        w[j] = pair && topk_weights ? topk_weights[t * top_k + k0 + j] : 1.0f;
      }
#pragma unroll
      for (int j = 0; j < combine_group; ++j) {
        y[j] = row[j] >= 0 ? __ldg(reinterpret_cast<const int4*>(yp + row[j] * yp_stride + c)) : int4{};
      }
      if (k0 == 0 && addends.shared) acc = float_vector<T>::of(shared);  // K ≥ 1: the sum starts here
#pragma unroll
      for (int j = 0; j < combine_group; ++j) {  // skipped pairs (row −1) add nothing
        if (row[j] < 0) continue;
        const float_vector<T> y_j = float_vector<T>::of(y[j]);
#pragma unroll
        for (int i = 0; i < v; ++i) acc.v[i] = fmaf(w[j], y_j.v[i], acc.v[i]);
      }
    }
    if (addends.residual) {
      const float_vector<T> r = float_vector<T>::of(residual);
#pragma unroll
      for (int i = 0; i < v; ++i) acc.v[i] += r.v[i];
    }
    acc.store(out + t * out_stride + c);
  }
}

}  // namespace beam::detail
