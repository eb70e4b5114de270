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
        ("MAX_ATTEMPTS = 2.5", "MAX_ATTEMPTS"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path: Path, line: str, key: str) -> None:
    (tmp_path / "config.ini").write_text(f"[OpenAI]\n{line}\n")
    with pytest.raises(llmreplay.ConfigError) as info:
        load_config(tmp_path)
    assert info.value.setting == key
    assert str(tmp_path / "config.ini") in info.value.source


def test_an_unregistered_api_type_fails_when_a_client_is_asked_for(tmp_path: Path) -> None:
    # Any name loads (register_client may add it later); client() names the file.
    (tmp_path / "config.ini").write_text("[OpenAI]\nAPI_TYPE = gemini\n")
    assert load_config(tmp_path).api_type == "gemini"
    with pytest.raises(llmreplay.ConfigError) as info:
        llmreplay.client()
    assert info.value.setting == "api_type"
    assert str(tmp_path / "config.ini") in info.value.source
    assert "azure, openai" in str(info.value)


def test_unknown_keys_and_broken_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.llmreplay]\nMODLE = 'x'\n")
    with pytest.raises(llmreplay.ConfigError, match="MODLE"):
        load_config(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.llmreplay\n")
    with pytest.raises(llmreplay.ConfigError, match="valid TOML"):
        load_config(tmp_path)


TINYTROUPE = Path(__file__).parent / "fixtures" / "tinytroupe"


def test_tinytroupe_shipped_config_ini_loads_unchanged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given TinyTroupe's own config.ini, byte for byte (other sections, unknown keys).
    (tmp_path / "config.ini").write_bytes((TINYTROUPE / "config.ini").read_bytes())
    with caplog.at_level("WARNING", logger="llmreplay"):
        config = load_config(tmp_path)
        again = load_config(tmp_path)
    # Then its OpenAI settings are used, typed ...
    assert (config.api_type, config.model, config.embedding_model) == (
        "openai",
        "gpt-5-mini",
        "text-embedding-3-small",
    )
    assert (config.timeout, config.max_attempts, config.waiting_time) == (480.0, 5, 1.0)
    assert config.backoff_factor == 5.0 and config.azure_api_version == "2024-12-01-preview"
    assert config.max_completion_tokens == 32000
    assert config.sampling()["max_completion_tokens"] == 32000
    assert "max_tokens" not in config.sampling()
    assert config.cache_api_calls is False
    assert again == config
    # ... and the keys llmreplay does not use are named once, in one warning.
    warnings = [r.getMessage() for r in caplog.records if "ignores" in r.getMessage()]
    assert len(warnings) == 1
    for key in (
        "REASONING_MODEL",
        "REASONING_EFFORT",
        "MAX_CONCURRENT_MODEL_CALLS",
        "MAX_CONTENT_DISPLAY_LENGTH",
    ):
        assert key in warnings[0]
    assert "PARALLEL_AGENT_GENERATION" not in warnings[0]  # other sections are TinyTroupe's
    assert str(tmp_path / "config.ini") in warnings[0]


def test_tinytroupe_number_spellings_and_key_names(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text(
        "[OpenAI]\nMAX_ATTEMPTS=5.0\nMAX_TOKENS=4000.0\nAZURE_OPENAI_ENDPOINT=https://x.test\n"
        "AZURE_OPENAI_KEY=not-read-from-files\nAPI_TYPE=Azure\n"
    )
    config = load_config(tmp_path)
    assert config.max_attempts == 5 and isinstance(config.max_attempts, int)
    assert config.max_tokens == 4000 and isinstance(config.max_tokens, int)
    assert config.azure_endpoint == "https://x.test"
    # TinyTroupe's force_default_value with its lower-case names and float integers.
    llmreplay.force_default_value("max_attempts", 3.0)
    llmreplay.force_default_value("exponential_backoff_factor", 4)
    client = llmreplay.client()  # "Azure" finds the azure client
    assert isinstance(client, llmreplay.AzureClient)
    assert (client.config.max_attempts, client.config.backoff_factor) == (3, 4.0)
    with pytest.raises(llmreplay.ConfigError, match="whole number"):
        llmreplay.force_default_value("max_attempts", 2.5)


def test_a_registered_client_name_is_valid_in_api_type(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[OpenAI]\nAPI_TYPE=local_llm\n")
    custom = llmreplay.OpenAIClient(model="local-model")
    llmreplay.register_client("local_llm", custom)
    assert llmreplay.client() is custom
    assert llmreplay._get_client_for_api_type("local_llm") is custom


def test_pyproject_keys_stay_strict_while_ini_keys_are_lenient(tmp_path: Path) -> None:
    # config.ini is TinyTroupe's file (shared with its other settings); pyproject's
    # [tool.llmreplay] is ours alone, so a typo there is still an error.
    (tmp_path / "config.ini").write_text("[OpenAI]\nMODLE=x\n")
    assert load_config(tmp_path).model == "gpt-4o-mini"
    (tmp_path / "pyproject.toml").write_text("[tool.llmreplay]\nMODLE = 'x'\n")
    with pytest.raises(llmreplay.ConfigError, match="MODLE"):
        load_config(tmp_path)


def test_default_and_config_read_like_tinytroupe_module_names(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_bytes((TINYTROUPE / "config.ini").read_bytes())
    openai_utils = llmreplay  # what a TinyTroupe project writes: import llmreplay as openai_utils
    assert openai_utils.default["model"] == "gpt-5-mini"
    assert openai_utils.default["exponential_backoff_factor"] == 5.0
    assert openai_utils.config["OpenAI"]["API_TYPE"] == "openai"
    assert openai_utils.config["Simulation"].getboolean("PARALLEL_AGENT_ACTIONS") is True
    assert openai_utils.config.get("Logging", "LOGLEVEL") == "ERROR"
    assert "Cognition" in openai_utils.config
    openai_utils.default["max_attempts"] = 2  # TinyTroupe's force_default_value did this
    assert llmreplay.client().config.max_attempts == 2
    assert "max_content_display_length" not in openai_utils.default
    assert set(openai_utils.default) >= {"model", "max_tokens", "cache_file_name"}
    assert openai_utils.logger.name == "llmreplay"
