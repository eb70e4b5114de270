"""Fault injection: rehearse what production throws at retry logic, in milliseconds.

A fault either answers in place of the recording or upstream, with the provider's own
error JSON (``RateLimit()``, ``ServerError(503)``, ``Overloaded()``, ``BadRequest()``...),
raises a real httpx2 transport exception with the request attached (``ConnectTimeout()``,
``ReadTimeout()``, ``ConnectionRefused()``, ``ConnectionReset()``, ``ProtocolError()``), or
changes the real answer on its way out (``CutStream(after=3)``, ``Malformed()``,
``Latency(seconds)``).

Faults advertise what providers send: a 429 says ``retry-after: 20`` (whole seconds, as
OpenAI and Anthropic send it), a 5xx, 529 or 408 says nothing and leaves the SDK to back off
exponentially; terminal ones carry ``x-should-retry: false``. While the cassette is active
those waits are taken on a virtual clock (``_clock``): they cost no real time, and
``verdict()`` compares each one with what the fault advertised. Schedules decide which
request gets which fault:

>>> from llmreplay.faults import PASS, RateLimit, sequence, every
>>> sequence([RateLimit(), RateLimit(), PASS])   # first two attempts fail, then the recording
>>> every(3, ServerError(), path="/v1/chat/*")    # every third chat request fails

A plain list given as ``faults=`` is a ``sequence``. Each schedule keeps a log of the
requests it saw; ``schedule.verdict()`` tells what the code under test did about them.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import random
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2

from . import _clock
from ._errors import ConfigError


def provider(request: httpx2.Request) -> str:
    """``"anthropic"`` or ``"openai"``: whose error JSON a fault for ``request`` speaks."""
    path = request.url.path
    if "anthropic-version" in request.headers or "anthropic" in request.url.host:
        return "anthropic"
    return "anthropic" if path.startswith(("/v1/messages", "/v1/complete")) else "openai"


@dataclass(frozen=True)
class FaultPlan:
    """What a fault does to one request: answer, wait, raise, or change the answer."""

    response: httpx2.Response | None = None
    delay: float = 0.0
    error: Exception | None = None
    wrap: Callable[[httpx2.Response], httpx2.Response] | None = None

    @property
    def replaces(self) -> bool:
        """Whether the fault takes the request's place (nothing else is consulted)."""
        return self.response is not None or self.error is not None


class Fault:
    """Base of every fault kind; ``kind`` names it in logs and verdicts."""

    kind = "fault"
    terminal = False
    retry_after: float | None = None

    def plan(self, request: httpx2.Request) -> FaultPlan:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# -- HTTP error responses ----------------------------------------------------------------

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    408: "timeout",
    429: "rate_limit_exceeded",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    408: "timeout_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class HTTPFault(Fault):
    """An error response in the provider's own shape.

    ``retry_after`` (seconds: ``retry-after``) or ``retry_after_ms`` (``retry-after-ms``, as
    Azure sends it; it outranks ``retry-after`` in both SDKs) become the header the SDKs
    honour; none by default. Terminal statuses (4xx but 408/409/429) say
    ``x-should-retry: false`` and advertise no wait.
    """

    def __init__(
        self,
        status: int,
        *,
        message: str | None = None,
        retry_after_ms: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ConfigError("fault status", status, type(self).__name__, "use 400-599")
        self.status = status
        self.message = message or f"llmreplay simulated error {status}"
        self.terminal = status < 500 and status not in (408, 409, 429)
        if retry_after is not None and retry_after_ms is not None:
            raise ConfigError(
                "retry_after",
                retry_after,
                type(self).__name__,
                "give retry_after (seconds) or retry_after_ms, not both",
            )
        for name, value in (("retry_after", retry_after), ("retry_after_ms", retry_after_ms)):
            if value is not None and not value >= 0:
                raise ConfigError(name, value, type(self).__name__, "a wait of 0 or more")
        self.retry_after_ms = None if self.terminal else retry_after_ms
        self._header_retry_after = None if self.terminal else retry_after
        # What the fault advertises, in seconds (None: nothing, the client backs off).
        self.retry_after = (
            self._header_retry_after
            if self._header_retry_after is not None
            else (None if self.retry_after_ms is None else self.retry_after_ms / 1000.0)
        )
        self.kind = f"http_{status}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status})"

    def body(self, request: httpx2.Request) -> dict[str, Any]:
        if provider(request) == "anthropic":
            kind = _ANTHROPIC_TYPES.get(self.status, "api_error")
            return {"type": "error", "error": {"type": kind, "message": self.message}}
        kind = _OPENAI_TYPES.get(self.status, "server_error")
        return {"error": {"message": self.message, "type": kind, "param": None, "code": kind}}

    def plan(self, request: httpx2.Request) -> FaultPlan:
        headers = {"content-type": "application/json", "x-request-id": "req_llmreplay_fault"}
        if self.terminal:
            headers["x-should-retry"] = "false"
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{self.retry_after_ms:g}"
        if self._header_retry_after is not None:
            headers["retry-after"] = f"{self._header_retry_after:g}"
        content = json.dumps(self.body(request)).encode()
        response = httpx2.Response(self.status, headers=headers, content=content, request=request)
        return FaultPlan(response=response)


RATE_LIMIT_RETRY_AFTER = 20.0  # seconds; OpenAI and Anthropic send whole seconds


class RateLimit(HTTPFault):
    """429 Too Many Requests, with ``retry-after: 20`` unless told otherwise (``retry_after``
    in seconds, or ``retry_after_ms``; ``retry_after=None`` sends no wait at all)."""

    def __init__(
        self,
        *,
        retry_after: float | None = RATE_LIMIT_RETRY_AFTER,
        retry_after_ms: float | None = None,
    ) -> None:
        if retry_after_ms is not None and retry_after == RATE_LIMIT_RETRY_AFTER:
            retry_after = None  # asked for milliseconds instead of the default seconds
        super().__init__(429, retry_after_ms=retry_after_ms, retry_after=retry_after)


class ServerError(HTTPFault):
    """A 5xx: 500 by default; 502, 503 and 504 are the usual others. No wait advertised
    unless given: the client backs off by itself."""

    def __init__(
        self,
        status: int = 500,
        *,
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
    ) -> None:
        super().__init__(status, retry_after_ms=retry_after_ms, retry_after=retry_after)


class Overloaded(HTTPFault):
    """529, Anthropic's "overloaded" (sent without a wait: the client backs off)."""

    def __init__(
        self, *, retry_after: float | None = None, retry_after_ms: float | None = None
    ) -> None:
        super().__init__(529, retry_after_ms=retry_after_ms, retry_after=retry_after)


class RequestTimeout(HTTPFault):
    """408 Request Timeout (no wait advertised: the client backs off)."""

    def __init__(
        self, *, retry_after: float | None = None, retry_after_ms: float | None = None
    ) -> None:
        super().__init__(408, retry_after_ms=retry_after_ms, retry_after=retry_after)


class BadRequest(HTTPFault):
    """400: terminal, never worth a retry."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(400, message=message)


class Unauthorized(HTTPFault):
    """401: terminal, never worth a retry."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(401, message=message)


# -- transport errors --------------------------------------------------------------------


class TransportFault(Fault):
    """Raises a real httpx2 exception with the request attached, as a failing network would."""

    def __init__(self, exception: type[httpx2.TransportError], kind: str, message: str) -> None:
        self.exception = exception
        self.kind = kind
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def plan(self, request: httpx2.Request) -> FaultPlan:
        error = self.exception(f"{self.message} (llmreplay fault)", request=request)
        return FaultPlan(error=error)


class ConnectTimeout(TransportFault):
    """``httpx2.ConnectTimeout``: the server never accepted the connection in time."""

    def __init__(self) -> None:
        super().__init__(httpx2.ConnectTimeout, "connect_timeout", "timed out connecting")


class ReadTimeout(TransportFault):
    """``httpx2.ReadTimeout``: the server accepted but never answered in time."""

    def __init__(self) -> None:
        super().__init__(httpx2.ReadTimeout, "read_timeout", "timed out reading the response")


class ConnectionRefused(TransportFault):
    """``httpx2.ConnectError``: nothing listens there."""

    def __init__(self) -> None:
        super().__init__(httpx2.ConnectError, "connection_refused", "connection refused")


class ConnectionReset(TransportFault):
    """``httpx2.ReadError``: the peer reset the connection."""

    def __init__(self) -> None:
        super().__init__(httpx2.ReadError, "connection_reset", "connection reset by peer")


class ProtocolError(TransportFault):
    """``httpx2.RemoteProtocolError``: the server hung up without a response."""

    def __init__(self) -> None:
        super().__init__(
            httpx2.RemoteProtocolError, "protocol_error", "server disconnected without a response"
        )


# -- changes to the real answer ----------------------------------------------------------


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole server-sent events (each with its blank line) at the start of ``buffer``,
    and what is left of it."""
    events = []
    while match := _EVENT_END.search(buffer):
        events.append(buffer[: match.end()])
        buffer = buffer[match.end() :]
    return events, buffer


def _events(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Server-sent events, however the bytes were read."""
    buffer = b""
    for chunk in chunks:
        events, buffer = _split_events(buffer + chunk)
        yield from events
    if buffer:
        yield buffer


async def _aevents(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    buffer = b""
    async for chunk in chunks:
        events, buffer = _split_events(buffer + chunk)
        for event in events:
            yield event
    if buffer:
        yield buffer


async def _achunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk


class _CuttingStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """Yields ``after`` pieces, then raises: server-sent events for an event stream (however
    upstream wrote them), the chunks as received or recorded otherwise."""

    def __init__(self, inner: Any, after: int, request: httpx2.Request, events: bool) -> None:
        self._inner = inner
        self._after = after
        self._request = request
        self._events = events

    def _cut(self) -> httpx2.RemoteProtocolError:
        unit = "event" if self._events else "chunk"
        return httpx2.RemoteProtocolError(
            f"stream cut after {self._after} {unit}(s) (llmreplay fault)", request=self._request
        )

    def __iter__(self) -> Iterator[bytes]:
        pieces = _events(self._inner) if self._events else iter(self._inner)
        for count, piece in enumerate(pieces, start=1):
            yield piece
            if count >= self._after:
                raise self._cut()
        raise self._cut()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces = _aevents(aiter(self._inner)) if self._events else _achunks(aiter(self._inner))
        count = 0
        async for piece in pieces:
            count += 1
            yield piece
            if count >= self._after:
                raise self._cut()
        raise self._cut()

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()


class CutStream(Fault):
    """The real response, cut with ``httpx2.RemoteProtocolError`` after ``after`` server-sent
    events (for an event stream, whatever upstream's write pattern) or chunks (otherwise).
    In ``record``/``auto`` the whole answer is still read and stored: only the caller's view
    is cut."""

    kind = "cut_stream"

    def __init__(self, after: int = 1) -> None:
        self.after = after

    def __repr__(self) -> str:
        return f"CutStream(after={self.after})"

    def plan(self, request: httpx2.Request) -> FaultPlan:
        def wrap(response: httpx2.Response) -> httpx2.Response:
            events = response.headers.get("content-type", "").startswith(
                "text/event-stream"
            ) and not response.headers.get("content-encoding")
            response.stream = _CuttingStream(response.stream, self.after, request, events)
            return response

        return FaultPlan(wrap=wrap)


class _TruncatedStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    def __init__(self, inner: Any, keep: float) -> None:
        self._inner = inner
        self._keep = keep

    def _cut(self, body: bytes) -> bytes:
        return body[: max(1, int(len(body) * self._keep))]

    def __iter__(self) -> Iterator[bytes]:
        yield self._cut(b"".join(self._inner))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._cut(b"".join([chunk async for chunk in self._inner]))

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()


class Malformed(Fault):
    """The real response with its body truncated to ``keep`` of its length: broken JSON."""

    kind = "malformed"

    def __init__(self, keep: float = 0.5) -> None:
        self.keep = keep

    def plan(self, request: httpx2.Request) -> FaultPlan:
        def wrap(response: httpx2.Response) -> httpx2.Response:
            headers = [
                (k, v)
                for k, v in response.headers.multi_items()
                if k.lower() not in ("content-length", "content-encoding")
            ]
            stream = _TruncatedStream(_Decoded(response), self.keep)
            return httpx2.Response(
                response.status_code,
                headers=headers,
                stream=stream,
                request=request,
                extensions=response.extensions,
            )

        return FaultPlan(wrap=wrap)


class _Decoded(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A response's decoded bytes as a stream (so truncation cuts JSON, not gzip)."""

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._response.iter_bytes()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_bytes():
            yield chunk

    def close(self) -> None:
        self._response.close()

    async def aclose(self) -> None:
        await self._response.aclose()


class Latency(Fault):
    """A slow answer: waits ``seconds`` first. When the request's own read timeout is
    shorter, it waits that long and raises ``httpx2.ReadTimeout``, as a real server would."""

    kind = "latency"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Latency({self.seconds:g})"

    def plan(self, request: httpx2.Request) -> FaultPlan:
        timeout = request.extensions.get("timeout", {}).get("read")
        if isinstance(timeout, int | float) and timeout < self.seconds:
            error = httpx2.ReadTimeout(
                f"no response within the read timeout of {timeout:g}s (llmreplay latency fault)",
                request=request,
            )
            return FaultPlan(delay=float(timeout), error=error)
        return FaultPlan(delay=self.seconds)


# -- schedules ---------------------------------------------------------------------------


class _Pass:
    """In a sequence: this attempt goes through untouched."""

    def __repr__(self) -> str:
        return "PASS"


PASS = _Pass()


@dataclass(frozen=True)
class Attempt:
    """One request a schedule saw: when, what, which try, and the fault it got (or None).
    ``slept``: the seconds of waits its thread or task had asked the virtual clock for by
    then (None without a virtual clock); ``owner``: that task or thread (``_clock.owner``).
    ``at``: the time on the cassette's clock."""

    at: float
    method: str
    path: str
    retry_count: int | None
    fault: Fault | None
    slept: float | None = None
    owner: int = 0


# What a back-off must look like (Verdict, ``Schedule.verdict``): the first wait at least
# MIN_BACKOFF, each next one at least BACKOFF_GROWTH times the one before, except that a
# wait of BACKOFF_CAP or more may stop growing. The SDKs wait 0.5 s doubling up to 8 s,
# times a jitter of 0.75-1 (consecutive ratios 1.5 or more, capped waits 6-8 s); tenacity's
# wait_exponential and backoff's expo with jitter=None pass too. Full jitter (tenacity's
# wait_random_exponential, backoff's default) draws each wait from [0, bound]: one run
# cannot tell it from no back-off, so ``backed_off`` is a coin toss there, and
# ``waited_as_advertised`` is what such code can assert.
MIN_BACKOFF = 0.1
BACKOFF_GROWTH = 1.4
BACKOFF_CAP = 4.5


@dataclass(frozen=True)
class Verdict:
    """What the code under test did with the faults it was given.

    ``attempts``: requests sent; ``faults``: the fault kinds in order (``"pass"`` for the
    ones let through); ``delays``: seconds between consecutive attempts (virtual time, when
    the clock is virtual); ``waits``: per retry, the seconds the code asked to wait before
    it (what it slept; without a virtual clock, the delay); ``advertised``: per retry, the
    wait the fault before it advertised (``Retry-After``), or None; ``backoff``: the waits of
    the retries after a fault that advertised none, in order; ``backed_off``: that list
    starts at ``MIN_BACKOFF`` (0.1 s) or more and each wait is ``BACKOFF_GROWTH`` (1.4)
    times the one before or more, or ``BACKOFF_CAP`` (4.5 s) or more;
    ``waited_as_advertised``: every wait was at least 95% of what was advertised;
    ``honoured_retry_after``: that, and the code backed off where nothing was advertised;
    ``gave_up``: the last attempt failed;
    ``retried_terminal``: a request came after a terminal fault.
    """

    attempts: int
    faults: list[str]
    delays: list[float]
    gave_up: bool
    honoured_retry_after: bool
    retried_terminal: bool
    waits: list[float]
    advertised: list[float | None]
    backoff: list[float]
    backed_off: bool
    waited_as_advertised: bool


def _backs_off(waits: list[float]) -> bool:
    if waits and waits[0] < MIN_BACKOFF:
        return False
    return all(
        later >= earlier * BACKOFF_GROWTH or later >= BACKOFF_CAP
        for earlier, later in itertools.pairwise(waits)
    )


class Schedule:
    """Decides, request by request, which fault (if any) applies; keeps the log."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.log: list[Attempt] = []
        self._lock = threading.Lock()

    def _choose(
        self, index: int, request: httpx2.Request, clock: _clock.Clock | None
    ) -> Fault | None:
        raise NotImplementedError

    def take(self, request: httpx2.Request, clock: _clock.Clock | None = None) -> Fault | None:
        """The fault for ``request``; called once per attempt by the cassette, with its
        virtual clock when it has one (the waits are read off it)."""
        if self.path is not None and not fnmatch.fnmatch(request.url.path, self.path):
            return None
        with self._lock:
            fault = self._choose(len(self.log), request, clock)
            self._note(request, fault, clock)
        return fault

    def _note(
        self, request: httpx2.Request, fault: Fault | None, clock: _clock.Clock | None
    ) -> None:
        retry = request.headers.get("x-stainless-retry-count")
        count = int(retry) if retry and retry.isdigit() else None
        who = _clock.owner()
        # Virtual time on the cassette's own clock, whichever thread sends (a thread
        # outside the clock's context reads real time, which would give negative delays).
        at = _clock.real_monotonic() + (0.0 if clock is None else clock.offset)
        slept = None if clock is None else clock.slept_of(who)
        path = request.url.path
        self.log.append(Attempt(at, request.method, path, count, fault, slept, who))

    @property
    def injected(self) -> int:
        """How many faults were injected so far."""
        return sum(1 for attempt in self.log if attempt.fault is not None)

    def verdict(self) -> Verdict:
        """What the code under test did, from the log (see ``Verdict``)."""
        log = list(self.log)
        delays = [b.at - a.at for a, b in itertools.pairwise(log)]
        # The waits asked of the virtual clock; none asked (or no clock): the time that
        # passed, as a client in another process that waited for real is measured.
        # Only the sender's own sleeps count: another task's poller or retries are not
        # this retry's wait.
        waits = [
            (
                b.slept - a.slept
                if a.slept is not None and b.slept is not None and a.owner == b.owner
                else 0.0
            )
            or delay
            for (a, b), delay in zip(itertools.pairwise(log), delays, strict=True)
        ]
        advertised = [a.fault.retry_after if a.fault else None for a in log[:-1]]
        after_fault = [a.fault is not None for a in log[:-1]]
        backoff = [
            wait
            for wait, said, faulted in zip(waits, advertised, after_fault, strict=True)
            if faulted and said is None
        ]
        backed_off = _backs_off(backoff)
        waited = all(
            wait >= said * 0.95
            for wait, said in zip(waits, advertised, strict=True)
            if said is not None
        )
        return Verdict(
            attempts=len(log),
            faults=[a.fault.kind if a.fault else "pass" for a in log],
            delays=delays,
            gave_up=bool(log) and log[-1].fault is not None,
            honoured_retry_after=waited and backed_off,
            retried_terminal=any(a.fault is not None and a.fault.terminal for a in log[:-1]),
            waits=waits,
            advertised=advertised,
            backoff=backoff,
            backed_off=backed_off,
            waited_as_advertised=waited,
        )


class _Sequence(Schedule):
    def __init__(self, items: Iterable[Fault | _Pass], path: str | None) -> None:
        super().__init__(path)
        self.items = list(items)
        for item in self.items:
            if not isinstance(item, Fault | _Pass):
                expected = "a list of faults and PASS (from llmreplay.faults)"
                raise ConfigError("fault schedule entry", item, "faults=", expected)

    def _choose(
        self, index: int, request: httpx2.Request, clock: _clock.Clock | None
    ) -> Fault | None:
        item = self.items[index] if index < len(self.items) else PASS
        return item if isinstance(item, Fault) else None


class _Every(Schedule):
    def __init__(self, n: int, fault: Fault, path: str | None) -> None:
        super().__init__(path)
        if n < 1:
            raise ConfigError("every", n, "every(n, ...)", "n must be 1 or more")
        self.n, self.fault = n, fault

    def _choose(
        self, index: int, request: httpx2.Request, clock: _clock.Clock | None
    ) -> Fault | None:
        return self.fault if (index + 1) % self.n == 0 else None


class _First(Schedule):
    def __init__(self, n: int, fault: Fault, path: str | None) -> None:
        super().__init__(path)
        self.n, self.fault = n, fault

    def _choose(
        self, index: int, request: httpx2.Request, clock: _clock.Clock | None
    ) -> Fault | None:
        return self.fault if index < self.n else None


class _Chance(Schedule):
    def __init__(self, p: float, fault: Fault, seed: int, path: str | None) -> None:
        super().__init__(path)
        if not 0.0 <= p <= 1.0:
            raise ConfigError("probability", p, "chance(p, ...)", "p must be between 0 and 1")
        self.p, self.fault, self._random = p, fault, random.Random(seed)

    def _choose(
        self, index: int, request: httpx2.Request, clock: _clock.Clock | None
    ) -> Fault | None:
        return self.fault if self._random.random() < self.p else None


def sequence(items: Iterable[Fault | _Pass], *, path: str | None = None) -> Schedule:
    """Faults consumed in order, one per request; ``PASS`` lets one through; then all pass."""
    return _Sequence(items, path)


def every(n: int, fault: Fault, *, path: str | None = None) -> Schedule:
    """Every ``n``-th request (the n-th, 2n-th, ...) gets ``fault``."""
    return _Every(n, fault, path)


def first(n: int, fault: Fault, *, path: str | None = None) -> Schedule:
    """The first ``n`` requests get ``fault``; the rest pass."""
    return _First(n, fault, path)


def chance(p: float, fault: Fault, *, seed: int = 0, path: str | None = None) -> Schedule:
    """Each request gets ``fault`` with probability ``p``, from a seeded generator."""
    return _Chance(p, fault, seed, path)


FaultsArg = Schedule | Iterable[Fault | _Pass] | Fault | None


def as_schedule(faults: FaultsArg, *, path: str | None = None) -> Schedule | None:
    """What ``cassette(faults=...)`` accepts: a schedule, a list (a sequence), or one fault
    (applied to every request)."""
    if faults is None or isinstance(faults, Schedule):
        return faults
    if isinstance(faults, Fault):
        return every(1, faults, path=path)
    return sequence(faults, path=path)


class Injector(Schedule):
    """A schedule a test can change while it runs (the ``llm_faults`` fixture).

    >>> llm_faults.use([RateLimit(), PASS])           # the next two requests
    >>> llm_faults.verdict().attempts
    """

    def __init__(self) -> None:
        super().__init__()
        self._inner: Schedule | None = None

    def use(self, faults: FaultsArg, *, path: str | None = None) -> Injector:
        """Replace what comes next with ``faults`` (a list, a schedule or one fault)."""
        self._inner = as_schedule(faults, path=path)
        return self

    def _choose(
        self, index: int, request: httpx2.Request, clock: _clock.Clock | None
    ) -> Fault | None:
        return None if self._inner is None else self._inner.take(request, clock)

    def take(self, request: httpx2.Request, clock: _clock.Clock | None = None) -> Fault | None:
        with self._lock:  # the inner schedule's path decides; this log sees every request
            fault = self._choose(len(self.log), request, clock)
            self._note(request, fault, clock)
        return fault
