"""``BaseClient``: send_message and get_embedding with retries, a cassette as cache.

One SDK client per configuration and kind (sync/async, cached/not), built once and reused
(the SDK clients are thread-safe). The SDK's own retries are off (``max_retries=0``) so
attempts are not multiplied; this layer retries by ``RetryPolicy`` with an injectable
``sleep``. With caching on, requests go through a cassette in ``auto`` mode at
``CACHE_FILE_NAME``: a hit costs no network, a miss is called and stored. Inside an active
``llmreplay.cassette()`` block (and so in the pytest plugin) the cache steps aside and the
active cassette's mode rules.

Concurrency: identical requests that miss the cache at the same time are sent once (a
per-request single-flight lock; the others then hit the cache), and saves of one cache file
are serialised, so the file holds one interaction per distinct request.

TinyTroupe compatibility: ``send_message`` takes TinyTroupe's keyword arguments
(``max_attempts``, ``waiting_time``, ``exponential_backoff_factor``, ``dedent_messages``,
``enable_pydantic_model_return``, ``echo``) with their meaning, and the hooks TinyTroupe
subclasses override (``_setup_from_config``, ``_raw_model_call``,
``_raw_model_response_extractor``, ``_raw_embedding_model_call``,
``_raw_embedding_model_response_extractor``) are called, inside the same retry loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .. import _patch
from .._errors import (
    CassetteMiss,
    ConfigError,
    InvalidRequestError,
    LLMReplayError,
    NonTerminalError,
)
from .chat import asend, flight_key, format_name, kwargs_of, nested, send, vectors
from .config import ClientConfig, load_config
from .flight import async_single_flight, save_lock, single_flight
from .hooks import (
    CALL_OPTIONS,
    CHAT_HOOKS,
    EMBEDDING_HOOKS,
    TinyTroupeHooks,
    cache_path,
    dedented,
    returned,
)
from .reply import Reply, from_message
from .retry import RetryPolicy, describe, is_retryable, is_terminal, retry_after, status_of

if TYPE_CHECKING:
    from .._cassette import Cassette

Messages = Sequence[Mapping[str, Any]]
_T = TypeVar("_T")
logger = logging.getLogger("llmreplay")

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


class BaseClient(TinyTroupeHooks):
    """What every LLM client does; subclasses say how to build their SDK client.

    A TinyTroupe-style subclass may instead override ``_raw_model_call(model, params)``
    (and ``_raw_model_response_extractor(response)``) to call any API; it gets the same
    retries, logging and per-call options. Raise ``llmreplay.NonTerminalError`` from it for
    a failure worth retrying and ``llmreplay.InvalidRequestError`` for one that is not.
    """

    api_type: ClassVar[str] = "openai"

    def __init__(
        self,
        config: ClientConfig | bool | None = None,
        cache_file_name: str | None = None,
        *,
        folder: str | None = None,
        sleep: Callable[[float], None] | None = None,
        asleep: Callable[[float], Awaitable[None]] | None = None,
        policy: RetryPolicy | None = None,
        **settings: Any,
    ) -> None:
        if isinstance(config, bool):  # TinyTroupe's OpenAIClient(cache_api_calls, file)
            settings["cache_api_calls"] = config
            config = None
        if cache_file_name is not None:
            settings["cache_file_name"] = cache_file_name
        self._given = config
        self._folder = folder
        self._settings = settings
        self._sleep = sleep or time.sleep
        self._asleep = asleep
        self._policy = policy
        self._lock = threading.RLock()
        self._sdks: dict[tuple[bool, str | None, bool], Any] = {}
        self._retired: list[tuple[tuple[bool, str | None, bool], Any]] = []
        self._cache: Cassette | None = None
        self._seen_version = -1
        self._config = ClientConfig()
        self.waits: list[float] = []  # every backoff this client asked for, in order
        self.client: Any = None  # what TinyTroupe's _setup_from_config sets; see there
        type(self).check_hooks()

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
            c.max_attempts,
            c.waiting_time,
            c.backoff_factor,
            c.max_backoff,
            c.jitter,
            max_total_wait=c.max_total_wait,
        )

    # -- SDK clients ---------------------------------------------------------------------

    def _build(self, asynchronous: bool, http_client: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _credentials(self) -> bool:
        """Whether an API key (or token provider) is configured."""
        return True

    def _offline(self) -> bool:
        """Whether every call is answered from a recording, so no key is needed: an active
        cassette in replay, or the cache when no key is configured (it is then read-only)."""
        if not self._credentials() and self._cassette() is not None:
            return True
        try:
            active = _patch.current()
        except LLMReplayError:
            return False
        return active is not None and active.mode.value == "replay"

    def _deployment(self, model: str) -> str:
        return model

    def _cassette(self) -> Cassette | None:
        config = self.config
        if not config.cache_api_calls or _patch.is_patched():
            return None
        path = cache_path(config.cache_file_name)
        # Without a key the cache can only answer what it holds: a miss raises, naming the
        # key to set, instead of sending a request the provider would refuse.
        mode = "auto" if self._credentials() else "replay"
        with self._lock:  # one Cassette per file, or threads would record past each other
            cache = self._cache
            if cache is None or cache.path != path or cache.mode.value != mode:
                from .._cassette import Cassette

                cache = self._cache = Cassette(path, mode=mode, allow_repeats=True)
            return cache

    def sdk(self, asynchronous: bool = False) -> Any:
        """The SDK client in use (built once per configuration and kind)."""
        import httpx2

        cache = self._cassette()
        offline = self._offline()
        key = (asynchronous, None if cache is None else str(cache.path), offline)
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
            for key, sdk in list(self._sdks.items()):
                if not key[0]:
                    sdk.close()
                    del self._sdks[key]
            for entry in [e for e in self._retired if not e[0][0]]:
                entry[1].close()
                self._retired.remove(entry)

    async def aclose(self) -> None:
        """Close every SDK client, async ones included."""
        with self._lock:
            clients = list(self._sdks.items()) + self._retired
            self._sdks.clear()
            self._retired = []
        for key, sdk in clients:
            if key[0]:
                await sdk.close()
            else:
                sdk.close()

    def _saved(self) -> None:
        cache = self._cache
        if cache is not None and cache.stats.recorded:
            with save_lock(cache.path):
                cache.save()

    # -- the calls -----------------------------------------------------------------------

    def _request(
        self, messages: Messages, params: Mapping[str, Any], dedent: bool
    ) -> Mapping[str, Any]:
        given = {k: v for k, v in params.items() if v is not None}
        if given.get("stop") in ([], "", ()):  # TinyTroupe's stop=[]: no stop at all
            del given["stop"]
        if given.get("n") == 1:  # the API's default: sent or not, the same request
            del given["n"]
        request = {**self.config.sampling(), **given}
        if "max_completion_tokens" in given:  # one token limit: the one this call gave
            request.pop("max_tokens", None)
        elif "max_tokens" in given:
            request.pop("max_completion_tokens", None)
        request["model"] = self._deployment(request["model"])
        request["messages"] = [dedented(m) if dedent else dict(m) for m in messages]
        return MappingProxyType(request)  # the same request, unmutated, on every attempt

    def _call_policy(self, options: Mapping[str, Any]) -> RetryPolicy:
        """The retry policy of one call: TinyTroupe's per-call arguments over the settings."""
        policy = self.policy
        changes: dict[str, Any] = {}
        for option, attribute in (
            ("max_attempts", "max_attempts"),
            ("waiting_time", "waiting_time"),
            ("exponential_backoff_factor", "backoff_factor"),
        ):
            if options.get(option) is not None:
                checked = ClientConfig().with_value(
                    attribute, options[option], f"send_message({option}=...)"
                )
                changes[attribute] = getattr(checked, attribute)
        return replace(policy, **changes) if changes else policy

    def _fail(self, error: Exception, attempt: int, policy: RetryPolicy, waited: float) -> float:
        """Raise for a terminal error or the last attempt; otherwise the wait before the next."""
        status = status_of(error)
        if isinstance(error, InvalidRequestError):
            raise error
        if isinstance(error, CassetteMiss) and not self._credentials():
            raise self._keyless(error) from error
        if is_terminal(error):
            logger.error("attempt %d failed and cannot succeed on retry: %s", attempt, error)
            raise InvalidRequestError(f"the request was refused: {error}", status=status) from error
        if not is_retryable(error):
            raise error
        if attempt >= policy.max_attempts:
            logger.error("giving up after %d attempt(s): %s", attempt, error)
            raise NonTerminalError(
                f"still failing after {attempt} attempt(s): {error}",
                status=status,
                attempts=attempt,
            ) from error
        wait = policy.delay(attempt, retry_after(error))
        if not policy.allows(waited, wait):
            logger.error(
                "giving up after %d attempt(s): waiting %.2fs more would pass "
                "MAX_TOTAL_WAIT=%ss: %s",
                attempt,
                wait,
                policy.max_total_wait,
                error,
            )
            raise NonTerminalError(
                f"still failing after {attempt} attempt(s) and {waited:g}s of waiting; "
                f"another {wait:.2f}s would pass MAX_TOTAL_WAIT={policy.max_total_wait}s: "
                f"{error}",
                status=status,
                attempts=attempt,
            ) from error
        logger.warning(
            "attempt %d/%d failed (%s); retrying in %.2fs",
            attempt,
            policy.max_attempts,
            describe(error),
            wait,
        )
        self.waits.append(wait)
        return wait

    def _keyless(self, miss: CassetteMiss) -> ConfigError:
        return ConfigError(
            "API key",
            None,
            "the environment",
            f"set {self._key_variable()} (or pass api_key=) to call the API; without a key "
            f"only requests already in the cache {miss.path} are answered",
        )

    def _key_variable(self) -> str:
        return "OPENAI_API_KEY"

    def _call_sync(self, call: Callable[[], _T], policy: RetryPolicy | None = None) -> _T:
        policy = policy or self.policy
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                result = call()
            except Exception as error:
                wait = self._fail(error, attempt, policy, waited)
                waited += wait
                self._sleep(wait)
                continue
            self._saved()
            return result

    async def _call_async(
        self, call: Callable[[], Awaitable[_T]], policy: RetryPolicy | None = None
    ) -> _T:
        import anyio

        policy = policy or self.policy
        asleep = self._asleep or anyio.sleep
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                result = await call()
            except Exception as error:
                wait = self._fail(error, attempt, policy, waited)
                waited += wait
                await asleep(wait)
                continue
            self._saved()
            return result

    @contextlib.contextmanager
    def _flight(self, *parts: Any) -> Iterator[None]:
        cache = self._cassette()
        if cache is None:
            yield
            return
        with single_flight(cache.path, flight_key(parts)):
            yield

    @contextlib.asynccontextmanager
    async def _aflight(self, *parts: Any) -> AsyncIterator[None]:
        cache = self._cassette()
        if cache is None:
            yield
            return
        async with async_single_flight(cache.path, flight_key(parts)):
            yield

    def send_message(
        self,
        messages: Messages,
        *,
        response_format: Any = None,
        stream: bool = False,
        on_chunk: Callable[[str], None] | None = None,
        **params: Any,
    ) -> Any:
        """Send chat ``messages``; returns the assistant's ``Reply``.

        ``params`` override the configured model parameters (``model``, ``temperature``,
        ``max_tokens``, ``tools``, ...). ``response_format`` may be a pydantic model (its
        parsed object is ``reply.parsed``) or a JSON-schema/JSON-object dict (the parsed JSON).
        ``stream=True`` streams, calling ``on_chunk`` with each piece of text.
        TinyTroupe's ``max_attempts``, ``waiting_time``, ``exponential_backoff_factor``
        (this call's retries), ``dedent_messages`` and ``enable_pydantic_model_return`` are
        honoured; ``echo`` is accepted and ignored, as TinyTroupe did.
        Raises ``InvalidRequestError`` at once for a refused request and
        ``NonTerminalError`` once ``MAX_ATTEMPTS`` retryable failures are used up.

        >>> llmreplay.client().send_message([{"role": "user", "content": "Hi"}]).content
        """
        options = {name: params.pop(name) for name in CALL_OPTIONS if name in params}
        policy = self._call_policy(options)
        request = self._request(messages, params, self._dedent(options))
        self._log_tokens(request)
        if self._hooked(CHAT_HOOKS):
            return returned(self._hooked_call(request, response_format, policy), options)
        sdk = self.sdk()
        with self._flight("chat", request, format_name(response_format), stream):
            reply = self._call_sync(
                lambda: send(sdk, request, response_format, stream, on_chunk), policy
            )
        return returned(reply, options)

    def _hooked_call(
        self, request: Mapping[str, Any], response_format: Any, policy: RetryPolicy
    ) -> Reply:
        params = kwargs_of(request, response_format)

        def attempt() -> Reply:
            self._setup_from_config()
            response = self._raw_model_call(params["model"], dict(params))
            reply = from_message(self._raw_model_response_extractor(response), response)
            if reply.parsed is None and isinstance(response_format, Mapping) and reply.content:
                with contextlib.suppress(ValueError):
                    reply = replace(reply, parsed=json.loads(reply.content))
            return reply

        with self._flight("chat", request, format_name(response_format), False):
            return self._call_sync(attempt, policy)

    async def asend_message(
        self,
        messages: Messages,
        *,
        response_format: Any = None,
        stream: bool = False,
        on_chunk: Callable[[str], None] | None = None,
        **params: Any,
    ) -> Any:
        """``send_message`` for async code, on an ``AsyncOpenAI``-style client (a client
        with TinyTroupe hooks runs them, which are sync, in a worker thread)."""
        if self._hooked(CHAT_HOOKS):
            import anyio

            return await anyio.to_thread.run_sync(
                lambda: self.send_message(
                    messages,
                    response_format=response_format,
                    stream=stream,
                    on_chunk=on_chunk,
                    **params,
                )
            )
        options = {name: params.pop(name) for name in CALL_OPTIONS if name in params}
        policy = self._call_policy(options)
        request = self._request(messages, params, self._dedent(options))
        sdk = self.sdk(asynchronous=True)
        async with self._aflight("chat", request, format_name(response_format), stream):
            reply = await self._call_async(
                lambda: asend(sdk, request, response_format, stream, on_chunk), policy
            )
        return returned(reply, options)

    def _dedent(self, options: Mapping[str, Any]) -> bool:
        value = options.get("dedent_messages")
        return self.config.dedent_messages if value is None else bool(value)

    def get_embedding(self, text: str | list[str], model: str | None = None) -> Any:
        """The embedding of ``text`` (a list of floats), or of each string of a list."""
        model = self._deployment(model or self.config.embedding_model)
        if self._hooked(EMBEDDING_HOOKS):

            def attempt() -> Any:
                self._setup_from_config()
                response = self._raw_embedding_model_call(text, model)
                return self._raw_embedding_model_response_extractor(response)

            with self._flight("embedding", model, text):
                found = self._call_sync(attempt)
            return found[0] if isinstance(text, str) and nested(found) else found
        sdk = self.sdk()
        with self._flight("embedding", model, text):
            result = self._call_sync(lambda: sdk.embeddings.create(model=model, input=text))
        return vectors(result, text)

    async def aget_embedding(self, text: str | list[str], model: str | None = None) -> Any:
        """``get_embedding`` for async code."""
        if self._hooked(EMBEDDING_HOOKS):
            import anyio

            return await anyio.to_thread.run_sync(lambda: self.get_embedding(text, model))
        model = self._deployment(model or self.config.embedding_model)
        sdk = self.sdk(asynchronous=True)
        async with self._aflight("embedding", model, text):
            result = await self._call_async(lambda: sdk.embeddings.create(model=model, input=text))
        return vectors(result, text)
