//! @file
//! Storage types: `float`, `__half` and `__nv_bfloat16`, and `__nv_fp8_e4m3` for weights
//! (gemm/weights.cuh). Values are loaded and stored through float and every accumulation is
//! done in float (double in the host reference).
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

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

//! The exact value of an e4m3 code: (−1)^s · 2^(e−7) · (1 + m/8) for e > 0, (−1)^s · 2^−6 · m/8
//! for e = 0, NaN for S.1111.111.
//! @code
//! beam::e4m3_value(0x38)  // → 1.0f;  0x7e → 448;  0x01 → 2⁻⁹;  0xff → NaN
//! @endcode
BEAM_HOST_DEVICE inline float e4m3_value(uint8_t code) {
  const int exponent = (code >> 3) & 0xF, mantissa = code & 0x7;
  const float sign = code & 0x80 ? -1.0f : 1.0f;
  if (exponent == 0xF && mantissa == 0x7) return copysignf(NAN, sign);
  // (8 + m)·2^(e−10), or m·2^−9 for e = 0: exact in float.
  return sign * ldexpf(float(exponent == 0 ? mantissa : 8 + mantissa), (exponent == 0 ? 1 : exponent) - 10);
}

template <>
struct dtype_traits<__nv_fp8_e4m3> {
  static constexpr const char* name = "e4m3";
  static constexpr double tolerance = 0.0625;  //!< 2⁻⁴: one rounding of a 3-bit mantissa
  BEAM_HOST_DEVICE static float to_float(__nv_fp8_e4m3 x) { return e4m3_value(x.__x); }
  //! Round to nearest even; beyond ±448, and ±∞, saturate to ±448; NaN stays NaN.
  BEAM_HOST_DEVICE static __nv_fp8_e4m3 from_float(float x) { return __nv_fp8_e4m3(x); }
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
