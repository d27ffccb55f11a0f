// The public tile pieces on one stage of 128-byte rows, against a host product: rows A
// [64, depth] and weight rows B [N, depth] (depth 64 bf16 / fp16 elements, 128 e4m3 codes)
// are written into `swizzled_offset` tiles (cp.async; TMA for B on Hopper) and multiplied by
// `warp::multiply_stage` (mma.sync, sm_80+) or `warpgroup::mma_async` (wgmma, sm_90a: bf16,
// fp16 and e4m3), also on a k-major B tile (`k_major_offset`, B [64, N]), and
// `warp::multiply_stage_e4m3` on an e4m3 weight tile; every thread writes
// its accumulators where the documented fragment layout says they belong, so a wrong swizzle, descriptor or layout
// shows up as a wrong product. And the cp.async wait's rule: a thread reads its own copies
// with plain loads after it.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <type_traits>
#include <vector>

#include "beam/gemm/device_grouped_gemm.cuh"
#include "beam/gemm/tile_mma.cuh"
#include "beam/gemm/tile_wgmma.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

namespace {

constexpr int tile_rows = 64;
//! Elements per 128-byte tile row (the stage's depth): 64 bf16 / fp16, 128 e4m3.
template <class T>
constexpr int row_elements = 128 / int(sizeof(T));

//! The dynamic shared memory from its first 1024-byte boundary (where the swizzle starts).
__device__ char* aligned_smem() {
  extern __shared__ int4 smem[];
  const unsigned misalignment = unsigned(__cvta_generic_to_shared(smem)) % 1024;
  return reinterpret_cast<char*>(smem) + (1024 - misalignment) % 1024;
}

//! Starts this thread's cp.async copies of `rows` rows of 128 bytes into a swizzled tile
//! (swizzled_offset counts 2-byte elements: twice as many e4m3 codes).
template <class T>
__device__ void copy_rows(T* tile, const T* source, int rows) {
  constexpr int chunk = 16 / int(sizeof(T));
  for (int i = int(threadIdx.x); i < rows * 8; i += int(blockDim.x)) {
    beam::block::copy_async_16(tile + beam::block::swizzled_offset(i / 8, i % 8) * 2 / int(sizeof(T)),
                               source + i * chunk, true);
  }
}

//! c[64, N]: thread (warp w, lane) holds rows 16w + lane/4 (+ 8) and columns 8i + 2·(lane%4)
//! (+ 1) in frags[i][0..3].
template <int Frags>
__device__ void store_fragments(float* c, const float (&frags)[Frags][4]) {
  const int row = 16 * int(threadIdx.x / 32) + int(threadIdx.x % 32) / 4, column = 2 * int(threadIdx.x % 4);
  for (int i = 0; i < Frags; ++i) {
    for (int j = 0; j < 4; ++j) c[(row + 8 * (j / 2)) * (8 * Frags) + 8 * i + column + j % 2] = frags[i][j];
  }
}

//! multiply_stage on one stage; KMajorB: b is B `[64, N]` (k rows of N elements), copied into a
//! `k_major_offset` tile, else weight rows `[N, 64]`.
template <class T, int N, bool KMajorB = false>
__global__ void multiply_stage_kernel(const T* a, const T* b, float* c) {
  T* a_tile = reinterpret_cast<T*>(aligned_smem());
  T* b_tile = a_tile + tile_rows * row_elements<T>;
  copy_rows(a_tile, a, tile_rows);
  if constexpr (KMajorB) {
    for (int i = int(threadIdx.x); i < 64 * N / 8; i += int(blockDim.x)) {
      beam::block::copy_async_16(b_tile + beam::block::k_major_offset(i / (N / 8), i % (N / 8)), b + i * 8, true);
    }
  } else {
    copy_rows(b_tile, b, N);
  }
  beam::block::copy_async_commit();
  beam::block::copy_async_wait<0>();
  __syncthreads();
  float acc[1][N / 8][4] = {};
  beam::warp::multiply_stage<T, 1, N / 8, KMajorB>(acc, a_tile, b_tile, 16 * int(threadIdx.x / 32), 0);
  store_fragments(c, acc[0]);
}

//! multiply_stage_e4m3 on one 64-deep stage: A [64, 64] of T in a swizzled tile, W [N, 64] e4m3
//! codes in an `e4m3_tile_offset` tile (64-byte rows, 4 chunks each).
template <class T, int N>
__global__ void multiply_stage_e4m3_kernel(const T* a, const __nv_fp8_e4m3* w, float* c) {
  T* a_tile = reinterpret_cast<T*>(aligned_smem());
  __nv_fp8_e4m3* w_tile = reinterpret_cast<__nv_fp8_e4m3*>(a_tile + tile_rows * 64);
  copy_rows(a_tile, a, tile_rows);
  for (int i = int(threadIdx.x); i < N * 4; i += int(blockDim.x)) {
    beam::block::copy_async_16(w_tile + beam::block::e4m3_tile_offset(i / 4, i % 4), w + i * 16, true);
  }
  beam::block::copy_async_commit();
  beam::block::copy_async_wait<0>();
  __syncthreads();
  float acc[1][N / 8][4] = {};
  beam::warp::multiply_stage_e4m3<T>(acc, a_tile, w_tile, 16 * int(threadIdx.x / 32), 0);
  store_fragments(c, acc[0]);
}

//! multiply_stage_e4m3 against the host product of A and the codes' exact values: every code
//! but NaN's, uniformly, so subnormals and ±448 take part.
template <class T, int N>
void check_e4m3_stage(uint64_t seed) {
  CAPTURE(N);
  CAPTURE(beam::dtype_traits<T>::name);
  const auto a = beam::test::random_values<T>(size_t(tile_rows) * 64, seed);
  std::vector<__nv_fp8_e4m3> w(size_t(N) * 64);
  std::mt19937_64 rng(seed + 1);
  std::vector<double> product(size_t(tile_rows) * N, 0.0);
  for (auto& code : w) {
    code.__x = uint8_t(rng());
    if ((code.__x & 0x7f) == 0x7f) code.__x ^= 1;  // NaN → ±448
  }
  for (int r = 0; r < tile_rows; ++r) {
    for (int j = 0; j < N; ++j) {
      for (int k = 0; k < 64; ++k) {
        product[size_t(r * N + j)] += double(beam::to_float(a[size_t(r * 64 + k)])) * beam::to_float(w[size_t(j * 64 + k)]);
      }
    }
  }
  beam::test::device_vector<T> d_a(a);
  beam::test::device_vector<__nv_fp8_e4m3> d_w(w);
  beam::test::device_vector<float> d_c{size_t(tile_rows) * N};
  d_c.poison();
  multiply_stage_e4m3_kernel<T, N><<<1, 128, 1024 + size_t(tile_rows) * 64 * sizeof(T) + size_t(N) * 64>>>(
      d_a.data(), d_w.data(), d_c.data());
  BEAM_CUDA_TRY(cudaGetLastError());
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  // Exact T × e4m3 products (both exact in T), fp32 accumulation of 64 of them.
  CHECK(beam::test::relative_error(d_c.to_host(), product) <= 1e-5);
}

//! Each thread copies its own 16-byte chunk into shared memory (poisoned by the emulator), waits
//! and reads the chunk back with a plain load, no barrier: copy_async_wait's "memory" clobber
//! keeps the load after the wait, and the compiler from treating the chunk as never written.
__global__ void copy_wait_read_kernel(const int4* in, int4* out) {
  __shared__ int4 chunks[128];
  beam::block::copy_async_16(&chunks[threadIdx.x], in + threadIdx.x, true);
  beam::block::copy_async_commit();
  beam::block::copy_async_wait<0>();
  out[threadIdx.x] = chunks[threadIdx.x];
}

//! 1 where this kernel was compiled with sm_90a features (wgmma), else 0.
__global__ void has_wgmma_kernel(int* flag) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *flag = 1;
#else
  *flag = 0;
#endif
}

template <class T, int N>
__global__ void wgmma_stage_kernel(const __grid_constant__ CUtensorMap b_map, const T* a, float* c) {
  constexpr int depth = row_elements<T>, step = 32 / int(sizeof(T));  // a 32-byte k step
  T* a_tile = reinterpret_cast<T*>(aligned_smem());
  T* b_tile = a_tile + tile_rows * depth;
  uint64_t* landed = reinterpret_cast<uint64_t*>(b_tile + N * depth);
  if (threadIdx.x == 0) {
    beam::block::init_barrier(landed, 128 + 1);  // every thread's copies and the TMA bytes
    beam::block::fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    beam::block::arrive_expecting_bytes(landed, N * depth * sizeof(T));
    beam::block::copy_tensor_tile(b_tile, &b_map, 0, 0, 0, 0, landed);
  }
  copy_rows(a_tile, a, tile_rows);
  beam::block::arrive_after_copies(landed);
  beam::block::wait_barrier(landed, 0);
  __syncwarp();
  beam::block::fence_async_proxy();
  float d[N / 8][4] = {};
  beam::warpgroup::fence_operands(d);
  beam::warpgroup::mma_fence();
  for (int s = 0; s < depth / step; ++s) {
    beam::warpgroup::mma_async<T, N>(d, beam::warpgroup::swizzled_tile_descriptor(a_tile + step * s),
                                     beam::warpgroup::swizzled_tile_descriptor(b_tile + step * s));
  }
  beam::warpgroup::mma_commit();
  beam::warpgroup::mma_wait<0>();
  beam::warpgroup::fence_operands(d);
  store_fragments(c, d);
}

//! A · Bᵀ in double, [64, N].
template <class T>
std::vector<double> host_product(const std::vector<T>& a, const std::vector<T>& b, int n) {
  constexpr int depth = row_elements<T>;
  std::vector<double> c(size_t(tile_rows) * n);
  for (int r = 0; r < tile_rows; ++r) {
    for (int j = 0; j < n; ++j) {
      double sum = 0;
      for (int k = 0; k < depth; ++k) {
        sum += double(beam::to_float(a[size_t(r * depth + k)])) * beam::to_float(b[size_t(j * depth + k)]);
      }
      c[size_t(r * n + j)] = sum;
    }
  }
  return c;
}

template <class T, int N, bool Wgmma, bool KMajorB = false>
void check_stage(uint64_t seed) {
  constexpr int depth = row_elements<T>;
  CAPTURE(N);
  CAPTURE(Wgmma);
  CAPTURE(KMajorB);
  CAPTURE(beam::dtype_traits<T>::name);
  // e4m3: integers in [−8, 8], so that every partial sum (|sum| ≤ 128 · 64 = 2¹³) is exact in
  // the few accumulator bits Hopper's fp8 wgmma keeps; bf16 / fp16: N(0, 1).
  const auto values = [&](size_t n, uint64_t s) {
    std::vector<T> v = beam::test::random_values<T>(n, s);
    if constexpr (sizeof(T) == 1) {
      for (T& x : v) x = beam::from_float<T>(std::clamp(std::round(2.0f * beam::to_float(x)), -8.0f, 8.0f));
    }
    return v;
  };
  const auto a = values(size_t(tile_rows) * depth, seed);
  const auto b = values(size_t(N) * depth, seed + 1);
  std::vector<T> b_kn(b.size());  // B as [depth, N]
  for (int j = 0; j < N; ++j) {
    for (int k = 0; k < depth; ++k) b_kn[size_t(k * N + j)] = b[size_t(j * depth + k)];
  }
  beam::test::device_vector<T> d_a(a), d_b(KMajorB ? b_kn : b);
  beam::test::device_vector<float> d_c{size_t(tile_rows) * N};
  d_c.poison();
  const size_t smem = 1024 + size_t(tile_rows + N) * depth * sizeof(T) + sizeof(uint64_t);
  if constexpr (Wgmma) {
    // B as the 4-D map the grouped GEMM uses: (K, rows, 1, 1), one box of (64, N, 1, 1).
    const auto encode = beam::device::detail::tensor_map_encoder();
    REQUIRE(bool(encode));
    CUtensorMap map;
    const cuuint64_t dims[4] = {depth, N, 1, 1};
    const cuuint64_t strides[3] = {depth * sizeof(T), N * depth * sizeof(T), N * depth * sizeof(T)};
    const cuuint32_t box[4] = {depth, N, 1, 1}, element_strides[4] = {1, 1, 1, 1};
    const CUtensorMapDataType type = std::is_same_v<T, __half>          ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                     : std::is_same_v<T, __nv_bfloat16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                        : CU_TENSOR_MAP_DATA_TYPE_UINT8;
    REQUIRE(encode(&map, type, 4, d_b.data(), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                   CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS);
    wgmma_stage_kernel<T, N><<<1, 128, smem>>>(map, d_a.data(), d_c.data());
  } else {
    multiply_stage_kernel<T, N, KMajorB><<<1, 128, smem>>>(d_a.data(), d_b.data(), d_c.data());
  }
  BEAM_CUDA_TRY(cudaGetLastError());
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  // fp32 accumulation of 64 (e4m3: 128) exact products: far inside 1e-5 of the double product.
  CHECK(beam::test::relative_error(d_c.to_host(), host_product(a, b, N)) <= 1e-5);
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("block::copy_async_wait: a thread's plain loads after the wait see its copied bytes") {
    BEAM_REQUIRE_GPU();
    std::vector<int4> in(128);
    for (int i = 0; i < 128; ++i) in[size_t(i)] = make_int4(i, -i, 3 * i + 1, 12345);
    beam::test::device_vector<int4> d_in(in), d_out{128};
    copy_wait_read_kernel<<<1, 128>>>(d_in.data(), d_out.data());
    BEAM_CUDA_TRY(cudaGetLastError());
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto out = d_out.to_host();
    for (int i = 0; i < 128; ++i) {
      CHECK((out[size_t(i)].x == i && out[size_t(i)].y == -i && out[size_t(i)].z == 3 * i + 1 &&
             out[size_t(i)].w == 12345));
    }
  }

  TEST_CASE("warp::multiply_stage on swizzled tiles equals the host product (N = 64, 128; bf16, fp16)") {
    BEAM_REQUIRE_GPU();
    check_stage<__nv_bfloat16, 64, false>(101);
    check_stage<__nv_bfloat16, 128, false>(103);
    check_stage<__half, 64, false>(105);
    check_stage<__half, 128, false>(107);
  }

  TEST_CASE("warp::multiply_stage on a k-major B tile (B [64, N], ldmatrix.trans) equals the host product") {
    BEAM_REQUIRE_GPU();
    check_stage<__nv_bfloat16, 64, false, true>(109);
    check_stage<__nv_bfloat16, 128, false, true>(111);
    check_stage<__half, 128, false, true>(113);
  }

  TEST_CASE("warp::multiply_stage_e4m3 on an e4m3 weight tile equals the host product (N = 16, 64; bf16, fp16)") {
    BEAM_REQUIRE_GPU();
    check_e4m3_stage<__nv_bfloat16, 16>(111);
    check_e4m3_stage<__nv_bfloat16, 64>(113);
    check_e4m3_stage<__half, 16>(115);
    check_e4m3_stage<__half, 64>(117);
  }

  TEST_CASE("warpgroup::mma_async with a TMA-loaded B equals the host product (N = 64, 128, 256; bf16, fp16, e4m3)") {
    BEAM_REQUIRE_GPU();
    int device = 0, major = 0;
    BEAM_CUDA_TRY(cudaGetDevice(&device));
    BEAM_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    int has_wgmma = 0;
    if (major == 9) {
      beam::test::device_vector<int> flag{1};
      has_wgmma_kernel<<<1, 1>>>(flag.data());
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      has_wgmma = flag.to_host()[0];
    }
    if (!has_wgmma) {
      MESSAGE("skipped: wgmma needs an sm_90 device and an sm_90a build");
      return;
    }
    check_stage<__nv_bfloat16, 64, true>(201);
    check_stage<__nv_bfloat16, 128, true>(203);
    check_stage<__nv_bfloat16, 256, true>(205);
    check_stage<__half, 64, true>(207);
    check_stage<__half, 128, true>(209);
    check_stage<__half, 256, true>(211);
    check_stage<__nv_fp8_e4m3, 64, true>(213);
    check_stage<__nv_fp8_e4m3, 128, true>(215);
    check_stage<__nv_fp8_e4m3, 256, true>(217);
  }
}
