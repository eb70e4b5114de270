"""The decision core, with no I/O: given the mode, a scheduled fault and what the cassette
holds for a request's key, say what to do. The transport then does it.

| mode    | fault scheduled | recorded & unplayed | exhausted / none        |
|---------|-----------------|---------------------|-------------------------|
| any     | InjectFault     |                     |                         |
| replay  |                 | Replay              | Miss                    |
| auto    |                 | Replay              | Forward(store=True)     |
| record  |                 | Forward(store=True) (never looked up)         |
| live    |                 | Forward(store=False) (never looked up)        |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._format import Interaction
from ._modes import Mode


@dataclass(frozen=True, slots=True)
class Hit:
    """The cassette has an unplayed recording (or a repeat) for the key."""

    interaction: Interaction


@dataclass(frozen=True, slots=True)
class Exhausted:
    """Every recording for the key was already played, and repeats are not allowed."""

    played: int


@dataclass(frozen=True, slots=True)
class NotRecorded:
    """Nothing is recorded under the key."""


Found = Hit | Exhausted | NotRecorded


@dataclass(frozen=True, slots=True)
class Replay:
    interaction: Interaction


@dataclass(frozen=True, slots=True)
class Forward:
    store: bool


@dataclass(frozen=True, slots=True)
class Miss:
    reason: str


@dataclass(frozen=True, slots=True)
class InjectFault:
    fault: object


Action = Replay | Forward | Miss | InjectFault


def decide(mode: Mode, fault: object | None, lookup: Callable[[], Found]) -> Action:
    """What to do with one request. ``lookup`` advances the replay cursor, so it is called
    only when the mode plays recordings and no fault takes the request first."""
    if fault is not None:
        return InjectFault(fault)
    if mode is Mode.LIVE:
        return Forward(store=False)
    if mode is Mode.RECORD:
        return Forward(store=True)
    found = lookup()
    if isinstance(found, Hit):
        return Replay(found.interaction)
    if mode is Mode.AUTO:
        return Forward(store=True)
    if isinstance(found, Exhausted):
        return Miss(
            f"all {found.played} recorded response(s) for this request were already played "
            "(pass allow_repeats=True to repeat the last one)"
        )
    return Miss("nothing recorded matches this request")
