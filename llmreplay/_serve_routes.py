"""``llmreplay serve``'s routing: which upstream URL a request path means, which cassette
file a name means inside ``--dir`` (never outside it), and the error answers llmreplay
gives itself instead of forwarding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote

import httpx2

from ._errors import ConfigError

CASSETTE_HEADER = "x-llmreplay-cassette"
MISS_STATUS = 599

# The route name in the path -> the provider's base URL. ``{resource}`` takes the next path
# segment (Azure: one host per resource).
PRESETS: dict[str, str] = {
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
    "azure": "https://{resource}.openai.azure.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "groq": "https://api.groq.com",
    "mistral": "https://api.mistral.ai",
    "openrouter": "https://openrouter.ai",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RESOURCE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_ROUTE = re.compile(r"[a-z0-9][a-z0-9_-]*")


def parse_upstreams(values: list[str], source: str = "--upstream") -> dict[str, str]:
    """``["NAME=URL", ...]`` as a route table (presets first, these replace or add)."""
    routes = dict(PRESETS)
    for value in values:
        name, sep, url = value.partition("=")
        name = name.strip().lower()
        parsed = httpx2.URL(url.strip()) if sep else None
        if not sep or not _ROUTE.fullmatch(name) or parsed is None or not parsed.host:
            raise ConfigError(
                "upstream",
                value,
                source,
                "expected NAME=URL with a lower-case NAME, e.g. local=http://127.0.0.1:11434",
            )
        if parsed.scheme not in ("http", "https"):
            raise ConfigError("upstream", value, source, "the URL must be http:// or https://")
        routes[name] = url.strip().rstrip("/")
    return routes


def cassette_file(
    directory: Path, name: str, source: str = f"the {CASSETTE_HEADER} header"
) -> Path:
    """The file ``name`` means inside ``directory``; a name that would leave it is refused.

    >>> cassette_file(Path("cassettes"), "billing/summary").as_posix()
    'cassettes/billing/summary.msgpack'
    """
    parts = name.split("/")
    if not all(_NAME.fullmatch(part) for part in parts):  # no "", ".", "..", "\\" or ":"
        raise ConfigError(
            "cassette name",
            name,
            source,
            "use letters, digits, '.', '_', '-' and '/' between folder names; it must stay "
            f"inside {directory} (no '..', no absolute path)",
        )
    path = directory.joinpath(*parts)
    if not path.suffix:
        path = path.with_suffix(".msgpack")
    root = directory.resolve()
    if not path.resolve().is_relative_to(root):  # a symlink pointing out of the folder
        raise ConfigError("cassette name", name, source, f"it resolves outside {directory}")
    return path


class Answer(Exception):
    """llmreplay answers the request itself (an error response), nothing went upstream."""

    def __init__(self, status: int, kind: str, error: Exception | str) -> None:
        self.status = status
        self.kind = kind
        self.error = error
        super().__init__(str(error))

    def body(self) -> bytes:
        fields = {
            key: value
            for key, value in getattr(self.error, "__dict__", {}).items()
            if isinstance(value, str | int | float | bool | None) and not key.startswith("_")
        }
        error = {"message": str(self.error), "type": f"llmreplay_{self.kind}", "code": self.kind}
        payload = {"type": "error", "error": error, "llmreplay": fields}
        return json.dumps(payload).encode()


def target(routes: Mapping[str, str], raw_path: str, query: bytes) -> tuple[str | None, str]:
    """``(cassette name or None, upstream URL)`` for a request path and query.

    >>> target(PRESETS, "/_c/billing/openai/v1/models", b"")
    ('billing', 'https://api.openai.com/v1/models')
    """
    segments = raw_path.split("/")[1:]
    name = None
    if len(segments) >= 2 and segments[0] == "_c":
        name = unquote(segments[1])
        segments = segments[2:]
    route = segments[0].lower() if segments else ""
    base = routes.get(route)
    if base is None:
        raise Answer(
            404,
            "no-route",
            ConfigError(
                "upstream",
                route or raw_path,
                f"the request path {raw_path}",
                "start the path with one of: /"
                + ", /".join(sorted(routes))
                + " (add others with --upstream NAME=URL)",
            ),
        )
    rest = segments[1:]
    if "{resource}" in base:
        resource = rest[0].lower() if rest else ""
        if not _RESOURCE.fullmatch(resource):
            raise Answer(
                404,
                "no-route",
                ConfigError(
                    "resource",
                    resource,
                    f"the request path {raw_path}",
                    f"use /{route}/<resource>/..., the resource name of the endpoint",
                ),
            )
        base, rest = base.replace("{resource}", resource), rest[1:]
    url = base + "/" + "/".join(rest)
    if query:
        url += "?" + query.decode("latin-1")
    return name, url
