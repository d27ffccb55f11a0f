//! @file
//! Device-level expert placement for expert parallelism, between the routing and the
//! transport (NCCL's or DeepEP's all-to-all): `select_replicas` turns logical expert ids into
//! physical ones where EPLB replicates experts, and `dispatch_layout` counts what each rank
//! sends and receives. Masked pairs (−1) stay −1 and are neither counted nor sent: BEAM's mask
//! saves their bytes on the wire as well as their FLOPs. Formulas: beam/reference/permute.cuh.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/error.cuh"

namespace beam::device {

//! EPLB's replica table (vLLM's `logical_to_physical_map` and `logical_replica_count`), device
//! arrays: physical id j of logical expert e at `physical[e·max_replicas + j]`, j < counts[e].
struct replica_table {
  const int32_t* physical = nullptr;  //!< `[E_logical, max_replicas]`
  const int32_t* counts = nullptr;    //!< `[E_logical]`, each in [1, max_replicas]
  int max_replicas = 1;
};

//! physical_ids[p] = physical[e·R + (p mod counts[e])] for pair p = t·K + k with logical id
//! e = topk_ids[p] (vLLM's deterministic replica choice: the flat position modulo the replica
//! count); −1 (masked) stays −1; an id outside [−1, E_logical), or a replica count outside
//! [1, max_replicas], gives −2, which compact skips and counts as invalid. In place
//! (physical_ids == topk_ids) is allowed. One thread per pair. Capturable in a CUDA graph.
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K ∉ [1, 2³⁰], T·K > 2³¹ − 1,
//!         E_logical < 1, max_replicas < 1; T > 0 and a null array; else the launch's status.
[[nodiscard]] inline cudaError_t select_replicas(const int32_t* topk_ids, int64_t tokens, int top_k,
                                                 int num_logical_experts, const replica_table& replicas,
                                                 int32_t* physical_ids, cudaStream_t stream = nullptr);

//! What each rank's all-to-all needs, for experts placed in equal contiguous ranges over the
//! ranks (expert e on rank e / (E / R); with EPLB, over physical ids): the layout DeepEP's
//! `get_dispatch_layout` computes, and the send counts of an NCCL all-to-all.
struct dispatch_counts {
  int32_t* tokens_per_rank = nullptr;   //!< required `[R]`: tokens with a kept pair on rank r
  int32_t* pairs_per_expert = nullptr;  //!< optional `[E]`: kept pairs per expert (its rows there)
  uint8_t* token_in_rank = nullptr;     //!< optional `[T, R]`: 1 where token t goes to rank r, else 0
};

//! Counts the kept pairs of `topk_ids[T, K]` per rank and expert: tokens_per_rank[r] = #{t :
//! some k with topk_ids[t, k] on rank r}, pairs_per_expert[e] = #{(t, k) : topk_ids[t, k] = e}.
//! Masked pairs and ids outside [0, E) count nowhere. The counts are zeroed first (one memset
//! each), then one warp per token adds with one atomic per kept pair and per token-rank.
//! Capturable in a CUDA graph.
//! @return cudaErrorInvalidValue, writing nothing, when T < 0, K ∉ [1, 32], T·K > 2³¹ − 1, E < 1,
//!         R < 1 or E not a multiple of R; a null tokens_per_rank; T > 0 and null ids; else
//!         the status of the memsets and the launch.
[[nodiscard]] inline cudaError_t dispatch_layout(const int32_t* topk_ids, int64_t tokens, int top_k, int num_experts,
                                                 int num_ranks, const dispatch_counts& out,
                                                 cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/permute/detail/placement_kernels.cuh"

namespace beam::device {

inline cudaError_t select_replicas(const int32_t* topk_ids, int64_t tokens, int top_k, int num_logical_experts,
                                   const replica_table& replicas, int32_t* physical_ids, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (tokens < 0 || top_k < 1 || top_k > max_extent || tokens > INT32_MAX / top_k || num_logical_experts < 1 ||
      replicas.max_replicas < 1) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  if (!topk_ids || !replicas.physical || !replicas.counts || !physical_ids) return cudaErrorInvalidValue;
  const int64_t pairs = tokens * top_k;
  return bd::launch_dependent(bd::select_replicas_kernel<>, bd::thread_per_item_grid(pairs, bd::placement_threads),
                              bd::placement_threads, 0, stream, topk_ids, pairs, num_logical_experts, replicas,
                              physical_ids);
}

inline cudaError_t dispatch_layout(const int32_t* topk_ids, int64_t tokens, int top_k, int num_experts, int num_ranks,
                                   const dispatch_counts& out, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (tokens < 0 || top_k < 1 || top_k > 32 || tokens > INT32_MAX / top_k || num_experts < 1 || num_ranks < 1 ||
      num_experts % num_ranks != 0 || !out.tokens_per_rank) {
    return cudaErrorInvalidValue;
  }
  if (tokens > 0 && !topk_ids) return cudaErrorInvalidValue;
  if (cudaError_t status = cudaMemsetAsync(out.tokens_per_rank, 0, sizeof(int32_t) * size_t(num_ranks), stream);
      status != cudaSuccess) {
    return status;
  }
  if (out.pairs_per_expert) {
    if (cudaError_t status = cudaMemsetAsync(out.pairs_per_expert, 0, sizeof(int32_t) * size_t(num_experts), stream);
        status != cudaSuccess) {
      return status;
    }
  }
  if (tokens == 0) return cudaSuccess;
  return bd::launch_dependent(bd::dispatch_layout_kernel<>, bd::warp_per_item_grid(tokens, bd::placement_threads),
                              bd::placement_threads, 0, stream, topk_ids, tokens, top_k, num_experts, num_ranks, out);
}

}  // namespace beam::device
