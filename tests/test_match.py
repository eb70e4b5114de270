"""Request keys and the closest-match diff: canonical forms, and bounded work on a miss."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmreplay._format import MAX_JSON_DEPTH, NOT_JSON, parse_json, too_deep
from llmreplay._match import KeySpec, RequestView, closest, diff_lines, url_path

CHAT = "https://api.openai.com/v1/chat/completions"


def _view(body: object, url: str = CHAT, method: str = "POST") -> RequestView:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RequestView(method, url, [("content-type", "application/json")], raw)


def test_reordered_and_reindented_json_gets_the_same_key() -> None:
    spec = KeySpec()
    a = _view(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
    b = _view(b'{\n  "messages": [{"content": "hi", "role": "user"}],\n  "model": "m"\n}')
    assert spec.key(a) == spec.key(b)
    assert spec.key(a) != spec.key(_view({"model": "m", "messages": []}))


def _nested(depth: int, kinds: str = "[") -> bytes:
    opening = "".join(kinds[n % len(kinds)] for n in range(depth))
    closing = opening[::-1].replace("[", "]").replace("{", "}")
    return (opening.replace("{", '{"k":') + closing).encode()


@pytest.mark.parametrize(
    ("data", "deep"),
    [
        (b'{"a": [1, {"b": []}]}', False),
        (b'{"text": "' + b"[" * 500 + b'"}', False),  # brackets in a string do not count
        (b'{"text": "a \\" ' + b"[" * 500 + b'"}', False),  # nor after an escaped quote
        (_nested(MAX_JSON_DEPTH), False),
        (_nested(MAX_JSON_DEPTH + 1), True),
        (_nested(MAX_JSON_DEPTH, "[{"), False),
        (_nested(MAX_JSON_DEPTH + 1, "[{"), True),  # mixed kinds: still one level a pass
        (_nested(MAX_JSON_DEPTH + 1, "{[{"), True),
        (b"[]" * 200_000, False),
        (b"[" * 200 + b"}" * 200, True),
        (b"[" * 50 + b"}" * 50 + b"[]" * 100, False),  # does not pair up: for json to refuse
        (b"[]" + _nested(MAX_JSON_DEPTH + 1) + b"[[]]" * 100, True),
    ],
)
def test_too_deep_counts_nesting_outside_strings(data: bytes, deep: bool) -> None:
    assert too_deep(data) is deep
    if deep:
        assert parse_json(data) is NOT_JSON
    elif data[:1] in b"[{":
        try:
            expected = json.loads(data)
        except ValueError:
            expected = NOT_JSON
        assert parse_json(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 200 + b'"' + b"a" * 2_000_000,  # a string that never ends
        b"[" * 200 + b'"' + b'\\"' * 1_000_000,  # escaped quotes, never closed
        b"[" * 200 + b'"' + b'\\"' * 1_000_000 + b"\\",
        b'["' * 500_000,
        b"[]" * 2_000_000,
        b"[" * 2_000_000,
    ],
    ids=["unclosed", "escaped", "escaped-backslash", "quotes", "pairs", "deep"],
)
def test_adversarial_nesting_is_refused_not_parsed(data: bytes) -> None:
    # Each is too deep (or never closes): NOT_JSON, decided by the linear scan before any
    # parse. How long the scan takes is measured in benchmarks/hostile.py, not here.
    assert parse_json(data) is NOT_JSON


def test_unparseable_urls_still_give_parts() -> None:
    assert url_path("http://[::1/v1/chat") == "/v1/chat"
    spec = KeySpec.build(("method", "scheme", "host", "path", "query"), (), ())
    parts = spec.parts(_view({}, url="http://[::1/v1/chat?b=2&a=1"))
    assert parts == {
        "method": b"POST",
        "scheme": b"http",
        "host": b"[::1",
        "path": b"/v1/chat",
        "query": b"a=1&b=2",
    }


def test_closest_prefers_the_same_endpoint_and_the_nearest_body() -> None:
    spec = KeySpec()
    wanted = _view({"model": "m", "messages": [{"role": "user", "content": "hello there"}]})
    candidates = [
        _view({"input": "hello there"}, url="https://x/v1/embeddings"),
        _view({"model": "m", "messages": [{"role": "user", "content": "goodbye"}]}),
        _view({"model": "m", "messages": [{"role": "user", "content": "hello there!"}]}),
    ]
    found = closest(wanted, candidates, spec)
    assert found is not None and found[0] is candidates[2]
    assert '-body:    "content": "hello there!",' in found[1].splitlines()
    assert closest(wanted, [], spec) is None


def test_the_diff_is_bounded_and_numbered_from_the_real_lines() -> None:
    before = [f"line {n}" for n in range(100_000)]
    after = list(before)
    after[70_000] = "changed"
    after[70_002] = "x" * 1_000_000
    diff = diff_lines(before, after)
    assert diff.splitlines()[0] == "@@ -70000,5 +70000,5 @@"
    assert "-line 70000" in diff and "+changed" in diff
    many = diff_lines(before, [f"other {n}" for n in range(100_000)])
    assert many.splitlines()[-1].endswith("more line(s) of difference")
    assert len(many.splitlines()) == 81


def test_a_miss_against_many_big_candidates_is_cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmreplay import _match

    made: list[int] = []
    canonical = _match.canonical_body

    def counted(*args: Any, **kwargs: Any) -> bytes:
        made.append(1)
        return canonical(*args, **kwargs)

    monkeypatch.setattr(_match, "canonical_body", counted)
    spec = KeySpec()
    image = "A" * 200_000
    candidates = [
        _view({"messages": [{"content": f"picture {n}"}], "image": str(n) + image})
        for n in range(300)
    ]
    wanted = _view({"messages": [{"content": "picture 7, in French"}], "image": "7" + image})
    found = closest(wanted, candidates, spec)
    assert len(made) <= 1 + _match._FINALISTS  # 300 candidates, only the finalists canonical
    assert found is not None and found[0] is candidates[7]
    assert len(found[1]) < 2_000  # the long line is cut, with its length and hash
    assert "200,001 chars, sha256" not in found[1]  # equal lines are not in the diff
