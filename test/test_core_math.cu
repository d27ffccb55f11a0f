// Core math (sigmoid, silu, STE, L_reg terms) on the host, and the same functions on the GPU
// compared with the host.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "beam/core/math.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

namespace {

constexpr double infinity = std::numeric_limits<double>::infinity();
constexpr double quiet_nan = std::numeric_limits<double>::quiet_NaN();

//! Central difference of f at x in double precision.
template <class F>
double central_difference(F f, double x, double h = 1e-6) {
  return (f(x + h) - f(x - h)) / (2 * h);
}

}  // namespace

TEST_CASE("sigmoid: values, symmetry and non-finite inputs") {
  CHECK(beam::sigmoid(0.0) == 0.5);
  CHECK(beam::sigmoid(0.0f) == 0.5f);
  CHECK(beam::sigmoid(infinity) == 1.0);
  CHECK(beam::sigmoid(-infinity) == 0.0);
  CHECK(std::isnan(beam::sigmoid(quiet_nan)));
  CHECK(beam::sigmoid(-1000.0) == 0.0);  // no overflow into NaN
  CHECK(beam::sigmoid(1000.0f) == 1.0f);
  for (double x : beam::test::random_normal<double>(1000, 11, 0.0, 8.0)) {
    CHECK(beam::sigmoid(x) + beam::sigmoid(-x) == doctest::Approx(1.0).epsilon(1e-15));
    CHECK(beam::sigmoid(x) == doctest::Approx(1.0 / (1.0 + std::exp(-x))).epsilon(1e-14));
    CHECK(beam::sigmoid(float(x)) == doctest::Approx(beam::sigmoid(double(float(x)))).epsilon(1e-6));
  }
}

TEST_CASE("sigmoid_grad, silu, STE backward and L_reg terms match finite differences") {
  for (double x : beam::test::random_normal<double>(200, 12, 0.0, 4.0)) {
    CHECK(beam::sigmoid_grad(x) == doctest::Approx(central_difference(beam::sigmoid<double>, x)).epsilon(1e-7));
    CHECK(beam::silu(x) == doctest::Approx(x / (1.0 + std::exp(-x))).epsilon(1e-14));
    // The STE is the gradient of the surrogate d·σ(z): the threshold acts as the identity.
    const double d = 0.37;
    CHECK(beam::ste_backward(d, x) ==
          doctest::Approx(central_difference([&](double z) { return d * beam::sigmoid(z); }, x)).epsilon(1e-7));
    const double scale = 1.0 / 48;
    CHECK(beam::l_reg_term(x, scale) == doctest::Approx(scale / (1.0 + std::exp(-x))).epsilon(1e-14));
    CHECK(beam::l_reg_term_grad(x, scale) ==
          doctest::Approx(central_difference([&](double z) { return beam::l_reg_term(z, scale); }, x)).epsilon(1e-7));
  }
  CHECK(beam::silu(0.0) == 0.0);
  CHECK(beam::sigmoid_grad(0.0) == 0.25);
  CHECK(beam::sigmoid_grad(infinity) == 0.0);
  CHECK(std::isnan(beam::sigmoid_grad(quiet_nan)));
}

TEST_CASE("sigmoid_grad keeps full relative precision in float, also where σ(x) ≈ 1") {
  for (float x : {-60.0f, -30.0f, -17.0f, -10.0f, -1.0f, 0.5f, 10.0f, 17.0f, 30.0f, 60.0f}) {
    const double exact = std::exp(-std::abs(double(x))) / std::pow(1.0 + std::exp(-std::abs(double(x))), 2);
    CAPTURE(x);
    CHECK(std::abs(beam::sigmoid_grad(x) - exact) <= 1e-6 * exact);
    CHECK(beam::sigmoid_grad(x) == beam::sigmoid_grad(-x));
  }
}

TEST_CASE("mask_keeps: inclusive threshold at z = 0, NaN masks out") {
  CHECK(beam::mask_keeps(0.0f));
  CHECK(beam::mask_keeps(-0.0f));
  CHECK(beam::mask_keeps(std::numeric_limits<float>::denorm_min()));
  CHECK_FALSE(beam::mask_keeps(-std::numeric_limits<float>::denorm_min()));
  CHECK_FALSE(beam::mask_keeps(std::numeric_limits<float>::quiet_NaN()));
  CHECK(beam::mask_keeps(infinity));
  CHECK_FALSE(beam::mask_keeps(-infinity));
  // Away from rounding at 0.5, z ≥ 0 ⇔ σ(z) ≥ 0.5.
  for (double z : beam::test::random_normal<double>(1000, 13, 0.0, 3.0)) {
    if (std::abs(z) < 1e-6) continue;
    CHECK(beam::mask_keeps(z) == (beam::sigmoid(z) >= 0.5));
  }
}

namespace {

struct math_outputs {
  float sigmoid, sigmoid_grad, silu, ste, l_reg, l_reg_grad;
  int keeps;
};

__global__ void core_math_kernel(const float* z, int n, math_outputs* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = z[i];
  out[i] = {beam::sigmoid(x),         beam::sigmoid_grad(x),        beam::silu(x),
            beam::ste_backward(0.5f, x), beam::l_reg_term(x, 0.125f), beam::l_reg_term_grad(x, 0.125f),
            beam::mask_keeps(x) ? 1 : 0};
}

//! Equal within a relative tolerance, or both NaN, or both the same infinity.
bool close(float device, float host, float rel) {
  if (std::isnan(host)) return std::isnan(device);
  if (std::isinf(host)) return device == host;
  return std::abs(device - host) <= rel * std::max(1.0f, std::abs(host));
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("core math on the device equals the host functions") {
    BEAM_REQUIRE_GPU();
    std::vector<float> z = beam::test::random_normal<float>(1001, 14, 0.0, 6.0);
    const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, -88.0f, 1e4f, -1e4f,
                              std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN()};
    z.insert(z.end(), std::begin(specials), std::end(specials));
    const int n = int(z.size());

    beam::test::device_vector<float> d_z(z);
    beam::test::device_vector<math_outputs> d_out(z.size());
    d_out.poison();
    core_math_kernel<<<(n + 127) / 128, 128>>>(d_z.data(), n, d_out.data());
    BEAM_CUDA_TRY(cudaGetLastError());
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const std::vector<math_outputs> out = d_out.to_host();

    for (int i = 0; i < n; ++i) {
      const float x = z[i];
      INFO("z = " << x);
      CHECK(out[i].keeps == (beam::mask_keeps(x) ? 1 : 0));  // exact
      CHECK(close(out[i].sigmoid, beam::sigmoid(x), 1e-6f));
      CHECK(close(out[i].sigmoid_grad, beam::sigmoid_grad(x), 1e-6f));
      CHECK(close(out[i].silu, beam::silu(x), 1e-6f));
      CHECK(close(out[i].ste, beam::ste_backward(0.5f, x), 1e-6f));
      CHECK(close(out[i].l_reg, beam::l_reg_term(x, 0.125f), 1e-6f));
      CHECK(close(out[i].l_reg_grad, beam::l_reg_term_grad(x, 0.125f), 1e-6f));
    }
  }
}
