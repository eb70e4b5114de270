"""Two projects imitating real suites migrate with one command, pass offline under
llmreplay as they did under pytest-recording, and nothing they do reaches a proxy.

``fixtures/instrumentation_project`` is shaped after an OpenTelemetry OpenAI
instrumentation suite (``openai_client = OpenAI()`` with ``OPENAI_API_KEY=test_api_key``,
a module-scoped ``vcr_config`` filtering ``authorization``): function tools with a
tool-result round trip, the same request sent three times, streamed parallel tool calls
(sync and async), an image URL, an image downloaded with ``requests`` inside the test and
sent base64, and a metrics module whose ``vcr_config`` sets ``serializer="json"``,
``path_transformer=VCR.ensure_suffix(".json")``, ``decode_compressed_response``,
``record_on_exception=False`` and a ``before_record_request`` returning ``None`` for a
local collector (sent live in replay, as vcrpy does). ``fixtures/agent_project`` is shaped
after an agent framework's model tests: its own serializer registered as ``"yaml"`` in
``pytest_recording_configure`` (parsed JSON bodies, headers filtered), a custom ``method``
matcher, ``ignore_localhost``, anyio tests over openai and anthropic, parametrized ids, a
``default_cassette_name`` override sharing one cassette, and ``additional_matchers``.

Their cassettes were recorded by pytest-recording against a loopback upstream serving the
real API answers of ``fixtures/realworld`` (``scripts/record_projects.py``), then pointed
at the real hosts. Every run here has ``HTTP(S)_PROXY``/``ALL_PROXY`` set to a loopback
proxy that counts what reaches it (``NO_PROXY`` lists loopback, as CI runners set it), and
the projects' own conftest refuses any lookup or connection beyond loopback: a request
that left the replay tool would be counted, or fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.stacks.test_proxy import PROXY_VARIABLES, CountingProxy, proxy  # noqa: F401
from tests.test_migrate import HAS_RECORDING, ROOT, _env, _migrate, _pytest, _tree

PROJECTS = {
    # name: tests, cassettes, interactions, replayed (a shared cassette plays twice), live
    # (the collector's requests, which before_record_request leaves out of the cassette)
    "instrumentation_project": (8, 8, 12, 12, 1),
    "agent_project": (9, 8, 10, 11, 0),
}
OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED) (\S+)", re.MULTILINE)
_WORDS = {"PASSED": "pass", "FAILED": "fail", "ERROR": "fail", "SKIPPED": "skip"}


def _proxied(counting: CountingProxy, *, recording: bool) -> dict[str, str]:
    env = _env("", recording=recording)
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    for name in PROXY_VARIABLES:
        env[name] = counting.url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _outcomes(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each test's outcome, from pytest's ``-rA`` summary."""
    return {nodeid: _WORDS[word] for word, nodeid in OUTCOME.findall(done.stdout)}


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_a_real_suite_migrates_in_one_command_and_nothing_reaches_the_proxy(
    name: str,
    tmp_path: Path,
    proxy: CountingProxy,  # noqa: F811
) -> None:
    tests, cassettes, interactions, replayed, live = PROJECTS[name]
    folder = tmp_path / name
    shutil.copytree(ROOT / "fixtures" / name, folder, ignore=shutil.ignore_patterns("__pycache__"))
    before_tree = _tree(folder)
    if HAS_RECORDING:  # the project as it is: pytest-recording replays it
        before = _pytest(folder, _proxied(proxy, recording=True), "--record-mode=none", "-rA")
        assert before.returncode == 0, before.stdout + before.stderr
        assert set(_outcomes(before).values()) == {"pass"} and len(_outcomes(before)) == tests
        assert proxy.lines == []

    # The dry run: the whole report, measured on a staging copy, the project untouched.
    code, dry = _migrate(folder, _proxied(proxy, recording=True))
    assert code == 0, dry
    assert _tree(folder) == before_tree
    assert (dry["tests"], dry["marked"]) == (tests, tests)
    assert (len(dry["cassettes"]), dry["interactions"]) == (cassettes, interactions)
    assert dry["refused"] == [] and dry["errors"] == [] and dry["no_cassette"] == []
    assert dry["stale"] == [] and dry["failing"] == [] and dry["unfinished"] is None
    assert len(dry["predicted"]) == tests and set(dry["predicted"].values()) == {"pass"}
    assert proxy.lines == []

    # --write: one command, nothing by hand after it.
    code, written = _migrate(folder, _proxied(proxy, recording=True), "--write", "--no-run")
    assert code == 0 and written["cassettes"] == dry["cassettes"]

    # pytest-recording out of the way, as the README says: what the dry run predicted.
    after = _pytest(folder, _proxied(proxy, recording=False), "-p", "no:recording", "-rA")
    assert _outcomes(after) == dry["predicted"], after.stdout + after.stderr
    assert after.returncode == 0
    assert f"{replayed} replayed, 0 recorded, {live} live" in after.stdout
    assert "0 cassette(s) written" in after.stdout
    assert proxy.lines == []  # no CONNECT, no absolute-form request: nothing left


def test_the_projects_cassettes_name_only_the_real_hosts() -> None:
    """The recording's loopback upstream left no trace: replayed, the projects ask the real
    hosts, so only the replay tool stands between them and the network."""
    for name in PROJECTS:
        for path in (ROOT / "fixtures" / name).rglob("cassettes/**/*"):
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                assert "127.0.0.2" not in text, path
                hosts = set(re.findall(r"https?://([a-z0-9.-]+)", text))
                assert hosts <= {"api.openai.com", "api.anthropic.com", "upload.wikimedia.org",
                                 "source.unsplash.com"}, (path, hosts)  # fmt: skip
