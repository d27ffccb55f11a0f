// beam::device::route_backward and beam::device::aux_losses against the host reference of
// the training math (itself checked against finite differences in test_reference_training).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "beam/reference/routing.cuh"
#include "beam/reference/training.cuh"
#include "beam/routing/device_aux_losses.cuh"
#include "beam/routing/device_route.cuh"
#include "beam/routing/device_route_backward.cuh"
#include "common/gpu.cuh"
#include "common/routing_inputs.cuh"
#include "common/testing.hpp"

namespace ref = beam::reference;
using beam::device::aux_loss_outputs;
using beam::device::aux_loss_terms;
using beam::device::routing_gradients;
using beam::device::routing_logits;

TEST_CASE("route_backward rejects bad arguments before touching the device") {
  const float* fake = reinterpret_cast<const float*>(0x1000);  // never dereferenced
  const int32_t* candidates = reinterpret_cast<const int32_t*>(0x2000);
  float* grad = reinterpret_cast<float*>(0x3000);
  const routing_logits<float> logits{fake, fake + 8, 16, 16};
  const routing_gradients<float> grads{grad, grad + 8, 16, 16};
  beam::routing_options opt;
  opt.top_k = 2;
  const aux_loss_terms none{};
  const auto call = [&](const routing_logits<float>& l, int64_t T, int E, const beam::routing_options& o,
                        const int32_t* c, const float* d, const aux_loss_terms& aux, const routing_gradients<float>& g) {
    return beam::device::route_backward(l, T, E, o, c, d, aux, g);
  };
  CHECK(call(logits, -1, 8, opt, candidates, fake, none, grads) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 513, opt, candidates, fake, none, grads) == cudaErrorInvalidValue);
  beam::routing_options k_big = opt;
  k_big.top_k = 9;
  CHECK(call(logits, 4, 8, k_big, candidates, fake, none, grads) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 8, opt, nullptr, fake, none, grads) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 8, opt, candidates, nullptr, none, grads) == cudaErrorInvalidValue);
  CHECK(call({nullptr, fake, 16, 16}, 4, 8, opt, candidates, fake, none, grads) == cudaErrorInvalidValue);
  CHECK(call({fake, nullptr, 16, 16}, 4, 8, opt, candidates, fake, none, grads) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 8, opt, candidates, fake, none, {grad, nullptr, 16, 16}) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 8, opt, candidates, fake, none, {nullptr, grad, 16, 16}) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 8, opt, candidates, fake, none, {grad, grad, 7, 16}) == cudaErrorInvalidValue);
  CHECK(call(logits, 4, 8, opt, candidates, fake, {0.1f, 0.0f, nullptr}, grads) == cudaErrorInvalidValue);  // α, no f
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(call(logits, 4, 8, opt, candidates, fake, {0.0f, nan, nullptr}, grads) == cudaErrorInvalidValue);
  for (const beam::routing_options& bad : beam::test::malformed_rules(opt)) {
    CHECK(call(logits, 4, 8, bad, candidates, fake, none, grads) == cudaErrorInvalidValue);
  }
  // T = 0: success without a CUDA call; the mask off needs no z and no ∂L/∂z.
  CHECK(call({nullptr, nullptr, 0, 0}, 0, 8, opt, nullptr, nullptr, none, {}) == cudaSuccess);
  beam::routing_options mask_off = opt;
  mask_off.rule = beam::routing_rule::top_k;
  CHECK(call({nullptr, nullptr, 0, 0}, 0, 8, mask_off, nullptr, nullptr, none, {}) == cudaSuccess);
}

TEST_CASE("aux_losses: workspace query and bad arguments") {
  const float* fake = reinterpret_cast<const float*>(0x1000);  // never dereferenced
  const int32_t* candidates = reinterpret_cast<const int32_t*>(0x2000);
  void* workspace = reinterpret_cast<void*>(0x4000);
  const routing_logits<float> logits{fake, fake + 64, 128, 128};
  beam::routing_options opt;
  opt.top_k = 8;
  size_t small = 0, large = 0;
  REQUIRE(beam::device::aux_losses<float>(nullptr, small, {}, 1, 64, opt, nullptr, {}) == cudaSuccess);
  REQUIRE(beam::device::aux_losses<float>(nullptr, large, {}, 100000, 64, opt, nullptr, {}) == cudaSuccess);
  CHECK(small > 0);
  CHECK(large > small);  // grows with T (up to the block cap)
  size_t bytes = large - 1;
  CHECK(beam::device::aux_losses(workspace, bytes, logits, 100000, 64, opt, candidates, {}) == cudaErrorInvalidValue);
  bytes = large;
  CHECK(beam::device::aux_losses(workspace, bytes, logits, 4, 0, opt, candidates, {}) == cudaErrorInvalidValue);
  CHECK(beam::device::aux_losses(workspace, bytes, logits, 4, 64, opt, nullptr, {}) == cudaErrorInvalidValue);
  CHECK(beam::device::aux_losses<float>(workspace, bytes, {nullptr, fake, 128, 128}, 4, 64, opt, candidates, {}) ==
        cudaErrorInvalidValue);
  float* l_reg = reinterpret_cast<float*>(0x5000);
  aux_loss_outputs wants_l_reg{};
  wants_l_reg.l_reg = l_reg;
  CHECK(beam::device::aux_losses<float>(workspace, bytes, {fake, nullptr, 128, 128}, 4, 64, opt, candidates, wants_l_reg) ==
        cudaErrorInvalidValue);
  beam::routing_options k_big = opt;
  k_big.top_k = 17;
  CHECK(beam::device::aux_losses(workspace, bytes, logits, 4, 64, k_big, candidates, {}) == cudaErrorInvalidValue);
}

namespace {

struct backward_case {
  int64_t T;
  int E, K;
  beam::routing_options opt;
  bool fused_layout;
  float alpha, beta;
};

//! Rows [T, E] of a strided device gradient.
template <class GradT>
std::vector<float> unpad(const std::vector<GradT>& padded, int64_t T, int E, int64_t stride) {
  std::vector<float> out(size_t(T * E));
  for (int64_t t = 0; t < T; ++t) {
    for (int e = 0; e < E; ++e) out[t * E + e] = beam::to_float(padded[t * stride + e]);
  }
  return out;
}

template <class LogitT, class GradT>
void check_backward(const backward_case& c, const std::vector<LogitT>& r, const std::vector<LogitT>& z,
                    uint64_t seed) {
  const int64_t T = c.T;
  const int E = c.E, K = c.K;
  CAPTURE(T);
  CAPTURE(E);
  CAPTURE(K);
  CAPTURE(beam::dtype_traits<LogitT>::name);
  CAPTURE(beam::dtype_traits<GradT>::name);
  CAPTURE(int(c.opt.scoring));
  CAPTURE(c.opt.renormalize);
  CAPTURE(int(c.opt.rule));
  CAPTURE(c.fused_layout);
  const beam::test::device_logits<LogitT> logits(r, z, T, E, c.fused_layout);
  beam::routing_options opt = c.opt;
  opt.top_k = K;
  const auto r_view = logits.r_view(T, E), z_view = logits.z_view(T, E);
  const auto fwd = ref::route_and_mask<float>(r_view, z_view, opt);
  const std::vector<float> d_hat = beam::test::random_normal<float>(size_t(T * K), seed);
  ref::routing_grads<float> expected = ref::routing_backward(fwd, r_view, z_view, d_hat.data());
  ref::add_l_reg_grad(fwd, z_view, c.beta, expected.d_mask_logits);
  ref::add_balance_loss_grad(r_view, fwd, c.alpha, expected.d_router_logits);
  std::vector<float> fractions;
  for (double f : ref::candidate_fractions(fwd, E)) fractions.push_back(float(f));

  opt.selection_bias = nullptr;  // selection has no gradient; the backward never reads it
  const int64_t stride = E + 5;  // padded gradient rows
  const size_t n = size_t(std::max<int64_t>(T, 1) * stride);
  beam::test::device_vector<int32_t> candidates(fwd.candidate_ids.empty() ? std::vector<int32_t>(1) : fwd.candidate_ids);
  beam::test::device_vector<float> d_weights(d_hat.empty() ? std::vector<float>(1) : d_hat);
  beam::test::device_vector<float> d_fractions(fractions);
  beam::test::device_vector<GradT> d_router(n), d_mask(n), d_router_again(n), d_mask_again(n);
  d_router.poison();
  d_mask.poison();
  const aux_loss_terms aux{c.alpha, c.beta, d_fractions.data()};
  REQUIRE(beam::test::with_pending_error([&] {
            return beam::device::route_backward(logits.view, T, E, opt, candidates.data(), d_weights.data(), aux,
                                                routing_gradients<GradT>{d_router.data(), d_mask.data(), stride, stride});
          }) == cudaSuccess);
  REQUIRE(beam::device::route_backward(logits.view, T, E, opt, candidates.data(), d_weights.data(), aux,
                                       routing_gradients<GradT>{d_router_again.data(), d_mask_again.data(), stride,
                                                                stride}) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  if (T == 0) return;
  const double tolerance = std::max(1e-4, beam::dtype_traits<GradT>::tolerance);
  // Against the reference as GradT stores it: tiny gradients (a Top-1 renormalised route leaves
  // only the balance term, ~1e-7) are fp16 subnormals, whose spacing no tolerance covers.
  const auto stored = [](std::vector<float> v) {
    for (float& x : v) x = beam::to_float(beam::from_float<GradT>(x));
    return v;
  };
  const std::vector<float> got_r = unpad(d_router.to_host(), T, E, stride);
  CHECK(beam::test::relative_error(got_r, stored(expected.d_router_logits)) <= tolerance);
  // Bitwise deterministic.
  CHECK(unpad(d_router_again.to_host(), T, E, stride) == got_r);
  if (!beam::uses_mask(opt)) {  // ∂L/∂z is not written at all
    const auto untouched = d_mask.to_host();
    CHECK(std::all_of(untouched.begin(), untouched.end(), [](GradT g) { return std::isnan(beam::to_float(g)); }));
    return;
  }
  const std::vector<float> got_z = unpad(d_mask.to_host(), T, E, stride);
  CHECK(beam::test::relative_error(got_z, stored(expected.d_mask_logits)) <= tolerance);
  CHECK(unpad(d_mask_again.to_host(), T, E, stride) == got_z);
  // ∂L/∂z is exactly zero off the candidates.
  for (int64_t t = 0; t < T; ++t) {
    for (int e = 0; e < E; ++e) {
      bool candidate = false;
      for (int k = 0; k < K; ++k) candidate = candidate || fwd.candidate_ids[t * K + k] == e;
      if (!candidate) CHECK(got_z[t * E + e] == 0.0f);
    }
  }
}

template <class LogitT, class GradT>
void random_backward_cases(uint64_t seed_base) {
  const std::vector<float> bias = beam::test::random_normal<float>(512, 7, 0.0, 0.05);
  int n = 0;
  for (int64_t T : beam::test::sweep<int64_t>({0, 1, 7, 64, 65, 1000}, {0, 1, 7, 65, 300})) {
    for (int E : {8, 60, 64, 128, 256, 512}) {  // every bound of the E dispatch
      for (int K : {1, 2, 4, 6, 8, 16}) {
        if (K > E) continue;
        const uint64_t seed = seed_base + uint64_t(n++);
        backward_case c{T, E, K, {}, n % 2 == 0, n % 3 == 0 ? 0.0f : 0.01f, n % 5 == 0 ? 0.0f : 0.3f};
        switch (n % 6) {
          case 0: break;
          case 1: c.opt.renormalize = true; c.opt.routed_scaling_factor = 2.5f;
                  c.opt.selection_bias = bias.data(); break;
          case 2: c.opt.rule = beam::routing_rule::top_k; break;
          case 3: c.opt.scoring = beam::score_function::sigmoid; c.opt.renormalize = true; break;
          case 4:  // λ without renormalisation, under the rules beside the mask (no ∂L/∂z)
            c.opt.routed_scaling_factor = 0.5f;
            c.opt.rule = (n / 6) % 2 == 0 ? beam::routing_rule::top_p : beam::routing_rule::threshold;
            c.opt.top_p = 0.6f;
            c.opt.threshold = 0.05f;
            c.opt.max_active = (n / 12) % 2 == 0 ? 0 : 1;
            break;
          case 5: c.opt.scoring = beam::score_function::sigmoid; c.opt.rule = beam::routing_rule::top_k; break;
        }
        const bool coarse = c.opt.scoring == beam::score_function::sigmoid;
        check_backward<LogitT, GradT>(c, beam::test::make_logits<LogitT>(size_t(T * E), seed, coarse),
                                      beam::test::make_logits<LogitT>(size_t(T * E), seed + 1000, false), seed + 2000);
      }
    }
  }
}

template <class LogitT>
void check_aux_losses(int64_t T, int E, int K, const beam::routing_options& options, bool fused_layout,
                      const std::vector<LogitT>& r, const std::vector<LogitT>& z) {
  CAPTURE(T);
  CAPTURE(E);
  CAPTURE(K);
  CAPTURE(beam::dtype_traits<LogitT>::name);
  CAPTURE(int(options.rule));
  CAPTURE(int(options.scoring));
  const beam::test::device_logits<LogitT> logits(r, z, T, E, fused_layout);
  beam::routing_options opt = options;
  opt.top_k = K;
  const auto r_view = logits.r_view(T, E);
  const auto fwd = ref::route_and_mask<float>(r_view, logits.z_view(T, E), opt);
  const double l_reg = ref::l_reg(fwd), l_bal = ref::balance_loss(r_view, fwd);
  const std::vector<double> f = ref::candidate_fractions(fwd, E);
  std::vector<double> mean_probs(size_t(E), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const auto p = ref::expert_scores(&r_view(t, 0), E, beam::score_function::softmax);
    for (int e = 0; e < E; ++e) mean_probs[e] += p[e] / double(T);
  }

  beam::test::device_vector<int32_t> candidates(fwd.candidate_ids.empty() ? std::vector<int32_t>(1) : fwd.candidate_ids);
  size_t bytes = 0;
  REQUIRE(beam::device::aux_losses<LogitT>(nullptr, bytes, logits.view, T, E, opt, candidates.data(), {}) ==
          cudaSuccess);
  beam::test::device_vector<char> workspace(bytes);
  beam::test::device_vector<float> scalars{2}, fractions{size_t(E)}, probs{size_t(E)}, again{2};
  scalars.poison();
  fractions.poison();
  probs.poison();
  const aux_loss_outputs out{scalars.data(), scalars.data() + 1, fractions.data(), probs.data()};
  REQUIRE(beam::test::with_pending_error([&] {
            return beam::device::aux_losses(workspace.data(), bytes, logits.view, T, E, opt, candidates.data(), out);
          }) == cudaSuccess);
  REQUIRE(beam::device::aux_losses(workspace.data(), bytes, logits.view, T, E, opt, candidates.data(),
                                   {again.data(), again.data() + 1}) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const auto s = scalars.to_host();
  CHECK(std::abs(s[0] - l_reg) <= 1e-5 * std::max(1.0, std::abs(l_reg)));
  CHECK(std::abs(s[1] - l_bal) <= 1e-5 * std::max(1.0, std::abs(l_bal)));
  CHECK(again.to_host() == s);  // bitwise deterministic
  CHECK(beam::test::relative_error(fractions.to_host(), f) <= 1e-6);
  CHECK(beam::test::relative_error(probs.to_host(), mean_probs) <= 1e-5);
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("route_backward equals the reference backward + aux-loss gradients on random routing") {
    BEAM_REQUIRE_GPU();
    random_backward_cases<float, float>(500);
    random_backward_cases<__half, float>(600);
    random_backward_cases<__nv_bfloat16, float>(700);
    random_backward_cases<__nv_bfloat16, __nv_bfloat16>(800);
    random_backward_cases<float, __half>(850);
  }

  TEST_CASE("route_backward: all masked, none masked, ties, NaN and ±Inf router logits, empty slots") {
    BEAM_REQUIRE_GPU();
    const int64_t T = 33;
    const int E = 64, K = 8;
    auto r = beam::test::make_logits<float>(size_t(T * E), 41, false);
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    for (int e = 0; e < E; ++e) {
      r[0 * E + e] = nan;                         // token 0: all NaN → every slot empty
      r[1 * E + e] = e < 3 ? r[1 * E + e] : nan;  // token 1: three candidates
      r[2 * E + e] = 1.0f;                        // token 2: all tied
      r[3 * E + e] = e % 5 == 0 ? inf : 0.0f;     // token 3: +inf shares
      r[4 * E + e] = -inf;                        // token 4: all −inf
    }
    const std::vector<float> z_negative(size_t(T * E), -1e-3f), z_zero(size_t(T * E), 0.0f);
    for (beam::score_function scoring : {beam::score_function::softmax, beam::score_function::sigmoid}) {
      backward_case c{T, E, K, {}, false, 0.01f, 0.3f};
      c.opt.scoring = scoring;
      c.opt.renormalize = scoring == beam::score_function::sigmoid;
      check_backward<float, float>(c, r, z_negative, 43);  // all masked: only the STE term and L_reg
      check_backward<float, float>(c, r, z_zero, 44);      // none masked
      check_backward<float, float>(c, r, beam::test::make_logits<float>(size_t(T * E), 45, false), 46);
    }
  }

  TEST_CASE("route_backward: renormalised Top-1 routing has an exactly zero router gradient (g ≡ λ)") {
    BEAM_REQUIRE_GPU();
    // Regression: the renormalised gradient λ(∂L/∂g_k − Σ ∂L/∂g_i s_i)/S must cancel exactly
    // for K = 1; computed from the gates it left rounding noise that outweighed the balance term.
    const int64_t T = 300;
    const int E = 60;
    const auto r = beam::test::make_logits<float>(size_t(T * E), 51, false);
    const auto z = beam::test::make_logits<float>(size_t(T * E), 52, false);
    const beam::test::device_logits<float> logits(r, z, T, E, false);
    beam::routing_options opt;
    opt.top_k = 1;
    opt.renormalize = true;
    opt.routed_scaling_factor = 2.5f;
    const auto fwd = ref::route_and_mask<float>(logits.r_view(T, E), logits.z_view(T, E), opt);
    beam::test::device_vector<int32_t> candidates(fwd.candidate_ids);
    beam::test::device_vector<float> d_weights(beam::test::random_normal<float>(size_t(T), 53));
    beam::test::device_vector<float> d_router(size_t(T * E)), d_mask(size_t(T * E));
    d_router.poison();
    REQUIRE(beam::device::route_backward(logits.view, T, E, opt, candidates.data(), d_weights.data(),
                                         aux_loss_terms{0.0f, 0.3f, nullptr},
                                         routing_gradients<float>{d_router.data(), d_mask.data(), E, E}) == cudaSuccess);
    const auto got = d_router.to_host();
    CHECK(std::all_of(got.begin(), got.end(), [](float g) { return g == 0.0f; }));
  }

  TEST_CASE("aux_losses equals the reference L_reg, L_bal, f and P") {
    BEAM_REQUIRE_GPU();
    int n = 0;
    for (int64_t T : {0, 1, 7, 64, 65, 1000, 40000}) {  // 40000: more blocks than the partials cap
      for (int E : {8, 60, 128, 512}) {
        for (int K : {1, 6, 8}) {
          if (K > E) continue;
          if (beam::test::emulated_device() && T * E > 64000 && E > 8) continue;  // scale only
          beam::routing_options opt;
          opt.rule = n % 3 != 2 ? beam::routing_rule::mask : beam::routing_rule::top_k;
          opt.scoring = n % 2 ? beam::score_function::sigmoid : beam::score_function::softmax;
          const auto random = [&](auto zero, uint64_t seed) {
            using LogitT = decltype(zero);
            check_aux_losses<LogitT>(T, E, K, opt, seed % 2 == 0,
                                     beam::test::make_logits<LogitT>(size_t(T * E), seed, false),
                                     beam::test::make_logits<LogitT>(size_t(T * E), seed + 1, false));
          };
          random(0.0f, 900 + uint64_t(n));
          random(__nv_bfloat16{}, 1901 + uint64_t(n));
          ++n;
        }
      }
    }
  }

  TEST_CASE("aux_losses: NaN and ±Inf router logits, all-NaN and all −Inf tokens") {
    BEAM_REQUIRE_GPU();
    const int64_t T = 33;
    const int E = 64, K = 8;
    auto r = beam::test::make_logits<float>(size_t(T * E), 47, false);
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    for (int e = 0; e < E; ++e) {
      r[0 * E + e] = nan;                         // token 0: no score at all
      r[1 * E + e] = e < 3 ? r[1 * E + e] : nan;  // token 1: three experts scored
      r[3 * E + e] = e % 5 == 0 ? inf : 0.0f;     // token 3: +inf shares
      r[4 * E + e] = -inf;                        // token 4: all −inf, equal shares
      r[5 * E + e] = e == 7 ? -inf : r[5 * E + e];
    }
    const auto z = beam::test::make_logits<float>(size_t(T * E), 48, false);
    for (bool mask : {true, false}) {
      beam::routing_options opt;
      opt.rule = mask ? beam::routing_rule::mask : beam::routing_rule::top_k;
      check_aux_losses<float>(T, E, K, opt, mask, r, z);  // L_bal, f and P stay finite, as in the reference
    }
  }

  TEST_CASE("a training step (route, aux losses, backward) replayed from a CUDA graph equals eager") {
    BEAM_REQUIRE_GPU();
    const int64_t T = 300;
    const int E = 64, K = 6;
    beam::test::device_vector<float> d_logits(beam::test::make_logits<float>(size_t(T * 2 * E), 61, false));
    const auto second = beam::test::make_logits<float>(size_t(T * 2 * E), 62, false);
    beam::test::device_vector<float> d_hat(beam::test::random_normal<float>(size_t(T * K), 63));
    const routing_logits<float> logits{d_logits.data(), d_logits.data() + E, 2 * E, 2 * E};
    beam::routing_options opt;
    opt.top_k = K;
    size_t bytes = 0;
    REQUIRE(beam::device::aux_losses<float>(nullptr, bytes, logits, T, E, opt, nullptr, {}) == cudaSuccess);
    beam::test::device_vector<char> workspace(bytes);
    struct step_buffers {
      beam::test::device_vector<int32_t> ids{size_t(T * K)}, candidates{size_t(T * K)};
      beam::test::device_vector<float> weights{size_t(T * K)}, losses{2}, fractions{size_t(E)};
      beam::test::device_vector<float> d_router{size_t(T * E)}, d_mask{size_t(T * E)};
    } graph_out, eager_out;
    const auto step = [&](step_buffers& b, cudaStream_t stream) {
      REQUIRE(beam::device::route_and_mask(logits, T, E, opt,
                                           {b.ids.data(), b.weights.data(), nullptr, b.candidates.data()},
                                           stream) == cudaSuccess);
      REQUIRE(beam::device::aux_losses(workspace.data(), bytes, logits, T, E, opt, b.candidates.data(),
                                       {b.losses.data(), b.losses.data() + 1, b.fractions.data()},
                                       stream) == cudaSuccess);
      REQUIRE(beam::device::route_backward(logits, T, E, opt, b.candidates.data(), d_hat.data(),
                                           {0.01f, 0.3f, b.fractions.data()},
                                           routing_gradients<float>{b.d_router.data(), b.d_mask.data(), E, E},
                                           stream) == cudaSuccess);
    };
    const beam::test::captured_graph graph([&](cudaStream_t stream) { step(graph_out, stream); });
    BEAM_CUDA_TRY(cudaMemcpy(d_logits.data(), second.data(), second.size() * sizeof(float), cudaMemcpyHostToDevice));
    graph.replay();
    BEAM_CUDA_TRY(cudaStreamSynchronize(graph.stream()));
    step(eager_out, graph.stream());
    BEAM_CUDA_TRY(cudaStreamSynchronize(graph.stream()));
    CHECK(graph_out.ids.to_host() == eager_out.ids.to_host());
    CHECK(graph_out.losses.to_host() == eager_out.losses.to_host());
    CHECK(graph_out.d_router.to_host() == eager_out.d_router.to_host());
    CHECK(graph_out.d_mask.to_host() == eager_out.d_mask.to_host());
  }
}
