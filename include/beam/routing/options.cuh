//! @file
//! Routing options, shared by the device primitives and the host reference.
#pragma once

#include <cstdint>

namespace beam {

//! How router logits become expert scores.
enum class score_function {
  softmax,  //!< s = softmax(r) over all E experts (Mixtral, Qwen, DeepSeek-V2)
  sigmoid,  //!< s_e = σ(r_e) (DeepSeek-V3, usually with a selection bias and renormalize)
};

//! Routing options; the defaults are plain softmax Top-K with the BEAM mask on.
//! (Formulas: beam/reference/routing.cuh.)
struct routing_options {
  int top_k = 1;                                  //!< K, 1 ≤ K ≤ E
  score_function scoring = score_function::softmax;
  bool renormalize = false;                       //!< divide g by Σ of the K candidate scores
  float routed_scaling_factor = 1.0f;             //!< λ
  const float* selection_bias = nullptr;          //!< b[E] added to the selection key only
                                                  //!< (device memory for device functions)
  bool mask_enabled = true;                       //!< false: plain Top-K, m = m̂ = 1
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
