"""``llmreplay merge``: three-way merge of cassettes by request key, and a real ``git merge``
of two branches that recorded into one cassette through the merge driver."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

import llmreplay
from llmreplay._cli import main
from llmreplay._format import Interaction, RecordedRequest, RecordedResponse, decode, encode
from llmreplay._match import KeySpec, RequestView
from tests.helpers import fake_key
from tests.server import LoopbackServer

URL = "https://api.openai.com/v1/chat/completions"


def _item(prompt: str, answer: str, status: int = 200, date: str = "1") -> Interaction:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]}).encode()
    key = KeySpec().key(RequestView("POST", URL, [], body))
    headers = [("date", date)]  # differs between two recordings of one answer
    return Interaction(
        key,
        RecordedRequest("POST", URL, [], body),
        RecordedResponse(status, headers, body=answer.encode()),
        recorded_at=date,
    )


def _write(path: Path, *items: Interaction) -> Path:
    path.write_bytes(encode(list(items), KeySpec().describe()))
    return path


def _answers(path: Path) -> list[tuple[str, str]]:
    return [
        (json.loads(i.request.body)["messages"][0]["content"], i.response.content.decode())
        for i in llmreplay.cassette(path).interactions
    ]


def _merge(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["merge", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_each_side_adds_changes_and_removes_its_own_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = _write(tmp_path / "base", _item("kept", "k"), _item("gone", "g"), _item("old", "o1"))
    ours = _write(
        tmp_path / "ours", _item("kept", "k", date="2"), _item("old", "o1"), _item("mine", "m")
    )
    theirs = _write(
        tmp_path / "theirs",
        _item("kept", "k"),
        _item("gone", "g"),
        _item("old", "o2"),  # re-recorded by theirs only
        _item("yours", "y"),
        _item("yours", "y2"),  # a second answer to the same request, in order
    )
    out = tmp_path / "out.msgpack"
    code, report = _merge(capsys, str(base), str(ours), str(theirs), "-o", str(out))
    assert code == 0 and report["conflicts"] == []
    # "gone" was removed by ours and left alone by theirs; "kept" differs only in a header
    assert _answers(out) == [("kept", "k"), ("old", "o2"), ("mine", "m"), ("yours", "y"),
                             ("yours", "y2")]  # fmt: skip
    assert report["interactions"] == 5 and len(report["from_theirs"]) == 2


def test_a_key_both_sides_recorded_differently_is_a_conflict_ours_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = _write(tmp_path / "base", _item("q", "base answer"))
    ours = _write(tmp_path / "ours", _item("q", "our answer"), _item("new", "ours"))
    theirs = _write(tmp_path / "theirs", _item("q", "their answer"), _item("new", "theirs"))
    code, report = _merge(capsys, str(base), str(ours), str(theirs))
    assert code == 1
    assert [c["answers"] for c in report["conflicts"]] == [
        {"base": 1, "ours": 1, "theirs": 1},
        {"base": 0, "ours": 1, "theirs": 1},  # both added it, with different answers
    ]
    assert all(c["kept"] == "ours" and c["request"] == f"POST {URL}" for c in report["conflicts"])
    assert _answers(ours) == [("q", "our answer"), ("new", "ours")]  # written in place

    _write(ours, _item("q", "our answer"), _item("new", "ours"))
    code, report = _merge(capsys, str(base), str(ours), str(theirs), "--prefer", "theirs")
    assert code == 0 and len(report["conflicts"]) == 2
    assert _answers(ours) == [("q", "their answer"), ("new", "theirs")]


def test_the_same_recording_on_both_sides_is_kept_once_and_removal_on_both_is_removal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = _write(tmp_path / "base", _item("both removed", "x"))
    ours = _write(tmp_path / "ours", _item("same", "s", date="a"))
    theirs = _write(tmp_path / "theirs", _item("same", "s", date="b"))
    code, report = _merge(capsys, str(base), str(ours), str(theirs))
    assert (code, report["conflicts"]) == (0, []) and _answers(ours) == [("same", "s")]


def test_an_empty_base_is_git_s_ancestor_of_a_file_both_branches_added(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "base").write_bytes(b"")
    ours = _write(tmp_path / "ours", _item("a", "1"))
    theirs = _write(tmp_path / "theirs", _item("b", "2"))
    code, _ = _merge(capsys, str(tmp_path / "base"), str(ours), str(theirs))
    assert code == 0 and _answers(ours) == [("a", "1"), ("b", "2")]


def test_keys_made_with_other_settings_are_remade_with_ours(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = KeySpec.build(("method", "path"), (), ())
    item = _item("q", "theirs, keyed by method and path")
    item.key = spec.key(RequestView("POST", URL, [], item.request.body))
    (tmp_path / "theirs").write_bytes(encode([item], spec.describe()))
    base = _write(tmp_path / "base")
    ours = _write(tmp_path / "ours", _item("q", "ours"))
    code, report = _merge(capsys, str(base), str(ours), str(tmp_path / "theirs"))
    assert code == 1 and len(report["conflicts"]) == 1  # one request, not two keys


def test_keys_made_with_normalisers_keep_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = KeySpec.build(None, (), (), normalise=("model_date",))

    def dated(model: str, answer: str) -> Interaction:
        body = json.dumps({"model": model, "messages": []}).encode()
        key = spec.key(RequestView("POST", URL, [], body))
        return Interaction(key, RecordedRequest("POST", URL, [], body),
                           RecordedResponse(200, [], body=answer.encode()))  # fmt: skip

    for name, items in (("base", []), ("ours", [dated("gpt-4o-2024-08-06", "a")]),
                        ("theirs", [dated("gpt-4o-2024-11-20", "b")])):  # fmt: skip
        (tmp_path / name).write_bytes(encode(items, spec.describe()))
    code, report = _merge(capsys, *(str(tmp_path / n) for n in ("base", "ours", "theirs")))
    assert code == 1 and len(report["conflicts"]) == 1  # one request once normalised
    _, match = decode((tmp_path / "ours").read_bytes(), "ours")
    assert match["normalise"] == ["model_date"]  # the merged file keeps how keys were made


def test_bad_inputs_are_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ours = _write(tmp_path / "ours", _item("a", "1"))
    (tmp_path / "junk").write_bytes(b"not a cassette")
    assert main(["merge", str(tmp_path / "missing"), str(ours), str(ours)]) == 2
    assert main(["merge", str(ours), str(ours), str(tmp_path / "junk")]) == 2
    assert "junk" in capsys.readouterr().err
    assert _answers(ours) == [("a", "1")]


# -- a real git merge through the driver --------------------------------------------------


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_SYSTEM": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stdout}{done.stderr}")
    return done


def _record(path: Path, server: LoopbackServer, prompt: str, status: str = "") -> None:
    """Record one chat call into the shared cassette, as a test on a branch would."""
    cas = llmreplay.cassette(path, mode="auto")
    headers = {"x-test-status": status} if status else {}
    with (
        cas,
        cas.openai_client(
            base_url=server.url, api_key=fake_key("sk-"), max_retries=0, default_headers=headers
        ) as client,
    ):
        try:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
            )
        except openai.APIStatusError:
            assert status


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    driver = f"{shlex.quote(sys.executable)} -m llmreplay merge %O %A %B"
    _git(repo, "config", "merge.llmreplay.name", "llmreplay cassettes")
    _git(repo, "config", "merge.llmreplay.driver", driver)
    (repo / ".gitattributes").write_text("*.msgpack merge=llmreplay diff=llmreplay\n")
    return repo


def _branches(repo: Path, server: LoopbackServer, a: tuple[str, str], b: tuple[str, str]) -> Path:
    shared = repo / "fixtures" / "cassettes" / "shared.msgpack"
    _record(shared, server, "from main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    for branch, (prompt, status) in (("a", a), ("b", b)):
        _git(repo, "checkout", "-q", "-b", branch, "main")
        _record(shared, server, prompt, status)
        _git(repo, "commit", "-q", "-am", f"record on {branch}")
    _git(repo, "checkout", "-q", "a")
    return shared


def test_git_merges_two_branches_that_recorded_into_one_cassette(
    repo: Path, server: LoopbackServer
) -> None:
    shared = _branches(repo, server, ("from a", ""), ("from b", ""))
    sent = len(server.requests)
    assert sent == 3

    merged = _git(repo, "merge", "--no-edit", "b")
    assert "Merge made by" in merged.stdout
    assert _git(repo, "status", "--porcelain").stdout == ""
    items = llmreplay.cassette(shared).interactions
    prompts = [json.loads(i.request.body)["messages"][0]["content"] for i in items]
    assert prompts == ["from main", "from a", "from b"]
    server.stop()
    replay = llmreplay.cassette(shared)  # every branch's recording replays, offline
    with replay, replay.openai_client(base_url=server.url, api_key="k", max_retries=0) as client:
        for prompt in prompts:
            answer = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
            )
            assert prompt in (answer.choices[0].message.content or "")
    assert replay.stats.played == 3 and len(server.requests) == sent


def test_git_marks_a_real_conflict_and_keeps_ours(repo: Path, server: LoopbackServer) -> None:
    # Both branches record the same request and get different answers.
    shared = _branches(repo, server, ("same question", "404"), ("same question", "400"))
    merged = _git(repo, "merge", "--no-edit", "b", check=False)
    assert merged.returncode == 1 and "CONFLICT" in merged.stdout
    assert "UU fixtures/cassettes/shared.msgpack" in _git(repo, "status", "--porcelain").stdout
    statuses = [i.response.status for i in llmreplay.cassette(shared).interactions]
    assert statuses == [200, 404]  # ours' answer, still a readable cassette
