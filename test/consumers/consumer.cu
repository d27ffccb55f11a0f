// Shared by both consumer projects: include the umbrella header, make one host call, and
// check its result.
#include <beam/beam.cuh>

#include <cstdio>
#include <vector>

int main() {
  // One token, E = 4, K = 2: candidates {1, 2}; z_1 < 0 masks expert 1, z_2 = 0 keeps expert 2.
  const std::vector<float> r = {1, 3, 2, 0}, z = {0.5f, -1, 0, 2};
  beam::reference::routing_options options;
  options.top_k = 2;
  const auto routing = beam::reference::route_and_mask<float>({r.data(), 1, 4, 4}, {z.data(), 1, 4, 4}, options);
  const bool ok = routing.topk_ids == std::vector<int32_t>{-1, 2} && beam::sigmoid(0.0f) == 0.5f;
  std::printf("beam consumer: topk_ids = {%d, %d}: %s\n", routing.topk_ids[0], routing.topk_ids[1],
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
