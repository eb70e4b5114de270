"""Saving: atomic replacement, and parallel writers (threads and processes) lose nothing."""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

import llmreplay


def _echo(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=b"answer to " + request.content)


def _record(path: str, worker: int, count: int) -> None:
    """One writer: records ``count`` distinct requests, saving after each."""
    cas = llmreplay.cassette(path, mode="auto")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client:
        for index in range(count):
            client.post("https://api.openai.com/v1/x", content=f"w{worker}-{index}".encode())
            cas.save()


def _replayed_bodies(path: Path, requests: list[bytes]) -> list[bytes]:
    cas = llmreplay.cassette(path)
    with httpx2.Client(transport=cas.transport()) as client:
        return [client.post("https://api.openai.com/v1/x", content=r).content for r in requests]


def test_four_processes_recording_into_one_cassette_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.msgpack"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_record, args=(str(path), w, 15)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    requests = [f"w{w}-{i}".encode() for w in range(4) for i in range(15)]
    assert _replayed_bodies(path, requests) == [b"answer to " + r for r in requests]
    assert len(llmreplay.cassette(path).interactions) == 60


def test_eight_threads_sharing_a_client_and_a_cassette(tmp_path: Path) -> None:
    path = tmp_path / "threads.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo)))

    wrong: list[bytes] = []  # asserts in threads would not fail the test: collect instead

    def work(worker: int) -> None:
        for index in range(25):
            body = f"t{worker}-{index}".encode()
            answer = client.post("https://api.openai.com/v1/x", content=body).content
            if answer != b"answer to " + body:
                wrong.append(body)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cas.save()
    client.close()
    assert cas.stats.recorded == 200

    # Replay with the same sharing: every thread gets its own recorded answers.
    replay = llmreplay.cassette(path)
    client = httpx2.Client(transport=replay.transport())
    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert replay.stats == llmreplay.Stats(played=200)
    assert wrong == []


def _pending_save(path: Path) -> llmreplay.Cassette:
    """A cassette at ``path`` holding one recording not saved yet."""
    cas = llmreplay.cassette(path, mode="auto")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client:
        client.post("https://api.openai.com/v1/x", content=b"new")
    return cas


def _only_the_cassette_is_left(folder: Path, name: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [".llmreplay", name]
    assert [p.name for p in (folder / ".llmreplay").iterdir()] == [".gitignore"]


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_full_disk_is_a_cassette_error_that_says_what_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "c.msgpack"
    _record(str(path), 0, 1)
    before = path.read_bytes()
    cas = _pending_save(path)

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patched:  # the OS failure, injected for this save only
        patched.setattr(os, failing, full)
        with pytest.raises(llmreplay.CassetteError) as info:
            cas.save()
    assert info.value.path == str(path)
    assert "no space left on the device" in info.value.problem
    assert "its previous version is intact" in info.value.problem
    assert "Free some disk space" in info.value.hint
    assert info.value.__cause__ is None
    assert path.read_bytes() == before
    _only_the_cassette_is_left(tmp_path, "c.msgpack")
    cas.save()  # space again: what was pending is saved now
    assert len(llmreplay.cassette(path).interactions) == 2


def test_a_first_save_on_a_full_disk_says_nothing_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "new.msgpack"
    cas = _pending_save(path)

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", full)
        with pytest.raises(llmreplay.CassetteError, match="no file was written"):
            cas.save()
    assert not path.exists()
    cas._pending.clear()  # nothing left for the at-exit save to report


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` made read-only for real: chmod, or (root ignores modes) the immutable
    attribute, which the kernel enforces even for root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], check=False).returncode:
        pytest.skip("running as root, and this file system has no immutable attribute")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


@pytest.mark.parametrize("first_save", [True, False], ids=["new-folder", "existing"])
def test_a_read_only_folder_is_a_cassette_error_that_keeps_the_file(
    tmp_path: Path, first_save: bool
) -> None:
    folder = tmp_path / "cassettes"
    folder.mkdir()
    path = folder / "c.msgpack"
    if not first_save:  # the temporary folder exists: the rename is what fails
        _record(str(path), 0, 1)
    before = path.read_bytes() if path.exists() else None
    cas = _pending_save(path)
    with _read_only(folder), pytest.raises(llmreplay.CassetteError) as info:
        cas.save()
    assert info.value.path == str(path)
    assert "its folder is not writable" in info.value.problem
    kept = "its previous version is intact" if before else "no file was written"
    assert kept in info.value.problem
    assert f"Make {folder} writable" in info.value.hint
    assert "delete" not in str(info.value).lower()
    assert (path.read_bytes() if path.exists() else None) == before
    cas._pending.clear()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_saved_cassette_honours_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    path = tmp_path / "c.msgpack"
    previous = os.umask(umask)
    try:
        _record(str(path), 0, 1)  # a new file
        assert stat.S_IMODE(path.stat().st_mode) == mode
        _record(str(path), 1, 1)  # and a rewrite
        assert stat.S_IMODE(path.stat().st_mode) == mode
    finally:
        os.umask(previous)


def test_an_unwritable_location_is_a_cassette_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cas = llmreplay.cassette(blocker / "c.msgpack", mode="record")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client:
        client.post("https://api.openai.com/v1/x", content=b"x")
    with pytest.raises(llmreplay.CassetteError, match=r"cannot be (read|written)"):
        cas.save()
    cas._pending.clear()  # nothing left for the at-exit save to report


def test_a_corrupt_file_is_not_overwritten_by_a_save(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    path.write_bytes(b"\x93\x01")
    cas = llmreplay.cassette(path, mode="record")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client:
        client.post("https://api.openai.com/v1/x", content=b"x")
    with pytest.raises(llmreplay.CassetteError, match="truncated"):
        cas.save()
    cas._pending.clear()
    assert path.read_bytes() == b"\x93\x01"


def test_a_lock_that_cannot_be_taken_is_a_cassette_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))  # where lock files go
    path = tmp_path / "cassettes" / "c.msgpack"
    cas = _pending_save(path)
    with pytest.raises(llmreplay.CassetteError) as info:
        cas.save()
    assert info.value.path == str(path)
    assert "its lock file" in info.value.problem and "nothing was read or written" in str(
        info.value
    )
    assert "TMPDIR" in info.value.hint
    assert not path.exists()
    cas._pending.clear()


def _save_repeatedly(path: str, worker: int, count: int) -> None:
    """Saves without the cassette lock (as the vcrpy persister does), racing other writers'
    clean-up of temporary files."""
    from llmreplay._storage import FileStorage

    storage = FileStorage()
    for index in range(count):
        storage.save(Path(path), f"{worker}-{index}".encode() * 1000)


def test_writers_racing_without_the_lock_never_remove_each_others_temporary_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.msgpack"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_repeatedly, args=(str(path), w, 40)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0  # a writer whose temporary file vanished would fail
    assert path.read_bytes()[:4] in {f"{w}-39".encode()[:4] for w in range(4)}
    assert [p.name for p in (tmp_path / ".llmreplay").iterdir()] == [".gitignore"]
