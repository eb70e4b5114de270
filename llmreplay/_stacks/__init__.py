"""Adapters for HTTP stacks other than httpx2: what they share.

Each adapter (``httpx``, ``urllib3`` for urllib3 and requests, ``aiohttp``) patches its
library's single send point, asks ``_patch.route`` which cassette a request belongs to, turns
the native request into an ``httpx2.Request`` and hands it to the one decision core through
``exchange``/``aexchange``: a ``CassetteTransport`` whose upstream (``Upstream``) performs the
library's original send and turns its answer into an ``httpx2.Response`` whose stream is the
native body iterator (``NativeStream``), so chunks are teed as they arrive. The adapter then
rebuilds the returned ``httpx2.Response`` as its library's own response object and maps the
httpx2 errors that faults and cut streams raise to its library's exception types. Keys, modes,
faults, scrubbing, storage and stream recording are never an adapter's business.

Every module here imports its library at the top: ``_patch`` imports a module only when its
library is installed (``available``), when the first cassette or guard turns capture on.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import httpx2

from .._transport import CassetteTransport

if TYPE_CHECKING:
    from .._cassette import Cassette

# The stacks, in install order, with the top-level module each needs and the oldest version
# its adapter supports (urllib3 2: ``_make_request`` as patched; aiohttp 3.12: client
# middlewares). An older version is left unpatched: patching it would break its requests.
LIBRARIES = {"httpx": "httpx", "urllib3": "urllib3", "aiohttp": "aiohttp"}
MINIMUM = {"httpx": (0, 23), "urllib3": (2, 0), "aiohttp": (3, 12)}


def supported(version: str, minimum: tuple[int, int]) -> bool:
    """Whether a ``major.minor...`` version string is at least ``minimum``."""
    numbers = [int(n) for n in re.findall(r"\d+", version)[:2]]
    return tuple(numbers) >= minimum


_versions: dict[str, bool] = {}  # stack -> supported, once its library was found


def available(stack: str) -> bool:
    """Whether ``stack``'s library is installed in a supported version (found without
    importing it). Asked on every first activation, so the version, which costs a read of
    the package's metadata, is read once per process."""
    name = LIBRARIES[stack]
    try:
        if importlib.util.find_spec(name) is None:
            return False
        known = _versions.get(stack)
        if known is None:
            known = _versions[stack] = supported(importlib.metadata.version(name), MINIMUM[stack])
        return known
    except (ImportError, ValueError):  # pragma: no cover - a broken or half-removed install
        return False


class NativeStream(httpx2.SyncByteStream):
    """A native library's body iterator, seen as an httpx2 stream (nothing buffered)."""

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], object]) -> None:
        self._chunks = chunks
        self._close = close

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    def close(self) -> None:
        self._close()


class AsyncNativeStream(httpx2.AsyncByteStream):
    """A native library's async body iterator, seen as an httpx2 stream."""

    def __init__(self, chunks: AsyncIterator[bytes], aclose: Callable[[], Awaitable[object]]):
        self._chunks = chunks
        self._aclose = aclose

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        await self._aclose()


_urls: dict[str, httpx2.URL] = {}  # parsed once: an app calls the same few endpoints


Headers = Sequence[tuple[str, str]] | Sequence[tuple[bytes, bytes]]


def _wire(text: str | bytes | int) -> bytes:
    """A native stack's header text as the bytes it puts on the wire: latin-1, as
    http.client sends (requests, urllib3), else UTF-8 (aiohttp's encoding); an integer as
    its digits (http.client). httpx2 itself would refuse anything but ASCII."""
    if isinstance(text, bytes):
        return text
    if isinstance(text, int):
        return str(text).encode("ascii")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def make_request(method: str, url: str, headers: Headers, content: bytes) -> httpx2.Request:
    """The httpx2 request the engine sees for a native one: built field by field (the four
    attributes ``httpx2.Request.__init__`` sets), which costs a twentieth of the constructor
    on the replay path; the URL is parsed once per distinct URL."""
    parsed = _urls.get(url)
    if parsed is None:
        if len(_urls) >= 1024:
            _urls.clear()
        parsed = _urls[url] = httpx2.URL(url)
    request = httpx2.Request.__new__(httpx2.Request)
    request.method = method.upper()
    request.url = parsed
    request.headers = httpx2.Headers([(_wire(k), _wire(v)) for k, v in headers])
    request.extensions = {}
    request.stream = httpx2.ByteStream(content)
    request._content = content
    return request


Send = Callable[[httpx2.Request], httpx2.Response]
AsyncSend = Callable[[httpx2.Request], Awaitable[httpx2.Response]]


class Upstream(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """The upstream a cassette forwards to: the native library's original send."""

    def __init__(self, send: Send | None = None, asend: AsyncSend | None = None) -> None:
        self._send = send
        self._asend = asend

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        assert self._send is not None
        return self._send(request)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        assert self._asend is not None
        return await self._asend(request)


def exchange(cassette: Cassette, request: httpx2.Request, send: Send) -> httpx2.Response:
    """``request`` through ``cassette``; ``send`` performs the native send when needed."""
    return CassetteTransport(cassette, Upstream(send=send)).handle_request(request)


async def aexchange(
    cassette: Cassette, request: httpx2.Request, send: AsyncSend
) -> httpx2.Response:
    """The async ``exchange``."""
    return await CassetteTransport(cassette, Upstream(asend=send)).handle_async_request(request)
