// PTX text -> decoded kernels. A hand-written tokenizer and recursive-descent parser for the
// subset of PTX that nvcc emits for kernels (module directives, variables with initialisers,
// .entry with parameters and performance directives, scoped .reg/.shared/.local
// declarations, labels, guarded instructions). Anything else is an error naming the line.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>

#include "decode.hpp"
#include "ptx.hpp"

namespace emu {

int type_bytes(ptype t) {
  switch (t) {
    case ptype::pred: return 1;
    case ptype::b8: case ptype::u8: case ptype::s8: return 1;
    case ptype::b16: case ptype::u16: case ptype::s16: case ptype::f16: case ptype::bf16: return 2;
    case ptype::b32: case ptype::u32: case ptype::s32: case ptype::f32: case ptype::f16x2:
    case ptype::bf16x2: return 4;
    case ptype::b64: case ptype::u64: case ptype::s64: case ptype::f64: return 8;
    case ptype::b128: return 16;
    case ptype::none: return 0;
  }
  return 0;
}

bool type_signed(ptype t) {
  return t == ptype::s8 || t == ptype::s16 || t == ptype::s32 || t == ptype::s64;
}

bool type_float(ptype t) {
  return t == ptype::f16 || t == ptype::bf16 || t == ptype::f32 || t == ptype::f64;
}

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
      {"%is_explicit_cluster", special::is_explicit_cluster}};
  return names;
}

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

class module_impl;

// Parses one .entry body into a kernel.
class function_parser {
 public:
  function_parser(module_impl& m, const std::vector<token>& toks, size_t& pos, kernel& k)
      : mod_(m), toks_(toks), pos_(pos), k_(k) {}
  void parse_body();

 private:
  struct scope {
    int parent;
    std::unordered_map<std::string, int32_t> regs;
    std::unordered_map<std::string, uint32_t> labels;
  };
  struct label_use {
    size_t instr;
    int op;
    int scope;
    std::string name;
    uint32_t line;
  };
  struct dynamic_use {
    size_t instr;
    int op;
    int element;  // -1: the operand itself, else a vector element index
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
  operand parse_operand(instruction& in, int op_index, int element);
  bool resolve_register(const std::string& name, int32_t* slot) const;
  bool resolve_symbol(const std::string& name, uint64_t* address, bool* dynamic) const;

  module_impl& mod_;
  const std::vector<token>& toks_;
  size_t& pos_;
  kernel& k_;
  std::vector<scope> scopes_;
  int current_ = -1;
  std::vector<label_use> label_uses_;
  std::vector<dynamic_use> dynamic_uses_;
  operand coordinates_;  // the {...} of a tensor address just parsed, not yet placed
  std::unordered_map<std::string, uint64_t> locals_;   // name -> shared/local offset
  std::unordered_map<std::string, space> local_space_;
  std::unordered_map<std::string, uint64_t> params_;   // name -> param offset
  friend class module_impl;
};

class module_impl final : public module {
 public:
  explicit module_impl(std::string name) : name_(std::move(name)) {}
  ~module_impl() override {
    for (void* p : allocations_) device_free(p);
  }

  void parse(std::string_view text);

  const kernel* find_kernel(std::string_view mangled) const override {
    const auto it = kernels_.find(std::string(mangled));
    return it == kernels_.end() ? nullptr : it->second.get();
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

 private:
  void parse_variable(const std::vector<token>& toks, size_t& pos, space s, bool is_extern);
  void parse_entry(const std::vector<token>& toks, size_t& pos);
  void skip_function(const std::vector<token>& toks, size_t& pos);

  std::string name_;
  int target_ = 0;
  std::unordered_map<std::string, std::unique_ptr<kernel>> kernels_;
  std::unordered_map<std::string, ptx_variable> globals_;  // .global, .const and module .shared
  std::vector<void*> allocations_;
};

void function_parser::fail_here(const std::string& what) const {
  fail(mod_.name(), peek().line, what + " (in " + k_.info.name + ")");
}

bool function_parser::resolve_register(const std::string& name, int32_t* slot) const {
  for (int s = current_; s >= 0; s = scopes_[s].parent) {
    const auto it = scopes_[s].regs.find(name);
    if (it != scopes_[s].regs.end()) { *slot = it->second; return true; }
  }
  return false;
}

// A variable's address in its own space: param offset, shared/local offset, or absolute.
bool function_parser::resolve_symbol(const std::string& name, uint64_t* address, bool* dynamic) const {
  *dynamic = false;
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
      auto& self = const_cast<function_parser&>(*this);
      if (v->dynamic_shared) {
        self.locals_[name] = UINT64_MAX;
        self.k_.dynamic_shared_align = std::max(self.k_.dynamic_shared_align, v->align);
        *address = 0;
        *dynamic = true;
        return true;
      }
      self.k_.static_shared_bytes = align_up(self.k_.static_shared_bytes, v->align);
      self.locals_[name] = self.k_.static_shared_bytes;
      self.local_space_[name] = space::shared;
      *address = self.k_.static_shared_bytes;
      self.k_.static_shared_bytes += v->size;
      return true;
    }
    *address = v->address;
    return true;
  }
  return false;
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

// Function-scope .shared / .local: [.align n] .type name[ [n] ] ;
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
  } else {
    k_.local_bytes = align_up(k_.local_bytes, align);
    locals_[name] = k_.local_bytes;
    k_.local_bytes += bytes;
  }
  local_space_[name] = s;
}

void function_parser::parse_body() {
  expect("{");
  scopes_.push_back({-1, {}, {}});
  current_ = 0;
  int depth = 1;
  while (depth > 0) {
    const token& t = peek();
    if (t.k == token::kind::end) fail_here("unexpected end of module");
    if (t.k == token::kind::punct && t.text == "{") {
      next();
      scopes_.push_back({current_, {}, {}});
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
    if (t.k == token::kind::word && peek(1).k == token::kind::punct && peek(1).text == ":") {
      scopes_[current_].labels[t.text] = static_cast<uint32_t>(k_.code.size());
      pos_ += 2;
      continue;
    }
    if (t.k == token::kind::word && t.text == ".reg") { declare_registers(); continue; }
    if (t.k == token::kind::word && t.text == ".shared") { declare_variable(space::shared); continue; }
    if (t.k == token::kind::word && t.text == ".local") { declare_variable(space::local); continue; }
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
    if (!found) fail(mod_.name(), use.line, "undefined label " + use.name);
  }
  // Dynamic shared memory starts after the static variables, at its declared alignment.
  k_.static_shared_bytes = align_up(k_.static_shared_bytes, k_.dynamic_shared_align);
  for (const dynamic_use& use : dynamic_uses_) {
    operand& o = k_.code[use.instr].ops[use.op];
    operand& target = use.element < 0 ? o : k_.vector_elements[o.first + use.element];
    target.imm += k_.static_shared_bytes;
  }
  mark_accumulator_uses(k_);
  if (k_.code.empty() || k_.code.back().opcode != "ret") {
    instruction ret;  // falling off the end of an entry returns
    ret.opcode = "ret";
    ret.line = peek().line;
    decode_instruction(ret, k_);
    classify_for_profile(ret);
    k_.code.push_back(ret);
  }
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
        if (dynamic) dynamic_uses_.push_back({k_.code.size(), op_index, element});
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
    if (dynamic) dynamic_uses_.push_back({k_.code.size(), op_index, element});
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
  int count = 0;
  if (!accept(";")) {
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
  try {
    decode_instruction(in, k_);
    classify_for_profile(in);
  } catch (const std::exception& e) {
    fail(mod_.name(), in.line, std::string(e.what()) + " in " + op.text + " (" + k_.info.name + ")");
  }
  k_.code.push_back(std::move(in));
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

void module_impl::parse_entry(const std::vector<token>& toks, size_t& pos) {
  auto k = std::make_unique<kernel>();
  k->module_name = name_;
  k->info.name = toks[pos++].text;
  k->info.ptx_version = target_;
  function_parser fp(*this, toks, pos, *k);
  if (toks[pos].text == "(") {
    ++pos;
    size_t offset = 0;
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
      if (align == 0) align = type_bytes(t);
      offset = align_up(offset, align);
      fp.params_[pname] = offset;
      k->info.params.push_back({offset, count * type_bytes(t)});
      offset += count * type_bytes(t);
      if (toks[pos].text == ",") ++pos;
    }
    ++pos;
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
      do { ++pos; } while (toks[pos].text == "," && ++pos);
    } else if (d == ".noreturn" || d == ".explicitcluster") {
      ++pos;
    } else {
      fail(name_, toks[pos].line, "unsupported entry directive " + d);
    }
  }
  fp.parse_body();
  k->info.max_threads_per_block = limited ? max_threads : 1024;
  k->info.bounded_threads = limited;
  k->info.static_shared_bytes = k->static_shared_bytes;
  k->info.local_bytes = k->local_bytes;
  k->info.registers = static_cast<int>(std::min<uint32_t>(k->register_count, 255));
  kernels_[k->info.name] = std::move(k);
}

void module_impl::parse(std::string_view text) {
  const std::vector<token> toks = tokenize(text);
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
    if (d == ".entry") { ++pos; parse_entry(toks, pos); continue; }
    if (d == ".func") { ++pos; skip_function(toks, pos); continue; }
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

}  // namespace emu
