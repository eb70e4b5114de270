"""Tokens a recorded response reports in its ``usage``: what a replay did not spend.

Reads OpenAI (``total_tokens``; ``prompt_tokens``/``completion_tokens``; the Responses API's
``input_tokens``/``output_tokens``) and Anthropic (``input_tokens`` + ``output_tokens``)
usage, from whole JSON bodies and from streams. Streams report usage piecemeal (Anthropic
sends input tokens in ``message_start`` and output tokens in ``message_delta``), so the
largest value of each count over all events is taken.
"""

from __future__ import annotations

import json
from typing import Any

from ._format import Interaction
from ._inspect import decoded

_COUNTS = ("total_tokens", "input_tokens", "output_tokens", "prompt_tokens", "completion_tokens")


def _collect(document: Any, seen: dict[str, int]) -> None:
    if not isinstance(document, dict):
        return
    usage = document.get("usage")
    if isinstance(usage, dict):
        for name in _COUNTS:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                seen[name] = max(seen.get(name, 0), value)
    for nested in ("response", "message"):
        _collect(document.get(nested), seen)


def _total(seen: dict[str, int]) -> int:
    parts = seen.get("input_tokens", 0) + seen.get("output_tokens", 0)
    parts = max(parts, seen.get("prompt_tokens", 0) + seen.get("completion_tokens", 0))
    return max(seen.get("total_tokens", 0), parts)


def tokens(item: Interaction) -> int:
    """The tokens ``item``'s response says it used; 0 when it says nothing readable."""
    body = decoded(item.response.content, item.response.headers)
    seen: dict[str, int] = {}
    if item.response.chunks is None:
        try:
            _collect(json.loads(body), seen)
        except ValueError:
            return 0
    else:
        for line in body.splitlines():
            if line.startswith(b"data:"):
                try:
                    _collect(json.loads(line[5:]), seen)
                except ValueError:
                    continue
    return _total(seen)
