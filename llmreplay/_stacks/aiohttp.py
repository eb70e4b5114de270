"""The ``aiohttp`` adapter: every ``aiohttp.ClientSession`` request through a cassette.

The patch point is ``ClientSession._request``, which gives the request that a cassette
routes one more client middleware (aiohttp >= 3.12), the innermost: it sees the request as
it goes on the wire (after the session's own middlewares, cookies, auth and redirects) and its
``handler`` is aiohttp's own connect-and-send, the upstream. Upstream answers are read raw
(``auto_decompress`` off for that request), so the cassette keeps the bytes as sent.

The answer is rebuilt as an ``aiohttp.ClientResponse`` whose ``content`` is a real
``StreamReader`` fed chunk by chunk (HTTP chunk boundaries kept, so ``iter_chunks``,
``iter_any``, ``iter_chunked``, ``readline`` and ``async for line in resp.content`` work as
on the wire), through aiohttp's own ``DeflateBuffer`` when the session decompresses. Fault
errors become aiohttp's: ``ConnectionTimeoutError``, ``SocketTimeoutError``,
``ClientConnectorError``, ``ClientOSError``, ``ServerDisconnectedError`` and, mid-stream,
``ClientPayloadError``.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import httpx2
from aiohttp.base_protocol import BaseProtocol
from aiohttp.client_reqrep import ClientRequest, ClientResponse
from aiohttp.http_parser import DeflateBuffer
from multidict import CIMultiDict, CIMultiDictProxy

from .. import _patch
from .._cassette import Cassette, _raw_key
from .._streams import ReplayStream
from . import AsyncNativeStream, aexchange, make_request

_original: Any = None
_tasks: set[asyncio.Task[None]] = set()  # feeders, kept alive until they finish


def _request_error(exc: httpx2.HTTPError, req: ClientRequest) -> Exception:
    message = str(exc)
    if isinstance(exc, httpx2.ConnectTimeout):
        return aiohttp.ConnectionTimeoutError(message)
    if isinstance(exc, httpx2.TimeoutException):
        return aiohttp.SocketTimeoutError(message)
    if isinstance(exc, httpx2.ConnectError):
        os_error = ConnectionRefusedError(errno.ECONNREFUSED, message)
        return aiohttp.ClientConnectorError(req.connection_key, os_error)
    if isinstance(exc, httpx2.ReadError):
        return aiohttp.ClientOSError(errno.ECONNRESET, message)
    return aiohttp.ServerDisconnectedError(message)


def _payload_error(exc: httpx2.HTTPError) -> Exception:
    if isinstance(exc, httpx2.TimeoutException):
        return aiohttp.SocketTimeoutError(str(exc))
    return aiohttp.ClientPayloadError(f"Response payload is not completed: {exc}")


async def _chunks(response: ClientResponse) -> AsyncIterator[bytes]:
    async for data, _ in response.content.iter_chunks():
        yield data


def _from_native(response: ClientResponse) -> httpx2.Response:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]

    async def aclose() -> None:
        response.release()

    return httpx2.Response(
        response.status,
        headers=headers,
        stream=AsyncNativeStream(_chunks(response), aclose),
    )


class _Fed(BaseProtocol):
    """The protocol behind a rebuilt response's ``StreamReader``: it is fed by llmreplay,
    never by a socket, and stays "connected" until fed to the end."""

    __slots__ = ()

    @property
    def connected(self) -> bool:
        return True


class _Sent:
    """What ``ClientResponse`` asks of the writer of a request already sent."""

    def __init__(self, size: int) -> None:
        self.output_size = size


def _feed(target: Any, chunk: bytes) -> None:
    target.begin_http_chunk_receiving()
    target.feed_data(chunk, len(chunk))
    target.end_http_chunk_receiving()


async def _pump(stream: httpx2.AsyncByteStream, target: Any, answer: httpx2.Response) -> None:
    try:
        async for chunk in stream:
            if chunk:
                _feed(target, chunk)
        target.feed_eof()
    except httpx2.HTTPError as exc:
        target.set_exception(_payload_error(exc))
    except Exception as exc:  # upstream's own error, as aiohttp raised it
        target.set_exception(exc)
    finally:
        await answer.aclose()


def _native(
    answer: httpx2.Response, req: ClientRequest, size: int, decompress: bool
) -> ClientResponse:
    loop = req.loop
    response = req.response_class(
        req.method,
        req.original_url,
        writer=None,
        continue100=None,
        timer=req._timer,
        request_info=req.request_info,
        traces=req._traces,
        loop=loop,
        session=req._session,
        stream_writer=_Sent(size),  # type: ignore[arg-type]
    )
    pairs = answer.headers.multi_items()
    response.version = aiohttp.HttpVersion11
    response.status = answer.status_code
    response.reason = answer.reason_phrase
    response._headers = CIMultiDictProxy(CIMultiDict(pairs))
    # aiohttp decodes received headers as UTF-8 (surrogateescape): its raw form is that
    response._raw_headers = tuple(
        (k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
        for k, v in pairs
    )
    cookies = tuple(v for k, v in pairs if k.lower() == "set-cookie")
    response._raw_cookie_headers = cookies or None
    content = aiohttp.StreamReader(_Fed(loop), 2**16, loop=loop)
    response.content = content
    response._closed = False
    content.on_eof(response._response_eof)
    encoding = answer.headers.get("content-encoding", "").lower()
    target: Any = content
    if decompress and encoding in ("gzip", "deflate", "br", "zstd"):
        target = DeflateBuffer(content, encoding)
    stream = answer.stream
    assert isinstance(stream, httpx2.AsyncByteStream)
    whole = stream.whole if isinstance(stream, ReplayStream) else None
    if whole is not None:
        # Recorded, unpaced and whole: fed at once (no task for the common replay).
        for chunk in whole:
            if chunk:
                _feed(target, chunk)
        target.feed_eof()
    else:
        task = loop.create_task(_pump(stream, target, answer))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    return response


def _middleware(cassette: Cassette, decompress: bool) -> Any:
    async def llmreplay(req: ClientRequest, handler: Any) -> ClientResponse:
        body = req.body
        content = b"" if isinstance(body, bytes) else await body.as_bytes()
        if getattr(body, "consumed", False):
            await req.update_body(content)
        headers = list(req.headers.items())

        async def send(_: httpx2.Request) -> httpx2.Response:
            return _from_native(await handler(req))

        url = str(req.url)
        played = cassette._replay_seen(_raw_key(req.method, url, headers, content))
        if played is not None:  # bytes seen before: no request object, no plan
            return _native(cassette._replayed(None, played), req, len(content), decompress)
        try:
            request = make_request(req.method, url, headers, content)
            answer = await aexchange(cassette, request, send)
        except httpx2.HTTPError as exc:
            raise _request_error(exc, req) from exc
        return _native(answer, req, len(content), decompress)

    return llmreplay


def _vcr_around() -> bool:
    """Whether vcrpy's patch of ``_request`` is on top of ours or under it: then vcrpy
    records or replays the request itself, and the guard leaves it to vcrpy."""
    top = aiohttp.ClientSession.__dict__.get("_request")
    for function in (top, _original):
        code = getattr(function, "__code__", None)
        if "/vcr/" in str(getattr(code, "co_filename", "")).replace("\\", "/"):
            return True
    return False


async def _request(
    self: aiohttp.ClientSession, method: str, str_or_url: Any, **kwargs: Any
) -> ClientResponse:
    url = self._build_url(str_or_url)
    cassette = _patch.route(str(url), network=lambda: not _vcr_around())
    if cassette is None:
        return await _original(self, method, str_or_url, **kwargs)  # type: ignore[no-any-return]
    decompress = kwargs.get("auto_decompress")
    if decompress is None:
        decompress = self._auto_decompress
    mine: Sequence[Any] | None = kwargs.get("middlewares")
    effective = self._middlewares if mine is None else mine
    kwargs["middlewares"] = (*effective, _middleware(cassette, bool(decompress)))
    kwargs["auto_decompress"] = False
    return await _original(self, method, str_or_url, **kwargs)  # type: ignore[no-any-return]


def install() -> None:
    """Patch ``aiohttp.ClientSession._request``."""
    global _original
    current = aiohttp.ClientSession.__dict__["_request"]
    if current is not _request:  # vcrpy may have put ours back: never wrap ourselves
        _original = current
    aiohttp.ClientSession._request = _request  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore what ``install`` patched. ``_original`` is kept: a caller that took our
    function while it was installed (vcrpy saves the method it wraps) still reaches aiohttp."""
    if aiohttp.ClientSession.__dict__.get("_request") is _request:
        aiohttp.ClientSession._request = _original  # type: ignore[method-assign]
