"""Every exception llmreplay raises, under one base class.

```
LLMReplayError
 ├── CassetteError        a cassette file cannot be used: not a cassette, truncated, newer version
 ├── CassetteMiss         replay has no (more) recordings for a request; never goes to the network
 ├── ConfigError          a setting has a bad value; says where the value came from
 ├── RequestRefused       an LLM call outside every cassette, or a credential-less recording
 │    └── NetworkBlocked  a socket connection the --llm-block-network allow-list refuses
 ├── InvalidRequestError  client layer: terminal, the request itself is wrong (400/401/403/404)
 └── NonTerminalError     client layer: worth retrying (rate limit, timeout, connection, 5xx)
```

Each class builds its message from structured fields, which stay available as attributes so
callers and tests can inspect data rather than text.
"""

from __future__ import annotations

from pathlib import Path


class LLMReplayError(Exception):
    """Base class of every error raised by llmreplay."""


class CassetteError(LLMReplayError):
    """A cassette file is unreadable, corrupt, foreign or of a newer format version.

    >>> CassetteError("fixtures/a.msgpack", "truncated").path
    'fixtures/a.msgpack'
    """

    def __init__(self, path: str | Path, problem: str, *, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint or (
            "Re-record it (delete the file and run with mode='record' or --llm-mode=record) "
            "or restore it from version control."
        )
        super().__init__(f"cassette {self.path}: {problem}. {self.hint}")


class CassetteMiss(LLMReplayError):
    """Replay found no recording for a request, so nothing was sent anywhere.

    Fields: ``path`` (the cassette), ``mode`` and ``mode_source`` (where the mode was set),
    ``method``, ``url``, ``key``, ``reason``
    and ``closest`` (the nearest recorded request as ``"METHOD path"``, or ``None``) with
    ``diff`` (a unified diff of the canonical requests, or ``""``).
    """

    def __init__(
        self,
        *,
        path: str,
        mode: str,
        method: str,
        url: str,
        key: str,
        reason: str,
        closest: str | None = None,
        diff: str = "",
        mode_source: str = "",
    ) -> None:
        self.path = path
        self.mode = mode
        self.mode_source = mode_source
        self.method = method
        self.url = url
        self.key = key
        self.reason = reason
        self.closest = closest
        self.diff = diff
        lines = [
            f"no recording for {method} {url} in cassette {path} "
            f"(mode={mode}{', from ' + mode_source if mode_source else ''}): {reason}.",
            f"  request key: {key}",
        ]
        if closest is not None:
            lines.append(f"  closest recorded request: {closest}")
            if diff:
                lines.append("  difference (- recorded, + this request):")
                lines.extend("    " + line for line in diff.splitlines())
        if reason == "the cassette file does not exist yet":
            lines.append(
                "  (a recording run does not store error answers such as 429 or 5xx, nor "
                "streams upstream cut: record_errors=True keeps them)"
            )
        lines.append(
            "To record it, run with mode='record' or mode='auto' "
            "(pytest: --llm-mode=record, or LLMREPLAY_MODE=auto to record only what is missing)."
        )
        super().__init__("\n".join(lines))


class ConfigError(LLMReplayError):
    """A setting has a bad value. ``setting``, ``value`` and ``source`` say which and where.

    >>> str(ConfigError("mode", "replya", "--llm-mode", "expected one of: live, record"))
    "'replya' from --llm-mode is not a valid mode; expected one of: live, record"
    """

    def __init__(self, setting: str, value: object, source: str, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.source = source
        self.expected = expected
        super().__init__(f"{value!r} from {source} is not a valid {setting}; {expected}")


class RequestRefused(LLMReplayError):
    """A request was refused before anything was sent: ``host`` and ``path`` say which,
    ``where`` what was running (a test's node id), ``reason`` why and ``hint`` how to fix it.
    """

    def __init__(self, *, host: str, path: str, where: str, reason: str, hint: str) -> None:
        self.host = host
        self.path = path
        self.where = where
        self.reason = reason
        self.hint = hint
        place = f" in {where}" if where else ""
        super().__init__(
            f"llmreplay refused a request to {host}{path}{place}: {reason}; nothing was sent. "
            f"{hint}"
        )


class NetworkBlocked(RequestRefused):
    """A socket connection to a host not on the allow-list (``--llm-block-network``)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        where: str,
        by: str = "--llm-block-network",
        hint: str = "Add it to --llm-allow-hosts (ini llm_allow_hosts) if the test may reach it.",
    ) -> None:
        self.port = port
        super().__init__(
            host=host,
            path=f":{port}",
            where=where,
            reason=f"the network is blocked ({by}) and this host is not allowed",
            hint=hint,
        )


class InvalidRequestError(LLMReplayError):
    """The provider refused the request itself (400/401/403/404): retrying cannot help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class NonTerminalError(LLMReplayError):
    """A failure worth retrying (rate limit, timeout, connection error, 5xx) that persisted."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        self.status = status
        self.attempts = attempts
        super().__init__(message)


# The anthropic SDK wraps any exception a transport raises in APIConnectionError and
# retries it with backoff, unless it is an AnthropicError. A CassetteMiss must reach the
# test at once, unretried and unwrapped, so it is raised as a subclass that is also the
# loaded SDKs' base error. ``except llmreplay.CassetteMiss`` still catches it.
_SDK_BASES = (("anthropic", "AnthropicError"), ("openai", "OpenAIError"))
_transparent: dict[type[LLMReplayError], type[LLMReplayError]] = {}


def sdk_transparent(exc: LLMReplayError) -> LLMReplayError:
    """``exc``, re-classed so that the loaded LLM SDKs let it through unwrapped."""
    import sys

    bases = tuple(
        base
        for module, name in _SDK_BASES
        if (base := getattr(sys.modules.get(module), name, None)) is not None
        and not isinstance(exc, base)
    )
    if bases:
        key = type(exc)
        cls = _transparent.get(key)
        if cls is None or not all(issubclass(cls, b) for b in bases):
            cls = type(key.__name__, (key, *bases), {"__module__": "llmreplay"})
            assert issubclass(cls, LLMReplayError)
            _transparent[key] = cls
        exc.__class__ = cls
    return exc
