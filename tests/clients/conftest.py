"""Client-layer tests start from a clean slate: no forced settings, no shared clients.

They call the loopback server outside any cassette on purpose (the layer's own cache,
retries and hooks are what they test), so the plugin's outside-every-cassette guard is
turned off for them by a disabled guard on top; cassettes opened in a test still apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import llmreplay._clients
from llmreplay import _patch
from llmreplay._guard import Guard


@pytest.fixture(autouse=True)
def _fresh_client_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no stray config.ini / pyproject.toml from the repo
    # A key for the loopback server (the layer sends no placeholder); keyless tests unset it.
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-for-loopback")
    llmreplay._clients.reset()
    unsealed = Guard(enabled=False, mode="live", hint="")
    _patch.push_guard(unsealed)
    try:
        yield
    finally:
        _patch.pop_guard(unsealed)
        llmreplay._clients.reset()


class FakeClock:
    """Records the waits the code asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
