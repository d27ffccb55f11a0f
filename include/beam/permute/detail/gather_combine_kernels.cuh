//! @file
//! Kernels of beam::device::gather_rows (one warp per row, lanes over its 16-byte vectors) and
//! beam::device::combine (one thread per 16-byte vector of a token), grid-stride.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/core/math.cuh"
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
  wait_for_dependencies();  // the pairs, the row count, x: the kernels before wrote them
  launch_dependents();
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

//! What `combine` sums (device::combine): out[t] = shared[t] + Σ_k ĝ[t,k] · Yp[pair_to_row[t·K+k]]
//! + residual[t], as combine_kernel and a layer's fused GEMM 2 take it.
template <class T>
struct combine_rows {
  const T* yp;
  int64_t yp_stride;
  const int32_t* pair_to_row;  //!< null: Yp is indexed by pair, summed where topk_ids ≥ 0
  const int32_t* topk_ids;
  const float* topk_weights;  //!< null: the rows are already scaled by ĝ
  int64_t tokens;
  int hidden, top_k;
  device::combine_addends<T> addends;
  T* out;
  int64_t out_stride;
};

//! The combine of the 16-byte vector at column c of token t, built for latency: every load is
//! issued before the first FMA waits for one (the addends, then per group of 8 pairs the row
//! indices and weights, then the rows they name), so a token costs two dependent round trips
//! for K ≤ 8. The sum keeps the order of the documentation (bitwise deterministic). The rows
//! and the shared addend are read at L2 (`ld.global.cg`): a fused GEMM 2 wrote them in the
//! same launch, from other blocks.
template <class T>
__device__ inline void combine_vector(const combine_rows<T>& a, int64_t t, int c) {
  constexpr int v = vector_elements<T>;
  // Raw until the sum: converting a value waits for it, and so would every load after it.
  int4 shared = {}, residual = {};
  if (a.addends.shared) {
    shared = __ldcg(reinterpret_cast<const int4*>(a.addends.shared + t * a.addends.shared_stride + c));
  }
  if (a.addends.residual) {
    residual = *reinterpret_cast<const int4*>(a.addends.residual + t * a.addends.residual_stride + c);
  }
  float_vector<T> acc = {};
  for (int k0 = 0; k0 < a.top_k; k0 += combine_group) {
    int64_t row[combine_group];
    float w[combine_group];
    int4 y[combine_group];
#pragma unroll
    for (int j = 0; j < combine_group; ++j) {
      const int64_t p = t * a.top_k + k0 + j;
      const bool pair = k0 + j < a.top_k;
      row[j] = !pair ? -1 : a.pair_to_row ? a.pair_to_row[p] : a.topk_ids[p] >= 0 ? p : -1;
      w[j] = pair && a.topk_weights ? a.topk_weights[p] : 1.0f;
    }
#pragma unroll
    for (int j = 0; j < combine_group; ++j) {
      y[j] = row[j] >= 0 ? __ldcg(reinterpret_cast<const int4*>(a.yp + row[j] * a.yp_stride + c)) : int4{};
    }
    if (k0 == 0 && a.addends.shared) {  // K ≥ 1: the sum starts here, σ(ℓ_t) · shared[t] with a gate
      acc = float_vector<T>::of(shared);
      if (a.addends.shared_gate) {  // loaded here, beside the rows in flight: one register less
        const float gate = sigmoid(__ldcg(a.addends.shared_gate + t));
#pragma unroll
        for (int i = 0; i < v; ++i) acc.v[i] *= gate;
      }
    }
#pragma unroll
    for (int j = 0; j < combine_group; ++j) {  // skipped pairs (row −1) add nothing
      if (row[j] < 0) continue;
      const float_vector<T> y_j = float_vector<T>::of(y[j]);
#pragma unroll
      for (int i = 0; i < v; ++i) acc.v[i] = fmaf(w[j], y_j.v[i], acc.v[i]);
    }
  }
  if (a.addends.residual) {
    const float_vector<T> r = float_vector<T>::of(residual);
#pragma unroll
    for (int i = 0; i < v; ++i) acc.v[i] += r.v[i];
  }
  acc.store(a.out + t * a.out_stride + c);
}

//! combine_vector for every token and the vectors of columns [c0, c1) (multiples of the
//! vector width), one per thread of the block, block-strided.
template <class T>
__device__ inline void combine_columns(const combine_rows<T>& a, int c0, int c1) {
  constexpr int v = vector_elements<T>;
  const int vectors = (c1 - c0) / v;
  for (int64_t item = threadIdx.x; item < a.tokens * vectors; item += blockDim.x) {
    combine_vector(a, item / vectors, c0 + int(item % vectors) * v);
  }
}

//! One thread per (token, 16-byte column vector), so that even one token spreads over H / 8
//! threads (combine_vector).
template <class T>
__global__ void __launch_bounds__(combine_block_threads) combine_kernel(combine_rows<T> a) {
  wait_for_dependencies();  // the expert rows, the addends: the kernels before wrote them
  launch_dependents();
  constexpr int v = vector_elements<T>;
  const int vectors = a.hidden / v;
  const int64_t items = a.tokens * vectors;
  for (int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; item < items;
       item += int64_t(gridDim.x) * blockDim.x) {
    combine_vector(a, item / vectors, int(item % vectors) * v);
  }
}

}  // namespace beam::detail
