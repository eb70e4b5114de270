"""Cassette file names: one function for the plugin, ``migrate`` and ``import-vcr``, so a
test's cassette is found under the name any of them wrote."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePath

MAX_NAME = 120
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def safe_name(name: str) -> str:
    """A file name for ``name`` on every OS; a short hash is added whenever making it safe
    lost information, so two names never map to one file."""
    plain, params = name, ""
    if name.endswith("]") and "[" in name:  # test_x[param] -> test_x-param
        head, _, params = name[:-1].partition("[")
        plain = f"{head}-{params}"
    cleaned = re.sub(r"[^A-Za-z0-9._=+-]+", "-", plain).strip("-.") or "test"
    digest = hashlib.sha256(name.encode()).hexdigest()
    # Parameters differing only in case would share a file on macOS and Windows.
    if cleaned != plain or params != params.lower() or _WINDOWS_RESERVED.match(cleaned):
        cleaned = f"{cleaned}-{digest[:8]}"
    if len(cleaned) > MAX_NAME:
        cleaned = f"{cleaned[: MAX_NAME - 13]}-{digest[:12]}"
    return cleaned


def cassette_file(folder: Path, parts: PurePath | tuple[str, ...], stem: str) -> Path:
    """``folder/<safe parts>/<safe stem>.msgpack``: where a cassette named ``stem`` (a
    test's ``Class.test[param]`` name, or a vcrpy file's stem) lives below ``folder``."""
    names = parts.parts if isinstance(parts, PurePath) else parts
    return folder.joinpath(*map(safe_name, names)) / (safe_name(stem) + ".msgpack")
