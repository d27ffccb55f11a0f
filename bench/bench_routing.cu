// Routing benchmarks: route_and_mask (the BEAM mask, the dense Top-K path, and the rules beside
// the mask: top-p, threshold, a cap) beside a CUB segmented sort of each token's logits; the fused decode path beside cuBLAS
// GEMM + route_and_mask, and the batch-invariant router_logits + route_and_mask beside the
// same baseline at prefill sizes; the backward and the auxiliary losses. bf16 logits and weights.
#include <cub/device/device_segmented_sort.cuh>

#include <vector>

#include "beam/routing/device_aux_losses.cuh"
#include "beam/routing/device_route.cuh"
#include "beam/routing/device_route_backward.cuh"
#include "beam/routing/device_route_decode.cuh"
#include "beam/routing/device_router_logits.cuh"
#include "common.cuh"

namespace {

using namespace beam::bench;
using bf16 = __nv_bfloat16;

//! One routing problem: logits [T, 2E] = r | z (one GEMM's output), uniform in [−2, 2)
//! (about half the candidates masked), and the [T, K] outputs.
struct routing_problem {
  int64_t T;
  int E, K;
  device_buffer<bf16> logits;
  device_buffer<int32_t> ids, candidates;
  device_buffer<float> weights, probs;
  cudaStream_t stream;

  routing_problem(int64_t tokens, int experts, int top_k)
      : T(tokens), E(experts), K(top_k), logits(size_t(tokens) * 2 * experts), ids(size_t(tokens) * top_k),
        candidates(size_t(tokens) * top_k), weights(size_t(tokens) * top_k), probs(size_t(tokens) * top_k) {
    BEAM_CUDA_TRY(cudaStreamCreate(&stream));
    fill_uniform(logits.data(), logits.size(), 11, -2.0f, 2.0f, stream);
  }
  ~routing_problem() { cudaStreamDestroy(stream); }
  beam::device::routing_logits<bf16> view() const {
    return {logits.data(), logits.data() + E, 2 * int64_t(E), 2 * int64_t(E)};
  }
  beam::routing_options options(bool mask) const { return options_for_rule(mask ? 1 : 0); }
  //! The rule of a benchmark row: 0 dense Top-K, 1 the BEAM mask, 2 top-p (p = 0.5),
  //! 3 threshold (τ = 0.1), 4 the mask with a cap of K / 2.
  beam::routing_options options_for_rule(int rule) const {
    const beam::routing_rule rules[] = {beam::routing_rule::top_k, beam::routing_rule::mask, beam::routing_rule::top_p,
                                        beam::routing_rule::threshold, beam::routing_rule::mask};
    beam::routing_options o;
    o.top_k = K;
    o.rule = rules[rule];
    o.top_p = 0.5f;
    o.threshold = 0.1f;
    o.max_active = rule == 4 ? K / 2 : 0;
    return o;
  }
  beam::device::routing_outputs outputs() const {
    return {ids.data(), weights.data(), probs.data(), candidates.data()};
  }
  //! Bytes route_and_mask moves: r rows, z at the candidates, four [T, K] outputs.
  double route_bytes(bool mask) const {
    return double(T) * (E * sizeof(bf16) + (mask ? K * sizeof(bf16) : 0) + K * 16.0);
  }
};

//! route_and_mask; range: T, E, K, rule (routing_problem::options_for_rule: 0 dense Top-K,
//! 1 BEAM, 2 top-p, 3 threshold, 4 BEAM with a cap).
void bm_route_and_mask(benchmark::State& state) {
  routing_problem p(state.range(0), int(state.range(1)), int(state.range(2)));
  const beam::routing_options options = p.options_for_rule(int(state.range(3)));
  l2_flusher l2;
  const double s = median_seconds(
      p.stream, [&] { BEAM_CUDA_TRY(beam::device::route_and_mask(p.view(), p.T, p.E, options, p.outputs(), p.stream)); },
      20, 3, [&] { l2.flush(p.stream); });
  report(state, s, p.route_bytes(beam::uses_mask(options)), 0);
}

//! route_and_mask with DeepSeek-V3's routing: σ keys with a correction bias, group-limited
//! Top-K (8 groups, the best 4), renormalised and scaled, the BEAM mask on; range: T.
void bm_route_deepseek_v3(benchmark::State& state) {
  routing_problem p(state.range(0), 256, 8);
  device_buffer<float> bias(256);
  fill_uniform(bias.data(), bias.size(), 16, -0.05f, 0.05f, p.stream);
  beam::routing_options options = p.options(true);
  options.scoring = beam::score_function::sigmoid;
  options.selection_bias = bias.data();
  options.num_groups = 8;
  options.top_groups = 4;
  options.renormalize = true;
  options.routed_scaling_factor = 2.5f;
  l2_flusher l2;
  const double s = median_seconds(
      p.stream, [&] { BEAM_CUDA_TRY(beam::device::route_and_mask(p.view(), p.T, p.E, options, p.outputs(), p.stream)); },
      20, 3, [&] { l2.flush(p.stream); });
  report(state, s, p.route_bytes(true), 0);
}

//! CUB baseline: DeviceSegmentedSort::SortPairsDescending of each token's E router logits
//! with their expert ids (the first K of each segment are its Top-K); range: T, E, K.
void bm_cub_segmented_sort(benchmark::State& state) {
  routing_problem p(state.range(0), int(state.range(1)), int(state.range(2)));
  const int64_t n = p.T * 2 * p.E;
  std::vector<int32_t> experts_host(static_cast<size_t>(n)), begin_host(static_cast<size_t>(p.T)),
      end_host(static_cast<size_t>(p.T));
  for (int64_t i = 0; i < n; ++i) experts_host[i] = int32_t(i % (2 * p.E));
  for (int64_t t = 0; t < p.T; ++t) {
    begin_host[t] = int32_t(t * 2 * p.E);
    end_host[t] = int32_t(t * 2 * p.E + p.E);  // the router half of each row
  }
  device_buffer<int32_t> experts{size_t(n)}, sorted_experts{size_t(n)}, begin{size_t(p.T)}, end{size_t(p.T)};
  device_buffer<bf16> sorted_keys{size_t(n)};
  BEAM_CUDA_TRY(cudaMemcpy(experts.data(), experts_host.data(), n * 4, cudaMemcpyHostToDevice));
  BEAM_CUDA_TRY(cudaMemcpy(begin.data(), begin_host.data(), p.T * 4, cudaMemcpyHostToDevice));
  BEAM_CUDA_TRY(cudaMemcpy(end.data(), end_host.data(), p.T * 4, cudaMemcpyHostToDevice));
  const auto sort = [&](void* temp, size_t& bytes) {
    return cub::DeviceSegmentedSort::SortPairsDescending(temp, bytes, p.logits.data(), sorted_keys.data(),
                                                         experts.data(), sorted_experts.data(), n, p.T,
                                                         begin.data(), end.data(), p.stream);
  };
  size_t temp_bytes = 0;
  BEAM_CUDA_TRY(sort(nullptr, temp_bytes));
  device_buffer<char> temp(temp_bytes);
  l2_flusher l2;
  const double s = median_seconds(p.stream, [&] { BEAM_CUDA_TRY(sort(temp.data(), temp_bytes)); }, 20, 3,
                                  [&] { l2.flush(p.stream); });
  report(state, s, double(p.T) * p.E * (2 * sizeof(bf16) + 8), 0);  // keys + ids read and written
}

//! Router weights [W_r; W_m] `[2E, H]` and hidden states `[T, H]` for the decode path.
struct decode_problem : routing_problem {
  int H;
  device_buffer<bf16> hidden, w;

  decode_problem(int64_t tokens, int hidden_size, int experts, int top_k)
      : routing_problem(tokens, experts, top_k), H(hidden_size), hidden(size_t(tokens) * hidden_size),
        w(size_t(2) * experts * hidden_size) {
    fill_uniform(hidden.data(), hidden.size(), 12, -1.0f, 1.0f, stream);
    fill_uniform(w.data(), w.size(), 13, -0.05f, 0.05f, stream);
  }
  double weight_bytes() const { return 2.0 * E * H * sizeof(bf16) + double(T) * H * sizeof(bf16); }
};

//! route_decode (router logits + route in one launch); range: T, H, E, K.
void bm_route_decode(benchmark::State& state) {
  decode_problem p(state.range(0), int(state.range(1)), int(state.range(2)), int(state.range(3)));
  const beam::device::router_weights<bf16> weights{p.w.data(), p.w.data() + int64_t(p.E) * p.H, p.H, p.H};
  size_t bytes = 0;
  BEAM_CUDA_TRY(beam::device::route_decode<bf16>(nullptr, bytes, p.hidden.data(), p.H, p.T, p.H, weights, p.E,
                                                 p.options(true), p.outputs()));
  device_buffer<char> workspace(bytes);
  BEAM_CUDA_TRY(cudaMemset(workspace.data(), 0, beam::device::workspace_counter_bytes));  // once
  l2_flusher l2;
  const double s = median_seconds(
      p.stream,
      [&] {
        BEAM_CUDA_TRY(beam::device::route_decode(workspace.data(), bytes, p.hidden.data(), p.H, p.T, p.H, weights,
                                                 p.E, p.options(true), p.outputs(), p.stream));
      },
      20, 3, [&] { l2.flush(p.stream); });
  report(state, s, p.weight_bytes(), 2.0 * p.T * 2 * p.E * p.H);
}

//! router_logits into float [T, 2E] then route_and_mask: moe_forward's router above T = 64,
//! batch-invariant (route_decode's summation order); range: T, H, E, K.
void bm_router_logits_then_route(benchmark::State& state) {
  decode_problem p(state.range(0), int(state.range(1)), int(state.range(2)), int(state.range(3)));
  const beam::device::router_weights<bf16> weights{p.w.data(), p.w.data() + int64_t(p.E) * p.H, p.H, p.H};
  device_buffer<float> logits(size_t(p.T) * 2 * p.E);
  float* l = logits.data();
  const int64_t stride = 2 * int64_t(p.E);
  l2_flusher l2;
  const double s = median_seconds(
      p.stream,
      [&] {
        BEAM_CUDA_TRY(beam::device::router_logits(p.hidden.data(), p.H, p.T, p.H, weights, p.E, true,
                                                  {l, l + p.E, stride, stride}, p.stream));
        BEAM_CUDA_TRY(beam::device::route_and_mask<float>({l, l + p.E, stride, stride}, p.T, p.E, p.options(true),
                                                          p.outputs(), p.stream));
      },
      20, 3, [&] { l2.flush(p.stream); });
  report(state, s, p.weight_bytes(), 2.0 * p.T * 2 * p.E * p.H);
}

//! Baseline of both router paths: cuBLAS GEMM logits[T, 2E] = X · [W_r; W_m]ᵀ (float out, as
//! route_decode and router_logits keep them), then route_and_mask; range: T, H, E, K.
void bm_cublas_gemm_then_route(benchmark::State& state) {
  decode_problem p(state.range(0), int(state.range(1)), int(state.range(2)), int(state.range(3)));
  device_buffer<float> logits(size_t(p.T) * 2 * p.E);
  float* l = logits.data();
  const int64_t stride = 2 * int64_t(p.E);
  const cublas_handle owner(p.stream);
  const cublasHandle_t handle = owner.handle;
  const float alpha = 1.0f, beta = 0.0f;
  const int m = int(p.T), n = 2 * p.E, k = p.H;
  l2_flusher l2;
  const double s = median_seconds(
      p.stream,
      [&] {
        // Column-major: logitsᵀ[2E, T] = W[2E, H] · Xᵀ[H, T].
        cublas_try(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, p.w.data(), CUDA_R_16BF, k,
                                p.hidden.data(), CUDA_R_16BF, k, &beta, l, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx");
        BEAM_CUDA_TRY(beam::device::route_and_mask<float>({l, l + p.E, stride, stride}, p.T, p.E, p.options(true),
                                                          p.outputs(), p.stream));
      },
      20, 3, [&] { l2.flush(p.stream); });
  report(state, s, p.weight_bytes(), 2.0 * p.T * 2 * p.E * p.H);
}

//! route_backward with both auxiliary terms, float gradients; range: T, E, K.
void bm_route_backward(benchmark::State& state) {
  routing_problem p(state.range(0), int(state.range(1)), int(state.range(2)));
  BEAM_CUDA_TRY(beam::device::route_and_mask(p.view(), p.T, p.E, p.options(true), p.outputs(), p.stream));
  device_buffer<float> d_hat{size_t(p.T) * p.K}, fractions{size_t(p.E)}, d_r{size_t(p.T) * p.E}, d_z{size_t(p.T) * p.E};
  fill_uniform(d_hat.data(), d_hat.size(), 14, -1.0f, 1.0f, p.stream);
  fill_uniform(fractions.data(), fractions.size(), 15, 0.0f, 2.0f / float(p.E), p.stream);
  const beam::device::routing_gradients<float> grads{d_r.data(), d_z.data(), p.E, p.E};
  l2_flusher l2;
  const double s = median_seconds(
      p.stream,
      [&] {
        BEAM_CUDA_TRY(beam::device::route_backward(p.view(), p.T, p.E, p.options(true), p.candidates.data(),
                                                   d_hat.data(), {0.01f, 0.1f, fractions.data()}, grads, p.stream));
      },
      20, 3, [&] { l2.flush(p.stream); });
  // r rows and z at the candidates read, candidates and ∂L/∂ĝ read, two float [T, E] written.
  report(state, s, double(p.T) * (p.E * (sizeof(bf16) + 8.0) + p.K * (sizeof(bf16) + 8.0)), 0);
}

//! aux_losses (L_reg, L_bal, f); range: T, E, K.
void bm_aux_losses(benchmark::State& state) {
  routing_problem p(state.range(0), int(state.range(1)), int(state.range(2)));
  BEAM_CUDA_TRY(beam::device::route_and_mask(p.view(), p.T, p.E, p.options(true), p.outputs(), p.stream));
  device_buffer<float> losses{2}, fractions{size_t(p.E)};
  size_t bytes = 0;
  BEAM_CUDA_TRY(beam::device::aux_losses<bf16>(nullptr, bytes, p.view(), p.T, p.E, p.options(true), nullptr, {}));
  device_buffer<char> workspace(bytes);
  BEAM_CUDA_TRY(cudaMemset(workspace.data(), 0, beam::device::workspace_counter_bytes));  // once
  const beam::device::aux_loss_outputs out{losses.data(), losses.data() + 1, fractions.data()};
  l2_flusher l2;
  const double s = median_seconds(
      p.stream,
      [&] {
        BEAM_CUDA_TRY(beam::device::aux_losses(workspace.data(), bytes, p.view(), p.T, p.E, p.options(true),
                                               p.candidates.data(), out, p.stream));
      },
      20, 3, [&] { l2.flush(p.stream); });
  report(state, s, double(p.T) * (p.E * sizeof(bf16) + p.K * (sizeof(bf16) + 4.0)), 0);
}

}  // namespace

BENCHMARK(bm_route_and_mask)
    ->ArgNames({"T", "E", "K", "rule"})
    ->ArgsProduct({{1, 8, 64, 512, 4096, 32768}, {64, 128, 256}, {6, 8}, {0, 1}})
    ->ArgsProduct({{1, 4096, 32768}, {128}, {8}, {2, 3, 4}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_route_deepseek_v3)
    ->ArgName("T")
    ->Arg(1)->Arg(64)->Arg(4096)->Arg(32768)
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_cub_segmented_sort)
    ->ArgNames({"T", "E", "K"})
    ->ArgsProduct({{1, 8, 64, 512, 4096, 32768}, {64, 128, 256}, {8}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_route_decode)
    ->ArgNames({"T", "H", "E", "K"})
    ->ArgsProduct({{1, 8, 16, 32, 64}, {2048}, {128}, {8}})
    ->Args({1, 2048, 64, 6})
    ->Args({1, 7168, 256, 8})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_router_logits_then_route)
    ->ArgNames({"T", "H", "E", "K"})
    ->ArgsProduct({{65, 512, 4096, 16384}, {2048}, {128}, {8}})
    ->Args({4096, 7168, 256, 8})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_cublas_gemm_then_route)
    ->ArgNames({"T", "H", "E", "K"})
    ->ArgsProduct({{1, 8, 16, 32, 64, 65, 512, 4096, 16384}, {2048}, {128}, {8}})
    ->Args({4096, 7168, 256, 8})
    ->Args({1, 2048, 64, 6})
    ->Args({1, 7168, 256, 8})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_route_backward)
    ->ArgNames({"T", "E", "K"})
    ->ArgsProduct({{512, 4096, 32768}, {64, 128, 256}, {8}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_aux_losses)
    ->ArgNames({"T", "E", "K"})
    ->ArgsProduct({{512, 4096, 32768}, {64, 128, 256}, {8}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

BEAM_BENCHMARK_MAIN()
