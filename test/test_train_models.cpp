// The training example's hand-written backward pass (examples/02_train_beam: attention, the
// MoE block, the shared expert) against central finite differences of the objective
// L = mean CE + α·L_bal + β·L_reg it differentiates, with Top-K routing (the routing is
// piecewise constant, the gates smooth) and with the soft mask (g·σ(z): smooth in the mask
// router too). BEAM's hard mask has no derivative; its STE is checked in
// test_reference_training.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "model.hpp"

namespace {

using train::routing_mode;
using train::routing_setup;

std::vector<uint8_t> random_text(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> token(0, 96);
  std::vector<uint8_t> text(n);
  for (uint8_t& c : text) c = uint8_t(token(rng));
  return text;
}

//! The objective of one batch, as the backward differentiates it.
double objective(const train::batch_stats& st, const routing_setup& rs) {
  return st.lm_loss / double(st.positions) + rs.alpha * st.l_bal + rs.beta * st.l_reg;
}

//! For each parameter tensor, the `per_tensor` coordinates with the largest analytic
//! gradient: the central difference (step `eps`) within 3% (or 2e-4) of it.
template <class Model, class Run>
void check_gradients(Model& model, const Run& run, const routing_setup& rs, double eps, int per_tensor) {
  Model analytic = model;
  run(analytic, true);
  const auto params = model.parameters();
  const auto grads = analytic.parameters();
  for (size_t p = 0; p < params.size(); ++p) {
    std::vector<size_t> order(grads[p]->g.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t x, size_t y) { return std::abs(grads[p]->g[x]) > std::abs(grads[p]->g[y]); });
    for (int n = 0; n < per_tensor && n < int(order.size()); ++n) {
      const size_t i = order[size_t(n)];
      const double g = grads[p]->g[i];
      if (g == 0.0) continue;  // e.g. the mask router under Top-K routing
      const float w = params[p]->w[i];
      Model plus = model, minus = model;
      plus.parameters()[p]->w[i] = float(w + eps);
      minus.parameters()[p]->w[i] = float(w - eps);
      const double fd = (objective(run(plus, false), rs) - objective(run(minus, false), rs)) / (2 * eps);
      CAPTURE(p);
      CAPTURE(i);
      CAPTURE(g);
      CAPTURE(fd);
      CHECK(std::abs(fd - g) <= 0.03 * std::abs(g) + 2e-4);
    }
  }
}

}  // namespace

TEST_CASE("attention + MoE model: backward against finite differences") {
  train::config cfg;
  cfg.context = 8;
  cfg.hidden = 16;
  cfg.heads = 2;
  cfg.experts = 6;
  cfg.top_k = 2;
  cfg.intermediate = 8;
  cfg.shared_intermediate = 8;
  const auto text = random_text(200, 7);
  const std::vector<int64_t> starts = {3, 50, 120};
  for (const routing_setup& rs : {routing_setup{routing_mode::top_k, 2, 1.0, 0.01, 0.0},
                                  routing_setup{routing_mode::soft_mask, 2, 1.0, 0.01, 0.1}}) {
    CAPTURE(int(rs.mode));
    train::model model(cfg, 11);
    std::mt19937_64 rng(12);
    model.mask.init_normal(rng, 0.5);  // a mask router away from zero: σ(z) varies
    // Training-mode forward (the soft mask's g·σ(z)); gradients of the copies are discarded.
    const auto run = [&](train::model& m, bool) { return train::run_sequences(m, text, starts, rs, true); };
    check_gradients(model, run, rs, 1e-2, 4);
  }
}
