// beam::device::router_logits against the exact sum, and batch-invariant routing: a token's
// ids, weights, mask probabilities and candidates have the same bits routed alone (route_decode,
// T = 1) and inside batches of any size, on either router path (route_decode for T ≤ 64,
// router_logits + route_and_mask above).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "beam/routing/device_route_decode.cuh"
#include "beam/routing/device_router_logits.cuh"
#include "common/gpu.cuh"

using beam::device::logits_outputs;
using beam::device::router_weights;
using beam::device::routing_outputs;

TEST_CASE("router_logits: bad arguments, before touching the device") {
  using bf16 = __nv_bfloat16;
  const bf16* fake = reinterpret_cast<const bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  float* out = reinterpret_cast<float*>(0x2000);
  const router_weights<bf16> w{fake, fake, 64, 64};
  const logits_outputs o{out, out + 8, 16, 16};
  const auto call = [](const bf16* x, int64_t stride, int64_t T, int H, const router_weights<bf16>& weights, int E,
                       bool mask, const logits_outputs& logits) {
    return beam::device::router_logits(x, stride, T, H, weights, E, mask, logits);
  };
  CHECK(call(fake, 64, 0, 64, w, 8, true, {}) == cudaSuccess);  // T = 0: nothing to check or write
  CHECK(call(fake, 64, -1, 64, w, 8, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, w, 0, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, w, beam::device::max_router_experts + 1, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 0, w, 8, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 60, w, 8, true, o) == cudaErrorInvalidValue);   // H % 8
  const int64_t beyond = beam::max_extent + 8;
  CHECK(call(fake, beyond, 4, int(beyond), {fake, fake, beyond, beyond}, 8, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 64, fake}, 8, true, o) == cudaErrorInvalidValue);  // a gate, no output
  CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 64, fake + 1}, 8, true, {out, out + 8, 16, 16, out}) ==
        cudaErrorInvalidValue);  // a misaligned gate row
  // 2E + 1 + 2C rows past 2²² − 64 (65535 tiles of 64): refused before the launch.
  {
    const int E = beam::device::max_router_experts;
    CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 64, fake, fake, E}, E, true, {out, out, E, E, out, out}) ==
          cudaErrorInvalidValue);
  }
  // Constant experts' W_c: C ∈ [0, 2²⁰], W_c given and aligned, and its output.
  const logits_outputs with_constant{out, out + 8, 16, 16, nullptr, out};
  CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 64, nullptr, fake, 2}, 8, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 64, nullptr, nullptr, 2}, 8, true, with_constant) ==
        cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 64, nullptr, fake + 1, 2}, 8, true, with_constant) ==
        cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 64, nullptr, fake, -1}, 8, true, with_constant) ==
        cudaErrorInvalidValue);
  CHECK(call(fake, 60, 4, 56, w, 8, true, o) == cudaErrorInvalidValue);   // stride % 8
  CHECK(call(fake, 32, 4, 64, w, 8, true, o) == cudaErrorInvalidValue);   // stride < H
  CHECK(call(fake + 4, 64, 4, 64, w, 8, true, o) == cudaErrorInvalidValue);  // x misaligned
  CHECK(call(nullptr, 64, 4, 64, w, 8, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, {fake + 1, fake, 64, 64}, 8, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, {fake, nullptr, 64, 64}, 8, true, o) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 56}, 8, true, o) == cudaErrorInvalidValue);  // W_m stride < H
  CHECK(call(fake, 64, 4, 64, w, 8, true, {nullptr, out, 16, 16}) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, w, 8, true, {out, nullptr, 16, 16}) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, w, 8, true, {out, out + 8, 7, 16}) == cudaErrorInvalidValue);  // stride < E
  CHECK(call(fake, 64, 4, 64, w, 8, true, {out, out + 8, 16, 7}) == cudaErrorInvalidValue);
}

namespace {

template <class T>
void fill_row(std::vector<T>& v, size_t offset, int n, float value) {
  for (int i = 0; i < n; ++i) v[offset + size_t(i)] = beam::from_float<T>(value);
}

//! router_logits at T tokens, E experts, H, against Σ_h x·w in double: within 2⁻¹⁸·Σ|x·w| for
//! finite sums, the same NaN and signed infinities otherwise; output columns past E untouched.
template <class T>
void check_logits(int64_t tokens, int E, int H, bool mask, uint64_t seed) {
  CAPTURE(tokens);
  CAPTURE(E);
  CAPTURE(H);
  CAPTURE(mask);
  CAPTURE(beam::dtype_traits<T>::name);
  const int64_t x_stride = H + 8, w_stride = H + 16, out_stride = E + 3;
  auto x = beam::test::random_values<T>(size_t(tokens * x_stride), seed);
  const auto w_r = beam::test::random_values<T>(size_t(E * w_stride), seed + 1);
  const auto w_m = beam::test::random_values<T>(size_t(E * w_stride), seed + 2);
  const float inf = std::numeric_limits<float>::infinity();
  if (tokens > 2) {
    fill_row(x, size_t(0), H, 0.0f);                                        // token 0: zeros
    x[size_t(x_stride) + size_t(H / 2)] = beam::from_float<T>(std::nanf(""));  // token 1: a NaN
    x[size_t(2 * x_stride)] = beam::from_float<T>(inf);                     // token 2: an infinity
  }
  const auto w_g = beam::test::random_values<T>(size_t(H), seed + 3);  // a shared expert gate row
  const int C = 3;  // constant experts: W_c [2C, H], rows H apart
  const auto w_c = beam::test::random_values<T>(size_t(2 * C * H), seed + 4);
  beam::test::device_vector<T> d_x(x), d_wr(w_r), d_wm(w_m), d_wg(w_g), d_wc(w_c);
  beam::test::device_vector<float> d_r(size_t(tokens * out_stride)), d_z(size_t(tokens * out_stride)),
      d_g{static_cast<size_t>(tokens)}, d_c{size_t(tokens * 2 * C)};
  d_r.poison();
  d_z.poison();
  d_g.poison();
  d_c.poison();
  REQUIRE(beam::device::router_logits<T>(
              d_x.data(), x_stride, tokens, H,
              {d_wr.data(), d_wm.data(), w_stride, w_stride, d_wg.data(), d_wc.data(), C}, E, mask,
              {d_r.data(), d_z.data(), out_stride, out_stride, d_g.data(), d_c.data()}) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const auto r = d_r.to_host(), z = d_z.to_host(), gate = d_g.to_host(), constant = d_c.to_host();
  const auto check_extra_row = [&](int64_t t, const T* w, float got) {  // x·w of an extra row, as a logit
    double sum = 0.0, magnitude = 0.0;
    for (int h = 0; h < H; ++h) {
      const double product = double(beam::to_float(x[size_t(t * x_stride + h)])) * beam::to_float(w[h]);
      sum += product;
      magnitude += std::abs(product);
    }
    if (std::isnan(sum)) CHECK(std::isnan(got));
    else if (std::isinf(sum)) CHECK(got == float(sum));
    else CHECK(std::abs(double(got) - sum) <= std::ldexp(magnitude, -18) + 1e-30);
  };
  for (int64_t t = 0; t < tokens; ++t) {  // x·w_g, then x·W_cᵀ
    CAPTURE(t);
    check_extra_row(t, w_g.data(), gate[size_t(t)]);
    for (int j = 0; j < 2 * C; ++j) check_extra_row(t, w_c.data() + j * H, constant[size_t(t * 2 * C + j)]);
  }
  for (int half = 0; half < (mask ? 2 : 1); ++half) {
    const auto& w = half == 0 ? w_r : w_m;
    const auto& got = half == 0 ? r : z;
    for (int64_t t = 0; t < tokens; ++t) {
      for (int e = 0; e < out_stride; ++e) {
        CAPTURE(half);
        CAPTURE(t);
        CAPTURE(e);
        const float value = got[size_t(t * out_stride + e)];
        if (e >= E) {  // past the last expert: the poison, unwritten
          uint32_t bits;
          std::memcpy(&bits, &value, sizeof bits);
          CHECK(bits == 0xFFFFFFFFu);
          continue;
        }
        double sum = 0.0, magnitude = 0.0;
        for (int h = 0; h < H; ++h) {
          const double product = double(beam::to_float(x[size_t(t * x_stride + h)])) *
                                 beam::to_float(w[size_t(e * w_stride + h)]);
          sum += product;
          magnitude += std::abs(product);
        }
        if (std::isnan(sum)) {
          CHECK(std::isnan(value));
        } else if (std::isinf(sum)) {
          CHECK(value == float(sum));
        } else {
          CHECK(std::abs(double(value) - sum) <= std::ldexp(magnitude, -18) + 1e-30);
        }
      }
    }
  }
  if (!mask) {  // W_m and the mask output untouched
    for (float value : z) CHECK(std::isnan(value));
  }
}

//! Every output of a routing, `[T, K]` each, compared as bits.
struct routing_bits {
  std::vector<int32_t> ids, candidates;
  std::vector<uint32_t> weights, mask_probs;
};

struct routed_batch {
  beam::test::device_vector<int32_t> ids, candidates;
  beam::test::device_vector<float> weights, mask_probs;

  explicit routed_batch(size_t slots) : ids(slots), candidates(slots), weights(slots), mask_probs(slots) {
    ids.poison();
    candidates.poison();
    weights.poison();
    mask_probs.poison();
  }
  routing_outputs outputs(size_t first_slot = 0) const {
    return {ids.data() + first_slot, weights.data() + first_slot, mask_probs.data() + first_slot,
            candidates.data() + first_slot};
  }
  routing_bits bits() const {
    routing_bits b{ids.to_host(), candidates.to_host(), {}, {}};
    for (const auto* source : {&weights, &mask_probs}) {
      const auto values = source->to_host();
      auto& target = source == &weights ? b.weights : b.mask_probs;
      target.resize(values.size());
      std::memcpy(target.data(), values.data(), values.size() * sizeof(float));
    }
    return b;
  }
};

//! Routes `tokens` tokens as moe_forward does: route_decode up to 64 tokens, else
//! router_logits into [T, 2E] and route_and_mask.
template <class T>
void route_batch(const T* x, int64_t tokens, int H, const router_weights<T>& weights, int E,
                 const beam::routing_options& options, const routing_outputs& out) {
  if (tokens <= beam::device::max_decode_tokens) {
    size_t bytes = 0;
    REQUIRE(beam::device::route_decode<T>(nullptr, bytes, x, H, tokens, H, weights, E, options, out) == cudaSuccess);
    const auto workspace = beam::test::device_vector<char>::workspace(bytes);
    REQUIRE(beam::device::route_decode(workspace.data(), bytes, x, H, tokens, H, weights, E, options, out) ==
            cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    return;
  }
  beam::test::device_vector<float> logits(size_t(tokens) * 2 * size_t(E));
  float* l = logits.data();
  REQUIRE(beam::device::router_logits(x, H, tokens, H, weights, E, beam::uses_mask(options), {l, l + E, 2 * E, 2 * E}) ==
          cudaSuccess);
  REQUIRE(beam::device::route_and_mask<float>({l, l + E, 2 * E, 2 * E}, tokens, E, options, out) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
}

//! Pool of `pool` tokens; the reference routing is the whole pool in a shuffled order. Then
//! each batch size B: B tokens drawn from the pool in another order; then tokens alone (all
//! of them on a GPU, a sample under the emulator). Every token's K slots must equal its slots
//! in the reference, bit for bit.
template <class T>
void check_invariance(int64_t pool, int E, int K, int H, const beam::routing_options& base, uint64_t seed) {
  CAPTURE(E);
  CAPTURE(K);
  CAPTURE(H);
  CAPTURE(beam::dtype_traits<T>::name);
  beam::routing_options options = base;
  options.top_k = K;
  auto x = beam::test::random_values<T>(size_t(pool * H), seed);
  fill_row(x, 0, H, 0.0f);                                          // every logit 0: ties everywhere
  x[size_t(H) + 3] = beam::from_float<T>(std::nanf(""));            // NaN logits
  std::copy(x.begin() + 3 * H, x.begin() + 4 * H, x.begin() + 2 * H);  // two equal tokens
  const auto w_r = beam::test::random_values<T>(size_t(E * H), seed + 1);
  const auto w_m = beam::test::random_values<T>(size_t(E * H), seed + 2);
  beam::test::device_vector<T> d_wr(w_r), d_wm(w_m);
  const router_weights<T> weights{d_wr.data(), d_wm.data(), H, H};
  std::mt19937_64 rng(seed + 3);

  // Routes the tokens `order` (pool indices) as one batch; returns each pool token's slots.
  const auto route_order = [&](const std::vector<int64_t>& order) {
    std::vector<T> batch(order.size() * size_t(H));
    for (size_t i = 0; i < order.size(); ++i) {
      std::copy_n(x.begin() + order[i] * H, H, batch.begin() + int64_t(i) * H);
    }
    beam::test::device_vector<T> d_batch(batch);
    routed_batch out(order.size() * size_t(K));
    route_batch<T>(d_batch.data(), int64_t(order.size()), H, weights, E, options, out.outputs());
    return out.bits();
  };
  std::vector<int64_t> all(static_cast<size_t>(pool));
  std::iota(all.begin(), all.end(), int64_t(0));
  std::shuffle(all.begin(), all.end(), rng);
  const routing_bits reference = route_order(all);
  std::vector<int64_t> slot_of(static_cast<size_t>(pool));  // pool token → its place in `all`
  for (size_t i = 0; i < all.size(); ++i) slot_of[size_t(all[i])] = int64_t(i);
  for (int k = 0; k < K; ++k) {  // the two equal tokens, 2 and 3, route alike
    const size_t two = size_t(slot_of[2] * K + k), three = size_t(slot_of[3] * K + k);
    CHECK(reference.ids[two] == reference.ids[three]);
    CHECK(reference.weights[two] == reference.weights[three]);
    CHECK(reference.mask_probs[two] == reference.mask_probs[three]);
  }

  const auto check_same = [&](const routing_bits& got, size_t place, int64_t token) {
    CAPTURE(token);
    for (int k = 0; k < K; ++k) {
      CAPTURE(k);
      const size_t mine = place * size_t(K) + size_t(k), theirs = size_t(slot_of[size_t(token)] * K + k);
      CHECK(got.ids[mine] == reference.ids[theirs]);
      CHECK(got.candidates[mine] == reference.candidates[theirs]);
      CHECK(got.weights[mine] == reference.weights[theirs]);
      CHECK(got.mask_probs[mine] == reference.mask_probs[theirs]);
    }
  };
  for (int64_t batch : {int64_t(7), int64_t(64), int64_t(65), int64_t(300)}) {
    CAPTURE(batch);
    std::vector<int64_t> order = all;
    std::shuffle(order.begin(), order.end(), rng);
    order.resize(size_t(std::min(batch, pool)));
    order[0] = int64_t(batch % 4);  // one of the crafted tokens in every batch
    const routing_bits got = route_order(order);
    for (size_t i = 0; i < order.size(); ++i) check_same(got, i, order[i]);
  }
  // Alone: route_decode at T = 1 on each token's row of the pool, slots written in place.
  const int64_t alone = beam::test::emulated_device() ? 24 : pool;
  beam::test::device_vector<T> d_pool(x);
  routed_batch out(size_t(alone * K));
  size_t bytes = 0;
  REQUIRE(beam::device::route_decode<T>(nullptr, bytes, d_pool.data(), H, 1, H, weights, E, options, out.outputs()) ==
          cudaSuccess);
  const auto workspace = beam::test::device_vector<char>::workspace(bytes);
  for (int64_t token = 0; token < alone; ++token) {
    REQUIRE(beam::device::route_decode(workspace.data(), bytes, d_pool.data() + token * H, H, 1, H, weights, E,
                                       options, out.outputs(size_t(token * K))) == cudaSuccess);
  }
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const routing_bits got = out.bits();
  for (int64_t token = 0; token < alone; ++token) check_same(got, size_t(token), token);
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("router_logits equals the exact sum to fp32 accumulation: odd sizes, strides, mask off, NaN/Inf") {
    BEAM_REQUIRE_GPU();
    int n = 0;
    for (int64_t tokens : {1, 7, 65, 300}) {
      for (int E : {1, 8, 60, 129}) {
        const int H = n % 3 == 0 ? 8 : n % 3 == 1 ? 200 : 392;
        check_logits<__nv_bfloat16>(tokens, E, H, n % 4 != 3, 700 + uint64_t(n));
        check_logits<__half>(tokens, E, H, n % 4 != 1, 800 + uint64_t(n));
        ++n;
      }
    }
  }

  TEST_CASE("a token's routing has the same bits alone and in batches of 7, 64, 65, 300 and 4096") {
    BEAM_REQUIRE_GPU();
    beam::routing_options softmax;
    check_invariance<__nv_bfloat16>(4096, 64, 8, beam::test::emulated_device() ? 392 : 2048, softmax, 41);
    beam::routing_options sigmoid;
    sigmoid.scoring = beam::score_function::sigmoid;
    sigmoid.renormalize = true;
    sigmoid.routed_scaling_factor = 2.5f;
    check_invariance<__half>(beam::test::emulated_device() ? 300 : 4096, 200, 5, 200, sigmoid, 42);
    // H past one round of route_decode (2048): rounds add their segments in order too.
    check_invariance<__nv_bfloat16>(beam::test::emulated_device() ? 300 : 4096, 32, 4,
                                    beam::test::emulated_device() ? 2176 : 7168, softmax, 43);
  }
}
