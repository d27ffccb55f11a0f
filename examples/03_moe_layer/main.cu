// 03_moe_layer: the fused BEAM MoE layer (beam::device::moe_forward) on the Qwen3-30B-A3B
// shape (H 2048, I 768, E 128, K 8), bf16. Verifies a few tokens against the host reference
// (routing ids exactly, output to bf16 tolerance), then times the layer with the BEAM mask on
// and off (dense Top-K) over T and prints the masked / dense speed-up beside the two ratios
// that bound it: the active experts' weight bytes and the expert FLOPs.
// Without a CUDA device it says so and prints the reference result only.
//
//   03_moe_layer [--verify-tokens T] [--seed S]
#include <beam/core/error.cuh>
#include <beam/moe/device_moe.cuh>
#include <beam/reference/moe.cuh>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace ref = beam::reference;
using bf16 = __nv_bfloat16;

namespace {

constexpr int64_t H = 2048, I = 768;
constexpr int E = 128, K = 8;

//! Value i of a seeded stream, uniform in [−scale, scale) on multiples of scale/64: exact in
//! bf16 for a power-of-two scale.
float hashed(uint64_t seed, size_t i, float scale) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return scale * (float(int(x % 128)) - 64.0f) / 64.0f;
}

std::vector<float> values(size_t n, uint64_t seed, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = hashed(seed, i, scale);
  return v;
}

template <class T>
T* to_device(const std::vector<float>& v) {
  std::vector<T> host(v.size());
  for (size_t i = 0; i < v.size(); ++i) host[i] = beam::from_float<T>(v[i]);
  T* d = nullptr;
  BEAM_CUDA_TRY(cudaMalloc(&d, host.size() * sizeof(T)));
  BEAM_CUDA_TRY(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t verify_tokens = 4;
  uint64_t seed = 2026;
  for (int i = 1; i < argc; ++i) {
    const bool value = i + 1 < argc;
    if (value && !std::strcmp(argv[i], "--verify-tokens")) verify_tokens = std::atoll(argv[++i]);
    else if (value && !std::strcmp(argv[i], "--seed")) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      const bool help = !std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h");
      std::fprintf(help ? stdout : stderr, "usage: %s [--verify-tokens T] [--seed S]\n", argv[0]);
      return help ? 0 : 2;
    }
  }
  const bool gpu = beam::cuda_device_present();
  std::printf("beam 03_moe_layer: %s\n", gpu ? "device layer (moe_forward), verified against the host reference"
                                             : "no CUDA device: the device layer cannot run here; host reference only");
  std::printf("shape: Qwen3-30B-A3B, H = %lld, I = %lld, E = %d, K = %d, bf16; verify T = %lld, seed %llu\n",
              (long long)H, (long long)I, E, K, (long long)verify_tokens, (unsigned long long)seed);

  // Inputs on a grid of multiples of scale/64: bf16-exact, and the router logits are exact in
  // float on host and device, so the routing ids must agree exactly.
  const auto w13 = values(size_t(E) * 2 * I * H, seed + 1, 1.0f / 32);  // about 1/√H and 1/√I
  const auto w2 = values(size_t(E) * H * I, seed + 2, 1.0f / 32);
  const auto w_r = values(size_t(E) * H, seed + 3, 0.125f);
  const auto w_m = values(size_t(E) * H, seed + 4, 0.125f);  // an untrained mask router: keeps about half
  const auto x = values(size_t(std::max<int64_t>(verify_tokens, 1) * H), seed + 5, 1.0f);
  const ref::moe_weights<float> weights{H, I, E, w13.data(), w2.data()};
  beam::routing_options options;
  options.top_k = K;
  const auto expected = ref::moe_forward<float>(x.data(), verify_tokens, weights, w_r.data(), w_m.data(), options);
  double checksum = 0.0;
  for (float v : expected.out) checksum += std::abs(v);
  std::printf("reference: Avg.K %.2f of %d, sum|y| %.6e\n", expected.routing.avg_k(), K, checksum);
  if (!gpu) return 0;

  bf16 *d_w13 = to_device<bf16>(w13), *d_w2 = to_device<bf16>(w2), *d_w_r = to_device<bf16>(w_r),
       *d_w_m = to_device<bf16>(w_m);
  const beam::device::moe_layer<bf16> layer{int(H), int(I), E, d_w13, d_w2, d_w_r, d_w_m};
  const int64_t max_tokens = 8192;
  const auto big_x = values(size_t(max_tokens * H), seed + 6, 1.0f);
  bf16* d_x = to_device<bf16>(big_x);
  bf16* d_y = nullptr;
  int32_t* d_ids = nullptr;
  BEAM_CUDA_TRY(cudaMalloc(&d_y, size_t(max_tokens * H) * sizeof(bf16)));
  BEAM_CUDA_TRY(cudaMalloc(&d_ids, size_t(max_tokens * K) * sizeof(int32_t)));
  size_t bytes = 0;
  BEAM_CUDA_TRY(beam::device::moe_forward<bf16>(nullptr, bytes, d_x, H, max_tokens, layer, options, {d_y, H}));
  void* workspace = nullptr;
  BEAM_CUDA_TRY(cudaMalloc(&workspace, bytes));
  BEAM_CUDA_TRY(cudaMemset(workspace, 0, beam::device::workspace_counter_bytes));  // once: the completion counters

  // Verify: T = verify_tokens (route_decode: router logits and routing in one kernel) and T = 65
  // (router_logits, then route_and_mask).
  for (const int64_t T : {verify_tokens, int64_t(65)}) {
    const auto x_t = values(size_t(T * H), seed + 5, 1.0f);  // the first rows equal x
    const auto want = T == verify_tokens
                          ? expected
                          : ref::moe_forward<float>(x_t.data(), T, weights, w_r.data(), w_m.data(), options);
    bf16* d_vx = to_device<bf16>(x_t);
    BEAM_CUDA_TRY(beam::device::moe_forward<bf16>(workspace, bytes, d_vx, H, T, layer, options,
                                                  {d_y, H, nullptr, 0, d_ids}));
    std::vector<bf16> y(size_t(T * H));
    std::vector<int32_t> ids(size_t(T * K));
    BEAM_CUDA_TRY(cudaMemcpy(y.data(), d_y, y.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    BEAM_CUDA_TRY(cudaMemcpy(ids.data(), d_ids, ids.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
    BEAM_CUDA_TRY(cudaFree(d_vx));
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < y.size(); ++i) {
      const double d = double(beam::to_float(y[i])) - double(want.out[i]);
      diff += d * d;
      norm += double(want.out[i]) * double(want.out[i]);
    }
    const double error = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
    if (ids != want.routing.topk_ids || error > beam::dtype_traits<bf16>::tolerance) {
      std::printf("FAILED at T = %lld: routing ids %s, relative error %.3e (bf16 tolerance %.0e)\n", (long long)T,
                  ids == want.routing.topk_ids ? "equal" : "differ", error, beam::dtype_traits<bf16>::tolerance);
      return 1;
    }
    std::printf("verified: routing ids equal, relative error %.3e (T = %lld)\n", error, (long long)T);
  }

  // Time: each layer captured once in a CUDA graph (no host launch overhead in the figures),
  // L2 flushed before each replay (weights come from HBM), median of 20 CUDA-event timings
  // after 3 warm-ups; mask on vs off.
  cudaStream_t stream;
  cudaEvent_t start, stop;
  BEAM_CUDA_TRY(cudaStreamCreate(&stream));
  BEAM_CUDA_TRY(cudaEventCreate(&start));
  BEAM_CUDA_TRY(cudaEventCreate(&stop));
  int device = 0, l2_bytes = 0;
  BEAM_CUDA_TRY(cudaGetDevice(&device));
  BEAM_CUDA_TRY(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  void* flush = nullptr;
  BEAM_CUDA_TRY(cudaMalloc(&flush, 2 * size_t(l2_bytes)));
  struct timing {
    double us;
    int64_t pairs, experts;
  };
  const auto time_layer = [&](int64_t T, bool mask) {
    beam::routing_options o = options;
    o.rule = mask ? beam::routing_rule::mask : beam::routing_rule::top_k;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    BEAM_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    BEAM_CUDA_TRY(beam::device::moe_forward<bf16>(workspace, bytes, d_x, H, T, layer, o, {d_y, H, nullptr, 0, d_ids},
                                                  beam::device::gemm_schedule::automatic, stream));
    BEAM_CUDA_TRY(cudaStreamEndCapture(stream, &graph));
    BEAM_CUDA_TRY(cudaGraphInstantiate(&exec, graph, 0));
    std::vector<float> ms;
    for (int i = 0; i < 23; ++i) {
      BEAM_CUDA_TRY(cudaMemsetAsync(flush, i, 2 * size_t(l2_bytes), stream));
      BEAM_CUDA_TRY(cudaEventRecord(start, stream));
      BEAM_CUDA_TRY(cudaGraphLaunch(exec, stream));
      BEAM_CUDA_TRY(cudaEventRecord(stop, stream));
      BEAM_CUDA_TRY(cudaEventSynchronize(stop));
      float t = 0;
      BEAM_CUDA_TRY(cudaEventElapsedTime(&t, start, stop));
      if (i >= 3) ms.push_back(t);
    }
    BEAM_CUDA_TRY(cudaGraphExecDestroy(exec));
    BEAM_CUDA_TRY(cudaGraphDestroy(graph));
    std::sort(ms.begin(), ms.end());
    std::vector<int32_t> routed(size_t(T * K));
    BEAM_CUDA_TRY(cudaMemcpy(routed.data(), d_ids, routed.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
    std::vector<char> used(size_t(E), 0);
    timing out{double(ms[ms.size() / 2]) * 1e3, 0, 0};
    for (int32_t id : routed) {
      if (id < 0) continue;
      used[size_t(id)] = 1;
      ++out.pairs;
    }
    out.experts = std::count(used.begin(), used.end(), 1);
    return out;
  };
  // What masking saves: the distinct active experts' weight bytes (what bounds decoding) and
  // the expert FLOPs (what bounds large batches); the speed-up should approach the first at
  // small T and the second at large T.
  std::printf("%6s %10s %10s %6s %9s %14s %12s\n", "T", "dense us", "BEAM us", "Avg.K", "speed-up", "weight bytes", "FLOPs");
  for (int64_t T : {1, 8, 64, 512, 2048, 8192}) {
    const timing dense = time_layer(T, false), masked = time_layer(T, true);
    std::printf("%6lld %10.1f %10.1f %6.2f %8.2fx %13.2fx %11.2fx\n", (long long)T, dense.us, masked.us,
                double(masked.pairs) / double(T), dense.us / masked.us,
                double(dense.experts) / double(std::max<int64_t>(masked.experts, 1)),
                double(dense.pairs) / double(std::max<int64_t>(masked.pairs, 1)));
  }
  BEAM_CUDA_TRY(cudaEventDestroy(start));
  BEAM_CUDA_TRY(cudaEventDestroy(stop));
  BEAM_CUDA_TRY(cudaStreamDestroy(stream));
  BEAM_CUDA_TRY(cudaFree(flush));
  for (void* p : {(void*)d_w13, (void*)d_w2, (void*)d_w_r, (void*)d_w_m, (void*)d_x, (void*)d_y, (void*)d_ids,
                  workspace}) {
    BEAM_CUDA_TRY(cudaFree(p));
  }
  return 0;
}
