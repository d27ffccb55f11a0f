// Integer arithmetic (PTX ISA 9.7.1 and 9.7.2, extended precision): add, sub, mul, mad,
// mul24, mad24, sad, div, rem, abs, neg, min, max, popc, clz, bfind, brev, bfe, bfi, bmsk, and
// the carry forms add.cc, addc, sub.cc, subc, mad.cc, madc.
#include <algorithm>

#include "decode.hpp"
#include "semantics.hpp"

namespace emu {
namespace {

//! The payload of the arithmetic forms.
struct arith_payload {
  bool subtract, remainder;     //!< sub / subc / sub.cc; rem
  bool high, wide, accumulate;  //!< .hi; .wide; mad / mad24 / mad.cc / madc
  bool reads_carry, writes_carry;  //!< addc / subc / madc; .cc
};

enum class int_unary : uint8_t { neg, abs, popc, clz, brev, bfind };
struct unary_payload {
  int_unary op;
  bool shift_amount;  //!< bfind.shiftamt
};

struct bmsk_payload {
  bool clamp;  //!< .clamp (else .wrap)
};

uint64_t add_value(const instruction& in, uint64_t x, uint64_t y) {
  const bool sub = payload<arith_payload>(in).subtract;
  if (in.sat) {  // .sat: s32 only
    const int64_t s = sub ? int64_t(int32_t(x)) - int64_t(int32_t(y)) : int64_t(int32_t(x)) + int64_t(int32_t(y));
    return static_cast<uint64_t>(std::clamp<int64_t>(s, INT32_MIN, INT32_MAX)) & 0xFFFFFFFFu;
  }
  return truncate(sub ? x - y : x + y, width(in));
}

void exec_add(block_state& b, thread_state& t, const instruction& in) {
  set(t, in.ops[0], add_value(in, value(b, t, in.ops[1]), value(b, t, in.ops[2])));
}

void group_add(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t x, uint64_t y) { return add_value(in, x, y); });
}

// mul / mad: .lo, .hi, .wide; mad adds c at the result width.
//! mul / mad of x and y (plus c): .lo, .hi or .wide, mad.hi.sat.s32.
uint64_t mul_value(const instruction& in, uint64_t x, uint64_t y, uint64_t c) {
  const arith_payload& p = payload<arith_payload>(in);
  const int w = width(in);
  const bool sgn = type_signed(in.type);
  uint64_t r;
  if (p.high) {
    if (w == 8) {
      r = sgn ? static_cast<uint64_t>((__int128(int64_t(x)) * __int128(int64_t(y))) >> 64)
              : static_cast<uint64_t>((static_cast<unsigned __int128>(x) * y) >> 64);
    } else {
      const uint64_t product = sgn ? static_cast<uint64_t>(sign_extend(x, w) * sign_extend(y, w)) : truncate(x, w) * truncate(y, w);
      r = truncate(sgn ? static_cast<uint64_t>(static_cast<int64_t>(product) >> (8 * w)) : product >> (8 * w), w);
    }
  } else if (p.wide) {
    r = sgn ? static_cast<uint64_t>(sign_extend(x, w) * sign_extend(y, w)) : truncate(x, w) * truncate(y, w);
    r = truncate(r, 2 * w);
  } else {
    r = truncate(x * y, w);
  }
  if (p.accumulate) {  // mad
    const int rw = p.wide ? 2 * w : w;
    if (in.sat) {  // mad.hi.sat.s32
      const int64_t s = int64_t(int32_t(r)) + int64_t(int32_t(c));
      r = static_cast<uint64_t>(std::clamp<int64_t>(s, INT32_MIN, INT32_MAX));
    } else {
      r = r + c;
    }
    r = truncate(r, rw);
  }
  return r;
}

void exec_mul(block_state& b, thread_state& t, const instruction& in) {
  const bool mad = payload<arith_payload>(in).accumulate;
  set(t, in.ops[0], mul_value(in, value(b, t, in.ops[1]), value(b, t, in.ops[2]), mad ? value(b, t, in.ops[3]) : 0));
}

// add.cc, addc[.cc], sub.cc, subc[.cc] (.u32/.s32/.u64/.s64): d = a ± b (± CC.CF), the carry
// (borrow for sub) out of the unsigned operation written to CC.CF with .cc.
void exec_carry(block_state& b, thread_state& t, const instruction& in) {
  const arith_payload& p = payload<arith_payload>(in);
  const int w = width(in);
  const unsigned __int128 x = truncate(value(b, t, in.ops[1]), w), y = truncate(value(b, t, in.ops[2]), w);
  const unsigned __int128 cin = p.reads_carry ? t.carry : 0;  // addc / subc
  const unsigned __int128 r = p.subtract ? x - y - cin : x + y + cin;
  if (p.writes_carry) t.carry = static_cast<uint32_t>((r >> (8 * w)) & 1);  // .cc: carry-out (a borrow wraps)
  set(t, in.ops[0], truncate(static_cast<uint64_t>(r), w));
}

// mad.cc / madc[.cc] .lo/.hi: d = (a·b).lo/hi + c (+ CC.CF), carry-out with .cc.
void exec_mad_carry(block_state& b, thread_state& t, const instruction& in) {
  const arith_payload& pl = payload<arith_payload>(in);
  const int w = width(in);
  const unsigned __int128 x = truncate(value(b, t, in.ops[1]), w), y = truncate(value(b, t, in.ops[2]), w);
  unsigned __int128 p;
  if (type_signed(in.type)) {
    p = static_cast<unsigned __int128>(__int128(sign_extend(static_cast<uint64_t>(x), w)) *
                                       __int128(sign_extend(static_cast<uint64_t>(y), w)));
  } else {
    p = x * y;
  }
  const uint64_t part = truncate(static_cast<uint64_t>(pl.high ? p >> (8 * w) : p), w);
  const unsigned __int128 r = static_cast<unsigned __int128>(part) + truncate(value(b, t, in.ops[3]), w) +
                              (pl.reads_carry ? t.carry : 0);
  if (pl.writes_carry) t.carry = static_cast<uint32_t>((r >> (8 * w)) & 1);
  set(t, in.ops[0], truncate(static_cast<uint64_t>(r), w));
}

// sad.type d, a, b, c: d = c + |a − b|.
void exec_sad(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  uint64_t diff;
  if (type_signed(in.type)) {
    const int64_t a = sign_extend(x, w), c = sign_extend(y, w);
    diff = a > c ? static_cast<uint64_t>(a) - static_cast<uint64_t>(c) : static_cast<uint64_t>(c) - static_cast<uint64_t>(a);
  } else {
    const uint64_t a = truncate(x, w), c = truncate(y, w);
    diff = a > c ? a - c : c - a;
  }
  set(t, in.ops[0], truncate(value(b, t, in.ops[3]) + diff, w));
}

// mul24 / mad24 .lo: the low 32 bits of the product of the low 24 bits.
void exec_mul24(block_state& b, thread_state& t, const instruction& in) {
  const bool sgn = type_signed(in.type);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  const int64_t a = sgn ? sign_extend(x & 0xFFFFFF, 3) : int64_t(x & 0xFFFFFF);
  const int64_t c = sgn ? sign_extend(y & 0xFFFFFF, 3) : int64_t(y & 0xFFFFFF);
  uint64_t r = static_cast<uint64_t>(a * c);
  const arith_payload& p = payload<arith_payload>(in);
  r = p.high ? r >> 16 : r;
  if (p.accumulate) r += value(b, t, in.ops[3]);  // mad24
  set(t, in.ops[0], truncate(r, 4));
}

// div / rem. Division by zero is unspecified in the ISA: the engine returns all ones for div
// and the dividend for rem. INT_MIN / -1 wraps to INT_MIN (rem 0).
void exec_div(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const bool rem = payload<arith_payload>(in).remainder;
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  uint64_t r;
  if (type_signed(in.type)) {
    const int64_t a = sign_extend(x, w), c = sign_extend(y, w);
    const int64_t min = w == 8 ? INT64_MIN : -(int64_t(1) << (8 * w - 1));
    if (c == 0) r = rem ? static_cast<uint64_t>(a) : ~uint64_t(0);
    else if (a == min && c == -1) r = rem ? 0 : static_cast<uint64_t>(a);
    else r = static_cast<uint64_t>(rem ? a % c : a / c);
  } else {
    const uint64_t a = truncate(x, w), c = truncate(y, w);
    r = c == 0 ? (rem ? a : ~uint64_t(0)) : rem ? a % c : a / c;
  }
  set(t, in.ops[0], truncate(r, w));
}

// neg, abs, popc, clz, brev, bfind[.shiftamt] of integers.
void exec_int_unary(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t x = truncate(value(b, t, in.ops[1]), w);
  uint64_t r = 0;
  const unary_payload& p = payload<unary_payload>(in);
  const int_unary op = p.op;
  if (op == int_unary::neg) r = uint64_t(0) - x;
  else if (op == int_unary::abs) r = sign_extend(x, w) < 0 ? uint64_t(0) - x : x;
  else if (op == int_unary::popc) r = static_cast<uint64_t>(__builtin_popcountll(x));
  else if (op == int_unary::clz) r = x == 0 ? uint64_t(8 * w) : static_cast<uint64_t>(__builtin_clzll(x) - (64 - 8 * w));
  else if (op == int_unary::brev) {
    for (int i = 0; i < 8 * w; ++i) r |= (x >> i & 1) << (8 * w - 1 - i);
  } else {  // bfind: most significant non-sign bit; .shiftamt: its distance from the top
    uint64_t v = x;
    if (type_signed(in.type) && sign_extend(x, w) < 0) v = truncate(~x, w);
    if (v == 0) r = 0xFFFFFFFFu;
    else {
      const int msb = 63 - __builtin_clzll(v);
      r = p.shift_amount ? uint64_t(8 * w - 1 - msb) : uint64_t(msb);
    }
    set(t, in.ops[0], r & 0xFFFFFFFFu);
    return;
  }
  const bool count = op == int_unary::popc || op == int_unary::clz;
  set(t, in.ops[0], count ? r : truncate(r, w));
}

uint64_t minmax_value(const instruction& in, uint64_t x, uint64_t y) {
  const int w = width(in);
  const minmax_payload& p = payload<minmax_payload>(in);
  const bool is_min = !p.is_max;
  uint64_t r;
  if (type_signed(in.type)) {
    const int64_t a = sign_extend(x, w), c = sign_extend(y, w);
    r = static_cast<uint64_t>(is_min ? std::min(a, c) : std::max(a, c));
  } else {
    const uint64_t a = truncate(x, w), c = truncate(y, w);
    r = is_min ? std::min(a, c) : std::max(a, c);
  }
  if (p.relu && sign_extend(r, w) < 0) r = 0;  // .relu (s32)
  return truncate(r, w);
}

void exec_minmax_int(block_state& b, thread_state& t, const instruction& in) {
  set(t, in.ops[0], minmax_value(in, value(b, t, in.ops[1]), value(b, t, in.ops[2])));
}

void group_minmax(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t x, uint64_t y) { return minmax_value(in, x, y); });
}

// bfe.type d, a, pos, len (pos, len: bits 7:0 of b and c): the len bits of a from pos, the
// bits beyond the field (or beyond a) filled with 0, or for .s32/.s64 with the field's top bit
// (a's top bit when the field passes it).
uint64_t bfe_value(const instruction& in, uint64_t a, uint64_t position, uint64_t length) {
  const int w = width(in);
  const uint32_t bits_total = 8 * uint32_t(w), pos = position & 0xFF, len = length & 0xFF;
  a = truncate(a, w);
  const bool sbit = type_signed(in.type) && len != 0 && ((a >> std::min(pos + len - 1, bits_total - 1)) & 1);
  const uint32_t n = pos >= bits_total ? 0 : std::min(len, bits_total - pos);  // bits taken from a
  const uint64_t low = n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
  const uint64_t field = n == 0 ? 0 : (a >> pos) & low;
  return truncate(sbit ? field | ~low : field, w);
}

void exec_bfe(block_state& b, thread_state& t, const instruction& in) {
  set(t, in.ops[0], bfe_value(in, value(b, t, in.ops[1]), value(b, t, in.ops[2]), value(b, t, in.ops[3])));
}

void group_bfe(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t a, uint64_t p, uint64_t l) { return bfe_value(in, a, p, l); });
}

// bfi.type f, a, b, pos, len: a's low len bits inserted into b at pos (as far as b's width).
uint64_t bfi_value(const instruction& in, uint64_t a, uint64_t b, uint64_t position, uint64_t length) {
  const int w = width(in);
  const uint32_t bits_total = 8 * uint32_t(w), pos = position & 0xFF, len = length & 0xFF;
  const uint32_t n = pos >= bits_total ? 0 : std::min(len, bits_total - pos);
  const uint64_t field = (n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1) << (n == 0 ? 0 : pos);
  return truncate((b & ~field) | ((a << (n == 0 ? 0 : pos)) & field), w);
}

void exec_bfi(block_state& b, thread_state& t, const instruction& in) {
  set(t, in.ops[0],
      bfi_value(in, value(b, t, in.ops[1]), value(b, t, in.ops[2]), value(b, t, in.ops[3]), value(b, t, in.ops[4])));
}

void group_bfi(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in,
            [&in](uint64_t a, uint64_t b, uint64_t p, uint64_t l) { return bfi_value(in, a, b, p, l); });
}

// bmsk.{clamp,wrap}.b32 d, a, b: a mask of b bits from bit a (ISA "bmsk" Semantics).
void exec_bmsk(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t a = static_cast<uint32_t>(value(b, t, in.ops[1])), w = static_cast<uint32_t>(value(b, t, in.ops[2]));
  const uint32_t a1 = a & 0x1f, b1 = w & 0x1f, sum = a1 + b1;
  uint64_t mask0 = (~uint64_t(0) << a1) & 0xFFFFFFFFu, mask1 = (~uint64_t(0) << sum) & 0xFFFFFFFFu;
  bool overflow = sum >= 32;
  if (payload<bmsk_payload>(in).clamp) {
    if (a >= 32) mask0 = 0, overflow = true;
    if (w >= 32) overflow = true;
  }
  if (overflow) mask1 = 0;
  else if (b1 == 0) mask1 = 0xFFFFFFFFu;
  set(t, in.ops[0], mask0 & ~mask1 & 0xFFFFFFFFu);
}


// mul.lo / mad.lo of a lock-step group: the product's low bits (plus c).
void group_mul_lo(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  const int w = width(in);
  if (payload<arith_payload>(in).accumulate)
    for_lanes(warp, mask, in, [w](uint64_t x, uint64_t y, uint64_t z) { return truncate(x * y + z, w); });
  else
    for_lanes(warp, mask, in, [w](uint64_t x, uint64_t y) { return truncate(x * y, w); });
}

// mul / mad .hi and .wide of a lock-step group.
void group_mul(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  if (payload<arith_payload>(in).accumulate)
    for_lanes(warp, mask, in, [&in](uint64_t x, uint64_t y, uint64_t z) { return mul_value(in, x, y, z); });
  else
    for_lanes(warp, mask, in, [&in](uint64_t x, uint64_t y) { return mul_value(in, x, y, 0); });
}

// ---------------------------------------------------------------------------------------
// Decoders

void decode_add(instruction& in, const kernel&) {
  if (in.sat && in.type != ptype::s32) unsupported(in, ".sat is .s32's alone");
  set_payload<arith_payload>(in).subtract = in.opcode == "sub";
  in.exec = exec_add;
  if (plain_operands(in, 2)) in.group_exec = group_add;
}

void decode_carry(instruction& in, const kernel&) {
  arith_payload& p = set_payload<arith_payload>(in);
  p.subtract = in.opcode == "sub" || in.opcode == "subc";
  p.reads_carry = in.opcode == "addc" || in.opcode == "subc";
  p.writes_carry = has(in, "cc");
  in.exec = exec_carry;
}

void decode_mad_carry(instruction& in, const kernel&) {
  arith_payload& p = set_payload<arith_payload>(in);
  p.high = has(in, "hi");
  p.accumulate = true;
  p.reads_carry = in.opcode == "madc";
  p.writes_carry = has(in, "cc");
  in.exec = exec_mad_carry;
}

void decode_mul(instruction& in, const kernel&) {
  arith_payload& p = set_payload<arith_payload>(in);
  p.high = has(in, "hi");
  p.wide = has(in, "wide");
  p.accumulate = in.opcode == "mad";
  if (in.sat && !(p.accumulate && p.high && in.type == ptype::s32)) unsupported(in, ".sat is mad.hi.sat.s32's alone");
  in.exec = exec_mul;
  if (plain_operands(in, p.accumulate ? 3 : 2)) in.group_exec = !p.high && !p.wide ? group_mul_lo : group_mul;
}

void decode_mul24(instruction& in, const kernel&) {
  arith_payload& p = set_payload<arith_payload>(in);
  p.high = has(in, "hi");
  p.accumulate = in.opcode == "mad24";
  in.exec = exec_mul24;
}

void decode_sad(instruction& in, const kernel&) { in.exec = exec_sad; }

void decode_div(instruction& in, const kernel&) {
  set_payload<arith_payload>(in).remainder = in.opcode == "rem";
  in.exec = exec_div;
}

void decode_unary(instruction& in, const kernel&) {
  static const std::pair<const char*, int_unary> ops[] = {{"neg", int_unary::neg},   {"abs", int_unary::abs},
                                                          {"popc", int_unary::popc}, {"clz", int_unary::clz},
                                                          {"brev", int_unary::brev}, {"bfind", int_unary::bfind}};
  unary_payload& p = set_payload<unary_payload>(in);
  for (const auto& [name, op] : ops)
    if (in.opcode == name) p.op = op;
  p.shift_amount = has(in, "shiftamt");
  in.exec = exec_int_unary;
}

void decode_minmax(instruction& in, const kernel&) {
  minmax_payload& p = set_payload<minmax_payload>(in);
  p.is_max = in.opcode == "max";
  p.relu = has(in, "relu");
  in.exec = exec_minmax_int;
  if (plain_operands(in, 2)) in.group_exec = group_minmax;
}

void decode_bfe(instruction& in, const kernel&) {
  in.exec = exec_bfe;
  if (plain_operands(in, 3)) in.group_exec = group_bfe;
}

void decode_bfi(instruction& in, const kernel&) {
  in.exec = exec_bfi;
  if (plain_operands(in, 4)) in.group_exec = group_bfi;
}

void decode_bmsk(instruction& in, const kernel&) {
  if (has(in, "clamp") == has(in, "wrap")) unsupported(in, "needs one of .clamp and .wrap");
  set_payload<bmsk_payload>(in).clamp = has(in, "clamp");
  in.exec = exec_bmsk;
}

}  // namespace

std::vector<opcode_row> integer_rows() {
  using namespace qualifiers;
  const qualifier_list carry_types = {"u32", "s32", "u64", "s64"}, bit_counts = {"b32", "b64"};
  return {
      {"add", any_of({integer_types, {"sat"}}), 3, 3, decode_add},
      {"sub", any_of({integer_types, {"sat"}}), 3, 3, decode_add},
      {"add.cc", any_of({carry_types}), 3, 3, decode_carry},
      {"sub.cc", any_of({carry_types}), 3, 3, decode_carry},
      {"addc", any_of({carry_types, {"cc"}}), 3, 3, decode_carry},
      {"subc", any_of({carry_types, {"cc"}}), 3, 3, decode_carry},
      {"mul", any_of({integer_types, {"lo", "hi", "wide"}}), 3, 3, decode_mul},
      {"mad", any_of({integer_types, {"lo", "hi", "wide", "sat"}}), 4, 4, decode_mul},
      {"mad.cc", any_of({carry_types, {"lo", "hi"}}), 4, 4, decode_mad_carry},
      {"madc", any_of({carry_types, {"lo", "hi", "cc"}}), 4, 4, decode_mad_carry},
      {"mul24", any_of({{"u32", "s32", "lo", "hi"}}), 3, 3, decode_mul24},
      {"mad24", any_of({{"u32", "s32", "lo", "hi"}}), 4, 4, decode_mul24},
      {"sad", any_of({integer_types}), 4, 4, decode_sad},
      {"div", any_of({integer_types}), 3, 3, decode_div},
      {"rem", any_of({integer_types}), 3, 3, decode_div},
      {"abs", any_of({{"s16", "s32", "s64"}}), 2, 2, decode_unary},
      {"neg", any_of({{"s16", "s32", "s64"}}), 2, 2, decode_unary},
      {"popc", any_of({bit_counts}), 2, 2, decode_unary},
      {"clz", any_of({bit_counts}), 2, 2, decode_unary},
      {"brev", any_of({bit_counts}), 2, 2, decode_unary},
      {"bfind", any_of({{"u32", "u64", "s32", "s64", "shiftamt"}}), 2, 2, decode_unary},
      {"min", any_of({integer_types, {"relu"}}), 3, 3, decode_minmax},
      {"max", any_of({integer_types, {"relu"}}), 3, 3, decode_minmax},
      {"bfe", any_of({{"u32", "u64", "s32", "s64"}}), 4, 4, decode_bfe},
      {"bfi", any_of({bit_counts}), 5, 5, decode_bfi},
      {"bmsk", any_of({{"b32", "clamp", "wrap"}}), 3, 3, decode_bmsk},
  };
}

}  // namespace emu
