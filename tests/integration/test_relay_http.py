# SPDX-License-Identifier: Apache-2.0
"""ws-relay's HTTP endpoints on the WebSocket port: /healthz, /metrics, /,
and 404 for anything else."""
import re

from relay_support import RawWs, Relay, event, recv_json, recv_until, run, ws_connect

# A Prometheus text-format sample: name, optional labels, a float value.
SAMPLE_RE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+]?([0-9.eE+-]+|NaN|[+-]?Inf)$')


def test_healthz_reports_clients_events_messages_drops_and_uptime():
    with Relay() as relay:
        h = relay.healthz()
        assert h["status"] == "ok"
        assert h["clients"] == 0 and h["events_in"] == 0 and h["dropped"] == 0
        assert isinstance(h["uptime_s"], (int, float)) and h["uptime_s"] >= 0

        async def scenario():
            async with ws_connect(relay.url) as a, ws_connect(relay.url) as b:
                await recv_json(a)
                await recv_json(b)
                relay.send(event(1), "garbage", event(2), event(3))
                for ws in (a, b):
                    await recv_until(ws, lambda m: m.get("n") == 3)
                h = relay.healthz()
                assert h["clients"] == 2
                assert h["events_in"] == 3  # the garbage line is not an event
                # 2 snapshots + 2 x 3 events were handed out (the messages are
                # counted once written, and both clients have read them all).
                assert h["messages_out"] == 8
                assert h["dropped"] == 0
        run(scenario())
        status, headers, _ = relay.http_get("/healthz")
        assert headers["content-type"].startswith("application/json")


def test_metrics_is_prometheus_text_with_the_relay_counters():
    with Relay() as relay:
        async def scenario():
            async with ws_connect(relay.url) as ws:
                await recv_json(ws)
                relay.send(event(1), "not json", event(2))
                await recv_until(ws, lambda m: m.get("n") == 2)
                status, headers, body = relay.http_get("/metrics")
                return status, headers, body
        status, headers, body = run(scenario())
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        samples = {}
        typed = set()
        for line in body.splitlines():
            if not line:
                continue
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
                typed.add(name)
                continue
            if line.startswith("#"):
                assert line.startswith("# HELP "), line
                continue
            assert SAMPLE_RE.match(line), f"not a Prometheus sample: {line!r}"
            name, value = line.rsplit(" ", 1)
            samples[name.split("{")[0]] = float(value)
        assert set(samples) <= typed, "every sample has a # TYPE line"
        # What the issue asks /metrics to show: clients, events in, messages
        # out, drops, slow-client closes, ping timeouts.
        def one(*words):
            names = [n for n in samples if all(w in n for w in words)]
            assert len(names) == 1, (words, sorted(samples))
            return samples[names[0]]
        assert one("clients") == 1
        assert one("events_in") == 2
        assert one("messages_out") == 3
        assert one("ws_relay_dropped") == 0
        assert one("slow") == 0
        assert one("ping_timeout") == 0
        assert one("invalid") == 1
        assert one("accepts_shed") == 0


def test_root_serves_an_html_page():
    with Relay() as relay:
        status, headers, body = relay.http_get("/")
        assert status == 200
        assert headers["content-type"].startswith("text/html")
        assert "<html" in body.lower()


def test_other_paths_are_404_and_the_relay_goes_on():
    with Relay() as relay:
        for path in ("/nope", "/healthz/x", "/ws/eventsx", "/metrics.txt"):
            assert relay.http_get(path)[0] == 404, path
        assert relay.healthz()["status"] == "ok"


def test_a_plain_get_on_the_websocket_path_is_not_an_upgrade():
    with Relay() as relay:
        status, _, _ = relay.http_get("/ws/events")
        assert status in (400, 426), status


def test_http_on_a_custom_path():
    with Relay("--path", "/stream") as relay:
        assert relay.url.endswith("/stream")
        assert RawWs(relay.port, path="/stream").recv_json()["type"] == "initial"
        assert relay.http_get("/ws/events")[0] == 404
