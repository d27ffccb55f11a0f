//! @file
//! Host reference of a BEAM MoE layer forward.
//!
//!   logits  [r | z] = X · [W_r | W_m]ᵀ                  (one `[T, 2E]` product)
//!   routing topk_ids, ĝ = route_and_mask(r, z)          (routing.cuh)
//!   expert  E_e(x) = W2_e · (silu(W1_e x) ⊙ (W3_e x))   (SwiGLU)
//!   output  y_t = S(x_t) + Σ_k ĝ_tk · E_{id_tk}(x_t)     (S: optional shared expert,
//!           S(x) = σ(x·w_g) · SwiGLU_s(x) with Qwen2-MoE's shared expert gate w_g)
//! computed as the device computes it: compact → gather → experts per row → combine.
//! routing_rule::top_k is plain (dense) Top-K; the other rules keep a subset of the candidates.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "beam/core/math.cuh"
#include "beam/reference/matrix.cuh"
#include "beam/reference/permute.cuh"
#include "beam/reference/routing.cuh"

namespace beam::reference {

//! Expert weights in the layout vLLM and Hugging Face use, row-major. Sizes as everywhere in
//! beam (and as in device::moe_layer): model dimensions (H, I, I_s, E, K) are int, extents
//! that grow with the tokens (T, rows, strides) int64_t.
template <class Real>
struct moe_weights {
  int hidden = 0;                   //!< H
  int intermediate = 0;             //!< I
  int experts = 0;                  //!< E
  const Real* w13 = nullptr;        //!< `[E, 2I, H]`: rows [0, I) are W1 (gate), rows [I, 2I) W3 (up)
  const Real* w2 = nullptr;         //!< `[E, H, I]`
  int shared_intermediate = 0;      //!< I_s of the shared expert; 0 = none
  const Real* shared_w13 = nullptr; //!< `[2 I_s, H]`
  const Real* shared_w2 = nullptr;  //!< `[H, I_s]`
  const Real* shared_gate = nullptr; //!< optional w_g `[H]`: S scaled by σ(x·w_g) (Qwen2-MoE)
};

//! y = W2 · (silu(W1 x) ⊙ (W3 x)) for one row x `[H]`, with `w13` `[2I, H]` (W1 on top of
//! W3) and `w2` `[H, I]`; accumulated in double, written to y `[H]`.
template <class Real>
void swiglu_mlp(const Real* x, const Real* w13, const Real* w2, int64_t hidden,
                int64_t intermediate, Real* y) {
  std::vector<double> act(static_cast<size_t>(intermediate));
  for (int64_t i = 0; i < intermediate; ++i) {
    double gate = 0.0, up = 0.0;
    for (int64_t h = 0; h < hidden; ++h) {
      gate += double(w13[i * hidden + h]) * double(x[h]);
      up += double(w13[(intermediate + i) * hidden + h]) * double(x[h]);
    }
    act[i] = silu(gate) * up;
  }
  for (int64_t h = 0; h < hidden; ++h) {
    double acc = 0.0;
    for (int64_t i = 0; i < intermediate; ++i) acc += double(w2[h * intermediate + i]) * act[i];
    y[h] = Real(acc);
  }
}

//! FLOPs of one (token, expert) pair of a SwiGLU expert: 2·H·2I + 2·I·H = 6·H·I.
inline double expert_pair_flops(int64_t hidden, int64_t intermediate) {
  return 6.0 * double(hidden) * double(intermediate);
}

//! Throws `std::invalid_argument` unless the weights describe a usable layer.
template <class Real>
void check_weights(const moe_weights<Real>& w) {
  if (w.hidden < 1 || w.intermediate < 1 || w.experts < 1 || !w.w13 || !w.w2 ||
      w.shared_intermediate < 0 ||
      (w.shared_intermediate > 0 && (!w.shared_w13 || !w.shared_w2)) ||
      (w.shared_gate && w.shared_intermediate == 0)) {
    throw std::invalid_argument("moe: bad shapes or null weights");
  }
}

//! The routed experts and the combine for a given routing (engines that route themselves):
//! y_t = S(x_t) + Σ_k ĝ_tk · E_{id_tk}(x_t), with id −1 = masked. Output `[T, H]`.
template <class Real>
std::vector<Real> moe_experts_forward(const Real* x, int64_t tokens, const moe_weights<Real>& w,
                                      const int32_t* topk_ids, const Real* topk_weights,
                                      int top_k) {
  check_weights(w);
  const int64_t H = w.hidden, I = w.intermediate;
  const compaction perm = compact(topk_ids, tokens, top_k, w.experts);
  if (perm.invalid_ids != 0) throw std::invalid_argument("moe_experts_forward: expert id out of range");
  const std::vector<Real> xp = gather_rows(x, H, perm);
  std::vector<Real> yp(static_cast<size_t>(perm.n_active * H));
  for (int32_t e = 0; e < w.experts; ++e) {
    for (int32_t r = perm.offsets[e]; r < perm.offsets[e + 1]; ++r) {
      swiglu_mlp(&xp[r * H], w.w13 + e * 2 * I * H, w.w2 + e * H * I, H, I, &yp[r * H]);
    }
  }
  std::vector<Real> shared;
  if (w.shared_intermediate > 0) {
    shared.resize(static_cast<size_t>(tokens * H));
    for (int64_t t = 0; t < tokens; ++t) {
      swiglu_mlp(x + t * H, w.shared_w13, w.shared_w2, H, w.shared_intermediate, &shared[t * H]);
      if (!w.shared_gate) continue;
      double logit = 0.0;
      for (int64_t h = 0; h < H; ++h) logit += double(x[t * H + h]) * double(w.shared_gate[h]);
      const double gate = sigmoid(logit);
      for (int64_t h = 0; h < H; ++h) shared[t * H + h] = Real(gate * double(shared[t * H + h]));
    }
  }
  return combine(yp.data(), H, perm, topk_weights, shared.empty() ? nullptr : shared.data());
}

//! Layer output and the routing that produced it.
template <class Real>
struct moe_forward_result {
  std::vector<Real> out;          //!< y `[T, H]`
  std::vector<Real> logits;       //!< [r | z] `[T, 2E]` (`[T, E]` unless the rule is the mask)
  routing_result<Real> routing;
};

//! The whole layer forward from hidden states X `[T, H]` (formulas in the file comment).
//!
//! @param router_weights  W_r `[E, H]`
//! @param mask_weights    W_m `[E, H]`; unused (may be null) when `uses_mask(options)` is false
template <class Real>
moe_forward_result<Real> moe_forward(const Real* x, int64_t tokens, const moe_weights<Real>& w,
                                     const Real* router_weights, const non_deduced<Real>* mask_weights,
                                     const routing_options& options) {
  check_weights(w);
  if (!router_weights || (uses_mask(options) && !mask_weights) || (tokens > 0 && !x)) {
    throw std::invalid_argument("moe_forward: null input or router weights");
  }
  const int64_t E = w.experts, H = w.hidden;
  const int64_t logit_cols = uses_mask(options) ? 2 * E : E;
  std::vector<Real> stacked(router_weights, router_weights + E * H);  // [W_r | W_m]ᵀ
  if (uses_mask(options)) stacked.insert(stacked.end(), mask_weights, mask_weights + E * H);

  moe_forward_result<Real> result;
  result.logits = matmul_nt(x, stacked.data(), tokens, H, logit_cols);
  const matrix_view<Real> r{result.logits.data(), tokens, E, logit_cols};
  const matrix_view<Real> z = uses_mask(options)
                                  ? matrix_view<Real>{result.logits.data() + E, tokens, E, logit_cols}
                                  : matrix_view<Real>{};
  result.routing = route_and_mask(r, z, options);
  result.out = moe_experts_forward(x, tokens, w, result.routing.topk_ids.data(),
                                   result.routing.topk_weights.data(), options.top_k);
  return result;
}

}  // namespace beam::reference
