# Included by the top-level CMakeLists.txt when tests are built, before any target is made:
# every CUDA compile of this build passes --resource-usage (ptxas -v) and, through the
# compiler launcher ptxas_report.sh, writes the ptxas report next to its object as
# <object>.ptxas. The kernel resource check (test kernel_resources) reads these reports
# instead of compiling every source again. A launcher chosen by the user (ccache, ...) is kept
# and runs inside ours. Without a POSIX shell the check compiles the sources itself.
include_guard(GLOBAL)
if(NOT CMAKE_HOST_UNIX)
  return()
endif()
if(DEFINED CMAKE_CUDA_COMPILER_LAUNCHER)
  set(user_launcher ${CMAKE_CUDA_COMPILER_LAUNCHER})
else()
  set(user_launcher $ENV{CMAKE_CUDA_COMPILER_LAUNCHER})
endif()
set(CMAKE_CUDA_COMPILER_LAUNCHER /bin/sh ${CMAKE_CURRENT_LIST_DIR}/ptxas_report.sh ${user_launcher})
add_compile_options($<$<COMPILE_LANGUAGE:CUDA>:--resource-usage>)
