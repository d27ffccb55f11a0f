//! @file
//! The BEAM MoE layer forward on the device, composed of the stages of this library:
//!   route     r = x·W_rᵀ, z = x·W_mᵀ (router_logits), then route_and_mask; route_decode at
//!             T ≤ 64, E ≤ 256 (the same bits: batch-invariant), whose last block also compacts:
//!             one launch for routing and compaction
//!   compact   masked pairs get no row, experts with no rows no tile
//!   GEMM 1    A = silu(X W1ᵀ) ⊙ (X W3ᵀ) per expert, X rows gathered through sorted_pairs
//!   GEMM 2    Yp = ĝ · A W2ᵀ per expert
//!   combine   y_t = S(x_t) + Σ_k Yp[row(t, k)] + residual_t   (S: optional shared expert; a
//!             zero-computation expert's term, zero_compute_addends, in place of its row)
//! At decode (the experts' GEMMs in the decode schedule: `automatic` takes it while T·K ≤ 16·E,
//! so at every T ≤ 64 when K ≤ E/4) the stages after routing are two launches: GEMM 1 of the
//! routed and the shared experts, then GEMM 2 of both, whose block that completes a column
//! tile combines it for every token (in combine's order: deterministic). With route_decode, a
//! moe_forward at T ≤ 64 (E ≤ 256) is then three launches and no memset.
//! Everything stays on the device (buffers sized by T·K): no host synchronisation, and the
//! whole layer can be captured in a CUDA graph and replayed with new inputs. With the mask
//! off it is the dense Top-K layer through the same code. Matches reference::moe_forward.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "beam/core/error.cuh"
#include "beam/gemm/device_grouped_gemm.cuh"
#include "beam/gemm/device_quantize.cuh"
#include "beam/gemm/weights.cuh"
#include "beam/permute/device_combine.cuh"
#include "beam/permute/device_compact.cuh"
#include "beam/routing/device_route.cuh"
#include "beam/routing/device_route_decode.cuh"
#include "beam/routing/options.cuh"

namespace beam::device {

//! The weights of one layer, row-major, in the layouts engines use (all K contiguous). Model
//! dimensions are int, as everywhere in beam (reference::moe_weights too). The experts' weights
//! (routed and shared) are of type W: T, or __nv_fp8_e4m3 with fp32 scales (weights.cuh), e.g.
//! a DeepSeek-V3 or Qwen3-FP8 checkpoint's `weight` and `weight_scale_inv` tensors as they are
//! (W1's and W3's stacked); the router, gates and constant experts stay T.
template <class T, class W = T>
struct moe_layer {
  int hidden = 0;        //!< H, a multiple of 8 (of 16 for e4m3 weights)
  int intermediate = 0;  //!< I, a multiple of 8 (of 16 for e4m3 weights)
  int experts = 0;       //!< E ≤ 512: the experts whose weights are here (this rank's, with expert_map)
  const W* w13 = nullptr;          //!< `[E, 2I, H]`: rows [0, I) W1 (gate), rows [I, 2I) W3 (up)
  const W* w2 = nullptr;           //!< `[E, H, I]`
  const T* router = nullptr;       //!< W_r `[E_routed, H]` (moe_forward only)
  const T* mask_router = nullptr;  //!< W_m `[E_routed, H]` (moe_forward under the mask rule)
  int shared_intermediate = 0;     //!< I_s of the shared expert, a multiple of 8 (16 for e4m3); 0 = none
  const W* shared_w13 = nullptr;   //!< `[2 I_s, H]`
  const W* shared_w2 = nullptr;    //!< `[H, I_s]`
  const T* shared_gate = nullptr;  //!< optional w_g `[H]` (Qwen2-MoE): the shared expert's output
                                   //!< enters y scaled by σ(x·w_g); needs I_s > 0
  //! Expert parallelism (the layer on one rank): the routing's ids range over E_routed =
  //! `routed_experts` ≤ 512 experts (the router's rows), of which `expert_map` (device
  //! `[E_routed]`, vLLM's) gives the E local ones their local id, −1 for another rank's. Both
  //! or neither: without them E_routed = E. The rank's y holds its experts' part of the sum;
  //! give the shared expert and the residual to one rank only.
  int routed_experts = 0;
  const int32_t* expert_map = nullptr;
  //! Zero-computation experts (MoE++, LongCat-Flash; device::zero_compute_addends): the
  //! router's ids [E_routed, E_routed + Z), Z = zero + identity + constant, after the FFN
  //! experts': no weights rows, no GEMM rows; the combine adds their terms. W_r (and W_m) then
  //! have E_routed + Z ≤ 512 rows, and routing (the mask included) treats them as any expert.
  int zero_experts = 0;                 //!< add nothing
  int identity_experts = 0;             //!< add ĝ · x
  int constant_experts = 0;             //!< C: add ĝ · (α₁ x + α₂ v_j), [α₁, α₂] = softmax(W_c[2j, 2j+1] · x)
  const T* constant_gate = nullptr;     //!< W_c `[2C, H]`
  const T* constant_vectors = nullptr;  //!< v `[C, H]`
  //! Whether this call adds the zero-computation terms: under expert parallelism every rank
  //! routes over them and exactly one adds them (as with the shared expert and the residual).
  bool zero_compute_terms = true;
  //! e4m3 weights: how the scales below apply (weights.cuh: per_channel `[E, N]`, block_128
  //! `[E, ⌈N/128⌉, ⌈K/128⌉]`, w13's per half: `[E, 2⌈I/128⌉, ⌈H/128⌉]`; the shared expert's
  //! without the E). T weights: none, and no scales.
  weight_scales weight_scaling = weight_scales::none;
  const float* w13_scales = nullptr;
  const float* w2_scales = nullptr;
  const float* shared_w13_scales = nullptr;
  const float* shared_w2_scales = nullptr;
  //! e4m3 weights: W8A16 (native), or W8A8 (e4m3_1x128, on the Hopper kernel only: X is
  //! quantised once, GEMM 1's outputs, routed and shared, after it; every GEMM multiplies
  //! codes by codes). W8A8 runs the stages one launch each, at decode too.
  activation_format activations = activation_format::native;
};

//! Where the layer writes: y `[T, H]`, optionally + a residual `[T, H]` (may be y itself:
//! an in-place residual update), and optionally the routing it used (`[T, K]` each).
template <class T>
struct moe_outputs {
  T* out = nullptr;
  int64_t out_stride = 0;
  const T* residual = nullptr;
  int64_t residual_stride = 0;
  int32_t* topk_ids = nullptr;    //!< moe_forward: optional copy-free export (else in the workspace)
  float* topk_weights = nullptr;  //!< moe_forward: optional, ĝ
  unsigned long long* invalid_ids = nullptr;  //!< optional status word, zeroed by each call: ids
                                              //!< < −1 or ≥ E_routed + Z, or mapped outside [−1, E)
                                              //!< by expert_map, skipped (a routing given to
                                              //!< moe_experts_forward)
  int32_t* topk_ids_or_zero = nullptr;  //!< moe_forward: optional, see routing_outputs
};

//! y = the layer forward of x `[T, H]` (file comment) with `options` (K = options.top_k ≤ 16).
//! A batch padded to a captured size passes its count of real tokens in
//! `options.valid_tokens` (device memory): the padding tokens get no pairs, so they read no
//! expert weights; their rows of y get the shared expert and the residual only.
//!
//! Two-phase workspace, as in CUB: with `workspace == nullptr` only `workspace_bytes` is set
//! (from T, K and the shapes; it grows with T, so a size queried for the largest T serves
//! every smaller one). A query checks only the sizes and the schedule: its pointers may be null.
//! Its first `workspace_counter_bytes` hold completion counters: **zero them once** after
//! allocating the workspace; every call leaves them at zero (so no call needs a memset), and
//! nothing else may write them between calls (a counter found at or above its launch's count
//! traps, a smaller stale one goes undetected: see last_to_arrive).
//!
//! @tparam T  __nv_bfloat16 or __half (activations, router and gates)
//! @tparam W  T or __nv_fp8_e4m3: the experts' weights (moe_layer; e4m3 ones run grouped_gemm's
//!            W8A16 path in every schedule, or its W8A8 path with activation_format::e4m3_1x128)
//! @param schedule  the expert GEMMs' tile schedule (gemm_schedule); automatic by default
//! @return cudaErrorInvalidValue, launching nothing, when the schedule is not one of its
//!         enumerators; T < 0; H, I or I_s not a positive
//!         multiple of 8 (I_s may be 0; e4m3 weights: of 16), H > 2³⁰, I or I_s > 2²⁹; a
//!         weight_scaling or activations that is not an enumerator, or not none / native with
//!         T weights, or W8A8 with the prefill_sm80 schedule; T·K > 2³¹ − 1; E ∉ [1, 512]; routed_experts and expert_map not both given
//!         or both absent, or E_routed ∉ [E, 512]; a negative count of zero-computation experts
//!         or E_routed + Z > 512; K ∉ [1, min(16, E_routed + Z)]; groups that do not fit
//!         E_routed + Z (moe_forward: `valid_groups`); a malformed rule (`valid_rule`); (not a
//!         query) T > 0 and a null x, w13, w2, router, mask_router (mask rule), shared weights
//!         (I_s > 0), constant_gate or constant_vectors (C > 0, terms added here) or out; null
//!         or misaligned weight scales where the scaling needs them; a
//!         pointer not 16-byte aligned or a row stride not a multiple of 8 or shorter than H;
//!         an in-place residual (residual == out) with another stride; `workspace_bytes`
//!         below the queried size; T > 0 and a workspace not 256-byte aligned or a device
//!         older than sm_80; cudaErrorInvalidDeviceFunction, launching nothing, when the code
//!         built for the device is older than compute_80 (see grouped_gemm), or for W8A8 where
//!         the Hopper kernel cannot run (an sm_90 device and an sm_90a build); else the first
//!         failing launch's status. T = 0: success, nothing runs.
template <class T, class W = T>
[[nodiscard]] cudaError_t moe_forward(void* workspace, size_t& workspace_bytes, const T* x, int64_t x_stride,
                                      int64_t tokens, const moe_layer<T, W>& layer, const routing_options& options,
                                      const moe_outputs<T>& out, gemm_schedule schedule = gemm_schedule::automatic,
                                      cudaStream_t stream = nullptr);

//! The experts and the combine for a routing made elsewhere (an engine that routes itself):
//! `topk_ids` `[T, K]` (−1 = masked; [E_routed, E_routed + Z): zero-computation experts; ids
//! ≥ E_routed + Z or < −1 are skipped) and ĝ = `topk_weights` `[T, K]`. Router fields of
//! `layer` (but constant_gate) and `out.topk_ids` / `out.topk_weights` are not used. Same
//! workspace convention and errors as moe_forward (plus null topk_ids or topk_weights).
template <class T, class W = T>
[[nodiscard]] cudaError_t moe_experts_forward(void* workspace, size_t& workspace_bytes, const T* x, int64_t x_stride,
                                              int64_t tokens, const moe_layer<T, W>& layer, const int32_t* topk_ids,
                                              const float* topk_weights, int top_k, const moe_outputs<T>& out,
                                              gemm_schedule schedule = gemm_schedule::automatic,
                                              cudaStream_t stream = nullptr);

}  // namespace beam::device

namespace beam::device {

namespace detail {

//! C of the constant experts whose terms this call adds (their W_c rows run only then).
template <class T, class W>
int added_constant_experts(const moe_layer<T, W>& layer) {
  return layer.zero_compute_terms ? layer.constant_experts : 0;
}

//! E_routed: the range of the routing's FFN expert ids.
template <class T, class W>
int routed_experts_of(const moe_layer<T, W>& layer) {
  return layer.expert_map ? layer.routed_experts : layer.experts;
}

//! Z: the zero-computation experts after them.
template <class T, class W>
int64_t zero_compute_experts_of(const moe_layer<T, W>& layer) {
  return int64_t(layer.zero_experts) + layer.identity_experts + layer.constant_experts;
}

//! The router's experts (its rows, the range of the routing's ids): E_routed + Z.
template <class T, class W>
int router_experts_of(const moe_layer<T, W>& layer) {
  return int(routed_experts_of(layer) + zero_compute_experts_of(layer));
}

//! compact's input for the layer's routing: the ids over E_routed + Z, this rank's E experts.
template <class T, class W>
compaction_input compaction_input_of(const moe_layer<T, W>& layer, const int32_t* topk_ids, int64_t tokens, int top_k) {
  return {topk_ids, tokens,           top_k, routed_experts_of(layer), 0, layer.experts, layer.expert_map,
          int(zero_compute_experts_of(layer))};
}

//! Columns of each half of router_logits' float output [r | z]: E rounded up to 4, so that
//! the rows and the z half stay 16-byte aligned.
inline int router_columns(int experts) { return (experts + 3) / 4 * 4; }

//! A layer's expert buffers, inside a workspace (offsets from its start): the compaction of the
//! T·K pairs and its workspace, GEMM 1's and GEMM 2's rows, and the shared expert's.
struct expert_buffers {
  size_t counts = 0, offsets = 0, sorted_pairs = 0, pair_to_row = 0, compaction = 0, compaction_bytes = 0,
         activations = 0, expert_rows = 0, shared_activations = 0, shared_rows = 0;

  //! The regions, each taken from `layout`, in this order.
  template <class T, class W, class Layout>
  static expert_buffers taken(int64_t tokens, int top_k, const moe_layer<T, W>& layer, Layout& layout) {
    const auto take = [&](size_t n) { return layout.take(n); };
    const size_t P = size_t(tokens) * size_t(top_k), E = size_t(layer.experts), H = size_t(layer.hidden);
    const beam::detail::compact_plan plan(compaction_input_of(layer, nullptr, tokens, top_k));
    expert_buffers b;
    b.counts = take(E * sizeof(int32_t));
    b.offsets = take((E + 1) * sizeof(int32_t));
    b.sorted_pairs = take(P * sizeof(int32_t));
    b.pair_to_row = take(P * sizeof(int32_t));
    b.compaction_bytes = beam::detail::compact_workspace(plan).bytes;
    b.compaction = take(b.compaction_bytes);
    b.activations = take(P * size_t(layer.intermediate) * sizeof(T));
    b.expert_rows = take(P * H * sizeof(T));
    b.shared_activations = take(size_t(tokens) * size_t(layer.shared_intermediate) * sizeof(T));
    b.shared_rows = take(layer.shared_intermediate > 0 ? size_t(tokens) * H * sizeof(T) : 0);
    return b;
  }
};

//! A workspace carved into arrays, each 256-byte aligned, in the order taken.
struct workspace_layout {
  size_t bytes = 0;  //!< the arrays taken so far

  //! The offset of the next array, of n bytes.
  size_t take(size_t n) {
    const size_t offset = bytes;
    bytes += beam::detail::workspace_align(n);
    return offset;
  }
  template <class U>
  static U* at(const void* workspace, size_t offset) {
    return reinterpret_cast<U*>(static_cast<char*>(const_cast<void*>(workspace)) + offset);
  }
};

//! The workspace of a layer: each array 256-byte aligned, in this order.
struct moe_workspace : workspace_layout {
  //! route_decode's counter (at 0), then the fused combine's (at layer_arrivals_offset)
  static constexpr size_t counter_bytes = workspace_counter_bytes;
  size_t router, routing_ids, routing_weights;
  expert_buffers experts;
  size_t shared_gate, constant_logits, x_codes, x_scales, activation_codes, activation_scales, shared_codes,
      shared_scales;

  template <class T, class W>
  moe_workspace(int64_t tokens, int top_k, const moe_layer<T, W>& layer, bool routes) {
    const size_t P = size_t(tokens) * size_t(top_k), H = size_t(layer.hidden);
    // The router region comes first, whatever T: its first counter_bytes are the completion
    // counters, which no call of another T or of moe_experts_forward writes otherwise.
    const int routed = router_experts_of(layer);
    const size_t router_bytes =
        !routes ? counter_bytes
        : tokens <= max_decode_tokens && routed <= max_decode_experts
            ? beam::detail::decode_workspace(tokens, routed).bytes
            : counter_bytes + size_t(tokens) * 2 * size_t(router_columns(routed)) * sizeof(float);
    router = take(router_bytes);
    routing_ids = take(routes ? P * sizeof(int32_t) : 0);
    routing_weights = take(routes ? P * sizeof(float) : 0);
    experts = expert_buffers::taken(tokens, top_k, layer, *this);
    shared_gate = take(layer.shared_gate ? size_t(tokens) * sizeof(float) : 0);
    constant_logits = take(size_t(tokens) * 2 * size_t(layer.constant_experts) * sizeof(float));
    // W8A8: the codes and 1 × 128 scales of X, of GEMM 1's routed rows and of the shared expert's.
    const bool w8a8 = layer.activations == activation_format::e4m3_1x128;
    const size_t I = size_t(layer.intermediate), I_s = size_t(layer.shared_intermediate);
    const auto groups = [](size_t k) { return (k + weight_block - 1) / weight_block; };
    x_codes = take(w8a8 ? size_t(tokens) * H : 0);
    x_scales = take(w8a8 ? size_t(tokens) * groups(H) * sizeof(float) : 0);
    activation_codes = take(w8a8 ? P * I : 0);
    activation_scales = take(w8a8 ? P * groups(I) * sizeof(float) : 0);
    shared_codes = take(w8a8 ? size_t(tokens) * I_s : 0);
    shared_scales = take(w8a8 ? size_t(tokens) * groups(I_s) * sizeof(float) : 0);
  }
};

//! The sizes and the schedule: all that a workspace query checks.
template <class T, class W>
cudaError_t check_moe_sizes(int64_t tokens, const moe_layer<T, W>& layer, int top_k, gemm_schedule schedule) {
  if (!valid_schedule(schedule) || tokens < 0 || layer.hidden < 8 || layer.hidden % 8 != 0 || layer.intermediate < 8 ||
      layer.intermediate % 8 != 0 || layer.shared_intermediate < 0 || layer.shared_intermediate % 8 != 0) {
    return cudaErrorInvalidValue;
  }
  if (!valid_weight_scales(layer.weight_scaling) || unsigned(layer.activations) > unsigned(activation_format::e4m3_1x128)) {
    return cudaErrorInvalidValue;
  }
  if constexpr (std::is_same_v<W, T>) {
    if (layer.weight_scaling != weight_scales::none || layer.activations != activation_format::native) {
      return cudaErrorInvalidValue;  // T weights are unscaled, multiplied with T activations
    }
  } else if (layer.activations == activation_format::e4m3_1x128 && schedule == gemm_schedule::prefill_sm80) {
    return cudaErrorInvalidValue;  // W8A8 has no sm_80 kernel
  } else {  // e4m3: every GEMM's K (H, I, I_s) a multiple of 16
    static_assert(std::is_same_v<W, __nv_fp8_e4m3>, "T or e4m3 weights");
    if (layer.hidden % 16 != 0 || layer.intermediate % 16 != 0 || layer.shared_intermediate % 16 != 0) {
      return cudaErrorInvalidValue;
    }
  }
  if ((layer.expert_map == nullptr) != (layer.routed_experts == 0)) return cudaErrorInvalidValue;  // both or neither
  if (layer.shared_gate && layer.shared_intermediate == 0) return cudaErrorInvalidValue;  // a gate needs its expert
  if (layer.zero_experts < 0 || layer.identity_experts < 0 || layer.constant_experts < 0) return cudaErrorInvalidValue;
  const int routed = routed_experts_of(layer);
  if (layer.experts < 1 || layer.experts > max_compact_experts || routed < layer.experts ||
      routed + zero_compute_experts_of(layer) > max_route_experts || top_k < 1 || top_k > max_route_top_k ||
      top_k > router_experts_of(layer) || tokens > INT32_MAX / top_k) {
    return cudaErrorInvalidValue;
  }
  // 2I and 2I_s are GEMM 1's N
  if (layer.hidden > max_extent || layer.intermediate > max_extent / 2 || layer.shared_intermediate > max_extent / 2) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

//! The data of a run (after check_moe_sizes): pointers, alignment and strides.
template <class T, class W>
cudaError_t check_moe_data(const T* x, int64_t x_stride, int64_t tokens, const moe_layer<T, W>& layer,
                           const moe_outputs<T>& out, bool routes, bool mask) {
  const auto rows_ok = [&](const T* p, int64_t stride) {
    return p && reinterpret_cast<uintptr_t>(p) % 16 == 0 && stride % 8 == 0 && stride >= layer.hidden;
  };
  const auto aligned = [](const auto* p) { return p && reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  // Scales where the scaling needs them, float-aligned (their layout follows the sizes).
  const auto scales_ok = [&](const float* p) {
    return layer.weight_scaling == weight_scales::none || (p && reinterpret_cast<uintptr_t>(p) % alignof(float) == 0);
  };
  if (tokens == 0) return cudaSuccess;
  if (!scales_ok(layer.w13_scales) || !scales_ok(layer.w2_scales) ||
      (layer.shared_intermediate > 0 && (!scales_ok(layer.shared_w13_scales) || !scales_ok(layer.shared_w2_scales)))) {
    return cudaErrorInvalidValue;
  }
  if (!rows_ok(x, x_stride) || !rows_ok(out.out, out.out_stride) || !aligned(layer.w13) || !aligned(layer.w2)) {
    return cudaErrorInvalidValue;
  }
  if (out.residual && !rows_ok(out.residual, out.residual_stride)) return cudaErrorInvalidValue;
  if (out.residual == out.out && out.residual_stride != out.out_stride) return cudaErrorInvalidValue;  // in place
  if (layer.shared_intermediate > 0 && (!aligned(layer.shared_w13) || !aligned(layer.shared_w2))) {
    return cudaErrorInvalidValue;
  }
  if (layer.shared_gate && !aligned(layer.shared_gate)) return cudaErrorInvalidValue;
  if (added_constant_experts(layer) > 0 && (!aligned(layer.constant_gate) || !aligned(layer.constant_vectors))) {
    return cudaErrorInvalidValue;
  }
  if (routes && (!aligned(layer.router) || (mask && !aligned(layer.mask_router)))) return cudaErrorInvalidValue;
  return cudaSuccess;
}

//! The workspace phase of a run of the entry points (the query returned before): at least
//! `required_bytes` bytes, 256-byte aligned, and an sm_80+ device with sm_80+ code (checked here,
//! so that no stage fails on arguments after another ran). `run` says whether the layer is
//! to run (T > 0).
template <class T, class W>
cudaError_t begin_layer(void* workspace, size_t workspace_bytes, size_t required_bytes, int64_t tokens,
                        const moe_layer<T, W>& layer, bool& run) {
  run = false;
  if (workspace_bytes < required_bytes) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) return cudaErrorInvalidValue;
  cudaError_t status = check_sm80_device();
  if (status == cudaSuccess && layer.activations == activation_format::e4m3_1x128) status = check_w8a8_device<T>();
  run = status == cudaSuccess;
  return status;
}

//! What follows an entry point's size checks, for a layer that routes: a query (null workspace)
//! stores `required_bytes` and stops; a run checks its data (check_moe_data), then its workspace
//! and device (begin_layer). `run` says whether the layer is to run.
template <class T, class W>
cudaError_t start_routed_layer(void* workspace, size_t& workspace_bytes, size_t required_bytes, const T* x,
                               int64_t x_stride, int64_t tokens, const moe_layer<T, W>& layer,
                               const moe_outputs<T>& out, bool mask, bool& run) {
  run = false;
  if (workspace == nullptr) {  // a query: the sizes suffice
    workspace_bytes = required_bytes;
    return cudaSuccess;
  }
  if (const cudaError_t status = check_moe_data(x, x_stride, tokens, layer, out, true, mask); status != cudaSuccess) {
    return status;
  }
  return begin_layer(workspace, workspace_bytes, required_bytes, tokens, layer, run);
}

//! Where the layer's compaction goes in its workspace (and the caller's status word).
template <class T>
compaction_outputs compaction_of(void* workspace, const moe_workspace& ws, const moe_outputs<T>& out) {
  using w = moe_workspace;
  return {w::at<int32_t>(workspace, ws.experts.counts), w::at<int32_t>(workspace, ws.experts.offsets),
          w::at<int32_t>(workspace, ws.experts.sorted_pairs), w::at<int32_t>(workspace, ws.experts.pair_to_row),
          out.invalid_ids};
}

//! The expert GEMMs of a W8A8 layer, one launch each: X quantised; GEMM 1 of the routed experts
//! on its codes gathered through sorted_pairs; its active rows quantised (their count read on the
//! device); GEMM 2; then the shared expert's GEMM 1 on X's codes, its rows quantised, its GEMM 2.
template <class T>
cudaError_t run_w8a8_experts(void* workspace, const moe_workspace& ws, const T* x, int64_t x_stride, int64_t tokens,
                             const moe_layer<T, __nv_fp8_e4m3>& layer, int top_k, const compaction_outputs& compaction,
                             const gemm_b<__nv_fp8_e4m3>& w13, const gemm_b<__nv_fp8_e4m3>& w2,
                             const gemm_b<__nv_fp8_e4m3>& shared_w13, const gemm_b<__nv_fp8_e4m3>& shared_w2,
                             const gemm_output<T>& routed_activations, const gemm_output<T>& routed_rows,
                             const gemm_output<T>& shared_swiglu, gemm_schedule schedule, cudaStream_t stream) {
  using w = moe_workspace;
  using e4m3 = __nv_fp8_e4m3;
  const int E = layer.experts, H = layer.hidden, I = layer.intermediate, I_s = layer.shared_intermediate;
  const int64_t P = tokens * top_k, h_groups = (H + weight_block - 1) / weight_block,
                i_groups = (I + weight_block - 1) / weight_block, s_groups = (I_s + weight_block - 1) / weight_block;
  e4m3* x_codes = w::at<e4m3>(workspace, ws.x_codes);
  float* x_scales = w::at<float>(workspace, ws.x_scales);
  e4m3* codes = w::at<e4m3>(workspace, ws.activation_codes);
  float* scales = w::at<float>(workspace, ws.activation_scales);
  const gemm_groups experts{compaction.offsets, E, P, P}, all{nullptr, 1, tokens};
  cudaError_t status = quantize_activations(x, x_stride, tokens, H, x_codes, H, x_scales, h_groups, nullptr, stream);
  if (status == cudaSuccess) {
    status = grouped_gemm<T>({x_codes, H, compaction.sorted_pairs, top_k, x_scales, h_groups}, w13, 2 * I, H, experts,
                             routed_activations, schedule, stream);
  }
  if (status == cudaSuccess) {
    status = quantize_activations(routed_activations.data, I, P, I, codes, I, scales, i_groups, compaction.offsets + E,
                                  stream);
  }
  if (status == cudaSuccess) {
    status = grouped_gemm<T>({codes, I, nullptr, 1, scales, i_groups}, w2, H, I, experts, routed_rows, schedule, stream);
  }
  if (status != cudaSuccess || I_s == 0) return status;
  e4m3* shared_codes = w::at<e4m3>(workspace, ws.shared_codes);
  float* shared_scales = w::at<float>(workspace, ws.shared_scales);
  status = grouped_gemm<T>({x_codes, H, nullptr, 1, x_scales, h_groups}, shared_w13, 2 * I_s, H, all, shared_swiglu,
                           gemm_schedule::automatic, stream);
  if (status == cudaSuccess) {
    status = quantize_activations(shared_swiglu.data, I_s, tokens, I_s, shared_codes, I_s, shared_scales, s_groups,
                                  nullptr, stream);
  }
  if (status == cudaSuccess) {
    status = grouped_gemm<T>({shared_codes, I_s, nullptr, 1, shared_scales, s_groups}, shared_w2, H, I_s, all,
                             {w::at<T>(workspace, ws.experts.shared_rows), H}, gemm_schedule::automatic, stream);
  }
  return status;
}

//! (compact, unless `compacted`) → GEMM 1 + SwiGLU → GEMM 2 · ĝ → combine, with the shared
//! expert, on checked arguments. Where the experts' GEMMs take the decode schedule, two
//! launches of layer_gemm_kernel: GEMM 1 of the routed and the shared experts, then GEMM 2 of
//! both with the combine fused; else the stages one launch each.
template <class T, class W>
cudaError_t run_experts(void* workspace, const moe_workspace& ws, const T* x, int64_t x_stride, int64_t tokens,
                        const moe_layer<T, W>& layer, const int32_t* topk_ids, const float* topk_weights, int top_k,
                        const moe_outputs<T>& out, gemm_schedule schedule, bool compacted, cudaStream_t stream) {
  using w = moe_workspace;
  const int E = layer.experts, H = layer.hidden, I = layer.intermediate, I_s = layer.shared_intermediate;
  const int64_t P = tokens * top_k;
  const compaction_outputs compaction = compaction_of(workspace, ws, out);
  size_t compaction_bytes = ws.experts.compaction_bytes;
  cudaError_t status = compacted ? cudaSuccess
                                 : compact(w::at<void>(workspace, ws.experts.compaction), compaction_bytes,
                                           compaction_input_of(layer, topk_ids, tokens, top_k), compaction, {}, stream);
  if (status != cudaSuccess) return status;
  T* activations = w::at<T>(workspace, ws.experts.activations);
  T* expert_rows = w::at<T>(workspace, ws.experts.expert_rows);
  T* shared_activations = I_s > 0 ? w::at<T>(workspace, ws.experts.shared_activations) : nullptr;
  T* shared_rows = I_s > 0 ? w::at<T>(workspace, ws.experts.shared_rows) : nullptr;
  // GEMM 1 and GEMM 2 of the routed experts (rows of the compaction) and of the shared expert (every token).
  const gemm_groups experts{compaction.offsets, E, P, P}, all{nullptr, 1, tokens};
  const gemm_a<T> routed_x{x, x_stride, compaction.sorted_pairs, top_k}, shared_x{x, x_stride};
  const weight_scales scaling = layer.weight_scaling;
  const gemm_b<W> w13{layer.w13, H, int64_t(2) * I * H, layer.w13_scales, scaling},
      w2{layer.w2, I, int64_t(H) * I, layer.w2_scales, scaling};
  const gemm_b<W> shared_w13{layer.shared_w13, H, 0, layer.shared_w13_scales, scaling},
      shared_w2{layer.shared_w2, I_s, 0, layer.shared_w2_scales, scaling};
  const gemm_output<T> routed_activations{activations, I, gemm_epilogue::swiglu},
      routed_rows{expert_rows, H, gemm_epilogue::scale_rows, topk_weights, compaction.sorted_pairs},
      shared_swiglu{shared_activations, I_s, gemm_epilogue::swiglu};
  combine_addends<T> addends{shared_rows, H, out.residual, out.residual_stride,
                             layer.shared_gate ? w::at<float>(workspace, ws.shared_gate) : nullptr};
  if (layer.zero_compute_terms) {
    addends.zero_compute = {routed_experts_of(layer), layer.zero_experts,        layer.identity_experts,
                            layer.constant_experts,   topk_ids,                  topk_weights,
                            x,                        x_stride,                  layer.constant_vectors,
                            w::at<float>(workspace, ws.constant_logits)};
  }

  if constexpr (sizeof(W) == 1) {
    if (layer.activations == activation_format::e4m3_1x128) {
      status = run_w8a8_experts(workspace, ws, x, x_stride, tokens, layer, top_k, compaction, w13, w2, shared_w13,
                                shared_w2, routed_activations, routed_rows, shared_swiglu, schedule, stream);
      if (status != cudaSuccess) return status;
      return combine<T>(expert_rows, H, compaction.pair_to_row, nullptr, tokens, H, top_k, addends, out.out,
                        out.out_stride, stream);
    }
  }
  const int column_tiles = (H + decode_tiles::block_cols - 1) / decode_tiles::block_cols;
  if (decode_schedule(schedule, experts) && column_tiles <= beam::detail::layer_max_column_tiles) {
    beam::detail::layer_gemm_extras<T, W> gemm1{}, gemm2{};
    if (I_s > 0) {
      gemm1.dense = params_of(shared_x, shared_w13, 2 * I_s, H, all, shared_swiglu);
      gemm2.dense = params_of<T, W, T>({shared_activations, I_s}, shared_w2, H, I_s, all,
                                    {shared_rows, H, gemm_epilogue::scale_rows});  // no scales: ×1
    }
    gemm2.arrivals = w::at<unsigned>(workspace, beam::detail::layer_arrivals_offset);
    gemm2.combine = {expert_rows, H, compaction.pair_to_row, nullptr, nullptr, tokens, H, top_k, addends, out.out,
                     out.out_stride};
    status = launch_layer_gemm<T, W, gemm_epilogue::swiglu>(
        params_of(routed_x, w13, 2 * I, H, experts, routed_activations), gemm1, stream);
    if (status != cudaSuccess) return status;
    return launch_layer_gemm<T, W, gemm_epilogue::scale_rows>(
        params_of<T, W, T>({activations, I}, w2, H, I, experts, routed_rows), gemm2, stream);
  }
  status = grouped_gemm<T, T>(routed_x, w13, 2 * I, H, experts, routed_activations, schedule, stream);
  if (status == cudaSuccess) {
    status = grouped_gemm<T, T>({activations, I}, w2, H, I, experts, routed_rows, schedule, stream);
  }
  if (status == cudaSuccess && I_s > 0) {  // the shared expert: a dense SwiGLU MLP over all tokens
    status = grouped_gemm<T, T>(shared_x, shared_w13, 2 * I_s, H, all, shared_swiglu, gemm_schedule::automatic, stream);
    if (status == cudaSuccess) {
      status = grouped_gemm<T, T>({shared_activations, I_s}, shared_w2, H, I_s, all, {shared_rows, H},
                                  gemm_schedule::automatic, stream);
    }
  }
  if (status != cudaSuccess) return status;
  return combine<T>(expert_rows, H, compaction.pair_to_row, nullptr, tokens, H, top_k, addends, out.out,
                    out.out_stride, stream);
}

}  // namespace detail

template <class T, class W>
cudaError_t moe_experts_forward(void* workspace, size_t& workspace_bytes, const T* x, int64_t x_stride,
                                int64_t tokens, const moe_layer<T, W>& layer, const int32_t* topk_ids,
                                const float* topk_weights, int top_k, const moe_outputs<T>& out,
                                gemm_schedule schedule, cudaStream_t stream) {
  if (const cudaError_t status = detail::check_moe_sizes(tokens, layer, top_k, schedule); status != cudaSuccess) {
    return status;
  }
  const detail::moe_workspace ws(tokens, top_k, layer, false);
  if (workspace == nullptr) {  // a query: the sizes suffice
    workspace_bytes = ws.bytes;
    return cudaSuccess;
  }
  if (const cudaError_t status = detail::check_moe_data(x, x_stride, tokens, layer, out, false, false);
      status != cudaSuccess) {
    return status;
  }
  if (tokens > 0 && (!topk_ids || !topk_weights)) return cudaErrorInvalidValue;
  bool run = false;
  if (const cudaError_t status = detail::begin_layer(workspace, workspace_bytes, ws.bytes, tokens, layer, run); !run) return status;
  const int C = detail::added_constant_experts(layer);
  if (layer.shared_gate || C > 0) {  // x·w_g and x·W_cᵀ: router_logits' extra rows
    const int H = layer.hidden;
    // router_logits needs router rows: W_c's, else w_g's (then no shared gate row beside it).
    const router_weights<T> rows = C > 0 ? router_weights<T>{layer.constant_gate, nullptr, H, 0, layer.shared_gate}
                                         : router_weights<T>{layer.shared_gate, nullptr, H, 0};
    float* gate = detail::moe_workspace::at<float>(workspace, ws.shared_gate);
    float* constant = detail::moe_workspace::at<float>(workspace, ws.constant_logits);
    const logits_outputs logits = C > 0 ? logits_outputs{constant, nullptr, 2 * C, 0, gate}
                                        : logits_outputs{gate, nullptr, 1, 0};
    if (const cudaError_t status = router_logits<T>(x, x_stride, tokens, H, rows, C > 0 ? 2 * C : 1, false, logits, stream);
        status != cudaSuccess) {
      return status;
    }
  }
  return detail::run_experts(workspace, ws, x, x_stride, tokens, layer, topk_ids, topk_weights, top_k, out, schedule,
                             false, stream);
}

template <class T, class W>
cudaError_t moe_forward(void* workspace, size_t& workspace_bytes, const T* x, int64_t x_stride, int64_t tokens,
                        const moe_layer<T, W>& layer, const routing_options& options, const moe_outputs<T>& out,
                        gemm_schedule schedule, cudaStream_t stream) {
  using w = detail::moe_workspace;
  if (const cudaError_t status = detail::check_moe_sizes(tokens, layer, options.top_k, schedule);
      status != cudaSuccess) {
    return status;
  }
  if (!valid_groups(options, detail::router_experts_of(layer))) return cudaErrorInvalidValue;
  if (!valid_rule(options)) return cudaErrorInvalidValue;
  const w ws(tokens, options.top_k, layer, true);
  bool run = false;
  if (const cudaError_t status = detail::start_routed_layer(workspace, workspace_bytes, ws.bytes, x, x_stride, tokens,
                                                            layer, out, uses_mask(options), run);
      !run) {
    return status;
  }
  const int E = detail::router_experts_of(layer), H = layer.hidden;  // the router's experts
  int32_t* topk_ids = out.topk_ids ? out.topk_ids : w::at<int32_t>(workspace, ws.routing_ids);
  float* topk_weights = out.topk_weights ? out.topk_weights : w::at<float>(workspace, ws.routing_weights);
  routing_outputs routing{topk_ids, topk_weights};
  routing.topk_ids_or_zero = out.topk_ids_or_zero;
  void* router = w::at<void>(workspace, ws.router);
  // x·w_g and x·W_cᵀ: the extra rows of the router
  const logits_outputs extras{nullptr, nullptr, 0, 0, layer.shared_gate ? w::at<float>(workspace, ws.shared_gate) : nullptr,
                              w::at<float>(workspace, ws.constant_logits)};
  const router_weights<T> weights{layer.router,      layer.mask_router, H, H, layer.shared_gate, layer.constant_gate,
                                  detail::added_constant_experts(layer)};
  cudaError_t status;
  const bool decode = tokens <= max_decode_tokens && E <= max_decode_experts;
  if (decode) {  // one launch: router logits, routing and compaction
    status = detail::check_route_decode_arrays(x, x_stride, tokens, H, weights, options, routing);
    if (status == cudaSuccess) {  // its compaction stores the status word: no memset
      status = detail::launch_route_decode<true>(router, x, x_stride, tokens, H, weights, E, options, routing,
                                                 detail::compaction_input_of(layer, topk_ids, tokens, options.top_k),
                                                 detail::compaction_of(workspace, ws, out), extras, stream);
    }
  } else {  // router_logits into float [T, 2·E4] (r | z), after the counter, then the routing
    float* logits = w::at<float>(router, w::counter_bytes);
    const int64_t half = detail::router_columns(E), stride = 2 * half;
    status = router_logits<T>(x, x_stride, tokens, H, weights, E, uses_mask(options),
                              {logits, logits + half, stride, stride, extras.shared_gate, extras.constant_gate}, stream);
    if (status == cudaSuccess) {
      status = route_and_mask<float>({logits, logits + half, stride, stride}, tokens, E, options, routing, stream);
    }
  }
  if (status != cudaSuccess) return status;
  return detail::run_experts(workspace, ws, x, x_stride, tokens, layer, topk_ids, topk_weights, options.top_k, out,
                             schedule, decode, stream);
}

}  // namespace beam::device
