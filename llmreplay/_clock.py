"""The virtual clock: while a cassette with faults is active, a wait costs no real time.

A fault advertises what a provider would (``retry-after: 20`` on a 429) and the SDK, or the
application's own retry loop, waits that long. Inside the cassette's block (its thread, and
the asyncio tasks and ``contextvars``-copying threads started from it) the waits are taken
on a virtual clock instead: ``time.sleep``, ``asyncio.sleep`` and anyio's ``sleep`` (what
openai and anthropic call, and tenacity and backoff underneath) return at once, each wait
is logged, and ``time.time``/``time.monotonic``/``time.perf_counter`` (and their ``_ns``
twins) read as advanced by every wait so far, so deadline logic sees the wait too.

Elsewhere in the process nothing changes: other threads, and the event loop's own
scheduling (``loop.time()`` stays real, so timeouts of requests in flight in other tasks
never fire early), read real time and sleep for real. Not moved: ``datetime.now()``,
functions bound before the cassette started (``from time import monotonic`` at import),
trio's sleep. A cassette opts out with ``virtual_clock=False``.

No time-travel library fits: time-machine and freezegun move the clock of the whole
process (the event loop's, pytest's, other threads') and neither skips a sleep, which is
the point here; the few functions below are patched only while a clock is in use.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import math
import threading
import time
from contextvars import ContextVar
from typing import Any, TypeVar

_T = TypeVar("_T")

# The real functions, bound before anything is patched.
real_sleep = time.sleep
real_time = time.time
real_time_ns = time.time_ns
real_monotonic = time.monotonic
real_monotonic_ns = time.monotonic_ns
real_perf_counter = time.perf_counter
real_perf_counter_ns = time.perf_counter_ns
real_asleep = asyncio.sleep


# Sleeps shorter than this are real: a poller's ``sleep(0.01)`` costs what it costs rather
# than spinning (a skipped sleep returns at once, so a polling loop would run flat out and
# push every clock in its context hours ahead). No retry back-off is that short: the SDKs'
# first wait is 0.375 s or more, and the verdict asks for MIN_BACKOFF (0.1 s) anyway.
REAL_BELOW = 0.1


def owner() -> int:
    """Who is waiting: the running asyncio task, else the thread."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        task = None
    return id(task) if task is not None else threading.get_ident()


class Clock:
    """One cassette's virtual time: ``offset`` seconds ahead of the real clocks; ``slept``
    of it asked for by the code (waits), the rest spent by faults (``Latency``), and
    ``slept_by`` the same per waiting task or thread (``owner()``)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept = 0.0
        self.waits: list[float] = []
        self.slept_by: dict[int, float] = {}
        self._lock = threading.Lock()

    def advance(self, seconds: float, *, wait: bool = True) -> None:
        who = owner()
        with self._lock:
            self.offset += seconds
            if wait:
                self.slept += seconds
                self.waits.append(seconds)
                self.slept_by[who] = self.slept_by.get(who, 0.0) + seconds

    def slept_of(self, who: int) -> float:
        with self._lock:
            return self.slept_by.get(who, 0.0)


_clocks: ContextVar[tuple[Clock, ...]] = ContextVar("llmreplay_clocks", default=())
_lock = threading.Lock()
_users = 0
_saved: list[tuple[Any, str, Any]] = []


def current() -> Clock | None:
    """The clock of the innermost virtual-clock cassette of this thread or task, if any."""
    clocks = _clocks.get()
    return clocks[-1] if clocks else None


def _advance(seconds: float, *, wait: bool = True) -> bool:
    """Take ``seconds`` on every clock of this context (an inner cassette's wait is the
    outer one's too, so time never steps back when the inner one ends); False: none."""
    clocks = _clocks.get()
    for clock in clocks:
        clock.advance(seconds, wait=wait)
    return bool(clocks)


def _taking(seconds: float) -> bool:
    """Whether a sleep of ``seconds`` is virtual here: a clock is in use, and the sleep is
    ``REAL_BELOW`` or longer (0, inf and NaN: as the real ones do)."""
    return bool(_clocks.get()) and REAL_BELOW <= seconds < math.inf


def sleep(seconds: float) -> None:
    if not _taking(seconds):
        real_sleep(seconds)
        return
    _advance(seconds)
    real_sleep(0)  # still a point where other threads run


async def asleep(delay: float, result: _T = None) -> _T:  # type: ignore[assignment]
    if not _taking(delay):
        return await real_asleep(delay, result)
    _advance(delay)
    return await real_asleep(0, result)


async def _anyio_sleep(cls: Any, delay: float) -> None:
    await asleep(delay)


def pause(seconds: float) -> None:
    """A fault's own wait (``Latency``): virtual where the clock is, never counted as the
    code's wait."""
    if not _advance(seconds, wait=False):
        real_sleep(seconds)


async def apause(seconds: float) -> None:
    if not _advance(seconds, wait=False):
        await real_asleep(seconds)
    else:
        await real_asleep(0)


def _offset() -> float:
    # The outermost clock has taken every wait of this context since it started: reading
    # it, entering or leaving an inner cassette never moves time back.
    clocks = _clocks.get()
    return clocks[0].offset if clocks else 0.0


def _time() -> float:
    return real_time() + _offset()


def _time_ns() -> int:
    return real_time_ns() + int(_offset() * 1e9)


def _monotonic() -> float:
    return real_monotonic() + _offset()


def _monotonic_ns() -> int:
    return real_monotonic_ns() + int(_offset() * 1e9)


def _perf_counter() -> float:
    return real_perf_counter() + _offset()


def _perf_counter_ns() -> int:
    return real_perf_counter_ns() + int(_offset() * 1e9)


def _loop_time(self: asyncio.AbstractEventLoop) -> float:
    return real_monotonic()


def _patches() -> list[tuple[Any, str, Any]]:
    patches: list[tuple[Any, str, Any]] = [
        (time, "sleep", sleep),
        (time, "time", _time),
        (time, "time_ns", _time_ns),
        (time, "monotonic", _monotonic),
        (time, "monotonic_ns", _monotonic_ns),
        (time, "perf_counter", _perf_counter),
        (time, "perf_counter_ns", _perf_counter_ns),
        (asyncio, "sleep", asleep),
        (asyncio.tasks, "sleep", asleep),
        (asyncio.base_events.BaseEventLoop, "time", _loop_time),
    ]
    try:  # anyio's asyncio backend binds asyncio.sleep at import: patch its own sleep
        from anyio._backends._asyncio import AsyncIOBackend
    except ImportError:  # pragma: no cover - anyio comes with httpx2
        return patches
    patches.append((AsyncIOBackend, "sleep", classmethod(_anyio_sleep)))
    return patches


def start(clock: Clock) -> None:
    """Take this thread's (and its tasks') waits on ``clock`` until ``stop(clock)``."""
    global _users
    _clocks.set((*_clocks.get(), clock))
    with _lock:
        _users += 1
        if _users == 1:
            for owner, name, replacement in _patches():
                _saved.append((owner, name, owner.__dict__[name]))
                setattr(owner, name, replacement)


def stop(clock: Clock) -> None:
    """End one ``start(clock)``; the last one restores the real functions."""
    global _users
    clocks = _clocks.get()
    for index in range(len(clocks) - 1, -1, -1):
        if clocks[index] is clock:
            _clocks.set(clocks[:index] + clocks[index + 1 :])
            break
    with _lock:
        _users -= 1
        if _users == 0:
            while _saved:
                owner, name, original = _saved.pop()
                setattr(owner, name, original)
