// PTX instruction semantics (PTX ISA 9.0) and their decoding. Each handler executes one
// instruction for one thread (or, for warp collectives, for the lanes of a member mask).
// Registers hold values zero-extended to 64 bits; each handler reads its operands at its own
// type's width.
//
// Precision: every IEEE-rounded operation (add, sub, mul, fma, div.rn, rcp.rn, sqrt.rn, cvt)
// is correctly rounded in the requested mode. The .approx operations (ex2, lg2, sin, cos,
// tanh, rsqrt, rcp.approx, sqrt.approx, div.approx/full) are computed with the host's libm in
// the target precision, which is at least as accurate as the ISA's bounds; the last bits can
// differ from a GPU. mma accumulates each dot product in double and rounds once to f32; a GPU's
// tensor cores add in an unspecified order and precision.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "decode.hpp"
#include "machine.hpp"
#include "numeric.hpp"

namespace emu {
namespace {

// ---------------------------------------------------------------------------------------
// Decoded details

enum cmp : uint32_t { eq, ne, lt, le, gt, ge, lo, ls, hi, hs, equ, neu, ltu, leu, gtu, geu, num, nan_ };
enum boolop : uint32_t { none_op, and_op, or_op, xor_op };

const std::map<std::string, uint32_t>& comparisons() {
  static const std::map<std::string, uint32_t> m = {
      {"eq", eq},   {"ne", ne},   {"lt", lt},   {"le", le},   {"gt", gt},   {"ge", ge},
      {"lo", lo},   {"ls", ls},   {"hi", hi},   {"hs", hs},   {"equ", equ}, {"neu", neu},
      {"ltu", ltu}, {"leu", leu}, {"gtu", gtu}, {"geu", geu}, {"num", num}, {"nan", nan_}};
  return m;
}

}  // namespace

bool has(const instruction& in, const char* m) {
  return std::find(in.modifiers.begin(), in.modifiers.end(), m) != in.modifiers.end();
}

namespace {

int width(const instruction& in) { return type_bytes(in.type); }

// ---------------------------------------------------------------------------------------
// Floating point helpers

uint64_t ftz32(uint64_t b, bool ftz) {
  return ftz ? flush_subnormal(b & 0xFFFFFFFFu, f32_format) : b & 0xFFFFFFFFu;
}

uint64_t saturate(uint64_t b, float_format f) {
  const long double v = decode_float(b, f);
  if (std::isnan(v) || v <= 0) return 0;  // NaN and negatives (and -0) to +0
  if (v >= 1) return encode_float(1.0L, f, rounding::rn);
  return b;
}

//! The rounding-relevant modifiers of a floating-point operation.
struct float_mode {
  rounding round = rounding::rn;
  bool ftz = false, sat = false, relu = false, satfinite = false;
};
float_mode mode_of(const instruction& in) {
  return {in.round == rounding::none ? rounding::rn : in.round, in.ftz, in.sat, in.relu};
}

// A result in format f from the exact (or round-to-odd) long double value.
uint64_t finish(long double v, float_format f, const float_mode& m) {
  uint64_t b = encode_float(v, f, m.round, m.satfinite);
  if (m.ftz) b = flush_subnormal(b, f);
  if (m.sat) b = saturate(b, f);
  if (m.relu && !is_nan(b, f) && std::signbit(decode_float(b, f))) b = 0;
  return b;
}
uint64_t finish(long double v, ptype t, const float_mode& m) { return finish(v, format_of(t), m); }

long double operand_float(uint64_t raw, ptype t, bool ftz) {
  const float_format f = format_of(t);
  uint64_t b = truncate(raw, f.mantissa_bits + f.exponent_bits + 1 > 32 ? 8 : f.mantissa_bits > 10 ? 4 : 2);
  if (ftz) b = flush_subnormal(b, f);
  return decode_float(b, f);
}

// Both halves of a packed pair through `op`.
template <class Op>
uint64_t packed(uint64_t a, uint64_t b, uint64_t c, Op op) {
  const uint64_t lo = op(a & 0xFFFF, b & 0xFFFF, c & 0xFFFF);
  const uint64_t hi = op(a >> 16 & 0xFFFF, b >> 16 & 0xFFFF, c >> 16 & 0xFFFF);
  return (hi & 0xFFFF) << 16 | (lo & 0xFFFF);
}

ptype scalar_of(ptype t) { return t == ptype::f16x2 ? ptype::f16 : t == ptype::bf16x2 ? ptype::bf16 : t; }
bool is_pair(ptype t) { return t == ptype::f16x2 || t == ptype::bf16x2; }

// ---------------------------------------------------------------------------------------
// Integer arithmetic and logic

void exec_add(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  const bool sub = in.aux == 1;
  uint64_t r = sub ? x - y : x + y;
  if (in.sat) {  // .sat: s32 only
    const int64_t s = sub ? int64_t(int32_t(x)) - int64_t(int32_t(y)) : int64_t(int32_t(x)) + int64_t(int32_t(y));
    r = static_cast<uint64_t>(std::clamp<int64_t>(s, INT32_MIN, INT32_MAX));
  }
  set(t, in.ops[0], truncate(r, w));
}

// mul / mad: .lo, .hi, .wide (aux: 0 lo, 1 hi, 2 wide); mad adds c at the result width.
void exec_mul(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const bool sgn = type_signed(in.type);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  uint64_t r;
  if (in.aux == 1) {
    if (w == 8) {
      r = sgn ? static_cast<uint64_t>((__int128(int64_t(x)) * __int128(int64_t(y))) >> 64)
              : static_cast<uint64_t>((static_cast<unsigned __int128>(x) * y) >> 64);
    } else {
      const uint64_t p = sgn ? static_cast<uint64_t>(sign_extend(x, w) * sign_extend(y, w)) : truncate(x, w) * truncate(y, w);
      r = truncate(sgn ? static_cast<uint64_t>(static_cast<int64_t>(p) >> (8 * w)) : p >> (8 * w), w);
    }
  } else if (in.aux == 2) {
    r = sgn ? static_cast<uint64_t>(sign_extend(x, w) * sign_extend(y, w)) : truncate(x, w) * truncate(y, w);
    r = truncate(r, 2 * w);
  } else {
    r = truncate(x * y, w);
  }
  if (in.aux2 == 1) {  // mad
    const int rw = in.aux == 2 ? 2 * w : w;
    const uint64_t c = value(b, t, in.ops[3]);
    if (in.sat) {  // mad.hi.sat.s32
      const int64_t s = int64_t(int32_t(r)) + int64_t(int32_t(c));
      r = static_cast<uint64_t>(std::clamp<int64_t>(s, INT32_MIN, INT32_MAX));
    } else {
      r = r + c;
    }
    r = truncate(r, rw);
  }
  set(t, in.ops[0], r);
}

// add.cc, addc[.cc], sub.cc, subc[.cc] (.u32/.s32/.u64/.s64): d = a ± b (± CC.CF), the carry
// (borrow for sub) out of the unsigned operation written to CC.CF with .cc.
void exec_carry(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const unsigned __int128 x = truncate(value(b, t, in.ops[1]), w), y = truncate(value(b, t, in.ops[2]), w);
  const unsigned __int128 cin = in.aux2 & 1 ? t.carry : 0;  // addc / subc read the carry
  const bool sub = in.aux == 1;
  const unsigned __int128 r = sub ? x - y - cin : x + y + cin;
  if (in.aux2 & 2) t.carry = static_cast<uint32_t>((r >> (8 * w)) & 1);  // .cc: carry-out (a borrow wraps)
  set(t, in.ops[0], truncate(static_cast<uint64_t>(r), w));
}

// mad.cc / madc[.cc] .lo/.hi: d = (a·b).lo/hi + c (+ CC.CF), carry-out with .cc.
void exec_mad_carry(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const unsigned __int128 x = truncate(value(b, t, in.ops[1]), w), y = truncate(value(b, t, in.ops[2]), w);
  unsigned __int128 p;
  if (type_signed(in.type)) {
    p = static_cast<unsigned __int128>(__int128(sign_extend(static_cast<uint64_t>(x), w)) *
                                       __int128(sign_extend(static_cast<uint64_t>(y), w)));
  } else {
    p = x * y;
  }
  const uint64_t part = truncate(static_cast<uint64_t>(in.aux == 1 ? p >> (8 * w) : p), w);
  const unsigned __int128 r = static_cast<unsigned __int128>(part) + truncate(value(b, t, in.ops[3]), w) +
                              (in.aux2 & 1 ? t.carry : 0);
  if (in.aux2 & 2) t.carry = static_cast<uint32_t>((r >> (8 * w)) & 1);
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

// slct.dtype.{s32,f32} d, a, b, c: d = c >= 0 ? a : b (f32 c: -0 counts as >= 0, NaN as < 0).
void exec_slct(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t c = value(b, t, in.ops[3]);
  bool take_a;
  if (in.type2 == ptype::f32) {
    const float f = as_f32(in.ftz ? flush_subnormal(c & 0xFFFFFFFFu, f32_format) : c);
    take_a = f >= 0.0f;
  } else {
    take_a = static_cast<int32_t>(c) >= 0;
  }
  set(t, in.ops[0], truncate(value(b, t, in.ops[take_a ? 1 : 2]), width(in)));
}

// mul24 / mad24 .lo: the low 32 bits of the product of the low 24 bits.
void exec_mul24(block_state& b, thread_state& t, const instruction& in) {
  const bool sgn = type_signed(in.type);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  const int64_t a = sgn ? sign_extend(x & 0xFFFFFF, 3) : int64_t(x & 0xFFFFFF);
  const int64_t c = sgn ? sign_extend(y & 0xFFFFFF, 3) : int64_t(y & 0xFFFFFF);
  uint64_t r = static_cast<uint64_t>(a * c);
  r = in.aux == 1 ? r >> 16 : r;
  if (in.aux2 == 1) r += value(b, t, in.ops[3]);  // mad24
  set(t, in.ops[0], truncate(r, 4));
}

// div / rem. Division by zero is unspecified in the ISA: the engine returns all ones for div
// and the dividend for rem. INT_MIN / -1 wraps to INT_MIN (rem 0).
void exec_div(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const bool rem = in.aux == 1;
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

enum int_unary : uint32_t { u_neg, u_abs, u_not, u_cnot, u_popc, u_clz, u_brev, u_bfind };

void exec_int_unary(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t x = truncate(value(b, t, in.ops[1]), w);
  uint64_t r = 0;
  const uint32_t op = in.aux;
  if (op == u_neg) r = uint64_t(0) - x;
  else if (op == u_abs) r = sign_extend(x, w) < 0 ? uint64_t(0) - x : x;
  else if (op == u_not) r = in.type == ptype::pred ? uint64_t(x == 0) : ~x;
  else if (op == u_cnot) r = x == 0 ? 1 : 0;
  else if (op == u_popc) r = static_cast<uint64_t>(__builtin_popcountll(x));
  else if (op == u_clz) r = x == 0 ? uint64_t(8 * w) : static_cast<uint64_t>(__builtin_clzll(x) - (64 - 8 * w));
  else if (op == u_brev) {
    for (int i = 0; i < 8 * w; ++i) r |= (x >> i & 1) << (8 * w - 1 - i);
  } else {  // bfind: most significant non-sign bit; .shiftamt: its distance from the top
    uint64_t v = x;
    if (type_signed(in.type) && sign_extend(x, w) < 0) v = truncate(~x, w);
    if (v == 0) r = 0xFFFFFFFFu;
    else {
      const int msb = 63 - __builtin_clzll(v);
      r = in.aux2 ? uint64_t(8 * w - 1 - msb) : uint64_t(msb);
    }
    set(t, in.ops[0], r & 0xFFFFFFFFu);
    return;
  }
  const bool count = op == u_popc || op == u_clz;
  set(t, in.ops[0], count ? r : truncate(r, w));
}

void exec_minmax_int(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  const bool is_min = in.aux == 0;
  uint64_t r;
  if (type_signed(in.type)) {
    const int64_t a = sign_extend(x, w), c = sign_extend(y, w);
    r = static_cast<uint64_t>(is_min ? std::min(a, c) : std::max(a, c));
  } else {
    const uint64_t a = truncate(x, w), c = truncate(y, w);
    r = is_min ? std::min(a, c) : std::max(a, c);
  }
  if ((in.aux2 & 2) && sign_extend(r, w) < 0) r = 0;  // .relu (s32)
  set(t, in.ops[0], truncate(r, w));
}

void exec_logic(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  uint64_t r = in.aux == 0 ? (x & y) : in.aux == 1 ? (x | y) : (x ^ y);
  if (in.type == ptype::pred) r = r != 0;
  set(t, in.ops[0], truncate(r, width(in)));
}

// Predicate logic with possibly negated operands (and.pred d, !a, b).
void exec_pred_logic(block_state& b, thread_state& t, const instruction& in) {
  const bool x = predicate(b, t, in.ops[1]), y = predicate(b, t, in.ops[2]);
  const bool r = in.aux == 0 ? (x && y) : in.aux == 1 ? (x || y) : (x != y);
  set(t, in.ops[0], r);
}

// shl / shr: shift amounts beyond the width give 0 (or the sign fill for shr.s).
void exec_shift(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t x = value(b, t, in.ops[1]);
  const uint32_t n = static_cast<uint32_t>(value(b, t, in.ops[2]));
  uint64_t r;
  if (in.aux == 0) {  // shl
    r = n >= uint32_t(8 * w) ? 0 : x << n;
  } else if (type_signed(in.type)) {
    const int64_t s = sign_extend(x, w);
    r = static_cast<uint64_t>(n >= uint32_t(8 * w) ? (s < 0 ? -1 : 0) : s >> n);
  } else {
    r = n >= uint32_t(8 * w) ? 0 : truncate(x, w) >> n;
  }
  set(t, in.ops[0], truncate(r, w));
}

// shf.{l,r}.{clamp,wrap}.b32 d, a, b, c: funnel shift of the 64-bit b:a.
void exec_shf(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t lo = value(b, t, in.ops[1]) & 0xFFFFFFFFu, hi = value(b, t, in.ops[2]) & 0xFFFFFFFFu;
  const uint32_t c = static_cast<uint32_t>(value(b, t, in.ops[3]));
  const uint32_t n = in.aux ? std::min<uint32_t>(c, 32) : c & 31;
  const uint64_t v = hi << 32 | lo;
  const uint64_t r = in.aux2 ? (v << n) >> 32 : v >> n;
  set(t, in.ops[0], r & 0xFFFFFFFFu);
}

// bfe.type d, a, pos, len (pos, len: bits 7:0 of b and c).
void exec_bfe(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in), bits_total = 8 * w;
  const uint64_t a = truncate(value(b, t, in.ops[1]), w);
  const uint32_t pos = value(b, t, in.ops[2]) & 0xFF, len = value(b, t, in.ops[3]) & 0xFF;
  const bool sgn = type_signed(in.type);
  const bool sbit = sgn && len != 0 && ((a >> std::min<uint32_t>(pos + len - 1, bits_total - 1)) & 1);
  uint64_t r = 0;
  for (int i = 0; i < bits_total; ++i) {
    const uint64_t bit = uint32_t(i) < len && pos + i < uint32_t(bits_total) ? (a >> (pos + i)) & 1 : (sgn ? sbit : 0);
    r |= bit << i;
  }
  set(t, in.ops[0], r);
}

// bfi.type f, a, b, pos, len: a's low len bits inserted into b at pos.
void exec_bfi(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in), bits_total = 8 * w;
  const uint64_t a = value(b, t, in.ops[1]);
  uint64_t r = truncate(value(b, t, in.ops[2]), w);
  const uint32_t pos = value(b, t, in.ops[3]) & 0xFF, len = value(b, t, in.ops[4]) & 0xFF;
  for (uint32_t i = 0; i < len && pos + i < uint32_t(bits_total); ++i) {
    r = (r & ~(uint64_t(1) << (pos + i))) | (((a >> i) & 1) << (pos + i));
  }
  set(t, in.ops[0], r);
}

// bmsk.{clamp,wrap}.b32 d, a, b: a mask of b bits from bit a (ISA "bmsk" Semantics; aux = clamp).
void exec_bmsk(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t a = static_cast<uint32_t>(value(b, t, in.ops[1])), w = static_cast<uint32_t>(value(b, t, in.ops[2]));
  const uint32_t a1 = a & 0x1f, b1 = w & 0x1f, sum = a1 + b1;
  uint64_t mask0 = (~uint64_t(0) << a1) & 0xFFFFFFFFu, mask1 = (~uint64_t(0) << sum) & 0xFFFFFFFFu;
  bool overflow = sum >= 32;
  if (in.aux) {  // .clamp
    if (a >= 32) mask0 = 0, overflow = true;
    if (w >= 32) overflow = true;
  }
  if (overflow) mask1 = 0;
  else if (b1 == 0) mask1 = 0xFFFFFFFFu;
  set(t, in.ops[0], mask0 & ~mask1 & 0xFFFFFFFFu);
}

// prmt.b32{.mode} d, a, b, c: bytes of {b, a} selected by c.
void exec_prmt(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t bytes = (value(b, t, in.ops[2]) & 0xFFFFFFFFu) << 32 | (value(b, t, in.ops[1]) & 0xFFFFFFFFu);
  const uint32_t c = static_cast<uint32_t>(value(b, t, in.ops[3]));
  const auto byte = [&](uint32_t i) { return static_cast<uint32_t>(bytes >> (8 * (i & 7)) & 0xFF); };
  uint32_t sel[4];
  const uint32_t mode = in.aux;  // 0 default, 1 f4e, 2 b4e, 3 rc8, 4 ecl, 5 ecr, 6 rc16
  const uint32_t s = c & 3;
  static const uint32_t f4e[4][4] = {{0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 6}};
  static const uint32_t b4e[4][4] = {{0, 7, 6, 5}, {1, 0, 7, 6}, {2, 1, 0, 7}, {3, 2, 1, 0}};
  static const uint32_t ecl[4][4] = {{0, 1, 2, 3}, {1, 1, 2, 3}, {2, 2, 2, 3}, {3, 3, 3, 3}};
  static const uint32_t ecr[4][4] = {{0, 0, 0, 0}, {0, 1, 1, 1}, {0, 1, 2, 2}, {0, 1, 2, 3}};
  uint32_t r = 0;
  if (mode == 0) {
    for (int i = 0; i < 4; ++i) {
      const uint32_t nib = c >> (4 * i) & 0xF;
      uint32_t v = byte(nib & 7);
      if (nib & 8) v = (v & 0x80) ? 0xFF : 0;  // sign replicate
      r |= v << (8 * i);
    }
    set(t, in.ops[0], r);
    return;
  }
  for (int i = 0; i < 4; ++i) {
    switch (mode) {
      case 1: sel[i] = f4e[s][i]; break;
      case 2: sel[i] = b4e[s][i]; break;
      case 3: sel[i] = s; break;
      case 4: sel[i] = ecl[s][i]; break;
      case 5: sel[i] = ecr[s][i]; break;
      default: sel[i] = (s & 1) * 2 + (i & 1); break;  // rc16
    }
    r |= byte(sel[i]) << (8 * i);
  }
  set(t, in.ops[0], r);
}

// lop3.b32 d, a, b, c, immLut: each result bit looks up immLut at (a b c).
void exec_lop3(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t a = static_cast<uint32_t>(value(b, t, in.ops[1])), x = static_cast<uint32_t>(value(b, t, in.ops[2])),
                 c = static_cast<uint32_t>(value(b, t, in.ops[3]));
  const uint32_t lut = static_cast<uint32_t>(value(b, t, in.ops[4])) & 0xFF;
  uint32_t r = 0;
  for (int i = 0; i < 32; ++i) {
    const uint32_t idx = ((a >> i & 1) << 2) | ((x >> i & 1) << 1) | (c >> i & 1);
    r |= (lut >> idx & 1) << i;
  }
  set(t, in.ops[0], r);
}

// ---------------------------------------------------------------------------------------
// Comparison and selection

bool compare_int(uint64_t x, uint64_t y, ptype type, uint32_t c) {
  const int w = type_bytes(type);
  const bool sgn = type_signed(type);
  const int64_t a = sign_extend(x, w), b = sign_extend(y, w);
  const uint64_t ua = truncate(x, w), ub = truncate(y, w);
  switch (c) {
    case eq: return ua == ub;
    case ne: return ua != ub;
    case lt: return sgn ? a < b : ua < ub;
    case le: return sgn ? a <= b : ua <= ub;
    case gt: return sgn ? a > b : ua > ub;
    case ge: return sgn ? a >= b : ua >= ub;
    case lo: return ua < ub;
    case ls: return ua <= ub;
    case hi: return ua > ub;
    case hs: return ua >= ub;
    default: return false;
  }
}

bool compare_float(long double a, long double b, uint32_t c) {
  const bool unordered = std::isnan(a) || std::isnan(b);
  switch (c) {
    case eq: return !unordered && a == b;
    case ne: return !unordered && a != b;
    case lt: return !unordered && a < b;
    case le: return !unordered && a <= b;
    case gt: return !unordered && a > b;
    case ge: return !unordered && a >= b;
    case equ: return unordered || a == b;
    case neu: return unordered || a != b;
    case ltu: return unordered || a < b;
    case leu: return unordered || a <= b;
    case gtu: return unordered || a > b;
    case geu: return unordered || a >= b;
    case num: return !unordered;
    case nan_: return unordered;
    default: return false;
  }
}

bool compare(block_state& b, thread_state& t, const instruction& in, ptype type, const operand& x, const operand& y) {
  if (type_float(type)) {
    return compare_float(operand_float(value(b, t, x), type, in.ftz), operand_float(value(b, t, y), type, in.ftz), in.aux);
  }
  return compare_int(value(b, t, x), value(b, t, y), type, in.aux);
}

bool combine(bool r, bool c, uint32_t op) {
  switch (op) {
    case and_op: return r && c;
    case or_op: return r || c;
    case xor_op: return r != c;
    default: return r;
  }
}

// The comparison of the two halves of packed f16x2 / bf16x2 operands: bit 0 low, bit 1 high.
uint32_t compare_halves(block_state& b, thread_state& t, const instruction& in, ptype packed_type) {
  const ptype s = scalar_of(packed_type);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  const bool lo = compare_float(operand_float(x & 0xFFFF, s, in.ftz), operand_float(y & 0xFFFF, s, in.ftz), in.aux);
  const bool hi = compare_float(operand_float(x >> 16 & 0xFFFF, s, in.ftz), operand_float(y >> 16 & 0xFFFF, s, in.ftz), in.aux);
  return uint32_t(lo) | uint32_t(hi) << 1;
}

// setp.cmp[.bool].type p[|q], a, b[, {!}c]: q = BoolOp(!t, c); for packed halves p takes the
// low half's result and q the high half's.
void exec_setp(block_state& b, thread_state& t, const instruction& in) {
  const bool c = in.aux2 != none_op ? predicate(b, t, in.ops[3]) : false;
  if (is_pair(in.type)) {
    const uint32_t r = compare_halves(b, t, in, in.type);
    set(t, in.ops[0], combine(r & 1, c, in.aux2));
    if (in.pair >= 0) t.r[in.pair] = combine(r >> 1 & 1, c, in.aux2);
    return;
  }
  const bool r = compare(b, t, in, in.type, in.ops[1], in.ops[2]);
  set(t, in.ops[0], combine(r, c, in.aux2));
  if (in.pair >= 0) t.r[in.pair] = combine(!r, c, in.aux2);
}

// set.cmp[.bool].dtype.stype d, a, b[, {!}c]: true is 1.0 in a float destination, all ones in
// an integer one; packed operands give one result per half.
void exec_set(block_state& b, thread_state& t, const instruction& in) {
  const bool c = in.aux2 != none_op ? predicate(b, t, in.ops[3]) : false;
  const auto truth = [&](ptype d) -> uint64_t {
    if (type_float(d) || is_pair(d)) return encode_float(1.0L, format_of(d), rounding::rn);
    return d == ptype::u16 || d == ptype::s16 || is_pair(in.type2) ? 0xFFFFu : 0xFFFFFFFFu;
  };
  if (is_pair(in.type2)) {
    const uint32_t r = compare_halves(b, t, in, in.type2);
    const uint64_t one = truth(in.type);
    set(t, in.ops[0], (combine(r & 1, c, in.aux2) ? one : 0) | (combine(r >> 1 & 1, c, in.aux2) ? one : 0) << 16);
    return;
  }
  const bool r = combine(compare(b, t, in, in.type2, in.ops[1], in.ops[2]), c, in.aux2);
  set(t, in.ops[0], r ? truth(in.type) : 0);
}

void exec_selp(block_state& b, thread_state& t, const instruction& in) {
  const bool c = predicate(b, t, in.ops[3]);
  set(t, in.ops[0], truncate(value(b, t, c ? in.ops[1] : in.ops[2]), width(in)));
}

// ---------------------------------------------------------------------------------------
// Floating-point arithmetic

enum arith_op : uint32_t { op_add, op_sub, op_mul, op_fma };

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

// add, sub, mul, fma/mad for f64, f32, f16, bf16 and the packed pairs.
uint64_t float_arith(uint32_t op, const float_mode& m, ptype t, uint64_t x, uint64_t y, uint64_t z) {
  const bool ftz = m.ftz;
  if (t == ptype::f32 && m.round == rounding::rn && !m.sat && !m.relu) {
    const float a = as_f32(ftz32(x, ftz)), c = as_f32(ftz32(y, ftz));
    float r;
    switch (op) {
      case 0: r = a + c; break;
      case 1: r = a - c; break;
      case 2: r = a * c; break;
      default: r = std::fma(a, c, as_f32(ftz32(z, ftz))); break;
    }
    uint64_t out = bits(r);
    if (std::isnan(r)) out = 0x7FFFFFFFu;
    return ftz ? flush_subnormal(out, f32_format) : out;
  }
  const long double a = operand_float(x, t, ftz), c = operand_float(y, t, ftz);
  long double v, first = a, second = -c;  // the two terms of a sum
  const long double addend = op == op_fma ? operand_float(z, t, ftz) : 0;
  if (t != ptype::f64) {
    // f32, f16, bf16: products are exact in double, sums round to odd there (53 >= 24 + 2 bits).
    const double p = static_cast<double>(a), q = static_cast<double>(c);
    switch (op) {
      case op_add: v = odd_sum(p, q); second = c; break;
      case op_sub: v = odd_sum(p, -q); break;
      case op_mul: v = p * q; break;
      default: v = odd_sum(p * q, static_cast<double>(addend)); first = a * c; second = addend; break;
    }
  } else {
    switch (op) {
      case op_add: v = odd_add(a, c); second = c; break;
      case op_sub: v = odd_add(a, -c); break;
      case op_mul: v = odd_mul(a, c); break;
      default: v = odd_fma(a, c, addend); first = a * c; second = addend; break;
    }
  }
  if (v == 0 && op != op_mul) {  // IEEE 754: an exact zero sum of opposite signs is -0 only under .rm
    const bool negative = std::signbit(first) == std::signbit(second) ? std::signbit(first) : m.round == rounding::rm;
    v = negative ? -0.0L : 0.0L;
  }
  return finish(v, t, m);
}

void exec_float_arith(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  const uint64_t z = in.op_count > 3 ? value(b, t, in.ops[3]) : 0;
  const float_mode m = mode_of(in);
  if (is_pair(in.type)) {
    const ptype s = scalar_of(in.type);
    set(t, in.ops[0], packed(x, y, z, [&](uint64_t p, uint64_t q, uint64_t r) { return float_arith(in.aux, m, s, p, q, r); }));
  } else {
    set(t, in.ops[0], float_arith(in.aux, m, in.type, x, y, z));
  }
}

// min / max: a NaN operand yields the other one (both NaN, or .NaN: the canonical NaN); -0 < +0.
uint64_t float_minmax(bool is_min, bool propagate, bool ftz, bool relu, ptype t, uint64_t x, uint64_t y) {
  const float_format f = format_of(t);
  const long double a = operand_float(x, t, ftz), c = operand_float(y, t, ftz);
  const uint64_t canonical = encode_float(NAN, f, rounding::rn);
  if (std::isnan(a) && std::isnan(c)) return canonical;
  if (std::isnan(a) || std::isnan(c)) {
    if (propagate) return canonical;
    return encode_float(std::isnan(a) ? c : a, f, rounding::rn);
  }
  long double r;
  if (a == c) r = is_min == std::signbit(a) ? a : c;
  else r = is_min ? std::min(a, c) : std::max(a, c);
  uint64_t out = encode_float(r, f, rounding::rn);
  if (relu && std::signbit(r)) out = 0;
  return ftz ? flush_subnormal(out, f) : out;
}

void exec_float_minmax(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  if (is_pair(in.type)) {
    const ptype s = scalar_of(in.type);
    set(t, in.ops[0], packed(x, y, 0, [&](uint64_t p, uint64_t q, uint64_t) {
          return float_minmax(in.aux == 0, in.aux2 & 1, in.ftz, in.aux2 & 2, s, p, q);
        }));
  } else {
    set(t, in.ops[0], float_minmax(in.aux == 0, in.aux2 & 1, in.ftz, in.aux2 & 2, in.type, x, y));
  }
}

// abs / neg: a sign-bit operation (NaN included), after .ftz.
void exec_float_sign(block_state& b, thread_state& t, const instruction& in) {
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
    return in.aux == 0 ? v & ~sign : v ^ sign;  // abs : neg
  };
  const uint64_t x = value(b, t, in.ops[1]);
  set(t, in.ops[0], is_pair(in.type) ? packed(x, 0, 0, one) : one(x, 0, 0));
}

// div, rcp, sqrt, rsqrt, ex2, lg2, sin, cos, tanh (aux selects).
enum unary_float : uint32_t { f_div, f_rcp, f_sqrt, f_rsqrt, f_ex2, f_lg2, f_sin, f_cos, f_tanh };

void exec_float_special(block_state& b, thread_state& t, const instruction& in) {
  const ptype type = in.type;
  const long double a = operand_float(value(b, t, in.ops[1]), type, in.ftz);
  const bool approx = in.approx;
  long double v;
  if (approx) {
    // The host's libm in the operation's precision (see the file comment).
    const bool f64 = type == ptype::f64;
    const double x = static_cast<double>(a);
    const double y = in.aux == f_div ? static_cast<double>(operand_float(value(b, t, in.ops[2]), type, in.ftz)) : 0;
    double r;
    switch (in.aux) {
      case f_div:
        // ISA (div): "For 2^126 < |b| < 2^128, if a is infinity, div.approx.f32 returns NaN,
        // otherwise it returns a sign-preserving zero" (not .full, which covers the full range).
        if (!f64 && in.aux2 && std::fabs(y) > 0x1p126 && std::fabs(y) < 0x1p128) {
          r = x * std::copysign(0.0, y);  // a · (1/b) with 1/b flushed: NaN for an infinite (or NaN) a
        } else {
          r = f64 ? x / y : double(float(x) / float(y));
        }
        break;
      case f_rcp: r = f64 ? 1.0 / x : double(1.0f / float(x)); break;
      case f_sqrt: r = f64 ? std::sqrt(x) : double(std::sqrt(float(x))); break;
      case f_rsqrt: r = f64 ? 1.0 / std::sqrt(x) : double(1.0f / std::sqrt(float(x))); break;
      case f_ex2: r = double(std::exp2(float(x))); break;
      case f_lg2: r = double(std::log2(float(x))); break;
      case f_sin: r = double(std::sin(float(x))); break;
      case f_cos: r = double(std::cos(float(x))); break;
      default: r = double(std::tanh(float(x))); break;
    }
    v = r;
  } else if (type == ptype::f32 && (in.round == rounding::rn || in.round == rounding::none) && !in.sat) {
    // IEEE division and square root of floats are correctly rounded to nearest on the host.
    const float x = static_cast<float>(a);
    float r;
    switch (in.aux) {
      case f_div: r = x / static_cast<float>(operand_float(value(b, t, in.ops[2]), type, in.ftz)); break;
      case f_rcp: r = 1.0f / x; break;
      default: r = std::sqrt(x); break;
    }
    v = r;
  } else {
    switch (in.aux) {
      case f_div: v = odd_div(a, operand_float(value(b, t, in.ops[2]), type, in.ftz)); break;
      case f_rcp: v = odd_div(1.0L, a); break;
      case f_sqrt: v = odd_sqrt(a); break;
      default: throw std::logic_error("IEEE-rounded form of an .approx-only operation");
    }
  }
  float_mode m = mode_of(in);
  if (approx) m.round = rounding::rn;
  set(t, in.ops[0], finish(v, type, m));
}

// testp.op.type p, a
void exec_testp(block_state& b, thread_state& t, const instruction& in) {
  const long double a = operand_float(value(b, t, in.ops[1]), in.type, false);
  const float_format f = format_of(in.type);
  const uint64_t raw = truncate(value(b, t, in.ops[1]), in.type == ptype::f64 ? 8 : 4);
  const bool subnormal = a != 0 && std::isfinite(a) && (raw >> f.mantissa_bits & ((uint64_t(1) << f.exponent_bits) - 1)) == 0;
  bool r = false;
  switch (in.aux) {
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
// Conversions

// cvt[.rnd][.ftz][.sat].dtype.atype d, a   (and cvt.rn[.relu].{f16x2,bf16x2}.f32 d, a, b)
constexpr uint32_t cvt_tf32 = 1;  // instruction::aux of cvt.rna.tf32.f32

uint64_t convert(const instruction& in, ptype dst, ptype src, uint64_t raw) {
  const bool src_float = type_float(src), dst_float = type_float(dst);
  const int sw = type_bytes(src), dw = type_bytes(dst);
  if (!src_float && !dst_float) {
    const int64_t s = type_signed(src) ? sign_extend(raw, sw) : static_cast<int64_t>(truncate(raw, sw));
    const bool src_unsigned_big = !type_signed(src) && sw == 8 && (raw >> 63);
    if (in.sat) {
      const bool dsgn = type_signed(dst);
      const int64_t lo = dsgn ? (dw == 8 ? INT64_MIN : -(int64_t(1) << (8 * dw - 1))) : 0;
      const int64_t hi_s = dw == 8 ? INT64_MAX : (dsgn ? (int64_t(1) << (8 * dw - 1)) - 1 : (int64_t(1) << (8 * dw)) - 1);
      if (src_unsigned_big) return truncate(dsgn ? static_cast<uint64_t>(hi_s) : (dw == 8 ? raw : static_cast<uint64_t>(hi_s)), dw);
      if (!dsgn && dw == 8) return s < 0 ? 0 : static_cast<uint64_t>(s);
      return truncate(static_cast<uint64_t>(std::clamp(s, lo, hi_s)), dw);
    }
    return truncate(static_cast<uint64_t>(s), dw);
  }
  const bool plain =
      (in.round == rounding::none || in.round == rounding::rn) && !in.sat && !in.ftz && !in.relu && !in.aux2;  // aux2: .satfinite
  if (plain && dst == ptype::f32) {  // exact or round-to-nearest host conversions
    switch (src) {
      case ptype::s32: case ptype::s16: case ptype::s8: return bits(static_cast<float>(sign_extend(raw, sw)));
      case ptype::u32: case ptype::u16: case ptype::u8: return bits(static_cast<float>(truncate(raw, sw)));
      case ptype::s64: return bits(static_cast<float>(static_cast<int64_t>(raw)));
      case ptype::u64: return bits(static_cast<float>(raw));
      case ptype::bf16: return is_nan(raw & 0xFFFF, bf16_format) ? 0x7FFFFFFFu : (raw & 0xFFFF) << 16;
      case ptype::f64: {
        const double d = as_f64(raw);
        return std::isnan(d) ? 0x7FFFFFFFu : bits(static_cast<float>(d));
      }
      default: break;
    }
  }
  if (plain && dst == ptype::f32 && src == ptype::f16) {
    return is_nan(raw & 0xFFFF, f16_format) ? 0x7FFFFFFFu : bits(static_cast<float>(decode_float(raw, f16_format)));
  }
  if (plain && dst == ptype::bf16 && src == ptype::f32) {  // round to nearest even on the bits
    const uint32_t u = static_cast<uint32_t>(raw);
    if (is_nan(u, f32_format)) return 0x7FFF;
    return (u + 0x7FFFu + (u >> 16 & 1)) >> 16;
  }
  long double v;
  if (src_float) {
    v = operand_float(raw, src, in.ftz && src == ptype::f32);
  } else if (type_signed(src)) {
    v = static_cast<long double>(sign_extend(raw, sw));
  } else {
    v = static_cast<long double>(truncate(raw, sw));
  }
  if (dst_float) {
    const bool integral = in.round == rounding::rni || in.round == rounding::rzi || in.round == rounding::rmi ||
                          in.round == rounding::rpi;
    if (integral) v = round_integral(v, in.round);
    float_mode m = mode_of(in);
    if (integral) m.round = rounding::rn;
    m.ftz = in.ftz && dst == ptype::f32;
    m.satfinite = in.aux2;  // ±inf and overflow to the largest finite value
    // tf32: 10 fraction bits in an f32 encoding, the low 13 bits zero.
    if (in.aux == cvt_tf32) return encode_float(v, float_format{10, 8}, m.round, m.satfinite) << 13;
    return finish(v, dst, m);
  }
  // Float to integer: round to integral, saturate to the destination range. NaN gives 0, or
  // 1 << (width - 1) from an .f64 source or into a 64-bit destination (ISA: Integer Notes).
  if (std::isnan(v)) return src == ptype::f64 || dw == 8 ? truncate(uint64_t(1) << (8 * dw - 1), dw) : 0;
  const rounding r = in.round == rounding::none ? rounding::rzi : in.round;
  v = round_integral(v, r == rounding::rn ? rounding::rni : r == rounding::rz ? rounding::rzi
                                              : r == rounding::rm ? rounding::rmi : r == rounding::rp ? rounding::rpi : r);
  if (type_signed(dst)) {
    const long double lo = -std::ldexp(1.0L, 8 * dw - 1), hi = std::ldexp(1.0L, 8 * dw - 1) - 1;
    return truncate(static_cast<uint64_t>(static_cast<int64_t>(std::clamp(v, lo, hi))), dw);
  }
  const long double hi = std::ldexp(1.0L, 8 * dw) - 1;
  return static_cast<uint64_t>(std::clamp(v, 0.0L, hi));
}

// cvt.rn.satfinite{.relu}.{e4m3x2,e5m2x2}.f32 d, a, b; cvt.rn.satfinite{.relu}.{e4m3x2,e5m2x2}.f16x2
// d, a; cvt.rn{.relu}.f16x2.{e4m3x2,e5m2x2} d, a (PTX ISA 7.8 / 8.1, sm_89): a (a's upper half, a's
// upper byte) goes to the upper byte (half) of d. To fp8, .satfinite being mandatory: NaN gives the
// canonical NaN 0x7f (the ISA leaves its bits open), ±inf and overflow the sign-preserved
// MAX_NORM (e4m3 448, e5m2 57344). To f16 exactly; a NaN gives 0x7fff. .relu: negative results
// to +0, NaN to the canonical NaN.
constexpr uint32_t cvt_e4m3 = 2, cvt_e5m2 = 3;  // instruction::aux of the fp8 forms

void exec_cvt_fp8(block_state& b, thread_state& t, const instruction& in) {
  const float_format f8 = in.aux == cvt_e5m2 ? e5m2_format : e4m3_format;
  float_mode m;
  m.relu = in.relu;
  if (in.type2 == ptype::b16) {  // from fp8x2
    const uint64_t a = value(b, t, in.ops[1]);
    const uint64_t hi = finish(decode_float(a >> 8 & 0xFF, f8), f16_format, m);
    const uint64_t lo = finish(decode_float(a & 0xFF, f8), f16_format, m);
    set(t, in.ops[0], hi << 16 | lo);
    return;
  }
  m.satfinite = true;
  const bool pair = in.type2 == ptype::f16x2;
  const uint64_t a = value(b, t, in.ops[1]);
  const uint64_t upper = pair ? a >> 16 : a, lower = pair ? a : value(b, t, in.ops[2]);
  const ptype s = scalar_of(in.type2);
  const uint64_t hi = finish(operand_float(upper, s, false), f8, m), lo = finish(operand_float(lower, s, false), f8, m);
  set(t, in.ops[0], hi << 8 | lo);
}

void exec_cvt(block_state& b, thread_state& t, const instruction& in) {
  if (is_pair(in.type)) {  // a -> upper half, b -> lower half
    const ptype s = scalar_of(in.type);
    const uint64_t hi = convert(in, s, in.type2, value(b, t, in.ops[1]));
    const uint64_t lo = convert(in, s, in.type2, value(b, t, in.ops[2]));
    set(t, in.ops[0], hi << 16 | lo);
    return;
  }
  const uint64_t v = convert(in, in.type, in.type2, value(b, t, in.ops[1]));
  // A signed result narrower than its register is sign-extended to the register's width.
  set(t, in.ops[0], type_signed(in.type) ? static_cast<uint64_t>(sign_extend(v, type_bytes(in.type))) : v);
}

// ---------------------------------------------------------------------------------------
// Moves and addresses

void exec_mov(block_state& b, thread_state& t, const instruction& in) {
  const operand& d = in.ops[0];
  const operand& a = in.ops[1];
  const int w = width(in);
  const kernel& k = b.k;
  if (d.k == operand::kind::vector) {  // unpack: mov.b64 {lo, hi}, a
    const uint64_t v = value(b, t, a);
    const int ew = 8 * w / static_cast<int>(d.count);
    for (uint32_t i = 0; i < d.count; ++i) set(t, k.vector_elements[d.first + i], truncate(v >> (ew * i), ew / 8));
    return;
  }
  if (a.k == operand::kind::vector) {  // pack: mov.b64 d, {lo, hi}
    const int ew = 8 * w / static_cast<int>(a.count);
    uint64_t v = 0;
    for (uint32_t i = 0; i < a.count; ++i) v |= truncate(value(b, t, k.vector_elements[a.first + i]), ew / 8) << (ew * i);
    set(t, d, v);
    return;
  }
  set(t, d, in.type == ptype::pred ? uint64_t(value(b, t, a) != 0) : truncate(value(b, t, a), w));
}

// cvta[.to].space.size d, a
void exec_cvta(block_state& b, thread_state& t, const instruction& in) {
  const address_windows& w = windows();
  uint64_t a = value(b, t, in.ops[1]);
  const bool to = in.aux == 1;
  uint64_t base = 0;
  if (in.state == space::shared) base = w.shared_base;
  if (in.state == space::local) base = w.local_base + t.frame;  // .local addresses are frame-relative
  if (in.state == space::param) base = w.param_base;
  a = to ? a - base : a + base;
  set(t, in.ops[0], truncate(a, width(in)));
}

// isspacep.space p, a
void exec_isspacep(block_state& b, thread_state& t, const instruction& in) {
  const address_windows& w = windows();
  const uint64_t a = value(b, t, in.ops[1]);
  const bool in_shared = a - w.shared_base < w.shared_size, in_local = a - w.local_base < w.local_size,
             in_param = a - w.param_base < w.param_size;
  bool r = false;
  switch (in.state) {
    case space::shared: r = in_shared; break;
    case space::local: r = in_local; break;
    case space::param: r = in_param; break;
    case space::global: r = !in_shared && !in_local && !in_param; break;
    default: r = false; break;
  }
  set(t, in.ops[0], r);
}

// ---------------------------------------------------------------------------------------
// Memory

void exec_ld(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t address = address_of(t, in.ops[1]);
  const uint32_t total = static_cast<uint32_t>(w * in.vec);
  const uint8_t* p = access(b, t, in, in.state, address, total, total, false);
  if (b.race && p >= b.shared.data() && p < b.shared.data() + b.shared.size())
    race_access(b, t, in, static_cast<uint32_t>(p - b.shared.data()), total, false, "this thread");
  const operand& d = in.ops[0];
  const bool sgn = type_signed(in.type);
  const auto load = [&](int i) {
    uint64_t v = 0;
    std::memcpy(&v, p + i * w, w);
    return sgn ? static_cast<uint64_t>(sign_extend(v, w)) : v;
  };
  if (d.k == operand::kind::vector) {
    for (uint32_t i = 0; i < d.count; ++i) set(t, b.k.vector_elements[d.first + i], load(static_cast<int>(i)));
  } else {
    set(t, d, load(0));
  }
}

void exec_st(block_state& b, thread_state& t, const instruction& in) {
  const int w = width(in);
  const uint64_t address = address_of(t, in.ops[0]);
  const uint32_t total = static_cast<uint32_t>(w * in.vec);
  uint8_t* p = access(b, t, in, in.state, address, total, total, true);
  if (b.race && p >= b.shared.data() && p < b.shared.data() + b.shared.size())
    race_access(b, t, in, static_cast<uint32_t>(p - b.shared.data()), total, true, "this thread");
  const operand& s = in.ops[1];
  if (s.k == operand::kind::vector) {
    for (uint32_t i = 0; i < s.count; ++i) {
      const uint64_t v = value(b, t, b.k.vector_elements[s.first + i]);
      std::memcpy(p + i * w, &v, w);
    }
  } else {
    const uint64_t v = value(b, t, s);
    std::memcpy(p, &v, w);
  }
}

enum atom_op : uint32_t { a_add, a_min, a_max, a_inc, a_dec, a_and, a_or, a_xor, a_exch, a_cas };

//! The new value of an atom/red on `old`; `in_shared`: the address lies in shared memory.
uint64_t atom_apply(const instruction& in, uint64_t old, uint64_t x, uint64_t y, bool in_shared) {
  const ptype type = in.type;
  const int w = type_bytes(type);
  if (is_pair(type) || type_float(type)) {
    const ptype s = scalar_of(type);
    const auto one = [&](uint64_t o, uint64_t v, uint64_t) -> uint64_t {
      if (in.aux == a_add) {
        float_mode m;
        // ISA (atom): "atom.add.f32 on global memory flushes subnormal inputs and results to
        // sign-preserving zero; whereas atom.add.f32 on shared memory supports subnormal inputs
        // and results" (red likewise); the f16/bf16 forms take .noftz and never flush.
        m.ftz = s == ptype::f32 && !in_shared;
        return float_arith(op_add, m, s, o, v, 0);
      }
      if (in.aux == a_exch) return v;
      return float_minmax(in.aux == a_min, false, false, false, s, o, v);
    };
    if (in.aux == a_cas) return truncate(old, w) == truncate(x, w) ? y : old;
    return is_pair(type) ? packed(old, x, 0, one) : one(old, x, 0);
  }
  const bool sgn = type_signed(type);
  old = truncate(old, w);
  x = truncate(x, w);
  switch (in.aux) {
    case a_add: return truncate(old + x, w);
    case a_min: return sgn ? (sign_extend(old, w) < sign_extend(x, w) ? old : x) : std::min(old, x);
    case a_max: return sgn ? (sign_extend(old, w) > sign_extend(x, w) ? old : x) : std::max(old, x);
    case a_inc: return old >= x ? 0 : old + 1;
    case a_dec: return (old == 0 || old > x) ? x : old - 1;
    case a_and: return old & x;
    case a_or: return old | x;
    case a_xor: return old ^ x;
    case a_exch: return x;
    default: return old == x ? truncate(y, w) : old;  // cas
  }
}

// atom[.sem][.scope][.space].op.type d, [a], b[, c]  /  red[...] [a], b
void exec_atom(block_state& b, thread_state& t, const instruction& in) {
  const bool red = in.aux2 == 1;
  const int w = width(in);
  const operand& addr = in.ops[red ? 0 : 1];
  uint8_t* p = access(b, t, in, in.state, address_of(t, addr), w, w, true);
  uint64_t old = 0;
  std::memcpy(&old, p, w);
  const uint64_t x = value(b, t, in.ops[red ? 1 : 2]);
  const uint64_t y = in.aux == a_cas ? value(b, t, in.ops[3]) : 0;
  const bool in_shared = p >= b.shared.data() && p < b.shared.data() + b.shared.size();
  const uint64_t r = atom_apply(in, old, x, y, in_shared);
  std::memcpy(p, &r, w);
  if (!red) set(t, in.ops[0], type_signed(in.type) ? static_cast<uint64_t>(sign_extend(old, w)) & (w == 8 ? ~0ull : 0xFFFFFFFFull) : old);
}

// cp.async.{ca,cg}.shared.global [dst], [src], cp-size[, src-size | ignore-src]
void exec_cp_async(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t size = static_cast<uint32_t>(in.ops[2].imm);
  uint32_t src_size = size;
  if (in.op_count > 3 + int(in.aux2)) {  // aux2: a trailing cache-policy operand (.L2::cache_hint)
    if (in.aux == 1) src_size = predicate(b, t, in.ops[3]) ? 0 : size;  // ignore-src
    else src_size = static_cast<uint32_t>(value(b, t, in.ops[3]));
  }
  if (src_size > size) {
    fail_launch(b, &t, &in, cudaErrorIllegalInstruction, "illegal instruction",
                "cp.async src-size " + std::to_string(src_size) + " exceeds cp-size " + std::to_string(size));
  }
  const uint64_t dst = address_of(t, in.ops[0]);
  access(b, t, in, space::shared, dst, size, size, true);  // checks the destination now
  async_copy c{static_cast<uint32_t>(dst), size, {}};
  if (src_size > 0) {
    const uint8_t* src = access(b, t, in, space::global, address_of(t, in.ops[1]), src_size, size, false);
    std::memcpy(c.data, src, src_size);
  }
  c.ready = t.result;  // profiling: a round trip after the issue when it reads
  t.copies.push_back(c);
}

void exec_cp_async_commit(block_state&, thread_state& t, const instruction&) { t.group_ends.push_back(t.copies.size()); }

void exec_cp_async_wait(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t landed = in.aux == 1 ? complete_async_copies(b, t, in, 0, true)  // wait_all
                                      : complete_async_copies(b, t, in, static_cast<size_t>(in.ops[0].imm), false);
  latency_wait(b, t, in, landed);
}

// ---------------------------------------------------------------------------------------
// Control

void exec_bra(block_state&, thread_state& t, const instruction& in) { t.pc = static_cast<uint32_t>(in.ops[0].imm); }

void exec_exit(block_state&, thread_state& t, const instruction&) { t.state = thread_state::run::exited; }

void exec_trap(block_state& b, thread_state& t, const instruction& in) {
  fail_launch(b, &t, &in, cudaErrorLaunchFailure, "trap", "the kernel executed trap");
}

void exec_nop(block_state&, thread_state&, const instruction&) {}

void exec_griddepcontrol_wait(block_state&, thread_state& t, const instruction&) { t.dependencies_resolved = true; }

// createpolicy: the engine has no cache; the policy is an opaque 0.
void exec_zero(block_state&, thread_state& t, const instruction& in) { set(t, in.ops[0], 0); }

// bar.sync / barrier.sync / bar.red: records the barrier a thread arrives at (the scheduler
// releases it). Operands: [d,] a[, b][, {!}c].
void exec_bar_record(block_state& b, thread_state& t, const instruction& in) {
  const int first = in.aux2 != 0 ? 1 : 0;  // bar.red has a destination
  t.barrier = static_cast<uint32_t>(value(b, t, in.ops[first]));
  const int remaining = in.op_count - first - 1 - (in.aux2 != 0 ? 1 : 0);
  t.barrier_count = remaining > 0 ? static_cast<uint32_t>(value(b, t, in.ops[first + 1])) : 0;
  t.reduction = in.aux2 != 0 ? predicate(b, t, in.ops[in.op_count - 1]) : 0;
  if (t.barrier > 15)
    fail_launch(b, &t, &in, cudaErrorIllegalInstruction, "illegal instruction",
                "barrier id " + std::to_string(t.barrier) + " is not in 0..15");
}

// bar.arrive a, b / barrier.arrive a, b: one arrival at barrier a (of b threads); no wait.
void exec_bar_arrive(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t id = static_cast<uint32_t>(value(b, t, in.ops[0]));
  if (id > 15)
    fail_launch(b, &t, &in, cudaErrorIllegalInstruction, "illegal instruction",
                "barrier id " + std::to_string(id) + " is not in 0..15");
  ++b.arrivals[id];
  if (b.race) race_release(b, t, b.race->barrier_arrivals[id]);
}

// ---------------------------------------------------------------------------------------
// Warp collectives

void warp_sync(block_state&, thread_state* const*, uint32_t, const instruction&) {}

// Lanes of a collective without .aligned may meet at different instructions with the same
// qualifiers (PTX ISA: shfl.sync, vote.sync, match.sync, redux.sync): each lane's operands are
// those of its own instruction.
const instruction& own(const block_state& b, const thread_state& t) { return b.k.code[t.pc]; }

// shfl.sync.mode.b32 d[|p], a, b, c, membermask
void warp_shfl(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  uint32_t source[32] = {};
  for (int l = 0; l < 32; ++l)
    if (lanes[l]) source[l] = static_cast<uint32_t>(value(b, *lanes[l], own(b, *lanes[l]).ops[1]));
  for (int l = 0; l < 32; ++l) {
    thread_state* t = lanes[l];
    if (!t) continue;
    const instruction& mine = own(b, *t);
    const uint32_t bval = value(b, *t, mine.ops[2]) & 0x1F;
    const uint32_t c = static_cast<uint32_t>(value(b, *t, mine.ops[3]));
    const uint32_t cval = c & 0x1F, segmask = c >> 8 & 0x1F;
    const int max_lane = static_cast<int>((l & segmask) | (cval & ~segmask));
    const int min_lane = static_cast<int>(l & segmask);
    int j;
    bool pval;
    switch (in.aux) {
      case 0: j = l - static_cast<int>(bval); pval = j >= max_lane; break;                          // up
      case 1: j = l + static_cast<int>(bval); pval = j <= max_lane; break;                          // down
      case 2: j = l ^ static_cast<int>(bval); pval = j <= max_lane; break;                          // bfly
      default: j = min_lane | static_cast<int>(bval & ~segmask); pval = j <= max_lane; break;       // idx
    }
    if (!pval) j = l;
    if (!(mask >> j & 1))
      fail_launch(b, t, &mine, cudaErrorLaunchFailure, "collective mismatch",
                  "shfl.sync reads lane " + std::to_string(j) + ", which is outside the member mask or has exited");
    set(*t, mine.ops[0], source[j]);
    if (mine.pair >= 0) t->r[mine.pair] = pval;
  }
}

// vote.sync.{all,any,uni}.pred d, {!}a, membermask  /  vote.sync.ballot.b32 d, {!}a, membermask
// (`mask`: the non-exited lanes of membermask, over which the vote is taken)
void warp_vote(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  uint32_t ballot = 0;
  for (int l = 0; l < 32; ++l)
    if (lanes[l] && predicate(b, *lanes[l], own(b, *lanes[l]).ops[1])) ballot |= 1u << l;
  uint64_t r;
  switch (in.aux) {
    case 0: r = ballot == mask; break;
    case 1: r = ballot != 0; break;
    case 2: r = ballot == 0 || ballot == mask; break;
    default: r = ballot; break;
  }
  for (int l = 0; l < 32; ++l)
    if (lanes[l]) set(*lanes[l], own(b, *lanes[l]).ops[0], r);
}

// match.{any,all}.sync.type d[|p], a, membermask
void warp_match(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  const int w = width(in);
  uint64_t v[32] = {};
  for (int l = 0; l < 32; ++l)
    if (lanes[l]) v[l] = truncate(value(b, *lanes[l], own(b, *lanes[l]).ops[1]), w);
  bool all_equal = true;
  int first = __builtin_ctz(mask);
  for (int l = 0; l < 32; ++l)
    if (lanes[l] && v[l] != v[first]) all_equal = false;
  for (int l = 0; l < 32; ++l) {
    if (!lanes[l]) continue;
    uint32_t same = 0;
    for (int j = 0; j < 32; ++j)
      if (lanes[j] && v[j] == v[l]) same |= 1u << j;
    const instruction& mine = own(b, *lanes[l]);
    if (in.aux == 0) set(*lanes[l], mine.ops[0], same);
    else {
      set(*lanes[l], mine.ops[0], all_equal ? mask : 0);
      if (mine.pair >= 0) lanes[l]->r[mine.pair] = all_equal;
    }
  }
}

// redux.sync.op.type d, a, membermask
void warp_redux(block_state& b, thread_state* const* lanes, uint32_t, const instruction& in) {
  const bool sgn = type_signed(in.type);
  int64_t acc = 0;
  bool first = true;
  for (int l = 0; l < 32; ++l) {
    if (!lanes[l]) continue;
    const uint64_t raw = value(b, *lanes[l], own(b, *lanes[l]).ops[1]) & 0xFFFFFFFFu;
    const int64_t v = sgn ? sign_extend(raw, 4) : static_cast<int64_t>(raw);
    if (first) { acc = v; first = false; continue; }
    switch (in.aux) {
      case 0: acc = static_cast<int64_t>(static_cast<uint32_t>(acc + v)); break;
      case 1: acc = std::min(acc, v); break;
      case 2: acc = std::max(acc, v); break;
      case 3: acc &= v; break;
      case 4: acc |= v; break;
      default: acc ^= v; break;
    }
  }
  for (int l = 0; l < 32; ++l)
    if (lanes[l]) set(*lanes[l], own(b, *lanes[l]).ops[0], static_cast<uint64_t>(acc) & 0xFFFFFFFFu);
}

// activemask.b32 d: the lanes executing it together. Threads run one at a time here, so that
// is the executing lane alone: a subset of the converged lanes, which the ISA leaves
// unspecified, the same answer for every lane, never a lane that is elsewhere.
void exec_activemask(block_state&, thread_state& t, const instruction& in) { set(t, in.ops[0], 1u << t.lane); }

// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 d, [a]: lane 8i + r supplies the
// address of row r of matrix i (16 bytes); lane l receives, for each matrix i, elements
// (row l/4, columns 2(l%4), 2(l%4)+1), or with .trans (rows 2(l%4), 2(l%4)+1, column l/4).
void warp_ldmatrix(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  const int count = static_cast<int>(in.aux);
  const bool trans = in.aux2 != 0;
  if (mask != 0xFFFFFFFFu)
    fail_launch(b, lanes[__builtin_ctz(mask)], &in, cudaErrorLaunchFailure, "collective mismatch",
                "ldmatrix needs all 32 lanes of the warp");
  uint16_t m[4][8][8];
  for (int i = 0; i < count; ++i)
    for (int r = 0; r < 8; ++r) {
      thread_state& src = *lanes[8 * i + r];
      const uint8_t* p = access(b, src, in, in.state, address_of(src, in.ops[1]), 16, 16, false);
      if (b.race && p >= b.shared.data() && p < b.shared.data() + b.shared.size())
        race_access(b, src, in, static_cast<uint32_t>(p - b.shared.data()), 16, false, "this thread's ldmatrix row");
      std::memcpy(m[i][r], p, 16);
    }
  const operand& d = in.ops[0];
  for (int l = 0; l < 32; ++l) {
    for (int i = 0; i < count; ++i) {
      uint16_t lo, hi;
      if (trans) {
        lo = m[i][2 * (l % 4)][l / 4];
        hi = m[i][2 * (l % 4) + 1][l / 4];
      } else {
        lo = m[i][l / 4][2 * (l % 4)];
        hi = m[i][l / 4][2 * (l % 4) + 1];
      }
      set(*lanes[l], b.k.vector_elements[d.first + i], uint64_t(hi) << 16 | lo);
    }
  }
}

// mma.sync.aligned.m16n8k16.row.col.{f32.bf16.bf16.f32, f32.f16.f16.f32, f16.f16.f16.f16}
// d, a, b, c. Fragments (lane l, g = l/4, q = l%4): a_i holds A[g + 8(i&1)][2q + 8(i>>1) +
// {0,1}], b_i holds B[2q + 8i + {0,1}][g]; element i of C/D is C[g + 8(i>>1)][2q + (i&1)],
// register c_i for f32, the half (i&1) of c_{i/2} for f16. Each element of D is accumulated in
// double (the products are exact) and rounded once.
void warp_mma(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  if (mask != 0xFFFFFFFFu)
    fail_launch(b, lanes[__builtin_ctz(mask)], &in, cudaErrorLaunchFailure, "collective mismatch",
                "mma.sync needs all 32 lanes of the warp");
  if (b.profile) b.profile->record.tensor_macs += 16 * 8 * 16;  // m16n8k16, the one shape decoded
  const bool bf16 = in.type2 == ptype::bf16, f16_acc = in.type == ptype::f16;
  const auto& ve = b.k.vector_elements;
  const operand &d = in.ops[0], &a = in.ops[1], &bb = in.ops[2], &c = in.ops[3];
  double A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    thread_state& t = *lanes[l];
    const int g = l / 4, q = l % 4;
    for (int i = 0; i < 4; ++i) {
      const uint64_t v = value(b, t, ve[a.first + i]);
      const int row = g + 8 * (i & 1), col = 2 * q + 8 * (i >> 1);
      A[row][col] = half_value(v, bf16);
      A[row][col + 1] = half_value(v >> 16, bf16);
    }
    for (int i = 0; i < 2; ++i) {
      const uint64_t v = value(b, t, ve[bb.first + i]);
      B[2 * q + 8 * i][g] = half_value(v, bf16);
      B[2 * q + 8 * i + 1][g] = half_value(v >> 16, bf16);
    }
    for (int i = 0; i < 4; ++i) {  // f32: c_i is element i; f16: c_{i/2} packs elements i (low), i+1
      const uint64_t v = f16_acc ? value(b, t, ve[c.first + i / 2]) >> (16 * (i & 1)) : value(b, t, ve[c.first + i]);
      C[g + 8 * (i >> 1)][2 * q + (i & 1)] = f16_acc ? half_value(v, false) : as_f32(v);
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, q = l % 4;
    uint64_t packed_d[2] = {0, 0};
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i >> 1), col = 2 * q + (i & 1);
      double sum = C[row][col];
      for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
      if (f16_acc) packed_d[i / 2] |= encode_float(sum, f16_format, rounding::rn) << (16 * (i & 1));
      else set(*lanes[l], ve[d.first + i], bits(static_cast<float>(sum)));
    }
    if (f16_acc) {
      set(*lanes[l], ve[d.first], packed_d[0]);
      set(*lanes[l], ve[d.first + 1], packed_d[1]);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Decoding

space space_of(const std::string& m, bool* found) {
  *found = true;
  if (m == "global") return space::global;
  if (m == "shared" || m == "shared::cta" || m == "shared::cluster") return space::shared;
  if (m == "local") return space::local;
  if (m == "param" || m == "param::entry" || m == "param::func") return space::param;
  if (m == "const") return space::constant;
  *found = false;
  return space::generic;
}

}  // namespace

void unsupported(const instruction& in, const std::string& why) {
  std::string name = in.opcode;
  for (const std::string& m : in.modifiers) name += "." + m;
  throw std::runtime_error("unsupported instruction " + name + (why.empty() ? "" : " (" + why + ")"));
}

void need_operands(const instruction& in, int n) {
  if (in.op_count < n) unsupported(in, "expected " + std::to_string(n) + " operands");
}

void classify_modifiers(instruction& in) {
  int types = 0;
  bool space_set = false;
  for (const std::string& m : in.modifiers) {
    ptype t;
    bool is_space;
    const space s = space_of(m, &is_space);
    if (parse_type(m, &t)) {
      if (types == 0) in.type = t;
      else if (types == 1) in.type2 = t;
      ++types;
    } else if (is_space) {
      if (!space_set) in.state = s;
      space_set = true;
    } else if (m == "rn") in.round = rounding::rn;
    else if (m == "rz") in.round = rounding::rz;
    else if (m == "rm") in.round = rounding::rm;
    else if (m == "rp") in.round = rounding::rp;
    else if (m == "rna") in.round = rounding::rna;
    else if (m == "rni") in.round = rounding::rni;
    else if (m == "rzi") in.round = rounding::rzi;
    else if (m == "rmi") in.round = rounding::rmi;
    else if (m == "rpi") in.round = rounding::rpi;
    else if (m == "ftz") in.ftz = true;
    else if (m == "approx" || m == "full") in.approx = true;
    else if (m == "relu") in.relu = true;
    else if (m == "noftz") in.noftz = true;
    else if (m == "sat") in.sat = true;
    else if (m == "v2") in.vec = 2;
    else if (m == "v4") in.vec = 4;
    else if (m == "v8") in.vec = 8;
  }
}

uint64_t bits_of_decimal_literal(double value, ptype t) {
  if (t == ptype::f64) return bits(value);
  if (t == ptype::f32) return bits(static_cast<float>(value));
  if (type_float(t) || is_pair(t)) return encode_float(value, format_of(t), rounding::rn);
  return static_cast<uint64_t>(static_cast<int64_t>(value));
}

uint32_t signature_of(const instruction& in) {
  static std::unordered_map<std::string, uint32_t> ids;
  std::string name = in.opcode;
  for (const std::string& m : in.modifiers) name += "." + m;
  return ids.emplace(name, static_cast<uint32_t>(ids.size())).first->second;
}

namespace {

//! The dotted qualifiers each opcode's handler implements, beside its types (parse_type) and
//! state spaces (space_of), which the handlers check: a qualifier outside its opcode's row is
//! refused at load, naming it, rather than dropped (e.g. max.xorsign.abs, cvt.pack,
//! st.async, lop3.or). Memory ordering, scope and cache qualifiers are implemented as the
//! emulator's sequential model makes them: every access is visible at once.
const std::unordered_map<std::string, std::unordered_set<std::string>>& implemented_qualifiers() {
  using set = std::unordered_set<std::string>;
  static const set float_round = {"rn", "rz", "rm", "rp"};
  const auto with = [](set base, std::initializer_list<const char*> more) {
    for (const char* m : more) base.insert(m);
    return base;
  };
  static const set comparisons_and_bool = {"eq",  "ne",  "lt",  "le",  "gt",  "ge",  "lo",  "ls",  "hi",
                                           "hs",  "equ", "neu", "ltu", "leu", "gtu", "geu", "num", "nan",
                                           "and", "or",  "xor", "ftz"};
  static const set order_scope = {"weak", "relaxed", "acquire", "release", "acq_rel", "volatile", "sc",
                                  "cta",  "cluster", "gpu",     "sys"};
  static const set cache_hints = {"L1::evict_normal", "L1::evict_unchanged", "L1::evict_first", "L1::evict_last",
                                  "L1::no_allocate",  "L2::evict_normal",    "L2::evict_first", "L2::evict_last",
                                  "L2::cache_hint",   "L2::64B",             "L2::128B",        "L2::256B"};
  const auto memory = [&](std::initializer_list<const char*> more) {
    set s = order_scope;
    s.insert(cache_hints.begin(), cache_hints.end());
    for (const char* m : more) s.insert(m);
    return s;
  };
  static const std::unordered_map<std::string, set> table = {
      {"add", with(float_round, {"ftz", "sat", "cc"})},
      {"sub", with(float_round, {"ftz", "sat", "cc"})},
      {"addc", {"cc"}},
      {"subc", {"cc"}},
      {"mul", with(float_round, {"ftz", "sat", "hi", "lo", "wide"})},
      {"mad", with(float_round, {"ftz", "sat", "hi", "lo", "wide", "cc"})},
      {"madc", {"hi", "lo", "cc"}},
      {"fma", with(float_round, {"ftz", "sat", "relu"})},
      {"mul24", {"hi", "lo"}},
      {"mad24", {"hi", "lo"}},
      {"sad", {}},
      {"slct", {}},
      {"div", with(float_round, {"approx", "full", "ftz"})},
      {"rem", {}},
      {"abs", {"ftz"}},
      {"neg", {"ftz"}},
      {"not", {}},
      {"cnot", {}},
      {"popc", {}},
      {"clz", {}},
      {"brev", {}},
      {"bfind", {"shiftamt"}},
      {"min", {"NaN", "ftz", "relu"}},
      {"max", {"NaN", "ftz", "relu"}},
      {"and", {}},
      {"or", {}},
      {"xor", {}},
      {"shl", {}},
      {"shr", {}},
      {"shf", {"l", "r", "clamp", "wrap"}},
      {"bfe", {}},
      {"bmsk", {"clamp", "wrap"}},
      {"bfi", {}},
      {"prmt", {"f4e", "b4e", "rc8", "ecl", "ecr", "rc16"}},
      {"lop3", {}},
      {"setp", comparisons_and_bool},
      {"set", comparisons_and_bool},
      {"selp", {}},
      {"rcp", with(float_round, {"approx", "ftz"})},
      {"sqrt", with(float_round, {"approx", "ftz"})},
      {"rsqrt", {"approx", "ftz"}},
      {"ex2", {"approx", "ftz"}},
      {"lg2", {"approx", "ftz"}},
      {"sin", {"approx", "ftz"}},
      {"cos", {"approx", "ftz"}},
      {"tanh", {"approx"}},
      {"testp", {"finite", "infinite", "number", "notanumber", "normal", "subnormal"}},
      {"copysign", {}},
      {"cvt", with(float_round, {"rna", "rni", "rzi", "rmi", "rpi", "ftz", "sat", "relu", "satfinite", "tf32", "e4m3x2",
                                   "e5m2x2"})},
      {"mov", {}},
      {"cvta", {"to"}},
      {"isspacep", {}},
      {"ld", memory({"ca", "cg", "cs", "lu", "cv", "nc", "v2", "v4"})},
      {"ldu", memory({"v2", "v4"})},
      {"st", memory({"wb", "cg", "cs", "wt", "v2", "v4"})},
      {"atom", memory({"add", "min", "max", "inc", "dec", "and", "or", "xor", "exch", "cas", "noftz"})},
      {"red", memory({"add", "min", "max", "inc", "dec", "and", "or", "xor", "noftz"})},
      {"cp", {"async", "ca", "cg", "commit_group", "wait_group", "wait_all", "L2::cache_hint", "L2::64B", "L2::128B",
              "L2::256B"}},
      {"bra", {"uni"}},
      {"call", {"uni"}},
      {"ret", {"uni"}},
      {"exit", {}},
      {"trap", {}},
      {"griddepcontrol", {"wait", "launch_dependents"}},
      {"membar", {"cta", "gl", "sys"}},
      {"fence", with(order_scope, {"proxy", "async", "alias", "mbarrier_init", "tensormap::generic", "async::generic",
                                   "sync_restrict::shared::cta", "sync_restrict::shared::cluster"})},
      {"nanosleep", {}},
      {"prefetch", {"L1", "L2", "L2::evict_last", "L2::evict_normal", "tensormap"}},
      {"prefetchu", {"L1"}},
      {"pmevent", {"mask"}},
      {"createpolicy", {"fractional", "range", "cvt", "L2", "L2::evict_last", "L2::evict_normal", "L2::evict_first",
                        "L2::evict_unchanged"}},
      {"bar", {"sync", "arrive", "red", "popc", "and", "or", "warp", "aligned", "cta"}},
      {"barrier", {"sync", "arrive", "red", "popc", "and", "or", "aligned", "cta"}},
      {"shfl", {"sync", "up", "down", "bfly", "idx"}},
      {"vote", {"sync", "all", "any", "uni", "ballot"}},
      {"match", {"sync", "any", "all"}},
      {"redux", {"sync", "add", "min", "max", "and", "or", "xor"}},
      {"activemask", {}},
      {"ldmatrix", {"sync", "aligned", "m8n8", "x1", "x2", "x4", "trans"}},
      {"mma", {"sync", "aligned", "m16n8k16", "row", "col"}},
  };
  return table;
}

//! Refuses, naming it, an opcode without a handler or a qualifier its handler does not implement.
void check_qualifiers(const instruction& in) {
  const auto row = implemented_qualifiers().find(in.opcode);
  if (row == implemented_qualifiers().end()) unsupported(in, "unknown opcode " + in.opcode);
  for (const std::string& m : in.modifiers) {
    ptype t;
    bool is_space = false;
    space_of(m, &is_space);
    if (parse_type(m, &t) || is_space || row->second.count(m)) continue;
    unsupported(in, "qualifier ." + m + " of " + in.opcode + " is not implemented");
  }
}

//! The fp8 forms of cvt (exec_cvt_fp8), the ISA's three alone: the one type of the modifiers is
//! the source when the fp8 pair precedes it. in.type / in.type2 become d's and a's types.
void decode_cvt_fp8(instruction& in) {
  const bool e5m2 = has(in, "e5m2x2");
  if (e5m2 && has(in, "e4m3x2")) unsupported(in, "two fp8 types");
  const std::string fp8 = e5m2 ? "e5m2x2" : "e4m3x2";
  int types = 0;
  bool to_fp8 = false;
  for (const std::string& m : in.modifiers) {
    ptype t;
    if (m == fp8) to_fp8 = types == 0;
    else if (parse_type(m, &t)) ++types;
  }
  if (types != 1) unsupported(in, "an fp8 conversion names one other type");
  if (in.round != rounding::rn) unsupported(in, "fp8 conversions need .rn");
  if (in.ftz || in.sat) unsupported(in, "no .ftz or .sat on fp8 conversions");
  if (to_fp8) {
    if (!in.aux2) unsupported(in, ".satfinite is mandatory for conversions to ." + fp8);
    if (in.type != ptype::f32 && in.type != ptype::f16x2) unsupported(in, "to ." + fp8 + " only from .f32 or .f16x2");
    need_operands(in, in.type == ptype::f32 ? 3 : 2);
    in.type2 = in.type;
    in.type = ptype::b16;
  } else {
    if (in.aux2) unsupported(in, "no .satfinite on conversions from ." + fp8);
    if (in.type != ptype::f16x2) unsupported(in, "from ." + fp8 + " only to .f16x2");
    need_operands(in, 2);
    in.type2 = ptype::b16;
  }
  in.aux = e5m2 ? cvt_e5m2 : cvt_e4m3;
  in.exec = exec_cvt_fp8;
}

}  // namespace

void decode_instruction(instruction& in, const kernel& k) {
  in.signature = signature_of(in);
  in.aligned = has(in, "aligned");
  if (decode_hopper_instruction(in, k) || decode_wmma_instruction(in, k)) return;
  check_qualifiers(in);
  if (decode_call_instruction(in)) return;
  const std::string& op = in.opcode;
  const auto cmp_of = [&]() {
    for (const std::string& m : in.modifiers) {
      const auto it = comparisons().find(m);
      if (it != comparisons().end()) return it->second;
    }
    unsupported(in, "no comparison");
  };
  const auto bool_of = [&]() -> uint32_t {
    if (has(in, "and")) return and_op;
    if (has(in, "or")) return or_op;
    if (has(in, "xor")) return xor_op;
    return none_op;
  };
  const bool flt = type_float(in.type) || is_pair(in.type);
  static const char* typed[] = {"add", "sub", "mul", "mad", "div", "rem", "min", "max", "abs", "neg", "and", "or",
                                "xor", "not", "shl", "shr", "setp", "selp", "ld", "st", "atom", "red", "mov", "cvt"};
  for (const char* o : typed)
    if (op == o && in.type == ptype::none && !has(in, "tf32")) unsupported(in, "an unknown or missing type");

  const bool cc = has(in, "cc");
  if (((op == "add" || op == "sub") && cc) || op == "addc" || op == "subc") {
    in.aux = op == "sub" || op == "subc";
    in.aux2 = (op == "addc" || op == "subc" ? 1 : 0) | (cc ? 2 : 0);  // 1: reads CC.CF, 2: writes it
    in.exec = exec_carry;
    return;
  }
  if ((op == "mad" && cc) || op == "madc") {
    in.aux = has(in, "hi");
    in.aux2 = (op == "madc" ? 1 : 0) | (cc ? 2 : 0);
    in.exec = exec_mad_carry;
    return;
  }
  if (op == "sad") { in.exec = exec_sad; return; }
  if (op == "slct") { in.exec = exec_slct; return; }
  if (op == "add" || op == "sub" || op == "mul" || op == "mad" || op == "fma") {
    if (flt) {
      need_operands(in, op == "fma" || op == "mad" ? 4 : 3);
      in.aux = op == "add" ? op_add : op == "sub" ? op_sub : op == "mul" ? op_mul : op_fma;
      in.exec = exec_float_arith;
      return;
    }
    if (op == "fma") unsupported(in);
    if (op == "add" || op == "sub") { in.aux = op == "sub"; in.exec = exec_add; return; }
    in.aux = has(in, "hi") ? 1 : has(in, "wide") ? 2 : 0;
    in.aux2 = op == "mad";
    in.exec = exec_mul;
    return;
  }
  if (op == "mul24" || op == "mad24") {
    in.aux = has(in, "hi") ? 1 : 0;
    in.aux2 = op == "mad24";
    in.exec = exec_mul24;
    return;
  }
  if (op == "div" && flt) {
    if (!has(in, "approx") && !has(in, "full") && in.round == rounding::none) unsupported(in, "no rounding");
    in.aux = f_div;
    in.aux2 = has(in, "approx");  // .approx's range rule
    in.exec = exec_float_special;
    return;
  }
  if (op == "div" || op == "rem") { in.aux = op == "rem"; in.exec = exec_div; return; }
  if ((op == "abs" || op == "neg") && flt) { in.aux = op == "neg"; in.exec = exec_float_sign; return; }
  static const std::map<std::string, uint32_t> unary = {{"neg", u_neg},   {"abs", u_abs},  {"not", u_not},
                                                        {"cnot", u_cnot}, {"popc", u_popc}, {"clz", u_clz},
                                                        {"brev", u_brev}, {"bfind", u_bfind}};
  if (const auto it = unary.find(op); it != unary.end()) {
    in.aux = it->second;
    in.aux2 = has(in, "shiftamt");
    in.exec = exec_int_unary;
    return;
  }
  if (op == "min" || op == "max") {
    in.aux = op == "max";
    in.aux2 = (has(in, "NaN") ? 1 : 0) | (has(in, "relu") ? 2 : 0);
    in.exec = flt ? exec_float_minmax : exec_minmax_int;
    return;
  }
  if (op == "and" || op == "or" || op == "xor") {
    in.aux = op == "and" ? 0 : op == "or" ? 1 : 2;
    in.exec = in.type == ptype::pred ? exec_pred_logic : exec_logic;
    return;
  }
  if (op == "shl" || op == "shr") { in.aux = op == "shr"; in.exec = exec_shift; return; }
  if (op == "shf") { in.aux = has(in, "clamp"); in.aux2 = has(in, "l"); in.exec = exec_shf; return; }
  if (op == "bfe") { in.exec = exec_bfe; return; }
  if (op == "bmsk") {
    if (has(in, "clamp") == has(in, "wrap")) unsupported(in, "needs one of .clamp and .wrap");
    in.aux = has(in, "clamp");
    in.exec = exec_bmsk;
    return;
  }
  if (op == "bfi") { in.exec = exec_bfi; return; }
  if (op == "prmt") {
    static const char* modes[] = {"f4e", "b4e", "rc8", "ecl", "ecr", "rc16"};
    for (uint32_t i = 0; i < 6; ++i)
      if (has(in, modes[i])) in.aux = i + 1;
    in.exec = exec_prmt;
    return;
  }
  if (op == "lop3") { in.exec = exec_lop3; return; }
  if (op == "setp") { in.aux = cmp_of(); in.aux2 = bool_of(); in.exec = exec_setp; return; }
  if (op == "set") { in.aux = cmp_of(); in.aux2 = bool_of(); in.exec = exec_set; return; }
  if (op == "selp") { in.exec = exec_selp; return; }
  if (op == "rcp" || op == "sqrt" || op == "rsqrt" || op == "ex2" || op == "lg2" || op == "sin" || op == "cos" ||
      op == "tanh") {
    const bool approx = has(in, "approx");
    if ((op == "rsqrt" || op == "ex2" || op == "lg2" || op == "sin" || op == "cos" || op == "tanh") && !approx)
      unsupported(in, "only .approx exists");
    if ((op == "ex2" || op == "lg2" || op == "sin" || op == "cos" || op == "tanh") && in.type != ptype::f32)
      unsupported(in, "only f32 is implemented");
    in.aux = op == "rcp" ? f_rcp : op == "sqrt" ? f_sqrt : op == "rsqrt" ? f_rsqrt : op == "ex2" ? f_ex2
           : op == "lg2" ? f_lg2 : op == "sin" ? f_sin : op == "cos" ? f_cos : f_tanh;
    in.exec = exec_float_special;
    return;
  }
  if (op == "testp") {
    static const char* ops[] = {"finite", "infinite", "number", "notanumber", "normal", "subnormal"};
    bool found = false;
    for (uint32_t i = 0; i < 6; ++i)
      if (has(in, ops[i])) { in.aux = i; found = true; }
    if (!found) unsupported(in);
    in.exec = exec_testp;
    return;
  }
  if (op == "copysign") { in.exec = exec_copysign; return; }
  if (op == "cvt") {
    in.aux2 = has(in, "satfinite");
    if (has(in, "e4m3x2") || has(in, "e5m2x2")) {
      decode_cvt_fp8(in);
      return;
    }
    if (has(in, "tf32")) {  // cvt.rna[.satfinite].tf32.f32: "tf32" is no ptype; the result is an f32 encoding
      if (in.type != ptype::f32 || in.type2 != ptype::none || in.round != rounding::rna)
        unsupported(in, "tf32 only from f32 with .rna");
      in.type2 = ptype::f32;
      in.aux = cvt_tf32;
    } else if (in.type2 == ptype::none) {
      unsupported(in, "needs two types");
    } else if (in.round == rounding::rna) {
      unsupported(in, ".rna is for tf32 only");
    }
    in.exec = exec_cvt;
    return;
  }
  if (op == "mov") {
    if (in.type == ptype::b128) unsupported(in, "128-bit registers");
    in.exec = exec_mov;
    return;
  }
  if (op == "cvta") {
    in.aux = has(in, "to") ? 1 : 0;
    if (in.state == space::param && in.aux == 1) unsupported(in, "cvta.to.param");
    in.exec = exec_cvta;
    return;
  }
  if (op == "isspacep") { in.exec = exec_isspacep; return; }
  if (in.type == ptype::b128) unsupported(in, "128-bit registers");
  if (op == "ld" || op == "ldu") {
    if (has(in, "mmio")) unsupported(in);
    in.exec = exec_ld;
    return;
  }
  if (op == "st") { in.exec = exec_st; return; }
  if (op == "atom" || op == "red") {
    static const char* ops[] = {"add", "min", "max", "inc", "dec", "and", "or", "xor", "exch", "cas"};
    bool found = false;
    for (uint32_t i = 0; i < 10; ++i)
      if (has(in, ops[i])) { in.aux = i; found = true; }
    if (!found || in.vec != 1) unsupported(in);
    in.aux2 = op == "red";
    in.exec = exec_atom;
    return;
  }
  if (op == "cp") {
    if (in.modifiers.empty() || in.modifiers[0] != "async") unsupported(in);
    if (has(in, "commit_group")) { in.exec = exec_cp_async_commit; return; }
    if (has(in, "wait_group")) { in.exec = exec_cp_async_wait; return; }
    if (has(in, "wait_all")) { in.aux = 1; in.exec = exec_cp_async_wait; return; }
    if (has(in, "bulk") || has(in, "mbarrier")) unsupported(in, "sm_90 asynchronous copies");
    need_operands(in, 3);
    if (in.ops[2].k != operand::kind::imm || (in.ops[2].imm != 4 && in.ops[2].imm != 8 && in.ops[2].imm != 16) ||
        (has(in, "cg") && in.ops[2].imm != 16))
      unsupported(in, "cp-size must be 4, 8 or 16 (16 for .cg)");
    in.aux2 = has(in, "L2::cache_hint");
    if (in.op_count > 3 + int(in.aux2) && in.ops[3].k == operand::kind::reg &&
        k.register_types[static_cast<size_t>(in.ops[3].reg)] == ptype::pred)
      in.aux = 1;  // ignore-src
    in.exec = exec_cp_async;
    return;
  }
  if (op == "bra") { in.exec = exec_bra; return; }
  if (op == "exit") { in.exec = exec_exit; return; }
  if (op == "trap") { in.exec = exec_trap; return; }
  // griddepcontrol: launches run one after another, so .launch_dependents releases nothing and
  // .wait finds its prerequisite grids complete; .wait ends the programmatic-dependent-launch
  // check of the thread (execute.cpp).
  if (op == "griddepcontrol") {
    if (has(in, "wait")) in.exec = exec_griddepcontrol_wait;
    else if (has(in, "launch_dependents")) in.exec = exec_nop;
    else unsupported(in, "neither .wait nor .launch_dependents");
    return;
  }
  if (op == "membar" || op == "fence" || op == "nanosleep" || op == "prefetch" || op == "prefetchu" ||
      op == "pmevent") {
    in.exec = exec_nop;
    return;
  }
  if (op == "createpolicy") { in.exec = exec_zero; return; }
  if (op == "bar" || op == "barrier") {
    if (has(in, "warp")) {
      in.sync = sync_kind::warp;
      in.mask_operand = 0;
      in.waits_for_exited = true;
      in.warp_exec = warp_sync;
      return;
    }
    if (has(in, "cluster")) unsupported(in, "clusters");
    if (has(in, "arrive")) {  // counts towards the barrier without waiting
      need_operands(in, 2);
      in.exec = exec_bar_arrive;
      return;
    }
    if (has(in, "red")) in.aux2 = has(in, "popc") ? 1 : has(in, "and") ? 2 : 3;
    in.aligned = op == "bar" || in.aligned;  // bar.sync is barrier.sync.aligned
    in.opcode = "bar";
    in.sync = sync_kind::block;
    in.exec = exec_bar_record;
    return;
  }
  if (op == "shfl") {
    if (!has(in, "sync")) unsupported(in, "shfl without .sync");
    in.aux = has(in, "up") ? 0 : has(in, "down") ? 1 : has(in, "bfly") ? 2 : 3;
    need_operands(in, 5);
    in.sync = sync_kind::warp;
    in.mask_operand = 4;
    in.warp_exec = warp_shfl;
    return;
  }
  if (op == "vote") {
    if (!has(in, "sync")) unsupported(in, "vote without .sync");
    in.aux = has(in, "all") ? 0 : has(in, "any") ? 1 : has(in, "uni") ? 2 : 3;
    need_operands(in, 3);
    in.sync = sync_kind::warp;
    in.mask_operand = 2;
    in.warp_exec = warp_vote;
    return;
  }
  if (op == "match") {
    in.aux = has(in, "any") ? 0 : 1;
    need_operands(in, 3);
    in.sync = sync_kind::warp;
    in.mask_operand = 2;
    in.warp_exec = warp_match;
    return;
  }
  if (op == "redux") {
    static const char* ops[] = {"add", "min", "max", "and", "or", "xor"};
    bool found = false;
    for (uint32_t i = 0; i < 6; ++i)
      if (has(in, ops[i])) { in.aux = i; found = true; }
    if (!found || in.type == ptype::f32) unsupported(in);
    in.sync = sync_kind::warp;
    in.mask_operand = 2;
    in.warp_exec = warp_redux;
    return;
  }
  if (op == "activemask") { in.exec = exec_activemask; return; }
  if (op == "ldmatrix") {
    if (!has(in, "m8n8") || in.type != ptype::b16) unsupported(in);
    in.aux = has(in, "x4") ? 4 : has(in, "x2") ? 2 : 1;
    in.aux2 = has(in, "trans");
    if (in.ops[0].k != operand::kind::vector || in.ops[0].count != in.aux) unsupported(in, "destination count");
    in.sync = sync_kind::warp;
    in.warp_exec = warp_ldmatrix;
    return;
  }
  if (op == "mma") {
    // types: d, a, b, c
    std::vector<ptype> types;
    for (const std::string& m : in.modifiers) {
      ptype t;
      if (parse_type(m, &t)) types.push_back(t);
    }
    const bool f32_acc = types.size() == 4 && types[0] == ptype::f32 && types[3] == ptype::f32 &&
                         (types[1] == ptype::bf16 || types[1] == ptype::f16) && types[2] == types[1];
    const bool f16_acc = types.size() == 4 && std::all_of(types.begin(), types.end(), [](ptype t) { return t == ptype::f16; });
    if (!has(in, "m16n8k16") || !has(in, "row") || !has(in, "col") || !(f32_acc || f16_acc))
      unsupported(in, "only m16n8k16.row.col, bf16/f16 inputs with f32 accumulators or f16 throughout");
    in.type = types[0];
    in.type2 = types[1];
    const uint32_t acc = f16_acc ? 2 : 4;
    const auto count = [&](int i) { return in.ops[i].k == operand::kind::vector ? in.ops[i].count : 0u; };
    if (count(0) != acc || count(1) != 4 || count(2) != 2 || count(3) != acc) unsupported(in, "operand vector sizes");
    in.sync = sync_kind::warp;
    in.warp_exec = warp_mma;
    return;
  }
  unsupported(in, "unknown opcode");
}

}  // namespace emu
