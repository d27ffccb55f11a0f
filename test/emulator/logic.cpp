// Comparison, selection, logic and shift (PTX ISA 9.7.5, 9.7.6 and 9.7.8): setp, set, selp,
// slct, and, or, xor, not, cnot, lop3, shl, shr, shf.
#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "decode.hpp"
#include "semantics.hpp"

namespace emu {
namespace {

enum class comparison : uint8_t { eq, ne, lt, le, gt, ge, lo, ls, hi, hs, equ, neu, ltu, leu, gtu, geu, num, nan };
constexpr const char* comparison_names[] = {"eq",  "ne",  "lt",  "le",  "gt",  "ge",  "lo",  "ls",  "hi",
                                            "hs",  "equ", "neu", "ltu", "leu", "gtu", "geu", "num", "nan"};
enum class bool_op : uint8_t { none, and_, or_, xor_ };

//! The payload of setp and set: the comparison and the optional .bool combination with c.
struct compare_payload {
  comparison c;
  bool_op combine;
};

enum class logic_op : uint8_t { and_, or_, xor_ };
struct logic_payload {
  logic_op op;
};

//! The payload of not and cnot.
struct not_payload {
  bool logical;  //!< cnot: 1 for a zero source, else 0
};

struct shift_payload {
  bool right;  //!< shr, shf.r
  bool clamp;  //!< shf.clamp (else .wrap)
};

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


uint64_t logic_value(const instruction& in, uint64_t x, uint64_t y) {
  const logic_op op = payload<logic_payload>(in).op;
  uint64_t r = op == logic_op::and_ ? (x & y) : op == logic_op::or_ ? (x | y) : (x ^ y);
  if (in.type == ptype::pred) r = r != 0;
  return truncate(r, width(in));
}

void exec_logic(block_state& b, thread_state& t, const instruction& in) {
  set(t, in.ops[0], logic_value(in, value(b, t, in.ops[1]), value(b, t, in.ops[2])));
}

void group_logic(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t x, uint64_t y) { return logic_value(in, x, y); });
}

// Predicate logic with possibly negated operands (and.pred d, !a, b).
void exec_pred_logic(block_state& b, thread_state& t, const instruction& in) {
  const bool x = predicate(b, t, in.ops[1]), y = predicate(b, t, in.ops[2]);
  const logic_op op = payload<logic_payload>(in).op;
  const bool r = op == logic_op::and_ ? (x && y) : op == logic_op::or_ ? (x || y) : (x != y);
  set(t, in.ops[0], r);
}

void group_pred_logic(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  const logic_op op = payload<logic_payload>(in).op;
  for_lanes(warp, mask, in, [op](uint64_t a, uint64_t c) -> uint64_t {
    const bool x = a != 0, y = c != 0;
    return op == logic_op::and_ ? (x && y) : op == logic_op::or_ ? (x || y) : (x != y);
  });
}

// not / cnot: the bitwise complement (of a predicate: its negation); cnot: 1 for 0, else 0.
// not / cnot (cnot: the payload's flag).
uint64_t not_value(const instruction& in, uint64_t x) {
  const int w = width(in);
  x = truncate(x, w);
  if (payload<not_payload>(in).logical || in.type == ptype::pred) return x == 0;
  return truncate(~x, w);
}

void exec_not(block_state& b, thread_state& t, const instruction& in) { set(t, in.ops[0], not_value(in, value(b, t, in.ops[1]))); }

void group_not(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t x) { return not_value(in, x); });
}

// shl / shr: shift amounts beyond the width give 0 (or the sign fill for shr.s).
uint64_t shift_value(const instruction& in, uint64_t x, uint64_t amount) {
  const int w = width(in);
  const uint32_t n = static_cast<uint32_t>(amount);
  uint64_t r;
  if (!payload<shift_payload>(in).right) {  // shl
    r = n >= uint32_t(8 * w) ? 0 : x << n;
  } else if (type_signed(in.type)) {
    const int64_t s = sign_extend(x, w);
    r = static_cast<uint64_t>(n >= uint32_t(8 * w) ? (s < 0 ? -1 : 0) : s >> n);
  } else {
    r = n >= uint32_t(8 * w) ? 0 : truncate(x, w) >> n;
  }
  return truncate(r, w);
}

void exec_shift(block_state& b, thread_state& t, const instruction& in) {
  set(t, in.ops[0], shift_value(in, value(b, t, in.ops[1]), value(b, t, in.ops[2])));
}

void group_shift(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t x, uint64_t n) { return shift_value(in, x, n); });
}

// shf.{l,r}.{clamp,wrap}.b32 d, a, b, c: funnel shift of the 64-bit b:a.
void exec_shf(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t lo = value(b, t, in.ops[1]) & 0xFFFFFFFFu, hi = value(b, t, in.ops[2]) & 0xFFFFFFFFu;
  const uint32_t c = static_cast<uint32_t>(value(b, t, in.ops[3]));
  const shift_payload& p = payload<shift_payload>(in);
  const uint32_t n = p.clamp ? std::min<uint32_t>(c, 32) : c & 31;
  const uint64_t v = hi << 32 | lo;
  const uint64_t r = p.right ? v >> n : (v << n) >> 32;
  set(t, in.ops[0], r & 0xFFFFFFFFu);
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

inline bool compare_int(uint64_t x, uint64_t y, ptype type, comparison c) {
  const int w = type_bytes(type);
  const bool sgn = type_signed(type);
  const int64_t a = sign_extend(x, w), b = sign_extend(y, w);
  const uint64_t ua = truncate(x, w), ub = truncate(y, w);
  switch (c) {
    case comparison::eq: return ua == ub;
    case comparison::ne: return ua != ub;
    case comparison::lt: return sgn ? a < b : ua < ub;
    case comparison::le: return sgn ? a <= b : ua <= ub;
    case comparison::gt: return sgn ? a > b : ua > ub;
    case comparison::ge: return sgn ? a >= b : ua >= ub;
    case comparison::lo: return ua < ub;
    case comparison::ls: return ua <= ub;
    case comparison::hi: return ua > ub;
    case comparison::hs: return ua >= ub;
    default: return false;
  }
}

//! a c b for floats of any precision (f16 and bf16 operands are exact in float).
template <class F>
inline bool compare_float(F a, F b, comparison c) {
  const bool unordered = std::isnan(a) || std::isnan(b);
  switch (c) {
    case comparison::eq: return !unordered && a == b;
    case comparison::ne: return !unordered && a != b;
    case comparison::lt: return !unordered && a < b;
    case comparison::le: return !unordered && a <= b;
    case comparison::gt: return !unordered && a > b;
    case comparison::ge: return !unordered && a >= b;
    case comparison::equ: return unordered || a == b;
    case comparison::neu: return unordered || a != b;
    case comparison::ltu: return unordered || a < b;
    case comparison::leu: return unordered || a <= b;
    case comparison::gtu: return unordered || a > b;
    case comparison::geu: return unordered || a >= b;
    case comparison::num: return !unordered;
    case comparison::nan: return unordered;
    default: return false;
  }
}

//! u c v at `type` (not a packed pair), with the instruction's comparison and .ftz.
bool compare_bits(const instruction& in, ptype type, uint64_t u, uint64_t v) {
  const comparison c = payload<compare_payload>(in).c;
  if (type == ptype::f32) return compare_float(as_f32(ftz32(u, in.ftz)), as_f32(ftz32(v, in.ftz)), c);
  if (type == ptype::f64) return compare_float(as_f64(u), as_f64(v), c);
  if (type_float(type))
    return compare_float(float(operand_float(u, type, in.ftz)), float(operand_float(v, type, in.ftz)), c);
  return compare_int(u, v, type, c);
}

bool compare(block_state& b, thread_state& t, const instruction& in, ptype type, const operand& x, const operand& y) {
  return compare_bits(in, type, value(b, t, x), value(b, t, y));
}

bool combine(bool r, bool c, bool_op op) {
  switch (op) {
    case bool_op::and_: return r && c;
    case bool_op::or_: return r || c;
    case bool_op::xor_: return r != c;
    default: return r;
  }
}

// The comparison of the two halves of packed f16x2 / bf16x2 operands: bit 0 low, bit 1 high.
uint32_t compare_halves(block_state& b, thread_state& t, const instruction& in, ptype packed_type) {
  const ptype s = scalar_of(packed_type);
  const uint64_t x = value(b, t, in.ops[1]), y = value(b, t, in.ops[2]);
  const comparison c = payload<compare_payload>(in).c;
  const auto half = [&](uint64_t h) { return float(operand_float(h, s, in.ftz)); };
  const bool lo = compare_float(half(x & 0xFFFF), half(y & 0xFFFF), c);
  const bool hi = compare_float(half(x >> 16 & 0xFFFF), half(y >> 16 & 0xFFFF), c);
  return uint32_t(lo) | uint32_t(hi) << 1;
}

// setp.cmp[.bool].type p[|q], a, b[, {!}c]: q = BoolOp(!t, c); for packed halves p takes the
// low half's result and q the high half's.
void exec_setp(block_state& b, thread_state& t, const instruction& in) {
  const bool_op op = payload<compare_payload>(in).combine;
  const bool c = op != bool_op::none ? predicate(b, t, in.ops[3]) : false;
  if (is_pair(in.type)) {
    const uint32_t r = compare_halves(b, t, in, in.type);
    set(t, in.ops[0], combine(r & 1, c, op));
    if (in.pair >= 0) reg(t, in.pair) = combine(r >> 1 & 1, c, op);
    return;
  }
  const bool r = compare(b, t, in, in.type, in.ops[1], in.ops[2]);
  set(t, in.ops[0], combine(r, c, op));
  if (in.pair >= 0) reg(t, in.pair) = combine(!r, c, op);
}

// set.cmp[.bool].dtype.stype d, a, b[, {!}c]: true is 1.0 in a float destination, all ones in
// an integer one; packed operands give one result per half.
void exec_set(block_state& b, thread_state& t, const instruction& in) {
  const bool_op op = payload<compare_payload>(in).combine;
  const bool c = op != bool_op::none ? predicate(b, t, in.ops[3]) : false;
  const auto truth = [&](ptype d) -> uint64_t {
    if (type_float(d) || is_pair(d)) return encode_float(1.0L, format_of(d), rounding::rn);
    return d == ptype::u16 || d == ptype::s16 || is_pair(in.type2) ? 0xFFFFu : 0xFFFFFFFFu;
  };
  if (is_pair(in.type2)) {
    const uint32_t r = compare_halves(b, t, in, in.type2);
    const uint64_t one = truth(in.type);
    set(t, in.ops[0], (combine(r & 1, c, op) ? one : 0) | (combine(r >> 1 & 1, c, op) ? one : 0) << 16);
    return;
  }
  const bool r = combine(compare(b, t, in, in.type2, in.ops[1], in.ops[2]), c, op);
  set(t, in.ops[0], r ? truth(in.type) : 0);
}

// setp without a .bool combination or a `|q` partner, of a lock-step group.
void group_setp(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t u, uint64_t v) -> uint64_t { return compare_bits(in, in.type, u, v); });
}

// The same with the type and the comparison fixed at compile time (the common types).
template <ptype P, comparison C>
void group_setp_as(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  const bool ftz = in.ftz;
  for_lanes(warp, mask, in, [ftz](uint64_t u, uint64_t v) -> uint64_t {
    if constexpr (P == ptype::f32) return compare_float(as_f32(ftz32(u, ftz)), as_f32(ftz32(v, ftz)), C);
    else if constexpr (P == ptype::f64) return compare_float(as_f64(u), as_f64(v), C);
    else return compare_int(u, v, P, C);
  });
}

template <ptype P, size_t... C>
constexpr std::array<group_exec_fn, sizeof...(C)> setp_handlers(std::index_sequence<C...>) {
  return {&group_setp_as<P, comparison(C)>...};
}

//! group_setp_as for `in`'s type and comparison, or the general group_setp.
group_exec_fn setp_handler(const instruction& in) {
  constexpr auto comparisons = std::make_index_sequence<std::size(comparison_names)>();
  static constexpr std::pair<ptype, std::array<group_exec_fn, std::size(comparison_names)>> typed[] = {
      {ptype::u32, setp_handlers<ptype::u32>(comparisons)}, {ptype::s32, setp_handlers<ptype::s32>(comparisons)},
      {ptype::u64, setp_handlers<ptype::u64>(comparisons)}, {ptype::s64, setp_handlers<ptype::s64>(comparisons)},
      {ptype::b32, setp_handlers<ptype::b32>(comparisons)}, {ptype::u16, setp_handlers<ptype::u16>(comparisons)},
      {ptype::s16, setp_handlers<ptype::s16>(comparisons)}, {ptype::f32, setp_handlers<ptype::f32>(comparisons)},
      {ptype::f64, setp_handlers<ptype::f64>(comparisons)}};
  for (const auto& [type, handlers] : typed)
    if (type == in.type) return handlers[size_t(payload<compare_payload>(in).c)];
  return group_setp;
}

void exec_selp(block_state& b, thread_state& t, const instruction& in) {
  const bool c = predicate(b, t, in.ops[3]);
  set(t, in.ops[0], truncate(value(b, t, c ? in.ops[1] : in.ops[2]), width(in)));
}

void group_selp(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  const int w = width(in);
  for_lanes(warp, mask, in, [w](uint64_t a, uint64_t x, uint64_t c) { return truncate(c != 0 ? a : x, w); });
}

// ---------------------------------------------------------------------------------------
// Decoders

void decode_compare(instruction& in, const kernel&) {
  compare_payload& p = set_payload<compare_payload>(in);
  bool found = false;
  for (uint8_t i = 0; i < std::size(comparison_names); ++i)
    if (has(in, comparison_names[i])) p.c = static_cast<comparison>(i), found = true;
  if (!found) unsupported(in, "no comparison");
  p.combine = has(in, "and") ? bool_op::and_ : has(in, "or") ? bool_op::or_ : has(in, "xor") ? bool_op::xor_ : bool_op::none;
  if ((p.combine != bool_op::none) != (in.op_count == 4)) unsupported(in, "a .bool operation combines a fourth operand");
  if (in.opcode == "set" && in.type2 == ptype::none) unsupported(in, "needs a destination and a source type");
  in.exec = in.opcode == "setp" ? exec_setp : exec_set;
  if (in.opcode == "setp" && p.combine == bool_op::none && !is_pair(in.type) && plain_operands(in, 2))
    in.group_exec = setp_handler(in);
}

void decode_selp(instruction& in, const kernel&) {
  in.exec = exec_selp;
  if (plain_operands(in, 3)) in.group_exec = group_selp;
}

void decode_slct(instruction& in, const kernel&) {
  if (in.type2 != ptype::s32 && in.type2 != ptype::f32) unsupported(in, "the selector is .s32 or .f32");
  in.exec = exec_slct;
}

void decode_logic(instruction& in, const kernel&) {
  set_payload<logic_payload>(in).op = in.opcode == "and" ? logic_op::and_ : in.opcode == "or" ? logic_op::or_ : logic_op::xor_;
  in.exec = in.type == ptype::pred ? exec_pred_logic : exec_logic;
  if (plain_operands(in, 2)) in.group_exec = in.type == ptype::pred ? group_pred_logic : group_logic;
}

void decode_not(instruction& in, const kernel&) {
  if (in.ops[1].negate) unsupported(in, "a negated source");
  set_payload<not_payload>(in).logical = in.opcode == "cnot";
  in.exec = exec_not;
  if (plain_operands(in, 1)) in.group_exec = group_not;
}

void decode_lop3(instruction& in, const kernel&) {
  if (in.pair >= 0) unsupported(in, "the predicate output of lop3");
  if (in.ops[4].k != operand::kind::imm) unsupported(in, "immLut must be an immediate");
  in.exec = exec_lop3;
}

void decode_shift(instruction& in, const kernel&) {
  shift_payload& p = set_payload<shift_payload>(in);
  if (in.opcode == "shf") {
    if (has(in, "l") == has(in, "r") || has(in, "clamp") == has(in, "wrap")) unsupported(in, "needs .l or .r and .clamp or .wrap");
    p.right = has(in, "r");
    p.clamp = has(in, "clamp");
    in.exec = exec_shf;
    return;
  }
  p.right = in.opcode == "shr";
  in.exec = exec_shift;
  if (plain_operands(in, 2)) in.group_exec = group_shift;
}

}  // namespace

std::vector<opcode_row> logic_rows() {
  using namespace qualifiers;
  const qualifier_list comparisons(std::begin(comparison_names), std::end(comparison_names));
  const auto compare = any_of({comparisons, {"and", "or", "xor", "ftz"}, integer_types, bit_types, float_types, half_types});
  const auto logic = any_of({{"pred", "b16", "b32", "b64"}});
  return {
      {"setp", compare, 3, 4, decode_compare},
      {"set", compare, 3, 4, decode_compare},
      {"selp", any_of({integer_types, bit_types, float_types}), 4, 4, decode_selp},
      {"slct", any_of({integer_types, bit_types, float_types, {"ftz"}}), 4, 4, decode_slct},
      {"and", logic, 3, 3, decode_logic},
      {"or", logic, 3, 3, decode_logic},
      {"xor", logic, 3, 3, decode_logic},
      {"not", logic, 2, 2, decode_not},
      {"cnot", any_of({{"b16", "b32", "b64"}}), 2, 2, decode_not},
      {"lop3", any_of({{"b32"}}), 5, 5, decode_lop3},
      {"shl", any_of({bit_types}), 3, 3, decode_shift},
      {"shr", any_of({bit_types, integer_types}), 3, 3, decode_shift},
      {"shf", any_of({{"b32", "l", "r", "clamp", "wrap"}}), 4, 4, decode_shift},
  };
}

}  // namespace emu
