// Device memory: host allocations recorded in an interval map, so that each emulated global
// access is checked against the live allocations, each with a bitmap of the bytes written since
// cudaMalloc (initcheck); and the generic-address windows of shared, local and parameter
// memory, reserved (never accessible) so that no allocation can overlap them.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "machine.hpp"

namespace emu {
namespace {

// begin -> the allocation. Never destroyed: a cudaFree from a static destructor may still ask.
std::map<uint64_t, allocation>& allocations() {
  static auto* live = new std::map<uint64_t, allocation>;
  return *live;
}

}  // namespace

const address_windows& windows() {
  static const address_windows w = [] {
    constexpr uint64_t shared_size = uint64_t(1) << 24, local_size = uint64_t(1) << 24, param_size = uint64_t(1) << 16;
    void* base = mmap(nullptr, shared_size + local_size + param_size, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
      std::fprintf(stderr, "beam emulator: cannot reserve the generic-address windows\n");
      std::abort();
    }
    const uint64_t b = reinterpret_cast<uint64_t>(base);
    return address_windows{b, shared_size, b + shared_size, local_size, b + shared_size + local_size, param_size};
  }();
  return w;
}

void* device_allocate(size_t bytes) {
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded == 0 ? 256 : rounded);
  if (p == nullptr) return nullptr;
  const uint64_t begin = reinterpret_cast<uint64_t>(p);
  allocation& a = allocations()[begin];
  a.begin = begin;
  a.end = begin + bytes;
  a.written.assign((bytes + 63) / 64, 0);
  return p;
}

bool device_free(void* ptr) {
  const auto it = allocations().find(reinterpret_cast<uint64_t>(ptr));
  if (it == allocations().end()) return false;
  allocations().erase(it);
  std::free(ptr);
  return true;
}

allocation* find_allocation(uint64_t address, uint64_t bytes) {
  auto& live = allocations();
  auto it = live.upper_bound(address);
  if (it == live.begin()) return nullptr;
  --it;
  if (address + bytes > it->second.end || address + bytes < address) return nullptr;
  return &it->second;
}

void allocation::mark_written(uint64_t address, uint64_t bytes) {
  uint64_t i = address - begin;
  const uint64_t last = i + bytes;
  for (; i < last && i % 64 != 0; ++i) written[i / 64] |= uint64_t(1) << (i % 64);
  for (; i + 64 <= last; i += 64) written[i / 64] = ~uint64_t(0);
  for (; i < last; ++i) written[i / 64] |= uint64_t(1) << (i % 64);
}

void allocation::mark_kernel_written(uint64_t id, uint64_t address, uint64_t bytes) {
  std::vector<uint64_t>& bits = kernel_written[id % 2];
  if (kernel_writer[id % 2] != id) {  // this launch's first store here
    bits.assign((end - begin + 63) / 64, 0);
    kernel_writer[id % 2] = id;
  }
  for (uint64_t i = address - begin; i < address - begin + bytes; ++i) bits[i / 64] |= uint64_t(1) << (i % 64);
}

uint64_t allocation::first_kernel_written(uint64_t id, uint64_t address, uint64_t bytes) const {
  if (id == 0 || kernel_writer[id % 2] != id) return 0;
  const std::vector<uint64_t>& bits = kernel_written[id % 2];
  for (uint64_t i = address - begin; i < address - begin + bytes; ++i)
    if (bits[i / 64] >> (i % 64) & 1) return begin + i;
  return 0;
}

uint64_t allocation::first_unwritten(uint64_t address, uint64_t bytes) const {
  for (uint64_t i = address - begin, last = i + bytes; i < last; ++i)
    if (!(written[i / 64] >> (i % 64) & 1)) return begin + i;
  return 0;
}

void mark_device_written(const void* ptr, size_t bytes) {
  if (allocation* a = find_allocation(reinterpret_cast<uint64_t>(ptr), bytes)) a->mark_written(reinterpret_cast<uint64_t>(ptr), bytes);
}

bool device_range_valid(const void* ptr, size_t bytes) {
  return find_allocation(reinterpret_cast<uint64_t>(ptr), bytes) != nullptr;
}

}  // namespace emu
