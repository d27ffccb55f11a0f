// Calls of device functions (PTX ISA 9.7.12.5 "call", 9.7.12.6 "ret", chapter 7 "Abstracting the
// ABI") and the CUDA runtime's device printf (CUDA Programming Guide, "Formatted Output"):
//   - __noinline__ functions called with call.uni: scalar, struct and array arguments by value
//     (.param .b8 arrays), struct return values, no return value, recursion;
//   - "Arguments may be registers, immediate constants, or variables in .param space" (call):
//     a call written in PTX with a register and an immediate argument and a register result;
//   - local memory across frames: each activation of a recursive function has its own local
//     array, and a callee writes its caller's array through the generic pointer it receives;
//   - printf: the conversions %d %i %u %x %X %o %ld %lld %lu %llu %f %e %E %g %G %a %s %c %p %%
//     with flags, width (digits or '*'), precision and size, whose "final formatting ... takes
//     place on the host system": the expected text is the host's snprintf of the same format
//     and arguments; each call's text whole and in order per thread; nothing written before
//     the synchronisation that flushes the buffer; the return value, "the number of arguments
//     parsed"; at most 32 arguments, a conversion beyond them "output as-is".
// A failing device assert (__assertfail) ends its context, so it is checked by a fixture
// (../fixtures/assert_failure.cu), as are unbounded recursion (stack_overflow.cu) and the
// indirect calls the emulator refuses (unsupported_indirect_call.cu).
#include "isa_test.cuh"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

// Called from PTX by name below (so not mangled, and outside the anonymous namespace).
extern "C" __device__ __noinline__ uint32_t isa_twice_plus_one(uint32_t n) { return 2 * n + 1; }

namespace {

using isa::buffer;

// ---- the .param ABI ------------------------------------------------------------------------

__host__ __device__ __noinline__ uint32_t fib(uint32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

struct triple {  // .param .align 8 .b8 [16]
  int32_t a;
  float b;
  double c;
};
struct row {  // .param .align 4 .b8 [36]
  uint32_t v[9];
};

__device__ __noinline__ triple make_triple(int32_t a, float b) { return {a, b, 2.0 * a}; }

__device__ __noinline__ row reversed_times_three(row r) {
  row o;
  for (int i = 0; i < 9; ++i) o.v[i] = 3 * r.v[8 - i];
  return o;
}

__device__ __noinline__ double weigh(triple t, row r, const uint32_t* scale) {
  uint32_t s = 0;
  for (int i = 0; i < 9; ++i) s += r.v[i] * scale[i];
  return t.a + t.b + t.c + s;
}

__device__ __noinline__ void store_pair(uint32_t* to, uint32_t a, uint64_t b) {
  to[0] = a;
  to[1] = static_cast<uint32_t>(b >> 32) + static_cast<uint32_t>(b);
}

// out[8t + k]
__global__ void k_calls(const uint32_t* scale, uint32_t* out) {
  const uint32_t t = threadIdx.x;
  uint32_t* o = out + 8 * t;
  o[0] = fib(t % 16);
  const triple tr = make_triple(int32_t(t) - 5, 0.5f * t);
  row r;
  for (uint32_t i = 0; i < 9; ++i) r.v[i] = 16 * t + i;
  const row rv = reversed_times_three(r);
  o[1] = static_cast<uint32_t>(tr.a);
  o[2] = static_cast<uint32_t>(static_cast<int32_t>(tr.c));
  o[3] = rv.v[0];
  o[4] = rv.v[8];
  o[5] = static_cast<uint32_t>(weigh(tr, r, scale));
  store_pair(o + 6, 7 * t, uint64_t(t) << 32 | 5);
}

// A call as PTX writes it with a .param argument, a register argument and an immediate one, and
// a register result. out[4t + k]
__global__ void k_call_operands(uint32_t* out) {
  uint32_t by_param, by_register, by_immediate;
  asm volatile(
      "{\n\t.param .b32 a;\n\t.param .b32 r;\n\t"
      "st.param.b32 [a], %1;\n\t"
      "call.uni (r), isa_twice_plus_one, (a);\n\t"
      "ld.param.b32 %0, [r];\n\t}"
      : "=r"(by_param)
      : "r"(threadIdx.x));
  asm volatile("call.uni (%0), isa_twice_plus_one, (%1);" : "=r"(by_register) : "r"(threadIdx.x + 100));
  asm volatile("call.uni (%0), isa_twice_plus_one, (1000);" : "=r"(by_immediate));
  out[4 * threadIdx.x] = by_param;
  out[4 * threadIdx.x + 1] = by_register;
  out[4 * threadIdx.x + 2] = by_immediate;
  out[4 * threadIdx.x + 3] = isa_twice_plus_one(threadIdx.x + 7);
}

// ---- local memory across frames ------------------------------------------------------------

// Each activation keeps `mine` in its own frame while its callee runs; the callee adds to its
// caller's array (`parent`) through the generic pointer it receives.
__host__ __device__ __noinline__ uint32_t chain(uint32_t depth, uint32_t* parent) {
  uint32_t mine[3] = {depth, 10 * depth, 100 * depth};
  parent[depth % 3] += 1000 * (depth + 1);
  const uint32_t below = depth == 0 ? 0 : chain(depth - 1, mine);
  return below + mine[0] + mine[1] + mine[2];
}

// out[4t + k]: the chain's sum, then the kernel's own array after the calls.
__global__ void k_frames(uint32_t* out) {
  uint32_t top[3] = {1, 2, 3};
  out[4 * threadIdx.x] = chain(threadIdx.x % 12, top);
  for (int i = 0; i < 3; ++i) out[4 * threadIdx.x + 1 + i] = top[i];
}

// ---- printf --------------------------------------------------------------------------------

#define ISA_FIRST "[%d] first %i %u %x %X %o %ld %lld %lu %llu|%5d|%-5d|%05d|%+d|% d|%#x|%#o|%3c|\n"
#define ISA_FIRST_ARGS(t) \
  t, -(t), 4000000000u, 0xbeefu, 0xbeefu, 8u, -5000000000l, -6000000000ll, 7000000000ul, 18000000000000000000ull, \
      t, t, t, t, t, 255u, 8u, 'a' + (t)
constexpr int kFirstArguments = 18;
#define ISA_SECOND "[%d] second %f %.3f %e %.2E %g %G %10.4f %-10.1e|%a|%s|%.3s|%10s|%-6s|%c|%p|%%|%*d|%-*d|\n"
#define ISA_SECOND_ARGS(t, s, p) \
  t, 1.5, 2.0 / 3, 12345.678, 0.000123, 1e-5, 1e20, 3.14159265, -2.5, 0.75, s, s, "right", "left", 'x', p, 6, t, 4, t
constexpr int kSecondArguments = 20;

// Each thread prints two lines; out[2t + k] receives printf's return values.
__global__ void k_printf(const char* s, const void* p, int32_t* out) {
  const int t = int(blockIdx.x * blockDim.x + threadIdx.x);
  out[2 * t] = printf(ISA_FIRST, ISA_FIRST_ARGS(t));
  out[2 * t + 1] = printf(ISA_SECOND, ISA_SECOND_ARGS(t, s, p));
}

#define ISA_D4 "%d %d %d %d "
// 33 conversions and 33 arguments: the 33rd is beyond printf's 32.
__global__ void k_printf_limit(int32_t* out) {
  out[0] = printf(ISA_D4 ISA_D4 ISA_D4 ISA_D4 ISA_D4 ISA_D4 ISA_D4 ISA_D4 "%d|\n", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                  12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33);
  out[1] = printf("no arguments\n");
}

//! What `step` writes to standard output (file descriptor 1), through a temporary file.
template <class Step>
std::string stdout_of(Step step) {
  std::fflush(stdout);
  const int saved = dup(1);
  FILE* file = std::tmpfile();
  dup2(fileno(file), 1);
  step();
  std::fflush(stdout);
  dup2(saved, 1);
  close(saved);
  std::rewind(file);
  std::string text;
  char chunk[4096];
  for (size_t n; (n = std::fread(chunk, 1, sizeof chunk, file)) > 0;) text.append(chunk, n);
  std::fclose(file);
  return text;
}

//! The host C library's formatting, as printf's text must be.
template <class... Args>
std::string host_format(const char* format, Args... args) {
  std::vector<char> text(1024);
  std::snprintf(text.data(), text.size(), format, args...);
  return text.data();
}

}  // namespace

TEST_SUITE("emulator_isa_call") {

TEST_CASE("call.uni: recursion, scalar, struct and array arguments by value, struct results, no result") {
  ISA_REQUIRE_DEVICE();
  std::vector<uint32_t> scale(9);
  for (uint32_t i = 0; i < 9; ++i) scale[i] = i + 1;
  buffer<uint32_t> dscale(scale), out(8 * 32);
  k_calls<<<1, 32>>>(dscale.get(), out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t t = 0; t < 32; ++t) {
    const uint32_t* v = o.data() + 8 * t;
    const int32_t a = int32_t(t) - 5;
    uint32_t s = 0;
    for (uint32_t i = 0; i < 9; ++i) s += (16 * t + i) * (i + 1);
    CHECK_MESSAGE(v[0] == fib(t % 16), "thread ", t, ": fib");
    CHECK_MESSAGE(v[1] == uint32_t(a), "thread ", t, ": triple.a");
    CHECK_MESSAGE(v[2] == uint32_t(int32_t(2.0 * a)), "thread ", t, ": triple.c");
    CHECK_MESSAGE(v[3] == 3 * (16 * t + 8), "thread ", t, ": reversed row, first");
    CHECK_MESSAGE(v[4] == 3 * (16 * t), "thread ", t, ": reversed row, last");
    CHECK_MESSAGE(v[5] == uint32_t(a + 0.5 * t + 2.0 * a + s), "thread ", t, ": weigh");
    CHECK_MESSAGE(v[6] == 7 * t, "thread ", t, ": store_pair's first");
    CHECK_MESSAGE(v[7] == t + 5, "thread ", t, ": store_pair's second");
  }
}

TEST_CASE("call with a .param, a register and an immediate argument and a register result") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(4 * 32);
  k_call_operands<<<1, 32>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t t = 0; t < 32; ++t) {
    CHECK(o[4 * t] == 2 * t + 1);
    CHECK(o[4 * t + 1] == 2 * (t + 100) + 1);
    CHECK(o[4 * t + 2] == 2001u);
    CHECK(o[4 * t + 3] == 2 * (t + 7) + 1);
  }
}

TEST_CASE("recursive activations keep their own local arrays; a callee writes its caller's through a pointer") {
  ISA_REQUIRE_DEVICE();
  buffer<uint32_t> out(4 * 32);
  k_frames<<<1, 32>>>(out.get());
  ISA_SYNC();
  const auto o = out.host();
  for (uint32_t t = 0; t < 32; ++t) {
    uint32_t top[3] = {1, 2, 3};
    const uint32_t sum = chain(t % 12, top);  // the same C++ on the host
    CHECK_MESSAGE(o[4 * t] == sum, "thread ", t);
    for (int i = 0; i < 3; ++i) CHECK_MESSAGE(o[4 * t + 1 + i] == top[i], "thread ", t, " top[", i, "]");
  }
}

TEST_CASE("printf: conversions, flags, width, precision and size as the host formats them, in order per thread") {
  ISA_REQUIRE_DEVICE();
  const std::string s = "string-arg";
  buffer<char> ds(std::vector<char>(s.c_str(), s.c_str() + s.size() + 1));
  buffer<int32_t> out(2 * 8);
  const void* p = out.get();
  cudaError_t launched = cudaSuccess, synchronised = cudaSuccess;
  // "The output buffer ... is only flushed when" a launch starts, a synchronisation, a blocking copy
  // ...: nothing of this kernel's is written before the synchronisation.
  const std::string at_launch = stdout_of([&] {
    k_printf<<<2, 4>>>(ds.get(), p, out.get());
    launched = cudaGetLastError();
  });
  const std::string at_sync = stdout_of([&] { synchronised = cudaDeviceSynchronize(); });
  ISA_CUDA(launched);
  ISA_CUDA(synchronised);
  CHECK_MESSAGE(at_launch.empty(), "written before the synchronisation: ", at_launch);
  const auto returned = out.host();
  size_t expected_size = 0;
  for (int t = 0; t < 8; ++t) {
    const std::string first = host_format(ISA_FIRST, ISA_FIRST_ARGS(t));
    const std::string second = host_format(ISA_SECOND, ISA_SECOND_ARGS(t, s.c_str(), p));
    expected_size += first.size() + second.size();
    const size_t at_first = at_sync.find(first), at_second = at_sync.find(second);
    CHECK_MESSAGE(at_first != std::string::npos, "thread ", t, " wants ", first, "in:\n", at_sync);
    CHECK_MESSAGE(at_second != std::string::npos, "thread ", t, " wants ", second, "in:\n", at_sync);
    CHECK_MESSAGE(at_first < at_second, "thread ", t, ": its lines out of order");
    CHECK(returned[2 * t] == kFirstArguments);
    CHECK(returned[2 * t + 1] == kSecondArguments);
  }
  CHECK_MESSAGE(at_sync.size() == expected_size, "more than each thread's two lines:\n", at_sync);
}

TEST_CASE("printf: at most 32 arguments, a conversion beyond them output as-is; no arguments returns 0") {
  ISA_REQUIRE_DEVICE();
  buffer<int32_t> out(2);
  cudaError_t synchronised = cudaSuccess;
  const std::string text = stdout_of([&] {
    k_printf_limit<<<1, 1>>>(out.get());
    synchronised = cudaDeviceSynchronize();
  });
  ISA_CUDA(synchronised);
  std::string want;
  for (int i = 1; i <= 32; ++i) want += std::to_string(i) + " ";
  want += "%d|\nno arguments\n";
  CHECK_MESSAGE(text == want, "got:\n", text);
  const auto returned = out.host();
  CHECK(returned[0] == 32);
  CHECK(returned[1] == 0);
}

}  // TEST_SUITE
