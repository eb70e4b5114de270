"""``count_tokens``: exact OpenAI token counts, offline.

tiktoken downloads its BPE files on first use, which an offline CI cannot do. The PyPI
package ``bpe-openai`` ships ``cl100k_base`` and ``o200k_base`` (gzipped) whose contents have
exactly the sha256 tiktoken expects. Before tiktoken first loads one, its cache (the folder
``TIKTOKEN_CACHE_DIR`` names, or tiktoken's default) is seeded with the verified file under
the name tiktoken would give its own download, so tiktoken reads it and never goes online.
A file that does not match the hash is never used.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    import tiktoken

# name -> (the URL tiktoken loads it from, the sha256 tiktoken expects of its contents)
_SOURCES = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
# Chat formatting overhead per OpenAI's guide: every message is wrapped in 3 tokens, a
# "name" costs 1 more, and every reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def _require_tiktoken() -> Any:
    try:
        import tiktoken
    except ImportError:
        raise ImportError(
            "count_tokens needs tiktoken and bpe-openai: pip install 'pytest-llmreplay[tokens]'"
        ) from None
    return tiktoken


def _cache_dir() -> str | None:
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in os.environ:
            return os.environ[name] or None  # "" turns tiktoken's cache off
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _seed(name: str) -> None:
    """Put the verified BPE file where tiktoken looks before it downloads."""
    url, expected = _SOURCES[name]
    cache = _cache_dir()
    if cache is None:
        raise ConfigError(
            "TIKTOKEN_CACHE_DIR", "", "the environment", "unset it so encodings load offline"
        )
    target = os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())
    if os.path.exists(target):
        with open(target, "rb") as handle:
            if hashlib.sha256(handle.read()).hexdigest() == expected:
                return
    # Found, not imported: only the data file is needed, not bpe-openai's own tokenizer.
    spec = importlib.util.find_spec("bpe_openai")
    try:
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(name)
        folder = Path(next(iter(spec.submodule_search_locations)))
        data = gzip.decompress((folder / "data" / f"{name}.tiktoken.gz").read_bytes())
    except FileNotFoundError:
        raise ImportError(
            f"count_tokens needs the {name} file from bpe-openai: "
            "pip install 'pytest-llmreplay[tokens]'"
        ) from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise ImportError(f"bpe-openai's {name} does not have the sha256 tiktoken expects")
    os.makedirs(cache, exist_ok=True)
    temporary = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, target)


def encoding_for(model: str | None = None, encoding: str | None = None) -> tiktoken.Encoding:
    """The tiktoken encoding for ``model`` (or by ``encoding`` name), loaded offline."""
    tiktoken = _require_tiktoken()
    if encoding is None:
        if not model:
            raise ConfigError("model", model, "count_tokens(model=...)", "name a model")
        try:
            encoding = str(tiktoken.encoding_name_for_model(model))
        except KeyError:
            raise ConfigError(
                "model",
                model,
                "count_tokens(model=...)",
                "tiktoken does not know it; name an OpenAI model (gpt-4o, gpt-4.1, o3, "
                "gpt-3.5-turbo, text-embedding-3-small, ...) or pass encoding='o200k_base'",
            ) from None
    if encoding not in _SOURCES:
        expected = "expected one of: " + ", ".join(sorted(_SOURCES))
        raise ConfigError("encoding", encoding, "count_tokens(encoding=...)", expected)
    with _lock:
        if encoding not in _encodings:
            _seed(encoding)
            _encodings[encoding] = tiktoken.get_encoding(encoding)
        return _encodings[encoding]


def count_tokens(
    messages: str | Iterable[Mapping[str, Any]],
    model: str | None = "gpt-4o-mini",
    *,
    encoding: str | None = None,
) -> int:
    """Exact tokens of a string, or of chat ``messages`` as the model will see them
    (message and reply-priming overhead included). Works offline.

    >>> count_tokens("hello world", "gpt-4o")
    2
    >>> count_tokens([{"role": "user", "content": "hello world"}], "gpt-4o")
    9
    """
    enc = encoding_for(model, encoding)
    if isinstance(messages, str):
        return len(enc.encode(messages, disallowed_special=()))
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += len(enc.encode(value, disallowed_special=()))
            elif isinstance(value, list):  # content parts: count their text
                for part in value:
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        total += len(enc.encode(part["text"], disallowed_special=()))
            if key == "name":
                total += TOKENS_PER_NAME
    return total
