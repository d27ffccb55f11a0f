// Barriers, fences and warp collectives (PTX ISA 9.7.13, parallel synchronisation and
// communication): bar, barrier, membar, fence, griddepcontrol, nanosleep, shfl, vote, match,
// redux, activemask. The block barriers and collectives wait in the scheduler (scheduler.cpp),
// which runs a collective once every lane of its member mask has arrived.
//
// Fences are no-ops: every access is visible at once in the emulator's sequential memory model.
// griddepcontrol: launches run one after another, so .launch_dependents releases nothing and
// .wait finds its prerequisite grids complete; .wait ends the programmatic-dependent-launch
// check of the thread (memory.cpp).
#include <algorithm>

#include "decode.hpp"
#include "semantics.hpp"

namespace emu {
namespace {

//! The payload of shfl (up, down, bfly, idx), vote (all, any, uni, ballot), match (any, all)
//! and redux (add, min, max, and, or, xor): the index of its mode in that order.
struct collective_payload {
  uint8_t mode;
};

// nanosleep t: a thread that sleeps waits for others; its group gives way (scheduler.cpp).
void exec_nanosleep(block_state& b, thread_state&, const instruction&) { b.yield = true; }

void exec_griddepcontrol_wait(block_state&, thread_state& t, const instruction&) { t.dependencies_resolved = true; }

// bar.sync / barrier.sync / bar.red: records the barrier a thread arrives at (the scheduler
// releases it). Operands: [d,] a[, b][, {!}c].
void exec_bar_record(block_state& b, thread_state& t, const instruction& in) {
  const bool red = payload<barrier_payload>(in).reduction != barrier_reduction::none;
  const int first = red ? 1 : 0;  // bar.red has a destination
  t.barrier = static_cast<uint32_t>(value(b, t, in.ops[first]));
  const int remaining = in.op_count - first - 1 - (red ? 1 : 0);
  t.barrier_count = remaining > 0 ? static_cast<uint32_t>(value(b, t, in.ops[first + 1])) : 0;
  t.reduction = red ? predicate(b, t, in.ops[in.op_count - 1]) : 0;
  if (t.barrier > 15)
    fail_launch(b, &t, &in, cudaErrorIllegalInstruction, "illegal instruction",
                "barrier id " + std::to_string(t.barrier) + " is not in 0..15");
}

// bar.arrive a, b / barrier.arrive a, b: one arrival at barrier a (of b threads); no wait.
void exec_bar_arrive(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t id = static_cast<uint32_t>(value(b, t, in.ops[0]));
  if (id > 15)
    fail_launch(b, &t, &in, cudaErrorIllegalInstruction, "illegal instruction",
                "barrier id " + std::to_string(id) + " is not in 0..15");
  ++b.arrivals[id];
  if (b.race) race_release(b, t, b.race->barrier_arrivals[id]);
}

// ---------------------------------------------------------------------------------------
// Warp collectives

void warp_sync(block_state&, thread_state* const*, uint32_t, const instruction&) {}

// Lanes of a collective without .aligned may meet at different instructions with the same
// qualifiers (PTX ISA: shfl.sync, vote.sync, match.sync, redux.sync): each lane's operands are
// those of its own instruction.
const instruction& own(const block_state& b, const thread_state& t) { return b.k.code[t.pc]; }

//! The operands of a collective's lanes, each from the lane's own instruction (own): plain loads
//! from and stores to the warp's registers when every lane is at `in` (the instruction at the
//! first lane's pc) and its sources are registers or immediates.
class collective_operands {
 public:
  collective_operands(const block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in)
      : b_(b), in_(in), lanes_(lanes) {
    const thread_state& first = *lanes[__builtin_ctz(mask)];
    bool same = in.op_count <= 5;
    for (uint32_t m = mask; m && same; m &= m - 1) same = lanes[__builtin_ctz(m)]->pc == first.pc;
    for (int i = 1; i < in.op_count && same; ++i)
      same = in.ops[i].k == operand::kind::imm || (in.ops[i].k == operand::kind::reg && !in.ops[i].negate);
    if (!same) return;
    warp_ = &b.threads[first.warp * 32];
    for (int i = 1; i < in.op_count; ++i) sources_[i - 1] = lane_operand(warp_, in.ops[i]);
  }
  //! Source operand i (≥ 1) of lane l.
  uint64_t operator()(uint32_t l, int i) const {
    return warp_ ? sources_[i - 1][l] : value(b_, *lanes_[l], own(b_, *lanes_[l]).ops[i]);
  }
  //! Writes v to lane l's destination operand 0 (and p to its `|p` partner, if any).
  void set_destination(uint32_t l, uint64_t v, bool p = false) const {
    const instruction& mine = warp_ ? in_ : own(b_, *lanes_[l]);
    if (warp_ && mine.ops[0].k == operand::kind::reg) (&reg(warp_[0], mine.ops[0].reg))[l] = v;
    else set(*lanes_[l], mine.ops[0], v);
    if (mine.pair >= 0) reg(*lanes_[l], mine.pair) = p;
  }

 private:
  const block_state& b_;
  const instruction& in_;
  thread_state* const* lanes_;
  const thread_state* warp_ = nullptr;  // lane 0 of the warp where the operands are plain
  lane_operand sources_[4];             // operands 1-4 there
};

// shfl.sync.mode.b32 d[|p], a, b, c, membermask
void warp_shfl(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  const collective_operands operand(b, lanes, mask, in);
  const uint8_t mode = payload<collective_payload>(in).mode;
  uint32_t source[32] = {};
  for (uint32_t m = mask; m; m &= m - 1) source[__builtin_ctz(m)] = static_cast<uint32_t>(operand(__builtin_ctz(m), 1));
  for (uint32_t m = mask; m; m &= m - 1) {
    const int l = __builtin_ctz(m);
    const uint32_t bval = operand(l, 2) & 0x1F;
    const uint32_t c = static_cast<uint32_t>(operand(l, 3));
    const uint32_t cval = c & 0x1F, segmask = c >> 8 & 0x1F;
    const int max_lane = static_cast<int>((l & segmask) | (cval & ~segmask));
    const int min_lane = static_cast<int>(l & segmask);
    int j;
    bool pval;
    switch (mode) {
      case 0: j = l - static_cast<int>(bval); pval = j >= max_lane; break;                          // up
      case 1: j = l + static_cast<int>(bval); pval = j <= max_lane; break;                          // down
      case 2: j = l ^ static_cast<int>(bval); pval = j <= max_lane; break;                          // bfly
      default: j = min_lane | static_cast<int>(bval & ~segmask); pval = j <= max_lane; break;       // idx
    }
    if (!pval) j = l;
    if (!(mask >> j & 1))
      fail_launch(b, lanes[l], &own(b, *lanes[l]), cudaErrorLaunchFailure, "collective mismatch",
                  "shfl.sync reads lane " + std::to_string(j) + ", which is outside the member mask or has exited");
    operand.set_destination(uint32_t(l), source[j], pval);
  }
}

// vote.sync.{all,any,uni}.pred d, {!}a, membermask  /  vote.sync.ballot.b32 d, {!}a, membermask
// (`mask`: the non-exited lanes of membermask, over which the vote is taken)
void warp_vote(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  uint32_t ballot = 0;
  for (uint32_t m = mask; m; m &= m - 1) {
    const int l = __builtin_ctz(m);
    if (predicate(b, *lanes[l], own(b, *lanes[l]).ops[1])) ballot |= 1u << l;
  }
  uint64_t r;
  switch (payload<collective_payload>(in).mode) {
    case 0: r = ballot == mask; break;
    case 1: r = ballot != 0; break;
    case 2: r = ballot == 0 || ballot == mask; break;
    default: r = ballot; break;
  }
  for (uint32_t m = mask; m; m &= m - 1) set(*lanes[__builtin_ctz(m)], own(b, *lanes[__builtin_ctz(m)]).ops[0], r);
}

// match.{any,all}.sync.type d[|p], a, membermask
void warp_match(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  const int w = width(in);
  const collective_operands operand(b, lanes, mask, in);
  uint64_t v[32] = {};
  for (uint32_t m = mask; m; m &= m - 1) v[__builtin_ctz(m)] = truncate(operand(__builtin_ctz(m), 1), w);
  bool all_equal = true;
  const int first = __builtin_ctz(mask);
  for (uint32_t m = mask; m; m &= m - 1) all_equal &= v[__builtin_ctz(m)] == v[first];
  for (uint32_t m = mask; m; m &= m - 1) {
    const int l = __builtin_ctz(m);
    uint32_t same = 0;
    for (uint32_t n = mask; n; n &= n - 1)
      if (v[__builtin_ctz(n)] == v[l]) same |= n & -n;
    if (payload<collective_payload>(in).mode == 0) operand.set_destination(uint32_t(l), same);
    else operand.set_destination(uint32_t(l), all_equal ? mask : 0, all_equal);
  }
}

// redux.sync.op.type d, a, membermask
void warp_redux(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  const bool sgn = type_signed(in.type);
  const collective_operands operand(b, lanes, mask, in);
  int64_t acc = 0;
  bool first = true;
  for (uint32_t m = mask; m; m &= m - 1) {
    const int l = __builtin_ctz(m);
    const uint64_t raw = operand(uint32_t(l), 1) & 0xFFFFFFFFu;
    const int64_t v = sgn ? sign_extend(raw, 4) : static_cast<int64_t>(raw);
    if (first) { acc = v; first = false; continue; }
    switch (payload<collective_payload>(in).mode) {
      case 0: acc = static_cast<int64_t>(static_cast<uint32_t>(acc + v)); break;
      case 1: acc = std::min(acc, v); break;
      case 2: acc = std::max(acc, v); break;
      case 3: acc &= v; break;
      case 4: acc |= v; break;
      default: acc ^= v; break;
    }
  }
  for (uint32_t m = mask; m; m &= m - 1) operand.set_destination(uint32_t(__builtin_ctz(m)), static_cast<uint64_t>(acc) & 0xFFFFFFFFu);
}

// activemask.b32 d: the lanes executing it together: of the group the scheduler runs in lock-step
// (scheduler.cpp), those its guard does not switch off. The same answer for every lane of the
// group, never a lane that is elsewhere.
void exec_activemask(block_state& b, thread_state& t, const instruction& in) {
  uint32_t active = 0;
  for (uint32_t m = b.converged; m; m &= m - 1) {
    const thread_state& u = b.threads[t.warp * 32 + __builtin_ctz(m)];
    if (in.guard < 0 || (reg(u, in.guard) != 0) != in.guard_negated) active |= m & -m;
  }
  set(t, in.ops[0], active);
}

// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 d, [a]: lane 8i + r supplies the
// address of row r of matrix i (16 bytes); lane l receives, for each matrix i, elements

// ---------------------------------------------------------------------------------------
// Decoders

//! The mode of a collective: the index of the first of `modes` the instruction names.
template <size_t N>
void decode_mode(instruction& in, const char* const (&modes)[N]) {
  for (uint8_t i = 0; i < N; ++i)
    if (has(in, modes[i])) {
      set_payload<collective_payload>(in).mode = i;
      return;
    }
  unsupported(in, "no mode");
}

constexpr const char* shfl_modes[] = {"up", "down", "bfly", "idx"};
constexpr const char* vote_modes[] = {"all", "any", "uni", "ballot"};
constexpr const char* match_modes[] = {"any", "all"};
constexpr const char* redux_modes[] = {"add", "min", "max", "and", "or", "xor"};

void decode_barrier(instruction& in, const kernel&) {
  barrier_payload& p = set_payload<barrier_payload>(in);
  if (has(in, "red")) {
    p.reduction = has(in, "popc") ? barrier_reduction::popc : has(in, "and") ? barrier_reduction::all
                : has(in, "or")   ? barrier_reduction::any  : barrier_reduction::none;
    if (p.reduction == barrier_reduction::none) unsupported(in, "no reduction");
  }
  in.aligned = in.opcode == "bar" || in.aligned;  // bar.sync is barrier.sync.aligned
  in.opcode = "bar";
  in.sync = sync_kind::block;
  in.exec = exec_bar_record;
}

void decode_bar_arrive(instruction& in, const kernel&) {
  set_payload<barrier_payload>(in);
  in.exec = exec_bar_arrive;
}

void decode_bar_warp_sync(instruction& in, const kernel&) {
  in.sync = sync_kind::warp;
  in.mask_operand = 0;
  in.waits_for_exited = true;
  in.warp_exec = warp_sync;
}

void decode_griddepcontrol_wait(instruction& in, const kernel&) { in.exec = exec_griddepcontrol_wait; }
void decode_nanosleep(instruction& in, const kernel&) { in.exec = exec_nanosleep; }

//! A collective of modes `modes`, its member mask in operand `mask_operand`, run by `f`.
template <size_t N>
void decode_collective(instruction& in, const char* const (&modes)[N], int8_t mask_operand, warp_exec_fn f) {
  decode_mode(in, modes);
  in.sync = sync_kind::warp;
  in.mask_operand = mask_operand;
  in.warp_exec = f;
}

void decode_shfl(instruction& in, const kernel&) { decode_collective(in, shfl_modes, 4, warp_shfl); }
void decode_vote(instruction& in, const kernel&) { decode_collective(in, vote_modes, 2, warp_vote); }
void decode_match(instruction& in, const kernel&) { decode_collective(in, match_modes, 2, warp_match); }
void decode_redux(instruction& in, const kernel&) { decode_collective(in, redux_modes, 2, warp_redux); }

void decode_activemask(instruction& in, const kernel&) { in.exec = exec_activemask; }

}  // namespace

std::vector<opcode_row> warp_rows() {
  using namespace qualifiers;
  using profile::instruction_class;
  const auto sync = instruction_class::synchronisation, warp = instruction_class::warp;
  const auto barrier = any_of({{"aligned", "cta"}});
  const auto reduction = any_of({{"aligned", "cta", "popc", "and", "or", "u32", "pred"}});
  const auto modes = [](const auto& list, qualifier_list more) {
    more.insert(more.end(), std::begin(list), std::end(list));
    return any_of({more});
  };
  return {
      {"bar.sync", barrier, 1, 2, decode_barrier, sync, memory_kind::none, true},
      {"barrier.sync", barrier, 1, 2, decode_barrier, sync, memory_kind::none, true},
      {"bar.red", reduction, 3, 4, decode_barrier, sync},
      {"barrier.red", reduction, 3, 4, decode_barrier, sync},
      {"bar.arrive", barrier, 2, 2, decode_bar_arrive, sync, memory_kind::none, true},
      {"barrier.arrive", barrier, 2, 2, decode_bar_arrive, sync, memory_kind::none, true},
      {"bar.warp.sync", {}, 1, 1, decode_bar_warp_sync, sync, memory_kind::none, true},
      {"membar", any_of({{"cta", "gl", "sys"}}), 0, 0, decode_nop, sync},
      {"fence", any_of({memory_order, {"proxy", "async", "alias", "mbarrier_init", "tensormap::generic", "async::generic",
                                       "sync_restrict::shared::cta", "sync_restrict::shared::cluster", "global",
                                       "shared::cta", "shared::cluster"}}),
       0, 2, decode_nop, sync},
      {"griddepcontrol.wait", {}, 0, 0, decode_griddepcontrol_wait, sync},
      {"griddepcontrol.launch_dependents", {}, 0, 0, decode_nop, sync},
      {"nanosleep", any_of({{"u32"}}), 1, 1, decode_nanosleep, instruction_class::integer, memory_kind::none, true},
      {"pmevent", any_of({{"mask"}}), 1, 1, decode_nop},
      {"shfl.sync", modes(shfl_modes, {"b32"}), 5, 5, decode_shfl, warp},
      {"vote.sync", modes(vote_modes, {"pred", "b32"}), 3, 3, decode_vote, warp},
      {"match.sync", modes(match_modes, {"b32", "b64"}), 3, 3, decode_match, warp},
      {"redux.sync", modes(redux_modes, {"u32", "s32", "b32"}), 3, 3, decode_redux, warp},
      {"activemask", any_of({{"b32"}}), 1, 1, decode_activemask, warp},
  };
}

}  // namespace emu
