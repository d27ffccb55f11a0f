// A character-level transformer block with an MoE layer, hand-written forward and backward,
// for the BEAM training example: a token's difficulty depends on its context (up to
// `context` characters through causal self-attention), which a token-adaptive mask can use.
// The MoE layer is moe_block.hpp's (routing, the mask, the STE backward and the auxiliary
// losses through the library), plus an always-on shared expert.
//
//   x0_i = Tok[c_i] + Pos[i]                                   (i < L = context)
//   a = rmsnorm(x0);  q, k, v = a·W_qᵀ, a·W_kᵀ, a·W_vᵀ
//   o_i = Σ_{j ≤ i} softmax_j(q_i·k_j / √d) v_j                (per head, d = H / heads)
//   x1 = x0 + o·W_oᵀ
//   u = rmsnorm(x1);  y = Σ_k ĝ_k · E_{c_k}(u) + S(u)           (S: the shared expert)
//   x2 = x1 + y;  logits = W_out · rmsnorm(x2) + b_out
//   L = mean_i CE(logits_i, c_{i+1}) + α·L_bal + β·L_reg
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "moe_block.hpp"

namespace train {

struct config {
  int context = 64;             //!< L: characters a sequence holds (and positions it predicts)
  int hidden = 64;              //!< H
  int heads = 4;                //!< attention heads (H / heads each)
  int experts = 32;             //!< E routed experts
  int top_k = 4;                //!< K of the base model
  int intermediate = 32;        //!< I of a routed expert
  int shared_intermediate = 32; //!< I_s of the shared expert (0: none)
  int vocab = 97;               //!< printable ASCII, newline, and one id for everything else
};

struct model {
  config cfg;
  parameter tok, pos, wq, wk, wv, wo, router, mask, w13, w2, shared_w13, shared_w2, head, head_bias;

  model(const config& c, uint64_t seed)
      : cfg(c),
        tok(size_t(c.vocab) * c.hidden),
        pos(size_t(c.context) * c.hidden),
        wq(size_t(c.hidden) * c.hidden),
        wk(size_t(c.hidden) * c.hidden),
        wv(size_t(c.hidden) * c.hidden),
        wo(size_t(c.hidden) * c.hidden),
        router(size_t(c.experts) * c.hidden),
        mask(size_t(c.experts) * c.hidden),  // zero-initialised: BEAM starts from plain Top-K
        w13(size_t(c.experts) * 2 * c.intermediate * c.hidden),
        w2(size_t(c.experts) * c.hidden * c.intermediate),
        shared_w13(size_t(2) * c.shared_intermediate * c.hidden),
        shared_w2(size_t(c.hidden) * c.shared_intermediate),
        head(size_t(c.vocab) * c.hidden),
        head_bias(size_t(c.vocab)) {
    std::mt19937_64 rng(seed);
    const double h = 1.0 / std::sqrt(double(c.hidden));
    for (parameter* p : {&tok, &pos, &wq, &wk, &wv, &router, &w13, &shared_w13, &head}) p->init_normal(rng, h);
    wo.init_normal(rng, 0.5 * h);  // two residual branches
    w2.init_normal(rng, 0.5 / std::sqrt(double(c.intermediate)));
    if (c.shared_intermediate > 0) shared_w2.init_normal(rng, 0.5 / std::sqrt(double(c.shared_intermediate)));
  }

  std::vector<parameter*> parameters() {
    return {&tok, &pos, &wq, &wk, &wv, &wo, &router, &mask, &w13, &w2, &shared_w13, &shared_w2, &head, &head_bias};
  }
  moe_parameters moe() { return {router, mask, w13, w2, cfg.hidden, cfg.experts, cfg.intermediate}; }
};

namespace detail {

//! out[r] = W · in[r] for `rows` rows: W `[n_out, n_in]`.
inline void linear(const float* w, const float* in, int rows, int n_in, int n_out, float* out) {
  for (int r = 0; r < rows; ++r) {
    for (int o = 0; o < n_out; ++o) {
      float acc = 0.0f;
      for (int i = 0; i < n_in; ++i) acc += w[size_t(o) * n_in + i] * in[size_t(r) * n_in + i];
      out[size_t(r) * n_out + o] = acc;
    }
  }
}

//! The backward of linear: gw += Σ_r dout[r] ⊗ in[r], din[r] += Wᵀ · dout[r].
inline void linear_backward(const float* w, const float* in, const float* dout, int rows, int n_in, int n_out,
                            float* gw, float* din) {
  for (int r = 0; r < rows; ++r) {
    for (int o = 0; o < n_out; ++o) {
      const float d = dout[size_t(r) * n_out + o];
      if (d == 0.0f) continue;
      for (int i = 0; i < n_in; ++i) {
        gw[size_t(o) * n_in + i] += d * in[size_t(r) * n_in + i];
        din[size_t(r) * n_in + i] += d * w[size_t(o) * n_in + i];
      }
    }
  }
}

}  // namespace detail

//! Forward (and, when `train`, backward into the gradients) of one batch of sequences:
//! sequence s reads text[starts[s] + i] for i < L and predicts text[starts[s] + i + 1] (each
//! start + L < text size). Statistics count every predicted position; with the two vectors,
//! also the experts kept and the positions seen by input character.
inline batch_stats run_sequences(model& m, const std::vector<uint8_t>& text,
                                 const std::vector<int64_t>& starts, const routing_setup& rs, bool train,
                                 std::vector<int64_t>* kept_by_char = nullptr,
                                 std::vector<int64_t>* seen_by_char = nullptr) {
  const config& c = m.cfg;
  const int S = int(starts.size()), L = c.context, H = c.hidden, V = c.vocab, R = S * L;
  const int heads = c.heads, d = H / heads, Is = c.shared_intermediate;
  const float scale = float(1.0 / std::sqrt(double(d)));
  batch_stats st;
  st.positions = R;
  const auto token = [&](int r) { return text[starts[r / L] + r % L]; };
  const auto target = [&](int r) { return text[starts[r / L] + r % L + 1]; };

  // Embeddings, attention.
  std::vector<float> x0(size_t(R) * H), a(size_t(R) * H), inv_a(R);
  for (int r = 0; r < R; ++r) {
    for (int h = 0; h < H; ++h) x0[r * H + h] = m.tok.w[size_t(token(r)) * H + h] + m.pos.w[size_t(r % L) * H + h];
    inv_a[r] = detail::rmsnorm(&x0[r * H], H, &a[r * H]);
  }
  std::vector<float> q(size_t(R) * H), k(size_t(R) * H), v(size_t(R) * H), o(size_t(R) * H, 0.0f);
  detail::linear(m.wq.w.data(), a.data(), R, H, H, q.data());
  detail::linear(m.wk.w.data(), a.data(), R, H, H, k.data());
  detail::linear(m.wv.w.data(), a.data(), R, H, H, v.data());
  std::vector<float> probs(size_t(S) * heads * L * L, 0.0f);  // [s][head][i][j], j ≤ i
  for (int s = 0; s < S; ++s) {
    for (int hd = 0; hd < heads; ++hd) {
      for (int i = 0; i < L; ++i) {
        float* p = &probs[((size_t(s) * heads + hd) * L + i) * L];
        const float* qi = &q[(size_t(s) * L + i) * H + hd * d];
        double max_score = -1e30;
        for (int j = 0; j <= i; ++j) {
          const float* kj = &k[(size_t(s) * L + j) * H + hd * d];
          float dot = 0.0f;
          for (int e = 0; e < d; ++e) dot += qi[e] * kj[e];
          p[j] = dot * scale;
          max_score = std::max(max_score, double(p[j]));
        }
        double sum = 0.0;
        for (int j = 0; j <= i; ++j) sum += std::exp(p[j] - max_score);
        float* oi = &o[(size_t(s) * L + i) * H + hd * d];
        for (int j = 0; j <= i; ++j) {
          p[j] = float(std::exp(p[j] - max_score) / sum);
          const float* vj = &v[(size_t(s) * L + j) * H + hd * d];
          for (int e = 0; e < d; ++e) oi[e] += p[j] * vj[e];
        }
      }
    }
  }
  std::vector<float> x1(size_t(R) * H);
  detail::linear(m.wo.w.data(), o.data(), R, H, H, x1.data());
  for (size_t i = 0; i < x1.size(); ++i) x1[i] += x0[i];

  // The MoE layer and the shared expert.
  std::vector<float> u(size_t(R) * H), inv_u(R), y(size_t(R) * H, 0.0f);
  for (int r = 0; r < R; ++r) inv_u[r] = detail::rmsnorm(&x1[r * H], H, &u[r * H]);
  moe_pass pass;
  moe_forward(m.moe(), u.data(), R, rs, train, pass, y.data());
  st.active_pairs = pass.active_pairs;
  st.positions_without_experts = pass.rows_without_experts;
  st.l_bal = pass.l_bal;
  st.l_reg = pass.l_reg;
  for (int r = 0; kept_by_char && r < R; ++r) {  // experts kept, by the position's own character
    for (int k = 0; k < rs.top_k; ++k) (*kept_by_char)[token(r)] += pass.weight[size_t(r) * rs.top_k + k] != 0.0f;
    ++(*seen_by_char)[token(r)];
  }
  std::vector<float> shared_pre(size_t(R) * 2 * Is), shared_act(size_t(R) * Is), shared_out(H);
  for (int r = 0; Is > 0 && r < R; ++r) {
    detail::swiglu_forward(m.shared_w13.w.data(), m.shared_w2.w.data(), &u[r * H], H, Is, &shared_pre[r * 2 * Is],
                           &shared_act[r * Is], shared_out.data());
    for (int h = 0; h < H; ++h) y[r * H + h] += shared_out[h];
  }

  // Residual, final norm, LM head, cross-entropy (mean over the positions).
  std::vector<float> x2(size_t(R) * H), w(size_t(R) * H), inv_w(R), dlogits(size_t(R) * V);
  for (int r = 0; r < R; ++r) {
    for (int h = 0; h < H; ++h) x2[r * H + h] = x1[r * H + h] + y[r * H + h];
    inv_w[r] = detail::rmsnorm(&x2[r * H], H, &w[r * H]);
    double max_logit = -1e30;
    for (int out = 0; out < V; ++out) {
      double acc = m.head_bias.w[out];
      for (int h = 0; h < H; ++h) acc += double(m.head.w[size_t(out) * H + h]) * w[r * H + h];
      dlogits[size_t(r) * V + out] = float(acc);
      max_logit = std::max(max_logit, acc);
    }
    const int t = target(r);
    int argmax = 0;
    double sum = 0.0;
    for (int out = 0; out < V; ++out) {
      if (dlogits[size_t(r) * V + out] > dlogits[size_t(r) * V + argmax]) argmax = out;
      sum += std::exp(dlogits[size_t(r) * V + out] - max_logit);
    }
    st.lm_loss += std::log(sum) + max_logit - dlogits[size_t(r) * V + t];
    st.correct += argmax == t;
    for (int out = 0; out < V; ++out) {  // ∂CE/∂logit = softmax − onehot, averaged over the positions
      dlogits[size_t(r) * V + out] = float((std::exp(dlogits[size_t(r) * V + out] - max_logit) / sum - (out == t)) / R);
    }
  }
  if (!train) return st;

  // ---- backward ----
  std::vector<float> dw(size_t(R) * H, 0.0f), dx2(size_t(R) * H, 0.0f);
  for (int r = 0; r < R; ++r) {
    for (int out = 0; out < V; ++out) {
      const float g = dlogits[size_t(r) * V + out];
      m.head_bias.g[out] += g;
      for (int h = 0; h < H; ++h) {
        m.head.g[size_t(out) * H + h] += g * w[r * H + h];
        dw[r * H + h] += g * m.head.w[size_t(out) * H + h];
      }
    }
    detail::rmsnorm_backward(&w[r * H], &dw[r * H], inv_w[r], H, &dx2[r * H]);
  }
  // dy = dx2; dx1 = dx2 + the MoE layer's and the shared expert's ∂/∂u through the norm.
  std::vector<float> du(size_t(R) * H, 0.0f);
  moe_backward(m.moe(), pass, dx2.data(), du.data());
  for (int r = 0; Is > 0 && r < R; ++r) {
    detail::swiglu_backward(m.shared_w13.w.data(), m.shared_w2.w.data(), m.shared_w13.g.data(), m.shared_w2.g.data(),
                            &u[r * H], &shared_pre[r * 2 * Is], &shared_act[r * Is], &dx2[r * H], 1.0f, H, Is,
                            &du[r * H]);
  }
  std::vector<float> dx1 = dx2;
  for (int r = 0; r < R; ++r) detail::rmsnorm_backward(&u[r * H], &du[r * H], inv_u[r], H, &dx1[r * H]);

  // Attention: x1 = x0 + o·W_oᵀ.
  std::vector<float> dout(size_t(R) * H, 0.0f);
  detail::linear_backward(m.wo.w.data(), o.data(), dx1.data(), R, H, H, m.wo.g.data(), dout.data());
  std::vector<float> dq(size_t(R) * H, 0.0f), dk(size_t(R) * H, 0.0f), dv(size_t(R) * H, 0.0f), dp(L);
  for (int s = 0; s < S; ++s) {
    for (int hd = 0; hd < heads; ++hd) {
      for (int i = 0; i < L; ++i) {
        const float* p = &probs[((size_t(s) * heads + hd) * L + i) * L];
        const float* doi = &dout[(size_t(s) * L + i) * H + hd * d];
        double weighted = 0.0;  // Σ_j p_j dp_j
        for (int j = 0; j <= i; ++j) {
          const size_t rj = (size_t(s) * L + j) * H + hd * d;
          float dot = 0.0f;
          for (int e = 0; e < d; ++e) {
            dot += doi[e] * v[rj + e];
            dv[rj + e] += p[j] * doi[e];
          }
          dp[j] = dot;
          weighted += double(p[j]) * dot;
        }
        const size_t ri = (size_t(s) * L + i) * H + hd * d;
        for (int j = 0; j <= i; ++j) {  // softmax backward, then the scores q_i·k_j / √d
          const float ds = float(p[j] * (dp[j] - weighted)) * scale;
          const size_t rj = (size_t(s) * L + j) * H + hd * d;
          for (int e = 0; e < d; ++e) {
            dq[ri + e] += ds * k[rj + e];
            dk[rj + e] += ds * q[ri + e];
          }
        }
      }
    }
  }
  std::vector<float> da(size_t(R) * H, 0.0f);
  detail::linear_backward(m.wq.w.data(), a.data(), dq.data(), R, H, H, m.wq.g.data(), da.data());
  detail::linear_backward(m.wk.w.data(), a.data(), dk.data(), R, H, H, m.wk.g.data(), da.data());
  detail::linear_backward(m.wv.w.data(), a.data(), dv.data(), R, H, H, m.wv.g.data(), da.data());
  std::vector<float> dx0 = dx1;
  for (int r = 0; r < R; ++r) {
    detail::rmsnorm_backward(&a[r * H], &da[r * H], inv_a[r], H, &dx0[r * H]);
    for (int h = 0; h < H; ++h) {
      m.tok.g[size_t(token(r)) * H + h] += dx0[r * H + h];
      m.pos.g[size_t(r % L) * H + h] += dx0[r * H + h];
    }
  }
  return st;
}

}  // namespace train
