//! @file
//! 16-byte vectors of row elements, the unit of the gather and combine kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "beam/core/dtype.cuh"

namespace beam::detail {

//! Elements of T in one 16-byte vector.
template <class T>
inline constexpr int vector_elements = int(16 / sizeof(T));

//! True when rows of `hidden` elements at `data` with `stride` can be read in 16-byte
//! vectors: an aligned pointer, and hidden and stride multiples of the vector width.
template <class T>
bool vector_rows(const T* data, int64_t stride, int64_t hidden) {
  return reinterpret_cast<uintptr_t>(data) % 16 == 0 && stride % vector_elements<T> == 0 &&
         hidden % vector_elements<T> == 0 && stride >= hidden;
}

//! The elements of a 16-byte vector as float.
template <class T>
struct float_vector {
  float v[vector_elements<T>];

  //! Loads through the read-only cache (`__ldg`), or plainly for data the kernel may write.
  __device__ static float_vector load(const T* p, bool read_only = true) {
    return of(read_only ? __ldg(reinterpret_cast<const int4*>(p)) : *reinterpret_cast<const int4*>(p));
  }
  //! The elements of a raw 16-byte vector, as loaded.
  __device__ static float_vector of(const int4& raw) {
    const T* e = reinterpret_cast<const T*>(&raw);
    float_vector out;
#pragma unroll
    for (int i = 0; i < vector_elements<T>; ++i) out.v[i] = to_float(e[i]);
    return out;
  }
  __device__ void store(T* p) const {
    int4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < vector_elements<T>; ++i) e[i] = from_float<T>(v[i]);
    *reinterpret_cast<int4*>(p) = raw;
  }
};

}  // namespace beam::detail
