//! @file
//! Device-level compaction of a routing into the permutation that the expert GEMMs read:
//! masked pairs get no row, experts with no rows get no tile. Formulas and the worked
//! example: beam/reference/permute.cuh, which it matches exactly.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace beam::device {

//! The routing to compact: `topk_ids[T, K]` (−1 = masked) over E experts, of which this rank
//! keeps (expert parallelism) either the range [expert_begin, expert_end) (−1 = E; local
//! expert e is global id expert_begin + e) or, with `expert_map`, the experts the map gives a
//! local id. Every output below uses local indices.
struct compaction_input {
  const int32_t* topk_ids = nullptr;
  int64_t tokens = 0;
  int top_k = 1;
  int num_experts = 1;
  int expert_begin = 0;
  int expert_end = -1;
  //! Optional device `[E]`: the local id in [0, E_local) of each global id, −1 for an expert
  //! of another rank (vLLM's `expert_map`; with EPLB replicas, over physical ids). With it,
  //! E_local = expert_end (expert_begin 0), and a pair whose map value is outside [−1, E_local)
  //! is skipped and counted as an invalid id.
  const int32_t* expert_map = nullptr;
  //! Z ≥ 0: ids [E, E + Z) name zero-computation experts (device::zero_compute_addends), which
  //! get no rows and are not invalid (nor looked up in the map).
  int zero_compute_experts = 0;
};

//! The permutation, with E_local = expert_end − expert_begin and P = T·K; every buffer is
//! sized by these static bounds, so no host synchronisation is needed.
struct compaction_outputs {
  int32_t* counts = nullptr;        //!< required `[E_local]`: rows per expert
  int32_t* offsets = nullptr;       //!< required `[E_local + 1]`: first row per expert; the
                                    //!< last element is n_active
  int32_t* sorted_pairs = nullptr;  //!< required `[P]`: pair t·K + k of each row (first
                                    //!< n_active valid), grouped by expert, token order inside
  int32_t* pair_to_row = nullptr;   //!< required `[P]`: row of each pair, −1 if skipped
  unsigned long long* invalid_ids = nullptr;  //!< optional status word: ids < −1 or ≥ E + Z,
                                              //!< skipped and counted (zeroed first)
};

//! Tile schedule of a grouped GEMM with tiles of `block_rows` rows: tile i covers rows
//! [tile_rows[i], min(tile_rows[i] + block_rows, offsets[e + 1])) of expert
//! e = tile_experts[i], tiles in expert order; `*num_tiles` tiles, at most ⌈P/BM⌉ + E_local.
struct tile_schedule {
  int block_rows = 0;              //!< BM; 0 leaves the schedule out
  int32_t* tile_experts = nullptr;
  int32_t* tile_rows = nullptr;
  int32_t* num_tiles = nullptr;
};

//! The layout of vLLM's `moe_align_block_size`, for its fused_moe kernel: each expert's pairs
//! padded to a multiple of `block_size` with the sentinel P; one expert id per block. Masked
//! pairs and experts with no pairs get no block. Bounds: P + E_local·(block_size − 1) slots,
//! that divided by block_size blocks.
struct aligned_layout {
  int block_size = 0;                       //!< 0 leaves the layout out
  int32_t* sorted_token_ids = nullptr;      //!< pair index per slot, or P for padding
  int32_t* expert_ids = nullptr;            //!< local expert of each block
  int32_t* num_tokens_post_padded = nullptr;  //!< slots used (a multiple of block_size)
};

//! The masked layout of DeepGEMM's `m_grouped_*_gemm_*_masked` kernels: `max_m` row slots
//! per expert, `[E_local, max_m]`, of which the first masked_m[e] hold expert e's pairs in
//! row order:
//!   slot_pairs[e·max_m + j] = sorted_pairs[offsets[e] + j]  for j < masked_m[e], else P
//!   masked_m[e]             = min(counts[e], max_m)
//!   pair_to_slot[p]         = e·max_m + j for the pair in that slot, else −1
//! `gather_slots` fills the GEMM input from slot_pairs, and `combine` reads the GEMM output
//! `[E_local·max_m, H]` through pair_to_slot. With distinct ids per token, counts[e] ≤ T, so
//! max_m = T drops nothing; pairs beyond max_m of their expert are dropped (no slot,
//! pair_to_slot −1) and counted.
struct masked_layout {
  int max_m = 0;                      //!< 0 leaves the layout out
  int32_t* slot_pairs = nullptr;      //!< `[E_local·max_m]`
  int32_t* masked_m = nullptr;        //!< `[E_local]`
  int32_t* pair_to_slot = nullptr;    //!< `[P]`
  unsigned long long* dropped_pairs = nullptr;  //!< optional status word (zeroed first)
};

//! The optional outputs of `compact` laid out for a grouped GEMM: ours, vLLM's, DeepGEMM's.
struct compaction_layouts {
  tile_schedule tiles;
  aligned_layout vllm;
  masked_layout deepgemm;
};

//! Largest E_local `compact` supports, and the largest P done in a single launch.
inline constexpr int max_compact_experts = 512;
inline constexpr int64_t single_launch_max_pairs = 4096;

//! Compacts a routing (counting sort by local expert, stable in pair order): counts,
//! offsets, sorted_pairs, pair_to_row, and optionally the invalid-id count and the layouts
//! (tile schedule, vLLM, DeepGEMM), all on the device. P ≤ 4096: one kernel launch (plus a
//! memset per status word requested); larger P: count, row-scan, plan and scatter kernels. No
//! host synchronisation; capturable in a CUDA graph; equal inputs give equal outputs.
//!
//! @code
//! // T = 4, K = 2, E = 3, topk_ids = {2, −1,  0, 2,  −1, −1,  1, 0}   (token 2 fully masked)
//! // counts = {2, 1, 2}, offsets = {0, 2, 3, 5}, sorted_pairs = {2, 7, 6, 0, 3}
//! // pair_to_row = {3, −1, 0, 4, −1, −1, 2, 1}: pairs 1, 4, 5 cost no row
//! // tiles (BM = 2): experts {0, 1, 2}, rows {0, 2, 3}, num_tiles = 3
//! // DeepGEMM (max_m = 4): masked_m = {2, 1, 2}, slot_pairs = {2, 7, 8, 8,  6, 8, 8, 8,  0, 3, 8, 8}
//! @endcode
//!
//! Two-phase workspace, as in CUB: with `workspace == nullptr` only `workspace_bytes` is set
//! (it grows with P, so a size queried for the largest T serves every smaller one); a query
//! checks only the sizes, and its arrays may be null.
//!
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K < 1, T·K > INT32_MAX,
//!         E < 1, Z < 0 or E + Z > INT32_MAX, the local range is not within [0, E] or E_local ∉ [1, 512], an expert_map with
//!         expert_begin ≠ 0; (not a query) a null counts,
//!         offsets, or array of a requested schedule or layout (pair_to_slot only when
//!         T > 0); T > 0 and a null topk_ids, sorted_pairs or pair_to_row;
//!         block_rows, block_size or max_m < 0; P + E_local·(block_size − 1) or
//!         E_local·max_m > INT32_MAX;
//!         `workspace_bytes` below the queried size; else the status of the launches.
//!         T = 0: counts and offsets become 0 (and the layouts empty).
[[nodiscard]] inline cudaError_t compact(void* workspace, size_t& workspace_bytes, const compaction_input& in,
                                         const compaction_outputs& out, const compaction_layouts& layouts = {},
                                         cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/permute/detail/compact_kernels.cuh"

namespace beam::device {

namespace detail {

//! The sizes: all that a workspace query checks.
inline cudaError_t check_compact_sizes(const compaction_input& in, const compaction_layouts& layouts) {
  const tile_schedule& tiles = layouts.tiles;
  const aligned_layout& aligned = layouts.vllm;
  const masked_layout& masked = layouts.deepgemm;
  const int end = in.expert_end < 0 ? in.num_experts : in.expert_end;
  if (in.tokens < 0 || in.top_k < 1 || in.tokens > INT32_MAX / in.top_k || in.num_experts < 1) {
    return cudaErrorInvalidValue;
  }
  if (in.zero_compute_experts < 0 || in.zero_compute_experts > INT32_MAX - in.num_experts) return cudaErrorInvalidValue;
  if (in.expert_begin < 0 || end > in.num_experts || end - in.expert_begin < 1 ||
      end - in.expert_begin > max_compact_experts || (in.expert_map && in.expert_begin != 0)) {
    return cudaErrorInvalidValue;
  }
  if (tiles.block_rows < 0 || aligned.block_size < 0 || masked.max_m < 0) return cudaErrorInvalidValue;
  if (int64_t(end - in.expert_begin) * masked.max_m > INT32_MAX) return cudaErrorInvalidValue;  // slot numbers
  if (aligned.block_size > 0 &&  // the padded slots must fit int32
      in.tokens * in.top_k + int64_t(end - in.expert_begin) * (aligned.block_size - 1) > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

//! The arrays of a run (after check_compact_sizes).
inline cudaError_t check_compact_arrays(const compaction_input& in, const compaction_outputs& out,
                                        const compaction_layouts& layouts) {
  const tile_schedule& tiles = layouts.tiles;
  const aligned_layout& aligned = layouts.vllm;
  const masked_layout& masked = layouts.deepgemm;
  if (!out.counts || !out.offsets) return cudaErrorInvalidValue;
  if (tiles.block_rows > 0 && (!tiles.tile_experts || !tiles.tile_rows || !tiles.num_tiles)) {
    return cudaErrorInvalidValue;
  }
  if (aligned.block_size > 0 &&
      (!aligned.sorted_token_ids || !aligned.expert_ids || !aligned.num_tokens_post_padded)) {
    return cudaErrorInvalidValue;
  }
  if (masked.max_m > 0 && (!masked.slot_pairs || !masked.masked_m || (in.tokens > 0 && !masked.pair_to_slot))) {
    return cudaErrorInvalidValue;
  }
  if (in.tokens > 0 && (!in.topk_ids || !out.sorted_pairs || !out.pair_to_row)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace detail

inline cudaError_t compact(void* workspace, size_t& workspace_bytes, const compaction_input& in,
                           const compaction_outputs& out, const compaction_layouts& layouts, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (const cudaError_t status = detail::check_compact_sizes(in, layouts); status != cudaSuccess) return status;
  const bd::compact_plan plan(in);
  const bd::compact_workspace layout(plan);
  if (workspace == nullptr) {  // a query: the sizes suffice
    workspace_bytes = layout.bytes;
    return cudaSuccess;
  }
  if (const cudaError_t status = detail::check_compact_arrays(in, out, layouts); status != cudaSuccess) return status;
  if (workspace_bytes < layout.bytes) return cudaErrorInvalidValue;
  // The status words are counted with atomics; the one-launch path stores invalid_ids itself.
  for (unsigned long long* word : {plan.single_launch() ? nullptr : out.invalid_ids, layouts.deepgemm.dropped_pairs}) {
    if (!word) continue;
    if (const cudaError_t status = cudaMemsetAsync(word, 0, sizeof(unsigned long long), stream);
        status != cudaSuccess) {
      return status;
    }
  }
  if (plan.single_launch()) {
    return bd::launch_dependent(bd::compact_single_kernel<>, 1, bd::compact_single_threads, 0, stream, plan, out,
                                layouts);
  }
  int32_t* unit_counts = layout.unit_counts(workspace);
  int32_t* totals = layout.totals(workspace);
  int32_t* padded_offsets = layout.padded_offsets(workspace);
  const unsigned unit_blocks = unsigned((plan.units + bd::compact_unit_warps - 1) / bd::compact_unit_warps);
  cudaError_t status = bd::launch_dependent(bd::compact_count_kernel<>, unit_blocks, bd::compact_unit_threads, 0,
                                            stream, plan, unit_counts, out.invalid_ids);
  if (status == cudaSuccess) {
    status = bd::launch_dependent(bd::compact_row_scan_kernel<>, unsigned(plan.local_experts),
                                  bd::compact_unit_threads, 0, stream, plan, unit_counts, totals);
  }
  if (status == cudaSuccess) {
    status = bd::launch_dependent(bd::compact_plan_kernel<>, 1, bd::compact_plan_threads, 0, stream, plan,
                                  totals, padded_offsets, out, layouts);
  }
  if (status == cudaSuccess) {
    status = bd::launch_dependent(bd::compact_scatter_kernel<>, unit_blocks, bd::compact_unit_threads, 0, stream,
                                  plan, unit_counts, padded_offsets, out, layouts);
  }
  return status;
}

}  // namespace beam::device
