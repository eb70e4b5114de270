"""SDK drift: each SDK and HTTP stack we claim, at its newest release, against our SDK-facing
tests: ``.venv/bin/python scripts/drift.py`` (``--only anthropic groq`` for some).

For every package the lock is copied and only that package moved to the newest release the
claimed range admits (``uv pip compile --upgrade-package``: what it needs moves with it,
nothing else), installed in a throw-away venv, and the tests that exercise it run there
with a JUnit report. One table follows: package, locked version, newest release on the
index, the version tested, pass/fail per behaviour, and what changed. A behaviour that
passes with the lock and fails with the newest release is a regression: the exit status is
1. A newest release outside the claimed range (openai 4.0, say) is named, not tested.

``--readme`` writes the table into docs/development.md between the ``drift:begin``/``drift:end``
markers, with the date; ``.ci/run`` runs this without gating on it (a third-party release
must not block a landing) and prints the table into the CI log.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lock import LOCKS, ROOT, uv

BEHAVIOURS = ("record", "replay", "stream", "faults", "retry", "miss")
MATRIX = "tests/stacks/test_matrix.py"
ADAPTERS = "tests/stacks/test_adapters.py"
STACK_TESTS = ["tests/stacks/"]


@dataclass(frozen=True)
class Target:
    name: str  # as shown in the table
    package: str  # the distribution moved to its newest release
    claimed: str  # the range we claim (pyproject.toml's extras, the README)
    tests: list[str]  # pytest arguments
    lock: str = "constraints/dev.txt"
    major: str = ""  # for openai 2.x: newest within this major, not overall


def _sdk(name: str, package: str, claimed: str, *tests: str, k: str | None = None) -> Target:
    return Target(name, package, claimed, [*tests, "-k", k or name])


TARGETS = [
    Target(
        "openai",
        "openai",
        ">=3,<4",
        [
            "tests/sdk/test_openai_sdk.py",
            "tests/test_faults.py",
            MATRIX,
            ADAPTERS,
            "-k",
            "test_openai_sdk or test_faults or litellm-openai",
        ],
    ),
    Target(
        "openai 2.x",
        "openai",
        ">=2.20,<3",
        ["tests/stacks/openai2_check.py"],
        lock="constraints/openai2.txt",
        major="2",
    ),
    Target(
        "anthropic",
        "anthropic",
        ">=1,<3",
        ["tests/sdk/test_anthropic_sdk.py", "tests/test_faults.py"],
    ),
    _sdk("groq", "groq", "any", MATRIX, ADAPTERS),
    _sdk("cohere", "cohere", "any", MATRIX, ADAPTERS),
    _sdk("litellm", "litellm", "any", MATRIX, ADAPTERS),
    _sdk("google-genai", "google-genai", "any", MATRIX, ADAPTERS, k="genai"),
    _sdk("mistralai", "mistralai", "any", MATRIX, ADAPTERS),
    Target("httpx2", "httpx2", ">=2.12,<3", [*STACK_TESTS, "tests/sdk/", "tests/test_faults.py"]),
    Target("httpx", "httpx", ">=0.27,<1", STACK_TESTS),
    Target("aiohttp", "aiohttp", ">=3.12,<4", STACK_TESTS),
    Target("requests", "requests", ">=2.31,<3", STACK_TESTS),
    Target("urllib3", "urllib3", ">=2,<3", STACK_TESTS),
]

# Which behaviours a test exercises, by test function. Tests run in phases (test_matrix.py,
# openai2_check.py) note each phase with record_property("phase", ...): a failure counts
# against the phase it was in, the phases before it passed, the ones after were not reached.
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "test_records_replays_offline_and_retries_a_429": ("record", "replay", "retry"),
    "test_openai_2_records_replays_and_retries": ("record", "replay", "retry"),
    "test_a_cassette_recorded_through_one_stack_replays_through_every_other": ("record", "replay"),
    "test_messages_and_streams_record_then_replay": ("record", "replay", "stream"),
    "test_record_then_replay_every_endpoint": ("record", "replay", "stream"),
    "test_explicit_clients_without_patching": ("record", "replay"),
    "test_streams_are_teed_chunk_for_chunk_as_they_arrive": ("stream",),
    "test_faults_raise_the_stacks_own_exception_types": ("faults",),
    "test_fault_kinds_map_to_sdk_exceptions": ("faults",),
    "test_fault_responses_speak_each_providers_error_shape": ("faults",),
    "test_cut_stream_counts_events_of_a_stream_written_in_one_piece": ("faults", "stream"),
    "test_sdk_retries_observed_in_milliseconds": ("retry",),
    "test_retry_after_is_honoured_and_measured": ("retry",),
    "test_no_retry_after_a_terminal_fault": ("retry",),
    "test_a_miss_reaches_the_caller_once_with_its_message": ("miss",),
    "test_miss_reaches_the_caller_unwrapped_and_unretried": ("miss",),
    "test_openai_2_gets_a_miss_unwrapped_and_unretried": ("miss",),
    "test_openai_2_maps_faults_to_its_exceptions": ("faults",),
}


@dataclass
class Result:
    target: Target
    locked: str
    newest: str
    tested: str = ""
    cells: dict[str, str] = field(default_factory=dict)  # behaviour -> pass / FAIL / -
    changed: list[str] = field(default_factory=list)
    regression: bool = False


def newest_release(package: str, major: str = "") -> str:
    """The newest final release on PyPI (within ``major`` when given)."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/json", timeout=30) as r:
        data = json.load(r)
    if not major:
        return str(data["info"]["version"])
    finals = [
        v
        for v, files in data["releases"].items()
        if files and re.fullmatch(r"\d+(\.\d+)*", v) and v.split(".")[0] == major
    ]
    return max(finals, key=lambda v: tuple(int(p) for p in v.split(".")))


def pinned(lock: Path, package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==([^\s;]+)", lock.read_text(), re.M | re.I)
    return match.group(1) if match else "?"


def classify(report: Path) -> dict[str, list[tuple[str, bool, str]]]:
    """behaviour -> [(test id, passed, message)] from a JUnit report."""
    seen: dict[str, list[tuple[str, bool, str]]] = {b: [] for b in (*BEHAVIOURS, "other")}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        function = name.split("[", 1)[0]
        behaviours = list(FUNCTIONS.get(function, ("other",)))
        if case.find("skipped") is not None:
            continue
        if "stream" in name.split("[", 1)[-1] and "stream" not in behaviours:
            behaviours.append("stream")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        test_id = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{name}"
        if failure is None:
            for b in behaviours:
                seen[b].append((test_id, True, ""))
            continue
        message = (failure.get("message") or "").strip().splitlines()
        first = message[0][:160] if message else "failed"
        phases = [p.get("value") for p in case.iter("property") if p.get("name") == "phase"]
        failed_at = phases[-1] if phases else None
        for b in behaviours:
            if failed_at is None or b == failed_at or (b == "stream" and "stream" in name):
                seen[b].append((test_id, False, first))
            elif b in phases:
                seen[b].append((test_id, True, ""))
    return seen


def run_target(target: Target, work: Path) -> Result:
    base = ROOT / target.lock
    locked = pinned(base, target.package)
    newest = newest_release(target.package, target.major)
    result = Result(target, locked, newest)
    lock = work / "lock.txt"
    shutil.copy(base, lock)
    sources = LOCKS[target.lock]
    compile_ = [uv(), "pip", "compile", *sources, "--universal", "--python-version", "3.11"]
    compile_ += ["--no-header", "--quiet", "-o", str(lock), "--upgrade-package", target.package]
    done = subprocess.run(compile_, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        result.changed.append(f"could not resolve: {done.stderr.strip()[:200]}")
        result.regression = True
        return result
    result.tested = pinned(lock, target.package)
    if result.tested != newest:
        result.changed.append(
            f"newest {newest} not admitted by {target.claimed} with the rest of the lock: untested"
        )
    venv = work / "venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    steps = [
        [uv(), "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv(), "pip", "sync", "--quiet", "--python", str(python), str(lock)],
        [uv(), "pip", "install", "--quiet", "--no-deps", "--python", str(python), "-e", str(ROOT)],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            result.changed.append(f"install failed: {done.stderr.strip()[:200]}")
            result.regression = True
            return result
    report = work / "junit.xml"
    pytest = [str(python), "-m", "pytest", "-q", f"--junitxml={report}"]
    pytest += ["-o", "junit_family=xunit1", *target.tests]
    subprocess.run(pytest, cwd=ROOT, capture_output=True, text=True)
    if not report.exists():
        result.changed.append("pytest did not run (no report)")
        result.regression = True
        return result
    for behaviour, cases in classify(report).items():
        if behaviour == "other" and all(passed for _, passed, _ in cases):
            continue  # the rest of the tests run, shown only when one fails
        if not cases:
            result.cells[behaviour] = "-"
            continue
        failed = [c for c in cases if not c[1]]
        cell = f"FAIL {len(failed)}/{len(cases)}" if failed else f"pass {len(cases)}"
        result.cells[behaviour] = cell
        for test_id, _, message in failed:
            line = f"{behaviour}: {test_id}: {message}"
            if line not in result.changed:
                result.changed.append(line)
        # The same tests pass with the lock in CI: a failure here is the new release's doing.
        result.regression = result.regression or bool(failed)
    if not result.changed:
        result.changed.append("no change seen" if result.tested != locked else "locked is newest")
    return result


def table(results: Iterable[Result], when: str) -> str:
    head = ["package", "locked", "newest", "tested", *BEHAVIOURS, "what changed"]
    lines = [f"SDK drift, {when}:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.cells.get(b, "-") for b in BEHAVIOURS]
        changed = "; ".join(r.changed).replace("|", "/")
        row = [r.target.name, r.locked, r.newest, r.tested or "-", *cells, changed]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = ROOT / "docs" / "development.md"
    body = readme.read_text()
    start, end = "<!-- drift:begin -->", "<!-- drift:end -->"
    if start not in body or end not in body:
        sys.exit("drift: docs/development.md has no drift:begin/drift:end markers")
    before, rest = body.split(start, 1)
    after = rest.split(end, 1)[1]
    readme.write_text(f"{before}{start}\n{text}\n{end}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [t.name for t in TARGETS]
    parser.add_argument("--only", nargs="+", metavar="NAME", help="some of: " + ", ".join(names))
    parser.add_argument(
        "--readme", action="store_true", help="write the table into docs/development.md"
    )
    args = parser.parse_args(argv)
    targets = TARGETS
    if args.only:
        unknown = set(args.only) - {t.name for t in TARGETS}
        if unknown:
            parser.error(f"unknown package(s) {sorted(unknown)}; known: {names}")
        targets = [t for t in TARGETS if t.name in args.only]
    results = []
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="llmreplay-drift-") as work:
            result = run_target(target, Path(work))
        results.append(result)
        state = "REGRESSION" if result.regression else "ok"
        sys.stdout.write(f"drift: {target.name} {result.tested or '?'}: {state}\n")
        sys.stdout.flush()
    text = table(results, datetime.date.today().isoformat())
    sys.stdout.write(text + "\n")
    if args.readme:
        write_readme(text)
    return 1 if any(r.regression for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
