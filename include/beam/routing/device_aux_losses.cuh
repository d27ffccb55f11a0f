//! @file
//! Device-level auxiliary losses of BEAM training, forward values (formulas:
//! beam/reference/training.cuh; gradients: `route_backward`'s `aux_loss_terms`):
//!   L_reg = (1/(T·K)) Σ_t Σ_k σ(z_{t,c_tk})        (L1 on the mask probabilities)
//!   L_bal = E · Σ_e f_e · P_e,  f_e = #{slots with c = e}/(T·K),  P_e = (1/T) Σ_t softmax(r_t)_e
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "beam/routing/device_route.cuh"
#include "beam/routing/options.cuh"

namespace beam::device {

//! Outputs of `aux_losses`, all optional, in device memory.
struct aux_loss_outputs {
  float* l_reg = nullptr;              //!< L_reg (0 unless the rule is the mask)
  float* balance_loss = nullptr;       //!< L_bal
  float* balance_fractions = nullptr;  //!< f `[E]`: the input of route_backward's balance term
  float* mean_probs = nullptr;         //!< P `[E]`
};

//! Computes L_reg and L_bal (and f, P) of T routed tokens from the logits and the forward's
//! `candidate_ids` `[T, K]`. Float accumulation in a fixed order that depends only on T and
//! E (per-block partial sums, then one block), so equal inputs give bitwise equal outputs on
//! any GPU. Candidate ids outside [0, E) (empty slots) are skipped. T = 0 gives zeros.
//!
//! Two-phase workspace, as in CUB: with `workspace == nullptr` only `workspace_bytes` is set
//! (it grows with T and E, so a size queried for the largest T serves every smaller one).
//!
//! @tparam LogitT  float, __half or __nv_bfloat16
//! @return cudaErrorInvalidValue, writing nothing, when E, K or T are invalid as for
//!         route_and_mask; T > 0 and a null or narrow logit array that is needed (z only under
//!         the mask rule with `l_reg` requested) or null `candidate_ids`; `workspace_bytes` below
//!         the queried size; else the status of the launches.
template <class LogitT>
[[nodiscard]] cudaError_t aux_losses(void* workspace, size_t& workspace_bytes, const routing_logits<LogitT>& logits,
                                     int64_t tokens, int num_experts, const routing_options& options,
                                     const int32_t* candidate_ids, const aux_loss_outputs& out,
                                     cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/routing/detail/aux_losses_kernel.cuh"
#include "beam/routing/detail/dispatch.cuh"

namespace beam::device {

template <class LogitT>
cudaError_t aux_losses(void* workspace, size_t& workspace_bytes, const routing_logits<LogitT>& logits,
                       int64_t tokens, int num_experts, const routing_options& options,
                       const int32_t* candidate_ids, const aux_loss_outputs& out, cudaStream_t stream) {
  namespace bd = beam::detail;
  if (tokens < 0 || num_experts < 1 || num_experts > max_route_experts) return cudaErrorInvalidValue;
  if (options.top_k < 1 || options.top_k > max_route_top_k || options.top_k > num_experts) return cudaErrorInvalidValue;
  const bd::aux_loss_workspace layout(tokens, num_experts);
  if (workspace == nullptr) {
    workspace_bytes = layout.bytes;
    return cudaSuccess;
  }
  if (workspace_bytes < layout.bytes) return cudaErrorInvalidValue;
  const bool l_reg = uses_mask(options) && out.l_reg;
  if (tokens > 0) {
    if (!logits.router || logits.router_stride < num_experts || !candidate_ids) return cudaErrorInvalidValue;
    if (l_reg && (!logits.mask || logits.mask_stride < num_experts)) return cudaErrorInvalidValue;
  }
  if (tokens == 0) {
    for (float* scalar : {out.l_reg, out.balance_loss}) {
      if (!scalar) continue;
      if (const cudaError_t status = cudaMemsetAsync(scalar, 0, sizeof(float), stream); status != cudaSuccess) {
        return status;
      }
    }
    for (float* per_expert : {out.balance_fractions, out.mean_probs}) {
      if (!per_expert) continue;
      if (const cudaError_t status = cudaMemsetAsync(per_expert, 0, sizeof(float) * num_experts, stream);
          status != cudaSuccess) {
        return status;
      }
    }
    return cudaSuccess;
  }
  const bd::aux_loss_partials partials = layout.partials(workspace);
  const cudaError_t status = bd::dispatch_max_experts(num_experts, [&](auto max_experts) {
    return bd::launch_dependent(bd::aux_loss_partials_kernel<decltype(max_experts)::value, LogitT>, layout.blocks,
                                bd::aux_loss_block_threads, 0, stream, logits, tokens, num_experts, options.top_k,
                                l_reg, candidate_ids, partials);
  });
  if (status != cudaSuccess) return status;
  return bd::launch_dependent(bd::aux_loss_finish_kernel<>, 1, bd::aux_loss_finish_threads, 0, stream, partials,
                              layout.blocks, tokens, num_experts, options.top_k, out);
}

}  // namespace beam::device
