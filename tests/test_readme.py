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
    ci = (ROOT / ".ci" / "run").read_text()
    # Verbatim, and a failure anywhere in it fails CI (set -e alone ignores && lists).
    (line,) = [line for line in ci.splitlines() if line.startswith(tests)]
    assert line[len(tests) :].startswith(" || {") and "exit 1" in line
    assert re.search(r"pytest examples", ci)
