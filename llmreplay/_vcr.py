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
from collections.abc import Callable, Mapping
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


Deserializer = Callable[[str], Any]

_HOW_TO_HOOK = (
    "If a custom vcrpy serializer wrote it, pass that serializer's reader: "
    "llmreplay import-vcr --deserializer module:function (the function takes the file's text "
    "and returns vcrpy's cassette dict {'interactions': [...]}, as a vcrpy serializer's "
    "deserialize does)."
)


def _unknown(path: Path, what: str) -> CassetteError:
    return CassetteError(
        path, f"unknown format: {what}, not vcrpy's cassette layout", hint=_HOW_TO_HOOK
    )


def _layout(path: Path, data: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """vcrpy's requests and responses from a deserialized cassette, or a ``CassetteError``
    saying which part of vcrpy's layout is missing (the format is unknown, not broken)."""
    from vcr.request import Request
    from vcr.serializers import compat

    if (  # vcr.serialize.deserialize()'s (requests, responses[, metadata])
        isinstance(data, tuple | list)
        and len(data) in (2, 3)
        and all(isinstance(part, list) for part in data[:2])
        and all(isinstance(r, Request) for r in data[0])
    ):
        return list(data[0]), [compat.convert_to_bytes(r) for r in data[1]]
    if isinstance(data, list):
        data = {"interactions": data}
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        raise _unknown(path, "it has no 'interactions' list")
    requests, responses = [], []
    for number, entry in enumerate(data["interactions"]):
        request = entry.get("request") if isinstance(entry, dict) else None
        response = entry.get("response") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise _unknown(path, f"interaction {number} has no 'request' and 'response'")
        missing = [k for k in ("method", "uri", "body", "headers") if k not in request]
        missing += [f"response {k}" for k in ("status", "body") if k not in response]
        if missing:
            raise _unknown(path, f"interaction {number} has no {', '.join(map(repr, missing))}")
        try:
            requests.append(Request._from_dict(dict(request)))
            int(response["status"]["code"])
            if not isinstance(response["body"], dict):
                raise TypeError("the response body is not a mapping with a 'string'")
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise _unknown(path, f"interaction {number} does not read as vcrpy's ({exc})") from None
        responses.append(compat.convert_to_bytes(dict(response)))
    return requests, responses


def _parse(path: Path, deserializer: Deserializer | None) -> Any:
    from vcr.serializers import jsonserializer, yamlserializer

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _unknown(path, "it is not UTF-8 text") from None
    if deserializer is not None:
        try:
            return deserializer(text)
        except Exception as exc:  # the project's own code: any failure is this file's finding
            raise CassetteError(
                path,
                f"the --deserializer failed on it ({type(exc).__name__}: {str(exc)[:200]})",
                hint="Check that the deserializer reads this file, or leave the file out.",
            ) from None
    serializer = jsonserializer if path.suffix.lower() == ".json" else yamlserializer
    try:
        return serializer.deserialize(text)
    except ValueError as exc:  # json.JSONDecodeError, and vcrpy's refusals
        raise _unknown(path, f"it is not JSON ({str(exc)[:200]})") from None
    except Exception as exc:  # yaml.YAMLError and its subclasses (yaml is an optional import)
        if type(exc).__module__.startswith("yaml"):
            raise _unknown(path, f"it is not YAML that vcrpy reads ({str(exc)[:200]})") from None
        raise


def load_vcr(
    path: str | Path, spec: KeySpec | None = None, *, deserializer: Deserializer | None = None
) -> list[Interaction]:
    """The interactions of the vcrpy cassette at ``path``, keyed and scrubbed.

    ``deserializer`` reads a file a custom vcrpy serializer wrote: it takes the file's text
    and returns vcrpy's cassette dict (``{"interactions": [...]}``), the list of
    interactions, or ``vcr.serialize.deserialize``'s ``(requests, responses)``. A file that
    parses but is not in vcrpy's layout is a ``CassetteError`` saying the format is unknown.
    """
    try:
        import vcr  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading vcrpy cassettes needs vcrpy: pip install 'pytest-llmreplay[vcr]'"
        ) from None
    path = Path(path)
    requests, responses = _layout(path, _parse(path, deserializer))
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
        secrets = scrubber.secrets(request.headers, request.url, request.body)
        scrubbed = scrubber.scrub(item, secrets)
        assert scrubbed is not None
        items.append(scrubbed)
    return items
