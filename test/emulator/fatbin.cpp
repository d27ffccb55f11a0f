// Reading nvcc's fatbinaries (layout in fatbin.hpp) and decompressing their PTX.
#include "fatbin.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace emu {
namespace {

constexpr uint32_t wrapper_magic = 0x466243b1, fatbin_magic = 0xBA55ED50;
constexpr uint64_t flag_lz4 = 0x2000, flag_zstd = 0x8000, flag_arch_specific = 0x100000;

template <class T>
T load(const unsigned char* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

//! An LZ4 block (no frame): sequences of a token, literals, a 2-byte offset and a match.
std::string lz4_decompress(std::string_view in, size_t out_bytes) {
  std::string out;
  out.reserve(out_bytes);
  size_t i = 0;
  const auto length = [&](size_t base) {  // 15 continues in bytes until one below 255
    if (base != 15) return base;
    unsigned char b = 0;
    do {
      if (i >= in.size()) throw std::runtime_error("truncated LZ4 length");
      b = static_cast<unsigned char>(in[i++]);
      base += b;
    } while (b == 255);
    return base;
  };
  while (i < in.size()) {
    const unsigned token = static_cast<unsigned char>(in[i++]);
    const size_t literals = length(token >> 4);
    if (literals > in.size() - i) throw std::runtime_error("LZ4 literals past the end of the input");
    out.append(in.substr(i, literals));
    i += literals;
    if (i == in.size()) break;  // the last sequence has no match
    if (in.size() - i < 2) throw std::runtime_error("truncated LZ4 offset");
    const size_t offset = load<uint16_t>(reinterpret_cast<const unsigned char*>(in.data() + i));
    i += 2;
    if (offset == 0 || offset > out.size()) throw std::runtime_error("LZ4 offset outside the output");
    const size_t match = length(token & 15) + 4;
    for (size_t k = 0, from = out.size() - offset; k < match; ++k) out.push_back(out[from + k]);  // may overlap
  }
  if (out.size() != out_bytes) throw std::runtime_error("LZ4 output of the wrong size");
  return out;
}

//! Zstandard through the system library: ZSTD_decompress and ZSTD_isError of libzstd 1.x.
std::string zstd_decompress(std::string_view in, size_t out_bytes) {
  using decompress_fn = size_t (*)(void*, size_t, const void*, size_t);
  using is_error_fn = unsigned (*)(size_t);
  static void* const library = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) throw std::runtime_error("libzstd.so.1 is not available to decompress it");
  const auto decompress = reinterpret_cast<decompress_fn>(dlsym(library, "ZSTD_decompress"));
  const auto is_error = reinterpret_cast<is_error_fn>(dlsym(library, "ZSTD_isError"));
  if (decompress == nullptr || is_error == nullptr) throw std::runtime_error("libzstd.so.1 lacks ZSTD_decompress");
  std::string out(out_bytes, '\0');
  const size_t written = decompress(out.data(), out.size(), in.data(), in.size());
  if (is_error(written) || written != out_bytes) throw std::runtime_error("Zstandard data that does not decompress");
  return out;
}

}  // namespace

std::vector<fatbin_entry> read_fatbin(const void* wrapper) {
  const auto* w = static_cast<const unsigned char*>(wrapper);
  if (load<uint32_t>(w) != wrapper_magic) throw std::runtime_error("not an nvcc fatbinary wrapper (bad magic)");
  if (load<uint32_t>(w + 4) != 1) {
    throw std::runtime_error("fatbinary wrapper version " + std::to_string(load<uint32_t>(w + 4)) +
                             " (relocatable device code, -rdc) is not supported");
  }
  const auto* base = load<const unsigned char*>(w + 8);
  if (load<uint32_t>(base) != fatbin_magic) throw std::runtime_error("not a fatbinary (bad magic)");
  const uint16_t header_bytes = load<uint16_t>(base + 6);
  const unsigned char* p = base + header_bytes;
  const unsigned char* const end = p + load<uint64_t>(base + 8);
  std::vector<fatbin_entry> entries;
  while (p < end) {
    if (end - p < 64) throw std::runtime_error("truncated fatbinary entry header");
    const uint32_t entry_header_bytes = load<uint32_t>(p + 4);
    const uint64_t payload_bytes = load<uint64_t>(p + 8);
    const uint64_t left = uint64_t(end - p);
    if (entry_header_bytes < 64 || entry_header_bytes > left || payload_bytes > left - entry_header_bytes) {
      throw std::runtime_error("fatbinary entry running past the end of the fatbinary");
    }
    fatbin_entry e;
    e.kind = load<uint16_t>(p);
    e.arch = int(load<uint32_t>(p + 0x1c));
    e.flags = load<uint64_t>(p + 0x28);
    e.arch_specific = (e.flags & flag_arch_specific) != 0;
    e.compressed = (e.flags & (flag_lz4 | flag_zstd)) != 0;
    const char* payload = reinterpret_cast<const char*>(p + entry_header_bytes);
    if (e.compressed) {
      e.data = std::string_view(payload, std::min<uint64_t>(load<uint32_t>(p + 0x10), payload_bytes));
      e.uncompressed_bytes = load<uint64_t>(p + 0x38);
    } else {
      e.data = std::string_view(payload, payload_bytes);
      if (e.kind == fatbin_entry::ptx) e.data = e.data.substr(0, e.data.find('\0'));
    }
    entries.push_back(e);
    p += entry_header_bytes + payload_bytes;
  }
  return entries;
}

std::string ptx_text(const fatbin_entry& entry) {
  if (!entry.compressed) return std::string(entry.data);
  try {
    std::string text = (entry.flags & flag_zstd) != 0 ? zstd_decompress(entry.data, entry.uncompressed_bytes)
                                                      : lz4_decompress(entry.data, entry.uncompressed_bytes);
    return text.substr(0, text.find('\0'));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("cannot decompress the " + arch_name(entry) + " PTX of a fatbinary: " + e.what() +
                             "; build the CUDA sources with `nvcc --no-compress`");
  }
}

std::string arch_name(const fatbin_entry& entry) {
  return (entry.kind == fatbin_entry::ptx ? "compute_" : "sm_") + std::to_string(entry.arch) +
         (entry.arch_specific ? "a" : "");
}

}  // namespace emu
