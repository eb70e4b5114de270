"""pytest-recording's names, served by llmreplay when pytest-recording itself is not active.

Registered by ``llmreplay.pytest_plugin`` only when the ``pytest_recording`` plugin is not
installed, or is disabled with ``-p no:recording`` (both plugins define the same options and
fixtures). A suite written for pytest-recording then runs unchanged on llmreplay cassettes:

- ``@pytest.mark.vcr`` (extra cassettes as positional arguments, vcrpy options as keyword
  arguments) turns the test's cassette on, as ``@pytest.mark.llmreplay`` does;
- the user's ``vcr_config`` and ``vcr_cassette_dir`` fixtures are read (from a conftest or a
  ``-p`` plugin; llmreplay defines no default that could shadow them), and it provides
  ``default_cassette_name``, ``record_mode`` and ``vcr`` (a vcrpy-Cassette-like view of the
  test's cassette);
- ``--record-mode``, ``--block-network``, ``--allowed-hosts``, ``--disable-recording``, and
  the ``block_network`` marker;
- the ``pytest_recording_configure(config, vcr)`` hook, called once with a shim whose
  ``register_matcher`` makes a matcher name usable in ``match_on``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RECORD_MODE_CHOICES = ("none", "once", "new_episodes", "all", "rewrite")


class Hooks:
    """The hook pytest-recording declares, so conftests implementing it still load."""

    @pytest.hookspec(firstresult=False)
    def pytest_recording_configure(self, config: pytest.Config, vcr: Any) -> None:
        """Called once with a ``VCRShim``: register matchers, serializers, persisters."""


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("recording", "pytest-recording's options, served by llmreplay")
    group.addoption(
        "--record-mode",
        dest="vcr_record_mode",
        default=None,
        choices=RECORD_MODE_CHOICES,
        help="pytest-recording's mode: none=replay, once, new_episodes=auto, all=record, "
        "rewrite=record (--llm-mode wins when both are given)",
    )
    group.addoption(
        "--block-network",
        dest="vcr_block_network",
        action="store_true",
        default=False,
        help="pytest-recording's block: every connection refused, loopback included, but "
        "--allowed-hosts (tests recording through a vcr marker are not blocked)",
    )
    group.addoption(
        "--allowed-hosts",
        dest="vcr_allowed_hosts",
        default=None,
        help="regular expressions of hosts --block-network and the block_network marker allow",
    )
    group.addoption(
        "--disable-recording",
        dest="vcr_disable_recording",
        action="store_true",
        default=False,
        help="no cassettes at all: every test talks to the network (mode live)",
    )


def configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vcr(*cassettes, **vcr_options): this test's cassette")
    config.addinivalue_line(
        "markers", "block_network(allowed_hosts=None): refuse connections, loopback included"
    )


_SHIM = pytest.StashKey[Any]()


def shim(config: pytest.Config) -> Any:
    """The ``VCRShim`` the conftests' ``pytest_recording_configure`` hooks filled in (the
    hook runs once per session, on first use)."""
    from ._vcr_compat import VCRShim

    made = config.stash.get(_SHIM, None)
    if made is None:
        made = config.stash[_SHIM] = VCRShim()
        config.hook.pytest_recording_configure(config=config, vcr=made)
    return made


@pytest.fixture
def default_cassette_name(request: pytest.FixtureRequest) -> str:
    """pytest-recording's name for the test's cassette: ``Class.test`` or ``test``."""
    name = request.node.name
    return f"{request.cls.__name__}.{name}" if request.cls is not None else str(name)


@pytest.fixture(scope="session")
def record_mode(request: pytest.FixtureRequest) -> str:
    """The session's mode in pytest-recording's words."""
    from .pytest_plugin import session_settings

    mode = str(session_settings(request.config)["mode"].value)
    return {"replay": "none", "auto": "new_episodes", "record": "all"}.get(mode, mode)


@pytest.fixture
def vcr(request: pytest.FixtureRequest, record_mode: str) -> Iterator[Any]:
    """The test's cassette as vcrpy's ``Cassette`` reads, or ``None`` for a test without
    one (as pytest-recording's fixture)."""
    from ._vcr_compat import CassetteView

    node = request.node
    if node.get_closest_marker("vcr") is None and node.get_closest_marker("llmreplay") is None:
        yield None
        return
    from .pytest_plugin import optional_fixture

    options = dict(optional_fixture(request, "vcr_config", {}))
    for marker in reversed(list(node.iter_markers("vcr"))):
        options.update(marker.kwargs)
    cassette = request.getfixturevalue("llm_cassette")
    yield CassetteView(cassette, record_mode, bool(options.get("decode_compressed_response")))


@pytest.fixture(autouse=True)
def _llmreplay_block_network(request: pytest.FixtureRequest) -> Iterator[None]:
    """pytest-recording's network block, with its semantics: for a test marked
    ``block_network`` (or every test, with ``--block-network``), every connection is
    refused, loopback included, unless its host matches ``allowed_hosts`` (the marker's,
    else ``--allowed-hosts``, else ``vcr_config``'s); a test with a ``vcr`` marker is not
    blocked when its record mode is not ``none`` (it may be recording)."""
    node = request.node
    marker = node.get_closest_marker("block_network")
    if marker is None and not request.config.getoption("vcr_block_network", False):
        yield
        return
    from ._guard import PatternBlock
    from .pytest_plugin import optional_fixture

    config = dict(optional_fixture(request, "vcr_config", {}))
    markers = list(node.iter_markers("vcr"))
    if markers:
        mode = request.config.getoption("vcr_record_mode", None)
        if mode is None:
            merged = dict(config)
            for vcr_marker in reversed(markers):  # the closest last, as merge_kwargs
                merged.update(vcr_marker.kwargs)
            mode = merged.get("record_mode", "none")
        if mode != "none":
            yield
            return
    allowed = (
        (marker.kwargs.get("allowed_hosts") if marker is not None else None)
        or request.config.getoption("vcr_allowed_hosts", None)
        or config.get("allowed_hosts")
    )
    if isinstance(allowed, str):
        allowed = allowed.split(",")
    block = PatternBlock(allowed, where=lambda: str(node.nodeid))
    block.install()
    try:
        yield
    finally:
        block.uninstall()


def module_dir(request: pytest.FixtureRequest) -> Path | None:
    """The user's ``vcr_cassette_dir`` fixture, if one is defined (a conftest or a ``-p``
    plugin): that module's cassette folder. Without one, llmreplay's layout."""
    from .pytest_plugin import optional_fixture

    value = optional_fixture(request, "vcr_cassette_dir", None)
    return None if value is None else Path(value)
