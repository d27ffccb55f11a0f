// The measured ceilings the other benchmarks divide by: device copy bandwidth (cudaMemcpyAsync
// and a 16-byte-vector copy kernel) and the cuBLAS bf16 GEMM rate.
#include "common.cuh"

namespace {

using namespace beam::bench;

//! Device copy bandwidth; range(0): MiB copied, range(1): 0 cudaMemcpyAsync, 1 copy kernel.
void bm_copy(benchmark::State& state) {
  cudaStream_t stream;
  BEAM_CUDA_TRY(cudaStreamCreate(&stream));
  const size_t bytes = size_t(state.range(0)) << 20;
  report(state, 2.0 * bytes / copy_bandwidth(bytes, stream, state.range(1) == 1), 2.0 * bytes, 0);
  BEAM_CUDA_TRY(cudaStreamDestroy(stream));
}

void bm_cublas_bf16_gemm(benchmark::State& state) {
  cudaStream_t stream;
  BEAM_CUDA_TRY(cudaStreamCreate(&stream));
  const int m = int(state.range(0)), n = int(state.range(1)), k = int(state.range(2));
  const double flops = 2.0 * m * n * k;
  report(state, flops / cublas_bf16_gemm_rate(m, n, k, stream), 2.0 * (double(m) * k + double(n) * k + double(m) * n), flops);
  BEAM_CUDA_TRY(cudaStreamDestroy(stream));
}

}  // namespace

BENCHMARK(bm_copy)
    ->ArgNames({"MiB", "kernel"})
    ->ArgsProduct({{256, 1024}, {0, 1}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_cublas_bf16_gemm)
    ->Args({4096, 4096, 4096})
    ->Args({8192, 8192, 8192})
    ->Args({16384, 2048, 768})  // a Qwen3-30B-A3B-sized expert GEMM at prefill
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

BEAM_BENCHMARK_MAIN()
