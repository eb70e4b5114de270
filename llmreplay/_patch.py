"""Implicit capture: which cassette a request belongs to, and the patch points that ask.

The one httpx2 interception point is ``httpx2.Client._transport_for_url`` and its async
twin: every request of any httpx2 client, whenever it was created and whatever transport it
has, goes through the cassette that ``route()`` names, with the client's own transport kept
as upstream. Adapters for other HTTP stacks (modules named in ``STACKS``) patch their own
library's single send point and ask ``route()`` the same question.

Which cassette (``route``):
1. the innermost cassette active in this thread or asyncio task (a ``ContextVar``: a
   ``with llmreplay.cassette(...)`` block in one thread never captures another thread's
   requests, and tasks inherit the block they were created in);
2. otherwise, when exactly one cassette is active in the whole process, that one (worker
   threads a test starts, e.g. a ``ThreadPoolExecutor``, are captured by the test's cassette);
3. otherwise, when several are active in other threads, the request is refused: it is
   ambiguous, and guessing would record into the wrong file;
4. outside every cassette, the ``Guard`` (when on: the pytest plugin turns it on) refuses
   LLM-shaped requests; anything else passes untouched.

Patches are installed while a cassette is active or a guard is on, reference-counted, and
restored when the last one ends, even after an error.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2

from . import _stacks
from ._errors import RequestRefused, sdk_transparent
from ._transport import CassetteTransport, forwarding

_T = TypeVar("_T", httpx2.BaseTransport, httpx2.AsyncBaseTransport)

if TYPE_CHECKING:
    from ._cassette import Cassette
    from ._guard import Guard

# Adapters for other HTTP stacks: modules ``llmreplay._stacks.<name>`` with ``install()``
# and ``uninstall()``; each imports its library only when it is installed.
STACKS: tuple[str, ...] = ("httpx", "urllib3", "aiohttp")

_lock = threading.Lock()
_context: ContextVar[tuple[Cassette, ...]] = ContextVar("llmreplay_cassettes", default=())
_active: dict[Cassette, int] = {}  # every activation in the process, by cassette
_guards: list[Guard] = []  # the innermost (last) one is in force
_installed = False
_originals: dict[type[Any], Any] = {}
_stack_modules: list[Any] = []
# Origins ("http://127.0.0.1:PORT/") of in-process `llmreplay serve` endpoints (the llm_proxy
# fixture): their own cassettes record what reaches them, so no other cassette does.
_passthrough: tuple[str, ...] = ()


def current() -> Cassette | None:
    """The cassette a request sent now, from this thread or task, belongs to (or None).

    Raises ``RequestRefused`` when this thread has none and several are active elsewhere.
    """
    for cassette in reversed(_context.get()):
        if cassette in _active:
            return cassette
    active = list(_active)
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    names = ", ".join(sorted(str(c.path) for c in active))
    raise sdk_transparent(
        RequestRefused(
            host="",
            path="",
            where=threading.current_thread().name,
            reason=(
                f"this thread has no cassette of its own and {len(active)} are active in "
                f"other threads ({names}), so which one it belongs to is ambiguous"
            ),
            hint=(
                "Open the cassette in the thread that sends the request, or wire the client "
                "explicitly: httpx2.Client(transport=cassette.transport())."
            ),
        )
    )


def route(url: str, *, network: bool | Callable[[], bool] = True) -> Cassette | None:
    """The cassette for a request to ``url`` now; ``None`` lets it pass untouched.

    Raises ``RequestRefused`` (SDK-transparent) when the guard refuses it; a request whose
    transport never reaches the network (``network`` false, or a callable answering false,
    asked only when the guard has to decide: a mock) is not refused, nor one that a cassette
    is already sending upstream through another stack (``forwarding``).
    """
    if _passthrough and url.startswith(_passthrough):
        return None
    if forwarding():  # already captured: this is that request's own upstream send
        return None
    cassette = current()
    if cassette is None and _guards and (network() if callable(network) else network):
        try:
            _guards[-1].check(url)
        except RequestRefused as exc:
            raise sdk_transparent(exc) from None
    return cassette


# -- httpx2 ------------------------------------------------------------------------------


def _captured(upstream: _T, url: httpx2.URL, method: str) -> _T | CassetteTransport:
    """``upstream``, or the routed cassette's transport over it (sync and async alike)."""
    if isinstance(upstream, CassetteTransport):  # wired explicitly to a cassette
        return upstream
    cassette = route(str(url), network=lambda: _reaches_network(upstream, method))
    return upstream if cassette is None else cassette._transport_over(upstream)


def _sync_transport_for_url(self: httpx2.Client, url: httpx2.URL) -> httpx2.BaseTransport:
    upstream: httpx2.BaseTransport = _originals[httpx2.Client](self, url)
    return _captured(upstream, url, "handle_request")


def _async_transport_for_url(
    self: httpx2.AsyncClient, url: httpx2.URL
) -> httpx2.AsyncBaseTransport:
    upstream: httpx2.AsyncBaseTransport = _originals[httpx2.AsyncClient](self, url)
    return _captured(upstream, url, "handle_async_request")


def _reaches_network(upstream: object, method: str) -> bool:
    """Whether a transport sends to the network: not a mock, and not one that vcrpy (the
    llmreplay.vcr bridge's users) has patched to record or replay it."""
    if isinstance(upstream, httpx2.MockTransport):
        return False
    code = getattr(getattr(type(upstream), method, None), "__code__", None)
    filename = str(getattr(code, "co_filename", "")).replace("\\", "/")
    return "/vcr/" not in filename


def _targets() -> dict[type[Any], Any]:
    return {
        httpx2.Client: _sync_transport_for_url,
        httpx2.AsyncClient: _async_transport_for_url,
    }


def _install() -> None:
    global _installed
    if _installed:
        return
    for name in STACKS:
        if not _stacks.available(name):  # never import a library the user does not have
            continue
        # Imported now, not with llmreplay: a library first imported later is covered too.
        module = importlib.import_module(f"llmreplay._stacks.{name}")
        module.install()
        _stack_modules.append(module)
    for cls, replacement in _targets().items():
        _originals[cls] = cls.__dict__["_transport_for_url"]
        cls._transport_for_url = replacement
    _installed = True


def _uninstall() -> None:
    global _installed
    if not _installed or _active or _guards:
        return
    for cls, original in _originals.items():
        cls._transport_for_url = original
    _originals.clear()
    while _stack_modules:
        _stack_modules.pop().uninstall()
    _installed = False


def activate(cassette: Cassette) -> None:
    """Route this thread's (and task's) requests through ``cassette`` until ``deactivate``."""
    _context.set((*_context.get(), cassette))
    with _lock:
        _active[cassette] = _active.get(cassette, 0) + 1
        _install()


def deactivate(cassette: Cassette) -> None:
    """End one activation of ``cassette``; the last activation overall restores the patches."""
    stack = _context.get()
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is cassette:
            _context.set(stack[:index] + stack[index + 1 :])
            break
    with _lock:
        count = _active.get(cassette, 0) - 1
        if count > 0:
            _active[cassette] = count
        else:
            _active.pop(cassette, None)
        _uninstall()


def push_guard(guard: Guard) -> None:
    """Turn the outside-every-cassette guard on until ``pop_guard(guard)``; guards nest
    (a pytest run inside a pytest run), the innermost is in force."""
    with _lock:
        _guards.append(guard)
        _install()


def pop_guard(guard: Guard) -> None:
    """End ``guard``; the last guard and cassette to end restore the patches."""
    with _lock:
        if guard in _guards:
            _guards.remove(guard)
        _uninstall()


def pass_through(origin: str, *, on: bool = True) -> None:
    """Let requests to ``origin`` (an in-process ``llmreplay serve``) pass untouched: the
    endpoint sends them through the cassette they name, so recording them here too would
    record them twice."""
    global _passthrough
    origin = origin.rstrip("/") + "/"
    with _lock:
        rest = tuple(o for o in _passthrough if o != origin)
        _passthrough = (*rest, origin) if on else rest


def guarded() -> bool:
    """Whether a guard is on (nested pytest runs need to know)."""
    return bool(_guards) and _guards[-1].enabled


def is_patched() -> bool:
    """Whether any cassette is active (for tests and diagnostics)."""
    return bool(_active)
