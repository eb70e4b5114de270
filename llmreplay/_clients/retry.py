"""Retry policy of the client layer: which failures to retry, and how long to wait.

Pure functions and a small policy object; the sleeping itself is injected by the caller, so
tests never sleep. Terminal (raised at once as ``InvalidRequestError``): 400, 401, 403, 404,
422 and other 4xx except 408/409/429. Non-terminal (retried, then ``NonTerminalError``):
rate limits, timeouts, connection errors, 408, 409, 5xx, and ``NonTerminalError`` raised by a
custom client.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass
class RetryPolicy:
    """Exponential backoff with a cap and jitter, honouring ``Retry-After``.

    The wait before attempt ``n + 1`` is ``waiting_time * backoff_factor ** (n - 1)``, capped
    at ``max_backoff``, plus up to ``jitter`` of itself at random; a longer ``Retry-After``
    from the server wins (still capped). ``max_total_wait`` (seconds, ``None`` for no
    limit) bounds the waits of one call together: a wait that would pass it is not taken.
    """

    max_attempts: int = 5
    waiting_time: float = 1.0
    backoff_factor: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    max_total_wait: float | None = None

    def allows(self, waited: float, wait: float) -> bool:
        """Whether one more ``wait`` fits the overall budget, ``waited`` being spent."""
        return self.max_total_wait is None or waited + wait <= self.max_total_wait

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.waiting_time * self.backoff_factor ** (attempt - 1))
        wait = base + base * self.jitter * self.rng.random()
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_backoff)


def status_of(error: BaseException) -> int | None:
    """The HTTP status behind an SDK error, if any."""
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def is_terminal(error: BaseException) -> bool:
    """Whether retrying ``error`` cannot help."""
    status = status_of(error)
    return status is not None and 400 <= status < 500 and status not in RETRYABLE_STATUS


def is_retryable(error: BaseException) -> bool:
    """Whether ``error`` is worth another attempt: an SDK connection/timeout error, a
    retryable status, a raw httpx2 transport error, or ``NonTerminalError`` (which a custom
    client's ``_raw_model_call`` raises for a failure worth retrying)."""
    import httpx2

    from .._errors import NonTerminalError

    if isinstance(error, NonTerminalError):
        return True
    status = status_of(error)
    if status is not None:
        return status >= 500 or status in RETRYABLE_STATUS
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"APIConnectionError", "APITimeoutError"}) or isinstance(
        error, httpx2.TransportError
    )


def retry_after(error: BaseException) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms`` or ``retry-after``), if any."""
    response: Any = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000.0
        value = headers.get("retry-after")
        if value:
            try:
                return float(value)
            except ValueError:
                from datetime import UTC, datetime

                when = parsedate_to_datetime(value)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
    return None


def describe(error: BaseException) -> str:
    """``error``'s class, and its HTTP status if any (for the retry log lines)."""
    status = status_of(error)
    return f"{type(error).__name__}, status {status}" if status else type(error).__name__
