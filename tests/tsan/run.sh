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
# The integration tests that run more than one thread in one process:
#   relay: broadcast while clients connect, stall and disconnect; stdin from a
#   regular file (stdin thread); stdout and --audit (output thread); stderr
#   nobody reads (the stderr writer thread); drains;
#   hitl-approve: its reader thread, reconnects; ws-probe: --connections.
tests="
tests/tsan/test_threads.py
tests/integration/test_relay_broadcast.py::test_every_client_gets_every_event_in_stdin_order
tests/integration/test_relay_broadcast.py::test_a_burst_larger_than_a_pipe_buffer_arrives_whole_and_in_order
tests/integration/test_relay_clients.py::test_a_client_json_object_is_printed_on_stdout_as_one_compact_line
tests/integration/test_relay_clients.py::test_an_unread_stdout_bounds_the_backlog_in_bytes_not_only_in_lines
tests/integration/test_relay_clients.py::test_a_client_that_stops_reading_is_closed_1013_and_the_fast_one_gets_everything
tests/integration/test_relay_clients.py::test_exit_on_eof_delivers_everything_then_closes_1001_and_exits_0
tests/integration/test_relay_protocol.py::test_stdin_from_a_regular_file_is_read_too
tests/integration/test_relay_stderr.py
tests/integration/test_relay_protocol.py::test_random_bytes_from_many_clients_leave_the_relay_serving
tests/integration/test_hitl.py::test_script_two_approvers_race_and_exactly_one_wins
tests/integration/test_hitl.py::test_audit_file_records_every_interrupt_decision_and_timeout
tests/integration/test_hitl_audit.py
tests/integration/test_hitl.py::test_interactive_keeps_answering_pings_while_the_editor_runs
tests/integration/test_hitl.py::test_reconnects_with_backoff_after_the_relay_restarts
tests/integration/test_ws_probe.py::test_repeat_and_connections_summarise
tests/integration/test_ws_probe.py::test_200_connections_to_ws_relay_all_end_healthy
"
cd "$src/tests" || exit 2
# shellcheck disable=SC2086
SMWS_BIN_DIR=$build/bin SMWS_SOURCE_DIR=$src NODE_PATH=/usr/share/nodejs PYTHONDONTWRITEBYTECODE=1 \
TSAN_OPTIONS="log_path=$logs/tsan halt_on_error=0 second_deadlock_stack=1 history_size=4" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider --timeout=300 \
  $(echo $tests | sed 's|tests/||g')
rc=$?
reports=$(ls "$logs" | wc -l)
if [ "$reports" -gt 0 ]; then
  echo "make tsan: $reports ThreadSanitizer report file(s) in $logs:"
  for f in "$logs"/*; do echo "== $f"; head -n 40 "$f"; done
  exit 1
fi
echo "make tsan: no ThreadSanitizer reports"
exit $rc
