"""Three-way merge of cassettes (``llmreplay merge``, a git merge driver).

Interactions are grouped by request key; each key's recordings (its list of answers, in
replay order) are merged as one value, against the common ancestor:

- only one side changed a key (added, re-recorded or removed it): that side's recordings;
- both sides hold the same recordings (same requests, statuses and response bodies;
  headers and timings are not compared, since two recordings of one answer differ there):
  they are kept once;
- both sides changed a key differently (including both adding it with different answers):
  a **conflict**. Ours is kept, unless ``prefer`` says which side wins; the conflict is
  reported and, without ``prefer``, the merge exits 1 so that git marks the file conflicted.

Order: ours' interactions in ours' order, then keys only theirs holds, in theirs' order.
When the three files made their keys with different ``match_on``/``ignore`` settings,
base and theirs are re-keyed with ours' settings first. An empty base file (git passes one
when both branches added the cassette) is an empty cassette.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import CassetteError
from ._format import Interaction, decode, encode
from ._match import KeySpec, RequestView
from ._storage import FileStorage


@dataclass
class MergeResult:
    """The merged interactions and what happened to each key that both sides touched."""

    items: list[Interaction]
    match: dict[str, Any]
    from_theirs: list[str] = field(default_factory=list)  # keys taken from theirs
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # key, kept, counts


def _read(path: Path) -> tuple[list[Interaction], dict[str, Any] | None]:
    data = FileStorage().load(path)
    if data is None:
        raise CassetteError(path, "no such file", hint="Check the path.")
    if not data:
        return [], None  # git's empty ancestor for a file both branches added
    return decode(data, path)


def _rekeyed(items: list[Interaction], match: dict[str, Any] | None, spec: KeySpec) -> None:
    if match is None or match == spec.describe():
        return
    for item in items:
        request = item.request
        item.key = spec.key(RequestView(request.method, request.url, request.headers, request.body))


def _spec(match: dict[str, Any] | None) -> KeySpec:
    if match is None:
        return KeySpec()
    return KeySpec.build(
        match.get("match_on"),
        match.get("ignore", ()),
        match.get("drop_query", ()),
        match.get("normalise", ()),
    )


def _grouped(items: list[Interaction]) -> dict[str, list[Interaction]]:
    out: dict[str, list[Interaction]] = {}
    for item in items:
        out.setdefault(item.key, []).append(item)
    return out


def _same(a: list[Interaction] | None, b: list[Interaction] | None) -> bool:
    """The same recordings: requests, statuses and answers alike (not headers or timings)."""

    def essence(items: list[Interaction] | None) -> list[Any]:
        return [
            (
                i.request.method,
                i.request.url,
                i.request.body,
                i.response.status,
                i.response.body,
                i.response.chunks,
                i.response.cut,
            )
            for i in items or []
        ]

    return essence(a) == essence(b)


def merge(base: Path, ours: Path, theirs: Path, *, prefer: str | None = None) -> MergeResult:
    """Merge ``theirs`` into ``ours`` against ``base`` (see the module docstring)."""
    loaded = {
        name: _read(path) for name, path in (("base", base), ("ours", ours), ("theirs", theirs))
    }
    match = loaded["ours"][1] or loaded["theirs"][1] or loaded["base"][1] or KeySpec().describe()
    spec = _spec(match)
    for items, their_match in loaded.values():
        _rekeyed(items, their_match, spec)
    old, mine, other = (_grouped(loaded[name][0]) for name in ("base", "ours", "theirs"))
    keys = list(dict.fromkeys([*mine, *other]))
    result = MergeResult([], spec.describe())
    for key in keys:
        b, o, t = old.get(key), mine.get(key), other.get(key)
        if _same(o, t) or _same(t, b):
            chosen = o
        elif _same(o, b):
            chosen = t
            result.from_theirs.append(key)
        else:
            chosen = t if prefer == "theirs" else o
            if prefer == "theirs":
                result.from_theirs.append(key)
            sample = (o or t or b or [])[0]  # conflicting keys are held by a side
            result.conflicts.append(
                {
                    "key": key,
                    "request": f"{sample.request.method} {sample.request.url}",
                    "answers": {"base": len(b or []), "ours": len(o or []), "theirs": len(t or [])},
                    "kept": prefer or "ours",
                }
            )
        result.items.extend(chosen or [])
    return result


def write(result: MergeResult, out: Path) -> None:
    """Save the merged cassette at ``out`` (atomically)."""
    FileStorage().save(out, encode(result.items, result.match))
