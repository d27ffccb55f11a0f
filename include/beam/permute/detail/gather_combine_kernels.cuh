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
template <class T>
struct zero_compute_addends;
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
//! same launch, from other blocks. A zero-computation expert's pair (device::zero_compute_addends)
//! has no row: its id and ĝ come with the row indices, its x_t, v_j and ℓ with the rows.
template <class T>
__device__ inline void combine_vector(const combine_rows<T>& a, int64_t t, int c) {
  constexpr int v = vector_elements<T>;
  const device::zero_compute_addends<T>& zc = a.addends.zero_compute;
  const int zero_compute = zc.count();
  // Raw until the sum: converting a value waits for it, and so would every load after it.
  int4 shared = {}, residual = {}, x = {};
  if (a.addends.shared) {
    shared = __ldcg(reinterpret_cast<const int4*>(a.addends.shared + t * a.addends.shared_stride + c));
  }
  if (a.addends.residual) {
    residual = *reinterpret_cast<const int4*>(a.addends.residual + t * a.addends.residual_stride + c);
  }
  if (zc.identity + zc.constant > 0) x = *reinterpret_cast<const int4*>(zc.hidden + t * zc.hidden_stride + c);
  float_vector<T> acc = {};
  for (int k0 = 0; k0 < a.top_k; k0 += combine_group) {
    int64_t row[combine_group];
    float w[combine_group], g[combine_group];
    int zid[combine_group];  // i = id − first of a zero-computation expert, else −1
    int4 y[combine_group];
    float2 alpha_logits[combine_group];
#pragma unroll
    for (int j = 0; j < combine_group; ++j) {
      const int64_t p = t * a.top_k + k0 + j;
      const bool pair = k0 + j < a.top_k;
      row[j] = !pair ? -1 : a.pair_to_row ? a.pair_to_row[p] : a.topk_ids[p] >= 0 ? p : -1;
      w[j] = pair && a.topk_weights ? a.topk_weights[p] : 1.0f;
      const unsigned i = pair && zero_compute ? unsigned(zc.topk_ids[p]) - unsigned(zc.first) : ~0u;
      zid[j] = i < unsigned(zero_compute) ? int(i) : -1;
      g[j] = pair && zero_compute ? zc.topk_weights[p] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < combine_group; ++j) {
      if (zid[j] >= 0) row[j] = -1;  // no row (combine_masked's ids name the expert too)
      const int constant = zid[j] - zc.zero - zc.identity;  // j of a constant expert, else < 0
      y[j] = row[j] >= 0   ? __ldcg(reinterpret_cast<const int4*>(a.yp + row[j] * a.yp_stride + c))
             : constant >= 0 ? __ldg(reinterpret_cast<const int4*>(zc.constant_vectors + int64_t(constant) * a.hidden + c))
                             : int4{};
      alpha_logits[j] = constant >= 0 ? *reinterpret_cast<const float2*>(zc.constant_logits + t * 2 * zc.constant + 2 * constant)
                                      : float2{};
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
    for (int j = 0; j < combine_group; ++j) {  // skipped pairs (row −1) and zero experts add nothing
      if (row[j] >= 0) {
        const float_vector<T> y_j = float_vector<T>::of(y[j]);
#pragma unroll
        for (int i = 0; i < v; ++i) acc.v[i] = fmaf(w[j], y_j.v[i], acc.v[i]);
      } else if (zid[j] >= zc.zero) {  // ĝ · x_t, or ĝ · (α₁ x_t + α₂ v_j)
        const bool constant = zid[j] >= zc.zero + zc.identity;
        const float on_x = constant ? g[j] * sigmoid(alpha_logits[j].x - alpha_logits[j].y) : g[j];
        const float on_v = constant ? g[j] * sigmoid(alpha_logits[j].y - alpha_logits[j].x) : 0.0f;
        const float_vector<T> x_t = float_vector<T>::of(x), v_j = float_vector<T>::of(y[j]);
#pragma unroll
        for (int i = 0; i < v; ++i) acc.v[i] = fmaf(on_v, v_j.v[i], fmaf(on_x, x_t.v[i], acc.v[i]));
      }
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

//! What `combine_backward` reads and writes (device::combine_backward).
template <class T>
struct combine_backward_rows {
  const T* yp;
  int64_t yp_stride;
  const int32_t* pair_to_row;
  const float* topk_weights;
  const T* d_out;
  int64_t d_out_stride;
  int64_t tokens;
  int hidden, top_k;
  float* d_topk_weights;
  T* d_yp;  //!< null: ∂L/∂ĝ only
  int64_t d_yp_stride;
};

//! combine's backward, one warp per token (grid-stride), its pairs in groups of combine_group:
//! each lane takes the 16-byte vectors c ≡ lane (mod 32) of ∂L/∂y_t in column order, adds its
//! products with every row of the group and writes ĝ · ∂L/∂y_t to each row's gradient; the
//! lanes' partial dots are then summed in a fixed butterfly (bitwise deterministic).
template <class T>
__global__ void __launch_bounds__(row_block_threads) combine_backward_kernel(const combine_backward_rows<T> a) {
  wait_for_dependencies();  // Yp, the rows, ĝ, ∂L/∂y: the kernels before wrote them
  launch_dependents();
  constexpr int v = vector_elements<T>;
  const int lane = int(warp::lane_id());
  const int64_t warps = int64_t(gridDim.x) * (row_block_threads / 32);
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < a.tokens; t += warps) {
    for (int k0 = 0; k0 < a.top_k; k0 += combine_group) {
      const int n = a.top_k - k0 < combine_group ? a.top_k - k0 : combine_group;
      int64_t row[combine_group];
      float g[combine_group], dot[combine_group];
#pragma unroll
      for (int j = 0; j < combine_group; ++j) {
        const int64_t pair = t * a.top_k + k0 + j;
        row[j] = j < n ? a.pair_to_row[pair] : -1;
        g[j] = j < n && row[j] >= 0 ? a.topk_weights[pair] : 0.0f;
        dot[j] = 0.0f;
      }
      for (int c = lane * v; c < a.hidden; c += 32 * v) {
        const float_vector<T> dy = float_vector<T>::load(a.d_out + t * a.d_out_stride + c);
#pragma unroll
        for (int j = 0; j < combine_group; ++j) {
          if (row[j] < 0) continue;
          const float_vector<T> y = float_vector<T>::load(a.yp + row[j] * a.yp_stride + c);
#pragma unroll
          for (int i = 0; i < v; ++i) dot[j] = fmaf(dy.v[i], y.v[i], dot[j]);
          if (a.d_yp) {
            float_vector<T> d;
#pragma unroll
            for (int i = 0; i < v; ++i) d.v[i] = g[j] * dy.v[i];
            d.store(a.d_yp + row[j] * a.d_yp_stride + c);
          }
        }
      }
#pragma unroll
      for (int j = 0; j < combine_group; ++j) {
        const float sum = warp::detail::warp_sum(dot[j]);  // every lane: the collective needs them all
        if (lane == 0 && j < n) a.d_topk_weights[t * a.top_k + k0 + j] = row[j] >= 0 ? sum : 0.0f;
      }
    }
  }
}

}  // namespace beam::detail
