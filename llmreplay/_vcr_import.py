"""Converting vcrpy cassette files into llmreplay cassettes: where each goes, and never over
another.

Shared by ``llmreplay import-vcr`` and ``llmreplay migrate``. The plan is made before
anything is written: a folder keeps its layout below the output folder, two inputs that
would land on one output file (``a.yaml`` and ``a.json``, or two files named alike given
one by one; compared case-insensitively, as macOS and Windows compare names) are both
refused with the reason, and an existing output is refused unless ``overwrite``. Every
file is either written or reported with why, so the counts reported are the files written.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigError, LLMReplayError
from ._format import encode
from ._match import KeySpec
from ._names import cassette_file
from ._scrub import DEFAULT_FILTER_QUERY
from ._storage import FileStorage
from ._vcr import Deserializer, load_vcr

VCR_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Outcome:
    """What a conversion did: ``imported`` rows (source, cassette, interactions) and
    ``skipped`` rows (source, reason), one row per input file."""

    imported: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def interactions(self) -> int:
        return sum(int(row["interactions"]) for row in self.imported)


def sources(inputs: Iterable[str | Path], out: Path) -> list[tuple[Path, Path]]:
    """``(source, target)`` for every vcrpy file named or found below a named folder (hidden
    ones skipped); a folder's files keep their path below it, a file named alone goes to
    ``out`` directly."""
    pairs: list[tuple[Path, Path]] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.suffix.lower() in VCR_SUFFIXES):
                if found.is_file() and not hidden(found.relative_to(path)):
                    relative = found.relative_to(path)
                    pairs.append((found, cassette_file(out, relative.parent, relative.stem)))
        else:
            pairs.append((path, cassette_file(out, (), path.stem)))
    return pairs


def hidden(relative: Path) -> bool:
    """Whether a path below a searched folder is hidden (``.llmreplay/played.json``...)."""
    return any(part.startswith(".") for part in relative.parts)


def _clashes(pairs: list[tuple[Path, Path]]) -> dict[Path, list[Path]]:
    """For each source whose target another source shares, the other sources."""
    by_target: dict[str, list[Path]] = {}
    for source, target in pairs:
        by_target.setdefault(target.as_posix().casefold(), []).append(source)
    return {
        source: [other for other in group if other != source]
        for group in by_target.values()
        if len(group) > 1
        for source in group
    }


def convert(
    pairs: list[tuple[Path, Path]],
    *,
    deserializer: Deserializer | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    spec: KeySpec | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> Outcome:
    """Convert each ``(source, target)``; see the module docstring for what is refused."""
    spec = spec or KeySpec.build(None, (), DEFAULT_FILTER_QUERY)
    storage = FileStorage()
    clashes = _clashes(pairs)
    outcome = Outcome()
    for index, (source, target) in enumerate(pairs, 1):
        if progress is not None:
            progress(index, str(source))
        if source in clashes:
            others = ", ".join(str(o) for o in clashes[source])
            reason = (
                f"{target} would also be written from {others}; nothing was written for "
                "either (import them into separate folders, or rename one)"
            )
            outcome.skipped.append({"path": str(source), "reason": reason})
            continue
        if target.exists() and not overwrite:
            reason = f"{target} exists and was left as it is (pass --overwrite to replace it)"
            outcome.skipped.append({"path": str(source), "reason": reason})
            continue
        try:
            items = load_vcr(source, spec, deserializer=deserializer)
        except (LLMReplayError, OSError) as exc:
            outcome.skipped.append({"path": str(source), "reason": str(exc)})
            continue
        if not items:
            outcome.skipped.append({"path": str(source), "reason": "it holds no interactions"})
            continue
        if not dry_run:
            storage.save(target, encode(items, spec.describe()))
        outcome.imported.append(
            {"path": str(source), "cassette": str(target), "interactions": len(items)}
        )
    return outcome


def load_deserializer(reference: str, base: Path | None = None) -> Deserializer:
    """The function ``module:name`` (or ``path/to/file.py:name``) names; ``name`` may be
    dotted, and an object with a ``deserialize`` method (a vcrpy serializer) is accepted.
    Modules are looked up from ``base`` (default: the current folder) first, as pytest's
    rootdir would make them importable."""
    source = "--deserializer"
    expected = "expected module:function or path/to/file.py:function"
    module_name, colon, attribute = reference.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError("deserializer", reference, source, expected)
    base = base or Path.cwd()
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            file = file if file.is_absolute() else base / file
            spec = importlib.util.spec_from_file_location(f"_llmreplay_deser_{file.stem}", file)
            if spec is None or spec.loader is None or not file.is_file():
                raise ConfigError("deserializer", reference, source, f"{file} is not a file")
            if str(file.parent) not in sys.path:  # its own imports of its neighbours
                sys.path.insert(0, str(file.parent))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if str(base) not in sys.path:
                sys.path.insert(0, str(base))
            module = importlib.import_module(module_name)
        target: Any = module
        for part in attribute.split("."):
            target = getattr(target, part)
    except ConfigError:
        raise
    except Exception as exc:  # the project's own module: any failure to load it is the finding
        raise ConfigError(
            "deserializer",
            reference,
            source,
            f"it could not be loaded ({type(exc).__name__}: {exc})",
        ) from None
    function = getattr(target, "deserialize", target)
    if not callable(function):
        raise ConfigError("deserializer", reference, source, "it is not callable")
    return function  # type: ignore[no-any-return]
