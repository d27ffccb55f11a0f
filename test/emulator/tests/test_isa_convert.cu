// PTX cvt (ISA 9.7.9.21 "Data Movement and Conversion Instructions: cvt") against values worked
// from the ISA: integer rounding .rni/.rzi/.rmi/.rpi, float rounding .rn/.rz/.rm/.rp on values
// that lie between two representable results, saturation of out-of-range float-to-integer
// conversions (clamped by default), NaN to integer, integer narrowing with and without .sat,
// f32 -> f16/bf16 ties-to-even, overflow, .relu/.satfinite, the operand order of the packed
// .f16x2/.bf16x2 forms, the exact widening conversions, and the fp8 forms (.e4m3x2/.e5m2x2 from
// .f32 and .f16x2, and to .f16x2; sm_89: skipped, saying so, where the code that runs is sm_80's).
#include "isa_test.cuh"

#include <cstdint>
#include <type_traits>
#include <vector>

namespace {

using isa::buffer;
using isa::check_unary;
using isa::hex;

#define CVT(NAME, INSTR, TD, TA, DC, AC)                                                 \
  __global__ void NAME(const TA* a, TD* d, int n) {                                      \
    const int i = threadIdx.x;                                                           \
    if (i < n) {                                                                         \
      TD r;                                                                              \
      asm volatile(INSTR " %0, %1;" : "=" DC(r) : AC(a[i]));                              \
      d[i] = r;                                                                          \
    }                                                                                    \
  }
// float (as bits) -> 32-bit integer
#define F2I(NAME, INSTR) CVT(NAME, INSTR, uint32_t, uint32_t, "r", "r")

// f32 -> s32 with the four integer roundings.
F2I(k_rni_s32_f32, "cvt.rni.s32.f32")
F2I(k_rzi_s32_f32, "cvt.rzi.s32.f32")
F2I(k_rmi_s32_f32, "cvt.rmi.s32.f32")
F2I(k_rpi_s32_f32, "cvt.rpi.s32.f32")
F2I(k_rzi_u32_f32, "cvt.rzi.u32.f32")
F2I(k_rni_u32_f32, "cvt.rni.u32.f32")
F2I(k_rzi_s8_f32, "cvt.rzi.s8.f32")
F2I(k_rzi_u8_f32, "cvt.rzi.u8.f32")
F2I(k_sat_rzi_s32_f32, "cvt.rzi.sat.s32.f32")
CVT(k_rzi_s16_f32, "cvt.rzi.s16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rzi_s64_f32, "cvt.rzi.s64.f32", uint64_t, uint32_t, "l", "r")
CVT(k_rzi_u64_f32, "cvt.rzi.u64.f32", uint64_t, uint32_t, "l", "r")
CVT(k_rzi_s32_f64, "cvt.rzi.s32.f64", uint32_t, uint64_t, "r", "l")
CVT(k_rzi_u32_f64, "cvt.rzi.u32.f64", uint32_t, uint64_t, "r", "l")
CVT(k_rzi_s64_f64, "cvt.rzi.s64.f64", uint64_t, uint64_t, "l", "l")
CVT(k_rni_s64_f64, "cvt.rni.s64.f64", uint64_t, uint64_t, "l", "l")
CVT(k_rzi_s16_f64, "cvt.rzi.s16.f64", uint16_t, uint64_t, "h", "l")
CVT(k_rni_s32_f16, "cvt.rni.s32.f16", uint32_t, uint16_t, "r", "h")
CVT(k_rpi_s32_f16, "cvt.rpi.s32.f16", uint32_t, uint16_t, "r", "h")

// integer -> integer
F2I(k_s8_s32, "cvt.s8.s32")
F2I(k_sat_s8_s32, "cvt.sat.s8.s32")
F2I(k_sat_u8_s32, "cvt.sat.u8.s32")
F2I(k_s32_s8, "cvt.s32.s8")
F2I(k_u32_u8, "cvt.u32.u8")
F2I(k_sat_u32_s32, "cvt.sat.u32.s32")
F2I(k_sat_s32_u32, "cvt.sat.s32.u32")
CVT(k_u16_s32, "cvt.u16.s32", uint16_t, uint32_t, "h", "r")
CVT(k_s64_s32, "cvt.s64.s32", uint64_t, uint32_t, "l", "r")
CVT(k_u64_u32, "cvt.u64.u32", uint64_t, uint32_t, "l", "r")
CVT(k_s32_s64, "cvt.s32.s64", uint32_t, uint64_t, "r", "l")
CVT(k_sat_s32_s64, "cvt.sat.s32.s64", uint32_t, uint64_t, "r", "l")
CVT(k_s64_s16, "cvt.s64.s16", uint64_t, uint16_t, "l", "h")

// integer -> float
F2I(k_rn_f32_s32, "cvt.rn.f32.s32")
F2I(k_rz_f32_s32, "cvt.rz.f32.s32")
F2I(k_rm_f32_s32, "cvt.rm.f32.s32")
F2I(k_rp_f32_s32, "cvt.rp.f32.s32")
F2I(k_rn_f32_u32, "cvt.rn.f32.u32")
F2I(k_rz_f32_u32, "cvt.rz.f32.u32")
CVT(k_rn_f64_s64, "cvt.rn.f64.s64", uint64_t, uint64_t, "l", "l")
CVT(k_rp_f64_s64, "cvt.rp.f64.s64", uint64_t, uint64_t, "l", "l")
CVT(k_rn_f64_u32, "cvt.rn.f64.u32", uint64_t, uint32_t, "l", "r")
CVT(k_rn_f16_s32, "cvt.rn.f16.s32", uint16_t, uint32_t, "h", "r")
CVT(k_rp_f16_s32, "cvt.rp.f16.s32", uint16_t, uint32_t, "h", "r")
CVT(k_rn_f16_u32, "cvt.rn.f16.u32", uint16_t, uint32_t, "h", "r")
CVT(k_rz_f16_u32, "cvt.rz.f16.u32", uint16_t, uint32_t, "h", "r")

// float -> float
CVT(k_rn_f32_f64, "cvt.rn.f32.f64", uint32_t, uint64_t, "r", "l")
CVT(k_rz_f32_f64, "cvt.rz.f32.f64", uint32_t, uint64_t, "r", "l")
CVT(k_rm_f32_f64, "cvt.rm.f32.f64", uint32_t, uint64_t, "r", "l")
CVT(k_rp_f32_f64, "cvt.rp.f32.f64", uint32_t, uint64_t, "r", "l")
CVT(k_rn_ftz_f32_f64, "cvt.rn.ftz.f32.f64", uint32_t, uint64_t, "r", "l")
CVT(k_f64_f32, "cvt.f64.f32", uint64_t, uint32_t, "l", "r")
CVT(k_ftz_f64_f32, "cvt.ftz.f64.f32", uint64_t, uint32_t, "l", "r")
CVT(k_rn_f16_f32, "cvt.rn.f16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rz_f16_f32, "cvt.rz.f16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rm_f16_f32, "cvt.rm.f16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rp_f16_f32, "cvt.rp.f16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rn_relu_f16_f32, "cvt.rn.relu.f16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rn_satfinite_f16_f32, "cvt.rn.satfinite.f16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rn_bf16_f32, "cvt.rn.bf16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rz_bf16_f32, "cvt.rz.bf16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rn_relu_bf16_f32, "cvt.rn.relu.bf16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_rn_satfinite_bf16_f32, "cvt.rn.satfinite.bf16.f32", uint16_t, uint32_t, "h", "r")
CVT(k_f32_f16, "cvt.f32.f16", uint32_t, uint16_t, "r", "h")
CVT(k_f32_bf16, "cvt.f32.bf16", uint32_t, uint16_t, "r", "h")
CVT(k_f64_f16, "cvt.f64.f16", uint64_t, uint16_t, "l", "h")
F2I(k_rni_f32_f32, "cvt.rni.f32.f32")
F2I(k_rzi_f32_f32, "cvt.rzi.f32.f32")
F2I(k_rmi_f32_f32, "cvt.rmi.f32.f32")
F2I(k_rpi_f32_f32, "cvt.rpi.f32.f32")
F2I(k_sat_f32_f32, "cvt.sat.f32.f32")
CVT(k_rni_f64_f64, "cvt.rni.f64.f64", uint64_t, uint64_t, "l", "l")
CVT(k_rmi_f64_f64, "cvt.rmi.f64.f64", uint64_t, uint64_t, "l", "l")
F2I(k_rna_tf32_f32, "cvt.rna.tf32.f32")

// Packed forms: d[31:16] = convert(a), d[15:0] = convert(b).
__global__ void k_packed(const uint32_t* a, const uint32_t* b, uint32_t* d, int n) {
  const int i = threadIdx.x;
  if (i >= n) return;
  uint32_t h, bf, bz;
  asm volatile("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(h) : "r"(a[i]), "r"(b[i]));
  asm volatile("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(bf) : "r"(a[i]), "r"(b[i]));
  asm volatile("cvt.rz.bf16x2.f32 %0, %1, %2;" : "=r"(bz) : "r"(a[i]), "r"(b[i]));
  d[3 * i] = h;
  d[3 * i + 1] = bf;
  d[3 * i + 2] = bz;
}

template <class TD, class TA, class K>
void check_nan(const char* what, K kernel, const std::vector<TA>& a, bool (*is_nan)(TD)) {
  buffer<TA> da(a);
  buffer<TD> dd(a.size());
  kernel<<<1, unsigned(a.size())>>>(da.get(), dd.get(), int(a.size()));
  ISA_SYNC();
  const auto d = dd.host();
  for (size_t i = 0; i < a.size(); ++i) CHECK_MESSAGE(is_nan(d[i]), std::string(what), " input ", hex(uint64_t(a[i])), " got ", hex(uint64_t(d[i])));
}
bool nan16(uint16_t v) { return isa::is_nan_f16(v); }
bool nanbf16(uint16_t v) { return isa::is_nan_bf16(v); }
bool nan32(uint32_t v) { return isa::is_nan_f32(v); }
bool nan64(uint64_t v) { return isa::is_nan_f64(v); }

std::vector<uint32_t> f32s(std::initializer_list<float> xs) {
  std::vector<uint32_t> v;
  for (float x : xs) v.push_back(isa::bits(x));
  return v;
}
std::vector<uint64_t> f64s(std::initializer_list<double> xs) {
  std::vector<uint64_t> v;
  for (double x : xs) v.push_back(isa::bits(x));
  return v;
}
constexpr uint32_t u32(int64_t v) { return uint32_t(v); }
constexpr uint64_t u64(int64_t v) { return uint64_t(v); }
constexpr uint32_t kNaN = 0x7fc00000u, kInf = 0x7f800000u, kNegInf = 0xff800000u;
constexpr uint64_t dNaN = 0x7ff8000000000000ull;

// ---- fp8 (sm_89, PTX ISA 7.8 / 8.1) ----------------------------------------------------------
// The kernels hold the instructions only in the code compiled for sm_89 and later (here the
// sm_90a code); the sm_80 code, which lacks them, writes 0 and reports itself through k_fp8_code.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define FP8_ASM(...) asm volatile(__VA_ARGS__)
#else
#define FP8_ASM(...) (void)0
#endif

__global__ void k_fp8_code(uint32_t* d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  *d = 1;
#else
  *d = 0;
#endif
}

// Thread i converts a[i] (and b[i], for the two-source .f32 forms) into d[i].
#define FP8_CVT2(NAME, INSTR)                                                          \
  __global__ void NAME(const uint32_t* a, const uint32_t* b, uint32_t* d, int n) {     \
    const int i = threadIdx.x;                                                         \
    if (i >= n) return;                                                                \
    uint16_t r = 0;                                                                    \
    FP8_ASM(INSTR " %0, %1, %2;" : "=h"(r) : "r"(a[i]), "r"(b[i]));                    \
    d[i] = r;                                                                          \
  }
#define FP8_CVT1(NAME, INSTR, TD, TA, DC, AC)                                          \
  __global__ void NAME(const uint32_t* a, uint32_t* d, int n) {                        \
    const int i = threadIdx.x;                                                         \
    if (i >= n) return;                                                                \
    TD r = 0;                                                                          \
    FP8_ASM(INSTR " %0, %1;" : "=" DC(r) : AC(TA(a[i])));                              \
    d[i] = r;                                                                          \
  }
FP8_CVT2(k_e4m3x2_f32, "cvt.rn.satfinite.e4m3x2.f32")
FP8_CVT2(k_relu_e4m3x2_f32, "cvt.rn.satfinite.relu.e4m3x2.f32")
FP8_CVT2(k_e5m2x2_f32, "cvt.rn.satfinite.e5m2x2.f32")
FP8_CVT2(k_relu_e5m2x2_f32, "cvt.rn.satfinite.relu.e5m2x2.f32")
FP8_CVT1(k_e4m3x2_f16x2, "cvt.rn.satfinite.e4m3x2.f16x2", uint16_t, uint32_t, "h", "r")
FP8_CVT1(k_relu_e4m3x2_f16x2, "cvt.rn.satfinite.relu.e4m3x2.f16x2", uint16_t, uint32_t, "h", "r")
FP8_CVT1(k_e5m2x2_f16x2, "cvt.rn.satfinite.e5m2x2.f16x2", uint16_t, uint32_t, "h", "r")
FP8_CVT1(k_relu_e5m2x2_f16x2, "cvt.rn.satfinite.relu.e5m2x2.f16x2", uint16_t, uint32_t, "h", "r")
FP8_CVT1(k_f16x2_e4m3x2, "cvt.rn.f16x2.e4m3x2", uint32_t, uint16_t, "r", "h")
FP8_CVT1(k_relu_f16x2_e4m3x2, "cvt.rn.relu.f16x2.e4m3x2", uint32_t, uint16_t, "r", "h")
FP8_CVT1(k_f16x2_e5m2x2, "cvt.rn.f16x2.e5m2x2", uint32_t, uint16_t, "r", "h")
FP8_CVT1(k_relu_f16x2_e5m2x2, "cvt.rn.relu.f16x2.e5m2x2", uint32_t, uint16_t, "r", "h")

//! Whether the code this device runs has the fp8 conversions: the sm_90a model's and a compute
//! capability 9.0 GPU's do; the sm_80 model's, and any other GPU's (sm_80 SASS, or the compute_80
//! PTX JIT-compiled), do not.
bool fp8_code() {
  buffer<uint32_t> d(1);
  k_fp8_code<<<1, 1>>>(d.get());
  ISA_SYNC();
  const bool fp8 = d.host()[0] == 1;
  if (isa::emulated()) REQUIRE_MESSAGE(fp8 == (isa::compute_capability() >= 90), "the model ran the wrong PTX");
  return fp8;
}
// After ISA_REQUIRE_DEVICE(): without the fp8 code the case reports the skip and returns.
#define ISA_REQUIRE_FP8()                                                                  \
  do {                                                                                     \
    if (!fp8_code()) {                                                                     \
      MESSAGE("skipped: the fp8 conversions need sm_89, and this device runs the sm_80 code"); \
      return;                                                                              \
    }                                                                                      \
  } while (false)

// Expected fields: a bit pattern, or `any_nan` (any NaN of the format: the ISA leaves its bits open).
constexpr int any_nan = -1;
struct fp8x2_case {
  uint32_t a, b;  // b: the .f32 forms' second source (unused by the one-source forms)
  int hi, lo;     // d's upper and lower byte (half, for .f16x2 results)
};
//! A field of d against its expected value in `format`: "e4m3" (NaN S.1111.111), "e5m2" (NaN
//! S.11111.{01,10,11}) or "f16".
bool field_matches(uint32_t field, int want, const std::string& format) {
  if (want != any_nan) return field == uint32_t(want);
  if (format == "f16") return isa::is_nan_f16(uint16_t(field));
  return format == "e5m2" ? (field & 0x7cu) == 0x7cu && (field & 3u) != 0 : (field & 0x7fu) == 0x7fu;
}

//! Runs a kernel of FP8_CVT2 (two sources) or FP8_CVT1 and checks d's two fields: bytes of the
//! fp8 `format`, or f16 halves when `format` is "f16".
template <class K>
void check_fp8x2(const char* what, K kernel, const char* format, const std::vector<fp8x2_case>& cases) {
  std::vector<uint32_t> a, b;
  for (const fp8x2_case& c : cases) a.push_back(c.a), b.push_back(c.b);
  buffer<uint32_t> da(a), db(b), dd(cases.size());
  const int n = int(cases.size());
  if constexpr (std::is_invocable_v<K, const uint32_t*, const uint32_t*, uint32_t*, int>)
    kernel<<<1, unsigned(n)>>>(da.get(), db.get(), dd.get(), n);
  else
    kernel<<<1, unsigned(n)>>>(da.get(), dd.get(), n);
  ISA_SYNC();
  const auto d = dd.host();
  const int bits = format == std::string("f16") ? 16 : 8;
  for (size_t i = 0; i < cases.size(); ++i) {
    const fp8x2_case& c = cases[i];
    const uint32_t hi = d[i] >> bits, lo = d[i] & ((1u << bits) - 1);
    const bool ok = field_matches(hi, c.hi, format) && field_matches(lo, c.lo, format);
    CHECK_MESSAGE(ok, std::string(what), " a=", hex(c.a), " b=", hex(c.b), " got ", hex(d[i]), " want ",
                  c.hi == any_nan ? std::string("NaN") : hex(uint32_t(c.hi)), ":",
                  c.lo == any_nan ? std::string("NaN") : hex(uint32_t(c.lo)));
  }
}

}  // namespace

TEST_SUITE("emulator_isa_convert") {

// Integer Notes: .rni nearest-even, .rzi toward zero, .rmi toward -inf, .rpi toward +inf.
TEST_CASE("cvt.{rni,rzi,rmi,rpi}.s32.f32") {
  ISA_REQUIRE_DEVICE();
  const auto in = f32s({2.5f, -2.5f, 3.5f, -0.5f, 1.7f, -1.7f, 0.f, -0.f});
  check_unary<uint32_t, uint32_t>("cvt.rni.s32.f32", k_rni_s32_f32, in, {2, u32(-2), 4, 0, 2, u32(-2), 0, 0});
  check_unary<uint32_t, uint32_t>("cvt.rzi.s32.f32", k_rzi_s32_f32, in, {2, u32(-2), 3, 0, 1, u32(-1), 0, 0});
  check_unary<uint32_t, uint32_t>("cvt.rmi.s32.f32", k_rmi_s32_f32, in, {2, u32(-3), 3, u32(-1), 1, u32(-2), 0, 0});
  check_unary<uint32_t, uint32_t>("cvt.rpi.s32.f32", k_rpi_s32_f32, in, {3, u32(-2), 4, 0, 2, u32(-1), 0, 0});
  // f16 source: 2.5 = 0x4100.
  check_unary<uint32_t, uint16_t>("cvt.rni.s32.f16", k_rni_s32_f16, {0x4100, 0xc100}, {2, u32(-2)});
  check_unary<uint32_t, uint16_t>("cvt.rpi.s32.f16", k_rpi_s32_f16, {0x4100, 0xc100}, {3, u32(-2)});
  check_unary<uint64_t, uint64_t>("cvt.rni.s64.f64", k_rni_s64_f64, f64s({2.5, -3.5, 4503599627370497.0}),
                                  {2, u64(-4), 4503599627370497ull});
}

// Saturation modifier: "For float-to-integer conversions, the result is clamped to the
// destination range by default; i.e, .sat is redundant."
TEST_CASE("float -> integer clamps out-of-range values to the destination range") {
  ISA_REQUIRE_DEVICE();
  const auto in = f32s({3e9f, -3e9f, INFINITY, -INFINITY, 2147483520.f});
  check_unary<uint32_t, uint32_t>("cvt.rzi.s32.f32", k_rzi_s32_f32, in, {0x7fffffffu, 0x80000000u, 0x7fffffffu, 0x80000000u, 2147483520u});
  check_unary<uint32_t, uint32_t>("cvt.rzi.sat.s32.f32", k_sat_rzi_s32_f32, in,
                                  {0x7fffffffu, 0x80000000u, 0x7fffffffu, 0x80000000u, 2147483520u});
  check_unary<uint32_t, uint32_t>("cvt.rzi.u32.f32", k_rzi_u32_f32, f32s({-1.f, 5e9f, 4294967040.f, -INFINITY, INFINITY}),
                                  {0, 0xffffffffu, 4294967040u, 0, 0xffffffffu});
  // -0.4 rounds to -0, which is 0 as an unsigned integer.
  check_unary<uint32_t, uint32_t>("cvt.rni.u32.f32", k_rni_u32_f32, f32s({-0.4f, 2.5f}), {0, 2});
  // Narrow destinations in a 32-bit register: the result is sign-extended (s8) / zero-extended (u8).
  check_unary<uint32_t, uint32_t>("cvt.rzi.s8.f32", k_rzi_s8_f32, f32s({200.f, -200.f, 100.7f, -100.7f}),
                                  {127, 0xffffff80u, 100, u32(-100)});
  check_unary<uint32_t, uint32_t>("cvt.rzi.u8.f32", k_rzi_u8_f32, f32s({300.f, -5.f, 254.9f}), {255, 0, 254});
  check_unary<uint16_t, uint32_t>("cvt.rzi.s16.f32", k_rzi_s16_f32, f32s({40000.f, -40000.f, -123.9f}), {0x7fff, 0x8000, uint16_t(-123)});
  check_unary<uint64_t, uint32_t>("cvt.rzi.s64.f32", k_rzi_s64_f32, f32s({1e19f, -1e19f, -1.5f}),
                                  {0x7fffffffffffffffull, 0x8000000000000000ull, u64(-1)});
  check_unary<uint64_t, uint32_t>("cvt.rzi.u64.f32", k_rzi_u64_f32, f32s({2e19f, -1.f, 1e19f}), {~0ull, 0, 9999999980506447872ull});
  check_unary<uint32_t, uint64_t>("cvt.rzi.s32.f64", k_rzi_s32_f64, f64s({3e9, -3e9, -2147483648.9, 2147483647.9}),
                                  {0x7fffffffu, 0x80000000u, 0x80000000u, 0x7fffffffu});
  check_unary<uint64_t, uint64_t>("cvt.rzi.s64.f64", k_rzi_s64_f64, f64s({1e19, -1e19, -0.9}), {0x7fffffffffffffffull, 0x8000000000000000ull, 0});
}

// Integer Notes: "In float-to-integer conversions, depending upon conversion types, NaN input
// results in following value: 1. Zero if source is not .f64 and destination is not .s64, .u64.
// 2. Otherwise 1 << (BitWidth(dst) - 1) corresponding to the value of (MAXINT >> 1) + 1 for
// unsigned type or MININT for signed type."
TEST_CASE("NaN -> integer") {
  ISA_REQUIRE_DEVICE();
  const std::vector<uint32_t> nan32v = {kNaN, 0xffc00000u, 0x7f800001u};
  check_unary<uint32_t, uint32_t>("cvt.rzi.s32.f32 NaN", k_rzi_s32_f32, nan32v, {0, 0, 0});
  check_unary<uint32_t, uint32_t>("cvt.rzi.u32.f32 NaN", k_rzi_u32_f32, nan32v, {0, 0, 0});
  check_unary<uint32_t, uint32_t>("cvt.rni.s32.f32 NaN", k_rni_s32_f32, nan32v, {0, 0, 0});
  check_unary<uint16_t, uint32_t>("cvt.rzi.s16.f32 NaN", k_rzi_s16_f32, nan32v, {0, 0, 0});
  check_unary<uint32_t, uint32_t>("cvt.rzi.u8.f32 NaN", k_rzi_u8_f32, nan32v, {0, 0, 0});
  check_unary<uint32_t, uint16_t>("cvt.rni.s32.f16 NaN", k_rni_s32_f16, {0x7e00, 0xfe00}, {0, 0});
  // Rule 2: a 64-bit destination, or an .f64 source.
  check_unary<uint64_t, uint32_t>("cvt.rzi.s64.f32 NaN", k_rzi_s64_f32, nan32v, {1ull << 63, 1ull << 63, 1ull << 63});
  check_unary<uint64_t, uint32_t>("cvt.rzi.u64.f32 NaN", k_rzi_u64_f32, nan32v, {1ull << 63, 1ull << 63, 1ull << 63});
  check_unary<uint32_t, uint64_t>("cvt.rzi.s32.f64 NaN", k_rzi_s32_f64, {dNaN}, {0x80000000u});
  check_unary<uint32_t, uint64_t>("cvt.rzi.u32.f64 NaN", k_rzi_u32_f64, {dNaN}, {0x80000000u});
  check_unary<uint16_t, uint64_t>("cvt.rzi.s16.f64 NaN", k_rzi_s16_f64, {dNaN}, {0x8000});
  check_unary<uint64_t, uint64_t>("cvt.rzi.s64.f64 NaN", k_rzi_s64_f64, {dNaN}, {1ull << 63});
}

// Integer-to-integer: truncation to the low bits without .sat; .sat limits to MININT..MAXINT
// of the destination. A source register wider than the type uses its low bits; a wider
// destination register is sign-extended (signed) or zero-extended (unsigned).
TEST_CASE("integer <-> integer: truncation, .sat, extension") {
  ISA_REQUIRE_DEVICE();
  check_unary<uint32_t, uint32_t>("cvt.s8.s32", k_s8_s32, {300, 200, u32(-1), 127}, {44, 0xffffffc8u, 0xffffffffu, 127});
  check_unary<uint32_t, uint32_t>("cvt.sat.s8.s32", k_sat_s8_s32, {300, u32(-300), 5}, {127, 0xffffff80u, 5});
  check_unary<uint32_t, uint32_t>("cvt.sat.u8.s32", k_sat_u8_s32, {u32(-5), 300, 200}, {0, 255, 200});
  check_unary<uint32_t, uint32_t>("cvt.s32.s8", k_s32_s8, {0x12345680u, 0x7fu}, {0xffffff80u, 0x7fu});
  check_unary<uint32_t, uint32_t>("cvt.u32.u8", k_u32_u8, {0x12345680u}, {0x80u});
  check_unary<uint32_t, uint32_t>("cvt.sat.u32.s32", k_sat_u32_s32, {u32(-1), 7}, {0, 7});
  check_unary<uint32_t, uint32_t>("cvt.sat.s32.u32", k_sat_s32_u32, {0xffffffffu, 7}, {0x7fffffffu, 7});
  check_unary<uint16_t, uint32_t>("cvt.u16.s32", k_u16_s32, {u32(-1), 0x12345u}, {0xffff, 0x2345});
  check_unary<uint64_t, uint32_t>("cvt.s64.s32", k_s64_s32, {u32(-1), 5}, {~0ull, 5});
  check_unary<uint64_t, uint32_t>("cvt.u64.u32", k_u64_u32, {0xffffffffu}, {0xffffffffull});
  check_unary<uint32_t, uint64_t>("cvt.s32.s64", k_s32_s64, {0x100000005ull, u64(-2)}, {5, u32(-2)});
  check_unary<uint32_t, uint64_t>("cvt.sat.s32.s64", k_sat_s32_s64, {1ull << 40, u64(-(1ll << 40)), u64(-7)}, {0x7fffffffu, 0x80000000u, u32(-7)});
  check_unary<uint64_t, uint16_t>("cvt.s64.s16", k_s64_s16, {0x8000, 0x7fff}, {0xffffffffffff8000ull, 0x7fff});
}

// Floating-point rounding for integer-to-float: 2^24 + 1 and 2^24 + 3 are ties between
// neighbours 2 apart (nearest-even picks 2^24 and 2^24 + 4); 2^32 - 1 is not representable.
TEST_CASE("integer -> float with .rn .rz .rm .rp") {
  ISA_REQUIRE_DEVICE();
  const std::vector<uint32_t> in = {16777217u, 16777219u, u32(-16777217), 7};
  check_unary<uint32_t, uint32_t>("cvt.rn.f32.s32", k_rn_f32_s32, in, {0x4b800000u, 0x4b800002u, 0xcb800000u, 0x40e00000u});
  check_unary<uint32_t, uint32_t>("cvt.rz.f32.s32", k_rz_f32_s32, in, {0x4b800000u, 0x4b800001u, 0xcb800000u, 0x40e00000u});
  check_unary<uint32_t, uint32_t>("cvt.rm.f32.s32", k_rm_f32_s32, in, {0x4b800000u, 0x4b800001u, 0xcb800001u, 0x40e00000u});
  check_unary<uint32_t, uint32_t>("cvt.rp.f32.s32", k_rp_f32_s32, in, {0x4b800001u, 0x4b800002u, 0xcb800000u, 0x40e00000u});
  check_unary<uint32_t, uint32_t>("cvt.rn.f32.u32", k_rn_f32_u32, {0xffffffffu, 0x80000000u}, {0x4f800000u, 0x4f000000u});
  check_unary<uint32_t, uint32_t>("cvt.rz.f32.u32", k_rz_f32_u32, {0xffffffffu}, {0x4f7fffffu});
  check_unary<uint64_t, uint64_t>("cvt.rn.f64.s64", k_rn_f64_s64, {(1ull << 53) + 1, u64(-1)}, {0x4340000000000000ull, 0xbff0000000000000ull});
  check_unary<uint64_t, uint64_t>("cvt.rp.f64.s64", k_rp_f64_s64, {(1ull << 53) + 1}, {0x4340000000000001ull});
  check_unary<uint64_t, uint32_t>("cvt.rn.f64.u32", k_rn_f64_u32, {0xffffffffu}, {0x41efffffffe00000ull});
  // f16: 2049 is a tie between 2048 and 2050; 70000 overflows (rn -> inf, rz -> 65504).
  check_unary<uint16_t, uint32_t>("cvt.rn.f16.s32", k_rn_f16_s32, {2049, u32(-3)}, {0x6800, 0xc200});
  check_unary<uint16_t, uint32_t>("cvt.rp.f16.s32", k_rp_f16_s32, {2049}, {0x6801});
  check_unary<uint16_t, uint32_t>("cvt.rn.f16.u32", k_rn_f16_u32, {70000}, {0x7c00});
  check_unary<uint16_t, uint32_t>("cvt.rz.f16.u32", k_rz_f16_u32, {70000}, {0x7bff});
}

// f64 -> f32: rounding of 1/3, overflow (IEEE: rn/away-direction -> inf, others -> max finite),
// subnormal results and .ftz ("flush single-precision subnormal inputs and results").
TEST_CASE("f64 -> f32 rounding, overflow, subnormal, .ftz; f32 -> f64 exact") {
  ISA_REQUIRE_DEVICE();
  const auto in = std::vector<uint64_t>{0x3fd5555555555555ull /*1/3*/, isa::bits(1e300), isa::bits(-1e300), isa::bits(1e-40)};
  check_unary<uint32_t, uint64_t>("cvt.rn.f32.f64", k_rn_f32_f64, in, {0x3eaaaaabu, kInf, kNegInf, 0x000116c2u});
  check_unary<uint32_t, uint64_t>("cvt.rz.f32.f64", k_rz_f32_f64, in, {0x3eaaaaaau, 0x7f7fffffu, 0xff7fffffu, 0x000116c2u});
  check_unary<uint32_t, uint64_t>("cvt.rm.f32.f64", k_rm_f32_f64, in, {0x3eaaaaaau, 0x7f7fffffu, kNegInf, 0x000116c2u});
  check_unary<uint32_t, uint64_t>("cvt.rp.f32.f64", k_rp_f32_f64, in, {0x3eaaaaabu, kInf, 0xff7fffffu, 0x000116c3u});
  check_unary<uint32_t, uint64_t>("cvt.rn.ftz.f32.f64", k_rn_ftz_f32_f64, {isa::bits(1e-40), isa::bits(-1e-40), 0x3ff0000000000000ull},
                                  {0, 0x80000000u, 0x3f800000u});
  // f32 -> f64 is exact (no rounding modifier): 2^-140 (subnormal in f32) is normal in f64.
  check_unary<uint64_t, uint32_t>("cvt.f64.f32", k_f64_f32, {0x3eaaaaabu, 0x00000200u, 0x80000000u, kNegInf},
                                  {0x3fd5555560000000ull, 0x3730000000000000ull, 0x8000000000000000ull, 0xfff0000000000000ull});
  check_unary<uint64_t, uint32_t>("cvt.ftz.f64.f32", k_ftz_f64_f32, {0x00000200u, 0x80000200u}, {0, 0x8000000000000000ull});
  check_nan<uint32_t, uint64_t>("cvt.rn.f32.f64 NaN", k_rn_f32_f64, {dNaN}, nan32);
  check_nan<uint64_t, uint32_t>("cvt.f64.f32 NaN", k_f64_f32, {kNaN}, nan64);
}

// f32 -> f16: 1 + 2^-11 is a tie between 1 and 1 + 2^-10 (nearest-even: 1); 1 + 3*2^-11 a tie
// going up to 1 + 2^-9. 65520 is the midpoint between 65504 (max) and 2^16: rn -> inf.
// 2^-25 is half the smallest subnormal (ties to 0); 3*2^-26 rounds up to it.
TEST_CASE("f32 -> f16: ties-to-even, overflow, subnormals, .rz .rm .rp, .relu, .satfinite") {
  ISA_REQUIRE_DEVICE();
  const std::vector<uint32_t> in = {0x3f801000u, 0x3f803000u, 0xbf801000u, 0x477fef00u /*65519*/, 0x477ff000u /*65520*/,
                                    0x49742400u /*1e6*/, 0x33000000u /*2^-25*/, 0x33400000u /*3*2^-26*/, 0x33800000u /*2^-24*/,
                                    kInf, 0x80000000u, 0x3f800000u};
  check_unary<uint16_t, uint32_t>("cvt.rn.f16.f32", k_rn_f16_f32, in,
                                  {0x3c00, 0x3c02, 0xbc00, 0x7bff, 0x7c00, 0x7c00, 0x0000, 0x0001, 0x0001, 0x7c00, 0x8000, 0x3c00});
  check_unary<uint16_t, uint32_t>("cvt.rz.f16.f32", k_rz_f16_f32, in,
                                  {0x3c00, 0x3c01, 0xbc00, 0x7bff, 0x7bff, 0x7bff, 0x0000, 0x0000, 0x0001, 0x7c00, 0x8000, 0x3c00});
  check_unary<uint16_t, uint32_t>("cvt.rm.f16.f32", k_rm_f16_f32, in,
                                  {0x3c00, 0x3c01, 0xbc01, 0x7bff, 0x7bff, 0x7bff, 0x0000, 0x0000, 0x0001, 0x7c00, 0x8000, 0x3c00});
  check_unary<uint16_t, uint32_t>("cvt.rp.f16.f32", k_rp_f16_f32, in,
                                  {0x3c01, 0x3c02, 0xbc00, 0x7c00, 0x7c00, 0x7c00, 0x0001, 0x0001, 0x0001, 0x7c00, 0x8000, 0x3c00});
  // .relu: "clamps the result to 0 if negative"; .satfinite: |x| > MAX_NORM -> sign-preserved MAX_NORM.
  check_unary<uint16_t, uint32_t>("cvt.rn.relu.f16.f32", k_rn_relu_f16_f32, {0xbf800000u, 0x3f800000u}, {0x0000, 0x3c00});
  check_unary<uint16_t, uint32_t>("cvt.rn.satfinite.f16.f32", k_rn_satfinite_f16_f32, {0x49742400u, 0xc9742400u, kInf, kNegInf, 0x3f800000u},
                                  {0x7bff, 0xfbff, 0x7bff, 0xfbff, 0x3c00});
  check_nan<uint16_t, uint32_t>("cvt.rn.f16.f32 NaN", k_rn_f16_f32, {kNaN, 0xffc00001u}, nan16);
  check_nan<uint16_t, uint32_t>("cvt.rn.relu.f16.f32 NaN", k_rn_relu_f16_f32, {kNaN}, nan16);
  check_nan<uint16_t, uint32_t>("cvt.rn.satfinite.f16.f32 NaN", k_rn_satfinite_f16_f32, {kNaN}, nan16);
}

// f32 -> bf16 (8 significand bits): 1 + 2^-8 ties to 1, 1 + 3*2^-8 ties up to 1 + 2^-6;
// FLT_MAX is above the midpoint between the largest bf16 (0x7f7f) and 2^128: rn -> inf.
TEST_CASE("f32 -> bf16: ties-to-even, overflow, .rz, .relu, NaN") {
  ISA_REQUIRE_DEVICE();
  const std::vector<uint32_t> in = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x7f7fffffu, 0x3dcccccdu /*0.1f*/, 0x00010000u, kNegInf};
  check_unary<uint16_t, uint32_t>("cvt.rn.bf16.f32", k_rn_bf16_f32, in, {0x3f80, 0x3f82, 0xbf80, 0x7f80, 0x3dcd, 0x0001, 0xff80});
  check_unary<uint16_t, uint32_t>("cvt.rz.bf16.f32", k_rz_bf16_f32, in, {0x3f80, 0x3f81, 0xbf80, 0x7f7f, 0x3dcc, 0x0001, 0xff80});
  check_unary<uint16_t, uint32_t>("cvt.rn.relu.bf16.f32", k_rn_relu_bf16_f32, {0xbf800000u, 0x40490fdbu /*pi*/}, {0x0000, 0x4049});
  check_nan<uint16_t, uint32_t>("cvt.rn.bf16.f32 NaN", k_rn_bf16_f32, {kNaN, 0xff800001u}, nanbf16);
  // .satfinite: "If the absolute value of input (ignoring sign) is greater than MAX_NORM of the
  // specified destination format, then the result is sign-preserved MAX_NORM" (±inf included:
  // 0x7f7f / 0xff7f); "if the input value is NaN, then the result is NaN".
  check_unary<uint16_t, uint32_t>("cvt.rn.satfinite.bf16.f32", k_rn_satfinite_bf16_f32,
                                  {kInf, kNegInf, 0x7f7fffffu /*FLT_MAX*/, 0x3f808000u, 0x80000000u /*-0*/},
                                  {0x7f7f, 0xff7f, 0x7f7f, 0x3f80, 0x8000});
  check_nan<uint16_t, uint32_t>("cvt.rn.satfinite.bf16.f32 NaN", k_rn_satfinite_bf16_f32, {kNaN}, nanbf16);
}

// Description: "the value converted from input a is stored in the upper half of d and the value
// converted from input b is stored in the lower half of d"; Semantics d[31:16] = convert(a).
TEST_CASE("cvt.rn.f16x2.f32 / cvt.{rn,rz}.bf16x2.f32: a -> upper half, b -> lower half") {
  ISA_REQUIRE_DEVICE();
  const std::vector<uint32_t> a = {0x3f800000u /*1*/, 0x3f818000u}, b = {0xc0000000u /*-2*/, 0x3f803000u};
  buffer<uint32_t> da(a), db(b), dd(3 * a.size());
  k_packed<<<1, unsigned(a.size())>>>(da.get(), db.get(), dd.get(), int(a.size()));
  ISA_SYNC();
  const auto d = dd.host();
  CHECK(d[0] == 0x3c00c000u);  // f16x2 {1, -2}
  CHECK(d[1] == 0x3f80c000u);  // bf16x2 {1, -2}
  CHECK(d[2] == 0x3f80c000u);
  // Second pair: a = 1 + 3*2^-8 (bf16 tie -> 0x3f82, rz 0x3f81; f16 exact 0x3c0c),
  //              b = 1 + 3*2^-11 (f16 tie -> 0x3c02; bf16 -> 0x3f80 both modes).
  CHECK(d[3] == 0x3c0c3c02u);
  CHECK(d[4] == 0x3f823f80u);
  CHECK(d[5] == 0x3f813f80u);
}

// Widening conversions are exact: f16 / bf16 -> f32 / f64.
TEST_CASE("cvt.f32.f16, cvt.f32.bf16, cvt.f64.f16: exact, incl. subnormals and infinities") {
  ISA_REQUIRE_DEVICE();
  check_unary<uint32_t, uint16_t>("cvt.f32.f16", k_f32_f16, {0x3c00, 0x0001, 0x7c00, 0xfc00, 0x8000, 0x7bff, 0x3555, 0x03ff},
                                  {0x3f800000u, 0x33800000u, kInf, kNegInf, 0x80000000u, 0x477fe000u, 0x3eaaa000u, 0x387fc000u});
  check_unary<uint32_t, uint16_t>("cvt.f32.bf16", k_f32_bf16, {0x3f80, 0x0001, 0xff80, 0x8000, 0x4049},
                                  {0x3f800000u, 0x00010000u, kNegInf, 0x80000000u, 0x40490000u});
  check_unary<uint64_t, uint16_t>("cvt.f64.f16", k_f64_f16, {0x3c00, 0x0001}, {0x3ff0000000000000ull, 0x3e70000000000000ull});
  check_nan<uint32_t, uint16_t>("cvt.f32.f16 NaN", k_f32_f16, {0x7e00, 0x7c01}, nan32);
  // "For cvt.f32.bf16, NaN input yields unspecified NaN."
  check_nan<uint32_t, uint16_t>("cvt.f32.bf16 NaN", k_f32_bf16, {0x7fc0, 0xff81}, nan32);
}

// Float-to-float with integer rounding: "The result is an integral value, stored in
// floating-point format"; signs of zero results follow the rounding direction.
// .sat on a float destination: "limits the result to the range [0.0, 1.0]. NaN results are
// flushed to positive zero."
TEST_CASE("cvt.{rni,rzi,rmi,rpi}.f32.f32 / .f64.f64, cvt.sat.f32.f32, cvt.rna.tf32.f32") {
  ISA_REQUIRE_DEVICE();
  const auto in = f32s({2.5f, -2.5f, 3.5f, -0.5f, -0.7f, 1e20f, 0.49999997f});
  check_unary<uint32_t, uint32_t>("cvt.rni.f32.f32", k_rni_f32_f32, in,
                                  {0x40000000u, 0xc0000000u, 0x40800000u, 0x80000000u, 0xbf800000u, isa::bits(1e20f), 0});
  check_unary<uint32_t, uint32_t>("cvt.rzi.f32.f32", k_rzi_f32_f32, in,
                                  {0x40000000u, 0xc0000000u, 0x40400000u, 0x80000000u, 0x80000000u, isa::bits(1e20f), 0});
  check_unary<uint32_t, uint32_t>("cvt.rmi.f32.f32", k_rmi_f32_f32, in,
                                  {0x40000000u, 0xc0400000u, 0x40400000u, 0xbf800000u, 0xbf800000u, isa::bits(1e20f), 0});
  check_unary<uint32_t, uint32_t>("cvt.rpi.f32.f32", k_rpi_f32_f32, in,
                                  {0x40400000u, 0xc0000000u, 0x40800000u, 0x80000000u, 0x80000000u, isa::bits(1e20f), 0x3f800000u});
  check_unary<uint64_t, uint64_t>("cvt.rni.f64.f64", k_rni_f64_f64, f64s({0.5, 1.5, -1.5, 4503599627370497.0}),
                                  {0, isa::bits(2.0), isa::bits(-2.0), isa::bits(4503599627370497.0)});
  check_unary<uint64_t, uint64_t>("cvt.rmi.f64.f64", k_rmi_f64_f64, f64s({-0.25, 0.75}), {isa::bits(-1.0), 0});
  check_unary<uint32_t, uint32_t>("cvt.sat.f32.f32", k_sat_f32_f32, f32s({1.5f, -0.5f, 0.25f, INFINITY}), {0x3f800000u, 0, 0x3e800000u, 0x3f800000u});
  check_unary<uint32_t, uint32_t>("cvt.sat.f32.f32 NaN", k_sat_f32_f32, {kNaN}, {0});
  check_nan<uint32_t, uint32_t>("cvt.rni.f32.f32 NaN", k_rni_f32_f32, {kNaN}, nan32);
  // tf32 keeps 10 significand bits: 1 + 2^-11 is a tie, .rna rounds away from zero to
  // 1 + 2^-10; 1 + 2^-12 rounds to 1. Only the 19 tf32 bits are compared.
  {
    buffer<uint32_t> da(std::vector<uint32_t>{0x3f801000u, 0x3f800800u, 0xbf801000u}), dd(3);
    k_rna_tf32_f32<<<1, 3>>>(da.get(), dd.get(), 3);
    ISA_SYNC();
    const auto d = dd.host();
    CHECK((d[0] & 0xffffe000u) == 0x3f802000u);
    CHECK((d[1] & 0xffffe000u) == 0x3f800000u);
    CHECK((d[2] & 0xffffe000u) == 0xbf802000u);
  }
}


// fp8: "When converting two .f32 inputs to .e4m3x2/.e5m2x2, ... the value converted from input a is
// stored in the upper 8 bits of d and the value converted from input b is stored in the lower 8 bits
// of d"; ".satfinite modifier is required"; with it "If the absolute value of input (ignoring sign) is
// greater than MAX_NORM of the specified destination format, then the result is sign-preserved
// MAX_NORM" and NaN stays NaN; .relu "clamps the result to 0 if negative".
// e4m3 (bias 7): no infinity, S.1111.111 the only NaN, MAX_NORM S.1111.110 = 448 = 0x7e; 256 is
// S.1111.000 = 0x78; subnormals k·2^-9 (k = 1..7), the smallest normal 2^-6 = 0x08.
TEST_CASE("cvt.rn.satfinite{.relu}.e4m3x2.f32: byte order, ties to even, MAX_NORM and overflow, inf, NaN, subnormals") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_FP8();
  using isa::bits;
  check_fp8x2("cvt.rn.satfinite.e4m3x2.f32", k_e4m3x2_f32, "e4m3",
              {{bits(1.0f), bits(-2.0f), 0x38, 0xc0},      // a -> bits 15:8, b -> bits 7:0
               {bits(-2.0f), bits(1.0f), 0xc0, 0x38},
               {bits(1.0625f), bits(1.1875f), 0x38, 0x3a},  // ties between 1, 1.125, 1.25: to the even 1, 1.25
               {bits(1.9375f), bits(0x1.10001p0f), 0x40, 0x39},  // tie 1.875|2 up into the next binade; above a tie
               {bits(448.0f), bits(-448.0f), 0x7e, 0xfe},   // ±MAX_NORM
               {bits(240.0f), bits(416.0f), 0x77, 0x7d},    // 1.875·2^7; 1.625·2^8 (exponent field 1111)
               {bits(256.0f), bits(0x1p-6f), 0x78, 0x08},   // 2^8 (S.1111.000 is a number); the smallest normal
               {bits(464.0f), bits(1e6f), 0x7e, 0x7e},      // 464: tie 448|480, even 448; beyond: MAX_NORM
               {bits(480.0f), bits(-1e6f), 0x7e, 0xfe},
               {kInf, kNegInf, 0x7e, 0xfe},                 // ±inf -> ±MAX_NORM
               {kNaN, bits(1.0f), any_nan, 0x38},
               {bits(1.0f), 0xffc00000u, 0x38, any_nan},
               {bits(0x1p-9f), bits(0x7p-9f), 0x01, 0x07},   // the smallest and the largest subnormal
               {bits(0x1p-10f), bits(0x3p-11f), 0x00, 0x01}, // half the smallest: tie to 0; 0.75·2^-9 up to it
               {bits(0x3p-10f), bits(0xfp-10f), 0x02, 0x08}, // 1.5·2^-9: tie to 2·2^-9; 7.5·2^-9: tie up to 2^-6
               {0x80000000u, bits(-0x1p-11f), 0x80, 0x80},  // -0; a negative underflow keeps its sign
               {0x00000001u, 0x80000001u, 0x00, 0x80}});    // f32 subnormals round to ±0
  check_fp8x2("cvt.rn.satfinite.relu.e4m3x2.f32", k_relu_e4m3x2_f32, "e4m3",
              {{bits(-1.0f), bits(1.0f), 0x00, 0x38},
               {kNegInf, kInf, 0x00, 0x7e},
               {kNaN, bits(-1e6f), any_nan, 0x00},
               {bits(-0x1p-9f), bits(0x1p-9f), 0x00, 0x01}});
}

// e5m2 (bias 15): IEEE-like, infinity S.11111.00, MAX_NORM S.11110.11 = 57344 = 0x7b (the midpoint
// to 2^16 is 61440); subnormals k·2^-16 (k = 1..3), the smallest normal 2^-14 = 0x04.
TEST_CASE("cvt.rn.satfinite{.relu}.e5m2x2.f32: byte order, ties to even, MAX_NORM and overflow, inf, NaN, subnormals") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_FP8();
  using isa::bits;
  check_fp8x2("cvt.rn.satfinite.e5m2x2.f32", k_e5m2x2_f32, "e5m2",
              {{bits(1.0f), bits(-2.0f), 0x3c, 0xc0},
               {bits(-2.0f), bits(1.0f), 0xc0, 0x3c},
               {bits(1.125f), bits(1.375f), 0x3c, 0x3e},   // ties 1|1.25 and 1.25|1.5: to the even 1, 1.5
               {bits(1.875f), bits(0x1.20001p0f), 0x40, 0x3d},  // tie 1.75|2 up into the next binade; above a tie
               {bits(57344.0f), bits(-57344.0f), 0x7b, 0xfb},
               {bits(61440.0f), bits(60000.0f), 0x7b, 0x7b},  // the midpoint rounds to 2^16 (inf): MAX_NORM; below it
               {bits(1e6f), bits(-65536.0f), 0x7b, 0xfb},
               {kInf, kNegInf, 0x7b, 0xfb},
               {kNaN, bits(3.0f), any_nan, 0x42},
               {bits(0x1p-16f), bits(0x3p-16f), 0x01, 0x03},   // the smallest and the largest subnormal
               {bits(0x1p-17f), bits(0x3p-18f), 0x00, 0x01},   // half the smallest: tie to 0; 0.75·2^-16 up to it
               {bits(0x3p-17f), bits(0x7p-17f), 0x02, 0x04},   // 1.5·2^-16: tie to 2·2^-16; 3.5·2^-16: tie up to 2^-14
               {0x80000000u, bits(0x1p-14f), 0x80, 0x04}});
  check_fp8x2("cvt.rn.satfinite.relu.e5m2x2.f32", k_relu_e5m2x2_f32, "e5m2",
              {{bits(-57344.0f), bits(3.0f), 0x00, 0x42},
               {kNaN, bits(-0.5f), any_nan, 0x00},
               {kNegInf, kInf, 0x00, 0x7b}});
}

// "When converting an .f16x2 input to .e4m3x2/.e5m2x2, ... the value converted from the upper 16
// bits of input a is stored in the upper 8 bits of d". e5m2 is the upper byte of an f16, rounded.
TEST_CASE("cvt.rn.satfinite{.relu}.{e4m3x2,e5m2x2}.f16x2: upper half to the upper byte, rounding, saturation") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_FP8();
  check_fp8x2("cvt.rn.satfinite.e4m3x2.f16x2", k_e4m3x2_f16x2, "e4m3",
              {{0x3c00c000u, 0, 0x38, 0xc0},  // {1, -2}
               {0xc0003c00u, 0, 0xc0, 0x38},
               {0x3c403cc0u, 0, 0x38, 0x3a},  // {1.0625, 1.1875}: ties to even
               {0x5f007bffu, 0, 0x7e, 0x7e},  // {448, 65504}
               {0x5f408000u, 0, 0x7e, 0x80},  // {464 (tie to 448), -0}
               {0x7c00fc00u, 0, 0x7e, 0xfe},  // {inf, -inf}
               {0x18001400u, 0, 0x01, 0x00},  // {2^-9, 2^-10 (tie to 0)}
               {0x00011a00u, 0, 0x00, 0x02},  // {2^-24, 1.5·2^-9 (tie to 2·2^-9)}
               {0x7e003c00u, 0, any_nan, 0x38}});
  check_fp8x2("cvt.rn.satfinite.relu.e4m3x2.f16x2", k_relu_e4m3x2_f16x2, "e4m3",
              {{0xbc003c00u, 0, 0x00, 0x38}, {0xfc007e00u, 0, 0x00, any_nan}});
  check_fp8x2("cvt.rn.satfinite.e5m2x2.f16x2", k_e5m2x2_f16x2, "e5m2",
              {{0x3c00c000u, 0, 0x3c, 0xc0},
               {0x3c803d80u, 0, 0x3c, 0x3e},  // {1.125, 1.375}: ties to even
               {0x3f803c81u, 0, 0x40, 0x3d},  // {1.875 (tie up to 2), just above 1.125}
               {0x7b007bffu, 0, 0x7b, 0x7b},  // {57344, 65504 (beyond the midpoint 61440)}
               {0x7c00fc00u, 0, 0x7b, 0xfb},
               {0x01000080u, 0, 0x01, 0x00},  // {2^-16, 2^-17 (tie to 0)}
               {0x01800380u, 0, 0x02, 0x04},  // {1.5·2^-16, 3.5·2^-16}: ties to even
               {0x7e008000u, 0, any_nan, 0x80}});
  check_fp8x2("cvt.rn.satfinite.relu.e5m2x2.f16x2", k_relu_e5m2x2_f16x2, "e5m2",
              {{0xbc004200u, 0, 0x00, 0x42}, {0x7e00fc00u, 0, any_nan, 0x00}});
}

// "cvt.rn{.relu}.f16x2.f8x2type d, a": every e4m3 and e5m2 value is an f16 value, so the conversion
// is exact; a's upper byte goes to d's upper half (as for the other packed forms). e4m3's exponent
// field 1111 holds numbers (256 = 0x78), e5m2's holds ±inf and NaNs.
TEST_CASE("cvt.rn{.relu}.f16x2.{e4m3x2,e5m2x2}: exact, upper byte to the upper half, inf, NaN") {
  ISA_REQUIRE_DEVICE();
  ISA_REQUIRE_FP8();
  check_fp8x2("cvt.rn.f16x2.e4m3x2", k_f16x2_e4m3x2, "f16",
              {{0x38c0u, 0, 0x3c00, 0xc000},   // {1, -2}
               {0xc038u, 0, 0xc000, 0x3c00},
               {0x7e01u, 0, 0x5f00, 0x1800},   // {448, 2^-9}
               {0x0778u, 0, 0x2300, 0x5c00},   // {7·2^-9, 256}
               {0x7d77u, 0, 0x5e80, 0x5b80},   // {416, 240}
               {0x8008u, 0, 0x8000, 0x2400},   // {-0, 2^-6}
               {0x7f3fu, 0, any_nan, 0x3f80},  // {NaN, 1.875}
               {0x38ffu, 0, 0x3c00, any_nan}});
  check_fp8x2("cvt.rn.relu.f16x2.e4m3x2", k_relu_f16x2_e4m3x2, "f16",
              {{0xc038u, 0, 0x0000, 0x3c00}, {0x81ffu, 0, 0x0000, any_nan}});
  check_fp8x2("cvt.rn.f16x2.e5m2x2", k_f16x2_e5m2x2, "f16",
              {{0x3cc0u, 0, 0x3c00, 0xc000},
               {0x7b01u, 0, 0x7b00, 0x0100},   // {57344, 2^-16}
               {0x7cfcu, 0, 0x7c00, 0xfc00},   // {inf, -inf}
               {0x8003u, 0, 0x8000, 0x0300},   // {-0, 3·2^-16}
               {0x7d3cu, 0, any_nan, 0x3c00},
               {0x3cffu, 0, 0x3c00, any_nan}});
  check_fp8x2("cvt.rn.relu.f16x2.e5m2x2", k_relu_f16x2_e5m2x2, "f16",
              {{0xfc42u, 0, 0x0000, 0x4200}, {0xbc7fu, 0, 0x0000, any_nan}});
}

}  // TEST_SUITE
