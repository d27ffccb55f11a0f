// Training math of the reference, every gradient against double-precision central
// differences: ∂L/∂ĝ, the STE and score-function backward, L_reg, L_bal, and the whole
// chain from the layer output to the router and mask logits.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "beam/reference/training.cuh"
#include "common/testing.hpp"

namespace ref = beam::reference;

namespace {

constexpr double h = 1e-6;

//! (f(v + h·e_i) − f(v − h·e_i)) / 2h for every i.
std::vector<double> numeric_gradient(std::vector<double> v, const std::function<double(const std::vector<double>&)>& f) {
  std::vector<double> grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double saved = v[i];
    v[i] = saved + h;
    const double up = f(v);
    v[i] = saved - h;
    const double down = f(v);
    v[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

//! Element-wise |analytic − numeric| ≤ 1e-8 + 1e-6·|numeric| (central differences in double
//! carry about 1e-9 of rounding error), and the gradient is not all zeros.
void check_close(const std::vector<double>& analytic, const std::vector<double>& numeric) {
  REQUIRE(analytic.size() == numeric.size());
  double largest = 0.0;
  for (size_t i = 0; i < analytic.size(); ++i) {
    CAPTURE(i);
    CHECK(std::abs(analytic[i] - numeric[i]) <= 1e-8 + 1e-6 * std::abs(numeric[i]));
    largest = std::max(largest, std::abs(numeric[i]));
  }
  CHECK(largest > 1e-4);
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

struct problem {
  int64_t T = 5;
  int H = 6, I = 4, E = 7, K = 3;
  std::vector<double> x = beam::test::random_normal<double>(T * H, 81);
  std::vector<double> w13 = beam::test::random_normal<double>(E * 2 * I * H, 82, 0, 0.5);
  std::vector<double> w2 = beam::test::random_normal<double>(E * H * I, 83, 0, 0.5);
  std::vector<double> r = beam::test::random_normal<double>(T * E, 84);
  std::vector<double> z = beam::test::random_normal<double>(T * E, 85);
  std::vector<double> dy = beam::test::random_normal<double>(T * H, 86);  // ∂L/∂y

  ref::moe_weights<double> weights() const { return {H, I, E, w13.data(), w2.data()}; }
  ref::matrix_view<double> view(const std::vector<double>& v) const { return {v.data(), T, E, E}; }
  ref::routing_result<double> route(const std::vector<double>& router, const std::vector<double>& mask,
                                    const ref::routing_options& opt) const {
    return ref::route_and_mask(view(router), view(mask), opt);
  }
};

//! Every combination of scoring, renormalisation and routed scaling, plus a selection bias and
//! the rules other than the mask (plain Top-K, top-p, threshold).
std::vector<ref::routing_options> option_grid(int K, const float* bias) {
  using rule = beam::routing_rule;
  std::vector<ref::routing_options> grid;
  const auto add = [&](ref::score_function scoring, bool renormalize, float lambda, const float* b, rule r) {
    ref::routing_options opt;
    opt.top_k = K;
    opt.scoring = scoring;
    opt.renormalize = renormalize;
    opt.routed_scaling_factor = lambda;
    opt.selection_bias = b;
    opt.rule = r;
    opt.top_p = 0.6f;
    opt.threshold = 0.15f;
    grid.push_back(opt);
  };
  for (auto scoring : {ref::score_function::softmax, ref::score_function::sigmoid}) {
    for (bool renormalize : {false, true}) {
      for (float lambda : {1.0f, 2.5f}) add(scoring, renormalize, lambda, nullptr, rule::mask);
    }
    add(scoring, true, 1.0f, bias, rule::mask);  // selection bias
    add(scoring, false, 1.0f, nullptr, rule::top_k);
    add(scoring, true, 2.5f, nullptr, rule::top_p);
    add(scoring, false, 1.0f, nullptr, rule::threshold);
  }
  return grid;
}

//! Router logits of `p` where token 0 has a single non-NaN logit and token 1 two: slots
//! without a candidate (id −1) take part in every backward.
std::vector<double> with_empty_slots(const problem& p) {
  std::vector<double> r = p.r;
  for (int64_t e = 1; e < p.E; ++e) r[e] = std::numeric_limits<double>::quiet_NaN();
  for (int64_t e = 2; e < p.E; ++e) r[p.E + e] = std::numeric_limits<double>::quiet_NaN();
  return r;
}

}  // namespace

TEST_CASE("∂L/∂ĝ = ⟨∂L/∂y, E_c(x)⟩ for every candidate, masked ones included") {
  const problem p;
  ref::routing_options opt;
  opt.top_k = p.K;
  const auto fwd = p.route(p.r, p.z, opt);
  REQUIRE(fwd.active_pairs() < p.T * p.K);  // some candidates are masked
  const auto analytic = ref::topk_weight_grad(p.x.data(), p.weights(), fwd, p.dy.data());
  // L(ĝ) = ⟨∂L/∂y, y(ĝ)⟩ with every candidate routed.
  const auto numeric = numeric_gradient(fwd.gate_weights, [&](const std::vector<double>& g_hat) {
    return dot(p.dy, ref::moe_experts_forward(p.x.data(), p.T, p.weights(), fwd.candidate_ids.data(), g_hat.data(), p.K));
  });
  check_close(analytic, numeric);
}

TEST_CASE("routing backward: score function, renormalisation, scaling, bias, rules, STE") {
  const problem p;
  const auto upstream = beam::test::random_normal<double>(p.T * p.K, 87);  // ∂L/∂ĝ
  const auto bias = beam::test::random_normal<float>(p.E, 88, 0.0, 0.5);
  for (const auto& router : {p.r, with_empty_slots(p)}) {
    for (const auto& opt : option_grid(p.K, bias.data())) {
      CAPTURE(int(opt.scoring));
      CAPTURE(opt.renormalize);
      CAPTURE(opt.routed_scaling_factor);
      CAPTURE(int(opt.rule));
      CAPTURE(opt.selection_bias != nullptr);
      const auto fwd = p.route(router, p.z, opt);
      const auto grads = ref::routing_backward(fwd, p.view(router), p.view(p.z), upstream.data());

      for (size_t s = 0; s < upstream.size(); ++s) {
        const double kept = fwd.topk_ids[s] >= 0 ? 1.0 : 0.0;
        CHECK(grads.d_gate[s] == upstream[s] * kept);
        CHECK(grads.d_mask[s] == upstream[s] * fwd.gate_weights[s]);
      }
      // Router logits: L(r) = Σ ∂L/∂ĝ · g(r) · m̂, the mask and the selection held fixed.
      const auto d_router = numeric_gradient(router, [&](const std::vector<double>& r) {
        const auto f = p.route(r, p.z, opt);
        REQUIRE(f.candidate_ids == fwd.candidate_ids);
        double loss = 0.0;
        for (size_t s = 0; s < upstream.size(); ++s) loss += upstream[s] * f.gate_weights[s] * (fwd.topk_ids[s] >= 0);
        return loss;
      });
      check_close(grads.d_router_logits, d_router);
      if (!beam::uses_mask(opt)) {
        CHECK(grads.d_mask_logits == std::vector<double>(p.T * p.E, 0.0));
        continue;
      }
      // Mask logits, STE: the hard mask acts as σ(z) in the backward: L(z) = Σ ∂L/∂ĝ · g · σ(z).
      const auto d_mask = numeric_gradient(p.z, [&](const std::vector<double>& z) {
        const auto f = p.route(router, z, opt);
        double loss = 0.0;
        for (size_t s = 0; s < upstream.size(); ++s) loss += upstream[s] * f.gate_weights[s] * f.mask_probs[s];
        return loss;
      });
      check_close(grads.d_mask_logits, d_mask);
    }
  }
}

TEST_CASE("L_reg and its gradient") {
  const problem p;
  ref::routing_options opt;
  opt.top_k = p.K;
  const auto fwd = p.route(p.r, p.z, opt);
  double expected = 0.0;
  for (double m : fwd.mask_probs) expected += m;
  CHECK(ref::l_reg(fwd) == doctest::Approx(expected / double(p.T * p.K)));

  const double beta = 0.3;
  std::vector<double> analytic(p.T * p.E, 0.0);
  ref::add_l_reg_grad(fwd, p.view(p.z), beta, analytic);
  const auto numeric = numeric_gradient(p.z, [&](const std::vector<double>& z) {
    return beta * ref::l_reg(p.route(p.r, z, opt));
  });
  check_close(analytic, numeric);

  // A zero-initialised mask router starts at L_reg = 1/2 exactly.
  const std::vector<double> zero(p.T * p.E, 0.0);
  CHECK(ref::l_reg(p.route(p.r, zero, opt)) == 0.5);
}

TEST_CASE("balance loss E·Σ f·P and its gradient (f held fixed)") {
  const problem p;
  ref::routing_options opt;
  opt.top_k = p.K;
  const auto fwd = p.route(p.r, p.z, opt);
  // Perfectly uniform routing probabilities give L_bal = 1 whatever f is.
  const std::vector<double> flat(p.T * p.E, 0.25);
  CHECK(ref::balance_loss(p.view(flat), fwd) == doctest::Approx(1.0));

  const double alpha = 0.01;
  std::vector<double> analytic(p.T * p.E, 0.0);
  ref::add_balance_loss_grad(p.view(p.r), fwd, alpha, analytic);
  const auto numeric = numeric_gradient(p.r, [&](const std::vector<double>& r) {
    return alpha * ref::balance_loss(p.view(r), fwd);
  });
  check_close(analytic, numeric);
}

TEST_CASE("whole chain: L = ⟨∂L/∂y, y⟩ + α·L_bal + β·L_reg, to router and mask logits") {
  const problem p;
  const double alpha = 0.02, beta = 0.1;
  const auto bias = beam::test::random_normal<float>(p.E, 89, 0.0, 0.5);
  for (const auto& opt : option_grid(p.K, bias.data())) {
    if (!beam::uses_mask(opt)) continue;  // the chain to z needs the mask
    CAPTURE(int(opt.scoring));
    CAPTURE(opt.renormalize);
    const auto fwd = p.route(p.r, p.z, opt);
    const auto d_hat = ref::topk_weight_grad(p.x.data(), p.weights(), fwd, p.dy.data());
    auto grads = ref::routing_backward(fwd, p.view(p.r), p.view(p.z), d_hat.data());
    ref::add_balance_loss_grad(p.view(p.r), fwd, alpha, grads.d_router_logits);
    ref::add_l_reg_grad(fwd, p.view(p.z), beta, grads.d_mask_logits);

    // Forward with the hard mask for r; with the STE surrogate m̂ → σ(z) for z.
    const auto loss = [&](const std::vector<double>& r, const std::vector<double>& z, bool surrogate) {
      const auto f = p.route(r, z, opt);
      REQUIRE(f.candidate_ids == fwd.candidate_ids);
      std::vector<double> g_hat(f.gate_weights.size());
      for (size_t s = 0; s < g_hat.size(); ++s) {
        g_hat[s] = f.gate_weights[s] * (surrogate ? f.mask_probs[s] : double(fwd.topk_ids[s] >= 0));
      }
      const auto y = ref::moe_experts_forward(p.x.data(), p.T, p.weights(), f.candidate_ids.data(), g_hat.data(), p.K);
      return dot(p.dy, y) + alpha * ref::balance_loss(p.view(r), fwd) + beta * ref::l_reg(f);
    };
    check_close(grads.d_router_logits, numeric_gradient(p.r, [&](const auto& r) { return loss(r, p.z, false); }));
    check_close(grads.d_mask_logits, numeric_gradient(p.z, [&](const auto& z) { return loss(p.r, z, true); }));
  }
}

TEST_CASE("experts' backward: ∂L/∂x, ∂L/∂W13, ∂L/∂W2 against central differences; an expert without rows") {
  const problem p;
  // Each token's K distinct candidates, expert 6 never among them (its gradients stay zero).
  std::vector<int32_t> ids(size_t(p.T * p.K));
  for (int64_t t = 0; t < p.T; ++t)
    for (int k = 0; k < p.K; ++k) ids[size_t(t * p.K + k)] = int32_t((t + 2 * k) % 6);
  const ref::compaction rows = ref::compact(ids.data(), p.T, p.K, p.E);
  const auto d_yp = beam::test::random_normal<double>(size_t(rows.n_active * p.H), 87);
  // L = Σ_r ⟨∂L/∂Yp_r, E_e(x_t)⟩
  const auto loss = [&](const std::vector<double>& x, const std::vector<double>& w13, const std::vector<double>& w2) {
    std::vector<double> y(size_t(p.H));
    double l = 0.0;
    for (int e = 0; e < p.E; ++e) {
      for (int64_t r = rows.offsets[e]; r < rows.offsets[e + 1]; ++r) {
        ref::swiglu_mlp(x.data() + rows.token_of_row(r) * p.H, w13.data() + int64_t(e) * 2 * p.I * p.H,
                        w2.data() + int64_t(e) * p.H * p.I, p.H, p.I, y.data());
        for (int h = 0; h < p.H; ++h) l += d_yp[size_t(r * p.H + h)] * y[size_t(h)];
      }
    }
    return l;
  };
  const auto g = ref::experts_backward(p.x.data(), p.weights(), rows, d_yp.data());
  check_close(g.d_x, numeric_gradient(p.x, [&](const std::vector<double>& v) { return loss(v, p.w13, p.w2); }));
  check_close(g.d_w13, numeric_gradient(p.w13, [&](const std::vector<double>& v) { return loss(p.x, v, p.w2); }));
  check_close(g.d_w2, numeric_gradient(p.w2, [&](const std::vector<double>& v) { return loss(p.x, p.w13, v); }));
  const auto zero = [](const double* v, size_t n) { return std::all_of(v, v + n, [](double d) { return d == 0.0; }); };
  CHECK(zero(g.d_w13.data() + size_t(6 * 2 * p.I * p.H), size_t(2 * p.I * p.H)));
  CHECK(zero(g.d_w2.data() + size_t(6 * p.H * p.I), size_t(p.H * p.I)));
  const ref::compaction other = ref::compact(ids.data(), p.T, p.K, p.E - 1);  // over 6 experts, not 7
  CHECK_THROWS_AS(ref::experts_backward(p.x.data(), p.weights(), other, d_yp.data()), std::invalid_argument);
}

TEST_CASE("T = 0 and bad arguments") {
  const problem p;
  ref::routing_options opt;
  opt.top_k = p.K;
  const auto empty = ref::route_and_mask<double>({nullptr, 0, p.E, p.E}, {nullptr, 0, p.E, p.E}, opt);
  CHECK(ref::l_reg(empty) == 0.0);
  CHECK(ref::balance_loss<double>({nullptr, 0, p.E, p.E}, empty) == 0.0);
  const auto grads = ref::routing_backward<double>(empty, {nullptr, 0, p.E, p.E}, {nullptr, 0, p.E, p.E}, nullptr);
  CHECK(grads.d_router_logits.empty());

  const auto fwd = p.route(p.r, p.z, opt);
  CHECK_THROWS_AS(ref::routing_backward(fwd, p.view(p.r), p.view(p.z), nullptr), std::invalid_argument);
  const std::vector<double> d(p.T * p.K, 1.0);
  auto corrupt = fwd;
  corrupt.candidate_ids[0] = p.E;  // an expert id out of range must not be written through
  CHECK_THROWS_AS(ref::routing_backward(corrupt, p.view(p.r), p.view(p.z), d.data()), std::invalid_argument);
  std::vector<double> short_grad(p.T * p.E - 1, 0.0);
  CHECK_THROWS_AS(ref::add_l_reg_grad(fwd, p.view(p.z), 1.0, short_grad), std::invalid_argument);
  CHECK_THROWS_AS(ref::add_balance_loss_grad(p.view(p.r), fwd, 1.0, short_grad), std::invalid_argument);
  CHECK_THROWS_AS(ref::topk_weight_grad(p.x.data(), p.weights(), fwd, static_cast<const double*>(nullptr)),
                  std::invalid_argument);
}

TEST_CASE("mask off: L_reg is 0 and adds no gradient") {
  const problem p;
  ref::routing_options opt;
  opt.top_k = p.K;
  opt.rule = beam::routing_rule::top_k;
  const auto fwd = ref::route_and_mask<double>(p.view(p.r), {}, opt);
  CHECK(ref::l_reg(fwd) == 0.0);
  std::vector<double> d_mask(p.T * p.E, 0.0);
  ref::add_l_reg_grad<double>(fwd, {}, 1.0, d_mask);
  CHECK(d_mask == std::vector<double>(p.T * p.E, 0.0));
}

TEST_CASE("∂L/∂ĝ of zero-computation experts: ⟨∂L/∂y, E(x)⟩ with E(x) = 0, x or α₁x + α₂v") {
  problem p;
  p.E = 4;  // FFN experts 0..3; zero 4, identity 5 and 6, constant 7 and 8
  ref::moe_weights<double> w = p.weights();
  w.zero_experts = 1;
  w.identity_experts = 2;
  w.constant_experts = 2;
  const std::vector<double> w_c = beam::test::random_normal<double>(2 * 2 * size_t(p.H), 87, 0, 0.5);
  const std::vector<double> v = beam::test::random_normal<double>(2 * size_t(p.H), 88);
  w.constant_gate = w_c.data();
  w.constant_vectors = v.data();
  const int64_t routed = p.E + w.zero_compute();
  const std::vector<double> r = beam::test::random_normal<double>(size_t(p.T * routed), 89);
  ref::routing_options opt;
  opt.top_k = 6;
  opt.rule = beam::routing_rule::top_k;
  const auto fwd = ref::route_and_mask<double>({r.data(), p.T, routed, routed}, {}, opt);
  int zero_compute_slots = 0;
  for (int32_t c : fwd.candidate_ids) zero_compute_slots += c >= p.E;
  REQUIRE(zero_compute_slots > 5);
  const auto analytic = ref::topk_weight_grad(p.x.data(), w, fwd, p.dy.data());
  const auto numeric = numeric_gradient(fwd.gate_weights, [&](const std::vector<double>& g_hat) {
    return dot(p.dy, ref::moe_experts_forward(p.x.data(), p.T, w, fwd.candidate_ids.data(), g_hat.data(), 6));
  });
  check_close(analytic, numeric);
  for (size_t s = 0; s < analytic.size(); ++s) {
    if (fwd.candidate_ids[s] == 4) CHECK(analytic[s] == 0.0);  // the zero expert
  }
}

TEST_CASE("constant experts' W_c and v gradients against central differences") {
  problem p;
  p.E = 3;  // FFN experts 0..2; identity 3; constant 4 and 5
  ref::moe_weights<double> w = p.weights();
  w.identity_experts = 1;
  w.constant_experts = 2;
  std::vector<double> w_c = beam::test::random_normal<double>(2 * 2 * size_t(p.H), 90, 0, 0.5);
  std::vector<double> v = beam::test::random_normal<double>(2 * size_t(p.H), 91);
  w.constant_gate = w_c.data();
  w.constant_vectors = v.data();
  std::vector<int32_t> ids(size_t(p.T * p.K));
  for (size_t s = 0; s < ids.size(); ++s) ids[s] = int32_t(s % 7 == 6 ? -1 : s % 6);  // every kind, a masked slot
  const std::vector<double> g = beam::test::random_normal<double>(ids.size(), 92, 0.5, 0.2);
  const auto analytic = ref::constant_expert_backward(p.x.data(), p.T, w, ids.data(), g.data(), p.K, p.dy.data());
  // L with `param` (which w points at) replaced by `value`, in place.
  const auto loss_with = [&](std::vector<double>& param) {
    return [&](const std::vector<double>& value) {
      const std::vector<double> saved = param;
      std::copy(value.begin(), value.end(), param.begin());
      const double l = dot(p.dy, ref::moe_experts_forward(p.x.data(), p.T, w, ids.data(), g.data(), p.K));
      std::copy(saved.begin(), saved.end(), param.begin());
      return l;
    };
  };
  check_close(analytic.d_gate, numeric_gradient(w_c, loss_with(w_c)));
  check_close(analytic.d_vectors, numeric_gradient(v, loss_with(v)));
}
