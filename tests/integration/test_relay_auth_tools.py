# SPDX-License-Identifier: Apache-2.0
"""ws-relay's one-shot modes (SPEC "Who may decide"): --new-token mints a
token for a --users file, --verify-audit checks an audit file's hash chain.

The chained audit file is written here in Python from the rule alone (each
line's "prev" is the SHA-256 of the line before it, the first one's 64 zeros;
"audit_seq" counts from 1), so the test checks the relay against the rule,
not against its own writer."""
import hashlib
import json
import os
import re

import pytest

from smws_test import rmtree, run, short_tmpdir, tool

GENESIS = "sha256:" + "0" * 64


@pytest.fixture
def tmp():
    d = short_tmpdir()
    yield d
    rmtree(d)


def relay(*args):
    return run([tool("ws-relay"), *args], timeout=30)


def line_hash(line):
    return "sha256:" + hashlib.sha256(line.encode()).hexdigest()


def chain(records, prev=GENESIS, first_seq=1):
    lines = []
    for i, r in enumerate(records):
        line = json.dumps(dict(r, prev=prev, audit_seq=first_seq + i), separators=(",", ":"))
        lines.append(line)
        prev = line_hash(line)
    return lines


def write(path, lines):
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


RECORDS = [
    {"type": "interrupt", "interrupt_id": "i-1", "action_requests": [{"name": "deploy"}]},
    {"type": "decision", "interrupt_id": "i-1", "decided_by": [{"name": "alice", "via": "users"}]},
    {"type": "interrupt", "interrupt_id": "i-2"},
    {"type": "vote", "interrupt_id": "i-2", "by": {"name": "bob", "groups": ["ops"], "via": "jwt"}, "have": 1, "need": 2},
    {"type": "decision", "interrupt_id": "i-2", "decided_by": [{"name": "bob", "via": "jwt"}, {"name": "carol", "via": "jwt"}]},
]


def test_new_token_prints_a_token_and_the_users_line_that_holds_only_its_hash():
    r = relay("--new-token", "alice", "approvers,ops")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token), token  # 256 bits, base64url
    line = r.stderr.strip()
    assert line == "alice approvers,ops " + line_hash(token)
    assert token not in r.stderr
    again = relay("--new-token", "alice", "approvers,ops")
    assert again.stdout.strip() != token


def test_new_token_with_no_groups_and_with_a_bad_name():
    r = relay("--new-token", "viewer", "-")
    assert r.returncode == 0 and r.stderr.startswith("viewer - sha256:")
    r = relay("--new-token", "@alice", "ops")
    assert r.returncode == 64 and "starts with @" in r.stderr and r.stdout == ""
    r = relay("--new-token", "alice", "ops,,dev")
    assert r.returncode == 64 and "empty group" in r.stderr
    r = relay("--new-token", "alice")
    assert r.returncode == 64


def test_verify_audit_says_intact_for_an_untouched_chain(tmp):
    path = write(os.path.join(tmp, "audit.ndjson"), chain(RECORDS))
    r = relay("--verify-audit", path)
    assert (r.returncode, r.stdout) == (0, "intact, 5 records\n"), r.stderr
    r = relay("--verify-audit", write(os.path.join(tmp, "empty"), []))
    assert (r.returncode, r.stdout) == (0, "intact, 0 records\n")


def test_verify_audit_names_a_changed_line(tmp):
    lines = chain(RECORDS)
    lines[1] = lines[1].replace('"alice"', '"mallory"')
    r = relay("--verify-audit", write(os.path.join(tmp, "a"), lines))
    assert r.returncode == 1
    assert r.stdout.startswith("line 2: changed"), r.stdout


def test_verify_audit_names_a_removed_line(tmp):
    lines = chain(RECORDS)
    del lines[2]
    r = relay("--verify-audit", write(os.path.join(tmp, "a"), lines))
    assert (r.returncode, r.stdout) == (1, "line 3: removed before it: record 3 is missing\n")


def test_verify_audit_names_an_inserted_line_even_one_that_links_to_the_line_before(tmp):
    lines = chain(RECORDS)
    forged = json.dumps({"type": "decision", "interrupt_id": "i-9", "prev": line_hash(lines[1]), "audit_seq": 3},
                        separators=(",", ":"))
    lines.insert(2, forged)
    r = relay("--verify-audit", write(os.path.join(tmp, "a"), lines))
    assert r.returncode == 1
    assert r.stdout.startswith("line 3: inserted"), r.stdout


def test_verify_audit_follows_a_rotated_file_from_its_continuation_line(tmp):
    old = chain(RECORDS[:2])
    new = chain([{"type": "audit_continued", "logged_at": 1.0}] + RECORDS[2:], prev=line_hash(old[-1]), first_seq=3)
    write(os.path.join(tmp, "audit.1"), old)
    r = relay("--verify-audit", write(os.path.join(tmp, "audit"), new))
    assert (r.returncode, r.stdout) == (0, "intact, 4 records\n"), r.stdout
    # Without its continuation line the file starts in the middle of a chain.
    r = relay("--verify-audit", write(os.path.join(tmp, "cut"), new[1:]))
    assert r.returncode == 1 and r.stdout.startswith("line 1: removed"), r.stdout


def test_verify_audit_of_a_missing_file_exits_66(tmp):
    r = relay("--verify-audit", os.path.join(tmp, "nope"))
    assert r.returncode == 66
    assert "nope" in r.stderr
