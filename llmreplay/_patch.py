"""The one implicit interception point: ``httpx2.Client._transport_for_url`` and its async twin.

While a cassette is active (``with llmreplay.cassette(...)``), every request sent by any
httpx2 client, whenever it was created and whatever transport it has (the SDKs' default
one, an aiohttp-backed one, a mounted proxy), goes through that cassette's transport, with
the client's own transport kept as upstream. Activations nest (the innermost cassette
wins) and are reference-counted: the original methods are restored when the last one ends,
even after an error.

Clients of the legacy ``httpx`` package (which the SDKs still accept as ``http_client``)
cannot be recorded; when ``httpx`` is loaded, their requests inside a cassette block are
refused with a ``ConfigError`` that says to pass an httpx2 client, instead of silently
reaching the network.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

import httpx2

if TYPE_CHECKING:
    from ._cassette import Cassette

_lock = threading.Lock()
_active: list[Cassette] = []
_originals: dict[type[Any], Any] = {}


def _current() -> Cassette | None:
    return _active[-1] if _active else None


def _sync_transport_for_url(self: httpx2.Client, url: httpx2.URL) -> httpx2.BaseTransport:
    upstream: httpx2.BaseTransport = _originals[httpx2.Client](self, url)
    cassette = _current()
    return upstream if cassette is None else cassette._transport_over(upstream)


def _async_transport_for_url(
    self: httpx2.AsyncClient, url: httpx2.URL
) -> httpx2.AsyncBaseTransport:
    upstream: httpx2.AsyncBaseTransport = _originals[httpx2.AsyncClient](self, url)
    cassette = _current()
    return upstream if cassette is None else cassette._transport_over(upstream)


def _legacy_transport_for_url(self: Any, url: Any) -> Any:
    from ._errors import ConfigError, sdk_transparent

    cassette = _current()
    if cassette is None:
        return _original_legacy(self, url)
    raise sdk_transparent(
        ConfigError(
            "http_client",
            f"{type(self).__module__}.{type(self).__name__}",
            f"a request to {url} inside cassette {cassette.path}",
            "llmreplay records and replays httpx2 clients only; pass "
            "http_client=httpx2.Client(...) (or httpx2.AsyncClient) to the SDK",
        )
    )


def _original_legacy(client: Any, url: Any) -> Any:
    for cls in type(client).__mro__:
        if cls in _originals:
            return _originals[cls](client, url)
    raise RuntimeError("legacy httpx is not patched")  # pragma: no cover - guarded above


_REPLACEMENTS: dict[type[Any], Any] = {
    httpx2.Client: _sync_transport_for_url,
    httpx2.AsyncClient: _async_transport_for_url,
}


def _targets() -> dict[type[Any], Any]:
    targets = dict(_REPLACEMENTS)
    legacy = sys.modules.get("httpx")
    if legacy is not None:  # only when the application already loaded it
        for name in ("Client", "AsyncClient"):
            cls = getattr(legacy, name, None)
            if isinstance(cls, type) and "_transport_for_url" in cls.__dict__:
                targets[cls] = _legacy_transport_for_url
    return targets


def activate(cassette: Cassette) -> None:
    """Route every httpx2 client's requests through ``cassette`` until ``deactivate``."""
    with _lock:
        if not _active:
            for cls, replacement in _targets().items():
                _originals[cls] = cls.__dict__["_transport_for_url"]
                cls._transport_for_url = replacement
        _active.append(cassette)


def deactivate(cassette: Cassette) -> None:
    """End one activation of ``cassette``; the last one restores httpx2 as it was."""
    with _lock:
        for index in range(len(_active) - 1, -1, -1):
            if _active[index] is cassette:
                del _active[index]
                break
        if not _active:
            for cls, original in _originals.items():
                cls._transport_for_url = original
            _originals.clear()


def is_patched() -> bool:
    """Whether any cassette is active (for tests and diagnostics)."""
    return bool(_active)
