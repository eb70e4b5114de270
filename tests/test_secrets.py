"""Every credential form, echoed back in every encoding, stays out of the cassette, out of
every CLI output and out of the miss message.

The loopback server echoes each credential it receives (``x-test-echo-all``) in a plain,
gzip, deflate or br body, or in a stream cut into 19-byte chunks so every secret straddles a
chunk boundary. The test then greps the raw cassette bytes, the decompressed bodies, the
output of ``show``, ``export`` (JSON and YAML), ``textconv``, ``ls`` and ``diff``, and a
``CassetteMiss`` message, for each secret.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import llmreplay
from llmreplay import _cli
from llmreplay._format import encode
from tests.helpers import close, collect, fake_key, resolve
from tests.server import LoopbackServer, session_cookie

pytestmark = pytest.mark.anyio
README = Path(__file__).resolve().parents[1] / "docs" / "safety.md"


def _secret(tag: str) -> str:
    """A unique, non-key-shaped credential for ``tag``."""
    return f"{tag}-TESTONLY-{hashlib.sha256(tag.encode()).hexdigest()[:16]}"


BASE_KEY = fake_key("sk-proj-", "TESTONLYbase0123456789abcdef")
PATH_KEY = fake_key("sk-proj-", "TESTONLYpath0123456789abcdef")
GOOGLE_KEY = fake_key("AIza", "SyTESTONLY0123456789abcdefghijklmn")
GROQ_KEY = fake_key("gsk_", "TESTONLYgroq0123456789abcdef")
AWS_KEY_ID = fake_key("AKIA", "TESTONLY01234567")
AWS_SIGNATURE = hashlib.sha256(b"signature").hexdigest()
BASIC_PASSWORD = _secret("basic-password")
URL_PASSWORD = _secret("url-password")
COOKIE_SESSION, COOKIE_CSRF = _secret("cookie-session"), _secret("cookie-csrf")


@dataclass(frozen=True)
class Form:
    """One way a credential travels; ``sdk=False`` when the openai SDK cannot send it."""

    name: str
    secrets: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    path: str = ""  # inserted after /v1
    userinfo: str = ""
    sdk: bool = True
    organization: str | None = None


def _header(name: str, value: str, *secrets: str) -> Form:
    return Form(f"header {name}", (*secrets, value), headers={name: value})


FORMS = [
    Form("header authorization: Bearer", (BASE_KEY,)),
    Form(
        "header authorization: Basic",
        (BASIC_PASSWORD, base64.b64encode(f"bob:{BASIC_PASSWORD}".encode()).decode()),
        headers={
            "authorization": "Basic " + base64.b64encode(f"bob:{BASIC_PASSWORD}".encode()).decode()
        },
        sdk=False,
    ),
    Form(
        "header authorization: AWS SigV4 + x-amz-security-token",
        (AWS_KEY_ID, AWS_SIGNATURE, _secret("sts")),
        headers={
            "authorization": f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/20260101/us-east-1/"
            f"bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature={AWS_SIGNATURE}",
            "x-amz-security-token": _secret("sts"),
        },
        sdk=False,
    ),
    _header("api-key", _secret("azure")),
    _header("x-api-key", fake_key("sk-ant-api03-", "TESTONLYxapikey0123456789ab")),
    _header("x-goog-api-key", GOOGLE_KEY),
    _header("ocp-apim-subscription-key", _secret("apim")),
    _header("proxy-authorization", "Bearer " + _secret("proxy"), _secret("proxy")),
    Form(
        "header openai-organization",
        ("org-TESTONLY0123456789",),
        organization="org-TESTONLY0123456789",
    ),
    _header("helicone-auth", "Bearer " + _secret("helicone"), _secret("helicone")),
    _header("x-portkey-api-key", _secret("portkey")),
    _header("cf-aig-authorization", "Bearer " + _secret("cfaig"), _secret("cfaig")),
    _header("x-litellm-api-key", _secret("litellm")),
    _header("x-my-gateway-token", _secret("custom-token")),
    Form("query api-key", (_secret("q-api-key"),), query={"api-key": _secret("q-api-key")}),
    Form("query key (Google)", (GOOGLE_KEY,), query={"key": GOOGLE_KEY}),
    Form("query access_token", (_secret("q-access"),), query={"access_token": _secret("q-access")}),
    Form("query token", (_secret("q-token"),), query={"token": _secret("q-token")}),
    Form("query sig (Azure SAS)", (_secret("q-sig"),), query={"sig": _secret("q-sig")}),
    Form("query key-shaped value (Groq)", (GROQ_KEY,), query={"project": GROQ_KEY}),
    Form(
        "cookie name=value pairs",
        (COOKIE_SESSION, COOKIE_CSRF),
        headers={"cookie": f"session={COOKIE_SESSION}; csrftoken={COOKIE_CSRF}; theme=dark"},
    ),
    Form("cookie set-cookie (response)", ()),  # its secrets are the per-request session cookies
    Form(
        "url userinfo user:password@",
        (URL_PASSWORD, base64.b64encode(f"alice:{URL_PASSWORD}".encode()).decode()),
        userinfo=f"alice:{URL_PASSWORD}",
        sdk=False,
    ),
    Form("url path segment key", (PATH_KEY,), path=f"/keys/{PATH_KEY}"),
]
HAS_BROTLI = importlib.util.find_spec("brotli") is not None
# name -> (x-test-encoding, streamed); br only where brotli is installed (the dev extra has it)
ALL_ENCODINGS = {
    "plain": ("identity", False),
    "gzip": ("gzip", False),
    "deflate": ("deflate", False),
    "br": ("br", False),
    "sse split": ("identity", True),
    "sse split gzip": ("gzip", True),
}
ENCODINGS = {k: v for k, v in ALL_ENCODINGS.items() if HAS_BROTLI or k != "br"}
CHUNK = 19  # shorter than every secret (20+ characters): each one straddles a boundary


def _decoded(body: bytes, headers: list[tuple[str, str]]) -> bytes:
    """Decoded with the standard library (and brotli), independently of llmreplay."""
    coding = next((v for k, v in headers if k.lower() == "content-encoding"), "").lower()
    if coding in ("gzip", "deflate"):  # a decompressor object also reads a stream cut short
        return zlib.decompressobj(31 if coding == "gzip" else 15).decompress(body)
    if coding == "br":
        return bytes(importlib.import_module("brotli").Decompressor().process(body))
    return body


def _cli_output(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = _cli.main(list(argv))
    out, err = capsys.readouterr()
    assert code in (0, 1), (argv, err)
    return out + err


async def _send(
    server: LoopbackServer, http: Any, form: Form, encoding: str, streamed: bool, seed: str
) -> str:
    """One chat request carrying ``form``; returns the text the caller got back."""
    echo = {
        "x-test-echo-all": "1",
        "x-test-encoding": encoding,
        "x-test-session-seed": seed,
        **({"x-test-chunk-bytes": str(CHUNK)} if streamed else {}),
    }
    messages: Any = [{"role": "user", "content": f"hello {form.name}"}]
    if form.sdk:
        sync = isinstance(http, httpx2.Client)
        client = (openai.OpenAI if sync else openai.AsyncOpenAI)(
            http_client=http,
            api_key=BASE_KEY,
            base_url=server.url + form.path,
            organization=form.organization,
            default_headers=form.headers,
            default_query=form.query or None,
            max_retries=0,
        )
        if streamed:
            events = await collect(
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=messages, stream=True, extra_headers=echo
                )
            )
            text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
        else:
            reply = await resolve(
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=messages, extra_headers=echo
                )
            )
            text = reply.choices[0].message.content or ""
        return text
    origin = (
        server.origin.replace("://", f"://{form.userinfo}@") if form.userinfo else server.origin
    )
    response = await resolve(
        http.post(
            f"{origin}/v1{form.path}/chat/completions",
            params=form.query,
            headers={**form.headers, **echo},
            json={"model": "gpt-4o-mini", "messages": messages, "stream": streamed},
        )
    )
    assert response.status_code == 200
    return str(response.text)


async def test_no_credential_form_survives_any_encoding(
    tmp_path: Path, server: LoopbackServer, sync: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given every credential form sent through every encoding, each echoed back by the server
    path = tmp_path / "secrets.msgpack"
    seeds = []
    with llmreplay.cassette(path, mode="record") as cas:
        http = httpx2.Client() if sync else httpx2.AsyncClient()  # one, shared by every SDK client
        for form in FORMS:
            for name, (encoding, streamed) in ENCODINGS.items():
                seed = f"{form.name}/{name}"
                seeds.append(seed)
                text = await _send(server, http, form, encoding, streamed, seed)
                for secret in form.secrets:  # the caller sees the echo: the server got it
                    assert secret in text, (form.name, name, secret)
                assert session_cookie(seed) in text
        await close(http)
    runs = len(FORMS) * len(ENCODINGS)
    assert cas.stats.recorded == runs == len(server.requests)
    secrets = {s for form in FORMS for s in form.secrets} | {session_cookie(s) for s in seeds}
    secrets.add(BASE_KEY)

    # Then no secret is in the file's bytes, nor in any body once decompressed
    raw = path.read_bytes()
    items = llmreplay.cassette(path).interactions
    assert len(items) == runs
    bodies = []
    for item in items:
        response = item.response
        bodies.append(_decoded(item.request.body, item.request.headers))
        bodies.append(_decoded(response.content, response.headers))
        if response.chunks is not None:
            assert len(response.chunks) > 1  # still a stream cut where it arrived
    decoded = b"\n".join(bodies)
    for secret in sorted(secrets):
        assert secret.encode() not in raw, secret
        assert secret.encode() not in decoded, secret
    # The echoes were redacted, not lost: every response body says <redacted>.
    assert all(b"<redacted>" in body for body in bodies[1::2])
    assert all("@" not in item.request.url for item in items)

    # Nor in a miss message, with headers in the key
    every_header = {k: v for form in FORMS for k, v in form.headers.items()}
    replay = llmreplay.cassette(path, match_on=["method", "path", "body", "headers"])
    http = httpx2.Client(transport=replay.transport())
    with pytest.raises(llmreplay.CassetteMiss) as caught:
        http.post(
            f"{server.origin.replace('://', f'://alice:{URL_PASSWORD}@')}/v1/keys/{PATH_KEY}"
            "/chat/completions",
            headers={**every_header, "authorization": f"Bearer {BASE_KEY}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": BASE_KEY}]},
        )
    http.close()
    message = str(caught.value)
    assert caught.value.closest is not None and caught.value.diff
    for secret in secrets:
        assert secret not in message, secret
    assert len(server.requests) == runs  # the miss never left the process

    # Nor in what any command prints (the file has the same shape either way: once is enough)
    if not sync:
        return
    empty = tmp_path / "empty.msgpack"
    empty.write_bytes(encode([], {}))
    outputs = {
        "show": _cli_output(capsys, "show", str(path)),
        "export json": _cli_output(capsys, "export", str(path)),
        "export yaml": _cli_output(capsys, "export", str(path), "--format", "yaml"),
        "textconv": _cli_output(capsys, "textconv", str(path)),
        "ls": _cli_output(capsys, "ls", str(tmp_path)),
        "ls --json": _cli_output(capsys, "ls", "--json", str(tmp_path)),
        "diff": _cli_output(capsys, "diff", str(path), str(empty)),
        "diff --json": _cli_output(capsys, "diff", "--json", str(empty), str(path)),
    }
    assert "<redacted>" in outputs["show"] and "/keys/<redacted>/" in outputs["ls"]
    for command, output in outputs.items():
        for secret in secrets:
            assert secret not in output, (command, secret)


def test_readme_table_counts_what_this_test_runs() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Secrets", 1)[1].split("\n## ", 1)[0]
    times = "\N{MULTIPLICATION SIGN}"
    assert f"{len(FORMS)} credential forms {times} {len(ALL_ENCODINGS)} encodings" in section
    groups: dict[str, int] = {}
    for form in FORMS:
        groups[form.name.split()[0]] = groups.get(form.name.split()[0], 0) + 1
    for group, count in groups.items():
        assert f"| {group} | {count} |" in section, group
