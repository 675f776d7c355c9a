#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# install_remote_backend.sh BUILD_DIR SOURCE_DIR: a third party's remote backend, as sdk/README.md
# walks through it: the example (sdk/examples/remote_backend) configured and built out of tree against
# the installed package (find_package(wm COMPONENTS sdk remote testkit)), then the installed test
# kit's conformance suite and crash matrix run on it with ctest, bounded in time.
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d /tmp/wm-remote-backend-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "remote backend: FAILED: $*" >&2; exit 1; }
for v in $(env | sed -n 's/^\(WM_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset LD_LIBRARY_PATH
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" > "$work/install.log"
cmake -S "$src/sdk/examples/remote_backend" -B "$work/pipes" -DCMAKE_PREFIX_PATH="$prefix" \
  > "$work/configure.log" 2>&1 || { cat "$work/configure.log" >&2; fail "configure"; }
cmake --build "$work/pipes" -j 2 > "$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "build"; }
[[ -f $work/pipes/wm_backend_pipes.so ]] || fail "no plugin was built"
# The conformance suite and the crash matrix, as the example's own ctest runs them.
(cd "$work/pipes" && timeout 600 ctest -j 2 --timeout 120 --output-on-failure > "$work/ctest.log" 2>&1) \
  || { tail -60 "$work/ctest.log" >&2; fail "the test kit's suite on the example backend"; }
grep -q "100% tests passed" "$work/ctest.log" || fail "not every test passed: $(tail -3 "$work/ctest.log")"
grep -q "CrashMatrix" "$work/ctest.log" || fail "the crash matrix did not run"
grep -q "Conformance" "$work/ctest.log" || fail "the conformance suite did not run"
tail -3 "$work/ctest.log"
echo "remote backend: ok"
