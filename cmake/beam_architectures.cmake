# beam_check_cuda_architectures(<architectures>...): a warning when the CUDA architectures a
# project builds for include one older than sm_80 (a number below 80, or "all" / "all-major",
# which include them). There, beam's sm_80 / sm_90a device code is compiled out: the GEMM
# kernels are traps, and grouped_gemm / moe_forward return cudaErrorInvalidDeviceFunction on
# a device that runs that code. Set CMAKE_CUDA_ARCHITECTURES to 80, 90a or both (or CUDAARCHS),
# or silence the warning with BEAM_ALLOW_PRE_SM80_ARCHITECTURES=ON (host-only use of
# beam::reference, say). Called by beam's CMakeLists.txt and by its package config.
function(beam_check_cuda_architectures)
  if(BEAM_ALLOW_PRE_SM80_ARCHITECTURES)
    return()
  endif()
  set(older "")
  foreach(arch IN LISTS ARGN)
    if(arch MATCHES "^all")
      list(APPEND older ${arch})
    elseif(arch MATCHES "^([0-9]+)" AND CMAKE_MATCH_1 LESS 80)
      list(APPEND older ${arch})
    endif()
  endforeach()
  if(older)
    list(JOIN older ", " older)
    message(WARNING "beam: CMAKE_CUDA_ARCHITECTURES includes ${older}, older than sm_80: beam's GEMM kernels "
      "built for it are traps, and grouped_gemm / moe_forward return cudaErrorInvalidDeviceFunction on a "
      "device that runs that code. Set CMAKE_CUDA_ARCHITECTURES to 80, 90a or \"80;90a\", or "
      "BEAM_ALLOW_PRE_SM80_ARCHITECTURES=ON to silence this warning.")
  endif()
endfunction()
