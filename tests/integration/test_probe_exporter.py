# SPDX-License-Identifier: Apache-2.0
"""ws-probe --serve, the exporter (SPEC "ws-probe as a monitor"): /probe in the
blackbox exporter's shape against real servers (ws-relay, nginx in front of
it), the refusals (400, 403, 503) with messages that name the problem, the
--config format's errors, and the probe series read back through a real
Prometheus (Debian's) scraping with a blackbox-style relabelling config."""
import threading

import pytest

from probe_monitor import ProbeExporter, Prometheus, samples
from probe_nginx import Nginx
from relay_support import Relay
from smws_test import run, tool, wait_for


@pytest.fixture(scope="module")
def relay():
    with Relay() as r:
        yield r


def test_refusals_are_400_403_404_405_and_name_the_problem(relay):
    config = {"modules": {"short": {"duration": 0.5}}, "allow_targets": [f"ws://127.0.0.1:{relay.port}/ws/*"]}
    with ProbeExporter(config=config) as exporter:
        status, _, body = exporter.get("/probe")
        assert status == 400 and "missing the target parameter" in body
        status, _, body = exporter.probe("not a url")
        assert status == 400 and "'not a url' is not a ws:// or wss:// URL" in body
        status, _, body = exporter.probe(relay.url, module="nope")
        assert status == 400 and "unknown module 'nope' (known: default, short)" in body
        status, _, body = exporter.get(f"/probe?target={relay.url}&color=red")
        assert status == 400 and "unknown parameter 'color'" in body
        # allow_targets: another port, another path, another host: 403, no probe made.
        for target in (f"ws://127.0.0.1:{relay.port + 1}/ws/events", f"ws://127.0.0.1:{relay.port}/admin",
                       f"ws://localhost:{relay.port}/ws/events", "ws://10.1.2.3/ws/events?token=secret"):
            status, _, body = exporter.probe(target)
            assert status == 403, (target, body)
            assert "not covered by the config's allow_targets" in body
            assert "secret" not in body  # the token is shown as token=…
        status, _, _ = exporter.get("/nothing")
        assert status == 404
        status, headers, _ = exporter.get("/metrics", method="POST")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        m = exporter.metrics()
        assert m['ws_probe_exporter_requests_total{code="400"}'] == 4
        assert m['ws_probe_exporter_requests_total{code="403"}'] == 4
        assert not any(k.startswith("ws_probe_exporter_probes_total{") for k in m)


def test_without_a_config_only_loopback_is_allowed(relay):
    with ProbeExporter() as exporter:
        for target in ("ws://192.0.2.1/ws", "ws://127.0.0.1.nip.io/ws", "ws://localhost.localdomain/ws"):
            status, _, body = exporter.probe(target)
            assert status == 403 and "no allow_targets" in body and "open proxy" in body, (target, body)


def test_bad_configs_and_flags_exit_with_a_message(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"modules": {"a": {"duraton": 1}}}')
    result = run([tool("ws-probe"), "--serve", "127.0.0.1:0", "--config", str(bad)], timeout=10)
    assert result.returncode == 65
    assert "modules.a.duraton: unknown key" in result.stderr
    result = run([tool("ws-probe"), "--serve", "127.0.0.1:0", "--config", str(tmp_path / "missing.json")], timeout=10)
    assert result.returncode == 66 and "missing.json" in result.stderr
    result = run([tool("ws-probe"), "--serve", "127.0.0.1:0", "ws://127.0.0.1:1/"], timeout=10)
    assert result.returncode == 64 and "--serve takes no URL" in result.stderr
    result = run([tool("ws-probe"), "--serve", "127.0.0.1:0", "--ping", "1"], timeout=10)
    assert result.returncode == 64 and "--config modules" in result.stderr
    result = run([tool("ws-probe"), "--serve", "nowhere"], timeout=10)
    assert result.returncode == 64 and "--serve 'nowhere'" in result.stderr
    result = run([tool("ws-probe"), "--watch", "ws://127.0.0.1:1/"], timeout=10)
    assert result.returncode == 64 and "--serve" in result.stderr


def test_a_healthy_relay_is_probe_success_1_and_expect_is_checked(relay):
    config = {"modules": {"snapshot": {"duration": 1, "expect": {"regex": '"type":"initial"', "min_messages": 1},
                                       "ping": 0.2},
                          "never": {"duration": 0.6, "expect": "no such message"}}}
    with ProbeExporter(config=config) as exporter:
        status, headers, body = exporter.probe(relay.url, module="snapshot")
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        m = samples(body)
        assert m["probe_success"] == 1
        assert m['probe_websocket_cause_info{cause="healthy",confirmed="false"}'] == 1
        assert m["probe_websocket_status_code"] == 101
        assert m["probe_websocket_close_code"] == 1000
        assert m['probe_websocket_close_initiator{by="client"}'] == 1
        assert m['probe_websocket_tcp_end{how="none"}'] == 1
        assert m["probe_websocket_messages_received"] >= 1
        assert m["probe_websocket_expect_ok"] == 1
        for phase in ("resolve", "connect", "upgrade", "first_message"):
            assert f'probe_websocket_duration_seconds{{phase="{phase}"}}' in m
        assert m["probe_websocket_ping_rtt_seconds"] > 0
        assert not any(k.startswith("probe_websocket_intermediary_info") for k in m)  # nothing in between
        # debug=true, as with the blackbox exporter: the report, then the metrics.
        status, _, body = exporter.get(f"/probe?target={relay.url}&module=snapshot&debug=true")
        assert status == 200 and body.startswith("Probe report (module snapshot):")
        assert "verdict: healthy" in body and "Metrics that would have been returned:" in body and "probe_success 1" in body
        status, _, body = exporter.probe(relay.url, module="never")
        m = samples(body)
        assert m["probe_success"] == 0 and m["probe_websocket_expect_ok"] == 0
        assert m['probe_websocket_cause_info{cause="healthy",confirmed="false"}'] == 1  # healthy, but not as expected
        own = exporter.metrics()
        assert own['ws_probe_exporter_probes_total{module="snapshot",success="true"}'] == 2
        assert own['ws_probe_exporter_probes_total{module="never",success="false"}'] == 1


@pytest.mark.tsan
def test_over_max_concurrent_is_503_with_retry_after(relay):
    with ProbeExporter("--max-concurrent", "1", config={"modules": {"slow": {"duration": 2}}}) as exporter:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=exporter.probe(relay.url, module="slow")))
        t.start()
        try:
            exporter.wait_metric("ws_probe_exporter_probes_in_flight", lambda v: v == 1)
            status, headers, body = exporter.probe(relay.url, module="slow")
            assert status == 503, body
            assert headers["Retry-After"] == "1"
            assert "--max-concurrent" in body
        finally:
            t.join(timeout=30)
        assert first["r"][0] == 200


def test_behind_nginx_the_probe_names_idle_timeout_confirmed_and_nginx(relay):
    # nginx drops the silent connection after 2 s (proxy_read_timeout); the
    # module's confirm runs the pinging trial inside the module's budget.
    with Nginx(relay.port, read_timeout=2) as proxy:
        with ProbeExporter(config={"modules": {"drop": {"duration": 4}}}) as exporter:
            status, _, body = exporter.probe(proxy.url(relay.path), module="drop", timeout=60)
    assert status == 200, body
    m = samples(body)
    assert m["probe_success"] == 0
    assert m['probe_websocket_cause_info{cause="idle_timeout",confirmed="true"}'] == 1, body
    assert m['probe_websocket_intermediary_info{name="nginx"}'] == 1
    assert m["probe_websocket_close_code"] == 1006
    assert m['probe_websocket_tcp_end{how="fin"}'] == 1
    assert m['probe_websocket_close_initiator{by="server"}'] == 1
    assert m["probe_duration_seconds"] <= 4 + 10  # the module's duration plus --connect-timeout


def test_prometheus_scrapes_the_probe_with_a_blackbox_config(relay):
    # The blackbox exporter's documented scrape config, pointed at ws-probe.
    with ProbeExporter(config={"modules": {"ws_1s": {"duration": 1}}}) as exporter:
        scrape = [{
            "job_name": "websocket",
            "metrics_path": "/probe",
            "params": {"module": ["ws_1s"]},
            "scrape_interval": "2s", "scrape_timeout": "2s",
            "static_configs": [{"targets": [relay.url, "ws://127.0.0.1:9/ws"]}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{exporter.port}"},
            ],
        }, {
            "job_name": "ws-probe",
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
        }]
        with Prometheus(scrape) as prom:
            ok = prom.wait_query(f'probe_success{{job="websocket",instance="{relay.url}"}} == 1')
            assert len(ok) == 1
            down = prom.wait_query('probe_websocket_cause_info{job="websocket",instance="ws://127.0.0.1:9/ws"}')
            assert down[0]["metric"]["cause"] == "unreachable"
            assert prom.query('probe_success{instance="ws://127.0.0.1:9/ws"}')[0]["value"][1] == "0"
            prom.wait_query('ws_probe_exporter_probes_total{job="ws-probe",module="ws_1s"}')
