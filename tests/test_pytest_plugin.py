"""The pytest plugin, loaded through its entry point as users load it, driven by pytester."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import llmreplay
from llmreplay import Mode
from llmreplay.pytest_plugin import cassette_path
from tests.helpers import PYTESTER_APP, fake_key
from tests.server import LoopbackServer

CHAT = """
import anthropic, pytest

def test_chat(llm_client):
    reply = llm_client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == "echo: hello"

class TestGroup:
    @pytest.mark.parametrize("word", ["a/b", "c d"])
    def test_param(self, llm_client, word):
        reply = llm_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": word}])
        assert reply.choices[0].message.content == "echo: " + word

def test_anthropic_is_captured(llm_cassette):
    client = anthropic.Anthropic(max_retries=0)
    message = client.messages.create(
        model="claude-opus-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "echo: hi"
    client.close()
"""


@pytest.fixture
def upstream(server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.origin)
    monkeypatch.setenv("OPENAI_API_KEY", fake_key("sk-"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", fake_key("sk-ant-"))
    return server


def test_record_once_then_replay_offline(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(test_app=CHAT)
    recorded = pytester.runpytest("--llm-mode=record")
    recorded.assert_outcomes(passed=4)
    recorded.stdout.fnmatch_lines(["*llmreplay*", "0 replayed, 4 recorded, 0 live*4 cassette(s)*"])
    folder = pytester.path / "fixtures" / "cassettes" / "test_app"
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert len(names) == 4
    assert names[0].startswith("TestGroup.test_param-a-b-")  # "a/b": hashed, never shared
    assert names[1].startswith("TestGroup.test_param-c-d-")
    assert names[2:] == ["test_anthropic_is_captured.msgpack", "test_chat.msgpack"]
    upstream.stop()
    replayed = pytester.runpytest()
    replayed.assert_outcomes(passed=4)
    replayed.stdout.fnmatch_lines(
        ["llmreplay: mode=replay (from the default), cassettes=fixtures/cassettes, sealed"]
    )
    replayed.stdout.fnmatch_lines(
        ["4 replayed, 0 recorded*", "* tokens not spent thanks to replay"]
    )
    assert len(upstream.requests) == 4


def test_a_missing_cassette_fails_and_says_how_to_record(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=CHAT)
    result = pytester.runpytest("-k", "test_chat")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*CassetteMiss*the cassette file does not exist yet*", "*--llm-mode=record*"]
    )


@pytest.mark.parametrize(
    ("args", "env", "ini", "expected"),
    [
        ([], None, None, "replay"),
        ([], None, "auto", "auto"),
        ([], "live", "auto", "live"),
        (["--llm-mode=record"], "live", "auto", "record"),
    ],
)
def test_mode_precedence(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: str | None,
    ini: str | None,
    expected: str,
) -> None:
    if env:
        monkeypatch.setenv("LLMREPLAY_MODE", env)
    if ini:
        pytester.makeini(f"[pytest]\nllm_mode = {ini}\n")
    pytester.makepyfile(
        f"""
        import pytest

        def test_mode(llm_cassette):
            assert llm_cassette.mode.value == {expected!r}

        @pytest.mark.llmreplay(mode="live")
        def test_marker_wins(llm_cassette):
            assert llm_cassette.mode.value == "live"
        """
    )
    pytester.runpytest(*args).assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("args", "env", "ini", "source"),
    [
        (["--llm-mode=replya"], None, None, "--llm-mode"),
        ([], "recrod", None, "LLMREPLAY_MODE"),
        ([], None, "nope", "llm_mode ini"),
    ],
)
def test_a_bad_mode_is_a_usage_error_naming_its_source(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: str | None,
    ini: str | None,
    source: str,
) -> None:
    if env:
        monkeypatch.setenv("LLMREPLAY_MODE", env)
    if ini:
        pytester.makeini(f"[pytest]\nllm_mode = {ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*from *{source}* is not a valid mode; expected one of*"])


def test_help_lists_options_and_ini(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "record and replay LLM API calls:",
            "*--llm-mode=MODE*cassette mode for every test*",
            "*--llm-fail-on-unused*",
            "*llm_mode (string)*",
            "*llm_cassette_dir (string)*",
        ]
    )
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.llmreplay(mode=None, cassette=None*"])


def test_marker_options_config_fixture_and_fail_on_unused(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def llm_cassette_config():
            return {"ignore": ["user"], "cassette": "shared.msgpack"}
        """
    )
    pytester.makepyfile(
        """
        def test_two(llm_client, llm_cassette):
            for user in ("a", "b"):
                llm_client.chat.completions.create(
                    model="m", user=user, messages=[{"role": "user", "content": "x"}])
            assert llm_cassette.path.name == "shared.msgpack"
            assert llm_cassette.path.parent.name == "cassettes"  # under the cassette dir
        """
    )
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    # Replaying only one of the two recorded calls leaves one unused.
    pytester.makepyfile(
        """
        def test_two(llm_client):
            llm_client.chat.completions.create(
                model="m", user="zed", messages=[{"role": "user", "content": "x"}])
        """
    )
    lenient = pytester.runpytest()
    lenient.assert_outcomes(passed=1)
    lenient.stdout.fnmatch_lines(["1 recorded interaction(s) not played*"])
    strict = pytester.runpytest("--llm-fail-on-unused")
    strict.assert_outcomes(passed=1, errors=1)
    strict.stdout.fnmatch_lines(
        [
            "*1 recorded interaction(s) in */fixtures/cassettes/shared.msgpack were not played*",
            "To drop them: llmreplay prune */fixtures/cassettes (after a passing run)",
        ]
    )


def test_an_unknown_marker_option_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmreplay(allow_repeat=True)
        def test_typo(llm_cassette):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ConfigError: 'allow_repeat' from @pytest.mark.llmreplay is not a valid cassette*"]
    )


def test_xdist_workers_record_without_loss_and_summary_adds_up(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(8))
        @pytest.mark.llmreplay(cassette="all.msgpack")
        def test_many(llm_client, n):
            llm_client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": str(n)}])
        """
    )
    recorded = pytester.runpytest_subprocess("-n", "2", "--llm-mode=auto", "-p", "xdist")
    recorded.assert_outcomes(passed=8)
    recorded.stdout.fnmatch_lines(["0 replayed, 8 recorded*"])
    upstream.stop()
    replayed = pytester.runpytest_subprocess("-n", "2", "-p", "xdist")
    replayed.assert_outcomes(passed=8)
    replayed.stdout.fnmatch_lines(["8 replayed, 0 recorded*"])


def test_paths_are_safe_and_long_names_hashed(pytester: pytest.Pytester) -> None:
    items = pytester.getitems(
        """
        import pytest

        @pytest.mark.parametrize("v", ["x" * 300, 'a:b*c?"<>|'])
        def test_p(v): pass
        """
    )
    long_path, odd_path = (cassette_path(item, Path("cas")) for item in items)
    assert len(long_path.name) <= 128 and long_path.name.endswith(".msgpack")
    assert odd_path.name.startswith("test_p-a-b-c-") and odd_path.name.endswith(".msgpack")
    assert odd_path.parent == Path("cas") / "test_paths_are_safe_and_long_names_hashed"


def test_plugin_mode_names_match_the_enum() -> None:
    assert [m.value for m in Mode] == ["live", "record", "replay", "auto", "once"]


IDS = ["a/b", "a b", "a-b", "a\\b", "a?b", "a*b", "a:b", "..", ".", "-", "--", "", "A", "a"]
IDS += ["x" * 300, "x" * 301, "con", "CON.txt", "ü", "u", "a_b", "a.b", "a+b", "a=b"]
IDS += ["é", "e", "[x]", "x", "tab\tch", "tab ch"]


def test_every_parametrized_id_gets_its_own_stable_cassette(pytester: pytest.Pytester) -> None:
    source = f"""
        import pytest

        @pytest.mark.parametrize("v", {IDS!r}, ids={IDS!r})
        def test_ids(v): pass
        """
    items = pytester.getitems(source)
    assert len(items) == 30
    paths = [cassette_path(item, Path("cas")) for item in items]
    assert len({p.name.lower() for p in paths}) == 30  # distinct even where case is folded
    assert all(len(p.name) <= 128 and p.name.endswith(".msgpack") for p in paths)
    assert all(p.name[0] not in ".-" and "/" not in p.name for p in paths)
    # Stable: a pure function of the test's id (a short sha256 where information was lost).
    digest = hashlib.sha256(b"test_ids[..]").hexdigest()[:8]
    readable = {item.callspec.id: path for item, path in zip(items, paths, strict=True)}  # type: ignore[attr-defined]
    assert readable["a-b"].name == "test_ids-a-b.msgpack"  # already safe: unchanged
    assert readable["A"].name.lower() != readable["a"].name.lower()
    assert readable[".."].name == f"test_ids-{digest}.msgpack"


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ('"record"', "the marker takes keyword arguments only"),
        ("allow_repeats='no'", "'no' from @pytest.mark.llmreplay is not a valid allow_repeats"),
        ("cassette=123", "123 from @pytest.mark.llmreplay is not a valid cassette"),
        ("match_on=[1]", "is not a valid match_on; expected a list of names"),
        ("mode='replya'", "'replya' from the llmreplay marker is not a valid mode"),
    ],
)
def test_marker_arguments_are_validated(
    pytester: pytest.Pytester, marker: str, expected: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.llmreplay({marker})
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert expected in result.stdout.str()


def test_a_single_name_is_one_name_not_its_letters(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llmreplay(ignore="user")
        def test_one(llm_cassette):
            assert llm_cassette._spec.ignore == ("user",)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_an_empty_mode_flag_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--llm-mode=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'' from --llm-mode is not a valid mode*"])


def test_config_fixtures_from_a_p_plugin_are_honoured(pytester: pytest.Pytester) -> None:
    # A -p plugin is registered before llmreplay: a default fixture of ours would shadow it.
    pytester.makepyfile(
        myplugin="""
        import pytest

        @pytest.fixture
        def llm_cassette_config():
            return {"ignore": ["user"]}

        @pytest.fixture
        def vcr_config():
            return {"record_mode": "new_episodes"}
        """
    )
    pytester.makepyfile(
        test_p="""
        def test_p(llm_cassette):
            assert llm_cassette._spec.ignore == ("user",)
            # vcr_config applies to every cassette, as llm_cassette_config does
            assert (llm_cassette.mode.value, llm_cassette.mode_source) == ("auto", "vcr_config")

        import pytest

        @pytest.mark.vcr
        def test_vcr(llm_cassette):
            assert llm_cassette.mode_source == "vcr_config" and llm_cassette.mode.value == "auto"
        """
    )
    pytester.syspathinsert()
    pytester.runpytest("-p", "myplugin").assert_outcomes(passed=2)


def test_the_marker_takes_several_cassettes_the_first_recorded_into(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(app=PYTESTER_APP)
    pytester.syspathinsert()
    pytester.makepyfile(
        test_record="""
        import pytest, app

        @pytest.mark.llmreplay(cassette="one.msgpack")
        def test_one(llm_cassette):
            assert app.ask("one") == "echo: one"

        @pytest.mark.llmreplay(cassette="two.msgpack")
        def test_two(llm_cassette):
            assert app.ask("two") == "echo: two"
        """
    )
    pytester.runpytest("-p", "no:randomly", "--llm-mode=record").assert_outcomes(passed=2)
    sent = len(upstream.requests)
    pytester.makepyfile(
        test_both="""
        import pytest, app

        @pytest.mark.llmreplay(cassette=["mine.msgpack", "one.msgpack", "two.msgpack"])
        def test_both(llm_cassette):
            assert app.ask("one") == "echo: one" and app.ask("two") == "echo: two"
            assert llm_cassette.stats.played == 2

        @pytest.mark.llmreplay(cassette=["mine.msgpack", "one.msgpack"], mode="auto")
        def test_new_goes_to_the_first(llm_cassette):
            assert app.ask("one") == "echo: one" and app.ask("three") == "echo: three"

        @pytest.mark.llmreplay(cassette=[])
        def test_empty(llm_cassette):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "test_both.py")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*cassette*expected a name or a list of names*"])
    assert len(upstream.requests) == sent + 1  # only "three" went out
    folder = pytester.path / "fixtures" / "cassettes"
    (mine,) = folder.rglob("mine.msgpack")
    assert [
        i.request.url.endswith("/chat/completions") for i in llmreplay.cassette(mine).interactions
    ] == [True]
    (one,) = folder.rglob("one.msgpack")
    assert len(llmreplay.cassette(one).interactions) == 1  # read, never written
