// beam::device::route_decode (router logits + routing in one launch) against the host
// reference. Hidden states and weights lie on a coarse grid (multiples of 1/4), so every
// logit is exact in float whatever the summation order: ids compare exactly, ties included.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "beam/reference/permute.cuh"
#include "beam/reference/routing.cuh"
#include "beam/routing/device_route_decode.cuh"
#include "common/gpu.cuh"
#include "common/routing_inputs.cuh"

namespace ref = beam::reference;
using beam::device::router_weights;
using beam::device::routing_outputs;

TEST_CASE("route_decode: workspace query and bad arguments, before touching the device") {
  using bf16 = __nv_bfloat16;
  const bf16* fake = reinterpret_cast<const bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  const router_weights<bf16> w{fake, fake, 64, 64};
  const routing_outputs out{reinterpret_cast<int32_t*>(0x2000), reinterpret_cast<float*>(0x3000)};
  void* workspace = reinterpret_cast<void*>(0x4000);
  beam::routing_options opt;
  opt.top_k = 4;
  size_t one = 0, full = 0;
  REQUIRE(beam::device::route_decode(nullptr, one, fake, 64, 1, 64, w, 128, opt, out) == cudaSuccess);
  REQUIRE(beam::device::route_decode(nullptr, full, fake, 64, 64, 64, w, 128, opt, out) == cudaSuccess);
  CHECK(full >= one + 63 * 2 * 128 * sizeof(float));  // the [T, 2E] float logits
  const auto call = [&](const bf16* x, int64_t x_stride, int64_t T, int H, const router_weights<bf16>& weights,
                        int E, const beam::routing_options& o, const routing_outputs& r, size_t bytes) {
    return beam::device::route_decode(workspace, bytes, x, x_stride, T, H, weights, E, o, r);
  };
  CHECK(call(fake, 64, 65, 64, w, 128, opt, out, full) == cudaErrorInvalidValue);   // T > 64
  CHECK(call(fake, 64, -1, 64, w, 128, opt, out, full) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, w, 257, opt, out, full) == cudaErrorInvalidValue);    // E > 256
  CHECK(call(fake, 64, 4, 60, w, 128, opt, out, full) == cudaErrorInvalidValue);    // H % 8
  CHECK(call(fake, 64, 4, 64, {fake, fake, 64, 64, fake}, 128, opt, out, full) == cudaErrorInvalidValue);  // a gate
  const int64_t beyond = beam::max_extent + 8;  // H ≤ 2³⁰
  CHECK(call(fake, beyond, 4, int(beyond), {fake, fake, beyond, beyond}, 128, opt, out, full) ==
        cudaErrorInvalidValue);
  CHECK(call(fake, 60, 4, 56, w, 128, opt, out, full) == cudaErrorInvalidValue);    // stride % 8
  CHECK(call(fake, 32, 4, 64, w, 128, opt, out, full) == cudaErrorInvalidValue);    // stride < H
  CHECK(call(fake + 4, 64, 4, 64, w, 128, opt, out, full) == cudaErrorInvalidValue);  // x misaligned
  CHECK(call(fake, 64, 4, 64, {fake + 1, fake, 64, 64}, 128, opt, out, full) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, {fake, nullptr, 64, 64}, 128, opt, out, full) == cudaErrorInvalidValue);
  CHECK(call(nullptr, 64, 4, 64, w, 128, opt, out, full) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 4, 64, w, 128, opt, {nullptr, out.topk_weights}, full) == cudaErrorInvalidValue);
  CHECK(call(fake, 64, 64, 64, w, 128, opt, out, full - 1) == cudaErrorInvalidValue);  // workspace too small
  beam::routing_options k_big = opt;
  k_big.top_k = 17;
  CHECK(call(fake, 64, 4, 64, w, 128, k_big, out, full) == cudaErrorInvalidValue);
  for (const beam::routing_options& bad : beam::test::malformed_rules(opt)) {
    CHECK(call(fake, 64, 4, 64, w, 128, bad, out, full) == cudaErrorInvalidValue);
  }
}

namespace {

//! n values k/4, |k| ≤ 4: exact in every storage type, products exact multiples of 1/16.
template <class T>
std::vector<T> grid_values(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> k(-4, 4);
  std::vector<T> v(n);
  for (auto& x : v) x = beam::from_float<T>(float(k(rng)) / 4.0f);
  return v;
}

//! out[t, e] = Σ_h x[t, h] · w[e, h] in double (exact here).
template <class T>
std::vector<float> logits_of(const std::vector<T>& x, int64_t x_stride, const std::vector<T>& w, int64_t w_stride,
                             int64_t tokens, int experts, int hidden) {
  const auto widened = [](const std::vector<T>& v) {
    std::vector<double> d(v.size());
    for (size_t i = 0; i < v.size(); ++i) d[i] = beam::to_float(v[i]);
    return d;
  };
  const std::vector<double> xd = widened(x), wd = widened(w);
  std::vector<float> out(size_t(tokens * experts));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int e = 0; e < experts; ++e) {
      double sum = 0.0;
      for (int h = 0; h < hidden; ++h) sum += xd[t * x_stride + h] * wd[e * w_stride + h];
      out[t * experts + e] = float(sum);
    }
  }
  return out;
}

template <class T>
void check_decode(int64_t tokens, int E, int K, int H, const beam::routing_options& options, bool padded,
                  uint64_t seed, int count_case) {
  CAPTURE(tokens);
  CAPTURE(E);
  CAPTURE(K);
  CAPTURE(H);
  CAPTURE(beam::dtype_traits<T>::name);
  CAPTURE(int(options.rule));
  CAPTURE(padded);
  const int64_t stride = H + (padded ? int64_t(16 / sizeof(T)) : 0);
  const auto x = grid_values<T>(size_t(tokens * stride) + 1, seed);
  const auto w_r = grid_values<T>(size_t(E * stride), seed + 1), w_m = grid_values<T>(size_t(E * stride), seed + 2);
  const auto r = logits_of(x, stride, w_r, stride, tokens, E, H), z = logits_of(x, stride, w_m, stride, tokens, E, H);
  beam::routing_options opt = options;
  opt.top_k = K;
  const beam::test::valid_token_count valid(tokens, count_case);
  CAPTURE(valid.given);
  CAPTURE(valid.host);
  const auto expected =
      ref::route_and_mask<float>({r.data(), tokens, E, E}, {z.data(), tokens, E, E}, valid.on_host(opt));
  opt = valid.on_device(opt);
  const auto expected_perm = ref::compact(expected.topk_ids.data(), tokens, K, E);

  beam::test::device_vector<T> d_x(x), d_wr(w_r), d_wm(w_m);
  const router_weights<T> weights{d_wr.data(), d_wm.data(), stride, stride};
  const size_t slots = size_t(std::max<int64_t>(tokens * K, 1));
  beam::test::device_vector<int32_t> ids{slots}, candidates{slots}, counts{size_t(E)}, ids_again{slots};
  beam::test::device_vector<float> weights_out(slots), probs(slots), weights_again(slots);
  beam::test::device_vector<unsigned long long> active(1);
  for (auto* poisoned : {&ids, &candidates, &counts}) poisoned->poison();
  weights_out.poison();
  probs.poison();
  active.poison();
  size_t bytes = 0;
  beam::test::device_vector<int32_t> ids_or_zero{slots};
  ids_or_zero.poison();
  routing_outputs out{ids.data(), weights_out.data(), probs.data(), candidates.data(), counts.data(), active.data()};
  out.topk_ids_or_zero = ids_or_zero.data();
  REQUIRE(beam::device::route_decode<T>(nullptr, bytes, d_x.data(), stride, tokens, H, weights, E, opt, out) ==
          cudaSuccess);
  const auto workspace = beam::test::device_vector<char>::workspace(bytes);
  REQUIRE(beam::device::route_decode(workspace.data(), bytes, d_x.data(), stride, tokens, H, weights, E, opt, out) ==
          cudaSuccess);
  // Same workspace again: the first call leaves the counter at zero for the second.
  REQUIRE(beam::device::route_decode(workspace.data(), bytes, d_x.data(), stride, tokens, H, weights, E, opt,
                                     {ids_again.data(), weights_again.data()}) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());

  CHECK(active.to_host()[0] == static_cast<unsigned long long>(expected.active_pairs()));
  CHECK(counts.to_host() == expected_perm.counts);
  if (tokens == 0) return;
  CHECK(ids.to_host() == expected.topk_ids);
  std::vector<int32_t> expected_or_zero = expected.topk_ids;  // −1 → expert 0 (weight 0)
  for (int32_t& id : expected_or_zero) id = std::max(id, 0);
  CHECK(ids_or_zero.to_host() == expected_or_zero);
  CHECK(candidates.to_host() == expected.candidate_ids);
  const auto got_w = weights_out.to_host(), got_m = probs.to_host();
  for (size_t s = 0; s < got_w.size(); ++s) {
    CAPTURE(s);
    CHECK(std::abs(got_w[s] - expected.topk_weights[s]) <= 1e-5f * std::max(1.0f, std::abs(expected.topk_weights[s])));
    CHECK(std::abs(got_m[s] - expected.mask_probs[s]) <= 1e-6f);
  }
  CHECK(ids_again.to_host() == ids.to_host());
  CHECK(weights_again.to_host() == got_w);  // bitwise deterministic
}

template <class T>
void decode_cases(uint64_t seed_base) {
  int n = 0;
  for (int64_t tokens : {0, 1, 3, 8, 9, 33, 64}) {
    for (int E : {8, 60, 128, 256}) {
      for (int K : {1, 4, 8, 16}) {
        if (K > E) continue;
        // 2176 and 7168: more than one round of 2048 (the segments' order across rounds).
        const int H = n % 3 == 0 ? (beam::test::emulated_device() ? 520 : 2048)
                      : n % 3 == 1 ? 200
                      : n % 9 == 2 ? (beam::test::emulated_device() ? 2176 : 7168)
                                   : 8;
        beam::routing_options opt;
        switch (n % 5) {
          case 0: break;
          case 1: opt.renormalize = true; opt.routed_scaling_factor = 2.5f; break;
          case 2: opt.rule = beam::routing_rule::top_k; break;
          case 3:  // DeepSeek-V3-like: σ keys, renormalised, group-limited where K fits two of four groups
            opt.scoring = beam::score_function::sigmoid;
            opt.renormalize = true;
            opt.top_k = K;
            opt.num_groups = 4;
            opt.top_groups = 2;
            if (!beam::valid_groups(opt, E)) opt.num_groups = 1;
            break;
          case 4:  // λ with the rules beside the mask: top-p with a cap, or a threshold
            opt.routed_scaling_factor = 0.5f;
            if ((n / 5) % 2 == 0) {
              opt.rule = beam::routing_rule::top_p;
              opt.top_p = 0.6f;
              opt.max_active = (K + 1) / 2;
            } else {
              opt.rule = beam::routing_rule::threshold;
              opt.threshold = 0.05f;
            }
            break;
        }
        check_decode<T>(tokens, E, K, H, opt, n % 2 == 1, seed_base + uint64_t(n), n % 7);
        ++n;
      }
    }
  }
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("route_decode equals the exact logits + reference routing: fp16, bf16") {
    BEAM_REQUIRE_GPU();
    decode_cases<__half>(4000);
    decode_cases<__nv_bfloat16>(5000);
  }

  TEST_CASE("route_decode replayed from a CUDA graph on new hidden states equals eager") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    const int64_t T = 16;
    const int E = 128, K = 8, H = 2048;
    const auto first = grid_values<bf16>(size_t(T * H), 71), second = grid_values<bf16>(size_t(T * H), 72);
    beam::test::device_vector<bf16> x(first), w_r(grid_values<bf16>(size_t(E * H), 73)),
        w_m(grid_values<bf16>(size_t(E * H), 74));
    const router_weights<bf16> weights{w_r.data(), w_m.data(), H, H};
    beam::routing_options opt;
    opt.top_k = K;
    beam::test::device_vector<int32_t> ids(size_t(T * K)), eager_ids(size_t(T * K));
    beam::test::device_vector<float> gates(size_t(T * K)), eager_gates(size_t(T * K));
    size_t bytes = 0;
    REQUIRE(beam::device::route_decode<bf16>(nullptr, bytes, x.data(), H, T, H, weights, E, opt,
                                             {ids.data(), gates.data()}) == cudaSuccess);
    const auto workspace = beam::test::device_vector<char>::workspace(bytes);
    const beam::test::captured_graph graph([&](cudaStream_t stream) {
      REQUIRE(beam::device::route_decode(workspace.data(), bytes, x.data(), H, T, H, weights, E, opt,
                                         {ids.data(), gates.data()}, stream) == cudaSuccess);
    });
    BEAM_CUDA_TRY(cudaMemcpy(x.data(), second.data(), second.size() * sizeof(bf16), cudaMemcpyHostToDevice));
    for (int replay = 0; replay < 3; ++replay) graph.replay();
    REQUIRE(beam::device::route_decode(workspace.data(), bytes, x.data(), H, T, H, weights, E, opt,
                                       {eager_ids.data(), eager_gates.data()}, graph.stream()) == cudaSuccess);
    BEAM_CUDA_TRY(cudaStreamSynchronize(graph.stream()));
    CHECK(ids.to_host() == eager_ids.to_host());
    CHECK(gates.to_host() == eager_gates.to_host());
  }
}
