"""The client layer: TinyTroupe's ``openai_utils`` behaviour, on llmreplay cassettes.

``client()`` returns the configured client (``API_TYPE``: openai, azure, or a name given to
``register_client``), built once and shared; ``register_client`` adds or replaces api types;
``force_api_type``, ``force_api_cache`` and ``force_default_value`` change settings for every
client. ``default``, ``config``, ``logger`` and ``_get_client_for_api_type`` are the
module-level names TinyTroupe code reads from ``openai_utils``.
"""

from __future__ import annotations

import threading
from typing import Any

from .._errors import ConfigError
from .azure_client import AzureClient
from .base import BaseClient, force, logger, unforce_all
from .config import ClientConfig, load_config
from .llmcall import LLMCall
from .openai_client import OpenAIClient
from .reply import Reply
from .retry import RetryPolicy
from .tinytroupe import Defaults, IniView, config as ini, default

_lock = threading.Lock()
_BUILT_IN: dict[str, type[BaseClient]] = {"openai": OpenAIClient, "azure": AzureClient}
_registry: dict[str, BaseClient | type[BaseClient]] = dict(_BUILT_IN)
_forced_type: list[str | None] = [None]


def register_client(
    api_type: str, client: BaseClient | type[BaseClient], *, replace: bool = False
) -> None:
    """Make ``client`` (an instance, or a class built on first use) serve ``api_type``.

    Registering a name twice is refused unless ``replace=True``. A class overriding a
    TinyTroupe hook that llmreplay never calls (``_save_cache``, ``_load_cache``) is refused
    here, with the reason, rather than silently ignored.
    """
    (client if isinstance(client, type) else type(client)).check_hooks()
    with _lock:
        if api_type in _registry and not replace:
            raise ConfigError(
                "api_type", api_type, "register_client", "already registered; pass replace=True"
            )
        _registry[api_type] = client


def client() -> BaseClient:
    """The client for the configured (or forced) ``API_TYPE``, shared by every caller."""
    if _forced_type[0] is not None:
        return _get_client_for_api_type(_forced_type[0], "force_api_type")
    config = load_config()
    return _get_client_for_api_type(config.api_type, config.sources.get("api_type", "API_TYPE"))


def _get_client_for_api_type(api_type: str, source: str = "API_TYPE") -> BaseClient:
    """The client registered for ``api_type`` (TinyTroupe's name for this lookup)."""
    with _lock:
        name = api_type if api_type in _registry else api_type.lower()
        entry = _registry.get(name)
        if entry is None:
            expected = "expected one of: " + ", ".join(sorted(_registry))
            raise ConfigError("api_type", api_type, source, expected)
        if isinstance(entry, type):
            entry = _registry[name] = entry()
        return entry


def force_api_type(api_type: str | None) -> None:
    """Use ``api_type``'s client from now on, whatever the settings say (``None`` undoes it)."""
    if api_type is not None and api_type not in _registry:
        expected = "expected one of: " + ", ".join(sorted(_registry))
        raise ConfigError("api_type", api_type, "force_api_type", expected)
    _forced_type[0] = api_type


def force_api_cache(enabled: bool, file: str | None = None) -> None:
    """Turn the API-call cache on or off for every client, optionally at ``file``.

    A registered client whose class overrides ``set_api_cache`` (a TinyTroupe hook) has it
    called too, as TinyTroupe's ``force_api_cache`` did.
    """
    force("CACHE_API_CALLS", enabled, "force_api_cache")
    if file is not None:
        force("CACHE_FILE_NAME", file, "force_api_cache")
    with _lock:
        hooked = [
            entry
            for entry in _registry.values()
            if not isinstance(entry, type)
            and type(entry).set_api_cache is not BaseClient.set_api_cache
        ]
    for entry in hooked:
        entry.set_api_cache(enabled, file)


def force_default_value(key: str, value: Any) -> None:
    """Set ``key`` (e.g. ``"MODEL"``, ``"TEMPERATURE"``) for every client; only explicit
    arguments to a client take precedence."""
    force(key, value, f"force_default_value({key!r})")


def reset() -> None:
    """Back to a fresh process (for tests): undo every ``force_*``, forget built clients and
    registrations beyond the built-in openai and azure."""
    unforce_all()
    _forced_type[0] = None
    with _lock:
        _registry.clear()
        _registry.update(_BUILT_IN)


def get_embedding(text: str | list[str], model: str | None = None) -> Any:
    """``client().get_embedding(...)``."""
    return client().get_embedding(text, model)


__all__ = [
    "AzureClient",
    "BaseClient",
    "ClientConfig",
    "Defaults",
    "IniView",
    "LLMCall",
    "OpenAIClient",
    "Reply",
    "RetryPolicy",
    "client",
    "default",
    "force_api_cache",
    "force_api_type",
    "force_default_value",
    "get_embedding",
    "ini",
    "load_config",
    "logger",
    "register_client",
    "reset",
]
