//! @file
//! Expert weight formats of the grouped GEMM's B `[E, N, K]` (row j of expert e holds K
//! contiguous values), in one place for the device GEMM and the reference:
//! - bf16 / fp16, the activations' type, unscaled: W = B;
//! - e4m3 (`__nv_fp8_e4m3`, OCP FP8 E4M3: 1 sign, 4 exponent bits of bias 7, 3 mantissa bits, no
//!   infinity, NaN = S.1111.111, largest finite 448) values Q with fp32 scales s:
//!     W[e][j][k] = Q[e][j][k] · s(e, j, k), where s is given by `weight_scales`.
//!   The decoded value of Q is exact in bf16, fp16 and fp32 (e4m3_value, dtype.cuh); only the products
//!   and sums round.
//!
//! A matrix made of `halves` stacked halves (halves = 2 for the SwiGLU GEMM's B = [W1; W3],
//! N = 2I) takes its block rows per half: weight row j of half h = j / (N / halves) is in
//! block row h·⌈(N / halves) / 128⌉ + (j mod N / halves) / 128, so that the scales of W1 and
//! W3, each `[⌈I/128⌉, ⌈H/128⌉]`, stack to the scales of [W1; W3] whatever I is (for I a
//! multiple of 128 this is plain block row j / 128).
//!
//! e4m3 activations (W8A8: the Hopper kernel multiplies e4m3 by e4m3) come as codes Q `[rows, K]`
//! with one fp32 scale per row and 128-channel group b = k / 128 (1 × 128 groups, `[rows, ⌈K/128⌉]`):
//!   A[r][k] = Q[r][k] · s[r][b],   s = activation_scale(max |A[r][k']| over the group),
//!   Q[r][k] = e4m3(A[r][k] / s)    (to nearest even, saturating: dtype_traits<__nv_fp8_e4m3>).
//! s is a power of two (the UE8M0 scales of DeepGEMM and the MX formats), so A / s is exact and
//! the codes are the same wherever they are computed (in IEEE arithmetic: a build that flushes
//! subnormals to zero, e.g. --use_fast_math, quantises subnormal activations to 0). A NaN value
//! gives a NaN code (and does not count in the group's amax); an infinite one an infinite scale,
//! its own code NaN and the group's other codes ±0, so that every value Q · s of its group is
//! NaN: a non-finite activation makes the products of its row NaN instead of saturating to
//! ±448 · s.
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_fp8.h>

#include "beam/core/dtype.cuh"
#include "beam/core/macros.cuh"

namespace beam {

//! The scales s(e, j, k) of e4m3 weights (fp32, contiguous per expert, experts one after another):
//! - none:        s = 1;
//! - per_channel: s = scales[e·N + j] (`[E, N]`: one per output channel, e.g. per-channel
//!                fp8 checkpoints);
//! - block_128:   s = scales[(e·R + block_row(j))·⌈K/128⌉ + k/128] (`[E, R, ⌈K/128⌉]`,
//!                R = halves·⌈(N/halves)/128⌉: one per 128 × 128 block, the `weight_scale_inv`
//!                of DeepSeek-V3/R1, Kimi K2 and Qwen3's FP8 checkpoints).
enum class weight_scales { none, per_channel, block_128 };

constexpr int weight_block = 128;  //!< the block edge of block_128 scales

//! Whether `scales` is one of weight_scales' enumerators.
constexpr bool valid_weight_scales(weight_scales scales) {
  return unsigned(scales) <= unsigned(weight_scales::block_128);  // the last enumerator
}

//! What a layer's e4m3 experts multiply their weights with: the activations themselves (T:
//! W8A16), or their e4m3 codes in 1 × 128 groups (W8A8, Hopper: the expert inputs X and the
//! SwiGLU outputs quantised as above).
enum class activation_format { native, e4m3_1x128 };

//! The scale of a group of e4m3 activations whose largest magnitude (NaN ignored) is `amax` ≥ 0:
//! s = 2^e for the least e ≥ −126 with amax ≤ 448 · 2^e (a normal float, so 1 / s is exact too),
//! or +∞ for an infinite amax (and a NaN one, which quantisation never passes).
//! @code
//! beam::activation_scale(448.0f)  // → 1;  449 → 2;  1 → 2⁻⁸ (1 / 2⁻⁸ = 256 ≤ 448);  0 → 2⁻¹²⁶
//! @endcode
BEAM_HOST_DEVICE inline float activation_scale(float amax) {
  if (!(amax <= 3.40282347e38f)) return INFINITY;
  if (amax == 0.0f) return 0x1p-126f;  // frexpf(0) has no exponent to go by
  int x = 0;
  const float f = frexpf(amax, &x);  // amax = f · 2^x, f ∈ [0.5, 1): amax ≤ 0.875 · 2^(9 + e) ⇔ e ≥ x − 9 (+1 if f > 0.875)
  const int e = x - 9 + (f > 0.875f ? 1 : 0);
  return ldexpf(1.0f, e < -126 ? -126 : e);
}

//! Block row of weight row j in an N-row matrix of `halves` stacked halves (see the file comment).
BEAM_HOST_DEVICE constexpr int64_t scale_block_row(int64_t j, int64_t n, int halves) {
  const int64_t half_rows = n / halves, blocks_per_half = (half_rows + weight_block - 1) / weight_block;
  return j / half_rows * blocks_per_half + j % half_rows / weight_block;
}

//! Scales per expert: 0 (none), N (per_channel) or R·⌈K/128⌉ (block_128).
BEAM_HOST_DEVICE constexpr int64_t scales_per_expert(weight_scales scales, int64_t n, int64_t k, int halves) {
  const int64_t k_blocks = (k + weight_block - 1) / weight_block;
  return scales == weight_scales::per_channel ? n
         : scales == weight_scales::block_128 ? int64_t(halves) * ((n / halves + weight_block - 1) / weight_block) * k_blocks
                                              : 0;
}

}  // namespace beam
