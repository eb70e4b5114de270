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


def test_mustache_files_render_with_mustache_semantics(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # TinyTroupe's prompts: {{#section}}, {{^inverted}}, {{{raw}}}, partials; what jinja2
    # would reject with a TemplateSyntaxError.
    (tmp_path / "system.mustache").write_text(
        "{{> persona}}{{#tools}}Tool: {{name}}\n{{/tools}}{{^tools}}No tools.\n{{/tools}}"
        "Raw: {{{raw}}} Escaped: {{raw}} Missing: [{{nothing}}]"
    )
    (tmp_path / "persona.mustache").write_text("I am {{who}}.\n")
    client = llmreplay.OpenAIClient(base_url=server.url)
    call = llmreplay.LLMCall(
        "system.mustache", "Say {{word}}", client=client, templates_dir=tmp_path
    )
    system, user = call.render(who="Ada", tools=[{"name": "search"}], raw="<a&b>", word="hi")
    assert system["content"] == (
        "I am Ada.\nTool: search\nRaw: <a&b> Escaped: &lt;a&amp;b&gt; Missing: []"
    )
    assert user["content"] == "Say hi"  # inline text stays Jinja2 unless engine="mustache"
    assert call.render(who="Bo", tools=[], raw="", word="x")[0]["content"].startswith(
        "I am Bo.\nNo tools.\n"
    )
    inline = llmreplay.LLMCall("{{#items}}- {{.}}\n{{/items}}", engine="mustache", client=client)
    assert inline.call(items=["a", "b"]) == "echo: - a\n- b\n"
    assert json.loads(server.requests[0].body)["messages"][0]["content"] == "- a\n- b\n"
    client.close()


def test_mustache_errors_name_the_template(tmp_path: Path) -> None:
    with pytest.raises(llmreplay.ConfigError, match=r"nowhere\.mustache"):
        llmreplay.LLMCall("nowhere.mustache", templates_dir=tmp_path).render()
    with pytest.raises(llmreplay.ConfigError, match="mustache template"):
        llmreplay.LLMCall("{{#a}}x{{/b}}", engine="mustache").render(a=True)
    with pytest.raises(llmreplay.ConfigError, match="jinja2 or mustache"):
        llmreplay.LLMCall("x", engine="handlebars")
