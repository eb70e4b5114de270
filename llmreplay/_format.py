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
"""

from __future__ import annotations

import gc
import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def decompressed(body: bytes, encoding: str, *, sniff: bool = False) -> bytes:
    """``body`` without its ``content-encoding`` (gzip or deflate); as it is when that
    fails. ``sniff`` also unpacks gzip bytes that lost their header (stripped recordings)."""
    encoding = encoding.lower()
    try:
        if encoding == "gzip" or (sniff and body[:2] == b"\x1f\x8b"):
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error, EOFError):
        pass
    return body


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
    if not isinstance(value, list):
        raise _Invalid(f"{where} is not a list of [name, value] pairs")
    out: Headers = []
    for pair in value:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
        ):
            raise _Invalid(f"{where} has an entry that is not a [name, value] pair of strings")
        out.append((pair[0], pair[1]))
    return out


def _from_map(raw: Any, index: int) -> Interaction:
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
            url=_need(req, "url", str, where + ".request"),
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
    try:
        document = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, ext_hook=_refuse_ext
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
            hint="Upgrade llmreplay (pip install -U llmreplay) to read it.",
        )
    raw_items = document.get("interactions")
    if not isinstance(raw_items, list):
        raise CassetteError(path, "its 'interactions' is missing or not a list")
    match = document.get("match")
    try:
        items = [_from_map(raw, i) for i, raw in enumerate(raw_items)]
    except _Invalid as exc:
        raise CassetteError(path, str(exc)) from None
    return items, match if isinstance(match, dict) else {}
