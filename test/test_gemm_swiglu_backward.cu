// beam::device::swiglu_backward against the formula in double: bf16 and fp16, padded strides,
// a device row count below the static bound (rows past it untouched), in place and out of place
// (bitwise equal), NaN and Inf inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "beam/core/math.cuh"
#include "beam/gemm/device_swiglu_backward.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

using bf16 = __nv_bfloat16;

TEST_CASE("swiglu_backward rejects bad arguments before touching the device") {
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  const auto call = [&](const bf16* gu, int64_t gu_stride, const bf16* da, int64_t da_stride, int64_t rows, int n,
                        bf16* d_gu, int64_t d_gu_stride) {
    return beam::device::swiglu_backward(gu, gu_stride, da, da_stride, rows, n, d_gu, d_gu_stride);
  };
  CHECK(call(fake, 128, fake, 64, -1, 64, fake, 128) == cudaErrorInvalidValue);  // rows < 0
  CHECK(call(fake, 128, fake, 64, 10, 0, fake, 128) == cudaErrorInvalidValue);   // N = 0
  CHECK(call(fake, 128, fake, 64, 10, 60, fake, 128) == cudaErrorInvalidValue);  // N % 8
  CHECK(call(nullptr, 128, fake, 64, 10, 64, fake, 128) == cudaErrorInvalidValue);
  CHECK(call(fake, 128, nullptr, 64, 10, 64, fake, 128) == cudaErrorInvalidValue);
  CHECK(call(fake, 128, fake, 64, 10, 64, nullptr, 128) == cudaErrorInvalidValue);
  CHECK(call(fake + 4, 128, fake, 64, 10, 64, fake, 128) == cudaErrorInvalidValue);  // misaligned
  CHECK(call(fake, 120, fake, 64, 10, 64, fake, 128) == cudaErrorInvalidValue);      // stride < 2N
  CHECK(call(fake, 128, fake, 56, 10, 64, fake, 128) == cudaErrorInvalidValue);      // stride < N
  CHECK(call(fake, 128, fake, 68, 10, 64, fake, 128) == cudaErrorInvalidValue);      // stride % 8
  CHECK(call(fake, 128, fake, 64, 10, 64, fake, 124) == cudaErrorInvalidValue);      // stride < 2N
  CHECK(call(fake, 128, fake, 64, 10, 64, fake, 136) == cudaErrorInvalidValue);      // in place, another stride
  CHECK(call(nullptr, 0, nullptr, 0, 0, 64, nullptr, 0) == cudaSuccess);             // no rows
}

namespace {

//! ∂L/∂G, ∂L/∂U of one element in double (the file comment of device_swiglu_backward.cuh).
void expected_grads(double g, double u, double da, double& dg, double& du) {
  dg = da * u * beam::silu_grad(g);
  du = da * beam::silu(g);
}

//! `rows` rows (the static bound) of which the device count names `counted`, N = n; with
//! `special`, a NaN in G, an Inf in U and a NaN in ∂L/∂A at fixed places.
template <class T>
void check_swiglu_backward(int64_t rows, int64_t counted, int n, bool special, uint64_t seed) {
  CAPTURE(rows);
  CAPTURE(counted);
  CAPTURE(n);
  CAPTURE(special);
  CAPTURE(beam::dtype_traits<T>::name);
  const int64_t gu_stride = 2 * n + 8, da_stride = n + 16, out_stride = 2 * n + 24;
  auto gu = beam::test::random_values<T>(size_t(std::max<int64_t>(rows, 1) * gu_stride), seed);
  auto da = beam::test::random_values<T>(size_t(std::max<int64_t>(rows, 1) * da_stride), seed + 1);
  if (special && counted > 2) {
    gu[size_t(1 * gu_stride + 3)] = beam::from_float<T>(NAN);               // G of row 1, column 3
    gu[size_t(2 * gu_stride + n + 5)] = beam::from_float<T>(INFINITY);      // U of row 2, column 5
    da[size_t(0 * da_stride + 7)] = beam::from_float<T>(NAN);               // ∂L/∂A of row 0, column 7
  }
  beam::test::device_vector<T> d_gu_in(gu), d_da(da), d_out{size_t(std::max<int64_t>(rows, 1) * out_stride)};
  beam::test::device_vector<int32_t> d_count(std::vector<int32_t>{int32_t(counted)});
  d_out.poison();
  REQUIRE(beam::device::swiglu_backward<T>(d_gu_in.data(), gu_stride, d_da.data(), da_stride, rows, n, d_out.data(),
                                           out_stride, d_count.data()) == cudaSuccess);
  // In place over a copy of [G | U], all rows of the bound (no count).
  beam::test::device_vector<T> d_in_place(gu);
  REQUIRE(beam::device::swiglu_backward<T>(d_in_place.data(), gu_stride, d_da.data(), da_stride, rows, n,
                                           d_in_place.data(), gu_stride) == cudaSuccess);
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const auto out = d_out.to_host(), in_place = d_in_place.to_host();
  const double tolerance = beam::dtype_traits<T>::tolerance;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < out_stride; ++i) {
      const float have = beam::to_float(out[size_t(r * out_stride + i)]);
      if (r >= counted || i >= 2 * n) {  // past the count or the row: untouched
        CHECK(std::isnan(have));
        continue;
      }
      const int64_t j = i % n;
      double dg = 0.0, du = 0.0;
      expected_grads(beam::to_float(gu[size_t(r * gu_stride + j)]), beam::to_float(gu[size_t(r * gu_stride + n + j)]),
                     beam::to_float(da[size_t(r * da_stride + j)]), dg, du);
      const double want = i < n ? dg : du;
      if (std::isnan(want)) {
        CHECK(std::isnan(have));
      } else if (std::isinf(want)) {
        CHECK(have == float(want));
      } else {
        CHECK(std::abs(have - want) <= tolerance * (1.0 + std::abs(want)));
      }
      // In place: the same bits wherever the count reached.
      const T a = out[size_t(r * out_stride + i)], b = in_place[size_t(r * gu_stride + i)];
      CHECK(std::memcmp(&a, &b, sizeof(T)) == 0);
    }
  }
}

}  // namespace

TEST_SUITE("gpu") {
  TEST_CASE("swiglu_backward equals the formula: dtypes, odd rows, a device row count, in place, NaN and Inf") {
    BEAM_REQUIRE_GPU();
    uint64_t seed = 700;
    for (int64_t rows : {0, 1, 7, 300}) {
      for (int n : {8, 200}) {
        check_swiglu_backward<bf16>(rows, rows, n, false, seed++);
        check_swiglu_backward<__half>(rows, rows > 3 ? rows - 3 : rows, n, rows > 3, seed++);
        check_swiglu_backward<bf16>(rows, -5, n, false, seed++);  // a negative count: no row
      }
    }
    check_swiglu_backward<bf16>(40, 1000, 64, true, seed++);  // a count past the bound: the bound
  }
}
