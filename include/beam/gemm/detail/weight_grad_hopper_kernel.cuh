//! @file
//! Hopper kernel of beam::device::grouped_weight_grad: one block per (group, 128-row tile of M,
//! 128-column tile of N), the group's rows in stages of 64, warp-specialised. Warpgroup 0 copies
//! each stage with cp.async: 64 rows of A (128 elements of M) and of B (128 elements of N, rows
//! gathered by pair where asked), each into a `block::k_major_offset` tile (the MN-major
//! 128-byte-swizzled layout), zeros past the group, M or N; the copies complete on the stage's
//! `full` barrier. Warpgroups 1 and 2 multiply their 64 columns of M with wgmma, A M-major and
//! B N-major (imm-trans-a and -b 1): C[m][n] += Σ_r A[r][m] · B[r][n], and release each stage on
//! its `empty` barrier. The rows are summed in their order: deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/gemm/detail/grouped_gemm_hopper_kernel.cuh"
#include "beam/gemm/detail/weight_grad_kernel.cuh"
#include "beam/gemm/tile_wgmma.cuh"

namespace beam::detail {

struct weight_grad_hopper_tiles {
  static constexpr int block_m = 128, block_n = 128, block_k = 64, stages = 4, consumers = block_m / 64;
  static constexpr int threads = 128 * (consumers + 1);
  static constexpr int copies = block_k * (128 / 8) / 128;  //!< 16-byte chunks per producer thread, stage and operand
  //! 1024 bytes of alignment slack, the A and B rings, `full` and `empty` barriers per stage.
  static constexpr size_t smem_bytes = 1024 + size_t(stages) * (block_k * (block_m + block_n) * 2 + 2 * sizeof(uint64_t));
};

template <class T, class OutT>
__global__ void __launch_bounds__(weight_grad_hopper_tiles::threads, 1)
    grouped_weight_grad_hopper_kernel(const weight_grad_params<T, OutT> p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using tiles = weight_grad_hopper_tiles;
  constexpr int BM = tiles::block_m, BN = tiles::block_n, BK = tiles::block_k, S = tiles::stages;
  extern __shared__ int4 smem[];
  const unsigned misalignment = unsigned(__cvta_generic_to_shared(smem)) % 1024;  // the swizzle's 1024-byte atoms
  T* a_ring = reinterpret_cast<T*>(reinterpret_cast<char*>(smem) + (1024 - misalignment) % 1024);
  T* b_ring = a_ring + S * BK * BM;
  uint64_t* full = reinterpret_cast<uint64_t*>(b_ring + S * BK * BN);
  uint64_t* empty = full + S;
  if (threadIdx.x == 0) {
#pragma unroll
    for (int s = 0; s < S; ++s) {
      block::init_barrier(&full[s], 128);  // the producers' cp.async arrivals
      block::init_barrier(&empty[s], 4 * tiles::consumers);
    }
    block::fence_barrier_init();
  }
  __syncthreads();
  wait_for_dependencies();  // A, B and the offsets: the kernels before wrote them
  launch_dependents();
  const int group = int(blockIdx.z), m0 = int(blockIdx.y) * BM, n0 = int(blockIdx.x) * BN;
  int64_t row_begin = 0, row_end = p.rows;  // no offsets: one group of all the rows
  if (p.offsets) clamp_range(p.offsets[group], p.offsets[group + 1], p.rows, row_begin, row_end);
  const int steps = row_end > row_begin ? int((row_end - row_begin + BK - 1) / BK) : 0;
  ring_position<S> ring;

  if (threadIdx.x < 128) {  // producer: the stages' rows
    const int thread = int(threadIdx.x);
    for (int step = 0; step < steps; ++step, ring.advance()) {
      const int slot = ring.slot;
      block::wait_barrier(&empty[slot], ring.phase ^ 1);  // the slot's use in the previous pass is read
#pragma unroll
      for (int i = 0; i < tiles::copies; ++i) {
        const int id = thread + i * 128, row = id / 16, chunk = id % 16;
        const int64_t r = row_begin + int64_t(step) * BK + row;
        const bool in_rows = r < row_end;
        const bool a_valid = in_rows && m0 + chunk * 8 < p.m;
        block::copy_async_16(a_ring + slot * BK * BM + block::k_major_offset(row, chunk),
                             a_valid ? p.a + r * p.a_stride + m0 + chunk * 8 : p.a, a_valid);
        int64_t b_row = r;
        if (p.b_gather && in_rows) {
          const int32_t pair = p.b_gather[r];
          b_row = valid_pair(pair, p.pairs) ? pair / p.top_k : -1;
        }
        const bool b_valid = in_rows && b_row >= 0 && n0 + chunk * 8 < p.n;
        block::copy_async_16(b_ring + slot * BK * BN + block::k_major_offset(row, chunk),
                             b_valid ? p.b + b_row * p.b_stride + n0 + chunk * 8 : p.b, b_valid);
      }
      block::arrive_after_copies(&full[slot]);
    }
    block::copy_async_commit();  // no copy of this thread outlives it
    block::copy_async_wait<0>();
    return;
  }
  // consumer warpgroup c: columns [64c, 64c + 64) of the tile's M
  const int consumer = int(threadIdx.x / 128) - 1, warp_in_group = int(threadIdx.x / 32) % 4;
  const int lane = int(threadIdx.x % 32);
  float acc[BN / 8][4] = {};
  int pending_slot = -1;  // the slot whose products may still be in flight
  const auto release = [&](int slot) {
    __syncwarp();
    if (lane == 0) block::arrive(&empty[slot]);
  };
  for (int step = 0; step < steps; ++step, ring.advance()) {
    const int slot = ring.slot;
    block::wait_barrier(&full[slot], ring.phase);
    __syncwarp();  // converged again after the wait loop, as the .aligned instructions need
    const T* a_tile = a_ring + slot * BK * BM + consumer * 64 * BK;  // its 64-column sub-tile
    const T* b_tile = b_ring + slot * BK * BN;
    block::fence_async_proxy();  // the stage arrived through cp.async (generic proxy); wgmma reads async
    warpgroup::fence_operands(acc);
    warpgroup::mma_fence();
#pragma unroll
    for (int s = 0; s < BK / 16; ++s) {
      warpgroup::mma_async<T, BN, true, true>(acc, warpgroup::k_major_tile_descriptor(a_tile + 16 * s * 64),
                                              warpgroup::k_major_tile_descriptor(b_tile + 16 * s * 64));
    }
    warpgroup::mma_commit();
    warpgroup::mma_wait<1>();  // this stage's products may run on; the previous stage's are done
    warpgroup::fence_operands(acc);
    if (pending_slot >= 0) release(pending_slot);
    pending_slot = slot;
  }
  warpgroup::mma_wait<0>();
  warpgroup::fence_operands(acc);
  if (pending_slot >= 0) release(pending_slot);
  // acc[i][0..1]: row 16w + g of the warpgroup's 64, columns 8i + 2q, +1; acc[i][2..3]: row + 8.
  OutT* c = p.c + int64_t(group) * p.c_group_stride;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = m0 + consumer * 64 + warp_in_group * 16 + lane / 4 + 8 * half;
    if (row >= p.m) continue;
#pragma unroll
    for (int i = 0; i < BN / 8; ++i) {
      store_columns<false>(c + int64_t(row) * p.c_stride, n0 + 8 * i + 2 * (lane % 4), p.n, acc[i][2 * half],
                           acc[i][2 * half + 1]);
    }
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // wgmma needs sm_90a: the host launches this kernel only where its code has it
#endif
}

}  // namespace beam::detail
