#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs every libFuzzer target for a bounded time and prints one line per
# target: runs, corpus size, result. Usage: run.sh BIN_DIR SECONDS TARGET...
# New inputs go to BIN_DIR/../fuzz-work/<target>/ (the committed seeds in
# tests/fuzz/corpus/<target>/ are read, never written); a failing input is
# saved as BIN_DIR/../fuzz-artifacts/<target>-crash-*, to be copied into
# tests/fuzz/corpus/<target>/regressions/ once fixed. Exit 1 if any failed.
# FUZZ_SEED (environment): libFuzzer's -seed; 0 or unset draws one.
set -u
bin_dir=$1; seconds=$2; shift 2
src_dir=$(cd "$(dirname "$0")" && pwd)
work=$bin_dir/../fuzz-work
artifacts=$bin_dir/../fuzz-artifacts
mkdir -p "$work" "$artifacts"
failed=0
printf '%-16s %10s %8s  %s\n' target runs corpus result
for t in "$@"; do
  mkdir -p "$work/$t"
  log=$work/$t.log
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a
  # bomb. Leak detection stays on (ASan's default under libFuzzer).
  "$bin_dir/fuzz_$t" -max_total_time="$seconds" -seed="${FUZZ_SEED:-0}" -timeout=10 -rss_limit_mb=2048 \
    -max_len=8192 -print_final_stats=1 -artifact_prefix="$artifacts/$t-" \
    "$work/$t" "$src_dir/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  corpus=$(ls "$work/$t" | wc -l)
  if [ $rc -eq 0 ]; then result=ok; else result="FAILED (exit $rc, see $log)"; failed=1; fi
  printf '%-16s %10s %8s  %s\n' "$t" "${runs:-?}" "$corpus" "$result"
  if [ $rc -ne 0 ]; then grep -E 'ERROR|invariant failed|SUMMARY|Test unit written' "$log" | head -n 8; fi
done
exit $failed
