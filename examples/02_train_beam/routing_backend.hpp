// The routing part of a training step, behind one interface: the forward (candidates, gates,
// BEAM mask), the auxiliary losses, and the backward (softmax, STE, α·∂L_bal and β·∂L_reg).
// The CPU backend is beam::reference; the GPU backend (device_routing.cu) runs the library's
// device primitives route_and_mask, aux_losses and route_backward.
#pragma once

#include <beam/reference/training.cuh>

#include <memory>

namespace train {

namespace ref = beam::reference;

//! Call order per batch: route, then losses, then (training) backward, each on the routing
//! that route returned, unmodified: the GPU backend keeps the logits, the candidates and the
//! balance fractions of the last route / losses on the device.
struct routing_backend {
  virtual ~routing_backend() = default;
  //! Routes the logits r, z `[B, E]` (z unused with the mask off). Fills candidate_ids,
  //! topk_ids, topk_weights (ĝ), mask_probs and active_count (and gate_weights on the CPU).
  virtual ref::routing_result<float> route(const ref::matrix_view<float>& r, const ref::matrix_view<float>& z,
                                           const ref::routing_options& options) = 0;
  //! L_bal and L_reg (0 with the mask off) of the last routing.
  virtual void losses(const ref::routing_result<float>& routing, const ref::matrix_view<float>& r,
                      const ref::matrix_view<float>& z, double& l_bal, double& l_reg) = 0;
  //! ∂L/∂r and ∂L/∂z `[B, E]` from ∂L/∂ĝ `[B, K]` (every candidate slot), with α·∂L_bal/∂r
  //! and β·∂L_reg/∂z added.
  virtual ref::routing_grads<float> backward(const ref::routing_result<float>& routing,
                                             const ref::matrix_view<float>& r, const ref::matrix_view<float>& z,
                                             const float* d_weight, double alpha, double beta) = 0;
};

//! beam::reference: the CPU path.
struct reference_routing final : routing_backend {
  ref::routing_result<float> route(const ref::matrix_view<float>& r, const ref::matrix_view<float>& z,
                                   const ref::routing_options& options) override {
    return ref::route_and_mask(r, z, options);
  }
  void losses(const ref::routing_result<float>& routing, const ref::matrix_view<float>& r,
              const ref::matrix_view<float>&, double& l_bal, double& l_reg) override {
    l_bal = ref::balance_loss(r, routing);
    l_reg = beam::uses_mask(routing.options) ? ref::l_reg(routing) : 0.0;
  }
  ref::routing_grads<float> backward(const ref::routing_result<float>& routing, const ref::matrix_view<float>& r,
                                     const ref::matrix_view<float>& z, const float* d_weight, double alpha,
                                     double beta) override {
    ref::routing_grads<float> g = ref::routing_backward(routing, r, z, d_weight);
    if (alpha > 0) ref::add_balance_loss_grad(r, routing, alpha, g.d_router_logits);
    if (beam::uses_mask(routing.options) && beta > 0) ref::add_l_reg_grad(routing, z, beta, g.d_mask_logits);
    return g;
  }
};

//! The GPU backend when a usable CUDA device (sm_80 or later) is present, else null
//! (device_routing.cu).
std::unique_ptr<routing_backend> make_device_routing();

}  // namespace train
