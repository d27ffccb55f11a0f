// Expert GEMM benchmarks: beam's grouped GEMMs (GEMM 1 gathering X by index with the SwiGLU
// epilogue, GEMM 2 with the ĝ row scale), with the routing's ranges on the device, beside two
// cuBLAS baselines that need the counts on the host first: a cublasGemmEx loop over the
// active experts (what a simple engine does) and cublasGemmGroupedBatchedEx. The baselines
// read a pre-gathered Xp and do no SwiGLU (both in their favour). L2 is flushed before every
// timed call. Each schedule is also timed forced (decode, prefill: the Hopper kernel on
// sm_90, prefill_sm80), to place the automatic crossover and compare the two prefill kernels.
// bm_beam_experts_e4m3 runs the same GEMMs on e4m3 weights with block_128 scales (W8A16: the
// DeepSeek-V3 / Qwen3-FP8 checkpoint format), whose bytes count 1 per weight and the scales;
// beside it bm_cublaslt_e4m3_loop, cuBLASLt's fp8 GEMM (sm_89+) per active expert: W8A8 with
// per-tensor scales on pre-quantised activations, a toolkit ceiling for fp8 GEMMs.
// bm_beam_experts_w8a8 (sm_90a) is beam's W8A8 path as an engine runs it: X quantised once
// (quantize_activations), GEMM 1 on its codes gathered with their scales (SwiGLU, bf16 out),
// the active rows of its output quantised (row count on the device), GEMM 2; all four timed.
// bm_beam_experts_backward times the experts' backward as moe_backward runs it (∂L/∂W2 and
// ∂L/∂W13 by grouped_weight_grad, ∂L/∂A and ∂L/∂X by grouped_gemm_nn on the weights as they lie,
// G | U recomputed, swiglu_backward), beside bm_cublas_backward_loop: the same five GEMMs as
// cublasGemmEx per active expert (counts on the host, pre-gathered X, no SwiGLU backward).
// Range: model index (DESIGN.md §6), T, Avg.K index (K, K/2, 1.23, 0.56).
#include <cublasLt.h>
#include <cub/device/device_scan.cuh>

#include <initializer_list>
#include <vector>

#include "beam/gemm/device_grouped_gemm.cuh"
#include "beam/gemm/device_quantize.cuh"
#include "beam/gemm/device_swiglu_backward.cuh"
#include "beam/gemm/device_weight_grad.cuh"
#include "beam/gemm/weights.cuh"
#include "beam/permute/device_compact.cuh"
#include "common.cuh"

namespace {

using namespace beam::bench;
using bf16 = __nv_bfloat16;
using beam::device::gemm_epilogue;

const model_shape models[] = {{"Qwen3-30B-A3B", 2048, 768, 128, 8},
                              {"DeepSeek-V2-Lite", 2048, 1408, 64, 6},
                              {"Mixtral-8x7B", 4096, 14336, 8, 2}};

//! One layer's experts with a routing and its compaction on the device.
struct expert_problem {
  model_shape m;
  int64_t T, P;
  std::vector<int32_t> host_ids, host_counts;
  device_buffer<bf16> x, xp, w13, w2, act, act_wide, y;
  device_buffer<__nv_fp8_e4m3> w13_e4m3, w2_e4m3;  //!< the same layer's experts as e4m3 codes
  device_buffer<__nv_fp8_e4m3> xp_e4m3, act_e4m3;  //!< cuBLASLt's fp8 inputs: Xp and A as e4m3
  device_buffer<float> w13_scales, w2_scales;       //!< and their block_128 scales
  device_buffer<__nv_fp8_e4m3> x_e4m3;               //!< W8A8: X's codes (act_e4m3 holds A's)
  device_buffer<float> x_scales, act_scales;         //!< and the 1 × 128 scales of X and A
  device_buffer<int32_t> ids, counts, offsets, sorted, rows;
  device_buffer<float> gates;
  int64_t n_active = 0, experts_used = 0;
  cudaStream_t stream;
  l2_flusher l2;  //!< every timed call starts from a cold L2: weights come from HBM

  expert_problem(const model_shape& shape, int64_t tokens, double avg_k)
      : m(shape), T(tokens), P(tokens * shape.K), host_ids(skewed_routing(tokens, shape.K, shape.E, avg_k)),
        x(size_t(tokens) * shape.H), xp(size_t(P) * shape.H), w13(size_t(shape.E) * 2 * shape.I * shape.H),
        w2(size_t(shape.E) * shape.H * shape.I), act(size_t(P) * shape.I), act_wide(size_t(P) * 2 * shape.I),
        y(size_t(P) * shape.H), w13_e4m3(w13.size()), w2_e4m3(w2.size()), xp_e4m3(xp.size()), act_e4m3(act.size()),
        w13_scales(size_t(shape.E) * beam::scales_per_expert(beam::weight_scales::block_128, 2 * shape.I, shape.H, 2)),
        w2_scales(size_t(shape.E) * beam::scales_per_expert(beam::weight_scales::block_128, shape.H, shape.I, 1)),
        x_e4m3(x.size()), x_scales(size_t(tokens) * groups(shape.H)), act_scales(size_t(P) * groups(shape.I)),
        ids(size_t(P)), counts(size_t(shape.E)), offsets(size_t(shape.E) + 1),
        sorted(size_t(P)), rows(size_t(P)), gates(size_t(P)) {
    BEAM_CUDA_TRY(cudaStreamCreate(&stream));
    fill_uniform(x.data(), x.size(), 1, -1, 1, stream);
    fill_uniform(w13.data(), w13.size(), 2, -0.03f, 0.03f, stream);
    fill_uniform(w2.data(), w2.size(), 3, -0.03f, 0.03f, stream);
    fill_uniform(act.data(), act.size(), 4, -1, 1, stream);
    fill_uniform(act_wide.data(), act_wide.size(), 5, -1, 1, stream);
    fill_uniform(xp.data(), xp.size(), 6, -1, 1, stream);
    fill_uniform(gates.data(), gates.size(), 7, 0, 1, stream);
    fill_uniform(w13_e4m3.data(), w13_e4m3.size(), 8, -448, 448, stream);
    fill_uniform(w2_e4m3.data(), w2_e4m3.size(), 9, -448, 448, stream);
    fill_uniform(xp_e4m3.data(), xp_e4m3.size(), 12, -448, 448, stream);
    fill_uniform(act_e4m3.data(), act_e4m3.size(), 13, -448, 448, stream);
    fill_uniform(w13_scales.data(), w13_scales.size(), 10, 1e-5f, 1e-4f, stream);
    fill_uniform(w2_scales.data(), w2_scales.size(), 11, 1e-5f, 1e-4f, stream);
    BEAM_CUDA_TRY(cudaMemcpy(ids.data(), host_ids.data(), host_ids.size() * 4, cudaMemcpyHostToDevice));
    const beam::device::compaction_input in{ids.data(), T, m.K, m.E};
    const beam::device::compaction_outputs out{counts.data(), offsets.data(), sorted.data(), rows.data()};
    size_t bytes = 0;
    BEAM_CUDA_TRY(beam::device::compact(nullptr, bytes, in, out));
    device_buffer<char> workspace(bytes);
    BEAM_CUDA_TRY(beam::device::compact(workspace.data(), bytes, in, out, {}, stream));
    host_counts.resize(size_t(m.E));
    BEAM_CUDA_TRY(cudaMemcpy(host_counts.data(), counts.data(), size_t(m.E) * 4, cudaMemcpyDeviceToHost));
    for (int32_t c : host_counts) {
      n_active += c;
      experts_used += c > 0;
    }
  }
  ~expert_problem() { cudaStreamDestroy(stream); }

  //! The counts on the host, as an engine without device-side ranges must fetch them: a
  //! copy and a stream synchronisation (inside the baselines' timed work).
  const std::vector<int32_t>& fetch_counts() {
    BEAM_CUDA_TRY(cudaMemcpyAsync(host_counts.data(), counts.data(), size_t(m.E) * 4, cudaMemcpyDeviceToHost, stream));
    BEAM_CUDA_TRY(cudaStreamSynchronize(stream));
    return host_counts;
  }

  //! fetch_counts, then f(e, rows, first row) for each expert with rows, in expert order (its
  //! rows are the compaction's, from `first row`).
  template <class F>
  void for_each_active_expert(const F& f) {
    const std::vector<int32_t>& c = fetch_counts();
    int64_t row = 0;
    for (int e = 0; e < m.E; ++e) {
      if (c[size_t(e)] == 0) continue;
      f(e, c[size_t(e)], row);
      row += c[size_t(e)];
    }
  }

  //! Bytes the two GEMMs must move at least: the active experts' weights, X rows, A and Y.
  double bytes() const {
    const double weights = double(experts_used) * 3.0 * m.H * m.I * 2;
    return weights + double(n_active) * (m.H + 2.0 * m.I + m.H) * 2;
  }
  //! The same with e4m3 weights: 1 byte per weight, plus their fp32 block scales.
  double e4m3_bytes() const {
    const double scales = double(w13_scales.size() + w2_scales.size()) / m.E * sizeof(float);
    return double(experts_used) * (3.0 * m.H * m.I + scales) + double(n_active) * (m.H + 2.0 * m.I + m.H) * 2;
  }
  //! The same with e4m3 activations too (W8A8): e4m3 weights (and scales), X and A rows in as
  //! e4m3, A and Y out as bf16.
  double w8a8_bytes() const {
    return e4m3_bytes() - double(n_active) * (m.H + m.I);  // 1 byte instead of 2 per X and A element read
  }
  //! What beam's W8A8 path also moves: X and GEMM 1's active rows read as bf16, written as
  //! codes and scales (quantize_activations).
  double quantization_bytes() const {
    return double(T) * (3.0 * m.H + 4.0 * double(groups(m.H))) + double(n_active) * (3.0 * m.I + 4.0 * double(groups(m.I)));
  }
  //! 1 × 128 groups of a row of k.
  static int64_t groups(int64_t k) { return (k + 127) / 128; }
  double flops() const { return 6.0 * double(n_active) * m.H * m.I; }
  //! The e4m3 experts as the GEMMs take them: W13 and W2 with their block_128 scales.
  beam::device::gemm_b<__nv_fp8_e4m3> e4m3_w13() const {
    return {w13_e4m3.data(), m.H, int64_t(2) * m.I * m.H, w13_scales.data(), beam::weight_scales::block_128};
  }
  beam::device::gemm_b<__nv_fp8_e4m3> e4m3_w2() const {
    return {w2_e4m3.data(), m.I, int64_t(m.H) * m.I, w2_scales.data(), beam::weight_scales::block_128};
  }
  void report_counters(benchmark::State& state) const {
    state.counters["n_active"] = double(n_active);
    state.counters["experts"] = double(experts_used);
  }
};

const model_shape& model_of(const benchmark::State& state) { return models[state.range(0)]; }

//! What the experts' backward adds: ∂L/∂Yp of every row (random), ∂L/∂X of the rows, and the
//! fp32 weight gradients.
struct backward_problem : expert_problem {
  device_buffer<bf16> d_rows, d_x_rows;
  device_buffer<float> d_w13, d_w2;

  backward_problem(const model_shape& shape, int64_t tokens, double avg_k)
      : expert_problem(shape, tokens, avg_k), d_rows(size_t(P) * shape.H), d_x_rows(size_t(P) * shape.H),
        d_w13(w13.size()), d_w2(w2.size()) {
    fill_uniform(d_rows.data(), d_rows.size(), 14, -1, 1, stream);
  }
  //! What these kernels must move: W13 twice (recompute, ∂L/∂X) and W2 once (bf16), the fp32
  //! weight gradients written; per row (bf16) ∂L/∂Yp and X read twice, A once, G | U written,
  //! read, written as [∂L/∂G | ∂L/∂U] and read twice, ∂L/∂A written and read, ∂L/∂X written.
  double backward_bytes() const {
    const double weights = double(experts_used) * m.H * m.I * (4.0 * 2 + 2.0 + 3.0 * 4);
    return weights + double(n_active) * (10.0 * m.H + 26.0 * m.I);
  }
  //! Five GEMMs of 2·H·I or 4·H·I MACs per row: 16·H·I flops.
  double backward_flops() const { return 16.0 * double(n_active) * m.H * m.I; }
};

//! beam: GEMM 1 (X gathered through sorted_pairs, SwiGLU) and GEMM 2 (× ĝ), no host sync.
template <beam::device::gemm_schedule Schedule>
void bm_beam_experts(benchmark::State& state) {
  const model_shape& m = model_of(state);
  expert_problem p(m, state.range(1), target_avg_k(int(state.range(2)), m.K));
  const beam::device::gemm_groups groups{p.offsets.data(), m.E, p.P, p.P};
  const double s = median_seconds(p.stream, [&] {
    BEAM_CUDA_TRY(beam::device::grouped_gemm<bf16, bf16>(
        {p.x.data(), m.H, p.sorted.data(), m.K}, {p.w13.data(), m.H, int64_t(2) * m.I * m.H}, 2 * m.I, m.H, groups,
        {p.act.data(), m.I, gemm_epilogue::swiglu}, Schedule, p.stream));
    BEAM_CUDA_TRY(beam::device::grouped_gemm<bf16, bf16>(
        {p.act.data(), m.I}, {p.w2.data(), m.I, int64_t(m.H) * m.I}, m.H, m.I, groups,
        {p.y.data(), m.H, gemm_epilogue::scale_rows, p.gates.data(), p.sorted.data()}, Schedule, p.stream));
  }, 20, 3, [&] { p.l2.flush(p.stream); });
  p.report_counters(state);
  report(state, s, p.bytes(), p.flops());
}

//! beam with e4m3 experts (W8A16, block_128 scales): GEMM 1 and GEMM 2 as bm_beam_experts.
template <beam::device::gemm_schedule Schedule>
void bm_beam_experts_e4m3(benchmark::State& state) {
  const model_shape& m = model_of(state);
  expert_problem p(m, state.range(1), target_avg_k(int(state.range(2)), m.K));
  const beam::device::gemm_groups groups{p.offsets.data(), m.E, p.P, p.P};
  const beam::device::gemm_b<__nv_fp8_e4m3> w13 = p.e4m3_w13(), w2 = p.e4m3_w2();
  const double s = median_seconds(p.stream, [&] {
    BEAM_CUDA_TRY(beam::device::grouped_gemm<bf16, bf16>({p.x.data(), m.H, p.sorted.data(), m.K}, w13, 2 * m.I, m.H,
                                                         groups, {p.act.data(), m.I, gemm_epilogue::swiglu}, Schedule,
                                                         p.stream));
    BEAM_CUDA_TRY(beam::device::grouped_gemm<bf16, bf16>(
        {p.act.data(), m.I}, w2, m.H, m.I, groups,
        {p.y.data(), m.H, gemm_epilogue::scale_rows, p.gates.data(), p.sorted.data()}, Schedule, p.stream));
  }, 20, 3, [&] { p.l2.flush(p.stream); });
  p.report_counters(state);
  report(state, s, p.e4m3_bytes(), p.flops());
}

//! beam W8A8 (sm_90a; block_128 weights, 1 × 128 activations): X quantised, GEMM 1 on its
//! gathered codes, the active rows of A quantised, GEMM 2. Elsewhere the GEMMs refuse to run:
//! the benchmark reports that and skips.
template <beam::device::gemm_schedule Schedule>
void bm_beam_experts_w8a8(benchmark::State& state) {
  const model_shape& m = model_of(state);
  expert_problem p(m, state.range(1), target_avg_k(int(state.range(2)), m.K));
  const beam::device::gemm_groups groups{p.offsets.data(), m.E, p.P, p.P};
  const beam::device::gemm_b<__nv_fp8_e4m3> w13 = p.e4m3_w13(), w2 = p.e4m3_w2();
  const auto run = [&] {
    cudaError_t status = beam::device::quantize_activations(p.x.data(), m.H, p.T, m.H, p.x_e4m3.data(), m.H,
                                                            p.x_scales.data(), p.groups(m.H), nullptr, p.stream);
    if (status == cudaSuccess) {
      status = beam::device::grouped_gemm<bf16>({p.x_e4m3.data(), m.H, p.sorted.data(), m.K, p.x_scales.data(), p.groups(m.H)},
                                                w13, 2 * m.I, m.H, groups, {p.act.data(), m.I, gemm_epilogue::swiglu},
                                                Schedule, p.stream);
    }
    if (status == cudaSuccess) {
      status = beam::device::quantize_activations(p.act.data(), m.I, p.P, m.I, p.act_e4m3.data(), m.I,
                                                  p.act_scales.data(), p.groups(m.I), p.offsets.data() + m.E, p.stream);
    }
    if (status == cudaSuccess) {
      status = beam::device::grouped_gemm<bf16>(
          {p.act_e4m3.data(), m.I, nullptr, 1, p.act_scales.data(), p.groups(m.I)}, w2, m.H, m.I, groups,
          {p.y.data(), m.H, gemm_epilogue::scale_rows, p.gates.data(), p.sorted.data()}, Schedule, p.stream);
    }
    return status;
  };
  if (const cudaError_t status = run(); status == cudaErrorInvalidDeviceFunction) {
    state.SkipWithError("skipped: W8A8 needs the sm_90a Hopper kernel (an sm_90 device and an sm_90a build)");
    return;
  } else {
    BEAM_CUDA_TRY(status);
  }
  const double s = median_seconds(p.stream, [&] { BEAM_CUDA_TRY(run()); }, 20, 3, [&] { p.l2.flush(p.stream); });
  p.report_counters(state);
  report(state, s, p.w8a8_bytes() + p.quantization_bytes(), p.flops());
}

//! beam: the experts' backward of moe_backward, no host sync (file comment).
void bm_beam_experts_backward(benchmark::State& state) {
  const model_shape& m = model_of(state);
  backward_problem p(m, state.range(1), target_avg_k(int(state.range(2)), m.K));
  const beam::device::gemm_groups groups{p.offsets.data(), m.E, p.P, p.P};
  const beam::device::gemm_b<bf16> w13{p.w13.data(), m.H, int64_t(2) * m.I * m.H}, w2_kn{p.w2.data(), m.I,
                                                                                         int64_t(m.H) * m.I};
  const beam::device::gemm_a<bf16> x{p.x.data(), m.H, p.sorted.data(), m.K};
  const double s = median_seconds(p.stream, [&] {
    BEAM_CUDA_TRY(beam::device::grouped_weight_grad<bf16, float>({p.d_rows.data(), m.H}, {p.act.data(), m.I}, m.H,
                                                                 m.I, groups, p.d_w2.data(), m.I, int64_t(m.H) * m.I,
                                                                 p.stream));
    BEAM_CUDA_TRY(beam::device::grouped_gemm_nn<bf16, bf16>({p.d_rows.data(), m.H}, w2_kn, m.I, m.H, groups,
                                                            {p.act.data(), m.I}, beam::device::gemm_schedule::automatic,
                                                            p.stream));
    BEAM_CUDA_TRY(beam::device::grouped_gemm<bf16, bf16>(x, w13, 2 * m.I, m.H, groups, {p.act_wide.data(), 2 * m.I},
                                                         beam::device::gemm_schedule::automatic, p.stream));
    BEAM_CUDA_TRY(beam::device::swiglu_backward<bf16>(p.act_wide.data(), 2 * m.I, p.act.data(), m.I, p.P, m.I,
                                                      p.act_wide.data(), 2 * m.I, p.offsets.data() + m.E, p.stream));
    BEAM_CUDA_TRY(beam::device::grouped_weight_grad<bf16, float>({p.act_wide.data(), 2 * m.I}, x, 2 * m.I, m.H, groups,
                                                                 p.d_w13.data(), m.H, int64_t(2) * m.I * m.H, p.stream));
    BEAM_CUDA_TRY(beam::device::grouped_gemm_nn<bf16, bf16>({p.act_wide.data(), 2 * m.I}, w13, m.H, 2 * m.I, groups,
                                                            {p.d_x_rows.data(), m.H},
                                                            beam::device::gemm_schedule::automatic, p.stream));
  }, 20, 3, [&] { p.l2.flush(p.stream); });
  p.report_counters(state);
  report(state, s, p.backward_bytes(), p.backward_flops());
}

//! cuBLAS: counts to the host, then per active expert the backward's five GEMMs as
//! cublasGemmEx (column-major views of the row-major arrays; fp32 weight gradients).
void bm_cublas_backward_loop(benchmark::State& state) {
  const model_shape& m = model_of(state);
  backward_problem p(m, state.range(1), target_avg_k(int(state.range(2)), m.K));
  const cublas_handle owner(p.stream);
  const cublasHandle_t handle = owner.handle;
  const float one = 1.0f, zero = 0.0f;
  const auto gemm = [&](cublasOperation_t op_a, cublasOperation_t op_b, int rows_c, int cols_c, int depth,
                        const void* a, int lda, const void* b, int ldb, void* c, cudaDataType c_type, int ldc,
                        const char* what) {
    cublas_try(cublasGemmEx(handle, op_a, op_b, rows_c, cols_c, depth, &one, a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb,
                            &zero, c, c_type, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               what);
  };
  const double s = median_seconds(p.stream, [&] {
    p.for_each_active_expert([&](int e, int rows, int64_t row) {
      const bf16* w13 = p.w13.data() + size_t(e) * 2 * m.I * m.H;
      const bf16* w2 = p.w2.data() + size_t(e) * m.H * m.I;
      const bf16* d_rows = p.d_rows.data() + size_t(row) * m.H;
      const bf16* xp = p.xp.data() + size_t(row) * m.H;
      bf16* act = p.act.data() + size_t(row) * m.I;
      bf16* gu = p.act_wide.data() + size_t(row) * 2 * m.I;
      // ∂L/∂W2ᵀ [I, H] = Aᵀ · ∂L/∂Yp; ∂L/∂Aᵀ [I, rows] = W2ᵀ · ∂L/∂Ypᵀ; [G | U]ᵀ = W13 · Xᵀ;
      // ∂L/∂W13ᵀ [H, 2I] = Xᵀ · [∂L/∂G | ∂L/∂U]; ∂L/∂Xᵀ [H, rows] = W13ᵀ · [∂L/∂G | ∂L/∂U]ᵀ.
      gemm(CUBLAS_OP_N, CUBLAS_OP_T, m.I, m.H, rows, act, m.I, d_rows, m.H, p.d_w2.data() + size_t(e) * m.H * m.I,
           CUDA_R_32F, m.I, "cublasGemmEx (∂W2)");
      gemm(CUBLAS_OP_N, CUBLAS_OP_N, m.I, rows, m.H, w2, m.I, d_rows, m.H, act, CUDA_R_16BF, m.I, "cublasGemmEx (∂A)");
      gemm(CUBLAS_OP_T, CUBLAS_OP_N, 2 * m.I, rows, m.H, w13, m.H, xp, m.H, gu, CUDA_R_16BF, 2 * m.I,
           "cublasGemmEx (G | U)");
      gemm(CUBLAS_OP_N, CUBLAS_OP_T, m.H, 2 * m.I, rows, xp, m.H, gu, 2 * m.I,
           p.d_w13.data() + size_t(e) * 2 * m.I * m.H, CUDA_R_32F, m.H, "cublasGemmEx (∂W13)");
      gemm(CUBLAS_OP_N, CUBLAS_OP_N, m.H, rows, 2 * m.I, w13, m.H, gu, 2 * m.I,
           p.d_x_rows.data() + size_t(row) * m.H, CUDA_R_16BF, m.H, "cublasGemmEx (∂X)");
    });
  }, 20, 3, [&] { p.l2.flush(p.stream); });
  p.report_counters(state);
  report(state, s, p.backward_bytes(), p.backward_flops());
}

//! cuBLAS: counts copied to the host, then one cublasGemmEx per active expert and GEMM.
void bm_cublas_loop(benchmark::State& state) {
  const model_shape& m = model_of(state);
  expert_problem p(m, state.range(1), target_avg_k(int(state.range(2)), m.K));
  const cublas_handle owner(p.stream);
  const cublasHandle_t handle = owner.handle;
  const float one = 1.0f, zero = 0.0f;
  const double s = median_seconds(p.stream, [&] {
    p.for_each_active_expert([&](int e, int rows, int64_t row) {
      // Column-major views: Cᵀ[n, rows] = W[n, k] · Aᵀ[k, rows].
      cublas_try(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, 2 * m.I, rows, m.H, &one,
                              p.w13.data() + size_t(e) * 2 * m.I * m.H, CUDA_R_16BF, m.H,
                              p.xp.data() + size_t(row) * m.H, CUDA_R_16BF, m.H, &zero,
                              p.act_wide.data() + size_t(row) * 2 * m.I, CUDA_R_16BF, 2 * m.I, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (W13)");
      cublas_try(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m.H, rows, m.I, &one,
                              p.w2.data() + size_t(e) * m.H * m.I, CUDA_R_16BF, m.I, p.act.data() + size_t(row) * m.I,
                              CUDA_R_16BF, m.I, &zero, p.y.data() + size_t(row) * m.H, CUDA_R_16BF, m.H,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (W2)");
    });
  }, 20, 3, [&] { p.l2.flush(p.stream); });
  p.report_counters(state);
  report(state, s, p.bytes(), p.flops());
}

//! cuBLASLt fp8 (W8A8, per-tensor scales; sm_89+): counts to the host, then one cublasLtMatmul
//! per active expert and GEMM on the e4m3 weights and pre-quantised activations (no SwiGLU, no
//! quantisation: both in its favour), bf16 out. cuBLASLt's fp8 layout is "TN": A = W (K
//! contiguous per row) transposed, B = the rows (K contiguous) not; the algorithm is its
//! heuristic's choice per call.
void bm_cublaslt_e4m3_loop(benchmark::State& state) {
  int device = 0, major = 0, minor = 0;
  BEAM_CUDA_TRY(cudaGetDevice(&device));
  BEAM_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  BEAM_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major * 10 + minor < 89) {
    state.SkipWithError("cuBLASLt's fp8 GEMM needs sm_89 or later");
    return;
  }
  const model_shape& m = model_of(state);
  expert_problem p(m, state.range(1), target_avg_k(int(state.range(2)), m.K));
  cublasLtHandle_t handle = nullptr;
  cublas_try(cublasLtCreate(&handle), "cublasLtCreate");
  device_buffer<float> unit_scales(2);  // per-tensor scales of A and B
  const float ones[2] = {1.0f, 1.0f};
  BEAM_CUDA_TRY(cudaMemcpy(unit_scales.data(), ones, sizeof(ones), cudaMemcpyHostToDevice));
  device_buffer<char> workspace(size_t(32) << 20);
  cublasLtMatmulDesc_t desc = nullptr;
  cublas_try(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  const float* a_scale = unit_scales.data();
  const float* b_scale = unit_scales.data() + 1;
  cublas_try(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)), "TRANSA");
  cublas_try(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)), "TRANSB");
  cublas_try(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale)),
             "A_SCALE_POINTER");
  cublas_try(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale)),
             "B_SCALE_POINTER");
  const int8_t fast_accumulation = 1;  // Hopper's faster, less precise fp8 accumulation: the ceiling
  cublas_try(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accumulation,
                                            sizeof(fast_accumulation)),
             "FAST_ACCUM");
  const float one = 1.0f, zero = 0.0f;
  // D[n, rows] (column-major) = W[n, k] · X[rows, k]ᵀ: C and D bf16, C unread (beta = 0).
  const auto matmul = [&](const void* w, const void* x, void* d, int n, int rows, int k) {
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublas_try(cublasLtMatrixLayoutCreate(&a, CUDA_R_8F_E4M3, k, n, k), "layout A");
    cublas_try(cublasLtMatrixLayoutCreate(&b, CUDA_R_8F_E4M3, k, rows, k), "layout B");
    cublas_try(cublasLtMatrixLayoutCreate(&c, CUDA_R_16BF, n, rows, n), "layout C");
    const cublasStatus_t status = cublasLtMatmul(handle, desc, &one, w, a, x, b, &zero, d, c, d, c, nullptr,
                                                 workspace.data(), workspace.bytes(), p.stream);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(c);
    cublas_try(status, "cublasLtMatmul (e4m3)");
  };
  const double s = median_seconds(p.stream, [&] {
    p.for_each_active_expert([&](int e, int rows, int64_t row) {
      matmul(p.w13_e4m3.data() + size_t(e) * 2 * m.I * m.H, p.xp_e4m3.data() + size_t(row) * m.H,
             p.act_wide.data() + size_t(row) * 2 * m.I, 2 * m.I, rows, m.H);
      matmul(p.w2_e4m3.data() + size_t(e) * m.H * m.I, p.act_e4m3.data() + size_t(row) * m.I,
             p.y.data() + size_t(row) * m.H, m.H, rows, m.I);
    });
  }, 20, 3, [&] { p.l2.flush(p.stream); });
  cublasLtMatmulDescDestroy(desc);
  cublasLtDestroy(handle);
  p.report_counters(state);
  report(state, s, p.w8a8_bytes(), p.flops());
}

//! cuBLAS grouped: counts to the host, pointer arrays uploaded, one cublasGemmGroupedBatchedEx
//! per GEMM (one group per active expert).
void bm_cublas_grouped(benchmark::State& state) {
  const model_shape& m = model_of(state);
  expert_problem p(m, state.range(1), target_avg_k(int(state.range(2)), m.K));
  const cublas_handle owner(p.stream);
  const cublasHandle_t handle = owner.handle;
  device_buffer<const void*> pointers(size_t(6) * m.E);
  const double s = median_seconds(p.stream, [&] {
    const std::vector<int32_t>& counts = p.fetch_counts();
    std::vector<cublasOperation_t> op_t, op_n;
    std::vector<int> n1, n2, rows_v, k1, k2, ones;
    std::vector<float> alpha, beta;
    std::vector<const void*> host_ptrs;  // [A1 | B1 | C1 | A2 | B2 | C2], one per group each
    std::vector<const void*> a1, b1, c1, a2, b2, c2;
    int64_t row = 0;
    for (int e = 0; e < m.E; ++e) {
      const int rows = counts[size_t(e)];
      if (rows == 0) continue;
      op_t.push_back(CUBLAS_OP_T);
      op_n.push_back(CUBLAS_OP_N);
      n1.push_back(2 * m.I);
      n2.push_back(m.H);
      rows_v.push_back(rows);
      k1.push_back(m.H);
      k2.push_back(m.I);
      ones.push_back(1);
      alpha.push_back(1.0f);
      beta.push_back(0.0f);
      a1.push_back(p.w13.data() + size_t(e) * 2 * m.I * m.H);
      b1.push_back(p.xp.data() + size_t(row) * m.H);
      c1.push_back(p.act_wide.data() + size_t(row) * 2 * m.I);
      a2.push_back(p.w2.data() + size_t(e) * m.H * m.I);
      b2.push_back(p.act.data() + size_t(row) * m.I);
      c2.push_back(p.y.data() + size_t(row) * m.H);
      row += rows;
    }
    const int groups = int(rows_v.size());
    if (groups == 0) return;
    for (const auto* v : {&a1, &b1, &c1, &a2, &b2, &c2}) host_ptrs.insert(host_ptrs.end(), v->begin(), v->end());
    BEAM_CUDA_TRY(cudaMemcpyAsync(pointers.data(), host_ptrs.data(), host_ptrs.size() * sizeof(void*),
                                  cudaMemcpyHostToDevice, p.stream));
    const void* const* d = pointers.data();
    cublas_try(cublasGemmGroupedBatchedEx(handle, op_t.data(), op_n.data(), n1.data(), rows_v.data(), k1.data(),
                                          alpha.data(), d, CUDA_R_16BF, k1.data(), d + groups, CUDA_R_16BF,
                                          k1.data(), beta.data(), const_cast<void* const*>(d + 2 * groups),
                                          CUDA_R_16BF, n1.data(), groups, ones.data(), CUBLAS_COMPUTE_32F),
               "cublasGemmGroupedBatchedEx (W13)");
    cublas_try(cublasGemmGroupedBatchedEx(handle, op_t.data(), op_n.data(), n2.data(), rows_v.data(), k2.data(),
                                          alpha.data(), d + 3 * groups, CUDA_R_16BF, k2.data(), d + 4 * groups,
                                          CUDA_R_16BF, k2.data(), beta.data(),
                                          const_cast<void* const*>(d + 5 * groups), CUDA_R_16BF, n2.data(), groups,
                                          ones.data(), CUBLAS_COMPUTE_32F),
               "cublasGemmGroupedBatchedEx (W2)");
  }, 20, 3, [&] { p.l2.flush(p.stream); });
  p.report_counters(state);
  report(state, s, p.bytes(), p.flops());
}

//! Arguments {model, T, Avg.K index} for the models' full T range at the given Avg.K
//! indices; Mixtral (few, large experts) at T ∈ {1, 64, 2048}, dense Top-2.
void add_args(benchmark::internal::Benchmark* b, std::initializer_list<int> avg_ks) {
  for (int model : {0, 1}) {
    for (int64_t T : {1, 8, 32, 128, 512, 2048, 8192, 16384}) {
      for (int avg_k : avg_ks) b->Args({model, T, avg_k});
    }
  }
  for (int64_t T : {1, 64, 2048}) b->Args({2, T, 0});
  b->ArgNames({"model", "T", "avgk"})->UseManualTime()->Unit(benchmark::kMicrosecond);
}
void expert_args(benchmark::internal::Benchmark* b) { add_args(b, {0, 1, 2, 3}); }
//! The forced schedules: dense Top-K and the sparsest Avg.K.
void schedule_args(benchmark::internal::Benchmark* b) { add_args(b, {0, 3}); }

}  // namespace

using beam::device::gemm_schedule;
BENCHMARK_TEMPLATE(bm_beam_experts, gemm_schedule::automatic)->Name("bm_beam_experts")->Apply(expert_args);
BENCHMARK_TEMPLATE(bm_beam_experts, gemm_schedule::decode)->Name("bm_beam_experts_decode")->Apply(schedule_args);
BENCHMARK_TEMPLATE(bm_beam_experts, gemm_schedule::prefill)->Name("bm_beam_experts_prefill")->Apply(schedule_args);
BENCHMARK_TEMPLATE(bm_beam_experts, gemm_schedule::prefill_sm80)
    ->Name("bm_beam_experts_prefill_sm80")
    ->Apply(schedule_args);
BENCHMARK_TEMPLATE(bm_beam_experts_e4m3, gemm_schedule::automatic)->Name("bm_beam_experts_e4m3")->Apply(expert_args);
BENCHMARK_TEMPLATE(bm_beam_experts_e4m3, gemm_schedule::decode)
    ->Name("bm_beam_experts_e4m3_decode")
    ->Apply(schedule_args);
BENCHMARK_TEMPLATE(bm_beam_experts_e4m3, gemm_schedule::prefill)
    ->Name("bm_beam_experts_e4m3_prefill")
    ->Apply(schedule_args);
BENCHMARK_TEMPLATE(bm_beam_experts_w8a8, gemm_schedule::automatic)->Name("bm_beam_experts_w8a8")->Apply(expert_args);
BENCHMARK(bm_beam_experts_backward)->Apply(schedule_args);
BENCHMARK(bm_cublas_backward_loop)->Apply(schedule_args);
BENCHMARK(bm_cublas_loop)->Apply(expert_args);
BENCHMARK(bm_cublas_grouped)->Apply(expert_args);
BENCHMARK(bm_cublaslt_e4m3_loop)->Apply(expert_args);

BEAM_BENCHMARK_MAIN();
