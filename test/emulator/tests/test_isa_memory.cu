// PTX memory instructions against values worked from the PTX ISA: ld/st in the global, shared,
// local and param state spaces (ISA 9.7.9.8 ld, 9.7.9.10 st, 5.1 "State Spaces"), widths u8 to
// u64 with sign/zero extension into wider registers, .v2/.v4 vectors, generic addressing and
// cvta / isspacep (ISA 9.7.9.19-20), and atom / red (ISA 9.7.13.5-6) on global and shared
// memory with every operation, including the inc/dec wrap rule:
//     inc(r, s) = (r >= s) ? 0 : r+1;    dec(r, s) = (r==0 || r > s) ? s : r-1;
#include "isa_test.cuh"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

namespace {

using isa::buffer;
using isa::hex;

// ---- ld/st widths and vectors on global memory ---------------------------------------------

// out[k] = the k-th load below from src (16 bytes at a 16-byte aligned address).
__global__ void k_ld_widths(const uint8_t* src, uint64_t* out) {
  uint32_t u8, s8, u16, s16, u32, v2a, v2b, v4[4], b4[4];
  uint16_t h8;
  uint64_t u64, s32w, w2[2];
  asm volatile("ld.global.u8 %0, [%1+1];" : "=r"(u8) : "l"(src));
  asm volatile("ld.global.s8 %0, [%1+1];" : "=r"(s8) : "l"(src));  // 0x80 sign-extends to 32 bits
  asm volatile("ld.global.s8 %0, [%1+1];" : "=h"(h8) : "l"(src));  // ... and to 16 bits
  asm volatile("ld.global.u16 %0, [%1+2];" : "=r"(u16) : "l"(src));
  asm volatile("ld.global.s16 %0, [%1+2];" : "=r"(s16) : "l"(src));
  asm volatile("ld.global.u32 %0, [%1+4];" : "=r"(u32) : "l"(src));
  asm volatile("ld.global.u64 %0, [%1+8];" : "=l"(u64) : "l"(src));
  asm volatile("ld.global.s32 %0, [%1+12];" : "=l"(s32w) : "l"(src));  // sign-extends to 64 bits
  asm volatile("ld.global.v2.u32 {%0, %1}, [%2+8];" : "=r"(v2a), "=r"(v2b) : "l"(src));
  asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v4[0]), "=r"(v4[1]), "=r"(v4[2]), "=r"(v4[3]) : "l"(src));
  asm volatile("ld.global.v2.u64 {%0, %1}, [%2];" : "=l"(w2[0]), "=l"(w2[1]) : "l"(src));
  asm volatile("ld.global.v4.u8 {%0, %1, %2, %3}, [%4+4];" : "=r"(b4[0]), "=r"(b4[1]), "=r"(b4[2]), "=r"(b4[3]) : "l"(src));
  uint64_t k = 0;
  out[k++] = u8;
  out[k++] = s8;
  out[k++] = h8;
  out[k++] = u16;
  out[k++] = s16;
  out[k++] = u32;
  out[k++] = u64;
  out[k++] = s32w;
  out[k++] = v2a;
  out[k++] = v2b;
  for (int i = 0; i < 4; ++i) out[k++] = v4[i];
  out[k++] = w2[0];
  out[k++] = w2[1];
  for (int i = 0; i < 4; ++i) out[k++] = b4[i];
}

// Stores of each width into a buffer the host pre-filled with 0xEE: only the named bytes change.
__global__ void k_st_widths(uint8_t* dst) {
  asm volatile("st.global.u8 [%0+1], %1;" ::"l"(dst), "r"(0x1234u));         // only the low byte: 0x34
  asm volatile("st.global.u16 [%0+2], %1;" ::"l"(dst), "h"(uint16_t(0xabcd)));
  asm volatile("st.global.u32 [%0+4], %1;" ::"l"(dst), "r"(0x01020304u));
  asm volatile("st.global.u64 [%0+8], %1;" ::"l"(dst), "l"(0x1122334455667788ull));
  asm volatile("st.global.v4.u32 [%0+16], {%1, %2, %3, %4};" ::"l"(dst), "r"(1u), "r"(2u), "r"(3u), "r"(4u));
  asm volatile("st.global.v2.u64 [%0+32], {%1, %2};" ::"l"(dst), "l"(~0ull), "l"(0ull));
  asm volatile("st.global.v2.u16 [%0+48], {%1, %2};" ::"l"(dst), "h"(uint16_t(0x0102)), "h"(uint16_t(0x0304)));
  asm volatile("st.global.v4.u8 [%0+52], {%1, %2, %3, %4};" ::"l"(dst), "r"(0xa1u), "r"(0xb2u), "r"(0xc3u), "r"(0xd4u));
}

// Qualified forms that only change caching / ordering: the values must be the same.
__global__ void k_ld_qualified(const uint32_t* src, uint32_t* out) {
  uint32_t a, b, c, d, e;
  asm volatile("ld.global.nc.u32 %0, [%1];" : "=r"(a) : "l"(src));
  asm volatile("ld.volatile.global.u32 %0, [%1+4];" : "=r"(b) : "l"(src));
  asm volatile("ld.relaxed.gpu.global.u32 %0, [%1+8];" : "=r"(c) : "l"(src));
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1+12];" : "=r"(d) : "l"(src));
  asm volatile("ld.global.ca.u32 %0, [%1+16];" : "=r"(e) : "l"(src));
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(out), "r"(a));
  asm volatile("st.relaxed.sys.global.u32 [%0+4], %1;" ::"l"(out), "r"(b));
  asm volatile("st.volatile.global.u32 [%0+8], %1;" ::"l"(out), "r"(c));
  asm volatile("st.global.wb.u32 [%0+12], %1;" ::"l"(out), "r"(d));
  asm volatile("st.global.cs.u32 [%0+16], %1;" ::"l"(out), "r"(e));
}

// ---- shared memory, generic addressing, cvta, isspacep -------------------------------------

__global__ void k_shared(const uint32_t* in, uint32_t* out, int n) {
  __shared__ __align__(16) uint32_t sh[64];
  const int t = threadIdx.x;
  const uint32_t saddr = static_cast<uint32_t>(__cvta_generic_to_shared(&sh[t]));
  asm volatile("st.shared.u32 [%0], %1;" ::"r"(saddr), "r"(in[t]));
  asm volatile("bar.sync 0;" ::: "memory");
  // Read the neighbour through .shared with a 32-bit address, and through a generic pointer.
  const int u = (t + 1) % n;
  const uint32_t uaddr = static_cast<uint32_t>(__cvta_generic_to_shared(&sh[u]));
  uint32_t via_shared, via_generic, v4[4] = {0, 0, 0, 0};
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(via_shared) : "r"(uaddr));
  asm volatile("ld.u32 %0, [%1];" : "=r"(via_generic) : "l"(&sh[u]));
  if (t == 0) {
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4+16];"
                 : "=r"(v4[0]), "=r"(v4[1]), "=r"(v4[2]), "=r"(v4[3])
                 : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(sh))));
  }
  // cvta.to.shared of the generic address gives the .shared address; cvta.shared maps back.
  uint64_t to_shared, back;
  asm volatile("cvta.to.shared.u64 %0, %1;" : "=l"(to_shared) : "l"(&sh[t]));
  asm volatile("cvta.shared.u64 %0, %1;" : "=l"(back) : "l"(to_shared));
  uint32_t is_shared, is_global, is_local;
  asm volatile("{\n\t.reg .pred p;\n\t isspacep.shared p, %1;\n\t selp.u32 %0, 1, 0, p;\n\t}" : "=r"(is_shared) : "l"(&sh[t]));
  asm volatile("{\n\t.reg .pred p;\n\t isspacep.global p, %1;\n\t selp.u32 %0, 1, 0, p;\n\t}" : "=r"(is_global) : "l"(&sh[t]));
  asm volatile("{\n\t.reg .pred p;\n\t isspacep.local p, %1;\n\t selp.u32 %0, 1, 0, p;\n\t}" : "=r"(is_local) : "l"(&sh[t]));
  out[8 * t + 0] = via_shared;
  out[8 * t + 1] = via_generic;
  out[8 * t + 2] = uint32_t(to_shared == saddr);
  out[8 * t + 3] = uint32_t(back == reinterpret_cast<uint64_t>(&sh[t]));
  out[8 * t + 4] = is_shared | is_global << 1 | is_local << 2;
  out[8 * t + 5] = t == 0 ? (v4[0] ^ v4[1] ^ v4[2] ^ v4[3]) : 0;
  out[8 * t + 6] = t == 0 ? v4[3] : 0;
  out[8 * t + 7] = 0;
}

// Dynamic shared memory follows the static allocation of the same kernel in the same window.
__global__ void k_dynamic_shared(uint32_t* out) {
  extern __shared__ __align__(16) uint32_t dyn[];
  __shared__ uint32_t stat[4];
  const int t = threadIdx.x;
  dyn[t] = 1000 + t;
  if (t < 4) stat[t] = t;
  __syncthreads();
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(&dyn[blockDim.x - 1 - t]))));
  out[t] = v + stat[t % 4];
}

// isspacep.global on a global pointer; generic ld/st of global memory.
__global__ void k_global_generic(uint32_t* g, uint32_t* out) {
  uint32_t is_global, is_shared, v;
  asm volatile("{\n\t.reg .pred p;\n\t isspacep.global p, %1;\n\t selp.u32 %0, 1, 0, p;\n\t}" : "=r"(is_global) : "l"(g));
  asm volatile("{\n\t.reg .pred p;\n\t isspacep.shared p, %1;\n\t selp.u32 %0, 1, 0, p;\n\t}" : "=r"(is_shared) : "l"(g));
  uint64_t gaddr;
  asm volatile("cvta.to.global.u64 %0, %1;" : "=l"(gaddr) : "l"(g));
  asm volatile("st.u32 [%0], %1;" ::"l"(g), "r"(77u));                  // generic store
  asm volatile("ld.global.u32 %0, [%1];" : "=r"(v) : "l"(gaddr));       // global load of it
  out[0] = is_global;
  out[1] = is_shared;
  out[2] = v;
}

// ---- local memory --------------------------------------------------------------------------

__global__ void k_local(const uint32_t* in, uint32_t* out) {
  uint32_t buf[8];
  // The address escapes into inline PTX, so buf lives in the thread's .local frame.
  uint64_t laddr;
  asm volatile("cvta.to.local.u64 %0, %1;" : "=l"(laddr) : "l"(buf));
  for (int i = 0; i < 8; ++i) asm volatile("st.local.u32 [%0], %1;" ::"l"(laddr + 4 * i), "r"(in[threadIdx.x] + i) : "memory");
  uint32_t a, b, c, is_local;
  asm volatile("ld.local.u32 %0, [%1+28];" : "=r"(a) : "l"(laddr) : "memory");
  asm volatile("ld.u32 %0, [%1+12];" : "=r"(b) : "l"(buf) : "memory");  // generic load of local memory
  asm volatile("{\n\t.reg .pred p;\n\t isspacep.local p, %1;\n\t selp.u32 %0, 1, 0, p;\n\t}" : "=r"(is_local) : "l"(buf));
  // A .local variable declared inside the PTX itself.
  asm volatile(
      "{\n\t.local .align 8 .b8 scratch[16];\n\t.reg .u64 a;\n\t"
      "mov.u64 a, scratch;\n\t"
      "st.local.v2.u32 [a+8], {%1, %2};\n\t"
      "ld.local.u32 %0, [a+12];\n\t}"
      : "=r"(c)
      : "r"(5u), "r"(in[threadIdx.x] * 2));
  out[4 * threadIdx.x + 0] = a;
  out[4 * threadIdx.x + 1] = b;
  out[4 * threadIdx.x + 2] = c;
  out[4 * threadIdx.x + 3] = is_local;
}

// ---- param space ---------------------------------------------------------------------------

struct mixed {
  char c;
  short s;
  int i;
  double d;
  int arr[3];
  char tail;
};

// The compiler loads each field with ld.param of its width and offset.
__global__ void k_param_struct(mixed m, signed char sc, unsigned short us, long long ll, float f, uint64_t* out) {
  out[0] = uint64_t(int64_t(m.c));
  out[1] = uint64_t(int64_t(m.s));
  out[2] = uint64_t(int64_t(m.i));
  out[3] = uint64_t(__double_as_longlong(m.d));
  out[4] = uint64_t(m.arr[0]) | uint64_t(m.arr[2]) << 32;
  out[5] = uint64_t(int64_t(m.tail));
  out[6] = uint64_t(int64_t(sc));
  out[7] = us;
  out[8] = uint64_t(ll);
  out[9] = __float_as_uint(f);
}

}  // namespace

// Kernel parameters by name in inline PTX (extern "C": the names are <kernel>_param_<i>), and
// through a register holding the parameter's address ("the address of a kernel parameter may
// be moved into a register"; ISA 5.1.6.1 "Kernel Function Parameters").
extern "C" __global__ void isa_memory_param_by_name(uint32_t a, uint64_t b, uint16_t c, uint32_t* out) {
  uint32_t ra, rb_lo, rb_hi, rc;
  uint64_t rb;
  asm volatile("ld.param.u32 %0, [isa_memory_param_by_name_param_0];" : "=r"(ra));
  asm volatile("ld.param.u64 %0, [isa_memory_param_by_name_param_1];" : "=l"(rb));
  asm volatile(
      "{\n\t.reg .u64 p;\n\t mov.u64 p, isa_memory_param_by_name_param_1;\n\t"
      "ld.param.u32 %0, [p];\n\t ld.param.u32 %1, [p+4];\n\t}"
      : "=r"(rb_lo), "=r"(rb_hi));
  asm volatile("ld.param.u16 %0, [isa_memory_param_by_name_param_2];" : "=r"(rc));
  out[0] = ra;
  out[1] = uint32_t(rb);
  out[2] = uint32_t(rb >> 32);
  out[3] = rb_lo;
  out[4] = rb_hi;
  out[5] = rc;
  (void)a, (void)b, (void)c;
}

namespace {

// ---- atomics -------------------------------------------------------------------------------
// One thread runs a fixed sequence of atomics on m[0..]; old[k] is the value returned by the
// k-th. The same sequence runs on global memory (SPACE ".global", 64-bit address) and on shared
// memory (SPACE ".shared", 32-bit address). Each step's comment gives memory before -> after.
#define ATOM_SEQUENCE(SPACE, AC, M)                                                                        \
  do {                                                                                                     \
    uint32_t r;                                                                                            \
    uint64_t q;                                                                                            \
    int k = 0;                                                                                             \
    auto a32 = [&](int slot) { return M(slot * 4); };                                                      \
    /* slot 0: add, exch, cas hit, cas miss, and, or, xor, min.u32, max.u32 */                             \
    asm volatile("atom" SPACE ".add.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".exch.b32 %0, [%1], 7;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;    \
    asm volatile("atom" SPACE ".cas.b32 %0, [%1], 7, 9;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;  \
    asm volatile("atom" SPACE ".cas.b32 %0, [%1], 1, 100;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;\
    asm volatile("atom" SPACE ".and.b32 %0, [%1], 12;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;    \
    asm volatile("atom" SPACE ".or.b32 %0, [%1], 3;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;      \
    asm volatile("atom" SPACE ".xor.b32 %0, [%1], 255;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;   \
    asm volatile("atom" SPACE ".min.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".max.u32 %0, [%1], -1;" : "=r"(r) : AC(a32(0)) : "memory"); old[k++] = r;    \
    /* slot 1 (starts at -1): min.s32, max.s32, add.s32 */                                                 \
    asm volatile("atom" SPACE ".min.s32 %0, [%1], -3;" : "=r"(r) : AC(a32(1)) : "memory"); old[k++] = r;    \
    asm volatile("atom" SPACE ".max.s32 %0, [%1], 2;" : "=r"(r) : AC(a32(1)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".add.s32 %0, [%1], -10;" : "=r"(r) : AC(a32(1)) : "memory"); old[k++] = r;   \
    /* slots 2..5: inc with b = 5 from 5, 3, 7, and inc with b = 0 from 0 */                               \
    asm volatile("atom" SPACE ".inc.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(2)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".inc.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(3)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".inc.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(4)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".inc.u32 %0, [%1], 0;" : "=r"(r) : AC(a32(5)) : "memory"); old[k++] = r;     \
    /* slots 6..9: dec with b = 5 from 0, 7, 3, 5 */                                                       \
    asm volatile("atom" SPACE ".dec.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(6)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".dec.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(7)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".dec.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(8)) : "memory"); old[k++] = r;     \
    asm volatile("atom" SPACE ".dec.u32 %0, [%1], 5;" : "=r"(r) : AC(a32(9)) : "memory"); old[k++] = r;     \
    /* slot 10: add.f32 1.5 + 0.25 */                                                                      \
    asm volatile("atom" SPACE ".add.f32 %0, [%1], 0f3E800000;" : "=r"(r) : AC(a32(10)) : "memory"); old[k++] = r; \
    /* slot 11: add.noftz.f16x2 {hi 1.0, lo 0.5} + {hi 2.0, lo 0.25} */                                    \
    asm volatile("{\n\t.reg .b32 v;\n\t mov.b32 v, 0x40003400;\n\t atom" SPACE ".add.noftz.f16x2 %0, [%1], v;\n\t}" \
                 : "=r"(r) : AC(a32(11)) : "memory"); old[k++] = r;                                         \
    /* slots 12-13 (u64 at byte 48): add.u64, cas.b64, exch.b64, min.s64, max.u64, and.b64 */             \
    asm volatile("atom" SPACE ".add.u64 %0, [%1], 0x100000001;" : "=l"(q) : AC(M(48)) : "memory");           \
    old[k++] = uint32_t(q); old[k++] = uint32_t(q >> 32);                                                  \
    asm volatile("atom" SPACE ".cas.b64 %0, [%1], 0x200000002, 5;" : "=l"(q) : AC(M(48)) : "memory");        \
    old[k++] = uint32_t(q); old[k++] = uint32_t(q >> 32);                                                  \
    asm volatile("atom" SPACE ".min.s64 %0, [%1], -2;" : "=l"(q) : AC(M(48)) : "memory");                    \
    old[k++] = uint32_t(q); old[k++] = uint32_t(q >> 32);                                                  \
    asm volatile("atom" SPACE ".max.u64 %0, [%1], 1;" : "=l"(q) : AC(M(48)) : "memory");                     \
    old[k++] = uint32_t(q); old[k++] = uint32_t(q >> 32);                                                  \
    asm volatile("atom" SPACE ".and.b64 %0, [%1], 0xff000000000000ff;" : "=l"(q) : AC(M(48)) : "memory");    \
    old[k++] = uint32_t(q); old[k++] = uint32_t(q >> 32);                                                  \
    asm volatile("atom" SPACE ".exch.b64 %0, [%1], 42;" : "=l"(q) : AC(M(48)) : "memory");                   \
    old[k++] = uint32_t(q); old[k++] = uint32_t(q >> 32);                                                  \
    /* slot 14: add.noftz.f16 on the low half-word: 1.0 + 2.0 */                                           \
    {                                                                                                      \
      uint16_t h;                                                                                          \
      asm volatile("atom" SPACE ".add.noftz.f16 %0, [%1], %2;" : "=h"(h) : AC(M(56)), "h"(uint16_t(0x4000)) : "memory"); \
      old[k++] = h;                                                                                        \
    }                                                                                                      \
    /* slot 15: cas.b16 on the low half-word (0x1234 == 0x1234 -> 0xbeef) */                                \
    {                                                                                                      \
      uint16_t h;                                                                                          \
      asm volatile("atom" SPACE ".cas.b16 %0, [%1], %2, %3;" : "=h"(h)                                     \
                   : AC(M(60)), "h"(uint16_t(0x1234)), "h"(uint16_t(0xbeef)) : "memory");                   \
      old[k++] = h;                                                                                        \
    }                                                                                                      \
    /* red (no result) on slot 16..19 */                                                                   \
    asm volatile("red" SPACE ".add.u32 [%0], 3;" ::AC(M(64)) : "memory");                                   \
    asm volatile("red" SPACE ".min.s32 [%0], -7;" ::AC(M(68)) : "memory");                                  \
    asm volatile("red" SPACE ".xor.b32 [%0], 0xf0;" ::AC(M(72)) : "memory");                                \
    asm volatile("red" SPACE ".inc.u32 [%0], 1;" ::AC(M(76)) : "memory");                                   \
  } while (0)

constexpr int kSlots = 20;  // 32-bit slots
constexpr int kOlds = 36;

// Initial memory and the expected results, worked step by step from the Semantics above.
std::vector<uint32_t> atom_init() {
  std::vector<uint32_t> m(kSlots, 0);
  m[0] = 10;
  m[1] = uint32_t(-1);
  m[2] = 5, m[3] = 3, m[4] = 7, m[5] = 0;
  m[6] = 0, m[7] = 7, m[8] = 3, m[9] = 5;
  m[10] = isa::bits(1.5f);
  m[11] = 0x3c003800u;  // f16x2 {hi 1.0, lo 0.5}
  m[12] = 0x00000001u, m[13] = 0x00000001u;  // u64 0x1_00000001
  m[14] = 0x00003c00u;  // f16 1.0 in the low half, 0 above
  m[15] = 0xaaaa1234u;  // b16 0x1234 in the low half
  m[16] = 4, m[17] = 5, m[18] = 0x0f, m[19] = 1;
  return m;
}
void check_atom_results(const char* space, const std::vector<uint32_t>& m, const std::vector<uint32_t>& old) {
  // slot 0: 10 -add5-> 15 -exch7-> 7 -cas(7,9)-> 9 -cas(1,100)-> 9 -and12-> 8 -or3-> 11
  //         -xor255-> 244 -min.u32 5-> 5 -max.u32 0xffffffff-> 0xffffffff
  const uint32_t want_old[kOlds] = {
      10, 15, 7, 9, 9, 8, 11, 244, 5,
      // slot 1: -1 -min(-3)-> -3 -max 2-> 2 -add -10-> -8
      uint32_t(-1), uint32_t(-3), 2,
      // inc b=5: 5 -> 0 (5 >= 5); 3 -> 4; 7 -> 0 (7 >= 5); b=0: 0 -> 0
      5, 3, 7, 0,
      // dec b=5: 0 -> 5 (r == 0); 7 -> 5 (r > s); 3 -> 2; 5 -> 4
      0, 7, 3, 5,
      isa::bits(1.5f), 0x3c003800u,
      // u64: 0x1_00000001 -add 0x1_00000001-> 0x2_00000002 -cas(hit)-> 5 -min.s64(-2)-> -2
      //      -max.u64(1)-> 0xffff..fe -and 0xff000000000000ff-> 0xff000000000000fe -exch 42-> 42
      1, 1, 2, 2, 5, 0, 0xfffffffeu, 0xffffffffu, 0xfffffffeu, 0xffffffffu, 0x000000feu, 0xff000000u,
      0x3c00u, 0x1234u};
  for (int k = 0; k < kOlds; ++k)
    CHECK_MESSAGE(old[k] == want_old[k], std::string(space), " atom #", k, " returned ", hex(old[k]), " want ", hex(want_old[k]));
  const uint32_t want_m[kSlots] = {0xffffffffu, uint32_t(-8), 0, 4, 0, 0, 5, 5, 2, 4,
                                   isa::bits(1.75f), 0x42003a00u /*{3.0, 0.75}*/, 42, 0, 0x00004200u /*3.0*/, 0xaaaabeefu,
                                   7, uint32_t(-7), 0xff, 0 /*inc b=1: 1 >= 1 -> 0*/};
  for (int s = 0; s < kSlots; ++s)
    CHECK_MESSAGE(m[s] == want_m[s], std::string(space), " slot ", s, " = ", hex(m[s]), " want ", hex(want_m[s]));
}

__global__ void k_atom_global(uint32_t* mem, uint32_t* old) {
#define GMEM(off) (reinterpret_cast<uint64_t>(mem) + (off))
  ATOM_SEQUENCE(".global", "l", GMEM);
#undef GMEM
}
__global__ void k_atom_shared(const uint32_t* init, uint32_t* mem_out, uint32_t* old) {
  __shared__ __align__(8) uint32_t sm[kSlots];
  for (int s = 0; s < kSlots; ++s) sm[s] = init[s];
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(sm));
#define SMEM(off) (base + (off))
  ATOM_SEQUENCE(".shared", "r", SMEM);
#undef SMEM
  for (int s = 0; s < kSlots; ++s) mem_out[s] = sm[s];
}
// Generic addressing (no state space) onto global and onto shared memory.
__global__ void k_atom_generic(uint32_t* g, uint32_t* out) {
  __shared__ uint32_t s;
  s = 100;
  uint32_t r0, r1;
  asm volatile("atom.add.u32 %0, [%1], 1;" : "=r"(r0) : "l"(g) : "memory");
  asm volatile("atom.add.u32 %0, [%1], 2;" : "=r"(r1) : "l"(&s) : "memory");
  out[0] = r0;
  out[1] = r1;
  out[2] = s;
}

// Contention: every thread adds 1; the values returned are a permutation of 0..n-1.
__global__ void k_atom_contention(uint32_t* ctr, uint32_t* olds, uint32_t* inc_ctr, uint32_t* inc_olds, float* fsum,
                                  uint32_t* shared_olds, uint32_t* shared_final) {
  __shared__ uint32_t sctr;
  const int t = threadIdx.x;
  if (t == 0) sctr = 0;
  __syncthreads();
  uint32_t r;
  asm volatile("atom.global.add.u32 %0, [%1], 1;" : "=r"(r) : "l"(ctr) : "memory");
  olds[t] = r;
  asm volatile("atom.global.inc.u32 %0, [%1], 3;" : "=r"(r) : "l"(inc_ctr) : "memory");
  inc_olds[t] = r;
  asm volatile("red.global.add.f32 [%0], 0f3F000000;" ::"l"(fsum) : "memory");  // += 0.5
  asm volatile("atom.shared.add.u32 %0, [%1], 1;" : "=r"(r) : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(&sctr))) : "memory");
  shared_olds[t] = r;
  __syncthreads();
  if (t == 0) *shared_final = sctr;
}

// atom.add.f32 of a subnormal to a subnormal, in global and shared memory (generic addresses).
__global__ void k_atom_add_f32_subnormal(float* g, uint32_t* out) {
  __shared__ float s;
  s = __uint_as_float(1u);  // 2^-149
  *g = __uint_as_float(1u);
  float r0, r1;
  asm volatile("atom.add.f32 %0, [%1], %2;" : "=f"(r0) : "l"(g), "f"(__uint_as_float(1u)) : "memory");
  asm volatile("atom.add.f32 %0, [%1], %2;" : "=f"(r1) : "l"(&s), "f"(__uint_as_float(1u)) : "memory");
  out[0] = __float_as_uint(*g);
  out[1] = __float_as_uint(s);
  out[2] = __float_as_uint(r0);
  out[3] = __float_as_uint(r1);
}

// bf16x2 atomic add needs sm_90 (ISA Target ISA Notes); compiled only into the compute_90 PTX.
__global__ void k_atom_bf16x2(uint32_t* mem, uint32_t* old) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t r;
  asm volatile("atom.global.add.noftz.bf16x2 %0, [%1], %2;" : "=r"(r) : "l"(mem), "r"(0x40003f80u) : "memory");
  *old = r;
#else
  (void)mem, (void)old;
#endif
}

}  // namespace

TEST_SUITE("emulator_isa_memory") {

// ISA 9.7.9.8 ld: a destination register wider than the type is sign-extended for signed
// types and zero-extended otherwise; .v2/.v4 load consecutive elements. Byte order: the host
// writes the bytes and reads the expected wider values with memcpy (host and device agree).
TEST_CASE("ld.global: u8 s8 u16 s16 u32 s32 u64, v2, v4, sign/zero extension") {
  ISA_REQUIRE_DEVICE();
  std::vector<uint8_t> bytes(16);
  for (int i = 0; i < 16; ++i) bytes[i] = uint8_t(0x70 + 7 * i);
  bytes[1] = 0x80;  // negative as s8
  bytes[3] = 0x90;  // u16 at 2 is 0x90xx: negative as s16
  bytes[15] = 0xf1; // s32 at 12 negative
  buffer<uint8_t> src(bytes);
  buffer<uint64_t> out(22);
  k_ld_widths<<<1, 1>>>(src.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  auto rd = [&](int off, int n) {
    uint64_t v = 0;
    std::memcpy(&v, bytes.data() + off, n);
    return v;
  };
  CHECK(o[0] == 0x80u);
  CHECK(o[1] == 0xffffff80u);
  CHECK(o[2] == 0xff80u);
  CHECK(o[3] == rd(2, 2));
  CHECK(o[4] == (0xffff0000u | rd(2, 2)));
  CHECK(o[5] == rd(4, 4));
  CHECK(o[6] == rd(8, 8));
  CHECK(o[7] == (0xffffffff00000000ull | rd(12, 4)));
  CHECK(o[8] == rd(8, 4));
  CHECK(o[9] == rd(12, 4));
  for (int i = 0; i < 4; ++i) CHECK(o[10 + i] == rd(4 * i, 4));
  CHECK(o[14] == rd(0, 8));
  CHECK(o[15] == rd(8, 8));
  for (int i = 0; i < 4; ++i) CHECK(o[16 + i] == bytes[4 + i]);
}

// ISA 9.7.9.10 st: only the bytes of the stored type change (u8 of a 32-bit register stores
// its low byte).
TEST_CASE("st.global: u8 u16 u32 u64, v2, v4 write exactly their bytes") {
  ISA_REQUIRE_DEVICE();
  buffer<uint8_t> dst(64);  // 0xEE everywhere
  k_st_widths<<<1, 1>>>(dst.get());
  ISA_SYNC();
  const auto d = dst.host();
  std::vector<uint8_t> want(64, 0xEE);
  auto put = [&](int off, uint64_t v, int n) { std::memcpy(want.data() + off, &v, n); };
  put(1, 0x34, 1);
  put(2, 0xabcd, 2);
  put(4, 0x01020304u, 4);
  put(8, 0x1122334455667788ull, 8);
  for (int i = 0; i < 4; ++i) put(16 + 4 * i, uint64_t(i + 1), 4);
  put(32, ~0ull, 8);
  put(40, 0, 8);
  put(48, 0x0102, 2);
  put(50, 0x0304, 2);
  put(52, 0xa1, 1), put(53, 0xb2, 1), put(54, 0xc3, 1), put(55, 0xd4, 1);
  for (int i = 0; i < 64; ++i) CHECK_MESSAGE(d[i] == want[i], "byte ", i, " = ", hex(d[i]), " want ", hex(want[i]));
}

// Cache operators (.nc .ca .wb .cs), .volatile and .relaxed/.acquire/.release are performance or
// ordering qualifiers: the values loaded and stored are the same.
TEST_CASE("ld/st with cache operators and memory-order qualifiers") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> src(std::vector<uint32_t>{11, 22, 33, 44, 55}), out(5);
  k_ld_qualified<<<1, 1>>>(src.get(), out.get());
  ISA_SYNC();
  CHECK(out.host() == std::vector<uint32_t>{11, 22, 33, 44, 55});
}

// ISA 5.1.5 shared state space; 9.7.9.19 cvta ("convert the address of a state space to a
// generic address, or vice versa"); 9.7.9.20 isspacep.
TEST_CASE("shared memory: st/ld.shared, generic access, cvta round trip, isspacep, v4") {
  ISA_REQUIRE_DEVICE();
  const int n = 40;
  std::vector<uint32_t> in(n);
  for (int i = 0; i < n; ++i) in[i] = 0x5000 + 3 * i;
  buffer<uint32_t> din(in), out(8 * n);
  k_shared<<<1, n>>>(din.get(), out.get(), n);
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < n; ++t) {
    const uint32_t want = in[(t + 1) % n];
    CHECK_MESSAGE(o[8 * t + 0] == want, "ld.shared thread ", t);
    CHECK_MESSAGE(o[8 * t + 1] == want, "generic ld of shared, thread ", t);
    CHECK_MESSAGE(o[8 * t + 2] == 1u, "cvta.to.shared == __cvta_generic_to_shared, thread ", t);
    CHECK_MESSAGE(o[8 * t + 3] == 1u, "cvta.shared(cvta.to.shared(p)) == p, thread ", t);
    CHECK_MESSAGE(o[8 * t + 4] == 1u, "isspacep shared/global/local of a shared address, thread ", t);
  }
  CHECK(o[5] == (in[4] ^ in[5] ^ in[6] ^ in[7]));
  CHECK(o[6] == in[7]);

  // Dynamic shared memory: 64 threads, 256 bytes.
  buffer<uint32_t> dout(64);
  k_dynamic_shared<<<1, 64, 64 * sizeof(uint32_t)>>>(dout.get());
  ISA_SYNC();
  const auto d = dout.host();
  for (int t = 0; t < 64; ++t) CHECK(d[t] == uint32_t(1000 + (63 - t) + t % 4));

  buffer<uint32_t> g(1), gout(3);
  k_global_generic<<<1, 1>>>(g.get(), gout.get());
  ISA_SYNC();
  CHECK(gout.host() == std::vector<uint32_t>{1, 0, 77});
}

// ISA 5.1.4 local state space: per-thread memory; generic addressing of it; cvta.to.local.
TEST_CASE("local memory: st/ld.local, generic access, .local declared in PTX") {
  ISA_REQUIRE_DEVICE();
  const int n = 33;  // two warps, so that per-thread frames are distinct across warps too
  std::vector<uint32_t> in(n);
  for (int i = 0; i < n; ++i) in[i] = 100 * i;
  buffer<uint32_t> din(in), out(4 * n);
  k_local<<<1, n>>>(din.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < n; ++t) {
    CHECK_MESSAGE(o[4 * t + 0] == in[t] + 7, "ld.local thread ", t);
    CHECK_MESSAGE(o[4 * t + 1] == in[t] + 3, "generic ld of local, thread ", t);
    CHECK_MESSAGE(o[4 * t + 2] == in[t] * 2, ".local in PTX, thread ", t);
    CHECK_MESSAGE(o[4 * t + 3] == 1u, "isspacep.local, thread ", t);
  }
}

// ISA 5.1.6 parameter state space: kernel parameters at the offsets and alignments of the
// C++ ABI, read by ld.param of each width; by name and through an address register.
TEST_CASE("param space: struct and scalar parameters, ld.param by name and by address") {
  ISA_REQUIRE_DEVICE();
  mixed m{};
  m.c = -5;
  m.s = -1234;
  m.i = 0x12345678;
  m.d = -2.75;
  m.arr[0] = 7, m.arr[1] = 8, m.arr[2] = 9;
  m.tail = 'z';
  buffer<uint64_t> out(10);
  k_param_struct<<<1, 1>>>(m, static_cast<signed char>(-100), static_cast<unsigned short>(60000), -(1ll << 40), 3.5f, out.get());
  ISA_SYNC();
  const auto o = out.host();
  CHECK(o[0] == uint64_t(-5));
  CHECK(o[1] == uint64_t(-1234));
  CHECK(o[2] == 0x12345678u);
  CHECK(o[3] == isa::bits(-2.75));
  CHECK(o[4] == (7ull | 9ull << 32));
  CHECK(o[5] == uint64_t('z'));
  CHECK(o[6] == uint64_t(-100));
  CHECK(o[7] == 60000u);
  CHECK(o[8] == uint64_t(-(1ll << 40)));
  CHECK(o[9] == isa::bits(3.5f));

  buffer<uint32_t> pout(6);
  isa_memory_param_by_name<<<1, 1>>>(0xdeadbeefu, 0x0123456789abcdefull, uint16_t(0xfedc), pout.get());
  ISA_SYNC();
  CHECK(pout.host() == std::vector<uint32_t>{0xdeadbeefu, 0x89abcdefu, 0x01234567u, 0x89abcdefu, 0x01234567u, 0xfedcu});
}

// ISA 9.7.13.5 atom / 9.7.13.6 red on global memory: every operation, the old value returned.
TEST_CASE("atom/red.global: add exch cas and or xor min max inc dec, f32, f16x2, f16, 64-bit, b16") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> mem(atom_init()), old(kOlds);
  k_atom_global<<<1, 1>>>(mem.get(), old.get());
  ISA_SYNC();
  check_atom_results("global", mem.host(), old.host());
}

TEST_CASE("atom/red.shared: the same sequence on shared memory") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> init(atom_init()), mem(kSlots), old(kOlds);
  k_atom_shared<<<1, 1>>>(init.get(), mem.get(), old.get());
  ISA_SYNC();
  check_atom_results("shared", mem.host(), old.host());
}

// "If no state space is given, perform the memory accesses using Generic Addressing."
TEST_CASE("atom with generic addresses onto global and shared memory") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> g(std::vector<uint32_t>{41}), out(3);
  k_atom_generic<<<1, 1>>>(g.get(), out.get());
  ISA_SYNC();
  CHECK(out.host() == std::vector<uint32_t>{41, 100, 102});
  CHECK(g.host()[0] == 42u);
}

// Atomicity under contention: 96 threads (3 warps). The old values of atom.add are a
// permutation of 0..95; atom.inc with b = 3 cycles 0,1,2,3,0,...; red.add.f32 of 0.5 x 96 is
// exact (48.0) in any order.
TEST_CASE("atomics under contention: permutation of old values, inc wrap-around, f32 sum") {
  ISA_REQUIRE_DEVICE();
  const int n = 96;
  buffer<uint32_t> ctr(std::vector<uint32_t>{0}), olds(n), inc_ctr(std::vector<uint32_t>{0}), inc_olds(n), sh_olds(n), sh_final(1);
  buffer<float> fsum(std::vector<float>{0.f});
  k_atom_contention<<<1, n>>>(ctr.get(), olds.get(), inc_ctr.get(), inc_olds.get(), fsum.get(), sh_olds.get(), sh_final.get());
  ISA_SYNC();
  auto o = olds.host();
  std::sort(o.begin(), o.end());
  std::vector<uint32_t> iota(n);
  std::iota(iota.begin(), iota.end(), 0u);
  CHECK(o == iota);
  CHECK(ctr.host()[0] == uint32_t(n));
  auto so = sh_olds.host();
  std::sort(so.begin(), so.end());
  CHECK(so == iota);
  CHECK(sh_final.host()[0] == uint32_t(n));
  // inc: the k-th increment (in whatever order) returns k mod 4; final value n mod 4.
  auto io = inc_olds.host();
  std::vector<int> hist(8, 0);
  for (uint32_t v : io) {
    REQUIRE(v < 4u);
    ++hist[v];
  }
  for (int v = 0; v < 4; ++v) CHECK(hist[v] == n / 4);
  CHECK(inc_ctr.host()[0] == uint32_t(n % 4));
  CHECK(fsum.host()[0] == 48.0f);
}

// ISA atom Target ISA Notes: "atom.add.noftz.bf16 and atom.add.noftz.bf16x2 require sm_90".
// ISA (atom): "Current implementation of atom.add.f32 on global memory flushes subnormal inputs
// and results to sign-preserving zero; whereas atom.add.f32 on shared memory supports subnormal
// inputs and results and doesn't flush them to zero." 2^-149 + 2^-149 = 2^-148 (bits 2) in
// shared memory; in global memory both inputs flush: +0.
TEST_CASE("atom.add.f32: subnormals flushed in global memory, kept in shared memory") {
  ISA_REQUIRE_DEVICE();
  isa::buffer<float> g(1);
  isa::buffer<uint32_t> out(4);
  k_atom_add_f32_subnormal<<<1, 1>>>(g.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  CHECK(o[0] == 0u);
  CHECK(o[1] == 2u);
  CHECK(o[2] == 1u);  // the old values, as loaded
  CHECK(o[3] == 1u);
}

TEST_CASE("atom.global.add.noftz.bf16x2 (sm_90 and later)") {
  ISA_REQUIRE_DEVICE();
  if (isa::compute_capability() < 90) {
    MESSAGE("bf16x2 atomics need sm_90; this device is sm_", isa::compute_capability());
    return;
  }
  buffer<uint32_t> mem(std::vector<uint32_t>{0x3f803f00u /*{hi 1.0, lo 0.5}*/}), old(1);
  k_atom_bf16x2<<<1, 1>>>(mem.get(), old.get());
  ISA_SYNC();
  CHECK(old.host()[0] == 0x3f803f00u);
  CHECK(mem.host()[0] == 0x40403fc0u);  // {hi 1 + 2 = 3.0, lo 0.5 + 1.0 = 1.5}
}

}  // TEST_SUITE
