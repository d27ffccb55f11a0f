// Launches: the configuration checked, every block's state set up and run by the scheduler
// (scheduler.cpp), one block after another or, for a cooperative launch, all resident together;
// the diagnostics that end a launch, and the special registers.
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <unordered_set>

#include "machine.hpp"

namespace emu {
namespace {

//! racecheck runs unless BEAM_EMULATOR_RACECHECK=0.
bool racecheck_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("BEAM_EMULATOR_RACECHECK");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

}  // namespace

std::string dim_text(const uint32_t v[3]) {
  return "(" + std::to_string(v[0]) + "," + std::to_string(v[1]) + "," + std::to_string(v[2]) + ")";
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

void fail_launch(const block_state& b, const thread_state* t, const instruction* in, cudaError_t error,
                 const char* check, const std::string& detail) {
  std::string where = "kernel " + demangled(b.k.info.name) + " block " + dim_text(b.ctaid);
  if (t) where += " thread " + dim_text(t->tid);
  if (in) where += " " + b.k.line_text(in->line);
  std::fprintf(stderr, "beam emulator: %s: %s: %s\n", check, where.c_str(), detail.c_str());
  throw launch_failure{error};
}

uint64_t special_value(const block_state& b, const thread_state& t, special s) {
  const dim3& g = b.launch.grid;
  const dim3& d = b.launch.block;
  switch (s) {
    case special::tid_x: return t.tid[0];
    case special::tid_y: return t.tid[1];
    case special::tid_z: return t.tid[2];
    case special::ntid_x: return d.x;
    case special::ntid_y: return d.y;
    case special::ntid_z: return d.z;
    case special::ctaid_x: return b.ctaid[0];
    case special::ctaid_y: return b.ctaid[1];
    case special::ctaid_z: return b.ctaid[2];
    case special::nctaid_x: return g.x;
    case special::nctaid_y: return g.y;
    case special::nctaid_z: return g.z;
    case special::laneid: return t.lane;
    case special::warpid: return t.warp;
    case special::nwarpid: return 64;
    case special::smid: return 0;
    case special::nsmid: return static_cast<uint64_t>(active_device_model().sm_count);
    case special::gridid: return 1;
    case special::envreg1: return b.grid_workspace >> 32;
    case special::envreg2: return b.grid_workspace & 0xFFFFFFFFu;
    case special::lanemask_eq: return uint32_t(1) << t.lane;
    case special::lanemask_lt: return (uint32_t(1) << t.lane) - 1;
    case special::lanemask_le: return t.lane == 31 ? 0xFFFFFFFFu : (uint32_t(2) << t.lane) - 1;
    case special::lanemask_gt: return t.lane == 31 ? 0u : ~((uint32_t(2) << t.lane) - 1);
    case special::lanemask_ge: return ~((uint32_t(1) << t.lane) - 1);
    case special::clock:
    case special::clock64:
    case special::globaltimer:
      return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    case special::dynamic_smem_size: return b.dynamic_shared;
    case special::total_smem_size: return b.shared.size();
    case special::clusterid_x: return b.ctaid[0];
    case special::clusterid_y: return b.ctaid[1];
    case special::clusterid_z: return b.ctaid[2];
    case special::nclusterid_x: return g.x;
    case special::nclusterid_y: return g.y;
    case special::nclusterid_z: return g.z;
    case special::cluster_ctaid_x: case special::cluster_ctaid_y: case special::cluster_ctaid_z: return 0;
    case special::cluster_nctaid_x: case special::cluster_nctaid_y: case special::cluster_nctaid_z: return 1;
    case special::cluster_ctarank: return 0;
    case special::cluster_nctarank: return 1;
    case special::is_explicit_cluster: return 0;
    // The region of shared memory reserved for NVIDIA system software (PTX ISA 10.29): a block here
    // has none, so the region is empty (its size 0), at the end of the block's shared memory, and
    // anything addressed through these offsets lies outside the block's shared memory.
    case special::reserved_smem_offset_begin:
    case special::reserved_smem_offset_end:
    case special::reserved_smem_offset_0:
    case special::reserved_smem_offset_1: return b.shared.size();
    case special::reserved_smem_offset_cap: return 0;
  }
  return 0;
}

void require_full_warp(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  if (mask != 0xFFFFFFFFu)
    fail_launch(b, lanes[__builtin_ctz(mask)], &in, cudaErrorLaunchFailure, "collective mismatch",
                in.opcode + " needs all 32 lanes of the warp");
}

cudaError_t launch(const kernel& k, const launch_params& lp) {
  const device_model& model = active_device_model();
  const uint64_t threads = uint64_t(lp.block.x) * lp.block.y * lp.block.z;
  const uint64_t blocks = uint64_t(lp.grid.x) * lp.grid.y * lp.grid.z;
  if (threads == 0 || blocks == 0 || threads > uint64_t(model.max_threads_per_block) ||
      lp.block.x > uint32_t(model.max_block[0]) || lp.block.y > uint32_t(model.max_block[1]) ||
      lp.block.z > uint32_t(model.max_block[2]) || lp.grid.x > uint32_t(model.max_grid[0]) ||
      lp.grid.y > uint32_t(model.max_grid[1]) || lp.grid.z > uint32_t(model.max_grid[2]))
    return cudaErrorInvalidConfiguration;
  if (threads > uint64_t(k.info.max_threads_per_block)) return cudaErrorInvalidValue;
  if (k.static_shared_bytes + lp.dynamic_shared_bytes > model.shared_per_block_optin) return cudaErrorInvalidValue;

  std::vector<uint8_t> params(k.info.param_bytes + 1);
  for (size_t i = 0; i < k.info.params.size(); ++i)
    std::memcpy(params.data() + k.info.params[i].offset, lp.args[i], k.info.params[i].size);

  uint64_t budget = watchdog_limit();
  const bool racecheck = racecheck_enabled();
  // A cooperative launch keeps every block resident, each with registers, local memory and
  // racecheck state of its own; otherwise blocks run one after another and reuse one set.
  const uint64_t resident = lp.cooperative ? blocks : 1;
  std::vector<race_state> races(racecheck ? resident : 0);
  // Registers per warp, register-major (machine.hpp, reg): a block's slab holds whole warps.
  const size_t block_registers = (threads + 31) / 32 * 32 * k.register_count;
  std::vector<uint64_t> registers(resident * block_registers);
  // Local memory, each thread's stack (inside its generic-address window): pages are touched (and
  // zero) as the calls reach them.
  const size_t stack_bytes = std::min<size_t>(k.stack_bytes, windows().local_size);
  const size_t local_bytes = std::max<size_t>(resident * threads * stack_bytes, 1);
  void* const mapped = mmap(nullptr, local_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapped == MAP_FAILED) return cudaErrorMemoryAllocation;
  const std::unique_ptr<uint8_t, std::function<void(uint8_t*)>> local(
      static_cast<uint8_t*>(mapped), [local_bytes](uint8_t* p) { munmap(p, local_bytes); });
  // The grid workspace of a cooperative launch: zeroed device memory, where cooperative groups'
  // grid synchronisation keeps its arrival count (at offset 4).
  const std::unique_ptr<void, bool (*)(void*)> workspace(lp.cooperative ? device_allocate(8) : nullptr, device_free);
  if (workspace) {
    std::memset(workspace.get(), 0, 8);
    mark_device_written(workspace.get(), 8);
  }
  const std::unique_ptr<profile_launch> profile(profile_launch_begin(k, lp));
  std::vector<uint32_t> ready(profile ? resident * threads * k.register_count : 0);  // register levels (profile.hpp)
  // Block `index` (x fastest) in resident slot `slot`.
  const auto make_block = [&](uint64_t index, uint64_t slot) {
    auto b = std::make_unique<block_state>(k, lp);
    b->ctaid[0] = static_cast<uint32_t>(index % lp.grid.x);
    b->ctaid[1] = static_cast<uint32_t>(index / lp.grid.x % lp.grid.y);
    b->ctaid[2] = static_cast<uint32_t>(index / (uint64_t(lp.grid.x) * lp.grid.y));
    b->params = params.data();
    b->param_bytes = k.info.param_bytes;
    b->stack_bytes = stack_bytes;
    b->dynamic_shared = lp.dynamic_shared_bytes;
    b->shared.assign(k.static_shared_bytes + lp.dynamic_shared_bytes, 0xA5);  // uninitialised: a pattern
    b->thread_count = static_cast<uint32_t>(threads);
    b->warp_count = (b->thread_count + 31) / 32;
    b->served.assign(b->warp_count, 0);
    b->budget = &budget;
    b->grid_workspace = reinterpret_cast<uint64_t>(workspace.get());
    if (racecheck) {
      races[slot].begin_block(static_cast<uint32_t>(threads), b->shared.size());
      b->race = &races[slot];
    }
    // Registers start at zero. Only those some path reads before writing can show it: the others
    // keep what an earlier block in the slot left.
    const size_t first = slot * block_registers, first_ready = slot * threads * k.register_count;
    for (size_t w = 0; w < block_registers; w += size_t(32) * k.register_count)
      for (const int32_t r : k.read_before_written) std::fill_n(registers.begin() + first + w + size_t(r) * 32, 32, 0);
    if (profile) std::fill(ready.begin() + first_ready, ready.begin() + first_ready + threads * k.register_count, 0);
    b->threads.resize(threads);
    b->thread_pointers.assign(size_t(b->warp_count) * 32, nullptr);
    for (uint32_t i = 0; i < threads; ++i) {
      thread_state& t = b->threads[i];
      t.r = registers.data() + first + size_t(i / 32) * 32 * k.register_count + i % 32;
      t.stack = local.get() + (slot * threads + i) * stack_bytes;
      t.stack_top = static_cast<uint32_t>(k.local_bytes);
      if (profile) t.ready = ready.data() + first_ready + size_t(i) * k.register_count;
      t.linear = i;
      t.tid[0] = i % lp.block.x;
      t.tid[1] = i / lp.block.x % lp.block.y;
      t.tid[2] = i / (lp.block.x * lp.block.y);
      t.lane = i % 32;
      t.warp = i / 32;
      b->thread_pointers[i] = &t;
    }
    b->profile = profile.get();
    return b;
  };
  try {
    if (lp.cooperative) {
      std::vector<std::unique_ptr<block_state>> grid;
      for (uint64_t i = 0; i < blocks; ++i) grid.push_back(make_block(i, i));
      run_grid(grid);
      if (profile)
        for (auto& b : grid) profile_block_end(*b);
    } else {
      for (uint64_t i = 0; i < blocks; ++i) {
        const std::unique_ptr<block_state> b = make_block(i, 0);
        run_block(*b);
        if (profile) profile_block_end(*b);
      }
    }
  } catch (const launch_failure& f) {
    profile_launch_end(profile.get(), false);
    return f.error;
  }
  profile_launch_end(profile.get(), true);
  return cudaSuccess;
}

}  // namespace emu

