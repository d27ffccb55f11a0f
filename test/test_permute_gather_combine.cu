// beam::device::gather_rows, gather_slots and combine against the host reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "beam/permute/device_combine.cuh"
#include "beam/permute/device_compact.cuh"
#include "beam/permute/device_gather.cuh"
#include "beam/reference/moe.cuh"
#include "beam/reference/permute.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

namespace ref = beam::reference;
using beam::device::combine_addends;

TEST_CASE("gather_rows and combine reject bad arguments before touching the device") {
  using bf16 = __nv_bfloat16;
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  const int32_t* rows = reinterpret_cast<const int32_t*>(0x2000);
  CHECK(beam::device::gather_rows<bf16>(fake, 64, -1, 64, 8, rows, rows, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_rows<bf16>(fake, 64, 4, 64, 0, rows, rows, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_rows<bf16>(fake, 64, 4, 60, 8, rows, rows, fake, 64) == cudaErrorInvalidValue);  // H % 8
  CHECK(beam::device::gather_rows<bf16>(fake + 1, 64, 4, 64, 8, rows, rows, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_rows<bf16>(fake, 64, 4, 64, 8, rows, rows, fake, 32) == cudaErrorInvalidValue);  // < H
  CHECK(beam::device::gather_rows<bf16>(fake, 64, 4, 64, 8, nullptr, rows, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_rows<bf16>(fake, 64, 4, 64, 8, rows, nullptr, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_rows<bf16>(nullptr, 0, 0, 64, 8, nullptr, nullptr, nullptr, 0) == cudaSuccess);  // T = 0
  CHECK(beam::device::gather_slots<bf16>(fake, 64, 4, 64, 8, rows, -1, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_slots<bf16>(fake, 64, 4, 64, 8, nullptr, 16, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_slots<bf16>(fake, 64, 4, 64, 8, rows, 16, fake + 2, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_slots<bf16>(fake, 64, 4, 64, 8, nullptr, 0, nullptr, 64) == cudaSuccess);  // no slots
  const combine_addends<bf16> none{};
  CHECK(beam::device::combine<bf16>(fake, 64, rows, nullptr, -1, 64, 8, none, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::combine<bf16>(fake, 64, nullptr, nullptr, 4, 64, 8, none, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::combine<bf16>(fake, 64, rows, nullptr, 4, 64, 8, none, nullptr, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::combine<bf16>(fake, 68, rows, nullptr, 4, 64, 8, none, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::combine<bf16>(fake, 64, rows, nullptr, 4, 64, 8, {fake + 4, 64}, fake, 64) ==
        cudaErrorInvalidValue);
  CHECK(beam::device::combine<bf16>(fake, 64, rows, nullptr, 4, 64, 8, {nullptr, 0, fake, 8}, fake, 64) ==
        cudaErrorInvalidValue);
  CHECK(beam::device::combine<bf16>(nullptr, 0, nullptr, nullptr, 0, 64, 8, none, nullptr, 0) == cudaSuccess);
  CHECK(beam::device::combine_masked<bf16>(fake, 64, nullptr, nullptr, 4, 64, 8, none, fake, 64) ==
        cudaErrorInvalidValue);  // no ids
  CHECK(beam::device::combine_masked<bf16>(fake, 64, rows, nullptr, 4, 60, 8, none, fake, 64) ==
        cudaErrorInvalidValue);  // H not a multiple of 8
  // Zero-computation experts: counts ≥ 0, ids within int32, and the arrays their kinds need.
  const auto zero_compute = [&](const beam::device::zero_compute_addends<bf16>& zc, int64_t T) {
    combine_addends<bf16> a{};
    a.zero_compute = zc;
    return beam::device::combine<bf16>(fake, 64, rows, nullptr, T, 64, 8, a, fake, 64);
  };
  const float* fake_weights = reinterpret_cast<const float*>(0x3000);
  const beam::device::zero_compute_addends<bf16> full{8, 1, 1, 1, rows, fake_weights, fake, 64, fake, fake_weights};
  CHECK(zero_compute(full, 0) == cudaSuccess);  // (the full form runs in the GPU suite)
  for (int field = 0; field < 9; ++field) {
    CAPTURE(field);
    beam::device::zero_compute_addends<bf16> bad = full;
    switch (field) {
      case 0: bad.identity = -1; break;
      case 1: bad.first = -1; break;
      case 2: bad.first = INT32_MAX - 1; break;  // first + Z past int32
      case 3: bad.topk_ids = nullptr; break;
      case 4: bad.topk_weights = nullptr; break;
      case 5: bad.hidden = nullptr; break;
      case 6: bad.hidden_stride = 60; break;
      case 7: bad.constant_vectors = fake + 1; break;
      case 8: bad.constant_logits = reinterpret_cast<const float*>(0x3004); break;  // ℓ pairs: 8 bytes
    }
    CHECK(zero_compute(bad, 4) == cudaErrorInvalidValue);
    if (field >= 3) CHECK(zero_compute(bad, 0) == cudaSuccess);  // T = 0 reads no array
  }
  // K and H up to 2³⁰ (beam::max_extent): their loop steps stay in int.
  const int beyond = beam::max_extent + 8;
  CHECK(beam::device::gather_rows<bf16>(fake, 64, 4, 64, beyond, rows, rows, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_rows<bf16>(fake, beyond, 4, beyond, 8, rows, rows, fake, beyond) == cudaErrorInvalidValue);
  CHECK(beam::device::gather_slots<bf16>(fake, 64, 4, 64, beyond, rows, 16, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::combine<bf16>(fake, 64, rows, nullptr, 4, 64, beyond, none, fake, 64) == cudaErrorInvalidValue);
  CHECK(beam::device::combine<bf16>(fake, beyond, rows, nullptr, 4, beyond, 8, none, fake, beyond) ==
        cudaErrorInvalidValue);
  CHECK(beam::device::combine_masked<bf16>(fake, 64, rows, nullptr, 4, 64, beyond, none, fake, 64) ==
        cudaErrorInvalidValue);
}

TEST_CASE("combine_backward rejects bad arguments before touching the device") {
  using bf16 = __nv_bfloat16;
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  const int32_t* rows = reinterpret_cast<const int32_t*>(0x2000);
  const float* weights = reinterpret_cast<const float*>(0x3000);
  float* d_hat = reinterpret_cast<float*>(0x4000);
  const auto call = [&](const bf16* yp, int64_t yp_stride, const int32_t* r, const float* w, const bf16* dy,
                        int64_t dy_stride, int64_t T, int H, int K, float* dh, bf16* d_yp, int64_t d_yp_stride) {
    return beam::device::combine_backward<bf16>(yp, yp_stride, r, w, dy, dy_stride, T, H, K, dh, d_yp, d_yp_stride);
  };
  CHECK(call(fake, 64, rows, weights, fake, 64, -1, 64, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);  // T < 0
  CHECK(call(fake, 64, rows, weights, fake, 64, 4, 64, 0, d_hat, nullptr, 0) == cudaErrorInvalidValue);   // K = 0
  CHECK(call(fake, 64, rows, weights, fake, 64, 4, 0, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);    // H = 0
  CHECK(call(fake, 64, rows, weights, fake, 64, 4, 60, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);   // H % 8
  CHECK(call(nullptr, 64, rows, weights, fake, 64, 4, 64, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, nullptr, weights, fake, 64, 4, 64, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, rows, nullptr, fake, 64, 4, 64, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, rows, weights, nullptr, 64, 4, 64, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, rows, weights, fake, 64, 4, 64, 8, nullptr, nullptr, 0) == cudaErrorInvalidValue);
  CHECK(call(fake + 4, 64, rows, weights, fake, 64, 4, 64, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);  // misaligned
  CHECK(call(fake, 32, rows, weights, fake, 64, 4, 64, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);  // stride < H
  CHECK(call(fake, 64, rows, weights, fake, 68, 4, 64, 8, d_hat, nullptr, 0) == cudaErrorInvalidValue);  // stride % 8
  CHECK(call(fake, 64, rows, weights, fake, 64, 4, 64, 8, d_hat, fake + 2, 64) == cudaErrorInvalidValue);  // d_yp
  CHECK(call(fake, 64, rows, weights, fake, 64, 4, 64, 8, d_hat, fake, 56) == cudaErrorInvalidValue);
  CHECK(call(nullptr, 0, nullptr, nullptr, nullptr, 0, 0, 64, 8, nullptr, nullptr, 0) == cudaSuccess);  // T = 0
}

namespace {

//! T·K expert ids: each token's K distinct experts of E, each slot −1 (masked) with probability `masked`.
std::vector<int32_t> distinct_ids(int64_t T_, int K, int E, double masked, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int32_t> ids(size_t(T_ * K));
  for (int64_t t = 0; t < T_; ++t) {
    std::vector<int> pool(static_cast<size_t>(E));
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    for (int k = 0; k < K; ++k) ids[t * K + k] = u(rng) < masked ? -1 : pool[k];
  }
  return ids;
}

template <class T>
void check_gather_combine(int64_t T_, int K, int E, int H, double masked, uint64_t seed) {
  CAPTURE(T_);
  CAPTURE(K);
  CAPTURE(H);
  CAPTURE(masked);
  CAPTURE(beam::dtype_traits<T>::name);
  const std::vector<int32_t> ids = distinct_ids(T_, K, E, masked, seed);
  const ref::compaction perm = ref::compact(ids.data(), T_, K, E);
  const int64_t v = beam::detail::vector_elements<T>;
  const int64_t stride = H + v, xp_stride = H + 2 * v, out_stride = H + 3 * v;  // padded rows, all different
  const auto x = beam::test::random_values<T>(size_t(T_ * stride) + 1, seed + 1);
  const auto yp = beam::test::random_values<T>(size_t(std::max<int64_t>(perm.n_active, 1) * stride), seed + 2);
  const auto shared = beam::test::random_values<T>(size_t(T_ * stride) + 1, seed + 3), residual = beam::test::random_values<T>(size_t(T_ * stride) + 1, seed + 4);
  const auto weights = beam::test::random_normal<float>(size_t(T_ * K) + 1, seed + 5);

  // Reference on unpadded float copies.
  std::vector<float> x_f(size_t(T_ * H)), yp_f(size_t(perm.n_active * H)), shared_f(size_t(T_ * H));
  for (int64_t t = 0; t < T_; ++t) {
    for (int h = 0; h < H; ++h) {
      x_f[t * H + h] = beam::to_float(x[t * stride + h]);
      shared_f[t * H + h] = beam::to_float(shared[t * stride + h]);
    }
  }
  for (int64_t r = 0; r < perm.n_active; ++r) {
    for (int h = 0; h < H; ++h) yp_f[r * H + h] = beam::to_float(yp[r * stride + h]);
  }
  const auto expected_xp = ref::gather_rows(x_f.data(), H, perm);
  auto expected_out = ref::combine(yp_f.data(), H, perm, weights.data(), shared_f.data());
  for (int64_t t = 0; t < T_; ++t) {
    for (int h = 0; h < H; ++h) expected_out[t * H + h] += beam::to_float(residual[t * stride + h]);
  }
  const auto expected_plain = ref::combine(yp_f.data(), H, perm, nullptr, nullptr);  // pre-scaled, no addends

  beam::test::device_vector<T> d_x(x), d_yp(yp), d_shared(shared), d_residual(residual);
  beam::test::device_vector<int32_t> d_sorted(perm.sorted_pairs.empty() ? std::vector<int32_t>(1) : perm.sorted_pairs);
  beam::test::device_vector<int32_t> d_rows(perm.pair_to_row.empty() ? std::vector<int32_t>(1) : perm.pair_to_row);
  beam::test::device_vector<int32_t> d_n_active(std::vector<int32_t>{int32_t(perm.n_active)});
  beam::test::device_vector<float> d_weights(weights);
  const size_t out_size = size_t(std::max<int64_t>(T_, 1) * out_stride);
  beam::test::device_vector<T> xp{size_t(std::max<int64_t>(perm.n_active, 1) * xp_stride)}, out{out_size},
      out_again{out_size}, plain{out_size};
  xp.poison();
  out.poison();
  plain.poison();
  REQUIRE(beam::test::with_pending_error([&] {
            return beam::device::gather_rows(d_x.data(), stride, T_, H, K, d_sorted.data(), d_n_active.data(),
                                             xp.data(), xp_stride);
          }) == cudaSuccess);
  const combine_addends<T> addends{d_shared.data(), stride, d_residual.data(), stride};
  REQUIRE(beam::test::with_pending_error([&] {
            return beam::device::combine(d_yp.data(), stride, d_rows.data(), d_weights.data(), T_, H, K, addends,
                                         out.data(), out_stride);
          }) == cudaSuccess);
  REQUIRE(beam::device::combine(d_yp.data(), stride, d_rows.data(), d_weights.data(), T_, H, K, addends,
                                out_again.data(), out_stride) == cudaSuccess);
  REQUIRE(beam::device::combine<T>(d_yp.data(), stride, d_rows.data(), nullptr, T_, H, K, {}, plain.data(),
                                   out_stride) == cudaSuccess);
  // In place: the residual array is the output.
  beam::test::device_vector<T> in_place(residual);
  REQUIRE(beam::device::combine(d_yp.data(), stride, d_rows.data(), d_weights.data(), T_, H, K,
                                combine_addends<T>{d_shared.data(), stride, in_place.data(), stride}, in_place.data(),
                                stride) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  if (T_ == 0) return;
  const auto unpad = [&](const std::vector<T>& padded, int64_t rows, int64_t row_stride) {
    std::vector<float> f(size_t(rows * H));
    for (int64_t r = 0; r < rows; ++r) {
      for (int h = 0; h < H; ++h) f[r * H + h] = beam::to_float(padded[r * row_stride + h]);
    }
    return f;
  };
  CHECK(unpad(xp.to_host(), perm.n_active, xp_stride) == expected_xp);  // a copy: exact
  const double tolerance = beam::dtype_traits<T>::tolerance;
  const auto got = unpad(out.to_host(), T_, out_stride);
  CHECK(beam::test::relative_error(got, expected_out) <= tolerance);
  CHECK(unpad(out_again.to_host(), T_, out_stride) == got);  // bitwise deterministic
  CHECK(unpad(in_place.to_host(), T_, stride) == got);       // in place gives the same bits
  const auto got_plain = unpad(plain.to_host(), T_, out_stride);
  CHECK(beam::test::relative_error(got_plain, expected_plain) <= tolerance);
  for (int64_t t = 0; t < T_; ++t) {  // tokens with no active expert: exact zeros
    bool any = false;
    for (int k = 0; k < K; ++k) any = any || perm.pair_to_row[t * K + k] >= 0;
    if (any) continue;
    for (int h = 0; h < H; ++h) CHECK(got_plain[t * H + h] == 0.0f);
  }
}

//! combine_backward against reference::combine_backward: ∂L/∂ĝ within the float-sum bound of
//! each pair's products (NaN where the reference has NaN, exact zeros for skipped pairs), ∂L/∂Yp
//! exactly (one product, one rounding), the same bits with d_yp null and on a second run.
template <class T>
void check_combine_backward(int64_t T_, int K, int E, int H, double masked, bool non_finite, uint64_t seed) {
  CAPTURE(T_);
  CAPTURE(K);
  CAPTURE(H);
  CAPTURE(masked);
  CAPTURE(non_finite);
  CAPTURE(beam::dtype_traits<T>::name);
  const std::vector<int32_t> ids = distinct_ids(T_, K, E, masked, seed);
  const ref::compaction perm = ref::compact(ids.data(), T_, K, E);
  const int64_t v = beam::detail::vector_elements<T>;
  const int64_t yp_stride = H + v, dy_stride = H + 2 * v, d_yp_stride = H + 3 * v;  // padded rows, all different
  auto yp = beam::test::random_values<T>(size_t(std::max<int64_t>(perm.n_active, 1) * yp_stride), seed + 1);
  auto dy = beam::test::random_values<T>(size_t(std::max<int64_t>(T_, 1) * dy_stride), seed + 2);
  const auto weights = beam::test::random_normal<float>(size_t(T_ * K) + 1, seed + 3);
  if (non_finite && T_ > 0) {  // a NaN in ∂L/∂y_0, an Inf in the first row
    dy[1] = beam::from_float<T>(std::numeric_limits<float>::quiet_NaN());
    if (perm.n_active > 0) yp[2] = beam::from_float<T>(std::numeric_limits<float>::infinity());
  }
  std::vector<float> yp_f(size_t(perm.n_active * H)), dy_f(size_t(T_ * H));
  for (int64_t r = 0; r < perm.n_active; ++r)
    for (int h = 0; h < H; ++h) yp_f[r * H + h] = beam::to_float(yp[r * yp_stride + h]);
  for (int64_t t = 0; t < T_; ++t)
    for (int h = 0; h < H; ++h) dy_f[t * H + h] = beam::to_float(dy[t * dy_stride + h]);
  const auto expected = ref::combine_backward(yp_f.data(), H, perm, weights.data(), dy_f.data());

  beam::test::device_vector<T> d_yp_in(yp), d_dy(dy);
  beam::test::device_vector<int32_t> d_rows(perm.pair_to_row.empty() ? std::vector<int32_t>(1) : perm.pair_to_row);
  beam::test::device_vector<float> d_weights(weights);
  const size_t slots = size_t(std::max<int64_t>(T_ * K, 1));
  beam::test::device_vector<float> d_hat{slots}, d_hat_again{slots}, d_hat_alone{slots};
  beam::test::device_vector<T> d_yp{size_t(std::max<int64_t>(perm.n_active, 1) * d_yp_stride)};
  for (auto* poisoned : {&d_hat, &d_hat_again, &d_hat_alone}) poisoned->poison();
  d_yp.poison();
  REQUIRE(beam::test::with_pending_error([&] {
            return beam::device::combine_backward(d_yp_in.data(), yp_stride, d_rows.data(), d_weights.data(),
                                                  d_dy.data(), dy_stride, T_, H, K, d_hat.data(), d_yp.data(),
                                                  d_yp_stride);
          }) == cudaSuccess);
  REQUIRE(beam::device::combine_backward(d_yp_in.data(), yp_stride, d_rows.data(), d_weights.data(), d_dy.data(),
                                         dy_stride, T_, H, K, d_hat_again.data(), d_yp.data(), d_yp_stride) ==
          cudaSuccess);
  REQUIRE(beam::device::combine_backward<T>(d_yp_in.data(), yp_stride, d_rows.data(), d_weights.data(), d_dy.data(),
                                            dy_stride, T_, H, K, d_hat_alone.data(), nullptr, 0) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  if (T_ == 0) return;
  const auto got = d_hat.to_host();
  const auto bits_equal = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  CHECK(bits_equal(d_hat_again.to_host(), got));  // bitwise deterministic
  CHECK(bits_equal(d_hat_alone.to_host(), got));  // the same without ∂L/∂Yp
  int bad = 0;
  for (int64_t t = 0; t < T_; ++t) {
    for (int k = 0; k < K; ++k) {
      const int64_t p = t * K + k;
      const int32_t row = perm.pair_to_row[p];
      const double want = expected.d_topk_weights[p];
      if (row < 0) {
        bad += got[p] != 0.0f || std::signbit(got[p]);
        continue;
      }
      if (!std::isfinite(want)) {  // NaN from ∂L/∂y, ±Inf from the row
        bad += !(std::isnan(want) ? std::isnan(got[p]) : double(got[p]) == want);
        continue;
      }
      double magnitude = 0.0;  // Σ |dy · y|: a float sum of H products errs by at most ~H·2⁻²⁴ of it
      for (int h = 0; h < H; ++h) magnitude += std::fabs(double(dy_f[t * H + h]) * yp_f[row * H + h]);
      bad += !(std::fabs(double(got[p]) - want) <= 1e-6 * H * magnitude + 1e-30);
    }
  }
  CHECK(bad == 0);
  const auto rows = d_yp.to_host();
  int wrong = 0;
  for (int64_t r = 0; r < perm.n_active; ++r) {
    for (int h = 0; h < H; ++h) {
      const float want = beam::to_float(beam::from_float<T>(expected.d_yp[r * H + h]));
      const float have = beam::to_float(rows[r * d_yp_stride + h]);
      wrong += !(have == want || (std::isnan(have) && std::isnan(want)));
    }
  }
  CHECK(wrong == 0);
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("DeepGEMM masked layout end to end: compact → gather_slots → (identity expert) → combine") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    const int64_t T = 37;
    const int K = 4, E = 16, H = 72;
    for (int max_m : {int(T), 3}) {  // 3: most experts overflow, their extra pairs are dropped
      CAPTURE(max_m);
      std::mt19937 rng{uint32_t(max_m)};
      std::vector<int32_t> ids(size_t(T * K));
      for (int64_t t = 0; t < T; ++t) {  // distinct experts per token, 20% masked
        std::vector<int32_t> pool(E);
        std::iota(pool.begin(), pool.end(), 0);
        std::shuffle(pool.begin(), pool.end(), rng);
        for (int k = 0; k < K; ++k) ids[size_t(t * K + k)] = rng() % 5 == 0 ? -1 : pool[size_t(k)];
      }
      const ref::compaction perm = ref::compact(ids.data(), T, K, E);
      const ref::masked_slots slots = ref::mask_slots(perm, max_m);
      const auto x = beam::test::random_values<bf16>(size_t(T * H), 7);
      const auto weights = beam::test::random_normal<float>(size_t(T * K), 8);
      beam::test::device_vector<int32_t> d_ids(ids), counts{size_t(E)}, offsets{size_t(E) + 1}, sorted{size_t(T * K)},
          rows{size_t(T * K)}, slot_pairs{size_t(E) * size_t(max_m)}, masked_m{size_t(E)}, pair_to_slot{size_t(T * K)};
      beam::test::device_vector<unsigned long long> dropped{1};
      beam::device::compaction_layouts layouts;
      layouts.deepgemm = {max_m, slot_pairs.data(), masked_m.data(), pair_to_slot.data(), dropped.data()};
      const beam::device::compaction_input in{d_ids.data(), T, K, E};
      const beam::device::compaction_outputs out_perm{counts.data(), offsets.data(), sorted.data(), rows.data()};
      size_t bytes = 0;
      REQUIRE(beam::device::compact(nullptr, bytes, in, out_perm, layouts) == cudaSuccess);
      beam::test::device_vector<char> workspace(bytes);
      REQUIRE(beam::device::compact(workspace.data(), bytes, in, out_perm, layouts) == cudaSuccess);
      beam::test::device_vector<bf16> d_x(x), xs{size_t(E) * size_t(max_m) * H}, out{size_t(T * H)};
      beam::test::device_vector<float> d_weights(weights);
      xs.poison();
      REQUIRE(beam::device::gather_slots(d_x.data(), H, T, H, K, slot_pairs.data(), int64_t(E) * max_m, xs.data(),
                                         H) == cudaSuccess);
      // The GEMM output of an identity expert is its input: combine it through pair_to_slot.
      REQUIRE(beam::device::combine<bf16>(xs.data(), H, pair_to_slot.data(), d_weights.data(), T, H, K, {},
                                          out.data(), H) == cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      CHECK(dropped.to_host()[0] == static_cast<unsigned long long>(slots.dropped_pairs));
      if (max_m == 3) CHECK(slots.dropped_pairs > 0);  // the case exercises dropping
      const auto got_xs = xs.to_host();
      for (int e = 0; e < E; ++e) {
        for (int j = 0; j < max_m; ++j) {
          const size_t slot = size_t(e) * size_t(max_m) + size_t(j);
          for (int h = 0; h < H; ++h) {
            const float v = beam::to_float(got_xs[slot * H + size_t(h)]);
            if (j < slots.masked_m[size_t(e)]) {
              CHECK(v == beam::to_float(x[size_t(slots.slot_pairs[slot] / K * H + h)]));
            } else {
              CHECK(std::isnan(v));  // padding slot: the poison is untouched
            }
          }
        }
      }
      // Reference: the same weighted sum over the pairs that kept a slot.
      std::vector<float> expected(size_t(T * H), 0.0f);
      for (int64_t p = 0; p < T * K; ++p) {
        if (slots.pair_to_slot[size_t(p)] < 0) continue;
        for (int h = 0; h < H; ++h) {
          expected[size_t(p / K * H + h)] += weights[size_t(p)] * beam::to_float(x[size_t(p / K * H + h)]);
        }
      }
      CHECK(beam::test::relative_error(beam::test::as_float(out.to_host()), expected) <=
            beam::dtype_traits<bf16>::tolerance);
    }
  }

  TEST_CASE("combine_masked: an engine's [T, K, H] expert output whose masked rows hold NaN") {
    BEAM_REQUIRE_GPU();
    // An engine's fused MoE writes one row per kept pair of a [T, K, H] cache and leaves the rows
    // of masked pairs (id −1) as they were: NaN here. The masked sum never reads them; a plain
    // sum over all K rows (combine with pair_to_row = p for every pair) picks up the NaN.
    using bf16 = __nv_bfloat16;
    const int64_t T = 33;
    const int H = 64, K = 4;
    std::mt19937 rng(5u);
    std::vector<int32_t> ids(size_t(T * K));
    for (auto& id : ids) id = rng() % 3 == 0 ? -1 : int32_t(rng() % 16);
    for (int k = 0; k < K; ++k) ids[size_t(2 * K + k)] = -1;  // token 2: no expert
    const auto weights = beam::test::random_normal<float>(ids.size(), 6);
    auto cache = beam::test::random_values<bf16>(size_t(T * K * H), 7);
    const auto residual = beam::test::random_values<bf16>(size_t(T * H), 8);
    for (size_t p = 0; p < ids.size(); ++p) {
      if (ids[p] >= 0) continue;
      for (int h = 0; h < H; ++h) cache[p * H + size_t(h)] = beam::from_float<bf16>(NAN);
    }
    std::vector<double> expected(size_t(T * H));
    for (int64_t t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        double sum = 0.0;
        for (int k = 0; k < K; ++k) {
          const size_t p = size_t(t * K + k);
          if (ids[p] >= 0) sum += double(weights[p]) * double(beam::to_float(cache[p * H + size_t(h)]));
        }
        expected[size_t(t * H + h)] = sum + double(beam::to_float(residual[size_t(t * H + h)]));
      }
    }
    std::vector<int32_t> every_row(ids.size());
    for (size_t p = 0; p < ids.size(); ++p) every_row[p] = int32_t(p);
    beam::test::device_vector<bf16> d_cache(cache), d_residual(residual), out{size_t(T * H)}, plain{size_t(T * H)};
    beam::test::device_vector<int32_t> d_ids(ids), d_every_row(every_row);
    beam::test::device_vector<float> d_weights(weights);
    out.poison();
    const beam::device::combine_addends<bf16> addends{nullptr, 0, d_residual.data(), H};
    REQUIRE(beam::device::combine_masked(d_cache.data(), H, d_ids.data(), d_weights.data(), T, H, K, addends, out.data(),
                                         H) == cudaSuccess);
    REQUIRE(beam::device::combine(d_cache.data(), H, d_every_row.data(), d_weights.data(), T, H, K, addends,
                                  plain.data(), H) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto got = beam::test::as_float(out.to_host()), unmasked = beam::test::as_float(plain.to_host());
    CHECK(std::none_of(got.begin(), got.end(), [](float v) { return std::isnan(v); }));
    CHECK(beam::test::relative_error(got, expected) <= beam::dtype_traits<bf16>::tolerance);
    for (int h = 0; h < H; ++h) CHECK(got[size_t(2 * H + h)] == beam::to_float(residual[size_t(2 * H + h)]));  // token 2
    CHECK(std::isnan(unmasked[size_t(2 * H)]));  // the plain sum adds the unwritten rows
  }

  TEST_CASE("gather_rows and combine reach rows that start past 2³¹ elements (64-bit row offsets)") {
    BEAM_REQUIRE_GPU();
    // One array of `rows` rows of H = 4096 (4.3 GB; only the rows used are written): X for
    // gather_rows (K = 1: pair = token) and Yp for combine. Its last rows start past 2³¹ elements.
    using bf16 = __nv_bfloat16;
    const int H = 4096;
    const int64_t rows = (int64_t(1) << 31) / H + 4;
    beam::test::device_vector<bf16> big(size_t(rows * H));
    const int64_t used[3] = {rows - 1, rows - 3, 5};
    std::vector<std::vector<bf16>> values;
    for (int i = 0; i < 3; ++i) {
      values.push_back(beam::test::random_values<bf16>(size_t(H), 90 + uint64_t(i)));
      BEAM_CUDA_TRY(cudaMemcpy(big.data() + used[i] * H, values.back().data(), size_t(H) * sizeof(bf16),
                               cudaMemcpyHostToDevice));
    }
    beam::test::device_vector<int32_t> pairs(std::vector<int32_t>{int32_t(used[0]), int32_t(used[1]), int32_t(used[2])});
    beam::test::device_vector<int32_t> n_active(std::vector<int32_t>{3});
    beam::test::device_vector<bf16> xp{size_t(3 * H)}, y{size_t(2 * H)};
    xp.poison();
    y.poison();
    REQUIRE(beam::device::gather_rows<bf16>(big.data(), H, rows, H, 1, pairs.data(), n_active.data(), xp.data(), H) ==
            cudaSuccess);
    // combine: two tokens, K = 2: y_0 = 0.5·row(used 0), y_1 = −1.25·row(5) + 2·row(used 1).
    const std::vector<float> weights{0.5f, 7.0f, -1.25f, 2.0f};
    beam::test::device_vector<int32_t> pair_to_row(
        std::vector<int32_t>{int32_t(used[0]), -1, int32_t(used[2]), int32_t(used[1])});
    beam::test::device_vector<float> d_weights(weights);
    REQUIRE(beam::device::combine<bf16>(big.data(), H, pair_to_row.data(), d_weights.data(), 2, H, 2, {}, y.data(), H) ==
            cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto gathered = beam::test::as_float(xp.to_host()), combined = beam::test::as_float(y.to_host());
    std::vector<double> expected(size_t(2 * H));
    for (int h = 0; h < H; ++h) {
      for (int i = 0; i < 3; ++i) CHECK(gathered[size_t(i * H + h)] == beam::to_float(values[size_t(i)][size_t(h)]));
      expected[size_t(h)] = 0.5 * beam::to_float(values[0][size_t(h)]);
      expected[size_t(H + h)] = -1.25 * beam::to_float(values[2][size_t(h)]) + 2.0 * beam::to_float(values[1][size_t(h)]);
    }
    CHECK(beam::test::relative_error(combined, expected) <= beam::dtype_traits<bf16>::tolerance);
  }

  TEST_CASE("combine and combine_masked add zero-computation experts' terms in their slots: zero, identity, "
            "constant; every pair one of them; NaN in rows they must not read") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    struct shape {
      int64_t T;
      int K, H;
      double share;  //!< of the pairs given to zero-computation experts
    };
    for (const shape c : {shape{7, 6, 72, 0.5}, shape{33, 13, 24, 0.3}, shape{5, 4, 64, 1.0}}) {
      const int64_t T = c.T;
      const int K = c.K, H = c.H;
      const double share = c.share;
      CAPTURE(T);
      CAPTURE(K);
      CAPTURE(share);
      const int E = 16, zero = 1, identity = 2, constant = 3, Z = zero + identity + constant;
      std::mt19937 rng{uint32_t(T * K)};
      std::vector<int32_t> ids(size_t(T * K));
      for (int32_t& id : ids) {  // a share of zero-computation experts; the rest FFN experts or masked
        id = std::uniform_real_distribution<double>(0, 1)(rng) < share ? E + int32_t(rng() % Z)
             : rng() % 6 == 0                                           ? -1
                                                                       : int32_t(rng() % E);
      }
      const ref::compaction perm = ref::compact(ids.data(), T, K, E + Z, 0, E);
      REQUIRE(perm.invalid_ids == 0);
      const auto x = beam::test::random_values<bf16>(size_t(T * H), 61);
      const auto v = beam::test::random_values<bf16>(size_t(constant * H), 62);
      const auto w_c = beam::test::random_values<bf16>(size_t(2 * constant * H), 63);
      const auto weights = beam::test::random_normal<float>(size_t(T * K), 64);
      const auto yp = beam::test::random_values<bf16>(size_t(std::max<int64_t>(perm.n_active, 1) * H), 65);
      const auto f = [](const std::vector<bf16>& a) { return beam::test::as_float(a); };
      const std::vector<float> x_f = f(x), v_f = f(v), w_c_f = f(w_c);
      // ℓ = x W_cᵀ on the host; the reference recomputes it from W_c in double.
      std::vector<float> logits(size_t(T * 2 * constant));
      for (int64_t t = 0; t < T; ++t) {
        for (int r = 0; r < 2 * constant; ++r) {
          double acc = 0.0;
          for (int h = 0; h < H; ++h) acc += double(x_f[t * H + h]) * w_c_f[r * H + h];
          logits[t * 2 * constant + r] = float(acc);
        }
      }
      ref::moe_weights<float> w{H, 8, E};
      w.zero_experts = zero;
      w.identity_experts = identity;
      w.constant_experts = constant;
      w.constant_gate = w_c_f.data();
      w.constant_vectors = v_f.data();
      std::vector<float> addend(size_t(T * H), 0.0f);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> acc(size_t(H), 0.0);
        for (int k = 0; k < K; ++k) {
          const int32_t id = ids[t * K + k];
          if (id >= E) ref::add_zero_compute_term(&x_f[t * H], w, id, double(weights[t * K + k]), acc.data());
        }
        for (int h = 0; h < H; ++h) addend[t * H + h] = float(acc[h]);
      }
      const std::vector<float> expected = ref::combine(f(yp).data(), H, perm, weights.data(), addend.data());

      beam::test::device_vector<bf16> d_x(x), d_v(v), d_yp(yp), out{size_t(T * H)}, out_masked{size_t(T * H)};
      beam::test::device_vector<int32_t> d_ids(ids), d_rows(perm.pair_to_row);
      beam::test::device_vector<float> d_weights(weights), d_logits(logits);
      combine_addends<bf16> addends{};
      addends.zero_compute = {E, zero, identity, constant, d_ids.data(), d_weights.data(), d_x.data(), H, d_v.data(),
                              d_logits.data()};
      out.poison();
      REQUIRE(beam::device::combine<bf16>(d_yp.data(), H, d_rows.data(), d_weights.data(), T, H, K, addends, out.data(),
                                          H) == cudaSuccess);
      // combine_masked over Yp [T·K, H] by pair: the rows of masked and zero-computation pairs hold NaN.
      std::vector<bf16> by_pair(size_t(T * K * H), beam::from_float<bf16>(std::nanf("")));
      for (int64_t p = 0; p < T * K; ++p) {
        if (perm.pair_to_row[p] < 0) continue;
        std::copy_n(yp.begin() + perm.pair_to_row[p] * H, H, by_pair.begin() + p * H);
      }
      beam::test::device_vector<bf16> d_by_pair(by_pair);
      out_masked.poison();
      REQUIRE(beam::device::combine_masked<bf16>(d_by_pair.data(), H, d_ids.data(), d_weights.data(), T, H, K, addends,
                                                 out_masked.data(), H) == cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      const std::vector<float> got = f(out.to_host());
      CHECK(beam::test::relative_error(got, expected) <= beam::dtype_traits<bf16>::tolerance);
      CHECK(f(out_masked.to_host()) == got);  // the same sum in the same order: the same bits
      // Without the addends the zero-computation pairs contribute nothing: the result differs.
      CHECK(beam::test::relative_error(ref::combine(f(yp).data(), H, perm, weights.data(), nullptr), expected) > 0.01);
    }
  }

  TEST_CASE("gather_rows and combine equal the reference: fp32, fp16, bf16") {
    BEAM_REQUIRE_GPU();
    int n = 0;
    for (int64_t T : beam::test::sweep<int64_t>({0, 1, 7, 64, 1000, 4096}, {0, 1, 7, 64})) {
      for (int H : beam::test::sweep({8, 24, 200, 2048}, {8, 24, 200})) {
        for (double masked : {0.0, 0.5, 0.85, 1.0}) {
          check_gather_combine<float>(T, 8, 64, H, masked, 20000 + uint64_t(n));
          check_gather_combine<__half>(T, 6, 60, H, masked, 30000 + uint64_t(n));
          check_gather_combine<__nv_bfloat16>(T, 8, 128, H, masked, 40000 + uint64_t(n));
          ++n;
        }
      }
    }
    // K of one pair, and beyond one group of 8 pairs in flight (13: a partial second group; 19: three).
    for (int64_t T : {0, 1, 7, 64}) {
      for (int K : {1, 13, 19}) {
        for (double masked : {0.0, 0.5, 1.0}) check_gather_combine<__nv_bfloat16>(T, K, 64, 200, masked, 50000 + uint64_t(n++));
      }
    }
  }

  TEST_CASE("combine_backward equals the reference: fp32, fp16, bf16; all, some and no pairs with rows; NaN and Inf") {
    BEAM_REQUIRE_GPU();
    int n = 0;
    for (int64_t T : beam::test::sweep<int64_t>({0, 1, 7, 65, 1000}, {0, 1, 7, 65})) {
      for (int H : {8, 24, 264}) {  // one vector per lane or less, and past 32 vectors of bf16 (a lane's second)
        for (double masked : {0.0, 0.5, 1.0}) {
          check_combine_backward<float>(T, 8, 64, H, masked, false, 60000 + uint64_t(n));
          check_combine_backward<__half>(T, 6, 60, H, masked, false, 61000 + uint64_t(n));
          check_combine_backward<__nv_bfloat16>(T, 8, 128, H, masked, false, 62000 + uint64_t(n));
          ++n;
        }
      }
    }
    for (int K : {1, 13, 16}) {  // one pair, a partial second group of 8, two full groups
      check_combine_backward<__nv_bfloat16>(33, K, 64, 200, 0.3, false, 63000 + uint64_t(K));
      check_combine_backward<__nv_bfloat16>(33, K, 64, 200, 0.3, true, 64000 + uint64_t(K));
    }
  }
}
