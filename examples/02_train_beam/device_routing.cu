// The GPU routing backend of the training example: beam::device::route_and_mask, aux_losses
// and route_backward on the logits of each batch (the rest of the step stays on the CPU).
#include <beam/core/error.cuh>
#include <beam/routing/device_aux_losses.cuh>
#include <beam/routing/device_route.cuh>
#include <beam/routing/device_route_backward.cuh>

#include <vector>

#include "routing_backend.hpp"

namespace train {

namespace {

//! A device array that grows to the largest size asked for.
template <class T>
class device_array {
 public:
  device_array() = default;
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  ~device_array() { cudaFree(data_); }
  T* reserve(size_t n) {
    if (n > size_) {
      cudaFree(data_);
      data_ = nullptr;
      BEAM_CUDA_TRY(cudaMalloc(&data_, n * sizeof(T)));
      size_ = n;
    }
    return data_;
  }
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

template <class T>
std::vector<T> download(const T* device, size_t n) {
  std::vector<T> host(n);
  BEAM_CUDA_TRY(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

class device_routing final : public routing_backend {
 public:
  ref::routing_result<float> route(const ref::matrix_view<float>& r, const ref::matrix_view<float>& z,
                                   const ref::routing_options& options) override {
    const int64_t B = r.rows;
    const int E = int(r.cols), K = options.top_k;
    upload(r, r_.reserve(size_t(B * E)));
    if (beam::uses_mask(options)) upload(z, z_.reserve(size_t(B * E)));
    const size_t slots = size_t(B) * K;
    BEAM_CUDA_TRY(beam::device::route_and_mask<float>(
        logits(E), B, E, options,
        {ids_.reserve(slots), weights_.reserve(slots), probs_.reserve(slots), candidates_.reserve(slots)}));
    ref::routing_result<float> out;
    out.tokens = B;
    out.experts = E;
    out.top_k = K;
    out.options = options;
    out.candidate_ids = download(candidates_.data(), slots);
    out.topk_ids = download(ids_.data(), slots);
    out.topk_weights = download(weights_.data(), slots);
    out.mask_probs = beam::uses_mask(options) ? download(probs_.data(), slots) : std::vector<float>(slots, 1.0f);
    // g where the rule keeps (ĝ; the device outputs no g of a dropped slot, and nothing here reads it)
    if (!beam::uses_mask(options)) out.gate_weights = out.topk_weights;
    out.active_count.assign(size_t(B), 0);
    for (size_t s = 0; s < slots; ++s) out.active_count[s / size_t(K)] += out.topk_ids[s] >= 0;
    return out;
  }

  void losses(const ref::routing_result<float>& routing, const ref::matrix_view<float>&,
              const ref::matrix_view<float>&, double& l_bal, double& l_reg) override {
    const int64_t B = routing.tokens;
    const int E = int(routing.experts);
    size_t bytes = 0;
    float* values = losses_.reserve(2);
    const beam::device::aux_loss_outputs out{values, values + 1, fractions_.reserve(size_t(E))};
    BEAM_CUDA_TRY(beam::device::aux_losses<float>(nullptr, bytes, logits(E), B, E, routing.options,
                                                  candidates_.data(), out));
    BEAM_CUDA_TRY(beam::device::aux_losses<float>(workspace_.reserve(bytes), bytes, logits(E), B, E, routing.options,
                                                  candidates_.data(), out));
    const std::vector<float> host = download(values, 2);
    l_reg = beam::uses_mask(routing.options) ? host[0] : 0.0;
    l_bal = host[1];
  }

  ref::routing_grads<float> backward(const ref::routing_result<float>& routing, const ref::matrix_view<float>&,
                                     const ref::matrix_view<float>&, const float* d_weight, double alpha,
                                     double beta) override {
    const int64_t B = routing.tokens;
    const int E = int(routing.experts);
    const size_t slots = size_t(B) * routing.top_k, cells = size_t(B) * E;
    float* d_hat = d_weight_.reserve(slots);
    BEAM_CUDA_TRY(cudaMemcpy(d_hat, d_weight, slots * sizeof(float), cudaMemcpyHostToDevice));
    const beam::device::routing_gradients<float> grads{d_router_.reserve(cells), d_mask_.reserve(cells), E, E};
    BEAM_CUDA_TRY(beam::device::route_backward<float>(logits(E), B, E, routing.options, candidates_.data(), d_hat,
                                                      {float(alpha), float(beta), fractions_.data()}, grads));
    ref::routing_grads<float> out;
    out.d_router_logits = download(d_router_.data(), cells);
    out.d_mask_logits = beam::uses_mask(routing.options) ? download(d_mask_.data(), cells) : std::vector<float>(cells, 0.0f);
    return out;
  }

 private:
  beam::device::routing_logits<float> logits(int E) const { return {r_.data(), z_.data(), E, E}; }
  //! A `[B, E]` view (any row stride) into a dense device array.
  static void upload(const ref::matrix_view<float>& v, float* device) {
    BEAM_CUDA_TRY(cudaMemcpy2D(device, size_t(v.cols) * sizeof(float), v.data, size_t(v.stride) * sizeof(float),
                               size_t(v.cols) * sizeof(float), size_t(v.rows), cudaMemcpyHostToDevice));
  }

  device_array<float> r_, z_, weights_, probs_, losses_, fractions_, d_weight_, d_router_, d_mask_;
  device_array<int32_t> ids_, candidates_;
  device_array<char> workspace_;
};

}  // namespace

std::unique_ptr<routing_backend> make_device_routing() {
  if (!beam::cuda_device_present()) return nullptr;
  int device = 0, major = 0;
  BEAM_CUDA_TRY(cudaGetDevice(&device));
  BEAM_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major < 8) return nullptr;  // this build's kernels are for sm_80 and later
  return std::make_unique<device_routing>();
}

}  // namespace train
