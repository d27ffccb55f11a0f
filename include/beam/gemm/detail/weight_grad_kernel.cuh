//! @file
//! Kernel of beam::device::grouped_weight_grad: one block per (group, 64-row tile of M, 64-column
//! tile of N). It streams the group's rows, 32 per stage, through a 3-deep cp.async ring: an A tile
//! of 32 rows × 64 elements of M, and a B tile of 32 rows × 64 elements of N (rows gathered by
//! pair where asked). Both are stored row-major (k-major for the product) in the 64-element
//! swizzled layout, so `ldmatrix.trans` gives the mma fragments of Aᵀ and of B. Each of the 4 warps
//! multiplies a 32 × 32 part with mma.sync. The rows are summed in their order: deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/gemm/detail/grouped_gemm_kernel.cuh"
#include "beam/gemm/tile_mma.cuh"

namespace beam::detail {

//! What grouped_weight_grad_kernel reads and writes (device::grouped_weight_grad).
template <class T, class OutT>
struct weight_grad_params {
  const T* a;  //!< `[rows, M]`
  int64_t a_stride;
  const T* b;  //!< `[rows, N]`, or with b_gather the rows b_gather[r] / top_k
  int64_t b_stride;
  const int32_t* b_gather;
  int top_k;
  int64_t pairs;
  const int32_t* offsets;  //!< `[groups + 1]`, read clamped to [0, rows]; null: one group of `rows` rows
  int64_t rows;            //!< the static bound of the rows A (and an ungathered B) hold
  int m, n;
  OutT* c;  //!< group g's `[M, N]` at c + g·c_group_stride
  int64_t c_stride, c_group_stride;
};

struct weight_grad_tiles {
  static constexpr int block_m = 64, block_n = 64, block_k = 32, stages = 3, threads = 128;
  static constexpr int warp_m = 32, warp_n = 32, m_frags = warp_m / 16, n_frags = warp_n / 8;
  //! 16-byte chunks per stage of each operand (block_k rows of 8), per thread
  static constexpr int copies = block_k * 8 / threads;
};

//! C_g[m][n] = Σ_{r ∈ [offsets[g], offsets[g+1])} A[r][m] · B[r][n] for the block's tile of group g.
template <class T, class OutT>
__global__ void __launch_bounds__(weight_grad_tiles::threads)
    grouped_weight_grad_kernel(const weight_grad_params<T, OutT> p) {
  using tiles = weight_grad_tiles;
  wait_for_dependencies();  // A, B and the offsets: the kernels before wrote them
  launch_dependents();
  __shared__ alignas(128) T a_ring[tiles::stages][tiles::block_k * 64];
  __shared__ alignas(128) T b_ring[tiles::stages][tiles::block_k * 64];
  const int group = int(blockIdx.z), m0 = int(blockIdx.y) * tiles::block_m, n0 = int(blockIdx.x) * tiles::block_n;
  // The group's rows, within the static bound (an offset outside it reads no row beyond it).
  int64_t row_begin = 0, row_end = p.rows;  // no offsets: one group of all the rows
  if (p.offsets) clamp_range(p.offsets[group], p.offsets[group + 1], p.rows, row_begin, row_end);
  const int steps = row_end > row_begin ? int((row_end - row_begin + tiles::block_k - 1) / tiles::block_k) : 0;
  const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int warp_m0 = (warp / 2) * tiles::warp_m, warp_n0 = (warp % 2) * tiles::warp_n;

  // Stage s: rows row_begin + 32·s .. of A (columns m0..m0+63) and of B (columns n0..n0+63); rows
  // past the group and columns past M or N are zeros (cp.async's zero fill), as are B rows whose
  // pair index names no pair.
  const auto load_stage = [&](int s) {
    const int slot = s % tiles::stages;
#pragma unroll
    for (int i = 0; i < tiles::copies; ++i) {
      const int chunk_id = tid + i * tiles::threads, row = chunk_id / 8, chunk = chunk_id % 8;
      const int64_t r = row_begin + int64_t(s) * tiles::block_k + row;
      const bool in_rows = r < row_end;
      const bool a_valid = in_rows && m0 + chunk * 8 < p.m;
      const T* a_src = a_valid ? p.a + r * p.a_stride + m0 + chunk * 8 : p.a;
      block::copy_async_16(a_ring[slot] + block::swizzled_offset(row, chunk), a_src, a_valid);
      int64_t b_row = r;
      if (p.b_gather && in_rows) {
        const int32_t pair = p.b_gather[r];
        b_row = valid_pair(pair, p.pairs) ? pair / p.top_k : -1;
      }
      const bool b_valid = in_rows && b_row >= 0 && n0 + chunk * 8 < p.n;
      const T* b_src = b_valid ? p.b + b_row * p.b_stride + n0 + chunk * 8 : p.b;
      block::copy_async_16(b_ring[slot] + block::swizzled_offset(row, chunk), b_src, b_valid);
    }
  };

  float acc[tiles::m_frags][tiles::n_frags][4] = {};
#pragma unroll
  for (int s = 0; s < tiles::stages - 1; ++s) {
    if (s < steps) load_stage(s);
    block::copy_async_commit();  // one group per stage, empty or not: the wait counts them
  }
  for (int step = 0; step < steps; ++step) {
    block::copy_async_wait<tiles::stages - 2>();
    __syncthreads();  // every thread's copies of this stage landed; the slot below is free
    if (step + tiles::stages - 1 < steps) load_stage(step + tiles::stages - 1);
    block::copy_async_commit();
    const T* a_tile = a_ring[step % tiles::stages];
    const T* b_tile = b_ring[step % tiles::stages];
#pragma unroll
    for (int kk = 0; kk < tiles::block_k / 16; ++kk) {
      uint32_t a_frag[tiles::m_frags][4], b_frag[tiles::n_frags][2];
      // Aᵀ's fragments (m × k) from the k-major tile: matrix j is rows k 8·(j / 2) .. of
      // elements m 8·(j mod 2) ..
#pragma unroll
      for (int mi = 0; mi < tiles::m_frags; ++mi) {
        const int k = kk * 16 + (lane / 16) * 8 + lane % 8, chunk = (warp_m0 + mi * 16) / 8 + (lane / 8) % 2;
        warp::load_matrix_x4<true>(a_frag[mi], a_tile + block::swizzled_offset(k, chunk));
      }
      // B's fragments (k × n) of two n8 fragments: matrix j is rows k 8·(j mod 2) .. of
      // elements n 8·(j / 2) ..
#pragma unroll
      for (int nj = 0; nj < tiles::n_frags / 2; ++nj) {
        const int k = kk * 16 + ((lane / 8) % 2) * 8 + lane % 8, chunk = (warp_n0 + nj * 16) / 8 + lane / 16;
        uint32_t quad[4];
        warp::load_matrix_x4<true>(quad, b_tile + block::swizzled_offset(k, chunk));
        b_frag[2 * nj][0] = quad[0];
        b_frag[2 * nj][1] = quad[1];
        b_frag[2 * nj + 1][0] = quad[2];
        b_frag[2 * nj + 1][1] = quad[3];
      }
#pragma unroll
      for (int mi = 0; mi < tiles::m_frags; ++mi) {
#pragma unroll
        for (int nj = 0; nj < tiles::n_frags; ++nj) warp::mma_m16n8k16<T>(acc[mi][nj], a_frag[mi], b_frag[nj]);
      }
    }
  }
  block::copy_async_wait<0>();  // no copy outlives the block (the trailing groups are empty)

  // C fragment (g = lane / 4, q = lane mod 4): c[0..1] at (g, 2q..), c[2..3] at (g + 8, 2q..).
  OutT* c = p.c + int64_t(group) * p.c_group_stride;
#pragma unroll
  for (int mi = 0; mi < tiles::m_frags; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = m0 + warp_m0 + mi * 16 + lane / 4 + 8 * half;
      if (row >= p.m) continue;
#pragma unroll
      for (int nj = 0; nj < tiles::n_frags; ++nj) {
        const int column = n0 + warp_n0 + nj * 8 + 2 * (lane % 4);
        store_columns<false>(c + int64_t(row) * p.c_stride, column, p.n, acc[mi][nj][2 * half],
                             acc[mi][nj][2 * half + 1]);
      }
    }
  }
}

}  // namespace beam::detail
