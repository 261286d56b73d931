# SPDX-License-Identifier: Apache-2.0
"""DNS rebinding (issue 20, SPEC "Hostile input at the edges", Host): a page
of another site whose name now resolves to 127.0.0.1 sends its own name as
Host, and as Origin, which the same-host Origin rule accepted. On a loopback
--listen only localhost, 127.0.0.1, [::1] and --allow-host names are
answered; others get 421, logged like every refusal."""
import socket

from relay_support import Relay

EVIL = "attacker.example"


def head_of(port, request):
    """Status code and head (str) of the reply to a raw request."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return int(head.split()[1]), head


def get(port, host, path="/"):
    return head_of(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")


def upgrade(port, host, origin=None):
    lines = [f"GET /ws/events HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    return head_of(port, "\r\n".join(lines) + "\r\n\r\n")


def test_a_rebinding_host_gets_421_on_the_page_and_the_upgrade_and_is_logged():
    with Relay() as relay:
        p = relay.port
        evil = f"{EVIL}:{p}"
        # Before: 200 and 101 (the Origin equals the Host).
        status, head = get(p, evil)
        assert status == 421, head
        assert upgrade(p, evil, origin=f"http://{evil}")[0] == 421
        assert get(p, evil, "/metrics")[0] == 421
        line = relay.wait_stderr("421")
        assert EVIL in line and "--allow-host" in line, line
        m = relay.metrics()
        assert m['ws_relay_handshakes_refused_total{reason="host"}'] == 3
        assert m['ws_relay_http_requests_total{status="421"}'] == 3


def test_loopback_names_pass_with_any_port():
    with Relay() as relay:
        p = relay.port
        for host in (f"127.0.0.1:{p}", f"localhost:{p}", "localhost", f"[::1]:{p}", "127.0.0.1"):
            assert get(p, host)[0] == 200, host
            assert upgrade(p, host)[0] == 101, host
        # The page's own origin still passes the Origin rule.
        assert upgrade(p, f"localhost:{p}", origin=f"http://localhost:{p}")[0] == 101


def test_allow_host_adds_a_name_and_health_checks_answer_any_host():
    with Relay("--allow-host", "relay.example", "--allow-host", "Dash.Example") as relay:
        p = relay.port
        assert get(p, f"relay.example:{p}")[0] == 200
        assert upgrade(p, "dash.example")[0] == 101
        assert upgrade(p, f"relay.example:{p}", origin=f"http://relay.example:{p}")[0] == 101
        assert get(p, EVIL)[0] == 421
        assert get(p, f"127.0.0.1:{p}")[0] == 200
        # /healthz tells only counts and a load balancer sends any Host.
        status, head = get(p, "10.1.2.3:8080", "/healthz")
        assert status == 200, head


def test_refusals_from_one_address_are_rate_limited():
    with Relay() as relay:
        for _ in range(30):
            assert get(relay.port, EVIL)[0] == 421
        relay.wait_stderr("421")
        assert relay.metrics()['ws_relay_handshakes_refused_total{reason="host"}'] == 30
        lines = [l for l in relay.stderr_text().splitlines() if " 421 " in l]
        assert len(lines) == 1, lines
