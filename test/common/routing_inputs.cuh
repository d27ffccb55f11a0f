// Routing test inputs: seeded logits in any storage type, laid out on the device as two
// [T, E] arrays or one padded [T, 2E + 3] array, with their float values for the reference.
#pragma once

#include <limits>
#include <random>
#include <vector>

#include "beam/core/dtype.cuh"
#include "beam/reference/matrix.cuh"
#include "beam/routing/device_route.cuh"
#include "common/gpu.cuh"

namespace beam::test {

//! n logits in storage type LogitT: N(0, 1.5²), or on the grid k/64, |k| ≤ 256, when
//! `coarse` (for sigmoid scoring: distinct keys σ(r) then differ by far more than the
//! rounding of σ, which may differ by an ulp between host and device; equal logits tie
//! exactly on both).
template <class LogitT>
std::vector<LogitT> make_logits(size_t n, uint64_t seed, bool coarse) {
  std::vector<LogitT> v(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::uniform_int_distribution<int> grid(-256, 256);
  for (auto& x : v) x = beam::from_float<LogitT>(coarse ? float(grid(rng)) / 64.0f : normal(rng));
  return v;
}

//! Rule options that `valid_rule` refuses, each otherwise `base`: an unknown rule, top-p with
//! p = 0 or NaN, a NaN threshold, a cap below 0 or above K.
inline std::vector<routing_options> malformed_rules(const routing_options& base) {
  std::vector<routing_options> bad(6, base);
  bad[0].rule = static_cast<routing_rule>(7);
  bad[1].rule = bad[2].rule = routing_rule::top_p;
  bad[1].top_p = 0.0f;
  bad[2].top_p = std::numeric_limits<float>::quiet_NaN();
  bad[3].rule = routing_rule::threshold;
  bad[3].threshold = std::numeric_limits<float>::quiet_NaN();
  bad[4].max_active = -1;
  bad[5].max_active = base.top_k + 1;
  return bad;
}

//! Router and mask logits r, z `[T, E]` on the device, in one of the two layouts
//! route_and_mask reads, and as float on the host.
template <class LogitT>
struct device_logits {
  std::vector<float> r_host, z_host;  //!< `[T, E]`, the exact values stored
  device_vector<LogitT> router, mask;
  beam::device::routing_logits<LogitT> view;

  device_logits(const std::vector<LogitT>& r, const std::vector<LogitT>& z, int64_t tokens, int experts,
                bool fused_layout)
      : r_host(r.size()), z_host(z.size()), router(1), mask(1) {
    const int64_t stride = fused_layout ? 2 * experts + 3 : experts;
    std::vector<LogitT> packed_router(size_t(tokens * stride) + 1), packed_mask(size_t(tokens * experts) + 1);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int e = 0; e < experts; ++e) {
        const size_t i = size_t(t * experts + e);
        packed_router[t * stride + e] = r[i];
        (fused_layout ? packed_router[t * stride + experts + e] : packed_mask[i]) = z[i];
        r_host[i] = beam::to_float(r[i]);
        z_host[i] = beam::to_float(z[i]);
      }
    }
    router = device_vector<LogitT>(packed_router);
    mask = device_vector<LogitT>(packed_mask);
    view = {router.data(), fused_layout ? router.data() + experts : mask.data(), stride,
            fused_layout ? stride : experts};
  }

  beam::reference::matrix_view<float> r_view(int64_t tokens, int experts) const {
    return {r_host.data(), tokens, experts, experts};
  }
  beam::reference::matrix_view<float> z_view(int64_t tokens, int experts) const {
    return {z_host.data(), tokens, experts, experts};
  }
};

//! A count of valid tokens (routing_options::valid_tokens) for a test that cycles through its
//! cases: none, half of T, 0, beyond T and negative (both clamped), in host memory for the
//! reference and on the device for the device functions.
struct valid_token_count {
  int32_t host = 0;
  device_vector<int32_t> device{1};
  bool given = false;

  valid_token_count(int64_t tokens, int n) : given(n % 5 != 0) {
    const int32_t cases[5] = {0, int32_t(tokens / 2), 0, int32_t(tokens + 5), -3};
    host = cases[n % 5];
    BEAM_CUDA_TRY(cudaMemcpy(device.data(), &host, sizeof(int32_t), cudaMemcpyHostToDevice));
  }
  //! `options` with the count in host memory (for the reference), or without one.
  routing_options on_host(routing_options options) const {
    options.valid_tokens = given ? &host : nullptr;
    return options;
  }
  //! `options` with the count in device memory, or without one.
  routing_options on_device(routing_options options) const {
    options.valid_tokens = given ? device.data() : nullptr;
    return options;
  }
};

}  // namespace beam::test

