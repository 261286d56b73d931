# SPDX-License-Identifier: Apache-2.0
"""Human-in-the-loop end to end, with real processes and sockets:

    sm-send interrupt ... --wait-reply S  ->  sm-listen | ws-relay  <->  hitl-approve / WebSocket clients

Tests named *_script_* run the SPEC's whole loop (sm-send, sm-listen, ws-relay,
hitl-approve). The others feed ws-relay's stdin directly (exactly what
sm-listen would write) when the subject is the relay's HITL table or
hitl-approve, and stand in for the waiting sm-send with a bound reply socket.
"""
import json
import os
import stat
import subprocess
import threading

import pytest

from smws_test import Proc, free_port, short_tmpdir, rmtree, tool, wait_for
from hitl_support import (Lines, Pty, ReplySocket, Stack, Watcher, compact, deploy_interrupt,
                          hitl_approve)
from ws_raw import RawClient

DEPLOY = compact([{"name": "deploy", "args": {"env": "prod"}, "description": "Deploy build 42"}])


def ask(stack, interrupt_id, *fields, actions=DEPLOY, wait=60):
    """sm-send interrupt ... --wait-reply in the background (a Proc)."""
    args = ["interrupt", "@thread_id=t-1", f"@action_requests:={actions}", *fields, "--wait-reply", str(wait)]
    if interrupt_id:
        args.insert(1, f"@interrupt_id={interrupt_id}")
    return stack.sm_send(*args, background=True)


def finish(proc, timeout=30):
    """(exit code, stdout, stderr) of a background Proc."""
    out, err = proc.p.communicate(timeout=timeout)
    return proc.p.returncode, out.decode(), err.decode()


def is_pending(watcher, interrupt_id):
    return any(p["interrupt_id"] == interrupt_id for p in watcher.snapshot()["pending"])


def error_after(watcher, start, what="error"):
    return watcher.wait(lambda m: m.get("type") == "error", start=start, what=what)


# --- the whole loop: a script asks, a human answers ---------------------------

def test_script_approve_exits_0_and_prints_the_decision():
    with Stack() as s, Watcher(s.url) as w, ask(s, "i-7") as sender:
        w.interrupt(lambda m: m["interrupt_id"] == "i-7")
        r = hitl_approve("--as", "alice", "--decisions", "-", s.url,
                         input='{"interrupt_id":"i-7","type":"approve"}\n')
        assert r.returncode == 0, r.stderr
        code, out, err = finish(sender)
        assert code == 0, err
        reply = json.loads(out)
        assert reply["type"] == "decision" and reply["interrupt_id"] == "i-7"
        assert reply["thread_id"] == "t-1"
        assert reply["decisions"] == [{"type": "approve"}]
        assert reply["decided_by"] == "alice"
        assert reply["client"].startswith("127.0.0.1:")
        # Broadcast to every client, printed by the relay and by hitl-approve.
        w.wait(lambda m: m.get("type") == "decision" and m["interrupt_id"] == "i-7")
        s.out.wait(lambda l: '"decision"' in l and '"i-7"' in l, what="decision on relay stdout")
        assert json.loads(r.stdout.splitlines()[0])["decided_by"] == "alice"


def test_script_reject_exits_1_with_the_message():
    with Stack() as s, Watcher(s.url) as w, ask(s, "i-8") as sender:
        w.interrupt(lambda m: m["interrupt_id"] == "i-8")
        r = hitl_approve("--decisions", "-", s.url,
                         input='{"interrupt_id":"i-8","type":"reject","message":"not on a Friday"}\n')
        assert r.returncode == 0, r.stderr
        code, out, err = finish(sender)
        assert code == 1, err
        assert json.loads(out)["decisions"] == [{"type": "reject", "message": "not on a Friday"}]


def test_script_edit_exits_0_with_the_edited_action():
    with Stack() as s, Watcher(s.url) as w, ask(s, "i-9") as sender:
        w.interrupt(lambda m: m["interrupt_id"] == "i-9")
        edit = {"interrupt_id": "i-9", "type": "edit",
                "edited_action": {"name": "deploy", "args": {"env": "staging"}}}
        r = hitl_approve("--decisions", "-", s.url, input=compact(edit) + "\n")
        assert r.returncode == 0, r.stderr
        code, out, err = finish(sender)
        assert code == 0, err
        entry = json.loads(out)["decisions"][0]
        assert entry == {"type": "edit", "edited_action": {"name": "deploy", "args": {"env": "staging"}}}


def test_script_timeout_exits_75_and_a_timed_out_decision_is_broadcast():
    with Stack() as s, Watcher(s.url) as w, ask(s, "i-10", "@timeout:=0.5") as sender:
        decision = w.wait(lambda m: m.get("type") == "decision" and m["interrupt_id"] == "i-10",
                          what="timeout decision")
        assert decision["timed_out"] is True
        assert decision["decisions"] == [{"type": "reject", "message": "timed out"}]
        code, out, err = finish(sender)
        assert code == 75, err
        assert json.loads(out)["timed_out"] is True
        s.out.wait(lambda l: '"timed_out":true' in l and '"i-10"' in l, what="timeout on relay stdout")
        # Too late now: the interrupt is gone, a decision is told so.
        start = w.count()
        w.send({"type": "decision", "interrupt_id": "i-10", "decisions": [{"type": "approve"}]})
        error = error_after(w, start)
        assert error["error"] == "not pending" and error["interrupt_id"] == "i-10"


def test_script_each_invalid_decision_is_refused_and_the_interrupt_stays_pending():
    actions = compact([{"name": "deploy", "args": {"env": "prod"}}, {"name": "notify", "args": {"to": "ops"}}])
    configs = compact([{"action_name": "deploy", "allowed_decisions": ["approve", "reject"]}])
    with Stack() as s, Watcher(s.url) as w, Watcher(s.url) as other, \
            ask(s, "i-11", f"@review_configs:={configs}", actions=actions) as sender:
        w.interrupt(lambda m: m["interrupt_id"] == "i-11")
        other_start = other.count()
        ok = {"type": "approve"}
        invalid = [
            ("not json", "this is not JSON"),
            ("json, not an object", "[1,2]"),
            ("no interrupt_id", {"type": "decision", "decisions": [ok, ok]}),
            ("decisions not an array", {"type": "decision", "interrupt_id": "i-11", "decisions": "approve"}),
            ("one entry for two actions", {"type": "decision", "interrupt_id": "i-11", "decisions": [ok]}),
            ("three entries for two actions", {"type": "decision", "interrupt_id": "i-11", "decisions": [ok, ok, ok]}),
            ("entry not an object", {"type": "decision", "interrupt_id": "i-11", "decisions": ["approve", ok]}),
            ("unknown type", {"type": "decision", "interrupt_id": "i-11", "decisions": [{"type": "maybe"}, ok]}),
            ("edit not allowed by review_configs", {"type": "decision", "interrupt_id": "i-11", "decisions": [
                {"type": "edit", "edited_action": {"name": "deploy", "args": {}}}, ok]}),
            ("edited_action without args", {"type": "decision", "interrupt_id": "i-11", "decisions": [
                ok, {"type": "edit", "edited_action": {"name": "notify"}}]}),
            ("edited_action not an object", {"type": "decision", "interrupt_id": "i-11", "decisions": [
                ok, {"type": "edit", "edited_action": "notify everyone"}]}),
            ("unknown interrupt", {"type": "decision", "interrupt_id": "i-404", "decisions": [ok, ok]}),
        ]
        for what, message in invalid:
            start = w.count()
            w.send(message)
            error = error_after(w, start, what=f"error for {what}")
            assert isinstance(error["error"], str) and error["error"], what
            assert sender.p.poll() is None, f"sm-send ended after {what}"
        assert w.snapshot()["pending"][0]["interrupt_id"] == "i-11"
        # The errors went to their sender only; nobody saw a decision.
        assert other.of_type("error") == []
        assert w.of_type("decision") == [] and other.of_type("decision") == []
        w.send({"type": "decision", "interrupt_id": "i-11", "decisions": [ok, {"type": "reject", "message": "no"}]})
        code, out, err = finish(sender)
        # A reject among the entries is a "no" for the script.
        assert code == 1, err
        assert json.loads(out)["decisions"][1] == {"type": "reject", "message": "no"}
        other.wait(lambda m: m.get("type") == "decision", start=other_start)


@pytest.mark.tsan
def test_script_two_approvers_race_and_exactly_one_wins():
    rounds = 5
    with Stack() as s, Watcher(s.url) as a, Watcher(s.url) as b:
        for k in range(rounds):
            iid = f"race-{k}"
            with ask(s, iid) as sender:
                a.interrupt(lambda m: m["interrupt_id"] == iid)
                b.interrupt(lambda m: m["interrupt_id"] == iid)
                a_start, b_start = a.count(), b.count()
                barrier = threading.Barrier(2)

                def decide(w, entry):
                    barrier.wait(5)
                    w.send({"type": "decision", "interrupt_id": iid, "decisions": [entry],
                            "decided_by": "a" if w is a else "b"})

                threads = [threading.Thread(target=decide, args=(a, {"type": "approve"})),
                           threading.Thread(target=decide, args=(b, {"type": "reject", "message": "b"}))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(10)
                code, out, err = finish(sender)
                winner = json.loads(out)["decided_by"]
                assert code == (0 if winner == "a" else 1), err
                loser = b if winner == "a" else a
                loser_start = b_start if winner == "a" else a_start
                error = error_after(loser, loser_start, what="loser's error")
                assert error["error"] == "not pending" and error["interrupt_id"] == iid
                # Round-trip a refresh on both so every message about iid has arrived.
                for w, start in ((a, a_start), (b, b_start)):
                    w.snapshot()
                    decisions = [m for m in w.messages[start:]
                                 if m.get("type") == "decision" and m.get("interrupt_id") == iid]
                    assert len(decisions) == 1 and decisions[0]["decided_by"] == winner
                winner_w = a if winner == "a" else b
                winner_start = a_start if winner == "a" else b_start
                assert [m for m in winner_w.messages[winner_start:] if m.get("type") == "error"] == []


def test_script_auto_approve_with_match_leaves_other_actions_pending():
    other = compact([{"name": "drop_table", "args": {"table": "users"}}])
    with Stack() as s, Watcher(s.url) as w, \
            Proc([tool("hitl-approve"), "--auto", "approve", "--match", "deploy*", "--as", "robot", s.url]) as auto, \
            ask(s, "i-deploy") as deploy, ask(s, "i-drop", actions=other) as drop:
        code, out, err = finish(deploy)
        assert code == 0, err
        assert json.loads(out)["decided_by"] == "robot"
        w.interrupt(lambda m: m["interrupt_id"] == "i-drop")
        assert is_pending(w, "i-drop")
        assert drop.p.poll() is None
        # hitl-approve printed what it decided as NDJSON.
        line = Lines(auto.p.stdout).wait(lambda l: l.strip(), what="hitl-approve's output")
        assert json.loads(line)["interrupt_id"] == "i-deploy"


def test_script_auto_reject_without_match_applies_to_every_request_and_once_exits():
    with Stack() as s, Watcher(s.url) as w, ask(s, "i-any") as sender:
        w.interrupt(lambda m: m["interrupt_id"] == "i-any")
        r = hitl_approve("--auto", "reject", "--once", s.url, timeout=30)
        assert r.returncode == 0, r.stderr
        code, out, err = finish(sender)
        assert code == 1, err
        assert json.loads(out)["decisions"][0]["type"] == "reject"


# --- the interactive prompt, on a pseudo-terminal -------------------------------

PROMPT = r"\[a\]pprove \[e\]dit \[r\]eject \[s\]kip \[q\]uit"


def test_script_interactive_prompt_approves_and_rejects_while_new_requests_queue():
    # Pings every 0.2 s: hitl-approve must answer them while it waits for a key.
    with Stack("--ping-interval", "0.2", "--ping-timeout", "0.6") as s, ask(s, "i-1") as first, \
            Pty([tool("hitl-approve"), "--as", "carol", s.url], env={"NO_COLOR": "1"}) as term:
        term.expect(r"approval request i-1 · thread t-1")
        for text in [r"deploy — Deploy build 42", r'"env": "prod"', r"allowed: approve, edit, reject",
                     r"times out in", PROMPT + r" \(\d+m \d+s left\)"]:
            term.expect(text)
        mark = term.mark()
        with ask(s, "i-2", actions=compact([{"name": "migrate", "args": {"db": "main"}}])) as second:
            term.expect(r"\+ new request i-2 \(migrate\) queued, 2 pending", start=mark)
            # A client that ignores pings is closed for it: pings flowed for
            # longer than --ping-timeout while the prompt waited.
            with RawClient(s.port) as silent:
                assert silent.close_code()[0] == 1008
            term.type("a")
            code, out, err = finish(first)
            assert code == 0, err
            assert json.loads(out)["decided_by"] == "carol"
            mark = term.expect(r"approval request i-2")
            term.expect(r"migrate", start=mark)
            term.type("r")
            term.expect(r"message \(Enter for none\): ", start=mark)
            term.type("not today\n")
            code, out, err = finish(second)
            assert code == 1, err
            assert json.loads(out)["decisions"] == [{"type": "reject", "message": "not today"}]
        term.expect(r"waiting for approval requests")
        term.type("q")
        assert term.wait(10) == 0
        assert "connection lost" not in term.text()


def test_interactive_request_decided_elsewhere_is_withdrawn_with_a_notice():
    with Stack(listener=False) as s, Watcher(s.url) as w, \
            Pty([tool("hitl-approve"), s.url], env={"NO_COLOR": "1"}) as term:
        term.expect(r"waiting for approval requests")
        s.feed(deploy_interrupt("i-5"))
        term.expect(PROMPT)
        w.send({"type": "decision", "interrupt_id": "i-5", "decisions": [{"type": "approve"}],
                "decided_by": "dave"})
        mark = term.expect(r"- i-5 \(deploy\) withdrawn: approve by dave")
        term.expect(r"waiting for approval requests", start=mark)
        term.type("q")
        assert term.wait(10) == 0


def test_interactive_flags_a_request_about_to_time_out_then_withdraws_it():
    with Stack(listener=False) as s, \
            Pty([tool("hitl-approve"), s.url], env={"NO_COLOR": "1"}) as term:
        term.expect(r"waiting for approval requests")
        s.feed(deploy_interrupt("i-6", timeout=2))
        mark = term.expect(PROMPT)
        mark = term.expect(r"! i-6 \(deploy\) times out in \d+s", start=mark)
        term.expect(r"- i-6 \(deploy\) withdrawn: timed out", start=mark)
        term.type("q")
        assert term.wait(10) == 0


def test_interactive_edit_reopens_the_editor_until_the_json_is_valid():
    tmp = short_tmpdir()
    try:
        editor = os.path.join(tmp, "editor.sh")
        count = os.path.join(tmp, "count")
        # First run: leave broken JSON. Second run: a valid edit.
        with open(editor, "w") as f:
            f.write("#!/bin/sh\n"
                    f"if [ ! -e '{count}' ]; then touch '{count}'; printf '{{\"name\": \"deploy\", \"args\": ' > \"$1\";\n"
                    "else printf '{\"name\": \"deploy\", \"args\": {\"env\": \"staging\"}}' > \"$1\"; fi\n")
        os.chmod(editor, stat.S_IRWXU)
        with Stack(listener=False) as s, ReplySocket() as reply, \
                Pty([tool("hitl-approve"), s.url], env={"NO_COLOR": "1", "EDITOR": editor, "VISUAL": ""}) as term:
            s.feed(deploy_interrupt("i-e", reply_to=reply.path))
            term.expect(PROMPT)
            term.type("e")
            mark = term.expect(r"not valid JSON")
            term.expect(r"\[e\]dit again or \[c\]ancel\?", start=mark)
            term.type("e")
            decision = reply.recv()
            assert decision["decisions"] == [{"type": "edit",
                                              "edited_action": {"name": "deploy", "args": {"env": "staging"}}}]
            term.type("q")
            assert term.wait(10) == 0
    finally:
        rmtree(tmp)


@pytest.mark.tsan
def test_interactive_keeps_answering_pings_while_the_editor_runs():
    tmp = short_tmpdir()
    try:
        go = os.path.join(tmp, "go")
        editor = os.path.join(tmp, "editor.sh")
        # An editor that stays open until the test says so (at most 10 s).
        with open(editor, "w") as f:
            f.write("#!/bin/sh\n"
                    f"i=0; while [ ! -e '{go}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n"
                    "printf '{\"name\": \"deploy\", \"args\": {\"env\": \"qa\"}}' > \"$1\"\n")
        os.chmod(editor, stat.S_IRWXU)
        with Stack("--ping-interval", "0.2", "--ping-timeout", "0.6", listener=False) as s, \
                ReplySocket() as reply, \
                Pty([tool("hitl-approve"), "--no-reconnect", s.url],
                    env={"NO_COLOR": "1", "EDITOR": editor, "VISUAL": ""}) as term:
            s.feed(deploy_interrupt("i-ed", reply_to=reply.path))
            term.expect(PROMPT)
            term.type("e")
            term.expect(r"edit\r?\n")
            # While the editor is open, a client that ignores pings is closed
            # for it; hitl-approve, answering from its reader thread, is not.
            with RawClient(s.port) as silent:
                assert silent.close_code()[0] == 1008
            open(go, "w").close()
            decision = reply.recv()
            assert decision["decisions"][0]["edited_action"]["args"] == {"env": "qa"}
            assert term.p.poll() is None
            term.type("q")
            assert term.wait(10) == 0
    finally:
        rmtree(tmp)


# --- the relay's table, seen by clients -----------------------------------------

def test_a_late_joiner_gets_pending_interrupts_in_its_snapshot():
    with Stack(listener=False) as s, Watcher(s.url) as early:
        s.feed(deploy_interrupt("i-a", timeout=100), deploy_interrupt(None, timeout=100))
        assigned = early.wait(lambda m: m.get("type") == "interrupt" and m["interrupt_id"] != "i-a")
        assert assigned["interrupt_id"]  # the relay gave it an id
        early.send({"type": "decision", "interrupt_id": "i-a", "decisions": [{"type": "approve"}]})
        early.wait(lambda m: m.get("type") == "decision")
        with Watcher(s.url) as late:
            snapshot = late.wait(lambda m: m.get("type") == "initial")
            pending = snapshot["pending"]
            assert [p["interrupt_id"] for p in pending] == [assigned["interrupt_id"]]
            assert pending[0]["action_requests"][0]["name"] == "deploy"
            assert 0 <= pending[0]["expires_in"] <= 100


def test_a_malformed_interrupt_is_reported_and_neither_broadcast_nor_pending():
    with Stack(listener=False) as s, Watcher(s.url) as w:
        no_actions = {"type": "interrupt", "interrupt_id": "bad-1", "action_requests": []}
        bad_timeout = deploy_interrupt("bad-2", timeout="soon")
        s.feed(no_actions, bad_timeout, deploy_interrupt("good"), deploy_interrupt("good"))
        s.err.wait(lambda l: "action_requests" in l, what="a warning about bad-1")
        s.err.wait(lambda l: "timeout" in l, what="a warning about bad-2")
        s.err.wait(lambda l: "already pending" in l, what="a warning about the duplicate id")
        w.interrupt(lambda m: m["interrupt_id"] == "good")
        assert [p["interrupt_id"] for p in w.snapshot()["pending"]] == ["good"]
        assert [m["interrupt_id"] for m in w.of_type("interrupt")] == ["good"]


def test_list_prints_pending_interrupts_as_ndjson_and_exits():
    with Stack(listener=False) as s, Watcher(s.url) as w:
        r = hitl_approve("--list", s.url)
        assert r.returncode == 0 and r.stdout == "", r.stderr
        s.feed(deploy_interrupt("i-1"), deploy_interrupt("i-2", thread_id="t-2"))
        w.wait(lambda m: m.get("interrupt_id") == "i-2")
        r = hitl_approve("--list", s.url)
        assert r.returncode == 0, r.stderr
        lines = [json.loads(l) for l in r.stdout.splitlines()]
        assert [l["interrupt_id"] for l in lines] == ["i-1", "i-2"]
        assert all(l["type"] == "interrupt" for l in lines)
        assert lines[1]["thread_id"] == "t-2"


def test_stdin_decisions_report_every_bad_line_and_send_the_good_ones():
    two = deploy_interrupt("i-3")
    two["action_requests"].append({"name": "notify", "args": {}})
    two["review_configs"] = [{"action_name": "notify", "allowed_decisions": ["approve"]}]
    with Stack(listener=False) as s, Watcher(s.url) as w, ReplySocket() as reply:
        s.feed(deploy_interrupt("i-1", reply_to=reply.path), deploy_interrupt("i-2"), two)
        w.wait(lambda m: m.get("interrupt_id") == "i-3")
        lines = [
            '{"interrupt_id":"i-1","type":"approve"}',     # 1 good
            'garbage',                                    # 2 not JSON
            '{"interrupt_id":"nope","type":"approve"}',  # 3 not pending
            '',                                           # 4 blank: skipped silently
            '{"interrupt_id":"i-2","type":"reject","message":"no"}',  # 5 good
            '{"interrupt_id":"i-3","type":"reject"}',     # 6 refused by the relay: notify allows only approve
        ]
        r = hitl_approve("--decisions", "-", s.url, input="\n".join(lines) + "\n")
        assert r.returncode == 65, r.stderr
        assert "line 2:" in r.stderr and "line 3:" in r.stderr and "line 6:" in r.stderr
        assert "line 1:" not in r.stderr and "line 5:" not in r.stderr and "line 4:" not in r.stderr
        sent = [json.loads(l) for l in r.stdout.splitlines()]
        assert sorted(d["interrupt_id"] for d in sent) == ["i-1", "i-2"]
        assert reply.recv()["decisions"] == [{"type": "approve"}]
        assert [p["interrupt_id"] for p in w.snapshot()["pending"]] == ["i-3"]


@pytest.mark.tsan
def test_audit_file_records_every_interrupt_decision_and_timeout():
    tmp = short_tmpdir()
    audit = os.path.join(tmp, "audit.ndjson")
    try:
        with Stack("--audit", audit, listener=False) as s, Watcher(s.url) as w:
            s.feed(deploy_interrupt("i-1"), deploy_interrupt("i-2", timeout=0.3))
            w.interrupt(lambda m: m["interrupt_id"] == "i-1")
            w.send({"type": "decision", "interrupt_id": "i-1", "decisions": [{"type": "approve"}],
                    "decided_by": "erin"})
            w.wait(lambda m: m.get("type") == "decision" and m["interrupt_id"] == "i-1")
            w.wait(lambda m: m.get("type") == "decision" and m["interrupt_id"] == "i-2")

            def records():
                with open(audit) as f:
                    return [json.loads(line) for line in f]
            wait_for(lambda: len(records()) >= 4, 10, what="four audit records")
            got = records()
            assert [(r["type"], r["interrupt_id"]) for r in got] == [
                ("interrupt", "i-1"), ("interrupt", "i-2"), ("decision", "i-1"), ("decision", "i-2")]
            assert got[2]["decided_by"] == "erin" and got[2]["client"].startswith("127.0.0.1:")
            assert got[3]["timed_out"] is True
    finally:
        rmtree(tmp)


def test_a_reply_socket_that_went_away_is_logged_and_the_relay_goes_on():
    with Stack(listener=False) as s, Watcher(s.url) as w:
        gone = "/tmp/smws-no-such-dir/reply.sock"
        s.feed(deploy_interrupt("i-g", reply_to=gone))
        w.interrupt(lambda m: m["interrupt_id"] == "i-g")
        w.send({"type": "decision", "interrupt_id": "i-g", "decisions": [{"type": "approve"}]})
        w.wait(lambda m: m.get("type") == "decision" and m["interrupt_id"] == "i-g")
        s.err.wait(lambda l: gone in l, what="a note about the reply socket")
        s.feed(deploy_interrupt("i-h"))
        w.interrupt(lambda m: m["interrupt_id"] == "i-h")
        assert s.relay.p.poll() is None


BUSY = [{"type": "state_change", "machine_id": f"m-{i % 50}", "state": "s", "n": i} for i in range(20000)]


def test_an_interrupt_among_many_ordinary_events_is_found_and_decided():
    # The reader drops ordinary events unparsed; the queue is large enough
    # that the relay never has to close the client, so any exit is a bug.
    with Stack("--max-queue", "100000", listener=False) as s, ReplySocket() as reply, \
            Proc([tool("hitl-approve"), "--auto", "approve", "--no-reconnect", s.url]) as approver:
        wait_for(lambda: s.clients() == 1, 10, what="hitl-approve connected")
        s.feed(*BUSY, deploy_interrupt("i-busy", reply_to=reply.path), *BUSY[:1000])
        assert reply.recv(timeout=60)["interrupt_id"] == "i-busy"
        assert approver.p.poll() is None


def test_a_client_closed_for_a_burst_reconnects_and_still_decides():
    # With the default queue (1024) a burst may outrun any client reading
    # frame by frame; the relay then closes it (1013) and hitl-approve comes
    # back and finds the interrupt in the new snapshot.
    with Stack(listener=False) as s, ReplySocket() as reply, \
            Proc([tool("hitl-approve"), "--auto", "approve", s.url]) as approver:
        wait_for(lambda: s.clients() == 1, 10, what="hitl-approve connected")
        s.feed(*BUSY, *BUSY, deploy_interrupt("i-burst", reply_to=reply.path), *BUSY[:1000])
        assert reply.recv(timeout=60)["interrupt_id"] == "i-burst"
        assert approver.p.poll() is None


# --- connection handling --------------------------------------------------------

def test_no_reconnect_exits_69_when_the_relay_goes_away():
    with Stack(listener=False) as s, Watcher(s.url) as w:
        s.feed(deploy_interrupt("i-1"))
        w.interrupt(lambda m: m["interrupt_id"] == "i-1")
        with Proc([tool("hitl-approve"), "--no-reconnect", "--auto", "approve", "--match", "nothing", "-v",
                   s.url]) as approver:
            wait_for(lambda: s.clients() == 2, 10, what="hitl-approve connected")
            s.relay.kill()
            assert approver.wait(10) == 69


@pytest.mark.tsan
def test_reconnects_with_backoff_after_the_relay_restarts():
    port = free_port()
    with ReplySocket() as reply:
        with Stack(listen=f"127.0.0.1:{port}", listener=False) as first:
            approver = Proc([tool("hitl-approve"), "--auto", "approve", "-v", first.url])
            try:
                first.feed(deploy_interrupt("before", reply_to=reply.path))
                assert reply.recv()["interrupt_id"] == "before"
            except Exception:
                approver.kill()
                raise
        try:
            assert approver.p.poll() is None  # still running, retrying
            with Stack(listen=f"127.0.0.1:{port}", listener=False) as second:
                second.feed(deploy_interrupt("after", reply_to=reply.path))
                decision = reply.recv(timeout=30)
                assert decision["interrupt_id"] == "after"
        finally:
            approver.kill()


def test_q_during_the_reconnect_wait_quits_with_0():
    # Issue 14: the wait between reconnect attempts reads the keyboard too.
    with Stack(listener=False) as s, \
            Pty([tool("hitl-approve"), s.url], env={"NO_COLOR": "1"}) as term:
        term.expect(r"waiting for approval requests")
        s.relay.kill()
        term.expect(r"reconnecting; \[q\]uit")
        term.type("q")
        assert term.wait(10) == 0


def test_a_stdin_decision_for_an_interrupt_not_yet_pending_is_held_until_it_arrives():
    # Issue 14: a script may know an interrupt's id before the relay's
    # broadcast reaches hitl-approve; its decision waits for the interrupt.
    with Stack(listener=False) as s, Watcher(s.url) as w, ReplySocket() as reply, \
            Proc([tool("hitl-approve"), "--decisions", "-", "-v", s.url], stdin=subprocess.PIPE) as approver:
        wait_for(lambda: s.clients() == 2, 10, what="hitl-approve connected")
        err = Lines(approver.p.stderr)
        approver.p.stdin.write(b'{"interrupt_id":"i-early","type":"approve"}\n')
        approver.p.stdin.flush()
        err.wait(lambda l: "i-early is not pending yet; held" in l, what="the line held")
        s.feed(deploy_interrupt("i-early", reply_to=reply.path))
        assert reply.recv()["decisions"] == [{"type": "approve"}]
        approver.p.stdin.close()
        assert approver.wait(15) == 0


def test_wss_with_insecure_decides_and_an_unverified_certificate_is_refused():
    tmp = short_tmpdir()
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        with Stack("--tls-cert", cert, "--tls-key", key, listener=False) as s, ReplySocket() as reply:
            assert s.url.startswith("wss://")
            s.feed(deploy_interrupt("i-tls", reply_to=reply.path))
            r = hitl_approve("--list", "--insecure", s.url)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["interrupt_id"] == "i-tls"
            r = hitl_approve("--insecure", "--decisions", "-", s.url,
                             input='{"interrupt_id":"i-tls","type":"approve"}\n')
            assert r.returncode == 0, r.stderr
            assert reply.recv()["interrupt_id"] == "i-tls"
            # A self-signed certificate is not trusted without --insecure.
            r = hitl_approve("--list", s.url)
            assert r.returncode == 69 and "hitl-approve: error:" in r.stderr
    finally:
        rmtree(tmp)


def test_connection_refused_exits_69_and_usage_errors_exit_64():
    r = hitl_approve(f"ws://127.0.0.1:{free_port()}/ws/events", "--decisions", "-", input="")
    assert r.returncode == 69
    assert "hitl-approve: error:" in r.stderr
    r = hitl_approve("--match", "deploy*", "ws://127.0.0.1:1/ws/events")
    assert r.returncode == 64 and "--auto" in r.stderr
    r = hitl_approve("--auto", "maybe", "ws://127.0.0.1:1/ws/events")
    assert r.returncode == 64
    r = hitl_approve("--list", "--once", "ws://127.0.0.1:1/ws/events")
    assert r.returncode == 64
    r = hitl_approve("http-is-not-ws", "--decisions", "-", input="")
    assert r.returncode == 64
    r = hitl_approve("--decisions", "/nonexistent/decisions.ndjson", "ws://127.0.0.1:1/ws/events")
    assert r.returncode == 66 and "/nonexistent/decisions.ndjson" in r.stderr
