//! @file
//! Device-level grouped GEMM over the experts: for every group (expert) e and every row r
//! of its range [offsets[e], offsets[e+1]),
//!   acc[r][j] = Σ_k A[r][k] · B_e[j][k],   j < N, k < K   (C_e = A_e · B_eᵀ, fp32 accumulation)
//! followed by a fused epilogue. The ranges stay on the device (the offsets of `compact`):
//! no host synchronisation, capturable in a CUDA graph; groups with no rows read no weights.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace beam::device {

//! What is written from acc (C has the row numbering of A).
enum class gemm_epilogue {
  store,       //!< C[r][j] = acc[r][j], j < N
  swiglu,      //!< C[r][i] = silu(acc[r][i]) · acc[r][N/2 + i], i < N/2: B = [W1; W3] (gate rows on
               //!< top), so the [rows, N] product never reaches memory
  scale_rows,  //!< C[r][j] = s · acc[r][j], s = row_scales[scale_index ? scale_index[r] : r]
  scatter_add, //!< C[p / top_k][j] += row_scales[p] · acc[r][j], p = scale_index[r] (a valid
               //!< pair, < T·K): rows added atomically into their token's row of C `[T, N]`
               //!< (initialised by the caller, e.g. zeros or the shared expert's output). Saves
               //!< the permuted rows and the combine, but the order of the additions, hence the
               //!< rounding, varies from run to run; a float C rounds once, bf16/fp16 at every
               //!< addition (and bf16 atomics are compare-and-swap loops before sm_90)
};

//! Which tile shape runs: `decode` (BM = 16: weight streaming for few rows per group),
//! `prefill` (BM = 128: tensor-core bound), or `automatic`: decode while the rows bound is at
//! most 16 per group, prefill beyond (a crossover not yet set from measurements).
enum class gemm_schedule { automatic, decode, prefill };

//! Tile policies: BM × BN output tile (BN rows of B), K in steps of 64, warps_m × warps_n
//! warps, `stages` tiles in flight (cp.async ring).
struct decode_tiles {
  static constexpr int block_rows = 16, block_cols = 64, warps_m = 1, warps_n = 4, stages = 6;
};
struct prefill_tiles {
  static constexpr int block_rows = 128, block_cols = 128, warps_m = 2, warps_n = 4, stages = 3;
};

//! A `[rows, K]`: row r is data[r] (contiguous, e.g. gathered rows Xp), or, with
//! gather_pairs, data[gather_pairs[r] / top_k] (X `[T, H]` read through `sorted_pairs`: no
//! gathered copy).
template <class T>
struct gemm_a {
  const T* data = nullptr;
  int64_t stride = 0;
  const int32_t* gather_pairs = nullptr;
  int top_k = 1;
};

//! B: row j of group e at data + e·expert_stride + j·stride, K contiguous (the `[E, N, K]`
//! layout of W13 `[E, 2I, H]` and W2 `[E, H, I]`).
template <class T>
struct gemm_b {
  const T* data = nullptr;
  int64_t stride = 0;
  int64_t expert_stride = 0;
};

//! The groups: `count` ranges given by `offsets[count + 1]` on the device, all within a
//! static bound `rows` (e.g. T·K) that sizes the grid; or, with offsets null, one group of
//! exactly `rows` rows (a dense GEMM: a router, a shared expert).
struct gemm_groups {
  const int32_t* offsets = nullptr;
  int count = 1;
  int64_t rows = 0;
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

//! Runs the grouped GEMM (see the file comment) on `stream`.
//!
//! @tparam T            __nv_bfloat16 or __half: A and B
//! @tparam OutT         T or float: C
//! @tparam DecodeTiles  tile policy of the decode schedule; PrefillTiles likewise
//! @param n  N, rows of each B_e (2I for swiglu); k: K, the reduction length
//! @return cudaErrorInvalidValue, launching nothing, when rows < 0; count ∉ [1, 512], or
//!         offsets null with count ≠ 1; N < 1 (swiglu: odd); K < 8 or not a multiple of 8;
//!         rows > 0 and a null A, B or C (or row_scales for scale_rows; row_scales or
//!         scale_index, or top_k < 1, for scatter_add),
//!         top_k < 1; a pointer not 16-byte aligned, a stride not a multiple of 8 elements or
//!         shorter than its row (K for A and B, the output columns for C); the current
//!         device older than sm_80; else the launch's status. rows = 0: success, nothing runs.
//! Offsets must be non-decreasing with offsets[count] ≤ rows, and gather_pairs[r] / top_k a
//! row of `a` (both as `compact` writes them).
template <class T, class OutT, class DecodeTiles = decode_tiles, class PrefillTiles = prefill_tiles>
[[nodiscard]] cudaError_t grouped_gemm(const gemm_a<T>& a, const gemm_b<T>& b, int n, int k, const gemm_groups& groups,
                                       const gemm_output<OutT>& out, gemm_schedule schedule = gemm_schedule::automatic,
                                       cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/gemm/detail/grouped_gemm_kernel.cuh"

namespace beam::device {

namespace detail {

//! cudaSuccess on a current device of sm_80 or later (mma.sync, cp.async, ldmatrix), else
//! cudaErrorInvalidValue (or the error of the query).
inline cudaError_t check_sm80_device() {
  int device = 0, major = 0;
  if (const cudaError_t status = cudaGetDevice(&device); status != cudaSuccess) return status;
  if (const cudaError_t status = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
      status != cudaSuccess) {
    return status;
  }
  return major >= 8 ? cudaSuccess : cudaErrorInvalidValue;
}

template <class T>
bool aligned_rows(const T* data, int64_t stride, int64_t row) {
  return reinterpret_cast<uintptr_t>(data) % 16 == 0 && stride % 8 == 0 && stride >= row;
}

template <class T, class OutT>
cudaError_t check_grouped_gemm(const gemm_a<T>& a, const gemm_b<T>& b, int n, int k, const gemm_groups& groups,
                               const gemm_output<OutT>& out) {
  const bool swiglu = out.epilogue == gemm_epilogue::swiglu;
  if (groups.rows < 0 || groups.count < 1 || groups.count > beam::detail::gemm_max_groups) return cudaErrorInvalidValue;
  if (!groups.offsets && groups.count != 1) return cudaErrorInvalidValue;
  if (n < 1 || k < 8 || k % 8 != 0 || (swiglu && n % 2 != 0)) return cudaErrorInvalidValue;
  if (groups.rows == 0) return cudaSuccess;
  if (!a.data || !b.data || !out.data || a.top_k < 1) return cudaErrorInvalidValue;
  if (out.epilogue == gemm_epilogue::scale_rows && !out.row_scales) return cudaErrorInvalidValue;
  if (out.epilogue == gemm_epilogue::scatter_add && (!out.row_scales || !out.scale_index || out.top_k < 1)) {
    return cudaErrorInvalidValue;
  }
  if (!aligned_rows(a.data, a.stride, k) || !aligned_rows(b.data, b.stride, k) || b.expert_stride % 8 != 0 ||
      !aligned_rows(out.data, out.stride, swiglu ? n / 2 : n)) {
    return cudaErrorInvalidValue;
  }
  return check_sm80_device();
}

//! Launches the persistent kernel of one tile policy: as many blocks as fit on the device at
//! once, at most one per work item of the static bound.
template <class T, class OutT, class Tiles, gemm_epilogue Epilogue>
cudaError_t launch_grouped_gemm(const beam::detail::grouped_gemm_params<T, OutT>& params, cudaStream_t stream) {
  using geo = beam::detail::gemm_geometry<Tiles>;
  const auto kernel = beam::detail::grouped_gemm_kernel<T, OutT, Tiles, Epilogue>;
  const size_t smem = geo::smem_bytes(params.groups);
  // The kernel's limit, the same for every call (a per-call value could lower it under
  // another thread's larger launch).
  if (const cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                      int(geo::smem_bytes(beam::detail::gemm_max_groups)));
      status != cudaSuccess) {
    return status;
  }
  int device = 0, sms = 0, per_sm = 0;
  if (const cudaError_t status = cudaGetDevice(&device); status != cudaSuccess) return status;
  if (const cudaError_t status = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
      status != cudaSuccess) {
    return status;
  }
  if (const cudaError_t status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, geo::threads, smem);
      status != cudaSuccess) {
    return status;
  }
  const int64_t row_tiles = params.offsets ? (params.rows + geo::bm - 1) / geo::bm + params.groups
                                           : (params.rows + geo::bm - 1) / geo::bm;
  const int64_t work_bound = row_tiles * params.column_tiles;
  const int64_t resident = int64_t(sms) * (per_sm > 0 ? per_sm : 1);
  const unsigned grid = unsigned(work_bound < resident ? work_bound : resident);
  kernel<<<grid, geo::threads, smem, stream>>>(params);
  return cudaGetLastError();
}

template <class T, class OutT, class Tiles>
cudaError_t run_grouped_gemm(beam::detail::grouped_gemm_params<T, OutT> params, gemm_epilogue epilogue,
                             cudaStream_t stream) {
  using geo = beam::detail::gemm_geometry<Tiles>;
  const int columns = epilogue == gemm_epilogue::swiglu ? params.n / 2 : params.n;
  const int tile_columns = epilogue == gemm_epilogue::swiglu ? geo::bn / 2 : geo::bn;
  params.column_tiles = (columns + tile_columns - 1) / tile_columns;
  switch (epilogue) {
    case gemm_epilogue::store:
      return launch_grouped_gemm<T, OutT, Tiles, gemm_epilogue::store>(params, stream);
    case gemm_epilogue::swiglu:
      return launch_grouped_gemm<T, OutT, Tiles, gemm_epilogue::swiglu>(params, stream);
    case gemm_epilogue::scale_rows:
      return launch_grouped_gemm<T, OutT, Tiles, gemm_epilogue::scale_rows>(params, stream);
    case gemm_epilogue::scatter_add:
      return launch_grouped_gemm<T, OutT, Tiles, gemm_epilogue::scatter_add>(params, stream);
  }
  return cudaErrorInvalidValue;  // not an epilogue
}

}  // namespace detail

template <class T, class OutT, class DecodeTiles, class PrefillTiles>
cudaError_t grouped_gemm(const gemm_a<T>& a, const gemm_b<T>& b, int n, int k, const gemm_groups& groups,
                         const gemm_output<OutT>& out, gemm_schedule schedule, cudaStream_t stream) {
  if (const cudaError_t status = detail::check_grouped_gemm(a, b, n, k, groups, out); status != cudaSuccess) {
    return status;
  }
  if (groups.rows == 0) return cudaSuccess;
  const beam::detail::grouped_gemm_params<T, OutT> params{
      a.data, a.stride, a.gather_pairs, a.top_k, b.data, b.stride, b.expert_stride, groups.offsets, groups.count,
      groups.rows, n, k, 0, out.data, out.stride, out.row_scales, out.scale_index, out.top_k};
  const bool decode = schedule == gemm_schedule::decode ||
                      (schedule == gemm_schedule::automatic && groups.rows <= int64_t(16) * groups.count);
  return decode ? detail::run_grouped_gemm<T, OutT, DecodeTiles>(params, out.epilogue, stream)
                : detail::run_grouped_gemm<T, OutT, PrefillTiles>(params, out.epilogue, stream);
}

}  // namespace beam::device
