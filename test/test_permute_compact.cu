// beam::device::compact against beam::reference::compact (+ tile_schedule, align_blocks,
// mask_slots), and block::expert_ranking against a host count: every output compares exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "beam/permute/block_rank.cuh"
#include "beam/permute/device_compact.cuh"
#include "beam/reference/permute.cuh"
#include "common/gpu.cuh"

namespace ref = beam::reference;
using beam::device::aligned_layout;
using beam::device::compaction_input;
using beam::device::compaction_layouts;
using beam::device::compaction_outputs;
using beam::device::masked_layout;
using beam::device::tile_schedule;

TEST_CASE("compact: workspace query and bad arguments, before touching the device") {
  int32_t* fake = reinterpret_cast<int32_t*>(0x1000);  // never dereferenced
  const compaction_outputs out{fake, fake, fake, fake};
  void* workspace = reinterpret_cast<void*>(0x2000);
  size_t small = 0, large = 0, huge = 0;
  REQUIRE(beam::device::compact(nullptr, small, {fake, 64, 8, 128}, out) == cudaSuccess);
  REQUIRE(beam::device::compact(nullptr, large, {fake, 16384, 8, 128}, out) == cudaSuccess);
  REQUIRE(beam::device::compact(nullptr, huge, {fake, 65536, 8, 128}, out) == cudaSuccess);
  CHECK(small > 0);  // single launch: a token workspace
  CHECK(large > small);
  CHECK(huge >= large);
  // A query needs only the sizes: null arrays give the same size; bad sizes still fail.
  for (int64_t T : {int64_t(0), int64_t(64), int64_t(16384)}) {
    size_t with_arrays = 0, without = 0;
    REQUIRE(beam::device::compact(nullptr, with_arrays, {fake, T, 8, 128}, out) == cudaSuccess);
    CHECK(beam::device::compact(nullptr, without, {nullptr, T, 8, 128}, {}, {{64}, {16}, {4}}) == cudaSuccess);
    CHECK(without == with_arrays);
  }
  size_t unused = 0;
  CHECK(beam::device::compact(nullptr, unused, {nullptr, -1, 8, 128}, {}) == cudaErrorInvalidValue);
  CHECK(beam::device::compact(nullptr, unused, {nullptr, 64, 8, 1024}, {}) == cudaErrorInvalidValue);
  // Never shrinks as T grows: a size queried for the largest T serves every smaller one.
  size_t previous = 0;
  for (int64_t T = 0; T <= 70000; T += 97) {
    size_t bytes = 0;
    REQUIRE(beam::device::compact(nullptr, bytes, {fake, T, 8, 128}, out) == cudaSuccess);
    CHECK(bytes >= previous);
    previous = bytes;
  }
  const auto call = [&](const compaction_input& in, const compaction_outputs& o, const compaction_layouts& layouts,
                        size_t bytes) { return beam::device::compact(workspace, bytes, in, o, layouts); };
  const auto tiles = [](const tile_schedule& t) { return compaction_layouts{t, {}, {}}; };
  const auto vllm = [](const aligned_layout& a) { return compaction_layouts{{}, a, {}}; };
  const auto deepgemm = [](const masked_layout& m) { return compaction_layouts{{}, {}, m}; };
  CHECK(call({fake, -1, 8, 128}, out, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 0, 128}, out, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({fake, int64_t(1) << 29, 8, 128}, out, {}, huge) == cudaErrorInvalidValue);  // T·K > int32
  CHECK(call({fake, 64, 8, 0}, out, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 1024}, out, {}, huge) == cudaErrorInvalidValue);                // E_local > 512
  CHECK(call({fake, 64, 8, 128, 0, -1, nullptr, -1}, out, {}, huge) == cudaErrorInvalidValue);         // Z < 0
  CHECK(call({fake, 64, 8, 128, 0, -1, nullptr, INT32_MAX}, out, {}, huge) == cudaErrorInvalidValue);  // E + Z
  CHECK(call({fake, 64, 8, 128, 4, 36, fake}, out, {}, huge) == cudaErrorInvalidValue);   // a map: begin 0
  CHECK(call({fake, 64, 8, 128, 64, 32}, out, {}, huge) == cudaErrorInvalidValue);          // empty range
  CHECK(call({fake, 64, 8, 128, 0, 129}, out, {}, huge) == cudaErrorInvalidValue);          // past E
  CHECK(call({fake, 64, 8, 128, -1, 8}, out, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({nullptr, 64, 8, 128}, out, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, {nullptr, fake, fake, fake}, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, {fake, nullptr, fake, fake}, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, {fake, fake, nullptr, fake}, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, {fake, fake, fake, nullptr}, {}, huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, tiles({64, fake, nullptr, fake}), huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, tiles({-1}), huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, vllm({16, fake, fake, nullptr}), huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, vllm({-1}), huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, deepgemm({64, nullptr, fake, fake}), huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, deepgemm({64, fake, nullptr, fake}), huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, deepgemm({64, fake, fake, nullptr}), huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, deepgemm({-1}), huge) == cudaErrorInvalidValue);
  CHECK(call({fake, 64, 8, 128}, out, deepgemm({1 << 24, fake, fake, fake}), huge) ==  // E·max_m > int32
        cudaErrorInvalidValue);
  CHECK(call({fake, 16384, 8, 128}, out, {}, large - 1) == cudaErrorInvalidValue);  // workspace too small
}

namespace {

constexpr int rank_threads = 96, rank_items = 3, rank_max_experts = 70;

//! One block ranks rank_threads·rank_items warp-striped items by expert (the user-kernel
//! pattern of block::expert_ranking), twice on the same storage.
__global__ void block_rank_kernel(const int* experts, int num_experts, int32_t* ranks, int32_t* counts) {
  using ranking = beam::block::expert_ranking<rank_threads, rank_items, rank_max_experts>;
  __shared__ typename ranking::temp_storage storage;
  __shared__ int32_t shared_counts[rank_max_experts];
  const int first = int(threadIdx.x / 32) * 32 * rank_items + int(threadIdx.x % 32);
  int mine[rank_items];
  int32_t my_ranks[rank_items];
  for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses the storage after a barrier
    for (int i = 0; i < rank_items; ++i) mine[i] = experts[pass * rank_threads * rank_items + first + 32 * i];
    ranking(storage).rank(mine, my_ranks, num_experts, shared_counts);
    __syncthreads();
    for (int i = 0; i < rank_items; ++i) ranks[pass * rank_threads * rank_items + first + 32 * i] = my_ranks[i];
    for (int e = int(threadIdx.x); e < num_experts; e += rank_threads) counts[pass * num_experts + e] = shared_counts[e];
    __syncthreads();
  }
}

//! Seeded routing: each pair masked with probability `masked`, else an expert drawn
//! uniformly or skewed (half the pairs to E/8 hot experts); a few invalid ids when asked.
std::vector<int32_t> make_routing(int64_t T, int K, int E, double masked, bool skewed, bool invalid, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int> any(0, E - 1), hot(0, std::max(E / 8, 1) - 1);
  std::vector<int32_t> ids(size_t(T * K));
  for (auto& id : ids) {
    id = u(rng) < masked ? -1 : skewed && u(rng) < 0.5 ? hot(rng) : any(rng);
    if (invalid && u(rng) < 0.01) id = u(rng) < 0.5 ? E + 3 : -7;
  }
  return ids;
}

struct compact_case {
  int64_t T;
  int K, E;
  double masked;
  bool skewed, invalid;
  int begin, end;  //!< local range (end −1: E)
  int block_rows, block_size, max_m;
  unsigned layouts = 7;  //!< bits: 1 tile schedule, 2 vLLM, 4 DeepGEMM (the rest left out)
  int map_ranks = 0;     //!< > 0: rank 1 of that many through an expert_map (round-robin experts)
  int zero_compute = 0;  //!< Z: a fifth of the routed pairs go to zero-computation experts [E, E + Z)
};

//! Rank `rank`'s expert_map of a round-robin placement over `ranks` (global e on rank e mod R as
//! local e / R), with two corrupt entries (local ids past E_local and below −1) when `corrupt`.
std::vector<int32_t> round_robin_map(int E, int ranks, int rank, bool corrupt, int& local) {
  std::vector<int32_t> map(static_cast<size_t>(E));
  local = 0;
  for (int e = 0; e < E; ++e) map[size_t(e)] = e % ranks == rank ? local++ : -1;
  if (corrupt && E >= 4) {
    map[size_t(E - 1)] = local + 2;
    map[size_t(E - 2)] = -5;
  }
  return map;
}

void check_compact(const compact_case& c, uint64_t seed) {
  CAPTURE(c.T);
  CAPTURE(c.K);
  CAPTURE(c.E);
  CAPTURE(c.masked);
  CAPTURE(c.skewed);
  CAPTURE(c.begin);
  CAPTURE(c.end);
  CAPTURE(c.layouts);
  CAPTURE(c.max_m);
  const bool with_tiles = c.layouts & 1, with_vllm = c.layouts & 2, with_deepgemm = c.layouts & 4;
  CAPTURE(c.map_ranks);
  CAPTURE(c.zero_compute);
  auto ids = make_routing(c.T, c.K, c.E, c.masked, c.skewed, c.invalid, seed);
  for (size_t p = 0; p < ids.size() && c.zero_compute > 0; p += 5) {
    if (ids[p] >= 0 && ids[p] < c.E) ids[p] = c.E + int32_t(p / 5 % size_t(c.zero_compute));
  }
  int local = (c.end < 0 ? c.E : c.end) - c.begin;
  const std::vector<int32_t> map =
      c.map_ranks > 0 ? round_robin_map(c.E, c.map_ranks, 1, c.invalid, local) : std::vector<int32_t>{};
  // The range form: ids [E, E + Z) are in range and outside the local experts.
  const ref::compaction expected =
      c.map_ranks > 0 ? ref::compact(ids.data(), c.T, c.K, c.E, map, local, c.zero_compute)
                      : ref::compact(ids.data(), c.T, c.K, c.E + c.zero_compute, c.begin, c.end < 0 ? c.E : c.end);
  const int64_t P = c.T * c.K;
  const ref::tiles expected_tiles = ref::tile_schedule(expected, c.block_rows);
  const ref::aligned_blocks expected_aligned = ref::align_blocks(expected, c.block_size);
  const ref::masked_slots expected_slots = ref::mask_slots(expected, c.max_m);

  beam::test::device_vector<int32_t> d_ids(ids.empty() ? std::vector<int32_t>(1) : ids);
  const size_t pairs = size_t(std::max<int64_t>(P, 1));
  beam::test::device_vector<int32_t> counts{size_t(local)}, offsets{size_t(local) + 1}, sorted{pairs}, rows{pairs};
  const size_t tile_bound = size_t((P + c.block_rows - 1) / c.block_rows + local);
  const size_t slot_bound = size_t(P + int64_t(local) * (c.block_size - 1));
  beam::test::device_vector<int32_t> tile_experts{tile_bound}, tile_rows{tile_bound}, scalars{2};
  beam::test::device_vector<int32_t> token_ids{slot_bound}, block_experts{slot_bound / size_t(c.block_size) + 1};
  beam::test::device_vector<int32_t> slot_pairs{size_t(local) * size_t(c.max_m)}, masked_m{size_t(local)},
      pair_to_slot{pairs};
  beam::test::device_vector<unsigned long long> status{2};  // invalid ids, dropped pairs
  for (auto* v : {&counts, &offsets, &sorted, &rows, &tile_experts, &tile_rows, &scalars, &token_ids, &block_experts,
                  &slot_pairs, &masked_m, &pair_to_slot}) {
    v->poison();
  }
  status.poison();
  beam::test::device_vector<int32_t> d_map(map.empty() ? std::vector<int32_t>(1) : map);
  const compaction_input in = c.map_ranks > 0
                                  ? compaction_input{d_ids.data(), c.T, c.K, c.E, 0, local, d_map.data(), c.zero_compute}
                                  : compaction_input{d_ids.data(), c.T, c.K, c.E, c.begin, c.end, nullptr, c.zero_compute};
  const compaction_outputs out{counts.data(), offsets.data(), sorted.data(), rows.data(), status.data()};
  compaction_layouts layouts;
  if (with_tiles) layouts.tiles = {c.block_rows, tile_experts.data(), tile_rows.data(), scalars.data()};
  if (with_vllm) layouts.vllm = {c.block_size, token_ids.data(), block_experts.data(), scalars.data() + 1};
  if (with_deepgemm) {
    layouts.deepgemm = {c.max_m, slot_pairs.data(), masked_m.data(), pair_to_slot.data(), status.data() + 1};
  }
  size_t bytes = 0;
  REQUIRE(beam::device::compact(nullptr, bytes, in, out, layouts) == cudaSuccess);
  beam::test::device_vector<char> workspace(bytes);
  workspace.poison();
  REQUIRE(beam::device::compact(workspace.data(), bytes, in, out, layouts) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());

  CHECK(counts.to_host() == expected.counts);
  CHECK(offsets.to_host() == expected.offsets);
  const auto words = status.to_host();
  CHECK(words[0] == static_cast<unsigned long long>(expected.invalid_ids));
  const auto s = scalars.to_host();
  if (with_tiles) {
    CHECK(s[0] == int32_t(expected_tiles.experts.size()));
    auto got_experts = tile_experts.to_host(), got_rows = tile_rows.to_host();
    got_experts.resize(expected_tiles.experts.size());
    got_rows.resize(expected_tiles.rows.size());
    CHECK(got_experts == expected_tiles.experts);
    CHECK(got_rows == expected_tiles.rows);
  }
  if (with_vllm) {
    CHECK(s[1] == expected_aligned.num_tokens_post_padded);
    auto got_token_ids = token_ids.to_host(), got_block_experts = block_experts.to_host();
    got_token_ids.resize(expected_aligned.sorted_token_ids.size());
    got_block_experts.resize(expected_aligned.expert_ids.size());
    CHECK(got_token_ids == expected_aligned.sorted_token_ids);
    CHECK(got_block_experts == expected_aligned.expert_ids);
  }
  if (with_deepgemm) {
    CHECK(words[1] == static_cast<unsigned long long>(expected_slots.dropped_pairs));
    CHECK(masked_m.to_host() == expected_slots.masked_m);
    CHECK(slot_pairs.to_host() == expected_slots.slot_pairs);
    if (P > 0) CHECK(pair_to_slot.to_host() == expected_slots.pair_to_slot);
  } else {
    CHECK(std::all_of(words.begin() + 1, words.end(), [](auto w) { return w == ~0ull; }));  // left untouched
  }
  if (P == 0) return;
  auto got_sorted = sorted.to_host();
  got_sorted.resize(size_t(expected.n_active));
  CHECK(got_sorted == expected.sorted_pairs);
  CHECK(rows.to_host() == expected.pair_to_row);
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("compact equals the reference: counts, offsets, sorted_pairs, pair_to_row, tiles, vLLM layout") {
    BEAM_REQUIRE_GPU();
    int n = 0;
    // 512·8 and 4097·1: the one-launch edge (4096 pairs); 4097·16: four launches.
    for (int64_t T : beam::test::sweep<int64_t>({0, 1, 2, 31, 64, 512, 1000, 4097, 16384, 65536}, {0, 1, 31, 512, 4097})) {
      for (int E : beam::test::sweep({1, 8, 60, 64, 128, 256, 512}, {1, 60, 512})) {
        for (int K : beam::test::sweep({1, 2, 4, 6, 8, 16}, {1, 8, 16})) {
          const double masked = std::vector<double>{0.0, 0.5, 0.85, 1.0}[size_t(n % 4)];
          // max_m: T up to 2048 (T never drops with distinct ids per token; these draws may
          // repeat ids, and large T overflows 2048), or a tight 7 or 1 that drops.
          const int max_m = std::vector<int>{int(std::clamp<int64_t>(T, 1, 2048)), 7, 1}[size_t(n / 5 % 3)];
          compact_case c{T, K, E, masked, n % 3 == 0, n % 5 == 0, 0, -1, n % 2 ? 64 : 128, n % 2 ? 16 : 64, max_m,
                         unsigned(n / 4 % 8)};  // every subset of the layouts
          if (n % 7 == 0 && E >= 8) {  // an expert-parallel rank owning the middle quarter
            c.begin = E / 4;
            c.end = E / 2;
          } else if (n % 7 == 3 && E >= 8) {  // a rank of 2 or 4 whose experts an expert_map names
            c.map_ranks = n % 2 ? 2 : 4;
          }
          if (n % 3 == 1) c.zero_compute = n % 2 ? 1 : 9;  // zero-computation ids: no rows, not invalid
          check_compact(c, 10000 + uint64_t(n));
          ++n;
        }
      }
    }
  }

  TEST_CASE("block::expert_ranking: stable ranks and counts equal a host count") {
    BEAM_REQUIRE_GPU();
    for (int E : {1, 5, 70}) {
      CAPTURE(E);
      const int n = rank_threads * rank_items;
      std::vector<int> experts(size_t(2 * n));
      std::mt19937 rng{uint32_t(E)};
      for (int& x : experts) x = int(rng() % uint32_t(E + 1)) - 1;  // −1 (skipped) or an expert
      std::fill(experts.begin() + n, experts.begin() + n + 40, E - 1);  // second pass: a hot expert
      std::vector<int32_t> expected_ranks(experts.size(), -1), expected_counts(size_t(2 * E), 0);
      for (int pass = 0; pass < 2; ++pass) {
        for (int i = 0; i < n; ++i) {  // item order: a stable rank inside each expert
          const int e = experts[size_t(pass * n + i)];
          if (e >= 0) expected_ranks[size_t(pass * n + i)] = expected_counts[size_t(pass * E + e)]++;
        }
      }
      beam::test::device_vector<int> d_experts(experts);
      beam::test::device_vector<int32_t> ranks{experts.size()}, counts{size_t(2 * E)};
      ranks.poison();
      counts.poison();
      block_rank_kernel<<<1, rank_threads>>>(d_experts.data(), E, ranks.data(), counts.data());
      BEAM_CUDA_TRY(cudaGetLastError());
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      CHECK(ranks.to_host() == expected_ranks);
      CHECK(counts.to_host() == expected_counts);
    }
  }

  TEST_CASE("compact replayed from a CUDA graph with new routing equals eager (both paths)") {
    BEAM_REQUIRE_GPU();
    for (int64_t T : {100, 20000}) {  // one launch; four launches
      CAPTURE(T);
      const int K = 8, E = 128;
      const int64_t P = T * K;
      beam::test::device_vector<int32_t> ids(make_routing(T, K, E, 0.5, true, false, 81));
      const auto second = make_routing(T, K, E, 0.85, false, false, 82);
      struct buffers {
        beam::test::device_vector<int32_t> counts{128}, offsets{129}, sorted, rows;
        explicit buffers(int64_t p) : sorted(size_t(p)), rows(size_t(p)) {}
      } graph_out(P), eager_out(P);
      const compaction_input in{ids.data(), T, K, E};
      size_t bytes = 0;
      REQUIRE(beam::device::compact(nullptr, bytes, in, {graph_out.counts.data(), graph_out.offsets.data(),
                                                         graph_out.sorted.data(), graph_out.rows.data()}) ==
              cudaSuccess);
      beam::test::device_vector<char> workspace(bytes);
      const auto run = [&](buffers& b, cudaStream_t stream) {
        REQUIRE(beam::device::compact(workspace.data(), bytes, in,
                                      {b.counts.data(), b.offsets.data(), b.sorted.data(), b.rows.data()}, {},
                                      stream) == cudaSuccess);
      };
      const beam::test::captured_graph graph([&](cudaStream_t stream) { run(graph_out, stream); });
      BEAM_CUDA_TRY(cudaMemcpy(ids.data(), second.data(), second.size() * 4, cudaMemcpyHostToDevice));
      graph.replay();
      run(eager_out, graph.stream());
      BEAM_CUDA_TRY(cudaStreamSynchronize(graph.stream()));
      const auto expected = ref::compact(second.data(), T, K, E);
      CHECK(graph_out.counts.to_host() == expected.counts);
      CHECK(graph_out.rows.to_host() == expected.pair_to_row);
      CHECK(graph_out.rows.to_host() == eager_out.rows.to_host());
    }
  }
}
