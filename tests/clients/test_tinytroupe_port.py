"""A TinyTroupe project switched by one import: ``import llmreplay as openai_utils``.

The call patterns below are written the way TinyTroupe's agent, enricher, story and test
code use ``openai_utils`` (written here, not copied): ``send_message`` with its keyword
arguments, dict access on the reply, ``LLMCall`` with mustache templates, ``force_api_cache``,
``force_default_value``, and TinyTroupe's own ``config.ini``. They run against the loopback
server, then again from the cache with the server stopped.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

import llmreplay
import llmreplay as openai_utils  # the one line a TinyTroupe project changes
from llmreplay._clients import reset
from tests.server import LoopbackServer

CONFIG = Path(__file__).parent / "fixtures" / "tinytroupe" / "config.ini"

SYSTEM_MUSTACHE = """\
You are {{name}}.
{{#context_info}}Context: {{{context_info}}}
{{/context_info}}{{^context_info}}No extra context.
{{/context_info}}Rules:
{{#rules}}- {{.}}
{{/rules}}"""
USER_MUSTACHE = "Enrich this {{content_type}}: {{{content}}}"


def _run_the_ported_code(prompts: Path) -> dict[str, Any]:
    """TinyTroupe-style call sites; returns what each produced."""
    out: dict[str, Any] = {}

    # agent.py: send the conversation, read the reply as a dict.
    current_messages = [
        {"role": "system", "content": "You are a person."},
        {"role": "user", "content": "What do you think?"},
    ]
    next_message = openai_utils.client().send_message(current_messages)
    out["agent"] = (next_message["role"], next_message["content"])
    assert "content" in next_message and next_message.get("refusal") is None

    # enrichment: sampling arguments and a JSON-schema response format; .get() on the reply.
    schema = {
        "type": "object",
        "properties": {"content": {"type": "string"}},
        "additionalProperties": False,
    }
    next_message = openai_utils.client().send_message(
        [{"role": "user", "content": "enrich: a plain text"}],
        temperature=1.0,
        frequency_penalty=0.0,
        presence_penalty=0.0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "EnrichmentOutput", "schema": schema, "strict": True},
        },
    )
    assert next_message.get("refusal") is None
    out["enrichment"] = next_message.get("parsed") or json.loads(next_message.get("content"))

    # TinyTroupe's own retry and formatting arguments, per call.
    next_message = openai_utils.client().send_message(
        [
            {
                "role": "user",
                "content": """
                    An indented prompt
                      kept relative
                """,
            }
        ],
        max_attempts=2,
        waiting_time=0,
        exponential_backoff_factor=1,
        echo=False,
        dedent_messages=True,
    )
    out["kwargs"] = next_message["content"]

    # story / utils: LLMCall with .mustache templates from the prompts folder.
    call = openai_utils.LLMCall(
        "enricher.system.mustache", "enricher.user.mustache", templates_dir=prompts
    )
    out["llmcall"] = call.call(
        name="an enricher",
        context_info="<b>kept raw</b>",
        rules=["be short", "be kind"],
        content_type="note",
        content="a & b",
    )
    out["llmcall_messages"] = call.messages

    # Embeddings, as TinyTroupe's semantic memory asks for them.
    out["embedding"] = openai_utils.client().get_embedding("a memory")
    return out


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "enricher.system.mustache").write_text(SYSTEM_MUSTACHE)
    (folder / "enricher.user.mustache").write_text(USER_MUSTACHE)
    return folder


def test_ported_code_runs_live_then_from_the_cache_with_the_server_stopped(
    server: LoopbackServer, tmp_path: Path, prompts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given TinyTroupe's shipped config.ini, unchanged, pointed at the loopback server.
    (tmp_path / "config.ini").write_bytes(CONFIG.read_bytes())
    monkeypatch.setenv("LLMREPLAY_BASE_URL", server.url)

    def configure() -> None:  # what TinyTroupe's tests do at the top
        openai_utils.force_api_cache(True, "tests_cache.pickle")
        openai_utils.force_default_value("temperature", 0.5)

    configure()
    live = _run_the_ported_code(prompts)
    openai_utils.client().close()

    # What went out: TinyTroupe's settings, not its client-side options.
    sent = [json.loads(r.body) for r in server.requests if r.path.endswith("/chat/completions")]
    assert len(sent) == 4 and len(server.requests) == 5  # + one embedding
    assert all(s["model"] == "gpt-5-mini" for s in sent)  # MODEL from config.ini
    assert all(s["max_completion_tokens"] == 32000 for s in sent)  # MAX_COMPLETION_TOKENS
    assert sent[0]["temperature"] == 0.5  # force_default_value
    assert sent[1]["temperature"] == 1.0 and sent[1]["frequency_penalty"] == 0.0
    for option in ("max_attempts", "waiting_time", "exponential_backoff_factor", "echo"):
        assert option not in sent[2]
    assert sent[2]["messages"][0]["content"] == "An indented prompt\n  kept relative"
    assert sent[3]["messages"] == live["llmcall_messages"]

    # What came back, read as TinyTroupe read it.
    assert live["agent"] == ("assistant", "echo: What do you think?")
    assert live["enrichment"] == {"content": "echo: enrich: a plain text"}
    assert live["kwargs"] == "echo: An indented prompt\n  kept relative"
    system, user = live["llmcall_messages"]
    assert system["content"] == textwrap.dedent("""\
        You are an enricher.
        Context: <b>kept raw</b>
        Rules:
        - be short
        - be kind
        """)
    assert user["content"] == "Enrich this note: a & b"
    assert live["llmcall"] == "echo: Enrich this note: a & b"
    assert len(live["embedding"]) == 8

    # The cache is msgpack beside the name TinyTroupe gave; no pickle is ever written.
    cache = tmp_path / "tests_cache.msgpack"
    assert cache.read_bytes()[:1] == b"\x84" and not (tmp_path / "tests_cache.pickle").exists()

    # When the server is gone and a new process starts, everything comes from the cache.
    server.stop()
    seen = len(server.requests)
    reset()
    configure()
    assert _run_the_ported_code(prompts) == live
    assert len(server.requests) == seen
    openai_utils.client().close()


def test_reply_reads_as_the_dict_tinytroupe_returned() -> None:
    reply = llmreplay.Reply("hi", refusal=None, parsed={"content": "x"})
    assert reply["content"] == "hi" and reply["role"] == "assistant"
    assert reply.get("refusal") is None and reply.get("missing", 7) == 7
    assert "content" in reply and "refusal" not in reply
    assert list(reply) == ["role", "content", "parsed"]
    assert dict(reply) == {"role": "assistant", "content": "hi", "parsed": {"content": "x"}}
    assert reply == {"role": "assistant", "content": "hi", "parsed": {"content": "x"}}
    assert reply.content == "hi" and reply.parsed == {"content": "x"}  # attributes stay
    with pytest.raises(KeyError):
        reply["tool_calls"]


def test_failures_raise_and_the_two_line_change_restores_none(server: LoopbackServer) -> None:
    # The one deliberate difference: TinyTroupe returned None on failure, llmreplay raises.
    client = llmreplay.OpenAIClient(base_url=server.url, sleep=lambda _: None)
    messages = [{"role": "user", "content": "hi"}]
    bad = {"x-test-status": "400"}
    with pytest.raises(llmreplay.InvalidRequestError):
        client.send_message(messages, extra_headers=bad)

    # The change a call site that relied on None needs:
    try:
        next_message = client.send_message(messages, extra_headers=bad)
    except llmreplay.LLMReplayError:
        next_message = None
    assert next_message is None
    client.close()


def test_reply_dict_view_edges() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    reply = llmreplay.Reply(None, tool_calls=[call], refusal="no")
    assert reply["tool_calls"] == [call] and reply["refusal"] == "no" and len(reply) == 4
    assert reply == llmreplay.Reply(None, tool_calls=[call], refusal="no")
    assert reply != llmreplay.Reply("other")
    assert (reply == 3) is False


def test_default_and_config_views_behave_as_mappings(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_bytes(CONFIG.read_bytes())
    default, config = openai_utils.default, openai_utils.config
    default["max_attempts"] = 2
    assert default["max_attempts"] == 2
    del default["max_attempts"]
    assert default["max_attempts"] == 5  # back to config.ini's value
    with pytest.raises(KeyError):
        del default["max_attempts"]
    assert len(default) == 13 and "model" in repr(default)
    assert len(config) == 5 and "Logging" in repr(config)
    assert config.get("OpenAI")["MODEL"] == "gpt-5-mini"  # a section, as Mapping.get
    assert config.getint("OpenAI", "TIMEOUT") == 480
    with pytest.raises(AttributeError):
        config._private  # noqa: B018
