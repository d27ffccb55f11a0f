// Memory (PTX ISA 9.7.9, the memory instructions): device memory, every access's checks, and the
// instructions that access it.
//
// Device memory is host allocations recorded in an interval map, so that each emulated global
// access is checked against the live allocations, each with a bitmap of the bytes written since
// cudaMalloc (initcheck); the generic-address windows of shared, local and parameter memory are
// reserved (never accessible) so that no allocation can overlap them. access() checks each
// access (bounds, alignment, initcheck, programmatic dependent launch) and counts its traffic.
// The instructions: ld, ldu, st, atom, red, cp.async and its groups, prefetch, createpolicy.
// Memory ordering and scope qualifiers are implemented as the emulator's sequential model makes
// them: every access is visible at once.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_set>

#include "decode.hpp"
#include "semantics.hpp"

namespace emu {
namespace {

// begin -> the allocation. Never destroyed: a cudaFree from a static destructor may still ask.
std::map<uint64_t, allocation>& allocations() {
  static auto* live = new std::map<uint64_t, allocation>;
  return *live;
}

}  // namespace

const address_windows& windows() {
  static const address_windows w = [] {
    constexpr uint64_t shared_size = uint64_t(1) << 24, local_size = uint64_t(1) << 24, param_size = uint64_t(1) << 16;
    void* base = mmap(nullptr, shared_size + local_size + param_size, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      std::fprintf(stderr, "beam emulator: cannot reserve the generic-address windows\n");
      std::abort();
    }
    const uint64_t b = reinterpret_cast<uint64_t>(base);
    return address_windows{b, shared_size, b + shared_size, local_size, b + shared_size + local_size, param_size};
  }();
  return w;
}

void* device_allocate(size_t bytes) {
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded == 0 ? 256 : rounded);
  if (p == nullptr) return nullptr;
  const uint64_t begin = reinterpret_cast<uint64_t>(p);
  allocation& a = allocations()[begin];
  a.begin = begin;
  a.end = begin + bytes;
  a.written.assign((bytes + 63) / 64, 0);
  return p;
}

bool device_free(void* ptr) {
  const auto it = allocations().find(reinterpret_cast<uint64_t>(ptr));
  if (it == allocations().end()) return false;
  allocations().erase(it);
  std::free(ptr);
  return true;
}

allocation* find_allocation(uint64_t address, uint64_t bytes) {
  auto& live = allocations();
  auto it = live.upper_bound(address);
  if (it == live.begin()) return nullptr;
  --it;
  if (address + bytes > it->second.end || address + bytes < address) return nullptr;
  return &it->second;
}

namespace {

// Bit sets with one bit per byte, worked a word at a time.
uint64_t word_range(uint64_t from, uint64_t to) {  // the bits of [from, to) in from's word
  const uint64_t n = std::min<uint64_t>(64 - from % 64, to - from);
  return (n == 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1) << (from % 64);
}

void set_bits(std::vector<uint64_t>& bits, uint64_t from, uint64_t to) {
  for (; from < to; from = (from / 64 + 1) * 64) bits[from / 64] |= word_range(from, to);
}

//! The first bit of [from, to) that is `value`, or `to`.
uint64_t first_bit(const std::vector<uint64_t>& bits, uint64_t from, uint64_t to, bool value) {
  for (; from < to; from = (from / 64 + 1) * 64)
    if (const uint64_t hits = (value ? bits[from / 64] : ~bits[from / 64]) & word_range(from, to))
      return from / 64 * 64 + uint64_t(__builtin_ctzll(hits));
  return to;
}

}  // namespace

void allocation::mark_written(uint64_t address, uint64_t bytes) {
  set_bits(written, address - begin, address - begin + bytes);
}

void allocation::mark_kernel_written(uint64_t id, uint64_t address, uint64_t bytes) {
  std::vector<uint64_t>& bits = kernel_written[id % 2];
  if (kernel_writer[id % 2] != id) {  // this launch's first store here
    bits.assign((end - begin + 63) / 64, 0);
    kernel_writer[id % 2] = id;
  }
  set_bits(bits, address - begin, address - begin + bytes);
}

uint64_t allocation::first_kernel_written(uint64_t id, uint64_t address, uint64_t bytes) const {
  if (id == 0 || kernel_writer[id % 2] != id) return 0;
  const uint64_t i = first_bit(kernel_written[id % 2], address - begin, address - begin + bytes, true);
  return i < address - begin + bytes ? begin + i : 0;
}

uint64_t allocation::first_unwritten(uint64_t address, uint64_t bytes) const {
  const uint64_t i = first_bit(written, address - begin, address - begin + bytes, false);
  return i < address - begin + bytes ? begin + i : 0;
}

void mark_device_written(const void* ptr, size_t bytes) {
  if (allocation* a = find_allocation(reinterpret_cast<uint64_t>(ptr), bytes)) a->mark_written(reinterpret_cast<uint64_t>(ptr), bytes);
}

bool device_range_valid(const void* ptr, size_t bytes) {
  return find_allocation(reinterpret_cast<uint64_t>(ptr), bytes) != nullptr;
}

namespace {

//! initcheck, as BEAM_EMULATOR_INITCHECK says: `error` stops the launch at a load of bytes that
//! nothing wrote (cudaErrorLaunchFailure); `warn`, the default, reports the first such load of
//! each instruction on stderr and runs on, since a correct program may load unwritten bytes it
//! never uses (CUB's DeviceReduce::ArgMax loads a {int, double} pair with its 4 bytes of
//! padding); `0` turns it off. Anything else is refused by name.
enum class initcheck_mode { off, warn, error };

initcheck_mode initcheck_setting() {
  static const initcheck_mode mode = [] {
    const char* v = std::getenv("BEAM_EMULATOR_INITCHECK");
    if (v == nullptr || std::strcmp(v, "warn") == 0) return initcheck_mode::warn;
    if (std::strcmp(v, "error") == 0) return initcheck_mode::error;
    if (std::strcmp(v, "0") == 0) return initcheck_mode::off;
    std::fprintf(stderr, "beam emulator: BEAM_EMULATOR_INITCHECK=%s is not a mode (error, warn or 0)\n", v);
    std::exit(EXIT_FAILURE);
  }();
  return mode;
}

const char* space_name(space s) {
  switch (s) {
    case space::generic: return "generic";
    case space::global: return "global";
    case space::shared: return "shared";
    case space::local: return "local";
    case space::param: return "param";
    case space::constant: return "const";
  }
  return "?";
}

}  // namespace

uint8_t* access(block_state& b, thread_state& t, const instruction& in, space s, uint64_t address,
                uint32_t bytes, uint32_t align, bool write) {
  const char* what = write ? "store" : "load";
  b.stores += write;
  const auto misaligned = [&](const char* sp) {
    fail_launch(b, &t, &in, cudaErrorMisalignedAddress, "misaligned address",
                std::string(sp) + " " + what + " of " + std::to_string(bytes) + " bytes at " + hex(address) +
                    " (needs " + std::to_string(align) + "-byte alignment)");
  };
  if ((align & (align - 1)) == 0 ? address & (align - 1) : address % align) misaligned(space_name(s));  // no division for 2^n
  const address_windows& win = windows();
  if (s == space::generic) {
    if (address - win.shared_base < win.shared_size) {
      s = space::shared;
      address -= win.shared_base;
    } else if (address - win.local_base < win.local_size) {
      s = space::local;
      address -= win.local_base + t.frame;  // the window maps the whole stack; as a .local address
    } else if (address - win.param_base < win.param_size) {
      s = space::param;
      address -= win.param_base;
    } else {
      s = space::global;
    }
  }
  const auto out_of_bounds = [&](const std::string& why) {
    fail_launch(b, &t, &in, cudaErrorIllegalAddress, "illegal address",
                std::string(space_name(s)) + " " + what + " of " + std::to_string(bytes) + " bytes at " + hex(address) +
                    ": " + why);
  };
  switch (s) {
    case space::global:
    case space::constant: {
      allocation* a = b.cached;
      if (!a || address < a->begin || address + bytes > a->end || address + bytes < address) {
        a = find_allocation(address, bytes);
        if (!a) out_of_bounds("outside every live allocation");
        b.cached = a;
      }
      if (b.launch.predecessor != 0 && !t.dependencies_resolved) {
        if (const uint64_t early = a->first_kernel_written(b.launch.predecessor, address, bytes))
          fail_launch(b, &t, &in, cudaErrorLaunchFailure, "programmatic dependent launch",
                      std::string(space_name(s)) + " " + what + " of " + std::to_string(bytes) + " bytes at " +
                          hex(address) + " before this thread's griddepcontrol.wait: byte " + hex(early) +
                          " is written by the kernel launched before it on the stream (" +
                          demangled(b.launch.predecessor_kernel) + "), which may still be running");
      }
      if (write) {
        a->mark_written(address, bytes);
        a->mark_kernel_written(b.launch.id, address, bytes);
      } else if (const initcheck_mode initcheck = initcheck_setting(); initcheck != initcheck_mode::off) {
        if (const uint64_t unwritten = a->first_unwritten(address, bytes)) {
          const std::string detail = std::string(space_name(s)) + " load of " + std::to_string(bytes) + " bytes at " +
                                     hex(address) + " reads byte " + hex(unwritten) +
                                     ", which nothing has written since cudaMalloc (allocation " + hex(a->begin) +
                                     ", " + std::to_string(a->end - a->begin) + " bytes)";
          if (initcheck == initcheck_mode::error) fail_launch(b, &t, &in, cudaErrorLaunchFailure, "initcheck", detail);
          static std::unordered_set<const instruction*> warned;  // the first report of each instruction
          if (warned.insert(&in).second) {
            std::fprintf(stderr,
                         "beam emulator: initcheck warning: kernel %s block %s thread %s %s: %s (reported "
                         "once per instruction; the launch goes on: BEAM_EMULATOR_INITCHECK=error stops it)\n",
                         demangled(b.k.info.name).c_str(), dim_text(b.ctaid).c_str(), dim_text(t.tid).c_str(),
                         b.k.line_text(in.line).c_str(), detail.c_str());
          }
        }
      }
      if (b.profile) profile_access(b, t, in, s, a, address, bytes, write);
      return reinterpret_cast<uint8_t*>(address);
    }
    case space::shared:
      if (address + bytes > b.shared.size() || address + bytes < address)
        out_of_bounds("beyond the block's " + std::to_string(b.shared.size()) + " bytes of shared memory");
      if (b.profile) profile_access(b, t, in, s, nullptr, address, bytes, write);
      return b.shared.data() + address;
    case space::local: {
      const uint64_t at = t.frame + address;  // in the stack: the callers' frames and the current one
      if (at + bytes > t.stack_top || at + bytes < at)
        out_of_bounds("beyond the thread's " + std::to_string(t.stack_top) + " bytes of local memory");
      if (b.profile) profile_access(b, t, in, s, nullptr, at, bytes, write);
      return t.stack + at;
    }
    case space::param:
      if (write) out_of_bounds("kernel parameters are read-only");
      if (address + bytes > b.param_bytes || address + bytes < address)
        out_of_bounds("beyond the kernel's " + std::to_string(b.param_bytes) + " parameter bytes");
      return b.params + address;
    case space::generic: break;
  }
  return nullptr;
}

uint32_t complete_async_copies(block_state& b, thread_state& t, const instruction& in, size_t keep,
                               bool include_uncommitted) {
  size_t end = t.copies.size();
  uint32_t landed = 0;
  if (!include_uncommitted) {
    const size_t groups = t.group_ends.size();
    end = groups > keep ? t.group_ends[groups - keep - 1] : 0;
  }
  for (size_t i = 0; i < end; ++i) {
    const async_copy& c = t.copies[i];
    race_access(b, t, in, c.shared_offset, c.bytes, true, "this thread's cp.async copy (landing at its wait)");
    std::memcpy(b.shared.data() + c.shared_offset, c.data, c.bytes);
    landed = std::max(landed, c.ready);
  }
  t.copies.erase(t.copies.begin(), t.copies.begin() + static_cast<std::ptrdiff_t>(end));
  size_t kept = 0;
  for (size_t g : t.group_ends) {
    if (g > end) t.group_ends[kept++] = g - end;
  }
  t.group_ends.resize(kept);
  return landed;
}


// ---------------------------------------------------------------------------------------
// The memory instructions

namespace {

enum class atom_op : uint8_t { add, min, max, inc, dec, and_, or_, xor_, exch, cas };
constexpr const char* atom_ops[] = {"add", "min", "max", "inc", "dec", "and", "or", "xor", "exch", "cas"};
struct atom_payload {
  atom_op op;
  bool reduction;  //!< red: no destination
};

//! The payload of cp.async and its waits.
struct copy_payload {
  bool ignore_source;  //!< the fourth operand is the ignore-src predicate (else a src-size)
  bool cache_policy;   //!< .L2::cache_hint: a trailing cache-policy operand
  bool all;            //!< cp.async.wait_all
};

// ---------------------------------------------------------------------------------------
// Memory

void exec_ld(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t address = address_of(t, in.ops[1]);
  const uint32_t total = static_cast<uint32_t>(w * in.vec);
  const uint8_t* p = access(b, t, in, in.state, address, total, total, false);
  if (b.race && p >= b.shared.data() && p < b.shared.data() + b.shared.size())
    race_access(b, t, in, static_cast<uint32_t>(p - b.shared.data()), total, false, "this thread");
  const operand& d = in.ops[0];
  const bool sgn = type_signed(in.type);
  const auto load = [&](int i) {
    const uint64_t v = load_bytes(p + i * w, w);
    return sgn ? static_cast<uint64_t>(sign_extend(v, w)) : v;
  };
  if (d.k == operand::kind::vector) {
    for (uint32_t i = 0; i < d.count; ++i) set(t, b.k.vector_elements[d.first + i], load(static_cast<int>(i)));
  } else {
    set(t, d, load(0));
  }
}

//! The memory a lock-step group's ld or st reaches, when one check covers every lane: the lanes of
//! `mask` access `bytes` each at `at[l]`, all aligned to `bytes`, all in one space (shared, the
//! kernel parameters, or one global allocation) and in bounds; and for a global load every byte
//! of their span written (initcheck), and no lane before a pending griddepcontrol.wait. Then no
//! lane can fail, and lane l's bytes lie at at[l] + the returned offset. Otherwise (or profiling)
//! false: the caller runs the lanes one by one through `access`, whose checks then report the
//! first failing lane exactly as for a thread on its own.
bool group_memory(block_state& b, const thread_state* warp, uint32_t mask, const instruction& in,
                  const uint64_t (&at)[32], uint32_t bytes, bool write, space& s, intptr_t& offset) {
  uint64_t lo = UINT64_MAX, hi = 0, address_bits = 0;
  for (uint32_t m = mask; m; m &= m - 1) {
    const uint64_t a = at[__builtin_ctz(m)];
    lo = std::min(lo, a);
    hi = std::max(hi, a);
    address_bits |= a;
  }
  hi += bytes;
  if (b.profile || (bytes & (bytes - 1)) != 0 || (address_bits & (bytes - 1)) != 0 || hi < lo) return false;  // misaligned, or wraps
  const address_windows& win = windows();
  const auto inside = [&](uint64_t base, uint64_t size) { return lo - base < size && hi - base <= size; };
  const auto apart = [&](uint64_t base, uint64_t size) { return hi <= base || lo >= base + size; };
  s = in.state;
  intptr_t window = 0;  // generic to the space's own addresses
  if (s == space::generic) {
    if (inside(win.shared_base, win.shared_size)) s = space::shared, window = -intptr_t(win.shared_base);
    else if (inside(win.param_base, win.param_size)) s = space::param, window = -intptr_t(win.param_base);
    else if (apart(win.shared_base, win.shared_size) && apart(win.local_base, win.local_size) &&
             apart(win.param_base, win.param_size))
      s = space::global;
    else return false;  // local memory (per thread), or lanes in different spaces
  }
  switch (s) {
    case space::shared:
      if (hi + window > b.shared.size()) return false;
      offset = reinterpret_cast<intptr_t>(b.shared.data()) + window;
      return true;
    case space::param:
      if (write || hi + window > b.param_bytes) return false;
      offset = reinterpret_cast<intptr_t>(b.params) + window;
      return true;
    case space::global:
    case space::constant: {
      allocation* a = b.cached;
      if (!a || lo < a->begin || hi > a->end) {
        a = find_allocation(lo, hi - lo);
        if (!a) return false;
        b.cached = a;
      }
      if (b.launch.predecessor != 0)
        for (uint32_t m = mask; m; m &= m - 1)
          if (!warp[__builtin_ctz(m)].dependencies_resolved) return false;
      if (!write && initcheck_setting() != initcheck_mode::off && a->first_unwritten(lo, hi - lo)) return false;
      offset = 0;
      return true;
    }
    default: return false;
  }
}

//! at[l]: the address operand `a` (a register plus an offset) of each lane l of `mask`.
void lane_addresses(const thread_state* warp, uint32_t mask, const operand& a, uint64_t (&at)[32]) {
  const uint64_t* const base = a.reg >= 0 ? &reg(warp[0], a.reg) : nullptr;
  for (uint32_t m = mask; m; m &= m - 1) at[__builtin_ctz(m)] = (base ? base[__builtin_ctz(m)] : 0) + a.imm;
}

// ld of a lock-step group: d a register or a vector of registers (and sinks), the address a
// register plus an offset. Each lane loads as exec_ld; where group_memory finds one check for all,
// the lanes skip access.
void group_ld(block_state& b, thread_state* warp, uint32_t mask, const instruction& in) {
  const int w = width(in);
  const uint32_t total = static_cast<uint32_t>(w * in.vec);
  uint64_t at[32];
  lane_addresses(warp, mask, in.ops[1], at);
  space s;
  intptr_t offset;
  if (!group_memory(b, warp, mask, in, at, total, false, s, offset)) {
    for (uint32_t m = mask; m; m &= m - 1) exec_ld(b, warp[__builtin_ctz(m)], in);
    return;
  }
  const bool shared = s == space::shared, sgn = type_signed(in.type);
  const operand& d = in.ops[0];
  const operand* elements = d.k == operand::kind::vector ? &b.k.vector_elements[d.first] : &d;
  const uint32_t count = d.k == operand::kind::vector ? d.count : 1;
  for (uint32_t m = mask; m; m &= m - 1) {
    const uint32_t l = __builtin_ctz(m);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(intptr_t(at[l]) + offset);
    if (shared && b.race) race_access(b, warp[l], in, static_cast<uint32_t>(p - b.shared.data()), total, false, "this thread");
    for (uint32_t i = 0; i < count; ++i) {
      if (elements[i].k != operand::kind::reg) continue;  // a sink
      const uint64_t v = load_bytes(p + i * w, w);
      (&reg(warp[0], elements[i].reg))[l] = sgn ? static_cast<uint64_t>(sign_extend(v, w)) : v;
    }
  }
}

void exec_st(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t address = address_of(t, in.ops[0]);
  const uint32_t total = static_cast<uint32_t>(w * in.vec);
  uint8_t* p = access(b, t, in, in.state, address, total, total, true);
  if (b.race && p >= b.shared.data() && p < b.shared.data() + b.shared.size())
    race_access(b, t, in, static_cast<uint32_t>(p - b.shared.data()), total, true, "this thread");
  const operand& s = in.ops[1];
  if (s.k == operand::kind::vector) {
    for (uint32_t i = 0; i < s.count; ++i) {
      const uint64_t v = value(b, t, b.k.vector_elements[s.first + i]);
      store_bytes(p + i * w, v, w);
    }
  } else {
    const uint64_t v = value(b, t, s);
    store_bytes(p, v, w);
  }
}


// st of a lock-step group: the source a register, an immediate or a vector of them, the address a
// register plus an offset. Each lane stores as exec_st, in lane order; where group_memory finds
// one check for all, the lanes skip access.
void group_st(block_state& b, thread_state* warp, uint32_t mask, const instruction& in) {
  const int w = width(in);
  const uint32_t total = static_cast<uint32_t>(w * in.vec);
  uint64_t at[32];
  lane_addresses(warp, mask, in.ops[0], at);
  space s;
  intptr_t offset;
  if (!group_memory(b, warp, mask, in, at, total, true, s, offset)) {
    for (uint32_t m = mask; m; m &= m - 1) exec_st(b, warp[__builtin_ctz(m)], in);
    return;
  }
  const bool shared = s == space::shared;
  const operand& v = in.ops[1];
  const operand* elements = v.k == operand::kind::vector ? &b.k.vector_elements[v.first] : &v;
  const uint32_t count = v.k == operand::kind::vector ? v.count : 1;
  allocation* const a = shared ? nullptr : b.cached;
  for (uint32_t m = mask; m; m &= m - 1) {
    const uint32_t l = __builtin_ctz(m);
    uint8_t* p = reinterpret_cast<uint8_t*>(intptr_t(at[l]) + offset);
    ++b.stores;
    if (shared) {
      if (b.race) race_access(b, warp[l], in, static_cast<uint32_t>(p - b.shared.data()), total, true, "this thread");
    } else {
      a->mark_written(at[l], total);
      a->mark_kernel_written(b.launch.id, at[l], total);
    }
    for (uint32_t i = 0; i < count; ++i) store_bytes(p + i * w, lane_operand(warp, elements[i])[l], w);
  }
}

//! The new value of an atom/red on `old`; `in_shared`: the address lies in shared memory.
uint64_t atom_apply(const instruction& in, uint64_t old, uint64_t x, uint64_t y, bool in_shared) {
  const atom_op op = payload<atom_payload>(in).op;
  const ptype type = in.type;
  const int w = type_bytes(type);
  if (is_pair(type) || type_float(type)) {
    const ptype s = scalar_of(type);
    const auto one = [&](uint64_t o, uint64_t v, uint64_t) -> uint64_t {
      if (op == atom_op::add) {
        float_mode m;
        // ISA (atom): "atom.add.f32 on global memory flushes subnormal inputs and results to
        // sign-preserving zero; whereas atom.add.f32 on shared memory supports subnormal inputs
        // and results" (red likewise); the f16/bf16 forms take .noftz and never flush.
        m.ftz = s == ptype::f32 && !in_shared;
        return float_arith(float_op::add, m, s, o, v, 0);
      }
      if (op == atom_op::exch) return v;
      return float_minmax(op == atom_op::min, false, false, false, s, o, v);
    };
    if (op == atom_op::cas) return truncate(old, w) == truncate(x, w) ? y : old;
    return is_pair(type) ? packed(old, x, 0, one) : one(old, x, 0);
  }
  const bool sgn = type_signed(type);
  old = truncate(old, w);
  x = truncate(x, w);
  switch (op) {
    case atom_op::add: return truncate(old + x, w);
    case atom_op::min: return sgn ? (sign_extend(old, w) < sign_extend(x, w) ? old : x) : std::min(old, x);
    case atom_op::max: return sgn ? (sign_extend(old, w) > sign_extend(x, w) ? old : x) : std::max(old, x);
    case atom_op::inc: return old >= x ? 0 : old + 1;
    case atom_op::dec: return (old == 0 || old > x) ? x : old - 1;
    case atom_op::and_: return old & x;
    case atom_op::or_: return old | x;
    case atom_op::xor_: return old ^ x;
    case atom_op::exch: return x;
    default: return old == x ? truncate(y, w) : old;  // cas
  }
}

// atom[.sem][.scope][.space].op.type d, [a], b[, c]  /  red[...] [a], b
void exec_atom(block_state& b, thread_state& t, const instruction& in) {
  const atom_payload& op = payload<atom_payload>(in);
  const bool red = op.reduction;
  const int w = width(in);
  const operand& addr = in.ops[red ? 0 : 1];
  uint8_t* p = access(b, t, in, in.state, address_of(t, addr), w, w, true);
  const uint64_t old = load_bytes(p, w);
  const uint64_t x = value(b, t, in.ops[red ? 1 : 2]);
  const uint64_t y = op.op == atom_op::cas ? value(b, t, in.ops[3]) : 0;
  const bool in_shared = p >= b.shared.data() && p < b.shared.data() + b.shared.size();
  const uint64_t r = atom_apply(in, old, x, y, in_shared);
  store_bytes(p, r, w);
  if (!red) set(t, in.ops[0], type_signed(in.type) ? static_cast<uint64_t>(sign_extend(old, w)) & (w == 8 ? ~0ull : 0xFFFFFFFFull) : old);
}

// cp.async.{ca,cg}.shared.global [dst], [src], cp-size[, src-size | ignore-src]
void exec_cp_async(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t size = static_cast<uint32_t>(in.ops[2].imm);
  uint32_t src_size = size;
  const copy_payload& p = payload<copy_payload>(in);
  if (in.op_count > 3 + int(p.cache_policy)) {  // a trailing cache-policy operand (.L2::cache_hint)
    if (p.ignore_source) src_size = predicate(b, t, in.ops[3]) ? 0 : size;  // ignore-src
    else src_size = static_cast<uint32_t>(value(b, t, in.ops[3]));
  }
  if (src_size > size) {
    fail_launch(b, &t, &in, cudaErrorIllegalInstruction, "illegal instruction",
                "cp.async src-size " + std::to_string(src_size) + " exceeds cp-size " + std::to_string(size));
  }
  const uint64_t dst = address_of(t, in.ops[0]);
  access(b, t, in, space::shared, dst, size, size, true);  // checks the destination now
  async_copy c{static_cast<uint32_t>(dst), size, {}};
  if (src_size > 0) {
    const uint8_t* src = access(b, t, in, space::global, address_of(t, in.ops[1]), src_size, size, false);
    std::memcpy(c.data, src, src_size);
  }
  c.ready = t.result;  // profiling: a round trip after the issue when it reads
  t.copies.push_back(c);
}

void exec_cp_async_commit(block_state&, thread_state& t, const instruction&) { t.group_ends.push_back(t.copies.size()); }

void exec_cp_async_wait(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t landed = payload<copy_payload>(in).all ? complete_async_copies(b, t, in, 0, true)  // wait_all
                                      : complete_async_copies(b, t, in, static_cast<size_t>(in.ops[0].imm), false);
  latency_wait(b, t, in, landed);
}

// createpolicy: the emulator has no cache; the policy is an opaque 0.
void exec_createpolicy(block_state&, thread_state& t, const instruction& in) { set(t, in.ops[0], 0); }

// ---------------------------------------------------------------------------------------
// Decoders

//! Whether the vector or single operand `o` has elements of the kinds `ok` accepts.
template <class Ok>
bool plain_elements(const kernel& k, const operand& o, Ok ok) {
  if (o.k != operand::kind::vector) return ok(o);
  for (uint32_t i = 0; i < o.count; ++i)
    if (!ok(k.vector_elements[o.first + i])) return false;
  return true;
}

void decode_load(instruction& in, const kernel& k) {
  in.exec = exec_ld;
  const auto register_or_sink = [](const operand& o) { return o.k == operand::kind::reg || o.k == operand::kind::sink; };
  if (in.ops[1].k == operand::kind::address && in.pair < 0 && plain_elements(k, in.ops[0], register_or_sink))
    in.group_exec = group_ld;
}

void decode_store(instruction& in, const kernel& k) {
  in.exec = exec_st;
  const auto plain = [](const operand& o) { return (o.k == operand::kind::reg || o.k == operand::kind::imm) && !o.negate; };
  if (in.ops[0].k == operand::kind::address && plain_elements(k, in.ops[1], plain)) in.group_exec = group_st;
}

void decode_atom(instruction& in, const kernel&) {
  atom_payload& p = set_payload<atom_payload>(in);
  bool found = false;
  for (uint8_t i = 0; i < std::size(atom_ops); ++i)
    if (has(in, atom_ops[i])) p.op = static_cast<atom_op>(i), found = true;
  if (!found) unsupported(in, "no operation");
  p.reduction = in.opcode == "red";
  if (p.reduction && p.op == atom_op::cas) unsupported(in, "red.cas");
  need_operands(in, p.reduction ? 2 : p.op == atom_op::cas ? 4 : 3);
  in.exec = exec_atom;
}

void decode_cp_async(instruction& in, const kernel& k) {
  if (in.ops[2].k != operand::kind::imm || (in.ops[2].imm != 4 && in.ops[2].imm != 8 && in.ops[2].imm != 16) ||
      (has(in, "cg") && in.ops[2].imm != 16))
    unsupported(in, "cp-size must be 4, 8 or 16 (16 for .cg)");
  copy_payload& p = set_payload<copy_payload>(in);
  p.cache_policy = has(in, "L2::cache_hint");
  p.ignore_source = in.op_count > 3 + int(p.cache_policy) && in.ops[3].k == operand::kind::reg &&
                    k.register_types[static_cast<size_t>(in.ops[3].reg)] == ptype::pred;
  in.exec = exec_cp_async;
}

void decode_cp_async_commit(instruction& in, const kernel&) { in.exec = exec_cp_async_commit; }

void decode_cp_async_wait(instruction& in, const kernel&) {
  set_payload<copy_payload>(in).all = has(in, "wait_all");
  if (!has(in, "wait_all") && in.ops[0].k != operand::kind::imm) unsupported(in, "the group count must be an immediate");
  in.exec = exec_cp_async_wait;
}

void decode_createpolicy(instruction& in, const kernel&) { in.exec = exec_createpolicy; }

}  // namespace

std::vector<opcode_row> memory_rows() {
  using namespace qualifiers;
  using profile::instruction_class;
  const qualifier_list types = [] {
    qualifier_list all = integer_types;
    for (const qualifier_list* l : {&byte_types, &bit_types, &float_types, &half_types}) all.insert(all.end(), l->begin(), l->end());
    return all;
  }();
  const qualifier_list shared = {"shared", "shared::cta", "shared::cluster"};
  const qualifier_list atom_spaces = {"global", "shared", "shared::cta", "shared::cluster"};
  const qualifier_list copy_hints = {"L2::cache_hint", "L2::64B", "L2::128B", "L2::256B"};
  return {
      {"ld", any_of({types, state_spaces, memory_order, cache_hints, {"ca", "cg", "cs", "lu", "cv", "nc", "v2", "v4"}}), 2,
       3, decode_load, instruction_class::memory, memory_kind::load},
      {"ldu", any_of({types, {"global", "v2", "v4"}}), 2, 2, decode_load, instruction_class::memory, memory_kind::load},
      {"st", any_of({types, state_spaces, memory_order, cache_hints, {"wb", "cg", "cs", "wt", "v2", "v4"}}), 2, 3,
       decode_store, instruction_class::memory, memory_kind::store},
      {"atom",
       any_of({types, atom_spaces, memory_order, cache_hints, {std::begin(atom_ops), std::end(atom_ops)}, {"noftz"}}),
       3, 5, decode_atom, instruction_class::memory, memory_kind::atomic},
      {"red",
       any_of({types, atom_spaces, memory_order, cache_hints, {std::begin(atom_ops), std::end(atom_ops) - 2}, {"noftz"}}),
       2, 3, decode_atom, instruction_class::memory, memory_kind::atomic},
      {"cp.async", any_of({{"ca", "cg", "global", "shared", "shared::cta"}, copy_hints}), 3, 5, decode_cp_async,
       instruction_class::memory, memory_kind::async_copy},
      {"cp.async.commit_group", {}, 0, 0, decode_cp_async_commit, instruction_class::synchronisation},
      {"cp.async.wait_group", {}, 1, 1, decode_cp_async_wait, instruction_class::synchronisation},
      {"cp.async.wait_all", {}, 0, 0, decode_cp_async_wait, instruction_class::synchronisation},
      {"prefetch", any_of({{"global", "local", "L1", "L2", "L2::evict_last", "L2::evict_normal", "tensormap", "const",
                            "param"}}),
       1, 1, decode_nop, instruction_class::memory},
      {"prefetchu", any_of({{"L1"}}), 1, 1, decode_nop, instruction_class::memory},
      {"createpolicy", any_of({{"fractional", "range", "global", "cvt", "L2", "L2::evict_last", "L2::evict_normal",
                                "L2::evict_first", "L2::evict_unchanged", "b64"}}),
       2, 5, decode_createpolicy},
  };
}

}  // namespace emu
