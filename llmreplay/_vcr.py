"""Reading vcrpy cassettes (YAML or JSON) into llmreplay interactions, with vcrpy's own loader.

vcrpy stores whole bodies, so a stream's chunk boundaries are rebuilt from its SSE events
(each event one chunk; the chunks join to the recorded bytes exactly). A stream is known by
its ``content-type``, by ``"stream": true`` in the request, or by a body that starts like
SSE, since some recorders strip every header. Keys are made the llmreplay way, from the
canonical request, and credentials are scrubbed on the way in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import CassetteError
from ._format import Headers, Interaction, RecordedRequest, RecordedResponse
from ._match import KeySpec, RequestView
from ._scrub import Scrubber

_SSE_START = re.compile(rb"^(event|data|id|retry):", re.MULTILINE)
_SSE_EVENT = re.compile(rb".*?(?:\r?\n\r?\n|\Z)", re.DOTALL)


def _pairs(headers: Mapping[str, Any]) -> Headers:
    out: Headers = []
    for name, values in headers.items():
        for value in values if isinstance(values, list | tuple) else [values]:
            out.append((str(name), str(value)))
    return out


def _header(headers: Headers, name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def _is_stream(request_body: bytes, response_headers: Headers, body: bytes) -> bool:
    if _header(response_headers, "content-type").startswith("text/event-stream"):
        return True
    if body[:2] == b"\x1f\x8b" or not body:
        return False
    if request_body.lstrip()[:1] == b"{":
        try:
            if json.loads(request_body).get("stream") is True:
                return _SSE_START.match(body) is not None
        except (ValueError, AttributeError):
            pass
    return _SSE_START.match(body) is not None


def split_events(body: bytes) -> list[bytes]:
    """SSE bytes as one chunk per event; the chunks join back to ``body`` exactly."""
    if body[:2] == b"\x1f\x8b":  # still compressed: events cannot be seen
        return [body]
    return [m.group(0) for m in _SSE_EVENT.finditer(body) if m.group(0)]


def load_vcr(path: str | Path, spec: KeySpec | None = None) -> list[Interaction]:
    """The interactions of the vcrpy cassette at ``path``, keyed and scrubbed."""
    try:
        from vcr.serialize import deserialize
        from vcr.serializers import jsonserializer, yamlserializer
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading vcrpy cassettes needs vcrpy: pip install 'llmreplay[vcr]'"
        ) from None
    path = Path(path)
    serializer = jsonserializer if path.suffix.lower() == ".json" else yamlserializer
    try:
        loaded = deserialize(path.read_text(encoding="utf-8"), serializer)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CassetteError(path, f"not a readable vcrpy cassette ({exc})") from None
    requests, responses = loaded[0], loaded[1]
    scrubber = Scrubber()
    spec = spec or KeySpec.build(None, (), scrubber.query)
    items: list[Interaction] = []
    for vcr_request, response in zip(requests, responses, strict=True):
        body = vcr_request.body or b""
        body = body.encode() if isinstance(body, str) else bytes(body)
        request = RecordedRequest(
            vcr_request.method.upper(), vcr_request.uri, _pairs(vcr_request.headers), body
        )
        content = response.get("body", {}).get("string", b"")
        content = content.encode() if isinstance(content, str) else bytes(content or b"")
        headers = _pairs(response.get("headers") or {})
        stream = _is_stream(body, headers, content)
        item = Interaction(
            key=spec.key(RequestView(request.method, request.url, request.headers, body)),
            request=request,
            response=RecordedResponse(
                status=int(response["status"]["code"]),
                headers=headers,
                body=None if stream else content,
                chunks=split_events(content) if stream else None,
            ),
            recorded_at="",
        )
        secrets = scrubber.secrets(request.headers, request.url)
        scrubbed = scrubber.scrub(item, secrets)
        assert scrubbed is not None
        items.append(scrubbed)
    return items
