#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# install_consumer.sh BUILD_DIR SOURCE_DIR: what a user of an installed wm does, in a temporary prefix.
#  1. installs the build; builds the host examples against the package (find_package(wm)) and runs
#     the demo on the installed plugins; the installed `wm` tool runs without LD_LIBRARY_PATH;
#  2. builds the SDK example backend (sdk/examples/backend) against the package, with no build type:
#     uninstalled it is found through WM_PLUGIN_PATH; installed with a prefix of its own, it lands in
#     the installed wm's plugin directory, where `wm list`, `wm check` and an unmodified host find it
#     with no WM_PLUGIN_PATH;
#  3. builds the SDK example task library against the package, installs it elsewhere, and the
#     unmodified host wm_run_task runs its tasks on serial, threads and processes, and so does the
#     installed one.
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d /tmp/wm-install-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "install consumer: FAILED: $*" >&2; exit 1; }
# expect PATTERN COMMAND...: runs the command (bounded) and checks its output has a line matching PATTERN.
expect() {
  local pattern=$1
  shift
  timeout 60 "$@" > "$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; fail "$* exited with $?"; }
  grep -q -- "$pattern" "$work/out.txt" || { cat "$work/out.txt" >&2; fail "no line matching '$pattern' from: $*"; }
}
# Only what the test sets: no plugin path, no backend choice, no library path from the caller.
for v in $(env | sed -n 's/^\(WM_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset LD_LIBRARY_PATH
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" > "$work/install.log"
plugin_dir=
for d in "$prefix"/lib*/wm/plugins "$prefix"/lib/*/wm/plugins; do [[ -d $d ]] && plugin_dir=$d && break; done
[[ -n $plugin_dir ]] || fail "no plugin directory under $prefix"
wm=$prefix/bin/wm

# The package: what its headers include is found by it; Boost.Program_options is not needed.
grep -q "cereal::cereal" "$prefix"/lib*/cmake/wm/wmTargets.cmake || fail "WM::core does not carry cereal"
! grep -q "program_options" "$prefix"/lib*/cmake/wm/wmConfig.cmake || fail "the package looks for Boost.Program_options"
! grep "INTERFACE_LINK_LIBRARIES" "$prefix"/lib*/cmake/wm/wmTargets.cmake | grep -q "program_options" \
  || fail "WM::core hands Boost.Program_options to its users"

# 1. An unmodified host, built against the installed package.
cmake -S "$src/examples" -B "$work/hosts" -DCMAKE_PREFIX_PATH="$prefix" > "$work/configure.log"
cmake --build "$work/hosts" -j 2 > "$work/build.log"
timeout 60 "$work/hosts/wm_demo"
WM_WORK_MANAGER=threads timeout 60 "$work/hosts/wm_demo"
# Watching it comes with the package: the dashboard module (loaded from the prefix), the progress
# line, the summary, `wm status`.
WM_WORK_MANAGER=threads WM_DASHBOARD=127.0.0.1:0 WM_PROGRESS=on WM_LOG_LEVEL=info timeout 60 "$work/hosts/wm_demo" \
  > "$work/watch.out" 2> "$work/watch.err" || fail "the demo, watched: $(cat "$work/watch.err")"
grep -q "\[wm threads\] info: dashboard: http://127.0.0.1:[0-9]*/" "$work/watch.err" \
  || fail "the installed dashboard did not start: $(cat "$work/watch.err")"
grep -q "\[wm progress\] info: threads: [0-9]*/[0-9]* done (100%)" "$work/watch.err" || fail "no progress line: $(cat "$work/watch.err")"
grep -q "\[wm threads\] info: summary after" "$work/watch.err" || fail "no summary: $(cat "$work/watch.err")"
"$wm" status --help | grep -q "wm status URL" || fail "the installed wm has no status command"
expect "^threads .*$plugin_dir/wm_backend_threads.so" "$wm" list

# 2. A third-party backend: one file and its CMakeLists.txt; the SDK component alone needs nothing else.
cmake -S "$src/sdk/examples/backend" -B "$work/backend" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON -DCMAKE_DISABLE_FIND_PACKAGE_cereal=ON > "$work/backend-configure.log" 2>&1
grep -q -- "-O2" "$work/backend/CMakeFiles/wm_backend_example.dir/flags.make" \
  || fail "wm_add_backend without a build type does not optimise"
cmake --build "$work/backend" > "$work/backend-build.log"
# The SDK's header compiles cleanly for a strict third party too.
c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$prefix/include" \
  "$src/sdk/examples/backend/example_backend.cpp"

# Uninstalled: found through WM_PLUGIN_PATH.
export WM_PLUGIN_PATH=$work/backend
expect "^example .*$work/backend/wm_backend_example.so" "$wm" list
expect "^example: ok" "$wm" check example
WM_WORK_MANAGER=example expect "work manager: example" "$work/hosts/wm_demo"
unset WM_PLUGIN_PATH

# Installed with a prefix of its own: it lands in the plugin directory of the wm it was built against.
cmake --install "$work/backend" --prefix "$work/backend-prefix" > "$work/backend-install.log"
[[ -f $plugin_dir/wm_backend_example.so ]] || fail "the backend was not installed into $plugin_dir"
[[ ! -e $work/backend-prefix ]] || fail "the backend was installed under its own prefix"
rm -rf "$work/backend"  # only the installed copy is left
expect "^example .*$plugin_dir/wm_backend_example.so" "$wm" list
expect "WM_EXAMPLE_ANNOUNCE / --wm-example-announce" "$wm" info example
expect "^example: ok" "$wm" check example
WM_WORK_MANAGER=example WM_EXAMPLE_ANNOUNCE=yes WM_LOG_LEVEL=info timeout 60 "$work/hosts/wm_demo" \
  > "$work/demo.out" 2> "$work/demo.err"
grep -q "work manager: example" "$work/demo.out" || fail "the demo did not run on the installed backend"
grep -q "\[wm example\] info: running 64 task(s) inline" "$work/demo.err" || fail "the backend's option was not applied"

# 3. A task library, installed elsewhere; the host loads it by path and runs its tasks by name.
cmake -S "$src/sdk/examples/tasklib" -B "$work/tasklib" -DCMAKE_PREFIX_PATH="$prefix" > "$work/tasklib-configure.log"
cmake --build "$work/tasklib" > "$work/tasklib-build.log"
cmake --install "$work/tasklib" --prefix "$work/tasks" > "$work/tasklib-install.log"
library=$(find "$work/tasks" -name libexample_tasks.so | head -1)
[[ -n $library ]] || fail "the task library was not installed"
for backend in serial threads processes; do
  WM_WORK_MANAGER=$backend timeout 60 "$work/hosts/wm_run_task" "$library" collatz_steps 27 97 > "$work/run.out"
  grep -q "^collatz_steps(27) = 111$" "$work/run.out" && grep -q "^collatz_steps(97) = 118$" "$work/run.out" \
    && grep -q "^on $backend " "$work/run.out" || fail "task library on $backend: $(cat "$work/run.out")"
done
expect "^digit_sum(1234) = 10$" \
  "$work/hosts/wm_run_task" --work-manager threads --n-workers 2 "$work/tasklib/libexample_tasks.so" digit_sum 1234
# The installed wm_run_task (sdk/README.md names it) runs from the prefix, worker processes included.
expect "^on processes with 2 worker(s)$" \
  "$prefix/bin/wm_run_task" --work-manager processes --n-workers 2 "$library" collatz_steps 27
echo "install consumer: ok"
