"""Where cassette bytes live: whole-file reads, atomic saves, and a lock for writers.

A save writes a temporary file in the same folder, flushes it to disk and moves it over the
old one with ``os.replace``, so a reader (or a crash) sees the old file or the new one,
never half of either. Writers take an inter-process lock (``flock`` on POSIX,
``msvcrt.locking`` on Windows) around read-merge-write, so parallel workers (threads,
processes, pytest-xdist) each add their interactions and lose none. Lock files live in the
temporary directory, named by a hash of the cassette's absolute path, so they never clutter
the fixtures folder or get committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ._errors import CassetteError


class Storage(Protocol):
    """What a cassette needs from its storage; ``FileStorage`` is the default."""

    def load(self, path: Path) -> bytes | None:
        """The stored bytes, or ``None`` when nothing is stored at ``path``."""

    def save(self, path: Path, data: bytes) -> None:
        """Store ``data`` atomically: readers see the old bytes or the new, never a mix."""

    def lock(self, path: Path) -> contextlib.AbstractContextManager[None]:
        """Exclusive access for a read-merge-write across threads and processes."""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_fd(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after ~10 s; keep waiting
                continue

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


class FileStorage:
    """Cassettes as files on the local disk."""

    def load(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise CassetteError(path, "it is a directory, not a cassette file") from None
        except OSError as exc:
            raise CassetteError(path, f"it cannot be read ({exc.strerror})") from None

    def save(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise CassetteError(path, f"it cannot be written ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def lock(self, path: Path) -> Iterator[None]:
        key = os.path.normcase(os.path.abspath(path))
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        lock_path = Path(tempfile.gettempdir()) / "llmreplay-locks" / f"{digest}.lock"
        with _thread_locks_guard:
            thread_lock = _thread_locks.setdefault(key, threading.Lock())
        with thread_lock:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock_fd(fd)
                try:
                    yield
                finally:
                    _unlock_fd(fd)
            finally:
                os.close(fd)
