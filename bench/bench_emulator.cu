// The emulator's own throughput (host time, not a GPU): host CPU nanoseconds per executed
// thread-instruction on synthetic kernels that each stress one part of it. A profiled run counts
// a kernel's thread-instructions (emu::profile); the timed runs are unprofiled (the profile takes
// the scheduler's slow path). Built with the tests' emulated runtime, from PTX alone, and run by
// hand; the model is BEAM_EMULATOR_DEVICE's (sm_80 unless set), racecheck on unless
// BEAM_EMULATOR_RACECHECK=0.
//
//   bench_emulator [--repeat N]     (N timed runs per kernel, the median reported; default 5)
//
// Prints a Markdown table: kernel, launch shape, thread-instructions, median host CPU seconds,
// ns per thread-instruction and millions of thread-instructions per second.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "profile.hpp"

namespace {

constexpr int iterations = 512;

// Converged lanes: four independent FMA chains per thread.
__global__ void converged_fma(float* out, float seed) {
  float a = seed + threadIdx.x, b = a * 0.5f, c = a * 0.25f, d = a * 0.125f;
  for (int i = 0; i < iterations; ++i) {
    a = fmaf(a, 0.999f, 0.5f);
    b = fmaf(b, 0.998f, 0.25f);
    c = fmaf(c, 0.997f, 0.125f);
    d = fmaf(d, 0.996f, 0.0625f);
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = a + b + c + d;
}

// Lanes that branch apart every iteration (even and odd lanes swap paths) and meet again.
__global__ void divergent_branches(float* out, float seed) {
  float a = seed + threadIdx.x;
  for (int i = 0; i < iterations; ++i) {
    if (((threadIdx.x + i) & 1) != 0) a = fmaf(a, 0.999f, 0.5f);
    else a = a * 0.75f + 1.0f;
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = a;
}

// Warp collectives: a butterfly sum per iteration.
__global__ void warp_shuffles(float* out, float seed) {
  float a = seed + threadIdx.x;
  for (int i = 0; i < iterations / 8; ++i)
    for (int offset = 16; offset > 0; offset /= 2) a += __shfl_xor_sync(0xffffffffu, a, offset) * 0.5f;
  out[blockIdx.x * blockDim.x + threadIdx.x] = a;
}

// Block barriers and shared memory (racecheck's work): a tree reduction, repeated.
__global__ void shared_reductions(float* out, float seed) {
  __shared__ float partial[256];
  float total = 0.0f;
  for (int round = 0; round < 8; ++round) {
    partial[threadIdx.x] = seed + float(threadIdx.x * (round + 1));
    __syncthreads();
    for (int stride = 128; stride > 0; stride /= 2) {
      if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
      __syncthreads();
    }
    total += partial[0];
    __syncthreads();
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = total;
}

// Many short blocks: the fixed cost of a block.
__global__ void short_blocks(float* out, float seed) { out[blockIdx.x * blockDim.x + threadIdx.x] = seed; }

struct workload {
  const char* name;
  void (*kernel)(float*, float);
  unsigned blocks, threads;
};

double cpu_seconds() { return double(std::clock()) / CLOCKS_PER_SEC; }

void require(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "bench_emulator: %s: %s\n", what, cudaGetErrorString(e));
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) repeat = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_emulator [--repeat N]\n");
      return 2;
    }
  }
  const workload workloads[] = {{"converged_fma", converged_fma, 16, 256},
                                {"divergent_branches", divergent_branches, 16, 256},
                                {"warp_shuffles", warp_shuffles, 16, 256},
                                {"shared_reductions", shared_reductions, 64, 256},
                                {"short_blocks", short_blocks, 4096, 256}};
  float* out = nullptr;
  require(cudaMalloc(&out, 4096 * 256 * sizeof(float)), "cudaMalloc");
  std::printf("| kernel | blocks × threads | thread-instructions | host CPU s (median of %d) | ns per thread-instruction | M thread-instructions/s |\n",
              repeat);
  std::printf("|---|---|---|---|---|---|\n");
  for (const workload& w : workloads) {
    emu::profile::start();
    w.kernel<<<w.blocks, w.threads>>>(out, 1.0f);
    require(cudaDeviceSynchronize(), w.name);
    uint64_t instructions = 0;
    for (const emu::profile::launch_record& r : emu::profile::stop())
      for (const uint64_t n : r.thread_instructions) instructions += n;
    std::vector<double> seconds;
    for (int i = 0; i < repeat; ++i) {
      const double begin = cpu_seconds();
      w.kernel<<<w.blocks, w.threads>>>(out, 1.0f + i);
      require(cudaDeviceSynchronize(), w.name);
      seconds.push_back(cpu_seconds() - begin);
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    std::printf("| %s | %u × %u | %llu | %.3f | %.2f | %.0f |\n", w.name, w.blocks, w.threads,
                static_cast<unsigned long long>(instructions), median, 1e9 * median / double(instructions),
                double(instructions) / median / 1e6);
  }
  require(cudaFree(out), "cudaFree");
  return 0;
}
