// The MoE block of the BEAM training example's model, with a hand-written backward pass:
// RMSNorm and SwiGLU helpers, the routed experts, and the routing through the library's host
// reference (router and mask-router logits, route_and_mask, the STE backward and both auxiliary
// losses): the CPU path. On a GPU the routed layer runs on the device instead (moe_backend,
// device_moe.cu: beam::device's training forward, auxiliary losses and backward). Also the
// routing modes the example compares, parameters with Adam, and batch statistics.
#pragma once

#include <beam/reference/training.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace train {

namespace ref = beam::reference;

//! How a forward pass routes.
enum class routing_mode {
  top_k,      //!< plain Top-k (k may be smaller than the trained K: pruning)
  beam,       //!< BEAM: hard mask forward, STE backward
  soft_mask,  //!< ablation: ĝ = g·σ(z) forward and backward, hard mask at evaluation
  top_p,      //!< cumulative-probability routing: smallest prefix of the Top-K with Σ g ≥ p
  threshold,  //!< the Top-K candidates with g ≥ τ (none when every gate is below τ)
};

struct routing_setup {
  routing_mode mode = routing_mode::top_k;
  int top_k = 4;
  double level = 1.0;   //!< top_p: the mass p; threshold: τ
  double alpha = 0.0;   //!< balance loss coefficient
  double beta = 0.0;    //!< L_reg coefficient
};

//! The library's routing options of a setup (the soft ablation routes with the mask rule).
inline ref::routing_options routing_options_of(const routing_setup& rs) {
  ref::routing_options opt;
  opt.top_k = rs.top_k;
  opt.rule = rs.mode == routing_mode::beam || rs.mode == routing_mode::soft_mask ? ref::routing_rule::mask
             : rs.mode == routing_mode::top_p                                   ? ref::routing_rule::top_p
             : rs.mode == routing_mode::threshold                               ? ref::routing_rule::threshold
                                                                                : ref::routing_rule::top_k;
  opt.top_p = float(rs.level);
  opt.threshold = float(rs.level);
  return opt;
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

//! Adam with bias correction; `step` updates the parameters marked trainable at learning rate
//! `lr` and clears every gradient.
struct adam {
  double beta1 = 0.9, beta2 = 0.99, eps = 1e-8;
  int64_t t = 0;
  void step(const std::vector<parameter*>& params, const std::vector<bool>& trainable, double lr) {
    ++t;
    const double c1 = 1.0 - std::pow(beta1, double(t)), c2 = 1.0 - std::pow(beta2, double(t));
    for (size_t n = 0; n < params.size(); ++n) {
      parameter& p = *params[n];
      for (size_t i = 0; i < p.w.size(); ++i) {
        const double g = p.g[i];
        p.g[i] = 0.0f;
        if (!trainable[n]) continue;
        p.m[i] = float(beta1 * p.m[i] + (1 - beta1) * g);
        p.v[i] = float(beta2 * p.v[i] + (1 - beta2) * g * g);
        p.w[i] -= float(lr * (p.m[i] / c1) / (std::sqrt(p.v[i] / c2) + eps));
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
  int64_t positions_without_experts = 0;  //!< positions that keep no routed expert
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
  int64_t rows_without_experts = 0;  //!< rows with no active pair
  double l_bal = 0.0, l_reg = 0.0;   //!< the losses (training; the CPU path also at evaluation)
  bool on_device = false;            //!< the forward ran on moe_backend: only rows, top_k, rs, u, weight and
                                     //!< the statistics above are filled
};

//! The routed layer on a device (device_moe.cu). moe_forward and moe_backward hand it every
//! batch of every mode but the soft-mask ablation (ĝ = g·σ(z) at training is not a routing
//! rule of the library: the CPU path runs it).
struct moe_backend {
  virtual ~moe_backend() = default;
  //! As moe_forward: y += the routed layer of u `[rows, H]`, the pass's weight (ĝ) and statistics.
  virtual void forward(const moe_parameters& p, const float* u, int rows, const routing_setup& rs, bool train,
                       moe_pass& pass, float* y) = 0;
  //! As moe_backward, right after the training forward of the same batch.
  virtual void backward(const moe_parameters& p, const moe_pass& pass, const float* dy_rows, float* du) = 0;
};

//! Installed by `main` when a usable device is present (make_device_moe), else null: the CPU path.
inline moe_backend* device_moe_backend = nullptr;

//! The device backend when a CUDA device of sm_80 or later is present, else null.
std::unique_ptr<moe_backend> make_device_moe();

namespace detail {
inline void balance_and_reg_losses(const ref::routing_result<float>& routing, const ref::matrix_view<float>& rv,
                                   double& l_bal, double& l_reg) {
  l_bal = ref::balance_loss(rv, routing);
  l_reg = beam::uses_mask(routing.options) ? ref::l_reg(routing) : 0.0;
}
}  // namespace detail

//! y += MoE(u) for `rows` rows: [r | z] = u·[W_r | W_m]ᵀ, the routing of `rs` (the library's
//! reference), then Σ_k weight_k · E_{c_k}(u). At training every candidate of a BEAM/soft row
//! runs (the STE needs ⟨∂L/∂y, E(x)⟩ of masked ones too); at evaluation only active pairs run.
//! With a device backend installed, the device runs it (moe_backend).
inline void moe_forward(const moe_parameters& p, const float* u, int rows, const routing_setup& rs, bool train,
                        moe_pass& pass, float* y) {
  if (device_moe_backend && rs.mode != routing_mode::soft_mask) {
    pass.on_device = true;
    device_moe_backend->forward(p, u, rows, rs, train, pass, y);
    return;
  }
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
  pass.routing = ref::route_and_mask(rv, zv, routing_options_of(rs));
  const ref::routing_result<float>& routing = pass.routing;

  // Weights the forward uses: ĝ of the routing rule (BEAM: the hard mask; top-p, threshold),
  // or g·σ(z) for the soft ablation at training.
  std::vector<float>& weight = pass.weight;
  weight = routing.topk_weights;
  if (rs.mode == routing_mode::soft_mask && train) {
    for (size_t s = 0; s < weight.size(); ++s) weight[s] = routing.gate_weights[s] * routing.mask_probs[s];
  }
  const bool run_all_candidates = train && masked_mode;

  // Experts, pair by pair; keep the activations of the pairs that run.
  pass.expert_out.assign(size_t(rows) * K * H, 0.0f);
  pass.pre.assign(size_t(rows) * K * 2 * I, 0.0f);
  pass.act.assign(size_t(rows) * K * I, 0.0f);
  pass.ran.assign(size_t(rows) * K, 0);
  pass.active_pairs = 0;
  pass.rows_without_experts = 0;
  float* expert_out = pass.expert_out.data();
  float* pre = pass.pre.data();
  float* act = pass.act.data();
  for (int b = 0; b < rows; ++b) {
    int kept = 0;
    for (int k = 0; k < K; ++k) kept += weight[size_t(b) * K + k] != 0.0f;
    pass.active_pairs += kept;
    pass.rows_without_experts += kept == 0;
    for (int k = 0; k < K; ++k) {
      const size_t s = size_t(b) * K + k;
      const int e = routing.candidate_ids[s];
      const bool active = weight[s] != 0.0f;
      if (e < 0 || !(active || run_all_candidates)) continue;
      pass.ran[s] = 1;
      detail::swiglu_forward(&p.w13.w[size_t(e) * 2 * I * H], &p.w2.w[size_t(e) * H * I], &u[b * H], H, I,
                             &pre[s * 2 * I], &act[s * I], &expert_out[s * H]);
      for (int h = 0; h < H; ++h) y[b * H + h] += weight[s] * expert_out[s * H + h];
    }
  }
  detail::balance_and_reg_losses(routing, rv, pass.l_bal, pass.l_reg);
}

//! The MoE layer's backward from ∂L/∂y `[rows, H]`: gradients into the experts, the router
//! and the mask router (score function, STE and the auxiliary losses through the library),
//! du += ∂L/∂u.
inline void moe_backward(const moe_parameters& p, moe_pass& pass, const float* dy_rows, float* du) {
  if (pass.on_device) {
    device_moe_backend->backward(p, pass, dy_rows, du);
    return;
  }
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
    routing.options.rule = ref::routing_rule::top_k;  // the router part as for dense routing...
    routing.topk_ids = routing.candidate_ids;
    rg = ref::routing_backward(routing, rv, zv, d_gate.data());
    routing.options.rule = ref::routing_rule::mask;  // ...and the mask part by hand, for L_reg below
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
    rg = ref::routing_backward(routing, rv, zv, d_weight.data());
    if (rs.alpha > 0) ref::add_balance_loss_grad(rv, routing, rs.alpha, rg.d_router_logits);
    if (masked_mode && rs.beta > 0) ref::add_l_reg_grad(routing, zv, rs.beta, rg.d_mask_logits);
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

}  // namespace train
