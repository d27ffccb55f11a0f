// The traffic report: the BEAM layer forward at decode shapes of real models, counted on the
// emulator (no GPU needed). For each model, T and Avg.K (the benchmarks' skewed routing, mask
// on) beside dense Top-K on the same weights and experts: launches, distinct DRAM bytes
// (each launch's distinct sectors, as with an L2 that holds a launch's footprint), the ideal
// bytes, their ratio, weight sectors of inactive experts read, per kernel the sectors per
// request, sector efficiency and bank conflicts, and the time those bytes take at the H100's
// 3.35 TB/s (an estimate from counted bytes, not a measurement); and the latency side: per
// launch the warps and the longest chain of dependent global round trips, per forward the
// memsets and the latency estimated by layer_traffic.cuh's latency_model (as launched, with
// programmatic dependent launch where a launch had it, and as if every launch were plain).
//
//   bench_traffic [--models 0,1,2] [--tokens 1,4,16,64] [--avg-k K,K/2,1.23,0.56] [--schedule S]
//                 [--weights bf16|e4m3] [--out PREFIX]
//
// Avg.K targets of the masked rows: numbers, K or K/2 (each model's). S: the expert GEMMs'
// schedule, automatic (default), decode, prefill or prefill_sm80. With e4m3 weights (block_128
// scales) every forward also runs with bf16 weights on the same routing, for the ratio of
// their bytes: the layer's and the expert GEMMs' (the bf16_* and gemm_bytes columns; the
// 0.53 target is on the GEMMs, since the routers' bf16 weights are no fp8 bytes).
// writes PREFIX.csv (a row per layer forward), PREFIX-kernels.csv (a row per launch) and
// PREFIX.jsonl (a row per layer forward with every launch's emulator record), prints a
// Markdown table and the targets met or missed; exits 1 if one is missed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "layer_traffic.cuh"

namespace {

using namespace beam::bench;

constexpr double hbm_bytes_per_s = 3.35e12;  // H100 SXM5 HBM3, the datasheet figure

std::vector<std::string> split(const char* text) {
  std::vector<std::string> v;
  std::stringstream s(text);
  for (std::string item; std::getline(s, item, ',');) v.push_back(item);
  return v;
}

std::vector<int> parse_list(const char* text) {
  std::vector<int> v;
  for (const std::string& item : split(text)) v.push_back(std::stoi(item));
  return v;
}

//! An Avg.K target: "K", "K/2" or a number.
double avg_k_target(const std::string& text, int K) {
  if (text == "K") return K;
  if (text == "K/2") return K / 2.0;
  return std::stod(text);
}

struct row {
  std::string model;
  int64_t T;
  double target, avg_k;
  bool masked;
  layer_traffic traffic;
  double bf16_bytes = 0, bf16_gemm_bytes = 0;  //!< e4m3 weights: the same forward's with bf16 weights
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> models = {0, 1, 2}, tokens = {1, 4, 16, 64};
  std::vector<std::string> avg_ks = {"K", "K/2", "1.23", "0.56"};
  std::string prefix = "traffic";
  bool e4m3 = false;
  using beam::device::gemm_schedule;
  const char* const schedule_names[] = {"automatic", "decode", "prefill", "prefill_sm80"};
  gemm_schedule schedule = gemm_schedule::automatic;
  const auto schedule_named = [&](const char* name) {
    for (int s = 0; s < 4; ++s) {
      if (!std::strcmp(name, schedule_names[s])) return s;
    }
    return -1;
  };
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (has_value && !std::strcmp(argv[i], "--models")) models = parse_list(argv[++i]);
    else if (has_value && !std::strcmp(argv[i], "--tokens")) tokens = parse_list(argv[++i]);
    else if (has_value && !std::strcmp(argv[i], "--avg-k")) avg_ks = split(argv[++i]);
    else if (has_value && !std::strcmp(argv[i], "--out")) prefix = argv[++i];
    else if (has_value && !std::strcmp(argv[i], "--weights") &&
             (!std::strcmp(argv[i + 1], "bf16") || !std::strcmp(argv[i + 1], "e4m3")))
      e4m3 = !std::strcmp(argv[++i], "e4m3");
    else if (has_value && !std::strcmp(argv[i], "--schedule") && schedule_named(argv[i + 1]) >= 0)
      schedule = gemm_schedule(schedule_named(argv[++i]));
    else {
      std::fprintf(stderr, "usage: %s [--models 0,1,2] [--tokens 1,4,16,64] [--avg-k K,K/2,1.23,0.56] "
                           "[--schedule automatic|decode|prefill|prefill_sm80] [--weights bf16|e4m3] [--out PREFIX]\n",
                   argv[0]);
      return 2;
    }
  }
  cudaDeviceProp prop{};
  traffic_try(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  if (std::strncmp(prop.name, "beam emulated", 13) != 0) {
    std::printf("bench_traffic counts on the emulator; linked with libcudart it has nothing to count\n");
    return 0;
  }
  std::ofstream csv(prefix + ".csv"), kernels(prefix + "-kernels.csv"), jsonl(prefix + ".jsonl");
  for (std::ofstream* f : {&csv, &kernels, &jsonl}) *f << std::setprecision(12);  // byte counts exact
  csv << "model,T,avg_k_target,avg_k,routing,launches,active_experts,distinct_bytes,ideal_bytes,ratio,"
         "requested_read_bytes,inactive_experts_read,active_experts_partly_read,hbm_estimate_us,memsets,"
         "round_trips,latency_estimate_us,latency_estimate_plain_us,gemm_bytes,bf16_distinct_bytes,bf16_gemm_bytes\n";
  kernels << "model,T,avg_k_target,routing,launch,kernel,grid,distinct_bytes,read_requests,sectors_per_request,"
             "sector_efficiency,operand_read_requests,operand_sector_efficiency,shared_requests,bank_conflicts,"
             "tensor_macs,thread_instructions,programmatic,warps,round_trips,round_trip_line,latency_estimate_us\n";
  std::printf("device model: %s; expert GEMM schedule: %s; expert weights: %s\n\n", prop.name,
              schedule_names[int(schedule)], e4m3 ? "e4m3, block_128 scales" : "bf16");
  std::printf("| model | T | Avg.K target | Avg.K | routing | launches + memsets | active experts | distinct MB | "
              "ideal MB | ratio | requested read MB | inactive experts read | HBM estimate µs | round trips per "
              "launch | latency estimate µs | all plain launches µs |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<row> rows;
  for (int mi : models) {
    const model_shape& m = layer_models[mi];
    const int64_t max_tokens = *std::max_element(tokens.begin(), tokens.end());
    traffic_problem problem(m, max_tokens);
    std::unique_ptr<traffic_problem<__nv_fp8_e4m3>> e4m3_problem;
    if (e4m3) e4m3_problem = std::make_unique<traffic_problem<__nv_fp8_e4m3>>(m, max_tokens);
    // One forward: bf16 weights, or e4m3 ones beside bf16 on the same routing.
    const auto forward = [&](int T, double target, bool masked, const std::vector<int32_t>& ids) {
      row r{m.name, T, target, 0, masked, {}};
      r.traffic = e4m3 ? e4m3_problem->run(T, ids, masked, schedule) : problem.run(T, ids, masked, schedule);
      if (e4m3) {
        const layer_traffic bf16 = problem.run(T, ids, masked, schedule);
        r.bf16_bytes = bf16.distinct_bytes;
        r.bf16_gemm_bytes = gemm_bytes(bf16.launches);
      }
      return r;
    };
    for (int T : tokens) {
      std::vector<row> group;
      group.push_back(forward(T, double(m.K), false, skewed_routing(T, m.K, m.E, double(m.K))));
      for (const std::string& a : avg_ks) {
        const double target = avg_k_target(a, m.K);
        group.push_back(forward(T, target, true, skewed_routing(T, m.K, m.E, target)));
      }
      for (row& r : group) {
        const layer_traffic& t = r.traffic;
        r.avg_k = t.pairs / double(T);
        const char* routing = r.masked ? "mask" : "dense Top-K";
        const double us = t.distinct_bytes / hbm_bytes_per_s * 1e6;
        const double latency = latency_model::forward_us(t.launches, t.memsets),
                     latency_plain = latency_model::forward_us(t.launches, t.memsets, false);
        uint64_t round_trips = 0;
        std::string chains;
        for (const auto& l : t.launches) {
          round_trips += l.round_trips;
          chains += (chains.empty() ? "" : " ") + std::to_string(l.round_trips);
        }
        csv << r.model << ',' << T << ',' << r.target << ',' << r.avg_k << ',' << routing << ','
            << t.launches.size() << ',' << t.active_experts << ',' << t.distinct_bytes << ',' << t.ideal_bytes << ','
            << t.distinct_bytes / t.ideal_bytes << ',' << t.requested_read_bytes << ',' << t.inactive_experts_read << ','
            << t.active_experts_partly_read << ',' << us << ',' << t.memsets << ',' << round_trips << ','
            << latency << ',' << latency_plain << ',' << gemm_bytes(t.launches) << ',' << r.bf16_bytes << ','
            << r.bf16_gemm_bytes << '\n';
        std::printf("| %s | %d | %.2f | %.2f | %s | %zu + %llu | %d | %.3f | %.3f | %.4f | %.3f | %d | %.1f | %s | "
                    "%.1f | %.1f |\n",
                    r.model.c_str(), T, r.target, r.avg_k, routing, t.launches.size(),
                    static_cast<unsigned long long>(t.memsets), t.active_experts, t.distinct_bytes * 1e-6,
                    t.ideal_bytes * 1e-6, t.distinct_bytes / t.ideal_bytes, t.requested_read_bytes * 1e-6,
                    t.inactive_experts_read, us, chains.c_str(), latency, latency_plain);
        jsonl << "{\"model\":\"" << r.model << "\",\"T\":" << T << ",\"avg_k_target\":" << r.target
              << ",\"avg_k\":" << r.avg_k << ",\"routing\":\"" << routing << "\",\"distinct_bytes\":"
              << t.distinct_bytes << ",\"ideal_bytes\":" << t.ideal_bytes << ",\"memsets\":" << t.memsets
              << ",\"latency_estimate_us\":" << latency << ",\"latency_estimate_plain_us\":" << latency_plain
              << ",\"launches\":[";
        for (size_t i = 0; i < t.launches.size(); ++i) {
          const auto& l = t.launches[i];
          const auto reads = read_requests(l);
          uint64_t instructions = 0;
          for (uint64_t n : l.thread_instructions) instructions += n;
          kernels << r.model << ',' << T << ',' << r.target << ',' << routing << ',' << i << ','
                  << kernel_short_name(l.kernel) << ',' << l.grid[0] << 'x' << l.grid[1] << 'x' << l.grid[2] << ','
                  << l.distinct_bytes() << ',' << reads.requests << ','
                  << (reads.requests ? double(reads.sectors) / reads.requests : 0) << ',' << sector_efficiency(reads) << ','
                  << operand_reads(l).requests << ',' << sector_efficiency(operand_reads(l)) << ','
                  << l.shared_load.requests + l.shared_store.requests + l.shared_atomic.requests << ','
                  << bank_conflicts(l) << ',' << l.tensor_macs << ',' << instructions << ',' << l.programmatic << ','
                  << l.warps() << ',' << l.round_trips << ',' << l.round_trip_line << ','
                  << latency_model::launch_us(l) << '\n';
          jsonl << (i ? "," : "") << emu::profile::json(l);
        }
        jsonl << "]}\n";
        rows.push_back(std::move(r));
      }
      csv.flush();
      kernels.flush();
      jsonl.flush();
      std::fflush(stdout);
    }
  }

  // The targets (bench/README.md).
  double worst_ratio = 0, worst_relative = 0, worst_efficiency = 1;
  uint64_t gemm_conflicts = 0;
  int inactive_read = 0, partly_read = 0;
  const row* dense = nullptr;
  for (const row& r : rows) {
    const layer_traffic& t = r.traffic;
    worst_ratio = std::max(worst_ratio, t.distinct_bytes / t.ideal_bytes);
    inactive_read += t.inactive_experts_read;
    partly_read += t.active_experts_partly_read;
    if (!r.masked) dense = &r;
    else if (dense && dense->T == r.T && dense->model == r.model) {
      const double counted = t.distinct_bytes / dense->traffic.distinct_bytes;
      const double ideal = t.ideal_bytes / dense->traffic.ideal_bytes;
      worst_relative = std::max(worst_relative, std::fabs(counted / ideal - 1));
    }
    for (const auto& l : t.launches) {
      if (!is_gemm(l)) continue;
      worst_efficiency = std::min(worst_efficiency, sector_efficiency(operand_reads(l)));
      gemm_conflicts += bank_conflicts(l);
    }
  }
  // Latency (estimated, latency_model): Qwen3-30B-A3B at T = 1 and Avg.K 1.23 within 8 µs;
  // dense Top-K at T = 1 within 1.3 × the time its distinct bytes take at the HBM rate.
  double worst_masked_us = 0, worst_dense_excess = 0;
  bool latency_rows = false;
  for (const row& r : rows) {
    if (r.T != 1) continue;
    const double us = latency_model::forward_us(r.traffic.launches, r.traffic.memsets);
    if (r.masked && r.model == layer_models[0].name && r.target == 1.23) {
      worst_masked_us = std::max(worst_masked_us, us);
      latency_rows = true;
    }
    if (!r.masked) {
      worst_dense_excess =
          std::max(worst_dense_excess, us / (r.traffic.distinct_bytes / latency_model::hbm_bytes_per_us));
      latency_rows = true;
    }
  }
  // Launches: at most three per decode forward (T <= 64, the GEMMs in the decode schedule), no memset.
  const bool decode_schedule = schedule == gemm_schedule::automatic || schedule == gemm_schedule::decode;
  size_t most_launches = 0;
  uint64_t memsets = 0;
  for (const row& r : rows) {
    if (r.T > 64 || !decode_schedule) continue;
    most_launches = std::max(most_launches, r.traffic.launches.size());
    memsets += r.traffic.memsets;
  }
  const bool launches_met = most_launches <= 3 && memsets == 0;
  // e4m3 weights: each forward's expert GEMM bytes at most 0.53 x those of its bf16 twin (the
  // whole layer's ratio, routers included, reported beside).
  double worst_e4m3 = 0, worst_e4m3_layer = 0;
  for (const row& r : rows) {
    if (r.bf16_gemm_bytes > 0) worst_e4m3 = std::max(worst_e4m3, gemm_bytes(r.traffic.launches) / r.bf16_gemm_bytes);
    if (r.bf16_bytes > 0) worst_e4m3_layer = std::max(worst_e4m3_layer, r.traffic.distinct_bytes / r.bf16_bytes);
  }
  const bool e4m3_met = !e4m3 || worst_e4m3 <= 0.53;
  const bool ratio_met = worst_ratio <= 1.05, relative_met = worst_relative <= 0.05,
             efficiency_met = worst_efficiency >= 0.95, conflicts_met = gemm_conflicts == 0,
             inactive_met = inactive_read == 0, masked_latency_met = worst_masked_us <= 8.0,
             dense_latency_met = worst_dense_excess <= 1.3;
  std::printf("\ntargets (%zu layer forwards):\n", rows.size());
  std::printf("- distinct DRAM bytes <= 1.05 x ideal: worst %.4f: %s\n", worst_ratio, ratio_met ? "met" : "MISSED");
  std::printf("- masked/dense bytes within 5%% of the ideal ratio: worst %.2f%%: %s\n", 100 * worst_relative,
              relative_met ? "met" : "MISSED");
  std::printf("- GEMM operand reads (cp.async, TMA) >= 95%% sector efficiency: worst %.2f%%: %s\n", 100 * worst_efficiency,
              efficiency_met ? "met" : "MISSED");
  std::printf("- GEMM bank conflicts: %llu: %s\n", static_cast<unsigned long long>(gemm_conflicts),
              conflicts_met ? "met" : "MISSED");
  std::printf("- weight sectors of inactive experts read: in %d forwards' experts: %s\n", inactive_read,
              inactive_met ? "met" : "MISSED");
  std::printf("- active experts with weight sectors left unread: %d\n", partly_read);
  std::printf("- launches per decode forward <= 3 and no memset: at most %zu, %llu memsets: %s\n", most_launches,
              static_cast<unsigned long long>(memsets), launches_met ? "met" : "MISSED");
  if (e4m3) {
    std::printf("- e4m3 weights: expert GEMM bytes <= 0.53 x bf16 weights' on the same routing: worst %.4f: %s "
                "(whole layer, bf16 routers included: worst %.4f)\n",
                worst_e4m3, e4m3_met ? "met" : "MISSED", worst_e4m3_layer);
  }
  if (latency_rows) {
    std::printf("- estimated latency, %s, T = 1, Avg.K 1.23, <= 8 us: %.1f us: %s\n", layer_models[0].name,
                worst_masked_us, masked_latency_met ? "met" : "MISSED");
    std::printf("- estimated latency, dense Top-K, T = 1, <= 1.3 x its HBM time: worst %.2f x: %s\n",
                worst_dense_excess, dense_latency_met ? "met" : "MISSED");
  }
  const bool latency_met = !latency_rows || (masked_latency_met && dense_latency_met);
  return ratio_met && relative_met && efficiency_met && conflicts_met && inactive_met && launches_met && latency_met &&
                 e4m3_met
             ? 0
             : 1;
}
