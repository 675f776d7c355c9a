#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# header_checks.sh MODE CXX INCLUDE_DIR...: what the public headers cost a program that includes them.
#  budget: <wm/wm.hpp>, and <wm/future.hpp> alone, preprocess (-std=c++20 -E) to at most 10% more
#          lines than the standard headers they need on their own (<string> <vector> <memory>
#          <functional> <optional> <chrono>), and pull in no cereal and no container header that
#          those do not; cereal comes with <wm/task.hpp>, where tasks are declared and calls bound.
#  task-include: a file that declares or submits tasks with <wm/wm.hpp> alone does not compile, and
#          the compiler says to include <wm/task.hpp> (one error per misuse); with it, it compiles
#          without a warning under -Wall -Wextra -Wpedantic (C++17 and C++20).
set -euo pipefail
mode=$1 cxx=$2
shift 2
includes=()
for d in "$@"; do [[ -n $d ]] && includes+=(-I"$d"); done
work=$(mktemp -d /tmp/wm-header-checks-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "header checks: FAILED: $*" >&2; exit 1; }

# preprocess STD OUT INCLUDE...: the preprocessed text of a file that includes the given headers.
preprocess() {
  local std=$1 out=$2
  shift 2
  printf '#include <%s>\n' "$@" | "$cxx" -std="$std" -E -x c++ "${includes[@]}" - > "$out"
}
# The files a preprocessed text came from (its line markers).
sources() { sed -n 's/^# [0-9]* "\([^"]*\)".*/\1/p' "$1" | sort -u; }

budget() {
  local std_headers=(string vector memory functional optional chrono)
  preprocess c++20 "$work/std.i" "${std_headers[@]}"
  local base limit
  base=$(wc -l < "$work/std.i")
  limit=$((base + base / 10))
  sources "$work/std.i" > "$work/std.files"
  echo "standard headers (${std_headers[*]}): $base lines; budget $limit (+10%)"
  for h in wm/wm.hpp wm/future.hpp; do
    local name=${h//\//_}
    preprocess c++20 "$work/$name.i" "$h"
    local n
    n=$(wc -l < "$work/$name.i")
    sources "$work/$name.i" | comm -13 "$work/std.files" - > "$work/$name.extra"
    echo "<$h>: $n lines ($(awk -v n="$n" -v b="$base" 'BEGIN { printf "%+.1f%%", (n - b) * 100 / b }'))"
    if grep -q '/cereal/' "$work/$name.extra"; then
      fail "<$h> includes cereal (through $(grep -m1 '/cereal/' "$work/$name.extra")); only <wm/task.hpp> may"
    fi
    local containers
    containers=$(grep -E '/(deque|list|forward_list|map|set|unordered_set|stack|queue)$' "$work/$name.extra" || true)
    [[ -z $containers ]] || fail "<$h> includes container headers the standard headers above do not: $(echo $containers)"
    if ((n > limit)); then
      echo "headers <$h> adds to the standard headers:" >&2
      sed 's/^/  /' "$work/$name.extra" >&2
      fail "<$h> preprocesses to $n lines, over the budget of $limit (10% over $base)"
    fi
  done
}

# compile NAME STD SOURCE: compiles SOURCE (text on stdin) as $work/NAME.cpp, output in NAME.log.
compile() {
  local name=$1 std=$2
  cat > "$work/$name.cpp"
  timeout 120 "$cxx" -std="$std" -Wall -Wextra -Wpedantic -Werror -fsyntax-only "${includes[@]}" "$work/$name.cpp" \
    > "$work/$name.log" 2>&1
}

task_include() {
  local body='
int square(int x) { return x * x; }
WM_TASK(square);
int run(wm::WorkManager& wm) {
  wm::Future<int> a = wm.submit(square, 3);
  wm::Future<int> b = wm.submit<int>("square", 4);
  std::vector<wm::TaskSpec<int>> specs;
  specs.push_back(wm::task(square, 5));
  std::vector<wm::Future<int>> c = wm.submit_many(std::move(specs));
  std::vector<wm::Future<int>> d = wm.submit_many(square, std::vector<std::tuple<int>>{{6}});
  return a.get_result() + b.get_result() + c[0].get_result() + d[0].get_result();
}'
  # What is left without <wm/task.hpp>: futures, waiting, and specs made elsewhere.
  local holder='
int total(wm::WorkManager& wm, std::vector<wm::TaskSpec<int>> specs) {
  int sum = 0;
  for (const wm::Future<int>& f : wm.as_completed(wm.submit_many(std::move(specs)))) sum += f.get_result();
  return sum;
}'
  for std in c++17 c++20; do
    { echo '#include <wm/wm.hpp>'; echo '#include <wm/task.hpp>'; echo "$body"; } | compile with_task "$std" \
      || { cat "$work/with_task.log" >&2; fail "tasks declared and submitted with <wm/task.hpp> ($std)"; }
    { echo '#include <wm/task.hpp>'; echo "$body" | sed -n '2,3p'; } | compile task_library "$std" \
      || { cat "$work/task_library.log" >&2; fail "a task library with <wm/task.hpp> alone ($std)"; }
    { echo '#include <wm/wm.hpp>'; echo "$holder"; } | compile holder "$std" \
      || { cat "$work/holder.log" >&2; fail "submitting specs and reading futures with <wm/wm.hpp> alone ($std)"; }
  done
  if { echo '#include <wm/wm.hpp>'; echo "$body"; } | compile without_task c++17; then
    fail "tasks declared and submitted with <wm/wm.hpp> alone compiled: the codec must come from <wm/task.hpp>"
  fi
  local errors told
  errors=$(grep -c 'error:' "$work/without_task.log" || true)
  told=$(grep -c 'error: static assertion failed: .*need.* #include <wm/task.hpp>' "$work/without_task.log" || true)
  # WM_TASK, submit(fn), submit<R>(name), wm::task, submit_many(fn, tuples): one error each.
  if [[ $told != 5 || $errors != 5 ]]; then
    cat "$work/without_task.log" >&2
    fail "without <wm/task.hpp>: $errors errors, $told of them saying to include it (5 and 5 expected)"
  fi
  echo "without <wm/task.hpp>: $errors errors, each saying to include it"
}

case $mode in
  budget) budget ;;
  task-include) task_include ;;
  *) fail "unknown mode '$mode' (budget, task-include)" ;;
esac
echo "header checks: $mode ok"
