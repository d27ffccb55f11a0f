// The architecture guard: this file is built for compute_75 alone (CMake's default
// architecture with nvcc 13, i.e. a consumer that sets no CMAKE_CUDA_ARCHITECTURES), so every
// grouped-GEMM kernel in it is a trap. A device of sm_80 or later JIT-compiles that PTX; the
// library must see that the code loaded is older than compute_80 and refuse to launch:
// cudaErrorInvalidDeviceFunction, no kernel run, no sticky error.
#include <cuda_bf16.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "beam/gemm/device_grouped_gemm.cuh"
#include "beam/moe/device_moe.cuh"
#include "common/gpu.cuh"

static_assert(__CUDA_ARCH_LIST__ == 750, "this test is built for compute_75 alone");

TEST_SUITE("gpu") {
  TEST_CASE("code built for compute_75 on an sm_80+ device: grouped_gemm and moe_experts_forward launch nothing") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    const int64_t T = 4;
    const int K = 2, E = 2, H = 64, I = 64;
    beam::test::device_vector<bf16> x(beam::test::random_values<bf16>(size_t(T * H), 1));
    beam::test::device_vector<bf16> w13(beam::test::random_values<bf16>(size_t(E) * 2 * I * H, 2));
    beam::test::device_vector<bf16> w2(beam::test::random_values<bf16>(size_t(E) * H * I, 3));
    beam::test::device_vector<bf16> y(size_t(T * H));
    const std::vector<int32_t> ids = {0, 1, 1, -1, 0, 1, 1, 0};
    beam::test::device_vector<int32_t> topk_ids(ids);
    beam::test::device_vector<float> topk_weights(std::vector<float>(ids.size(), 0.5f));
    const std::vector<int32_t> offsets_host = {0, 3, int32_t(T * K)};
    beam::test::device_vector<int32_t> offsets(offsets_host);
    y.poison();

    const beam::device::gemm_groups groups{offsets.data(), E, T * K, T * K};
    CHECK(beam::device::grouped_gemm<bf16, bf16>({x.data(), H}, {w2.data(), I, int64_t(H) * I}, H, H, groups,
                                                 {y.data(), H}) == cudaErrorInvalidDeviceFunction);
    const beam::device::moe_layer<bf16> layer{H, I, E, w13.data(), w2.data()};
    size_t bytes = 0;
    REQUIRE(beam::device::moe_experts_forward<bf16>(nullptr, bytes, x.data(), H, T, layer, topk_ids.data(),
                                                    topk_weights.data(), K, {y.data(), H}) == cudaSuccess);
    beam::test::device_vector<unsigned char> workspace(bytes);
    CHECK(beam::device::moe_experts_forward<bf16>(workspace.data(), bytes, x.data(), H, T, layer, topk_ids.data(),
                                                  topk_weights.data(), K, {y.data(), H}) ==
          cudaErrorInvalidDeviceFunction);
    // Nothing ran: no trap left a sticky error, and y is untouched.
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(cudaGetLastError() == cudaSuccess);
    const auto got = y.to_host();
    CHECK(std::all_of(got.begin(), got.end(), [](bf16 v) {
      uint16_t bits = 0;
      std::memcpy(&bits, &v, sizeof bits);
      return bits == 0xFFFF;  // the poison's bytes
    }));
  }
}
