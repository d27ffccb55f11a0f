// The emulator's contents of the opaque 128-byte CUtensorMap: what cuTensorMapEncodeTiled
// validated and cp.async.bulk.tensor reads back.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace emu {

//! A tiled tensor map as the emulator encodes it into a CUtensorMap (fits its 128 bytes). Its
//! layout survives what public code does to the opaque map: CUTLASS (4.3.4 and later, for
//! drivers ≤ 13.1 and tensors under 128 KiB) clears bit 21 of the second 64-bit word after
//! encoding, which here is the tag's, and the tag has that bit clear (the address, in the first
//! word, is untouched).
struct tensor_map {
  static constexpr uint64_t tag = 0x50414d54'4d414542ull;  //!< "BEAMTMAP": written by cuTensorMapEncodeTiled
  static_assert((tag >> 21 & 1) == 0, "CUTLASS's workaround clears bit 21 of the second word");
  uint64_t global_address;
  uint64_t magic;
  uint64_t strides[5];          //!< bytes between consecutive elements of each dimension (strides[0]: the element size)
  uint64_t dims[5];             //!< elements per dimension
  uint16_t box[5];              //!< box elements traversed per dimension
  uint8_t element_strides[5];   //!< traversal step per dimension
  uint8_t rank, element_bytes, swizzle_bits;  //!< swizzle_bits: 0 none, 1 32B, 2 64B, 3 128B
  uint8_t nan_fill;             //!< out-of-range elements read as NaN (CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA)
  uint8_t data_type;            //!< CUtensorMapDataType
};
static_assert(sizeof(tensor_map) <= sizeof(CUtensorMap), "the encoding fits the opaque map");

//! cuTensorMapEncodeTiled, validating its arguments as the CUDA Driver API documents them.
CUresult encode_tensor_map_tiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank, void* address,
                                 const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                 const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                                 CUtensorMapSwizzle swizzle, CUtensorMapL2promotion promotion,
                                 CUtensorMapFloatOOBfill fill);

}  // namespace emu
