//! @file
//! Kernels of beam::device::aux_losses: per-block partial sums over a fixed token range, then
//! one block that adds the partials in block order (deterministic for given T and E).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include <cub/block/block_reduce.cuh>

#include "beam/core/launch.cuh"
#include "beam/core/math.cuh"
#include "beam/core/warp.cuh"
#include "beam/routing/device_aux_losses.cuh"
#include "beam/routing/detail/warp_scores.cuh"

namespace beam::detail {

constexpr int aux_loss_block_threads = 128;
constexpr int aux_loss_finish_threads = 512;  // ≥ max_route_experts: one thread per expert
constexpr int64_t aux_loss_tokens_per_block = 64;
constexpr int64_t aux_loss_max_blocks = 512;

//! Per-block partial sums: Σ softmax(r)_e, candidate counts, Σ σ(z_c).
struct aux_loss_partials {
  float* prob_sums;     //!< `[blocks, E]`
  int32_t* counts;      //!< `[blocks, E]`
  float* mask_sums;     //!< `[blocks]`
};

//! Workspace layout of aux_losses: blocks = clamp(⌈T/64⌉, 1, 512), arrays 256-byte aligned.
struct aux_loss_workspace {
  unsigned blocks;
  size_t per_expert_bytes, bytes;

  aux_loss_workspace(int64_t tokens, int num_experts) {
    const int64_t wanted = (tokens + aux_loss_tokens_per_block - 1) / aux_loss_tokens_per_block;
    blocks = unsigned(wanted < 1 ? 1 : wanted > aux_loss_max_blocks ? aux_loss_max_blocks : wanted);
    per_expert_bytes = workspace_align(size_t(blocks) * size_t(num_experts) * 4);
    bytes = 2 * per_expert_bytes + workspace_align(size_t(blocks) * 4);
  }
  aux_loss_partials partials(void* workspace) const {
    char* base = static_cast<char*>(workspace);
    return {reinterpret_cast<float*>(base), reinterpret_cast<int32_t*>(base + per_expert_bytes),
            reinterpret_cast<float*>(base + 2 * per_expert_bytes)};
  }
};

template <int MaxExperts, class LogitT>
__global__ void __launch_bounds__(aux_loss_block_threads)
    aux_loss_partials_kernel(device::routing_logits<LogitT> logits, int64_t tokens, int num_experts, int top_k,
                             bool l_reg, const int32_t* __restrict__ candidate_ids, aux_loss_partials partials) {
  wait_for_dependencies();  // the logits, the candidates: the kernels before wrote them
  launch_dependents();
  constexpr int warps = aux_loss_block_threads / 32, per_lane = MaxExperts / 32;
  __shared__ float warp_probs[warps][MaxExperts];
  __shared__ int32_t counts[MaxExperts];
  __shared__ float warp_mask_sums[warps];
  const int lane = int(warp::lane_id()), warp_index = int(threadIdx.x / 32);
  for (int e = int(threadIdx.x); e < MaxExperts; e += aux_loss_block_threads) counts[e] = 0;
  __syncthreads();

  const int64_t chunk = (tokens + gridDim.x - 1) / gridDim.x;
  const int64_t begin = int64_t(blockIdx.x) * chunk;
  const int64_t end = begin + chunk < tokens ? begin + chunk : tokens;
  float prob_sum[per_lane] = {};
  float mask_sum = 0.0f;
  for (int64_t t = begin + warp_index; t < end; t += warps) {
    float logit[per_lane], numerator[per_lane];
    const float max_logit = warp::detail::load_logits(logits.router + t * logits.router_stride, num_experts, logit);
    const float denominator = warp::detail::softmax_numerators(logit, max_logit, numerator);
    if (denominator > 0.0f) {  // an all-NaN row adds nothing
#pragma unroll
      for (int j = 0; j < per_lane; ++j) prob_sum[j] += numerator[j] / denominator;
    }
    const int32_t c = lane < top_k ? candidate_ids[t * top_k + lane] : -1;
    if (c >= 0 && c < num_experts) {
      atomicAdd(&counts[c], 1);  // integer: exact in any order
      if (l_reg) mask_sum += sigmoid(to_float(logits.mask[t * logits.mask_stride + c]));
    }
  }
#pragma unroll
  for (int j = 0; j < per_lane; ++j) warp_probs[warp_index][lane + 32 * j] = prob_sum[j];
  mask_sum = warp::detail::warp_sum(mask_sum);
  if (lane == 0) warp_mask_sums[warp_index] = mask_sum;
  __syncthreads();

  for (int e = int(threadIdx.x); e < num_experts; e += aux_loss_block_threads) {
    float sum = 0.0f;
    for (int w = 0; w < warps; ++w) sum += warp_probs[w][e];
    partials.prob_sums[int64_t(blockIdx.x) * num_experts + e] = sum;
    partials.counts[int64_t(blockIdx.x) * num_experts + e] = counts[e];
  }
  if (threadIdx.x == 0) {
    float sum = 0.0f;
    for (int w = 0; w < warps; ++w) sum += warp_mask_sums[w];
    partials.mask_sums[blockIdx.x] = sum;
  }
}

template <int = 0>  // a template: one definition across translation units
__global__ void __launch_bounds__(aux_loss_finish_threads)
    aux_loss_finish_kernel(aux_loss_partials partials, unsigned blocks, int64_t tokens, int num_experts, int top_k,
                           device::aux_loss_outputs out) {
  wait_for_dependencies();  // the partials: the kernel before wrote them
  launch_dependents();
  using block_reduce = cub::BlockReduce<float, aux_loss_finish_threads>;
  __shared__ typename block_reduce::TempStorage storage;
  const int e = int(threadIdx.x);
  const double slots = double(tokens) * top_k;
  float f_times_p = 0.0f;
  if (e < num_experts) {
    float prob_sum = 0.0f;
    int64_t count = 0;
    for (unsigned b = 0; b < blocks; ++b) {
      prob_sum += partials.prob_sums[int64_t(b) * num_experts + e];
      count += partials.counts[int64_t(b) * num_experts + e];
    }
    const float mean_prob = prob_sum / float(tokens);
    const float fraction = float(double(count) / slots);
    if (out.mean_probs) out.mean_probs[e] = mean_prob;
    if (out.balance_fractions) out.balance_fractions[e] = fraction;
    f_times_p = fraction * mean_prob;
  }
  const float balance = block_reduce(storage).Sum(f_times_p);
  __syncthreads();  // storage is reused
  float mask_sum = 0.0f;
  for (unsigned b = threadIdx.x; b < blocks; b += aux_loss_finish_threads) mask_sum += partials.mask_sums[b];
  mask_sum = block_reduce(storage).Sum(mask_sum);
  if (threadIdx.x == 0) {
    if (out.balance_loss) out.balance_loss[0] = float(num_experts) * balance;
    if (out.l_reg) out.l_reg[0] = float(double(mask_sum) / slots);
  }
}

}  // namespace beam::detail
