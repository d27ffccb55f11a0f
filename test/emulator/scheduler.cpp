// The scheduler of a block: every thread with independent thread scheduling, one slice at a time.
// A thread runs until it reaches a warp collective or a block barrier; a collective executes
// once all lanes of its member mask wait at it, a barrier releases once its thread count has
// arrived. No thread able to run while some have not exited is a deadlock, diagnosed from
// what each waiting thread waits on. A cooperative launch's blocks are resident together and
// interleaved pass by pass.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <sstream>
#include <unordered_set>

#include "decode.hpp"
#include "semantics.hpp"

namespace emu {

uint64_t watchdog_limit() {
  static const uint64_t limit = [] {
    const char* v = std::getenv("BEAM_EMULATOR_WATCHDOG");
    return v ? std::strtoull(v, nullptr, 0) : uint64_t(50'000'000'000ull);
  }();
  return limit;
}

namespace {

uint32_t member_mask(const block_state& b, const thread_state& t, const instruction& in) {
  if (in.mask_operand >= 0) return static_cast<uint32_t>(value(b, t, in.ops[in.mask_operand]));
  const uint32_t lanes = std::min<uint32_t>(32, b.thread_count - t.warp * 32);
  return lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1;
}

[[noreturn]] void watchdog(const block_state& b, const thread_state& t, const instruction& in) {
  fail_launch(b, &t, &in, cudaErrorLaunchTimeout, "watchdog",
              "more than " + std::to_string(watchdog_limit()) +
                  " thread-instructions in one launch (BEAM_EMULATOR_WATCHDOG)");
}

// Executes thread t's instruction `in` (the one at its pc): a guarded-off one is skipped; a
// warp collective or a block barrier makes it wait (the scheduler runs or releases it); an
// mbarrier try_wait makes it wait unless its phase has completed.
void step_thread(block_state& b, thread_state& t, const instruction& in) {
  if (in.guard >= 0 && ((reg(t, in.guard) != 0) == in.guard_negated)) {
    if (b.profile) {  // the guard is waited for; a branch not taken still orders what follows
      latency_issue(b, t, in, false);
      if (in.klass == uint8_t(profile::instruction_class::control)) latency_wait(b, t, in, 0);
    }
    ++t.pc;
    return;
  }
  if ((*b.budget)-- == 0) watchdog(b, t, in);
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
    return;
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

// Runs the collective `in` for its participants (`group[l]` null for the others), which then go on.
void fire(block_state& b, thread_state* const (&group)[32], uint32_t members, const instruction& in) {
  if (b.profile) latency_join(b, group, 32, false);
  in.warp_exec(b, group, members, in);
  if (in.waits_for_exited) race_synchronise(b, group, 32, nullptr);  // bar.warp.sync orders memory
  for (thread_state* u : group) {
    if (!u) continue;
    if (b.profile) latency_retire(b, *u, b.k.code[u->pc]);
    ++u->pc;
    u->state = thread_state::run::ready;
  }
}

// Fires every warp collective of warp w whose participants are all there. True if any fired.
bool fire_collectives(block_state& b, uint32_t w) {
  const uint32_t first = w * 32, lanes = std::min<uint32_t>(32, b.thread_count - first);
  thread_state* const lane = b.threads.data() + first;
  uint32_t waiting = 0, exited = 0;  // lanes at a warp collective; lanes that have exited
  for (uint32_t l = 0; l < lanes; ++l) {
    const thread_state& t = lane[l];
    waiting |= uint32_t(t.state == thread_state::run::waiting && b.k.code[t.pc].sync == sync_kind::warp) << l;
    exited |= uint32_t(t.state == thread_state::run::exited) << l;
  }
  const uint32_t present = lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1;
  bool fired = false;
  for (uint32_t pending = waiting; pending; pending &= pending - 1) {
    const uint32_t l = __builtin_ctz(pending);
    thread_state& t = lane[l];
    if (!(waiting >> l & 1) || !(t.wait_mask >> l & 1)) continue;  // fired already; else diagnosed at a stall
    const instruction& in = b.k.code[t.pc];
    // shfl, vote, match, redux wait for the non-exited lanes of the mask; bar.warp.sync for all.
    const uint32_t members = t.wait_mask & present & (in.waits_for_exited ? ~0u : ~exited);
    bool complete = true;
    for (uint32_t m = members; m && complete; m &= m - 1) complete = joins(b, t, lane[__builtin_ctz(m)]);
    if (!complete) continue;
    thread_state* group[32] = {};
    for (uint32_t m = members; m; m &= m - 1) group[__builtin_ctz(m)] = &lane[__builtin_ctz(m)];
    fire(b, group, members, in);
    waiting &= ~members;
    fired = true;
  }
  return fired;
}

// The lanes `group` of a warp (`lane`: its lane 0, `lanes` of them) have arrived at the collective
// `in` with one member mask: it fires if the mask's other lanes all wait to join it (exited lanes
// excused unless it is bar.warp.sync). Returns the lanes it fired for (0: it waits on).
uint32_t fire_arrivals(block_state& b, thread_state* lane, uint32_t lanes, uint32_t group, const instruction& in) {
  const thread_state& t = lane[__builtin_ctz(group)];
  const uint32_t present = lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1;
  uint32_t members = group;
  for (uint32_t m = t.wait_mask & present & ~group; m; m &= m - 1) {
    const thread_state& u = lane[__builtin_ctz(m)];
    if (u.state == thread_state::run::exited && !in.waits_for_exited) continue;
    if (!joins(b, t, u)) return 0;
    members |= m & -m;
  }
  thread_state* participants[32] = {};
  for (uint32_t m = members; m; m &= m - 1) participants[__builtin_ctz(m)] = &lane[__builtin_ctz(m)];
  fire(b, participants, members, in);
  return members;
}

//! The lanes in a mask, counted without a library call (x86-64's baseline has no popcnt).
uint32_t lane_count(uint32_t m) {
  m -= m >> 1 & 0x55555555u;
  m = (m & 0x33333333u) + (m >> 2 & 0x33333333u);
  return ((m + (m >> 4)) & 0x0F0F0F0Fu) * 0x01010101u >> 24;
}

// Counts the thread-instructions of the lanes `active` (of the warp whose lane 0 is `lane`)
// executing `in` against the launch's budget: the watchdog fires at the lane that exhausts it.
void spend(block_state& b, const thread_state* lane, uint32_t active, const instruction& in) {
  const uint64_t count = lane_count(active);
  if (*b.budget < count) {
    uint32_t m = active;
    for (uint64_t i = 0; i < *b.budget; ++i) m &= m - 1;
    watchdog(b, lane[__builtin_ctz(m)], in);
  }
  *b.budget -= count;
}

// The lanes of `group` (of the warp whose lane 0 is `lane`) that `in`'s guard leaves on: the guard
// register of each, read from the warp's registers.
uint32_t guard_on(const thread_state* lane, uint32_t group, const instruction& in) {
  const uint64_t* const guard = &reg(lane[0], in.guard);  // 32 slots, whatever the warp's size
  uint32_t on = 0;
  for (uint32_t l = 0; l < 32; ++l) on |= uint32_t(guard[l] != 0) << l;  // no branch: vectorisable
  return (in.guard_negated ? ~on : on) & group;
}

// Whether the lanes `group` of a warp (`lane`: its lane 0, `lanes` of them), all at the collective
// `in`, are exactly its participants: every guard on, and the member mask (a register or an
// immediate, the same in every lane; or the whole warp) is the group.
bool all_members(const thread_state* lane, uint32_t lanes, uint32_t group, const instruction& in) {
  if (in.guard >= 0 && guard_on(lane, group, in) != group) return false;
  if (in.mask_operand < 0) return group == (lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1);
  const operand& o = in.ops[in.mask_operand];
  if (o.k == operand::kind::imm) return static_cast<uint32_t>(o.imm) == group;
  if (o.k != operand::kind::reg) return false;
  const lane_operand mask(lane, o);
  for (uint32_t m = group; m; m &= m - 1)
    if (static_cast<uint32_t>(mask[__builtin_ctz(m)]) != group) return false;
  return true;
}

// Steps of a warp before it gives way to the block's other warps (and its own waiting groups).
constexpr uint32_t warp_slice = 4096;

// Runs warp w's ready lanes in lock-step for a slice: the ready lanes at the lowest program
// counter form a group that executes each instruction together (fetched once for all of them),
// and a collective fires as soon as its lanes are all there. Lanes that branch apart run as
// separate groups, the lowest program counter first, until they meet at one instruction again
// (the lowest-first order makes them meet at the end of an if, or when a loop's last lane leaves
// it). Executing converged lanes together is one schedule independent thread scheduling allows.
// A group that runs out of the slice marks its lanes served: the warp's next slice runs the
// other groups first, so that lanes spinning on a flag that another group of the warp sets
// make progress; a group that polls in vain (a failing mbarrier.test_wait, nanosleep) gives way at
// once. True if any lane ran.
bool run_warp(block_state& b, uint32_t w) {
  const uint32_t first = w * 32, lanes = std::min<uint32_t>(32, b.thread_count - first);
  thread_state* const lane = b.threads.data() + first;
  const instruction* const code = b.k.code.data();
  uint32_t& served = b.served[w];
  bool ran = false;
  for (uint32_t steps = 0; steps < warp_slice;) {
    uint32_t ready = 0;
    for (uint32_t l = 0; l < lanes; ++l) ready |= uint32_t(lane[l].state == thread_state::run::ready) << l;
    if ((ready & ~served) == 0) {  // every ready group has had its turn
      if (ran) break;
      served = 0;
    }
    const uint32_t candidates = ready & ~served;
    if (candidates == 0) break;
    uint32_t pc = UINT32_MAX, group = 0, others = UINT32_MAX;  // others: the next group's pc
    for (uint32_t m = candidates; m; m &= m - 1) {
      const uint32_t l = __builtin_ctz(m);
      if (lane[l].pc < pc) others = pc, pc = lane[l].pc, group = 0;
      else if (lane[l].pc > pc) others = std::min(others, lane[l].pc);
      if (lane[l].pc == pc) group |= 1u << l;
    }
    ran = true;
    // The group's lanes' t.pc is written when they leave straight-line code (no handler outside
    // the control-flow and waiting ones reads it), so that a run of plain instructions costs one
    // handler call per lane and nothing more.
    bool settled = true;
    const auto settle = [&] {
      if (settled) return;
      for (uint32_t m = group; m; m &= m - 1) lane[__builtin_ctz(m)].pc = pc;
      settled = true;
    };
    for (bool together = true; together; ++steps) {
      if (steps == warp_slice) {
        settle();
        served |= group;
        break;
      }
      const instruction& in = code[pc];
      b.converged = group;
      if (in.sync == sync_kind::none && !in.touches_accumulators && !b.profile &&
          (in.branch || in.klass != uint8_t(profile::instruction_class::control))) {
        // The common case, step_thread's checks hoisted out of the lanes: the lanes its guard
        // leaves on execute it, and the group goes on together.
        const uint32_t active = in.guard >= 0 ? guard_on(lane, group, in) : group;
        spend(b, lane, active, in);
        if (in.branch) {  // the lanes it leaves on jump: all together, or the group splits
          const uint32_t target = static_cast<uint32_t>(in.ops[0].imm);
          if (active != 0 && active != group) {
            for (uint32_t m = group; m; m &= m - 1) lane[__builtin_ctz(m)].pc = (active >> __builtin_ctz(m) & 1) ? target : pc + 1;
            settled = true;
            ++steps;
            break;
          }
          settled = false;
          pc = active ? target : pc + 1;
          together = pc < others;  // at the next group's pc: they merge; past it: that group runs first
          if (!together) settle();
          continue;
        }
        if (in.group_exec) {
          if (active) in.group_exec(b, lane, active, in);
        } else {
          for (uint32_t m = active; m; m &= m - 1) in.exec(b, lane[__builtin_ctz(m)], in);
        }
        settled = false;
        ++pc;
        if (b.yield) {  // polling lanes (nanosleep, a failing test_wait) wait for others
          b.yield = false;
          settle();
          served |= group;
          ++steps;
          break;
        }
        together = pc < others;  // at the next group's pc: they merge; past it: that group runs first
        if (!together) settle();
        continue;
      }
      if (in.sync == sync_kind::warp && !in.touches_accumulators && !b.profile && all_members(lane, lanes, group, in)) {
        // A collective whose member mask is the group, every lane's guard on: it fires at once.
        spend(b, lane, group, in);
        settle();
        in.warp_exec(b, &b.thread_pointers[first], group, in);
        if (in.waits_for_exited) {  // bar.warp.sync orders memory
          thread_state* participants[32] = {};
          for (uint32_t m = group; m; m &= m - 1) participants[__builtin_ctz(m)] = &lane[__builtin_ctz(m)];
          race_synchronise(b, participants, 32, nullptr);
        }
        settled = false;
        ++pc;
        together = pc < others;
        if (!together) settle();
        continue;
      }
      settle();
      for (uint32_t m = group; m; m &= m - 1) step_thread(b, lane[__builtin_ctz(m)], in);
      if (in.sync == sync_kind::warp) {
        // Lanes that share one member mask can complete only the collective that mask names: it
        // fires when every other lane of the mask waits to join it (fire_arrivals). Lanes with
        // different masks have the warp searched.
        const uint32_t mask = lane[__builtin_ctz(group)].wait_mask;
        bool uniform = (mask & group) == group;
        for (uint32_t m = group; m && uniform; m &= m - 1) {
          const thread_state& t = lane[__builtin_ctz(m)];
          uniform = t.state == thread_state::run::waiting && t.wait_mask == mask;
        }
        const uint32_t fired = uniform ? fire_arrivals(b, lane, lanes, group, in) : fire_collectives(b, w) ? ~0u : 0;
        // Lanes released with the group may stand where it goes on: form the groups again.
        if (fired & ~group) together = false;
      }
      if (b.yield) {  // polling lanes wait for others: the warp's other groups, then its other warps
        b.yield = false;
        served |= group;
        ++steps;
        break;
      }
      pc = lane[__builtin_ctz(group)].pc;
      together = together && pc < others;
      for (uint32_t m = group; m && together; m &= m - 1) {
        const thread_state& t = lane[__builtin_ctz(m)];
        together = t.state == thread_state::run::ready && t.pc == pc;
      }
    }
  }
  return ran;
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
      switch (payload<barrier_payload>(in).reduction) {
        case barrier_reduction::none: break;
        case barrier_reduction::popc: reg(t, in.ops[0].reg) = popc; break;
        case barrier_reduction::all: reg(t, in.ops[0].reg) = all; break;
        case barrier_reduction::any: reg(t, in.ops[0].reg) = any; break;
      }
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
  return text + " (initialised at " + b.k.line_text(m.init_line) + "), waiting for phase " +
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
                        std::to_string(j) + " of that mask at a collective that cannot join it (" +
                        b.k.line_text(other.line) + ", mask " + hex(u.wait_mask) + ")");
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
      waits << "\n  warp " << w << ": " << e.first << " lane(s) at " << b.k.line_text(in.line) << " (" << in.opcode;
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
                        std::to_string(u.lane) + " at " + b.k.line_text(b.k.code[u.pc].line) + "):" + waits.str());
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
    for (;;) {
      const bool ran = run_warp(b, w);
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
                  "the block exited with the TMA copy of " + b.k.line_text(c.line) + " to shared " +
                      hex(c.destination) + " still in flight (no wait on its mbarrier at shared " +
                      hex(c.mbarrier) + ")");
    }
    return step::exited;
  }
  // Nothing can run: the TMA copies in flight land now (as late as possible), else the
  // try_waits time out; when neither changes anything, the block is deadlocked.
  return progress || land_bulk_copies(b, UINT32_MAX) || time_out_mbarrier_waits(b) ? step::ran : step::stalled;
}

}  // namespace

void run_block(block_state& b) {
  for (step s = step_block(b); s != step::exited; s = step_block(b)) {
    if (s == step::stalled) diagnose_stall(b);
  }
}

namespace {

//! Mixes what decides a block's threads' next steps while memory does not change into `h`: their
//! states and registers, the warps' served groups, and the count of mbarrier and barrier events
//! (which only grows).
uint64_t thread_states_hash(const block_state& b, uint64_t h) {
  const auto mix = [&h](uint64_t v) { h = (h ^ v) * 0x100000001B3ull + (h >> 29); };
  mix(b.sync_events);
  for (const uint32_t served : b.served) mix(served);  // which lane groups run first next
  for (const thread_state& t : b.threads) {
    mix(uint64_t(t.state) << 32 | t.pc);
    for (uint32_t r = 0; r < b.k.register_count; ++r) mix(reg(t, int32_t(r)));
  }
  return h;
}

}  // namespace

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


}  // namespace emu
