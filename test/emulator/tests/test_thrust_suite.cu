// Thrust, a program we did not write, on the emulator: each algorithm on thrust::device_vector
// (or raw device pointers with thrust::cuda::par) against the C++ standard library on the host,
// over sizes 0, 1, 31, 1000 and 100000 and the types each algorithm takes (float, int32, uint64,
// __nv_bfloat16). Thrust dispatches to CUB's kernels (radix sort for thrust::greater over
// arithmetic keys, merge sort for a user comparator), and its own (device_vector's fill and copy).
#include "library_suite.cuh"

#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/functional.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/sort.h>

#include <algorithm>
#include <numeric>

namespace {

using suite::for_each_type;
using suite::less;
using suite::random_values;
using suite::runs_of;
using suite::seed_of;
using suite::sizes;
using suite::summable_values;
using suite::type_name;

template <class T>
thrust::device_vector<T> to_device(const std::vector<T>& host) {
  return thrust::device_vector<T>(host.begin(), host.end());
}

template <class T>
std::vector<T> to_host(const thrust::device_vector<T>& device, size_t count) {
  std::vector<T> out(count);
  thrust::copy(device.begin(), device.begin() + count, out.begin());
  return out;
}
template <class T>
std::vector<T> to_host(const thrust::device_vector<T>& device) {
  return to_host(device, device.size());
}

// ---- sorts ---------------------------------------------------------------------------------

//! thrust::sort_by_key need not be stable: the keys must be in descending order, and each value
//! (the key's input index) must name an input key equal to the key beside it, each index once.
TEST_CASE("thrust::sort_by_key with thrust::greater") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> keys = random_values<T>(n, seed_of("thrust sort", n));
      std::vector<int> values(n);
      std::iota(values.begin(), values.end(), 0);
      thrust::device_vector<T> d_keys = to_device(keys);
      thrust::device_vector<int> d_values = to_device(values);
      thrust::sort_by_key(d_keys.begin(), d_keys.end(), d_values.begin(), thrust::greater<T>());
      SUITE_CUDA(cudaDeviceSynchronize());
      std::vector<T> want = keys;
      std::stable_sort(want.begin(), want.end(), [](const T& a, const T& b) { return less(b, a); });
      const std::vector<T> got = to_host(d_keys);
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
      const std::vector<int> got_values = to_host(d_values);
      std::vector<bool> seen(n, false);
      size_t wrong = 0;
      for (size_t i = 0; i < n && i < got.size(); ++i) {
        const int v = got_values[i];
        if (v < 0 || size_t(v) >= n || seen[v] || !suite::same_bits(keys[v], got[i])) {
          ++wrong;
          continue;
        }
        seen[v] = true;
      }
      CHECK_MESSAGE(wrong == 0, wrong, " values do not name their key's input position");
    }
  });
}

//! A comparator Thrust cannot recognise sorts by merge sort; stable_sort_by_key makes the order
//! of ties exact: integers by their low byte, floats by magnitude (many ties), against
//! std::stable_sort. Under sm_90a, with CUB 3.0.1, the first sort of more than one tile stops at the
//! emulator's programmatic dependent launch report (CUB's merge kernel loads its primary's merge
//! partitions before griddepcontrol.wait), which the ctest test requires: see tests/CMakeLists.txt.
struct by_low_byte_or_magnitude {
  template <class T>
  __host__ __device__ bool operator()(const T& a, const T& b) const {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      return fabsf(__bfloat162float(a)) < fabsf(__bfloat162float(b));
    } else if constexpr (std::is_floating_point_v<T>) {
      return (a < 0 ? -a : a) < (b < 0 ? -b : b);
    } else {
      return (uint64_t(a) & 0xff) < (uint64_t(b) & 0xff);
    }
  }
};

TEST_CASE("thrust::stable_sort_by_key with a user comparator") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> keys = random_values<T>(n, seed_of("thrust merge sort", n));
      std::vector<int> order(n);
      std::iota(order.begin(), order.end(), 0);
      thrust::device_vector<T> d_keys = to_device(keys);
      thrust::device_vector<int> d_values = to_device(order);
      thrust::stable_sort_by_key(d_keys.begin(), d_keys.end(), d_values.begin(), by_low_byte_or_magnitude{});
      SUITE_CUDA(cudaDeviceSynchronize());
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return by_low_byte_or_magnitude{}(keys[a], keys[b]); });
      std::vector<T> want;
      for (int i : order) want.push_back(keys[i]);
      const std::vector<T> got = to_host(d_keys);
      const std::vector<int> got_values = to_host(d_values);
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
      SUITE_CHECK_EQUAL_ARRAYS(got_values, order);
    }
  });
}

// ---- reductions and scans ------------------------------------------------------------------

TEST_CASE("thrust::reduce_by_key") {
  for_each_type<float, int32_t, uint64_t>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<int32_t> keys = runs_of<int32_t>(n, seed_of("thrust reduce_by_key", n));
      const std::vector<T> values = summable_values<T>(n, seed_of("thrust reduce_by_key values", n));
      thrust::device_vector<int32_t> d_keys = to_device(keys), d_keys_out(n);
      thrust::device_vector<T> d_values = to_device(values), d_sums(n);
      const auto ends = thrust::reduce_by_key(d_keys.begin(), d_keys.end(), d_values.begin(), d_keys_out.begin(),
                                              d_sums.begin());
      SUITE_CUDA(cudaDeviceSynchronize());
      std::vector<int32_t> want_keys;
      std::vector<T> want_sums;
      for (size_t i = 0; i < n; ++i) {
        if (i == 0 || keys[i] != keys[i - 1]) {
          want_keys.push_back(keys[i]);
          want_sums.push_back(T(0));
        }
        want_sums.back() += values[i];
      }
      const size_t runs = size_t(ends.first - d_keys_out.begin());
      REQUIRE(runs == want_keys.size());
      REQUIRE(size_t(ends.second - d_sums.begin()) == runs);
      const std::vector<int32_t> got_keys = to_host(d_keys_out, runs);
      const std::vector<T> got_sums = to_host(d_sums, runs);
      SUITE_CHECK_EQUAL_ARRAYS(got_keys, want_keys);
      SUITE_CHECK_EQUAL_ARRAYS(got_sums, want_sums);
    }
  });
}

TEST_CASE("thrust::inclusive_scan and thrust::exclusive_scan") {
  for_each_type<float, int32_t, uint64_t>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = summable_values<T>(n, seed_of("thrust scan", n));
      thrust::device_vector<T> d_in = to_device(in), d_inclusive(n), d_exclusive(n);
      thrust::inclusive_scan(d_in.begin(), d_in.end(), d_inclusive.begin());
      thrust::exclusive_scan(d_in.begin(), d_in.end(), d_exclusive.begin(), T(7));  // an initial value
      SUITE_CUDA(cudaDeviceSynchronize());
      std::vector<T> inclusive(n), exclusive(n);
      std::inclusive_scan(in.begin(), in.end(), inclusive.begin());
      std::exclusive_scan(in.begin(), in.end(), exclusive.begin(), T(7));
      const std::vector<T> got_inclusive = to_host(d_inclusive), got_exclusive = to_host(d_exclusive);
      SUITE_CHECK_EQUAL_ARRAYS(got_inclusive, inclusive);
      SUITE_CHECK_EQUAL_ARRAYS(got_exclusive, exclusive);
    }
  });
  // __nv_bfloat16 sums round in an order Thrust chooses; a running maximum is exact in any order.
  for (size_t n : sizes) {
    CAPTURE(n);
    INFO("bf16 maximum");
    const std::vector<__nv_bfloat16> in = random_values<__nv_bfloat16>(n, seed_of("thrust scan max", n));
    thrust::device_vector<__nv_bfloat16> d_in = to_device(in), d_out(n);
    thrust::inclusive_scan(d_in.begin(), d_in.end(), d_out.begin(), thrust::maximum<__nv_bfloat16>());
    SUITE_CUDA(cudaDeviceSynchronize());
    std::vector<__nv_bfloat16> want(n);
    std::inclusive_scan(in.begin(), in.end(), want.begin(),
                        [](__nv_bfloat16 a, __nv_bfloat16 b) { return less(a, b) ? b : a; });
    const std::vector<__nv_bfloat16> got = to_host(d_out);
    SUITE_CHECK_EQUAL_ARRAYS(got, want);
  }
}

// ---- selection -----------------------------------------------------------------------------

//! Floats below 0, integers whose value modulo 5 is not 0.
struct keep_op {
  template <class T>
  __host__ __device__ bool operator()(const T& v) const {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      return __bfloat162float(v) < 0.0f;
    } else if constexpr (std::is_floating_point_v<T>) {
      return v < T(0);
    } else {
      return uint64_t(v) % 5 != 0;
    }
  }
};

struct nonzero {
  __host__ __device__ bool operator()(uint8_t flag) const { return flag != 0; }
};

TEST_CASE("thrust::copy_if") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = random_values<T>(n, seed_of("thrust copy_if", n));
      {  // predicate on the values, device_vector
        thrust::device_vector<T> d_in = to_device(in), d_out(n);
        const auto end = thrust::copy_if(d_in.begin(), d_in.end(), d_out.begin(), keep_op{});
        SUITE_CUDA(cudaDeviceSynchronize());
        std::vector<T> want;
        std::copy_if(in.begin(), in.end(), std::back_inserter(want), keep_op{});
        REQUIRE(size_t(end - d_out.begin()) == want.size());
        const std::vector<T> got = to_host(d_out, want.size());
        SUITE_CHECK_EQUAL_ARRAYS(got, want);
      }
      {  // predicate on a stencil, raw device pointers with thrust::cuda::par
        std::mt19937_64 rng(seed_of("thrust stencil", n));
        std::vector<uint8_t> stencil(n);
        for (auto& s : stencil) s = uint8_t(rng() % 2);
        suite::device_array<T> d_in(in), d_out(n);
        suite::device_array<uint8_t> d_stencil(stencil);
        T* const end = thrust::copy_if(thrust::cuda::par, d_in.get(), d_in.get() + n, d_stencil.get(), d_out.get(),
                                       nonzero{});
        SUITE_CUDA(cudaDeviceSynchronize());
        std::vector<T> want;
        for (size_t i = 0; i < n; ++i)
          if (stencil[i] != 0) want.push_back(in[i]);
        REQUIRE(size_t(end - d_out.get()) == want.size());
        const std::vector<T> got = d_out.host(want.size());
        SUITE_CHECK_EQUAL_ARRAYS(got, want);
      }
    }
  });
}

}  // namespace
