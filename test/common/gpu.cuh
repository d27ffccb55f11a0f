// GPU test helpers: an explicit skip without a device, a small owning buffer, a CUDA graph
// captured from a test's launches, and whether the device is the PTX emulator.
#pragma once

#include <cuda_runtime_api.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <random>
#include <utility>
#include <vector>

#include "beam/core/dtype.cuh"
#include "beam/core/error.cuh"
#include "beam/core/warp.cuh"

namespace beam::test {

//! True when the current device is the PTX emulator's (its name starts with "beam emulated",
//! e.g. "beam emulated sm_80"), where every thread runs on the host: tests shrink their sweeps
//! there. False without a device. Asked once per process (a function-local static).
inline bool emulated_device() {
  static const bool emulated = [] {
    if (!::beam::cuda_device_present()) return false;
    int device = 0;
    cudaDeviceProp properties{};
    if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&properties, device) != cudaSuccess) {
      (void)cudaGetLastError();  // leave no error behind for a test's next launch check
      return false;
    }
    constexpr char prefix[] = "beam emulated";
    return std::strncmp(properties.name, prefix, sizeof(prefix) - 1) == 0;
  }();
  return emulated;
}

//! Whether beam's Hopper kernels must run: an sm_90 device and sm_90 code (compute_90a in
//! beam's builds) in this binary, by the host-side list of the build's virtual architectures.
inline bool hopper_kernels_expected() {
  int device = 0, major = 0;
  BEAM_CUDA_TRY(cudaGetDevice(&device));
  BEAM_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  constexpr int built[] = {__CUDA_ARCH_LIST__};
  return major == 9 && std::find(std::begin(built), std::end(built), 900) != std::end(built);
}

//! The values of a test sweep: `full` on a GPU; under emulation `emulated`, a subset that
//! keeps every code path the full sweep reaches (the sizes that only scale the work go).
template <class T>
std::vector<T> sweep(std::initializer_list<T> full, std::initializer_list<T> emulated) {
  return emulated_device() ? std::vector<T>(emulated) : std::vector<T>(full);
}

//! `call()`, an entry point that must succeed, made while an earlier runtime call's error is
//! pending (an impossible cudaMalloc: cudaErrorMemoryAllocation, not sticky): an entry point
//! returns its own status and leaves a pending error as it found it (checked here, then
//! cleared), as the runtime's own calls do.
template <class Call>
cudaError_t with_pending_error(const Call& call) {
  void* never = nullptr;
  REQUIRE(cudaMalloc(&never, size_t(1) << 62) == cudaErrorMemoryAllocation);
  const cudaError_t status = call();
  CHECK(cudaGetLastError() == cudaErrorMemoryAllocation);  // neither reported nor cleared
  return status;
}

//! Owning device array for tests.
template <class T>
class device_vector {
 public:
  explicit device_vector(size_t n) : size_(n) { BEAM_CUDA_TRY(cudaMalloc(&data_, n * sizeof(T) + 1)); }
  explicit device_vector(const std::vector<T>& host) : device_vector(host.size()) {
    BEAM_CUDA_TRY(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  device_vector(const device_vector&) = delete;
  device_vector& operator=(const device_vector&) = delete;
  device_vector(device_vector&& other) noexcept : data_(other.data_), size_(other.size_) { other.data_ = nullptr; }
  device_vector& operator=(device_vector&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~device_vector() { cudaFree(data_); }

  T* data() const { return data_; }
  size_t size() const { return size_; }

  //! Fills every byte with 0xFF so elements a kernel fails to write show up (NaN for floats).
  void poison() { BEAM_CUDA_TRY(cudaMemset(data_, 0xFF, size_ * sizeof(T))); }

  //! A workspace of route_decode / moe_forward as the API asks for it: its completion counters
  //! (the first workspace_counter_bytes) zeroed once; every other byte poisoned, since nothing
  //! else needs zeroing.
  static device_vector workspace(size_t bytes) {
    device_vector w(bytes);
    w.poison();
    BEAM_CUDA_TRY(cudaMemset(w.data_, 0, std::min(bytes, beam::device::workspace_counter_bytes)));
    return w;
  }

  std::vector<T> to_host() const {
    std::vector<T> host(size_);
    BEAM_CUDA_TRY(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

//! n values N(0, 1) in storage type T (float, __half, __nv_bfloat16), from a seed.
template <class T>
std::vector<T> random_values(size_t n, uint64_t seed) {
  std::vector<T> v(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& x : v) x = beam::from_float<T>(normal(rng));
  return v;
}

//! The values of a storage-type array as float.
template <class T>
std::vector<float> as_float(const std::vector<T>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = beam::to_float(v[i]);
  return out;
}

//! A stream and a CUDA graph captured on it: the constructor records `record(stream)` once,
//! `replay()` launches the graph on the same stream, which also serves eager runs.
class captured_graph {
 public:
  template <class Record>
  explicit captured_graph(Record&& record) {
    try {
      BEAM_CUDA_TRY(cudaStreamCreate(&stream_));
      BEAM_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal));
      record(stream_);
      BEAM_CUDA_TRY(cudaStreamEndCapture(stream_, &graph_));
      BEAM_CUDA_TRY(cudaGraphInstantiate(&exec_, graph_, 0));
    } catch (...) {  // e.g. a failed check inside the capture: close it, release, rethrow
      cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
      if (stream_ && cudaStreamIsCapturing(stream_, &capturing) == cudaSuccess &&
          capturing != cudaStreamCaptureStatusNone) {
        cudaGraph_t partial = nullptr;
        cudaStreamEndCapture(stream_, &partial);
        if (partial) cudaGraphDestroy(partial);
      }
      release();
      throw;
    }
  }
  captured_graph(const captured_graph&) = delete;
  captured_graph& operator=(const captured_graph&) = delete;
  ~captured_graph() { release(); }

  void replay() const { BEAM_CUDA_TRY(cudaGraphLaunch(exec_, stream_)); }
  cudaStream_t stream() const { return stream_; }

 private:
  void release() {
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace beam::test

//! First statement of every GPU test case: without a device it reports the skip and returns.
#define BEAM_REQUIRE_GPU()                         \
  do {                                             \
    if (!::beam::cuda_device_present()) {          \
      MESSAGE("skipped: no CUDA device");          \
      return;                                      \
    }                                              \
  } while (false)
