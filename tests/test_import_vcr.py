"""``llmreplay import-vcr``: folders keep their layout, nothing is overwritten unseen, the count
reported is the files written, and a project's own serializer can be plugged in."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import llmreplay
from llmreplay._cli import main

REALWORLD = Path(__file__).parent.parent / "fixtures" / "realworld" / "cassettes"
CHAT = REALWORLD / "otel-contrib__test_chat_completion_with_content.yaml"
STREAM = REALWORLD / "llm__test_responses_basic_streaming.yaml"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else {}), err


def _written(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.msgpack"))


def test_a_tree_keeps_its_folders_and_same_names_in_two_modules_both_survive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tree = tmp_path / "cassettes"
    for module, source in (("test_users", CHAT), ("test_profiles", STREAM)):
        (tree / module).mkdir(parents=True)
        shutil.copy(source, tree / module / "test_create.yaml")
    (tree / "test_users" / "nested").mkdir()
    shutil.copy(CHAT, tree / "test_users" / "nested" / "Class.test_x[a-b].yaml")
    out = tmp_path / "out"

    code, report, _ = _run(capsys, "import-vcr", str(tree), "-o", str(out))

    assert code == 0
    assert _written(out) == [
        "test_profiles/test_create.msgpack",
        "test_users/nested/Class.test_x-a-b.msgpack",  # the plugin's name for that test
        "test_users/test_create.msgpack",
    ]
    assert len(report["imported"]) == len(_written(out)) and report["skipped"] == []
    users = llmreplay.cassette(out / "test_users" / "test_create.msgpack").interactions
    profiles = llmreplay.cassette(out / "test_profiles" / "test_create.msgpack").interactions
    assert "chat/completions" in users[0].request.url
    assert "responses" in profiles[0].request.url


def test_two_inputs_for_one_output_write_neither_and_say_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(CHAT, tmp_path / folder / "test_x.yaml")
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(CHAT, tree / "t.yaml")
    (tree / "t.json").write_text(json.dumps(yaml.safe_load(CHAT.read_text())))
    shutil.copy(STREAM, tree / "fine.yaml")
    out = tmp_path / "out"

    code, report, _ = _run(
        capsys, "import-vcr", str(tmp_path / "a/test_x.yaml"), str(tmp_path / "b/test_x.yaml"),
        str(tree), "-o", str(out),
    )  # fmt: skip

    assert code == 1
    assert _written(out) == ["fine.msgpack"]  # and nothing else, not one of each pair
    assert [row["cassette"] for row in report["imported"]] == [str(out / "fine.msgpack")]
    reasons = {Path(row["path"]).relative_to(tmp_path).as_posix(): row["reason"] for row in
               report["skipped"]}  # fmt: skip
    assert sorted(reasons) == ["a/test_x.yaml", "b/test_x.yaml", "tree/t.json", "tree/t.yaml"]
    assert str(tmp_path / "b/test_x.yaml") in reasons["a/test_x.yaml"]
    assert str(tmp_path / "tree/t.yaml") in reasons["tree/t.json"]
    assert all("nothing was written" in reason for reason in reasons.values())


def test_an_existing_cassette_is_kept_unless_overwrite_is_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "test_x.msgpack").write_bytes(b"mine")
    shutil.copy(CHAT, tmp_path / "test_x.yaml")

    code, report, _ = _run(capsys, "import-vcr", str(tmp_path / "test_x.yaml"), "-o", str(out))
    assert code == 1 and report["imported"] == []
    assert "--overwrite" in report["skipped"][0]["reason"]
    assert (out / "test_x.msgpack").read_bytes() == b"mine"

    args = ("import-vcr", str(tmp_path / "test_x.yaml"), "-o", str(out), "--overwrite")
    code, report, _ = _run(capsys, *args)
    assert code == 0 and len(report["imported"]) == 1
    assert len(llmreplay.cassette(out / "test_x.msgpack").interactions) == 1


# A project's own cassette format, as a custom vcrpy serializer writes it: the response body
# parsed into a `parsed_body:` field instead of vcrpy's `body: {string: ...}`.
CUSTOM_FORMAT = '''
from __future__ import annotations

import json

import yaml


def to_custom(cassette: dict) -> str:
    for entry in cassette["interactions"]:
        body = entry["response"].pop("body")["string"]
        entry["response"]["parsed_body"] = json.loads(body)
    return yaml.safe_dump(cassette)


def deserialize(text: str) -> dict:
    data = yaml.safe_load(text)
    for entry in data["interactions"]:
        entry["response"]["body"] = {"string": json.dumps(entry["response"].pop("parsed_body"))}
    return data


class Serializer:
    """As registered with vcr.register_serializer(...)."""

    serialize = staticmethod(lambda data: "")
    deserialize = staticmethod(deserialize)


serializer = Serializer()


def interactions_only(text: str) -> list:
    return deserialize(text)["interactions"]


def as_vcrpy_loads(text: str) -> tuple:
    from vcr.serialize import deserialize as vcrpy_deserialize

    return vcrpy_deserialize(text, Serializer())


def broken(text: str) -> dict:
    raise RuntimeError("cannot read " + text[:5])
'''


@pytest.fixture
def custom_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    project = tmp_path / "project"
    (project / "cassettes").mkdir(parents=True)
    (project / "custom_format.py").write_text(CUSTOM_FORMAT)
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", [*sys.path])  # the hook's folder is added to it
    monkeypatch.delitem(sys.modules, "custom_format", raising=False)
    namespace: dict[str, Any] = {}
    exec(CUSTOM_FORMAT, namespace)
    cassette = yaml.safe_load(CHAT.read_text())
    (project / "cassettes" / "test_x.yaml").write_text(namespace["to_custom"](cassette))
    yield project
    sys.modules.pop("custom_format", None)


def test_a_custom_format_is_unknown_not_broken_and_the_message_names_the_hook(
    capsys: pytest.CaptureFixture[str], custom_project: Path
) -> None:
    code, report, _ = _run(capsys, "import-vcr", "cassettes", "-o", "out")
    assert code == 1 and report["imported"] == []
    reason = report["skipped"][0]["reason"]
    assert "unknown format" in reason and "'response body'" in reason
    assert "--deserializer module:function" in reason
    assert "Re-record" not in reason and "restore it from version control" not in reason
    assert not (custom_project / "out").exists()


@pytest.mark.parametrize(
    "reference",
    [
        "custom_format:deserialize",
        "custom_format:serializer",  # a vcrpy serializer object: its deserialize is used
        "custom_format:Serializer.deserialize",
        "custom_format:interactions_only",  # the list of interactions
        "custom_format:as_vcrpy_loads",  # vcr.serialize.deserialize's (requests, responses)
        "custom_format.py:deserialize",  # a file path
    ],
)
def test_the_project_deserializer_reads_its_cassettes(
    capsys: pytest.CaptureFixture[str], custom_project: Path, reference: str
) -> None:
    args = ("import-vcr", "cassettes", "-o", "out", "--deserializer", reference)
    code, report, _ = _run(capsys, *args)
    assert code == 0, report
    assert [row["interactions"] for row in report["imported"]] == [1]
    item = llmreplay.cassette(custom_project / "out" / "test_x.msgpack").interactions[0]
    original = yaml.safe_load(CHAT.read_text())["interactions"][0]["response"]["body"]["string"]
    assert json.loads(item.response.content) == json.loads(original)


def test_a_deserializer_that_fails_or_cannot_be_found(
    capsys: pytest.CaptureFixture[str], custom_project: Path
) -> None:
    args = ("import-vcr", "cassettes", "-o", "out", "--deserializer", "custom_format:broken")
    code, report, _ = _run(capsys, *args)
    assert code == 1
    assert "RuntimeError: cannot read" in report["skipped"][0]["reason"]
    for bad in ("custom_format", "no_such_module:f", "custom_format:nothing", "missing.py:f"):
        code, report, err = _run(capsys, "import-vcr", "cassettes", "-o", "out",
                                 "--deserializer", bad)  # fmt: skip
        assert (code, report) == (2, {}), bad
        assert "--deserializer" in err and "Traceback" not in err
    assert not (custom_project / "out").exists()


def test_not_yaml_and_not_text_are_unknown_formats(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text("key: [unclosed\n")
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "c.json").write_text("{not json")
    (tmp_path / "d.yaml").write_text("interactions:\n- request: {method: GET}\n  response: {}\n")
    (tmp_path / "e.yaml").write_text("just: a mapping\n")
    (tmp_path / "f.yaml").write_text("interactions:\n- just a string\n")
    bad_status = yaml.safe_load(CHAT.read_text())
    bad_status["interactions"][0]["response"]["status"] = {"code": "two hundred"}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(bad_status))
    code, report, _ = _run(capsys, "import-vcr", str(tmp_path), "-o", str(tmp_path / "out"))
    reasons = {Path(r["path"]).name: r["reason"] for r in report["skipped"]}
    assert code == 1 and report["imported"] == []
    assert "it is not YAML" in reasons["a.yaml"]
    assert "not UTF-8 text" in reasons["b.yaml"]
    assert "it is not JSON" in reasons["c.json"]
    assert "interaction 0 has no 'uri'" in reasons["d.yaml"]
    assert "it has no 'interactions' list" in reasons["e.yaml"]
    assert "interaction 0 has no 'request' and 'response'" in reasons["f.yaml"]
    assert "interaction 0 does not read as vcrpy's" in reasons["g.yaml"]
    assert all("unknown format" in r for r in reasons.values())


def test_a_missing_input_is_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "import-vcr", str(tmp_path / "nope"), "-o", str(tmp_path))
    assert code == 2 and "no such file or folder" in err


def test_the_fixture_project_s_own_format_with_its_own_serializer_class(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", [*sys.path])  # the hook's folder is added to it
    project = Path(__file__).parent.parent / "fixtures" / "recording_project" / "tests"
    source = project / "cassettes" / "test_chat" / "test_custom_serializer.parsed"
    code, report, _ = _run(capsys, "import-vcr", str(source), "-o", str(tmp_path))
    assert code == 1 and "unknown format" in report["skipped"][0]["reason"]
    hook = f"{project / 'custom_format.py'}:ParsedSerializer"
    code, report, _ = _run(
        capsys, "import-vcr", str(source), "-o", str(tmp_path), "--deserializer", hook
    )
    assert code == 0 and report["imported"][0]["interactions"] == 1
    (item,) = llmreplay.cassette(tmp_path / "test_custom_serializer.msgpack").interactions
    assert json.loads(item.response.content)["choices"][0]["message"]["content"].endswith("parsed")


def test_import_vcr_names_each_file_as_the_plugin_looks_for_it(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    # One naming function (llmreplay._names): pytest-recording's file for a test, imported,
    # is the file the plugin opens for that test, brackets, classes and odd ids included.
    # (An id with one of pytest-recording's forbidden characters, "/" say, lost it in the
    # file name: only migrate, which knows the test, can name that one.)
    from llmreplay._vcr_import import sources
    from llmreplay.pytest_plugin import cassette_path

    items = pytester.getitems(
        """
        import pytest

        @pytest.mark.parametrize("word", ["alpha", "Beta", "a b", "x=1,y"])
        def test_p(word):
            pass

        class TestGroup:
            def test_m(self):
                pass
        """
    )
    tree = tmp_path / "cassettes"
    module = items[0].path.stem
    for item in items:  # where pytest-recording keeps each (forbidden characters -> "-")
        name = ".".join(item.nodeid.split("::")[1:])  # Class.test, as pytest-recording
        vcr_file = tree / module / (name + ".yaml")
        vcr_file.parent.mkdir(parents=True, exist_ok=True)
        vcr_file.write_text("interactions: []\nversion: 1\n")
    out = tmp_path / "out"
    targets = {source.stem: target for source, target in sources([tree], out)}
    for item in items:
        name = ".".join(item.nodeid.split("::")[1:])  # Class.test, as pytest-recording
        expected = cassette_path(item, out)
        assert targets[name].name == expected.name, name
