# SPDX-License-Identifier: Apache-2.0
"""ws-probe against real servers on 127.0.0.1: one misbehaving fixture server
per failure mode (tests/support/probe_fixtures.py), a healthy one, Node's
`ws`, and ws-relay. Each test asserts the verdict's cause, the close code,
FIN vs RST, timings within a tolerance, and the exit code.

Timings: the fixtures act on a scale of 0.2-2 s; the tolerances below are
wide (the sanitizer build and a shared machine are slow) but still tell the
cases apart."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from probe_fixtures import FixtureServer, read_line
from smws_test import Proc, SOURCE_DIR, free_port, rmtree, run, short_tmpdir, tool

CAUSES = {"healthy", "server_waits_for_client", "idle_timeout", "ping_timeout", "handshake_refused",
          "server_closed", "server_error", "connection_reset", "stalled_server", "unreachable"}
NUMBER = (int, float)

# The --json contract (SPEC, Edge rules), as a small schema: a type, a tuple of
# types/allowed values (None allows null), or a nested dict.
REPORT_SCHEMA = {
    "url": str,
    "connect_ms": (int, float, None),
    "handshake_ms": (int, float, None),
    "status": (int, None),
    "messages": int,
    "pings_received": int,
    "close": {
        "code": (int, None),
        "reason": str,
        "by": ("server", "client", "none"),
        "tcp_end": ("fin", "rst", None),
        "after_s": (int, float),
        "since_last_frame_s": (int, float, None),
    },
    "verdict": {"cause": tuple(CAUSES), "text": str},
}


def check_schema(value, schema, where="report"):
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{where} is not an object: {value!r}"
        for key, sub in schema.items():
            assert key in value, f"{where} lacks {key!r}"
            check_schema(value[key], sub, f"{where}.{key}")
        return
    if isinstance(schema, type):
        schema = (schema,)
    types = tuple(s for s in schema if isinstance(s, type))
    literals = [s for s in schema if not isinstance(s, type)]
    if value is None:
        assert None in literals, f"{where} is null"
        return
    if isinstance(value, bool):
        assert bool in types, f"{where} is a boolean: {value!r}"
        return
    if types and isinstance(value, types):
        return
    assert value in literals, f"{where} = {value!r}, expected one of {schema}"


def probe(url, *args, timeout=30, input=None):
    """Runs ws-probe --json; returns (report dict, exit code, stderr)."""
    result = run([tool("ws-probe"), "--json", *args, url], input=input, timeout=timeout)
    # A sanitizer report would hide behind the expected exit 1 of many cases.
    assert "Sanitizer" not in result.stderr and "runtime error:" not in result.stderr, result.stderr
    assert result.stdout.count("\n") == 1, f"expected one JSON line, got {result.stdout!r} / {result.stderr}"
    report = json.loads(result.stdout)
    return report, result.returncode, result.stderr


def probe_checked(url, *args, **kw):
    report, code, stderr = probe(url, *args, **kw)
    check_schema(report, REPORT_SCHEMA)
    assert report["exit_code"] == code
    return report, code, stderr


def test_healthy_server_is_healthy_and_exits_0():
    with FixtureServer("healthy") as server:
        report, code, _ = probe_checked(server.url, "--duration", "1")
    assert code == 0
    assert report["verdict"]["cause"] == "healthy"
    assert report["status"] == 101
    assert report["close"]["code"] == 1000 and report["close"]["by"] == "client"
    assert report["close"]["tcp_end"] is None
    assert report["close"]["server_answered_close"] is True
    assert 0.8 <= report["close"]["after_s"] <= 2.0
    assert report["messages"] >= 3 and report["types"]["hello"] == 1
    assert report["connect_ms"] >= 0 and report["handshake_ms"] >= 0
    # Every frame in and out is there with its time since connect, in order.
    times = [f["t"] for f in report["frames"]]
    assert times == sorted(times)
    assert report["frames"][0]["dir"] == "in" and report["frames"][0]["detail"] == "hello"
    # The probe's close is the last frame it sent, and the server's echo ends the
    # list. A tick the server sent before it read our close may come between the
    # two (RFC 6455 5.5.1 allows data until the close is received): that race
    # failed this test under load when it asserted frames[-2] was our close.
    ours = [i for i, f in enumerate(report["frames"]) if f["dir"] == "out"]
    assert report["frames"][ours[-1]]["op"] == "close"
    assert all(f["dir"] == "in" for f in report["frames"][ours[-1] + 1:])
    assert report["frames"][-1]["dir"] == "in" and report["frames"][-1]["op"] == "close"


def test_human_report_names_the_verdict_and_with_v_the_headers():
    with FixtureServer("healthy") as server:
        result = run([tool("ws-probe"), "-v", "--duration", "0.3", server.url], timeout=20)
    assert result.returncode == 0, result.stderr
    assert "verdict: healthy" in result.stdout
    assert "< Sec-WebSocket-Accept:" in result.stdout
    assert "> Sec-WebSocket-Key:" in result.stdout


def test_drop_after_greeting_while_silent_is_server_waits_for_client():
    with FixtureServer("waits") as server:
        report, code, _ = probe_checked(server.url, "--duration", "3")
    assert code == 1
    assert report["verdict"]["cause"] == "server_waits_for_client"
    close = report["close"]
    assert close["code"] == 1006 and close["by"] == "server" and close["tcp_end"] == "fin"
    assert 0.3 <= close["after_s"] <= 1.5  # the fixture waits 0.5 s for input
    assert report["messages"] == 1


def test_sending_a_first_message_confirms_the_waiting_server():
    with FixtureServer("waits") as server:
        report, code, _ = probe_checked(server.url, "--duration", "1", "--send", '{"type":"hello"}')
    assert code == 0, report["verdict"]
    assert report["verdict"]["cause"] == "healthy"
    assert report["messages_sent"] == 1 and report["messages"] == 2  # greeting + echo


def test_idle_drop_is_idle_timeout_with_fin_and_the_silence_measured():
    with FixtureServer("idle", 1.5) as server:
        report, code, _ = probe_checked(server.url, "--duration", "6")
    assert code == 1
    assert report["verdict"]["cause"] == "idle_timeout"
    close = report["close"]
    assert close["code"] == 1006 and close["tcp_end"] == "fin"
    assert 1.2 <= close["since_last_frame_s"] <= 2.2
    assert 2.4 <= close["after_s"] <= 4.0  # last message at 1.2 s + 1.5 s
    assert "no well-known default" in report["verdict"]["text"]


def test_reset_is_connection_reset_with_rst():
    with FixtureServer("rst") as server:
        report, code, _ = probe_checked(server.url, "--duration", "5")
    assert code == 1
    assert report["verdict"]["cause"] == "connection_reset"
    assert report["close"]["code"] == 1006 and report["close"]["tcp_end"] == "rst"
    assert report["close"]["since_last_frame_s"] < 1.0


def test_unanswered_pings_are_ping_timeout():
    with FixtureServer("ping") as server:
        report, code, _ = probe_checked(server.url, "--duration", "4", "--no-pong")
    assert code == 1
    assert report["verdict"]["cause"] == "ping_timeout"
    assert report["close"] == {**report["close"], "code": 1008, "reason": "ping timeout", "by": "server"}
    assert report["pings_received"] >= 1 and report["pings_answered"] == 0


def test_answered_pings_keep_the_pinging_server_healthy():
    with FixtureServer("ping") as server:
        report, code, _ = probe_checked(server.url, "--duration", "1.2")
    assert code == 0, report["verdict"]
    assert report["pings_received"] >= 2
    assert report["pings_answered"] == report["pings_received"]


def test_application_pings_need_app_pong():
    with FixtureServer("appping") as server:
        report, code, _ = probe_checked(server.url, "--duration", "4")
        assert code == 1
        assert report["verdict"]["cause"] == "ping_timeout"
        assert "--app-pong" in report["verdict"]["text"]
        report, code, _ = probe_checked(server.url, "--duration", "1.2", "--app-pong")
        assert code == 0, report["verdict"]
        assert report["app_pongs_sent"] >= 2


@pytest.mark.parametrize("code,cause", [(1011, "server_error"), (1013, "server_closed"), (1008, "server_closed")])
def test_server_close_codes_are_reported_and_explained(code, cause):
    with FixtureServer("close", code) as server:
        report, exit_code, _ = probe_checked(server.url, "--duration", "3")
    assert exit_code == 1
    assert report["verdict"]["cause"] == cause
    assert report["close"]["code"] == code and report["close"]["by"] == "server"
    assert report["close"]["tcp_end"] is None
    assert 0.2 <= report["close"]["after_s"] <= 1.5
    words = {1011: "internal error", 1013: "try again later", 1008: "policy violation"}[code]
    assert words in report["verdict"]["text"]


@pytest.mark.parametrize("mode,status,words", [
    ("refuse403", 403, "HTTP 403"),
    ("plain200", 200, "Upgrade"),
    ("badaccept", 101, "wrong Sec-WebSocket-Accept"),
    ("noupgrade", 101, "without an 'Upgrade: websocket'"),
])
def test_refused_handshakes_exit_1_with_the_status(mode, status, words):
    with FixtureServer(mode) as server:
        report, code, _ = probe_checked(server.url, "--duration", "1")
    assert code == 1
    assert report["verdict"]["cause"] == "handshake_refused"
    assert report["status"] == status
    assert words in report["verdict"]["text"]
    assert report["close"]["code"] is None
    if mode == "refuse403":
        assert report["body"] == "origin not allowed"


def test_handshake_that_never_completes_exits_75():
    with FixtureServer("hang") as server:
        report, code, _ = probe_checked(server.url, "--connect-timeout", "0.5")
    assert code == 75
    assert report["verdict"]["cause"] == "unreachable"
    assert report["connect_ms"] is not None and report["status"] is None


def test_nothing_listening_exits_69():
    report, code, _ = probe_checked(f"ws://127.0.0.1:{free_port()}/ws")
    assert code == 69
    assert report["verdict"]["cause"] == "unreachable"
    assert "refused" in report["verdict"]["text"]
    assert report["connect_ms"] is None


def test_stalled_sender_is_stalled_server_with_gap_and_lag():
    with FixtureServer("stall") as server:
        report, code, _ = probe_checked(server.url, "--duration", "2.5")
    assert code == 1
    assert report["verdict"]["cause"] == "stalled_server"
    lag = report["timestamp_lag"]
    assert lag["late"] >= 3 and 1.0 < lag["worst_excess_s"] <= 2.5
    assert 1.0 <= report["longest_gap_s"] <= 2.5
    assert report["close"]["by"] == "client"


def test_proxies_are_named_and_a_forced_deflate_is_refused():
    # SPEC, Hostile input at the edges: a permessage-deflate the probe did not
    # offer fails the connection (RFC 7692 §5) and the verdict names it. (This
    # test used to expect the forced deflate to be accepted and only noted.)
    with FixtureServer("proxied") as server:
        report, code, _ = probe_checked(server.url, "--duration", "0.3")
    names = [i["name"] for i in report["intermediaries"]]
    assert names == ["nginx", "Varnish", "Cloudflare"]
    assert code == 1
    assert report["status"] == 101
    assert report["extensions"] == "permessage-deflate"
    assert report["verdict"]["cause"] == "handshake_refused"
    assert "permessage-deflate" in report["verdict"]["text"]
    assert "did not offer" in report["verdict"]["text"] or "offered no extension" in report["verdict"]["text"]
    assert report["messages"] == 0 and report["close"]["by"] == "none"


def test_ping_measures_rtt():
    with FixtureServer("healthy") as server:
        report, code, _ = probe_checked(server.url, "--duration", "0.9", "--ping", "0.2")
    assert code == 0
    assert report["pings_sent"] >= 3
    assert report["rtt_ms"]["count"] == report["pongs_received"] >= 3
    assert 0 <= report["rtt_ms"]["min"] <= report["rtt_ms"]["max"] < 1000


@pytest.mark.tsan
def test_repeat_and_connections_summarise():
    with FixtureServer("healthy") as server:
        result = run([tool("ws-probe"), "--json", "--duration", "0.3", "--repeat", "2", "--connections", "3",
                      server.url], timeout=30)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total"] == 6
    assert report["summary"]["causes"] == {"healthy": 6}
    assert report["summary"]["close_codes"] == {"1000": 6}
    for r in report["results"]:
        check_schema(r, REPORT_SCHEMA)


def test_connections_summary_counts_each_ending():
    with FixtureServer("waits") as server:
        result = run([tool("ws-probe"), "--duration", "2", "--connections", "4", server.url], timeout=30)
    assert result.returncode == 1
    assert "server_waits_for_client 4" in result.stdout
    assert "tcp end      fin x4" in result.stdout


def test_find_idle_timeout_measures_the_drop():
    with FixtureServer("idle", 1.5) as server:
        report, code, stderr = probe(server.url, "--find-idle-timeout", "4")
    assert code == 1, stderr
    found = report["find_idle_timeout"]
    assert 1.2 <= found["idle_timeout_s"] <= 2.2
    assert found["lower_s"] <= found["upper_s"]
    assert found["trials"][0]["survived"] is False
    assert any(t["survived"] for t in found["trials"])  # bracketed from below too
    assert report["verdict"]["cause"] == "idle_timeout"
    assert found["matches"] == []


def test_find_idle_timeout_reports_an_early_drop_as_what_it_is():
    with FixtureServer("waits") as server:
        report, code, _ = probe(server.url, "--find-idle-timeout", "3")
    assert code == 1
    assert report["verdict"]["cause"] == "server_waits_for_client"


def test_find_idle_timeout_without_a_timeout_is_healthy():
    with FixtureServer("echo") as server:
        report, code, _ = probe(server.url, "--find-idle-timeout", "0.8")
    assert code == 0
    assert report["find_idle_timeout"]["idle_timeout_s"] is None
    assert report["verdict"]["cause"] == "healthy"


def test_sigint_closes_with_1001_and_exits_0():
    with FixtureServer("healthy") as server:
        with Proc([tool("ws-probe"), "--json", "-v", "--duration", "30", server.url]) as p:
            line = read_line(p.p.stderr, 10, "ws-probe")
            assert "connected to" in line
            p.signal(signal.SIGINT)
            assert p.wait(10) == 0
            report = json.loads(p.p.stdout.read())
    assert report["close"]["code"] == 1001 and report["close"]["by"] == "client"
    assert report["verdict"]["cause"] == "healthy"


@pytest.mark.parametrize("args", [
    ["--cat", "--connections", "2"],
    ["--find-idle-timeout", "5", "--send", "x"],
    ["-H", "no colon here"],
    ["--duration", "-1"],
    ["--connections", "0"],
])
def test_usage_errors_exit_64(args):
    result = run([tool("ws-probe"), *args, "ws://127.0.0.1:1/"], timeout=10)
    assert result.returncode == 64
    assert "ws-probe: error:" in result.stderr


def test_not_a_websocket_url_exits_64():
    result = run([tool("ws-probe"), "ftp://example/"], timeout=10)
    assert result.returncode == 64
    assert "not a ws:// or wss:// URL" in result.stderr


# --- --cat --------------------------------------------------------------------

class CatProbe:
    """ws-probe --cat with pipes on both ends."""

    def __init__(self, url, *args):
        self.proc = Proc([tool("ws-probe"), "--cat", *args, url], stdin=subprocess.PIPE)

    def send(self, line):
        self.proc.p.stdin.write((line + "\n").encode())
        self.proc.p.stdin.flush()

    def receive(self, what="a line", timeout=10):
        return read_line(self.proc.p.stdout, timeout, f"ws-probe --cat ({what})").rstrip("\n")

    def finish(self, timeout=10):
        self.proc.p.stdin.close()
        code = self.proc.wait(timeout)
        return code, self.proc.p.stdout.read().decode(), self.proc.p.stderr.read().decode()


def node_server(*args):
    return Proc(["/usr/bin/node", os.path.join(SOURCE_DIR, "tests", "support", "probe_node_echo.js"), *args],
                env={"NODE_PATH": os.environ.get("NODE_PATH", "/usr/share/nodejs")})


def test_cat_against_node_ws_echoes_lines_and_exits_0():
    with node_server("greet") as server:
        port = int(read_line(server.p.stdout, 10, "node ws server").split()[1])
        cat = CatProbe(f"ws://127.0.0.1:{port}/")
        with cat.proc:
            assert json.loads(cat.receive("greeting")) == {"type": "hello"}
            cat.send("hello")
            assert cat.receive("echo") == "hello"
            cat.send('{"type":"x","text":"grüße"}')
            assert cat.receive("echo") == '{"type":"x","text":"grüße"}'
            code, rest, stderr = cat.finish()
    assert code == 0, stderr
    assert rest == ""


def test_headers_origin_and_subprotocol_are_sent():
    with FixtureServer("headers") as server:
        cat = CatProbe(server.url, "-H", "Authorization: Bearer s3cret", "--header", "User-Agent: dashboard/1.0",
                       "--origin", "https://app.example", "--subprotocol", "a, b", "--subprotocol", "c")
        with cat.proc:
            greeting = json.loads(cat.receive("headers"))
            code, _, stderr = cat.finish()
    assert code == 0, stderr
    sent = greeting["headers"]
    assert sent["authorization"] == "Bearer s3cret"
    assert sent["user-agent"] == "dashboard/1.0"  # -H replaces the default
    assert sent["origin"] == "https://app.example"
    assert sent["sec-websocket-protocol"] == "a, b, c"
    assert sent["sec-websocket-version"] == "13"


def test_subprotocol_chosen_by_node_ws_is_reported():
    with node_server() as server:
        port = int(read_line(server.p.stdout, 10, "node ws server").split()[1])
        report, code, _ = probe_checked(f"ws://127.0.0.1:{port}/", "--subprotocol", "chat,superchat",
                                        "--duration", "0.2")
    assert code == 0, report["verdict"]
    assert report["subprotocol"] == "chat"


def test_cat_reports_a_bad_line_and_sends_the_rest():
    with FixtureServer("echo") as server:
        cat = CatProbe(server.url)
        with cat.proc:
            cat.proc.p.stdin.write(b"one\n\xff\xfe\ntwo\n")
            cat.proc.p.stdin.flush()
            assert cat.receive() == "one"
            assert cat.receive() == "two"
            code, _, stderr = cat.finish()
    assert code == 65
    assert "stdin line 2" in stderr


def start_relay(*args):
    try:
        relay_bin = tool("ws-relay")
    except FileNotFoundError as e:
        pytest.skip(f"ws-relay is not built yet: {e}")
    proc = Proc([relay_bin, "--listen", "127.0.0.1:0", *args], stdin=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = read_line(proc.p.stderr, max(0.1, deadline - time.monotonic()), "ws-relay")
        match = re.search(r"listening on (ws://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise TimeoutError("ws-relay did not say where it listens")


def test_cat_against_ws_relay_both_directions():
    relay, url = start_relay()
    with relay:
        cat = CatProbe(url)
        with cat.proc:
            snapshot = json.loads(cat.receive("snapshot"))
            assert snapshot["type"] == "initial"
            event = {"type": "state_change", "machine_id": "m-1", "state": "busy", "timestamp": 1700000000.5}
            relay.p.stdin.write((json.dumps(event) + "\n").encode())
            relay.p.stdin.flush()
            got = json.loads(cat.receive("event"))
            assert got["type"] == "state_change" and got["machine_id"] == "m-1"
            cat.send('{"type":"note","text":"from the probe"}')
            printed = json.loads(read_line(relay.p.stdout, 10, "ws-relay stdout"))
            assert printed["type"] == "note" and printed["text"] == "from the probe"
            code, _, stderr = cat.finish()
    assert code == 0, stderr


@pytest.mark.tsan
def test_200_connections_to_ws_relay_all_end_healthy():
    relay, url = start_relay()
    with relay:
        result = run([tool("ws-probe"), "--json", "--duration", "1.5", "--connections", "200", url], timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout)
    assert report["total"] == 200
    assert report["summary"]["causes"] == {"healthy": 200}
    assert report["summary"]["close_codes"] == {"1000": 200}
    assert all(r["types"].get("initial") == 1 for r in report["results"])


# --- wss:// -------------------------------------------------------------------

@pytest.fixture(scope="module")
def self_signed():
    """A throwaway self-signed certificate for 127.0.0.1 (openssl CLI)."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    directory = short_tmpdir()
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    made = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-subj", "/CN=localhost",
                "-days", "1", "-keyout", key, "-out", cert], timeout=60)
    assert made.returncode == 0, made.stderr
    yield cert, key
    rmtree(directory)


def test_wss_with_insecure_is_healthy(self_signed):
    with FixtureServer("healthy", tls=self_signed) as server:
        report, code, _ = probe_checked(server.url, "--insecure", "--duration", "0.5")
    assert code == 0, report["verdict"]
    assert report["messages"] >= 2 and report["close"]["server_answered_close"] is True
    # Regression: TLS reads once waited for the next record, stretching the run.
    assert report["close"]["after_s"] <= 0.5 + 1.5


def test_wss_with_an_untrusted_certificate_exits_69_and_names_it(self_signed):
    with FixtureServer("healthy", tls=self_signed) as server:
        report, code, _ = probe_checked(server.url, "--duration", "0.5")
    assert code == 69
    assert report["verdict"]["cause"] == "unreachable"
    assert "certificate" in report["verdict"]["text"] and "--insecure" in report["verdict"]["text"]


@pytest.mark.parametrize("mode,arg,cause,tcp_end", [("idle", 1.2, "idle_timeout", "fin"),
                                                    ("rst", None, "connection_reset", "rst")])
def test_wss_tells_fin_from_rst(self_signed, mode, arg, cause, tcp_end):
    with FixtureServer(mode, arg, tls=self_signed) as server:
        report, code, _ = probe_checked(server.url, "--insecure", "--duration", "5")
    assert code == 1
    assert report["verdict"]["cause"] == cause
    assert report["close"]["code"] == 1006 and report["close"]["tcp_end"] == tcp_end


def test_ws_relay_keepalive_closes_a_probe_that_does_not_pong():
    relay, url = start_relay("--ping-interval", "0.3", "--ping-timeout", "1")
    with relay:
        report, code, _ = probe_checked(url, "--no-pong", "--duration", "4")
        assert code == 1
        assert report["verdict"]["cause"] == "ping_timeout"
        assert report["close"]["code"] == 1008 and report["close"]["reason"] == "ping timeout"
        assert report["close"]["by"] == "server"
        report, code, _ = probe_checked(url, "--duration", "1")
        assert code == 0, report["verdict"]
        assert report["pings_received"] >= 2 and report["pings_answered"] == report["pings_received"]
