# SPDX-License-Identifier: Apache-2.0
"""ws-relay's dashboard (GET /) in a real headless Chromium (SPEC "ws-relay's
dashboard — GET /"): what a person sees and what the buttons send.

The relay is the real binary; the page is the one embedded in it; the
browser is Debian's chromium driven by chromium-driver (tests/support/
browser.py). Approvals run the SPEC's whole loop: sm-send --wait-reply |
sm-listen | ws-relay <-> the page, and hitl-approve as a second approver.
"""
import json
import os
import subprocess
import time

import pytest

from browser import Browser, CuttableProxy, dumps, screenshot_dir
from hitl_support import Stack, compact, hitl_approve
from relay_support import Relay
from smws_test import Proc, rmtree, short_tmpdir, wait_for

DEPLOY = compact([{"name": "deploy", "args": {"env": "prod"}, "description": "Deploy build 42"}])
LIVE = "document.getElementById('conn').dataset.state === 'live'"


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def open_page(browser, url):
    browser.get(url)
    browser.wait_js(LIVE, what="the page to be live")
    browser.console_errors()  # start each test with an empty console


def row_text(browser, machine):
    return browser.js("const r = document.querySelector(`#machines-body .row[data-machine='${arguments[0]}']`);"
                      "return r && !r.hidden ? r.innerText : null;", machine)


def state_change(machine, state, **fields):
    return {"type": "state_change", "machine_id": machine, "state": state, **fields}


def ask(stack, interrupt_id, actions=DEPLOY, wait=60):
    """sm-send interrupt ... --wait-reply in the background (a Proc)."""
    return stack.sm_send("interrupt", f"@interrupt_id={interrupt_id}", "@thread_id=t-1",
                         f"@action_requests:={actions}", "--wait-reply", str(wait), background=True)


def finish(proc, timeout=30):
    out, err = proc.p.communicate(timeout=timeout)
    return proc.p.returncode, out.decode(), err.decode()


def card(interrupt_id):
    return f"#approvals .card[data-interrupt='{interrupt_id}']"


def wait_card(browser, interrupt_id):
    browser.wait_js(f"document.querySelector(\"{card(interrupt_id)}\")", what=f"card {interrupt_id}")
    return browser.find(card(interrupt_id))


def click(browser, css):
    browser.find(css).click()


# --- HTTP: headers, assets, token ---------------------------------------------

def test_page_and_assets_carry_the_csp_nosniff_and_no_referrer_and_only_the_page_needs_the_token():
    with Relay("--token", "s3cret") as relay:
        status, headers, body = relay.http_get("/")
        assert status == 401
        status, headers, body = relay.http_get("/?token=s3cret")
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "connect-src 'self'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert '<meta name="smws-ws-path" content="/ws/events">' in body
        assert "<script>" not in body and "style=" not in body  # nothing inline
        expected = {"/dashboard.js": "text/javascript", "/dashboard.css": "text/css",
                    "/favicon.svg": "image/svg+xml"}
        for path, kind in expected.items():
            status, headers, body = relay.http_get(path)  # no token: assets hold no data
            assert status == 200, path
            assert headers["content-type"].startswith(kind), path
            assert headers["etag"].startswith('"') and len(headers["etag"]) == 18, path
            assert headers["x-content-type-options"] == "nosniff"
            assert body
        assert relay.http_get("/index.html")[0] == 404  # the page is only "/", behind the token


def test_the_page_names_the_relays_websocket_path_html_escaped():
    with Relay("--path", "/ws/a&b") as relay:
        status, _, body = relay.http_get("/")
        assert status == 200
        assert '<meta name="smws-ws-path" content="/ws/a&amp;b">' in body


# --- machines and timeline ------------------------------------------------------

def test_machines_from_the_snapshot_are_there_on_load_and_a_state_change_updates_table_and_timeline(browser):
    with Relay() as relay:
        relay.send(state_change("worker-1", "idle", data={"job_id": "j-1"}))
        open_page(browser, f"http://127.0.0.1:{relay.port}/")
        browser.wait_js("document.querySelector(\"#machines-body .row[data-machine='worker-1']\")")
        text = row_text(browser, "worker-1")
        assert "idle" in text and "job_id" in text and "s ago" in text

        relay.send(state_change("worker-2", "processing", previous_state="idle", data={"progress": 50}),
                   state_change("worker-1", "done"))
        wait_for(lambda: (row_text(browser, "worker-2") or "").startswith("worker-2"), what="worker-2's row")
        wait_for(lambda: "done" in (row_text(browser, "worker-1") or ""), what="worker-1 done")
        # Previous state: the event's, else the machine's former state.
        assert "idle" in row_text(browser, "worker-1")
        # Sorted by last activity: worker-1 changed last.
        order = browser.js("""return [...document.querySelectorAll('#machines-body .row:not([hidden])')]
            .sort((a, b) => a.getAttribute('aria-rowindex') - b.getAttribute('aria-rowindex'))
            .map(r => r.dataset.machine)""")
        assert order == ["worker-1", "worker-2"]
        # The timeline: a lane per machine, the legend names every state, and
        # the lane's newest segment is painted in that state's colour.
        legend = browser.wait_js("document.getElementById('legend').innerText.includes('processing') && "
                                 "document.getElementById('legend').innerText")
        for state in ("idle", "processing", "done"):
            assert state in legend
        swatch = browser.js("""const items = [...document.querySelectorAll('#legend li')];
            const li = items.find(i => i.textContent === 'done');
            return getComputedStyle(li.querySelector('.swatch')).backgroundColor;""")
        # Lane 0 is the most recently active machine (worker-1, done): a pixel
        # just left of "now", mid-lane, turns the legend's colour for "done".
        browser.wait_js("""(() => {
            const c = document.getElementById('timeline'), ctx = c.getContext('2d');
            const dpr = window.devicePixelRatio || 1;
            const p = ctx.getImageData(Math.floor(c.width - 6 * dpr), Math.floor(9 * dpr), 1, 1).data;
            return `rgb(${p[0]}, ${p[1]}, ${p[2]})` === arguments[0]; })()""".replace("arguments[0]", repr(swatch)),
                        what="worker-1's lane painted in the colour of 'done'")
        # The text filter narrows the table.
        browser.find("#machine-filter").send_keys("processing")
        wait_for(lambda: row_text(browser, "worker-1") is None, what="worker-1 filtered out")
        assert row_text(browser, "worker-2") is not None
        assert browser.console_errors() == []


# --- approvals --------------------------------------------------------------------

def test_approve_edit_and_reject_from_the_page_answer_sm_send_and_hitl_approve_withdraws_a_card(browser):
    with Stack() as s:
        open_page(browser, f"http://127.0.0.1:{s.port}/")
        name = browser.find("#decider")
        name.clear()
        name.send_keys("alice")

        with ask(s, "i-approve") as sender:
            wait_card(browser, "i-approve")
            text = browser.text(card("i-approve"))
            assert "deploy" in text and "Deploy build 42" in text and '"env": "prod"' in text
            assert "thread t-1" in text and "left" in text
            click(browser, card("i-approve") + " button[data-act='approve']")
            code, out, err = finish(sender)
            assert code == 0, err
            reply = json.loads(out)
            assert reply["decisions"] == [{"type": "approve"}] and reply["decided_by"] == "alice"
        s.out.wait(lambda l: '"decision"' in l and '"i-approve"' in l, what="the decision on stdout")
        browser.wait_js(f"document.querySelector(\"{card('i-approve')}\").classList.contains('withdrawn')")
        assert "approved by alice" in browser.text(card("i-approve"))

        with ask(s, "i-edit") as sender:
            wait_card(browser, "i-edit")
            click(browser, card("i-edit") + " button[data-act='edit']")
            editor = browser.find(card("i-edit") + " textarea")
            # Not JSON: refused on the page, nothing sent.
            editor.clear()
            editor.send_keys('{"name": "deploy", "args": {')
            click(browser, card("i-edit") + " button[data-act='edit-send']")
            assert "not JSON" in browser.wait_js(
                f"document.querySelector(\"{card('i-edit')} .error\").innerText")
            editor.clear()
            editor.send_keys('{"name": "deploy", "args": {"env": "staging"}}')
            click(browser, card("i-edit") + " button[data-act='edit-send']")
            code, out, err = finish(sender)
            assert code == 0, err
            reply = json.loads(out)
            assert reply["decisions"] == [{"type": "edit", "edited_action":
                                           {"name": "deploy", "args": {"env": "staging"}}}]

        with ask(s, "i-reject") as sender:
            wait_card(browser, "i-reject")
            click(browser, card("i-reject") + " button[data-act='reject']")
            browser.find(card("i-reject") + " .rejector input").send_keys("not on a Friday")
            click(browser, card("i-reject") + " button[data-act='reject-send']")
            code, out, err = finish(sender)
            assert code == 1, err
            assert json.loads(out)["decisions"] == [{"type": "reject", "message": "not on a Friday"}]

        # Decided elsewhere: hitl-approve answers, the page withdraws the card.
        with ask(s, "i-elsewhere") as sender:
            wait_card(browser, "i-elsewhere")
            r = hitl_approve("--as", "bob", "--decisions", "-", s.url,
                             input='{"interrupt_id":"i-elsewhere","type":"approve"}\n')
            assert r.returncode == 0, r.stderr
            assert finish(sender)[0] == 0
            browser.wait_js(f"document.querySelector(\"{card('i-elsewhere')}\").classList.contains('withdrawn')",
                            what="the card withdrawn")
            note = browser.text(card("i-elsewhere") + " .note")
            assert "approved by bob" in note and "this page" not in note
        assert browser.console_errors() == []


def test_only_the_allowed_decisions_are_offered_and_a_reject_elsewhere_withdraws_with_its_message(browser):
    with Relay() as relay:
        relay.send({"type": "interrupt", "interrupt_id": "i-r", "thread_id": "t",
                    "action_requests": [{"name": "drop_table", "args": {}}],
                    "review_configs": [{"action_name": "drop_table", "allowed_decisions": ["reject"]}]})
        open_page(browser, f"http://127.0.0.1:{relay.port}/")
        wait_card(browser, "i-r")  # from the snapshot
        assert not browser.find(card("i-r") + " button[data-act='approve']").is_enabled()
        assert not browser.find(card("i-r") + " button[data-act='edit']").is_enabled()
        assert browser.find(card("i-r") + " button[data-act='reject']").is_enabled()
        r = hitl_approve("--as", "dave", "--decisions", "-", f"ws://127.0.0.1:{relay.port}/ws/events",
                         input='{"interrupt_id":"i-r","type":"reject","message":"no"}\n')
        assert r.returncode == 0, r.stderr
        browser.wait_js(f"document.querySelector(\"{card('i-r')}\").classList.contains('withdrawn')")
        assert 'rejected ("no") by dave' in browser.text(card("i-r") + " .note")


# --- connection -------------------------------------------------------------------

def test_a_cut_connection_is_shown_and_the_page_resumes_with_since_missing_nothing(browser):
    with Relay("--seq", "--history", "1000") as relay, CuttableProxy(relay.port) as proxy:
        open_page(browser, f"http://127.0.0.1:{proxy.port}/")
        relay.send(*[state_change(f"m-{n % 3}", f"s{n}", n=n) for n in range(1, 6)])
        browser.wait_js("window.smwsDashboard.counters().lastSeq >= 5")
        proxy.cut()  # every connection dropped, new ones refused
        text = browser.wait_js("document.getElementById('conn').dataset.state === 'reconnecting' && "
                               "document.getElementById('conn-text').innerText", what="'reconnecting'")
        assert "1006" in text and "reconnecting in" in text
        relay.send(*[state_change(f"m-{n % 3}", f"s{n}", n=n) for n in range(6, 11)])
        proxy.resume()
        browser.wait_js(LIVE, timeout=40, what="live again")
        browser.wait_js("window.smwsDashboard.counters().lastSeq >= 10", what="the missed events")
        # The log's list is brought up to date in the next animation frame.
        browser.wait_js("window.smwsDashboard.logRows().filter(r => r.type === 'state_change').length >= 10",
                        what="the missed events in the log")
        rows = browser.js("return window.smwsDashboard.logRows()")
        seqs = [json.loads(r["raw"])["n"] for r in rows if r["type"] == "state_change"]
        assert sorted(seqs) == list(range(1, 11))  # each once, none missing
        assert not [r for r in rows if r["kind"] == "gap"]
        assert "since=5" in "".join(proxy.requests)
        assert browser.counters()["connects"] == 2
        assert "s10" in row_text(browser, "m-1")


def test_events_no_longer_held_show_a_gap_row(browser):
    with Relay("--seq", "--history", "2") as relay, CuttableProxy(relay.port) as proxy:
        open_page(browser, f"http://127.0.0.1:{proxy.port}/")
        relay.send(state_change("m", "a", n=1))
        browser.wait_js("window.smwsDashboard.counters().lastSeq >= 1")
        proxy.cut()
        browser.wait_js("document.getElementById('conn').dataset.state === 'reconnecting'")
        relay.send(*[state_change("m", f"s{n}", n=n) for n in range(2, 8)])
        proxy.resume()
        browser.wait_js("window.smwsDashboard.logRows().some(r => r.kind === 'gap')", timeout=40, what="a gap row")
        # It is a visible row of the log, in its own colours.
        gap = browser.wait_js("document.querySelector('#log-body .row.gap:not([hidden])') && "
                              "document.querySelector('#log-body .row.gap:not([hidden])').innerText")
        assert "missed events 2–5" in gap
        assert browser.js("return getComputedStyle(document.querySelector('#log-body .row.gap')).color") != \
            browser.js("return getComputedStyle(document.querySelector('#log-body .row:not(.gap)')).color")
        wait_for(lambda: "s7" in (row_text(browser, "m") or ""), what="the snapshot's state")


def test_app_level_pings_are_answered_with_pong(browser):
    with Relay("--app-ping", "--ping-interval", "0.2", "--ping-timeout", "1", "-v") as relay:
        open_page(browser, f"http://127.0.0.1:{relay.port}/")
        # A page that did not answer would count as silent; the relay consumes
        # pongs without a word, so look at the page's side: pings came in and
        # the connection is still live after several ping timeouts.
        browser.wait_js("window.smwsDashboard.counters().messages >= 6", timeout=15, what="pings")
        assert browser.js(f"return {LIVE}") and browser.counters()["connects"] == 1
        assert relay.healthz()["clients"] == 1


def test_with_a_token_the_page_is_401_without_it_and_works_end_to_end_with_it(browser):
    with Relay("--token", "tok-42") as relay:
        browser.get(f"http://127.0.0.1:{relay.port}/")
        assert "token" in browser.find("body").text  # the 401 text, not the dashboard
        open_page(browser, f"http://127.0.0.1:{relay.port}/?token=tok-42")
        # The token is in the page's memory only (SPEC "Tokens in pages"): not
        # in the address bar, not in the WebSocket's URL (issue 20).
        assert "tok-42" not in browser.js("return location.href + window.smwsDashboard.url()")
        relay.send(state_change("secure-1", "ok"))
        wait_for(lambda: row_text(browser, "secure-1"), what="the row through the token")
        # The stylesheet loaded (no token needed for it): the header bar is sticky.
        assert browser.js("return getComputedStyle(document.querySelector('.bar')).position") == "sticky"


def test_over_https_the_page_connects_with_wss():
    tmp = short_tmpdir()
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        with Relay("--tls-cert", cert, "--tls-key", key) as relay, \
                Browser(extra_flags=["--ignore-certificate-errors"]) as b:
            open_page(b, f"https://127.0.0.1:{relay.port}/")
            assert b.js("return window.smwsDashboard.url()").startswith("wss://127.0.0.1:")
            relay.send(state_change("tls-1", "up"))
            wait_for(lambda: row_text(b, "tls-1"), what="the row over wss")
    finally:
        rmtree(tmp)


# --- what it looks like ----------------------------------------------------------

def test_screenshots_light_and_dark_are_written_under_the_build_folder(browser):
    with Stack(listener=False) as s:
        states = ["idle", "fetching", "processing", "uploading", "done", "failed"]
        open_page(browser, f"http://127.0.0.1:{s.port}/")
        browser.find("#decider").clear()
        browser.find("#decider").send_keys("alice")
        s.feed({"type": "interrupt", "interrupt_id": "i-42", "thread_id": "release-7",
                "action_requests": [{"name": "deploy", "args": {"env": "prod", "build": 42},
                                     "description": "Deploy build 42 to production"}],
                "review_configs": [{"action_name": "deploy", "allowed_decisions": ["approve", "edit", "reject"]}],
                "timeout": 600})
        # Four minutes of history, stamped in the past, so the timeline has
        # something to show in the picture.
        start = time.time() - 240
        for n in range(144):
            s.feed(state_change(f"worker-{n % 24:02d}", states[(n + n // 24) % len(states)],
                                data={"job_id": f"job-{500 + n}", "progress": (n * 7) % 100},
                                timestamp=start + n * 1.6))
        s.feed({"type": "queue_update", "queue": "builds", "depth": 3})
        browser.wait_js("window.smwsDashboard.counters().events >= 146")
        wait_card(browser, "i-42")
        out = screenshot_dir()
        browser.js("document.activeElement.blur()")  # no focus ring in the picture
        # Let the change highlights fade and the charts tick once.
        browser.wait_js("!document.querySelector('#machines .row.changed')", timeout=10)
        light = browser.screenshot(os.path.join(out, "dashboard-light.png"))
        frames = browser.js("return window.smwsDashboard.counters().frames")
        browser.set_color_scheme("dark")
        browser.wait_js("getComputedStyle(document.body).backgroundColor !== 'rgb(246, 247, 249)'")
        # A frame drawn after the flip: the canvases (timeline lane names,
        # rate chart) still hold their light colours until then.
        browser.wait_js(f"window.smwsDashboard.counters().frames > {frames}")
        dark = browser.screenshot(os.path.join(out, "dashboard-dark.png"))
        browser.set_color_scheme("light")
        for path in (light, dark):
            with open(path, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert browser.console_errors() == []


def test_a_decision_the_relay_refuses_shows_its_error_on_the_card_and_the_buttons_come_back(browser):
    # The page only offers what review_configs allow, so to see a refusal the
    # test rewrites the page's outgoing decision before it is sent (a script
    # installed before the page's own, through the DevTools protocol).
    script = browser.cdp("Page.addScriptToEvaluateOnNewDocument", {"source": """
        const send = WebSocket.prototype.send;
        WebSocket.prototype.send = function (data) {
          return send.call(this, String(data).replace('"type":"approve"', '"type":"reject"'));
        };"""})
    try:
        with Relay() as relay:
            relay.send({"type": "interrupt", "interrupt_id": "i-only", "thread_id": "t",
                        "action_requests": [{"name": "restart", "args": {}}],
                        "review_configs": [{"action_name": "restart", "allowed_decisions": ["approve"]}]})
            open_page(browser, f"http://127.0.0.1:{relay.port}/")
            browser.js("document.getElementById('decider').value = 'erin'")
            wait_card(browser, "i-only")
            click(browser, card("i-only") + " button[data-act='approve']")
            error = browser.wait_js(f"document.querySelector(\"{card('i-only')} .error:not([hidden])\") && "
                                    f"document.querySelector(\"{card('i-only')} .error\").innerText",
                                    what="the relay's error on the card")
            assert error.startswith("The relay refused the decision:") and "reject" in error
            assert browser.find(card("i-only") + " button[data-act='approve']").is_enabled()
            assert not browser.js(f"return document.querySelector(\"{card('i-only')}\").classList.contains('withdrawn')")
    finally:
        browser.cdp("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


# --- server-side view: subscribe from the machine filter and a row's history ----------

def server_filter(browser):
    return browser.js("return window.smwsDashboard.serverFilter();")


def log_rows(browser):
    return browser.js("return window.smwsDashboard.logRows();")


def test_the_machine_filter_subscribes_server_side_and_a_rows_history_button_replays_that_machine(browser):
    from selenium.webdriver.common.keys import Keys
    with Relay("--seq", "--history", "100", "--machine-history", "10") as relay:
        relay.send(state_change("m-1", "a1"), state_change("m-2", "a2"), state_change("m-3", "a3"),
                   state_change("m-2", "b2"), state_change("m-1", "b1"))
        open_page(browser, f"http://127.0.0.1:{relay.port}/")
        wait_for(lambda: all(row_text(browser, m) for m in ("m-1", "m-2", "m-3")), what="three rows")
        assert "all machines" in browser.text("#server-filter")

        # A filter naming one machine subscribes to it; the answer is a new view.
        browser.find("#machine-filter").send_keys("m-2")
        wait_for(lambda: server_filter(browser) == {"machines": ["m-2"], "history": "", "awaiting": 0},
                 what="the subscribe to m-2 answered")
        assert "server-side: m-2" in browser.text("#server-filter")
        assert browser.counters()["machines"] == 1  # the table is the relay's view now
        relay.send(state_change("m-1", "late1"), state_change("m-2", "late2"))
        wait_for(lambda: any('"late2"' in r["raw"] and not r["mark"] for r in log_rows(browser)),
                 what="m-2's live event")
        rows = log_rows(browser)
        assert not any('"late1"' in r["raw"] for r in rows)  # sent before late2: filtered by the relay
        assert "late2" in row_text(browser, "m-2")

        # The history button (keyboard): the relay replays m-2's held events, marked.
        button = browser.find("#machines-body .row[data-machine='m-2'] button.hist-button")
        button.send_keys(Keys.ENTER)
        wait_for(lambda: any('"late2"' in r["raw"] and r["mark"] == "history" for r in log_rows(browser)),
                 what="m-2's history replayed")
        marked = [r for r in log_rows(browser) if r["mark"] == "history"]
        assert marked and all('"m-2"' in r["raw"] for r in marked)
        assert {s for s in ("a2", "b2", "late2") if any(f'"{s}"' in r["raw"] for r in marked)} == {"a2", "b2", "late2"}
        assert "history of m-2" in browser.text("#server-filter")
        assert server_filter(browser)["history"] == "m-2"
        assert browser.counters()["cards"] == 0 and browser.console_errors() == []

        # Back to all machines, with the filter cleared: the whole view again.
        browser.find("#machine-filter").clear()
        browser.js("document.getElementById('machine-filter').dispatchEvent(new Event('input'));")
        browser.find("#view-back").click()
        wait_for(lambda: server_filter(browser) == {"machines": [], "history": "", "awaiting": 0}
                 and browser.counters()["machines"] == 3, what="back to all three machines")
        assert "all machines" in browser.text("#server-filter")
        assert browser.find("#view-back").is_displayed() is False
        assert "late1" in row_text(browser, "m-1")
        assert browser.console_errors() == []
