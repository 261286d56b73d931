"""sm-send --replay against a real sm-listen: spacing, speed, max-gap, stamps,
bad lines and --loop. Timing bounds are loose on purpose (shared CI machines)."""
import json
import os
import signal
import time

import pytest

from datagram_test import Listener
from smws_test import Proc, rmtree, run, short_tmpdir, tool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tmp():
    d = short_tmpdir()
    yield d
    rmtree(d)


def recording(tmp, lines, name="day.ndjson"):
    path = os.path.join(tmp, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def stamped(n, step, start=1700000000.0):
    return [json.dumps({"type": "e", "n": i, "timestamp": start + i * step}) for i in range(n)]


def replay(sock, *args, timeout=30):
    t0 = time.monotonic()
    r = run([tool("sm-send"), "--socket", sock, "--replay", *args], timeout=timeout)
    return r, time.monotonic() - t0


def test_speed_scales_the_recorded_spacing(tmp):
    sock = os.path.join(tmp, "s.sock")
    day = recording(tmp, stamped(5, 0.5))  # 2 s of recording
    with Listener(sock) as l:
        r, took = replay(sock, day, "--speed", "4")
        assert r.returncode == 0, r.stderr
        events = l.events(5)
    assert [e["n"] for e in events] == list(range(5))
    assert 0.3 < took < 1.8, took


def test_max_gap_shortens_long_silences(tmp):
    sock = os.path.join(tmp, "s.sock")
    day = recording(tmp, [json.dumps({"type": "e", "n": 0, "timestamp": 1000}),
                          json.dumps({"type": "e", "n": 1, "timestamp": 4600})])  # an hour apart
    with Listener(sock) as l:
        r, took = replay(sock, day, "--max-gap", "0.2")
        assert r.returncode == 0, r.stderr
        assert len(l.events(2)) == 2
    assert took < 5, took


def test_stamps_are_rewritten_unless_kept(tmp):
    sock = os.path.join(tmp, "s.sock")
    day = recording(tmp, stamped(3, 0.01, start=1000.0))
    with Listener(sock) as l:
        assert replay(sock, day)[0].returncode == 0
        rewritten = l.events(3)
        assert replay(sock, day, "--keep-timestamps")[0].returncode == 0
        kept = l.events(3)
    now = time.time()
    assert all(abs(e["timestamp"] - now) < 60 for e in rewritten)
    assert [e["timestamp"] for e in kept] == [1000.0, 1000.01, 1000.02]


def test_an_unstamped_line_follows_the_one_before_it(tmp):
    sock = os.path.join(tmp, "s.sock")
    day = recording(tmp, [json.dumps({"type": "a", "timestamp": 1000}),
                          json.dumps({"type": "b"}),
                          json.dumps({"type": "c", "timestamp": 1001.5})])
    with Listener(sock) as l:
        r, took = replay(sock, day)
        assert r.returncode == 0, r.stderr
        a, b, c = l.events(3)
    assert [a["type"], b["type"], c["type"]] == ["a", "b", "c"]
    assert b["timestamp"] - a["timestamp"] < 0.5   # right after a, not midway
    assert c["timestamp"] - b["timestamp"] > 1.0   # c keeps its 1.5 s
    assert took > 1.0


def test_bad_lines_are_named_and_every_good_line_arrives(tmp):
    sock = os.path.join(tmp, "s.sock")
    day = recording(tmp, [json.dumps({"type": "a", "timestamp": 1}),
                          "not json",
                          "",
                          "[1,2]",
                          json.dumps({"type": "", "timestamp": 1}),
                          json.dumps({"type": "b", "timestamp": 1.01})])
    with Listener(sock) as l:
        r, _ = replay(sock, day)
        events = l.events(2)
    assert r.returncode == 65
    assert [e["type"] for e in events] == ["a", "b"]
    for n in (2, 4, 5):
        assert f"line {n}:" in r.stderr
    assert "line 3:" not in r.stderr


def test_missing_file_and_looping_stdin_are_refused(tmp):
    sock = os.path.join(tmp, "s.sock")
    r, _ = replay(sock, os.path.join(tmp, "nope.ndjson"))
    assert r.returncode == 66 and "nope.ndjson" in r.stderr
    r, _ = replay(sock, "-", "--loop")
    assert r.returncode == 64 and "stdin" in r.stderr
    r = run([tool("sm-send"), "--socket", sock, "--speed", "2", "-"], input="")
    assert r.returncode == 64


def test_loop_plays_again_until_sigterm_then_exits_0(tmp):
    sock = os.path.join(tmp, "s.sock")
    day = recording(tmp, stamped(3, 0.05))
    with Listener(sock) as l:
        with Proc([tool("sm-send"), "--socket", sock, "--replay", day, "--loop"]) as p:
            events = l.events(7, timeout=20)  # more than two passes of three
            p.signal(signal.SIGTERM)
            assert p.wait(timeout=10) == 0, p.p.stderr.read()
    assert [e["n"] for e in events] == [0, 1, 2, 0, 1, 2, 0]


def test_no_listener_is_not_an_error_unless_strict(tmp):
    sock = os.path.join(tmp, "nobody.sock")
    day = recording(tmp, stamped(2, 0.01))
    assert replay(sock, day)[0].returncode == 0
    assert replay(sock, day, "--strict")[0].returncode == 69
