// beam::device::moe_forward and moe_experts_forward against beam::reference::moe_forward /
// moe_experts_forward: routing ids exactly (router inputs on a grid, so the logits are exact
// on both sides), outputs to the dtype tolerance; every schedule, both router paths, mask on
// and off, shared expert and residual, graph replay. The training forward and the straight-
// through estimator's path back to the routers (combine_backward, route_backward) against
// reference::moe_forward, topk_weight_grad and routing_backward.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "beam/moe/device_moe.cuh"
#include "beam/moe/device_moe_training.cuh"
#include "beam/reference/moe.cuh"
#include "beam/reference/permute.cuh"
#include "beam/reference/training.cuh"
#include "common/gpu.cuh"
#include "common/routing_inputs.cuh"
#include "common/testing.hpp"

namespace ref = beam::reference;
using beam::device::gemm_schedule;
using beam::device::moe_layer;
using beam::device::moe_outputs;
using bf16 = __nv_bfloat16;

TEST_CASE("moe_forward: workspace query and bad arguments, before touching the device") {
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  const auto fake_ids = [] { return reinterpret_cast<const int32_t*>(0x3000); };
  const auto fake_weights = [] { return reinterpret_cast<const float*>(0x4000); };
  const moe_layer<bf16> layer{2048, 768, 128, fake, fake, fake, fake};
  beam::routing_options opt;
  opt.top_k = 8;
  const moe_outputs<bf16> out{fake, 2048};
  size_t small = 0, large = 0;
  REQUIRE(beam::device::moe_forward<bf16>(nullptr, small, fake, 2048, 64, layer, opt, out) == cudaSuccess);
  REQUIRE(beam::device::moe_forward<bf16>(nullptr, large, fake, 2048, 8192, layer, opt, out) == cudaSuccess);
  CHECK(large > small);
  size_t previous = 0;  // never shrinks as T grows (the router path changes at T = 65)
  for (int64_t T = 0; T <= 300; ++T) {
    size_t bytes = 0;
    REQUIRE(beam::device::moe_forward<bf16>(nullptr, bytes, fake, 2048, T, layer, opt, out) == cudaSuccess);
    CHECK(bytes >= previous);
    previous = bytes;
  }
  // A query needs only the sizes: null pointers give the same size; bad sizes still fail.
  const moe_layer<bf16> shapes{2048, 768, 128};
  for (int64_t T : {int64_t(0), int64_t(64), int64_t(8192)}) {
    size_t with_pointers = 0, without = 0, experts_with = 0, experts_without = 0;
    REQUIRE(beam::device::moe_forward<bf16>(nullptr, with_pointers, fake, 2048, T, layer, opt, out) == cudaSuccess);
    CHECK(beam::device::moe_forward<bf16>(nullptr, without, nullptr, 0, T, shapes, opt, {}) == cudaSuccess);
    CHECK(without == with_pointers);
    REQUIRE(beam::device::moe_experts_forward<bf16>(nullptr, experts_with, fake, 2048, T, layer, fake_ids(), fake_weights(),
                                                    8, out) == cudaSuccess);
    CHECK(beam::device::moe_experts_forward<bf16>(nullptr, experts_without, nullptr, 0, T, shapes, nullptr, nullptr, 8,
                                                  {}) == cudaSuccess);
    CHECK(experts_without == experts_with);
  }
  size_t unused = 0;
  CHECK(beam::device::moe_forward<bf16>(nullptr, unused, nullptr, 0, 64, {2044, 768, 128}, opt, {}) ==
        cudaErrorInvalidValue);  // H % 8, even in a query
  {  // e4m3 experts: H, I and I_s multiples of 16 (a query checks it), scales where the scaling needs them
    using e4m3 = __nv_fp8_e4m3;
    const e4m3* codes = reinterpret_cast<const e4m3*>(0x5000);
    moe_layer<bf16, e4m3> fp8{2048, 768, 128, codes, codes, fake, fake};
    fp8.weight_scaling = beam::weight_scales::block_128;
    fp8.w13_scales = fp8.w2_scales = fake_weights();
    size_t fp8_bytes = 0, bf16_bytes = 0;
    CHECK(beam::device::moe_forward<bf16>(nullptr, fp8_bytes, fake, 2048, 64, fp8, opt, out) == cudaSuccess);
    CHECK(beam::device::moe_forward<bf16>(nullptr, bf16_bytes, fake, 2048, 64, layer, opt, out) == cudaSuccess);
    CHECK(fp8_bytes == bf16_bytes);  // the weights' type changes no buffer
    for (auto [H, I, I_s] : {std::tuple{2040, 768, 0}, std::tuple{2048, 776, 0}, std::tuple{2048, 768, 24}}) {
      moe_layer<bf16, e4m3> odd = fp8;
      odd.hidden = H;
      odd.intermediate = I;
      odd.shared_intermediate = I_s;
      CHECK(beam::device::moe_forward<bf16>(nullptr, unused, nullptr, 0, 64, odd, opt, {}) == cudaErrorInvalidValue);
    }
    moe_layer<bf16, e4m3> bad_scaling = fp8;
    bad_scaling.weight_scaling = beam::weight_scales(3);
    CHECK(beam::device::moe_forward<bf16>(nullptr, unused, nullptr, 0, 64, bad_scaling, opt, {}) ==
          cudaErrorInvalidValue);
    moe_layer<bf16> scaled_bf16 = layer;  // bf16 weights are unscaled
    scaled_bf16.weight_scaling = beam::weight_scales::per_channel;
    CHECK(beam::device::moe_forward<bf16>(nullptr, unused, nullptr, 0, 64, scaled_bf16, opt, {}) ==
          cudaErrorInvalidValue);
    const auto workspace = reinterpret_cast<void*>(0x100000);
    size_t enough = fp8_bytes;
    moe_layer<bf16, e4m3> no_scales = fp8;
    no_scales.w2_scales = nullptr;
    CHECK(beam::device::moe_forward<bf16>(workspace, enough, fake, 2048, 64, no_scales, opt, out) ==
          cudaErrorInvalidValue);
    no_scales.w2_scales = reinterpret_cast<const float*>(0x4002);  // not float-aligned
    CHECK(beam::device::moe_forward<bf16>(workspace, enough, fake, 2048, 64, no_scales, opt, out) ==
          cudaErrorInvalidValue);
  }
  void* workspace = reinterpret_cast<void*>(0x2000);
  const auto call = [&](const moe_layer<bf16>& l, int64_t T, int K, const moe_outputs<bf16>& o, const bf16* x = nullptr,
                        int64_t x_stride = 2048) {
    beam::routing_options options;
    options.top_k = K;
    size_t bytes = large;
    return beam::device::moe_forward<bf16>(workspace, bytes, x ? x : fake, x_stride, T, l, options, o);
  };
  CHECK(call(layer, -1, 8, out) == cudaErrorInvalidValue);
  CHECK(call({2044, 768, 128, fake, fake, fake, fake}, 64, 8, {fake, 2044}) == cudaErrorInvalidValue);  // H % 8
  CHECK(call({2048, 764, 128, fake, fake, fake, fake}, 64, 8, out) == cudaErrorInvalidValue);           // I % 8
  CHECK(call({2048, 768, 513, fake, fake, fake, fake}, 64, 8, out) == cudaErrorInvalidValue);           // E > 512
  CHECK(call(layer, 64, 17, out) == cudaErrorInvalidValue);                                               // K > 16
  CHECK(call({2048, 768, 4, fake, fake, fake, fake}, 64, 8, out) == cudaErrorInvalidValue);             // K > E
  CHECK(call({2048, 768, 128, nullptr, fake, fake, fake}, 64, 8, out) == cudaErrorInvalidValue);
  CHECK(call({2048, 768, 128, fake, fake, nullptr, fake}, 64, 8, out) == cudaErrorInvalidValue);        // no router
  CHECK(call({2048, 768, 128, fake, fake, fake, nullptr}, 64, 8, out) == cudaErrorInvalidValue);        // no W_m
  CHECK(call({2048, 768, 128, fake, fake, fake, fake, 512}, 64, 8, out) == cudaErrorInvalidValue);      // no shared W
  CHECK(call(layer, 64, 8, {nullptr, 2048}) == cudaErrorInvalidValue);
  CHECK(call(layer, 64, 8, {fake, 2040}) == cudaErrorInvalidValue);                                     // stride < H
  CHECK(call(layer, 64, 8, out, fake + 4) == cudaErrorInvalidValue);                                    // misaligned
  CHECK(call(layer, 64, 8, {fake, 2048, fake + 8, 2047}) == cudaErrorInvalidValue);                     // residual
  CHECK(call(layer, 64, 8, {fake, 2048, fake, 4096}) == cudaErrorInvalidValue);  // in place, another stride
  {
    size_t bytes = large;  // a schedule that is no enumerator: rejected before routing runs
    CHECK(beam::device::moe_forward<bf16>(workspace, bytes, fake, 2048, 64, layer, opt, out,
                                          beam::device::gemm_schedule(4)) == cudaErrorInvalidValue);
  }
  size_t too_small = small - 1;
  CHECK(beam::device::moe_forward<bf16>(workspace, too_small, fake, 2048, 64, layer, opt, out) == cudaErrorInvalidValue);
  CHECK(call(layer, 0, 8, {nullptr, 0}, nullptr) == cudaSuccess);  // T = 0: nothing to do
  size_t bytes = large;
  CHECK(beam::device::moe_experts_forward<bf16>(workspace, bytes, fake, 2048, 64, layer, nullptr, nullptr, 8, out) ==
        cudaErrorInvalidValue);  // precomputed routing required
  // Extents up to 2³⁰ (H) and 2²⁹ (I, I_s: GEMM 1's N is 2I), even in a query.
  const int beyond_half = beam::max_extent / 2 + 8;
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, {2048, beyond_half, 128}, opt, {}) ==
        cudaErrorInvalidValue);
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, {2048, 768, 128, nullptr, nullptr, nullptr,
                                                                         nullptr, beyond_half}, opt, {}) ==
        cudaErrorInvalidValue);
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, {beam::max_extent + 8, 768, 128}, opt, {}) ==
        cudaErrorInvalidValue);
  for (const beam::routing_options& bad : beam::test::malformed_rules(opt)) {  // even in a query
    CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, shapes, bad, {}) == cudaErrorInvalidValue);
    size_t enough = large;
    CHECK(beam::device::moe_forward<bf16>(workspace, enough, fake, 2048, 64, layer, bad, out) == cudaErrorInvalidValue);
  }
  // Zero-computation experts: counts ≥ 0, E_routed + Z ≤ 512, K ≤ E_routed + Z, W_c and v given.
  moe_layer<bf16> zero_compute{2048, 768, 128};
  zero_compute.identity_experts = -1;
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, zero_compute, opt, {}) == cudaErrorInvalidValue);
  zero_compute.identity_experts = 385;  // 128 + 385 > 512
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, zero_compute, opt, {}) == cudaErrorInvalidValue);
  zero_compute = {2048, 768, 4};
  zero_compute.zero_experts = 4;  // K = 8 ≤ E + Z = 8: routing may pick every kind
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, zero_compute, opt, {}) == cudaSuccess);
  zero_compute = layer;
  zero_compute.constant_experts = 2;  // without W_c and v
  {
    size_t enough = large + (size_t(1) << 20);
    CHECK(beam::device::moe_forward<bf16>(workspace, enough, fake, 2048, 64, zero_compute, opt, out) ==
          cudaErrorInvalidValue);
    zero_compute.constant_gate = fake;
    CHECK(beam::device::moe_forward<bf16>(workspace, enough, fake, 2048, 64, zero_compute, opt, out) ==
          cudaErrorInvalidValue);
    zero_compute.constant_vectors = fake + 1;  // misaligned
    CHECK(beam::device::moe_forward<bf16>(workspace, enough, fake, 2048, 64, zero_compute, opt, out) ==
          cudaErrorInvalidValue);
  }
  moe_layer<bf16> gated{2048, 768, 128};  // a shared expert gate without a shared expert
  gated.shared_gate = fake;
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, gated, opt, {}) == cudaErrorInvalidValue);
  // Expert parallelism: routed_experts and expert_map both or neither, E ≤ E_routed ≤ 512.
  moe_layer<bf16> rank{2048, 768, 32};
  rank.routed_experts = 128;
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, rank, opt, {}) == cudaErrorInvalidValue);
  rank.expert_map = fake_ids();
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, rank, opt, {}) == cudaSuccess);
  rank.routed_experts = 16;  // fewer than the rank's 32
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, rank, opt, {}) == cudaErrorInvalidValue);
  rank.routed_experts = 513;
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, rank, opt, {}) == cudaErrorInvalidValue);
  rank.routed_experts = 0;  // a map without E_routed
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, rank, opt, {}) == cudaErrorInvalidValue);
  rank = {2048, 768, 4};  // K = 8 > E = 4, but ≤ E_routed = 64 with a map
  rank.routed_experts = 64;
  rank.expert_map = fake_ids();
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, 64, rank, opt, {}) == cudaSuccess);
}

TEST_CASE("moe_training_forward: workspace query, what it does not implement, bad arguments") {
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  const moe_layer<bf16> layer{2048, 768, 128, fake, fake, fake, fake};
  beam::routing_options opt;
  opt.top_k = 8;
  const moe_outputs<bf16> out{fake, 2048};
  size_t small = 0, large = 0, without = 0;
  REQUIRE(beam::device::moe_training_forward<bf16>(nullptr, small, fake, 2048, 64, layer, opt, out) == cudaSuccess);
  REQUIRE(beam::device::moe_training_forward<bf16>(nullptr, large, fake, 2048, 8192, layer, opt, out) == cudaSuccess);
  CHECK(large > small);
  CHECK(beam::device::moe_training_forward<bf16>(nullptr, without, nullptr, 0, 64, {2048, 768, 128}, opt, {}) ==
        cudaSuccess);
  CHECK(without == small);  // a query needs only the sizes
  size_t inference = 0;
  REQUIRE(beam::device::moe_forward<bf16>(nullptr, inference, fake, 2048, 64, layer, opt, out) == cudaSuccess);
  CHECK(small > inference);  // it keeps A and Yp of every candidate, and the logits
  const auto refused = [&](const moe_layer<bf16>& l, const beam::routing_options& o) {
    size_t bytes = 0;
    return beam::device::moe_training_forward<bf16>(nullptr, bytes, fake, 2048, 64, l, o, out);
  };
  moe_layer<bf16> parallel = layer;  // expert parallelism
  parallel.routed_experts = 256;
  parallel.expert_map = reinterpret_cast<const int32_t*>(0x3000);
  CHECK(refused(parallel, opt) == cudaErrorInvalidValue);
  moe_layer<bf16> identity = layer;  // zero-computation experts
  identity.identity_experts = 2;
  CHECK(refused(identity, opt) == cudaErrorInvalidValue);
  moe_layer<bf16> gated = layer;  // a shared expert gate
  gated.shared_intermediate = 512;
  gated.shared_w13 = gated.shared_w2 = gated.shared_gate = fake;
  CHECK(refused(gated, opt) == cudaErrorInvalidValue);
  gated.shared_gate = nullptr;
  CHECK(refused(gated, opt) == cudaSuccess);  // the shared expert itself is implemented
  beam::routing_options bad = opt;
  bad.top_k = 17;
  CHECK(refused(layer, bad) == cudaErrorInvalidValue);
  bad = opt;
  bad.rule = static_cast<beam::routing_rule>(7);
  CHECK(refused(layer, bad) == cudaErrorInvalidValue);
  CHECK(refused({2044, 768, 128}, opt) == cudaErrorInvalidValue);  // H % 8
  size_t bytes = 0;
  CHECK(beam::device::moe_training_forward<bf16>(nullptr, bytes, fake, 2048, -1, layer, opt, out) ==
        cudaErrorInvalidValue);
  // Not a query: the data is checked before anything runs.
  void* workspace = reinterpret_cast<void*>(0x10000);
  CHECK(beam::device::moe_training_forward<bf16>(workspace, small, nullptr, 2048, 64, layer, opt, out) ==
        cudaErrorInvalidValue);  // null x
  CHECK(beam::device::moe_training_forward<bf16>(workspace, small, fake, 2048, 64, {2048, 768, 128, fake, fake},
                                                 opt, out) == cudaErrorInvalidValue);  // null routers
  size_t short_bytes = small - 1;
  CHECK(beam::device::moe_training_forward<bf16>(workspace, short_bytes, fake, 2048, 64, layer, opt, out) ==
        cudaErrorInvalidValue);  // workspace too small
  CHECK(beam::device::moe_training_forward<bf16>(workspace, small, fake, 2048, 0, layer, opt, out) == cudaSuccess);
}

TEST_CASE("moe_backward: workspace query, what it does not implement, bad arguments") {
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  float* g = reinterpret_cast<float*>(0x2000);
  const moe_layer<bf16> layer{2048, 768, 128, fake, fake, fake, fake};
  beam::routing_options opt;
  opt.top_k = 8;
  const beam::device::aux_loss_terms aux{0.0f, 0.1f, nullptr};
  const beam::device::moe_gradients<bf16> grads{fake, 2048, g, g, g, g};
  void* forward = reinterpret_cast<void*>(0x20000);
  const auto call = [&](void* ws, size_t& bytes, const moe_layer<bf16>& l, const beam::routing_options& o,
                        const beam::device::aux_loss_terms& a, const bf16* d_y, int64_t d_y_stride,
                        const beam::device::moe_gradients<bf16>& gr, int64_t T = 64, const void* fwd = nullptr) {
    return beam::device::moe_backward<bf16>(ws, bytes, fwd ? fwd : forward, fake, 2048, T, l, o, a, d_y, d_y_stride, gr);
  };
  size_t small = 0, large = 0;
  REQUIRE(call(nullptr, small, layer, opt, aux, fake, 2048, grads) == cudaSuccess);
  REQUIRE(call(nullptr, large, layer, opt, aux, fake, 2048, grads, 8192) == cudaSuccess);
  CHECK(large > small);
  moe_layer<bf16> parallel = layer;  // expert parallelism: as the training forward, refused
  parallel.routed_experts = 256;
  parallel.expert_map = reinterpret_cast<const int32_t*>(0x3000);
  CHECK(call(nullptr, small, parallel, opt, aux, fake, 2048, grads) == cudaErrorInvalidValue);
  beam::routing_options bad = opt;
  bad.top_k = 0;
  CHECK(call(nullptr, small, layer, bad, aux, fake, 2048, grads) == cudaErrorInvalidValue);
  CHECK(call(nullptr, small, layer, opt, {0.01f, 0.1f, nullptr}, fake, 2048, grads) ==
        cudaErrorInvalidValue);  // α without the balance fractions
  CHECK(call(nullptr, small, layer, opt, {0.0f, NAN, nullptr}, fake, 2048, grads) == cudaErrorInvalidValue);
  // Not a query: the data is checked before anything runs.
  void* workspace = reinterpret_cast<void*>(0x10000);
  CHECK(call(workspace, small, layer, opt, aux, nullptr, 2048, grads) == cudaErrorInvalidValue);  // null ∂L/∂y
  CHECK(call(workspace, small, layer, opt, aux, fake, 2040, grads) == cudaErrorInvalidValue);     // stride < H
  CHECK(call(workspace, small, layer, opt, aux, fake, 2048, {fake + 4, 2048}) == cudaErrorInvalidValue);  // ∂L/∂x
  CHECK(call(workspace, small, layer, opt, aux, fake, 2048, {fake, 2044}) == cudaErrorInvalidValue);
  CHECK(call(workspace, small, layer, opt, aux, fake, 2048, {fake, 2048, g + 1}) == cudaErrorInvalidValue);  // misaligned
  size_t bytes = small;
  CHECK(beam::device::moe_backward<bf16>(workspace, bytes, nullptr, fake, 2048, 64, layer, opt, aux, fake, 2048,
                                         grads) == cudaErrorInvalidValue);  // no forward workspace
  size_t short_bytes = small - 1;
  CHECK(call(workspace, short_bytes, layer, opt, aux, fake, 2048, grads) == cudaErrorInvalidValue);
  // T = 0 still asks for a workspace, so that the run (zero weight gradients) is not a query.
  size_t empty = 0;
  REQUIRE(call(nullptr, empty, layer, opt, aux, fake, 2048, grads, 0) == cudaSuccess);
  CHECK(empty > 0);
  // A weight gradient of more rows (∂L/∂W2: H) than grouped_weight_grad's grid holds, every other
  // argument valid: refused before anything runs.
  const int tall_h = beam::device::max_weight_grad_m + 8;
  const moe_layer<bf16> tall{tall_h, 768, 128, fake, fake, fake, fake};
  size_t tall_bytes = size_t(1) << 40;
  CHECK(beam::device::moe_backward<bf16>(workspace, tall_bytes, forward, fake, tall_h, 1, tall, opt, aux, fake, tall_h,
                                         {fake, tall_h, nullptr, g}) == cudaErrorInvalidValue);
}

TEST_CASE("moe_forward: T·K·H beyond 2³¹ sizes the workspace in 64 bits; T·K beyond 2³¹ − 1 is refused") {
  const moe_layer<bf16> shapes{7168, 2048, 256};  // DeepSeek-V3-like extents
  beam::routing_options opt;
  opt.top_k = 8;
  const int64_t T = int64_t(1) << 20;  // P = T·K = 2²³ pairs: P·H = 2³⁵·1.75 elements
  size_t bytes = 0;
  REQUIRE(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, T, shapes, opt, {}) == cudaSuccess);
  const uint64_t P = uint64_t(T) * 8;
  // At least the activations [P, I] and the expert rows [P, H] (bf16) and the [P] int32 arrays.
  CHECK(bytes >= P * (2048 + 7168) * sizeof(bf16) + 2 * P * sizeof(int32_t));
  size_t experts_bytes = 0;
  REQUIRE(beam::device::moe_experts_forward<bf16>(nullptr, experts_bytes, nullptr, 0, T, shapes, nullptr, nullptr, 8,
                                                  {}) == cudaSuccess);
  CHECK(experts_bytes >= P * (2048 + 7168) * sizeof(bf16));
  // Pair and row numbers are int32: T·K = 2³¹ − 1 is taken, 2³¹ refused.
  beam::routing_options one = opt;
  one.top_k = 1;
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, INT32_MAX, shapes, one, {}) == cudaSuccess);
  CHECK(bytes >= uint64_t(INT32_MAX) * (2048 + 7168) * sizeof(bf16));
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, int64_t(INT32_MAX) + 1, shapes, one, {}) ==
        cudaErrorInvalidValue);
  CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 0, int64_t(1) << 28, shapes, opt, {}) ==
        cudaErrorInvalidValue);  // 2²⁸ · 8 = 2³¹
}

namespace {

//! n values k/denominator, |k| ≤ 8 (denominator 8 or 64): products of two are multiples of
//! 2⁻⁹ and every partial sum of H ≤ 2048 of them is exact in float, so router logits are exact
//! on host and device. x uses 8; the routers 64, which keeps the logits O(1) so that every
//! slot's gate weight matters.
std::vector<float> grid_values(size_t n, uint64_t seed, float denominator = 8.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> k(-8, 8);
  std::vector<float> v(n);
  for (auto& x : v) x = float(k(rng)) / denominator;
  return v;
}

std::vector<float> normal_values(size_t n, uint64_t seed, double stddev) {
  return beam::test::random_normal<float>(n, seed, 0.0, stddev);
}

template <class T>
std::vector<T> to_storage(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = beam::from_float<T>(v[i]);
  return out;
}

//! The float values a storage-type round trip gives (what the device actually reads).
template <class T>
std::vector<float> rounded(const std::vector<float>& v) {
  return beam::test::as_float(to_storage<T>(v));
}

struct layer_case {
  int64_t T;
  int H, I, E, K, I_s;
  beam::routing_rule rule;  //!< top-p at p = 0.5, threshold at τ = 0.2
  bool residual;
  gemm_schedule schedule;
  int count_case;  //!< valid_token_count's case (0: no count)
  bool zero_compute = false;  //!< plus 1 zero, 2 identity and 2 constant experts (router rows E + 5)
};

//! The zero-computation experts of a layer_case, for the reference and the device layer.
struct zero_compute_weights {
  static constexpr int zero = 1, identity = 2, constant = 2, count = zero + identity + constant;
  std::vector<float> gate, vectors;  //!< W_c `[2C, H]`, v `[C, H]`
  zero_compute_weights(int H, uint64_t seed)
      : gate(rounded<bf16>(normal_values(size_t(2 * constant * H), seed, 1.0 / std::sqrt(double(H))))),
        vectors(rounded<bf16>(normal_values(size_t(constant * H), seed + 1, 1.0))) {}
  template <class W, class P>
  void describe(W& layer, const P* gate_data, const P* vectors_data) const {
    layer.zero_experts = zero;
    layer.identity_experts = identity;
    layer.constant_experts = constant;
    layer.constant_gate = gate_data;
    layer.constant_vectors = vectors_data;
  }
};

//! A weight tensor `[count, N, K]` of values v as the device reads it (W = T: v rounded;
//! W = e4m3: v / s quantised, with power-of-two scales s in [2⁻⁸, 2⁻⁴] as `scaling` says) and
//! as the reference reads it (`values`: exactly what the device's codes and scales mean).
template <class T, class W>
struct stored_weights {
  std::vector<W> codes;
  std::vector<float> scales, values;

  stored_weights(const std::vector<float>& v, int count, int n, int k, beam::weight_scales scaling, int halves,
                 uint64_t seed) {
    if constexpr (std::is_same_v<W, T>) {
      codes = to_storage<T>(v);
      values = beam::test::as_float(codes);
    } else {
      std::mt19937_64 rng(seed);
      std::uniform_int_distribution<int> exponent(-8, -4);
      const int64_t per_expert = beam::scales_per_expert(scaling, n, k, halves), k_blocks = (k + 127) / 128;
      scales.resize(size_t(count * per_expert));
      for (float& x : scales) x = std::ldexp(1.0f, exponent(rng));
      codes.resize(v.size());
      values.resize(v.size());
      for (int64_t e = 0; e < count; ++e) {
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t i = 0; i < k; ++i) {
            const size_t at = size_t((e * n + j) * k + i);
            const float scale = scaling == beam::weight_scales::per_channel ? scales[size_t(e * per_expert + j)]
                                : scaling == beam::weight_scales::block_128
                                    ? scales[size_t(e * per_expert + beam::scale_block_row(j, n, halves) * k_blocks +
                                                    i / 128)]
                                    : 1.0f;
            codes[at] = W(v[at] / scale);
            values[at] = beam::e4m3_value(codes[at].__x) * scale;  // a power of two times a code: exact
          }
        }
      }
    }
    if (scales.empty()) scales.resize(1);  // a valid device pointer
  }
};

template <class T, class W = T>
void check_layer(const layer_case& c, uint64_t seed, beam::weight_scales scaling = beam::weight_scales::none,
                 beam::activation_format activations = beam::activation_format::native) {
  CAPTURE(c.T);
  CAPTURE(c.H);
  CAPTURE(c.I);
  CAPTURE(c.E);
  CAPTURE(c.K);
  CAPTURE(c.I_s);
  CAPTURE(int(c.rule));
  CAPTURE(c.zero_compute);
  CAPTURE(int(c.schedule));
  CAPTURE(beam::dtype_traits<T>::name);
  CAPTURE(sizeof(W));
  CAPTURE(int(scaling));
  CAPTURE(int(activations));
  const bool w8a8 = activations == beam::activation_format::e4m3_1x128;
  const int64_t H = c.H, I = c.I, E = c.E, T_ = c.T;
  const int64_t routed = E + (c.zero_compute ? zero_compute_weights::count : 0);  // the router's rows
  const auto x = grid_values(size_t(T_ * H), seed);
  const auto w_r = grid_values(size_t(routed * H), seed + 1, 64.0f);
  // W_m on the grid too: z is symmetric about 0, so about half the candidates are kept.
  const auto w_m = grid_values(size_t(routed * H), seed + 2, 64.0f);
  const zero_compute_weights zc(c.H, seed + 9);
  const stored_weights<T, W> w13(normal_values(size_t(E * 2 * I * H), seed + 3, 1.0 / std::sqrt(double(H))), c.E,
                                 2 * c.I, c.H, scaling, 2, seed + 10);
  const stored_weights<T, W> w2(normal_values(size_t(E * H * I), seed + 4, 1.0 / std::sqrt(double(I))), c.E, c.H,
                                c.I, scaling, 1, seed + 11);
  const stored_weights<T, W> s13(normal_values(size_t(2 * c.I_s * H), seed + 5, 1.0 / std::sqrt(double(H))), 1,
                                 2 * c.I_s, c.H, scaling, 2, seed + 12);
  const stored_weights<T, W> s2(normal_values(size_t(H * c.I_s), seed + 6, 1.0 / std::sqrt(double(std::max(c.I_s, 1)))),
                                1, c.H, c.I_s, scaling, 1, seed + 13);
  const auto residual = rounded<T>(normal_values(size_t(T_ * H), seed + 7, 1.0));
  // Qwen2-MoE's shared expert gate w_g on every other layer with a shared expert.
  const bool gated = c.I_s > 0 && seed % 2 == 1;
  CAPTURE(gated);
  const auto gate = rounded<T>(normal_values(size_t(H), seed + 8, 1.0 / std::sqrt(double(H))));

  beam::routing_options opt;
  opt.top_k = c.K;
  opt.rule = c.rule;
  opt.top_p = 0.5f;
  opt.threshold = 0.2f;
  ref::moe_weights<float> ref_weights{c.H,
                                      c.I,
                                      c.E,
                                      w13.values.data(),
                                      w2.values.data(),
                                      c.I_s,
                                      c.I_s ? s13.values.data() : nullptr,
                                      c.I_s ? s2.values.data() : nullptr,
                                      gated ? gate.data() : nullptr};
  if (c.zero_compute) zc.describe(ref_weights, zc.gate.data(), zc.vectors.data());
  ref_weights.e4m3_activations = w8a8;
  ref_weights.store_activation = [](double a) { return double(beam::to_float(beam::from_float<T>(float(a)))); };
  const beam::test::valid_token_count valid(T_, c.count_case);
  CAPTURE(valid.given);
  CAPTURE(valid.host);
  const auto expected =
      ref::moe_forward<float>(x.data(), T_, ref_weights, w_r.data(), w_m.data(), valid.on_host(opt));
  opt = valid.on_device(opt);
  std::vector<float> expected_out = expected.out;
  if (c.residual) {
    for (size_t i = 0; i < expected_out.size(); ++i) expected_out[i] += residual[i];
  }

  const auto d = [](const std::vector<float>& v) {
    return beam::test::device_vector<T>(v.empty() ? std::vector<T>(8) : to_storage<T>(v));
  };
  auto d_x = d(x), d_w_r = d(w_r), d_w_m = d(w_m), d_gate = d(gate),
       d_out = d(residual);  // the residual is updated in place when requested
  const auto stored = [](const std::vector<W>& codes) {
    return beam::test::device_vector<W>(codes.empty() ? std::vector<W>(16) : codes);
  };
  auto d_w13 = stored(w13.codes), d_w2 = stored(w2.codes), d_s13 = stored(s13.codes), d_s2 = stored(s2.codes);
  beam::test::device_vector<float> d_w13_scales(w13.scales), d_w2_scales(w2.scales), d_s13_scales(s13.scales),
      d_s2_scales(s2.scales);
  auto d_w_c = d(zc.gate), d_v = d(zc.vectors);
  beam::test::device_vector<int32_t> ids{size_t(std::max<int64_t>(T_ * c.K, 1))};
  beam::test::device_vector<float> weights{size_t(std::max<int64_t>(T_ * c.K, 1))};
  if (!c.residual) d_out.poison();
  moe_layer<T, W> layer{c.H, c.I, c.E, d_w13.data(), d_w2.data(), d_w_r.data(), d_w_m.data(), c.I_s,
                        d_s13.data(), d_s2.data()};
  if (gated) layer.shared_gate = d_gate.data();
  layer.weight_scaling = scaling;
  layer.w13_scales = d_w13_scales.data();
  layer.w2_scales = d_w2_scales.data();
  layer.shared_w13_scales = d_s13_scales.data();
  layer.shared_w2_scales = d_s2_scales.data();
  layer.activations = activations;
  if (c.zero_compute) zc.describe(layer, d_w_c.data(), d_v.data());
  beam::test::device_vector<int32_t> ids_or_zero{size_t(std::max<int64_t>(T_ * c.K, 1))};
  moe_outputs<T> out{d_out.data(), H, c.residual ? d_out.data() : nullptr, H, ids.data(), weights.data()};
  out.topk_ids_or_zero = ids_or_zero.data();
  size_t bytes = 0;
  REQUIRE(beam::device::moe_forward<T>(nullptr, bytes, d_x.data(), H, T_, layer, opt, out) == cudaSuccess);
  const auto workspace = beam::test::device_vector<char>::workspace(bytes);
  const auto before = d_out.to_host();
  const cudaError_t status = beam::test::with_pending_error([&] {
    return beam::device::moe_forward<T>(workspace.data(), bytes, d_x.data(), H, T_, layer, opt, out, c.schedule);
  });
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  if (w8a8 && T_ > 0 && !beam::test::hopper_kernels_expected()) {  // refused before anything runs: y untouched
    CHECK(status == cudaErrorInvalidDeviceFunction);
    const auto after = d_out.to_host();
    CHECK(std::memcmp(after.data(), before.data(), after.size() * sizeof(T)) == 0);
    return;
  }
  REQUIRE(status == cudaSuccess);
  if (T_ == 0) return;
  auto got_ids = ids.to_host();
  CHECK(got_ids == expected.routing.topk_ids);
  std::vector<int32_t> expected_or_zero = expected.routing.topk_ids;  // −1 → expert 0
  for (int32_t& id : expected_or_zero) id = std::max(id, 0);
  CHECK(ids_or_zero.to_host() == expected_or_zero);
  {  // the compaction the GEMMs read (at decode: written by route_decode's last block), exactly
    const beam::device::detail::moe_workspace ws(T_, c.K, layer, true);
    const auto from_workspace = [&](size_t offset, size_t n) {
      std::vector<int32_t> v(n);
      BEAM_CUDA_TRY(cudaMemcpy(v.data(), workspace.data() + offset, n * sizeof(int32_t), cudaMemcpyDeviceToHost));
      return v;
    };
    const auto compaction = ref::compact(expected.routing.topk_ids.data(), T_, c.K, int32_t(routed), 0, c.E);
    const size_t active = size_t(compaction.offsets.back());
    CHECK(from_workspace(ws.experts.counts, size_t(c.E)) == compaction.counts);
    CHECK(from_workspace(ws.experts.offsets, size_t(c.E) + 1) == compaction.offsets);
    CHECK(from_workspace(ws.experts.sorted_pairs, active) == compaction.sorted_pairs);
    CHECK(from_workspace(ws.experts.pair_to_row, size_t(T_ * c.K)) == compaction.pair_to_row);
  }
  CHECK(beam::test::relative_error(weights.to_host(), expected.routing.topk_weights) <= 1e-5);
  CHECK(beam::test::relative_error(beam::test::as_float(d_out.to_host()), expected_out) <=
        beam::dtype_traits<T>::tolerance);
}

//! moe_experts_forward against the reference for a given routing with none, some and all pairs
//! masked, an invalid id among them (skipped and counted); with `zero_compute`, every pair that
//! is not masked goes to a zero-computation expert (no GEMM row at all).
template <class W = bf16>
void check_experts_forward(int I_s, gemm_schedule schedule, bool zero_compute = false,
                           beam::weight_scales scaling = beam::weight_scales::none) {
  CAPTURE(sizeof(W));
  CAPTURE(int(scaling));
  const int64_t T = 33;
  const int H = 64, I = 32, E = 8, K = 2;
  const auto x = rounded<bf16>(normal_values(size_t(T * H), 1, 1.0));
  const stored_weights<bf16, W> w13(normal_values(size_t(E * 2 * I * H), 2, 0.125), E, 2 * I, H, scaling, 2, 12);
  const stored_weights<bf16, W> w2(normal_values(size_t(E * H * I), 3, 0.125), E, H, I, scaling, 1, 13);
  const stored_weights<bf16, W> s13(normal_values(size_t(2 * I_s * H), 4, 0.125), 1, 2 * I_s, H, scaling, 2, 14);
  const stored_weights<bf16, W> s2(normal_values(size_t(H * I_s), 5, 0.25), 1, H, I_s, scaling, 1, 15);
  for (double masked : {0.0, 0.4, 1.0}) {
    CAPTURE(masked);
    std::mt19937 rng{7u};
    std::vector<int32_t> ids(size_t(T * K));
    std::vector<float> gates(size_t(T * K));
    for (int64_t t = 0; t < T; ++t) {
      const int first = int(rng() % E);
      for (int k = 0; k < K; ++k) {
        ids[size_t(t * K + k)] = double(rng() % 1000) / 1000.0 < masked ? -1
                                 : zero_compute ? E + (first + k) % zero_compute_weights::count
                                                : (first + k) % E;
        gates[size_t(t * K + k)] = ids[size_t(t * K + k)] < 0 ? 0.0f : 0.25f + 0.5f * float(k);
      }
    }
    std::vector<int32_t> device_ids = ids;  // one invalid id: skipped (as −1) and counted
    device_ids[5] = E + zero_compute_weights::count + 2;
    ids[5] = -1;
    const auto gate = rounded<bf16>(normal_values(size_t(H), 6, 0.125));  // w_g: gated when I_s > 0
    ref::moe_weights<float> ref_weights{H, I, E, w13.values.data(), w2.values.data(), I_s, s13.values.data(),
                                        s2.values.data(), I_s ? gate.data() : nullptr};
    const zero_compute_weights zc(H, 8);
    if (zero_compute) zc.describe(ref_weights, zc.gate.data(), zc.vectors.data());
    const auto expected = ref::moe_experts_forward<float>(x.data(), T, ref_weights, ids.data(), gates.data(), K);
    beam::test::device_vector<bf16> d_x(to_storage<bf16>(x)), d_out{size_t(T * H)};
    beam::test::device_vector<W> d_w13(w13.codes), d_w2(w2.codes), d_s13(s13.codes), d_s2(s2.codes);
    beam::test::device_vector<float> d_w13_scales(w13.scales), d_w2_scales(w2.scales), d_s13_scales(s13.scales),
        d_s2_scales(s2.scales);
    beam::test::device_vector<int32_t> d_ids(device_ids);
    beam::test::device_vector<float> d_gates(gates);
    beam::test::device_vector<unsigned long long> invalid{1};
    d_out.poison();
    beam::test::device_vector<bf16> d_gate(to_storage<bf16>(gate));
    moe_layer<bf16, W> layer{H, I, E, d_w13.data(), d_w2.data(), nullptr, nullptr, I_s, d_s13.data(), d_s2.data()};
    layer.weight_scaling = scaling;
    layer.w13_scales = d_w13_scales.data();
    layer.w2_scales = d_w2_scales.data();
    layer.shared_w13_scales = d_s13_scales.data();
    layer.shared_w2_scales = d_s2_scales.data();
    if (I_s > 0) layer.shared_gate = d_gate.data();
    beam::test::device_vector<bf16> d_w_c(to_storage<bf16>(zc.gate)), d_v(to_storage<bf16>(zc.vectors));
    if (zero_compute) zc.describe(layer, d_w_c.data(), d_v.data());
    size_t bytes = 0;
    REQUIRE(beam::device::moe_experts_forward<bf16>(nullptr, bytes, d_x.data(), H, T, layer, d_ids.data(),
                                                    d_gates.data(), K, {d_out.data(), H}) == cudaSuccess);
    const auto workspace = beam::test::device_vector<char>::workspace(bytes);
    REQUIRE(beam::device::moe_experts_forward<bf16>(
                workspace.data(), bytes, d_x.data(), H, T, layer, d_ids.data(), d_gates.data(), K,
                {d_out.data(), H, nullptr, 0, nullptr, nullptr, invalid.data()}, schedule) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    CHECK(invalid.to_host()[0] == 1ull);
    CHECK(beam::test::relative_error(beam::test::as_float(d_out.to_host()), expected) <=
          beam::dtype_traits<bf16>::tolerance);
  }
}

//! The layer on `ranks` simulated ranks of an expert-parallel group, experts placed round-robin
//! (global g on rank g mod R as local g / R): each rank's moe_forward (the router replicated,
//! expert_map naming its experts; the shared expert on rank 0) gives its part of y, and the
//! parts sum to the reference layer. Then DeepEP's low-latency path: each rank's packed input
//! [E_local, M = T, H] (its experts' kept pairs in token order, as the dispatch delivers them)
//! through the two grouped GEMMs on packed groups, combined on the host with ĝ, sums to the
//! reference layer without the shared expert.
void check_expert_parallel(int ranks, int64_t T, gemm_schedule schedule, uint64_t seed) {
  CAPTURE(ranks);
  CAPTURE(T);
  CAPTURE(int(schedule));
  const int H = 64, I = 32, E = 16, K = 4, I_s = 32, E_local = E / ranks;
  const auto x = grid_values(size_t(T * H), seed);
  const auto w_r = grid_values(size_t(E * H), seed + 1, 64.0f), w_m = grid_values(size_t(E * H), seed + 2, 64.0f);
  const auto w13 = rounded<bf16>(normal_values(size_t(E * 2 * I * H), seed + 3, 0.125));
  const auto w2 = rounded<bf16>(normal_values(size_t(E * H * I), seed + 4, 0.125));
  const auto s13 = rounded<bf16>(normal_values(size_t(2 * I_s * H), seed + 5, 0.125));
  const auto s2 = rounded<bf16>(normal_values(size_t(H * I_s), seed + 6, 0.25));
  beam::routing_options opt;
  opt.top_k = K;
  const auto expected = ref::moe_forward<float>(
      x.data(), T, ref::moe_weights<float>{H, I, E, w13.data(), w2.data(), I_s, s13.data(), s2.data()}, w_r.data(),
      w_m.data(), opt);
  const auto expected_routed =
      ref::moe_forward<float>(x.data(), T, ref::moe_weights<float>{H, I, E, w13.data(), w2.data()}, w_r.data(),
                              w_m.data(), opt);
  const auto& ids = expected.routing.topk_ids;
  const auto& gates = expected.routing.topk_weights;

  beam::test::device_vector<bf16> d_x(to_storage<bf16>(x)), d_w_r(to_storage<bf16>(w_r)),
      d_w_m(to_storage<bf16>(w_m)), d_s13(to_storage<bf16>(s13)), d_s2(to_storage<bf16>(s2));
  std::vector<double> sum(size_t(T * H), 0.0), packed_sum(size_t(T * H), 0.0);
  for (int rank = 0; rank < ranks; ++rank) {
    CAPTURE(rank);
    std::vector<int32_t> map(size_t(E), -1);
    std::vector<float> local_w13, local_w2;
    for (int g = rank; g < E; g += ranks) {
      map[size_t(g)] = g / ranks;
      local_w13.insert(local_w13.end(), w13.begin() + int64_t(g) * 2 * I * H, w13.begin() + int64_t(g + 1) * 2 * I * H);
      local_w2.insert(local_w2.end(), w2.begin() + int64_t(g) * H * I, w2.begin() + int64_t(g + 1) * H * I);
    }
    beam::test::device_vector<bf16> d_w13(to_storage<bf16>(local_w13)), d_w2(to_storage<bf16>(local_w2)),
        y{size_t(T * H)};
    beam::test::device_vector<int32_t> d_map(map), got_ids{size_t(T * K)};
    moe_layer<bf16> layer{H, I, E_local, d_w13.data(), d_w2.data(), d_w_r.data(), d_w_m.data()};
    if (rank == 0) {
      layer.shared_intermediate = I_s;
      layer.shared_w13 = d_s13.data();
      layer.shared_w2 = d_s2.data();
    }
    layer.routed_experts = E;
    layer.expert_map = d_map.data();
    moe_outputs<bf16> out{y.data(), H};
    out.topk_ids = got_ids.data();
    size_t bytes = 0;
    REQUIRE(beam::device::moe_forward<bf16>(nullptr, bytes, d_x.data(), H, T, layer, opt, out) == cudaSuccess);
    const auto workspace = beam::test::device_vector<char>::workspace(bytes);
    REQUIRE(beam::device::moe_forward<bf16>(workspace.data(), bytes, d_x.data(), H, T, layer, opt, out, schedule) ==
            cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    CHECK(got_ids.to_host() == ids);  // every rank routes alike (global ids)
    const auto part = beam::test::as_float(y.to_host());
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += part[i];

    // DeepEP low-latency: slot j of local expert e holds the j-th kept pair of expert g(e).
    const int64_t M = T;
    std::vector<float> packed(size_t(E_local * M * H), 0.0f);
    std::vector<int32_t> counts(size_t(E_local), 0);
    std::vector<std::pair<int64_t, float>> slot_source(size_t(E_local * M), {-1, 0.0f});  // token, ĝ
    for (int64_t t = 0; t < T; ++t) {
      for (int k = 0; k < K; ++k) {
        const int32_t g = ids[size_t(t * K + k)];
        if (g < 0 || map[size_t(g)] < 0) continue;
        const int64_t slot = int64_t(map[size_t(g)]) * M + counts[size_t(map[size_t(g)])]++;
        std::copy_n(x.begin() + t * H, H, packed.begin() + slot * H);
        slot_source[size_t(slot)] = {t, gates[size_t(t * K + k)]};
      }
    }
    beam::test::device_vector<bf16> d_packed(to_storage<bf16>(packed)), activations{size_t(E_local * M * I)},
        packed_y{size_t(E_local * M * H)};
    beam::test::device_vector<int32_t> d_counts(counts);
    const beam::device::gemm_groups groups{nullptr, E_local, E_local * M, 0, d_counts.data(), M};
    REQUIRE(beam::device::grouped_gemm<bf16, bf16>({d_packed.data(), H}, {d_w13.data(), H, int64_t(2) * I * H}, 2 * I,
                                                   H, groups, {activations.data(), I, beam::device::gemm_epilogue::swiglu},
                                                   schedule) == cudaSuccess);
    REQUIRE(beam::device::grouped_gemm<bf16, bf16>({activations.data(), I}, {d_w2.data(), I, int64_t(H) * I}, H, I,
                                                   groups, {packed_y.data(), H}, schedule) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto rows = beam::test::as_float(packed_y.to_host());
    for (size_t slot = 0; slot < slot_source.size(); ++slot) {  // DeepEP's combine: Σ ĝ · row, per token
      const auto [t, gate] = slot_source[slot];
      if (t < 0) continue;
      for (int h = 0; h < H; ++h) packed_sum[size_t(t * H + h)] += double(gate) * rows[slot * size_t(H) + size_t(h)];
    }
  }
  CHECK(beam::test::relative_error(sum, expected.out) <= beam::dtype_traits<bf16>::tolerance);
  CHECK(beam::test::relative_error(packed_sum, expected_routed.out) <= beam::dtype_traits<bf16>::tolerance);
}

//! moe_backward's gradients (`grads`) against the reference: the routed experts'
//! (experts_backward from ∂L/∂Yp = ĝ·∂L/∂y of every candidate row), the shared expert's (the
//! same over all tokens from ∂L/∂y), the routers' (their logits' gradients times x, and back
//! to x through W_r and W_m); `again` bitwise equal, and `mask_only`'s ∂L/∂W_m too. T = 0:
//! zero weight gradients.
template <class T, class Gradients>
void check_layer_gradients(int64_t T_, int H, int E, int K, int I_s, const std::vector<float>& x,
                           const ref::moe_weights<float>& weights, const std::vector<float>& w_r,
                           const std::vector<float>& w_m, const std::vector<float>& d_y,
                           const ref::routing_result<float>& routing, const ref::routing_grads<float>& d_logits,
                           bool mask, Gradients& grads, Gradients& again, Gradients& mask_only) {
  const auto same_bits = [](const auto& a, const auto& b) {
    const auto ha = a.to_host(), hb = b.to_host();
    return std::memcmp(ha.data(), hb.data(), ha.size() * sizeof(ha[0])) == 0;
  };
  CHECK(same_bits(grads.d_x, again.d_x));
  CHECK(same_bits(grads.w13, again.w13));
  CHECK(same_bits(grads.w2, again.w2));
  CHECK(same_bits(grads.router, again.router));
  if (mask) CHECK(same_bits(grads.mask, again.mask));
  if (mask) CHECK(same_bits(grads.mask, mask_only.mask));
  if (I_s > 0) CHECK(same_bits(grads.s13, again.s13));
  if (I_s > 0) CHECK(same_bits(grads.s2, again.s2));
  if (T_ == 0) {
    for (const auto* v : {&grads.w13, &grads.w2, &grads.router}) {
      for (float g : v->to_host()) CHECK(g == 0.0f);
    }
    return;
  }
  // Routed experts: ∂L/∂Yp of each candidate row.
  const auto rows = ref::compact(routing.candidate_ids.data(), T_, K, E);
  std::vector<float> d_yp(size_t(rows.n_active * H));
  for (int64_t r = 0; r < rows.n_active; ++r) {
    const int64_t pair = rows.sorted_pairs[size_t(r)], t = pair / K;
    for (int h = 0; h < H; ++h) d_yp[size_t(r * H + h)] = routing.topk_weights[size_t(pair)] * d_y[size_t(t * H + h)];
  }
  const auto routed = ref::experts_backward<float>(x.data(), weights, rows, d_yp.data());
  std::vector<double> d_x = routed.d_x;
  const double tolerance = beam::dtype_traits<T>::tolerance;
  CHECK(beam::test::relative_error(grads.w13.to_host(), routed.d_w13) <= tolerance);
  CHECK(beam::test::relative_error(grads.w2.to_host(), routed.d_w2) <= tolerance);
  if (I_s > 0) {  // the shared expert: one expert, every token one row
    const std::vector<int32_t> ones(size_t(T_), 0);
    const auto token_rows = ref::compact(ones.data(), T_, 1, 1);
    const ref::moe_weights<float> shared{H, I_s, 1, weights.shared_w13, weights.shared_w2};
    const auto s = ref::experts_backward<float>(x.data(), shared, token_rows, d_y.data());
    for (size_t i = 0; i < d_x.size(); ++i) d_x[i] += s.d_x[i];
    CHECK(beam::test::relative_error(grads.s13.to_host(), s.d_w13) <= tolerance);
    CHECK(beam::test::relative_error(grads.s2.to_host(), s.d_w2) <= tolerance);
  }
  // Routers: ∂L/∂W = ∂L/∂(logits)ᵀ · x, ∂L/∂x += ∂L/∂(logits) · W.
  std::vector<double> d_router(size_t(E * H), 0.0), d_mask(size_t(E * H), 0.0);
  for (int64_t t = 0; t < T_; ++t) {
    for (int e = 0; e < E; ++e) {
      const double dr = d_logits.d_router_logits[size_t(t * E + e)], dz = mask ? d_logits.d_mask_logits[size_t(t * E + e)] : 0.0;
      for (int h = 0; h < H; ++h) {
        const size_t th = size_t(t * H + h), eh = size_t(e * H + h);
        d_router[eh] += dr * x[th];
        d_mask[eh] += dz * x[th];
        d_x[th] += dr * w_r[eh] + dz * w_m[eh];
      }
    }
  }
  CHECK(beam::test::relative_error(grads.router.to_host(), d_router) <= tolerance);
  if (mask) CHECK(beam::test::relative_error(grads.mask.to_host(), d_mask) <= tolerance);
  CHECK(beam::test::relative_error(beam::test::as_float(grads.d_x.to_host()), d_x) <= tolerance);
}

//! How a training case's mask router scores: `random` grid weights (about half the candidates
//! kept), `zero` (W_m = 0, BEAM's initialisation: z = 0 keeps every candidate) or `negative` (x > 0,
//! W_m < 0: z < 0 masks every candidate).
enum class mask_scores { random, zero, negative };

//! The training forward and the STE path back to the routers against the reference: the state's
//! routing and candidate compaction exactly, y, Yp (E_c(x) of every candidate row) and, from a
//! random ∂L/∂y, ∂L/∂ĝ (combine_backward) and ∂L/∂r, ∂L/∂z (route_backward, β·L_reg included)
//! to the dtype tolerance.
template <class T>
void check_training_step(int64_t T_, int H, int I, int E, int K, int I_s, beam::routing_rule rule, bool residual,
                         mask_scores scores, uint64_t seed) {
  CAPTURE(T_);
  CAPTURE(H);
  CAPTURE(I);
  CAPTURE(E);
  CAPTURE(K);
  CAPTURE(I_s);
  CAPTURE(int(rule));
  CAPTURE(int(scores));
  CAPTURE(beam::dtype_traits<T>::name);
  auto x = grid_values(size_t(T_ * H), seed);
  const auto w_r = grid_values(size_t(E * H), seed + 1, 64.0f);
  auto w_m = grid_values(size_t(E * H), seed + 2, 64.0f);
  if (scores == mask_scores::zero) std::fill(w_m.begin(), w_m.end(), 0.0f);
  if (scores == mask_scores::negative) {
    for (float& v : x) v = std::fabs(v) + 0.125f;
    for (float& v : w_m) v = -std::fabs(v) - 1.0f / 64;
  }
  const auto w13 = rounded<T>(normal_values(size_t(E * 2 * I * H), seed + 3, 1.0 / std::sqrt(double(H))));
  const auto w2 = rounded<T>(normal_values(size_t(E * H * I), seed + 4, 1.0 / std::sqrt(double(I))));
  const auto s13 = rounded<T>(normal_values(size_t(2 * I_s * H), seed + 5, 1.0 / std::sqrt(double(H))));
  const auto s2 = rounded<T>(normal_values(size_t(H * I_s), seed + 6, 1.0 / std::sqrt(double(std::max(I_s, 1)))));
  const auto res = rounded<T>(normal_values(size_t(T_ * H), seed + 7, 1.0));
  const auto d_y = rounded<T>(normal_values(size_t(T_ * H), seed + 8, 1.0));
  beam::routing_options opt;
  opt.top_k = K;
  opt.rule = rule;
  opt.top_p = 0.5f;
  opt.threshold = 0.2f;
  const float beta = 0.3f;
  ref::moe_weights<float> ref_weights{H, I, E, w13.data(), w2.data(), I_s, I_s ? s13.data() : nullptr,
                                      I_s ? s2.data() : nullptr};
  ref_weights.store_activation = [](double a) { return double(beam::to_float(beam::from_float<T>(float(a)))); };
  const auto expected = ref::moe_forward<float>(x.data(), T_, ref_weights, w_r.data(), w_m.data(), opt);
  std::vector<float> expected_out = expected.out;
  if (residual) {
    for (size_t i = 0; i < expected_out.size(); ++i) expected_out[i] += res[i];
  }
  const ref::routing_result<float>& routing = expected.routing;
  const auto expected_d_hat = ref::topk_weight_grad(x.data(), ref_weights, routing, d_y.data());
  const int64_t columns = beam::uses_mask(opt) ? 2 * E : E;
  const ref::matrix_view<float> r{expected.logits.data(), T_, E, columns};
  const ref::matrix_view<float> z =
      beam::uses_mask(opt) ? ref::matrix_view<float>{expected.logits.data() + E, T_, E, columns} : ref::matrix_view<float>{};
  auto expected_grads = ref::routing_backward(routing, r, z, expected_d_hat.data());
  if (beam::uses_mask(opt)) ref::add_l_reg_grad(routing, z, beta, expected_grads.d_mask_logits);

  const auto d = [](const std::vector<float>& v) {
    return beam::test::device_vector<T>(v.empty() ? std::vector<T>(8) : to_storage<T>(v));
  };
  auto d_x = d(x), d_w_r = d(w_r), d_w_m = d(w_m), d_w13 = d(w13), d_w2 = d(w2), d_s13 = d(s13), d_s2 = d(s2),
       d_out = d(res), d_dy = d(d_y);
  if (!residual) d_out.poison();
  const moe_layer<T> layer{H, I, E, d_w13.data(), d_w2.data(), d_w_r.data(), d_w_m.data(), I_s, d_s13.data(),
                           d_s2.data()};
  const moe_outputs<T> out{d_out.data(), H, residual ? d_out.data() : nullptr, H};
  size_t bytes = 0;
  REQUIRE(beam::device::moe_training_forward<T>(nullptr, bytes, d_x.data(), H, T_, layer, opt, out) == cudaSuccess);
  const auto workspace = beam::test::device_vector<char>::workspace(bytes);
  REQUIRE(beam::test::with_pending_error([&] {
            return beam::device::moe_training_forward<T>(workspace.data(), bytes, d_x.data(), H, T_, layer, opt, out);
          }) == cudaSuccess);
  const size_t slots = size_t(std::max<int64_t>(T_ * K, 1)), cells = size_t(std::max<int64_t>(T_ * E, 1));
  beam::test::device_vector<float> d_hat{slots}, d_router{cells}, d_mask{cells};
  beam::test::device_vector<T> d_yp{size_t(std::max<int64_t>(T_ * K, 1) * H)};
  const auto s = beam::device::moe_training_saved<T>(workspace.data(), T_, layer, K);
  REQUIRE(beam::device::combine_backward<T>(s.expert_rows, H, s.pair_to_row, s.topk_weights, d_dy.data(), H, T_, H, K,
                                            d_hat.data(), d_yp.data(), H) == cudaSuccess);
  REQUIRE(beam::device::route_backward<float, float>(s.logits, T_, E, opt, s.candidate_ids, d_hat.data(),
                                                     {0.0f, beta, nullptr}, {d_router.data(), d_mask.data(), E, E}) ==
          cudaSuccess);
  // moe_backward: every gradient of the layer, twice (bitwise equal), and with only the mask
  // router's gradient asked for (mask-only training: the same bits).
  const size_t n13 = size_t(E) * 2 * I * H, n2 = size_t(E) * H * I, nr = size_t(E) * H, ns13 = size_t(2 * I_s) * H,
               ns2 = size_t(H) * I_s;
  struct gradient_arrays {
    beam::test::device_vector<T> d_x;
    beam::test::device_vector<float> w13, w2, router, mask, s13, s2;
  };
  const auto poisoned = [&] {
    gradient_arrays g{beam::test::device_vector<T>{size_t(std::max<int64_t>(T_, 1) * H)},
                      beam::test::device_vector<float>{n13}, beam::test::device_vector<float>{n2},
                      beam::test::device_vector<float>{nr}, beam::test::device_vector<float>{nr},
                      beam::test::device_vector<float>{std::max<size_t>(ns13, 1)},
                      beam::test::device_vector<float>{std::max<size_t>(ns2, 1)}};
    for (auto* v : {&g.w13, &g.w2, &g.router, &g.mask, &g.s13, &g.s2}) v->poison();
    g.d_x.poison();
    return g;
  };
  gradient_arrays grads = poisoned(), again = poisoned(), mask_only = poisoned();
  const auto all_of = [&](gradient_arrays& g) {
    return beam::device::moe_gradients<T>{g.d_x.data(),  H,
                                          g.w13.data(),  g.w2.data(),
                                          g.router.data(), beam::uses_mask(opt) ? g.mask.data() : nullptr,
                                          I_s ? g.s13.data() : nullptr, I_s ? g.s2.data() : nullptr};
  };
  const beam::device::aux_loss_terms aux{0.0f, beta, nullptr};
  size_t backward_bytes = 0;
  REQUIRE(beam::device::moe_backward<T>(nullptr, backward_bytes, workspace.data(), d_x.data(), H, T_, layer, opt, aux,
                                        d_dy.data(), H, all_of(grads)) == cudaSuccess);
  const auto backward_workspace = beam::test::device_vector<char>::workspace(backward_bytes);
  for (gradient_arrays* g : {&grads, &again}) {
    REQUIRE(beam::test::with_pending_error([&] {
              return beam::device::moe_backward<T>(backward_workspace.data(), backward_bytes, workspace.data(),
                                                   d_x.data(), H, T_, layer, opt, aux, d_dy.data(), H, all_of(*g));
            }) == cudaSuccess);
  }
  if (beam::uses_mask(opt)) {
    beam::device::moe_gradients<T> only{};
    only.d_mask_router = mask_only.mask.data();
    REQUIRE(beam::device::moe_backward<T>(backward_workspace.data(), backward_bytes, workspace.data(), d_x.data(), H,
                                          T_, layer, opt, aux, d_dy.data(), H, only) == cudaSuccess);
  }
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  check_layer_gradients<T>(T_, H, E, K, I_s, x, ref_weights, w_r, w_m, d_y, routing, expected_grads,
                        beam::uses_mask(opt), grads, again, mask_only);
  if (T_ == 0) return;
  const auto fetch = [](const auto* device, size_t n) {
    std::vector<std::remove_const_t<std::remove_pointer_t<decltype(device)>>> v(n);
    BEAM_CUDA_TRY(cudaMemcpy(v.data(), device, n * sizeof(v[0]), cudaMemcpyDeviceToHost));
    return v;
  };
  const size_t P = size_t(T_ * K);
  CHECK(fetch(s.candidate_ids, P) == routing.candidate_ids);
  CHECK(fetch(s.topk_ids, P) == routing.topk_ids);
  CHECK(beam::test::relative_error(fetch(s.topk_weights, P), routing.topk_weights) <= 1e-5);
  if (beam::uses_mask(opt)) CHECK(beam::test::relative_error(fetch(s.mask_probs, P), routing.mask_probs) <= 1e-5);
  // Every candidate has a row, masked ones included.
  const auto rows = ref::compact(routing.candidate_ids.data(), T_, K, E);
  const auto offsets = fetch(s.offsets, size_t(E) + 1);
  CHECK(offsets == rows.offsets);
  CHECK(fetch(s.sorted_pairs, size_t(rows.n_active)) == rows.sorted_pairs);
  CHECK(fetch(s.pair_to_row, P) == rows.pair_to_row);
  // Yp: E_c(x_t) of each row, unscaled.
  const auto yp = beam::test::as_float(fetch(s.expert_rows, size_t(rows.n_active * H)));
  std::vector<float> expected_yp(size_t(rows.n_active * H));
  for (int64_t row = 0; row < rows.n_active; ++row) {
    const int64_t pair = rows.sorted_pairs[row], t = pair / K;
    const int32_t e = routing.candidate_ids[pair];
    ref::swiglu_mlp(x.data() + t * H, w13.data() + e * 2 * I * H, w2.data() + e * H * I, H, I,
                    expected_yp.data() + row * H, false, ref_weights.store_activation);
  }
  const double tolerance = beam::dtype_traits<T>::tolerance;
  CHECK(beam::test::relative_error(yp, expected_yp) <= tolerance);
  CHECK(beam::test::relative_error(beam::test::as_float(d_out.to_host()), expected_out) <= tolerance);
  // The STE's signal: ∂L/∂ĝ for every candidate, then ∂L/∂r and ∂L/∂z.
  const auto got_d_hat = d_hat.to_host();
  CHECK(beam::test::relative_error(got_d_hat, expected_d_hat) <= tolerance);
  CHECK(beam::test::relative_error(d_router.to_host(), expected_grads.d_router_logits) <= tolerance);
  if (beam::uses_mask(opt)) {
    const auto got_d_mask = d_mask.to_host();
    CHECK(beam::test::relative_error(got_d_mask, expected_grads.d_mask_logits) <= tolerance);
    int masked = 0, masked_with_signal = 0;  // masked candidates get a gradient: they can come back
    for (size_t p = 0; p < P; ++p) {
      if (routing.candidate_ids[p] < 0 || routing.topk_ids[p] >= 0) continue;
      ++masked;
      masked_with_signal += got_d_hat[p] != 0.0f && got_d_mask[size_t(p / K) * E + routing.candidate_ids[p]] != 0.0f;
    }
    CHECK(masked_with_signal == masked);
    if (scores == mask_scores::negative) CHECK(masked == int(P));
    if (scores == mask_scores::zero) CHECK(masked == 0);
  }
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("moe_training_forward and the STE path to the routers equal the reference: a row for every candidate, "
            "masked ones included; none and all masked; top-k and top-p rules; shared expert and residual") {
    BEAM_REQUIRE_GPU();
    uint64_t seed = 70000;
    using half = __half;
    const auto mask = beam::routing_rule::mask;
    for (int64_t T : {0, 1, 7, 65}) {
      check_training_step<bf16>(T, 72, 24, 12, 3, 0, mask, false, mask_scores::random, seed += 10);
      check_training_step<half>(T, 40, 16, 9, 4, 16, mask, true, mask_scores::random, seed += 10);
    }
    check_training_step<bf16>(33, 72, 24, 12, 3, 0, mask, true, mask_scores::zero, seed += 10);
    check_training_step<bf16>(33, 72, 24, 12, 3, 16, mask, false, mask_scores::negative, seed += 10);
    check_training_step<half>(33, 40, 16, 9, 4, 0, beam::routing_rule::top_k, false, mask_scores::random, seed += 10);
    check_training_step<bf16>(33, 72, 24, 12, 6, 0, beam::routing_rule::top_p, true, mask_scores::random, seed += 10);
  }
  TEST_CASE("expert parallelism on 2 and 4 simulated ranks: expert_map layers and DeepEP's packed layout sum to the layer") {
    BEAM_REQUIRE_GPU();
    uint64_t seed = 900;
    for (int ranks : {2, 4}) {
      for (int64_t T : {int64_t(5), int64_t(70)}) {  // route_decode with its fused compaction; router_logits
        for (gemm_schedule schedule : {gemm_schedule::automatic, gemm_schedule::prefill}) {
          check_expert_parallel(ranks, T, schedule, seed);
          seed += 10;
        }
      }
    }
  }

  TEST_CASE("moe_forward equals the reference: router paths, schedules, routing rules, shared expert, residual, "
            "padding, e4m3 experts") {
    BEAM_REQUIRE_GPU();
    int n = 0;
    for (int64_t T : beam::test::sweep<int64_t>({0, 1, 3, 64, 65, 127, 1000}, {0, 1, 64, 65, 127})) {  // ≤ 64: route_decode; above: router_logits
      struct shape {
        int H, I, E, K, I_s;
      };
      // E = 6 and 60: router logits padded to a multiple of 4 columns on the GEMM path.
      for (auto [H, I, E, K, I_s] : {shape{64, 32, 6, 2, 0}, shape{200, 24, 60, 4, 32}, shape{256, 64, 128, 8, 0}}) {
        for (gemm_schedule schedule :
             {gemm_schedule::decode, gemm_schedule::prefill, gemm_schedule::prefill_sm80}) {
          // Five rules against three schedules: every pairing within 15 cases.
          const beam::routing_rule rules[] = {beam::routing_rule::mask, beam::routing_rule::mask, beam::routing_rule::top_k,
                                              beam::routing_rule::top_p, beam::routing_rule::threshold};
          const layer_case c{T, H, I, E, K, I_s, rules[n % 5], n % 2 == 0, schedule, n % 7, n % 4 == 1};
          check_layer<bf16>(c, 90000 + uint64_t(n));
          if (n % 4 == 0) check_layer<__half>(c, 91000 + uint64_t(n));
          // e4m3 experts on every other (T, shape), all three schedules: block scales with bf16,
          // per channel with fp16, alternating
          if ((n / 3) % 2 == 0 && H % 16 == 0 && I % 16 == 0) {
            if (n % 2 == 0) check_layer<bf16, __nv_fp8_e4m3>(c, 92000 + uint64_t(n), beam::weight_scales::block_128);
            else check_layer<__half, __nv_fp8_e4m3>(c, 93000 + uint64_t(n), beam::weight_scales::per_channel);
          }
          ++n;
        }
      }
    }
  }

  TEST_CASE("moe_forward with W8A8 experts (e4m3 activations, Hopper) equals the reference on the quantised "
            "activations; refused by name elsewhere") {
    BEAM_REQUIRE_GPU();
    // Decode and prefill schedules (both on the Hopper kernel), a shared expert, zero-computation
    // experts, padding tokens, the mask and Top-K rules; H = 256, I = 160: a partial 128-group.
    int n = 0;
    for (int64_t T : {int64_t(0), int64_t(1), int64_t(37), int64_t(130)}) {
      for (gemm_schedule schedule : {gemm_schedule::decode, gemm_schedule::prefill}) {
        const layer_case c{T, 256, 160, 12, 4, n % 2 == 0 ? 96 : 0,
                           n % 3 == 0 ? beam::routing_rule::top_k : beam::routing_rule::mask, n % 2 == 1, schedule,
                           n % 7, n % 4 == 1};
        check_layer<bf16, __nv_fp8_e4m3>(c, 95000 + uint64_t(n),
                                         n % 2 == 0 ? beam::weight_scales::block_128 : beam::weight_scales::per_channel,
                                         beam::activation_format::e4m3_1x128);
        ++n;
      }
    }
    // W8A8 has no sm_80 kernel: prefill_sm80 is refused by the workspace query already.
    moe_layer<bf16, __nv_fp8_e4m3> layer{256, 160, 12};
    layer.activations = beam::activation_format::e4m3_1x128;
    beam::routing_options opt;
    opt.top_k = 4;
    size_t bytes = 0;
    CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 256, 8, layer, opt, {}, gemm_schedule::prefill_sm80) ==
          cudaErrorInvalidValue);
    CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 256, 8, layer, opt, {}, gemm_schedule::prefill) ==
          cudaSuccess);
    moe_layer<bf16> bf16_layer{256, 160, 12};
    bf16_layer.activations = beam::activation_format::e4m3_1x128;  // bf16 weights: no W8A8
    CHECK(beam::device::moe_forward<bf16>(nullptr, bytes, nullptr, 256, 8, bf16_layer, opt, {}) == cudaErrorInvalidValue);
  }

  TEST_CASE("moe_experts_forward with a given routing, none / some / all pairs masked (then the shared expert "
            "alone, or no work item at all), both GEMM paths; every pair a zero-computation expert; e4m3 experts") {
    BEAM_REQUIRE_GPU();
    for (const auto& run : {std::pair{16, gemm_schedule::automatic}, {0, gemm_schedule::automatic},
                            {16, gemm_schedule::prefill}, {0, gemm_schedule::prefill_sm80}}) {
      CAPTURE(run.first);
      CAPTURE(int(run.second));
      check_experts_forward(run.first, run.second);
      check_experts_forward(run.first, run.second, true);
      // e4m3 experts (routed and shared): the same layer from a checkpoint's codes and scales
      check_experts_forward<__nv_fp8_e4m3>(run.first, run.second, false, beam::weight_scales::block_128);
      check_experts_forward<__nv_fp8_e4m3>(run.first, run.second, run.second == gemm_schedule::prefill,
                                           beam::weight_scales::per_channel);
    }
  }
  TEST_CASE("moe_forward replayed from a CUDA graph with new hidden states equals eager") {
    BEAM_REQUIRE_GPU();
    for (int64_t T : {16, 300}) {  // both router paths
      CAPTURE(T);
      const int H = 128, I = 64, E = 32, K = 4;
      const auto first = to_storage<bf16>(grid_values(size_t(T * H), 11));
      const auto second = to_storage<bf16>(grid_values(size_t(T * H), 12));
      beam::test::device_vector<bf16> d_x(first), w13(to_storage<bf16>(normal_values(size_t(E * 2 * I * H), 13, 0.1))),
          w2(to_storage<bf16>(normal_values(size_t(E * H * I), 14, 0.1))),
          w_r(to_storage<bf16>(grid_values(size_t(E * H), 15))), w_m(to_storage<bf16>(grid_values(size_t(E * H), 16))),
          graph_out{size_t(T * H)}, eager_out{size_t(T * H)};
      const moe_layer<bf16> layer{H, I, E, w13.data(), w2.data(), w_r.data(), w_m.data()};
      beam::routing_options opt;
      opt.top_k = K;
      size_t bytes = 0;
      REQUIRE(beam::device::moe_forward<bf16>(nullptr, bytes, d_x.data(), H, T, layer, opt, {graph_out.data(), H}) ==
              cudaSuccess);
      const auto workspace = beam::test::device_vector<char>::workspace(bytes);
      const auto run = [&](bf16* y, cudaStream_t stream) {
        REQUIRE(beam::device::moe_forward<bf16>(workspace.data(), bytes, d_x.data(), H, T, layer, opt, {y, H},
                                                gemm_schedule::automatic, stream) == cudaSuccess);
      };
      const beam::test::captured_graph graph([&](cudaStream_t stream) { run(graph_out.data(), stream); });
      BEAM_CUDA_TRY(cudaMemcpy(d_x.data(), second.data(), second.size() * sizeof(bf16), cudaMemcpyHostToDevice));
      graph.replay();
      BEAM_CUDA_TRY(cudaStreamSynchronize(graph.stream()));
      run(eager_out.data(), graph.stream());
      BEAM_CUDA_TRY(cudaStreamSynchronize(graph.stream()));
      CHECK(beam::test::as_float(graph_out.to_host()) == beam::test::as_float(eager_out.to_host()));  // bitwise
    }
  }

  TEST_CASE("moe_forward routes a token with the same bits alone and in batches of 64, 65 and 300 (both router paths)") {
    BEAM_REQUIRE_GPU();
    // Inexact logits (normal inputs): each router path must sum them in the one order.
    const int H = 392, I = 32, E = 64, K = 6;
    const int64_t pool = 300;
    const auto x = to_storage<bf16>(normal_values(size_t(pool * H), 51, 1.0));
    beam::test::device_vector<bf16> w13(to_storage<bf16>(normal_values(size_t(E * 2 * I * H), 52, 0.1))),
        w2(to_storage<bf16>(normal_values(size_t(E * H * I), 53, 0.1))),
        w_r(to_storage<bf16>(normal_values(size_t(E * H), 54, 1.0))),
        w_m(to_storage<bf16>(normal_values(size_t(E * H), 55, 0.1)));
    const moe_layer<bf16> layer{H, I, E, w13.data(), w2.data(), w_r.data(), w_m.data()};
    beam::routing_options opt;
    opt.top_k = K;
    std::vector<int64_t> order(static_cast<size_t>(pool));
    for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i * 7 % size_t(pool));  // 7 is prime to 300
    // The batch of the first T tokens of `order`: each token's K ids and weights (as bits).
    const auto route = [&](int64_t T) {
      std::vector<bf16> batch(size_t(T * H));
      for (int64_t i = 0; i < T; ++i) std::copy_n(x.begin() + order[size_t(i)] * H, H, batch.begin() + i * H);
      beam::test::device_vector<bf16> d_x(batch), y{size_t(T * H)};
      beam::test::device_vector<int32_t> ids{size_t(T * K)};
      beam::test::device_vector<float> weights{size_t(T * K)};
      moe_outputs<bf16> out{y.data(), H};
      out.topk_ids = ids.data();
      out.topk_weights = weights.data();
      size_t bytes = 0;
      REQUIRE(beam::device::moe_forward<bf16>(nullptr, bytes, d_x.data(), H, T, layer, opt, out) == cudaSuccess);
      const auto workspace = beam::test::device_vector<char>::workspace(bytes);
      REQUIRE(beam::device::moe_forward<bf16>(workspace.data(), bytes, d_x.data(), H, T, layer, opt, out) ==
              cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      const auto w = weights.to_host();
      std::vector<uint32_t> bits(w.size());
      std::memcpy(bits.data(), w.data(), w.size() * sizeof(float));
      return std::pair{ids.to_host(), bits};
    };
    const auto largest = route(pool);
    for (int64_t T : {int64_t(1), int64_t(64), int64_t(65)}) {
      CAPTURE(T);
      const auto got = route(T);
      for (size_t slot = 0; slot < got.first.size(); ++slot) {
        CAPTURE(slot);
        CHECK(got.first[slot] == largest.first[slot]);
        CHECK(got.second[slot] == largest.second[slot]);
      }
    }
  }

  TEST_CASE("moe_forward: one workspace, zeroed once, serves decode and prefill calls in any order") {
    BEAM_REQUIRE_GPU();
    // The prefill call writes its logits where a decode call of another T keeps nothing: the
    // decode counter, at the workspace's start, must come through it at zero.
    const int H = 64, I = 32, E = 16, K = 4;
    const int64_t T_max = 100, T_decode = 5;
    const auto x = grid_values(size_t(T_max * H), 21);
    const auto w_r = grid_values(size_t(E * H), 22, 64.0f), w_m = grid_values(size_t(E * H), 23, 64.0f);
    const auto w13 = rounded<bf16>(normal_values(size_t(E * 2 * I * H), 24, 0.1));
    const auto w2 = rounded<bf16>(normal_values(size_t(E * H * I), 25, 0.1));
    beam::test::device_vector<bf16> d_x(to_storage<bf16>(x)), d_w13(to_storage<bf16>(w13)),
        d_w2(to_storage<bf16>(w2)), d_wr(to_storage<bf16>(w_r)), d_wm(to_storage<bf16>(w_m)),
        first{size_t(T_decode * H)}, prefill{size_t(T_max * H)}, again{size_t(T_decode * H)};
    const moe_layer<bf16> layer{H, I, E, d_w13.data(), d_w2.data(), d_wr.data(), d_wm.data()};
    beam::routing_options opt;
    opt.top_k = K;
    size_t bytes = 0;
    REQUIRE(beam::device::moe_forward<bf16>(nullptr, bytes, d_x.data(), H, T_max, layer, opt, {first.data(), H}) ==
            cudaSuccess);
    const auto workspace = beam::test::device_vector<char>::workspace(bytes);
    for (const auto& call : {std::pair{T_decode, first.data()}, {T_max, prefill.data()}, {T_decode, again.data()}}) {
      CAPTURE(call.first);
      REQUIRE(beam::device::moe_forward<bf16>(workspace.data(), bytes, d_x.data(), H, call.first, layer, opt,
                                              {call.second, H}) == cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
    }
    const auto decoded = beam::test::as_float(first.to_host());
    CHECK(beam::test::as_float(again.to_host()) == decoded);  // bitwise
    const ref::moe_weights<float> ref_weights{H, I, E, w13.data(), w2.data()};
    const auto expected = ref::moe_forward<float>(x.data(), T_decode, ref_weights, w_r.data(), w_m.data(), opt);
    CHECK(beam::test::relative_error(decoded, expected.out) <= beam::dtype_traits<bf16>::tolerance);
  }
}
