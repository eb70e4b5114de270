"""Secrets never reach disk.

Before an interaction is stored:
1. credential headers (``authorization``, ``api-key``, ``x-api-key``, cookies, organisation
   and project headers, plus ``filter_headers``) are dropped from request and response;
2. credential query parameters (``api-key``, plus ``filter_query``) are dropped from the URL;
3. every credential value the transport saw in those places is replaced by ``<redacted>``
   wherever else it appears: URL, other headers, request body, response body and chunks;
4. ``before_record(interaction)`` runs last and may edit the interaction or return ``None``
   to keep it out of the cassette.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._format import Headers, Interaction

DEFAULT_FILTER_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        "cookie",
        "set-cookie",
        "openai-organization",
        "openai-project",
        "anthropic-organization-id",
    }
)
DEFAULT_FILTER_QUERY = frozenset({"api-key", "api_key", "apikey", "key", "access_token"})
REDACTED = "<redacted>"
# Shorter values are not treated as credentials: redacting "1" everywhere would wreck bodies.
_MIN_SECRET_LEN = 8

BeforeRecord = Callable[[Interaction], Interaction | None]


class Scrubber:
    """Applies the rules above; one per cassette."""

    def __init__(
        self,
        filter_headers: Iterable[str] = (),
        filter_query: Iterable[str] = (),
        before_record: BeforeRecord | None = None,
    ) -> None:
        self.headers = DEFAULT_FILTER_HEADERS | {h.lower() for h in filter_headers}
        self.query = DEFAULT_FILTER_QUERY | {q.lower() for q in filter_query}
        self.before_record = before_record

    def secrets(self, headers: Sequence[tuple[str, str]], url: str) -> list[str]:
        """The credential values in a request as sent, longest first."""
        found: set[str] = set()
        for name, value in headers:
            if name.lower() in self.headers and name.lower() not in ("cookie", "set-cookie"):
                found.add(value)
                scheme, _, token = value.partition(" ")
                if token and scheme.lower() in ("bearer", "basic", "token"):
                    found.add(token.strip())
        for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
            if name.lower() in self.query:
                found.add(value)
        return sorted((s for s in found if len(s) >= _MIN_SECRET_LEN), key=len, reverse=True)

    def _url(self, url: str) -> str:
        parts = urlsplit(url)
        if not parts.query:
            return url
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k.lower() not in self.query]
        if len(kept) == len(pairs):
            return url
        return urlunsplit(parts._replace(query=urlencode(kept)))

    def _headers(self, headers: Headers, secrets: list[str]) -> Headers:
        return [
            (name, _redact_text(value, secrets))
            for name, value in headers
            if name.lower() not in self.headers
        ]

    def scrub(self, item: Interaction, secrets: list[str]) -> Interaction | None:
        """Remove credentials from ``item`` in place; then ``before_record`` decides."""
        request, response = item.request, item.response
        request.url = _redact_text(self._url(request.url), secrets)
        request.headers = self._headers(request.headers, secrets)
        request.body = _redact_bytes(request.body, secrets)
        response.headers = self._headers(response.headers, secrets)
        if response.chunks is not None:
            response.chunks = [_redact_bytes(chunk, secrets) for chunk in response.chunks]
        elif response.body is not None:
            body = _redact_bytes(response.body, secrets)
            if body != response.body:
                response.headers = [
                    (k, str(len(body)) if k.lower() == "content-length" else v)
                    for k, v in response.headers
                ]
            response.body = body
        return self.before_record(item) if self.before_record else item


def _redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_bytes(data: bytes, secrets: list[str]) -> bytes:
    for secret in secrets:
        raw = secret.encode()
        if raw in data:
            data = data.replace(raw, REDACTED.encode())
    return data
