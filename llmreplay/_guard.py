"""The seal: which requests outside every cassette are refused, and the socket-level block.

Two guards, both off unless the pytest plugin (or a caller) turns them on:

- ``Guard`` refuses a captured request that no cassette covers when it looks like an LLM
  API call: a known provider host (OpenAI, Azure OpenAI, Anthropic, Gemini/Vertex, Groq,
  Mistral, Cohere, OpenRouter, Bedrock, ...) or an LLM-shaped path on any host
  (``/v1/chat/completions``, ``/v1/messages``, ``/api/chat``, ``:generateContent``, ...),
  so local gateways, vLLM and Ollama count too. Any other HTTP traffic is untouched.
- ``SocketBlock`` refuses every socket connection of any library to an address that is not
  on its allow-list (loopback by default), for suites that want to be sealed entirely.

The decisions (``looks_like_llm``, ``SocketBlock.allows``) are pure functions of the
address, so they are tested without sending anything anywhere.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ._errors import NetworkBlocked, RequestRefused

# Exact hosts, and suffixes (a leading dot) of provider API hosts.
LLM_HOSTS = frozenset(
    {
        "api.openai.com",
        ".openai.azure.com",
        ".cognitiveservices.azure.com",
        ".services.ai.azure.com",
        ".models.ai.azure.com",
        "models.inference.ai.azure.com",
        "models.github.ai",
        "api.anthropic.com",
        "generativelanguage.googleapis.com",
        "aiplatform.googleapis.com",
        "-aiplatform.googleapis.com",
        "api.groq.com",
        "api.mistral.ai",
        "codestral.mistral.ai",
        "api.cohere.com",
        "api.cohere.ai",
        "openrouter.ai",
        ".amazonaws.com",  # only bedrock hosts: see _is_llm_host
        "api.together.xyz",
        "api.together.ai",
        "api.fireworks.ai",
        "api.deepseek.com",
        "api.x.ai",
        "api.perplexity.ai",
        "api.cerebras.ai",
        "api-inference.huggingface.co",
        "router.huggingface.co",
        "api.replicate.com",
        "gateway.ai.cloudflare.com",
        "oai.helicone.ai",
        "anthropic.helicone.ai",
        "api.portkey.ai",
        "api.voyageai.com",
        "api.ai21.com",
        "api.deepinfra.com",
        "api.novita.ai",
        "api.sambanova.ai",
        "inference.baseten.co",
    }
)

# Paths of LLM APIs on any host: OpenAI-compatible servers (vLLM, LM Studio, llama.cpp,
# LiteLLM proxy, gateways), Anthropic's, Ollama's, Gemini's and Bedrock's shapes.
LLM_PATH = re.compile(
    r"""(
        /chat/completions$ | /completions$ | /responses(/[^/]+)?$ | /messages$
      | /v1/models(/[^/]+)?$
      | /messages/count_tokens$ | /embeddings$ | /complete$ | /moderations$
      | /audio/(speech|transcriptions|translations)$ | /images/(generations|edits)$
      | /api/(chat|generate|embed|embeddings)$ | /v2/(chat|embed|rerank)$ | /rerank$
      | :(stream)?[gG]enerateContent$ | :(batch)?[eE]mbedContents?$ | :countTokens$
      | :(raw)?[pP]redict$
      | /model/[^/]+/(invoke|invoke-with-response-stream|converse|converse-stream)$
    )""",
    re.VERBOSE,
)


def _is_llm_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in LLM_HOSTS:
        return True
    if host.endswith(".amazonaws.com"):
        return host.startswith(("bedrock-runtime.", "bedrock.", "bedrock-agent-runtime."))
    return any(suffix[0] in ".-" and host.endswith(suffix) for suffix in LLM_HOSTS)


def looks_like_llm(url: str) -> bool:
    """Whether a request to ``url`` looks like an LLM API call (host or path).

    >>> looks_like_llm("https://api.openai.com/v1/models")
    True
    >>> looks_like_llm("http://127.0.0.1:11434/api/chat")
    True
    >>> looks_like_llm("https://example.com/search")
    False
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    return _is_llm_host(host) or bool(LLM_PATH.search(parts.path.rstrip("/") or "/"))


class Guard:
    """Refuses LLM-shaped requests that no cassette covers.

    ``where`` names what is running (the pytest plugin keeps it set to the current test's
    node id); ``hint`` is how to fix it in that setting. A guard with ``enabled=False``
    refuses nothing (a live pytest run inside a sealed one).
    """

    def __init__(self, *, mode: str, hint: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.mode = mode
        self.hint = hint
        self.where = ""
        self.refused = 0
        self._lock = threading.Lock()

    def check(self, url: str) -> None:
        """Raise ``RequestRefused`` if ``url`` looks like an LLM call; else return."""
        if not self.enabled or not looks_like_llm(url):
            return
        with self._lock:
            self.refused += 1
        from ._scrub import redact_message  # a key pasted into a path is never printed

        parts = urlsplit(url)
        raise RequestRefused(
            host=parts.hostname or "",
            path=redact_message(parts.path or "/", []),
            where=self.where,
            reason=f"it is outside every cassette (mode={self.mode})",
            hint=self.hint,
        )


# -- the socket-level block --------------------------------------------------------------

LOOPBACK = ("localhost", "127.0.0.0/8", "::1")


class SocketBlock:
    """Refuses socket connections to hosts not on ``allow`` (names, IPs or networks).

    ``install()`` patches ``socket.socket.connect``/``connect_ex``; ``uninstall()`` restores
    them. Only IPv4/IPv6 sockets are looked at (Unix sockets pass).
    """

    def __init__(self, allow: Iterable[str] = LOOPBACK, *, where: Callable[[], str] = str):
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.rstrip("."))
        self._where = where
        self._saved: tuple[Any, Any] | None = None

    def allows(self, host: str) -> bool:
        """Whether a connection to ``host`` (an IP address or a name) is allowed."""
        host = host.split("%", 1)[0].lower().rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.names or any(host.endswith("." + n) for n in self.names)
        return any(address in network for network in self.networks)

    def check(self, family: int, address: Any) -> None:
        if family not in (socket.AF_INET, socket.AF_INET6):
            return
        host = str(address[0])
        if not self.allows(host):
            raise NetworkBlocked(host=host, port=int(address[1]), where=self._where())

    def install(self) -> None:
        if self._saved is not None:
            return
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
        self._saved = (connect, connect_ex)
        block = self

        def refuse(sock: socket.socket, address: Any) -> None:
            try:
                block.check(sock.family, address)
            except NetworkBlocked:
                sock.close()  # callers that only expect OSError would leak it otherwise
                raise

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            refuse(sock, address)
            connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            refuse(sock, address)
            return connect_ex(sock, address)

        socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        if self._saved is not None:
            socket.socket.connect, socket.socket.connect_ex = self._saved  # type: ignore[method-assign]
            self._saved = None


class PatternBlock(SocketBlock):
    """pytest-recording's ``block_network``: every IPv4/IPv6 connection is refused, loopback
    included, unless its host matches one of ``allowed`` (regular expressions, matched at
    the start as ``re.match`` does: pytest-recording's ``allowed_hosts``)."""

    def __init__(self, allowed: Iterable[str] | None, *, where: Callable[[], str] = str):
        super().__init__((), where=where)
        self.patterns = [p for p in (allowed or ()) if p]
        self._combined = (
            re.compile("(" + ")|(".join(self.patterns) + ")") if self.patterns else None
        )

    def allows(self, host: str) -> bool:
        return self._combined is not None and self._combined.match(host) is not None

    def check(self, family: int, address: Any) -> None:
        if family not in (socket.AF_INET, socket.AF_INET6):
            return
        host = str(address[0])
        if not self.allows(host):
            raise NetworkBlocked(
                host=host,
                port=int(address[1]),
                where=self._where(),
                by="@pytest.mark.block_network / --block-network, loopback included, as "
                "pytest-recording",
                hint="Allow it with @pytest.mark.block_network(allowed_hosts=[...]), "
                "--allowed-hosts or vcr_config's allowed_hosts (regular expressions, e.g. "
                "'127\\.0\\.0\\.1').",
            )
