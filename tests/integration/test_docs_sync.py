# SPDX-License-Identifier: Apache-2.0
"""Docs and completions cannot drift from the binaries: every long flag that a
tool's --help lists must appear in its man page and in its bash, zsh and fish
completions, and every flag those files name must still exist."""
import os
import re

import pytest

from smws_test import SOURCE_DIR, run, tool

TOOLS = ["sm-send", "sm-listen", "ws-relay", "ws-probe", "hitl-approve"]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def help_flags(name):
    result = run([tool(name), "--help"], timeout=10)
    assert result.returncode == 0, result.stderr
    flags = set()
    for line in result.stdout.splitlines():
        if line.lstrip().startswith("-"):
            # Only the option column, not the description.
            column = re.split(r"\s{2,}", line.strip())[0]
            flags.update(FLAG.findall(column))
    assert "--help" in flags and "--version" in flags
    return flags


def read(*parts):
    path = os.path.join(SOURCE_DIR, *parts)
    assert os.path.exists(path), f"missing {os.path.join(*parts)}"
    with open(path, encoding="utf-8") as f:
        return f.read()


def man_text(name):
    text = read("docs", "man", f"{name}.1")
    text = re.sub(r"\\f[BIRP]|\\f\(..|\\f\[[A-Z]*\]", "", text)
    return text.replace("\\-", "-").replace("\\(em", "-")


@pytest.mark.parametrize("name", TOOLS)
def test_version_prints_name_and_version(name):
    result = run([tool(name), "--version"], timeout=10)
    assert result.returncode == 0
    # NAME VERSION; built from a git checkout, the version carries the git
    # description as SemVer build metadata (cmake/SmwsVersion.cmake). The
    # second line names the licence (issue 24).
    assert re.fullmatch(rf"{re.escape(name)} \d+\.\d+\.\d+(\+git\.[0-9A-Za-z.]+)?\nLicense: Apache-2\.0\n",
                        result.stdout), result.stdout


@pytest.mark.parametrize("name", TOOLS)
def test_man_page_documents_every_flag_and_exit_status(name):
    text = man_text(name)
    assert "EXIT STATUS" in text
    missing = sorted(f for f in help_flags(name) if f not in text)
    assert not missing, f"{name}.1 does not mention {missing}"


@pytest.mark.parametrize("name", TOOLS)
def test_bash_completion_lists_exactly_the_flags(name):
    text = read("completions", "bash", name)
    flags = help_flags(name)
    missing = sorted(f for f in flags if f not in text)
    assert not missing, f"bash completion for {name} lacks {missing}"
    stale = sorted(set(FLAG.findall(text)) - flags)
    assert not stale, f"bash completion for {name} names flags the tool no longer has: {stale}"


@pytest.mark.parametrize("name", TOOLS)
def test_zsh_completion_lists_exactly_the_flags(name):
    text = read("completions", "zsh", f"_{name}")
    flags = help_flags(name)
    missing = sorted(f for f in flags if f not in text)
    assert not missing, f"zsh completion for {name} lacks {missing}"
    stale = sorted(set(FLAG.findall(text)) - flags)
    assert not stale, f"zsh completion for {name} names flags the tool no longer has: {stale}"


@pytest.mark.parametrize("name", TOOLS)
def test_fish_completion_lists_exactly_the_flags(name):
    text = read("completions", "fish", f"{name}.fish")
    named = {"--" + m for m in re.findall(r"(?:-l|--long(?:-option)?)\s+'?([a-z][a-z0-9-]*)", text)}
    flags = help_flags(name)
    missing = sorted(flags - named)
    assert not missing, f"fish completion for {name} lacks {missing}"
    stale = sorted(named - flags)
    assert not stale, f"fish completion for {name} names flags the tool no longer has: {stale}"


def test_unit_test_names_survive_ctest():
    """catch_discover_tests turns each TEST_CASE into a ctest; a ';' in its
    name splits it into two tests that both fail to run, and a name starting
    with '-' is taken by Catch for an option."""
    unit_dir = os.path.join(SOURCE_DIR, "tests", "unit")
    bad = []
    for name in sorted(os.listdir(unit_dir)):
        if name.endswith(".cpp"):
            with open(os.path.join(unit_dir, name), encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    match = re.search(r'TEST_CASE\("([^"]*)"', line)
                    # '[' too: CMake reads it as a bracket and merges the names
                    # up to the next ']' into one test.
                    if match and (";" in match.group(1) or "[" in match.group(1)
                                  or match.group(1).startswith("-")):
                        bad.append(f"{name}:{number}")
    assert not bad, f"test names with ';', '[' or a leading '-': {bad}"
