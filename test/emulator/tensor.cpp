// Warp-level matrix instructions of the tensor cores (PTX ISA 9.7.14): ldmatrix and mma.sync
// (wmma.cpp has wmma, hopper.cpp wgmma).
//
// mma accumulates each dot product in double and rounds once to f32; a GPU's tensor cores add in
// an unspecified order and precision.
#include <algorithm>
#include <cstring>

#include "decode.hpp"
#include "semantics.hpp"

namespace emu {
namespace {

struct ldmatrix_payload {
  uint8_t count;   //!< .x1, .x2, .x4: matrices
  bool transpose;  //!< .trans
};

// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 d, [a]: lane 8i + r supplies the
// address of row r of matrix i (16 bytes); lane l receives, for each matrix i, elements
// (row l/4, columns 2(l%4), 2(l%4)+1), or with .trans (rows 2(l%4), 2(l%4)+1, column l/4).
void warp_ldmatrix(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  const int count = payload<ldmatrix_payload>(in).count;
  const bool trans = payload<ldmatrix_payload>(in).transpose;
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
  thread_state* const warp = lanes[0];  // the fragments are registers (decode_mma): read from the warp's slab
  const auto fragment = [&](const operand& v, int i) { return lane_operand(warp, ve[v.first + i]); };
  double A[16][16], B[16][8], D[16][8];
  for (int i = 0; i < 4; ++i) {
    const lane_operand ai = fragment(a, i);
    for (int l = 0; l < 32; ++l) {
      const int row = l / 4 + 8 * (i & 1), col = 2 * (l % 4) + 8 * (i >> 1);
      A[row][col] = half_value(ai[l], bf16);
      A[row][col + 1] = half_value(ai[l] >> 16, bf16);
    }
  }
  for (int i = 0; i < 2; ++i) {
    const lane_operand bi = fragment(bb, i);
    for (int l = 0; l < 32; ++l) {
      B[2 * (l % 4) + 8 * i][l / 4] = half_value(bi[l], bf16);
      B[2 * (l % 4) + 8 * i + 1][l / 4] = half_value(bi[l] >> 16, bf16);
    }
  }
  for (int i = 0; i < 4; ++i) {  // f32: c_i is element i; f16: c_{i/2} packs elements i (low), i+1
    const lane_operand ci = fragment(c, f16_acc ? i / 2 : i);
    for (int l = 0; l < 32; ++l) {
      const uint64_t v = f16_acc ? ci[l] >> (16 * (i & 1)) : ci[l];
      D[l / 4 + 8 * (i >> 1)][2 * (l % 4) + (i & 1)] = f16_acc ? half_value(v, false) : as_f32(v);
    }
  }
  // Each element summed in k order; the eight of a row as independent chains.
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k)
      for (int col = 0; col < 8; ++col) D[r][col] += A[r][k] * B[k][col];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, q = l % 4;
    uint64_t packed_d[2] = {0, 0};
    for (int i = 0; i < 4; ++i) {
      const double sum = D[g + 8 * (i >> 1)][2 * q + (i & 1)];
      if (f16_acc) packed_d[i / 2] |= encode_float(sum, f16_format, rounding::rn) << (16 * (i & 1));
      else set(*lanes[l], ve[d.first + i], bits(static_cast<float>(sum)));
    }
    if (f16_acc) {
      set(*lanes[l], ve[d.first], packed_d[0]);
      set(*lanes[l], ve[d.first + 1], packed_d[1]);
    }
  }
}

void decode_ldmatrix(instruction& in, const kernel&) {
  if (!has(in, "m8n8") || in.type != ptype::b16) unsupported(in, "only .m8n8 of .b16");
  ldmatrix_payload& p = set_payload<ldmatrix_payload>(in);
  p.count = has(in, "x4") ? 4 : has(in, "x2") ? 2 : 1;
  p.transpose = has(in, "trans");
  if (in.ops[0].k != operand::kind::vector || in.ops[0].count != p.count) unsupported(in, "destination count");
  in.sync = sync_kind::warp;
  in.warp_exec = warp_ldmatrix;
}

void decode_mma(instruction& in, const kernel& k) {
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
  for (int i = 1; i < 4; ++i)
    for (uint32_t e = 0; e < in.ops[i].count; ++e)
      if (k.vector_elements[in.ops[i].first + e].k != operand::kind::reg) unsupported(in, "fragments other than registers");
  in.sync = sync_kind::warp;
  in.warp_exec = warp_mma;
}

}  // namespace

std::vector<opcode_row> tensor_rows() {
  using profile::instruction_class;
  return {
      {"ldmatrix.sync", any_of({{"aligned", "m8n8", "x1", "x2", "x4", "trans", "shared", "shared::cta", "b16"}}), 2, 2,
       decode_ldmatrix, instruction_class::memory, memory_kind::load},
      {"mma.sync", any_of({{"aligned", "m16n8k16", "row", "col", "f32", "f16", "bf16"}}), 4, 4, decode_mma,
       instruction_class::tensor},
  };
}

}  // namespace emu
