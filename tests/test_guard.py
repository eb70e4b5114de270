"""The seal's decisions, on addresses alone (nothing is sent to a non-loopback address),
and the plugin's socket block proven by blocking loopback itself through the allow-list."""

from __future__ import annotations

import pytest

from llmreplay._guard import LOOPBACK, Guard, SocketBlock, looks_like_llm
from tests.helpers import fake_key
from tests.server import LoopbackServer

LLM_CALLS = [
    "https://api.openai.com/v1/models",
    "https://my-res.openai.azure.com/openai/deployments/d/chat/completions?api-version=1",
    "https://api.anthropic.com/v1/messages",
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5:generateContent",
    "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/l/x:predict",
    "https://api.groq.com/openai/v1/chat/completions",
    "https://api.mistral.ai/v1/chat/completions",
    "https://api.cohere.com/v2/chat",
    "https://openrouter.ai/api/v1/chat/completions",
    "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude/invoke",
    "http://127.0.0.1:11434/api/chat",  # Ollama
    "http://localhost:8000/v1/chat/completions",  # vLLM
    "http://gateway.internal/v1/responses",
    "http://gateway.internal/v1/embeddings",
    "http://gateway.internal/v1/messages",
    "http://127.0.0.1:8000/v1/models",  # an OpenAI-compatible server's model list
]
OTHER_TRAFFIC = [
    "https://example.com/search?q=x",
    "https://s3.us-east-1.amazonaws.com/bucket/key",
    "http://127.0.0.1:8080/health",
    "https://pypi.org/simple/openai/",
    "http://[::1/broken",
]


@pytest.mark.parametrize("url", LLM_CALLS)
def test_llm_calls_are_recognised_by_host_or_path(url: str) -> None:
    assert looks_like_llm(url)


@pytest.mark.parametrize("url", OTHER_TRAFFIC)
def test_other_traffic_is_not(url: str) -> None:
    assert not looks_like_llm(url)


def test_the_guard_refuses_with_where_and_how_to_fix() -> None:
    guard = Guard(mode="replay", hint="Give it a cassette.")
    guard.where = "tests/test_x.py::test_y"
    guard.check("https://example.com/")  # passes
    with pytest.raises(Exception) as info:
        guard.check("https://api.openai.com/v1/chat/completions")
    text = str(info.value)
    assert "api.openai.com/v1/chat/completions" in text and "tests/test_x.py::test_y" in text
    assert "Give it a cassette." in text and guard.refused == 1
    Guard(mode="live", hint="", enabled=False).check("https://api.openai.com/v1/models")
    key = fake_key("sk-proj-")
    with pytest.raises(Exception) as info:
        guard.check(f"http://gw.internal/keys/{key}/v1/chat/completions")
    assert key not in str(info.value) and "<redacted>" in str(info.value)


def test_the_socket_block_decides_on_names_ips_and_networks() -> None:
    block = SocketBlock(LOOPBACK)
    assert block.allows("127.0.0.1") and block.allows("127.8.9.1") and block.allows("::1")
    assert block.allows("localhost")
    assert not block.allows("192.0.2.1") and not block.allows("api.openai.com")
    custom = SocketBlock(["10.0.0.0/8", "internal.example"])
    assert custom.allows("10.1.2.3") and custom.allows("svc.internal.example")
    assert not custom.allows("127.0.0.1")


def test_block_network_refuses_what_the_allow_list_leaves_out(
    pytester: pytest.Pytester, server: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_sock=f"""
        import httpx2

        def test_health():
            httpx2.get({server.origin + "/health"!r})
        """
    )
    # Loopback is allowed by default ...
    pytester.runpytest("--llm-block-network").assert_outcomes(passed=1)
    # ... and refused once the allow-list leaves it out: the block is real.
    blocked = pytester.runpytest("--llm-block-network", "--llm-allow-hosts=internal.example")
    blocked.assert_outcomes(failed=1)
    blocked.stdout.fnmatch_lines(["*NetworkBlocked*127.0.0.1*test_sock.py::test_health*"])
    assert len(server.requests) == 1
    pytester.makeini("[pytest]\nllm_block_network = true\nllm_allow_hosts = internal.example\n")
    pytester.runpytest().assert_outcomes(failed=1)
    assert len(server.requests) == 1
