"""The legacy ``httpx`` adapter: ``httpx.Client``/``AsyncClient`` through a cassette.

The patch point is httpx's own ``Client._transport_for_url`` and its async twin, as for
httpx2: every request of any client, whatever transport it has, goes through
``HttpxTransport`` with the client's transport kept as upstream. ``cas.httpx_transport()``
wires a client explicitly. Requests and answers cross to httpx2 and back header for header
(repeated ones kept) and chunk for chunk: httpx decodes ``content-encoding`` itself from the
raw bytes, and a stream stays a stream. httpx2 errors (faults, cut streams) become the httpx
exception of the same name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import httpx2

from .. import _patch
from .._cassette import RawKey, _encoded, _raw_key, raw_parts
from .._errors import LLMReplayError
from . import AsyncNativeStream, NativeStream, aexchange, exchange, make_request

if TYPE_CHECKING:
    from .._cassette import Cassette
    from .._format import Interaction

_originals: dict[type[Any], Any] = {}

# SDKs (by User-Agent) whose retry loop catches every exception a transport raises, retries
# it and re-raises it as a bare "Connection error." (groq 1.x). A miss or a refusal reaches
# them as an answer instead, which they neither retry (``x-should-retry: false``) nor
# reword (a plain-text body becomes the error message verbatim); the exception itself stays
# in ``err.response.extensions["llmreplay_error"]``.
WRAPPING_SDKS = ("Groq/", "AsyncGroq/")
REFUSAL_STATUS = 599


def _refused(exc: LLMReplayError, request: httpx.Request) -> httpx.Response:
    """Raise ``exc`` for ``request``, or answer it, for an SDK that would wrap it."""
    if not request.headers.get("user-agent", "").startswith(WRAPPING_SDKS):
        raise exc
    return _refusal(exc, request)


def _refusal(exc: LLMReplayError, request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        REFUSAL_STATUS,
        headers={
            "content-type": "text/plain; charset=utf-8",
            "x-should-retry": "false",
            "x-llmreplay-error": type(exc).__name__,
        },
        content=str(exc).encode(),
        request=request,
        extensions={"llmreplay_error": exc},
    )


def _error(exc: httpx2.HTTPError, request: httpx.Request) -> Exception:
    cls = getattr(httpx, type(exc).__name__, None)
    if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
        cls = httpx.TransportError
    return cls(str(exc), request=request)


_urls: dict[Any, str] = {}  # an httpx URL's parsed form -> its text (an app calls a few)


def _url(url: httpx.URL) -> str:
    """``str(url)``, which httpx rebuilds from the parsed parts on every call, once per
    distinct URL (keyed by those parts, a named tuple)."""
    parts = getattr(url, "_uri_reference", None)
    if parts is None:  # pragma: no cover - an httpx without it
        return str(url)
    text = _urls.get(parts)
    if text is None:
        if len(_urls) >= 1024:
            _urls.clear()
        text = _urls[parts] = str(url)
    return text


_DECODING = frozenset({b"content-type", b"content-encoding"})


def _raw(request: httpx.Request, url: str) -> RawKey | None:
    """The request's raw key (``_cassette._raw_key``), its first content-type and
    content-encoding read from httpx's (raw name, lower name, value) list without decoding
    or copying the other headers."""
    items = getattr(request.headers, "_list", None)
    if items is None:  # pragma: no cover - an httpx without it
        return _raw_key(request.method, url, request.headers.raw, request.content)
    kind = coding = None
    for _, lower, value in items:
        if lower in _DECODING:  # one set lookup per header: most are neither
            if lower == b"content-type":
                if kind is None:
                    kind = value
            elif coding is None:
                coding = value
    return raw_parts(request.method, url, kind, coding, request.content)


def _from_native(
    response: httpx.Response, stream: httpx2.SyncByteStream | httpx2.AsyncByteStream
) -> httpx2.Response:
    return httpx2.Response(
        response.status_code,
        headers=response.headers.raw,
        stream=stream,
        extensions={k: v for k, v in response.extensions.items() if k != "network_stream"},
    )


class _Back(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An httpx2 answer's stream as an httpx stream, its httpx2 errors turned into httpx's."""

    def __init__(self, response: httpx2.Response, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        stream = self._response.stream
        assert isinstance(stream, httpx2.SyncByteStream)
        try:
            yield from stream
        except httpx2.HTTPError as exc:
            raise _error(exc, self._request) from exc

    async def __aiter__(self) -> AsyncIterator[bytes]:
        stream = self._response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)
        try:
            async for chunk in stream:
                yield chunk
        except httpx2.HTTPError as exc:
            raise _error(exc, self._request) from exc

    def close(self) -> None:
        self._response.close()

    async def aclose(self) -> None:
        await self._response.aclose()


def _native(answer: httpx2.Response, request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        answer.status_code,
        headers=answer.headers.raw,  # bytes as they are: nothing decoded and encoded again
        stream=_Back(answer, request),
        request=request,
        extensions=dict(answer.extensions),
    )


def _replayed(cassette: Cassette, item: Interaction, request: httpx.Request) -> httpx.Response:
    """A recording the cassette plays, as httpx's response: a single recorded body straight
    from the recording, a stream (chunk for chunk, cut or not) through the cassette's."""
    recorded = item.response
    if recorded.chunks is not None or recorded.cut is not None or recorded.body is None:
        return _native(cassette._replayed(None, item), request)
    return httpx.Response(
        recorded.status,
        headers=_encoded(recorded.headers),  # as the planned path: bytes, any text
        stream=httpx.ByteStream(recorded.body),
        request=request,
        extensions=cassette._played_extensions(item),
    )


class HttpxTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Sends legacy httpx requests through a cassette; ``upstream`` (default: a plain
    ``httpx.HTTPTransport``/``AsyncHTTPTransport``) is used when the mode goes to network.

    >>> import httpx, llmreplay
    >>> cas = llmreplay.cassette("fixtures/cassettes/examples/greet.msgpack")
    >>> client = httpx.Client(transport=cas.httpx_transport())
    """

    def __init__(
        self,
        cassette: Cassette,
        upstream: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.cassette = cassette
        self._upstream = upstream

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        upstream = self._upstream
        if not isinstance(upstream, httpx.BaseTransport):
            upstream = self._upstream = httpx.HTTPTransport()

        def send(_: httpx2.Request) -> httpx2.Response:
            response: httpx.Response = upstream.handle_request(request)
            stream = response.stream
            assert isinstance(stream, httpx.SyncByteStream)
            return _from_native(response, NativeStream(iter(stream), stream.close))

        request.read()
        url = _url(request.url)
        played = self.cassette._replay_seen(_raw(request, url))
        if played is not None:  # bytes seen before: no request object, no plan
            return _replayed(self.cassette, played, request)
        try:
            sent = make_request(request.method, url, request.headers.raw, request.content)
            answer = exchange(self.cassette, sent, send)
        except httpx2.HTTPError as exc:
            raise _error(exc, request) from exc
        except LLMReplayError as exc:
            return _refused(exc, request)
        return _native(answer, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        upstream = self._upstream
        if not isinstance(upstream, httpx.AsyncBaseTransport):
            upstream = self._upstream = httpx.AsyncHTTPTransport()

        async def send(_: httpx2.Request) -> httpx2.Response:
            response: httpx.Response = await upstream.handle_async_request(request)
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            return _from_native(response, AsyncNativeStream(aiter(stream), stream.aclose))

        await request.aread()
        url = _url(request.url)
        played = self.cassette._replay_seen(_raw(request, url))
        if played is not None:
            return _replayed(self.cassette, played, request)
        try:
            sent = make_request(request.method, url, request.headers.raw, request.content)
            answer = await aexchange(self.cassette, sent, send)
        except httpx2.HTTPError as exc:
            raise _error(exc, request) from exc
        except LLMReplayError as exc:
            return _refused(exc, request)
        return _native(answer, request)

    def close(self) -> None:
        if isinstance(self._upstream, httpx.BaseTransport):
            self._upstream.close()

    async def aclose(self) -> None:
        if isinstance(self._upstream, httpx.AsyncBaseTransport):
            await self._upstream.aclose()


class _Refusing(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """What a client gets for a request the guard refused outside every cassette."""

    def __init__(self, exc: LLMReplayError) -> None:
        self._exc = exc

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return _refused(self._exc, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return _refused(self._exc, request)


def _reaches_network(upstream: object, method: str) -> bool:
    return not isinstance(upstream, httpx.MockTransport) and _patch._reaches_network(
        upstream, method
    )


def _sync_transport_for_url(self: httpx.Client, url: httpx.URL) -> httpx.BaseTransport:
    upstream: httpx.BaseTransport = _originals[httpx.Client](self, url)
    if isinstance(upstream, HttpxTransport):
        return upstream
    try:
        cassette = _patch.route(
            str(url), network=lambda: _reaches_network(upstream, "handle_request")
        )
    except LLMReplayError as exc:
        return _Refusing(exc)
    return upstream if cassette is None else HttpxTransport(cassette, upstream)


def _async_transport_for_url(self: httpx.AsyncClient, url: httpx.URL) -> httpx.AsyncBaseTransport:
    upstream: httpx.AsyncBaseTransport = _originals[httpx.AsyncClient](self, url)
    if isinstance(upstream, HttpxTransport):
        return upstream
    try:
        cassette = _patch.route(
            str(url), network=lambda: _reaches_network(upstream, "handle_async_request")
        )
    except LLMReplayError as exc:
        return _Refusing(exc)
    return upstream if cassette is None else HttpxTransport(cassette, upstream)


def install() -> None:
    """Patch ``httpx.Client``/``AsyncClient._transport_for_url``."""
    for cls, replacement in (
        (httpx.Client, _sync_transport_for_url),
        (httpx.AsyncClient, _async_transport_for_url),
    ):
        current = cls.__dict__["_transport_for_url"]
        if current is not replacement:  # never wrap ourselves
            _originals[cls] = current
        cls._transport_for_url = replacement  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore what ``install`` patched. The originals are kept: a caller that took our
    function while it was installed still reaches httpx."""
    for cls, original in _originals.items():
        if cls.__dict__.get("_transport_for_url") in (
            _sync_transport_for_url,
            _async_transport_for_url,
        ):
            cls._transport_for_url = original
