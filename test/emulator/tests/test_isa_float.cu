// PTX floating-point instructions (ISA 9.7.3 "Floating-Point Instructions") against values
// worked from the ISA: the four IEEE rounding modifiers on operands whose exact result lies
// between two floats, .ftz on subnormal inputs and results, .sat, min/max NaN and signed-zero
// rules, ordered/unordered setp, IEEE div/rcp/sqrt, and the .approx instructions within the
// maximum error the ISA states for each.
//
// Floats travel as raw bits in .b32/.b64 registers ("r"/"l" constraints) so that NaN payloads,
// signed zeros and subnormals reach the instruction unchanged.
#include "isa_test.cuh"

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using isa::as_f32;
using isa::as_f64;
using isa::bits;
using isa::buffer;
using isa::case2;
using isa::case3;
using isa::check_binary;
using isa::check_ternary;
using isa::check_unary;
using isa::hex;

#define BIN(NAME, INSTR, T, C)                                                           \
  __global__ void NAME(const T* a, const T* b, T* d, int n) {                            \
    const int i = threadIdx.x;                                                           \
    if (i < n) {                                                                         \
      T r;                                                                               \
      asm volatile(INSTR " %0, %1, %2;" : "=" C(r) : C(a[i]), C(b[i]));                  \
      d[i] = r;                                                                          \
    }                                                                                    \
  }
#define TER(NAME, INSTR, T, C)                                                           \
  __global__ void NAME(const T* a, const T* b, const T* c, T* d, int n) {                \
    const int i = threadIdx.x;                                                           \
    if (i < n) {                                                                         \
      T r;                                                                               \
      asm volatile(INSTR " %0, %1, %2, %3;" : "=" C(r) : C(a[i]), C(b[i]), C(c[i]));     \
      d[i] = r;                                                                          \
    }                                                                                    \
  }
#define UN(NAME, INSTR, T, C)                                                            \
  __global__ void NAME(const T* a, T* d, int n) {                                        \
    const int i = threadIdx.x;                                                           \
    if (i < n) {                                                                         \
      T r;                                                                               \
      asm volatile(INSTR " %0, %1;" : "=" C(r) : C(a[i]));                                \
      d[i] = r;                                                                          \
    }                                                                                    \
  }
#define B32(NAME, INSTR) BIN(NAME, INSTR, uint32_t, "r")
#define B64(NAME, INSTR) BIN(NAME, INSTR, uint64_t, "l")
#define T32(NAME, INSTR) TER(NAME, INSTR, uint32_t, "r")
#define T64(NAME, INSTR) TER(NAME, INSTR, uint64_t, "l")
#define U32(NAME, INSTR) UN(NAME, INSTR, uint32_t, "r")
#define U64(NAME, INSTR) UN(NAME, INSTR, uint64_t, "l")

B32(k_add_rn, "add.rn.f32")
B32(k_add_rz, "add.rz.f32")
B32(k_add_rm, "add.rm.f32")
B32(k_add_rp, "add.rp.f32")
B32(k_sub_rn, "sub.rn.f32")
B32(k_sub_rm, "sub.rm.f32")
B32(k_mul_rn, "mul.rn.f32")
B32(k_mul_rz, "mul.rz.f32")
B32(k_mul_rm, "mul.rm.f32")
B32(k_mul_rp, "mul.rp.f32")
T32(k_fma_rn, "fma.rn.f32")
T32(k_fma_rz, "fma.rz.f32")
T32(k_fma_rm, "fma.rm.f32")
T32(k_fma_rp, "fma.rp.f32")
T32(k_mad_rn, "mad.rn.f32")
B64(k_add_rn_64, "add.rn.f64")
B64(k_add_rz_64, "add.rz.f64")
B64(k_add_rm_64, "add.rm.f64")
B64(k_add_rp_64, "add.rp.f64")
B64(k_mul_rn_64, "mul.rn.f64")
B64(k_mul_rz_64, "mul.rz.f64")
B64(k_mul_rm_64, "mul.rm.f64")
B64(k_mul_rp_64, "mul.rp.f64")
T64(k_fma_rn_64, "fma.rn.f64")
T64(k_fma_rp_64, "fma.rp.f64")

B32(k_add_ftz, "add.rn.ftz.f32")
B32(k_mul_ftz, "mul.rn.ftz.f32")
B32(k_min_ftz, "min.ftz.f32")
B32(k_add_sat, "add.rn.sat.f32")
B32(k_mul_sat, "mul.rn.sat.f32")
T32(k_fma_sat, "fma.rn.sat.f32")

B32(k_min_f32, "min.f32")
B32(k_max_f32, "max.f32")
B32(k_min_nan_f32, "min.NaN.f32")
B32(k_max_nan_f32, "max.NaN.f32")
B64(k_min_f64, "min.f64")
B64(k_max_f64, "max.f64")
U32(k_abs_f32, "abs.f32")
U32(k_neg_f32, "neg.f32")
U64(k_abs_f64, "abs.f64")
U64(k_neg_f64, "neg.f64")
B32(k_copysign_f32, "copysign.f32")

B32(k_div_rn, "div.rn.f32")
B32(k_div_rz, "div.rz.f32")
B32(k_div_rm, "div.rm.f32")
B32(k_div_rp, "div.rp.f32")
B64(k_div_rn_64, "div.rn.f64")
B64(k_div_rp_64, "div.rp.f64")
U32(k_rcp_rn, "rcp.rn.f32")
U32(k_rcp_rz, "rcp.rz.f32")
U64(k_rcp_rn_64, "rcp.rn.f64")
U32(k_sqrt_rn, "sqrt.rn.f32")
U32(k_sqrt_rp, "sqrt.rp.f32")
U64(k_sqrt_rn_64, "sqrt.rn.f64")

U32(k_ex2, "ex2.approx.f32")
U32(k_lg2, "lg2.approx.f32")
U32(k_rcp_approx, "rcp.approx.f32")
U32(k_sqrt_approx, "sqrt.approx.f32")
U32(k_rsqrt_approx, "rsqrt.approx.f32")
U32(k_sin_approx, "sin.approx.f32")
U32(k_cos_approx, "cos.approx.f32")
U32(k_tanh_approx, "tanh.approx.f32")
B32(k_div_full, "div.full.f32")
B32(k_div_approx, "div.approx.f32")

// setp with all 14 float comparison operators; bit k = operator k of
// eq ne lt le gt ge equ neu ltu leu gtu geu num nan.
#define SETP_ALL(NAME, TY, C)                                                            \
  __global__ void NAME(const TY* a, const TY* b, uint32_t* d, int n) {                   \
    const int i = threadIdx.x;                                                           \
    if (i >= n) return;                                                                  \
    uint32_t r;                                                                          \
    asm volatile(                                                                        \
        "{\n\t.reg .pred p;\n\t.reg .u32 t, acc;\n\t mov.u32 acc, 0;\n\t"                \
        "setp.eq" SFX " p, %1, %2;\n\t selp.u32 t, 1, 0, p;\n\t or.b32 acc, acc, t;\n\t"      \
        "setp.ne" SFX " p, %1, %2;\n\t selp.u32 t, 2, 0, p;\n\t or.b32 acc, acc, t;\n\t"      \
        "setp.lt" SFX " p, %1, %2;\n\t selp.u32 t, 4, 0, p;\n\t or.b32 acc, acc, t;\n\t"      \
        "setp.le" SFX " p, %1, %2;\n\t selp.u32 t, 8, 0, p;\n\t or.b32 acc, acc, t;\n\t"      \
        "setp.gt" SFX " p, %1, %2;\n\t selp.u32 t, 16, 0, p;\n\t or.b32 acc, acc, t;\n\t"     \
        "setp.ge" SFX " p, %1, %2;\n\t selp.u32 t, 32, 0, p;\n\t or.b32 acc, acc, t;\n\t"     \
        "setp.equ" SFX " p, %1, %2;\n\t selp.u32 t, 64, 0, p;\n\t or.b32 acc, acc, t;\n\t"    \
        "setp.neu" SFX " p, %1, %2;\n\t selp.u32 t, 128, 0, p;\n\t or.b32 acc, acc, t;\n\t"   \
        "setp.ltu" SFX " p, %1, %2;\n\t selp.u32 t, 256, 0, p;\n\t or.b32 acc, acc, t;\n\t"   \
        "setp.leu" SFX " p, %1, %2;\n\t selp.u32 t, 512, 0, p;\n\t or.b32 acc, acc, t;\n\t"   \
        "setp.gtu" SFX " p, %1, %2;\n\t selp.u32 t, 1024, 0, p;\n\t or.b32 acc, acc, t;\n\t"  \
        "setp.geu" SFX " p, %1, %2;\n\t selp.u32 t, 2048, 0, p;\n\t or.b32 acc, acc, t;\n\t"  \
        "setp.num" SFX " p, %1, %2;\n\t selp.u32 t, 4096, 0, p;\n\t or.b32 acc, acc, t;\n\t"  \
        "setp.nan" SFX " p, %1, %2;\n\t selp.u32 t, 8192, 0, p;\n\t or.b32 %0, acc, t;\n\t}"  \
        : "=r"(r)                                                                        \
        : C(a[i]), C(b[i]));                                                             \
    d[i] = r;                                                                            \
  }
#define SFX ".f32"
SETP_ALL(k_setp_f32, uint32_t, "r")
#undef SFX
#define SFX ".f64"
SETP_ALL(k_setp_f64, uint64_t, "l")
#undef SFX
#define SFX ".ftz.f32"
SETP_ALL(k_setp_ftz_f32, uint32_t, "r")
#undef SFX

// testp: bit k = finite infinite number notanumber normal subnormal.
__global__ void k_testp(const uint32_t* a, const uint64_t* b, uint32_t* d, int n) {
  const int i = threadIdx.x;
  if (i >= n) return;
  uint32_t r, s;
  asm volatile(
      "{\n\t.reg .pred p;\n\t.reg .u32 t, acc;\n\t"
      "testp.finite.f32 p, %2;\n\t selp.u32 acc, 1, 0, p;\n\t"
      "testp.infinite.f32 p, %2;\n\t selp.u32 t, 2, 0, p;\n\t or.b32 acc, acc, t;\n\t"
      "testp.number.f32 p, %2;\n\t selp.u32 t, 4, 0, p;\n\t or.b32 acc, acc, t;\n\t"
      "testp.notanumber.f32 p, %2;\n\t selp.u32 t, 8, 0, p;\n\t or.b32 acc, acc, t;\n\t"
      "testp.normal.f32 p, %2;\n\t selp.u32 t, 16, 0, p;\n\t or.b32 acc, acc, t;\n\t"
      "testp.subnormal.f32 p, %2;\n\t selp.u32 t, 32, 0, p;\n\t or.b32 %0, acc, t;\n\t"
      "testp.finite.f64 p, %3;\n\t selp.u32 acc, 1, 0, p;\n\t"
      "testp.infinite.f64 p, %3;\n\t selp.u32 t, 2, 0, p;\n\t or.b32 acc, acc, t;\n\t"
      "testp.number.f64 p, %3;\n\t selp.u32 t, 4, 0, p;\n\t or.b32 acc, acc, t;\n\t"
      "testp.notanumber.f64 p, %3;\n\t selp.u32 t, 8, 0, p;\n\t or.b32 acc, acc, t;\n\t"
      "testp.normal.f64 p, %3;\n\t selp.u32 t, 16, 0, p;\n\t or.b32 acc, acc, t;\n\t"
      "testp.subnormal.f64 p, %3;\n\t selp.u32 t, 32, 0, p;\n\t or.b32 %1, acc, t;\n\t}"
      : "=r"(r), "=r"(s)
      : "r"(a[i]), "l"(b[i]));
  d[2 * i] = r;
  d[2 * i + 1] = s;
}

// f32 bit patterns used below.
constexpr uint32_t kOne = 0x3f800000u, kMinusOne = 0xbf800000u, kTwo = 0x40000000u, kThree = 0x40400000u,
                   kFive = 0x40a00000u, kMinusFive = 0xc0a00000u, kHalf = 0x3f000000u, kQuarter = 0x3e800000u,
                   kPosZero = 0u, kNegZero = 0x80000000u, kInf = 0x7f800000u, kNegInf = 0xff800000u,
                   kNaN = 0x7fc00000u, kOnePlusUlp = 0x3f800001u;
// 1.5 * 2^-24 = 0.75 ulp(1): 1 + it lies strictly between 1 and 1 + 2^-23.
constexpr uint32_t k1p5x2m24 = 0x33c00000u, kNeg1p5x2m24 = 0xb3c00000u;
constexpr uint32_t k2m24 = 0x33800000u;  // 2^-24: exactly half an ulp of 1
// Subnormals: 2^-140 = 2^9 * 2^-149 (0x200), 2^-127 (0x00400000); smallest normal 2^-126.
constexpr uint32_t kSub = 0x00000200u, k2m127 = 0x00400000u, kMinNormal = 0x00800000u, kNeg2m127 = 0x80400000u,
                   kNegMinNormal = 0x80800000u, k1p5x2m126 = 0x00c00000u;

constexpr uint64_t dOne = 0x3ff0000000000000ull, dFive = 0x4014000000000000ull, dMinusFive = 0xc014000000000000ull,
                   dOnePlusUlp = 0x3ff0000000000001ull, dThree = 0x4008000000000000ull, dNaN = 0x7ff8000000000000ull,
                   dNegZero = 0x8000000000000000ull;
// 2^-53 + 2^-54 = 0.75 ulp(1) in double.
constexpr uint64_t d1p5x2m53 = 0x3ca8000000000000ull;

}  // namespace

TEST_SUITE("emulator_isa_float") {

// ISA 9.7.3.3 add / 9.7.3.4 sub: .rn nearest-even, .rz toward zero, .rm toward -inf,
// .rp toward +inf. 1 + 0.75 ulp: rn/rp round up, rz/rm down; mirrored for the negative sum.
// 1 + 0.5 ulp and (1 + ulp) + 0.5 ulp are ties: nearest-even goes down, then up.
TEST_CASE("add/sub.f32 with .rn .rz .rm .rp") {
  ISA_REQUIRE_DEVICE();
  check_binary<uint32_t>("add.rn.f32", k_add_rn,
                         {{kOne, k1p5x2m24, 0x3f800001u}, {kMinusOne, kNeg1p5x2m24, 0xbf800001u},
                          {kOne, k2m24, kOne}, {kOnePlusUlp, k2m24, 0x3f800002u}, {kTwo, kThree, kFive}});
  check_binary<uint32_t>("add.rz.f32", k_add_rz,
                         {{kOne, k1p5x2m24, kOne}, {kMinusOne, kNeg1p5x2m24, kMinusOne}, {kOnePlusUlp, k2m24, kOnePlusUlp}});
  check_binary<uint32_t>("add.rm.f32", k_add_rm,
                         {{kOne, k1p5x2m24, kOne}, {kMinusOne, kNeg1p5x2m24, 0xbf800001u}, {kOne, k2m24, kOne}});
  check_binary<uint32_t>("add.rp.f32", k_add_rp,
                         {{kOne, k1p5x2m24, 0x3f800001u}, {kMinusOne, kNeg1p5x2m24, kMinusOne}, {kOne, k2m24, 0x3f800001u}});
  // Operand order: a - b.
  check_binary<uint32_t>("sub.rn.f32", k_sub_rn, {{kTwo, kFive, 0xc0400000u}, {kOne, kNeg1p5x2m24, 0x3f800001u}});
  check_binary<uint32_t>("sub.rm.f32", k_sub_rm, {{kOne, kNeg1p5x2m24, kOne}, {kMinusOne, k1p5x2m24, 0xbf800001u}});
  // x - x is +0 in every mode but .rm, where it is -0 (IEEE 754 sign of an exact zero sum).
  check_binary<uint32_t>("sub.rm.f32 x-x", k_sub_rm, {{kThree, kThree, kNegZero}});
  check_binary<uint32_t>("sub.rn.f32 x-x", k_sub_rn, {{kThree, kThree, kPosZero}});
}

// ISA 9.7.3.5 mul: 5 * (1 + 2^-23) = 5 + 1.25 ulp(5); 3 * (1 + 2^-23) = 3 + 1.5 ulp(3) (tie,
// the even neighbour is 3 + 2 ulp).
TEST_CASE("mul.f32 with .rn .rz .rm .rp") {
  ISA_REQUIRE_DEVICE();
  check_binary<uint32_t>("mul.rn.f32", k_mul_rn,
                         {{kFive, kOnePlusUlp, 0x40a00001u}, {kMinusFive, kOnePlusUlp, 0xc0a00001u}, {kThree, kOnePlusUlp, 0x40400002u}});
  check_binary<uint32_t>("mul.rz.f32", k_mul_rz,
                         {{kFive, kOnePlusUlp, 0x40a00001u}, {kMinusFive, kOnePlusUlp, 0xc0a00001u}, {kThree, kOnePlusUlp, 0x40400001u}});
  check_binary<uint32_t>("mul.rm.f32", k_mul_rm,
                         {{kFive, kOnePlusUlp, 0x40a00001u}, {kMinusFive, kOnePlusUlp, 0xc0a00002u}, {kThree, kOnePlusUlp, 0x40400001u}});
  check_binary<uint32_t>("mul.rp.f32", k_mul_rp,
                         {{kFive, kOnePlusUlp, 0x40a00002u}, {kMinusFive, kOnePlusUlp, 0xc0a00001u}, {kThree, kOnePlusUlp, 0x40400002u}});
  // Overflow: rn -> inf; rz -> largest finite.
  check_binary<uint32_t>("mul.rn.f32 overflow", k_mul_rn, {{0x7f000000u, 0x40800000u, kInf}});
  check_binary<uint32_t>("mul.rz.f32 overflow", k_mul_rz, {{0x7f000000u, 0x40800000u, 0x7f7fffffu}});
}

// ISA 9.7.3.6 fma / 9.7.3.7 mad: "computes a*b+c in infinite precision and then rounds" once.
// a = b = 1 + 2^-12, c = -(1 + 2^-11): the exact result 2^-24 survives only a single rounding
// (mul.rn would round a*b = 1 + 2^-11 + 2^-24, a tie, down to 1 + 2^-11, and the sum to 0).
TEST_CASE("fma/mad.f32: single rounding, rounding modes, .sat") {
  ISA_REQUIRE_DEVICE();
  const uint32_t a = 0x3f800800u, c = 0xbf801000u;
  check_ternary<uint32_t>("fma.rn.f32", k_fma_rn,
                          {{a, a, c, k2m24}, {kOne, kOne, k1p5x2m24, 0x3f800001u}, {kOne, k1p5x2m24, kOne, 0x3f800001u}});
  check_ternary<uint32_t>("mad.rn.f32", k_mad_rn, {{a, a, c, k2m24}});
  check_binary<uint32_t>("mul.rn.f32 a*a", k_mul_rn, {{a, a, 0x3f801000u}});
  // 1 * 1.5*2^-24 + 1 = 1 + 0.75 ulp.
  check_ternary<uint32_t>("fma.rz.f32", k_fma_rz, {{kOne, k1p5x2m24, kOne, kOne}, {kMinusOne, k1p5x2m24, kMinusOne, kMinusOne}});
  check_ternary<uint32_t>("fma.rm.f32", k_fma_rm, {{kOne, k1p5x2m24, kOne, kOne}, {kMinusOne, k1p5x2m24, kMinusOne, 0xbf800001u}});
  check_ternary<uint32_t>("fma.rp.f32", k_fma_rp, {{kOne, k1p5x2m24, kOne, 0x3f800001u}, {kMinusOne, k1p5x2m24, kMinusOne, kMinusOne}});
  // .sat: "clamps the result to [0.0, 1.0]. NaN results are flushed to +0.0f."
  check_ternary<uint32_t>("fma.rn.sat.f32", k_fma_sat,
                          {{kTwo, kTwo, 0xc1200000u /*-10*/, kPosZero}, {kHalf, kHalf, kHalf, 0x3f400000u}, {kTwo, kTwo, kOne, kOne},
                           {kPosZero, kInf, kOne, kPosZero}});
}

// ISA 9.7.3.3 add, .f64: 1 + 0.75 ulp; 9.7.3.5 mul.f64: 5 * (1 + 2^-52) = 5 + 1.25 ulp.
TEST_CASE("add/mul/fma.f64 with .rn .rz .rm .rp") {
  ISA_REQUIRE_DEVICE();
  check_binary<uint64_t>("add.rn.f64", k_add_rn_64, {{dOne, d1p5x2m53, dOnePlusUlp}});
  check_binary<uint64_t>("add.rz.f64", k_add_rz_64, {{dOne, d1p5x2m53, dOne}});
  check_binary<uint64_t>("add.rm.f64", k_add_rm_64, {{dOne, d1p5x2m53, dOne}, {dOne | dNegZero, d1p5x2m53 | dNegZero, dOnePlusUlp | dNegZero}});
  check_binary<uint64_t>("add.rp.f64", k_add_rp_64, {{dOne, d1p5x2m53, dOnePlusUlp}, {dOne | dNegZero, d1p5x2m53 | dNegZero, dOne | dNegZero}});
  check_binary<uint64_t>("mul.rn.f64", k_mul_rn_64, {{dFive, dOnePlusUlp, 0x4014000000000001ull}});
  check_binary<uint64_t>("mul.rz.f64", k_mul_rz_64, {{dMinusFive, dOnePlusUlp, 0xc014000000000001ull}});
  check_binary<uint64_t>("mul.rm.f64", k_mul_rm_64, {{dMinusFive, dOnePlusUlp, 0xc014000000000002ull}});
  check_binary<uint64_t>("mul.rp.f64", k_mul_rp_64, {{dFive, dOnePlusUlp, 0x4014000000000002ull}});
  // fma.f64 single rounding: (1 + 2^-27)^2 - (1 + 2^-26) = 2^-54 exactly.
  check_ternary<uint64_t>("fma.rn.f64", k_fma_rn_64, {{0x3ff0000002000000ull, 0x3ff0000002000000ull, 0xbff0000004000000ull, 0x3c90000000000000ull}});
  check_ternary<uint64_t>("fma.rp.f64", k_fma_rp_64, {{dOne, d1p5x2m53, dOne, dOnePlusUlp}});
}

// .ftz: "flushes subnormal inputs and results to sign-preserving zero" (add, mul, min, setp).
TEST_CASE(".ftz on subnormal inputs and results") {
  ISA_REQUIRE_DEVICE();
  // Subnormal input: 2^-140 + 0 is 2^-140 without .ftz, +0 with it.
  // Subnormal result of normal inputs: 1.5 * 2^-126 - 2^-126 = 2^-127.
  check_binary<uint32_t>("add.rn.f32 subnormal kept", k_add_rn, {{kSub, kPosZero, kSub}, {k1p5x2m126, kNegMinNormal, k2m127}});
  check_binary<uint32_t>("add.rn.ftz.f32", k_add_ftz,
                         {{kSub, kPosZero, kPosZero}, {k1p5x2m126, kNegMinNormal, kPosZero}, {kSub, kOne, kOne},
                          // a subnormal input is flushed before the add: 2^-126 + (-2^-127 -> -0) = 2^-126
                          {kMinNormal, kNeg2m127, kMinNormal}});
  // Subnormal result with a negative sign: -2^-100 * 2^-40 = -2^-140 -> -0 under .ftz.
  check_binary<uint32_t>("mul.rn.f32 subnormal result", k_mul_rn, {{0x8d800000u, 0x2b800000u, 0x80000200u}});
  check_binary<uint32_t>("mul.rn.ftz.f32", k_mul_ftz,
                         {{0x8d800000u, 0x2b800000u, kNegZero}, {kSub, 0x71800000u /*2^100*/, kPosZero}});
  check_binary<uint32_t>("mul.rn.f32 subnormal input", k_mul_rn, {{kSub, 0x71800000u, 0x2b800000u /*2^-40*/}});
  check_binary<uint32_t>("min.ftz.f32", k_min_ftz, {{kSub, kOne, kPosZero}});
  check_binary<uint32_t>("min.f32", k_min_f32, {{kSub, kOne, kSub}});
}

// .sat on add/mul: clamp to [0, 1]; NaN results become +0.
TEST_CASE(".sat clamps to [0, 1] and flushes NaN to +0") {
  ISA_REQUIRE_DEVICE();
  check_binary<uint32_t>("add.rn.sat.f32", k_add_sat,
                         {{0x3f400000u, kHalf, kOne}, {0xbf000000u, kQuarter, kPosZero}, {kQuarter, kQuarter, kHalf},
                          {kNaN, kOne, kPosZero}, {kInf, kNegInf, kPosZero}});
  check_binary<uint32_t>("mul.rn.sat.f32", k_mul_sat, {{kThree, kQuarter, 0x3f400000u}, {kThree, kOne, kOne}, {kMinusOne, kHalf, kPosZero}});
}

// ISA 9.7.3.11 min / 9.7.3.12 max: one NaN operand -> the other operand; both NaN -> NaN;
// "-0.0 < +0.0"; .NaN -> NaN if any input is NaN. abs/neg (9.7.3.9-10) flip/clear the sign.
TEST_CASE("min/max: NaN operands, signed zeros, .NaN") {
  ISA_REQUIRE_DEVICE();
  check_binary<uint32_t>("min.f32", k_min_f32,
                         {{kNaN, kOne, kOne}, {kOne, kNaN, kOne}, {kNegZero, kPosZero, kNegZero}, {kPosZero, kNegZero, kNegZero},
                          {kMinusOne, kTwo, kMinusOne}, {kNegInf, kFive, kNegInf}});
  check_binary<uint32_t>("max.f32", k_max_f32,
                         {{kNaN, kOne, kOne}, {kOne, kNaN, kOne}, {kNegZero, kPosZero, kPosZero}, {kPosZero, kNegZero, kPosZero},
                          {kMinusOne, kTwo, kTwo}, {kInf, kFive, kInf}});
  check_binary<uint64_t>("min.f64", k_min_f64, {{dNaN, dOne, dOne}, {dNegZero, 0, dNegZero}, {0, dNegZero, dNegZero}});
  check_binary<uint64_t>("max.f64", k_max_f64, {{dOne, dNaN, dOne}, {dNegZero, 0, 0}});

  // Results that must be NaN (any NaN encoding): both inputs NaN, or .NaN with one NaN input.
  const std::vector<uint32_t> a = {kNaN, kNaN, kOne, 0x7f800001u /*signalling*/}, b = {kNaN, kOne, kNaN, kTwo};
  buffer<uint32_t> da(a), db(b), d1(a.size()), d2(a.size()), d3(a.size()), d4(a.size());
  k_min_f32<<<1, 1>>>(da.get(), db.get(), d1.get(), 1);  // only case 0: both NaN
  k_max_f32<<<1, 1>>>(da.get(), db.get(), d2.get(), 1);
  k_min_nan_f32<<<1, unsigned(a.size())>>>(da.get(), db.get(), d3.get(), int(a.size()));
  k_max_nan_f32<<<1, unsigned(a.size())>>>(da.get(), db.get(), d4.get(), int(a.size()));
  ISA_SYNC();
  CHECK(isa::is_nan_f32(d1.host()[0]));
  CHECK(isa::is_nan_f32(d2.host()[0]));
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK_MESSAGE(isa::is_nan_f32(d3.host()[i]), "min.NaN case ", i, " got ", hex(d3.host()[i]));
    CHECK_MESSAGE(isa::is_nan_f32(d4.host()[i]), "max.NaN case ", i, " got ", hex(d4.host()[i]));
  }
  check_binary<uint32_t>("min.NaN.f32 numbers", k_min_nan_f32, {{kOne, kTwo, kOne}, {kNegZero, kPosZero, kNegZero}});
  check_binary<uint32_t>("max.NaN.f32 numbers", k_max_nan_f32, {{kOne, kTwo, kTwo}, {kNegZero, kPosZero, kPosZero}});

  check_unary<uint32_t, uint32_t>("abs.f32", k_abs_f32, {kNegZero, kMinusFive, kNegInf}, {kPosZero, kFive, kInf});
  check_unary<uint32_t, uint32_t>("neg.f32", k_neg_f32, {kPosZero, kNegZero, kFive, kInf}, {kNegZero, kPosZero, kMinusFive, kNegInf});
  check_unary<uint64_t, uint64_t>("abs.f64", k_abs_f64, {dNegZero, dMinusFive}, {0, dFive});
  check_unary<uint64_t, uint64_t>("neg.f64", k_neg_f64, {0, dFive}, {dNegZero, dMinusFive});
  // ISA (abs): "For abs.f64, NaN input is passed through unchanged" — sign and payload (neg.f64
  // too: the CUDA Programming Guide's floating-point notes pass f64 NaNs through negation).
  check_unary<uint64_t, uint64_t>("abs.f64 NaN", k_abs_f64, {0xfff8000000000123ull, 0x7ff4000000000001ull},
                                  {0xfff8000000000123ull, 0x7ff4000000000001ull});
  check_unary<uint64_t, uint64_t>("neg.f64 NaN", k_neg_f64, {0xfff8000000000123ull}, {0xfff8000000000123ull});
  // copysign: "Copy sign bit of a into value of b".
  check_binary<uint32_t>("copysign.f32", k_copysign_f32, {{kMinusOne, kTwo, 0xc0000000u}, {kOne, 0xc0000000u, kTwo}, {kNegZero, kInf, kNegInf}});
}

// ISA "Comparison and Selection Instructions: setp", Floating Point Notes: ordered comparisons
// are False if either operand is NaN; the unordered ones (…u) are True then; num = neither is
// NaN; nan = either is NaN. -0 == +0.
TEST_CASE("setp.f32/f64: every comparison operator, ordered and unordered, NaN, signed zero") {
  ISA_REQUIRE_DEVICE();
  auto expect = [](double a, double b) {
    const bool un = std::isnan(a) || std::isnan(b);
    const bool cmp[6] = {a == b, a != b && !un, a < b, a <= b, a > b, a >= b};
    uint32_t r = 0;
    for (int k = 0; k < 6; ++k) r |= uint32_t(cmp[k] && !un) << k;              // ordered
    for (int k = 0; k < 6; ++k) r |= uint32_t((k == 1 ? a != b : cmp[k]) || un) << (6 + k);  // unordered
    r |= uint32_t(!un) << 12;
    r |= uint32_t(un) << 13;
    return r;
  };
  const std::vector<std::pair<float, float>> pairs = {
      {NAN, 1.f}, {1.f, NAN}, {NAN, NAN}, {1.f, 2.f}, {2.f, 1.f}, {1.f, 1.f}, {-0.f, 0.f}, {INFINITY, INFINITY}, {-INFINITY, 1.f}};
  std::vector<case2<uint32_t>> c32;
  for (auto [a, b] : pairs) c32.push_back({bits(a), bits(b), expect(a, b)});
  // Hand-worked: ne(NaN, 1) is False (ordered), neu(NaN, 1) True; eq(-0, +0) True.
  CHECK(c32[0].expect == ((0x3fu << 6) | (1u << 13)));
  CHECK(c32[6].expect == (0b101001u | (0b101001u << 6) | (1u << 12)));
  {
    std::vector<uint32_t> a, b;
    for (auto& c : c32) a.push_back(c.a), b.push_back(c.b);
    buffer<uint32_t> da(a), db(b), dd(a.size());
    k_setp_f32<<<1, unsigned(a.size())>>>(da.get(), db.get(), dd.get(), int(a.size()));
    ISA_SYNC();
    const auto d = dd.host();
    for (size_t i = 0; i < a.size(); ++i)
      CHECK_MESSAGE(d[i] == c32[i].expect, "setp.f32 ", pairs[i].first, " vs ", pairs[i].second, " got ", hex(d[i]), " want ",
                    hex(c32[i].expect));
  }
  {
    std::vector<uint64_t> a, b;
    for (auto [x, y] : pairs) a.push_back(bits(double(x))), b.push_back(bits(double(y)));
    buffer<uint64_t> da(a), db(b);
    buffer<uint32_t> dd(a.size());
    k_setp_f64<<<1, unsigned(a.size())>>>(da.get(), db.get(), dd.get(), int(a.size()));
    ISA_SYNC();
    const auto d = dd.host();
    for (size_t i = 0; i < a.size(); ++i)
      CHECK_MESSAGE(d[i] == expect(pairs[i].first, pairs[i].second), "setp.f64 ", pairs[i].first, " vs ", pairs[i].second);
  }
  {
    // setp.ftz.f32: 2^-140 > 0 is False once the subnormal is flushed to +0; eq is True.
    buffer<uint32_t> da(std::vector<uint32_t>{kSub}), db(std::vector<uint32_t>{kPosZero}), dd(1), dn(1);
    k_setp_ftz_f32<<<1, 1>>>(da.get(), db.get(), dd.get(), 1);
    k_setp_f32<<<1, 1>>>(da.get(), db.get(), dn.get(), 1);
    ISA_SYNC();
    CHECK(dd.host()[0] == expect(0.0, 0.0));
    CHECK(dn.host()[0] == expect(1.0, 0.0));
  }
}

// ISA 9.7.3.1 testp: "As a special case, positive and negative zero are considered normal".
TEST_CASE("testp: finite infinite number notanumber normal subnormal") {
  ISA_REQUIRE_DEVICE();
  // bits: finite infinite number notanumber normal subnormal
  const std::vector<uint32_t> f = {kOne, kPosZero, kNegZero, kSub, kInf, kNegInf, kNaN, 0x7f7fffffu};
  const std::vector<uint64_t> g = {dOne, 0, dNegZero, 1, 0x7ff0000000000000ull, 0xfff0000000000000ull, dNaN, 0x7fefffffffffffffull};
  const std::vector<uint32_t> want = {0b010101u, 0b010101u, 0b010101u, 0b100101u, 0b000110u, 0b000110u, 0b001000u, 0b010101u};
  buffer<uint32_t> df(f), dd(2 * f.size());
  buffer<uint64_t> dg(g);
  k_testp<<<1, unsigned(f.size())>>>(df.get(), dg.get(), dd.get(), int(f.size()));
  ISA_SYNC();
  const auto d = dd.host();
  for (size_t i = 0; i < f.size(); ++i) {
    CHECK_MESSAGE(d[2 * i] == want[i], "testp.f32 ", hex(f[i]), " got ", hex(d[2 * i]));
    CHECK_MESSAGE(d[2 * i + 1] == want[i], "testp.f64 ", hex(g[i]), " got ", hex(d[2 * i + 1]));
  }
}

// ISA 9.7.3.8 div, 9.7.3.13 rcp, 9.7.3.15 sqrt with IEEE 754 compliant rounding.
// 1/3 = 0x3eaaaaab (rn, rp) / 0x3eaaaaaa (rz, rm); in double 1/3 rounds down under rn.
// sqrt(2) = 1.41421356...: 0x3fb504f3 = 1.4142135381 is nearest, 0x3fb504f4 above.
TEST_CASE("div.rnd, rcp.rnd, sqrt.rnd: IEEE rounding and special values") {
  ISA_REQUIRE_DEVICE();
  const uint32_t third_dn = 0x3eaaaaaau, third_up = 0x3eaaaaabu;
  check_binary<uint32_t>("div.rn.f32", k_div_rn,
                         {{kOne, kThree, third_up}, {kMinusOne, kThree, 0xbeaaaaabu}, {kTwo, kThree, 0x3f2aaaabu}, {kOne, kPosZero, kInf},
                          {kMinusOne, kPosZero, kNegInf}, {kOne, kNegZero, kNegInf}, {kSub, kTwo, 0x00000100u}});
  check_binary<uint32_t>("div.rz.f32", k_div_rz, {{kOne, kThree, third_dn}, {kMinusOne, kThree, 0xbeaaaaaau}});
  check_binary<uint32_t>("div.rm.f32", k_div_rm, {{kOne, kThree, third_dn}, {kMinusOne, kThree, 0xbeaaaaabu}});
  check_binary<uint32_t>("div.rp.f32", k_div_rp, {{kOne, kThree, third_up}, {kMinusOne, kThree, 0xbeaaaaaau}});
  check_binary<uint64_t>("div.rn.f64", k_div_rn_64, {{dOne, dThree, 0x3fd5555555555555ull}});
  check_binary<uint64_t>("div.rp.f64", k_div_rp_64, {{dOne, dThree, 0x3fd5555555555556ull}});
  check_unary<uint32_t, uint32_t>("rcp.rn.f32", k_rcp_rn, {kThree, kNegZero, kInf, kFive}, {third_up, kNegInf, kPosZero, 0x3e4ccccdu});
  check_unary<uint32_t, uint32_t>("rcp.rz.f32", k_rcp_rz, {kThree, kFive}, {third_dn, 0x3e4ccccc});
  check_unary<uint64_t, uint64_t>("rcp.rn.f64", k_rcp_rn_64, {dThree}, {0x3fd5555555555555ull});
  check_unary<uint32_t, uint32_t>("sqrt.rn.f32", k_sqrt_rn,
                                  {kTwo, 0x40800000u /*4*/, kNegZero, kPosZero, kInf, 0x00000002u /*2^-148*/},
                                  {0x3fb504f3u, kTwo, kNegZero, kPosZero, kInf, 0x1a800000u /*2^-74*/});
  check_unary<uint32_t, uint32_t>("sqrt.rp.f32", k_sqrt_rp, {kTwo}, {0x3fb504f4u});
  check_unary<uint64_t, uint64_t>("sqrt.rn.f64", k_sqrt_rn_64, {0x4000000000000000ull}, {0x3ff6a09e667f3bcdull});

  // NaN results: 0/0, inf/inf, sqrt(-1), sqrt(-inf), rcp(NaN).
  const std::vector<uint32_t> a = {kPosZero, kInf, kMinusOne, kNegInf}, b = {kPosZero, kInf, kOne, kOne};
  buffer<uint32_t> da(a), db(b), dq(a.size()), ds(a.size());
  k_div_rn<<<1, 2>>>(da.get(), db.get(), dq.get(), 2);
  buffer<uint32_t> dz(std::vector<uint32_t>{kPosZero}), dinf(std::vector<uint32_t>{kInf}), dm(1);
  k_mul_rn<<<1, 1>>>(dz.get(), dinf.get(), dm.get(), 1);
  k_sqrt_rn<<<1, unsigned(a.size())>>>(da.get(), ds.get(), int(a.size()));
  ISA_SYNC();
  CHECK(isa::is_nan_f32(dq.host()[0]));
  CHECK(isa::is_nan_f32(dq.host()[1]));
  CHECK(isa::is_nan_f32(ds.host()[2]));
  CHECK(isa::is_nan_f32(ds.host()[3]));
  CHECK(isa::is_nan_f32(dm.host()[0]));  // 0 * inf
}

// The .approx instructions within the maximum error the ISA states for each, and their
// corner-case tables (ISA 9.7.3.13 rcp, .15 sqrt, .16 rsqrt, .18 sin, .19 cos, .20 lg2,
// .21 ex2, .22 tanh, .8 div).
TEST_CASE(".approx: documented error bounds and special values") {
  ISA_REQUIRE_DEVICE();
  const std::vector<float> xs = {0.f, 0.5f, 1.f, -1.f, 3.3f, -7.25f, 10.f, -10.f, 20.5f, 100.f, -100.f, 0.0625f, 1e-3f, 126.9f};
  std::vector<uint32_t> in;
  for (float x : xs) in.push_back(bits(x));
  const int n = int(in.size());
  buffer<uint32_t> din(in), d_ex2(n), d_rcp(n), d_tanh(n), d_sin(n), d_cos(n);
  k_ex2<<<1, unsigned(n)>>>(din.get(), d_ex2.get(), n);
  k_rcp_approx<<<1, unsigned(n)>>>(din.get(), d_rcp.get(), n);
  k_tanh_approx<<<1, unsigned(n)>>>(din.get(), d_tanh.get(), n);
  k_sin_approx<<<1, unsigned(n)>>>(din.get(), d_sin.get(), n);
  k_cos_approx<<<1, unsigned(n)>>>(din.get(), d_cos.get(), n);
  ISA_SYNC();
  const auto ex2 = d_ex2.host(), rcp = d_rcp.host(), th = d_tanh.host(), sn = d_sin.host(), cs = d_cos.host();
  for (int i = 0; i < n; ++i) {
    const double x = xs[i];
    // ex2: "The maximum ulp error is 2 ulp from correctly rounded result across the full range".
    CHECK_MESSAGE(isa::ulp_distance(as_f32(ex2[i]), float(std::exp2(x))) <= 2, "ex2.approx(", x, ") = ", as_f32(ex2[i]));
    // rcp.approx: "The maximum ulp error is 1 across the full range of inputs" (x = 0 is the +inf corner case).
    if (x != 0) CHECK_MESSAGE(isa::ulp_distance(as_f32(rcp[i]), float(1.0 / x)) <= 1, "rcp.approx(", x, ") = ", as_f32(rcp[i]));
    // tanh: "maximum relative error over the entire floating point range is 2^-11".
    const double t = std::tanh(x);
    if (t != 0) CHECK_MESSAGE(std::fabs(as_f32(th[i]) - t) <= std::ldexp(std::fabs(t), -11), "tanh.approx(", x, ")");
    // sin/cos: absolute error 2^-20.5 on [-2pi, 2pi], 2^-14.7 on [-100pi, 100pi].
    const double bound = std::fabs(x) <= 2 * M_PI ? std::pow(2.0, -20.5) : std::pow(2.0, -14.7);
    CHECK_MESSAGE(std::fabs(as_f32(sn[i]) - std::sin(x)) <= bound, "sin.approx(", x, ") = ", as_f32(sn[i]));
    CHECK_MESSAGE(std::fabs(as_f32(cs[i]) - std::cos(x)) <= bound, "cos.approx(", x, ") = ", as_f32(cs[i]));
  }

  // lg2 / sqrt / rsqrt on positive inputs.
  const std::vector<float> ps = {0.5001f, 0.75f, 1.f, 1.5f, 1.999f, 2.f, 3.f, 1024.f, 1e-20f, 1e20f, 0.1f};
  std::vector<uint32_t> pin;
  for (float x : ps) pin.push_back(bits(x));
  const int m = int(pin.size());
  buffer<uint32_t> dp(pin), d_lg2(m), d_sqrt(m), d_rsqrt(m);
  k_lg2<<<1, unsigned(m)>>>(dp.get(), d_lg2.get(), m);
  k_sqrt_approx<<<1, unsigned(m)>>>(dp.get(), d_sqrt.get(), m);
  k_rsqrt_approx<<<1, unsigned(m)>>>(dp.get(), d_rsqrt.get(), m);
  ISA_SYNC();
  const auto lg = d_lg2.host(), sq = d_sqrt.host(), rs = d_rsqrt.host();
  for (int i = 0; i < m; ++i) {
    const double x = ps[i], l = std::log2(x);
    // lg2: "maximum absolute error is 2^-22 when the input operand is in the range (0.5, 2).
    // For positive finite inputs outside of this interval, maximum relative error is 2^-22."
    const double lbound = (x > 0.5 && x < 2) ? std::ldexp(1.0, -22) : std::ldexp(std::fabs(l), -22);
    CHECK_MESSAGE(std::fabs(as_f32(lg[i]) - l) <= lbound, "lg2.approx(", x, ") = ", as_f32(lg[i]));
    // sqrt.approx: relative error 2^-23; rsqrt.approx: relative error 2^-22.9.
    CHECK_MESSAGE(std::fabs(as_f32(sq[i]) - std::sqrt(x)) <= std::ldexp(std::sqrt(x), -23), "sqrt.approx(", x, ")");
    CHECK_MESSAGE(std::fabs(as_f32(rs[i]) - 1 / std::sqrt(x)) <= std::pow(2.0, -22.9) / std::sqrt(x), "rsqrt.approx(", x, ")");
  }

  // div.full (2 ulp, full range) and div.approx (2 ulp for |b| in [2^-126, 2^126]).
  check_binary<uint32_t>("div.full.f32 exact", k_div_full, {{0x40c00000u /*6*/, kThree, kTwo}});
  {
    const std::vector<float> na = {1.f, 7.f, -3.f, 1e30f, 1e-30f}, nb = {3.f, -11.f, 0.7f, 3e-5f, 7.f};
    std::vector<uint32_t> ua, ub;
    for (size_t i = 0; i < na.size(); ++i) ua.push_back(bits(na[i])), ub.push_back(bits(nb[i]));
    buffer<uint32_t> da(ua), db(ub), df(na.size()), dx(na.size());
    k_div_full<<<1, unsigned(na.size())>>>(da.get(), db.get(), df.get(), int(na.size()));
    k_div_approx<<<1, unsigned(na.size())>>>(da.get(), db.get(), dx.get(), int(na.size()));
    ISA_SYNC();
    for (size_t i = 0; i < na.size(); ++i) {
      const float exact = float(double(na[i]) / double(nb[i]));
      CHECK_MESSAGE(isa::ulp_distance(as_f32(df.host()[i]), exact) <= 2, "div.full ", na[i], "/", nb[i]);
      CHECK_MESSAGE(isa::ulp_distance(as_f32(dx.host()[i]), exact) <= 2, "div.approx ", na[i], "/", nb[i]);
    }
  }

  // ISA (div): "For 2^126 < |b| < 2^128, if a is infinity, div.approx.f32 returns NaN, otherwise
  // it returns a sign-preserving zero"; div.full covers the full range (1 / 2^127 = 2^-127, a
  // subnormal, within 2 ulp).
  check_binary<uint32_t>("div.approx.f32, 2^126 < |b| < 2^128", k_div_approx,
                         {{kOne, 0x7f000000u /*2^127*/, kPosZero},
                          {kMinusOne, 0x7f000000u, kNegZero},
                          {kOne, 0xff000000u /*-2^127*/, kNegZero},
                          {0x7f000000u, 0x7f7fffffu /*FLT_MAX*/, kPosZero}});
  {
    buffer<uint32_t> da(std::vector<uint32_t>{kInf, kNegInf}), db(std::vector<uint32_t>{0x7f000000u, 0x7e800001u}),
        dd(2);
    k_div_approx<<<1, 2>>>(da.get(), db.get(), dd.get(), 2);
    ISA_SYNC();
    CHECK(isa::is_nan_f32(dd.host()[0]));  // an infinite a: NaN
    CHECK(isa::is_nan_f32(dd.host()[1]));
  }
  {
    buffer<uint32_t> da(std::vector<uint32_t>{kOne}), db(std::vector<uint32_t>{0x7f000000u}), dd(1);
    k_div_full<<<1, 1>>>(da.get(), db.get(), dd.get(), 1);
    ISA_SYNC();
    CHECK(isa::ulp_distance(as_f32(dd.host()[0]), std::ldexp(1.0f, -127)) <= 2);  // not the .approx rule
  }

  // Corner-case tables, exact.
  check_unary<uint32_t, uint32_t>("ex2.approx specials", k_ex2, {kNegInf, kNegZero, kPosZero, kInf}, {kPosZero, kOne, kOne, kInf});
  check_unary<uint32_t, uint32_t>("lg2.approx specials", k_lg2, {kNegZero, kPosZero, kInf}, {kNegInf, kNegInf, kInf});
  check_unary<uint32_t, uint32_t>("rcp.approx specials", k_rcp_approx, {kNegInf, kNegZero, kPosZero, kInf}, {kNegZero, kNegInf, kInf, kPosZero});
  check_unary<uint32_t, uint32_t>("sqrt.approx specials", k_sqrt_approx, {kNegZero, kPosZero, kInf}, {kNegZero, kPosZero, kInf});
  check_unary<uint32_t, uint32_t>("rsqrt.approx specials", k_rsqrt_approx, {kNegZero, kPosZero, kInf}, {kNegInf, kInf, kPosZero});
  check_unary<uint32_t, uint32_t>("sin.approx specials", k_sin_approx, {kNegZero, kPosZero}, {kNegZero, kPosZero});
  check_unary<uint32_t, uint32_t>("cos.approx specials", k_cos_approx, {kNegZero, kPosZero}, {kOne, kOne});
  check_unary<uint32_t, uint32_t>("tanh.approx specials", k_tanh_approx, {kNegInf, kNegZero, kPosZero, kInf}, {kMinusOne, kNegZero, kPosZero, kOne});
  // NaN rows: ex2(NaN), lg2(-inf), lg2(-1), lg2(NaN), rcp(NaN), sqrt(-1), rsqrt(-inf), sin(inf), cos(-inf), tanh(NaN).
  {
    const std::vector<uint32_t> nanin = {kNaN, kNegInf, kMinusOne, kNaN, kNaN, kMinusOne, kNegInf, kInf, kNegInf, kNaN};
    buffer<uint32_t> dn(nanin);
    buffer<uint32_t> o0(10), o1(10), o2(10), o3(10), o4(10), o5(10), o6(10), o7(10);
    k_ex2<<<1, 1>>>(dn.get() + 0, o0.get(), 1);
    k_lg2<<<1, 3>>>(dn.get() + 1, o1.get(), 3);
    k_rcp_approx<<<1, 1>>>(dn.get() + 4, o2.get(), 1);
    k_sqrt_approx<<<1, 1>>>(dn.get() + 5, o3.get(), 1);
    k_rsqrt_approx<<<1, 1>>>(dn.get() + 6, o4.get(), 1);
    k_sin_approx<<<1, 1>>>(dn.get() + 7, o5.get(), 1);
    k_cos_approx<<<1, 1>>>(dn.get() + 8, o6.get(), 1);
    k_tanh_approx<<<1, 1>>>(dn.get() + 9, o7.get(), 1);
    ISA_SYNC();
    CHECK(isa::is_nan_f32(o0.host()[0]));
    for (int k = 0; k < 3; ++k) CHECK_MESSAGE(isa::is_nan_f32(o1.host()[k]), "lg2.approx NaN row ", k);
    CHECK(isa::is_nan_f32(o2.host()[0]));
    CHECK(isa::is_nan_f32(o3.host()[0]));
    CHECK(isa::is_nan_f32(o4.host()[0]));
    CHECK(isa::is_nan_f32(o5.host()[0]));
    CHECK(isa::is_nan_f32(o6.host()[0]));
    CHECK(isa::is_nan_f32(o7.host()[0]));
  }
}

}  // TEST_SUITE
