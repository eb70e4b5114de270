"""``llmreplay import-pickle``: a TinyTroupe cache converted once, loading data only.

The pickles here are made by the test (TinyTroupe's cache shape: ``str((model, params))`` to
the SDK's ChatCompletion); one of them would run code if loaded with ``pickle.load``.
"""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

import llmreplay
from llmreplay import _pickle_import
from llmreplay._cli import main

HELLO = [{"role": "user", "content": "hello"}]


def _tinytroupe_key(messages: list[dict[str, str]]) -> str:
    # What TinyTroupe keyed its cache by: the repr of (model, chat_api_params).
    params = {
        "model": "gpt-4o-mini",
        "messages": messages,
        "temperature": 0.3,
        "max_tokens": 1024,
        "top_p": None,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "stop": [],
        "timeout": 30.0,
        "stream": False,
        "n": 1,
    }
    return str(("gpt-4o-mini", params))


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-old",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text, "refusal": None},
            }
        ],
    }


class _RunsCode:
    """Unpickling this calls ``exec`` on a line that writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def tinytroupe_cache(tmp_path: Path) -> Path:
    cache = {
        # The SDK object TinyTroupe stored, pickled as TinyTroupe pickled it.
        _tinytroupe_key(HELLO): ChatCompletion.model_validate(_completion("cached hello")),
        # A plain-data answer (some caches hold dicts).
        _tinytroupe_key([{"role": "user", "content": "bye"}]): _completion("cached bye"),
        # A key that is no literal (a pydantic response_format's repr): skipped, reported.
        "('gpt-4o-mini', {'response_format': <class 'Out'>})": _completion("unreachable"),
    }
    path = tmp_path / "openai_api_cache.pickle"
    path.write_bytes(pickle.dumps(cache))
    return path


def test_a_tinytroupe_cache_converts_and_replays_offline(
    tinytroupe_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "openai_api_cache.msgpack"
    # Without --trust nothing is loaded.
    assert main(["import-pickle", str(tinytroupe_cache), "-o", str(out)]) == 2
    assert "--trust" in capsys.readouterr().err and not out.exists()

    assert main(["import-pickle", str(tinytroupe_cache), "--trust", "-o", str(out)]) == 0
    report = capsys.readouterr().out
    assert "converted 2 interaction(s)" in report and "skipped 1" in report
    assert out.read_bytes()[:1] == b"\x84"  # msgpack

    # The client layer answers both from the converted cache; nothing listens at the URL.
    (tmp_path / "config.ini").write_text("[OpenAI]\nFREQ_PENALTY=0.0\nPRESENCE_PENALTY=0.0\n")
    llmreplay.force_api_cache(True, "openai_api_cache.pickle")  # TinyTroupe's name works
    client = llmreplay.OpenAIClient(base_url="http://127.0.0.1:9/v1", max_attempts=1)
    assert client.send_message(HELLO)["content"] == "cached hello"
    assert client.send_message([{"role": "user", "content": "bye"}]).content == "cached bye"
    client.close()


def test_the_loader_builds_inert_records_not_sdk_objects(tinytroupe_cache: Path) -> None:
    loaded = _pickle_import.load(tinytroupe_cache)
    record = loaded[_tinytroupe_key(HELLO)]
    assert isinstance(record, _pickle_import.Record) and not isinstance(record, ChatCompletion)
    assert record.pickled_name == "openai.types.chat.chat_completion.ChatCompletion"
    assert _pickle_import.plain(record)["choices"][0]["message"]["content"] == "cached hello"


@pytest.mark.parametrize("payload", [_RunsCode, _RunsShell], ids=["exec", "os.system"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(
    payload: type[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "it-ran"
    evil = tmp_path / "tests_cache.pickle"
    # Hidden inside an otherwise TinyTroupe-shaped cache.
    evil.write_bytes(pickle.dumps({_tinytroupe_key(HELLO): [_completion("x"), payload(marker)]}))
    out = tmp_path / "tests_cache.msgpack"
    assert main(["import-pickle", str(evil), "--trust", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not load" in err and "Nothing in it was run" in err
    assert not marker.exists()  # the code did not run
    assert not out.exists()
    with pytest.raises(llmreplay.CassetteError) as info:
        _pickle_import.load(evil)
    assert ("builtins.exec" if payload is _RunsCode else "system") in info.value.problem
    assert not marker.exists()


def test_what_is_not_a_tinytroupe_cache_is_refused(tmp_path: Path) -> None:
    cases = {
        "list.pickle": pickle.dumps([1, 2]),
        "junk.pickle": b"not a pickle at all",
        "getattr.pickle": b"cbuiltins\ngetattr\n.",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(llmreplay.CassetteError):
            _pickle_import.convert(tmp_path / name, tmp_path / "out.msgpack", trust=True)
    assert not (tmp_path / "out.msgpack").exists()


@pytest.mark.parametrize("protocol", [2, 3, pickle.HIGHEST_PROTOCOL])
def test_older_pickle_protocols_convert_too(protocol: int, tmp_path: Path) -> None:
    source = tmp_path / "old.pickle"
    answer = ChatCompletion.model_validate(_completion("from protocol"))
    source.write_bytes(pickle.dumps({_tinytroupe_key(HELLO): answer}, protocol=protocol))
    result = _pickle_import.convert(source, tmp_path / "old.msgpack", trust=True)
    assert result.interactions == 1 and result.skipped == []
    (item,) = llmreplay.cassette(tmp_path / "old.msgpack").interactions
    assert b"from protocol" in item.response.content
    assert item.request.url == _pickle_import.DEFAULT_URL


def test_entries_that_are_not_chat_calls_are_reported(tmp_path: Path) -> None:
    source = tmp_path / "odd.pickle"
    source.write_bytes(
        pickle.dumps(
            {
                _tinytroupe_key(HELLO): "a string, not a completion",
                str(("gpt-4o-mini", {"input": "no messages"})): _completion("x"),
            }
        )
    )
    with pytest.raises(llmreplay.CassetteError, match="no entry of it could be converted") as info:
        _pickle_import.convert(source, tmp_path / "odd.msgpack", trust=True)
    assert "not a chat completion" in info.value.hint and "no chat messages" in info.value.hint


def test_persistent_ids_are_refused(tmp_path: Path) -> None:
    import io

    class External(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return "row-1" if obj == "external" else None

    buffer = io.BytesIO()
    External(buffer).dump({"k": "external"})
    (tmp_path / "pid.pickle").write_bytes(buffer.getvalue())
    with pytest.raises(llmreplay.CassetteError, match="persistent ids"):
        _pickle_import.load(tmp_path / "pid.pickle")


def test_a_tiny_pickle_describing_a_huge_tree_is_skipped_not_expanded(tmp_path: Path) -> None:
    # 64 levels of [x, x]: a few hundred bytes, 2**64 leaves once references are expanded.
    node: Any = "leaf"
    for _ in range(64):
        node = [node, node]
    huge = _completion("x")
    huge["choices"][0]["message"]["annotations"] = node
    source = tmp_path / "bomb.pickle"
    source.write_bytes(pickle.dumps({_tinytroupe_key(HELLO): huge}))
    assert source.stat().st_size < 2000
    with pytest.raises(llmreplay.CassetteError) as info:
        _pickle_import.convert(source, tmp_path / "bomb.msgpack", trust=True)
    assert "too large or too deeply nested" in info.value.hint
