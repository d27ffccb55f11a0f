//! @file
//! Tile-level pieces of the grouped GEMM (sm_80 and later), usable in a kernel of your own:
//! 16-byte `cp.async` copies with zero fill, an XOR-swizzled shared tile of 64-element rows,
//! `ldmatrix` loads of mma fragments from it, and the tensor-core product
//! `mma.sync.m16n8k16` (bf16 or fp16 inputs, fp32 accumulation).
//!
//! Fragment layouts (PTX ISA, m16n8k16; g = lane / 4, q = lane % 4):
//!   A (16×16, row-major)   a[0]: (g, 2q..2q+1)  a[1]: (g+8, 2q..)  a[2]: (g, 8+2q..)  a[3]: (g+8, 8+2q..)
//!   B (16×8, k × n)        b[0]: (k 2q..2q+1, n g)                 b[1]: (k 8+2q.., n g)
//!   C (16×8, fp32)         c[0..1]: (g, 2q..2q+1)                  c[2..3]: (g+8, 2q..2q+1)
//! A tile stored with k contiguous per row and B stored as weight rows (n) with k contiguous
//! (the `[N, K]` layout of expert weights) both load with plain `ldmatrix`, B stored k-major
//! (`[K, N]`: the backward's product with the forward's weights) with `ldmatrix.trans`;
//! `multiply_stage` puts the pieces together for one 64-deep stage of swizzled tiles.
//!
//! e4m3 weights (W8A16): `dequantize_e4m3x4` turns four e4m3 codes into two bf16 / fp16 pairs
//! in registers, exactly, and `multiply_stage_e4m3` multiplies an A tile by an e4m3 B tile of
//! 64-byte rows. It reads each lane's B bytes as one 16-byte word, so the mma's k order is
//! permuted, identically for A and B: in k16 step c, the lane of column q = lane mod 4 takes
//! physical k 16q + 4c .. 16q + 4c + 3 for the mma's k {2q, 2q + 1, 8 + 2q, 9 + 2q}, its A
//! values being 16 consecutive elements of each of its two rows (two 16-byte loads per row).
//!
//! The asm statements that touch memory (cp.async, ldmatrix: addresses pass as integers, so
//! the compiler sees no memory operand) or order such accesses (commit, wait) have a "memory"
//! clobber: `volatile` alone keeps a statement and its order among other asm, but lets the
//! compiler move plain loads and stores across it or reuse a value loaded before it. The mma
//! works on registers only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace beam::block {

//! A shared tile of `rows` × 64 elements of 2 bytes: 8 chunks of 16 bytes per row, chunk c of
//! row r stored at chunk position c ⊕ (r mod 8), so that the 8 rows an `ldmatrix` phase reads
//! (and the rows a warp's copies write) fall in distinct banks.
//! @return the element offset of chunk `chunk` of row `row`
__device__ constexpr int swizzled_offset(int row, int chunk) { return (row * 8 + (chunk ^ (row & 7))) * 8; }

//! A k-major stage tile of B: 64 rows (k) of 64·s elements (n, contiguous in memory), stored as
//! s `swizzled_offset` tiles of 64 × 64 side by side, so that `ldmatrix.trans` loads mma's B
//! fragments from it as from a row of weights.
//! @return the element offset of chunk `chunk` (elements 8·chunk .. 8·chunk + 7 of n) of row `k`
__device__ constexpr int k_major_offset(int k, int chunk) { return (chunk / 8) * 64 * 64 + swizzled_offset(k, chunk % 8); }

//! Starts a 16-byte global → shared copy (`cp.async.cg`); `valid` false writes 16 zero bytes
//! and reads nothing (`src` must still be a valid address expression, e.g. a base pointer).
__device__ inline void copy_async_16(void* dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned address = unsigned(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_80 instructions: never silently skipped
#endif
}

//! Starts a 4-byte global → shared copy (`cp.async.ca`); `valid` false writes 4 zero bytes
//! and reads nothing (as copy_async_16).
__device__ inline void copy_async_4(void* dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned address = unsigned(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(address), "l"(src), "r"(valid ? 4 : 0)
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_80 instructions: never silently skipped
#endif
}

//! Closes the group of copies started since the last commit.
__device__ inline void copy_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_80 instructions: never silently skipped
#endif
}

//! Waits until at most `Pending` committed groups of this thread are still in flight. The
//! bytes of this thread's completed copies may then be read by this thread with plain loads
//! (no load is moved before the wait); other threads need a barrier (`__syncthreads`) first.
template <int Pending>
__device__ inline void copy_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_80 instructions: never silently skipped
#endif
}

//! An e4m3 shared tile of `rows` × 64 codes: row r at byte 64·r, unswizzled. A warp's 16-byte
//! copies (chunk c of row r from lane 4r' + c) and `multiply_stage_e4m3`'s 16-byte reads (row
//! g, chunk q from lane 4g + q) both cover 128 contiguous bytes per quarter warp: no bank conflict.
__device__ constexpr int e4m3_tile_offset(int row, int chunk) { return row * 64 + chunk * 16; }

}  // namespace beam::block

namespace beam::warp {

//! `ldmatrix.x4`: four 8×8 matrices of 2-byte elements; lane l gives the address of row
//! l mod 8 of matrix l / 8, and r[j] receives matrix j's fragment (row lane / 4, elements
//! 2·(lane mod 4) and the next). `Transposed` (`.trans`): each matrix transposed, r[j] receiving
//! elements (rows 2·(lane mod 4) and the next, column lane / 4), so that a tile stored k-major
//! (row k, elements along m or n) loads as mma's A or B fragments.
template <bool Transposed = false>
__device__ inline void load_matrix_x4(uint32_t (&r)[4], const void* row_address) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned address = unsigned(__cvta_generic_to_shared(row_address));
  if constexpr (Transposed) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address)
                 : "memory");
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_80 instructions: never silently skipped
#endif
}

//! c += a · b on the tensor cores, `mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}`.
//! @tparam T  __nv_bfloat16 or __half (the element type packed in a and b)
template <class T>
__device__ inline void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "bf16 or fp16 inputs");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // sm_80 instructions: never silently skipped
#endif
}

//! acc += A[row0 .. row0 + 16·MFrags) · B[col0 .. col0 + 8·NFrags)ᵀ over one 64-deep stage:
//! a_tile is a `swizzled_offset` tile of A rows (64 elements of k each), b_tile one of B's
//! weight rows (64 elements of k each) or, with KMajorB, a `k_major_offset` tile (64 rows of k,
//! n along the row: B `[K, N]` as it lies in memory); acc[mi][nj] is the C fragment of rows
//! row0 + 16·mi, columns col0 + 8·nj.
template <class T, int MFrags, int NFrags, bool KMajorB = false>
__device__ inline void multiply_stage(float (&acc)[MFrags][NFrags][4], const T* a_tile, const T* b_tile, int row0,
                                      int col0) {
  static_assert(NFrags % 2 == 0, "B fragments load in pairs");
  const int lane = int(threadIdx.x % 32);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {  // k16 steps: chunks 2kk and 2kk + 1 of each row
    uint32_t a_frag[MFrags][4], b_frag[NFrags][2];
#pragma unroll
    for (int mi = 0; mi < MFrags; ++mi) {
      load_matrix_x4(a_frag[mi], a_tile + block::swizzled_offset(row0 + mi * 16 + lane % 16, 2 * kk + lane / 16));
    }
#pragma unroll
    for (int nj = 0; nj < NFrags / 2; ++nj) {  // one x4 load: k halves of two n8 fragments
      uint32_t quad[4];  // matrix j: k 16·kk + 8·(j mod 2) .., n col0 + 16·nj + 8·(j / 2) ..
      if constexpr (KMajorB) {
        load_matrix_x4<true>(quad, b_tile + block::k_major_offset(16 * kk + ((lane / 8) % 2) * 8 + lane % 8,
                                                                  (col0 + nj * 16) / 8 + lane / 16));
      } else {
        load_matrix_x4(quad, b_tile + block::swizzled_offset(col0 + nj * 16 + (lane / 16) * 8 + lane % 8,
                                                             2 * kk + (lane / 8) % 2));
      }
      b_frag[2 * nj][0] = quad[0];
      b_frag[2 * nj][1] = quad[1];
      b_frag[2 * nj + 1][0] = quad[2];
      b_frag[2 * nj + 1][1] = quad[3];
    }
#pragma unroll
    for (int mi = 0; mi < MFrags; ++mi) {
#pragma unroll
      for (int nj = 0; nj < NFrags; ++nj) mma_m16n8k16<T>(acc[mi][nj], a_frag[mi], b_frag[nj]);
    }
  }
}

//! Four e4m3 codes (bytes 0..3 of `codes`, byte 0 first) → out[0] = (v0, v1), out[1] = (v2, v3)
//! as T pairs (low half first), exactly: each code's exponent and mantissa move into T's fields
//! (S.EEEE.MMM → S.0000EEEE.MMM0000 for bf16, S.0EEEE.MMM0000000 for fp16, read as 2^(E−127) or
//! 2^(E−15) · (1 + M/8), subnormal for E = 0), then one multiply by 2^120 (bf16) or 2^8 (fp16)
//! rebiases all of them: every e4m3 value, subnormals included, is a T value. S.1111.111 → NaN.
//! fp16 on sm_89 and later: the hardware's `cvt.rn.f16x2.e4m3x2`, two codes per instruction.
//! @tparam T  __nv_bfloat16 or __half
template <class T>
__device__ inline void dequantize_e4m3x4(uint32_t codes, uint32_t (&out)[2]) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "bf16 or fp16 pairs");
  constexpr bool bf16 = std::is_same_v<T, __nv_bfloat16>;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  constexpr bool hardware = !bf16;
#else
  constexpr bool hardware = false;
#endif
  if constexpr (hardware) {
    asm("{\n.reg .b16 lo, hi;\nmov.b32 {lo, hi}, %2;\ncvt.rn.f16x2.e4m3x2 %0, lo;\ncvt.rn.f16x2.e4m3x2 %1, hi;\n}\n"
        : "=r"(out[0]), "=r"(out[1])
        : "r"(codes));
  } else {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      // Codes 2i and 2i + 1 into the upper bytes of the two halves: S.EEEE.MMM.00000000.
      const uint32_t h = __byte_perm(codes, 0, i == 0 ? 0x1404 : 0x3424);
      const uint32_t fields = bf16 ? (h >> 4) & 0x07f007f0u : (h >> 1) & 0x3f803f80u;
      const uint32_t bits = (h & 0x80008000u) | fields;
      uint32_t value;
      if constexpr (bf16) {
        const __nv_bfloat162 x =
            __hmul2_rn(*reinterpret_cast<const __nv_bfloat162*>(&bits), __floats2bfloat162_rn(0x1p120f, 0x1p120f));
        value = *reinterpret_cast<const uint32_t*>(&x);
      } else {
        const __half2 x = __hmul2_rn(*reinterpret_cast<const __half2*>(&bits), __floats2half2_rn(256.0f, 256.0f));
        value = *reinterpret_cast<const uint32_t*>(&x);
      }
      // EEEE.MMM = 1111.111 carries into bit 15 of its half: NaN there (it decoded to ±480).
      const uint32_t nan_halves = (((h & 0x7f007f00u) + 0x01000100u) & 0x80008000u) >> 15;
      out[i] = value | (nan_halves * 0xffffu & 0x7fff7fffu);
    }
  }
}

//! acc += A[row0 .. row0 + 16·MFrags) · W[col0 .. col0 + 8·NFrags)ᵀ over one 64-deep stage of
//! e4m3 weights (W8A16): a_tile is a `swizzled_offset` tile of T, b_tile an `e4m3_tile_offset`
//! tile of e4m3 weight rows; acc[mi][nj] as in multiply_stage (the k order is permuted as the
//! file comment says: the sum is the same).
template <class T, int MFrags, int NFrags>
__device__ inline void multiply_stage_e4m3(float (&acc)[MFrags][NFrags][4], const T* a_tile,
                                           const __nv_fp8_e4m3* b_tile, int row0, int col0) {
  const int lane = int(threadIdx.x % 32), g = lane / 4, q = lane % 4;
  uint32_t b_frag[NFrags][4][2];  // [n8 fragment][k16 step c][register]
#pragma unroll
  for (int nj = 0; nj < NFrags; ++nj) {
    const uint4 codes = *reinterpret_cast<const uint4*>(b_tile + block::e4m3_tile_offset(col0 + nj * 8 + g, q));
    dequantize_e4m3x4<T>(codes.x, b_frag[nj][0]);
    dequantize_e4m3x4<T>(codes.y, b_frag[nj][1]);
    dequantize_e4m3x4<T>(codes.z, b_frag[nj][2]);
    dequantize_e4m3x4<T>(codes.w, b_frag[nj][3]);
  }
#pragma unroll
  for (int mi = 0; mi < MFrags; ++mi) {
    uint32_t rows[2][8];  // rows g and g + 8: elements 16q .. 16q + 15, in pairs
#pragma unroll
    for (int upper = 0; upper < 2; ++upper) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint4 v = *reinterpret_cast<const uint4*>(
            a_tile + block::swizzled_offset(row0 + mi * 16 + g + 8 * upper, 2 * q + half));
        rows[upper][4 * half] = v.x;
        rows[upper][4 * half + 1] = v.y;
        rows[upper][4 * half + 2] = v.z;
        rows[upper][4 * half + 3] = v.w;
      }
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {  // physical k 16q + 4c .. 16q + 4c + 3: pairs 2c and 2c + 1
      const uint32_t a_frag[4] = {rows[0][2 * c], rows[1][2 * c], rows[0][2 * c + 1], rows[1][2 * c + 1]};
#pragma unroll
      for (int nj = 0; nj < NFrags; ++nj) mma_m16n8k16<T>(acc[mi][nj], a_frag, b_frag[nj][c]);
    }
  }
}

}  // namespace beam::warp
