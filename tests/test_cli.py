"""The ``llmreplay`` command, through ``main([...])`` and once as a real process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import anthropic
import httpx2
import openai
import pytest

import llmreplay
from llmreplay._cli import PLAYED_FILE, main
from llmreplay._format import Interaction, RecordedRequest, RecordedResponse, encode
from llmreplay._inspect import decoded
from tests.helpers import fake_key

ROOT = Path(__file__).parent.parent
REALWORLD = ROOT / "fixtures" / "realworld" / "cassettes"
EXAMPLES = ROOT / "fixtures" / "cassettes" / "examples"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported")
    assert main(["import-vcr", str(REALWORLD), "-o", str(out), "--json"]) == 0
    return out


def test_import_vcr_imports_every_realworld_cassette(imported: Path) -> None:
    cassettes = sorted(imported.glob("*.msgpack"))
    assert len(cassettes) == 97
    assert sum(len(llmreplay.cassette(p).interactions) for p in cassettes) == 115


def _sdk_for(
    url: str, transport: llmreplay.CassetteTransport
) -> openai.OpenAI | anthropic.Anthropic:
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    http = httpx2.Client(transport=transport)
    if "anthropic" in parts.netloc:
        return anthropic.Anthropic(api_key="k", base_url=base, max_retries=0, http_client=http)
    return openai.OpenAI(api_key="k", base_url=base, max_retries=0, http_client=http)


def test_every_imported_request_replays_through_the_real_sdks(imported: Path) -> None:
    for path in sorted(imported.glob("*.msgpack")):
        cas = llmreplay.cassette(path)
        for item in cas.interactions:
            client = _sdk_for(item.request.url, cas.transport())
            parts = urlsplit(item.request.url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            body = json.loads(item.request.body) if item.request.body else None
            expected = decoded(item.response.content, item.response.headers)
            if item.response.status >= 400:
                with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as info:
                    client.post(target, cast_to=httpx2.Response, body=body)
                assert isinstance(info.value, openai.APIStatusError | anthropic.APIStatusError)
                assert info.value.status_code == item.response.status
            else:
                response = client.post(target, cast_to=httpx2.Response, body=body)
                assert response.content == expected, path.name
            client.close()
        assert cas.stats.unused == 0, path.name


def test_ls_show_export_textconv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "ls", str(EXAMPLES), "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 7
    summarize = next(r for r in rows if r["path"].endswith("test_summarize.msgpack"))
    assert summarize["endpoints"] == ["POST /v1/chat/completions"]
    assert summarize["models"] == ["gpt-4o-mini"]
    code, out, _ = _run(capsys, "ls", str(EXAMPLES))
    assert "1 interaction(s)" in out and "[claude-opus-4-6]" in out

    stream = EXAMPLES / "test_app" / "test_stream_story.msgpack"
    code, out, _ = _run(capsys, "show", str(stream))
    (shown,) = json.loads(out)
    assert shown["request"]["body"]["stream"] is True
    assert shown["response"]["stream"]["text"].startswith("data: {")
    key = shown["key"][:10]
    assert json.loads(_run(capsys, "show", str(stream), "--key", key)[1])[0]["key"] == shown["key"]
    assert _run(capsys, "show", str(stream), "--key", "nope")[0] == 1

    export = tmp_path / "copy.yaml"
    assert _run(capsys, "export", str(stream), "--format", "yaml", "-o", str(export))[0] == 0
    assert "llmreplay-cassette" in export.read_text()
    code, out, _ = _run(capsys, "export", str(stream))
    assert json.loads(out)["interactions"][0]["key"] == shown["key"]

    code, first, _ = _run(capsys, "textconv", str(stream))
    assert first.startswith("=== POST /v1/chat/completions")
    assert "recorded_at" not in first  # stable across re-recordings
    assert _run(capsys, "textconv", str(stream))[1] == first


def test_binary_bodies_are_summarised(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "audio.msgpack"
    item = Interaction(
        "k" * 64,
        RecordedRequest("POST", "https://api.openai.com/v1/audio/speech", [], b"{}"),
        RecordedResponse(200, [("content-type", "audio/mpeg")], body=bytes(range(256))),
    )
    path.write_bytes(encode([item], {}))
    (shown,) = json.loads(_run(capsys, "show", str(path))[1])
    assert shown["response"]["body"].startswith("<audio/mpeg: 256 bytes, sha256 ")


def test_diff_by_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = EXAMPLES / "test_app" / "test_summarize.msgpack"
    b = EXAMPLES / "test_app" / "test_embed.msgpack"
    assert _run(capsys, "diff", str(a), str(a)) == (0, "no differences\n", "")
    code, out, _ = _run(capsys, "diff", str(a), str(b), "--json")
    assert code == 1
    assert sorted(c["change"] for c in json.loads(out)) == ["added", "removed"]
    code, out, _ = _run(capsys, "diff", str(a), str(b))
    assert out.startswith("+ POST /v1/embeddings") or "- POST /v1/chat/completions" in out


def test_verify_passes_clean_cassettes_and_catches_planted_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "clean")
    code, out, _ = _run(capsys, "verify", str(tmp_path / "clean"))
    assert code == 0 and "7 cassette(s), format version 1: no problems" in out

    planted = [
        ("body", b'{"note": "%s"}' % fake_key("sk-proj-").encode(), []),
        ("anthropic", b'{"k": "%s"}' % fake_key("sk-ant-api03-").encode(), []),
        ("bearer", b"{}", [("x-forwarded-auth", "Bearer abcdefghijklmnopqrstuvwxyz")]),
        ("azure", b"{}", [("api-key", "0123456789abcdef0123456789abcdef")]),
    ]
    for name, body, headers in planted:
        item = Interaction(
            "k" * 64,
            RecordedRequest("POST", "https://x/v1/chat/completions", headers, body),
            RecordedResponse(200, [], body=b"{}"),
        )
        (tmp_path / "dirty" / f"{name}.msgpack").parent.mkdir(exist_ok=True)
        (tmp_path / "dirty" / f"{name}.msgpack").write_bytes(encode([item], {}))
    (tmp_path / "dirty" / "broken.msgpack").write_bytes(b"\x93\x01")
    code, out, _ = _run(capsys, "verify", str(tmp_path / "dirty"), "--json")
    report = json.loads(out)
    assert code == 1
    flagged = {Path(p["path"]).stem for p in report["problems"]}
    assert flagged == {"body", "anthropic", "bearer", "azure", "broken"}
    assert all("0123456789abcdef" not in p["problem"] for p in report["problems"])


def test_prune_removes_what_the_last_run_did_not_play(
    pytester: pytest.Pytester, server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)  # type: ignore[attr-defined]
    monkeypatch.setenv("OPENAI_API_KEY", fake_key("sk-"))  # recording needs a key
    pytester.makepyfile(
        """
        import os

        def test_calls(llm_client):
            for word in os.environ.get("WORDS", "a b").split():
                llm_client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": word}])
        """
    )
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    monkeypatch.setenv("WORDS", "a")
    pytester.runpytest().assert_outcomes(passed=1)
    folder = pytester.path / "fixtures" / "cassettes"
    cassette = folder / "test_prune_removes_what_the_last_run_did_not_play" / "test_calls.msgpack"
    assert json.loads((folder / PLAYED_FILE).read_text())
    assert main(["prune", str(folder), "--dry-run"]) == 0
    assert len(llmreplay.cassette(cassette).interactions) == 2
    assert main(["prune", str(folder)]) == 0
    (left,) = llmreplay.cassette(cassette).interactions
    assert b'"content":"a"' in left.request.body


def test_errors_and_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _run(capsys, "show", str(tmp_path / "missing.msgpack"))[0] == 2
    (tmp_path / "bad.msgpack").write_bytes(b"garbage")
    code, _, err = _run(capsys, "show", str(tmp_path / "bad.msgpack"))
    assert code == 2 and "bad.msgpack" in err and "Traceback" not in err
    assert _run(capsys, "prune", str(tmp_path))[0] == 2
    (tmp_path / "notvcr.yaml").write_text("just: text\n")
    code, out, _ = _run(capsys, "import-vcr", str(tmp_path / "notvcr.yaml"), "-o", str(tmp_path))
    assert code == 1 and "skipped" in out
    with pytest.raises(SystemExit) as usage:
        main(["no-such-command"])
    assert usage.value.code == 2


def test_as_a_real_process() -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "llmreplay", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("ls", "show", "diff", "verify", "import-vcr", "export", "prune", "textconv"):
        assert command in helped.stdout
    script = Path(sys.executable).parent / "llmreplay"
    listed = subprocess.run(
        [str(script), "verify", str(EXAMPLES)], capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert "no problems" in listed.stdout


def test_progress_shows_on_a_terminal_and_stays_quiet_when_piped() -> None:
    import io

    from llmreplay._cli import _Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, piped = Terminal(), io.StringIO()
    for stream in (shown, piped):
        progress = _Progress(3, stream)
        for index in range(1, 4):
            progress.step(index, f"cassette-{index}")
        progress.done()
    assert "[3/3] cassette-3" in shown.getvalue()
    assert piped.getvalue() == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "{missing}"],
        ["verify", "{missing}"],
        ["show", "{missing}"],
        ["textconv", "{missing}"],
        ["export", "{missing}"],
        ["diff", "{missing}", "{existing}"],
        ["diff", "{existing}", "{missing}"],
        ["prune", "{missing}"],
    ],
    ids=lambda argv: "-".join(a.strip("{}") for a in argv),
)
def test_a_missing_path_is_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    missing = tmp_path / "nosuchdir"
    existing = EXAMPLES / "test_app" / "test_summarize.msgpack"
    args = [a.format(missing=missing, existing=existing) for a in argv]
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert str(missing) in err and "no such file" in err and "Traceback" not in err


def test_folders_are_searched_by_content_whatever_the_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "cassettes"
    shutil.copytree(EXAMPLES / "test_app", folder)
    one = folder / "test_summarize.msgpack"
    # Written through the vcrpy bridge, no suffix at all, deep in a folder.
    (folder / "bridge.llmreplay").write_bytes(one.read_bytes())
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / "deep" / "er" / "no_suffix").write_bytes(one.read_bytes())
    # Not cassettes: notes, a played list, a save in progress, a hidden folder.
    (folder / "README.md").write_text("# cassettes\n")
    (folder / ".llmreplay").mkdir()
    (folder / ".llmreplay" / "test_summarize.msgpack.x1y2.tmp").write_bytes(one.read_bytes())
    (folder / ".llmreplay" / "played.json").write_text("{}")
    (folder / ".old.msgpack.abc.tmp").write_bytes(one.read_bytes())
    code, out, _ = _run(capsys, "ls", str(folder), "--json")
    names = sorted(Path(r["path"]).relative_to(folder).as_posix() for r in json.loads(out))
    assert code == 0
    assert names == sorted(
        ["bridge.llmreplay", "deep/er/no_suffix"]
        + [p.name for p in (EXAMPLES / "test_app").glob("*.msgpack")]
    )
    code, out, _ = _run(capsys, "verify", str(folder))
    assert code == 0 and f"verified {len(names)} cassette(s)" in out


def test_import_vcr_without_its_extra_names_the_extra(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "vcr", None)  # as if vcrpy were not installed
    code, out, err = _run(capsys, "import-vcr", str(REALWORLD), "-o", str(tmp_path))
    assert (code, out) == (2, "")
    assert "pip install 'pytest-llmreplay[vcr]'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def _chat(prompt: str, key: str = "") -> Interaction:
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    view = llmreplay._match.RequestView("POST", "https://x/v1/chat/completions", [], body)
    return Interaction(
        key or llmreplay._match.KeySpec().key(view),
        RecordedRequest("POST", "https://x/v1/chat/completions", [], body),
        RecordedResponse(200, [], body=b'{"answer": "%s"}' % prompt.encode()),
    )


def test_diff_shows_an_edited_request_with_its_body_difference(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before, after = tmp_path / "before.msgpack", tmp_path / "after.msgpack"
    kept = _chat("unchanged")
    before.write_bytes(encode([kept, _chat("Summarise the report")], {}))
    after.write_bytes(encode([kept, _chat("Summarise the report in French")], {}))
    code, out, _ = _run(capsys, "diff", str(before), str(after))
    assert code == 1
    head, *body = out.splitlines()
    assert head.startswith("* POST /v1/chat/completions  key ") and "(was " in head
    assert "[gpt-4o-mini]" in head
    lines = [" ".join(line.split()) for line in body]
    assert lines[0] == "request edited (- before, + after):"
    assert '-body: "content": "Summarise the report",' in lines
    assert '+body: "content": "Summarise the report in French",' in lines
    (change,) = json.loads(_run(capsys, "diff", str(before), str(after), "--json")[1])
    assert change["change"] == "edited" and change["was"] == _chat("Summarise the report").key
    assert "in French" in change["diff"]
    # A request on another endpoint is not an edit: added and removed, as before.
    other = tmp_path / "other.msgpack"
    embed = _chat("x")
    embed.request.url = "https://x/v1/embeddings"
    other.write_bytes(encode([kept, embed], {}))
    changes = json.loads(_run(capsys, "diff", str(before), str(other), "--json")[1])
    assert sorted(c["change"] for c in changes) == ["added", "removed"]


def test_verify_ignores_sk_inside_base64_blobs_and_still_flags_real_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Base64url (Fernet-style) encrypted_content that happens to hold "sk-" + 20 letters.
    blob = "gAAAAABo" + "Q2hhdEdQVF9yZWFzb25pbmc" + "sk-" + "AbCdEfGhIjKlMnOpQrStUvWx" + "_-Zz09=="
    blob_std = "b3Blbmlh+/sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2" + "/+=="
    clean = json.dumps(
        {"output": [{"type": "reasoning", "encrypted_content": blob}, {"data": blob_std}]}
    ).encode()
    folder = tmp_path / "c"
    folder.mkdir()
    item = Interaction(
        "k" * 64,
        RecordedRequest("POST", "https://x/v1/responses", [], b"{}"),
        RecordedResponse(200, [], body=clean),
    )
    (folder / "clean.msgpack").write_bytes(encode([item], {}))
    code, out, _ = _run(capsys, "verify", str(folder))
    assert code == 0 and "no problems" in out

    real = [
        json.dumps({"api_key": fake_key("sk-")}),
        json.dumps({"k": fake_key("sk-proj-")}),
        f"key={fake_key('sk-svcacct-')}&x=1",
        f"Authorization: Bearer {fake_key('sk-ant-api03-')}",
        f"({fake_key('sk-admin-')})",
    ]
    for number, text in enumerate(real):
        item = Interaction(
            "k" * 64,
            RecordedRequest("POST", "https://x/v1/responses", [], text.encode()),
            RecordedResponse(200, [], body=b"{}"),
        )
        (folder / f"dirty{number}.msgpack").write_bytes(encode([item], {}))
    code, out, _ = _run(capsys, "verify", str(folder), "--json")
    flagged = {Path(p["path"]).stem for p in json.loads(out)["problems"]}
    assert code == 1 and flagged == {f"dirty{n}" for n in range(len(real))}


def test_verify_fails_on_what_show_cannot_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = Interaction(
        "k" * 64,
        RecordedRequest("POST", "http://[::1/v1/chat", [], b"{}"),
        RecordedResponse(200, [], body=b"{}"),
    )
    (tmp_path / "url.msgpack").write_bytes(encode([bad], {}))
    code, out, _ = _run(capsys, "show", str(tmp_path / "url.msgpack"))
    assert code == 2
    code, out, _ = _run(capsys, "verify", str(tmp_path), "--json")
    (problem,) = json.loads(out)["problems"]
    assert code == 1 and "not a valid URL" in problem["problem"]


@pytest.mark.parametrize(
    "secret",
    [
        "AKIA" + "IOSFODNN7TESTONL",  # 20 characters, as AWS access key ids are
        fake_key("ghp_", "TESTONLY0123456789abcdefghijklmn"),
        fake_key("AIzaSy", "TESTONLY0123456789abcdefghijklmn"),
        fake_key("gsk_"),
        fake_key("xai-"),
        fake_key("hf_", "TESTONLY0123456789abcdefghijklmn"),
        fake_key("r8_"),
        fake_key("pplx-"),
    ],
    ids=["aws", "github", "google", "groq", "xai", "huggingface", "replicate", "perplexity"],
)
def test_verify_flags_every_provider_key_shape_the_scrubber_knows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, secret: str
) -> None:
    item = Interaction(
        "k" * 64,
        RecordedRequest(
            "POST", "https://x/v1/chat/completions", [], b'{"p": "x %s y"}' % secret.encode()
        ),
        RecordedResponse(200, [], body=b"{}"),
    )
    path = tmp_path / "c.msgpack"
    path.write_bytes(encode([item], {}))
    code, out, _ = _run(capsys, "verify", str(path))
    assert code == 1 and "provider key" in out and secret not in out


def test_verify_finds_nothing_to_verify_in_an_empty_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = _run(capsys, "verify", str(tmp_path))
    assert code == 1 and "no cassette found here" in out and "no problems" not in out


def test_diff_of_two_folders_says_to_name_files_not_to_delete_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    code, _, err = _run(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 2 and "it is a directory" in err and "llmreplay ls DIR" in err
    assert "delete" not in err


def test_the_default_folder_is_the_projects_wherever_the_command_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "src" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nllm_cassette_dir = "tests/cassettes"\n'
    )
    shutil.copytree(EXAMPLES, project / "tests" / "cassettes")
    monkeypatch.chdir(project / "src" / "deep")
    code, out, _ = _run(capsys, "verify")
    assert code == 0 and "7 cassette(s)" in out
    # Without an ini file: the nearest project marker, as the plugin does.
    other = tmp_path / "other"
    (other / "a").mkdir(parents=True)
    (other / ".git").mkdir()
    shutil.copytree(EXAMPLES, other / "fixtures" / "cassettes")
    monkeypatch.chdir(other / "a")
    code, out, _ = _run(capsys, "ls")
    assert code == 0 and "test_app" in out
