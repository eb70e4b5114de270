"""Reading cassettes as people do: decoded bodies, reassembled streams, credential scans.

Used by the CLI (``show``, ``export``, ``textconv``, ``ls``, ``verify``); nothing here is on
the replay path.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._format import Headers, Interaction, decode, decompressed

# What credentials look like; matched on every header, URL and decoded body.
SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("an Anthropic API key", re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}")),
    ("an OpenAI API key", re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
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
    items, _ = decode(path.read_bytes(), path)
    return items


def cassettes(root: Path) -> Iterator[Path]:
    """Cassette files under ``root`` (or ``root`` itself), in a stable order."""
    if root.is_file():
        yield root
        return
    yield from sorted(p for p in root.rglob("*.msgpack") if p.is_file())


def _header(headers: Headers, name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def decoded(body: bytes, headers: Headers) -> bytes:
    """``body`` without its ``content-encoding`` (gzip, deflate); as is if that fails."""
    return decompressed(body, _header(headers, "content-encoding"), sniff=True)


def readable(body: bytes, headers: Headers) -> Any:
    """A body for people: parsed JSON, text, or a summary of binary content."""
    data = decoded(body, headers)
    if not data:
        return ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        digest = hashlib.sha256(data).hexdigest()[:16]
        kind = _header(headers, "content-type") or "binary"
        return f"<{kind}: {len(data)} bytes, sha256 {digest}…>"
    if text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


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
        value = urlsplit(item.request.url).path.split("/deployments/", 1)[1].split("/", 1)[0]
    return value if isinstance(value, str) else None


def endpoint(item: Interaction) -> str:
    return f"{item.request.method} {urlsplit(item.request.url).path}"


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
    places.append(("request body", decoded(request.body, request.headers).decode("latin-1")))
    raw = response.content
    places.append(("response body", decoded(raw, response.headers).decode("latin-1")))
    for where, text in places:
        for what, pattern in SECRET_PATTERNS:
            match = pattern.search(text)
            if match:
                yield where, what, _excerpt(match.group(0))
                break


def _excerpt(secret: str) -> str:
    return secret[:8] + "…" + secret[-4:] if len(secret) > 16 else secret[:4] + "…"
