//! @file
//! Device-level weight gradients of the experts: for every group (expert) e and its rows
//! [offsets[e], offsets[e+1]) (a compaction's, on the device),
//!   C_e[i][j] = Σ_r A[r][i] · B[r][j],   i < M, j < N   (C_e = A_eᵀ · B_e, fp32 accumulation)
//! the backward's ∂L/∂W2_e = ∂L/∂Yp_eᵀ · A_e (M = H, N = I) and ∂L/∂W13_e = [∂L/∂G | ∂L/∂U]_eᵀ · X_e
//! (M = 2I, N = H, X's rows gathered through sorted_pairs). The rows are summed in their order,
//! whatever the launch: bitwise deterministic. An expert without rows gets zeros.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "beam/core/error.cuh"
#include "beam/gemm/device_grouped_gemm.cuh"

namespace beam::device {

//! The largest M grouped_weight_grad takes: its 64-row tiles of M fill one grid dimension.
inline constexpr int max_weight_grad_m = 65535 * 64;

//! C_e = A_eᵀ · B_e for every group (file comment), the offsets read clamped to [0, groups.rows]
//! (the static bound of the rows, as grouped_gemm), or with offsets null one group of exactly
//! groups.rows rows (a dense layer's ∂L/∂W = ∂L/∂Yᵀ · X, e.g. a shared expert's): `a` `[rows, M]` (row r at a.data + r·a.stride;
//! no gather, no scales), `b` `[rows, N]` with optionally `gather_pairs` (row r is then
//! b.data[gather_pairs[r] / b.top_k], a zero row where gather_pairs[r] is not a pair index in
//! [0, groups.pairs)), C_e `[M, N]` at c + e·c_group_stride with row stride c_stride. One block
//! per (expert, 64 × 64 tile of C_e) on the tensor cores (mma.sync, sm_80 and later); where the
//! code loaded for an sm_90 device has sm_90a's wgmma, one block per (expert, 128 × 128 tile),
//! warp-specialised, with wgmma on M-major A and N-major B tiles (the Hopper kernel).
//!
//! @tparam T     __nv_bfloat16 or __half
//! @tparam OutT  float, __nv_bfloat16 or __half
//! @return cudaErrorInvalidValue, launching nothing, when M ∉ [8, max_weight_grad_m] or N ∉ [8, 2³⁰], or
//!         either not a multiple of 8 (M tiles one grid dimension);
//!         groups.count ∉ [1, 65535], null groups.offsets with count ≠ 1, groups.counts (packed
//!         groups are not taken) or groups.rows < 0; a null,
//!         misaligned (16 bytes) or narrow (stride < M or N, or not a multiple of 8) operand; A
//!         with a gather or scales; a gather with groups.pairs < 0 or b.top_k < 1; a null or
//!         misaligned C, c_stride < N or not a multiple of 8, or c_group_stride < M·c_stride or
//!         not a multiple of 8, or (these checked) a device older than sm_80;
//!         cudaErrorInvalidDeviceFunction where the code built for the device is older than
//!         compute_80 (as grouped_gemm); else the launch's status.
template <class T, class OutT>
[[nodiscard]] cudaError_t grouped_weight_grad(const gemm_a<T>& a, const gemm_a<T>& b, int m, int n,
                                              const gemm_groups& groups, OutT* c, int64_t c_stride,
                                              int64_t c_group_stride, cudaStream_t stream = nullptr);

}  // namespace beam::device

#include "beam/gemm/detail/weight_grad_hopper_kernel.cuh"
#include "beam/gemm/detail/weight_grad_kernel.cuh"

namespace beam::device {

namespace detail {

struct weight_grad_hopper_tag {};

//! Whether the Hopper kernel of grouped_weight_grad runs on the current device: sm_90 or later,
//! the code loaded for it with sm_90a's wgmma (wgmma_probe_kernel), and the ring's shared memory
//! granted. Memoised per device.
inline cudaError_t weight_grad_hopper_usable(bool& usable) {
  enum verdict : int { unknown, yes, no };
  int device = 0, known = unknown;
  if (const cudaError_t status = cudaGetDevice(&device); status != cudaSuccess) return status;
  const cudaError_t status = beam::detail::per_device_memo<weight_grad_hopper_tag>(device, known, [&](int& result) {
    int major = 0, smem_optin = 0;
    if (const cudaError_t s = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device); s != cudaSuccess) {
      return s;
    }
    if (const cudaError_t s = cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
        s != cudaSuccess) {
      return s;
    }
    cudaFuncAttributes probe{};
    if (major >= 9) {
      if (const cudaError_t s = cudaFuncGetAttributes(&probe, beam::detail::wgmma_probe_kernel<>); s != cudaSuccess) {
        return s;
      }
    }
    result = major >= 9 && probe.sharedSizeBytes > 0 &&
                     size_t(smem_optin) >= beam::detail::weight_grad_hopper_tiles::smem_bytes
                 ? yes
                 : no;
    return cudaSuccess;
  });
  usable = known == yes;
  return status;
}

}  // namespace detail

template <class T, class OutT>
cudaError_t grouped_weight_grad(const gemm_a<T>& a, const gemm_a<T>& b, int m, int n, const gemm_groups& groups,
                                OutT* c, int64_t c_stride, int64_t c_group_stride, cudaStream_t stream) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "bf16 or fp16 operands");
  static_assert(std::is_same_v<OutT, float> || std::is_same_v<OutT, __nv_bfloat16> || std::is_same_v<OutT, __half>,
                "float, bf16 or fp16 gradients");
  namespace bd = beam::detail;
  const auto extent_ok = [](int e) { return e >= 8 && e <= max_extent && e % 8 == 0; };
  const auto rows_ok = [](const void* p, int64_t stride, int width) {
    return p && reinterpret_cast<uintptr_t>(p) % 16 == 0 && stride % 8 == 0 && stride >= width;
  };
  using tiles = bd::weight_grad_tiles;
  static_assert(max_weight_grad_m == 65535 * tiles::block_m, "one grid dimension of M tiles");
  if (!extent_ok(m) || !extent_ok(n) || m > max_weight_grad_m || groups.count < 1 || groups.count > 65535 ||
      (!groups.offsets && groups.count != 1) || groups.counts || groups.rows < 0) {
    return cudaErrorInvalidValue;
  }
  if (!rows_ok(a.data, a.stride, m) || a.gather_pairs || a.scales || !rows_ok(b.data, b.stride, n) || b.scales) {
    return cudaErrorInvalidValue;
  }
  if (b.gather_pairs && (groups.pairs < 0 || b.top_k < 1)) return cudaErrorInvalidValue;
  if (!rows_ok(c, c_stride, n) || c_group_stride % 8 != 0 || c_group_stride < int64_t(m) * c_stride) {
    return cudaErrorInvalidValue;
  }
  if (const cudaError_t status = detail::check_sm80_device(); status != cudaSuccess) return status;
  const bd::weight_grad_params<T, OutT> params{a.data,         a.stride,    b.data, b.stride, b.gather_pairs,
                                               b.top_k,        groups.pairs, groups.offsets, groups.rows, m,
                                               n,              c,           c_stride,       c_group_stride};
  bool hopper = false;
  if (const cudaError_t status = detail::weight_grad_hopper_usable(hopper); status != cudaSuccess) return status;
  if (hopper) {
    using wide = bd::weight_grad_hopper_tiles;
    constexpr auto kernel = bd::grouped_weight_grad_hopper_kernel<T, OutT>;
    if (const cudaError_t status =
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(wide::smem_bytes));
        status != cudaSuccess) {
      return status;
    }
    const dim3 grid(unsigned((n + wide::block_n - 1) / wide::block_n), unsigned((m + wide::block_m - 1) / wide::block_m),
                    unsigned(groups.count));
    return bd::launch_dependent(kernel, grid, wide::threads, wide::smem_bytes, stream, params);
  }
  const dim3 grid(unsigned((n + tiles::block_n - 1) / tiles::block_n), unsigned((m + tiles::block_m - 1) / tiles::block_m),
                  unsigned(groups.count));
  return bd::launch_dependent(bd::grouped_weight_grad_kernel<T, OutT>, grid, tiles::threads, 0, stream, params);
}

}  // namespace beam::device
