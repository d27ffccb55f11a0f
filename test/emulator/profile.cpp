// Traffic counters per launch (profile.hpp): the instruction classes, warp-level requests
// gathered per instruction and warp, and per-allocation sector maps for the distinct sectors.
#include "profile.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <type_traits>

#include "decode.hpp"
#include "machine.hpp"

namespace emu {
namespace {

//! The process-wide state: the file of BEAM_EMULATOR_PROFILE, the session.
struct profiler {
  std::FILE* file = nullptr;
  bool session = false;
  uint64_t session_epoch = 0, launch_epoch = 0, memsets = 0;
  std::vector<profile::launch_record> records;

  profiler() {
    if (const char* path = std::getenv("BEAM_EMULATOR_PROFILE"); path && *path) {
      file = std::fopen(path, "a");
      if (!file) {
        std::fprintf(stderr, "beam emulator: cannot open BEAM_EMULATOR_PROFILE=%s\n", path);
        std::exit(1);
      }
    }
  }
};
profiler& state() {
  static profiler p;
  return p;
}

//! Request kinds: a memory kind in a resolved space.
enum request_kind : uint32_t {
  k_global_load, k_global_store, k_global_atomic, k_async_copy, k_bulk_tensor,
  k_shared_load, k_shared_store, k_shared_atomic, k_local, k_kinds
};

int request_kind_of(memory_kind m, space s) {
  switch (s) {
    case space::global:
    case space::constant:
      switch (m) {
        case memory_kind::load: return k_global_load;
        case memory_kind::store: return k_global_store;
        case memory_kind::atomic: return k_global_atomic;
        case memory_kind::async_copy: return k_async_copy;
        case memory_kind::bulk_tensor: return k_bulk_tensor;
        case memory_kind::none: return -1;
      }
      return -1;
    case space::shared:
      switch (m) {
        case memory_kind::load: return k_shared_load;
        case memory_kind::store:
        case memory_kind::async_copy: return k_shared_store;
        case memory_kind::atomic: return k_shared_atomic;
        default: return -1;  // a TMA box lands through the async proxy: no shared request
      }
    case space::local: return m == memory_kind::none ? -1 : int(k_local);
    default: return -1;  // kernel parameters
  }
}

void set_bits(std::vector<uint64_t>& map, uint64_t first, uint64_t last) {  // bits [first, last]
  for (uint64_t i = first; i <= last; ++i) map[i / 64] |= uint64_t(1) << (i % 64);
}

//! Sets the bits [first, last] of `map` that are clear in `unless`.
void set_bits_unless(std::vector<uint64_t>& map, const std::vector<uint64_t>& unless, uint64_t first, uint64_t last) {
  for (uint64_t i = first; i <= last; ++i) map[i / 64] |= ~unless[i / 64] & uint64_t(1) << (i % 64);
}

//! The set bits among [first, last] (whole words at a time).
uint64_t count_bits(const std::vector<uint64_t>& map, uint64_t first, uint64_t last) {
  uint64_t n = 0;
  for (uint64_t word = first / 64; word <= last / 64 && word < map.size(); ++word) {
    uint64_t bits = map[word];
    if (word == first / 64) bits &= ~uint64_t(0) << (first % 64);
    if (word == last / 64 && last % 64 != 63) bits &= (uint64_t(1) << (last % 64 + 1)) - 1;
    n += static_cast<uint64_t>(__builtin_popcountll(bits));
  }
  return n;
}

uint64_t popcount(const std::vector<uint64_t>& map) {
  uint64_t n = 0;
  for (uint64_t w : map) n += static_cast<uint64_t>(__builtin_popcountll(w));
  return n;
}

const char* const request_kind_names[k_kinds] = {"global_load", "global_store", "global_atomic", "async_copy",
                                                 "bulk_tensor", "shared_load", "shared_store", "shared_atomic",
                                                 "local"};

void fold_global(profile::global_requests& c, std::vector<lane_access>& accesses) {
  std::sort(accesses.begin(), accesses.end(),
            [](const lane_access& x, const lane_access& y) { return x.address < y.address; });
  uint64_t covered = 0, bytes = 0, sectors = 0, last_sector = UINT64_MAX;
  for (const lane_access& a : accesses) {  // the union of the byte ranges, and its sectors
    const uint64_t end = a.address + a.bytes;
    const uint64_t from = std::max(a.address, covered);
    if (end > from) bytes += end - from;
    covered = std::max(covered, end);
    for (uint64_t s = a.address / 32; s <= (end - 1) / 32; ++s) {
      if (last_sector != UINT64_MAX && s <= last_sector) continue;
      ++sectors;
      last_sector = s;
    }
  }
  ++c.requests;
  c.sectors += sectors;
  c.bytes += bytes;
}

//! Same-address atomics do not share a wavefront: one lane's word at a time per bank.
void fold_shared_atomic(profile::shared_requests& c, const std::vector<lane_access>& accesses) {
  uint32_t per_bank[32] = {}, most = 0;
  for (const lane_access& a : accesses) most = std::max(most, ++per_bank[a.address / 4 % 32]);
  ++c.requests;
  c.wavefronts += most;
  c.ideal_wavefronts += (accesses.size() + 31) / 32;
}

void fold_shared(profile::shared_requests& c, const std::vector<lane_access>& accesses) {
  uint32_t width = 1;
  for (const lane_access& a : accesses) width = std::max(width, a.bytes);
  const uint32_t phase_lanes = width <= 4 ? 32 : 128 / width;
  uint64_t wavefronts = 0, ideal = 0;
  for (uint32_t phase = 0; phase < 32 / phase_lanes; ++phase) {
    std::vector<uint64_t> words;  // distinct words of the phase
    for (const lane_access& a : accesses) {
      if (a.lane / phase_lanes != phase) continue;
      for (uint64_t w = a.address / 4; w <= (a.address + a.bytes - 1) / 4; ++w) words.push_back(w);
    }
    if (words.empty()) continue;
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    uint32_t per_bank[32] = {};
    uint32_t most = 0;
    for (uint64_t w : words) most = std::max(most, ++per_bank[w % 32]);
    wavefronts += most;
    ideal += (words.size() + 31) / 32;
  }
  ++c.requests;
  c.wavefronts += wavefronts;
  c.ideal_wavefronts += ideal;
}

void append_requests(std::ostringstream& o, const char* name, const profile::global_requests& c) {
  o << ",\"" << name << "\":{\"requests\":" << c.requests << ",\"sectors\":" << c.sectors << ",\"bytes\":" << c.bytes
    << "}";
}
void append_requests(std::ostringstream& o, const char* name, const profile::shared_requests& c) {
  o << ",\"" << name << "\":{\"requests\":" << c.requests << ",\"wavefronts\":" << c.wavefronts
    << ",\"ideal_wavefronts\":" << c.ideal_wavefronts << "}";
}

//! The level at which the registers `o` names are all ready.
uint32_t operand_level(const block_state& b, const thread_state& t, const operand& o) {
  switch (o.k) {
    case operand::kind::reg: return t.ready[o.reg];
    case operand::kind::address: return o.reg >= 0 ? t.ready[o.reg] : 0;
    case operand::kind::vector: {
      uint32_t level = 0;
      for (uint32_t i = 0; i < o.count; ++i) level = std::max(level, operand_level(b, t, b.k.vector_elements[o.first + i]));
      return level;
    }
    default: return 0;
  }
}

//! Sets the level of every register `o` names.
void set_level(const block_state& b, thread_state& t, const operand& o, uint32_t level) {
  if (o.k == operand::kind::reg) t.ready[o.reg] = level;
  if (o.k == operand::kind::vector)
    for (uint32_t i = 0; i < o.count; ++i) set_level(b, t, b.k.vector_elements[o.first + i], level);
}

void note_level(block_state& b, const instruction& in, uint32_t level) {
  profile::launch_record& r = b.profile->record;
  if (level > r.round_trips) {
    r.round_trips = level;
    r.round_trip_line = in.line;
  }
}

}  // namespace

void latency_issue(block_state& b, thread_state& t, const instruction& in, bool executes) {
  uint32_t level = std::max(t.front, in.guard >= 0 ? t.ready[in.guard] : 0u);
  if (executes) {
    // Every register named, destinations too: a register still waiting for a load is not
    // overwritten before it lands (the scoreboard's write-after-write rule).
    for (int i = 0; i < in.op_count; ++i) level = std::max(level, operand_level(b, t, in.ops[i]));
    if (in.pair >= 0) level = std::max(level, t.ready[in.pair]);
  }
  t.result = level;
  // mov is a rename, a packing or an unpacking that ptxas folds into the instructions that use
  // its result: it passes its operands' level on and waits for nothing itself.
  t.issue = in.folds ? std::max(t.front, in.guard >= 0 ? t.ready[in.guard] : 0u) : level;
  t.block_issue = std::max(t.block_issue, t.issue);
  note_level(b, in, t.issue);
}

void latency_retire(block_state& b, thread_state& t, const instruction& in) {
  if (in.has_destination) {
    set_level(b, t, in.ops[0], t.result);
    if (in.pair >= 0) t.ready[in.pair] = t.result;
  }
  // Nothing after a branch issues before the branch, which issues after everything before it.
  if (in.klass == uint8_t(profile::instruction_class::control)) latency_wait(b, t, in, 0);
}

void latency_wait(block_state& b, thread_state& t, const instruction& in, uint32_t level) {
  t.front = t.block_issue = std::max({t.front, t.block_issue, level});
  if (b.profile) note_level(b, in, t.front);
}

void latency_join(block_state& b, thread_state* const* threads, size_t count, bool wait) {
  uint32_t level = 0;
  for (size_t i = 0; i < count; ++i)
    if (const thread_state* t = threads[i]) level = std::max({level, t->issue, wait ? t->block_issue : 0u});
  for (size_t i = 0; i < count; ++i) {
    thread_state* t = threads[i];
    if (!t) continue;
    t->issue = t->result = level;
    t->block_issue = std::max(t->block_issue, level);
    if (wait) latency_wait(b, *t, b.k.code[t->pc], level);
  }
}

void profile_memset() {
  if (state().session) ++state().memsets;
}

profile_launch* profile_launch_begin(const kernel& k, const launch_params& lp) {
  profiler& p = state();
  if (!p.session && !p.file) return nullptr;
  auto* launch = new profile_launch;
  launch->epoch = ++p.launch_epoch;
  profile::launch_record& r = launch->record;
  r.kernel = k.info.name;
  const unsigned g[3] = {lp.grid.x, lp.grid.y, lp.grid.z}, b[3] = {lp.block.x, lp.block.y, lp.block.z};
  std::copy(g, g + 3, r.grid);
  std::copy(b, b + 3, r.block);
  r.dynamic_shared_bytes = lp.dynamic_shared_bytes;
  r.programmatic = lp.predecessor != 0;
  return launch;
}

void profile_access(block_state& b, thread_state& t, const instruction& in, space s, allocation* a,
                    uint64_t address, uint32_t bytes, bool write) {
  const memory_kind m = static_cast<memory_kind>(in.memory_kind);
  // A global read is a round trip: its data is ready one level after the issue.
  if ((s == space::global || s == space::constant) && m != memory_kind::store && (!write || m == memory_kind::atomic))
    t.result = t.issue + 1;
  const int kind = request_kind_of(m, s);
  if (kind < 0 || bytes == 0) return;
  profile_launch& p = *b.profile;
  const uint64_t pc = static_cast<uint64_t>(&in - b.k.code.data());
  profile_site& site = b.profile_sites[(pc * b.warp_count + t.warp) * k_kinds + uint64_t(kind)];
  if (site.last_serial[t.lane] != t.serial) {  // this lane's next execution: its next request
    site.last_serial[t.lane] = t.serial;
    if (++site.executions[t.lane] > site.requests.size()) site.requests.emplace_back();
  }
  site.requests[site.executions[t.lane] - 1].push_back({address, bytes, t.lane});
  if (!a) return;
  if (a->launch_epoch != p.epoch) {  // first touch in this launch
    const size_t words = ((a->end - a->begin + 31) / 32 + 63) / 64;
    a->launch_read.assign(words, 0);
    a->launch_written.assign(words, 0);
    a->launch_epoch = p.epoch;
    p.touched.push_back(a);
  }
  // DRAM reads: the sectors read before the launch wrote them (L2 keeps what it wrote).
  const uint64_t first = (address - a->begin) / 32, last = (address + bytes - 1 - a->begin) / 32;
  if (!write || m == memory_kind::atomic) set_bits_unless(a->launch_read, a->launch_written, first, last);
  if (write) set_bits(a->launch_written, first, last);
}

void profile_block_end(block_state& b) {
  profile_launch& p = *b.profile;
  profile::launch_record& r = p.record;
  for (auto& [key, site] : b.profile_sites) {
    const uint64_t kind = key % k_kinds, pc = key / k_kinds / b.warp_count;
    profile::global_requests global;
    profile::shared_requests shared;
    uint64_t local = 0;
    for (std::vector<lane_access>& request : site.requests) {
      if (kind == k_local) ++local;
      else if (kind == k_shared_atomic) fold_shared_atomic(shared, request);
      else if (kind >= k_shared_load) fold_shared(shared, request);
      else fold_global(global, request);
    }
    const auto add = [](auto& into, const auto& from) {
      into.requests += from.requests;
      if constexpr (std::is_same_v<std::decay_t<decltype(from)>, profile::global_requests>) {
        into.sectors += from.sectors;
        into.bytes += from.bytes;
      } else {
        into.wavefronts += from.wavefronts;
        into.ideal_wavefronts += from.ideal_wavefronts;
      }
    };
    switch (kind) {
      case k_global_load: add(r.global_load, global); break;
      case k_global_store: add(r.global_store, global); break;
      case k_global_atomic: add(r.global_atomic, global); break;
      case k_async_copy: add(r.async_copy, global); break;
      case k_bulk_tensor: add(r.bulk_tensor, global); break;
      case k_shared_load: add(r.shared_load, shared); break;
      case k_shared_store: add(r.shared_store, shared); break;
      case k_shared_atomic: add(r.shared_atomic, shared); break;
      default: r.local_requests += local; break;
    }
    profile::line_requests& line = p.lines[pc * k_kinds + kind];
    line.line = b.k.code[pc].line;
    line.kind = request_kind_names[kind];
    line.requests += global.requests + shared.requests + local;
    line.sectors += global.sectors;
    line.bytes += global.bytes;
    line.wavefronts += shared.wavefronts;
    line.ideal_wavefronts += shared.ideal_wavefronts;
  }
  b.profile_sites.clear();
}

void profile_launch_end(profile_launch* launch, bool succeeded) {
  if (!launch) return;
  profiler& p = state();
  profile::launch_record& r = launch->record;
  for (const auto& [key, line] : launch->lines) r.lines.push_back(line);  // ordered by pc, then kind
  for (allocation* a : launch->touched) {
    r.distinct_read_sectors += popcount(a->launch_read);
    r.distinct_written_sectors += popcount(a->launch_written);
    if (!p.session || !succeeded) continue;
    if (a->session_epoch != p.session_epoch) {
      a->session_read.assign(a->launch_read.size(), 0);
      a->session_written.assign(a->launch_written.size(), 0);
      a->session_epoch = p.session_epoch;
    }
    for (size_t i = 0; i < a->launch_read.size(); ++i) {
      a->session_read[i] |= a->launch_read[i];
      a->session_written[i] |= a->launch_written[i];
    }
  }
  if (succeeded) {
    if (p.file) {
      std::fprintf(p.file, "%s\n", profile::json(r).c_str());
      std::fflush(p.file);
    }
    if (p.session) p.records.push_back(std::move(r));
  }
}

namespace profile {

const char* class_name(instruction_class c) {
  static const char* names[] = {"integer", "floating", "conversion", "movement", "memory",
                                "tensor",  "warp",     "synchronisation", "control"};
  return c < instruction_class::count ? names[size_t(c)] : "?";
}

void start() {
  profiler& p = state();
  p.session = true;
  ++p.session_epoch;
  p.records.clear();
  p.memsets = 0;
}

uint64_t memsets() { return state().memsets; }

std::vector<launch_record> stop() {
  profiler& p = state();
  p.session = false;
  return std::move(p.records);
}

namespace {
uint64_t session_sectors(const void* ptr, size_t bytes, bool written) {
  if (bytes == 0) return 0;
  const uint64_t address = reinterpret_cast<uint64_t>(ptr);
  const allocation* a = find_allocation(address, bytes);
  if (!a || a->session_epoch != state().session_epoch) return 0;
  return count_bits(written ? a->session_written : a->session_read, (address - a->begin) / 32,
                    (address + bytes - 1 - a->begin) / 32);
}
}  // namespace

uint64_t sectors_read(const void* ptr, size_t bytes) { return session_sectors(ptr, bytes, false); }
uint64_t sectors_written(const void* ptr, size_t bytes) { return session_sectors(ptr, bytes, true); }

std::string json(const launch_record& r) {
  std::ostringstream o;
  o << "{\"kernel\":\"" << r.kernel << "\",\"grid\":[" << r.grid[0] << "," << r.grid[1] << "," << r.grid[2]
    << "],\"block\":[" << r.block[0] << "," << r.block[1] << "," << r.block[2]
    << "],\"dynamic_shared_bytes\":" << r.dynamic_shared_bytes << ",\"thread_instructions\":{";
  for (size_t c = 0; c < size_t(instruction_class::count); ++c)
    o << (c ? "," : "") << "\"" << class_name(instruction_class(c)) << "\":" << r.thread_instructions[c];
  o << "}";
  append_requests(o, "global_load", r.global_load);
  append_requests(o, "global_store", r.global_store);
  append_requests(o, "global_atomic", r.global_atomic);
  append_requests(o, "async_copy", r.async_copy);
  append_requests(o, "bulk_tensor", r.bulk_tensor);
  o << ",\"distinct_read_sectors\":" << r.distinct_read_sectors
    << ",\"distinct_written_sectors\":" << r.distinct_written_sectors;
  append_requests(o, "shared_load", r.shared_load);
  append_requests(o, "shared_store", r.shared_store);
  append_requests(o, "shared_atomic", r.shared_atomic);
  o << ",\"local_requests\":" << r.local_requests << ",\"tensor_macs\":" << r.tensor_macs
    << ",\"barrier_arrivals\":" << r.barrier_arrivals << ",\"barrier_releases\":" << r.barrier_releases
    << ",\"mbarrier_waits\":" << r.mbarrier_waits << ",\"mbarrier_suspensions\":" << r.mbarrier_suspensions
    << ",\"programmatic\":" << (r.programmatic ? "true" : "false") << ",\"warps\":" << r.warps()
    << ",\"round_trips\":" << r.round_trips
    << ",\"round_trip_line\":" << r.round_trip_line << ",\"lines\":[";
  for (size_t i = 0; i < r.lines.size(); ++i) {
    const line_requests& l = r.lines[i];
    o << (i ? "," : "") << "{\"line\":" << l.line << ",\"kind\":\"" << l.kind << "\",\"requests\":" << l.requests;
    if (!std::strncmp(l.kind, "shared", 6))
      o << ",\"wavefronts\":" << l.wavefronts << ",\"ideal_wavefronts\":" << l.ideal_wavefronts;
    else o << ",\"sectors\":" << l.sectors << ",\"bytes\":" << l.bytes;
    o << "}";
  }
  o << "]}";
  return o.str();
}

}  // namespace profile
}  // namespace emu
