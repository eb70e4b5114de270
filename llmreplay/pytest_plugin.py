"""pytest plugin: one cassette per test, recorded once and replayed ever after.

Loaded through the ``pytest11`` entry point in every pytest run of every project that
installs llmreplay, so this module imports only the standard library and pytest at the
top; openai and anthropic are imported only by the fixtures that need them.

Mode, first found wins: ``@pytest.mark.llmreplay(mode=...)`` > ``--llm-mode`` >
``LLMREPLAY_MODE`` > ini ``llm_mode`` > ``replay``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import openai

    from ._cassette import Cassette
    from ._faults import Injector

MARKER = (
    "llmreplay(mode=None, cassette=None, match_on=None, ignore=(), allow_repeats=False, "
    "faults=None, realtime=False): configure this test's llm_cassette"
)
_MAX_NAME = 120
_SETTINGS = pytest.StashKey[dict[str, Any]]()
_TOTALS = pytest.StashKey[dict[str, int]]()
_USED = pytest.StashKey[dict[str, set[tuple[str, int]]]]()
_PASSED = pytest.StashKey[bool]()
PLAYED_FILE = ".llmreplay-played.json"  # what `llmreplay prune` keeps
_COUNTS = ("played", "recorded", "live", "faults", "unused", "tokens", "written")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmreplay", "record and replay LLM API calls")
    group.addoption(
        "--llm-mode",
        dest="llm_mode",
        default=None,
        metavar="MODE",
        help="cassette mode for every test: replay (default), record, auto or live",
    )
    group.addoption(
        "--llm-fail-on-unused",
        action="store_true",
        default=False,
        help="fail a test that leaves recorded interactions of its cassette unplayed",
    )
    parser.addini("llm_mode", "default cassette mode (replay, record, auto, live)", default="")
    parser.addini("llm_cassette_dir", "folder of per-test cassettes", default="fixtures/cassettes")


def pytest_configure(config: pytest.Config) -> None:
    from ._errors import ConfigError
    from ._modes import Mode

    config.addinivalue_line("markers", MARKER)
    candidates = [
        (config.getoption("llm_mode"), "--llm-mode"),
        (os.environ.get("LLMREPLAY_MODE"), "the LLMREPLAY_MODE environment variable"),
        (config.getini("llm_mode") or None, "the llm_mode ini setting"),
        ("replay", "the default"),
    ]
    value, source = next((v, s) for v, s in candidates if v)
    try:
        mode = Mode.parse(value, source=source)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    directory = Path(config.getini("llm_cassette_dir"))
    config.stash[_SETTINGS] = {
        "mode": mode,
        "source": source,
        "dir": directory if directory.is_absolute() else config.rootpath / directory,
        "dir_text": str(directory),
        "fail_on_unused": config.getoption("llm_fail_on_unused"),
    }
    config.stash[_TOTALS] = dict.fromkeys(_COUNTS, 0)
    config.stash[_USED] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    return report


def pytest_report_header(config: pytest.Config) -> str:
    settings = config.stash[_SETTINGS]
    return f"llmreplay: mode={settings['mode'].value}, cassettes={settings['dir_text']}"


def _safe(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "-", name).strip("-.") or "test"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[: _MAX_NAME - 13]}-{digest}"
    return name


def cassette_path(item: pytest.Item, directory: Path) -> Path:
    """``<dir>/<test module path>/<Class.>test_name.msgpack``, safe on every OS."""
    try:
        module = Path(item.path).relative_to(item.config.rootpath).with_suffix("")
    except ValueError:  # a test file outside the rootdir: its name alone
        module = Path(Path(item.path).stem)
    parts = item.nodeid.split("::")[1:]
    return directory.joinpath(*map(_safe, module.parts)) / (_safe(".".join(parts)) + ".msgpack")


@pytest.fixture
def llm_cassette_config() -> dict[str, Any]:
    """Default ``llmreplay.cassette()`` options for tests in scope; override in a conftest."""
    return {}


@pytest.fixture
def llm_cassette(
    request: pytest.FixtureRequest, llm_cassette_config: dict[str, Any]
) -> Iterator[Cassette]:
    """This test's cassette; every httpx2 client used in the test goes through it."""
    from ._cassette import PLACEHOLDER_KEY, Cassette
    from ._errors import ConfigError
    from ._modes import Mode

    settings = request.config.stash[_SETTINGS]
    options = dict(llm_cassette_config)
    for marker in reversed(list(request.node.iter_markers("llmreplay"))):
        options.update(marker.kwargs)
    mode = options.pop("mode", None)
    mode = settings["mode"] if mode is None else Mode.parse(mode, source="the llmreplay marker")
    path = options.pop("cassette", None) or cassette_path(request.node, settings["dir"])
    if "llm_faults" in request.fixturenames:
        injector = request.getfixturevalue("llm_faults")
        options["faults"] = injector.use(options.get("faults"))
    allowed = set(inspect.signature(Cassette).parameters) - {"path", "mode"}
    for name in options:
        if name not in allowed:
            expected = "expected one of: mode, cassette, " + ", ".join(sorted(allowed))
            source = "@pytest.mark.llmreplay or llm_cassette_config"
            raise ConfigError("cassette option", name, source, expected)
    cassette = Cassette(Path(path), mode=mode, **options)
    with pytest.MonkeyPatch.context() as patch:
        if cassette.mode is Mode.REPLAY:
            # Replay needs no credentials, but SDK clients refuse to start without one.
            for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
                if not os.environ.get(name):
                    patch.setenv(name, PLACEHOLDER_KEY)
        with cassette:
            yield cassette
    _account(request.config, cassette, passed=request.node.stash.get(_PASSED, False))
    if settings["fail_on_unused"] and cassette.mode.reads and cassette.unused():
        unused = "\n".join(f"  {i.request.method} {i.request.url}" for i in cassette.unused())
        pytest.fail(
            f"{len(cassette.unused())} recorded interaction(s) in {cassette.path} were not "
            f"played (--llm-fail-on-unused):\n{unused}\nRe-record the cassette "
            "(--llm-mode=record) or remove them.",
            pytrace=False,
        )


def _account(config: pytest.Config, cassette: Cassette, *, passed: bool) -> None:
    from ._usage import tokens

    if passed and cassette.mode.value != "live":
        # Only a test that ran to the end says what its cassette needs.
        try:
            name = os.path.relpath(cassette.path, config.stash[_SETTINGS]["dir"])
        except ValueError:  # another drive on Windows: keep the absolute path
            name = str(Path(cassette.path).resolve())
        config.stash[_USED].setdefault(name, set()).update(cassette.used())
    stats, totals = cassette.stats, config.stash[_TOTALS]
    for name in ("played", "recorded", "live", "faults", "unused"):
        totals[name] += getattr(stats, name)
    totals["tokens"] += sum(tokens(item) for item in cassette.played)
    totals["written"] += 1 if cassette.writes else 0


@pytest.fixture
def llm_client(llm_cassette: Cassette) -> Iterator[openai.OpenAI]:
    """An ``openai.OpenAI`` client bound to this test's cassette."""
    client = llm_cassette.openai_client()
    yield client
    client.close()


@pytest.fixture
def async_llm_client(llm_cassette: Cassette) -> openai.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` client bound to this test's cassette."""
    import httpx2

    # A sync fixture cannot await a close, so upstream connections are not kept alive:
    # nothing is left open for the garbage collector to warn about.
    upstream = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_keepalive_connections=0))
    http_client = httpx2.AsyncClient(transport=llm_cassette.transport(upstream))
    return llm_cassette.async_openai_client(http_client=http_client)


@pytest.fixture
def llm_faults() -> Injector:
    """Fault injection for this test: ``llm_faults.use([RateLimit(), PASS])``, ``.verdict()``."""
    from ._faults import Injector

    return Injector()


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    used = {name: sorted(pairs) for name, pairs in config.stash[_USED].items()}
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand everything to the controller
        workeroutput["llmreplay"] = json.dumps({"totals": config.stash[_TOTALS], "used": used})
    elif used:
        record = config.stash[_SETTINGS]["dir"] / PLAYED_FILE
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(used, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    config = node.config
    sent = json.loads(node.workeroutput.get("llmreplay", "{}"))
    totals = config.stash[_TOTALS]
    for name, value in sent.get("totals", {}).items():
        totals[name] = totals.get(name, 0) + value
    for name, pairs in sent.get("used", {}).items():
        config.stash[_USED].setdefault(name, set()).update(tuple(p) for p in pairs)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    totals = config.stash[_TOTALS]
    if not any(totals.values()):
        return
    terminalreporter.write_sep("-", "llmreplay")
    terminalreporter.write_line(
        f"{totals['played']} replayed, {totals['recorded']} recorded, {totals['live']} live, "
        f"{totals['faults']} faults injected; {totals['written']} cassette(s) written"
    )
    if totals["unused"]:
        terminalreporter.write_line(
            f"{totals['unused']} recorded interaction(s) not played "
            "(stale? run with --llm-fail-on-unused to fail such tests)"
        )
    if totals["tokens"]:
        terminalreporter.write_line(f"{totals['tokens']:,} tokens not spent thanks to replay")
