// Benchmark helpers: CUDA-event timing with medians, L2 flushing, random fills, the measured
// ceilings (device copy bandwidth, cuBLAS bf16 GEMM rate) and the counters built on them.
#pragma once

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "beam/core/dtype.cuh"
#include "beam/core/error.cuh"
#include "workloads.cuh"

namespace beam::bench {

//! Throws unless a cuBLAS call succeeded (benchmarks only).
inline void cublas_try(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string(what) + " failed: cuBLAS status " + std::to_string(int(status)));
  }
}

//! Owning device allocation of n elements.
template <class T>
class device_buffer {
 public:
  explicit device_buffer(size_t n) : size_(n) { BEAM_CUDA_TRY(cudaMalloc(&data_, n * sizeof(T))); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() { cudaFree(data_); }
  T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

namespace detail {
template <class T>
__global__ void fill_uniform_kernel(T* data, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;  // a splitmix64-style hash of (i, seed)
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    const float u = float(x >> 40) * 0x1p-24f;
    data[i] = beam::from_float<T>(lo + (hi - lo) * u);
  }
}
}  // namespace detail

//! Fills `data` with values uniform in [lo, hi) from a seed (benchmarks never run on zeros).
template <class T>
void fill_uniform(T* data, size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f, cudaStream_t stream = nullptr) {
  detail::fill_uniform_kernel<<<1024, 256, 0, stream>>>(data, n, seed, lo, hi);
  BEAM_CUDA_TRY(cudaGetLastError());
}

//! Evicts the L2 cache by writing a buffer twice its size.
class l2_flusher {
 public:
  l2_flusher() : buffer_(2 * l2_bytes()) {}
  void flush(cudaStream_t stream) { BEAM_CUDA_TRY(cudaMemsetAsync(buffer_.data(), 0x5A, buffer_.bytes(), stream)); }
  static size_t l2_bytes() {
    int device = 0, bytes = 0;
    BEAM_CUDA_TRY(cudaGetDevice(&device));
    BEAM_CUDA_TRY(cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, device));
    return size_t(std::max(bytes, 1 << 20));
  }

 private:
  device_buffer<char> buffer_;
};

//! Median seconds of `iterations` timed calls of `work` (after `warmup` untimed ones),
//! each bracketed by CUDA events on `stream`; `before` (e.g. an L2 flush) runs untimed.
inline double median_seconds(cudaStream_t stream, const std::function<void()>& work, int iterations = 20,
                             int warmup = 3, const std::function<void()>& before = {}) {
  if (iterations < 1) throw std::invalid_argument("median_seconds: iterations must be ≥ 1");
  cudaEvent_t start, stop;
  BEAM_CUDA_TRY(cudaEventCreate(&start));
  BEAM_CUDA_TRY(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) work();
  std::vector<double> seconds;
  for (int i = 0; i < iterations; ++i) {
    if (before) before();
    BEAM_CUDA_TRY(cudaEventRecord(start, stream));
    work();
    BEAM_CUDA_TRY(cudaEventRecord(stop, stream));
    BEAM_CUDA_TRY(cudaEventSynchronize(stop));
    float ms = 0.0f;
    BEAM_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
    seconds.push_back(ms * 1e-3);
  }
  BEAM_CUDA_TRY(cudaEventDestroy(start));
  BEAM_CUDA_TRY(cudaEventDestroy(stop));
  std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
  return seconds[seconds.size() / 2];
}

namespace detail {
__global__ void copy_kernel(const int4* __restrict__ src, int4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}
}  // namespace detail

//! Device copy of `bytes` (a multiple of 16): read + written bytes per second, with
//! cudaMemcpyAsync or with a grid-stride kernel of 16-byte loads and stores.
inline double copy_bandwidth(size_t bytes, cudaStream_t stream, bool use_kernel) {
  device_buffer<int4> src(bytes / sizeof(int4)), dst(bytes / sizeof(int4));
  fill_uniform(reinterpret_cast<float*>(src.data()), bytes / sizeof(float), 1, -1, 1, stream);
  int device = 0, sms = 0;
  BEAM_CUDA_TRY(cudaGetDevice(&device));
  BEAM_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const double s = median_seconds(stream, [&] {
    if (use_kernel) {
      detail::copy_kernel<<<sms * 8, 256, 0, stream>>>(src.data(), dst.data(), src.size());
      BEAM_CUDA_TRY(cudaGetLastError());
    } else {
      BEAM_CUDA_TRY(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, stream));
    }
  });
  return 2.0 * double(bytes) / s;
}

//! An owned cuBLAS handle bound to a stream.
class cublas_handle {
 public:
  explicit cublas_handle(cudaStream_t stream) {
    cublas_try(cublasCreate(&handle), "cublasCreate");
    cublas_try(cublasSetStream(handle, stream), "cublasSetStream");
  }
  cublas_handle(const cublas_handle&) = delete;
  cublas_handle& operator=(const cublas_handle&) = delete;
  ~cublas_handle() { cublasDestroy(handle); }
  cublasHandle_t handle = nullptr;
};

//! cuBLAS bf16 GEMM (fp32 accumulation, bf16 output) C[m, n] = A[m, k] · B[n, k]ᵀ: FLOP/s.
inline double cublas_bf16_gemm_rate(int m, int n, int k, cudaStream_t stream) {
  const cublas_handle owner(stream);
  device_buffer<__nv_bfloat16> a(size_t(m) * k), b(size_t(n) * k), c(size_t(m) * n);
  fill_uniform(a.data(), a.size(), 2, -1, 1, stream);
  fill_uniform(b.data(), b.size(), 3, -1, 1, stream);
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major view: Cᵀ[n, m] = B[n, k] · Aᵀ[k, m].
  const double s = median_seconds(stream, [&] {
    cublas_try(cublasGemmEx(owner.handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, b.data(), CUDA_R_16BF, k,
                            a.data(), CUDA_R_16BF, k, &beta, c.data(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
  });
  return 2.0 * double(m) * n * k / s;
}

//! The ceilings every benchmark divides by, measured once per process on the current device.
struct ceilings {
  double copy_bytes_per_s;  //!< the faster of cudaMemcpyAsync and the copy kernel on 1 GiB,
                            //!< read + write bytes per second
  double gemm_flops_per_s;  //!< cuBLAS bf16 GEMM, m = n = k = 8192
};

inline const ceilings& measured_ceilings() {
  static const ceilings value = [] {
    cudaStream_t stream;
    BEAM_CUDA_TRY(cudaStreamCreate(&stream));
    const size_t bytes = size_t(1) << 30;
    const ceilings c{std::max(copy_bandwidth(bytes, stream, false), copy_bandwidth(bytes, stream, true)),
                     cublas_bf16_gemm_rate(8192, 8192, 8192, stream)};
    BEAM_CUDA_TRY(cudaStreamDestroy(stream));
    return c;
  }();
  return value;
}

//! Records one measured median as the benchmark's time and sets the counters:
//! us (median), GB/s and % of the copy ceiling for `bytes`, TFLOP/s and % of the cuBLAS
//! bf16 ceiling for `flops` (either may be 0 to leave those out).
inline void report(benchmark::State& state, double seconds, double bytes, double flops) {
  for (auto _ : state) state.SetIterationTime(seconds);
  const ceilings& c = measured_ceilings();
  state.counters["us"] = seconds * 1e6;
  if (bytes > 0) {
    state.counters["GB/s"] = bytes / seconds * 1e-9;
    state.counters["%copy"] = 100.0 * bytes / seconds / c.copy_bytes_per_s;
  }
  if (flops > 0) {
    state.counters["TFLOP/s"] = flops / seconds * 1e-12;
    state.counters["%gemm"] = 100.0 * flops / seconds / c.gemm_flops_per_s;
  }
}

}  // namespace beam::bench

//! main() of every benchmark executable: without a CUDA device it says so and exits 0.
#define BEAM_BENCHMARK_MAIN()                                                      \
  int main(int argc, char** argv) {                                                \
    if (!::beam::cuda_device_present()) {                                         \
      std::printf("no CUDA device: benchmarks skipped (they need a GPU to run)\n"); \
      return 0;                                                                    \
    }                                                                              \
    ::benchmark::Initialize(&argc, argv);                                          \
    if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;            \
    ::benchmark::RunSpecifiedBenchmarks();                                         \
    ::benchmark::Shutdown();                                                       \
    return 0;                                                                      \
  }
