// Execution state of one block and its threads, operand access, checked memory access and
// the diagnostics that end a launch.
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "ptx.hpp"

namespace emu {

//! Thrown by a failing check; launch() prints nothing more and returns `error`.
struct launch_failure {
  cudaError_t error;
};

//! One pending cp.async copy: at most 16 bytes, read at issue, written to shared memory when
//! its group completes.
struct async_copy {
  uint32_t shared_offset;
  uint32_t bytes;
  uint8_t data[16];
};

struct thread_state {
  enum class run : uint8_t { ready, waiting, exited };
  uint64_t* r = nullptr;        //!< register slots
  uint8_t* local = nullptr;     //!< .local memory
  uint32_t pc = 0;
  run state = run::ready;
  uint32_t tid[3] = {0, 0, 0};
  uint32_t linear = 0, lane = 0, warp = 0;
  uint32_t wait_mask = 0;       //!< member mask of the collective it waits at
  uint32_t barrier = 0;         //!< barrier id it waits at
  uint32_t barrier_count = 0;   //!< thread count expected at that barrier (0: whole block)
  uint32_t reduction = 0;       //!< bar.red operand
  uint32_t carry = 0;           //!< CC.CF of the extended-precision arithmetic (add.cc, addc, ...)
  std::vector<async_copy> copies;       //!< issued cp.async copies, oldest first
  std::vector<size_t> group_ends;       //!< committed groups: end index into `copies`
};

//! Generic-address windows for shared and local memory (reserved, never mapped, so that no
//! allocation can overlap them). Generic address = base + offset in that space.
struct address_windows {
  uint64_t shared_base, shared_size, local_base, local_size;
};
const address_windows& windows();

//! The allocation that contains [address, address + bytes), or false.
bool find_allocation(uint64_t address, uint64_t bytes, uint64_t* begin, uint64_t* end);

struct block_state {
  const kernel& k;
  const launch_params& launch;
  uint32_t ctaid[3] = {0, 0, 0};
  uint8_t* params = nullptr;    //!< the launch's parameter buffer
  size_t param_bytes = 0;
  std::vector<uint8_t> shared;  //!< static + dynamic shared memory
  size_t dynamic_shared = 0;
  std::vector<thread_state> threads;
  uint32_t thread_count = 0, warp_count = 0;
  uint64_t cached_begin = 1, cached_end = 0;  //!< last global allocation hit
  uint64_t* budget = nullptr;   //!< instructions left before the watchdog fires
  uint32_t arrivals[16] = {};   //!< bar.arrive arrivals counted towards each barrier's next release

  block_state(const kernel& kern, const launch_params& lp) : k(kern), launch(lp) {}
};

//! Prints `beam emulator: <check>: kernel K block (x,y,z) thread (x,y,z) line N: <detail>` on
//! stderr and ends the launch with `error`.
[[noreturn]] void fail_launch(const block_state& b, const thread_state* t, const instruction* in,
                              cudaError_t error, const char* check, const std::string& detail);

uint64_t special_value(const block_state& b, const thread_state& t, special s);

inline uint64_t value(const block_state& b, const thread_state& t, const operand& o) {
  switch (o.k) {
    case operand::kind::reg: return t.r[o.reg];
    case operand::kind::imm: return o.imm;
    case operand::kind::special: return special_value(b, t, o.sreg);
    default: return 0;
  }
}
inline bool predicate(const block_state& b, const thread_state& t, const operand& o) {
  return (value(b, t, o) != 0) != o.negate;
}
inline void set(thread_state& t, const operand& o, uint64_t v) {
  if (o.k == operand::kind::reg) t.r[o.reg] = v;
}

inline uint64_t truncate(uint64_t v, int bytes) {
  return bytes >= 8 ? v : v & ((uint64_t(1) << (8 * bytes)) - 1);
}
inline int64_t sign_extend(uint64_t v, int bytes) {
  if (bytes >= 8) return static_cast<int64_t>(v);
  const int shift = 64 - 8 * bytes;
  return static_cast<int64_t>(v << shift) >> shift;
}

inline float as_f32(uint64_t v) {
  const uint32_t u = static_cast<uint32_t>(v);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline double as_f64(uint64_t v) {
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}
inline uint64_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline uint64_t bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
}

//! Host pointer for an access of `bytes` at `address` in `s`, after the bounds and alignment
//! checks (alignment: `align` bytes). Reports and ends the launch when a check fails.
uint8_t* access(block_state& b, thread_state& t, const instruction& in, space s, uint64_t address,
                uint32_t bytes, uint32_t align, bool write);

//! The address an operand of kind::address denotes (base register + offset).
inline uint64_t address_of(const thread_state& t, const operand& o) {
  return (o.reg >= 0 ? t.r[o.reg] : 0) + o.imm;
}

//! Completes the thread's cp.async groups except the newest `keep` committed ones (and, when
//! `keep` is 0, every copy not yet committed too, as cp.async.wait_all).
void complete_async_copies(block_state& b, thread_state& t, size_t keep, bool include_uncommitted);

}  // namespace emu
