"""pytest plugin: one cassette per test, recorded once and replayed ever after, and sealed.

Loaded through the ``pytest11`` entry point in every pytest run of every project that
installs llmreplay, so this module imports only the standard library and pytest at the
top; openai and anthropic are imported only by the fixtures that need them.

- A test gets its cassette from the ``llm_cassette`` fixture (or ``llm_client``...) or from
  the ``@pytest.mark.llmreplay`` marker alone.
- Sealed: outside every cassette, a request that looks like an LLM API call is refused in
  every mode but ``live`` (``Guard``); ``--llm-block-network`` refuses every non-loopback
  socket connection besides.
- Mode, first found wins: marker > ``--llm-mode`` > ``LLMREPLAY_MODE`` >
  ``llm_cassette_config`` > ini ``llm_mode`` > ``replay``. A miss names the mode's source.
- Paths never depend on the current directory: the cassette folder is anchored at the
  project root (the ini file's folder, else the nearest folder above the test with
  ``pyproject.toml``, ``setup.py``, ``setup.cfg`` or ``.git``), and a relative marker
  ``cassette=`` at the cassette folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._names import cassette_file

if TYPE_CHECKING:
    import openai

    from ._cassette import Cassette
    from ._faults import Injector

MARKER = (
    "llmreplay(mode=None, cassette=None (a name, or a list: the first recorded into, all read), "
    "match_on=None, ignore=(), allow_repeats=False, "
    "faults=None, virtual_clock=True, realtime=False, record_errors=False, normalise=()): "
    "this test's cassette "
    "(the marker alone turns it on)"
)
_SETTINGS = pytest.StashKey[dict[str, Any]]()
_TOTALS = pytest.StashKey[dict[str, int]]()
_USED = pytest.StashKey[dict[str, dict[str, set[tuple[str, int]]]]]()
_PASSED = pytest.StashKey[bool]()
PLAYED_DIR = ".llmreplay"  # beside the cassettes, with a .gitignore that ignores it all
PLAYED_FILE = "played.json"  # what `llmreplay prune` keeps
_COUNTS = (
    "played",
    "recorded",
    "live",
    "faults",
    "unused",
    "tokens",
    "written",
    "refused",
    "missed",
    "dropped",
)
_SWALLOWED = pytest.StashKey[list[str]]()
_BOOL_OPTIONS = (
    "allow_repeats",
    "realtime",
    "record_errors",
    "ignore_localhost",
    "virtual_clock",
    "record_on_exception",
)
_NAMES_OPTIONS = (
    "match_on",
    "ignore",
    "normalise",
    "filter_headers",
    "filter_query",
    "filter_post_data",
    "ignore_hosts",
)
_NAMES_EXPECTED = {
    "match_on": "expected a list of names (or functions f(r1, r2))",
    "filter_headers": "expected a list of names (or (name, replacement) pairs)",
    "filter_query": "expected a list of names (or (name, replacement) pairs)",
    "filter_post_data": "expected a list of names (or (name, replacement) pairs)",
}


def _name_like(option: str, value: Any) -> bool:
    if isinstance(value, str):
        return True
    if option == "match_on":
        return callable(value)
    if option.startswith("filter_"):
        return isinstance(value, tuple | list) and len(value) == 2 and isinstance(value[0], str)
    return False


def vcr_compat(pluginmanager: pytest.PytestPluginManager) -> bool:
    """Whether llmreplay serves pytest-recording's names: when pytest-recording is not
    installed, or is disabled with ``-p no:recording``."""
    import importlib.util

    return importlib.util.find_spec("pytest_recording") is None or pluginmanager.is_blocked(
        "recording"
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    if vcr_compat(pluginmanager):
        from . import _pytest_vcr

        pluginmanager.add_hookspecs(_pytest_vcr.Hooks)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if vcr_compat(pluginmanager):
        from . import _pytest_vcr

        _pytest_vcr.addoption(parser)
    group = parser.getgroup("llmreplay", "record and replay LLM API calls")
    group.addoption(
        "--llm-mode",
        dest="llm_mode",
        default=None,
        metavar="MODE",
        help="cassette mode for every test: replay (default), record, auto, once or live",
    )
    group.addoption(
        "--llm-fail-on-unused",
        action="store_true",
        default=False,
        help="fail a passing test that leaves recorded interactions of its cassette unplayed",
    )
    group.addoption(
        "--llm-block-network",
        action="store_true",
        default=None,
        help="refuse every socket connection to a host not in --llm-allow-hosts",
    )
    group.addoption(
        "--llm-allow-hosts",
        dest="llm_allow_hosts",
        default=None,
        metavar="HOSTS",
        help="comma-separated hosts, IPs or networks --llm-block-network allows "
        "(default: localhost,127.0.0.0/8,::1)",
    )
    parser.addini(
        "llm_mode", "default cassette mode (replay, record, auto, once, live)", default=""
    )
    from ._layout import DEFAULT_CASSETTE_DIR

    parser.addini("llm_cassette_dir", "folder of per-test cassettes", default=DEFAULT_CASSETTE_DIR)
    parser.addini(
        "llm_block_network", "refuse non-allowed socket connections", type="bool", default=False
    )
    parser.addini("llm_allow_hosts", "hosts --llm-block-network allows", type="args", default=[])
    parser.addini(
        "llm_guard",
        "refuse LLM API calls made outside every cassette (in every mode but live)",
        type="bool",
        default=True,
    )


def _session_mode(config: pytest.Config) -> tuple[Any, str]:
    """The mode from the command line, environment or ini, and where it came from."""
    from ._errors import ConfigError
    from ._modes import Mode
    from ._vcr_compat import RECORD_MODES

    flag = config.getoption("llm_mode")
    vcr_mode = config.getoption("vcr_record_mode", None)
    candidates = [
        (flag, "--llm-mode"),
        (
            "live" if config.getoption("vcr_disable_recording", False) else None,
            "--disable-recording",
        ),
        (RECORD_MODES.get(vcr_mode) if vcr_mode else None, "--record-mode"),
        (os.environ.get("LLMREPLAY_MODE") or None, "the LLMREPLAY_MODE environment variable"),
        (config.getini("llm_mode") or None, "the llm_mode ini setting"),
        ("replay", "the default"),
    ]
    value, source = next((v, s) for v, s in candidates if v is not None)
    try:
        return Mode.parse(value, source=source), source
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    from . import _patch
    from ._guard import LOOPBACK, Guard, SocketBlock

    config.addinivalue_line("markers", MARKER)
    compat = vcr_compat(config.pluginmanager)
    if compat:
        from . import _pytest_vcr

        _pytest_vcr.configure(config)
        if not config.pluginmanager.has_plugin("llmreplay-vcr"):
            config.pluginmanager.register(_pytest_vcr, "llmreplay-vcr")
    mode, source = _session_mode(config)
    directory = Path(config.getini("llm_cassette_dir"))
    root = config.inipath.parent if config.inipath is not None else None
    settings: dict[str, Any] = {
        "mode": mode,
        "source": source,
        "dir": directory,
        "root": root,
        "dir_text": str(directory),
        "fail_on_unused": config.getoption("llm_fail_on_unused"),
        "where": "",
        "guard": None,
        "block": None,
        "vcr": compat,
    }
    config.stash[_SETTINGS] = settings
    config.stash[_TOTALS] = dict.fromkeys(_COUNTS, 0)
    config.stash[_USED] = {}
    config.stash[_SWALLOWED] = []
    if mode.value != "live":
        # SDK clients made at import time (a module-level client) start without a key too;
        # the placeholder is never sent upstream (recording without a key is refused).
        from ._cassette import PLACEHOLDER_KEY

        settings["placeholders"] = [
            name for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY") if not os.environ.get(name)
        ]
        for name in settings["placeholders"]:
            os.environ[name] = PLACEHOLDER_KEY
    sealed = mode.value != "live" and bool(config.getini("llm_guard"))
    if sealed or _patch.guarded():  # a live run inside a sealed one must unseal
        guard = Guard(
            enabled=sealed,
            mode=mode.value,
            hint=(
                "Give the test a cassette (the llm_cassette or llm_client fixture, or "
                "@pytest.mark.llmreplay) and record it with --llm-mode=record; or mark it "
                '@pytest.mark.llmreplay(mode="live") to let it reach the network unrecorded.'
            ),
        )
        settings["guard"] = guard if sealed else None
        settings["pushed"] = guard
        _patch.push_guard(guard)
    block = config.getoption("llm_block_network")
    # (pytest-recording's --block-network is its own, per test: _pytest_vcr)
    if block if block is not None else config.getini("llm_block_network"):
        hosts = config.getoption("llm_allow_hosts")
        allow = hosts.split(",") if hosts is not None else config.getini("llm_allow_hosts")
        settings["block"] = SocketBlock(allow or LOOPBACK, where=lambda: settings["where"])
        settings["block"].install()


def session_settings(config: pytest.Config) -> dict[str, Any]:
    """The plugin's settings for this session (mode and its source, folders, guards)."""
    return config.stash[_SETTINGS]


def pytest_unconfigure(config: pytest.Config) -> None:
    from . import _patch

    settings = config.stash.get(_SETTINGS, None)
    if settings is None:
        return
    if settings.get("pushed") is not None:
        _patch.pop_guard(settings["pushed"])
    from ._cassette import PLACEHOLDER_KEY

    for name in settings.get("placeholders", []):
        if os.environ.get(name) == PLACEHOLDER_KEY:
            del os.environ[name]
    if settings["block"] is not None:
        settings["block"].uninstall()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    settings = item.config.stash[_SETTINGS]
    settings["where"] = item.nodeid
    if settings["guard"] is not None:
        settings["guard"].where = item.nodeid
    try:
        return (yield)
    finally:
        settings["where"] = ""
        if settings["guard"] is not None:
            settings["guard"].where = ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    from ._errors import CassetteMiss, ConfigError, RequestRefused

    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    excinfo = call.excinfo
    if (
        report.failed
        and excinfo is not None
        and isinstance(excinfo.value, CassetteMiss | RequestRefused | ConfigError)
        and not item.config.getoption("fulltrace", False)
    ):
        # The message says it all: show the test's own line, not ~90 lines of SDK and
        # llmreplay frames (--full-trace shows them).
        report.longrepr = _short_failure(item, excinfo)
    return report


def _short_failure(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    # The message first, so pytest's one-line summary shows it; then where it happened.
    exc = excinfo.value
    lines = [f"llmreplay.{type(exc).__name__}: {exc}"]
    path = Path(str(item.path))
    own = [entry for entry in excinfo.traceback if Path(str(entry.path)) == path]
    if own:
        entry = own[-1]
        lines.append(f"{item.location[0]}:{entry.lineno + 1}: in {entry.name}")
        statement = str(entry.statement).strip().splitlines()
        lines.extend("    " + line for line in statement[:3])
    return "\n".join(lines)


def pytest_report_header(config: pytest.Config) -> str:
    settings = config.stash[_SETTINGS]
    sealed = "sealed" if settings["guard"] is not None else "not sealed (llm_guard off)"
    if settings["block"] is not None:
        sealed += ", network blocked"
    return (
        f"llmreplay: mode={settings['mode'].value} (from {settings['source']}), "
        f"cassettes={settings['dir_text']}, {sealed}"
    )


# -- where cassettes live ------------------------------------------------------------------


def project_cassette_name(request: pytest.FixtureRequest) -> str | None:
    """The value of a project's own ``default_cassette_name`` fixture, which under
    pytest-recording names the test's cassette file; None where the fixture in force is
    pytest-recording's or llmreplay's (their names are the plugin's own)."""
    try:
        definitions = request._fixturemanager.getfixturedefs("default_cassette_name", request.node)
    except Exception:  # pragma: no cover - pytest's private API moved: behave as before
        return None
    if not definitions:
        return None
    module = getattr(definitions[-1].func, "__module__", "") or ""
    if module.startswith(("pytest_recording", "llmreplay")):
        return None
    return str(request.getfixturevalue("default_cassette_name"))


def project_root(item: pytest.Item) -> Path:
    """The folder cassette paths are anchored at, whatever the current directory is."""
    settings = item.config.stash[_SETTINGS]
    if settings["root"] is not None:
        return Path(settings["root"])
    from ._layout import nearest_root

    start = Path(str(item.path)).resolve().parent
    roots = settings.setdefault("roots", {})  # one walk up per test folder and session
    if start not in roots:
        roots[start] = nearest_root(start)
    return Path(roots[start])


def cassette_dir(item: pytest.Item) -> Path:
    """The folder of per-test cassettes for ``item`` (ini ``llm_cassette_dir``)."""
    directory = Path(item.config.stash[_SETTINGS]["dir"])
    return directory if directory.is_absolute() else project_root(item) / directory


def cassette_path(item: pytest.Item, directory: Path) -> Path:
    """``<dir>/<test module path>/<Class.>test_name.msgpack``, safe on every OS."""
    try:
        module = Path(item.path).resolve().relative_to(project_root(item)).with_suffix("")
    except ValueError:  # a test file outside the project root: its name alone
        module = Path(Path(item.path).stem)
    parts = item.nodeid.split("::")[1:]
    return cassette_file(directory, module, ".".join(parts))


# -- options from the marker and llm_cassette_config ---------------------------------------


def _checked(options: dict[str, Any], source: str) -> dict[str, Any]:
    """Validated cassette options: wrong names or types are errors that list what is
    accepted; a single string where names are expected means that one name."""
    import inspect

    from ._cassette import Cassette
    from ._errors import ConfigError

    allowed = set(inspect.signature(Cassette).parameters) - {"path", "mode", "mode_source"}
    allowed -= {"storage", "rewrite", "extra"}
    for name, value in options.items():
        if name == "cassette" and isinstance(value, list | tuple):
            # Several: the first is the test's (recordings go there), the rest are read too.
            if not value or not all(isinstance(v, str | os.PathLike) for v in value):
                raise ConfigError(name, value, source, "expected a name or a list of names")
            options[name] = list(value)
        elif name in ("mode", "cassette"):
            if value is not None and not isinstance(value, str | os.PathLike):
                expected = "expected a string" if name == "mode" else "expected a name or a list"
                raise ConfigError(name, value, source, expected)
        elif name not in allowed:
            expected = "expected one of: cassette, mode, " + ", ".join(sorted(allowed))
            raise ConfigError("cassette option", name, source, expected)
        elif name in _BOOL_OPTIONS and not isinstance(value, bool):
            raise ConfigError(name, value, source, "expected True or False")
        elif name in _NAMES_OPTIONS and value is not None:
            if isinstance(value, str):
                options[name] = value = (value,)
            if not all(_name_like(name, v) for v in value):
                raise ConfigError(name, value, source, _NAMES_EXPECTED.get(name, "a list of names"))
    return options


def _marker_options(item: pytest.Item) -> dict[str, Any]:
    from ._errors import ConfigError

    options: dict[str, Any] = {}
    for marker in reversed(list(item.iter_markers("llmreplay"))):
        if marker.args:
            raise ConfigError(
                "llmreplay marker argument",
                marker.args[0],
                "@pytest.mark.llmreplay(...)",
                "the marker takes keyword arguments only, e.g. "
                '@pytest.mark.llmreplay(mode="record", cassette="shared.msgpack")',
            )
        options.update(marker.kwargs)
    return _checked(options, "@pytest.mark.llmreplay")


def _vcr_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """pytest-recording's ``vcr_config``, ``@pytest.mark.vcr`` and ``vcr_cassette_dir``,
    read as llmreplay options."""
    from . import _pytest_vcr
    from ._vcr_compat import cassette_options

    shim = _pytest_vcr.shim(request.config)
    raw_config = dict(optional_fixture(request, "vcr_config", {}))
    ignored = request.config.stash[_SETTINGS].setdefault("vcr_ignored", set())
    if shim.persisters:  # vcr.register_persister(...) in pytest_recording_configure
        ignored.add("register_persister")
    config, config_mode = cassette_options(raw_config, "vcr_config", shim.matchers, ignored)
    markers = list(request.node.iter_markers("vcr"))  # the closest first
    merged: dict[str, Any] = {}
    for marker in reversed(markers):
        merged.update(marker.kwargs)
    if "additional_matchers" in merged and "match_on" not in merged and "match_on" in raw_config:
        # vcrpy merges vcr_config and the marker first: appended to vcr_config's match_on
        merged = {"match_on": raw_config["match_on"], **merged}
    marker_options, marker_mode = cassette_options(
        merged, "@pytest.mark.vcr", shim.matchers, ignored
    )
    return {
        "config": _checked(config, "vcr_config"),
        "config_mode": config_mode,
        "marker": _checked(marker_options, "@pytest.mark.vcr"),
        "marker_mode": marker_mode,
        "extra": [name for marker in markers for name in marker.args],
        "dir": _pytest_vcr.module_dir(request),
    }


def _extra_path(base: Path, name: Any) -> Path:
    """An extra cassette named in ``@pytest.mark.vcr("a.yaml")``: relative to the test's
    cassette folder; a YAML/JSON name means the msgpack file ``llmreplay migrate`` wrote."""
    path = Path(os.fspath(name))
    if path.suffix in (".yaml", ".yml", ".json"):
        path = path.with_suffix(".msgpack")
    return path if path.is_absolute() else base / path


def optional_fixture(request: pytest.FixtureRequest, name: str, default: Any) -> Any:
    """The value of fixture ``name`` where the user defines one (a conftest, or a plugin
    loaded with ``-p``), else ``default``. llmreplay defines no default fixture for these
    names: one defined by a plugin would shadow a ``-p`` plugin's, registered earlier."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return default


@pytest.fixture(autouse=True)
def _llmreplay_marker(request: pytest.FixtureRequest) -> None:
    """The marker alone turns the test's cassette on, as the fixture does."""
    node = request.node
    vcr = request.config.stash[_SETTINGS]["vcr"] and node.get_closest_marker("vcr") is not None
    if vcr or node.get_closest_marker("llmreplay") is not None:
        request.getfixturevalue("llm_cassette")


@pytest.fixture
def llm_cassette(
    request: pytest.FixtureRequest,
) -> Iterator[Cassette]:
    """This test's cassette; every captured client used in the test goes through it."""
    from ._cassette import PLACEHOLDER_KEY, Cassette
    from ._modes import Mode

    settings = request.config.stash[_SETTINGS]
    node = request.node
    vcr = _vcr_settings(request) if settings["vcr"] else None
    # llm_cassette_config: default options for the tests in scope, defined by the user in a
    # conftest.py or a -p plugin (like pytest-recording's vcr_config).
    user_config = optional_fixture(request, "llm_cassette_config", {})
    config_options = _checked(dict(user_config), "llm_cassette_config")
    marker = _marker_options(node)
    mode_value, mode_source = settings["mode"], settings["source"]
    if marker.get("mode") is not None:
        mode_value, mode_source = marker["mode"], "the llmreplay marker"
    elif vcr is not None and vcr["marker_mode"] is not None:
        mode_value, mode_source = vcr["marker_mode"], "the vcr marker"
    elif settings["source"] in ("the llm_mode ini setting", "the default"):
        if config_options.get("mode") is not None:
            mode_value, mode_source = config_options["mode"], "llm_cassette_config"
        elif vcr is not None and vcr["config_mode"] is not None:
            mode_value, mode_source = vcr["config_mode"], "vcr_config"
    if vcr is not None:
        config_options = {**vcr["config"], **config_options}
        marker = {**vcr["marker"], **marker}
    options = {**config_options, **marker}
    options.pop("mode", None)
    directory = cassette_dir(node)
    named = options.pop("cassette", None)
    also: list[Path] = []
    if isinstance(named, list):  # cassette=[a, b]: a is this test's, b is read as well
        named, *rest = named
        also = [p if p.is_absolute() else directory / p for p in map(Path, rest)]
    if named is None:
        path = cassette_path(node, directory)
        own_name = project_cassette_name(request) if vcr is not None else None
        if own_name is not None:  # the project's default_cassette_name names the file
            path = cassette_file(path.parent, (), own_name)
        if vcr is not None and vcr["dir"] is not None:  # a vcr_cassette_dir override
            path = vcr["dir"] / path.name
    else:
        path = Path(os.fspath(named))
        path = path if path.is_absolute() else directory / path
    if vcr is not None and vcr["extra"]:
        base = vcr["dir"] if vcr["dir"] is not None else path.parent
        options["extra"] = [_extra_path(base, name) for name in vcr["extra"]]
    if also:
        options["extra"] = [*options.get("extra", ()), *also]
    if "llm_faults" in request.fixturenames:
        injector = request.getfixturevalue("llm_faults")
        options["faults"] = injector.use(options.get("faults"))
    cassette = Cassette(
        path,
        mode=Mode.parse(mode_value, source=mode_source),
        mode_source=mode_source,
        rewrite=named is None,  # a test's own cassette holds exactly what it did last
        **options,
    )
    with pytest.MonkeyPatch.context() as patch:
        if cassette.mode is not Mode.LIVE:
            # SDK clients refuse to start without a key, and replay needs none; the
            # placeholder is never sent upstream (recording without a key is refused).
            for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
                if not os.environ.get(name):
                    patch.setenv(name, PLACEHOLDER_KEY)
        with cassette:
            yield cassette
            cassette.failed = not node.stash.get(_PASSED, False)  # record_on_exception
    passed = node.stash.get(_PASSED, False)
    _account(request.config, cassette, directory, passed=passed)
    if passed and settings["fail_on_unused"] and cassette.mode.reads and cassette.unused():
        unused = "\n".join(f"  {i.request.method} {i.request.url}" for i in cassette.unused())
        cure = (
            f'pytest "{node.nodeid}" --llm-mode=record'
            if named is None
            else f"llmreplay prune {directory} (after a passing run)"
        )
        pytest.fail(
            f"{len(cassette.unused())} recorded interaction(s) in {cassette.path} were not "
            f"played (--llm-fail-on-unused):\n{unused}\nTo drop them: {cure}",
            pytrace=False,
        )


def _account(config: pytest.Config, cassette: Cassette, directory: Path, *, passed: bool) -> None:
    from ._usage import tokens

    if passed and cassette.mode.value != "live":
        # Only a test that ran to the end says what its cassette needs.
        base = directory if cassette.path.is_relative_to(directory) else cassette.path.parent
        name = cassette.path.relative_to(base).as_posix()
        config.stash[_USED].setdefault(str(base), {}).setdefault(name, set()).update(
            cassette.used()
        )
    stats, totals = cassette.stats, config.stash[_TOTALS]
    for name in ("played", "recorded", "live", "faults", "unused", "missed", "dropped"):
        totals[name] += getattr(stats, name)
    if passed and stats.missed:  # a miss the code under test caught: not silent here
        config.stash[_SWALLOWED].append(f"{cassette.path} ({stats.missed})")
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


# -- the end of the run: played lists, xdist, summary --------------------------------------


def write_played(base: Path, used: dict[str, Any]) -> Path:
    """Write ``<base>/.llmreplay/played.json`` (with a ``.gitignore`` so that
    ``git add`` of the cassette folder never picks it up); returns its path."""
    folder = base / PLAYED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by llmreplay: never commit this folder\n*\n")
    record = folder / PLAYED_FILE
    record.write_text(json.dumps(used, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    settings = config.stash[_SETTINGS]
    if settings["guard"] is not None:
        config.stash[_TOTALS]["refused"] += settings["guard"].refused
    used = {
        base: {name: sorted(pairs) for name, pairs in names.items()}
        for base, names in config.stash[_USED].items()
    }
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand everything to the controller
        workeroutput["llmreplay"] = json.dumps(
            {
                "totals": config.stash[_TOTALS],
                "used": used,
                "swallowed": config.stash[_SWALLOWED],
                "vcr_ignored": sorted(settings.get("vcr_ignored", ())),
            }
        )
        return
    for base, names in used.items():
        write_played(Path(base), names)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    config = node.config
    sent = json.loads(node.workeroutput.get("llmreplay", "{}"))
    totals = config.stash[_TOTALS]
    for name, value in sent.get("totals", {}).items():
        totals[name] = totals.get(name, 0) + value
    config.stash[_SWALLOWED].extend(sent.get("swallowed", []))
    config.stash[_SETTINGS].setdefault("vcr_ignored", set()).update(sent.get("vcr_ignored", []))
    for base, names in sent.get("used", {}).items():
        for name, pairs in names.items():
            config.stash[_USED].setdefault(base, {}).setdefault(name, set()).update(
                tuple(p) for p in pairs
            )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    totals = config.stash[_TOTALS]
    ignored = sorted(config.stash[_SETTINGS].get("vcr_ignored", ()))
    if not any(totals.values()) and not ignored:
        return
    terminalreporter.write_sep("-", "llmreplay")
    if ignored:
        from ._vcr_compat import IGNORED

        terminalreporter.write_line(
            "vcrpy options with no effect under llmreplay: "
            + "; ".join(f"{name} ({IGNORED[name]})" for name in ignored)
        )
    terminalreporter.write_line(
        f"{totals['played']} replayed, {totals['recorded']} recorded, {totals['live']} live, "
        f"{totals['faults']} faults injected; {totals['written']} cassette(s) written"
    )
    if totals["refused"]:
        terminalreporter.write_line(
            f"{totals['refused']} LLM call(s) refused outside every cassette "
            "(give those tests a cassette: llm_cassette fixture or @pytest.mark.llmreplay)"
        )
    swallowed = config.stash[_SWALLOWED]
    if totals["missed"]:
        caught = f"; {len(swallowed)} passing test(s) caught it themselves:" if swallowed else ""
        terminalreporter.write_line(
            f"{totals['missed']} request(s) missed their cassette (CassetteMiss){caught}"
        )
        for where in swallowed[:20]:
            terminalreporter.write_line(f"  {where}")
    if totals["dropped"]:
        terminalreporter.write_line(
            f"{totals['dropped']} upstream error answer(s) (429, 5xx, cut streams) not stored: "
            "the retry's answer is; record_errors=True keeps them"
        )
    if totals["unused"]:
        terminalreporter.write_line(
            f"{totals['unused']} recorded interaction(s) not played "
            "(stale? run with --llm-fail-on-unused to fail such tests)"
        )
    if totals["tokens"]:
        terminalreporter.write_line(f"{totals['tokens']:,} tokens not spent thanks to replay")


# -- llm_proxy: the same per-test cassettes for subprocesses, through `llmreplay serve` -----

if TYPE_CHECKING:
    from ._serve_run import InProcessServer, ProxyRoute

# Environment variables the SDKs read for their base URL, and the route each one gets.
PROXY_ENV = {
    "OPENAI_BASE_URL": "openai/v1",
    "ANTHROPIC_BASE_URL": "anthropic",
    "GROQ_BASE_URL": "groq",
}


@pytest.fixture(scope="session")
def llm_proxy_upstreams() -> dict[str, str]:
    """Routes ``llm_proxy`` adds or replaces (``{"openai": URL}``); override in a conftest."""
    return {}


@pytest.fixture(scope="session")
def llm_proxy_server(llm_proxy_upstreams: dict[str, str]) -> Iterator[InProcessServer]:
    """The session's in-process ``llmreplay serve`` (uvicorn, a free loopback port)."""
    from ._serve import ServeApp
    from ._serve_routes import parse_upstreams
    from ._serve_run import InProcessServer

    routes = [f"{name}={url}" for name, url in llm_proxy_upstreams.items()]
    app = ServeApp(upstreams=parse_upstreams(routes, source="the llm_proxy_upstreams fixture"))
    running = InProcessServer(app)  # in-process clients calling it pass the other cassettes
    yield running
    running.stop()


@pytest.fixture
def llm_proxy(llm_proxy_server: InProcessServer, llm_cassette: Cassette) -> Iterator[ProxyRoute]:
    """This test's cassette as an HTTP endpoint; subprocesses find it through OPENAI_BASE_URL."""
    import secrets

    from ._serve_run import ProxyRoute

    token = secrets.token_hex(6)
    llm_proxy_server.app.register(token, llm_cassette)
    route = ProxyRoute(f"{llm_proxy_server.url}/_c/{token}", llm_cassette, PROXY_ENV)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in route.env.items():
                patch.setenv(name, value)
            yield route
    finally:
        llm_proxy_server.app.unregister(token)
