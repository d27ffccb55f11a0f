// What the instruction handlers of several chapters share: operand widths, the floating-point
// modifiers and rounding of results, packed halves, and the float arithmetic that atomics reuse.
//
// Registers hold values zero-extended to 64 bits; each handler reads its operands at its own
// type's width. Every IEEE-rounded operation (add, sub, mul, fma, div.rn, rcp.rn, sqrt.rn, cvt)
// is correctly rounded in the requested mode.
#pragma once

#include <cmath>
#include <type_traits>

#include "machine.hpp"
#include "numeric.hpp"

namespace emu {

inline int width(const instruction& in) { return type_bytes(in.type); }

inline ptype scalar_of(ptype t) { return t == ptype::f16x2 ? ptype::f16 : t == ptype::bf16x2 ? ptype::bf16 : t; }
inline bool is_pair(ptype t) { return t == ptype::f16x2 || t == ptype::bf16x2; }

//! .ftz of f32 bits: a subnormal becomes the zero of its sign.
inline uint32_t flush32(uint32_t b) { return (b & 0x7F800000u) == 0 ? b & 0x80000000u : b; }
inline uint64_t ftz32(uint64_t b, bool ftz) { return ftz ? flush32(uint32_t(b)) : uint32_t(b); }

//! The bits of an f32 result: NaN gives the canonical NaN, .ftz flushes a subnormal.
inline uint64_t f32_result(float r, bool ftz) {
  if (r != r) return 0x7FFFFFFFu;
  const uint32_t u = uint32_t(bits(r));
  return ftz ? flush32(u) : u;
}

//! .sat of a float: NaN and negatives (and -0) to +0, at most 1.
inline uint64_t saturate(uint64_t b, float_format f) {
  const long double v = decode_float(b, f);
  if (std::isnan(v) || v <= 0) return 0;
  if (v >= 1) return encode_float(1.0L, f, rounding::rn);
  return b;
}

//! The rounding-relevant modifiers of a floating-point operation.
struct float_mode {
  rounding round = rounding::rn;
  bool ftz = false, sat = false, relu = false, satfinite = false;
};
inline float_mode mode_of(const instruction& in) {
  return {in.round == rounding::none ? rounding::rn : in.round, in.ftz, in.sat, in.relu};
}

//! A result in format f from the exact (or round-to-odd) long double value.
inline uint64_t finish(long double v, float_format f, const float_mode& m) {
  uint64_t b = encode_float(v, f, m.round, m.satfinite);
  if (m.ftz) b = flush_subnormal(b, f);
  if (m.sat) b = saturate(b, f);
  if (m.relu && !is_nan(b, f) && std::signbit(decode_float(b, f))) b = 0;
  return b;
}
inline uint64_t finish(long double v, ptype t, const float_mode& m) { return finish(v, format_of(t), m); }

//! The value of a float operand of type t (after .ftz).
inline long double operand_float(uint64_t raw, ptype t, bool ftz) {
  const float_format f = format_of(t);
  uint64_t b = truncate(raw, f.mantissa_bits + f.exponent_bits + 1 > 32 ? 8 : f.mantissa_bits > 10 ? 4 : 2);
  if (ftz) b = flush_subnormal(b, f);
  return decode_float(b, f);
}

//! Both halves of a packed pair through `op`.
template <class Op>
uint64_t packed(uint64_t a, uint64_t b, uint64_t c, Op op) {
  const uint64_t lo = op(a & 0xFFFF, b & 0xFFFF, c & 0xFFFF);
  const uint64_t hi = op(a >> 16 & 0xFFFF, b >> 16 & 0xFFFF, c >> 16 & 0xFFFF);
  return (hi & 0xFFFF) << 16 | (lo & 0xFFFF);
}

//! add, sub, mul, fma/mad for f64, f32, f16 and bf16 (floating.cpp).
enum class float_op : uint8_t { add, sub, mul, fma };
uint64_t float_arith(float_op op, const float_mode& m, ptype t, uint64_t x, uint64_t y, uint64_t z);

//! a·b + c rounded once to f32, without a library call: the product is exact in double, the sum
//! rounded to odd there (TwoSum's error decides it) and then to nearest f32, which is then the
//! correctly rounded result (53 bits ≥ 24 + 2).
inline float f32_fma(float a, float b, float c) {
  const double p = double(a) * double(b), q = c, s = p + q;
  if (!(std::fabs(s) <= 1.7976931348623157e308)) return static_cast<float>(s);  // ±inf, NaN
  const double q_part = s - p, error = (p - (s - q_part)) + (q - q_part);
  if (error == 0) return static_cast<float>(s);
  uint64_t u = bits(s);
  if (std::signbit(error) != std::signbit(s)) --u;  // toward zero: the truncation of the exact sum
  return static_cast<float>(as_f64(u | 1));          // inexact: odd
}

//! float_arith of f32 rounded to nearest without .sat or .relu: the host's IEEE arithmetic.
template <float_op Op>
inline uint64_t f32_nearest(uint64_t x, uint64_t y, uint64_t z, bool ftz) {
  const float a = as_f32(ftz32(x, ftz)), c = as_f32(ftz32(y, ftz));
  if constexpr (Op == float_op::add) return f32_result(a + c, ftz);
  else if constexpr (Op == float_op::sub) return f32_result(a - c, ftz);
  else if constexpr (Op == float_op::mul) return f32_result(a * c, ftz);
  else return f32_result(f32_fma(a, c, as_f32(ftz32(z, ftz))), ftz);
}

//! A double that is the exact value rounded to odd (53 bits ≥ 24 + 2) rounded to f32 by mode r:
//! the correctly rounded f32 of the exact value.
inline float f32_from_odd(double v, rounding r) {
  const float f = static_cast<float>(v);  // to nearest
  if (r == rounding::rz && std::fabs(f) > std::fabs(v)) return std::nextafter(f, 0.0f);
  if (r == rounding::rm && f > v) return std::nextafter(f, -INFINITY);
  if (r == rounding::rp && f < v) return std::nextafter(f, INFINITY);
  return f;
}

//! min / max of f64, f32, f16 or bf16 (floating.cpp): a NaN operand yields the other one (both
//! NaN, or `propagate` (.NaN): the canonical NaN); -0 < +0.
uint64_t float_minmax(bool is_min, bool propagate, bool ftz, bool relu, ptype t, uint64_t x, uint64_t y);

//! The payload of min and max, integer and floating point.
struct minmax_payload {
  bool is_max, propagate_nan, relu;
};

//! Group handlers (instruction::group_exec): a register or immediate operand of each lane, read
//! from the warp's register slab (registers are register-major, machine.hpp).
class lane_operand {
 public:
  lane_operand() = default;
  lane_operand(const thread_state* warp, const operand& o)
      : base_(o.k == operand::kind::reg ? &reg(warp[0], o.reg) : nullptr), imm_(o.imm) {}
  uint64_t operator[](uint32_t lane) const { return base_ ? base_[lane] : imm_; }

 private:
  const uint64_t* base_ = nullptr;
  uint64_t imm_ = 0;
};

//! d = f(a), f(a, b), f(a, b, c) or f(a, b, c, e) for each lane of `mask`: a group handler of a pure
//! per-lane function, which the per-thread handler shares.
template <class F>
void for_lanes(thread_state* warp, uint32_t mask, const instruction& in, F f) {
  uint64_t* const d = &reg(warp[0], in.ops[0].reg);
  const lane_operand a(warp, in.ops[1]);
  // Every lane of a full warp in a counted loop (which the compiler may vectorise), else lane by lane.
  const auto each = [mask](auto body) {
    if (mask == 0xFFFFFFFFu) {
      for (uint32_t l = 0; l < 32; ++l) body(l);
    } else {
      for (uint32_t m = mask; m; m &= m - 1) body(uint32_t(__builtin_ctz(m)));
    }
  };
  if constexpr (std::is_invocable_v<F, uint64_t>) {
    each([&](uint32_t l) { d[l] = f(a[l]); });
  } else if constexpr (std::is_invocable_v<F, uint64_t, uint64_t>) {
    const lane_operand x(warp, in.ops[2]);
    each([&](uint32_t l) { d[l] = f(a[l], x[l]); });
  } else if constexpr (std::is_invocable_v<F, uint64_t, uint64_t, uint64_t>) {
    const lane_operand x(warp, in.ops[2]), y(warp, in.ops[3]);
    each([&](uint32_t l) { d[l] = f(a[l], x[l], y[l]); });
  } else {
    const lane_operand x(warp, in.ops[2]), y(warp, in.ops[3]), z(warp, in.ops[4]);
    each([&](uint32_t l) { d[l] = f(a[l], x[l], y[l], z[l]); });
  }
}

//! Whether a group handler can run `in`: a register destination (no `|p` partner) and register or
//! immediate sources, none negated, from operand 1 to `sources`.
inline bool plain_operands(const instruction& in, int sources) {
  if (in.ops[0].k != operand::kind::reg || in.pair >= 0 || in.op_count != sources + 1) return false;
  for (int i = 1; i <= sources; ++i)
    if ((in.ops[i].k != operand::kind::reg && in.ops[i].k != operand::kind::imm) || in.ops[i].negate) return false;
  return true;
}

//! An instruction with no effect in the emulator's sequential memory model (fences, hints).
inline void exec_nop(block_state&, thread_state&, const instruction&) {}
inline void decode_nop(instruction& in, const kernel&) { in.exec = exec_nop; }

}  // namespace emu
