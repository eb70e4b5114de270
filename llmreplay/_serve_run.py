"""Running ``llmreplay serve``: the address decision, uvicorn in the foreground (the CLI, with
clean shutdown on SIGINT/SIGTERM) or in a background thread (the ``llm_proxy`` fixture).

uvicorn is imported only here, and only when a server starts: ``import llmreplay`` never
needs it. The listening socket is bound before uvicorn starts, so ``--port 0`` works and the
startup line names the real port.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import _patch
from ._errors import ConfigError, LLMReplayError
from ._serve import ServeApp, StreamCut
from ._serve_routes import parse_upstreams

if TYPE_CHECKING:
    from ._cassette import Cassette

GRACE_SECONDS = 10.0  # how long in-flight answers may finish after SIGINT/SIGTERM


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (no other machine can connect to it).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback ``--host`` unless ``--allow-remote`` says so: whoever can reach
    the server can spend the API keys its callers send and read every cassette it serves."""
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(
            "--host",
            host,
            "llmreplay serve --host",
            "it is not a loopback address (127.0.0.1, ::1, localhost), so other machines "
            "could use this server; pass --allow-remote as well to listen there on purpose "
            "(e.g. --host 0.0.0.0 inside a container)",
        )


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        raise ImportError(
            "llmreplay serve needs uvicorn: pip install 'pytest-llmreplay[serve]'"
        ) from None
    return uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one)."""
    found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _QuietCuts(logging.Filter):
    """A stream cut on purpose (upstream broke it, or a fault) is logged by us, not as a
    traceback by uvicorn."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, StreamCut):
            logging.getLogger("llmreplay.serve").info("llmreplay serve: stream cut: %s", error)
            return False
        return True


_filter = _QuietCuts()


def _server(app: ServeApp) -> Any:
    uvicorn = _uvicorn()
    logging.getLogger("uvicorn.error").addFilter(_filter)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,  # one line per request comes from the app, with its source
        lifespan="on",
        ws="none",
        server_header=False,  # the provider's own headers go back as they came
        date_header=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    return uvicorn.Server(config)


def describe(app: ServeApp) -> str:
    if app.directory is not None:
        where = f"cassettes={app.directory}, default cassette={app.default}"
    elif app.default is not None:
        where = f"cassette={app.default}"
    else:
        where = "cassettes=registered in-process"
    return f"mode={app.mode.value}, {where}"


def serve_forever(app: ServeApp, host: str, port: int, *, allow_remote: bool = False) -> int:
    """Run in the foreground until SIGINT/SIGTERM; every recording is saved. Returns 0."""
    check_host(host, allow_remote=allow_remote)
    server = _server(app)
    sock = bind(host, port)
    stopped: list[str] = []

    def note(sig: int, frame: FrameType | None) -> None:
        stopped.append(signal.Signals(sig).name)

    # uvicorn catches both signals while it runs and, once it has shut down gracefully,
    # raises the caught one again: it lands here, so the process ends with exit code 0.
    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    sys.stderr.write(
        f"llmreplay serve: listening on {url_of(sock)} ({describe(app)}); "
        "Ctrl+C or SIGTERM to stop\n"
    )
    sys.stderr.flush()
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        app.save_all()
        sock.close()
    saved = sum(1 for cassette in app.cassettes() if cassette.writes)
    why = f" ({stopped[0]})" if stopped else ""
    sys.stderr.write(f"llmreplay serve: stopped{why}; {saved} cassette(s) written\n")
    return 0


class InProcessServer:
    """``app`` served from a daemon thread on a free loopback port, until ``stop()``.

    >>> running = InProcessServer(ServeApp())  # doctest: +SKIP
    >>> running.url  # doctest: +SKIP
    'http://127.0.0.1:50123'
    """

    def __init__(self, app: ServeApp, host: str = "127.0.0.1", port: int = 0) -> None:
        check_host(host, allow_remote=False)
        self.app = app
        self._server = _server(app)
        self._sock = bind(host, port)
        self.url = url_of(self._sock)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="llmreplay-serve",
            daemon=True,
        )
        self._thread.start()
        # In-process clients calling it pass every cassette and the guard: its own
        # cassettes record what reaches it.
        _patch.pass_through(self.url)
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LLMReplayError(
                    "llmreplay serve did not start within 10 s"
                )  # pragma: no cover
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving (in-flight answers may finish), save every cassette."""
        self._server.should_exit = True
        self._thread.join(timeout=GRACE_SECONDS + 5)
        _patch.pass_through(self.url, on=False)
        self.app.save_all()
        with contextlib.suppress(OSError):
            self._sock.close()


# -- the command line: `llmreplay serve` ----------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``llmreplay serve``."""
    parser.add_argument(
        "--mode",
        default=None,
        help="replay (default; or LLMREPLAY_MODE), record, auto, once or live",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cassette", metavar="FILE", help="the one cassette every request uses")
    where.add_argument(
        "--dir",
        metavar="DIR",
        help="cassettes by name: header x-llmreplay-cassette: NAME or base URL .../_c/NAME/...",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=8765, help="port (0: a free one; default 8765)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other machines can reach (anyone reaching it spends your keys)",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="add or replace a route: /NAME/... goes to URL/... (gateways, local models)",
    )
    parser.add_argument(
        "--allow-repeats", action="store_true", help="replay the last answer to a repeated request"
    )


def run_cli(args: argparse.Namespace) -> int:
    """``llmreplay serve``: configure from ``args`` and serve until stopped."""
    if args.mode is not None:
        mode, source = args.mode, "llmreplay serve --mode"
    elif os.environ.get("LLMREPLAY_MODE"):
        mode, source = os.environ["LLMREPLAY_MODE"], "the LLMREPLAY_MODE environment variable"
    else:
        mode, source = "replay", "the default of llmreplay serve"
    try:
        _uvicorn()
    except ImportError as exc:
        sys.stderr.write(f"llmreplay: {exc}\n")
        return 2
    if args.cassette is None and args.dir is None:
        raise ConfigError("cassette", None, "llmreplay serve", "pass --cassette FILE or --dir DIR")
    app = ServeApp(
        mode=mode,
        mode_source=source,
        cassette=args.cassette,
        directory=args.dir,
        upstreams=parse_upstreams(args.upstream),
        options={"allow_repeats": args.allow_repeats},
    )
    logger = logging.getLogger("llmreplay.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return serve_forever(app, args.host, args.port, allow_remote=args.allow_remote)


class ProxyRoute:
    """What the ``llm_proxy`` fixture gives a test: ``url`` (this test's base, e.g.
    ``http://127.0.0.1:PORT/_c/TOKEN``), ``base_url(route)``, the ``cassette`` and the
    environment variables ``env`` it set for subprocesses."""

    def __init__(self, url: str, cassette: Cassette, routes: dict[str, str]) -> None:
        self.url = url
        self.cassette = cassette
        self.env = {name: self.base_url(route) for name, route in routes.items()}
        self.env["LLMREPLAY_PROXY_URL"] = url

    def base_url(self, route: str) -> str:
        """The base URL for a route: ``base_url("openai/v1")``, ``base_url("azure/myres")``."""
        return f"{self.url}/{route.strip('/')}"

    def __repr__(self) -> str:
        return f"<llm_proxy {self.url} cassette={self.cassette.path}>"
