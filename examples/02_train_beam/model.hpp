// A tiny character-level MoE language model with a hand-written backward pass, for the BEAM
// training example. Routing, the mask, the STE backward and the auxiliary losses go through
// the library (routing_backend.hpp: beam::reference on the CPU, the device primitives on a
// GPU); everything else (embeddings, RMSNorm, SwiGLU experts, LM head, Adam) is here.
//
//   x0 = Σ_j Emb_j[c_{t−1−j}]                    (j < context: one embedding table per offset)
//   u  = rmsnorm(x0),  [r | z] = u · [W_r | W_m]ᵀ
//   y  = Σ_k ĝ_k · E_{c_k}(u)                    (SwiGLU experts, ĝ from route_and_mask)
//   h  = x0 + y,  logits = W_o · rmsnorm(h) + b_o
//   L  = CE(logits, c_t) + α·L_bal + β·L_reg
#pragma once

#include <beam/reference/training.cuh>

#include "routing_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace train {

namespace ref = beam::reference;

struct config {
  int context = 6;      //!< characters the model sees
  int hidden = 64;      //!< H
  int experts = 16;     //!< E
  int top_k = 4;        //!< K of the base model
  int intermediate = 32;//!< I
  int vocab = 97;       //!< printable ASCII, newline, and one id for everything else
};

//! How a forward pass routes.
enum class routing_mode {
  top_k,      //!< plain Top-k (k may be smaller than the trained K: pruning)
  beam,       //!< BEAM: hard mask forward, STE backward
  soft_mask,  //!< ablation: ĝ = g·σ(z) forward and backward, hard mask at evaluation
  top_p,      //!< cumulative-probability routing: smallest prefix of the Top-K with Σ g ≥ p
};

struct routing_setup {
  routing_mode mode = routing_mode::top_k;
  int top_k = 4;
  double top_p = 1.0;   //!< top_p mode only
  double alpha = 0.0;   //!< balance loss coefficient
  double beta = 0.0;    //!< L_reg coefficient
};

//! The routing backend of the Top-k and BEAM modes: the CPU reference unless `main` installs
//! the GPU one (the soft-mask and top-p modes need the gate weights g: always the reference).
inline routing_backend* device_routing_backend = nullptr;

inline routing_backend& routing_for(routing_mode mode) {
  static reference_routing cpu;
  const bool device_mode = mode == routing_mode::top_k || mode == routing_mode::beam;
  return device_mode && device_routing_backend ? *device_routing_backend : cpu;
}

//! One trainable tensor with its gradient and Adam moments.
struct parameter {
  std::vector<float> w, g, m, v;
  explicit parameter(size_t n = 0) : w(n), g(n), m(n), v(n) {}
  void init_normal(std::mt19937_64& rng, double stddev) {
    std::normal_distribution<double> d(0.0, stddev);
    for (float& x : w) x = float(d(rng));
  }
};

//! The MoE layer's trainable weights (in a model) and its dimensions.
struct moe_parameters {
  parameter &router, &mask, &w13, &w2;
  int hidden, experts, intermediate;
};

struct model {
  config cfg;
  parameter emb, router, mask, w13, w2, head, head_bias;

  model(const config& c, uint64_t seed)
      : cfg(c),
        emb(size_t(c.context) * c.vocab * c.hidden),
        router(size_t(c.experts) * c.hidden),
        mask(size_t(c.experts) * c.hidden),  // zero-initialised: BEAM starts from plain Top-K
        w13(size_t(c.experts) * 2 * c.intermediate * c.hidden),
        w2(size_t(c.experts) * c.hidden * c.intermediate),
        head(size_t(c.vocab) * c.hidden),
        head_bias(size_t(c.vocab)) {
    std::mt19937_64 rng(seed);
    emb.init_normal(rng, 1.0 / std::sqrt(double(c.context)));
    router.init_normal(rng, 1.0 / std::sqrt(double(c.hidden)));
    w13.init_normal(rng, 1.0 / std::sqrt(double(c.hidden)));
    w2.init_normal(rng, 1.0 / std::sqrt(double(c.intermediate)));
    head.init_normal(rng, 1.0 / std::sqrt(double(c.hidden)));
  }

  std::vector<parameter*> parameters() { return {&emb, &router, &mask, &w13, &w2, &head, &head_bias}; }
  moe_parameters moe() { return {router, mask, w13, w2, cfg.hidden, cfg.experts, cfg.intermediate}; }
  ref::moe_weights<float> experts() const {
    return {cfg.hidden, cfg.intermediate, cfg.experts, w13.w.data(), w2.w.data()};
  }
};

//! Adam with bias correction on every parameter; clears the gradients.
struct adam {
  double lr = 3e-3, beta1 = 0.9, beta2 = 0.99, eps = 1e-8;
  int64_t t = 0;
  void step(model& m, bool train_mask) {
    ++t;
    const double c1 = 1.0 - std::pow(beta1, double(t)), c2 = 1.0 - std::pow(beta2, double(t));
    for (parameter* p : m.parameters()) {
      const bool frozen = p == &m.mask && !train_mask;
      for (size_t i = 0; i < p->w.size(); ++i) {
        const double g = p->g[i];
        p->g[i] = 0.0f;
        if (frozen) continue;
        p->m[i] = float(beta1 * p->m[i] + (1 - beta1) * g);
        p->v[i] = float(beta2 * p->v[i] + (1 - beta2) * g * g);
        p->w[i] -= float(lr * (p->m[i] / c1) / (std::sqrt(p->v[i] / c2) + eps));
      }
    }
  }
};

//! Totals of one batch (sums over its positions, except the two auxiliary losses: batch means).
struct batch_stats {
  double lm_loss = 0.0;    //!< Σ cross-entropy (nats)
  int64_t correct = 0;     //!< argmax == target
  int64_t positions = 0;
  int64_t active_pairs = 0;//!< pairs whose expert runs at inference (ĝ ≠ 0)
  double l_bal = 0.0, l_reg = 0.0;
};

namespace detail {

//! v = h / rms(h), returns 1/rms.
inline float rmsnorm(const float* h, int n, float* v) {
  double ss = 0.0;
  for (int i = 0; i < n; ++i) ss += double(h[i]) * h[i];
  const float inv = float(1.0 / std::sqrt(ss / n + 1e-6));
  for (int i = 0; i < n; ++i) v[i] = h[i] * inv;
  return inv;
}

//! dh += (dv − v·mean(dv ⊙ v)) / rms.
inline void rmsnorm_backward(const float* v, const float* dv, float inv_rms, int n, float* dh) {
  double dot = 0.0;
  for (int i = 0; i < n; ++i) dot += double(dv[i]) * v[i];
  const float mean = float(dot / n);
  for (int i = 0; i < n; ++i) dh[i] += (dv[i] - v[i] * mean) * inv_rms;
}

//! out = W2 · (silu(W1 x) ⊙ (W3 x)) for one row x `[H]` (w13 `[2I, H]`: W1 on top of W3,
//! w2 `[H, I]`); keeps pre = [W1 x | W3 x] `[2I]` and act `[I]` for the backward.
inline void swiglu_forward(const float* w13, const float* w2, const float* x, int H, int I, float* pre, float* act,
                           float* out) {
  for (int i = 0; i < 2 * I; ++i) {
    float acc = 0.0f;
    for (int h = 0; h < H; ++h) acc += w13[i * H + h] * x[h];
    pre[i] = acc;
  }
  for (int i = 0; i < I; ++i) act[i] = beam::silu(pre[i]) * pre[I + i];
  for (int h = 0; h < H; ++h) {
    float acc = 0.0f;
    for (int i = 0; i < I; ++i) acc += w2[h * I + i] * act[i];
    out[h] = acc;
  }
}

//! The backward of swiglu_forward with ∂L/∂out = scale · dout: gradients into g13 and g2,
//! dx += ∂L/∂x.
inline void swiglu_backward(const float* w13, const float* w2, float* g13, float* g2, const float* x,
                            const float* pre, const float* act, const float* dout, float scale, int H, int I,
                            float* dx) {
  std::vector<float> dact(I, 0.0f), dpre(2 * I);
  for (int h = 0; h < H; ++h) {
    const float de = scale * dout[h];
    for (int i = 0; i < I; ++i) {
      g2[h * I + i] += de * act[i];
      dact[i] += de * w2[h * I + i];
    }
  }
  for (int i = 0; i < I; ++i) {
    const float gate = pre[i], up = pre[I + i];
    const float sg = beam::sigmoid(gate);
    dpre[i] = dact[i] * up * sg * (1.0f + gate * (1.0f - sg));  // silu'
    dpre[I + i] = dact[i] * gate * sg;
  }
  for (int i = 0; i < 2 * I; ++i) {
    for (int h = 0; h < H; ++h) {
      g13[i * H + h] += dpre[i] * x[h];
      dx[h] += dpre[i] * w13[i * H + h];
    }
  }
}

}  // namespace detail

//! What the MoE layer's forward keeps for its backward: the routing, the weights the forward
//! used, and the activations of the (row, candidate) pairs that ran.
struct moe_pass {
  int rows = 0, top_k = 0;
  routing_setup rs;
  const float* u = nullptr;   //!< the layer's input rows `[rows, H]` (kept by the caller)
  std::vector<float> logits;  //!< [r | z] `[rows, 2E]`
  ref::routing_result<float> routing;
  std::vector<float> weight, expert_out, pre, act;
  std::vector<char> ran;
  int64_t active_pairs = 0;   //!< pairs whose expert runs at inference (weight ≠ 0)
  double l_bal = 0.0, l_reg = 0.0;
};

//! y += MoE(u) for `rows` rows: [r | z] = u·[W_r | W_m]ᵀ, the routing of `rs` through the
//! backend, then Σ_k weight_k · E_{c_k}(u). At training every candidate of a BEAM/soft row runs
//! (the STE needs ⟨∂L/∂y, E(x)⟩ of masked ones too); at evaluation only active pairs run.
inline void moe_forward(const moe_parameters& p, const float* u, int rows, const routing_setup& rs, bool train,
                        moe_pass& pass, float* y) {
  const int H = p.hidden, E = p.experts, I = p.intermediate, K = rs.top_k;
  const bool masked_mode = rs.mode == routing_mode::beam || rs.mode == routing_mode::soft_mask;
  pass.rows = rows;
  pass.top_k = K;
  pass.rs = rs;
  pass.u = u;
  // Router and mask logits: one [rows, 2E] product.
  pass.logits.assign(size_t(rows) * 2 * E, 0.0f);
  for (int b = 0; b < rows; ++b) {
    for (int e = 0; e < 2 * E; ++e) {
      const float* w = e < E ? &p.router.w[size_t(e) * H] : &p.mask.w[size_t(e - E) * H];
      double acc = 0.0;
      for (int h = 0; h < H; ++h) acc += double(w[h]) * u[b * H + h];
      pass.logits[b * 2 * E + e] = float(acc);
    }
  }
  const ref::matrix_view<float> rv{pass.logits.data(), rows, E, 2 * E}, zv{pass.logits.data() + E, rows, E, 2 * E};
  ref::routing_options opt;
  opt.top_k = K;
  opt.mask_enabled = masked_mode;
  routing_backend& backend = routing_for(rs.mode);
  pass.routing = backend.route(rv, zv, opt);
  const ref::routing_result<float>& routing = pass.routing;

  // Weights the forward uses: ĝ (hard mask) for BEAM; g·σ(z) for the soft ablation at
  // training; the top-p prefix for top-p.
  std::vector<float>& weight = pass.weight;
  weight = routing.topk_weights;
  if (rs.mode == routing_mode::soft_mask && train) {
    for (size_t s = 0; s < weight.size(); ++s) weight[s] = routing.gate_weights[s] * routing.mask_probs[s];
  }
  if (rs.mode == routing_mode::top_p) {
    for (int b = 0; b < rows; ++b) {
      double cumulative = 0.0;
      for (int k = 0; k < K; ++k) {
        const size_t s = size_t(b) * K + k;
        if (cumulative >= rs.top_p) weight[s] = 0.0f;
        cumulative += routing.gate_weights[s];
      }
    }
  }
  const bool run_all_candidates = train && masked_mode;

  // Experts, pair by pair; keep the activations of the pairs that run.
  pass.expert_out.assign(size_t(rows) * K * H, 0.0f);
  pass.pre.assign(size_t(rows) * K * 2 * I, 0.0f);
  pass.act.assign(size_t(rows) * K * I, 0.0f);
  pass.ran.assign(size_t(rows) * K, 0);
  pass.active_pairs = 0;
  float* expert_out = pass.expert_out.data();
  float* pre = pass.pre.data();
  float* act = pass.act.data();
  for (int b = 0; b < rows; ++b) {
    for (int k = 0; k < K; ++k) {
      const size_t s = size_t(b) * K + k;
      const int e = routing.candidate_ids[s];
      const bool active = weight[s] != 0.0f;
      if (active) ++pass.active_pairs;
      if (e < 0 || !(active || run_all_candidates)) continue;
      pass.ran[s] = 1;
      detail::swiglu_forward(&p.w13.w[size_t(e) * 2 * I * H], &p.w2.w[size_t(e) * H * I], &u[b * H], H, I,
                             &pre[s * 2 * I], &act[s * I], &expert_out[s * H]);
      for (int h = 0; h < H; ++h) y[b * H + h] += weight[s] * expert_out[s * H + h];
    }
  }
  backend.losses(routing, rv, zv, pass.l_bal, pass.l_reg);
}

//! The MoE layer's backward from ∂L/∂y `[rows, H]`: gradients into the experts, the router
//! and the mask router (score function, STE and the auxiliary losses through the library),
//! du += ∂L/∂u.
inline void moe_backward(const moe_parameters& p, moe_pass& pass, const float* dy_rows, float* du) {
  const int H = p.hidden, E = p.experts, I = p.intermediate, K = pass.top_k, rows = pass.rows;
  const routing_setup& rs = pass.rs;
  const bool masked_mode = rs.mode == routing_mode::beam || rs.mode == routing_mode::soft_mask;
  ref::routing_result<float>& routing = pass.routing;
  const float* u = pass.u;
  const float* expert_out = pass.expert_out.data();
  const float* pre = pass.pre.data();
  const float* act = pass.act.data();
  const ref::matrix_view<float> rv{pass.logits.data(), rows, E, 2 * E}, zv{pass.logits.data() + E, rows, E, 2 * E};
  // ∂L/∂weight and the expert backward.
  std::vector<float> d_weight(size_t(rows) * K, 0.0f);
  for (int b = 0; b < rows; ++b) {
    const float* dy = &dy_rows[b * H];
    for (int k = 0; k < K; ++k) {
      const size_t s = size_t(b) * K + k;
      if (!pass.ran[s]) continue;
      double dot = 0.0;
      for (int h = 0; h < H; ++h) dot += double(dy[h]) * expert_out[s * H + h];
      d_weight[s] = float(dot);
      const float wgt = pass.weight[s];
      if (wgt == 0.0f) continue;  // a masked pair: no gradient into its expert
      const int e = routing.candidate_ids[s];
      detail::swiglu_backward(&p.w13.w[size_t(e) * 2 * I * H], &p.w2.w[size_t(e) * H * I],
                              &p.w13.g[size_t(e) * 2 * I * H], &p.w2.g[size_t(e) * H * I], &u[b * H],
                              &pre[s * 2 * I], &act[s * I], dy, wgt, H, I, &du[b * H]);
    }
  }
  // Routing backward through the library: score function, STE, auxiliary losses.
  ref::routing_grads<float> rg;
  if (rs.mode == routing_mode::soft_mask) {
    // ĝ = g·m: ∂L/∂g = ∂L/∂ĝ·m, ∂L/∂z = ∂L/∂ĝ·g·σ'(z).
    std::vector<float> d_gate(d_weight.size());
    for (size_t s = 0; s < d_gate.size(); ++s) d_gate[s] = d_weight[s] * routing.mask_probs[s];
    routing.options.mask_enabled = false;  // the router part as for dense routing...
    routing.topk_ids = routing.candidate_ids;
    rg = ref::routing_backward(routing, rv, zv, d_gate.data());
    routing.options.mask_enabled = true;  // ...and the mask part by hand, for L_reg below
    for (size_t s = 0; s < d_weight.size(); ++s) {
      const int e = routing.candidate_ids[s];
      if (e >= 0) {
        rg.d_mask_logits[(s / K) * E + e] = float(d_weight[s] * routing.gate_weights[s] *
                                                  beam::sigmoid_grad(double(zv(int64_t(s / K), e))));
      }
    }
    if (rs.alpha > 0) ref::add_balance_loss_grad(rv, routing, rs.alpha, rg.d_router_logits);
    if (rs.beta > 0) ref::add_l_reg_grad(routing, zv, rs.beta, rg.d_mask_logits);
  } else {
    rg = routing_for(rs.mode).backward(routing, rv, zv, d_weight.data(), rs.alpha, masked_mode ? rs.beta : 0.0);
  }
  for (int b = 0; b < rows; ++b) {
    for (int e = 0; e < E; ++e) {
      const float dr = rg.d_router_logits[size_t(b) * E + e];
      const float dz = masked_mode ? rg.d_mask_logits[size_t(b) * E + e] : 0.0f;
      float* gr = &p.router.g[size_t(e) * H];
      float* gm = &p.mask.g[size_t(e) * H];
      const float* wr = &p.router.w[size_t(e) * H];
      const float* wm = &p.mask.w[size_t(e) * H];
      for (int h = 0; h < H; ++h) {
        gr[h] += dr * u[b * H + h];
        gm[h] += dz * u[b * H + h];
        du[b * H + h] += dr * wr[h] + dz * wm[h];
      }
    }
  }
}

//! Forward (and, when `train`, backward into the gradients) of one batch of positions of
//! `text` (each position ≥ context); the MoE layer as moe_forward / moe_backward.
inline batch_stats run_batch(model& m, const std::vector<uint8_t>& text, const std::vector<int64_t>& positions,
                             const routing_setup& rs, bool train,
                             std::vector<int64_t>* active_by_char = nullptr,
                             std::vector<int64_t>* seen_by_char = nullptr) {
  const config& c = m.cfg;
  const int B = int(positions.size()), H = c.hidden, V = c.vocab, K = rs.top_k;
  batch_stats st;
  st.positions = B;

  // Embedding sum and the normalised MoE input.
  std::vector<float> x0(size_t(B) * H, 0.0f), u(size_t(B) * H), inv_u(B);
  for (int b = 0; b < B; ++b) {
    for (int j = 0; j < c.context; ++j) {
      const float* e = &m.emb.w[(size_t(j) * V + text[positions[b] - 1 - j]) * H];
      for (int h = 0; h < H; ++h) x0[b * H + h] += e[h];
    }
    inv_u[b] = detail::rmsnorm(&x0[b * H], H, &u[b * H]);
  }
  moe_pass pass;
  std::vector<float> y(size_t(B) * H, 0.0f);
  moe_forward(m.moe(), u.data(), B, rs, train, pass, y.data());
  st.active_pairs = pass.active_pairs;
  st.l_bal = pass.l_bal;
  st.l_reg = pass.l_reg;
  for (int b = 0; active_by_char && b < B; ++b) {
    const uint8_t last = text[positions[b] - 1];
    for (int k = 0; k < K; ++k) (*active_by_char)[last] += pass.weight[size_t(b) * K + k] != 0.0f;
    ++(*seen_by_char)[last];
  }

  // Residual, final norm, LM head, cross-entropy.
  std::vector<float> hres(size_t(B) * H), v(size_t(B) * H), inv_v(B), dlogits(size_t(B) * V);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) hres[b * H + h] = x0[b * H + h] + y[b * H + h];
    inv_v[b] = detail::rmsnorm(&hres[b * H], H, &v[b * H]);
    double max_logit = -1e30;
    for (int o = 0; o < V; ++o) {
      double acc = m.head_bias.w[o];
      for (int h = 0; h < H; ++h) acc += double(m.head.w[size_t(o) * H + h]) * v[b * H + h];
      dlogits[b * V + o] = float(acc);
      max_logit = std::max(max_logit, acc);
    }
    const int target = text[positions[b]];
    int argmax = 0;
    double sum = 0.0;
    for (int o = 0; o < V; ++o) {
      if (dlogits[b * V + o] > dlogits[b * V + argmax]) argmax = o;
      sum += std::exp(dlogits[b * V + o] - max_logit);
    }
    st.lm_loss += std::log(sum) + max_logit - dlogits[b * V + target];
    st.correct += argmax == target;
    for (int o = 0; o < V; ++o) {  // ∂CE/∂logit = softmax − onehot, averaged over the batch
      dlogits[b * V + o] = float((std::exp(dlogits[b * V + o] - max_logit) / sum - (o == target)) / B);
    }
  }
  if (!train) return st;

  // ---- backward ----
  std::vector<float> dv(size_t(B) * H, 0.0f), dh(size_t(B) * H, 0.0f);
  for (int b = 0; b < B; ++b) {
    for (int o = 0; o < V; ++o) {
      const float d = dlogits[b * V + o];
      m.head_bias.g[o] += d;
      float* gh = &m.head.g[size_t(o) * H];
      const float* wh = &m.head.w[size_t(o) * H];
      for (int h = 0; h < H; ++h) {
        gh[h] += d * v[b * H + h];
        dv[b * H + h] += d * wh[h];
      }
    }
    detail::rmsnorm_backward(&v[b * H], &dv[b * H], inv_v[b], H, &dh[b * H]);
  }
  // dy = dh (residual): the MoE layer's backward, then the embeddings.
  std::vector<float> du(size_t(B) * H, 0.0f);
  moe_backward(m.moe(), pass, dh.data(), du.data());
  for (int b = 0; b < B; ++b) {
    // dx0 = dh (residual) + rmsnorm backward of du; then the embeddings.
    std::vector<float> dx0(dh.begin() + b * H, dh.begin() + (b + 1) * H);
    detail::rmsnorm_backward(&u[b * H], &du[b * H], inv_u[b], H, dx0.data());
    for (int j = 0; j < c.context; ++j) {
      float* ge = &m.emb.g[(size_t(j) * V + text[positions[b] - 1 - j]) * H];
      for (int h = 0; h < H; ++h) ge[h] += dx0[h];
    }
  }
  return st;
}

}  // namespace train
