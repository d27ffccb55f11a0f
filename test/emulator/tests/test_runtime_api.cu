// The CUDA runtime API beyond kernels and instructions, against the CUDA Runtime API reference:
// the profiler controls (cuda_profiler_api.h), host functions in stream order
// (cudaLaunchHostFunc) and in captured graphs.
#include "isa_test.cuh"

#include <cuda_profiler_api.h>

#include <vector>

namespace {

__global__ void k_fill(int* out, int value) { out[threadIdx.x] = value; }

TEST_CASE("cudaProfilerStart and cudaProfilerStop succeed") {
  ISA_REQUIRE_DEVICE();
  ISA_CUDA(cudaProfilerStart());
  ISA_CUDA(cudaProfilerStop());
}

//! What the host functions of a stream saw: each reads the pinned word the stream copied from the
//! device, logs it and leaves 2·v + 1 for the next copy back.
struct host_log {
  int* word = nullptr;
  std::vector<int> seen;
};

void CUDART_CB double_plus_one(void* data) {
  auto* log = static_cast<host_log*>(data);
  log->seen.push_back(*log->word);
  *log->word = 2 * *log->word + 1;
}

//! kernel writes v, copy to the host, host function, copy back, twice: each host function runs
//! after the copy before it and before the copy after it (cudaLaunchHostFunc: "The host function
//! is called in stream order"), so the second sees 2·v + 1 and the device ends with 2·(2·v + 1) + 1.
void enqueue_chain(cudaStream_t stream, int* device, host_log& log, int value) {
  k_fill<<<1, 1, 0, stream>>>(device, value);
  for (int round = 0; round < 2; ++round) {
    ISA_CUDA(cudaMemcpyAsync(log.word, device, sizeof(int), cudaMemcpyDeviceToHost, stream));
    ISA_CUDA(cudaLaunchHostFunc(stream, double_plus_one, &log));
    ISA_CUDA(cudaMemcpyAsync(device, log.word, sizeof(int), cudaMemcpyHostToDevice, stream));
  }
}

TEST_CASE("cudaLaunchHostFunc runs in stream order") {
  ISA_REQUIRE_DEVICE();
  isa::buffer<int> device(1);
  host_log log;
  ISA_CUDA(cudaMallocHost(&log.word, sizeof(int)));
  cudaStream_t stream;
  ISA_CUDA(cudaStreamCreate(&stream));
  enqueue_chain(stream, device.get(), log, 5);
  ISA_CUDA(cudaStreamSynchronize(stream));
  CHECK(log.seen == std::vector<int>{5, 11});
  CHECK(device.host()[0] == 23);
  CHECK(cudaLaunchHostFunc(stream, nullptr, &log) == cudaErrorInvalidValue);
  cudaGetLastError();
  ISA_CUDA(cudaStreamDestroy(stream));
  ISA_CUDA(cudaFreeHost(log.word));
}

TEST_CASE("cudaLaunchHostFunc is captured into a graph") {
  ISA_REQUIRE_DEVICE();
  isa::buffer<int> device(1);
  host_log log;
  ISA_CUDA(cudaMallocHost(&log.word, sizeof(int)));
  cudaStream_t stream;
  ISA_CUDA(cudaStreamCreate(&stream));
  ISA_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  enqueue_chain(stream, device.get(), log, 3);
  cudaGraph_t graph;
  ISA_CUDA(cudaStreamEndCapture(stream, &graph));
  CHECK(log.seen.empty());  // captured, not run
  cudaGraphExec_t exec;
  ISA_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (int launch = 0; launch < 2; ++launch) ISA_CUDA(cudaGraphLaunch(exec, stream));
  ISA_CUDA(cudaStreamSynchronize(stream));
  CHECK(log.seen == std::vector<int>{3, 7, 3, 7});
  CHECK(device.host()[0] == 15);
  ISA_CUDA(cudaGraphExecDestroy(exec));
  ISA_CUDA(cudaGraphDestroy(graph));
  ISA_CUDA(cudaStreamDestroy(stream));
  ISA_CUDA(cudaFreeHost(log.word));
}

}  // namespace
