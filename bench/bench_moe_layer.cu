// Layer benchmarks: beam::device::moe_experts_forward (compact → GEMM 1 + SwiGLU → GEMM 2 · ĝ
// → shared expert → combine) with a BEAM routing at a target Avg.K, timed beside the dense
// Top-K routing it was drawn from (the same experts, none masked), and the whole
// moe_forward with its router; L2 flushed before every timed call. Counters: the masked /
// dense speed-up next to the ideal one, the ratio of their roofline times, where a roofline
// time is max(bytes that must move / copy ceiling, FLOPs / cuBLAS bf16 rate), and the masked
// time against its roofline; and the rows of the decode latency record, moe_forward with a
// router that gives exactly the record's routing, with bf16 experts and with e4m3 ones
// (block_128 scales: bytes count 1 per weight and the scales).
// Range: model index (DESIGN.md §6), T, Avg.K index (K/2, 1.23, 0.56).
#include <algorithm>
#include <vector>

#include "beam/gemm/weights.cuh"
#include "beam/moe/device_moe.cuh"
#include "common.cuh"

namespace {

using namespace beam::bench;
using bf16 = __nv_bfloat16;

//! A layer's weights, inputs and workspace on the device.
struct layer_problem {
  model_shape m;
  int64_t T;
  bool e4m3;  //!< the experts' weights: e4m3 codes with block_128 scales (else bf16)
  beam::activation_format activations = beam::activation_format::native;  //!< e4m3: W8A16 or W8A8
  device_buffer<bf16> x, y, w13, w2, router, mask_router, shared_w13, shared_w2, shared_gate;
  device_buffer<int32_t> ids;
  device_buffer<float> gates;
  device_buffer<__nv_fp8_e4m3> w13_e4m3, w2_e4m3, shared_w13_e4m3, shared_w2_e4m3;  //!< e4m3: the experts
  device_buffer<float> w13_scales, w2_scales, shared_w13_scales, shared_w2_scales;   //!< e4m3: their scales
  cudaStream_t stream;
  l2_flusher l2;  //!< every timed call starts from a cold L2: weights come from HBM

  //! Scales of an [N, K] matrix of `halves` halves, per expert (0 with bf16 weights).
  int64_t scales(int64_t n, int64_t k, int halves) const {
    return e4m3 ? beam::scales_per_expert(beam::weight_scales::block_128, n, k, halves) : 0;
  }

  layer_problem(const model_shape& shape, int64_t tokens, bool e4m3_weights = false)
      : m(shape), T(tokens), e4m3(e4m3_weights), x(size_t(tokens) * shape.H), y(size_t(tokens) * shape.H),
        w13(size_t(shape.E) * 2 * shape.I * shape.H), w2(size_t(shape.E) * shape.H * shape.I),
        router(size_t(shape.E + shape.identity_experts) * shape.H),
        mask_router(size_t(shape.E + shape.identity_experts) * shape.H),
        shared_w13(std::max<size_t>(size_t(2) * shape.I_s * shape.H, 8)),
        shared_w2(std::max<size_t>(size_t(shape.H) * shape.I_s, 8)), shared_gate(size_t(shape.H)),
        ids(size_t(tokens) * shape.K),
        gates(size_t(tokens) * shape.K), w13_e4m3(e4m3 ? w13.size() : 0), w2_e4m3(e4m3 ? w2.size() : 0),
        shared_w13_e4m3(e4m3 ? shared_w13.size() : 0), shared_w2_e4m3(e4m3 ? shared_w2.size() : 0),
        w13_scales(size_t(shape.E * scales(2 * shape.I, shape.H, 2))),
        w2_scales(size_t(shape.E * scales(shape.H, shape.I, 1))),
        shared_w13_scales(size_t(std::max<int64_t>(scales(2 * shape.I_s, shape.H, 2), 1))),
        shared_w2_scales(size_t(std::max<int64_t>(scales(shape.H, shape.I_s, 1), 1))) {
    BEAM_CUDA_TRY(cudaStreamCreate(&stream));
    fill_uniform(x.data(), x.size(), 1, -1, 1, stream);
    fill_uniform(w13.data(), w13.size(), 2, -0.03f, 0.03f, stream);
    fill_uniform(w2.data(), w2.size(), 3, -0.03f, 0.03f, stream);
    fill_uniform(router.data(), router.size(), 4, -0.05f, 0.05f, stream);
    fill_uniform(mask_router.data(), mask_router.size(), 5, -0.05f, 0.05f, stream);
    fill_uniform(shared_w13.data(), shared_w13.size(), 6, -0.03f, 0.03f, stream);
    fill_uniform(shared_w2.data(), shared_w2.size(), 7, -0.03f, 0.03f, stream);
    fill_uniform(shared_gate.data(), shared_gate.size(), 9, -0.05f, 0.05f, stream);
    fill_uniform(gates.data(), gates.size(), 8, 0, 1, stream);
    if (e4m3) {
      fill_uniform(w13_e4m3.data(), w13_e4m3.size(), 10, -448, 448, stream);
      fill_uniform(w2_e4m3.data(), w2_e4m3.size(), 11, -448, 448, stream);
      fill_uniform(shared_w13_e4m3.data(), shared_w13_e4m3.size(), 12, -448, 448, stream);
      fill_uniform(shared_w2_e4m3.data(), shared_w2_e4m3.size(), 13, -448, 448, stream);
      for (auto* s : {&w13_scales, &w2_scales, &shared_w13_scales, &shared_w2_scales}) {
        fill_uniform(s->data(), s->size(), 14, 1e-5f, 1e-4f, stream);
      }
    }
  }
  ~layer_problem() { cudaStreamDestroy(stream); }
  beam::device::moe_layer<bf16> layer() const {
    beam::device::moe_layer<bf16> l{m.H, m.I, m.E, w13.data(), w2.data(), router.data(), mask_router.data(), m.I_s,
                                    shared_w13.data(), shared_w2.data()};
    if (m.shared_gate) l.shared_gate = shared_gate.data();
    l.identity_experts = m.identity_experts;
    return l;
  }
  //! The same layer with the e4m3 experts.
  beam::device::moe_layer<bf16, __nv_fp8_e4m3> e4m3_layer() const {
    const beam::device::moe_layer<bf16> b = layer();
    beam::device::moe_layer<bf16, __nv_fp8_e4m3> l{b.hidden, b.intermediate, b.experts, w13_e4m3.data(),
                                                   w2_e4m3.data(), b.router, b.mask_router, b.shared_intermediate,
                                                   shared_w13_e4m3.data(), shared_w2_e4m3.data(), b.shared_gate};
    l.identity_experts = b.identity_experts;
    l.weight_scaling = beam::weight_scales::block_128;
    l.w13_scales = w13_scales.data();
    l.w2_scales = w2_scales.data();
    l.shared_w13_scales = shared_w13_scales.data();
    l.shared_w2_scales = shared_w2_scales.data();
    l.activations = activations;
    return l;
  }

  //! Median seconds of moe_experts_forward with the routing `host_ids`.
  double time_experts(const std::vector<int32_t>& host_ids) {
    BEAM_CUDA_TRY(cudaMemcpy(ids.data(), host_ids.data(), host_ids.size() * 4, cudaMemcpyHostToDevice));
    size_t bytes = 0;
    BEAM_CUDA_TRY(beam::device::moe_experts_forward<bf16>(nullptr, bytes, x.data(), m.H, T, layer(), ids.data(),
                                                          gates.data(), m.K, {y.data(), m.H}));
    device_buffer<char> workspace(bytes);
    BEAM_CUDA_TRY(cudaMemset(workspace.data(), 0, beam::device::workspace_counter_bytes));  // once
    return median_seconds(
        stream,
        [&] {
          BEAM_CUDA_TRY(beam::device::moe_experts_forward<bf16>(workspace.data(), bytes, x.data(), m.H, T, layer(),
                                                                ids.data(), gates.data(), m.K, {y.data(), m.H},
                                                                beam::device::gemm_schedule::automatic, stream));
        },
        20, 3, [&] { l2.flush(stream); });
  }

  //! Median seconds of moe_forward with `options` (the e4m3 experts where e4m3); the routing it
  //! made is left in `ids`.
  double time_forward(const beam::routing_options& options) {
    return e4m3 ? time_forward(e4m3_layer(), options) : time_forward(layer(), options);
  }
  template <class W>
  double time_forward(const beam::device::moe_layer<bf16, W>& layer, const beam::routing_options& options) {
    size_t bytes = 0;
    BEAM_CUDA_TRY(beam::device::moe_forward<bf16>(nullptr, bytes, x.data(), m.H, T, layer, options, {y.data(), m.H}));
    device_buffer<char> workspace(bytes);
    BEAM_CUDA_TRY(cudaMemset(workspace.data(), 0, beam::device::workspace_counter_bytes));  // once
    const beam::device::moe_outputs<bf16> out{y.data(), m.H, nullptr, 0, ids.data(), gates.data()};
    return median_seconds(
        stream,
        [&] {
          BEAM_CUDA_TRY(beam::device::moe_forward<bf16>(workspace.data(), bytes, x.data(), m.H, T, layer, options,
                                                        out, beam::device::gemm_schedule::automatic, stream));
        },
        20, 3, [&] { l2.flush(stream); });
  }
  std::vector<int32_t> routed() const {
    std::vector<int32_t> host(size_t(T) * m.K);
    BEAM_CUDA_TRY(cudaMemcpy(host.data(), ids.data(), host.size() * 4, cudaMemcpyDeviceToHost));
    return host;
  }

  //! The roofline time: max(bytes / copy ceiling, FLOPs / cuBLAS bf16 rate).
  double roofline_seconds(const std::vector<int32_t>& host_ids) const {
    const ceilings& c = measured_ceilings();
    return std::max(bytes(host_ids) / c.copy_bytes_per_s, flops(host_ids) / c.gemm_flops_per_s);
  }

  //! Bytes that must move: the distinct active FFN experts' weights (+ the shared expert's;
  //! e4m3: 1 byte each and their scales), the activations in and out.
  double bytes(const std::vector<int32_t>& host_ids) const {
    std::vector<char> used(size_t(m.E), 0);
    for (int32_t id : host_ids) {
      if (id >= 0 && id < m.E) used[size_t(id)] = 1;
    }
    const double experts = double(std::count(used.begin(), used.end(), 1));
    const double w = e4m3 ? 1 : 2, s = sizeof(float);
    const double expert_scales = double(scales(2 * m.I, m.H, 2) + scales(m.H, m.I, 1)),
                 shared_scales = m.I_s > 0 ? double(scales(2 * m.I_s, m.H, 2) + scales(m.H, m.I_s, 1)) : 0.0;
    return experts * (3.0 * m.I * m.H * w + expert_scales * s) + 3.0 * m.I_s * m.H * w + shared_scales * s +
           2.0 * double(T) * m.H * 2;
  }
  double flops(const std::vector<int32_t>& host_ids) const {
    double pairs = 0;  // FFN pairs: a zero-computation expert's term is O(H)
    for (int32_t id : host_ids) pairs += id >= 0 && id < m.E;
    return 6.0 * m.H * (pairs * m.I + double(T) * m.I_s);
  }
};

//! moe_experts_forward at a target Avg.K beside dense Top-K on the same experts.
void bm_layer_masked_vs_dense(benchmark::State& state) {
  const model_shape& m = layer_models[state.range(0)];
  const int64_t T = state.range(1);
  layer_problem p(m, T);
  const auto dense_ids = skewed_routing(T, m.K, m.E, double(m.K));
  const auto masked_ids = skewed_routing(T, m.K, m.E, target_avg_k(int(state.range(2)), m.K));
  const double dense_s = p.time_experts(dense_ids), masked_s = p.time_experts(masked_ids);
  const double roofline_s = p.roofline_seconds(masked_ids), ideal = p.roofline_seconds(dense_ids) / roofline_s;
  double pairs = 0;
  for (int32_t id : masked_ids) pairs += id >= 0;
  state.counters["avg_k"] = pairs / double(T);  // realised (few tokens miss the target)
  state.counters["dense_us"] = dense_s * 1e6;
  state.counters["speedup"] = dense_s / masked_s;
  state.counters["ideal"] = ideal;
  state.counters["%of_ideal"] = 100.0 * (dense_s / masked_s) / ideal;
  state.counters["roofline_us"] = roofline_s * 1e6;
  state.counters["%roofline"] = 100.0 * roofline_s / masked_s;
  report(state, masked_s, p.bytes(masked_ids), p.flops(masked_ids));
}

//! moe_experts_forward with zero-computation experts (LongCat-Flash's: identity, E/2 of them)
//! taking every other slot, beside dense Top-K on the FFN experts of the same draw; range: T.
void bm_layer_zero_compute(benchmark::State& state) {
  model_shape m = layer_models[0];
  m.identity_experts = m.E / 2;
  const int64_t T = state.range(0);
  layer_problem p(m, T);
  const auto dense_ids = skewed_routing(T, m.K, m.E, double(m.K));
  auto ids = dense_ids;
  for (size_t i = 0; i < ids.size(); i += 2) ids[i] = m.E + int32_t(i / 2 % size_t(m.identity_experts));
  const double dense_s = p.time_experts(dense_ids), s = p.time_experts(ids);
  state.counters["dense_us"] = dense_s * 1e6;
  state.counters["speedup"] = dense_s / s;
  state.counters["ideal"] = p.roofline_seconds(dense_ids) / p.roofline_seconds(ids);
  report(state, s, p.bytes(ids), p.flops(ids));
}

//! The whole moe_forward (router, routing with the mask, experts, combine); range: model, T,
//! mask (0 off: dense Top-K, 1 on), experts (0: bf16; 1: e4m3 weights, W8A16; 2: e4m3 weights
//! and activations, W8A8, where the Hopper kernel runs).
void bm_moe_forward(benchmark::State& state) {
  const model_shape& m = layer_models[state.range(0)];
  const int64_t T = state.range(1);
  const int experts = int(state.range(3));
  if (experts == 2 && beam::device::detail::check_w8a8_device<bf16>() != cudaSuccess) {
    state.SkipWithError("skipped: W8A8 needs the sm_90a Hopper kernel (an sm_90 device and an sm_90a build)");
    return;
  }
  layer_problem p(m, T, experts >= 1);
  if (experts == 2) p.activations = beam::activation_format::e4m3_1x128;
  beam::routing_options options;
  options.top_k = m.K;
  options.rule = state.range(2) != 0 ? beam::routing_rule::mask : beam::routing_rule::top_k;
  const double s = p.time_forward(options);
  const std::vector<int32_t> routed = p.routed();
  double pairs = 0;
  for (int32_t id : routed) pairs += id >= 0;
  state.counters["avg_k"] = pairs / double(T);
  report(state, s, p.bytes(routed), p.flops(routed));
}

//! The rows of the decode latency record (bench/results/*-decode-latency.md, estimated there
//! from the emulator's counts): moe_forward with a router that gives exactly the record's
//! routing (router_for); range: model, T, routing (0: dense Top-K, the mask off; 1, 2, 3: the
//! mask at Avg.K K, 1.23, 0), weights (0: bf16, 1: e4m3 with block_128 scales).
void bm_decode_layer(benchmark::State& state) {
  const model_shape& m = layer_models[state.range(0)];
  const int64_t T = state.range(1);
  const int routing = int(state.range(2));
  const auto ids = skewed_routing(T, m.K, m.E, routing <= 1 ? double(m.K) : routing == 2 ? 1.23 : 0.0);
  layer_problem p(m, T, state.range(3) == 1);
  const exact_router r = router_for(ids, T, m.K, m.E, m.H);
  const auto upload = [](const device_buffer<bf16>& to, const std::vector<float>& values) {
    std::vector<bf16> host(values.size());
    for (size_t i = 0; i < values.size(); ++i) host[i] = __float2bfloat16(values[i]);
    BEAM_CUDA_TRY(cudaMemcpy(to.data(), host.data(), host.size() * sizeof(bf16), cudaMemcpyHostToDevice));
  };
  upload(p.x, r.x);
  upload(p.router, r.w_r);
  upload(p.mask_router, r.w_m);
  beam::routing_options options;
  options.top_k = m.K;
  options.rule = routing != 0 ? beam::routing_rule::mask : beam::routing_rule::top_k;
  const double s = p.time_forward(options);
  if (p.routed() != ids) state.SkipWithError("the router did not give the record's routing");
  double pairs = 0;
  for (int32_t id : ids) pairs += id >= 0;
  state.counters["avg_k"] = pairs / double(T);
  report(state, s, p.bytes(ids), p.flops(ids));
}

void layer_args(benchmark::internal::Benchmark* b) {
  for (int model : {0, 1, 2}) {
    for (int64_t T : {1, 8, 32, 128, 512, 2048, 8192, 16384}) {
      for (int avg_k : {1, 2, 3}) b->Args({model, T, avg_k});
    }
  }
  b->ArgNames({"model", "T", "avgk"})->UseManualTime()->Unit(benchmark::kMicrosecond);
}

void decode_args(benchmark::internal::Benchmark* b) {
  for (int model : {0, 1, 2}) {
    for (int64_t T : {1, 4, 16, 64}) {
      for (int routing : {0, 1, 2, 3}) b->Args({model, T, routing, 0});
      // e4m3 experts: the fp8 traffic record's rows (Qwen3-30B-A3B, DeepSeek-V2-Lite; dense, Avg.K 1.23)
      if (model < 2) {
        for (int routing : {0, 2}) b->Args({model, T, routing, 1});
      }
    }
  }
  b->ArgNames({"model", "T", "routing", "e4m3"})->UseManualTime()->Unit(benchmark::kMicrosecond);
}

void forward_args(benchmark::internal::Benchmark* b) {
  for (int64_t T : {1, 8, 64, 512, 4096}) {
    for (int mask : {0, 1}) b->Args({0, T, mask, 0});
  }
  // fp8 prefill: W8A16 beside W8A8, masked (Qwen3-30B-A3B)
  for (int64_t T : {512, 4096, 16384}) {
    for (int experts : {1, 2}) b->Args({0, T, 1, experts});
  }
  b->ArgNames({"model", "T", "mask", "experts"})->UseManualTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(bm_layer_masked_vs_dense)->Apply(layer_args);
BENCHMARK(bm_layer_zero_compute)
    ->ArgName("T")
    ->Arg(1)->Arg(64)->Arg(4096)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_moe_forward)->Apply(forward_args);
BENCHMARK(bm_decode_layer)->Apply(decode_args);

BEAM_BENCHMARK_MAIN();
