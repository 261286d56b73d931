# SPDX-License-Identifier: Apache-2.0
"""ws-probe's rules for ambiguous drops, resets and who closed, against the
fixture servers (tests/support/probe_fixtures.py): the confirming trial that
tells a server waiting for input from an idle timeout, --no-confirm naming both,
an RST after data inside the greeting window, close.by for a server's FIN, the
permessage-deflate (refused when forced, inflated when offered), and the timeline strip."""
import json

from probe_fixtures import FixtureServer
from smws_test import run, tool


def probe(url, *args, timeout=40):
    result = run([tool("ws-probe"), "--json", *args, url], timeout=timeout)
    assert "Sanitizer" not in result.stderr and "runtime error:" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode
    return report, result.returncode, result.stderr


def test_greeting_then_idle_drop_is_confirmed_as_idle_timeout_by_a_pinging_trial():
    with FixtureServer("idlegreet", 1.5) as server:
        report, code, stderr = probe(server.url, "--duration", "6")
    assert code == 1
    assert report["verdict"]["cause"] == "idle_timeout", report["verdict"]
    assert report["verdict"]["candidates"] == []
    confirm = report["confirm"]
    assert confirm["tried"] is True and confirm["outcome"] == "outlived"
    assert confirm["settled"] == "idle_timeout"
    assert confirm["trial_pings_sent"] >= 3 and confirm["trial_pongs_received"] >= 3
    assert 1.2 <= confirm["first_silence_s"] <= 2.2
    assert confirm["trial_end"] == "open until the probe closed it"
    assert report["close"]["by"] == "server" and report["close"]["tcp_end"] == "fin"
    assert "confirming" in stderr


def test_greeting_then_drop_from_a_waiting_application_is_confirmed_as_server_waits_for_client():
    with FixtureServer("waitsdata", 1.5) as server:
        report, code, _ = probe(server.url, "--duration", "6")
    assert code == 1
    assert report["verdict"]["cause"] == "server_waits_for_client", report["verdict"]
    confirm = report["confirm"]
    assert confirm["outcome"] == "same_age" and confirm["settled"] == "server_waits_for_client"
    assert confirm["trial_pongs_received"] >= 2  # the pings reached it and it answered
    assert abs(confirm["trial_age_s"] - confirm["first_age_s"]) <= 0.5


def test_no_confirm_names_both_candidates_and_the_command_that_separates_them():
    with FixtureServer("idlegreet", 1.5) as server:
        report, code, stderr = probe(server.url, "--duration", "6", "--no-confirm")
    assert code == 1
    verdict = report["verdict"]
    assert verdict["candidates"] == ["server_waits_for_client", "idle_timeout"]
    assert verdict["cause"] == "server_waits_for_client"
    assert f"ws-probe --ping 0.5 --duration" in verdict["text"] and server.url in verdict["text"]
    assert report["confirm"]["tried"] is False and report["confirm"]["skipped"] == "--no-confirm"
    assert "confirming" not in stderr


def test_an_unambiguous_drop_runs_no_trial():
    with FixtureServer("waits") as server:  # 0.5 s of silence: too short for an idle timer
        report, code, _ = probe(server.url, "--duration", "3")
    assert report["verdict"]["cause"] == "server_waits_for_client"
    assert report["confirm"] is None


def test_a_reset_after_data_inside_the_greeting_window_is_connection_reset():
    with FixtureServer("rstgreet") as server:
        report, code, _ = probe(server.url, "--duration", "3")
    assert code == 1
    assert report["verdict"]["cause"] == "connection_reset", report["verdict"]
    assert report["close"]["tcp_end"] == "rst" and report["close"]["by"] == "server"
    assert report["messages"] == 2
    assert report["confirm"] is None


def test_close_by_names_the_side_that_ended_it_first():
    with FixtureServer("healthy") as server:
        mine, code, _ = probe(server.url, "--duration", "0.5")
    assert code == 0 and mine["close"]["by"] == "client"
    with FixtureServer("idle", 1.2) as server:
        theirs, code, _ = probe(server.url, "--duration", "5")
    assert theirs["close"]["by"] == "server" and theirs["close"]["code"] == 1006
    failed, code, _ = probe("ws://127.0.0.1:9/ws", "--duration", "1")
    assert code == 69 and failed["close"]["by"] == "none"


def test_forced_deflate_is_refused_and_offered_deflate_is_decompressed_counted_and_typed():
    # SPEC, Hostile input at the edges: ws-probe refuses a permessage-deflate
    # it did not offer (this test used to expect it to be inflated and only
    # noted); with --deflate the probe offers it, and accepting stays.
    with FixtureServer("deflate") as server:
        refused, code, _ = probe(server.url, "--duration", "1.1")
        report, offered_code, _ = probe(server.url, "--duration", "1.1", "--deflate")
    assert code == 1
    assert refused["verdict"]["cause"] == "handshake_refused"
    assert "permessage-deflate" in refused["verdict"]["text"]
    assert refused["extensions"].startswith("permessage-deflate")
    assert refused["inflated"] is False and refused["messages"] == 0
    assert offered_code == 0, report["verdict"]
    assert report["verdict"]["cause"] == "healthy"
    assert report["extensions"].startswith("permessage-deflate")
    assert report["inflated"] is True
    assert report["types"]["hello"] == 1 and report["types"]["tick"] >= 3
    assert report["timestamp_lag"]["stamped"] == report["messages"]
    assert report["bytes_received"] > 200  # decompressed sizes (the greeting pads 200 bytes)
    assert any("permessage-deflate" in f for f in report["verdict"]["findings"])


def test_the_human_report_ends_with_a_timeline_strip():
    with FixtureServer("idle", 1.2) as server:
        result = run([tool("ws-probe"), "--duration", "5", server.url], timeout=30)
    lines = result.stdout.rstrip("\n").split("\n")
    strip = [l for l in lines if l.startswith("  timeline")]
    assert len(strip) == 1, result.stdout
    bar = strip[0].split("|")[1]
    # A message near the start (the fixture greets at once; a loaded machine
    # may put it a column or two in), the FIN at the end.
    assert "M" in bar[:6] and bar[-1] == "F"
    assert "." in bar  # the silence before the drop
    assert "legend" in result.stdout
