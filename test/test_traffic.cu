// The layer's memory traffic at a small decode shape, counted by the emulator (label
// emulated; emulator only: it reads the emulator's counters). BEAM's inference claim in
// bytes: a masked (token, expert) pair costs no weight bytes, so a decode step moves the
// distinct active experts' weights once, the routers', the shared expert's, and the
// activations (bench/layer_traffic.cuh: ideal_bytes) — within 5% — and not one sector of an
// expert the routing left without a pair; with every GEMM schedule, the GEMMs stream their
// operands in full sectors without shared-memory bank conflicts.
#include <doctest/doctest.h>

#include "layer_traffic.cuh"

namespace {

using beam::bench::layer_traffic;
using beam::bench::model_shape;
using beam::bench::skewed_routing;
using beam::bench::traffic_problem;

// A small layer with a shared expert: H = 256, I = 128, E = 16, K = 4, I_s = 128.
constexpr model_shape small_layer{"small", 256, 128, 16, 4, 128, true};  // a gated shared expert
constexpr int64_t tokens = 4;

void check_within_ideal(const layer_traffic& t) {
  CAPTURE(t.distinct_bytes);
  CAPTURE(t.ideal_bytes);
  CHECK(t.launches.size() > 0);
  CHECK(t.distinct_bytes >= t.ideal_bytes * 0.98);  // the weights at least (a counter that
                                                    // missed the weight reads would pass below)
  CHECK(t.distinct_bytes <= t.ideal_bytes * 1.05);
}

}  // namespace

TEST_CASE("decode traffic: distinct DRAM bytes within 5% of the ideal, no inactive expert read") {
  traffic_problem problem(small_layer, tokens);
  const auto dense_ids = skewed_routing(tokens, small_layer.K, small_layer.E, small_layer.K);
  const auto masked_ids = skewed_routing(tokens, small_layer.K, small_layer.E, 1.23);
  const layer_traffic dense = problem.run(tokens, dense_ids, false);
  const layer_traffic masked = problem.run(tokens, masked_ids, true);

  // The routings keep what they should: the masked one fewer experts, some none at all.
  REQUIRE(masked.active_experts > 0);
  REQUIRE(masked.active_experts < dense.active_experts);
  REQUIRE(dense.active_experts < small_layer.E);

  for (const layer_traffic* t : {&dense, &masked}) {
    CAPTURE(t->active_experts);
    check_within_ideal(*t);
    CHECK_EQ(t->inactive_experts_read, 0);        // no sector of an expert without a pair
    CHECK_EQ(t->active_experts_partly_read, 0);   // every active expert's weights read
  }
  CHECK(masked.distinct_bytes < dense.distinct_bytes);
}

TEST_CASE("decode traffic: e4m3 experts with block scales: within 5% of their ideal, GEMMs at most 0.53 x the bf16 bytes") {
  traffic_problem<__nv_bfloat16> bf16_problem(small_layer, tokens);
  traffic_problem<__nv_fp8_e4m3> e4m3_problem(small_layer, tokens);
  for (double avg_k : {double(small_layer.K), 1.23}) {
    CAPTURE(avg_k);
    const auto ids = skewed_routing(tokens, small_layer.K, small_layer.E, avg_k);
    const bool mask = avg_k < small_layer.K;
    const layer_traffic bf16 = bf16_problem.run(tokens, ids, mask), e4m3 = e4m3_problem.run(tokens, ids, mask);
    REQUIRE(e4m3.active_experts == bf16.active_experts);
    check_within_ideal(e4m3);
    CHECK_EQ(e4m3.inactive_experts_read, 0);
    CHECK_EQ(e4m3.active_experts_partly_read, 0);
    CAPTURE(e4m3.distinct_bytes / bf16.distinct_bytes);  // the routers stay bf16
    CHECK(e4m3.distinct_bytes < bf16.distinct_bytes);
    CHECK(beam::bench::gemm_bytes(e4m3.launches) <= 0.53 * beam::bench::gemm_bytes(bf16.launches));
    CHECK(e4m3.launches.size() == bf16.launches.size());  // the same three launches
    for (const auto& l : e4m3.launches) {
      if (!beam::bench::is_gemm(l)) continue;
      CHECK(beam::bench::sector_efficiency(beam::bench::operand_reads(l)) >= 0.95);
      CHECK(beam::bench::bank_conflicts(l) == 0);  // the e4m3 tiles' copies and reads included
    }
  }
}

TEST_CASE("decode traffic: a padded batch reads no weight sector for its padding tokens") {
  // T = 4 tokens, 1 valid: the router would route the three padding tokens to experts token 0
  // does not use; with the count they get no pair, so those experts stay unread.
  traffic_problem problem(small_layer, tokens);
  const auto ids = skewed_routing(tokens, small_layer.K, small_layer.E, small_layer.K);
  std::vector<char> first(small_layer.E, 0);
  for (int k = 0; k < small_layer.K; ++k) first[size_t(ids[size_t(k)])] = 1;
  int padding_only = 0;
  for (size_t i = small_layer.K; i < ids.size(); ++i) padding_only += !first[size_t(ids[i])];
  REQUIRE(padding_only > 0);  // the check below can fail
  for (bool mask : {false, true}) {
    CAPTURE(mask);
    const layer_traffic t = problem.run(tokens, ids, mask, beam::device::gemm_schedule::automatic, 1);
    CHECK_EQ(t.active_experts, small_layer.K);  // token 0's experts
    CHECK_EQ(t.inactive_experts_read, 0);  // no sector of an expert only the padding would use
    CHECK_EQ(t.active_experts_partly_read, 0);
    check_within_ideal(t);
  }
}

TEST_CASE("decode traffic: every GEMM schedule streams full sectors without bank conflicts") {
  using beam::device::gemm_schedule;
  traffic_problem problem(small_layer, tokens);
  const auto masked_ids = skewed_routing(tokens, small_layer.K, small_layer.E, 1.23);
  for (gemm_schedule schedule : {gemm_schedule::decode, gemm_schedule::prefill, gemm_schedule::prefill_sm80}) {
    CAPTURE(int(schedule));
    const layer_traffic t = problem.run(tokens, masked_ids, true, schedule);
    check_within_ideal(t);
    CHECK_EQ(t.inactive_experts_read, 0);
    int gemms = 0;
    for (const auto& l : t.launches) {
      if (!beam::bench::is_gemm(l)) continue;
      ++gemms;
      CAPTURE(l.kernel);
      CHECK(beam::bench::operand_reads(l).sectors > 0);
      CHECK(beam::bench::sector_efficiency(beam::bench::operand_reads(l)) >= 0.95);
      CHECK_EQ(beam::bench::bank_conflicts(l), 0u);  // ldmatrix, cp.async writes, epilogue
    }
    // GEMM 1 and 2 of the routed and of the shared expert: in two launches at decode, four else.
    CHECK_EQ(gemms, schedule == gemm_schedule::decode ? 2 : 4);
  }
}

TEST_CASE("decode traffic: zero-computation experts read no FFN weight sector, with some pairs or every pair theirs") {
  // The small layer with four identity experts (LongCat-Flash's zero-computation experts), ids
  // 16..19: every token's even slots go to them, then every slot.
  model_shape shape = small_layer;
  shape.identity_experts = 4;
  traffic_problem problem(shape, tokens);
  auto some = skewed_routing(tokens, shape.K, shape.E, shape.K), all = some;
  for (size_t p = 0; p < some.size(); ++p) {
    const int k = int(p % size_t(shape.K));
    if (k % 2 == 0) some[p] = shape.E + k;
    all[p] = shape.E + k;
  }
  for (bool mask : {false, true}) {
    CAPTURE(mask);
    const layer_traffic partly = problem.run(tokens, some, mask);
    REQUIRE(partly.active_experts > 0);
    CHECK_EQ(partly.inactive_experts_read, 0);  // the FFN experts of no pair: not one sector
    CHECK_EQ(partly.active_experts_partly_read, 0);
    check_within_ideal(partly);
    const layer_traffic none = problem.run(tokens, all, mask);  // every pair a zero-computation expert
    CHECK_EQ(none.active_experts, 0);
    CHECK_EQ(none.pairs, 0.0);
    CHECK_EQ(none.inactive_experts_read, 0);
    check_within_ideal(none);
    CHECK(none.distinct_bytes < partly.distinct_bytes);
  }
}

TEST_CASE("decode traffic: the inactive-expert check sees the experts a routing reads") {
  // The dense Top-K forward reads experts that the masked routing switched off: counted against
  // the masked routing's inactive set, they are reads of inactive experts. (The check is the
  // profile's per-sector map of the weights; here it must fire.)
  traffic_problem problem(small_layer, tokens);
  const auto dense_ids = skewed_routing(tokens, small_layer.K, small_layer.E, small_layer.K);
  const auto masked_ids = skewed_routing(tokens, small_layer.K, small_layer.E, 1.23);
  const layer_traffic masked = problem.run(tokens, masked_ids, true);
  const layer_traffic dense = problem.run(tokens, dense_ids, false);  // the session map is now dense's
  std::vector<char> active(small_layer.E, 0);
  for (int32_t e : masked_ids)
    if (e >= 0) active[size_t(e)] = 1;
  int switched_off_but_read = 0;
  for (int e = 0; e < small_layer.E; ++e) {
    if (!active[size_t(e)] && problem.expert_sectors_read(e) > 0) ++switched_off_but_read;
  }
  CHECK_EQ(switched_off_but_read, dense.active_experts - masked.active_experts);
  CHECK(switched_off_but_read > 0);
}

TEST_CASE("decode latency: three launches (routing and compaction, GEMM 1, GEMM 2 and the combine), shared expert included") {
  traffic_problem problem(small_layer, tokens);
  for (int64_t T : {int64_t(1), tokens}) {
    for (double avg_k : {double(small_layer.K), 1.23, 0.0}) {
      CAPTURE(T);
      CAPTURE(avg_k);
      const layer_traffic t = problem.run(T, skewed_routing(T, small_layer.K, small_layer.E, avg_k), avg_k < 4);
      std::vector<std::string> kernels;
      for (const auto& l : t.launches) kernels.push_back(beam::bench::kernel_short_name(l.kernel));
      CHECK(kernels == std::vector<std::string>{"route_decode_kernel", "layer_gemm_kernel", "layer_gemm_kernel"});
      CHECK_EQ(t.memsets, 0u);
    }
  }
}

TEST_CASE("decode latency: combine waits for two dependent round trips (the rows' indices, then the rows)") {
  // The combine's own launch, where the GEMMs do not take the decode schedule.
  traffic_problem problem(small_layer, tokens);
  for (int64_t T : {int64_t(1), tokens}) {
    CAPTURE(T);
    const layer_traffic t = problem.run(T, skewed_routing(T, small_layer.K, small_layer.E, 1.23), true,
                                        beam::device::gemm_schedule::prefill);
    int combines = 0;
    for (const auto& l : t.launches) {
      if (beam::bench::kernel_short_name(l.kernel) != "combine_kernel") continue;
      ++combines;
      CHECK_EQ(l.round_trips, 2u);  // K = 4: one group of pairs in flight
      CHECK(l.warps() >= uint64_t(T) * small_layer.H / 8 / 32);  // a thread per 16-byte vector
    }
    CHECK_EQ(combines, 1);
  }
}

TEST_CASE("decode latency: no memset; on sm_90 every launch after the first is a programmatic dependent launch") {
  cudaDeviceProp prop{};
  REQUIRE_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  traffic_problem problem(small_layer, tokens);
  const layer_traffic t = problem.run(tokens, skewed_routing(tokens, small_layer.K, small_layer.E, 1.23), true);
  CHECK_EQ(t.memsets, 0u);  // route_decode's counter resets itself, its compaction stores the status word
  REQUIRE(t.launches.size() > 1);
  CHECK_FALSE(t.launches[0].programmatic);  // route_decode follows a copy, not a kernel
  for (size_t i = 1; i < t.launches.size(); ++i) {
    CAPTURE(t.launches[i].kernel);
    CHECK_EQ(t.launches[i].programmatic, prop.major >= 9);
  }
}
