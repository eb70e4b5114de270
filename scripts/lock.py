"""Refresh the locked environments CI installs: ``.venv/bin/python scripts/lock.py``.

Each lock is a plain requirements file of exact pins (``name==version``) that pip honours as
a constraints file (``pip install -c constraints/dev.txt ...``), so the README's commands and
``.ci/run`` stay plain pip. The locks are made by ``uv pip compile`` (uv is in the ``dev``
extra): it resolves in seconds, writes a universal lock (markers for every platform and
Python >= 3.11 in one file) and keeps the existing pins unless asked to move them.

    .venv/bin/python scripts/lock.py            # re-resolve after pyproject.toml changed
    .venv/bin/python scripts/lock.py --upgrade  # move every pin to the newest allowed

The ranges users install (the runtime dependencies and the extras) stay ranges in
pyproject.toml; only what our tests and CI run is pinned. ``scripts/drift.py`` checks the
newest SDK releases on purpose, each in its own throw-away venv.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints"

# lock file -> what it is compiled from (relative to the repository root)
LOCKS: dict[str, list[str]] = {
    "constraints/dev.txt": ["pyproject.toml", "--extra", "dev"],
    "constraints/openai2.txt": ["pyproject.toml", "constraints/openai2.in"],
    "constraints/anthropic-2.16.txt": ["pyproject.toml", "constraints/anthropic-2.16.in"],
}


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        sys.exit("lock: uv is not installed; it comes with the dev extra (pip install -e '.[dev]')")
    return found


def compile_lock(out: str, sources: list[str], upgrade: bool) -> None:
    command = [uv(), "pip", "compile", *sources, "--universal", "--python-version", "3.11"]
    command += ["--no-header", "--quiet", "--output-file", out]
    if upgrade:
        command.append("--upgrade")
    subprocess.run(command, cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="move every pin to the newest")
    args = parser.parse_args(argv)
    for out, sources in LOCKS.items():
        compile_lock(out, sources, args.upgrade)
        sys.stdout.write(f"lock: wrote {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
