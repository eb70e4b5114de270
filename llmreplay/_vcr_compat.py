"""What a vcrpy / pytest-recording user already wrote, read in llmreplay's terms.

- ``cassette_options``: vcrpy's ``use_cassette`` options (from ``@pytest.mark.vcr`` or a
  ``vcr_config`` fixture) mapped to ``llmreplay.cassette()`` options, with a clear error
  naming our equivalent for what has none.
- ``VcrRequest``: a recorded or live request as vcrpy's ``Request`` looks (``method``,
  ``uri``, ``host``, ``port``, ``path``, ``query``, ``body``, ``headers``), for plain
  function matchers ``f(r1, r2)`` and ``before_record_request``.
- ``CassetteView``: the test's cassette as vcrpy's ``Cassette`` looks (``requests``,
  ``responses``, ``data``, ``play_count``, ``play_counts``, ``all_played``,
  ``record_mode``), for suites that read it through the ``vcr`` fixture.
- ``VCRShim``: what ``pytest_recording_configure(config, vcr)`` hooks receive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ._errors import ConfigError
from ._format import Interaction

if TYPE_CHECKING:
    from ._cassette import Cassette
    from ._match import RequestView

# vcrpy record modes -> (our mode, rewrite the test's own cassette)
RECORD_MODES = {
    "none": "replay",
    "once": "once",
    "new_episodes": "auto",
    "all": "record",
    "rewrite": "record",
}
_MATCH_NAMES = {
    "method": "method",
    "scheme": "scheme",
    "host": "host",
    "port": "port",
    "path": "path",
    "query": "query",
    "body": "body",
    "raw_body": "body",
    "uri": "uri",
    "url": "uri",
    "headers": "headers",
}
_RENAMED = {
    "filter_headers": "filter_headers",
    "filter_query_parameters": "filter_query",
    "filter_post_data_parameters": "filter_post_data",
    "ignore_hosts": "ignore_hosts",
    "ignore_localhost": "ignore_localhost",
    "allow_playback_repeats": "allow_repeats",
}
# Accepted with no effect at run time (our format, layout and decoding rules stand in for
# them; migrate reads the files they named); the plugin's summary names them.
IGNORED = _IGNORED = {
    "serializer": "cassettes are msgpack files (llmreplay import-vcr converts YAML/JSON)",
    "decode_compressed_response": (
        "bodies are stored as sent and the client decodes them, as under vcrpy; the `vcr` "
        "fixture reads them decoded"
    ),
    "path_transformer": "the plugin names cassette files itself",
    "cassette_library_dir": "use the llm_cassette_dir ini setting or vcr_cassette_dir",
    "persister": "cassettes are saved atomically by llmreplay",
    "func_path_generator": "the plugin names cassette files itself",
    "register_persister": (
        "cassettes are msgpack files llmreplay saves itself; the persister's store is "
        "not read (llmreplay migrate says how to move its recordings)"
    ),
}
# vcrpy's match_on when a cassette names none (vcr.config.VCR.__init__).
VCR_DEFAULT_MATCH_ON = ("method", "scheme", "host", "port", "path", "query")
# Real vcrpy options llmreplay refuses, each with what to do instead.
_REFUSED = {
    "custom_patches": (
        "it patches further HTTP clients for vcrpy; llmreplay captures httpx2, httpx, "
        "aiohttp, requests and urllib3 itself: remove the option (what it patched is "
        "captured) or, for another client, send through one of those"
    ),
    "skip_patchers": (
        "llmreplay captures its stacks itself, in one place per stack: remove the option; "
        "for traffic to leave uncaptured, use ignore_hosts"
    ),
    "inject_cassette": (
        "the test asks for the cassette instead: the `vcr` fixture (a view of it), or "
        "`llm_cassette`; remove the option"
    ),
    "drop_unused_requests": (
        "`llmreplay prune` removes the interactions the last run did not play; remove the option"
    ),
    "filter_sensitive_data": (
        "llmreplay scrubs credentials itself, and filter_headers / filter_query_parameters "
        "/ filter_post_data_parameters or a before_record_response hook replace other "
        "values: move the replacements there"
    ),
    "filter_nested_post_data_parameters": (
        "filter_post_data_parameters names top-level fields; for nested ones use a "
        "before_record_request hook"
    ),
    "before_save_interaction": "use before_record_response (and before_record_request)",
    "after_load_interaction": (
        "a recording is played as it was saved; to match what varies, use "
        "@pytest.mark.llmreplay(normalise=[...])"
    ),
}


def cassette_options(
    options: dict[str, Any],
    source: str,
    matchers: dict[str, Callable[..., Any]] | None = None,
    ignored: set[str] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """vcrpy options -> (llmreplay cassette options, our mode or None). The names of the
    options that have no effect here (``_IGNORED``) are added to ``ignored``, for the
    plugin's summary line."""
    matchers = matchers or {}
    out: dict[str, Any] = {}
    mode = None
    for name, value in options.items():
        if name == "record_mode":
            if value not in RECORD_MODES:
                raise ConfigError(
                    "record_mode", value, source, "expected one of: " + ", ".join(RECORD_MODES)
                )
            mode = RECORD_MODES[value]
        elif name == "match_on":
            if "additional_matchers" not in options:  # else: below, with them appended
                out["match_on"] = [_matcher(part, source, matchers) for part in value]
        elif name == "additional_matchers":  # vcrpy: appended to match_on (or its default)
            extra = [_matcher(part, source, matchers) for part in value]
            base = options.get("match_on", VCR_DEFAULT_MATCH_ON)
            out["match_on"] = [*(_matcher(p, source, matchers) for p in base), *extra]
        elif name == "record_on_exception":
            out["record_on_exception"] = bool(value)
        elif name in _REFUSED:
            raise ConfigError("vcrpy option", name, source, _REFUSED[name])
        elif name in _RENAMED:
            out[_RENAMED[name]] = value
        elif name == "before_record_request":
            out.setdefault("before_record", _Hooks()).request = value
            out["ignore_request"] = _ignores(value)
        elif name == "before_record_response":
            out.setdefault("before_record", _Hooks()).response = value
        elif name == "before_record":  # vcrpy's old name for before_record_request
            out.setdefault("before_record", _Hooks()).request = value
            out["ignore_request"] = _ignores(value)
        elif name == "allowed_hosts":
            pass  # pytest-recording's, for block_network (_pytest_vcr), not a cassette's
        elif name in _IGNORED:
            # Accepted (a warning would fail -W error suites), and named once in the
            # session's summary: the plugin prints ``ignored``.
            if ignored is not None:
                ignored.add(name)
        else:
            raise ConfigError(
                "vcrpy option",
                name,
                source,
                "llmreplay maps record_mode, match_on, additional_matchers, "
                "record_on_exception, "
                + ", ".join(sorted(_RENAMED))
                + ", before_record_request, before_record_response; for anything else use "
                "@pytest.mark.llmreplay(...) options (see the README's 'Coming from "
                "pytest-recording')",
            )
    return out, mode


def _matcher(part: Any, source: str, matchers: dict[str, Callable[..., Any]]) -> Any:
    if callable(part):
        return part
    if part in matchers:
        return matchers[part]
    if part in _MATCH_NAMES:
        return _MATCH_NAMES[part]
    raise ConfigError(
        "match_on part",
        part,
        source,
        "expected vcrpy's names ("
        + ", ".join(sorted(_MATCH_NAMES))
        + "), a function f(r1, r2), or a name registered with vcr.register_matcher",
    )


def _ignores(hook: Callable[[Any], Any]) -> Callable[[RequestView], bool]:
    """vcrpy's rule: a request ``before_record_request`` turns into None is ignored (sent
    as it is, never recorded nor played)."""

    def ignored(view: RequestView) -> bool:
        return hook(VcrRequest.of_view(view)) is None

    return ignored


class _Hooks:
    """vcrpy's before_record_request / before_record_response as one before_record."""

    def __init__(self) -> None:
        self.request: Callable[[Any], Any] | None = None
        self.response: Callable[[Any], Any] | None = None

    def __call__(self, item: Interaction) -> Interaction | None:
        if self.request is not None:
            view = VcrRequest.of_recorded(item)
            kept = self.request(view)
            if kept is None:
                return None
            item.request.url = kept.uri
            item.request.body = kept.body if isinstance(kept.body, bytes) else b""
            item.request.headers = [(k, v) for k, v in kept.headers.items()]
        if self.response is not None:
            response = _response_dict(item)
            kept_response = self.response(response)
            if kept_response is None:
                return None
            item.response.status = int(kept_response["status"]["code"])
            item.response.headers = [
                (k, v)
                for k, values in kept_response["headers"].items()
                for v in (values if isinstance(values, list) else [values])
            ]
            body = kept_response["body"]["string"]
            body = body.encode() if isinstance(body, str) else body
            if item.response.chunks is not None:
                if body != item.response.content:
                    item.response.chunks = [body]
            else:
                item.response.body = body
        return item


class VcrRequest:
    """A request as vcrpy's ``Request`` shows it."""

    def __init__(self, method: str, uri: str, body: bytes, headers: Sequence[tuple[str, str]]):
        self.method = method
        self.uri = uri
        self.body = body
        self.headers = dict(headers)

    @classmethod
    def of_view(cls, view: RequestView) -> VcrRequest:
        return cls(view.method, view.url, view.body, view.headers)

    @classmethod
    def of_recorded(cls, item: Interaction) -> VcrRequest:
        request = item.request
        return cls(request.method, request.url, request.body, request.headers)

    @property
    def url(self) -> str:
        return self.uri

    @property
    def scheme(self) -> str:
        return urlsplit(self.uri).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.uri).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.uri)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def path(self) -> str:
        return urlsplit(self.uri).path

    @property
    def query(self) -> list[tuple[str, str]]:
        return sorted(parse_qsl(urlsplit(self.uri).query, keep_blank_values=True))

    def __repr__(self) -> str:
        return f"<Request ({self.method}) {self.uri}>"


def matches(functions: Iterable[Callable[..., Any]], view: RequestView, item: Interaction) -> bool:
    """Whether every vcrpy-style matcher accepts the live request against a recording."""
    live, recorded = VcrRequest.of_view(view), VcrRequest.of_recorded(item)
    for function in functions:
        try:
            if function(live, recorded) is False:
                return False
        except AssertionError:
            return False
    return True


def _response_dict(item: Interaction, decode: bool = False) -> dict[str, Any]:
    """A recorded response as vcrpy's cassette holds it; with ``decode`` (vcrpy's
    ``decode_compressed_response``) its body without ``content-encoding``, as vcrpy
    stored it."""
    body, pairs = item.response.content, list(item.response.headers)
    encoded = any(k.lower() == "content-encoding" for k, _ in pairs)
    if decode and encoded:
        from ._inspect import decoded

        body = decoded(body, pairs)
        pairs = [(k, v) for k, v in pairs if k.lower() != "content-encoding"]
        pairs = [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in pairs]
    headers: dict[str, list[str]] = {}
    for name, value in pairs:
        headers.setdefault(name, []).append(value)
    return {
        "status": {"code": item.response.status, "message": ""},
        "headers": headers,
        "body": {"string": body},
    }


class CassetteView:
    """The test's cassette as vcrpy's ``Cassette`` reads (the ``vcr`` fixture)."""

    def __init__(self, cassette: Cassette, record_mode: str, decode: bool = False) -> None:
        self._cassette = cassette
        self.record_mode = record_mode
        self._decode = decode  # decode_compressed_response: bodies read decoded, as vcrpy's

    @property
    def data(self) -> list[tuple[VcrRequest, dict[str, Any]]]:
        return [(VcrRequest.of_recorded(i), _response_dict(i, self._decode)) for i in self._items()]

    def _items(self) -> list[Interaction]:
        return self._cassette.in_file_order()

    @property
    def requests(self) -> list[VcrRequest]:
        return [VcrRequest.of_recorded(item) for item in self._items()]

    @property
    def responses(self) -> list[dict[str, Any]]:
        return [_response_dict(item, self._decode) for item in self._items()]

    @property
    def play_counts(self) -> Counter[int]:
        index = {id(item): n for n, item in enumerate(self._items())}
        # As vcrpy: what was recorded during the test was not played.
        return Counter(index[id(item)] for item in self._cassette.played if id(item) in index)

    @property
    def play_count(self) -> int:
        return sum(self.play_counts.values())

    @property
    def all_played(self) -> bool:
        return len(self.play_counts) == len(self._items())

    @property
    def write_protected(self) -> bool:
        return not self._cassette.mode.writes

    def responses_of(self, request: VcrRequest) -> list[dict[str, Any]]:
        return [
            _response_dict(item, self._decode)
            for item in self._items()
            if item.request.method == request.method and item.request.url == request.uri
        ]

    def __len__(self) -> int:
        return len(self._items())

    def __contains__(self, request: object) -> bool:
        return isinstance(request, VcrRequest) and bool(self.responses_of(request))


class VCRShim:
    """What ``pytest_recording_configure(config, vcr)`` receives under llmreplay: matchers
    registered by name are usable in ``match_on``; serializers and persisters are kept but
    unused (cassettes are msgpack; ``llmreplay import-vcr --deserializer`` reads others)."""

    def __init__(self) -> None:
        self.matchers: dict[str, Callable[..., Any]] = {}
        self.serializers: dict[str, Any] = {}
        self.persisters: list[Any] = []

    def register_matcher(self, name: str, matcher: Callable[..., Any]) -> None:
        self.matchers[name] = matcher

    def register_serializer(self, name: str, serializer: Any) -> None:
        self.serializers[name] = serializer

    def register_persister(self, persister: Any) -> None:
        self.persisters.append(persister)
