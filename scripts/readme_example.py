"""Run the README's first user example as a new user would, in the current environment
(CI gives it a fresh venv with only ``pytest-llmreplay[openai]`` and pytest installed).

Records the example against the repository's loopback server, stops the server, replays
it offline, and checks what the server saw. Exits non-zero on any failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import start_server  # noqa: E402  (the repository's loopback server)


def first_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    install = text.split("## Install", 1)[1]
    return install.split("```python", 1)[1].split("```", 1)[0]


def run(folder: Path, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    sys.stdout.write(f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}\n")
    if done.returncode != 0:
        raise SystemExit(f"readme example: pytest {' '.join(args)} exited {done.returncode}")
    return done.stdout


def main() -> None:
    server = start_server()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pyproject.toml").write_text("[project]\nname = 'user-project'\n")
        (folder / "test_first.py").write_text(first_example(), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMREPLAY"))}
        recording = {**env, "OPENAI_API_KEY": "sk-readme-example", "OPENAI_BASE_URL": server.url}
        assert "2 passed" in run(folder, "--llm-mode=record", env=recording)
        server.stop()
        seen = len(server.requests)
        replayed = run(folder, env={**env, "OPENAI_BASE_URL": server.url})
        assert "2 passed" in replayed and "2 replayed" in replayed, replayed
        assert seen == 2 and len(server.requests) == 2, server.requests
    sys.stdout.write("readme example: recorded 2, replayed 2 offline\n")


if __name__ == "__main__":
    main()
