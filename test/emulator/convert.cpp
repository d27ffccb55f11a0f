// Conversion and data movement (PTX ISA 9.7.9): cvt (integer, floating point, tf32, the packed
// halves and the fp8 pairs), mov, cvta, isspacep, prmt.
#include <algorithm>
#include <cmath>

#include "decode.hpp"
#include "semantics.hpp"

namespace emu {
namespace {

//! A cvt whose format is no PTX fundamental type: cvt.rna.tf32.f32, and the fp8 pairs.
enum class cvt_format : uint8_t { plain, tf32, e4m3x2, e5m2x2 };
struct cvt_payload {
  cvt_format format;
  bool satfinite;
};

struct cvta_payload {
  bool to_space;  //!< cvta.to: generic to the state space (else the space's address to generic)
};

struct prmt_payload {
  uint8_t mode;  //!< 0 default, 1 f4e, 2 b4e, 3 rc8, 4 ecl, 5 ecr, 6 rc16
};
constexpr const char* prmt_modes[] = {"f4e", "b4e", "rc8", "ecl", "ecr", "rc16"};

// ---------------------------------------------------------------------------------------
// Conversions

// cvt[.rnd][.ftz][.sat].dtype.atype d, a   (and cvt.rn[.relu].{f16x2,bf16x2}.f32 d, a, b)

uint64_t convert(const instruction& in, ptype dst, ptype src, uint64_t raw) {
  const cvt_payload& p = payload<cvt_payload>(in);
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
      (in.round == rounding::none || in.round == rounding::rn) && !in.sat && !in.ftz && !in.relu && !p.satfinite;
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
    return is_nan(raw & 0xFFFF, f16_format) ? 0x7FFFFFFFu : bits(static_cast<float>(half_value(raw, false)));
  }
  if (plain && dst == ptype::f16 && src == ptype::f32 && !is_nan(raw & 0xFFFFFFFFu, f32_format))
    return f16_nearest(uint32_t(raw));
  if (dst == ptype::f32 && src == ptype::f32 && !in.relu && !p.satfinite && p.format != cvt_format::tf32) {
    // An f32 to f32: exact but for rounding to an integral value, .ftz and .sat.
    float f = as_f32(ftz32(raw, in.ftz));
    switch (in.round) {
      case rounding::rni: f = std::nearbyint(f); break;  // ties to even in the host's default mode
      case rounding::rzi: f = std::trunc(f); break;
      case rounding::rmi: f = std::floor(f); break;
      case rounding::rpi: f = std::ceil(f); break;
      default: break;
    }
    uint64_t out = f32_result(f, in.ftz);
    if (in.sat) out = (out & 0x80000000u) || out > 0x7F800000u ? 0 : std::min<uint64_t>(out, 0x3F800000u);  // NaN, ≤ -0: +0
    return out;
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
    m.satfinite = p.satfinite;  // ±inf and overflow to the largest finite value
    // tf32: 10 fraction bits in an f32 encoding, the low 13 bits zero.
    if (p.format == cvt_format::tf32) return encode_float(v, float_format{10, 8}, m.round, m.satfinite) << 13;
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

void exec_cvt_fp8(block_state& b, thread_state& t, const instruction& in) {
  const float_format f8 = payload<cvt_payload>(in).format == cvt_format::e5m2x2 ? e5m2_format : e4m3_format;
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

// cvt of one source: the conversion, a signed result narrower than its register sign-extended
// to the register's width.
uint64_t cvt_value(const instruction& in, uint64_t a) {
  const uint64_t v = convert(in, in.type, in.type2, a);
  return type_signed(in.type) ? static_cast<uint64_t>(sign_extend(v, type_bytes(in.type))) : v;
}

void exec_cvt(block_state& b, thread_state& t, const instruction& in) {
  if (is_pair(in.type)) {  // a -> upper half, b -> lower half
    const ptype s = scalar_of(in.type);
    const uint64_t hi = convert(in, s, in.type2, value(b, t, in.ops[1]));
    const uint64_t lo = convert(in, s, in.type2, value(b, t, in.ops[2]));
    set(t, in.ops[0], hi << 16 | lo);
    return;
  }
  set(t, in.ops[0], cvt_value(in, value(b, t, in.ops[1])));
}

void group_cvt(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t a) { return cvt_value(in, a); });
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

// mov d, a of a register or an immediate, for a lock-step group.
void group_mov(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  const int w = width(in);
  for_lanes(warp, mask, in, [w](uint64_t a) { return truncate(a, w); });
}

// mov d, %special for a lock-step group: each lane's special register.
void group_mov_special(block_state& b, thread_state* warp, uint32_t mask, const instruction& in) {
  uint64_t* const d = &reg(warp[0], in.ops[0].reg);
  const int w = width(in);
  const special s = in.ops[1].sreg;
  for (uint32_t m = mask; m; m &= m - 1) d[__builtin_ctz(m)] = truncate(special_value(b, warp[__builtin_ctz(m)], s), w);
}

// mov.b{32,64} {d0, ..., dn-1}, a and mov.b{32,64} d, {a0, ..., an-1} of registers and immediates,
// for a lock-step group: the elements are a's bit fields, element 0 the lowest.
void group_mov_vector(block_state& b, thread_state* warp, uint32_t mask, const instruction& in) {
  const operand &d = in.ops[0], &a = in.ops[1];
  const bool unpack = d.k == operand::kind::vector;
  const operand& vector = unpack ? d : a;
  const int ew = 8 * width(in) / static_cast<int>(vector.count);
  const operand* elements = &b.k.vector_elements[vector.first];
  if (unpack) {
    const lane_operand source(warp, a);
    for (uint32_t i = 0; i < vector.count; ++i) {
      if (elements[i].k != operand::kind::reg) continue;  // a sink
      uint64_t* const out = &reg(warp[0], elements[i].reg);
      for (uint32_t m = mask; m; m &= m - 1) out[__builtin_ctz(m)] = truncate(source[__builtin_ctz(m)] >> (ew * i), ew / 8);
    }
    return;
  }
  uint64_t* const out = &reg(warp[0], d.reg);
  for (uint32_t m = mask; m; m &= m - 1) out[__builtin_ctz(m)] = 0;
  for (uint32_t i = 0; i < vector.count; ++i) {
    const lane_operand element(warp, elements[i]);
    for (uint32_t m = mask; m; m &= m - 1) {
      const uint32_t l = __builtin_ctz(m);
      out[l] |= truncate(element[l], ew / 8) << (ew * i);
    }
  }
}

// cvta[.to].space.size d, a: the generic address of a `space` address a, or (.to) back. `frame`:
// the thread's current frame, to which .local addresses are relative.
uint64_t cvta_value(const instruction& in, uint64_t a, uint32_t frame) {
  const address_windows& w = windows();
  uint64_t base = 0;
  if (in.state == space::shared) base = w.shared_base;
  if (in.state == space::local) base = w.local_base + frame;
  if (in.state == space::param) base = w.param_base;
  return truncate(payload<cvta_payload>(in).to_space ? a - base : a + base, width(in));
}

void exec_cvta(block_state& b, thread_state& t, const instruction& in) {
  set(t, in.ops[0], cvta_value(in, value(b, t, in.ops[1]), t.frame));
}

// cvta of a lock-step group, of a space other than .local (whose window is the thread's).
void group_cvta(block_state&, thread_state* warp, uint32_t mask, const instruction& in) {
  for_lanes(warp, mask, in, [&in](uint64_t a) { return cvta_value(in, a, 0); });
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

// prmt.b32{.mode} d, a, b, c: bytes of {b, a} selected by c.
void exec_prmt(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t bytes = (value(b, t, in.ops[2]) & 0xFFFFFFFFu) << 32 | (value(b, t, in.ops[1]) & 0xFFFFFFFFu);
  const uint32_t c = static_cast<uint32_t>(value(b, t, in.ops[3]));
  const auto byte = [&](uint32_t i) { return static_cast<uint32_t>(bytes >> (8 * (i & 7)) & 0xFF); };
  uint32_t sel[4];
  const uint32_t mode = payload<prmt_payload>(in).mode;  // 0 default, 1 f4e, 2 b4e, 3 rc8, 4 ecl, 5 ecr, 6 rc16
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

// ---------------------------------------------------------------------------------------
// Decoders

//! The fp8 forms of cvt (exec_cvt_fp8), the ISA's three alone: the one type of the modifiers is
//! the source when the fp8 pair precedes it. in.type / in.type2 become d's and a's types.
void decode_cvt_fp8(instruction& in, cvt_payload& p) {
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
    if (!p.satfinite) unsupported(in, ".satfinite is mandatory for conversions to ." + fp8);
    if (in.type != ptype::f32 && in.type != ptype::f16x2) unsupported(in, "to ." + fp8 + " only from .f32 or .f16x2");
    need_operands(in, in.type == ptype::f32 ? 3 : 2);
    in.type2 = in.type;
    in.type = ptype::b16;
  } else {
    if (p.satfinite) unsupported(in, "no .satfinite on conversions from ." + fp8);
    if (in.type != ptype::f16x2) unsupported(in, "from ." + fp8 + " only to .f16x2");
    need_operands(in, 2);
    in.type2 = ptype::b16;
  }
  p.format = e5m2 ? cvt_format::e5m2x2 : cvt_format::e4m3x2;
  in.exec = exec_cvt_fp8;
}

void decode_cvt(instruction& in, const kernel&) {
  cvt_payload& p = set_payload<cvt_payload>(in);
  p.satfinite = has(in, "satfinite");
  if (has(in, "e4m3x2") || has(in, "e5m2x2")) {
    decode_cvt_fp8(in, p);
    return;
  }
  if (has(in, "tf32")) {  // cvt.rna[.satfinite].tf32.f32: "tf32" is no ptype; the result is an f32 encoding
    if (in.type != ptype::f32 || in.type2 != ptype::none || in.round != rounding::rna)
      unsupported(in, "tf32 only from f32 with .rna");
    in.type2 = ptype::f32;
    p.format = cvt_format::tf32;
  } else if (in.type2 == ptype::none) {
    unsupported(in, "needs two types");
  } else if (in.round == rounding::rna) {
    unsupported(in, ".rna is for tf32 only");
  }
  if (in.op_count != (is_pair(in.type) ? 3 : 2)) unsupported(in, "a packed pair from two sources, else one");
  in.exec = exec_cvt;
  if (!is_pair(in.type) && plain_operands(in, 1)) in.group_exec = group_cvt;
}

//! Whether every element of a vector operand is a register, an immediate or (a destination's) sink.
bool plain_vector(const kernel& k, const operand& v, bool destination) {
  for (uint32_t i = 0; i < v.count; ++i) {
    const operand& e = k.vector_elements[v.first + i];
    const bool ok = e.k == operand::kind::reg || (destination ? e.k == operand::kind::sink : e.k == operand::kind::imm);
    if (!ok || e.negate) return false;
  }
  return true;
}

void decode_mov(instruction& in, const kernel& k) {
  in.exec = exec_mov;
  if (in.type == ptype::pred || in.op_count != 2 || in.pair >= 0) return;
  const operand &d = in.ops[0], &a = in.ops[1];
  if (d.k == operand::kind::vector) {
    if ((a.k == operand::kind::reg || a.k == operand::kind::imm) && plain_vector(k, d, true)) in.group_exec = group_mov_vector;
  } else if (a.k == operand::kind::vector) {
    if (d.k == operand::kind::reg && plain_vector(k, a, false)) in.group_exec = group_mov_vector;
  } else if (plain_operands(in, 1)) {
    in.group_exec = group_mov;
  } else if (d.k == operand::kind::reg && a.k == operand::kind::special) {
    in.group_exec = group_mov_special;
  }
}

void decode_cvta(instruction& in, const kernel&) {
  set_payload<cvta_payload>(in).to_space = has(in, "to");
  if (in.state == space::param && has(in, "to")) unsupported(in, "cvta.to.param");
  if (in.state == space::generic) unsupported(in, "needs a state space");
  in.exec = exec_cvta;
  if (in.state != space::local && plain_operands(in, 1)) in.group_exec = group_cvta;
}

void decode_isspacep(instruction& in, const kernel&) { in.exec = exec_isspacep; }

void decode_prmt(instruction& in, const kernel&) {
  prmt_payload& p = set_payload<prmt_payload>(in);
  for (uint8_t i = 0; i < 6; ++i)
    if (has(in, prmt_modes[i])) p.mode = i + 1;
  in.exec = exec_prmt;
}

}  // namespace

std::vector<opcode_row> convert_rows() {
  using namespace qualifiers;
  const qualifier_list spaces = {"global", "shared", "shared::cta", "shared::cluster", "local", "param", "param::entry", "const"};
  return {
      {"cvt",
       any_of({integer_types, {"u8", "s8"}, float_types, half_types, float_rounding,
               {"rna", "rni", "rzi", "rmi", "rpi", "ftz", "sat", "relu", "satfinite", "tf32", "e4m3x2", "e5m2x2"}}),
       2, 3, decode_cvt, profile::instruction_class::conversion},
      {"mov", any_of({integer_types, bit_types, float_types, {"pred"}}), 2, 2, decode_mov,
       profile::instruction_class::movement},
      {"cvta", any_of({spaces, {"to", "u32", "u64"}}), 2, 2, decode_cvta, profile::instruction_class::movement},
      {"isspacep", any_of({spaces}), 2, 2, decode_isspacep},
      {"prmt", any_of({{"b32"}, {std::begin(prmt_modes), std::end(prmt_modes)}}), 4, 4, decode_prmt},
  };
}

}  // namespace emu
