"""Fault kinds and schedules for ``cassette(faults=...)``, the ``llm_faults`` fixture and
the ``llmreplay`` marker. See ``llmreplay._faults`` for how each behaves.

>>> from llmreplay.faults import PASS, RateLimit, ServerError, sequence
>>> faults = [RateLimit(), ServerError(503), PASS]
"""

from __future__ import annotations

from ._faults import (
    PASS,
    Attempt,
    BadRequest,
    ConnectionRefused,
    ConnectionReset,
    ConnectTimeout,
    CutStream,
    Fault,
    HTTPFault,
    Injector,
    Latency,
    Malformed,
    Overloaded,
    ProtocolError,
    RateLimit,
    ReadTimeout,
    RequestTimeout,
    Schedule,
    ServerError,
    TransportFault,
    Unauthorized,
    Verdict,
    chance,
    every,
    first,
    sequence,
)

__all__ = [
    "PASS",
    "Attempt",
    "BadRequest",
    "ConnectTimeout",
    "ConnectionRefused",
    "ConnectionReset",
    "CutStream",
    "Fault",
    "HTTPFault",
    "Injector",
    "Latency",
    "Malformed",
    "Overloaded",
    "ProtocolError",
    "RateLimit",
    "ReadTimeout",
    "RequestTimeout",
    "Schedule",
    "ServerError",
    "TransportFault",
    "Unauthorized",
    "Verdict",
    "chance",
    "every",
    "first",
    "sequence",
]
