//! @file
//! Tile-level pieces of the Hopper (sm_90) grouped GEMM, usable in a kernel of your own:
//! shared-memory barriers (`mbarrier`) with transaction counts, TMA tensor-tile copies and
//! cp.async completions that arrive on them, and the warpgroup tensor-core product
//! `wgmma.mma_async` m64nNk16 (bf16 or fp16) or m64nNk32 (e4m3) from shared memory, fp32
//! accumulation.
//!
//! Operand tiles use the layout of `block::swizzled_offset` (128 bytes per row: 64 bf16 /
//! fp16 elements or 128 e4m3 codes, 16-byte chunk c of row r at c ⊕ (r mod 8)), which is the hardware's 128-byte swizzle
//! when the tile starts on a 1024-byte boundary: TMA writes it (CU_TENSOR_MAP_SWIZZLE_128B),
//! `block::copy_async_16` writes it chunk by chunk at `block::swizzled_offset`,
//! `warp::multiply_stage` reads it with ldmatrix, and `warpgroup::mma_async` reads it through
//! `swizzled_tile_descriptor`.
//!
//! wgmma accumulators (warp w of the warpgroup, g = lane / 4, q = lane % 4): d[i][0..1] are
//! row 16w + g, columns 8i + 2q and 8i + 2q + 1; d[i][2..3] the same columns of row
//! 16w + g + 8 — the C fragments of `warp::mma_m16n8k16` for n8 block i.
//!
//! mbarrier, TMA and the async-proxy fence need sm_90; wgmma needs sm_90a (a build for
//! `compute_90a`). Without them these functions trap instead of silently doing nothing.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace beam::block {

//! Initialises a shared-memory barrier whose phases complete after `arrivals` arrivals (and
//! all expected transaction bytes). One thread; make it visible with __syncthreads.
__device__ inline void init_barrier(uint64_t* barrier, int arrivals) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(unsigned(__cvta_generic_to_shared(barrier))),
               "r"(arrivals)
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90 instructions: never silently skipped
#endif
}

//! After the last init_barrier (same thread), before the __syncthreads that publishes them:
//! makes the initialised barriers visible to the async proxy (TMA completions).
__device__ inline void fence_barrier_init() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\nfence.proxy.async.shared::cta;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90 instructions: never silently skipped
#endif
}

//! Arrives on the barrier (release: this thread's prior memory accesses happen before the
//! phase completes).
__device__ inline void arrive(uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(unsigned(__cvta_generic_to_shared(barrier)))
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90 instructions: never silently skipped
#endif
}

//! Arrives on the barrier and adds `bytes` to the transaction bytes the current phase waits
//! for (to be delivered by `copy_tensor_tile`s completing on it).
__device__ inline void arrive_expecting_bytes(uint64_t* barrier, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   unsigned(__cvta_generic_to_shared(barrier))),
               "r"(bytes)
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90 instructions: never silently skipped
#endif
}

//! Waits until the barrier's phase of parity `parity` (0 for its first phase, 1 for the
//! second, ...) has completed (acquire). Waiting on the parity before the first phase
//! returns at once.
__device__ inline void wait_barrier(uint64_t* barrier, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred complete;\nmbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2;\n"
        "selp.u32 %0, 1, 0, complete;\n}\n"
        : "=r"(done)
        : "r"(unsigned(__cvta_generic_to_shared(barrier))), "r"(parity)
        : "memory");
  } while (!done);
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90 instructions: never silently skipped
#endif
}

//! Arrives on the barrier once all of this thread's prior `copy_async_16` copies have landed
//! (`cp.async.mbarrier.arrive.noinc`: count these arrivals in the barrier's `arrivals`).
__device__ inline void arrive_after_copies(uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(
                   unsigned(__cvta_generic_to_shared(barrier)))
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90 instructions: never silently skipped
#endif
}

//! Starts a TMA copy of the box of the 4-D tensor `map` at element coordinates
//! (c0, c1, c2, c3) (c0 innermost) into shared memory at `dst` (1024-byte aligned for the
//! 128-byte swizzle); elements outside the tensor are written as zeros. Its bytes complete
//! on `barrier`.
__device__ inline void copy_tensor_tile(void* dst, const CUtensorMap* map, int c0, int c1, int c2, int c3,
                                        uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(unsigned(__cvta_generic_to_shared(dst))),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(unsigned(__cvta_generic_to_shared(barrier)))
      : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90 instructions: never silently skipped
#endif
}

//! Orders this thread's view of shared memory written through the generic proxy (stores,
//! cp.async), including writes of other threads it has acquired, before its later
//! async-proxy accesses (wgmma operand reads, TMA).
__device__ inline void fence_async_proxy() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90 instructions: never silently skipped
#endif
}

}  // namespace beam::block

namespace beam::warpgroup {

//! The wgmma descriptor of a K-major operand tile in `block::swizzled_offset` layout whose
//! 8-row groups are 1024 bytes apart: start address, stride byte offset 1024, 128-byte
//! swizzle (PTX "matrix descriptor"). For the 32-byte k step s of a 128-byte-deep stage pass
//! tile + 32·s bytes (16·s bf16 / fp16 elements, 32·s e4m3 codes; the swizzle applies to the
//! absolute address, so the 1024-byte pattern still starts at the tile).
__device__ inline uint64_t swizzled_tile_descriptor(const void* tile) {
  const uint64_t address = uint64_t(__cvta_generic_to_shared(tile));
  return ((address & 0x3FFFF) >> 4) | uint64_t(1) << 16 | uint64_t(1024 >> 4) << 32 | uint64_t(1) << 62;
}

//! The wgmma descriptor of an N-major B tile (imm-trans-b 1), or an M-major A tile (imm-trans-a 1),
//! in `block::k_major_offset` layout
//! (64-column sub-tiles of 64 K rows × 128 bytes, as a TMA box of B `[K, N]` with the 128-byte
//! swizzle writes them): swizzle atoms of 8 K rows × 128 bytes, the next 8 K rows 1024 bytes on
//! (stride byte offset), the next 64 columns 8192 bytes on (leading byte offset, MN-major), 128-byte
//! swizzle. For the k16 step s of a 64-deep stage pass tile + 16·s rows (16·s·64 elements).
__device__ inline uint64_t k_major_tile_descriptor(const void* tile) {
  const uint64_t address = uint64_t(__cvta_generic_to_shared(tile));
  return ((address & 0x3FFFF) >> 4) | uint64_t(8192 >> 4) << 16 | uint64_t(1024 >> 4) << 32 | uint64_t(1) << 62;
}

//! `wgmma.fence`: orders the warpgroup's prior register accesses (accumulators) before the
//! following mma_async. All 128 threads.
__device__ inline void mma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90a instructions: never silently skipped
#endif
}

//! Closes the group of mma_async issued since the last commit. All 128 threads.
__device__ inline void mma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90a instructions: never silently skipped
#endif
}

//! Waits until at most `Pending` committed mma groups are in flight; then fence_operands.
template <int Pending>
__device__ inline void mma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90a instructions: never silently skipped
#endif
}

//! Keeps the compiler from moving accesses of the accumulators across this point (after
//! mma_wait, before reading them; before mma_fence, after writing them).
template <int Frags>
__device__ inline void fence_operands(float (&d)[Frags][4]) {
#pragma unroll
  for (int i = 0; i < Frags; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+f"(d[i][j])::"memory");
  }
}

//! d += A · Bᵀ (d = A · Bᵀ with `accumulate` false) for one 32-byte k step, asynchronously: A is
//! 64 rows and B N weight rows of 32 bytes each (k16 of bf16 / fp16, k32 of e4m3; k contiguous),
//! or with TransB B N-major (16 K rows of N elements: k_major_tile_descriptor), and with TransA
//! A M-major likewise (16 K rows of 64 elements), both read from shared memory through
//! descriptors; d[N / 8][4] are the warpgroup's accumulators (layout in the file comment). Issue
//! after mma_fence, complete with mma_commit / mma_wait. All 128 threads.
//! @tparam T       __nv_bfloat16, __half or __nv_fp8_e4m3 (both operands)
//! @tparam N       64, 128 or 256
//! @tparam TransB  B N-major (imm-trans-b 1; bf16 / fp16)
//! @tparam TransA  A M-major (imm-trans-a 1; bf16 / fp16)
template <class T, int N, bool TransB = false, bool TransA = false>
__device__ inline void mma_async(float (&d)[N / 8][4], uint64_t a, uint64_t b, bool accumulate = true) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_fp8_e4m3>,
                "bf16, fp16 or e4m3 inputs");
  static_assert(!(TransA || TransB) || sizeof(T) == 2, "MN-major operands of 16-bit elements");
  static_assert(N == 64 || N == 128 || N == 256, "N of 64, 128 or 256");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // One asm statement per N; TYPE is the PTX element type ("bf16" or "f16").
#define BEAM_WGMMA_M64N64(K, TYPE, TAIL) \
  asm volatile( \
      "{\n.reg .pred d_in;\nsetp.ne.b32 d_in, %34, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n64" K ".f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
      "}, %32, %33, d_in" TAIL ";\n}\n" \
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), \
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), \
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]) \
      : "l"(a), "l"(b), "r"(accumulate ? 1 : 0))
#define BEAM_WGMMA_M64N128(K, TYPE, TAIL) \
  asm volatile( \
      "{\n.reg .pred d_in;\nsetp.ne.b32 d_in, %66, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128" K ".f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
      "}, %64, %65, d_in" TAIL ";\n}\n" \
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), \
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), \
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), \
        "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), \
        "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), \
        "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), \
        "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3]) \
      : "l"(a), "l"(b), "r"(accumulate ? 1 : 0))
#define BEAM_WGMMA_M64N256(K, TYPE, TAIL) \
  asm volatile( \
      "{\n.reg .pred d_in;\nsetp.ne.b32 d_in, %130, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n256" K ".f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" \
      "}, %128, %129, d_in" TAIL ";\n}\n" \
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), \
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), \
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), \
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), \
        "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), \
        "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), \
        "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), \
        "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3]), \
        "+f"(d[16][0]), "+f"(d[16][1]), "+f"(d[16][2]), "+f"(d[16][3]), "+f"(d[17][0]), "+f"(d[17][1]), "+f"(d[17][2]), "+f"(d[17][3]), \
        "+f"(d[18][0]), "+f"(d[18][1]), "+f"(d[18][2]), "+f"(d[18][3]), "+f"(d[19][0]), "+f"(d[19][1]), "+f"(d[19][2]), "+f"(d[19][3]), \
        "+f"(d[20][0]), "+f"(d[20][1]), "+f"(d[20][2]), "+f"(d[20][3]), "+f"(d[21][0]), "+f"(d[21][1]), "+f"(d[21][2]), "+f"(d[21][3]), \
        "+f"(d[22][0]), "+f"(d[22][1]), "+f"(d[22][2]), "+f"(d[22][3]), "+f"(d[23][0]), "+f"(d[23][1]), "+f"(d[23][2]), "+f"(d[23][3]), \
        "+f"(d[24][0]), "+f"(d[24][1]), "+f"(d[24][2]), "+f"(d[24][3]), "+f"(d[25][0]), "+f"(d[25][1]), "+f"(d[25][2]), "+f"(d[25][3]), \
        "+f"(d[26][0]), "+f"(d[26][1]), "+f"(d[26][2]), "+f"(d[26][3]), "+f"(d[27][0]), "+f"(d[27][1]), "+f"(d[27][2]), "+f"(d[27][3]), \
        "+f"(d[28][0]), "+f"(d[28][1]), "+f"(d[28][2]), "+f"(d[28][3]), "+f"(d[29][0]), "+f"(d[29][1]), "+f"(d[29][2]), "+f"(d[29][3]), \
        "+f"(d[30][0]), "+f"(d[30][1]), "+f"(d[30][2]), "+f"(d[30][3]), "+f"(d[31][0]), "+f"(d[31][1]), "+f"(d[31][2]), "+f"(d[31][3]) \
      : "l"(a), "l"(b), "r"(accumulate ? 1 : 0))
  // k16 with imm-scale-a/b 1, A K-major or M-major (imm-trans-a), B K-major or N-major
  // (imm-trans-b); e4m3: k32, no transpose operands.
#define BEAM_WGMMA_16BIT(MACRO, TYPE)         \
  if constexpr (TransA && TransB) {           \
    MACRO("k16", TYPE, ", 1, 1, 1, 1");       \
  } else if constexpr (TransA) {              \
    MACRO("k16", TYPE, ", 1, 1, 1, 0");       \
  } else if constexpr (TransB) {              \
    MACRO("k16", TYPE, ", 1, 1, 0, 1");       \
  } else {                                    \
    MACRO("k16", TYPE, ", 1, 1, 0, 0");       \
  }
#define BEAM_WGMMA_FOR_TYPE(MACRO)                          \
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {         \
    BEAM_WGMMA_16BIT(MACRO, "bf16")                         \
  } else if constexpr (std::is_same_v<T, __half>) {         \
    BEAM_WGMMA_16BIT(MACRO, "f16")                          \
  } else {                                                  \
    MACRO("k32", "e4m3", ", 1, 1");                         \
  }
  if constexpr (N == 64) {
    BEAM_WGMMA_FOR_TYPE(BEAM_WGMMA_M64N64)
  } else if constexpr (N == 128) {
    BEAM_WGMMA_FOR_TYPE(BEAM_WGMMA_M64N128)
  } else {
    BEAM_WGMMA_FOR_TYPE(BEAM_WGMMA_M64N256)
  }
#undef BEAM_WGMMA_FOR_TYPE
#undef BEAM_WGMMA_16BIT
#undef BEAM_WGMMA_M64N64
#undef BEAM_WGMMA_M64N128
#undef BEAM_WGMMA_M64N256
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_90a instructions: never silently skipped
#endif
}

}  // namespace beam::warpgroup
