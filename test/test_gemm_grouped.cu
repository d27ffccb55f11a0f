// beam::device::grouped_gemm against beam::reference::grouped_matmul_nt (+ swiglu_columns):
// every schedule (decode, prefill: the Hopper kernel on sm_90, prefill_sm80), all epilogues,
// gathered and contiguous A, bf16 and fp16, fp32 output; a first call captured into a graph,
// and pair indices that name no pair.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <random>
#include <vector>

#include "beam/core/warp.cuh"
#include "beam/gemm/device_grouped_gemm.cuh"
#include "beam/permute/device_compact.cuh"
#include "beam/reference/gemm.cuh"
#include "beam/reference/permute.cuh"
#include "common/gpu.cuh"
#include "common/testing.hpp"

namespace ref = beam::reference;
using beam::device::gemm_epilogue;
using beam::device::gemm_schedule;
using beam::weight_scales;
using e4m3 = __nv_fp8_e4m3;

constexpr gemm_schedule all_schedules[] = {gemm_schedule::decode, gemm_schedule::prefill,
                                           gemm_schedule::prefill_sm80};

TEST_CASE("grouped_gemm rejects bad arguments before touching the device") {
  using bf16 = __nv_bfloat16;
  bf16* fake = reinterpret_cast<bf16*>(0x1000);  // 16-byte aligned, never dereferenced
  const int32_t* offsets = reinterpret_cast<const int32_t*>(0x2000);
  const beam::device::gemm_a<bf16> a{fake, 64};
  const beam::device::gemm_b<bf16> b{fake, 64, 64 * 128};
  const beam::device::gemm_groups groups{offsets, 4, 100, 100};
  const beam::device::gemm_output<bf16> out{fake, 128};
  const auto call = [](const beam::device::gemm_a<bf16>& a_, const beam::device::gemm_b<bf16>& b_, int n, int k,
                       const beam::device::gemm_groups& g, const beam::device::gemm_output<bf16>& o) {
    return beam::device::grouped_gemm(a_, b_, n, k, g, o);
  };
  CHECK(beam::device::grouped_gemm(a, b, 128, 64, groups, out, gemm_schedule(4)) == cudaErrorInvalidValue);
  CHECK(call(a, b, 128, 64, groups, {fake, 128, gemm_epilogue(4)}) == cudaErrorInvalidValue);
  CHECK(call(a, b, 128, 64, {offsets, 4, -1}, out) == cudaErrorInvalidValue);
  CHECK(call(a, b, 128, 64, {offsets, 0, 100}, out) == cudaErrorInvalidValue);
  CHECK(call(a, b, 128, 64, {offsets, 513, 100}, out) == cudaErrorInvalidValue);
  CHECK(call(a, b, 128, 64, {nullptr, 4, 100}, out) == cudaErrorInvalidValue);  // no offsets: one group only
  CHECK(call(a, b, 128, 64, {offsets, 4, 100, 0, offsets, 25}, out) == cudaErrorInvalidValue);  // offsets and counts
  CHECK(call(a, b, 128, 64, {nullptr, 4, 100, 0, offsets, 0}, out) == cudaErrorInvalidValue);   // packed: M ≥ 1
  CHECK(call(a, b, 128, 64, {nullptr, 4, 99, 0, offsets, 25}, out) == cudaErrorInvalidValue);   // rows < count·M
  CHECK(call(a, b, 128, 64, {nullptr, 4, 100, 0, offsets, int64_t(1) << 62}, out) == cudaErrorInvalidValue);
  CHECK(call(a, b, 128, 60, groups, out) == cudaErrorInvalidValue);               // K % 8
  CHECK(call(a, b, 0, 64, groups, out) == cudaErrorInvalidValue);
  CHECK(call(a, b, beam::max_extent + 2, 64, groups, out) == cudaErrorInvalidValue);  // N, K ≤ 2³⁰
  CHECK(call({fake, int64_t(beam::max_extent) + 8}, {fake, int64_t(beam::max_extent) + 8, 0}, 128,
             beam::max_extent + 8, groups, out) == cudaErrorInvalidValue);
  CHECK(call(a, b, 25, 64, groups, {fake, 128, gemm_epilogue::swiglu}) == cudaErrorInvalidValue);  // odd N
  CHECK(call({nullptr, 64}, b, 128, 64, groups, out) == cudaErrorInvalidValue);
  CHECK(call(a, {nullptr, 64, 0}, 128, 64, groups, out) == cudaErrorInvalidValue);
  CHECK(call(a, b, 128, 64, groups, {nullptr, 128}) == cudaErrorInvalidValue);
  CHECK(call(a, b, 128, 64, groups, {fake, 128, gemm_epilogue::scale_rows}) == cudaErrorInvalidValue);  // no scales
  const float* scales = reinterpret_cast<const float*>(0x3000);
  CHECK(call(a, b, 128, 64, groups, {fake, 128, gemm_epilogue::scatter_add, scales}) ==
        cudaErrorInvalidValue);  // scatter_add: no pair of each row
  CHECK(call(a, b, 128, 64, groups, {fake, 128, gemm_epilogue::scatter_add, scales, offsets, 0}) ==
        cudaErrorInvalidValue);  // top_k 0
  CHECK(call({fake, 64, offsets, 0}, b, 128, 64, groups, out) == cudaErrorInvalidValue);              // top_k 0
  // Pair indices need the pair count that bounds them, in [1, 2³¹].
  for (int64_t pairs : {int64_t(0), int64_t(-1), int64_t(INT32_MAX) + 2}) {
    CAPTURE(pairs);
    CHECK(call({fake, 64, offsets, 2}, b, 128, 64, {offsets, 4, 100, pairs}, out) == cudaErrorInvalidValue);
    CHECK(call(a, b, 128, 64, {offsets, 4, 100, pairs}, {fake, 128, gemm_epilogue::scale_rows, scales, offsets}) ==
          cudaErrorInvalidValue);
    CHECK(call(a, b, 128, 64, {offsets, 4, 100, pairs}, {fake, 128, gemm_epilogue::scatter_add, scales, offsets, 2}) ==
          cudaErrorInvalidValue);
  }
  CHECK(call({fake + 1, 64}, b, 128, 64, groups, out) == cudaErrorInvalidValue);                      // misaligned
  CHECK(call({fake, 60}, b, 128, 64, groups, out) == cudaErrorInvalidValue);                          // stride < K
  CHECK(call(a, {fake, 68, 0}, 128, 64, groups, out) == cudaErrorInvalidValue);                       // stride % 8
  CHECK(call(a, {fake, 64, 4}, 128, 64, groups, out) == cudaErrorInvalidValue);                       // expert stride
  CHECK(call(a, b, 128, 64, groups, {fake, 120}) == cudaErrorInvalidValue);                           // stride < N
  CHECK(call({nullptr, 0}, {nullptr, 0, 0}, 128, 64, {offsets, 4, 0}, {nullptr, 0}) == cudaSuccess);  // no rows
  // grouped_gemm_nn, B [E, K, N]: rows of N, N a multiple of 8 (SwiGLU: N / 2), K as for [N, K].
  const auto call_kn = [](const beam::device::gemm_b<bf16>& b_, int n, int k,
                          const beam::device::gemm_output<bf16>& o) {
    return beam::device::grouped_gemm_nn({reinterpret_cast<bf16*>(0x1000), 512}, b_, n, k,
                                      {reinterpret_cast<const int32_t*>(0x2000), 4, 100}, o);
  };
  CHECK(call_kn({fake, 64, 64 * 512}, 128, 512, {fake, 128}) == cudaErrorInvalidValue);       // stride < N
  CHECK(call_kn({fake, 20, 20 * 512}, 20, 512, {fake, 24}) == cudaErrorInvalidValue);         // N % 8
  CHECK(call_kn({fake, 24, 24 * 512}, 24, 512, {fake, 24, gemm_epilogue::swiglu}) == cudaErrorInvalidValue);  // N / 2 % 8
  CHECK(call_kn({fake + 1, 128, 128 * 512}, 128, 512, {fake, 128}) == cudaErrorInvalidValue);  // misaligned
  CHECK(call_kn({fake, 128, 128 * 512}, 128, 60, {fake, 128}) == cudaErrorInvalidValue);       // K % 8
  CHECK(call_kn({fake, 128, 128 * 512}, 128, 512, {fake, 128, gemm_epilogue(4)}) == cudaErrorInvalidValue);
  CHECK(call_kn({fake, 128, 128 * 512, scales, weight_scales::per_channel}, 128, 512, {fake, 128}) ==
        cudaErrorInvalidValue);  // T weights are unscaled
}

TEST_CASE("e4m3 weights: exact values, scale layouts and the reference's dequantisation, hand-worked") {
  CHECK(beam::e4m3_value(0x38) == 1.0f);             // 0.0111.000: 2⁰
  CHECK(beam::e4m3_value(0x7e) == 448.0f);           // 0.1111.110: the largest finite value
  CHECK(beam::e4m3_value(0x08) == 0x1p-6f);          // 0.0001.000: the smallest normal
  CHECK(beam::e4m3_value(0x01) == 0x1p-9f);          // 0.0000.001: the smallest subnormal
  CHECK(beam::e4m3_value(0x07) == 7 * 0x1p-9f);      // 0.0000.111
  CHECK(beam::e4m3_value(0xb5) == -0.8125f);         // 1.0110.101: −2⁻¹ · (1 + 5/8)
  CHECK(std::signbit(beam::e4m3_value(0x80)));       // −0
  CHECK(beam::e4m3_value(0x80) == 0.0f);
  CHECK(std::isnan(beam::e4m3_value(0x7f)));
  CHECK(std::isnan(beam::e4m3_value(0xff)));
  for (int code = 0; code < 256; ++code) {  // against CUDA's own conversion, an independent one
    CAPTURE(code);
    __nv_fp8_e4m3 q;
    q.__x = uint8_t(code);
    const float theirs = float(q), ours = beam::e4m3_value(uint8_t(code));
    CHECK((std::isnan(ours) ? std::isnan(theirs) : std::memcmp(&ours, &theirs, sizeof(float)) == 0));
  }
  using e4m3_traits = beam::dtype_traits<e4m3>;  // float → e4m3: to nearest even, saturating
  CHECK(e4m3_traits::from_float(1.0625f).__x == 0x38);   // the tie of 1 and 1.125: 1 (mantissa 0)
  CHECK(e4m3_traits::from_float(1.1875f).__x == 0x3a);   // the tie of 1.125 and 1.25: 1.25 (mantissa 2)
  CHECK(e4m3_traits::from_float(1000.0f).__x == 0x7e);   // beyond 448: 448
  CHECK(e4m3_traits::from_float(-INFINITY).__x == 0xfe);
  CHECK((e4m3_traits::from_float(NAN).__x & 0x7f) == 0x7f);
  CHECK(e4m3_traits::to_float(e4m3_traits::from_float(0x1p-9f)) == 0x1p-9f);
  CHECK(e4m3_traits::from_float(0x1p-11f).__x == 0x00);  // below half the smallest subnormal: 0
  // Block rows: one half of N = 300 (3 blocks); halves of 150 rows (2 blocks each).
  CHECK(beam::scale_block_row(127, 300, 1) == 0);
  CHECK(beam::scale_block_row(128, 300, 1) == 1);
  CHECK(beam::scale_block_row(299, 300, 1) == 2);
  CHECK(beam::scale_block_row(149, 300, 2) == 1);
  CHECK(beam::scale_block_row(150, 300, 2) == 2);  // W3's first row starts a block
  CHECK(beam::scale_block_row(299, 300, 2) == 3);
  CHECK(beam::scales_per_expert(weight_scales::block_128, 300, 129, 1) == 3 * 2);
  CHECK(beam::scales_per_expert(weight_scales::block_128, 300, 129, 2) == 4 * 2);
  CHECK(beam::scales_per_expert(weight_scales::per_channel, 300, 129, 2) == 300);
  CHECK(beam::scales_per_expert(weight_scales::none, 300, 129, 1) == 0);
  // Two experts of [N, K] = [2, 130]: codes 1.0 everywhere but Q[1][1][129] = −2 (0xc0).
  std::vector<e4m3> q(2 * 2 * 130);
  for (e4m3& code : q) code.__x = 0x38;
  q[(1 * 2 + 1) * 130 + 129].__x = 0xc0;
  const std::vector<float> blocks = {1, 2, 3, 4, 5, 6, 7, 8};  // [E, R = 2, ⌈130/128⌉ = 2]
  const auto w = ref::dequantize_weights(q.data(), blocks.data(), weight_scales::block_128, 2, 2, 130, 2);
  CHECK(w[0] == 1);                  // e 0, row 0 (W1), k 0: block (0, 0)
  CHECK(w[128] == 2);                // k 128: block (0, 1)
  CHECK(w[130 + 5] == 3);            // row 1 (W3): block row 1
  CHECK(w[(2 + 1) * 130 + 129] == -16);  // e 1, row 1, k 129: −2 · s[1][1][1] = −2 · 8
  const std::vector<float> channels = {1, 2, 3, 4};  // [E, N]
  const auto wc = ref::dequantize_weights(q.data(), channels.data(), weight_scales::per_channel, 2, 2, 130);
  CHECK(wc[130] == 2);
  CHECK(wc[(2 + 1) * 130 + 129] == -8);
  CHECK(ref::dequantize_weights(q.data(), nullptr, weight_scales::none, 2, 2, 130)[0] == 1);
  CHECK_THROWS_AS(ref::dequantize_weights(q.data(), nullptr, weight_scales::block_128, 2, 2, 130),
                  std::invalid_argument);
  CHECK_THROWS_AS(ref::dequantize_weights(q.data(), blocks.data(), weight_scales(3), 2, 2, 130), std::invalid_argument);
  CHECK_THROWS_AS(ref::dequantize_weights(q.data(), blocks.data(), weight_scales::block_128, 2, 3, 130, 2),
                  std::invalid_argument);  // halves must divide N
}

TEST_CASE("grouped_gemm with e4m3 weights rejects bad formats before touching the device") {
  using bf16 = __nv_bfloat16;
  bf16* fake = reinterpret_cast<bf16*>(0x1000);
  const e4m3* codes = reinterpret_cast<const e4m3*>(0x4000);
  const float* scales = reinterpret_cast<const float*>(0x3000);
  const int32_t* offsets = reinterpret_cast<const int32_t*>(0x2000);
  const beam::device::gemm_groups groups{offsets, 4, 100, 100};
  const beam::device::gemm_output<bf16> out{fake, 128};
  const auto call = [&](const beam::device::gemm_b<e4m3>& b, int k) {
    return beam::device::grouped_gemm<bf16, bf16>({fake, 256}, b, 128, k, groups, out);
  };
  CHECK(call({codes, 256, 256 * 128, scales, weight_scales(3)}, 256) == cudaErrorInvalidValue);    // not a scaling
  CHECK(call({codes, 256, 256 * 128, nullptr, weight_scales::block_128}, 256) == cudaErrorInvalidValue);
  CHECK(call({codes, 256, 256 * 128, scales, weight_scales::block_128}, 200) == cudaErrorInvalidValue);  // K % 16
  CHECK(call({codes, 264, 264 * 128, scales, weight_scales::block_128}, 256) == cudaErrorInvalidValue);  // 16-byte rows
  CHECK(call({codes, 256, 256 * 128 + 8, scales, weight_scales::block_128}, 256) == cudaErrorInvalidValue);
  CHECK(call({codes + 1, 256, 256 * 128, scales, weight_scales::block_128}, 256) == cudaErrorInvalidValue);
  CHECK(call({reinterpret_cast<const e4m3*>(0x4000), 256, 256 * 128,
              reinterpret_cast<const float*>(0x3002), weight_scales::block_128}, 256) == cudaErrorInvalidValue);
  // T weights are unscaled.
  CHECK(beam::device::grouped_gemm<bf16, bf16>({fake, 256}, {fake, 256, 256 * 128, scales, weight_scales::per_channel},
                                               128, 256, groups, out) == cudaErrorInvalidValue);
  CHECK(call({nullptr, 0, 0, nullptr, weight_scales::block_128}, 256) == cudaErrorInvalidValue);  // no scales
  CHECK(beam::device::grouped_gemm<bf16, bf16>({nullptr, 0}, beam::device::gemm_b<e4m3>{}, 128, 256, {offsets, 4, 0},
                                               {nullptr, 0}) == cudaSuccess);  // no rows
}

TEST_CASE("reference grouped GEMM and SwiGLU on a hand-worked case") {
  // Two groups: rows {0} use B_0 = [[1, 0], [0, 1]], rows {1, 2} use B_1 = [[1, 1], [2, 0]].
  const std::vector<double> a = {1, 2, 3, 4, 5, 6}, b = {1, 0, 0, 1, 1, 1, 2, 0};
  const auto acc = ref::grouped_matmul_nt(a.data(), 2, nullptr, b.data(), 2, 2, {0, 1, 3});
  CHECK(acc == std::vector<double>{1, 2, 7, 6, 11, 10});
  const std::vector<int64_t> sources = {2, 0, 0};  // a gather: rows 2, 0, 0 of A
  CHECK(ref::grouped_matmul_nt(a.data(), 2, sources.data(), b.data(), 2, 2, {0, 1, 3}) ==
        std::vector<double>{5, 6, 3, 2, 3, 2});
  const auto act = ref::swiglu_columns(acc, 2);  // silu(gate) · up
  REQUIRE(act.size() == 3);
  CHECK(act[0] == doctest::Approx(beam::silu(1.0) * 2));
  CHECK(act[2] == doctest::Approx(beam::silu(11.0) * 10));
  CHECK_THROWS_AS(ref::grouped_matmul_nt(a.data(), 2, nullptr, b.data(), 2, 2, {0, 2, 1}), std::invalid_argument);
}

TEST_CASE("group lookup: the last tile start at or below a tile index skips empty groups") {
  const std::vector<int32_t> starts = {0, 0, 2, 2, 5};  // groups 0 and 2 have no tiles
  CHECK(beam::detail::last_start_at_or_below(starts.data(), 4, 0) == 1);
  CHECK(beam::detail::last_start_at_or_below(starts.data(), 4, 1) == 1);
  CHECK(beam::detail::last_start_at_or_below(starts.data(), 4, 2) == 3);
  CHECK(beam::detail::last_start_at_or_below(starts.data(), 4, 4) == 3);
  using decode = beam::detail::gemm_geometry<beam::device::decode_tiles>;
  using prefill = beam::detail::gemm_geometry<beam::device::prefill_tiles>;
  CHECK(decode::threads == 128);
  CHECK(prefill::threads == 256);
  CHECK(decode::smem_bytes(128) == 9 * (16 + 64) * 64 * 2 + 132 * 4);  // ring + 129 starts, in 16-byte units
  CHECK(prefill::smem_bytes(1) == 3 * (128 + 128) * 64 * 2 + 16);
  // No static shared memory (the scan storage lives in the ring): 512 groups fit the smallest
  // per-block limit of sm_80+ parts (101376 bytes on sm_86/sm_89).
  CHECK(prefill::smem_bytes(512) <= 101376);
  CHECK(decode::smem_bytes(512) <= 101376);
  // e4m3: decode_e4m3_tiles' ring holds decode_tiles' tile bytes, plus two scales per stage,
  // and both e4m3 policies fit the same limit.
  using decode_e4m3 = beam::detail::gemm_geometry<beam::device::decode_e4m3_tiles, 1>;
  using prefill_e4m3 = beam::detail::gemm_geometry<beam::device::prefill_e4m3_tiles, 1>;
  CHECK(decode_e4m3::smem_bytes(0) == 15 * (16 * 64 * 2 + 64 * 64 + 2 * 4) + 16);  // A, B, scales; 1 start
  CHECK(decode_e4m3::smem_bytes(0) - 15 * 2 * 4 == decode::smem_bytes(0));
  CHECK(decode_e4m3::smem_bytes(512) <= 101376);
  CHECK(prefill_e4m3::smem_bytes(512) <= 101376);
  // Hopper: whole warpgroups, 1024-byte stages, and 512 groups fit sm_90's 227 KiB per block.
  using hopper = beam::detail::hopper_geometry<beam::device::hopper_tiles>;
  CHECK(hopper::threads == 128 * (1 + hopper::bm / 64));  // a producer and a consumer per 64 rows
  CHECK(hopper::stage_bytes % 1024 == 0);                 // every stage tile on the swizzle's 1024 bytes
  CHECK(hopper::smem_bytes(512) - hopper::smem_bytes(0) == 512 * 4);  // 4 bytes per group's tile start
  CHECK(hopper::smem_bytes(512) <= 227 * 1024);
}

TEST_CASE("Hopper ring position: slot s mod S and phase (s / S) mod 2 from its own state, no stage count") {
  beam::detail::ring_position<5> ring;  // the default 5 stages: 2^32 is no multiple of 5
  for (uint32_t s = 0; s < 1000; ++s, ring.advance()) {
    CAPTURE(s);
    REQUIRE((ring.slot == int(s % 5) && ring.phase == s / 5 % 2));
  }
  // The state is all there is: after every 2·S stages it is back at (0, 0), at any length
  // (2^32 stages, which no test can run, included).
  for (int s = 0; s < 10; ++s) ring.advance();
  CHECK((ring.slot == 0 && ring.phase == 0));
}

TEST_CASE("per-device memo: computed once per tag and device; errors and unlisted devices are not kept") {
  struct tag_a {};
  struct tag_b {};
  int calls = 0, value = 0;
  const auto compute = [&](int result) {
    return [&calls, result](int& out) {
      ++calls;
      out = result;
      return cudaSuccess;
    };
  };
  using beam::detail::per_device_memo;
  CHECK(per_device_memo<tag_a>(0, value, compute(7)) == cudaSuccess);
  CHECK(per_device_memo<tag_a>(0, value, compute(9)) == cudaSuccess);  // kept: no second computation
  CHECK((value == 7 && calls == 1));
  CHECK(per_device_memo<tag_a>(1, value, compute(9)) == cudaSuccess);  // another device
  CHECK((value == 9 && calls == 2));
  CHECK(per_device_memo<tag_b>(0, value, compute(5)) == cudaSuccess);  // another tag
  CHECK((value == 5 && calls == 3));
  CHECK(per_device_memo<tag_b>(2, value, [](int&) { return cudaErrorInvalidValue; }) == cudaErrorInvalidValue);
  CHECK(per_device_memo<tag_b>(2, value, compute(4)) == cudaSuccess);  // the error was not kept
  CHECK((value == 4 && calls == 4));
  CHECK(per_device_memo<tag_b>(64, value, compute(3)) == cudaSuccess);
  CHECK(per_device_memo<tag_b>(64, value, compute(3)) == cudaSuccess);  // beyond the table: every time
  CHECK(calls == 6);
}

TEST_CASE("tile arithmetic: column tiles (BN / 2 output columns for swiglu) and the work bound") {
  beam::detail::grouped_gemm_params<__nv_bfloat16, __nv_bfloat16> p{};
  p.n = 1536;  // Qwen3-30B-A3B GEMM 1: N = 2I
  CHECK(beam::device::detail::column_tiles(p, gemm_epilogue::swiglu, 128) == 12);
  CHECK(beam::device::detail::column_tiles(p, gemm_epilogue::store, 128) == 12);
  CHECK(beam::device::detail::column_tiles(p, gemm_epilogue::swiglu, 64) == 24);
  p.n = 2 * 200;  // I = 200: 200 output columns in tiles of 64 → 4, the last one partial
  CHECK(beam::device::detail::column_tiles(p, gemm_epilogue::swiglu, 128) == 4);
  p.n = 59;  // an odd router width
  CHECK(beam::device::detail::column_tiles(p, gemm_epilogue::store, 64) == 1);
  CHECK(beam::device::detail::column_tiles(p, gemm_epilogue::scale_rows, 16) == 4);
  p.column_tiles = 3;
  p.rows = 1000;
  p.groups = 60;
  CHECK(beam::device::detail::work_bound(p, 128) == 3 * 8);  // one group (no offsets): ⌈1000 / 128⌉
  const int32_t offsets[2] = {0, 1000};
  p.offsets = offsets;  // every group may end in a partial tile
  CHECK(beam::device::detail::work_bound(p, 128) == 3 * (8 + 60));
  CHECK(beam::device::detail::work_bound(p, 16) == 3 * (63 + 60));
}

namespace {

//! The default policies as types of their own: kernels that only the capture test launches.
struct capture_decode_tiles : beam::device::decode_tiles {};
struct capture_prefill_tiles : beam::device::prefill_tiles {};
struct capture_hopper_tiles : beam::device::hopper_tiles {};

struct gemm_case {
  int64_t tokens;
  int top_k, experts, n, k;
  double masked;
  bool gather;
  gemm_epilogue epilogue;
  gemm_schedule schedule;
};

//! Tile policies other than the defaults: one consumer warpgroup and the wgmma N of 64
//! (BM = 64, BN = 64), the wgmma N of 256 (BM = 128, BN = 256, 4 stages to fit 227 KiB), and
//! an sm_80 prefill policy of 2 × 2 warps with 32 × 64 warp tiles.
struct hopper_64x64_tiles {
  static constexpr int block_rows = 64, block_cols = 64, stages = 6;
};
struct hopper_128x256_tiles {
  static constexpr int block_rows = 128, block_cols = 256, stages = 4;
};
struct sm80_64x128_tiles {
  static constexpr int block_rows = 64, block_cols = 128, warps_m = 2, warps_n = 2, stages = 4;
};

//! grouped_gemm over `slots` (per row, a pair index or any value that names no pair; rows in the
//! groups of `offsets`, the static row bound slots.size()), with P = T·K pairs and X, the P
//! scales and scatter_add's C of exactly T rows, so that a dereferenced index outside [0, P) is
//! out of bounds (cudaErrorIllegalAddress on the emulator): on every schedule, the gathered
//! store, scale_rows and scatter_add against the reference, and the rows that name no pair
//! exactly zero.
void check_pair_slots(int64_t T, int K, const std::vector<int32_t>& offsets, const std::vector<int32_t>& slots,
                      uint64_t seed) {
  using bf16 = __nv_bfloat16;
  const int64_t P = T * K, rows = int64_t(slots.size());
  const int E = int(offsets.size()) - 1, n = 40, k = 48;
  const auto valid = [&](int64_t r) { return slots[size_t(r)] >= 0 && slots[size_t(r)] < P; };
  const auto x = beam::test::random_values<bf16>(size_t(T * k), seed);
  const auto xp = beam::test::random_values<bf16>(size_t(rows * k), seed + 1);  // contiguous A
  const auto b = beam::test::random_values<bf16>(size_t(E * n * k), seed + 2);
  const auto scales = beam::test::random_normal<float>(size_t(P), seed + 3);
  // Gathered: row T of x_zero is zeros, the source of the rows that name no pair.
  std::vector<bf16> x_zero(x);
  x_zero.resize(size_t((T + 1) * k), beam::from_float<bf16>(0.0f));
  std::vector<int64_t> sources(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) sources[size_t(r)] = valid(r) ? slots[size_t(r)] / K : T;
  const auto gathered = ref::grouped_matmul_nt(x_zero.data(), k, sources.data(), b.data(), n, k, offsets);
  const auto acc = ref::grouped_matmul_nt(xp.data(), k, nullptr, b.data(), n, k, offsets);
  const int64_t grouped = offsets.back();  // rows past the last group belong to none: unwritten
  std::vector<double> scaled(acc.size()), added(size_t(T * n), 0.0);
  for (int64_t r = 0; r < grouped; ++r) {
    for (int j = 0; j < n; ++j) {
      const double v = valid(r) ? scales[size_t(slots[size_t(r)])] * acc[size_t(r * n + j)] : 0.0;
      scaled[size_t(r * n + j)] = v;
      if (valid(r)) added[size_t(slots[size_t(r)] / K * n + j)] += v;
    }
  }
  beam::test::device_vector<bf16> d_x(x), d_xp(xp), d_b(b);
  beam::test::device_vector<int32_t> d_offsets(offsets), d_slots(slots);
  beam::test::device_vector<float> d_scales(scales);
  const beam::device::gemm_b<bf16> gb{d_b.data(), k, int64_t(n) * k};
  const beam::device::gemm_groups groups{d_offsets.data(), E, rows, P};
  for (gemm_schedule schedule : all_schedules) {
    CAPTURE(int(schedule));
    beam::test::device_vector<float> c_store{size_t(rows * n)}, c_scaled{size_t(rows * n)};
    beam::test::device_vector<float> c_added(std::vector<float>(size_t(T * n), 0.0f));
    REQUIRE(beam::device::grouped_gemm<bf16, float>({d_x.data(), k, d_slots.data(), K}, gb, n, k, groups,
                                                    {c_store.data(), n}, schedule) == cudaSuccess);
    REQUIRE(beam::device::grouped_gemm<bf16, float>(
                {d_xp.data(), k}, gb, n, k, groups,
                {c_scaled.data(), n, gemm_epilogue::scale_rows, d_scales.data(), d_slots.data()}, schedule) ==
            cudaSuccess);
    REQUIRE(beam::device::grouped_gemm<bf16, float>(
                {d_xp.data(), k}, gb, n, k, groups,
                {c_added.data(), n, gemm_epilogue::scatter_add, d_scales.data(), d_slots.data(), K}, schedule) ==
            cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());  // an out-of-bounds read fails here
    auto stored = c_store.to_host(), scaled_rows = c_scaled.to_host();
    stored.resize(size_t(grouped * n));
    scaled_rows.resize(size_t(grouped * n));
    CHECK(beam::test::relative_error(stored, std::vector<double>(gathered.begin(), gathered.begin() + grouped * n)) <=
          1e-5);
    CHECK(beam::test::relative_error(scaled_rows, std::vector<double>(scaled.begin(), scaled.begin() + grouped * n)) <=
          1e-5);
    CHECK(beam::test::relative_error(c_added.to_host(), added) <= 1e-5);
    for (int64_t r = 0; r < grouped; ++r) {  // rows that name no pair: exactly zero
      if (valid(r)) continue;
      for (int j = 0; j < n; ++j) CHECK((stored[size_t(r * n + j)] == 0.0f && scaled_rows[size_t(r * n + j)] == 0.0f));
    }
  }
}

//! Expert weights `[E, N, K]` in format W and their values for the reference: T values, or
//! e4m3 codes (every finite code, uniformly) with scales in [2⁻¹⁰, 2⁻⁴] as `scaling` says.
template <class T, class W>
struct test_weights {
  std::vector<W> codes;
  std::vector<float> scales;
  std::vector<double> values;

  test_weights(int experts, int n, int k, weight_scales scaling, int halves, uint64_t seed) {
    const size_t count = size_t(experts) * size_t(n) * size_t(k);
    if constexpr (std::is_same_v<W, T>) {
      codes = beam::test::random_values<T>(count, seed);
      values.assign(codes.begin(), codes.end());
    } else {
      std::mt19937_64 rng(seed);
      codes.resize(count);
      for (W& code : codes) {
        code.__x = uint8_t(rng());
        if ((code.__x & 0x7f) == 0x7f) code.__x ^= 1;  // NaN → ±448
      }
      std::uniform_real_distribution<float> exponent(-10.0f, -4.0f);
      scales.resize(size_t(experts * beam::scales_per_expert(scaling, n, k, halves)));
      for (float& s : scales) s = std::exp2(exponent(rng));
      values = ref::dequantize_weights(codes.data(), scales.data(), scaling, experts, n, k, halves);
    }
  }
};

//! B `[E, N, K]` transposed to `[E, K, N]` with rows of `stride` ≥ N elements, NaN past N (a
//! read beyond a row would show).
template <class T>
std::vector<T> k_major(const std::vector<T>& b, int experts, int n, int k, int stride) {
  std::vector<T> t(size_t(experts) * size_t(k) * size_t(stride), beam::from_float<T>(NAN));
  for (int e = 0; e < experts; ++e) {
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i < k; ++i) t[(size_t(e) * k + i) * stride + j] = b[(size_t(e) * n + j) * k + i];
    }
  }
  return t;
}

//! grouped_gemm on one case against the reference; KMajorB: grouped_gemm_nn, B given `[E, K, N]`.
template <class T, class OutT, class PrefillTiles = beam::device::prefill_tiles,
          class HopperTiles = beam::device::hopper_tiles, class W = T, bool KMajorB = false>
void check_grouped_gemm(const gemm_case& c, uint64_t seed, weight_scales scaling = weight_scales::none) {
  CAPTURE(c.tokens);
  CAPTURE(c.experts);
  CAPTURE(c.n);
  CAPTURE(c.k);
  CAPTURE(c.masked);
  CAPTURE(c.gather);
  CAPTURE(int(c.epilogue));
  CAPTURE(int(c.schedule));
  CAPTURE(beam::dtype_traits<T>::name);
  CAPTURE(beam::dtype_traits<OutT>::name);
  CAPTURE(sizeof(W));
  CAPTURE(int(scaling));
  CAPTURE(KMajorB);
  // Routing: distinct experts per token, some masked, half the pairs to the first experts
  // (skew) so that some experts get many rows and others none.
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int32_t> ids(size_t(c.tokens * c.top_k));
  std::vector<int> pool(size_t(c.experts));
  for (int64_t t = 0; t < c.tokens; ++t) {
    for (int e = 0; e < c.experts; ++e) pool[size_t(e)] = e;
    std::shuffle(pool.begin(), pool.end(), rng);
    if (u(rng) < 0.5) std::sort(pool.begin(), pool.end());  // hot experts 0, 1, ...
    for (int k = 0; k < c.top_k; ++k) ids[size_t(t * c.top_k + k)] = u(rng) < c.masked ? -1 : pool[size_t(k)];
  }
  const ref::compaction perm = ref::compact(ids.data(), c.tokens, c.top_k, c.experts);
  const int64_t rows_bound = c.tokens * c.top_k, n_active = perm.n_active;
  const int64_t a_stride = c.k + 8, c_cols = c.epilogue == gemm_epilogue::swiglu ? c.n / 2 : c.n,
                c_stride = c_cols + 8;
  // A: X [T, K] gathered through sorted_pairs, or the gathered copy Xp [rows_bound, K].
  const int64_t a_rows = c.gather ? c.tokens : rows_bound;
  auto a = beam::test::random_values<T>(size_t(std::max<int64_t>(a_rows, 1) * a_stride), seed + 1);
  for (int64_t r = 0; r < a_rows; ++r) {  // NaN past K: a read beyond the row would show
    for (int64_t j = c.k; j < a_stride; ++j) a[size_t(r * a_stride + j)] = beam::from_float<T>(NAN);
  }
  const test_weights<T, W> b(c.experts, c.n, c.k, scaling, c.epilogue == gemm_epilogue::swiglu ? 2 : 1, seed + 2);
  const auto scales = beam::test::random_normal<float>(size_t(std::max<int64_t>(rows_bound, 1)), seed + 3);
  std::vector<int64_t> sources(static_cast<size_t>(n_active));
  for (int64_t r = 0; r < n_active; ++r) sources[size_t(r)] = c.gather ? perm.token_of_row(r) : r;
  const std::vector<double> acc = ref::grouped_matmul_nt(a.data(), a_stride, sources.data(), b.values.data(), c.n, c.k,
                                                         perm.offsets);
  std::vector<double> expected = c.epilogue == gemm_epilogue::swiglu ? ref::swiglu_columns(acc, c.n) : acc;
  if (c.epilogue == gemm_epilogue::scale_rows) {
    for (int64_t r = 0; r < n_active; ++r) {
      for (int64_t j = 0; j < c.n; ++j) expected[size_t(r * c.n + j)] *= scales[size_t(perm.sorted_pairs[size_t(r)])];
    }
  }

  beam::test::device_vector<T> d_a(a);
  const int kn_stride = c.n + 8;
  beam::test::device_vector<W> d_b(KMajorB ? k_major(b.codes, c.experts, c.n, c.k, kn_stride) : b.codes);
  beam::test::device_vector<float> d_scales(scales), d_weight_scales(b.scales.empty() ? std::vector<float>(1) : b.scales);
  beam::test::device_vector<int32_t> d_offsets(perm.offsets),
      d_pairs(perm.sorted_pairs.empty() ? std::vector<int32_t>(1) : perm.sorted_pairs);
  beam::test::device_vector<OutT> d_c{size_t(std::max<int64_t>(rows_bound, 1) * c_stride)};
  d_c.poison();
  const beam::device::gemm_a<T> ga{d_a.data(), a_stride, c.gather ? d_pairs.data() : nullptr, c.top_k};
  const beam::device::gemm_b<W> gb{d_b.data(), c.k, int64_t(c.n) * c.k, d_weight_scales.data(), scaling};
  const beam::device::gemm_groups groups{d_offsets.data(), c.experts, rows_bound, rows_bound};
  const beam::device::gemm_output<OutT> out{d_c.data(), c_stride, c.epilogue, d_scales.data(), d_pairs.data()};
  if constexpr (KMajorB) {
    const beam::device::gemm_b<T> kn{d_b.data(), kn_stride, int64_t(c.k) * kn_stride};
    REQUIRE(beam::device::grouped_gemm_nn<T, OutT, beam::device::decode_tiles, PrefillTiles, HopperTiles>(
                ga, kn, c.n, c.k, groups, out, c.schedule) == cudaSuccess);
  } else if constexpr (std::is_same_v<W, T>) {
    REQUIRE(beam::device::grouped_gemm<T, OutT, beam::device::decode_tiles, PrefillTiles, HopperTiles>(
                ga, gb, c.n, c.k, groups, out, c.schedule) == cudaSuccess);
  } else {
    REQUIRE(beam::device::grouped_gemm<T, OutT, beam::device::decode_e4m3_tiles, PrefillTiles>(ga, gb, c.n, c.k, groups,
                                                                                              out, c.schedule) ==
            cudaSuccess);
  }
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const auto got_padded = d_c.to_host();
  std::vector<float> got(size_t(n_active * c_cols));
  for (int64_t r = 0; r < n_active; ++r) {
    for (int64_t j = 0; j < c_cols; ++j) got[size_t(r * c_cols + j)] = beam::to_float(got_padded[size_t(r * c_stride + j)]);
  }
  const double tolerance = std::max(beam::dtype_traits<OutT>::tolerance, 1e-5);
  CHECK(beam::test::relative_error(got, expected) <= tolerance);
  for (int64_t r = 0; r < rows_bound; ++r) {  // rows past n_active and columns past the output: never written
    for (int64_t j = r < n_active ? c_cols : 0; j < c_stride; ++j) {
      CHECK(std::isnan(beam::to_float(got_padded[size_t(r * c_stride + j)])));
    }
  }
}

//! NaN in row 3 and Inf in row 30 of A (two experts: rows [0, 17) and [17, 40)) reach only
//! their rows, on every schedule; with e4m3 weights also a NaN code (S.1111.111) in row 7 of
//! expert 1, which reaches column 7 of that expert's rows.
template <class W>
void check_non_finite_rows(weight_scales scaling) {
  CAPTURE(sizeof(W));
  const int64_t rows = 40;
  const int n = 24, k = 80;
  auto a = beam::test::random_values<__nv_bfloat16>(size_t(rows * k), 91);
  test_weights<__nv_bfloat16, W> b(2, n, k, scaling, 1, 92);
  a[size_t(3 * k + 5)] = beam::from_float<__nv_bfloat16>(NAN);
  a[size_t(30 * k + 70)] = beam::from_float<__nv_bfloat16>(INFINITY);
  if constexpr (!std::is_same_v<W, __nv_bfloat16>) {
    b.codes[size_t((n + 7) * k + 11)].__x = 0x7f;
    b.values = ref::dequantize_weights(b.codes.data(), b.scales.data(), scaling, 2, n, k);
  }
  const std::vector<int32_t> offsets = {0, 17, int32_t(rows)};
  const auto expected = ref::grouped_matmul_nt(a.data(), k, nullptr, b.values.data(), n, k, offsets);
  beam::test::device_vector<__nv_bfloat16> d_a(a);
  beam::test::device_vector<W> d_b(b.codes);
  beam::test::device_vector<float> d_weight_scales(b.scales.empty() ? std::vector<float>(1) : b.scales);
  beam::test::device_vector<int32_t> d_offsets(offsets);
  const beam::device::gemm_b<W> gb{d_b.data(), k, int64_t(n) * k, d_weight_scales.data(), scaling};
  for (gemm_schedule schedule : all_schedules) {
    CAPTURE(int(schedule));
    beam::test::device_vector<float> d_c{size_t(rows * n)};
    REQUIRE(beam::device::grouped_gemm<__nv_bfloat16, float>({d_a.data(), k}, gb, n, k, {d_offsets.data(), 2, rows},
                                                             {d_c.data(), n}, schedule) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto got = d_c.to_host();
    for (int64_t r = 0; r < rows; ++r) {
      for (int j = 0; j < n; ++j) {
        const double want = expected[size_t(r * n + j)], have = got[size_t(r * n + j)];
        if (r == 3 || std::isnan(want)) {
          CHECK(std::isnan(have));
        } else if (r == 30) {
          CHECK(!std::isfinite(have));  // ±Inf, or NaN where +Inf meets a zero weight
          CHECK(std::isnan(have) == std::isnan(want));
        } else {
          CHECK(std::abs(have - want) <= 1e-4 * (1.0 + std::abs(want)));
        }
      }
    }
  }
}

//! Dequantises the 256 e4m3 codes (4i .. 4i + 3 in word i) to pairs of T.
template <class T>
__global__ void dequantize_every_code(uint32_t* pairs) {
  const uint32_t i = threadIdx.x, codes = 4 * i | (4 * i + 1) << 8 | (4 * i + 2) << 16 | (4 * i + 3) << 24;
  uint32_t out[2];
  beam::warp::dequantize_e4m3x4<T>(codes, out);
  pairs[2 * i] = out[0];
  pairs[2 * i + 1] = out[1];
}

//! Every code's T bits equal those of its exact value; a NaN code gives a NaN (of its sign from
//! the bit conversion; the hardware's fp16 conversion of sm_89+ may give either).
template <class T>
void check_every_e4m3_code() {
  CAPTURE(beam::dtype_traits<T>::name);
  beam::test::device_vector<uint32_t> d_pairs{128};
  dequantize_every_code<T><<<1, 64>>>(d_pairs.data());
  BEAM_CUDA_TRY(cudaDeviceSynchronize());
  const auto pairs = d_pairs.to_host();
  for (int code = 0; code < 256; ++code) {
    CAPTURE(code);
    const uint16_t bits = uint16_t(pairs[size_t(code / 2)] >> (16 * (code % 2)));
    T value;
    std::memcpy(static_cast<void*>(&value), &bits, sizeof(bits));
    const float want = beam::e4m3_value(uint8_t(code)), have = beam::to_float(value);
    if (std::isnan(want)) {
      CHECK(std::isnan(have));
      if (std::is_same_v<T, __nv_bfloat16>) CHECK((bits & 0x8000) == (code & 0x80) << 8);  // bits, not to_float:
                                                                                      // the host drops a NaN's sign
    } else {
      const T exact = beam::from_float<T>(want);
      CHECK(beam::to_float(exact) == want);  // every e4m3 value is a T value
      CHECK(std::memcmp(&exact, &bits, sizeof(bits)) == 0);
    }
  }
}

}  // namespace

TEST_SUITE("gpu") {
  // The host queries of a first call (function attributes, occupancy, device attributes, the
  // driver's tensor-map encoder) are legal while a stream captures, in every mode. The tile
  // policies of this case give kernels of its own, so the Global capture holds their first
  // call (not yet memoised); as the suite's first case, on sm_90 it also holds the encoder's
  // lookup. ThreadLocal and Relaxed forbid no more than Global, and capture memoised calls.
  TEST_CASE("grouped_gemm: a first call captured in a graph (Global, ThreadLocal, Relaxed) equals the reference") {
    BEAM_REQUIRE_GPU();
    const int64_t T = 37;
    const int K = 2, E = 5, n = 48, k = 64;
    std::vector<int32_t> ids(size_t(T * K));
    for (int64_t t = 0; t < T; ++t) {
      for (int j = 0; j < K; ++j) ids[size_t(t * K + j)] = (t + j) % 7 == 0 ? -1 : int32_t((t + 2 * j) % E);
    }
    const ref::compaction perm = ref::compact(ids.data(), T, K, E);
    const auto x = beam::test::random_values<__nv_bfloat16>(size_t(T * k), 41);
    const auto b = beam::test::random_values<__nv_bfloat16>(size_t(E * n * k), 42);
    std::vector<int64_t> sources(size_t(perm.n_active));
    for (int64_t r = 0; r < perm.n_active; ++r) sources[size_t(r)] = perm.token_of_row(r);
    const auto expected = ref::grouped_matmul_nt(x.data(), k, sources.data(), b.data(), n, k, perm.offsets);
    beam::test::device_vector<__nv_bfloat16> d_x(x), d_b(b);
    beam::test::device_vector<int32_t> d_offsets(perm.offsets), d_pairs(perm.sorted_pairs);
    for (auto mode : {cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed}) {
      for (gemm_schedule schedule : {gemm_schedule::decode, gemm_schedule::prefill}) {
        CAPTURE(int(mode));
        CAPTURE(int(schedule));
        beam::test::device_vector<float> d_c{size_t(T * K * n)};
        d_c.poison();
        cudaStream_t stream = nullptr;
        BEAM_CUDA_TRY(cudaStreamCreate(&stream));
        BEAM_CUDA_TRY(cudaStreamBeginCapture(stream, mode));
        const cudaError_t status =
            beam::device::grouped_gemm<__nv_bfloat16, float, capture_decode_tiles, capture_prefill_tiles,
                                       capture_hopper_tiles>({d_x.data(), k, d_pairs.data(), K},
                                                             {d_b.data(), k, int64_t(n) * k}, n, k,
                                                             {d_offsets.data(), E, T * K, T * K}, {d_c.data(), n}, schedule,
                                                             stream);
        cudaGraph_t graph = nullptr;
        const cudaError_t ended = cudaStreamEndCapture(stream, &graph);  // closed before any check can throw
        CHECK(status == cudaSuccess);
        REQUIRE(ended == cudaSuccess);
        CHECK(std::isnan(d_c.to_host()[0]));  // recorded, not run
        cudaGraphExec_t exec = nullptr;
        BEAM_CUDA_TRY(cudaGraphInstantiate(&exec, graph, 0));
        BEAM_CUDA_TRY(cudaGraphLaunch(exec, stream));
        BEAM_CUDA_TRY(cudaStreamSynchronize(stream));
        BEAM_CUDA_TRY(cudaGraphExecDestroy(exec));
        BEAM_CUDA_TRY(cudaGraphDestroy(graph));
        BEAM_CUDA_TRY(cudaStreamDestroy(stream));
        auto got = d_c.to_host();
        got.resize(size_t(perm.n_active * n));
        CHECK(beam::test::relative_error(got, expected) <= 1e-5);
      }
    }
  }

  TEST_CASE("grouped_gemm: pair indices are bounded by the pair count, not the rows (padded and short layouts)") {
    BEAM_REQUIRE_GPU();
    // T = 6 tokens, K = 4: P = 24 pairs in 3 groups, laid out three ways: rows = P (compact's
    // rows); rows = 30 > P (a vLLM-style padded layout whose padding rows hold the sentinel
    // P); rows = 18 < P (a DeepGEMM-style layout short of some pairs, whose indices ≥ rows
    // still name pairs). Some indices name no pair: −1 (a masked pair, which −1 / K would turn
    // into row 0), P and 25 (row T of X, past its end), INT32_MAX.
    const int64_t T = 6, P = 24;
    const int K = 4;
    struct layout {
      int64_t rows;
      std::vector<int32_t> offsets;
    };
    for (const layout& l : {layout{24, {0, 9, 15, 24}}, layout{30, {0, 9, 15, 30}}, layout{18, {0, 6, 12, 18}}}) {
      CAPTURE(l.rows);
      std::vector<int32_t> slots(static_cast<size_t>(l.rows));
      for (int64_t r = 0; r < l.rows; ++r) slots[size_t(r)] = r < P ? int32_t(r * 7 % P) : int32_t(P);  // a permutation
      const int64_t bad_rows[] = {1, 4, 10, 16, 23};
      const int32_t bad_pairs[] = {-1, int32_t(P), INT32_MAX, -1, 25};
      for (int i = 0; i < 5; ++i) {
        if (bad_rows[i] < l.rows) slots[size_t(bad_rows[i])] = bad_pairs[i];
      }
      int64_t beyond_rows = 0;  // valid indices ≥ rows: a bound by the rows would drop them
      for (int32_t pair : slots) beyond_rows += pair >= l.rows && pair < P;
      CHECK(beyond_rows == (l.rows < P ? 4 : 0));
      check_pair_slots(T, K, l.offsets, slots, 51);
    }
  }

  TEST_CASE("grouped_gemm on packed groups (DeepEP's low-latency [E_local, M, H] and counts): padding untouched") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    const int E = 5, M = 13, k = 72, n = 48;
    const std::vector<int32_t> counts{0, 13, 7, 20, -3};  // 20 and −3 clamp to M and 0
    auto a = beam::test::random_values<bf16>(size_t(E * M * k), 81);
    std::vector<int64_t> sources;  // the packed rows of each group, in order
    std::vector<int32_t> offsets{0};
    std::vector<bool> valid(size_t(E * M), false);
    for (int e = 0; e < E; ++e) {
      const int rows = std::clamp(counts[size_t(e)], 0, M);
      for (int j = 0; j < rows; ++j) {
        sources.push_back(int64_t(e) * M + j);
        valid[size_t(e * M + j)] = true;
      }
      offsets.push_back(offsets.back() + rows);
    }
    for (size_t r = 0; r < valid.size(); ++r) {  // padding rows: large finite values, never to be read
      if (!valid[r]) std::fill_n(a.begin() + int64_t(r) * k, k, beam::from_float<bf16>(1000.0f));
    }
    const auto b = beam::test::random_values<bf16>(size_t(E * n * k), 82);
    const auto acc = ref::grouped_matmul_nt(beam::test::as_float(a).data(), k, sources.data(),
                                            beam::test::as_float(b).data(), n, k, offsets);
    const auto gated = ref::swiglu_columns(acc, n);
    beam::test::device_vector<bf16> d_a(a), d_b(b);
    beam::test::device_vector<int32_t> d_counts(counts);
    const beam::device::gemm_groups packed{nullptr, E, int64_t(E) * M, 0, d_counts.data(), M};
    for (gemm_schedule schedule : all_schedules) {
      CAPTURE(int(schedule));
      for (bool swiglu : {false, true}) {
        CAPTURE(swiglu);
        const int columns = swiglu ? n / 2 : n;
        beam::test::device_vector<float> c{size_t(E * M * columns)};
        c.poison();
        REQUIRE(beam::device::grouped_gemm<bf16, float>(
                    {d_a.data(), k}, {d_b.data(), k, int64_t(n) * k}, n, k, packed,
                    {c.data(), columns, swiglu ? gemm_epilogue::swiglu : gemm_epilogue::store}, schedule) ==
                cudaSuccess);
        BEAM_CUDA_TRY(cudaDeviceSynchronize());
        const auto got = c.to_host();
        std::vector<float> rows_got;
        for (size_t r = 0; r < valid.size(); ++r) {
          for (int j = 0; j < columns; ++j) {
            const float v = got[r * size_t(columns) + size_t(j)];
            uint32_t bits;
            std::memcpy(&bits, &v, sizeof bits);
            if (valid[r]) rows_got.push_back(v);
            else CHECK(bits == 0xFFFFFFFFu);  // the poison's bits: padding rows are not written
          }
        }
        CHECK(beam::test::relative_error(rows_got, swiglu ? gated : acc) <= 1e-5);
      }
      // Every count zero (a dispatch that delivered nothing): no row read or written.
      beam::test::device_vector<int32_t> none(std::vector<int32_t>(size_t(E), 0));
      beam::test::device_vector<float> c{size_t(E * M * n)};
      c.poison();
      REQUIRE(beam::device::grouped_gemm<bf16, float>({d_a.data(), k}, {d_b.data(), k, int64_t(n) * k}, n, k,
                                                      {nullptr, E, int64_t(E) * M, 0, none.data(), M},
                                                      {c.data(), n}, schedule) == cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      const auto untouched = c.to_host();
      CHECK(std::all_of(untouched.begin(), untouched.end(), [](float v) {
        uint32_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        return bits == 0xFFFFFFFFu;
      }));
    }
  }

  TEST_CASE("grouped_gemm reads compact's engine layouts: vLLM's padded slots, DeepGEMM's masked slots") {
    BEAM_REQUIRE_GPU();
    // The README's example: T = 4, K = 2, E = 3, P = 8. vLLM's slots in blocks of 4 (rows
    // P + E·3 = 17, padding slots hold P); DeepGEMM's with max_m = 2 (rows E·2 = 6 < P, expert
    // 0's second slot holds pair 7, of the last token). X, the scales and scatter_add's C hold
    // exactly T rows.
    const int64_t T = 4, P = 8;
    const int K = 2, E = 3, block = 4, max_m = 2;
    const std::vector<int32_t> ids = {2, -1, 0, 2, -1, -1, 1, 0};
    beam::test::device_vector<int32_t> d_ids(ids), counts{size_t(E)}, offsets{size_t(E) + 1}, sorted{size_t(P)},
        rows{size_t(P)}, token_ids{size_t(P + E * (block - 1))}, block_experts{size_t(P + E * (block - 1)) / block + 1},
        post_padded{1}, slot_pairs{size_t(E * max_m)}, masked_m{size_t(E)}, pair_to_slot{size_t(P)};
    beam::device::compaction_layouts layouts;
    layouts.vllm = {block, token_ids.data(), block_experts.data(), post_padded.data()};
    layouts.deepgemm = {max_m, slot_pairs.data(), masked_m.data(), pair_to_slot.data()};
    const beam::device::compaction_input in{d_ids.data(), T, K, E};
    const beam::device::compaction_outputs out{counts.data(), offsets.data(), sorted.data(), rows.data()};
    size_t bytes = 0;
    REQUIRE(beam::device::compact(nullptr, bytes, in, out, layouts) == cudaSuccess);
    beam::test::device_vector<char> workspace(bytes);
    REQUIRE(beam::device::compact(workspace.data(), bytes, in, out, layouts) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    const auto got_counts = counts.to_host();
    REQUIRE(got_counts == std::vector<int32_t>{2, 1, 2});

    // vLLM: expert e's slots are a run of ⌈counts[e] / block⌉ blocks.
    std::vector<int32_t> vllm_offsets = {0};
    for (int32_t c : got_counts) vllm_offsets.push_back(vllm_offsets.back() + (c + block - 1) / block * block);
    REQUIRE(post_padded.to_host()[0] == vllm_offsets.back());
    const auto vllm_slots = token_ids.to_host();  // P + E·(block − 1) slots: the static row bound
    const auto sentinels = std::count(vllm_slots.begin(), vllm_slots.begin() + vllm_offsets.back(), int32_t(P));
    CHECK(sentinels == vllm_offsets.back() - 5);  // every slot but the 5 kept pairs'
    check_pair_slots(T, K, vllm_offsets, vllm_slots, 61);

    // DeepGEMM: expert e's slots are [e·max_m, (e + 1)·max_m).
    const auto deepgemm_slots = slot_pairs.to_host();
    CHECK(deepgemm_slots == std::vector<int32_t>{2, 7, 6, int32_t(P), 0, 3});
    check_pair_slots(T, K, {0, max_m, 2 * max_m, 3 * max_m}, deepgemm_slots, 62);
  }

  TEST_CASE("grouped_gemm equals the reference: schedules, epilogues, gather, dtypes, odd shapes") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    int n = 0;
    for (int64_t T : beam::test::sweep<int64_t>({0, 1, 3, 127, 1000}, {0, 1, 3, 127})) {
      for (auto [experts, top_k] : {std::pair{1, 1}, std::pair{3, 2}, std::pair{60, 4}}) {
        for (auto [hidden, inter] : {std::pair{8, 8}, std::pair{24, 200}, std::pair{200, 24}, std::pair{1000, 1000}}) {
          if (T * hidden * inter > int64_t(200) * 1000 * 1000) continue;  // keep the double reference quick
          if (beam::test::emulated_device() && hidden * inter > 200 * 24) continue;  // scale only
          for (gemm_schedule schedule : all_schedules) {
            const double masked = std::vector<double>{0.0, 0.5, 1.0}[size_t(n % 3)];
            const bool gather = n % 2 == 0;
            // GEMM 1 (W13: N = 2I, K = H, SwiGLU) and GEMM 2 (W2: N = H, K = I, scaled rows).
            check_grouped_gemm<bf16, bf16>({T, top_k, experts, 2 * inter, hidden, masked, gather,
                                            gemm_epilogue::swiglu, schedule},
                                           50000 + uint64_t(n));
            check_grouped_gemm<__half, __half>({T, top_k, experts, hidden, inter, masked, false,
                                                gemm_epilogue::scale_rows, schedule},
                                               60000 + uint64_t(n));
            check_grouped_gemm<bf16, float>({T, top_k, experts, hidden, inter, masked, gather, gemm_epilogue::store,
                                             schedule},
                                            70000 + uint64_t(n));
            ++n;
          }
        }
      }
    }
  }

  TEST_CASE("grouped_gemm_nn (B given [E, K, N], the backward's layout) equals the reference: epilogues, odd shapes") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    using tiles = beam::device::prefill_tiles;
    int n = 0;
    for (int64_t T : {0, 1, 7, 130}) {
      for (auto [experts, top_k] : {std::pair{1, 1}, std::pair{5, 3}}) {
        // N below one tile, across tiles (a partial 64-column chunk group), and SwiGLU's halves
        // of 8-column chunks; K partial in its last stage and deeper than the rings.
        for (auto [cols, depth] : {std::pair{8, 8}, std::pair{200, 72}, std::pair{48, 520}}) {
          for (gemm_schedule schedule : all_schedules) {
            const double masked = std::vector<double>{0.0, 0.5, 1.0}[size_t(n % 3)];
            const bool gather = n % 2 == 0;
            check_grouped_gemm<bf16, float, tiles, beam::device::hopper_tiles, bf16, true>(
                {T, top_k, experts, cols, depth, masked, gather, gemm_epilogue::store, schedule}, 83000 + uint64_t(n));
            check_grouped_gemm<__half, __half, tiles, beam::device::hopper_tiles, __half, true>(
                {T, top_k, experts, cols, depth, masked, !gather, gemm_epilogue::scale_rows, schedule},
                84000 + uint64_t(n));
            check_grouped_gemm<bf16, bf16, tiles, beam::device::hopper_tiles, bf16, true>(
                {T, top_k, experts, 2 * cols, depth, masked, gather, gemm_epilogue::swiglu, schedule},
                85000 + uint64_t(n));
            ++n;
          }
        }
      }
    }
    // The sm_80 prefill policy of 2 × 2 warps (32 × 64 warp tiles): two n8 pairs per 64-column
    // sub-tile; the Hopper policies of one consumer warpgroup and BN 64 (one TMA box of B per
    // stage) and of BN 256 (four), on sm_90.
    check_grouped_gemm<bf16, float, sm80_64x128_tiles, beam::device::hopper_tiles, bf16, true>(
        {90, 2, 4, 136, 200, 0.25, true, gemm_epilogue::store, gemm_schedule::prefill}, 86000);
    check_grouped_gemm<bf16, float, beam::device::prefill_tiles, hopper_64x64_tiles, bf16, true>(
        {90, 2, 4, 136, 200, 0.25, true, gemm_epilogue::scale_rows, gemm_schedule::prefill}, 86001);
    check_grouped_gemm<__half, float, beam::device::prefill_tiles, hopper_128x256_tiles, __half, true>(
        {90, 2, 4, 296, 136, 0.0, false, gemm_epilogue::store, gemm_schedule::prefill}, 86002);
  }

  TEST_CASE("grouped_gemm with 512 groups (the most) and with a K deeper than the stage rings") {
    BEAM_REQUIRE_GPU();
    // K = 520: 9 stages of 64 (the last partial) per tile, so every ring (5 Hopper stages, 3
    // and 6 sm_80 ones) wraps inside one work item, and its empty/full phases alternate.
    for (gemm_schedule schedule : all_schedules) {
      check_grouped_gemm<__nv_bfloat16, __nv_bfloat16>(
          {40, 2, 3, 64, 520, 0.0, true, gemm_epilogue::swiglu, schedule}, 82000 + uint64_t(schedule));
    }
    // 300 tokens · 4 pairs over 512 experts, a quarter masked, half the tokens on the first
    // experts: hot experts with a full and a partial 128-row tile, most with a few rows, many
    // with none. K = 136: two full 64-deep stages and a partial one.
    for (gemm_schedule schedule : all_schedules) {
      check_grouped_gemm<__nv_bfloat16, __nv_bfloat16>(
          {300, 4, 512, 48, 136, 0.25, true, gemm_epilogue::swiglu, schedule}, 80000 + uint64_t(schedule));
      check_grouped_gemm<__nv_bfloat16, float>({300, 4, 512, 40, 136, 0.25, false, gemm_epilogue::store, schedule},
                                               81000 + uint64_t(schedule));
    }
  }

  TEST_CASE("grouped_gemm prefill with other tile policies: Hopper BM 64 / BN 64 and BM 128 / BN 256, sm_80 2 x 2 warps") {
    BEAM_REQUIRE_GPU();
    using bf16 = __nv_bfloat16;
    // 400 tokens, Top-3 of 7 experts, a fifth masked: groups of about 70 rows (experts 3-6)
    // and 230 (the hot experts 0-2), so 2 to 4 row tiles at BM 64 and 1 or 2 at BM 128;
    // K = 136 (a partial third stage); N = 2 · 136 (SwiGLU: 136 columns, a partial last
    // column tile at BN / 2 = 32 and 128) and 200 (store: partial at BN = 64 and 256).
    const gemm_case swiglu{400, 3, 7, 2 * 136, 136, 0.2, true, gemm_epilogue::swiglu, gemm_schedule::prefill};
    const gemm_case store{400, 3, 7, 200, 136, 0.2, false, gemm_epilogue::store, gemm_schedule::prefill};
    // prefill runs the Hopper policy exactly where the default one runs (sm_90 with sm_90
    // code), else the sm_80 prefill policy; prefill_sm80 runs the sm_80 policy everywhere.
    int device = 0;
    BEAM_CUDA_TRY(cudaGetDevice(&device));
    const bool hopper = beam::test::hopper_kernels_expected();
    CAPTURE(hopper);
    const auto require_hopper = [&](auto tiles, auto out, gemm_epilogue epilogue, const gemm_case& c) {
      using Tiles = decltype(tiles);
      using OutT = decltype(out);
      bool usable = !hopper;
      const cudaError_t status =
          epilogue == gemm_epilogue::swiglu
              ? beam::device::detail::hopper_kernel_usable<bf16, OutT, Tiles, gemm_epilogue::swiglu, bf16>(device, usable)
              : beam::device::detail::hopper_kernel_usable<bf16, OutT, Tiles, gemm_epilogue::store, bf16>(device, usable);
      REQUIRE(status == cudaSuccess);
      REQUIRE(usable == hopper);
      if (!hopper) return;
      beam::test::device_vector<bf16> weights{size_t(c.experts) * size_t(c.n) * size_t(c.k)};
      beam::detail::grouped_gemm_params<bf16, OutT> p{};
      p.b = weights.data();
      p.k = p.b_stride = c.k;
      p.n = c.n;
      p.b_expert_stride = int64_t(c.n) * c.k;
      p.groups = c.experts;
      CUtensorMap map;
      REQUIRE(beam::device::detail::encode_weight_map(map, p, epilogue == gemm_epilogue::swiglu ? 2 : 1,
                                                      Tiles::block_cols));
    };
    require_hopper(hopper_64x64_tiles{}, bf16{}, gemm_epilogue::swiglu, swiglu);
    require_hopper(hopper_64x64_tiles{}, float{}, gemm_epilogue::store, store);
    require_hopper(hopper_128x256_tiles{}, bf16{}, gemm_epilogue::swiglu, swiglu);
    require_hopper(hopper_128x256_tiles{}, float{}, gemm_epilogue::store, store);
    check_grouped_gemm<bf16, bf16, sm80_64x128_tiles, hopper_64x64_tiles>(swiglu, 83000);
    check_grouped_gemm<bf16, float, sm80_64x128_tiles, hopper_64x64_tiles>(store, 83001);
    check_grouped_gemm<bf16, bf16, sm80_64x128_tiles, hopper_128x256_tiles>(swiglu, 83002);
    check_grouped_gemm<bf16, float, sm80_64x128_tiles, hopper_128x256_tiles>(store, 83003);
    if (hopper) {  // the sm_80 policy on this device too
      gemm_case on_sm80 = swiglu;
      on_sm80.schedule = gemm_schedule::prefill_sm80;
      check_grouped_gemm<bf16, bf16, sm80_64x128_tiles>(on_sm80, 83004);
    }
  }

  TEST_CASE("grouped_gemm prefill: the Hopper kernel is chosen exactly on sm_90 with sm_90 code; its weight maps") {
    BEAM_REQUIRE_GPU();
    int device = 0;
    BEAM_CUDA_TRY(cudaGetDevice(&device));
    const bool expected = beam::test::hopper_kernels_expected();
    CAPTURE(expected);
    bool usable = !expected;
    REQUIRE(beam::device::detail::hopper_kernel_usable<__nv_bfloat16, __nv_bfloat16, beam::device::hopper_tiles,
                                                       gemm_epilogue::swiglu>(device, usable) == cudaSuccess);
    CHECK(usable == expected);
    if (!expected) return;
    beam::test::device_vector<__nv_bfloat16> weights{size_t(3) * 2 * 200 * 24};
    beam::detail::grouped_gemm_params<__nv_bfloat16, __nv_bfloat16> p{};
    p.b = weights.data();
    p.k = p.b_stride = 24;  // K below one 64-wide box
    p.n = 2 * 200;
    p.b_expert_stride = int64_t(p.n) * p.k;
    p.groups = 3;
    CUtensorMap map;
    CHECK(beam::device::detail::encode_weight_map(map, p, 2, 128));  // W13: gate and up halves
    CHECK(beam::device::detail::encode_weight_map(map, p, 1, 128));  // W2 / a router
    p.groups = 1;
    p.b_expert_stride = 0;  // one group of a dense GEMM
    CHECK(beam::device::detail::encode_weight_map(map, p, 1, 64));
  }

  TEST_CASE("grouped_gemm scatter_add: rows added into their token's row of C (fp32, bf16, fp16 output)") {
    BEAM_REQUIRE_GPU();
    const int64_t T = 97;
    const int K = 4, E = 16, n = 71, k = 40, stride = 72;  // n odd: the last column alone
    std::mt19937 rng{5u};
    std::vector<int32_t> ids(size_t(T * K));
    for (int64_t t = 0; t < T; ++t) {  // distinct experts per token, a quarter masked
      for (int j = 0; j < K; ++j) ids[size_t(t * K + j)] = rng() % 4 == 0 ? -1 : int32_t((t + 3 * j) % E);
    }
    const ref::compaction perm = ref::compact(ids.data(), T, K, E);
    const auto a = beam::test::random_values<__nv_bfloat16>(size_t(T * K * k), 31);
    const auto b = beam::test::random_values<__nv_bfloat16>(size_t(E * n * k), 32);
    const auto scales = beam::test::random_normal<float>(size_t(T * K), 33);
    const auto acc = ref::grouped_matmul_nt(a.data(), k, nullptr, b.data(), n, k, perm.offsets);
    // C starts at `initial` in columns < n and NaN in the padding column, which must stay so.
    const auto initial = beam::test::random_normal<float>(size_t(T * stride), 34);
    std::vector<float> start(initial);
    std::vector<double> expected(size_t(T * n));
    for (int64_t t = 0; t < T; ++t) {
      start[size_t(t * stride + n)] = NAN;
      for (int j = 0; j < n; ++j) expected[size_t(t * n + j)] = initial[size_t(t * stride + j)];
    }
    for (int64_t r = 0; r < perm.n_active; ++r) {
      const int32_t pair = perm.sorted_pairs[size_t(r)];
      for (int j = 0; j < n; ++j) expected[size_t(pair / K * n + j)] += scales[size_t(pair)] * acc[size_t(r * n + j)];
    }
    beam::test::device_vector<__nv_bfloat16> d_a(a), d_b(b);
    beam::test::device_vector<float> d_scales(scales);
    beam::test::device_vector<int32_t> d_offsets(perm.offsets), d_pairs(perm.sorted_pairs);
    const beam::device::gemm_groups groups{d_offsets.data(), E, T * K, T * K};
    const auto check = [&](auto zero, double tolerance, gemm_schedule schedule) {
      using OutT = decltype(zero);
      std::vector<OutT> host(start.size());
      for (size_t i = 0; i < start.size(); ++i) host[i] = beam::from_float<OutT>(start[i]);
      beam::test::device_vector<OutT> c(host);
      REQUIRE(beam::device::grouped_gemm<__nv_bfloat16, OutT>(
                  {d_a.data(), k}, {d_b.data(), k, int64_t(n) * k}, n, k, groups,
                  {c.data(), stride, gemm_epilogue::scatter_add, d_scales.data(), d_pairs.data(), K}, schedule) ==
              cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      const auto got_padded = c.to_host();
      std::vector<float> got(size_t(T * n));
      for (int64_t t = 0; t < T; ++t) {
        for (int j = 0; j < n; ++j) got[size_t(t * n + j)] = beam::to_float(got_padded[size_t(t * stride + j)]);
        CHECK(std::isnan(beam::to_float(got_padded[size_t(t * stride + n)])));
      }
      CHECK(beam::test::relative_error(got, expected) <= tolerance);
    };
    for (gemm_schedule schedule : all_schedules) {
      CAPTURE(int(schedule));
      check(0.0f, 1e-5, schedule);
      check(__nv_bfloat16{}, 2e-2, schedule);  // rounded at each of up to K additions
      check(__half{}, 4e-3, schedule);
    }
  }

  TEST_CASE("grouped_gemm gathers A rows and scatter-adds C rows that start past 2³¹ elements") {
    BEAM_REQUIRE_GPU();
    // One bf16 array of `rows` rows of 4096 (4.3 GB; only the rows used are written): A of a
    // gathered GEMM (K = 1: pair = token), then C of a scatter_add (its first 64 columns).
    using bf16 = __nv_bfloat16;
    const int k = 4096, n = 64;
    const int64_t rows = (int64_t(1) << 31) / k + 4;
    beam::test::device_vector<bf16> big(size_t(rows * k));
    const std::vector<int32_t> pairs{int32_t(rows - 1), int32_t(rows - 3), 5};
    std::vector<std::vector<bf16>> values;
    for (size_t i = 0; i < pairs.size(); ++i) {
      values.push_back(beam::test::random_values<bf16>(size_t(k), 60 + i));
      BEAM_CUDA_TRY(cudaMemcpy(big.data() + int64_t(pairs[i]) * k, values.back().data(), size_t(k) * sizeof(bf16),
                               cudaMemcpyHostToDevice));
    }
    const auto b = beam::test::random_values<bf16>(size_t(n * k), 63);
    const auto small_a = beam::test::random_values<bf16>(size_t(3 * k), 64);
    std::vector<float> scales(static_cast<size_t>(rows), 0.0f);
    for (size_t i = 0; i < pairs.size(); ++i) scales[size_t(pairs[i])] = 0.5f + float(i);
    beam::test::device_vector<bf16> d_b(b), d_small_a(small_a);
    beam::test::device_vector<int32_t> d_pairs(pairs), offsets(std::vector<int32_t>{0, 3});
    beam::test::device_vector<float> d_scales(scales), c{size_t(3 * n)};
    const beam::device::gemm_groups groups{offsets.data(), 1, 3, rows};
    const auto dot = [&](const bf16* a_row, int j) {
      double sum = 0.0;
      for (int h = 0; h < k; ++h) sum += double(beam::to_float(a_row[h])) * beam::to_float(b[size_t(j * k + h)]);
      return sum;
    };
    std::vector<double> gathered(size_t(3 * n)), scattered(size_t(3 * n));
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < n; ++j) {
        gathered[size_t(i * n + j)] = dot(values[size_t(i)].data(), j);
        scattered[size_t(i * n + j)] = beam::to_float(values[size_t(i)][size_t(j)]) +
                                       double(scales[size_t(pairs[size_t(i)])]) * dot(small_a.data() + i * k, j);
      }
    }
    for (gemm_schedule schedule : all_schedules) {
      CAPTURE(int(schedule));
      c.poison();
      REQUIRE(beam::device::grouped_gemm<bf16, float>({big.data(), k, d_pairs.data(), 1}, {d_b.data(), k, 0}, n, k,
                                                      groups, {c.data(), n}, schedule) == cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      CHECK(beam::test::relative_error(c.to_host(), gathered) <= 1e-5);
    }
    // Rows of small_a added into C = big at the tokens of their pairs (scale 0.5, 1.5, 2.5).
    REQUIRE(beam::device::grouped_gemm<bf16, bf16>(
                {d_small_a.data(), k}, {d_b.data(), k, 0}, n, k, groups,
                {big.data(), k, gemm_epilogue::scatter_add, d_scales.data(), d_pairs.data(), 1}) == cudaSuccess);
    BEAM_CUDA_TRY(cudaDeviceSynchronize());
    std::vector<float> got(size_t(3 * n));
    for (size_t i = 0; i < pairs.size(); ++i) {
      std::vector<bf16> row(static_cast<size_t>(n));
      BEAM_CUDA_TRY(cudaMemcpy(row.data(), big.data() + int64_t(pairs[i]) * k, size_t(n) * sizeof(bf16),
                               cudaMemcpyDeviceToHost));
      for (int j = 0; j < n; ++j) got[i * size_t(n) + size_t(j)] = beam::to_float(row[size_t(j)]);
    }
    CHECK(beam::test::relative_error(got, scattered) <= 2e-2);
  }

  TEST_CASE("dequantize_e4m3x4: every e4m3 code to its exact bf16 and fp16 value, NaN codes to NaN") {
    BEAM_REQUIRE_GPU();
    check_every_e4m3_code<__nv_bfloat16>();
    check_every_e4m3_code<__half>();
  }

  TEST_CASE("grouped_gemm with e4m3 weights equals the reference on the dequantised weights: scalings, schedules") {
    BEAM_REQUIRE_GPU();
    // GEMM 1 (SwiGLU, block scales per half) and GEMM 2: K = 208 ends in a partial k block
    // (128 + 80, four stages), N = 208 in a partial block row; I = 144 gives each half two
    // block rows, the second partial, and GEMM 2 K = 144 (128 + 16). Every scaling, schedule
    // and shape with rows to multiply (37 tokens, none or half the pairs masked); then T = 0
    // and every pair masked.
    int n = 0;
    for (weight_scales scaling : {weight_scales::block_128, weight_scales::per_channel, weight_scales::none}) {
      for (gemm_schedule schedule : all_schedules) {
        for (auto [hidden, inter] : {std::pair{208, 48}, std::pair{32, 144}}) {
          const double masked = n % 2 == 0 ? 0.0 : 0.5;
          check_grouped_gemm<__nv_bfloat16, __nv_bfloat16, beam::device::prefill_e4m3_tiles, beam::device::hopper_tiles, e4m3>(
              {37, 2, 3, 2 * inter, hidden, masked, n % 2 == 0, gemm_epilogue::swiglu, schedule}, 90000 + uint64_t(n),
              scaling);
          check_grouped_gemm<__half, float, beam::device::prefill_e4m3_tiles, beam::device::hopper_tiles, e4m3>(
              {37, 2, 3, hidden, inter, masked, false, gemm_epilogue::scale_rows, schedule}, 91000 + uint64_t(n),
              scaling);
          ++n;
        }
      }
    }
    for (auto [tokens, masked] : {std::pair{int64_t(0), 0.0}, std::pair{int64_t(37), 1.0}}) {
      check_grouped_gemm<__nv_bfloat16, __nv_bfloat16, beam::device::prefill_e4m3_tiles, beam::device::hopper_tiles, e4m3>(
          {tokens, 2, 3, 96, 208, masked, true, gemm_epilogue::swiglu, gemm_schedule::decode}, 94000,
          weight_scales::block_128);
    }
    // K = 1040: 17 stages of 64, more than either e4m3 ring (15 decode, 4 prefill stages), in
    // 9 k blocks, the last of 16.
    for (gemm_schedule schedule : all_schedules) {
      check_grouped_gemm<__nv_bfloat16, float, beam::device::prefill_e4m3_tiles, beam::device::hopper_tiles, e4m3>(
          {9, 2, 3, 64, 1040, 0.25, true, gemm_epilogue::store, schedule}, 95000 + uint64_t(schedule),
          weight_scales::block_128);
    }
  }

  TEST_CASE("grouped_gemm: NaN and Inf in A reach only their own rows (T and e4m3 weights); an e4m3 NaN code its column") {
    BEAM_REQUIRE_GPU();
    check_non_finite_rows<__nv_bfloat16>(weight_scales::none);
    check_non_finite_rows<e4m3>(weight_scales::block_128);
  }

  TEST_CASE("grouped_gemm: a dense GEMM (no offsets) and many rows over a Qwen3-like shape") {
    BEAM_REQUIRE_GPU();
    // 4097 tokens (513 emulated): enough rows per expert for the automatic schedule's prefill.
    const int64_t tokens = beam::test::emulated_device() ? 513 : 4097;
    check_grouped_gemm<__nv_bfloat16, __nv_bfloat16>(
        {tokens, 8, 128, 2 * 96, 256, 0.85, true, gemm_epilogue::swiglu, gemm_schedule::automatic}, 80001);
    // Dense: one group of all rows, as a router runs (N = E = 59: an odd last column).
    const int64_t rows = 77;
    const int n = 59, k = 136;
    const auto a = beam::test::random_values<__half>(size_t(rows * k), 81);
    const auto b = beam::test::random_values<__half>(size_t(n * k), 82);
    const auto expected = ref::grouped_matmul_nt(a.data(), k, nullptr, b.data(), n, k, {0, int32_t(rows)});
    beam::test::device_vector<__half> d_a(a), d_b(b);
    const int64_t c_stride = 64;
    for (gemm_schedule schedule : all_schedules) {
      beam::test::device_vector<float> d_c{size_t(rows * c_stride)};
      d_c.poison();
      REQUIRE(beam::device::grouped_gemm<__half, float>({d_a.data(), k}, {d_b.data(), k, 0}, n, k, {nullptr, 1, rows},
                                                        {d_c.data(), c_stride}, schedule) == cudaSuccess);
      BEAM_CUDA_TRY(cudaDeviceSynchronize());
      const auto padded = d_c.to_host();
      std::vector<float> got(size_t(rows * n));
      for (int64_t r = 0; r < rows; ++r) {
        for (int j = 0; j < n; ++j) got[size_t(r * n + j)] = padded[size_t(r * c_stride + j)];
      }
      CHECK(beam::test::relative_error(got, expected) <= 1e-5);
      for (int64_t r = 0; r < rows; ++r) CHECK(std::isnan(padded[size_t(r * c_stride + n)]));  // column N: unwritten
    }
  }
}
