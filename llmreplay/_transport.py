"""``CassetteTransport``: one httpx2 transport class for sync and async clients.

Each method reads the request body, asks the cassette for a plan (``Cassette._plan``, which
runs the sans-IO ``_engine.decide`` and the fault schedule), and carries it out: wait, raise
a fault's transport error, return a replayed or fault response, or forward upstream and let
the cassette tee the answer into a recording; a fault may then alter the answer.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

import httpx2

from . import _clock

if TYPE_CHECKING:
    from ._cassette import Cassette


# True while a cassette sends a request upstream: the HTTP stack that upstream itself runs on
# (an httpx client over aiohttp, requests under another adapter) lets it by, uncaptured, so
# one request is recorded once (``_patch.route``).
_forwarding: ContextVar[bool] = ContextVar("llmreplay_forwarding", default=False)


def forwarding() -> bool:
    """Whether this thread or task is inside a cassette's upstream send."""
    return _forwarding.get()


class CassetteTransport(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """Sends requests through a cassette; ``upstream`` is used when the mode goes to network.

    >>> import llmreplay
    >>> cas = llmreplay.cassette("fixtures/cassettes/examples/greet.msgpack")
    >>> client = httpx2.Client(transport=cas.transport())
    """

    def __init__(
        self,
        cassette: Cassette,
        upstream: httpx2.BaseTransport | httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.cassette = cassette
        self._upstream = upstream
        self._own_sync: httpx2.HTTPTransport | None = None
        self._own_async: httpx2.AsyncHTTPTransport | None = None

    def _sync_upstream(self) -> httpx2.BaseTransport:
        if isinstance(self._upstream, httpx2.BaseTransport):
            return self._upstream
        if self._own_sync is None:
            self._own_sync = httpx2.HTTPTransport()
        return self._own_sync

    def _async_upstream(self) -> httpx2.AsyncBaseTransport:
        if isinstance(self._upstream, httpx2.AsyncBaseTransport):
            return self._upstream
        if self._own_async is None:
            self._own_async = httpx2.AsyncHTTPTransport()
        return self._own_async

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        seen = self.cassette._replay_request(request)
        if seen is not None:
            return seen
        plan = self.cassette._plan(request)
        if plan.delay > 0:
            _clock.pause(plan.delay)
        if plan.error is not None:
            raise plan.error
        response = plan.response
        if response is None:
            assert plan.upstream is not None
            started = _clock.real_monotonic()
            token = _forwarding.set(True)
            try:
                answer = self._sync_upstream().handle_request(request)
            finally:
                _forwarding.reset(token)
            response = self.cassette._from_upstream(request, answer, plan.upstream, started)
        return plan.wrap(response) if plan.wrap is not None else response

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        seen = self.cassette._replay_request(request)
        if seen is not None:
            return seen
        plan = self.cassette._plan(request)
        if plan.delay > 0:
            await _clock.apause(plan.delay)
        if plan.error is not None:
            raise plan.error
        response = plan.response
        if response is None:
            assert plan.upstream is not None
            started = _clock.real_monotonic()
            token = _forwarding.set(True)
            try:
                answer = await self._async_upstream().handle_async_request(request)
            finally:
                _forwarding.reset(token)
            response = self.cassette._from_upstream(request, answer, plan.upstream, started)
        return plan.wrap(response) if plan.wrap is not None else response

    def close(self) -> None:
        if self._own_sync is not None:
            self._own_sync.close()
        if isinstance(self._upstream, httpx2.BaseTransport):
            self._upstream.close()

    async def aclose(self) -> None:
        if self._own_async is not None:
            await self._own_async.aclose()
        if isinstance(self._upstream, httpx2.AsyncBaseTransport):
            await self._upstream.aclose()
