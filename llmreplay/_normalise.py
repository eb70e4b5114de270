"""Named normalisers: what varies between two runs of one LLM test, made equal in the key.

Opt-in and explicit: ``cassette(normalise=("model_date", "uuids"))`` or
``@pytest.mark.llmreplay(normalise=[...])``. Each applies to the JSON request body when the
key is made (never to what is sent or stored), after ``ignore``; the names used are stored
in the cassette with the other key settings, so a cassette opened with other normalisers
recomputes its keys instead of missing. Each one can make two requests that *should*
differ share a key; what it may wrongly merge is written beside it (and in the README).

- ``model_date``: a dated snapshot is its alias: ``gpt-4o-2024-08-06`` and
  ``claude-3-5-sonnet-20241022`` key as ``gpt-4o`` and ``claude-3-5-sonnet``, in the
  top-level ``model`` field (``-YYYY-MM-DD`` and ``-YYYYMMDD`` suffixes; the older
  four-digit ``gpt-4-0613`` form is left alone: four digits are too often something
  else). *May merge* two snapshots of one model that answer differently.
- ``user``: drops the per-caller ids ``user``, ``safety_identifier``, ``prompt_cache_key``
  and ``metadata`` (OpenAI's tags and Anthropic's ``metadata.user_id``). *May merge*
  requests a test sends as different users on purpose.
- ``seed``: drops ``seed``. *May merge* a test comparing the answers of two seeds.
- ``stream_options``: drops ``stream_options`` (``include_usage``...). *May merge* a stream
  with a final usage chunk and one without: the replayed stream may lack (or have) it.
- ``uuids``: every UUID inside any string (message text included) becomes
  ``<uuid>``. *May merge* prompts that differ only in which record's id they name.
- ``timestamps``: every ISO-8601 date-time inside any string (``2024-05-01T12:30:00Z``,
  ``2024-05-01 12:30``, with seconds, fractions and offsets) becomes ``<timestamp>``;
  dates alone are kept. *May merge* prompts whose answer depends on the time they name.
- ``regex:PATTERN``: every match of ``PATTERN`` (Python ``re``) inside any string becomes
  ``<regex>``, for a project's own ids (``regex:req_[0-9a-f]{16}``). *May merge* whatever
  the pattern matches: keep it as narrow as the id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ._errors import ConfigError

_DATED = re.compile(r"^(?P<alias>.+?)-(?:\d{4}-\d{2}-\d{2}|20\d{6})$")
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_TIMESTAMP = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\b"
)
_USER_FIELDS = ("user", "safety_identifier", "prompt_cache_key", "metadata")
REGEX = "regex:"
Normaliser = Callable[[Any], Any]


def _model_date(data: Any) -> Any:
    if isinstance(data, dict) and isinstance(data.get("model"), str):
        dated = _DATED.match(data["model"])
        if dated is not None:
            data["model"] = dated.group("alias")
    return data


def _dropping(*fields: str) -> Normaliser:
    def drop(data: Any) -> Any:
        if isinstance(data, dict):
            for name in fields:
                data.pop(name, None)
        return data

    return drop


def _in_strings(pattern: re.Pattern[str], placeholder: str) -> Normaliser:
    def replace(data: Any) -> Any:
        if isinstance(data, str):
            return pattern.sub(placeholder, data)
        if isinstance(data, list):
            return [replace(item) for item in data]
        if isinstance(data, dict):
            return {key: replace(value) for key, value in data.items()}
        return data

    return replace


NORMALISERS: Mapping[str, Normaliser] = MappingProxyType(
    {
        "model_date": _model_date,
        "user": _dropping(*_USER_FIELDS),
        "seed": _dropping("seed"),
        "stream_options": _dropping("stream_options"),
        "uuids": _in_strings(_UUID, "<uuid>"),
        "timestamps": _in_strings(_TIMESTAMP, "<timestamp>"),
    }
)


def checked(names: Iterable[str], source: str = "normalise=") -> tuple[str, ...]:
    """``names`` sorted and validated: a ``ConfigError`` lists the known ones."""
    out = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigError("normaliser", name, source, "expected a name (a string)")
        if name.startswith(REGEX):
            try:
                re.compile(name[len(REGEX) :])
            except re.error as exc:
                raise ConfigError("normaliser", name, source, f"the pattern fails: {exc}") from None
        elif name not in NORMALISERS:
            expected = "expected one of: " + ", ".join(sorted(NORMALISERS)) + ", regex:PATTERN"
            raise ConfigError("normaliser", name, source, expected)
        out.append(name)
    return tuple(sorted(set(out)))


def normalise(data: Any, names: Iterable[str]) -> Any:
    """``data`` (a parsed JSON body) with the named normalisers applied, in sorted order."""
    for name in names:
        if name.startswith(REGEX):
            data = _in_strings(re.compile(name[len(REGEX) :]), "<regex>")(data)
        else:
            data = NORMALISERS[name](data)
    return data
