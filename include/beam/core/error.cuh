//! @file
//! The error convention.
//!
//! Every device-level function returns `[[nodiscard]] cudaError_t`: `cudaSuccess`, a CUDA
//! runtime error from a launch, or `cudaErrorInvalidValue` for arguments rejected on the
//! host (its doc comment lists the reasons). Device-level and device code never throws,
//! prints or exits. (The host reference in `beam::reference` is a test oracle, not a
//! device-level API: it throws `std::invalid_argument` on bad arguments.)
//! Data-dependent problems found on the device are counted into a caller-visible status
//! word and the offending item is skipped.
//!
//! A call reports its own failure only: an error an earlier runtime call left pending (the
//! runtime's last error, not sticky) is neither returned nor cleared, as with the runtime's own
//! calls (kernels are launched with cudaLaunchKernelEx, whose status is the launch's). One
//! exception, once per process: where the driver lacks cuTensorMapEncodeTiled, grouped_gemm's
//! lookup clears the last error its failure leaves. A sticky error (a kernel that faulted)
//! makes every later launch fail with it, as in CUDA itself.
//!
//! Sizes: counts that grow with the batch (T, T·K, rows) are int64_t and every index product
//! that scales with them is 64-bit; pair and row numbers are int32 (T·K ≤ 2³¹ − 1, checked
//! where they are made). Matrix extents (H, I, a GEMM's N and K) and a gather's or combine's K
//! are at most `max_extent`, so that their round-ups and loop steps stay in int.
//!
//! `BEAM_CUDA_TRY` and `cuda_device_present` are for examples, tests and benchmarks only:
//! the first turns a failing `cudaError_t` into a `beam::cuda_error` exception that names
//! the call site.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace beam {

//! Largest matrix extent (H, I, a GEMM's N or K) and gather/combine K an entry point takes:
//! 2³⁰, far beyond any model, with room for rounding up to tiles in int.
inline constexpr int max_extent = 1 << 30;

//! Thrown by `BEAM_CUDA_TRY` (examples, tests, benchmarks; never by the library).
class cuda_error : public std::runtime_error {
 public:
  cuda_error(cudaError_t code, const char* expression, const char* file, int line)
      : std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expression +
                           " failed: " + cudaGetErrorName(code) + " (" + cudaGetErrorString(code) +
                           ")"),
        code_(code) {}

  //! The CUDA error that was returned.
  [[nodiscard]] cudaError_t code() const noexcept { return code_; }

 private:
  cudaError_t code_;
};

}  // namespace beam

//! Evaluates its argument (a `cudaError_t` expression, which may contain commas, e.g.
//! `f<a, b>(x)`) once and throws `beam::cuda_error` unless it is `cudaSuccess`. For
//! examples, tests and benchmarks only.
#define BEAM_CUDA_TRY(...)                                                        \
  do {                                                                            \
    const cudaError_t beam_try_status_ = (__VA_ARGS__);                           \
    if (beam_try_status_ != cudaSuccess) {                                        \
      throw ::beam::cuda_error(beam_try_status_, #__VA_ARGS__, __FILE__, __LINE__); \
    }                                                                             \
  } while (false)

namespace beam {

//! True when a CUDA device can be used; false only where there is no device or no driver
//! (cudaErrorNoDevice, cudaErrorInsufficientDriver). Any other error throws
//! `beam::cuda_error`: a broken GPU setup must not pass for "no GPU here".
inline bool cuda_device_present() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) return false;
  BEAM_CUDA_TRY(status);
  return count > 0;
}

}  // namespace beam
