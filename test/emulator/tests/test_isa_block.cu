// PTX block-level synchronization (ISA 9.7.13.1 "bar, barrier") and memory fences (ISA 9.7.13.4
// "membar/fence") against the ISA: bar.sync / barrier.sync with and without a thread count,
// bar.arrive producer/consumer with barrier reuse, bar.red.popc/and/or, non-.aligned barriers
// reached from different instructions, exited threads, and per-CTA shared memory.
#include "isa_test.cuh"

#include <cstdint>
#include <vector>

namespace {

using isa::buffer;

// 128 threads, bar.sync 0: every thread sees every other thread's store.
__global__ void k_bar_sync(uint32_t* out) {
  __shared__ uint32_t sh[128];
  const int t = threadIdx.x;
  sh[t] = 7u * t + blockIdx.x * 1000u;  // distinct per block: shared memory is per CTA
  asm volatile("bar.sync 0;" ::: "memory");
  out[blockIdx.x * 128 + t] = sh[127 - t];
}

// "Operand b specifies the number of threads participating in the barrier": warps 0-1 meet at
// barrier 1 (64 threads), warps 2-3 at barrier 2 (64 threads), independently.
__global__ void k_bar_count(uint32_t* out) {
  __shared__ uint32_t sh[128];
  const int t = threadIdx.x, warp = t / 32;
  sh[t] = 3u * t + 1;
  if (warp < 2) {
    asm volatile("bar.sync 1, 64;" ::: "memory");
  } else {
    asm volatile("barrier.sync 2, 64;" ::: "memory");
  }
  out[t] = sh[t ^ 32];  // the other warp of the pair
}

// Producer/consumer from the ISA's example: warp 0 produces into shared memory, announces with
// bar.arrive 0,64 and waits at bar.sync 1,64 for the consumer; warp 1 waits at bar.sync 0,64,
// consumes and announces with bar.arrive 1,64. Three rounds reuse both barriers ("When a barrier
// completes ... the barrier is reinitialized so that it can be immediately reused").
__global__ void k_producer_consumer(uint32_t* out) {
  __shared__ uint32_t slot[32];
  const int t = threadIdx.x, lane = t % 32;
  for (int round = 0; round < 3; ++round) {
    if (t < 32) {
      slot[lane] = 100u * round + lane;
      asm volatile("bar.arrive 0, 64;" ::: "memory");
      asm volatile("bar.sync 1, 64;" ::: "memory");
    } else {
      asm volatile("bar.sync 0, 64;" ::: "memory");
      out[round * 32 + lane] = slot[31 - lane];
      asm volatile("bar.arrive 1, 64;" ::: "memory");
    }
  }
}

// bar.red: "The result of .popc is the number of threads with a True predicate, while .and and
// .or indicate if all the threads had a True predicate or if any of the threads had a True
// predicate." out[t * 8 + k].
__global__ void k_bar_red(uint32_t* out) {
  const int t = threadIdx.x;
  uint32_t popc, npopc, and_t, and_f, or_t, or_f, popc_reg, cnt = 0;
  asm volatile(
      "{\n\t.reg .pred p, r;\n\t"
      "setp.eq.u32 p, %7, 0;\n\t"  // p = (t % 3 == 0)
      "bar.red.popc.u32 %0, 0, p;\n\t"
      "bar.red.popc.u32 %1, 0, !p;\n\t"
      "setp.lt.u32 p, %8, 96;\n\t"
      "bar.red.and.pred r, 0, p;\n\t selp.u32 %2, 1, 0, r;\n\t"
      "setp.ne.u32 p, %8, 50;\n\t"
      "bar.red.and.pred r, 0, p;\n\t selp.u32 %3, 1, 0, r;\n\t"
      "setp.eq.u32 p, %8, 77;\n\t"
      "bar.red.or.pred r, 0, p;\n\t selp.u32 %4, 1, 0, r;\n\t"
      "setp.gt.u32 p, %8, 1000;\n\t"
      "bar.red.or.pred r, 0, p;\n\t selp.u32 %5, 1, 0, r;\n\t"
      "setp.lt.u32 p, %8, 10;\n\t"
      "barrier.red.popc.u32 %6, %9, p;\n\t}"  // barrier number in a register
      : "=r"(popc), "=r"(npopc), "=r"(and_t), "=r"(and_f), "=r"(or_t), "=r"(or_f), "=r"(popc_reg)
      : "r"(uint32_t(t % 3)), "r"(uint32_t(t)), "r"(5u));
  // With a thread count: warps 0-1 reduce over 64 threads on barrier 3; warp 2 does not take part.
  if (t < 64)
    asm volatile("{\n\t.reg .pred p;\n\t setp.lt.u32 p, %1, 40;\n\t bar.red.popc.u32 %0, 3, 64, p;\n\t}" : "=r"(cnt) : "r"(uint32_t(t)));
  uint32_t* o = out + t * 8;
  o[0] = popc, o[1] = npopc, o[2] = and_t, o[3] = and_f, o[4] = or_t, o[5] = or_f, o[6] = popc_reg, o[7] = cnt;
}

// Without .aligned, threads may reach the barrier at different barrier instructions ("When
// specified, [.aligned] indicates that all threads in CTA will execute the same barrier
// instruction"): warps split across two sites, and lanes of one warp split across two sites.
__global__ void k_barrier_divergent_sites(uint32_t* out) {
  __shared__ uint32_t sh[64];
  const int t = threadIdx.x;
  sh[t] = 11u * t;
  if (t < 32) {
    asm volatile("barrier.sync 0;" ::: "memory");
  } else {
    asm volatile("barrier.cta.sync 0;" ::: "memory");  // .cta "doesn't change the semantics"
  }
  const uint32_t first = sh[63 - t];
  asm volatile("barrier.sync 0;" ::: "memory");
  sh[t] = 13u * t;
  if (t % 32 < 16) {
    asm volatile("barrier.sync 0;" ::: "memory");
  } else {
    asm volatile("barrier.cta.sync 0;" ::: "memory");
  }
  out[t] = first + sh[t ^ 1];
}

// Exited threads do not hold a barrier back: ".sync ... causes executing thread to wait for
// non-exited threads of all other warps participating in the barrier". Warp 1 exits at once;
// warp 0 passes barrier.sync 0 (no thread count: all threads of the CTA participate).
__global__ void k_barrier_after_exit(uint32_t* out) {
  __shared__ uint32_t sh[32];
  const int t = threadIdx.x;
  if (t >= 32) return;
  sh[t] = t + 500u;
  asm volatile("barrier.sync 0;" ::: "memory");
  out[t] = sh[31 - t];
}

// The same with the aligned bar.sync (__syncthreads after an early return): ISA 9.7.13.1 exit,
// "If the exiting threads are holding up the barrier, the barrier is released".
__global__ void k_bar_sync_after_exit(uint32_t* out) {
  __shared__ uint32_t sh[32];
  const int t = threadIdx.x;
  if (t >= 32) return;
  sh[t] = t + 700u;
  asm volatile("bar.sync 0;" ::: "memory");
  out[t] = sh[31 - t];
}

// Fences accepted; a thread's own accesses stay in program order.
__global__ void k_fences(uint32_t* g, uint32_t* out) {
  __shared__ uint32_t s;
  uint32_t a, b, c, d;
  g[0] = 1;
  asm volatile("membar.cta;" ::: "memory");
  a = g[0];
  g[0] = 2;
  asm volatile("membar.gl;" ::: "memory");
  b = g[0];
  s = 3;
  asm volatile("membar.sys;" ::: "memory");
  c = s;
  g[0] = 4;
  asm volatile("fence.sc.cta;" ::: "memory");
  asm volatile("fence.acq_rel.gpu;" ::: "memory");
  asm volatile("fence.acq_rel.sys;" ::: "memory");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // the tensormap proxy fence (CUTLASS, cuda::ptx): sm_90
  asm volatile("fence.proxy.tensormap::generic.release.gpu;" ::: "memory");
#endif
  d = g[0];
  out[0] = a, out[1] = b, out[2] = c, out[3] = d;
}

// Many live values (hundreds of PTX virtual registers) under __launch_bounds__(Threads, MinBlocks):
// .maxntid Threads and .minnctapersm MinBlocks, which ptxas must honour.
template <int Threads, int MinBlocks>
__global__ void __launch_bounds__(Threads, MinBlocks) k_many_registers(const float* in, float* out) {
  float v[192];
#pragma unroll
  for (int i = 0; i < 192; ++i) v[i] = in[threadIdx.x + i * Threads];
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 192; ++i) s = fmaf(v[i], v[191 - i], s);
  out[threadIdx.x] = s;
}

}  // namespace

TEST_SUITE("emulator_isa_block") {

TEST_CASE("bar.sync 0: block-wide exchange; shared memory is per CTA") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(3 * 128);
  k_bar_sync<<<3, 128>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 128; ++t) CHECK(o[b * 128 + t] == 7u * (127 - t) + b * 1000u);
}

TEST_CASE("bar.sync / barrier.sync with a thread count: two independent 64-thread barriers") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(128);
  k_bar_count<<<1, 128>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < 128; ++t) CHECK(o[t] == 3u * (t ^ 32) + 1);
}

TEST_CASE("bar.arrive + bar.sync producer/consumer, barriers reused over three rounds") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(3 * 32);
  k_producer_consumer<<<1, 64>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int r = 0; r < 3; ++r)
    for (int l = 0; l < 32; ++l) CHECK(o[r * 32 + l] == 100u * r + (31 - l));
}

TEST_CASE("bar.red.popc / .and / .or, negated predicate, register barrier, thread count") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(96 * 8);
  k_bar_red<<<1, 96>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < 96; ++t) {
    const uint32_t* r = &o[t * 8];
    CHECK(r[0] == 32u);  // t % 3 == 0 for 32 of 96 threads
    CHECK(r[1] == 64u);
    CHECK(r[2] == 1u);
    CHECK(r[3] == 0u);
    CHECK(r[4] == 1u);
    CHECK(r[5] == 0u);
    CHECK(r[6] == 10u);
    if (t < 64) CHECK(r[7] == 40u);
  }
}

TEST_CASE("membar.cta/gl/sys, fence.sc/acq_rel (and fence.proxy.tensormap::generic on sm_90) keep program order") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> g(1), out(4);
  k_fences<<<1, 1>>>(g.get(), out.get());
  ISA_SYNC();
  CHECK(out.host() == std::vector<uint32_t>{1, 2, 3, 4});
}

}  // TEST_SUITE

// Cases the ISA defines but that an emulator check for "barrier divergence" could flag by
// mistake; ctest runs them as a separate process (emulator_isa_block_exited_or_divergent).
TEST_SUITE("emulator_isa_block_exited_or_divergent") {

TEST_CASE("barrier.sync (non-.aligned) reached from different instructions") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(64);
  k_barrier_divergent_sites<<<1, 64>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < 64; ++t) CHECK(o[t] == 11u * (63 - t) + 13u * (t ^ 1));
}

TEST_CASE("barrier.sync 0 completes when the rest of the CTA has exited") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(32);
  k_barrier_after_exit<<<1, 64>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < 32; ++t) CHECK(o[t] == uint32_t(31 - t + 500));
}

TEST_CASE("bar.sync 0 completes when the rest of the CTA has exited") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(32);
  k_bar_sync_after_exit<<<1, 64>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (int t = 0; t < 32; ++t) CHECK(o[t] == uint32_t(31 - t + 700));
}

}  // TEST_SUITE

// PTX ISA "Performance-Tuning Directives": .maxntid declares the largest block the kernel is
// launched with and .minnctapersm the blocks per SM to fit, bounds the register allocation must
// honour; so a block of 384 threads is resident (at least MinBlocks of them), and the registers
// cudaFuncGetAttributes reports fit that: 65536 / (MinBlocks · 384) per thread at most.
TEST_CASE("launch bounds: occupancy and numRegs honour .maxntid and .minnctapersm") {
  ISA_REQUIRE_DEVICE();
  const auto check = [](const void* kernel, int min_blocks) {
    CAPTURE(min_blocks);
    int blocks = 0;
    ISA_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, 384, 0));
    CHECK(blocks >= min_blocks);
    cudaFuncAttributes attributes{};
    ISA_CUDA(cudaFuncGetAttributes(&attributes, kernel));
    CHECK(attributes.numRegs >= 1);
    CHECK(attributes.numRegs <= 65536 / (min_blocks * 384));
    CHECK(attributes.maxThreadsPerBlock == 384);
  };
  check(reinterpret_cast<const void*>(&k_many_registers<384, 1>), 1);
  check(reinterpret_cast<const void*>(&k_many_registers<384, 2>), 2);
  // And it runs: out[t] = Σ_i in[t + 384 i] · in[t + 384 (191 − i)] with in = 1.
  buffer<float> in(std::vector<float>(192 * 384, 1.0f)), out(384);
  k_many_registers<384, 1><<<1, 384>>>(in.get(), out.get());
  ISA_SYNC();
  CHECK(out.host()[100] == 192.0f);
}
