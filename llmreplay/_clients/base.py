"""``BaseClient``: send_message and get_embedding with retries, a cassette as cache.

One SDK client per configuration and kind (sync/async, cached/not), built once and reused
(the SDK clients are thread-safe). The SDK's own retries are off (``max_retries=0``) so
attempts are not multiplied; this layer retries by ``RetryPolicy`` with an injectable
``sleep``. With caching on, requests go through a cassette in ``auto`` mode at
``CACHE_FILE_NAME``: a hit costs no network, a miss is called and stored. Inside an active
``llmreplay.cassette()`` block (and so in the pytest plugin) the cache steps aside and the
active cassette's mode rules.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .. import _patch
from .._errors import InvalidRequestError, NonTerminalError
from .config import ClientConfig, load_config
from .retry import RetryPolicy, is_retryable, is_terminal, retry_after, status_of

if TYPE_CHECKING:
    import openai

    from .._cassette import Cassette

Messages = Sequence[Mapping[str, Any]]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Reply:
    """The assistant's message: ``content``, ``tool_calls``, ``refusal``, and ``parsed``
    (the pydantic object or JSON a ``response_format`` asked for); ``completion`` is the
    SDK's whole ChatCompletion."""

    content: str | None
    tool_calls: list[Any] = field(default_factory=list)
    refusal: str | None = None
    parsed: Any = None
    completion: Any = None
    role: str = "assistant"

    def as_dict(self) -> dict[str, Any]:
        """The message as a chat message dict (TinyTroupe's return shape)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                c.model_dump() if hasattr(c, "model_dump") else c for c in self.tool_calls
            ]
        if self.refusal:
            out["refusal"] = self.refusal
        return out


# Forced settings (force_api_cache, force_default_value), shared by every client; the
# version lets clients notice a change without re-reading their files on every call.
_forced: dict[str, tuple[Any, str]] = {}
_forced_version = [0]
_forced_lock = threading.Lock()


def force(key: str, value: Any, source: str) -> None:
    ClientConfig().with_value(key, value, source)  # validate now, naming the caller
    with _forced_lock:
        _forced[key] = (value, source)
        _forced_version[0] += 1


def unforce_all() -> None:
    with _forced_lock:
        _forced.clear()
        _forced_version[0] += 1


class BaseClient:
    """What every LLM client does; subclasses say how to build their SDK client."""

    api_type: ClassVar[str] = "openai"

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        folder: str | None = None,
        sleep: Callable[[float], None] | None = None,
        asleep: Callable[[float], Awaitable[None]] | None = None,
        policy: RetryPolicy | None = None,
        **settings: Any,
    ) -> None:
        self._given = config
        self._folder = folder
        self._settings = settings
        self._sleep = sleep or time.sleep
        self._asleep = asleep
        self._policy = policy
        self._lock = threading.RLock()
        self._sdks: dict[tuple[bool, str | None], Any] = {}
        self._retired: list[tuple[tuple[bool, str | None], Any]] = []
        self._cache: Cassette | None = None
        self._seen_version = -1
        self._config = ClientConfig()
        self.waits: list[float] = []  # every backoff this client asked for, in order

    # -- configuration -------------------------------------------------------------------

    @property
    def config(self) -> ClientConfig:
        """The settings in force: arguments > forced values > env > files > defaults."""
        with self._lock:
            if self._seen_version != _forced_version[0]:
                base = self._given or load_config(self._folder, **self._settings)
                with _forced_lock:
                    forced = dict(_forced)
                for key, (value, source) in forced.items():
                    if key not in self._settings:
                        base = base.with_value(key, value, source)
                self._config = base
                self._seen_version = _forced_version[0]
                # Settings changed: build SDK clients afresh; close the old ones with ours.
                self._retired.extend(self._sdks.items())
                self._sdks.clear()
            return self._config

    @property
    def policy(self) -> RetryPolicy:
        if self._policy is not None:
            return self._policy
        c = self.config
        return RetryPolicy(
            c.max_attempts, c.waiting_time, c.backoff_factor, c.max_backoff, c.jitter
        )

    # -- SDK clients ---------------------------------------------------------------------

    def _build(self, asynchronous: bool, http_client: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _deployment(self, model: str) -> str:
        return model

    def _cassette(self) -> Cassette | None:
        config = self.config
        if not config.cache_api_calls or _patch.is_patched():
            return None
        if self._cache is None or str(self._cache.path) != config.cache_file_name:
            from .._cassette import Cassette

            self._cache = Cassette(config.cache_file_name, mode="auto", allow_repeats=True)
        return self._cache

    def sdk(self, asynchronous: bool = False) -> Any:
        """The SDK client in use (built once per configuration and kind)."""
        import httpx2

        cache = self._cassette()
        key = (asynchronous, None if cache is None else str(cache.path))
        with self._lock:
            client = self._sdks.get(key)
            if client is None:
                transport = None if cache is None else cache.transport()
                http: Any = (
                    httpx2.AsyncClient(transport=transport, timeout=self.config.timeout)
                    if asynchronous
                    else httpx2.Client(transport=transport, timeout=self.config.timeout)
                )
                client = self._sdks[key] = self._build(asynchronous, http)
            return client

    def close(self) -> None:
        """Close the sync SDK clients (their connections); they are rebuilt if used again."""
        with self._lock:
            for (asynchronous, cache), sdk in list(self._sdks.items()):
                if not asynchronous:
                    sdk.close()
                    del self._sdks[(asynchronous, cache)]
            for entry in [e for e in self._retired if not e[0][0]]:
                entry[1].close()
                self._retired.remove(entry)

    async def aclose(self) -> None:
        """Close every SDK client, async ones included."""
        with self._lock:
            clients = list(self._sdks.items()) + self._retired
            self._sdks.clear()
            self._retired = []
        for (asynchronous, _), sdk in clients:
            if asynchronous:
                await sdk.close()
            else:
                sdk.close()

    def _saved(self) -> None:
        if self._cache is not None and self._cache.stats.recorded:
            self._cache.save()

    # -- the calls -----------------------------------------------------------------------

    def _request(self, messages: Messages, params: Mapping[str, Any]) -> Mapping[str, Any]:
        request = {**self.config.sampling(), **{k: v for k, v in params.items() if v is not None}}
        request["model"] = self._deployment(request["model"])
        request["messages"] = [dict(m) for m in messages]
        return MappingProxyType(request)  # the same request, unmutated, on every attempt

    def _fail(self, error: Exception, attempt: int) -> float:
        """Raise for a terminal error or the last attempt; otherwise the wait before the next."""
        status = status_of(error)
        if is_terminal(error):
            raise InvalidRequestError(f"the request was refused: {error}", status=status) from error
        if not is_retryable(error):
            raise error
        if attempt >= self.policy.max_attempts:
            raise NonTerminalError(
                f"still failing after {attempt} attempt(s): {error}",
                status=status,
                attempts=attempt,
            ) from error
        wait = self.policy.delay(attempt, retry_after(error))
        self.waits.append(wait)
        return wait

    def _call_sync(self, call: Callable[[], _T]) -> _T:
        attempt = 0
        while True:
            attempt += 1
            try:
                result = call()
            except Exception as error:
                self._sleep(self._fail(error, attempt))
                continue
            self._saved()
            return result

    async def _call_async(self, call: Callable[[], Awaitable[_T]]) -> _T:
        import anyio

        asleep = self._asleep or anyio.sleep
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await call()
            except Exception as error:
                await asleep(self._fail(error, attempt))
                continue
            self._saved()
            return result

    def send_message(
        self,
        messages: Messages,
        *,
        response_format: Any = None,
        stream: bool = False,
        on_chunk: Callable[[str], None] | None = None,
        **params: Any,
    ) -> Reply:
        """Send chat ``messages``; returns the assistant's ``Reply``.

        ``params`` override the configured model parameters (``model``, ``temperature``,
        ``max_tokens``, ``tools``, ...). ``response_format`` may be a pydantic model (its
        parsed object is ``reply.parsed``) or a JSON-schema/JSON-object dict (the parsed JSON).
        ``stream=True`` streams, calling ``on_chunk`` with each piece of text.
        Raises ``InvalidRequestError`` at once for a refused request and
        ``NonTerminalError`` once ``MAX_ATTEMPTS`` retryable failures are used up.

        >>> llmreplay.client().send_message([{"role": "user", "content": "Hi"}]).content
        """
        request = self._request(messages, params)
        sdk = self.sdk()
        return self._call_sync(lambda: _send(sdk, request, response_format, stream, on_chunk))

    async def asend_message(
        self,
        messages: Messages,
        *,
        response_format: Any = None,
        stream: bool = False,
        on_chunk: Callable[[str], None] | None = None,
        **params: Any,
    ) -> Reply:
        """``send_message`` for async code, on an ``AsyncOpenAI``-style client."""
        request = self._request(messages, params)
        sdk = self.sdk(asynchronous=True)
        return await self._call_async(
            lambda: _asend(sdk, request, response_format, stream, on_chunk)
        )

    def get_embedding(self, text: str | list[str], model: str | None = None) -> Any:
        """The embedding of ``text`` (a list of floats), or of each string of a list."""
        model = self._deployment(model or self.config.embedding_model)
        sdk = self.sdk()
        result = self._call_sync(lambda: sdk.embeddings.create(model=model, input=text))
        return _vectors(result, text)

    async def aget_embedding(self, text: str | list[str], model: str | None = None) -> Any:
        """``get_embedding`` for async code."""
        model = self._deployment(model or self.config.embedding_model)
        sdk = self.sdk(asynchronous=True)
        result = await self._call_async(lambda: sdk.embeddings.create(model=model, input=text))
        return _vectors(result, text)


def _vectors(result: Any, text: str | list[str]) -> Any:
    vectors = [item.embedding for item in result.data]
    return vectors[0] if isinstance(text, str) else vectors


def _is_model_class(value: Any) -> bool:
    return isinstance(value, type) and hasattr(value, "model_json_schema")


def _reply(completion: Any, response_format: Any) -> Reply:
    message = completion.choices[0].message
    parsed = getattr(message, "parsed", None)
    if parsed is None and isinstance(response_format, Mapping) and message.content:
        try:
            parsed = json.loads(message.content)
        except ValueError:
            parsed = None
    return Reply(
        content=message.content,
        tool_calls=list(message.tool_calls or []),
        refusal=getattr(message, "refusal", None),
        parsed=parsed,
        completion=completion,
    )


def _kwargs(request: Mapping[str, Any], response_format: Any) -> dict[str, Any]:
    kwargs = dict(request)  # a copy: the request itself stays as it was for the next attempt
    if response_format is not None:
        kwargs["response_format"] = response_format
    return kwargs


def _send(
    sdk: openai.OpenAI,
    request: Mapping[str, Any],
    response_format: Any,
    stream: bool,
    on_chunk: Callable[[str], None] | None,
) -> Reply:
    kwargs = _kwargs(request, response_format)
    if stream:
        with sdk.chat.completions.stream(**kwargs) as events:
            for event in events:
                if event.type == "content.delta" and on_chunk is not None:
                    on_chunk(event.delta)
            return _reply(events.get_final_completion(), response_format)
    if _is_model_class(response_format):
        return _reply(sdk.chat.completions.parse(**kwargs), response_format)
    return _reply(sdk.chat.completions.create(**kwargs), response_format)


async def _asend(
    sdk: openai.AsyncOpenAI,
    request: Mapping[str, Any],
    response_format: Any,
    stream: bool,
    on_chunk: Callable[[str], None] | None,
) -> Reply:
    kwargs = _kwargs(request, response_format)
    if stream:
        async with sdk.chat.completions.stream(**kwargs) as events:
            async for event in events:
                if event.type == "content.delta" and on_chunk is not None:
                    on_chunk(event.delta)
            return _reply(await events.get_final_completion(), response_format)
    if _is_model_class(response_format):
        return _reply(await sdk.chat.completions.parse(**kwargs), response_format)
    return _reply(await sdk.chat.completions.create(**kwargs), response_format)
