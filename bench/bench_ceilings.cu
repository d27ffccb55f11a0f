// The measured ceilings the other benchmarks divide by: device copy bandwidth (cudaMemcpyAsync
// and a 16-byte-vector copy kernel) and the cuBLAS bf16 GEMM rate.
#include "common.cuh"

namespace {

using namespace beam::bench;

__global__ void copy_kernel(const int4* __restrict__ src, int4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}

void bm_memcpy(benchmark::State& state) {
  cudaStream_t stream;
  BEAM_CUDA_TRY(cudaStreamCreate(&stream));
  const size_t bytes = size_t(state.range(0)) << 20;
  report(state, 2.0 * bytes / copy_bandwidth(bytes, stream), 2.0 * bytes, 0);
  BEAM_CUDA_TRY(cudaStreamDestroy(stream));
}

void bm_copy_kernel(benchmark::State& state) {
  cudaStream_t stream;
  BEAM_CUDA_TRY(cudaStreamCreate(&stream));
  const size_t bytes = size_t(state.range(0)) << 20;
  device_buffer<int4> src(bytes / sizeof(int4)), dst(bytes / sizeof(int4));
  fill_uniform(reinterpret_cast<float*>(src.data()), bytes / sizeof(float), 4, -1, 1, stream);
  int device = 0, sms = 0;
  BEAM_CUDA_TRY(cudaGetDevice(&device));
  BEAM_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const double s = median_seconds(stream, [&] {
    copy_kernel<<<sms * 8, 256, 0, stream>>>(src.data(), dst.data(), src.size());
    BEAM_CUDA_TRY(cudaGetLastError());
  });
  report(state, s, 2.0 * bytes, 0);
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

BENCHMARK(bm_memcpy)->Arg(256)->Arg(1024)->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_copy_kernel)->Arg(256)->Arg(1024)->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_cublas_bf16_gemm)
    ->Args({4096, 4096, 4096})
    ->Args({8192, 8192, 8192})
    ->Args({16384, 2048, 768})  // a Qwen3-30B-A3B-sized expert GEMM at prefill
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

BEAM_BENCHMARK_MAIN()
