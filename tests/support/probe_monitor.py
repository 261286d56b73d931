# SPDX-License-Identifier: Apache-2.0
"""ws-probe --serve and Debian's Prometheus for the monitoring tests.

ProbeExporter runs `ws-probe --serve 127.0.0.1:0` (the kernel picks the port;
the "listening on http://…" line names it) with an optional --config written
to a temp dir; .get(path) answers (status, headers, body); .stdout is a
LinePump over the NDJSON incident lines. Prometheus runs `prometheus` with a
generated prometheus.yml on a free port and a temp TSDB dir, stopped by PID;
.query(expr) uses its HTTP API. Both skip cleanly only where the SPEC allows:
Prometheus is in DEB_PACKAGES (make deps), so a missing binary skips with the
package's name.
"""
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from smws_test import LinePump, Proc, free_port, rmtree, short_tmpdir, tool, wait_for

SERVE_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/probe")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def http_get(port, path, timeout=30.0, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def samples(text):
    """Prometheus text → {'name{labels}': value} (labels as printed)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


class ProbeExporter:
    def __init__(self, *args, config=None):
        self.dir = short_tmpdir()
        argv = [tool("ws-probe"), "--serve", "127.0.0.1:0", *args]
        if config is not None:
            path = os.path.join(self.dir, "probe.json")
            with open(path, "w") as f:
                json.dump(config, f)
            argv += ["--config", path]
        self.proc = Proc(argv)
        self.stdout = LinePump(self.proc.p.stdout)
        self.stderr = LinePump(self.proc.p.stderr)
        try:
            line = self.stderr.wait_match(SERVE_RE, timeout=15)
        except TimeoutError:
            self.close()
            raise
        self.port = int(SERVE_RE.search(line).group(1))

    def get(self, path, **kw):
        return http_get(self.port, path, **kw)

    def probe(self, target, module=None, **kw):
        q = {"target": target}
        if module:
            q["module"] = module
        return self.get("/probe?" + urllib.parse.urlencode(q), **kw)

    def metrics(self):
        status, _, body = self.get("/metrics")
        assert status == 200, body
        return samples(body)

    def wait_metric(self, key, predicate, timeout=20.0):
        """Waits until /metrics has `key` with a value predicate accepts."""
        seen = {}

        def check():
            seen.clear()
            seen.update(self.metrics())
            return key in seen and predicate(seen[key])

        try:
            wait_for(check, timeout=timeout, interval=0.1, what=key)
        except Exception as e:
            raise AssertionError(f"{key}: {seen.get(key)!r}; metrics: "
                                 + ", ".join(k for k in seen if k.startswith("ws_probe_"))) from e
        return seen[key]

    def close(self):
        self.proc.kill()
        err = self.stderr.text()
        rmtree(self.dir)
        assert "Sanitizer" not in err and "runtime error:" not in err, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Prometheus:
    """prometheus with `scrape_configs` (a list of dicts, written as JSON,
    which is YAML), scraping every `interval`; rule_files optional."""

    def __init__(self, scrape_configs, interval="1s", rule_files=()):
        if not os.path.exists(PROMETHEUS):
            pytest.skip("prometheus is not installed (make deps installs Debian's prometheus)")
        self.dir = short_tmpdir()
        self.port = free_port()
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "scrape_configs": scrape_configs}
        if rule_files:
            config["rule_files"] = list(rule_files)
        path = os.path.join(self.dir, "prometheus.yml")
        with open(path, "w") as f:
            json.dump(config, f)
        self.proc = Proc([PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={self.dir}/data",
                          f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                         stdout=subprocess.DEVNULL)
        self.log = LinePump(self.proc.p.stderr)
        try:
            wait_for(self._ready, timeout=30, interval=0.1, what="prometheus to be ready")
        except Exception:
            self.close()
            raise

    def _ready(self):
        if self.proc.p.poll() is not None:
            raise RuntimeError("prometheus exited: " + self.log.text()[-2000:])
        try:
            status, _, _ = http_get(self.port, "/-/ready", timeout=2)
            return status == 200
        except OSError:
            return False

    def api(self, path, **params):
        status, _, body = http_get(self.port, f"/api/v1/{path}?" + urllib.parse.urlencode(params))
        return status, json.loads(body)

    def query(self, expr):
        """The instant vector's results, [] when none; AssertionError when the
        expression does not parse."""
        status, reply = self.api("query", query=expr)
        assert status == 200 and reply["status"] == "success", f"{expr}: {reply}"
        return reply["data"]["result"]

    def wait_query(self, expr, predicate=lambda r: len(r) > 0, timeout=30.0):
        result = []

        def check():
            nonlocal result
            result = self.query(expr)
            return predicate(result)

        try:
            wait_for(check, timeout=timeout, interval=0.25, what=expr)
        except Exception as e:
            raise AssertionError(f"{expr}: {result}; targets: {self.api('targets')[1]}") from e
        return result

    def close(self):
        self.proc.kill()
        rmtree(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
