// PTX control flow (ISA 9.7.12 "Control Flow Instructions": bra, ret, exit) and
// predicated execution (ISA 9.3 "Predicated Execution"): divergent branches inside a warp that
// reconverge before a full-mask warp collective, divergent loops, bra.uni, early exit and
// per-instruction guard predicates. (call / ret of device functions: test_isa_call.cu.)
#include "isa_test.cuh"

#include <cstdint>
#include <vector>

namespace {

using isa::buffer;

// Branch on lane parity in PTX; after the join every lane takes part in shfl.sync and
// vote.sync with the full mask, which requires the warp to have reconverged.
__global__ void k_diverge_reconverge(uint32_t* out) {
  const uint32_t lane = threadIdx.x;
  uint32_t r, swapped, ballot;
  asm volatile(
      "{\n\t.reg .pred p;\n\t"
      "setp.eq.u32 p, %1, 0;\n\t"
      "@p bra $Lisa_even;\n\t"
      "mov.u32 %0, 200;\n\t"
      "bra.uni $Lisa_join;\n"
      "$Lisa_even:\n\t"
      "mov.u32 %0, 100;\n"
      "$Lisa_join:\n\t}"
      : "=r"(r)
      : "r"(lane & 1));
  asm volatile("shfl.sync.bfly.b32 %0, %1, 1, 0x1f, 0xffffffff;" : "=r"(swapped) : "r"(r + lane));
  asm volatile("{\n\t.reg .pred p;\n\t setp.eq.u32 p, %1, 100;\n\t vote.sync.ballot.b32 %0, p, 0xffffffff;\n\t}"
               : "=r"(ballot) : "r"(r));
  out[3 * lane] = r;
  out[3 * lane + 1] = swapped;
  out[3 * lane + 2] = ballot;
}

// A loop whose trip count is the lane number (lanes leave it at different iterations), four-way
// divergence inside it, then a full-mask redux after the loop.
__global__ void k_divergent_loop(uint32_t* out) {
  const uint32_t lane = threadIdx.x;
  uint32_t s;
  asm volatile(
      "{\n\t.reg .pred p, q;\n\t.reg .u32 i, t;\n\t"
      "mov.u32 i, 0;\n\t mov.u32 %0, 0;\n"
      "$Lisa_loop:\n\t"
      "setp.ge.u32 p, i, %1;\n\t"
      "@p bra $Lisa_exit;\n\t"
      "and.b32 t, i, 3;\n\t"
      "setp.eq.u32 q, t, 0;\n\t"
      "@q bra $Lisa_case0;\n\t"
      "setp.eq.u32 q, t, 1;\n\t"
      "@q bra $Lisa_case1;\n\t"
      "add.u32 %0, %0, i;\n\t"     // i % 4 in {2, 3}: += i
      "bra.uni $Lisa_next;\n"
      "$Lisa_case0:\n\t"
      "add.u32 %0, %0, 1000;\n\t"  // i % 4 == 0: += 1000
      "bra.uni $Lisa_next;\n"
      "$Lisa_case1:\n\t"
      "sub.u32 %0, %0, 1;\n"       // i % 4 == 1: -= 1
      "$Lisa_next:\n\t"
      "add.u32 i, i, 1;\n\t"
      "bra.uni $Lisa_loop;\n"
      "$Lisa_exit:\n\t}"
      : "=r"(s)
      : "r"(lane));
  uint32_t total;
  asm volatile("redux.sync.add.u32 %0, %1, 0xffffffff;" : "=r"(total) : "r"(s));
  out[2 * lane] = s;
  out[2 * lane + 1] = total;
}

// bra.uni: "the branch is non-divergent, i.e. all active threads in a warp have identical values
// for the guard predicate and branch target". The predicate depends only on %ctaid.
__global__ void k_bra_uni(uint32_t* out) {
  uint32_t r;
  asm volatile(
      "{\n\t.reg .pred p;\n\t.reg .u32 b;\n\t"
      "mov.u32 b, %%ctaid.x;\n\t"
      "setp.eq.u32 p, b, 1;\n\t"
      "mov.u32 %0, 7;\n\t"
      "@p bra.uni $Lisa_skip;\n\t"
      "mov.u32 %0, 9;\n"
      "$Lisa_skip:\n\t}"
      : "=r"(r));
  out[blockIdx.x * blockDim.x + threadIdx.x] = r;
}

// Guard predicates on ordinary instructions: "@p" and "@!p" (ISA 9.3).
__global__ void k_predicated(const uint32_t* in, uint32_t* out) {
  const uint32_t x = in[threadIdx.x];
  uint32_t r;
  asm volatile(
      "{\n\t.reg .pred p;\n\t"
      "setp.gt.u32 p, %1, 10;\n\t"
      "mov.u32 %0, 1;\n\t"
      "@p add.u32 %0, %0, %1;\n\t"
      "@!p mul.lo.u32 %0, %1, 3;\n\t}"
      : "=r"(r)
      : "r"(x));
  out[threadIdx.x] = r;
}

// Early exit: lanes 20-31 execute exit; the rest run a shfl.sync over their own mask and write.
__global__ void k_early_exit(uint32_t* out) {
  const uint32_t lane = threadIdx.x;
  out[lane] = 0xdeadu;
  if (lane >= 20) asm volatile("exit;");
  uint32_t r;
  asm volatile("shfl.sync.idx.b32 %0, %1, %2, 0x1f, 0x000fffff;" : "=r"(r) : "r"(lane * 10), "r"(19 - lane));
  out[lane] = r;
}

// Registers that a path reads before writing: the ISA leaves their value undefined; the emulator
// starts them at zero in every block, after earlier blocks of the launch wrote them too. r is
// written under a guard only in block 0 (a guard that is off writes nothing), acc's first read is
// in a loop before its first write; a device function reads its own register the same way.
__device__ __noinline__ uint32_t read_unwritten_in_function(uint32_t x) {
  uint32_t r;
  asm volatile("{\n\t.reg .pred p;\n\t.reg .u32 v;\n\t"
               "setp.eq.u32 p, %1, 0;\n\t"
               "@p mov.u32 v, 5;\n\t"
               "mov.u32 %0, v;\n\t}"
               : "=r"(r) : "r"(x));
  return r;
}

__global__ void k_read_before_written(uint32_t* out) {
  uint32_t guarded, carried;
  asm volatile(
      "{\n\t.reg .pred p;\n\t.reg .u32 r, acc, i;\n\t"
      "setp.eq.u32 p, %2, 0;\n\t"
      "@p mov.u32 r, 7;\n\t"
      "mov.u32 %0, r;\n\t"
      "mov.u32 i, 0;\n"
      "$Lisa_unwritten_loop:\n\t"
      "add.u32 acc, acc, %3;\n\t"
      "add.u32 i, i, 1;\n\t"
      "setp.lt.u32 p, i, 3;\n\t"
      "@p bra $Lisa_unwritten_loop;\n\t"
      "mov.u32 %1, acc;\n\t}"
      : "=r"(guarded), "=r"(carried)
      : "r"(blockIdx.x), "r"(threadIdx.x + 1));
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  out[3 * i] = guarded;
  out[3 * i + 1] = carried;
  out[3 * i + 2] = read_unwritten_in_function(blockIdx.x);
}

}  // namespace

TEST_SUITE("emulator_isa_control") {
TEST_CASE("divergent branches reconverge before full-mask shfl.sync and vote.sync") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(3 * 32);
  k_diverge_reconverge<<<1, 32>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t lane = 0; lane < 32; ++lane) {
    const uint32_t r = lane % 2 == 0 ? 100 : 200, partner = lane ^ 1;
    CHECK(o[3 * lane] == r);
    CHECK(o[3 * lane + 1] == (partner % 2 == 0 ? 100u : 200u) + partner);
    CHECK(o[3 * lane + 2] == 0x55555555u);  // the even lanes took the branch
  }
}

TEST_CASE("a loop with per-lane trip counts and four-way divergence, then redux.sync") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(2 * 32);
  k_divergent_loop<<<1, 32>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  uint32_t total = 0;
  std::vector<uint32_t> sums(32);
  for (uint32_t lane = 0; lane < 32; ++lane) {
    for (uint32_t i = 0; i < lane; ++i) sums[lane] += i % 4 == 0 ? 1000u : i % 4 == 1 ? uint32_t(-1) : i;
    total += sums[lane];
  }
  for (uint32_t lane = 0; lane < 32; ++lane) {
    CHECK(o[2 * lane] == sums[lane]);
    CHECK(o[2 * lane + 1] == total);
  }
}

TEST_CASE("registers read before written start at zero in every block (emulator)") {
  ISA_REQUIRE_DEVICE();
  if (!isa::emulated()) {
    MESSAGE("skipped: the ISA leaves unwritten registers undefined; the emulator's zero is checked under the emulator only");
    return;
  }
  buffer<uint32_t> out(3 * 4 * 64);
  k_read_before_written<<<4, 64>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t i = 0; i < 4 * 64; ++i) {
    const bool first_block = i < 64;
    CHECK(o[3 * i] == (first_block ? 7u : 0u));
    CHECK(o[3 * i + 1] == 3 * (i % 64 + 1));
    CHECK(o[3 * i + 2] == (first_block ? 5u : 0u));
  }
}

TEST_CASE("bra.uni on a block-uniform predicate") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(3 * 64);
  k_bra_uni<<<3, 64>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t i = 0; i < 3 * 64; ++i) CHECK(o[i] == (i / 64 == 1 ? 7u : 9u));
}

TEST_CASE("guard predicates @p and @!p") {
  ISA_REQUIRE_DEVICE();
  std::vector<uint32_t> in(64);
  for (uint32_t i = 0; i < 64; ++i) in[i] = i * 3 % 23;
  buffer<uint32_t> din(in), out(64);
  k_predicated<<<1, 64>>>(din.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t i = 0; i < 64; ++i) CHECK(o[i] == (in[i] > 10 ? 1 + in[i] : 3 * in[i]));
}

TEST_CASE("exit by some lanes; the others continue and shuffle among themselves") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(32);
  k_early_exit<<<1, 32>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t lane = 0; lane < 32; ++lane) CHECK(o[lane] == (lane < 20 ? (19 - lane) * 10 : 0xdeadu));
}

}  // TEST_SUITE
