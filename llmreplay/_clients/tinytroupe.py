"""The module-level names TinyTroupe code reads from ``openai_utils``: ``default``, ``config``.

With ``import llmreplay as openai_utils``, ``openai_utils.default["model"]`` reads the setting
in force (files, environment, ``force_default_value``) and assigning to it forces it;
``openai_utils.config["OpenAI"]["API_TYPE"]`` reads ``config.ini`` of the current directory
as TinyTroupe did (all sections, as text). Both are views: nothing is read at import time.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .base import _forced, _forced_lock, _forced_version, force
from .config import ClientConfig, _lookup, load_config

# TinyTroupe's ``default`` keys (0.4-0.5), in its order; ours (attribute names) work too.
TINYTROUPE_DEFAULTS = (
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "timeout",
    "max_attempts",
    "waiting_time",
    "exponential_backoff_factor",
    "embedding_model",
    "cache_api_calls",
    "cache_file_name",
)


def resolved() -> ClientConfig:
    """The settings every client starts from: files and environment, then forced values."""
    config = load_config()
    with _forced_lock:
        forced = dict(_forced)
    for key, (value, source) in forced.items():
        config = config.with_value(key, value, source)
    return config


class Defaults(MutableMapping[str, Any]):
    """TinyTroupe's ``default`` dict as a live view of the settings.

    >>> llmreplay.default["model"]
    'gpt-4o-mini'
    >>> llmreplay.default["max_attempts"] = 3  # the same as force_default_value
    """

    def __getitem__(self, key: str) -> Any:
        try:
            attribute, _ = _lookup(key, "llmreplay.default[...]")
        except ConfigError as exc:
            raise KeyError(str(exc)) from None
        return getattr(resolved(), attribute)

    def __setitem__(self, key: str, value: Any) -> None:
        force(key, value, f"llmreplay.default[{key!r}]")

    def __delitem__(self, key: str) -> None:
        with _forced_lock:
            if _forced.pop(key, None) is None:
                raise KeyError(key)
            _forced_version[0] += 1

    def __iter__(self) -> Iterator[str]:
        return iter(TINYTROUPE_DEFAULTS)

    def __len__(self) -> int:
        return len(TINYTROUPE_DEFAULTS)

    def __repr__(self) -> str:
        return f"llmreplay.default({dict(self)!r})"


class IniView(Mapping[str, "configparser.SectionProxy"]):
    """``config.ini`` of the current directory, read on each access, as TinyTroupe's
    ``config`` (a ``ConfigParser``): ``config["OpenAI"]["MODEL"]``,
    ``config["OpenAI"].getint("MAX_ATTEMPTS")``, ``config.get("Logging", "LOGLEVEL")``."""

    def parser(self) -> configparser.ConfigParser:
        """The file as a fresh ``ConfigParser`` (empty when there is no ``config.ini``)."""
        parser = configparser.ConfigParser()
        path = Path.cwd() / "config.ini"
        if path.is_file():
            parser.read(path, encoding="utf-8")
        return parser

    def __getitem__(self, section: str) -> configparser.SectionProxy:
        return self.parser()[section]

    def __iter__(self) -> Iterator[str]:
        return iter(self.parser().sections())

    def __len__(self) -> int:
        return len(self.parser().sections())

    def get(self, section: str, option: str | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        """``ConfigParser.get(section, option, fallback=...)``; with one argument, the section."""
        if option is None:
            return super().get(section)
        return self.parser().get(section, option, **kwargs)

    def __getattr__(self, name: str) -> Any:  # getint, getboolean, has_section, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.parser(), name)

    def __repr__(self) -> str:
        return f"llmreplay.config(sections={list(self)!r})"


default = Defaults()
config = IniView()
