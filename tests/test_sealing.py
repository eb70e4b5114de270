"""Sealed by default: no test reaches an LLM unseen, no error or stale answer is kept.

Each test drives the plugin as a user would (pytester) against the loopback server and
counts what the server received and what was written to disk.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import llmreplay
from tests.helpers import fake_key
from tests.server import LoopbackServer


def _cassettes(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.msgpack") if ".llmreplay" not in p.parts)


def test_a_forgotten_fixture_is_refused_not_sent(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_forgot="""
        import app

        def test_forgot():
            assert app.ask("hi") == "echo: hi"
        """
    )
    for mode in ("replay", "record", "auto"):
        result = pytester.runpytest(f"--llm-mode={mode}")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*RequestRefused*127.0.0.1/v1/chat/completions in test_forgot.py::test_forgot*"
                "outside every cassette*",
                "*1 LLM call(s) refused outside every cassette*",
            ]
        )
    assert upstream.requests == []
    # Deliberately live is a choice a test states, and then it reaches the server.
    pytester.runpytest("--llm-mode=live").assert_outcomes(passed=1)
    assert len(upstream.requests) == 1
    assert _cassettes(pytester.path) == []


def test_other_http_traffic_is_untouched_by_the_guard(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_other=f"""
        import httpx2

        def test_other():
            with httpx2.Client() as client:
                assert client.get({upstream.origin + "/health"!r}).status_code == 404
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert [seen.path for seen in upstream.requests] == ["/health"]


def test_the_marker_alone_turns_the_cassette_on(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_marked="""
        import pytest
        import app

        pytestmark = pytest.mark.llmreplay()

        def test_marked():
            assert app.ask("hi") == "echo: hi"
        """
    )
    missing = pytester.runpytest()
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*CassetteMiss*the cassette file does not exist yet*"])
    assert upstream.requests == []
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    assert len(upstream.requests) == 1
    (path,) = _cassettes(pytester.path)
    assert path.name == "test_marked.msgpack"
    upstream.stop()
    replayed = pytester.runpytest()
    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines(["1 replayed, 0 recorded, 0 live*"])
    assert len(upstream.requests) == 1


def test_recording_without_a_key_fails_at_once_and_auto_replays_without_one(
    pytester: pytest.Pytester, upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_keyless="""
        import app

        def test_keyless(llm_cassette):
            assert app.ask("hi") == "echo: hi"
        """
    )
    monkeypatch.delenv("OPENAI_API_KEY")
    refused = pytester.runpytest("--llm-mode=record")
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*no API key is set*Set OPENAI_API_KEY to record it*"])
    assert upstream.requests == [] and _cassettes(pytester.path) == []

    monkeypatch.setenv("OPENAI_API_KEY", fake_key("sk-"))
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    monkeypatch.delenv("OPENAI_API_KEY")
    # auto needs no key for what is recorded: nothing goes upstream.
    pytester.runpytest("--llm-mode=auto").assert_outcomes(passed=1)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_a_retryable_error_is_never_recorded(
    pytester: pytest.Pytester, upstream: LoopbackServer, status: int
) -> None:
    pytester.makepyfile(
        test_flaky="""
        import app

        def test_flaky(llm_cassette):
            assert app.ask("hi") == "echo: hi"
        """
    )
    upstream.fail_next(status)
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    assert len(upstream.requests) == 2  # the error, then the SDK's retry
    (path,) = _cassettes(pytester.path)
    assert [i.response.status for i in llmreplay.cassette(path).interactions] == [200]
    upstream.stop()
    pytester.runpytest().assert_outcomes(passed=1)  # and the next run replays the answer


@pytest.mark.parametrize("status", [408, 409, 502, 503, 504, 529])
@pytest.mark.parametrize("mode", ["record", "auto"])
def test_no_retryable_status_is_kept_in_record_or_auto(
    tmp_path: Path, server: LoopbackServer, status: int, mode: str
) -> None:
    cas = llmreplay.cassette(tmp_path / "c.msgpack", mode=mode)
    client = cas.openai_client(base_url=server.url, api_key=fake_key("sk-"), max_retries=1)
    server.fail_next(status)
    message = [{"role": "user", "content": "x"}]
    client.chat.completions.create(model="m", messages=message)  # type: ignore[arg-type]
    client.close()
    cas.save()
    assert len(server.requests) == 2
    assert [i.response.status for i in llmreplay.cassette(cas.path).interactions] == [200]
    assert (cas.stats.recorded, cas.stats.live) == (1, 1)


def test_record_errors_keeps_them_on_purpose(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_flaky="""
        import pytest
        import app

        @pytest.mark.llmreplay(record_errors=True)
        def test_flaky():
            assert app.ask("hi") == "echo: hi"
        """
    )
    upstream.fail_next(429)
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    (path,) = _cassettes(pytester.path)
    assert [i.response.status for i in llmreplay.cassette(path).interactions] == [429, 200]
    upstream.stop()
    pytester.runpytest().assert_outcomes(passed=1)  # the retry path replays too


def test_refused_credentials_are_an_error_and_nothing_is_written(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_denied="""
        import app

        def test_denied(llm_cassette):
            app.ask("hi")
        """
    )
    upstream.fail_next(401)
    result = pytester.runpytest("--llm-mode=record")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*upstream refused the credentials (401) and nothing was written*OPENAI_API_KEY*"]
    )
    assert len(upstream.requests) == 1 and _cassettes(pytester.path) == []


def test_the_client_layer_cache_never_keeps_a_failure(
    tmp_path: Path, server: LoopbackServer
) -> None:
    # The client layer's cache is a cassette in auto mode with repeats: the same rule.
    cache = tmp_path / "cache.msgpack"
    cas = llmreplay.cassette(cache, mode="auto", allow_repeats=True)
    client = cas.openai_client(base_url=server.url, api_key=fake_key("sk-"), max_retries=1)
    server.fail_next(500)
    message = [{"role": "user", "content": "x"}]
    client.chat.completions.create(model="m", messages=message)  # type: ignore[arg-type]
    client.close()
    cas.save()
    assert [i.response.status for i in llmreplay.cassette(cache).interactions] == [200]


def test_re_recording_replaces_a_tests_own_cassette(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    for prompt in ("one", "two", "three"):
        pytester.makepyfile(
            test_prompt=f"""
            import app

            def test_prompt(llm_cassette):
                assert app.ask({prompt!r}) == {"echo: " + prompt!r}
            """
        )
        pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
        (path,) = _cassettes(pytester.path)
        (item,) = llmreplay.cassette(path).interactions  # exactly what this run did
        assert prompt.encode() in item.request.body
    upstream.stop()
    pytester.runpytest("--llm-fail-on-unused").assert_outcomes(passed=1)


def test_once_records_a_new_file_then_only_replays(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_once="""
        import app

        def test_once(llm_cassette):
            assert app.ask("hi") == "echo: hi"
        """
    )
    pytester.runpytest("--llm-mode=once").assert_outcomes(passed=1)
    pytester.runpytest("--llm-mode=once").assert_outcomes(passed=1)
    assert len(upstream.requests) == 1


LEVELS = ["marker", "flag", "env", "config", "ini", "default"]


@pytest.mark.parametrize("winner", LEVELS)
def test_mode_precedence_one_level_at_a_time(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, winner: str
) -> None:
    # The winning level says "auto"; every level below it says "record".
    below = LEVELS[LEVELS.index(winner) + 1 :]

    def value(level: str) -> str | None:
        return "auto" if level == winner else ("record" if level in below else None)

    sources = {
        "marker": "the llmreplay marker",
        "flag": "--llm-mode",
        "env": "the LLMREPLAY_MODE environment variable",
        "config": "llm_cassette_config",
        "ini": "the llm_mode ini setting",
        "default": "the default",
    }
    expected = "replay" if winner == "default" else "auto"
    if value("ini"):
        pytester.makeini(f"[pytest]\nllm_mode = {value('ini')}\n")
    if value("env"):
        monkeypatch.setenv("LLMREPLAY_MODE", value("env") or "")
    config = value("config")
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture
        def llm_cassette_config():
            return {{"mode": {config!r}}} if {config!r} else {{}}
        """
    )
    marker = f'@pytest.mark.llmreplay(mode="{value("marker")}")' if value("marker") else ""
    pytester.makepyfile(
        test_level=f"""
        import pytest

        {marker}
        def test_level(llm_cassette):
            assert llm_cassette.mode.value == {expected!r}
            assert llm_cassette.mode_source == {sources[winner]!r}
        """
    )
    args = [f"--llm-mode={value('flag')}"] if value("flag") else []
    pytester.runpytest(*args).assert_outcomes(passed=1)


def test_a_miss_names_the_mode_and_its_source_and_reads_well(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_miss="""
        import openai

        def test_miss(llm_cassette):
            client = openai.OpenAI(base_url="https://api.openai.com/v1")
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        """
    )
    result = pytester.runpytest("--llm-mode=replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*(mode=replay, from --llm-mode): the cassette file does not*"])
    text = result.stdout.str()
    # Only the test's own frame, not ~90 lines through the SDK and llmreplay.
    assert "_base_client.py" not in text and "_transport.py" not in text
    failure = text.split("___ test_miss ___")[1].split("short test summary")[0]
    assert len(failure.splitlines()) < 16  # was ~90
    result.stdout.fnmatch_lines(["FAILED test_miss.py::test_miss - llmreplay.CassetteMiss*"])


def test_paths_do_not_depend_on_the_current_directory(
    pytester: pytest.Pytester, upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_dir = pytester.mkpydir("proj")
    (app_dir / "test_x.py").write_text(
        "import pytest, app\n\n"
        "def test_own(llm_cassette):\n"
        "    assert app.ask('own') == 'echo: own'\n\n"
        "@pytest.mark.llmreplay(cassette='shared.msgpack')\n"
        "def test_shared():\n"
        "    assert app.ask('shared') == 'echo: shared'\n"
    )
    (pytester.path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    pytester.runpytest("proj/test_x.py", "--llm-mode=record").assert_outcomes(passed=2)
    root = pytester.path / "fixtures" / "cassettes"
    assert sorted(p.relative_to(root).as_posix() for p in _cassettes(root)) == [
        "proj/test_x/test_own.msgpack",
        "shared.msgpack",
    ]
    upstream.stop()
    monkeypatch.chdir(app_dir)  # run from the subdirectory: the same files are found
    pytester.runpytest("test_x.py").assert_outcomes(passed=2)
    monkeypatch.chdir(pytester.path.parent)  # and from above the project
    pytester.runpytest(str(app_dir / "test_x.py")).assert_outcomes(passed=2)
    assert len(upstream.requests) == 2


def test_the_played_list_is_never_committed_with_the_cassettes(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_one="""
        import app

        def test_one(llm_cassette):
            assert app.ask("hi") == "echo: hi"
        """
    )
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    pytester.runpytest().assert_outcomes(passed=1)
    played = pytester.path / "fixtures" / "cassettes" / ".llmreplay" / "played.json"
    assert played.exists()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=pytester.path, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    git("add", "fixtures/cassettes")
    assert git("diff", "--cached", "--name-only").split() == [
        "fixtures/cassettes/test_one/test_one.msgpack"
    ]


def test_fail_on_unused_ignores_skipped_tests_and_names_the_cure(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_two="""
        import pytest, app

        def test_two(llm_cassette):
            app.ask("a")
            app.ask("b")
        """
    )
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_two="""
        import pytest, app

        def test_two(llm_cassette):
            app.ask("a")

        @pytest.mark.skip(reason="optional dependency missing")
        def test_skipped(llm_cassette):
            app.ask("never")
        """
    )
    result = pytester.runpytest("--llm-fail-on-unused")
    result.assert_outcomes(passed=1, skipped=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*1 recorded interaction(s) in *test_two.msgpack were not played*",
            'To drop them: pytest "test_two.py::test_two" --llm-mode=record',
        ]
    )


def test_a_miss_the_app_catches_is_named_in_the_summary(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_swallow="""
        import pytest, app

        def robust(text):
            try:
                return app.ask(text)
            except Exception:
                return "fallback"

        @pytest.mark.llmreplay
        def test_never_recorded():
            assert robust("never recorded")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "1 request(s) missed their cassette (CassetteMiss); 1 passing test(s) caught it*",
            "  */test_swallow/test_never_recorded.msgpack (1)",
        ]
    )
    assert upstream.requests == []


def test_a_module_level_client_starts_without_a_key(
    pytester: pytest.Pytester, upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_module_client="""
        import openai, pytest

        CLIENT = openai.OpenAI(max_retries=0)  # made at import, before any cassette

        @pytest.mark.llmreplay
        def test_uses_it():
            reply = CLIENT.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content == "echo: hi"

        def test_forgot():
            CLIENT.models.list()
        """
    )
    pytester.runpytest("--llm-mode=record", "-k", "uses_it").assert_outcomes(passed=1)
    monkeypatch.delenv("OPENAI_API_KEY")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*RequestRefused*/v1/models in test_module_client.py::test_forgot*"]
    )
    assert len(upstream.requests) == 1


def test_re_recording_a_test_that_now_calls_nothing_empties_its_cassette(
    pytester: pytest.Pytester, upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_calls="""
        import os, app

        def test_calls(llm_cassette):
            for n in range(int(os.environ["CALLS"])):
                app.ask(f"call {n}")
        """
    )
    monkeypatch.setenv("CALLS", "2")
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    (path,) = _cassettes(pytester.path)
    assert len(llmreplay.cassette(path).interactions) == 2
    monkeypatch.setenv("CALLS", "0")
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    assert llmreplay.cassette(path).interactions == []
    pytester.runpytest("--llm-fail-on-unused").assert_outcomes(passed=1)  # the cure worked


def test_a_recording_run_says_which_error_answers_it_did_not_keep(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_errors="""
        import openai, pytest, app

        def test_500(llm_cassette):
            with pytest.raises(openai.InternalServerError):
                app.ask("x", retries=0, extra_headers={"x-test-status": "500"})
        """
    )
    recorded = pytester.runpytest("--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(
        ["1 upstream error answer(s) (429, 5xx, cut streams) not stored*"]
    )
    replayed = pytester.runpytest()
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(
        ["*does not exist yet.", "*a recording run does not store error answers such as 429*"]
    )
