//! @file
//! Kernel of beam::device::swiglu_backward: one thread per 16-byte vector of ∂L/∂A, in float.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/launch.cuh"
#include "beam/core/math.cuh"
#include "beam/core/warp.cuh"
#include "beam/permute/detail/vector_rows.cuh"

namespace beam::detail {

template <class T>
struct swiglu_backward_params {
  const T* gu;  //!< [G | U] `[rows, 2N]`
  int64_t gu_stride;
  const T* d_act;  //!< ∂L/∂A `[rows, N]`
  int64_t d_act_stride;
  T* d_gu;  //!< [∂L/∂G | ∂L/∂U] `[rows, 2N]`, may be gu
  int64_t d_gu_stride;
  int64_t rows;              //!< the static bound
  const int32_t* row_count;  //!< optional: rows min(*row_count, rows) (clamped at 0)
  int n;
};

template <class T>
__global__ void swiglu_backward_kernel(const swiglu_backward_params<T> p) {
  wait_for_dependencies();
  launch_dependents();
  constexpr int width = vector_elements<T>;
  int64_t rows = p.rows;
  if (p.row_count) rows = min(max(int64_t(*p.row_count), int64_t(0)), rows);
  const int64_t vectors_per_row = p.n / width, vectors = rows * vectors_per_row;
  for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < vectors; v += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = v / vectors_per_row, i = (v % vectors_per_row) * width;
    const T* gu = p.gu + r * p.gu_stride;
    // Every load before the first store: d_gu may be gu.
    const float_vector<T> g = float_vector<T>::load(gu + i, false), u = float_vector<T>::load(gu + p.n + i, false),
                          da = float_vector<T>::load(p.d_act + r * p.d_act_stride + i);
    float_vector<T> dg, du;
#pragma unroll
    for (int j = 0; j < width; ++j) {
      dg.v[j] = da.v[j] * u.v[j] * silu_grad(g.v[j]);
      du.v[j] = da.v[j] * silu(g.v[j]);
    }
    T* d_gu = p.d_gu + r * p.d_gu_stride;
    dg.store(d_gu + i);
    du.store(d_gu + p.n + i);
  }
}

}  // namespace beam::detail
