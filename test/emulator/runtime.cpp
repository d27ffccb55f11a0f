// The CUDA runtime API, emulated: it stands in for libcudart in test executables, so that the
// PTX of their kernels runs on the emulator's device model (engine.hpp) on the host.
//
// Everything runs synchronously on the calling host thread, one call at a time (one lock): a
// kernel launch, copy or memset executes when it is enqueued, which keeps every stream in
// order; an event records the host time. How it differs from libcudart:
//  - One device, 0, as the active device model (BEAM_EMULATOR_DEVICE) describes it. Device
//    memory is host memory whose allocations the engine records: every kernel access and
//    every copy is checked against them. Pinned host memory is plain host memory, which
//    kernels cannot access (no mapped or managed memory).
//  - A kernel's PTX is the fatbinary's compute_80 (sm_80 model) or compute_90a (sm_90a), else,
//    as the driver JIT-compiles, its newest older compute_XX; read and parsed on the first use
//    of one of its kernels or variables. SASS is never used.
//  - A kernel fault (cudaErrorIllegalAddress, ...) is sticky as on a GPU: every later call
//    returns it, until cudaDeviceReset; only pure device queries (cudaGetDeviceCount,
//    cudaGetDevice, cudaGetDeviceProperties, cudaDeviceGetAttribute, the versions) still work.
//  - A call that fails says why on stderr ("beam emulator: ..."). A flag, kind or attribute
//    that is not emulated prints "beam emulator: unsupported: <function>(<what>)" and returns
//    cudaErrorNotSupported. Runtime functions not defined here fail to link.
//  - Stream capture records kernel launches (their arguments copied by the PTX parameter
//    layout), copies, memsets and host functions in call order, for every stream taking part
//    (joined through cudaEventRecord + cudaStreamWaitEvent), each node depending on the one
//    before. While a
//    cudaStreamCaptureModeGlobal capture (or a ThreadLocal one, on its thread) is active,
//    calls that may synchronise implicitly (cudaMalloc, cudaFree, cudaMallocHost,
//    cudaHostAlloc, cudaFreeHost, cudaDeviceSynchronize, cudaDeviceReset) fail with
//    cudaErrorStreamCaptureUnsupported and invalidate it; so does synchronising or querying a
//    capturing stream. Work on the legacy default stream (cudaMemcpy, cudaMemset, ...) while a
//    blocking stream captures fails with cudaErrorStreamCaptureImplicit and invalidates that
//    capture. An invalidated capture fails later work on its streams with
//    cudaErrorStreamCaptureInvalidated and ends (cudaStreamEndCapture) without a graph.
//    Not emulated: unjoined-work and cross-thread checks, waits on events recorded outside
//    the capture (they add nothing).
//  - Graphs are also built node by node (cudaGraphCreate, cudaGraphAdd{Kernel,Memcpy,Memcpy1D,
//    Memset,Host,Empty}Node, cudaGraphClone, cudaGraphGetNodes); a node's dependencies are nodes
//    added before it, and a launch runs the nodes one after another in the order they were
//    added, which respects every dependency. Not emulated (they fail to link): edges added
//    later (cudaGraphAddDependencies), node queries and updates, child graph, event and memory
//    nodes, cudaGraphExecUpdate.
//  - A cooperative launch (cudaLaunchCooperativeKernel, cudaLaunchAttributeCooperative) runs its
//    blocks interleaved, all resident, with a grid workspace for cooperative groups' grid
//    synchronisation; captured, it stays cooperative.
//  - cudaProfilerStart and cudaProfilerStop do nothing (no profiler collects here).
//  - What kernels print (device printf, failed asserts' messages) is written where CUDA flushes its
//    printf buffer: at the start of a launch, the synchronisations, the blocking copies and
//    cudaDeviceReset (flushing_api); its size limit is not emulated.
//  - Launch log: with BEAM_EMULATOR_LAUNCH_LOG=<file>, each kernel run appends its mangled
//    name as one line to <file>, which the first registered fatbinary creates (a program that
//    launches nothing leaves it empty: it ran).
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "engine.hpp"
#include "fatbin.hpp"
#include "tensor_map.hpp"

// The hooks that nvcc's host code calls (crt/host_runtime.h, crt/device_functions.h).
extern "C" {
void** __cudaRegisterFatBinary(void* fatCubin);
void __cudaRegisterFatBinaryEnd(void** fatCubinHandle);
void __cudaUnregisterFatBinary(void** fatCubinHandle);
void __cudaRegisterFunction(void** fatCubinHandle, const char* hostFun, char* deviceFun, const char* deviceName,
                            int thread_limit, uint3* tid, uint3* bid, dim3* bDim, dim3* gDim, int* wSize);
void __cudaRegisterVar(void** fatCubinHandle, char* hostVar, char* deviceAddress, const char* deviceName, int ext,
                       size_t size, int constant, int global);
char __cudaInitModule(void** fatCubinHandle);
unsigned __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim, size_t sharedMem, struct CUstream_st* stream);
cudaError_t __cudaPopCallConfiguration(dim3* gridDim, dim3* blockDim, size_t* sharedMem, void* stream);
cudaError_t __cudaGetKernel(cudaKernel_t* kernel, const void* hostFun);
cudaError_t __cudaLaunchKernel(cudaKernel_t kernel, dim3 gridDim, dim3 blockDim, void** args, size_t sharedMem,
                               cudaStream_t stream);
}

namespace {

using host_clock = std::chrono::steady_clock;

//! Prints "beam emulator: <message>" as one line on stderr.
void report(const std::string& message) { std::fprintf(stderr, "beam emulator: %s\n", message.c_str()); }

//! The one way a call fails here: it says why on stderr, then returns `status`.
cudaError_t fail(cudaError_t status, const std::string& why) {
  report(why);
  return status;
}

//! The answer to a flag, kind or attribute that the emulator does not implement.
cudaError_t unsupported(const char* function, const std::string& what) {
  return fail(cudaErrorNotSupported, std::string("unsupported: ") + function + "(" + what + ")");
}

std::string hex(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

std::string hex(unsigned long long value) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%llx", value);
  return text;
}

std::string dims(dim3 d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

const emu::device_model& model() { return emu::active_device_model(); }

//! "compute_80", "compute_90a": the PTX the active model runs.
std::string model_ptx() { return "compute_" + std::to_string(model().ptx_arch) + (model().arch_specific ? "a" : ""); }

//! A fatbinary registered by an object's static constructor; its PTX is parsed on first use.
struct fatbinary {
  const void* wrapper = nullptr;
  int index = 0;             // registration order, for messages
  std::string first_kernel;  // for messages
  bool load_attempted = false;
  cudaError_t load_status = cudaSuccess;
  std::string load_problem;  // why loading failed
  std::unique_ptr<emu::module> module;
};

//! A registered __device__ or __constant__ variable.
struct variable {
  fatbinary* binary = nullptr;
  std::string name;
};

}  // namespace

//! A registered kernel, found by its host stub's address; also what a cudaKernel_t points to.
struct CUkern_st {
  fatbinary* binary = nullptr;
  std::string name;                     // mangled .entry name
  const emu::kernel* kernel = nullptr;  // found on first use
  int max_dynamic_shared = -1;          // cudaFuncAttributeMaxDynamicSharedMemorySize; -1: the default
  int carveout = -1;                    // cudaFuncAttributePreferredSharedMemoryCarveout
};

namespace {

//! Work recorded by a stream capture. A kernel's arguments are copied into `params`, laid
//! out as the PTX declares its parameters.
struct kernel_node {
  CUkern_st* function = nullptr;
  dim3 grid, block;
  size_t shared = 0;
  std::vector<unsigned char> params;
  bool programmatic = false;  //!< launched with programmatic stream serialization allowed
  bool cooperative = false;   //!< a cooperative launch: every block resident at once
};
//! `height` rows of `width` bytes (a 1-D copy is one row).
struct copy_node {
  void* dst = nullptr;
  size_t dpitch = 0;
  const void* src = nullptr;
  size_t spitch = 0, width = 0, height = 1;
  cudaMemcpyKind kind = cudaMemcpyDefault;
};
//! `height` rows of `width` bytes set to `value`'s low `element_size` bytes, element by element.
struct set_node {
  void* dst = nullptr;
  size_t pitch = 0;
  int value = 0;
  size_t width = 0, height = 1;
  unsigned element_size = 1;
};
//! cudaLaunchHostFunc: `fn(data)` on the host, in stream order.
struct host_node {
  cudaHostFn_t fn = nullptr;
  void* data = nullptr;
};
//! cudaGraphAddEmptyNode: nothing to run, only dependencies.
struct empty_node {};
using node = std::variant<kernel_node, copy_node, set_node, host_node, empty_node>;

struct capture;

}  // namespace

struct CUgraphNode_st {
  node work;
  std::vector<CUgraphNode_st*> dependencies;
};
//! A graph's nodes in the order they were added: each node's dependencies were added before it
//! (explicit nodes may depend only on existing ones; a captured node depends on the one before
//! it), so this order runs every node after its dependencies.
struct CUgraph_st {
  std::vector<std::unique_ptr<CUgraphNode_st>> nodes;
  CUgraphNode_st* add(node work, std::vector<CUgraphNode_st*> dependencies) {
    nodes.push_back(std::make_unique<CUgraphNode_st>(CUgraphNode_st{std::move(work), std::move(dependencies)}));
    return nodes.back().get();
  }
  //! Captured work: after everything captured before it.
  void append(node work) {
    std::vector<CUgraphNode_st*> dependencies;
    if (!nodes.empty()) dependencies.push_back(nodes.back().get());
    add(std::move(work), std::move(dependencies));
  }
};
struct CUgraphExec_st {
  std::vector<node> nodes;
};
struct CUstream_st {
  unsigned flags = cudaStreamDefault;
  capture* capturing = nullptr;  // the capture this stream takes part in
  uint64_t last_kernel = 0;      // the launch that ran last on it, if its last work was a kernel
  std::string last_kernel_name;
};
struct CUevent_st {
  unsigned flags = cudaEventDefault;
  bool recorded = false;  // outside a capture, with `time`
  host_clock::time_point time;
  unsigned long long captured_in = 0;  // id of the capture that recorded it last, or 0
};

namespace {

//! A stream capture in progress: its origin stream, mode and the graph it records into.
struct capture {
  unsigned long long id = 0;
  CUstream_st* origin = nullptr;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;
  std::unique_ptr<CUgraph_st> graph = std::make_unique<CUgraph_st>();
  bool invalidated = false;
};

//! The live objects behind one kind of handle.
template <class T>
class registry {
 public:
  T* add(std::unique_ptr<T> item = std::make_unique<T>()) {
    T* handle = item.get();
    items_.emplace(handle, std::move(item));
    return handle;
  }
  bool contains(const T* handle) const { return items_.count(const_cast<T*>(handle)) != 0; }
  bool erase(T* handle) { return items_.erase(handle) != 0; }
  void clear() { items_.clear(); }
  template <class F>
  void for_each(F&& f) {
    for (auto& item : items_) f(*item.second);
  }

 private:
  std::unordered_map<T*, std::unique_ptr<T>> items_;
};

struct runtime {
  std::recursive_mutex mutex;
  cudaError_t sticky = cudaSuccess;  // the kernel fault that every later call returns
  std::vector<std::unique_ptr<fatbinary>> binaries;
  std::unordered_map<const void*, std::unique_ptr<CUkern_st>> functions;  // by host stub address
  std::unordered_set<const CUkern_st*> kernel_handles;
  std::unordered_map<const void*, variable> variables;  // by host shadow address
  std::unordered_map<void*, size_t> allocations;        // cudaMalloc'ed, with their sizes
  size_t allocated_bytes = 0;
  std::unordered_set<void*> host_allocations;  // cudaMallocHost / cudaHostAlloc
  CUstream_st legacy_stream, per_thread_stream;
  registry<CUstream_st> streams;
  registry<CUevent_st> events;
  registry<CUgraph_st> graphs;
  registry<CUgraphExec_st> graph_execs;
  std::map<unsigned long long, std::unique_ptr<capture>> captures;  // active ones, by id
  unsigned long long next_capture_id = 1;
  uint64_t launches = 0;  // kernel launches run so far: the next one's id is launches + 1
};

//! The runtime's state: created on first use (registration runs in static constructors) and
//! never destroyed, so that the calls of destructors at exit still find it.
runtime& rt() {
  static runtime* const state = new runtime;
  return *state;
}

thread_local cudaError_t last_error = cudaSuccess;

struct launch_config {
  dim3 grid, block;
  size_t shared = 0;
  cudaStream_t stream = nullptr;
};
thread_local std::vector<launch_config> pushed_configs;  // <<<...>>> until the stub pops it

//! Runs one API call: under the lock; with the sticky error instead, once a kernel has faulted,
//! unless `after_fault` (a pure device query); an escaping exception becomes an error. A
//! failure becomes the calling thread's last error.
template <class Body>
cudaError_t call(bool after_fault, Body&& body) noexcept {
  cudaError_t status = cudaSuccess;
  try {
    std::lock_guard<std::recursive_mutex> lock(rt().mutex);
    status = !after_fault && rt().sticky != cudaSuccess ? rt().sticky : body();
  } catch (const std::bad_alloc&) {
    status = fail(cudaErrorMemoryAllocation, "out of host memory");
  } catch (const std::exception& e) {
    status = fail(cudaErrorUnknown, e.what());
  }
  if (status != cudaSuccess) last_error = status;
  return status;
}
template <class Body>
cudaError_t api(Body&& body) noexcept {
  return call(false, body);
}
template <class Body>
cudaError_t device_query(Body&& body) noexcept {
  return call(true, body);
}
//! As api(), where CUDA writes out the device's printf buffer (CUDA Programming Guide, "Formatted
//! Output": a synchronisation, a blocking copy): what the kernels before it printed is written
//! first, after a kernel fault too.
template <class Body>
cudaError_t flushing_api(Body&& body) noexcept {
  {
    std::lock_guard<std::recursive_mutex> lock(rt().mutex);
    emu::flush_device_output();
  }
  return api(body);
}

//! Runs a registration hook, which has no way to report an error: a failure is fatal.
template <class Body>
void hook(const char* name, Body&& body) noexcept {
  try {
    std::lock_guard<std::recursive_mutex> lock(rt().mutex);
    body();
  } catch (const std::exception& e) {
    report(std::string(name) + ": " + e.what());
    std::abort();
  }
}

fatbinary& binary_of(void** handle) { return *reinterpret_cast<fatbinary*>(handle); }

// ---- Modules and kernels ----

//! Reads the fatbinary's PTX for the active model and parses it, once; later calls return
//! the first outcome (load_problem says why it failed).
cudaError_t load(fatbinary& b) {
  if (b.load_attempted) return b.load_status;
  b.load_attempted = true;
  std::string text, ptx_name;
  try {
    const std::vector<emu::fatbin_entry> entries = emu::read_fatbin(b.wrapper);
    const emu::fatbin_entry* ptx = nullptr;
    std::string present;
    // As the driver JIT-compiles: the model's own PTX (compute_90a on sm_90a), else the newest
    // of an older virtual architecture (another's arch-specific PTX never runs).
    for (const emu::fatbin_entry& e : entries) {
      present += (present.empty() ? "" : ", ") + emu::arch_name(e);
      if (e.kind != emu::fatbin_entry::ptx) continue;
      const bool runs = e.arch_specific ? model().arch_specific && e.arch == model().ptx_arch : e.arch <= model().ptx_arch;
      if (runs && (ptx == nullptr || e.arch > ptx->arch || (e.arch == ptx->arch && e.arch_specific))) ptx = &e;
    }
    if (ptx == nullptr) {
      b.load_status = cudaErrorNoKernelImageForDevice;
      b.load_problem = "no PTX the " + model().name + " runs (" + model_ptx() + " or an older compute_XX; the fatbinary has " +
                       (present.empty() ? "nothing" : present) + "; build with -gencode arch=" + model_ptx() +
                       ",code=" + model_ptx() + ")";
      return b.load_status;
    }
    text = emu::ptx_text(*ptx);
    ptx_name = emu::arch_name(*ptx);
  } catch (const std::exception& e) {
    b.load_status = cudaErrorInvalidKernelImage;
    b.load_problem = e.what();
    return b.load_status;
  }
  try {
    b.module = emu::module::parse(text, ptx_name + " PTX of fatbinary #" + std::to_string(b.index) +
                                            (b.first_kernel.empty() ? "" : " (with " + b.first_kernel + ")"));
  } catch (const std::exception& e) {
    b.load_status = cudaErrorInvalidPtx;
    b.load_problem = e.what();
  }
  return b.load_status;
}

//! The kernel that `func` names: a host stub's address, or a cudaKernel_t; null if neither.
CUkern_st* find_function(const void* func) {
  runtime& r = rt();
  if (const auto it = r.functions.find(func); it != r.functions.end()) return it->second.get();
  const auto* handle = static_cast<const CUkern_st*>(func);
  return r.kernel_handles.count(handle) != 0 ? const_cast<CUkern_st*>(handle) : nullptr;
}

cudaError_t not_a_kernel(const char* function, const void* func) {
  return fail(cudaErrorInvalidDeviceFunction, std::string(function) + ": " + hex(func) + " is not a registered kernel");
}

//! The kernel's attributes, loading its fatbinary and finding its .entry on first use.
cudaError_t resolve(CUkern_st& f, const emu::kernel_info** info) {
  if (f.kernel == nullptr) {
    if (const cudaError_t status = load(*f.binary); status != cudaSuccess) {
      return fail(status, std::string(status == cudaErrorInvalidPtx ? "invalid PTX: " : "") + "kernel " + emu::demangled(f.name) + ": " +
                              f.binary->load_problem);
    }
    std::string problem;
    f.kernel = f.binary->module->find_kernel(f.name, problem);
    if (f.kernel == nullptr) {
      if (!problem.empty()) return fail(cudaErrorInvalidPtx, "invalid PTX: kernel " + emu::demangled(f.name) + ": " + problem);
      return fail(cudaErrorInvalidDeviceFunction, "kernel " + emu::demangled(f.name) + " is registered but not in its PTX");
    }
  }
  *info = &f.binary->module->info(*f.kernel);
  return cudaSuccess;
}

//! The dynamic shared memory a launch of `f` may use: as set by cudaFuncSetAttribute, else
//! the default per-block limit less the kernel's static shared memory.
size_t max_dynamic_shared(const CUkern_st& f, const emu::kernel_info& info) {
  if (f.max_dynamic_shared >= 0) return size_t(f.max_dynamic_shared);
  const size_t limit = model().shared_per_block;
  return info.static_shared_bytes < limit ? limit - info.static_shared_bytes : 0;
}

//! Checks a launch configuration against the device and the kernel, as the runtime does
//! before anything runs.
cudaError_t check_launch(CUkern_st& f, dim3 grid, dim3 block, size_t shared, const emu::kernel_info** info) {
  if (const cudaError_t status = resolve(f, info); status != cudaSuccess) return status;
  const emu::device_model& m = model();
  const unsigned g[3] = {grid.x, grid.y, grid.z}, b[3] = {block.x, block.y, block.z};
  for (int i = 0; i < 3; ++i) {
    if (g[i] == 0 || g[i] > unsigned(m.max_grid[i]) || b[i] == 0 || b[i] > unsigned(m.max_block[i])) {
      return fail(cudaErrorInvalidConfiguration, "launch of " + emu::demangled(f.name) + ": grid " + dims(grid) + " or block " +
                                                     dims(block) + " outside the device's limits");
    }
  }
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads > uint64_t(m.max_threads_per_block)) {
    return fail(cudaErrorInvalidConfiguration, "launch of " + emu::demangled(f.name) + ": " + std::to_string(threads) +
                                                   " threads per block, the device allows " +
                                                   std::to_string(m.max_threads_per_block));
  }
  if (threads > uint64_t((*info)->max_threads_per_block)) {
    return fail(cudaErrorLaunchOutOfResources, "launch of " + emu::demangled(f.name) + ": " + std::to_string(threads) +
                                                   " threads per block, the kernel allows " +
                                                   std::to_string((*info)->max_threads_per_block));
  }
  if (shared > max_dynamic_shared(f, **info)) {
    return fail(cudaErrorInvalidValue, "launch of " + emu::demangled(f.name) + ": " + std::to_string(shared) +
                                           " bytes of dynamic shared memory, the kernel allows " +
                                           std::to_string(max_dynamic_shared(f, **info)) +
                                           " (cudaFuncAttributeMaxDynamicSharedMemorySize)");
  }
  return cudaSuccess;
}

bool sticky_error(cudaError_t status) {
  switch (status) {
    case cudaErrorIllegalAddress:
    case cudaErrorMisalignedAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorIllegalInstruction:
    case cudaErrorLaunchTimeout:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorInvalidPc:
    case cudaErrorInvalidAddressSpace: return true;
    default: return false;
  }
}

//! The file BEAM_EMULATOR_LAUNCH_LOG names, opened for appending on the first call; or null.
FILE* launch_log() {
  static FILE* const log = [] {
    const char* path = std::getenv("BEAM_EMULATOR_LAUNCH_LOG");
    if (path == nullptr || *path == '\0') return static_cast<FILE*>(nullptr);
    FILE* file = std::fopen(path, "a");
    if (file == nullptr) report(std::string("cannot open BEAM_EMULATOR_LAUNCH_LOG=") + path);
    return file;
  }();
  return log;
}

//! Appends the kernel's name to the launch log, if any.
void log_launch(const std::string& name) {
  FILE* const log = launch_log();
  if (log == nullptr) return;
  std::fprintf(log, "%s\n", name.c_str());
  std::fflush(log);
}

//! Runs a checked launch now on stream `s`; a kernel fault becomes the sticky error. With
//! `programmatic` (programmatic dependent launch, compute capability 9.0 and later), the kernel
//! that ran just before it on the stream is its primary: the engine reports a thread that
//! touches the primary's stores before its griddepcontrol.wait.
cudaError_t run_kernel(CUkern_st& f, dim3 grid, dim3 block, size_t shared, void** args, bool programmatic,
                       bool cooperative, CUstream_st& s) {
  emu::flush_device_output();  // as CUDA does at the start of a launch
  log_launch(f.name);
  emu::launch_params params;
  params.grid = grid;
  params.block = block;
  params.dynamic_shared_bytes = shared;
  params.args = args;
  params.id = ++rt().launches;
  params.cooperative = cooperative;
  if (programmatic && model().major >= 9) {
    params.predecessor = s.last_kernel;
    params.predecessor_kernel = s.last_kernel_name;
  }
  s.last_kernel = params.id;
  s.last_kernel_name = f.name;
  const cudaError_t status = emu::launch(*f.kernel, params);
  if (sticky_error(status)) rt().sticky = status;
  return status;
}

//! Registers per thread as ptxas would allocate them at most: the virtual-register estimate,
//! capped by what ptxas must honour — .maxnreg, and with .maxntid (or .reqntid) N a register
//! count at which .minnctapersm blocks of N threads fit the SM's register file (one block where
//! the hint is absent or cannot be met by the SM's thread and block limits: ptxas ignores it
//! then), per thread a multiple of 8, so that warps allocate whole units of 256.
int register_estimate(const emu::kernel_info& info) {
  int registers = std::min(info.registers, 255);
  if (info.max_registers > 0) registers = std::min(registers, info.max_registers);
  if (info.bounded_threads) {
    const emu::device_model& m = model();
    const int warps = (info.max_threads_per_block + m.warp_size - 1) / m.warp_size;
    const bool feasible = info.min_blocks_per_sm <= m.max_blocks_per_sm &&
                          int64_t(info.min_blocks_per_sm) * info.max_threads_per_block <= m.max_threads_per_sm;
    const int blocks = feasible ? std::max(info.min_blocks_per_sm, 1) : 1;
    registers = std::min(registers, m.registers_per_sm / (blocks * warps * m.warp_size) / 8 * 8);
  }
  return registers;
}

//! Resident blocks per SM as the CUDA occupancy calculator counts them: limited by the
//! device's blocks and warps per SM, registers (register_estimate, allocated per warp in units
//! of 256) and shared memory (static + dynamic + the reserved per-block part, in units of 128
//! bytes). 0 where such a block cannot launch.
int resident_blocks(const CUkern_st& f, const emu::kernel_info& info, int threads, size_t dynamic_shared) {
  const emu::device_model& m = model();
  if (threads > info.max_threads_per_block || threads > m.max_threads_per_block ||
      dynamic_shared > max_dynamic_shared(f, info)) {
    return 0;
  }
  const int warps = (threads + m.warp_size - 1) / m.warp_size;
  int blocks = std::min(m.max_blocks_per_sm, m.max_threads_per_sm / m.warp_size / warps);
  if (const int registers = register_estimate(info); registers > 0) {
    const int per_warp = (registers * m.warp_size + 255) / 256 * 256;
    blocks = std::min(blocks, m.registers_per_sm / per_warp / warps);
  }
  const size_t shared = (info.static_shared_bytes + dynamic_shared + m.reserved_shared_per_block + 127) / 128 * 128;
  if (shared > 0) blocks = int(std::min(size_t(blocks), m.shared_per_sm / shared));
  return blocks;
}

// ---- Streams and capture ----

//! The stream a handle names: the legacy default stream for nullptr and cudaStreamLegacy.
cudaError_t find_stream(cudaStream_t handle, CUstream_st** s) {
  runtime& r = rt();
  if (handle == nullptr || handle == cudaStreamLegacy) {
    *s = &r.legacy_stream;
  } else if (handle == cudaStreamPerThread) {
    *s = &r.per_thread_stream;
  } else if (r.streams.contains(handle)) {
    *s = handle;
  } else {
    return fail(cudaErrorInvalidResourceHandle, hex(handle) + " is not a live stream");
  }
  return cudaSuccess;
}

template <class F>
void for_each_stream(F&& f) {
  runtime& r = rt();
  f(r.legacy_stream);
  f(r.per_thread_stream);
  r.streams.for_each(f);
}

//! Whether a blocking stream (one that synchronises with the legacy stream) captures;
//! with `invalidate`, its capture is invalidated.
bool blocking_capture(bool invalidate) {
  bool found = false;
  for_each_stream([&](CUstream_st& s) {
    if (s.capturing == nullptr || (s.flags & cudaStreamNonBlocking) != 0) return;
    found = true;
    if (invalidate) s.capturing->invalidated = true;
  });
  return found;
}

//! Where work enqueued on `s` goes: into the capture that `s` takes part in (`*into`), or to
//! run now (`*into` null). Work on the legacy stream while a blocking stream captures would
//! make that capture depend on it: the capture is invalidated and the call fails.
cudaError_t route(CUstream_st* s, capture** into) {
  *into = nullptr;
  if (s->capturing != nullptr) {
    if (s->capturing->invalidated) {
      return fail(cudaErrorStreamCaptureInvalidated,
                  "work on a stream whose capture was invalidated by an earlier error");
    }
    *into = s->capturing;
    return cudaSuccess;
  }
  if (s == &rt().legacy_stream && blocking_capture(true)) {
    return fail(cudaErrorStreamCaptureImplicit,
                "work on the legacy default stream while a blocking stream captures: the capture is invalidated");
  }
  return cudaSuccess;
}

//! A call that may synchronise implicitly is not permitted while a capture in
//! cudaStreamCaptureModeGlobal (or ThreadLocal, on this thread) is active: it fails, and
//! invalidates those captures.
cudaError_t forbid_during_capture(const char* function) {
  bool forbidden = false;
  for (auto& [id, c] : rt().captures) {
    if (c->mode == cudaStreamCaptureModeRelaxed ||
        (c->mode == cudaStreamCaptureModeThreadLocal && c->thread != std::this_thread::get_id())) {
      continue;
    }
    c->invalidated = true;
    forbidden = true;
  }
  if (!forbidden) return cudaSuccess;
  return fail(cudaErrorStreamCaptureUnsupported,
              std::string(function) + " while a stream is capturing: the capture is invalidated");
}

//! Waiting for (or querying) `s`: not permitted while it captures (that invalidates its
//! capture); on the legacy stream, the implicit dependency of route().
cudaError_t check_wait(CUstream_st* s, const char* function) {
  if (s->capturing != nullptr) {
    s->capturing->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported,
                std::string(function) + " on a capturing stream: the capture is invalidated");
  }
  capture* into = nullptr;
  return route(s, &into);
}

capture* active_capture(unsigned long long id) {
  const auto it = rt().captures.find(id);
  return it == rt().captures.end() ? nullptr : it->second.get();
}

//! Ends capture `c`: its streams stop capturing; returns its graph, or null if invalidated.
std::unique_ptr<CUgraph_st> end_capture(capture& c) {
  for_each_stream([&](CUstream_st& s) {
    if (s.capturing == &c) s.capturing = nullptr;
  });
  std::unique_ptr<CUgraph_st> graph = c.invalidated ? nullptr : std::move(c.graph);
  rt().captures.erase(c.id);
  return graph;
}

// ---- Copies, memsets and the execution of work ----

cudaError_t null_argument(const char* function) {
  return fail(cudaErrorInvalidValue, std::string(function) + ": a required pointer argument is null");
}

//! The bytes that `height` rows of `width` bytes, `pitch` apart, span.
size_t extent(size_t pitch, size_t width, size_t height) { return pitch * (height - 1) + width; }

cudaError_t check_device_range(const char* function, const char* side, const void* p, size_t bytes) {
  if (emu::device_range_valid(p, bytes)) return cudaSuccess;
  return fail(cudaErrorInvalidValue, std::string(function) + ": the " + side + " range [" + hex(p) + ", +" +
                                         std::to_string(bytes) + " bytes) is not inside one device allocation");
}

//! Checks a copy's direction, pitches and device range(s); resolves cudaMemcpyDefault by
//! where its pointers lie.
cudaError_t check_copy(copy_node& c, const char* function) {
  if (unsigned(c.kind) > unsigned(cudaMemcpyDefault)) {
    return fail(cudaErrorInvalidMemcpyDirection, std::string(function) + ": copy kind " + std::to_string(c.kind));
  }
  if (c.width == 0 || c.height == 0) return cudaSuccess;
  if (c.dst == nullptr || c.src == nullptr) return null_argument(function);
  if (c.height > 1 && (c.width > c.dpitch || c.width > c.spitch)) {
    return fail(cudaErrorInvalidPitchValue, std::string(function) + ": rows of " + std::to_string(c.width) +
                                                " bytes, pitches " + std::to_string(c.dpitch) + " and " +
                                                std::to_string(c.spitch));
  }
  if (c.kind == cudaMemcpyDefault) {
    const bool dst = emu::device_range_valid(c.dst, 1), src = emu::device_range_valid(c.src, 1);
    c.kind = dst ? (src ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                 : (src ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  if (c.kind == cudaMemcpyHostToDevice || c.kind == cudaMemcpyDeviceToDevice) {
    if (const cudaError_t status =
            check_device_range(function, "destination", c.dst, extent(c.dpitch, c.width, c.height));
        status != cudaSuccess) {
      return status;
    }
  }
  if (c.kind == cudaMemcpyDeviceToHost || c.kind == cudaMemcpyDeviceToDevice) {
    return check_device_range(function, "source", c.src, extent(c.spitch, c.width, c.height));
  }
  return cudaSuccess;
}

cudaError_t check_set(const set_node& s, const char* function) {
  if (s.width == 0 || s.height == 0) return cudaSuccess;
  if (s.height > 1 && s.width > s.pitch) {
    return fail(cudaErrorInvalidPitchValue, std::string(function) + ": rows of " + std::to_string(s.width) +
                                                " bytes, pitch " + std::to_string(s.pitch));
  }
  return check_device_range(function, "destination", s.dst, extent(s.pitch, s.width, s.height));
}

//! Runs one piece of work now. Copies and memsets are checked first (again, when a graph
//! replays them: memory may have been freed since the capture).
cudaError_t execute(node& work, const char* function, CUstream_st& stream) {
  if (auto* k = std::get_if<kernel_node>(&work)) {
    const emu::kernel_info& info = k->function->binary->module->info(*k->function->kernel);
    std::vector<void*> args(info.params.size());
    for (size_t i = 0; i < args.size(); ++i) args[i] = k->params.data() + info.params[i].offset;
    return run_kernel(*k->function, k->grid, k->block, k->shared, args.data(), k->programmatic, k->cooperative,
                      stream);
  }
  if (std::holds_alternative<empty_node>(work)) return cudaSuccess;
  stream.last_kernel = 0;  // a copy, memset or host function: the next kernel has no programmatic primary
  if (auto* h = std::get_if<host_node>(&work)) {
    h->fn(h->data);
    return cudaSuccess;
  }
  if (auto* c = std::get_if<copy_node>(&work)) {
    if (const cudaError_t status = check_copy(*c, function); status != cudaSuccess) return status;
    for (size_t row = 0; row < c->height && c->width > 0; ++row) {
      std::memmove(static_cast<char*>(c->dst) + row * c->dpitch, static_cast<const char*>(c->src) + row * c->spitch,
                   c->width);
      emu::mark_device_written(static_cast<char*>(c->dst) + row * c->dpitch, c->width);
    }
    return cudaSuccess;
  }
  const set_node& s = std::get<set_node>(work);
  if (const cudaError_t status = check_set(s, function); status != cudaSuccess) return status;
  emu::profile_memset();
  for (size_t row = 0; row < s.height && s.width > 0; ++row) {
    char* const start = static_cast<char*>(s.dst) + row * s.pitch;
    if (s.element_size == 1) {
      std::memset(start, s.value, s.width);
    } else {
      for (size_t at = 0; at < s.width; at += s.element_size) std::memcpy(start + at, &s.value, s.element_size);
    }
    emu::mark_device_written(start, s.width);
  }
  return cudaSuccess;
}

//! Enqueues a copy, memset or host function on `stream`: recorded (after its checks) while the
//! stream captures, else run now.
cudaError_t submit(cudaStream_t stream, node work, const char* function) {
  CUstream_st* s = nullptr;
  if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
  capture* into = nullptr;
  if (const cudaError_t status = route(s, &into); status != cudaSuccess) return status;
  if (into == nullptr) return execute(work, function, *s);
  cudaError_t status = cudaSuccess;
  if (auto* c = std::get_if<copy_node>(&work)) status = check_copy(*c, function);
  if (auto* m = std::get_if<set_node>(&work)) status = check_set(*m, function);
  if (status == cudaSuccess) into->graph->append(std::move(work));
  return status;
}

copy_node linear_copy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  copy_node c;
  c.dst = dst;
  c.src = src;
  c.dpitch = c.spitch = c.width = count;
  c.kind = kind;
  return c;
}

copy_node pitched_copy(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                       cudaMemcpyKind kind) {
  copy_node c;
  c.dst = dst;
  c.dpitch = dpitch;
  c.src = src;
  c.spitch = spitch;
  c.width = width;
  c.height = height;
  c.kind = kind;
  return c;
}

set_node pitched_set(void* dst, size_t pitch, int value, size_t width, size_t height) {
  set_node s;
  s.dst = dst;
  s.pitch = pitch;
  s.value = value;
  s.width = width;
  s.height = height;
  return s;
}

//! A checked launch of `f` as a graph node, with a copy of its arguments.
kernel_node recorded_launch(CUkern_st* f, const emu::kernel_info& info, dim3 grid, dim3 block, size_t shared,
                            void** args, bool programmatic, bool cooperative) {
  kernel_node k;
  k.function = f;
  k.grid = grid;
  k.block = block;
  k.shared = shared;
  k.programmatic = programmatic;
  k.cooperative = cooperative;
  k.params.resize(info.param_bytes);
  for (size_t i = 0; i < info.params.size(); ++i) {
    std::memcpy(k.params.data() + info.params[i].offset, args[i], info.params[i].size);
  }
  return k;
}

//! Launches `f` on `stream` after the runtime's checks: run now, or recorded with a copy of
//! its arguments while the stream captures.
cudaError_t launch(CUkern_st* f, dim3 grid, dim3 block, void** args, size_t shared, cudaStream_t stream,
                   bool programmatic = false, bool cooperative = false) {
  if (f == nullptr) return fail(cudaErrorInvalidDeviceFunction, "launch of a function that is not a registered kernel");
  CUstream_st* s = nullptr;
  if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
  const emu::kernel_info* info = nullptr;
  if (const cudaError_t status = check_launch(*f, grid, block, shared, &info); status != cudaSuccess) return status;
  capture* into = nullptr;
  if (const cudaError_t status = route(s, &into); status != cudaSuccess) return status;
  if (cooperative) {
    // CUDA Runtime API, cudaLaunchCooperativeKernel: the grid may not exceed the blocks that can be
    // resident at once (cudaOccupancyMaxActiveBlocksPerMultiprocessor times the SM count).
    const int per_sm = resident_blocks(*f, *info, int(block.x * block.y * block.z), shared);
    const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z, limit = uint64_t(per_sm) * model().sm_count;
    if (blocks > limit) {
      return fail(cudaErrorCooperativeLaunchTooLarge, "cooperative launch of " + f->name + ": " +
                                                          std::to_string(blocks) + " blocks, at most " +
                                                          std::to_string(limit) + " can be resident");
    }
  }
  if (into == nullptr) return run_kernel(*f, grid, block, shared, args, programmatic, cooperative, *s);
  into->graph->append(recorded_launch(f, *info, grid, block, shared, args, programmatic, cooperative));
  return cudaSuccess;
}

// ---- Symbols ----

//! The device address and size of a registered variable, given its host shadow's address.
cudaError_t find_symbol(const void* symbol, char** address, size_t* bytes) {
  const auto it = rt().variables.find(symbol);
  if (it == rt().variables.end()) {
    return fail(cudaErrorInvalidSymbol, hex(symbol) + " is not a registered __device__ or __constant__ variable");
  }
  const variable& v = it->second;
  if (const cudaError_t status = load(*v.binary); status != cudaSuccess) {
    return fail(status, "variable " + v.name + ": " + v.binary->load_problem);
  }
  *address = static_cast<char*>(v.binary->module->variable(v.name, bytes));
  if (*address == nullptr) return fail(cudaErrorInvalidSymbol, "variable " + v.name + " is not in its PTX");
  return cudaSuccess;
}

//! The address of `count` bytes at `offset` in a variable, checked to lie inside it.
cudaError_t symbol_range(const char* function, const void* symbol, size_t count, size_t offset, char** address) {
  size_t bytes = 0;
  if (const cudaError_t status = find_symbol(symbol, address, &bytes); status != cudaSuccess) return status;
  if (offset > bytes || count > bytes - offset) {
    return fail(cudaErrorInvalidValue, std::string(function) + ": " + std::to_string(count) + " bytes at offset " +
                                           std::to_string(offset) + " of a " + std::to_string(bytes) +
                                           "-byte variable");
  }
  *address += offset;
  return cudaSuccess;
}

cudaError_t copy_to_symbol(const char* function, const void* symbol, const void* src, size_t count, size_t offset,
                           cudaMemcpyKind kind, cudaStream_t stream) {
  if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToDevice && kind != cudaMemcpyDefault) {
    return fail(cudaErrorInvalidMemcpyDirection, std::string(function) + ": copy kind " + std::to_string(kind));
  }
  char* address = nullptr;
  if (const cudaError_t status = symbol_range(function, symbol, count, offset, &address); status != cudaSuccess) {
    return status;
  }
  return submit(stream, linear_copy(address, src, count, kind), function);
}

cudaError_t copy_from_symbol(const char* function, void* dst, const void* symbol, size_t count, size_t offset,
                             cudaMemcpyKind kind, cudaStream_t stream) {
  if (kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice && kind != cudaMemcpyDefault) {
    return fail(cudaErrorInvalidMemcpyDirection, std::string(function) + ": copy kind " + std::to_string(kind));
  }
  char* address = nullptr;
  if (const cudaError_t status = symbol_range(function, symbol, count, offset, &address); status != cudaSuccess) {
    return status;
  }
  return submit(stream, linear_copy(dst, address, count, kind), function);
}

// ---- Device attributes and errors ----

//! cudaDeviceGetAttribute's value for `attr`, false for one without a value here (textures,
//! surfaces and others that the emulator has no model of).
bool attribute(cudaDeviceAttr attr, int* value) {
  const emu::device_model& m = model();
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = m.max_threads_per_block; break;
    case cudaDevAttrMaxBlockDimX: *value = m.max_block[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = m.max_block[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = m.max_block[2]; break;
    case cudaDevAttrMaxGridDimX: *value = m.max_grid[0]; break;
    case cudaDevAttrMaxGridDimY: *value = m.max_grid[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = m.max_grid[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = int(m.shared_per_block); break;
    case cudaDevAttrTotalConstantMemory: *value = 64 * 1024; break;
    case cudaDevAttrWarpSize: *value = m.warp_size; break;
    case cudaDevAttrMaxPitch: *value = 2147483647; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = m.registers_per_block; break;
    case cudaDevAttrClockRate: *value = m.clock_khz; break;
    case cudaDevAttrGpuOverlap: *value = 1; break;
    case cudaDevAttrMultiProcessorCount: *value = m.sm_count; break;
    case cudaDevAttrKernelExecTimeout: *value = 0; break;
    case cudaDevAttrIntegrated: *value = 0; break;
    case cudaDevAttrCanMapHostMemory: *value = 0; break;
    case cudaDevAttrComputeMode: *value = cudaComputeModeDefault; break;
    case cudaDevAttrConcurrentKernels: *value = 1; break;
    case cudaDevAttrPciBusId: *value = 0; break;
    case cudaDevAttrPciDeviceId: *value = 0; break;
    case cudaDevAttrPciDomainId: *value = 0; break;
    case cudaDevAttrTccDriver: *value = 0; break;
    case cudaDevAttrMemoryClockRate: *value = m.memory_clock_khz; break;
    case cudaDevAttrGlobalMemoryBusWidth: *value = m.memory_bus_bits; break;
    case cudaDevAttrL2CacheSize: *value = int(m.l2_bytes); break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = m.max_threads_per_sm; break;
    case cudaDevAttrUnifiedAddressing: *value = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *value = m.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = m.minor; break;
    case cudaDevAttrStreamPrioritiesSupported: *value = 1; break;
    case cudaDevAttrGlobalL1CacheSupported: *value = 1; break;
    case cudaDevAttrLocalL1CacheSupported: *value = 1; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = int(m.shared_per_sm); break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *value = m.registers_per_sm; break;
    case cudaDevAttrManagedMemory: *value = 0; break;
    case cudaDevAttrIsMultiGpuBoard: *value = 0; break;
    case cudaDevAttrMultiGpuBoardGroupID: *value = 0; break;
    case cudaDevAttrHostNativeAtomicSupported: *value = 0; break;
    case cudaDevAttrPageableMemoryAccess: *value = 0; break;
    case cudaDevAttrConcurrentManagedAccess: *value = 0; break;
    case cudaDevAttrCanUseHostPointerForRegisteredMem: *value = 0; break;
    case cudaDevAttrCooperativeLaunch: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(m.shared_per_block_optin); break;
    case cudaDevAttrCanFlushRemoteWrites: *value = 0; break;
    case cudaDevAttrHostRegisterSupported: *value = 0; break;
    case cudaDevAttrPageableMemoryAccessUsesHostPageTables: *value = 0; break;
    case cudaDevAttrDirectManagedMemAccessFromHost: *value = 0; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = m.max_blocks_per_sm; break;
    case cudaDevAttrReservedSharedMemoryPerBlock: *value = int(m.reserved_shared_per_block); break;
    case cudaDevAttrMemoryPoolsSupported: *value = 0; break;
    case cudaDevAttrClusterLaunch: *value = 0; break;
    default: return false;
  }
  return true;
}

struct error_text {
  cudaError_t code;
  const char* name;
  const char* text;
};

//! Every cudaError_t of driver_types.h (CUDA 13.0), with the runtime's description.
#define BEAM_ERROR_TEXT(code, text) \
  error_text { code, #code, text }
constexpr error_text error_texts[] = {
    BEAM_ERROR_TEXT(cudaSuccess, "no error"),
    BEAM_ERROR_TEXT(cudaErrorInvalidValue, "invalid argument"),
    BEAM_ERROR_TEXT(cudaErrorMemoryAllocation, "out of memory"),
    BEAM_ERROR_TEXT(cudaErrorInitializationError, "initialization error"),
    BEAM_ERROR_TEXT(cudaErrorCudartUnloading, "driver shutting down"),
    BEAM_ERROR_TEXT(cudaErrorProfilerDisabled, "profiler disabled while using external profiling tool"),
    BEAM_ERROR_TEXT(cudaErrorProfilerNotInitialized, "profiler not initialized: call cudaProfilerInitialize()"),
    BEAM_ERROR_TEXT(cudaErrorProfilerAlreadyStarted, "profiler already started"),
    BEAM_ERROR_TEXT(cudaErrorProfilerAlreadyStopped, "profiler already stopped"),
    BEAM_ERROR_TEXT(cudaErrorInvalidConfiguration, "invalid configuration argument"),
    BEAM_ERROR_TEXT(cudaErrorInvalidPitchValue, "invalid pitch argument"),
    BEAM_ERROR_TEXT(cudaErrorInvalidSymbol, "invalid device symbol"),
    BEAM_ERROR_TEXT(cudaErrorInvalidHostPointer, "invalid host pointer"),
    BEAM_ERROR_TEXT(cudaErrorInvalidDevicePointer, "invalid device pointer"),
    BEAM_ERROR_TEXT(cudaErrorInvalidTexture, "invalid texture reference"),
    BEAM_ERROR_TEXT(cudaErrorInvalidTextureBinding, "texture is not bound to a pointer"),
    BEAM_ERROR_TEXT(cudaErrorInvalidChannelDescriptor, "invalid channel descriptor"),
    BEAM_ERROR_TEXT(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy"),
    BEAM_ERROR_TEXT(cudaErrorAddressOfConstant, "invalid address of constant"),
    BEAM_ERROR_TEXT(cudaErrorTextureFetchFailed, "fetch from texture failed"),
    BEAM_ERROR_TEXT(cudaErrorTextureNotBound, "cannot fetch from a texture that is not bound"),
    BEAM_ERROR_TEXT(cudaErrorSynchronizationError, "incorrect use of __syncthreads()"),
    BEAM_ERROR_TEXT(cudaErrorInvalidFilterSetting, "linear filtering not supported for non-float type"),
    BEAM_ERROR_TEXT(cudaErrorInvalidNormSetting, "read as normalized float not supported for 32-bit non float type"),
    BEAM_ERROR_TEXT(cudaErrorMixedDeviceExecution, "device emulation mode and device execution mode cannot be mixed"),
    BEAM_ERROR_TEXT(cudaErrorNotYetImplemented, "feature not yet implemented"),
    BEAM_ERROR_TEXT(cudaErrorMemoryValueTooLarge, "memory size or pointer value too large to fit in 32 bit"),
    BEAM_ERROR_TEXT(cudaErrorStubLibrary, "CUDA driver is a stub library"),
    BEAM_ERROR_TEXT(cudaErrorInsufficientDriver, "CUDA driver version is insufficient for CUDA runtime version"),
    BEAM_ERROR_TEXT(cudaErrorCallRequiresNewerDriver, "API call is not supported in the installed CUDA driver"),
    BEAM_ERROR_TEXT(cudaErrorInvalidSurface, "invalid surface reference"),
    BEAM_ERROR_TEXT(cudaErrorDuplicateVariableName, "duplicate global variable looked up by string name"),
    BEAM_ERROR_TEXT(cudaErrorDuplicateTextureName, "duplicate texture looked up by string name"),
    BEAM_ERROR_TEXT(cudaErrorDuplicateSurfaceName, "duplicate surface looked up by string name"),
    BEAM_ERROR_TEXT(cudaErrorDevicesUnavailable, "CUDA-capable device(s) is/are busy or unavailable"),
    BEAM_ERROR_TEXT(cudaErrorIncompatibleDriverContext, "incompatible driver context"),
    BEAM_ERROR_TEXT(cudaErrorMissingConfiguration, "__global__ function call is not configured"),
    BEAM_ERROR_TEXT(cudaErrorPriorLaunchFailure, "unspecified launch failure in prior launch"),
    BEAM_ERROR_TEXT(cudaErrorLaunchMaxDepthExceeded, "launch would exceed maximum depth of nested launches"),
    BEAM_ERROR_TEXT(
        cudaErrorLaunchFileScopedTex,
        "launch failed because kernel uses unsupported, file-scoped textures (texture objects are supported)"),
    BEAM_ERROR_TEXT(
        cudaErrorLaunchFileScopedSurf,
        "launch failed because kernel uses unsupported, file-scoped surfaces (surface objects are supported)"),
    BEAM_ERROR_TEXT(cudaErrorSyncDepthExceeded,
                    "cudaDeviceSynchronize failed because caller's grid depth exceeds cudaLimitDevRuntimeSyncDepth"),
    BEAM_ERROR_TEXT(cudaErrorLaunchPendingCountExceeded,
                    "launch failed because launch would exceed cudaLimitDevRuntimePendingLaunchCount"),
    BEAM_ERROR_TEXT(cudaErrorInvalidDeviceFunction, "invalid device function"),
    BEAM_ERROR_TEXT(cudaErrorNoDevice, "no CUDA-capable device is detected"),
    BEAM_ERROR_TEXT(cudaErrorInvalidDevice, "invalid device ordinal"),
    BEAM_ERROR_TEXT(cudaErrorDeviceNotLicensed, "device doesn't have valid Grid license"),
    BEAM_ERROR_TEXT(cudaErrorSoftwareValidityNotEstablished, "integrity checks failed"),
    BEAM_ERROR_TEXT(cudaErrorStartupFailure, "startup failure in cuda runtime"),
    BEAM_ERROR_TEXT(cudaErrorInvalidKernelImage, "device kernel image is invalid"),
    BEAM_ERROR_TEXT(cudaErrorDeviceUninitialized, "invalid device context"),
    BEAM_ERROR_TEXT(cudaErrorMapBufferObjectFailed, "mapping of buffer object failed"),
    BEAM_ERROR_TEXT(cudaErrorUnmapBufferObjectFailed, "unmapping of buffer object failed"),
    BEAM_ERROR_TEXT(cudaErrorArrayIsMapped, "array is mapped"),
    BEAM_ERROR_TEXT(cudaErrorAlreadyMapped, "resource already mapped"),
    BEAM_ERROR_TEXT(cudaErrorNoKernelImageForDevice, "no kernel image is available for execution on the device"),
    BEAM_ERROR_TEXT(cudaErrorAlreadyAcquired, "resource already acquired"),
    BEAM_ERROR_TEXT(cudaErrorNotMapped, "resource not mapped"),
    BEAM_ERROR_TEXT(cudaErrorNotMappedAsArray, "resource not mapped as array"),
    BEAM_ERROR_TEXT(cudaErrorNotMappedAsPointer, "resource not mapped as pointer"),
    BEAM_ERROR_TEXT(cudaErrorECCUncorrectable, "uncorrectable ECC error encountered"),
    BEAM_ERROR_TEXT(cudaErrorUnsupportedLimit, "limit is not supported on this architecture"),
    BEAM_ERROR_TEXT(cudaErrorDeviceAlreadyInUse, "exclusive-thread device already in use by a different thread"),
    BEAM_ERROR_TEXT(cudaErrorPeerAccessUnsupported, "peer access is not supported between these two devices"),
    BEAM_ERROR_TEXT(cudaErrorInvalidPtx, "a PTX JIT compilation failed"),
    BEAM_ERROR_TEXT(cudaErrorInvalidGraphicsContext, "invalid OpenGL or DirectX context"),
    BEAM_ERROR_TEXT(cudaErrorNvlinkUncorrectable, "uncorrectable NVLink error detected during the execution"),
    BEAM_ERROR_TEXT(cudaErrorJitCompilerNotFound, "PTX JIT compiler library not found"),
    BEAM_ERROR_TEXT(cudaErrorUnsupportedPtxVersion, "the provided PTX was compiled with an unsupported toolchain."),
    BEAM_ERROR_TEXT(cudaErrorJitCompilationDisabled, "PTX JIT compilation was disabled"),
    BEAM_ERROR_TEXT(cudaErrorUnsupportedExecAffinity, "the provided execution affinity is not supported"),
    BEAM_ERROR_TEXT(cudaErrorUnsupportedDevSideSync,
                    "the provided PTX contains unsupported call to cudaDeviceSynchronize"),
    BEAM_ERROR_TEXT(
        cudaErrorContained,
        "an exception occurred on the device that is now contained by the GPU's error containment capability"),
    BEAM_ERROR_TEXT(cudaErrorInvalidSource, "device kernel image is invalid"),
    BEAM_ERROR_TEXT(cudaErrorFileNotFound, "file not found"),
    BEAM_ERROR_TEXT(cudaErrorSharedObjectSymbolNotFound, "shared object symbol not found"),
    BEAM_ERROR_TEXT(cudaErrorSharedObjectInitFailed, "shared object initialization failed"),
    BEAM_ERROR_TEXT(cudaErrorOperatingSystem, "OS call failed or operation not supported on this OS"),
    BEAM_ERROR_TEXT(cudaErrorInvalidResourceHandle, "invalid resource handle"),
    BEAM_ERROR_TEXT(cudaErrorIllegalState, "the operation cannot be performed in the present state"),
    BEAM_ERROR_TEXT(cudaErrorLossyQuery, "attempted introspection would be semantically lossy"),
    BEAM_ERROR_TEXT(cudaErrorSymbolNotFound, "named symbol not found"),
    BEAM_ERROR_TEXT(cudaErrorNotReady, "device not ready"),
    BEAM_ERROR_TEXT(cudaErrorIllegalAddress, "an illegal memory access was encountered"),
    BEAM_ERROR_TEXT(cudaErrorLaunchOutOfResources, "too many resources requested for launch"),
    BEAM_ERROR_TEXT(cudaErrorLaunchTimeout, "the launch timed out and was terminated"),
    BEAM_ERROR_TEXT(cudaErrorLaunchIncompatibleTexturing, "launch uses incompatible texturing mode"),
    BEAM_ERROR_TEXT(cudaErrorPeerAccessAlreadyEnabled, "peer access is already enabled"),
    BEAM_ERROR_TEXT(cudaErrorPeerAccessNotEnabled, "peer access has not been enabled"),
    BEAM_ERROR_TEXT(cudaErrorSetOnActiveProcess, "cannot set while device is active in this process"),
    BEAM_ERROR_TEXT(cudaErrorContextIsDestroyed, "context is destroyed"),
    BEAM_ERROR_TEXT(cudaErrorAssert, "device-side assert triggered"),
    BEAM_ERROR_TEXT(cudaErrorTooManyPeers, "peer mapping resources exhausted"),
    BEAM_ERROR_TEXT(cudaErrorHostMemoryAlreadyRegistered,
                    "part or all of the requested memory range is already mapped"),
    BEAM_ERROR_TEXT(cudaErrorHostMemoryNotRegistered, "pointer does not correspond to a registered memory region"),
    BEAM_ERROR_TEXT(cudaErrorHardwareStackError, "hardware stack error"),
    BEAM_ERROR_TEXT(cudaErrorIllegalInstruction, "an illegal instruction was encountered"),
    BEAM_ERROR_TEXT(cudaErrorMisalignedAddress, "misaligned address"),
    BEAM_ERROR_TEXT(cudaErrorInvalidAddressSpace, "operation not supported on global/shared address space"),
    BEAM_ERROR_TEXT(cudaErrorInvalidPc, "invalid program counter"),
    BEAM_ERROR_TEXT(cudaErrorLaunchFailure, "unspecified launch failure"),
    BEAM_ERROR_TEXT(cudaErrorCooperativeLaunchTooLarge, "too many blocks in cooperative launch"),
    BEAM_ERROR_TEXT(cudaErrorTensorMemoryLeak, "tensor memory not completely freed"),
    BEAM_ERROR_TEXT(cudaErrorNotPermitted, "operation not permitted"),
    BEAM_ERROR_TEXT(cudaErrorNotSupported, "operation not supported"),
    BEAM_ERROR_TEXT(cudaErrorSystemNotReady, "system not yet initialized"),
    BEAM_ERROR_TEXT(cudaErrorSystemDriverMismatch, "system has unsupported display driver / cuda driver combination"),
    BEAM_ERROR_TEXT(cudaErrorCompatNotSupportedOnDevice, "forward compatibility was attempted on non supported HW"),
    BEAM_ERROR_TEXT(cudaErrorMpsConnectionFailed,
                    "MPS client failed to connect to the MPS control daemon or the MPS server"),
    BEAM_ERROR_TEXT(cudaErrorMpsRpcFailure,
                    "the remote procedural call between the MPS server and the MPS client failed"),
    BEAM_ERROR_TEXT(cudaErrorMpsServerNotReady, "MPS server is not ready to accept new MPS client requests"),
    BEAM_ERROR_TEXT(cudaErrorMpsMaxClientsReached,
                    "the hardware resources required to create MPS client have been exhausted"),
    BEAM_ERROR_TEXT(cudaErrorMpsMaxConnectionsReached,
                    "the hardware resources required to support device connections have been exhausted"),
    BEAM_ERROR_TEXT(cudaErrorMpsClientTerminated, "the MPS client has been terminated by the server"),
    BEAM_ERROR_TEXT(cudaErrorCdpNotSupported,
                    "is using CUDA Dynamic Parallelism, but the current configuration, like MPS, does not support it"),
    BEAM_ERROR_TEXT(cudaErrorCdpVersionMismatch,
                    "unsupported interaction between different versions of CUDA Dynamic Parallelism"),
    BEAM_ERROR_TEXT(cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing"),
    BEAM_ERROR_TEXT(cudaErrorStreamCaptureInvalidated, "operation failed due to a previous error during capture"),
    BEAM_ERROR_TEXT(cudaErrorStreamCaptureMerge, "operation would result in a merge of separate capture sequences"),
    BEAM_ERROR_TEXT(cudaErrorStreamCaptureUnmatched, "capture was not ended in the same stream as it began"),
    BEAM_ERROR_TEXT(cudaErrorStreamCaptureUnjoined, "capturing stream has unjoined work"),
    BEAM_ERROR_TEXT(cudaErrorStreamCaptureIsolation, "dependency created on uncaptured work in another stream"),
    BEAM_ERROR_TEXT(cudaErrorStreamCaptureImplicit,
                    "operation would make the legacy stream depend on a capturing blocking stream"),
    BEAM_ERROR_TEXT(cudaErrorCapturedEvent, "operation not permitted on an event last recorded in a capturing stream"),
    BEAM_ERROR_TEXT(cudaErrorStreamCaptureWrongThread,
                    "attempt to terminate a thread-local capture sequence from another thread"),
    BEAM_ERROR_TEXT(cudaErrorTimeout, "wait operation timed out"),
    BEAM_ERROR_TEXT(cudaErrorGraphExecUpdateFailure,
                    "the graph update was not performed because it included changes which violated constraints "
                    "specific to instantiated graph update"),
    BEAM_ERROR_TEXT(cudaErrorExternalDevice, "an async error has occurred in a external entity outside of CUDA"),
    BEAM_ERROR_TEXT(cudaErrorInvalidClusterSize, "a kernel launch error has occurred due to cluster misconfiguration"),
    BEAM_ERROR_TEXT(cudaErrorFunctionNotLoaded,
                    "the function handle is not loaded when calling an API that requires a loaded function"),
    BEAM_ERROR_TEXT(cudaErrorInvalidResourceType,
                    "one or more resources passed in are not valid resource types for the operation"),
    BEAM_ERROR_TEXT(cudaErrorInvalidResourceConfiguration,
                    "one or more resources are insufficient or non-applicable for the operation"),
    BEAM_ERROR_TEXT(cudaErrorUnknown, "unknown error"),
    BEAM_ERROR_TEXT(cudaErrorApiFailureBase, "api failure base"),
};
#undef BEAM_ERROR_TEXT

const error_text* find_error(cudaError_t code) {
  for (const error_text& e : error_texts) {
    if (e.code == code) return &e;
  }
  return nullptr;
}

// ---- Driver entry points ----

struct driver_symbol {
  const char* name;
  void* function;
  unsigned cuda_version;  // the CUDA version that introduced this version of the function
};

//! The driver functions that cudaGetDriverEntryPoint(ByVersion) provides: there is no driver,
//! so only functions the emulator implements itself.
const std::vector<driver_symbol>& driver_symbols() {
  static const std::vector<driver_symbol> symbols = {
      {"cuTensorMapEncodeTiled", reinterpret_cast<void*>(&emu::encode_tensor_map_tiled), 12000},
  };
  return symbols;
}

cudaError_t driver_entry_point(const char* function, const char* symbol, void** function_ptr, unsigned cuda_version,
                               unsigned long long flags, cudaDriverEntryPointQueryResult* found) {
  if (symbol == nullptr || function_ptr == nullptr)
    return fail(cudaErrorInvalidValue, std::string(function) + ": null argument");
  if (flags & ~static_cast<unsigned long long>(cudaEnableLegacyStream | cudaEnablePerThreadDefaultStream)) {
    return fail(cudaErrorInvalidValue, std::string(function) + ": flags " + hex(flags));
  }
  if (cuda_version > unsigned(CUDART_VERSION)) {
    return fail(cudaErrorInvalidValue, std::string(function) + ": CUDA version " + std::to_string(cuda_version) +
                                           " above the driver's " + std::to_string(CUDART_VERSION));
  }
  *function_ptr = nullptr;
  cudaDriverEntryPointQueryResult result = cudaDriverEntryPointSymbolNotFound;
  for (const driver_symbol& s : driver_symbols()) {
    if (std::strcmp(s.name, symbol) != 0) continue;
    result = cudaDriverEntryPointVersionNotSufficent;
    if (cuda_version >= s.cuda_version) {
      *function_ptr = s.function;
      result = cudaDriverEntryPointSuccess;
    }
  }
  if (found != nullptr) *found = result;
  return cudaSuccess;
}

cudaError_t check_device(const char* function, int device) {
  if (device == 0) return cudaSuccess;
  return fail(cudaErrorInvalidDevice,
              std::string(function) + ": device " + std::to_string(device) + " (the emulator has one, 0)");
}

cudaError_t find_event(const char* function, cudaEvent_t event) {
  if (rt().events.contains(event)) return cudaSuccess;
  return fail(cudaErrorInvalidResourceHandle, std::string(function) + ": " + hex(event) + " is not a live event");
}

//! cudaErrorCapturedEvent while the capture that last recorded the event is active.
cudaError_t check_captured_event(const char* function, cudaEvent_t event) {
  if (active_capture(event->captured_in) == nullptr) return cudaSuccess;
  return fail(cudaErrorCapturedEvent, std::string(function) + ": the event was recorded in an active capture");
}

}  // namespace

extern "C" {

// ---- Registration: nvcc's static constructors ----

//! Records the fatbinary; nothing of it is read until one of its kernels or variables is used.
void** __cudaRegisterFatBinary(void* fatCubin) {
  fatbinary* b = nullptr;
  hook("__cudaRegisterFatBinary", [&] {
    auto record = std::make_unique<fatbinary>();
    record->wrapper = fatCubin;
    record->index = int(rt().binaries.size());
    b = record.get();
    rt().binaries.push_back(std::move(record));
    launch_log();  // created now: a program that launches nothing still leaves its log
  });
  return reinterpret_cast<void**>(b);
}

void __cudaRegisterFatBinaryEnd(void**) {}

//! Does nothing: modules live until the process exits (a library unloaded by dlclose is not
//! supported), so that destructors running at exit can still use their kernels and memory.
void __cudaUnregisterFatBinary(void**) {}

//! Maps a kernel's host stub to its .entry name. A stub registered again (a template kernel
//! instantiated in several objects) keeps its first registration.
void __cudaRegisterFunction(void** fatCubinHandle, const char* hostFun, char*, const char* deviceName, int, uint3*,
                            uint3*, dim3*, dim3*, int*) {
  hook("__cudaRegisterFunction", [&] {
    fatbinary& b = binary_of(fatCubinHandle);
    auto f = std::make_unique<CUkern_st>();
    f->binary = &b;
    f->name = deviceName;
    if (b.first_kernel.empty()) b.first_kernel = deviceName;
    const CUkern_st* handle = f.get();
    if (rt().functions.emplace(hostFun, std::move(f)).second) rt().kernel_handles.insert(handle);
  });
}

//! Maps a variable's host shadow to its name in the PTX.
void __cudaRegisterVar(void** fatCubinHandle, char* hostVar, char*, const char* deviceName, int, size_t, int, int) {
  hook("__cudaRegisterVar", [&] {
    variable v;
    v.binary = &binary_of(fatCubinHandle);
    v.name = deviceName;
    rt().variables.emplace(hostVar, std::move(v));
  });
}

//! Loads the fatbinary's module now; true if it loaded.
char __cudaInitModule(void** fatCubinHandle) {
  bool loaded = false;
  hook("__cudaInitModule", [&] {
    fatbinary& b = binary_of(fatCubinHandle);
    loaded = load(b) == cudaSuccess;
    if (!loaded) report("module of fatbinary #" + std::to_string(b.index) + ": " + b.load_problem);
  });
  return loaded ? 1 : 0;
}

// ---- Launches ----

unsigned __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim, size_t sharedMem, struct CUstream_st* stream) {
  pushed_configs.push_back(launch_config{gridDim, blockDim, sharedMem, stream});
  return 0;
}

cudaError_t __cudaPopCallConfiguration(dim3* gridDim, dim3* blockDim, size_t* sharedMem, void* stream) {
  if (pushed_configs.empty()) return cudaErrorMissingConfiguration;
  const launch_config c = pushed_configs.back();
  pushed_configs.pop_back();
  *gridDim = c.grid;
  *blockDim = c.block;
  *sharedMem = c.shared;
  *static_cast<cudaStream_t*>(stream) = c.stream;
  return cudaSuccess;
}

//! A lookup that works after a kernel fault too: the stub caches the handle for good.
cudaError_t __cudaGetKernel(cudaKernel_t* kernel, const void* hostFun) {
  return device_query([&] {
    if (kernel == nullptr) return null_argument("__cudaGetKernel");
    *kernel = find_function(hostFun);
    return *kernel == nullptr ? not_a_kernel("__cudaGetKernel", hostFun) : cudaSuccess;
  });
}

cudaError_t cudaGetKernel(cudaKernel_t* kernelPtr, const void* entryFuncAddr) {
  return __cudaGetKernel(kernelPtr, entryFuncAddr);
}

//! The launch of `kernel<<<...>>>(...)`: checked, then run to completion before it returns
//! (or recorded, while the stream captures).
cudaError_t __cudaLaunchKernel(cudaKernel_t kernel, dim3 gridDim, dim3 blockDim, void** args, size_t sharedMem,
                               cudaStream_t stream) {
  return api([&] {
    if (kernel == nullptr || rt().kernel_handles.count(kernel) == 0) return not_a_kernel("__cudaLaunchKernel", kernel);
    return launch(kernel, gridDim, blockDim, args, sharedMem, stream);
  });
}

//! `func` is a kernel's host stub or a cudaKernel_t.
cudaError_t cudaLaunchKernel(const void* func, dim3 gridDim, dim3 blockDim, void** args, size_t sharedMem,
                             cudaStream_t stream) {
  return api([&] {
    CUkern_st* f = find_function(func);
    return f == nullptr ? not_a_kernel("cudaLaunchKernel", func)
                        : launch(f, gridDim, blockDim, args, sharedMem, stream);
  });
}

//! As cudaLaunchKernel, with the attributes cudaLaunchAttributeIgnore,
//! cudaLaunchAttributeProgrammaticStreamSerialization (programmatic dependent launch: checked
//! by the engine, see run_kernel) and cudaLaunchAttributeCooperative (as
//! cudaLaunchCooperativeKernel); any other attribute is not emulated.
cudaError_t cudaLaunchKernelExC(const cudaLaunchConfig_t* config, const void* func, void** args) {
  return api([&] {
    if (config == nullptr) return null_argument("cudaLaunchKernelExC");
    if (config->numAttrs > 0 && config->attrs == nullptr) return null_argument("cudaLaunchKernelExC");
    bool programmatic = false, cooperative = false;
    for (unsigned i = 0; i < config->numAttrs; ++i) {
      const cudaLaunchAttribute& a = config->attrs[i];
      if (a.id == cudaLaunchAttributeProgrammaticStreamSerialization) {
        programmatic = a.val.programmaticStreamSerializationAllowed != 0;
      } else if (a.id == cudaLaunchAttributeCooperative) {
        cooperative = a.val.cooperative != 0;
      } else if (a.id != cudaLaunchAttributeIgnore) {
        return unsupported("cudaLaunchKernelExC", "launch attribute " + std::to_string(a.id));
      }
    }
    CUkern_st* f = find_function(func);
    if (f == nullptr) return not_a_kernel("cudaLaunchKernelExC", func);
    return launch(f, config->gridDim, config->blockDim, args, config->dynamicSmemBytes, config->stream,
                  programmatic, cooperative);
  });
}

//! Every block of the grid is resident at once and the blocks run interleaved, so that cooperative
//! groups' grid synchronisation (this_grid().sync()) completes; a grid larger than the device can
//! hold at once fails with cudaErrorCooperativeLaunchTooLarge.
cudaError_t cudaLaunchCooperativeKernel(const void* func, dim3 gridDim, dim3 blockDim, void** args, size_t sharedMem,
                                        cudaStream_t stream) {
  return api([&] {
    CUkern_st* f = find_function(func);
    return f == nullptr ? not_a_kernel("cudaLaunchCooperativeKernel", func)
                        : launch(f, gridDim, blockDim, args, sharedMem, stream, false, true);
  });
}

// ---- Function queries ----

//! From the PTX: static shared and local (per thread) memory, the register estimate, the
//! .maxntid limit; ptxVersion and binaryVersion are the .target architecture (80, 90).
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes* attr, const void* func) {
  return api([&] {
    if (attr == nullptr) return null_argument("cudaFuncGetAttributes");
    CUkern_st* f = find_function(func);
    if (f == nullptr) return not_a_kernel("cudaFuncGetAttributes", func);
    const emu::kernel_info* info = nullptr;
    if (const cudaError_t status = resolve(*f, &info); status != cudaSuccess) return status;
    *attr = cudaFuncAttributes{};
    attr->sharedSizeBytes = info->static_shared_bytes;
    attr->localSizeBytes = info->local_bytes;
    attr->maxThreadsPerBlock = std::min(info->max_threads_per_block, model().max_threads_per_block);
    attr->numRegs = register_estimate(*info);
    attr->ptxVersion = info->ptx_version;
    attr->binaryVersion = info->ptx_version;
    attr->maxDynamicSharedSizeBytes = int(max_dynamic_shared(*f, *info));
    attr->preferredShmemCarveout = f->carveout;
    return cudaSuccess;
  });
}

//! cudaFuncAttributeMaxDynamicSharedMemorySize (up to the opt-in limit less the static shared
//! memory) and cudaFuncAttributePreferredSharedMemoryCarveout (recorded; no effect).
cudaError_t cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr, int value) {
  return api([&] {
    CUkern_st* f = find_function(func);
    if (f == nullptr) return not_a_kernel("cudaFuncSetAttribute", func);
    const emu::kernel_info* info = nullptr;
    if (const cudaError_t status = resolve(*f, &info); status != cudaSuccess) return status;
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
      const size_t optin = model().shared_per_block_optin;
      const size_t limit = info->static_shared_bytes < optin ? optin - info->static_shared_bytes : 0;
      if (value < 0 || size_t(value) > limit) {
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute(" + f->name + "): " + std::to_string(value) +
                                               " bytes of dynamic shared memory, at most " + std::to_string(limit));
      }
      f->max_dynamic_shared = value;
      return cudaSuccess;
    }
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) {
      if (value < -1 || value > 100) {
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute(" + f->name + "): carveout " + std::to_string(value));
      }
      f->carveout = value;
      return cudaSuccess;
    }
    return unsupported("cudaFuncSetAttribute", "attribute " + std::to_string(attr));
  });
}

//! Accepted and ignored: the emulator has no L1 / shared memory split.
cudaError_t cudaFuncSetCacheConfig(const void* func, enum cudaFuncCache cacheConfig) {
  return api([&] {
    if (find_function(func) == nullptr) return not_a_kernel("cudaFuncSetCacheConfig", func);
    if (unsigned(cacheConfig) > unsigned(cudaFuncCachePreferEqual)) {
      return fail(cudaErrorInvalidValue, "cudaFuncSetCacheConfig: cache configuration " + std::to_string(cacheConfig));
    }
    return cudaSuccess;
  });
}

//! See resident_blocks(); cudaOccupancyDisableCachingOverride has no effect.
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* numBlocks, const void* func, int blockSize,
                                                                   size_t dynamicSMemSize, unsigned int flags) {
  return api([&] {
    if (numBlocks == nullptr) return null_argument("cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    if ((flags & ~unsigned(cudaOccupancyDisableCachingOverride)) != 0 || blockSize <= 0) {
      return fail(cudaErrorInvalidValue, "cudaOccupancyMaxActiveBlocksPerMultiprocessor: block size " +
                                             std::to_string(blockSize) + ", flags " + hex(flags));
    }
    CUkern_st* f = find_function(func);
    if (f == nullptr) return not_a_kernel("cudaOccupancyMaxActiveBlocksPerMultiprocessor", func);
    const emu::kernel_info* info = nullptr;
    if (const cudaError_t status = resolve(*f, &info); status != cudaSuccess) return status;
    *numBlocks = resident_blocks(*f, *info, blockSize, dynamicSMemSize);
    return cudaSuccess;
  });
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, const void* func, int blockSize,
                                                          size_t dynamicSMemSize) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(numBlocks, func, blockSize, dynamicSMemSize,
                                                                cudaOccupancyDefault);
}

// ---- Devices ----

cudaError_t cudaGetDeviceCount(int* count) {
  return device_query([&] {
    if (count == nullptr) return null_argument("cudaGetDeviceCount");
    *count = 1;
    return cudaSuccess;
  });
}

cudaError_t cudaGetDevice(int* device) {
  return device_query([&] {
    if (device == nullptr) return null_argument("cudaGetDevice");
    *device = 0;
    return cudaSuccess;
  });
}

cudaError_t cudaSetDevice(int device) {
  return api([&] { return check_device("cudaSetDevice", device); });
}

//! The active device model's values; what the emulator lacks (textures, surfaces, mapped and
//! managed memory, cooperative and cluster launch, PCI ids) is reported as 0.
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
  return device_query([&] {
    if (prop == nullptr) return null_argument("cudaGetDeviceProperties");
    if (const cudaError_t status = check_device("cudaGetDeviceProperties", device); status != cudaSuccess) {
      return status;
    }
    const emu::device_model& m = model();
    *prop = cudaDeviceProp{};
    std::snprintf(prop->name, sizeof prop->name, "%s", m.name.c_str());
    prop->totalGlobalMem = m.global_bytes;
    prop->sharedMemPerBlock = m.shared_per_block;
    prop->regsPerBlock = m.registers_per_block;
    prop->warpSize = m.warp_size;
    prop->memPitch = 2147483647;
    prop->maxThreadsPerBlock = m.max_threads_per_block;
    for (int i = 0; i < 3; ++i) {
      prop->maxThreadsDim[i] = m.max_block[i];
      prop->maxGridSize[i] = m.max_grid[i];
    }
    prop->totalConstMem = 64 * 1024;
    prop->major = m.major;
    prop->minor = m.minor;
    prop->multiProcessorCount = m.sm_count;
    prop->concurrentKernels = 1;
    prop->unifiedAddressing = 1;
    prop->memoryBusWidth = m.memory_bus_bits;
    prop->l2CacheSize = int(m.l2_bytes);
    prop->maxThreadsPerMultiProcessor = m.max_threads_per_sm;
    prop->streamPrioritiesSupported = 1;
    prop->globalL1CacheSupported = 1;
    prop->localL1CacheSupported = 1;
    prop->sharedMemPerMultiprocessor = m.shared_per_sm;
    prop->regsPerMultiprocessor = m.registers_per_sm;
    prop->sharedMemPerBlockOptin = m.shared_per_block_optin;
    prop->maxBlocksPerMultiProcessor = m.max_blocks_per_sm;
    prop->reservedSharedMemPerBlock = m.reserved_shared_per_block;
    prop->deviceNumaId = -1;
    prop->hostNumaId = -1;
    return cudaSuccess;
  });
}

//! The values of cudaGetDeviceProperties and the model; an attribute without a value here
//! is unsupported.
cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  return device_query([&] {
    if (value == nullptr) return null_argument("cudaDeviceGetAttribute");
    if (const cudaError_t status = check_device("cudaDeviceGetAttribute", device); status != cudaSuccess) {
      return status;
    }
    return attribute(attr, value) ? cudaSuccess
                                  : unsupported("cudaDeviceGetAttribute", "attribute " + std::to_string(attr));
  });
}

//! All work is done when it is enqueued: nothing to wait for.
cudaError_t cudaDeviceSynchronize(void) {
  return flushing_api([] { return forbid_during_capture("cudaDeviceSynchronize"); });
}

//! Clears the sticky error and this thread's last error and frees every allocation, stream,
//! event and graph, and the kernels' attribute settings. Unlike a GPU, module variables keep
//! their values (modules are not reloaded).
cudaError_t cudaDeviceReset(void) {
  return device_query([] {
    if (const cudaError_t status = forbid_during_capture("cudaDeviceReset"); status != cudaSuccess) return status;
    emu::flush_device_output();
    runtime& r = rt();
    for (const auto& allocation : r.allocations) emu::device_free(allocation.first);
    r.allocations.clear();
    r.allocated_bytes = 0;
    for (void* p : r.host_allocations) std::free(p);
    r.host_allocations.clear();
    r.streams.clear();
    r.events.clear();
    r.graphs.clear();
    r.graph_execs.clear();
    r.captures.clear();
    r.per_thread_stream.capturing = nullptr;
    for (auto& f : r.functions) {
      f.second->max_dynamic_shared = -1;
      f.second->carveout = -1;
    }
    r.sticky = cudaSuccess;
    last_error = cudaSuccess;
    return cudaSuccess;
  });
}

cudaError_t cudaDriverGetVersion(int* driverVersion) {
  return device_query([&] {
    if (driverVersion == nullptr) return null_argument("cudaDriverGetVersion");
    *driverVersion = CUDART_VERSION;
    return cudaSuccess;
  });
}

cudaError_t cudaRuntimeGetVersion(int* runtimeVersion) {
  return device_query([&] {
    if (runtimeVersion == nullptr) return null_argument("cudaRuntimeGetVersion");
    *runtimeVersion = CUDART_VERSION;
    return cudaSuccess;
  });
}

// ---- Errors ----

//! The sticky error if a kernel has faulted (it stays), else this thread's last error, reset.
cudaError_t cudaGetLastError(void) {
  std::lock_guard<std::recursive_mutex> lock(rt().mutex);
  if (rt().sticky != cudaSuccess) return rt().sticky;
  const cudaError_t status = last_error;
  last_error = cudaSuccess;
  return status;
}

cudaError_t cudaPeekAtLastError(void) {
  std::lock_guard<std::recursive_mutex> lock(rt().mutex);
  return rt().sticky != cudaSuccess ? rt().sticky : last_error;
}

const char* cudaGetErrorName(cudaError_t error) {
  const error_text* e = find_error(error);
  return e != nullptr ? e->name : "unrecognized error code";
}

const char* cudaGetErrorString(cudaError_t error) {
  const error_text* e = find_error(error);
  return e != nullptr ? e->text : "unrecognized error code";
}

// ---- Memory ----

//! Device memory of the engine (256-byte aligned, bounds-checked); at most the model's
//! global memory in total.
cudaError_t cudaMalloc(void** devPtr, size_t size) {
  return api([&] {
    if (devPtr == nullptr) return null_argument("cudaMalloc");
    if (const cudaError_t status = forbid_during_capture("cudaMalloc"); status != cudaSuccess) return status;
    *devPtr = nullptr;
    if (size == 0) return cudaSuccess;
    runtime& r = rt();
    if (size > model().global_bytes - r.allocated_bytes) {
      return fail(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(size) +
                                                 " bytes: " + std::to_string(model().global_bytes - r.allocated_bytes) +
                                                 " bytes of device memory are free");
    }
    void* p = emu::device_allocate(size);
    if (p == nullptr) {
      return fail(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(size) + " bytes: out of host memory");
    }
    r.allocations.emplace(p, size);
    r.allocated_bytes += size;
    *devPtr = p;
    return cudaSuccess;
  });
}

cudaError_t cudaFree(void* devPtr) {
  return api([&] {
    if (const cudaError_t status = forbid_during_capture("cudaFree"); status != cudaSuccess) return status;
    if (devPtr == nullptr) return cudaSuccess;
    runtime& r = rt();
    const auto it = r.allocations.find(devPtr);
    if (it == r.allocations.end()) {
      return fail(cudaErrorInvalidValue, "cudaFree(" + hex(devPtr) + "): not a live cudaMalloc allocation");
    }
    emu::device_free(devPtr);
    r.allocated_bytes -= it->second;
    r.allocations.erase(it);
    return cudaSuccess;
  });
}

//! Plain (page-aligned) host memory: kernels cannot access it.
cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  return api([&] {
    if (pHost == nullptr) return null_argument("cudaHostAlloc");
    if ((flags & cudaHostAllocMapped) != 0) {
      return unsupported("cudaHostAlloc", "cudaHostAllocMapped: kernels cannot access host memory");
    }
    if ((flags & ~unsigned(cudaHostAllocPortable | cudaHostAllocWriteCombined)) != 0) {
      return fail(cudaErrorInvalidValue, "cudaHostAlloc: flags " + hex(flags));
    }
    if (const cudaError_t status = forbid_during_capture("cudaHostAlloc"); status != cudaSuccess) return status;
    *pHost = nullptr;
    if (size == 0) return cudaSuccess;
    constexpr size_t page = 4096;
    void* p = std::aligned_alloc(page, (size + page - 1) / page * page);
    if (p == nullptr) return fail(cudaErrorMemoryAllocation, "cudaHostAlloc of " + std::to_string(size) + " bytes");
    rt().host_allocations.insert(p);
    *pHost = p;
    return cudaSuccess;
  });
}

cudaError_t cudaMallocHost(void** ptr, size_t size) { return cudaHostAlloc(ptr, size, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* ptr) {
  return api([&] {
    if (const cudaError_t status = forbid_during_capture("cudaFreeHost"); status != cudaSuccess) return status;
    if (ptr == nullptr) return cudaSuccess;
    if (rt().host_allocations.erase(ptr) == 0) {
      return fail(cudaErrorInvalidValue, "cudaFreeHost(" + hex(ptr) + "): not a live cudaMallocHost allocation");
    }
    std::free(ptr);
    return cudaSuccess;
  });
}

//! Free: the model's global memory less what cudaMalloc holds.
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  return api([&] {
    if (free == nullptr || total == nullptr) return null_argument("cudaMemGetInfo");
    *total = model().global_bytes;
    *free = *total - rt().allocated_bytes;
    return cudaSuccess;
  });
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind) {
  return flushing_api([&] { return submit(nullptr, linear_copy(dst, src, count, kind), "cudaMemcpy"); });
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream) {
  return api([&] { return submit(stream, linear_copy(dst, src, count, kind), "cudaMemcpyAsync"); });
}

cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         enum cudaMemcpyKind kind) {
  return flushing_api(
      [&] { return submit(nullptr, pitched_copy(dst, dpitch, src, spitch, width, height, kind), "cudaMemcpy2D"); });
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              enum cudaMemcpyKind kind, cudaStream_t stream) {
  return api(
      [&] { return submit(stream, pitched_copy(dst, dpitch, src, spitch, width, height, kind), "cudaMemcpy2DAsync"); });
}

cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  return api([&] { return submit(nullptr, pitched_set(devPtr, count, value, count, 1), "cudaMemset"); });
}

cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  return api([&] { return submit(stream, pitched_set(devPtr, count, value, count, 1), "cudaMemsetAsync"); });
}

cudaError_t cudaMemset2D(void* devPtr, size_t pitch, int value, size_t width, size_t height) {
  return api([&] { return submit(nullptr, pitched_set(devPtr, pitch, value, width, height), "cudaMemset2D"); });
}

cudaError_t cudaMemset2DAsync(void* devPtr, size_t pitch, int value, size_t width, size_t height, cudaStream_t stream) {
  return api([&] { return submit(stream, pitched_set(devPtr, pitch, value, width, height), "cudaMemset2DAsync"); });
}

cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src, size_t count, size_t offset,
                               enum cudaMemcpyKind kind) {
  return flushing_api([&] { return copy_to_symbol("cudaMemcpyToSymbol", symbol, src, count, offset, kind, nullptr); });
}

cudaError_t cudaMemcpyToSymbolAsync(const void* symbol, const void* src, size_t count, size_t offset,
                                    enum cudaMemcpyKind kind, cudaStream_t stream) {
  return api([&] { return copy_to_symbol("cudaMemcpyToSymbolAsync", symbol, src, count, offset, kind, stream); });
}

cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t count, size_t offset, enum cudaMemcpyKind kind) {
  return flushing_api([&] { return copy_from_symbol("cudaMemcpyFromSymbol", dst, symbol, count, offset, kind, nullptr); });
}

cudaError_t cudaMemcpyFromSymbolAsync(void* dst, const void* symbol, size_t count, size_t offset,
                                      enum cudaMemcpyKind kind, cudaStream_t stream) {
  return api([&] { return copy_from_symbol("cudaMemcpyFromSymbolAsync", dst, symbol, count, offset, kind, stream); });
}

cudaError_t cudaGetSymbolAddress(void** devPtr, const void* symbol) {
  return api([&] {
    if (devPtr == nullptr) return null_argument("cudaGetSymbolAddress");
    char* address = nullptr;
    size_t bytes = 0;
    const cudaError_t status = find_symbol(symbol, &address, &bytes);
    *devPtr = address;
    return status;
  });
}

cudaError_t cudaGetSymbolSize(size_t* size, const void* symbol) {
  return api([&] {
    if (size == nullptr) return null_argument("cudaGetSymbolSize");
    char* address = nullptr;
    return find_symbol(symbol, &address, size);
  });
}

// ---- Streams ----

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  return api([&] {
    if (pStream == nullptr) return null_argument("cudaStreamCreateWithFlags");
    if ((flags & ~unsigned(cudaStreamNonBlocking)) != 0) {
      return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: flags " + hex(flags));
    }
    *pStream = rt().streams.add();
    (*pStream)->flags = flags;
    return cudaSuccess;
  });
}

cudaError_t cudaStreamCreate(cudaStream_t* pStream) { return cudaStreamCreateWithFlags(pStream, cudaStreamDefault); }

//! The priority is accepted and has no effect: work runs in call order.
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* pStream, unsigned int flags, int) {
  return cudaStreamCreateWithFlags(pStream, flags);
}

//! A capture the stream takes part in is abandoned (where it began) or left.
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  return api([&] {
    if (!rt().streams.contains(stream)) {
      return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: " + hex(stream) + " is not a live stream");
    }
    if (stream->capturing != nullptr && stream->capturing->origin == stream) end_capture(*stream->capturing);
    stream->capturing = nullptr;
    rt().streams.erase(stream);
    return cudaSuccess;
  });
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return flushing_api([&] {
    CUstream_st* s = nullptr;
    if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
    return check_wait(s, "cudaStreamSynchronize");
  });
}

//! cudaSuccess: the stream's work is done when it is enqueued.
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  return api([&] {
    CUstream_st* s = nullptr;
    if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
    return check_wait(s, "cudaStreamQuery");
  });
}

//! Work is done when enqueued, so a wait orders nothing; waiting on an event recorded in an
//! active capture makes the stream join that capture.
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  return api([&] {
    CUstream_st* s = nullptr;
    if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
    if (const cudaError_t status = find_event("cudaStreamWaitEvent", event); status != cudaSuccess) return status;
    if (flags != cudaEventWaitDefault) return unsupported("cudaStreamWaitEvent", "flags " + hex(flags));
    capture* c = active_capture(event->captured_in);
    if (c == nullptr || s->capturing == c) {
      capture* into = nullptr;
      return route(s, &into);
    }
    if (s == &rt().legacy_stream) {
      return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamWaitEvent: the legacy stream cannot join a capture");
    }
    if (s->capturing != nullptr) {
      return fail(cudaErrorStreamCaptureMerge, "cudaStreamWaitEvent: the stream takes part in another capture");
    }
    s->capturing = c;
    return cudaSuccess;
  });
}

//! Runs `fn(userData)` on the calling thread when enqueued: the stream's earlier work is done,
//! its later work not begun (CUDA Runtime API, cudaLaunchHostFunc); recorded as a host node
//! while the stream captures.
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* userData) {
  return api([&] {
    if (fn == nullptr) return null_argument("cudaLaunchHostFunc");
    return submit(stream, host_node{fn, userData}, "cudaLaunchHostFunc");
  });
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
  return api([&] {
    CUstream_st* s = nullptr;
    if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
    if (s == &rt().legacy_stream) {
      return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture: the legacy stream cannot be captured");
    }
    if (s->capturing != nullptr) return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: the stream is capturing");
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
        mode != cudaStreamCaptureModeRelaxed) {
      return fail(cudaErrorInvalidValue, "cudaStreamBeginCapture: mode " + std::to_string(mode));
    }
    runtime& r = rt();
    auto c = std::make_unique<capture>();
    c->id = r.next_capture_id++;
    c->origin = s;
    c->mode = mode;
    c->thread = std::this_thread::get_id();
    s->capturing = c.get();
    r.captures.emplace(c->id, std::move(c));
    return cudaSuccess;
  });
}

//! The graph of the recorded work; none (cudaErrorStreamCaptureInvalidated) if the capture
//! was invalidated.
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  return api([&] {
    if (pGraph == nullptr) return null_argument("cudaStreamEndCapture");
    CUstream_st* s = nullptr;
    if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
    if (s->capturing == nullptr)
      return fail(cudaErrorIllegalState, "cudaStreamEndCapture: the stream is not capturing");
    if (s->capturing->origin != s) {
      s->capturing->invalidated = true;
      return fail(cudaErrorStreamCaptureUnmatched, "cudaStreamEndCapture: the capture began on another stream");
    }
    std::unique_ptr<CUgraph_st> graph = end_capture(*s->capturing);
    *pGraph = graph ? rt().graphs.add(std::move(graph)) : nullptr;
    return *pGraph != nullptr ? cudaSuccess : cudaErrorStreamCaptureInvalidated;
  });
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus* pCaptureStatus) {
  return api([&] {
    if (pCaptureStatus == nullptr) return null_argument("cudaStreamIsCapturing");
    CUstream_st* s = nullptr;
    if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
    if (s == &rt().legacy_stream && blocking_capture(false)) {
      return fail(cudaErrorStreamCaptureImplicit,
                  "cudaStreamIsCapturing: the legacy stream while a blocking stream captures");
    }
    *pCaptureStatus = s->capturing == nullptr     ? cudaStreamCaptureStatusNone
                      : s->capturing->invalidated ? cudaStreamCaptureStatusInvalidated
                                                  : cudaStreamCaptureStatusActive;
    return cudaSuccess;
  });
}

// ---- Events ----

//! cudaEventDefault, cudaEventBlockingSync, cudaEventDisableTiming; not cudaEventInterprocess.
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  return api([&] {
    if (event == nullptr) return null_argument("cudaEventCreateWithFlags");
    if ((flags & cudaEventInterprocess) != 0) return unsupported("cudaEventCreateWithFlags", "cudaEventInterprocess");
    if ((flags & ~unsigned(cudaEventBlockingSync | cudaEventDisableTiming)) != 0) {
      return fail(cudaErrorInvalidValue, "cudaEventCreateWithFlags: flags " + hex(flags));
    }
    *event = rt().events.add();
    (*event)->flags = flags;
    return cudaSuccess;
  });
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

//! Records the host time now (the stream's earlier work is done); in a capture, marks the
//! event as recorded there, for cudaStreamWaitEvent.
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  return api([&] {
    if (const cudaError_t status = find_event("cudaEventRecord", event); status != cudaSuccess) return status;
    CUstream_st* s = nullptr;
    if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
    capture* into = nullptr;
    if (const cudaError_t status = route(s, &into); status != cudaSuccess) return status;
    event->recorded = into == nullptr;
    event->captured_in = into == nullptr ? 0 : into->id;
    event->time = host_clock::now();
    return cudaSuccess;
  });
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return flushing_api([&] {
    if (const cudaError_t status = find_event("cudaEventSynchronize", event); status != cudaSuccess) return status;
    return check_captured_event("cudaEventSynchronize", event);
  });
}

//! cudaSuccess: recorded work is always complete.
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return api([&] {
    if (const cudaError_t status = find_event("cudaEventQuery", event); status != cudaSuccess) return status;
    return check_captured_event("cudaEventQuery", event);
  });
}

//! Host time between the two records, in milliseconds.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  return api([&] {
    if (ms == nullptr) return null_argument("cudaEventElapsedTime");
    for (cudaEvent_t e : {start, end}) {
      if (const cudaError_t status = find_event("cudaEventElapsedTime", e); status != cudaSuccess) return status;
      if (const cudaError_t status = check_captured_event("cudaEventElapsedTime", e); status != cudaSuccess) {
        return status;
      }
      if ((e->flags & cudaEventDisableTiming) != 0 || !e->recorded) {
        return fail(cudaErrorInvalidResourceHandle,
                    "cudaEventElapsedTime: an event that was not recorded or has timing disabled");
      }
    }
    *ms = std::chrono::duration<float, std::milli>(end->time - start->time).count();
    return cudaSuccess;
  });
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  return api([&] {
    if (const cudaError_t status = find_event("cudaEventDestroy", event); status != cudaSuccess) return status;
    rt().events.erase(event);
    return cudaSuccess;
  });
}

// ---- Profiler ----

//! No profiler runs here: starting and stopping its collection does nothing.
cudaError_t cudaProfilerStart(void) {
  return api([] { return cudaSuccess; });
}

cudaError_t cudaProfilerStop(void) {
  return api([] { return cudaSuccess; });
}

// ---- Graphs ----

cudaError_t find_graph(const char* function, cudaGraph_t graph) {
  if (rt().graphs.contains(graph)) return cudaSuccess;
  return fail(cudaErrorInvalidResourceHandle, std::string(function) + ": " + hex(graph) + " is not a live graph");
}

//! Adds `work` to `graph` after `dependencies`, each of which must be a node of that graph
//! (CUDA Runtime API, cudaGraphAddKernelNode and the other cudaGraphAdd*Node).
cudaError_t add_node(const char* function, cudaGraphNode_t* pGraphNode, cudaGraph_t graph,
                     const cudaGraphNode_t* pDependencies, size_t numDependencies, node work) {
  if (pGraphNode == nullptr || (numDependencies > 0 && pDependencies == nullptr)) return null_argument(function);
  if (const cudaError_t status = find_graph(function, graph); status != cudaSuccess) return status;
  std::vector<CUgraphNode_st*> dependencies(pDependencies, pDependencies + numDependencies);
  for (CUgraphNode_st* d : dependencies) {
    const auto& nodes = graph->nodes;
    if (std::none_of(nodes.begin(), nodes.end(), [&](const auto& n) { return n.get() == d; })) {
      return fail(cudaErrorInvalidValue,
                  std::string(function) + ": dependency " + hex(d) + " is not a node of the graph");
    }
  }
  *pGraphNode = graph->add(std::move(work), std::move(dependencies));
  return cudaSuccess;
}

cudaError_t cudaGraphCreate(cudaGraph_t* pGraph, unsigned int flags) {
  return api([&] {
    if (pGraph == nullptr) return null_argument("cudaGraphCreate");
    if (flags != 0) return fail(cudaErrorInvalidValue, "cudaGraphCreate: flags " + hex(flags) + " (must be 0)");
    *pGraph = rt().graphs.add();
    return cudaSuccess;
  });
}

//! The launch is checked as cudaLaunchKernel checks it, and its arguments copied, when the node is
//! added; `extra` (packed arguments) is not emulated.
cudaError_t cudaGraphAddKernelNode(cudaGraphNode_t* pGraphNode, cudaGraph_t graph, const cudaGraphNode_t* pDependencies,
                                   size_t numDependencies, const struct cudaKernelNodeParams* pNodeParams) {
  return api([&] {
    if (pNodeParams == nullptr) return null_argument("cudaGraphAddKernelNode");
    const cudaKernelNodeParams& p = *pNodeParams;
    if (p.extra != nullptr) return unsupported("cudaGraphAddKernelNode", "extra");
    CUkern_st* f = find_function(p.func);
    if (f == nullptr) return not_a_kernel("cudaGraphAddKernelNode", p.func);
    const emu::kernel_info* info = nullptr;
    if (const cudaError_t status = check_launch(*f, p.gridDim, p.blockDim, p.sharedMemBytes, &info);
        status != cudaSuccess) {
      return status;
    }
    if (!info->params.empty() && p.kernelParams == nullptr) return null_argument("cudaGraphAddKernelNode");
    return add_node("cudaGraphAddKernelNode", pGraphNode, graph, pDependencies, numDependencies,
                    recorded_launch(f, *info, p.gridDim, p.blockDim, p.sharedMemBytes, p.kernelParams, false, false));
  });
}

//! Linear memory only (srcPtr and dstPtr; CUDA arrays are not emulated): extent.width bytes per
//! row, extent.height rows per slice, extent.depth slices, starting at srcPos / dstPos (x in
//! bytes). Slices of more than one depth must be rows one pitch apart (ysize = extent.height on
//! both sides); other 3-D copies are not emulated.
cudaError_t cudaGraphAddMemcpyNode(cudaGraphNode_t* pGraphNode, cudaGraph_t graph, const cudaGraphNode_t* pDependencies,
                                   size_t numDependencies, const struct cudaMemcpy3DParms* pCopyParams) {
  return api([&] {
    const char* function = "cudaGraphAddMemcpyNode";
    if (pCopyParams == nullptr) return null_argument(function);
    const cudaMemcpy3DParms& p = *pCopyParams;
    if (p.srcArray != nullptr || p.dstArray != nullptr) return unsupported(function, "CUDA arrays");
    const cudaExtent e = p.extent;
    if (e.depth > 1 && (p.srcPtr.ysize != e.height || p.dstPtr.ysize != e.height)) {
      return unsupported(function, "slices of " + std::to_string(p.srcPtr.ysize) + " and " +
                                       std::to_string(p.dstPtr.ysize) + " rows, copying " + std::to_string(e.height));
    }
    if (e.depth > 1 && (p.srcPos.y > 0 || p.dstPos.y > 0)) {
      return fail(cudaErrorInvalidValue, std::string(function) + ": a y position with " + std::to_string(e.depth) +
                                             " slices: rows beyond a slice");
    }
    const auto start = [](const cudaPitchedPtr& ptr, const cudaPos& pos) {
      return static_cast<char*>(ptr.ptr) + (pos.z * ptr.ysize + pos.y) * ptr.pitch + pos.x;
    };
    copy_node c = pitched_copy(start(p.dstPtr, p.dstPos), p.dstPtr.pitch, start(p.srcPtr, p.srcPos), p.srcPtr.pitch,
                               e.width, e.height * e.depth, p.kind);
    if (const cudaError_t status = check_copy(c, function); status != cudaSuccess) return status;
    return add_node(function, pGraphNode, graph, pDependencies, numDependencies, c);
  });
}

cudaError_t cudaGraphAddMemcpyNode1D(cudaGraphNode_t* pGraphNode, cudaGraph_t graph,
                                     const cudaGraphNode_t* pDependencies, size_t numDependencies, void* dst,
                                     const void* src, size_t count, enum cudaMemcpyKind kind) {
  return api([&] {
    copy_node c = linear_copy(dst, src, count, kind);
    if (const cudaError_t status = check_copy(c, "cudaGraphAddMemcpyNode1D"); status != cudaSuccess) return status;
    return add_node("cudaGraphAddMemcpyNode1D", pGraphNode, graph, pDependencies, numDependencies, c);
  });
}

//! `height` rows of `width` elements of 1, 2 or 4 bytes, each the low bytes of `value`; the pitch
//! is unused for one row.
cudaError_t cudaGraphAddMemsetNode(cudaGraphNode_t* pGraphNode, cudaGraph_t graph, const cudaGraphNode_t* pDependencies,
                                   size_t numDependencies, const struct cudaMemsetParams* pMemsetParams) {
  return api([&] {
    if (pMemsetParams == nullptr) return null_argument("cudaGraphAddMemsetNode");
    const cudaMemsetParams& p = *pMemsetParams;
    if (p.elementSize != 1 && p.elementSize != 2 && p.elementSize != 4) {
      return fail(cudaErrorInvalidValue,
                  "cudaGraphAddMemsetNode: elementSize " + std::to_string(p.elementSize) + " (1, 2 or 4)");
    }
    const size_t row = p.width * p.elementSize;
    set_node m = pitched_set(p.dst, p.height > 1 ? p.pitch : row, int(p.value), row, p.height);
    m.element_size = p.elementSize;
    if (const cudaError_t status = check_set(m, "cudaGraphAddMemsetNode"); status != cudaSuccess) return status;
    return add_node("cudaGraphAddMemsetNode", pGraphNode, graph, pDependencies, numDependencies, m);
  });
}

cudaError_t cudaGraphAddHostNode(cudaGraphNode_t* pGraphNode, cudaGraph_t graph, const cudaGraphNode_t* pDependencies,
                                 size_t numDependencies, const struct cudaHostNodeParams* pNodeParams) {
  return api([&] {
    if (pNodeParams == nullptr || pNodeParams->fn == nullptr) return null_argument("cudaGraphAddHostNode");
    return add_node("cudaGraphAddHostNode", pGraphNode, graph, pDependencies, numDependencies,
                    host_node{pNodeParams->fn, pNodeParams->userData});
  });
}

cudaError_t cudaGraphAddEmptyNode(cudaGraphNode_t* pGraphNode, cudaGraph_t graph, const cudaGraphNode_t* pDependencies,
                                  size_t numDependencies) {
  return api([&] {
    return add_node("cudaGraphAddEmptyNode", pGraphNode, graph, pDependencies, numDependencies, empty_node{});
  });
}

//! The nodes in the order they were added; with `nodes` null, their number. Entries beyond the
//! graph's nodes are set to null and *numNodes to the number written.
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* numNodes) {
  return api([&] {
    if (numNodes == nullptr) return null_argument("cudaGraphGetNodes");
    if (const cudaError_t status = find_graph("cudaGraphGetNodes", graph); status != cudaSuccess) return status;
    if (nodes != nullptr) {
      for (size_t i = 0; i < *numNodes; ++i) nodes[i] = i < graph->nodes.size() ? graph->nodes[i].get() : nullptr;
      *numNodes = std::min(*numNodes, graph->nodes.size());
    } else {
      *numNodes = graph->nodes.size();
    }
    return cudaSuccess;
  });
}

//! A copy of every node (kernel arguments included) and dependency.
cudaError_t cudaGraphClone(cudaGraph_t* pGraphClone, cudaGraph_t originalGraph) {
  return api([&] {
    if (pGraphClone == nullptr) return null_argument("cudaGraphClone");
    if (const cudaError_t status = find_graph("cudaGraphClone", originalGraph); status != cudaSuccess) return status;
    auto clone = std::make_unique<CUgraph_st>();
    std::unordered_map<const CUgraphNode_st*, CUgraphNode_st*> copies;
    for (const auto& n : originalGraph->nodes) {
      std::vector<CUgraphNode_st*> dependencies;
      for (const CUgraphNode_st* d : n->dependencies) dependencies.push_back(copies.at(d));
      copies[n.get()] = clone->add(n->work, std::move(dependencies));
    }
    *pGraphClone = rt().graphs.add(std::move(clone));
    return cudaSuccess;
  });
}

//! Flags: cudaGraphInstantiateFlagAutoFreeOnLaunch and UseNodePriority have no effect here
//! (no allocation nodes; nodes run in order); the others are not emulated.
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph, unsigned long long flags) {
  return api([&] {
    if (pGraphExec == nullptr) return null_argument("cudaGraphInstantiate");
    if (const cudaError_t status = find_graph("cudaGraphInstantiate", graph); status != cudaSuccess) return status;
    constexpr unsigned long long no_effect =
        cudaGraphInstantiateFlagAutoFreeOnLaunch | cudaGraphInstantiateFlagUseNodePriority;
    if ((flags & ~no_effect) != 0) return unsupported("cudaGraphInstantiate", "flags " + hex(flags));
    *pGraphExec = rt().graph_execs.add();
    for (const auto& n : graph->nodes) (*pGraphExec)->nodes.push_back(n->work);
    return cudaSuccess;
  });
}

cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* pGraphExec, cudaGraph_t graph, unsigned long long flags) {
  return cudaGraphInstantiate(pGraphExec, graph, flags);
}

//! Runs the nodes in the order they were added, stopping at the first error (or records it
//! into the capture of a capturing stream).
cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  return api([&] {
    if (!rt().graph_execs.contains(graphExec)) {
      return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: " + hex(graphExec) + " is not a live graph exec");
    }
    CUstream_st* s = nullptr;
    if (const cudaError_t status = find_stream(stream, &s); status != cudaSuccess) return status;
    capture* into = nullptr;
    if (const cudaError_t status = route(s, &into); status != cudaSuccess) return status;
    for (node& work : graphExec->nodes) {
      if (into != nullptr) {
        into->graph->append(work);
      } else if (const cudaError_t status = execute(work, "cudaGraphLaunch", *s); status != cudaSuccess) {
        return status;
      }
    }
    return cudaSuccess;
  });
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  return api([&] {
    if (!rt().graph_execs.erase(graphExec)) {
      return fail(cudaErrorInvalidResourceHandle,
                  "cudaGraphExecDestroy: " + hex(graphExec) + " is not a live graph exec");
    }
    return cudaSuccess;
  });
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  return api([&] {
    if (!rt().graphs.erase(graph)) {
      return fail(cudaErrorInvalidResourceHandle, "cudaGraphDestroy: " + hex(graph) + " is not a live graph");
    }
    return cudaSuccess;
  });
}

// ---- Driver entry points ----

//! The function from driver_symbols(); for any other symbol *funcPtr is null and
//! *driverStatus cudaDriverEntryPointSymbolNotFound, with cudaSuccess (as without a driver
//! that has it).
cudaError_t cudaGetDriverEntryPoint(const char* symbol, void** funcPtr, unsigned long long flags,
                                    enum cudaDriverEntryPointQueryResult* driverStatus) {
  return api([&] {
    return driver_entry_point("cudaGetDriverEntryPoint", symbol, funcPtr, CUDART_VERSION, flags, driverStatus);
  });
}

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** funcPtr, unsigned int cudaVersion,
                                             unsigned long long flags,
                                             enum cudaDriverEntryPointQueryResult* driverStatus) {
  return api([&] {
    return driver_entry_point("cudaGetDriverEntryPointByVersion", symbol, funcPtr, cudaVersion, flags, driverStatus);
  });
}

}  // extern "C"
