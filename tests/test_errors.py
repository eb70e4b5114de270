"""Errors: one tree, structured fields, messages that say what to do."""

from __future__ import annotations

import pytest

import llmreplay
from llmreplay._errors import sdk_transparent


@pytest.mark.parametrize(
    "cls",
    [
        llmreplay.CassetteError,
        llmreplay.CassetteMiss,
        llmreplay.ConfigError,
        llmreplay.InvalidRequestError,
        llmreplay.NonTerminalError,
    ],
)
def test_every_error_has_the_one_base(cls: type[Exception]) -> None:
    assert issubclass(cls, llmreplay.LLMReplayError)


def test_config_error_names_value_and_source() -> None:
    with pytest.raises(llmreplay.ConfigError) as info:
        llmreplay.Mode.parse("replya", source="--llm-mode")
    assert (info.value.setting, info.value.value, info.value.source) == (
        "mode",
        "replya",
        "--llm-mode",
    )
    assert str(info.value) == (
        "'replya' from --llm-mode is not a valid mode; "
        "expected one of: live, record, replay, auto, once"
    )


def test_modes_parse_leniently_and_know_what_they_do() -> None:
    assert llmreplay.Mode.parse(" Auto ") is llmreplay.Mode.AUTO
    assert [m.reads for m in llmreplay.Mode] == [False, False, True, True, False]
    assert [m.writes for m in llmreplay.Mode] == [False, True, False, True, False]
    # once resolves to replay for a file that exists and record for one that does not.
    assert llmreplay.Mode.ONCE.resolve(True) is llmreplay.Mode.REPLAY
    assert llmreplay.Mode.ONCE.resolve(False) is llmreplay.Mode.RECORD
    assert llmreplay.Mode.AUTO.resolve(False) is llmreplay.Mode.AUTO
    with pytest.raises(llmreplay.ConfigError):
        llmreplay.Mode.parse(3)  # type: ignore[arg-type]


def test_sdk_transparent_misses_are_still_misses_and_sdk_errors() -> None:
    import anthropic
    import openai

    miss = llmreplay.CassetteMiss(
        path="p", mode="replay", method="GET", url="/", key="k", reason="r"
    )
    passed = sdk_transparent(miss)
    assert isinstance(passed, llmreplay.CassetteMiss)
    assert isinstance(passed, anthropic.AnthropicError)
    assert isinstance(passed, openai.OpenAIError)
    assert "To record it" in str(passed)
