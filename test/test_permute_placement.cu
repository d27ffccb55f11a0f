// beam::device::select_replicas and dispatch_layout (expert placement for expert parallelism)
// against the host reference, and with compact: the ranks' compactions of the physical ids
// count what dispatch_layout says each expert receives.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "beam/permute/device_compact.cuh"
#include "beam/permute/device_placement.cuh"
#include "beam/reference/permute.cuh"
#include "common/gpu.cuh"

namespace ref = beam::reference;
using beam::device::dispatch_counts;
using beam::device::replica_table;

TEST_CASE("select_replicas and dispatch_layout reject bad arguments before touching the device") {
  int32_t* fake = reinterpret_cast<int32_t*>(0x1000);  // never dereferenced
  const replica_table table{fake, fake, 2};
  CHECK(beam::device::select_replicas(fake, -1, 4, 8, table, fake) == cudaErrorInvalidValue);
  CHECK(beam::device::select_replicas(fake, 4, 0, 8, table, fake) == cudaErrorInvalidValue);
  CHECK(beam::device::select_replicas(fake, 4, 4, 0, table, fake) == cudaErrorInvalidValue);
  CHECK(beam::device::select_replicas(fake, 4, 4, 8, {fake, fake, 0}, fake) == cudaErrorInvalidValue);
  CHECK(beam::device::select_replicas(fake, 4, 4, 8, {nullptr, fake, 2}, fake) == cudaErrorInvalidValue);
  CHECK(beam::device::select_replicas(fake, 4, 4, 8, table, nullptr) == cudaErrorInvalidValue);
  CHECK(beam::device::select_replicas(nullptr, 0, 4, 8, {}, nullptr) == cudaSuccess);  // T = 0
  const dispatch_counts out{fake, fake, nullptr};
  CHECK(beam::device::dispatch_layout(fake, -1, 4, 8, 2, out) == cudaErrorInvalidValue);
  CHECK(beam::device::dispatch_layout(fake, int64_t(1) << 29, 4, 8, 2, out) == cudaErrorInvalidValue);  // T·K = 2³¹
  CHECK(beam::device::select_replicas(fake, int64_t(1) << 29, 4, 8, table, fake) == cudaErrorInvalidValue);
  CHECK(beam::device::dispatch_layout(fake, 4, 33, 64, 2, out) == cudaErrorInvalidValue);  // K > 32
  CHECK(beam::device::dispatch_layout(fake, 4, 4, 0, 1, out) == cudaErrorInvalidValue);
  CHECK(beam::device::dispatch_layout(fake, 4, 4, 8, 0, out) == cudaErrorInvalidValue);
  CHECK(beam::device::dispatch_layout(fake, 4, 4, 8, 3, out) == cudaErrorInvalidValue);  // E % R
  CHECK(beam::device::dispatch_layout(fake, 4, 4, 8, 2, {nullptr, fake, nullptr}) == cudaErrorInvalidValue);
  CHECK(beam::device::dispatch_layout(nullptr, 4, 4, 8, 2, out) == cudaErrorInvalidValue);
}

namespace {

//! T·K ids over E: −1 with probability `masked`, a few invalid ids (E + 1, −3) when asked.
std::vector<int32_t> placement_ids(int64_t T, int K, int E, double masked, bool invalid, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int> any(0, E - 1);
  std::vector<int32_t> ids(size_t(T * K));
  for (auto& id : ids) {
    id = u(rng) < masked ? -1 : any(rng);
    if (invalid && u(rng) < 0.02) id = u(rng) < 0.5 ? E + 1 : -3;
  }
  return ids;
}

void check_dispatch(int64_t T, int K, int E, int R, double masked, bool with_optional, uint64_t seed) {
  CAPTURE(T);
  CAPTURE(K);
  CAPTURE(E);
  CAPTURE(R);
  CAPTURE(masked);
  const auto ids = placement_ids(T, K, E, masked, seed % 2 == 0, seed);
  const auto expected = ref::dispatch_layout(ids.data(), T, K, E, R);
  beam::test::device_vector<int32_t> d_ids(ids.empty() ? std::vector<int32_t>(1) : ids), per_rank{size_t(R)},
      per_expert{size_t(E)};
  beam::test::device_vector<uint8_t> in_rank{size_t(std::max<int64_t>(T * R, 1))};
  per_rank.poison();
  per_expert.poison();
  in_rank.poison();
  const dispatch_counts out{per_rank.data(), with_optional ? per_expert.data() : nullptr,
                            with_optional ? in_rank.data() : nullptr};
  REQUIRE(beam::device::dispatch_layout(d_ids.data(), T, K, E, R, out) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  CHECK(per_rank.to_host() == expected.tokens_per_rank);
  if (!with_optional) return;
  CHECK(per_expert.to_host() == expected.pairs_per_expert);
  auto got = in_rank.to_host();
  got.resize(expected.token_in_rank.size());
  CHECK(got == expected.token_in_rank);
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("dispatch_layout equals the reference: tokens per rank, pairs per expert, token-in-rank") {
    BEAM_REQUIRE_GPU();
    uint64_t seed = 1;
    for (int64_t T : beam::test::sweep<int64_t>({0, 1, 33, 1000, 70000}, {0, 1, 33, 4097})) {
      struct shape {
        int K, E, R;
      };
      for (auto [K, E, R] : {shape{1, 16, 1}, shape{6, 64, 8}, shape{8, 256, 4}, shape{16, 32, 32}, shape{32, 512, 2}}) {
        for (double masked : {0.0, 0.85, 1.0}) {
          check_dispatch(T, K, E, R, masked, seed % 3 != 0, seed);
          ++seed;
        }
      }
    }
  }

  TEST_CASE("select_replicas equals the reference (in place too); the ranks' compactions of the physical ids "
            "count what dispatch_layout says each expert receives") {
    BEAM_REQUIRE_GPU();
    // 8 logical experts, 12 physical on 4 ranks (3 each): experts 0..3 have a second replica.
    const int E = 8, P_E = 12, R = 4, K = 4, max_replicas = 2;
    const int64_t T = 515;
    std::vector<int32_t> physical(size_t(E * max_replicas), 0), counts(size_t(E), 1);
    for (int e = 0; e < E; ++e) physical[size_t(e * max_replicas)] = e;  // replica 0: physical e
    for (int e = 0; e < 4; ++e) {
      physical[size_t(e * max_replicas + 1)] = E + e;  // replica 1: physical 8 + e
      counts[size_t(e)] = 2;
    }
    std::vector<int32_t> bad_counts = counts;
    bad_counts[7] = 3;  // more than max_replicas: expert 7's pairs get −2
    const auto ids = placement_ids(T, K, E, 0.5, true, 77);
    beam::test::device_vector<int32_t> d_table(physical), d_counts(counts), d_bad(bad_counts), d_ids(ids),
        d_out{ids.size()};
    d_out.poison();
    REQUIRE(beam::device::select_replicas(d_ids.data(), T, K, E, {d_table.data(), d_counts.data(), max_replicas},
                                          d_out.data()) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto expected = ref::select_replicas(ids, E, physical, counts, max_replicas);
    CHECK(d_out.to_host() == expected);
    const auto got = d_out.to_host();
    CHECK(std::count(got.begin(), got.end(), -2) == std::count_if(ids.begin(), ids.end(), [](int32_t id) {
            return id < -1 || id >= 8;
          }));
    REQUIRE(beam::device::select_replicas(d_ids.data(), T, K, E, {d_table.data(), d_bad.data(), max_replicas},
                                          d_ids.data()) == cudaSuccess);  // in place
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    CHECK(d_ids.to_host() == ref::select_replicas(ids, E, physical, bad_counts, max_replicas));
    // All pairs masked: every id stays −1.
    beam::test::device_vector<int32_t> masked(std::vector<int32_t>(ids.size(), -1));
    REQUIRE(beam::device::select_replicas(masked.data(), T, K, E, {d_table.data(), d_counts.data(), max_replicas},
                                          masked.data()) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    CHECK(masked.to_host() == std::vector<int32_t>(ids.size(), -1));

    // dispatch_layout over the physical ids, and each rank's compaction of its range.
    beam::test::device_vector<int32_t> d_physical(expected), per_rank{size_t(R)}, per_expert{size_t(P_E)};
    REQUIRE(beam::device::dispatch_layout(d_physical.data(), T, K, P_E, R, {per_rank.data(), per_expert.data()}) ==
            cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto receives = per_expert.to_host();
    for (int rank = 0; rank < R; ++rank) {
      CAPTURE(rank);
      const int begin = rank * (P_E / R), end = begin + P_E / R;
      beam::test::device_vector<int32_t> c_counts{size_t(end - begin)}, c_offsets{size_t(end - begin) + 1},
          sorted{ids.size()}, rows{ids.size()};
      const beam::device::compaction_input in{d_physical.data(), T, K, P_E, begin, end};
      const beam::device::compaction_outputs out{c_counts.data(), c_offsets.data(), sorted.data(), rows.data()};
      size_t bytes = 0;
      REQUIRE(beam::device::compact(nullptr, bytes, in, out) == cudaSuccess);
      beam::test::device_vector<char> workspace(bytes);
      REQUIRE(beam::device::compact(workspace.data(), bytes, in, out) == cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      CHECK(c_counts.to_host() == std::vector<int32_t>(receives.begin() + begin, receives.begin() + end));
    }
    CHECK(std::accumulate(receives.begin(), receives.end(), 0) ==
          std::count_if(ids.begin(), ids.end(), [](int32_t id) { return id >= 0 && id < 8; }));
  }
}
