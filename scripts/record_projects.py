"""Record the cassettes of the fixture projects that imitate real suites
(``fixtures/instrumentation_project``, ``fixtures/agent_project``) with pytest-recording,
against a loopback upstream that answers with the real API responses of
``fixtures/realworld``.

    python scripts/record_projects.py fixtures/instrumentation_project

pytest-recording must be importable (``pip install pytest-recording==0.14.1``, or put a
``pip install --target`` folder of it on ``PYTHONPATH``). The project is copied, its
cassettes deleted, and its suite run with ``--record-mode=once`` while the SDKs' base URLs
(``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``) and ``PROJECT_IMAGE_URL`` point at the
upstream on ``127.0.0.2`` (loopback, and not one of the hosts vcrpy's ``ignore_localhost``
skips). Then each loopback origin is replaced by the real host the project names by
default (``https://api.openai.com``, ``https://api.anthropic.com``,
``https://upload.wikimedia.org``) and the cassettes are copied back: replayed, the
projects ask the real hosts, and only the replay tool stands between them and the network.

The upstream looks a request up by its JSON body among the realworld interactions and
answers the same body the n-th time with its n-th recorded response (a request sent
repeatedly gets different answers, as from the real API); a body it does not know gets a
real answer of the same kind (a chat completion, an Anthropic message). Nothing here is
used by the tests; it is how their data was made.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
REALWORLD = ROOT / "fixtures" / "realworld" / "cassettes"
HOST = "127.0.0.2"
IMAGE_PATH = (
    "/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg/"
    "2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg"
)
# Stand-ins for answers the realworld set does not hold for a request (by path ending).
FALLBACK = {
    "/chat/completions": ("otel-contrib__test_chat_completion_with_content.yaml", 0),
    "/messages": ("openinference__test_anthropic_instrumentation_messages.yaml", 0),
}
_HOP = {"transfer-encoding", "connection", "content-length", "content-encoding"}


def _key(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(body or "null"), sort_keys=True)
    except ValueError:
        return str(body)


def _image() -> bytes:
    """A real image's bytes (a PNG): the image a realworld Anthropic request sent base64."""
    data = yaml.safe_load((REALWORLD / "llm-anthropic__test_image_prompt.yaml").read_text())
    request = json.loads(data["interactions"][0]["request"]["body"])
    import base64

    for block in request["messages"][0]["content"]:
        if block.get("type") == "image":
            return base64.b64decode(block["source"]["data"])
    raise SystemExit("no image in llm-anthropic__test_image_prompt.yaml")


class Upstream:
    def __init__(self) -> None:
        self.answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.files: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(REALWORLD.glob("*.yaml")):
            interactions = yaml.safe_load(path.read_text())["interactions"]
            self.files[path.name] = interactions
            for interaction in interactions:
                self.answers[_key(interaction["request"]["body"])].append(interaction["response"])
        self.served: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        self.image = _image()

    def answer(self, path: str, body: bytes) -> dict[str, Any]:
        key = _key(body)
        parsed = json.loads(key) if key.startswith("{") else None
        if key not in self.answers and parsed and parsed.get("encoding_format") == "base64":
            # the openai SDK asks for base64 embeddings unless told otherwise; the
            # realworld requests predate that, and a float answer reads the same
            parsed.pop("encoding_format")
            key = json.dumps(parsed, sort_keys=True)
        with self.lock:
            known = self.answers.get(key)
            count = self.served[key]
            self.served[key] += 1
        if known:
            response = known[count % len(known)]
            if count and known.count(response) > 1:  # the same answer again: told apart
                text = response["body"]["string"]
                if isinstance(text, str) and '"id": "' in text:
                    marked = text.replace('"id": "', f'"id": "r{count}-', 1)
                    response = {**response, "body": {"string": marked}}
            return response
        print(f"upstream: no realworld answer for {path} {key[:2000]}", file=sys.stderr)  # noqa: T201
        for ending, (name, index) in FALLBACK.items():
            if path.endswith(ending):
                return self.files[name][index]["response"]
        missing = json.dumps({"error": {"message": f"no route {path}"}})
        return {"status": {"code": 404, "message": "Not Found"}, "headers": {},
                "body": {"string": missing}}  # fmt: skip


def serve(upstream: Upstream) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.split("?")[0] != IMAGE_PATH:
                self._send(404, {}, b"not found")
                return
            self._send(200, {"content-type": ["image/png"]}, upstream.image)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            response = upstream.answer(self.path, raw)
            body = response["body"]["string"]
            body = body.encode() if isinstance(body, str) else body
            headers = {k.lower(): v for k, v in response["headers"].items()}
            if body[:2] == b"\x1f\x8b":  # recorded compressed: sent as recorded
                headers["content-encoding"] = ["gzip"]
            elif "gzip" in self.headers.get("accept-encoding", ""):  # as the real API does
                body = gzip.compress(body, mtime=0)
                headers["content-encoding"] = ["gzip"]
            self._send(response["status"]["code"], headers, body)

        def _send(self, status: int, headers: dict[str, list[str]], body: bytes) -> None:
            self.send_response(status)
            for name, values in headers.items():
                if name in _HOP and name != "content-encoding":
                    continue
                for value in values:
                    self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def record(project: Path) -> None:
    upstream = Upstream()
    openai_server, anthropic_server, image_server = (
        serve(upstream),
        serve(upstream),
        serve(upstream),
    )
    origins = {
        f"http://{HOST}:{openai_server.server_address[1]}": "https://api.openai.com",
        f"http://{HOST}:{anthropic_server.server_address[1]}": "https://api.anthropic.com",
        f"http://{HOST}:{image_server.server_address[1]}": "https://upload.wikimedia.org",
    }
    openai_origin, anthropic_origin, image_origin = origins
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / project.name
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns("__pycache__"))
        for old in _cassettes(copy):
            old.unlink()
        env = {
            **os.environ,
            "OPENAI_BASE_URL": openai_origin + "/v1",
            "ANTHROPIC_BASE_URL": anthropic_origin,
            "PROJECT_IMAGE_URL": image_origin + IMAGE_PATH,
            "PROJECT_RECORDING": "1",
        }
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:llmreplay", "-p", "no:randomly",
             "--record-mode=once"],
            cwd=copy, env=env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the project failed while recording (pytest exit {done.returncode})")
        for old in _cassettes(project):
            old.unlink()
        for path in _cassettes(copy):
            text = path.read_text(encoding="utf-8")
            for local, real in origins.items():  # the URL, then the Host header
                text = text.replace(local, real).replace(local[7:], real[8:])
            target = project / path.relative_to(copy)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print("recorded", target.relative_to(ROOT))  # noqa: T201


def _cassettes(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and "cassettes" in p.relative_to(folder).parts
    )


if __name__ == "__main__":
    for name in sys.argv[1:] or ["fixtures/instrumentation_project", "fixtures/agent_project"]:
        record((ROOT / name).resolve())
