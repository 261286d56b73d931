# SPDX-License-Identifier: Apache-2.0
"""Writes the case table of docs/conformance.md from cases.py and the results
of a run (SMWS_CONFORMANCE_RESULTS=FILE pytest integration/test_conformance.py).
Usage: render.py RESULTS.json > table.md  (paste it between the markers)."""
import json
import sys

import cases as table

PEERS = ("ws-relay", "ws-probe", "hitl-approve")


def cell(expect, got):
    if expect is None:
        return "n/a"
    if got is None:
        return "not run"
    return "pass" if table.conforms(got, expect) else f"**FAIL**: {got}"


def main():
    with open(sys.argv[1]) as f:
        results = json.load(f)
    print("| case | Autobahn | what is sent | relay must | client must | ws-relay | ws-probe | hitl-approve |")
    print("|---|---|---|---|---|---|---|---|")
    for c in table.CASES:
        got = results.get(c["id"], {})
        row = [f"`{c['id']}`", c["section"], c["title"].replace("|", "\\|"),
               f"`{c['server'] or 'n/a'}`", f"`{c['client'] or 'n/a'}`",
               cell(c["server"], got.get("ws-relay")),
               cell(c["client"], got.get("ws-probe")),
               cell(c["client"], got.get("hitl-approve"))]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
