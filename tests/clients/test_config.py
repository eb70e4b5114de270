"""Client settings: precedence, types, validation with the key and file named."""

from __future__ import annotations

from pathlib import Path

import pytest

import llmreplay
from llmreplay._clients.config import load_config


def test_defaults() -> None:
    config = load_config()
    assert (config.model, config.max_tokens, config.temperature) == ("gpt-4o-mini", 1024, 0.3)
    assert config.embedding_model == "text-embedding-3-small"
    assert config.sampling() == {"model": "gpt-4o-mini", "max_tokens": 1024, "temperature": 0.3}


def test_precedence_arguments_env_pyproject_ini(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.ini").write_text(
        "[OpenAI]\nMODEL = from-ini\nTOP_P = 0.9\nMAX_TOKENS = 100\nTEMPERATURE = 0.1\n"
        "CACHE_API_CALLS = True\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        '[tool.llmreplay]\nMODEL = "from-pyproject"\nMAX_TOKENS = 200\nTEMPERATURE = 0.2\n'
    )
    monkeypatch.setenv("LLMREPLAY_TEMPERATURE", "0.7")
    monkeypatch.setenv("LLMREPLAY_MODE", "replay")  # the cassette mode, not a client setting
    config = load_config(tmp_path, max_tokens=300)
    assert config.model == "from-pyproject"
    assert config.max_tokens == 300
    assert config.temperature == 0.7
    assert config.top_p == 0.9 and isinstance(config.top_p, float)
    assert config.cache_api_calls is True
    assert config.sources["top_p"] == f"TOP_P in [OpenAI] in {tmp_path / 'config.ini'}"
    assert config.sources["temperature"] == "the environment (LLMREPLAY_*)"
    assert config.sampling()["top_p"] == 0.9


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("TOP_P = high", "TOP_P"),
        ("MAX_TOKENS = -5", "MAX_TOKENS"),
        ("API_TYPE = gemini", "API_TYPE"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path: Path, line: str, key: str) -> None:
    (tmp_path / "config.ini").write_text(f"[OpenAI]\n{line}\n")
    with pytest.raises(llmreplay.ConfigError) as info:
        load_config(tmp_path)
    assert info.value.setting == key
    assert str(tmp_path / "config.ini") in info.value.source


def test_unknown_keys_and_broken_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.llmreplay]\nMODLE = 'x'\n")
    with pytest.raises(llmreplay.ConfigError, match="MODLE"):
        load_config(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.llmreplay\n")
    with pytest.raises(llmreplay.ConfigError, match="valid TOML"):
        load_config(tmp_path)
