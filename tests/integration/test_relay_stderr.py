# SPDX-License-Identifier: Apache-2.0
"""Issue 14: nothing on ws-relay's loop thread writes to stderr with a
blocking write(2). Before, a stderr pipe nobody read stopped the relay at
its first warning past the pipe's 64 KiB: no pings, no broadcasts, no
/healthz. Now warnings go through a bounded queue and a thread of their
own, and the ones that do not fit are counted in /metrics."""
import pytest
import asyncio

from relay_support import HandshakeRefused, RawWs, Relay, event, recv_json, recv_until, run, ws_connect


# Every test of this file runs under ThreadSanitizer too (tests/tsan/run.sh).
pytestmark = pytest.mark.tsan


def test_a_relay_whose_stderr_nobody_reads_keeps_serving_while_it_warns():
    with Relay("--ping-interval", "0.2", "--max-clients", "1", read_stderr=False) as relay:
        # 30,000 invalid stdin lines: a warning each, ~2 MB of stderr, far
        # more than the pipe and the queue hold.
        writer = relay.send_in_background(["not json %d" % i for i in range(30000)])
        writer.join(20)
        assert not writer.is_alive(), "ws-relay stopped reading stdin"

        async def scenario():
            async with ws_connect(relay.url) as ws:
                first = await recv_json(ws)
                assert first["type"] == "initial"
                # Refused upgrades warn too (the relay is full).
                for _ in range(20):
                    try:
                        RawWs(relay.port).close_socket()
                        raise AssertionError("--max-clients 1 let a second client in")
                    except HandshakeRefused as e:
                        assert e.status == 503
                relay.send(event(1), "still not json", event(2))
                await recv_until(ws, lambda m: m.get("n") == 2)
                # Pings every 0.2 s go on: the library answers them, and a
                # ping of ours gets its pong (the loop reads and writes).
                pong = await ws.ping()
                await asyncio.wait_for(pong, 10)
                assert relay.healthz()["events_in"] == 2
        run(scenario())
        metrics = relay.metrics()
        assert metrics["ws_relay_stderr_dropped_total"] > 0
        assert metrics["ws_relay_invalid_lines_total"] == 30001
        assert metrics["ws_relay_ping_timeouts_total"] == 0
