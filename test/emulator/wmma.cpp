// nvcuda::wmma (PTX ISA 9.7.14.4 "Matrix multiply-accumulate operation using wmma instructions"):
// wmma.load.{a,b,c}, wmma.mma and wmma.store.d of shape .m16n16k16 with .f16 or .bf16
// multiplicands and .f16 or .f32 accumulators, row- or column-major, with or without the stride
// operand, in global, shared or generic memory. Other shapes and types are refused at load.
//
// Fragments ("Matrix Fragments for WMMA"): the ISA fixes the registers of each fragment (.f16 A or
// B: eight .f16x2; .bf16 A or B: four .b32 of two elements; .f16 C or D: four .f16x2; .f32 C or D:
// eight .f32) and leaves "the distribution of fragments loaded by the threads in a warp ...
// unspecified and ... target architecture dependent". The emulator's distribution is that of two
// mma.m16n8k16 side by side: lane l (g = l / 4, q = l % 4) holds elements e = 0..7 of each matrix,
// two 16-bit ones to a register (e / 2, the lower e in the low half) or one .f32 to a register (e):
//   A (16 x 16, M x K):  row g + 8 ((e / 2) % 2),      column 2q + 8 (e / 4) + e % 2
//   B (16 x 16, K x N):  row 2q + 8 ((e / 2) % 2) + e % 2, column g + 8 (e / 4)
//   C, D (16 x 16, M x N): row g + 8 ((e % 4) / 2),    column 2q + e % 2 + 8 (e / 4)
// An .f16 A or B fragment has sixteen halves for its eight elements: registers 4-7 repeat 0-3 (every
// element twice, as the register count requires), and wmma.mma reads 0-3.
//
// Memory ("Matrix Storage for WMMA"): element (r, c) at p + (r · stride + c) · size (row-major) or
// p + (c · stride + r) · size (column-major); stride, in elements, defaults to the leading
// dimension, 16; the start of each row (column) must be aligned to the fragment's size in bytes. All
// lanes must give the same p and stride. wmma.mma accumulates each element of D in double and
// rounds it once to .f32 or .f16, as mma does.
#include <cstring>
#include <string>
#include <vector>

#include "decode.hpp"
#include "machine.hpp"
#include "numeric.hpp"

namespace emu {
namespace {

//! The payload of the wmma forms.
struct wmma_payload {
  bool b;              //!< load: matrix B
  bool accumulator;    //!< load.c or store.d
  bool column_major;   //!< load, store: column-major in memory
  bool bf16;           //!< .bf16 multiplicands (load.a/.b, mma)
  bool c_f32;          //!< .f32 accumulator (load.c, store.d: the fragment; mma: C)
  bool d_f32;          //!< mma: .f32 D
  bool stride;         //!< load, store: the stride operand is present
};

struct cell {
  int row, col;
};

//! Where element e of lane `lane`'s fragment of A (matrix 0), B (1) or C/D (2) lies (see above).
cell fragment_cell(int matrix, int lane, int e) {
  const int g = lane / 4, q = lane % 4;
  if (matrix == 0) return {g + 8 * (e / 2 % 2), 2 * q + 8 * (e / 4) + e % 2};
  if (matrix == 1) return {2 * q + 8 * (e / 2 % 2) + e % 2, g + 8 * (e / 4)};
  return {g + 8 * (e % 4 / 2), 2 * q + e % 2 + 8 * (e / 4)};
}

//! Element e of a fragment in its registers (`wide`: one .f32 to a register, else two 16-bit).
uint32_t fragment_element(const block_state& b, const thread_state& t, const operand& v, int e, bool wide) {
  const uint64_t r = value(b, t, b.k.vector_elements[v.first + (wide ? e : e / 2)]);
  return wide ? static_cast<uint32_t>(r) : static_cast<uint32_t>(r >> (16 * (e % 2)) & 0xFFFF);
}

//! The memory operand of a wmma.load / wmma.store: p and stride, the same in every lane, and each
//! row's (column's) start aligned to the fragment's bytes.
struct matrix_memory {
  uint64_t p, stride;
};
matrix_memory memory_operand(block_state& b, thread_state* const* lanes, const instruction& in, int address_op,
                             uint32_t element_bytes, uint32_t fragment_bytes) {
  const auto stride_of = [&](const thread_state& t) {
    return payload<wmma_payload>(in).stride ? value(b, t, in.ops[2]) & 0xFFFFFFFFu : uint64_t(16);
  };
  const matrix_memory m{address_of(*lanes[0], in.ops[address_op]), stride_of(*lanes[0])};
  for (int l = 1; l < 32; ++l)
    if (address_of(*lanes[l], in.ops[address_op]) != m.p || stride_of(*lanes[l]) != m.stride)
      fail_launch(b, lanes[l], &in, cudaErrorLaunchFailure, "collective mismatch",
                  "lanes of a warp pass different wmma addresses or strides");
  if (m.p % fragment_bytes != 0 || m.stride * element_bytes % fragment_bytes != 0)
    fail_launch(b, lanes[0], &in, cudaErrorMisalignedAddress, "misaligned address",
                in.opcode + " at " + hex(m.p) + " with stride " + std::to_string(m.stride) +
                    ": each row or column must start at a multiple of the fragment's " +
                    std::to_string(fragment_bytes) + " bytes");
  return m;
}

//! The address of element (r, c) of the matrix in memory.
uint64_t element_address(const instruction& in, const matrix_memory& m, cell at, uint32_t element_bytes) {
  const uint64_t offset = payload<wmma_payload>(in).column_major ? uint64_t(at.col) * m.stride + at.row : uint64_t(at.row) * m.stride + at.col;
  return m.p + offset * element_bytes;
}

// wmma.load.{a,b,c}.sync.aligned.layout.m16n16k16[.ss].type r, [p][, stride]
void warp_wmma_load(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  require_full_warp(b, lanes, mask, in);
  const wmma_payload& p = payload<wmma_payload>(in);
  const bool wide = p.accumulator && p.c_f32;
  const int matrix = p.accumulator ? 2 : p.b ? 1 : 0;
  const uint32_t element_bytes = wide ? 4 : 2, registers = in.ops[0].count;
  const bool repeated = matrix < 2 && registers == 8;  // .f16 A or B: registers 4-7 repeat 0-3
  const matrix_memory m = memory_operand(b, lanes, in, 1, element_bytes, 4 * registers);
  for (int l = 0; l < 32; ++l) {
    thread_state& t = *lanes[l];
    uint64_t r[8] = {};
    for (int e = 0; e < 8; ++e) {
      const uint8_t* p = access(b, t, in, in.state, element_address(in, m, fragment_cell(matrix, l, e), element_bytes),
                                element_bytes, element_bytes, false);
      if (b.race && p >= b.shared.data() && p < b.shared.data() + b.shared.size())
        race_access(b, t, in, static_cast<uint32_t>(p - b.shared.data()), element_bytes, false, "this thread's wmma.load");
      uint32_t v = 0;
      std::memcpy(&v, p, element_bytes);
      r[wide ? e : e / 2] |= uint64_t(v) << (wide ? 0 : 16 * (e % 2));
    }
    for (uint32_t i = 0; i < registers; ++i) set(t, b.k.vector_elements[in.ops[0].first + i], r[repeated ? i % 4 : i]);
  }
}

// wmma.store.d.sync.aligned.layout.m16n16k16[.ss].type [p], r[, stride]
void warp_wmma_store(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  require_full_warp(b, lanes, mask, in);
  const bool wide = payload<wmma_payload>(in).c_f32;
  const uint32_t element_bytes = wide ? 4 : 2;
  const matrix_memory m = memory_operand(b, lanes, in, 0, element_bytes, 4 * in.ops[1].count);
  for (int l = 0; l < 32; ++l) {
    thread_state& t = *lanes[l];
    for (int e = 0; e < 8; ++e) {
      uint8_t* p = access(b, t, in, in.state, element_address(in, m, fragment_cell(2, l, e), element_bytes), element_bytes,
                          element_bytes, true);
      if (b.race && p >= b.shared.data() && p < b.shared.data() + b.shared.size())
        race_access(b, t, in, static_cast<uint32_t>(p - b.shared.data()), element_bytes, true, "this thread's wmma.store");
      const uint32_t v = fragment_element(b, t, in.ops[1], e, wide);
      std::memcpy(p, &v, element_bytes);
    }
  }
}

// wmma.mma.sync.aligned.alayout.blayout.m16n16k16.{dtype.ctype | f32.bf16.bf16.f32} d, a, b, c:
// D = A·B + C (the layouts are those of the loads, which the fragments already reflect).
void warp_wmma_mma(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  require_full_warp(b, lanes, mask, in);
  if (b.profile) b.profile->record.tensor_macs += 16 * 16 * 16;
  const wmma_payload& p = payload<wmma_payload>(in);
  const bool bf16 = p.bf16, c_f32 = p.c_f32, d_f32 = p.d_f32;
  double A[16][16], B[16][16], C[16][16];
  for (int l = 0; l < 32; ++l)
    for (int e = 0; e < 8; ++e) {
      const cell a = fragment_cell(0, l, e), bb = fragment_cell(1, l, e), c = fragment_cell(2, l, e);
      A[a.row][a.col] = half_value(fragment_element(b, *lanes[l], in.ops[1], e, false), bf16);
      B[bb.row][bb.col] = half_value(fragment_element(b, *lanes[l], in.ops[2], e, false), bf16);
      const uint32_t v = fragment_element(b, *lanes[l], in.ops[3], e, c_f32);
      C[c.row][c.col] = c_f32 ? double(as_f32(v)) : half_value(v, false);
    }
  for (int l = 0; l < 32; ++l) {
    uint64_t d[8] = {};
    for (int e = 0; e < 8; ++e) {
      const cell at = fragment_cell(2, l, e);
      double sum = C[at.row][at.col];
      for (int k = 0; k < 16; ++k) sum += A[at.row][k] * B[k][at.col];
      if (d_f32) d[e] = bits(static_cast<float>(sum));
      else d[e / 2] |= encode_float(sum, f16_format, rounding::rn) << (16 * (e % 2));
    }
    for (uint32_t i = 0; i < in.ops[0].count; ++i) set(*lanes[l], b.k.vector_elements[in.ops[0].first + i], d[i]);
  }
}


void decode_wmma(instruction& in, const kernel& k) {
  const std::string form = in.modifiers[0];
  std::vector<std::string> layouts, types;
  std::string matrix;
  for (size_t i = 1; i < in.modifiers.size(); ++i) {
    const std::string& m = in.modifiers[i];
    if (m == "row" || m == "col") layouts.push_back(m);
    else if (i == 1 && (m == "a" || m == "b" || m == "c" || m == "d")) matrix = m;
    else if (m == "f16" || m == "bf16" || m == "f32") types.push_back(m);
  }
  if (!has(in, "m16n16k16")) unsupported(in, "wmma needs a shape, and only .m16n16k16 is implemented");
  const auto vector_of = [&](int op, uint32_t count, bool destination) {
    const operand& o = in.ops[op];
    bool ok = o.k == operand::kind::vector && o.count == count;
    for (uint32_t i = 0; ok && i < o.count; ++i)
      ok = k.vector_elements[o.first + i].k == operand::kind::reg || !destination;
    if (!ok) unsupported(in, "operand " + std::to_string(op) + ": a vector of " + std::to_string(count) + " registers");
  };
  const auto fragment_registers = [](bool accumulator, const std::string& type) -> uint32_t {
    if (accumulator) return type == "f32" ? 8 : 4;
    return type == "f16" ? 8 : 4;
  };
  wmma_payload& p = set_payload<wmma_payload>(in);
  if ((form == "load" && (matrix == "a" || matrix == "b" || matrix == "c")) || (form == "store" && matrix == "d")) {
    const bool accumulator = matrix == "c" || matrix == "d";
    if (layouts.size() != 1 || types.size() != 1 || (accumulator ? types[0] == "bf16" : types[0] == "f32"))
      unsupported(in, "one layout and one type: .f16 or .bf16 for A and B, .f16 or .f32 for C and D");
    p.b = matrix == "b";
    p.accumulator = accumulator;
    p.column_major = layouts[0] == "col";
    p.bf16 = types[0] == "bf16";
    p.c_f32 = types[0] == "f32";
    p.stride = in.op_count == 3;
    const bool load = form == "load";
    if (in.ops[load ? 1 : 0].k != operand::kind::address) unsupported(in, "the matrix's address");
    vector_of(load ? 0 : 1, fragment_registers(accumulator, types[0]), load);
    in.warp_exec = load ? warp_wmma_load : warp_wmma_store;
  } else if (form == "mma" && matrix.empty()) {
    const bool f16_inputs = types.size() == 2, bf16_inputs = types.size() == 4 && types[0] == "f32" &&
                                                               types[1] == "bf16" && types[2] == "bf16" && types[3] == "f32";
    if (layouts.size() != 2 || !(f16_inputs || bf16_inputs))
      unsupported(in, "wmma.mma: two layouts and .dtype.ctype (.f16 multiplicands) or .f32.bf16.bf16.f32");
    const std::string dtype = types.front(), ctype = types.back();
    p.bf16 = bf16_inputs;
    p.c_f32 = ctype == "f32";
    p.d_f32 = dtype == "f32";
    vector_of(0, fragment_registers(true, dtype), true);
    vector_of(1, fragment_registers(false, bf16_inputs ? "bf16" : "f16"), false);
    vector_of(2, fragment_registers(false, bf16_inputs ? "bf16" : "f16"), false);
    vector_of(3, fragment_registers(true, ctype), false);
    in.warp_exec = warp_wmma_mma;
  } else {
    unsupported(in, "wmma.load.{a,b,c}, wmma.mma and wmma.store.d are implemented");
  }
  in.sync = sync_kind::warp;
  in.aligned = true;
}

}  // namespace

//! Shapes other than .m16n16k16 and types other than .f16 and .bf16 multiplicands (.f16 or .f32
//! accumulators) are refused by the rows, naming them.
std::vector<opcode_row> wmma_rows() {
  using profile::instruction_class;
  const qualifier_list common = {"sync", "aligned", "m16n16k16", "row", "col", "f16", "bf16", "f32"};
  const qualifier_list memory = {"global", "shared", "shared::cta"};
  return {
      {"wmma.load", any_of({common, memory, {"a", "b", "c"}}), 2, 3, decode_wmma, instruction_class::memory,
       memory_kind::load},
      {"wmma.store", any_of({common, memory, {"d"}}), 2, 3, decode_wmma, instruction_class::memory, memory_kind::store},
      {"wmma.mma", any_of({common}), 4, 4, decode_wmma, instruction_class::tensor},
  };
}

}  // namespace emu
