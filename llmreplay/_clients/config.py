"""Client settings: typed, validated, and each value remembers where it came from.

Resolution, first found wins: explicit arguments > ``LLMREPLAY_<KEY>`` environment
variables > ``[tool.llmreplay]`` in ``pyproject.toml`` > the ``[OpenAI]`` section of
``config.ini`` (TinyTroupe's keys) > defaults. Keys are TinyTroupe's, case-insensitive:
``API_TYPE``, ``MODEL``, ``MAX_TOKENS``, ``MAX_COMPLETION_TOKENS``, ``TEMPERATURE``,
``TOP_P``, ``FREQ_PENALTY``, ``PRESENCE_PENALTY``, ``TIMEOUT``, ``MAX_ATTEMPTS``,
``WAITING_TIME``, ``EXPONENTIAL_BACKOFF_FACTOR``, ``EMBEDDING_MODEL``, ``CACHE_API_CALLS``,
``CACHE_FILE_NAME``, ``AZURE_API_VERSION``, plus ``MAX_BACKOFF``, ``MAX_TOTAL_WAIT``,
``JITTER``, ``DEDENT_MESSAGES``, ``BASE_URL``, ``AZURE_ENDPOINT`` (or
``AZURE_OPENAI_ENDPOINT``), ``AZURE_DEPLOYMENT`` and ``TEMPLATES_DIR``. Optional sampling
parameters left unset (``TOP_P``, ``FREQ_PENALTY``, ``PRESENCE_PENALTY``) are not sent.

TinyTroupe's files load unchanged: in ``config.ini`` only ``[OpenAI]`` is read (its other
sections are TinyTroupe's own), and keys of ``[OpenAI]`` we do not use
(``REASONING_MODEL``, ``MAX_CONTENT_DISPLAY_LENGTH``, ...) are ignored with one warning on
the ``llmreplay`` logger naming them. Whole numbers may be written ``5.0``. In
``pyproject.toml`` and arguments, which are ours, an unknown key stays an error.
"""

from __future__ import annotations

import configparser
import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .._errors import ConfigError


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _integer(text: str) -> int:
    """An int, also written as an integral float (TinyTroupe's ``MAX_ATTEMPTS=5.0``)."""
    try:
        return int(text)
    except ValueError:
        number = float(text)  # ValueError for text that is no number at all
        if not number.is_integer():
            raise ValueError(f"expected a whole number, not {text}") from None
        return int(number)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError("expected a number above 0")
        return value

    return parse


def _api_type(text: str) -> str:
    # Any name: register_client() may add it later; client() checks it against the registry.
    value = text.strip()
    if not value:
        raise ValueError("expected an api type such as openai or azure")
    return value


# key -> (attribute, parser); the parser turns text into the typed value or raises ValueError.
_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "API_TYPE": ("api_type", _api_type),
    "MODEL": ("model", str),
    "MAX_TOKENS": ("max_tokens", _positive(_integer)),
    "MAX_COMPLETION_TOKENS": ("max_completion_tokens", _positive(_integer)),
    "TEMPERATURE": ("temperature", float),
    "TOP_P": ("top_p", float),
    "FREQ_PENALTY": ("frequency_penalty", float),
    "PRESENCE_PENALTY": ("presence_penalty", float),
    "TIMEOUT": ("timeout", _positive(float)),
    "MAX_ATTEMPTS": ("max_attempts", _positive(_integer)),
    "WAITING_TIME": ("waiting_time", float),
    "EXPONENTIAL_BACKOFF_FACTOR": ("backoff_factor", _positive(float)),
    "MAX_BACKOFF": ("max_backoff", _positive(float)),
    "MAX_TOTAL_WAIT": ("max_total_wait", float),
    "DEDENT_MESSAGES": ("dedent_messages", _bool),
    "JITTER": ("jitter", float),
    "EMBEDDING_MODEL": ("embedding_model", str),
    "CACHE_API_CALLS": ("cache_api_calls", _bool),
    "CACHE_FILE_NAME": ("cache_file_name", str),
    "BASE_URL": ("base_url", str),
    "AZURE_ENDPOINT": ("azure_endpoint", str),
    "AZURE_API_VERSION": ("azure_api_version", str),
    "AZURE_DEPLOYMENT": ("azure_deployment", str),
    "TEMPLATES_DIR": ("templates_dir", str),
}
_ATTRIBUTES = {attribute: key for key, (attribute, _) in _KEYS.items()}
# Other spellings of a key: TinyTroupe's ``default`` dict names and environment names.
_ALIASES = {
    "FREQUENCY_PENALTY": "FREQ_PENALTY",
    "AZURE_OPENAI_ENDPOINT": "AZURE_ENDPOINT",
}
_logger = logging.getLogger("llmreplay")


@dataclass(frozen=True)
class ClientConfig:
    """Settings of an LLM client; ``sources`` says where each non-default value came from."""

    api_type: str = "openai"
    model: str = "gpt-4o-mini"
    max_tokens: int = 1024
    max_completion_tokens: int | None = None
    temperature: float = 0.3
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    timeout: float = 60.0
    max_attempts: int = 5
    waiting_time: float = 1.0
    backoff_factor: float = 2.0
    max_backoff: float = 60.0
    max_total_wait: float | None = None
    jitter: float = 0.1
    dedent_messages: bool = False
    embedding_model: str = "text-embedding-3-small"
    cache_api_calls: bool = False
    cache_file_name: str = "llmreplay_api_cache.msgpack"
    base_url: str | None = None
    azure_endpoint: str | None = None
    azure_api_version: str = "2024-10-21"
    azure_deployment: str | None = None
    templates_dir: str = "prompts"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def sampling(self) -> dict[str, Any]:
        """The model parameters a chat request sends: unset optional ones are left out;
        ``MAX_COMPLETION_TOKENS``, when set, is sent instead of ``max_tokens``."""
        params: dict[str, Any] = {"model": self.model, "temperature": self.temperature}
        if self.max_completion_tokens is not None:
            params["max_completion_tokens"] = self.max_completion_tokens
        else:
            params["max_tokens"] = self.max_tokens
        for name in ("top_p", "frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params

    def with_value(self, key: str, value: Any, source: str) -> ClientConfig:
        """A copy with ``key`` (TinyTroupe name or attribute) set, validated, from ``source``."""
        attribute, parse = _lookup(key, source)
        typed = _parse(attribute, parse, value, source)
        return replace(self, **{attribute: typed}, sources={**self.sources, attribute: source})


def known(key: str) -> bool:
    """Whether ``key`` names a setting (any spelling: ``MODEL``, ``model``, an alias)."""
    upper = key.upper()
    return upper in _KEYS or upper in _ALIASES or key in _ATTRIBUTES


def _lookup(key: str, source: str) -> tuple[str, Callable[[str], Any]]:
    upper = key.upper()
    upper = _ALIASES.get(upper, upper)
    if upper in _KEYS:
        return _KEYS[upper]
    if key in _ATTRIBUTES:
        return _KEYS[_ATTRIBUTES[key]]
    raise ConfigError("setting", key, source, "expected one of: " + ", ".join(sorted(_KEYS)))


def _parse(attribute: str, parse: Callable[[str], Any], value: Any, source: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        return parse(value)
    except ValueError as exc:
        hint = str(exc) if "expected" in str(exc) else f"expected {parse.__name__}"
        raise ConfigError(_ATTRIBUTES[attribute], value, source, hint) from None


def _from_pyproject(folder: Path) -> tuple[dict[str, Any], str]:
    path = folder / "pyproject.toml"
    if not path.is_file():
        return {}, ""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("pyproject.toml", str(path), str(path), f"valid TOML ({exc})") from None
    section = data.get("tool", {}).get("llmreplay", {})
    return (section if isinstance(section, dict) else {}), f"[tool.llmreplay] in {path}"


def _from_ini(folder: Path) -> tuple[dict[str, Any], str]:
    path = folder / "config.ini"
    if not path.is_file():
        return {}, ""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep KEY case for messages
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError("config.ini", str(path), str(path), f"valid INI ({exc})") from None
    if not parser.has_section("OpenAI"):
        return {}, ""
    values = dict(parser.items("OpenAI"))
    unknown = sorted(key for key in values if not known(key))
    if unknown:
        _warn_once(path, unknown)
    return {k: v for k, v in values.items() if k not in unknown}, f"[OpenAI] in {path}"


_warned: set[tuple[str, tuple[str, ...]]] = set()


def _warn_once(path: Path, unknown: list[str]) -> None:
    """One warning per file and set of keys, however often the settings are resolved."""
    marker = (str(path), tuple(unknown))
    if marker in _warned:
        return
    _warned.add(marker)
    _logger.warning(
        "llmreplay ignores these keys of [OpenAI] in %s (not client settings it uses): %s",
        path,
        ", ".join(unknown),
    )


def load_config(folder: str | Path | None = None, **explicit: Any) -> ClientConfig:
    """Resolve settings (see the module docstring). ``folder`` holds pyproject.toml and
    config.ini (default: the current directory)."""
    base = Path(folder) if folder is not None else Path.cwd()
    config = ClientConfig()
    layers: list[tuple[dict[str, Any], str]] = [_from_ini(base), _from_pyproject(base)]
    env = {k[len("LLMREPLAY_") :]: v for k, v in os.environ.items() if k.startswith("LLMREPLAY_")}
    env = {k: v for k, v in env.items() if known(k)}  # LLMREPLAY_MODE is not ours
    layers.append((env, "the environment (LLMREPLAY_*)"))
    layers.append(({k: v for k, v in explicit.items() if v is not None}, "arguments"))
    for values, source in layers:  # lowest first: later layers override
        for key, value in values.items():
            where = f"{key} in {source}" if source.startswith("[") else source
            config = config.with_value(key, value, where)
    return config


def attribute_names() -> list[str]:
    """Every setting's attribute name (for docs and tests)."""
    return [f.name for f in fields(ClientConfig) if f.name != "sources"]
