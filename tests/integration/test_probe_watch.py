# SPDX-License-Identifier: Apache-2.0
"""ws-probe --serve --watch (SPEC "ws-probe as a monitor", held-open watches):
one connection per target held open like a dashboard client, every end
counted in ws_probe_disconnects_total{target,cause} and written as an NDJSON
line, ambiguous ends confirmed once by a pinging trial and later ones given
the confirmed cause, reconnects with backoff. Real peers: a fixture server
that greets and then drops a silent client (FIN, 1006) after 1.5 s, ws-relay
behind Debian's nginx with a 2 s proxy_read_timeout, and a closed port."""
import json

import pytest

from probe_fixtures import FixtureServer
from probe_monitor import ProbeExporter
from probe_nginx import Nginx
from relay_support import Relay


@pytest.mark.tsan
def test_watches_count_each_drop_with_its_cause_and_confirm_once():
    with FixtureServer("idlegreet", 1.5) as silent, Relay() as relay, Nginx(relay.port, read_timeout=2) as proxy:
        behind_nginx = proxy.url(relay.path)
        closed = "ws://127.0.0.1:9/ws"
        with ProbeExporter("--watch", silent.url, "--watch", behind_nginx, "--watch", closed) as exporter:
            drops = f'ws_probe_disconnects_total{{target="{silent.url}",cause="idle_timeout"}}'
            nginx_drops = f'ws_probe_disconnects_total{{target="{behind_nginx}",cause="idle_timeout"}}'
            exporter.wait_metric(drops, lambda v: v >= 2, timeout=30)
            exporter.wait_metric(nginx_drops, lambda v: v >= 2, timeout=30)
            exporter.wait_metric(f'ws_probe_disconnects_total{{target="{closed}",cause="unreachable"}}',
                                 lambda v: v >= 2, timeout=30)
            m = exporter.metrics()
            # One trial per target and pair of causes: the later ends took its answer.
            assert m[f'ws_probe_confirmations_total{{target="{silent.url}"}}'] == 1
            assert m[f'ws_probe_confirmations_total{{target="{behind_nginx}"}}'] == 1
            assert m[f'ws_probe_up{{target="{closed}"}}'] == 0
            assert m[f'ws_probe_connects_total{{target="{silent.url}"}}'] >= 2
            assert m[f'ws_probe_messages_total{{target="{behind_nginx}"}}'] >= 2  # a snapshot per connection
            assert f'ws_probe_last_message_age_seconds{{target="{silent.url}"}}' in m
            ends = {k: v for k, v in m.items() if k.startswith("ws_probe_disconnects_total")}
            assert not any("server_waits_for_client" in k for k in ends), "\n".join(f"{k} {v}" for k, v in ends.items())
            lines = [json.loads(l) for l in exporter.stdout.pending()]
    ends = [l for l in lines if l["target"] == silent.url]
    assert len(ends) >= 2
    for end in ends:
        assert end["cause"] == "idle_timeout" and end["confirmed"] is True
        assert end["close"]["code"] == 1006 and end["close"]["tcp_end"] == "fin" and end["close"]["by"] == "server"
        assert end["after_s"] > 0.5
    assert ends[0]["confirm"]["tried"] is True and ends[0]["confirm"]["outcome"] == "outlived"
    assert "settled as idle_timeout" in ends[1]["verdict"]["text"]
    behind = [l for l in lines if l["target"] == behind_nginx]
    assert behind and all(l["cause"] == "idle_timeout" for l in behind)
    assert any(i["name"] == "nginx" for i in behind[0]["intermediaries"])
    assert any(l["target"] == closed and l["cause"] == "unreachable" for l in lines)
