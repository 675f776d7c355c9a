#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# doxygen_test.sh DOXYGEN DOXYFILE: `make docs` without a warning. Runs Doxygen with the project's
# configuration (warnings are errors) into a scratch directory: it must exit 0, print nothing, and
# write the pages a reader opens first (the index, the work manager, the backend base class).
set -euo pipefail
doxygen=$1 doxyfile=$2
work=$(mktemp -d /tmp/wm-doxygen-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "doxygen test: FAILED: $*" >&2; exit 1; }
# The same configuration, written elsewhere (a later setting wins).
{ cat "$doxyfile"; echo "OUTPUT_DIRECTORY = $work/out"; } > "$work/Doxyfile"
status=0
timeout 120 "$doxygen" "$work/Doxyfile" > "$work/stdout" 2> "$work/stderr" || status=$?
if [[ $status -ne 0 || -s $work/stderr ]]; then
  cat "$work/stderr" >&2
  fail "doxygen exited with $status and $(grep -c . "$work/stderr") line(s) of warnings"
fi
for page in index.html classwm_1_1WorkManager.html classwm_1_1sdk_1_1Backend.html; do
  [[ -s $work/out/html/$page ]] || fail "no $page in the API reference"
done
# WM_TASK is declared in a detail header that <wm/task.hpp> completes: the macro index must reach it.
grep -q "WM_TASK" "$work/out/html/globals_defs.html" || fail "the index of macros does not list WM_TASK"
grep -q "Registers the function" "$work/out/html/task__decl_8hpp.html" || fail "WM_TASK is not documented"
echo "doxygen test: ok"
