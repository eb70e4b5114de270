"""The public surface: ``__all__`` is complete and sorted, and DESIGN.md's names import."""

from __future__ import annotations

from types import ModuleType

import pytest

import llmreplay


def test_all_is_complete_without_duplicates() -> None:
    # (Its order is ruff's RUF022 isort-style sort, checked by the linter.)
    public = {
        name
        for name, value in vars(llmreplay).items()
        if (not name.startswith("_") or name == "__version__")
        and name != "annotations"
        and (not isinstance(value, ModuleType) or name == "faults")  # not pytest_plugin
    }
    assert len(llmreplay.__all__) == len(set(llmreplay.__all__))
    assert set(llmreplay.__all__) == public


def test_design_names_for_the_core_import() -> None:
    for name in ("cassette", "LLMReplayError", "CassetteError", "CassetteMiss", "ConfigError"):
        assert hasattr(llmreplay, name)
    cas = llmreplay.cassette("fixtures/cassettes/none.msgpack")
    for method in ("transport", "openai_client", "async_openai_client", "save"):
        assert callable(getattr(cas, method))
    assert isinstance(cas.stats, llmreplay.Stats)


def test_design_names_for_the_client_layer_import() -> None:
    names = (
        "client",
        "OpenAIClient",
        "AzureClient",
        "register_client",
        "force_api_type",
        "force_api_cache",
        "force_default_value",
        "LLMCall",
        "get_embedding",
        "count_tokens",
        "InvalidRequestError",
        "NonTerminalError",
    )
    assert [name for name in names if not hasattr(llmreplay, name)] == []
    assert callable(llmreplay.OpenAIClient().send_message)


@pytest.mark.parametrize("module", ["llmreplay", "llmreplay.pytest_plugin"])
def test_importing_loads_no_optional_package(module: str) -> None:
    # The plugin loads in every pytest run of every project that installs llmreplay.
    import subprocess
    import sys

    code = (
        f"import sys, {module}; print(sorted(m for m in ('openai', 'anthropic', 'tiktoken', "
        "'jinja2', 'vcr', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exported_classes_read_as_llmreplay_in_tracebacks() -> None:
    assert llmreplay.CassetteMiss.__module__ == "llmreplay"
    assert repr(llmreplay.Mode.AUTO) == "<Mode.AUTO: 'auto'>"
