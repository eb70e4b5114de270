"""Modes: what a cassette does on a hit, on a miss, and whether it writes.

| mode     | on a hit             | on a miss                 | writes               |
|----------|----------------------|---------------------------|----------------------|
| live     | -                    | upstream                  | nothing              |
| record   | upstream (re-record) | upstream                  | every interaction    |
| replay   | cassette             | CassetteMiss, no network  | nothing              |
| auto     | cassette             | upstream, then stored     | new interactions     |
| once     | as replay when the file exists, else as record                        |
"""

from __future__ import annotations

from enum import StrEnum

from ._errors import ConfigError


class Mode(StrEnum):
    """A cassette mode. ``Mode.parse`` is the one place a mode string is read."""

    LIVE = "live"
    RECORD = "record"
    REPLAY = "replay"
    AUTO = "auto"
    ONCE = "once"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | Mode, *, source: str = "mode=") -> Mode:
        """Read a mode, naming ``source`` in the error when it is not one.

        >>> Mode.parse(" Auto ")
        <Mode.AUTO: 'auto'>
        """
        if isinstance(value, Mode):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        expected = "expected one of: " + ", ".join(m.value for m in cls)
        raise ConfigError("mode", value, source, expected)

    def resolve(self, exists: bool) -> Mode:
        """The mode a cassette runs in: ``once`` is ``replay`` for an existing file and
        ``record`` for a new one; every other mode is itself."""
        if self is Mode.ONCE:
            return Mode.REPLAY if exists else Mode.RECORD
        return self

    @property
    def reads(self) -> bool:
        """Whether recordings are played back in this mode."""
        return self in (Mode.REPLAY, Mode.AUTO)

    @property
    def writes(self) -> bool:
        """Whether new interactions are stored in this mode."""
        return self in (Mode.RECORD, Mode.AUTO)
