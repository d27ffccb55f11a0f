//! @file
//! Routing options, shared by the device primitives and the host reference.
#pragma once

#include <cstdint>

#include "beam/core/macros.cuh"

namespace beam {

//! How router logits become expert scores.
enum class score_function {
  softmax,  //!< s = softmax(r) over all E experts (Mixtral, Qwen, DeepSeek-V2)
  sigmoid,  //!< s_e = σ(r_e) (DeepSeek-V3, usually with a selection bias and renormalize)
};

//! Which of a token's K candidates it keeps (m̂_k = 1: the pair gets GEMM rows and ĝ_k = g_k;
//! m̂_k = 0: no rows, ĝ_k = 0). q_k = s_{c_k} / S is slot k's probability (S: the candidates'
//! score sum when renormalising, else 1; so g_k = λ q_k); slots are in candidate order, best
//! key first.
enum class routing_rule {
  top_k,      //!< m̂_k = 1: every candidate (plain Top-K)
  mask,       //!< BEAM: m̂_k = 1[z_{c_k} ≥ 0], z the mask router's logits
  top_p,      //!< m̂_k = 1[Σ_{j<k} q_j < p]: the shortest prefix whose mass reaches p (top-p routing,
              //!< Huang et al. 2024); keeps slot 0 (p > 0)
  threshold,  //!< m̂_k = 1[q_k ≥ τ]; may keep none
};

//! Routing options; the defaults are plain softmax Top-K with the BEAM mask.
//! (Formulas: beam/reference/routing.cuh.)
struct routing_options {
  int top_k = 1;                                  //!< K, 1 ≤ K ≤ E
  score_function scoring = score_function::softmax;
  bool renormalize = false;                       //!< divide g by Σ of the K candidate scores
  float routed_scaling_factor = 1.0f;             //!< λ
  const float* selection_bias = nullptr;          //!< b[E] added to the selection key only
                                                  //!< (device memory for device functions)
  routing_rule rule = routing_rule::mask;         //!< which candidates are kept (one code path for all)
  float top_p = 1.0f;                             //!< p of routing_rule::top_p, > 0
  float threshold = 0.0f;                         //!< τ of routing_rule::threshold, not NaN
  int max_active = 0;                             //!< k_max ∈ [1, K]: a token keeps at most the first
                                                  //!< k_max slots that its rule keeps; 0 = no cap
  int num_groups = 1;                             //!< G: experts in G contiguous groups of E / G
                                                  //!< (DeepSeek-V3: 8); 1 = no groups
  int top_groups = 1;                             //!< candidates only from the `top_groups` groups
                                                  //!< with the largest sum of their two largest keys
                                                  //!< (DeepSeek-V3's topk_group: 4); ignored when
                                                  //!< G = 1, no limit when = G
  const int32_t* valid_tokens = nullptr;          //!< optional n (device memory for device functions):
                                                  //!< tokens t ≥ n, the padding of a batch padded to a
                                                  //!< captured size, get empty slots (ids and candidates
                                                  //!< −1, weights and mask probabilities 0), so that no
                                                  //!< expert runs for them; n is clamped to [0, T]
};

//! Whether the BEAM mask router is used (its logits z are read; m = σ(z)).
BEAM_HOST_DEVICE inline bool uses_mask(const routing_options& options) { return options.rule == routing_rule::mask; }

//! Whether the rule options are well formed: a known rule, p > 0, τ not NaN, k_max ∈ [0, K].
inline bool valid_rule(const routing_options& options) {
  switch (options.rule) {
    case routing_rule::top_k:
    case routing_rule::mask:
      break;
    case routing_rule::top_p:
      if (!(options.top_p > 0.0f)) return false;
      break;
    case routing_rule::threshold:
      if (options.threshold != options.threshold) return false;
      break;
    default:
      return false;
  }
  return options.max_active >= 0 && options.max_active <= options.top_k;
}

//! Largest G (`routing_options::num_groups`).
inline constexpr int max_route_groups = 32;

//! Whether the group options fit E experts: 1 ≤ G ≤ 32 dividing E, 1 ≤ top_groups ≤ G (any
//! value when G = 1), and K ≤ top_groups · E / G (enough experts in the chosen groups).
inline bool valid_groups(const routing_options& options, int64_t num_experts) {
  const int groups = options.num_groups;
  if (groups == 1) return true;
  if (groups < 1 || groups > max_route_groups || num_experts % groups != 0) return false;
  if (options.top_groups < 1 || options.top_groups > groups) return false;
  return options.top_k <= int64_t(options.top_groups) * (num_experts / groups);
}

}  // namespace beam
