// Decoding: one row per instruction form the engine implements (PTX ISA 9.0), from which the
// validation of a parsed instruction, its executing function and its profile class all derive.
//
// A row names its form (the opcode and the qualifiers that select it: "cp.async.bulk.tensor"),
// every other qualifier it implements (types, state spaces, rounding, ordering, shapes...), its
// operand count, its decoder, and the profile's class and memory kind. An instruction takes the
// row of its opcode whose form qualifiers it has, the most of them; a qualifier outside that
// row, or an instruction no row matches, is refused when its kernel is decoded, naming it. The
// decoder then fills the instruction: handler, synchronisation, and a payload of its family's
// own type; it refuses, naming them, the combinations of allowed qualifiers it does not implement.
//
// The rows live beside their handlers, one file per chapter of the ISA: integer.cpp (integer
// arithmetic), floating.cpp (floating point and half precision), logic.cpp (comparison,
// selection, logic and shift), convert.cpp (conversion and data movement), memory.cpp (loads,
// stores, atomics, asynchronous copies), warp.cpp (barriers, fences and warp collectives),
// control.cpp (branches, calls, exit), tensor.cpp (ldmatrix, mma), wmma.cpp and hopper.cpp
// (mbarrier, TMA, wgmma, clusters). Adding an instruction is a row, a handler and a test.
#pragma once

#include <cstdint>
#include <new>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "machine.hpp"
#include "ptx.hpp"

namespace emu {

bool parse_type(const std::string& name, ptype* out);  //!< "f32" -> ptype::f32

//! Whether the instruction has the dotted modifier `m` (e.g. "aligned").
bool has(const instruction& in, const char* m);

//! Rejects a form the engine does not implement: throws std::runtime_error naming it.
[[noreturn]] void unsupported(const instruction& in, const std::string& why = "");

//! Fails decoding when the instruction has fewer than n operands.
void need_operands(const instruction& in, int n);

//! Stores the family's payload P (trivially copyable, at most 16 bytes) in `in`, zeroed.
template <class P>
P& set_payload(instruction& in) {
  static_assert(std::is_trivially_copyable_v<P> && sizeof(P) <= sizeof(in.payload_bytes) &&
                alignof(P) <= alignof(std::max_align_t));
  return *new (in.payload_bytes) P{};
}

//! The payload its decoder stored with set_payload<P>.
template <class P>
const P& payload(const instruction& in) {
  return *std::launder(reinterpret_cast<const P*>(in.payload_bytes));
}

//! Qualifier sets that rows share.
using qualifier_list = std::vector<std::string>;
namespace qualifiers {
extern const qualifier_list integer_types;   //!< u16 u32 u64 s16 s32 s64
extern const qualifier_list byte_types;      //!< u8 s8 b8
extern const qualifier_list bit_types;       //!< b16 b32 b64
extern const qualifier_list float_types;     //!< f32 f64
extern const qualifier_list half_types;      //!< f16 f16x2 bf16 bf16x2
extern const qualifier_list float_rounding;  //!< rn rz rm rp
extern const qualifier_list memory_order;    //!< the semantics and scopes of memory operations
extern const qualifier_list cache_hints;     //!< L1/L2 eviction priorities, prefetch sizes, cache_hint
extern const qualifier_list state_spaces;    //!< global shared shared::cta shared::cluster local param const
}  // namespace qualifiers

//! The union of qualifier lists.
std::unordered_set<std::string> any_of(std::initializer_list<qualifier_list> lists);

//! Decodes an instruction its row matched: chooses exec / warp_exec and sync, stores the
//! payload, and refuses (unsupported) what the row allows but the handler does not implement.
using decoder = void (*)(instruction&, const kernel&);

struct opcode_row {
  std::string form;                            //!< opcode and the qualifiers that select the row
  std::unordered_set<std::string> qualifiers;  //!< every other qualifier it implements
  uint8_t min_operands = 0, max_operands = 8;
  decoder decode = nullptr;
  //! The profile's class; an integer row counts as floating point for a floating-point type.
  profile::instruction_class klass = profile::instruction_class::integer;
  memory_kind memory = memory_kind::none;
  bool first_is_source = false;  //!< a register ops[0] is read, never written (a barrier id)
};

//! The rows of each chapter (in the files named above).
std::vector<opcode_row> integer_rows();
std::vector<opcode_row> floating_rows();
std::vector<opcode_row> logic_rows();
std::vector<opcode_row> convert_rows();
std::vector<opcode_row> memory_rows();
std::vector<opcode_row> warp_rows();
std::vector<opcode_row> control_rows();
std::vector<opcode_row> tensor_rows();
std::vector<opcode_row> wmma_rows();
std::vector<opcode_row> hopper_rows();

//! Every row's form, in table order ("add", ..., "cp.async.bulk.tensor", ...): the instructions
//! the emulator implements, which its README lists.
std::vector<std::string> implemented_forms();

//! After a kernel is decoded: flags every instruction other than wgmma that names a register
//! some wgmma.mma_async accumulates into (they are checked while accumulators are in flight).
void mark_accumulator_uses(kernel& k);

//! The register slots some path from the entry or from a function's entry reads before writing
//! (control.cpp): the only registers whose starting value a kernel can see.
std::vector<int32_t> registers_read_before_written(const kernel& k);

//! Fills type, type2, state, round, ftz, sat and vec from the dotted modifiers.
void classify_modifiers(instruction& in);

//! Finds the instruction's row, checks its qualifiers and operand count against it, runs its
//! decoder and sets the profile's class and memory kind. Throws std::runtime_error for an
//! opcode, form, qualifier or operand count the engine does not implement, naming it.
void decode_instruction(instruction& in, const kernel& k);

//! The bits of a decimal floating-point literal for an instruction of type `t`.
uint64_t bits_of_decimal_literal(double value, ptype t);

}  // namespace emu
