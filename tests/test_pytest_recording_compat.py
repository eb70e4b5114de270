"""A suite written for pytest-recording runs unchanged on llmreplay (when pytest-recording
itself is not active): markers, vcr_config, fixtures, options and hooks, each in the form a
pytest-recording user writes it, against the loopback server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

import llmreplay
from tests.helpers import fake_key
from tests.server import LoopbackServer


def _cassettes(root: Path) -> list[str]:
    found = root.rglob("*.msgpack")
    return sorted(p.relative_to(root).as_posix() for p in found if ".llmreplay" not in p.parts)


def test_a_pytest_recording_suite_records_and_replays_unchanged(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makeconftest(
        """
        import pytest

        def pytest_recording_configure(config, vcr):
            vcr.register_matcher("model", lambda r1, r2: b"gpt-4o-mini" in r2.body)

        @pytest.fixture(scope="module")
        def vcr_config():
            return {
                "filter_headers": [("authorization", "DUMMY"), "x-stainless-os"],
                "filter_query_parameters": ["trace"],
                "match_on": ["method", "path", "body", "model"],
                "decode_compressed_response": True,
            }
        """
    )
    pytester.makepyfile(
        test_suite="""
        import pytest
        import app

        @pytest.mark.vcr
        def test_marker_alone(vcr):
            assert app.ask("one") == "echo: one"
            replaying = vcr.record_mode == "none"  # recording plays nothing, as vcrpy
            assert (vcr.play_count, vcr.all_played) == ((1, True) if replaying else (0, False))
            assert b'"one"' in vcr.requests[0].body
            assert vcr.requests[0].headers["authorization"] == "DUMMY"
            assert vcr.record_mode in ("none", "all", "once")

        @pytest.mark.vcr("shared.yaml")
        def test_extra_cassette():
            assert app.ask("two") == "echo: two"

        class TestGroup:
            @pytest.mark.vcr
            def test_method(self):
                assert app.ask("three") == "echo: three"

        def test_without_a_cassette(vcr):
            assert vcr is None
        """
    )
    # The shared cassette the second test names is recorded by another test.
    shared = pytester.path / "fixtures" / "cassettes" / "test_suite" / "shared.msgpack"
    with llmreplay.cassette(shared, mode="record") as cas:
        client = cas.openai_client(base_url=upstream.url, api_key=fake_key("sk-"))
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "two"}]
        )
        client.close()
    recorded = pytester.runpytest("--record-mode=once")
    recorded.assert_outcomes(passed=4)
    assert _cassettes(pytester.path / "fixtures" / "cassettes") == [
        "test_suite/TestGroup.test_method.msgpack",
        "test_suite/shared.msgpack",
        "test_suite/test_marker_alone.msgpack",
    ]
    assert len(upstream.requests) == 3  # one each; the extra cassette answered "two"
    raw = (pytester.path / "fixtures/cassettes/test_suite/test_marker_alone.msgpack").read_bytes()
    assert fake_key("sk-").encode() not in raw and b"DUMMY" in raw
    upstream.stop()
    replayed = pytester.runpytest("--record-mode=none")
    replayed.assert_outcomes(passed=4)
    replayed.stdout.fnmatch_lines(["3 replayed, 0 recorded, 0 live*"])


def test_vcr_config_mode_and_marker_mode_follow_the_precedence(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def vcr_config():
            return {"record_mode": "new_episodes"}
        """
    )
    pytester.makepyfile(
        test_modes="""
        import pytest

        @pytest.mark.vcr
        def test_config(llm_cassette):
            assert llm_cassette.mode.value == "auto"
            assert llm_cassette.mode_source == "vcr_config"

        @pytest.mark.vcr(record_mode="all")
        def test_marker(llm_cassette):
            assert llm_cassette.mode.value == "record"
            assert llm_cassette.mode_source == "the vcr marker"
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
    flag = pytester.runpytest("--record-mode=none", "-k", "test_config")
    flag.assert_outcomes(failed=1)  # the command line beats vcr_config
    flag.stdout.fnmatch_lines(["*assert 'replay' == 'auto'*"])


def test_vcr_cassette_dir_ignore_hosts_and_post_data_filters(
    pytester: pytest.Pytester, upstream: LoopbackServer, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    pytester.makeconftest(
        f"""
        import pytest

        @pytest.fixture(scope="module")
        def vcr_cassette_dir():
            return {str(elsewhere)!r}

        @pytest.fixture
        def vcr_config():
            return {{"filter_post_data_parameters": [("user", "anonymous")]}}
        """
    )
    pytester.makepyfile(
        test_dir="""
        import pytest
        import app

        @pytest.mark.vcr
        def test_filtered():
            assert app.ask("hi", user="alice-12345678") == "echo: hi"

        @pytest.mark.vcr(ignore_hosts=["127.0.0.1"])
        def test_ignored():
            assert app.ask("live") == "echo: live"
        """
    )
    pytester.runpytest("--record-mode=all").assert_outcomes(passed=2)
    (stored,) = llmreplay.cassette(elsewhere / "test_filtered.msgpack").interactions
    assert b'"user": "anonymous"' in stored.request.body and b"alice" not in stored.request.body
    assert not (elsewhere / "test_ignored.msgpack").exists()  # never recorded
    before = len(upstream.requests)
    pytester.runpytest("--record-mode=none").assert_outcomes(passed=2)
    assert len(upstream.requests) == before + 1  # the ignored host went live again


def test_an_unknown_vcr_option_names_our_equivalent(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vcr(custom_patches=[])
        def test_x():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    # custom_patches is a real vcrpy option: refused by its name, with what to do instead
    result.stdout.fnmatch_lines(["*'custom_patches' from @pytest.mark.vcr*captures httpx2*"])


def test_disable_recording_goes_live(pytester: pytest.Pytester, upstream: LoopbackServer) -> None:
    pytester.makepyfile(
        test_live="""
        import pytest
        import app

        @pytest.mark.vcr
        def test_live(llm_cassette):
            assert llm_cassette.mode.value == "live"
            assert app.ask("x") == "echo: x"
        """
    )
    pytester.runpytest("--disable-recording").assert_outcomes(passed=1)
    assert len(upstream.requests) == 1
    assert _cassettes(pytester.path) == []


def test_a_cassette_is_a_decorator_sync_and_async(tmp_path: Path, server: LoopbackServer) -> None:
    path = tmp_path / "deco.msgpack"
    body = {"model": "m", "messages": [{"role": "user", "content": "deco"}]}

    @llmreplay.cassette(path, mode="once")
    def call() -> str:
        with httpx2.Client() as client:
            return client.post(server.url + "/chat/completions", json=body).text

    first, second = call(), call()  # a fresh cassette per call: recorded, then replayed
    assert first == second and len(server.requests) == 1

    @llmreplay.cassette(path)
    async def acall() -> str:
        async with httpx2.AsyncClient() as client:
            response = await client.post(server.url + "/chat/completions", json=body)
            return response.text

    import anyio

    assert anyio.run(acall) == first and len(server.requests) == 1


def test_plain_function_matchers_and_port_and_uri_parts(
    tmp_path: Path, server: LoopbackServer
) -> None:
    path = tmp_path / "m.msgpack"

    def same_model(r1: object, r2: object) -> None:
        assert b'"model":"m"' in r2.body.replace(b" ", b"")  # type: ignore[attr-defined]

    recorded = llmreplay.cassette(path, mode="record", match_on=["method", "uri", same_model])
    with httpx2.Client(transport=recorded.transport()) as client:
        for text in ("a", "b"):
            client.post(
                server.url + "/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": text}]},
            )
    recorded.save()
    server.stop()
    # Keyed on method and uri (not the body): any body the matcher accepts replays, in order.
    replay = llmreplay.cassette(path, match_on=["method", "port", "uri", same_model])
    with httpx2.Client(transport=replay.transport()) as client:
        answers = [
            client.post(server.url + "/chat/completions", json={"model": "m", "x": n}).json()
            for n in range(2)
        ]
        with pytest.raises(llmreplay.CassetteMiss):
            client.post(server.url + "/chat/completions", json={"model": "other"})
    assert [a["choices"][0]["message"]["content"] for a in answers] == ["echo: a", "echo: b"]


def test_the_remaining_pytest_recording_names(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makeconftest(
        """
        import pytest

        def scrub_request(request):
            request.body = request.body.replace(b"secret-prompt", b"[prompt]")
            return request

        def drop_header(response):
            response["headers"].pop("x-request-id", None)
            return response

        @pytest.fixture
        def vcr_config():
            return {
                "filter_query_parameters": [("trace", "TRACE")],
                "before_record_request": scrub_request,
                "before_record_response": drop_header,
                "allow_playback_repeats": True,
            }
        """
    )
    pytester.makepyfile(
        test_rest="""
        import pytest
        import app

        @pytest.mark.vcr
        def test_hooks_and_repeats(default_cassette_name, llm_cassette):
            assert default_cassette_name == "test_hooks_and_repeats"
            trace = {"extra_query": {"trace": "t-123456789"}}
            assert app.ask("secret-prompt", **trace) == "echo: secret-prompt"
            assert app.ask("secret-prompt", **trace) == "echo: secret-prompt"  # repeats

        @pytest.mark.vcr(ignore_localhost=True)
        def test_localhost_ignored():
            assert app.ask("local", retries=0) == "echo: local"
        """
    )
    recorded = pytester.runpytest("--record-mode=all")
    recorded.assert_outcomes(passed=2)
    folder = pytester.path / "fixtures" / "cassettes" / "test_rest"
    items = llmreplay.cassette(folder / "test_hooks_and_repeats.msgpack").interactions
    assert len(items) == 2  # record mode sends both
    for item in items:
        assert b"[prompt]" in item.request.body and b"secret-prompt" not in item.request.body
        assert "x-request-id" not in dict(item.response.headers)
        assert "trace=TRACE" in item.request.url and "t-123456789" not in item.request.url
    assert not (folder / "test_localhost_ignored.msgpack").exists()
    upstream.stop()
    replayed = pytester.runpytest("--record-mode=none", "-k", "hooks or localhost")
    replayed.assert_outcomes(passed=1, failed=1)  # the ignored host went live, and is down
    replayed.stdout.fnmatch_lines(["*test_localhost_ignored*", "*2 replayed*"])


def test_additional_matchers_are_appended_to_vcrpys_match_on(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_tenants="""
        import pytest
        import app

        def same_tenant(r1, r2):
            assert r1.headers.get("x-tenant") == r2.headers.get("x-tenant")

        @pytest.mark.vcr("shared.yaml", additional_matchers=[same_tenant])
        def test_strict():
            assert app.ask("hi", extra_headers={"x-tenant": "b"}) == "echo: hi"

        @pytest.mark.vcr("shared.yaml")
        def test_loose():
            assert app.ask("hi", extra_headers={"x-tenant": "b"}) == "echo: hi"
        """
    )
    shared = pytester.path / "fixtures" / "cassettes" / "test_tenants" / "shared.msgpack"
    with llmreplay.cassette(shared, mode="record") as cas:
        client = cas.openai_client(base_url=upstream.url, api_key=fake_key("sk-"))
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-tenant": "a"},
        )
        client.close()
    sent = len(upstream.requests)
    result = pytester.runpytest("-p", "no:randomly", "--record-mode=none")
    result.assert_outcomes(passed=1, failed=1)  # tenant b is not tenant a's recording
    result.stdout.fnmatch_lines(["*test_strict*no recording*"])
    assert len(upstream.requests) == sent


def test_record_on_exception_false_writes_nothing_for_a_failing_test(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_fails="""
        import pytest
        import app

        @pytest.mark.vcr(record_on_exception=False)
        def test_not_kept():
            app.ask("one")
            raise RuntimeError("the test failed after its call")

        @pytest.mark.vcr
        def test_kept_by_default():
            app.ask("two")
            raise RuntimeError("the test failed after its call")
        """
    )
    pytester.runpytest("-p", "no:randomly", "--record-mode=all").assert_outcomes(failed=2)
    assert _cassettes(pytester.path) == [
        "fixtures/cassettes/test_fails/test_kept_by_default.msgpack"
    ]


def test_block_network_blocks_loopback_too_as_pytest_recording_does(
    pytester: pytest.Pytester, upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest-recording's block refuses every connection, 127.0.0.1 included, but what
    # allowed_hosts matches (marker, --allowed-hosts, vcr_config), and does not block a
    # test recording through its vcr marker.
    pytester.makeconftest(
        """
        import os
        import pytest

        @pytest.fixture
        def vcr_config():
            allowed = os.environ.get("PROJECT_ALLOWED")
            return {"allowed_hosts": [allowed]} if allowed else {}
        """
    )
    pytester.makepyfile(
        test_net="""
        import os
        import socket
        from urllib.parse import urlsplit

        import pytest
        import app
        import llmreplay

        PORT = urlsplit(os.environ["OPENAI_BASE_URL"]).port

        def connect():
            socket.create_connection(("127.0.0.1", PORT), timeout=5).close()

        @pytest.mark.block_network
        def test_loopback_blocked():
            with pytest.raises(llmreplay.NetworkBlocked, match="block_network"):
                connect()

        @pytest.mark.block_network(allowed_hosts=[r"127\\.0\\.0\\.1"])
        def test_allowed_by_the_marker():
            connect()

        def test_unmarked():
            connect()

        @pytest.mark.vcr
        @pytest.mark.block_network
        def test_recording_is_not_blocked():
            assert app.ask("through") == "echo: through"
        """
    )
    pytester.runpytest("-p", "no:randomly", "--record-mode=all").assert_outcomes(passed=4)
    sent = len(upstream.requests)
    blocked = pytester.runpytest("--record-mode=none", "--block-network", "-k", "unmarked or rec")
    blocked.assert_outcomes(passed=1, failed=1)  # the replay opens nothing; connect() is refused
    blocked.stdout.fnmatch_lines(["*test_unmarked*NetworkBlocked*"])
    assert len(upstream.requests) == sent
    allowed = pytester.runpytest("--block-network", r"--allowed-hosts=127\.0\.0\.1", "-k", "unm")
    allowed.assert_outcomes(passed=1)
    monkeypatch.setenv("PROJECT_ALLOWED", r"127\.0\.0\.1")
    pytester.runpytest("--block-network", "-k", "unmarked").assert_outcomes(passed=1)


def test_a_request_before_record_request_drops_is_sent_and_never_recorded(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    # vcrpy: a request that before_record_request turns into None is ignored, sent live in
    # every mode and never written.
    pytester.makeconftest(
        """
        import pytest

        def skip_health(request):
            return None if b"health" in (request.body or b"") else request

        @pytest.fixture
        def vcr_config():
            return {"before_record_request": skip_health}
        """
    )
    pytester.makepyfile(
        test_mixed="""
        import pytest
        import app

        @pytest.mark.vcr
        def test_both():
            assert app.ask("health") == "echo: health"
            assert app.ask("kept") == "echo: kept"
        """
    )
    pytester.runpytest("--record-mode=all").assert_outcomes(passed=1)
    path = pytester.path / "fixtures" / "cassettes" / "test_mixed" / "test_both.msgpack"
    (item,) = llmreplay.cassette(path).interactions
    assert b"kept" in item.request.body
    sent = len(upstream.requests)
    replayed = pytester.runpytest("--record-mode=none")
    replayed.assert_outcomes(passed=1)
    assert len(upstream.requests) == sent + 1  # the ignored one went live, the other played
    assert b"health" in upstream.requests[-1].body


def test_the_vcr_view_counts_no_recording_as_played(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makepyfile(
        test_view="""
        import pytest
        import app

        @pytest.mark.vcr
        def test_counts(vcr, record_mode):
            app.ask("one")
            if record_mode == "all":
                assert (vcr.play_count, len(vcr), vcr.all_played) == (0, 1, False)
            else:
                assert (vcr.play_count, len(vcr), vcr.all_played) == (1, 1, True)
        """
    )
    pytester.runpytest("--record-mode=all").assert_outcomes(passed=1)
    pytester.runpytest("--record-mode=none").assert_outcomes(passed=1)


def test_a_project_default_cassette_name_names_the_file(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def default_cassette_name(request):
            return "shared-" + request.node.name.upper()
        """
    )
    pytester.makepyfile(
        test_named="""
        import pytest
        import app

        @pytest.mark.vcr
        def test_a():
            assert app.ask("named") == "echo: named"
        """
    )
    pytester.runpytest("--record-mode=all").assert_outcomes(passed=1)
    assert _cassettes(pytester.path) == ["fixtures/cassettes/test_named/shared-TEST_A.msgpack"]
    sent = len(upstream.requests)
    pytester.runpytest("--record-mode=none").assert_outcomes(passed=1)
    assert len(upstream.requests) == sent


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_options_without_effect_are_named_in_the_summary(
    pytester: pytest.Pytester, upstream: LoopbackServer, workers: list[str]
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def vcr_config():
            return {"decode_compressed_response": True}

        class SQLitePersister:
            pass

        def pytest_recording_configure(config, vcr):
            vcr.register_persister(SQLitePersister)
        """
    )
    pytester.makepyfile(
        test_opts="""
        import pytest
        import app

        @pytest.mark.vcr(serializer="json")
        def test_a():
            assert app.ask("a") == "echo: a"
        """
    )
    result = pytester.runpytest("--record-mode=all", *workers)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "vcrpy options with no effect under llmreplay: decode_compressed_response (*"
            "register_persister (*the persister's store is not read*"
            "serializer (cassettes are msgpack files*"
        ]
    )


def test_every_vcrpy_option_is_mapped_ignored_or_refused_by_its_name() -> None:
    """Each option of the installed vcrpy (its ``VCR`` and ``use_cassette`` arguments) is
    honoured, named in the summary as without effect, or refused with its own reason:
    never the catch-all error meant for names vcrpy does not have."""
    import inspect

    import vcr

    from llmreplay._errors import ConfigError
    from llmreplay._vcr_compat import _IGNORED, _REFUSED, cassette_options

    names = set(inspect.signature(vcr.VCR.__init__).parameters) - {"self"}
    names |= {"persister", "additional_matchers", "allow_playback_repeats", "allowed_hosts"}
    samples: dict[str, Any] = {"record_mode": "none", "match_on": ["method"],
                               "additional_matchers": ["body"], "before_record_request": None,
                               "before_record_response": None, "before_record": None}  # fmt: skip
    for name in sorted(names):
        value = samples.get(name, ())
        if name in ("before_record_request", "before_record"):
            value = lambda request: request  # noqa: E731
        ignored: set[str] = set()
        if name in _REFUSED:
            with pytest.raises(ConfigError) as refused:
                cassette_options({name: value}, "vcr_config", ignored=ignored)
            assert name in str(refused.value) and _REFUSED[name] in str(refused.value)
            continue
        cassette_options({name: value}, "vcr_config", ignored=ignored)  # no catch-all error
        assert (name in ignored) == (name in _IGNORED), name
    with pytest.raises(ConfigError, match="llmreplay maps record_mode"):
        cassette_options({"not_a_vcrpy_option": 1}, "vcr_config")


def test_the_vcr_view_reads_bodies_decoded_under_decode_compressed_response(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    """The server gzips its answers; with decode_compressed_response the ``vcr`` fixture's
    responses hold the plain body and no content-encoding, as vcrpy's cassette does, and
    without it the body as it came."""
    pytester.makepyfile(
        test_view="""
        import gzip
        import json

        import pytest
        import app

        @pytest.mark.vcr(decode_compressed_response=True)
        def test_decoded(vcr):
            app.ask("zipped")
            (response,) = vcr.responses
            assert "content-encoding" not in {k.lower() for k in response["headers"]}
            assert json.loads(response["body"]["string"])["choices"]

        @pytest.mark.vcr
        def test_as_sent(vcr):
            app.ask("zipped")
            (response,) = vcr.responses
            assert response["headers"]["content-encoding"] == ["gzip"]
            assert json.loads(gzip.decompress(response["body"]["string"]))["choices"]
        """
    )
    pytester.runpytest("--record-mode=all").assert_outcomes(passed=2)
    pytester.runpytest("--record-mode=none").assert_outcomes(passed=2)
    assert all(seen.headers.get("accept-encoding") for seen in upstream.requests)
