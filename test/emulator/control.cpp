// Control flow (PTX ISA 9.7.12): bra, exit, trap, and calls of device functions ("call", "ret";
// 7 "Abstracting the ABI") with the two functions of the CUDA runtime that nvcc's code calls: vprintf (device printf) and
// __assertfail (device assert).
//
// A call passes its arguments by value into the callee's parameters, in a new frame on the
// thread's stack (local memory), and saves the callee's registers, which the return restores
// (so that a recursive activation has registers of its own); ret copies the return value into
// the caller's frame or register. .local addresses are relative to the current frame; generic
// ones name the stack, so a pointer into a caller's frame stays valid in its callees.
//
// printf (CUDA Programming Guide, "Formatted Output"): the format and the argument buffer are
// read when the thread calls it and formatted on the host, one conversion at a time with the
// host's C library, as the CUDA runtime does; the text waits in a buffer until the runtime writes
// it out where CUDA flushes its printf buffer (a launch, a synchronisation, a blocking copy,
// cudaDeviceReset), each call's text whole, in the order the threads called printf.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "decode.hpp"
#include "machine.hpp"

namespace emu {
namespace {

//! What kernels printed and the runtime has not yet written: (stderr?, text).
std::vector<std::pair<bool, std::string>>& device_output() {
  static auto* pending = new std::vector<std::pair<bool, std::string>>;
  return *pending;
}

//! The bytes of a call's argument `o` as a parameter of `size` bytes: a .param variable of the
//! caller's frame, or a register or immediate (at most 8 bytes).
void argument_bytes(const block_state& b, const thread_state& t, const operand& o, uint8_t* to, size_t size) {
  if (o.k == operand::kind::address) {
    std::memcpy(to, t.stack + t.frame + o.imm, size);
    return;
  }
  const uint64_t v = value(b, t, o);
  std::memset(to, 0, size);
  std::memcpy(to, &v, std::min<size_t>(size, 8));
}

uint64_t argument(const block_state& b, const thread_state& t, const instruction& in, uint32_t i, size_t size) {
  uint64_t v = 0;
  argument_bytes(b, t, b.k.vector_elements[in.ops[2].first + i], reinterpret_cast<uint8_t*>(&v), size);
  return v;
}

//! Stores a return value of `size` bytes into the call's return operand, if it has one (the
//! current frame is the caller's).
void store_result(thread_state& t, const block_state& b, const instruction& call, const uint8_t* value_bytes, size_t size) {
  if (call.ops[0].count == 0) return;
  const operand& o = b.k.vector_elements[call.ops[0].first];
  if (o.k == operand::kind::address) {
    std::memcpy(t.stack + t.frame + o.imm, value_bytes, size);
    return;
  }
  uint64_t v = 0;
  std::memcpy(&v, value_bytes, std::min<size_t>(size, 8));
  set(t, o, v);
}

//! The NUL-terminated string at generic address `address` (at most `limit` bytes), read through
//! the checked memory access.
std::string device_string(block_state& b, thread_state& t, const instruction& in, uint64_t address,
                          size_t limit = SIZE_MAX) {
  std::string s;
  for (; s.size() < limit; ++address) {
    const char c = static_cast<char>(*access(b, t, in, space::generic, address, 1, 1, false));
    if (c == '\0') break;
    s += c;
  }
  return s;
}

// printf's format (CUDA Programming Guide, "Format Specifiers"): %[flags][width][.precision][size]type,
// flags '#' ' ' '0' '+' '-', width '*' or digits, precision digits, size h, l or ll, type one of
// cdiouxXpeEfgGaAs, and %%. The arguments follow each other in the buffer at their alignment,
// with C's promotions: an int for c, d, i, o, u, x, X (a long long with l or ll), a double for
// the floating types, a pointer for s and p; a '*' width is an int. At most 32 arguments are
// read: a conversion after them is printed as it stands. Anything else that follows a '%' is
// printed as it stands too. Returns the number of arguments read.
int format_printf(block_state& b, thread_state& t, const instruction& in, uint64_t format, uint64_t args,
                  std::string& out) {
  const std::string f = device_string(b, t, in, format);
  int parsed = 0;
  uint64_t offset = 0;
  const auto next_argument = [&](uint32_t bytes) {
    offset = (offset + bytes - 1) / bytes * bytes;
    uint64_t v = 0;
    std::memcpy(&v, access(b, t, in, space::generic, args + offset, bytes, bytes, false), bytes);
    offset += bytes;
    ++parsed;
    return v;
  };
  char text[512];
  for (size_t i = 0; i < f.size();) {
    if (f[i] != '%') {
      out += f[i++];
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '%') {
      out += '%';
      i += 2;
      continue;
    }
    const size_t start = i++;
    std::string spec = "%";
    while (i < f.size() && std::strchr("#0 +-", f[i])) spec += f[i++];
    const size_t width_at = spec.size();
    bool star = false;
    if (i < f.size() && f[i] == '*') {
      star = true;
      ++i;
    } else {
      while (i < f.size() && std::isdigit(static_cast<unsigned char>(f[i]))) spec += f[i++];
    }
    size_t precision = SIZE_MAX;
    if (i < f.size() && f[i] == '.') {
      const size_t dot = i++;
      while (i < f.size() && std::isdigit(static_cast<unsigned char>(f[i]))) ++i;
      precision = std::strtoul(f.c_str() + dot + 1, nullptr, 10);
      spec += "." + std::to_string(precision);
    }
    std::string size;
    while (i < f.size() && (f[i] == 'h' || f[i] == 'l') && size.size() < 2) size += f[i++];
    const char type = i < f.size() ? f[i] : '\0';
    const bool integer = type && std::strchr("cdiouxX", type), floating = type && std::strchr("eEfgGaA", type);
    const bool pointer = type == 's' || type == 'p';
    if (!(integer || floating || pointer) || parsed + (star ? 2 : 1) > 32) {
      out.append(f, start, i - start);  // not a conversion, or beyond the 32 arguments: as it stands
      continue;
    }
    ++i;
    if (star) spec.insert(width_at, std::to_string(static_cast<int32_t>(next_argument(4))));
    const bool wide = size == "l" || size == "ll";
    const std::string conversion = spec + size + type;
    if (integer) {
      const uint64_t v = next_argument(wide ? 8 : 4);
      if (wide) std::snprintf(text, sizeof text, conversion.c_str(), static_cast<long long>(v));
      else std::snprintf(text, sizeof text, conversion.c_str(), static_cast<int>(v));
    } else if (floating) {
      double d;
      const uint64_t v = next_argument(8);
      std::memcpy(&d, &v, 8);
      std::snprintf(text, sizeof text, conversion.c_str(), d);
    } else if (type == 'p') {
      std::snprintf(text, sizeof text, conversion.c_str(), reinterpret_cast<void*>(next_argument(8)));
    } else {
      const uint64_t p = next_argument(8);
      const std::string s = p == 0 ? std::string("(null)") : device_string(b, t, in, p, precision);
      std::vector<char> buffer(s.size() + 512);
      std::snprintf(buffer.data(), buffer.size(), conversion.c_str(), s.c_str());
      out += buffer.data();
      continue;
    }
    out += text;
  }
  return parsed;
}

// vprintf(format, args) returns "the number of arguments parsed" (CUDA Programming Guide,
// "Formatted Output"), -1 for a null format.
void call_vprintf(block_state& b, thread_state& t, const instruction& in) {
  const uint64_t format = argument(b, t, in, 0, 8), args = argument(b, t, in, 1, 8);
  std::string text;
  const int32_t parsed = format == 0 ? -1 : format_printf(b, t, in, format, args, text);
  device_output().emplace_back(false, std::move(text));
  store_result(t, b, in, reinterpret_cast<const uint8_t*>(&parsed), 4);
}

// __assertfail(message, file, line, function, charSize): the thread's message, in the CUDA
// Programming Guide's format ("Assertion"), goes to stderr where the runtime flushes the printf
// buffer; the launch fails with cudaErrorAssert.
[[noreturn]] void call_assertfail(block_state& b, thread_state& t, const instruction& in) {
  const std::string message = device_string(b, t, in, argument(b, t, in, 0, 8));
  const std::string file = device_string(b, t, in, argument(b, t, in, 1, 8));
  const uint32_t line = static_cast<uint32_t>(argument(b, t, in, 2, 4));
  const std::string function = device_string(b, t, in, argument(b, t, in, 3, 8));
  const std::string where = file + ":" + std::to_string(line) + ": " + function;
  const std::string assertion = "Assertion `" + message + "` failed.";
  device_output().emplace_back(true, where + ": block: [" + std::to_string(b.ctaid[0]) + "," + std::to_string(b.ctaid[1]) +
                                         "," + std::to_string(b.ctaid[2]) + "], thread: [" + std::to_string(t.tid[0]) +
                                         "," + std::to_string(t.tid[1]) + "," + std::to_string(t.tid[2]) + "] " +
                                         assertion + "\n");
  fail_launch(b, &t, &in, cudaErrorAssert, "assert", where + ": " + assertion);
}

// call: the arguments into the callee's parameters in a new frame, the callee's registers saved.
void exec_call(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t callee = payload<call_payload>(in).function;
  const device_function& f = b.k.functions[callee];
  if (f.kind == device_function::builtin::vprintf) return call_vprintf(b, t, in);
  if (f.kind == device_function::builtin::assertfail) call_assertfail(b, t, in);
  const uint32_t base = (t.stack_top + 15) / 16 * 16;
  if (t.calls.size() == max_call_depth || base + f.frame_bytes > b.stack_bytes)
    fail_launch(b, &t, &in, cudaErrorHardwareStackError, "stack overflow",
                "call of " + f.name + " with " + std::to_string(t.calls.size()) + " calls in progress (at most " +
                    std::to_string(max_call_depth) + ", in " + std::to_string(b.stack_bytes) +
                    " bytes of local memory per thread)");
  const operand& arguments = in.ops[2];
  for (uint32_t a = 0; a < arguments.count; ++a)
    argument_bytes(b, t, b.k.vector_elements[arguments.first + a], t.stack + base + f.params[a].offset, f.params[a].size);
  t.calls.push_back({t.pc, callee, t.frame, t.stack_top, t.saved_registers.size()});
  for (uint32_t i = 0; i < f.register_count; ++i) t.saved_registers.push_back(reg(t, int32_t(f.first_register + i)));
  if (t.ready) t.saved_ready.insert(t.saved_ready.end(), t.ready + f.first_register, t.ready + f.first_register + f.register_count);
  t.frame = base;
  t.stack_top = static_cast<uint32_t>(base + f.frame_bytes);
  t.pc = f.entry;
}

// ret: from a function, its return value to the caller and its registers restored; from the
// entry, the thread exits.
void exec_ret(block_state& b, thread_state& t, const instruction&) {
  if (t.calls.empty()) {
    t.state = thread_state::run::exited;
    return;
  }
  const call_frame c = t.calls.back();
  t.calls.pop_back();
  const device_function& f = b.k.functions[c.function];
  const uint8_t* result = t.stack + t.frame + f.result.offset;
  for (uint32_t i = 0; i < f.register_count; ++i) reg(t, int32_t(f.first_register + i)) = t.saved_registers[c.saved + i];
  t.saved_registers.resize(c.saved);
  if (t.ready) {
    std::copy(t.saved_ready.begin() + std::ptrdiff_t(c.saved), t.saved_ready.end(), t.ready + f.first_register);
    t.saved_ready.resize(c.saved);
  }
  t.frame = c.caller_frame;
  t.stack_top = c.caller_top;
  t.pc = c.return_pc;
  store_result(t, b, b.k.code[c.return_pc - 1], result, f.result.size);
}

void exec_bra(block_state&, thread_state& t, const instruction& in) { t.pc = static_cast<uint32_t>(in.ops[0].imm); }

void exec_exit(block_state&, thread_state& t, const instruction&) { t.state = thread_state::run::exited; }

void exec_trap(block_state& b, thread_state& t, const instruction& in) {
  fail_launch(b, &t, &in, cudaErrorLaunchFailure, "trap", "the kernel executed trap");
}

void decode_bra(instruction& in, const kernel&) {
  if (in.ops[0].k != operand::kind::label) unsupported(in, "a branch target other than a label (brx.idx)");
  in.exec = exec_bra;
  in.branch = true;
}
void decode_call(instruction& in, const kernel&) { in.exec = exec_call; }  // the callee is linked later
void decode_ret(instruction& in, const kernel&) { in.exec = exec_ret; }
void decode_exit(instruction& in, const kernel&) { in.exec = exec_exit; }
void decode_trap(instruction& in, const kernel&) { in.exec = exec_trap; }

}  // namespace

std::vector<opcode_row> control_rows() {
  const auto control = profile::instruction_class::control;
  const auto uni = any_of({{"uni"}});
  return {
      {"bra", uni, 1, 1, decode_bra, control},
      {"call", uni, 3, 3, decode_call, control},
      {"ret", uni, 0, 0, decode_ret, control},
      {"exit", {}, 0, 0, decode_exit, control},
      {"trap", {}, 0, 0, decode_trap, control},
  };
}

namespace {

//! The registers an instruction reads and writes, as a liveness analysis sees them. A destination
//! is read too where its old value can survive the instruction: under a guard (a guard that is off
//! writes nothing) and in wgmma.mma_async, which accumulates into it.
struct register_effects {
  std::vector<int32_t> reads, writes;
};

void collect_registers(const kernel& k, const operand& o, std::vector<int32_t>& into) {
  if ((o.k == operand::kind::reg || o.k == operand::kind::address) && o.reg >= 0) into.push_back(o.reg);
  if (o.k == operand::kind::vector)
    for (uint32_t i = 0; i < o.count; ++i) collect_registers(k, k.vector_elements[o.first + i], into);
}

register_effects effects_of(const kernel& k, const instruction& in) {
  register_effects e;
  const bool call = in.opcode == "call";
  const bool keeps_old = in.guard >= 0 || in.opcode == "wgmma";
  if (in.guard >= 0) e.reads.push_back(in.guard);
  for (int i = 0; i < in.op_count; ++i) {
    const bool destination = i == 0 && (in.has_destination || call);  // a call's return register
    collect_registers(k, in.ops[i], destination ? e.writes : e.reads);
  }
  if (in.pair >= 0) e.writes.push_back(in.pair);
  if (keeps_old) e.reads.insert(e.reads.end(), e.writes.begin(), e.writes.end());
  return e;
}

//! Whether control never goes on to the next instruction (an unguarded bra, ret, exit or trap).
bool ends_flow(const instruction& in) {
  return in.guard < 0 && (in.opcode == "bra" || in.opcode == "ret" || in.opcode == "exit" || in.opcode == "trap");
}

}  // namespace

// Backward liveness over basic blocks, with bit sets of the kernel's register slots: live-in(B) =
// reads(B) ∪ (live-out(B) − writes(B)), live-out(B) = ∪ live-in(successors), to a fixed point. A
// call's successor is the next instruction (the callee's registers are its own, saved and restored
// around it); a body that falls off its end into the next one only makes more registers live.
std::vector<int32_t> registers_read_before_written(const kernel& k) {
  const size_t n = k.code.size(), words = (size_t(k.register_count) + 63) / 64;
  if (n == 0) return {};
  // Basic blocks: leaders are the entries, branch targets and instructions after a branch or an end.
  std::vector<bool> leader(n + 1, false);
  leader[0] = true;
  for (const device_function& f : k.functions)
    if (f.kind == device_function::builtin::none && f.entry < n) leader[f.entry] = true;
  const auto target = [&](const instruction& in) { return std::min<size_t>(size_t(in.ops[0].imm), n); };  // n: the end
  for (size_t pc = 0; pc < n; ++pc) {
    const instruction& in = k.code[pc];
    if (in.opcode == "bra") leader[target(in)] = true;
    if (in.opcode == "bra" || ends_flow(in)) leader[pc + 1] = true;
  }
  std::vector<uint32_t> block_of(n), starts;
  for (size_t pc = 0; pc < n; ++pc) {
    if (leader[pc]) starts.push_back(uint32_t(pc));
    block_of[pc] = uint32_t(starts.size() - 1);
  }
  const size_t blocks = starts.size();
  std::vector<uint64_t> reads(blocks * words, 0), writes(blocks * words, 0), live_in(blocks * words, 0);
  std::vector<std::vector<uint32_t>> successors(blocks);
  const auto bit = [](const std::vector<uint64_t>& set, size_t block, size_t words_per, int32_t r) -> bool {
    return set[block * words_per + size_t(r) / 64] >> (r % 64) & 1;
  };
  for (size_t bl = 0; bl < blocks; ++bl) {
    const size_t end = bl + 1 < blocks ? starts[bl + 1] : n;
    for (size_t pc = starts[bl]; pc < end; ++pc) {
      const register_effects e = effects_of(k, k.code[pc]);
      for (const int32_t r : e.reads)
        if (!bit(writes, bl, words, r)) reads[bl * words + size_t(r) / 64] |= uint64_t(1) << (r % 64);
      for (const int32_t r : e.writes) writes[bl * words + size_t(r) / 64] |= uint64_t(1) << (r % 64);
    }
    const instruction& last = k.code[end - 1];
    if (last.opcode == "bra" && target(last) < n) successors[bl].push_back(block_of[target(last)]);
    if (!ends_flow(last) && end < n) successors[bl].push_back(block_of[end]);
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t bl = blocks; bl-- > 0;) {
      for (size_t w = 0; w < words; ++w) {
        uint64_t out = 0;
        for (const uint32_t s : successors[bl]) out |= live_in[s * words + w];
        const uint64_t in = reads[bl * words + w] | (out & ~writes[bl * words + w]);
        changed |= in != live_in[bl * words + w];
        live_in[bl * words + w] = in;
      }
    }
  }
  std::vector<int32_t> result;
  for (int32_t r = 0; r < int32_t(k.register_count); ++r) {
    bool live = bit(live_in, 0, words, r);
    for (const device_function& f : k.functions)
      if (f.kind == device_function::builtin::none && f.entry < n) live |= bit(live_in, block_of[f.entry], words, r);
    if (live) result.push_back(r);
  }
  return result;
}

void flush_device_output() {
  for (const auto& [to_stderr, text] : device_output()) std::fwrite(text.data(), 1, text.size(), to_stderr ? stderr : stdout);
  if (device_output().empty()) return;
  device_output().clear();
  std::fflush(stdout);
  std::fflush(stderr);
}

}  // namespace emu
