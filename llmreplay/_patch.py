"""The one implicit interception point: ``httpx2.Client._transport_for_url`` and its async twin.

While a cassette is active (``with llmreplay.cassette(...)``), every request sent by any
httpx2 client, whenever it was created and whatever transport it has (the SDKs' default
one, an aiohttp-backed one, a mounted proxy), goes through that cassette's transport, with
the client's own transport kept as upstream. Activations nest (the innermost cassette
wins) and are reference-counted: the original methods are restored when the last one ends,
even after an error.
"""

from __future__ import annotations

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


_REPLACEMENTS: dict[type[Any], Any] = {
    httpx2.Client: _sync_transport_for_url,
    httpx2.AsyncClient: _async_transport_for_url,
}


def activate(cassette: Cassette) -> None:
    """Route every httpx2 client's requests through ``cassette`` until ``deactivate``."""
    with _lock:
        if not _active:
            for cls, replacement in _REPLACEMENTS.items():
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
