// The BEAM layer's memory traffic at decode, counted on the emulator (emu::profile): the layer
// forward, moe_forward, with a router that gives a routing of chosen Avg.K, beside the bytes
// that must move.
// Shared by bench_traffic (the report) and the traffic regression test. Runs only when linked
// with beam::emulated_cudart.
#pragma once

#include <cuda_runtime_api.h>
#include <cxxabi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "beam/core/dtype.cuh"
#include "beam/gemm/weights.cuh"
#include "beam/moe/device_moe.cuh"
#include "beam/routing/device_route_decode.cuh"
#include "profile.hpp"
#include "workloads.cuh"

namespace beam::bench {

//! Throws with `what` unless `status` is cudaSuccess.
inline void traffic_try(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

//! "grouped_gemm_kernel" for the mangled name of
//! void beam::detail::grouped_gemm_kernel<...>(...): the last scope of the name before its
//! template or parameter list.
inline std::string kernel_short_name(const std::string& mangled) {
  int status = 0;
  char* text = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  std::string name = status == 0 && text ? text : mangled;
  std::free(text);
  for (const std::string anonymous = "(anonymous namespace)::"; name.find(anonymous) != std::string::npos;)
    name.erase(name.find(anonymous), anonymous.size());
  name.resize(std::min(name.find('<'), name.find('(')));
  const size_t scope = name.find_last_of(": ");
  return scope == std::string::npos ? name : name.substr(scope + 1);
}

//! Sum of request counters.
inline emu::profile::global_requests sum(std::initializer_list<const emu::profile::global_requests*> parts) {
  emu::profile::global_requests g;
  for (const auto* c : parts) {
    g.requests += c->requests;
    g.sectors += c->sectors;
    g.bytes += c->bytes;
  }
  return g;
}
//! The global requests of a launch that read: ld, cp.async, TMA.
inline emu::profile::global_requests read_requests(const emu::profile::launch_record& r) {
  return sum({&r.global_load, &r.async_copy, &r.bulk_tensor});
}
//! A GEMM's operand streams: cp.async and TMA (its ld.global read group offsets and pair indices).
inline emu::profile::global_requests operand_reads(const emu::profile::launch_record& r) {
  return sum({&r.async_copy, &r.bulk_tensor});
}
//! Distinct bytes asked for / bytes of the sectors touched (1 without requests).
inline double sector_efficiency(const emu::profile::global_requests& g) {
  return g.sectors ? double(g.bytes) / (32.0 * double(g.sectors)) : 1.0;
}
//! Shared-memory wavefronts beyond the conflict-free count.
inline uint64_t bank_conflicts(const emu::profile::launch_record& r) {
  uint64_t n = 0;
  for (const auto* c : {&r.shared_load, &r.shared_store, &r.shared_atomic}) n += c->wavefronts - c->ideal_wavefronts;
  return n;
}
inline bool is_gemm(const emu::profile::launch_record& r) {
  return kernel_short_name(r.kernel).find("gemm") != std::string::npos;
}
//! Distinct bytes of the expert GEMMs' launches (the weights, their scales, the rows they read
//! and write).
inline double gemm_bytes(const std::vector<emu::profile::launch_record>& launches) {
  double bytes = 0;
  for (const auto& r : launches) bytes += is_gemm(r) ? double(r.distinct_bytes()) : 0.0;
  return bytes;
}

//! Host-filled device buffer of n values uniform in [lo, hi) from a seed, truncated for an
//! integer T (a device fill kernel would be emulated element by element; weights never are
//! zeros).
template <class T>
class filled_buffer {
 public:
  filled_buffer(size_t n, uint64_t seed, float lo, float hi) {
    traffic_try(cudaMalloc(&data_, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
    std::vector<T> host(n);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (T& v : host) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
      const float u = lo + (hi - lo) * float(x >> 40) * 0x1p-24f;
      if constexpr (std::is_integral_v<T>) v = static_cast<T>(u);
      else v = dtype_traits<T>::from_float(u);
    }
    traffic_try(cudaMemcpy(data_, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  filled_buffer(const filled_buffer&) = delete;
  filled_buffer& operator=(const filled_buffer&) = delete;
  ~filled_buffer() { cudaFree(data_); }
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
};

//! A latency estimate from counts, for an H100 SXM (a model, not a measurement):
//!   t(launch) = c + max(round_trips · L, distinct bytes / B),   t(memset) = c,
//! summed over the layer's stream operations in order. B: HBM3 at 3.35 TB/s (datasheet). L: one
//! dependent global round trip, 288 ns (H100 SXM5 at 1.98 GHz, a single-thread pointer chase
//! through HBM after an L2 flush: 570.5 cycles; github.com/ahmadsharif1/cuda_study, README
//! §3a; an L2 hit measured 131 ns there). c: the gap a stream operation adds after the one
//! before, 1.3 µs in a CUDA graph (Hazy Research, "Look Ma, No Bubbles", 2025: ~2.1 µs per
//! launch on a stream, ~1.3 µs in a graph); a kernel launched with programmatic dependent
//! launch after another pays 0.96 µs less (0.34 µs: pegainfer issue 569, an empty kernel pair
//! on an H100 at 1755 MHz). Unloaded latency, no tail or occupancy effects: a lower bound in
//! spirit, to be replaced by the GPU record's timings.
struct latency_model {
  static constexpr double hbm_bytes_per_us = 3.35e6;
  static constexpr double round_trip_us = 0.288;
  static constexpr double operation_gap_us = 1.3;
  static constexpr double pdl_saving_us = 0.96;

  //! One launch's estimate: as launched (`as_launched`: with programmatic dependent launch where
  //! the record says it had one), or as a plain launch.
  static double launch_us(const emu::profile::launch_record& r, bool as_launched = true) {
    const double body = std::max(r.round_trips * round_trip_us, double(r.distinct_bytes()) / hbm_bytes_per_us);
    return operation_gap_us - (as_launched && r.programmatic ? pdl_saving_us : 0.0) + body;
  }
  //! A forward's estimate: its memsets and its launches.
  static double forward_us(const std::vector<emu::profile::launch_record>& launches, uint64_t memsets,
                           bool as_launched = true) {
    double us = double(memsets) * operation_gap_us;
    for (const auto& l : launches) us += launch_us(l, as_launched);
    return us;
  }
};

//! The counted traffic of one layer forward.
struct layer_traffic {
  std::vector<emu::profile::launch_record> launches;
  uint64_t memsets = 0;       //!< stream operations besides the launches
  double distinct_bytes = 0;  //!< Σ over launches of the distinct sectors read and written · 32
  double ideal_bytes = 0;     //!< see traffic_problem::ideal_bytes
  double requested_read_bytes = 0;  //!< Σ over read requests (read_requests) of their sectors · 32:
                                    //!< what the SMs ask of L2 (above distinct_bytes where tiles re-read)
  int active_experts = 0;     //!< FFN experts with at least one kept pair
  int inactive_experts_read = 0;   //!< experts without a pair of which some weight sector was read
  int active_experts_partly_read = 0;  //!< active experts of which some weight sector was not read
  double pairs = 0;           //!< kept (token, FFN expert) pairs: the GEMM rows
};

//! One layer's weights and the buffers of a decode step of up to `max_tokens` tokens
//! (max_tokens ≤ H). The forward is moe_forward itself, with a router made to give exactly the
//! routing asked for (workloads.cuh: router_for). The experts' weights are W: bf16, or e4m3
//! with block_128 scales (a DeepSeek-V3 / Qwen3-FP8 checkpoint's format).
template <class W = __nv_bfloat16>
class traffic_problem {
 public:
  using bf16 = __nv_bfloat16;
  static constexpr bool e4m3 = std::is_same_v<W, __nv_fp8_e4m3>;
  static constexpr weight_scales scaling = e4m3 ? weight_scales::block_128 : weight_scales::none;

  traffic_problem(const model_shape& shape, int64_t max_tokens)
      : m_(shape), max_tokens_(max_tokens),
        w13_(size_t(shape.E) * 2 * shape.I * shape.H, 2, -0.03f, 0.03f),
        w2_(size_t(shape.E) * shape.H * shape.I, 3, -0.03f, 0.03f),
        w13_scales_(size_t(shape.E) * scales_per_expert(scaling, 2 * shape.I, shape.H, 2), 14, 1e-4f, 1e-3f),
        w2_scales_(size_t(shape.E) * scales_per_expert(scaling, shape.H, shape.I, 1), 15, 1e-4f, 1e-3f),
        shared_w13_scales_(size_t(scales_per_expert(scaling, 2 * shape.I_s, shape.H, 2)), 16, 1e-4f, 1e-3f),
        shared_w2_scales_(size_t(scales_per_expert(scaling, shape.H, shape.I_s, 1)), 17, 1e-4f, 1e-3f),
        router_(size_t(router_experts()) * shape.H, 4, -0.05f, 0.05f),
        mask_router_(size_t(router_experts()) * shape.H, 5, -0.05f, 0.05f),
        shared_w13_(size_t(2) * shape.I_s * shape.H, 6, -0.03f, 0.03f),
        shared_w2_(size_t(shape.H) * shape.I_s, 7, -0.03f, 0.03f), shared_gate_(size_t(shape.H), 13, -0.05f, 0.05f),
        x_(size_t(max_tokens) * shape.H, 1, 0.0f, 0.0f), y_(size_t(max_tokens) * shape.H, 9, -1.0f, 1.0f),
        ids_(size_t(max_tokens) * shape.K, 10, 0.0f, 1.0f), weights_(size_t(max_tokens) * shape.K, 11, 0.0f, 1.0f) {
    // The unit vectors of router_for (the routing only sets the router).
    upload(x_, router_for(std::vector<int32_t>(size_t(max_tokens) * shape.K, -1), max_tokens, shape.K,
                          router_experts(), shape.H).x);
    traffic_try(beam::device::moe_forward<bf16>(nullptr, workspace_bytes_, x_.data(), m_.H, max_tokens, layer(),
                                                options(true), {}),
                "moe_forward (workspace query)");
    traffic_try(cudaMalloc(&workspace_, workspace_bytes_), "cudaMalloc");
    traffic_try(cudaMemset(workspace_, 0, beam::device::workspace_counter_bytes), "cudaMemset");  // once
  }
  ~traffic_problem() { cudaFree(workspace_); }
  traffic_problem(const traffic_problem&) = delete;
  traffic_problem& operator=(const traffic_problem&) = delete;

  const model_shape& shape() const { return m_; }
  //! The router's experts: the FFN experts, then the zero-computation ones.
  int router_experts() const { return m_.E + m_.identity_experts; }

  //! Counts moe_forward of T tokens whose router gives the routing `ids` `[T, K]` (−1: masked,
  //! with the mask on: `mask`; without it, dense Top-K on the same candidates); the expert
  //! GEMMs with `schedule`. With `valid_tokens` ≥ 0, a padded batch: the tokens after the first
  //! `valid_tokens` are padding (routing_options::valid_tokens), and their rows of `ids` count
  //! as −1. Throws if the routing moe_forward exports is not that.
  layer_traffic run(int64_t T, std::vector<int32_t> ids, bool mask,
                    beam::device::gemm_schedule schedule = beam::device::gemm_schedule::automatic,
                    int32_t valid_tokens = -1) {
    if (T < 1 || T > max_tokens_ || ids.size() != size_t(T) * m_.K) throw std::invalid_argument("traffic_problem::run");
    make_router(T, ids);  // padding tokens included: without the count, they would route
    routing_options o = options(mask);
    if (valid_tokens >= 0) {
      traffic_try(cudaMemcpy(valid_.data(), &valid_tokens, sizeof(int32_t), cudaMemcpyHostToDevice), "cudaMemcpy");
      o.valid_tokens = valid_.data();
      for (size_t i = std::min(size_t(valid_tokens) * m_.K, ids.size()); i < ids.size(); ++i) ids[i] = -1;
    }
    emu::profile::start();
    cudaError_t status =
        beam::device::moe_forward<bf16>(workspace_, workspace_bytes_, x_.data(), m_.H, T, layer(), o,
                                        {y_.data(), m_.H, nullptr, 0, ids_.data(), weights_.data(), invalid_.data()},
                                        schedule);
    if (status == cudaSuccess) status = cudaDeviceSynchronize();
    layer_traffic t;
    t.launches = emu::profile::stop();
    t.memsets = emu::profile::memsets();
    traffic_try(status, "layer forward");
    std::vector<int32_t> routed(ids.size());
    traffic_try(cudaMemcpy(routed.data(), ids_.data(), routed.size() * sizeof(int32_t), cudaMemcpyDeviceToHost),
                "cudaMemcpy");
    if (routed != ids) throw std::logic_error("traffic_problem: the router did not give the routing asked for");
    unsigned long long invalid = 1;
    traffic_try(cudaMemcpy(&invalid, invalid_.data(), sizeof(invalid), cudaMemcpyDeviceToHost), "cudaMemcpy");
    if (invalid != 0) throw std::logic_error("traffic_problem: the layer's status word counts skipped ids");
    for (const auto& r : t.launches) {
      t.distinct_bytes += double(r.distinct_bytes());
      t.requested_read_bytes += 32.0 * double(read_requests(r).sectors);
    }
    std::vector<char> active(size_t(m_.E), 0);
    for (int32_t e : ids) {
      if (e >= 0 && e < m_.E) {  // a zero-computation expert's pair has no rows and no weights
        active[size_t(e)] = 1;
        ++t.pairs;
      }
    }
    for (int e = 0; e < m_.E; ++e) {
      const uint64_t read = expert_sectors_read(e);
      if (active[size_t(e)]) {
        ++t.active_experts;
        t.active_experts_partly_read += read != expert_bytes() / 32;
      } else {
        t.inactive_experts_read += read != 0;
      }
    }
    t.ideal_bytes = ideal_bytes(T, t.active_experts, mask);
    return t;
  }

  //! Bytes of one expert's W13 and W2 (without their scales).
  size_t expert_bytes() const { return size_t(3) * m_.I * m_.H * sizeof(W); }

  //! Sectors of expert e's W13 and W2 that the last run() read (the scales' sectors are shared
  //! between neighbouring experts: not counted here).
  uint64_t expert_sectors_read(int e) const {
    const size_t w13 = size_t(2) * m_.I * m_.H, w2 = size_t(m_.H) * m_.I;
    return emu::profile::sectors_read(w13_.data() + size_t(e) * w13, w13 * sizeof(W)) +
           emu::profile::sectors_read(w2_.data() + size_t(e) * w2, w2 * sizeof(W));
  }

  //! Bytes that must move: each distinct active expert's W13 and W2 once (and their scales),
  //! the router's (and with the mask the mask router's) weights over E + Z experts, the shared
  //! expert's (and its scales and gate row), x in and y out, and the routing arrays (ids and
  //! weights, written by the router and read by the experts).
  double ideal_bytes(int64_t T, int active_experts, bool mask) const {
    const double e = sizeof(bf16), w = sizeof(W), s = sizeof(float);
    const double expert_scales = double(scales_per_expert(scaling, 2 * m_.I, m_.H, 2) +
                                        scales_per_expert(scaling, m_.H, m_.I, 1));
    const double shared_scales = double(scales_per_expert(scaling, 2 * m_.I_s, m_.H, 2) +
                                        scales_per_expert(scaling, m_.H, m_.I_s, 1));
    const double experts = double(active_experts) * (3.0 * m_.I * m_.H * w + expert_scales * s);
    const double routers = (mask ? 2.0 : 1.0) * router_experts() * m_.H * e;
    const double shared = 3.0 * m_.I_s * m_.H * w + shared_scales * s + (m_.shared_gate ? m_.H * e : 0.0);
    const double activations = 2.0 * double(T) * m_.H * e;
    const double routing = 2.0 * double(T) * m_.K * (sizeof(int32_t) + sizeof(float));
    return experts + routers + shared + activations + routing;
  }

 private:
  beam::device::moe_layer<bf16, W> layer() const {
    beam::device::moe_layer<bf16, W> l{m_.H,    m_.I, m_.E, w13_.data(), w2_.data(), router_.data(), mask_router_.data(),
                                       m_.I_s, shared_w13_.data(), shared_w2_.data()};
    if (m_.shared_gate) l.shared_gate = shared_gate_.data();
    l.weight_scaling = scaling;
    if constexpr (e4m3) {
      l.w13_scales = w13_scales_.data();
      l.w2_scales = w2_scales_.data();
      l.shared_w13_scales = shared_w13_scales_.data();
      l.shared_w2_scales = shared_w2_scales_.data();
    }
    l.identity_experts = m_.identity_experts;
    return l;
  }
  routing_options options(bool mask) const {
    routing_options o;
    o.top_k = m_.K;
    o.rule = mask ? routing_rule::mask : routing_rule::top_k;
    return o;
  }

  //! W_r and W_m that give the routing `ids` (router_for; x holds the unit vectors already).
  void make_router(int64_t T, const std::vector<int32_t>& ids) {
    const exact_router r = router_for(ids, T, m_.K, router_experts(), m_.H);
    upload(router_, r.w_r);
    upload(mask_router_, r.w_m);
  }
  static void upload(const filled_buffer<bf16>& to, const std::vector<float>& values) {
    std::vector<bf16> host(values.size());
    for (size_t i = 0; i < values.size(); ++i) host[i] = dtype_traits<bf16>::from_float(values[i]);
    traffic_try(cudaMemcpy(to.data(), host.data(), host.size() * sizeof(bf16), cudaMemcpyHostToDevice), "cudaMemcpy");
  }

  model_shape m_;
  int64_t max_tokens_;
  filled_buffer<W> w13_, w2_;
  filled_buffer<float> w13_scales_, w2_scales_, shared_w13_scales_, shared_w2_scales_;
  filled_buffer<bf16> router_, mask_router_;
  filled_buffer<W> shared_w13_, shared_w2_;
  filled_buffer<bf16> shared_gate_, x_, y_;
  filled_buffer<int32_t> ids_, valid_{1, 12, 0.0f, 0.0f};
  filled_buffer<unsigned long long> invalid_{1, 13, 1.0f, 1.0f};  //!< the status word, zeroed by each run
  filled_buffer<float> weights_;
  size_t workspace_bytes_ = 0;
  void* workspace_ = nullptr;
};

}  // namespace beam::bench
