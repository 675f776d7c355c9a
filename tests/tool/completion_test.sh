#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# completion_test.sh COMPLETION_FILE WM TEST_PLUGIN_DIR: completes `wm ...` command lines in a
# scripted bash, as bash-completion does at a TAB: commands, backend names (the ones this wm finds,
# WM_PLUGIN_PATH included), flags of each command, and what follows a flag or an operand.
set -uo pipefail
completion=$1 wm=$2 test_plugins=$3
bash_completion=/usr/share/bash-completion/bash_completion
[[ -r $bash_completion ]] || { echo "completion test: FAILED: no $bash_completion (Debian package bash-completion)" >&2; exit 1; }
for v in $(env | sed -n 's/^\(WM_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
# `wm` is the build's tool, as a user's PATH would find the installed one.
PATH=$(dirname "$wm"):$PATH
# shellcheck disable=SC1090
source "$bash_completion"
# shellcheck disable=SC1090
source "$completion"
failures=0

# complete LINE: COMPREPLY for LINE with the cursor at its end (a trailing space starts a new word).
complete_line() {
  local line=$1
  read -r -a COMP_WORDS <<< "$line"
  [[ $line == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE=$line
  COMP_POINT=${#line}
  COMPREPLY=()
  _wm wm "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

# expect LINE WORDS: the completions are exactly WORDS (sorted, space-separated).
expect() {
  local got
  got=$(complete_line "$1")
  if [[ $got != "$2" ]]; then
    echo "completion test: '$1<TAB>' gave '$got', expected '$2'" >&2
    failures=$((failures + 1))
  fi
}
# expect_has LINE WORD...: the completions include each WORD.
expect_has() {
  local line=$1 got
  shift
  got=" $(complete_line "$line") "
  for w in "$@"; do
    if [[ $got != *" $w "* ]]; then
      echo "completion test: '$line<TAB>' gave '$got', which lacks '$w'" >&2
      failures=$((failures + 1))
    fi
  done
}

expect "wm i" "info"
expect "wm " "check config help info list plugins status"
expect "wm c" "check config"
expect "wm s" "status"
expect_has "wm status --" --json --token --timeout --help
expect "wm config --wm-progress " "auto off on"
expect "wm config --wm-dump-signal U" "USR1 USR2"
expect_has "wm config --wm-d" --wm-dashboard --wm-dump-signal
expect "wm --v" "--version"
expect "wm help c" "check config"
# Backend names: those this wm finds, bundled and through WM_PLUGIN_PATH.
expect_has "wm info " serial threads processes
expect "wm info th" "threads"
expect "wm check s" "serial"
expect "wm info threads " ""
expect "wm config --work-manager pro" "processes"
expect "wm config --work-manager=th" "threads"
expect "wm config --n-workers " ""
export WM_PLUGIN_PATH=$test_plugins
expect "wm info lo" "loopback"
expect "wm config --work-manager lo" "loopback"
unset WM_PLUGIN_PATH
expect "wm info lo" ""
# Flags, from each command's --help.
expect_has "wm list --" --why --names --json --help
expect_has "wm check --" --timeout --json --n-workers --work-manager
expect "wm config --wm-threads-sp" "--wm-threads-spin-us"
expect "wm check threads --ti" "--timeout"
# wm's GPU and core options, and the values of --wm-bind.
expect "wm config --wm-gpus" "--wm-gpus --wm-gpus-per-worker"
expect "wm config --wm-cpus" "--wm-cpus-per-worker"
expect "wm config --wm-bind " "cores none numa"
expect "wm config --wm-bind n" "none numa"

if ((failures > 0)); then
  echo "completion test: FAILED ($failures case(s))" >&2
  exit 1
fi
echo "completion test: ok"
