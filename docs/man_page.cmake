# SPDX-License-Identifier: MIT
# man_page.cmake: writes the wm(1) man page with help2man, from `wm --help` and `wm --version`: the
# synopsis from each command's usage line, the description from `wm --help` as it reads on a
# terminal, a COMMANDS section of each command's own --help, and the hand-written sections of wm.h2m.
# Run by the build: cmake -DWM_TOOL=... -DHELP2MAN=... -DINCLUDE=wm.h2m -DOUTPUT=wm.1 -P man_page.cmake
foreach(var WM_TOOL HELP2MAN INCLUDE OUTPUT)
  if(NOT ${var})
    message(FATAL_ERROR "man_page.cmake: ${var} is not set")
  endif()
endforeach()

# What the page says must not depend on who builds it: no WM_* variable of the caller (an extra
# WM_PLUGIN_PATH would add its backends' options to the page), a fixed locale.
execute_process(COMMAND ${CMAKE_COMMAND} -E environment OUTPUT_VARIABLE environment)
string(REGEX MATCHALL "(^|\n)WM_[A-Za-z0-9_]*=" wm_variables "${environment}")
foreach(entry IN LISTS wm_variables)
  string(REGEX REPLACE "^\n?(.*)=$" "\\1" name "${entry}")
  unset(ENV{${name}})
endforeach()
set(ENV{LC_ALL} C)

# Text shown as is (no filling) in roff: backslashes escaped, a line starting with '.' or '\'' kept
# from being read as a request.
function(roff_verbatim text out)
  string(REPLACE "\\" "\\e" text "${text}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# run_wm(<out> ARGS...): the tool's output for ARGS, which must succeed.
function(run_wm out)
  execute_process(COMMAND "${WM_TOOL}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_VARIABLE err TIMEOUT 60)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " args "${ARGN}")
    message(FATAL_ERROR "man_page.cmake: `wm ${args}` failed (${rc}): ${err}")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

get_filename_component(dir "${OUTPUT}" DIRECTORY)
file(MAKE_DIRECTORY "${dir}")
set(include_file "${OUTPUT}.h2m")
file(READ "${INCLUDE}" hand_written)

# SYNOPSIS: each command's usage line; DESCRIPTION: `wm --help` as it reads on a terminal;
# COMMANDS: each command's own --help.
set(synopsis "[SYNOPSIS]\n")
set(commands "[COMMANDS]\nEach command's own \\fB\\-\\-help\\fR:\n")
foreach(command list info config check status)
  run_wm(help ${command} --help)
  string(REGEX MATCH "^usage: ([^\n]*)" usage "${help}")
  roff_verbatim("${CMAKE_MATCH_1}" usage)
  string(APPEND synopsis ".nf\n${usage}\n.fi\n")
  roff_verbatim("${help}" help)
  string(APPEND commands ".SS \"wm ${command}\"\n.nf\n${help}.fi\n")
endforeach()
run_wm(general --help)
string(REGEX REPLACE "^usage: [^\n]*\n\n?" "" general "${general}")
roff_verbatim("${general}" general)
set(description "[=DESCRIPTION]\n.nf\n${general}.fi\n")
file(WRITE "${include_file}" "${synopsis}\n${description}\n${commands}\n${hand_written}")

execute_process(
  COMMAND "${HELP2MAN}" --no-info --no-discard-stderr --section=1
          "--name=lists, explains and checks the backends of the wm work managers"
          "--include=${include_file}" "--output=${OUTPUT}" "${WM_TOOL}"
  RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  file(REMOVE "${OUTPUT}")
  message(FATAL_ERROR "man_page.cmake: help2man failed (${rc}): ${err}")
endif()
