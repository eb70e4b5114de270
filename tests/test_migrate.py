"""``llmreplay migrate``: a pytest-recording project (fixtures/recording_project), whose
cassettes pytest-recording recorded against the loopback server, passes under
pytest-recording with nothing listening, is migrated in one command, and passes again under
llmreplay, offline, with nothing done by hand.

The project reproduces what real ports met: a custom serializer, same-named tests in two
modules, a vcr_cassette_dir override, extra cassettes, class and module markers, tests and
a conftest fixture reading the vcrpy cassette object, ``pytest_recording_configure``, an
opaque base64 blob holding ``sk-``, a skipped test, a request changed since recording, and
a test using vcrpy's ``use_cassette`` decorator directly (left to vcrpy, and reported).
Every pytest run is a subprocess with its own environment: pytest-recording on the path
for the "before" half and for migrate (as in the project before migrating; without it,
migrate reads the project through llmreplay's compatibility layer), ``-p no:recording``
for the "after" half.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import llmreplay
from llmreplay import _migrate_markers, _migrate_probe
from llmreplay._cli import main
from llmreplay._migrate import _notes, judge, measure, migrate
from llmreplay._migrate_report import Report, render
from llmreplay._vcr import load_vcr

ROOT = Path(__file__).parent.parent
PROJECT = ROOT / "fixtures" / "recording_project"
REALWORLD = ROOT / "fixtures" / "realworld" / "cassettes"
# pytest-recording is not in the dev extra (installed, it would turn llmreplay's
# compatibility layer off in every pytester run); point this at a `pip install --target`
# folder of it, or install it in the environment, to run the "before" half.
SITE = os.environ.get("LLMREPLAY_TEST_PYTEST_RECORDING", "")
HAS_RECORDING = bool(SITE) or importlib.util.find_spec("pytest_recording") is not None
needs_recording = pytest.mark.skipif(
    not HAS_RECORDING,
    reason="pytest-recording is not installed (pip install pytest-recording==0.14.1, or "
    "LLMREPLAY_TEST_PYTEST_RECORDING=<a pip --target folder holding it>)",
)
DEAD_URL = "http://127.0.0.1:9/v1"  # where the cassettes say they were recorded
STALE = ["tests/test_chat.py::test_request_changed_since_recording",
         "tests/test_chat.py::test_several_cassettes"]  # fmt: skip


def _env(base_url: str, *, recording: bool, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMREPLAY", "PYTEST_"))}
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != SITE]
    if recording and SITE:
        paths.insert(0, SITE)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return {**env, "PROJECT_BASE_URL": base_url, **extra}


def _pytest(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _migrate(project: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "llmreplay", "migrate", "tests", "--json", *args],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and ".llmreplay" not in p.parts
    }


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    """A copy of the project; its cassettes were recorded by pytest-recording against the
    loopback server, whose address now answers nothing (see its README)."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy, DEAD_URL


@needs_recording
def test_the_project_passes_under_pytest_recording(project: tuple[Path, str]) -> None:
    folder, url = project
    before = _pytest(folder, _env(url, recording=True), "--record-mode=none")
    assert before.returncode == 0, before.stdout + before.stderr
    assert "12 passed, 1 skipped" in before.stdout


def test_migrate_write_then_the_suite_passes_offline_under_llmreplay(
    project: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = project
    before = _tree(folder)

    # The dry run (in this process, the pytest runs in subprocesses): the whole report,
    # the stale tests measured on a staging copy.
    for name in [k for k in os.environ if k.startswith(("LLMREPLAY", "PYTEST_"))]:
        monkeypatch.delenv(name)
    for name, value in _env(url, recording=True).items():
        monkeypatch.setenv(name, value)
    dry = migrate(folder / "tests", cwd=folder)
    report = json.loads(json.dumps(dry.as_dict()))
    assert report["write"] is False and _tree(folder) == before
    text = render(dry)
    assert "dry run: nothing changed" in text and "would write 12 (14 interactions)" in text
    assert "stale recordings: 2 test(s)" in text and "choose: re-record them" in text
    assert "not measured in a dry run (cassettes in its vcr_cassette_dir)" in text
    assert "would write llm_cassette_config into" in text and "left to you:" in text
    assert (report["tests"], report["marked"]) == (13, 12)
    assert len(report["cassettes"]) == 12 and report["interactions"] == 14
    assert report["refused"] == [] and report["errors"] == []
    assert report["no_cassette"] == ["tests/test_chat.py::test_skipped"]
    assert [s["nodeid"] for s in report["stale"]] == STALE
    assert report["unmeasured"] == ["tests/test_tools.py::test_create"]  # its own folder
    assert report["failing"] == []
    assert report["vcr_fixture"] == ["tests/test_chat.py::test_reads_the_cassette"]
    assert report["matching"]["snippet"] == "to write"
    assert report["matching"]["explicit"] == {"method, path, body": 1}
    targets = sorted(Path(c["target"]).relative_to(folder).as_posix() for c in report["cassettes"])
    assert "tests/cassettes/tools_recorded/test_create.msgpack" in targets  # its own folder
    assert "fixtures/cassettes/tests/test_tools/test_create.msgpack" not in targets
    assert "fixtures/cassettes/tests/test_chat/test_create.msgpack" in targets  # same name
    assert "fixtures/cassettes/tests/test_chat/shared.msgpack" in targets  # an extra
    assert "fixtures/cassettes/tests/test_chat/test_custom_serializer.msgpack" in targets
    assert "fixtures/cassettes/tests/test_chat/test_parametrized-alpha.msgpack" in targets
    assert len(report["markers"]) == 11 and not any(m["rewritten"] for m in report["markers"])
    assert any("use_cassette" in n and "test_chat.py" in n for n in report["notes"])
    assert any("serializer" in n and "decode_compressed_response" in n for n in report["notes"])

    # --write: one command, then nothing by hand.
    code, written = _migrate(folder, _env(url, recording=True), "--write", "--rewrite-markers",
                             "--no-run")  # fmt: skip
    assert code == 0 and written["cassettes"] == report["cassettes"]
    assert written["matching"]["snippet"] == "written"
    assert [m["rewritten"] for m in written["markers"]] == [
        m["rewritable"] for m in report["markers"]
    ]
    assert sum(m["rewritten"] for m in written["markers"]) == 9
    assert all(m["reason"] for m in written["markers"] if not m["rewritable"])
    migrated = _tree(folder)
    assert {k: migrated[k] for k in before if "cassettes/" in k} == {
        k: v for k, v in before.items() if "cassettes/" in k
    }  # the YAML cassettes are left for the user to delete
    changed = sorted(k for k in migrated if migrated[k] != before.get(k))
    assert changed == sorted(
        ["tests/conftest.py", "tests/test_chat.py", "tests/test_tools.py", *targets]
    )

    # The migrated cassettes pass the CI check, the opaque blob holding "sk-" included.
    verify = subprocess.run(
        [sys.executable, "-m", "llmreplay", "verify", "fixtures/cassettes"],
        cwd=folder, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0 and "verified 11 cassette(s)" in verify.stdout, verify.stdout

    # The after half: pytest-recording out of the way, the server long gone.
    after = _pytest(folder, _env(url, recording=False), "-p", "no:recording")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "12 passed, 1 skipped" in after.stdout
    assert "0 cassette(s) written" in after.stdout and "0 live" in after.stdout
    assert _tree(folder) == migrated  # the run wrote no cassette


def test_a_cassette_in_the_way_is_refused_unless_overwrite(project: tuple[Path, str]) -> None:
    folder, url = project
    target = folder / "fixtures/cassettes/tests/test_chat/test_create.msgpack"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"someone else's")
    conftest = (folder / "tests" / "conftest.py").read_text()
    args = ("--write", "--no-run", "--matching", "llmreplay")
    code, report = _migrate(folder, _env(url, recording=True), *args)
    assert code == 1 and target.read_bytes() == b"someone else's"
    assert report["matching"]["snippet"] is None  # llmreplay's matching: nothing to keep
    assert (folder / "tests" / "conftest.py").read_text() == conftest
    (refused,) = report["refused"]
    assert refused["source"].endswith("test_chat/test_create.yaml")
    assert "--overwrite" in refused["reason"] and len(report["cassettes"]) == 11
    code, report = _migrate(folder, _env(url, recording=True), "--write", "--no-run",
                            "--overwrite")  # fmt: skip
    assert code == 0 and len(llmreplay.cassette(target).interactions) == 1
    assert len(report["cassettes"]) == 1 and len(report["unchanged"]) == 11  # idempotent
    assert report["matching"]["snippet"] == "written"


@pytest.fixture
def realworld_project(tmp_path: Path) -> Path:
    """fixtures/realworld laid out as pytest-recording does: one test module per source,
    its cassettes in ``tests/cassettes/<module>/<test>.yaml``."""
    project = tmp_path / "realworld"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    for source in sorted(REALWORLD.glob("*.yaml")):
        origin, name = source.name.split("__", 1)
        module = "test_" + origin.replace("-", "_")
        (project / "tests" / f"{module}.py").write_text("def test_collected():\n    pass\n")
        folder = project / "tests" / "cassettes" / module
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / name)
    return project


EARLY = """
import pytest

@pytest.fixture(scope="module", autouse=True)
def database():
    raise RuntimeError("no database")

def test_x():
    pass
"""


def test_the_realworld_cassettes_in_pytest_recording_s_layout(
    realworld_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(realworld_project)
    site = realworld_project / "tests" / ".venv" / "site-packages" / "pkg"
    (site / "cassettes" / "test_pkg").mkdir(parents=True)
    shutil.copy(next(REALWORLD.glob("*.yaml")), site / "cassettes" / "test_pkg" / "t.yaml")
    (site / "test_pkg.py").write_text("import pytest\n\n@pytest.mark.vcr\ndef test_t(): ...\n")
    (realworld_project / "tests" / "test_broken.py").write_text("import no_such_module\n")
    (realworld_project / "tests" / "test_early.py").write_text(EARLY)
    clash = realworld_project / "tests/cassettes/test_llm/test_tool_use_basic.json"
    clash.write_text(json.dumps(yaml.safe_load(clash.with_suffix(".yaml").read_text())))
    code = main(["migrate", "tests", "--write", "--no-run", "--rewrite-markers", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    broken, early = report["errors"]  # named, never silently left out
    assert broken["nodeid"] == "tests/test_broken.py" and "no_such_module" in broken["error"]
    assert early["nodeid"] == "tests/test_early.py::test_x" and "no database" in early["error"]
    lost = len(load_vcr(clash.with_suffix(".yaml")))
    assert len(report["cassettes"]) == 96 and report["interactions"] == 115 - lost
    assert sorted(Path(r["source"]).name for r in report["refused"]) == [
        "test_tool_use_basic.json",
        "test_tool_use_basic.yaml",
    ]
    written = sorted((realworld_project / "fixtures" / "cassettes").rglob("*.msgpack"))
    assert len(written) == 96  # nothing from an environment inside the tests folder
    assert "mark.vcr" in (site / "test_pkg.py").read_text() and report["markers"] == []
    assert sum(len(llmreplay.cassette(p).interactions) for p in written) == 115 - lost
    names = {p.relative_to(realworld_project / "fixtures/cassettes").as_posix() for p in written}
    assert "tests/test_otel_contrib/test_responses_create_token_usage-content_mode0.msgpack" in (
        names
    )


def test_bad_usage_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["migrate", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["migrate", str(tmp_path), "--rewrite-markers"]) == 2
    assert "--write" in capsys.readouterr().err


def test_migrate_without_the_vcr_extra_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "vcr", None)
    assert main(["migrate", str(tmp_path)]) == 2
    assert "pip install 'pytest-llmreplay[vcr]'" in capsys.readouterr().err


MARKED = """\
import pytest

pytestmark = [pytest.mark.vcr, pytest.mark.slow]
NOTE = "pytest.mark.vcr in a string stays"  # pytest.mark.vcr in a comment stays


@pytest.mark.vcr
def test_a(): ...


@pytest.mark.vcr()
def test_b(): ...


@pytest.mark.vcr("extra.yaml")
def test_c(): ...


@pytest.mark.vcr(match_on=["method"])
def test_d(): ...


@pytest.mark.vcr_other
@other.pytest.mark.vcr
def test_e(): ...
"""


def test_markers_are_rewritten_only_where_it_means_the_same(tmp_path: Path) -> None:
    path = tmp_path / "test_marked.py"
    path.write_text(MARKED)
    uses = _migrate_markers.scan(path)
    assert [(u.line, u.rewritable) for u in uses] == [
        (3, True), (7, True), (11, True), (15, False), (19, False)
    ]  # fmt: skip
    assert _migrate_markers.rewrite(path) == 3
    text = path.read_text()
    assert text == (
        MARKED.replace("[pytest.mark.vcr,", "[pytest.mark.llmreplay,")
        .replace("@pytest.mark.vcr\ndef", "@pytest.mark.llmreplay\ndef")
        .replace("@pytest.mark.vcr()\n", "@pytest.mark.llmreplay\n")
    )
    assert (
        text.count("pytest.mark.vcr") == 6
    )  # string, comment, 2 with arguments, vcr_other, other.
    assert _migrate_markers.rewrite(path) == 0


def test_the_matching_fixture_is_written_once_and_never_over_the_project_s(
    tmp_path: Path,
) -> None:
    from llmreplay._migrate import _matching, snippet

    rows: list[dict[str, Any]] = [
        {"nodeid": "t::a", "marked": True, "match_on": None},
        {"nodeid": "t::b", "marked": True, "match_on": ["method", "body"]},
        {"nodeid": "t::c", "marked": False, "match_on": None},
    ]
    conftest = tmp_path / "conftest.py"
    found = _matching(rows, tmp_path, "vcrpy")
    assert (found["vcrpy_default"], found["explicit"]) == (1, {"method, body": 1})
    assert found["snippet"] == "to write"
    conftest.write_text("import pytest\n" + snippet(found["match_on"]))
    assert _matching(rows, tmp_path, "vcrpy")["snippet"] == "present"
    namespace: dict[str, Any] = {}
    exec(compile(conftest.read_text(), str(conftest), "exec"), namespace)
    assert "llm_cassette_config" in namespace  # the snippet is valid Python as appended
    conftest.write_text("def llm_cassette_config():\n    return {}\n")
    assert _matching(rows, tmp_path, "vcrpy")["snippet"].startswith("blocked")
    assert _matching(rows, tmp_path, "llmreplay")["snippet"] is None
    assert _matching(rows[1:], tmp_path, "vcrpy")["snippet"] is None  # nobody relies on it


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["nodeid"]: row for row in rows}


TRANSFORMED = """
import pytest

pytestmark = pytest.mark.vcr


@pytest.fixture(scope="module")
def vcr_config():
    return {"path_transformer": lambda path: path + ".cassette.yml"}


def test_x():
    pass
"""


def test_the_probe_reads_the_project_as_its_own_pytest_sees_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # In this process (so that what the subprocesses above run is also measured here).
    shutil.copytree(PROJECT, pytester.path, dirs_exist_ok=True)
    (pytester.path / "tests" / "test_transformed.py").write_text(TRANSFORMED)
    cassettes = pytester.path / "tests" / "cassettes" / "test_transformed"
    cassettes.mkdir()
    shutil.copy(next(REALWORLD.glob("otel-contrib__test_chat_completion_with_content.yaml")),
                cassettes / "test_x.cassette.yml")  # fmt: skip
    stage = tmp_path / "stage"
    stage.mkdir()
    monkeypatch.setenv(_migrate_probe.PROBE, str(tmp_path / "probe.jsonl"))
    monkeypatch.setenv(_migrate_probe.STAGE, str(stage))
    monkeypatch.setenv("PROJECT_BASE_URL", DEAD_URL)
    result = pytester.runpytest_inprocess("tests", "-p", "llmreplay._migrate_probe",
                                          "-p", "no:randomly", "--record-mode=none")  # fmt: skip
    outcomes = result.parseoutcomes()  # no body ran (a setup may fail: the extra cassette
    assert "failed" not in outcomes and "passed" not in outcomes  # is not migrated yet)
    rows = _rows(tmp_path / "probe.jsonl")
    assert len(rows) == 14 and not any("error" in row for row in rows.values())
    transformed = rows["tests/test_transformed.py::test_x"]["own"]  # the project's own names
    assert transformed["source"].endswith("test_x.cassette.yml") and transformed["interactions"]
    custom = rows["tests/test_chat.py::test_custom_serializer"]
    assert custom["serializer"] == "parsed" and custom["own"]["interactions"] == 1
    assert custom["own"]["source"].endswith("test_chat/test_custom_serializer.parsed")
    tools = rows["tests/test_tools.py::test_create"]
    assert tools["own_vcr_dir"] and tools["match_on"] == ["method", "path", "body"]
    assert tools["own"]["target"].endswith("tests/cassettes/tools_recorded/test_create.msgpack")
    several = rows["tests/test_chat.py::test_several_cassettes"]
    assert [e["target"].rsplit("/", 2)[-2:] for e in several["extras"]] == [
        ["test_chat", "shared.msgpack"]
    ]
    assert rows["tests/test_chat.py::test_skipped"]["own"]["missing"]
    assert rows["tests/test_chat.py::test_vcrpy_decorator"]["marked"] is False
    readers = [nodeid for nodeid, row in rows.items() if row["uses_vcr_fixture"]]
    assert readers == ["tests/test_chat.py::test_reads_the_cassette"]
    assert len(list(stage.glob("*.msgpack"))) == 13
    assert not (pytester.path / "fixtures").exists()  # the probe wrote nothing in the project


YAML_BY_ANOTHER_FORMAT = """
from custom_format import ParsedSerializer


def pytest_recording_configure(config, vcr):
    vcr.register_serializer("yaml", ParsedSerializer())  # vcrpy's own name, replaced
"""


def test_a_project_serializer_registered_as_yaml_reads_its_cassettes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tests = pytester.path / "tests"
    (tests / "cassettes" / "test_x").mkdir(parents=True)
    shutil.copy(PROJECT / "tests" / "custom_format.py", tests / "custom_format.py")
    (tests / "conftest.py").write_text(YAML_BY_ANOTHER_FORMAT)
    (tests / "test_x.py").write_text("import pytest\n\n@pytest.mark.vcr\ndef test_a():\n    pass\n")
    parsed = PROJECT / "tests" / "cassettes" / "test_chat" / "test_custom_serializer.parsed"
    shutil.copy(parsed, tests / "cassettes" / "test_x" / "test_a.yaml")  # not vcrpy's YAML
    stage = tmp_path / "stage"
    stage.mkdir()
    monkeypatch.setenv(_migrate_probe.PROBE, str(tmp_path / "probe.jsonl"))
    monkeypatch.setenv(_migrate_probe.STAGE, str(stage))
    pytester.syspathinsert(tests)
    pytester.runpytest_inprocess("tests", "-p", "llmreplay._migrate_probe", "-p", "no:randomly",
                                 "--record-mode=none")  # fmt: skip
    row = _rows(tmp_path / "probe.jsonl")["tests/test_x.py::test_a"]
    assert row["serializer"] == "yaml" and "error" not in row["own"], row
    assert row["own"]["interactions"] == 1


def test_a_project_persister_is_named_with_what_to_do(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A persister keeps recordings where migrate does not read: the report names it and
    says how to move them, rather than only listing its tests as never recorded."""
    tests = pytester.path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text(
        "class SQLitePersister:\n    pass\n\n\n"
        "def pytest_recording_configure(config, vcr):\n"
        "    vcr.register_persister(SQLitePersister)\n"
    )
    (tests / "test_x.py").write_text("import pytest\n\n@pytest.mark.vcr\ndef test_a():\n    pass\n")
    stage = tmp_path / "stage"
    stage.mkdir()
    monkeypatch.setenv(_migrate_probe.PROBE, str(tmp_path / "probe.jsonl"))
    monkeypatch.setenv(_migrate_probe.STAGE, str(stage))
    pytester.runpytest_inprocess("tests", "-p", "llmreplay._migrate_probe", "-p", "no:randomly",
                                 "--record-mode=none")  # fmt: skip
    rows = list(_rows(tmp_path / "probe.jsonl").values())
    assert rows[0]["persisters"] == ["conftest.SQLitePersister"] and rows[0]["own"]["missing"]
    (note,) = [n for n in _notes(rows, []) if "persister" in n]
    assert "conftest.SQLitePersister" in note and "--llm-mode=record" in note


def test_the_probe_follows_a_project_default_cassette_name(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tests = pytester.path / "tests"
    (tests / "cassettes" / "test_x").mkdir(parents=True)
    (tests / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef default_cassette_name(request):\n"
        "    return 'shared-' + request.node.name.upper()\n"
    )
    (tests / "test_x.py").write_text("import pytest\n\n@pytest.mark.vcr\ndef test_a():\n    pass\n")
    chat = next(REALWORLD.glob("otel-contrib__test_chat_completion_with_content.yaml"))
    shutil.copy(chat, tests / "cassettes" / "test_x" / "shared-TEST_A.yaml")
    stage = tmp_path / "stage"
    stage.mkdir()
    monkeypatch.setenv(_migrate_probe.PROBE, str(tmp_path / "probe.jsonl"))
    monkeypatch.setenv(_migrate_probe.STAGE, str(stage))
    pytester.runpytest_inprocess("tests", "-p", "llmreplay._migrate_probe", "-p", "no:randomly",
                                 "--record-mode=none")  # fmt: skip
    own = _rows(tmp_path / "probe.jsonl")["tests/test_x.py::test_a"]["own"]
    assert own["source"].endswith("test_x/shared-TEST_A.yaml") and own["interactions"], own
    assert own["target"].endswith("cassettes/test_x/shared-TEST_A.msgpack"), own  # the plugin's


def test_the_measure_counts_misses_under_the_body_key_and_restores_the_class(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from llmreplay._cassette import Cassette

    shutil.copytree(PROJECT, pytester.path, dirs_exist_ok=True)
    monkeypatch.setenv("PROJECT_BASE_URL", DEAD_URL)
    broken = (
        "import pytest\n\n@pytest.mark.vcr\ndef test_boom():\n    raise ValueError('boom\\nmore')\n"
    )
    (pytester.path / "tests" / "test_broken.py").write_text(broken)
    migrate(pytester.path / "tests", write=True, run=False, cwd=pytester.path)
    original = Cassette.__init__
    monkeypatch.setenv(_migrate_probe.MEASURE, str(tmp_path / "measure.jsonl"))
    result = pytester.runpytest_inprocess("tests", "-p", "llmreplay._migrate_probe",
                                          "-p", "no:recording", "-p", "no:randomly",
                                          "--llm-mode=replay")  # fmt: skip
    result.assert_outcomes(passed=10, failed=3, skipped=1)
    rows = _rows(tmp_path / "measure.jsonl")
    assert sorted(nodeid for nodeid, row in rows.items() if row["misses"]) == STALE
    assert rows["tests/test_broken.py::test_boom"]["cause"] == "ValueError: boom"
    assert rows["tests/test_chat.py::test_create"]["cause"] is None
    assert Cassette.__init__ is original  # put back at the end of the run


def test_a_measuring_run_that_stops_early_says_so(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(
        test_stop="""
        def test_first():
            pass

        def test_stops():
            import pytest
            pytest.exit("the suite stopped itself", returncode=2)

        def test_never_run():
            pass
        """
    )
    rows, unfinished = measure(pytester.path, pytester.path, tmp_path / "m.jsonl", None)
    assert [row["nodeid"] for row in rows] == ["test_stop.py::test_first"]
    assert unfinished is not None and "pytest exit 2 after 1 test(s)" in unfinished
    report = Report(write=False, stale=[], unfinished=unfinished)
    report.failing = [{"nodeid": "t.py::test_x", "cause": "OSError: refused"}]
    text = render(report)
    assert "the measuring run did not finish (pytest exit 2" in text and "partial" in text
    assert "failing with no unmatched request: t.py::test_x: OSError: refused" in text
    assert "another reason" not in text


def test_the_measuring_run_runs_only_the_tests_that_use_cassettes(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(
        test_mixed="""
        import pathlib

        def test_uses_a_cassette():
            pass

        def test_unrelated():
            pathlib.Path("unrelated-ran").write_text("it ran")
        """
    )
    only = ["test_mixed.py::test_uses_a_cassette"]
    rows, unfinished = measure(pytester.path, pytester.path, tmp_path / "m.jsonl", None, only)
    assert [row["nodeid"] for row in rows] == only and unfinished is None
    assert not (pytester.path / "unrelated-ran").exists()


def test_stale_counts_only_tests_whose_recording_was_converted() -> None:
    rows: list[dict[str, Any]] = [
        {"nodeid": "t.py::converted", "own": {"source": "a.yaml", "interactions": 1}},
        {"nodeid": "t.py::extra_only", "own": {"missing": True}, "extras": [{"source": "s"}]},
        {"nodeid": "t.py::never_recorded", "own": {"missing": True}},
        {"nodeid": "t.py::broken", "own": {"source": "b.yaml", "interactions": 1}},
    ]
    miss = "CassetteMiss: no recording for POST /v1/chat/completions"
    measured = [
        {"nodeid": "t.py::converted", "outcome": "failed", "misses": 1, "cause": miss},
        {"nodeid": "t.py::extra_only", "outcome": "failed", "misses": 2, "cause": miss},
        {"nodeid": "t.py::never_recorded", "outcome": "failed", "misses": 1, "cause": miss},
        {"nodeid": "t.py::broken", "outcome": "failed", "misses": 0, "cause": "KeyError: 'x'"},
    ]
    stale, failing = judge(measured, rows)
    assert [m["nodeid"] for m in stale] == ["t.py::converted", "t.py::extra_only"]
    assert [m["nodeid"] for m in failing] == ["t.py::never_recorded", "t.py::broken"]


def test_every_row_of_the_readme_s_pytest_recording_table_names_a_test_that_exists() -> None:
    readme = (ROOT / "docs" / "migrating.md").read_text()
    section = readme.split("## Coming from pytest-recording", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    defined = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    cited = 0
    for row in rows[1:]:
        cells = row.strip("|").split(" | ")
        names = [n for n in cells[-1].split("`") if n.startswith("test_")]
        assert names or "the same" in cells[-1], row
        for name in names:
            prefix = name.rstrip("…")
            assert f"def {prefix}" in defined, f"{name} in docs/migrating.md names no test"
            cited += 1
    assert cited >= 20
