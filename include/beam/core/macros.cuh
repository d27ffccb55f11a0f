//! @file
//! Portability macros shared by device code and by the host reference, so the reference
//! headers also compile with a plain C++ compiler (no nvcc).
#pragma once

#if defined(__CUDACC__)
//! Marks a function callable from host and device code (empty without nvcc).
#define BEAM_HOST_DEVICE __host__ __device__
#else
#define BEAM_HOST_DEVICE
#endif
