"""count_tokens: exact counts, both encodings, offline (tiktoken never downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmreplay
from llmreplay import _tokens


@pytest.fixture(autouse=True)
def _empty_tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh cache and no loaded encodings: each test proves the offline seeding works.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    monkeypatch.setattr(_tokens, "_encodings", {})


@pytest.mark.parametrize(
    ("model", "ids"),
    [
        ("gpt-4o", [24912, 2375]),  # o200k_base
        ("gpt-4o-mini", [24912, 2375]),
        ("o3-mini", [24912, 2375]),
        ("gpt-4", [15339, 1917]),  # cl100k_base
        ("gpt-3.5-turbo", [15339, 1917]),
        ("text-embedding-3-small", [15339, 1917]),
    ],
)
def test_known_token_ids_for_each_encoding(model: str, ids: list[int]) -> None:
    assert _tokens.encoding_for(model).encode("hello world") == ids
    assert llmreplay.count_tokens("hello world", model) == 2


def test_longer_text_counts() -> None:
    text = "tiktoken is great!"
    assert llmreplay.count_tokens(text, "gpt-4") == 6
    assert _tokens.encoding_for("gpt-4").encode(text) == [83, 1609, 5963, 374, 2294, 0]


def test_chat_messages_include_the_format_overhead() -> None:
    messages = [
        {"role": "system", "content": "hello world"},
        {"role": "user", "name": "ada", "content": "hello world"},
    ]
    # 3 reply priming + per message 3 + role + content (+ name and 1 for it).
    expected = 3 + (3 + 1 + 2) + (3 + 1 + 1 + 1 + 2)
    assert llmreplay.count_tokens(messages, "gpt-4o") == expected


def test_unknown_model_is_a_clear_error_and_encoding_can_be_named() -> None:
    with pytest.raises(llmreplay.ConfigError, match="encoding='o200k_base'"):
        llmreplay.count_tokens("hi", "claude-opus-4-6")
    assert llmreplay.count_tokens("hello world", "claude-opus-4-6", encoding="o200k_base") == 2
    with pytest.raises(llmreplay.ConfigError):
        llmreplay.count_tokens("hi", encoding="p50k_base")


def test_the_seeded_file_is_the_one_tiktoken_expects(tmp_path: Path) -> None:
    _tokens.encoding_for("gpt-4o")
    seeded = list((tmp_path / "tiktoken").iterdir())
    assert len(seeded) == 1
    # A corrupt cache entry is replaced by the verified file, never used.
    seeded[0].write_bytes(b"garbage")
    _tokens._encodings.clear()
    assert _tokens.encoding_for("gpt-4o").encode("hello world") == [24912, 2375]


def test_a_prompt_can_be_checked_before_sending() -> None:
    prompt = [{"role": "user", "content": "word " * 500}]
    assert llmreplay.count_tokens(prompt, "gpt-4o") > 500
