// The fatbinary that nvcc embeds in every object with device code: a list of entries, each
// PTX text or an ELF (SASS) image for one architecture. The emulator runs the PTX entry of
// the active device model's virtual architecture.
//
// Layout (little-endian; found by reading nvcc 13 output, consistent with public readers):
//   wrapper (what __cudaRegisterFatBinary receives), 24 bytes:
//     0x00 u32 magic 0x466243b1   0x04 u32 version (1)   0x08 pointer to the fatbinary
//     0x10 pointer (0 for version 1; rdc prelinked fatbinaries otherwise)
//   fatbinary header, 16 bytes:
//     0x00 u32 magic 0xBA55ED50   0x04 u16 version (1)   0x06 u16 header size (16)
//     0x08 u64 size of the entries that follow the header
//   entry header (64 bytes for ELF, 80 for PTX), then its payload:
//     0x00 u16 kind (1 PTX, 2 ELF)   0x02 u16 (0x0101)   0x04 u32 entry header size
//     0x08 u64 payload size as stored (padded to 8 bytes)
//     0x10 u32 compressed size (0 when not compressed)   0x14 u32 (0x40 for PTX)
//     0x18 u16 minor, 0x1a u16 major version (PTX ISA version, e.g. 9.0; ELF 1.8)
//     0x1c u32 arch (80, 90, ...)   0x20 u32, 0x24 u32 object name offset and length
//     0x28 u64 flags: 0x1 64-bit, 0x2 debug, 0x10 Linux, 0x2000 LZ4, 0x8000 Zstandard,
//                     0x100000 arch-specific ('a', e.g. sm_90a)
//     0x30 u64 (0)   0x38 u64 uncompressed size (when compressed)
// The PTX text is stored with comments removed and blanks collapsed, line by line: its line
// numbers are those of the .ptx file that `nvcc --keep` writes. nvcc 13 compresses PTX by
// default (Zstandard; LZ4 with --compress-mode=speed); --no-compress stores it as text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace emu {

//! One entry of a fatbinary.
struct fatbin_entry {
  static constexpr uint16_t ptx = 1, elf = 2;  //!< values of `kind`
  uint16_t kind = 0;
  int arch = 0;                //!< 80 for compute_80 and sm_80, 90 for compute_90a, ...
  bool arch_specific = false;  //!< the 'a' suffix: compute_90a, sm_90a
  bool compressed = false;
  //! Uncompressed PTX: the text, without the NUL padding. Otherwise the payload as stored.
  std::string_view data;
  uint64_t flags = 0;             //!< the entry's flag word, as stored
  size_t uncompressed_bytes = 0;  //!< when compressed
};

//! The entries of the fatbinary that an nvcc wrapper (`__fatDeviceText`, the argument of
//! `__cudaRegisterFatBinary`) points to. Throws std::runtime_error on a wrapper or
//! fatbinary it cannot read (bad magic, unknown version, an entry running past the end).
std::vector<fatbin_entry> read_fatbin(const void* wrapper);

//! The PTX text of a PTX entry, decompressed if needed: LZ4 here, Zstandard through the
//! system's libzstd.so.1 (loaded on first use). Throws std::runtime_error, advising a build
//! with `nvcc --no-compress`, when it cannot decompress.
std::string ptx_text(const fatbin_entry& entry);

//! "compute_80", "compute_90a" (PTX) or "sm_80", "sm_90a" (ELF): for messages.
std::string arch_name(const fatbin_entry& entry);

}  // namespace emu
