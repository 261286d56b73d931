# SPDX-License-Identifier: Apache-2.0
"""Bytes, not only counts (issue 20, SPEC "Hostile input at the edges"): a
client that asks for more than it reads is a slow client, whatever its
messages, and an unfinished fragmented message holds at most --max-message.

Before: with 1,000 machines, one client sending 25 KB of `refresh` and
reading nothing grew the relay by 398 MiB (queues were bounded by count,
replies not at all)."""
import json

from relay_support import OP_CONT, OP_TEXT, RawWs, Relay
from smws_test import wait_for
from ws_raw import frame

MACHINES = 1000
REFRESHES = 1500  # ~25 KB of requests, as in the issue


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def machines(n):
    return [{"type": "state_change", "machine_id": f"m-{i}", "state": "busy",
             "data": {"pad": "x" * 200, "i": i}} for i in range(n)]


def test_a_client_that_sends_refresh_and_reads_nothing_is_closed_as_slow_with_memory_bounded():
    with Relay() as relay:
        relay.send(*machines(MACHINES))
        # A client that reads gets all of them in one ~0.25 MB snapshot.
        reader = RawWs(relay.port)
        snapshot = reader.recv_json()
        assert len(snapshot["machines"]) == MACHINES
        snapshot_bytes = len(json.dumps(snapshot))
        reader.close_socket()
        before = rss_mib(relay.pid)
        # The attacker: a small receive window, refresh after refresh, no read.
        flood = RawWs(relay.port, rcvbuf=4096)
        flood.sock.sendall(b"".join(
            frame(OP_TEXT, b'{"type":"refresh"}') for _ in range(REFRESHES)))
        relay.wait_metric("ws_relay_slow_client_closes_total", lambda v: v == 1, timeout=30)
        grown = rss_mib(relay.pid) - before
        # Counted by messages only (--max-queue 1024), its replies alone
        # would hold ~1024 x 0.25 MB; by bytes (8 MiB) it is closed after a
        # few dozen. The bound is loose (sanitizer builds keep freed memory
        # in quarantine for a while).
        assert grown < 0.4 * 1024 * snapshot_bytes / 2**20, (grown, snapshot_bytes)
        assert grown < 150, grown
        # What it finally reads ends with close 1013 (unless it took longer
        # than the 2 s close grace to read up to it: then TCP was dropped).
        try:
            while True:
                msg = flood.recv(timeout=10)
                if msg[0] == "close":
                    assert msg[1] == 1013, msg
                    break
        except (EOFError, ConnectionResetError):
            pass
        flood.close_socket()
        # The relay serves on: a new client still gets its snapshot.
        again = RawWs(relay.port)
        assert len(again.recv_json()["machines"]) == MACHINES
        again.close_socket()


def test_a_fragmented_message_over_max_message_is_closed_with_1009():
    with Relay("--max-message", "1000") as relay:
        c = RawWs(relay.port)
        assert c.recv_json()["type"] == "initial"
        part = b"x" * 400
        c.send_frame(OP_TEXT, part, fin=False)
        c.send_frame(OP_CONT, part, fin=False)
        c.send_frame(OP_CONT, part, fin=False)  # 1,200 bytes held: over
        msg = c.recv()
        assert msg[0] == "close" and msg[1] == 1009, msg
        c.close_socket()
        # Under the limit, fragments make one message (forwarded to stdout).
        ok = RawWs(relay.port)
        ok.recv_json()
        ok.send_frame(OP_TEXT, b'{"type":"note","pad":"', fin=False)
        ok.send_frame(OP_CONT, b"y" * 500, fin=False)
        ok.send_frame(OP_CONT, b'"}', fin=True)
        line = relay.stdout_line()
        assert json.loads(line)["pad"] == "y" * 500
        ok.close_socket()
