//! @file
//! Kernel of beam::device::grouped_gemm: a persistent loop over (row tile, column tile) work
//! items. Each block first turns the group offsets into tile starts (a block scan of
//! ⌈rows_e / BM⌉), so the row tiles of every group are numbered on the device; a work item
//! finds its group by binary search. The main loop streams A and B tiles of 64 columns
//! through a `stages`-deep cp.async ring into swizzled shared tiles, and each warp multiplies
//! its WM × WN part with mma.sync. The epilogue writes pairs of adjacent columns.
//! layer_gemm_kernel runs a layer's decode GEMM in one launch: the routed experts' grouped
//! problem, the shared expert's dense one, and after GEMM 2 the combine.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <cub/block/block_scan.cuh>

#include "beam/core/dtype.cuh"
#include "beam/core/launch.cuh"
#include "beam/core/math.cuh"
#include "beam/core/warp.cuh"
#include "beam/gemm/tile_mma.cuh"
#include "beam/gemm/weights.cuh"
#include "beam/permute/device_combine.cuh"

namespace beam::device {
enum class gemm_epilogue;
}  // namespace beam::device

namespace beam::detail {

//! Never launched: compiled for the architectures of the translation unit that launches
//! beam's kernels, the ptxVersion of its code loaded for a device is the virtual architecture
//! they were built for (check_sm80_device).
template <int = 0>
__global__ void code_probe_kernel() {}

constexpr int gemm_block_k = 64;  //!< K columns per stage: 8 chunks of 16 bytes per tile row
constexpr int gemm_max_groups = 512;

//! Everything the kernel reads, host-checked (see grouped_gemm). W: the weights' type, T or
//! __nv_fp8_e4m3 (then scaled by b_scales as b_scaling says: see weights.cuh). T = e4m3 too
//! (W8A8): A's codes with their 1 × 128 scales, row r's at a_scales + r·a_scale_stride.
template <class T, class OutT, class W = T>
struct grouped_gemm_params {
  const T* a;
  int64_t a_stride;
  const float* a_scales;
  int64_t a_scale_stride;
  const int32_t* gather_pairs;
  int top_k;
  int64_t pairs;  //!< P: pair indices (gather_pairs, scale_index) name [0, P)
  const W* b;
  int64_t b_stride, b_expert_stride;
  const float* b_scales;
  weight_scales b_scaling;
  const int32_t* offsets;  //!< null (and no group_counts): one group of `rows` rows
  const int32_t* group_counts;  //!< packed groups: group e is rows [e·stride, e·stride + counts[e])
  int64_t group_stride;
  int groups;
  int64_t rows;
  int n, k;
  int column_tiles;  //!< ⌈output columns / tile output columns⌉
  OutT* c;
  int64_t c_stride;
  const float* row_scales;  //!< scale_rows without scale_index: null scales by 1 (a layer's shared expert)
  const int32_t* scale_index;
  int out_top_k;  //!< scatter_add: pairs per token
};

//! Tile geometry of a schedule's policy, for weights of `WeightBytes` bytes (2: bf16 / fp16
//! tiles of 8 chunks of 16 bytes per row; 1: e4m3 tiles of 4).
template <class Tiles, int WeightBytes = 2>
struct gemm_geometry {
  static constexpr int bm = Tiles::block_rows, bn = Tiles::block_cols, stages = Tiles::stages;
  static constexpr int threads = 32 * Tiles::warps_m * Tiles::warps_n;
  static constexpr int wm = bm / Tiles::warps_m, wn = bn / Tiles::warps_n;
  static constexpr int m_frags = wm / 16, n_frags = wn / 8;
  static constexpr int b_chunks = gemm_block_k * WeightBytes / 16;  //!< 16-byte chunks per B tile row
  static constexpr int a_copies = bm * 8 / threads, b_copies = bn * b_chunks / threads;  //!< chunks per thread
  static_assert(wm % 16 == 0 && wn % 16 == 0, "whole m16 fragments and pairs of n8 fragments per warp");
  static_assert(a_copies >= 1 && b_copies >= 1 && a_copies * threads == bm * 8 && b_copies * threads == bn * b_chunks,
                "every thread copies whole chunks");
  static_assert(stages >= 2, "a ring of at least two stages");

  //! Scales per stage (e4m3 weights): the block scales of the tile's (at most two) block rows.
  static constexpr int stage_scales = WeightBytes == 1 ? 2 : 0;

  //! Dynamic shared memory: the stage ring (and its scales), then the group tile starts.
  static constexpr size_t smem_bytes(int groups) {
    return size_t(stages) * ((bm * 2 + bn * WeightBytes) * gemm_block_k + stage_scales * sizeof(float)) +
           (size_t(groups) + 1 + 3) / 4 * 16;
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

//! [begin, end) = [first, last) clamped to [0, rows] (begin ≤ end): bad offsets cannot send a
//! tile out of bounds.
__device__ inline void clamp_range(int64_t first, int64_t last, int64_t rows, int64_t& begin, int64_t& end) {
  begin = min(max(first, int64_t(0)), rows);
  end = min(max(last, begin), rows);
}

//! Rows of packed group e: [e·stride, e·stride + count) with the count clamped to [0, stride].
__device__ inline void packed_range(int e, int32_t count, int64_t stride, int64_t rows, int64_t& begin,
                                    int64_t& end) {
  const int64_t first = int64_t(e) * stride;
  clamp_range(first, first + min(max(int64_t(count), int64_t(0)), stride), rows, begin, end);
}

//! Rows of group e: [offsets[e], offsets[e + 1]) clamped, the packed range, or [0, rows) for
//! one group.
template <class T, class OutT, class W>
__device__ inline void group_range(const grouped_gemm_params<T, OutT, W>& p, int e, int64_t& begin, int64_t& end) {
  if (p.offsets) clamp_range(p.offsets[e], p.offsets[e + 1], p.rows, begin, end);
  else if (p.group_counts) packed_range(e, p.group_counts[e], p.group_stride, p.rows, begin, end);
  else begin = 0, end = p.rows;
}

//! The block scan that numbers the row tiles: warp scans (shuffles, one shared word per warp).
template <int Threads>
using row_tile_scan = cub::BlockScan<int32_t, Threads, cub::BLOCK_SCAN_WARP_SCANS>;

//! Numbers the row tiles of every group: tile_starts[e] = Σ_{e' < e} ⌈rows_e' / BM⌉ for
//! e ≤ groups (a blocked block scan; `scan_memory` holds its storage, free again on return).
//! The offsets (or packed counts) are read once, coalesced, into tile_starts, and each thread takes its
//! consecutive groups from there (a stride of `items` words: free of bank conflicts when odd,
//! as for the kernels' 128, 256 and 384 threads: 5, 3, 3).
template <int Threads, int BM, class T, class OutT, class W>
__device__ inline void number_row_tiles(const grouped_gemm_params<T, OutT, W>& p, void* scan_memory,
                                        int32_t* tile_starts) {
  constexpr int items = (gemm_max_groups + Threads - 1) / Threads + 1;
  if (p.offsets || p.group_counts) {  // every load in flight before the first store waits for one
    const int32_t* source = p.offsets ? p.offsets : p.group_counts;
    const int last = p.offsets ? p.groups : p.groups - 1;
    int32_t offsets[items];
#pragma unroll
    for (int i = 0; i < items; ++i) {
      const int e = int(threadIdx.x) + i * Threads;
      offsets[i] = e <= last ? source[e] : 0;
    }
#pragma unroll
    for (int i = 0; i < items; ++i) {
      const int e = int(threadIdx.x) + i * Threads;
      if (e <= p.groups) tile_starts[e] = offsets[i];
    }
  }
  __syncthreads();
  int32_t tiles[items], starts[items];
#pragma unroll
  for (int i = 0; i < items; ++i) {
    const int e = int(threadIdx.x) * items + i;
    int64_t begin = 0, end = p.rows;  // rows of group e, as group_range gives them
    if (p.offsets && e < p.groups) clamp_range(tile_starts[e], tile_starts[e + 1], p.rows, begin, end);
    if (p.group_counts && e < p.groups) packed_range(e, tile_starts[e], p.group_stride, p.rows, begin, end);
    tiles[i] = e < p.groups ? int32_t((end - begin + BM - 1) / BM) : 0;
  }
  __syncthreads();  // every offset read before the starts overwrite them
  row_tile_scan<Threads>(*static_cast<typename row_tile_scan<Threads>::TempStorage*>(scan_memory))
      .ExclusiveSum(tiles, starts);
#pragma unroll
  for (int i = 0; i < items; ++i) {
    const int e = int(threadIdx.x) * items + i;
    if (e <= p.groups) tile_starts[e] = starts[i];
  }
  __syncthreads();  // tile_starts complete, scan_memory free
}

//! Work item w: row tile w / column_tiles (of group `group`, rows [row0, row0 + BM) ∩
//! [.., group_end)), column tile w mod column_tiles.
struct gemm_work_item {
  int group, column_tile;
  int64_t row0, group_end;
};

template <int BM, class T, class OutT, class W>
__device__ inline gemm_work_item locate_work_item(const grouped_gemm_params<T, OutT, W>& p, const int32_t* tile_starts,
                                                  int64_t w) {
  const int row_tile = int(w / p.column_tiles);
  gemm_work_item item;
  item.column_tile = int(w % p.column_tiles);
  item.group = last_start_at_or_below(tile_starts, p.groups, row_tile);
  int64_t group_begin = 0;
  group_range(p, item.group, group_begin, item.group_end);
  item.row0 = group_begin + int64_t(row_tile - tile_starts[item.group]) * BM;
  return item;
}

//! Work item w of a problem without offsets (one group of `rows` rows): no tile starts needed.
template <int BM, class T, class OutT, class W>
__device__ inline gemm_work_item locate_dense_item(const grouped_gemm_params<T, OutT, W>& p, int64_t w) {
  return {0, int(w % p.column_tiles), w / p.column_tiles * BM, p.rows};
}

//! Whether `pair` is a pair index of [0, P) (one unsigned comparison): −1 (a masked pair)
//! and padding sentinels ≥ P (e.g. vLLM's P) are not, and must not be dereferenced.
__device__ inline bool valid_pair(int32_t pair, int64_t pairs) { return uint64_t(int64_t(pair)) < uint64_t(pairs); }

//! Row of A behind row `tile_row` of the item's A tile: r, or with gather_pairs the token
//! gather_pairs[r] / top_k; −1 (a zero row) past the group's end or for a gathered index that
//! is not a valid_pair (the division would turn −1 into row 0).
template <class T, class OutT, class W>
__device__ inline int64_t a_source_row(const grouped_gemm_params<T, OutT, W>& p, const gemm_work_item& item,
                                       int tile_row) {
  const int64_t r = item.row0 + tile_row;
  if (r >= item.group_end) return -1;
  if (!p.gather_pairs) return r;
  const int32_t pair = p.gather_pairs[r];
  return valid_pair(pair, p.pairs) ? int64_t(pair / p.top_k) : -1;
}

//! Source of row `tile_row` of the item's A tile (a_source_row), null for a zero row.
template <class T, class OutT, class W>
__device__ inline const T* a_row_source(const grouped_gemm_params<T, OutT, W>& p, const gemm_work_item& item,
                                        int tile_row) {
  const int64_t row = a_source_row(p, item, tile_row);
  return row < 0 ? nullptr : p.a + row * p.a_stride;
}

//! Starts this thread's 16-byte copies into a stage tile of `Chunks` 16-byte chunks per row: 8,
//! a `swizzled_offset` tile of 128-byte rows (64 bf16 / fp16 elements or 128 e4m3 codes), or 4,
//! an `e4m3_tile_offset` tile of 64 e4m3 codes. `thread` (of Threads) copies chunk
//! c = thread mod Chunks of tile rows (thread + i·Threads) / Chunks from rows[i] + column +
//! c·(elements per chunk); a null row or a chunk at or past `k` is written as zeros
//! (`fallback`: any valid address).
template <int Threads, int Chunks, int Copies, class E>
__device__ inline void copy_tile_rows(E* tile, const E* const (&rows)[Copies], const E* fallback, int thread,
                                      int column, int k) {
  static_assert(Chunks == 8 || (Chunks == 4 && sizeof(E) == 1), "128-byte swizzled rows, or 64 e4m3 codes");
  constexpr int chunk_elements = 16 / int(sizeof(E));
  const int chunk = thread % Chunks;
  column += chunk * chunk_elements;
#pragma unroll
  for (int i = 0; i < Copies; ++i) {
    const bool valid = column < k && rows[i];
    const int row = (thread + i * Threads) / Chunks;
    const int byte_offset = Chunks == 8 ? block::swizzled_offset(row, chunk) * 2 : block::e4m3_tile_offset(row, chunk);
    block::copy_async_16(reinterpret_cast<char*>(tile) + byte_offset, valid ? rows[i] + column : fallback, valid);
  }
}

//! Starts this thread's 16-byte copies into a `k_major_offset` stage tile of B `[K, N]`: 64 rows
//! k0 .. k0 + 63 of BN elements. `thread` (of Threads) copies chunk c = thread mod (BN / 8)
//! (the same in all its copies) of tile rows (thread + i·Threads) / (BN / 8), from
//! `column` + (k0 + row)·stride, where `column` is the first of the chunk's 8 columns of B;
//! a null column or a row at or past `k` is written as zeros (`fallback`: any valid address).
template <int Threads, int BN, int Copies, class E>
__device__ inline void copy_k_major_rows(E* tile, const E* column, const E* fallback, int thread, int k0, int k,
                                         int64_t stride) {
  constexpr int row_chunks = BN / 8;
  static_assert(Threads % row_chunks == 0 && Copies * Threads == gemm_block_k * row_chunks, "whole rows per pass");
  const int chunk = thread % row_chunks;
#pragma unroll
  for (int i = 0; i < Copies; ++i) {
    const int row = (thread + i * Threads) / row_chunks;
    const bool valid = column && k0 + row < k;
    block::copy_async_16(tile + block::k_major_offset(row, chunk), valid ? column + int64_t(k0 + row) * stride : fallback,
                         valid);
  }
}

//! Where the epilogue puts output row r, and with what scale: read before the main loop, so
//! that its dependent loads (a pair index, then the pair's scale) overlap the loop instead of
//! following it (two dependent round trips fewer after the last stage).
template <class OutT>
struct row_target {
  OutT* c_row = nullptr;  //!< null: the row adds nothing (scatter_add of a row that is no pair)
  float scale = 1.0f;
  bool zero = false;      //!< scale_rows of a row that names no pair: zeros, whatever acc holds (NaN, Inf)
};

template <device::gemm_epilogue Epilogue, class T, class OutT, class W>
__device__ inline row_target<OutT> target_of_row(const grouped_gemm_params<T, OutT, W>& p, int64_t r) {
  row_target<OutT> t;
  t.c_row = p.c + r * p.c_stride;
  if constexpr (Epilogue == device::gemm_epilogue::scale_rows) {
    if (!p.scale_index) {
      t.scale = p.row_scales ? p.row_scales[r] : 1.0f;
    } else {
      const int32_t pair = p.scale_index[r];
      t.zero = !valid_pair(pair, p.pairs);
      t.scale = t.zero ? 0.0f : p.row_scales[pair];
    }
  } else if constexpr (Epilogue == device::gemm_epilogue::scatter_add) {
    const int32_t pair = p.scale_index[r];
    if (!valid_pair(pair, p.pairs)) return {nullptr};  // not a pair: nothing to add
    t.scale = p.row_scales[pair];
    t.c_row = p.c + int64_t(pair / p.out_top_k) * p.c_stride;  // the pair's token
  }
  return t;
}

//! The epilogue for one accumulator row: `frags` are C fragments of 8 columns each, this
//! thread's row g + 8·upper of them (g = lane / 4) goes to `target`, and its columns start at
//! column0 + 2·(lane mod 4). For swiglu the gate and up fragments pair as (2i, 2i + 1)
//! (`SwigluHalves` false: interleaved 8-row groups of B) or (i, i + Frags / 2) (true: the
//! gate rows are the first half of the B tile, the up rows the second); output column
//! column0 + 8i + 2·(lane mod 4).
template <device::gemm_epilogue Epilogue, bool SwigluHalves, int Frags, class T, class OutT, class W>
__device__ inline void write_row(const grouped_gemm_params<T, OutT, W>& p, const float (&frags)[Frags][4], int upper,
                                 const row_target<OutT>& target, int column0) {
  constexpr bool scatter = Epilogue == device::gemm_epilogue::scatter_add;
  const int column_in_fragment = 2 * int(threadIdx.x % 4);
  if (!target.c_row) return;
  if constexpr (Epilogue == device::gemm_epilogue::swiglu) {
#pragma unroll
    for (int i = 0; i < Frags / 2; ++i) {
      const float(&gate)[4] = frags[SwigluHalves ? i : 2 * i];
      const float(&up)[4] = frags[SwigluHalves ? i + Frags / 2 : 2 * i + 1];
      store_columns<false>(target.c_row, column0 + 8 * i + column_in_fragment, p.n / 2,
                           silu(gate[2 * upper]) * up[2 * upper], silu(gate[2 * upper + 1]) * up[2 * upper + 1]);
    }
  } else {
    const float scale = target.scale;
    const bool zero = target.zero;
#pragma unroll
    for (int nj = 0; nj < Frags; ++nj) {
      store_columns<scatter>(target.c_row, column0 + 8 * nj + column_in_fragment, p.n,
                             zero ? 0.0f : scale * frags[nj][2 * upper], zero ? 0.0f : scale * frags[nj][2 * upper + 1]);
    }
  }
}

//! The shared memory of the sm_80 kernels: the stage ring (A tiles, B tiles, the stages'
//! scales), then the group tile starts.
template <class T, class W, class Tiles>
struct gemm_smem {
  T* a_ring;
  W* b_ring;
  float* scale_ring;  //!< e4m3 weights: stage_scales per stage
  int32_t* tile_starts;

  __device__ explicit gemm_smem(void* smem)
      : a_ring(static_cast<T*>(smem)),
        b_ring(reinterpret_cast<W*>(a_ring + Tiles::stages * Tiles::block_rows * gemm_block_k)),
        scale_ring(reinterpret_cast<float*>(b_ring + Tiles::stages * Tiles::block_cols * gemm_block_k)),
        tile_starts(reinterpret_cast<int32_t*>(scale_ring +
                                               Tiles::stages * gemm_geometry<Tiles, int(sizeof(W))>::stage_scales)) {}
};

//! Row of B_e behind row j of a work item's B tile, or −1 past N. For swiglu, 8-row groups
//! alternate gate (W1) and up (W3) rows of the same output columns.
template <bool Swiglu, int BN, class P>
__device__ inline int tile_weight_row(const P& p, int column_tile, int j) {
  if constexpr (Swiglu) {
    const int column = column_tile * (BN / 2) + (j / 16) * 8 + j % 8;
    return column >= p.n / 2 ? -1 : (j / 8) % 2 ? p.n / 2 + column : column;
  } else {
    return column_tile * BN + j < p.n ? column_tile * BN + j : -1;
  }
}

//! The e4m3 weights' scales of a work item (weights.cuh). block_128: the B tile's rows lie in
//! at most two block rows, `rows[0]` and (SwiGLU's up half) `rows[1]` (null past N), whose
//! scales of k block kb the block's last stage copies with its tiles (copy): no dependent load
//! in the main loop; an n8 fragment reads the one of its 8 rows (`row_of`). per_channel: this
//! lane's two columns of each fragment, read before the main loop.
template <bool Swiglu, int BN, int NFrags>
struct tile_weight_scales {
  const float* rows[2] = {nullptr, nullptr};  //!< the block rows' scales, ⌈K/128⌉ each
  float channel[NFrags][2];

  __device__ tile_weight_scales() {}  //!< T weights: none

  template <class P>
  __device__ tile_weight_scales(const P& p, int group, int column_tile, int wn0) {
    constexpr int halves = Swiglu ? 2 : 1;
    const float* expert = p.b_scales + int64_t(group) * scales_per_expert(p.b_scaling, p.n, p.k, halves);
    if (p.b_scaling == weight_scales::block_128) {
      const int k_blocks = (p.k + weight_block - 1) / weight_block;
#pragma unroll
      for (int h = 0; h < halves; ++h) {
        const int first = tile_weight_row<Swiglu, BN>(p, column_tile, 8 * h);  // 8-row groups alternate halves
        if (first >= 0) rows[h] = expert + scale_block_row(first, p.n, halves) * k_blocks;
      }
    }
    const int q = int(threadIdx.x % 4);
#pragma unroll
    for (int nj = 0; nj < NFrags; ++nj) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int row = tile_weight_row<Swiglu, BN>(p, column_tile, wn0 + 8 * nj + 2 * q + i);
        channel[nj][i] = p.b_scaling != weight_scales::per_channel ? 1.0f : row < 0 ? 0.0f : expert[row];
      }
    }
  }

  //! Which block row fragment nj's rows lie in: SwiGLU's odd 8-row groups are up rows.
  __device__ static int row_of(int wn0, int nj) { return Swiglu ? (wn0 / 8 + nj) % 2 : 0; }

  //! Starts the copies of k block kb's scales into `stage` (thread 0 and 1; zeros past N).
  __device__ void copy(float* stage, int kb) const {
    const int h = int(threadIdx.x);
    const float* row = h == 0 ? rows[0] : rows[1];  // not rows[h]: a register array, not local memory
    if (h < (Swiglu ? 2 : 1) && rows[0]) block::copy_async_4(stage + h, row ? row + kb : rows[0], row);
  }
};

//! One work item of problem `p`: the item's output tile, streamed through the block's stage ring.
//! e4m3 weights: each 128-deep k block's product is accumulated apart and added to acc times
//! its block scale (1 unless block_128; copied with the block's last stage), so the scales
//! apply in fp32; per-channel scales multiply acc once, at the end. KMajorB: B_e is `[K, N]`
//! (row k at b + e·b_expert_stride + k·b_stride), its tiles copied by copy_k_major_rows; the
//! tile's columns map to B's as its weight rows otherwise do (tile_weight_row).
template <class Tiles, device::gemm_epilogue Epilogue, bool KMajorB = false, class T, class OutT, class W>
__device__ __forceinline__ void run_work_item(const grouped_gemm_params<T, OutT, W>& p, const gemm_work_item& item,
                                              const gemm_smem<T, W, Tiles>& smem) {
  using geo = gemm_geometry<Tiles, int(sizeof(W))>;
  constexpr int BM = geo::bm, BN = geo::bn, BK = gemm_block_k, S = geo::stages, threads = geo::threads;
  constexpr bool swiglu = Epilogue == device::gemm_epilogue::swiglu, e4m3 = sizeof(W) == 1;
  static_assert(weight_block % BK == 0, "whole stages per k block of the scales");
  static_assert(!e4m3 || weight_block % (swiglu ? BN / 2 : BN) == 0,
                "a tile's weight rows within one block row (per SwiGLU half): tile_weight_scales");
  static_assert(!(e4m3 && KMajorB), "k-major B: bf16 / fp16 weights");
  static_assert(!KMajorB || BN % 64 == 0, "k-major B: whole 64-column sub-tiles (block::k_major_offset)");
  T* const a_ring = smem.a_ring;
  W* const b_ring = smem.b_ring;
  const int warp_index = int(threadIdx.x / 32), lane = int(warp::lane_id());
  const int wm0 = warp_index / Tiles::warps_n * geo::wm, wn0 = warp_index % Tiles::warps_n * geo::wn;
  // This thread's copy sources: row pointers fixed for the work item, columns per stage.
  const T* a_src[geo::a_copies];
  const W* b_src[geo::b_copies];  // KMajorB: b_src[0] only, the first column of this thread's chunk
#pragma unroll
  for (int i = 0; i < geo::a_copies; ++i) a_src[i] = a_row_source(p, item, (int(threadIdx.x) + i * threads) / 8);
  const W* const b_expert = p.b + int64_t(item.group) * p.b_expert_stride;
  if constexpr (KMajorB) {  // 8 columns of one SwiGLU half (N / 2 a multiple of 8)
    const int column = tile_weight_row<swiglu, BN>(p, item.column_tile, int(threadIdx.x) % (BN / 8) * 8);
    b_src[0] = column < 0 ? nullptr : b_expert + column;
  } else {
#pragma unroll
    for (int i = 0; i < geo::b_copies; ++i) {
      const int weight_row =
          tile_weight_row<swiglu, BN>(p, item.column_tile, (int(threadIdx.x) + i * threads) / geo::b_chunks);
      b_src[i] = weight_row < 0 ? nullptr : b_expert + int64_t(weight_row) * p.b_stride;
    }
  }
  const int k_tiles = (p.k + BK - 1) / BK;
  constexpr int stages_per_block = weight_block / BK;
  // The last stage of a k block of the scales, which promotes its partial sums.
  const auto ends_block = [&](int k_tile) {
    return k_tile % stages_per_block == stages_per_block - 1 || k_tile + 1 == k_tiles;
  };
  // e4m3: the scales (block_128: copied with the stages; per_channel: read here, before the
  // first stage's copies: their latency overlaps the ring's).
  const tile_weight_scales<swiglu, BN, geo::n_frags> scales =
      e4m3 ? tile_weight_scales<swiglu, BN, geo::n_frags>(p, item.group, item.column_tile, wn0)
           : tile_weight_scales<swiglu, BN, geo::n_frags>{};
  const auto load_stage = [&](int k_tile, int slot) {
    copy_tile_rows<threads, 8>(a_ring + slot * BM * BK, a_src, p.a, int(threadIdx.x), k_tile * BK, p.k);
    if constexpr (KMajorB) {
      copy_k_major_rows<threads, BN, geo::b_copies>(b_ring + slot * BN * BK, b_src[0], p.b, int(threadIdx.x),
                                                    k_tile * BK, p.k, p.b_stride);
    } else {
      copy_tile_rows<threads, geo::b_chunks>(b_ring + slot * BN * BK, b_src, p.b, int(threadIdx.x), k_tile * BK, p.k);
    }
    if (e4m3 && ends_block(k_tile)) scales.copy(smem.scale_ring + slot * geo::stage_scales, k_tile / stages_per_block);
  };

  float acc[geo::m_frags][geo::n_frags][4] = {};
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < k_tiles) load_stage(s, s);
    block::copy_async_commit();
  }
  // The epilogue's rows (and the weights' scales), read while the stages fly: after their
  // copies, so that a branch on a pair index delays none of them.
  row_target<OutT> targets[geo::m_frags][2];
#pragma unroll
  for (int mi = 0; mi < geo::m_frags; ++mi) {
#pragma unroll
    for (int upper = 0; upper < 2; ++upper) {
      const int64_t r = item.row0 + wm0 + mi * 16 + lane / 4 + upper * 8;
      targets[mi][upper] = r < item.group_end ? target_of_row<Epilogue>(p, r) : row_target<OutT>{nullptr};
    }
  }
  if constexpr (e4m3) {
    float block_acc[geo::m_frags][geo::n_frags][4] = {};
    for (int kt = 0; kt < k_tiles; ++kt) {
      block::copy_async_wait<S - 2>();
      __syncthreads();
      if (kt + S - 1 < k_tiles) load_stage(kt + S - 1, (kt + S - 1) % S);
      block::copy_async_commit();
      warp::multiply_stage_e4m3<T>(block_acc, a_ring + (kt % S) * BM * BK, b_ring + (kt % S) * BN * BK, wm0, wn0);
      if (ends_block(kt)) {  // acc += s_kb · the k block's partial sums (s_kb from this stage's slot)
        const float* stage_scales = smem.scale_ring + (kt % S) * geo::stage_scales;
#pragma unroll
        for (int nj = 0; nj < geo::n_frags; ++nj) {
          const float s = p.b_scaling == weight_scales::block_128 ? stage_scales[scales.row_of(wn0, nj)] : 1.0f;
#pragma unroll
          for (int mi = 0; mi < geo::m_frags; ++mi) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              acc[mi][nj][i] += s * block_acc[mi][nj][i];
              block_acc[mi][nj][i] = 0.0f;
            }
          }
        }
      }
    }
#pragma unroll
    for (int mi = 0; mi < geo::m_frags; ++mi) {
#pragma unroll
      for (int nj = 0; nj < geo::n_frags; ++nj) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mi][nj][i] *= scales.channel[nj][i % 2];  // columns 2q, 2q + 1
      }
    }
  } else {
    for (int kt = 0; kt < k_tiles; ++kt) {
      block::copy_async_wait<S - 2>();  // stage kt has landed (for this thread) ...
      __syncthreads();                  // ... for every thread; slot (kt − 1) mod S is free
      if (kt + S - 1 < k_tiles) load_stage(kt + S - 1, (kt + S - 1) % S);
      block::copy_async_commit();
      warp::multiply_stage<T, geo::m_frags, geo::n_frags, KMajorB>(acc, a_ring + (kt % S) * BM * BK,
                                                                   b_ring + (kt % S) * BN * BK, wm0, wn0);
    }
  }
  block::copy_async_wait<0>();
  __syncthreads();  // every warp is done with the ring before the next work item refills it

  // Epilogue: fragment (mi, nj) holds rows g and g + 8, columns 2q and 2q + 1.
  const int column0 = swiglu ? item.column_tile * (BN / 2) + wn0 / 2 : item.column_tile * BN + wn0;
#pragma unroll
  for (int mi = 0; mi < geo::m_frags; ++mi) {
#pragma unroll
    for (int upper = 0; upper < 2; ++upper) write_row<Epilogue, false>(p, acc[mi], upper, targets[mi][upper], column0);
  }
}

//! The start of both sm_80 kernels: waits for the kernel before (the group offsets, the gathered
//! rows), lets the next one launch, and numbers the row tiles of `p`.
template <class Tiles, class T, class OutT, class W>
__device__ inline gemm_smem<T, W, Tiles> begin_gemm(const grouped_gemm_params<T, OutT, W>& p, void* smem) {
  static_assert(sizeof(typename row_tile_scan<gemm_geometry<Tiles>::threads>::TempStorage) <=
                    sizeof(T) * Tiles::stages * Tiles::block_rows * gemm_block_k,
                "the scan's storage fits the idle ring");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // mma.sync / cp.async / ldmatrix need sm_80: never run a build without them
#endif
  const gemm_smem<T, W, Tiles> shared(smem);
  wait_for_dependencies();
  launch_dependents();
  number_row_tiles<gemm_geometry<Tiles>::threads, Tiles::block_rows>(p, smem, shared.tile_starts);
  return shared;
}

//! Launch bounds (threads, 1): one resident block is all the persistent grid needs (it sizes
//! itself from the occupancy the kernel gets). Observed with CUDA 13.0: without the minimum,
//! ptxas gave an e4m3 decode kernel 72 registers and a spill; with it, 95 and none.
template <class T, class OutT, class Tiles, device::gemm_epilogue Epilogue, class W = T, bool KMajorB = false>
__global__ void __launch_bounds__(gemm_geometry<Tiles>::threads, 1)
    grouped_gemm_kernel(grouped_gemm_params<T, OutT, W> p) {
  extern __shared__ int4 smem[];
  const gemm_smem<T, W, Tiles> shared = begin_gemm<Tiles>(p, smem);
  const int64_t work = int64_t(shared.tile_starts[p.groups]) * p.column_tiles;
  for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
    run_work_item<Tiles, Epilogue, KMajorB>(p, locate_work_item<Tiles::block_rows>(p, shared.tile_starts, w), shared);
  }
}

//! Column tiles a layer's fused combine can count: one completion counter each, after
//! route_decode's in the workspace's counter bytes (H ≤ 448 · 64 = 28672 at BN = 64).
constexpr size_t layer_arrivals_offset = 256;
constexpr int layer_max_column_tiles = int((device::workspace_counter_bytes - layer_arrivals_offset) / sizeof(unsigned));

//! What a layer's decode launch adds to the grouped problem (layer_gemm_kernel).
template <class T, class W = T>
struct layer_gemm_extras {
  grouped_gemm_params<T, T, W> dense;  //!< a dense problem after the grouped one (the shared expert); rows 0: none
  unsigned* arrivals;               //!< null: no combine; else a counter per column tile, zero between launches
  combine_rows<T> combine;          //!< what the fused combine sums (rows of the grouped and dense problems)
};

//! The grouped problem `p` (the routed experts) and `extras.dense` (the shared expert) in one
//! persistent launch, the dense problem's work items after the grouped ones'. With `arrivals`
//! (GEMM 2 of a layer, epilogue scale_rows; ignored by the other epilogues: both problems have the same N, hence the same column tiles, at most
//! layer_max_column_tiles), the combine follows in the same launch, deterministically: each work
//! item counts itself done for its column tile (last_to_arrive), and the block that completes a
//! column tile combines those columns of every token (combine_columns) once its own work items
//! are done, summing in the order of `combine`. With no work item at all (every pair masked, no
//! shared expert) the blocks combine the column tiles in turn.
template <class T, class Tiles, device::gemm_epilogue Epilogue, class W = T>
__global__ void __launch_bounds__(gemm_geometry<Tiles>::threads, 1)  // as grouped_gemm_kernel's
    layer_gemm_kernel(grouped_gemm_params<T, T, W> p, layer_gemm_extras<T, W> extras) {
  constexpr int BM = Tiles::block_rows, BN = Tiles::block_cols, words = (layer_max_column_tiles + 31) / 32;
  // Only GEMM 2 (scale_rows) fuses the combine: the other epilogues compile without it.
  constexpr bool fuses_combine = Epilogue == device::gemm_epilogue::scale_rows;
  extern __shared__ int4 smem[];
  __shared__ unsigned completed[words];  // bit j: this block completed column tile j
  for (int i = int(threadIdx.x); i < words; i += int(blockDim.x)) completed[i] = 0;
  const gemm_smem<T, W, Tiles> shared = begin_gemm<Tiles>(p, smem);  // ends with a barrier
  const int32_t grouped_tiles = shared.tile_starts[p.groups];
  const int64_t grouped_work = int64_t(grouped_tiles) * p.column_tiles;
  const int64_t dense_tiles = (extras.dense.rows + BM - 1) / BM;
  const int64_t work = grouped_work + dense_tiles * extras.dense.column_tiles;
  const unsigned work_items_per_tile = unsigned(grouped_tiles + dense_tiles);
  for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
    gemm_work_item item;
    if (w < grouped_work) {
      item = locate_work_item<BM>(p, shared.tile_starts, w);
      run_work_item<Tiles, Epilogue>(p, item, shared);
    } else {
      item = locate_dense_item<BM>(extras.dense, w - grouped_work);
      run_work_item<Tiles, Epilogue>(extras.dense, item, shared);
    }
    if (fuses_combine && extras.arrivals &&
        last_to_arrive(extras.arrivals + item.column_tile, work_items_per_tile) && threadIdx.x == 0) {
      completed[item.column_tile / 32] |= 1u << (item.column_tile % 32);
    }
  }
  if (!fuses_combine || !extras.arrivals) return;
  __syncthreads();  // the marks
  for (int j = 0; j < p.column_tiles; ++j) {
    const bool mine = work == 0 ? j % int(gridDim.x) == int(blockIdx.x) : (completed[j / 32] >> (j % 32)) & 1u;
    if (mine) combine_columns(extras.combine, j * BN, min(j * BN + BN, p.n));
  }
}

}  // namespace beam::detail
