"""Store vcrpy (and pytest-recording) cassettes as llmreplay msgpack.

vcrpy keeps its own record/replay and matching; llmreplay supplies the file format: binary
bodies stay bytes, requests get llmreplay keys (so ``llmreplay`` CLI commands and cassettes
work on the files), writes are atomic, and credentials are scrubbed on the way in.

>>> import vcr, llmreplay.vcr
>>> my_vcr = llmreplay.vcr.register(vcr.VCR())
>>> with my_vcr.use_cassette("fixtures/cassettes/greet.msgpack", serializer="llmreplay"):
...     ...

pytest-recording: return ``{"serializer": "llmreplay"}`` from ``vcr_config`` and call
``llmreplay.vcr.register(vcr)`` in a ``pytest_recording_configure(config, vcr)`` hook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2

from ._format import Interaction, RecordedRequest, RecordedResponse, decode, encode
from ._match import KeySpec, RequestView
from ._scrub import Scrubber
from ._storage import FileStorage

NAME = "llmreplay"


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _pairs(headers: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(name), str(value))
        for name, values in (headers or {}).items()
        for value in (values if isinstance(values, list | tuple) else [values])
    ]


def _grouped(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name, []).append(value)
    return out


class MsgpackSerializer:
    """A vcrpy serializer: vcrpy's cassette dict to llmreplay cassette bytes and back."""

    def __init__(self) -> None:
        self._scrubber = Scrubber()
        self._spec = KeySpec.build(None, (), self._scrubber.query)

    def serialize(self, cassette_dict: dict[str, Any]) -> bytes:
        items = []
        for entry in cassette_dict.get("interactions", []):
            req, resp = entry["request"], entry["response"]
            request = RecordedRequest(
                str(req["method"]).upper(),
                str(req["uri"]),
                _pairs(req.get("headers", {})),
                _bytes(req.get("body")),
            )
            view = RequestView(request.method, request.url, request.headers, request.body)
            item = Interaction(
                key=self._spec.key(view),
                request=request,
                response=RecordedResponse(
                    int(resp["status"]["code"]),
                    _pairs(resp.get("headers", {})),
                    body=_bytes((resp.get("body") or {}).get("string")),
                ),
            )
            scrubbed = self._scrubber.scrub(
                item, self._scrubber.secrets(request.headers, request.url, request.body)
            )
            if scrubbed is not None:
                items.append(scrubbed)
        return encode(items, self._spec.describe())

    def deserialize(self, data: bytes | str) -> dict[str, Any]:
        raw = data.encode("latin-1") if isinstance(data, str) else data
        items, _ = decode(raw, "<vcrpy cassette>")
        interactions = []
        for item in items:
            status = item.response.status
            interactions.append(
                {
                    "request": {
                        "method": item.request.method,
                        "uri": item.request.url,
                        "body": item.request.body or None,
                        "headers": _grouped(item.request.headers),
                    },
                    "response": {
                        "status": {
                            "code": status,
                            "message": httpx2.codes.get_reason_phrase(status),
                        },
                        "headers": _grouped(item.response.headers),
                        "body": {"string": item.response.content},
                    },
                }
            )
        return {"version": 1, "interactions": interactions}


class MsgpackPersister:
    """A vcrpy persister that reads and writes bytes (vcrpy's own writes text), atomically."""

    @classmethod
    def load_cassette(cls, cassette_path: str | Path, serializer: Any) -> Any:
        from vcr.persisters.filesystem import CassetteNotFoundError
        from vcr.serialize import deserialize

        path = Path(cassette_path)
        if not path.is_file():
            raise CassetteNotFoundError()
        data = path.read_bytes()
        if not data.strip():
            raise CassetteNotFoundError()
        if not isinstance(serializer, MsgpackSerializer):
            return deserialize(data.decode("utf-8"), serializer)
        return deserialize(data, serializer)

    @staticmethod
    def save_cassette(cassette_path: str | Path, cassette_dict: Any, serializer: Any) -> None:
        from vcr.serialize import serialize

        data = serialize(cassette_dict, serializer)
        FileStorage().save(Path(cassette_path), data if isinstance(data, bytes) else data.encode())


def register(vcr: Any) -> Any:
    """Teach a ``vcr.VCR`` the ``"llmreplay"`` serializer and the binary persister; returns it."""
    vcr.register_serializer(NAME, MsgpackSerializer())
    vcr.register_persister(MsgpackPersister)
    return vcr
