"""Request keys: which parts of a request identify it, and how they are made canonical.

A key is the sha256 hex of the canonical parts named by ``match_on`` (default: method,
path, query, body). Parts are small classes registered by name (respx's ``Pattern`` idea),
so ``match_on=("method", "host", "path", "body")`` is just a tuple of names.

Canonical forms:
- method upper-cased; path as sent; query as sorted ``key=value`` pairs, credentials removed;
- a JSON body parsed and dumped with sorted keys and no whitespace, so re-indented or
  re-ordered JSON gets the same key; fields named in ``ignore`` are left out
  (``"user"``, or a dotted path such as ``"metadata.trace_id"``), then the named
  ``normalise`` normalisers applied (``_normalise``: dated models, ids, uuids...); JSON
  nested deeper than ``MAX_JSON_DEPTH``, and compressed bodies that would expand past
  ``MAX_DECOMPRESSED``, take part as raw bytes (bounded work, same key every time);
- a multipart body with its random boundary replaced by a fixed one; any other body raw;
- headers, when matched on, without per-call and secret headers (``x-stainless-*``,
  ``idempotency-key``, ``authorization``, ``user-agent``, ...).

On a miss, ``closest`` finds the recorded request most like the one that missed, with
bounded work whatever the cassette holds: at most ``_CANDIDATES`` candidates, similarity on
a bounded sample of each raw body, ``_FINALISTS`` made canonical, and a diff of at most
``_DIFF_LINES`` lines, long lines cut.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from . import _normalise
from ._errors import ConfigError
from ._format import NOT_JSON, decompressed, parse_json
from ._scrub import is_credential_header

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


def _split(url: str) -> tuple[str, str, str, str]:
    """``(scheme, host, path, query)``; a URL urllib cannot parse (the loader refuses those
    in files, so only a hand-made view has one) splits by hand instead of raising."""
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname or "", parts.path, parts.query
    except ValueError:
        scheme, _, rest = url.partition("://")
        rest, _, query = rest.partition("?")
        host, slash, path = rest.partition("/")
        return scheme, host, slash + path, query


def url_path(url: str) -> str:
    """The path of ``url`` (``/`` when it has none), without raising on odd URLs."""
    return _split(url)[2] or "/"


class _Scheme(MatchPart):
    name = "scheme"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return _split(request.url)[0].lower().encode()


class _Host(MatchPart):
    name = "host"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return _split(request.url)[1].lower().encode()


class _Path(MatchPart):
    name = "path"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return url_path(request.url).encode()


class _Query(MatchPart):
    name = "query"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        pairs = parse_qsl(_split(request.url)[3], keep_blank_values=True)
        kept = sorted((k, v) for k, v in pairs if k.lower() not in spec.drop_query)
        return "&".join(f"{k}={v}" for k, v in kept).encode()


class _Port(MatchPart):
    """The port, with the scheme's default filled in (vcrpy's ``port``)."""

    name = "port"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        scheme = _split(request.url)[0].lower()
        try:
            port = urlsplit(request.url).port
        except ValueError:
            port = None
        default = {"http": 80, "https": 443}.get(scheme)
        return str(port or default or "").encode()


class _Uri(MatchPart):
    """Scheme, host, port, path and query together (vcrpy's ``uri``)."""

    name = "uri"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        parts = (_Scheme, _Host, _Port, _Path, _Query)
        return b"\n".join(part().extract(request, spec) for part in parts)


class _Body(MatchPart):
    name = "body"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        return canonical_body(request, spec.ignore, spec.normalise)


class _Headers(MatchPart):
    name = "headers"

    def extract(self, request: RequestView, spec: KeySpec) -> bytes:
        kept = sorted(
            (k.lower(), v)
            for k, v in request.headers
            if k.lower() not in _VOLATILE_HEADERS
            and not k.lower().startswith("x-stainless-")
            and not is_credential_header(k)  # never in a key, so never in a miss message
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


def canonical_body(
    request: RequestView, ignore: Iterable[str] = (), normalise: Sequence[str] = ()
) -> bytes:
    """The body as it takes part in the key (see the module docstring); ``normalise``
    names ``_normalise`` normalisers applied to a JSON body after ``ignore``."""
    body = decompressed(request.body, request.header("content-encoding"))
    content_type = request.header("content-type")
    if content_type.startswith("multipart/") and "boundary=" in content_type:
        boundary = content_type.split("boundary=", 1)[1].split(";", 1)[0].strip().strip('"')
        return body.replace(boundary.encode(), b"llmreplay-boundary")
    data = parse_json(body)
    if data is NOT_JSON:  # not JSON, or too deep to handle safely: raw bytes it is
        return body
    for dotted in ignore:
        _drop_path(data, dotted.split("."))
    if normalise:
        data = _normalise.normalise(data, normalise)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How keys are made: the parts matched on, ignored JSON fields, query params dropped."""

    match_on: tuple[str, ...] = DEFAULT_MATCH_ON
    ignore: tuple[str, ...] = ()
    drop_query: frozenset[str] = frozenset()
    normalise: tuple[str, ...] = ()  # named normalisers (_normalise), sorted

    @classmethod
    def build(
        cls,
        match_on: Iterable[str] | None,
        ignore: Iterable[str],
        drop_query: Iterable[str],
        normalise: Iterable[str] = (),
    ) -> KeySpec:
        parts = tuple(DEFAULT_MATCH_ON if match_on is None else match_on)
        for part in parts:
            if part not in MATCH_PARTS:
                expected = "expected names from: " + ", ".join(sorted(MATCH_PARTS))
                raise ConfigError("match_on part", part, "match_on=", expected)
        if not parts:
            raise ConfigError("match_on", parts, "match_on=", "name at least one part")
        return cls(
            parts,
            tuple(sorted(set(ignore))),
            frozenset(q.lower() for q in drop_query),
            _normalise.checked(normalise),
        )

    def describe(self) -> dict[str, list[str]]:
        """What a cassette stores so that a reader knows whether its keys still apply."""
        described = {
            "match_on": list(self.match_on),
            "ignore": list(self.ignore),
            "drop_query": sorted(self.drop_query),
        }
        if self.normalise:  # only when used, so files written before it compare equal
            described["normalise"] = list(self.normalise)
        return described

    def parts(self, request: RequestView) -> dict[str, bytes]:
        return {name: MATCH_PARTS[name]().extract(request, self) for name in self.match_on}

    def key(self, request: RequestView) -> str:
        digest = hashlib.sha256()
        for name, value in self.parts(request).items():
            digest.update(f"{name}:{len(value)}:".encode())
            digest.update(value)
        return digest.hexdigest()


# Bounds on the work a miss may cost, whatever the cassette holds.
_CANDIDATES = 256  # recorded requests ranked (same method and path first)
_FINALISTS = 8  # of which this many are made canonical and compared
_SAMPLE = 1024  # bytes of each body's start and end that similarity is computed on
_DIFF_LINES = 80  # lines of diff shown
_LINE = 200  # characters of one line shown
_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


def _clip(line: str) -> str:
    if len(line) <= _LINE:
        return line
    digest = hashlib.sha256(line.encode("utf-8", "replace")).hexdigest()[:12]
    return f"{line[: _LINE - 40]}… [{len(line):,} chars, sha256 {digest}]"


def _as_text(parts: Mapping[str, bytes]) -> list[str]:
    lines: list[str] = []
    for name, value in parts.items():
        text = value.decode("utf-8", "replace")
        if name == "body":
            data = parse_json(value)
            if data is not NOT_JSON:
                text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False)
        lines.extend(f"{name}: {_clip(line)}" for line in text.splitlines() or [""])
    return lines


def _sample(body: bytes) -> bytes:
    return body if len(body) <= 2 * _SAMPLE else body[:_SAMPLE] + body[-_SAMPLE:]


def diff_lines(before: list[str], after: list[str]) -> str:
    """A unified diff (one line of context) of two line lists, at most ``_DIFF_LINES``
    lines long; the common start and end are skipped first, so long equal bodies cost a
    comparison, not a diff."""
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while (
        end < min(len(before), len(after)) - start
        and before[len(before) - 1 - end] == after[len(after) - 1 - end]
    ):
        end += 1
    keep = max(start - 1, 0)
    old = before[keep : len(before) - max(end - 1, 0)][: 4 * _DIFF_LINES]
    new = after[keep : len(after) - max(end - 1, 0)][: 4 * _DIFF_LINES]

    def renumber(line: str) -> str:
        hunk = _HUNK.match(line)
        if hunk is None:
            return line
        a, b, c, d = hunk.groups()
        return f"@@ -{int(a) + keep}{b or ''} +{int(c) + keep}{d or ''} @@" + line[hunk.end() :]

    out = [renumber(line) for line in difflib.unified_diff(old, new, lineterm="", n=1)][2:]
    if len(out) > _DIFF_LINES:
        out = [*out[:_DIFF_LINES], f"… {len(out) - _DIFF_LINES} more line(s) of difference"]
    return "\n".join(out)


def closest(
    request: RequestView, candidates: Iterable[RequestView], spec: KeySpec
) -> tuple[RequestView, str] | None:
    """The recorded request most like ``request``, with a unified diff of the canonical forms.

    Used only on a miss, and bounded: at most ``_CANDIDATES`` recorded requests (those with
    the same method and path first) are ranked on a sample of their raw bodies; only the
    best ``_FINALISTS`` are made canonical and compared, and one diff is made.
    """
    method, path = request.method.upper(), url_path(request.url)

    def endpoint_score(candidate: RequestView) -> int:
        return (candidate.method.upper() == method) + (url_path(candidate.url) == path)

    pool = list(candidates)
    alike = [c for c in pool if endpoint_score(c) == 2]
    ids = {id(c) for c in alike}
    pool = (alike + [c for c in pool if id(c) not in ids])[:_CANDIDATES]
    similarity = _similarity_to(_sample(request.body))
    ranked = sorted(pool, key=lambda c: -endpoint_score(c) - similarity(_sample(c.body)))
    ranked = ranked[:_FINALISTS]
    wanted = spec.parts(request)
    wanted_body = wanted.get("body", b"")
    similarity = _similarity_to(_sample(wanted_body))
    best: tuple[float, RequestView, dict[str, bytes]] | None = None
    for candidate in ranked:
        parts = spec.parts(candidate)
        body = parts.get("body", b"")
        score = endpoint_score(candidate) + similarity(_sample(body))
        score += body == wanted_body
        if best is None or score > best[0]:
            best = (score, candidate, parts)
    if best is None:
        return None
    return best[1], diff_lines(_as_text(best[2]), _as_text(wanted))


def _similarity_to(wanted: bytes) -> Callable[[bytes], float]:
    """How alike a sample is to ``wanted`` (difflib's quick ratio; ``wanted`` counted once)."""
    matcher = difflib.SequenceMatcher(None, b"", wanted, autojunk=False)

    def similarity(sample: bytes) -> float:
        matcher.set_seq1(sample)
        return matcher.quick_ratio()

    return similarity
