# SPDX-License-Identifier: Apache-2.0
"""ws-probe through a real nginx (Debian's, tests/support/probe_nginx.py) in
front of ws-relay and of the fixture servers: the verdicts a user gets behind
a proxy. nginx's Server header names it; its proxy_read_timeout is the idle
timeout under test (a few seconds here, 60 s by default)."""
import json

import pytest

from probe_fixtures import FixtureServer
from probe_nginx import Nginx
from relay_support import Relay
from smws_test import free_port, run, tool


def probe(url, *args, timeout=60, input=None):
    result = run([tool("ws-probe"), "--json", *args, url], timeout=timeout, input=input)
    assert "Sanitizer" not in result.stderr and "runtime error:" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode
    return report, result.returncode, result.stderr


def nginx_named(report):
    return any(i["name"] == "nginx" for i in report["intermediaries"])


@pytest.fixture
def relay():
    with Relay() as r:  # pings every 20 s: longer than the proxy's timeout below
        yield r


def test_relay_behind_a_short_proxy_read_timeout_is_idle_timeout_confirmed_by_a_trial(relay):
    # Regression (issue 10): this used to be server_waits_for_client, sending
    # the user to fix a healthy server.
    with Nginx(relay.port, read_timeout=2) as proxy:
        report, code, _ = probe(proxy.url(relay.path), "--duration", "8")
    assert code == 1
    assert nginx_named(report)
    verdict = report["verdict"]
    assert verdict["cause"] == "idle_timeout", verdict
    assert "proxy_read_timeout" in verdict["text"] and "nginx" in verdict["text"]
    confirm = report["confirm"]
    assert confirm["tried"] and confirm["outcome"] == "outlived"
    assert 1.5 <= confirm["first_silence_s"] <= 3.0
    assert report["close"]["by"] == "server" and report["close"]["code"] == 1006


def test_the_same_with_no_confirm_names_both_causes_and_leans_to_the_proxy(relay):
    with Nginx(relay.port, read_timeout=2) as proxy:
        report, code, _ = probe(proxy.url(relay.path), "--duration", "8", "--no-confirm")
    assert code == 1
    verdict = report["verdict"]
    assert verdict["candidates"] == ["idle_timeout", "server_waits_for_client"]
    assert verdict["cause"] == "idle_timeout"
    assert "ws-probe --ping 0.5 --duration" in verdict["text"]
    assert "proxy_read_timeout" in verdict["text"]
    assert report["confirm"]["tried"] is False


def test_a_quiet_relay_that_pings_is_healthy_behind_a_proxy_with_long_timeouts():
    with Relay("--ping-interval", "0.5") as relay, Nginx(relay.port, read_timeout=60) as proxy:
        report, code, _ = probe(proxy.url(relay.path), "--duration", "2.5")
    assert code == 0, report["verdict"]
    assert report["verdict"]["cause"] == "healthy"
    assert report["pings_received"] >= 3
    assert report["confirm"] is None
    assert nginx_named(report)


def test_a_cat_session_through_the_proxy_ends_with_1000_and_is_healthy(relay):
    with Nginx(relay.port, read_timeout=60) as proxy:
        result = run([tool("ws-probe"), "--cat", "-v", proxy.url(relay.path)], input='{"type":"note"}\n',
                     timeout=30)
    assert result.returncode == 0, result.stderr
    assert "verdict: healthy" in result.stderr
    assert '"type":"initial"' in result.stdout


def test_an_upstream_that_is_down_is_the_proxys_502_naming_it():
    with Nginx(free_port(), read_timeout=60) as proxy:
        report, code, _ = probe(proxy.url("/ws/events"), "--duration", "2")
    assert code == 1
    assert report["status"] == 502
    assert report["verdict"]["cause"] == "handshake_refused"
    assert "nginx" in report["verdict"]["text"]
    assert report["close"]["by"] == "none"


def test_find_idle_timeout_through_the_proxy_measures_its_read_timeout(relay):
    with Nginx(relay.port, read_timeout=2) as proxy:
        report, code, stderr = probe(proxy.url(relay.path), "--find-idle-timeout", "5")
    assert code == 1, stderr
    found = report["find_idle_timeout"]
    assert 1.5 <= found["idle_timeout_s"] <= 2.6
    assert found["precision_s"] > 0 and found["trial_count"] == len(found["trials"])
    assert "nginx" in report["verdict"]["text"]


def test_a_waiting_application_behind_the_proxy_is_server_waits_for_client_after_the_trial():
    with FixtureServer("waitsdata", 1.5) as server, Nginx(server.port, read_timeout=60) as proxy:
        report, code, _ = probe(proxy.url("/ws"), "--duration", "6")
    assert code == 1
    assert report["verdict"]["cause"] == "server_waits_for_client", report["verdict"]
    assert report["confirm"]["outcome"] == "same_age"
