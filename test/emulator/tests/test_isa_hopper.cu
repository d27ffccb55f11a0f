// sm_90a (Hopper) instructions against the PTX ISA 9.0 and the CUDA Driver API. Section numbers are
// those of PTX ISA 9.0, with titles quoted so that a renumbered edition can still be searched:
//   mbarrier (ISA 9.7.13.15 "Parallel Synchronization and Communication Instructions: mbarrier"):
//     mbarrier.init, mbarrier.arrive (state token, sink '_', count operand), mbarrier.arrive.expect_tx,
//     mbarrier.expect_tx (9.7.13.15.11), mbarrier.complete_tx (9.7.13.15.12), mbarrier.test_wait /
//     mbarrier.try_wait with a state or .parity (9.7.13.15.16), the phase rule of 9.7.13.15.6 "Phase
//     Completion of the mbarrier object" ("The count of the pending arrivals has reached zero. The
//     tx-count has reached zero."), and fence.mbarrier_init.release.cluster.
//   cp.async.mbarrier.arrive{.noinc} (9.7.13.15.15).
//   cuTensorMapEncodeTiled (CUDA Driver API, "Tensor Map Object Management"), through
//     cudaGetDriverEntryPointByVersion: the documented argument requirements.
//   cp.async.bulk.tensor.{1..5}d .tile with .mbarrier::complete_tx::bytes (ISA 9.7.9.25 "Data Movement and
//     Conversion Instructions: Asynchronous copy", tensor copy), the tiled mode, bounding box and
//     out-of-bound zero fill of ISA 5.5 "Tensors", and the 32B/64B/128B "Swizzling Modes" of ISA 5.5.
//   wgmma.mma_async.sync.aligned.m64nNk16.f32.{bf16,f16} with both operands from shared memory (ISA 9.7.15
//     "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions"): 9.7.15.5.1.1.1 "Matrix
//     Fragments for wgmma.mma_async.m64nNk16" (Figure 149, accumulator D), 9.7.15.5.1.2.1.3 "Canonical
//     Layouts" (K-major; MN-major in the swizzled modes, imm-trans-a/-b 1, after 9.7.15.5.1.2 "Shared
//     Memory Matrix Layout"), 9.7.15.5.1.2.2 "Matrix Descriptor Format", wgmma.fence / commit_group /
//     wait_group, scale-d and imm-scale-a/-b; m64n16k32.{f32,f16}.{e4m3,e5m2}.{e4m3,e5m2} (the fp8 formats of
//     ISA "Alternate Floating-Point Data Formats", NaN and infinite operands), A from registers (the
//     "Register Fragments" of A for m64nNk16 and m64nNk32) and .f16 accumulators.
//   elect.sync (ISA 9.7.13 "Parallel Synchronization and Communication Instructions: elect.sync") and
//     fence.proxy.async.shared::cta (ISA 9.7.13.4 "membar/fence").
//   mapa (ISA 9.7.9.23 "Data Movement and Conversion Instructions: mapa") in a launch without cluster
//     dimensions, each block a cluster of one CTA.
//
// The family runs only under the sm_90a device model (tests/CMakeLists.txt, emulator_hopper_models); the
// file is also compiled for compute_80, where every Hopper instruction is replaced by __trap(). Natively
// on a GPU other than compute capability 9.0 each case reports "skipped: needs sm_90".
#include "isa_test.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using isa::buffer;
using isa::hex;

// After ISA_REQUIRE_DEVICE(): natively, the sm_90a code runs only on a compute capability 9.0 GPU (an
// older one lacks the instructions; a newer one cannot run sm_90a SASS or compute_90a PTX and would
// fall back to the compute_80 PTX, whose kernels trap).
#define ISA_REQUIRE_SM90()                      \
  do {                                          \
    if (::isa::compute_capability() != 90) {    \
      MESSAGE("skipped: needs sm_90");          \
      return;                                   \
    }                                           \
  } while (false)

// ---- device helpers: one PTX instruction each ------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
#else
  __trap();
#endif
}

// "fence.mbarrier_init is a light-weight fence ... that orders mbarrier.init operations": makes the
// initialised barrier visible to the other threads (and to the async proxy) before its first use.
__device__ __forceinline__ void fence_mbarrier_init() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#else
  __trap();
#endif
}

// Orders this thread's generic-proxy accesses to shared memory before later async-proxy accesses
// (TMA, wgmma operand reads).
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ uint64_t mbar_arrive(uint32_t bar) {
  uint64_t state = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 %0, [%1];" : "=l"(state) : "r"(bar) : "memory");
#else
  __trap();
#endif
  return state;
}

// count arrivals at once, the state discarded into the sink symbol.
__device__ __forceinline__ void mbar_arrive_count(uint32_t bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(count) : "memory");
#else
  __trap();
#endif
}

// expect-tx(txCount) then one arrive-on.
__device__ __forceinline__ uint64_t mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  uint64_t state = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 %0, [%1], %2;" : "=l"(state) : "r"(bar), "r"(bytes) : "memory");
#else
  __trap();
#endif
  return state;
}

// expect-tx alone: the tx-count grows by txCount, no arrival.
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
#else
  __trap();
#endif
}

// complete-tx: "tx-count is decremented by completeCount", no arrival.
__device__ __forceinline__ void mbar_complete_tx(uint32_t bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.complete_tx.relaxed.cta.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ uint32_t mbar_test_wait_parity(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("{\n\t.reg .pred p;\n\tmbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
               : "=r"(done) : "r"(bar), "r"(parity) : "memory");
#else
  __trap();
#endif
  return done;
}

__device__ __forceinline__ uint32_t mbar_try_wait_parity(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
               : "=r"(done) : "r"(bar), "r"(parity) : "memory");
#else
  __trap();
#endif
  return done;
}

__device__ __forceinline__ uint32_t mbar_test_wait(uint32_t bar, uint64_t state) {
  uint32_t done = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("{\n\t.reg .pred p;\n\tmbarrier.test_wait.shared::cta.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
               : "=r"(done) : "r"(bar), "l"(state) : "memory");
#else
  __trap();
#endif
  return done;
}

__device__ __forceinline__ uint32_t mbar_try_wait(uint32_t bar, uint64_t state) {
  uint32_t done = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.shared::cta.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
               : "=r"(done) : "r"(bar), "l"(state) : "memory");
#else
  __trap();
#endif
  return done;
}

// Waits for the phase with the given parity, but gives up after a bounded number of try_wait
// (each of which may suspend for the system's time limit): 1 when the phase completed, 0 when not,
// so that a phase that never completes fails the test instead of hanging it.
__device__ uint32_t mbar_wait_parity_bounded(uint32_t bar, uint32_t parity) {
#pragma unroll 1
  for (int i = 0; i < (1 << 16); ++i)
    if (mbar_try_wait_parity(bar, parity)) return 1;
  return 0;
}

template <int Bytes>
__device__ __forceinline__ void cp_async_ca(uint32_t dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" ::"r"(dst), "l"(src), "n"(Bytes) : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void cp_async_mbarrier_arrive_noinc(uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void cp_async_mbarrier_arrive(uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.mbarrier.arrive.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
#else
  __trap();
#endif
}

// cp.async.bulk.tensor.Nd tile load into this CTA's shared memory (a .shared::cta address is a valid
// .shared::cluster address of the executing CTA), completion signalled to bar by complete-tx(bytes).
struct tensor_coords {
  int c[5];
};

__device__ __forceinline__ void tma_load_1d(uint32_t dst, const CUtensorMap* map, uint32_t bar, const tensor_coords& at) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.tensor.1d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3}], [%2];"
               ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(at.c[0]) : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, const tensor_coords& at) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];"
               ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(at.c[0]), "r"(at.c[1]) : "memory");
#else
  __trap();
#endif
}
// The same copy without a load mode: "The default load mode is .tile" (cp.async.bulk.tensor), the
// form CuTe emits.
__device__ __forceinline__ void tma_load_2d_default_mode(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                                         const tensor_coords& at) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];"
               ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(at.c[0]), "r"(at.c[1]) : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap* map, uint32_t bar, const tensor_coords& at) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];"
               ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(at.c[0]), "r"(at.c[1]), "r"(at.c[2]) : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap* map, uint32_t bar, const tensor_coords& at) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2];"
      ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(at.c[0]), "r"(at.c[1]), "r"(at.c[2]), "r"(at.c[3])
      : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void tma_load_5d(uint32_t dst, const CUtensorMap* map, uint32_t bar, const tensor_coords& at) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6, %7}], [%2];"
      ::"r"(dst), "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(at.c[0]), "r"(at.c[1]), "r"(at.c[2]), "r"(at.c[3]),
      "r"(at.c[4])
      : "memory");
#else
  __trap();
#endif
}

// elect.sync d|p, membermask: d = the elected lane's laneid, p = (this lane is the leader).
__device__ __forceinline__ void elect_sync(uint32_t mask, uint32_t& leader, uint32_t& is_leader) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("{\n\t.reg .pred p;\n\telect.sync %0|p, %2;\n\tselp.u32 %1, 1, 0, p;\n\t}"
               : "=r"(leader), "=r"(is_leader) : "r"(mask) : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void wgmma_wait0() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
#else
  __trap();
#endif
}
// Keeps the compiler from moving accesses of an accumulator register across the wgmma fences.
__device__ __forceinline__ void fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void fence_operand(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }

// wgmma.mma_async.sync.aligned.m64nNk16.f32.{bf16,f16}.{bf16,f16} d, a-desc, b-desc, scale-d, imm-scale-a,
// imm-scale-b, imm-trans-a, imm-trans-b (0: K-major, 1: MN-major).
// 4 accumulator operands %0..%3; then desc-a %4, desc-b %5, scale-d %6, imm-scale-a %7, imm-scale-b %8,
// imm-trans-a %9, imm-trans-b %10 (and likewise after 32, 64 and 128 accumulators).
#define WG_LIST_N8 "{" \
  "%0, %1, %2, %3}"
#define WG_TAIL_N8 ", %4, %5, p, %7, %8, %9, %10;\n\t}"
#define WG_HEAD_N8 "{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %6, 0;\n\t"
// 32 accumulator operands %0..%31; then desc-a %32, desc-b %33, scale-d %34, imm-scale-a %35, imm-scale-b %36.
#define WG_LIST_N64 "{" \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define WG_TAIL_N64 ", %32, %33, p, %35, %36, %37, %38;\n\t}"
#define WG_HEAD_N64 "{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %34, 0;\n\t"
// 64 accumulator operands %0..%63; then desc-a %64, desc-b %65, scale-d %66, imm-scale-a %67, imm-scale-b %68.
#define WG_LIST_N128 "{" \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define WG_TAIL_N128 ", %64, %65, p, %67, %68, %69, %70;\n\t}"
#define WG_HEAD_N128 "{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %66, 0;\n\t"
// 128 accumulator operands %0..%127; then desc-a %128, desc-b %129, scale-d %130, imm-scale-a %131, imm-scale-b %132.
#define WG_LIST_N256 "{" \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
#define WG_TAIL_N256 ", %128, %129, p, %131, %132, %133, %134;\n\t}"
#define WG_HEAD_N256 "{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %130, 0;\n\t"
#define WG_D4(i) "+f"(d[i]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3])
#define WG_D32(i) WG_D4(i), WG_D4((i) + 4), WG_D4((i) + 8), WG_D4((i) + 12), WG_D4((i) + 16), WG_D4((i) + 20), \
                  WG_D4((i) + 24), WG_D4((i) + 28)
#define WG_D64(i) WG_D32(i), WG_D32((i) + 32)
#define WG_D128(i) WG_D64(i), WG_D64((i) + 64)
#define WG_ASM(N, TYPES, ...)                                                                                  \
  asm volatile(WG_HEAD_N##N "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPES " " WG_LIST_N##N WG_TAIL_N##N \
               : __VA_ARGS__                                                                                   \
               : "l"(da), "l"(db), "r"(scale_d), "n"(SA), "n"(SB), "n"(TA), "n"(TB)                           \
               : "memory")

template <int N, bool BF16, int SA, int SB, int TA = 0, int TB = 0>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t da, uint64_t db, uint32_t scale_d) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (N == 8 && BF16) WG_ASM(8, "bf16.bf16", WG_D4(0));
  else if constexpr (N == 8) WG_ASM(8, "f16.f16", WG_D4(0));
  else if constexpr (N == 64 && BF16) WG_ASM(64, "bf16.bf16", WG_D32(0));
  else if constexpr (N == 64) WG_ASM(64, "f16.f16", WG_D32(0));
  else if constexpr (N == 128 && BF16) WG_ASM(128, "bf16.bf16", WG_D64(0));
  else if constexpr (N == 128) WG_ASM(128, "f16.f16", WG_D64(0));
  else if constexpr (N == 256 && BF16) WG_ASM(256, "bf16.bf16", WG_D128(0));
  else if constexpr (N == 256) WG_ASM(256, "f16.f16", WG_D128(0));
  else static_assert(N == 8 || N == 64 || N == 128 || N == 256, "N");
#else
  (void)d, (void)da, (void)db, (void)scale_d;
  __trap();
#endif
}

// The forms beyond wgmma_ss, at N = 16 (8 .f32 or 4 .f16x2 accumulators): fp8 products (m64n16k32, PTX
// ISA 8.0), A from four registers ("rs": d, a, b-desc, scale-d, imm-scale-a, imm-scale-b[, imm-trans-b])
// or a descriptor ("ss": d, a-desc, b-desc, scale-d, imm-scale-a, imm-scale-b[, imm-trans-a, imm-trans-b];
// the fp8 forms have no imm-trans), and .f16 accumulators.
enum class wg16 {
  ss_f32_e4m3_e4m3, ss_f32_e5m2_e5m2, ss_f32_e4m3_e5m2, ss_f32_e5m2_e4m3, rs_f32_e4m3_e4m3,
  ss_f16_e4m3_e4m3, rs_f16_e5m2_e4m3, rs_f32_bf16_bf16, ss_f16_f16_f16
};
__host__ __device__ constexpr bool wg16_f16_d(wg16 f) {
  return f == wg16::ss_f16_e4m3_e4m3 || f == wg16::rs_f16_e5m2_e4m3 || f == wg16::ss_f16_f16_f16;
}
__host__ __device__ constexpr int wg16_registers(wg16 f) { return wg16_f16_d(f) ? 4 : 8; }

#define WG16_HEAD(P) "{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %" #P ", 0;\n\twgmma.mma_async.sync.aligned.m64n16"
#define WG16_IN "l"(db), "r"(scale_d), "n"(SA), "n"(SB)
#define WG16_A "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3])
// .f32: d %0-%7; ss: a-desc %8, b-desc %9, scale-d %10, scales %11 %12; rs: a %8-%11, b-desc %12, scale-d %13.
#define WG16_F32_SS(FORM, TRANS)                                                                          \
  asm volatile(WG16_HEAD(10) FORM " {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, %11, %12" TRANS ";\n\t}" \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]) \
               : "l"(da), WG16_IN : "memory")
#define WG16_F32_RS(FORM, TRANS)                                                                                      \
  asm volatile(WG16_HEAD(13) FORM " {%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %12, p, %14, %15" TRANS \
               ";\n\t}"                                                                                             \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])     \
               : WG16_A, WG16_IN : "memory")
// .f16: d %0-%3 (.f16x2); ss: a-desc %4, b-desc %5, scale-d %6, scales %7 %8; rs: a %4-%7, b-desc %8, scale-d %9.
#define WG16_F16_SS(FORM, TRANS)                                                       \
  asm volatile(WG16_HEAD(6) FORM " {%0, %1, %2, %3}, %4, %5, p, %7, %8" TRANS ";\n\t}" \
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]) : "l"(da), WG16_IN : "memory")
#define WG16_F16_RS(FORM, TRANS)                                                                       \
  asm volatile(WG16_HEAD(9) FORM " {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, p, %10, %11" TRANS ";\n\t}" \
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]) : WG16_A, WG16_IN : "memory")

template <wg16 F, int SA, int SB, class T>
__device__ __forceinline__ void wgmma16(T (&d)[wg16_registers(F)], const uint32_t (&a)[4], uint64_t da, uint64_t db,
                                        uint32_t scale_d) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (F == wg16::ss_f32_e4m3_e4m3) WG16_F32_SS("k32.f32.e4m3.e4m3", "");
  else if constexpr (F == wg16::ss_f32_e5m2_e5m2) WG16_F32_SS("k32.f32.e5m2.e5m2", "");
  else if constexpr (F == wg16::ss_f32_e4m3_e5m2) WG16_F32_SS("k32.f32.e4m3.e5m2", "");
  else if constexpr (F == wg16::ss_f32_e5m2_e4m3) WG16_F32_SS("k32.f32.e5m2.e4m3", "");
  else if constexpr (F == wg16::rs_f32_e4m3_e4m3) WG16_F32_RS("k32.f32.e4m3.e4m3", "");
  else if constexpr (F == wg16::ss_f16_e4m3_e4m3) WG16_F16_SS("k32.f16.e4m3.e4m3", "");
  else if constexpr (F == wg16::rs_f16_e5m2_e4m3) WG16_F16_RS("k32.f16.e5m2.e4m3", "");
  else if constexpr (F == wg16::rs_f32_bf16_bf16) WG16_F32_RS("k16.f32.bf16.bf16", ", 0");
  else WG16_F16_SS("k16.f16.f16.f16", ", 0, 0");
#else
  (void)d, (void)a, (void)da, (void)db, (void)scale_d;
  __trap();
#endif
}

// ---- kernels ----------------------------------------------------------------------------------

// mbarrier phases, recorded by all 64 threads (two warps) at known points between __syncthreads():
// out[slot * 64 + t]. The arrivals come from threads of both warps (kA, kB, kC) and kD.
constexpr int kPhaseThreads = 64;
constexpr int kA = 0, kB = 33, kC = 63, kD = 17;
constexpr int kPhaseSlots = 23;

__global__ void k_mbarrier_phases(uint32_t* out) {
  __shared__ uint64_t bars[3];
  const int t = threadIdx.x;
  const uint32_t b = smem_addr(&bars[0]), b2 = smem_addr(&bars[1]), b3 = smem_addr(&bars[2]);
  int slot = 0;
  auto rec = [&](uint32_t v) { out[(slot++) * kPhaseThreads + t] = v; };

  if (t == kA) {
    mbar_init(b, 3);
    fence_mbarrier_init();
  }
  __syncthreads();
  // Phase 0 (parity 0), no arrival yet.
  rec(mbar_test_wait_parity(b, 0));  // 0
  rec(mbar_test_wait_parity(b, 1));  // 1: parity of the immediately preceding phase
  rec(mbar_try_wait_parity(b, 1));   // 2
  __syncthreads();
  if (t == kA) mbar_arrive(b);
  __syncthreads();
  rec(mbar_test_wait_parity(b, 0));  // 3: one of three arrivals
  __syncthreads();
  if (t == kB || t == kC) mbar_arrive(b);
  __syncthreads();
  // Phase 0 complete; phase 1 (parity 1) current.
  rec(mbar_test_wait_parity(b, 0));  // 4
  rec(mbar_test_wait_parity(b, 1));  // 5
  rec(mbar_try_wait_parity(b, 0));   // 6
  __syncthreads();
  if (t == kA || t == kB) mbar_arrive(b);
  __syncthreads();
  rec(mbar_test_wait_parity(b, 1));  // 7: two of three arrivals
  rec(mbar_test_wait_parity(b, 0));  // 8: phase 0 is the immediately preceding phase
  __syncthreads();
  if (t == kC) mbar_arrive(b);
  __syncthreads();
  // Phase 1 complete; phase 2 (parity 0) current.
  rec(mbar_test_wait_parity(b, 1));  // 9
  rec(mbar_test_wait_parity(b, 0));  // 10
  __syncthreads();
  uint64_t token = 0;
  if (t == kA) token = mbar_arrive(b);
  __syncthreads();
  rec(t == kA ? mbar_test_wait(b, token) : 2u);  // 11
  __syncthreads();
  if (t == kD) mbar_arrive_count(b, 2);  // the two missing arrivals at once
  __syncthreads();
  rec(t == kA ? mbar_test_wait(b, token) : 2u);  // 12
  rec(t == kA ? mbar_try_wait(b, token) : 2u);   // 13
  rec(mbar_test_wait_parity(b, 0));              // 14
  rec(mbar_test_wait_parity(b, 1));              // 15: phase 3 (parity 1) current
  __syncthreads();

  // Transactions. b2: one arrival expected; arrive.expect_tx(64) arrives and adds 64 to the tx-count.
  if (t == kA) {
    mbar_init(b2, 1);
    mbar_init(b3, 2);
    fence_mbarrier_init();
  }
  __syncthreads();
  if (t == kA) mbar_arrive_expect_tx(b2, 64);
  __syncthreads();
  rec(mbar_test_wait_parity(b2, 0));  // 16: arrivals done, 64 bytes outstanding
  __syncthreads();
  if (t == kB) mbar_complete_tx(b2, 48);
  __syncthreads();
  rec(mbar_test_wait_parity(b2, 0));  // 17: 16 bytes outstanding
  __syncthreads();
  if (t == kC) mbar_complete_tx(b2, 16);
  __syncthreads();
  rec(mbar_test_wait_parity(b2, 0));  // 18: both counts zero
  __syncthreads();
  // b3: two arrivals expected; the transactions complete first, the arrivals last.
  if (t == kA) mbar_expect_tx(b3, 32);
  __syncthreads();
  if (t == kB) mbar_complete_tx(b3, 32);
  __syncthreads();
  rec(mbar_test_wait_parity(b3, 0));  // 19: tx-count zero, two arrivals pending
  __syncthreads();
  if (t == kC) mbar_arrive_expect_tx(b3, 16);
  __syncthreads();
  rec(mbar_test_wait_parity(b3, 0));  // 20: one arrival and 16 bytes pending
  __syncthreads();
  if (t == kD) mbar_arrive(b3);
  __syncthreads();
  rec(mbar_test_wait_parity(b3, 0));  // 21: arrivals done, 16 bytes pending
  __syncthreads();
  if (t == kA) mbar_complete_tx(b3, 16);
  __syncthreads();
  rec(mbar_test_wait_parity(b3, 0));  // 22
}

// try_wait on a phase that cannot complete while the threads wait (the missing arrival comes only
// after the next __syncthreads()): "Suspended thread resumes execution when the specified phase
// completes OR before the phase completes following a system-dependent time limit", returning False.
// out[slot * 64 + t]: 0 try_wait.parity 0 and 1 the token form (thread kA; others 2) before the
// second arrival; 2 and 3 the same after it.
__global__ void k_mbarrier_try_wait_timeout(uint32_t* out) {
  __shared__ uint64_t bar;
  const int t = threadIdx.x;
  const uint32_t b = smem_addr(&bar);
  if (t == kA) {
    mbar_init(b, 2);
    fence_mbarrier_init();
  }
  __syncthreads();
  uint64_t token = 0;
  if (t == kA) token = mbar_arrive(b);
  __syncthreads();
  out[0 * kPhaseThreads + t] = mbar_try_wait_parity(b, 0);
  out[1 * kPhaseThreads + t] = t == kA ? mbar_try_wait(b, token) : 2u;
  __syncthreads();
  if (t == kC) mbar_arrive(b);
  __syncthreads();
  out[2 * kPhaseThreads + t] = mbar_try_wait_parity(b, 0);
  out[3 * kPhaseThreads + t] = t == kA ? mbar_try_wait(b, token) : 2u;
}

// fence.proxy.async keeps the thread's own generic accesses in order; fence.mbarrier_init publishes an
// init that the next phase test sees. out[0..31] own store read back, out[32..63] test before the
// arrival, out[64..95] after it.
__global__ void k_fences(uint32_t* out) {
  __shared__ uint32_t sh[32];
  __shared__ uint64_t bar;
  const int t = threadIdx.x;
  const uint32_t b = smem_addr(&bar);
  sh[t] = 0x1000u + 7u * t;
  fence_proxy_async();
  out[t] = sh[t];
  __syncthreads();
  if (t == 0) {
    mbar_init(b, 1);
    fence_mbarrier_init();
  }
  __syncthreads();
  out[32 + t] = mbar_test_wait_parity(b, 0);
  __syncthreads();
  if (t == 0) mbar_arrive(b);
  __syncthreads();
  out[64 + t] = mbar_test_wait_parity(b, 0);
}

// Every thread copies 4, 8 or 16 bytes (by t % 3) with cp.async into its 16-byte slot, then has the
// barrier track its copies. .noinc: the barrier's count (the thread count) is met by the copies'
// arrive-on operations alone. Without .noinc: "the pending count of the mbarrier object is
// incremented by 1 prior to the asynchronous arrive-on operation. This results in a zero-net change",
// so each thread also arrives itself. After the wait each thread reads another thread's slot.
// out[16 t + i]: slot (t + 5) % n; done[t]: the wait completed.
template <bool Noinc>
__global__ void k_cp_async_mbarrier(const uint8_t* g, uint8_t* out, uint32_t* done) {
  __shared__ __align__(16) uint8_t sh[64 * 16];
  __shared__ uint64_t bar;
  const int t = threadIdx.x, n = blockDim.x;
  const uint32_t b = smem_addr(&bar);
  for (int i = 0; i < 16; ++i) sh[16 * t + i] = 0xAB;
  if (t == 0) {
    mbar_init(b, n);
    fence_mbarrier_init();
  }
  __syncthreads();
  const uint32_t dst = smem_addr(sh + 16 * t);
  if (t % 3 == 0) cp_async_ca<4>(dst, g + 16 * t);
  if (t % 3 == 1) cp_async_ca<8>(dst, g + 16 * t);
  if (t % 3 == 2) cp_async_ca<16>(dst, g + 16 * t);
  if (Noinc) {
    cp_async_mbarrier_arrive_noinc(b);
  } else {
    cp_async_mbarrier_arrive(b);
    mbar_arrive(b);
  }
  done[t] = mbar_wait_parity_bounded(b, 0);
  const int u = (t + 5) % n;
  for (int i = 0; i < 16; ++i) out[16 * t + i] = sh[16 * u + i];
}

// Thread 0 loads one box with cp.async.bulk.tensor (tile mode; DefaultMode: the 2d form without a
// load mode) into a 1024-byte aligned buffer that all threads first fill with 0xCD; the barrier
// expects the box's bytes. After the wait the raw shared bytes are copied out. info[0]: the
// destination's shared address, info[1]: the wait completed.
constexpr int kTmaBuffer = 8192;

template <int Rank, bool DefaultMode = false>
__global__ void k_tma_tile(const __grid_constant__ CUtensorMap map, tensor_coords at, uint32_t bytes, uint8_t* out,
                           uint32_t* info) {
  __shared__ __align__(1024) uint8_t sh[kTmaBuffer];
  __shared__ uint64_t bar;
  const int t = threadIdx.x;
  const uint32_t b = smem_addr(&bar), dst = smem_addr(sh);
  for (int i = t; i < kTmaBuffer; i += blockDim.x) sh[i] = 0xCD;
  if (t == 0) {
    mbar_init(b, 1);
    fence_mbarrier_init();
  }
  fence_proxy_async();  // the 0xCD stores before the tensor copy's async-proxy writes
  __syncthreads();
  if (t == 0) {
    mbar_arrive_expect_tx(b, bytes);
    if constexpr (Rank == 1) tma_load_1d(dst, &map, b, at);
    if constexpr (Rank == 2 && DefaultMode) tma_load_2d_default_mode(dst, &map, b, at);
    if constexpr (Rank == 2 && !DefaultMode) tma_load_2d(dst, &map, b, at);
    if constexpr (Rank == 3) tma_load_3d(dst, &map, b, at);
    if constexpr (Rank == 4) tma_load_4d(dst, &map, b, at);
    if constexpr (Rank == 5) tma_load_5d(dst, &map, b, at);
  }
  const uint32_t done = mbar_wait_parity_bounded(b, 0);
  for (int i = t; i < kTmaBuffer; i += blockDim.x) out[i] = sh[i];
  if (t == 0) info[0] = dst, info[1] = done;
}

// elect.sync: warp w elects among masks[w]; lanes outside the mask do not execute it. Each lane
// elects twice ("the same leader thread is elected for the same membermask every time").
// out[(32 w + lane) * 4 + {0, 1, 2, 3}] = leader, is_leader, leader again, is_leader again.
__global__ void k_elect(const uint32_t* masks, uint32_t* out) {
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  const uint32_t mask = masks[w];
  uint32_t l1 = 0xEEEEEEEEu, p1 = 2, l2 = 0xEEEEEEEEu, p2 = 2;
  if ((mask >> lane) & 1u) {
    elect_sync(mask, l1, p1);
    elect_sync(mask, l2, p2);
  }
  uint32_t* o = out + (32 * w + lane) * 4;
  o[0] = l1, o[1] = p1, o[2] = l2, o[3] = p2;
}

// mapa in every form (a register, a shared variable and variable+imm with .shared::cluster; a generic
// address without a space), the rank an immediate or %cluster_ctarank; then a store through the
// mapped shared::cluster address. out[8t + k]
__global__ void k_mapa(uint32_t* out) {
  const uint32_t t = threadIdx.x;
  uint32_t v[8] = {};
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ uint32_t words[32];
  const uint32_t local = static_cast<uint32_t>(__cvta_generic_to_shared(&words[t]));
  uint32_t rank, ranks, by_immediate, by_register, variable, variable8, plain;
  uint64_t generic;
  asm volatile(".shared .align 4 .b32 isa_mapa_var[4];");
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(ranks));
  asm volatile("mapa.shared::cluster.u32 %0, %1, 0;" : "=r"(by_immediate) : "r"(local));
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(by_register) : "r"(local), "r"(rank));
  asm volatile("mapa.shared::cluster.u32 %0, isa_mapa_var, %1;" : "=r"(variable) : "r"(rank));
  asm volatile("mapa.shared::cluster.u32 %0, isa_mapa_var+8, 0;" : "=r"(variable8));
  asm volatile("mov.u32 %0, isa_mapa_var;" : "=r"(plain));
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(generic) : "l"(&words[t]), "r"(rank));
  asm volatile("st.shared::cluster.u32 [%0], %1;" ::"r"(by_register), "r"(100 + t) : "memory");
  v[0] = rank, v[1] = ranks, v[2] = by_immediate == local, v[3] = by_register == local;
  v[4] = variable == plain, v[5] = variable8 == plain + 8, v[6] = generic == reinterpret_cast<uint64_t>(&words[t]);
  v[7] = words[t];
#else
  __trap();
#endif
  for (int k = 0; k < 8; ++k) out[8 * t + k] = v[k];
}

// One warpgroup: the host-built shared-memory images of A (64 x 16) and B (N x 16, both K-major) are
// copied into 1024-byte aligned shared memory with plain stores, made visible to the async proxy, and
// multiplied once. desc_*_hi: the descriptor without its start address, *_start: byte offset of the
// matrix in its tile. out[t * N/2 + r]: register d[r] of thread t; addr[0..1]: the tiles' addresses.
constexpr int kTileA = 8192, kTileB = 32768;

//! The images into the tiles (every thread's plain stores), made visible to the async proxy
//! and the block; da, db: the descriptors of the matrices at a_start, b_start in their tiles.
__device__ void load_images(uint8_t* sh_a, uint8_t* sh_b, const uint4* img_a, int a_chunks, const uint4* img_b,
                            int b_chunks, uint64_t desc_a_hi, uint32_t a_start, uint64_t desc_b_hi, uint32_t b_start,
                            uint64_t& da, uint64_t& db) {
  uint4* a4 = reinterpret_cast<uint4*>(sh_a);
  uint4* b4 = reinterpret_cast<uint4*>(sh_b);
  for (int i = int(threadIdx.x); i < a_chunks; i += 128) a4[i] = img_a[i];
  for (int i = int(threadIdx.x); i < b_chunks; i += 128) b4[i] = img_b[i];
  fence_proxy_async();
  __syncthreads();
  const uint32_t a_addr = smem_addr(sh_a) + a_start, b_addr = smem_addr(sh_b) + b_start;
  da = desc_a_hi | ((a_addr & 0x3FFFFu) >> 4);
  db = desc_b_hi | ((b_addr & 0x3FFFFu) >> 4);
}

template <int N, bool BF16, int SA, int SB, int TA = 0, int TB = 0>
__global__ void __launch_bounds__(128)
    k_wgmma(const uint4* img_a, int a_chunks, const uint4* img_b, int b_chunks, uint64_t desc_a_hi, uint32_t a_start,
            uint64_t desc_b_hi, uint32_t b_start, uint32_t scale_d, const float* c, float* out, uint32_t* addr) {
  __shared__ __align__(1024) uint8_t sh_a[kTileA];
  __shared__ __align__(1024) uint8_t sh_b[kTileB];
  const int t = threadIdx.x;
  uint64_t da, db;
  load_images(sh_a, sh_b, img_a, a_chunks, img_b, b_chunks, desc_a_hi, a_start, desc_b_hi, b_start, da, db);
  float d[N / 2];
#pragma unroll
  for (int r = 0; r < N / 2; ++r) d[r] = c[t * (N / 2) + r];
#pragma unroll
  for (int r = 0; r < N / 2; ++r) fence_operand(d[r]);
  wgmma_fence();
  wgmma_ss<N, BF16, SA, SB, TA, TB>(d, da, db, scale_d);
  wgmma_commit();
  wgmma_wait0();
#pragma unroll
  for (int r = 0; r < N / 2; ++r) fence_operand(d[r]);
#pragma unroll
  for (int r = 0; r < N / 2; ++r) out[t * (N / 2) + r] = d[r];
  if (t == 0) addr[0] = smem_addr(sh_a), addr[1] = smem_addr(sh_b);
}

// k_wgmma for the wg16 forms: A from the image (ss) or from a_regs[t * 4 + r] (rs), and the accumulator
// registers as bits: c[t * R + r] in, out[t * R + r] out (R = 8 .f32 or 4 .f16x2 registers).
template <wg16 F, int SA, int SB>
__global__ void __launch_bounds__(128)
    k_wgmma16(const uint4* img_a, int a_chunks, const uint4* img_b, int b_chunks, uint64_t desc_a_hi,
              uint32_t a_start, uint64_t desc_b_hi, uint32_t b_start, const uint32_t* a_regs, uint32_t scale_d,
              const uint32_t* c, uint32_t* out) {
  __shared__ __align__(1024) uint8_t sh_a[kTileA];
  __shared__ __align__(1024) uint8_t sh_b[kTileB];
  const int t = threadIdx.x;
  uint64_t da, db;
  load_images(sh_a, sh_b, img_a, a_chunks, img_b, b_chunks, desc_a_hi, a_start, desc_b_hi, b_start, da, db);
  constexpr int R = wg16_registers(F);
  using acc = std::conditional_t<wg16_f16_d(F), uint32_t, float>;
  const uint32_t a[4] = {a_regs[4 * t], a_regs[4 * t + 1], a_regs[4 * t + 2], a_regs[4 * t + 3]};
  acc d[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const uint32_t v = c[t * R + r];
    std::memcpy(&d[r], &v, 4);
    fence_operand(d[r]);
  }
  wgmma_fence();
  wgmma16<F, SA, SB>(d, a, da, db, scale_d);
  wgmma_commit();
  wgmma_wait0();
#pragma unroll
  for (int r = 0; r < R; ++r) {
    fence_operand(d[r]);
    uint32_t v;
    std::memcpy(&v, &d[r], 4);
    out[t * R + r] = v;
  }
}

// ---- host helpers -------------------------------------------------------------------------------

uint16_t to_bf16(int v) {  // exact for the small integers used here
  const float f = float(v);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  REQUIRE((u & 0xffffu) == 0u);
  return uint16_t(u >> 16);
}
uint16_t to_f16(int v) {  // exact integers of at most 11 significant bits, |v| <= 65504
  if (v == 0) return 0;
  const uint16_t sign = v < 0 ? 0x8000 : 0;
  const uint32_t a = uint32_t(v < 0 ? -v : v);
  int e = 0;
  while ((a >> e) > 1) ++e;  // a in [2^e, 2^(e+1))
  REQUIRE(e <= 15);
  const uint32_t mant = e <= 10 ? (a << (10 - e)) : (a >> (e - 10));
  REQUIRE((e <= 10 || (mant << (e - 10)) == a));
  return uint16_t(sign | ((e + 15) << 10) | (mant & 0x3ffu));
}

uint32_t lcg_state = 12345;
uint32_t random_below(uint32_t n) {
  lcg_state = lcg_state * 1103515245u + 12345u;
  return (lcg_state >> 16) % n;
}
int small_random() { return int(random_below(7)) - 3; }  // -3..3

// The CUTLASS Swizzle<b,4,3> functor that both the tensor copy's swizzling modes and the wgmma
// canonical layouts apply to a shared-memory byte address: address bits [4, 4+b) XOR bits [7, 7+b).
size_t swizzle(size_t a, int b) { return a ^ (((a >> 7) & ((size_t(1) << b) - 1)) << 4); }

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  ISA_CUDA(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
  REQUIRE_MESSAGE(found == cudaDriverEntryPointSuccess, "cuTensorMapEncodeTiled: driver entry point status ", int(found));
  REQUIRE(fn != nullptr);
  return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
}

// ---- wgmma host side ----------------------------------------------------------------------------

// Descriptor bits 62-63 ("Matrix Descriptor Format"): 0 no swizzle, 1 128B, 2 64B, 3 32B.
enum class gmma_mode : uint32_t { none = 0, sw128 = 1, sw64 = 2, sw32 = 3 };
const char* mode_name(gmma_mode m) {
  return m == gmma_mode::none ? "none" : m == gmma_mode::sw128 ? "128B" : m == gmma_mode::sw64 ? "64B" : "32B";
}
int swizzle_span(gmma_mode m) { return m == gmma_mode::sw128 ? 128 : m == gmma_mode::sw64 ? 64 : m == gmma_mode::sw32 ? 32 : 16; }
int last_slice(gmma_mode m) { return m == gmma_mode::none ? 0 : swizzle_span(m) / 32 - 1; }
int swizzle_bits(gmma_mode m) { return m == gmma_mode::sw128 ? 3 : m == gmma_mode::sw64 ? 2 : m == gmma_mode::sw32 ? 1 : 0; }

// A K-major operand of `rows` rows (M or N) and K = 16 in the canonical layouts of 9.7.15.5.1.2.1.3,
// T = 8 16-bit elements per 16 bytes:
//   no swizzle ((8,m),(T,2k)):((1T,SBO),(1,LBO)): 8x8 core matrices of 8 rows x 16 contiguous bytes;
//     LBO = byte distance between the two core matrices along K, SBO = between 8-row groups.
//   32B/64B/128B ((8,m),(T,2k)):((2T|4T|8T,SBO),(1,T)) o Swizzle<1|2|3,4,3>: rows of 32/64/128 bytes,
//     8-row groups SBO apart, the two 16-byte K chunks adjacent ("LBO: not used, assumed to be 1").
//   A 64B or 128B row holds 2 or 4 K-slices of 16 elements; slice s starts 32 s bytes into the row,
//     and the descriptor's start address points at it (the swizzle applies to the absolute address).
// An MN-major operand (imm-trans 1) of `rows` rows (M or N) and K = 16, swizzled layouts only
// (9.7.15.5.1.2 "Shared Memory Matrix Layout": MN-major swizzle atoms of 2^b x 8 128-bit elements,
// ((T,2^b,m),(8,k)):((1,T,LBO),(2^b T,SBO)) o Swizzle<b,4,3>): along MN runs of 32/64/128 bytes, K rows
// one run apart, 8-row groups along K SBO apart, the next run along MN LBO apart ("leading dimension
// byte offset" of an MN-major layout: from one swizzle-span of rows to the next). Here SBO = one atom
// and LBO = three (an atom of 0xFF between the MN runs, so a swapped LBO and SBO reads NaN).
struct gmma_layout {
  gmma_mode mode;
  uint32_t lbo, sbo, start;
  size_t bytes;
  bool mn_major = false;
};

gmma_layout make_mn_layout(gmma_mode mode, int rows) {
  const uint32_t span = uint32_t(swizzle_span(mode)), atom = 8 * span;
  const uint32_t runs = (uint32_t(rows) * 2 + span - 1) / span;
  return {mode, 3 * atom, atom, 0, size_t(runs) * 3 * atom, true};
}

gmma_layout make_layout(gmma_mode mode, int rows, bool operand_a, int slice) {
  gmma_layout L{mode, 0, 0, 0, 0};
  if (mode == gmma_mode::none) {
    if (operand_a) {  // row groups 384 bytes apart, K halves 128 apart, a 128-byte gap per group
      L.lbo = 128, L.sbo = 384, L.bytes = size_t(rows / 8) * 384;
    } else {  // all row groups of K half 0, a 128-byte gap, then K half 1
      L.sbo = 128, L.lbo = uint32_t(rows / 8) * 128 + 128, L.bytes = L.lbo + size_t(rows / 8) * 128;
    }
  } else {
    const int span = swizzle_span(mode);
    L.lbo = 16, L.sbo = 8u * span, L.bytes = size_t(rows / 8) * L.sbo, L.start = 32u * slice;
    REQUIRE(32 * slice + 32 <= span);
  }
  return L;
}

// Byte offset of byte kb along K of row `row` (K = 32 bytes: 16 16-bit or 32 8-bit elements), from the
// 1024-byte aligned tile base.
size_t element_offset(const gmma_layout& L, int row, int kb) {
  if (L.mn_major) {  // 16-bit elements: k = kb / 2
    const size_t span = size_t(swizzle_span(L.mode)), mnb = size_t(row) * 2, k = size_t(kb / 2);
    return swizzle(L.start + mnb / span * L.lbo + k / 8 * L.sbo + k % 8 * span + mnb % span, swizzle_bits(L.mode));
  }
  if (L.mode == gmma_mode::none)
    return L.start + size_t(row / 8) * L.sbo + size_t(kb / 16) * L.lbo + size_t(row % 8) * 16 + size_t(kb % 16);
  const size_t logical = L.start + size_t(row / 8) * L.sbo + size_t(row % 8) * swizzle_span(L.mode) + size_t(kb);
  return swizzle(logical, swizzle_bits(L.mode));
}

// Descriptor bits 16-63; bits 0-13 (start address >> 4) are added in the kernel. Base offset 0: every
// tile starts on a 1024-byte boundary.
uint64_t descriptor_hi(const gmma_layout& L) {
  return (uint64_t((L.lbo & 0x3FFFFu) >> 4) << 16) | (uint64_t((L.sbo & 0x3FFFFu) >> 4) << 32) |
         (uint64_t(static_cast<uint32_t>(L.mode)) << 62);
}

// The shared-memory image of elements of `bytes` bytes: every byte not holding an element is 0xFF (a NaN
// in bf16, f16, e4m3 and e5m2), so an element read from the wrong place poisons the result.
// value(row, k) -> encoded element.
template <class F>
std::vector<uint8_t> build_image(const gmma_layout& L, int rows, int bytes, F value) {
  std::vector<uint8_t> img(L.bytes, 0xFF);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 32 / bytes; ++k) {
      const size_t o = element_offset(L, r, k * bytes);
      REQUIRE(o + size_t(bytes) <= img.size());
      const uint16_t v = value(r, k);
      for (int i = 0; i < bytes; ++i) img[o + size_t(i)] = uint8_t(v >> (8 * i));
    }
  return img;
}

std::vector<uint4> to_chunks(const std::vector<uint8_t>& bytes) {
  REQUIRE(bytes.size() % 16 == 0);
  std::vector<uint4> c(bytes.size() / 16);
  std::memcpy(c.data(), bytes.data(), bytes.size());
  return c;
}

// ISA Figure 149 (accumulator D of m64nNk16), per warp w of the warpgroup, lane l, g = l / 4,
// q = l % 4: d[4 i + j] holds row 16 w + g + 8 (j / 2), column 8 i + 2 q + (j % 2).
void d_element(int thread, int r, int& row, int& col) {
  const int w = thread / 32, l = thread % 32, g = l / 4, q = l % 4, i = r / 4, j = r % 4;
  row = 16 * w + g + 8 * (j / 2);
  col = 8 * i + 2 * q + (j % 2);
}

struct gmma_problem {
  int n;
  std::vector<int> a;    // a[m * 16 + k], 64 x 16
  std::vector<int> b;    // b[k * n + col], 16 x n
  std::vector<float> c;  // c[m * n + col], the initial accumulator
};

struct gmma_run {
  bool bf16;
  int scale_a, scale_b;
  bool scale_d;
  gmma_mode mode_a, mode_b;
  int slice_a, slice_b;
  bool trans_a = false, trans_b = false;  // MN-major (slices unused)
};

template <int N, bool BF16, int SA, int SB, int TA = 0, int TB = 0>
void launch_wgmma(const gmma_problem& p, const gmma_run& run, std::vector<float>& d, std::vector<uint32_t>& addr) {
  const gmma_layout la = TA ? make_mn_layout(run.mode_a, 64) : make_layout(run.mode_a, 64, true, run.slice_a),
                    lb = TB ? make_mn_layout(run.mode_b, N) : make_layout(run.mode_b, N, false, run.slice_b);
  REQUIRE(la.bytes <= size_t(kTileA));
  REQUIRE(lb.bytes <= size_t(kTileB));
  auto enc = [](int v) { return BF16 ? to_bf16(v) : to_f16(v); };
  const auto img_a = build_image(la, 64, 2, [&](int m, int k) { return enc(p.a[m * 16 + k]); });
  const auto img_b = build_image(lb, N, 2, [&](int col, int k) { return enc(p.b[k * N + col]); });
  std::vector<float> c(128 * (N / 2));
  for (int t = 0; t < 128; ++t)
    for (int r = 0; r < N / 2; ++r) {
      int row, col;
      d_element(t, r, row, col);
      c[t * (N / 2) + r] = p.c[row * N + col];
    }
  buffer<uint4> da(to_chunks(img_a)), db(to_chunks(img_b));
  buffer<float> dc(c), dd(128 * (N / 2));
  buffer<uint32_t> daddr(2);
  k_wgmma<N, BF16, SA, SB, TA, TB><<<1, 128>>>(da.get(), int(da.size()), db.get(), int(db.size()), descriptor_hi(la), la.start,
                                        descriptor_hi(lb), lb.start, run.scale_d ? 1u : 0u, dc.get(), dd.get(), daddr.get());
  ISA_SYNC();
  d = dd.host();
  addr = daddr.host();
}

template <int N, bool BF16>
void dispatch_scales(const gmma_problem& p, const gmma_run& run, std::vector<float>& d, std::vector<uint32_t>& addr) {
  if (run.trans_a || run.trans_b) {  // MN-major operands at unit scales
    REQUIRE((run.scale_a == 1 && run.scale_b == 1));
    if (run.trans_a && run.trans_b) launch_wgmma<N, BF16, 1, 1, 1, 1>(p, run, d, addr);
    else if (run.trans_a) launch_wgmma<N, BF16, 1, 1, 1, 0>(p, run, d, addr);
    else launch_wgmma<N, BF16, 1, 1, 0, 1>(p, run, d, addr);
    return;
  }
  if (run.scale_a == 1 && run.scale_b == 1) launch_wgmma<N, BF16, 1, 1>(p, run, d, addr);
  else if (run.scale_a == -1 && run.scale_b == 1) launch_wgmma<N, BF16, -1, 1>(p, run, d, addr);
  else if (run.scale_a == 1 && run.scale_b == -1) launch_wgmma<N, BF16, 1, -1>(p, run, d, addr);
  else launch_wgmma<N, BF16, -1, -1>(p, run, d, addr);
}

// Runs one problem and compares every register of every thread with the double-precision product
// D = (scale_a A)(scale_b B) + (scale_d ? C : 0), placed by d_element.
void check_wgmma(const std::string& what, const gmma_problem& p, const gmma_run& run) {
  std::vector<float> d;
  std::vector<uint32_t> addr;
  const int n = p.n;
  if (run.bf16) {
    if (n == 8) dispatch_scales<8, true>(p, run, d, addr);
    if (n == 64) dispatch_scales<64, true>(p, run, d, addr);
    if (n == 128) dispatch_scales<128, true>(p, run, d, addr);
    if (n == 256) dispatch_scales<256, true>(p, run, d, addr);
  } else {
    if (n == 8) dispatch_scales<8, false>(p, run, d, addr);
    if (n == 64) dispatch_scales<64, false>(p, run, d, addr);
    if (n == 128) dispatch_scales<128, false>(p, run, d, addr);
    if (n == 256) dispatch_scales<256, false>(p, run, d, addr);
  }
  REQUIRE(d.size() == size_t(128 * (n / 2)));
  const std::string name = what + " m64n" + std::to_string(n) + "k16." + (run.bf16 ? "bf16" : "f16") + " A " +
                           (run.trans_a ? "MN-major " : "") + mode_name(run.mode_a) + " slice " + std::to_string(run.slice_a) +
                           ", B " + (run.trans_b ? "MN-major " : "") + mode_name(run.mode_b) + " slice " +
                           std::to_string(run.slice_b) + ", scale-d " + std::to_string(int(run.scale_d)) +
                           ", imm-scale-a " + std::to_string(run.scale_a) + ", imm-scale-b " + std::to_string(run.scale_b);
  REQUIRE_MESSAGE(addr[0] % 1024 == 0, name, ": A tile at shared address ", addr[0], ", not 1024-byte aligned");
  REQUIRE_MESSAGE(addr[1] % 1024 == 0, name, ": B tile at shared address ", addr[1], ", not 1024-byte aligned");
  int bad = 0;
  for (int t = 0; t < 128; ++t)
    for (int r = 0; r < n / 2; ++r) {
      int row, col;
      d_element(t, r, row, col);
      double s = 0;
      for (int k = 0; k < 16; ++k) s += double(p.a[row * 16 + k]) * double(p.b[k * n + col]);
      s *= double(run.scale_a) * double(run.scale_b);
      if (run.scale_d) s += double(p.c[row * n + col]);
      const float want = float(s), got = d[t * (n / 2) + r];
      if (isa::bits(got) != isa::bits(want) && ++bad <= 8)
        CHECK_MESSAGE(false, name, ": thread ", t, " d", r, " (D[", row, "][", col, "]) = ", got, " (", hex(isa::bits(got)),
                      "), want ", want);
    }
  CHECK_MESSAGE(bad == 0, name, ": ", bad, " wrong accumulator registers");
}

gmma_problem random_problem(int n, bool nan_c) {
  gmma_problem p{n, std::vector<int>(64 * 16), std::vector<int>(16 * n), std::vector<float>(64 * n)};
  for (int& v : p.a) v = small_random();
  for (int& v : p.b) v = small_random();
  for (int m = 0; m < 64; ++m)
    for (int col = 0; col < n; ++col) p.c[m * n + col] = nan_c ? isa::as_f32(0x7fc00000u) : float((m * 7 + col * 3) % 41 - 20);
  return p;
}

// ---- wgmma host side: the wg16 forms ---------------------------------------------------------------

// What a wg16 form multiplies: A's and B's element types, whether D is .f16, whether A is in registers.
enum class elem { f16, bf16, e4m3, e5m2 };
struct wg16_info {
  const char* name;
  elem a, b;
  bool f16_d, registers;
};
wg16_info info_of(wg16 f) {
  switch (f) {
    case wg16::ss_f32_e4m3_e4m3: return {"m64n16k32.f32.e4m3.e4m3 (A: descriptor)", elem::e4m3, elem::e4m3, false, false};
    case wg16::ss_f32_e5m2_e5m2: return {"m64n16k32.f32.e5m2.e5m2 (A: descriptor)", elem::e5m2, elem::e5m2, false, false};
    case wg16::ss_f32_e4m3_e5m2: return {"m64n16k32.f32.e4m3.e5m2 (A: descriptor)", elem::e4m3, elem::e5m2, false, false};
    case wg16::ss_f32_e5m2_e4m3: return {"m64n16k32.f32.e5m2.e4m3 (A: descriptor)", elem::e5m2, elem::e4m3, false, false};
    case wg16::rs_f32_e4m3_e4m3: return {"m64n16k32.f32.e4m3.e4m3 (A: registers)", elem::e4m3, elem::e4m3, false, true};
    case wg16::ss_f16_e4m3_e4m3: return {"m64n16k32.f16.e4m3.e4m3 (A: descriptor)", elem::e4m3, elem::e4m3, true, false};
    case wg16::rs_f16_e5m2_e4m3: return {"m64n16k32.f16.e5m2.e4m3 (A: registers)", elem::e5m2, elem::e4m3, true, true};
    case wg16::rs_f32_bf16_bf16: return {"m64n16k16.f32.bf16.bf16 (A: registers)", elem::bf16, elem::bf16, false, true};
    default: return {"m64n16k16.f16.f16.f16 (A: descriptor)", elem::f16, elem::f16, true, false};
  }
}
int bytes_of(elem e) { return e == elem::e4m3 || e == elem::e5m2 ? 1 : 2; }

// The value of an 8-bit code (ISA "Alternate Floating-Point Data Formats"): e4m3 sign, 4 exponent bits
// biased by 7, 3 fraction bits, no infinity, S.1111.111 NaN; e5m2 sign, 5 exponent bits biased by 15,
// 2 fraction bits, S.11111.00 infinity, S.11111.{01,10,11} NaN. Exponent field 0: subnormal.
double fp8_value(uint32_t code, elem e) {
  const bool e5m2 = e == elem::e5m2;
  const int m = e5m2 ? 2 : 3, bias = e5m2 ? 15 : 7, exponent = int(code >> m) & (e5m2 ? 31 : 15);
  const int fraction = int(code) & ((1 << m) - 1);
  const double sign = code & 0x80u ? -1.0 : 1.0;
  if (e5m2 && exponent == 31) return fraction ? NAN : sign * INFINITY;
  if (!e5m2 && exponent == 15 && fraction == 7) return NAN;
  const double significand = exponent ? double(fraction + (1 << m)) : double(fraction);
  return sign * std::ldexp(significand, (exponent ? exponent : 1) - bias - m);
}

// The encoding of v in the element type: v is an integer (f16, bf16), or exactly representable (fp8,
// ±inf in e5m2); NaN gives the NaN S.1111.111 (e4m3) or S.11111.11 (e5m2).
uint16_t encode(double v, elem e) {
  if (e == elem::f16) return to_f16(int(v));
  if (e == elem::bf16) return to_bf16(int(v));
  if (std::isnan(v)) return 0x7f;
  for (uint32_t code = 0; code < 256; ++code)
    if (fp8_value(code, e) == v) return uint16_t(code);
  FAIL("no exact ", e == elem::e5m2 ? "e5m2" : "e4m3", " encoding of ", v);
  return 0;
}

// A 64 x K (K = 32 / element bytes), B K x 16, C 64 x 16, the values exact in their types.
struct wg16_problem {
  std::vector<double> a;  // a[m * K + k]
  std::vector<double> b;  // b[k * 16 + col]
  std::vector<double> c;  // c[m * 16 + col]
};

struct wg16_run {
  int scale_a, scale_b;
  bool scale_d;
  gmma_mode mode_a, mode_b;
  int slice_a, slice_b;
};

// ISA "Register Fragments" of A for warp w, lane l (g = l / 4, q = l % 4), element a_i:
//   m64nNk16 (a0..a7, two per register):  row 16w + g (+ 8 for a2, a3, a6, a7), column 2q + (i & 1) (+ 8 for i >= 4)
//   m64nNk32 (a0..a15, four per register): row 16w + g (+ 8 for a4..a7, a12..a15), column 4q + (i & 3) (+ 16 for i >= 8)
// Element i sits in register i / (elements per register), the lowest-numbered in the low bits.
std::vector<uint32_t> a_fragments(const wg16_problem& p, elem type) {
  const int bytes = bytes_of(type), per = 4 / bytes, k_count = 32 / bytes;
  std::vector<uint32_t> regs(128 * 4, 0);
  for (int t = 0; t < 128; ++t) {
    const int w = t / 32, g = t % 32 / 4, q = t % 4;
    for (int i = 0; i < 4 * per; ++i) {
      const int row = 16 * w + g + (bytes == 2 ? (i % 4 >= 2 ? 8 : 0) : (i % 8 >= 4 ? 8 : 0));
      const int col = bytes == 2 ? 2 * q + (i & 1) + (i >= 4 ? 8 : 0) : 4 * q + (i & 3) + (i >= 8 ? 16 : 0);
      regs[size_t(4 * t + i / per)] |= uint32_t(encode(p.a[size_t(row * k_count + col)], type)) << (8 * bytes * (i % per));
    }
  }
  return regs;
}

template <wg16 F, int SA, int SB>
std::vector<uint32_t> launch_wgmma16(const wg16_problem& p, const wg16_run& run) {
  const wg16_info f = info_of(F);
  const int ka = 32 / bytes_of(f.a);
  const gmma_layout la = make_layout(run.mode_a, 64, true, run.slice_a), lb = make_layout(run.mode_b, 16, false, run.slice_b);
  const auto img_a = f.registers ? std::vector<uint8_t>() : build_image(la, 64, bytes_of(f.a), [&](int m, int k) {
    return encode(p.a[size_t(m * ka + k)], f.a);
  });
  const auto img_b = build_image(lb, 16, bytes_of(f.b), [&](int col, int k) { return encode(p.b[size_t(k * 16 + col)], f.b); });
  constexpr int R = wg16_registers(F);
  std::vector<uint32_t> c(128 * R);
  for (int t = 0; t < 128; ++t)
    for (int r = 0; r < R; ++r) {
      int row, col;
      if (f.f16_d) {  // .f16x2: elements 2r (low half) and 2r + 1
        uint32_t v = 0;
        for (int h = 0; h < 2; ++h) {
          d_element(t, 2 * r + h, row, col);
          v |= uint32_t(to_f16(int(p.c[size_t(row * 16 + col)]))) << (16 * h);
        }
        c[size_t(t * R + r)] = v;
      } else {
        d_element(t, r, row, col);
        c[size_t(t * R + r)] = isa::bits(float(p.c[size_t(row * 16 + col)]));
      }
    }
  buffer<uint4> da(to_chunks(img_a)), db(to_chunks(img_b));
  buffer<uint32_t> dregs(f.registers ? a_fragments(p, f.a) : std::vector<uint32_t>(128 * 4, 0));
  buffer<uint32_t> dc(c), dd(128 * R);
  k_wgmma16<F, SA, SB><<<1, 128>>>(da.get(), int(img_a.size() / 16), db.get(), int(db.size()), descriptor_hi(la), la.start,
                                   descriptor_hi(lb), lb.start, dregs.get(), run.scale_d ? 1u : 0u, dc.get(), dd.get());
  ISA_SYNC();
  return dd.host();
}

// D[row][col] (64 x 16) as bits from each thread's registers, placed by d_element: .f32 elements, or
// the .f16 halves of the .f16x2 registers (element 2r in the low half of register r).
template <wg16 F, int SA, int SB>
std::vector<uint32_t> run_wgmma16(const wg16_problem& p, const wg16_run& run) {
  const std::vector<uint32_t> out = launch_wgmma16<F, SA, SB>(p, run);
  std::vector<uint32_t> d(64 * 16);
  constexpr int R = wg16_registers(F);
  for (int t = 0; t < 128; ++t)
    for (int r = 0; r < R; ++r) {
      int row, col;
      for (int h = 0; h < (wg16_f16_d(F) ? 2 : 1); ++h) {
        d_element(t, wg16_f16_d(F) ? 2 * r + h : r, row, col);
        d[size_t(row * 16 + col)] = wg16_f16_d(F) ? out[size_t(t * R + r)] >> (16 * h) & 0xffffu : out[size_t(t * R + r)];
      }
    }
  return d;
}

// Compares D with D = (scale_a A)(scale_b B) + (scale_d ? C : 0) computed in double: the values keep
// every sum exact in f32 (integers below 2^11 for the .f16 forms); NaN matches any NaN, and a zero
// either zero.
void check_wgmma16(const std::string& what, wg16 form, const wg16_problem& p, const wg16_run& run,
                   const std::vector<uint32_t>& d) {
  const wg16_info f = info_of(form);
  const int k_count = 32 / bytes_of(f.a);
  const std::string name = what + " " + f.name + ", A " + mode_name(run.mode_a) + " slice " +
                           std::to_string(run.slice_a) + ", B " + mode_name(run.mode_b) + " slice " +
                           std::to_string(run.slice_b) + ", scale-d " + std::to_string(int(run.scale_d)) +
                           ", imm-scale-a " + std::to_string(run.scale_a) + ", imm-scale-b " + std::to_string(run.scale_b);
  int bad = 0;
  for (int row = 0; row < 64; ++row)
    for (int col = 0; col < 16; ++col) {
      double s = 0;
      for (int k = 0; k < k_count; ++k) s += p.a[size_t(row * k_count + k)] * p.b[size_t(k * 16 + col)];
      s *= double(run.scale_a) * double(run.scale_b);
      if (run.scale_d) s += p.c[size_t(row * 16 + col)];
      const uint32_t got = d[size_t(row * 16 + col)];
      bool ok;  // the sign of an exact zero is left open
      if (f.f16_d) {
        REQUIRE(s == std::trunc(s));
        ok = s == 0 ? (got & 0x7fffu) == 0 : got == to_f16(int(s));
      } else {
        ok = std::isnan(s) ? std::isnan(isa::as_f32(got)) : s == 0 ? isa::as_f32(got) == 0.0f : got == isa::bits(float(s));
      }
      if (!ok && ++bad <= 8) CHECK_MESSAGE(false, name, ": D[", row, "][", col, "] = ", hex(got), ", want ", s);
    }
  CHECK_MESSAGE(bad == 0, name, ": ", bad, " wrong elements");
}

// Integers exact in e4m3 and e5m2 (at most 3 significant bits): every partial sum of the 32 products,
// and D, is an integer below 2^11, exact however the tensor core orders and aligns the additions.
wg16_problem fp8_problem(bool nan_c) {
  static const double values[] = {-6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6};
  wg16_problem p{std::vector<double>(64 * 32), std::vector<double>(32 * 16), std::vector<double>(64 * 16)};
  for (double& v : p.a) v = values[random_below(11)];
  for (double& v : p.b) v = values[random_below(11)];
  for (int i = 0; i < 64 * 16; ++i) p.c[size_t(i)] = nan_c ? NAN : (i * 7) % 41 - 20;
  return p;
}

// Small integers for the .f16 accumulators (sums of 16 or 32 products of -3..3 below 2^11) and bf16.
wg16_problem integer_problem(int k_count) {
  wg16_problem p{std::vector<double>(size_t(64 * k_count)), std::vector<double>(size_t(k_count * 16)),
                 std::vector<double>(64 * 16)};
  for (double& v : p.a) v = small_random();
  for (double& v : p.b) v = small_random();
  for (int i = 0; i < 64 * 16; ++i) p.c[size_t(i)] = (i * 5) % 41 - 20;
  return p;
}

// Runs form F with imm-scale-a/-b SA, SB (run's own scale fields are set from them) and checks D.
template <wg16 F, int SA = 1, int SB = 1>
std::vector<uint32_t> wgmma16_case(const std::string& what, const wg16_problem& p, wg16_run run) {
  run.scale_a = SA, run.scale_b = SB;
  const std::vector<uint32_t> d = run_wgmma16<F, SA, SB>(p, run);
  check_wgmma16(what, F, p, run, d);
  return d;
}

// ---- tensor copy host side ------------------------------------------------------------------------

// Element value of a tile test: a function of the coordinates (each < 64), never zero, so that an
// out-of-bound zero fill is distinguishable from data.
uint32_t tile_value(const int* c) {
  return 0x80000000u | uint32_t(c[0]) | uint32_t(c[1]) << 6 | uint32_t(c[2]) << 12 | uint32_t(c[3]) << 18 | uint32_t(c[4]) << 24;
}

struct tile_case {
  uint32_t rank;
  cuuint64_t dims[5];
  cuuint64_t strides[4];  // bytes, dimensions 1..rank-1
  cuuint32_t box[5];
  int start[5];
};

template <int Rank, bool DefaultMode = false>
void launch_tma(const CUtensorMap& map, const tensor_coords& at, uint32_t bytes, std::vector<uint8_t>& out,
                std::vector<uint32_t>& info) {
  buffer<uint8_t> dout(kTmaBuffer);
  buffer<uint32_t> dinfo(2);
  k_tma_tile<Rank, DefaultMode><<<1, 32>>>(map, at, bytes, dout.get(), dinfo.get());
  ISA_SYNC();
  out = dout.host();
  info = dinfo.host();
}

void run_tma(uint32_t rank, const CUtensorMap& map, const tensor_coords& at, uint32_t bytes, std::vector<uint8_t>& out,
             std::vector<uint32_t>& info, bool default_mode = false) {
  if (rank == 1) launch_tma<1>(map, at, bytes, out, info);
  if (rank == 2 && default_mode) launch_tma<2, true>(map, at, bytes, out, info);
  if (rank == 2 && !default_mode) launch_tma<2>(map, at, bytes, out, info);
  if (rank == 3) launch_tma<3>(map, at, bytes, out, info);
  if (rank == 4) launch_tma<4>(map, at, bytes, out, info);
  if (rank == 5) launch_tma<5>(map, at, bytes, out, info);
}

// ---- programmatic dependent launch (ISA 9.7.13.13 "griddepcontrol"; CUDA Programming Guide,
// "Programmatic Dependent Launch and Synchronization") ----------------------------------------

// The primary: writes produced[i] = 3i + 1, then lets its dependents launch.
__global__ void k_pdl_primary(uint32_t* produced) {
  produced[threadIdx.x] = 3 * threadIdx.x + 1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#else
  __trap();
#endif
}

// The secondary: reads `constant` (which the primary never writes) before griddepcontrol.wait, as a
// dependent kernel's prologue may; reads the primary's output after it.
__global__ void k_pdl_secondary(const uint32_t* constant, const uint32_t* produced, uint32_t* out) {
  const uint32_t early = constant[threadIdx.x];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#else
  __trap();
#endif
  out[threadIdx.x] = early + produced[threadIdx.x];
}

//! cudaLaunchKernelEx with programmatic stream serialization allowed (or not).
cudaError_t launch_secondary(bool programmatic, cudaStream_t stream, const uint32_t* constant,
                             const uint32_t* produced, uint32_t* out) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = programmatic ? 1 : 0;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(1);
  config.blockDim = dim3(32);
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, k_pdl_secondary, constant, produced, out);
}

// Copies tile case tc with cp.async.bulk.tensor (without a load mode: default_mode) and checks the
// box in shared memory against the tensor, element by element, zeros outside it.
void check_tile_copy(const tile_case& tc, bool default_mode = false) {
  const auto encode_fn = tensor_map_encoder();
  const uint32_t r = tc.rank;
  const size_t gbytes = r == 1 ? size_t(tc.dims[0]) * 4 : size_t(tc.strides[r - 2]) * tc.dims[r - 1];
  std::vector<uint8_t> g(gbytes, 0x5A);  // row padding: never part of the box
  int c[5] = {0, 0, 0, 0, 0};
  size_t elements = 1;
  for (uint32_t k = 0; k < r; ++k) elements *= tc.dims[k];
  for (size_t e = 0; e < elements; ++e) {
    size_t rest = e, off = 0;
    for (uint32_t k = 0; k < r; ++k) {
      c[k] = int(rest % tc.dims[k]), rest /= tc.dims[k];
      off += k == 0 ? size_t(c[0]) * 4 : size_t(c[k]) * tc.strides[k - 1];
    }
    const uint32_t v = tile_value(c);
    std::memcpy(&g[off], &v, 4);
  }
  buffer<uint8_t> dg(g);
  CUtensorMap map{};
  const cuuint32_t estr[5] = {1, 1, 1, 1, 1};
  REQUIRE(encode_fn(&map, CU_TENSOR_MAP_DATA_TYPE_UINT32, r, dg.get(), tc.dims, tc.strides, tc.box, estr,
                    CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS);
  size_t box_elements = 1;
  for (uint32_t k = 0; k < r; ++k) box_elements *= tc.box[k];
  const uint32_t bytes = uint32_t(box_elements * 4);
  REQUIRE(bytes <= uint32_t(kTmaBuffer));
  std::vector<uint8_t> want(kTmaBuffer, 0xCD);
  int oob = 0;
  for (size_t e = 0; e < box_elements; ++e) {
    size_t rest = e;
    bool inside = true;
    int gc[5] = {0, 0, 0, 0, 0};
    for (uint32_t k = 0; k < r; ++k) {
      gc[k] = tc.start[k] + int(rest % tc.box[k]), rest /= tc.box[k];
      inside = inside && gc[k] >= 0 && gc[k] < int(tc.dims[k]);
    }
    const uint32_t v = inside ? tile_value(gc) : 0u;
    oob += inside ? 0 : 1;
    std::memcpy(&want[e * 4], &v, 4);
  }
  REQUIRE(oob > 0);  // every case crosses the tensor's edges
  tensor_coords at{};
  for (uint32_t k = 0; k < r; ++k) at.c[k] = tc.start[k];
  std::vector<uint8_t> out;
  std::vector<uint32_t> info;
  run_tma(r, map, at, bytes, out, info, default_mode);
  CHECK_MESSAGE(info[1] == 1u, "rank ", r, ": the barrier expecting the box's ", bytes, " bytes did not complete");
  int bad = 0;
  for (int i = 0; i < kTmaBuffer; ++i)
    if (out[i] != want[i] && ++bad <= 8)
      CHECK_MESSAGE(false, "rank ", r, ": shared byte ", i, " (element ", i / 4, ") = ", hex(out[i]), ", want ", hex(want[i]));
  CHECK_MESSAGE(bad == 0, "rank ", r, ": ", bad, " wrong shared-memory bytes");
}

}  // namespace

TEST_SUITE("emulator_isa_hopper") {

// Slot values of k_mbarrier_phases, worked from 9.7.13.15.16: test_wait / try_wait are "valid only for
// the current incomplete phase, for which waitComplete returns False [and] the immediately preceding
// phase, for which waitComplete returns True"; a freshly initialised barrier is in phase 0, so parity 1
// names the preceding phase. Phase completion (9.7.13.15.6): pending arrivals and tx-count both zero.
TEST_CASE("mbarrier phases: test_wait/try_wait .parity and state tokens, arrive with count, expect_tx and complete_tx") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  buffer<uint32_t> out(kPhaseSlots * kPhaseThreads);
  k_mbarrier_phases<<<1, kPhaseThreads>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  // Every thread, except slots 11-13, which only thread kA (the token's owner) tests; the others record 2.
  const uint32_t want_all[kPhaseSlots] = {
      0, 1, 1,     // phase 0, no arrival: parity 0 incomplete, parity 1 (preceding phase) complete
      0,           // 1 of 3 arrivals
      1, 0, 1,     // 3 of 3: phase 0 complete, phase 1 current
      0, 1,        // phase 1 with 2 of 3 arrivals; phase 0 is the preceding phase
      1, 0,        // phase 1 complete, phase 2 current
      0, 1, 1,     // (kA) token of phase 2: incomplete; complete after the count-2 arrive (test_wait, try_wait)
      1, 0,        // phase 2 complete, phase 3 (parity 1) current
      0, 0, 1,     // b2: arrival done + 64 bytes pending; 16 pending; both zero
      0, 0, 0, 1};  // b3: tx-count 0 but 2 arrivals pending; 1 arrival + 16 bytes; 16 bytes; complete
  const char* what[kPhaseSlots] = {
      "init(3): test_wait.parity 0", "init(3): test_wait.parity 1", "init(3): try_wait.parity 1",
      "1 arrival: test_wait.parity 0", "3 arrivals: test_wait.parity 0", "3 arrivals: test_wait.parity 1",
      "3 arrivals: try_wait.parity 0", "phase 1, 2 arrivals: test_wait.parity 1", "phase 1, 2 arrivals: test_wait.parity 0",
      "phase 1 complete: test_wait.parity 1", "phase 1 complete: test_wait.parity 0",
      "phase 2 token after 1 arrival: test_wait", "phase 2 token after arrive count 2: test_wait",
      "phase 2 token after arrive count 2: try_wait", "phase 2 complete: test_wait.parity 0",
      "phase 2 complete: test_wait.parity 1", "arrive.expect_tx 64, count 1: test_wait.parity 0",
      "complete_tx 48 of 64: test_wait.parity 0", "complete_tx 64 of 64: test_wait.parity 0",
      "expect_tx 32 + complete_tx 32, 0 of 2 arrivals: test_wait.parity 0",
      "+ arrive.expect_tx 16, 1 of 2 arrivals: test_wait.parity 0", "+ arrive, 16 bytes pending: test_wait.parity 0",
      "+ complete_tx 16: test_wait.parity 0"};
  for (int s = 0; s < kPhaseSlots; ++s)
    for (int t = 0; t < kPhaseThreads; ++t) {
      const bool token_slot = s >= 11 && s <= 13;
      const uint32_t want = token_slot && t != kA ? 2u : want_all[s];
      CHECK_MESSAGE(o[s * kPhaseThreads + t] == want, "slot ", s, " (", std::string(what[s]), ") thread ", t, ": got ",
                    o[s * kPhaseThreads + t], ", want ", want);
    }
}

TEST_CASE("mbarrier.try_wait on a phase that cannot complete meanwhile: False after the time limit") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  buffer<uint32_t> out(4 * kPhaseThreads);
  k_mbarrier_try_wait_timeout<<<1, kPhaseThreads>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < kPhaseThreads; ++t) {
    CHECK_MESSAGE(o[0 * kPhaseThreads + t] == 0u, "thread ", t, ": try_wait.parity 0 with 1 of 2 arrivals");
    CHECK_MESSAGE(o[1 * kPhaseThreads + t] == (t == kA ? 0u : 2u), "thread ", t, ": try_wait (token) with 1 of 2 arrivals");
    CHECK_MESSAGE(o[2 * kPhaseThreads + t] == 1u, "thread ", t, ": try_wait.parity 0 after the second arrival");
    CHECK_MESSAGE(o[3 * kPhaseThreads + t] == (t == kA ? 1u : 2u), "thread ", t, ": try_wait (token) after the second arrival");
  }
}

TEST_CASE("fence.proxy.async.shared::cta and fence.mbarrier_init.release.cluster execute in program order") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  buffer<uint32_t> out(96);
  k_fences<<<1, 32>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < 32; ++t) {
    CHECK_MESSAGE(o[t] == 0x1000u + 7u * t, "thread ", t, ": own shared store after fence.proxy.async: ", hex(o[t]));
    CHECK_MESSAGE(o[32 + t] == 0u, "thread ", t, ": init(1) then test_wait.parity 0 before the arrival");
    CHECK_MESSAGE(o[64 + t] == 1u, "thread ", t, ": test_wait.parity 0 after the arrival");
  }
}

// 9.7.13.15.15: "Causes an arrive-on operation to be triggered by the system on the mbarrier object upon
// the completion of all prior cp.async operations initiated by the executing thread"; with the
// acquire of the completed wait, "All cp.async operations requested prior, in program order, to
// cp.async.mbarrier.arrive during the completed phase by the participating threads of the CTA are
// performed and made visible to the executing thread" (9.7.13.15.16).
TEST_CASE("cp.async 4/8/16 bytes tracked by cp.async.mbarrier.arrive.noinc and cp.async.mbarrier.arrive") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const int n = 64;
  std::vector<uint8_t> src(16 * n);
  for (int i = 0; i < 16 * n; ++i) src[i] = uint8_t(i * 7 + 3);
  buffer<uint8_t> g(src);
  for (int variant = 0; variant < 2; ++variant) {
    buffer<uint8_t> out(16 * n);
    buffer<uint32_t> done(n);
    if (variant == 0) k_cp_async_mbarrier<true><<<1, n>>>(g.get(), out.get(), done.get());
    if (variant == 1) k_cp_async_mbarrier<false><<<1, n>>>(g.get(), out.get(), done.get());
    ISA_SYNC();
    const char* name = variant == 0 ? "cp.async.mbarrier.arrive.noinc" : "cp.async.mbarrier.arrive + mbarrier.arrive";
    const auto o = out.host();
    const auto d = done.host();
    for (int t = 0; t < n; ++t) {
      CHECK_MESSAGE(d[t] == 1u, name, ": thread ", t, ": the phase did not complete");
      const int u = (t + 5) % n, size = 4 << (u % 3);
      for (int i = 0; i < 16; ++i) {
        const uint8_t want = i < size ? src[16 * u + i] : uint8_t(0xAB);
        CHECK_MESSAGE(o[16 * t + i] == want, name, ": thread ", t, " reads slot ", u, " byte ", i, ": ", hex(o[16 * t + i]),
                      ", want ", hex(want));
      }
    }
  }
}

// CUDA Driver API, cuTensorMapEncodeTiled: "The parameters passed are bound to the following
// requirements" - tensorRank "must be non-zero and less than or equal to the maximum supported
// dimensionality of 5"; globalAddress "must be 16 byte aligned"; globalStrides "must be a multiple of
// 16 and less than 2^40"; boxDim "must be non-zero and less than or equal to 256" and, with
// CU_TENSOR_MAP_INTERLEAVE_NONE, boxDim[0] * elementSize "must be a multiple of 16 bytes";
// elementStrides "must be non-zero and less than or equal to 8"; with a swizzle, "the bounding box inner
// dimension ... must be less than or equal to the swizzle size". Violations return
// CUDA_ERROR_INVALID_VALUE.
TEST_CASE("cuTensorMapEncodeTiled through cudaGetDriverEntryPointByVersion: argument validation") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const auto encode_fn = tensor_map_encoder();
  buffer<uint8_t> mem(1 << 20);
  struct args {
    CUtensorMapDataType type = CU_TENSOR_MAP_DATA_TYPE_UINT32;
    cuuint32_t rank = 2;
    uint8_t* address = nullptr;
    cuuint64_t dims[6] = {64, 32, 4, 4, 4, 2};
    cuuint64_t strides[5] = {256, 8192, 32768, 131072, 524288};
    cuuint32_t box[6] = {16, 8, 2, 2, 2, 1};
    cuuint32_t estr[6] = {1, 1, 1, 1, 1, 1};
    CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_NONE;
  };
  auto encode = [&](const args& a) {
    CUtensorMap map{};
    return encode_fn(&map, a.type, a.rank, a.address, a.dims, a.strides, a.box, a.estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     a.swizzle, CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  };
  const args base = [&] {
    args a;
    a.address = mem.get();
    return a;
  }();
  auto with = [&](auto change) {
    args a = base;
    change(a);
    return encode(a);
  };
  auto u16 = [&](CUtensorMapSwizzle sw, cuuint32_t box0) {  // 16-bit elements, 256 x 32, rows of 512 bytes
    return with([&](args& a) {
      a.type = CU_TENSOR_MAP_DATA_TYPE_UINT16, a.dims[0] = 256, a.strides[0] = 512, a.box[0] = box0, a.swizzle = sw;
    });
  };
  const CUresult ok = CUDA_SUCCESS, invalid = CUDA_ERROR_INVALID_VALUE;

  CHECK(encode(base) == ok);                                             // rank 2, 16 x 8 box of u32
  CHECK(with([](args& a) { a.rank = 1; }) == ok);                        // rank 1: no strides
  CHECK(with([](args& a) { a.rank = 5; }) == ok);                        // rank 5
  CHECK(with([](args& a) { a.rank = 0; }) == invalid);                   // rank 0
  CHECK(with([](args& a) { a.rank = 6; }) == invalid);                   // rank 6 > 5
  CHECK(with([&](args& a) { a.address = mem.get() + 8; }) == invalid);   // address not 16-byte aligned
  CHECK(with([&](args& a) { a.address = mem.get() + 16; }) == ok);       // 16-byte aligned suffices
  CHECK(with([](args& a) { a.strides[0] = 264; }) == invalid);           // stride not a multiple of 16
  CHECK(with([](args& a) { a.strides[0] = 272; }) == ok);                // padded rows, multiple of 16
  CHECK(with([](args& a) { a.rank = 3, a.strides[1] = 8200; }) == invalid);  // an outer stride not a multiple of 16
  CHECK(with([](args& a) { a.box[1] = 0; }) == invalid);                 // boxDim 0
  CHECK(with([](args& a) { a.box[1] = 257; }) == invalid);               // boxDim > 256
  CHECK(with([](args& a) { a.dims[1] = 300, a.box[1] = 256; }) == ok);   // boxDim 256
  CHECK(with([](args& a) { a.box[0] = 6; }) == invalid);                 // 6 x 4 = 24 bytes, not a multiple of 16
  CHECK(with([](args& a) { a.box[0] = 4; }) == ok);                      // 16 bytes
  CHECK(with([](args& a) { a.estr[1] = 0; }) == invalid);                // elementStrides 0
  CHECK(with([](args& a) { a.estr[1] = 9; }) == invalid);                // elementStrides > 8
  CHECK(with([](args& a) { a.estr[1] = 8; }) == ok);                     // elementStrides 8
  CHECK(u16(CU_TENSOR_MAP_SWIZZLE_NONE, 128) == ok);                     // 256-byte inner box, no swizzle
  CHECK(u16(CU_TENSOR_MAP_SWIZZLE_32B, 32) == invalid);                  // 64 bytes > 32
  CHECK(u16(CU_TENSOR_MAP_SWIZZLE_32B, 16) == ok);                       // 32 bytes
  CHECK(u16(CU_TENSOR_MAP_SWIZZLE_64B, 64) == invalid);                  // 128 bytes > 64
  CHECK(u16(CU_TENSOR_MAP_SWIZZLE_64B, 32) == ok);                       // 64 bytes
  CHECK(u16(CU_TENSOR_MAP_SWIZZLE_128B, 128) == invalid);                // 256 bytes > 128
  CHECK(u16(CU_TENSOR_MAP_SWIZZLE_128B, 64) == ok);                      // 128 bytes
}

// Tiled mode (ISA 5.5 "Tensors"): the bounding box starts at the tensor coordinates and may cross the
// tensor's edges; "Elements in the Bounding Box which fall outside of the tensor boundary are set to
// 0" (zero fill, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE). Without swizzle the box lands densely in shared
// memory, dimension 0 fastest. The copy signals complete-tx of the box's full size, out-of-bound
// elements included, so a barrier expecting exactly that many bytes completes.
TEST_CASE("cp.async.bulk.tensor.1d-5d tile: box across the tensor edges, zero fill, dense shared layout, complete_tx bytes") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const tile_case cases[] = {
      {1, {20}, {}, {32}, {-8}},
      {2, {10, 7}, {48}, {16, 4}, {-4, 5}},
      {3, {6, 5, 4}, {32, 176}, {8, 4, 3}, {-1, 3, -1}},
      {4, {5, 3, 4, 3}, {32, 96, 384}, {4, 4, 2, 2}, {2, -2, 3, 1}},
      {5, {4, 3, 2, 3, 2}, {16, 48, 96, 288}, {8, 2, 2, 2, 2}, {-2, 2, -1, 2, 1}},
  };
  for (const tile_case& tc : cases) check_tile_copy(tc);
}

// "The default load mode is .tile": the 2d copy without a load mode lands the box as a tile copy does.
TEST_CASE("cp.async.bulk.tensor.2d without a load mode: the default .tile") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  check_tile_copy({2, {10, 7}, {48}, {16, 4}, {-4, 5}}, true);
}

// CUTLASS (4.3.4 and later) clears bit 21 of the opaque map's second 64-bit word after
// cuTensorMapEncodeTiled (a workaround for drivers ≤ 13.1 and tensors under 128 KiB). A copy
// through such a map must still read the tensor: here one at an address with bit 21 set, in an
// allocation whose every 32-bit word holds its own index, so reading anywhere else shows.
// Emulator only: on a GPU the bit's meaning belongs to the driver.
TEST_CASE("cp.async.bulk.tensor through a map whose bit 21 of word 1 public code cleared (CUTLASS's workaround)") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  if (!isa::emulated()) {
    MESSAGE("skipped: the map's private layout is the emulator's (on a GPU the bit belongs to the driver)");
    return;
  }
  const auto encode_fn = tensor_map_encoder();
  constexpr size_t words = size_t(3) << 20;  // 12 MiB: a 2 MiB-aligned window with bit 21 set lies inside
  std::vector<uint32_t> host(words);
  for (size_t i = 0; i < words; ++i) host[i] = uint32_t(i);
  buffer<uint32_t> dg(host);
  const uintptr_t base = reinterpret_cast<uintptr_t>(dg.get());
  const uintptr_t start = ((base + (uintptr_t(1) << 21)) | (uintptr_t(1) << 21)) & ~((uintptr_t(1) << 21) - 1);
  const size_t first = (start - base) / 4;  // the tensor's first word, at an address with bit 21 set
  REQUIRE((start >> 21 & 1) == 1);
  REQUIRE(first + 64 <= words);
  CUtensorMap map{};
  const cuuint64_t dims[1] = {64};
  const cuuint32_t box[1] = {32}, estr[1] = {1};
  REQUIRE(encode_fn(&map, CU_TENSOR_MAP_DATA_TYPE_UINT32, 1, reinterpret_cast<void*>(start), dims, nullptr, box, estr,
                    CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS);
  uint64_t word[16];
  std::memcpy(word, &map, sizeof word);
  word[1] &= ~(uint64_t(1) << 21);  // what CUTLASS does
  std::memcpy(&map, word, sizeof word);
  tensor_coords at{};
  at.c[0] = 8;
  std::vector<uint8_t> out;
  std::vector<uint32_t> info;
  run_tma(1, map, at, 32 * 4, out, info);
  CHECK(info[1] == 1u);
  for (int i = 0; i < 32; ++i) {
    uint32_t v;
    std::memcpy(&v, &out[size_t(i) * 4], 4);
    CHECK_MESSAGE(v == uint32_t(first + 8 + size_t(i)), "element ", i);
  }
}

// ISA 5.5 "Swizzling Modes": with the destination 1024-byte aligned, the 16-byte chunk that would land
// at shared address A without swizzle lands at A with bits [4, 4+b) XORed with bits [7, 7+b):
// b = 1 (32B: the pattern repeats every 256 bytes), 2 (64B, 512 bytes), 3 (128B, 1024 bytes). The box's
// inner dimension equals the swizzle span. 16-bit elements, value (x + 1) | (y + 1) << 8.
TEST_CASE("cp.async.bulk.tensor.2d tile with swizzle none/32B/64B/128B: the 16-byte chunk XOR pattern") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const auto encode_fn = tensor_map_encoder();
  const int W = 96, H = 40;  // tensor 96 x 40, rows of 192 bytes
  std::vector<uint8_t> g(size_t(W) * H * 2);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) g[(y * W + x) * 2] = uint8_t(x + 1), g[(y * W + x) * 2 + 1] = uint8_t(y + 1);
  buffer<uint8_t> dg(g);
  struct swz_case {
    CUtensorMapSwizzle swizzle;
    int bits;
    cuuint32_t box0;
    int x0, y0;
  };
  const swz_case cases[] = {
      {CU_TENSOR_MAP_SWIZZLE_NONE, 0, 64, 40, -3},  // 128-byte rows, no swizzle; x 96..103 and y < 0 outside
      {CU_TENSOR_MAP_SWIZZLE_32B, 1, 16, 88, 3},    // 32-byte rows; the second chunk of each row outside
      {CU_TENSOR_MAP_SWIZZLE_64B, 2, 32, 72, 30},   // 64-byte rows; last chunk and rows 40..45 outside
      {CU_TENSOR_MAP_SWIZZLE_128B, 3, 64, 40, -3},  // 128-byte rows
  };
  const int rows = 16;
  for (const swz_case& sc : cases) {
    CUtensorMap map{};
    const cuuint64_t dims[2] = {cuuint64_t(W), cuuint64_t(H)}, strides[1] = {cuuint64_t(W) * 2};
    const cuuint32_t box[2] = {sc.box0, cuuint32_t(rows)}, estr[2] = {1, 1};
    REQUIRE(encode_fn(&map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 2, dg.get(), dims, strides, box, estr,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, sc.swizzle, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS);
    const uint32_t bytes = sc.box0 * 2 * rows;
    std::vector<uint8_t> dense(bytes);
    for (int i1 = 0; i1 < rows; ++i1)
      for (int i0 = 0; i0 < int(sc.box0); ++i0) {
        const int x = sc.x0 + i0, y = sc.y0 + i1;
        const bool inside = x >= 0 && x < W && y >= 0 && y < H;
        const size_t o = (size_t(i1) * sc.box0 + i0) * 2;
        dense[o] = inside ? uint8_t(x + 1) : 0, dense[o + 1] = inside ? uint8_t(y + 1) : 0;
      }
    std::vector<uint8_t> want(kTmaBuffer, 0xCD);
    for (size_t o = 0; o < bytes; ++o) want[swizzle(o, sc.bits)] = dense[o];
    tensor_coords at{};
    at.c[0] = sc.x0, at.c[1] = sc.y0;
    std::vector<uint8_t> out;
    std::vector<uint32_t> info;
    run_tma(2, map, at, bytes, out, info);
    const std::string name = sc.bits == 0 ? std::string("no swizzle") : "swizzle " + std::to_string(16 << sc.bits) + "B";
    REQUIRE_MESSAGE(info[0] % 1024 == 0, name, ": destination at shared address ", info[0], ", not 1024-byte aligned");
    CHECK_MESSAGE(info[1] == 1u, name, ": the barrier expecting ", bytes, " bytes did not complete");
    int bad = 0;
    for (int i = 0; i < kTmaBuffer; ++i)
      if (out[i] != want[i] && ++bad <= 8)
        CHECK_MESSAGE(false, name, ": shared byte ", i, " = ", hex(out[i]), ", want ", hex(want[i]));
    CHECK_MESSAGE(bad == 0, name, ": ", bad, " wrong shared-memory bytes");
  }
}

// A[m][k] is m + 1 at k = 2 (m % 8) and 64 at k = 2 ((m / 8) % 8) + 1, else 0; B[k][n] is 1 for even k
// and n + 1 for odd k. So D[m][n] = (m + 1) + 64 (n + 1), distinct for every (m, n) and exact in f32:
// each register of each thread names the element it holds. scale-d = 0 with a NaN accumulator: "D =
// A*B" ignores the input accumulator.
TEST_CASE("wgmma.mma_async m64nNk16 .f32.bf16/.f16, N = 8/64/128/256: accumulator fragment layout") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  for (int n : {8, 64, 128, 256}) {
    gmma_problem p{n, std::vector<int>(64 * 16, 0), std::vector<int>(16 * n), std::vector<float>(64 * n, isa::as_f32(0x7fc00000u))};
    for (int m = 0; m < 64; ++m) p.a[m * 16 + 2 * (m % 8)] = m + 1, p.a[m * 16 + 2 * ((m / 8) % 8) + 1] = 64;
    for (int k = 0; k < 16; ++k)
      for (int col = 0; col < n; ++col) p.b[k * n + col] = k % 2 == 0 ? 1 : col + 1;
    // Hand-worked: thread 37 (warp 1, lane 5: g = 1, q = 1) register d6 (i = 1, j = 2) holds row
    // 16 + 1 + 8 = 25, column 8 + 2 + 0 = 10: D = 26 + 64 * 11 = 730.
    int row, col;
    d_element(37, 6, row, col);
    CHECK(row == 25);
    CHECK(col == 10);
    for (bool bf16 : {true, false})
      check_wgmma("layout", p, gmma_run{bf16, 1, 1, false, gmma_mode::none, gmma_mode::none, 0, 0});
  }
}

TEST_CASE("wgmma.mma_async m64nNk16 .f32.bf16/.f16: random A and B, scale-d 0 and 1, imm-scale-a/-b = -1") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  struct scales {
    int sa, sb;
    bool sd;
  };
  const scales variants[] = {{1, 1, true}, {1, 1, false}, {-1, 1, true}, {1, -1, true}, {-1, -1, true}};
  for (int n : {8, 64, 128, 256})
    for (bool bf16 : {true, false})
      for (const scales& s : variants) {
        const gmma_problem p = random_problem(n, !s.sd);  // scale-d 0: a NaN accumulator must not matter
        check_wgmma("random", p, gmma_run{bf16, s.sa, s.sb, s.sd, gmma_mode::none, gmma_mode::none, 0, 0});
      }
}

// K-major swizzled canonical layouts (9.7.15.5.1.2.1.3) with the descriptor's swizzle mode (bits 62-63:
// 1 = 128B, 2 = 64B, 3 = 32B), SBO = 8 rows of the swizzle span, base offset 0 on 1024-byte aligned
// tiles. Every K-slice of a 64B or 128B row (start address advanced by 32 bytes per slice), and A and
// B in different modes.
TEST_CASE("wgmma.mma_async m64nNk16 .f32.bf16/.f16: K-major 32B/64B/128B swizzled operands, K slices, mixed modes") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const gmma_mode swizzled[] = {gmma_mode::sw32, gmma_mode::sw64, gmma_mode::sw128};
  for (int n : {64, 256})
    for (bool bf16 : {true, false})
      for (gmma_mode m : swizzled)
        for (int slice = 0; slice < swizzle_span(m) / 32; ++slice) {
          const gmma_problem p = random_problem(n, false);
          check_wgmma("swizzle", p, gmma_run{bf16, 1, 1, true, m, m, slice, slice});
        }
  const gmma_mode all[] = {gmma_mode::none, gmma_mode::sw32, gmma_mode::sw64, gmma_mode::sw128};
  for (gmma_mode ma : all)
    for (gmma_mode mb : all) {
      if (ma == mb) continue;
      const gmma_problem p = random_problem(64, false);
      check_wgmma("mixed", p, gmma_run{true, 1, 1, true, ma, mb, last_slice(ma), last_slice(mb)});
    }
}

TEST_CASE("wgmma.mma_async m64nNk16 .f32.bf16/.f16: MN-major (imm-trans 1) 32B/64B/128B swizzled A and B, mixed with K-major") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const gmma_mode swizzled[] = {gmma_mode::sw32, gmma_mode::sw64, gmma_mode::sw128};
  for (int n : {8, 64, 256})
    for (bool bf16 : {true, false})
      for (gmma_mode m : swizzled) {
        const gmma_problem p = random_problem(n, false);
        gmma_run run{bf16, 1, 1, true, m, m, 0, 0, false, true};
        check_wgmma("MN-major B", p, run);
        run.trans_a = true;
        check_wgmma("MN-major A and B", p, run);
        run.trans_b = false;
        run.mode_b = gmma_mode::sw128;
        check_wgmma("MN-major A", p, run);
      }
}

// fp8 products (m64n16k32, 9.7.15.5.1.1 "Register Fragments" of A for m64nNk32, the accumulator layout of
// m64nNk16), each element of A and B at most 3 significant bits so that D is exact: every register of
// every thread against the double-precision product. scale-d 0 with a NaN accumulator; imm-scale -1.
TEST_CASE("wgmma.mma_async m64n16k32 .f32.{e4m3,e5m2}.{e4m3,e5m2}: A from shared memory or registers, scale-d, imm-scale-a/-b") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  // The fragment formula, worked by hand: thread 37 (warp 1, lane 5: g = 1, q = 1), a14 (register 3,
  // byte 2) is row 16 + 1 + 8 = 25, column 4 + 2 + 16 = 22.
  {
    wg16_problem one{std::vector<double>(64 * 32, 0.0), {}, {}};
    one.a[25 * 32 + 22] = 6;  // e4m3 0x4c
    const std::vector<uint32_t> regs = a_fragments(one, elem::e4m3);
    CHECK(regs[37 * 4 + 3] == 0x4cu << 16);
    int nonzero = 0;
    for (uint32_t r : regs) nonzero += r != 0;
    CHECK(nonzero == 1);
  }
  for (bool sd : {true, false}) {
    const wg16_problem p = fp8_problem(!sd);  // scale-d 0: the NaN accumulator must not matter
    const wg16_run run{1, 1, sd, gmma_mode::none, gmma_mode::none, 0, 0};
    wgmma16_case<wg16::ss_f32_e4m3_e4m3>("random", p, run);
    wgmma16_case<wg16::ss_f32_e5m2_e5m2>("random", p, run);
    wgmma16_case<wg16::ss_f32_e4m3_e5m2>("random", p, run);
    wgmma16_case<wg16::ss_f32_e5m2_e4m3>("random", p, run);
    wgmma16_case<wg16::rs_f32_e4m3_e4m3>("random", p, run);
  }
  const wg16_problem p = fp8_problem(false);
  const wg16_run run{1, 1, true, gmma_mode::none, gmma_mode::none, 0, 0};
  wgmma16_case<wg16::ss_f32_e4m3_e4m3, -1, 1>("negated", p, run);
  wgmma16_case<wg16::ss_f32_e4m3_e4m3, 1, -1>("negated", p, run);
  wgmma16_case<wg16::ss_f32_e4m3_e4m3, -1, -1>("negated", p, run);
  wgmma16_case<wg16::rs_f32_e4m3_e4m3, -1, 1>("negated", p, run);
}

// The canonical K-major layouts hold 32 bytes of K per row whatever the element size: fp8 operands in
// every swizzle mode and K-slice, and A and B in different modes.
TEST_CASE("wgmma.mma_async m64n16k32 .f32.{e4m3,e5m2}: K-major 32B/64B/128B swizzled operands, K slices, mixed modes") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const gmma_mode swizzled[] = {gmma_mode::sw32, gmma_mode::sw64, gmma_mode::sw128};
  for (gmma_mode m : swizzled)
    for (int slice = 0; slice < swizzle_span(m) / 32; ++slice)
      wgmma16_case<wg16::ss_f32_e4m3_e5m2>("swizzle", fp8_problem(false), wg16_run{1, 1, true, m, m, slice, slice});
  const gmma_mode all[] = {gmma_mode::none, gmma_mode::sw32, gmma_mode::sw64, gmma_mode::sw128};
  for (gmma_mode ma : all)
    for (gmma_mode mb : all)
      if (ma != mb)
        wgmma16_case<wg16::ss_f32_e5m2_e4m3>("mixed", fp8_problem(false),
                                             wg16_run{1, 1, true, ma, mb, last_slice(ma), last_slice(mb)});
}

// Special and extreme operands, worked by hand. Each row's products span few binades, so D is exact
// however the tensor core aligns them.
TEST_CASE("wgmma.mma_async m64n16k32: NaN and infinite operands, subnormal and MAX_NORM products, worked by hand") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const auto at = [](const std::vector<uint32_t>& d, int row, int col) { return isa::as_f32(d[size_t(row * 16 + col)]); };
  // e5m2 x e5m2, scale-d 0 with a NaN accumulator. B is 1 except B[1][n] = 2^-14 (the smallest normal),
  // B[7][n] = n % 2 and B[8][n] = 57344 (MAX_NORM).
  //   row 0: A[0][0] = NaN                          -> NaN
  //   row 1: A[1][3] = +inf                         -> +inf
  //   row 2: A[2][3] = +inf, A[2][4] = -inf         -> inf - inf = NaN
  //   row 3: A[3][5] = -inf                         -> -inf
  //   row 4: A[4][0] = 2^-16 (the smallest subnormal) -> 2^-16
  //   row 5: A[5][1] = 57344                        -> 57344·2^-14 = 3.5
  //   row 6: A[6][7] = +inf                         -> inf·0 = NaN in even columns, +inf in odd ones
  //   row 8: A[8][8] = 57344                        -> 57344² = 49·2^26
  //   row 9: A[9][0] = 3·2^-16 (the largest subnormal), A[9][2] = 2^-14 -> 7·2^-16
  //   other rows: A = 0                             -> 0
  wg16_problem p{std::vector<double>(64 * 32, 0.0), std::vector<double>(32 * 16, 1.0), std::vector<double>(64 * 16, NAN)};
  for (int n = 0; n < 16; ++n)
    p.b[size_t(16 + n)] = std::ldexp(1.0, -14), p.b[size_t(7 * 16 + n)] = n % 2, p.b[size_t(8 * 16 + n)] = 57344;
  p.a[0] = NAN;
  p.a[32 + 3] = INFINITY;
  p.a[64 + 3] = INFINITY, p.a[64 + 4] = -INFINITY;
  p.a[96 + 5] = -INFINITY;
  p.a[128] = std::ldexp(1.0, -16);
  p.a[160 + 1] = 57344;
  p.a[192 + 7] = INFINITY;
  p.a[256 + 8] = 57344;
  p.a[288] = 3 * std::ldexp(1.0, -16), p.a[288 + 2] = std::ldexp(1.0, -14);
  const wg16_run no_c{1, 1, false, gmma_mode::none, gmma_mode::none, 0, 0};
  const std::vector<uint32_t> d = wgmma16_case<wg16::ss_f32_e5m2_e5m2>("special", p, no_c);
  for (int n = 0; n < 16; ++n) {
    CHECK(std::isnan(at(d, 0, n)));
    CHECK(at(d, 1, n) == INFINITY);
    CHECK(std::isnan(at(d, 2, n)));
    CHECK(at(d, 3, n) == -INFINITY);
    CHECK(at(d, 4, n) == std::ldexp(1.0f, -16));
    CHECK(at(d, 5, n) == 3.5f);
    CHECK((n % 2 ? at(d, 6, n) == INFINITY : std::isnan(at(d, 6, n))));
    CHECK(at(d, 7, n) == 0.0f);
    CHECK(at(d, 8, n) == 3288334336.0f);
    CHECK(at(d, 9, n) == 7 * std::ldexp(1.0f, -16));
  }
  // imm-scale-a -1 negates A: row 1 -inf, row 3 +inf, row 5 -3.5.
  const std::vector<uint32_t> neg = wgmma16_case<wg16::ss_f32_e5m2_e5m2, -1, 1>("special", p, no_c);
  CHECK(at(neg, 1, 0) == -INFINITY);
  CHECK(at(neg, 3, 0) == INFINITY);
  CHECK(at(neg, 5, 9) == -3.5f);

  // e4m3 x e4m3, scale-d 1, C[m][n] = m + n/16. B is 1 except B[0][n] = 448 (MAX_NORM) and B[5][3] = NaN
  // (S.1111.111).
  //   row 0: A[0][0] = NaN                           -> NaN
  //   column 3: NaN·A[m][5] (0·NaN too)              -> NaN in every row
  //   row 1: A[1][0] = 2^-9 (the smallest subnormal), A[1][2] = 2^-6 -> 0.875 + 2^-6 + 1 + n/16
  //   row 2: A[2][0] = 7·2^-9 (the largest subnormal) -> 6.125 + 2 + n/16
  wg16_problem q{std::vector<double>(64 * 32, 0.0), std::vector<double>(32 * 16, 1.0), std::vector<double>(64 * 16)};
  for (int i = 0; i < 64 * 16; ++i) q.c[size_t(i)] = i / 16 + double(i % 16) / 16;
  for (int n = 0; n < 16; ++n) q.b[size_t(n)] = 448;
  q.b[5 * 16 + 3] = NAN;
  q.a[0] = NAN;
  q.a[32] = std::ldexp(1.0, -9), q.a[32 + 2] = std::ldexp(1.0, -6);
  q.a[64] = 7 * std::ldexp(1.0, -9);
  const wg16_run run{1, 1, true, gmma_mode::none, gmma_mode::none, 0, 0};
  const std::vector<uint32_t> e = wgmma16_case<wg16::ss_f32_e4m3_e4m3>("special", q, run);
  for (int n = 0; n < 16; ++n) {
    CHECK(std::isnan(at(e, 0, n)));
    if (n == 3) continue;
    CHECK(at(e, 1, n) == float(1.890625 + n / 16.0));
    CHECK(at(e, 2, n) == float(8.125 + n / 16.0));
    CHECK(at(e, 5, n) == float(5 + n / 16.0));
  }
  for (int m = 0; m < 64; ++m) CHECK(std::isnan(at(e, m, 3)));

  // e4m3 x e5m2, scale-d 0: B[0][n] = 57344, B[1][n] = +inf in odd columns (else 1).
  //   row 0: A[0][0] = 448 -> 448·57344 = 49·2^19 = 25690112 (exact in f32); odd columns 0·inf = NaN
  //   row 1: A[1][1] = -0.5 -> -0.5 in even columns, -inf in odd ones
  wg16_problem r{std::vector<double>(64 * 32, 0.0), std::vector<double>(32 * 16, 1.0), std::vector<double>(64 * 16, NAN)};
  for (int n = 0; n < 16; ++n) r.b[size_t(n)] = 57344, r.b[size_t(16 + n)] = n % 2 ? INFINITY : 1.0;
  r.a[0] = 448;
  r.a[32 + 1] = -0.5;
  const std::vector<uint32_t> f = wgmma16_case<wg16::ss_f32_e4m3_e5m2>("special", r, no_c);
  CHECK(at(f, 0, 0) == 25690112.0f);
  CHECK(std::isnan(at(f, 0, 1)));
  CHECK(at(f, 1, 6) == -0.5f);
  CHECK(at(f, 1, 7) == -INFINITY);
}

// .f16 accumulators (e4m3 from shared memory, e5m2 x e4m3 with A from registers, f16 x f16) and A from
// registers for bf16 ("Register Fragments" of m64nNk16): small integers, every sum exact in f16.
// D's .f16x2 registers hold elements 2r and 2r + 1 of the .f32 layout, the lower in the low half.
TEST_CASE("wgmma.mma_async m64n16 .f16 accumulators (e4m3, e5m2 x e4m3, f16) and A from registers (e4m3, bf16)") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  for (bool sd : {true, false}) {
    const wg16_run run{1, 1, sd, gmma_mode::none, gmma_mode::none, 0, 0};
    wgmma16_case<wg16::ss_f16_e4m3_e4m3>("integers", integer_problem(32), run);
    wgmma16_case<wg16::rs_f16_e5m2_e4m3>("integers", integer_problem(32), run);
    wgmma16_case<wg16::ss_f16_f16_f16>("integers", integer_problem(16), run);
    wgmma16_case<wg16::rs_f32_bf16_bf16>("integers", integer_problem(16), run);
  }
  const wg16_run run{1, 1, true, gmma_mode::sw128, gmma_mode::sw64, 0, 1};
  wgmma16_case<wg16::rs_f16_e5m2_e4m3, -1, 1>("negated", integer_problem(32), run);
  wgmma16_case<wg16::rs_f32_bf16_bf16, 1, -1>("negated", integer_problem(16), run);
}

// "elect.sync elects one predicated active leader thread from among a set of threads specified by
// membermask. laneid of the elected thread is returned in the 32-bit destination operand d ... The
// predicate destination p is set to True for the leader thread, and False for all other threads ...
// Election of a leader thread happens deterministically". The leader is the lowest-numbered lane of
// the mask (what the hardware elects; the ISA itself only promises determinism).
TEST_CASE("elect.sync: one leader per mask, every member gets its laneid, full and partial masks") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  const std::vector<uint32_t> masks = {0xFFFFFFFFu, 0xF0F0F0F0u, 0x80000000u, 0x00010100u, 0x7FFFFFFEu};
  buffer<uint32_t> dm(masks), out(masks.size() * 32 * 4);
  k_elect<<<1, unsigned(masks.size() * 32)>>>(dm.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (size_t w = 0; w < masks.size(); ++w) {
    const uint32_t mask = masks[w];
    int lowest = 0;
    while (!((mask >> lowest) & 1u)) ++lowest;
    int leaders = 0;
    for (int lane = 0; lane < 32; ++lane) {
      const uint32_t* r = &o[(w * 32 + lane) * 4];
      if (!((mask >> lane) & 1u)) {
        CHECK_MESSAGE((r[0] == 0xEEEEEEEEu && r[1] == 2u), "mask ", hex(mask), " lane ", lane, " outside the mask changed");
        continue;
      }
      leaders += r[1] == 1u ? 1 : 0;
      CHECK_MESSAGE(r[1] <= 1u, "mask ", hex(mask), " lane ", lane, ": predicate ", r[1]);
      CHECK_MESSAGE(r[0] < 32u, "mask ", hex(mask), " lane ", lane, ": leader ", r[0], " is not a lane id");
      CHECK_MESSAGE(((r[0] < 32u) && ((mask >> r[0]) & 1u)), "mask ", hex(mask), " lane ", lane, ": leader ", r[0], " outside the mask");
      CHECK_MESSAGE(r[1] == (r[0] == uint32_t(lane) ? 1u : 0u), "mask ", hex(mask), " lane ", lane, ": leader ", r[0],
                    " but predicate ", r[1]);
      CHECK_MESSAGE(r[0] == uint32_t(lowest), "mask ", hex(mask), " lane ", lane, ": leader ", r[0], ", want the lowest lane ", lowest);
      CHECK_MESSAGE((r[2] == r[0] && r[3] == r[1]), "mask ", hex(mask), " lane ", lane, ": second election gave ", r[2], "/", r[3]);
    }
    CHECK_MESSAGE(leaders == 1, "mask ", hex(mask), ": ", leaders, " lanes got true");
  }
}

// "Get address in the CTA specified by operand b which corresponds to the address specified by
// operand a" (mapa); a launch without cluster dimensions runs each block as a cluster of one CTA
// (%cluster_nctarank 1, %cluster_ctarank 0), so rank 0 is the CTA itself and every form maps an
// address to itself.
TEST_CASE("mapa.shared::cluster and mapa (generic) to rank 0 of a cluster of one CTA: the address itself") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  buffer<uint32_t> out(8 * 32);
  k_mapa<<<1, 32>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  const char* what[8] = {"%cluster_ctarank", "%cluster_nctarank", "register, rank 0", "register, rank %cluster_ctarank",
                         "variable", "variable+8", "generic", "the store through the mapped address"};
  for (uint32_t t = 0; t < 32; ++t) {
    const uint32_t want[8] = {0, 1, 1, 1, 1, 1, 1, 100 + t};
    for (int k = 0; k < 8; ++k) CHECK_MESSAGE(o[8 * t + k] == want[k], "thread ", t, ": ", what[k]);
  }
}

TEST_CASE("griddepcontrol.wait and .launch_dependents: a dependent launch that waits before it reads its primary's output") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_SM90();
  std::vector<uint32_t> constants(32);
  for (uint32_t i = 0; i < 32; ++i) constants[i] = 1000 * i;
  buffer<uint32_t> constant(constants), produced(32), out(32);
  cudaStream_t stream;
  ISA_CUDA(cudaStreamCreate(&stream));
  const auto check = [&](const char* how) {
    const auto o = out.host();
    for (uint32_t i = 0; i < 32; ++i) CHECK_MESSAGE(o[i] == 1000 * i + 3 * i + 1, how, ": thread ", i);
  };
  for (bool programmatic : {true, false}) {  // a correct program runs either way
    k_pdl_primary<<<1, 32, 0, stream>>>(produced.get());
    ISA_CUDA(launch_secondary(programmatic, stream, constant.get(), produced.get(), out.get()));
    ISA_CUDA(cudaStreamSynchronize(stream));
    check(programmatic ? "eager, programmatic" : "eager, plain");
  }
  // Captured into a graph (the programmatic edge is kept) and replayed.
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ISA_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  k_pdl_primary<<<1, 32, 0, stream>>>(produced.get());
  ISA_CUDA(launch_secondary(true, stream, constant.get(), produced.get(), out.get()));
  ISA_CUDA(cudaStreamEndCapture(stream, &graph));
  ISA_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  ISA_CUDA(cudaMemset(out.get(), 0, out.bytes()));
  ISA_CUDA(cudaGraphLaunch(exec, stream));
  ISA_CUDA(cudaStreamSynchronize(stream));
  check("graph replay");
  ISA_CUDA(cudaGraphExecDestroy(exec));
  ISA_CUDA(cudaGraphDestroy(graph));
  ISA_CUDA(cudaStreamDestroy(stream));
}

}  // TEST_SUITE
