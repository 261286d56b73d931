"""Hostile text from the wire never reaches a terminal raw (SPEC: "Hostile
input at the edges", Terminals).

A plain python3-websockets server stands in for a relay that forwards what
another client (or a compromised agent) put in an interrupt: an OSC 52
clipboard write, a window-title OSC, cursor-up and erase-line (which could
hide the real args), a C1 CSI and a right-to-left override. hitl-approve's
interactive prompt (on a pty) and its --list NDJSON must show each escaped.

ws-probe's report quotes what a server sent (message types, close reasons):
the same escaping applies, and a URL's token parameter is shown as token=….
"""
import asyncio
import json
import threading

from smws_test import run, tool
from hitl_support import Pty, deploy_interrupt, hitl_approve

import websockets

OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"      # clipboard := "rm -rf ~"
TITLE = "\x1b]0;all good\x1b\\"           # window title, ST-terminated
HIDE = "\x1b[1A\x1b[2K"                   # cursor up, erase line
RLO = "\u202e"
C1_CSI = "\u009b31m"
HOSTILE = f"Deploy build 42{OSC52}{TITLE}{HIDE}{RLO}exe.txt{C1_CSI}"
RAW = ["\x1b", "\x07", RLO, "\u009b"]


def hostile_interrupt():
    event = deploy_interrupt("i-x", timeout=300, thread_id=f"t-1{HIDE}")
    event["action_requests"][0]["description"] = HOSTILE
    event["action_requests"][0]["args"] = {"env": f"prod{RLO}{C1_CSI}"}
    return event


class FakeRelay:
    """A WebSocket server that greets every client with one snapshot (or
    runs handler(ws) instead)."""

    def __init__(self, pending=(), handler=None):
        self.pending = list(pending)
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _client(self, ws, path=None):
        if self.handler:
            await self.handler(ws)
            return
        await ws.send(json.dumps({"type": "initial", "pending": self.pending}, ensure_ascii=False))
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(websockets.serve(self._client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.started.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        assert self.started.wait(10)
        self.url = f"ws://127.0.0.1:{self.port}/ws/events"
        return self

    async def _stop(self):
        self.server.close()
        await self.server.wait_closed()

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_the_interactive_prompt_shows_control_characters_escaped():
    with FakeRelay([hostile_interrupt()]) as relay, \
            Pty([tool("hitl-approve"), "--no-reconnect", relay.url], env={"NO_COLOR": "1"}) as term:
        term.expect(r"approval request i-x · thread t-1\\x1b\[1A\\x1b\[2K")
        mark = term.expect(r"\[s\]kip \[q\]uit")
        screen = term.text()[:mark]
        # The request as shown, up to the prompt (whose own "\r\x1b[K" is
        # hitl-approve's, not the relay's).
        shown = screen[screen.index("approval request"):screen.index("times out in")]
        for raw in RAW:
            assert raw not in shown, f"{raw!r} reached the terminal:\n{shown!r}"
        assert r"Deploy build 42\x1b]52;c;cm0gLXJmIH4K\x07\x1b]0;all good\x1b\\x1b[1A\x1b[2K" \
               r"\u202eexe.txt\u009b31m" in shown
        assert r'"env": "prod\u202e\u009b31m"' in shown
        term.type("q")
        assert term.wait(10) == 0


def test_list_is_json_with_every_control_character_escaped():
    interrupt = hostile_interrupt()
    with FakeRelay([interrupt]) as relay:
        r = hitl_approve("--list", relay.url)
    assert r.returncode == 0, r.stderr
    for raw in RAW:
        assert raw not in r.stdout
    assert r.stdout.isascii()
    assert "\\u202e" in r.stdout and "\\u001b]52;" in r.stdout
    [listed] = [json.loads(line) for line in r.stdout.splitlines()]
    assert listed["action_requests"][0]["description"] == HOSTILE
    assert listed["thread_id"] == interrupt["thread_id"]


async def hostile_server(ws):
    await ws.send(json.dumps({"type": f"tick{HIDE}{RLO}"}, ensure_ascii=False))
    await ws.close(1011, f"bye{TITLE}{C1_CSI}")


def test_ws_probe_escapes_server_text_and_hides_the_token():
    with FakeRelay(handler=hostile_server) as server:
        url = server.url + "?token=s3cret&x=1"
        human = run([tool("ws-probe"), "--duration", "3", "-v", "--no-confirm", url], timeout=30)
        machine = run([tool("ws-probe"), "--duration", "3", "--json", "--no-confirm", url], timeout=30)
    for r in (human, machine):
        assert "s3cret" not in r.stdout + r.stderr
        for raw in RAW:
            assert raw not in r.stdout + r.stderr, f"{raw!r} in {r.stdout + r.stderr!r}"
    assert "?token=\u2026&x=1" in human.stdout, human.stdout
    shown = human.stdout + human.stderr
    assert r"bye\x1b]0;all good\x1b\\u009b31m" in shown, shown
    assert r"tick\x1b[1A\x1b[2K\u202e" in shown, shown
    report = json.loads(machine.stdout)
    assert report["url"] == server.url + "?token=\u2026&x=1"
    assert report["close"]["reason"] == f"bye{TITLE}{C1_CSI}"


async def hostile_message(ws):
    await ws.send(f"m{OSC52}{RLO}")
    await ws.close(1000, "done")


def test_ws_probe_cat_escapes_on_a_terminal_and_is_byte_exact_to_a_pipe():
    with FakeRelay(handler=hostile_message) as server:
        with Pty([tool("ws-probe"), "--cat", "--duration", "3", server.url]) as term:
            term.expect(r"m\\x1b\]52;c;cm0gLXJmIH4K\\x07\\u202e")
            term.wait(20)
            assert "\x1b]52" not in term.text() and RLO not in term.text()
        piped = run([tool("ws-probe"), "--cat", "--duration", "3", server.url], input="", timeout=30)
    assert piped.stdout == f"m{OSC52}{RLO}\n"
