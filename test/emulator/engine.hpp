// The PTX execution engine's interface to the emulated CUDA runtime: device models, parsed
// PTX modules, device memory with bounds checking, and kernel launches.
//
// A launch runs every thread of every block to completion on the calling host thread before
// it returns; the runtime keeps streams and events in program order on top of that.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace emu {

//! What `cudaGetDeviceProperties` reports, and what launches are checked against.
struct device_model {
  std::string name;              //!< "beam emulated sm_80": tests tell an emulated device by the prefix
  int major = 8, minor = 0;      //!< compute capability
  int ptx_arch = 80;             //!< the virtual architecture whose PTX runs (80, 90 for sm_90a's compute_90a)
  bool arch_specific = false;    //!< true for sm_90a: runs compute_90a PTX
  int sm_count = 108;
  size_t shared_per_block = 48 * 1024;          //!< default limit without opt-in
  size_t shared_per_block_optin = 166912;       //!< cudaDevAttrMaxSharedMemoryPerBlockOptin (A100)
  size_t shared_per_sm = 167936;
  size_t reserved_shared_per_block = 1024;
  int registers_per_sm = 65536, registers_per_block = 65536;
  int max_threads_per_block = 1024, max_threads_per_sm = 2048, max_blocks_per_sm = 32;
  int warp_size = 32;
  size_t l2_bytes = 40 * 1024 * 1024;
  size_t global_bytes = size_t(16) << 30;       //!< reported total; allocations are host memory
  int clock_khz = 1410000, memory_clock_khz = 1215000, memory_bus_bits = 5120;
  int max_grid[3] = {2147483647, 65535, 65535};
  int max_block[3] = {1024, 1024, 64};
};

//! The model chosen by the environment variable BEAM_EMULATOR_DEVICE ("sm_80", the default,
//! or "sm_90a"); an unknown name is a fatal error naming the known ones.
const device_model& active_device_model();

//! A kernel parameter as the PTX declares it: byte offset in the parameter buffer and size.
struct param_slot {
  size_t offset = 0, size = 0;
};

//! A kernel's name for diagnostics: `name` demangled ("void scale<float>(float*, int)"), or as it is
//! when it is no C++ mangled name (extern "C").
std::string demangled(const std::string& name);

//! What `cudaFuncGetAttributes` reports for an entry, plus the parameter layout.
struct kernel_info {
  std::string name;                  //!< mangled .entry name
  std::vector<param_slot> params;
  size_t param_bytes = 0;
  size_t static_shared_bytes = 0;
  size_t local_bytes = 0;            //!< per thread (.local depots)
  int registers = 0;                 //!< virtual registers (capped at 255): an estimate, as PTX
                                     //!< allocates none; the runtime caps it by the bounds below
  int max_threads_per_block = 1024;  //!< .maxntid product, or the model's limit
  bool bounded_threads = false;      //!< a .maxntid / .reqntid directive gave max_threads_per_block
  int max_registers = 0;             //!< .maxnreg, 0 if none
  int min_blocks_per_sm = 0;         //!< .minnctapersm, 0 if none
  int ptx_version = 80;              //!< from .target (80 for sm_80, 90 for sm_90a)
};

class kernel;  // opaque: a decoded .entry

//! One parsed PTX module (one fatbinary's PTX for the active model's architecture).
class module {
 public:
  //! Parses PTX text: its module-scope directives (`.global`/`.const` variables allocated and
  //! initialised, functions declared); throws std::runtime_error naming the line on a directive
  //! it cannot decode. Kernels are decoded one by one, on their first find_kernel.
  static std::unique_ptr<module> parse(std::string_view ptx, std::string source_name);
  virtual ~module() = default;
  //! The .entry `mangled_name`, decoded on its first request (with the functions it calls).
  //! nullptr when the module has no such .entry (`problem` empty) or when it cannot be decoded
  //! (`problem` names the line and what is not implemented, an unknown opcode included): only
  //! that kernel fails, every other of the module still runs.
  virtual const kernel* find_kernel(std::string_view mangled_name, std::string& problem) = 0;
  virtual const kernel_info& info(const kernel&) const = 0;
  //! Device address and size of a module-scope `.global` or `.const` variable; nullptr if absent.
  virtual void* variable(std::string_view name, size_t* bytes) const = 0;
};

//! A launch: grid, block, dynamic shared memory, and the argument pointers as cudaLaunchKernel
//! receives them (args[i] points to the host value of parameter i).
struct launch_params {
  dim3 grid{1, 1, 1}, block{1, 1, 1};
  size_t dynamic_shared_bytes = 0;
  void** args = nullptr;
  uint64_t id = 0;  //!< the launch's number (from 1); its global stores are recorded under it
  //! Programmatic dependent launch: the launch before it on its stream, whose writes its threads
  //! may not touch before their griddepcontrol.wait (0: none, or no programmatic dependency).
  uint64_t predecessor = 0;
  std::string predecessor_kernel;  //!< that launch's kernel, for the report
  //! A cooperative launch (cudaLaunchCooperativeKernel): every block resident at once, and the
  //! grid workspace that cooperative groups' grid synchronisation uses in %envreg1:%envreg2.
  bool cooperative = false;
};

//! Runs the grid to completion. Returns cudaSuccess, or the error a GPU would report
//! (cudaErrorIllegalAddress, cudaErrorMisalignedAddress, cudaErrorLaunchFailure for trap,
//! barrier and collective faults, cudaErrorIllegalInstruction for a malformed operand such as a
//! barrier id over 15, cudaErrorLaunchTimeout for the watchdog) after
//! printing a diagnostic on stderr naming the kernel, block, thread, PTX line and address.
//! Configuration errors (block too large, shared memory over the limit) return
//! cudaErrorInvalidConfiguration / cudaErrorInvalidValue without running anything.
cudaError_t launch(const kernel&, const launch_params&);

//! Writes what kernels printed (device printf to stdout, failed assertions' messages to stderr)
//! since the last call, in the order they printed it. The runtime calls it where CUDA writes out
//! its printf buffer (control.cpp).
void flush_device_output();

//! Profiling (profile.cpp): a memset executed, a stream operation besides the launches.
void profile_memset();

//! Device memory: host memory whose ranges are recorded, so that every emulated access can be
//! checked against the live allocations. Alignment 256 bytes, like cudaMalloc.
void* device_allocate(size_t bytes);
//! false if `ptr` is not the start of a live allocation.
bool device_free(void* ptr);
//! True if [ptr, ptr + bytes) lies inside one live allocation.
bool device_range_valid(const void* ptr, size_t bytes);
//! Records [ptr, ptr + bytes) of a live allocation as written (initcheck): host copies and
//! memsets into device memory.
void mark_device_written(const void* ptr, size_t bytes);

}  // namespace emu
