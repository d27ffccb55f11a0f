//! @file
//! Host reference of a BEAM MoE layer forward.
//!
//!   logits  [r | z] = X · [W_r | W_m]ᵀ                  (one `[T, 2E]` product)
//!   routing topk_ids, ĝ = route_and_mask(r, z)          (routing.cuh)
//!   expert  E_e(x) = W2_e · (silu(W1_e x) ⊙ (W3_e x))   (SwiGLU)
//!   output  y_t = S(x_t) + Σ_k ĝ_tk · E_{id_tk}(x_t)     (S: optional shared expert,
//!           S(x) = σ(x·w_g) · SwiGLU_s(x) with Qwen2-MoE's shared expert gate w_g)
//! Zero-computation experts (MoE++, LongCat-Flash) take the ids [E, E + Z) after the E FFN
//! experts, Z = zero + identity + constant, in that order; expert i = id − E is
//!   zero      E_id(x) = 0
//!   identity  E_id(x) = x
//!   constant  E_id(x) = α₁ x + α₂ v_j, [α₁, α₂] = softmax(W_c[2j] · x, W_c[2j+1] · x),
//!             j = i − zero − identity
//! and gets no row: its term joins the sum directly.
//! computed as the device computes it: compact → gather → experts per row → combine.
//! routing_rule::top_k is plain (dense) Top-K; the other rules keep a subset of the candidates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "beam/core/dtype.cuh"
#include "beam/core/math.cuh"
#include "beam/gemm/weights.cuh"
#include "beam/reference/gemm.cuh"
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
  //! Zero-computation experts, ids [E, E + Z) after the FFN experts' (file comment); the
  //! router then has E + Z rows.
  int zero_experts = 0;
  int identity_experts = 0;
  int constant_experts = 0;                //!< C
  const Real* constant_gate = nullptr;     //!< W_c `[2C, H]`
  const Real* constant_vectors = nullptr;  //!< v `[C, H]`
  //! W8A8 (activation_format::e4m3_1x128): every expert's input x and SwiGLU output, routed
  //! and shared, are rounded to their e4m3 values in 1 × 128 groups (round_to_e4m3_groups)
  //! before they are multiplied; the SwiGLU output first as `store_activation` says (the device
  //! stores it in the activations' type before it quantises it; null: kept exact).
  bool e4m3_activations = false;
  double (*store_activation)(double) = nullptr;

  //! Z.
  [[nodiscard]] int zero_compute() const { return zero_experts + identity_experts + constant_experts; }
};

//! A row of values (rounded to float) replaced by what their e4m3 codes mean, 1 × 128 groups:
//! quantize_activations, then dequantize_activations.
inline void round_to_e4m3_groups(std::vector<double>& v) {
  if (v.empty()) return;
  const std::vector<float> row(v.begin(), v.end());
  const int64_t k = int64_t(row.size());
  v = dequantize_activations(quantize_activations(row.data(), k, 1, k), 1, k);
}

//! y = W2 · (silu(W1 x) ⊙ (W3 x)) for one row x `[H]`, with `w13` `[2I, H]` (W1 on top of
//! W3) and `w2` `[H, I]`; accumulated in double, written to y `[H]`. With `e4m3_activations`,
//! x and the SwiGLU output (stored by `store_activation` first, where given) are rounded by
//! round_to_e4m3_groups (W8A8).
template <class Real>
void swiglu_mlp(const Real* x_row, const Real* w13, const Real* w2, int64_t hidden, int64_t intermediate, Real* y,
                bool e4m3_activations = false, double (*store_activation)(double) = nullptr) {
  std::vector<double> x(x_row, x_row + hidden), act(static_cast<size_t>(intermediate));
  if (e4m3_activations) round_to_e4m3_groups(x);
  for (int64_t i = 0; i < intermediate; ++i) {
    double gate = 0.0, up = 0.0;
    for (int64_t h = 0; h < hidden; ++h) {
      gate += double(w13[i * hidden + h]) * x[h];
      up += double(w13[(intermediate + i) * hidden + h]) * x[h];
    }
    act[i] = silu(gate) * up;
  }
  if (e4m3_activations) {
    if (store_activation) {
      for (double& a : act) a = store_activation(a);
    }
    round_to_e4m3_groups(act);
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
  if (w.zero_experts < 0 || w.identity_experts < 0 || w.constant_experts < 0 ||
      (w.constant_experts > 0 && (!w.constant_gate || !w.constant_vectors))) {
    throw std::invalid_argument("moe: bad zero-computation experts");
  }
}

//! acc[H] += ĝ · E_id(x) of a zero-computation expert, id ∈ [E, E + Z) (file comment), in double.
template <class Real>
void add_zero_compute_term(const Real* x, const moe_weights<Real>& w, int32_t id, double weight, double* acc) {
  const int64_t H = w.hidden;
  const int i = id - w.experts, j = i - w.zero_experts - w.identity_experts;
  if (i < w.zero_experts) return;
  double on_x = weight, on_v = 0.0;
  if (j >= 0) {
    double logit[2] = {0.0, 0.0};
    for (int c = 0; c < 2; ++c) {
      for (int64_t h = 0; h < H; ++h) logit[c] += double(w.constant_gate[(2 * j + c) * H + h]) * double(x[h]);
    }
    on_x = weight * sigmoid(logit[0] - logit[1]);
    on_v = weight * sigmoid(logit[1] - logit[0]);
  }
  for (int64_t h = 0; h < H; ++h) {
    acc[h] += on_x * double(x[h]) + (j >= 0 ? on_v * double(w.constant_vectors[j * H + h]) : 0.0);
  }
}

//! The routed experts and the combine for a given routing (engines that route themselves):
//! y_t = S(x_t) + Σ_k ĝ_tk · E_{id_tk}(x_t), with id −1 = masked and ids in [E, E + Z) the
//! zero-computation experts (file comment). Output `[T, H]`.
template <class Real>
std::vector<Real> moe_experts_forward(const Real* x, int64_t tokens, const moe_weights<Real>& w,
                                      const int32_t* topk_ids, const Real* topk_weights,
                                      int top_k) {
  check_weights(w);
  const int64_t H = w.hidden, I = w.intermediate;
  // Rows for the FFN experts [0, E) only: a zero-computation id is in range but gets none.
  const compaction perm = compact(topk_ids, tokens, top_k, w.experts + w.zero_compute(), 0, w.experts);
  if (perm.invalid_ids != 0) throw std::invalid_argument("moe_experts_forward: expert id out of range");
  const std::vector<Real> xp = gather_rows(x, H, perm);
  std::vector<Real> yp(static_cast<size_t>(perm.n_active * H));
  for (int32_t e = 0; e < w.experts; ++e) {
    for (int32_t r = perm.offsets[e]; r < perm.offsets[e + 1]; ++r) {
      swiglu_mlp(&xp[r * H], w.w13 + e * 2 * I * H, w.w2 + e * H * I, H, I, &yp[r * H], w.e4m3_activations,
                 w.store_activation);
    }
  }
  // The addend of each token: S(x_t) plus its zero-computation terms, in double.
  std::vector<Real> addend;
  if (w.shared_intermediate > 0 || w.zero_compute() > 0) {
    addend.assign(static_cast<size_t>(tokens * H), Real(0));
    std::vector<Real> s(static_cast<size_t>(H));
    std::vector<double> acc(static_cast<size_t>(H));
    for (int64_t t = 0; t < tokens; ++t) {
      std::fill(acc.begin(), acc.end(), 0.0);
      if (w.shared_intermediate > 0) {
        swiglu_mlp(x + t * H, w.shared_w13, w.shared_w2, H, w.shared_intermediate, s.data(), w.e4m3_activations,
                   w.store_activation);
        double logit = 0.0;
        for (int64_t h = 0; h < H && w.shared_gate; ++h) logit += double(x[t * H + h]) * double(w.shared_gate[h]);
        const double gate = w.shared_gate ? sigmoid(logit) : 1.0;
        for (int64_t h = 0; h < H; ++h) acc[h] = gate * double(s[h]);
      }
      for (int k = 0; k < top_k; ++k) {
        const int32_t id = topk_ids[t * top_k + k];
        if (id >= w.experts) add_zero_compute_term(x + t * H, w, id, double(topk_weights[t * top_k + k]), acc.data());
      }
      for (int64_t h = 0; h < H; ++h) addend[t * H + h] = Real(acc[h]);
    }
  }
  return combine(yp.data(), H, perm, topk_weights, addend.empty() ? nullptr : addend.data());
}

//! Layer output and the routing that produced it.
template <class Real>
struct moe_forward_result {
  std::vector<Real> out;          //!< y `[T, H]`
  std::vector<Real> logits;       //!< [r | z] `[T, 2(E + Z)]` (`[T, E + Z]` unless the rule is the mask)
  routing_result<Real> routing;
};

//! The whole layer forward from hidden states X `[T, H]` (formulas in the file comment).
//!
//! @param router_weights  W_r `[E + Z, H]`
//! @param mask_weights    W_m `[E + Z, H]`; unused (may be null) when `uses_mask(options)` is false
template <class Real>
moe_forward_result<Real> moe_forward(const Real* x, int64_t tokens, const moe_weights<Real>& w,
                                     const Real* router_weights, const non_deduced<Real>* mask_weights,
                                     const routing_options& options) {
  check_weights(w);
  if (!router_weights || (uses_mask(options) && !mask_weights) || (tokens > 0 && !x)) {
    throw std::invalid_argument("moe_forward: null input or router weights");
  }
  const int64_t E = w.experts + w.zero_compute(), H = w.hidden;  // the router's experts
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
