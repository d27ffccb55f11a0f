// cuTensorMapEncodeTiled: the argument rules of the CUDA Driver API documentation (cuda.h,
// "Tensor Map Object Managment"), then the emulator's encoding of the map (tensor_map.hpp).
// Interleaved layouts, the 128B_ATOM swizzles and the packed 4/6-bit types are valid maps
// the emulator does not copy: they are refused with CUDA_ERROR_NOT_SUPPORTED and a message.
#include "tensor_map.hpp"

#include <cstdio>
#include <cstring>

namespace emu {
namespace {

//! Bytes per element of a data type, 0 for the packed sub-byte types.
unsigned element_bytes(CUtensorMapDataType type) {
  switch (type) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: return 1;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: return 2;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32_FTZ:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ: return 4;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64: return 8;
    default: return 0;
  }
}

bool floating(CUtensorMapDataType type) {
  return type == CU_TENSOR_MAP_DATA_TYPE_FLOAT16 || type == CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 ||
         type == CU_TENSOR_MAP_DATA_TYPE_FLOAT32 || type == CU_TENSOR_MAP_DATA_TYPE_FLOAT32_FTZ ||
         type == CU_TENSOR_MAP_DATA_TYPE_FLOAT64 || type == CU_TENSOR_MAP_DATA_TYPE_TFLOAT32 ||
         type == CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ;
}

CUresult not_emulated(const char* what) {
  std::fprintf(stderr, "beam emulator: cuTensorMapEncodeTiled: %s is a valid map the emulator does not copy\n", what);
  return CUDA_ERROR_NOT_SUPPORTED;
}

}  // namespace

CUresult encode_tensor_map_tiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank, void* address,
                                 const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                 const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                                 CUtensorMapSwizzle swizzle, CUtensorMapL2promotion promotion,
                                 CUtensorMapFloatOOBfill fill) {
  if (map == nullptr || reinterpret_cast<uintptr_t>(map) % 64 != 0) return CUDA_ERROR_INVALID_VALUE;
  if (unsigned(type) > unsigned(CU_TENSOR_MAP_DATA_TYPE_16U6_ALIGN16B)) return CUDA_ERROR_INVALID_VALUE;
  if (unsigned(interleave) > unsigned(CU_TENSOR_MAP_INTERLEAVE_32B) ||
      unsigned(swizzle) > unsigned(CU_TENSOR_MAP_SWIZZLE_128B_ATOM_64B) ||
      unsigned(promotion) > unsigned(CU_TENSOR_MAP_L2_PROMOTION_L2_256B) ||
      unsigned(fill) > unsigned(CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA))
    return CUDA_ERROR_INVALID_VALUE;
  if (rank == 0 || rank > 5 || (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE && rank < 3)) return CUDA_ERROR_INVALID_VALUE;
  if (dims == nullptr || box == nullptr || element_strides == nullptr || (rank > 1 && strides == nullptr))
    return CUDA_ERROR_INVALID_VALUE;
  const uintptr_t base = reinterpret_cast<uintptr_t>(address);
  if (base % (interleave == CU_TENSOR_MAP_INTERLEAVE_32B ? 32 : 16) != 0) return CUDA_ERROR_INVALID_VALUE;
  for (cuuint32_t i = 0; i < rank; ++i) {
    if (dims[i] == 0 || dims[i] > (cuuint64_t(1) << 32)) return CUDA_ERROR_INVALID_VALUE;
    if (box[i] == 0 || box[i] > 256) return CUDA_ERROR_INVALID_VALUE;
    if (element_strides[i] == 0 || element_strides[i] > 8) return CUDA_ERROR_INVALID_VALUE;
  }
  for (cuuint32_t i = 0; i + 1 < rank; ++i) {
    if (strides[i] % (interleave == CU_TENSOR_MAP_INTERLEAVE_32B ? 32 : 16) != 0 || strides[i] >= (cuuint64_t(1) << 40))
      return CUDA_ERROR_INVALID_VALUE;
  }
  if (interleave == CU_TENSOR_MAP_INTERLEAVE_32B && swizzle != CU_TENSOR_MAP_SWIZZLE_32B) return CUDA_ERROR_INVALID_VALUE;
  if (fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA && !floating(type)) return CUDA_ERROR_INVALID_VALUE;
  const unsigned bytes = element_bytes(type);
  if (bytes == 0) return not_emulated("a packed 4- or 6-bit data type");
  const uint64_t inner = uint64_t(box[0]) * bytes;
  static const unsigned spans[] = {0, 32, 64, 128, 128, 128, 128};
  if (interleave == CU_TENSOR_MAP_INTERLEAVE_NONE) {
    if (inner % 16 != 0) return CUDA_ERROR_INVALID_VALUE;
    if (swizzle != CU_TENSOR_MAP_SWIZZLE_NONE && inner > spans[swizzle]) return CUDA_ERROR_INVALID_VALUE;
  }
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return not_emulated("an interleaved layout");
  if (swizzle > CU_TENSOR_MAP_SWIZZLE_128B) return not_emulated("a 128B_ATOM swizzle");

  tensor_map m{};
  m.magic = tensor_map::tag;
  m.global_address = base;
  m.rank = uint8_t(rank);
  m.element_bytes = uint8_t(bytes);
  m.swizzle_bits = uint8_t(swizzle);  // NONE 0, 32B 1, 64B 2, 128B 3: Swizzle<b,4,3>
  m.nan_fill = fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA;
  m.data_type = uint8_t(type);
  for (cuuint32_t i = 0; i < rank; ++i) {
    m.dims[i] = dims[i];
    m.box[i] = uint16_t(box[i]);
    m.element_strides[i] = uint8_t(i == 0 ? 1 : element_strides[i]);  // dimension 0 has no stride (ignored)
    m.strides[i] = i == 0 ? bytes : strides[i - 1];
  }
  std::memset(map, 0, sizeof *map);
  std::memcpy(map, &m, sizeof m);
  return CUDA_SUCCESS;
}

}  // namespace emu
