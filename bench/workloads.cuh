// Benchmark workloads shared by the timed benchmarks and the emulator's traffic report: model
// shapes (DESIGN.md §6), the paper's Avg.K operating points and a seeded skewed routing. Host
// code only, no dependency beyond the standard library.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

namespace beam::bench {

//! One MoE layer's shape: hidden H, expert intermediate I, E routed experts, Top-K, shared
//! expert intermediate I_s (0: none; several shared experts merged into one), and whether the
//! shared expert has Qwen2-MoE's gate σ(x·w_g).
struct model_shape {
  const char* name;
  int H, I, E, K;
  int I_s = 0;
  bool shared_gate = false;
  int identity_experts = 0;  //!< zero-computation experts (LongCat-Flash's), router ids [E, E + Z)
};

//! The layers of the layer benchmarks and the traffic report.
inline constexpr model_shape layer_models[] = {{"Qwen3-30B-A3B", 2048, 768, 128, 8, 0},
                                               {"DeepSeek-V2-Lite", 2048, 1408, 64, 6, 2 * 1408},
                                               {"Qwen1.5-MoE-A2.7B", 2048, 1408, 60, 4, 5632, true}};

//! Avg.K targets by index: K (dense Top-K), K/2, 1.23, 0.56 (the paper's operating points).
inline double target_avg_k(int index, int K) {
  const double targets[] = {double(K), K / 2.0, 1.23, 0.56};
  return targets[index];
}

//! Seeded routing `[T, K]` as a Top-K router gives it: K distinct experts per token, half of
//! the picks from a hot quarter of the experts; then round(Avg.K · T) of the T·K pairs, drawn
//! at random, are kept (−1 = masked), so that every T meets its Avg.K as closely as it can
//! (T = 1 at Avg.K 1.23 keeps one pair). The picks depend on the seed alone, so a routing at
//! Avg.K < K masks pairs of the one at Avg.K = K (dense Top-K on the same experts).
inline std::vector<int32_t> skewed_routing(int64_t T, int K, int E, double avg_k, uint64_t seed = 2026) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int> any(0, E - 1), hot(0, std::max(E / 4, 1) - 1);
  std::vector<int32_t> ids(size_t(T * K));
  for (int64_t t = 0; t < T; ++t) {
    int32_t* row = ids.data() + t * K;
    for (int k = 0; k < K; ++k) {
      int32_t e;
      do {
        e = E / 4 >= K && u(rng) < 0.5 ? hot(rng) : any(rng);
      } while (std::find(row, row + k, e) != row + k);
      row[k] = e;
    }
  }
  std::vector<int64_t> order(ids.size());
  for (size_t p = 0; p < order.size(); ++p) order[p] = int64_t(p);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed + 1));
  const auto kept = std::min<int64_t>(std::llround(avg_k * double(T)), int64_t(ids.size()));
  for (size_t i = size_t(std::max<int64_t>(kept, 0)); i < order.size(); ++i) ids[size_t(order[i])] = -1;
  return ids;
}

//! A router that gives exactly the routing `ids` `[T, K]` (−1: masked) to hidden states that
//! are unit vectors, x_t = e_t (T ≤ H): token t's logits are column t of W_r and W_m `[E, H]`,
//! which hold its candidates' router logits 4, 3.75, 3.5, ... in slot order and −4 elsewhere,
//! and mask logits +1 (kept) or −1; a masked slot's candidate is an expert the token does not
//! keep. Softmax Top-K with the mask then routes exactly `ids` (without the mask, the
//! candidates). Values exact in bf16.
struct exact_router {
  std::vector<float> x, w_r, w_m;  //!< `[T, H]`, `[E, H]`, `[E, H]`
};

inline exact_router router_for(const std::vector<int32_t>& ids, int64_t T, int K, int E, int H) {
  if (T > H || ids.size() != size_t(T) * size_t(K)) throw std::invalid_argument("router_for");
  exact_router r{std::vector<float>(size_t(T) * H, 0.0f), std::vector<float>(size_t(E) * H, 0.0f),
                 std::vector<float>(size_t(E) * H, 0.0f)};
  for (int64_t t = 0; t < T; ++t) {
    r.x[size_t(t * H + t)] = 1.0f;
    const int32_t* row = ids.data() + t * K;
    std::vector<char> taken(size_t(E), 0);
    for (int k = 0; k < K; ++k)
      if (row[k] >= 0) taken[size_t(row[k])] = 1;
    for (int e = 0; e < E; ++e) {
      r.w_r[size_t(e) * H + size_t(t)] = -4.0f;
      r.w_m[size_t(e) * H + size_t(t)] = -1.0f;
    }
    int spare = 0;
    for (int k = 0; k < K; ++k) {
      int32_t e = row[k];
      if (e < 0) {  // masked: a candidate the mask switches off
        while (taken[size_t(spare)]) ++spare;
        taken[size_t(e = spare)] = 1;
      } else {
        r.w_m[size_t(e) * H + size_t(t)] = 1.0f;
      }
      r.w_r[size_t(e) * H + size_t(t)] = 4.0f - 0.25f * float(k);
    }
  }
  return r;
}

}  // namespace beam::bench
