"""Tokens not spent: usage read from recorded OpenAI and Anthropic responses."""

from __future__ import annotations

import gzip
import json

import pytest

from llmreplay._format import Interaction, RecordedRequest, RecordedResponse
from llmreplay._usage import tokens


def _item(
    body: bytes | None = None, chunks: list[bytes] | None = None, gz: bool = False
) -> Interaction:
    headers = [("content-encoding", "gzip")] if gz else []
    return Interaction(
        "k",
        RecordedRequest("POST", "https://api.openai.com/v1/x", [], b"{}"),
        RecordedResponse(200, headers, body=body, chunks=chunks),
    )


def _sse(*events: dict[str, object]) -> list[bytes]:
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (_item(b'{"usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}'), 12),
        (_item(gzip.compress(b'{"usage": {"total_tokens": 7}}'), gz=True), 7),
        (_item(b'{"response": {"usage": {"input_tokens": 5, "output_tokens": 3}}}'), 8),
        (_item(chunks=_sse({"choices": []}, {"usage": {"total_tokens": 30}})), 30),
        (
            _item(
                chunks=_sse(
                    {
                        "type": "message_start",
                        "message": {"usage": {"input_tokens": 10, "output_tokens": 1}},
                    },
                    {"type": "message_delta", "usage": {"output_tokens": 15}},
                )
            ),
            25,
        ),
        (_item(b"not json"), 0),
        (_item(b"\x1f\x8bbroken", gz=True), 0),
        (_item(chunks=[b"data: {broken\n\n"]), 0),
    ],
)
def test_tokens_from_usage(item: Interaction, expected: int) -> None:
    assert tokens(item) == expected
