// beam::device::grouped_weight_grad against beam::reference::grouped_matmul_tn: bf16 and fp16
// operands, float and bf16 gradients, contiguous and gathered B (pair indices that name no pair
// among them), groups with no rows (zeros), partial tiles of M, N and rows, bitwise repeatability.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "beam/gemm/device_weight_grad.cuh"
#include "beam/reference/gemm.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

namespace ref = beam::reference;
using beam::device::gemm_a;
using beam::device::gemm_groups;
using bf16 = __nv_bfloat16;

TEST_CASE("grouped_weight_grad rejects bad arguments before touching the device") {
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  float* c = reinterpret_cast<float*>(0x2000);
  const int32_t* offsets = reinterpret_cast<const int32_t*>(0x3000);
  const gemm_a<bf16> a{fake, 64}, b{fake, 128};
  const gemm_groups groups{offsets, 4, 100, 100};
  const auto call = [&](const gemm_a<bf16>& a_, const gemm_a<bf16>& b_, int m, int n, const gemm_groups& g, float* c_,
                        int64_t c_stride, int64_t c_group_stride) {
    return beam::device::grouped_weight_grad<bf16, float>(a_, b_, m, n, g, c_, c_stride, c_group_stride);
  };
  CHECK(call(a, b, 60, 128, groups, c, 128, 64 * 128) == cudaErrorInvalidValue);   // M % 8
  CHECK(call(a, b, 0, 128, groups, c, 128, 64 * 128) == cudaErrorInvalidValue);    // M = 0
  CHECK(call({fake, 65535 * 64 + 8}, b, 65535 * 64 + 8, 128, groups, c, 128, (65535 * 64 + 8) * int64_t(128)) ==
        cudaErrorInvalidValue);  // more M tiles than a grid dimension holds
  CHECK(call(a, b, 64, 132, groups, c, 136, 64 * 136) == cudaErrorInvalidValue);  // N % 8
  CHECK(call(a, b, 64, 128, {offsets, 0, 100, 100}, c, 128, 64 * 128) == cudaErrorInvalidValue);  // no group
  CHECK(call(a, b, 64, 128, {nullptr, 4, 100, 100}, c, 128, 64 * 128) == cudaErrorInvalidValue);  // no offsets: 1 group
  CHECK(call(a, b, 64, 128, {nullptr, 4, 100, 100, offsets, 25}, c, 128, 64 * 128) == cudaErrorInvalidValue);  // packed
  CHECK(call(a, b, 64, 128, {offsets, 4, -1, 100}, c, 128, 64 * 128) == cudaErrorInvalidValue);    // rows < 0
  CHECK(call({nullptr, 64}, b, 64, 128, groups, c, 128, 64 * 128) == cudaErrorInvalidValue);
  CHECK(call({fake + 4, 64}, b, 64, 128, groups, c, 128, 64 * 128) == cudaErrorInvalidValue);    // misaligned
  CHECK(call({fake, 56}, b, 64, 128, groups, c, 128, 64 * 128) == cudaErrorInvalidValue);        // stride < M
  CHECK(call({fake, 64, offsets, 8}, b, 64, 128, groups, c, 128, 64 * 128) == cudaErrorInvalidValue);  // A gathered
  CHECK(call(a, {fake, 120}, 64, 128, groups, c, 128, 64 * 128) == cudaErrorInvalidValue);       // stride < N
  CHECK(call(a, {fake, 128, offsets, 0}, 64, 128, groups, c, 128, 64 * 128) == cudaErrorInvalidValue);  // top_k 0
  CHECK(call(a, b, 64, 128, groups, nullptr, 128, 64 * 128) == cudaErrorInvalidValue);
  CHECK(call(a, b, 64, 128, groups, c + 2, 128, 64 * 128) == cudaErrorInvalidValue);              // misaligned C
  CHECK(call(a, b, 64, 128, groups, c, 120, 64 * 128) == cudaErrorInvalidValue);                  // c_stride < N
  CHECK(call(a, b, 64, 128, groups, c, 128, 63 * 128) == cudaErrorInvalidValue);                  // groups overlap
}

namespace {

//! The groups' row counts `counts`; A `[rows, M]` and B (`[rows, N]`, or with `gather` `[T, N]`
//! read through pair indices, every 7th of which names no pair) in storage type T; C in OutT,
//! padded strides; against the double reference with the storage type's tolerance, and bitwise
//! equal on a second run. Groups without rows: exact zeros.
template <class T, class OutT>
void check_weight_grad(const std::vector<int32_t>& counts, int M, int N, bool gather, uint64_t seed,
                       bool without_offsets = false) {
  CAPTURE(without_offsets);
  CAPTURE(M);
  CAPTURE(N);
  CAPTURE(gather);
  CAPTURE(beam::dtype_traits<T>::name);
  CAPTURE(beam::dtype_traits<OutT>::name);
  const int E = int(counts.size());
  std::vector<int32_t> offsets(size_t(E) + 1, 0);
  for (int e = 0; e < E; ++e) offsets[size_t(e) + 1] = offsets[size_t(e)] + counts[size_t(e)];
  const int64_t rows = offsets.back(), K = 4, T_ = std::max<int64_t>((rows + K - 1) / K, 1), P = T_ * K;
  const int64_t a_stride = M + 8, b_stride = N + 16, c_stride = N + 8, c_group_stride = int64_t(M) * c_stride + 8;
  const auto a = beam::test::random_values<T>(size_t(std::max<int64_t>(rows, 1) * a_stride), seed);
  const auto b = beam::test::random_values<T>(size_t((gather ? T_ : std::max<int64_t>(rows, 1)) * b_stride), seed + 1);
  std::vector<int32_t> pairs(size_t(std::max<int64_t>(rows, 1)));
  std::vector<int64_t> sources(pairs.size());
  std::mt19937_64 rng(seed + 2);
  for (int64_t r = 0; r < rows; ++r) {
    pairs[size_t(r)] = r % 7 == 3 ? int32_t(P + r % 2) : int32_t(rng() % uint64_t(P));  // P, P + 1: no pair
    sources[size_t(r)] = gather ? (pairs[size_t(r)] < P ? pairs[size_t(r)] / K : -1) : r;
  }
  const auto af = beam::test::as_float(a), bf = beam::test::as_float(b);
  const auto expected = ref::grouped_matmul_tn(af.data(), a_stride, bf.data(), b_stride, sources.data(), M, N, offsets);

  beam::test::device_vector<T> d_a(a), d_b(b);
  beam::test::device_vector<int32_t> d_offsets(offsets), d_pairs(pairs);
  const size_t c_size = size_t(E * c_group_stride);
  beam::test::device_vector<OutT> c{c_size}, again{c_size};
  c.poison();
  again.poison();
  const gemm_a<T> a_op{d_a.data(), a_stride};
  const gemm_a<T> b_op{d_b.data(), b_stride, gather ? d_pairs.data() : nullptr, int(K)};
  const gemm_groups groups{without_offsets ? nullptr : d_offsets.data(), E, rows, P};
  REQUIRE(beam::test::with_pending_error([&] {
            return beam::device::grouped_weight_grad<T, OutT>(a_op, b_op, M, N, groups, c.data(), c_stride,
                                                              c_group_stride);
          }) == cudaSuccess);
  REQUIRE(beam::device::grouped_weight_grad<T, OutT>(a_op, b_op, M, N, groups, again.data(), c_stride,
                                                     c_group_stride) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const auto got = c.to_host();
  const auto got_again = again.to_host();
  CHECK(std::memcmp(got.data(), got_again.data(), got.size() * sizeof(OutT)) == 0);  // bitwise deterministic
  std::vector<float> dense(size_t(E) * M * N);
  for (int e = 0; e < E; ++e)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        dense[size_t((int64_t(e) * M + i) * N + j)] = beam::to_float(got[size_t(e * c_group_stride + i * c_stride + j)]);
  // float gradients: the fp32 sum's error; bf16 / fp16: one rounding of the result
  const double tolerance = std::is_same_v<OutT, float> ? 1e-5 : beam::dtype_traits<OutT>::tolerance;
  CHECK(beam::test::relative_error(dense, expected) <= tolerance);
  for (int e = 0; e < E; ++e) {
    if (counts[size_t(e)] != 0) continue;
    CAPTURE(e);
    const auto begin = dense.begin() + int64_t(e) * M * N;
    CHECK(std::all_of(begin, begin + int64_t(M) * N, [](float v) { return v == 0.0f && !std::signbit(v); }));
  }
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("grouped_weight_grad equals the reference: C_e = A_eᵀ · B_e over each expert's rows") {
    BEAM_REQUIRE_GPU();
    uint64_t seed = 80000;
    // An empty first and middle group, one row, a partial stage (33), several stages (70).
    const std::vector<int32_t> counts{0, 1, 33, 0, 70};
    for (bool gather : {false, true}) {
      check_weight_grad<bf16, float>(counts, 64, 64, gather, seed += 10);   // whole tiles
      check_weight_grad<bf16, float>(counts, 72, 136, gather, seed += 10);  // partial tiles of M and N
      check_weight_grad<__half, float>(counts, 8, 24, gather, seed += 10);
      check_weight_grad<bf16, bf16>(counts, 40, 72, gather, seed += 10);
    }
    check_weight_grad<bf16, float>({0, 0, 0}, 16, 16, false, seed += 10);  // no rows at all: zeros
    // Without offsets: one group of all the rows (a dense layer), gathered or not.
    check_weight_grad<bf16, float>({103}, 72, 136, false, seed += 10, true);
    check_weight_grad<__half, bf16>({45}, 16, 40, true, seed += 10, true);
  }

  TEST_CASE("grouped_weight_grad: a NaN and an Inf in A reach exactly their experts' rows of C") {
    BEAM_REQUIRE_GPU();
    // Groups of 5 and 7 rows; A[1][3] = NaN (group 0, C_0 row 3), A[9][10] = Inf (group 1, C_1 row 10).
    const int M = 16, N = 24;
    auto a = beam::test::random_values<bf16>(size_t(12 * M), 90011);
    const auto b = beam::test::random_values<bf16>(size_t(12 * N), 90012);
    a[size_t(1 * M + 3)] = beam::from_float<bf16>(std::numeric_limits<float>::quiet_NaN());
    a[size_t(9 * M + 10)] = beam::from_float<bf16>(std::numeric_limits<float>::infinity());
    const std::vector<int32_t> offsets{0, 5, 12};
    const auto af = beam::test::as_float(a), bf = beam::test::as_float(b);
    const auto expected = ref::grouped_matmul_tn(af.data(), M, bf.data(), N, nullptr, M, N, offsets);
    beam::test::device_vector<bf16> d_a(a), d_b(b);
    beam::test::device_vector<int32_t> d_offsets(offsets);
    beam::test::device_vector<float> c{size_t(2 * M * N)};
    c.poison();
    REQUIRE(beam::device::grouped_weight_grad<bf16, float>({d_a.data(), M}, {d_b.data(), N}, M, N,
                                                           {d_offsets.data(), 2, 12, 12}, c.data(), N, M * N) ==
            cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto got = c.to_host();
    int wrong = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double want = expected[i];
      if (!std::isfinite(want)) {  // NaN rows stay NaN; the Inf row is ±Inf (or NaN where B is 0)
        wrong += std::isnan(want) ? !std::isnan(got[i]) : !(double(got[i]) == want || std::isnan(got[i]));
      } else {
        wrong += !(std::fabs(double(got[i]) - want) <= 1e-5 * (1.0 + std::fabs(want)) * 16);
      }
    }
    CHECK(wrong == 0);
    int non_finite = 0;
    for (float v : got) non_finite += !std::isfinite(v);
    CHECK(non_finite == 2 * N);  // row 3 of C_0 and row 10 of C_1, nothing else
  }

  TEST_CASE("grouped_weight_grad reads no row beyond the static bound, whatever the offsets say") {
    BEAM_REQUIRE_GPU();
    // 40 rows; the offsets claim 70 for the last group: only rows 30..39 count, as if it had 10.
    const int M = 16, N = 16;
    const auto a = beam::test::random_values<bf16>(size_t(40 * M), 90001);
    const auto b = beam::test::random_values<bf16>(size_t(40 * N), 90002);
    const std::vector<int32_t> claimed{0, 30, 70}, clamped{0, 30, 40};
    const auto af = beam::test::as_float(a), bf = beam::test::as_float(b);
    const auto expected = ref::grouped_matmul_tn(af.data(), M, bf.data(), N, nullptr, M, N, clamped);
    beam::test::device_vector<bf16> d_a(a), d_b(b);
    beam::test::device_vector<int32_t> d_offsets(claimed);
    beam::test::device_vector<float> c{size_t(2 * M * N)};
    c.poison();
    REQUIRE(beam::device::grouped_weight_grad<bf16, float>({d_a.data(), M}, {d_b.data(), N}, M, N,
                                                           {d_offsets.data(), 2, 40, 40}, c.data(), N, M * N) ==
            cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    CHECK(beam::test::relative_error(c.to_host(), expected) <= 1e-5);
  }
}
