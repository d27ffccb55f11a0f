// beam::device::router_logits_backward against the double sums: ∂L/∂W_r = ∂L/∂rᵀ·x, ∂L/∂W_m =
// ∂L/∂zᵀ·x (written) and ∂L/∂x += ∂L/∂r·W_r + ∂L/∂z·W_m (added); odd sizes, strides, mask on and
// off, T = 0 (zero weight gradients), outputs left out, bitwise repeatability, a token's ∂L/∂x
// alone and in its batch, and a NaN gradient reaching exactly its row and column.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "beam/routing/device_router_logits_backward.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

using beam::device::router_weight_gradients;
using beam::device::router_weights;
using beam::device::routing_gradients;

TEST_CASE("router_logits_backward: bad arguments, before touching the device") {
  using bf16 = __nv_bfloat16;
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  float* grad = reinterpret_cast<float*>(0x2000);
  const router_weights<bf16> w{fake, fake, 64, 64};
  const routing_gradients<float> d{grad, grad + 8, 16, 16};
  const router_weight_gradients out{grad, grad, 64, 64};
  const auto call = [&](int64_t T, int H, int E, bool mask, const routing_gradients<float>& d_, bf16* dx,
                        int64_t dx_stride, const router_weight_gradients& o) {
    return beam::device::router_logits_backward<bf16>(fake, 64, T, H, w, E, mask, d_, dx, dx_stride, o);
  };
  CHECK(call(-1, 64, 8, true, d, fake, 64, out) == cudaErrorInvalidValue);
  CHECK(call(4, 64, 0, true, d, fake, 64, out) == cudaErrorInvalidValue);                       // E = 0
  CHECK(call(4, 0, 8, true, d, fake, 64, out) == cudaErrorInvalidValue);                        // H = 0
  CHECK(call(4, 60, 8, true, d, fake, 64, out) == cudaErrorInvalidValue);                       // H % 8
  CHECK(call(4, 64, 8, true, {nullptr, grad, 16, 16}, fake, 64, out) == cudaErrorInvalidValue); // no ∂L/∂r
  CHECK(call(4, 64, 8, true, {grad, nullptr, 16, 16}, fake, 64, out) == cudaErrorInvalidValue); // no ∂L/∂z
  CHECK(call(4, 64, 8, true, {grad, grad, 4, 16}, fake, 64, out) == cudaErrorInvalidValue);     // stride < E
  CHECK(call(4, 64, 8, true, d, fake, 56, out) == cudaErrorInvalidValue);                       // ∂L/∂x stride < H
  CHECK(call(4, 64, 8, true, d, fake, 64, {grad, grad, 60, 64}) == cudaErrorInvalidValue);      // ∂L/∂W_r stride
  CHECK(call(4, 64, 8, true, d, fake, 64, {grad, grad, 64, 60}) == cudaErrorInvalidValue);      // ∂L/∂W_m stride
  // Mask off: no ∂L/∂z needed; nothing wanted: nothing checked or run.
  CHECK(beam::device::router_logits_backward<bf16>(fake, 64, 4, 64, {fake, nullptr, 64, 0}, 8, false,
                                                   {grad, nullptr, 16, 0}, nullptr, 0, {}) == cudaSuccess);
}

namespace {

template <class T>
void check_router_backward(int64_t tokens, int E, int H, bool mask, uint64_t seed) {
  CAPTURE(tokens);
  CAPTURE(E);
  CAPTURE(H);
  CAPTURE(mask);
  CAPTURE(beam::dtype_traits<T>::name);
  const int64_t x_stride = H + 8, w_stride = H + 16, d_stride = E + 3, dx_stride = H + 24, dw_stride = H + 5;
  const int64_t rows = std::max<int64_t>(tokens, 1);
  const auto x = beam::test::random_values<T>(size_t(rows * x_stride), seed);
  const auto wr = beam::test::random_values<T>(size_t(E * w_stride), seed + 1);
  const auto wm = beam::test::random_values<T>(size_t(E * w_stride), seed + 2);
  const auto dr = beam::test::random_normal<float>(size_t(rows * d_stride), seed + 3);
  const auto dz = beam::test::random_normal<float>(size_t(rows * d_stride), seed + 4);
  const auto dx0 = beam::test::random_values<T>(size_t(rows * dx_stride), seed + 5);
  beam::test::device_vector<T> d_x(x), d_wr(wr), d_wm(wm), d_dx(dx0), d_dx_again(dx0);
  beam::test::device_vector<float> d_dr(dr), d_dz(dz), d_gr{size_t(E * dw_stride)}, d_gm{size_t(E * dw_stride)},
      d_gr_again{size_t(E * dw_stride)};
  d_gr.poison();
  d_gm.poison();
  d_gr_again.poison();
  const router_weights<T> w{d_wr.data(), mask ? d_wm.data() : nullptr, w_stride, w_stride};
  const routing_gradients<float> d{d_dr.data(), mask ? d_dz.data() : nullptr, d_stride, d_stride};
  REQUIRE(beam::device::router_logits_backward<T>(d_x.data(), x_stride, tokens, H, w, E, mask, d, d_dx.data(),
                                                  dx_stride, {d_gr.data(), d_gm.data(), dw_stride, dw_stride}) ==
          cudaSuccess);
  REQUIRE(beam::device::router_logits_backward<T>(d_x.data(), x_stride, tokens, H, w, E, mask, d,
                                                  d_dx_again.data(), dx_stride,
                                                  {d_gr_again.data(), nullptr, dw_stride, 0}) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const auto dx = d_dx.to_host(), dx_again = d_dx_again.to_host();
  const auto gr = d_gr.to_host(), gm = d_gm.to_host(), gr_again = d_gr_again.to_host();
  CHECK(std::memcmp(dx.data(), dx_again.data(), dx.size() * sizeof(T)) == 0);  // bitwise repeatable
  CHECK(std::memcmp(gr.data(), gr_again.data(), gr.size() * sizeof(float)) == 0);
  // Weight gradients: fp32 sums of exact products; ∂L/∂x: one rounding of the sum to T.
  std::vector<double> want_gr, want_gm, want_dx;
  std::vector<float> have_gr, have_gm, have_dx;
  for (int e = 0; e < E; ++e) {
    for (int h = 0; h < H; ++h) {
      double sr = 0.0, sm = 0.0;
      for (int64_t t = 0; t < tokens; ++t) {
        const double xv = beam::to_float(x[size_t(t * x_stride + h)]);
        sr += double(dr[size_t(t * d_stride + e)]) * xv;
        sm += double(dz[size_t(t * d_stride + e)]) * xv;
      }
      want_gr.push_back(sr);
      have_gr.push_back(gr[size_t(e * dw_stride + h)]);
      if (mask) {
        want_gm.push_back(sm);
        have_gm.push_back(gm[size_t(e * dw_stride + h)]);
      }
    }
  }
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < H; ++h) {
      double s = beam::to_float(dx0[size_t(t * dx_stride + h)]);
      for (int e = 0; e < E; ++e) {
        s += double(dr[size_t(t * d_stride + e)]) * beam::to_float(wr[size_t(e * w_stride + h)]);
        if (mask) s += double(dz[size_t(t * d_stride + e)]) * beam::to_float(wm[size_t(e * w_stride + h)]);
      }
      want_dx.push_back(s);
      have_dx.push_back(beam::to_float(dx[size_t(t * dx_stride + h)]));
    }
  }
  if (tokens == 0) {  // zeros, exactly
    for (float v : have_gr) CHECK(v == 0.0f);
    for (float v : have_gm) CHECK(v == 0.0f);
  } else {
    CHECK(beam::test::relative_error(have_gr, want_gr) <= 1e-5);
    if (mask) CHECK(beam::test::relative_error(have_gm, want_gm) <= 1e-5);
    CHECK(beam::test::relative_error(have_dx, want_dx) <= beam::dtype_traits<T>::tolerance);
  }
  // What lies past the rows is untouched: ∂L/∂x's padding keeps its values, the weight
  // gradients' padding its poison; the mask's gradient stays poisoned with the mask off.
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = H; h < dx_stride; ++h) {
      CHECK(std::memcmp(&dx[size_t(t * dx_stride + h)], &dx0[size_t(t * dx_stride + h)], sizeof(T)) == 0);
    }
  }
  for (int e = 0; e < E; ++e) {
    for (int64_t h = H; h < dw_stride; ++h) CHECK(std::isnan(gr[size_t(e * dw_stride + h)]));
    if (!mask) CHECK(std::isnan(gm[size_t(e * dw_stride)]));
  }
  // Token tokens / 2 alone: the same ∂L/∂x bits as in its batch.
  if (tokens > 1) {
    const int64_t t = tokens / 2;
    beam::test::device_vector<T> d_alone(std::vector<T>(dx0.begin() + t * dx_stride, dx0.begin() + (t + 1) * dx_stride));
    REQUIRE(beam::device::router_logits_backward<T>(
                d_x.data() + t * x_stride, x_stride, 1, H, w, E, mask,
                {d_dr.data() + t * d_stride, mask ? d_dz.data() + t * d_stride : nullptr, d_stride, d_stride},
                d_alone.data(), dx_stride, {}) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto alone = d_alone.to_host();
    CHECK(std::memcmp(alone.data(), dx.data() + t * dx_stride, size_t(H) * sizeof(T)) == 0);
  }
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("router_logits_backward equals the double sums: odd sizes, strides, mask on and off, T = 0") {
    BEAM_REQUIRE_GPU();
    uint64_t seed = 900;
    for (int64_t T : {0, 1, 7, 130}) {
      for (auto [E, H] : {std::pair{1, 8}, std::pair{5, 72}, std::pair{70, 200}}) {
        check_router_backward<__nv_bfloat16>(T, E, H, true, seed++);
        check_router_backward<__half>(T, E, H, false, seed++);
      }
    }
  }

  TEST_CASE("router_logits_backward: a NaN in ∂L/∂z reaches exactly its token's ∂L/∂x and its expert's ∂L/∂W_m") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    const int64_t T = 70;
    const int E = 9, H = 80;
    const auto x = beam::test::random_values<bf16>(size_t(T * H), 31);
    const auto w = beam::test::random_values<bf16>(size_t(E * H), 32);
    const auto dr = beam::test::random_normal<float>(size_t(T * E), 33);
    auto dz = beam::test::random_normal<float>(size_t(T * E), 34);
    dz[size_t(66 * E + 4)] = NAN;  // token 66, expert 4
    beam::test::device_vector<bf16> d_x(x), d_w(w), d_dx(std::vector<bf16>(size_t(T * H), beam::from_float<bf16>(0.0f)));
    beam::test::device_vector<float> d_dr(dr), d_dz(dz), d_gr{size_t(E * H)}, d_gm{size_t(E * H)};
    REQUIRE(beam::device::router_logits_backward<bf16>(d_x.data(), H, T, H, {d_w.data(), d_w.data(), H, H}, E, true,
                                                       {d_dr.data(), d_dz.data(), E, E}, d_dx.data(), H,
                                                       {d_gr.data(), d_gm.data(), H, H}) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto dx = d_dx.to_host();
    const auto gr = d_gr.to_host(), gm = d_gm.to_host();
    for (int64_t t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) CHECK(std::isnan(beam::to_float(dx[size_t(t * H + h)])) == (t == 66));
    }
    for (int e = 0; e < E; ++e) {
      for (int h = 0; h < H; ++h) {
        CHECK(std::isnan(gm[size_t(e * H + h)]) == (e == 4));
        CHECK(!std::isnan(gr[size_t(e * H + h)]));
      }
    }
  }
}
