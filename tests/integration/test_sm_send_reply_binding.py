# SPDX-License-Identifier: Apache-2.0
"""sm-send --wait-reply believes only a reply bound to its own request
(SPEC "Replies bound to their request"): it puts an unguessable interrupt_id
into its event unless one is given, ignores a reply that names another
interrupt (issue 19: an approval of an attacker's "harmless-1", sent to the
victim's reply_to, released the victim's deploy), and stops at once, with the
reason's exit code, when the relay answers that it refused the interrupt.

The test plays the relay: it binds the event socket, reads the interrupt and
answers on its reply_to as ws-relay would."""
import json
import os
import re
import socket
import subprocess

import pytest

from datagram_test import bound_socket
from smws_test import Proc, rmtree, short_tmpdir, tool


@pytest.fixture
def tmp():
    d = short_tmpdir()
    yield d
    rmtree(d)


class FakeRelay:
    def __init__(self, tmp):
        self.path = os.path.join(tmp, "relay.sock")
        self.sock = bound_socket(self.path)
        self.sock.settimeout(10)

    def interrupt(self):
        data, _ = self.sock.recvfrom(65536)
        return json.loads(data)

    def reply(self, event, message):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(json.dumps(message).encode(), event["reply_to"])
        s.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def relay(tmp):
    r = FakeRelay(tmp)
    yield r
    r.close()


def ask(relay, *event_args, seconds="20"):
    args = event_args or ("interrupt", "@action_requests:=[{\"name\":\"deploy\",\"args\":{\"env\":\"prod\"}}]")
    return Proc([tool("sm-send"), "--socket", relay.path, "--wait-reply", seconds, *args])


def approve(interrupt_id):
    return {"type": "decision", "interrupt_id": interrupt_id, "decisions": [{"type": "approve"}]}


def test_an_interrupt_without_an_id_gets_an_unguessable_one(relay):
    ids = []
    for _ in range(2):
        with ask(relay) as p:
            event = relay.interrupt()
            ids.append(event["interrupt_id"])
            relay.reply(event, approve(event["interrupt_id"]))
            assert p.wait(10) == 0
    for i in ids:
        # "sm-" and 128 bits in hex
        assert re.fullmatch(r"sm-[0-9a-f]{32}", i), i
    assert ids[0] != ids[1]


def test_an_id_the_caller_gives_is_kept(relay):
    with ask(relay, "interrupt", "@interrupt_id=deploy-42") as p:
        event = relay.interrupt()
        assert event["interrupt_id"] == "deploy-42"
        relay.reply(event, approve("deploy-42"))
        assert p.wait(10) == 0


def test_a_reply_for_another_interrupt_is_ignored_and_the_right_one_accepted(relay):
    # The victim waits on its deploy; the attacker's "harmless-1" was sent
    # with the victim's reply_to and approved: its decision reaches the
    # victim's socket first. The victim must keep waiting.
    with ask(relay) as victim:
        event = relay.interrupt()
        relay.reply(event, approve("harmless-1"))
        relay.reply(event, {"type": "decision", "decisions": [{"type": "approve"}]})  # names none
        relay.reply(event, {"type": "error", "interrupt_id": "harmless-1", "error": "x", "reason": "audit"})
        with pytest.raises(subprocess.TimeoutExpired):
            victim.wait(1)  # still waiting: none of those was its answer
        reject = {"type": "decision", "interrupt_id": event["interrupt_id"],
                  "decisions": [{"type": "reject", "message": "not on a Friday"}]}
        relay.reply(event, reject)
        assert victim.wait(10) == 1
        assert json.loads(victim.p.stdout.read()) == reject
        err = victim.p.stderr.read().decode()
        assert "ignoring a decision for another interrupt (harmless-1)" in err
        assert "ignoring a decision that names no interrupt_id" in err
        assert "ignoring an error for another interrupt (harmless-1)" in err


@pytest.mark.parametrize("reason,code", [("audit", 74), ("invalid", 65), ("full", 75), ("something-new", 70)])
def test_a_refusal_ends_the_wait_at_once_with_the_reasons_exit_code(relay, reason, code):
    with ask(relay, seconds="60") as p:
        event = relay.interrupt()
        relay.reply(event, {"type": "error", "interrupt_id": event["interrupt_id"],
                            "error": "audit file /var/log/smws/audit: No space left on device",
                            "reason": reason})
        assert p.wait(10) == code  # long before the 60 s wait
        assert p.p.stdout.read() == b""
        err = p.p.stderr.read().decode()
        assert "the relay refused the interrupt: audit file /var/log/smws/audit: No space left on device" in err
        assert f"({reason})" in err
    assert not os.path.exists(event["reply_to"])


def test_an_interrupt_id_that_is_not_a_string_is_refused_before_sending(relay):
    with ask(relay, "--json", '{"type":"interrupt","interrupt_id":7}') as p:
        assert p.wait(10) == 65
        assert "interrupt_id must be a non-empty string" in p.p.stderr.read().decode()
