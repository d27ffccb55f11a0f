// sm_80 warp-level matrix instructions and asynchronous copies against the PTX ISA:
//   ldmatrix (ISA 9.7.14.5.15), with the fragment layout of Figure 104 ("Each thread in a warp
//     loads fragments of a row, with thread 0 receiving the first fragment in its register r ...
//     A group of four threads loads an entire row of the matrix"): thread t holds row t/4,
//     columns 2*(t%4) and 2*(t%4)+1, the lower-addressed element in the lower half; .trans
//     loads the matrix in column-major format, i.e. thread t holds column t/4, rows 2*(t%4)
//     and 2*(t%4)+1.
//   mma.sync.aligned.m16n8k16.row.col with .bf16 and .f16 inputs (ISA 9.7.14.5.14), using the
//     fragment formulas of ISA 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point
//     type" (restated in a_element / b_element / c_element below).
//   cp.async, cp.async.commit_group, cp.async.wait_group, cp.async.wait_all (ISA 9.7.9.25.3).
//   wmma.load / wmma.mma / wmma.store .m16n16k16 (ISA 9.7.14.4, through nvcuda::wmma and written in
//     PTX without the stride operand): .f16 and .bf16 multiplicands, .f32 and .f16 accumulators, every
//     layout of A, B, C and D, strides above the default, global, shared and generic addresses. The
//     fragments' distribution over the threads is unspecified ("Matrix Fragments for WMMA"), so only
//     D = A·B + C in memory and element-wise operations on a fragment are checked.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include "isa_test.cuh"

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using isa::buffer;
using isa::hex;

// ---- ldmatrix ------------------------------------------------------------------------------

// Row r of matrix m lives at a scrambled 16-byte slot of shared memory ("Consecutive instances of
// row need not be stored contiguously in memory"); 5 is odd, so this is a bijection on 0..31.
__host__ __device__ constexpr int row_slot(int m, int r) { return ((8 * m + r) * 5 + 3) % 32; }
__host__ __device__ constexpr uint16_t element(int m, int r, int c) { return uint16_t(0x100 + 64 * m + 8 * r + c); }

__global__ void k_ldmatrix(const uint16_t* rows /*32 slots x 8 b16*/, uint32_t* out) {
  __shared__ __align__(16) uint16_t sh[32 * 8];
  const int t = threadIdx.x;
  for (int i = t; i < 32 * 8; i += 32) sh[i] = rows[i];
  __syncwarp();
  // Thread t gives the address of row t%8 of matrix t/8 (threads 8-31 are ignored by .x1, 16-31 by .x2).
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(&sh[row_slot(t / 8, t % 8) * 8]));
  uint32_t x1, x2[2], x4[4], t1, t2[2], t4[4];
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(x1) : "r"(addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];" : "=r"(x2[0]), "=r"(x2[1]) : "r"(addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(x4[0]), "=r"(x4[1]), "=r"(x4[2]), "=r"(x4[3]) : "r"(addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(t1) : "r"(addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];" : "=r"(t2[0]), "=r"(t2[1]) : "r"(addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(t4[0]), "=r"(t4[1]), "=r"(t4[2]), "=r"(t4[3]) : "r"(addr));
  uint32_t* o = out + t * 14;
  o[0] = x1;
  o[1] = x2[0], o[2] = x2[1];
  o[3] = x4[0], o[4] = x4[1], o[5] = x4[2], o[6] = x4[3];
  o[7] = t1;
  o[8] = t2[0], o[9] = t2[1];
  o[10] = t4[0], o[11] = t4[1], o[12] = t4[2], o[13] = t4[3];
}

// Generic address into shared memory (no .shared qualifier): "If no state space is provided,
// generic addressing is used, such that the address in p points into .shared space."
__global__ void k_ldmatrix_generic(const uint16_t* rows, uint32_t* out) {
  __shared__ __align__(16) uint16_t sh[32 * 8];
  const int t = threadIdx.x;
  for (int i = t; i < 32 * 8; i += 32) sh[i] = rows[i];
  __syncwarp();
  uint32_t r;
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.b16 {%0}, [%1];" : "=r"(r) : "l"(&sh[row_slot(0, t % 8) * 8]));
  out[t] = r;
}

// ---- mma ------------------------------------------------------------------------------------

// ISA 9.7.14.5.8: groupID = %laneid >> 2, threadID_in_group = %laneid % 4.
// A (16x16, row): a_i at row groupID for i in {0,1,4,5}, else groupID+8;
//                 col tig*2 + (i & 1), +8 for i >= 4.
void a_element(int lane, int i, int& row, int& col) {
  const int g = lane >> 2, tig = lane % 4;
  row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
  col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
}
// B (16x8, col): b_i at row (k) tig*2 + (i & 1), +8 for i >= 2; col (n) groupID.
void b_element(int lane, int i, int& row, int& col) {
  const int g = lane >> 2, tig = lane % 4;
  row = tig * 2 + (i & 1) + (i >= 2 ? 8 : 0);
  col = g;
}
// C/D (16x8): c_i at row groupID for i < 2, groupID+8 for i >= 2; col tig*2 + (i & 1).
void c_element(int lane, int i, int& row, int& col) {
  const int g = lane >> 2, tig = lane % 4;
  row = i < 2 ? g : g + 8;
  col = tig * 2 + (i & 1);
}

uint16_t to_bf16(float x) {  // exact for the small integers used here
  uint32_t u = isa::bits(x);
  REQUIRE((u & 0xffffu) == 0u);
  return uint16_t(u >> 16);
}
uint16_t to_f16(int v) {  // exact small integers, |v| <= 2048
  if (v == 0) return 0;
  const uint16_t sign = v < 0 ? 0x8000 : 0;
  int a = v < 0 ? -v : v, e = 0;
  while ((a >> e) > 1) ++e;
  const int mant = (a << (10 - e)) & 0x3ff;
  REQUIRE(((a << (10 - e)) >> 10) == 1);
  return uint16_t(sign | ((e + 15) << 10) | mant);
}
float from_f16(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const float mag = e == 0 ? std::ldexp(float(m), -24) : std::ldexp(float(m | 0x400), e - 25);
  return (h & 0x8000) ? -mag : mag;
}

struct mma_problem {
  int a[16][16];  // A[m][k]
  int b[16][8];   // B[k][n]
  int c[16][8];   // C[m][n]
};

// Packs the per-lane fragment registers from the matrices with the ISA formulas.
void pack(const mma_problem& p, bool bf16, std::vector<uint32_t>& a, std::vector<uint32_t>& b, std::vector<float>& c32,
          std::vector<uint32_t>& c16) {
  auto enc = [&](int v) { return bf16 ? to_bf16(float(v)) : to_f16(v); };
  a.assign(32 * 4, 0), b.assign(32 * 2, 0), c32.assign(32 * 4, 0), c16.assign(32 * 2, 0);
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 8; ++i) {
      int r, col;
      a_element(lane, i, r, col);
      a[lane * 4 + i / 2] |= uint32_t(enc(p.a[r][col])) << (16 * (i & 1));
    }
    for (int i = 0; i < 4; ++i) {
      int r, col;
      b_element(lane, i, r, col);
      b[lane * 2 + i / 2] |= uint32_t(enc(p.b[r][col])) << (16 * (i & 1));
    }
    for (int i = 0; i < 4; ++i) {
      int r, col;
      c_element(lane, i, r, col);
      c32[lane * 4 + i] = float(p.c[r][col]);
      c16[lane * 2 + i / 2] |= uint32_t(to_f16(p.c[r][col])) << (16 * (i & 1));
    }
  }
}

__global__ void k_mma_bf16_f32(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
  const int l = threadIdx.x;
  float r0, r1, r2, r3;
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};"
      : "=f"(r0), "=f"(r1), "=f"(r2), "=f"(r3)
      : "r"(a[l * 4]), "r"(a[l * 4 + 1]), "r"(a[l * 4 + 2]), "r"(a[l * 4 + 3]), "r"(b[l * 2]), "r"(b[l * 2 + 1]),
        "f"(c[l * 4]), "f"(c[l * 4 + 1]), "f"(c[l * 4 + 2]), "f"(c[l * 4 + 3]));
  d[l * 4] = r0, d[l * 4 + 1] = r1, d[l * 4 + 2] = r2, d[l * 4 + 3] = r3;
}
__global__ void k_mma_f16_f32(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
  const int l = threadIdx.x;
  float r0, r1, r2, r3;
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};"
      : "=f"(r0), "=f"(r1), "=f"(r2), "=f"(r3)
      : "r"(a[l * 4]), "r"(a[l * 4 + 1]), "r"(a[l * 4 + 2]), "r"(a[l * 4 + 3]), "r"(b[l * 2]), "r"(b[l * 2 + 1]),
        "f"(c[l * 4]), "f"(c[l * 4 + 1]), "f"(c[l * 4 + 2]), "f"(c[l * 4 + 3]));
  d[l * 4] = r0, d[l * 4 + 1] = r1, d[l * 4 + 2] = r2, d[l * 4 + 3] = r3;
}
__global__ void k_mma_f16_f16(const uint32_t* a, const uint32_t* b, const uint32_t* c, uint32_t* d) {
  const int l = threadIdx.x;
  uint32_t r0, r1;
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0, %1}, {%2, %3, %4, %5}, {%6, %7}, {%8, %9};"
      : "=r"(r0), "=r"(r1)
      : "r"(a[l * 4]), "r"(a[l * 4 + 1]), "r"(a[l * 4 + 2]), "r"(a[l * 4 + 3]), "r"(b[l * 2]), "r"(b[l * 2 + 1]),
        "r"(c[l * 2]), "r"(c[l * 2 + 1]));
  d[l * 2] = r0, d[l * 2 + 1] = r1;
}

// Runs one problem through all three variants and compares every D element, placed by
// c_element, with the integer product.
void check_mma(const char* what, const mma_problem& p) {
  int want[16][8];
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      int s = p.c[m][n];
      for (int k = 0; k < 16; ++k) s += p.a[m][k] * p.b[k][n];
      want[m][n] = s;
    }
  for (int variant = 0; variant < 3; ++variant) {
    std::vector<uint32_t> a, b, c16;
    std::vector<float> c32;
    pack(p, variant == 0, a, b, c32, c16);
    buffer<uint32_t> da(a), db(b), dc16(c16), dd16(32 * 2);
    buffer<float> dc32(c32), dd32(32 * 4);
    if (variant == 0) k_mma_bf16_f32<<<1, 32>>>(da.get(), db.get(), dc32.get(), dd32.get());
    if (variant == 1) k_mma_f16_f32<<<1, 32>>>(da.get(), db.get(), dc32.get(), dd32.get());
    if (variant == 2) k_mma_f16_f16<<<1, 32>>>(da.get(), db.get(), dc16.get(), dd16.get());
    ISA_SYNC();
    const auto d32 = dd32.host();
    const auto d16 = dd16.host();
    const char* vname[3] = {"f32.bf16.bf16.f32", "f32.f16.f16.f32", "f16.f16.f16.f16"};
    int bad = 0;
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        int r, col;
        c_element(lane, i, r, col);
        const float got = variant < 2 ? d32[lane * 4 + i] : from_f16(uint16_t(d16[lane * 2 + i / 2] >> (16 * (i & 1))));
        if (got != float(want[r][col]) && ++bad <= 8)
          CHECK_MESSAGE(false, std::string(what), " mma.", std::string(vname[variant]), ": lane ", lane, " d", i, " (D[", r, "][", col, "]) = ", got,
                        ", want ", want[r][col]);
      }
    CHECK_MESSAGE(bad == 0, std::string(what), " mma.", std::string(vname[variant]), ": ", bad, " wrong elements");
  }
}

// ---- wmma -----------------------------------------------------------------------------------

// A (lda), B (ldb) and C (ldc, row- or column-major) loaded from memory, A and B from shared memory
// when `shared`; every element of A's fragment negated when `negate_a` (an element-wise operation,
// which the unspecified distribution permits); D = A·B + C stored with ldd, row- or column-major.
// In: half or __nv_bfloat16 (16-bit codes in memory); Acc: float or half.
template <class In, class Acc, class ALayout, class BLayout>
__global__ void k_wmma(const uint16_t* a, unsigned lda, const uint16_t* b, unsigned ldb, const void* c, unsigned ldc,
                       bool c_col, void* d, unsigned ldd, bool d_col, bool negate_a, bool shared) {
  namespace wmma = nvcuda::wmma;
  __shared__ __align__(32) uint16_t sa[16 * 48], sb[16 * 48];
  const In* pa = reinterpret_cast<const In*>(a);
  const In* pb = reinterpret_cast<const In*>(b);
  if (shared) {
    for (unsigned i = threadIdx.x; i < 16 * lda; i += 32) sa[i] = a[i];
    for (unsigned i = threadIdx.x; i < 16 * ldb; i += 32) sb[i] = b[i];
    __syncwarp();
    pa = reinterpret_cast<const In*>(sa);
    pb = reinterpret_cast<const In*>(sb);
  }
  wmma::fragment<wmma::matrix_a, 16, 16, 16, In, ALayout> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, In, BLayout> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, Acc> fc;
  wmma::load_matrix_sync(fa, pa, lda);
  wmma::load_matrix_sync(fb, pb, ldb);
  wmma::load_matrix_sync(fc, static_cast<const Acc*>(c), ldc, c_col ? wmma::mem_col_major : wmma::mem_row_major);
  if (negate_a)
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = -fa.x[i];
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(static_cast<Acc*>(d), fc, ldd, d_col ? wmma::mem_col_major : wmma::mem_row_major);
}

// The forms without the stride operand, whose default is the leading dimension, 16 ("Matrix Storage
// for WMMA"): .f16 A (row) and B (col) with .f16 C and D (row), and .bf16 A (col) and B (row) with
// .f32 C (col) and D (row).
__global__ void k_wmma_f16_default_stride(const uint16_t* a, const uint16_t* b, const uint16_t* c, uint16_t* d) {
  uint32_t ra[8], rb[8], rc[4], rd[4];
  asm volatile("wmma.load.a.sync.aligned.row.m16n16k16.global.f16 {%0, %1, %2, %3, %4, %5, %6, %7}, [%8];"
               : "=r"(ra[0]), "=r"(ra[1]), "=r"(ra[2]), "=r"(ra[3]), "=r"(ra[4]), "=r"(ra[5]), "=r"(ra[6]), "=r"(ra[7])
               : "l"(a));
  asm volatile("wmma.load.b.sync.aligned.col.m16n16k16.global.f16 {%0, %1, %2, %3, %4, %5, %6, %7}, [%8];"
               : "=r"(rb[0]), "=r"(rb[1]), "=r"(rb[2]), "=r"(rb[3]), "=r"(rb[4]), "=r"(rb[5]), "=r"(rb[6]), "=r"(rb[7])
               : "l"(b));
  asm volatile("wmma.load.c.sync.aligned.row.m16n16k16.global.f16 {%0, %1, %2, %3}, [%4];"
               : "=r"(rc[0]), "=r"(rc[1]), "=r"(rc[2]), "=r"(rc[3])
               : "l"(c));
  asm volatile(
      "wmma.mma.sync.aligned.row.col.m16n16k16.f16.f16 {%0, %1, %2, %3}, {%4, %5, %6, %7, %8, %9, %10, %11}, "
      "{%12, %13, %14, %15, %16, %17, %18, %19}, {%20, %21, %22, %23};"
      : "=r"(rd[0]), "=r"(rd[1]), "=r"(rd[2]), "=r"(rd[3])
      : "r"(ra[0]), "r"(ra[1]), "r"(ra[2]), "r"(ra[3]), "r"(ra[4]), "r"(ra[5]), "r"(ra[6]), "r"(ra[7]), "r"(rb[0]),
        "r"(rb[1]), "r"(rb[2]), "r"(rb[3]), "r"(rb[4]), "r"(rb[5]), "r"(rb[6]), "r"(rb[7]), "r"(rc[0]), "r"(rc[1]),
        "r"(rc[2]), "r"(rc[3]));
  asm volatile("wmma.store.d.sync.aligned.row.m16n16k16.global.f16 [%0], {%1, %2, %3, %4};" ::"l"(d), "r"(rd[0]),
               "r"(rd[1]), "r"(rd[2]), "r"(rd[3])
               : "memory");
}
__global__ void k_wmma_bf16_default_stride(const uint16_t* a, const uint16_t* b, const float* c, float* d) {
  uint32_t ra[4], rb[4];
  float rc[8], rd[8];
  asm volatile("wmma.load.a.sync.aligned.col.m16n16k16.global.bf16 {%0, %1, %2, %3}, [%4];"
               : "=r"(ra[0]), "=r"(ra[1]), "=r"(ra[2]), "=r"(ra[3])
               : "l"(a));
  asm volatile("wmma.load.b.sync.aligned.row.m16n16k16.global.bf16 {%0, %1, %2, %3}, [%4];"
               : "=r"(rb[0]), "=r"(rb[1]), "=r"(rb[2]), "=r"(rb[3])
               : "l"(b));
  asm volatile("wmma.load.c.sync.aligned.col.m16n16k16.global.f32 {%0, %1, %2, %3, %4, %5, %6, %7}, [%8];"
               : "=f"(rc[0]), "=f"(rc[1]), "=f"(rc[2]), "=f"(rc[3]), "=f"(rc[4]), "=f"(rc[5]), "=f"(rc[6]), "=f"(rc[7])
               : "l"(c));
  asm volatile(
      "wmma.mma.sync.aligned.col.row.m16n16k16.f32.bf16.bf16.f32 {%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, "
      "{%12, %13, %14, %15}, {%16, %17, %18, %19, %20, %21, %22, %23};"
      : "=f"(rd[0]), "=f"(rd[1]), "=f"(rd[2]), "=f"(rd[3]), "=f"(rd[4]), "=f"(rd[5]), "=f"(rd[6]), "=f"(rd[7])
      : "r"(ra[0]), "r"(ra[1]), "r"(ra[2]), "r"(ra[3]), "r"(rb[0]), "r"(rb[1]), "r"(rb[2]), "r"(rb[3]), "f"(rc[0]),
        "f"(rc[1]), "f"(rc[2]), "f"(rc[3]), "f"(rc[4]), "f"(rc[5]), "f"(rc[6]), "f"(rc[7]));
  asm volatile("wmma.store.d.sync.aligned.row.m16n16k16.global.f32 [%0], {%1, %2, %3, %4, %5, %6, %7, %8};" ::"l"(d),
               "f"(rd[0]), "f"(rd[1]), "f"(rd[2]), "f"(rd[3]), "f"(rd[4]), "f"(rd[5]), "f"(rd[6]), "f"(rd[7])
               : "memory");
}

//! A wmma problem in small integers (products and sums exact in f16, bf16 and f32) and its
//! placement in memory: element (r, c) of a matrix at r·ld + c (row-major) or c·ld + r.
struct wmma_problem {
  int a[16][16], b[16][16], c[16][16];
  bool a_col, b_col, c_col, d_col;
  unsigned lda, ldb, ldc, ldd;
  bool negate_a, shared;
};

size_t at(bool col, unsigned ld, int r, int c) { return col ? size_t(c) * ld + r : size_t(r) * ld + c; }

wmma_problem wmma_data(uint32_t seed) {
  wmma_problem p{};
  auto next = [&](int range) {
    seed = seed * 1103515245u + 12345u;
    return int((seed >> 16) % uint32_t(2 * range + 1)) - range;
  };
  for (auto& row : p.a)
    for (int& v : row) v = next(3);
  for (auto& row : p.b)
    for (int& v : row) v = next(3);
  for (auto& row : p.c)
    for (int& v : row) v = next(50);
  return p;
}

//! Checks D (16-bit codes when !f32) against A·B + C (negated A when asked), and that every element
//! of the D array outside the matrix kept its 0xEE bytes.
template <class T>
void check_wmma_d(const std::string& what, const wmma_problem& p, const std::vector<T>& d, bool f32) {
  int bad = 0;
  std::vector<bool> inside(d.size(), false);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      int want = p.c[m][n];
      for (int k = 0; k < 16; ++k) want += (p.negate_a ? -1 : 1) * p.a[m][k] * p.b[k][n];
      const size_t i = at(p.d_col, p.ldd, m, n);
      inside[i] = true;
      float got;
      if (f32) std::memcpy(&got, &d[i], 4);
      else got = from_f16(uint16_t(d[i]));
      if (got != float(want) && ++bad <= 8) CHECK_MESSAGE(false, what, ": D[", m, "][", n, "] = ", got, ", want ", want);
    }
  for (size_t i = 0; i < d.size(); ++i) {
    const bool untouched = f32 ? uint32_t(d[i]) == 0xEEEEEEEEu : uint16_t(d[i]) == 0xEEEEu;
    if (!inside[i] && !untouched && ++bad <= 8) CHECK_MESSAGE(false, what, ": element ", i, " outside D was written");
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " wrong elements");
}

//! Runs k_wmma<In, Acc, ALayout, BLayout> on p (In: bf16 or f16; Acc: f32 or f16).
template <class In, class Acc, class ALayout, class BLayout>
void run_wmma(const std::string& what, const wmma_problem& p) {
  constexpr bool bf16 = std::is_same<In, __nv_bfloat16>::value, f32 = std::is_same<Acc, float>::value;
  const auto code = [&](int v) { return bf16 ? to_bf16(float(v)) : to_f16(v); };
  std::vector<uint16_t> a(16 * p.lda, code(64)), b(16 * p.ldb, code(64));  // the padding would show in D
  std::vector<uint32_t> c32(16 * p.ldc, isa::bits(64.0f));
  std::vector<uint16_t> c16(16 * p.ldc, to_f16(64));
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k) {
      a[at(p.a_col, p.lda, r, k)] = code(p.a[r][k]);
      b[at(p.b_col, p.ldb, r, k)] = code(p.b[r][k]);
      c32[at(p.c_col, p.ldc, r, k)] = isa::bits(float(p.c[r][k]));
      c16[at(p.c_col, p.ldc, r, k)] = to_f16(p.c[r][k]);
    }
  buffer<uint16_t> da(a), db(b), dc16(c16), dd16(16 * p.ldd);
  buffer<uint32_t> dc32(c32), dd32(16 * p.ldd);
  k_wmma<In, Acc, ALayout, BLayout><<<1, 32>>>(da.get(), p.lda, db.get(), p.ldb,
                                               f32 ? static_cast<const void*>(dc32.get()) : dc16.get(), p.ldc, p.c_col,
                                               f32 ? static_cast<void*>(dd32.get()) : dd16.get(), p.ldd, p.d_col,
                                               p.negate_a, p.shared);
  ISA_SYNC();
  if (f32) check_wmma_d(what, p, dd32.host(), true);
  else check_wmma_d(what, p, dd16.host(), false);
}

//! Every placement of C and D, strides at and above the default, A negated, shared memory.
template <class In, class Acc, class ALayout, class BLayout>
void sweep_wmma(const std::string& name, bool a_col, bool b_col) {
  const unsigned strides[2][4] = {{16, 16, 16, 16}, {32, 48, 24, 40}};
  for (int variant = 0; variant < 8; ++variant) {
    wmma_problem p = wmma_data(uint32_t(variant * 7919 + 17));
    p.a_col = a_col, p.b_col = b_col;
    p.c_col = variant & 1, p.d_col = variant >> 1 & 1;
    const unsigned* s = strides[variant >> 2 & 1];
    p.lda = s[0], p.ldb = s[1], p.ldc = s[2], p.ldd = s[3];
    p.negate_a = variant == 3 || variant == 6;
    p.shared = variant == 5 || variant == 6;
    run_wmma<In, Acc, ALayout, BLayout>(name + " C " + (p.c_col ? "col" : "row") + " D " + (p.d_col ? "col" : "row") +
                                            " ld " + std::to_string(p.lda) + "/" + std::to_string(p.ldb) + "/" +
                                            std::to_string(p.ldc) + "/" + std::to_string(p.ldd) +
                                            (p.negate_a ? ", A negated" : "") + (p.shared ? ", A and B shared" : ""),
                                        p);
  }
}

// ---- cp.async -------------------------------------------------------------------------------

// Thread 0 alone: the cp-size / src-size / ignore-src forms, then groups and wait_group.
__global__ void k_cp_async_forms(const uint8_t* g, uint8_t* out) {
  __shared__ __align__(16) uint8_t sh[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) sh[i] = 0xAB;
  __syncthreads();
  if (threadIdx.x != 0) return;
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(sh));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s + 0), "l"(g + 0) : "memory");
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(s + 16), "l"(g + 16) : "memory");
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16;" ::"r"(s + 32), "l"(g + 32) : "memory");
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s + 48), "l"(g + 48) : "memory");
  // src-size: copy src-size bytes, fill the rest of cp-size with zeros.
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, 5;" ::"r"(s + 64), "l"(g + 64) : "memory");
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s + 80), "l"(g + 80), "r"(0u) : "memory");
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(s + 96), "l"(g + 96), "r"(3u) : "memory");
  // ignore-src: "If the source data is ignored then zeros will be copied to destination dst."
  asm volatile("{\n\t.reg .pred p;\n\t setp.eq.u32 p, %2, 1;\n\t cp.async.ca.shared.global [%0], [%1], 16, p;\n\t}"
               ::"r"(s + 112), "l"(g + 112), "r"(1u) : "memory");
  asm volatile("{\n\t.reg .pred p;\n\t setp.eq.u32 p, %2, 1;\n\t cp.async.cg.shared.global [%0], [%1], 16, p;\n\t}"
               ::"r"(s + 128), "l"(g + 128), "r"(0u) : "memory");
  asm volatile("cp.async.commit_group;" ::: "memory");
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  for (int i = 0; i < 256; ++i) out[i] = sh[i];
}

// Groups: group 1 copies X into region A, group 2 copies Y into region B. After wait_group 1
// "only N or fewer of the most recent cp.async-groups are pending and all the prior ... are
// complete", so A is guaranteed (B is not checked yet); after wait_group 0, B too. An empty group
// "is considered to be trivially complete". Then cp.async.wait_all.
__global__ void k_cp_async_groups(const uint8_t* g, uint8_t* out) {
  __shared__ __align__(16) uint8_t sh[64];
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(sh));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(g) : "memory");
  asm volatile("cp.async.commit_group;" ::: "memory");
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s + 16), "l"(g + 16) : "memory");
  asm volatile("cp.async.commit_group;" ::: "memory");
  asm volatile("cp.async.wait_group 1;" ::: "memory");
  for (int i = 0; i < 16; ++i) out[i] = sh[i];
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  for (int i = 16; i < 32; ++i) out[i] = sh[i];
  asm volatile("cp.async.commit_group;" ::: "memory");  // empty group
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16;" ::"r"(s + 32), "l"(g + 32) : "memory");
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16;" ::"r"(s + 48), "l"(g + 48) : "memory");
  asm volatile("cp.async.wait_all;" ::: "memory");
  for (int i = 32; i < 64; ++i) out[i] = sh[i];
}

// Every thread of a warp copies 16 bytes; after its own wait and a bar.sync, each thread reads
// the bytes another thread copied (the barrier extends visibility to the other threads).
__global__ void k_cp_async_block(const uint8_t* g, uint8_t* out) {
  __shared__ __align__(16) uint8_t sh[64 * 16];
  const int t = threadIdx.x;
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(sh + 16 * t));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(g + 16 * t) : "memory");
  asm volatile("cp.async.commit_group;" ::: "memory");
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  __syncthreads();
  const int u = (t + 17) % blockDim.x;
  for (int i = 0; i < 16; ++i) out[16 * t + i] = sh[16 * u + i];
}

}  // namespace

TEST_SUITE("emulator_isa_tensor") {

TEST_CASE("ldmatrix m8n8 .x1 .x2 .x4, with and without .trans, scattered row addresses") {
  ISA_REQUIRE_DEVICE();
  std::vector<uint16_t> rows(32 * 8);
  for (int m = 0; m < 4; ++m)
    for (int r = 0; r < 8; ++r)
      for (int c = 0; c < 8; ++c) rows[row_slot(m, r) * 8 + c] = element(m, r, c);
  buffer<uint16_t> drows(rows);
  buffer<uint32_t> out(32 * 14);
  k_ldmatrix<<<1, 32>>>(drows.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  auto frag = [](int m, int t) { return uint32_t(element(m, t / 4, 2 * (t % 4))) | uint32_t(element(m, t / 4, 2 * (t % 4) + 1)) << 16; };
  auto frag_t = [](int m, int t) { return uint32_t(element(m, 2 * (t % 4), t / 4)) | uint32_t(element(m, 2 * (t % 4) + 1, t / 4)) << 16; };
  // Hand-worked: thread 5 holds row 1, columns 2 and 3 of matrix 0: 0x10a and 0x10b.
  CHECK(frag(0, 5) == 0x010b010au);
  // ... and with .trans column 1, rows 2 and 3: 0x111 and 0x119.
  CHECK(frag_t(0, 5) == 0x01190111u);
  for (int t = 0; t < 32; ++t) {
    const uint32_t* r = &o[t * 14];
    CHECK_MESSAGE(r[0] == frag(0, t), "x1 thread ", t, " got ", hex(r[0]));
    for (int m = 0; m < 2; ++m) CHECK_MESSAGE(r[1 + m] == frag(m, t), "x2 matrix ", m, " thread ", t, " got ", hex(r[1 + m]));
    for (int m = 0; m < 4; ++m) CHECK_MESSAGE(r[3 + m] == frag(m, t), "x4 matrix ", m, " thread ", t, " got ", hex(r[3 + m]));
    CHECK_MESSAGE(r[7] == frag_t(0, t), "x1.trans thread ", t, " got ", hex(r[7]));
    for (int m = 0; m < 2; ++m) CHECK_MESSAGE(r[8 + m] == frag_t(m, t), "x2.trans matrix ", m, " thread ", t);
    for (int m = 0; m < 4; ++m) CHECK_MESSAGE(r[10 + m] == frag_t(m, t), "x4.trans matrix ", m, " thread ", t);
  }

  buffer<uint32_t> gout(32);
  k_ldmatrix_generic<<<1, 32>>>(drows.get(), gout.get());
  ISA_SYNC();
  const auto g = gout.host();
  for (int t = 0; t < 32; ++t) CHECK(g[t] == frag(0, t));
}

// D = A*B + C with exact small-integer data: a selection B reveals which A element each D element
// took (D[m][n] = A[m][n] or A[m][n+8]); an identity A reveals B (D[m][n] = B[m][n]); a general
// problem checks the accumulation with C.
TEST_CASE("mma.sync.aligned.m16n8k16.row.col .bf16/.f16 -> .f32 and .f16: fragment layouts of A, B, C/D") {
  ISA_REQUIRE_DEVICE();
  for (int half = 0; half < 2; ++half) {
    mma_problem p{};
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < 16; ++k) p.a[m][k] = m * 16 + k + 1;  // 1..256, distinct and exact in bf16
    for (int k = 0; k < 16; ++k)
      for (int n = 0; n < 8; ++n) p.b[k][n] = (k == n + 8 * half) ? 1 : 0;
    check_mma(half ? "A columns 8-15" : "A columns 0-7", p);
  }
  {
    mma_problem p{};
    for (int m = 0; m < 16; ++m) p.a[m][m] = 1;
    for (int k = 0; k < 16; ++k)
      for (int n = 0; n < 8; ++n) p.b[k][n] = k * 8 + n + 1;  // 1..128
    check_mma("B through identity A", p);
  }
  {
    mma_problem p{};
    uint32_t x = 12345;
    auto next = [&]() {
      x = x * 1103515245u + 12345u;
      return int((x >> 16) % 7) - 3;  // -3..3
    };
    for (auto& row : p.a)
      for (int& v : row) v = next();
    for (auto& row : p.b)
      for (int& v : row) v = next();
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) p.c[m][n] = m * 8 + n - 50;
    check_mma("general A*B + C", p);
  }
}

// CUDA Programming Guide "Warp Matrix Functions": D = A·B + C for every layout of A and B (fragment
// template parameters), C and D (mem_row_major / mem_col_major), with ldm 16 and above it.
TEST_CASE("wmma m16n16k16 .f16 -> .f32 and .f16, .bf16 -> .f32: every layout, strides, shared memory, element-wise ops") {
  ISA_REQUIRE_DEVICE();
  using nvcuda::wmma::col_major;
  using nvcuda::wmma::row_major;
  sweep_wmma<half, float, row_major, row_major>(".f16 -> .f32 A row B row", false, false);
  sweep_wmma<half, float, row_major, col_major>(".f16 -> .f32 A row B col", false, true);
  sweep_wmma<half, float, col_major, row_major>(".f16 -> .f32 A col B row", true, false);
  sweep_wmma<half, float, col_major, col_major>(".f16 -> .f32 A col B col", true, true);
  sweep_wmma<half, half, row_major, col_major>(".f16 -> .f16 A row B col", false, true);
  sweep_wmma<half, half, col_major, row_major>(".f16 -> .f16 A col B row", true, false);
  sweep_wmma<__nv_bfloat16, float, row_major, row_major>(".bf16 -> .f32 A row B row", false, false);
  sweep_wmma<__nv_bfloat16, float, row_major, col_major>(".bf16 -> .f32 A row B col", false, true);
  sweep_wmma<__nv_bfloat16, float, col_major, row_major>(".bf16 -> .f32 A col B row", true, false);
  sweep_wmma<__nv_bfloat16, float, col_major, col_major>(".bf16 -> .f32 A col B col", true, true);
}

// "The default value of stride is the leading dimension": packed 16 x 16 matrices.
TEST_CASE("wmma.load / wmma.store without the stride operand: .f16 -> .f16 and .bf16 -> .f32") {
  ISA_REQUIRE_DEVICE();
  {
    wmma_problem p = wmma_data(4242);
    p.b_col = true, p.lda = p.ldb = p.ldc = p.ldd = 16;
    std::vector<uint16_t> a(256), b(256), c(256);
    for (int r = 0; r < 16; ++r)
      for (int k = 0; k < 16; ++k) {
        a[at(false, 16, r, k)] = to_f16(p.a[r][k]);
        b[at(true, 16, r, k)] = to_f16(p.b[r][k]);
        c[at(false, 16, r, k)] = to_f16(p.c[r][k]);
      }
    buffer<uint16_t> da(a), db(b), dc(c), dd(256);
    k_wmma_f16_default_stride<<<1, 32>>>(da.get(), db.get(), dc.get(), dd.get());
    ISA_SYNC();
    check_wmma_d(".f16 -> .f16 without stride", p, dd.host(), false);
  }
  {
    wmma_problem p = wmma_data(777);
    p.a_col = p.c_col = true, p.lda = p.ldb = p.ldc = p.ldd = 16;
    std::vector<uint16_t> a(256), b(256);
    std::vector<float> c(256);
    for (int r = 0; r < 16; ++r)
      for (int k = 0; k < 16; ++k) {
        a[at(true, 16, r, k)] = to_bf16(float(p.a[r][k]));
        b[at(false, 16, r, k)] = to_bf16(float(p.b[r][k]));
        c[at(true, 16, r, k)] = float(p.c[r][k]);
      }
    buffer<uint16_t> da(a), db(b);
    buffer<float> dc(c);
    buffer<uint32_t> dd(256);
    k_wmma_bf16_default_stride<<<1, 32>>>(da.get(), db.get(), dc.get(), reinterpret_cast<float*>(dd.get()));
    ISA_SYNC();
    check_wmma_d(".bf16 -> .f32 without stride", p, dd.host(), true);
  }
}

TEST_CASE("cp.async.ca/.cg 4/8/16 bytes, src-size zero fill, ignore-src") {
  ISA_REQUIRE_DEVICE();
  std::vector<uint8_t> src(256);
  for (int i = 0; i < 256; ++i) src[i] = uint8_t(i * 7 + 1);
  buffer<uint8_t> g(src), out(256);
  k_cp_async_forms<<<1, 32>>>(g.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  std::vector<uint8_t> want(256, 0xAB);
  auto copy = [&](int off, int n) { std::memcpy(want.data() + off, src.data() + off, n); };
  auto zero = [&](int off, int n) { std::memset(want.data() + off, 0, n); };
  copy(0, 4);
  copy(16, 8);
  copy(32, 16);
  copy(48, 16);
  copy(64, 5), zero(69, 11);
  zero(80, 16);
  copy(96, 3), zero(99, 5);
  zero(112, 16);
  copy(128, 16);  // ignore-src false
  for (int i = 0; i < 256; ++i) CHECK_MESSAGE(o[i] == want[i], "shared byte ", i, " = ", hex(o[i]), " want ", hex(want[i]));
}

TEST_CASE("cp.async.commit_group / wait_group N / wait_all: data guaranteed after the wait") {
  ISA_REQUIRE_DEVICE();
  std::vector<uint8_t> src(64);
  for (int i = 0; i < 64; ++i) src[i] = uint8_t(200 - i);
  buffer<uint8_t> g(src), out(64);
  k_cp_async_groups<<<1, 1>>>(g.get(), out.get());
  ISA_SYNC();
  CHECK(out.host() == src);
}

TEST_CASE("cp.async by every thread, then bar.sync: visible to the other threads") {
  ISA_REQUIRE_DEVICE();
  const int n = 64;
  std::vector<uint8_t> src(16 * n);
  for (int i = 0; i < 16 * n; ++i) src[i] = uint8_t(i * 13 + 5);
  buffer<uint8_t> g(src), out(16 * n);
  k_cp_async_block<<<1, n>>>(g.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < 16; ++i) CHECK(o[16 * t + i] == src[16 * ((t + 17) % n) + i]);
}

}  // TEST_SUITE
