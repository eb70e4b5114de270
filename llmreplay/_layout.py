"""Where a project's cassettes live, whatever the current directory: the one rule the
pytest plugin and the ``llmreplay`` command share.

The cassette folder is ``llm_cassette_dir`` (default ``fixtures/cassettes``) under the
project root: the folder of pytest's ini file, else the nearest folder above with
``pyproject.toml``, ``setup.py``, ``setup.cfg`` or ``.git``, else the starting folder.
"""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_CASSETTE_DIR = "fixtures/cassettes"
ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
# pytest's ini files, in its order, with the section that makes each one pytest's.
_INI_FILES = (
    ("pytest.ini", "pytest"),
    ("pyproject.toml", None),
    ("tox.ini", "pytest"),
    ("setup.cfg", "tool:pytest"),
)


def nearest_root(start: Path) -> Path:
    """The nearest folder from ``start`` up holding a project marker, else ``start``."""
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return start


def _ini_setting(path: Path, section: str | None) -> tuple[bool, Any]:
    """Whether ``path`` is pytest's ini file, and its ``llm_cassette_dir`` if set."""
    try:
        if section is None:
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
            pytest_table = table.get("pytest")
            if pytest_table is None:
                return False, None
            return True, pytest_table.get("ini_options", pytest_table).get("llm_cassette_dir")
        parser = configparser.ConfigParser()
        parser.read(path, encoding="utf-8")
        if not parser.has_section(section):
            return False, None
        return True, parser.get(section, "llm_cassette_dir", fallback=None)
    except (OSError, ValueError, configparser.Error):
        return False, None


def project_cassette_dir(start: Path) -> Path:
    """The cassette folder of the project holding ``start`` (see the module docstring)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        for name, section in _INI_FILES:
            path = folder / name
            if path.is_file():
                found, setting = _ini_setting(path, section)
                if found:
                    return folder / (setting or DEFAULT_CASSETTE_DIR)
    return nearest_root(start) / DEFAULT_CASSETTE_DIR
