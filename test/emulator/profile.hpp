// Traffic counters per kernel launch, counted as Nsight Compute counts them on a GPU: thread
// instructions by class, global requests and the 32-byte sectors they touch, the distinct
// sectors a launch reads and writes (its compulsory DRAM traffic, with an L2 that holds the
// launch's footprint), shared-memory requests and the wavefronts they need (bank conflicts),
// tensor-core multiply-adds and barrier waits.
//
// Off by default. On for a session between start() and stop(), and for the whole process when
// BEAM_EMULATOR_PROFILE names a file, to which each launch appends its record as one JSON
// line. While it is off, counting costs one branch per instruction.
//
// A request is one warp-level instruction: the n-th execution of an instruction by each lane
// of a warp forms the n-th request of that instruction (exact for converged code; lanes that
// diverge around an instruction are merged by execution count).
//
// Latency: the longest chain of dependent global-memory round trips along any thread's path
// (launch_record::round_trips), the latency a launch cannot hide however many warps it has.
// Levels count round trips; every thread starts at level 0, in PTX order:
//   - an instruction issues at the highest of its front and the levels of the registers it names
//     (a predicated-off one: of its guard); its results are ready at that level, and a global or
//     constant read that returns a value (ld, atom, the global side of cp.async and TMA) one
//     level later. Loads in flight do not wait for each other. A mov (a rename, packing or
//     unpacking that ptxas folds into its users) passes its operands' level on without waiting;
//   - a branch (taken or not) issues after everything before it: the front rises to the highest
//     level issued so far. So within straight-line code independent work overlaps, as an
//     optimising scheduler arranges it; across branches, execution is in order;
//   - cp.async data is ready at cp.async.wait_group / wait_all (the front rises to it); TMA data
//     and arrivals complete an mbarrier phase, whose waiters' predicate is ready at the phase's
//     latest level; a block barrier releases every thread at the level of the slowest; a warp
//     collective issues at the latest of its lanes;
//   - a chain ends at the last instruction that issues: a result nothing uses (a store's, a
//     reduction's, an atomic's whose value is dead, which ptxas makes a reduction) adds nothing.
// Shared memory, arithmetic and launch overhead count nothing: this is the dependent-latency
// term of a latency model (round trips × a measured latency), not a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace emu::profile {

//! What an executed instruction counts as.
enum class instruction_class : uint8_t {
  integer,          //!< integer and bit arithmetic, comparisons and selects on integers
  floating,         //!< arithmetic on f16, bf16, f32, f64 and the packed pairs
  conversion,       //!< cvt
  movement,         //!< mov, cvta
  memory,           //!< ld, st, atom, red, ldmatrix, cp.async, cp.async.bulk, prefetch
  tensor,           //!< mma, wgmma.mma_async
  warp,             //!< shfl, vote, match, redux, activemask, elect
  synchronisation,  //!< bar, barrier, membar, fence, mbarrier, cp.async and wgmma groups
  control,          //!< bra, ret, exit, trap
  count
};
const char* class_name(instruction_class c);

//! Global-memory requests of one kind: warp-level requests, the 32-byte sectors they touch
//! (summed over requests) and the distinct bytes their lanes asked for (sector efficiency =
//! bytes / (32 · sectors)).
struct global_requests {
  uint64_t requests = 0, sectors = 0, bytes = 0;
};

//! Shared-memory requests of one kind and the wavefronts they need. A request of w-byte
//! accesses is served in phases of min(32, 128 / w) lanes (ldmatrix: one 8 × 16-byte matrix per
//! phase); a phase needs as many wavefronts as the most distinct 4-byte words that fall in
//! one of the 32 banks (bank = word mod 32; lanes reading one word share it). Ideal: the
//! phase's distinct words / 32, rounded up; bank conflicts = wavefronts − ideal.
struct shared_requests {
  uint64_t requests = 0, wavefronts = 0, ideal_wavefronts = 0;
};

//! The requests of one memory instruction (a PTX line) of one kind, over the launch: where
//! sectors and wavefronts go.
struct line_requests {
  uint32_t line = 0;         //!< PTX line (nvcc --keep writes the module as *.ptx)
  const char* kind = "";     //!< the launch_record member it counts towards, e.g. "shared_load"
  uint64_t requests = 0;
  uint64_t sectors = 0, bytes = 0;               //!< global kinds
  uint64_t wavefronts = 0, ideal_wavefronts = 0;  //!< shared kinds
};

//! The counters of one launch.
struct launch_record {
  std::string kernel;  //!< mangled name
  unsigned grid[3] = {1, 1, 1}, block[3] = {1, 1, 1};
  size_t dynamic_shared_bytes = 0;
  uint64_t thread_instructions[size_t(instruction_class::count)] = {};  //!< executed (guard true)
  global_requests global_load;    //!< ld (global, const, generic resolving to global)
  global_requests global_store;   //!< st
  global_requests global_atomic;  //!< atom, red
  global_requests async_copy;     //!< cp.async: the global reads
  global_requests bulk_tensor;    //!< cp.async.bulk.tensor: one request per copy (its box, and
                                  //!< the tensor map when it lies in global memory)
  uint64_t distinct_read_sectors = 0;     //!< global and const sectors read before the launch wrote
                                          //!< them (atomics read and write)
  uint64_t distinct_written_sectors = 0;  //!< global sectors written
  shared_requests shared_load;    //!< ld.shared (also generic), ldmatrix
  shared_requests shared_store;   //!< st.shared, the shared writes of cp.async
  shared_requests shared_atomic;  //!< atom.shared, red.shared: a wavefront per lane in the
                                  //!< busiest bank (same-address atomics do not merge)
  uint64_t local_requests = 0;    //!< ld.local, st.local
  uint64_t tensor_macs = 0;       //!< multiply-adds issued to tensor cores (m·n·k per mma)
  uint64_t barrier_arrivals = 0;  //!< threads released from bar.sync / barrier / bar.red
  uint64_t barrier_releases = 0;  //!< block barriers released
  uint64_t mbarrier_waits = 0;    //!< mbarrier.try_wait executions
  uint64_t mbarrier_suspensions = 0;  //!< those that found their phase incomplete and waited
  std::vector<line_requests> lines;   //!< per memory instruction and kind, by PTX line
  bool programmatic = false;     //!< a programmatic dependent launch after a kernel on its stream
  uint32_t round_trips = 0;      //!< the longest chain of dependent global round trips (above)
  uint32_t round_trip_line = 0;  //!< PTX line of the instruction that ends that chain

  uint64_t warps() const {  //!< warps launched
    return uint64_t(grid[0]) * grid[1] * grid[2] * ((uint64_t(block[0]) * block[1] * block[2] + 31) / 32);
  }

  uint64_t distinct_bytes() const { return 32 * (distinct_read_sectors + distinct_written_sectors); }
};

//! Begins a session: the records and the session's sector maps start empty.
void start();
//! Ends the session and returns its launches' records, oldest first.
std::vector<launch_record> stop();

//! Memsets executed during the current or last session (stream operations that are no launch).
uint64_t memsets();

//! Sectors of [ptr, ptr + bytes) (device memory) that the launches of the current or last
//! session read / wrote, each sector counted once.
uint64_t sectors_read(const void* ptr, size_t bytes);
uint64_t sectors_written(const void* ptr, size_t bytes);

//! One record as a JSON object (one line).
std::string json(const launch_record& r);

}  // namespace emu::profile
