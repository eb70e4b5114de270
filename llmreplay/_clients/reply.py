"""``Reply``: the assistant's message, with attributes and read as the dict TinyTroupe returned.

TinyTroupe's ``send_message`` returned the message as a dict (``message.to_dict()``), and its
call sites read ``reply["content"]``, ``reply.get("refusal")``, ``"content" in reply``. A
``Reply`` is a read-only ``Mapping`` with those keys, while keeping typed attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, eq=False)
class Reply(Mapping[str, Any]):
    """The assistant's message: ``content``, ``tool_calls``, ``refusal``, and ``parsed``
    (the pydantic object or JSON a ``response_format`` asked for); ``completion`` is the
    SDK's whole ChatCompletion.

    It also reads as the message dict TinyTroupe returned: ``role`` and ``content`` always,
    ``tool_calls``, ``refusal`` and ``parsed`` when present.

    >>> reply = Reply("Hello")
    >>> reply["content"], reply.get("refusal"), "role" in reply, dict(reply)
    ('Hello', None, True, {'role': 'assistant', 'content': 'Hello'})
    """

    content: str | None
    tool_calls: list[Any] = field(default_factory=list)
    refusal: str | None = None
    parsed: Any = None
    completion: Any = None
    role: str = "assistant"

    def as_dict(self) -> dict[str, Any]:
        """The message as a chat message dict (TinyTroupe's return shape)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                c.model_dump() if hasattr(c, "model_dump") else c for c in self.tool_calls
            ]
        if self.refusal:
            out["refusal"] = self.refusal
        if self.parsed is not None:
            out["parsed"] = self.parsed
        return out

    # -- Mapping: the dict view ----------------------------------------------------------

    def _keys(self) -> list[str]:
        keys = ["role", "content"]
        keys += [k for k in ("tool_calls", "refusal", "parsed") if getattr(self, k)]
        return keys

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        if key == "tool_calls":
            return self.as_dict()["tool_calls"]
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reply):
            return self.as_dict() == other.as_dict() and self.completion == other.completion
        if isinstance(other, Mapping):
            return self.as_dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a mapping, compared by value


def from_message(message: Mapping[str, Any] | Any, response: Any = None) -> Reply:
    """A ``Reply`` from what a custom client's ``_raw_model_response_extractor`` returned:
    a message dict (TinyTroupe's shape), an SDK message object, or a ``Reply``."""
    if isinstance(message, Reply):
        return message
    if not isinstance(message, Mapping):
        get = getattr
        return Reply(
            content=get(message, "content", None),
            tool_calls=list(get(message, "tool_calls", None) or []),
            refusal=get(message, "refusal", None),
            parsed=get(message, "parsed", None),
            completion=response,
            role=get(message, "role", None) or "assistant",
        )
    return Reply(
        content=message.get("content"),
        tool_calls=list(message.get("tool_calls") or []),
        refusal=message.get("refusal"),
        parsed=message.get("parsed"),
        completion=response,
        role=message.get("role") or "assistant",
    )
