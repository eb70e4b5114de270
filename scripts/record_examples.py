"""Re-record the example cassettes against the deterministic loopback server.

The shipped example cassettes were made this way, so the example suite needs no API key.
Usage: ``python scripts/record_examples.py`` (from the repository root).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import start_server  # noqa: E402


class _LoopbackUpstream:
    """Points the SDKs at the server, after the root conftest has cleaned the environment."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    @pytest.fixture(autouse=True)
    def _loopback_upstream(self, _clean_environ: None, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", self.origin + "/v1")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", self.origin)
        # The loopback server takes any key; these never reach a cassette anyway.
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-only")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-loopback")


def main() -> int:
    server = start_server()
    try:
        folder = ROOT / "fixtures" / "cassettes" / "examples"
        for old in folder.rglob("*.msgpack"):
            old.unlink()
        os.chdir(ROOT)
        return int(
            pytest.main(["examples", "--llm-mode=record", "-q"], [_LoopbackUpstream(server.origin)])
        )
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
