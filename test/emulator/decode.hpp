// Decoding of one parsed instruction: modifiers to fields, the executing function chosen.
#pragma once

#include <string>

#include "ptx.hpp"

namespace emu {

bool parse_type(const std::string& name, ptype* out);  //!< "f32" -> ptype::f32

//! Whether the instruction has the dotted modifier `m` (e.g. "aligned").
bool has(const instruction& in, const char* m);

//! Rejects a form the engine does not implement: throws std::runtime_error naming it.
[[noreturn]] void unsupported(const instruction& in, const std::string& why = "");

//! decode_instruction for the sm_90 families (mbarrier, cp.async.mbarrier.arrive,
//! cp.async.bulk, wgmma, elect, setmaxnreg): false if `in` is none of them.
bool decode_hopper_instruction(instruction& in, const kernel& k);

//! decode_instruction for wmma (wmma.cpp): false if `in` is not a wmma instruction.
bool decode_wmma_instruction(instruction& in, const kernel& k);

//! decode_instruction for call and ret (calls.cpp): false if `in` is neither.
bool decode_call_instruction(instruction& in);

//! Fails decoding when the instruction has fewer than n operands.
void need_operands(const instruction& in, int n);

//! After a kernel is decoded: flags every instruction other than wgmma that names a register
//! some wgmma.mma_async accumulates into (they are checked while accumulators are in flight).
void mark_accumulator_uses(kernel& k);

//! Fills type, type2, state, round, ftz, sat and vec from the dotted modifiers.
void classify_modifiers(instruction& in);

//! Chooses `exec` / `warp_exec` and `sync`, and decodes opcode-specific details into
//! aux/aux2. Throws std::runtime_error for an opcode or form the engine does not implement.
void decode_instruction(instruction& in, const kernel& k);

//! Sets the profile's instruction class and memory kind of a decoded instruction (profile.cpp).
void classify_for_profile(instruction& in);

//! The bits of a decimal floating-point literal for an instruction of type `t`.
uint64_t bits_of_decimal_literal(double value, ptype t);

}  // namespace emu
