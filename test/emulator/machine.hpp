// Execution state of one block and its threads, operand access, checked memory access and
// the diagnostics that end a launch.
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "profile.hpp"
#include "ptx.hpp"

namespace emu {

//! The payload of bar.sync / barrier.sync, bar.red and bar.arrive (warp.cpp), which the scheduler
//! reads when it releases a barrier: bar.red's reduction of the threads' predicates.
enum class barrier_reduction : uint8_t { none, popc, all, any };
struct barrier_payload {
  barrier_reduction reduction;
};

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
  uint32_t ready = 0;  //!< profiling: the round-trip level its data lands at
};

//! One wgmma.mma_async's results for one thread: accumulator register slots and the values
//! they receive when its group completes (wgmma.wait_group).
struct pending_accumulators {
  std::vector<std::pair<int32_t, uint64_t>> writes;
  uint32_t line = 0;  //!< PTX line of its first wgmma.mma_async
  std::vector<uint32_t> operand_reads;  //!< racecheck, lane 0 of the warp: shared addresses of the
                                        //!< operands' 16-byte K chunks, read as of the retiring wait
};

//! A call in progress (control.cpp): where it returns to, and the caller's frame.
struct call_frame {
  uint32_t return_pc;  //!< the instruction after the call
  uint32_t function;   //!< the callee, in kernel::functions
  uint32_t caller_frame, caller_top;
  size_t saved;        //!< where the callee's registers as of the call begin in saved_registers
};

struct thread_state {
  enum class run : uint8_t { ready, waiting, exited };
  // What the scheduler reads of every lane first: one cache line.
  uint64_t* r = nullptr;        //!< its lane's register slot 0 (reg: slots are 32 words apart)
  uint32_t pc = 0;
  run state = run::ready;
  uint32_t wait_mask = 0;       //!< member mask of the collective it waits at
  uint8_t* stack = nullptr;     //!< local memory: the frames of the entry and of the functions it calls
  uint32_t frame = 0;           //!< the current frame's offset in `stack`: .local addresses are relative to it
  uint32_t stack_top = 0;       //!< the end of the current frame
  std::vector<call_frame> calls;          //!< innermost last
  std::vector<uint64_t> saved_registers;  //!< each callee's register slots as they were at its call
  std::vector<uint32_t> saved_ready;      //!< profiling: their levels
  uint32_t tid[3] = {0, 0, 0};
  uint32_t linear = 0, lane = 0, warp = 0;
  uint32_t barrier = 0;         //!< barrier id it waits at
  uint32_t barrier_count = 0;   //!< thread count expected at that barrier (0: whole block)
  uint32_t reduction = 0;       //!< bar.red operand
  uint32_t carry = 0;           //!< CC.CF of the extended-precision arithmetic (add.cc, addc, ...)
  std::vector<async_copy> copies;       //!< issued cp.async copies, oldest first
  std::vector<size_t> group_ends;       //!< committed groups: end index into `copies`
  uint32_t mbarrier = 0;                //!< shared offset of the mbarrier a try_wait waits on
  uint32_t mbarrier_phase = 0;          //!< the completed-phase count that ends that wait
  uint32_t timed_out_pc = UINT32_MAX;   //!< the try_wait whose time limit last expired in it
  std::vector<pending_accumulators> wgmma_groups;  //!< in flight, oldest first
  bool wgmma_open = false;              //!< the last group is not yet committed
  std::vector<uint64_t> wgmma_latest;   //!< per register slot: its newest in-flight value
  std::vector<uint16_t> wgmma_writes;   //!< per register slot: in-flight writes (0: none)
  uint32_t wgmma_in_flight = 0;         //!< register writes in flight (all groups)
  uint64_t serial = 0;                  //!< profiling: instructions this thread has reached
  bool dependencies_resolved = false;   //!< past griddepcontrol.wait (programmatic dependent launch)
  // Profiling, the dependent round trips (profile.hpp, launch_record::round_trips): levels count
  // global-memory round trips from the launch's start.
  uint32_t* ready = nullptr;  //!< per register slot: the level its value is ready at
  uint32_t front = 0;         //!< no instruction issues below it (branches and waits passed)
  uint32_t block_issue = 0;   //!< the highest issue level since the last branch or wait
  uint32_t issue = 0;         //!< the current instruction's issue level
  uint32_t result = 0;        //!< the level its results are ready at
};

//! A pending TMA copy: the box's bytes, read from global memory at issue, landing in shared
//! memory with their complete_tx on `mbarrier` when the scheduler delivers them. Chunk c (16
//! bytes) of the dense box goes to swizzle(destination + 16c).
struct bulk_copy {
  uint32_t mbarrier = 0;
  uint32_t destination = 0;   //!< shared offset of the box
  uint32_t swizzle_bits = 0;  //!< b of the Swizzle<b,4,3> pattern: 0 none, 1 32B, 2 64B, 3 128B
  uint32_t issuer = 0;        //!< linear id of the issuing thread
  uint32_t line = 0;          //!< PTX line of the copy
  std::vector<uint8_t> box;
  std::vector<uint32_t> issuer_clocks;  //!< racecheck: the issuer's clock vector at the issue
  uint32_t ready = 0;         //!< profiling: the round-trip level the box lands at
};

//! racecheck's record of one shared-memory byte: its last write and last read.
struct shared_byte {
  uint32_t write_clock = 0, write_line = 0, read_clock = 0, read_line = 0;  //!< clock 0: none
  uint16_t write_tid = 0, read_tid = 0;
};

//! racecheck's state of a block (race.cpp): a clock vector per thread, kept lazily, and a record
//! per shared byte. Thread t's vector V_t has V_t[t] = own[t]; its other entries are its row
//! where it has one, else `floor`, what the last barrier of the whole block published to every
//! thread (a whole-block barrier is O(n); a row is made when a thread learns more than the floor:
//! an mbarrier phase, a warp barrier, a barrier of part of the block).
struct race_state {
  uint32_t n = 0;                  //!< threads of the block
  std::vector<uint32_t> own;       //!< own[t] = V_t[t], t's clock
  std::vector<uint32_t> floor;     //!< V_t[u] (u ≠ t) of every thread t without a row
  std::vector<uint32_t> rows;      //!< n × n (made on first use): row t where has_row[t]
  std::vector<uint8_t> has_row;
  std::vector<shared_byte> shadow;
  std::vector<uint32_t> barrier_arrivals[16];  //!< released by bar.arrive towards each barrier
  void begin_block(uint32_t thread_count, size_t shared_bytes);
  //! V_t but for its entry t (read own[t] for that).
  const uint32_t* known(uint32_t t) const { return has_row[t] ? rows.data() + size_t(t) * n : floor.data(); }
  //! t's row, made from the floor if it has none.
  uint32_t* row(uint32_t t);
  //! V_t whole, own entry included.
  std::vector<uint32_t> vector_of(uint32_t t) const;
};

//! An mbarrier object (PTX ISA §9.7.13.15): its phase, pending and expected arrival counts and
//! pending transaction bytes. Kept beside shared memory, keyed by its shared offset.
struct mbarrier_state {
  uint32_t expected = 0;   //!< arrivals per phase (the init count)
  uint32_t pending = 0;    //!< arrivals still missing in the current phase
  int64_t tx = 0;          //!< transaction bytes expected and not yet completed (may be < 0)
  uint32_t phase = 0;      //!< completed phases; the current phase's parity is phase & 1
  uint32_t offset = 0;     //!< its shared-memory offset
  uint32_t init_line = 0;  //!< PTX line of its mbarrier.init
  std::vector<uint32_t> arrived;    //!< racecheck: released into the current phase
  std::vector<uint32_t> completed;  //!< racecheck: released into the last completed phase
  uint32_t level = 0;            //!< profiling: latest arrival or landing level in the current phase
  uint32_t completed_level = 0;  //!< profiling: the level at which the last phase completed
};

//! Generic-address windows for shared, local and kernel-parameter memory (reserved, never
//! mapped, so that no allocation can overlap them). Generic address = base + offset in that
//! space (cvta.param: the address of a __grid_constant__ parameter).
struct address_windows {
  uint64_t shared_base, shared_size, local_base, local_size, param_base, param_size;
};
const address_windows& windows();

//! A live device allocation and the bytes written since cudaMalloc (by copies, memsets,
//! module initialisers and kernel stores), for initcheck.
struct allocation {
  uint64_t begin = 0, end = 0;
  std::vector<uint64_t> written;  //!< one bit per byte
  //! Profiling: one bit per 32-byte sector read / written by the current launch (valid when
  //! `launch_epoch` is the launch's) and by the session.
  std::vector<uint64_t> launch_read, launch_written, session_read, session_written;
  uint64_t launch_epoch = 0, session_epoch = 0;
  //! Programmatic dependent launch: one bit per byte that launch `kernel_writer[i]` stored, for
  //! the two latest launches that stored here (i = launch id mod 2).
  std::vector<uint64_t> kernel_written[2];
  uint64_t kernel_writer[2] = {0, 0};
  void mark_written(uint64_t address, uint64_t bytes);
  //! Records a store of launch `id` (a kernel's, not a copy's or memset's).
  void mark_kernel_written(uint64_t id, uint64_t address, uint64_t bytes);
  //! The first byte of [address, address + bytes) that launch `id` stored, or 0.
  uint64_t first_kernel_written(uint64_t id, uint64_t address, uint64_t bytes) const;
  //! The first byte of [address, address + bytes) never written, or 0.
  uint64_t first_unwritten(uint64_t address, uint64_t bytes) const;
};

//! The allocation that contains [address, address + bytes), or null.
allocation* find_allocation(uint64_t address, uint64_t bytes);

//! How a memory instruction accesses memory (instruction::memory_kind), for the profile.
enum class memory_kind : uint8_t { none, load, store, atomic, async_copy, bulk_tensor };

//! One lane's access within a warp-level request.
struct lane_access {
  uint64_t address;
  uint32_t bytes;
  uint32_t lane;
};

//! The requests of one instruction in one warp, of one kind (profile.cpp): the n-th execution
//! by each lane joins request n.
struct profile_site {
  uint32_t executions[32] = {};
  uint64_t last_serial[32] = {};
  std::vector<std::vector<lane_access>> requests;
};

//! A profiled launch: its record, the allocations it touched.
struct profile_launch {
  profile::launch_record record;
  std::map<uint64_t, profile::line_requests> lines;  //!< by pc · kinds + kind
  std::vector<allocation*> touched;
  uint64_t epoch = 0;
};

struct block_state {
  const kernel& k;
  const launch_params& launch;
  uint32_t ctaid[3] = {0, 0, 0};
  uint8_t* params = nullptr;    //!< the launch's parameter buffer
  size_t param_bytes = 0;
  size_t stack_bytes = 0;       //!< each thread's local memory
  std::vector<uint8_t> shared;  //!< static + dynamic shared memory
  size_t dynamic_shared = 0;
  std::vector<thread_state> threads;
  std::vector<thread_state*> thread_pointers;  //!< &threads[i], null past them to whole warps: collectives' lanes
  uint32_t thread_count = 0, warp_count = 0;
  allocation* cached = nullptr;  //!< last global allocation hit
  uint64_t* budget = nullptr;   //!< instructions left before the watchdog fires
  uint32_t arrivals[16] = {};   //!< bar.arrive arrivals counted towards each barrier's next release
  std::map<uint32_t, mbarrier_state> mbarriers;  //!< initialised mbarrier objects by shared offset
  std::vector<bulk_copy> bulk_copies;            //!< TMA copies issued and not yet landed
  race_state* race = nullptr;   //!< racecheck, when on
  profile_launch* profile = nullptr;  //!< the counters, when profiling
  std::unordered_map<uint64_t, profile_site> profile_sites;  //!< the block's request sites, when profiling
  uint64_t sync_events = 0;     //!< mbarrier state changes and block-barrier releases so far
  uint64_t timed_out_at = UINT64_MAX;  //!< sync_events when try_waits last timed out
  uint64_t grid_workspace = 0;  //!< a cooperative launch's, else 0 (%envreg1:%envreg2)
  uint64_t stores = 0;          //!< accesses that may have written memory (stores, atomics, copies)
  std::vector<uint32_t> served;  //!< per warp: lanes whose group used up its slice (scheduler.cpp)
  uint32_t converged = 0;       //!< the lanes executing the current instruction together (activemask)
  bool yield = false;           //!< a lane waits by polling (a failing test_wait, nanosleep): its group gives way

  block_state(const kernel& kern, const launch_params& lp) : k(kern), launch(lp) {}
};

//! Prints `beam emulator: <check>: kernel K block (x,y,z) thread (x,y,z) line N: <detail>` on
//! stderr and ends the launch with `error`.
[[noreturn]] void fail_launch(const block_state& b, const thread_state* t, const instruction* in,
                              cudaError_t error, const char* check, const std::string& detail);

//! "0x…" for diagnostics.
std::string hex(uint64_t v);
//! "(x,y,z)" for diagnostics.
std::string dim_text(const uint32_t v[3]);

//! Thread-instructions a launch may run before the watchdog fires (BEAM_EMULATOR_WATCHDOG).
uint64_t watchdog_limit();
//! Runs a block's threads to completion (scheduler.cpp); a failing check throws launch_failure.
void run_block(block_state& b);
//! Runs a cooperative grid to completion: every block resident, interleaved pass by pass.
void run_grid(std::vector<std::unique_ptr<block_state>>& blocks);

uint64_t special_value(const block_state& b, const thread_state& t, special s);

//! Register `slot` of thread t. Registers lie per warp, register-major (structure of arrays): slot x
//! of lane l at x * 32 + l of the warp's slab, so that the lanes of a warp executing an instruction
//! together touch adjacent words; thread_state::r points at its lane's slot 0.
inline uint64_t& reg(const thread_state& t, int32_t slot) { return t.r[size_t(slot) * 32]; }

inline uint64_t value(const block_state& b, const thread_state& t, const operand& o) {
  switch (o.k) {
    case operand::kind::reg: return reg(t, o.reg);
    case operand::kind::imm: return o.imm;
    case operand::kind::special: return special_value(b, t, o.sreg);
    default: return 0;
  }
}
inline bool predicate(const block_state& b, const thread_state& t, const operand& o) {
  return (value(b, t, o) != 0) != o.negate;
}
inline void set(thread_state& t, const operand& o, uint64_t v) {
  if (o.k == operand::kind::reg) reg(t, o.reg) = v;
}

//! The `bytes` (1, 2, 4 or 8) bytes at p, little-endian, zero-extended; fixed-size copies, which
//! compile to one move each.
inline uint64_t load_bytes(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  switch (bytes) {
    case 1: v = *p; break;
    case 2: std::memcpy(&v, p, 2); break;
    case 4: std::memcpy(&v, p, 4); break;
    default: std::memcpy(&v, p, 8); break;
  }
  return v;
}
//! Stores the low `bytes` (1, 2, 4 or 8) bytes of v at p.
inline void store_bytes(uint8_t* p, uint64_t v, int bytes) {
  switch (bytes) {
    case 1: *p = static_cast<uint8_t>(v); break;
    case 2: std::memcpy(p, &v, 2); break;
    case 4: std::memcpy(p, &v, 4); break;
    default: std::memcpy(p, &v, 8); break;
  }
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

//! A warp collective that needs every lane of the warp (wgmma, wmma): a collective mismatch otherwise.
void require_full_warp(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in);

//! Host pointer for an access of `bytes` at `address` in `s`, after the bounds and alignment
//! checks (alignment: `align` bytes). Reports and ends the launch when a check fails.
uint8_t* access(block_state& b, thread_state& t, const instruction& in, space s, uint64_t address,
                uint32_t bytes, uint32_t align, bool write);

//! The address an operand of kind::address denotes (base register + offset).
inline uint64_t address_of(const thread_state& t, const operand& o) {
  return (o.reg >= 0 ? reg(t, o.reg) : 0) + o.imm;
}

//! Completes the thread's cp.async groups except the newest `keep` committed ones (and, when
//! `keep` is 0, every copy not yet committed too, as cp.async.wait_all). Returns the latest
//! round-trip level at which a completed copy lands (profiling).
uint32_t complete_async_copies(block_state& b, thread_state& t, const instruction& in, size_t keep, bool include_uncommitted);

//! The mbarrier at shared offset `offset`, or a synccheck report naming the instruction.
mbarrier_state& find_mbarrier(block_state& b, thread_state& t, const instruction& in, uint32_t offset);

//! One arrive-on operation of `count` arrivals (and `tx` more expected bytes first): completes
//! the phase when no arrival and no byte is pending.
void mbarrier_arrive(block_state& b, thread_state& t, const instruction& in, mbarrier_state& m, uint32_t count,
                     int64_t tx);

//! Lands the pending TMA copies on `offset` (every one when `offset` is UINT32_MAX): writes
//! their bytes and completes their transaction bytes. True if any landed.
bool land_bulk_copies(block_state& b, uint32_t offset);

//! racecheck (race.cpp; each a no-op when it is off). An access of `bytes` shared bytes at
//! `offset` by `t` now (`what`: "this thread", "this thread's cp.async copy", ...), checked and
//! recorded.
void race_access(block_state& b, const thread_state& t, const instruction& in, uint32_t offset, uint32_t bytes,
                 bool write, const char* what);
//! The same by thread `tid` at `clock`, knowing `known` (a TMA box lands as of its issue).
void race_access(block_state& b, uint32_t tid, uint32_t clock, const uint32_t* known, const instruction* in,
                 uint32_t line, uint32_t offset, uint32_t bytes, bool write, const char* what);
//! into = max(into, from), entry by entry (sized to the block first).
void race_join(block_state& b, std::vector<uint32_t>& into, const uint32_t* from);
//! t releases what it knows into `into` (an mbarrier phase, a bar.arrive); its clock advances.
void race_release(block_state& b, thread_state& t, std::vector<uint32_t>& into);
//! t acquires what was released into `from` (a completed phase).
void race_acquire(block_state& b, thread_state& t, const std::vector<uint32_t>& from);
//! The threads (null entries skipped) leave a barrier knowing what all of them (and `extra`)
//! knew; their clocks advance.
void race_synchronise(block_state& b, thread_state* const* threads, size_t count, const std::vector<uint32_t>* extra);

//! Whether the mbarrier.try_wait thread `t` waits at has seen its phase complete (then its
//! predicate is set).
bool mbarrier_wait_done(block_state& b, thread_state& t);

//! Profiling (profile.cpp). The profile of a launch about to run, or null when profiling is off.
profile_launch* profile_launch_begin(const kernel& k, const launch_params& lp);
//! Folds the block's requests into the launch's counters.
void profile_block_end(block_state& b);
//! Completes the launch's record (distinct sectors) and hands it to the session and the
//! BEAM_EMULATOR_PROFILE file; a failed launch is dropped. The caller owns and frees `p`.
void profile_launch_end(profile_launch* p, bool succeeded);
//! One access of `bytes` at `address` in the resolved space `s` (a: its allocation for global
//! and const memory) by `t` executing `in`.
void profile_access(block_state& b, thread_state& t, const instruction& in, space s, allocation* a,
                    uint64_t address, uint32_t bytes, bool write);
//! An executed instruction.
inline void profile_instruction(block_state& b, thread_state& t, const instruction& in) {
  ++t.serial;
  ++b.profile->record.thread_instructions[in.klass];
}

//! Profiling, the longest chain of dependent round trips (profile.cpp). `t` issues `in`: at its
//! front, once the registers it names are ready (when it `executes`; a predicated-off
//! instruction waits for its guard alone).
void latency_issue(block_state& b, thread_state& t, const instruction& in, bool executes);
//! `in`'s results are ready at t.result; a branch is a front for what follows.
void latency_retire(block_state& b, thread_state& t, const instruction& in);
//! t waits (a branch, a barrier, cp.async.wait_*): nothing after it issues below `level` or
//! below what issued before it.
void latency_wait(block_state& b, thread_state& t, const instruction& in, uint32_t level);
//! The threads of a warp collective (`wait`: of a block barrier, which also waits for what each
//! issued before) go on together, at the level of the latest.
void latency_join(block_state& b, thread_state* const* threads, size_t count, bool wait);

//! Reports an instruction that names a wgmma accumulator still in flight in `t`.
void check_accumulators(block_state& b, thread_state& t, const instruction& in);

}  // namespace emu
