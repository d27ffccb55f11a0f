// A kernel that spills on purpose: the kernel resource check must fail on it
// (test kernel_resources_catches_spills).
namespace beam_fixture {

__global__ void __launch_bounds__(1024, 2) spilling_kernel(const float* in, float* out) {
  float acc[96];  // more live values than the 32 registers per thread this launch bound allows
#pragma unroll
  for (int i = 0; i < 96; ++i) acc[i] = in[threadIdx.x * 96 + i];
  float sum = 0.0f;
#pragma unroll
  for (int r = 0; r < 8; ++r) {
#pragma unroll
    for (int i = 0; i < 96; ++i) sum += acc[i] * acc[(i * 7 + r) % 96];
  }
  out[threadIdx.x] = sum;
}

}  // namespace beam_fixture
