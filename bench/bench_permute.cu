// Permutation benchmarks: beam's compaction beside a CUB-composed one (radix sort by expert,
// histogram, scan, inverse scatter), and the gather, the combine and its backward against the
// copy ceiling.
// Routing: skewed (a quarter of the experts get half the pairs), masked to a target Avg.K.
#include <cub/device/device_histogram.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <vector>

#include "beam/permute/device_combine.cuh"
#include "beam/permute/device_compact.cuh"
#include "beam/permute/device_gather.cuh"
#include "common.cuh"

namespace {

using namespace beam::bench;
using bf16 = __nv_bfloat16;

//! A routing on the device with the outputs of its compaction.
struct permute_problem {
  int64_t T;
  int K, E;
  device_buffer<int32_t> ids, counts, offsets, sorted, rows;
  int64_t n_active = 0;
  cudaStream_t stream;

  permute_problem(int64_t tokens, int top_k, int experts, double avg_k)
      : T(tokens), K(top_k), E(experts), ids(size_t(tokens) * top_k), counts(size_t(experts)),
        offsets(size_t(experts) + 1), sorted(size_t(tokens) * top_k), rows(size_t(tokens) * top_k) {
    BEAM_CUDA_TRY(cudaStreamCreate(&stream));
    const auto host = skewed_routing(T, K, E, avg_k);
    for (int32_t id : host) n_active += id >= 0;
    BEAM_CUDA_TRY(cudaMemcpy(ids.data(), host.data(), host.size() * 4, cudaMemcpyHostToDevice));
  }
  ~permute_problem() { cudaStreamDestroy(stream); }
  beam::device::compaction_input input() const { return {ids.data(), T, K, E}; }
  beam::device::compaction_outputs outputs() const {
    return {counts.data(), offsets.data(), sorted.data(), rows.data()};
  }
  //! Compacts the routing once, untimed: the rows that the gather and combine benchmarks read.
  void compact_untimed() {
    size_t bytes = 0;
    BEAM_CUDA_TRY(beam::device::compact(nullptr, bytes, input(), outputs()));
    device_buffer<char> workspace(bytes);
    BEAM_CUDA_TRY(beam::device::compact(workspace.data(), bytes, input(), outputs(), {}, stream));
    BEAM_CUDA_TRY(cudaStreamSynchronize(stream));  // before the workspace goes
  }
};

//! beam::device::compact (with the tile schedule for BM = 128); range: T, E, K, Avg.K index.
void bm_compact(benchmark::State& state) {
  const int K = int(state.range(2));
  permute_problem p(state.range(0), K, int(state.range(1)), target_avg_k(int(state.range(3)), K));
  const int64_t P = p.T * K;
  device_buffer<int32_t> tile_experts{size_t(P / 128 + p.E + 1)}, tile_rows{size_t(P / 128 + p.E + 1)}, n_tiles{1};
  const beam::device::compaction_layouts tiles{{128, tile_experts.data(), tile_rows.data(), n_tiles.data()}, {}, {}};
  size_t bytes = 0;
  BEAM_CUDA_TRY(beam::device::compact(nullptr, bytes, p.input(), p.outputs(), tiles));
  device_buffer<char> workspace(bytes);
  const double s = median_seconds(p.stream, [&] {
    BEAM_CUDA_TRY(beam::device::compact(workspace.data(), bytes, p.input(), p.outputs(), tiles, p.stream));
  });
  state.counters["n_active"] = double(p.n_active);
  report(state, s, double(P) * 4 * 3, 0);  // ids read, pair_to_row written, sorted_pairs written (bound)
}

__global__ void expert_keys_kernel(const int32_t* ids, int64_t pairs, int experts, int32_t* keys, int32_t* pair) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pairs; i += int64_t(gridDim.x) * blockDim.x) {
    keys[i] = ids[i] >= 0 && ids[i] < experts ? ids[i] : experts;  // skipped pairs sort last
    pair[i] = int32_t(i);
  }
}

__global__ void inverse_rows_kernel(const int32_t* sorted, int64_t pairs, const int32_t* offsets, int experts,
                                    int32_t* pair_to_row) {
  const int32_t n_active = offsets[experts];
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pairs; i += int64_t(gridDim.x) * blockDim.x) {
    pair_to_row[sorted[i]] = i < n_active ? int32_t(i) : -1;
  }
}

//! The CUB-composed compaction: keys = expert ids (skipped → E), DeviceRadixSort::SortPairs
//! (stable: token order inside an expert), DeviceHistogram for counts, DeviceScan for
//! offsets, and an inverse scatter for pair_to_row. Same outputs; range as bm_compact.
void bm_cub_compact(benchmark::State& state) {
  const int K = int(state.range(2));
  permute_problem p(state.range(0), K, int(state.range(1)), target_avg_k(int(state.range(3)), K));
  const int64_t P = p.T * K;
  device_buffer<int32_t> keys{size_t(P)}, sorted_keys{size_t(P)}, pair{size_t(P)}, histogram{size_t(p.E) + 1};
  int end_bit = 1;
  while ((1 << end_bit) <= p.E) ++end_bit;
  size_t sort_bytes = 0, histogram_bytes = 0, scan_bytes = 0;
  BEAM_CUDA_TRY(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys.data(), sorted_keys.data(), pair.data(),
                                                p.sorted.data(), P, 0, end_bit, p.stream));
  BEAM_CUDA_TRY(cub::DeviceHistogram::HistogramEven(nullptr, histogram_bytes, keys.data(), histogram.data(), p.E + 2, 0,
                                                    p.E + 1, P, p.stream));
  BEAM_CUDA_TRY(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, histogram.data(), p.offsets.data(), p.E + 1,
                                              p.stream));
  device_buffer<char> sort_temp(sort_bytes), histogram_temp(histogram_bytes), scan_temp(scan_bytes);
  const unsigned grid = unsigned(std::min<int64_t>((P + 255) / 256, 4096));
  const double s = median_seconds(p.stream, [&] {
    expert_keys_kernel<<<grid, 256, 0, p.stream>>>(p.ids.data(), P, p.E, keys.data(), pair.data());
    BEAM_CUDA_TRY(cub::DeviceRadixSort::SortPairs(sort_temp.data(), sort_bytes, keys.data(), sorted_keys.data(),
                                                  pair.data(), p.sorted.data(), P, 0, end_bit, p.stream));
    BEAM_CUDA_TRY(cub::DeviceHistogram::HistogramEven(histogram_temp.data(), histogram_bytes, keys.data(),
                                                      histogram.data(), p.E + 2, 0, p.E + 1, P, p.stream));
    BEAM_CUDA_TRY(cub::DeviceScan::ExclusiveSum(scan_temp.data(), scan_bytes, histogram.data(), p.offsets.data(),
                                                p.E + 1, p.stream));
    inverse_rows_kernel<<<grid, 256, 0, p.stream>>>(p.sorted.data(), P, p.offsets.data(), p.E, p.rows.data());
    BEAM_CUDA_TRY(cudaGetLastError());
  });
  state.counters["n_active"] = double(p.n_active);
  report(state, s, double(P) * 4 * 3, 0);
}

//! gather_rows of H = 2048 bf16 rows; range: T, E, K, Avg.K index.
void bm_gather(benchmark::State& state) {
  const int K = int(state.range(2)), H = 2048;
  permute_problem p(state.range(0), K, int(state.range(1)), target_avg_k(int(state.range(3)), K));
  p.compact_untimed();
  device_buffer<bf16> x{size_t(p.T) * H}, xp{size_t(std::max<int64_t>(p.n_active, 1)) * H};
  fill_uniform(x.data(), x.size(), 21, -1.0f, 1.0f, p.stream);
  l2_flusher l2;
  const double s = median_seconds(
      p.stream,
      [&] {
        BEAM_CUDA_TRY(beam::device::gather_rows(x.data(), H, p.T, H, K, p.sorted.data(), p.offsets.data() + p.E,
                                                xp.data(), H, p.stream));
      },
      20, 3, [&] { l2.flush(p.stream); });
  report(state, s, 2.0 * double(p.n_active) * H * sizeof(bf16), 0);
}

//! combine (ĝ-weighted, deterministic) of H = 2048 bf16 rows; range: T, E, K, Avg.K index.
void bm_combine(benchmark::State& state) {
  const int K = int(state.range(2)), H = 2048;
  permute_problem p(state.range(0), K, int(state.range(1)), target_avg_k(int(state.range(3)), K));
  p.compact_untimed();
  device_buffer<bf16> yp{size_t(std::max<int64_t>(p.n_active, 1)) * H}, out{size_t(p.T) * H};
  device_buffer<float> weights{size_t(p.T) * K};
  fill_uniform(yp.data(), yp.size(), 22, -1.0f, 1.0f, p.stream);
  fill_uniform(weights.data(), weights.size(), 23, 0.0f, 1.0f, p.stream);
  l2_flusher l2;
  const double s = median_seconds(
      p.stream,
      [&] {
        BEAM_CUDA_TRY(beam::device::combine<bf16>(yp.data(), H, p.rows.data(), weights.data(), p.T, H, K, {},
                                                  out.data(), H, p.stream));
      },
      20, 3, [&] { l2.flush(p.stream); });
  report(state, s, (double(p.n_active) + double(p.T)) * H * sizeof(bf16), 0);
}

//! combine_backward of H = 2048 bf16 rows: ∂L/∂ĝ for every pair with a row and ∂L/∂Yp (a
//! training step's rows are every candidate's: Avg.K index 0); range: T, E, K, Avg.K index.
void bm_combine_backward(benchmark::State& state) {
  const int K = int(state.range(2)), H = 2048;
  permute_problem p(state.range(0), K, int(state.range(1)), target_avg_k(int(state.range(3)), K));
  p.compact_untimed();
  const size_t rows = size_t(std::max<int64_t>(p.n_active, 1)) * H;
  device_buffer<bf16> yp{rows}, d_yp{rows}, d_out{size_t(p.T) * H};
  device_buffer<float> weights{size_t(p.T) * K}, d_weights{size_t(p.T) * K};
  fill_uniform(yp.data(), yp.size(), 24, -1.0f, 1.0f, p.stream);
  fill_uniform(d_out.data(), d_out.size(), 25, -1.0f, 1.0f, p.stream);
  fill_uniform(weights.data(), weights.size(), 26, 0.0f, 1.0f, p.stream);
  l2_flusher l2;
  const double s = median_seconds(
      p.stream,
      [&] {
        BEAM_CUDA_TRY(beam::device::combine_backward<bf16>(yp.data(), H, p.rows.data(), weights.data(), d_out.data(),
                                                           H, p.T, H, K, d_weights.data(), d_yp.data(), H,
                                                           p.stream));
      },
      20, 3, [&] { l2.flush(p.stream); });
  // Yp read and ∂L/∂Yp written per row, ∂L/∂y read per token
  report(state, s, (2.0 * double(p.n_active) + double(p.T)) * H * sizeof(bf16), 0);
}

}  // namespace

BENCHMARK(bm_compact)
    ->ArgNames({"T", "E", "K", "avgk"})
    ->ArgsProduct({{1, 8, 64, 512, 4096, 16384, 65536}, {64, 128, 256}, {6, 8}, {0, 1, 2, 3}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_cub_compact)
    ->ArgNames({"T", "E", "K", "avgk"})
    ->ArgsProduct({{1, 8, 64, 512, 4096, 16384, 65536}, {64, 128, 256}, {6, 8}, {0, 1, 2, 3}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_gather)
    ->ArgNames({"T", "E", "K", "avgk"})
    ->ArgsProduct({{4096, 16384, 65536}, {128}, {8}, {0, 1, 2, 3}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bm_combine)
    ->ArgNames({"T", "E", "K", "avgk"})
    ->ArgsProduct({{4096, 16384, 65536}, {128}, {8}, {0, 1, 2, 3}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

BENCHMARK(bm_combine_backward)
    ->ArgNames({"T", "E", "K", "avgk"})
    ->ArgsProduct({{4096, 16384, 65536}, {128}, {8}, {0, 1, 2, 3}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

BEAM_BENCHMARK_MAIN()
