// The GPU path of the training example: the routed MoE layer of every batch on the device, in
// fp16 with fp32 master weights on the host. Training: moe_training_forward (every candidate
// computed), aux_losses, moe_backward (every gradient of the layer); evaluation: moe_forward,
// the inference layer (only the kept pairs). The rest of the model stays on the CPU.
//
// fp16 keeps three more mantissa bits than bf16, so the path stays close to the CPU's float;
// its narrower range is handled as mixed-precision training does: ∂L/∂y is multiplied by a
// power of two S (loss scaling, chosen per batch from max |∂L/∂y|, exact) before it is
// rounded to fp16, the auxiliary losses' coefficients α and β by S too, and every gradient is
// divided by S after it comes back (exact).
#include <beam/core/error.cuh>
#include <beam/moe/device_moe.cuh>
#include <beam/moe/device_moe_training.cuh>
#include <beam/routing/device_aux_losses.cuh>

#include <cmath>
#include <vector>

#include "moe_block.hpp"

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

class device_moe final : public moe_backend {
  using T = __half;

 public:
  void forward(const moe_parameters& p, const float* u, int rows, const routing_setup& rs, bool train,
               moe_pass& pass, float* y) override {
    const int H = p.hidden, E = p.experts, K = rs.top_k;
    pass.rows = rows;
    pass.top_k = K;
    pass.rs = rs;
    pass.u = u;
    options_ = routing_options_of(rs);
    const beam::device::moe_layer<T> layer{H,
                                           p.intermediate,
                                           E,
                                           upload(p.w13.w, w13_),
                                           upload(p.w2.w, w2_),
                                           upload(p.router.w, router_),
                                           upload(p.mask.w, mask_)};
    const T* x = upload(u, size_t(rows) * H, x_);
    T* out = y_.reserve(size_t(rows) * H);
    const size_t slots = size_t(rows) * K;
    const float* weights = nullptr;
    if (train) {
      size_t bytes = 0;
      BEAM_CUDA_TRY(beam::device::moe_training_forward<T>(nullptr, bytes, x, H, rows, layer, options_, {out, H}));
      BEAM_CUDA_TRY(
          beam::device::moe_training_forward<T>(forward_.reserve(bytes), bytes, x, H, rows, layer, options_, {out, H}));
      const auto saved = beam::device::moe_training_saved<T>(forward_.data(), rows, layer, K);
      float* values = losses_.reserve(2);
      const beam::device::aux_loss_outputs losses{values, values + 1, fractions_.reserve(size_t(E))};
      BEAM_CUDA_TRY(beam::device::aux_losses<float>(nullptr, bytes, saved.logits, rows, E, options_,
                                                    saved.candidate_ids, losses));
      BEAM_CUDA_TRY(beam::device::aux_losses<float>(aux_.reserve(bytes), bytes, saved.logits, rows, E, options_,
                                                    saved.candidate_ids, losses));
      const std::vector<float> host = download(values, 2);
      pass.l_reg = host[0];
      pass.l_bal = host[1];
      weights = saved.topk_weights;
    } else {
      size_t bytes = 0;
      float* exported = weights_.reserve(slots);
      const beam::device::moe_outputs<T> outputs{out, H, nullptr, 0, ids_.reserve(slots), exported};
      BEAM_CUDA_TRY(beam::device::moe_forward<T>(nullptr, bytes, x, H, rows, layer, options_, outputs));
      if (bytes > inference_bytes_) {  // a larger workspace: its completion counters zeroed once
        BEAM_CUDA_TRY(cudaMemset(inference_.reserve(bytes), 0, bytes));
        inference_bytes_ = bytes;
      }
      BEAM_CUDA_TRY(beam::device::moe_forward<T>(inference_.data(), bytes, x, H, rows, layer, options_, outputs));
      weights = exported;
    }
    pass.weight = download(weights, slots);
    const std::vector<T> routed = download(static_cast<const T*>(out), size_t(rows) * H);
    for (size_t i = 0; i < routed.size(); ++i) y[i] += beam::to_float(routed[i]);
    pass.active_pairs = 0;
    pass.rows_without_experts = 0;
    for (int r = 0; r < rows; ++r) {
      int kept = 0;
      for (int k = 0; k < K; ++k) kept += pass.weight[size_t(r) * K + k] != 0.0f;
      pass.active_pairs += kept;
      pass.rows_without_experts += kept == 0;
    }
  }

  void backward(const moe_parameters& p, const moe_pass& pass, const float* dy_rows, float* du) override {
    const int H = p.hidden, E = p.experts, I = p.intermediate, rows = pass.rows;
    const size_t n = size_t(rows) * H;
    // S = 2^e with max |∂L/∂y| · S in (4, 8]: far from fp16's subnormals and its largest value.
    double largest = 0.0;
    for (size_t i = 0; i < n; ++i) largest = std::max(largest, double(std::abs(dy_rows[i])));
    const double scale = largest > 0.0 ? std::exp2(std::floor(std::log2(8.0 / largest))) : 1.0;
    std::vector<float> scaled(dy_rows, dy_rows + n);
    for (float& v : scaled) v = float(v * scale);
    const T* dy = upload(scaled.data(), n, dy_);
    const beam::device::moe_layer<T> layer{H, I, E, w13_.data(), w2_.data(), router_.data(), mask_.data()};
    const bool mask = beam::uses_mask(options_);
    const beam::device::aux_loss_terms aux{float(pass.rs.alpha * scale), mask ? float(pass.rs.beta * scale) : 0.0f,
                                           fractions_.data()};
    const size_t n13 = p.w13.w.size(), n2 = p.w2.w.size(), nr = p.router.w.size();
    const beam::device::moe_gradients<T> grads{d_x_.reserve(n),      H,
                                               d_w13_.reserve(n13),  d_w2_.reserve(n2),
                                               d_router_.reserve(nr), mask ? d_mask_.reserve(nr) : nullptr};
    size_t bytes = 0;
    BEAM_CUDA_TRY(beam::device::moe_backward<T>(nullptr, bytes, forward_.data(), x_.data(), H, rows, layer, options_,
                                                aux, dy, H, grads));
    BEAM_CUDA_TRY(beam::device::moe_backward<T>(backward_.reserve(bytes), bytes, forward_.data(), x_.data(), H, rows,
                                                layer, options_, aux, dy, H, grads));
    const float unscale = float(1.0 / scale);
    const std::vector<T> d_x = download(static_cast<const T*>(d_x_.data()), n);
    for (size_t i = 0; i < n; ++i) du[i] += beam::to_float(d_x[i]) * unscale;
    accumulate(d_w13_.data(), p.w13.g, unscale);
    accumulate(d_w2_.data(), p.w2.g, unscale);
    accumulate(d_router_.data(), p.router.g, unscale);
    if (mask) accumulate(d_mask_.data(), p.mask.g, unscale);
  }

 private:
  //! The fp16 copy of `n` host values in `array`.
  static const T* upload(const float* values, size_t n, device_array<T>& array) {
    std::vector<T> rounded(n);
    for (size_t i = 0; i < n; ++i) rounded[i] = beam::from_float<T>(values[i]);
    T* device = array.reserve(n);
    BEAM_CUDA_TRY(cudaMemcpy(device, rounded.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    return device;
  }
  static const T* upload(const std::vector<float>& values, device_array<T>& array) {
    return upload(values.data(), values.size(), array);
  }
  //! gradient += unscale · the device's fp32 gradient.
  static void accumulate(const float* device, std::vector<float>& gradient, float unscale) {
    const std::vector<float> g = download(device, gradient.size());
    for (size_t i = 0; i < g.size(); ++i) gradient[i] += g[i] * unscale;
  }

  ref::routing_options options_;
  device_array<T> w13_, w2_, router_, mask_, x_, y_, dy_, d_x_;
  device_array<float> losses_, fractions_, weights_, d_w13_, d_w2_, d_router_, d_mask_;
  device_array<int32_t> ids_;
  device_array<char> forward_, backward_, aux_, inference_;
  size_t inference_bytes_ = 0;
};

}  // namespace

std::unique_ptr<moe_backend> make_device_moe() {
  if (!beam::cuda_device_present()) return nullptr;
  int device = 0, major = 0;
  BEAM_CUDA_TRY(cudaGetDevice(&device));
  BEAM_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major < 8) return nullptr;  // this build's kernels are for sm_80 and later
  return std::make_unique<device_moe>();
}

}  // namespace train
