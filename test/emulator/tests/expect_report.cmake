# Runs a program that must get an emulator report (a defect the emulator finds in code we did not
# write) and requires that report, a regular expression, on its stdout or stderr; the exit status
# is not checked, since the program stops however the library handles the failed launch (Thrust,
# for one, throws from a destructor and aborts). On success it prints one line that the ctest
# test's PASS_REGULAR_EXPRESSION requires: "expected report seen".
# cmake -DEXE=<program> [-DARGS=<argument>] -DREPORT=<regex> -P expect_report.cmake
if(NOT EXE OR NOT REPORT)
  message(FATAL_ERROR "expect_report.cmake needs -DEXE=<executable> -DREPORT=<regex> [-DARGS=<argument>]")
endif()
execute_process(COMMAND ${EXE} ${ARGS} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 600)
message("---- ${EXE} ${ARGS}: exit status ${rc}\n---- stdout:\n${out}---- stderr:\n${err}----")
if(NOT "${out}${err}" MATCHES "${REPORT}")
  message(FATAL_ERROR "expected report NOT seen: ${REPORT}")
endif()
message("expected report seen: ${CMAKE_MATCH_0}")
