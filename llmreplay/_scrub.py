"""Secrets never reach disk, nor a message.

Before an interaction is stored:
1. credential headers are dropped from the request: the known ones (``authorization``,
   ``api-key``, ``x-api-key``, cookies, organisation/project headers, gateway headers such
   as ``helicone-auth``, ``x-portkey-api-key``, ``cf-aig-authorization``, ...), any header
   whose name contains ``auth``, ``api-key``, ``apikey``, ``token``, ``secret``,
   ``password`` or ``credential``, plus ``filter_headers``; from the response the known
   ones (``set-cookie`` among them) and ``filter_headers``;
2. credential query parameters (``api-key``, ``key``, ``token``, ``sig``, ..., plus
   ``filter_query``) and URL userinfo (``user:password@``) are dropped from the URL;
3. every credential value seen in those places — each cookie value of ``Cookie`` and
   ``Set-Cookie``, the password of ``Basic`` and of the URL userinfo, and anything shaped
   like a known provider key (``sk-…``, ``AIza…``, ``gsk_…``, ``AKIA…``, ...) in a URL or
   header — is replaced by ``<redacted>`` wherever else it appears: URL, other headers,
   request body, response body and stream chunks. Redaction sees the decoded content
   (gzip, deflate, and br when ``brotli`` is installed) and re-encodes it with the same
   ``content-encoding`` only when something was redacted; a stream is redacted as a whole,
   so a secret split across chunks goes too, and the chunk boundaries are kept (moved to
   the start of a redaction that straddles them). Values under 8 characters are never
   treated as secrets. Key-shaped strings in the request and response bodies (as written,
   URL-encoded or behind JSON ``\\u`` escapes; not inside a base64 blob) are secrets too,
   with no header naming them. Each secret is looked for in its encoded forms as well
   (``_variants``: base64/base64url at every alignment, hex, ``\\u`` escapes, URL forms)
   and inside compression nested in a body, up to ``_MAX_LAYERS`` deep;
4. ``before_record(interaction)`` runs last and may edit the interaction or return ``None``
   to keep it out of the cassette.

``filter_headers``, ``filter_query`` and ``filter_post_data`` take names, or
``(name, replacement)`` pairs (vcrpy's form: the value is replaced, ``None`` drops it); a
header name ending in ``*`` is a prefix (``"x-stainless-*"``, ``"cf-*"``). A filtered value
is a secret too, so its echoes elsewhere are redacted. By default the request's
``user-agent`` and ``x-stainless-*`` headers (per-call noise that also names the machine)
are not stored; response headers are kept as received.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import importlib
import json
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

from ._format import MAX_DECOMPRESSED, Headers, Interaction, expand

DEFAULT_FILTER_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
        "openai-organization",
        "openai-project",
        "anthropic-organization-id",
        # Google, Azure (API Management), AWS
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        "x-amz-security-token",
        # gateways and proxies
        "helicone-auth",
        "helicone-openai-api-key",
        "x-portkey-api-key",
        "x-portkey-virtual-key",
        "cf-aig-authorization",
        "x-litellm-api-key",
        "x-openrouter-api-key",
        "x-bt-api-key",
        "x-requesty-api-key",
        "x-kong-api-key",
    }
)
# A request header whose name holds one of these is a credential header too.
CREDENTIAL_NAME_PARTS = (
    "auth",
    "api-key",
    "api_key",
    "apikey",
    "token",
    "secret",
    "password",
    "credential",
)
DEFAULT_FILTER_QUERY = frozenset(
    {
        "api-key",
        "api_key",
        "apikey",
        "key",
        "access_token",
        "access-token",
        "token",
        "auth",
        "auth_token",
        "secret",
        "client_secret",
        "password",
        "sig",
        "signature",
        "subscription-key",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-credential",
        "x-goog-signature",
        "x-goog-credential",
    }
)
REDACTED = "<redacted>"
# Shorter values are not treated as credentials: redacting "1" everywhere would wreck bodies.
_MIN_SECRET_LEN = 8
# Parts of a credential header's value this long are secrets on their own.
_MIN_PART_LEN = 16

# What provider and gateway keys look like; found in URLs and header values.
KEY_ALTERNATIVES = (
    r"(?:"
    # OpenAI sk-/sk-proj-, Anthropic sk-ant-, OpenRouter sk-or-: random, so with a digit
    # ("sk-learn-compatible-estimator-interface" in prose is no key)
    r"sk-(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{20,}"
    r"|AIza[0-9A-Za-z_-]{30,}"  # Google
    r"|gsk_[A-Za-z0-9]{20,}"  # Groq
    r"|xai-[A-Za-z0-9]{20,}"  # xAI
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|r8_[A-Za-z0-9]{20,}"  # Replicate
    r"|pplx-[A-Za-z0-9]{20,}"  # Perplexity
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key id: 20 characters
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|(?:sk|rk)_live_[A-Za-z0-9]{20,}"  # Stripe
    r"|xox[abprs]-[A-Za-z0-9-]{20,}"  # Slack
    r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # a JWT
    r")"
)
# Not inside a longer word, but right after a JSON escape (``\nsk-...``) is a start too.
KEY_SHAPES = re.compile(r"(?:(?<![A-Za-z0-9])|(?<=\\[nrtbf]))" + KEY_ALTERNATIVES)
# In a body, a key starts where a token starts: not inside a base64/base64url blob (an
# ``encrypted_content`` field can hold "sk-" and twenty letters by chance; redacting that
# would corrupt the recording).
# Also a key right after a JSON escape (``"...:\nsk-..."``: the ``n`` of ``\n`` is not the
# key's). Not after "/" or "-": inside a blob they are base64 characters.
KEY_START = r"(?:(?<![A-Za-z0-9+/_-])|(?<=\\[nrtbf]))"
BODY_KEY_SHAPES = re.compile(KEY_START + KEY_ALTERNATIVES)
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_AUTH_SCHEMES = ("bearer", "basic", "token", "apikey", "api-key", "key", "dsn")
_ENCODINGS = ("gzip", "x-gzip", "deflate", "br")

BeforeRecord = Callable[[Interaction], Interaction | None]
_S = TypeVar("_S", str, bytes)


@functools.lru_cache(maxsize=4096)  # a pure function of a header name, asked per header
def is_credential_header(name: str) -> bool:
    """Whether a request header named ``name`` carries a credential (default rules only)."""
    name = name.lower()
    return name in DEFAULT_FILTER_HEADERS or any(part in name for part in CREDENTIAL_NAME_PARTS)


def _cookie_values(header: str) -> list[str]:
    """The values of ``a=1; b=2`` (a ``Cookie`` header, or a ``Set-Cookie``'s first pair)."""
    values = []
    for pair in header.split(";"):
        _, eq, value = pair.partition("=")
        if eq:
            values.append(value.strip().strip('"'))
    return values


@functools.lru_cache(maxsize=1024)  # the same few credentials, request after request
def _variants(secret: str) -> frozenset[str]:
    """The forms a secret takes in a URL, a form, a JSON string (``\\/``, ``\\u`` escapes),
    hex, and base64 or base64url at any alignment (the part of the encoding that depends
    on the secret alone, so it is found inside a longer encoded value too)."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "\\/")}
    forms |= {raw.hex(), raw.hex().upper()}
    for hexdigits in ("04x", "04X"):
        forms.add("".join(c if c.isalnum() else f"\\u{ord(c):{hexdigits}}" for c in secret))
        forms.add("".join(f"\\u{ord(c):{hexdigits}}" for c in secret))
    for offset in range(3):
        start = -(-8 * offset // 6)  # the first character made of the secret's bits only
        end = 8 * (offset + len(raw)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * offset + raw)[start:end].decode()
            if len(core) >= _MIN_SECRET_LEN:
                forms.add(core)
    return frozenset(forms)


def key_shapes(data: bytes) -> set[str]:
    """Provider keys in a body, as written or behind URL-encoding or JSON ``\\u`` escapes."""
    if not data:
        return set()
    text = data.decode("latin-1")
    found = set(BODY_KEY_SHAPES.findall(text))
    if "%" in text or "+" in text:
        found.update(BODY_KEY_SHAPES.findall(unquote(text)))
    if "\\u" in text:
        found.update(BODY_KEY_SHAPES.findall(unescape(text)))
    return found


def unescape(text: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


# A filter entry: a name, or vcrpy's (name, replacement) pair (None: drop the value).
FilterEntry = str | tuple[str, str | None]
NOISE_REQUEST_HEADERS = ("user-agent", "x-stainless-*")


def _filters(entries: Iterable[FilterEntry]) -> tuple[set[str], tuple[str, ...], dict[str, str]]:
    """Exact names, name prefixes (``"x-*"``) and replacement values, all lower-cased."""
    exact: set[str] = set()
    prefixes: list[str] = []
    replace: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry, tuple | list):
            name, value = entry
            if value is not None:
                replace[str(name).lower()] = str(value)
                continue
            entry = str(name)
        name = entry.lower()
        if name.endswith("*"):
            prefixes.append(name[:-1])
        else:
            exact.add(name)
    return exact, tuple(prefixes), replace


class Scrubber:
    """Applies the rules above; one per cassette."""

    def __init__(
        self,
        filter_headers: Iterable[FilterEntry] = (),
        filter_query: Iterable[FilterEntry] = (),
        before_record: BeforeRecord | None = None,
        filter_post_data: Iterable[FilterEntry] = (),
    ) -> None:
        exact, self._prefixes, self._header_values = _filters(filter_headers)
        self.headers = DEFAULT_FILTER_HEADERS | exact
        noise, self._noise_prefixes, _ = _filters(NOISE_REQUEST_HEADERS)
        self._noise = frozenset(noise)
        query, _, self._query_values = _filters(filter_query)
        self.query = DEFAULT_FILTER_QUERY | query
        post, _, self._post_values = _filters(filter_post_data)
        self.post_data = frozenset(post)
        self.before_record = before_record
        self._credential_names: dict[str, bool] = {}  # header name -> is_credential

    def _filtered(self, name: str) -> bool:
        lowered = name.lower()
        return lowered in self.headers or lowered.startswith(self._prefixes)

    def is_credential(self, name: str) -> bool:
        """Whether the request header ``name`` is dropped (defaults and ``filter_headers``)."""
        known = self._credential_names.get(name)
        if known is None:
            known = self._credential_names[name] = self._filtered(name) or is_credential_header(
                name
            )
        return known

    def _dropped_from_request(self, name: str) -> bool:
        lowered = name.lower()
        return (
            self.is_credential(name)
            or lowered in self._noise
            or lowered.startswith(self._noise_prefixes)
        )

    def body_params(self, body: bytes, headers: Sequence[tuple[str, str]]) -> dict[str, str]:
        """The values of filtered post-data parameters in a JSON or form body."""
        names = self.post_data | set(self._post_values)
        if not names or not body:
            return {}
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        found: dict[str, str] = {}
        if "x-www-form-urlencoded" in content_type:
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            found = {k: v for k, v in pairs if k.lower() in names}
        elif body.lstrip()[:1] == b"{":
            try:
                data = json.loads(body)
            except ValueError:
                return {}
            if isinstance(data, dict):
                found = {k: str(v) for k, v in data.items() if k.lower() in names}
        return found

    def secrets(self, headers: Sequence[tuple[str, str]], url: str, body: bytes = b"") -> list[str]:
        """The credential values in a request as sent, longest first."""
        found: set[str] = set(self.body_params(body, headers).values())
        for name, value in headers:
            if name.lower() in self._header_values:
                found.add(value)
            if name.lower() == "cookie":
                found.add(value)
                found.update(_cookie_values(value))
            elif self.is_credential(name):
                found.update(_credential_values(value))
            found.update(KEY_SHAPES.findall(value))
        parts = urlsplit(url)
        for userinfo in (parts.username, parts.password):
            if userinfo:
                found.update((userinfo, unquote(userinfo)))
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name.lower() in self.query or name.lower() in self._query_values:
                found.add(value)
        found.update(KEY_SHAPES.findall(url))
        found.update(KEY_SHAPES.findall(unquote(url)))
        # A key in the body with no header naming it (a gateway's {"api_key": ...}, a form).
        plain = decode_all(body, _header(list(headers), "content-encoding"))
        found.update(key_shapes(innermost(plain if plain is not None else body)))
        return _ordered(found)

    def _response_secrets(self, headers: Headers) -> set[str]:
        found: set[str] = set()
        for name, value in headers:
            lowered = name.lower()
            if lowered == "set-cookie":
                found.update(_cookie_values(value.split(";", 1)[0]))
            elif lowered in self.headers:
                found.update(_credential_values(value))
            else:  # a key the API just created, in a header of its own (x-created-key)
                found.update(KEY_SHAPES.findall(value))
        return found

    def _url(self, url: str) -> str:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
            url = urlunsplit(parts)
        if not parts.query:
            return url
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        kept = [
            (k, self._query_values.get(k.lower(), v))
            for k, v in pairs
            if k.lower() not in self.query
        ]
        if kept == pairs:
            return url
        return urlunsplit(parts._replace(query=urlencode(kept)))

    def _headers(self, headers: Headers, secrets: list[str], *, request: bool) -> Headers:
        dropped = self._dropped_from_request if request else self._filtered
        replaced = self._header_values
        return [
            (name, replaced[name.lower()] if name.lower() in replaced else redact(value, secrets))
            for name, value in headers
            if name.lower() in replaced or not dropped(name)
        ]

    def _post_data(self, body: bytes, headers: Headers) -> bytes:
        """The body with filtered post-data parameters replaced or removed."""
        found = self.body_params(body, headers)
        if not found:
            return body
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        if "x-www-form-urlencoded" in content_type:
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            kept = [
                (k, self._post_values.get(k.lower(), v))
                for k, v in pairs
                if k.lower() not in self.post_data
            ]
            return urlencode(kept).encode()
        data = json.loads(body)
        for key in list(data):
            if key.lower() in self.post_data:
                del data[key]
            elif key.lower() in self._post_values:
                data[key] = self._post_values[key.lower()]
        return json.dumps(data).encode()

    def scrub(self, item: Interaction, secrets: list[str]) -> Interaction | None:
        """Remove credentials from ``item`` in place; then ``before_record`` decides."""
        request, response = item.request, item.response
        found = self._response_secrets(response.headers) | _body_shapes(response)
        secrets = _ordered(set(secrets) | found)
        request.url = redact(self._url(request.url), secrets)
        request.headers = self._headers(request.headers, secrets, request=True)
        response.headers = self._headers(response.headers, secrets, request=False)
        request.body = self._post_data(request.body, request.headers)
        request.body = _redact_body(request.body, request.headers, secrets)
        request.headers = _with_length(request.headers, request.body)
        if response.chunks is not None:
            response.chunks = _redact_chunks(response.chunks, response.headers, secrets)
        elif response.body is not None:
            response.body = _redact_body(response.body, response.headers, secrets)
            response.headers = _with_length(response.headers, response.body)
        return self.before_record(item) if self.before_record else item


def _body_shapes(response: Any) -> set[str]:
    """Provider keys in a response body (an echo, a key the API just created), decoded."""
    body = response.content
    plain = decode_all(body, _header(response.headers, "content-encoding"))
    return key_shapes(innermost(plain if plain is not None else body))


def _credential_values(value: str) -> set[str]:
    """A credential header's value, its token after the scheme, a Basic password, its long
    parts and any key-shaped part (an AWS ``Credential=AKIA…`` say)."""
    found = {value}
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if token and scheme.lower() in _AUTH_SCHEMES:
        found.add(token)
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                pass
            else:
                found.update((user, password, f"{user}:{password}"))
    # Long parts of a structured value (AWS: "Credential=AKIA…/…, Signature=<hex>").
    for part in re.split(r"[\s,;]+", value):
        piece = part.partition("=")[2] or part
        if len(piece) >= _MIN_PART_LEN:
            found.add(piece)
    found.update(KEY_SHAPES.findall(value))
    return found


def _ordered(found: Iterable[str]) -> list[str]:
    every = {v for s in found if len(s) >= _MIN_SECRET_LEN for v in _variants(s)}
    return sorted(every, key=len, reverse=True)


def _spans(data: _S, needles: Sequence[_S]) -> list[tuple[int, int]]:
    """Where any needle occurs in ``data``, overlapping occurrences merged, in order."""
    found: list[tuple[int, int]] = []
    for needle in needles:
        start = data.find(needle)
        while start != -1:
            found.append((start, start + len(needle)))
            start = data.find(needle, start + 1)
    if len(found) < 2:
        return found
    found.sort()
    merged = [found[0]]
    for start, end in found[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _replace(data: _S, spans: list[tuple[int, int]], mark: _S) -> _S:
    pieces: list[_S] = []
    last = 0
    for start, end in spans:
        pieces += [data[last:start], mark]
        last = end
    pieces.append(data[last:])
    return data[:0].join(pieces)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret (and any overlap of secrets) replaced by ``<redacted>``."""
    spans = _spans(text, secrets)
    return _replace(text, spans, REDACTED) if spans else text


def redact_message(text: str, secrets: Sequence[str]) -> str:
    """``redact``, and anything shaped like a provider key too: for text meant for people
    (a miss message shows request bodies, where a key pasted into a prompt would be)."""
    return KEY_SHAPES.sub(REDACTED, redact(text, secrets))


def _redact_bytes(data: bytes, secrets: Sequence[str]) -> bytes:
    spans = _spans(data, [s.encode() for s in secrets])
    return _replace(data, spans, REDACTED.encode()) if spans else data


# -- content-encoding -------------------------------------------------------------------


def _header(headers: Headers, name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def _brotli() -> Any:
    for module in ("brotli", "brotlicffi"):
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    return None


def _decode(body: bytes, encoding: str) -> bytes | None:
    """``body`` decoded, or ``None`` when it cannot be (unknown coding, corrupt, too big).
    A stream the caller stopped reading early is decoded as far as it goes."""
    if encoding == "br":
        return _unbrotli(body)
    plain, too_big = expand(body, "gzip" if encoding == "x-gzip" else encoding)
    if too_big:  # past the cap: treated as opaque bytes
        return None
    if plain is not body:
        return plain
    # Truncated (a stream the caller cut short): what a streaming decoder gets from it.
    decoder = zlib.decompressobj(47 if encoding != "deflate" else 15)
    try:
        partial = decoder.decompress(body, MAX_DECOMPRESSED)
    except zlib.error:
        return None
    return None if decoder.unconsumed_tail or not partial else partial


def _unbrotli(body: bytes) -> bytes | None:
    brotli = _brotli()
    if brotli is None:
        return None
    decoder = brotli.Decompressor()
    try:
        if hasattr(decoder, "can_accept_more_data"):  # brotli >= 1.2 can stop at the cap
            plain = bytes(decoder.process(body, output_buffer_limit=MAX_DECOMPRESSED))
        else:  # pragma: no cover - older brotli, brotlicffi
            plain = bytes(decoder.process(body))
    except Exception:  # brotli.error, or brotlicffi's own
        return None
    # Past the cap, or nothing decodable (a cut br stream): treated as opaque bytes.
    return plain if 0 < len(plain) < MAX_DECOMPRESSED else None


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "br":
        return bytes(_brotli().compress(data))
    if encoding == "deflate":
        return zlib.compress(data)
    return gzip.compress(data, mtime=0)


def _codings(header: str) -> list[str] | None:
    """The codings of a ``content-encoding`` value in the order applied (``br, gzip``: br
    first), or None when there are none or one is not known."""
    parts = [p.strip().lower() for p in header.split(",")]
    parts = [p for p in parts if p and p != "identity"]
    return parts if parts and all(p in _ENCODINGS for p in parts) else None


def decode_all(body: bytes, header: str) -> bytes | None:
    """``body`` without every coding its ``content-encoding`` names, or None when it
    cannot be (unknown coding, corrupt, past the cap)."""
    codings = _codings(header)
    if not codings or not body:
        return None
    plain: bytes | None = body
    for coding in reversed(codings):
        plain = _decode(plain, coding) if plain else None
        if plain is None:
            return None
    return plain


def _encode_all(data: bytes, header: str) -> bytes:
    for coding in _codings(header) or ():
        data = _encode(data, coding)
    return data


# Compression inside compression (a gzip file in a gzip response) is opened this deep.
_MAX_LAYERS = 3


def _inner_coding(data: bytes) -> str:
    """The compression ``data`` itself starts with, by its magic bytes: gzip or zlib."""
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if len(data) > 2 and data[0] == 0x78 and (data[0] << 8 | data[1]) % 31 == 0:
        return "deflate"
    return ""


def innermost(data: bytes) -> bytes:
    """``data`` with every layer of gzip/zlib under it opened (for searching only)."""
    for _ in range(_MAX_LAYERS):
        coding = _inner_coding(data)
        inner = _decode(data, coding) if coding else None
        if inner is None:
            break
        data = inner
    return data


def _redact_layers(data: bytes, secrets: Sequence[str], depth: int = 0) -> bytes:
    """``_redact_bytes``, opening compressed layers inside; ``data`` itself (the same
    object) when nothing had to go, so the wire bytes are kept."""
    coding = _inner_coding(data) if depth < _MAX_LAYERS else ""
    inner = _decode(data, coding) if coding else None
    if inner is not None:
        redacted = _redact_layers(inner, secrets, depth + 1)
        return data if redacted is inner else _encode(redacted, coding)
    return _redact_bytes(data, secrets)


def _redact_body(body: bytes, headers: Headers, secrets: Sequence[str]) -> bytes:
    if not secrets:  # nothing to look for: no decoding either
        return body
    encoding = _header(headers, "content-encoding")
    plain = decode_all(body, encoding)
    if plain is not None:
        redacted = _redact_layers(plain, secrets)
        # Raw wire bytes are kept unless something had to go.
        return body if redacted is plain else _encode_all(redacted, encoding)
    return _redact_layers(body, secrets)


def _with_length(headers: Headers, body: bytes) -> Headers:
    if not any(k.lower() == "content-length" for k, _ in headers):
        return headers
    return [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in headers]


def _redact_chunks(chunks: list[bytes], headers: Headers, secrets: Sequence[str]) -> list[bytes]:
    """Redact a stream as a whole, then cut it where it was cut (see the module docstring)."""
    if not secrets:
        return chunks
    joined = b"".join(chunks)
    encoding = _header(headers, "content-encoding")
    plain = decode_all(joined, encoding)
    if plain is not None:
        redacted = _redact_layers(plain, secrets)
        if redacted is plain:
            return chunks
        # Compressed boundaries mean nothing once re-encoded: same count, same shares.
        return _cut_like(_encode_all(redacted, encoding), chunks)
    needles = [s.encode() for s in secrets]
    spans = _spans(joined, needles)
    if not spans:
        return chunks
    mark = REDACTED.encode()
    out, start, position, shift, index = [], 0, 0, 0, 0
    new = _replace(joined, spans, mark)
    for chunk in chunks[:-1]:
        position += len(chunk)
        # Spans that end at or before this boundary shift it by their change in length.
        while index < len(spans) and spans[index][1] <= position:
            shift += len(mark) - (spans[index][1] - spans[index][0])
            index += 1
        cut = position + shift
        if index < len(spans) and spans[index][0] < position:  # a redaction straddles it
            cut = spans[index][0] + shift
        out.append(new[start:cut])
        start = cut
    out.append(new[start:])
    return out


def _cut_like(data: bytes, chunks: list[bytes]) -> list[bytes]:
    total = sum(len(c) for c in chunks) or 1
    out, start, seen = [], 0, 0
    for chunk in chunks[:-1]:
        seen += len(chunk)
        cut = max(start, min(len(data), round(len(data) * seen / total)))
        out.append(data[start:cut])
        start = cut
    out.append(data[start:])
    return out
