//! @file
//! Host reference of routing: Top-K candidates, their gate weights, and the routing rule that
//! keeps some of them (the BEAM mask, top-p, a threshold, a per-token cap).
//!
//! For one token with router logits r (E values) and mask logits z (E values):
//!   scores      s = softmax(r)  or  s = σ(r)                  (score_function)
//!   candidates  c = the K largest keys, key_e = r_e + b_e (softmax) or s_e + b_e (sigmoid),
//!               b = optional selection bias; ties → lower expert index; NaN never selected;
//!               with G groups (DeepSeek-V3's group-limited Top-K), only from the top_groups
//!               groups of E/G contiguous experts whose two largest keys sum highest (in float;
//!               a group's score is its one key if it has one non-NaN key, −∞ with none; ties
//!               and NaN sums → lower group index first, NaN last)
//!   gate        g_i = λ · s_{c_i} / (renormalize ? Σ_j s_{c_j} : 1)   (λ: routed scaling)
//!   rule        m̂_i by routing_options::rule, with q_i = s_{c_i} / S (g_i = λ q_i), in float:
//!                 mask (BEAM)  m̂_i = 1[z_{c_i} ≥ 0],  m_i = σ(z_{c_i})
//!                 top_k        m̂_i = 1
//!                 top_p        m̂_i = 1[Σ_{j<i} q_j < p]   (the sum slot by slot in float)
//!                 threshold    m̂_i = 1[q_i ≥ τ]
//!               (m_i = 1 for the rules other than the mask); with a cap k_max, only the first
//!               k_max slots the rule keeps stay kept
//!   final       ĝ_i = g_i · m̂_i   (no renormalisation after the rule)
//!   ids         topk_id_i = m̂_i ? c_i : −1
//! With a count of valid tokens n (routing_options::valid_tokens, host memory here), tokens
//! t ≥ n are padding: every slot empty (c = topk_id = −1, g = ĝ = m = 0).
//!
//! Keys are computed in the logits' type (`float` for float logits: σ in float, the bias added
//! in float), as a device kernel computes them, so ids compare exactly except where two keys
//! differ only by the rounding of σ, or where a top-p mass or a threshold probability q lies
//! within the rounding of the device's float softmax from p or τ. Saturated keys tie: in float
//! σ(r) = 1 for r ≳ 17, and ties go to the lower index. A NaN mask logit masks its expert (m̂ = 0) and gives m = NaN,
//! which propagates into L_reg: bad inputs show in the loss rather than being hidden.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "beam/core/math.cuh"
#include "beam/routing/options.cuh"
#include "beam/reference/matrix.cuh"

namespace beam::reference {

using beam::routing_options;
using beam::routing_rule;
using beam::score_function;

//! Routing of T tokens; every `[T, K]` array is row-major, slot k = 0 is the best candidate.
//! A slot with no candidate (fewer than K non-NaN keys) has id −1 and zero g, m, ĝ.
template <class Real>
struct routing_result {
  int64_t tokens = 0;
  int64_t experts = 0;
  int top_k = 0;
  routing_options options;             //!< the options of the forward (the backward uses them)
  std::vector<int32_t> candidate_ids;  //!< c, `[T, K]`
  std::vector<Real> gate_weights;      //!< g, `[T, K]`
  std::vector<Real> mask_probs;        //!< m = σ(z_c), `[T, K]` (1 unless the rule is the mask)
  std::vector<int32_t> topk_ids;       //!< c where m̂ = 1, else −1, `[T, K]`
  std::vector<Real> topk_weights;      //!< ĝ = g · m̂, `[T, K]`
  std::vector<int32_t> active_count;   //!< Σ_k m̂ per token, `[T]`

  //! Number of (token, expert) pairs the mask keeps.
  [[nodiscard]] int64_t active_pairs() const {
    return std::accumulate(active_count.begin(), active_count.end(), int64_t{0});
  }
  //! Avg.K: active pairs per token (0 when T = 0).
  [[nodiscard]] double avg_k() const { return tokens ? double(active_pairs()) / double(tokens) : 0.0; }
};

//! Expert scores of one token, s = softmax(r) or σ(r), accumulated in double.
//!
//! Softmax conventions for non-finite logits: NaN logits get probability 0; if any logit
//! is +∞ the +∞ logits share probability 1 equally; if every non-NaN logit is −∞ they share
//! it equally; if every logit is NaN all scores are 0.
template <class Real>
std::vector<double> expert_scores(const Real* logits, int64_t experts, score_function scoring) {
  std::vector<double> s(static_cast<size_t>(experts), 0.0);
  if (scoring == score_function::sigmoid) {
    for (int64_t e = 0; e < experts; ++e) s[e] = sigmoid(double(logits[e]));
    return s;
  }
  double max_logit = -std::numeric_limits<double>::infinity();
  bool any = false;
  for (int64_t e = 0; e < experts; ++e) {
    if (std::isnan(double(logits[e]))) continue;
    max_logit = any ? std::max(max_logit, double(logits[e])) : double(logits[e]);
    any = true;
  }
  if (!any) return s;
  const bool degenerate = std::isinf(max_logit);  // +∞ present, or all −∞: equal shares
  double sum = 0.0;
  for (int64_t e = 0; e < experts; ++e) {
    const double r = logits[e];
    if (std::isnan(r)) continue;
    s[e] = degenerate ? (r == max_logit ? 1.0 : 0.0) : std::exp(r - max_logit);
    sum += s[e];
  }
  for (double& v : s) v /= sum;
  return s;
}

//! Group-limited Top-K (DeepSeek-V3): the keys of experts outside the `top_groups` best of
//! `num_groups` contiguous groups become NaN (never selected). A group's score is the float sum
//! of its two largest non-NaN keys (ties → lower index), its one key if it has only one, −∞ if
//! none; groups are ranked by score, ties → lower group, NaN scores last.
inline void limit_to_top_groups(std::vector<double>& keys, int num_groups, int top_groups) {
  if (num_groups <= 1 || top_groups >= num_groups) return;
  const size_t size = keys.size() / size_t(num_groups);
  std::vector<float> score(static_cast<size_t>(num_groups));
  for (size_t g = 0; g < score.size(); ++g) {
    std::vector<double> members;
    for (size_t e = g * size; e < (g + 1) * size; ++e) {
      if (!std::isnan(keys[e])) members.push_back(keys[e]);
    }
    std::sort(members.begin(), members.end(), std::greater<double>());
    score[g] = members.empty() ? -std::numeric_limits<float>::infinity()
               : members.size() == 1 ? float(members[0])
                                     : float(members[0]) + float(members[1]);
  }
  std::vector<int> order(score.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (std::isnan(score[a]) || std::isnan(score[b])) return !std::isnan(score[a]) && std::isnan(score[b]);
    return score[a] > score[b];
  });
  std::vector<bool> chosen(score.size(), false);
  for (int i = 0; i < top_groups; ++i) chosen[size_t(order[size_t(i)])] = true;
  for (size_t e = 0; e < keys.size(); ++e) {
    if (!chosen[e / size]) keys[e] = std::numeric_limits<double>::quiet_NaN();
  }
}

//! The K candidates of one token: indices of the K largest non-NaN keys, ties to the lower
//! index, best first; −1 fills slots beyond the number of non-NaN keys.
inline std::vector<int32_t> top_k_candidates(const std::vector<double>& keys, int top_k) {
  std::vector<int32_t> order;
  for (int32_t e = 0; e < int32_t(keys.size()); ++e) {
    if (!std::isnan(keys[e])) order.push_back(e);
  }
  const size_t kept = std::min<size_t>(order.size(), size_t(top_k));
  std::partial_sort(order.begin(), order.begin() + kept, order.end(), [&](int32_t a, int32_t b) {
    return keys[a] > keys[b] || (keys[a] == keys[b] && a < b);
  });
  order.resize(kept);
  order.resize(size_t(top_k), -1);
  return order;
}

//! m̂ of token t's candidate slots `c` under the routing rule and the cap (routing_rule), from
//! its scores s and renormalisation divisor S: q_k = s_{c_k} / S in float; top-p adds the q in
//! slot order in float, as the device does.
template <class Real>
std::vector<bool> rule_keeps(const std::vector<int32_t>& c, const std::vector<double>& s, double norm, int64_t t,
                             const matrix_view<Real>& mask_logits, const routing_options& options) {
  std::vector<bool> keep(c.size(), false);
  float mass_before = 0.0f;
  int kept = 0;
  for (size_t k = 0; k < c.size(); ++k) {
    if (c[k] < 0) break;  // empty slots come last
    const float q = float(s[size_t(c[k])] / norm);
    switch (options.rule) {
      case routing_rule::top_k: keep[k] = true; break;
      case routing_rule::mask: keep[k] = mask_keeps(double(mask_logits(t, c[k]))); break;
      case routing_rule::top_p: keep[k] = mass_before < options.top_p; break;
      case routing_rule::threshold: keep[k] = q >= options.threshold; break;
    }
    mass_before += q;
    if (options.max_active > 0 && kept == options.max_active) keep[k] = false;
    kept += keep[k] ? 1 : 0;
  }
  return keep;
}

//! Routes T tokens: Top-K candidates, gate weights and the routing rule (formulas in the file
//! comment).
//!
//! @param router_logits  r, a `T × E` view (e.g. the first half of a `[T, 2E]` array)
//! @param mask_logits    z, a `T × E` view; ignored (may be empty) unless the rule is the mask
//! @throws std::invalid_argument for K ∉ [1, E], T < 0 or mismatched views
//!
//! @code
//! // E = 4, K = 2, r = {1, 3, 2, 0}, z = {0.5, −1, 0, 2}
//! // candidates {1, 2}; z_1 = −1 masks expert 1; z_2 = 0 keeps expert 2 (inclusive)
//! // topk_ids = {−1, 2}, topk_weights = {0, softmax(r)_2}
//! @endcode
template <class Real>
routing_result<Real> route_and_mask(const matrix_view<Real>& router_logits,
                                    const matrix_view<Real>& mask_logits,
                                    const routing_options& options) {
  const int64_t tokens = router_logits.rows;
  const int64_t experts = router_logits.cols;
  const int top_k = options.top_k;
  if (top_k < 1 || top_k > experts) throw std::invalid_argument("route_and_mask: K must be in [1, E]");
  if (!valid_groups(options, experts)) {
    throw std::invalid_argument("route_and_mask: groups must divide E, top_groups ∈ [1, G], K ≤ top_groups·E/G");
  }
  if (!valid_rule(options)) {
    throw std::invalid_argument("route_and_mask: unknown rule, top_p ≤ 0, NaN threshold or max_active ∉ [0, K]");
  }
  if (tokens < 0) throw std::invalid_argument("route_and_mask: negative T");
  check_view(router_logits, tokens, experts, "route_and_mask: router_logits");
  if (uses_mask(options)) check_view(mask_logits, tokens, experts, "route_and_mask: mask_logits");

  routing_result<Real> out;
  out.tokens = tokens;
  out.experts = experts;
  out.top_k = top_k;
  out.options = options;
  const auto slots = static_cast<size_t>(tokens * top_k);
  out.candidate_ids.assign(slots, -1);
  out.gate_weights.assign(slots, Real(0));
  out.mask_probs.assign(slots, Real(0));
  out.topk_ids.assign(slots, -1);
  out.topk_weights.assign(slots, Real(0));
  out.active_count.assign(static_cast<size_t>(tokens), 0);

  const int64_t routed = options.valid_tokens ? std::clamp<int64_t>(*options.valid_tokens, 0, tokens) : tokens;
  for (int64_t t = 0; t < routed; ++t) {  // the padding tokens after `routed` keep their empty slots
    const Real* r = &router_logits(t, 0);
    const std::vector<double> s = expert_scores(r, experts, options.scoring);
    std::vector<double> keys(static_cast<size_t>(experts));
    for (int64_t e = 0; e < experts; ++e) {
      Real key = options.scoring == score_function::softmax ? r[e] : sigmoid(r[e]);
      if (options.selection_bias) key = Real(key + Real(options.selection_bias[e]));
      keys[e] = double(key);
    }
    limit_to_top_groups(keys, options.num_groups, options.top_groups);
    const std::vector<int32_t> c = top_k_candidates(keys, top_k);

    double norm = 1.0;
    if (options.renormalize) {
      double sum = 0.0;
      for (int32_t e : c) sum += e >= 0 ? s[e] : 0.0;
      norm = sum > 0.0 ? sum : 1.0;  // all-zero candidate scores keep g = 0
    }
    const std::vector<bool> keep = rule_keeps(c, s, norm, t, mask_logits, options);
    for (int k = 0; k < top_k; ++k) {
      const size_t slot = static_cast<size_t>(t * top_k + k);
      const int32_t e = c[k];
      out.candidate_ids[slot] = e;
      if (e < 0) continue;
      const double g = double(options.routed_scaling_factor) * s[e] / norm;
      out.gate_weights[slot] = Real(g);
      out.mask_probs[slot] = uses_mask(options) ? Real(sigmoid(double(mask_logits(t, e)))) : Real(1);
      out.topk_ids[slot] = keep[k] ? e : -1;
      out.topk_weights[slot] = keep[k] ? Real(g) : Real(0);
      out.active_count[t] += keep[k] ? 1 : 0;
    }
  }
  return out;
}

}  // namespace beam::reference
