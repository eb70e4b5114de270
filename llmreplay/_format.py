"""The cassette file format: one msgpack map, read with limits, never with pickle.

```
{"format": "llmreplay-cassette",
 "version": 1,
 "match": {"match_on": [...], "ignore": [...], "drop_query": [...]},   # how "key" was made
 "interactions": [
   {"key": "<sha256 hex of the canonical request>",
    "request":  {"method": str, "url": str, "headers": [[name, value], ...], "body": bytes},
    "response": {"status": int, "headers": [[name, value], ...],
                 "body": bytes                     # a whole body, or
                 | "chunks": [bytes, ...],         # a stream, chunk boundaries as received
                 "cut": "upstream" | "caller"},    # optional: the stream ended early
    "recorded_at": "ISO-8601", "elapsed_ms": float, "chunk_ms": [float, ...]}, ...]}
```

Bodies are the raw transport bytes (still gzip-compressed when ``content-encoding`` says
so), never base64. Headers are name/value pairs so repeated headers survive. ``match``
lets a reader with different ``match_on``/``ignore`` settings know the stored keys do not
apply to it and recompute them.

Reading is bounded, whatever the bytes: declared lengths cannot run past the file, the
number of maps and lists is capped by the file size (``_Budget``), every URL must parse,
and the body helpers here (``expand``, ``parse_json``) cap decompression at
``MAX_DECOMPRESSED`` and JSON nesting at ``MAX_JSON_DEPTH``.
"""

from __future__ import annotations

import gc
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import msgpack

from ._errors import CassetteError

FORMAT_NAME = "llmreplay-cassette"
# Bump when a reader of the previous version would misread a new file; readers refuse
# newer versions rather than guess.
FORMAT_VERSION = 1

Headers = list[tuple[str, str]]


@dataclass(slots=True)
class RecordedRequest:
    """A request as stored: method, full URL (credentials removed), headers, raw body."""

    method: str
    url: str
    headers: Headers
    body: bytes


# The last event of a complete server-sent event stream: OpenAI chat and completions,
# Anthropic messages, OpenAI responses (completed, failed or incomplete, all final).
LAST_EVENTS = (
    b"data: [DONE]",
    b"event: message_stop",
    b'"type":"message_stop"',
    b"event: response.completed",
    b"event: response.failed",
    b"event: response.incomplete",
)


def ends_with_last_event(chunks: list[bytes]) -> bool:
    """Whether an event stream's chunks end with its protocol's last event: read that far,
    the answer is whole even if the transport's terminator was never read."""
    tail = b"".join(chunks[-3:])[-400:]
    last = tail.rstrip().rsplit(b"\n\n", 1)[-1]
    return any(marker in last for marker in LAST_EVENTS)


@dataclass(slots=True)
class RecordedResponse:
    """A response as stored: a whole ``body``, or the ``chunks`` of a stream."""

    status: int
    headers: Headers
    body: bytes | None = None
    chunks: list[bytes] | None = None
    cut: str | None = None

    @property
    def content(self) -> bytes:
        """The raw body, with a stream's chunks joined."""
        return self.body if self.body is not None else b"".join(self.chunks or ())

    @property
    def whole(self) -> bytes | None:
        """The raw body when it plays back complete (not cut) and unframed (not sent
        ``transfer-encoding: chunked``): what an HTTP stack may hand over in one piece."""
        if self.cut is not None:
            return None
        if self.chunks is not None:
            for name, value in self.headers:
                if name.lower() == "transfer-encoding" and "chunked" in value.lower():
                    return None
        return self.content


@dataclass(slots=True)
class Interaction:
    """One recorded request and its response."""

    key: str
    request: RecordedRequest
    response: RecordedResponse
    recorded_at: str = ""
    elapsed_ms: float = 0.0
    chunk_ms: list[float] = field(default_factory=list)


def _headers_out(headers: Headers) -> list[list[str]]:
    return [[k, v] for k, v in headers]


def _to_map(item: Interaction) -> dict[str, Any]:
    response: dict[str, Any] = {
        "status": item.response.status,
        "headers": _headers_out(item.response.headers),
    }
    if item.response.chunks is not None:
        response["chunks"] = item.response.chunks
    else:
        response["body"] = item.response.body or b""
    if item.response.cut:
        response["cut"] = item.response.cut
    out: dict[str, Any] = {
        "key": item.key,
        "request": {
            "method": item.request.method,
            "url": item.request.url,
            "headers": _headers_out(item.request.headers),
            "body": item.request.body,
        },
        "response": response,
        "recorded_at": item.recorded_at,
        "elapsed_ms": item.elapsed_ms,
    }
    if item.chunk_ms:
        out["chunk_ms"] = item.chunk_ms
    return out


def encode(interactions: list[Interaction], match: dict[str, list[str]]) -> bytes:
    """The bytes of a cassette file holding ``interactions``."""
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "match": match,
        "interactions": [_to_map(item) for item in interactions],
    }
    return msgpack.packb(document, use_bin_type=True)


# A body never expands past this when decoded (gzip/deflate bombs): keys then use the raw
# bytes, and people see a summary instead of the content.
MAX_DECOMPRESSED = 64 * 2**20
# JSON nested deeper than this is not parsed (it would exhaust the stack): keys use the raw
# bytes, and people see the text. Real request bodies stay far below it.
MAX_JSON_DEPTH = 100


class _TooLarge(Exception):
    pass


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    out: list[bytes] = []
    total, data = 0, body
    while True:
        stream = zlib.decompressobj(wbits)
        piece = stream.decompress(data, limit - total + 1)
        total += len(piece)
        if total > limit:
            raise _TooLarge
        out.append(piece)
        if not stream.eof:
            raise EOFError("truncated compressed data")
        data = stream.unused_data
        # gzip allows several members one after another; zlib (deflate) one stream.
        if wbits != 31 or data[:2] != b"\x1f\x8b":
            return b"".join(out)


def expand(
    body: bytes, encoding: str, *, sniff: bool = False, limit: int = MAX_DECOMPRESSED
) -> tuple[bytes, bool]:
    """``(body without its content-encoding, False)``; ``(body, True)`` when decoding would
    pass ``limit`` bytes. Undecodable bodies come back as they are. ``sniff`` also unpacks
    gzip bytes that lost their header (stripped recordings)."""
    encoding = encoding.lower()
    try:
        if encoding == "gzip" or (sniff and body[:2] == b"\x1f\x8b"):
            return _inflate(body, 31, limit), False
        if encoding == "deflate":
            return _inflate(body, 15, limit), False
    except _TooLarge:
        return body, True
    except (zlib.error, EOFError):
        pass
    return body, False


def decompressed(body: bytes, encoding: str, *, sniff: bool = False) -> bytes:
    """``body`` without its ``content-encoding`` (gzip or deflate); as it is when that
    fails or would expand past ``MAX_DECOMPRESSED``."""
    return expand(body, encoding, sniff=sniff)[0]


# A JSON string, or an unterminated one running to the end: possessive, so a scan never
# backtracks and never restarts inside a string (linear time whatever the bytes).
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_ONE_KIND = bytes.maketrans(b"{}", b"[]")  # nesting depth does not care which kind


def too_deep(data: bytes) -> bool:
    """Whether the JSON in ``data`` nests deeper than ``MAX_JSON_DEPTH`` (brackets inside
    strings do not count). Linear in the size, in C: each pass removes the innermost
    pairs, and a run of more opening brackets than the depth left ends it at once.
    Brackets that do not pair up are left for the JSON parser to refuse."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:  # not enough brackets
        return False
    shape = _JSON_STRING.sub(b"", data).translate(_ONE_KIND, _NOT_BRACKETS)
    for level in range(MAX_JSON_DEPTH):
        if b"[" * (MAX_JSON_DEPTH - level + 1) in shape:
            return True
        inner = shape.replace(b"[]", b"")  # one level per pass
        if len(inner) == len(shape):
            return False  # no pairs left to remove: not JSON, the parser says so
        shape = inner
    return b"[" in shape


NOT_JSON: Any = object()


def parse_json(data: bytes | str) -> Any:
    """The JSON value in ``data``, or ``NOT_JSON`` when it is not JSON or nests deeper than
    ``MAX_JSON_DEPTH`` (parsed without any risk of ``RecursionError``)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.lstrip()[:1] not in (b"{", b"[") or too_deep(raw):
        return NOT_JSON
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return NOT_JSON


class _Invalid(Exception):
    """A structural problem, turned into a CassetteError naming the file."""


def _need(mapping: Any, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, dict) or name not in mapping:
        raise _Invalid(f"{where} has no {name!r}")
    value = mapping[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Invalid(f"{where}.{name} has the wrong type ({type(value).__name__})")
    return value


def _headers_in(value: Any, where: str) -> Headers:
    if type(value) is not list:
        raise _Invalid(f"{where} is not a list of [name, value] pairs")
    out: Headers = [
        (pair[0], pair[1])
        for pair in value
        if type(pair) is list and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str
    ]
    if len(out) != len(value):
        raise _Invalid(f"{where} has an entry that is not a [name, value] pair of strings")
    return out


def _from_map(raw: Any, index: int, urls: set[str]) -> Interaction:
    where = f"interaction {index}"
    req = _need(raw, "request", dict, where)
    resp = _need(raw, "response", dict, where)
    chunks = resp.get("chunks")
    body = resp.get("body")
    if chunks is not None:
        if not isinstance(chunks, list) or not all(isinstance(c, bytes) for c in chunks):
            raise _Invalid(f"{where}.response.chunks is not a list of bytes")
    elif not isinstance(body, bytes):
        raise _Invalid(f"{where}.response has neither body bytes nor chunks")
    cut = resp.get("cut")
    if cut == "caller" and chunks and ends_with_last_event(chunks):
        cut = None  # read to its last event (recorded before llmreplay knew): whole
    chunk_ms = raw.get("chunk_ms", [])
    if not isinstance(chunk_ms, list) or not all(isinstance(t, int | float) for t in chunk_ms):
        raise _Invalid(f"{where}.chunk_ms is not a list of numbers")
    elapsed = raw.get("elapsed_ms", 0.0)
    recorded_at = raw.get("recorded_at", "")
    if not isinstance(elapsed, int | float) or not isinstance(recorded_at, str):
        raise _Invalid(f"{where} has a bad elapsed_ms or recorded_at")
    return Interaction(
        key=_need(raw, "key", str, where),
        request=RecordedRequest(
            method=_need(req, "method", str, where + ".request"),
            url=_check_url(_need(req, "url", str, where + ".request"), where + ".request", urls),
            headers=_headers_in(req.get("headers", []), where + ".request.headers"),
            body=_need(req, "body", bytes, where + ".request"),
        ),
        response=RecordedResponse(
            status=_need(resp, "status", int, where + ".response"),
            headers=_headers_in(resp.get("headers", []), where + ".response.headers"),
            body=body if chunks is None else None,
            chunks=chunks,
            cut=cut if isinstance(cut, str) else None,
        ),
        recorded_at=recorded_at,
        elapsed_ms=float(elapsed),
        chunk_ms=[float(t) for t in chunk_ms],
    )


class _Budget:
    """Counts the maps and lists msgpack builds and stops past what a cassette of this size
    can hold: ten megabytes of one-byte empty maps would otherwise become hundreds of
    megabytes of dicts before any check. The smallest interaction takes ~110 bytes for 3
    maps and at most 4 empty lists; a header pair takes 7 bytes or more (``["te", "x"]``)."""

    def __init__(self, size: int) -> None:
        self.maps = self.empty_lists = size // 24 + 256
        self.lists = size // 6 + 256

    def map(self, value: dict[str, Any]) -> dict[str, Any]:
        self.maps -= 1
        if self.maps < 0:
            raise _Invalid("it holds far more maps than a cassette of its size can")
        return value

    def list(self, value: list[Any]) -> list[Any]:
        self.lists -= 1
        if not value:
            self.empty_lists -= 1
        if self.lists < 0 or self.empty_lists < 0:
            raise _Invalid("it holds far more lists than a cassette of its size can")
        return value


# Every byte that is not a msgpack list header (fixarray 0x90-0x9f, array 16/32).
_NOT_LIST_HEADERS = bytes(sorted(set(range(256)) - set(range(0x90, 0xA0)) - {0xDC, 0xDD}))


def _check_url(url: str, where: str, seen: set[str]) -> str:
    """``url``, once both parsers that will read it (urllib, httpx2) accept it."""
    if url not in seen:
        try:
            urlsplit(url).port  # noqa: B018 - the port is checked lazily
            httpx2.URL(url)
        except (ValueError, UnicodeError, httpx2.InvalidURL) as exc:
            raise _Invalid(f"{where}.url {url[:80]!r} is not a valid URL ({exc})") from None
        seen.add(url)
    return url


def _refuse_ext(code: int, data: bytes) -> Any:
    raise _Invalid(f"it holds a msgpack extension type ({code}), which cassettes never use")


def decode(data: bytes, path: str | Path) -> tuple[list[Interaction], dict[str, Any]]:
    """Parse cassette bytes into interactions and the stored ``match`` description.

    Every problem becomes a ``CassetteError`` naming ``path``; msgpack's own exceptions
    never escape. Limits come from the input size, so memory stays bounded.
    """
    # Building tens of thousands of small objects triggers the cyclic garbage collector
    # over and over; none of them can form a cycle, so it is paused (load time / 2.5).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _decode(data, path)
    finally:
        if paused:
            gc.enable()


def _decode(data: bytes, path: str | Path) -> tuple[list[Interaction], dict[str, Any]]:
    if not data:
        raise CassetteError(path, "the file is empty (truncated, or never written)")
    if data[:1] == b"\x80" or data[:2] in (b"(d", b"(l", b"}q", b"]q"):
        raise CassetteError(
            path,
            "it looks like a pickle file; llmreplay never loads pickle, it could run code",
            hint="Delete it and record a msgpack cassette instead.",
        )
    budget = _Budget(len(data))
    # Counting lists one call each costs a sixth of the load; a file with fewer list-header
    # bytes than the budget cannot build more lists than it allows, so needs no count.
    may_exceed = len(data.translate(None, _NOT_LIST_HEADERS)) > budget.lists
    try:
        document = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            object_hook=budget.map,
            list_hook=budget.list if may_exceed else None,
            # No list is longer than half the file: every element takes two bytes or more.
            max_array_len=len(data) // 2,
        )
    except _Invalid as exc:
        raise CassetteError(path, str(exc)) from None
    except msgpack.ExtraData as exc:
        unpacked = exc.args[0] if exc.args else None
        if isinstance(unpacked, dict) and unpacked.get("format") == FORMAT_NAME:
            raise CassetteError(path, "it has trailing bytes after the cassette map") from None
        document = None  # not a cassette at all: reported below
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        text = str(exc).lower()
        if isinstance(exc, msgpack.OutOfData) or "incomplete" in text:
            problem = "truncated (it ends in the middle of the data)"
        elif "exceeds max" in text:
            problem = "truncated or corrupt (a length runs past the end of the file)"
        else:
            problem = f"not valid msgpack ({exc})"
        raise CassetteError(path, problem) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        looks_like_text = all(b in b"\t\n\r" or 32 <= b < 127 for b in data[:64])
        raise CassetteError(
            path,
            "not an llmreplay cassette (no 'format': 'llmreplay-cassette' map"
            + (
                "; it looks like text, perhaps a YAML or JSON vcrpy cassette)"
                if looks_like_text
                else ")"
            ),
            hint="Check the path; vcrpy cassettes can be converted with 'llmreplay import-vcr'.",
        )
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CassetteError(path, f"its format version {version!r} is not valid")
    if version > FORMAT_VERSION:
        raise CassetteError(
            path,
            f"format version {version} is newer than supported version {FORMAT_VERSION}",
            hint="Upgrade llmreplay (pip install -U pytest-llmreplay) to read it.",
        )
    raw_items = document.get("interactions")
    if not isinstance(raw_items, list):
        raise CassetteError(path, "its 'interactions' is missing or not a list")
    match = document.get("match")
    urls: set[str] = set()
    try:
        items = [_from_map(raw, i, urls) for i, raw in enumerate(raw_items)]
    except _Invalid as exc:
        raise CassetteError(path, str(exc)) from None
    return items, match if isinstance(match, dict) else {}
