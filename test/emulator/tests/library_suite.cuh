// Shared helpers for the library suites (test_cub_suite.cu, test_thrust_suite.cu): programs we
// did not write — CUB's device algorithms and Thrust — run on the emulator and checked against
// the C++ standard library on the host.
//
// Inputs are seeded random values (never all zeros), with duplicates mixed in so that stable
// algorithms and ties are exercised. Sums are taken over values whose every partial sum is exact
// (multiples of 1/4 below 2^22 in float), so that a result that depends on the order of the
// additions — which the ISA and CUB leave to the implementation — is still compared exactly.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#define SUITE_CUDA(expr)                                                                          \
  do {                                                                                            \
    const cudaError_t suite_err_ = (expr);                                                        \
    REQUIRE_MESSAGE(suite_err_ == cudaSuccess, #expr " -> ", std::string(cudaGetErrorName(suite_err_))); \
  } while (false)

//! After the algorithm's launches: none failed, and they all completed.
#define SUITE_SYNC()                         \
  do {                                       \
    SUITE_CUDA(cudaGetLastError());          \
    SUITE_CUDA(cudaDeviceSynchronize());     \
  } while (false)

namespace suite {

//! Problem sizes of every algorithm: empty, one item, less than a warp, one or a few tiles, and
//! many tiles (several blocks, the decoupled look-back of scans, the onesweep passes of sorts).
inline const std::vector<size_t> sizes = {0, 1, 31, 1000, 100000};

//! Device memory that starts unwritten (no memset: the emulator's initcheck sees what the
//! algorithm reads before writing); at least one byte so that an empty array has an address.
template <class T>
class device_array {
 public:
  explicit device_array(size_t n) : n_(n) { SUITE_CUDA(cudaMalloc(&p_, n * sizeof(T) > 0 ? n * sizeof(T) : 1)); }
  explicit device_array(const std::vector<T>& host) : device_array(host.size()) {
    if (n_ > 0) SUITE_CUDA(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  ~device_array() { cudaFree(p_); }

  T* get() const { return p_; }
  std::vector<T> host(size_t count) const {
    std::vector<T> out(count);
    if (count > 0) SUITE_CUDA(cudaMemcpy(out.data(), p_, count * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }
  std::vector<T> host() const { return host(n_); }
  T value() const { return host(1)[0]; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

//! Temporary storage of a CUB call: `call(d_temp, bytes)` is made twice, first to size it.
template <class Call>
void with_temp_storage(Call call) {
  size_t bytes = 0;
  SUITE_CUDA(call(static_cast<void*>(nullptr), bytes));
  device_array<unsigned char> temp(bytes);
  SUITE_CUDA(call(static_cast<void*>(temp.get()), bytes));
  SUITE_SYNC();
}

// ---- types ---------------------------------------------------------------------------------

template <class T>
const char* type_name();
template <>
inline const char* type_name<float>() { return "float"; }
template <>
inline const char* type_name<double>() { return "double"; }
template <>
inline const char* type_name<int32_t>() { return "int32"; }
template <>
inline const char* type_name<uint32_t>() { return "uint32"; }
template <>
inline const char* type_name<uint64_t>() { return "uint64"; }
template <>
inline const char* type_name<__nv_bfloat16>() { return "bf16"; }

//! The value as a double (exact for every type here but uint64 above 2^53, which only orders).
template <class T>
double as_double(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return double(__bfloat162float(v));
  } else {
    return double(v);
  }
}

//! Bitwise equality: the algorithms move values, so every bit must come back.
template <class T>
bool same_bits(const T& a, const T& b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

template <class T>
std::string show(T v) {
  char s[64];
  if constexpr (std::is_same_v<T, uint64_t>) {
    std::snprintf(s, sizeof s, "%llu", static_cast<unsigned long long>(v));
  } else if constexpr (std::is_integral_v<T>) {
    std::snprintf(s, sizeof s, "%lld", static_cast<long long>(v));
  } else {
    std::snprintf(s, sizeof s, "%.9g", as_double(v));
  }
  return s;
}

//! First index where two arrays differ bitwise, or -1; the caller CHECKs it is -1 and the message
//! shows both values there.
template <class T>
long first_difference(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) return long(std::min(got.size(), want.size()));
  for (size_t i = 0; i < got.size(); ++i)
    if (!same_bits(got[i], want[i])) return long(i);
  return -1;
}

#define SUITE_CHECK_EQUAL_ARRAYS(got, want)                                                         \
  do {                                                                                              \
    const long at_ = ::suite::first_difference(got, want);                                          \
    CHECK_MESSAGE(at_ == -1, "first difference at ", at_, " of ", (got).size(), " (want ",          \
                  (want).size(), "): got ",                                                         \
                  (at_ >= 0 && size_t(at_) < (got).size() ? ::suite::show((got)[at_]) : "-"), " want ", \
                  (at_ >= 0 && size_t(at_) < (want).size() ? ::suite::show((want)[at_]) : "-"));    \
  } while (false)

// ---- seeded inputs -------------------------------------------------------------------------

//! A seed per case, type and size, so that every run sees the same inputs.
inline uint64_t seed_of(const char* what, size_t n, int salt = 0) {
  uint64_t h = 1469598103934665603ull;
  for (const char* c = what; *c; ++c) h = (h ^ uint64_t(uint8_t(*c))) * 1099511628211ull;
  return h ^ (uint64_t(n) * 0x9e3779b97f4a7c15ull) ^ uint64_t(salt);
}

//! Values spread over the type's range: floats over many binades and both signs, integers over
//! all their bits; about a quarter of them repeat an earlier value (ties for stable sorts).
template <class T>
std::vector<T> random_values(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && rng() % 4 == 0) {
      out[i] = out[rng() % i];
      continue;
    }
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, __nv_bfloat16>) {
      // a nonzero 21-bit integer times 2^e, e in [-40, 20]: normal numbers of both signs
      int64_t m = int64_t(rng() % (1u << 21)) - (1 << 20);
      if (m == 0) m = 1;
      const double v = std::ldexp(double(m), int(rng() % 61) - 40);
      if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        out[i] = __float2bfloat16_rn(float(v));
      } else {
        out[i] = T(v);
      }
    } else {
      out[i] = T(rng());
    }
  }
  return out;
}

//! Values whose sums are exact in any order: integers in [-1000, 1000] for int32 (|sum| < 2^31 up
//! to 10^6 items), any 64-bit pattern for uint64 (sums wrap modulo 2^64 as on the host), and
//! multiples of 1/4 in [-8, 8] for float and double (|partial sum| · 4 < 2^22 for 100000 items).
template <class T>
std::vector<T> summable_values(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> out(n);
  for (auto& v : out) {
    if constexpr (std::is_same_v<T, int32_t>) {
      v = int32_t(rng() % 2001) - 1000;
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      v = rng();
    } else {
      v = T(double(int64_t(rng() % 65) - 32) / 4.0);
    }
  }
  if (n > 0 && as_double(out[0]) == 0) out[0] = T(1);  // never all zeros
  return out;
}

// ---- helpers -------------------------------------------------------------------------------

//! A type as a value, for for_each_type.
template <class T>
struct tag {
  using type = T;
};

//! f(tag<T>{}) for each T, in order.
template <class... T, class F>
void for_each_type(F f) {
  (f(tag<T>{}), ...);
}

//! a < b as the type orders its values (bf16 by its float value).
template <class T>
bool less(const T& a, const T& b) {
  if constexpr (std::is_integral_v<T>) {
    return a < b;
  } else {
    return suite::as_double(a) < suite::as_double(b);
  }
}

//! Runs of equal values, 1 to 16 long and, past 1000 items, a few runs longer than a tile.
template <class T>
std::vector<T> runs_of(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::vector<T> values = random_values<T>(n, seed + 1);
  std::vector<T> out;
  out.reserve(n);
  size_t next = 0;
  while (out.size() < n) {
    size_t run = 1 + rng() % 16;
    if (n >= 1000 && rng() % 64 == 0) run = 1 + rng() % 5000;
    const T v = values[next++ % n];
    for (size_t i = 0; i < run && out.size() < n; ++i) out.push_back(v);
  }
  return out;
}

}  // namespace suite
