// Launches: every block in turn (a cooperative launch's blocks resident together and interleaved),
// every thread of a block with independent thread scheduling.
// A thread runs until it reaches a warp collective or a block barrier; a collective executes
// once all lanes of its member mask wait at it, a barrier releases once its thread count has
// arrived. No thread able to run while some have not exited is a deadlock, diagnosed from
// what each waiting thread waits on.
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

uint64_t watchdog_limit() {
  static const uint64_t limit = [] {
    const char* v = std::getenv("BEAM_EMULATOR_WATCHDOG");
    return v ? std::strtoull(v, nullptr, 0) : uint64_t(50'000'000'000ull);
  }();
  return limit;
}

//! racecheck runs unless BEAM_EMULATOR_RACECHECK=0.
bool racecheck_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("BEAM_EMULATOR_RACECHECK");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

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

std::string dim_text(const uint32_t v[3]) {
  return "(" + std::to_string(v[0]) + "," + std::to_string(v[1]) + "," + std::to_string(v[2]) + ")";
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


uint32_t member_mask(const block_state& b, const thread_state& t, const instruction& in) {
  if (in.mask_operand >= 0) return static_cast<uint32_t>(value(b, t, in.ops[in.mask_operand]));
  const uint32_t lanes = std::min<uint32_t>(32, b.thread_count - t.warp * 32);
  return lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1;
}

// Runs one thread until it waits, exits, or fails.
void run_thread(block_state& b, thread_state& t) {
  const instruction* code = b.k.code.data();
  uint64_t& budget = *b.budget;
  // A time slice: a thread that spins on a flag another thread of the block sets gives way.
  for (uint32_t slice = 0; t.state == thread_state::run::ready && slice < 4096; ++slice) {
    const instruction& in = code[t.pc];
    if (in.guard >= 0 && ((t.r[in.guard] != 0) == in.guard_negated)) {
      if (b.profile) {  // the guard is waited for; a branch not taken still orders what follows
        latency_issue(b, t, in, false);
        if (in.klass == uint8_t(profile::instruction_class::control)) latency_wait(b, t, in, 0);
      }
      ++t.pc;
      continue;
    }
    if (budget-- == 0) {
      fail_launch(b, &t, &in, cudaErrorLaunchTimeout, "watchdog",
                  "more than " + std::to_string(watchdog_limit()) +
                      " thread-instructions in one launch (BEAM_EMULATOR_WATCHDOG)");
    }
    if (b.profile) {
      profile_instruction(b, t, in);
      latency_issue(b, t, in, true);
    }
    if (in.touches_accumulators && t.wgmma_in_flight) check_accumulators(b, t, in);
    if (in.sync == sync_kind::mbarrier) {  // try_wait: goes on at once if its phase is complete
      in.exec(b, t, in);
      const bool done = mbarrier_wait_done(b, t);
      if (b.profile) {
        ++b.profile->record.mbarrier_waits;
        b.profile->record.mbarrier_suspensions += !done;
      }
      if (!done) {
        t.state = thread_state::run::waiting;
        return;
      }
      if (b.profile) latency_retire(b, t, in);
      ++t.pc;
      continue;
    }
    if (in.sync != sync_kind::none) {
      t.state = thread_state::run::waiting;
      if (in.sync == sync_kind::warp) {
        t.wait_mask = member_mask(b, t, in);
      } else {
        in.exec(b, t, in);  // records barrier id, count and operands; does not advance
      }
      return;
    }
    ++t.pc;
    in.exec(b, t, in);
    if (b.profile) latency_retire(b, t, in);
  }
}

// Whether lane u waits at a collective that can run together with lane t's (PTX ISA: the
// non-exited threads of membermask execute the instruction with the same qualifiers and the
// same membermask; an .aligned one, the very same instruction).
bool joins(const block_state& b, const thread_state& t, const thread_state& u) {
  if (u.state != thread_state::run::waiting) return false;
  const instruction& mine = b.k.code[t.pc];
  const instruction& other = b.k.code[u.pc];
  return other.sync == sync_kind::warp && other.signature == mine.signature && u.wait_mask == t.wait_mask &&
         (!mine.aligned || u.pc == t.pc);
}

// Fires every warp collective of warp w whose participants are all there. True if any fired.
bool fire_collectives(block_state& b, uint32_t w) {
  bool fired = false;
  const uint32_t first = w * 32, lanes = std::min<uint32_t>(32, b.thread_count - first);
  for (uint32_t l = 0; l < lanes; ++l) {
    thread_state& t = b.threads[first + l];
    if (t.state != thread_state::run::waiting) continue;
    const instruction& in = b.k.code[t.pc];
    if (in.sync != sync_kind::warp || !(t.wait_mask >> l & 1)) continue;  // else diagnosed at a stall
    thread_state* group[32] = {};
    uint32_t members = 0;
    bool complete = true;
    for (uint32_t j = 0; j < lanes && complete; ++j) {
      if (!(t.wait_mask >> j & 1)) continue;
      thread_state& u = b.threads[first + j];
      // shfl, vote, match, redux wait for the non-exited lanes of the mask; bar.warp.sync for all.
      if (u.state == thread_state::run::exited && !in.waits_for_exited) continue;
      complete = joins(b, t, u);
      group[j] = &u;
      members |= 1u << j;
    }
    if (!complete) continue;
    if (b.profile) latency_join(b, group, 32, false);
    in.warp_exec(b, group, members, in);
    if (in.waits_for_exited) race_synchronise(b, group, 32, nullptr);  // bar.warp.sync orders memory
    for (thread_state* u : group) {
      if (!u) continue;
      if (b.profile) latency_retire(b, *u, b.k.code[u->pc]);
      ++u->pc;
      u->state = thread_state::run::ready;
    }
    fired = true;
  }
  return fired;
}

// Releases every block barrier whose participants have arrived (PTX ISA: a warp's arrival is
// marked once its non-exited lanes are there, and exiting threads release a barrier they alone
// hold up): `count` threads, counted by whole warps, when the barrier names a count, else every
// thread that has not exited. An aligned barrier (bar.sync) also needs the lanes of each warp
// at one instruction. True if any was released.
bool release_barriers(block_state& b) {
  std::map<uint32_t, std::vector<thread_state*>> waiting;
  uint32_t live = 0;
  for (thread_state& t : b.threads) {
    live += t.state != thread_state::run::exited;
    if (t.state == thread_state::run::waiting && b.k.code[t.pc].sync == sync_kind::block) waiting[t.barrier].push_back(&t);
  }
  bool released = false;
  for (auto& [id, threads] : waiting) {
    const uint32_t count = threads.front()->barrier_count;
    // Per warp: are all its non-exited lanes here, and (aligned) at one instruction?
    uint32_t complete_warps = 0;
    std::vector<bool> warp_complete(b.warp_count, false);
    bool split = false;
    for (uint32_t w = 0; w < b.warp_count; ++w) {
      bool any = false, all = true;
      uint32_t pc = UINT32_MAX;
      for (uint32_t i = w * 32; i < std::min<uint32_t>(w * 32 + 32, b.thread_count); ++i) {
        const thread_state& t = b.threads[i];
        if (t.state == thread_state::run::exited) continue;
        const bool here = t.state == thread_state::run::waiting && b.k.code[t.pc].sync == sync_kind::block && t.barrier == id;
        all &= here;
        if (here) {
          any = true;
          if (b.k.code[t.pc].aligned && pc != UINT32_MAX && t.pc != pc) split = true;
          pc = t.pc;
        }
      }
      warp_complete[w] = any && all;
      complete_warps += any && all;
    }
    if (split) continue;  // diagnosed as barrier divergence at the stall
    const size_t arrived = std::min<size_t>(b.arrivals[id], count ? count : live);  // bar.arrive, no waiting
    const bool ready = count ? size_t(complete_warps) * 32 + arrived >= count : threads.size() + arrived >= live;
    if (!ready) continue;
    b.arrivals[id] -= static_cast<uint32_t>(arrived);
    uint32_t popc = 0, all = 1, any = 0;  // bar.red over the participants
    // The arrived warps go on (with a count, a warp still gathering its lanes waits on).
    std::vector<thread_state*> waking;
    for (thread_state* t : threads)
      if (!count || warp_complete[t->warp]) waking.push_back(t);
    for (const thread_state* t : waking) {
      popc += t->reduction;
      all &= t->reduction;
      any |= t->reduction;
    }
    race_synchronise(b, waking.data(), waking.size(), b.race ? &b.race->barrier_arrivals[id] : nullptr);
    if (b.profile) latency_join(b, waking.data(), waking.size(), true);
    if (b.race && b.arrivals[id] == 0) b.race->barrier_arrivals[id].clear();
    for (thread_state* waker : waking) {
      thread_state& t = *waker;
      const instruction& in = b.k.code[t.pc];
      if (in.aux2 != 0) t.r[in.ops[0].reg] = in.aux2 == 1 ? popc : in.aux2 == 2 ? all : any;  // popc, and, or
      if (b.profile) latency_retire(b, t, in);
      ++t.pc;
      t.state = thread_state::run::ready;
    }
    if (b.profile) {
      b.profile->record.barrier_arrivals += waking.size();
      ++b.profile->record.barrier_releases;
    }
    released = true;
    ++b.sync_events;
  }
  return released;
}

// Ends the mbarrier.try_wait of every thread whose phase has completed. True if any.
bool release_mbarrier_waits(block_state& b) {
  bool released = false;
  for (thread_state& t : b.threads) {
    if (t.state != thread_state::run::waiting || b.k.code[t.pc].sync != sync_kind::mbarrier) continue;
    if (!mbarrier_wait_done(b, t)) continue;
    if (b.profile) latency_retire(b, t, b.k.code[t.pc]);
    ++t.pc;
    t.state = thread_state::run::ready;
    released = true;
  }
  return released;
}

// The time limit of every waiting try_wait expires (they return false), unless nothing has
// changed since the last time (no mbarrier or block-barrier event, every waiter back at the
// try_wait that timed out): then the block is deadlocked. True if any timed out.
bool time_out_mbarrier_waits(block_state& b) {
  bool changed = b.timed_out_at != b.sync_events, any = false;
  for (const thread_state& t : b.threads)
    if (t.state == thread_state::run::waiting && b.k.code[t.pc].sync == sync_kind::mbarrier) {
      any = true;
      changed |= t.pc != t.timed_out_pc;
    }
  if (!any || !changed) return false;
  for (thread_state& t : b.threads) {
    if (t.state != thread_state::run::waiting || b.k.code[t.pc].sync != sync_kind::mbarrier) continue;
    set(t, b.k.code[t.pc].ops[0], 0);
    if (b.profile) latency_retire(b, t, b.k.code[t.pc]);
    t.timed_out_pc = t.pc++;
    t.state = thread_state::run::ready;
  }
  b.timed_out_at = b.sync_events;
  return true;
}

// What a thread waiting at an mbarrier waits for, for the deadlock report.
std::string mbarrier_wait_text(const block_state& b, const thread_state& t) {
  const auto it = b.mbarriers.find(t.mbarrier);
  std::string text = "mbarrier at shared " + hex(t.mbarrier);
  if (it == b.mbarriers.end()) return text + ", not initialised";
  const mbarrier_state& m = it->second;
  return text + " (initialised at line " + std::to_string(m.init_line) + "), waiting for phase " +
         std::to_string(t.mbarrier_phase - 1) + " (parity " + std::to_string((t.mbarrier_phase - 1) & 1) +
         ") to complete; its phase " + std::to_string(m.phase) + " has " + std::to_string(m.pending) + " of " +
         std::to_string(m.expected) + " arrivals and " + std::to_string(m.tx) + " transaction bytes pending";
}

[[noreturn]] void diagnose_stall(block_state& b) {
  // The most specific finding first: a collective whose group can never form, then a warp
  // split across barrier instructions, then a plain deadlock with every waiter listed.
  for (const thread_state& t : b.threads) {
    if (t.state != thread_state::run::waiting) continue;
    const instruction& in = b.k.code[t.pc];
    if (in.sync != sync_kind::warp) continue;
    const uint32_t first = t.warp * 32, lanes = std::min<uint32_t>(32, b.thread_count - first);
    if (!(t.wait_mask >> t.lane & 1))
      fail_launch(b, &t, &in, cudaErrorLaunchFailure, "collective mismatch",
                  "the executing lane is not in its member mask " + hex(t.wait_mask));
    for (uint32_t j = 0; j < 32; ++j) {
      if (!(t.wait_mask >> j & 1)) continue;
      if (j >= lanes)
        fail_launch(b, &t, &in, cudaErrorLaunchFailure, "deadlock",
                    "member mask " + hex(t.wait_mask) + " names lane " + std::to_string(j) + ", which the block does not have");
      const thread_state& u = b.threads[first + j];
      if (u.state == thread_state::run::exited && in.waits_for_exited)
        fail_launch(b, &t, &in, cudaErrorLaunchFailure, "deadlock",
                    "member mask " + hex(t.wait_mask) + " includes lane " + std::to_string(j) + ", which has exited");
      if (u.state != thread_state::run::waiting || joins(b, t, u)) continue;
      const instruction& other = b.k.code[u.pc];
      if (other.sync == sync_kind::warp)
        fail_launch(b, &t, &in, cudaErrorLaunchFailure, "collective mismatch",
                    "lane " + std::to_string(t.lane) + " waits with mask " + hex(t.wait_mask) + ", lane " +
                        std::to_string(j) + " of that mask at a collective that cannot join it (PTX line " +
                        std::to_string(other.line) + ", mask " + hex(u.wait_mask) + ")");
    }
  }
  std::ostringstream waits;
  const thread_state* first_waiter = nullptr;
  for (uint32_t w = 0; w < b.warp_count; ++w) {
    std::map<uint32_t, std::pair<int, const thread_state*>> at;  // pc -> count
    for (uint32_t l = 0; l < 32 && w * 32 + l < b.thread_count; ++l) {
      const thread_state& t = b.threads[w * 32 + l];
      if (t.state != thread_state::run::waiting) continue;
      auto& e = at[t.pc];
      if (e.first++ == 0) e.second = &t;
      if (!first_waiter) first_waiter = &t;
    }
    for (const auto& [pc, e] : at) {
      const instruction& in = b.k.code[pc];
      waits << "\n  warp " << w << ": " << e.first << " lane(s) at line " << in.line << " (" << in.opcode;
      if (in.sync == sync_kind::mbarrier) {
        waits << " on the " << mbarrier_wait_text(b, *e.second);
      } else if (in.sync == sync_kind::block) {
        waits << " barrier " << e.second->barrier << ", expecting ";
        if (e.second->barrier_count) waits << e.second->barrier_count << " threads";
        else waits << "every thread that has not exited";
      } else {
        waits << " mask " << hex(e.second->wait_mask);
      }
      waits << ")";
    }
  }
  // An aligned barrier is one instruction for the whole warp: its live lanes may not wait at
  // different barriers.
  for (const thread_state& t : b.threads) {
    if (t.state != thread_state::run::waiting || b.k.code[t.pc].sync != sync_kind::block || !b.k.code[t.pc].aligned)
      continue;
    for (uint32_t l = 0; l < 32 && t.warp * 32 + l < b.thread_count; ++l) {
      const thread_state& u = b.threads[t.warp * 32 + l];
      if (u.state == thread_state::run::waiting && u.pc != t.pc)
        fail_launch(b, &t, &b.k.code[t.pc], cudaErrorLaunchFailure, "barrier divergence",
                    "lanes of warp " + std::to_string(t.warp) + " wait at different instructions (lane " +
                        std::to_string(u.lane) + " at line " + std::to_string(b.k.code[u.pc].line) + "):" + waits.str());
    }
  }
  const instruction* in = first_waiter ? &b.k.code[first_waiter->pc] : nullptr;
  fail_launch(b, first_waiter, in, cudaErrorLaunchFailure, "deadlock", "no thread can make progress:" + waits.str());
}

enum class step { ran, exited, stalled };

//! One pass of a block's scheduler: every ready thread runs its slice, collectives fire, barriers
//! and mbarrier waits release. Stalled: no thread can run, and nothing in flight lands or times out.
step step_block(block_state& b) {
  bool progress = false;
  for (uint32_t w = 0; w < b.warp_count; ++w) {
    const uint32_t first = w * 32, last = std::min<uint32_t>(first + 32, b.thread_count);
    for (;;) {
      bool ran = false;
      for (uint32_t i = first; i < last; ++i) {
        thread_state& t = b.threads[i];
        if (t.state != thread_state::run::ready) continue;
        run_thread(b, t);
        ran = true;
      }
      const bool fired = fire_collectives(b, w);
      progress |= ran | fired;
      if (!fired) break;
    }
  }
  if (release_barriers(b) || release_mbarrier_waits(b)) return step::ran;
  bool done = true;
  for (const thread_state& t : b.threads) done &= t.state == thread_state::run::exited;
  if (done) {
    if (!b.bulk_copies.empty()) {
      const bulk_copy& c = b.bulk_copies.front();
      fail_launch(b, &b.threads[c.issuer], nullptr, cudaErrorLaunchFailure, "synccheck",
                  "the block exited with the TMA copy of line " + std::to_string(c.line) + " to shared " +
                      hex(c.destination) + " still in flight (no wait on its mbarrier at shared " +
                      hex(c.mbarrier) + ")");
    }
    return step::exited;
  }
  // Nothing can run: the TMA copies in flight land now (as late as possible), else the
  // try_waits time out; when neither changes anything, the block is deadlocked.
  return progress || land_bulk_copies(b, UINT32_MAX) || time_out_mbarrier_waits(b) ? step::ran : step::stalled;
}

void run_block(block_state& b) {
  for (step s = step_block(b); s != step::exited; s = step_block(b)) {
    if (s == step::stalled) diagnose_stall(b);
  }
}

//! Mixes what decides a block's threads' next steps while memory does not change into `h`: their
//! states and registers, and the count of mbarrier and barrier events (which only grows).
uint64_t thread_states_hash(const block_state& b, uint64_t h) {
  const auto mix = [&h](uint64_t v) { h = (h ^ v) * 0x100000001B3ull + (h >> 29); };
  mix(b.sync_events);
  for (const thread_state& t : b.threads) {
    mix(uint64_t(t.state) << 32 | t.pc);
    for (uint32_t r = 0; r < b.k.register_count; ++r) mix(t.r[r]);
  }
  return h;
}

//! A cooperative grid: every block resident, one pass of each in turn, so that blocks spinning on
//! a grid barrier see the others arrive. A stalled block is deadlocked whatever the others do
//! (only its own threads release its barriers). Passes that store nothing while the threads'
//! states repeat those after an earlier pass (since the last store) repeat forever: a deadlock.
void run_grid(std::vector<std::unique_ptr<block_state>>& blocks) {
  std::vector<bool> exited(blocks.size(), false);
  std::unordered_set<uint64_t> seen;  // the threads' states after each pass since the last store
  uint64_t stores = 0;
  for (size_t left = blocks.size(); left > 0;) {
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (exited[i]) continue;
      const step s = step_block(*blocks[i]);
      if (s == step::stalled) diagnose_stall(*blocks[i]);
      if (s == step::exited) {
        exited[i] = true;
        --left;
      }
    }
    uint64_t now = 0, h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < blocks.size(); ++i) {
      now += blocks[i]->stores;
      if (!exited[i]) h = thread_states_hash(*blocks[i], h);
    }
    if (now != stores) {
      stores = now;
      seen.clear();
    }
    if (left == 0 || seen.insert(h).second) continue;
    size_t i = 0;
    while (exited[i]) ++i;
    const block_state& b = *blocks[i];
    const thread_state* t = &b.threads[0];
    while (t->state == thread_state::run::exited) ++t;
    fail_launch(b, t, &b.k.code[t->pc], cudaErrorLaunchFailure, "deadlock",
                std::to_string(left) + " of the " + std::to_string(blocks.size()) +
                    " blocks of the cooperative launch have not exited and repeat their threads' states "
                    "without storing anything, so none can finish (a grid barrier that a block never reaches?)");
  }
}

}  // namespace

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

void fail_launch(const block_state& b, const thread_state* t, const instruction* in, cudaError_t error,
                 const char* check, const std::string& detail) {
  std::string where = "kernel " + b.k.info.name + " block " + dim_text(b.ctaid);
  if (t) where += " thread " + dim_text(t->tid);
  if (in) where += " line " + std::to_string(in->line);
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

uint8_t* access(block_state& b, thread_state& t, const instruction& in, space s, uint64_t address,
                uint32_t bytes, uint32_t align, bool write) {
  const char* what = write ? "store" : "load";
  b.stores += write;
  const auto misaligned = [&](const char* sp) {
    fail_launch(b, &t, &in, cudaErrorMisalignedAddress, "misaligned address",
                std::string(sp) + " " + what + " of " + std::to_string(bytes) + " bytes at " + hex(address) +
                    " (needs " + std::to_string(align) + "-byte alignment)");
  };
  if (address % align != 0) misaligned(space_name(s));
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
                          b.launch.predecessor_kernel + "), which may still be running");
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
                         "beam emulator: initcheck warning: kernel %s block %s thread %s line %d: %s (reported "
                         "once per instruction; the launch goes on: BEAM_EMULATOR_INITCHECK=error stops it)\n",
                         b.k.info.name.c_str(), dim_text(b.ctaid).c_str(), dim_text(t.tid).c_str(), in.line,
                         detail.c_str());
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
  std::vector<uint64_t> registers(resident * threads * k.register_count);
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
  std::vector<uint32_t> ready(profile ? registers.size() : 0);  // register levels (profile.hpp)
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
    b->budget = &budget;
    b->grid_workspace = reinterpret_cast<uint64_t>(workspace.get());
    if (racecheck) {
      races[slot].begin_block(static_cast<uint32_t>(threads), b->shared.size());
      b->race = &races[slot];
    }
    const size_t first = slot * threads * k.register_count;
    std::fill(registers.begin() + first, registers.begin() + first + threads * k.register_count, 0);
    if (profile) std::fill(ready.begin() + first, ready.begin() + first + threads * k.register_count, 0);
    b->threads.resize(threads);
    for (uint32_t i = 0; i < threads; ++i) {
      thread_state& t = b->threads[i];
      t.r = registers.data() + first + size_t(i) * k.register_count;
      t.stack = local.get() + (slot * threads + i) * stack_bytes;
      t.stack_top = static_cast<uint32_t>(k.local_bytes);
      if (profile) t.ready = ready.data() + first + size_t(i) * k.register_count;
      t.linear = i;
      t.tid[0] = i % lp.block.x;
      t.tid[1] = i / lp.block.x % lp.block.y;
      t.tid[2] = i / (lp.block.x * lp.block.y);
      t.lane = i % 32;
      t.warp = i / 32;
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
