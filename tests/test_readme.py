"""The README's Quickstart is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_quickstart_has_two_commands_and_ci_runs_the_test_one() -> None:
    main_job, tests = _quickstart_commands()
    assert main_job.endswith("pytest examples")
    for command in (main_job, tests):  # both install the locked dev environment
        assert "pip install -q -e '.[dev]' -c constraints/dev.txt " in command
    ci = (ROOT / ".ci" / "run").read_text()
    # Verbatim, and a failure anywhere in it fails CI (set -e alone ignores && lists).
    (line,) = [line for line in ci.splitlines() if line.startswith(tests)]
    assert line[len(tests) :].startswith(" || {") and "exit 1" in line
    assert re.search(r"pytest examples", ci)


def test_every_install_in_ci_is_locked() -> None:
    # Each pip install in .ci/run takes exact pins: a lock in constraints/ that exists, or an
    # exact == for the one package installed without dependencies.
    ci = (ROOT / ".ci" / "run").read_text()
    installs = [line for line in ci.splitlines() if "pip install" in line and line[0] != "#"]
    assert len(installs) >= 6
    for line in installs:
        locks = re.findall(r"-c (constraints/\S+)", line)
        if not locks:
            assert "--no-deps" in line and re.search(r"'[\w-]+==[\d.]+'", line), line
        for lock in locks:
            assert (ROOT / lock).is_file(), lock
            pins = (ROOT / lock).read_text().splitlines()
            assert all(
                re.match(r"[\w.-]+==\S+", pin) for pin in pins if pin and not pin.startswith(" ")
            ), lock


def test_the_readme_is_a_first_read_and_points_to_every_page() -> None:
    """A newcomer's ten minutes: at most 250 lines, and every page of the documentation
    site (docs/, built strictly by .ci/run) is named in its table."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    table = text.split("## Where the rest is", 1)[1]
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")
    assert pages and [p for p in pages if f"(docs/{p})" not in table] == []
    for heading in ("## Install", "## Record, then replay", "## Modes", "## Fixtures and marker"):
        assert heading in text
