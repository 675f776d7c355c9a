#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# man_test.sh MAN_PAGE VERSION: the generated wm(1) reads as a man page: `man -l` formats it without
# a warning, with its name, version, every command with its flags, the environment and exit status.
set -euo pipefail
page=$1 version=$2
work=$(mktemp -d /tmp/wm-man-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "man test: FAILED: $*" >&2; exit 1; }
[[ -s $page ]] || fail "no man page at $page"
MANWIDTH=100 LC_ALL=C.UTF-8 timeout 60 man --warnings -l -P cat "$page" > "$work/page.txt" 2> "$work/stderr" \
  || { cat "$work/stderr" >&2; fail "man -l $page exited with $?"; }
[[ ! -s $work/stderr ]] || { cat "$work/stderr" >&2; fail "man -l $page printed warnings"; }
expect() {
  grep -q -- "$1" "$work/page.txt" || { cat "$work/page.txt" >&2; fail "the page has no line matching '$1'"; }
}
expect "^NAME$"
expect "wm - lists, explains and checks the backends"
expect "^SYNOPSIS$\|^DESCRIPTION$"
expect "wm $version"
expect "^COMMANDS$"
for command in list info config check status; do expect "^   wm $command$"; done
for flag in --why --names --json --timeout --work-manager --n-workers; do expect "$flag"; done
expect "^ENVIRONMENT$"
expect "WM_PLUGIN_PATH"
expect "WM_GPUS_PER_WORKER"
expect "WM_DASHBOARD_TOKEN"
expect "^EXIT STATUS$"
echo "man test: ok"
