"""The pytest plugin ``llmreplay migrate`` loads into the project's own test run (``-p``).

It runs inside the project so that every answer comes from the project itself: its
``vcr_config`` and ``vcr_cassette_dir`` fixtures (conftest overrides included), its
``@pytest.mark.vcr`` markers, the serializers its ``pytest_recording_configure`` hook
registers, and the plugin's own ``cassette_path`` for where each cassette must go.

Two jobs, chosen by environment variables ``migrate`` sets:

- ``LLMREPLAY_MIGRATE_PROBE=<out.jsonl>`` with ``LLMREPLAY_MIGRATE_STAGE=<folder>``: for
  each test, no test body is run (skip marks are set aside too, so a skipped test's
  cassette is found); one JSON line says where its pytest-recording cassettes are and where
  llmreplay looks, and each cassette is converted into the staging folder with the
  project's own deserializer.
- ``LLMREPLAY_MIGRATE_MEASURE=<out.jsonl>``: the suite runs as usual, in replay, with
  llmreplay's default matching forced on every cassette; one JSON line per test counts the
  requests that found no recording (a recording that no longer matches its test's request).

Lines are appended per process, so pytest-xdist workers can write side by side.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROBE = "LLMREPLAY_MIGRATE_PROBE"
STAGE = "LLMREPLAY_MIGRATE_STAGE"
MEASURE = "LLMREPLAY_MIGRATE_MEASURE"
ONLY = "LLMREPLAY_MIGRATE_ONLY"  # a file of node ids: the measuring run runs just those
_SKIPS = ("skip", "skipif", "xfail")
_FORBIDDEN = r"<>?%*:|\"'/\\"  # pytest-recording's get_default_cassette_name
_MISSES: dict[str, int] = {}
_RESTORE: list[tuple[str, Any]] = []
_converted: dict[str, dict[str, Any]] = {}


def _emit(variable: str, row: dict[str, Any]) -> None:
    with open(os.environ[variable], "a", encoding="utf-8") as out:
        out.write(json.dumps(row, default=repr) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(MEASURE):
        _force_default_matching()
    if os.environ.get(PROBE):  # skip marks are set aside: keep them known to --strict-markers
        for name in _SKIPS:
            config.addinivalue_line("markers", f"{name}: (llmreplay migrate probe)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    only = os.environ.get(ONLY)
    if only:  # the tests that use a cassette; the rest of the suite is not ours to run
        wanted = set(Path(only).read_text(encoding="utf-8").splitlines())
        dropped = [item for item in items if item.nodeid not in wanted]
        if dropped:
            items[:] = [item for item in items if item.nodeid in wanted]
            config.hook.pytest_deselected(items=dropped)
    if not os.environ.get(PROBE):
        return
    for item in items:  # a skipped test still has a cassette to migrate
        for node in item.listchain():
            node.own_markers[:] = [m for m in node.own_markers if m.name not in _SKIPS]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    result = yield
    if os.environ.get(PROBE):  # set up, then skipped: no test body runs (async ones too),
        pytest.skip("llmreplay migrate probe: not run")  # and the test counts nowhere
    return result


@pytest.fixture(autouse=True)
def _llmreplay_migrate_probe(request: pytest.FixtureRequest) -> Iterator[None]:
    if os.environ.get(PROBE):
        try:
            row = _probe(request)
        except Exception as exc:  # the project's fixtures: any failure is reported, not fatal
            row = {"nodeid": request.node.nodeid, "error": f"{type(exc).__name__}: {exc}"}
        _emit(PROBE, {**row, "module": str(request.node.path)})
    yield


def _fixture(request: pytest.FixtureRequest, name: str, default: Any) -> tuple[Any, bool]:
    """The fixture's value and whether the project defines it (not a plugin)."""
    definitions = request._fixturemanager.getfixturedefs(name, request.node)
    if not definitions:
        return default, False
    return request.getfixturevalue(name), not _plugin(definitions[-1].func)


def _shim(config: pytest.Config) -> Any:
    from ._vcr_compat import VCRShim

    key = "_llmreplay_migrate_shim"
    made = getattr(config, key, None)
    if made is None:
        made = VCRShim()
        setattr(config, key, made)
        hook = getattr(config.hook, "pytest_recording_configure", None)
        if hook is not None:
            hook(config=config, vcr=made)
    return made


def _named(thing: Any) -> str:
    name = getattr(thing, "__qualname__", None) or type(thing).__qualname__
    return f"{getattr(thing, '__module__', '?')}.{name}"


def _probe(request: pytest.FixtureRequest) -> dict[str, Any]:
    from ._names import cassette_file
    from .pytest_plugin import cassette_dir, cassette_path, project_cassette_name, project_root

    node = request.node
    markers = list(node.iter_markers("vcr"))
    marked = bool(markers) or node.get_closest_marker("llmreplay") is not None  # rewritten
    module_path = Path(str(node.path))
    config, own_config = _fixture(request, "vcr_config", {})
    default_dir = str(module_path.parent / "cassettes" / module_path.stem)
    directory, own_dir = _fixture(request, "vcr_cassette_dir", default_dir)
    directory = default_dir if directory is None else str(directory)  # llmreplay's default
    merged = dict(config or {})
    for marker in reversed(markers):  # the closest marker wins, as in pytest-recording
        merged.update(marker.kwargs)
    own_name = project_cassette_name(request)  # a project's default_cassette_name
    name = own_name if own_name is not None else _cassette_name(node)
    serializer = str(merged.get("serializer", "yaml"))
    target = cassette_path(node, cassette_dir(node))
    if own_name is not None:  # the name the plugin opens for it (pytest_plugin.llm_cassette)
        target = cassette_file(target.parent, (), own_name)
    if own_dir:  # a vcr_cassette_dir override is the cassette folder under llmreplay too
        target = Path(directory) / target.name
    base = Path(directory) if own_dir else target.parent
    extras = []
    for marker in markers:
        for extra in marker.args:
            source = Path(os.fspath(extra))
            source = source if source.is_absolute() else Path(directory) / source
            destination = Path(os.fspath(extra))
            if destination.suffix in (".yaml", ".yml", ".json"):
                destination = destination.with_suffix(".msgpack")
            destination = destination if destination.is_absolute() else base / destination
            extras.append(_cassette(source, destination, serializer, request.config))
    match_on = merged.get("match_on")
    source = _own_source(merged, directory, name, serializer)
    return {
        "nodeid": node.nodeid,
        "marked": marked,
        "uses_vcr_fixture": _reads_vcr(node),
        "root": str(project_root(node)),
        "llm_dir": str(cassette_dir(node)),
        "vcr_dir": directory,
        "own_vcr_dir": own_dir,
        "own_vcr_config": own_config,
        "options": sorted(merged),
        "persisters": [_named(p) for p in _shim(request.config).persisters],
        "match_on": None if match_on is None else [_part(p) for p in match_on],
        "serializer": serializer,
        "own": _cassette(source, target, serializer, request.config) if marked else None,
        "extras": extras,
    }


def _own_source(merged: dict[str, Any], directory: str, name: str, serializer: str) -> Path:
    """Where pytest-recording keeps the test's cassette: ``<dir>/<name>.<serializer>``, or
    what the project's own ``cassette_library_dir`` and ``path_transformer`` make of it."""
    path = os.path.join(os.fspath(merged.get("cassette_library_dir") or directory), name)
    transformer = merged.get("path_transformer")
    return Path(transformer(path) if callable(transformer) else f"{path}.{serializer}")


def _plugin(function: Any) -> bool:
    module = getattr(function, "__module__", "") or ""
    return module.startswith(("pytest_recording", "llmreplay", "_pytest", "pytest"))


def _reads_vcr(node: Any) -> bool:
    """Whether the test, or a project fixture it uses, asks for the ``vcr`` fixture (an
    autouse ``vcr``, as pytest-recording's, does not count)."""
    info = node._fixtureinfo
    if "vcr" in info.argnames:
        return True
    for definitions in info.name2fixturedefs.values():
        last = definitions[-1]
        if "vcr" in last.argnames and not _plugin(last.func):
            return True
    return False


def _part(part: Any) -> str:
    return part if isinstance(part, str) else f"<function {getattr(part, '__name__', part)}>"


def _cassette_name(node: Any) -> str:
    marker = node.get_closest_marker("default_cassette")
    if marker is not None and marker.args:
        return str(marker.args[0])
    cls = getattr(node, "cls", None)
    name = f"{cls.__name__}.{node.name}" if cls is not None else str(node.name)
    for character in _FORBIDDEN:
        name = name.replace(character, "-")
    return name


def _cassette(source: Path, target: Path, serializer: str, config: pytest.Config) -> dict[str, Any]:
    """Where a cassette is and goes; converted into the staging folder once per source."""
    from . import _vcr_import

    row: dict[str, Any] = {"source": str(source), "target": str(target)}
    if not source.is_file():
        return {**row, "missing": True}
    done = _converted.get(str(source))
    if done is None:
        staged = Path(os.environ[STAGE]) / (
            hashlib.sha256(str(source).encode()).hexdigest()[:24] + ".msgpack"
        )
        deserializer = None
        # A project's serializer wins under any name, "yaml" and "json" included: vcrpy's
        # register_serializer replaces its own under the same name.
        registered = _shim(config).serializers.get(serializer)
        if registered is not None:
            deserializer = getattr(registered, "deserialize", registered)
        outcome = _vcr_import.convert([(source, staged)], deserializer=deserializer)
        if outcome.imported:
            done = {"staged": str(staged), "interactions": outcome.interactions}
        else:
            done = {"error": outcome.skipped[0]["reason"]}
        _converted[str(source)] = done
    return {**row, **done}


# -- measuring: llmreplay's default matching, misses counted per test ----------------------


def _force_default_matching() -> None:
    from ._cassette import Cassette

    original_init = Cassette.__init__
    original_miss = Cassette._miss

    @functools.wraps(original_init)  # the plugin validates options against its signature
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("match_on", None)
        original_init(self, *args, **kwargs)

    def miss(self: Any, *args: Any, **kwargs: Any) -> Any:
        where = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        _MISSES[where] = _MISSES.get(where, 0) + 1
        return original_miss(self, *args, **kwargs)

    _RESTORE.extend([("__init__", original_init), ("_miss", original_miss)])
    Cassette.__init__ = init  # type: ignore[method-assign]
    Cassette._miss = miss  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put the cassette class back (the probe may run inside a longer-lived process)."""
    from ._cassette import Cassette

    while _RESTORE:
        name, original = _RESTORE.pop()
        setattr(Cassette, name, original)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not os.environ.get(MEASURE):
        return
    # The call, a setup that did not pass, and a teardown that failed (which fails the
    # test too: the measure merges a test's rows).
    if report.when == "call" or report.failed or (report.when == "setup" and report.skipped):
        _emit(
            MEASURE,
            {
                "nodeid": report.nodeid,
                "outcome": report.outcome,
                "misses": _MISSES.pop(report.nodeid, 0),
                "cause": _cause(report) if report.failed else None,
            },
        )


def _cause(report: pytest.TestReport) -> str:
    """A failure in one line: the exception's type and the first line of its message."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(crash.message) if crash is not None else str(report.longrepr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = lines[0] if lines else "failed with no message"
    where = f"in {report.when}: " if report.when != "call" else ""
    return where + (cause if len(cause) <= 300 else cause[:297] + "...")
