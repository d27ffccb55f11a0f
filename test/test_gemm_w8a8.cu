// W8A8 (weights.cuh): activation_scale and the reference's 1 × 128 quantisation hand-worked;
// beam::device::quantize_activations against beam::reference::quantize_activations, bit for
// bit; and the W8A8 grouped GEMM (the Hopper kernel) against the reference on the dequantised
// activations and weights, or its refusal where the Hopper kernel cannot run.
#include <doctest/doctest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "beam/gemm/device_grouped_gemm.cuh"
#include "beam/gemm/device_quantize.cuh"
#include "beam/reference/gemm.cuh"
#include "beam/reference/permute.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

namespace {

namespace ref = beam::reference;
using beam::device::gemm_epilogue;
using beam::device::gemm_schedule;
using beam::weight_scales;
using e4m3 = __nv_fp8_e4m3;
using bf16 = __nv_bfloat16;

bool nan_code(uint8_t code) { return (code & 0x7f) == 0x7f; }

//! Codes equal bit for bit, NaN codes as NaN codes (the sign of a NaN is not specified).
bool same_code(e4m3 a, e4m3 b) { return a.__x == b.__x || (nan_code(a.__x) && nan_code(b.__x)); }

//! Activations [rows, K] (row stride K + 24) with rows scaled by 2^(lowest .. highest) so that the
//! scales' exponents range widely, a row of zeros, and subnormal-sized values.
std::vector<bf16> spread_activations(int64_t rows, int k, uint64_t seed, int lowest = -100, int highest = 60) {
  auto a = beam::test::random_values<bf16>(size_t(rows * (k + 24)), seed);
  std::mt19937_64 rng(seed + 1);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::exp2(float(lowest + int(rng() % uint64_t(highest - lowest + 1))));
    for (int i = 0; i < k + 24; ++i) {
      float v = beam::to_float(a[size_t(r * (k + 24) + i)]) * scale;
      if (r == 1) v = 0.0f;
      a[size_t(r * (k + 24) + i)] = beam::from_float<bf16>(v);
    }
  }
  return a;
}

struct w8a8_case {
  int64_t tokens;
  int top_k, experts, n, k;
  double masked;
  bool gather;
  gemm_epilogue epilogue;
  gemm_schedule schedule;
};

//! The W8A8 grouped GEMM on a routed problem against the reference on Q_A·s_A and Q_B·s_B, on
//! the activations' codes and scales with padded strides (NaN past K, a read past the row
//! shows); or, where the Hopper kernel cannot run, cudaErrorInvalidDeviceFunction and C untouched.
template <class OutT>
void check_w8a8(const w8a8_case& c, weight_scales scaling, uint64_t seed) {
  CAPTURE(c.tokens);
  CAPTURE(c.experts);
  CAPTURE(c.n);
  CAPTURE(c.k);
  CAPTURE(c.masked);
  CAPTURE(c.gather);
  CAPTURE(int(c.epilogue));
  CAPTURE(int(c.schedule));
  CAPTURE(int(scaling));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int32_t> ids(size_t(c.tokens * c.top_k));
  for (int64_t t = 0; t < c.tokens; ++t) {
    std::vector<int> pool(size_t(c.experts));
    for (int e = 0; e < c.experts; ++e) pool[size_t(e)] = e;
    std::shuffle(pool.begin(), pool.end(), rng);
    for (int j = 0; j < c.top_k; ++j) ids[size_t(t * c.top_k + j)] = u(rng) < c.masked ? -1 : pool[size_t(j)];
  }
  const ref::compaction perm = ref::compact(ids.data(), c.tokens, c.top_k, c.experts);
  const bool swiglu = c.epilogue == gemm_epilogue::swiglu;
  const int64_t rows_bound = c.tokens * c.top_k, n_active = perm.n_active, a_rows = c.gather ? c.tokens : rows_bound;
  const int64_t groups = (c.k + 127) / 128, a_stride = c.k + 16, s_stride = groups + 3;
  const int64_t c_cols = swiglu ? c.n / 2 : c.n, c_stride = c_cols + 8;
  // A's codes and scales, with NaN codes past K and NaN scales past the groups.
  // Rows scaled by powers of two (so that the scales' exponents, hence their indexing, vary)
  // that the output type holds: 2^(−100 .. 60), for SwiGLU's products of two sums 2^(−40 .. 20);
  // fp16 gets unscaled rows.
  const auto x = std::is_same_v<OutT, __half>
                     ? beam::test::random_values<bf16>(size_t(std::max<int64_t>(a_rows, 1) * (c.k + 24)), seed + 1)
                     : spread_activations(std::max<int64_t>(a_rows, 1), c.k, seed + 1, swiglu ? -40 : -100,
                                          swiglu ? 20 : 60);
  const ref::quantized_activations q = ref::quantize_activations(x.data(), c.k + 24, a_rows, c.k);
  std::vector<e4m3> codes(size_t(std::max<int64_t>(a_rows, 1) * a_stride));
  std::vector<float> scales(size_t(std::max<int64_t>(a_rows, 1) * s_stride), NAN);
  for (e4m3& code : codes) code.__x = 0x7f;
  for (int64_t r = 0; r < a_rows; ++r) {
    std::copy_n(q.codes.begin() + r * c.k, c.k, codes.begin() + r * a_stride);
    std::copy_n(q.scales.begin() + r * groups, groups, scales.begin() + r * s_stride);
  }
  const std::vector<double> a_values = ref::dequantize_activations(q, a_rows, c.k);
  // B: every finite code, scales in [2⁻¹⁰, 2⁻⁴].
  std::vector<e4m3> w(size_t(c.experts) * size_t(c.n) * size_t(c.k));
  for (e4m3& code : w) {
    code.__x = uint8_t(rng());
    if (nan_code(code.__x)) code.__x ^= 1;
  }
  std::vector<float> w_scales(size_t(c.experts * beam::scales_per_expert(scaling, c.n, c.k, swiglu ? 2 : 1)) + 1);
  for (float& s : w_scales) s = std::exp2(-10.0f + 6.0f * float(u(rng)));
  const auto w_values = ref::dequantize_weights(w.data(), w_scales.data(), scaling, c.experts, c.n, c.k, swiglu ? 2 : 1);
  const auto row_scales = beam::test::random_normal<float>(size_t(std::max<int64_t>(rows_bound, 1)), seed + 3);

  std::vector<int64_t> sources(static_cast<size_t>(n_active));
  for (int64_t r = 0; r < n_active; ++r) sources[size_t(r)] = c.gather ? perm.token_of_row(r) : r;
  const auto acc = ref::grouped_matmul_nt(a_values.data(), c.k, sources.data(), w_values.data(), c.n, c.k, perm.offsets);
  // The bound on each output's error: the products' accumulation, 2⁻¹⁰ · Σ |a · w| (the tensor
  // cores sum fp8 products in about 14 bits, four k32 steps per promoted block), carried through
  // the epilogue; plus the output type's rounding of the value.
  std::vector<double> a_abs(a_values), w_abs(w_values);
  for (double& v : a_abs) v = std::abs(v);
  for (double& v : w_abs) v = std::abs(v);
  const auto magnitude = ref::grouped_matmul_nt(a_abs.data(), c.k, sources.data(), w_abs.data(), c.n, c.k, perm.offsets);
  constexpr double accumulation = 0x1p-10;
  std::vector<double> expected = swiglu ? ref::swiglu_columns(acc, c.n) : acc, bound(expected.size());
  for (int64_t r = 0; r < n_active; ++r) {
    for (int64_t j = 0; j < int64_t(c_cols); ++j) {
      const size_t at = size_t(r * c_cols + j);
      if (swiglu) {  // |δ silu(g)·u| ≤ 1.1 |u| δg + |silu(g)| δu
        const double g = acc[size_t(r * c.n + j)], up = acc[size_t(r * c.n + c.n / 2 + j)];
        bound[at] = accumulation * (1.1 * std::abs(up) * magnitude[size_t(r * c.n + j)] +
                                    std::abs(beam::silu(g)) * magnitude[size_t(r * c.n + c.n / 2 + j)]);
      } else {
        bound[at] = accumulation * magnitude[at];
      }
    }
  }
  const bool scatter = c.epilogue == gemm_epilogue::scatter_add;
  if (c.epilogue == gemm_epilogue::scale_rows || scatter) {
    for (int64_t r = 0; r < n_active; ++r) {
      const double scale = row_scales[size_t(perm.sorted_pairs[size_t(r)])];
      for (int64_t j = 0; j < c.n; ++j) {
        expected[size_t(r * c.n + j)] *= scale;
        bound[size_t(r * c.n + j)] *= std::abs(scale);
      }
    }
  }
  // What the output type's roundings are relative to: the value, or for scatter_add the sum of
  // the magnitudes of the rows it adds (every partial sum rounds).
  std::vector<double> rounded_magnitude(expected.size());
  for (size_t i = 0; i < expected.size(); ++i) rounded_magnitude[i] = std::abs(expected[i]);
  if (scatter) {  // C [T, N]: each token's rows added into its row
    std::vector<double> added(size_t(c.tokens * c.n), 0.0), added_bound(added.size(), 0.0),
        added_magnitude(added.size(), 0.0);
    for (int64_t r = 0; r < n_active; ++r) {
      for (int64_t j = 0; j < c.n; ++j) {
        const size_t to = size_t(perm.token_of_row(r) * c.n + j), from = size_t(r * c.n + j);
        added[to] += expected[from];
        added_bound[to] += bound[from];
        added_magnitude[to] += rounded_magnitude[from];
      }
    }
    expected = added;
    bound = added_bound;
    rounded_magnitude = added_magnitude;
  }

  beam::test::device_vector<e4m3> d_codes(codes), d_w(w);
  beam::test::device_vector<float> d_scales(scales), d_w_scales(w_scales), d_row_scales(row_scales);
  beam::test::device_vector<int32_t> d_offsets(perm.offsets),
      d_pairs(perm.sorted_pairs.empty() ? std::vector<int32_t>(1) : perm.sorted_pairs);
  const int64_t out_rows = scatter ? c.tokens : rows_bound;
  beam::test::device_vector<OutT> d_c{size_t(std::max<int64_t>(out_rows, 1) * c_stride)};
  d_c.poison();
  if (scatter) BEAM_CUDA_TRY(cudaMemset(d_c.data(), 0, size_t(out_rows * c_stride) * sizeof(OutT)));
  const beam::device::gemm_a<e4m3> ga{d_codes.data(), a_stride, c.gather ? d_pairs.data() : nullptr, c.top_k,
                                      d_scales.data(), s_stride};
  const beam::device::gemm_b<e4m3> gb{d_w.data(), c.k, int64_t(c.n) * c.k, d_w_scales.data(), scaling};
  const beam::device::gemm_groups gg{d_offsets.data(), c.experts, rows_bound, rows_bound};
  const beam::device::gemm_output<OutT> out{d_c.data(), c_stride, c.epilogue, d_row_scales.data(), d_pairs.data(),
                                            c.top_k};
  const cudaError_t status = beam::device::grouped_gemm<OutT>(ga, gb, c.n, c.k, gg, out, c.schedule);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const auto got_padded = d_c.to_host();
  if (rows_bound > 0 && !beam::test::hopper_kernels_expected()) {
    CHECK(status == cudaErrorInvalidDeviceFunction);
    for (const OutT& v : got_padded) CHECK((scatter ? beam::to_float(v) == 0.0f : std::isnan(beam::to_float(v))));
    return;  // nothing launched
  }
  REQUIRE(status == cudaSuccess);
  const int64_t got_rows = scatter ? c.tokens : n_active;
  std::vector<float> got(size_t(got_rows * c_cols));
  for (int64_t r = 0; r < got_rows; ++r) {
    for (int64_t j = 0; j < c_cols; ++j) got[size_t(r * c_cols + j)] = beam::to_float(got_padded[size_t(r * c_stride + j)]);
  }
  // The output type's rounding: half an ulp of bf16 / fp16 per store (scatter_add: per addition), none for float.
  const double rounding = std::is_same_v<OutT, float> ? 0.0 : std::is_same_v<OutT, bf16> ? 0x1p-8 : 0x1p-11;
  int outside = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double additions = scatter ? double(c.top_k) : 1.0;
    outside += !(std::abs(double(got[i]) - expected[i]) <= bound[i] + additions * rounding * rounded_magnitude[i]);
  }
  CHECK(outside == 0);
  for (int64_t r = 0; r < out_rows; ++r) {  // rows past n_active and columns past the output: never written
    for (int64_t j = r < got_rows ? c_cols : 0; j < c_stride; ++j) {
      const float v = beam::to_float(got_padded[size_t(r * c_stride + j)]);
      CHECK((scatter ? v == 0.0f : std::isnan(v)));
    }
  }
}

//! NaN in row 3 and Inf in row 30 of the activations (two experts: rows [0, 17) and [17, 40)):
//! the NaN's code is NaN; the Inf's group gets an infinite scale (its code NaN, the others ±0:
//! every value of the group NaN), so every output of those rows is NaN, as in the reference,
//! and no other row is touched.
void check_w8a8_non_finite(gemm_schedule schedule) {
  CAPTURE(int(schedule));
  const int64_t rows = 40;
  const int n = 24, k = 256;
  auto x = beam::test::random_values<bf16>(size_t(rows * k), 91);
  x[size_t(3 * k + 5)] = beam::from_float<bf16>(NAN);
  x[size_t(30 * k + 200)] = beam::from_float<bf16>(INFINITY);
  const ref::quantized_activations q = ref::quantize_activations(x.data(), k, rows, k);
  std::vector<e4m3> w(size_t(2 * n * k));
  std::mt19937_64 rng(92);
  for (e4m3& code : w) code.__x = uint8_t(rng() % 0x7f);  // positive finite codes, 0 included
  std::vector<float> w_scales(size_t(2 * n), 0.25f);
  const std::vector<int32_t> offsets = {0, 17, int32_t(rows)};
  auto a_values = ref::dequantize_activations(q, rows, k);
  auto w_values = ref::dequantize_weights(w.data(), w_scales.data(), weight_scales::per_channel, 2, n, k);
  const auto expected = ref::grouped_matmul_nt(a_values.data(), k, nullptr, w_values.data(), n, k, offsets);
  // The accumulation bound of check_w8a8: 2⁻¹⁰ · Σ |a · w|
  for (double& v : a_values) v = std::abs(v);
  for (double& v : w_values) v = std::abs(v);
  const auto magnitude = ref::grouped_matmul_nt(a_values.data(), k, nullptr, w_values.data(), n, k, offsets);
  beam::test::device_vector<e4m3> d_codes(q.codes), d_w(w);
  beam::test::device_vector<float> d_scales(q.scales), d_w_scales(w_scales), d_c{size_t(rows * n)};
  beam::test::device_vector<int32_t> d_offsets(std::vector<int32_t>{0, 17, int32_t(rows)});
  const cudaError_t status = beam::device::grouped_gemm<float>(
      {d_codes.data(), k, nullptr, 1, d_scales.data(), 2},
      {d_w.data(), k, int64_t(n) * k, d_w_scales.data(), weight_scales::per_channel}, n, k, {d_offsets.data(), 2, rows},
      {d_c.data(), n}, schedule);
  if (!beam::test::hopper_kernels_expected()) {
    CHECK(status == cudaErrorInvalidDeviceFunction);
    return;
  }
  REQUIRE(status == cudaSuccess);
  const auto got = d_c.to_host();
  for (int64_t r = 0; r < rows; ++r) {
    for (int j = 0; j < n; ++j) {
      const double want = expected[size_t(r * n + j)], have = got[size_t(r * n + j)];
      if (r == 3 || r == 30) {
        CHECK(std::isnan(want));
        CHECK(std::isnan(have));
      } else {
        CHECK(std::abs(have - want) <= 0x1p-10 * magnitude[size_t(r * n + j)]);
      }
    }
  }
}

}  // namespace

TEST_CASE("activation_scale: the least power of two 2^e >= amax / 448, e >= -126; +Inf for an infinite amax") {
  CHECK(beam::activation_scale(448.0f) == 1.0f);
  CHECK(beam::activation_scale(449.0f) == 2.0f);
  CHECK(beam::activation_scale(896.0f) == 2.0f);
  CHECK(beam::activation_scale(1.0f) == 0x1p-8f);  // 1 / 2⁻⁸ = 256 ≤ 448 < 512
  CHECK(beam::activation_scale(0.0f) == 0x1p-126f);  // the least: 0 ≤ 448 · 2⁻¹²⁶
  CHECK(beam::activation_scale(448.0f * 0x1p-20f) == 0x1p-20f);
  CHECK(beam::activation_scale(0x1p-140f) == 0x1p-126f);  // clamped to the least normal
  CHECK(beam::activation_scale(FLT_MAX) == 0x1p120f);     // 448 · 2¹²⁰ = 1.75 · 2¹²⁸ ≥ FLT_MAX
  CHECK(std::isinf(beam::activation_scale(INFINITY)));
}

TEST_CASE("reference::quantize_activations on hand-worked groups: amax, NaN dropped, Inf, a partial group") {
  // Row 0, K = 130: group 0 holds −7 (amax: s = 2⁻⁶, −7 → −448), 1 → 64 and 0.01 → 0.64 → 0.625;
  // group 1 (2 values) holds NaN (a NaN code, not counted in amax) and 0.5 (s = 2⁻⁹ → 256).
  // Row 1: an infinite group: s = +Inf, 2 → 0, Inf → NaN.
  std::vector<float> a(2 * 130, 0.0f);
  a[5] = -7.0f;
  a[6] = 1.0f;
  a[7] = 0.01f;
  a[128] = NAN;
  a[129] = 0.5f;
  a[130 + 3] = 2.0f;
  a[130 + 4] = INFINITY;
  const ref::quantized_activations q = ref::quantize_activations(a.data(), 130, 2, 130);
  REQUIRE(q.scales.size() == 4);
  CHECK(q.scales[0] == 0x1p-6f);
  CHECK(q.scales[1] == 0x1p-9f);
  CHECK(std::isinf(q.scales[2]));
  CHECK(q.scales[3] == 0x1p-126f);  // row 1's group 1: zeros
  CHECK(q.codes[5].__x == 0xfe);  // −448: 1.1111.110
  CHECK(q.codes[6].__x == 0x68);  // 64 = 2⁶: 0.1101.000
  CHECK(q.codes[7].__x == 0x32);  // 0.625 = 2⁻¹ · 1.25: 0.0110.010
  CHECK(q.codes[0].__x == 0x00);
  CHECK(nan_code(q.codes[128].__x));
  CHECK(q.codes[129].__x == 0x78);  // 256 = 2⁸: 0.1111.000
  CHECK(q.codes[130 + 3].__x == 0x00);
  CHECK(nan_code(q.codes[130 + 4].__x));
  const std::vector<double> values = ref::dequantize_activations(q, 2, 130);
  CHECK(values[5] == -7.0);
  CHECK(values[7] == 0.625 * 0x1p-6);
  CHECK(std::isnan(values[130 + 3]));  // 0 · ∞: the infinite group's products are NaN
}

TEST_CASE("W8A8 Hopper geometry: 128-byte stages of codes, a row scale per tile row and two block scales, in 227 KiB") {
  using prefill = beam::detail::hopper_geometry<beam::device::hopper_e4m3_tiles, 1>;
  using decode = beam::detail::hopper_geometry<beam::device::hopper_e4m3_decode_tiles, 1>;
  CHECK(prefill::bk == 128);  // one 128-deep block of the scales per stage
  CHECK(prefill::stage_bytes == (128 + 128) * 128);
  CHECK(prefill::stage_bytes % 1024 == 0);  // every stage tile on the swizzle's 1024 bytes
  CHECK(decode::stage_bytes % 1024 == 0);
  CHECK(prefill::stage_scales == 128 + 2);
  CHECK(decode::stage_scales == 64 + 2);
  CHECK(prefill::smem_bytes(0) == 1024 + 6 * ((128 + 128) * 128 + 2 * 8 + 130 * 4) + 4);
  CHECK(prefill::smem_bytes(512) <= 227 * 1024);
  CHECK(decode::smem_bytes(512) <= 227 * 1024);
}

TEST_CASE("quantize_activations rejects bad arguments before touching the device") {
  const bf16* a = reinterpret_cast<const bf16*>(0x1000);
  e4m3* codes = reinterpret_cast<e4m3*>(0x2000);
  float* scales = reinterpret_cast<float*>(0x3000);
  CHECK(beam::device::quantize_activations(a, 256, -1, 256, codes, 256, scales, 2) == cudaErrorInvalidValue);
  CHECK(beam::device::quantize_activations(a, 256, 4, 0, codes, 256, scales, 2) == cudaErrorInvalidValue);
  CHECK(beam::device::quantize_activations(a, 255, 4, 256, codes, 256, scales, 2) == cudaErrorInvalidValue);
  CHECK(beam::device::quantize_activations(a, 256, 4, 256, codes, 255, scales, 2) == cudaErrorInvalidValue);
  CHECK(beam::device::quantize_activations(a, 256, 4, 256, codes, 256, scales, 1) == cudaErrorInvalidValue);
  CHECK(beam::device::quantize_activations(a, 256, 4, 256, nullptr, 256, scales, 2) == cudaErrorInvalidValue);
  CHECK(beam::device::quantize_activations(a, 256, 4, 256, codes, 256, reinterpret_cast<float*>(0x3002), 2) ==
        cudaErrorInvalidValue);
  CHECK(beam::device::quantize_activations(reinterpret_cast<const bf16*>(0x1001), 256, 4, 256, codes, 256, scales, 2) ==
        cudaErrorInvalidValue);
  CHECK(beam::device::quantize_activations<bf16>(nullptr, 256, 0, 256, nullptr, 0, nullptr, 0) == cudaSuccess);  // no rows
}

TEST_CASE("W8A8 grouped_gemm rejects bad activation scales and the sm_80 schedule before touching the device") {
  const e4m3* codes = reinterpret_cast<const e4m3*>(0x4000);
  const float* scales = reinterpret_cast<const float*>(0x8000);
  const int32_t* offsets = reinterpret_cast<const int32_t*>(0x9000);
  float* c = reinterpret_cast<float*>(0xa000);
  const beam::device::gemm_b<e4m3> b{codes, 256, 256 * 256, scales, weight_scales::block_128};
  const auto call = [&](const beam::device::gemm_a<e4m3>& a, gemm_schedule schedule) {
    return beam::device::grouped_gemm<float>(a, b, 256, 256, {offsets, 4, 64}, {c, 256}, schedule);
  };
  CHECK(call({codes, 256, nullptr, 1, nullptr, 2}, gemm_schedule::prefill) == cudaErrorInvalidValue);  // no scales
  CHECK(call({codes, 256, nullptr, 1, scales, 1}, gemm_schedule::prefill) == cudaErrorInvalidValue);   // stride < 2
  CHECK(call({codes, 256, nullptr, 1, scales + 1, 2}, gemm_schedule::prefill_sm80) == cudaErrorInvalidValue);
  CHECK(call({codes, 256, nullptr, 1, reinterpret_cast<const float*>(0x8002), 2}, gemm_schedule::prefill) ==
        cudaErrorInvalidValue);  // misaligned scales
  CHECK(call({codes, 248, nullptr, 1, scales, 2}, gemm_schedule::prefill) == cudaErrorInvalidValue);  // short rows
  // bf16 activations take no scales
  CHECK(beam::device::grouped_gemm<bf16, float>({reinterpret_cast<const bf16*>(0x4000), 256, nullptr, 1, scales, 2}, b,
                                                256, 256, {offsets, 4, 64}, {c, 256}) == cudaErrorInvalidValue);
}

TEST_SUITE("gpu") {
  TEST_CASE("quantize_activations equals the reference bit for bit: exponents from 2^-126 to 2^120, NaN, Inf, partial groups") {
    BEAM_REQUIRE_GPU();
    for (int64_t rows : {int64_t(0), int64_t(1), int64_t(37)}) {
      for (int k : {1, 130, 200, 512}) {
        CAPTURE(rows);
        CAPTURE(k);
        auto a = spread_activations(rows, k, 7000 + uint64_t(rows * 1000 + k));
        const int64_t stride = k + 24, groups = (k + 127) / 128;
        if (rows > 6) {
          for (int i = 0; i < k; ++i) a[size_t(6 * stride + i)] = beam::from_float<bf16>(NAN);  // all-NaN groups
          a[size_t(3 * stride + k / 2)] = beam::from_float<bf16>(NAN);
          a[size_t(4 * stride + k - 1)] = beam::from_float<bf16>(-INFINITY);
          a[size_t(5 * stride)] = beam::from_float<bf16>(0x1p-133f);  // the least bf16 subnormal
        }
        const ref::quantized_activations want = ref::quantize_activations(a.data(), stride, rows, k);
        beam::test::device_vector<bf16> d_a(a.empty() ? std::vector<bf16>(1) : a);
        beam::test::device_vector<e4m3> d_codes{size_t(std::max<int64_t>(rows, 1) * (k + 8))};
        beam::test::device_vector<float> d_scales{size_t(std::max<int64_t>(rows, 1) * (groups + 1))};
        d_codes.poison();
        d_scales.poison();
        REQUIRE(beam::device::quantize_activations(d_a.data(), stride, rows, k, d_codes.data(), k + 8, d_scales.data(),
                                                   groups + 1) == cudaSuccess);
        BEAM_CUDA_TRY(cudaDeviceSynchronize());
        const auto codes = d_codes.to_host();
        const auto scales = d_scales.to_host();
        int mismatches = 0;
        for (int64_t r = 0; r < rows; ++r) {
          for (int i = 0; i < k + 8; ++i) {
            const e4m3 have = codes[size_t(r * (k + 8) + i)];
            if (i < k ? !same_code(have, want.codes[size_t(r * k + i)]) : have.__x != 0xff) ++mismatches;
          }
          for (int64_t b = 0; b <= groups; ++b) {
            const float have = scales[size_t(r * (groups + 1) + b)];
            if (b < groups ? !(have == want.scales[size_t(r * groups + b)] ||
                               (std::isinf(have) && std::isinf(want.scales[size_t(r * groups + b)])))
                           : !std::isnan(have)) {
              ++mismatches;
            }
          }
        }
        CHECK(mismatches == 0);
        if (rows < 2) continue;
        // row_count on the device: the first rows / 2 rows written, the rest untouched.
        const beam::test::device_vector<int32_t> count(std::vector<int32_t>{int32_t(rows / 2)});
        d_codes.poison();
        d_scales.poison();
        REQUIRE(beam::device::quantize_activations(d_a.data(), stride, rows, k, d_codes.data(), k + 8, d_scales.data(),
                                                   groups + 1, count.data()) == cudaSuccess);
        const auto counted = d_codes.to_host();
        const auto counted_scales = d_scales.to_host();
        int written = 0, untouched = 0;
        for (int64_t r = 0; r < rows; ++r) {
          for (int i = 0; i < k; ++i) {
            const e4m3 have = counted[size_t(r * (k + 8) + i)];
            if (r < rows / 2) written += same_code(have, want.codes[size_t(r * k + i)]);
            else untouched += have.__x == 0xff;
          }
          if (r >= rows / 2) untouched += std::isnan(counted_scales[size_t(r * (groups + 1))]);
        }
        CHECK(written == rows / 2 * k);
        CHECK(untouched == (rows - rows / 2) * (k + 1));
      }
    }
  }

  TEST_CASE("W8A8 grouped_gemm equals the reference on the dequantised operands: scalings, epilogues, schedules") {
    BEAM_REQUIRE_GPU();
    // GEMM 1 (SwiGLU, gathered X, N = 2 · 72: partial column tiles) and GEMM 2 (scaled rows,
    // K = 208: a full and a partial 128-deep block), 61 tokens over 7 experts, some masked.
    int n = 0;
    for (gemm_schedule schedule : {gemm_schedule::decode, gemm_schedule::prefill}) {
      for (weight_scales scaling : {weight_scales::block_128, weight_scales::per_channel, weight_scales::none}) {
        check_w8a8<bf16>({61, 3, 7, 2 * 72, 208, 0.2, true, gemm_epilogue::swiglu, schedule}, scaling, 9000 + n);
        check_w8a8<float>({61, 3, 7, 136, 208, 0.2, false, gemm_epilogue::scale_rows, schedule}, scaling, 9100 + n);
        ++n;
      }
    }
    // Store and scatter_add's targets; a K of 1040 (9 blocks: the 8-stage decode ring and the
    // 6-stage prefill ring wrap); T = 0; every pair masked (no rows).
    check_w8a8<__half>({40, 2, 3, 96, 1040, 0.0, true, gemm_epilogue::store, gemm_schedule::decode},
                       weight_scales::block_128, 9200);
    check_w8a8<float>({40, 2, 3, 96, 1040, 0.0, true, gemm_epilogue::store, gemm_schedule::prefill},
                      weight_scales::block_128, 9201);
    check_w8a8<float>({0, 2, 3, 96, 128, 0.0, true, gemm_epilogue::store, gemm_schedule::prefill},
                      weight_scales::block_128, 9202);
    check_w8a8<float>({25, 2, 3, 96, 128, 1.0, true, gemm_epilogue::store, gemm_schedule::prefill},
                      weight_scales::block_128, 9203);
    check_w8a8<float>({33, 4, 5, 80, 144, 0.1, false, gemm_epilogue::scatter_add, gemm_schedule::prefill},
                      weight_scales::block_128, 9204);
    check_w8a8<bf16>({33, 4, 5, 80, 144, 0.1, false, gemm_epilogue::scatter_add, gemm_schedule::decode},
                     weight_scales::per_channel, 9205);
  }

  TEST_CASE("W8A8 grouped_gemm: a NaN or an infinite activation makes its own row NaN and no other") {
    BEAM_REQUIRE_GPU();
    check_w8a8_non_finite(gemm_schedule::decode);
    check_w8a8_non_finite(gemm_schedule::prefill);
  }
}
