// Floating-point and half-precision arithmetic (PTX ISA 9.7.3 and 9.7.4): add, sub, mul, fma,
// mad, div, abs, neg, min, max, rcp, sqrt, rsqrt, ex2, lg2, sin, cos, tanh, testp, copysign on
// f64, f32, f16, bf16 and the packed pairs.
//
// The .approx operations (ex2, lg2, sin, cos, tanh, rsqrt, rcp.approx, sqrt.approx,
// div.approx/full) are computed with the host's libm in the target precision, which is at
// least as accurate as the ISA's bounds; the last bits can differ from a GPU.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "decode.hpp"
#include "semantics.hpp"

namespace emu {
namespace {

//! The payload of add, sub, mul, fma, mad (op) and of abs, neg (negate).
struct arith_payload {
  float_op op;
  bool negate;
};

enum class special_function : uint8_t { div, rcp, sqrt, rsqrt, ex2, lg2, sin, cos, tanh };
struct special_payload {
  special_function function;
  bool approx_range;  //!< div.approx's zero result for 2^126 < |b| < 2^128
};

//! testp's property: 0 finite, 1 infinite, 2 number, 3 notanumber, 4 normal, 5 subnormal.
struct testp_payload {
  uint8_t property;
};
constexpr const char* testp_properties[] = {"finite", "infinite", "number", "notanumber", "normal", "subnormal"};

// x + y rounded to odd in double, without touching the rounding mode: the exact error of the
// rounded sum (TwoSum) decides the truncation and the sticky bit.
double odd_sum(double x, double y) {
  const double s = x + y;
  if (!std::isfinite(s)) return s;
  const double virtual_y = s - x;
  const double e = (x - (s - virtual_y)) + (y - virtual_y);
  if (e == 0) return s;
  double t = (std::signbit(e) == std::signbit(s)) ? s : std::nextafter(s, 0.0);  // toward zero
  uint64_t u = bits(t);
  if ((u & 1) == 0) t = std::nextafter(t, std::signbit(t) ? -INFINITY : INFINITY);
  return t;
}

}  // namespace

uint64_t float_arith(float_op op, const float_mode& m, ptype t, uint64_t x, uint64_t y, uint64_t z) {
  const bool ftz = m.ftz;
  if (t == ptype::f32 && m.round == rounding::rn && !m.sat && !m.relu) {
    switch (op) {
      case float_op::add: return f32_nearest<float_op::add>(x, y, z, ftz);
      case float_op::sub: return f32_nearest<float_op::sub>(x, y, z, ftz);
      case float_op::mul: return f32_nearest<float_op::mul>(x, y, z, ftz);
      default: return f32_nearest<float_op::fma>(x, y, z, ftz);
    }
  }
  if (t == ptype::f32 && !m.sat && !m.relu) {  // directed rounding: as below, in double throughout
    const double a = as_f32(ftz32(x, ftz)), c = as_f32(ftz32(y, ftz));
    double v, first = a, second = -c;
    switch (op) {
      case float_op::add: v = odd_sum(a, c); second = c; break;
      case float_op::sub: v = odd_sum(a, -c); break;
      case float_op::mul: v = a * c; break;
      default: first = a * c, second = as_f32(ftz32(z, ftz)), v = odd_sum(first, second); break;
    }
    if (v == 0 && op != float_op::mul)
      v = (std::signbit(first) == std::signbit(second) ? std::signbit(first) : m.round == rounding::rm) ? -0.0 : 0.0;
    return f32_result(f32_from_odd(v, m.round), ftz);
  }
  const long double a = operand_float(x, t, ftz), c = operand_float(y, t, ftz);
  long double v, first = a, second = -c;  // the two terms of a sum
  const long double addend = op == float_op::fma ? operand_float(z, t, ftz) : 0;
  if (t != ptype::f64) {
    // f32, f16, bf16: products are exact in double, sums round to odd there (53 >= 24 + 2 bits).
    const double p = static_cast<double>(a), q = static_cast<double>(c);
    switch (op) {
      case float_op::add: v = odd_sum(p, q); second = c; break;
      case float_op::sub: v = odd_sum(p, -q); break;
      case float_op::mul: v = p * q; break;
      default: v = odd_sum(p * q, static_cast<double>(addend)); first = a * c; second = addend; break;
    }
  } else {
    switch (op) {
      case float_op::add: v = odd_add(a, c); second = c; break;
      case float_op::sub: v = odd_add(a, -c); break;
      case float_op::mul: v = odd_mul(a, c); break;
      default: v = odd_fma(a, c, addend); first = a * c; second = addend; break;
    }
  }
  if (v == 0 && op != float_op::mul) {  // IEEE 754: an exact zero sum of opposite signs is -0 only under .rm
    const bool negative = std::signbit(first) == std::signbit(second) ? std::signbit(first) : m.round == rounding::rm;
    v = negative ? -0.0L : 0.0L;
  }
  if (t == ptype::f32 && !m.sat && !m.relu) return f32_result(f32_from_odd(static_cast<double>(v), m.round), ftz);
  return finish(v, t, m);
}

namespace {

// float_minmax of f32, inline.
inline uint64_t f32_minmax(bool is_min, bool propagate, bool ftz, bool relu, uint64_t x, uint64_t y) {
  const uint32_t bx = uint32_t(ftz32(x, ftz)), by = uint32_t(ftz32(y, ftz));
  const bool nan_x = (bx & 0x7FFFFFFFu) > 0x7F800000u, nan_y = (by & 0x7FFFFFFFu) > 0x7F800000u;
  if (nan_x || nan_y) {
    if ((nan_x && nan_y) || propagate) return 0x7FFFFFFFu;  // the canonical NaN
    return nan_x ? by : bx;
  }
  const float a = as_f32(bx), c = as_f32(by);
  const uint32_t r = a == c ? (is_min == std::signbit(a) ? bx : by) : (a < c) == is_min ? bx : by;  // -0 < +0
  return relu && (r & 0x80000000u) ? 0 : r;
}

}  // namespace

uint64_t float_minmax(bool is_min, bool propagate, bool ftz, bool relu, ptype t, uint64_t x, uint64_t y) {
  if (t == ptype::f32) return f32_minmax(is_min, propagate, ftz, relu, x, y);
  // The result is an operand (after .ftz), +0 (.relu) or the canonical NaN: chosen on the bits.
  const float_format f = format_of(t);
  const int bytes = (f.mantissa_bits + f.exponent_bits + 1) / 8;
  uint64_t bx = truncate(x, bytes), by = truncate(y, bytes);
  if (ftz) bx = flush_subnormal(bx, f), by = flush_subnormal(by, f);
  const bool nan_x = is_nan(bx, f), nan_y = is_nan(by, f);
  if (nan_x || nan_y) {
    if ((nan_x && nan_y) || propagate) return (uint64_t(1) << (8 * bytes - 1)) - 1;  // the canonical NaN
    return nan_x ? by : bx;
  }
  const long double a = t == ptype::f32 ? as_f32(bx) : t == ptype::f64 ? as_f64(bx) : decode_float(bx, f);
  const long double c = t == ptype::f32 ? as_f32(by) : t == ptype::f64 ? as_f64(by) : decode_float(by, f);
  uint64_t r;
  if (a == c) r = is_min == std::signbit(a) ? bx : by;  // -0 < +0
  else r = (a < c) == is_min ? bx : by;
  const uint64_t sign = uint64_t(1) << (8 * bytes - 1);
  return relu && (r & sign) ? 0 : r;
}

namespace {

// add, sub, mul, fma/mad for f64, f32, f16, bf16 and the packed pairs.
void exec_float_arith(block_state& b, thread_state& t, const instruction& in) {
  const float_op op = payload<arith_payload>(in).op;
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  const uint64_t z = in.op_count > 3 ? value(b, t, in.ops[3]) : 0;
  const float_mode m = mode_of(in);
  if (is_pair(in.type)) {
    const ptype s = scalar_of(in.type);
    set(t, in.ops[0], packed(x, y, z, [&](uint64_t p, uint64_t q, uint64_t r) { return float_arith(op, m, s, p, q, r); }));
  } else {
    set(t, in.ops[0], float_arith(op, m, in.type, x, y, z));
  }
}

// add, sub, mul, fma/mad of a scalar type, for a lock-step group.
void group_float_arith(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  const float_op op = payload<arith_payload>(in).op;
  const float_mode m = mode_of(in);
  if (in.type == ptype::f32 && m.round == rounding::rn && !m.sat && !m.relu) {  // inline, per operation
    const bool ftz = m.ftz;
    switch (op) {
      case float_op::add:
        return for_lanes(warp, mask, in, [ftz](uint64_t x, uint64_t y) { return f32_nearest<float_op::add>(x, y, 0, ftz); });
      case float_op::sub:
        return for_lanes(warp, mask, in, [ftz](uint64_t x, uint64_t y) { return f32_nearest<float_op::sub>(x, y, 0, ftz); });
      case float_op::mul:
        return for_lanes(warp, mask, in, [ftz](uint64_t x, uint64_t y) { return f32_nearest<float_op::mul>(x, y, 0, ftz); });
      default:
        return for_lanes(warp, mask, in,
                         [ftz](uint64_t x, uint64_t y, uint64_t z) { return f32_nearest<float_op::fma>(x, y, z, ftz); });
    }
  }
  if (op == float_op::fma)
    for_lanes(warp, mask, in, [&](uint64_t x, uint64_t y, uint64_t z) { return float_arith(op, m, in.type, x, y, z); });
  else
    for_lanes(warp, mask, in, [&](uint64_t x, uint64_t y) { return float_arith(op, m, in.type, x, y, 0); });
}

void exec_float_minmax(block_state& b, thread_state& t, const instruction& in) {
  const minmax_payload& m = payload<minmax_payload>(in);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  if (is_pair(in.type)) {
    const ptype s = scalar_of(in.type);
    set(t, in.ops[0], packed(x, y, 0, [&](uint64_t p, uint64_t q, uint64_t) {
          return float_minmax(!m.is_max, m.propagate_nan, in.ftz, m.relu, s, p, q);
        }));
  } else {
    set(t, in.ops[0], float_minmax(!m.is_max, m.propagate_nan, in.ftz, m.relu, in.type, x, y));
  }
}

// min / max of a scalar type, for a lock-step group.
void group_float_minmax(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  const minmax_payload& m = payload<minmax_payload>(in);
  if (in.type == ptype::f32)
    return for_lanes(warp, mask, in, [is_min = !m.is_max, propagate = m.propagate_nan, ftz = in.ftz, relu = m.relu](
                                         uint64_t x, uint64_t y) { return f32_minmax(is_min, propagate, ftz, relu, x, y); });
  for_lanes(warp, mask, in, [&](uint64_t x, uint64_t y) {
    return float_minmax(!m.is_max, m.propagate_nan, in.ftz, m.relu, in.type, x, y);
  });
}

// abs / neg: a sign-bit operation (NaN included), after .ftz.
uint64_t float_sign_value(const instruction& in, uint64_t x) {
  const bool negate = payload<arith_payload>(in).negate;
  const ptype s = scalar_of(in.type);
  const float_format f = format_of(s);
  const int total = f.mantissa_bits + f.exponent_bits + 1;
  const uint64_t sign = uint64_t(1) << (total - 1);
  const auto one = [&](uint64_t v, uint64_t, uint64_t) {
    v = truncate(v, total / 8);
    // ISA (abs): "For abs.f64, NaN input is passed through unchanged" (neg.f64 too, by the CUDA
    // Programming Guide's floating-point notes); other NaN results are unspecified NaNs.
    if (s == ptype::f64 && is_nan(v, f)) return v;
    if (in.ftz) v = flush_subnormal(v, f);
    return negate ? v ^ sign : v & ~sign;
  };
  return is_pair(in.type) ? packed(x, 0, 0, one) : one(x, 0, 0);
}

void exec_float_sign(block_state& b, thread_state& t, const instruction& in) {
  set(t, in.ops[0], float_sign_value(in, value(b, t, in.ops[1])));
}

void group_float_sign(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t x) { return float_sign_value(in, x); });
}

// div, rcp, sqrt, rsqrt, ex2, lg2, sin, cos, tanh of the operands' bits x (and y, div's divisor).
uint64_t float_special(const instruction& in, uint64_t x_bits, uint64_t y_bits) {
  const special_function f = payload<special_payload>(in).function;
  const ptype type = in.type;
  const long double a = type == ptype::f32 ? as_f32(ftz32(x_bits, in.ftz)) : operand_float(x_bits, type, in.ftz);
  const bool approx = in.approx;
  long double v;
  if (approx) {
    // The host's libm in the operation's precision (see the file comment).
    const bool f64 = type == ptype::f64;
    const double x = static_cast<double>(a);
    const double y = f == special_function::div ? static_cast<double>(operand_float(y_bits, type, in.ftz)) : 0;
    double r;
    switch (f) {
      case special_function::div:
        // ISA (div): "For 2^126 < |b| < 2^128, if a is infinity, div.approx.f32 returns NaN,
        // otherwise it returns a sign-preserving zero" (not .full, which covers the full range).
        if (!f64 && payload<special_payload>(in).approx_range && std::fabs(y) > 0x1p126 && std::fabs(y) < 0x1p128) {
          r = x * std::copysign(0.0, y);  // a · (1/b) with 1/b flushed: NaN for an infinite (or NaN) a
        } else {
          r = f64 ? x / y : double(float(x) / float(y));
        }
        break;
      case special_function::rcp: r = f64 ? 1.0 / x : double(1.0f / float(x)); break;
      case special_function::sqrt: r = f64 ? std::sqrt(x) : double(std::sqrt(float(x))); break;
      case special_function::rsqrt: r = f64 ? 1.0 / std::sqrt(x) : double(1.0f / std::sqrt(float(x))); break;
      case special_function::ex2: r = double(std::exp2(float(x))); break;
      case special_function::lg2: r = double(std::log2(float(x))); break;
      case special_function::sin: r = double(std::sin(float(x))); break;
      case special_function::cos: r = double(std::cos(float(x))); break;
      default: r = double(std::tanh(float(x))); break;
    }
    v = r;
  } else if (type == ptype::f32 && (in.round == rounding::rn || in.round == rounding::none) && !in.sat) {
    // IEEE division and square root of floats are correctly rounded to nearest on the host.
    const float x = static_cast<float>(a);
    float r;
    switch (f) {
      case special_function::div: r = x / static_cast<float>(operand_float(y_bits, type, in.ftz)); break;
      case special_function::rcp: r = 1.0f / x; break;
      default: r = std::sqrt(x); break;
    }
    v = r;
  } else {
    switch (f) {
      case special_function::div: v = odd_div(a, operand_float(y_bits, type, in.ftz)); break;
      case special_function::rcp: v = odd_div(1.0L, a); break;
      case special_function::sqrt: v = odd_sqrt(a); break;
      default: throw std::logic_error("IEEE-rounded form of an .approx-only operation");
    }
  }
  float_mode m = mode_of(in);
  if (approx) m.round = rounding::rn;
  if (type == ptype::f32 && v == static_cast<float>(v) && !m.sat && !m.relu) {  // a float already: its bits
    const uint64_t out = bits(static_cast<float>(v));
    return m.ftz ? flush_subnormal(out, f32_format) : out;
  }
  return finish(v, type, m);
}

void exec_float_special(block_state& b, thread_state& t, const instruction& in) {
  const bool divides = payload<special_payload>(in).function == special_function::div;
  set(t, in.ops[0], float_special(in, value(b, t, in.ops[1]), divides ? value(b, t, in.ops[2]) : 0));
}

void group_float_special(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  if (payload<special_payload>(in).function == special_function::div)
    for_lanes(warp, mask, in, [&](uint64_t x, uint64_t y) { return float_special(in, x, y); });
  else
    for_lanes(warp, mask, in, [&](uint64_t x) { return float_special(in, x, 0); });
}

// testp.op.type p, a
void exec_testp(block_state& b, thread_state& t, const instruction& in) {
  const long double a = operand_float(value(b, t, in.ops[1]), in.type, false);
  const float_format f = format_of(in.type);
  const uint64_t raw = truncate(value(b, t, in.ops[1]), in.type == ptype::f64 ? 8 : 4);
  const bool subnormal = a != 0 && std::isfinite(a) && (raw >> f.mantissa_bits & ((uint64_t(1) << f.exponent_bits) - 1)) == 0;
  bool r = false;
  switch (payload<testp_payload>(in).property) {
    case 0: r = std::isfinite(a); break;
    case 1: r = std::isinf(a); break;
    case 2: r = !std::isnan(a); break;
    case 3: r = std::isnan(a); break;
    case 4: r = std::isfinite(a) && !subnormal; break;  // the ISA counts ±0 as normal
    default: r = subnormal; break;
  }
  set(t, in.ops[0], r);
}

// copysign.type d, a, b: b with the sign of a.
void exec_copysign(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t sign = uint64_t(1) << (8 * w - 1);
  const uint64_t a = value(b, t, in.ops[1]), c = value(b, t, in.ops[2]);
  set(t, in.ops[0], truncate((c & ~sign) | (a & sign), w));
}


// ---------------------------------------------------------------------------------------
// Decoders

void decode_arith(instruction& in, const kernel&) {
  const std::string& op = in.opcode;
  set_payload<arith_payload>(in).op = op == "add" ? float_op::add : op == "sub" ? float_op::sub
                                    : op == "mul" ? float_op::mul : float_op::fma;
  in.exec = exec_float_arith;
  if (!is_pair(in.type) && plain_operands(in, in.op_count - 1)) in.group_exec = group_float_arith;
}

void decode_sign(instruction& in, const kernel&) {
  set_payload<arith_payload>(in).negate = in.opcode == "neg";
  in.exec = exec_float_sign;
  if (plain_operands(in, 1)) in.group_exec = group_float_sign;
}

void decode_minmax(instruction& in, const kernel&) {
  minmax_payload& p = set_payload<minmax_payload>(in);
  p.is_max = in.opcode == "max";
  p.propagate_nan = has(in, "NaN");
  in.exec = exec_float_minmax;
  if (!is_pair(in.type) && plain_operands(in, 2)) in.group_exec = group_float_minmax;
}

void decode_special(instruction& in, const kernel&) {
  static const std::pair<const char*, special_function> functions[] = {
      {"div", special_function::div},     {"rcp", special_function::rcp}, {"sqrt", special_function::sqrt},
      {"rsqrt", special_function::rsqrt}, {"ex2", special_function::ex2}, {"lg2", special_function::lg2},
      {"sin", special_function::sin},     {"cos", special_function::cos}, {"tanh", special_function::tanh}};
  special_payload& p = set_payload<special_payload>(in);
  for (const auto& [name, f] : functions)
    if (in.opcode == name) p.function = f;
  const bool ieee_exists = p.function == special_function::div || p.function == special_function::rcp ||
                           p.function == special_function::sqrt;
  if (!in.approx && !ieee_exists) unsupported(in, "only .approx exists");
  if (!in.approx && in.round == rounding::none) unsupported(in, "needs .approx, .full or a rounding");
  p.approx_range = p.function == special_function::div && has(in, "approx");
  in.exec = exec_float_special;
  if (plain_operands(in, p.function == special_function::div ? 2 : 1)) in.group_exec = group_float_special;
}

void decode_testp(instruction& in, const kernel&) {
  bool found = false;
  for (uint8_t i = 0; i < 6; ++i)
    if (has(in, testp_properties[i])) set_payload<testp_payload>(in).property = i, found = true;
  if (!found) unsupported(in, "no property to test");
  in.exec = exec_testp;
}

void decode_copysign(instruction& in, const kernel&) { in.exec = exec_copysign; }

}  // namespace

std::vector<opcode_row> floating_rows() {
  using namespace qualifiers;
  const auto arith = any_of({float_types, half_types, float_rounding, {"ftz", "sat"}});
  const auto fma = any_of({float_types, half_types, float_rounding, {"ftz", "sat", "relu"}});
  const auto sign = any_of({float_types, half_types, {"ftz"}});
  const auto minmax = any_of({float_types, half_types, {"ftz", "NaN"}});
  const auto ieee = any_of({float_types, float_rounding, {"approx", "ftz"}});
  const auto f32_approx = any_of({{"f32", "approx", "ftz"}});
  return {
      {"add", arith, 3, 3, decode_arith},
      {"sub", arith, 3, 3, decode_arith},
      {"mul", arith, 3, 3, decode_arith},
      {"fma", fma, 4, 4, decode_arith},
      {"mad", any_of({float_types, float_rounding, {"ftz", "sat"}}), 4, 4, decode_arith},
      {"div", any_of({float_types, float_rounding, {"approx", "full", "ftz"}}), 3, 3, decode_special},
      {"abs", sign, 2, 2, decode_sign},
      {"neg", sign, 2, 2, decode_sign},
      {"min", minmax, 3, 3, decode_minmax},
      {"max", minmax, 3, 3, decode_minmax},
      {"rcp", ieee, 2, 2, decode_special},
      {"sqrt", ieee, 2, 2, decode_special},
      {"rsqrt", any_of({float_types, {"approx", "ftz"}}), 2, 2, decode_special},
      {"ex2", f32_approx, 2, 2, decode_special},
      {"lg2", f32_approx, 2, 2, decode_special},
      {"sin", f32_approx, 2, 2, decode_special},
      {"cos", f32_approx, 2, 2, decode_special},
      {"tanh", any_of({{"f32", "approx"}}), 2, 2, decode_special},
      {"testp", any_of({float_types, {std::begin(testp_properties), std::end(testp_properties)}}), 2, 2, decode_testp},
      {"copysign", any_of({float_types}), 3, 3, decode_copysign},
  };
}

}  // namespace emu
