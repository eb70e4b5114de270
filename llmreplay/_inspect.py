"""Reading cassettes as people do: decoded bodies, reassembled streams, credential scans.

Used by the CLI (``show``, ``export``, ``textconv``, ``ls``, ``verify``); nothing here is on
the replay path. Whatever a file holds, the work is bounded: bodies decode up to
``MAX_DECOMPRESSED`` bytes and are shown up to ``SHOW_LIMIT`` (a summary otherwise), JSON
deeper than ``MAX_JSON_DEPTH`` is shown as text, and strings longer than ``LONG_STRING``
are shortened with their length and hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ._errors import CassetteError
from ._format import (
    FORMAT_NAME,
    MAX_DECOMPRESSED,
    NOT_JSON,
    Headers,
    Interaction,
    decode,
    expand,
    parse_json,
)
from ._match import url_path
from ._scrub import KEY_ALTERNATIVES, KEY_START, decode_all, innermost, unescape
from ._storage import TMP_DIR, FileStorage

# Bodies larger than this (decoded) are summarised, not shown: a readable copy stays
# readable, and ``export --format yaml`` stays seconds, not minutes.
SHOW_LIMIT = 8 * 2**20
LONG_STRING = 256 * 2**10

# A key starts where a token starts: not in the middle of a base64/base64url blob (an
# ``encrypted_content`` field can hold "sk-" followed by twenty letters by chance).
_START = KEY_START
# Encoded runs verify opens to look inside: base64/base64url and hex, long enough to hold a key.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{28,}={0,2}")
_HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2}){14,}")
# What credentials look like; matched on every header, URL and decoded body.
SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("an Anthropic API key", re.compile(_START + r"sk-ant-(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{20,}")),
    (
        "an OpenAI API key",
        re.compile(_START + r"sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{20,}"),
    ),
    (
        "a provider key (Google, AWS, GitHub, Groq, xAI, Hugging Face, Replicate, "
        "Perplexity, Stripe, Slack) or a JWT",
        re.compile(_START + KEY_ALTERNATIVES),
    ),
    ("a bearer token", re.compile(r"(?i)bearer\s+(?!<redacted>)[A-Za-z0-9._~+/=-]{16,}")),
    (
        "an Azure/API key parameter",
        re.compile(
            r"(?i)(?:api[-_]?key|subscription-key)[\"']?\s*[:=]\s*[\"']?(?!<redacted>)[A-Za-z0-9]{24,}"
        ),
    ),
]
_CREDENTIAL_HEADERS = {"authorization", "api-key", "x-api-key", "ocp-apim-subscription-key"}


def load(path: Path) -> list[Interaction]:
    """The interactions of the cassette at ``path`` (``CassetteError`` if unreadable)."""
    data = FileStorage().load(path)
    if data is None:
        raise CassetteError(path, "no such file", hint="Check the path.")
    items, _ = decode(data, path)
    return items


# How every cassette file begins: a map whose first entry is "format": "llmreplay-cassette".
_MAGIC = b"\xa6format" + bytes([0xA0 + len(FORMAT_NAME)]) + FORMAT_NAME.encode()
_SUFFIXES = (".msgpack", ".llmreplay")


def is_cassette(path: Path) -> bool:
    """Whether ``path`` is (or, by its name, claims to be) an llmreplay cassette: named
    ``*.msgpack`` / ``*.llmreplay``, or starting as every cassette file starts."""
    if path.name.endswith(_SUFFIXES):
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_MAGIC) + 5)
    except OSError:
        return False
    return _MAGIC in head


def cassettes(root: Path) -> Iterator[Path]:
    """Cassette files under ``root`` (or ``root`` itself), found by content, in a stable
    order; temporary files of saves in progress and hidden folders are skipped."""
    if root.is_file():
        yield root
        return
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != TMP_DIR]
        for name in files:
            path = Path(folder) / name
            if not name.endswith(".tmp") and is_cassette(path):
                found.append(path)
    yield from sorted(found)


def _header(headers: Headers, name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def decoded(body: bytes, headers: Headers) -> bytes:
    """``body`` without its ``content-encoding`` (gzip, deflate, br, or several of them:
    ``br, gzip``); as is if that fails or would expand past ``MAX_DECOMPRESSED``."""
    encoding = _header(headers, "content-encoding")
    plain = decode_all(body, encoding)
    return plain if plain is not None else expand(body, encoding, sniff=True)[0]


def _summary(data: bytes, kind: str, why: str = "") -> str:
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"<{kind}: {len(data):,} bytes, sha256 {digest}…{why}>"


def _shortened(value: Any) -> Any:
    """``value`` with strings longer than ``LONG_STRING`` cut (depth is bounded already)."""
    if isinstance(value, str):
        if len(value) <= LONG_STRING:
            return value
        digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:16]
        return f"{value[:200]}… <{len(value):,} characters, sha256 {digest}…>"
    if isinstance(value, dict):
        return {k: _shortened(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shortened(v) for v in value]
    return value


def readable(body: bytes, headers: Headers) -> Any:
    """A body for people: parsed JSON, text, or a summary of binary or oversized content."""
    encoding = _header(headers, "content-encoding")
    data, too_large = expand(body, encoding, sniff=True)
    kind = _header(headers, "content-type") or "binary"
    if too_large:
        cap = f"{MAX_DECOMPRESSED // 2**20} MiB"
        return _summary(data, f"{encoding or 'gzip'} body", f"; expands past the {cap} limit")
    if not data:
        return ""
    if len(data) > SHOW_LIMIT:
        return _summary(data, kind, f"; larger than {SHOW_LIMIT // 2**20} MiB, not shown")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _summary(data, kind)
    parsed = parse_json(data)
    return _shortened(text if parsed is NOT_JSON else parsed)


def render(item: Interaction, *, timing: bool = True) -> dict[str, Any]:
    """One interaction as JSON-ready data, bodies decoded and streams reassembled."""
    request, response = item.request, item.response
    out: dict[str, Any] = {
        "key": item.key,
        "request": {
            "method": request.method,
            "url": request.url,
            "headers": [f"{k}: {v}" for k, v in request.headers],
            "body": readable(request.body, request.headers),
        },
        "response": {
            "status": response.status,
            "headers": [f"{k}: {v}" for k, v in response.headers],
        },
    }
    if response.chunks is not None:
        out["response"]["stream"] = {
            "chunks": len(response.chunks),
            "text": readable(b"".join(response.chunks), response.headers),
            "cut": response.cut,
        }
    else:
        out["response"]["body"] = readable(response.body or b"", response.headers)
    if timing:
        out["recorded_at"] = item.recorded_at
        out["elapsed_ms"] = item.elapsed_ms
        if item.chunk_ms:
            out["chunk_ms"] = item.chunk_ms
    return out


def model(item: Interaction) -> str | None:
    """The ``model`` a request asked for, if its body says."""
    body = readable(item.request.body, item.request.headers)
    value = body.get("model") if isinstance(body, dict) else None
    if value is None and "/deployments/" in item.request.url:
        value = url_path(item.request.url).split("/deployments/", 1)[1].split("/", 1)[0]
    return value if isinstance(value, str) else None


def endpoint(item: Interaction) -> str:
    return f"{item.request.method} {url_path(item.request.url)}"


def textconv(items: list[Interaction]) -> str:
    """Stable text for ``git diff``: no timings, interactions ordered by key then by order."""
    order: dict[str, int] = {}
    numbered = []
    for item in items:
        order[item.key] = order.get(item.key, -1) + 1
        numbered.append((item.key, order[item.key], item))
    numbered.sort(key=lambda t: (t[0], t[1]))
    blocks = []
    for key, index, item in numbered:
        head = f"=== {endpoint(item)}  key {key[:16]}  #{index}"
        body = json.dumps(render(item, timing=False), indent=2, sort_keys=True, ensure_ascii=False)
        blocks.append(f"{head}\n{body}")
    return "\n".join(blocks) + ("\n" if blocks else "")


def secrets_in(item: Interaction) -> Iterator[tuple[str, str, str]]:
    """``(where, what, excerpt)`` for every credential-looking string in ``item``."""
    request, response = item.request, item.response
    places: list[tuple[str, str]] = [("request url", request.url)]
    for side, headers in (("request", request.headers), ("response", response.headers)):
        for name, value in headers:
            if name.lower() in _CREDENTIAL_HEADERS and value and value != "<redacted>":
                yield f"{side} header {name}", "a credential header", _excerpt(value)
            places.append((f"{side} header {name}", f"{name}: {value}"))
    for side, body, headers in (
        ("request body", request.body, request.headers),
        ("response body", response.content, response.headers),
    ):
        places.append((side, innermost(decoded(body, headers)).decode("latin-1")))
    for where, text in places:
        for form, derived in _disguises(text):
            hit = _first_secret(derived)
            if hit:
                label = where if form == "as written" else f"{where} ({form})"
                yield label, hit[0], _excerpt(hit[1])
                break


def _first_secret(text: str) -> tuple[str, str] | None:
    for what, pattern in SECRET_PATTERNS:
        match = pattern.search(text)
        if match:
            return what, match.group(0)
    return None


def _disguises(text: str) -> Iterator[tuple[str, str]]:
    """``text``, then what it says behind URL-encoding, JSON escapes, base64 and hex."""
    yield "as written", text
    if "%" in text:
        yield "URL-encoded", unquote(text)
    if "\\u" in text:
        yield "JSON-escaped", unescape(text)
    for match in _BASE64_RUN.finditer(text):
        run = match.group(0).rstrip("=")
        url_safe = "-" in run or "_" in run
        padded = run + "=" * (-len(run) % 4)
        try:
            raw = (base64.urlsafe_b64decode if url_safe else base64.b64decode)(padded)
        except (binascii.Error, ValueError):
            continue
        yield ("base64url" if url_safe else "base64"), raw.decode("latin-1")
    for match in _HEX_RUN.finditer(text):
        yield "hex", bytes.fromhex(match.group(0)).decode("latin-1")


def unchecked(item: Interaction) -> Iterator[str]:
    """What in ``item`` cannot be checked for credentials: bodies whose compression would
    expand past ``MAX_DECOMPRESSED`` (a credential could hide inside)."""
    request, response = item.request, item.response
    for side, body, headers in (
        ("request body", request.body, request.headers),
        ("response body", response.content, response.headers),
    ):
        if expand(body, _header(headers, "content-encoding"), sniff=True)[1]:
            yield (
                f"{side} is compressed data that expands past the "
                f"{MAX_DECOMPRESSED // 2**20} MiB limit, so it cannot be checked"
            )


def _excerpt(secret: str) -> str:
    return secret[:8] + "…" + secret[-4:] if len(secret) > 16 else secret[:4] + "…"
