"""TinyTroupe's client surface: per-call options, subclass hooks, and the cache's name.

``TinyTroupeHooks`` is a base of ``BaseClient``: the methods TinyTroupe subclasses override
(``_setup_from_config``, ``_raw_model_call``, ``_raw_model_response_extractor`` and the
embedding pair) with defaults that call this client's own SDK client, plus TinyTroupe's
``set_api_cache`` and ``_count_tokens``. Hooks llmreplay never calls are refused when a
client is made or registered (``check_hooks``), so nothing is silently ignored.
"""

from __future__ import annotations

import logging
import textwrap
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import ConfigError, LLMReplayError
from .chat import call
from .config import ClientConfig
from .reply import Reply

logger = logging.getLogger("llmreplay")
Messages = Sequence[Mapping[str, Any]]

# TinyTroupe's send_message arguments that steer this layer rather than the request.
CALL_OPTIONS = (
    "max_attempts",
    "waiting_time",
    "exponential_backoff_factor",
    "dedent_messages",
    "enable_pydantic_model_return",
    "echo",
)
# TinyTroupe hooks that llmreplay does not call: refused at registration (see check_hooks).
UNSUPPORTED_HOOKS = {
    "_save_cache": "the cache is a msgpack cassette that llmreplay saves itself",
    "_load_cache": "the cache is a msgpack cassette that llmreplay loads itself",
    "_get_cached_response": "the cache is a msgpack cassette that llmreplay reads itself",
    "_is_reasoning_model": (
        "llmreplay sends parameters as given; for a reasoning model set "
        "MAX_COMPLETION_TOKENS and pass reasoning_effort= (and no temperature) per call"
    ),
}
CHAT_HOOKS = ("_setup_from_config", "_raw_model_call", "_raw_model_response_extractor")
EMBEDDING_HOOKS = (
    "_setup_from_config",
    "_raw_embedding_model_call",
    "_raw_embedding_model_response_extractor",
)


class TinyTroupeHooks:
    """TinyTroupe's overridable methods, with defaults that use this client's SDK client."""

    client: Any  # what _setup_from_config sets: the SDK client _raw_model_call uses
    _settings: dict[str, Any]
    _lock: threading.RLock
    _seen_version: int

    def sdk(self, asynchronous: bool = False) -> Any:  # pragma: no cover - BaseClient's
        raise NotImplementedError

    def set_api_cache(self, cache_api_calls: bool, cache_file_name: str | None = None) -> None:
        """Turn this client's cache on or off, optionally at ``cache_file_name``
        (TinyTroupe's method; ``force_api_cache`` does it for every client)."""
        for key, value in (
            ("cache_api_calls", cache_api_calls),
            ("cache_file_name", cache_file_name),
        ):
            if value is not None:
                ClientConfig().with_value(key, value, "set_api_cache")  # validate, naming it
                self._settings[key] = value
        with self._lock:
            self._seen_version = -1

    def _count_tokens(self, messages: Messages, model: str) -> int | None:
        """Tokens of ``messages`` for ``model``, or ``None`` when they cannot be counted
        (TinyTroupe's method, kept for its logging call sites)."""
        from .._tokens import count_tokens

        try:
            return count_tokens([dict(m) for m in messages], model)
        except (LLMReplayError, ImportError, ValueError, TypeError):
            return None

    def _setup_from_config(self) -> None:
        """TinyTroupe hook, called before each call: set ``self.client``, the SDK client
        that ``_raw_model_call`` uses. The default is this client's own (config, cache)."""
        self.client = self.sdk()

    def _raw_model_call(self, model: str, chat_api_params: dict[str, Any]) -> Any:
        """TinyTroupe hook: call the model with ``chat_api_params`` (``messages`` included)
        and return the raw response. Overriding it replaces the SDK call."""
        params = dict(chat_api_params)
        response_format = params.pop("response_format", None)
        return call(self.client, params, response_format)

    def _raw_model_response_extractor(self, response: Any) -> Any:
        """TinyTroupe hook: the message (dict or object) out of a raw response."""
        return response.choices[0].message

    def _raw_embedding_model_call(self, text: str | list[str], model: str) -> Any:
        """TinyTroupe hook: call the embedding model and return the raw response."""
        return self.client.embeddings.create(model=model, input=text)

    def _raw_embedding_model_response_extractor(self, response: Any) -> Any:
        """TinyTroupe hook: the vectors out of a raw embedding response."""
        return [item.embedding for item in response.data]

    def _hooked(self, names: Sequence[str]) -> bool:
        """Whether this class overrides any of the TinyTroupe hooks ``names``."""
        return any(getattr(type(self), n) is not getattr(TinyTroupeHooks, n) for n in names)

    def _log_tokens(self, request: Mapping[str, Any]) -> None:
        # TinyTroupe logged the token count of every request at DEBUG, via _count_tokens.
        if logger.isEnabledFor(logging.DEBUG):
            tokens = self._count_tokens(request["messages"], request["model"])
            logger.debug(
                "sending %d message(s) to %s, %s tokens",
                len(request["messages"]),
                request["model"],
                tokens,
            )

    @classmethod
    def check_hooks(cls) -> None:
        """Raise ``ConfigError`` if the class overrides a TinyTroupe hook that llmreplay
        never calls (``register_client`` runs this, so nothing is silently ignored)."""
        for name, why in UNSUPPORTED_HOOKS.items():
            if name in {n for klass in cls.__mro__ for n in vars(klass)}:
                raise ConfigError(
                    "client hook",
                    f"{cls.__name__}.{name}",
                    "a client class (checked when made or registered)",
                    f"llmreplay never calls it: {why}; remove the override",
                )


def cache_path(name: str) -> Path:
    """Where the cache lives: ``CACHE_FILE_NAME``, with TinyTroupe's ``.pickle`` suffix
    turned into ``.msgpack`` (llmreplay never reads or writes pickle; convert an old cache
    once with ``llmreplay import-pickle``)."""
    path = Path(name)
    if path.suffix == ".pickle":
        target = path.with_suffix(".msgpack")
        if path.exists() and not target.exists():
            _warn_pickle(path, target)
        return target
    return path


_warned_pickles: set[str] = set()


def _warn_pickle(path: Path, target: Path) -> None:
    if str(path) in _warned_pickles:
        return
    _warned_pickles.add(str(path))
    logger.warning(
        "the cache %s is a pickle, which llmreplay never loads; the cache is %s. To keep "
        "its answers, convert it once: llmreplay import-pickle %s --trust -o %s",
        path,
        target,
        path,
        target,
    )


def dedented(message: Mapping[str, Any]) -> dict[str, Any]:
    # TinyTroupe's dedent: common indentation removed, then surrounding blank space.
    out = dict(message)
    if isinstance(out.get("content"), str):
        out["content"] = textwrap.dedent(out["content"]).strip()
    return out


def returned(reply: Reply, options: Mapping[str, Any]) -> Any:
    """What send_message returns: the ``Reply``, or with TinyTroupe's
    ``enable_pydantic_model_return=True`` the parsed object when there is one."""
    if options.get("enable_pydantic_model_return") and reply.parsed is not None:
        return reply.parsed
    return reply
