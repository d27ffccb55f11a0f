//! @file
//! Hopper kernel of beam::device::grouped_gemm: the persistent loop of the sm_80 kernel
//! (same tile numbering, work items and epilogue), warp-specialised. Warpgroup 0 produces:
//! its thread 0 loads each B stage with TMA (a 4-D tensor map, so out-of-range weight rows
//! and columns arrive as zeros) and all 128 threads load the A stage with cp.async (rows
//! gathered through sorted_pairs, which TMA cannot do on sm_90); both complete on the
//! stage's `full` barrier. Warpgroups 1.. consume: warpgroup c multiplies rows
//! [64c, 64c + 64) of the tile with wgmma (m64nBNk16, operands straight from the swizzled
//! stage; one stage's products stay in flight while the next is issued) and releases each
//! stage on its `empty` barrier once its products are done; the ring of `stages` slots runs
//! across work items, so loads of the next item overlap this item's epilogue. Built without
//! sm_90a features (e.g. for compute_90), the consumers multiply with mma.sync instead.
//!
//! W8A8 (A and B e4m3, weights.cuh): a stage is 128 codes deep, the same 128-byte swizzled rows;
//! the producers also copy, with the stage, the A rows' scales of its 128-channel group and the
//! weights' block scales (cp.async, 4 bytes each, on the same `full` barrier). The consumers
//! multiply a stage into partial sums (wgmma m64nBNk32, fp32) and add them to the accumulators
//! times s_A(row) · s_B (DeepGEMM's promotion: the fp8 products' limited accumulator precision
//! never builds up beyond 128 of K); per-channel weight scales multiply the final sums. The
//! W8A8 kernel needs sm_90a: built without it, it traps and the host never launches it
//! (wgmma_probe_kernel).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "beam/gemm/detail/grouped_gemm_kernel.cuh"
#include "beam/gemm/tile_wgmma.cuh"

namespace beam::detail {

//! Tile geometry of a Hopper policy for elements of `ElementBytes` bytes (2: bf16 / fp16; 1:
//! e4m3, W8A8): BM / 64 consumer warpgroups and one producer; stages 128 bytes deep.
template <class Tiles, int ElementBytes = 2>
struct hopper_geometry {
  static constexpr int bm = Tiles::block_rows, bn = Tiles::block_cols, stages = Tiles::stages;
  static constexpr int bk = 128 / ElementBytes;  //!< elements per 128-byte stage row
  static constexpr int consumers = bm / 64, threads = 128 * (consumers + 1);
  static constexpr int a_copies = bm * 8 / 128;  //!< 16-byte A chunks per producer thread and stage
  static constexpr size_t stage_bytes = size_t(bm + bn) * 128;
  //! Scales per stage (W8A8): the A tile rows' and the weights' (at most two) block scales.
  static constexpr int stage_scales = ElementBytes == 1 ? bm + 2 : 0;
  static_assert(bm == 64 || bm == 128, "one or two consumer warpgroups of 64 rows (at most 384 threads)");
  static_assert(bn == 64 || bn == 128 || bn == 256, "a wgmma N of 64, 128 or 256");
  static_assert(stages >= 2, "a ring of at least two stages");
  static_assert(1024 + stages * (stage_bytes + 2 * 8 + stage_scales * 4) + (gemm_max_groups + 1) * 4 <= 227 * 1024,
                "the ring and 512 groups' tile starts fit sm_90's 227 KiB per block");

  //! Dynamic shared memory: 1024 bytes of alignment slack, the stage ring (A tiles, then B
  //! tiles), `full` and `empty` barriers per stage, the stages' scales, then the group tile starts.
  static constexpr size_t smem_bytes(int groups) {
    return 1024 + stages * (stage_bytes + 2 * sizeof(uint64_t) + stage_scales * sizeof(float)) +
           (size_t(groups) + 1) * sizeof(int32_t);
  }
};

//! A position in a ring of `Slots` slots: the slot, and the phase, the parity of the pass over
//! the ring (0 on the first, 1 on the second, ...), flipped each time the slot wraps to 0. The
//! producer and every consumer advance their own once per stage, so both walk the same
//! sequence, at any length (a stage count s with slot s mod Slots and phase (s / Slots) mod 2
//! breaks where a 32-bit s wraps, 2^32 not being a multiple of Slots = 5).
template <int Slots>
struct ring_position {
  int slot = 0;
  uint32_t phase = 0;
  __host__ __device__ void advance() {
    slot = slot + 1 == Slots ? 0 : slot + 1;
    if (slot == 0) phase ^= 1;
  }
};

//! Row of B_e behind row j of a work item's B tile, or −1 past N. For swiglu the tile's first
//! BN / 2 rows are gate (W1) rows, the rest the up (W3) rows of the same output columns.
template <bool Swiglu, int BN, class P>
__device__ inline int hopper_weight_row(const P& p, int column_tile, int j) {
  if constexpr (Swiglu) {
    const int column = column_tile * (BN / 2) + j % (BN / 2);
    return column >= p.n / 2 ? -1 : j < BN / 2 ? column : p.n / 2 + column;
  } else {
    return column_tile * BN + j < p.n ? column_tile * BN + j : -1;
  }
}

//! Never launched: its static shared memory tells the host whether the code loaded for the
//! device has sm_90a's features (wgmma), which the W8A8 kernel needs (16 bytes: yes).
template <int = 0>
__global__ void wgmma_probe_kernel() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __shared__ int4 probe;
  asm volatile("" ::"l"(&probe));
#endif
}

//! Bytes of an element of E, as hopper_geometry takes it.
template <class E>
inline constexpr int element_bytes = int(sizeof(E));

//! KMajorB (grouped_gemm_nn): B_e is `[K, N]`; each stage's B tile arrives as BN / 64 TMA boxes of
//! 64 K rows × 64 columns (block::k_major_offset layout) and wgmma reads it N-major (imm-trans-b 1,
//! warpgroup::k_major_tile_descriptor). Not with the swiglu epilogue, nor W8A8.
template <class T, class OutT, class Tiles, device::gemm_epilogue Epilogue, class W = T, bool KMajorB = false>
__global__ void __launch_bounds__(hopper_geometry<Tiles, element_bytes<W>>::threads, 1)
    grouped_gemm_hopper_kernel(const __grid_constant__ CUtensorMap b_map, grouped_gemm_params<T, OutT, W> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using geo = hopper_geometry<Tiles, element_bytes<W>>;
  constexpr int BM = geo::bm, BN = geo::bn, BK = geo::bk, S = geo::stages;
  constexpr bool swiglu = Epilogue == device::gemm_epilogue::swiglu, w8a8 = sizeof(T) == 1;
  static_assert(sizeof(T) == sizeof(W), "bf16 / fp16 A and B, or e4m3 A and B");
  static_assert(!KMajorB || (!swiglu && !w8a8), "a k-major B with the store, scale_rows or scatter_add epilogue");
  static_assert(!w8a8 || weight_block % (swiglu ? BN / 2 : BN) == 0,
                "a tile's weight rows within one block row (per SwiGLU half)");
  extern __shared__ int4 smem[];
  // The ring on a 1024-byte boundary: where the 128-byte swizzle pattern starts.
  const unsigned misalignment = unsigned(__cvta_generic_to_shared(smem)) % 1024;
  T* a_ring = reinterpret_cast<T*>(reinterpret_cast<char*>(smem) + (1024 - misalignment) % 1024);
  W* b_ring = reinterpret_cast<W*>(a_ring + S * BM * BK);
  uint64_t* full = reinterpret_cast<uint64_t*>(b_ring + S * BN * BK);  // stage landed: A and B bytes
  uint64_t* empty = full + S;                                          // stage read by every consumer warp
  float* scale_ring = reinterpret_cast<float*>(empty + S);             // W8A8: stage_scales per stage
  int32_t* tile_starts = reinterpret_cast<int32_t*>(scale_ring + S * geo::stage_scales);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < S; ++s) {
      block::init_barrier(&full[s], 128 + 1);  // the producers' cp.async arrivals + the TMA byte count
      block::init_barrier(&empty[s], 4 * geo::consumers);
    }
    block::fence_barrier_init();
  }
  static_assert(sizeof(typename row_tile_scan<geo::threads>::TempStorage) <= S * BM * 128,
                "the scan's storage fits the idle ring");
  wait_for_dependencies();  // the group offsets, the gathered rows: the kernels before wrote them
  launch_dependents();
  number_row_tiles<geo::threads, BM>(p, a_ring, tile_starts);  // its __syncthreads publishes the barriers

  const int64_t work = int64_t(tile_starts[p.groups]) * p.column_tiles;
  const int k_tiles = (p.k + BK - 1) / BK;
  const int warpgroup_index = int(threadIdx.x / 128);
  constexpr int halves = swiglu ? 2 : 1;
  ring_position<S> ring;  // the stage this thread's warpgroup loads or multiplies next

  if (warpgroup_index == 0) {  // producer
    const int thread = int(threadIdx.x);
    for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
      const gemm_work_item item = locate_work_item<BM>(p, tile_starts, w);
      const T* a_src[geo::a_copies];
#pragma unroll
      for (int i = 0; i < geo::a_copies; ++i) a_src[i] = a_row_source(p, item, (thread + i * 128) / 8);
      // W8A8: this thread's A row scales (row `thread` of the tile) and, in threads 0 and 1,
      // the k blocks' scales of the tile's block rows (gate and up for swiglu).
      const float* a_scale_row = nullptr;
      const float* b_scale_row = nullptr;
      if constexpr (w8a8) {
        const int64_t row = thread < BM ? a_source_row(p, item, thread) : -1;
        if (row >= 0) a_scale_row = p.a_scales + row * p.a_scale_stride;
        if (p.b_scaling == weight_scales::block_128 && thread < halves) {
          const int first = hopper_weight_row<swiglu, BN>(p, item.column_tile, thread * (BN / 2));
          b_scale_row = p.b_scales + int64_t(item.group) * scales_per_expert(p.b_scaling, p.n, p.k, halves) +
                        scale_block_row(first, p.n, halves) * k_tiles;
        }
      }
      // swiglu: rows [0, BN/2) of the B tile are gate rows, the rest the up rows of the same
      // columns (halves 0 and 1 of the map); otherwise BN weight rows of half 0.
      const int weight_row = swiglu ? item.column_tile * (BN / 2) : item.column_tile * BN;
      for (int kt = 0; kt < k_tiles; ++kt, ring.advance()) {
        const int slot = ring.slot;
        block::wait_barrier(&empty[slot], ring.phase ^ 1);  // the slot's use in the previous pass is read
        W* b_tile = b_ring + slot * BN * BK;
        if (thread == 0) {
          block::arrive_expecting_bytes(&full[slot], BN * 128);
          if constexpr (KMajorB) {  // boxes of 64 columns × 64 K rows
#pragma unroll
            for (int j = 0; j < BN / 64; ++j) {
              block::copy_tensor_tile(b_tile + j * 64 * BK, &b_map, item.column_tile * BN + 64 * j, kt * BK, 0,
                                      item.group, &full[slot]);
            }
          } else if constexpr (swiglu) {
            block::copy_tensor_tile(b_tile, &b_map, kt * BK, weight_row, 0, item.group, &full[slot]);
            block::copy_tensor_tile(b_tile + BN / 2 * BK, &b_map, kt * BK, weight_row, 1, item.group, &full[slot]);
          } else {
            block::copy_tensor_tile(b_tile, &b_map, kt * BK, weight_row, 0, item.group, &full[slot]);
          }
        }
        copy_tile_rows<128, 8>(a_ring + slot * BM * BK, a_src, p.a, thread, kt * BK, p.k);
        if constexpr (w8a8) {  // a zero scale for a zero row, 1 unless block_128 for the weights
          float* scales = scale_ring + slot * geo::stage_scales;
          if (thread < BM) block::copy_async_4(scales + thread, a_scale_row ? a_scale_row + kt : p.a_scales, a_scale_row);
          if (b_scale_row) block::copy_async_4(scales + BM + thread, b_scale_row + kt, true);
        }
        block::arrive_after_copies(&full[slot]);
      }
    }
    block::copy_async_commit();  // no copy of this thread outlives it
    block::copy_async_wait<0>();
  } else {  // consumer warpgroup: tile rows [64c, 64c + 64)
    const int consumer = warpgroup_index - 1, warp_in_group = int(threadIdx.x / 32) % 4;
    const int lane = int(threadIdx.x % 32);
    for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
      const gemm_work_item item = locate_work_item<BM>(p, tile_starts, w);
      row_target<OutT> targets[2];  // the epilogue's rows, read while the loop runs
#pragma unroll
      for (int upper = 0; upper < 2; ++upper) {
        const int64_t r = item.row0 + consumer * 64 + warp_in_group * 16 + lane / 4 + upper * 8;
        targets[upper] = r < item.group_end ? target_of_row<Epilogue>(p, r) : row_target<OutT>{nullptr};
      }
      float acc[1][BN / 8][4] = {};  // the warp's rows 16·warp_in_group + (g, g + 8) of the warpgroup's 64
      const auto release = [&](int slot) {
        __syncwarp();
        if (lane == 0) block::arrive(&empty[slot]);
      };
      // Waits until the stage in `slot` has landed; then its A rows of this warpgroup and its B tile.
      const auto wait_stage = [&](int slot, uint32_t phase) {
        block::wait_barrier(&full[slot], phase);
        __syncwarp();  // converged again after the wait loop, as the .aligned instructions need
      };
      const auto a_tile_of = [&](int slot) { return a_ring + slot * BM * BK + consumer * 64 * BK; };
      const auto b_tile_of = [&](int slot) { return b_ring + slot * BN * BK; };
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
      if constexpr (w8a8) {
        float partial[BN / 8][4] = {};  // one stage's sums: promoted to acc, scaled, after the stage
        const int tile_row = consumer * 64 + warp_in_group * 16 + lane / 4;
        for (int kt = 0; kt < k_tiles; ++kt, ring.advance()) {
          const int slot = ring.slot;
          wait_stage(slot, ring.phase);
          const T* a_tile = a_tile_of(slot);
          const W* b_tile = b_tile_of(slot);
          block::fence_async_proxy();  // A arrived through cp.async (generic proxy); wgmma reads async
          warpgroup::fence_operands(partial);
          warpgroup::mma_fence();
#pragma unroll
          for (int s = 0; s < 4; ++s) {  // k32 steps of 32 bytes; the first overwrites the partial sums
            warpgroup::mma_async<W, BN>(partial, warpgroup::swizzled_tile_descriptor(a_tile + 32 * s),
                                        warpgroup::swizzled_tile_descriptor(b_tile + 32 * s), s > 0);
          }
          warpgroup::mma_commit();
          warpgroup::mma_wait<0>();
          warpgroup::fence_operands(partial);
          const float* scales = scale_ring + slot * geo::stage_scales;
          const float row_scale[2] = {scales[tile_row], scales[tile_row + 8]};
          const bool blocks = p.b_scaling == weight_scales::block_128;
          const float block_scale[2] = {blocks ? scales[BM] : 1.0f, blocks && swiglu ? scales[BM + 1] : 1.0f};
          release(slot);
#pragma unroll
          for (int i = 0; i < BN / 8; ++i) {
            const float b_scale = block_scale[swiglu && i >= BN / 16 ? 1 : 0];
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[0][i][j] += partial[i][j] * (row_scale[j / 2] * b_scale);
          }
        }
        if (p.b_scaling == weight_scales::per_channel) {  // columns 8i + 2q, 8i + 2q + 1
          const float* expert = p.b_scales + int64_t(item.group) * p.n;
#pragma unroll
          for (int i = 0; i < BN / 8; ++i) {
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int row = hopper_weight_row<swiglu, BN>(p, item.column_tile, 8 * i + 2 * (lane % 4) + c);
              const float scale = row < 0 ? 0.0f : expert[row];
              acc[0][i][c] *= scale;
              acc[0][i][c + 2] *= scale;
            }
          }
        }
      } else {
        int pending_slot = -1;  // the slot whose products may still be in flight
        for (int kt = 0; kt < k_tiles; ++kt, ring.advance()) {
          const int slot = ring.slot;
          wait_stage(slot, ring.phase);
          const T* a_tile = a_tile_of(slot);
          const W* b_tile = b_tile_of(slot);
          block::fence_async_proxy();  // A arrived through cp.async (generic proxy); wgmma reads async
          warpgroup::fence_operands(acc[0]);
          warpgroup::mma_fence();
#pragma unroll
          for (int s = 0; s < BK / 16; ++s) {
            const uint64_t b = KMajorB ? warpgroup::k_major_tile_descriptor(b_tile + 16 * s * 64)
                                       : warpgroup::swizzled_tile_descriptor(b_tile + 16 * s);
            warpgroup::mma_async<T, BN, KMajorB>(acc[0], warpgroup::swizzled_tile_descriptor(a_tile + 16 * s), b);
          }
          warpgroup::mma_commit();
          warpgroup::mma_wait<1>();  // this stage's products may run on; the previous stage's are done
          warpgroup::fence_operands(acc[0]);
          if (pending_slot >= 0) release(pending_slot);
          pending_slot = slot;
        }
        warpgroup::mma_wait<0>();
        warpgroup::fence_operands(acc[0]);
        if (pending_slot >= 0) release(pending_slot);
      }
#else
      if constexpr (w8a8) {
        __trap();  // W8A8 needs wgmma (sm_90a): the host never launches this build (wgmma_probe_kernel)
      } else {
        for (int kt = 0; kt < k_tiles; ++kt, ring.advance()) {
          const int slot = ring.slot;
          wait_stage(slot, ring.phase);
          warp::multiply_stage<T, 1, BN / 8, KMajorB>(acc, a_tile_of(slot), b_tile_of(slot), 16 * warp_in_group, 0);
          release(slot);
        }
      }
#endif
      const int column0 = swiglu ? item.column_tile * (BN / 2) : item.column_tile * BN;
#pragma unroll
      for (int upper = 0; upper < 2; ++upper) write_row<Epilogue, true>(p, acc[0], upper, targets[upper], column0);
    }
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // TMA and mbarrier need sm_90: the host launches this kernel only from sm_90 code
#endif
}

}  // namespace beam::detail
