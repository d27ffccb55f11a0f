// beam::device::route_and_mask (and so beam::warp::route_token) against the host reference:
// ids, candidates and telemetry exactly, weights and mask probabilities to float tolerance.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "beam/reference/permute.cuh"
#include "beam/reference/routing.cuh"
#include "beam/routing/device_route.cuh"
#include "common/gpu.cuh"
#include "common/routing_inputs.cuh"
#include "common/testing.hpp"

namespace ref = beam::reference;
using beam::device::routing_logits;
using beam::device::routing_outputs;

TEST_CASE("route_and_mask rejects bad arguments before touching the device") {
  const float* fake = reinterpret_cast<const float*>(0x1000);  // never dereferenced
  int32_t* ids = reinterpret_cast<int32_t*>(0x2000);
  float* weights = reinterpret_cast<float*>(0x3000);
  const routing_logits<float> logits{fake, fake + 8, 16, 16};
  const routing_outputs out{ids, weights};
  beam::routing_options opt;
  opt.top_k = 2;
  const auto call = [&](const routing_logits<float>& l, int64_t T, int E, const beam::routing_options& o,
                        const routing_outputs& r) { return beam::device::route_and_mask(l, T, E, o, r); };
  CHECK(call(logits, -1, 8, opt, out) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 0, opt, out) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 513, opt, out) == cudaErrorInvalidValue);
  beam::routing_options k_big = opt;
  k_big.top_k = 9;
  CHECK(call(logits, 4, 8, k_big, out) == cudaErrorInvalidValue);  // K > E
  k_big.top_k = 17;
  CHECK(call(logits, 4, 64, k_big, out) == cudaErrorInvalidValue);  // K > 16
  beam::routing_options k_zero = opt;
  k_zero.top_k = 0;
  CHECK(call(logits, 4, 8, k_zero, out) == cudaErrorInvalidValue);
  CHECK(call({nullptr, fake, 16, 16}, 4, 8, opt, out) == cudaErrorInvalidValue);
  CHECK(call({fake, nullptr, 16, 16}, 4, 8, opt, out) == cudaErrorInvalidValue);  // mask on, no z
  CHECK(call({fake, fake, 7, 16}, 4, 8, opt, out) == cudaErrorInvalidValue);      // stride < E
  CHECK(call(logits, 4, 8, opt, {nullptr, weights}) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 8, opt, {ids, nullptr}) == cudaErrorInvalidValue);
  for (const beam::routing_options& bad : beam::test::malformed_rules(opt)) {
    CHECK(call(logits, 4, 8, bad, out) == cudaErrorInvalidValue);
  }
  beam::routing_options grouped = opt;  // groups: G | E, G ≤ 32, top_groups ∈ [1, G], K ≤ top_groups·E/G
  grouped.num_groups = 3;
  CHECK(call(logits, 4, 8, grouped, out) == cudaErrorInvalidValue);
  grouped.num_groups = 4;
  grouped.top_groups = 0;
  CHECK(call(logits, 4, 8, grouped, out) == cudaErrorInvalidValue);
  grouped.top_groups = 5;
  CHECK(call(logits, 4, 8, grouped, out) == cudaErrorInvalidValue);
  grouped.top_groups = 1;
  grouped.top_k = 3;  // more than the 2 experts of one group
  CHECK(call(logits, 4, 8, grouped, out) == cudaErrorInvalidValue);
  grouped.num_groups = 64;
  grouped.top_groups = 1;
  grouped.top_k = 1;
  CHECK(call({fake, fake + 64, 128, 128}, 4, 64, grouped, out) == cudaErrorInvalidValue);  // G > 32
  routing_outputs counted{ids, weights};
  counted.expert_counts = ids;  // int32 counts: T ≤ 2³¹ − 1
  CHECK(call(logits, int64_t(INT32_MAX) + 1, 8, opt, counted) == cudaErrorInvalidValue);
  // T = 0 without telemetry: success, and no CUDA call is made.
  CHECK(call({nullptr, nullptr, 0, 0}, 0, 8, opt, {}) == cudaSuccess);
}

namespace {

struct route_case {
  int64_t T;
  int E, K;
  beam::routing_options opt;
  bool fused_layout;  //!< one [T, 2E] array (+ padding) instead of two [T, E] arrays
};

//! `count_case`: the valid_token_count case (0: no count). Returns the reference's kept pairs.
template <class LogitT>
int64_t check_case(const route_case& c, const std::vector<LogitT>& r, const std::vector<LogitT>& z, int count_case = 0) {
  const int64_t T = c.T;
  const int E = c.E, K = c.K;
  CAPTURE(T);
  CAPTURE(E);
  CAPTURE(K);
  CAPTURE(beam::dtype_traits<LogitT>::name);
  CAPTURE(int(c.opt.scoring));
  CAPTURE(c.opt.renormalize);
  CAPTURE(int(c.opt.rule));
  CAPTURE(c.fused_layout);
  const beam::test::device_logits<LogitT> logits(r, z, T, E, c.fused_layout);
  beam::routing_options opt = c.opt;
  opt.top_k = K;
  std::vector<float> bias_host;
  if (opt.selection_bias) bias_host.assign(opt.selection_bias, opt.selection_bias + E);
  const beam::test::valid_token_count valid(T, count_case);
  CAPTURE(valid.given);
  CAPTURE(valid.host);
  const auto expected = ref::route_and_mask<float>(logits.r_view(T, E), logits.z_view(T, E), valid.on_host(opt));
  const auto expected_perm = ref::compact(expected.topk_ids.data(), T, K, E);

  beam::test::device_vector<float> d_bias(bias_host.empty() ? std::vector<float>(1) : bias_host);
  if (opt.selection_bias) opt.selection_bias = d_bias.data();
  opt = valid.on_device(opt);
  const size_t slots = size_t(std::max<int64_t>(T * K, 1));
  beam::test::device_vector<int32_t> ids(slots), candidates(slots), counts{size_t(E)};
  beam::test::device_vector<float> weights(slots), probs(slots);
  beam::test::device_vector<unsigned long long> active(1);
  for (auto* poisoned : {&ids, &candidates, &counts}) poisoned->poison();
  weights.poison();
  probs.poison();
  active.poison();
  beam::test::device_vector<int32_t> ids_or_zero(slots);
  ids_or_zero.poison();
  routing_outputs out{ids.data(), weights.data(), probs.data(), candidates.data(), counts.data(), active.data()};
  out.topk_ids_or_zero = ids_or_zero.data();
  REQUIRE(beam::device::route_and_mask(logits.view, T, E, opt, out) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());

  CHECK(active.to_host()[0] == static_cast<unsigned long long>(expected.active_pairs()));
  CHECK(counts.to_host() == expected_perm.counts);
  if (T == 0) return 0;
  CHECK(ids.to_host() == expected.topk_ids);
  std::vector<int32_t> expected_or_zero = expected.topk_ids;  // −1 → expert 0 (weight 0)
  for (int32_t& id : expected_or_zero) id = id < 0 ? 0 : id;
  CHECK(ids_or_zero.to_host() == expected_or_zero);
  CHECK(candidates.to_host() == expected.candidate_ids);
  const auto w = weights.to_host(), m = probs.to_host();
  for (size_t s = 0; s < w.size(); ++s) {
    CAPTURE(s);
    CHECK(std::abs(w[s] - expected.topk_weights[s]) <= 1e-5f * std::max(1.0f, std::abs(expected.topk_weights[s])));
    if (std::isnan(expected.mask_probs[s])) {
      CHECK(std::isnan(m[s]));
    } else {
      CHECK(std::abs(m[s] - expected.mask_probs[s]) <= 1e-6f);
    }
  }
  // Bitwise deterministic: a second run gives the same bytes.
  beam::test::device_vector<float> weights_again(slots);
  const routing_outputs again{ids.data(), weights_again.data()};
  REQUIRE(beam::device::route_and_mask(logits.view, T, E, opt, again) == cudaSuccess);
  CHECK(weights_again.to_host() == w);
  return expected.active_pairs();
}

template <class LogitT>
void random_cases(uint64_t seed_base) {
  const std::vector<float> bias = beam::test::random_normal<float>(512, 7, 0.0, 0.05);
  int n = 0;
  for (int64_t T : beam::test::sweep<int64_t>({0, 1, 7, 64, 65, 1000}, {0, 1, 7, 65, 300})) {
    for (int E : {8, 60, 64, 128, 256, 512}) {  // every bound of the E dispatch
      for (int K : {1, 2, 4, 6, 8, 16}) {
        if (K > E) continue;
        const uint64_t seed = seed_base + uint64_t(n++);
        route_case c{T, E, K, {}, n % 2 == 0};
        switch (n % 4) {  // cycle through the options
          case 0: break;
          case 1: c.opt.renormalize = true; c.opt.routed_scaling_factor = 2.5f;
                  c.opt.selection_bias = bias.data(); break;  // key r + b: one float add on both sides
          case 2: c.opt.rule = beam::routing_rule::top_k; break;
          case 3: c.opt.scoring = beam::score_function::sigmoid; c.opt.renormalize = true; break;
        }
        const bool coarse = c.opt.scoring == beam::score_function::sigmoid;
        check_case<LogitT>(c, beam::test::make_logits<LogitT>(size_t(T * E), seed, coarse),
                           beam::test::make_logits<LogitT>(size_t(T * E), seed + 1000, false), n % 7);
      }
    }
  }
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("route_and_mask equals the reference on random routing: fp32, fp16, bf16") {
    BEAM_REQUIRE_GPU();
    random_cases<float>(100);
    random_cases<__half>(200);
    random_cases<__nv_bfloat16>(300);
  }

  TEST_CASE("route_and_mask: all masked, none masked, ties, NaN and ±Inf, padding after a count of valid tokens") {
    BEAM_REQUIRE_GPU();
    const int64_t T = 33;
    const int E = 64, K = 8;
    auto r = beam::test::make_logits<float>(size_t(T * E), 41, false);
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    for (int e = 0; e < E; ++e) {
      r[0 * E + e] = nan;                      // token 0: all NaN → no expert
      r[1 * E + e] = e < 3 ? r[1 * E + e] : nan;  // token 1: three candidates only
      r[2 * E + e] = 1.0f;                     // token 2: all tied → experts 0..7
      r[3 * E + e] = e % 5 == 0 ? inf : 0.0f;  // token 3: +inf shares
      r[4 * E + e] = -inf;                     // token 4: all −inf
    }
    r[5 * E + 9] = -0.0f;
    r[5 * E + 3] = 0.0f;  // −0 and +0 tie
    route_case c{T, E, K, {}, false};
    const std::vector<float> z_negative(size_t(T * E), -1e-3f), z_zero(size_t(T * E), 0.0f);
    auto z_special = beam::test::make_logits<float>(size_t(T * E), 42, false);
    for (int e = 0; e < E; e += 4) z_special[e] = nan;
    for (int e = 1; e < E; e += 4) z_special[E + e] = inf;
    check_case<float>(c, r, z_negative);  // all masked
    check_case<float>(c, r, z_zero);      // none masked (σ(0) = 0.5 keeps)
    check_case<float>(c, r, z_special);
    for (int count_case = 1; count_case < 5; ++count_case) check_case<float>(c, r, z_zero, count_case);  // padding
  }

  TEST_CASE("group-limited Top-K (DeepSeek-V3) equals the reference: random, ties, all groups equal, NaN, "
            "a group with one key") {
    BEAM_REQUIRE_GPU();
    const std::vector<float> bias = beam::test::random_normal<float>(256, 8, 0.0, 0.05);
    int n = 0;
    struct shape {
      int E, groups, top_groups, K;
    };
    for (auto [E, G, top, K] : {shape{256, 8, 4, 8}, shape{64, 4, 1, 4}, shape{60, 6, 2, 6}, shape{32, 32, 3, 3},
                                shape{16, 2, 2, 4}}) {
      for (int64_t T : {1, 7, 300}) {
        route_case c{T, E, K, {}, n % 2 == 0};
        c.opt.num_groups = G;
        c.opt.top_groups = top;
        if (n % 2 == 0) {  // DeepSeek-V3: σ keys with a correction bias, renormalised and scaled
          c.opt.scoring = beam::score_function::sigmoid;
          c.opt.selection_bias = bias.data();
          c.opt.renormalize = true;
          c.opt.routed_scaling_factor = 2.5f;
        }
        auto r = beam::test::make_logits<float>(size_t(T * E), 600 + uint64_t(n), true);  // coarse: ties
        const float nan = std::numeric_limits<float>::quiet_NaN();
        for (int e = 0; e < E; ++e) {
          r[size_t(e)] = 0.5f;  // token 0: every key equal, so are the groups: the lowest groups win
          if (T > 2) r[size_t(E + e)] = e % (E / G) == 0 ? r[size_t(E + e)] : nan;  // token 1: one key per group
          if (T > 3) r[size_t(2 * E + e)] = e < E / G ? nan : r[size_t(2 * E + e)];  // token 2: group 0 all NaN
        }
        check_case<float>(c, r, beam::test::make_logits<float>(size_t(T * E), 700 + uint64_t(n), false), n % 5);
        ++n;
      }
    }
  }

  TEST_CASE("routing rules equal the reference: top-p, threshold, a cap on the mask and on top-p; ties, NaN/Inf, "
            "tokens keeping none") {
    BEAM_REQUIRE_GPU();
    const std::vector<float> bias = beam::test::random_normal<float>(256, 9, 0.0, 0.05);
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    int n = 0;
    int64_t kept[6] = {}, slots[6] = {};  // per variant: each keeps some pairs and drops some
    for (int E : {8, 60, 256}) {
      for (int K : {1, 4, 8}) {
        for (int variant = 0; variant < 6; ++variant) {
          const int64_t T = beam::test::sweep<int64_t>({300}, {65})[0];
          route_case c{T, E, K, {}, n % 2 == 0};
          switch (variant) {
            case 0: c.opt.rule = beam::routing_rule::top_p; c.opt.top_p = 0.5f; break;
            case 1: c.opt.rule = beam::routing_rule::top_p; c.opt.top_p = 0.9f; c.opt.renormalize = true; break;
            case 2: c.opt.rule = beam::routing_rule::threshold; c.opt.threshold = 0.1f; break;
            case 3:  // DeepSeek-V3-like: σ scores, bias, renormalised and scaled; q = g / λ
              c.opt.rule = beam::routing_rule::threshold;
              c.opt.threshold = 0.3f;
              c.opt.scoring = beam::score_function::sigmoid;
              c.opt.selection_bias = bias.data();
              c.opt.renormalize = true;
              c.opt.routed_scaling_factor = 2.5f;
              break;
            case 4: c.opt.rule = beam::routing_rule::mask; c.opt.max_active = (K + 1) / 2; break;
            case 5: c.opt.rule = beam::routing_rule::top_p; c.opt.top_p = 0.95f; c.opt.max_active = 1; break;
          }
          CAPTURE(variant);
          auto r = beam::test::make_logits<float>(size_t(T * E), 800 + uint64_t(n), variant == 3);
          for (int e = 0; e < E; ++e) {
            r[size_t(e)] = 1.0f;                                             // token 0: all tied
            r[size_t(E + e)] = e % 3 == 0 ? nan : r[size_t(E + e)];          // token 1: NaN logits
            r[size_t(2 * E + e)] = e == E - 1 ? inf : r[size_t(2 * E + e)];  // token 2: one +∞ takes all
            r[size_t(3 * E + e)] = nan;                                      // token 3: no candidate
          }
          kept[variant] += check_case<float>(c, r, beam::test::make_logits<float>(size_t(T * E), 900 + uint64_t(n), false));
          slots[variant] += T * K;
          ++n;
        }
      }
    }
    for (int variant = 0; variant < 6; ++variant) {
      CAPTURE(variant);
      CHECK(kept[variant] > 0);
      CHECK(kept[variant] < slots[variant]);
    }
  }

  TEST_CASE("route_and_mask replayed from a CUDA graph on new logits equals eager") {
    BEAM_REQUIRE_GPU();
    const int64_t T = 257;
    const int E = 128, K = 8;
    auto first = beam::test::make_logits<float>(size_t(T * 2 * E), 51, false);
    const auto second = beam::test::make_logits<float>(size_t(T * 2 * E), 52, false);
    beam::test::device_vector<float> d_logits(first);
    beam::test::device_vector<int32_t> ids(size_t(T * K)), eager_ids(size_t(T * K));
    beam::test::device_vector<float> weights(size_t(T * K)), eager_weights(size_t(T * K));
    beam::routing_options opt;
    opt.top_k = K;
    const routing_logits<float> logits{d_logits.data(), d_logits.data() + E, 2 * E, 2 * E};
    const beam::test::captured_graph graph([&](cudaStream_t stream) {
      REQUIRE(beam::device::route_and_mask(logits, T, E, opt, {ids.data(), weights.data()}, stream) == cudaSuccess);
    });
    BEAM_CUDA_TRY(cudaMemcpy(d_logits.data(), second.data(), second.size() * sizeof(float), cudaMemcpyHostToDevice));
    graph.replay();
    REQUIRE(beam::device::route_and_mask(logits, T, E, opt, {eager_ids.data(), eager_weights.data()},
                                         graph.stream()) == cudaSuccess);
    BEAM_CUDA_TRY(cudaStreamSynchronize(graph.stream()));
    CHECK(ids.to_host() == eager_ids.to_host());
    CHECK(weights.to_host() == eager_weights.to_host());
  }
}
