"""LLMCall: templates rendered with Jinja2 (inline or from files), sent, answered."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

import llmreplay
from tests.server import LoopbackServer


def test_inline_templates_render_and_call(server: LoopbackServer) -> None:
    client = llmreplay.OpenAIClient(base_url=server.url)
    call = llmreplay.LLMCall(
        "You summarise {{ kind }} text.", "Summarise: {{ text }}", client=client, temperature=0
    )
    assert call.call(kind="legal", text="the contract") == "echo: Summarise: the contract"
    sent = json.loads(server.requests[0].body)
    assert sent["messages"] == [
        {"role": "system", "content": "You summarise legal text."},
        {"role": "user", "content": "Summarise: the contract"},
    ]
    assert sent["temperature"] == 0
    assert call.reply.content == "echo: Summarise: the contract"
    client.close()


def test_file_templates_and_structured_output(server: LoopbackServer, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "system.j2").write_text("You are {{ persona }}.")
    (prompts / "user.md").write_text("{% for item in items %}- {{ item }}\n{% endfor %}")

    class Summary(pydantic.BaseModel):
        answer: str

    client = llmreplay.OpenAIClient(base_url=server.url)
    call = llmreplay.LLMCall(
        "system.j2", "user.md", client=client, templates_dir=prompts, response_format=Summary
    )
    result = call.call(persona="terse", items=["a", "b"])
    assert result == Summary(answer="echo: - a\n- b\n")
    assert call.messages[0] == {"role": "system", "content": "You are terse."}
    client.close()


def test_errors_name_the_template_and_variable(tmp_path: Path) -> None:
    call = llmreplay.LLMCall("Hi {{ name }}", templates_dir=tmp_path)
    with pytest.raises(llmreplay.ConfigError, match="name"):
        call.render()
    missing = llmreplay.LLMCall("nowhere.j2", templates_dir=tmp_path)
    with pytest.raises(llmreplay.ConfigError, match=r"nowhere\.j2"):
        missing.render()


def test_repr_shows_what_the_call_is() -> None:
    call = llmreplay.LLMCall("sys", "user {{ x }}", temperature=0.2)
    assert repr(call) == (
        "LLMCall(system_template='sys', user_template='user {{ x }}', "
        "model_params={'temperature': 0.2})"
    )
