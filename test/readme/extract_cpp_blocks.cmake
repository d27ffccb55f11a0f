# beam_extract_cpp_blocks(<markdown file> <output .cu> <count variable>)
#
# Writes every ```cpp fenced block of the Markdown file, in order, into one C++ source, each
# block preceded by `#line <n> "<markdown file>"` (n: the block's first line in the Markdown
# file), so that a compile error names the README line. Sets <count variable> to the number
# of blocks written. The output is rewritten only when its content changes (no rebuild after
# a configure that changed nothing).
#
# Fences: a line of three backticks (up to three spaces of indentation) opens a block, its
# info string naming the language (`cpp` exactly: the block is extracted; anything else: the
# block is skipped whole, so a ```cpp line inside a ```sh block is text); the next line of
# three backticks and nothing else closes it. An unclosed block is a fatal error.
#
# Also runs as a script (the extraction's self-test):
#   cmake -DMARKDOWN=<file> -DOUTPUT=<file.cu> -P extract_cpp_blocks.cmake
# prints "extracted <n> block(s)".
include_guard(GLOBAL)

function(beam_extract_cpp_blocks markdown output count_var)
  file(READ ${markdown} text)
  set(code "// Generated from ${markdown} at configure time (test/readme): its ```cpp blocks,\n")
  string(APPEND code "// in order. Do not edit: edit the Markdown file.\n")
  set(count 0)
  set(line_no 0)
  set(state outside)  # outside | cpp | other
  set(opened 0)
  while(NOT text STREQUAL "")
    string(FIND "${text}" "\n" eol)
    if(eol EQUAL -1)
      set(line "${text}")
      set(text "")
    else()
      string(SUBSTRING "${text}" 0 ${eol} line)
      math(EXPR next "${eol} + 1")
      string(SUBSTRING "${text}" ${next} -1 text)
    endif()
    string(REGEX REPLACE "\r$" "" line "${line}")
    math(EXPR line_no "${line_no} + 1")
    if(state STREQUAL "outside")
      if(line MATCHES "^ ? ? ?```cpp[ \t]*$")
        set(state cpp)
        set(opened ${line_no})
        math(EXPR count "${count} + 1")
        math(EXPR first "${line_no} + 1")
        string(APPEND code "\n// block ${count}: ${markdown}:${line_no}\n#line ${first} \"${markdown}\"\n")
      elseif(line MATCHES "^ ? ? ?```")
        set(state other)
        set(opened ${line_no})
      endif()
    elseif(line MATCHES "^ ? ? ?```[ \t]*$")
      set(state outside)
    elseif(state STREQUAL "cpp")
      string(APPEND code "${line}\n")
    endif()
  endwhile()
  if(NOT state STREQUAL "outside")
    message(FATAL_ERROR "${markdown}:${opened}: code block opened here is never closed")
  endif()
  set(partial ${output}.partial)
  file(WRITE ${partial} "${code}")
  file(COPY_FILE ${partial} ${output} ONLY_IF_DIFFERENT)
  file(REMOVE ${partial})
  set(${count_var} ${count} PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  foreach(var MARKDOWN OUTPUT)
    if(NOT DEFINED ${var})
      message(FATAL_ERROR "extract_cpp_blocks: ${var} is required")
    endif()
  endforeach()
  beam_extract_cpp_blocks(${MARKDOWN} ${OUTPUT} blocks)
  message("extracted ${blocks} block(s)")
endif()
