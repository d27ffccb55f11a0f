//! @file
//! Storage types: `float`, `__half` and `__nv_bfloat16`. Values are loaded and stored
//! through float and every accumulation is done in float (double in the host reference).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "beam/core/macros.cuh"

namespace beam {

//! Per-storage-type facts. Specialised for `float`, `__half` and `__nv_bfloat16`.
//!
//! - `to_float(x)` / `from_float(f)`: exact widening / round-to-nearest-even narrowing.
//! - `tolerance`: the relative error ‖out − ref‖₂ / ‖ref‖₂ a result stored in this type is
//!   held to against the double-accumulating reference.
//!
//! @code
//! beam::dtype_traits<__nv_bfloat16>::from_float(1.00390625f)  // → 1.0 (ties to even)
//! @endcode
template <class T>
struct dtype_traits;

template <>
struct dtype_traits<float> {
  static constexpr const char* name = "fp32";
  static constexpr double tolerance = 1e-5;
  BEAM_HOST_DEVICE static float to_float(float x) { return x; }
  BEAM_HOST_DEVICE static float from_float(float x) { return x; }
};

template <>
struct dtype_traits<__half> {
  static constexpr const char* name = "fp16";
  static constexpr double tolerance = 2e-3;
  BEAM_HOST_DEVICE static float to_float(__half x) { return __half2float(x); }
  BEAM_HOST_DEVICE static __half from_float(float x) { return __float2half_rn(x); }
};

template <>
struct dtype_traits<__nv_bfloat16> {
  static constexpr const char* name = "bf16";
  static constexpr double tolerance = 1e-2;
  BEAM_HOST_DEVICE static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  BEAM_HOST_DEVICE static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};

//! `dtype_traits<T>::to_float(x)`.
template <class T>
BEAM_HOST_DEVICE inline float to_float(T x) {
  return dtype_traits<T>::to_float(x);
}

//! `dtype_traits<T>::from_float(x)`.
template <class T>
BEAM_HOST_DEVICE inline T from_float(float x) {
  return dtype_traits<T>::from_float(x);
}

}  // namespace beam
