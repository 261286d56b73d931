# SPDX-License-Identifier: Apache-2.0
"""Tokens out of URLs and a bounded legend (issue 20, SPEC "Hostile input at
the edges" and the dashboard section), in headless Chromium.

Before: the dashboard kept ?token= in the address bar, the history and every
WebSocket URL (so in proxy access logs), and 10,000 distinct states made
5,050 legend items."""
import pytest
import websockets

from browser import Browser, CuttableProxy
from relay_support import Relay, recv_json, run, ws_connect
from smws_test import wait_for

TOKEN = "tok-Edges_42"
LIVE = "document.getElementById('conn').dataset.state === 'live'"


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def upgrade_heads(proxy):
    return [h for h in proxy.heads if "upgrade: websocket" in h.lower()]


def test_the_token_leaves_the_address_bar_and_every_websocket_url_even_on_reconnect(browser):
    with Relay("--token", TOKEN, "--seq") as relay, CuttableProxy(relay.port) as proxy:
        browser.get(f"http://127.0.0.1:{proxy.port}/?machine=w-*&token={TOKEN}")
        browser.wait_js(LIVE, what="the page to be live")
        # The address bar and the history entry: the other parameters stay.
        assert browser.js("return location.href") == f"http://127.0.0.1:{proxy.port}/?machine=w-*"
        assert TOKEN not in browser.js("return window.smwsDashboard.url()")
        relay.send({"type": "state_change", "machine_id": "w-1", "state": "ok"})
        browser.wait_js("window.smwsDashboard.counters().lastSeq >= 1", what="an event through the token")
        assert browser.console_errors() == []
        proxy.cut()  # (the refused reconnects are logged in the console: expected)
        browser.wait_js("document.getElementById('conn').dataset.state === 'reconnecting'",
                        what="reconnecting")
        proxy.resume()
        browser.wait_js(LIVE, timeout=40, what="live again")
        assert browser.counters()["connects"] == 2
        heads = upgrade_heads(proxy)
        assert len(heads) == 2, heads
        for head in heads:
            line = head.split("\r\n", 1)[0]
            assert TOKEN not in line and "machine=w-*" in line.replace("%2A", "*"), line
            # The token rides as a subprotocol, beside smws.v1.
            assert f"smws.bearer.{TOKEN}" in head and "smws.v1" in head, head
        assert "since=1" in heads[1].split("\r\n", 1)[0]
        # Only the page's first load carried it (the URL the person opened).
        assert [r for r in proxy.requests if TOKEN in r] == [f"GET /?machine=w-*&token={TOKEN} HTTP/1.1"]


def test_the_relay_selects_smws_v1_and_never_echoes_the_token():
    async def scenario(url):
        async with ws_connect(url, subprotocols=["smws.v1", f"smws.bearer.{TOKEN}"]) as ws:
            assert ws.subprotocol == "smws.v1"
            assert ws.response_headers["Sec-WebSocket-Protocol"] == "smws.v1"
            assert TOKEN not in str(ws.response_headers)
            assert (await recv_json(ws))["type"] == "initial"
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with ws_connect(url, subprotocols=["smws.v1", "smws.bearer.wrong"]):
                pass
        assert e.value.status_code == 401

    with Relay("--token", TOKEN) as relay:
        run(scenario(relay.url))


def test_the_legend_shows_the_states_in_view_and_stays_bounded(browser):
    with Relay() as relay:
        browser.get(f"http://127.0.0.1:{relay.port}/")
        browser.wait_js(LIVE, what="the page to be live")
        browser.console_errors()  # start with an empty console
        # 10,000 distinct states over 50 machines.
        relay.send(*[{"type": "state_change", "machine_id": f"m-{n % 50}", "state": f"s-{n}"}
                     for n in range(10000)])
        browser.wait_js("window.smwsDashboard.counters().events >= 10000", timeout=60, what="every event")
        browser.wait_js("document.querySelectorAll('#legend li').length > 1", what="the legend")
        # Each lane's current state leads the legend; the rest are counted.
        wait_for(lambda: "s-9999" in browser.js("return document.getElementById('legend').innerText"),
                 timeout=30, what="the newest state in the legend")
        items = browser.js("return [...document.querySelectorAll('#legend li')].map(li => li.textContent)")
        assert len(items) <= 33, len(items)
        assert items[-1].endswith(" more states"), items[-1]
        c = browser.counters()
        # Colours are kept for what the timeline can show (40 lanes x 300
        # segments) and the machines' states, not for every state ever seen.
        assert c["stateColours"] <= 40 * 300 + 50, c
        assert browser.console_errors() == []
