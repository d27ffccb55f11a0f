// The emulator's fast f32 and f16 rounding paths (semantics.hpp, numeric.hpp) against its general
// one (numeric.cpp: exact arithmetic rounded to odd in long double, then encode_float) and against
// the host's fma, on seeded random inputs weighted towards the hard cases: subnormals, overflow,
// cancellation, ties. A fast path that rounds differently from the general one fails here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

#include "numeric.hpp"
#include "semantics.hpp"

namespace {

//! Seeded f32 bit patterns: any, subnormal, near the top of the range, near 1, near an f16 tie.
struct f32_source {
  std::mt19937_64 rng{20261207};
  uint32_t operator()() {
    uint32_t u = uint32_t(rng());
    switch (rng() % 6) {
      case 0: return u & 0x807FFFFFu;                 // subnormal or zero
      case 1: return (u & 0x80FFFFFFu) | 0x7E800000u;  // near FLT_MAX
      case 2: return (u & 0x83FFFFFFu) | 0x3C000000u;  // near 1: cancellation
      case 3: return (u & 0x8FFFE000u) | 0x00001000u | 0x30000000u;  // an f16 tie (f16 range)
      default: return u;
    }
  }
};

float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

TEST_SUITE("emulator_numeric") {
TEST_CASE("f32_fma equals the host's fma (one rounding of a·b + c)") {
  f32_source next;
  int mismatches = 0;
  for (int i = 0; i < 2'000'000; ++i) {
    const float a = as_float(next()), b = as_float(next());
    const float c = i % 3 == 0 ? -a * b : as_float(next());  // exact and near cancellation
    const float fast = emu::f32_fma(a, b, c), host = std::fma(a, b, c);
    if (bits_of(fast) != bits_of(host) && !(std::isnan(fast) && std::isnan(host))) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("f32 add, mul and fma in every rounding mode equal the general rounding of the exact result") {
  f32_source next;
  int mismatches = 0;
  for (int i = 0; i < 500'000; ++i) {
    const uint32_t x = next(), y = next(), z = next();
    const long double a = as_float(x), b = as_float(y), c = as_float(z);
    if (!std::isfinite(a) || !std::isfinite(b) || !std::isfinite(c)) continue;
    const long double odd[] = {emu::odd_add(a, b), emu::odd_mul(a, b), emu::odd_fma(a, b, c)};  // rounded to odd
    const emu::float_op ops[] = {emu::float_op::add, emu::float_op::mul, emu::float_op::fma};
    for (int k = 0; k < 3; ++k)
      for (const emu::rounding r : {emu::rounding::rn, emu::rounding::rz, emu::rounding::rm, emu::rounding::rp}) {
        if (odd[k] == 0) continue;  // the sign of an exact zero sum follows the mode (tested in the ISA suite)
        emu::float_mode m;
        m.round = r;
        const uint64_t general = emu::encode_float(odd[k], emu::f32_format, r);
        if (emu::float_arith(ops[k], m, emu::ptype::f32, x, y, z) != general && !std::isnan(odd[k])) ++mismatches;
      }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("f16_nearest equals the general rounding to f16 (ties to even, subnormals, overflow)") {
  f32_source next;
  int mismatches = 0;
  for (int i = 0; i < 4'000'000; ++i) {
    const uint32_t f = next();
    if ((f & 0x7FFFFFFFu) > 0x7F800000u) continue;  // NaN: the general path
    const uint64_t general = emu::encode_float(static_cast<long double>(as_float(f)), emu::f16_format, emu::rounding::rn);
    if (emu::f16_nearest(f) != general) ++mismatches;
  }
  CHECK(mismatches == 0);
}
}
