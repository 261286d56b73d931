# SPDX-License-Identifier: Apache-2.0
"""docs/monitoring/: the alerting rules pass `promtool check rules` and their
`promtool test rules` cases; the Grafana dashboard is JSON; and every
expression of both is evaluated by a real Prometheus (Debian's) that scrapes
ws-relay (with --audit and --redis, so every relay family is there) and
ws-probe --serve (two watches, one pinging; blackbox-style /probe jobs over ws://, wss:// and
an idle-timeout module): each must parse, every metric name it uses must be
one the tools really export, and every dashboard expression returns a series."""
import json
import os
import re
import shutil

import pytest

from probe_fixtures import FixtureServer
from probe_monitor import PROMTOOL, ProbeExporter, Prometheus
from redis_support import RedisServer
from relay_support import Relay
from smws_test import SOURCE_DIR, rmtree, run, short_tmpdir

DOCS = os.path.join(SOURCE_DIR, "docs", "monitoring")
ALERTS = os.path.join(DOCS, "alerts.yml")
DASHBOARD = os.path.join(DOCS, "grafana-smws.json")
# Names in an expression that are metrics of ours or Prometheus's own `up`.
METRIC = re.compile(r"\b(?:ws_relay_\w+|ws_probe_\w+|probe_\w+|up)\b")


def promtool(*args):
    if not os.path.exists(PROMTOOL):
        pytest.skip("promtool is not installed (make deps installs Debian's prometheus)")
    return run([PROMTOOL, *args], timeout=60)


def alert_exprs():
    """The expr of every rule in alerts.yml (a small reader for its layout:
    `expr: …` on one line, or `expr: >` and an indented block)."""
    exprs, lines = [], open(ALERTS).read().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
        if m:
            indent, value = len(m.group(1)), m.group(2)
            if value in (">", "|"):
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i].strip())
                    i += 1
                exprs.append(" ".join(b for b in block if b))
                continue
            exprs.append(value)
        i += 1
    return exprs


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_promtool_checks_and_tests_the_rules():
    checked = promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout
    tested = promtool("test", "rules", os.path.join(DOCS, "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_dashboard_is_grafana_json_over_both_tools():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["uid"] and dash["title"] and dash["panels"]
    exprs = dashboard_exprs()
    assert any("ws_relay_" in e for e in exprs) and any("probe_websocket_" in e for e in exprs)
    assert any("ws_probe_disconnects_total" in e for e in exprs)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert len(alert_exprs()) == 11


@pytest.fixture(scope="module")
def certificate():
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    directory = short_tmpdir()
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    made = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert], timeout=60)
    assert made.returncode == 0, made.stderr
    yield cert, key
    rmtree(directory)


def blackbox_job(name, module, targets, exporter, interval="2s", timeout="2s"):
    return {"job_name": name, "metrics_path": "/probe", "params": {"module": [module]},
            "scrape_interval": interval, "scrape_timeout": timeout,
            "static_configs": [{"targets": targets}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{exporter.port}"}]}


def test_every_expression_evaluates_against_the_tools_real_metrics(certificate):
    audit_dir = short_tmpdir()
    config = {"modules": {"quick": {"duration": 1, "ping": 0.2},
                          "tls": {"duration": 1, "insecure": True},
                          "idle": {"find_idle_timeout": 2.5, "duration": 6}}}
    try:
        with RedisServer() as redis, \
                Relay("--redis", redis.url, "--audit", os.path.join(audit_dir, "audit.ndjson")) as relay, \
                FixtureServer("healthy", tls=certificate) as tls_server, \
                FixtureServer("idlegreet", 1.5) as silent, \
                FixtureServer("proxied") as proxied, \
                ProbeExporter("--watch", silent.url,
                              config=dict(config, watch=[{"target": relay.url, "module": "quick"}])) as exporter:
            scrape = [
                {"job_name": "smws-relay", "scrape_interval": "1s",
                 "static_configs": [{"targets": [f"127.0.0.1:{relay.port}"]}]},
                {"job_name": "ws-probe", "scrape_interval": "1s",
                 "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]},
                blackbox_job("websocket", "quick", [relay.url], exporter),
                blackbox_job("websocket-tls", "tls", [tls_server.url], exporter),
                blackbox_job("websocket-idle", "idle", [silent.url], exporter, interval="7s", timeout="6500ms"),
                # A refused handshake whose headers name nginx, Varnish and Cloudflare.
                blackbox_job("websocket-proxied", "quick", [proxied.url], exporter),
            ]
            with Prometheus(scrape) as prom:
                # Everything scraped at least once, and the watch of the
                # silent server has seen its first end.
                for expr in ('up{job="smws-relay"} == 1', 'ws_relay_redis_up == 1', 'ws_relay_audit_ok == 1',
                             'probe_success{job="websocket"} == 1', "probe_ssl_earliest_cert_expiry",
                             "probe_websocket_idle_timeout_seconds", "ws_probe_disconnects_total",
                             "probe_websocket_intermediary_info",
                             "ws_probe_ping_rtt_seconds_bucket", "rate(ws_probe_messages_total[5m]) > 0"):
                    prom.wait_query(expr, timeout=40)
                exported = {r["metric"]["__name__"] for r in prom.query('{__name__=~".+"}')}
                for expr in alert_exprs() + dashboard_exprs():
                    names = set(METRIC.findall(expr))
                    assert names, expr
                    for name in names:
                        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in exported else name
                        assert name in exported or base + "_bucket" in exported, f"{expr}: no metric {name}"
                    prom.query(expr)  # parses (asserts a success answer)
                # rate() and increase() need two samples of a series that may
                # have just appeared (the first end of a watch): wait for each.
                for expr in dashboard_exprs():
                    prom.wait_query(expr, timeout=20)
    finally:
        rmtree(audit_dir)
