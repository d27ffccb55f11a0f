//! @file
//! Host reference of the compacted token-expert permutation: masked pairs get no row.
//!
//! Pair p = t·K + k of `topk_ids[T, K]` is active when its id lies in the local expert
//! range [expert_begin, expert_end). Active pairs are grouped by expert, in token order
//! inside an expert, and numbered by row:
//!   counts[e]      = #{active p : id_p = expert_begin + e}
//!   offsets[e]     = Σ_{e' < e} counts[e'],  offsets[E_local] = n_active
//!   sorted_pairs   = active pairs in row order (row r holds pair sorted_pairs[r])
//!   pair_to_row[p] = r with sorted_pairs[r] = p, or −1 for a skipped pair
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "beam/reference/matrix.cuh"

namespace beam::reference {

//! The permutation of one routing (see the file comment); experts are local indices.
struct compaction {
  int64_t tokens = 0;
  int top_k = 0;
  int32_t expert_begin = 0;            //!< first global expert id of the local range
  std::vector<int32_t> counts;         //!< `[E_local]`
  std::vector<int32_t> offsets;        //!< `[E_local + 1]`
  std::vector<int32_t> sorted_pairs;   //!< `[n_active]`
  std::vector<int32_t> pair_to_row;    //!< `[T·K]`
  int64_t n_active = 0;                //!< active pairs (rows)
  int64_t invalid_ids = 0;             //!< ids < −1 or ≥ num_experts, skipped

  //! Token of row r.
  [[nodiscard]] int64_t token_of_row(int64_t r) const { return sorted_pairs[r] / top_k; }
};

namespace detail {

//! The compaction of `local` experts, `local_of(id)` giving a pair's local expert (−1: skipped)
//! and whether its id is invalid.
template <class LocalOf>
compaction compact_local(const int32_t* topk_ids, int64_t tokens, int top_k, int32_t local, int32_t expert_begin,
                         LocalOf&& local_of) {
  const int64_t pairs = tokens * top_k;
  compaction c;
  c.tokens = tokens;
  c.top_k = top_k;
  c.expert_begin = expert_begin;
  c.counts.assign(static_cast<size_t>(local), 0);
  c.pair_to_row.assign(static_cast<size_t>(pairs), -1);
  std::vector<int32_t> expert_of(static_cast<size_t>(pairs));
  for (int64_t p = 0; p < pairs; ++p) {
    bool invalid = false;
    expert_of[size_t(p)] = local_of(topk_ids[p], invalid);
    if (invalid) ++c.invalid_ids;
    if (expert_of[size_t(p)] >= 0) ++c.counts[size_t(expert_of[size_t(p)])];
  }
  c.offsets.assign(static_cast<size_t>(local) + 1, 0);
  for (int32_t e = 0; e < local; ++e) c.offsets[e + 1] = c.offsets[e] + c.counts[e];
  c.n_active = c.offsets[local];

  c.sorted_pairs.assign(static_cast<size_t>(c.n_active), -1);
  std::vector<int32_t> next(c.offsets.begin(), c.offsets.end() - 1);
  for (int64_t p = 0; p < pairs; ++p) {  // ascending p: token order inside each expert
    const int32_t e = expert_of[size_t(p)];
    if (e < 0) continue;
    const int32_t row = next[e]++;
    c.sorted_pairs[row] = int32_t(p);
    c.pair_to_row[p] = row;
  }
  return c;
}

inline void check_compact(const int32_t* topk_ids, int64_t tokens, int top_k) {
  if (top_k < 1 || tokens < 0 || tokens * top_k > std::numeric_limits<int32_t>::max() ||
      (tokens > 0 && topk_ids == nullptr)) {
    throw std::invalid_argument("compact: bad K, T·K or topk_ids");
  }
}

}  // namespace detail

//! Compacts `topk_ids[T, K]` (−1 = masked) into the permutation above.
//!
//! Ids in [0, num_experts) outside [expert_begin, expert_end) are skipped like −1 (expert
//! parallelism: another rank owns them); ids < −1 or ≥ num_experts are skipped and counted
//! in `invalid_ids`.
//! @param expert_end  end of the local range; −1 means num_experts
//! @throws std::invalid_argument for a range outside [0, num_experts], K < 1, T·K over the
//!         int32 range, or null ids with T > 0
//!
//! @code
//! // T = 2, K = 2, E = 3, topk_ids = {2, −1,  0, 2}
//! // counts = {1, 0, 2}, offsets = {0, 1, 1, 3}, sorted_pairs = {2, 0, 3}
//! // pair_to_row = {1, −1, 0, 2}, n_active = 3
//! @endcode
inline compaction compact(const int32_t* topk_ids, int64_t tokens, int top_k, int32_t num_experts,
                          int32_t expert_begin = 0, int32_t expert_end = -1) {
  if (expert_end < 0) expert_end = num_experts;
  detail::check_compact(topk_ids, tokens, top_k);
  if (expert_begin < 0 || expert_begin > expert_end || expert_end > num_experts) {
    throw std::invalid_argument("compact: expert range outside [0, num_experts]");
  }
  return detail::compact_local(topk_ids, tokens, top_k, expert_end - expert_begin, expert_begin,
                               [&](int32_t id, bool& invalid) {
                                 invalid = id < -1 || id >= num_experts;
                                 return id >= expert_begin && id < expert_end ? id - expert_begin : -1;
                               });
}

//! Compacts for one rank of an expert-parallel group that holds the experts `expert_map`
//! gives a local id in [0, local_experts) (−1: another rank's; vLLM's `expert_map`). Ids
//! [E, E + Z) name zero-computation experts (no rows, not looked up, not invalid); ids < −1 or
//! ≥ E + Z, and map values outside [−1, local_experts), are skipped and counted in
//! `invalid_ids`. expert_begin is 0: local expert e is whichever global ids map to e.
//! @throws std::invalid_argument for a map of another size than num_experts, local_experts
//!         < 1, Z < 0, K < 1, T·K over the int32 range, or null ids with T > 0
inline compaction compact(const int32_t* topk_ids, int64_t tokens, int top_k, int32_t num_experts,
                          const std::vector<int32_t>& expert_map, int32_t local_experts,
                          int32_t zero_compute_experts = 0) {
  detail::check_compact(topk_ids, tokens, top_k);
  if (expert_map.size() != size_t(num_experts) || local_experts < 1 || zero_compute_experts < 0) {
    throw std::invalid_argument("compact: expert_map must have num_experts entries, local_experts ≥ 1, Z ≥ 0");
  }
  return detail::compact_local(topk_ids, tokens, top_k, local_experts, 0, [&](int32_t id, bool& invalid) {
    invalid = id < -1 || int64_t(id) >= int64_t(num_experts) + zero_compute_experts;
    if (invalid || id < 0 || id >= num_experts) return int32_t(-1);
    const int32_t e = expert_map[size_t(id)];
    invalid = e < -1 || e >= local_experts;
    return invalid ? int32_t(-1) : e;
  });
}

//! Tile schedule of a grouped GEMM with tiles of `block_rows` rows: (expert, first row) of
//! every tile, ⌈counts[e] / block_rows⌉ tiles per expert in expert order.
struct tiles {
  std::vector<int32_t> experts, rows;
};

inline tiles tile_schedule(const compaction& perm, int block_rows) {
  if (block_rows < 1) throw std::invalid_argument("tile_schedule: block_rows must be ≥ 1");
  tiles out;
  for (size_t e = 0; e < perm.counts.size(); ++e) {
    for (int64_t row = 0; row < perm.counts[e]; row += block_rows) {
      out.experts.push_back(int32_t(e));
      out.rows.push_back(int32_t(perm.offsets[e] + row));
    }
  }
  return out;
}

//! vLLM's `moe_align_block_size` layout: each expert's pairs (in row order) padded to a
//! multiple of `block_size` with the sentinel T·K, one expert id per block; experts without
//! pairs get no block.
struct aligned_blocks {
  std::vector<int32_t> sorted_token_ids, expert_ids;
  int32_t num_tokens_post_padded = 0;
};

inline aligned_blocks align_blocks(const compaction& perm, int block_size) {
  if (block_size < 1) throw std::invalid_argument("align_blocks: block_size must be ≥ 1");
  if (perm.tokens * perm.top_k + int64_t(perm.counts.size()) * (block_size - 1) > INT32_MAX) {
    throw std::invalid_argument("align_blocks: T·K + E·(block_size − 1) must be ≤ 2³¹ − 1 (int32 slots)");
  }
  aligned_blocks out;
  const auto sentinel = int32_t(perm.tokens * perm.top_k);
  for (size_t e = 0; e < perm.counts.size(); ++e) {
    const int64_t count = perm.counts[e], blocks = (count + block_size - 1) / block_size;
    for (int64_t j = 0; j < blocks * block_size; ++j) {
      out.sorted_token_ids.push_back(j < count ? perm.sorted_pairs[perm.offsets[e] + j] : sentinel);
    }
    out.expert_ids.insert(out.expert_ids.end(), size_t(blocks), int32_t(e));
  }
  out.num_tokens_post_padded = int32_t(out.sorted_token_ids.size());
  return out;
}

//! DeepGEMM's masked layout: `max_m` slots per expert, the first masked_m[e] holding expert
//! e's pairs in row order, the rest the sentinel T·K; pair_to_slot maps each pair to its slot
//! e·max_m + j, or −1 when it has none (skipped, or beyond max_m of its expert: dropped).
struct masked_slots {
  std::vector<int32_t> slot_pairs, masked_m, pair_to_slot;
  int64_t dropped_pairs = 0;
};

inline masked_slots mask_slots(const compaction& perm, int max_m) {
  if (max_m < 1) throw std::invalid_argument("mask_slots: max_m must be ≥ 1");
  const size_t experts = perm.counts.size();
  if (int64_t(experts) * max_m > INT32_MAX) {
    throw std::invalid_argument("mask_slots: E·max_m must be ≤ 2³¹ − 1 (int32 slots)");
  }
  masked_slots out;
  out.slot_pairs.assign(experts * size_t(max_m), int32_t(perm.tokens * perm.top_k));
  out.pair_to_slot.assign(perm.pair_to_row.size(), -1);
  for (size_t e = 0; e < experts; ++e) {
    out.masked_m.push_back(std::min(perm.counts[e], max_m));
    out.dropped_pairs += perm.counts[e] - out.masked_m.back();
    for (int32_t j = 0; j < out.masked_m.back(); ++j) {
      const int32_t pair = perm.sorted_pairs[size_t(perm.offsets[e] + j)], slot = int32_t(e) * max_m + j;
      out.slot_pairs[size_t(slot)] = pair;
      out.pair_to_slot[size_t(pair)] = slot;
    }
  }
  return out;
}

//! EPLB's replica choice (device::select_replicas): pair p with logical id e ≥ 0 goes to
//! physical[e·max_replicas + p mod counts[e]]; −1 stays −1; a bad id or count gives −2.
inline std::vector<int32_t> select_replicas(const std::vector<int32_t>& topk_ids, int32_t num_logical_experts,
                                            const std::vector<int32_t>& physical, const std::vector<int32_t>& counts,
                                            int max_replicas) {
  std::vector<int32_t> out(topk_ids.size());
  for (size_t p = 0; p < topk_ids.size(); ++p) {
    const int32_t e = topk_ids[p];
    out[p] = e == -1 ? -1 : -2;
    if (e >= 0 && e < num_logical_experts && counts[size_t(e)] >= 1 && counts[size_t(e)] <= max_replicas) {
      out[p] = physical[size_t(e) * size_t(max_replicas) + p % size_t(counts[size_t(e)])];
    }
  }
  return out;
}

//! What an all-to-all sends (device::dispatch_layout), experts in equal contiguous ranges over
//! `num_ranks` ranks: tokens per rank, kept pairs per expert, and whether token t goes to rank r.
struct dispatch_counts {
  std::vector<int32_t> tokens_per_rank, pairs_per_expert;
  std::vector<uint8_t> token_in_rank;  //!< `[T, R]`
};

//! @throws std::invalid_argument unless K ≥ 1, R ≥ 1 and E a positive multiple of R
inline dispatch_counts dispatch_layout(const int32_t* topk_ids, int64_t tokens, int top_k, int32_t num_experts,
                                       int32_t num_ranks) {
  if (top_k < 1 || num_ranks < 1 || num_experts < 1 || num_experts % num_ranks != 0 || tokens < 0) {
    throw std::invalid_argument("dispatch_layout: bad K, R or E (a multiple of R)");
  }
  dispatch_counts d;
  d.tokens_per_rank.assign(size_t(num_ranks), 0);
  d.pairs_per_expert.assign(size_t(num_experts), 0);
  d.token_in_rank.assign(size_t(tokens) * size_t(num_ranks), 0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int k = 0; k < top_k; ++k) {
      const int32_t e = topk_ids[t * top_k + k];
      if (e < 0 || e >= num_experts) continue;
      ++d.pairs_per_expert[size_t(e)];
      uint8_t& goes = d.token_in_rank[size_t(t * num_ranks + e / (num_experts / num_ranks))];
      if (!goes) ++d.tokens_per_rank[size_t(e / (num_experts / num_ranks))];
      goes = 1;
    }
  }
  return d;
}

//! Xp[r] = X[token_of_row(r)]: the input row of every active pair, `[n_active, H]`.
template <class Real>
std::vector<Real> gather_rows(const Real* x, int64_t hidden, const compaction& perm) {
  std::vector<Real> xp(static_cast<size_t>(perm.n_active * hidden));
  for (int64_t r = 0; r < perm.n_active; ++r) {
    const Real* src = x + perm.token_of_row(r) * hidden;
    std::copy(src, src + hidden, xp.begin() + r * hidden);
  }
  return xp;
}

//! out[t] = shared[t] + Σ_k ĝ[t,k] · Yp[pair_to_row[t·K+k]], summed in that order in double;
//! skipped pairs add nothing, so a token with no active expert gets exactly shared[t] (or 0).
//!
//! @param yp             `[n_active, H]` expert outputs in row order
//! @param topk_weights   ĝ `[T, K]`; null when `yp` rows are already scaled by ĝ
//! @param shared         `[T, H]` added to every token, or null
template <class Real>
std::vector<Real> combine(const Real* yp, int64_t hidden, const compaction& perm,
                          const non_deduced<Real>* topk_weights, const non_deduced<Real>* shared) {
  std::vector<Real> out(static_cast<size_t>(perm.tokens * hidden));
  std::vector<double> acc(static_cast<size_t>(hidden));
  for (int64_t t = 0; t < perm.tokens; ++t) {
    for (int64_t h = 0; h < hidden; ++h) acc[h] = shared ? double(shared[t * hidden + h]) : 0.0;
    for (int k = 0; k < perm.top_k; ++k) {
      const int64_t p = t * perm.top_k + k;
      const int32_t row = perm.pair_to_row[p];
      if (row < 0) continue;
      const double w = topk_weights ? double(topk_weights[p]) : 1.0;
      for (int64_t h = 0; h < hidden; ++h) acc[h] += w * double(yp[row * hidden + h]);
    }
    for (int64_t h = 0; h < hidden; ++h) out[t * hidden + h] = Real(acc[h]);
  }
  return out;
}

//! The gradients of combine's sum y_t = Σ_k ĝ[t,k] · Yp[pair_to_row[t·K+k]] (+ addends, which
//! pass ∂L/∂y through unchanged) from ∂L/∂y `[T, H]`, in double:
//!   ∂L/∂ĝ[t,k] = ⟨∂L/∂y_t, Yp[row]⟩     (0 for a skipped pair: row −1)
//!   ∂L/∂Yp[row] = ĝ[t,k] · ∂L/∂y_t      (`[n_active, H]` in row order)
//! A training forward gives every candidate pair a row (masked ones with ĝ = 0), so that
//! ∂L/∂ĝ reaches the masked candidates: the straight-through estimator's signal.
template <class Real>
struct combine_grads {
  std::vector<Real> d_topk_weights;  //!< `[T, K]`
  std::vector<Real> d_yp;            //!< `[n_active, H]`
};

template <class Real>
combine_grads<Real> combine_backward(const Real* yp, int64_t hidden, const compaction& perm,
                                     const non_deduced<Real>* topk_weights, const non_deduced<Real>* d_out) {
  if (perm.tokens > 0 && (!topk_weights || !d_out || (perm.n_active > 0 && !yp))) {
    throw std::invalid_argument("combine_backward: null input");
  }
  combine_grads<Real> g;
  g.d_topk_weights.assign(static_cast<size_t>(perm.tokens * perm.top_k), Real(0));
  g.d_yp.assign(static_cast<size_t>(perm.n_active * hidden), Real(0));
  for (int64_t t = 0; t < perm.tokens; ++t) {
    for (int k = 0; k < perm.top_k; ++k) {
      const int64_t p = t * perm.top_k + k;
      const int32_t row = perm.pair_to_row[p];
      if (row < 0) continue;
      double dot = 0.0;
      for (int64_t h = 0; h < hidden; ++h) {
        const double d = double(d_out[t * hidden + h]);
        dot += d * double(yp[row * hidden + h]);
        g.d_yp[row * hidden + h] = Real(double(topk_weights[p]) * d);
      }
      g.d_topk_weights[p] = Real(dot);
    }
  }
  return g;
}

}  // namespace beam::reference
