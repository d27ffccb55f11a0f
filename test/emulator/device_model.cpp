// The device models the emulator offers, and the choice among them (BEAM_EMULATOR_DEVICE).
// Each reports what the GPU it is named after reports through cudaGetDeviceProperties.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine.hpp"

namespace emu {
namespace {

//! An A100-SXM4 (40 GB): compute capability 8.0, compute_80 PTX.
device_model sm_80_model() {
  device_model m;
  m.name = "beam emulated sm_80";
  m.major = 8;
  m.minor = 0;
  m.ptx_arch = 80;
  m.arch_specific = false;
  m.sm_count = 108;
  m.shared_per_block = 48 * 1024;
  m.shared_per_block_optin = 166912;  // 163 KiB
  m.shared_per_sm = 167936;           // 164 KiB
  m.reserved_shared_per_block = 1024;
  m.l2_bytes = 40 * 1024 * 1024;
  m.global_bytes = size_t(40) << 30;
  m.clock_khz = 1410000;
  m.memory_clock_khz = 1215000;
  m.memory_bus_bits = 5120;
  return m;
}

//! An H100-SXM5 (80 GB): compute capability 9.0, compute_90a PTX (wgmma, TMA, setmaxnreg).
device_model sm_90a_model() {
  device_model m;
  m.name = "beam emulated sm_90a";
  m.major = 9;
  m.minor = 0;
  m.ptx_arch = 90;
  m.arch_specific = true;
  m.sm_count = 132;
  m.shared_per_block = 48 * 1024;
  m.shared_per_block_optin = 232448;  // 227 KiB
  m.shared_per_sm = 233472;           // 228 KiB
  m.reserved_shared_per_block = 1024;
  m.l2_bytes = 50 * 1024 * 1024;
  m.global_bytes = size_t(80) << 30;
  m.clock_khz = 1980000;
  m.memory_clock_khz = 2619000;
  m.memory_bus_bits = 5120;
  return m;
}

}  // namespace

const device_model& active_device_model() {
  static const device_model model = [] {
    const char* name = std::getenv("BEAM_EMULATOR_DEVICE");
    if (name == nullptr || *name == '\0' || std::strcmp(name, "sm_80") == 0) return sm_80_model();
    if (std::strcmp(name, "sm_90a") == 0) return sm_90a_model();
    std::fprintf(stderr, "beam emulator: unknown device model BEAM_EMULATOR_DEVICE=%s (known: sm_80, sm_90a)\n", name);
    std::abort();
  }();
  return model;
}

}  // namespace emu
