# SPDX-License-Identifier: Apache-2.0
"""Who may decide (SPEC "Who may decide"): the relay names every connection
from --users, a JWT or a trusted proxy's headers, never from what the client
claims; only the people a policy names may decide; the record says who did.
Each test starts its own ws-relay on 127.0.0.1 with real WebSocket clients
(python3-websockets) and tokens minted by python3-jwt.
"""
import asyncio
import hashlib
import json
import os
import signal
import time

import jwt
import pytest
import websockets

from hitl_support import ReplySocket, deploy_interrupt
from relay_support import Relay
from smws_test import rmtree, short_tmpdir

ALICE, BOB, MALLORY = "tok-alice-0123456789abcdef", "tok-bob-0123456789abcdef", "tok-mallory-0123456789ab"
SECRET = "s" * 40


def users_file(path, *people):
    with open(path, "w") as f:
        f.write("# name groups sha256\n")
        for name, groups, token in people:
            f.write(f"{name} {groups} sha256:{hashlib.sha256(token.encode()).hexdigest()}\n")


@pytest.fixture
def tmp():
    d = short_tmpdir()
    yield d
    rmtree(d)


async def connect(relay, token=None, headers=None):
    url = relay.url + (f"?token={token}" if token else "")
    return await websockets.connect(url, extra_headers=headers or {}, ping_interval=None,
                                    open_timeout=10, close_timeout=2)


async def recv_type(ws, type_, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
        if msg.get("type") == type_:
            return msg


async def refused_status(relay, token=None, headers=None):
    with pytest.raises(websockets.InvalidStatusCode) as e:
        await connect(relay, token, headers)
    return e.value.status_code


def approve(interrupt_id, **extra):
    return json.dumps({"type": "decision", "interrupt_id": interrupt_id,
                       "decisions": [{"type": "approve"}], **extra})


def test_users_file_names_people_and_only_approvers_decide(tmp):
    users = os.path.join(tmp, "users")
    users_file(users, ("alice", "ops,approvers", ALICE), ("mallory", "dev", MALLORY))
    with ReplySocket() as reply, Relay("--users", users) as relay:
        async def main():
            assert await refused_status(relay) == 401
            assert await refused_status(relay, "not-a-token") == 401
            mallory = await connect(relay, MALLORY)
            alice = await connect(relay, ALICE)
            initial = await recv_type(mallory, "initial")
            assert initial["you"] == {"name": "mallory", "groups": ["dev"], "via": "users"}
            assert (await recv_type(alice, "initial"))["you"]["name"] == "alice"
            relay.send(deploy_interrupt("i-1", reply_to=reply.path))
            seen = await recv_type(mallory, "interrupt")
            assert "reply_to" not in seen, "reply_to must never reach a client"
            assert seen["policy"] == {"approvers": ["approvers"], "required": 1}
            # A watcher forging a name is refused, and nothing changes.
            await mallory.send(approve("i-1", decided_by="ceo@corp (verified via SSO)"))
            err = await recv_type(mallory, "error")
            assert err["error"].startswith("not allowed: mallory may not decide deploy")
            await alice.send(approve("i-1", decided_by="someone else"))
            decision = await recv_type(mallory, "decision")
            assert decision["decided_by"] == {"name": "alice", "via": "users"}
            assert decision["claimed_by"] == "someone else"
            got = reply.recv()
            assert got["decided_by"] == {"name": "alice", "via": "users"}
            # Client messages on stdout say who sent them.
            await mallory.send(json.dumps({"type": "note", "n": 1}))
            line = json.loads(relay.stdout_line())
            while line.get("type") != "note":
                line = json.loads(relay.stdout_line())
            assert line["from"] == {"name": "mallory", "groups": ["dev"], "via": "users"}
            await mallory.close()
            await alice.close()
        asyncio.run(main())
        assert ALICE not in relay.stderr_text()
        # /metrics wants a credential like the WebSocket; it counts the refusal.
        assert relay.http_get("/metrics")[0] == 401
        assert relay.metrics(token=ALICE)["ws_relay_decisions_not_allowed_total"] == 1


def test_jwt_checks_signature_expiry_and_algorithm(tmp):
    secret = os.path.join(tmp, "secret")
    with open(secret, "w") as f:
        f.write(SECRET + "\n")
    now = int(time.time())
    good = jwt.encode({"sub": "carol", "groups": ["approvers"], "exp": now + 600}, SECRET, algorithm="HS256")
    expired = jwt.encode({"sub": "carol", "exp": now - 10}, SECRET, algorithm="HS256")
    unsigned = jwt.encode({"sub": "carol", "exp": now + 600}, None, algorithm="none")
    forged = jwt.encode({"sub": "carol", "exp": now + 600}, "x" * 40, algorithm="HS256")
    soon = jwt.encode({"sub": "dave", "exp": now + 3}, SECRET, algorithm="HS256")
    with Relay("--jwt-secret-file", secret) as relay:
        async def main():
            for bad in (expired, unsigned, forged):
                assert await refused_status(relay, headers={"Authorization": f"Bearer {bad}"}) == 401
            ws = await connect(relay, headers={"Authorization": f"Bearer {good}"})
            assert (await recv_type(ws, "initial"))["you"] == {"name": "carol", "groups": ["approvers"],
                                                                "via": "jwt"}
            relay.send(deploy_interrupt("i-1"))
            await recv_type(ws, "interrupt")
            await ws.send(approve("i-1"))
            assert (await recv_type(ws, "decision"))["decided_by"] == {"name": "carol", "via": "jwt"}
            # A token that expires while its connection is open closes it 1008.
            short = await connect(relay, headers={"Authorization": f"Bearer {soon}"})
            await recv_type(short, "initial")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(short.recv(), 15)
            assert closed.value.code == 1008 and closed.value.reason == "token expired"
            await ws.close()
        asyncio.run(main())
        assert good not in relay.stderr_text()


def test_identity_headers_count_only_from_a_trusted_proxy():
    with Relay("--trusted-proxy", "10.0.0.0/8") as untrusted:
        async def refused():
            # From a peer outside every trusted range: refused and logged, not ignored.
            assert await refused_status(untrusted, headers={"X-Forwarded-User": "admin"}) == 403
        asyncio.run(refused())
        untrusted.wait_stderr("X-Forwarded-User|trusted")
    with Relay("--trusted-proxy", "127.0.0.1/32") as relay:
        async def main():
            ws = await connect(relay, headers={"X-Forwarded-User": "erin", "X-Forwarded-Groups": "approvers,ops",
                                               "X-Forwarded-For": "192.0.2.7"})
            you = (await recv_type(ws, "initial"))["you"]
            assert you == {"name": "erin", "groups": ["approvers", "ops"], "via": "proxy"}
            relay.send(deploy_interrupt("i-1"))
            await recv_type(ws, "interrupt")
            await ws.send(approve("i-1"))
            d = await recv_type(ws, "decision")
            assert d["decided_by"] == {"name": "erin", "via": "proxy"}
            assert d["client"].startswith("192.0.2.7")
            await ws.close()
        asyncio.run(main())


def test_a_quorum_needs_two_people_and_a_requester_may_not_approve(tmp):
    users = os.path.join(tmp, "users")
    users_file(users, ("alice", "ops", ALICE), ("bob", "ops", BOB))
    policy = os.path.join(tmp, "policy")
    with open(policy, "w") as f:
        f.write(json.dumps({"action": "deploy*", "approvers": ["ops"], "required": 2}) + "\n")
        f.write(json.dumps({"action": "restart", "approvers": ["ops"], "self_approval": False}) + "\n")
    with Relay("--users", users, "--policy", policy) as relay:
        async def main():
            alice, bob = await connect(relay, ALICE), await connect(relay, BOB)
            await recv_type(alice, "initial")
            await recv_type(bob, "initial")
            relay.send(deploy_interrupt("i-1"))
            assert (await recv_type(alice, "interrupt"))["policy"]["required"] == 2
            await alice.send(approve("i-1"))
            vote = await recv_type(bob, "vote")
            assert (vote["have"], vote["need"], vote["by"]["name"]) == (1, 2, "alice")
            await bob.send(approve("i-1"))
            d = await recv_type(alice, "decision")
            assert [p["name"] for p in d["decided_by"]] == ["alice", "bob"]
            restart = deploy_interrupt("i-2", sender={"uid": 1000, "user": "alice", "pid": 1})
            restart["action_requests"][0]["name"] = "restart"
            restart["review_configs"][0]["action_name"] = "restart"
            relay.send(restart)
            await recv_type(alice, "interrupt")
            await alice.send(approve("i-2"))
            err = await recv_type(alice, "error")
            assert "alice" in err["error"] and "not allowed" in err["error"]
            await bob.send(approve("i-2"))
            assert (await recv_type(alice, "decision"))["interrupt_id"] == "i-2"
            await alice.close()
            await bob.close()
        asyncio.run(main())


def test_sighup_closes_the_connections_of_a_removed_user(tmp):
    users = os.path.join(tmp, "users")
    users_file(users, ("alice", "ops", ALICE), ("bob", "ops", BOB))
    with Relay("--users", users) as relay:
        async def main():
            alice, bob = await connect(relay, ALICE), await connect(relay, BOB)
            await recv_type(alice, "initial")
            await recv_type(bob, "initial")
            users_file(users, ("alice", "ops", ALICE))
            os.kill(relay.pid, signal.SIGHUP)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(bob.recv(), 10)
            assert closed.value.code == 1008 and closed.value.reason == "credentials revoked"
            assert await refused_status(relay, BOB) == 401
            await alice.send(json.dumps({"type": "refresh"}))
            assert (await recv_type(alice, "initial"))["you"]["name"] == "alice"
            await alice.close()
        asyncio.run(main())


def test_a_refused_interrupt_is_answered_at_once_on_its_reply_socket():
    with ReplySocket() as reply, Relay("--audit", "/dev/full") as relay:
        relay.send(deploy_interrupt("i-9", reply_to=reply.path))
        got = reply.recv(timeout=10)
        assert got["type"] == "error" and got["interrupt_id"] == "i-9" and got["reason"] == "audit"
