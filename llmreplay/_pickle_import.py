"""``llmreplay import-pickle``: a one-time conversion of a TinyTroupe pickle cache to msgpack.

TinyTroupe cached API calls in a pickle (``openai_api_cache.pickle``): a dict from
``str((model, chat_api_params))`` to the SDK's ``ChatCompletion``. ``pickle.load`` on such a
file runs whatever callables it names, so it is a program, not data. This module never calls
``pickle.load``: ``SafeUnpickler`` resolves no global except

- built-in containers (``dict``, ``list``, ``tuple``, ``set``, ``frozenset``) and the
  strings and numbers pickle encodes directly; and
- classes of the OpenAI SDK's response types (``openai.types.*``), which are *not
  imported*: each is replaced by an inert record that keeps the pickled field values.

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a project's own
class...) stops the load with ``CassetteError`` before anything is called. Even so the
command asks for ``--trust``: convert only caches you made.

Each entry becomes one interaction: the request TinyTroupe sent (``timeout``, ``None``
values and API defaults ``stream=false``, ``n=1``, ``stop=[]`` left out, as the client
layer leaves them out) to ``--url``, and the completion as a 200 JSON answer. Entries whose
key is not a plain literal (a pydantic ``response_format``) or whose value is not a chat
completion are skipped and reported.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._errors import CassetteError
from ._format import Interaction, RecordedRequest, RecordedResponse, encode
from ._match import KeySpec, RequestView
from ._scrub import DEFAULT_FILTER_QUERY

DEFAULT_URL = "https://api.openai.com/v1/chat/completions"
_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset"})
_LIMIT = 512 * 2**20  # a cache larger than this is not a TinyTroupe cache
_MAX_NODES = 1_000_000  # values in one converted answer, shared references expanded
_MAX_DEPTH = 100


class Record:
    """An inert stand-in for a pickled SDK object: its class name and pickled state."""

    pickled_name = "?"
    state: Any = None  # NEWOBJ skips __init__: BUILD's __setstate__ is what fills it

    def __setstate__(self, state: Any) -> None:
        self.state = state


_records: dict[str, type[Record]] = {}


def _record_class(qualified: str) -> type[Record]:
    cls = _records.get(qualified)
    if cls is None:
        cls = _records[qualified] = type("Record", (Record,), {"pickled_name": qualified})
    return cls


class SafeUnpickler(pickle.Unpickler):
    """Loads built-in containers, strings and numbers; SDK response objects as ``Record``s;
    refuses every other global before anything is called."""

    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _BUILTINS:  # py2-era name too
            return {"dict": dict, "list": list, "tuple": tuple, "set": set}.get(name, frozenset)
        if module.startswith("openai.types.") and name.isidentifier():
            return _record_class(f"{module}.{name}")
        raise CassetteError(
            self.path,
            f"the pickle refers to {module}.{name}, which the converter does not load "
            "(it accepts built-in containers, strings, numbers and OpenAI response objects "
            "only; anything else could run code)",
            hint="Nothing in it was run. If this is not a TinyTroupe cache you made, delete it.",
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CassetteError(self.path, "the pickle uses persistent ids, which are refused")


def _fields(record: Record) -> dict[str, Any]:
    state = record.state
    if isinstance(state, tuple) and len(state) == 2:  # (__dict__, slots)
        state = {k: v for part in state if isinstance(part, dict) for k, v in part.items()}
    fields: dict[str, Any] = {}
    if isinstance(state, dict):
        for name in ("__dict__", "__pydantic_extra__"):
            if isinstance(state.get(name), dict):
                fields.update(state[name])
        if "__dict__" not in state:
            fields.update(state)
    return fields


def plain(value: Any) -> Any:
    """``value`` with every ``Record`` turned into the dict of its fields, recursively.

    Shared references are expanded, so a small pickle could describe a huge tree: past
    ``_MAX_NODES`` values or ``_MAX_DEPTH`` levels it raises ``ValueError`` instead.
    """
    budget = [_MAX_NODES]

    def walk(item: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            raise ValueError("it is too large or too deeply nested for a chat completion")
        if isinstance(item, Record):
            item = _fields(item)
        if isinstance(item, dict):
            return {str(k): walk(v, depth + 1) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v, depth + 1) for v in item]
        if isinstance(item, set | frozenset):
            return sorted((walk(v, depth + 1) for v in item), key=repr)
        return item

    return walk(value, 0)


def request_body(params: dict[str, Any]) -> dict[str, Any]:
    """What TinyTroupe sent, as the client layer would send it: the SDK option ``timeout``,
    ``None`` values and API defaults (``stream=false``, ``n=1``, ``stop=[]``) left out."""
    body = {k: v for k, v in params.items() if v is not None and k != "timeout"}
    if body.get("stream") is False:
        del body["stream"]
    if body.get("n") == 1:
        del body["n"]
    if body.get("stop") in ([], "", ()):
        del body["stop"]
    return body


@dataclass
class Conversion:
    """What ``convert`` did: ``interactions`` written, ``skipped`` entries with reasons."""

    interactions: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load(path: Path) -> Any:
    """The pickle at ``path``, through ``SafeUnpickler``."""
    data = path.read_bytes()
    if len(data) > _LIMIT:
        raise CassetteError(path, f"it is larger than {_LIMIT} bytes; not a TinyTroupe cache")
    try:
        return SafeUnpickler(data, path).load()
    except CassetteError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        raise CassetteError(path, f"not a readable pickle ({exc})") from None


def _interaction(key: Any, value: Any, url: str, spec: KeySpec, now: str) -> Interaction:
    try:
        model, params = ast.literal_eval(key) if isinstance(key, str) else key
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ValueError(f"its key is not a (model, parameters) literal: {exc}") from None
    if not isinstance(params, dict) or "messages" not in params:
        raise ValueError("its key holds no chat messages")
    params = {"model": model, **params}
    answer = plain(value)
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
        raise ValueError("its value is not a chat completion")
    for choice in answer["choices"]:
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            choice["message"].pop("parsed", None)  # the SDK's addition, not the API's JSON
    body = json.dumps(request_body(params), ensure_ascii=False).encode()
    headers = [("content-type", "application/json")]
    key_text = spec.key(RequestView("POST", url, headers, body))
    return Interaction(
        key=key_text,
        request=RecordedRequest("POST", url, list(headers), body),
        response=RecordedResponse(200, list(headers), body=json.dumps(answer).encode()),
        recorded_at=now,
    )


def convert(source: Path, target: Path, *, trust: bool, url: str = DEFAULT_URL) -> Conversion:
    """Convert the TinyTroupe cache ``source`` into the cassette ``target``.

    Refuses unless ``trust`` is true (the ``--trust`` flag): the user vouches for the file.
    """
    if not trust:
        raise CassetteError(
            source,
            "converting a pickle needs --trust",
            hint=(
                "A pickle can hold code. The converter loads only data and refuses anything "
                "else, but convert only a cache you made: add --trust to say so."
            ),
        )
    cache = load(source)
    if not isinstance(cache, dict):
        raise CassetteError(source, f"it holds a {type(cache).__name__}, not a TinyTroupe cache")
    spec = KeySpec.build(None, (), DEFAULT_FILTER_QUERY)
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    result = Conversion()
    items: list[Interaction] = []
    for key, value in cache.items():
        try:
            items.append(_interaction(key, value, url, spec, now))
        except ValueError as exc:
            result.skipped.append((str(key)[:80], str(exc)))
    if not items:
        raise CassetteError(source, "no entry of it could be converted", hint=_reasons(result))
    from ._storage import FileStorage

    FileStorage().save(target, encode(items, spec.describe()))
    result.interactions = len(items)
    return result


def _reasons(result: Conversion) -> str:
    return "; ".join(f"{key}: {why}" for key, why in result.skipped[:3]) or "it is empty."
