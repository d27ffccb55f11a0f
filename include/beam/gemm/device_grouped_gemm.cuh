//! @file
//! Device-level grouped GEMM over the experts: for every group (expert) e and every row r
//! of its range [offsets[e], offsets[e+1]),
//!   acc[r][j] = Σ_k A[r][k] · B_e[j][k],   j < N, k < K   (C_e = A_e · B_eᵀ, fp32 accumulation)
//! followed by a fused epilogue. The ranges stay on the device (the offsets of `compact`):
//! no host synchronisation, capturable in a CUDA graph; groups with no rows read no weights.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include <cuda_fp8.h>

#include "beam/gemm/weights.cuh"

namespace beam::device {

//! What is written from acc (C has the row numbering of A).
enum class gemm_epilogue {
  store,       //!< C[r][j] = acc[r][j], j < N
  swiglu,      //!< C[r][i] = silu(acc[r][i]) · acc[r][N/2 + i], i < N/2: B = [W1; W3] (gate rows on
               //!< top), so the [rows, N] product never reaches memory
  scale_rows,  //!< C[r][j] = s · acc[r][j], s = row_scales[scale_index ? scale_index[r] : r]
               //!< (C[r][j] = 0 where scale_index[r] is not a pair index: see grouped_gemm)
  scatter_add, //!< C[p / top_k][j] += row_scales[p] · acc[r][j], p = scale_index[r] (a row
               //!< whose p is not a pair index adds nothing): rows added atomically into their
               //!< token's row of C `[T, N]`
               //!< (initialised by the caller, e.g. zeros or the shared expert's output). Saves
               //!< the permuted rows and the combine, but the order of the additions, hence the
               //!< rounding, varies from run to run; a float C rounds once, bf16/fp16 at every
               //!< addition (and bf16 atomics are compare-and-swap loops before sm_90)
};

//! Which kernel runs:
//! - `decode`: BM = 16, weight streaming for few rows per group (sm_80 multistage kernel);
//! - `prefill`: BM = 128, tensor-core bound: the warp-specialised TMA kernel where the code
//!   loaded for the device is sm_90 or later (e.g. an sm_90a build on an H100) and the
//!   device grants its 163 KiB of shared
//!   memory (wgmma in an sm_90a build, mma.sync otherwise), else (and where the driver
//!   declines the weights' tensor map) the sm_80 multistage kernel;
//! - `prefill_sm80`: the sm_80 multistage kernel on every device (a benchmark baseline);
//! - `automatic`: decode while the rows bound is at most 16 per group, prefill beyond (a
//!   crossover not yet set from measurements).
//! W8A8 (e4m3 activations) has the Hopper kernel only: decode and prefill are two Hopper tile
//! policies there, and prefill_sm80 is refused.
enum class gemm_schedule { automatic, decode, prefill, prefill_sm80 };

namespace detail {
constexpr bool valid_schedule(gemm_schedule schedule) {
  return unsigned(schedule) <= unsigned(gemm_schedule::prefill_sm80);  // the last enumerator
}

//! Whether P is a tile policy (has block_rows): keeps grouped_gemm<T, OutT>(...) with e4m3
//! weights from also naming the W8A8 overload with OutT = T and T as its DecodeTiles.
template <class P, class = void>
struct is_tile_policy : std::false_type {};
template <class P>
struct is_tile_policy<P, std::void_t<decltype(P::block_rows)>> : std::true_type {};
}  // namespace detail

//! Tile policies: BM × BN output tile (BN rows of B), K in steps of 64, warps_m × warps_n
//! warps, `stages` tiles in flight (cp.async ring).
struct decode_tiles {
  static constexpr int block_rows = 16, block_cols = 64, warps_m = 1, warps_n = 4, stages = 9;
};
struct prefill_tiles {
  static constexpr int block_rows = 128, block_cols = 128, warps_m = 2, warps_n = 4, stages = 3;
};
//! The decode policy of e4m3 weights: decode_tiles' tiles, and 15 stages of 6 KiB, the bytes
//! in flight (and the shared memory) of decode_tiles' 9 stages of 10 KiB: streaming the weights
//! needs the same bytes in flight whatever their type.
struct decode_e4m3_tiles {
  static constexpr int block_rows = 16, block_cols = 64, warps_m = 1, warps_n = 4, stages = 15;
};
//! The sm_80 prefill policy of e4m3 weights: 64 × 128 tiles of 2 × 4 warps of 32 × 32, so that
//! a warp's fp32 accumulators, its k block's partial sums and its decoded weights fit in
//! registers (the bf16 policy's 64 × 32 warp tiles would spill).
struct prefill_e4m3_tiles {
  static constexpr int block_rows = 64, block_cols = 128, warps_m = 2, warps_n = 4, stages = 4;
};
//! Hopper tile policy: BM × BN output tile (BM / 64 consumer warpgroups, BN ∈ {64, 128, 256}
//! the wgmma N), K in steps of 64, `stages` slots in the TMA / cp.async ring.
struct hopper_tiles {
  static constexpr int block_rows = 128, block_cols = 128, stages = 5;
};

//! Hopper policies of W8A8 (e4m3 A and B; stages of 128 codes, 32 KiB at 128 × 128): 6 stages
//! for prefill, and one consumer warpgroup (BM = 64) for decode, where rows are few and the
//! weights' bytes are what counts (8 stages of 24 KiB in flight per block).
struct hopper_e4m3_tiles {
  static constexpr int block_rows = 128, block_cols = 128, stages = 6;
};
struct hopper_e4m3_decode_tiles {
  static constexpr int block_rows = 64, block_cols = 128, stages = 8;
};

//! A `[rows, K]`: row r is data[r] (contiguous, e.g. gathered rows Xp), or, with
//! gather_pairs, data[gather_pairs[r] / top_k] (X `[T, H]`, T = ⌈pairs / top_k⌉, read through
//! `sorted_pairs`: no gathered copy), a zero row where gather_pairs[r] is not a pair index
//! (see grouped_gemm). T = __nv_fp8_e4m3 (W8A8): codes with `scales` `[rows, ⌈K/128⌉]` (row r's
//! at scales + r·scale_stride, gathered with their row), as weights.cuh and
//! quantize_activations (device_quantize.cuh) make them; null for bf16 / fp16 A.
template <class T>
struct gemm_a {
  const T* data = nullptr;
  int64_t stride = 0;
  const int32_t* gather_pairs = nullptr;
  int top_k = 1;
  const float* scales = nullptr;
  int64_t scale_stride = 0;
};

//! B: row j of group e at data + e·expert_stride + j·stride, K contiguous (the `[E, N, K]`
//! layout of W13 `[E, 2I, H]` and W2 `[E, H, I]`), in one of the formats of weights.cuh: W = T,
//! the activations' type (scaling none), or W = __nv_fp8_e4m3 with fp32 `scales` as `scaling`
//! says (the checkpoint's tensors as they are: e.g. `weight` and `weight_scale_inv`). With
//! the swiglu epilogue, block scales are per half (B = [W1; W3]: the two scale tensors stacked).
template <class W>
struct gemm_b {
  const W* data = nullptr;
  int64_t stride = 0;
  int64_t expert_stride = 0;
  const float* scales = nullptr;
  weight_scales scaling = weight_scales::none;
};

//! The groups: `count` ranges given by `offsets[count + 1]` on the device, all within a
//! static bound `rows` that sizes the grid (T·K for `compact`'s rows; an engine's padded layout
//! may have more, e.g. vLLM's P + E·(block − 1)); or, with offsets null, one group of exactly
//! `rows` rows (a dense GEMM: a router, a shared expert). `pairs` is the number of pairs P = T·K
//! that pair indices (gather_pairs, scale_index) may name: required with either, whatever
//! `rows` is, since an index p names a pair only when 0 ≤ p < P.
//! Packed groups instead of offsets (DeepEP's low-latency dispatch output `[E_local, M, H]` with
//! its per-expert counts, DeepGEMM's masked layout): `counts[count]` on the device and
//! `group_stride` M, group e being rows [e·M, e·M + counts[e]) (counts clamped to [0, M]; the
//! padding rows are neither read nor written), within rows ≥ count·M. `automatic` chooses the
//! schedule from the static rows (count·M): pass `decode` where the counts are known to be
//! small (a low-latency dispatch at decode).
struct gemm_groups {
  const int32_t* offsets = nullptr;
  int count = 1;
  int64_t rows = 0;
  int64_t pairs = 0;
  const int32_t* counts = nullptr;
  int64_t group_stride = 0;
};

//! C `[rows, columns]` with its row stride, and the epilogue.
template <class OutT>
struct gemm_output {
  OutT* data = nullptr;
  int64_t stride = 0;
  gemm_epilogue epilogue = gemm_epilogue::store;
  const float* row_scales = nullptr;     //!< scale_rows: the scales (e.g. ĝ = topk_weights `[T·K]`)
  const int32_t* scale_index = nullptr;  //!< scale_rows: optional row → scale index (e.g. sorted_pairs);
                                         //!< scatter_add: required, the pair of each row
  int top_k = 1;                         //!< scatter_add: pairs per token (K)
};

//! Runs the grouped GEMM (see the file comment) on `stream`. Capturable from the first call on,
//! in every capture mode (tested under the emulator, not yet on a GPU): besides the launch it makes only host queries (cudaGetDevice,
//! cudaDeviceGetAttribute, cudaFuncSetAttribute, cudaFuncGetAttributes, occupancy, the driver
//! entry point, cuTensorMapEncodeTiled), which enqueue, synchronise and allocate nothing, and
//! whose answers (grid size, kernel choice, weight map) hold for every replay.
//!
//! @tparam T            __nv_bfloat16 or __half: A and B
//! @tparam OutT         T or float: C
//! @tparam DecodeTiles  tile policy of the decode schedule; PrefillTiles of the sm_80
//!                      prefill kernel, HopperTiles of the sm_90 one
//! @param n  N, rows of each B_e (2I for swiglu); k: K, the reduction length
//! @return cudaErrorInvalidValue, launching nothing, when the schedule or the epilogue is not
//!         one of its enumerators; rows < 0; count ∉ [1, 512], or
//!         offsets and counts null with count ≠ 1; counts with offsets, group_stride < 1
//!         or rows < count·group_stride; N ∉ [1, 2³⁰] (swiglu: odd); K ∉ [8, 2³⁰] or not a
//!         multiple of 8;
//!         rows > 0 and a null A, B or C (or row_scales for scale_rows; row_scales or
//!         scale_index, or top_k < 1, for scatter_add), or gather_pairs or scale_index with
//!         pairs ∉ [1, 2³¹],
//!         top_k < 1; a pointer not 16-byte aligned, a stride not a multiple of 8 elements or
//!         shorter than its row (K for A and B, the output columns for C); the current
//!         device older than sm_80; cudaErrorInvalidDeviceFunction, launching nothing, when
//!         the code built for the device is older than compute_80 (the build's CUDA
//!         architectures lack 80 / 90a: its GEMM kernels are traps); else the status of the
//!         launch or of its runtime queries.
//!         rows = 0: success, nothing runs.
//! Offsets must be non-decreasing with offsets[count] ≤ rows (as `compact` writes them).
//! Pair indices: gather_pairs[r] and scale_index[r] name pair p ∈ [0, pairs) (P = T·K; e.g.
//! sorted_pairs of `compact`, or vLLM's sorted_token_ids), and with gather_pairs `a` holds
//! ⌈pairs / top_k⌉ rows (T), as C does for scatter_add. Any other value (−1 of a masked pair,
//! a padding sentinel ≥ P such as vLLM's P) is read as "no pair" and never dereferenced: A's
//! row is zeros, scale_rows writes zeros, scatter_add adds nothing.
template <class T, class OutT, class DecodeTiles = decode_tiles, class PrefillTiles = prefill_tiles,
          class HopperTiles = hopper_tiles>
[[nodiscard]] cudaError_t grouped_gemm(const gemm_a<T>& a, const gemm_b<T>& b, int n, int k, const gemm_groups& groups,
                                       const gemm_output<OutT>& out, gemm_schedule schedule = gemm_schedule::automatic,
                                       cudaStream_t stream = nullptr);

//! The grouped GEMM with e4m3 weights (W8A16): as above, with B_e = Q_e · s (weights.cuh; the
//! scales' layout follows N, K and, for swiglu, the two halves). Each 16-byte chunk of e4m3
//! codes is decoded exactly to T in registers before the tensor-core product (T × T → fp32);
//! block scales multiply each 128-deep k block's fp32 partial sum, per-channel scales the
//! final one. Every schedule runs the sm_80 kernel (prefill on Hopper too: no wgmma path yet),
//! with decode_e4m3_tiles and prefill_e4m3_tiles by default.
//! @return as above (strides and alignment counted in bytes: 16-byte rows), and
//!         cudaErrorInvalidValue for a scaling that is not an enumerator, K not a multiple of
//!         16, or a scaling other than none with null or misaligned scales.
//! @code
//! // Qwen3-30B-A3B-FP8, GEMM 1: W13 [E, 2I, H] e4m3 and its weight_scale_inv [E, 2I/128, H/128]
//! beam::device::gemm_b<__nv_fp8_e4m3> w13{q13, H, int64_t(2) * I * H, s13, beam::weight_scales::block_128};
//! beam::device::grouped_gemm<__nv_bfloat16, __nv_bfloat16>(xs, w13, 2 * I, H, groups, {act, I, swiglu});
//! @endcode
template <class T, class OutT, class DecodeTiles = decode_e4m3_tiles, class PrefillTiles = prefill_e4m3_tiles>
[[nodiscard]] cudaError_t grouped_gemm(const gemm_a<T>& a, const gemm_b<__nv_fp8_e4m3>& b, int n, int k,
                                       const gemm_groups& groups, const gemm_output<OutT>& out,
                                       gemm_schedule schedule = gemm_schedule::automatic, cudaStream_t stream = nullptr);

//! The grouped GEMM with e4m3 activations and weights (W8A8, Hopper): as above, with
//! A = Q_A · s_A in 1 × 128 groups (gemm_a's scales, weights.cuh; e.g. quantize_activations of
//! X, gathered through gather_pairs with its scales) and B_e = Q_e · s as above. wgmma multiplies
//! the codes (e4m3 × e4m3 → fp32) a 128-deep k block at a time, and each block's sums are added
//! times s_A(row) · s_B(block); per-channel scales multiply the final sums. Every schedule runs
//! the Hopper kernel: HopperTiles for prefill, DecodeTiles (also a Hopper policy) for decode,
//! each with BN ≤ 128 (a tile's weight rows in one block row per SwiGLU half; the accumulators
//! and a block's partial sums of a BN = 256 tile would not fit in registers). The tensor cores'
//! accumulation of a block's fp8 products is narrower than fp32 on the hardware (about 14 bits):
//! hence the promotion every 128 of K.
//! @tparam OutT  __nv_bfloat16, __half or float: C
//! @return as the W8A16 overload, and cudaErrorInvalidValue for null or misaligned A scales, a
//!         scale_stride < ⌈K/128⌉, or the prefill_sm80 schedule (there is no sm_80 W8A8
//!         kernel); cudaErrorInvalidDeviceFunction, launching nothing, where the Hopper kernel
//!         cannot run (a device older than sm_90, a build without sm_90a code, a driver
//!         without cuTensorMapEncodeTiled or one that declines the weights' tensor map).
//! @code
//! // DeepSeek-V3's expert GEMM 1: X quantised once, gathered through sorted_pairs with its scales
//! beam::device::quantize_activations(x, H, T, H, xq, H, xs, H / 128);
//! beam::device::gemm_a<__nv_fp8_e4m3> a{xq, H, sorted_pairs, K, xs, H / 128};
//! beam::device::grouped_gemm<__nv_bfloat16>(a, w13, 2 * I, H, groups, {act, I, swiglu});
//! @endcode
template <class OutT, class DecodeTiles = hopper_e4m3_decode_tiles, class HopperTiles = hopper_e4m3_tiles,
          std::enable_if_t<detail::is_tile_policy<DecodeTiles>::value, int> = 0>
[[nodiscard]] cudaError_t grouped_gemm(const gemm_a<__nv_fp8_e4m3>& a, const gemm_b<__nv_fp8_e4m3>& b, int n, int k,
                                       const gemm_groups& groups, const gemm_output<OutT>& out,
                                       gemm_schedule schedule = gemm_schedule::automatic, cudaStream_t stream = nullptr);

//! The grouped GEMM with B given as `[E, K, N]` (N contiguous: row k of group e at
//! b.data + e·expert_stride + k·stride), the "nn" product acc[r][j] = Σ_k A[r][k] · B_e[k][j]
//! (grouped_gemm is "nt", grouped_weight_grad "tn"), with grouped_gemm's groups, gathers and
//! epilogues. The backward multiplies by the forward's weights as they lie: ∂L/∂A = ∂L/∂Yp · W2_e
//! with W2 `[E, H, I]` (K = H, N = I), ∂L/∂X = [∂L/∂G | ∂L/∂U] · W13_e with W13 `[E, 2I, H]`
//! (K = 2I, N = H). Its B stage tiles are k-major: the sm_80 kernel loads them as mma fragments
//! with ldmatrix.trans; prefill on sm_90 runs the Hopper kernel, B's tiles arriving as TMA boxes
//! of 64 K rows × 64 columns, read N-major by wgmma (imm-trans-b 1), except with the swiglu
//! epilogue (the sm_80 kernel).
//! @return as grouped_gemm, with B's rows N long (stride ≥ N, a multiple of 8), and
//!         cudaErrorInvalidValue for N not a multiple of 8 (swiglu: N / 2) or scaled weights.
//! @code
//! // ∂L/∂A = ∂L/∂Yp · W2_e: W2 [E, H, I] read as [K = H, N = I]
//! beam::device::gemm_b<__nv_bfloat16> w2_kn{w2, I, int64_t(H) * I};
//! beam::device::grouped_gemm_nn<__nv_bfloat16, __nv_bfloat16>({d_yp, H}, w2_kn, I, H, groups, {d_act, I});
//! @endcode
template <class T, class OutT, class DecodeTiles = decode_tiles, class PrefillTiles = prefill_tiles,
          class HopperTiles = hopper_tiles>
[[nodiscard]] cudaError_t grouped_gemm_nn(const gemm_a<T>& a, const gemm_b<T>& b, int n, int k,
                                          const gemm_groups& groups, const gemm_output<OutT>& out,
                                          gemm_schedule schedule = gemm_schedule::automatic,
                                          cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/core/error.cuh"
#include "beam/core/launch.cuh"
#include "beam/gemm/detail/grouped_gemm_hopper_kernel.cuh"
#include "beam/gemm/detail/grouped_gemm_kernel.cuh"

namespace beam::device {

namespace detail {

//! Memo tags: a kernel's resident blocks at a block size and shared memory; whether the
//! Hopper kernel can run.
template <auto Kernel, int Threads, size_t Smem>
struct resident_blocks_tag {};
template <auto Kernel>
struct hopper_usable_tag {};
struct wgmma_code_tag {};

struct sm80_usable_tag {};

//! cudaSuccess when the current device is sm_80 or later (mma.sync, cp.async, ldmatrix) and
//! the code loaded for it was built for compute_80 or later. Otherwise nothing may launch:
//! cudaErrorInvalidValue for an older device; cudaErrorInvalidDeviceFunction when the build
//! gives this device only code for an older architecture, in which every GEMM kernel is a
//! trap (e.g. CMake's default sm_75 PTX, JIT-compiled for an H100: set
//! CMAKE_CUDA_ARCHITECTURES to 80, 90a or both); else the error of a query
//! (cudaErrorNoKernelImageForDevice: no code for this device at all). Memoised per device.
inline cudaError_t check_sm80_device() {
  int device = 0;
  if (const cudaError_t status = cudaGetDevice(&device); status != cudaSuccess) return status;
  enum verdict : int { unknown, usable, old_device, old_code };
  int known = unknown;
  const cudaError_t status = beam::detail::per_device_memo<sm80_usable_tag>(device, known, [&](int& result) {
    int major = 0;
    if (const cudaError_t s = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
        s != cudaSuccess) {
      return s;
    }
    cudaFuncAttributes attributes{};
    if (major >= 8) {
      if (const cudaError_t s = cudaFuncGetAttributes(&attributes, beam::detail::code_probe_kernel<>); s != cudaSuccess) return s;
    }
    result = major < 8 ? old_device : attributes.ptxVersion < 80 ? old_code : usable;
    return cudaSuccess;
  });
  if (status != cudaSuccess) return status;
  return known == usable ? cudaSuccess : known == old_device ? cudaErrorInvalidValue : cudaErrorInvalidDeviceFunction;
}

//! 16-byte aligned rows: the data and every row start (stride) on 16 bytes, rows no shorter than `row`.
template <class E>
bool aligned_rows(const E* data, int64_t stride, int64_t row) {
  return reinterpret_cast<uintptr_t>(data) % 16 == 0 && stride * int64_t(sizeof(E)) % 16 == 0 && stride >= row;
}

//! The weights' own conditions: bf16 / fp16 weights unscaled; e4m3 ones with K a multiple of 16
//! (whole 16-byte chunks) and, when scaled, a 4-byte aligned scales pointer.
template <class W>
bool valid_weights(const gemm_b<W>& b, int k) {
  if (!valid_weight_scales(b.scaling)) return false;
  if constexpr (sizeof(W) == 2) {
    return b.scaling == weight_scales::none;
  } else {
    static_assert(std::is_same_v<W, __nv_fp8_e4m3>, "T or e4m3 weights");
    return k % 16 == 0 && (b.scaling == weight_scales::none ||
                           (b.scales && reinterpret_cast<uintptr_t>(b.scales) % alignof(float) == 0));
  }
}

//! The arguments' conditions (grouped_gemm's @return); k_major_b: B's rows are N long.
template <class T, class W, class OutT>
cudaError_t check_grouped_gemm(const gemm_a<T>& a, const gemm_b<W>& b, int n, int k, const gemm_groups& groups,
                               const gemm_output<OutT>& out, gemm_schedule schedule, bool k_major_b) {
  const bool swiglu = out.epilogue == gemm_epilogue::swiglu;
  if (!valid_schedule(schedule) || unsigned(out.epilogue) > unsigned(gemm_epilogue::scatter_add)) {
    return cudaErrorInvalidValue;
  }
  if (groups.rows < 0 || groups.count < 1 || groups.count > beam::detail::gemm_max_groups) return cudaErrorInvalidValue;
  if (!groups.offsets && !groups.counts && groups.count != 1) return cudaErrorInvalidValue;
  if (groups.counts && (groups.offsets || groups.group_stride < 1 || groups.group_stride > groups.rows / groups.count)) {
    return cudaErrorInvalidValue;  // packed groups: offsets or counts, M ≥ 1, rows ≥ count·M
  }
  if (n < 1 || n > max_extent || k < 8 || k > max_extent || k % 8 != 0 || (swiglu && n % 2 != 0) ||
      !valid_weights(b, k) || (k_major_b && (swiglu ? n / 2 : n) % 8 != 0)) {
    return cudaErrorInvalidValue;
  }
  if (groups.rows == 0) return cudaSuccess;
  if (!a.data || !b.data || !out.data || a.top_k < 1) return cudaErrorInvalidValue;
  if ((a.gather_pairs || out.scale_index) && (groups.pairs < 1 || groups.pairs > int64_t(INT32_MAX) + 1)) {
    return cudaErrorInvalidValue;  // pair indices need the pair count that bounds them
  }
  if (out.epilogue == gemm_epilogue::scale_rows && !out.row_scales) return cudaErrorInvalidValue;
  if (out.epilogue == gemm_epilogue::scatter_add && (!out.row_scales || !out.scale_index || out.top_k < 1)) {
    return cudaErrorInvalidValue;
  }
  if constexpr (sizeof(T) == 1) {  // W8A8: A's scales; no sm_80 kernel
    if (!a.scales || reinterpret_cast<uintptr_t>(a.scales) % alignof(float) != 0 ||
        a.scale_stride < (k + weight_block - 1) / weight_block || schedule == gemm_schedule::prefill_sm80) {
      return cudaErrorInvalidValue;
    }
  } else if (a.scales) {
    return cudaErrorInvalidValue;  // scales belong to e4m3 activations
  }
  if (!aligned_rows(a.data, a.stride, k) || !aligned_rows(b.data, b.stride, k_major_b ? n : k) ||
      b.expert_stride * int64_t(sizeof(W)) % 16 != 0 ||
      !aligned_rows(out.data, out.stride, swiglu ? n / 2 : n)) {
    return cudaErrorInvalidValue;
  }
  return check_sm80_device();
}

//! Launches a persistent kernel of `Threads` threads: as many blocks as fit on the device at
//! once (with the largest dynamic shared memory it is ever launched with, SmemLimit: known
//! once per device), at most one per work item of the static bound. The kernel's shared
//! memory limit is set to SmemLimit on every call (a per-call value could lower it under
//! another thread's larger launch).
template <auto Kernel, int Threads, size_t SmemLimit, class... Args>
cudaError_t launch_persistent(size_t smem, int64_t work_bound, cudaStream_t stream, const Args&... args) {
  if (const cudaError_t status =
          cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(SmemLimit));
      status != cudaSuccess) {
    return status;
  }
  int device = 0, resident = 0;
  if (const cudaError_t status = cudaGetDevice(&device); status != cudaSuccess) return status;
  const cudaError_t status =
      beam::detail::per_device_memo<resident_blocks_tag<Kernel, Threads, SmemLimit>>(device, resident, [&](int& blocks) {
    int sms = 0, per_sm = 0;
    if (const cudaError_t s = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); s != cudaSuccess) {
      return s;
    }
    if (const cudaError_t s = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, Kernel, Threads, SmemLimit);
        s != cudaSuccess) {
      return s;
    }
    blocks = sms * (per_sm > 0 ? per_sm : 1);
    return cudaSuccess;
  });
  if (status != cudaSuccess) return status;
  return beam::detail::launch_dependent(Kernel, unsigned(work_bound < resident ? work_bound : resident), Threads, smem,
                                        stream, args...);
}

//! Whether `schedule` runs the decode kernel for `groups` (see gemm_schedule).
inline bool decode_schedule(gemm_schedule schedule, const gemm_groups& groups) {
  return schedule == gemm_schedule::decode ||
         (schedule == gemm_schedule::automatic && groups.rows <= int64_t(16) * groups.count);
}

template <class T, class W, class OutT>
beam::detail::grouped_gemm_params<T, OutT, W> params_of(const gemm_a<T>& a, const gemm_b<W>& b, int n, int k,
                                                        const gemm_groups& groups, const gemm_output<OutT>& out) {
  return {a.data,         a.stride,         a.scales,            a.scale_stride,
          a.gather_pairs,   a.top_k,          groups.pairs,
          b.data,         b.stride,         b.expert_stride,     b.scales,     b.scaling,
          groups.offsets, groups.counts,    groups.group_stride, groups.count, groups.rows,
          n,              k,                0,                   out.data,     out.stride,
          out.row_scales, out.scale_index,  out.top_k};
}

//! Work items of a BM × (output columns per tile) tiling: a bound on the row tiles (each
//! group may end in a partial tile) times params.column_tiles.
template <class T, class OutT, class W>
int64_t work_bound(const beam::detail::grouped_gemm_params<T, OutT, W>& params, int bm) {
  const int64_t row_tiles =
      (params.rows + bm - 1) / bm + (params.offsets || params.group_counts ? params.groups : 0);
  return row_tiles * params.column_tiles;
}

//! ⌈output columns / output columns per tile⌉ (BN / 2 output columns for swiglu).
template <class T, class OutT, class W>
int column_tiles(const beam::detail::grouped_gemm_params<T, OutT, W>& params, gemm_epilogue epilogue, int bn) {
  return epilogue == gemm_epilogue::swiglu ? (params.n / 2 + bn / 2 - 1) / (bn / 2) : (params.n + bn - 1) / bn;
}

template <class T, class OutT, class W, class Tiles, gemm_epilogue Epilogue, bool KMajorB>
cudaError_t launch_sm80(const beam::detail::grouped_gemm_params<T, OutT, W>& params, cudaStream_t stream) {
  using geo = beam::detail::gemm_geometry<Tiles, int(sizeof(W))>;
  return launch_persistent<beam::detail::grouped_gemm_kernel<T, OutT, Tiles, Epilogue, W, KMajorB>, geo::threads,
                           geo::smem_bytes(beam::detail::gemm_max_groups)>(geo::smem_bytes(params.groups),
                                                                           work_bound(params, geo::bm), stream, params);
}

//! A layer's decode GEMM in one launch of layer_gemm_kernel (decode_tiles, decode_e4m3_tiles for
//! e4m3 weights: the same BN, hence the same column tiles): the grouped problem
//! `p`, then `extras.dense` (rows 0: none), and with `extras.arrivals` the fused combine, which
//! needs both problems' N equal and at most layer_max_column_tiles column tiles. The arguments
//! are the layer's, checked by it as grouped_gemm and combine check theirs.
template <class T, class W, gemm_epilogue Epilogue>
cudaError_t launch_layer_gemm(beam::detail::grouped_gemm_params<T, T, W> p, beam::detail::layer_gemm_extras<T, W> extras,
                              cudaStream_t stream) {
  using tiles = std::conditional_t<sizeof(W) == 1, decode_e4m3_tiles, decode_tiles>;
  using geo = beam::detail::gemm_geometry<tiles, int(sizeof(W))>;
  static_assert(tiles::block_cols == decode_tiles::block_cols, "the layer counts column tiles of decode_tiles");
  p.column_tiles = column_tiles(p, Epilogue, geo::bn);
  extras.dense.column_tiles = column_tiles(extras.dense, Epilogue, geo::bn);
  const bool same_columns = extras.dense.rows == 0 || extras.dense.n == p.n;
  if (extras.arrivals && (!same_columns || p.column_tiles > beam::detail::layer_max_column_tiles)) {
    return cudaErrorInvalidValue;  // a combine over column tiles that do not match or cannot be counted
  }
  return launch_persistent<beam::detail::layer_gemm_kernel<T, tiles, Epilogue, W>, geo::threads,
                           geo::smem_bytes(beam::detail::gemm_max_groups)>(
      geo::smem_bytes(p.groups), work_bound(p, geo::bm) + work_bound(extras.dense, geo::bm), stream, p, extras);
}

//! The driver's cuTensorMapEncodeTiled (through the runtime: no link to libcuda), or null.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* function = nullptr;
    cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
    const cudaError_t status =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t status = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &function, cudaEnableDefault, &found);
#endif
    if (status != cudaSuccess) (void)cudaGetLastError();  // not this call's error: the sm_80 kernel runs instead
    return status == cudaSuccess && found == cudaDriverEntryPointSuccess
               ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function)
               : nullptr;
  }();
  return encode;
}

//! The Hopper kernel's map of B: a 4-D tensor (K, N / halves, halves, groups) with boxes of
//! (128 bytes of K, BN / halves, 1, 1), 128-byte swizzle, zeros outside; halves = 2 for swiglu
//! (gate rows W1, then up rows W3), else 1; e4m3 codes as bytes. False where the driver declines it.
template <class T, class OutT, class W>
bool encode_weight_map(CUtensorMap& map, const beam::detail::grouped_gemm_params<T, OutT, W>& params, int halves,
                       int bn) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (!encode) return false;
  const cuuint64_t half_rows = cuuint64_t(params.n / halves), row_bytes = cuuint64_t(params.b_stride) * sizeof(W);
  const cuuint64_t dims[4] = {cuuint64_t(params.k), half_rows, cuuint64_t(halves), cuuint64_t(params.groups)};
  // One group: any valid stride (it is never stepped over); several: the expert stride.
  const cuuint64_t group_bytes =
      params.groups == 1 ? half_rows * halves * row_bytes : cuuint64_t(params.b_expert_stride) * sizeof(W);
  const cuuint64_t strides[3] = {row_bytes, half_rows * row_bytes, group_bytes};
  const cuuint32_t box[4] = {cuuint32_t(128 / sizeof(W)), cuuint32_t(bn / halves), 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type = sizeof(W) == 1                  ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                                   : std::is_same_v<W, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                                               : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return encode(&map, type, 4, const_cast<W*>(params.b), dims, strides, box, element_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

//! The Hopper kernel's map of a k-major B (grouped_gemm_nn) `[E, K, N]`: a 4-D tensor (N, K, 1,
//! groups) with boxes of (64 columns: 128 bytes, 64 K rows, 1, 1), 128-byte swizzle, zeros
//! outside. False where the driver declines it.
template <class T, class OutT>
bool encode_k_major_weight_map(CUtensorMap& map, const beam::detail::grouped_gemm_params<T, OutT, T>& params) {
  static_assert(sizeof(T) == 2, "bf16 or fp16");
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (!encode) return false;
  const cuuint64_t row_bytes = cuuint64_t(params.b_stride) * sizeof(T), k = cuuint64_t(params.k);
  const cuuint64_t dims[4] = {cuuint64_t(params.n), k, 1, cuuint64_t(params.groups)};
  const cuuint64_t group_bytes = params.groups == 1 ? k * row_bytes : cuuint64_t(params.b_expert_stride) * sizeof(T);
  const cuuint64_t strides[3] = {row_bytes, k * row_bytes, group_bytes};
  const cuuint32_t box[4] = {64, 64, 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type =
      std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return encode(&map, type, 4, const_cast<T*>(params.b), dims, strides, box, element_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

//! Whether the Hopper kernel can run on `device`: the code loaded for it is sm_90 or later
//! (not the trap of an sm_80 build), with sm_90a's wgmma for W8A8 (wgmma_probe_kernel), and the
//! device grants the ring's shared memory. Memoised per kernel and device.
template <class T, class OutT, class Tiles, gemm_epilogue Epilogue, class W = T, bool KMajorB = false>
cudaError_t hopper_kernel_usable(int device, bool& usable) {
  constexpr auto kernel = beam::detail::grouped_gemm_hopper_kernel<T, OutT, Tiles, Epilogue, W, KMajorB>;
  enum verdict : int { unknown, yes, no };
  int known = unknown;
  const cudaError_t status = beam::detail::per_device_memo<hopper_usable_tag<kernel>>(device, known, [&](int& result) {
    cudaFuncAttributes attributes{}, probe{};
    int smem_optin = 0;
    if (const cudaError_t s = cudaFuncGetAttributes(&attributes, kernel); s != cudaSuccess) return s;
    if constexpr (sizeof(T) == 1) {
      if (const cudaError_t s = cudaFuncGetAttributes(&probe, beam::detail::wgmma_probe_kernel<>); s != cudaSuccess) {
        return s;
      }
    }
    if (const cudaError_t s = cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
        s != cudaSuccess) {
      return s;
    }
    const size_t needed = beam::detail::hopper_geometry<Tiles, beam::detail::element_bytes<W>>::smem_bytes(beam::detail::gemm_max_groups);
    const bool wgmma = sizeof(T) == 2 || probe.sharedSizeBytes > 0;
    result = attributes.ptxVersion >= 90 && wgmma && size_t(smem_optin) >= needed ? yes : no;
    return cudaSuccess;
  });
  usable = known == yes;
  return status;
}

//! Launches the Hopper kernel where it can run (hopper_kernel_usable, and the driver accepts
//! the weight map); otherwise `launched` is false (with success) and nothing was launched.
template <class T, class OutT, class Tiles, gemm_epilogue Epilogue, class W = T, bool KMajorB = false>
cudaError_t launch_hopper(beam::detail::grouped_gemm_params<T, OutT, W> params, cudaStream_t stream, bool& launched) {
  using geo = beam::detail::hopper_geometry<Tiles, beam::detail::element_bytes<W>>;
  launched = false;
  int device = 0;
  bool usable = false;
  if (const cudaError_t status = cudaGetDevice(&device); status != cudaSuccess) return status;
  if (const cudaError_t status = hopper_kernel_usable<T, OutT, Tiles, Epilogue, W, KMajorB>(device, usable);
      status != cudaSuccess || !usable) {
    return status;
  }
  CUtensorMap map;
  if constexpr (KMajorB) {
    if (!encode_k_major_weight_map(map, params)) return cudaSuccess;
  } else if (!encode_weight_map(map, params, Epilogue == gemm_epilogue::swiglu ? 2 : 1, geo::bn)) {
    return cudaSuccess;
  }
  launched = true;
  params.column_tiles = column_tiles(params, Epilogue, geo::bn);
  return launch_persistent<beam::detail::grouped_gemm_hopper_kernel<T, OutT, Tiles, Epilogue, W, KMajorB>, geo::threads,
                           geo::smem_bytes(beam::detail::gemm_max_groups)>(
      geo::smem_bytes(params.groups), work_bound(params, geo::bm), stream, map, params);
}

//! cudaSuccess where the W8A8 Hopper kernel runs (C of type OutT; hopper_kernel_usable of the
//! prefill policy, and the driver's tensor-map encoder), else cudaErrorInvalidDeviceFunction or
//! the error of a query: for a caller that must know before it launches anything.
template <class OutT>
cudaError_t check_w8a8_device() {
  int device = 0;
  bool usable = false;
  if (const cudaError_t status = cudaGetDevice(&device); status != cudaSuccess) return status;
  if (const cudaError_t status =
          hopper_kernel_usable<__nv_fp8_e4m3, OutT, hopper_e4m3_tiles, gemm_epilogue::swiglu, __nv_fp8_e4m3>(device,
                                                                                                             usable);
      status != cudaSuccess) {
    return status;
  }
  return usable && tensor_map_encoder() ? cudaSuccess : cudaErrorInvalidDeviceFunction;
}

//! W8A8 on the Hopper kernel of `Tiles`, or cudaErrorInvalidDeviceFunction where it cannot run.
template <class OutT, class Tiles, gemm_epilogue Epilogue>
cudaError_t run_w8a8(const beam::detail::grouped_gemm_params<__nv_fp8_e4m3, OutT, __nv_fp8_e4m3>& params,
                     cudaStream_t stream) {
  bool launched = false;
  const cudaError_t status = launch_hopper<__nv_fp8_e4m3, OutT, Tiles, Epilogue, __nv_fp8_e4m3>(params, stream, launched);
  return status != cudaSuccess || launched ? status : cudaErrorInvalidDeviceFunction;
}

//! The kernel of a schedule for one epilogue. W8A16, and a k-major B with the swiglu epilogue,
//! have no Hopper kernel yet: their prefill runs the sm_80 one; W8A8 has only the Hopper one
//! (DecodeTiles and HopperTiles Hopper policies).
template <class T, class OutT, class W, class DecodeTiles, class PrefillTiles, class HopperTiles,
          gemm_epilogue Epilogue, bool KMajorB>
cudaError_t run_schedule(beam::detail::grouped_gemm_params<T, OutT, W> params, bool decode, bool sm80_only,
                         cudaStream_t stream) {
  if constexpr (sizeof(T) == 1) {
    return decode ? run_w8a8<OutT, DecodeTiles, Epilogue>(params, stream)
                  : run_w8a8<OutT, HopperTiles, Epilogue>(params, stream);
  } else {
    if (decode) {
      params.column_tiles = column_tiles(params, Epilogue, DecodeTiles::block_cols);
      return launch_sm80<T, OutT, W, DecodeTiles, Epilogue, KMajorB>(params, stream);
    }
    if constexpr (std::is_same_v<W, T> && !(KMajorB && Epilogue == gemm_epilogue::swiglu)) {
      if (!sm80_only) {
        bool launched = false;
        const cudaError_t status = launch_hopper<T, OutT, HopperTiles, Epilogue, W, KMajorB>(params, stream, launched);
        if (status != cudaSuccess || launched) return status;
      }
    }
    params.column_tiles = column_tiles(params, Epilogue, PrefillTiles::block_cols);
    return launch_sm80<T, OutT, W, PrefillTiles, Epilogue, KMajorB>(params, stream);
  }
}

//! Every overload of grouped_gemm, and grouped_gemm_nn (KMajorB: B_e `[K, N]`).
template <class T, class OutT, class W, class DecodeTiles, class PrefillTiles, class HopperTiles, bool KMajorB = false>
cudaError_t run_grouped_gemm(const gemm_a<T>& a, const gemm_b<W>& b, int n, int k, const gemm_groups& groups,
                             const gemm_output<OutT>& out, gemm_schedule schedule, cudaStream_t stream) {
  if (const cudaError_t status = check_grouped_gemm(a, b, n, k, groups, out, schedule, KMajorB);
      status != cudaSuccess) {
    return status;
  }
  if (groups.rows == 0) return cudaSuccess;
  const auto params = params_of(a, b, n, k, groups, out);
  const bool decode = decode_schedule(schedule, groups);
  const bool sm80_only = schedule == gemm_schedule::prefill_sm80;
  switch (out.epilogue) {
    case gemm_epilogue::store:
      return run_schedule<T, OutT, W, DecodeTiles, PrefillTiles, HopperTiles, gemm_epilogue::store, KMajorB>(
          params, decode, sm80_only, stream);
    case gemm_epilogue::swiglu:
      return run_schedule<T, OutT, W, DecodeTiles, PrefillTiles, HopperTiles, gemm_epilogue::swiglu, KMajorB>(
          params, decode, sm80_only, stream);
    case gemm_epilogue::scale_rows:
      return run_schedule<T, OutT, W, DecodeTiles, PrefillTiles, HopperTiles, gemm_epilogue::scale_rows, KMajorB>(
          params, decode, sm80_only, stream);
    case gemm_epilogue::scatter_add:
      return run_schedule<T, OutT, W, DecodeTiles, PrefillTiles, HopperTiles, gemm_epilogue::scatter_add, KMajorB>(
          params, decode, sm80_only, stream);
  }
  return cudaErrorInvalidValue;  // not an epilogue
}

}  // namespace detail

template <class T, class OutT, class DecodeTiles, class PrefillTiles, class HopperTiles>
cudaError_t grouped_gemm(const gemm_a<T>& a, const gemm_b<T>& b, int n, int k, const gemm_groups& groups,
                         const gemm_output<OutT>& out, gemm_schedule schedule, cudaStream_t stream) {
  return detail::run_grouped_gemm<T, OutT, T, DecodeTiles, PrefillTiles, HopperTiles>(a, b, n, k, groups, out,
                                                                                      schedule, stream);
}

template <class T, class OutT, class DecodeTiles, class PrefillTiles>
cudaError_t grouped_gemm(const gemm_a<T>& a, const gemm_b<__nv_fp8_e4m3>& b, int n, int k, const gemm_groups& groups,
                         const gemm_output<OutT>& out, gemm_schedule schedule, cudaStream_t stream) {
  return detail::run_grouped_gemm<T, OutT, __nv_fp8_e4m3, DecodeTiles, PrefillTiles, hopper_tiles>(
      a, b, n, k, groups, out, schedule, stream);
}

template <class OutT, class DecodeTiles, class HopperTiles, std::enable_if_t<detail::is_tile_policy<DecodeTiles>::value, int>>
cudaError_t grouped_gemm(const gemm_a<__nv_fp8_e4m3>& a, const gemm_b<__nv_fp8_e4m3>& b, int n, int k,
                         const gemm_groups& groups, const gemm_output<OutT>& out, gemm_schedule schedule,
                         cudaStream_t stream) {
  return detail::run_grouped_gemm<__nv_fp8_e4m3, OutT, __nv_fp8_e4m3, DecodeTiles, void, HopperTiles>(
      a, b, n, k, groups, out, schedule, stream);
}

template <class T, class OutT, class DecodeTiles, class PrefillTiles, class HopperTiles>
cudaError_t grouped_gemm_nn(const gemm_a<T>& a, const gemm_b<T>& b, int n, int k, const gemm_groups& groups,
                            const gemm_output<OutT>& out, gemm_schedule schedule, cudaStream_t stream) {
  static_assert(sizeof(T) == 2, "B [E, K, N]: bf16 or fp16");
  return detail::run_grouped_gemm<T, OutT, T, DecodeTiles, PrefillTiles, HopperTiles, true>(a, b, n, k, groups, out,
                                                                                           schedule, stream);
}

}  // namespace beam::device
