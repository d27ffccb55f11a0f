// GPU test helpers: device detection with an explicit skip, and a small owning buffer.
#pragma once

#include <cuda_runtime_api.h>
#include <doctest/doctest.h>

#include <utility>
#include <vector>

#include "beam/core/error.cuh"

namespace beam::test {

//! True when a CUDA device can be used; false only where there is no device or no driver
//! (cudaErrorNoDevice, cudaErrorInsufficientDriver). Any other error is a broken GPU setup,
//! not a reason to skip: it throws, so the test fails.
inline bool gpu_available() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) return false;
  BEAM_CUDA_TRY(status);
  return count > 0;
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

  std::vector<T> to_host() const {
    std::vector<T> host(size_);
    BEAM_CUDA_TRY(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace beam::test

//! First statement of every GPU test case: without a device it reports the skip and returns.
#define BEAM_REQUIRE_GPU()                         \
  do {                                             \
    if (!::beam::test::gpu_available()) {          \
      MESSAGE("skipped: no CUDA device");          \
      return;                                      \
    }                                              \
  } while (false)
