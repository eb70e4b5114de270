"""The ``urllib3`` adapter, which ``requests`` (and botocore) send through: pools through a
cassette.

The patch point is ``HTTPConnectionPool._make_request``: one request on one connection, below
urllib3's own retry and redirect loop (``urlopen``), so a fault is retried, redirected or
raised exactly as urllib3 and ``requests`` would treat the real thing, and a request that
``requests`` sends is captured once, here. Nothing connects unless the cassette forwards the
request upstream (the original ``_make_request``).

Through a proxy, urllib3's ``urlopen`` opens the ``CONNECT`` tunnel for an HTTPS request
(``_prepare_proxy``) before it calls ``_make_request``: while llmreplay is installed that
step is deferred (``_defer_tunnel``) and done on the same connection just before the
request really goes out (``_send``), so a replayed request opens nothing, not even the
proxy's connection, and a recorded or live one tunnels exactly as urllib3 would.

The answer is rebuilt as a ``urllib3.HTTPResponse`` over the raw recorded bytes, so urllib3
decodes ``content-encoding`` itself; a chunked answer replays chunk for chunk through
urllib3's own ``read_chunked`` (``stream()``, ``requests``' ``iter_content``/``iter_lines``).
Fault errors become urllib3's: ``ConnectTimeoutError``, ``ReadTimeoutError``,
``NewConnectionError``, ``ProtocolError`` (which ``requests`` turns into ``ConnectTimeout``,
``ReadTimeout``, ``ConnectionError`` and, mid-stream, ``ChunkedEncodingError``).
"""

from __future__ import annotations

import http.client
import inspect
import io
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx2
import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from .. import _patch
from .._cassette import RawKey, _raw_key, raw_parts
from . import NativeStream, exchange, make_request

if TYPE_CHECKING:
    from .._cassette import Cassette
    from .._format import Interaction, RecordedResponse

_DEFAULT_PORTS = {"http": 80, "https": 443}
_original: Any = None
_original_prepare: Any = None  # HTTPSConnectionPool._prepare_proxy
_names: tuple[str, ...] = ()  # _make_request's parameters after (self, conn, method, url)
_defaults: dict[str, Any] = {}


_origins: dict[tuple[str, str, int | None], str] = {}  # a pool's scheme, host, port -> origin


def _url(pool: HTTPConnectionPool, url: str) -> str:
    if url.startswith(("http://", "https://")):  # absolute: a request through a proxy
        return url
    where = (pool.scheme, pool.host, pool.port)
    origin = _origins.get(where)
    if origin is None:
        if len(_origins) >= 1024:
            _origins.clear()
        host = pool.host if ":" not in pool.host else f"[{pool.host}]"
        port = "" if pool.port in (None, _DEFAULT_PORTS.get(pool.scheme)) else f":{pool.port}"
        origin = _origins[where] = f"{pool.scheme}://{host}{port}"
    return origin + url


def _body(body: Any) -> bytes:
    if type(body) is bytes:  # what urllib3 and requests send, mostly
        return body
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        data = body.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return b"".join(c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in body)


def _raw(method: str, url: str, sent: Any, content: bytes) -> RawKey | None:
    """The request's raw key (``_cassette._raw_key``); from an ``HTTPHeaderDict`` (what
    urllib3 sends, lower name -> [name, value, ...], iterated only in Python) its first
    content-type and content-encoding are read directly. A header value http.client would
    refuse raises here as it would there (a replay must not pass what production fails)."""
    container = getattr(sent, "_container", None)
    if isinstance(sent, urllib3.HTTPHeaderDict) and isinstance(container, dict):
        for entry in container.values():  # [name, value, ...]
            for value in entry[1:] if len(entry) > 2 else (entry[1],):
                if type(value) is not str and not isinstance(value, str | bytes):
                    _refuse_value(entry[0], value)
        kind = container.get("content-type")
        coding = container.get("content-encoding")
        return raw_parts(method, url, kind and kind[1], coding and coding[1], content)
    pairs = [] if sent is None else list(sent.items())
    for name, value in pairs:
        if not isinstance(value, str | bytes):
            _refuse_value(name, value)
    return _raw_key(method, url, pairs, content)


def _refuse_value(name: str, value: object) -> None:
    """http.client sends text, bytes and integers (as their digits); anything else fails."""
    if isinstance(value, int):
        return
    raise TypeError(
        f"header {name!r} has the value {value!r}: http.client sends only text, bytes and "
        "integers, so urllib3 would fail to send this request"
    )


def _request_error(
    exc: httpx2.HTTPError, pool: HTTPConnectionPool, conn: Any, url: str
) -> Exception:
    message = str(exc)
    if isinstance(exc, httpx2.ConnectTimeout):
        return ConnectTimeoutError(conn, message)
    if isinstance(exc, httpx2.TimeoutException):
        return ReadTimeoutError(pool, url, message)
    if isinstance(exc, httpx2.ConnectError):
        return NewConnectionError(conn, message)
    if isinstance(exc, httpx2.ReadError):
        return ProtocolError("Connection aborted.", ConnectionResetError(message))
    return ProtocolError("Connection aborted.", http.client.RemoteDisconnected(message))


Pairs = Sequence[tuple[str, str]]


def _message(pairs: Pairs) -> http.client.HTTPMessage:
    message = http.client.HTTPMessage()
    for name, value in pairs:
        message[name] = value
    return message


class _Whole(io.BytesIO):
    """A whole recorded body (played at once, not cut, not chunked) as the file object
    urllib3 reads: its bytes in memory, read at C speed. Like http.client's response it
    reports ``isclosed()`` once read to the end, so urllib3 gives the connection back to the
    pool, and carries the method (a HEAD has no body) and the headers (``msg``: requests'
    cookie jar reads them)."""

    def __init__(self, data: bytes, method: str, headers: Pairs) -> None:
        super().__init__(data)
        self._headers = headers
        self._method = method
        self._size = len(data)
        self._msg: http.client.HTTPMessage | None = None

    def isclosed(self) -> bool:
        return self.closed or self.tell() >= self._size

    @property
    def msg(self) -> http.client.HTTPMessage:
        if self._msg is None:
            self._msg = _message(self._headers)
        return self._msg


class _Body:
    """The answer's chunks as the file object urllib3 reads: ``read(amt)`` for a plain body,
    and http.client's chunk framing (``fp.readline``, ``_safe_read``) for a chunked one, so
    urllib3's ``read_chunked`` yields the recorded chunks. Cut streams raise what a broken
    socket would, which urllib3 turns into its own errors."""

    def __init__(self, answer: httpx2.Response, method: str) -> None:
        self._answer = answer
        # What urllib3 and requests read from http.client's response: the method (a HEAD
        # has no body), the headers as an HTTPMessage (requests' cookie jar reads them).
        self._method = method
        stream = answer.stream
        assert isinstance(stream, httpx2.SyncByteStream)
        self._chunks: Iterator[bytes] | None = iter(stream)
        self._buffer = b""
        self._ended = False  # the terminating zero-size chunk was given out
        self._closed = False
        self._msg: http.client.HTTPMessage | None = None
        self.fp = self  # what urllib3 reads chunk framing from
        # As http.client: a body of a known length is closed once that much was read, so
        # urllib3 gives the connection back without a further, empty read.
        length = answer.headers.get("content-length", "")
        chunked = "chunked" in answer.headers.get("transfer-encoding", "").lower()
        self._left = int(length) if length.isdigit() and not chunked else None

    def _next(self) -> bytes | None:
        if self._chunks is None:
            return None
        try:
            for chunk in self._chunks:
                if chunk:
                    return chunk
        except httpx2.TimeoutException as exc:
            raise TimeoutError(str(exc)) from exc
        except httpx2.HTTPError as exc:
            raise ProtocolError(f"Connection broken: {exc}", exc) from exc
        self.close()  # read to the end: a recording is committed now
        return None

    def read(self, amt: int | None = None) -> bytes:
        if amt is None:
            data, self._buffer = self._buffer, b""
            while (chunk := self._next()) is not None:
                data += chunk
            self.close()
            return data
        if not self._buffer:
            chunk = self._next()
            if chunk is None:
                return b""
            self._buffer = chunk
        data, self._buffer = self._buffer[:amt], self._buffer[amt:]
        if self._left is not None:
            self._left -= len(data)
            if self._left <= 0 and not self._buffer:
                while self._next() is not None:  # the stream's end: a recording commits
                    pass
        return data

    def read1(self, amt: int = -1) -> bytes:
        return self.read(amt if amt is not None and amt > 0 else 1 << 16)

    @property
    def msg(self) -> http.client.HTTPMessage:
        if self._msg is None:
            self._msg = _message(self._answer.headers.multi_items())
        return self._msg

    # http.client's chunked framing, as urllib3's read_chunked reads it
    def readline(self, limit: int = -1) -> bytes:
        if self._ended:
            return b""
        chunk = self._next()
        if chunk is None:
            self._ended = True
            return b"0\r\n"
        self._buffer = chunk
        return b"%x\r\n" % len(chunk)

    def _safe_read(self, amt: int) -> bytes:
        if not self._buffer:
            return b"\r\n"  # the CRLF after a chunk
        data, self._buffer = self._buffer[:amt], self._buffer[amt:]
        return data

    def isclosed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._chunks = None
            self._answer.close()


def _response(
    status: int, pairs: Pairs, body: _Whole | _Body, kw: dict[str, Any]
) -> urllib3.HTTPResponse:
    """urllib3's response over ``body``; ``kw`` is the ``_make_request`` call's arguments."""
    headers = urllib3.HTTPHeaderDict()
    for name, value in pairs:
        headers.add(name, value)
    return urllib3.HTTPResponse(
        body=body,  # type: ignore[arg-type]  # file-like: read(), close()
        headers=headers,
        status=status,
        version=11,
        version_string="HTTP/1.1",
        reason=http.client.responses.get(status, ""),
        preload_content=kw["preload_content"],
        decode_content=kw["decode_content"],
        pool=kw["self"],
        connection=kw["response_conn"],
        retries=kw["retries"],
        enforce_content_length=kw["enforce_content_length"],
        request_method=kw["method"],
        request_url=kw["url"],
        # As for http.client's response: once it is read to the end, urllib3 gives the
        # connection back to the pool.
        original_response=body,  # type: ignore[arg-type]
    )


def _native(answer: httpx2.Response, kw: dict[str, Any]) -> urllib3.HTTPResponse:
    """The engine's answer as urllib3's response (header names as received, not lowered)."""
    body = _Body(answer, kw["method"])
    encoding = answer.headers.encoding
    pairs = [(k.decode(encoding), v.decode(encoding)) for k, v in answer.headers.raw]
    return _response(answer.status_code, pairs, body, kw)


def _length(headers: Pairs) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value) if value.isdigit() else None
    return None


def _whole(recorded: RecordedResponse) -> bytes | None:
    """A recorded body to hand over in one piece: whole, non-empty and of the length its
    ``content-length`` says. Anything else reads as a socket would (``_Body``): an empty
    body is read once before urllib3 sees it closed and gives the connection back, a
    short one is reported."""
    data = recorded.whole
    if not data or _length(recorded.headers) != len(data):
        return None
    return data


def _replayed(cassette: Cassette, item: Interaction, kw: dict[str, Any]) -> urllib3.HTTPResponse:
    """A recording the cassette plays as urllib3's response: straight from the recording
    when its body can be handed over whole (``_whole``), else through the cassette's
    stream."""
    recorded = item.response
    data = cassette._derived(recorded, _whole)  # decided once per recording
    if data is None or kw["method"] == "HEAD":
        return _native(cassette._replayed(None, item), kw)
    headers = recorded.headers
    return _response(recorded.status, headers, _Whole(data, kw["method"], headers), kw)


def _from_native(raw: urllib3.BaseHTTPResponse) -> httpx2.Response:
    amount = None if raw.chunked else 1 << 16  # a chunked body: each chunk as it arrives
    return httpx2.Response(
        raw.status,
        headers=list(raw.headers.items()),
        stream=NativeStream(raw.stream(amount, decode_content=False), raw.close),
    )


_TUNNEL = "_llmreplay_tunnel"  # set on a connection whose CONNECT tunnel is still owed


def _defer_tunnel(self: HTTPSConnectionPool, conn: Any) -> None:
    """``_prepare_proxy`` as urllib3 calls it in ``urlopen``: not yet (``_send`` does it)."""
    setattr(conn, _TUNNEL, True)


def _send(self: HTTPConnectionPool, conn: Any, *args: Any, **kwargs: Any) -> Any:
    """urllib3's own ``_make_request``, after the tunnel ``_defer_tunnel`` put off."""
    if conn.__dict__.pop(_TUNNEL, False) and conn.is_closed:
        _original_prepare(self, conn)
    return _original(self, conn, *args, **kwargs)


def _make_request(
    self: HTTPConnectionPool, conn: Any, method: str, url: str, *args: Any, **kwargs: Any
) -> urllib3.BaseHTTPResponse:
    full = _url(self, url)
    # A connection class of vcrpy's records or replays by itself: not the network.
    network = not type(conn).__module__.startswith("vcr.")
    cassette = _patch.route(full, network=network)
    if cassette is None:  # passed on exactly as called, whatever urllib3 2.x adds
        return _send(self, conn, method, url, *args, **kwargs)  # type: ignore[no-any-return]
    # The call's arguments by name (what inspect's bind + apply_defaults give, cheaper).
    call = {**_defaults, "self": self, "conn": conn, "method": method, "url": url}
    if args:  # urllib3 passes them by name; others may not
        call.update(zip(_names, args, strict=False))  # never more than the parameters
    call.update(kwargs)
    body = call["body"]
    content = _body(body)
    sent = call["headers"]
    played = cassette._replay_seen(_raw(method, full, sent, content))
    if played is not None:  # bytes seen before: no request object, no plan
        return _replayed(cassette, played, call)
    headers = [] if sent is None else list(sent.items())

    def send(_: httpx2.Request) -> httpx2.Response:
        raw = _send(
            **{
                **call,
                "body": content if body is not None else None,
                "response_conn": None,  # released by the rebuilt response, once read
                "preload_content": False,
                "decode_content": False,
            }
        )
        return _from_native(raw)

    try:
        answer = exchange(cassette, make_request(method, full, headers, content), send)
    except httpx2.HTTPError as exc:
        raise _request_error(exc, self, conn, url) from exc
    return _native(answer, call)


def install() -> None:
    """Patch ``HTTPConnectionPool._make_request`` (HTTPS pools inherit it) and defer
    ``HTTPSConnectionPool._prepare_proxy``."""
    global _original, _original_prepare, _names, _defaults
    prepare = HTTPSConnectionPool.__dict__["_prepare_proxy"]
    if prepare is not _defer_tunnel:
        _original_prepare = prepare
    HTTPSConnectionPool._prepare_proxy = _defer_tunnel  # type: ignore[method-assign]
    current = HTTPConnectionPool.__dict__["_make_request"]
    if current is not _make_request and current is not _original:  # never wrap ourselves
        _original = current
        parameters = list(inspect.signature(_original).parameters.values())[4:]
        _names = tuple(p.name for p in parameters)
        _defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    HTTPConnectionPool._make_request = _make_request  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore what ``install`` patched. ``_original`` is kept: a caller that took our
    function while it was installed still reaches urllib3."""
    if HTTPConnectionPool.__dict__.get("_make_request") is _make_request:
        HTTPConnectionPool._make_request = _original  # type: ignore[method-assign]
    if HTTPSConnectionPool.__dict__.get("_prepare_proxy") is _defer_tunnel:
        HTTPSConnectionPool._prepare_proxy = _original_prepare  # type: ignore[method-assign]
