// Compiled with -frounding-math: the rounding mode is switched around single operations.
#include "numeric.hpp"

#include <cfloat>

// The arithmetic below reads the x87 extended format (a 64-bit significand) directly.
static_assert(LDBL_MANT_DIG == 64, "the emulator's float routines need x87 80-bit long double");

#include <cfenv>
#include <cmath>
#include <cstring>
#include <vector>

namespace emu {

namespace {

long double decode_generic(uint64_t bits, float_format f) {
  const int m = f.mantissa_bits, e = f.exponent_bits;
  const bool negative = bits >> (m + e) & 1;
  const uint64_t exponent = bits >> m & ((uint64_t(1) << e) - 1);
  const uint64_t fraction = bits & ((uint64_t(1) << m) - 1);
  const int bias = (1 << (e - 1)) - 1;
  long double v;
  if (f.finite_only && exponent == (uint64_t(1) << e) - 1 && fraction == (uint64_t(1) << m) - 1) {
    v = NAN;
  } else if (exponent == (uint64_t(1) << e) - 1 && !f.finite_only) {
    v = fraction ? NAN : INFINITY;
  } else if (exponent == 0) {
    v = std::ldexp(static_cast<long double>(fraction), 1 - bias - m);
  } else {
    v = std::ldexp(static_cast<long double>(fraction | (uint64_t(1) << m)), static_cast<int>(exponent) - bias - m);
  }
  return negative ? -v : v;
}

}  // namespace

long double decode_float(uint64_t bits, float_format f) {
  if (f.mantissa_bits == 23 && f.exponent_bits == 8) {
    const uint32_t u = static_cast<uint32_t>(bits);
    float v;
    std::memcpy(&v, &u, 4);
    return v;
  }
  if (f.mantissa_bits == 52) {
    double v;
    std::memcpy(&v, &bits, 8);
    return v;
  }
  if (f.mantissa_bits == 7 && f.exponent_bits == 8) {  // bf16: the top half of an f32
    const uint32_t u = static_cast<uint32_t>(bits & 0xFFFF) << 16;
    float v;
    std::memcpy(&v, &u, 4);
    return v;
  }
  if (f.mantissa_bits == 10 && f.exponent_bits == 5) {
    static const std::vector<long double> f16 = [] {
      std::vector<long double> table(65536);
      for (uint32_t i = 0; i < 65536; ++i) table[i] = decode_generic(i, f16_format);
      return table;
    }();
    return f16[bits & 0xFFFF];
  }
  return decode_generic(bits, f);
}

uint64_t encode_float(long double x, float_format f, rounding r, bool satfinite) {
  const int m = f.mantissa_bits, e = f.exponent_bits;
  const uint64_t sign = std::signbit(x) ? uint64_t(1) << (m + e) : 0;
  const uint64_t infinity = ((uint64_t(1) << e) - 1) << m, nan = infinity | ((uint64_t(1) << m) - 1);
  // The first magnitude beyond the largest finite value: infinity, or a finite-only format's NaN.
  const uint64_t beyond = f.finite_only ? nan : infinity;
  const uint64_t overflow = f.finite_only ? nan : sign | infinity;
  if (std::isnan(x)) return nan;
  if (std::isinf(x)) return satfinite ? sign | (beyond - 1) : overflow;
  if (x == 0) return sign;
  // |x| = significand * 2^(exp2 - 64), the significand's top bit set: the x87 extended format
  // holds exactly that (64-bit significand, 15-bit exponent biased by 16383).
  uint64_t significand;
  uint16_t sign_exponent;
  std::memcpy(&significand, &x, 8);
  std::memcpy(&sign_exponent, reinterpret_cast<const char*>(&x) + 8, 2);
  int exp2 = (sign_exponent & 0x7FFF) - 16382;
  if ((sign_exponent & 0x7FFF) == 0) {  // an x87 denormal: normalise
    const int shift = __builtin_clzll(significand);
    significand <<= shift;
    exp2 = 1 - 16382 - shift;
  }
  const int bias = (1 << (e - 1)) - 1, emin = 1 - bias;
  const int exponent = std::max(exp2 - 1, emin);  // of the result's leading bit (emin: subnormal)
  // The result counts units of 2^(exponent - m): drop `shift` low bits of the significand.
  const int shift = exponent - m - (exp2 - 64);
  uint64_t n;
  bool above_half, at_half, inexact;
  if (shift >= 64) {
    n = 0;
    inexact = true;
    at_half = shift == 64 && significand == (uint64_t(1) << 63);
    above_half = shift == 64 && significand > (uint64_t(1) << 63);
  } else {
    n = significand >> shift;
    const uint64_t rest = significand & ((uint64_t(1) << shift) - 1);
    const uint64_t half = uint64_t(1) << (shift - 1);
    inexact = rest != 0;
    at_half = rest == half;
    above_half = rest > half;
  }
  bool up = false;
  switch (r) {
    case rounding::rz: break;
    case rounding::rm: up = sign && inexact; break;
    case rounding::rp: up = !sign && inexact; break;
    case rounding::rna: up = above_half || at_half; break;
    default: up = above_half || (at_half && (n & 1)); break;
  }
  n += up;
  // The encoding is monotonic in the value: a carry out of the fraction moves to the exponent,
  // and a subnormal (exponent == emin, n < 2^m) encodes as n itself.
  const uint64_t magnitude = n < (uint64_t(1) << m) ? n : (static_cast<uint64_t>(exponent + bias) << m) + n - (uint64_t(1) << m);
  if (magnitude >= beyond) {
    const bool to_infinity = !satfinite && (r == rounding::rn || r == rounding::rna || r == rounding::none ||
                                            (r == rounding::rp && !sign) || (r == rounding::rm && sign));
    return to_infinity ? overflow : sign | (beyond - 1);
  }
  return sign | magnitude;
}

uint64_t flush_subnormal(uint64_t bits, float_format f) {
  const uint64_t exponent_mask = ((uint64_t(1) << f.exponent_bits) - 1) << f.mantissa_bits;
  if ((bits & exponent_mask) == 0) return bits & (uint64_t(1) << (f.mantissa_bits + f.exponent_bits));
  return bits;
}

bool is_nan(uint64_t bits, float_format f) {
  const uint64_t fraction_mask = (uint64_t(1) << f.mantissa_bits) - 1;
  const uint64_t exponent_mask = ((uint64_t(1) << f.exponent_bits) - 1) << f.mantissa_bits;
  if (f.finite_only) return (bits & (exponent_mask | fraction_mask)) == (exponent_mask | fraction_mask);
  return (bits & exponent_mask) == exponent_mask && (bits & fraction_mask) != 0;
}

namespace {

template <class Op>
long double round_to_odd(Op op) {
  const int saved = std::fegetround();
  std::fesetround(FE_TOWARDZERO);
  std::feclearexcept(FE_INEXACT);
  volatile long double r = op();
  const bool inexact = std::fetestexcept(FE_INEXACT) != 0;
  std::fesetround(saved);
  long double v = r;
  if (inexact && std::isfinite(v)) {
    uint64_t significand;
    std::memcpy(&significand, &v, 8);  // x87 extended: the low 8 bytes are the significand
    if ((significand & 1) == 0) v = std::nextafter(v, std::signbit(v) ? -INFINITY : INFINITY);
  }
  return v;
}

}  // namespace

long double odd_add(long double a, long double b) { return round_to_odd([&] { return a + b; }); }
long double odd_mul(long double a, long double b) { return round_to_odd([&] { return a * b; }); }
long double odd_div(long double a, long double b) { return round_to_odd([&] { return a / b; }); }
long double odd_sqrt(long double a) { return round_to_odd([&] { return std::sqrt(a); }); }
long double odd_fma(long double a, long double b, long double c) {
  return round_to_odd([&] { return std::fma(a, b, c); });
}

long double round_integral(long double x, rounding r) {
  switch (r) {
    case rounding::rzi: return std::trunc(x);
    case rounding::rmi: return std::floor(x);
    case rounding::rpi: return std::ceil(x);
    default: {
      const int saved = std::fegetround();
      std::fesetround(FE_TONEAREST);
      const long double v = std::nearbyint(x);
      std::fesetround(saved);
      return v;
    }
  }
}

//! The value of a 16-bit float (f16 or bf16) as a double, exactly.
const double* f16_values() {
  static const std::vector<double> table = [] {
    std::vector<double> values(65536);
    for (uint32_t i = 0; i < 65536; ++i) values[i] = static_cast<double>(decode_float(i, f16_format));
    return values;
  }();
  return table.data();
}

}  // namespace emu
