"""--audit FILE: a decision (or a timeout) goes out only once its record is
fsynced, and one that cannot be recorded is refused, visibly, changing nothing
(docs/hitl.md, "Durable approvals"). The relay runs on its own, its stdin a
pipe the test writes interrupts to; real WebSocket clients decide.

Making the audit file fail while the relay runs: the tests run as root, whom
a read-only mode does not stop, so the path is a symlink the test points at
/dev/full (every write: ENOSPC) and back at a real file.
"""
import json
import os

from smws_test import rmtree, short_tmpdir, wait_for
from hitl_support import ReplySocket, Stack, Watcher, deploy_interrupt


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


def test_audit_on_a_full_device_refuses_the_decision_and_nothing_goes_out():
    with ReplySocket() as reply, Stack("--audit", "/dev/full", listener=False) as s, \
            Watcher(s.url) as alice, Watcher(s.url) as bob:
        s.feed(deploy_interrupt("i-1", reply_to=reply.path))
        alice.interrupt(lambda m: m["interrupt_id"] == "i-1")
        decide(alice, "i-1", decided_by="alice")
        err = alice.wait(lambda m: m.get("type") == "error", what="the refusal")
        assert err["interrupt_id"] == "i-1"
        assert "/dev/full" in err["error"] and "No space left on device" in err["error"]
        assert err["reason"] == "audit failed"
        # Nothing was delivered: no broadcast, no stdout line, no datagram.
        assert not alice.of_type("decision") and not bob.of_type("decision")
        assert not [m for m in stdout_upto_marker(s, alice, 1) if m.get("type") == "decision"]
        assert no_datagram(reply)
        # Still pending, for everyone (a second client's refresh shows it).
        assert [p["interrupt_id"] for p in bob.snapshot()["pending"]] == ["i-1"]
        # The operator is told: stderr and /healthz (degraded, HTTP 200 per SPEC).
        s.err.wait(lambda l: "/dev/full" in l and "No space left" in l, what="the stderr report")
        status, health = s.health()
        assert status == 200
        assert health["status"] == "degraded" and health["audit"] == "failing"
        assert any("/dev/full" in r for r in health["reasons"])
        assert s.metric("ws_relay_audit_ok") == 0
        # Bob may try too: refused the same way, still pending.
        decide(bob, "i-1", decided_by="bob")
        assert "/dev/full" in bob.wait(lambda m: m.get("type") == "error")["error"]
        assert [p["interrupt_id"] for p in alice.snapshot()["pending"]] == ["i-1"]


def test_a_failing_audit_file_refuses_decisions_until_it_can_be_written_again():
    audit = SwappableAudit()
    try:
        with ReplySocket() as reply, Stack("--audit", audit.path, listener=False) as s, \
                Watcher(s.url) as w:
            assert s.health()[1]["audit"] == "ok"
            s.feed(deploy_interrupt("i-1", reply_to=reply.path))
            w.interrupt(lambda m: m["interrupt_id"] == "i-1")
            wait_for(lambda: len(records(audit.file)) == 1, what="the interrupt's record")
            audit.fail()  # mid-run

            decide(w, "i-1")
            err = w.wait(lambda m: m.get("type") == "error", what="the refusal")
            assert audit.path in err["error"] and "No space left on device" in err["error"]
            assert s.health()[1]["status"] == "degraded"

            audit.heal()
            start = w.count()
            decide(w, "i-1", decided_by="carol")
            # The record is on disk before any client sees the decision.
            seen = w.wait(lambda m: m.get("type") == "decision", start=start, what="the decision")
            on_disk = [r for r in records(audit.file) if r["type"] == "decision"]
            assert [r["decided_by"] for r in on_disk] == ["carol"]
            assert seen["decided_by"] == "carol"
            assert reply.recv()["decided_by"] == "carol"
            decisions = [m for m in stdout_upto_marker(s, w, 2) if m.get("type") == "decision"]
            assert [d["decided_by"] for d in decisions] == ["carol"]
            # Recovered by itself.
            status, health = s.health()
            assert status == 200 and health["status"] == "ok" and health["audit"] == "ok"
            assert "reasons" not in health
            s.err.wait(lambda l: "written again" in l, what="the recovery note")
    finally:
        audit.close()


def test_a_timeout_that_cannot_be_recorded_stays_pending_and_resolves_once_after_recovery():
    audit = SwappableAudit()
    try:
        with ReplySocket() as reply, Stack("--audit", audit.path, listener=False) as s, \
                Watcher(s.url) as w:
            s.feed(deploy_interrupt("i-t", timeout=1.5, reply_to=reply.path))
            w.interrupt(lambda m: m["interrupt_id"] == "i-t")
            wait_for(lambda: len(records(audit.file)) == 1, what="the interrupt's record")
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
