# SPDX-License-Identifier: Apache-2.0
"""sm-send against a real sm-listen (or a socket the test binds itself)."""
import json
import os
import signal
import socket
import stat
import subprocess

import pytest

from datagram_test import Listener, bound_socket, without_sender
from smws_test import Proc, rmtree, run, short_tmpdir, tool, wait_for


@pytest.fixture
def tmp():
    d = short_tmpdir()
    yield d
    rmtree(d)


def send(*args, input=None, env=None, timeout=30):
    return run([tool("sm-send"), *args], input=input, env=env, timeout=timeout)


def test_version_and_help():
    r = send("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("sm-send ")
    r = send("--help")
    assert r.returncode == 0 and "--wait-reply" in r.stdout


def test_every_field_form_round_trips(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path) as l:
        r = send("--socket", path, "state_change", "-m", "worker-1", "--state", "processing",
                 "--previous", "idle", "job_id=42", "progress:=50", "tags:=[\"a\",\"b\"]",
                 "note=a=b:=c", "nested:={\"k\":{\"v\":null}}", "@source=cron", "@prio:=3",
                 "unicode=ünï €")
        assert r.returncode == 0, r.stderr
        (event,) = l.events(1)
    ts = event.pop("timestamp")
    assert event.pop("sender")["uid"] == os.getuid()  # added by sm-listen
    assert isinstance(ts, float) and ts > 1.6e9
    assert event == {
        "type": "state_change", "machine_id": "worker-1", "state": "processing",
        "previous_state": "idle", "source": "cron", "prio": 3,
        "data": {"job_id": "42", "progress": 50, "tags": ["a", "b"], "note": "a=b:=c",
                 "nested": {"k": {"v": None}}, "unicode": "ünï €"},
    }


def test_json_is_sent_as_is_with_a_timestamp_added_only_when_missing(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path) as l:
        assert send("--socket", path, "--json", '{"type":"j","b":[1, 2],"a":"x"}').returncode == 0
        assert send("--socket", path, "--json", '{"type":"k","timestamp":12.5}').returncode == 0
        first, second = l.out.take(2)
    assert first.startswith('{"type":"j","b":[1, 2],"a":"x","timestamp":')
    assert without_sender(second) == '{"type":"k","timestamp":12.5}'


def test_stdin_mode_sends_every_good_line_and_names_every_bad_one(tmp):
    path = os.path.join(tmp, "s.sock")
    lines = [
        '{"type":"a","n":1}',           # 1
        'not json',                      # 2 bad
        '',                              # 3 blank: skipped silently
        '{"type":"b","n":2}\r',          # 4 CRLF
        '[1,2]',                         # 5 bad: not an object
        '{"type":"","n":0}',             # 6 bad: empty type
        '{"n":0}',                       # 7 bad: no type
        '{"type":"c","n":3,"timestamp":5}',  # 8
        '{"type":"\udcff"}',             # 9 bad: not UTF-8 (written as a raw 0xff byte)
        '   ',                           # 10 blank
        '{"type":"d","n":4}',            # 11, no final newline
    ]
    data = "\n".join(lines).encode("utf-8", "surrogateescape")
    with Listener(path) as l:
        p = subprocess.run([tool("sm-send"), "--socket", path, "-"], input=data,
                           capture_output=True, timeout=30)
        events = l.events(4)
    assert p.returncode == 65
    assert [e["n"] for e in events] == [1, 2, 3, 4]
    assert events[2]["timestamp"] == 5
    err = p.stderr.decode()
    for n in (2, 5, 6, 7, 9):
        assert f"line {n}:" in err, err
    for n in (1, 3, 4, 8, 10, 11):
        assert f"line {n}:" not in err
    assert "not UTF-8" in err


def test_stdin_mode_all_good_exits_0(tmp):
    path = os.path.join(tmp, "s.sock")
    with Listener(path) as l:
        r = send("--socket", path, "-", input='{"type":"x"}\n{"type":"y"}\n')
        assert r.returncode == 0, r.stderr
        assert [e["type"] for e in l.events(2)] == ["x", "y"]


def test_oversize_event_is_refused_not_truncated_and_the_limit_is_inclusive(tmp):
    path = os.path.join(tmp, "s.sock")
    event = '{"type":"big","timestamp":1,"pad":"' + "x" * 200 + '"}'
    size = len(event)
    with Listener(path) as l:
        r = send("--socket", path, "--max-size", str(size - 1), "--json", event)
        assert r.returncode == 65
        assert "over the" in r.stderr and str(size) in r.stderr
        r = send("--socket", path, "--max-size", str(size), "--json", event)
        assert r.returncode == 0, r.stderr
        assert without_sender(l.out.next()) == event  # the first to arrive is the one that fits


def test_the_limit_counts_the_added_timestamp(tmp):
    path = os.path.join(tmp, "s.sock")
    event = '{"type":"t"}'
    with Listener(path) as l:
        r = send("--socket", path, "--max-size", str(len(event) + 5), "--json", event)
        assert r.returncode == 65
        r = send("--socket", path, "-", "--max-size", "40",
                 input='{"type":"t"}\n{"type":"u","timestamp":1}\n' + '{"type":"long","p":"' + "y" * 5000 + '"}\n')
        assert r.returncode == 65
        assert "line 1:" in r.stderr and "line 3:" in r.stderr and "line 2:" not in r.stderr
        assert json.loads(without_sender(l.out.next())) == {"type": "u", "timestamp": 1}


def test_default_size_limit_is_64_kib(tmp):
    path = os.path.join(tmp, "s.sock")
    head = '{"type":"t","timestamp":1,"p":"'
    fits = head + "z" * (65536 - len(head) - 2) + '"}'
    assert len(fits) == 65536
    with Listener(path) as l:
        assert send("--socket", path, "--json", fits[:-2] + 'z"}').returncode == 65
        assert send("--socket", path, "--json", fits).returncode == 0
        assert without_sender(l.out.next()) == fits


def test_no_listener_is_not_an_error_unless_strict(tmp):
    path = os.path.join(tmp, "nobody.sock")
    r = send("--socket", path, "t")
    assert r.returncode == 0 and r.stderr == ""
    r = send("--socket", path, "t", "-v")
    assert r.returncode == 0 and "no listener" in r.stderr
    r = send("--socket", path, "t", "--strict")
    assert r.returncode == 69 and "no listener" in r.stderr
    r = send("--socket", path, "--strict", "-", input='{"type":"a"}\n')
    assert r.returncode == 69


def test_sm_socket_is_honoured_and_socket_flag_wins(tmp):
    path = os.path.join(tmp, "env.sock")
    with Listener(path) as l:
        assert send("t", "n:=1", env={"SM_SOCKET": path}).returncode == 0
        assert l.events(1)[0]["data"] == {"n": 1}
        r = send("--socket", os.path.join(tmp, "other.sock"), "--strict", "t",
                 env={"SM_SOCKET": path})
        assert r.returncode == 69


@pytest.mark.parametrize("args,code", [
    ([], 64),
    (["t", "--json", '{"type":"x"}'], 64),
    (["t", "novalue"], 64),
    ([""], 64),
    (["t", "n:=notjson"], 64),
    (["t", "=x"], 64),
    (["-", "k=v"], 64),
    (["-", "--wait-reply", "1"], 64),
    (["--json", '{"type":"x"}', "-m", "w"], 64),
    (["t", "--wait-reply", "soon"], 64),
    (["t", "--bogus"], 64),
    (["--json", "not json"], 65),
    (["--json", '{"type":""}'], 65),
    (["--json", "[1]"], 65),
])
def test_usage_and_data_errors(tmp, args, code):
    r = send("--socket", os.path.join(tmp, "s.sock"), *args)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("sm-send: error: ")


def test_socket_path_too_long_is_a_usage_error(tmp):
    r = send("--socket", "/tmp/" + "x" * 200, "--strict", "t")
    assert r.returncode == 64 and "at most" in r.stderr


# --- --wait-reply: the test plays the relay on a socket it binds itself.

class Relay:
    def __init__(self, tmp):
        self.path = os.path.join(tmp, "relay.sock")
        self.sock = bound_socket(self.path)
        self.sock.settimeout(10)

    def interrupt(self):
        data, _ = self.sock.recvfrom(65536)
        return json.loads(data)

    def answer(self, event, decision):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(json.dumps(decision).encode(), event["reply_to"])
        s.close()

    def close(self):
        self.sock.close()


def waiting_sender(relay, *extra, seconds="10"):
    return Proc([tool("sm-send"), "--socket", relay.path, "--wait-reply", seconds, "interrupt",
                 "@interrupt_id=i-7", "@action_requests:=[{\"name\":\"deploy\",\"args\":{}}]",
                 *extra])


def decision(kind, **more):
    entry = {"type": kind}
    if kind == "edit":
        entry["edited_action"] = {"name": "deploy", "args": {"env": "staging"}}
    if kind == "reject":
        entry["message"] = "not on a Friday"
    return {"type": "decision", "interrupt_id": "i-7", "decisions": [entry], **more}


@pytest.mark.parametrize("kind,code", [("approve", 0), ("edit", 0), ("reject", 1)])
def test_wait_reply_exit_code_follows_the_decision(tmp, kind, code):
    relay = Relay(tmp)
    try:
        with waiting_sender(relay) as p:
            event = relay.interrupt()
            reply_to = event["reply_to"]
            st = os.lstat(reply_to)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
            assert event["interrupt_id"] == "i-7" and "timestamp" in event
            answer = decision(kind)
            relay.answer(event, answer)
            assert p.wait(10) == code
            out = p.p.stdout.read().decode()
            assert json.loads(out) == answer and out.endswith("\n") and out.count("\n") == 1
        assert not os.path.exists(reply_to)
    finally:
        relay.close()


def test_wait_reply_a_timed_out_decision_exits_75(tmp):
    relay = Relay(tmp)
    try:
        with waiting_sender(relay) as p:
            event = relay.interrupt()
            answer = decision("reject", timed_out=True)
            answer["decisions"][0]["message"] = "timed out"
            relay.answer(event, answer)
            assert p.wait(10) == 75
            assert json.loads(p.p.stdout.read()) == answer
        assert not os.path.exists(event["reply_to"])
    finally:
        relay.close()


def test_wait_reply_without_an_answer_exits_75_and_removes_its_socket(tmp):
    relay = Relay(tmp)
    try:
        with waiting_sender(relay, seconds="0.3") as p:
            event = relay.interrupt()
            assert p.wait(10) == 75
            assert "no reply" in p.p.stderr.read().decode()
            assert p.p.stdout.read() == b""
        assert not os.path.exists(event["reply_to"])
    finally:
        relay.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_wait_reply_interrupted_removes_its_socket(tmp, sig):
    relay = Relay(tmp)
    try:
        with waiting_sender(relay) as p:
            event = relay.interrupt()
            assert os.path.exists(event["reply_to"])
            p.signal(sig)
            assert p.wait(10) == 75  # never 0: "&& deploy" must not run
        assert not os.path.exists(event["reply_to"])
    finally:
        relay.close()


def test_wait_reply_skips_junk_and_other_interrupts_then_takes_the_decision(tmp):
    relay = Relay(tmp)
    try:
        with waiting_sender(relay) as p:
            event = relay.interrupt()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            for junk in (b"junk", b"[1]", b'{"type":"ping"}',
                         json.dumps(dict(decision("reject"), interrupt_id="other")).encode()):
                s.sendto(junk, event["reply_to"])
            s.close()
            relay.answer(event, decision("approve"))
            assert p.wait(10) == 0
            assert json.loads(p.p.stdout.read())["decisions"] == [{"type": "approve"}]
            assert "other" in p.p.stderr.read().decode()
    finally:
        relay.close()


def test_wait_reply_with_no_listener_exits_69_and_cleans_up(tmp):
    before = set(os.listdir("/tmp"))
    r = send("--socket", os.path.join(tmp, "nobody.sock"), "--wait-reply", "5", "interrupt",
             env={"TMPDIR": tmp})
    assert r.returncode == 69
    assert [f for f in os.listdir(tmp) if f.startswith("sm-reply-")] == []
    assert not [f for f in set(os.listdir("/tmp")) - before if f.startswith("sm-reply-")]


def test_wait_reply_replaces_a_reply_to_given_in_json(tmp):
    relay = Relay(tmp)
    try:
        with Proc([tool("sm-send"), "--socket", relay.path, "--wait-reply", "10", "--json",
                   '{"type":"interrupt","interrupt_id":"i-7","reply_to":"/nowhere"}']) as p:
            event = relay.interrupt()
            assert event["reply_to"] != "/nowhere" and os.path.exists(event["reply_to"])
            relay.answer(event, decision("approve"))
            assert p.wait(10) == 0
    finally:
        relay.close()


def test_wait_reply_removes_reply_sockets_left_by_killed_senders(tmp):
    from datagram_test import leave_stale_socket
    stale = os.path.join(tmp, "sm-reply-1-00000000000000aa.sock")
    live = os.path.join(tmp, "sm-reply-2-00000000000000bb.sock")
    regular = os.path.join(tmp, "sm-reply-3-00000000000000cc.sock")
    leave_stale_socket(stale)
    keeper = bound_socket(live)
    with open(regular, "w") as f:
        f.write("not a socket")
    relay = Relay(tmp)
    try:
        with Proc([tool("sm-send"), "--socket", relay.path, "--wait-reply", "10", "interrupt"],
                  env={"TMPDIR": tmp}) as p:
            event = relay.interrupt()
            assert os.path.dirname(event["reply_to"]) == tmp
            assert not os.path.exists(stale)
            assert os.path.exists(live) and os.path.exists(regular)
            # The event had no interrupt_id: sm-send made one, and the relay's
            # answer names it (a reply for "i-7" would be for another interrupt).
            relay.answer(event, dict(decision("approve"), interrupt_id=event["interrupt_id"]))
            assert p.wait(10) == 0
        assert not os.path.exists(event["reply_to"])
    finally:
        relay.close()
        keeper.close()


ATTACKER_UID, VICTIM_UID = 4242, 4343


def as_uid(uid):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as other users")
def test_wait_reply_beside_a_world_writable_socket_dir_ignores_a_reply_dir_anyone_could_make(tmp):
    # The default socket lives in /tmp, where anyone can make /tmp/reply
    # (setgid, world-writable): sm-send must not bind its reply socket there
    # nor believe its maker, or any local user could approve for it.
    os.chmod(tmp, 0o755)
    world = os.path.join(tmp, "world")
    os.mkdir(world)
    os.chmod(world, 0o1777)
    relay = Relay(world)
    os.chmod(relay.path, 0o666)
    private = os.path.join(tmp, "victim")
    os.mkdir(private, 0o700)
    os.chown(private, VICTIM_UID, VICTIM_UID)
    try:
        r = run(as_uid(ATTACKER_UID) + ["/bin/sh", "-c", f"mkdir {world}/reply && chmod 2777 {world}/reply"])
        assert r.returncode == 0, r.stderr
        with Proc(as_uid(VICTIM_UID) + [tool("sm-send"), "--socket", relay.path, "--wait-reply", "20",
                                        "interrupt", "@interrupt_id=i-7"],
                  env={**os.environ, "TMPDIR": private}) as p:
            event = relay.interrupt()
            assert os.path.dirname(event["reply_to"]) == private, event
            st = os.lstat(event["reply_to"])
            assert stat.S_IMODE(st.st_mode) == 0o600
            # The attacker cannot even reach it...
            code = ("import socket, sys\n"
                    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                    "try:\n    s.sendto(sys.argv[2].encode(), sys.argv[1])\nexcept PermissionError:\n"
                    "    sys.exit(77)\n")
            forged = run(as_uid(ATTACKER_UID) + ["/usr/bin/python3", "-c", code, event["reply_to"],
                                                 json.dumps(decision("approve"))])
            assert forged.returncode == 77, (forged.returncode, forged.stderr)
            # ...and the listener's (root's) answer is the one taken.
            relay.answer(event, decision("reject"))
            assert p.wait(10) == 1
            assert '"reject"' in p.p.stdout.read().decode()
    finally:
        relay.close()
