"""Named normalisers: each one with a case it must match and a case it must not, then
through a real SDK: recorded once, replayed when only the normalised part changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import llmreplay
from llmreplay._match import KeySpec, RequestView
from llmreplay._normalise import NORMALISERS
from tests.helpers import close, fake_key, resolve
from tests.server import LoopbackServer

pytestmark = pytest.mark.anyio

URL = "https://api.openai.com/v1/chat/completions"
UUID_A = "0b9f5c1e-3d2a-4f6b-9c8d-7e6f5a4b3c2d"
UUID_B = "f47ac10b-58cc-4372-a567-0e02b2c3d479"


def _key(body: dict[str, Any], *normalise: str) -> str:
    spec = KeySpec.build(None, (), (), normalise=normalise)
    return spec.key(RequestView("POST", URL, [], json.dumps(body).encode()))


def _chat(text: str = "hi", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **fields}


# (normaliser, request, a request it must match, a request it must not match)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("model_date", _chat(model="gpt-4o-2024-08-06"), _chat(model="gpt-4o"),
     _chat(model="gpt-4o-mini")),
    ("model_date", _chat(model="claude-3-5-sonnet-20241022"),
     _chat(model="claude-3-5-sonnet-20240620"), _chat(model="claude-3-5-haiku-20241022")),
    ("model_date", _chat(model="o1-2024-12-17"), _chat(model="o1"), _chat(model="o1-mini")),
    ("model_date", _chat(model="gpt-4o-2024-08-06"), _chat(model="gpt-4o-2024-11-20"),
     _chat(model="gpt-4o-mini-2024-07-18")),
    ("user", _chat(user="alice", metadata={"trace": "1"}, safety_identifier="h1"),
     _chat(user="bob", prompt_cache_key="k"), _chat("other prompt", user="alice")),
    ("seed", _chat(seed=1), _chat(seed=2), _chat(seed=1, temperature=0.2)),
    ("stream_options", _chat(stream=True, stream_options={"include_usage": True}),
     _chat(stream=True), _chat(stream=False)),
    ("uuids", _chat(f"look up {UUID_A}"), _chat(f"look up {UUID_B.upper()}"),
     _chat("look up order 12")),
    ("uuids", _chat(f"look up {UUID_A}"), _chat(f"look up {UUID_B}"),
     _chat("look up 0b9f5c1e-3d2a-4f6b-9c8d")),  # a uuid's start is not a uuid
    ("timestamps", _chat("now is 2024-05-01T12:30:00Z"),
     _chat("now is 2025-01-02 03:04:05.123+02:00"), _chat("now is 2024-05-01")),
    ("timestamps", _chat("due 2024-05-01T12:30"), _chat("due 2031-12-31T23:59"),
     _chat("due 2024-05-02")),  # a date alone may be the point of the prompt
    ("regex:req_[0-9a-f]{8}", _chat("id req_0123abcd"), _chat("id req_ffffffff"),
     _chat("id req_0123")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "same", "other"), CASES)
def test_each_normaliser_matches_what_varies_and_nothing_else(
    name: str, body: dict[str, Any], same: dict[str, Any], other: dict[str, Any]
) -> None:
    assert _key(body) != _key(same)  # without it, a miss
    assert _key(body, name) == _key(same, name)
    assert _key(body, name) != _key(other, name)


def test_four_digits_are_not_taken_for_a_date() -> None:
    assert _key(_chat(model="gpt-4-0613"), "model_date") != _key(_chat(model="gpt-4"), "model_date")


def test_every_named_normaliser_has_cases() -> None:
    assert {case[0] for case in CASES if not case[0].startswith("regex:")} == set(NORMALISERS)


def test_normalisers_leave_what_is_sent_and_other_fields_alone() -> None:
    body = _chat(f"id {UUID_A}", model="gpt-4o-2024-08-06", seed=3, n=2)
    raw = json.dumps(body).encode()
    spec = KeySpec.build(None, (), (), normalise=("uuids", "seed", "model_date"))
    parts = spec.parts(RequestView("POST", URL, [], raw))
    assert json.loads(parts["body"]) == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "id <uuid>"}],
        "n": 2,
    }
    assert json.loads(raw) == body  # the request itself is untouched
    not_json = RequestView("POST", URL, [], f"id {UUID_A}".encode())
    assert spec.parts(not_json)["body"] == f"id {UUID_A}".encode()  # JSON bodies only


def test_the_names_are_stored_with_the_key_settings() -> None:
    spec = KeySpec.build(None, ("user",), (), normalise=("uuids", "model_date", "uuids"))
    assert spec.describe()["normalise"] == ["model_date", "uuids"]
    assert "normalise" not in KeySpec.build(None, (), ()).describe()  # old files stay equal


@pytest.mark.parametrize(
    ("names", "expected"),
    [(("model_dates",), "expected one of: model_date"), (("regex:(",), "the pattern fails")],
)
def test_unknown_names_and_bad_patterns_are_config_errors(
    names: tuple[str, ...], expected: str
) -> None:
    with pytest.raises(llmreplay.ConfigError) as info:
        KeySpec.build(None, (), (), normalise=names)
    assert expected in str(info.value) and names[0] in str(info.value)


async def test_recorded_with_a_dated_model_replayed_with_its_alias(
    server: LoopbackServer, tmp_path: Path, sync: bool
) -> None:
    path = tmp_path / "dated.msgpack"
    names = ["model_date", "uuids"]

    async def ask(cas: llmreplay.Cassette, model: str, text: str) -> str:
        options = {"base_url": server.url, "api_key": fake_key("sk-"), "max_retries": 0}
        client = cas.openai_client(**options) if sync else cas.async_openai_client(**options)
        try:
            answer = await resolve(
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": text}]
                )
            )
        finally:
            await close(client)
        return str(answer.choices[0].message.content)

    with llmreplay.cassette(path, mode="record", normalise=names) as cas:
        recorded = await ask(cas, "gpt-4o-2024-08-06", f"order {UUID_A}")
    assert len(server.requests) == 1
    with llmreplay.cassette(path, normalise=names) as cas:
        assert await ask(cas, "gpt-4o", f"order {UUID_B}") == recorded
        assert cas.stats.played == 1
    with llmreplay.cassette(path) as cas, pytest.raises(llmreplay.CassetteMiss):
        await ask(cas, "gpt-4o", f"order {UUID_B}")  # not asked for: a miss, as before
    with llmreplay.cassette(path, normalise=names) as cas, pytest.raises(llmreplay.CassetteMiss):
        await ask(cas, "gpt-4o-mini", f"order {UUID_B}")  # another model is another model
    assert len(server.requests) == 1


MARKED = """
import openai
import pytest

@pytest.mark.llmreplay(normalise=["model_date"])
def test_dated():
    client = openai.OpenAI(max_retries=0)
    model = "gpt-4o-2024-08-06" if pytest.recording else "gpt-4o"
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}])
    assert "hi" in answer.choices[0].message.content
"""


def test_the_marker_takes_normalise(
    pytester: pytest.Pytester, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", fake_key("sk-"))
    pytester.makeconftest("import pytest\n\ndef pytest_configure():\n    pytest.recording = True\n")
    pytester.makepyfile(test_marked=MARKED)
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    pytester.makeconftest(
        "import pytest\n\ndef pytest_configure():\n    pytest.recording = False\n"
    )
    server.stop()
    pytester.runpytest().assert_outcomes(passed=1)  # the alias replays the dated recording
    pytester.makepyfile(test_marked=MARKED.replace('normalise=["model_date"]', 'normalise="dates"'))
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*'dates' from *normalise* expected one of: model_date*"])
    assert len(server.requests) == 1
