# SPDX-License-Identifier: MIT
# wm_add_conformance_test(<target> BACKENDS <backend[:workers]>... [CRASH_MATRIX <backend[:workers]>...]
#                         [PLUGIN_DIR <dir>] [TIMEOUT <seconds>])
#
# Builds the test kit's conformance suite (and, for the backends given after CRASH_MATRIX, its crash
# matrix: crashes, exits and throws while arguments decode, tasks run and results encode, on the
# workers of a remote backend) into the test program <target>, with this project's GoogleTest, and
# registers every test with ctest. "name:4" runs the backend with WM_N_WORKERS=4. PLUGIN_DIR goes
# into WM_PLUGIN_PATH for the tests (where the backend under test is built). The program is its own
# worker for backends that start worker processes of the host program.
function(wm_add_conformance_test target)
  cmake_parse_arguments(ARG "" "PLUGIN_DIR;TIMEOUT" "BACKENDS;CRASH_MATRIX" ${ARGN})
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "wm_add_conformance_test(${target}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_BACKENDS AND NOT ARG_CRASH_MATRIX)
    message(FATAL_ERROR "wm_add_conformance_test(${target}): name the backends to test (BACKENDS, CRASH_MATRIX)")
  endif()
  if(NOT WM_TESTKIT_DIR)
    message(FATAL_ERROR "wm_add_conformance_test(${target}): call find_package(wm COMPONENTS testkit) first")
  endif()
  find_package(GTest REQUIRED)
  include(GoogleTest)
  set(dir ${WM_TESTKIT_DIR})
  add_executable(${target} ${dir}/conformance_test.cpp ${dir}/crash_matrix_test.cpp ${dir}/test_tasks.cpp
                           ${dir}/test_main.cpp ${dir}/backend_lists.cpp)
  target_include_directories(${target} PRIVATE ${dir})
  target_link_libraries(${target} PRIVATE WM::core GTest::gtest)
  list(JOIN ARG_BACKENDS "," backends)
  list(JOIN ARG_CRASH_MATRIX "," crash)
  target_compile_definitions(${target} PRIVATE WM_CONFORMANCE_BACKENDS="${backends}"
                                               WM_CRASH_MATRIX_BACKENDS="${crash}")
  set(timeout 120)
  if(ARG_TIMEOUT)
    set(timeout ${ARG_TIMEOUT})
  endif()
  set(properties TIMEOUT ${timeout})
  if(ARG_PLUGIN_DIR)
    list(APPEND properties ENVIRONMENT "WM_PLUGIN_PATH=${ARG_PLUGIN_DIR}")
  endif()
  gtest_discover_tests(${target} DISCOVERY_TIMEOUT 60 PROPERTIES ${properties})
endfunction()
