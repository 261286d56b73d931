#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make tsan: the tests that exercise threads, against the binaries of a
# -fsanitize=thread build. ThreadSanitizer writes each report to a file under
# the log directory (log_path); any such file fails the run, whatever the
# tests themselves said. Usage: run.sh TSAN_BUILD_DIR
set -u
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
logs=$build/tsan-logs
rm -rf "$logs"; mkdir -p "$logs"
# The tests that run more than one thread in one process carry the pytest
# mark `tsan` (registered in tests/conftest.py), so a renamed or moved test
# keeps its place here: the relay broadcasting while clients connect, stall
# and disconnect; stdin from a regular file (the stdin thread); stdout and
# --audit (the output thread); a stderr nobody reads (the stderr writer);
# drains; hitl-approve's reader thread and reconnects; ws-probe's
# --connections; and tests/tsan/test_threads.py, written for this run.
cd "$src/tests" || exit 2
SMWS_BIN_DIR=$build/bin SMWS_SOURCE_DIR=$src NODE_PATH=/usr/share/nodejs PYTHONDONTWRITEBYTECODE=1 \
TSAN_OPTIONS="log_path=$logs/tsan halt_on_error=0 second_deadlock_stack=1 history_size=4" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider --timeout=300 -m tsan integration tsan
rc=$?
reports=$(ls "$logs" | wc -l)
if [ "$reports" -gt 0 ]; then
  echo "make tsan: $reports ThreadSanitizer report file(s) in $logs:"
  for f in "$logs"/*; do echo "== $f"; head -n 40 "$f"; done
  exit 1
fi
echo "make tsan: no ThreadSanitizer reports"
exit $rc
