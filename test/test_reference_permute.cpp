// The compaction reference: a hand-worked case, bad ids, expert ranges, random invariants,
// gather/combine (also past 2³¹ elements) and the int32 limits of the engine layouts.
#include <doctest/doctest.h>
#include <sys/mman.h>

#include <random>
#include <stdexcept>
#include <vector>

#include "beam/reference/permute.cuh"
#include "common/testing.hpp"

using beam::reference::compact;

namespace {

//! T·K ids, each −1 with probability `masked`, else a skewed draw over E experts.
std::vector<int32_t> random_ids(int64_t T, int K, int32_t E, double masked, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution is_masked(masked);
  std::geometric_distribution<int32_t> hot(0.2);  // low ids are hot
  std::vector<int32_t> ids(size_t(T * K));
  for (int32_t& id : ids) id = is_masked(rng) ? -1 : hot(rng) % E;
  return ids;
}

}  // namespace

TEST_CASE("hand-worked compaction (the doc comment's example)") {
  const std::vector<int32_t> ids = {2, -1, 0, 2};
  const auto c = compact(ids.data(), 2, 2, 3);
  CHECK(c.counts == std::vector<int32_t>{1, 0, 2});
  CHECK(c.offsets == std::vector<int32_t>{0, 1, 1, 3});
  CHECK(c.sorted_pairs == std::vector<int32_t>{2, 0, 3});
  CHECK(c.pair_to_row == std::vector<int32_t>{1, -1, 0, 2});
  CHECK(c.n_active == 3);
  CHECK(c.invalid_ids == 0);
  CHECK(c.token_of_row(0) == 1);
  CHECK(c.token_of_row(2) == 1);
}

TEST_CASE("hand-worked tile schedule and vLLM block layout") {
  // T = 4, K = 2, E = 3: expert 0 gets pairs {0, 3, 6}, expert 1 none, expert 2 gets {1, 4}.
  const std::vector<int32_t> ids = {0, 2, -1, 0, 2, -1, 0, -1};
  const auto c = compact(ids.data(), 4, 2, 3);
  const auto tiles = beam::reference::tile_schedule(c, 2);
  CHECK(tiles.experts == std::vector<int32_t>{0, 0, 2});
  CHECK(tiles.rows == std::vector<int32_t>{0, 2, 3});
  const auto blocks = beam::reference::align_blocks(c, 4);
  CHECK(blocks.sorted_token_ids == std::vector<int32_t>{0, 3, 6, 8, 1, 4, 8, 8});  // sentinel T·K = 8
  CHECK(blocks.expert_ids == std::vector<int32_t>{0, 2});                        // no block for expert 1
  CHECK(blocks.num_tokens_post_padded == 8);
  CHECK_THROWS_AS(beam::reference::tile_schedule(c, 0), std::invalid_argument);
  CHECK_THROWS_AS(beam::reference::align_blocks(c, 0), std::invalid_argument);
}

TEST_CASE("hand-worked DeepGEMM masked layout (device_compact.cuh's example), and dropped pairs") {
  const std::vector<int32_t> ids = {2, -1, 0, 2, -1, -1, 1, 0};  // T = 4, K = 2, token 2 fully masked
  const auto c = compact(ids.data(), 4, 2, 3);
  CHECK(c.counts == std::vector<int32_t>{2, 1, 2});
  CHECK(c.sorted_pairs == std::vector<int32_t>{2, 7, 6, 0, 3});
  CHECK(c.pair_to_row == std::vector<int32_t>{3, -1, 0, 4, -1, -1, 2, 1});
  const auto tiles = beam::reference::tile_schedule(c, 2);
  CHECK(tiles.experts == std::vector<int32_t>{0, 1, 2});
  CHECK(tiles.rows == std::vector<int32_t>{0, 2, 3});
  const auto slots = beam::reference::mask_slots(c, 4);
  CHECK(slots.masked_m == std::vector<int32_t>{2, 1, 2});
  CHECK(slots.slot_pairs == std::vector<int32_t>{2, 7, 8, 8, 6, 8, 8, 8, 0, 3, 8, 8});  // sentinel T·K = 8
  CHECK(slots.pair_to_slot == std::vector<int32_t>{8, -1, 0, 9, -1, -1, 4, 1});
  CHECK(slots.dropped_pairs == 0);
  const auto tight = beam::reference::mask_slots(c, 1);  // the second pair of experts 0 and 2 has no slot
  CHECK(tight.masked_m == std::vector<int32_t>{1, 1, 1});
  CHECK(tight.slot_pairs == std::vector<int32_t>{2, 6, 0});
  CHECK(tight.pair_to_slot == std::vector<int32_t>{2, -1, 0, -1, -1, -1, 1, -1});
  CHECK(tight.dropped_pairs == 2);
  CHECK_THROWS_AS(beam::reference::mask_slots(c, 0), std::invalid_argument);
}

TEST_CASE("bad ids are skipped and counted; an expert range skips others silently") {
  const std::vector<int32_t> ids = {5, -2, 0, 2, 6, 3};
  const auto all = compact(ids.data(), 3, 2, 6);
  CHECK(all.invalid_ids == 2);  // −2 and 6 (= E)
  CHECK(all.n_active == 4);
  CHECK(all.pair_to_row[1] == -1);
  CHECK(all.pair_to_row[4] == -1);

  const auto local = compact(ids.data(), 3, 2, 6, 2, 4);  // experts 2 and 3 live here
  CHECK(local.counts == std::vector<int32_t>{1, 1});
  CHECK(local.sorted_pairs == std::vector<int32_t>{3, 5});
  CHECK(local.invalid_ids == 2);
  CHECK(local.expert_begin == 2);

  CHECK_THROWS_AS(compact(ids.data(), 3, 2, 6, 4, 2), std::invalid_argument);
  CHECK_THROWS_AS(compact(ids.data(), 3, 2, 6, 0, 7), std::invalid_argument);
  CHECK_THROWS_AS(compact(nullptr, 3, 2, 6), std::invalid_argument);
}

TEST_CASE("T = 0: empty permutation") {
  const auto c = compact(nullptr, 0, 8, 128);
  CHECK(c.n_active == 0);
  CHECK(c.counts == std::vector<int32_t>(128, 0));
  CHECK(c.offsets == std::vector<int32_t>(129, 0));
  CHECK(c.pair_to_row.empty());
}

TEST_CASE("random routing: counts, offsets and a bijection between rows and active pairs") {
  struct shape {
    int64_t T;
    int32_t E;
    int K;
    double masked;
  };
  for (const auto& [T, E, K, masked] : {shape{1, 1, 1, 0.0}, shape{31, 8, 2, 0.5}, shape{64, 60, 4, 0.85},
                                        shape{1000, 128, 8, 0.0}, shape{1000, 64, 6, 1.0},
                                        shape{2048, 512, 16, 0.5}}) {
    CAPTURE(T);
    CAPTURE(E);
    CAPTURE(K);
    CAPTURE(masked);
    const auto ids = random_ids(T, K, E, masked, uint64_t(T + E + K));
    const auto c = compact(ids.data(), T, K, E);
    int64_t expected_active = 0;
    for (int32_t id : ids) expected_active += id >= 0;
    CHECK(c.n_active == expected_active);
    CHECK(c.offsets.front() == 0);
    CHECK(c.offsets.back() == c.n_active);
    for (int32_t e = 0; e < E; ++e) CHECK(c.offsets[e + 1] - c.offsets[e] == c.counts[e]);
    for (int32_t e = 0; e < E; ++e) {
      for (int32_t r = c.offsets[e]; r < c.offsets[e + 1]; ++r) {
        CHECK(ids[c.sorted_pairs[r]] == e);                                 // grouped by expert
        if (r > c.offsets[e]) CHECK(c.sorted_pairs[r - 1] < c.sorted_pairs[r]);  // token order
        CHECK(c.pair_to_row[c.sorted_pairs[r]] == r);                       // inverse
      }
    }
    for (size_t p = 0; p < ids.size(); ++p) CHECK((c.pair_to_row[p] >= 0) == (ids[p] >= 0));
  }
}

TEST_CASE("gather and combine: weighted, pre-scaled, shared, and tokens with no expert") {
  const int64_t T = 5, H = 3;
  const int K = 2;
  const std::vector<int32_t> ids = {1, 0, -1, -1, 1, -1, 0, 1, -1, 0};  // token 1 has none
  const std::vector<double> w = {0.5, 0.25, 0.7, 0.1, 0.3, 0.2, 0.6, 0.4, 0.9, 0.8};
  const auto x = beam::test::random_normal<double>(T * H, 41);
  const auto c = compact(ids.data(), T, K, 2);
  const auto xp = beam::reference::gather_rows(x.data(), H, c);
  REQUIRE(xp.size() == size_t(c.n_active * H));
  for (int64_t r = 0; r < c.n_active; ++r) {
    for (int64_t h = 0; h < H; ++h) CHECK(xp[r * H + h] == x[c.token_of_row(r) * H + h]);
  }
  // Let each expert be "multiply by (1 + expert id)", so Yp is known in closed form.
  std::vector<double> yp(xp.size()), scaled(xp.size());
  for (int64_t r = 0; r < c.n_active; ++r) {
    const int32_t p = c.sorted_pairs[r];
    for (int64_t h = 0; h < H; ++h) {
      yp[r * H + h] = (1 + ids[p]) * xp[r * H + h];
      scaled[r * H + h] = w[p] * yp[r * H + h];
    }
  }
  const auto shared = beam::test::random_normal<double>(T * H, 42);
  const auto out = beam::reference::combine(yp.data(), H, c, w.data(), nullptr);
  const auto out_scaled = beam::reference::combine(scaled.data(), H, c, nullptr, nullptr);
  const auto out_shared = beam::reference::combine(yp.data(), H, c, w.data(), shared.data());
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      double expected = 0.0;
      for (int k = 0; k < K; ++k) {
        const int32_t id = ids[t * K + k];
        if (id >= 0) expected += w[t * K + k] * (1 + id) * x[t * H + h];
      }
      CHECK(out[t * H + h] == doctest::Approx(expected).epsilon(1e-14));
      CHECK(out_scaled[t * H + h] == doctest::Approx(expected).epsilon(1e-14));
      CHECK(out_shared[t * H + h] == doctest::Approx(expected + shared[t * H + h]).epsilon(1e-14));
    }
  }
  for (int64_t h = 0; h < H; ++h) {
    CHECK(out[1 * H + h] == 0.0);  // exactly zero, not stale
    CHECK(out_shared[1 * H + h] == shared[1 * H + h]);
  }
}

namespace {

//! n elements of host memory reserved, not committed (MAP_NORESERVE): a page costs memory only
//! once written and reads as zeros before, so an array past 2³¹ elements fits a test that
//! writes a few rows of it.
template <class T>
class sparse_array {
 public:
  explicit sparse_array(size_t n) : bytes_(n * sizeof(T)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    REQUIRE(p != MAP_FAILED);
    data_ = static_cast<T*>(p);
  }
  sparse_array(const sparse_array&) = delete;
  sparse_array& operator=(const sparse_array&) = delete;
  ~sparse_array() { munmap(data_, bytes_); }
  T* data() const { return data_; }

 private:
  size_t bytes_;
  T* data_ = nullptr;
};

}  // namespace

TEST_CASE("gather and combine index rows that start past 2³¹ elements (T·K·H > 2³¹)") {
  // X [T, H] and Yp [rows, H] in float, 4.3 GB each, of which a few rows are written.
  const int64_t H = 4096, T = (int64_t(1) << 31) / H + 4;
  const int K = 2;
  sparse_array<float> x(size_t(T * H)), yp(size_t(T * H));
  const int64_t tokens[3] = {T - 1, T - 3, 5};
  for (int i = 0; i < 3; ++i) {
    for (int64_t h = 0; h < H; ++h) {
      x.data()[tokens[i] * H + h] = float(i + 1) + float(h) / 8.0f;
      yp.data()[tokens[i] * H + h] = float(10 * (i + 1)) - float(h) / 4.0f;
    }
  }
  // Rows 0, 1, 2: pairs (T − 1, 1), (T − 3, 0), (5, 1).
  beam::reference::compaction c;
  c.tokens = T;
  c.top_k = K;
  c.counts = {3};
  c.offsets = {0, 3};
  c.sorted_pairs = {int32_t(tokens[0] * K + 1), int32_t(tokens[1] * K), int32_t(tokens[2] * K + 1)};
  c.n_active = 3;
  const auto xp = beam::reference::gather_rows(x.data(), H, c);
  REQUIRE(xp.size() == size_t(3 * H));
  for (int i = 0; i < 3; ++i) {
    for (int64_t h = 0; h < H; ++h) CHECK(xp[size_t(i * H + h)] == float(i + 1) + float(h) / 8.0f);
  }
  // Two tokens, K = 2, whose pairs name rows T − 1, none; 5 and T − 3 of Yp.
  beam::reference::compaction two;
  two.tokens = 2;
  two.top_k = K;
  two.pair_to_row = {int32_t(tokens[0]), -1, int32_t(tokens[2]), int32_t(tokens[1])};
  const std::vector<float> w = {0.5f, 3.0f, 2.0f, -1.0f};
  const auto y = beam::reference::combine(yp.data(), H, two, w.data(), nullptr);
  for (int64_t h = 0; h < H; ++h) {
    CHECK(y[size_t(h)] == 0.5f * (10.0f - float(h) / 4.0f));
    CHECK(y[size_t(H + h)] == 2.0f * (30.0f - float(h) / 4.0f) - (20.0f - float(h) / 4.0f));
  }
}

TEST_CASE("vLLM and DeepGEMM layouts refuse slot numbers past 2³¹ − 1") {
  beam::reference::compaction c;
  c.tokens = int64_t(1) << 30;
  c.top_k = 2;  // T·K = 2³¹: no padding slot fits
  c.counts = {0};
  c.offsets = {0, 0};
  CHECK_THROWS_AS(beam::reference::align_blocks(c, 1), std::invalid_argument);
  c.tokens = 1 << 20;
  c.counts.assign(3, 0);
  c.offsets.assign(4, 0);
  CHECK_NOTHROW(beam::reference::align_blocks(c, 64));
  CHECK_THROWS_AS(beam::reference::align_blocks(c, 1 << 30), std::invalid_argument);  // E·(bs − 1) > 2³¹
  CHECK_THROWS_AS(beam::reference::mask_slots(c, 1 << 30), std::invalid_argument);    // E·max_m > 2³¹
}

TEST_CASE("an expert_map keeps this rank's experts under their local ids; a range is the map of a block") {
  // E = 6 on 2 ranks round-robin: rank 1 holds 1, 3, 5 as local 0, 1, 2.
  const std::vector<int32_t> ids = {1, 0, -1, 5, 3, 1, 2, 4, 7, 5};  // 7 ≥ E: invalid
  const std::vector<int32_t> map = {-1, 0, -1, 1, -1, 2};
  const auto c = compact(ids.data(), 5, 2, 6, map, 3);
  CHECK(c.counts == std::vector<int32_t>{2, 1, 2});
  CHECK(c.sorted_pairs == std::vector<int32_t>{0, 5, 4, 3, 9});
  CHECK(c.pair_to_row == std::vector<int32_t>{0, -1, -1, 3, 2, 1, -1, -1, -1, 4});
  CHECK(c.invalid_ids == 1);
  // A map with a value outside [−1, E_local) skips and counts that id's pairs.
  const auto bad = compact(ids.data(), 5, 2, 6, {-1, 0, -1, 3, -1, 2}, 3);
  CHECK(bad.counts == std::vector<int32_t>{2, 0, 2});
  CHECK(bad.invalid_ids == 2);
  // The range [2, 4) is the map {−1, −1, 0, 1, −1, −1}.
  const auto range = compact(ids.data(), 5, 2, 6, 2, 4);
  const auto mapped = compact(ids.data(), 5, 2, 6, {-1, -1, 0, 1, -1, -1}, 2);
  CHECK(range.counts == mapped.counts);
  CHECK(range.sorted_pairs == mapped.sorted_pairs);
  CHECK(range.pair_to_row == mapped.pair_to_row);
  CHECK_THROWS_AS(compact(ids.data(), 5, 2, 6, map, 0), std::invalid_argument);
  CHECK_THROWS_AS(compact(ids.data(), 5, 2, 6, std::vector<int32_t>(5, -1), 3), std::invalid_argument);
}

TEST_CASE("hand-worked replica choice and dispatch layout") {
  // Logical 0 has physical replicas {0, 4}, logical 1 only {1}: pair p takes replica p mod count.
  const std::vector<int32_t> ids = {0, 1, 0, -1, 9, 0};
  const auto physical = beam::reference::select_replicas(ids, 2, {0, 4, 1, 1}, {2, 1}, 2);
  CHECK(physical == std::vector<int32_t>{0, 1, 0, -1, -2, 4});
  // 3 tokens, K = 2, E = 4 on 2 ranks (experts 0, 1 | 2, 3).
  const std::vector<int32_t> routed = {0, 1, 3, -1, -1, -1};
  const auto d = beam::reference::dispatch_layout(routed.data(), 3, 2, 4, 2);
  CHECK(d.tokens_per_rank == std::vector<int32_t>{1, 1});  // token 0 counts once on rank 0; token 2 nowhere
  CHECK(d.pairs_per_expert == std::vector<int32_t>{1, 1, 0, 1});
  CHECK(d.token_in_rank == std::vector<uint8_t>{1, 0, 0, 1, 0, 0});
  CHECK_THROWS_AS(beam::reference::dispatch_layout(routed.data(), 3, 2, 4, 3), std::invalid_argument);
}
