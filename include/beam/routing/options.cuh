//! @file
//! Routing options, shared by the device primitives and the host reference.
#pragma once

#include <cstdint>

namespace beam {

//! How router logits become expert scores.
enum class score_function {
  softmax,  //!< s = softmax(r) over all E experts (Mixtral, Qwen, DeepSeek-V2)
  sigmoid,  //!< s_e = σ(r_e) (DeepSeek-V3, usually with a selection bias and renormalize)
};

//! Routing options; the defaults are plain softmax Top-K with the BEAM mask on.
//! (Formulas: beam/reference/routing.cuh.)
struct routing_options {
  int top_k = 1;                                  //!< K, 1 ≤ K ≤ E
  score_function scoring = score_function::softmax;
  bool renormalize = false;                       //!< divide g by Σ of the K candidate scores
  float routed_scaling_factor = 1.0f;             //!< λ
  const float* selection_bias = nullptr;          //!< b[E] added to the selection key only
                                                  //!< (device memory for device functions)
  bool mask_enabled = true;                       //!< false: plain Top-K, m = m̂ = 1
  const int32_t* valid_tokens = nullptr;          //!< optional n (device memory for device functions):
                                                  //!< tokens t ≥ n, the padding of a batch padded to a
                                                  //!< captured size, get empty slots (ids and candidates
                                                  //!< −1, weights and mask probabilities 0), so that no
                                                  //!< expert runs for them; n is clamped to [0, T]
};

}  // namespace beam
