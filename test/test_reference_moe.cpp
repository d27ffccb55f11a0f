// The layer reference: a hand-worked SwiGLU layer, the compacted pipeline against the direct
// per-token sum, masked tokens, shared experts, and the zero-initialised mask router.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "beam/reference/moe.cuh"
#include "common/testing.hpp"

namespace ref = beam::reference;

namespace {

struct random_layer {
  int H, I, E;
  std::vector<double> w13, w2, shared_w13, shared_w2;
  ref::moe_weights<double> weights(bool shared) const {
    return {H, I, E, w13.data(), w2.data(), shared ? I + 1 : 0, shared ? shared_w13.data() : nullptr,
            shared ? shared_w2.data() : nullptr};
  }
};

random_layer make_layer(int H, int I, int E, uint64_t seed) {
  const size_t h = size_t(H), i = size_t(I), e = size_t(E);
  return {H, I, E,
          beam::test::random_normal<double>(e * 2 * i * h, seed, 0, 0.5),
          beam::test::random_normal<double>(e * h * i, seed + 1, 0, 0.5),
          beam::test::random_normal<double>(2 * (i + 1) * h, seed + 2, 0, 0.5),
          beam::test::random_normal<double>(h * (i + 1), seed + 3, 0, 0.5)};
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

}  // namespace

TEST_CASE("hand-worked layer: H = 2, I = 1, E = 2") {
  // Expert 0: gate = x0, up = x1, W2 = [1, 2]ᵀ.  Expert 1: gate = x1, up = x0 + x1, W2 = [−1, 0.5]ᵀ.
  const std::vector<double> w13 = {1, 0, 0, 1, /* expert 1 */ 0, 1, 1, 1};
  const std::vector<double> w2 = {1, 2, /* expert 1 */ -1, 0.5};
  const ref::moe_weights<double> w{2, 1, 2, w13.data(), w2.data()};
  const std::vector<double> x = {1, 2, /* token 1 */ -1, 3};
  const std::vector<int32_t> ids = {0, 1, /* token 1 */ -1, 1};
  const std::vector<double> g = {0.75, 0.25, 0.6, 0.4};
  const auto y = ref::moe_experts_forward(x.data(), 2, w, ids.data(), g.data(), 2);
  const double a = silu(1) * 2, b = silu(2) * 3;  // token 0: expert 0 and expert 1
  CHECK(y[0] == doctest::Approx(0.75 * a - 0.25 * b));
  CHECK(y[1] == doctest::Approx(0.75 * 2 * a + 0.25 * 0.5 * b));
  const double c = silu(3) * 2;  // token 1: expert 1 only
  CHECK(y[2] == doctest::Approx(-0.4 * c));
  CHECK(y[3] == doctest::Approx(0.4 * 0.5 * c));
  CHECK(ref::expert_pair_flops(2048, 768) == 6.0 * 2048 * 768);
}

TEST_CASE("compacted pipeline equals the direct per-token sum; all-masked tokens get exact zeros") {
  struct shape {
    int64_t T, H, I;
    int32_t E;
    int K;
  };
  for (const auto& [T, H, I, E, K] : {shape{0, 8, 8, 3, 2}, shape{1, 7, 5, 3, 2}, shape{13, 24, 8, 1, 1},
                                      shape{27, 16, 12, 6, 3}}) {
    CAPTURE(T);
    CAPTURE(E);
    const auto layer = make_layer(H, I, E, uint64_t(T + H));
    const auto x = beam::test::random_normal<double>(T * H, 51);
    const auto logits = beam::test::random_normal<double>(T * 2 * E, 52);
    ref::routing_options opt;
    opt.top_k = K;
    const auto routing = ref::route_and_mask<double>({logits.data(), T, E, 2 * E}, {logits.data() + E, T, E, 2 * E}, opt);
    for (bool shared : {false, true}) {
      const auto w = layer.weights(shared);
      const auto y = ref::moe_experts_forward(x.data(), T, w, routing.topk_ids.data(), routing.topk_weights.data(), K);
      REQUIRE(y.size() == size_t(T * H));
      std::vector<double> expert_out(H), direct(T * H, 0.0);
      for (int64_t t = 0; t < T; ++t) {
        if (shared) ref::swiglu_mlp(&x[t * H], w.shared_w13, w.shared_w2, H, w.shared_intermediate, &direct[t * H]);
        for (int k = 0; k < K; ++k) {
          const int32_t e = routing.topk_ids[t * K + k];
          if (e < 0) continue;
          ref::swiglu_mlp(&x[t * H], &layer.w13[e * 2 * I * H], &layer.w2[e * H * I], H, I, expert_out.data());
          for (int64_t h = 0; h < H; ++h) direct[t * H + h] += routing.topk_weights[t * K + k] * expert_out[h];
        }
      }
      CHECK(beam::test::relative_error(y, direct) < 1e-14);
      if (!shared) {
        for (int64_t t = 0; t < T; ++t) {
          if (routing.active_count[t] != 0) continue;
          for (int64_t h = 0; h < H; ++h) CHECK(y[t * H + h] == 0.0);
        }
      }
    }
  }
}

TEST_CASE("moe_forward: a zero-initialised mask router reproduces plain Top-K exactly") {
  const int64_t T = 65, H = 16, I = 8;
  const int32_t E = 8;
  const auto layer = make_layer(H, I, E, 61);
  const auto w = layer.weights(true);
  const auto x = beam::test::random_normal<double>(T * H, 62);
  const auto w_router = beam::test::random_normal<double>(E * H, 63);
  const std::vector<double> w_mask_zero(E * H, 0.0);
  ref::routing_options opt;
  opt.top_k = 2;
  const auto masked = ref::moe_forward(x.data(), T, w, w_router.data(), w_mask_zero.data(), opt);
  opt.rule = beam::routing_rule::top_k;
  const auto dense = ref::moe_forward(x.data(), T, w, w_router.data(), nullptr, opt);
  CHECK(masked.out == dense.out);
  CHECK(masked.routing.avg_k() == 2.0);
  CHECK(dense.logits.size() == size_t(T * E));
  CHECK(masked.logits.size() == size_t(T * 2 * E));
}

TEST_CASE("moe_forward: a trained mask drops pairs and equals the experts forward of its routing") {
  const int64_t T = 33, H = 16, I = 8;
  const int32_t E = 6;
  const auto layer = make_layer(H, I, E, 71);
  const auto w = layer.weights(false);
  const auto x = beam::test::random_normal<double>(T * H, 72);
  const auto w_router = beam::test::random_normal<double>(E * H, 73);
  const auto w_mask = beam::test::random_normal<double>(E * H, 74);
  ref::routing_options opt;
  opt.top_k = 3;
  const auto result = ref::moe_forward(x.data(), T, w, w_router.data(), w_mask.data(), opt);
  CHECK(result.routing.avg_k() < 3.0);
  CHECK(result.routing.avg_k() > 0.0);
  // The logits are X · [W_r | W_m]ᵀ.
  const auto r = ref::matmul_nt(x.data(), w_router.data(), T, H, E);
  const auto z = ref::matmul_nt(x.data(), w_mask.data(), T, H, E);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      CHECK(result.logits[t * 2 * E + e] == r[t * E + e]);
      CHECK(result.logits[t * 2 * E + E + e] == z[t * E + e]);
    }
  }
  const auto y = ref::moe_experts_forward(x.data(), T, w, result.routing.topk_ids.data(),
                                          result.routing.topk_weights.data(), 3);
  CHECK(y == result.out);
}

TEST_CASE("bad layer arguments throw") {
  const std::vector<double> w13(2 * 2 * 4, 1.0), w2(4 * 2, 1.0), x(4, 1.0), router(4, 1.0);
  ref::moe_weights<double> w{4, 2, 1, w13.data(), w2.data()};
  ref::routing_options opt;
  CHECK_THROWS_AS(ref::moe_forward(x.data(), 1, w, router.data(), nullptr, opt), std::invalid_argument);
  const std::vector<int32_t> bad_ids = {3};
  const std::vector<double> g = {1.0};
  CHECK_THROWS_AS(ref::moe_experts_forward(x.data(), 1, w, bad_ids.data(), g.data(), 1), std::invalid_argument);
  w.w2 = nullptr;
  CHECK_THROWS_AS(ref::moe_experts_forward(x.data(), 1, w, bad_ids.data(), g.data(), 1), std::invalid_argument);
}

TEST_CASE("hand-worked zero-computation experts: zero, identity and constant terms join the sum; no rows") {
  // The layer of the hand-worked case (E = 2) plus one zero (id 2), one identity (3) and one
  // constant expert (4): W_c = [[1, 0], [0, 0]] gives ℓ = (x0, 0), v = {10, 20}.
  const std::vector<double> w13 = {1, 0, 0, 1, /* expert 1 */ 0, 1, 1, 1};
  const std::vector<double> w2 = {1, 2, /* expert 1 */ -1, 0.5};
  const std::vector<double> w_c = {1, 0, 0, 0}, v = {10, 20};
  ref::moe_weights<double> w{2, 1, 2, w13.data(), w2.data()};
  w.zero_experts = w.identity_experts = w.constant_experts = 1;
  w.constant_gate = w_c.data();
  w.constant_vectors = v.data();
  const std::vector<double> x = {1, 2, /* token 1 */ -1, 3};
  const std::vector<int32_t> ids = {2, 3, 4, /* token 1 */ 0, 3, -1};
  const std::vector<double> g = {0.5, 0.25, 2.0, 0.75, 0.5, 0.1};
  const auto y = ref::moe_experts_forward(x.data(), 2, w, ids.data(), g.data(), 3);
  const double a1 = 1.0 / (1.0 + std::exp(-1.0)), a2 = 1.0 - a1;  // softmax(1, 0)
  CHECK(y[0] == doctest::Approx(0.25 * 1 + 2.0 * (a1 * 1 + a2 * 10)));  // the zero expert adds nothing
  CHECK(y[1] == doctest::Approx(0.25 * 2 + 2.0 * (a1 * 2 + a2 * 20)));
  const double a = silu(-1) * 3;  // token 1: expert 0, then x
  CHECK(y[2] == doctest::Approx(0.75 * a + 0.5 * -1));
  CHECK(y[3] == doctest::Approx(0.75 * 2 * a + 0.5 * 3));
  // Every pair a zero-computation expert: no expert row at all.
  const std::vector<int32_t> only = {2, 3, 4, 3, 2, 4};
  CHECK(ref::compact(only.data(), 2, 3, 5, 0, 2).n_active == 0);
  const auto z = ref::moe_experts_forward(x.data(), 2, w, only.data(), g.data(), 3);
  const double b1 = 1.0 / (1.0 + std::exp(1.0)), b2 = 1.0 - b1;  // token 1: softmax(−1, 0)
  CHECK(z[2] == doctest::Approx(0.75 * -1 + 0.1 * (b1 * -1 + b2 * 10)));
  // An id past E + Z throws; so do negative counts and a constant expert without W_c.
  const std::vector<int32_t> past = {5, -1, -1, -1, -1, -1};
  CHECK_THROWS_AS(ref::moe_experts_forward(x.data(), 2, w, past.data(), g.data(), 3), std::invalid_argument);
  ref::moe_weights<double> bad = w;
  bad.constant_gate = nullptr;
  CHECK_THROWS_AS(ref::moe_experts_forward(x.data(), 2, bad, ids.data(), g.data(), 3), std::invalid_argument);
  bad = w;
  bad.identity_experts = -1;
  CHECK_THROWS_AS(ref::moe_experts_forward(x.data(), 2, bad, ids.data(), g.data(), 3), std::invalid_argument);

  // moe_forward routes over E + Z = 5 router rows: a router that prefers the identity expert
  // sends every token there, and y = ĝ · x.
  std::vector<double> router(5 * 2, 0.0);
  router[3 * 2 + 0] = router[3 * 2 + 1] = 1.0;  // expert 3's logit x0 + x1
  ref::routing_options opt;
  opt.top_k = 1;
  opt.rule = beam::routing_rule::top_k;
  const std::vector<double> positive = {1, 2, 0.5, 3};
  const auto layer = ref::moe_forward(positive.data(), 2, w, router.data(), nullptr, opt);
  CHECK(layer.routing.topk_ids == std::vector<int32_t>{3, 3});
  for (int i = 0; i < 4; ++i) CHECK(layer.out[i] == doctest::Approx(layer.routing.topk_weights[i / 2] * positive[i]));
}
