"""``Cassette``: the recordings of one file, the replay cursor, the stats, and saving.

Lookups are one dict access by key (O(1) in cassette size). Identical requests keep every
recorded response and replay them in recorded order; ``allow_repeats`` repeats the last.
Saving merges under the storage lock with what is on disk, so parallel writers lose nothing:
``auto`` adds its new interactions; ``record`` replaces, per key, what the file held from
before this cassette was opened with what this run recorded, and keeps keys this run did not
touch (``rewrite=True``: replaces the whole file's older content, as the pytest plugin does
for a test's own cassette). Answers recorded by another process after this one opened the
file are never dropped, so parallel recorders of the same request keep every answer.

By default ``record``/``auto`` keep only answers a test should see again: errors worth a
retry (408, 409, 429, 5xx, 529), upstream-cut streams and credential refusals (401/403, which
raise ``RequestRefused`` instead) are not stored; ``record_errors=True`` stores them.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2

from . import _clock, _format, _patch
from ._engine import Exhausted, Forward, Found, Hit, InjectFault, Miss, NotRecorded, Replay, decide
from ._errors import (
    CassetteError,
    CassetteMiss,
    ConfigError,
    LLMReplayError,
    RequestRefused,
    sdk_transparent,
)
from ._faults import Fault, FaultPlan, FaultsArg, as_schedule, provider
from ._guard import looks_like_llm
from ._match import KeySpec, RequestView, closest
from ._modes import Mode
from ._scrub import BeforeRecord, FilterEntry, Scrubber, redact_message
from ._storage import FileStorage, Storage
from ._streams import RecordingStream, ReplayStream
from ._transport import CassetteTransport

if TYPE_CHECKING:
    import anthropic
    import openai

    from ._stacks.httpx import HttpxTransport

_T = TypeVar("_T", httpx2.BaseTransport, httpx2.AsyncBaseTransport)
_F = TypeVar("_F", bound=Callable[..., Any])
_D = TypeVar("_D")

# Used when no API key is configured: replay needs none, and it is never sent upstream.
PLACEHOLDER_KEY = "sk-llmreplay-no-key"

# Answers not stored unless record_errors=True: worth a retry, so the retry's answer is what
# belongs in the cassette; and refused credentials, which would be replayed forever.
RETRYABLE_STATUSES = frozenset({408, 409, 429, 529}) | frozenset(range(500, 600))
REFUSED_STATUSES = frozenset({401, 403})
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


@dataclass
class Stats:
    """What a cassette did: ``played`` from the cassette, ``recorded`` and ``live`` upstream
    calls, ``faults`` injected, ``unused`` recordings not played (yet), ``missed`` requests
    that raised ``CassetteMiss`` (even if the code under test caught it), and ``dropped``
    upstream error answers not stored (see ``record_errors``)."""

    played: int = 0
    recorded: int = 0
    live: int = 0
    faults: int = 0
    unused: int = 0
    missed: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Upstream:
    """A plan to send a request upstream; ``store`` says whether to record the answer."""

    key: str
    store: bool
    secrets: list[str] = field(default_factory=list)
    drain: bool = False  # read all of upstream even if the caller stops (a fault cut it)


@dataclass(slots=True)
class Plan:
    """What the transport does with one request: wait ``delay``, then raise ``error``, or
    return ``response``, or send it ``upstream``; finally pass the answer through ``wrap``."""

    response: httpx2.Response | None = None
    upstream: Upstream | None = None
    delay: float = 0.0
    error: Exception | None = None
    wrap: Callable[[httpx2.Response], httpx2.Response] | None = None


_NO_FAULT = FaultPlan()
_UNREACHABLE = (
    "llmreplay: {} -- not an LLM call, so it is answered as an unreachable host, as "
    "offline; record it (mode record or auto) if the test needs its answer"
)

_unsaved: weakref.WeakSet[Cassette] = weakref.WeakSet()


@atexit.register
def _save_unsaved() -> None:  # pragma: no cover - runs at interpreter exit (tested in a child)
    failed = False
    for cassette in list(_unsaved):
        try:
            cassette.save()
        except (LLMReplayError, OSError) as exc:
            failed = True
            sys.stderr.write(f"llmreplay: recordings not saved at exit: {exc}\n")
    if failed:
        # A lost recording must not look like success: exit non-zero (the handlers that
        # would run after this one are skipped; the streams are flushed first).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


# A vcrpy-style matcher: ``fn(live, recorded)`` returns None/True on a match and returns
# False or raises AssertionError otherwise; both requests look like vcrpy's Request.
Matcher = Callable[[Any, Any], Any]


def _split_matchers(
    match_on: Iterable[str | Matcher] | None,
) -> tuple[tuple[str, ...] | None, tuple[Matcher, ...]]:
    """Named parts make the key; plain functions filter the key's recordings."""
    if match_on is None:
        return None, ()
    parts = list(match_on)
    names = tuple(p for p in parts if isinstance(p, str))
    functions = tuple(p for p in parts if not isinstance(p, str))
    for function in functions:
        if not callable(function):
            raise ConfigError(
                "match_on part", function, "match_on=", "expected names or functions f(r1, r2)"
            )
    return (names or ("method",)), functions


# Match parts decided by the method, the URL and the body (with the headers that say how to
# decode it) alone: a key made of these is a function of those raw bytes.
_RAW_PARTS = frozenset({"method", "scheme", "host", "port", "path", "query", "body", "uri"})
_MAX_RAW_KEYS = 100_000  # live requests remembered beyond the recordings
_MAX_RAW_BYTES = 64 << 20  # and the bytes of their URLs and bodies, at most
Headers = Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]
RawKey = tuple[str, str, str, str, bytes]
_PLAYS = frozenset({Mode.REPLAY, Mode.AUTO})  # the modes that play recordings (Mode.reads)
_TYPE: frozenset[str | bytes] = frozenset({"content-type", b"content-type"})
_DECODING: frozenset[str | bytes] = _TYPE | {"content-encoding", b"content-encoding"}


def _raw_key(method: str, url: str, headers: Headers, body: bytes) -> RawKey | None:
    """What a key of raw parts is made from, as it was sent: method, URL, the first
    ``content-type`` and ``content-encoding`` (the headers that decode the body, read as the
    key reads them) and the body. Equal parts, equal key; a dict finds them by hash and
    equality, so nothing is parsed or digested. Headers come as text (stored, or a native
    stack's) or as bytes (httpx's raw); a non-ASCII byte value gives None (no raw key)."""
    kind: Any = None
    coding: Any = None
    for name, value in headers:
        lower = name.lower()
        if lower in _DECODING:  # one set lookup per header: most are neither
            if lower in _TYPE:
                if kind is None:
                    kind = value
            elif coding is None:
                coding = value
    return raw_parts(method, url, kind, coding, body)


def raw_parts(
    method: str, url: str, kind: str | bytes | None, coding: str | bytes | None, body: bytes
) -> RawKey | None:
    """``_raw_key`` for a stack that reads the first ``content-type`` (``kind``) and
    ``content-encoding`` (``coding``) of a request itself, cheaper than listing them all."""
    if isinstance(kind, bytes):
        if not kind.isascii():
            return None
        kind = kind.decode("ascii")
    if isinstance(coding, bytes):
        if not coding.isascii():
            return None
        coding = coding.decode("ascii")
    return (method, url, kind or "", coding or "", body)


def _encoded(headers: _format.Headers) -> list[tuple[bytes, bytes]]:
    """Recorded header text as bytes: UTF-8, which decodes back to the same text (httpx2
    would encode as ASCII and refuse a recorded ``x-name: José``)."""
    return [(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in headers]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _view(request: httpx2.Request) -> RequestView:
    return RequestView(
        request.method, str(request.url), request.headers.multi_items(), request.content
    )


def _stored_view(item: _format.Interaction) -> RequestView:
    req = item.request
    return RequestView(req.method, req.url, req.headers, req.body)


class Cassette:
    """A cassette file and the mode it is used in. Build one with ``llmreplay.cassette()``.

    >>> import llmreplay
    >>> with llmreplay.cassette("fixtures/cassettes/examples/greet.msgpack") as cas:
    ...     pass
    >>> cas.stats.played
    0
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: Mode | str | None = None,
        match_on: Iterable[str | Matcher] | None = None,
        ignore: Iterable[str] = (),
        normalise: Iterable[str] = (),
        filter_headers: Iterable[FilterEntry] = (),
        filter_query: Iterable[FilterEntry] = (),
        filter_post_data: Iterable[FilterEntry] = (),
        before_record: BeforeRecord | None = None,
        allow_repeats: bool = False,
        faults: FaultsArg = None,
        realtime: bool = False,
        storage: Storage | None = None,
        record_errors: bool = False,
        rewrite: bool = False,
        mode_source: str | None = None,
        extra: Iterable[str | os.PathLike[str]] = (),
        ignore_hosts: Iterable[str] = (),
        ignore_localhost: bool = False,
        virtual_clock: bool = True,
        record_on_exception: bool = True,
        ignore_request: Callable[[RequestView], bool] | None = None,
    ) -> None:
        extra = tuple(extra)
        self._arguments = {k: v for k, v in locals().items() if k not in ("self", "path")}
        self.path = Path(path)
        self._where = str(self.path)
        self._storage: Storage = storage or FileStorage()
        if mode_source is None:
            mode_source = "the default" if mode is None else "cassette(mode=...)"
        self.requested_mode = Mode.parse(Mode.REPLAY if mode is None else mode, source=mode_source)
        self.mode_source = mode_source
        # once: replay when there is something to replay (the file, or an extra cassette).
        self.mode = self.requested_mode.resolve(
            self.requested_mode is Mode.ONCE
            and any(self._storage.load(Path(p)) is not None for p in (path, *extra))
        )
        self.record_errors = record_errors
        self.rewrite = rewrite
        self.opened_at = _now()
        self.allow_repeats = allow_repeats
        self.realtime = realtime
        self.faults = as_schedule(faults)
        # With faults, the waits the code asks for are taken on a virtual clock (_clock).
        self.virtual_clock = virtual_clock
        self.clock = _clock.Clock()
        self._clock_runs: list[bool] = []  # per __enter__: whether it started the clock
        # vcrpy's record_on_exception=False: a block that raised (or a test the plugin saw
        # fail, ``failed``) writes nothing.
        self.record_on_exception = record_on_exception
        self.failed = False
        self._scrubber = Scrubber(filter_headers, filter_query, before_record, filter_post_data)
        names, self._matchers = _split_matchers(match_on)
        ignored = [*ignore, *sorted(self._scrubber.post_data)]
        self._spec = KeySpec.build(names, ignored, self._scrubber.query, normalise)
        self.extra = [Path(p) for p in extra]
        self._ignore_hosts = {h.lower() for h in ignore_hosts}
        # vcrpy's before_record_request returning None: that request is sent as it is,
        # neither recorded nor replayed, in every mode (as ignore_hosts).
        self._ignore_request = ignore_request
        if ignore_localhost:
            self._ignore_hosts |= {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
        self._origin: dict[int, int] = {}  # id(item) -> its index among its key's, on file
        # id(recorded response) -> (it, its parts then, derive, derive(it)): _derived
        self._derivations: dict[int, tuple[Any, ...]] = {}
        # a request's raw parts (_raw_key) -> key; only for keys made of method, URL, body
        self._raw_keys: dict[RawKey, str] | None = None
        self._raw_bytes = 0  # of the live requests' parts in _raw_keys
        self._raw_keys_apply = not self._matchers and set(self._spec.match_on) <= _RAW_PARTS
        self._lock = threading.RLock()
        self._by_key: dict[str, list[_format.Interaction]] = {}
        self._cursor: dict[str, int] = {}
        self._pending: list[_format.Interaction] = []
        self._recorded: list[_format.Interaction] = []
        self._played: list[_format.Interaction] = []
        self._used: set[tuple[str, int]] = set()
        self._recorded_per_key: dict[str, int] = {}
        self.writes = 0
        self._stats = Stats()
        self._wrappers: weakref.WeakKeyDictionary[Any, CassetteTransport] = (
            weakref.WeakKeyDictionary()
        )
        self.exists = False
        self._loaded: list[_format.Interaction] = []  # in file order, for vcrpy's view
        if self.mode.reads:
            self._loaded = self._read()
            for item in self._loaded:
                self._by_key.setdefault(item.key, []).append(item)
            for source in self.extra:  # read-only: played from, never written
                data = self._storage.load(source)
                if data is None:
                    raise CassetteError(source, "this extra cassette does not exist")
                items, match = _format.decode(data, source)
                self._loaded.extend(items)
                for item in items:
                    if match != self._spec.describe():
                        item.key = self._spec.key(_stored_view(item))
                    self._by_key.setdefault(item.key, []).append(item)

    def __repr__(self) -> str:
        return f"<Cassette {str(self.path)!r} mode={self.mode.value}>"

    # -- reading and saving --------------------------------------------------------------

    def _read(self) -> list[_format.Interaction]:
        data = self._storage.load(self.path)
        if data is None:
            return []
        self.exists = True
        items, match = _format.decode(data, self.path)
        if match != self._spec.describe():
            # Keys were made with other match settings: make them again with ours.
            for item in items:
                item.key = self._spec.key(_stored_view(item))
        return items

    def save(self) -> None:
        """Write what this cassette recorded and has not saved yet (a no-op otherwise).

        Runs on leaving the ``with`` block, and at exit for cassettes used without one.
        """
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return
        self._write(pending)

    def _write(self, pending: list[_format.Interaction]) -> None:
        with self._storage.lock(self.path):
            items = self._read()
            if self.mode is Mode.RECORD:
                # What was recorded before this run is replaced (every key with rewrite,
                # else the keys this run recorded); what another process recorded since
                # this cassette was opened is kept.
                fresh = {item.key for item in pending}
                items = [
                    item
                    for item in items
                    if item.recorded_at >= self.opened_at or not (self.rewrite or item.key in fresh)
                ]
            items.extend(pending)
            self._storage.save(self.path, _format.encode(items, self._spec.describe()))
            self.writes += 1
        with self._lock:
            del self._pending[: len(pending)]
            if not self._pending:
                _unsaved.discard(self)

    def _rewrite_if_nothing_recorded(self) -> None:
        """``record`` with ``rewrite``: a run that recorded nothing still replaces what the
        file held from before (a test that no longer calls anything leaves no stale
        recordings behind)."""
        if self.mode is Mode.RECORD and self.rewrite and not self.writes:
            with self._lock:
                nothing = not self._pending and not self._recorded
            if nothing and self._storage.load(self.path) is not None:
                self._write([])

    def close(self) -> None:
        """Save; for symmetry with the context manager when used without ``with``."""
        self.save()

    # -- context manager: implicit capture of every httpx2 client ------------------------

    def __enter__(self) -> Cassette:
        _patch.activate(self)
        clocked = self.faults is not None and self.virtual_clock
        self._clock_runs.append(clocked)
        if clocked:
            _clock.start(self.clock)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._clock_runs and self._clock_runs.pop():
                _clock.stop(self.clock)
            _patch.deactivate(self)
        finally:
            if self.record_on_exception or (exc is None and not self.failed):
                self.save()
                self._rewrite_if_nothing_recorded()

    def __call__(self, function: _F) -> _F:
        """Use the cassette as a decorator (vcrpy's ``@vcr.use_cassette`` form): each call
        of the function, sync or async, runs inside a fresh cassette of the same file and
        options."""
        import functools
        import inspect

        def fresh() -> Cassette:  # each call replays from the start, as vcrpy's does
            return Cassette(self.path, **self._arguments)

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    return await function(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with fresh():
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    async def __aenter__(self) -> Cassette:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- explicit wiring -----------------------------------------------------------------

    def transport(
        self, upstream: httpx2.BaseTransport | httpx2.AsyncBaseTransport | None = None
    ) -> CassetteTransport:
        """An httpx2 transport (sync and async) through this cassette, no patching.

        ``upstream`` is where requests go when the mode needs the network; by default a
        plain ``httpx2.HTTPTransport``/``AsyncHTTPTransport``.
        """
        return CassetteTransport(self, upstream)

    def httpx_transport(self, upstream: Any = None) -> HttpxTransport:
        """A legacy ``httpx`` transport (sync and async) through this cassette, no patching:
        ``httpx.Client(transport=cas.httpx_transport())`` (needs ``pytest-llmreplay[httpx]``).
        ``upstream`` is an httpx transport; by default a plain ``httpx.HTTPTransport``."""
        from ._stacks.httpx import HttpxTransport

        return HttpxTransport(self, upstream)

    def _transport_over(self, upstream: _T) -> _T | CassetteTransport:
        if isinstance(upstream, CassetteTransport):
            return upstream
        try:
            wrapper = self._wrappers.get(upstream)
            if wrapper is None:
                wrapper = self._wrappers[upstream] = CassetteTransport(self, upstream)
        except TypeError:  # not weak-referenceable: wrap afresh
            wrapper = CassetteTransport(self, upstream)
        return wrapper

    def _sdk_client(self, module: str, name: str, key_env: str, kwargs: dict[str, Any]) -> Any:
        sdk = importlib.import_module(module)
        kwargs.setdefault("api_key", os.environ.get(key_env) or PLACEHOLDER_KEY)
        http = httpx2.AsyncClient if name.startswith("Async") else httpx2.Client
        kwargs.setdefault("http_client", http(transport=self.transport()))
        return getattr(sdk, name)(**kwargs)

    def openai_client(self, **kwargs: Any) -> openai.OpenAI:
        """An ``openai.OpenAI`` whose requests go through this cassette."""
        return self._sdk_client("openai", "OpenAI", "OPENAI_API_KEY", kwargs)  # type: ignore[no-any-return]

    def async_openai_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """An ``openai.AsyncOpenAI`` whose requests go through this cassette."""
        return self._sdk_client("openai", "AsyncOpenAI", "OPENAI_API_KEY", kwargs)  # type: ignore[no-any-return]

    def anthropic_client(self, **kwargs: Any) -> anthropic.Anthropic:
        """An ``anthropic.Anthropic`` whose requests go through this cassette."""
        return self._sdk_client("anthropic", "Anthropic", "ANTHROPIC_API_KEY", kwargs)  # type: ignore[no-any-return]

    def async_anthropic_client(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        """An ``anthropic.AsyncAnthropic`` whose requests go through this cassette."""
        return self._sdk_client("anthropic", "AsyncAnthropic", "ANTHROPIC_API_KEY", kwargs)  # type: ignore[no-any-return]

    # -- what happened -------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """Counts so far; ``unused`` is what is recorded but was not played."""
        with self._lock:
            unused = sum(
                len(items) - min(self._cursor.get(key, 0), len(items))
                for key, items in self._by_key.items()
            )
            s = self._stats
            return Stats(s.played, s.recorded, s.live, s.faults, unused, s.missed, s.dropped)

    @property
    def interactions(self) -> list[_format.Interaction]:
        """Every interaction this cassette holds: loaded, then recorded this run."""
        with self._lock:
            seen = [item for items in self._by_key.values() for item in items]
            ids = {id(item) for item in seen}
            return seen + [item for item in self._recorded if id(item) not in ids]

    def in_file_order(self) -> list[_format.Interaction]:
        """What was loaded (this file, then extra cassettes) in file order, then what this
        run recorded and did not load."""
        with self._lock:
            ids = {id(item) for item in self._loaded}
            return self._loaded + [item for item in self._recorded if id(item) not in ids]

    @property
    def recorded(self) -> list[_format.Interaction]:
        """What this run recorded, in order."""
        with self._lock:
            return list(self._recorded)

    @property
    def played(self) -> list[_format.Interaction]:
        """The recorded interactions replayed so far, in the order they were played."""
        with self._lock:
            return list(self._played)

    def used(self) -> set[tuple[str, int]]:
        """``(key, n)`` for every stored interaction this run played or recorded: the n-th
        recording of that request. What ``llmreplay prune`` keeps."""
        with self._lock:
            return set(self._used)

    def prune(self, keep: set[tuple[str, int]], *, dry_run: bool = False) -> int:
        """Remove from the file every interaction not in ``keep`` (see ``used``); returns how
        many were (or, with ``dry_run``, would be) removed."""
        with self._storage.lock(self.path):
            items = self._read()
            seen: dict[str, int] = {}
            kept = []
            for item in items:
                index = seen[item.key] = seen.get(item.key, -1) + 1
                if (item.key, index) in keep:
                    kept.append(item)
            removed = len(items) - len(kept)
            if removed and not dry_run:
                self._storage.save(self.path, _format.encode(kept, self._spec.describe()))
        return removed

    def unused(self) -> list[_format.Interaction]:
        """Recorded interactions not played so far, in recorded order per request."""
        with self._lock:
            return [
                item
                for key, items in self._by_key.items()
                for item in items[self._cursor.get(key, 0) :]
            ]

    # -- the transport's side: decide, replay, record ------------------------------------

    def _next(self, key: str, view: RequestView | None = None) -> Found:
        with self._lock:
            items = self._by_key.get(key)
            if not items:
                return NotRecorded()
            position = self._cursor.get(key, 0)
            if self._matchers and view is not None:
                return self._next_matching(key, items, position, view)
            if position < len(items):
                self._cursor[key] = position + 1
                self._used.add((key, position))
                item = items[position]
            elif self.allow_repeats:
                item = items[-1]
            else:
                return Exhausted(len(items))
            return self._hit(item)

    def _hit(self, item: _format.Interaction) -> Hit:
        """A recording found is a recording played (``decide`` replays every ``Hit``); the
        caller holds the lock."""
        self._stats.played += 1
        self._played.append(item)
        return Hit(item)

    def _next_matching(
        self, key: str, items: list[_format.Interaction], position: int, view: RequestView
    ) -> Found:
        """With function matchers: the first unplayed recording they accept, moved to the
        cursor so that what is played stays in front."""
        from ._vcr_compat import matches

        accepted = [i for i in range(len(items)) if matches(self._matchers, view, items[i])]
        if not accepted:
            return NotRecorded()
        ahead = [i for i in accepted if i >= position]
        if not ahead:
            if self.allow_repeats:
                return self._hit(items[accepted[-1]])
            return Exhausted(len(accepted))
        if not self._origin:
            for pairs in self._by_key.values():
                self._origin.update((id(item), n) for n, item in enumerate(pairs))
        index = ahead[0]
        items[position], items[index] = items[index], items[position]
        self._cursor[key] = position + 1
        self._used.add((key, self._origin.get(id(items[position]), position)))
        return self._hit(items[position])

    def _ignored(self, host: str) -> bool:
        return bool(self._ignore_hosts) and host.lower() in self._ignore_hosts

    def _key(self, request: httpx2.Request) -> tuple[str, RequestView | None]:
        """The request's key, and its view when making the key needed one. Fast path: when
        the key depends only on the method, URL and body (and the content headers that
        decode it), those raw parts (``_raw_key``) find the key of a recording sent with the
        very same bytes, or of an earlier identical request, without decoding the headers or
        parsing the JSON body again. Same bytes, same canonical form."""
        if not self._raw_keys_apply or self.mode not in _PLAYS:  # record, live: no lookups
            view = _view(request)
            return self._spec.key(view), view
        raw = _raw_key(request.method, str(request.url), request.headers.raw, request.content)
        raw_keys = self._raw_keys or self._raw_key_table()
        key = None if raw is None else raw_keys.get(raw)  # a read is atomic; writes lock
        if key is not None:
            return key, None
        view = _view(request)
        key = self._spec.key(view)
        if raw is not None:
            size = len(raw[1]) + len(raw[4])
            with self._lock:
                if len(raw_keys) < _MAX_RAW_KEYS and self._raw_bytes + size <= _MAX_RAW_BYTES:
                    raw_keys[raw] = key
                    self._raw_bytes += size
        return key, view

    def _raw_key_table(self) -> dict[RawKey, str]:
        """Raw parts -> key, for every recording (their own parts: nothing is copied)."""
        raw_keys = self._raw_keys
        if raw_keys is None:
            with self._lock:
                if self._raw_keys is None:
                    table: dict[RawKey, str] = {}
                    for item in self._loaded:
                        r = item.request
                        raw = _raw_key(r.method, r.url, r.headers, r.body)
                        if raw is not None:
                            table[raw] = item.key
                    self._raw_keys = table
                raw_keys = self._raw_keys
        return raw_keys

    def _replay_request(self, request: httpx2.Request) -> httpx2.Response | None:
        """``_replay_seen`` for an httpx2 request, as its response (or None)."""
        if self.mode not in _PLAYS:  # record and live: nothing to look for
            return None
        raw = _raw_key(request.method, str(request.url), request.headers.raw, request.content)
        played = self._replay_seen(raw)
        return None if played is None else self._replayed(request, played)

    def _replay_seen(self, raw: RawKey | None) -> _format.Interaction | None:
        """The replay path for bytes seen before, with no request object built: when only
        a recording can answer (a mode that plays them, no fault schedule, no ignored hosts,
        no pacing, a key of raw parts) and these very bytes have a key, the recording to
        play (counted as played; ``_replayed`` makes it a response, or an adapter its own
        from a ``whole`` body). ``raw`` is the request's ``_raw_key`` (or ``raw_parts``).
        ``None`` otherwise: the caller takes the full path (``_plan``), which decides the
        same request alike (a lookup that finds nothing advances nothing)."""
        mode = self.mode
        if not (
            mode in _PLAYS
            and self._raw_keys_apply
            and self.faults is None
            and not self._ignore_hosts
            and self._ignore_request is None
            and not self.realtime
        ):
            return None
        key = None if raw is None else (self._raw_keys or self._raw_key_table()).get(raw)
        if key is None:
            return None
        action = decide(mode, None, partial(self._next, key))
        return action.interaction if isinstance(action, Replay) else None

    def _plan(self, request: httpx2.Request) -> Plan:
        key, view = self._key(request)
        if self._ignore_hosts and self._ignored(request.url.host):
            # ignore_hosts: neither recorded nor replayed
            return Plan(upstream=Upstream(key, store=False))
        if self._ignore_request is not None:
            if view is None:
                view = _view(request)
            if self._ignore_request(view):
                return Plan(upstream=Upstream(key, store=False))
        if self.faults is None:  # the common case: no fault schedule to consult
            fault: Fault | None = None
            faulted = _NO_FAULT
        else:
            fault = self.faults.take(request, self.clock if any(self._clock_runs) else None)
            faulted = fault.plan(request) if fault is not None else _NO_FAULT
            if fault is not None:
                with self._lock:
                    self._stats.faults += 1
        action = decide(
            self.mode, fault if faulted.replaces else None, lambda: self._next(key, view)
        )
        if isinstance(action, Replay):
            head = action.interaction.elapsed_ms / 1000.0 if self.realtime else 0.0
            response = self._replayed(request, action.interaction)
            wrap = self._marking(faulted, fault) if fault is not None else None
            return Plan(response=response, delay=faulted.delay + head, wrap=wrap)
        if isinstance(action, InjectFault):
            if faulted.response is not None:
                faulted.response.extensions = {"llmreplay": self._source("fault", key, fault)}
            return Plan(response=faulted.response, delay=faulted.delay, error=faulted.error)
        if view is None:
            view = _view(request)
        if isinstance(action, Miss):
            with self._lock:
                self._stats.missed += 1
            miss = self._miss(view, key, action.reason)
            if request.method in ("GET", "HEAD") and not looks_like_llm(str(request.url)):
                # A fetch that is not an LLM call (a price list, an image, a token file):
                # to the library that sent it, an unrecorded one is the network being down,
                # which it may handle (litellm falls back to its bundled copy); a
                # CassetteMiss would come out of its import instead. A POST to a path no
                # rule knows is more likely an LLM call through a gateway: a miss, loudly.
                first = str(miss).splitlines()[0]
                return Plan(error=httpx2.ConnectError(_UNREACHABLE.format(first), request=request))
            raise sdk_transparent(miss)
        assert isinstance(action, Forward)
        self._refuse_placeholder(request)
        # A fault that alters the answer (cut, truncated) alters only what the caller sees:
        # the whole upstream answer is read and stored, so the next replay plays.
        secrets = self._scrubber.secrets(view.headers, view.url, view.body)
        upstream = Upstream(key, action.store, secrets, drain=faulted.wrap is not None)
        return Plan(upstream=upstream, delay=faulted.delay, wrap=self._marking(faulted, fault))

    def _refuse_placeholder(self, request: httpx2.Request) -> None:
        """No key, no recording: the placeholder that lets replay start is never sent."""
        credentials = " ".join(
            request.headers.get(name, "") for name in ("authorization", "x-api-key", "api-key")
        )
        if PLACEHOLDER_KEY not in credentials:
            return
        raise self._refused(
            request,
            f"it must go upstream (mode={self.mode.value}) but no API key is set, so it "
            "cannot be recorded",
            f"Set {_KEY_ENV[provider(request)]} to record it; requests already in the "
            "cassette replay without a key.",
        )

    def _refused(self, request: httpx2.Request, reason: str, hint: str) -> LLMReplayError:
        return sdk_transparent(
            RequestRefused(
                host=request.url.host,
                path=request.url.path,
                where=str(self.path),
                reason=reason,
                hint=hint,
            )
        )

    def _played_extensions(self, item: _format.Interaction) -> dict[str, Any]:
        """A replayed response's extensions, whichever stack it is built for."""
        return {"llmreplay": self._source("cassette", item.key)}

    def _source(self, source: str, key: str, fault: Fault | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"source": source, "key": key, "cassette": self._where}
        if fault is not None:
            info["fault"] = fault.kind
        return info

    @staticmethod
    def _marking(
        faulted: FaultPlan, fault: Fault | None
    ) -> Callable[[httpx2.Response], httpx2.Response] | None:
        if faulted.wrap is None or fault is None:
            return None
        alter = faulted.wrap

        def wrap(response: httpx2.Response) -> httpx2.Response:
            response = alter(response)
            info = dict(response.extensions.get("llmreplay", {}))
            info["fault"] = fault.kind
            response.extensions = {**response.extensions, "llmreplay": info}
            return response

        return wrap

    def _miss(self, view: RequestView, key: str, reason: str) -> CassetteMiss:
        if not self.exists:
            reason = "the cassette file does not exist yet"
        with self._lock:
            candidates = [items[0] for items in self._by_key.values()]
        nearest = closest(view, map(_stored_view, candidates), self._spec)
        path = httpx2.URL(view.url).path
        # No credential of this request (a key in its path or echoed in its body) is printed.
        secrets = self._scrubber.secrets(view.headers, view.url)
        return CassetteMiss(
            path=str(self.path),
            mode=self.mode.value
            if self.requested_mode is self.mode
            else f"{self.requested_mode.value}, replaying",
            mode_source=self.mode_source,
            method=view.method,
            url=redact_message(path, secrets),
            key=key,
            reason=reason,
            closest=None
            if nearest is None
            else f"{nearest[0].method} {httpx2.URL(nearest[0].url).path}",
            diff="" if nearest is None else redact_message(nearest[1], secrets),
        )

    def _replayed(
        self, request: httpx2.Request | None, item: _format.Interaction
    ) -> httpx2.Response:
        recorded = item.response
        chunks = recorded.chunks if recorded.chunks is not None else [recorded.body or b""]
        stream = ReplayStream(
            chunks,
            request=request,
            offsets_ms=item.chunk_ms if self.realtime else (),
            cut=recorded.cut,
        )
        response = httpx2.Response(
            recorded.status,
            stream=stream,
            request=request,
            extensions=self._played_extensions(item),
        )
        response.headers = httpx2.Headers(_encoded(recorded.headers))
        return response

    def _derived(self, recorded: _format.RecordedResponse, derive: Callable[[Any], _D]) -> _D:
        """``derive(recorded)``, worked out once per recording while this cassette lives
        (an adapter's decision about how to play it), and again if the recording's body,
        chunks or headers were replaced since (``cut`` goes with the chunks)."""
        known = self._derivations.get(id(recorded))
        if (
            known is not None
            and known[0] is recorded
            and known[1] is recorded.body
            and known[2] is recorded.headers
            and known[3] is recorded.chunks
            and known[4] is derive
        ):
            return known[5]  # type: ignore[no-any-return]
        value = derive(recorded)
        parts = (recorded.body, recorded.headers, recorded.chunks)
        self._derivations[id(recorded)] = (recorded, *parts, derive, value)
        return value

    def _from_upstream(
        self, request: httpx2.Request, response: httpx2.Response, plan: Upstream, started: float
    ) -> httpx2.Response:
        response.extensions = {
            **response.extensions,
            "llmreplay": self._source("upstream", plan.key),
        }
        store = plan.store
        status = response.status_code
        if store and not self.record_errors and status in REFUSED_STATUSES:
            response.close()
            raise self._refused(
                request,
                f"upstream refused the credentials ({status}) and nothing was written to the "
                "cassette",
                f"Set a valid {_KEY_ENV[provider(request)]} to record, or pass "
                "record_errors=True to store error answers on purpose.",
            )
        if store and not self.record_errors and status in RETRYABLE_STATUSES:
            store = False  # the retry's answer is the one to keep
            with self._lock:
                self._stats.dropped += 1
        if not store:
            with self._lock:
                self._stats.live += 1
            return response
        elapsed_ms = round((time.monotonic() - started) * 1000.0, 3)
        commit = self._committer(request, response, plan, elapsed_ms)
        stream = response.stream
        if isinstance(stream, httpx2.ByteStream):
            # Already in memory (MockTransport's responses are): store its raw bytes as is.
            commit([b"".join(stream)], [0.0], None)
        else:
            assert isinstance(stream, httpx2.SyncByteStream | httpx2.AsyncByteStream)
            response.stream = RecordingStream(stream, commit, drain=plan.drain)
        return response

    def _committer(
        self, request: httpx2.Request, response: httpx2.Response, plan: Upstream, elapsed: float
    ) -> Callable[[list[bytes], list[float], str | None], None]:
        def commit(chunks: list[bytes], offsets: list[float], ended: str | None) -> None:
            if ended == "upstream" and not self.record_errors:
                with self._lock:  # a transport error: not an answer to replay
                    self._stats.live += 1
                    self._stats.dropped += 1
                return
            streamed = ended is not None or response.headers.get("content-type", "").startswith(
                "text/event-stream"
            )
            item = _format.Interaction(
                key=plan.key,
                request=_format.RecordedRequest(
                    request.method,
                    str(request.url),
                    request.headers.multi_items(),
                    request.content,
                ),
                response=_format.RecordedResponse(
                    response.status_code,
                    response.headers.multi_items(),
                    body=None if streamed else b"".join(chunks),
                    chunks=chunks if streamed else None,
                    cut=ended,
                ),
                recorded_at=_now(),
                elapsed_ms=elapsed,
                chunk_ms=offsets if streamed else [],
            )
            self._store(self._scrubber.scrub(item, plan.secrets))

        return commit

    def _store(self, item: _format.Interaction | None) -> None:
        if item is None:
            return
        with self._lock:
            self._pending.append(item)
            self._recorded.append(item)
            self._stats.recorded += 1
            if self.mode is Mode.AUTO:
                # Counted as played, so a replay of this cassette sees the same sequence.
                items = self._by_key.setdefault(item.key, [])
                items.append(item)
                self._cursor[item.key] = len(items)
                self._used.add((item.key, len(items) - 1))
            else:
                index = self._recorded_per_key.get(item.key, 0)
                self._recorded_per_key[item.key] = index + 1
                self._used.add((item.key, index))
            _unsaved.add(self)


def cassette(
    path: str | os.PathLike[str], mode: Mode | str | None = None, **options: Any
) -> Cassette:
    """Open the cassette at ``path``: use it as a context manager to capture every httpx2
    client, or wire it explicitly with ``.transport()`` / ``.openai_client()``.

    >>> import llmreplay, openai
    >>> with llmreplay.cassette("fixtures/cassettes/examples/greet.msgpack") as cas:
    ...     reply = openai.OpenAI(api_key="sk-test").chat.completions.create(
    ...         model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}])
    """
    return Cassette(path, mode=mode, **options)
