"""Single-flight locks for the client-layer cache, and one save at a time per cache file.

Without them, N threads sending the same request at once all miss the cache, all go
upstream and all record, and concurrent saves of one file each merge the others' pending
interactions again: the file grows duplicates. With them, the first caller of a request
sends it while the others wait, then hit the cache; saves of one file are serialised.

Locks are process-wide, keyed by the cache file (resolved) and the request, so two clients
sharing a cache file share them too; an entry lives only while someone holds or waits on it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

_guard = threading.Lock()
_sync: dict[tuple[str, str], list[Any]] = {}  # key -> [lock, users]
_async: dict[tuple[str, str], list[Any]] = {}
_saves: dict[str, threading.Lock] = {}


def _name(path: Path) -> str:
    return str(path.resolve())


@contextmanager
def single_flight(path: Path, key: str) -> Iterator[None]:
    """Hold the lock for request ``key`` of the cache at ``path`` (threads)."""
    slot = (_name(path), key)
    with _guard:
        entry = _sync.setdefault(slot, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _sync[slot]


@asynccontextmanager
async def async_single_flight(path: Path, key: str) -> AsyncIterator[None]:
    """Hold the lock for request ``key`` of the cache at ``path`` (tasks of one loop)."""
    import anyio

    slot = (_name(path), key)
    with _guard:
        entry = _async.setdefault(slot, [anyio.Lock(), 0])
        entry[1] += 1
    try:
        async with entry[0]:
            yield
    finally:
        with _guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _async[slot]


def save_lock(path: Path) -> threading.Lock:
    """The lock serialising saves of the cache file at ``path`` within this process."""
    with _guard:
        return _saves.setdefault(_name(path), threading.Lock())
