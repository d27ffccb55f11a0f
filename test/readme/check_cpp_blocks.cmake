# cmake -DMARKDOWN=<README> -DGENERATED=<its generated .cu> -P check_cpp_blocks.cmake
#
# The extraction's check (ctest readme_blocks_*): counts the ```cpp fences of the Markdown
# file by a plain line match, independently of the extractor, and requires as many blocks
# (#line directives) in the source generated from it at configure time, so that no block is
# silently left out of the compile (an indented fence, an info string after `cpp`, ...). Also
# fails on a fence whose language is C++ or CUDA under another name (```c++, ```cuda, ...),
# which the extractor would skip: such a block must be tagged ```cpp.
cmake_minimum_required(VERSION 3.25)
foreach(var MARKDOWN GENERATED)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_cpp_blocks: ${var} is required")
  endif()
endforeach()
if(NOT EXISTS ${GENERATED})
  message(FATAL_ERROR "check_cpp_blocks: ${GENERATED} was not generated (configure again)")
endif()

file(STRINGS ${MARKDOWN} fences REGEX "^[ \t]*```")
set(cpp_fences 0)
set(misnamed "")
foreach(fence IN LISTS fences)
  if(fence MATCHES "^[ \t]*```+[ \t]*cpp")
    math(EXPR cpp_fences "${cpp_fences} + 1")
  elseif(fence MATCHES "^[ \t]*```+[ \t]*([cC]\\+\\+|cxx|cc|cu|cuda|CUDA|hpp|h|c)([ \t{].*)?$")
    list(APPEND misnamed "${fence}")
  endif()
endforeach()
file(STRINGS ${GENERATED} directives REGEX "^#line [0-9]+ \"")
list(LENGTH directives extracted)

message(STATUS "${MARKDOWN}: ${cpp_fences} ```cpp fence(s), ${extracted} block(s) extracted into ${GENERATED}")
set(failed FALSE)
if(NOT cpp_fences EQUAL extracted)
  message("${MARKDOWN} has ${cpp_fences} ```cpp fence(s) but ${extracted} block(s) were extracted: "
          "a block is left out of the compile (a fence must be ```cpp alone on its line, indented "
          "at most 3 spaces, outside any other code block)")
  set(failed TRUE)
endif()
if(misnamed)
  string(REPLACE ";" "\n  " misnamed "${misnamed}")
  message("${MARKDOWN}: C++ blocks tagged other than ```cpp are not compiled:\n  ${misnamed}")
  set(failed TRUE)
endif()
if(failed)
  message(FATAL_ERROR "README code block check FAILED")
endif()
message(STATUS "README code block check passed")
