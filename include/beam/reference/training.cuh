//! @file
//! Host reference of BEAM's training math: the backward of routing through its rule (the STE
//! for the mask), the auxiliary losses and their gradients, ∂L/∂ĝ of the layer output, and the
//! gradients of the constant experts' parameters.
//!
//!   L = L_task + α · L_bal + β · L_reg
//!   ∂L/∂ĝ_i = ⟨∂L/∂y, E_{c_i}(x)⟩           (for every candidate, masked ones included)
//!   ∂L/∂g_i = ∂L/∂ĝ_i · m̂_i,    ∂L/∂m̂_i = ∂L/∂ĝ_i · g_i   (m̂ of the rule)
//!   ∂L/∂z_{c_i} = ∂L/∂m̂_i · σ'(z_{c_i})      (STE: the threshold is the identity backward; the
//!                                             mask rule only: top-p's and the threshold's m̂
//!                                             are step functions of g, with no gradient)
//!   L_reg = (1/(T·K)) Σ_t Σ_i σ(z_{t,c_i})   (L1 on the continuous mask probabilities)
//!   L_bal = E · Σ_e f_e · P_e,  f_e = #{slots with c = e}/(T·K) (not differentiated),
//!           P_e = (1/T) Σ_t softmax(r_t)_e   (the Switch/GShard definition, whatever the
//!           score function of the routing)
//!   the experts (SwiGLU), from ∂L/∂Yp of each row: ∂L/∂x, ∂L/∂W13, ∂L/∂W2 (experts_backward)
//! Routing gradients are dense `[T, E]` arrays, zero off the candidates. They assume finite logits.
//! Every function takes the `routing_result` of the forward and uses the options stored in
//! it, so a backward cannot disagree with its forward.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "beam/core/math.cuh"
#include "beam/reference/matrix.cuh"
#include "beam/reference/moe.cuh"
#include "beam/reference/permute.cuh"
#include "beam/reference/routing.cuh"

namespace beam::reference {

//! Gradients of routing; `[T, K]` arrays per candidate slot, `[T, E]` arrays dense.
template <class Real>
struct routing_grads {
  std::vector<Real> d_gate;           //!< ∂L/∂g `[T, K]`
  std::vector<Real> d_mask;           //!< ∂L/∂m̂ `[T, K]`
  std::vector<Real> d_router_logits;  //!< ∂L/∂r `[T, E]`
  std::vector<Real> d_mask_logits;    //!< ∂L/∂z `[T, E]` (zero unless the rule is the mask)
};

//! Throws `std::invalid_argument` unless `fwd` is a well-formed routing of T tokens over E
//! experts and `view`, if given, a `T × E` view.
template <class Real>
void check_routing(const routing_result<Real>& fwd, const matrix_view<Real>* view, const char* what) {
  const auto slots = static_cast<size_t>(fwd.tokens * fwd.top_k);
  bool ok = fwd.tokens >= 0 && fwd.top_k >= 1 && fwd.candidate_ids.size() == slots &&
            fwd.topk_ids.size() == slots && fwd.gate_weights.size() == slots &&
            fwd.mask_probs.size() == slots;
  for (int32_t e : fwd.candidate_ids) ok = ok && e >= -1 && e < fwd.experts;
  if (!ok) throw std::invalid_argument(std::string(what) + ": malformed routing");
  if (view) check_view(*view, fwd.tokens, fwd.experts, what);
}

//! Throws `std::invalid_argument` unless `grad` holds `[T, E]` values.
template <class Real>
void check_grad(const routing_result<Real>& fwd, const std::vector<Real>& grad, const char* what) {
  if (grad.size() != static_cast<size_t>(fwd.tokens * fwd.experts)) {
    throw std::invalid_argument(std::string(what) + ": gradient is not [T, E]");
  }
}

//! Backward of `route_and_mask` given ∂L/∂ĝ `[T, K]`, for the options of the forward:
//!   ∂L/∂s_{c_j} = λ·(∂L/∂g_j)                                   (no renormalisation)
//!              = (λ/S)·(∂L/∂g_j − Σ_i ∂L/∂g_i · g_i/λ),  S = Σ_i s_{c_i}   (renormalised)
//!   ∂L/∂r_e = p_e·(∂L/∂s_e − Σ_l p_l ∂L/∂s_l)  (softmax),   ∂L/∂s_e·σ'(r_e)  (sigmoid)
//! and ∂L/∂g, ∂L/∂m̂, ∂L/∂z as in the file comment. The selection (and its bias) is
//! piecewise constant and has no gradient.
//!
//! @param mask_logits  z, a `T × E` view; ignored (may be empty) unless the rule was the mask
//! @throws std::invalid_argument for mismatched views, a malformed `fwd` or null ∂L/∂ĝ
template <class Real>
routing_grads<Real> routing_backward(const routing_result<Real>& fwd,
                                     const matrix_view<Real>& router_logits,
                                     const matrix_view<Real>& mask_logits,
                                     const non_deduced<Real>* d_topk_weights) {
  const routing_options& options = fwd.options;
  check_routing(fwd, &router_logits, "routing_backward: router_logits");
  if (uses_mask(options)) check_routing(fwd, &mask_logits, "routing_backward: mask_logits");
  if (fwd.tokens > 0 && !d_topk_weights) throw std::invalid_argument("routing_backward: null ∂L/∂ĝ");
  const int64_t T = fwd.tokens, E = fwd.experts;
  const int K = fwd.top_k;
  const double lambda = options.routed_scaling_factor;
  routing_grads<Real> grads;
  grads.d_gate.assign(static_cast<size_t>(T * K), Real(0));
  grads.d_mask.assign(static_cast<size_t>(T * K), Real(0));
  grads.d_router_logits.assign(static_cast<size_t>(T * E), Real(0));
  grads.d_mask_logits.assign(static_cast<size_t>(T * E), Real(0));

  for (int64_t t = 0; t < T; ++t) {
    const std::vector<double> s = expert_scores(&router_logits(t, 0), E, options.scoring);
    std::vector<double> d_score(static_cast<size_t>(E), 0.0);
    double score_sum = 0.0, dg_dot_g = 0.0;
    for (int k = 0; k < K; ++k) {
      const size_t slot = static_cast<size_t>(t * K + k);
      const int32_t e = fwd.candidate_ids[slot];
      if (e < 0) continue;
      const bool kept = fwd.topk_ids[slot] >= 0;
      const double d_hat = d_topk_weights[slot];
      const double d_gate = kept ? d_hat : 0.0;
      const double d_mask = d_hat * double(fwd.gate_weights[slot]);
      grads.d_gate[slot] = Real(d_gate);
      grads.d_mask[slot] = Real(d_mask);
      if (uses_mask(options)) {
        grads.d_mask_logits[t * E + e] = Real(ste_backward(d_mask, double(mask_logits(t, e))));
      }
      d_score[e] = lambda * d_gate;
      score_sum += s[e];
      dg_dot_g += d_gate * double(fwd.gate_weights[slot]);
    }
    if (options.renormalize && score_sum > 0.0) {
      for (int k = 0; k < K; ++k) {
        const int32_t e = fwd.candidate_ids[t * K + k];
        if (e >= 0) d_score[e] = (d_score[e] - dg_dot_g) / score_sum;
      }
    }
    if (options.scoring == score_function::softmax) {
      double p_dot_d = 0.0;
      for (int64_t e = 0; e < E; ++e) p_dot_d += s[e] * d_score[e];
      for (int64_t e = 0; e < E; ++e) grads.d_router_logits[t * E + e] = Real(s[e] * (d_score[e] - p_dot_d));
    } else {
      for (int64_t e = 0; e < E; ++e) {  // non-candidates (NaN logits among them) get exact zeros
        const double r = router_logits(t, e);
        grads.d_router_logits[t * E + e] = d_score[e] == 0.0 ? Real(0) : Real(d_score[e] * sigmoid_grad(r));
      }
    }
  }
  return grads;
}

//! L_reg = (1/(T·K)) Σ_{t,k} m_{t,k} over the candidate slots; 0 when T = 0 or the rule is not the mask.
template <class Real>
double l_reg(const routing_result<Real>& fwd) {
  if (fwd.tokens == 0 || !uses_mask(fwd.options)) return 0.0;
  double sum = 0.0;
  for (Real m : fwd.mask_probs) sum += double(m);
  return sum / double(fwd.tokens * fwd.top_k);
}

//! d_mask_logits[t, c] += β · σ'(z_{t,c}) / (T·K) for every candidate c (∂(β·L_reg)/∂z);
//! nothing unless the rule is the mask.
template <class Real>
void add_l_reg_grad(const routing_result<Real>& fwd, const matrix_view<Real>& mask_logits,
                    double beta, std::vector<Real>& d_mask_logits) {
  if (!uses_mask(fwd.options)) return;
  check_routing(fwd, &mask_logits, "add_l_reg_grad: mask_logits");
  check_grad(fwd, d_mask_logits, "add_l_reg_grad");
  const int64_t T = fwd.tokens, E = fwd.experts;
  if (T == 0) return;
  const double scale = beta / double(T * fwd.top_k);
  for (int64_t t = 0; t < T; ++t) {
    for (int k = 0; k < fwd.top_k; ++k) {
      const int32_t e = fwd.candidate_ids[t * fwd.top_k + k];
      if (e >= 0) d_mask_logits[t * E + e] += Real(l_reg_term_grad(double(mask_logits(t, e)), scale));
    }
  }
}

//! f_e = (number of candidate slots given to expert e) / (T·K).
template <class Real>
std::vector<double> candidate_fractions(const routing_result<Real>& fwd, int64_t experts) {
  std::vector<double> f(static_cast<size_t>(experts), 0.0);
  for (int32_t e : fwd.candidate_ids) {
    if (e >= 0) f[e] += 1.0 / double(fwd.tokens * fwd.top_k);
  }
  return f;
}

//! L_bal = E · Σ_e f_e · P_e, P_e = (1/T) Σ_t softmax(r_t)_e (0 when T = 0).
template <class Real>
double balance_loss(const matrix_view<Real>& router_logits, const routing_result<Real>& fwd) {
  check_routing(fwd, &router_logits, "balance_loss: router_logits");
  const int64_t T = fwd.tokens, E = fwd.experts;
  if (T == 0) return 0.0;
  const std::vector<double> f = candidate_fractions(fwd, E);
  double loss = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<double> p = expert_scores(&router_logits(t, 0), E, score_function::softmax);
    for (int64_t e = 0; e < E; ++e) loss += f[e] * p[e];
  }
  return double(E) * loss / double(T);
}

//! d_router_logits[t, j] += α · (E/T) · p_tj · (f_j − Σ_e f_e p_te)   (∂(α·L_bal)/∂r).
template <class Real>
void add_balance_loss_grad(const matrix_view<Real>& router_logits, const routing_result<Real>& fwd,
                           double alpha, std::vector<Real>& d_router_logits) {
  check_routing(fwd, &router_logits, "add_balance_loss_grad: router_logits");
  check_grad(fwd, d_router_logits, "add_balance_loss_grad");
  const int64_t T = fwd.tokens, E = fwd.experts;
  if (T == 0) return;
  const std::vector<double> f = candidate_fractions(fwd, E);
  const double scale = alpha * double(E) / double(T);
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<double> p = expert_scores(&router_logits(t, 0), E, score_function::softmax);
    double f_dot_p = 0.0;
    for (int64_t e = 0; e < E; ++e) f_dot_p += f[e] * p[e];
    for (int64_t j = 0; j < E; ++j) d_router_logits[t * E + j] += Real(scale * p[j] * (f[j] - f_dot_p));
  }
}

//! ∂L/∂ĝ `[T, K]` from ∂L/∂y `[T, H]`: ⟨∂L/∂y_t, E_{c_tk}(x_t)⟩ for every candidate slot,
//! masked candidates included (training computes all K experts so the STE has a signal),
//! zero-computation experts with their E(x) of moe.cuh (0, x or α₁x + α₂v); 0 for empty slots.
template <class Real>
std::vector<Real> topk_weight_grad(const Real* x, const moe_weights<Real>& w,
                                   const routing_result<Real>& fwd, const Real* d_out) {
  check_weights(w);
  check_routing<Real>(fwd, nullptr, "topk_weight_grad");
  if (fwd.tokens > 0 && (!x || !d_out)) throw std::invalid_argument("topk_weight_grad: null x or ∂L/∂y");
  if (fwd.experts > w.experts + w.zero_compute()) {
    throw std::invalid_argument("topk_weight_grad: more experts routed than weighted");
  }
  const int64_t T = fwd.tokens, H = w.hidden, I = w.intermediate;
  const int K = fwd.top_k;
  std::vector<Real> d_hat(static_cast<size_t>(T * K), Real(0));
  std::vector<Real> y(static_cast<size_t>(H));
  std::vector<double> term(static_cast<size_t>(H));
  for (int64_t t = 0; t < T; ++t) {
    for (int k = 0; k < K; ++k) {
      const int32_t e = fwd.candidate_ids[t * K + k];
      if (e < 0) continue;
      if (e < w.experts) {
        swiglu_mlp(x + t * H, w.w13 + e * 2 * I * H, w.w2 + e * H * I, H, I, y.data());
        for (int64_t h = 0; h < H; ++h) term[h] = double(y[h]);
      } else {
        std::fill(term.begin(), term.end(), 0.0);
        add_zero_compute_term(x + t * H, w, e, 1.0, term.data());
      }
      double dot = 0.0;
      for (int64_t h = 0; h < H; ++h) dot += double(d_out[t * H + h]) * term[h];
      d_hat[t * K + k] = Real(dot);
    }
  }
  return d_hat;
}

//! Gradients of the routed experts (SwiGLU MLPs) from ∂L/∂Yp of the rows of a compaction.
template <class Real>
struct expert_grads {
  std::vector<double> d_x;    //!< ∂L/∂x `[T, H]`: the sum over each token's rows
  std::vector<double> d_w13;  //!< ∂L/∂W13 `[E, 2I, H]` (zeros for an expert without rows)
  std::vector<double> d_w2;   //!< ∂L/∂W2 `[E, H, I]`
};

//! The backward of Yp_r = W2_e · A_r, A_r = silu(g) ⊙ u, [g | u] = W13_e · x_t for every row r
//! of `rows` (expert e, token t = rows.token_of_row(r)) from ∂L/∂Yp `[rows, H]`
//! (combine_backward's: ĝ · ∂L/∂y_t), in double:
//!   ∂L/∂A = W2_eᵀ · ∂L/∂Yp_r,   ∂L/∂g = ∂L/∂A ⊙ u ⊙ silu'(g),   ∂L/∂u = ∂L/∂A ⊙ silu(g)
//!   ∂L/∂x_t += W13_eᵀ · [∂L/∂g | ∂L/∂u]
//!   ∂L/∂W2_e += ∂L/∂Yp_r ⊗ A_r,   ∂L/∂W13_e += [∂L/∂g | ∂L/∂u] ⊗ x_t
//! Experts are the compaction's local ones (`w.experts` of them); rows are taken in row order.
//! @throws std::invalid_argument for null inputs or a compaction over other experts
template <class Real>
expert_grads<Real> experts_backward(const Real* x, const moe_weights<Real>& w, const compaction& rows,
                                    const non_deduced<Real>* d_yp) {
  check_weights(w);
  if (rows.counts.size() != static_cast<size_t>(w.experts)) {
    throw std::invalid_argument("experts_backward: compaction over other experts");
  }
  if (rows.n_active > 0 && (!x || !d_yp)) throw std::invalid_argument("experts_backward: null x or ∂L/∂Yp");
  const int64_t H = w.hidden, I = w.intermediate;
  expert_grads<Real> g;
  g.d_x.assign(static_cast<size_t>(rows.tokens * H), 0.0);
  g.d_w13.assign(static_cast<size_t>(int64_t(w.experts) * 2 * I * H), 0.0);
  g.d_w2.assign(static_cast<size_t>(int64_t(w.experts) * H * I), 0.0);
  std::vector<double> gate(static_cast<size_t>(I)), up(static_cast<size_t>(I)), d_gate(static_cast<size_t>(I)),
      d_up(static_cast<size_t>(I));
  for (int e = 0; e < w.experts; ++e) {
    const Real* w13 = w.w13 + int64_t(e) * 2 * I * H;
    const Real* w2 = w.w2 + int64_t(e) * H * I;
    double* dw13 = g.d_w13.data() + int64_t(e) * 2 * I * H;
    double* dw2 = g.d_w2.data() + int64_t(e) * H * I;
    for (int64_t r = rows.offsets[e]; r < rows.offsets[e + 1]; ++r) {
      const int64_t t = rows.token_of_row(r);
      const Real* x_t = x + t * H;
      const Real* dy = d_yp + r * H;
      for (int64_t i = 0; i < I; ++i) {
        double a = 0.0, b = 0.0, d_act = 0.0;
        for (int64_t h = 0; h < H; ++h) {
          a += double(w13[i * H + h]) * double(x_t[h]);
          b += double(w13[(I + i) * H + h]) * double(x_t[h]);
          d_act += double(w2[h * I + i]) * double(dy[h]);
        }
        gate[i] = a;
        up[i] = b;
        d_gate[i] = d_act * b * silu_grad(a);
        d_up[i] = d_act * silu(a);
      }
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t i = 0; i < I; ++i) dw2[h * I + i] += double(dy[h]) * silu(gate[i]) * up[i];
      }
      for (int64_t i = 0; i < I; ++i) {
        for (int64_t h = 0; h < H; ++h) {
          dw13[i * H + h] += d_gate[i] * double(x_t[h]);
          dw13[(I + i) * H + h] += d_up[i] * double(x_t[h]);
          g.d_x[t * H + h] += double(w13[i * H + h]) * d_gate[i] + double(w13[(I + i) * H + h]) * d_up[i];
        }
      }
    }
  }
  return g;
}

//! Gradients of the constant experts' parameters (MoE++), W_c `[2C, H]` and v `[C, H]`.
template <class Real>
struct constant_expert_grads {
  std::vector<double> d_gate;     //!< ∂L/∂W_c `[2C, H]`
  std::vector<double> d_vectors;  //!< ∂L/∂v `[C, H]`
};

//! ∂L/∂W_c and ∂L/∂v from ∂L/∂y `[T, H]` for the layer output of moe.cuh with the routing
//! `topk_ids`, ĝ = `topk_weights` `[T, K]`: for each pair on constant expert j (term
//! ĝ (α₁ x + α₂ v_j), α = softmax(ℓ), ℓ_c = W_c[2j + c] · x), with d = ∂L/∂y_t,
//!   ∂L/∂v_j += ĝ α₂ d,   ∂L/∂α = ĝ (⟨d, x⟩, ⟨d, v_j⟩),   ∂L/∂ℓ = α ⊙ (∂L/∂α − ⟨α, ∂L/∂α⟩),
//!   ∂L/∂W_c[2j + c] += ∂L/∂ℓ_c · x.
template <class Real>
constant_expert_grads<Real> constant_expert_backward(const Real* x, int64_t tokens, const moe_weights<Real>& w,
                                                     const int32_t* topk_ids, const Real* topk_weights, int top_k,
                                                     const Real* d_out) {
  check_weights(w);
  if (tokens > 0 && (!x || !topk_ids || !topk_weights || !d_out)) {
    throw std::invalid_argument("constant_expert_backward: null input");
  }
  const int64_t H = w.hidden, C = w.constant_experts;
  const int first = w.experts + w.zero_experts + w.identity_experts;
  constant_expert_grads<Real> g;
  g.d_gate.assign(size_t(2 * C * H), 0.0);
  g.d_vectors.assign(size_t(C * H), 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const Real* x_t = x + t * H;
    const Real* d = d_out + t * H;
    for (int k = 0; k < top_k; ++k) {
      const int64_t j = int64_t(topk_ids[t * top_k + k]) - first;
      if (j < 0 || j >= C) continue;
      const double weight = double(topk_weights[t * top_k + k]);
      double logit[2] = {0.0, 0.0}, d_x = 0.0, d_v = 0.0;
      for (int64_t h = 0; h < H; ++h) {
        for (int c = 0; c < 2; ++c) logit[c] += double(w.constant_gate[(2 * j + c) * H + h]) * double(x_t[h]);
        d_x += double(d[h]) * double(x_t[h]);
        d_v += double(d[h]) * double(w.constant_vectors[j * H + h]);
      }
      const double a1 = sigmoid(logit[0] - logit[1]), a2 = sigmoid(logit[1] - logit[0]);
      const double da1 = weight * d_x, da2 = weight * d_v, mean = a1 * da1 + a2 * da2;
      const double dl[2] = {a1 * (da1 - mean), a2 * (da2 - mean)};
      for (int64_t h = 0; h < H; ++h) {
        g.d_vectors[size_t(j * H + h)] += weight * a2 * double(d[h]);
        for (int c = 0; c < 2; ++c) g.d_gate[size_t((2 * j + c) * H + h)] += dl[c] * double(x_t[h]);
      }
    }
  }
  return g;
}

}  // namespace beam::reference
