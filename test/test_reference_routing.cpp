// The routing reference: hand-worked cases, options, non-finite logits, and invariants.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "beam/reference/routing.cuh"
#include "common/testing.hpp"

using beam::reference::matrix_view;
using beam::reference::route_and_mask;
using beam::reference::routing_options;
using beam::reference::score_function;

namespace {

constexpr float infinity = std::numeric_limits<float>::infinity();
constexpr float quiet_nan = std::numeric_limits<float>::quiet_NaN();

matrix_view<float> one_token(const std::vector<float>& logits) {
  return {logits.data(), 1, int64_t(logits.size()), int64_t(logits.size())};
}

}  // namespace

TEST_CASE("hand-worked token: E = 4, K = 2, one candidate masked, threshold inclusive") {
  const std::vector<float> r = {1, 3, 2, 0};
  const std::vector<float> z = {0.5f, -1, 0, 2};
  routing_options opt;
  opt.top_k = 2;
  const auto out = route_and_mask(one_token(r), one_token(z), opt);
  const double denom = std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(0.0);
  CHECK(out.candidate_ids == std::vector<int32_t>{1, 2});
  CHECK(out.topk_ids == std::vector<int32_t>{-1, 2});
  CHECK(out.gate_weights[0] == doctest::Approx(std::exp(3.0) / denom));
  CHECK(out.gate_weights[1] == doctest::Approx(std::exp(2.0) / denom));
  CHECK(out.topk_weights[0] == 0.0f);
  CHECK(out.topk_weights[1] == out.gate_weights[1]);
  CHECK(out.mask_probs[0] == doctest::Approx(1.0 / (1.0 + std::exp(1.0))));
  CHECK(out.mask_probs[1] == 0.5f);
  CHECK(out.active_count == std::vector<int32_t>{1});
  CHECK(out.active_pairs() == 1);
  CHECK(out.avg_k() == 1.0);

  opt.renormalize = true;  // softmax over the two candidates: {σ(1), σ(−1)}
  const auto renorm = route_and_mask(one_token(r), one_token(z), opt);
  CHECK(renorm.gate_weights[0] == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))));
  CHECK(renorm.gate_weights[1] == doctest::Approx(1.0 / (1.0 + std::exp(1.0))));
  CHECK(renorm.topk_weights[0] == 0.0f);  // no renormalisation after masking
  CHECK(renorm.topk_weights[1] == renorm.gate_weights[1]);
}

TEST_CASE("ties go to the lower expert index") {
  const std::vector<float> r = {1, 1, 1, 1, 1};
  routing_options opt;
  opt.top_k = 3;
  opt.rule = beam::routing_rule::top_k;
  const auto out = route_and_mask(one_token(r), matrix_view<float>{}, opt);
  CHECK(out.candidate_ids == std::vector<int32_t>{0, 1, 2});
  for (float g : out.gate_weights) CHECK(g == doctest::Approx(0.2));
}

TEST_CASE("NaN logits are never selected; infinities are values") {
  routing_options opt;
  opt.top_k = 3;
  opt.rule = beam::routing_rule::top_k;
  SUBCASE("some NaN: fewer candidates than K, no duplicates") {
    const std::vector<float> r = {quiet_nan, 0, quiet_nan, -1};
    const auto out = route_and_mask(one_token(r), matrix_view<float>{}, opt);
    CHECK(out.candidate_ids == std::vector<int32_t>{1, 3, -1});
    CHECK(out.topk_ids == std::vector<int32_t>{1, 3, -1});
    CHECK(out.gate_weights[0] == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))));
    CHECK(out.gate_weights[2] == 0.0f);
    CHECK(out.active_count[0] == 2);
  }
  SUBCASE("all NaN: no expert") {
    const std::vector<float> r = {quiet_nan, quiet_nan, quiet_nan, quiet_nan};
    const auto out = route_and_mask(one_token(r), matrix_view<float>{}, opt);
    CHECK(out.candidate_ids == std::vector<int32_t>{-1, -1, -1});
    CHECK(out.topk_weights == std::vector<float>{0, 0, 0});
    CHECK(out.active_count[0] == 0);
  }
  SUBCASE("+infinity logits share the probability") {
    const std::vector<float> r = {infinity, 0, infinity, 1};
    const auto out = route_and_mask(one_token(r), matrix_view<float>{}, opt);
    CHECK(out.candidate_ids == std::vector<int32_t>{0, 2, 3});
    CHECK(out.gate_weights == std::vector<float>{0.5f, 0.5f, 0.0f});
  }
  SUBCASE("all −infinity: equal shares, still selected") {
    const std::vector<float> r = {-infinity, -infinity, -infinity, -infinity};
    const auto out = route_and_mask(one_token(r), matrix_view<float>{}, opt);
    CHECK(out.candidate_ids == std::vector<int32_t>{0, 1, 2});
    for (float g : out.gate_weights) CHECK(g == 0.25f);
  }
  SUBCASE("mask logits: −0 and +infinity keep, NaN and −infinity mask") {
    const std::vector<float> r = {4, 3, 2, 1};
    const std::vector<float> z = {-0.0f, quiet_nan, infinity, -infinity};
    opt.top_k = 4;
    opt.rule = beam::routing_rule::mask;
    const auto out = route_and_mask(one_token(r), one_token(z), opt);
    CHECK(out.topk_ids == std::vector<int32_t>{0, -1, 2, -1});
    CHECK(std::isnan(out.mask_probs[1]));
    CHECK(out.mask_probs[2] == 1.0f);
    CHECK(out.mask_probs[3] == 0.0f);
  }
}

TEST_CASE("sigmoid scoring with selection bias, renormalisation and routed scaling") {
  const std::vector<float> r = {0, 1, -1, 2};
  const std::vector<float> bias = {3, 0, 0, 0};
  routing_options opt;
  opt.top_k = 2;
  opt.scoring = score_function::sigmoid;
  opt.selection_bias = bias.data();
  opt.rule = beam::routing_rule::top_k;
  const auto s = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  const auto plain = route_and_mask(one_token(r), matrix_view<float>{}, opt);
  CHECK(plain.candidate_ids == std::vector<int32_t>{0, 3});  // the bias selects expert 0
  CHECK(plain.gate_weights[0] == doctest::Approx(s(0)));     // ...but does not weight it
  CHECK(plain.gate_weights[1] == doctest::Approx(s(2)));
  opt.renormalize = true;
  opt.routed_scaling_factor = 2.5f;
  const auto renorm = route_and_mask(one_token(r), matrix_view<float>{}, opt);
  CHECK(renorm.gate_weights[0] == doctest::Approx(2.5 * s(0) / (s(0) + s(2))));
  CHECK(renorm.gate_weights[1] == doctest::Approx(2.5 * s(2) / (s(0) + s(2))));
}

TEST_CASE("softmax scoring with a selection bias: the bias moves the selection, not the weights") {
  const std::vector<float> r = {2, 1, 0, -1};
  const std::vector<float> bias = {0, 0, 2.5f, 0};  // key = r + b = {2, 1, 2.5, −1}
  routing_options opt;
  opt.top_k = 2;
  opt.selection_bias = bias.data();
  opt.rule = beam::routing_rule::top_k;
  const auto out = route_and_mask(one_token(r), matrix_view<float>{}, opt);
  const double denom = std::exp(2.0) + std::exp(1.0) + std::exp(0.0) + std::exp(-1.0);
  CHECK(out.candidate_ids == std::vector<int32_t>{2, 0});
  CHECK(out.gate_weights[0] == doctest::Approx(std::exp(0.0) / denom));
  CHECK(out.gate_weights[1] == doctest::Approx(std::exp(2.0) / denom));
}

TEST_CASE("mask off is plain Top-K; zero mask logits keep every candidate; negative ones none") {
  const int64_t T = 65, E = 60;
  const auto r = beam::test::random_normal<float>(T * E, 31);
  const matrix_view<float> rv{r.data(), T, E, E};
  routing_options opt;
  opt.top_k = 6;
  opt.rule = beam::routing_rule::top_k;
  const auto dense = route_and_mask(rv, matrix_view<float>{}, opt);
  CHECK(dense.topk_ids == dense.candidate_ids);
  CHECK(dense.topk_weights == dense.gate_weights);
  CHECK(dense.active_pairs() == T * 6);

  opt.rule = beam::routing_rule::mask;
  const std::vector<float> zero(T * E, 0.0f);  // a zero-initialised mask router
  const auto none_masked = route_and_mask(rv, {zero.data(), T, E, E}, opt);
  CHECK(none_masked.topk_ids == dense.topk_ids);
  CHECK(none_masked.topk_weights == dense.topk_weights);

  const std::vector<float> negative(T * E, -1e-3f);
  const auto all_masked = route_and_mask(rv, {negative.data(), T, E, E}, opt);
  CHECK(all_masked.active_pairs() == 0);
  CHECK(all_masked.avg_k() == 0.0);
  for (size_t i = 0; i < all_masked.topk_ids.size(); ++i) {
    CHECK(all_masked.topk_ids[i] == -1);
    CHECK(all_masked.topk_weights[i] == 0.0f);
  }
  CHECK(all_masked.candidate_ids == dense.candidate_ids);
}

TEST_CASE("a count of valid tokens: the tokens after it are padding, every slot empty; the count is clamped") {
  const int64_t T = 5, E = 8;
  const auto r = beam::test::random_normal<float>(T * E, 33);
  const auto z = beam::test::random_normal<float>(T * E, 34);
  routing_options opt;
  opt.top_k = 3;
  const auto all = route_and_mask<float>({r.data(), T, E, E}, {z.data(), T, E, E}, opt);
  for (const int32_t n : {2, 0, 5, 9, -1}) {
    CAPTURE(n);
    opt.valid_tokens = &n;
    const auto padded = route_and_mask<float>({r.data(), T, E, E}, {z.data(), T, E, E}, opt);
    const int64_t valid = std::clamp<int64_t>(n, 0, T);
    for (int64_t slot = 0; slot < T * opt.top_k; ++slot) {
      CAPTURE(slot);
      const size_t s = size_t(slot);
      if (slot < valid * opt.top_k) {  // routed as without a count
        CHECK(padded.candidate_ids[s] == all.candidate_ids[s]);
        CHECK(padded.topk_ids[s] == all.topk_ids[s]);
        CHECK(padded.topk_weights[s] == all.topk_weights[s]);
        CHECK(padded.mask_probs[s] == all.mask_probs[s]);
      } else {
        CHECK(padded.candidate_ids[s] == -1);
        CHECK(padded.topk_ids[s] == -1);
        CHECK(padded.gate_weights[s] == 0.0f);
        CHECK(padded.topk_weights[s] == 0.0f);
        CHECK(padded.mask_probs[s] == 0.0f);
      }
    }
    if (valid < T) CHECK(padded.active_pairs() < all.active_pairs());  // the padding's pairs are gone
    else CHECK(padded.active_pairs() == all.active_pairs());
  }
}

TEST_CASE("random routing: invariants, and one [T, 2E] array equals two [T, E] arrays") {
  struct shape {
    int64_t T, E;
    int K;
  };
  for (const auto& [T, E, K] : {shape{0, 8, 2}, shape{1, 8, 8}, shape{7, 64, 6}, shape{65, 128, 8},
                                shape{1000, 60, 4}, shape{31, 512, 16}}) {
    CAPTURE(T);
    CAPTURE(E);
    CAPTURE(K);
    const auto logits = beam::test::random_normal<float>(size_t(T * 2 * E), uint64_t(T * 1000 + E));
    std::vector<float> r(size_t(T * E)), z(size_t(T * E));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t e = 0; e < E; ++e) {
        r[t * E + e] = logits[t * 2 * E + e];
        z[t * E + e] = logits[t * 2 * E + E + e];
      }
    }
    routing_options opt;
    opt.top_k = K;
    const auto split = route_and_mask<float>({r.data(), T, E, E}, {z.data(), T, E, E}, opt);
    const auto fused = route_and_mask<float>({logits.data(), T, E, 2 * E}, {logits.data() + E, T, E, 2 * E}, opt);
    CHECK(split.topk_ids == fused.topk_ids);
    CHECK(split.topk_weights == fused.topk_weights);
    CHECK(split.mask_probs == fused.mask_probs);

    int64_t active = 0;
    for (int64_t t = 0; t < T; ++t) {
      std::set<int32_t> seen;
      int32_t kept = 0;
      for (int k = 0; k < K; ++k) {
        const size_t slot = size_t(t * K + k);
        const int32_t c = split.candidate_ids[slot];
        REQUIRE(c >= 0);
        REQUIRE(c < E);
        CHECK(seen.insert(c).second);  // distinct candidates
        if (k > 0) CHECK(r[t * E + split.candidate_ids[slot - 1]] >= r[t * E + c]);  // best first
        const bool keep = z[t * E + c] >= 0;
        CHECK(split.topk_ids[slot] == (keep ? c : -1));
        CHECK(split.topk_weights[slot] == (keep ? split.gate_weights[slot] : 0.0f));
        kept += keep;
      }
      // Every non-candidate logit is at most the K-th candidate's.
      for (int64_t e = 0; e < E; ++e) {
        if (!seen.count(int32_t(e))) CHECK(r[t * E + e] <= r[t * E + split.candidate_ids[t * K + K - 1]]);
      }
      CHECK(split.active_count[t] == kept);
      active += kept;
    }
    CHECK(split.active_pairs() == active);
  }
}

TEST_CASE("bad arguments throw") {
  const std::vector<float> r = {1, 2, 3};
  routing_options opt;
  opt.rule = beam::routing_rule::top_k;
  opt.top_k = 4;
  CHECK_THROWS_AS(route_and_mask(one_token(r), matrix_view<float>{}, opt), std::invalid_argument);
  opt.top_k = 0;
  CHECK_THROWS_AS(route_and_mask(one_token(r), matrix_view<float>{}, opt), std::invalid_argument);
  opt.top_k = 1;
  opt.rule = beam::routing_rule::mask;  // mask on needs mask logits
  CHECK_THROWS_AS(route_and_mask(one_token(r), matrix_view<float>{}, opt), std::invalid_argument);
}

TEST_CASE("group-limited Top-K (DeepSeek-V3): candidates from the best groups by the sum of their two best keys") {
  // E = 8 in 4 groups of 2, the 2 best groups, K = 3. Keys (softmax: r): group sums 4, 6, 4, 3:
  // groups 1 (6) and 0 (4, tied with group 2: the lower wins), so c = {0, 2, 3}; without groups
  // the best three keys are experts 0, 4, 2.
  const std::vector<float> r = {5, -1, 3, 3, 4, 0, 1, 2};
  beam::routing_options opt;
  opt.top_k = 3;
  opt.rule = beam::routing_rule::top_k;
  const beam::reference::matrix_view<float> rv{r.data(), 1, 8, 8}, none{nullptr, 0, 0, 0};
  CHECK(beam::reference::route_and_mask<float>(rv, none, opt).candidate_ids == std::vector<int32_t>{0, 4, 2});
  opt.num_groups = 4;
  opt.top_groups = 2;
  CHECK(beam::reference::route_and_mask<float>(rv, none, opt).candidate_ids == std::vector<int32_t>{0, 2, 3});
  opt.top_groups = 4;  // every group: no limit
  CHECK(beam::reference::route_and_mask<float>(rv, none, opt).candidate_ids == std::vector<int32_t>{0, 4, 2});
  // A NaN key: its group scores its one key (group 0: −1 → the worst), so groups 1 and 2 win.
  std::vector<float> with_nan = r;
  with_nan[0] = std::nanf("");
  opt.top_groups = 2;
  const beam::reference::matrix_view<float> nv{with_nan.data(), 1, 8, 8};
  CHECK(beam::reference::route_and_mask<float>(nv, none, opt).candidate_ids == std::vector<int32_t>{4, 2, 3});
  opt.top_groups = 1;  // K = 3 > the 2 experts of one group
  CHECK_THROWS_AS(beam::reference::route_and_mask<float>(rv, none, opt), std::invalid_argument);
  opt.num_groups = 3;  // does not divide E
  opt.top_groups = 2;
  CHECK_THROWS_AS(beam::reference::route_and_mask<float>(rv, none, opt), std::invalid_argument);
}

TEST_CASE("routing rules: top-p, threshold and a cap keep the slots their formulas give") {
  // Probabilities q = {1/2, 1/4, 1/8, 1/8} for experts {0, 1, 2, 3}: r = ln{4, 2, 1, 1}.
  const std::vector<float> r = {std::log(4.0f), std::log(2.0f), 0.0f, 0.0f};
  const std::vector<float> z = {-1.0f, 1.0f, 1.0f, 1.0f};  // the mask drops expert 0
  routing_options opt;
  opt.top_k = 4;
  const auto kept_ids = [&](const routing_options& o) { return route_and_mask(one_token(r), one_token(z), o).topk_ids; };
  opt.rule = beam::routing_rule::top_p;
  opt.top_p = 0.6f;  // masses before each slot: 0, 1/2, 3/4, 7/8
  CHECK(kept_ids(opt) == std::vector<int32_t>{0, 1, -1, -1});
  opt.top_p = 0.4f;  // slot 0 only
  CHECK(kept_ids(opt) == std::vector<int32_t>{0, -1, -1, -1});
  opt.top_p = 1.0f;  // 7/8 < 1: every slot
  CHECK(kept_ids(opt) == std::vector<int32_t>{0, 1, 2, 3});
  opt.top_p = 1e-30f;  // still slot 0: top-p keeps at least one expert
  CHECK(kept_ids(opt) == std::vector<int32_t>{0, -1, -1, -1});
  opt.rule = beam::routing_rule::threshold;
  opt.threshold = 0.2f;
  CHECK(kept_ids(opt) == std::vector<int32_t>{0, 1, -1, -1});
  opt.threshold = 0.125f;  // inclusive
  CHECK(kept_ids(opt) == std::vector<int32_t>{0, 1, 2, 3});
  opt.threshold = 0.6f;  // none: the token runs no expert
  const auto none = route_and_mask(one_token(r), one_token(z), opt);
  CHECK(none.topk_ids == std::vector<int32_t>{-1, -1, -1, -1});
  CHECK(none.candidate_ids == std::vector<int32_t>{0, 1, 2, 3});
  CHECK(none.active_pairs() == 0);
  CHECK(none.topk_weights == std::vector<float>(4, 0.0f));
  CHECK(none.mask_probs == std::vector<float>(4, 1.0f));  // m = 1 for the rules other than the mask
  CHECK(none.gate_weights[0] == doctest::Approx(0.5));   // g is kept for the backward
  opt.rule = beam::routing_rule::mask;  // the mask drops slot 0; a cap of 2 keeps slots 1 and 2
  opt.max_active = 2;
  CHECK(kept_ids(opt) == std::vector<int32_t>{-1, 1, 2, -1});
  opt.rule = beam::routing_rule::top_k;
  opt.max_active = 1;
  CHECK(kept_ids(opt) == std::vector<int32_t>{0, -1, -1, -1});
  opt.rule = beam::routing_rule::top_p;
  opt.top_p = 1.0f;
  opt.max_active = 3;
  CHECK(kept_ids(opt) == std::vector<int32_t>{0, 1, 2, -1});

  // Renormalised and scaled (K = 2): q = {2/3, 1/3} whatever λ; g = λ q.
  opt = routing_options{};
  opt.top_k = 2;
  opt.renormalize = true;
  opt.routed_scaling_factor = 2.5f;
  opt.rule = beam::routing_rule::threshold;
  opt.threshold = 0.5f;
  const auto scaled = route_and_mask(one_token(r), one_token(z), opt);
  CHECK(scaled.topk_ids == std::vector<int32_t>{0, -1});
  CHECK(scaled.topk_weights[0] == doctest::Approx(2.5 * 2.0 / 3.0));
}

TEST_CASE("routing rules: malformed rule options throw") {
  const std::vector<float> r = {1, 2, 3};
  routing_options opt;
  opt.top_k = 2;
  opt.rule = beam::routing_rule::top_p;
  for (float p : {0.0f, -0.5f, quiet_nan}) {
    opt.top_p = p;
    CHECK_THROWS_AS(route_and_mask(one_token(r), matrix_view<float>{}, opt), std::invalid_argument);
  }
  opt.top_p = 0.5f;
  CHECK_NOTHROW(route_and_mask(one_token(r), matrix_view<float>{}, opt));
  opt.rule = beam::routing_rule::threshold;
  opt.threshold = quiet_nan;
  CHECK_THROWS_AS(route_and_mask(one_token(r), matrix_view<float>{}, opt), std::invalid_argument);
  opt.threshold = -infinity;  // keeps every candidate; well formed
  CHECK(route_and_mask(one_token(r), matrix_view<float>{}, opt).active_pairs() == 2);
  for (int cap : {-1, 3}) {
    opt.max_active = cap;
    CHECK_THROWS_AS(route_and_mask(one_token(r), matrix_view<float>{}, opt), std::invalid_argument);
  }
  opt.max_active = 0;
  opt.rule = static_cast<beam::routing_rule>(7);
  CHECK_THROWS_AS(route_and_mask(one_token(r), matrix_view<float>{}, opt), std::invalid_argument);
}
