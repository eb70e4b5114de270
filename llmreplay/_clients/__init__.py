"""The client layer: TinyTroupe's ``openai_utils`` behaviour, on llmreplay cassettes.

``client()`` returns the configured client (``API_TYPE``: openai or azure), built once and
shared; ``register_client`` adds or replaces api types; ``force_api_type``,
``force_api_cache`` and ``force_default_value`` change settings for every client.
"""

from __future__ import annotations

import threading
from typing import Any

from .._errors import ConfigError
from .azure_client import AzureClient
from .base import BaseClient, Reply, force, unforce_all
from .config import ClientConfig, load_config
from .llmcall import LLMCall
from .openai_client import OpenAIClient
from .retry import RetryPolicy

_lock = threading.Lock()
_registry: dict[str, BaseClient | type[BaseClient]] = {"openai": OpenAIClient, "azure": AzureClient}
_forced_type: list[str | None] = [None]


def register_client(
    api_type: str, client: BaseClient | type[BaseClient], *, replace: bool = False
) -> None:
    """Make ``client`` (an instance, or a class built on first use) serve ``api_type``.

    Registering a name twice is refused unless ``replace=True``.
    """
    with _lock:
        if api_type in _registry and not replace:
            raise ConfigError(
                "api_type", api_type, "register_client", "already registered; pass replace=True"
            )
        _registry[api_type] = client


def client() -> BaseClient:
    """The client for the configured (or forced) ``API_TYPE``, shared by every caller."""
    api_type = _forced_type[0] or load_config().api_type
    with _lock:
        entry = _registry.get(api_type)
        if entry is None:
            expected = "expected one of: " + ", ".join(sorted(_registry))
            raise ConfigError("api_type", api_type, "API_TYPE", expected)
        if isinstance(entry, type):
            entry = _registry[api_type] = entry()
        return entry


def force_api_type(api_type: str | None) -> None:
    """Use ``api_type``'s client from now on, whatever the settings say (``None`` undoes it)."""
    if api_type is not None and api_type not in _registry:
        expected = "expected one of: " + ", ".join(sorted(_registry))
        raise ConfigError("api_type", api_type, "force_api_type", expected)
    _forced_type[0] = api_type


def force_api_cache(enabled: bool, file: str | None = None) -> None:
    """Turn the API-call cache on or off for every client, optionally at ``file``."""
    force("CACHE_API_CALLS", enabled, "force_api_cache")
    if file is not None:
        force("CACHE_FILE_NAME", file, "force_api_cache")


def force_default_value(key: str, value: Any) -> None:
    """Set ``key`` (e.g. ``"MODEL"``, ``"TEMPERATURE"``) for every client; only explicit
    arguments to a client take precedence."""
    force(key, value, f"force_default_value({key!r})")


def reset() -> None:
    """Undo every ``force_*`` and forget built clients (for tests)."""
    unforce_all()
    _forced_type[0] = None
    with _lock:
        for name, entry in list(_registry.items()):
            if not isinstance(entry, type):
                _registry[name] = type(entry)


def get_embedding(text: str | list[str], model: str | None = None) -> Any:
    """``client().get_embedding(...)``."""
    return client().get_embedding(text, model)


__all__ = [
    "AzureClient",
    "BaseClient",
    "ClientConfig",
    "LLMCall",
    "OpenAIClient",
    "Reply",
    "RetryPolicy",
    "client",
    "force_api_cache",
    "force_api_type",
    "force_default_value",
    "get_embedding",
    "load_config",
    "register_client",
    "reset",
]
