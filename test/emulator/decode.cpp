// The decoder's table: every chapter's rows, indexed by opcode; an instruction's row, its
// qualifiers and operand count checked against it, its decoder run, its profile class set.
#include <algorithm>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include "decode.hpp"
#include "numeric.hpp"

namespace emu {

namespace qualifiers {
const qualifier_list integer_types = {"u16", "u32", "u64", "s16", "s32", "s64"};
const qualifier_list byte_types = {"u8", "s8", "b8"};
const qualifier_list bit_types = {"b16", "b32", "b64"};
const qualifier_list float_types = {"f32", "f64"};
const qualifier_list half_types = {"f16", "f16x2", "bf16", "bf16x2"};
const qualifier_list float_rounding = {"rn", "rz", "rm", "rp"};
const qualifier_list memory_order = {"weak", "relaxed", "acquire", "release", "acq_rel", "volatile", "sc",
                                     "cta",  "cluster", "gpu",     "sys"};
const qualifier_list cache_hints = {"L1::evict_normal", "L1::evict_unchanged", "L1::evict_first", "L1::evict_last",
                                    "L1::no_allocate",  "L2::evict_normal",    "L2::evict_first", "L2::evict_last",
                                    "L2::cache_hint",   "L2::64B",             "L2::128B",        "L2::256B"};
const qualifier_list state_spaces = {"global", "shared", "shared::cta", "shared::cluster", "local",
                                     "param",  "param::entry", "param::func", "const"};
}  // namespace qualifiers

std::unordered_set<std::string> any_of(std::initializer_list<qualifier_list> lists) {
  std::unordered_set<std::string> all;
  for (const qualifier_list& l : lists) all.insert(l.begin(), l.end());
  return all;
}

bool has(const instruction& in, const char* m) {
  return std::find(in.modifiers.begin(), in.modifiers.end(), m) != in.modifiers.end();
}

void unsupported(const instruction& in, const std::string& why) {
  std::string name = in.opcode;
  for (const std::string& m : in.modifiers) name += "." + m;
  throw std::runtime_error("unsupported instruction " + name + (why.empty() ? "" : " (" + why + ")"));
}

void need_operands(const instruction& in, int n) {
  if (in.op_count < n) unsupported(in, "expected " + std::to_string(n) + " operands");
}

namespace {

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

uint32_t signature_of(const instruction& in) {
  static std::unordered_map<std::string, uint32_t> ids;
  std::string name = in.opcode;
  for (const std::string& m : in.modifiers) name += "." + m;
  return ids.emplace(name, static_cast<uint32_t>(ids.size())).first->second;
}

//! A row with its form split: the opcode and the form qualifiers.
struct indexed_row {
  const opcode_row* row;
  std::vector<std::string> form;  //!< the qualifiers after the opcode
};

//! Every chapter's rows.
const std::vector<opcode_row>& all_rows() {
  static const std::vector<opcode_row> rows = [] {
    std::vector<opcode_row> all;
    for (auto chapter : {integer_rows, floating_rows, logic_rows, convert_rows, memory_rows, warp_rows, control_rows,
                         tensor_rows, wmma_rows, hopper_rows}) {
      std::vector<opcode_row> r = chapter();
      all.insert(all.end(), std::make_move_iterator(r.begin()), std::make_move_iterator(r.end()));
    }
    return all;
  }();
  return rows;
}

//! The rows by opcode.
const std::unordered_map<std::string, std::vector<indexed_row>>& rows_by_opcode() {
  static const std::unordered_map<std::string, std::vector<indexed_row>> index = [] {
    std::unordered_map<std::string, std::vector<indexed_row>> by_opcode;
    for (const opcode_row& r : all_rows()) {
      std::vector<std::string> parts;
      for (size_t at = 0;;) {
        const size_t dot = r.form.find('.', at);
        parts.push_back(r.form.substr(at, dot - at));
        if (dot == std::string::npos) break;
        at = dot + 1;
      }
      const std::string opcode = parts.front();
      parts.erase(parts.begin());
      by_opcode[opcode].push_back({&r, std::move(parts)});
    }
    return by_opcode;
  }();
  return index;
}

//! The first qualifier of `in` that `r` does not implement, or nullptr.
const std::string* unimplemented_qualifier(const instruction& in, const indexed_row& r) {
  for (const std::string& m : in.modifiers)
    if (!r.row->qualifiers.count(m) && std::find(r.form.begin(), r.form.end(), m) == r.form.end()) return &m;
  return nullptr;
}

//! The row of `in`: among its opcode's rows whose form qualifiers it has all of, those with the
//! most, and of these the first that implements every qualifier it has. Refuses, naming it, an
//! opcode without rows, an instruction no form matches, or a qualifier of none of the rows.
const opcode_row& find_row(const instruction& in) {
  const auto rows = rows_by_opcode().find(in.opcode);
  if (rows == rows_by_opcode().end()) unsupported(in, "unknown opcode " + in.opcode);
  const indexed_row* best = nullptr;
  std::vector<const indexed_row*> candidates;
  for (const indexed_row& r : rows->second) {
    if (!std::all_of(r.form.begin(), r.form.end(), [&](const std::string& q) { return has(in, q.c_str()); })) continue;
    if (best == nullptr || r.form.size() > best->form.size()) {
      best = &r;
      candidates.clear();
    }
    if (r.form.size() == best->form.size()) candidates.push_back(&r);
  }
  if (best == nullptr) {
    std::string forms;
    for (const indexed_row& r : rows->second) forms += (forms.empty() ? "" : ", ") + r.row->form;
    unsupported(in, "no implemented form of " + in.opcode + ": " + forms);
  }
  for (const indexed_row* r : candidates)
    if (unimplemented_qualifier(in, *r) == nullptr) return *r->row;
  const std::string& q = *unimplemented_qualifier(in, *best);
  ptype t;
  unsupported(in, std::string(parse_type(q, &t) ? "type" : "qualifier") + " ." + q + " of " + best->row->form +
                      " is not implemented");
}

}  // namespace

std::vector<std::string> implemented_forms() {
  std::vector<std::string> forms;
  for (const opcode_row& r : all_rows()) forms.push_back(r.form);
  return forms;
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

void decode_instruction(instruction& in, const kernel& k) {
  const opcode_row& row = find_row(in);
  if (in.op_count < row.min_operands || in.op_count > row.max_operands) {
    const std::string range = row.min_operands == row.max_operands
                                  ? std::to_string(row.min_operands)
                                  : std::to_string(row.min_operands) + " to " + std::to_string(row.max_operands);
    unsupported(in, row.form + " takes " + range + " operands, not " + std::to_string(in.op_count));
  }
  in.signature = signature_of(in);
  in.aligned = has(in, "aligned");
  row.decode(in, k);
  // The profile's class and memory kind; an integer row counts as floating point for a float type.
  using profile::instruction_class;
  instruction_class c = row.klass;
  if (c == instruction_class::integer && (type_float(in.type) || in.type == ptype::f16x2 || in.type == ptype::bf16x2))
    c = instruction_class::floating;
  in.klass = static_cast<uint8_t>(c);
  in.memory_kind = static_cast<uint8_t>(row.memory);
  // A first operand that is a register or a vector is a destination, except where the row makes it
  // a source (a barrier's id, nanosleep's duration).
  const bool first_is_register =
      in.op_count > 0 && (in.ops[0].k == operand::kind::reg || in.ops[0].k == operand::kind::vector);
  in.has_destination = first_is_register && !row.first_is_source && c != instruction_class::control;
  in.folds = in.opcode == "mov";
}

uint64_t bits_of_decimal_literal(double value, ptype t) {
  if (t == ptype::f64) return bits(value);
  if (t == ptype::f32) return bits(static_cast<float>(value));
  if (type_float(t) || t == ptype::f16x2 || t == ptype::bf16x2) return encode_float(value, format_of(t), rounding::rn);
  return static_cast<uint64_t>(static_cast<int64_t>(value));
}

}  // namespace emu
