"""One chat or embedding call on an SDK client, and the ``Reply`` it makes.

Pure helpers of ``BaseClient``: the SDK's ``create``/``parse``/``stream`` for a chat request,
the ``Reply`` built from a completion, and the key a cache-miss single flight is held under.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .reply import Reply

if TYPE_CHECKING:
    import openai


def flight_key(parts: Sequence[Any]) -> str:
    """The single-flight key of a request: a hash of its parts as canonical JSON."""
    text = json.dumps(parts, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def format_name(response_format: Any) -> Any:
    """A ``response_format`` as JSON-able data (a pydantic model by name and schema)."""
    if _is_model_class(response_format):
        return [response_format.__qualname__, response_format.model_json_schema()]
    return response_format


def nested(found: Any) -> bool:
    """Whether an embedding hook returned a list of vectors rather than one vector."""
    return isinstance(found, list) and bool(found) and isinstance(found[0], list)


def vectors(result: Any, text: str | list[str]) -> Any:
    """The vector of ``text`` from an SDK embedding response, or the vectors of a list."""
    found = [item.embedding for item in result.data]
    return found[0] if isinstance(text, str) else found


def _is_model_class(value: Any) -> bool:
    return isinstance(value, type) and hasattr(value, "model_json_schema")


def _reply(completion: Any, response_format: Any) -> Reply:
    message = completion.choices[0].message
    parsed = getattr(message, "parsed", None)
    if parsed is None and isinstance(response_format, Mapping) and message.content:
        try:
            parsed = json.loads(message.content)
        except ValueError:
            parsed = None
    return Reply(
        content=message.content,
        tool_calls=list(message.tool_calls or []),
        refusal=getattr(message, "refusal", None),
        parsed=parsed,
        completion=completion,
    )


def kwargs_of(request: Mapping[str, Any], response_format: Any) -> dict[str, Any]:
    kwargs = dict(request)  # a copy: the request itself stays as it was for the next attempt
    if response_format is not None:
        kwargs["response_format"] = response_format
    return kwargs


def send(
    sdk: openai.OpenAI,
    request: Mapping[str, Any],
    response_format: Any,
    stream: bool,
    on_chunk: Callable[[str], None] | None,
) -> Reply:
    kwargs = kwargs_of(request, response_format)
    if stream:
        with sdk.chat.completions.stream(**kwargs) as events:
            for event in events:
                if event.type == "content.delta" and on_chunk is not None:
                    on_chunk(event.delta)
            return _reply(events.get_final_completion(), response_format)
    return _reply(call(sdk, kwargs, response_format), response_format)


def call(sdk: Any, kwargs: dict[str, Any], response_format: Any) -> Any:
    """One chat completion call: ``parse`` for a pydantic ``response_format``."""
    if response_format is not None:
        kwargs = {**kwargs, "response_format": response_format}
    if _is_model_class(response_format):
        return sdk.chat.completions.parse(**kwargs)
    return sdk.chat.completions.create(**kwargs)


async def asend(
    sdk: openai.AsyncOpenAI,
    request: Mapping[str, Any],
    response_format: Any,
    stream: bool,
    on_chunk: Callable[[str], None] | None,
) -> Reply:
    kwargs = kwargs_of(request, response_format)
    if stream:
        async with sdk.chat.completions.stream(**kwargs) as events:
            async for event in events:
                if event.type == "content.delta" and on_chunk is not None:
                    on_chunk(event.delta)
            return _reply(await events.get_final_completion(), response_format)
    if _is_model_class(response_format):
        return _reply(await sdk.chat.completions.parse(**kwargs), response_format)
    return _reply(await sdk.chat.completions.create(**kwargs), response_format)
