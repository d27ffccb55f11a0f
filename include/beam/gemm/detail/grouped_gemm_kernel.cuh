//! @file
//! Kernel of beam::device::grouped_gemm: a persistent loop over (row tile, column tile) work
//! items. Each block first turns the group offsets into tile starts (a block scan of
//! ⌈rows_e / BM⌉), so the row tiles of every group are numbered on the device; a work item
//! finds its group by binary search. The main loop streams A and B tiles of 64 columns
//! through a `stages`-deep cp.async ring into swizzled shared tiles, and each warp multiplies
//! its WM × WN part with mma.sync. The epilogue writes pairs of adjacent columns.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <cub/block/block_scan.cuh>

#include "beam/core/dtype.cuh"
#include "beam/core/math.cuh"
#include "beam/core/warp.cuh"
#include "beam/gemm/tile_mma.cuh"

namespace beam::device {
enum class gemm_epilogue;
}  // namespace beam::device

namespace beam::detail {

constexpr int gemm_block_k = 64;  //!< K columns per stage: 8 chunks of 16 bytes per tile row
constexpr int gemm_max_groups = 512;

//! Everything the kernel reads, host-checked (see grouped_gemm).
template <class T, class OutT>
struct grouped_gemm_params {
  const T* a;
  int64_t a_stride;
  const int32_t* gather_pairs;
  int top_k;
  const T* b;
  int64_t b_stride, b_expert_stride;
  const int32_t* offsets;  //!< null: one group of `rows` rows
  int groups;
  int64_t rows;
  int n, k;
  int column_tiles;  //!< ⌈output columns / tile output columns⌉
  OutT* c;
  int64_t c_stride;
  const float* row_scales;
  const int32_t* scale_index;
  int out_top_k;  //!< scatter_add: pairs per token
};

//! Tile geometry of a schedule's policy.
template <class Tiles>
struct gemm_geometry {
  static constexpr int bm = Tiles::block_rows, bn = Tiles::block_cols, stages = Tiles::stages;
  static constexpr int threads = 32 * Tiles::warps_m * Tiles::warps_n;
  static constexpr int wm = bm / Tiles::warps_m, wn = bn / Tiles::warps_n;
  static constexpr int m_frags = wm / 16, n_frags = wn / 8;
  static constexpr int a_copies = bm * 8 / threads, b_copies = bn * 8 / threads;  //!< 16-byte chunks per thread
  static constexpr int scan_items = (gemm_max_groups + threads - 1) / threads + 1;
  static_assert(wm % 16 == 0 && wn % 16 == 0, "whole m16 fragments and pairs of n8 fragments per warp");
  static_assert(a_copies >= 1 && b_copies >= 1 && a_copies * threads == bm * 8 && b_copies * threads == bn * 8,
                "every thread copies whole chunks");
  static_assert(stages >= 2, "a ring of at least two stages");

  //! Dynamic shared memory: the stage ring, then the group tile starts.
  static size_t smem_bytes(int groups) {
    return size_t(stages) * (bm + bn) * gemm_block_k * 2 + (size_t(groups) + 1 + 3) / 4 * 16;
  }
};

//! Stores (or, with Add, atomically adds) columns `column` (even) and column + 1 of a row of
//! `columns`: one 2-element operation, or the first column alone at an odd end.
template <bool Add, class OutT>
__device__ inline void store_columns(OutT* row, int column, int columns, float x, float y) {
  if (column + 1 < columns) {
    if constexpr (std::is_same_v<OutT, float>) {
      if constexpr (Add) {
        atomicAdd(row + column, x);
        atomicAdd(row + column + 1, y);
      } else {
        *reinterpret_cast<float2*>(row + column) = make_float2(x, y);
      }
    } else if constexpr (std::is_same_v<OutT, __nv_bfloat16>) {
      const __nv_bfloat162 pair = __floats2bfloat162_rn(x, y);
      if constexpr (Add) atomicAdd(reinterpret_cast<__nv_bfloat162*>(row + column), pair);
      else *reinterpret_cast<__nv_bfloat162*>(row + column) = pair;
    } else {
      const __half2 pair = __floats2half2_rn(x, y);
      if constexpr (Add) atomicAdd(reinterpret_cast<__half2*>(row + column), pair);
      else *reinterpret_cast<__half2*>(row + column) = pair;
    }
  } else if (column < columns) {
    if constexpr (Add) atomicAdd(row + column, from_float<OutT>(x));
    else row[column] = from_float<OutT>(x);
  }
}

template <class T, class OutT, class Tiles, device::gemm_epilogue Epilogue>
__global__ void __launch_bounds__(gemm_geometry<Tiles>::threads)
    grouped_gemm_kernel(grouped_gemm_params<T, OutT> p) {
  using geo = gemm_geometry<Tiles>;
  constexpr int BM = geo::bm, BN = geo::bn, BK = gemm_block_k, S = geo::stages, threads = geo::threads;
  constexpr bool swiglu = Epilogue == device::gemm_epilogue::swiglu;
  constexpr bool scatter = Epilogue == device::gemm_epilogue::scatter_add;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // mma.sync / cp.async / ldmatrix need sm_80: never run a build without them
#endif
  using block_scan = cub::BlockScan<int32_t, threads>;
  extern __shared__ int4 smem[];
  T* a_ring = reinterpret_cast<T*>(smem);
  T* b_ring = a_ring + S * BM * BK;
  int32_t* tile_starts = reinterpret_cast<int32_t*>(b_ring + S * BN * BK);
  // Rows of group e, clamped to [0, rows]: bad offsets cannot send a tile out of bounds.
  const auto group_range = [&](int e, int64_t& begin, int64_t& end) {
    begin = p.offsets ? min(max(int64_t(p.offsets[e]), int64_t(0)), p.rows) : 0;
    end = p.offsets ? min(max(int64_t(p.offsets[e + 1]), begin), p.rows) : p.rows;
  };

  // Row tiles of every group: tile_starts[e] = Σ_{e' < e} ⌈rows_e' / BM⌉ (blocked scan, its
  // storage in the idle ring).
  {
    static_assert(sizeof(typename block_scan::TempStorage) <= sizeof(T) * S * BM * BK, "scan storage fits the ring");
    auto& scan_storage = *reinterpret_cast<typename block_scan::TempStorage*>(smem);
    int32_t tiles[geo::scan_items], starts[geo::scan_items];
#pragma unroll
    for (int i = 0; i < geo::scan_items; ++i) {
      const int e = int(threadIdx.x) * geo::scan_items + i;
      int64_t begin = 0, end = 0;
      if (e < p.groups) group_range(e, begin, end);
      tiles[i] = int32_t((end - begin + BM - 1) / BM);
    }
    block_scan(scan_storage).ExclusiveSum(tiles, starts);
#pragma unroll
    for (int i = 0; i < geo::scan_items; ++i) {
      const int e = int(threadIdx.x) * geo::scan_items + i;
      if (e <= p.groups) tile_starts[e] = starts[i];
    }
    __syncthreads();  // tile_starts complete; the ring is free for the copies
  }
  const int64_t work = int64_t(tile_starts[p.groups]) * p.column_tiles;
  const int warp_index = int(threadIdx.x / 32), lane = int(warp::lane_id());
  const int wm0 = warp_index / Tiles::warps_n * geo::wm, wn0 = warp_index % Tiles::warps_n * geo::wn;
  const int half_n = p.n / 2;  // swiglu: I

  for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
    const int row_tile = int(w / p.column_tiles), column_tile = int(w % p.column_tiles);
    const int e = last_start_at_or_below(tile_starts, p.groups, row_tile);
    int64_t group_begin = 0, group_end = 0;
    group_range(e, group_begin, group_end);
    const int64_t row0 = group_begin + int64_t(row_tile - tile_starts[e]) * BM;

    // This thread's copy sources: row pointers fixed for the work item, columns per stage.
    const T* a_src[geo::a_copies];
    const T* b_src[geo::b_copies];
#pragma unroll
    for (int i = 0; i < geo::a_copies; ++i) {
      const int64_t r = row0 + (int(threadIdx.x) + i * threads) / 8;
      const int64_t source = r >= group_end ? -1 : p.gather_pairs ? p.gather_pairs[r] / p.top_k : r;
      a_src[i] = source < 0 ? nullptr : p.a + source * p.a_stride;
    }
#pragma unroll
    for (int i = 0; i < geo::b_copies; ++i) {
      const int j = (int(threadIdx.x) + i * threads) / 8;  // B tile row
      int weight_row;
      if constexpr (swiglu) {  // 8-row groups alternate gate (W1) and up (W3) rows of the same columns
        const int column = column_tile * (BN / 2) + (j / 16) * 8 + j % 8;
        weight_row = column >= half_n ? -1 : (j / 8) % 2 ? half_n + column : column;
      } else {
        weight_row = column_tile * BN + j < p.n ? column_tile * BN + j : -1;
      }
      b_src[i] = weight_row < 0 ? nullptr : p.b + int64_t(e) * p.b_expert_stride + int64_t(weight_row) * p.b_stride;
    }
    const auto load_stage = [&](int k_tile, int slot) {
      const int chunk = int(threadIdx.x) % 8, column = k_tile * BK + chunk * 8;
      const bool in_k = column < p.k;
#pragma unroll
      for (int i = 0; i < geo::a_copies; ++i) {
        const int row = (int(threadIdx.x) + i * threads) / 8;
        const bool valid = in_k && a_src[i];
        block::copy_async_16(a_ring + slot * BM * BK + block::swizzled_offset(row, chunk),
                             valid ? a_src[i] + column : p.a, valid);
      }
#pragma unroll
      for (int i = 0; i < geo::b_copies; ++i) {
        const int row = (int(threadIdx.x) + i * threads) / 8;
        const bool valid = in_k && b_src[i];
        block::copy_async_16(b_ring + slot * BN * BK + block::swizzled_offset(row, chunk),
                             valid ? b_src[i] + column : p.b, valid);
      }
    };

    float acc[geo::m_frags][geo::n_frags][4] = {};
    const int k_tiles = (p.k + BK - 1) / BK;
#pragma unroll
    for (int s = 0; s < S - 1; ++s) {
      if (s < k_tiles) load_stage(s, s);
      block::copy_async_commit();
    }
    for (int kt = 0; kt < k_tiles; ++kt) {
      block::copy_async_wait<S - 2>();  // stage kt has landed (for this thread) ...
      __syncthreads();                  // ... for every thread; slot (kt − 1) mod S is free
      if (kt + S - 1 < k_tiles) load_stage(kt + S - 1, (kt + S - 1) % S);
      block::copy_async_commit();
      const T* a_tile = a_ring + (kt % S) * BM * BK;
      const T* b_tile = b_ring + (kt % S) * BN * BK;
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        uint32_t a_frag[geo::m_frags][4], b_frag[geo::n_frags][2];
#pragma unroll
        for (int mi = 0; mi < geo::m_frags; ++mi) {
          const int row = wm0 + mi * 16 + lane % 16;
          warp::load_matrix_x4(a_frag[mi], a_tile + block::swizzled_offset(row, 2 * kk + lane / 16));
        }
#pragma unroll
        for (int nj = 0; nj < geo::n_frags / 2; ++nj) {
          const int row = wn0 + nj * 16 + (lane / 16) * 8 + lane % 8;
          uint32_t quad[4];
          warp::load_matrix_x4(quad, b_tile + block::swizzled_offset(row, 2 * kk + (lane / 8) % 2));
          b_frag[2 * nj][0] = quad[0];
          b_frag[2 * nj][1] = quad[1];
          b_frag[2 * nj + 1][0] = quad[2];
          b_frag[2 * nj + 1][1] = quad[3];
        }
#pragma unroll
        for (int mi = 0; mi < geo::m_frags; ++mi) {
#pragma unroll
          for (int nj = 0; nj < geo::n_frags; ++nj) warp::mma_m16n8k16<T>(acc[mi][nj], a_frag[mi], b_frag[nj]);
        }
      }
    }
    block::copy_async_wait<0>();
    __syncthreads();  // every warp is done with the ring before the next work item refills it

    // Epilogue: fragment (mi, nj) holds rows g and g + 8, columns 2q and 2q + 1.
#pragma unroll
    for (int mi = 0; mi < geo::m_frags; ++mi) {
#pragma unroll
      for (int upper = 0; upper < 2; ++upper) {
        const int64_t r = row0 + wm0 + mi * 16 + lane / 4 + upper * 8;
        if (r >= group_end) continue;
        float scale = 1.0f;
        OutT* c_row = p.c + r * p.c_stride;
        if constexpr (Epilogue == device::gemm_epilogue::scale_rows) {
          scale = p.row_scales[p.scale_index ? p.scale_index[r] : r];
        } else if constexpr (scatter) {
          const int32_t pair = p.scale_index[r];
          if (pair < 0) continue;  // not a pair: nothing to add
          scale = p.row_scales[pair];
          c_row = p.c + int64_t(pair / p.out_top_k) * p.c_stride;  // the pair's token
        }
#pragma unroll
        for (int nj = 0; nj < geo::n_frags; ++nj) {
          const float x = acc[mi][nj][2 * upper], y = acc[mi][nj][2 * upper + 1];
          if constexpr (swiglu) {
            if (nj % 2) continue;  // fragment nj holds gate columns, nj + 1 the up columns
            const int column = column_tile * (BN / 2) + wn0 / 2 + (nj / 2) * 8 + 2 * (lane % 4);
            store_columns<false>(c_row, column, half_n, silu(x) * acc[mi][nj + 1][2 * upper],
                                 silu(y) * acc[mi][nj + 1][2 * upper + 1]);
          } else {
            store_columns<scatter>(c_row, column_tile * BN + wn0 + nj * 8 + 2 * (lane % 4), p.n, scale * x, scale * y);
          }
        }
      }
    }
  }
}

}  // namespace beam::detail
