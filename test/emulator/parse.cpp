// PTX text -> decoded kernels. A hand-written tokenizer and recursive-descent parser for the
// subset of PTX that nvcc emits for kernels (module directives, variables with initialisers,
// .entry and .func with parameters and performance directives, scoped .reg/.shared/.local/.param
// declarations, labels, guarded instructions, direct calls). Anything else is an error naming the
// line. Each kernel is decoded with the functions it calls appended to its code.
#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <unordered_set>

#include "decode.hpp"
#include "ptx.hpp"

namespace emu {

bool parse_type(const std::string& s, ptype* out) {
  static const std::map<std::string, ptype> types = {
      {"pred", ptype::pred}, {"b8", ptype::b8},     {"b16", ptype::b16},   {"b32", ptype::b32},
      {"b64", ptype::b64},   {"b128", ptype::b128}, {"u8", ptype::u8},     {"u16", ptype::u16},
      {"u32", ptype::u32},   {"u64", ptype::u64},   {"s8", ptype::s8},     {"s16", ptype::s16},
      {"s32", ptype::s32},   {"s64", ptype::s64},   {"f16", ptype::f16},   {"f16x2", ptype::f16x2},
      {"bf16", ptype::bf16}, {"bf16x2", ptype::bf16x2}, {"f32", ptype::f32}, {"f64", ptype::f64}};
  const auto it = types.find(s);
  if (it == types.end()) return false;
  *out = it->second;
  return true;
}

namespace {

struct token {
  enum class kind : uint8_t { word, punct, string, end };
  kind k = kind::end;
  std::string text;
  uint32_t line = 0;
};

// Words: letters, digits, _ $ % . (PTX identifiers, opcodes with modifiers, numbers).
std::vector<token> tokenize(std::string_view src) {
  std::vector<token> out;
  out.reserve(src.size() / 4);
  uint32_t line = 1;
  size_t i = 0;
  const auto word_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || c == '%' || c == '.';
  };
  while (i < src.size()) {
    const char c = src[i];
    if (c == '\n') { ++line; ++i; continue; }
    if (std::isspace(static_cast<unsigned char>(c))) { ++i; continue; }
    if (c == '/' && i + 1 < src.size() && src[i + 1] == '/') {
      while (i < src.size() && src[i] != '\n') ++i;
      continue;
    }
    if (c == '/' && i + 1 < src.size() && src[i + 1] == '*') {
      i += 2;
      while (i + 1 < src.size() && !(src[i] == '*' && src[i + 1] == '/')) {
        if (src[i] == '\n') ++line;
        ++i;
      }
      i += 2;
      continue;
    }
    token t;
    t.line = line;
    if (c == '"') {
      size_t j = i + 1;
      while (j < src.size() && src[j] != '"') ++j;
      t.k = token::kind::string;
      t.text = std::string(src.substr(i + 1, j - i - 1));
      i = j + 1;
    } else if (word_char(c)) {
      size_t j = i;
      while (j < src.size() && (word_char(src[j]) || (src[j] == ':' && j + 1 < src.size() && src[j + 1] == ':' &&
                                                       j + 2 < src.size() && word_char(src[j + 2])))) {
        j += src[j] == ':' ? 2 : 1;  // qualifiers such as .L2::128B and shared::cta are one word
      }
      t.k = token::kind::word;
      t.text = std::string(src.substr(i, j - i));
      i = j;
    } else {
      t.k = token::kind::punct;
      t.text = std::string(1, c);
      ++i;
    }
    out.push_back(std::move(t));
  }
  token end;
  end.line = line;
  out.push_back(end);
  return out;
}

[[noreturn]] void fail(const std::string& module, uint32_t line, const std::string& what) {
  throw std::runtime_error(module + ":" + std::to_string(line) + ": " + what);
}

const std::map<std::string, special>& special_registers() {
  static const std::map<std::string, special> names = {
      {"%tid.x", special::tid_x}, {"%tid.y", special::tid_y}, {"%tid.z", special::tid_z},
      {"%ntid.x", special::ntid_x}, {"%ntid.y", special::ntid_y}, {"%ntid.z", special::ntid_z},
      {"%ctaid.x", special::ctaid_x}, {"%ctaid.y", special::ctaid_y}, {"%ctaid.z", special::ctaid_z},
      {"%nctaid.x", special::nctaid_x}, {"%nctaid.y", special::nctaid_y}, {"%nctaid.z", special::nctaid_z},
      {"%laneid", special::laneid}, {"%warpid", special::warpid}, {"%nwarpid", special::nwarpid},
      {"%smid", special::smid}, {"%nsmid", special::nsmid}, {"%gridid", special::gridid},
      {"%lanemask_eq", special::lanemask_eq}, {"%lanemask_lt", special::lanemask_lt},
      {"%lanemask_le", special::lanemask_le}, {"%lanemask_gt", special::lanemask_gt},
      {"%lanemask_ge", special::lanemask_ge}, {"%clock", special::clock}, {"%clock64", special::clock64},
      {"%globaltimer", special::globaltimer}, {"%dynamic_smem_size", special::dynamic_smem_size},
      {"%total_smem_size", special::total_smem_size},
      {"%clusterid.x", special::clusterid_x}, {"%clusterid.y", special::clusterid_y},
      {"%clusterid.z", special::clusterid_z}, {"%nclusterid.x", special::nclusterid_x},
      {"%nclusterid.y", special::nclusterid_y}, {"%nclusterid.z", special::nclusterid_z},
      {"%cluster_ctaid.x", special::cluster_ctaid_x}, {"%cluster_ctaid.y", special::cluster_ctaid_y},
      {"%cluster_ctaid.z", special::cluster_ctaid_z}, {"%cluster_nctaid.x", special::cluster_nctaid_x},
      {"%cluster_nctaid.y", special::cluster_nctaid_y}, {"%cluster_nctaid.z", special::cluster_nctaid_z},
      {"%cluster_ctarank", special::cluster_ctarank}, {"%cluster_nctarank", special::cluster_nctarank},
      {"%is_explicit_cluster", special::is_explicit_cluster},
      {"%reserved_smem_offset_begin", special::reserved_smem_offset_begin},
      {"%reserved_smem_offset_end", special::reserved_smem_offset_end},
      {"%reserved_smem_offset_cap", special::reserved_smem_offset_cap},
      {"%reserved_smem_offset_0", special::reserved_smem_offset_0},
      {"%reserved_smem_offset_1", special::reserved_smem_offset_1},
      {"%envreg1", special::envreg1}, {"%envreg2", special::envreg2}};
  return names;
}

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

class module_impl;

//! What the bodies of a kernel and of the functions it calls share: the layout of module-scope
//! shared variables and the operands to move once the static shared size is known.
struct kernel_layout {
  struct dynamic_use {
    size_t instr;
    int op;
    int element;  // -1: the operand itself, else a vector element index
  };
  std::unordered_map<std::string, uint64_t> shared;  // module-scope .shared name -> offset
  std::vector<dynamic_use> dynamic_uses;             // operands naming dynamic shared memory
};

//! A call of a function by name, linked once the kernel's bodies are parsed.
struct call_use {
  size_t instr;
  std::string callee;
  uint32_t line;
};

// Parses one .entry or .func body into a kernel. Function-scope .local and .param variables (a
// function's parameters, the .param variables of call sites) are laid out in the body's frame:
// ld/st.param on them access local memory (PTX ISA "mov": the address of a device function
// parameter "will be in the local state space", the parameter copied onto the stack).
class function_parser {
 public:
  function_parser(module_impl& m, const std::vector<token>& toks, size_t& pos, kernel& k, kernel_layout& layout)
      : mod_(m), toks_(toks), pos_(pos), k_(k), layout_(layout) {}
  void parse_body(bool entry);
  //! A parameter or return value of the function: a .param variable of its frame.
  param_slot declare_parameter(const std::string& name, size_t align, size_t size);
  size_t frame_bytes() const { return frame_bytes_; }
  const std::vector<call_use>& calls() const { return call_uses_; }

 private:
  struct scope {
    int parent;
    std::unordered_map<std::string, int32_t> regs;
    std::unordered_map<std::string, uint32_t> labels;
    std::unordered_map<std::string, param_slot> params;  // call-site .param variables
  };
  struct label_use {
    size_t instr;
    int op;
    int scope;
    std::string name;
    uint32_t line;
  };
  const token& peek(size_t ahead = 0) const { return toks_[std::min(pos_ + ahead, toks_.size() - 1)]; }
  const token& next() { return toks_[pos_++]; }
  bool accept(const char* punct) {
    if (peek().k == token::kind::punct && peek().text == punct) { ++pos_; return true; }
    return false;
  }
  void expect(const char* punct) {
    if (!accept(punct)) fail_here(std::string("expected '") + punct + "', found '" + peek().text + "'");
  }
  [[noreturn]] void fail_here(const std::string& what) const;

  void declare_registers();
  void declare_variable(space s);
  void parse_instruction();
  void parse_call(instruction& in);
  operand parse_operand(instruction& in, int op_index, int element);
  bool resolve_register(const std::string& name, int32_t* slot) const;
  bool resolve_frame_parameter(const std::string& name, param_slot* slot) const;
  bool resolve_symbol(const std::string& name, uint64_t* address, bool* dynamic);
  size_t allocate_frame(size_t align, size_t bytes);

  module_impl& mod_;
  const std::vector<token>& toks_;
  size_t& pos_;
  kernel& k_;
  kernel_layout& layout_;
  std::vector<scope> scopes_;
  int current_ = -1;
  std::vector<label_use> label_uses_;
  std::vector<call_use> call_uses_;
  operand coordinates_;  // the {...} of a tensor address just parsed, not yet placed
  bool frame_parameter_ = false;  // the instruction being parsed addresses a frame .param variable
  size_t frame_bytes_ = 0;
  uint32_t source_file_ = 0, source_line_ = 0;  // the last .loc (line 0: none yet)
  std::unordered_map<std::string, uint64_t> locals_;     // name -> shared offset, or local offset in the frame
  std::unordered_map<std::string, param_slot> own_params_;  // a function's parameters and return value
  std::unordered_map<std::string, uint64_t> params_;     // an entry's parameters: name -> param offset
  friend class module_impl;
};

class module_impl final : public module {
 public:
  explicit module_impl(std::string name) : name_(std::move(name)) {}
  ~module_impl() override {
    for (void* p : allocations_) device_free(p);
  }

  void parse(std::string_view text);

  const kernel* find_kernel(std::string_view mangled, std::string& problem) override {
    problem.clear();
    const std::string name(mangled);
    if (const auto it = kernels_.find(name); it != kernels_.end()) return it->second.get();
    if (const auto it = failures_.find(name); it != failures_.end()) {
      problem = it->second;
      return nullptr;
    }
    const auto entry = entries_.find(name);
    if (entry == entries_.end()) return nullptr;
    size_t pos = entry->second;
    try {
      parse_entry(toks_, pos);
    } catch (const std::exception& e) {  // only this kernel fails: the module's others still decode
      problem = failures_[name] = e.what();
      return nullptr;
    }
    return kernels_.at(name).get();
  }
  const kernel_info& info(const kernel& k) const override { return k.info; }
  void* variable(std::string_view name, size_t* bytes) const override {
    const auto it = globals_.find(std::string(name));
    if (it == globals_.end()) return nullptr;
    if (bytes) *bytes = it->second.size;
    return reinterpret_cast<void*>(it->second.address);
  }

  const std::string& name() const { return name_; }
  int ptx_version() const { return target_; }
  const ptx_variable* module_variable(const std::string& n) const {
    const auto it = globals_.find(n);
    return it == globals_.end() ? nullptr : &it->second;
  }
  bool is_function(const std::string& n) const { return definitions_.count(n) || externs_.count(n); }

 private:
  struct declared_param {
    std::string name;
    size_t align, size;
  };
  void parse_variable(const std::vector<token>& toks, size_t& pos, space s, bool is_extern);
  void parse_entry(const std::vector<token>& toks, size_t& pos);
  void declare_function(const std::vector<token>& toks, size_t& pos, bool is_extern);
  uint32_t parse_function(const std::vector<token>& toks, kernel& k, kernel_layout& layout, const std::string& name,
                          std::vector<call_use>& calls);
  void link_calls(const std::vector<token>& toks, kernel& k, kernel_layout& layout, std::vector<call_use> calls);
  std::vector<declared_param> parse_param_list(const std::vector<token>& toks, size_t& pos);
  void skip_function(const std::vector<token>& toks, size_t& pos);

  std::string name_;
  int target_ = 0;
  std::vector<token> toks_;                                  // kept: each .entry decodes on its first request
  std::unordered_map<std::string, size_t> entries_;          // .entry name -> its token
  std::unordered_map<std::string, std::unique_ptr<kernel>> kernels_;  // decoded
  std::unordered_map<std::string, std::string> failures_;    // entries that cannot be decoded: why
  std::unordered_map<std::string, ptx_variable> globals_;  // .global, .const and module .shared
  std::unordered_map<std::string, size_t> definitions_;    // .func with a body: the token after .func
  std::unordered_set<std::string> externs_;                 // .extern .func declarations
  std::vector<void*> allocations_;
  std::vector<std::string> files_;  // .file index -> CUDA source path
};

void function_parser::fail_here(const std::string& what) const {
  fail(mod_.name(), peek().line, what + " (in " + demangled(k_.info.name) + ")");
}

bool function_parser::resolve_register(const std::string& name, int32_t* slot) const {
  for (int s = current_; s >= 0; s = scopes_[s].parent) {
    const auto it = scopes_[s].regs.find(name);
    if (it != scopes_[s].regs.end()) { *slot = it->second; return true; }
  }
  return false;
}

// A .param variable of the frame: a call site's (innermost scope first) or the function's own.
bool function_parser::resolve_frame_parameter(const std::string& name, param_slot* slot) const {
  for (int s = current_; s >= 0; s = scopes_[s].parent) {
    const auto it = scopes_[s].params.find(name);
    if (it != scopes_[s].params.end()) { *slot = it->second; return true; }
  }
  const auto it = own_params_.find(name);
  if (it == own_params_.end()) return false;
  *slot = it->second;
  return true;
}

// A variable's address in its own space: param offset, shared offset, local offset in the
// frame (frame .param variables too), or absolute.
bool function_parser::resolve_symbol(const std::string& name, uint64_t* address, bool* dynamic) {
  *dynamic = false;
  if (param_slot p; resolve_frame_parameter(name, &p)) {
    *address = p.offset;
    frame_parameter_ = true;
    return true;
  }
  if (const auto p = params_.find(name); p != params_.end()) { *address = p->second; return true; }
  if (const auto l = locals_.find(name); l != locals_.end()) {
    *address = l->second;
    *dynamic = l->second == UINT64_MAX;
    if (*dynamic) *address = 0;
    return true;
  }
  if (const ptx_variable* v = mod_.module_variable(name)) {
    if (v->state == space::shared) {
      // Module-scope shared variables are laid out in each kernel that uses them.
      if (v->dynamic_shared) {
        k_.dynamic_shared_align = std::max(k_.dynamic_shared_align, v->align);
        *address = 0;
        *dynamic = true;
        return true;
      }
      const auto [it, added] = layout_.shared.emplace(name, 0);
      if (added) {
        k_.static_shared_bytes = align_up(k_.static_shared_bytes, v->align);
        it->second = k_.static_shared_bytes;
        k_.static_shared_bytes += v->size;
      }
      *address = it->second;
      return true;
    }
    *address = v->address;
    return true;
  }
  return false;
}

size_t function_parser::allocate_frame(size_t align, size_t bytes) {
  frame_bytes_ = align_up(frame_bytes_, align);
  const size_t offset = frame_bytes_;
  frame_bytes_ += bytes;
  return offset;
}

param_slot function_parser::declare_parameter(const std::string& name, size_t align, size_t size) {
  const param_slot slot{allocate_frame(align, size), size};
  own_params_[name] = slot;
  return slot;
}

void function_parser::declare_registers() {
  // .reg .type name[<n>] {, name[<n>]} ;
  next();  // .reg
  if (peek().k == token::kind::word && peek().text.rfind(".v", 0) == 0) next();
  const token& type = next();
  ptype reg_type = ptype::none;
  if (type.k != token::kind::word || !parse_type(type.text.substr(1), &reg_type)) fail_here("expected a register type");
  do {
    const token& name = next();
    if (name.k != token::kind::word) fail_here("expected a register name");
    if (accept("<")) {
      const long n = std::stol(next().text);
      expect(">");
      for (long i = 0; i < n; ++i) {
        const std::string full = name.text + std::to_string(i);
        scopes_[current_].regs[full] = static_cast<int32_t>(k_.register_count++);
        k_.register_names.push_back(full);
        k_.register_types.push_back(reg_type);
      }
    } else {
      scopes_[current_].regs[name.text] = static_cast<int32_t>(k_.register_count++);
      k_.register_names.push_back(name.text);
      k_.register_types.push_back(reg_type);
    }
  } while (accept(","));
  expect(";");
}

// Function-scope .shared / .local / .param: [.align n] .type name[ [n] ] ;
void function_parser::declare_variable(space s) {
  next();
  size_t align = 0;
  if (peek().text == ".align") { next(); align = std::stoul(next().text); }
  ptype t;
  const token& type = next();
  if (!parse_type(type.text.substr(1), &t)) fail_here("expected a variable type");
  const std::string name = next().text;
  size_t count = 1;
  bool unsized = false;
  if (accept("[")) {
    if (accept("]")) unsized = true;
    else { count = std::stoul(next().text); expect("]"); }
  }
  expect(";");
  const size_t bytes = count * type_bytes(t);
  if (align == 0) align = type_bytes(t);
  if (s == space::shared) {
    if (unsized) {  // dynamic shared memory
      locals_[name] = UINT64_MAX;
      k_.dynamic_shared_align = std::max(k_.dynamic_shared_align, align);
      return;
    }
    k_.static_shared_bytes = align_up(k_.static_shared_bytes, align);
    locals_[name] = k_.static_shared_bytes;
    k_.static_shared_bytes += bytes;
  } else if (s == space::param) {
    scopes_[current_].params[name] = {allocate_frame(align, bytes), bytes};
  } else {
    locals_[name] = allocate_frame(align, bytes);
  }
}

void function_parser::parse_body(bool entry) {
  expect("{");
  scopes_.push_back({-1, {}, {}, {}});
  current_ = 0;
  int depth = 1;
  while (depth > 0) {
    const token& t = peek();
    if (t.k == token::kind::end) fail_here("unexpected end of module");
    if (t.k == token::kind::punct && t.text == "{") {
      next();
      scopes_.push_back({current_, {}, {}, {}});
      current_ = static_cast<int>(scopes_.size()) - 1;
      ++depth;
      continue;
    }
    if (t.k == token::kind::punct && t.text == "}") {
      next();
      current_ = scopes_[current_].parent;
      --depth;
      continue;
    }
    if (t.k == token::kind::word && peek(1).k == token::kind::punct && peek(1).text == ":" && peek(2).text == ".callprototype")
      fail_here("an indirect call's .callprototype (function pointers are not implemented)");
    if (t.k == token::kind::word && peek(1).k == token::kind::punct && peek(1).text == ":") {
      scopes_[current_].labels[t.text] = static_cast<uint32_t>(k_.code.size());
      pos_ += 2;
      continue;
    }
    if (t.k == token::kind::word && t.text == ".reg") { declare_registers(); continue; }
    if (t.k == token::kind::word && t.text == ".shared") { declare_variable(space::shared); continue; }
    if (t.k == token::kind::word && t.text == ".local") { declare_variable(space::local); continue; }
    if (t.k == token::kind::word && t.text == ".param") { declare_variable(space::param); continue; }
    if (t.k == token::kind::word && t.text == ".loc" && peek(1).line == t.line && peek(2).line == t.line) {
      source_file_ = static_cast<uint32_t>(std::stoul(peek(1).text));  // .loc file line column [, inlined_at ...]
      source_line_ = static_cast<uint32_t>(std::stoul(peek(2).text));  // the innermost location
    }
    if (t.k == token::kind::word && (t.text == ".pragma" || t.text == ".loc" || t.text == ".file")) {
      while (!accept(";")) {
        if (peek().k == token::kind::end) fail_here("unterminated directive");
        if (peek().line != t.line && t.text == ".loc") break;  // .loc has no ';'
        next();
      }
      continue;
    }
    if (t.k == token::kind::word && t.text[0] == '.') fail_here("unsupported directive " + t.text);
    parse_instruction();
  }
  // Branch targets: the innermost enclosing scope that defines the label.
  for (const label_use& use : label_uses_) {
    bool found = false;
    for (int s = use.scope; s >= 0 && !found; s = scopes_[s].parent) {
      const auto it = scopes_[s].labels.find(use.name);
      if (it != scopes_[s].labels.end()) {
        k_.code[use.instr].ops[use.op].imm = it->second;
        found = true;
      }
    }
    if (!found && mod_.is_function(use.name))
      fail(mod_.name(), use.line, "the address of device function " + use.name +
                                      " (indirect calls through function pointers are not implemented)");
    if (!found && use.name.rfind("%envreg", 0) == 0)
      fail(mod_.name(), use.line, use.name + ": driver-defined contents not implemented (%envreg1 and %envreg2, "
                                             "the grid workspace of cooperative launches, are)");
    if (!found) fail(mod_.name(), use.line, "undefined label " + use.name);
  }
  if (k_.code.empty() || k_.code.back().opcode != "ret") {
    instruction ret;  // falling off the end of a body returns
    ret.opcode = "ret";
    ret.line = peek().line;
    decode_instruction(ret, k_);
    k_.code.push_back(ret);
  }
  if (entry) k_.local_bytes = frame_bytes_;
}

operand function_parser::parse_operand(instruction& in, int op_index, int element) {
  operand o;
  if (accept("[")) {
    o.k = operand::kind::address;
    bool have_base = false;
    while (!accept("]")) {
      if (have_base && accept(",")) {  // [tensorMap, {coordinates}]: the vector becomes the next operand
        coordinates_ = parse_operand(in, op_index + 1, -1);
        expect("]");
        return o;
      }
      bool negative = false;
      while (accept("+") || (accept("-") && (negative = !negative, true))) {}
      const token& t = next();
      if (t.k != token::kind::word) fail_here("bad address");
      int32_t slot;
      uint64_t address;
      bool dynamic;
      if (!have_base && resolve_register(t.text, &slot)) {
        o.reg = slot;
        have_base = true;
      } else if (!have_base && resolve_symbol(t.text, &address, &dynamic)) {
        o.imm += address;
        have_base = true;
        if (dynamic) layout_.dynamic_uses.push_back({k_.code.size(), op_index, element});
      } else {
        const uint64_t v = std::stoull(t.text, nullptr, 0);
        o.imm += negative ? uint64_t(0) - v : v;
      }
    }
    return o;
  }
  if (accept("{")) {
    o.k = operand::kind::vector;
    o.first = static_cast<uint32_t>(k_.vector_elements.size());
    std::vector<operand> elements;
    do {
      elements.push_back(parse_operand(in, op_index, static_cast<int>(elements.size())));
    } while (accept(","));
    expect("}");
    o.count = static_cast<uint32_t>(elements.size());
    k_.vector_elements.insert(k_.vector_elements.end(), elements.begin(), elements.end());
    return o;
  }
  bool negative = false;
  if (accept("!")) o.negate = true;
  if (accept("-")) negative = true;
  const token& t = next();
  if (t.k != token::kind::word) fail_here("bad operand '" + t.text + "'");
  const std::string& s = t.text;
  if (s == "_") { o.k = operand::kind::sink; return o; }
  if (s == "WARP_SZ") { o.k = operand::kind::imm; o.imm = 32; return o; }  // the PTX constant
  int32_t slot;
  if (resolve_register(s, &slot)) { o.k = operand::kind::reg; o.reg = slot; return o; }
  if (const auto it = special_registers().find(s); it != special_registers().end()) {
    o.k = operand::kind::special;
    o.sreg = it->second;
    return o;
  }
  if (std::isdigit(static_cast<unsigned char>(s[0]))) {
    o.k = operand::kind::imm;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'f' || s[1] == 'F')) {
      o.imm = std::stoull(s.substr(2), nullptr, 16);
      if (negative) o.imm ^= 0x80000000u;
    } else if (s.size() > 2 && s[0] == '0' && (s[1] == 'd' || s[1] == 'D')) {
      o.imm = std::stoull(s.substr(2), nullptr, 16);
      if (negative) o.imm ^= 0x8000000000000000ull;
    } else if (s.find_first_of(".eE") != std::string::npos && s.find_first_of("xX") == std::string::npos) {
      double d = std::stod(s);  // decimal float literal: double, narrowed by the instruction type
      if (negative) d = -d;
      o.imm = bits_of_decimal_literal(d, in.type);
    } else {
      std::string digits = s;
      if (!digits.empty() && (digits.back() == 'U' || digits.back() == 'u')) digits.pop_back();
      const uint64_t v = std::stoull(digits, nullptr, 0);
      o.imm = negative ? uint64_t(0) - v : v;
    }
    return o;
  }
  uint64_t address;
  bool dynamic;
  if (resolve_symbol(s, &address, &dynamic)) {
    o.k = operand::kind::imm;
    o.imm = address;
    if (accept("+")) o.imm += std::stoull(next().text, nullptr, 0);  // var+imm (mov, mapa)
    if (dynamic) layout_.dynamic_uses.push_back({k_.code.size(), op_index, element});
    return o;
  }
  // Anything else is a label (branch target), resolved when the body ends.
  o.k = operand::kind::label;
  label_uses_.push_back({k_.code.size(), op_index, current_, s, t.line});
  return o;
}

void function_parser::parse_instruction() {
  instruction in;
  in.line = peek().line;
  if (source_line_ != 0) k_.source_lines.push_back({in.line, source_file_, source_line_});
  if (accept("@")) {
    const bool negated = accept("!");
    const token& p = next();
    if (!resolve_register(p.text, &in.guard)) fail_here("unknown guard predicate " + p.text);
    in.guard_negated = negated;
  }
  const token& op = next();
  if (op.k != token::kind::word) fail_here("expected an instruction, found '" + op.text + "'");
  size_t dot = op.text.find('.');
  in.opcode = op.text.substr(0, dot);
  while (dot != std::string::npos) {
    const size_t end = op.text.find('.', dot + 1);
    in.modifiers.push_back(op.text.substr(dot + 1, end == std::string::npos ? std::string::npos : end - dot - 1));
    dot = end;
  }
  classify_modifiers(in);
  frame_parameter_ = false;
  int count = 0;
  if (in.opcode == "call") {
    parse_call(in);
    count = in.op_count;
  } else if (!accept(";")) {
    do {
      if (count == 8) fail_here("too many operands");
      in.ops[count] = parse_operand(in, count, -1);
      ++count;
      if (coordinates_.k != operand::kind::none) {
        if (count == 8) fail_here("too many operands");
        in.ops[count++] = coordinates_;
        coordinates_ = operand{};
      }
      if (accept("|")) {  // d|p: the predicate partner of a destination
        int32_t slot;
        const token& p = next();
        if (!resolve_register(p.text, &slot)) fail_here("unknown predicate " + p.text);
        in.pair = slot;
      }
    } while (accept(","));
    expect(";");
  }
  in.op_count = static_cast<uint8_t>(count);
  if (frame_parameter_ && in.state == space::param) in.state = space::local;
  try {
    decode_instruction(in, k_);
  } catch (const std::exception& e) {
    fail(mod_.name(), in.line, std::string(e.what()) + " in " + op.text + " (" + demangled(k_.info.name) + ")");
  }
  k_.code.push_back(std::move(in));
}

// call{.uni} [(ret-param),] func[, (param-list)]: ops[0] the return operands (0 or 1), ops[1]
// the callee (linked later: call_payload), ops[2] the arguments. Arguments and return values are .param
// variables of the frame (kind::address, count: their size), registers or immediates (PTX ISA
// "call": "Arguments may be registers, immediate constants, or variables in .param space").
void function_parser::parse_call(instruction& in) {
  const auto list = [&](int op_index) {
    std::vector<operand> elements;
    if (!accept(")")) {
      do {
        param_slot p;
        if (peek().k == token::kind::word && resolve_frame_parameter(peek().text, &p)) {
          next();
          operand o;
          o.k = operand::kind::address;
          o.imm = p.offset;
          o.count = static_cast<uint32_t>(p.size);
          elements.push_back(o);
        } else {
          elements.push_back(parse_operand(in, op_index, static_cast<int>(elements.size())));
        }
      } while (accept(","));
      expect(")");
    }
    operand v;
    v.k = operand::kind::vector;
    v.first = static_cast<uint32_t>(k_.vector_elements.size());
    v.count = static_cast<uint32_t>(elements.size());
    k_.vector_elements.insert(k_.vector_elements.end(), elements.begin(), elements.end());
    return v;
  };
  operand results;
  results.k = operand::kind::vector;
  results.first = static_cast<uint32_t>(k_.vector_elements.size());
  if (accept("(")) {
    results = list(0);
    expect(",");
  }
  const token& target = next();
  int32_t slot;
  if (target.k != token::kind::word || resolve_register(target.text, &slot))
    fail_here("an indirect call through " + target.text + " (function pointers are not implemented)");
  call_uses_.push_back({k_.code.size(), target.text, target.line});
  operand callee;
  callee.k = operand::kind::label;
  operand arguments;
  arguments.k = operand::kind::vector;
  arguments.first = static_cast<uint32_t>(k_.vector_elements.size());
  if (accept(",")) {
    expect("(");
    arguments = list(2);
  }
  if (accept(",")) fail_here("a call target list or prototype of a direct call to " + target.text);
  expect(";");
  in.ops[0] = results;
  in.ops[1] = callee;
  in.ops[2] = arguments;
  in.op_count = 3;
}

void module_impl::parse_variable(const std::vector<token>& toks, size_t& pos, space s, bool is_extern) {
  ptx_variable v;
  v.state = s;
  while (toks[pos].text == ".align" || toks[pos].text == ".v2" || toks[pos].text == ".v4") {
    if (toks[pos].text == ".align") { v.align = std::stoul(toks[pos + 1].text); pos += 2; }
    else ++pos;
  }
  ptype t;
  if (!parse_type(toks[pos].text.substr(1), &t)) fail(name_, toks[pos].line, "expected a variable type");
  ++pos;
  v.name = toks[pos++].text;
  size_t count = 1;
  bool unsized = false;
  if (toks[pos].text == "[") {
    if (toks[pos + 1].text == "]") { unsized = true; pos += 2; }
    else { count = std::stoul(toks[pos + 1].text); pos += 3; }
  }
  const int elem = type_bytes(t);
  if (v.align < size_t(elem)) v.align = elem;
  v.size = count * elem;
  if (toks[pos].text == "=") {
    ++pos;
    v.init.assign(v.size, 0);
    const bool braces = toks[pos].text == "{";
    if (braces) ++pos;
    size_t i = 0;
    while (toks[pos].text != ";" && toks[pos].text != "}") {
      bool negative = false;
      if (toks[pos].text == "-") { negative = true; ++pos; }
      const std::string& w = toks[pos].text;
      uint64_t bits;
      if (w.size() > 2 && w[0] == '0' && (w[1] == 'f' || w[1] == 'F' || w[1] == 'd' || w[1] == 'D')) {
        bits = std::stoull(w.substr(2), nullptr, 16);
        if (negative) bits ^= uint64_t(1) << (8 * elem - 1);  // the sign bit of the hex float
      } else if (!w.empty() && std::isdigit(static_cast<unsigned char>(w[0])) &&
                 w.find_first_of(".eE") != std::string::npos && w.find_first_of("xX") == std::string::npos) {
        bits = bits_of_decimal_literal(negative ? -std::stod(w) : std::stod(w), t);
      } else if (!w.empty() && std::isdigit(static_cast<unsigned char>(w[0]))) {
        bits = std::stoull(w, nullptr, 0);
        if (negative) bits = uint64_t(0) - bits;
      } else fail(name_, toks[pos].line, "unsupported initialiser " + w);
      if ((i + 1) * elem > v.size) fail(name_, toks[pos].line, "too many initialisers");
      std::memcpy(v.init.data() + i * elem, &bits, elem);
      ++i;
      ++pos;
      if (toks[pos].text == ",") ++pos;
    }
    if (braces) ++pos;
  }
  if (toks[pos].text != ";") fail(name_, toks[pos].line, "expected ';' after variable " + v.name);
  ++pos;
  if (s == space::shared) {
    v.dynamic_shared = unsized || is_extern;
  } else {
    if (unsized || is_extern) fail(name_, toks[pos].line, "unsupported: .extern or unsized variable " + v.name);
    void* p = device_allocate(std::max<size_t>(v.size, 1));
    std::memset(p, 0, v.size);
    if (!v.init.empty()) std::memcpy(p, v.init.data(), v.size);
    mark_device_written(p, v.size);  // initialised, with zeros if nothing else
    allocations_.push_back(p);
    v.address = reinterpret_cast<uint64_t>(p);
  }
  globals_[v.name] = std::move(v);
}

void module_impl::skip_function(const std::vector<token>& toks, size_t& pos) {
  while (toks[pos].text != "{" && toks[pos].text != ";") {
    if (toks[pos].k == token::kind::end) fail(name_, toks[pos].line, "unterminated function");
    ++pos;
  }
  if (toks[pos].text == ";") { ++pos; return; }
  int depth = 0;
  do {
    if (toks[pos].text == "{") ++depth;
    if (toks[pos].text == "}") --depth;
    ++pos;
  } while (depth > 0);
}

// ( .param [.align n] [.ptr ...] .type name[[n]] {, ...} ): each parameter's name, alignment and size.
std::vector<module_impl::declared_param> module_impl::parse_param_list(const std::vector<token>& toks, size_t& pos) {
  std::vector<declared_param> out;
  ++pos;  // (
  while (toks[pos].text != ")") {
    if (toks[pos].text != ".param") fail(name_, toks[pos].line, "expected .param");
    ++pos;
    size_t align = 0;
    while (toks[pos].text == ".align" || toks[pos].text == ".ptr" || toks[pos].text == ".global" ||
           toks[pos].text == ".const" || toks[pos].text == ".shared" || toks[pos].text == ".local") {
      if (toks[pos].text == ".align") { align = std::stoul(toks[pos + 1].text); pos += 2; }
      else ++pos;
    }
    ptype t;
    if (!parse_type(toks[pos].text.substr(1), &t)) fail(name_, toks[pos].line, "bad parameter type");
    ++pos;
    const std::string pname = toks[pos++].text;
    size_t count = 1;
    if (toks[pos].text == "[") { count = std::stoul(toks[pos + 1].text); pos += 3; }
    out.push_back({pname, align == 0 ? size_t(type_bytes(t)) : align, count * type_bytes(t)});
    if (toks[pos].text == ",") ++pos;
  }
  ++pos;
  return out;
}

// After .func: [(return param)] name [(params)] [.noreturn] then a body (a definition) or ';'.
void module_impl::declare_function(const std::vector<token>& toks, size_t& pos, bool is_extern) {
  const size_t header = pos;
  if (toks[pos].text == "(") parse_param_list(toks, pos);
  const std::string fname = toks[pos++].text;
  skip_function(toks, pos);
  if (toks[pos - 1].text == "}") definitions_[fname] = header;
  else if (is_extern) externs_.insert(fname);
}

// Decodes the definition of `name` into k, after its code: its parameters and return value in
// its frame, its calls appended to `calls`. Returns its index in k.functions.
uint32_t module_impl::parse_function(const std::vector<token>& toks, kernel& k, kernel_layout& layout,
                                     const std::string& name, std::vector<call_use>& calls) {
  size_t pos = definitions_.at(name);
  function_parser fp(*this, toks, pos, k, layout);
  device_function f;
  f.name = name;
  if (toks[pos].text == "(") {
    const std::vector<declared_param> result = parse_param_list(toks, pos);
    if (result.size() != 1) fail(name_, toks[pos].line, "function " + name + " with more than one return value");
    f.result = fp.declare_parameter(result[0].name, result[0].align, result[0].size);
  }
  ++pos;  // the name
  if (toks[pos].text == "(")
    for (const declared_param& p : parse_param_list(toks, pos)) f.params.push_back(fp.declare_parameter(p.name, p.align, p.size));
  while (toks[pos].text == ".noreturn") ++pos;
  if (toks[pos].text != "{") fail(name_, toks[pos].line, "unsupported function directive " + toks[pos].text);
  f.entry = static_cast<uint32_t>(k.code.size());
  f.first_register = k.register_count;
  fp.parse_body(false);
  f.register_count = k.register_count - f.first_register;
  f.frame_bytes = fp.frame_bytes();
  calls.insert(calls.end(), fp.calls().begin(), fp.calls().end());
  k.functions.push_back(std::move(f));
  return static_cast<uint32_t>(k.functions.size() - 1);
}

// Links the kernel's calls: each callee's body is decoded once, after the code; vprintf and
// __assertfail, which the CUDA runtime provides, become builtins. A call whose operands do not
// match the callee's parameters, or of a function the module does not define, is refused.
// Then sizes the thread's stack: the deepest chain of frames, or max_call_depth frames of the
// largest function where the calls recurse.
void module_impl::link_calls(const std::vector<token>& toks, kernel& k, kernel_layout& layout, std::vector<call_use> calls) {
  std::unordered_map<std::string, uint32_t> index;
  std::vector<std::vector<uint32_t>> callees(1);  // [0]: the entry's, [i + 1]: those of function i
  const auto caller_of = [&](size_t pc) {
    uint32_t caller = 0;
    for (uint32_t i = 0; i < k.functions.size(); ++i)
      if (k.functions[i].kind == device_function::builtin::none && pc >= k.functions[i].entry) caller = i + 1;
    return caller;
  };
  while (!calls.empty()) {
    const call_use use = calls.front();
    calls.erase(calls.begin());
    auto it = index.find(use.callee);
    if (it == index.end()) {
      uint32_t i;
      if (definitions_.count(use.callee)) {
        i = parse_function(toks, k, layout, use.callee, calls);
      } else if (externs_.count(use.callee) && (use.callee == "vprintf" || use.callee == "__assertfail")) {
        device_function f;
        f.name = use.callee;
        f.kind = use.callee == "vprintf" ? device_function::builtin::vprintf : device_function::builtin::assertfail;
        const size_t b64 = 8, b32 = 4;
        f.params = use.callee == "vprintf" ? std::vector<param_slot>{{0, b64}, {0, b64}}
                                           : std::vector<param_slot>{{0, b64}, {0, b64}, {0, b32}, {0, b64}, {0, b64}};
        if (use.callee == "vprintf") f.result = {0, b32};
        k.functions.push_back(f);
        i = static_cast<uint32_t>(k.functions.size() - 1);
      } else {
        fail(name_, use.line, "call of " + use.callee + (externs_.count(use.callee)
                                                              ? ", an external function the emulator does not provide "
                                                                "(only the CUDA runtime's vprintf and __assertfail)"
                                                              : ", which the module does not define"));
      }
      callees.resize(k.functions.size() + 1);
      it = index.emplace(use.callee, i).first;
    }
    instruction& in = k.code[use.instr];
    set_payload<call_payload>(in).function = it->second;
    const device_function& f = k.functions[it->second];
    const operand &results = in.ops[0], &arguments = in.ops[2];
    bool matches = arguments.count == f.params.size() && results.count <= (f.result.size ? 1u : 0u);
    for (uint32_t a = 0; a < arguments.count && matches; ++a) {
      const operand& o = k.vector_elements[arguments.first + a];
      matches = o.k != operand::kind::address || o.count == f.params[a].size;
    }
    if (results.count == 1) {
      const operand& o = k.vector_elements[results.first];
      matches &= (o.k == operand::kind::address && o.count == f.result.size) || o.k == operand::kind::reg;
    }
    if (!matches)
      fail(name_, use.line, "call of " + use.callee + " with " + std::to_string(arguments.count) + " argument(s) and " +
                                std::to_string(results.count) + " return value(s) that do not match its " +
                                std::to_string(f.params.size()) + " parameter(s) and " +
                                (f.result.size ? "return value" : "no return value"));
    callees[caller_of(use.instr)].push_back(it->second + 1);
  }
  // The stack: frames 16-byte aligned; depth-first over the call graph, a cycle is recursion.
  std::vector<size_t> frame(callees.size()), deepest(callees.size());
  frame[0] = align_up(k.local_bytes, 16);
  for (size_t i = 0; i < k.functions.size(); ++i) frame[i + 1] = align_up(k.functions[i].frame_bytes, 16);
  std::vector<uint8_t> state(callees.size(), 0);  // 0 new, 1 on the path, 2 done
  bool recursive = false;
  const std::function<void(uint32_t)> visit = [&](uint32_t f) {
    state[f] = 1;
    size_t below = 0;
    for (uint32_t c : callees[f]) {
      if (state[c] == 1) recursive = true;
      if (state[c] == 0) visit(c);
      below = std::max(below, deepest[c]);
    }
    deepest[f] = frame[f] + below;
    state[f] = 2;
  };
  visit(0);
  k.stack_bytes = recursive ? frame[0] + max_call_depth * *std::max_element(frame.begin() + 1, frame.end()) : deepest[0];
}

void module_impl::parse_entry(const std::vector<token>& toks, size_t& pos) {
  auto k = std::make_unique<kernel>();
  k->module_name = name_;
  k->info.name = toks[pos++].text;
  k->info.ptx_version = target_;
  kernel_layout layout;
  function_parser fp(*this, toks, pos, *k, layout);
  if (toks[pos].text == "(") {
    size_t offset = 0;
    for (const declared_param& p : parse_param_list(toks, pos)) {
      offset = align_up(offset, p.align);
      fp.params_[p.name] = offset;
      k->info.params.push_back({offset, p.size});
      offset += p.size;
    }
    k->info.param_bytes = offset;
  }
  int max_threads = 1;
  bool limited = false;
  while (toks[pos].text != "{") {
    const std::string& d = toks[pos].text;
    if (d == ".maxntid" || d == ".reqntid") {
      ++pos;
      limited = true;
      do {
        max_threads *= std::stoi(toks[pos++].text);
      } while (toks[pos].text == "," && ++pos);
    } else if (d == ".minnctapersm" || d == ".maxnreg") {
      (d == ".maxnreg" ? k->info.max_registers : k->info.min_blocks_per_sm) = std::stoi(toks[++pos].text);
      ++pos;
    } else if (d == ".maxnctapersm" || d == ".reqnctapercluster" || d == ".maxclusterrank") {
      ++pos;
      long ctas = 1;
      do { ctas *= std::stol(toks[pos++].text); } while (toks[pos].text == "," && ++pos);
      if (d == ".reqnctapercluster" && ctas > 1)  // every block runs as a cluster of its own
        fail(name_, toks[pos].line, "clusters of more than one CTA (.reqnctapercluster) are not implemented");
    } else if (d == ".noreturn" || d == ".explicitcluster") {
      ++pos;
    } else {
      fail(name_, toks[pos].line, "unsupported entry directive " + d);
    }
  }
  fp.parse_body(true);
  link_calls(toks, *k, layout, fp.calls());
  // Dynamic shared memory starts after the static variables, at its declared alignment.
  k->static_shared_bytes = align_up(k->static_shared_bytes, k->dynamic_shared_align);
  for (const kernel_layout::dynamic_use& use : layout.dynamic_uses) {
    operand& o = k->code[use.instr].ops[use.op];
    operand& target = use.element < 0 ? o : k->vector_elements[o.first + use.element];
    target.imm += k->static_shared_bytes;
  }
  mark_accumulator_uses(*k);
  k->read_before_written = registers_read_before_written(*k);
  std::sort(k->source_lines.begin(), k->source_lines.end(),
            [](const kernel::source_line& a, const kernel::source_line& b) { return a.ptx_line < b.ptx_line; });
  k->source_files = files_;
  k->info.max_threads_per_block = limited ? max_threads : 1024;
  k->info.bounded_threads = limited;
  k->info.static_shared_bytes = k->static_shared_bytes;
  k->info.local_bytes = k->local_bytes;
  k->info.registers = static_cast<int>(std::min<uint32_t>(k->register_count, 255));
  kernels_[k->info.name] = std::move(k);
}

void module_impl::parse(std::string_view text) {
  toks_ = tokenize(text);
  const std::vector<token>& toks = toks_;
  size_t pos = 0;
  while (toks[pos].k != token::kind::end) {
    const token& t = toks[pos];
    if (t.text == ".version" || t.text == ".address_size") { pos += 2; continue; }
    if (t.text == ".target") {
      ++pos;
      do {
        const std::string& arch = toks[pos].text;
        if (arch.rfind("sm_", 0) == 0) target_ = std::stoi(arch.substr(3));
        ++pos;
      } while (toks[pos].text == "," && ++pos);
      continue;
    }
    if (t.text == ".file" && toks[pos + 1].k == token::kind::word && toks[pos + 2].k == token::kind::string) {
      const size_t index = std::stoul(toks[pos + 1].text);  // .file index "path" [, timestamp, size]
      if (files_.size() <= index) files_.resize(index + 1);
      files_[index] = toks[pos + 2].text;
    }
    if (t.text == ".file" || t.text == ".loc" || t.text == ".pragma") {
      const uint32_t line = t.line;
      ++pos;
      while (toks[pos].line == line && toks[pos].text != ";" && toks[pos].k != token::kind::end) ++pos;
      if (toks[pos].text == ";") ++pos;
      continue;
    }
    if (t.text == ".section") {  // debug sections
      ++pos;
      skip_function(toks, pos);
      continue;
    }
    bool is_extern = false;
    while (toks[pos].text == ".visible" || toks[pos].text == ".weak" || toks[pos].text == ".extern" ||
           toks[pos].text == ".common") {
      is_extern |= toks[pos].text == ".extern";
      ++pos;
    }
    const std::string& d = toks[pos].text;
    if (d == ".entry") {  // decoded on its first request, once every function and variable is known
      entries_[toks[pos + 1].text] = pos + 1;
      ++pos;
      skip_function(toks, pos);
      continue;
    }
    if (d == ".func") { ++pos; declare_function(toks, pos, is_extern); continue; }
    if (d == ".global") { ++pos; parse_variable(toks, pos, space::global, is_extern); continue; }
    if (d == ".const") { ++pos; parse_variable(toks, pos, space::constant, is_extern); continue; }
    if (d == ".shared") { ++pos; parse_variable(toks, pos, space::shared, is_extern); continue; }
    fail(name_, toks[pos].line, "unsupported module directive " + d);
  }
}

}  // namespace

std::unique_ptr<module> module::parse(std::string_view ptx, std::string source_name) {
  auto m = std::make_unique<module_impl>(std::move(source_name));
  m->parse(ptx);
  return m;
}

std::string demangled(const std::string& name) {
  int status = 0;
  const std::unique_ptr<char, void (*)(void*)> text(abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status),
                                                    std::free);
  return status == 0 && text ? text.get() : name;  // extern "C" names stay as they are
}

std::string kernel::line_text(uint32_t ptx_line) const {
  std::string text = "line " + std::to_string(ptx_line);
  const auto it = std::lower_bound(source_lines.begin(), source_lines.end(), ptx_line,
                                   [](const source_line& s, uint32_t l) { return s.ptx_line < l; });
  if (it == source_lines.end() || it->ptx_line != ptx_line) return text;
  const std::string file = it->file < source_files.size() ? source_files[it->file] : "file " + std::to_string(it->file);
  return text + " (" + file + ":" + std::to_string(it->line) + ")";
}

}  // namespace emu
