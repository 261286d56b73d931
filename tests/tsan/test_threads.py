# SPDX-License-Identifier: Apache-2.0
"""Concurrency under ThreadSanitizer (make tsan runs this file and a few
integration tests against binaries built with -fsanitize=thread; it also
passes against the ASan build). Every thread of ws-relay is busy at once:

- stdin is a regular file, so the stdin thread ingests (under Relay::mu_)
  while the loop thread drains the inbox, takes snapshots for new clients
  and handles decisions;
- clients connect, read a little and disconnect, one stalls (never reads),
  others send messages (forwarded to stdout by the output thread) and a
  decision (the output thread fsyncs --audit);
- the end is SIGTERM, so the stdin thread and the output thread are stopped
  while they may still hold work.

Assertions are about delivery (each client gets its events once, in order);
races are ThreadSanitizer's to report, in the log files make tsan checks.
"""
import pytest
import asyncio
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))

import websockets  # noqa: E402

from smws_test import LISTEN_RE, LinePump, Proc, rmtree, short_tmpdir, tool  # noqa: E402
from relay_support import RawWs  # noqa: E402

# Every test of this file runs under ThreadSanitizer too (tests/tsan/run.sh).
pytestmark = pytest.mark.tsan


EVENTS = 20000


def write_events(path):
    with open(path, "w") as f:
        f.write(json.dumps({"type": "interrupt", "interrupt_id": "i-1", "thread_id": "t",
                            "action_requests": [{"name": "deploy", "args": {}}]}) + "\n")
        for n in range(EVENTS):
            if n % 100 == 0:
                f.write(json.dumps({"type": "state_change", "machine_id": f"m-{n % 7}",
                                    "state": f"s{n}", "n": n}) + "\n")
            else:
                f.write(json.dumps({"type": "e", "n": n}) + "\n")


async def reader(url, count):
    """Takes `count` messages after the snapshot; the event numbers it sees
    must be increasing (snapshot/history then live, never twice)."""
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        assert first["type"] == "initial"
        last = -1
        for _ in range(count):
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if "n" in msg:
                assert msg["n"] > last, (msg["n"], last)
                last = msg["n"]
        await ws.send(json.dumps({"type": "chat", "last": last}))


def names_i1(msg):
    if msg.get("type") == "interrupt":
        return msg.get("interrupt_id") == "i-1"
    return msg.get("type") == "initial" and any(p["interrupt_id"] == "i-1" for p in msg["pending"])


async def decider(url):
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        # With --audit the interrupt is pending once its record is written,
        # which may be after this client joined: decide once it is seen.
        while not names_i1(json.loads(await asyncio.wait_for(ws.recv(), 60))):
            pass
        await ws.send(json.dumps({"type": "decision", "interrupt_id": "i-1",
                                  "decisions": [{"type": "approve"}], "decided_by": "tsan"}))
        while True:  # until the decision comes back as a broadcast
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if msg.get("type") == "decision" and msg.get("interrupt_id") == "i-1":
                return msg


def test_stdin_thread_loop_and_output_thread_together():
    d = short_tmpdir()
    try:
        events = os.path.join(d, "events.ndjson")
        audit = os.path.join(d, "audit.ndjson")
        write_events(events)
        with open(events) as stdin, Proc([tool("ws-relay"), "--listen", "127.0.0.1:0",
                                          "--history", "50", "--seq", "--max-queue", "64",
                                          "--audit", audit], stdin=stdin) as p:
            err, out = LinePump(p.p.stderr), LinePump(p.p.stdout)
            m = LISTEN_RE.search(err.wait_match(LISTEN_RE, timeout=60))
            port = int(m.group(3))
            url = f"ws://127.0.0.1:{port}/ws/events"
            stalled = RawWs(port, rcvbuf=4096, timeout=60)  # never reads

            async def everyone():
                decision = asyncio.ensure_future(decider(url))
                for _ in range(4):  # waves of joiners while the file is ingested
                    await asyncio.gather(*(reader(url, 20) for _ in range(6)))
                got = await decision
                assert got["decisions"] == [{"type": "approve"}]

            asyncio.run(asyncio.wait_for(everyone(), 240))
            # Lines the clients sent came out on stdout through the output thread.
            out.wait_match(r'"type":"chat"', timeout=60)
            p.signal(signal.SIGTERM)
            assert p.wait(60) == 0
            stalled.close_socket()
        with open(audit) as f:
            kinds = [json.loads(line)["type"] for line in f]
        assert kinds.count("interrupt") == 1 and kinds.count("decision") == 1
    finally:
        rmtree(d)
