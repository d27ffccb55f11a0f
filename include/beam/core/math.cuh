//! @file
//! Scalar math of BEAM, identical on host and device (`Real` is `float` or `double`).
//!
//! Mask router logit z, probability m = σ(z), hard mask m̂ = 1[m ≥ 0.5] = 1[z ≥ 0].
//! The straight-through estimator (STE) uses m̂ forward and treats the threshold as the
//! identity backward: ∂L/∂z = ∂L/∂m̂ · σ'(z), σ'(z) = σ(z)(1 − σ(z)).
#pragma once

#include <cmath>

#include "beam/core/macros.cuh"

namespace beam {
namespace detail {
BEAM_HOST_DEVICE inline float exp_of(float x) { return expf(x); }
BEAM_HOST_DEVICE inline double exp_of(double x) { return exp(x); }
}  // namespace detail

//! σ(x) = 1 / (1 + e^−x), evaluated without overflow for any |x|.
//! σ(+∞) = 1, σ(−∞) = 0, σ(NaN) = NaN.
template <class Real>
BEAM_HOST_DEVICE inline Real sigmoid(Real x) {
  if (x >= Real(0)) return Real(1) / (Real(1) + detail::exp_of(-x));
  const Real e = detail::exp_of(x);  // NaN lands here and stays NaN
  return e / (Real(1) + e);
}

//! σ'(x) = σ(x)(1 − σ(x)) = e^−|x| / (1 + e^−|x|)², the second form free of cancellation
//! when σ(x) ≈ 1. σ'(±∞) = 0, σ'(NaN) = NaN.
template <class Real>
BEAM_HOST_DEVICE inline Real sigmoid_grad(Real x) {
  const Real e = detail::exp_of(x < Real(0) ? x : -x);  // e^−|x|; NaN stays NaN
  return e / ((Real(1) + e) * (Real(1) + e));
}

//! silu(x) = x · σ(x).
template <class Real>
BEAM_HOST_DEVICE inline Real silu(Real x) {
  return x * sigmoid(x);
}

//! silu'(x) = σ(x) · (1 + x · (1 − σ(x))).
template <class Real>
BEAM_HOST_DEVICE inline Real silu_grad(Real x) {
  const Real s = sigmoid(x);
  return s * (Real(1) + x * (Real(1) - s));
}

//! STE forward: m̂ = 1[z ≥ 0] ⇔ σ(z) ≥ 0.5. Inclusive: z = 0 (and −0) keeps the expert;
//! z = NaN masks it out. Decided on z, so host and device agree exactly.
template <class Real>
BEAM_HOST_DEVICE inline bool mask_keeps(Real z) {
  return z >= Real(0);
}

//! STE backward: ∂L/∂z = ∂L/∂m̂ · σ(z)(1 − σ(z)).
template <class Real>
BEAM_HOST_DEVICE inline Real ste_backward(Real d_mask, Real z) {
  return d_mask * sigmoid_grad(z);
}

//! One candidate's term of L_reg = (1/(T·K)) Σ_t Σ_{i∈TopK(t)} σ(z_ti): `scale · σ(z)` with
//! `scale = 1/(T·K)`.
template <class Real>
BEAM_HOST_DEVICE inline Real l_reg_term(Real z, Real scale) {
  return scale * sigmoid(z);
}

//! ∂(l_reg_term)/∂z = scale · σ'(z).
template <class Real>
BEAM_HOST_DEVICE inline Real l_reg_term_grad(Real z, Real scale) {
  return scale * sigmoid_grad(z);
}

}  // namespace beam
