//! @file
//! Kernels of beam::device::compact. The pairs are split into units of S consecutive pairs,
//! one warp each. A unit counts its pairs per expert (warp::rank_by_expert) into the matrix
//! C[e][u]; each expert's row is scanned over the units and the expert totals over the
//! experts, so pair rows start at offsets[e] + Σ_{u' < u} C[e][u']; the unit then ranks its
//! pairs again from those rows: a stable counting sort with no atomics on rows. Small
//! problems run in one block, ranked by block::expert_ranking; large ones in four launches
//! (count, row scan, plan, scatter).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include <cub/block/block_scan.cuh>

#include "beam/core/launch.cuh"
#include "beam/core/warp.cuh"
#include "beam/permute/block_rank.cuh"
#include "beam/permute/device_compact.cuh"
#include "beam/permute/warp_rank.cuh"

namespace beam::detail {

constexpr int compact_unit_threads = 256;  //!< count / scatter kernels: one warp per unit
constexpr int compact_unit_warps = compact_unit_threads / 32;
constexpr int compact_single_threads = 512;  //!< the single-launch block, also the plan block
constexpr int compact_plan_threads = 512;    //!< ≥ max_compact_experts: one thread per expert
constexpr int64_t compact_min_unit_pairs = 256;
constexpr int64_t compact_max_units = 1024;

//! The routing and its split into units (host-computed, passed by value to the kernels).
struct compact_plan {
  const int32_t* topk_ids;
  int64_t pairs;  //!< P = T·K
  int num_experts, expert_begin, local_experts;
  const int32_t* expert_map;  //!< null: the range
  int zero_compute_experts;   //!< Z: ids [E, E + Z) have no rows and are valid
  int64_t unit_pairs;  //!< S: a multiple of 32
  int units;           //!< U = ⌈P/S⌉ (at least 1)

  explicit compact_plan(const device::compaction_input& in)
      : topk_ids(in.topk_ids),
        pairs(in.tokens * in.top_k),
        num_experts(in.num_experts),
        expert_begin(in.expert_begin),
        local_experts((in.expert_end < 0 ? in.num_experts : in.expert_end) - in.expert_begin),
        expert_map(in.expert_map),
        zero_compute_experts(in.zero_compute_experts) {
    const int64_t even = (pairs + compact_max_units - 1) / compact_max_units;
    unit_pairs = even > compact_min_unit_pairs ? (even + 31) / 32 * 32 : compact_min_unit_pairs;
    units = int(pairs > 0 ? (pairs + unit_pairs - 1) / unit_pairs : 1);
  }
  __host__ __device__ bool single_launch() const { return pairs <= device::single_launch_max_pairs; }
  //! Cells of the matrix C[e][u].
  __host__ __device__ int64_t cells() const { return int64_t(local_experts) * units; }
};

//! Local expert of id, or −1 (masked, another rank's, a zero-computation expert's, or invalid:
//! `invalid` says which; an expert_map value outside [−1, E_local) is invalid too).
__device__ inline int local_expert_of(int32_t id, const compact_plan& plan, bool& invalid) {
  invalid = id < -1 || id - plan.num_experts >= plan.zero_compute_experts;  // E + Z ≤ 2³¹ − 1: no overflow
  if (invalid || id < 0 || id >= plan.num_experts) return -1;
  if (plan.expert_map) {
    const int32_t e = __ldg(plan.expert_map + id);
    invalid = e < -1 || e >= plan.local_experts;
    return invalid ? -1 : e;
  }
  const int e = id - plan.expert_begin;  // no overflow for any id
  return e >= 0 && e < plan.local_experts ? e : -1;
}

//! Ranks unit u's pairs by expert in batches of 32 (whole warp): `visit(pair, expert, row)`
//! for every pair of the unit (expert −1 and row −1 for a skipped pair), where row is
//! `counters[e·stride]` at the pair's turn, which then grows. Returns the invalid ids seen.
template <class Visit>
__device__ unsigned long long rank_unit(const compact_plan& plan, int unit, int32_t* counters, int64_t stride,
                                        Visit&& visit) {
  const int lane = int(warp::lane_id());
  const int64_t begin = int64_t(unit) * plan.unit_pairs;
  const int64_t end = begin + plan.unit_pairs < plan.pairs ? begin + plan.unit_pairs : plan.pairs;
  unsigned long long invalid = 0;
  for (int64_t base = begin; base < end; base += 32) {
    const int64_t pair = base + lane;
    bool bad = false;
    const int e = pair < end ? local_expert_of(plan.topk_ids[pair], plan, bad) : -1;
    const int32_t row = warp::rank_by_expert(e, counters, stride);
    invalid += __popc(__ballot_sync(0xffffffffu, bad));
    if (pair < end) visit(pair, e, row);
  }
  return invalid;
}

//! Plan phase (one block of compact_plan_threads, thread e < E_local holding its expert's
//! `count`): counts, offsets (scan of the counts), the tile schedule, the vLLM layout's
//! blocks and padding, and DeepGEMM's masked_m. Leaves the offsets in `firsts[0, E_local]`
//! and writes `padded_offsets[e]` (expert e's first slot in the vLLM layout) for the scatter
//! phase.
__device__ inline void plan_phase(const compact_plan& plan, int32_t count, int32_t* firsts, int32_t* padded_offsets,
                                  const device::compaction_outputs& out, const device::compaction_layouts& layouts) {
  const device::tile_schedule& tiles = layouts.tiles;
  const device::aligned_layout& aligned = layouts.vllm;
  using block_scan = cub::BlockScan<int32_t, compact_plan_threads, cub::BLOCK_SCAN_WARP_SCANS>;  // no bank conflicts (raking has some)
  __shared__ typename block_scan::TempStorage scan_storage;
  __shared__ int32_t starts[compact_plan_threads];
  const int e = int(threadIdx.x), E = plan.local_experts;
  if (e >= E) count = 0;
  int32_t first = 0, total = 0;
  block_scan(scan_storage).ExclusiveSum(count, first, total);
  if (e < E) {
    out.counts[e] = count;
    out.offsets[e] = first;
    firsts[e] = first;
    if (layouts.deepgemm.max_m > 0) layouts.deepgemm.masked_m[e] = min(count, layouts.deepgemm.max_m);
  }
  if (e == 0) {
    out.offsets[E] = total;
    firsts[E] = total;
  }
  __syncthreads();  // firsts and scan_storage

  // Spreads `per_expert` consecutive items of each expert over the block:
  // write(item, expert, index inside the expert). Returns the number of items.
  const auto spread = [&](int32_t per_expert, auto&& write) {
    int32_t start = 0, items = 0;
    block_scan(scan_storage).ExclusiveSum(e < E ? per_expert : 0, start, items);
    if (e < E) starts[e] = start;
    __syncthreads();
    for (int64_t step = threadIdx.x; step < items; step += compact_plan_threads) {  // 64-bit: items may near 2³¹
      const auto i = int32_t(step);
      const int owner = last_start_at_or_below(starts, E, i);
      write(i, owner, i - starts[owner]);
    }
    __syncthreads();  // starts and scan_storage are reused
    return items;
  };
  if (tiles.block_rows > 0) {
    const int bm = tiles.block_rows;
    const int32_t n = spread(count / bm + (count % bm != 0), [&](int32_t i, int owner, int32_t j) {
      tiles.tile_experts[i] = owner;
      tiles.tile_rows[i] = firsts[owner] + j * bm;
    });
    if (threadIdx.x == 0) *tiles.num_tiles = n;
  }
  if (aligned.block_size > 0) {
    const int bs = aligned.block_size;
    const int32_t blocks = count / bs + (count % bs != 0);
    int32_t slot_start = 0;
    block_scan(scan_storage).ExclusiveSum(e < E ? blocks * bs : 0, slot_start);
    __syncthreads();
    if (e < E) {
      padded_offsets[e] = slot_start;  // read after the barriers in spread
      for (int32_t j = count; j < blocks * bs; ++j) aligned.sorted_token_ids[slot_start + j] = int32_t(plan.pairs);
    }
    const int32_t n = spread(blocks, [&](int32_t i, int owner, int32_t) { aligned.expert_ids[i] = owner; });
    if (threadIdx.x == 0) *aligned.num_tokens_post_padded = n * bs;
  }
}

//! Writes the outputs of pair `pair` with local expert e (−1: skipped) at row `row`.
__device__ inline void place_pair(const compact_plan& plan, int64_t pair, int e, int32_t row, const int32_t* firsts,
                                  const int32_t* padded_offsets, const device::compaction_outputs& out,
                                  const device::compaction_layouts& layouts) {
  const device::masked_layout& masked = layouts.deepgemm;
  out.pair_to_row[pair] = row;
  if (row < 0) {
    if (masked.max_m > 0) masked.pair_to_slot[pair] = -1;
    return;
  }
  out.sorted_pairs[row] = int32_t(pair);
  const int32_t j = row - firsts[e];  // index inside the expert
  if (layouts.vllm.block_size > 0) layouts.vllm.sorted_token_ids[padded_offsets[e] + j] = int32_t(pair);
  if (masked.max_m > 0) {
    if (j < masked.max_m) {
      const int32_t slot = e * masked.max_m + j;  // E_local·max_m ≤ INT32_MAX (checked)
      masked.pair_to_slot[pair] = slot;
      masked.slot_pairs[slot] = int32_t(pair);
    } else {
      masked.pair_to_slot[pair] = -1;  // an expert with more than max_m pairs: dropped
      if (masked.dropped_pairs) atomicAdd(masked.dropped_pairs, 1ull);
    }
  }
}

//! DeepGEMM padding: slot_pairs[e·max_m + j] = P for counts[e] ≤ j < max_m, one warp per
//! expert, warps first_warp, first_warp + warp_stride, ... (offsets: `[E_local + 1]`).
//! Costs E_local·max_m − n_kept writes.
__device__ inline void pad_masked_slots(const compact_plan& plan, const int32_t* offsets,
                                        const device::masked_layout& masked, int64_t first_warp, int64_t warp_stride) {
  if (masked.max_m == 0) return;
  for (int64_t e = first_warp; e < plan.local_experts; e += warp_stride) {
    int32_t* slots = masked.slot_pairs + e * masked.max_m;
    for (int64_t j = offsets[e + 1] - offsets[e] + int32_t(warp::lane_id()); j < masked.max_m; j += 32) {
      slots[j] = int32_t(plan.pairs);
    }
  }
}

__device__ inline void add_invalid(unsigned long long* invalid_ids, unsigned long long invalid) {
  if (invalid_ids && invalid && warp::lane_id() == 0) atomicAdd(invalid_ids, invalid);
}

constexpr int compact_block_items = int(device::single_launch_max_pairs / compact_single_threads);
static_assert(compact_block_items * compact_single_threads == device::single_launch_max_pairs, "every pair has an item");
static_assert(compact_single_threads == compact_plan_threads, "the plan phase runs in this block");
using compact_ranking = block::expert_ranking<compact_single_threads, compact_block_items, device::max_compact_experts>;

//! Every phase of compact in one block of compact_single_threads threads, for at most
//! single_launch_max_pairs pairs: thread t ranks the warp-striped pairs of
//! block::expert_ranking in `rank_storage` (the caller's shared memory, free again when this
//! returns). Called by every thread of the block. The status word of skipped ids is stored, not
//! added to: it needs no zeroing before.
__device__ inline void compact_in_block(const compact_plan& plan, const device::compaction_outputs& out,
                                        const device::compaction_layouts& layouts,
                                        compact_ranking::temp_storage& rank_storage) {
  constexpr int items = compact_block_items;
  __shared__ int32_t counts[device::max_compact_experts], firsts[device::max_compact_experts + 1],
      padded_offsets[device::max_compact_experts];
  __shared__ unsigned long long warp_invalid[compact_single_threads / 32];
  const int e = int(threadIdx.x), lane = int(warp::lane_id());
  const int64_t first_pair = int64_t(threadIdx.x / 32) * 32 * items + lane;  // warp-striped
  int experts[items];
  int32_t ranks[items];
  unsigned long long invalid = 0;
#pragma unroll
  for (int i = 0; i < items; ++i) {  // every id in flight before a ballot waits for one
    const int64_t pair = first_pair + 32 * i;
    experts[i] = pair < plan.pairs ? plan.topk_ids[pair] : -1;
  }
#pragma unroll
  for (int i = 0; i < items; ++i) {
    const int64_t pair = first_pair + 32 * i;
    bool bad = false;
    experts[i] = pair < plan.pairs ? local_expert_of(experts[i], plan, bad) : -1;
    invalid += __popc(__ballot_sync(0xffffffffu, bad));
  }
  if (lane == 0) warp_invalid[threadIdx.x / 32] = invalid;
  compact_ranking(rank_storage).rank(experts, ranks, plan.local_experts, counts);
  __syncthreads();
  if (out.invalid_ids && threadIdx.x == 0) {
    unsigned long long total = 0;
    for (int w = 0; w < compact_single_threads / 32; ++w) total += warp_invalid[w];
    *out.invalid_ids = total;
  }
  plan_phase(plan, e < plan.local_experts ? counts[e] : 0, firsts, padded_offsets, out, layouts);
#pragma unroll
  for (int i = 0; i < items; ++i) {
    const int64_t pair = first_pair + 32 * i;
    if (pair < plan.pairs) {
      place_pair(plan, pair, experts[i], experts[i] >= 0 ? firsts[experts[i]] + ranks[i] : -1, firsts, padded_offsets,
                 out, layouts);
    }
  }
  pad_masked_slots(plan, firsts, layouts.deepgemm, threadIdx.x / 32, compact_single_threads / 32);
}

template <int = 0>  // a template: one definition across translation units
__global__ void __launch_bounds__(compact_single_threads)
    compact_single_kernel(compact_plan plan, device::compaction_outputs out, device::compaction_layouts layouts) {
  wait_for_dependencies();  // the routing, the counts: the kernels before wrote them
  launch_dependents();
  __shared__ compact_ranking::temp_storage rank_storage;
  compact_in_block(plan, out, layouts, rank_storage);
}

//! Count phase: C[e][u] for one unit per warp.
template <int = 0>  // a template: one definition across translation units
__global__ void __launch_bounds__(compact_unit_threads)
    compact_count_kernel(compact_plan plan, int32_t* unit_counts, unsigned long long* invalid_ids) {
  wait_for_dependencies();  // the routing, the counts: the kernels before wrote them
  launch_dependents();
  __shared__ int32_t counters[compact_unit_warps][device::max_compact_experts];
  const int warp_index = int(threadIdx.x / 32), lane = int(warp::lane_id());
  const int unit = int(blockIdx.x) * compact_unit_warps + warp_index;
  if (unit >= plan.units) return;  // whole warps leave; no block barrier below
  int32_t* mine = counters[warp_index];
  for (int e = lane; e < plan.local_experts; e += 32) mine[e] = 0;
  __syncwarp();
  add_invalid(invalid_ids, rank_unit(plan, unit, mine, 1, [](int64_t, int, int32_t) {}));
  for (int e = lane; e < plan.local_experts; e += 32) unit_counts[int64_t(e) * plan.units + unit] = mine[e];
}

//! Row scan: C[e][u] becomes Σ_{u' < u} C[e][u'] in place, and totals[e] = Σ_u C[e][u];
//! one block per expert.
template <int = 0>  // a template: one definition across translation units
__global__ void __launch_bounds__(compact_unit_threads)
    compact_row_scan_kernel(compact_plan plan, int32_t* unit_counts, int32_t* totals) {
  wait_for_dependencies();  // the routing, the counts: the kernels before wrote them
  launch_dependents();
  constexpr int items = int(compact_max_units / compact_unit_threads);
  using block_scan = cub::BlockScan<int32_t, compact_unit_threads, cub::BLOCK_SCAN_WARP_SCANS>;  // no bank conflicts (raking has some)
  __shared__ typename block_scan::TempStorage scan_storage;
  int32_t* row = unit_counts + int64_t(blockIdx.x) * plan.units;
  const int first = int(threadIdx.x) * items;
  int32_t c[items], prefix[items], total = 0;
#pragma unroll
  for (int i = 0; i < items; ++i) c[i] = first + i < plan.units ? row[first + i] : 0;
  block_scan(scan_storage).ExclusiveSum(c, prefix, total);
#pragma unroll
  for (int i = 0; i < items; ++i) {
    if (first + i < plan.units) row[first + i] = prefix[i];
  }
  if (threadIdx.x == 0) totals[blockIdx.x] = total;
}

template <int = 0>  // a template: one definition across translation units
__global__ void __launch_bounds__(compact_plan_threads)
    compact_plan_kernel(compact_plan plan, const int32_t* totals, int32_t* padded_offsets,
                        device::compaction_outputs out, device::compaction_layouts layouts) {
  wait_for_dependencies();  // the routing, the counts: the kernels before wrote them
  launch_dependents();
  __shared__ int32_t firsts[device::max_compact_experts + 1];
  const int e = int(threadIdx.x);
  plan_phase(plan, e < plan.local_experts ? totals[e] : 0, firsts, padded_offsets, out, layouts);
}

//! Scatter phase: a unit's first rows are offsets[e] + its row-scanned C[e][u]; the whole
//! grid also pads the DeepGEMM slots.
template <int = 0>  // a template: one definition across translation units
__global__ void __launch_bounds__(compact_unit_threads)
    compact_scatter_kernel(compact_plan plan, const int32_t* unit_prefix, const int32_t* padded_offsets,
                           device::compaction_outputs out, device::compaction_layouts layouts) {
  wait_for_dependencies();  // the routing, the counts: the kernels before wrote them
  launch_dependents();
  __shared__ int32_t counters[compact_unit_warps][device::max_compact_experts];
  __shared__ int32_t firsts[device::max_compact_experts + 1];
  for (int e = int(threadIdx.x); e <= plan.local_experts; e += compact_unit_threads) firsts[e] = out.offsets[e];
  __syncthreads();
  pad_masked_slots(plan, firsts, layouts.deepgemm, int64_t(blockIdx.x) * compact_unit_warps + threadIdx.x / 32,
                   int64_t(gridDim.x) * compact_unit_warps);
  const int warp_index = int(threadIdx.x / 32), lane = int(warp::lane_id());
  const int unit = int(blockIdx.x) * compact_unit_warps + warp_index;
  if (unit >= plan.units) return;
  int32_t* mine = counters[warp_index];
  for (int e = lane; e < plan.local_experts; e += 32) mine[e] = firsts[e] + unit_prefix[int64_t(e) * plan.units + unit];
  __syncwarp();
  rank_unit(plan, unit, mine, 1, [&](int64_t pair, int e, int32_t row) {
    place_pair(plan, pair, e, row, firsts, padded_offsets, out, layouts);
  });
}

//! Workspace of compact: none for one launch (256 bytes, never touched); else the matrix
//! C[e][u], the expert totals and the vLLM padded offsets, 256-byte aligned. Depends only on
//! P and E_local (so the query needs no device), and never shrinks as P grows: the matrix
//! is sized for U ≤ min(⌈P/256⌉, 1024) units, a bound of U that grows with P.
struct compact_workspace {
  size_t matrix_bytes, per_expert_bytes, bytes;

  explicit compact_workspace(const compact_plan& plan)
      : matrix_bytes(workspace_align(size_t(plan.local_experts) * size_t(unit_bound(plan.pairs)) * sizeof(int32_t))),
        per_expert_bytes(workspace_align(size_t(plan.local_experts) * sizeof(int32_t))),
        bytes(plan.single_launch() ? 256 : matrix_bytes + 2 * per_expert_bytes) {}
  int32_t* unit_counts(void* w) const { return static_cast<int32_t*>(w); }
  int32_t* totals(void* w) const { return reinterpret_cast<int32_t*>(static_cast<char*>(w) + matrix_bytes); }
  int32_t* padded_offsets(void* w) const {
    return reinterpret_cast<int32_t*>(static_cast<char*>(w) + matrix_bytes + per_expert_bytes);
  }
  static int64_t unit_bound(int64_t pairs) {
    const int64_t units = (pairs + compact_min_unit_pairs - 1) / compact_min_unit_pairs;
    return units < compact_max_units ? units : compact_max_units;
  }
};

}  // namespace beam::detail
