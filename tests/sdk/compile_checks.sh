#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# compile_checks.sh CXX SDK_INCLUDE EXAMPLE_BACKEND: the SDK's compile-time promises.
#  - the example backend, and a backend with no options, compile without a warning under
#    -Wall -Wextra -Wpedantic -Werror (C++17 and C++20);
#  - option declarations the core would refuse (a default that does not parse or is out of range,
#    min > max) do not compile, and the compiler's message says which rule was broken; declarations
#    at the edges of the grammar do compile;
#  - WM_SDK_MIN_CORE_MINOR newer than the minor the plugin is built against does not compile.
set -euo pipefail
cxx=$1 include=$2 example=$3
work=$(mktemp -d /tmp/wm-sdk-checks-XXXXXX)
trap 'rm -rf "$work"' EXIT
flags=(-Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$include")
fail() { echo "sdk compile checks: FAILED: $*" >&2; exit 1; }

for std in c++17 c++20; do
  timeout 120 "$cxx" -std=$std "${flags[@]}" "$example" || fail "the example backend ($std)"
done

# A backend whose declaration holds the given options (none if empty).
backend() {
  cat <<CPP
#include <wm/sdk/backend.hpp>
#include <cstdint>
class B final : public wm::sdk::Backend {
 public:
  using Backend::Backend;
 protected:
  void do_submit(wm_task* const* t, std::size_t n) override { for (std::size_t i = 0; i < n; ++i) execute(t[i]); }
  unsigned do_n_workers() const override { return 1; }
};
WM_DECLARE_BACKEND(checked, B, "1.0", "compile check", WM_CAP_IN_PROCESS${1:+, $1})
CPP
}

n=0
accepted() {
  n=$((n + 1))
  backend "$1" > "$work/ok$n.cpp"
  timeout 120 "$cxx" -std=c++17 "${flags[@]}" "$work/ok$n.cpp" > "$work/ok$n.log" 2>&1 \
    || { cat "$work/ok$n.log" >&2; fail "did not compile: $1"; }
}
refused() {
  n=$((n + 1))
  backend "$1" > "$work/bad$n.cpp"
  if timeout 120 "$cxx" -std=c++17 "${flags[@]}" "$work/bad$n.cpp" > "$work/bad$n.log" 2>&1; then
    fail "compiled, but the core would refuse it: $1"
  fi
  grep -q -- "$2" "$work/bad$n.log" || { cat "$work/bad$n.log" >&2; fail "refused without saying '$2': $1"; }
}

accepted ""
accepted 'wm::sdk::option_int("n", " -3 ", -5, 5, "h")'
accepted 'wm::sdk::option_int("n", "+9223372036854775807", 0, INT64_MAX, "h")'
accepted 'wm::sdk::option_int("n", "-9223372036854775808", INT64_MIN, 0, "h")'
accepted 'wm::sdk::option_double("x", "0.1", 0.1, 1e6, "h")'
accepted 'wm::sdk::option_double("x", "-2.5E-1", -1, 0, "h"), wm::sdk::option_double("y", "1e3", 0, 1000, "h")'
accepted 'wm::sdk::option_bool("b", "Yes", "h"), wm::sdk::option_bool("c", "0", "h")'
accepted 'wm::sdk::option_string("s", "", "h")'

refused 'wm::sdk::option_int("n", "5000", 0, 1024, "h")' "default of an integer option is out of its range"
refused 'wm::sdk::option_int("n", "lots", 0, 1024, "h")' "default of an integer option is not a whole number"
refused 'wm::sdk::option_int("n", "4", 10, 1, "h")' "range of an integer option is empty"
refused 'wm::sdk::option_int("n", "99999999999999999999", 0, INT64_MAX, "h")' "default of an integer option is out of its range"
refused 'wm::sdk::option_double("x", "fast", 0, 1, "h")' "default of a number option is not a decimal number"
refused 'wm::sdk::option_double("x", "2.5", 0, 1, "h")' "default of a number option is out of its range"
refused 'wm::sdk::option_double("x", "0.5", 1, 0, "h")' "range of a number option is empty"
refused 'wm::sdk::option_bool("b", "maybe", "h")' "default of a bool option must be"
refused 'wm::sdk::option_int("Bad_Name", "1", 0, 2, "h")' "option names use only"

# The oldest core minor a plugin runs on (WM_SDK_MIN_CORE_MINOR, written into its record) is at most
# the minor it is built against.
min_core() {
  n=$((n + 1))
  { echo "#define WM_SDK_MIN_CORE_MINOR $1"; backend ""; } > "$work/min$n.cpp"
  timeout 120 "$cxx" -std=c++17 "${flags[@]}" "$work/min$n.cpp" > "$work/min$n.log" 2>&1
}
min_core 0 || { cat "$work/min$n.log" >&2; fail "did not compile: WM_SDK_MIN_CORE_MINOR 0"; }
if min_core 'WM_ABI_MINOR + 1'; then fail "compiled: WM_SDK_MIN_CORE_MINOR newer than WM_ABI_MINOR"; fi
grep -q "WM_SDK_MIN_CORE_MINOR is newer than the ABI minor" "$work/min$n.log" \
  || { cat "$work/min$n.log" >&2; fail "a too new WM_SDK_MIN_CORE_MINOR was refused without saying why"; }
echo "sdk compile checks: ok ($n declarations)"
