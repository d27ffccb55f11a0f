// Floating-point formats and rounding as PTX defines them: one rounding routine for every
// narrowing conversion, and round-to-odd arithmetic in x87 long double (64-bit significand)
// so that a result rounded once more to f64, f32, f16 or bf16 is correctly rounded in every
// mode (64 >= 53 + 2 bits).
#pragma once

#include <cstdint>

#include "ptx.hpp"

namespace emu {

struct float_format {
  int mantissa_bits, exponent_bits;
  //! No infinity: the all-ones exponent holds normal values, all ones in exponent and fraction
  //! is the only NaN (e4m3: PTX ISA "Alternate Floating-Point Data Formats").
  bool finite_only = false;
};
constexpr float_format f16_format{10, 5}, bf16_format{7, 8}, f32_format{23, 8}, f64_format{52, 11};
//! The 8-bit formats of .e4m3x2 / .e5m2x2 (and wgmma's .e4m3 / .e5m2).
constexpr float_format e4m3_format{3, 4, true}, e5m2_format{2, 5};

//! The format of a floating-point ptype (f16, bf16, f32, f64; a packed pair: its halves').
inline float_format format_of(ptype t) {
  switch (t) {
    case ptype::f16: case ptype::f16x2: return f16_format;
    case ptype::bf16: case ptype::bf16x2: return bf16_format;
    case ptype::f64: return f64_format;
    default: return f32_format;
  }
}

//! The exact value of an encoding.
long double decode_float(uint64_t bits, float_format f);

//! Rounds x to the format with rounding rn (ties to even), rz, rm, rp or rna (ties away):
//! subnormals kept, overflow to infinity (a finite-only format: NaN) or the largest finite value
//! as the mode directs, NaN to the canonical NaN (all exponent and fraction bits set, sign
//! clear). `satfinite`: ±infinity and every overflow give the sign-preserved largest finite value.
uint64_t encode_float(long double x, float_format f, rounding r, bool satfinite = false);

//! Sign-preserving flush of a subnormal encoding to zero (.ftz).
uint64_t flush_subnormal(uint64_t bits, float_format f);

//! Whether an encoding is a NaN.
bool is_nan(uint64_t bits, float_format f);

//! a op b (op: '+', '*', '/', 's' square root of a) and a * b + c, rounded to odd in long
//! double: exact results stay exact, inexact ones keep a sticky low bit.
long double odd_add(long double a, long double b);
long double odd_mul(long double a, long double b);
long double odd_div(long double a, long double b);
long double odd_sqrt(long double a);
long double odd_fma(long double a, long double b, long double c);

//! Rounds x to an integral value: rni (nearest even), rzi, rmi, rpi.
long double round_integral(long double x, rounding r);

//! The value of every f16 encoding, exactly (65536 entries).
const double* f16_values();

//! The value of a 16-bit float (f16, or bf16 when `bf16`) in the low bits, exactly.
inline double half_value(uint64_t bits16, bool bf16) {
  if (bf16) {  // the upper half of an f32
    const uint32_t u = static_cast<uint32_t>(bits16 & 0xFFFF) << 16;
    float v;
    __builtin_memcpy(&v, &u, 4);
    return v;
  }
  static const double* const f16 = f16_values();
  return f16[bits16 & 0xFFFF];
}

//! The f16 nearest (ties to even) to the f32 whose bits are `f` (not a NaN), on the bits: the
//! exponent rebased and the 13 dropped bits rounded (a carry may reach the exponent, up to
//! infinity); below the f16 normals the float addition of 2^-1 aligns the value to the subnormal
//! spacing 2^-24 with the host's rounding to nearest.
inline uint32_t f16_nearest(uint32_t f) {
  const uint32_t sign = f >> 16 & 0x8000u, a = f & 0x7FFFFFFFu;
  if (a >= 0x47800000u) return sign | 0x7C00u;  // ≥ 2^16 (and infinity): infinite
  if (a < 0x38800000u) {  // < 2^-14
    float v;
    __builtin_memcpy(&v, &a, 4);
    v += 0.5f;
    uint32_t u;
    __builtin_memcpy(&u, &v, 4);
    return sign | (u - 0x3F000000u);
  }
  return sign | ((a - 0x38000000u + 0xFFFu + (a >> 13 & 1)) >> 13);
}

}  // namespace emu
