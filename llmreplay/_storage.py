"""Where cassette bytes live: whole-file reads, atomic saves, and a lock for writers.

A save writes a temporary file on the same file system, flushes it to disk and moves it
over the old one with ``os.replace``, so a reader (or a crash) sees the old file or the
new one, never half of either. Temporary files live in a hidden ``.llmreplay/`` folder
beside the cassette whose own ``.gitignore`` ignores everything, so a writer killed
mid-save leaves nothing ``git add`` would pick up or a reader could take for a cassette;
the next save of that cassette removes what a dead writer left (a live writer holds a lock
on its temporary file). The saved file gets the permissions the umask gives any new file
(``0644`` under umask ``022``). A save that fails (disk full, read-only folder) raises a
``CassetteError`` naming the cassette and saying the file on disk was left as it was.

Writers take an inter-process lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows)
around read-merge-write, so parallel workers (threads, processes, pytest-xdist) each add
their interactions and lose none. Lock files live in the temporary directory, named by a
hash of the cassette's absolute path, so they never clutter the fixtures folder or get
committed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import tempfile
import threading
import time
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

    def _claim(fd: int) -> bool:
        return True  # an open file cannot be deleted on Windows: that is the claim

    def _abandoned(path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime > 3600
        except OSError:
            return False

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _claim(fd: int) -> bool:
        """Lock a temporary file for as long as its writer lives (the kernel drops the lock
        when the process dies, even by SIGKILL); ``False`` if a cleaner got it first."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return os.fstat(fd).st_nlink > 0

    def _abandoned(path: Path) -> bool:
        """Whether no living writer holds ``path`` (a temporary file)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # also drops the lock, if taken
        return True


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


# The hidden folder beside cassettes for what must never be committed: temporary files of
# saves in progress here, the pytest plugin's played list too (pytest_plugin.PLAYED_DIR).
TMP_DIR = ".llmreplay"
_TMP_GITIGNORE = "# written by llmreplay: never commit this folder\n*\n"
_umask_guard = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _umask_guard:  # elsewhere: set and restore at once, under a lock
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def temporary_files(folder: Path, name: str) -> list[Path]:
    """Temporary files that saves of cassette ``name`` left in ``folder`` (including the
    ``.name.*.tmp`` files that earlier versions wrote beside the cassette)."""
    found = list((folder / TMP_DIR).glob(f"{glob_escape(name)}.*.tmp"))
    return found + list(folder.glob(f".{glob_escape(name)}.*.tmp"))


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _save_error(path: Path, exc: OSError) -> CassetteError:
    existed = path.exists()
    kept = (
        "the file on disk is unchanged (its previous version is intact)"
        if existed
        else "no file was written"
    )
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", None):
        return CassetteError(
            path,
            f"it could not be saved: no space left on the device ({reason}); {kept}, and "
            "what this run recorded is not in it",
            hint="Free some disk space and run again to record it.",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CassetteError(
            path,
            f"it could not be saved: its folder is not writable ({reason}); {kept}, and "
            "what this run recorded is not in it",
            hint=f"Make {path.parent} writable, or keep cassettes in a writable folder "
            "(cassette path, or llm_cassette_dir in pytest).",
        )
    return CassetteError(
        path,
        f"it could not be saved ({reason}); {kept}, and what this run recorded is not in it",
        hint="Check that the path is a folder you can write to, then run again.",
    )


class FileStorage:
    """Cassettes as files on the local disk."""

    def load(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise CassetteError(
                path,
                "it is a directory, not a cassette file",
                hint="Name a cassette file (llmreplay ls DIR lists the ones in a folder).",
            ) from None
        except OSError as exc:
            raise CassetteError(path, f"it cannot be read ({exc.strerror})") from None

    def save(self, path: Path, data: bytes) -> None:
        try:
            fd, tmp = self._temporary(path)
        except OSError as exc:
            raise _save_error(path, exc) from None
        try:
            try:
                os.chmod(tmp, 0o666 & ~_umask())
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                if sys.platform == "win32":  # pragma: no cover - an open file cannot move
                    os.close(fd)
                    fd = -1
                os.replace(tmp, path)
            finally:
                if fd >= 0:
                    os.close(fd)  # after the move on POSIX: the claim lasts until then
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _save_error(path, exc) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _temporary(path: Path) -> tuple[int, str]:
        """A fresh temporary file for ``path``, claimed; removes what dead writers left."""
        folder = path.parent / TMP_DIR
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text(_TMP_GITIGNORE, encoding="utf-8")
        for stale in temporary_files(path.parent, path.name):
            if _abandoned(stale):
                with contextlib.suppress(OSError):
                    stale.unlink()
        while True:
            fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=folder)
            if _claim(fd):
                return fd, tmp
            os.close(fd)  # a cleaner took it between creation and claim: take another

    @contextlib.contextmanager
    def lock(self, path: Path) -> Iterator[None]:
        key = os.path.normcase(os.path.abspath(path))
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        lock_path = Path(tempfile.gettempdir()) / "llmreplay-locks" / f"{digest}.lock"
        with _thread_locks_guard:
            thread_lock = _thread_locks.setdefault(key, threading.Lock())
        with thread_lock:
            try:
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise CassetteError(
                    path,
                    f"its lock file {lock_path} cannot be opened ({exc.strerror}); "
                    "nothing was read or written",
                    hint=f"Make {lock_path.parent} writable, or set TMPDIR to a folder "
                    "you can write to.",
                ) from None
            try:
                _lock_fd(fd)
                try:
                    yield
                finally:
                    _unlock_fd(fd)
            finally:
                os.close(fd)
