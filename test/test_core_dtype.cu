// Storage types: host conversions, and device conversions bit-identical to the host ones.
#include <doctest/doctest.h>

#include <cstring>
#include <limits>
#include <vector>

#include "beam/core/dtype.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

namespace {

template <class T>
uint16_t bits(T x) {
  uint16_t b;
  std::memcpy(&b, &x, sizeof(b));
  return b;
}

}  // namespace

TEST_CASE("dtype_traits: names, tolerances and round trips") {
  CHECK(std::string(beam::dtype_traits<float>::name) == "fp32");
  CHECK(std::string(beam::dtype_traits<__half>::name) == "fp16");
  CHECK(std::string(beam::dtype_traits<__nv_bfloat16>::name) == "bf16");
  CHECK(beam::dtype_traits<float>::tolerance < beam::dtype_traits<__half>::tolerance);
  CHECK(beam::dtype_traits<__half>::tolerance < beam::dtype_traits<__nv_bfloat16>::tolerance);

  // Representable values survive a round trip exactly.
  for (float v : {0.0f, 1.0f, -2.5f, 0.15625f, 1024.0f}) {
    CHECK(beam::to_float(beam::from_float<__half>(v)) == v);
    CHECK(beam::to_float(beam::from_float<__nv_bfloat16>(v)) == v);
    CHECK(beam::to_float(beam::from_float<float>(v)) == v);
  }
  // Round to nearest, ties to even: 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7.
  CHECK(beam::to_float(beam::from_float<__nv_bfloat16>(1.00390625f)) == 1.0f);
  CHECK(beam::to_float(beam::from_float<__nv_bfloat16>(1.01171875f)) == 1.015625f);
  CHECK(beam::to_float(beam::from_float<__half>(65520.0f)) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(beam::to_float(beam::from_float<__nv_bfloat16>(std::numeric_limits<float>::quiet_NaN()))));
  // Narrowing error is at most the unit roundoff: 2^-8 relative for bf16, 2^-11 for fp16
  // (plus half the smallest fp16 subnormal).
  for (float v : beam::test::random_normal<float>(1000, 21)) {
    CHECK(std::abs(beam::to_float(beam::from_float<__nv_bfloat16>(v)) - v) <= std::abs(v) * 0x1p-8f);
    CHECK(std::abs(beam::to_float(beam::from_float<__half>(v)) - v) <= std::abs(v) * 0x1p-11f + 0x1p-25f);
  }
}

namespace {

template <class T>
__global__ void narrow_kernel(const float* in, int n, T* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = beam::from_float<T>(beam::to_float(beam::from_float<T>(in[i])));
}

template <class T>
void check_device_narrowing() {
  std::vector<float> in = beam::test::random_normal<float>(777, 22, 0.0, 100.0);
  in.push_back(std::numeric_limits<float>::infinity());
  in.push_back(-0.0f);
  in.push_back(std::numeric_limits<float>::quiet_NaN());
  in.push_back(1e-30f);  // below the smallest subnormal of both
  const int n = int(in.size());
  beam::test::device_vector<float> d_in(in);
  beam::test::device_vector<T> d_out(in.size());
  d_out.poison();
  narrow_kernel<T><<<(n + 255) / 256, 256>>>(d_in.data(), n, d_out.data());
  BEAM_CUDA_TRY(cudaGetLastError());
  const std::vector<T> out = d_out.to_host();
  for (int i = 0; i < n; ++i) {
    INFO(beam::dtype_traits<T>::name << " value " << in[i]);
    if (std::isnan(in[i])) {
      CHECK(std::isnan(beam::to_float(out[i])));  // NaN payloads may differ
    } else {
      CHECK(bits(out[i]) == bits(beam::from_float<T>(in[i])));
    }
  }
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("device narrowing is bit-identical to the host") {
    BEAM_REQUIRE_GPU();
    check_device_narrowing<__half>();
    check_device_narrowing<__nv_bfloat16>();
  }
}
