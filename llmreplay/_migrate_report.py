"""The report of ``llmreplay migrate``: what it found, did (or would do), and left to the
user; as data (``--json``) and as text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    """What migrate found, did (or would do), and left to the user; ``as_dict`` for --json."""

    write: bool
    tests: int = 0
    marked: int = 0
    vcr_fixture: list[str] = field(default_factory=list)
    cassettes: list[dict[str, Any]] = field(default_factory=list)  # source, target, n
    unchanged: list[str] = field(default_factory=list)  # targets already migrated
    refused: list[dict[str, str]] = field(default_factory=list)  # source, reason
    no_cassette: list[str] = field(default_factory=list)  # marked tests without one
    errors: list[dict[str, str]] = field(default_factory=list)  # nodeid, error
    matching: dict[str, Any] = field(default_factory=dict)
    stale: list[dict[str, Any]] | None = None  # tests with requests their recording misses
    failing: list[dict[str, Any]] = field(default_factory=list)  # failing for other reasons
    unfinished: str | None = None  # why the measuring run stopped early, if it did
    # What the suite gives after --write, per measured test: "pass", "fail" or "skip".
    predicted: dict[str, str] = field(default_factory=dict)
    unmeasured: list[str] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def interactions(self) -> int:
        return sum(int(c["interactions"]) for c in self.cassettes)

    def as_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["interactions"] = self.interactions
        return data


def render(report: Report) -> str:
    """The migration report as text: what was done (or would be), and what is left."""
    did = "" if report.write else "would "
    lines = [
        f"llmreplay migrate ({'--write' if report.write else 'dry run: nothing changed'})",
        f"tests: {report.tests} collected, {report.marked} with a cassette marker, "
        f"{len(report.vcr_fixture)} reading the vcr fixture (served by the compatibility layer)",
        f"cassettes: {did}write {len(report.cassettes)} ({report.interactions} interactions)"
        + (f", {len(report.unchanged)} already migrated" if report.unchanged else "")
        + (f", {len(report.refused)} not converted" if report.refused else ""),
    ]
    lines += [f"  {c['source']} -> {c['target']} ({c['interactions']})" for c in report.cassettes]
    lines += [f"  not converted: {r['source']}: {r['reason']}" for r in report.refused]
    if report.no_cassette:
        lines.append(
            f"marked tests without a cassette (never recorded?): {len(report.no_cassette)}"
        )
        lines += [f"  {nodeid}" for nodeid in report.no_cassette]
    lines += [f"  could not be read: {e['nodeid']}: {e['error']}" for e in report.errors]
    m = report.matching
    if m:
        lines.append(
            f"matching: {m['vcrpy_default']} test(s) rely on vcrpy's default matching "
            f"({', '.join(m['match_on'])}; not the body)"
            + "".join(f"; {n} set match_on=[{k}]" for k, n in m["explicit"].items())
        )
        if m["snippet"] in ("written", "to write"):
            verb = "wrote" if m["snippet"] == "written" else "would write"
            lines.append(f"  {verb} llm_cassette_config into {m['conftest']} to keep it")
        elif m["snippet"]:
            lines.append(f"  llm_cassette_config in {m['conftest']}: {m['snippet']}")
    if report.stale is None:
        lines.append("stale recordings: not measured (--no-run)")
    else:
        lines.append(
            f"stale recordings: {len(report.stale)} test(s) send a request their recording no "
            "longer matches under llmreplay's default matching (vcrpy's matching hid it)"
        )
        lines += [f"  {s['nodeid']}: {s['misses']} request(s) unmatched" for s in report.stale]
        lines += [
            f"  failing with no unmatched request: {f['nodeid']}: {f.get('cause') or 'failed'}"
            for f in report.failing
        ]
        if report.failing:
            lines.append(
                "  to see one whole after --write: pytest -p no:recording --llm-mode=replay "
                "<test>; a miss would have been counted above, so the cause is in the test "
                "or a fixture as run under llmreplay"
            )
        if report.predicted:
            counts = {k: sum(1 for v in report.predicted.values() if v == k)
                      for k in ("pass", "fail", "skip")}  # fmt: skip
            lines.append(
                f"after --write, measured: {counts['pass']} test(s) pass, {counts['fail']} "
                f"fail, {counts['skip']} skipped"
                + ("" if report.write else " (as this dry run's staging copy did)")
            )
        if report.unfinished:
            lines.append(
                f"  the measuring run did not finish ({report.unfinished}): the counts above "
                "are partial"
            )
        lines += [
            f"  not measured in a dry run (cassettes in its vcr_cassette_dir): {nodeid}"
            for nodeid in report.unmeasured
        ]
        if report.stale:
            lines.append(
                "  choose: re-record them (pytest -p no:recording --llm-mode=record <tests>), "
                "or keep vcrpy's matching (llmreplay migrate --matching vcrpy, the default)"
            )
    rewritable = [u for u in report.markers if u["rewritable"]]
    done = [u for u in report.markers if u["rewritten"]]
    lines.append(
        f"markers: {len(report.markers)} @pytest.mark.vcr use(s) work unchanged; "
        f"{len(rewritable)} could become @pytest.mark.llmreplay"
        + (f", {len(done)} rewritten" if done else " (--write --rewrite-markers)")
    )
    lines += [
        f"  {u['path']}:{u['line']}: left: {u['reason']}" for u in report.markers if u["reason"]
    ]
    lines += [f"note: {note}" for note in report.notes]
    lines += [
        "left to you: run the suite without pytest-recording (uninstall it, or add "
        "`-p no:recording` to addopts); delete the YAML cassettes once it passes",
    ]
    return "\n".join(lines) + "\n"
