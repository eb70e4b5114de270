"""Request keys: which parts of a request identify it, and how they are made canonical.

A key is the sha256 hex of the canonical parts named by ``match_on`` (default: method,
path, query, body). Parts are small classes registered by name (respx's ``Pattern`` idea),
so ``match_on=("method", "host", "path", "body")`` is just a tuple of names.

Canonical forms:
- method upper-cased; path as sent; query as sorted ``key=value`` pairs, credentials removed;
- a JSON body parsed and dumped with sorted keys and no whitespace, so re-indented or
  re-ordered JSON gets the same key; fields named in ``ignore`` are left out
  (``"user"``, or a dotted path such as ``"metadata.trace_id"``);
- a multipart body with its random boundary replaced by a fixed one; any other body raw;
- headers, when matched on, without per-call and secret headers (``x-stainless-*``,
  ``idempotency-key``, ``authorization``, ``user-agent``, ...).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from ._errors import ConfigError
from ._format import decompressed

DEFAULT_MATCH_ON = ("method", "path", "query", "body")

# Headers that differ between two sends of the same request, or carry secrets.
_VOLATILE_HEADERS = frozenset(
    {
        "authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "user-agent",
        "idempotency-key",
        "content-length",
        "host",
        "connection",
        "accept-encoding",
        "openai-organization",
        "openai-project",
    }
)


@dataclass(frozen=True, slots=True)
class RequestView:
    """The parts of a request that keys are made from, live or recorded alike."""

    method: str
    url: str
    headers: Sequence[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return ""


class MatchPart:
    """One part of a request that can take part in the key. Subclasses register by ``name``."""

    name: ClassVar[str]
    _registry: ClassVar[dict[str, type[MatchPart]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name in MatchPart._registry:
            raise TypeError(f"a match part named {cls.name!r} is already registered")
        MatchPart._registry[cls.name] = cls

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        raise NotImplementedError


class _Method(MatchPart):
    name = "method"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return request.method.upper().encode()


class _Scheme(MatchPart):
    name = "scheme"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return urlsplit(request.url).scheme.lower().encode()


class _Host(MatchPart):
    name = "host"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return (urlsplit(request.url).hostname or "").lower().encode()


class _Path(MatchPart):
    name = "path"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return (urlsplit(request.url).path or "/").encode()


class _Query(MatchPart):
    name = "query"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        pairs = parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
        kept = sorted((k, v) for k, v in pairs if k.lower() not in spec.drop_query)
        return "&".join(f"{k}={v}" for k, v in kept).encode()


class _Body(MatchPart):
    name = "body"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return canonical_body(request, spec.ignore)


class _Headers(MatchPart):
    name = "headers"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        kept = sorted(
            (k.lower(), v)
            for k, v in request.headers
            if k.lower() not in _VOLATILE_HEADERS and not k.lower().startswith("x-stainless-")
        )
        return "\n".join(f"{k}: {v}" for k, v in kept).encode()


MATCH_PARTS: Mapping[str, type[MatchPart]] = MappingProxyType(MatchPart._registry)


def _drop_path(obj: Any, path: Sequence[str]) -> None:
    if not isinstance(obj, dict):
        if isinstance(obj, list):
            for item in obj:
                _drop_path(item, path)
        return
    if len(path) == 1:
        obj.pop(path[0], None)
    elif path[0] in obj:
        _drop_path(obj[path[0]], path[1:])


def canonical_body(request: RequestView, ignore: Iterable[str] = ()) -> bytes:
    """The body as it takes part in the key (see the module docstring)."""
    body = decompressed(request.body, request.header("content-encoding"))
    content_type = request.header("content-type")
    if content_type.startswith("multipart/") and "boundary=" in content_type:
        boundary = content_type.split("boundary=", 1)[1].split(";", 1)[0].strip().strip('"')
        return body.replace(boundary.encode(), b"llmreplay-boundary")
    head = body.lstrip()[:1]
    if head not in (b"{", b"["):
        return body
    try:
        data = json.loads(body)
    except ValueError:  # not JSON after all: raw bytes it is
        return body
    for dotted in ignore:
        _drop_path(data, dotted.split("."))
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How keys are made: the parts matched on, ignored JSON fields, query params dropped."""

    match_on: tuple[str, ...] = DEFAULT_MATCH_ON
    ignore: tuple[str, ...] = ()
    drop_query: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, match_on: Iterable[str] | None, ignore: Iterable[str], drop_query: Iterable[str]
    ) -> KeySpec:
        parts = tuple(DEFAULT_MATCH_ON if match_on is None else match_on)
        for part in parts:
            if part not in MATCH_PARTS:
                expected = "expected names from: " + ", ".join(sorted(MATCH_PARTS))
                raise ConfigError("match_on part", part, "match_on=", expected)
        if not parts:
            raise ConfigError("match_on", parts, "match_on=", "name at least one part")
        return cls(parts, tuple(sorted(set(ignore))), frozenset(q.lower() for q in drop_query))

    def describe(self) -> dict[str, list[str]]:
        """What a cassette stores so that a reader knows whether its keys still apply."""
        return {
            "match_on": list(self.match_on),
            "ignore": list(self.ignore),
            "drop_query": sorted(self.drop_query),
        }

    def parts(self, request: RequestView) -> dict[str, bytes]:
        return {name: MATCH_PARTS[name]().extract(request, self) for name in self.match_on}

    def key(self, request: RequestView) -> str:
        digest = hashlib.sha256()
        for name, value in self.parts(request).items():
            digest.update(f"{name}:{len(value)}:".encode())
            digest.update(value)
        return digest.hexdigest()


def _as_text(parts: Mapping[str, bytes]) -> list[str]:
    lines: list[str] = []
    for name, value in parts.items():
        text = value.decode("utf-8", "replace")
        if name == "body" and text[:1] in "{[":
            with contextlib.suppress(ValueError):
                text = json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False)
        lines.extend(f"{name}: {line}" for line in text.splitlines() or [""])
    return lines


def closest(
    request: RequestView, candidates: Iterable[RequestView], spec: KeySpec
) -> tuple[RequestView, str] | None:
    """The recorded request most like ``request``, with a unified diff of the canonical forms.

    Used only on a miss, so a scan is fine here; the hot path is the key lookup.
    """
    wanted = spec.parts(request)
    wanted_lines = _as_text(wanted)
    best: tuple[float, RequestView, dict[str, bytes]] | None = None
    for candidate in candidates:
        parts = spec.parts(candidate)
        same = sum(parts.get(n) == wanted.get(n) for n in ("method", "path"))
        ratio = difflib.SequenceMatcher(
            None, parts.get("body", b""), wanted.get("body", b""), autojunk=False
        ).quick_ratio()
        score = same + ratio
        if best is None or score > best[0]:
            best = (score, candidate, parts)
    if best is None:
        return None
    diff = difflib.unified_diff(_as_text(best[2]), wanted_lines, lineterm="", n=1)
    return best[1], "\n".join(list(diff)[2:])
