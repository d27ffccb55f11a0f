// Decoding of one parsed instruction: modifiers to fields, the executing function chosen.
#pragma once

#include <string>

#include "ptx.hpp"

namespace emu {

bool parse_type(const std::string& name, ptype* out);  //!< "f32" -> ptype::f32

//! Fills type, type2, state, round, ftz, sat and vec from the dotted modifiers.
void classify_modifiers(instruction& in);

//! Chooses `exec` / `warp_exec` and `sync`, and decodes opcode-specific details into
//! aux/aux2. Throws std::runtime_error for an opcode or form the engine does not implement.
void decode_instruction(instruction& in, const kernel& k);

//! The bits of a decimal floating-point literal for an instruction of type `t`.
uint64_t bits_of_decimal_literal(double value, ptype t);

}  // namespace emu
