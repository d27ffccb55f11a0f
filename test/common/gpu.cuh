// GPU test helpers: an explicit skip without a device, a small owning buffer, and a CUDA
// graph captured from a test's launches.
#pragma once

#include <cuda_runtime_api.h>
#include <doctest/doctest.h>

#include <utility>
#include <vector>

#include "beam/core/error.cuh"

namespace beam::test {

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

  std::vector<T> to_host() const {
    std::vector<T> host(size_);
    BEAM_CUDA_TRY(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

//! A stream and a CUDA graph captured on it: the constructor records `record(stream)` once,
//! `replay()` launches the graph on the same stream, which also serves eager runs.
class captured_graph {
 public:
  template <class Record>
  explicit captured_graph(Record&& record) {
    BEAM_CUDA_TRY(cudaStreamCreate(&stream_));
    BEAM_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal));
    try {
      record(stream_);
    } catch (...) {  // a failed check inside the capture: close it before unwinding
      cudaStreamEndCapture(stream_, &graph_);
      release();
      throw;
    }
    BEAM_CUDA_TRY(cudaStreamEndCapture(stream_, &graph_));
    BEAM_CUDA_TRY(cudaGraphInstantiate(&exec_, graph_, 0));
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
