// racecheck: shared-memory hazards between the threads of a block, found with vector clocks.
//
// Each thread t has a clock vector V_t (V_t[u]: how far thread u's history is known to have
// happened before t's present); its own entry V_t[t] advances after each release. The
// orderings are the PTX memory model's synchronising operations inside a block:
//   - bar.sync / barrier.sync / bar.red (and the bar.arrive counted towards them): every thread
//     released by a barrier knows what all its participants knew;
//   - bar.warp.sync: the same among the lanes of its member mask;
//   - mbarrier: an arrive-on (mbarrier.arrive, cp.async.mbarrier.arrive, complete_tx and TMA
//     completions) releases into the current phase; a test_wait / try_wait that observes the
//     phase complete acquires everything released into it.
// Shuffles, votes and other collectives exchange registers and order no memory.
//
// Every shared byte remembers its last write and its last read (thread, clock, PTX line). An
// access by t conflicts with an earlier access by u ≠ t, at least one a write, whose clock is
// not covered by V_t[u]. Stores, loads (ld, ldmatrix, wgmma operands), cp.async copies (when
// they land, as writes of the issuing thread) and TMA boxes (when they land, as writes of the
// issuing thread as of the issue) are tracked; atomics are not (they do not race with each
// other), and keeping one read per byte can miss a race with an earlier concurrent read.
#include <algorithm>
#include <cstring>
#include <string>

#include "machine.hpp"

namespace emu {
namespace {

const char* kind(bool write) { return write ? "write" : "read"; }

std::string thread_text(const block_state& b, uint32_t linear) {
  const thread_state& u = b.threads[linear];
  return "thread (" + std::to_string(u.tid[0]) + "," + std::to_string(u.tid[1]) + "," + std::to_string(u.tid[2]) + ")";
}

void join_into(uint32_t* into, const uint32_t* from, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) into[i] = std::max(into[i], from[i]);
}

}  // namespace

// The blocks of a launch run one after another on one race_state: a new block's clocks start past
// every clock of the blocks before it, so that their accesses still in the shadow are ordered
// before all of its own (as the end of a block orders them) and the shadow needs no clearing.
void race_state::begin_block(uint32_t thread_count, size_t shared_bytes) {
  uint32_t base = 0;  // each thread's own entry is the largest clock it has given out
  for (const uint32_t c : own) base = std::max(base, c);
  if (thread_count != n || shadow.size() != shared_bytes || base > UINT32_MAX / 2) {
    base = 0;
    shadow.assign(shared_bytes, shared_byte{});
  }
  n = thread_count;
  floor.assign(n, base);
  own.assign(n, base + 1);
  has_row.assign(n, 0);
  for (auto& v : barrier_arrivals) v.clear();
}

uint32_t* race_state::row(uint32_t t) {
  if (rows.size() != size_t(n) * n) rows.resize(size_t(n) * n);
  uint32_t* r = rows.data() + size_t(t) * n;
  if (!has_row[t]) std::memcpy(r, floor.data(), n * sizeof(uint32_t));
  has_row[t] = 1;
  return r;
}

std::vector<uint32_t> race_state::vector_of(uint32_t t) const {
  std::vector<uint32_t> v(known(t), known(t) + n);
  v[t] = own[t];
  return v;
}

void race_access(block_state& b, uint32_t tid, uint32_t clock, const uint32_t* known, const instruction* in,
                 uint32_t line, uint32_t offset, uint32_t bytes, bool write, const char* what) {
  race_state& r = *b.race;
  for (uint32_t i = 0; i < bytes; ++i) {
    shared_byte& s = r.shadow[offset + i];
    const bool after_write = s.write_clock == 0 || s.write_tid == tid || s.write_clock <= known[s.write_tid];
    const bool after_read = !write || s.read_clock == 0 || s.read_tid == tid || s.read_clock <= known[s.read_tid];
    if (!after_write || !after_read) {
      const bool with_write = !after_write;
      const uint32_t other = with_write ? s.write_tid : s.read_tid;
      const uint32_t other_line = with_write ? s.write_line : s.read_line;
      fail_launch(b, &b.threads[tid], in, cudaErrorLaunchFailure, "racecheck",
                  std::string("the ") + kind(write) + " of shared byte " + hex(offset + i) + " by " + what +
                      " at " + b.k.line_text(line) + " and the " + kind(with_write) + " of it by " +
                      thread_text(b, other) + " at " + b.k.line_text(other_line) +
                      " are not ordered by a bar.sync, an mbarrier phase or a bar.warp.sync");
    }
    if (write) {
      s.write_tid = static_cast<uint16_t>(tid);
      s.write_clock = clock;
      s.write_line = line;
      s.read_clock = 0;  // later accesses ordered after this write are ordered after those reads
    } else {
      s.read_tid = static_cast<uint16_t>(tid);
      s.read_clock = clock;
      s.read_line = line;
    }
  }
}

void race_access(block_state& b, const thread_state& t, const instruction& in, uint32_t offset, uint32_t bytes,
                 bool write, const char* what) {
  if (!b.race) return;
  race_access(b, t.linear, b.race->own[t.linear], b.race->known(t.linear), &in, in.line, offset, bytes, write, what);
}

void race_join(block_state& b, std::vector<uint32_t>& into, const uint32_t* from) {
  if (!b.race) return;
  if (into.size() != b.race->n) into.assign(b.race->n, 0);
  join_into(into.data(), from, b.race->n);
}

void race_release(block_state& b, thread_state& t, std::vector<uint32_t>& into) {
  if (!b.race) return;
  race_state& r = *b.race;
  race_join(b, into, r.known(t.linear));
  into[t.linear] = std::max(into[t.linear], r.own[t.linear]);
  ++r.own[t.linear];
}

void race_acquire(block_state& b, thread_state& t, const std::vector<uint32_t>& from) {
  if (!b.race || from.empty()) return;
  join_into(b.race->row(t.linear), from.data(), b.race->n);  // from[t] ≤ own[t]: nobody knows more of t
}

// The participants leave knowing J = the join of their vectors and `extra`. An entry of a vector
// never exceeds that thread's own clock, so J[p] = own[p] for a participant p. When every other
// thread has exited (they access nothing more), J becomes the floor and the rows go: O(n) for a
// whole-block barrier; otherwise each participant's row becomes J.
void race_synchronise(block_state& b, thread_state* const* threads, size_t count, const std::vector<uint32_t>* extra) {
  if (!b.race || count == 0) return;
  race_state& r = *b.race;
  std::vector<uint32_t> joined(r.n, 0);
  std::vector<uint8_t> participates(r.n, 0);
  bool any_on_floor = false;
  for (size_t i = 0; i < count; ++i) {
    if (!threads[i]) continue;
    const uint32_t p = threads[i]->linear;
    participates[p] = 1;
    if (r.has_row[p]) join_into(joined.data(), r.known(p), r.n);
    else any_on_floor = true;
  }
  if (any_on_floor) join_into(joined.data(), r.floor.data(), r.n);
  if (extra && !extra->empty()) join_into(joined.data(), extra->data(), r.n);
  bool whole_block = true;
  for (uint32_t u = 0; u < r.n; ++u) {
    if (participates[u]) joined[u] = std::max(joined[u], r.own[u]);
    else whole_block &= b.threads[u].state == thread_state::run::exited;
  }
  if (whole_block) {
    r.floor = std::move(joined);
    std::fill(r.has_row.begin(), r.has_row.end(), 0);
  } else {
    for (uint32_t p = 0; p < r.n; ++p)
      if (participates[p]) std::memcpy(r.row(p), joined.data(), r.n * sizeof(uint32_t));
  }
  for (uint32_t p = 0; p < r.n; ++p) r.own[p] += participates[p];
}

}  // namespace emu
