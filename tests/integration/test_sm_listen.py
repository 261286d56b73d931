# SPDX-License-Identifier: Apache-2.0
"""sm-listen: bind rules, validation, filters, flushing, shutdown."""
import json
import os
import select
import signal
import stat
import subprocess

import pytest

from datagram_test import Listener, kernel_sender, leave_stale_socket, sender, with_sender
from smws_test import Proc, rmtree, run, short_tmpdir, tool, wait_for


@pytest.fixture
def tmp():
    d = short_tmpdir()
    yield d
    rmtree(d)


def test_version():
    r = run([tool("sm-listen"), "--version"])
    assert r.returncode == 0 and r.stdout.startswith("sm-listen ")


def test_a_lone_event_reaches_the_pipe_at_once(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path) as l:
        sender(path).send(b'{"type":"lone"}')
        # sm-listen keeps running: the line arrives only because it flushed.
        assert l.out.next() == with_sender('{"type":"lone"}', os.getpid())
        assert l.proc.p.poll() is None


def test_invalid_datagrams_are_skipped_while_neighbours_arrive_in_order(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path, "-v") as l:
        s = sender(path)
        datagrams = [
            b'{"type":"a","n":1}',
            b"not json",
            b'{"type":"b","n":2}',
            b"[1,2,3]",
            b'{"type":"c","n":3}',
            b'{"no":"type"}',
            b'{"type":"d","n":4}',
            b'{"type":"\xff\xfe"}',
            b'{"type":"e","n":5}',
            b'{"type":""}',
            b'{"type":7}',
            b'{"type":"f","n":6}',
            b"",
            b'  {"type":"g","n":7}\n',
            b'{\n  "type": "h",\n  "n": 8\n}',
        ]
        for d in datagrams:
            s.send(d)
        events = l.events(8)
        assert [e["n"] for e in events] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert l.out.all[-2] == with_sender('{"type":"g","n":7}', os.getpid())   # trimmed, bytes as sent, + sender
        assert "\n" not in l.out.all[-1]                 # one NDJSON line
        l.proc.signal(signal.SIGTERM)
        assert l.wait() == 0
        err = "\n".join(l.err.rest())
    for reason in ("not JSON", "not a JSON object", 'no "type"', "not UTF-8",
                   '"type" is empty', '"type" is not a string'):
        assert reason in err, err
    assert "15 datagrams" in err and "7 invalid" in err


def test_invalid_reports_are_rate_limited_but_all_counted(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path, "-v") as l:
        s = sender(path)
        for i in range(200):
            s.send(b"bad %d" % i)
        s.send(b'{"type":"after"}')
        assert json.loads(l.out.next())["type"] == "after"
        l.proc.signal(signal.SIGTERM)
        assert l.wait() == 0
        err = l.err.rest()
    shown = [line for line in err if "invalid datagram #" in line]
    assert 1 <= len(shown) <= 100  # 10 a second; the 200 arrive well within 10 s
    assert any("more invalid datagrams not shown" in line for line in err)
    assert any("200 invalid" in line for line in err)


def test_a_regular_file_at_the_path_is_left_untouched(tmp):
    path = os.path.join(tmp, "s.sock")
    with open(path, "w") as f:
        f.write("precious")
    r = run([tool("sm-listen"), "--socket", path], timeout=10)
    assert r.returncode == 73
    assert "not a socket" in r.stderr
    with open(path) as f:
        assert f.read() == "precious"


def test_a_directory_at_the_path_is_left_untouched(tmp):
    path = os.path.join(tmp, "dir")
    os.mkdir(path)
    assert run([tool("sm-listen"), "--socket", path], timeout=10).returncode == 73
    assert os.path.isdir(path)


def test_a_stale_socket_is_replaced(tmp):
    path = os.path.join(tmp, "s.sock")
    leave_stale_socket(path)
    with Listener(path) as l:
        sender(path).send(b'{"type":"fresh"}')
        assert l.events(1) == [{"type": "fresh", "sender": kernel_sender(os.getpid())}]


def test_a_second_listener_is_refused_and_the_first_keeps_working(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path) as l:
        r = run([tool("sm-listen"), "--socket", path], timeout=10)
        assert r.returncode == 69 and "in use" in r.stderr
        assert os.path.exists(path)
        sender(path).send(b'{"type":"still-here"}')
        assert l.events(1) == [{"type": "still-here", "sender": kernel_sender(os.getpid())}]


def test_a_missing_directory_cannot_create_the_socket(tmp):
    r = run([tool("sm-listen"), "--socket", os.path.join(tmp, "no", "s.sock")], timeout=10)
    assert r.returncode == 73


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_cleanly_and_removes_the_socket(tmp, sig):
    path = os.path.join(tmp, "s.sock")
    with Listener(path) as l:
        sender(path).send(b'{"type":"x"}')
        assert l.out.next() == with_sender('{"type":"x"}', os.getpid())
        l.proc.signal(sig)
        assert l.wait() == 0
    assert not os.path.exists(path)


def test_a_closed_stdout_ends_sm_listen_with_0(tmp):
    path = os.path.join(tmp, "s.sock")
    r, w = os.pipe()
    try:
        with Listener(path, stdout=w) as l:
            os.close(w)
            w = -1
            s = sender(path)
            s.send(b'{"type":"first"}')
            ready, _, _ = select.select([r], [], [], 10)
            assert ready and os.read(r, 1000) == with_sender('{"type":"first"}', os.getpid()).encode() + b"\n"
            os.close(r)
            r = -1
            # The next write meets EPIPE; keep sending until sm-listen notices.
            def ended():
                if l.proc.p.poll() is not None:
                    return True
                try:
                    s.send(b'{"type":"more"}')
                except OSError:
                    pass
                return False
            wait_for(ended, timeout=10, what="sm-listen to exit on EPIPE")
            assert l.proc.p.returncode == 0
            assert l.err.rest() == []
        assert not os.path.exists(path)
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)


def test_sm_socket_is_honoured(tmp):
    path = os.path.join(tmp, "env.sock")
    p = Proc([tool("sm-listen"), "--count", "1"], env={"SM_SOCKET": path})
    with p:
        wait_for(lambda: os.path.exists(path), what="the SM_SOCKET path to be bound")
        sender(path).send(b'{"type":"via-env"}')
        assert p.wait(10) == 0
        assert p.p.stdout.read() == with_sender('{"type":"via-env"}', os.getpid()).encode() + b"\n"


def test_type_filter_is_repeatable(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path, "--type", "a", "--type", "c") as l:
        s = sender(path)
        for t in "abcab":
            s.send(json.dumps({"type": t, "data": {"type": "a"}}).encode())
        s.send(b'{"type":"end"}')
        s.send(b'{"type":"c","last":true}')
        assert [e["type"] for e in l.events(4)] == ["a", "c", "a", "c"]


def test_count_exits_after_n_printed_events(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path, "--count", "3", "--type", "keep") as l:
        s = sender(path)
        for i in range(6):
            s.send(json.dumps({"type": "keep" if i % 2 == 0 else "skip", "i": i}).encode())
        s.send(b'{"type":"keep","i":6}')
        s.send(b'{"type":"keep","i":8}')
        assert l.wait() == 0
        assert [json.loads(x)["i"] for x in l.out.rest()] == [0, 2, 4]
    assert not os.path.exists(path)


def test_idle_timeout_exits_0_after_silence(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path, "--idle-timeout", "0.3") as l:
        assert l.wait(10) == 0
        assert l.out.rest() == []
    assert not os.path.exists(path)


def test_idle_timeout_counts_from_the_last_event(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path, "--idle-timeout", "2") as l:
        sender(path).send(b'{"type":"one"}')
        assert l.wait(10) == 0
        assert l.out.rest() == [with_sender('{"type":"one"}', os.getpid())]
    assert not os.path.exists(path)


def test_mode_is_applied(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
    path2 = os.path.join(tmp, "t.sock")
    with Listener(path2, "--mode", "0600"):
        assert stat.S_IMODE(os.lstat(path2).st_mode) == 0o600


@pytest.mark.parametrize("args", [["--mode", "999"], ["--mode", "rw"], ["--count", "0"],
                                  ["--idle-timeout", "-1"], ["--bogus"], ["extra"]])
def test_usage_errors(tmp, args):
    r = run([tool("sm-listen"), "--socket", os.path.join(tmp, "s.sock"), *args], timeout=10)
    assert r.returncode == 64, r.stderr
    assert not os.path.exists(os.path.join(tmp, "s.sock"))


def test_oversize_datagrams_are_invalid_not_truncated(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path, "--max-size", "100") as l:
        s = sender(path)
        exact = b'{"type":"x","p":"' + b"a" * (100 - 19) + b'"}'
        assert len(exact) == 100
        s.send(b'{"type":"x","p":"' + b"b" * 200 + b'"}')
        s.send(exact)
        assert l.out.next() == with_sender(exact.decode(), os.getpid())  # the limit is on the datagram
        assert "over the 100-byte limit" in l.err.next()


def test_a_burst_of_100000_events_arrives_complete_and_in_order(tmp):
    path = os.path.join(tmp, "s.sock")
    n = 100_000
    data = "".join('{"type":"burst","i":%d,"pad":"%s"}\n' % (i, "p" * 60) for i in range(n))
    with Listener(path, "--count", str(n)) as l:
        r = run([tool("sm-send"), "--socket", path, "-"], input=data, timeout=120)
        assert r.returncode == 0, r.stderr
        assert l.wait(120) == 0
        lines = l.out.rest()
    assert len(lines) == n
    for i, line in enumerate(lines):
        assert json.loads(line)["i"] == i


def test_sm_send_follows_a_restarted_listener(tmp):
    """A stdin-mode sender keeps its connection; when the listener is replaced
    it reconnects to the new one instead of dropping the rest."""
    path = os.path.join(tmp, "s.sock")
    with Proc([tool("sm-send"), "--socket", path, "-"], stdin=subprocess.PIPE) as p:
        with Listener(path) as l:
            p.p.stdin.write(b'{"type":"one"}\n')
            p.p.stdin.flush()
            assert l.events(1)[0]["type"] == "one"
            l.proc.signal(signal.SIGTERM)
            assert l.wait() == 0
        with Listener(path) as l:
            p.p.stdin.write(b'{"type":"two"}\n')
            p.p.stdin.flush()
            assert l.events(1)[0]["type"] == "two"
            p.p.stdin.close()
            assert p.wait(10) == 0


# --- "sender": who sent each event, from the kernel (SO_PASSCRED) ----------

def test_every_event_carries_the_kernels_sender(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path) as l:
        sender(path).send(b'{"type":"lone","n":1}')
        assert l.out.next() == with_sender('{"type":"lone","n":1}', os.getpid())
        r = run([tool("sm-send"), "--socket", path, "--json", '{"type":"from-sm-send","timestamp":1}'])
        assert r.returncode == 0, r.stderr
        (event,) = l.events(1)
        assert event["type"] == "from-sm-send"
        assert event["sender"]["uid"] == os.getuid() and event["sender"]["user"] == kernel_sender(0)["user"]
        assert event["sender"]["pid"] not in (os.getpid(), l.proc.p.pid)  # sm-send's own


def test_a_forged_sender_in_the_datagram_is_replaced(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path) as l:
        s = sender(path)
        forged = {"uid": 0, "user": "ceo", "pid": 1}
        s.send(json.dumps({"type": "interrupt", "sender": forged, "interrupt_id": "i-1"}).encode())
        # The key spelled with an escape is the same key to every JSON parser.
        s.send(b'{"type":"interrupt","\\u0073ender":{"user":"ceo"},"interrupt_id":"i-2"}')
        # Twice: a parser that keeps the first or the last must both see the truth.
        s.send(b'{"type":"interrupt","sender":{"user":"ceo"},"sender":{"user":"cfo"},"interrupt_id":"i-3"}')
        for event, line in zip(l.events(3), l.out.all[-3:]):
            assert event["sender"] == kernel_sender(os.getpid()), event
            assert "ceo" not in line and "cfo" not in line
        assert [json.loads(x)["interrupt_id"] for x in l.out.all[-3:]] == ["i-1", "i-2", "i-3"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to send as another user")
def test_the_sender_names_the_user_who_sent_it(tmp):
    import pwd
    path = os.path.join(tmp, "s.sock")
    nobody = pwd.getpwnam("nobody")
    os.chmod(tmp, 0o755)
    with Listener(path, "--mode", "0666") as l:
        code = ("import socket, sys\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                "s.sendto(b'{\"type\":\"x\",\"sender\":{\"user\":\"root\"}}', sys.argv[1])\n")
        r = run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--",
                 "/usr/bin/python3", "-c", code, path])
        assert r.returncode == 0, r.stderr
        (event,) = l.events(1)
        assert event["sender"]["uid"] == nobody.pw_uid
        assert event["sender"]["user"] == "nobody"
