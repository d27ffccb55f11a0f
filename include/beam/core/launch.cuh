//! @file
//! How the stages launch their kernels: programmatic dependent launch where the device has it
//! (compute capability 9.0 and later), so that a kernel's launch and prologue overlap the end of
//! the kernel before it on the stream; and per-device memos of host queries.
#pragma once

#include <cuda_runtime.h>

#include <atomic>

namespace beam::detail {

//! A positive int per device, computed once per `Tag` (e.g. a kernel) and device by
//! `compute(int&)`: host queries that cost microseconds are not repeated on every call.
template <class Tag, class Compute>
cudaError_t per_device_memo(int device, int& value, const Compute& compute) {
  constexpr int devices = 64;  // beyond: computed every time
  static std::atomic<int> known[devices];  // 0: not yet known
  const bool cached = device >= 0 && device < devices;
  if (cached && (value = known[device].load(std::memory_order_relaxed)) > 0) return cudaSuccess;
  if (const cudaError_t status = compute(value); status != cudaSuccess) return status;
  if (cached) known[device].store(value, std::memory_order_relaxed);
  return cudaSuccess;
}

struct compute_capability_tag {};

//! kernel<<<grid, block, shared_bytes, stream>>>(args...) as a programmatic dependent launch
//! (cudaLaunchAttributeProgrammaticStreamSerialization) on compute capability 9.0 and later,
//! a plain launch before: the kernel may start while the kernel before it on the stream is still
//! running, so it calls wait_for_dependencies() before it reads what that kernel writes or writes
//! what it may still read. Capturable in a CUDA graph. Returns the launch's status.
template <class... Params, class... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                             cudaStream_t stream, const Args&... args) {
  int device = 0, major = 0;
  if (const cudaError_t status = cudaGetDevice(&device); status != cudaSuccess) return status;
  if (const cudaError_t status = per_device_memo<compute_capability_tag>(device, major, [&](int& m) {
        return cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, device);
      });
      status != cudaSuccess) {
    return status;
  }
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = major >= 9 ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, args...);
}

//! In a kernel launched by launch_dependent: waits until the kernel before it on the stream
//! has completed and its writes are visible (griddepcontrol.wait). Every thread calls it before
//! it touches that kernel's data; without a programmatic dependency it returns at once.
__device__ inline void wait_for_dependencies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

//! Lets the kernel after this one on the stream begin to launch once every block of this grid
//! has called it or exited (griddepcontrol.launch_dependents); its own wait still waits for
//! this grid to complete.
__device__ inline void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

//! A completion counter in global memory (zero between launches): counts this block's arrival
//! and returns true in the block that brings it to `expected`, which then finds the writes of
//! every block that arrived before it visible (each thread's writes are fenced before its
//! block arrives) and leaves the counter at zero for the next launch. Call it from every thread
//! of the block. An arrival that finds the counter at `expected` or above (a workspace never
//! zeroed) traps rather than go on with data that is not all there; a smaller stale value
//! cannot be told from a real count, hence the contract to zero the counters once.
__device__ inline bool last_to_arrive(unsigned* counter, unsigned expected) {
  __shared__ bool last;
  __threadfence();  // this thread's writes, before its block counts as arrived
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    const unsigned before = atomicAdd(counter, 1u);
    if (before >= expected) __trap();  // the counter was not zero at the launch
    last = before == expected - 1;
    if (last) *counter = 0u;  // every block has counted: nobody touches it again in this launch
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

}  // namespace beam::detail
