// The CUDA runtime API beyond kernels and instructions, against the CUDA Runtime API reference:
// the profiler controls (cuda_profiler_api.h), host functions in stream order
// (cudaLaunchHostFunc) and in captured graphs, graphs built node by node, and cooperative launches
// (cudaLaunchCooperativeKernel, cudaLaunchAttributeCooperative) with grid-wide synchronisation.
#include "isa_test.cuh"

#include <cooperative_groups.h>
#include <cuda_profiler_api.h>

#include <algorithm>
#include <utility>
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

namespace {

__global__ void k_add_index(int* out, int add) { out[threadIdx.x] += int(threadIdx.x) + add; }

void CUDART_CB log_id(void* data) {
  auto* entry = static_cast<std::pair<std::vector<int>*, int>*>(data);
  entry->first->push_back(entry->second);
}

//! memset (4-byte elements) -> kernel -> 1-D copy to the host -> host node, built node by node:
//! cudaMemsetParams' value is an element's value (0x01020304 as an int), the kernel adds its index
//! and `add`, whose value is copied when the node is added (cudaGraphAddKernelNode: "kernel
//! parameters are copied"), so changing it afterwards changes nothing.
TEST_CASE("explicit graph: memset, kernel, copy and host nodes run in dependency order") {
  ISA_REQUIRE_DEVICE();
  constexpr int n = 8;
  isa::buffer<int> device(n);
  std::vector<int> host(n, -1);
  cudaGraph_t graph;
  ISA_CUDA(cudaGraphCreate(&graph, 0));

  cudaMemsetParams set{};
  set.dst = device.get();
  set.value = 0x01020304;
  set.elementSize = 4;
  set.width = n;
  set.height = 1;
  cudaGraphNode_t memset_node, kernel_node, copy_node, host_node;
  ISA_CUDA(cudaGraphAddMemsetNode(&memset_node, graph, nullptr, 0, &set));

  int* out = device.get();
  int add = 100;
  void* args[] = {&out, &add};
  cudaKernelNodeParams kernel{};
  kernel.func = reinterpret_cast<void*>(k_add_index);
  kernel.gridDim = dim3(1);
  kernel.blockDim = dim3(n);
  kernel.kernelParams = args;
  ISA_CUDA(cudaGraphAddKernelNode(&kernel_node, graph, &memset_node, 1, &kernel));
  add = 7;

  ISA_CUDA(cudaGraphAddMemcpyNode1D(&copy_node, graph, &kernel_node, 1, host.data(), device.get(), n * sizeof(int),
                                    cudaMemcpyDeviceToHost));
  std::vector<int> seen;
  struct first_word {
    const std::vector<int>* host;
    std::vector<int>* seen;
  } probe{&host, &seen};
  cudaHostNodeParams callback{};
  callback.fn = [](void* data) {
    auto* p = static_cast<first_word*>(data);
    p->seen->push_back((*p->host)[n - 1]);
  };
  callback.userData = &probe;
  ISA_CUDA(cudaGraphAddHostNode(&host_node, graph, &copy_node, 1, &callback));

  cudaGraphExec_t exec;
  ISA_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  ISA_CUDA(cudaGraphLaunch(exec, nullptr));
  ISA_CUDA(cudaDeviceSynchronize());
  for (int i = 0; i < n; ++i) CHECK(host[i] == 0x01020304 + i + 100);
  CHECK(seen == std::vector<int>{0x01020304 + (n - 1) + 100});
  ISA_CUDA(cudaGraphExecDestroy(exec));
  ISA_CUDA(cudaGraphDestroy(graph));
}

//! A diamond of host nodes behind an empty root: each runs after its dependencies, whatever the
//! order of the others; cloning copies the nodes and edges (the clone runs the same after the
//! original is destroyed), and cudaGraphGetNodes counts them, nulls the entries beyond them and
//! returns how many it wrote.
TEST_CASE("explicit graph: empty node, a diamond of dependencies, clone and GetNodes") {
  ISA_REQUIRE_DEVICE();
  std::vector<int> order;
  std::pair<std::vector<int>*, int> ids[] = {{&order, 1}, {&order, 2}, {&order, 3}};
  cudaGraph_t graph;
  ISA_CUDA(cudaGraphCreate(&graph, 0));
  cudaGraphNode_t root, a, b, join;
  ISA_CUDA(cudaGraphAddEmptyNode(&root, graph, nullptr, 0));
  cudaHostNodeParams p{};
  p.fn = log_id;
  p.userData = &ids[0];
  ISA_CUDA(cudaGraphAddHostNode(&a, graph, &root, 1, &p));
  p.userData = &ids[1];
  ISA_CUDA(cudaGraphAddHostNode(&b, graph, &root, 1, &p));
  p.userData = &ids[2];
  const cudaGraphNode_t both[] = {a, b};
  ISA_CUDA(cudaGraphAddHostNode(&join, graph, both, 2, &p));

  size_t count = 0;
  ISA_CUDA(cudaGraphGetNodes(graph, nullptr, &count));
  CHECK(count == 4);
  cudaGraphNode_t nodes[6];
  count = 6;
  ISA_CUDA(cudaGraphGetNodes(graph, nodes, &count));
  CHECK(count == 4);
  CHECK(nodes[4] == nullptr);
  CHECK(nodes[5] == nullptr);
  for (cudaGraphNode_t node : {root, a, b, join}) CHECK(std::count(nodes, nodes + 4, node) == 1);

  cudaGraph_t other;
  ISA_CUDA(cudaGraphCreate(&other, 0));
  cudaGraphNode_t stray;
  CHECK(cudaGraphAddEmptyNode(&stray, other, &root, 1) == cudaErrorInvalidValue);  // root is not other's
  cudaGetLastError();
  ISA_CUDA(cudaGraphDestroy(other));

  cudaGraph_t clone;
  ISA_CUDA(cudaGraphClone(&clone, graph));
  ISA_CUDA(cudaGraphDestroy(graph));
  count = 0;
  ISA_CUDA(cudaGraphGetNodes(clone, nullptr, &count));
  CHECK(count == 4);
  cudaGraphExec_t exec;
  ISA_CUDA(cudaGraphInstantiate(&exec, clone, 0));
  for (int launch = 0; launch < 2; ++launch) ISA_CUDA(cudaGraphLaunch(exec, nullptr));
  ISA_CUDA(cudaDeviceSynchronize());
  REQUIRE(order.size() == 6);
  for (int launch = 0; launch < 2; ++launch) {
    const int* run = order.data() + 3 * launch;
    CHECK(run[2] == 3);  // the join after both branches
    CHECK(std::count(run, run + 2, 1) == 1);
    CHECK(std::count(run, run + 2, 2) == 1);
  }
  ISA_CUDA(cudaGraphExecDestroy(exec));
  ISA_CUDA(cudaGraphDestroy(clone));
}

//! cudaMemcpy3DParms on linear memory: extent.width bytes per row, extent.height rows, extent.depth
//! slices of ysize rows, from srcPos to dstPos (x in bytes); a 2-D memset of 2-byte elements with
//! a pitch. Untouched bytes keep the buffer's 0xEE.
TEST_CASE("explicit graph: 3-D copy of linear memory and a pitched 2-byte memset") {
  ISA_REQUIRE_DEVICE();
  std::vector<unsigned char> pattern(64);
  for (int i = 0; i < 64; ++i) pattern[i] = static_cast<unsigned char>(i);
  isa::buffer<unsigned char> src(pattern), dst(32), rows(32);
  cudaGraph_t graph;
  ISA_CUDA(cudaGraphCreate(&graph, 0));

  cudaMemcpy3DParms copy{};
  copy.srcPtr = make_cudaPitchedPtr(src.get(), 16, 16, 2);  // 2 slices of 2 rows, pitch 16
  copy.srcPos = make_cudaPos(3, 0, 0);
  copy.dstPtr = make_cudaPitchedPtr(dst.get(), 8, 8, 2);  // 2 slices of 2 rows, pitch 8
  copy.dstPos = make_cudaPos(1, 0, 0);
  copy.extent = make_cudaExtent(5, 2, 2);
  copy.kind = cudaMemcpyDeviceToDevice;
  cudaGraphNode_t copy_node, set_node;
  ISA_CUDA(cudaGraphAddMemcpyNode(&copy_node, graph, nullptr, 0, &copy));

  cudaMemsetParams set{};
  set.dst = rows.get();
  set.pitch = 16;
  set.value = 0xABCD;
  set.elementSize = 2;
  set.width = 3;
  set.height = 2;
  ISA_CUDA(cudaGraphAddMemsetNode(&set_node, graph, &copy_node, 1, &set));

  cudaGraphExec_t exec;
  ISA_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  ISA_CUDA(cudaGraphLaunch(exec, nullptr));
  ISA_CUDA(cudaDeviceSynchronize());
  const std::vector<unsigned char> d = dst.host(), r = rows.host();
  for (int row = 0; row < 4; ++row) {  // slice z, row y: row = 2z + y
    for (int x = 0; x < 8; ++x) {
      const int expected = x >= 1 && x < 6 ? row * 16 + 3 + (x - 1) : 0xEE;
      CHECK_MESSAGE(d[row * 8 + x] == expected, "row ", row, " byte ", x);
    }
  }
  for (int row = 0; row < 2; ++row) {
    for (int x = 0; x < 16; ++x) {
      const int expected = x >= 6 ? 0xEE : (x % 2 == 0 ? 0xCD : 0xAB);  // little-endian 0xABCD
      CHECK_MESSAGE(r[row * 16 + x] == expected, "row ", row, " byte ", x);
    }
  }
  ISA_CUDA(cudaGraphExecDestroy(exec));
  ISA_CUDA(cudaGraphDestroy(graph));
}

}  // namespace

namespace {

//! Each block stores its number + 1, waits for the grid (CUDA Programming Guide, "Grid
//! Synchronization": every block of a cooperative launch reaches this_grid().sync() before any
//! goes on), sums everyone's, doubles its own, waits again and sums again: n(n+1)/2 and n(n+1).
__global__ void k_grid_sums(unsigned* values, unsigned* sums) {
  namespace cg = cooperative_groups;
  const unsigned n = gridDim.x;
  if (threadIdx.x == 0) values[blockIdx.x] = blockIdx.x + 1;
  cg::this_grid().sync();
  unsigned sum = 0;
  for (unsigned i = 0; i < n; ++i) sum += values[i];
  cg::this_grid().sync();
  if (threadIdx.x == 0) values[blockIdx.x] *= 2;
  cg::this_grid().sync();
  unsigned doubled = 0;
  for (unsigned i = 0; i < n; ++i) doubled += values[i];
  sums[2 * (blockIdx.x * blockDim.x + threadIdx.x)] = sum;
  sums[2 * (blockIdx.x * blockDim.x + threadIdx.x) + 1] = doubled;
}

void check_grid_sums(const isa::buffer<unsigned>& sums, unsigned blocks) {
  const std::vector<unsigned> s = sums.host();
  for (size_t i = 0; i < s.size(); i += 2) {
    CHECK_MESSAGE(s[i] == blocks * (blocks + 1) / 2, "thread ", i / 2);
    CHECK_MESSAGE(s[i + 1] == blocks * (blocks + 1), "thread ", i / 2);
  }
}

TEST_CASE("cooperative launch: grid synchronisation sees every block's stores") {
  ISA_REQUIRE_DEVICE();
  constexpr unsigned blocks = 6, threads = 64;
  isa::buffer<unsigned> values(blocks), sums(2 * blocks * threads);
  unsigned* v = values.get();
  unsigned* s = sums.get();
  void* args[] = {&v, &s};
  ISA_CUDA(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(k_grid_sums), dim3(blocks), dim3(threads), args, 0,
                                       nullptr));
  ISA_SYNC();
  check_grid_sums(sums, blocks);

  cudaLaunchAttribute cooperative{};
  cooperative.id = cudaLaunchAttributeCooperative;
  cooperative.val.cooperative = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(blocks);
  config.blockDim = dim3(threads);
  config.attrs = &cooperative;
  config.numAttrs = 1;
  ISA_CUDA(cudaMemset(s, 0, sums.bytes()));
  ISA_CUDA(cudaLaunchKernelExC(&config, reinterpret_cast<void*>(k_grid_sums), args));
  ISA_SYNC();
  check_grid_sums(sums, blocks);
}

//! cudaLaunchCooperativeKernel: "The total number of blocks launched cannot exceed the maximum
//! number of blocks per multiprocessor as returned by cudaOccupancyMaxActiveBlocksPerMultiprocessor
//! times the number of multiprocessors as specified by the device attribute
//! cudaDevAttrMultiProcessorCount" (cudaErrorCooperativeLaunchTooLarge).
TEST_CASE("cooperative launch: a grid larger than the resident blocks is refused") {
  ISA_REQUIRE_DEVICE();
  constexpr int threads = 256;
  int per_sm = 0, sms = 0;
  ISA_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_grid_sums, threads, 0));
  ISA_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  REQUIRE(per_sm > 0);
  unsigned* v = nullptr;
  unsigned* s = nullptr;
  void* args[] = {&v, &s};
  CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(k_grid_sums), dim3(per_sm * sms + 1), dim3(threads),
                                    args, 0, nullptr) == cudaErrorCooperativeLaunchTooLarge);
  CHECK(cudaGetLastError() == cudaErrorCooperativeLaunchTooLarge);
  ISA_CUDA(cudaDeviceSynchronize());
}

}  // namespace
