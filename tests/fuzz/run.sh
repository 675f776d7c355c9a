#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh: runs one fuzz target for a number of seconds on its corpus and seeds. Fails on any
# finding (crash, hang of more than 10 s on one input, leak, sanitizer report, more than 2 GiB);
# the input that caused it is kept next to the corpus, as crash-*, timeout-*, leak-* or oom-*.
# usage: run.sh <fuzzer> <corpus dir, grown> <seed dir, only read> <seconds> [--fresh]
#   --fresh: start from an empty corpus (the seeds only), as ctest's fuzz.<name> tests do.
set -euo pipefail
fuzzer=$1 corpus=$2 seeds=$3 seconds=$4
if [[ "${5:-}" == "--fresh" ]]; then rm -rf "$corpus"; fi
mkdir -p "$corpus" "$seeds"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$corpus/../$(basename "$corpus")-" "$corpus" "$seeds"
