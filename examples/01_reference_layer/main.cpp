// 01_reference_layer: one BEAM MoE layer on a small Qwen3-30B-A3B-like shape, computed by the
// host reference. Verifies that a zero-initialised mask router reproduces dense Top-K, then
// reports Avg.K, the routed FLOPs saved against dense Top-K, and an output checksum.
//
//   01_reference_layer [--tokens T] [--seed S]
#include <beam/reference/moe.cuh>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace ref = beam::reference;

namespace {

std::vector<float> normal(size_t n, std::mt19937_64& rng, double stddev) {
  std::normal_distribution<double> dist(0.0, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = float(dist(rng));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t tokens = 64;
  uint64_t seed = 2026;
  for (int i = 1; i < argc; ++i) {
    const bool value = i + 1 < argc;
    if (value && !std::strcmp(argv[i], "--tokens")) tokens = std::atoll(argv[++i]);
    else if (value && !std::strcmp(argv[i], "--seed")) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      const bool help = !std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h");
      std::fprintf(help ? stdout : stderr, "usage: %s [--tokens T] [--seed S]\n", argv[0]);
      return help ? 0 : 2;
    }
  }
  // Qwen3-30B-A3B routes E = 128 experts with K = 8; H = 2048 and I = 768 are scaled by 1/8.
  const int H = 256, I = 96, E = 128;
  const int K = 8;
  std::printf("beam 01_reference_layer: host reference path\n");
  std::printf("shape: T = %lld, H = %lld, I = %lld, E = %d, K = %d (Qwen3-30B-A3B routing, H and I / 8), seed %llu\n",
              (long long)tokens, (long long)H, (long long)I, E, K, (unsigned long long)seed);

  std::mt19937_64 rng(seed);
  const auto x = normal(size_t(tokens * H), rng, 1.0);
  const auto w13 = normal(size_t(E) * 2 * I * H, rng, 1.0 / std::sqrt(double(H)));
  const auto w2 = normal(size_t(E) * H * I, rng, 1.0 / std::sqrt(double(I)));
  const auto w_router = normal(size_t(E) * H, rng, 1.0 / std::sqrt(double(H)));
  const auto w_mask = normal(size_t(E) * H, rng, 1.0 / std::sqrt(double(H)));  // an untrained mask router
  const std::vector<float> w_mask_zero(size_t(E) * H, 0.0f);
  const ref::moe_weights<float> weights{H, I, E, w13.data(), w2.data()};

  ref::routing_options options;
  options.top_k = K;
  options.rule = ref::routing_rule::top_k;
  const auto dense = ref::moe_forward(x.data(), tokens, weights, w_router.data(), nullptr, options);
  options.rule = ref::routing_rule::mask;
  const auto zero_init = ref::moe_forward(x.data(), tokens, weights, w_router.data(), w_mask_zero.data(), options);
  const auto masked = ref::moe_forward(x.data(), tokens, weights, w_router.data(), w_mask.data(), options);

  if (zero_init.out != dense.out || zero_init.routing.topk_ids != dense.routing.topk_ids) {
    std::printf("FAILED: a zero-initialised mask router must reproduce dense Top-K exactly\n");
    return 1;
  }
  std::printf("verified: a zero-initialised mask router reproduces dense Top-K bitwise\n");

  const double pair_flops = ref::expert_pair_flops(H, I);
  const double dense_flops = double(dense.routing.active_pairs()) * pair_flops;
  const double masked_flops = double(masked.routing.active_pairs()) * pair_flops;
  int64_t empty_tokens = 0;
  for (int32_t n : masked.routing.active_count) empty_tokens += n == 0;
  double sum = 0.0, abs_sum = 0.0;
  for (float v : masked.out) {
    sum += v;
    abs_sum += std::abs(v);
  }
  std::printf("dense Top-K : Avg.K %.2f, routed expert FLOPs %.3f GFLOP\n", dense.routing.avg_k(), dense_flops * 1e-9);
  std::printf("BEAM mask   : Avg.K %.2f, routed expert FLOPs %.3f GFLOP (%.1f%% fewer), %lld token(s) with no routed expert\n",
              masked.routing.avg_k(), masked_flops * 1e-9,
              dense_flops > 0 ? 100.0 * (1.0 - masked_flops / dense_flops) : 0.0, (long long)empty_tokens);
  std::printf("output checksum: sum %.6e, sum|y| %.6e\n", sum, abs_sum);
  return 0;
}
