// SPDX-License-Identifier: MIT
// backend_lists.cpp: the backends a test program runs the suites on, the one part of the test kit
// compiled with the program's own definitions (wm_add_conformance_test sets them): the suites
// themselves are the same for every program.
#include "test_support.hpp"

#ifndef WM_CONFORMANCE_BACKENDS
#define WM_CONFORMANCE_BACKENDS ""
#endif
#ifndef WM_CRASH_MATRIX_BACKENDS
#define WM_CRASH_MATRIX_BACKENDS ""
#endif

const char* wmtest::conformance_backends() { return WM_CONFORMANCE_BACKENDS; }
const char* wmtest::crash_matrix_backends() { return WM_CRASH_MATRIX_BACKENDS; }
