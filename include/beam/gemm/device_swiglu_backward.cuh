//! @file
//! Device-level backward of the SwiGLU activation A = silu(G) ⊙ U (grouped_gemm's swiglu
//! epilogue, B = [W1; W3]), from the pre-activations [G | U] `[rows, 2N]` and ∂L/∂A `[rows, N]`:
//!   ∂L/∂G = ∂L/∂A ⊙ U ⊙ silu'(G),   ∂L/∂U = ∂L/∂A ⊙ silu(G),   silu'(g) = σ(g)(1 + g(1 − σ(g)))
//! in float, rounded once to T: [∂L/∂G | ∂L/∂U] is the A operand of the GEMMs that follow
//! (∂L/∂X = [∂L/∂G | ∂L/∂U] · W13_e, ∂L/∂W13_e = [∂L/∂G | ∂L/∂U]_eᵀ · X_e).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "beam/gemm/detail/swiglu_backward_kernel.cuh"

namespace beam::device {

//! [∂L/∂G | ∂L/∂U] of rows [0, rows') (file comment), rows' = rows, or min(*row_count, rows)
//! with `row_count` (on the device, e.g. offsets + E of a compaction: the rows the groups hold
//! within their static bound). `d_gu` may be `gu` itself with the same stride (in place);
//! otherwise the two must not overlap.
//!
//! @tparam T  __nv_bfloat16 or __half
//! @return cudaErrorInvalidValue, launching nothing, when rows < 0, N ∉ [8, 2²⁹] or not a multiple
//!         of 8, or rows > 0 and an array null, not 16-byte aligned or with a stride not a
//!         multiple of 8 or shorter than its row (2N, N, 2N), or d_gu = gu with another stride;
//!         else the launch's status.
//!         rows = 0: success, nothing runs.
template <class T>
[[nodiscard]] cudaError_t swiglu_backward(const T* gu, int64_t gu_stride, const T* d_act, int64_t d_act_stride,
                                          int64_t rows, int n, T* d_gu, int64_t d_gu_stride,
                                          const int32_t* row_count = nullptr, cudaStream_t stream = nullptr) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, "bf16 or fp16");
  namespace bd = beam::detail;
  if (rows < 0 || n < 1 || n % bd::vector_elements<T> != 0 || n > (1 << 29)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!gu || !d_act || !d_gu || !bd::vector_rows(gu, gu_stride, 2 * int64_t(n)) || !bd::vector_rows(d_act, d_act_stride, n) ||
      !bd::vector_rows(static_cast<const T*>(d_gu), d_gu_stride, 2 * int64_t(n))) {
    return cudaErrorInvalidValue;
  }
  if (static_cast<const T*>(d_gu) == gu && d_gu_stride != gu_stride) return cudaErrorInvalidValue;  // in place
  constexpr int threads = 256;
  const bd::swiglu_backward_params<T> params{gu, gu_stride, d_act, d_act_stride, d_gu, d_gu_stride, rows, row_count, n};
  return bd::launch_dependent(bd::swiglu_backward_kernel<T>,
                              bd::thread_per_item_grid(rows * (n / bd::vector_elements<T>), threads), threads, 0,
                              stream, params);
}

}  // namespace beam::device
