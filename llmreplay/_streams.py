"""Response streams: replaying recorded chunks, and teeing upstream chunks into a recording.

``ReplayStream`` yields recorded chunks with their original boundaries, optionally paced by
their recorded offsets, and ends the way the recording ended (a stream that upstream cut
raises ``httpx2.RemoteProtocolError`` again). ``RecordingStream`` hands each upstream chunk
to the caller as it arrives, notes it and its time, and reports the whole on close: a
stream the caller abandoned or upstream broke is reported as cut (with ``drain``, a stream the
caller stopped reading because a fault cut it is read to its end first, and reported whole).
One class of each serves sync and async clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import httpx2

from . import _clock
from ._format import ends_with_last_event


class ReplayStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """Recorded chunks, replayed chunk for chunk.

    ``offsets_ms`` paces the chunks (realtime replay); ``cut`` set means the recorded
    stream ended early and replay ends the same way, with ``RemoteProtocolError``.
    """

    def __init__(
        self,
        chunks: Sequence[bytes],
        *,
        request: httpx2.Request | None,
        offsets_ms: Sequence[float] = (),
        cut: str | None = None,
    ) -> None:
        self._chunks = chunks
        self._request = request
        self._offsets = offsets_ms
        self._cut = cut

    @property
    def whole(self) -> Sequence[bytes] | None:
        """The chunks, when they play back at once and end complete (no pacing, not cut):
        an adapter may then hand them over without iterating this stream."""
        return None if self._offsets or self._cut else self._chunks

    def _error(self) -> httpx2.RemoteProtocolError:
        who = "the caller stopped reading" if self._cut == "caller" else "upstream cut it"
        return httpx2.RemoteProtocolError(
            f"the stream ends here: when it was recorded, {who} after "
            f"{len(self._chunks)} chunk(s) (llmreplay)",
            request=self._request,
        )

    def _delay(self, index: int, start: float) -> float:
        if index >= len(self._offsets):
            return 0.0
        return self._offsets[index] / 1000.0 - (_clock.real_monotonic() - start)

    def __iter__(self) -> Iterator[bytes]:
        start = _clock.real_monotonic()
        for index, chunk in enumerate(self._chunks):
            delay = self._delay(index, start)
            if delay > 0:
                _clock.real_sleep(delay)
            yield chunk
        if self._cut:
            raise self._error()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        start = _clock.real_monotonic()
        for index, chunk in enumerate(self._chunks):
            delay = self._delay(index, start)
            if delay > 0:
                await _clock.real_asleep(delay)
            yield chunk
        if self._cut:
            raise self._error()


# Called once with the chunks, their offsets in ms from the response head, and how the
# stream ended: None (complete), "caller" (closed before the end) or "upstream" (broke).
OnDone = Callable[[list[bytes], list[float], str | None], None]


class RecordingStream(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """Tees an upstream response stream: the caller gets each chunk as upstream sends it."""

    def __init__(
        self,
        upstream: httpx2.SyncByteStream | httpx2.AsyncByteStream,
        on_done: OnDone,
        *,
        drain: bool = False,
    ) -> None:
        self._upstream = upstream
        self._drain = drain
        self._on_done = on_done
        self._start = _clock.real_monotonic()
        self._chunks: list[bytes] = []
        self._offsets: list[float] = []
        self._ended: str | None = "caller"
        self._done = False
        self._sync_source: Iterator[bytes] | None = None
        self._async_source: AsyncIterator[bytes] | None = None

    def _add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._offsets.append(round((_clock.real_monotonic() - self._start) * 1000.0, 3))

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._on_done(self._chunks, self._offsets, self._ended)

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._upstream, httpx2.SyncByteStream)
        if self._sync_source is None:  # one upstream iterator, resumed by a drain
            self._sync_source = iter(self._upstream)
        try:
            for chunk in self._sync_source:
                self._add(chunk)
                yield chunk
        except Exception:
            self._ended = "upstream"
            self._finish()
            raise
        self._ended = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._upstream, httpx2.AsyncByteStream)
        if self._async_source is None:
            self._async_source = aiter(self._upstream)
        try:
            async for chunk in self._async_source:
                self._add(chunk)
                yield chunk
        except Exception:
            self._ended = "upstream"
            self._finish()
            raise
        self._ended = None

    def _draining(self) -> bool:
        return self._drain and not self._done and self._ended == "caller"

    def _ended_by_protocol(self) -> None:
        """A caller that stops at the stream's own last event read it to its end.

        openai's sync ``Stream`` breaks at ``data: [DONE]`` and closes the response with the
        chunked terminator unread: the answer is complete, not cut by the caller. Nothing
        more is read (a server that keeps the connection open would hang a drain)."""
        if self._ended == "caller" and self._chunks and ends_with_last_event(self._chunks):
            self._ended = None

    def close(self) -> None:
        self._ended_by_protocol()
        try:
            if isinstance(self._upstream, httpx2.SyncByteStream):
                if self._draining():
                    # A fault cut what the caller sees: record the whole answer anyway.
                    for _ in self:
                        pass
                self._upstream.close()
        finally:
            self._finish()

    async def aclose(self) -> None:
        self._ended_by_protocol()
        try:
            if isinstance(self._upstream, httpx2.AsyncByteStream):
                if self._draining():
                    async for _ in self:
                        pass
                await self._upstream.aclose()
        finally:
            self._finish()
