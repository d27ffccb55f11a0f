// Shared helpers for the PTX-emulator self-tests (test/emulator/tests/*.cu).
//
// These tests check the emulator (and, built natively, real hardware) against values worked
// out by hand from the PTX ISA document, or against small host functions that restate an ISA
// rule (the pseudo-code of an instruction's "Semantics" paragraph, a fragment-layout formula).
// Nothing here may come from the library under include/beam: the emulator is the oracle for
// the library's tests, so its own tests need an independent source of truth.
//
// Section numbers cited in the tests are those of PTX ISA 9.0 (CUDA 13.0), whose titles are
// quoted alongside so that a renumbered later edition can still be searched.
#pragma once

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace isa {

//! True when the runtime reports at least one device (the emulated runtime always does).
inline bool device_present() {
  int count = 0;
  const bool present = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  cudaGetLastError();  // cudaErrorNoDevice is not sticky, but leave nothing behind
  return present;
}

//! The device name starts with "beam emulated" under the emulator.
inline bool emulated() {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return false;
  return std::strncmp(prop.name, "beam emulated", 13) == 0;
}

//! Compute capability major*10+minor of device 0.
inline int compute_capability() {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return 0;
  return prop.major * 10 + prop.minor;
}

}  // namespace isa

//! First statement of every test case: without a device it reports the skip and returns.
#define ISA_REQUIRE_DEVICE()                  \
  do {                                        \
    if (!::isa::device_present()) {           \
      MESSAGE("skipped: no CUDA device");     \
      return;                                 \
    }                                         \
  } while (false)

#define ISA_CUDA(expr)                                                                   \
  do {                                                                                   \
    const cudaError_t isa_err_ = (expr);                                                 \
    REQUIRE_MESSAGE(isa_err_ == cudaSuccess, #expr " -> ", std::string(cudaGetErrorName(isa_err_)));  \
  } while (false)

//! After a launch: the launch itself and the kernel's execution both succeeded.
#define ISA_SYNC()                              \
  do {                                          \
    ISA_CUDA(cudaGetLastError());               \
    ISA_CUDA(cudaDeviceSynchronize());          \
  } while (false)

namespace isa {

//! Owning device array; every byte starts as 0xEE so that unwritten elements show.
template <class T>
class buffer {
 public:
  explicit buffer(size_t n) : n_(n) {
    ISA_CUDA(cudaMalloc(&p_, bytes()));
    ISA_CUDA(cudaMemset(p_, 0xEE, bytes()));
  }
  explicit buffer(const std::vector<T>& host) : buffer(host.size()) { upload(host); }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { cudaFree(p_); }

  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T) > 0 ? n_ * sizeof(T) : 1; }
  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == n_);
    ISA_CUDA(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> host() const {
    std::vector<T> out(n_);
    ISA_CUDA(cudaMemcpy(out.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline uint64_t bits(double f) {
  uint64_t u;
  std::memcpy(&u, &f, 8);
  return u;
}
inline float as_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline double as_f64(uint64_t u) {
  double f;
  std::memcpy(&f, &u, 8);
  return f;
}
inline bool is_nan_f32(uint32_t u) { return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0; }
inline bool is_nan_f64(uint64_t u) {
  return (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull && (u & 0x000fffffffffffffull) != 0;
}
inline bool is_nan_f16(uint16_t u) { return (u & 0x7c00u) == 0x7c00u && (u & 0x03ffu) != 0; }
inline bool is_nan_bf16(uint16_t u) { return (u & 0x7f80u) == 0x7f80u && (u & 0x007fu) != 0; }

//! Distance in units in the last place between two finite floats (0 for equal values).
inline int64_t ulp_distance(float a, float b) {
  auto ordered = [](float f) {
    const uint32_t u = bits(f);
    return (u & 0x80000000u) ? -int64_t(u & 0x7fffffffu) : int64_t(u);
  };
  const int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

//! Printable hex for failure messages.
inline std::string hex(uint64_t v) {
  char s[32];
  std::snprintf(s, sizeof s, "0x%llx", static_cast<unsigned long long>(v));
  return s;
}

// ---- one-thread-per-case drivers ---------------------------------------------------------
// kernel(a, b, d, n) / kernel(a, b, c, d, n) / kernel(a, d, n): thread i computes case i.

template <class T>
struct case2 {
  T a, b, expect;
};
template <class T>
struct case3 {
  T a, b, c, expect;
};

template <class T, class K>
void check_binary(const char* what, K kernel, const std::vector<case2<T>>& cases) {
  std::vector<T> a, b;
  for (auto& c : cases) a.push_back(c.a), b.push_back(c.b);
  ::isa::buffer<T> da(a), db(b), dd(cases.size());
  kernel<<<1, unsigned(cases.size())>>>(da.get(), db.get(), dd.get(), int(cases.size()));
  ISA_SYNC();
  const auto d = dd.host();
  for (size_t i = 0; i < cases.size(); ++i)
    CHECK_MESSAGE(uint64_t(d[i]) == uint64_t(cases[i].expect), std::string(what), " a=", ::isa::hex(uint64_t(cases[i].a)),
                  " b=", ::isa::hex(uint64_t(cases[i].b)), " got ", ::isa::hex(uint64_t(d[i])), " want ",
                  ::isa::hex(uint64_t(cases[i].expect)));
}

template <class T, class K>
void check_ternary(const char* what, K kernel, const std::vector<case3<T>>& cases) {
  std::vector<T> a, b, c;
  for (auto& x : cases) a.push_back(x.a), b.push_back(x.b), c.push_back(x.c);
  ::isa::buffer<T> da(a), db(b), dc(c), dd(cases.size());
  kernel<<<1, unsigned(cases.size())>>>(da.get(), db.get(), dc.get(), dd.get(), int(cases.size()));
  ISA_SYNC();
  const auto d = dd.host();
  for (size_t i = 0; i < cases.size(); ++i)
    CHECK_MESSAGE(uint64_t(d[i]) == uint64_t(cases[i].expect), std::string(what), " a=", ::isa::hex(uint64_t(cases[i].a)),
                  " b=", ::isa::hex(uint64_t(cases[i].b)), " c=", ::isa::hex(uint64_t(cases[i].c)), " got ",
                  ::isa::hex(uint64_t(d[i])), " want ", ::isa::hex(uint64_t(cases[i].expect)));
}

template <class TD, class TA, class K>
void check_unary(const char* what, K kernel, const std::vector<TA>& a, const std::vector<TD>& expect) {
  ::isa::buffer<TA> da(a);
  ::isa::buffer<TD> dd(a.size());
  kernel<<<1, unsigned(a.size())>>>(da.get(), dd.get(), int(a.size()));
  ISA_SYNC();
  const auto d = dd.host();
  for (size_t i = 0; i < a.size(); ++i)
    CHECK_MESSAGE(uint64_t(d[i]) == uint64_t(expect[i]), std::string(what), " a=", ::isa::hex(uint64_t(a[i])), " got ",
                  ::isa::hex(uint64_t(d[i])), " want ", ::isa::hex(uint64_t(expect[i])));
}

}  // namespace isa
