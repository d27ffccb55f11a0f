// The traffic counters (profile.hpp) against counts worked by hand from the memory rules
// Nsight Compute counts by (CUDA C++ Programming Guide, "Device Memory Accesses": a warp's
// global request touches 32-byte sectors; shared memory has 32 banks of 4-byte words, and
// distinct words in one bank are served by separate wavefronts, one word read by many lanes
// once). Emulator only: a GPU has no such API (Nsight Compute measures the same quantities).
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../fixtures/hopper_fixture.cuh"
#include "profile.hpp"

namespace {

#define PROFILE_CUDA(expr) REQUIRE_EQ((expr), cudaSuccess)

//! True on sm_90 or later; otherwise the case says it is skipped.
bool has_sm90() {
  cudaDeviceProp prop{};
  REQUIRE_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  if (prop.major >= 9) return true;
  MESSAGE("skipped: needs sm_90 (TMA, wgmma)");
  return false;
}

//! Profiles what `launch` enqueues and returns its records.
template <class Launch>
std::vector<emu::profile::launch_record> profiled(Launch&& launch) {
  emu::profile::start();
  launch();
  const cudaError_t status = cudaDeviceSynchronize();
  auto records = emu::profile::stop();
  REQUIRE_EQ(status, cudaSuccess);
  return records;
}

template <class Launch>
emu::profile::launch_record profiled_one(Launch&& launch) {
  auto records = profiled(launch);
  REQUIRE_EQ(records.size(), 1u);
  return records[0];
}

//! A device buffer of n floats, every byte written (initcheck).
struct buffer {
  float* data = nullptr;
  explicit buffer(size_t n) {
    REQUIRE_EQ(cudaMalloc(&data, n * sizeof(float)), cudaSuccess);
    REQUIRE_EQ(cudaMemset(data, 0, n * sizeof(float)), cudaSuccess);
  }
  ~buffer() { cudaFree(data); }
};

//! out[lane] = in[lane · stride + offset] (one warp).
__global__ void strided_load(const float* in, float* out, int stride, int offset) {
  out[threadIdx.x] = in[threadIdx.x * stride + offset];
}

//! Every lane reads in[0].
__global__ void broadcast_load(const float* in, float* out) {
  const volatile float* p = in;
  out[threadIdx.x] = p[0];
}

//! 16 bytes per lane, consecutive.
__global__ void vector_load(const float4* in, float4* out) { out[threadIdx.x] = in[threadIdx.x]; }

//! Reads in[lane] `times` times (each a request) and writes its sum.
__global__ void repeated_load(const float* in, float* out, int times) {
  float sum = 0;
  const volatile float* p = in;
  for (int i = 0; i < times; ++i) sum += p[threadIdx.x];
  out[threadIdx.x] = sum;
}

//! The even lanes read in[lane].
__global__ void even_lanes_load(const float* in, float* out) {
  if (threadIdx.x % 2 == 0) out[threadIdx.x] = in[threadIdx.x];
}

__global__ void atomic_same_word(float* p) { atomicAdd(p, 1.0f); }

//! Shared memory: lane l stores word l · store_stride, then (after a barrier) loads word
//! l · load_stride.
__global__ void shared_strides(float* out, int store_stride, int load_stride) {
  __shared__ float s[32 * 33];
  volatile float* v = s;
  v[threadIdx.x * store_stride] = float(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = v[threadIdx.x * load_stride];
}

//! Lane l stores 16 (or 8) bytes at byte 16l (8l): st.shared.v4.f32 (v2).
__global__ void shared_vector_store(float* out) {
  __shared__ float4 s4[32];
  __shared__ float2 s2[32];
  const float x = float(threadIdx.x);
  asm volatile("st.shared.v4.f32 [%0], {%1, %1, %1, %1};" ::"r"(unsigned(__cvta_generic_to_shared(&s4[threadIdx.x]))),
               "f"(x) : "memory");
  asm volatile("st.shared.v2.f32 [%0], {%1, %1};" ::"r"(unsigned(__cvta_generic_to_shared(&s2[threadIdx.x]))),
               "f"(x) : "memory");
  __syncthreads();
  out[threadIdx.x] = s4[31 - threadIdx.x].x + s2[31 - threadIdx.x].y;
}

//! Lane l stores 16 bytes at chunk 4·(l mod 8) + l / 8: the 8 lanes of each quarter-warp phase
//! hit only two 4-bank groups (4 wavefronts each), though the warp covers every bank 4 times.
__global__ void shared_quarter_conflict(float* out) {
  __shared__ float4 s[32];
  const int chunk = 4 * (threadIdx.x % 8) + threadIdx.x / 8;
  const float x = float(threadIdx.x);
  asm volatile("st.shared.v4.f32 [%0], {%1, %1, %1, %1};" ::"r"(unsigned(__cvta_generic_to_shared(&s[chunk]))),
               "f"(x) : "memory");
  __syncthreads();
  out[threadIdx.x] = s[31 - threadIdx.x].x;
}

//! Every lane adds 1 to one shared word: same-address atomics are served one lane at a time.
__global__ void shared_atomic_same_word(float* out) {
  __shared__ float sum;
  if (threadIdx.x == 0) sum = 0;
  __syncthreads();
  atomicAdd(&sum, 1.0f);
  __syncthreads();
  out[threadIdx.x] = sum;
}

//! Writes p[lane], then reads it back: a sector the launch wrote is no DRAM read.
__global__ void write_then_read(float* p, float* out) {
  volatile float* v = p;
  v[threadIdx.x] = float(threadIdx.x);
  out[threadIdx.x] = v[threadIdx.x] + 1.0f;
}

//! ldmatrix.x4 of four 8 × 8 b16 matrices from a tile of 8 rows of 128 bytes; row r of matrix
//! i at byte 128r + 16i, or with the XOR swizzle at 128r + 16(i ^ r).
__global__ void ldmatrix_rows(unsigned* out, bool swizzled) {
  __shared__ __align__(128) unsigned short tile[8 * 64];
  for (int i = threadIdx.x; i < 8 * 64; i += 32) tile[i] = static_cast<unsigned short>(i);
  __syncthreads();
  const int i = threadIdx.x / 8, r = threadIdx.x % 8;
  const int chunk = swizzled ? (i ^ r) : i;
  const unsigned address = unsigned(__cvta_generic_to_shared(tile)) + 128 * r + 16 * chunk;
  unsigned d[4];
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(address));
  out[threadIdx.x] = d[0] ^ d[1] ^ d[2] ^ d[3];
}

//! One cp.async of 16 bytes per lane (consecutive), waited for, then copied out.
__global__ void async_copy_rows(const float4* in, float4* out) {
  __shared__ float4 s[32];
  const unsigned dst = unsigned(__cvta_generic_to_shared(&s[threadIdx.x]));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(in + threadIdx.x) : "memory");
  asm volatile("cp.async.wait_all;" ::: "memory");
  out[threadIdx.x] = s[threadIdx.x];
}

//! `count` mma.sync m16n8k16 per warp.
__global__ void mma_loop(float* out, int count) {
  unsigned a[4] = {0x3F803F80u, 0x3F803F80u, 0x3F803F80u, 0x3F803F80u}, b[2] = {0x3F803F80u, 0x3F803F80u};
  float c[4] = {0, 0, 0, 0};
  for (int i = 0; i < count; ++i) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = c[0] + c[1] + c[2] + c[3];
}

//! Two block barriers.
__global__ void two_barriers(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  const float x = s[63 - threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = x;
}

//! `extra` more fma.rn.f32 than the same kernel with extra = 0 (inline PTX, not optimised away).
template <int Extra>
__global__ void fma_chain(float* out) {
  float x = float(threadIdx.x);
#pragma unroll
  for (int i = 0; i < Extra; ++i) asm volatile("fma.rn.f32 %0, %0, %0, %0;" : "+f"(x));
  out[threadIdx.x] = x;
}

//! One TMA copy of the map's 16 × 16 uint32 box (1024 bytes), waited for by the warp.
__global__ void tma_box(const __grid_constant__ CUtensorMap map, unsigned* out) {
  __shared__ __align__(128) uint32_t box[fixture::kBox * fixture::kBox];
  __shared__ uint64_t bar;
  if (threadIdx.x == 0) fixture::mbarrier_init(&bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    fixture::mbarrier_arrive_expect_tx(&bar, fixture::kBoxBytes);
    fixture::tma_load_2d(box, &map, &bar, 0, 0);
  }
  fixture::mbarrier_wait_parity(&bar, 0);
  out[threadIdx.x] = box[threadIdx.x];
}

//! One wgmma.mma_async m64n8k16 (bf16, both operands K-major in shared memory, no swizzle:
//! A's 8 × 16-byte core matrices 128 bytes apart along K, 256 along M; B after A).
__global__ void wgmma_once(float* out) {
  __shared__ __align__(1024) uint16_t tiles[64 * 16 + 8 * 16];
  for (int i = threadIdx.x; i < 64 * 16 + 8 * 16; i += blockDim.x) tiles[i] = 0x3F80;  // 1.0
  __syncthreads();
  float d[4] = {0, 0, 0, 0};
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  const auto descriptor = [](const void* p) {
    const uint64_t address = static_cast<uint32_t>(__cvta_generic_to_shared(p));
    return (address >> 4 & 0x3FFF) | uint64_t(128 >> 4) << 16 | uint64_t(256 >> 4) << 32;
  };
  const uint64_t da = descriptor(tiles), db = descriptor(tiles + 64 * 16);
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
  asm volatile("wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, %4, %5, 0, 1, 1, 0, 0;"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "l"(da), "l"(db)
               : "memory");
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
#else
  d[0] = float(tiles[threadIdx.x]);
  __trap();  // wgmma needs sm_90a
#endif
  out[threadIdx.x] = d[0] + d[1] + d[2] + d[3];
}


// ---- Latency: dependent round trips (profile.hpp, launch_record::round_trips) -------------

//! Follows `hops` links of next[] from 0 (each load's address is the last load's value).
__global__ void dependent_loads(const int* next, int hops, int* out) {
  int i = 0;
  for (int h = 0; h < hops; ++h) i = next[i];
  out[threadIdx.x] = i;
}

//! Sums 8 independent loads, unrolled (one level) or in a loop that is not unrolled (a branch
//! after each: one level per iteration).
template <bool Unrolled>
__global__ void independent_loads(const float* in, float* out) {
  float sum = 0;
  if constexpr (Unrolled) {
#pragma unroll
    for (int i = 0; i < 8; ++i) sum += in[threadIdx.x + 32 * i];
  } else {
#pragma unroll 1
    for (int i = 0; i < 8; ++i) sum += in[threadIdx.x + 32 * i];
  }
  out[threadIdx.x] = sum;
}

//! Four tiles of 32 floats through shared memory with cp.async: two stages in flight (the copy
//! of tile i + 1 issued before tile i is waited for) or one (each copy waited for at once).
template <bool Pipelined>
__global__ void async_pipeline(const float* in, float* out) {
  __shared__ float s[2][32];
  const auto copy = [&](int tile) {
    const unsigned dst = unsigned(__cvta_generic_to_shared(&s[tile % 2][threadIdx.x]));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(dst), "l"(in + 32 * tile + threadIdx.x) : "memory");
    asm volatile("cp.async.commit_group;" ::: "memory");
  };
  float sum = 0;
  if (Pipelined) copy(0);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (Pipelined) {
      if (i + 1 < 4) copy(i + 1);
      asm volatile("cp.async.wait_group 1;" ::: "memory");
    } else {
      copy(i);
      asm volatile("cp.async.wait_group 0;" ::: "memory");
    }
    sum += s[i % 2][threadIdx.x];
  }
  out[threadIdx.x] = sum;
}

//! Thread 0 follows three links; after a barrier, thread 1 makes one load that depends on
//! nothing thread 0 did.
__global__ void barrier_after_chain(const int* next, const float* in, float* out) {
  if (threadIdx.x == 0) {
    int i = 0;
#pragma unroll
    for (int h = 0; h < 3; ++h) i = next[i];
    out[1] = float(i);
  }
  __syncthreads();
  if (threadIdx.x == 1) out[0] = in[0];
}

//! Loads a word and unpacks it (mov.b32, which ptxas folds into its users) or adds to it (a
//! real instruction, which waits for the load); then a branch, then an independent load.
template <bool Unpack>
__global__ void use_then_branch(const unsigned* in, const float* other, float* out, int flag) {
  const unsigned a = in[threadIdx.x];
  unsigned short lo = 0, hi = 0;
  unsigned used = 0;
  if constexpr (Unpack) asm volatile("mov.b32 {%0, %1}, %2;" : "=h"(lo), "=h"(hi) : "r"(a));
  else asm volatile("add.u32 %0, %1, 1;" : "=r"(used) : "r"(a));
  asm volatile("{\n\t.reg .pred p;\n\tsetp.eq.s32 p, %0, 0;\n\t@p bra.uni SKIP%=;\nSKIP%=:\n\t}" ::"r"(flag)
               : "memory");
  const float x = other[threadIdx.x];
  if constexpr (Unpack) asm volatile("cvt.u32.u16 %0, %1;" : "=r"(used) : "h"(lo));  // after the branch
  out[threadIdx.x] = x + float(used + hi);
}

//! A load that happens only if a loaded flag is set.
__global__ void branch_on_load(const int* flag, const float* in, float* out) {
  if (*flag) out[threadIdx.x] = in[threadIdx.x];
}
}  // namespace

TEST_CASE("global loads: sectors per warp request") {
  buffer in(32 * 33), out(32);
  struct pattern {
    int stride, offset;
    uint64_t sectors, bytes;
  };
  // 32 lanes × 4 bytes: consecutive → 4 sectors; one word every 8 → 8 sectors half used;
  // one word every 32 (128 bytes) → 32 sectors; shifted by one word → 5 sectors.
  const pattern patterns[] = {{1, 0, 4, 128}, {2, 0, 8, 128}, {32, 0, 32, 128}, {1, 1, 5, 128}};
  for (const pattern& p : patterns) {
    CAPTURE(p.stride);
    CAPTURE(p.offset);
    const auto r = profiled_one([&] { strided_load<<<1, 32>>>(in.data, out.data, p.stride, p.offset); });
    CHECK_EQ(r.global_load.requests, 1u);
    CHECK_EQ(r.global_load.sectors, p.sectors);
    CHECK_EQ(r.global_load.bytes, p.bytes);
    CHECK_EQ(r.global_store.requests, 1u);  // out[lane]: consecutive
    CHECK_EQ(r.global_store.sectors, 4u);
    CHECK_EQ(r.distinct_read_sectors, p.sectors);
    CHECK_EQ(r.distinct_written_sectors, 4u);
  }
}

TEST_CASE("global loads: broadcast, 16-byte vectors, repeats, inactive lanes") {
  buffer in(32 * 4), out(32 * 4);
  const auto b = profiled_one([&] { broadcast_load<<<1, 32>>>(in.data, out.data); });
  CHECK_EQ(b.global_load.requests, 1u);
  CHECK_EQ(b.global_load.sectors, 1u);
  CHECK_EQ(b.global_load.bytes, 4u);

  const auto v = profiled_one([&] {
    vector_load<<<1, 32>>>(reinterpret_cast<const float4*>(in.data), reinterpret_cast<float4*>(out.data));
  });
  CHECK_EQ(v.global_load.requests, 1u);  // one ld.global.v4 per lane: 512 bytes, 16 sectors
  CHECK_EQ(v.global_load.sectors, 16u);
  CHECK_EQ(v.global_load.bytes, 512u);

  // Three loads of the same 128 bytes: 3 requests of 4 sectors, 4 distinct sectors.
  const auto rep = profiled_one([&] { repeated_load<<<1, 32>>>(in.data, out.data, 3); });
  CHECK_EQ(rep.global_load.requests, 3u);
  CHECK_EQ(rep.global_load.sectors, 12u);
  CHECK_EQ(rep.distinct_read_sectors, 4u);

  // Lanes 0, 2, ..., 30 read words 0, 2, ..., 30: one request over the 4 sectors, 64 bytes.
  const auto even = profiled_one([&] { even_lanes_load<<<1, 32>>>(in.data, out.data); });
  CHECK_EQ(even.global_load.requests, 1u);
  CHECK_EQ(even.global_load.sectors, 4u);
  CHECK_EQ(even.global_load.bytes, 64u);
}

TEST_CASE("distinct sectors: blocks share them, the session map tells which were read") {
  buffer in(64 * 32), out(64 * 32);
  // Two blocks read the same 128 bytes (4 sectors) and write their own.
  const auto r = profiled_one([&] { strided_load<<<2, 32>>>(in.data, out.data, 1, 0); });
  CHECK_EQ(r.global_load.requests, 2u);
  CHECK_EQ(r.global_load.sectors, 8u);
  CHECK_EQ(r.distinct_read_sectors, 4u);
  CHECK_EQ(r.distinct_written_sectors, 4u);  // both blocks write out[0, 32)
  CHECK_EQ(emu::profile::sectors_read(in.data, 64 * 32 * sizeof(float)), 4u);
  CHECK_EQ(emu::profile::sectors_read(in.data + 32, 32 * sizeof(float)), 0u);
  CHECK_EQ(emu::profile::sectors_read(in.data + 7, 4), 1u);  // part of a read sector
  CHECK_EQ(emu::profile::sectors_written(out.data, 64 * 32 * sizeof(float)), 4u);
  CHECK_EQ(emu::profile::sectors_written(in.data, 64 * 32 * sizeof(float)), 0u);

  // Per launch: two launches of the same read count their sectors each.
  const auto two = profiled([&] {
    strided_load<<<1, 32>>>(in.data, out.data, 1, 0);
    strided_load<<<1, 32>>>(in.data, out.data, 1, 0);
  });
  REQUIRE_EQ(two.size(), 2u);
  CHECK_EQ(two[0].distinct_read_sectors, 4u);
  CHECK_EQ(two[1].distinct_read_sectors, 4u);
}

TEST_CASE("cooperative launch: each block's requests are its own") {
  buffer in(64 * 32), out(64 * 32);
  // Two resident blocks, interleaved: each warp's consecutive read is its own request of 4 sectors,
  // as when the blocks run one after another.
  const float* src = in.data;
  float* dst = out.data;
  int stride = 1, offset = 0;
  void* args[] = {&src, &dst, &stride, &offset};
  const auto r = profiled_one([&] {
    REQUIRE_EQ(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(strided_load), dim3(2), dim3(32), args, 0, nullptr),
               cudaSuccess);
  });
  CHECK_EQ(r.global_load.requests, 2u);
  CHECK_EQ(r.global_load.sectors, 8u);
  CHECK_EQ(r.global_store.requests, 2u);
  CHECK_EQ(r.distinct_read_sectors, 4u);
}

TEST_CASE("distinct sectors: a sector the launch wrote is not read from DRAM") {
  buffer p(32), out(32);
  const auto r = profiled_one([&] { write_then_read<<<1, 32>>>(p.data, out.data); });
  CHECK_EQ(r.global_load.requests, 1u);
  CHECK_EQ(r.global_load.sectors, 4u);  // requested from L2 all the same
  CHECK_EQ(r.distinct_read_sectors, 0u);
  CHECK_EQ(r.distinct_written_sectors, 8u);  // p and out
}

TEST_CASE("global atomics: one request, the sector read and written") {
  buffer p(8);
  const auto r = profiled_one([&] { atomic_same_word<<<1, 32>>>(p.data); });
  CHECK_EQ(r.global_atomic.requests, 1u);
  CHECK_EQ(r.global_atomic.sectors, 1u);
  CHECK_EQ(r.distinct_read_sectors, 1u);
  CHECK_EQ(r.distinct_written_sectors, 1u);
  CHECK_EQ(r.round_trips, 0u);  // an atomic whose result nothing uses waits for nothing
}

TEST_CASE("shared memory: wavefronts by the 32-bank rule") {
  buffer out(32);
  struct pattern {
    int stride;
    uint64_t wavefronts;
  };
  // Word l·stride: stride 1 → 32 banks, 1 wavefront; 2 → 16 banks twice, 2; 32 → one bank, 32;
  // 33 → bank l, 1; a load with stride 0 → one word for every lane, 1.
  const pattern patterns[] = {{1, 1}, {2, 2}, {32, 32}, {33, 1}, {0, 1}};
  for (const pattern& p : patterns) {
    CAPTURE(p.stride);
    const int store_stride = p.stride == 0 ? 1 : p.stride;  // lanes storing one word would race
    const auto r = profiled_one([&] { shared_strides<<<1, 32>>>(out.data, store_stride, p.stride); });
    CHECK_EQ(r.shared_load.requests, 1u);
    CHECK_EQ(r.shared_load.wavefronts, p.wavefronts);
    CHECK_EQ(r.shared_load.ideal_wavefronts, 1u);
    if (p.stride != 0) {
      CHECK_EQ(r.shared_store.requests, 1u);
      CHECK_EQ(r.shared_store.wavefronts, p.wavefronts);
      CHECK_EQ(r.shared_store.ideal_wavefronts, 1u);
    }
  }
}

TEST_CASE("shared memory: 8- and 16-byte accesses are served in half- and quarter-warp phases") {
  buffer out(32);
  const auto r = profiled_one([&] { shared_vector_store<<<1, 32>>>(out.data); });
  // st.shared.v4: 512 bytes in 4 phases of 8 lanes, 1 wavefront each; v2: 256 bytes, 2 phases.
  CHECK_EQ(r.shared_store.requests, 2u);
  CHECK_EQ(r.shared_store.wavefronts, 4u + 2u);
  CHECK_EQ(r.shared_store.ideal_wavefronts, 4u + 2u);
}

TEST_CASE("shared memory: 16-byte accesses conflict within a quarter-warp phase") {
  buffer out(32);
  const auto r = profiled_one([&] { shared_quarter_conflict<<<1, 32>>>(out.data); });
  // Phase i (lanes 8i..8i+7, j = lane mod 8) writes chunks 4j + i, banks 16j + 4i + [0, 4) mod 32:
  // the 4-bank groups at 4i and 16 + 4i, 4 chunks on each, so 4 wavefronts per phase and 16 for
  // the warp (a rule over the whole warp would give 4: every bank holds 4 of the 128 words).
  CHECK_EQ(r.shared_store.requests, 1u);
  CHECK_EQ(r.shared_store.wavefronts, 16u);
  CHECK_EQ(r.shared_store.ideal_wavefronts, 4u);
}

TEST_CASE("shared atomics: lanes on one word are served one at a time") {
  buffer out(32);
  const auto r = profiled_one([&] { shared_atomic_same_word<<<1, 32>>>(out.data); });
  CHECK_EQ(r.shared_atomic.requests, 1u);
  CHECK_EQ(r.shared_atomic.wavefronts, 32u);
  CHECK_EQ(r.shared_atomic.ideal_wavefronts, 1u);
}

TEST_CASE("ldmatrix: eight 128-byte-strided rows conflict, the XOR-swizzled rows do not") {
  buffer out(32);
  const auto plain = profiled_one([&] { ldmatrix_rows<<<1, 32>>>(reinterpret_cast<unsigned*>(out.data), false); });
  const auto swizzled = profiled_one([&] { ldmatrix_rows<<<1, 32>>>(reinterpret_cast<unsigned*>(out.data), true); });
  // The tile fill: 16 st.shared.u16 requests, 32 lanes on 16 words: 1 wavefront each. Then the
  // ldmatrix.x4: one request, a phase per matrix; its 8 rows (16 bytes = 4 banks each) at a
  // 128-byte stride all fall in the same 4 banks (8 wavefronts), or swizzled in 8 disjoint ones (1).
  CHECK_EQ(plain.shared_load.requests, 1u);
  CHECK_EQ(plain.shared_load.wavefronts, 4u * 8u);
  CHECK_EQ(plain.shared_load.ideal_wavefronts, 4u);
  CHECK_EQ(swizzled.shared_load.requests, 1u);
  CHECK_EQ(swizzled.shared_load.wavefronts, 4u);
  CHECK_EQ(plain.shared_store.requests, 16u);
  CHECK_EQ(plain.shared_store.wavefronts, 16u);
}

TEST_CASE("cp.async: a global request and its shared writes") {
  buffer in(32 * 4), out(32 * 4);
  const auto r = profiled_one([&] {
    async_copy_rows<<<1, 32>>>(reinterpret_cast<const float4*>(in.data), reinterpret_cast<float4*>(out.data));
  });
  CHECK_EQ(r.async_copy.requests, 1u);
  CHECK_EQ(r.async_copy.sectors, 16u);
  CHECK_EQ(r.async_copy.bytes, 512u);
  CHECK_EQ(r.global_load.requests, 0u);
  CHECK_EQ(r.shared_store.requests, 1u);  // 16 bytes per lane: 4 phases, no conflict
  CHECK_EQ(r.shared_store.wavefronts, 4u);
  CHECK_EQ(r.distinct_read_sectors, 16u);
}

TEST_CASE("tensor cores: m·n·k multiply-adds per mma.sync") {
  buffer out(64 * 2);
  const auto r = profiled_one([&] { mma_loop<<<2, 64>>>(out.data, 3); });
  CHECK_EQ(r.tensor_macs, uint64_t(2 * 2 * 3) * 16 * 8 * 16);  // 2 blocks × 2 warps × 3 mma
  CHECK(r.thread_instructions[size_t(emu::profile::instruction_class::tensor)] == uint64_t(2 * 64 * 3));
}

TEST_CASE("TMA: one request per copy, its box's sectors; mbarrier waits") {
  if (!has_sm90()) return;
  const CUtensorMap map = fixture::filled_tensor_map_2d_u32(fixture::kBox, fixture::kBox, 0x11);
  buffer out(32);
  const auto r = profiled_one([&] { tma_box<<<1, 32>>>(map, reinterpret_cast<unsigned*>(out.data)); });
  CHECK_EQ(r.bulk_tensor.requests, 1u);
  CHECK_EQ(r.bulk_tensor.sectors, fixture::kBoxBytes / 32);
  CHECK_EQ(r.bulk_tensor.bytes, fixture::kBoxBytes);
  CHECK_EQ(r.distinct_read_sectors, fixture::kBoxBytes / 32);  // the map is a kernel parameter
  CHECK_EQ(r.global_load.requests, 0u);
  CHECK_EQ(r.shared_store.requests, 0u);  // the box lands through the async proxy
  CHECK_EQ(r.shared_load.requests, 1u);   // box[lane]
  CHECK(r.mbarrier_waits >= 32u);         // every lane's try_wait, at least once
  CHECK_EQ(r.round_trips, 1u);            // the box lands one round trip after the copy issues
}

TEST_CASE("wgmma: 64·N·16 multiply-adds per warpgroup instruction, operands not shared requests") {
  if (!has_sm90()) return;
  buffer out(128);
  const auto r = profiled_one([&] { wgmma_once<<<1, 128>>>(out.data); });
  CHECK_EQ(r.tensor_macs, uint64_t(64) * 8 * 16);
  CHECK_EQ(r.thread_instructions[size_t(emu::profile::instruction_class::tensor)], 128u);
  CHECK_EQ(r.shared_load.requests, 0u);
  std::vector<float> host(128);
  PROFILE_CUDA(cudaMemcpy(host.data(), out.data, sizeof(float) * 128, cudaMemcpyDeviceToHost));
  CHECK_EQ(host[0], 4.0f * 16.0f);  // four accumulators, each Σ over k < 16 of 1 · 1
}

TEST_CASE("barriers and instruction classes") {
  buffer out(64);
  const auto r = profiled_one([&] { two_barriers<<<1, 64>>>(out.data); });
  CHECK_EQ(r.barrier_releases, 2u);
  CHECK_EQ(r.barrier_arrivals, 2u * 64u);

  const auto base = profiled_one([&] { fma_chain<0><<<1, 32>>>(out.data); });
  const auto more = profiled_one([&] { fma_chain<5><<<1, 32>>>(out.data); });
  const size_t floating = size_t(emu::profile::instruction_class::floating);
  CHECK_EQ(more.thread_instructions[floating] - base.thread_instructions[floating], 5u * 32u);
  for (size_t c = 0; c < size_t(emu::profile::instruction_class::count); ++c) {
    if (c != floating) CHECK_EQ(more.thread_instructions[c], base.thread_instructions[c]);
  }
}

TEST_CASE("per PTX line: where the requests go") {
  buffer in(32 * 2), out(32);
  const auto r = profiled_one([&] { strided_load<<<1, 32>>>(in.data, out.data, 2, 0); });
  int loads = 0, stores = 0;
  for (const auto& l : r.lines) {
    CHECK(l.line > 0);
    if (std::string(l.kind) == "global_load") {
      ++loads;
      CHECK_EQ(l.requests, 1u);
      CHECK_EQ(l.sectors, 8u);
      CHECK_EQ(l.bytes, 128u);
    } else if (std::string(l.kind) == "global_store") {
      ++stores;
      CHECK_EQ(l.sectors, 4u);
    }
  }
  CHECK_EQ(loads, 1);
  CHECK_EQ(stores, 1);
}

TEST_CASE("latency: a chain of dependent loads counts one round trip per link") {
  const int links[] = {1, 2, 3, 4, 5, 6, 7, 0};
  int* next = nullptr;
  PROFILE_CUDA(cudaMalloc(&next, sizeof links));
  PROFILE_CUDA(cudaMemcpy(next, links, sizeof links, cudaMemcpyHostToDevice));
  buffer out(128);
  for (int hops : {0, 1, 3, 7}) {
    CAPTURE(hops);
    const auto r = profiled_one([&] { dependent_loads<<<1, 32>>>(next, hops, reinterpret_cast<int*>(out.data)); });
    CHECK_EQ(r.round_trips, unsigned(hops));
    CHECK_EQ(r.global_load.requests, unsigned(hops));
    if (hops > 0) CHECK(r.round_trip_line > 0);
  }
  const auto wide = profiled_one([&] { dependent_loads<<<3, 100>>>(next, 2, reinterpret_cast<int*>(out.data)); });
  CHECK_EQ(wide.round_trips, 2u);  // more warps, the same chain
  CHECK_EQ(wide.warps(), 3u * 4u);
  PROFILE_CUDA(cudaFree(next));
}

TEST_CASE("latency: independent loads overlap in straight-line code, not across a loop's branches") {
  buffer in(32 * 8), out(32);
  const auto unrolled = profiled_one([&] { independent_loads<true><<<1, 32>>>(in.data, out.data); });
  CHECK_EQ(unrolled.global_load.requests, 8u);
  CHECK_EQ(unrolled.round_trips, 1u);
  const auto loop = profiled_one([&] { independent_loads<false><<<1, 32>>>(in.data, out.data); });
  CHECK_EQ(loop.global_load.requests, 8u);
  CHECK_EQ(loop.round_trips, 8u);  // each iteration's sum waits for its load before the branch
}

TEST_CASE("latency: a cp.async pipeline hides the copies it keeps in flight") {
  buffer in(32 * 4), out(32);
  // Two stages: tiles 0 and 1 land at level 1 (the first wait), tiles 2 and 3 are issued after
  // it and land at level 2. One stage: every copy waits for the one before.
  const auto pipelined = profiled_one([&] { async_pipeline<true><<<1, 32>>>(in.data, out.data); });
  CHECK_EQ(pipelined.async_copy.requests, 4u);
  CHECK_EQ(pipelined.round_trips, 2u);
  const auto serial = profiled_one([&] { async_pipeline<false><<<1, 32>>>(in.data, out.data); });
  CHECK_EQ(serial.async_copy.requests, 4u);
  CHECK_EQ(serial.round_trips, 4u);
}

TEST_CASE("latency: a mov passes its operand's level on; an instruction that uses a load waits for it") {
  buffer in(32), other(32), out(32);
  const auto* words = reinterpret_cast<const unsigned*>(in.data);
  // The unpacking waits for nothing, so the load after the branch issues at level 0: one level.
  const auto unpack = profiled_one([&] { use_then_branch<true><<<1, 32>>>(words, other.data, out.data, 1); });
  CHECK_EQ(unpack.round_trips, 1u);
  // The add waits for the first load before the branch: the second load issues at level 1.
  const auto add = profiled_one([&] { use_then_branch<false><<<1, 32>>>(words, other.data, out.data, 1); });
  CHECK_EQ(add.round_trips, 2u);
}

TEST_CASE("latency: a block barrier releases every thread at the slowest thread's level") {
  const int links[] = {1, 2, 3, 0};
  int* next = nullptr;
  PROFILE_CUDA(cudaMalloc(&next, sizeof links));
  PROFILE_CUDA(cudaMemcpy(next, links, sizeof links, cudaMemcpyHostToDevice));
  buffer in(32), out(32);
  // Thread 0: three links (level 3); thread 1's load after the barrier ends at level 4.
  const auto r = profiled_one([&] { barrier_after_chain<<<1, 64>>>(next, in.data, out.data); });
  CHECK_EQ(r.round_trips, 4u);
  PROFILE_CUDA(cudaFree(next));
}

TEST_CASE("latency: what follows a branch on a loaded value waits for it") {
  int* flag = nullptr;
  const int one = 1;
  PROFILE_CUDA(cudaMalloc(&flag, sizeof one));
  PROFILE_CUDA(cudaMemcpy(flag, &one, sizeof one, cudaMemcpyHostToDevice));
  buffer in(32), out(32);
  const auto r = profiled_one([&] { branch_on_load<<<1, 32>>>(flag, in.data, out.data); });
  CHECK_EQ(r.round_trips, 2u);  // the flag, then the load it guards (branched or predicated)
  const std::string j = emu::profile::json(r);
  CHECK_NE(j.find("\"round_trips\":2"), std::string::npos);
  CHECK_NE(j.find("\"warps\":1"), std::string::npos);
  PROFILE_CUDA(cudaFree(flag));
}

TEST_CASE("no session, no records; a record is one JSON object") {
  buffer in(32), out(32);
  strided_load<<<1, 32>>>(in.data, out.data, 1, 0);
  PROFILE_CUDA(cudaDeviceSynchronize());
  CHECK(emu::profile::stop().empty());
  emu::profile::start();  // a session starts empty
  CHECK(emu::profile::stop().empty());
  const auto r = profiled_one([&] { strided_load<<<1, 32>>>(in.data, out.data, 1, 0); });
  const std::string j = emu::profile::json(r);
  CHECK_EQ(j.front(), '{');
  CHECK_EQ(j.back(), '}');
  CHECK_NE(j.find("\"distinct_read_sectors\":4"), std::string::npos);
  CHECK_NE(j.find("\"global_load\":{\"requests\":1,\"sectors\":4,\"bytes\":128}"), std::string::npos);
}
