# SPDX-License-Identifier: Apache-2.0
"""--audit FILE: a decision (or a timeout) goes out only once its record is
fsynced, and one that cannot be recorded is refused, visibly, changing nothing
(docs/hitl.md, "Durable approvals"). The relay runs on its own, its stdin a
pipe the test writes interrupts to; real WebSocket clients decide.

Making the audit file fail while the relay runs: the tests run as root, whom
a read-only mode does not stop, so the path is a symlink the test points at
/dev/full (every write: ENOSPC) and back at a real file.
"""
import pytest
import json
import os

from redis_support import RedisServer, wait_health
from relay_support import RawWs, Relay
from smws_test import Proc, rmtree, short_tmpdir, tool, wait_for
from hitl_support import (LISTEN_RE, Lines, ReplySocket, Stack, Watcher, compact,
                          deploy_interrupt)


# Every test of this file runs under ThreadSanitizer too (tests/tsan/run.sh).
pytestmark = pytest.mark.tsan


def decide(watcher, interrupt_id, **extra):
    watcher.send({"type": "decision", "interrupt_id": interrupt_id,
                  "decisions": [{"type": "approve"}], **extra})


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def no_datagram(reply):
    """True when nothing is waiting on the reply socket (checked, not awaited)."""
    reply.sock.setblocking(False)
    try:
        reply.sock.recv(1 << 16)
        return False
    except BlockingIOError:
        return True
    finally:
        reply.sock.setblocking(True)


def stdout_upto_marker(stack, watcher, marker):
    """The relay's stdout up to a marker message sent by watcher: a client's
    non-HITL message is printed in order behind anything queued before it."""
    watcher.send({"type": "marker", "n": marker})
    stack.out.wait(lambda l: f'"n":{marker}' in l, what=f"marker {marker} on stdout")
    lines = stack.out.json_lines()
    return lines[:next(i for i, m in enumerate(lines) if m.get("n") == marker)]


class SwappableAudit:
    """An audit path that is a symlink to a real file or to /dev/full."""

    def __init__(self):
        self.dir = short_tmpdir()
        self.path = os.path.join(self.dir, "audit.ndjson")
        self.file = os.path.join(self.dir, "real.ndjson")
        os.symlink(self.file, self.path)

    def point(self, target):
        tmp = self.path + ".new"
        os.symlink(target, tmp)
        os.replace(tmp, self.path)  # atomic: the relay sees one or the other

    def fail(self):
        self.point("/dev/full")

    def heal(self):
        self.point(self.file)

    def close(self):
        rmtree(self.dir)


def test_on_a_full_device_an_interrupt_is_refused_and_stdin_goes_on():
    with Stack("--audit", "/dev/full", listener=False) as s, Watcher(s.url) as w:
        s.feed(deploy_interrupt("i-1"), {"type": "state_change", "machine_id": "m-1", "state": "after"})
        # The line after it is read and broadcast; the interrupt never is.
        w.wait(lambda m: m.get("type") == "state_change", what="the event after the interrupt")
        assert not w.of_type("interrupt")
        line = s.err.wait(lambda l: "stdin line 1" in l and '"i-1"' in l, what="the refusal")
        assert "/dev/full" in line and "No space left on device" in line and "refused" in line
        assert w.snapshot()["pending"] == []
        decide(w, "i-1")
        err = w.wait(lambda m: m.get("type") == "error", what="the decision's error")
        assert err["error"] == "not pending" and err["reason"] == "unknown interrupt_id"
        status, health = s.health()
        assert status == 200  # SPEC: 503 only while Redis is unreachable
        assert health["status"] == "degraded" and health["audit"] == "failing"
        assert any("/dev/full" in r and "No space left" in r for r in health["reasons"])
        assert s.metric("ws_relay_audit_ok") == 0


def test_a_decision_that_cannot_be_recorded_is_refused_and_nothing_goes_out():
    audit = SwappableAudit()
    try:
        with ReplySocket() as reply, Stack("--audit", audit.path, listener=False) as s, \
                Watcher(s.url) as alice, Watcher(s.url) as bob:
            s.feed(deploy_interrupt("i-1", reply_to=reply.path))
            alice.interrupt(lambda m: m["interrupt_id"] == "i-1")
            # Recorded before it was broadcast.
            assert [r["interrupt_id"] for r in records(audit.file)] == ["i-1"]
            audit.fail()  # mid-run: the path now leads to /dev/full

            decide(alice, "i-1", decided_by="alice")
            err = alice.wait(lambda m: m.get("type") == "error", what="the refusal")
            assert err["interrupt_id"] == "i-1" and err["reason"] == "audit failed"
            assert audit.path in err["error"] and "No space left on device" in err["error"]
            # Nothing was delivered: no broadcast, no stdout line, no datagram.
            assert not alice.of_type("decision") and not bob.of_type("decision")
            assert not [m for m in stdout_upto_marker(s, alice, 1) if m.get("type") == "decision"]
            assert no_datagram(reply)
            # Still pending, for everyone (a second client's refresh shows it).
            assert [p["interrupt_id"] for p in bob.snapshot()["pending"]] == ["i-1"]
            # The operator is told: stderr and /healthz.
            s.err.wait(lambda l: audit.path in l and "No space left" in l, what="the stderr report")
            status, health = s.health()
            assert status == 200 and health["status"] == "degraded" and health["audit"] == "failing"
            # Bob may try too: refused the same way.
            decide(bob, "i-1", decided_by="bob")
            assert audit.path in bob.wait(lambda m: m.get("type") == "error")["error"]

            audit.heal()
            start = alice.count()
            decide(alice, "i-1", decided_by="carol")
            # The record is on disk before any client sees the decision.
            seen = alice.wait(lambda m: m.get("type") == "decision", start=start, what="the decision")
            on_disk = [r for r in records(audit.file) if r["type"] == "decision"]
            assert [r["decided_by"] for r in on_disk] == ["carol"]
            assert seen["decided_by"] == "carol"
            assert reply.recv()["decided_by"] == "carol"
            decisions = [m for m in stdout_upto_marker(s, alice, 2) if m.get("type") == "decision"]
            assert [d["decided_by"] for d in decisions] == ["carol"]
            # Recovered by itself.
            status, health = s.health()
            assert status == 200 and health["status"] == "ok" and health["audit"] == "ok"
            assert "reasons" not in health and s.metric("ws_relay_audit_ok") == 1
            s.err.wait(lambda l: "written again" in l, what="the recovery note")
    finally:
        audit.close()


def test_a_removed_directory_refuses_interrupts_until_it_is_back():
    tmp = short_tmpdir()
    logs = os.path.join(tmp, "logs")
    os.mkdir(logs)
    path = os.path.join(logs, "audit.ndjson")
    try:
        with Stack("--audit", path, listener=False) as s, Watcher(s.url) as w:
            rmtree(logs)
            s.feed(deploy_interrupt("i-gone"))
            s.err.wait(lambda l: '"i-gone"' in l and "No such file or directory" in l,
                       what="the refusal")
            assert s.health()[1]["status"] == "degraded"
            os.mkdir(logs)
            s.feed(deploy_interrupt("i-back"))
            w.interrupt(lambda m: m["interrupt_id"] == "i-back")
            assert [r["interrupt_id"] for r in records(path)] == ["i-back"]
            assert [m["interrupt_id"] for m in w.of_type("interrupt")] == ["i-back"]
            assert s.health()[1]["status"] == "ok"
    finally:
        rmtree(tmp)


def test_a_timeout_that_cannot_be_recorded_stays_pending_and_resolves_once_after_recovery():
    audit = SwappableAudit()
    try:
        with ReplySocket() as reply, Stack("--audit", audit.path, listener=False) as s, \
                Watcher(s.url) as w:
            s.feed(deploy_interrupt("i-t", timeout=1.5, reply_to=reply.path))
            w.interrupt(lambda m: m["interrupt_id"] == "i-t")
            audit.fail()
            # The deadline passes; every tick's attempt is refused (counted).
            wait_for(lambda: (s.metric("ws_relay_audit_failures_total") or 0) >= 3, 15,
                     what="retried timeout records")
            snap = w.snapshot()
            assert [p["interrupt_id"] for p in snap["pending"]] == ["i-t"]
            assert snap["pending"][0]["expires_in"] == 0
            assert not w.of_type("decision") and no_datagram(reply)
            # The stderr report is rate-limited: not a line per retry.
            failures = [l for l in s.err.lines if "No space left" in l]
            assert len(failures) < s.metric("ws_relay_audit_failures_total")

            audit.heal()
            timeout = w.wait(lambda m: m.get("type") == "decision", what="the timeout")
            assert timeout["timed_out"] is True
            assert reply.recv()["timed_out"] is True
            decisions = [m for m in stdout_upto_marker(s, w, 3) if m.get("type") == "decision"]
            assert len(decisions) == 1 and len(w.of_type("decision")) == 1
            assert [r["interrupt_id"] for r in records(audit.file) if r["type"] == "decision"] == ["i-t"]
            assert no_datagram(reply)
            assert s.health()[1]["status"] == "ok"
    finally:
        audit.close()


def test_a_second_decision_while_the_first_is_recorded_is_told_it_is_not_pending():
    # Whether the second decision arrives while the first is in flight or
    # after it was recorded, it is refused as "not pending"; exactly one wins.
    audit = SwappableAudit()
    try:
        with Stack("--audit", audit.path, listener=False) as s, Watcher(s.url) as a, \
                Watcher(s.url) as b:
            s.feed(deploy_interrupt("i-2"))
            a.interrupt(lambda m: m["interrupt_id"] == "i-2")
            b.interrupt(lambda m: m["interrupt_id"] == "i-2")
            decide(a, "i-2", decided_by="a")
            decide(b, "i-2", decided_by="b")
            # The two connections race: either may be first at the relay.
            winner = a.wait(lambda m: m.get("type") == "decision")
            assert b.wait(lambda m: m.get("type") == "decision") == winner
            loser = b if winner["decided_by"] == "a" else a
            refused = loser.wait(lambda m: m.get("type") == "error")
            assert refused["error"] == "not pending"
            assert refused["reason"] in ("being recorded", "already decided")
            assert [r["decided_by"] for r in records(audit.file) if r["type"] == "decision"] == \
                [winner["decided_by"]]
    finally:
        audit.close()


def test_stdin_from_a_regular_file_keeps_its_order_around_recorded_interrupts():
    # A regular file is read by the stdin thread, which waits for each
    # interrupt's record before it reads on (the loop reads a pipe).
    tmp = short_tmpdir()
    try:
        source, audit = os.path.join(tmp, "events.ndjson"), os.path.join(tmp, "audit.ndjson")
        lines = [{"type": "state_change", "machine_id": "m-1", "state": "s1"},
                 deploy_interrupt("i-1"),
                 {"type": "state_change", "machine_id": "m-1", "state": "s2"},
                 deploy_interrupt("i-2"),
                 {"type": "state_change", "machine_id": "m-1", "state": "s3"}]
        with open(source, "w") as f:
            f.write("".join(compact(l) + "\n" for l in lines))
        with open(source) as stdin, Proc([tool("ws-relay"), "--listen", "127.0.0.1:0", "--seq",
                                          "--history", "10", "--audit", audit], stdin=stdin) as p:
            err = Lines(p.p.stderr)
            url = LISTEN_RE.search(err.wait(lambda l: LISTEN_RE.search(l), what="listening")).group(1)
            with Watcher(url) as w:
                def stamped():
                    return sorted((m for m in list(w.messages) if "seq" in m and m["type"] != "initial"),
                                  key=lambda m: m["seq"])
                wait_for(lambda: len(stamped()) == 5, what="all five events")
                got = [m.get("state") or m["interrupt_id"] for m in stamped()]
                assert got == ["s1", "i-1", "s2", "i-2", "s3"]
                assert [p["interrupt_id"] for p in w.snapshot()["pending"]] == ["i-1", "i-2"]
        assert [r["interrupt_id"] for r in records(audit)] == ["i-1", "i-2"]
    finally:
        rmtree(tmp)


def test_in_a_group_the_origin_answers_the_script_only_once_its_record_is_written():
    # Relay a read the interrupt (its origin, with --audit); a client of
    # relay b decides. The group broadcasts the decision; a prints it and
    # answers reply_to only once its record is written, retrying meanwhile.
    audit = SwappableAudit()
    try:
        with RedisServer() as redis, ReplySocket() as reply, \
                Relay("--redis", redis.url, "--audit", audit.path) as a, \
                Relay("--redis", redis.url) as b:
            ws = RawWs(b.port, path="/ws/events", timeout=15)
            assert ws.recv_json(timeout=15)["type"] == "initial"
            a.send(deploy_interrupt("i-g", reply_to=reply.path))
            while ws.recv_json(timeout=15).get("type") != "interrupt":
                pass
            wait_for(lambda: [r["interrupt_id"] for r in records(audit.file)] == ["i-g"],
                     what="the origin's record of the interrupt")
            audit.fail()
            ws.send_text(compact({"type": "decision", "interrupt_id": "i-g",
                                  "decisions": [{"type": "approve"}], "decided_by": "gina"}))
            while ws.recv_json(timeout=15).get("type") != "decision":  # the group decided
                pass
            a.wait_stderr(r"No space left on device", timeout=15)
            # (stderr is written before the loop learns of the failure)
            wait_for(lambda: wait_health(a, 200)["status"] == "degraded", what="a degraded")
            assert no_datagram(reply)
            assert not [l for l in a.stdout_pending() if '"decision"' in l]

            audit.heal()  # the tick's retry writes it; then stdout and the reply
            assert reply.recv(timeout=15)["decided_by"] == "gina"
            assert json.loads(a.stdout_line(timeout=15))["decided_by"] == "gina"
            assert [r["type"] for r in records(audit.file)] == ["interrupt", "decision"]
            ws.close_socket()
    finally:
        audit.close()
