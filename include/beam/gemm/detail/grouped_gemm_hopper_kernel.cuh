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
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "beam/gemm/detail/grouped_gemm_kernel.cuh"
#include "beam/gemm/tile_wgmma.cuh"

namespace beam::detail {

//! Tile geometry of a Hopper policy: BM / 64 consumer warpgroups and one producer.
template <class Tiles>
struct hopper_geometry {
  static constexpr int bm = Tiles::block_rows, bn = Tiles::block_cols, stages = Tiles::stages;
  static constexpr int consumers = bm / 64, threads = 128 * (consumers + 1);
  static constexpr int a_copies = bm * 8 / 128;  //!< 16-byte A chunks per producer thread and stage
  static constexpr size_t stage_elements = size_t(bm + bn) * gemm_block_k;
  static_assert(bm == 64 || bm == 128, "one or two consumer warpgroups of 64 rows (at most 384 threads)");
  static_assert(bn == 64 || bn == 128 || bn == 256, "a wgmma N of 64, 128 or 256");
  static_assert(stages >= 2, "a ring of at least two stages");
  static_assert(1024 + stages * stage_elements * 2 + 2 * stages * 8 + (gemm_max_groups + 1) * 4 <= 227 * 1024,
                "the ring and 512 groups' tile starts fit sm_90's 227 KiB per block");

  //! Dynamic shared memory: 1024 bytes of alignment slack, the stage ring (A tiles, then B
  //! tiles), `full` and `empty` barriers per stage, then the group tile starts.
  static constexpr size_t smem_bytes(int groups) {
    return 1024 + stages * stage_elements * 2 + 2 * stages * sizeof(uint64_t) + (size_t(groups) + 1) * sizeof(int32_t);
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

template <class T, class OutT, class Tiles, device::gemm_epilogue Epilogue>
__global__ void __launch_bounds__(hopper_geometry<Tiles>::threads, 1)
    grouped_gemm_hopper_kernel(const __grid_constant__ CUtensorMap b_map, grouped_gemm_params<T, OutT> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using geo = hopper_geometry<Tiles>;
  constexpr int BM = geo::bm, BN = geo::bn, BK = gemm_block_k, S = geo::stages;
  constexpr bool swiglu = Epilogue == device::gemm_epilogue::swiglu;
  extern __shared__ int4 smem[];
  // The ring on a 1024-byte boundary: where the 128-byte swizzle pattern starts.
  const unsigned misalignment = unsigned(__cvta_generic_to_shared(smem)) % 1024;
  T* a_ring = reinterpret_cast<T*>(reinterpret_cast<char*>(smem) + (1024 - misalignment) % 1024);
  T* b_ring = a_ring + S * BM * BK;
  uint64_t* full = reinterpret_cast<uint64_t*>(b_ring + S * BN * BK);  // stage landed: A and B bytes
  uint64_t* empty = full + S;                                          // stage read by every consumer warp
  int32_t* tile_starts = reinterpret_cast<int32_t*>(empty + S);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < S; ++s) {
      block::init_barrier(&full[s], 128 + 1);  // the producers' cp.async arrivals + the TMA byte count
      block::init_barrier(&empty[s], 4 * geo::consumers);
    }
    block::fence_barrier_init();
  }
  static_assert(sizeof(typename row_tile_scan<geo::threads>::TempStorage) <= sizeof(T) * S * BM * BK,
                "the scan's storage fits the idle ring");
  wait_for_dependencies();  // the group offsets, the gathered rows: the kernels before wrote them
  launch_dependents();
  number_row_tiles<geo::threads, BM>(p, a_ring, tile_starts);  // its __syncthreads publishes the barriers

  const int64_t work = int64_t(tile_starts[p.groups]) * p.column_tiles;
  const int k_tiles = (p.k + BK - 1) / BK;
  const int warpgroup_index = int(threadIdx.x / 128);
  ring_position<S> ring;  // the stage this thread's warpgroup loads or multiplies next

  if (warpgroup_index == 0) {  // producer
    const int thread = int(threadIdx.x);
    for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
      const gemm_work_item item = locate_work_item<BM>(p, tile_starts, w);
      const T* a_src[geo::a_copies];
#pragma unroll
      for (int i = 0; i < geo::a_copies; ++i) a_src[i] = a_row_source(p, item, (thread + i * 128) / 8);
      // swiglu: rows [0, BN/2) of the B tile are gate rows, the rest the up rows of the same
      // columns (halves 0 and 1 of the map); otherwise BN weight rows of half 0.
      const int weight_row = swiglu ? item.column_tile * (BN / 2) : item.column_tile * BN;
      for (int kt = 0; kt < k_tiles; ++kt, ring.advance()) {
        const int slot = ring.slot;
        block::wait_barrier(&empty[slot], ring.phase ^ 1);  // the slot's use in the previous pass is read
        T* b_tile = b_ring + slot * BN * BK;
        if (thread == 0) {
          block::arrive_expecting_bytes(&full[slot], BN * BK * sizeof(T));
          if constexpr (swiglu) {
            block::copy_tensor_tile(b_tile, &b_map, kt * BK, weight_row, 0, item.group, &full[slot]);
            block::copy_tensor_tile(b_tile + BN / 2 * BK, &b_map, kt * BK, weight_row, 1, item.group, &full[slot]);
          } else {
            block::copy_tensor_tile(b_tile, &b_map, kt * BK, weight_row, 0, item.group, &full[slot]);
          }
        }
        copy_tile_rows<128>(a_ring + slot * BM * BK, a_src, p.a, thread, kt * BK, p.k);
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
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
      int pending_slot = -1;  // the slot whose products may still be in flight
#endif
      for (int kt = 0; kt < k_tiles; ++kt, ring.advance()) {
        const int slot = ring.slot;
        block::wait_barrier(&full[slot], ring.phase);
        __syncwarp();  // converged again after the wait loop, as the .aligned instructions need
        const T* a_tile = a_ring + slot * BM * BK + consumer * 64 * BK;
        const T* b_tile = b_ring + slot * BN * BK;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        block::fence_async_proxy();  // A arrived through cp.async (generic proxy); wgmma reads async
        warpgroup::fence_operands(acc[0]);
        warpgroup::mma_fence();
#pragma unroll
        for (int s = 0; s < BK / 16; ++s) {
          warpgroup::mma_async<T, BN>(acc[0], warpgroup::swizzled_tile_descriptor(a_tile + 16 * s),
                                      warpgroup::swizzled_tile_descriptor(b_tile + 16 * s));
        }
        warpgroup::mma_commit();
        warpgroup::mma_wait<1>();  // this stage's products may run on; the previous stage's are done
        warpgroup::fence_operands(acc[0]);
        if (pending_slot >= 0) release(pending_slot);
        pending_slot = slot;
#else
        warp::multiply_stage<T>(acc, a_tile, b_tile, 16 * warp_in_group, 0);
        release(slot);
#endif
      }
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
      warpgroup::mma_wait<0>();
      warpgroup::fence_operands(acc[0]);
      if (pending_slot >= 0) release(pending_slot);
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
