// CUB's device algorithms, a program we did not write, on the emulator: each result against the
// C++ standard library on the host, over sizes 0, 1, 31, 1000 and 100000 and the types each
// algorithm takes (float, int32, uint64, __nv_bfloat16; double for ArgMax). CUB is tested on GPUs
// by its authors, so a wrong result here is most likely a wrong emulation of its PTX or of the
// runtime calls its dispatch makes (device attributes, occupancy, kernel attributes).
//
// DeviceReduce::ArgMax reads {index, value} pairs that include padding nothing wrote: the suite
// runs under the default BEAM_EMULATOR_INITCHECK=warn, where such a load is reported and the
// launch goes on.
#include "library_suite.cuh"

#include <cub/device/device_histogram.cuh>
#include <cub/device/device_partition.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cub/device/device_segmented_reduce.cuh>
#include <cub/device/device_select.cuh>

#include <cuda/functional>
#include <cuda/std/limits>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace {

using suite::device_array;
using suite::for_each_type;
using suite::less;
using suite::runs_of;
using suite::random_values;
using suite::seed_of;
using suite::sizes;
using suite::summable_values;
using suite::type_name;
using suite::with_temp_storage;

//! Selection predicate of DeviceSelect::If and DevicePartition::If: floats above 0 (about half of
//! them), integers whose value modulo 3 is 1.
struct select_op {
  template <class T>
  __host__ __device__ bool operator()(const T& v) const {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      return __bfloat162float(v) > 0.0f;
    } else if constexpr (std::is_floating_point_v<T>) {
      return v > T(0);
    } else {
      return uint64_t(v) % 3 == 1;
    }
  }
};

//! Segment offsets over [0, n): empty segments, short ones and, past 1000 items, segments larger
//! than a tile; the first segment starts at 0 and the last ends at n.
std::vector<int> segments_of(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> offsets = {0};
  while (size_t(offsets.back()) < n) {
    size_t length = rng() % 4 == 0 ? 0 : 1 + rng() % 40;
    if (n >= 1000 && rng() % 16 == 0) length = 1 + rng() % (n / 4);
    offsets.push_back(int(std::min(n, size_t(offsets.back()) + length)));
  }
  offsets.push_back(int(n));  // and an empty last segment
  return offsets;
}

// ---- radix sorts ---------------------------------------------------------------------------

//! std::stable_sort of the keys (and, for pairs, the index of each key as its value).
template <class T>
std::vector<int> stable_order(const std::vector<T>& keys, bool descending) {
  std::vector<int> order(keys.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return descending ? less(keys[b], keys[a]) : less(keys[a], keys[b]);
  });
  return order;
}

template <class T>
std::vector<T> gather(const std::vector<T>& v, const std::vector<int>& order) {
  std::vector<T> out;
  for (int i : order) out.push_back(v[i]);
  return out;
}

template <class T>
void radix_sort_case(size_t n, bool descending, bool pairs) {
  CAPTURE(n);
  INFO(type_name<T>(), descending ? " descending" : " ascending", pairs ? " pairs" : " keys");
  const std::vector<T> keys = random_values<T>(n, seed_of(type_name<T>(), n, int(descending)));
  std::vector<int> values(n);
  std::iota(values.begin(), values.end(), 0);
  device_array<T> d_keys(keys), d_keys_out(n);
  device_array<int> d_values(values), d_values_out(n);
  const int items = int(n);
  with_temp_storage([&](void* temp, size_t& bytes) {
    if (pairs) {
      return descending ? cub::DeviceRadixSort::SortPairsDescending(temp, bytes, d_keys.get(), d_keys_out.get(),
                                                                    d_values.get(), d_values_out.get(), items)
                        : cub::DeviceRadixSort::SortPairs(temp, bytes, d_keys.get(), d_keys_out.get(), d_values.get(),
                                                          d_values_out.get(), items);
    }
    return descending ? cub::DeviceRadixSort::SortKeysDescending(temp, bytes, d_keys.get(), d_keys_out.get(), items)
                      : cub::DeviceRadixSort::SortKeys(temp, bytes, d_keys.get(), d_keys_out.get(), items);
  });
  const std::vector<int> order = stable_order(keys, descending);
  const std::vector<T> want = gather(keys, order);
  const std::vector<T> got = d_keys_out.host();
  SUITE_CHECK_EQUAL_ARRAYS(got, want);
  if (pairs) {
    const std::vector<int> got_values = d_values_out.host();
    SUITE_CHECK_EQUAL_ARRAYS(got_values, order);  // stable: equal keys keep their input order
  }
}

TEST_CASE("DeviceRadixSort::SortKeys ascending and descending") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes)
      for (bool descending : {false, true}) radix_sort_case<T>(n, descending, false);
  });
}

TEST_CASE("DeviceRadixSort::SortPairs ascending and descending") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes)
      for (bool descending : {false, true}) radix_sort_case<T>(n, descending, true);
  });
}

//! Keys compared on bits [begin_bit, end_bit) alone (a range that leaves out int32's sign bit,
//! the one bit CUB's signed-key transformation changes): a stable sort by that field, ascending,
//! or descending (the field's bits inverted, as CUB documents).
template <class T>
void radix_sort_bits_case(size_t n, bool descending, bool pairs, int begin_bit, int end_bit) {
  CAPTURE(n);
  CAPTURE(begin_bit);
  CAPTURE(end_bit);
  INFO(type_name<T>(), descending ? " descending" : " ascending", pairs ? " pairs" : " keys");
  const std::vector<T> keys = random_values<T>(n, seed_of("bits", n, begin_bit));
  std::vector<int> values(n);
  std::iota(values.begin(), values.end(), 0);
  device_array<T> d_keys(keys), d_keys_out(n);
  device_array<int> d_values(values), d_values_out(n);
  const int items = int(n);
  with_temp_storage([&](void* temp, size_t& bytes) {
    if (pairs) {
      return descending
                 ? cub::DeviceRadixSort::SortPairsDescending(temp, bytes, d_keys.get(), d_keys_out.get(), d_values.get(),
                                                             d_values_out.get(), items, begin_bit, end_bit)
                 : cub::DeviceRadixSort::SortPairs(temp, bytes, d_keys.get(), d_keys_out.get(), d_values.get(),
                                                   d_values_out.get(), items, begin_bit, end_bit);
    }
    return descending ? cub::DeviceRadixSort::SortKeysDescending(temp, bytes, d_keys.get(), d_keys_out.get(), items,
                                                                 begin_bit, end_bit)
                      : cub::DeviceRadixSort::SortKeys(temp, bytes, d_keys.get(), d_keys_out.get(), items, begin_bit,
                                                       end_bit);
  });
  const auto field = [&](T key) {
    return (uint64_t(std::make_unsigned_t<T>(key)) >> begin_bit) & ((uint64_t(1) << (end_bit - begin_bit)) - 1);
  };
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return descending ? field(keys[b]) < field(keys[a]) : field(keys[a]) < field(keys[b]);
  });
  const std::vector<T> got = d_keys_out.host();
  SUITE_CHECK_EQUAL_ARRAYS(got, gather(keys, order));
  if (pairs) {
    const std::vector<int> got_values = d_values_out.host();
    SUITE_CHECK_EQUAL_ARRAYS(got_values, order);
  }
}

TEST_CASE("DeviceRadixSort with a begin_bit/end_bit range") {
  for (size_t n : sizes)
    for (bool descending : {false, true})
      for (bool pairs : {false, true}) {
        radix_sort_bits_case<uint64_t>(n, descending, pairs, 8, 40);  // 32 bits in the middle: 4 passes
        radix_sort_bits_case<int32_t>(n, descending, pairs, 3, 14);   // 11 bits: not a whole digit
      }
}

//! Each segment is sorted by one block whatever its length, so the cost grows with the number of
//! segments, not items: ascending and descending are separate cases to keep each short.
template <class T>
void segmented_radix_sort_case(size_t n, bool descending) {
  CAPTURE(n);
  INFO(type_name<T>(), descending ? " descending" : " ascending");
  const std::vector<T> keys = random_values<T>(n, seed_of("segmented sort", n, int(descending)));
  const std::vector<int> offsets = segments_of(n, seed_of("segments", n));
  const int segments = int(offsets.size()) - 1;
  device_array<T> d_keys(keys), d_keys_out(n);
  device_array<int> d_offsets(offsets);
  with_temp_storage([&](void* temp, size_t& bytes) {
    return descending ? cub::DeviceSegmentedRadixSort::SortKeysDescending(temp, bytes, d_keys.get(), d_keys_out.get(),
                                                                          int(n), segments, d_offsets.get(),
                                                                          d_offsets.get() + 1)
                      : cub::DeviceSegmentedRadixSort::SortKeys(temp, bytes, d_keys.get(), d_keys_out.get(), int(n),
                                                                segments, d_offsets.get(), d_offsets.get() + 1);
  });
  std::vector<T> want = keys;
  for (int s = 0; s < segments; ++s)
    std::stable_sort(want.begin() + offsets[s], want.begin() + offsets[s + 1],
                     [&](const T& a, const T& b) { return descending ? less(b, a) : less(a, b); });
  const std::vector<T> got = d_keys_out.host();
  SUITE_CHECK_EQUAL_ARRAYS(got, want);
}

TEST_CASE("DeviceSegmentedRadixSort::SortKeys") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    for (size_t n : sizes) segmented_radix_sort_case<typename decltype(t)::type>(n, false);
  });
}

TEST_CASE("DeviceSegmentedRadixSort::SortKeysDescending") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    for (size_t n : sizes) segmented_radix_sort_case<typename decltype(t)::type>(n, true);
  });
}

// ---- scans and reductions ------------------------------------------------------------------

TEST_CASE("DeviceScan::InclusiveSum and ExclusiveSum") {
  for_each_type<float, int32_t, uint64_t>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = summable_values<T>(n, seed_of("scan", n));
      device_array<T> d_in(in), d_inclusive(n), d_exclusive(n);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceScan::InclusiveSum(temp, bytes, d_in.get(), d_inclusive.get(), int(n));
      });
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceScan::ExclusiveSum(temp, bytes, d_in.get(), d_exclusive.get(), int(n));
      });
      std::vector<T> inclusive(n), exclusive(n);
      std::inclusive_scan(in.begin(), in.end(), inclusive.begin());
      std::exclusive_scan(in.begin(), in.end(), exclusive.begin(), T(0));
      const std::vector<T> got_inclusive = d_inclusive.host(), got_exclusive = d_exclusive.host();
      SUITE_CHECK_EQUAL_ARRAYS(got_inclusive, inclusive);
      SUITE_CHECK_EQUAL_ARRAYS(got_exclusive, exclusive);
    }
  });
}

//! __nv_bfloat16 sums round in an order CUB chooses; a running maximum is exact in any order.
TEST_CASE("DeviceScan::InclusiveScan with cuda::maximum over bf16") {
  for (size_t n : sizes) {
    CAPTURE(n);
    const std::vector<__nv_bfloat16> in = random_values<__nv_bfloat16>(n, seed_of("scan max", n));
    device_array<__nv_bfloat16> d_in(in), d_out(n);
    with_temp_storage([&](void* temp, size_t& bytes) {
      return cub::DeviceScan::InclusiveScan(temp, bytes, d_in.get(), d_out.get(), ::cuda::maximum<>{}, int(n));
    });
    std::vector<__nv_bfloat16> want(n);
    std::inclusive_scan(in.begin(), in.end(), want.begin(), [](__nv_bfloat16 a, __nv_bfloat16 b) {
      return less(a, b) ? b : a;
    });
    const std::vector<__nv_bfloat16> got = d_out.host();
    SUITE_CHECK_EQUAL_ARRAYS(got, want);
  }
}

TEST_CASE("DeviceReduce::Sum") {
  for_each_type<float, int32_t, uint64_t>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = summable_values<T>(n, seed_of("sum", n));
      device_array<T> d_in(in), d_out(1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceReduce::Sum(temp, bytes, d_in.get(), d_out.get(), int(n));
      });
      const T want = std::accumulate(in.begin(), in.end(), T(0));  // 0 for no items
      const T got = d_out.value();
      CHECK_MESSAGE(suite::same_bits(got, want), "got ", suite::show(got), " want ", suite::show(want));
    }
  });
}

TEST_CASE("DeviceReduce::Max") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = random_values<T>(n, seed_of("max", n));
      device_array<T> d_in(in), d_out(1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceReduce::Max(temp, bytes, d_in.get(), d_out.get(), int(n));
      });
      // no items: the initial value, numeric_limits<T>::lowest() (CUB's documentation; the host's
      // std::numeric_limits knows no __nv_bfloat16)
      const T want = n == 0 ? ::cuda::std::numeric_limits<T>::lowest() : *std::max_element(in.begin(), in.end(), less<T>);
      const T got = d_out.value();
      CHECK_MESSAGE(suite::same_bits(got, want), "got ", suite::show(got), " want ", suite::show(want));
    }
  });
}

TEST_CASE("DeviceReduce::ArgMax") {
  for_each_type<float, double>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      std::vector<T> in = random_values<T>(n, seed_of("argmax", n));
      if (n >= 31) {  // the maximum twice: the first one's index is the answer
        const size_t at = size_t(std::max_element(in.begin(), in.end()) - in.begin());
        in[(at + n / 2) % n] = in[at];
      }
      device_array<T> d_in(in), d_max(1);
      device_array<int64_t> d_index(1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceReduce::ArgMax(temp, bytes, d_in.get(), d_max.get(), d_index.get(), int64_t(n));
      });
      // No items: CUB 3.0's streaming arg-reduction runs no partition and writes nothing (its
      // documentation promises {max(), 1}), so only the call's success is checked.
      if (n == 0) continue;
      const auto first = std::max_element(in.begin(), in.end());  // the first of equal maxima
      CHECK(d_index.value() == int64_t(first - in.begin()));
      const T got = d_max.value();
      CHECK_MESSAGE(suite::same_bits(got, *first), "got ", suite::show(got), " want ", suite::show(*first));
    }
  });
}

TEST_CASE("DeviceSegmentedReduce::Sum") {
  for_each_type<float, int32_t, uint64_t>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = summable_values<T>(n, seed_of("segmented sum", n));
      const std::vector<int> offsets = segments_of(n, seed_of("segments", n, 1));
      const size_t segments = offsets.size() - 1;
      device_array<T> d_in(in), d_out(segments);
      device_array<int> d_offsets(offsets);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceSegmentedReduce::Sum(temp, bytes, d_in.get(), d_out.get(), int64_t(segments), d_offsets.get(),
                                               d_offsets.get() + 1);
      });
      std::vector<T> want(segments);
      for (size_t s = 0; s < segments; ++s)
        want[s] = std::accumulate(in.begin() + offsets[s], in.begin() + offsets[s + 1], T(0));  // empty: 0
      const std::vector<T> got = d_out.host();
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
    }
  });
}

// ---- selection, partition, run-length encoding, histogram ----------------------------------

TEST_CASE("DeviceSelect::If") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = random_values<T>(n, seed_of("select if", n));
      device_array<T> d_in(in), d_out(n);
      device_array<int> d_count(1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceSelect::If(temp, bytes, d_in.get(), d_out.get(), d_count.get(), int(n), select_op{});
      });
      std::vector<T> want;
      std::copy_if(in.begin(), in.end(), std::back_inserter(want), select_op{});
      REQUIRE(d_count.value() == int(want.size()));
      const std::vector<T> got = d_out.host(want.size());
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
    }
  });
}

TEST_CASE("DeviceSelect::Flagged") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = random_values<T>(n, seed_of("flagged", n));
      std::mt19937_64 rng(seed_of("flags", n));
      std::vector<uint8_t> flags(n);
      for (auto& f : flags) f = rng() % 3 == 0 ? uint8_t(0) : uint8_t(1 + rng() % 255);  // any nonzero flag selects
      device_array<T> d_in(in), d_out(n);
      device_array<uint8_t> d_flags(flags);
      device_array<int> d_count(1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceSelect::Flagged(temp, bytes, d_in.get(), d_flags.get(), d_out.get(), d_count.get(), int(n));
      });
      std::vector<T> want;
      for (size_t i = 0; i < n; ++i)
        if (flags[i] != 0) want.push_back(in[i]);
      REQUIRE(d_count.value() == int(want.size()));
      const std::vector<T> got = d_out.host(want.size());
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
    }
  });
}

TEST_CASE("DeviceSelect::Unique") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = runs_of<T>(n, seed_of("unique", n));
      device_array<T> d_in(in), d_out(n);
      device_array<int> d_count(1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceSelect::Unique(temp, bytes, d_in.get(), d_out.get(), d_count.get(), int64_t(n));
      });
      std::vector<T> want = in;
      want.erase(std::unique(want.begin(), want.end(), [](const T& a, const T& b) { return suite::same_bits(a, b); }),
                 want.end());
      REQUIRE(d_count.value() == int(want.size()));
      const std::vector<T> got = d_out.host(want.size());
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
    }
  });
}

TEST_CASE("DevicePartition::If") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = random_values<T>(n, seed_of("partition", n));
      device_array<T> d_in(in), d_out(n);
      device_array<int> d_count(1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DevicePartition::If(temp, bytes, d_in.get(), d_out.get(), d_count.get(), int(n), select_op{});
      });
      // The selected items in their order, then the rejected ones in reverse order (CUB's
      // documentation: "the unselected items are written in reverse order").
      std::vector<T> want, rejected;
      for (const T& v : in) (select_op{}(v) ? want : rejected).push_back(v);
      const int selected = int(want.size());
      want.insert(want.end(), rejected.rbegin(), rejected.rend());
      REQUIRE(d_count.value() == selected);
      const std::vector<T> got = d_out.host();
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
    }
  });
}

TEST_CASE("DeviceRunLengthEncode::Encode") {
  for_each_type<float, int32_t, uint64_t, __nv_bfloat16>([](auto t) {
    using T = typename decltype(t)::type;
    for (size_t n : sizes) {
      CAPTURE(n);
      INFO(type_name<T>());
      const std::vector<T> in = runs_of<T>(n, seed_of("encode", n));
      device_array<T> d_in(in), d_unique(n);
      device_array<int> d_counts(n), d_runs(1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceRunLengthEncode::Encode(temp, bytes, d_in.get(), d_unique.get(), d_counts.get(),
                                                  d_runs.get(), int(n));
      });
      std::vector<T> unique;
      std::vector<int> counts;
      for (size_t i = 0; i < n; ++i) {
        if (i == 0 || !suite::same_bits(in[i], in[i - 1])) {
          unique.push_back(in[i]);
          counts.push_back(0);
        }
        ++counts.back();
      }
      REQUIRE(d_runs.value() == int(unique.size()));
      const std::vector<T> got_unique = d_unique.host(unique.size());
      const std::vector<int> got_counts = d_counts.host(counts.size());
      SUITE_CHECK_EQUAL_ARRAYS(got_unique, unique);
      SUITE_CHECK_EQUAL_ARRAYS(got_counts, counts);
    }
  });
}

//! HistogramEven over int32 samples (100 bins of width 10 over [0, 1000): CUB's integral rule,
//! (sample - lower) · bins / (upper - lower) rounded down) and float samples (256 bins of width 1
//! over [0, 256): a power-of-two width, so that the bin is floor(sample) however CUB scales it);
//! samples outside [lower, upper) are counted nowhere.
TEST_CASE("DeviceHistogram::HistogramEven") {
  for (size_t n : sizes) {
    CAPTURE(n);
    std::mt19937_64 rng(seed_of("histogram", n));
    {
      INFO("int32");
      std::vector<int32_t> samples(n);
      for (auto& s : samples) s = int32_t(rng() % 1200) - 100;
      const int levels = 101, lower = 0, upper = 1000;
      device_array<int32_t> d_samples(samples);
      device_array<int> d_histogram(levels - 1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceHistogram::HistogramEven(temp, bytes, d_samples.get(), d_histogram.get(), levels, lower,
                                                   upper, int(n));
      });
      std::vector<int> want(levels - 1, 0);
      for (int32_t s : samples)
        if (s >= lower && s < upper) ++want[(s - lower) * (levels - 1) / (upper - lower)];
      const std::vector<int> got = d_histogram.host();
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
    }
    {
      INFO("float");
      std::vector<float> samples(n);
      for (auto& s : samples) s = float(int64_t(rng() % (300 * 64)) - 20 * 64) / 64.0f;  // [-20, 280) in 1/64 steps
      const int levels = 257;
      const float lower = 0.0f, upper = 256.0f;
      device_array<float> d_samples(samples);
      device_array<int> d_histogram(levels - 1);
      with_temp_storage([&](void* temp, size_t& bytes) {
        return cub::DeviceHistogram::HistogramEven(temp, bytes, d_samples.get(), d_histogram.get(), levels, lower,
                                                   upper, int(n));
      });
      std::vector<int> want(levels - 1, 0);
      for (float s : samples)
        if (s >= lower && s < upper) ++want[size_t(std::floor(s))];
      const std::vector<int> got = d_histogram.host();
      SUITE_CHECK_EQUAL_ARRAYS(got, want);
    }
  }
}

}  // namespace
