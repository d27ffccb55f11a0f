# cmake -DSOURCE_DIR=<consumer> -DBINARY_DIR=<dir> [-DARGS=<-D options>] -P build_and_run.cmake
# Configures, builds and runs a consumer project (its executable is named `consumer`).
cmake_minimum_required(VERSION 3.25)
separate_arguments(args UNIX_COMMAND "${ARGS}")
foreach(step configure build run)
  if(step STREQUAL configure)
    set(command ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BINARY_DIR} -DCMAKE_BUILD_TYPE=Release
                -DCMAKE_CUDA_ARCHITECTURES=80 ${args})
  elseif(step STREQUAL build)
    set(command ${CMAKE_COMMAND} --build ${BINARY_DIR})
  else()
    set(command ${BINARY_DIR}/consumer)
  endif()
  execute_process(COMMAND ${command} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message("${out}")
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "consumer ${SOURCE_DIR}: ${step} failed (${status})")
  endif()
endforeach()
