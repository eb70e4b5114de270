"""``llmreplay migrate``: a pytest-recording (vcrpy) project onto llmreplay in one step.

1. The project's suite is collected and set up (no test body runs) with
   ``llmreplay._migrate_probe``: for each test, its pytest-recording cassettes (own and
   extra, wherever ``vcr_cassette_dir`` puts them, in whatever format its serializer wrote)
   and the file the plugin will look for; each is converted into a staging folder with the
   project's own deserializer. YAML/JSON files under ``cassettes/`` folders that no test
   claims are converted by pytest-recording's layout.
2. The plan: two cassettes for one target, or a target that exists with other content
   (unless ``overwrite``), are refused with the reason; the counts are the files written.
3. Matching: vcrpy matches on method, scheme, host, port, path and query, not the body.
   With ``matching="vcrpy"`` (the default) a ``llm_cassette_config`` fixture is written into
   ``TESTS_DIR/conftest.py`` that keeps vcrpy's default for tests whose ``vcr_config`` sets
   no ``match_on`` (those that set one keep theirs through the compatibility layer).
4. The suite is run once more, in replay, with llmreplay's default (body-keyed) matching
   forced: tests whose request finds no recording are counted (their recording is stale;
   vcrpy's matching hid it). Then the choice: re-record them, or keep vcrpy's matching.

Dry run by default (nothing in the project changes; the measure runs on the staging copy);
``write`` does it. Markers are rewritten only with ``rewrite_markers`` (``_migrate_markers``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import _migrate_markers, _migrate_probe
from ._errors import CassetteError
from ._migrate_report import Report
from ._storage import FileStorage
from ._vcr_import import hidden

VCRPY_MATCH_ON = ("method", "scheme", "host", "port", "path", "query")
_VCR_SUFFIXES = (".yaml", ".yml", ".json")
_NOT_SEARCHED = frozenset({"venv", "site-packages", "node_modules", "build", "dist"})
SNIPPET_MARK = "# -- written by `llmreplay migrate`"


def _pytest(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", *args, "-p", "llmreplay._migrate_probe"]
    command += ["-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    command += ["--continue-on-collection-errors"]  # one broken module hides no other
    return subprocess.run(
        command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def probe(
    tests_dir: Path, stage: Path, cwd: Path
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """One row per test of the project (see ``_migrate_probe``), and the files pytest could
    not collect (their tests are not in the rows: reported, never silently left out)."""
    out = stage / "probe.jsonl"
    env = {_migrate_probe.PROBE: str(out), _migrate_probe.STAGE: str(stage)}
    done = _pytest([str(tests_dir), "--record-mode=none"], env, cwd)
    rows = _rows(out)
    if not rows and done.returncode not in (0, 5):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise CassetteError(
            tests_dir,
            f"its tests could not be collected (pytest exit {done.returncode}):\n{tail}",
            hint="Make `pytest` run in this project first, then run llmreplay migrate again.",
        )
    unique = {row["nodeid"]: row for row in rows}
    return list(unique.values()), _unprobed(done.stdout, set(unique))


def _unprobed(output: str, probed: set[str]) -> list[dict[str, str]]:
    """What pytest's summary says errored before the probe saw it: files it could not
    collect and tests whose setup failed first, each with its last error line."""
    lines = output.splitlines()
    found = []
    for line in lines:
        name = line[len("ERROR ") :].split(" - ", 1)[0].strip() if line.startswith("ERROR ") else ""
        if not name or name in probed:
            continue
        if "::" in name:
            why = line.split(" - ", 1)[1] if " - " in line else "see pytest"
            found.append({"nodeid": name, "error": f"its setup failed first: {why}"})
            continue
        header = next((i for i, x in enumerate(lines) if f"ERROR collecting {name} " in x), -1)
        section = lines[header + 1 :] if header >= 0 else []
        end = next((i for i, x in enumerate(section) if x.startswith("____")), len(section))
        errors = [x[1:].strip() for x in section[:end] if x.startswith("E ")]
        found.append({"nodeid": name, "error": "not collected: " + (errors or ["see pytest"])[-1]})
    return found


def _unclaimed(tests_dir: Path, rows: list[dict[str, Any]]) -> list[tuple[Path, Path]]:
    """vcrpy files under ``cassettes/`` folders no test claimed, and where pytest-recording's
    layout (``<dir>/cassettes/<module>/<name>``) puts them in the plugin's."""
    from ._names import cassette_file

    claimed = {
        c["source"] for row in rows for c in [row.get("own") or {}, *row.get("extras", [])] if c
    }
    first = next((row for row in rows if "llm_dir" in row), None)
    if first is None:
        return []
    root, llm_dir = Path(first["root"]), Path(first["llm_dir"])
    found = []
    for folder in _cassette_folders(tests_dir):
        if llm_dir in (folder, *folder.parents):
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix not in _VCR_SUFFIXES or str(path) in claimed or not path.is_file():
                continue
            if hidden(path.relative_to(folder)):
                continue
            try:
                where = folder.parent.resolve().relative_to(root.resolve())
            except ValueError:
                continue
            module = path.relative_to(folder).parent
            parts = [*where.parts, *module.parts]
            target = cassette_file(llm_dir, tuple(parts), path.stem)
            found.append((path, target))
    return found


def _cassette_folders(tests_dir: Path) -> list[Path]:
    """The ``cassettes`` folders below ``tests_dir``; hidden, environment and build folders
    are not entered at all (a virtualenv inside the project is never walked)."""
    found = []
    for top, folders, _ in os.walk(tests_dir):
        folders[:] = sorted(f for f in folders if not f.startswith(".") and f not in _NOT_SEARCHED)
        if "cassettes" in folders:  # its files are all read below it: not entered again
            found.append(Path(top) / "cassettes")
            folders.remove("cassettes")
    return found


def _modules(rows: list[dict[str, Any]]) -> list[Path]:
    """The test modules pytest collected: the only files migrate reads or rewrites."""
    return sorted({Path(row["module"]) for row in rows if row.get("module")})


def _convert_unclaimed(pairs: list[tuple[Path, Path]], stage: Path) -> list[dict[str, Any]]:
    from . import _vcr_import

    out = []
    for number, (source, target) in enumerate(pairs):
        staged = stage / f"unclaimed-{number}.msgpack"
        outcome = _vcr_import.convert([(source, staged)])
        row: dict[str, Any] = {"source": str(source), "target": str(target), "unclaimed": True}
        if outcome.imported:
            row.update(staged=str(staged), interactions=outcome.interactions)
        else:
            row["error"] = outcome.skipped[0]["reason"]
        out.append(row)
    return out


def _plan(cassettes: list[dict[str, Any]], report: Report, overwrite: bool) -> list[dict[str, Any]]:
    """The cassettes to write; refusals and already-migrated ones go into ``report``."""
    by_target: dict[str, list[dict[str, Any]]] = {}
    for cassette in cassettes:
        if "error" in cassette:
            report.refused.append({"source": cassette["source"], "reason": cassette["error"]})
        elif "staged" in cassette:
            by_target.setdefault(str(Path(cassette["target"])).casefold(), []).append(cassette)
    chosen = []
    for group in by_target.values():
        sources = sorted({c["source"] for c in group})
        if len(sources) > 1:
            for source in sources:
                others = ", ".join(s for s in sources if s != source)
                reason = (
                    f"{group[0]['target']} would also be written from {others}; "
                    "nothing was written for either (rename one of the tests or cassettes)"
                )
                report.refused.append({"source": source, "reason": reason})
            continue
        cassette, target = group[0], Path(group[0]["target"])
        if target.exists():
            if target.read_bytes() == Path(cassette["staged"]).read_bytes():
                report.unchanged.append(str(target))
                continue
            if not overwrite:
                reason = f"{target} exists with other content (pass --overwrite to replace it)"
                report.refused.append({"source": cassette["source"], "reason": reason})
                continue
        chosen.append(cassette)
    return chosen


def _matching(rows: list[dict[str, Any]], tests_dir: Path, matching: str) -> dict[str, Any]:
    from ._match import MATCH_PARTS

    explicit: dict[str, int] = {}
    default = 0
    for row in rows:
        if not row.get("marked"):
            continue
        if row.get("match_on") is None:
            default += 1
        else:
            key = ", ".join(row["match_on"])
            explicit[key] = explicit.get(key, 0) + 1
    parts = [p for p in VCRPY_MATCH_ON if p in MATCH_PARTS]
    conftest = tests_dir / "conftest.py"
    text = conftest.read_text(encoding="utf-8") if conftest.is_file() else ""
    result: dict[str, Any] = {
        "vcrpy_default": default,
        "explicit": explicit,
        "choice": matching,
        "conftest": str(conftest),
        "match_on": parts,
        "snippet": None,
    }
    if matching == "vcrpy" and default:
        if SNIPPET_MARK in text:
            result["snippet"] = "present"
        elif "def llm_cassette_config" in text:
            result["snippet"] = "blocked: this conftest already defines llm_cassette_config"
        else:
            result["snippet"] = "to write"
    return result


def snippet(parts: list[str]) -> str:
    names = ", ".join(f'"{p}"' for p in parts)
    return f"""

{SNIPPET_MARK}: keep vcrpy's default matching ({", ".join(parts)};
# not the body) for tests whose vcr_config sets no match_on. Tests whose recording no longer
# matches its request pass only because of it: re-record them (pytest --llm-mode=record),
# then delete this fixture to match on the body too.
import pytest as _llmreplay_pytest  # noqa: E402


@_llmreplay_pytest.fixture
def llm_cassette_config(request):  # noqa: ANN001, ANN201
    if "match_on" in request.getfixturevalue("vcr_config"):
        return {{}}  # the project's own vcr_config matching applies
    return {{"match_on": [{names}]}}
"""


def measure(
    tests_dir: Path,
    cwd: Path,
    out: Path,
    llm_dir: Path | None,
    only: list[str] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Run the suite in replay with llmreplay's default matching (just the tests ``only``
    names, when given): misses and the cause of each failure per test, and why the run did
    not finish, if it did not."""
    env = {_migrate_probe.MEASURE: str(out)}
    if only is not None:
        listing = out.with_suffix(".only")
        listing.write_text("\n".join(only) + "\n", encoding="utf-8")
        env[_migrate_probe.ONLY] = str(listing)
    args = [str(tests_dir), "-p", "no:recording", "--llm-mode=replay"]
    if llm_dir is not None:
        args += ["-o", f"llm_cassette_dir={llm_dir}"]
    done = _pytest(args, env, cwd)
    merged: dict[str, dict[str, Any]] = {}
    for row in _rows(out):  # a test's call, then a failed teardown: failed, misses summed
        first = merged.setdefault(row["nodeid"], row)
        if first is not row:
            first["misses"] += row["misses"]
            if row["outcome"] == "failed" and first["outcome"] != "failed":
                first.update(outcome="failed", cause=row["cause"])
    rows = list(merged.values())
    unfinished = None
    if done.returncode not in (0, 1, 5):  # 2: interrupted, 3: internal error, 4: usage
        tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
        unfinished = f"pytest exit {done.returncode} after {len(rows)} test(s): {tail[0]}"
    return rows, unfinished


def judge(
    measured: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(stale, failing) from the measuring run. Stale: a test whose converted recording no
    longer matches a request it sends. Failing: any other failure, with its cause, a miss
    of a test that had no recording to convert included (nothing of it was stale)."""
    converted = {
        row["nodeid"]
        for row in rows
        if (row.get("own") and not row["own"].get("missing"))
        or any(not extra.get("missing") for extra in row.get("extras", ()))
    }
    stale = [m for m in measured if m["misses"] and m["nodeid"] in converted]
    failing = [
        m
        for m in measured
        if m["outcome"] == "failed" and (not m["misses"] or m["nodeid"] not in converted)
    ]
    return stale, failing


def predict(
    measured: list[dict[str, Any]], report: Report, rows: list[dict[str, Any]]
) -> dict[str, str]:
    """What each measured test gives after ``--write``: the measuring run's outcome, but a
    stale test (it missed only under the body-keyed matching the measure forces) passes
    where vcrpy's matching is kept, by the written fixture or its own ``match_on``."""
    stale = {s["nodeid"] for s in report.stale or ()}
    failing = {f["nodeid"] for f in report.failing}
    own_match = {r["nodeid"] for r in rows if r.get("match_on") is not None}
    kept = report.matching.get("snippet") in ("to write", "written", "present")
    out = {}
    for m in measured:
        nodeid = m["nodeid"]
        if nodeid in failing:
            out[nodeid] = "fail"
        elif nodeid in stale:
            out[nodeid] = "pass" if kept or nodeid in own_match else "fail"
        else:
            out[nodeid] = {"passed": "pass", "skipped": "skip"}.get(m["outcome"], "fail")
    return dict(sorted(out.items()))


def migrate(
    tests_dir: Path,
    *,
    write: bool = False,
    rewrite_markers: bool = False,
    matching: str = "vcrpy",
    overwrite: bool = False,
    run: bool = True,
    cwd: Path | None = None,
) -> Report:
    """Migrate the project whose tests are in ``tests_dir`` (see the module docstring)."""
    cwd = cwd or Path.cwd()
    tests_dir = tests_dir.resolve()
    report = Report(write=write)
    with tempfile.TemporaryDirectory(prefix="llmreplay-migrate-") as scratch:
        stage = Path(scratch)
        rows, uncollected = probe(tests_dir, stage, cwd)
        report.tests = len(rows)
        report.marked = sum(1 for row in rows if row.get("marked"))
        report.vcr_fixture = [r["nodeid"] for r in rows if r.get("uses_vcr_fixture")]
        report.errors = [{"nodeid": r["nodeid"], "error": r["error"]} for r in rows if "error" in r]
        report.errors += uncollected
        cassettes: list[dict[str, Any]] = []
        for row in rows:
            own = row.get("own")
            if own is not None and own.get("missing"):
                report.no_cassette.append(row["nodeid"])
            cassettes += [c for c in [own, *row.get("extras", [])] if c and not c.get("missing")]
        cassettes = list({c["source"] + "\0" + c["target"]: c for c in cassettes}.values())
        cassettes += _convert_unclaimed(_unclaimed(tests_dir, rows), stage)
        chosen = _plan(cassettes, report, overwrite)
        report.cassettes = [
            {k: c[k] for k in ("source", "target", "interactions")}
            | {"unclaimed": "unclaimed" in c}
            for c in chosen
        ]
        report.matching = _matching(rows, tests_dir, matching)
        measure_dir: Path | None = None
        if write:
            storage = FileStorage()
            for cassette in chosen:
                target = Path(cassette["target"])
                storage.save(target, Path(cassette["staged"]).read_bytes())
            if report.matching["snippet"] == "to write":
                conftest = Path(report.matching["conftest"])
                with conftest.open("a", encoding="utf-8") as out:
                    out.write(snippet(report.matching["match_on"]))
                report.matching["snippet"] = "written"
        else:
            first = next((row for row in rows if "llm_dir" in row), None)
            if first is not None:  # the dry run measures a staging copy of the plugin's layout
                llm_dir, measure_dir = Path(first["llm_dir"]), stage / "layout"
                for cassette in chosen:
                    target = Path(cassette["target"])
                    if llm_dir in target.parents:
                        copy = measure_dir / target.relative_to(llm_dir)
                        copy.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(cassette["staged"], copy)
        if run and rows:
            # Only the tests with a cassette (marked, or reading the vcr fixture) are run.
            users = [r["nodeid"] for r in rows if r.get("marked") or r.get("uses_vcr_fixture")]
            measured, report.unfinished = measure(
                tests_dir, cwd, stage / "measure.jsonl", measure_dir, users
            )
            if not write:  # a folder of the project's own is not staged: measured on --write
                moved = {r["nodeid"] for r in rows if r.get("own_vcr_dir")}
                report.unmeasured = sorted(moved)
                measured = [m for m in measured if m["nodeid"] not in moved]
            report.stale, report.failing = judge(measured, rows)
            report.predicted = predict(measured, report, rows)
    report.markers = _markers(_modules(rows), write and rewrite_markers)
    report.notes = _notes(rows, _modules(rows))
    return report


def _markers(modules: list[Path], rewrite: bool) -> list[dict[str, Any]]:
    uses = []
    for path in modules:
        found = _migrate_markers.scan(path)
        done = _migrate_markers.rewrite(path) if rewrite and found else 0
        for use in found:
            row = vars(use) | {"rewritten": bool(done) and use.rewritable}
            uses.append(row)
    return uses


def _notes(rows: list[dict[str, Any]], modules: list[Path]) -> list[str]:
    from ._vcr_compat import _IGNORED

    notes = []
    ignored = sorted({o for row in rows for o in row.get("options", ()) if o in _IGNORED})
    if ignored:
        notes.append(
            f"vcrpy options without effect under llmreplay: {', '.join(ignored)} (msgpack "
            "files, its own layout, bodies kept as sent); migrate read the files they named, "
            "and each run's llmreplay summary names them: remove them from the markers and "
            "vcr_config once pytest-recording is gone"
        )
    persisters = sorted({p for row in rows for p in row.get("persisters", ())})
    if persisters:
        notes.append(
            f"the project registers a vcrpy persister ({', '.join(persisters)}): migrate "
            "reads cassettes from files only, so a test whose recording that persister keeps "
            "elsewhere is listed without a cassette; write those out as YAML with vcrpy's "
            "default persister first, or record them again under llmreplay (--llm-mode=record)"
        )
    direct = [str(p) for p in modules if "use_cassette(" in p.read_text("utf-8")]
    if direct:
        notes.append(
            "vcrpy used directly (use_cassette) in: "
            + ", ".join(direct)
            + " -- left as is; it keeps running under vcrpy (or use llmreplay.cassette(...))"
        )
    return notes
