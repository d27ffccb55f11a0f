// PTX special registers (ISA chapter 10 "Special Registers") in 3-D launches: %tid, %ntid,
// %ctaid, %nctaid, %laneid, %warpid / %nwarpid, %lanemask_{eq,lt,le,gt,ge}, WARP_SZ,
// %smid / %nsmid, %dynamic_smem_size, %clock / %clock64, %total_smem_size and
// %reserved_smem_offset_{begin,end,cap,0,1} (ISA 10.29: the region of shared memory reserved for
// NVIDIA system software, "not available to users"; cooperative groups' tiles wider than a warp
// keep their barriers at %reserved_smem_offset_1 on sm_80 and later).
#include "isa_test.cuh"

#include <cstdint>
#include <vector>

namespace {

using isa::buffer;

#define SREG(dst, name) asm volatile("mov.u32 %0, %%" name ";" : "=r"(dst))

// out[(block * threads + thread) * 12 + k]
__global__ void k_ids(uint32_t* out) {
  uint32_t v[12];
  SREG(v[0], "tid.x");
  SREG(v[1], "tid.y");
  SREG(v[2], "tid.z");
  SREG(v[3], "ntid.x");
  SREG(v[4], "ntid.y");
  SREG(v[5], "ntid.z");
  SREG(v[6], "ctaid.x");
  SREG(v[7], "ctaid.y");
  SREG(v[8], "ctaid.z");
  SREG(v[9], "nctaid.x");
  SREG(v[10], "nctaid.y");
  SREG(v[11], "nctaid.z");
  const uint32_t block = v[6] + v[9] * (v[7] + v[10] * v[8]);
  const uint32_t thread = v[0] + v[3] * (v[1] + v[4] * v[2]);
  const uint32_t threads = v[3] * v[4] * v[5];
  for (int k = 0; k < 12; ++k) out[(block * threads + thread) * 12 + k] = v[k];
}

// out[thread * 12 + k] for one 3-D block.
__global__ void k_lanes(uint32_t* out) {
  uint32_t lane, warp, nwarp, eq, lt, le, gt, ge, wsz, smid, nsmid, dyn, c0, c1;
  uint64_t k0, k1;
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(k0));
  SREG(c0, "clock");
  SREG(lane, "laneid");
  SREG(warp, "warpid");
  SREG(nwarp, "nwarpid");
  SREG(eq, "lanemask_eq");
  SREG(lt, "lanemask_lt");
  SREG(le, "lanemask_le");
  SREG(gt, "lanemask_gt");
  SREG(ge, "lanemask_ge");
  SREG(smid, "smid");
  SREG(nsmid, "nsmid");
  SREG(dyn, "dynamic_smem_size");
  asm volatile("mov.u32 %0, WARP_SZ;" : "=r"(wsz));
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(k1));
  SREG(c1, "clock");
  const uint32_t t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  uint32_t* o = out + t * 12;
  o[0] = lane, o[1] = warp, o[2] = nwarp, o[3] = eq, o[4] = lt, o[5] = le, o[6] = gt, o[7] = ge;
  o[8] = wsz, o[9] = uint32_t(smid < nsmid), o[10] = dyn;
  o[11] = uint32_t(k1 >= k0) | uint32_t(c1 - c0 < 0x80000000u) << 1;  // clocks do not run backwards
}

// out[k]: %reserved_smem_offset_begin, _end, _cap, _0, _1, %total_smem_size, then the shared
// addresses of a static array and of the dynamic shared memory.
__global__ void k_reserved_shared(uint32_t* out) {
  __shared__ uint32_t array[64];
  extern __shared__ uint32_t dynamic[];
  array[threadIdx.x] = threadIdx.x;
  dynamic[threadIdx.x] = threadIdx.x;
  uint32_t v[6];
  asm volatile("mov.b32 %0, %%reserved_smem_offset_begin;" : "=r"(v[0]));
  asm volatile("mov.b32 %0, %%reserved_smem_offset_end;" : "=r"(v[1]));
  asm volatile("mov.b32 %0, %%reserved_smem_offset_cap;" : "=r"(v[2]));
  asm volatile("mov.b32 %0, %%reserved_smem_offset_0;" : "=r"(v[3]));
  asm volatile("mov.b32 %0, %%reserved_smem_offset_1;" : "=r"(v[4]));
  SREG(v[5], "total_smem_size");
  if (threadIdx.x == 0) {
    for (int k = 0; k < 6; ++k) out[k] = v[k];
    out[6] = static_cast<uint32_t>(__cvta_generic_to_shared(array));
    out[7] = static_cast<uint32_t>(__cvta_generic_to_shared(dynamic));
  }
}

}  // namespace

TEST_SUITE("emulator_isa_sreg") {

// ISA 10.1 %tid, 10.2 %ntid, 10.6 %ctaid, 10.7 %nctaid: every thread of a (2,3,2) grid of
// (4,2,3) blocks reports its own coordinates and the launch shape.
TEST_CASE("%tid %ntid %ctaid %nctaid in a 3-D grid of 3-D blocks") {
  ISA_REQUIRE_DEVICE();
  const dim3 grid(2, 3, 2), block(4, 2, 3);
  const int threads = 4 * 2 * 3, blocks = 2 * 3 * 2;
  buffer<uint32_t> out(size_t(threads) * blocks * 12);
  k_ids<<<grid, block>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t bz = 0; bz < 2; ++bz)
    for (uint32_t by = 0; by < 3; ++by)
      for (uint32_t bx = 0; bx < 2; ++bx)
        for (uint32_t tz = 0; tz < 3; ++tz)
          for (uint32_t ty = 0; ty < 2; ++ty)
            for (uint32_t tx = 0; tx < 4; ++tx) {
              const uint32_t b = bx + 2 * (by + 3 * bz), t = tx + 4 * (ty + 2 * tz);
              const uint32_t* r = &o[(b * threads + t) * 12];
              const uint32_t want[12] = {tx, ty, tz, 4, 2, 3, bx, by, bz, 2, 3, 2};
              for (int k = 0; k < 12; ++k) CHECK_MESSAGE(r[k] == want[k], "block ", b, " thread ", t, " register ", k);
            }
}

// ISA 10.3 %laneid, 10.4 %warpid, 10.5 %nwarpid, 10.8 %lanemask_*, 10.x %dynamic_smem_size.
// Warps are formed from consecutive linear thread ids x + y*Dx + z*Dx*Dy (CUDA C++ Programming
// Guide, "SIMT Architecture"), so %laneid = linear id % 32. %warpid is "the same for all threads
// within a single warp" and "unique ... within a CTA" (its value may change over time, so only
// range, uniformity and distinctness at one instant are checked).
TEST_CASE("%laneid %warpid %nwarpid %lanemask_* WARP_SZ %smid %dynamic_smem_size %clock") {
  ISA_REQUIRE_DEVICE();
  const dim3 block(8, 4, 2);  // 64 threads, two warps
  buffer<uint32_t> out(64 * 12);
  k_lanes<<<1, block, 1000>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t t = 0; t < 64; ++t) {
    const uint32_t* r = &o[t * 12];
    const uint32_t lane = t % 32;
    CHECK_MESSAGE(r[0] == lane, "laneid of thread ", t);
    CHECK(r[1] < r[2]);
    CHECK(r[1] == o[(t - lane) * 12 + 1]);  // same %warpid as lane 0 of its warp
    CHECK(r[3] == (1u << lane));
    CHECK(r[4] == (1u << lane) - 1);
    CHECK(r[5] == (lane == 31 ? 0xffffffffu : (2u << lane) - 1));
    CHECK(r[6] == ~(lane == 31 ? 0xffffffffu : (2u << lane) - 1));
    CHECK(r[7] == ~((1u << lane) - 1));
    CHECK(r[8] == 32u);
    CHECK(r[9] == 1u);
    CHECK(r[10] == 1000u);
    CHECK(r[11] == 3u);
  }
  CHECK(o[1] != o[32 * 12 + 1]);  // two warps of one CTA: distinct warp identifiers
}

// ISA 10.29: the reserved region lies outside the user's shared memory, its offsets inside it and its
// size at most its capacity; 10.30: %total_smem_size counts the user's static and dynamic shared
// memory. The emulator's blocks reserve none: an empty region at the end of the block's shared
// memory (exact values checked under the emulator only).
TEST_CASE("%reserved_smem_offset_{begin,end,cap,0,1}: outside the user's shared memory") {
  ISA_REQUIRE_DEVICE();
  const uint32_t dynamic_bytes = 1000;
  buffer<uint32_t> out(8);
  k_reserved_shared<<<1, 64, dynamic_bytes>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  const uint32_t begin = o[0], end = o[1], cap = o[2], array = o[6], dynamic = o[7];
  CHECK(begin <= end);
  CHECK(end - begin <= cap);
  CHECK((begin <= o[3] && o[3] <= end));
  CHECK((begin <= o[4] && o[4] <= end));
  CHECK_MESSAGE((end <= array || array + 256 <= begin), "the static array overlaps the reserved region");
  CHECK_MESSAGE((end <= dynamic || dynamic + dynamic_bytes <= begin), "dynamic shared memory overlaps the reserved region");
  CHECK(o[5] >= 256 + dynamic_bytes);
  if (!isa::emulated()) {
    MESSAGE("the emulator's values (an empty region at the end of the block's shared memory) are checked under the emulator only");
    return;
  }
  CHECK(o[5] == dynamic + dynamic_bytes);
  for (int k : {0, 1, 3, 4}) CHECK_MESSAGE(o[k] == o[5], "register ", k);
  CHECK(cap == 0u);
}

}  // TEST_SUITE
