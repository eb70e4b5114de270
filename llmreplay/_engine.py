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
from typing import NamedTuple

from ._format import Interaction
from ._modes import Mode

# Results and actions are named tuples: immutable, and built at C speed on the replay path.


class Hit(NamedTuple):
    """The cassette has an unplayed recording (or a repeat) for the key."""

    interaction: Interaction


class Exhausted(NamedTuple):
    """Every recording for the key was already played, and repeats are not allowed."""

    played: int


class NotRecorded(NamedTuple):
    """Nothing is recorded under the key."""


Found = Hit | Exhausted | NotRecorded


class Replay(NamedTuple):
    interaction: Interaction


class Forward(NamedTuple):
    store: bool


class Miss(NamedTuple):
    reason: str


class InjectFault(NamedTuple):
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
