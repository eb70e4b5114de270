"""The decision core's table: every mode against every lookup result, and a fault first."""

from __future__ import annotations

import pytest

from llmreplay._engine import (
    Action,
    Exhausted,
    Forward,
    Found,
    Hit,
    InjectFault,
    Miss,
    NotRecorded,
    Replay,
    decide,
)
from llmreplay._format import Interaction, RecordedRequest, RecordedResponse
from llmreplay._modes import Mode

ITEM = Interaction(
    key="k",
    request=RecordedRequest("POST", "http://127.0.0.1:9/v1/chat/completions", [], b"{}"),
    response=RecordedResponse(200, [], body=b"{}"),
)
FOUND: dict[str, Found] = {"hit": Hit(ITEM), "exhausted": Exhausted(2), "none": NotRecorded()}

# mode -> what each lookup result leads to; "-" where the mode never looks
TABLE: dict[Mode, dict[str, Action | str]] = {
    Mode.REPLAY: {"hit": Replay(ITEM), "exhausted": "miss:already played", "none": "miss:nothing"},
    Mode.AUTO: {"hit": Replay(ITEM), "exhausted": Forward(True), "none": Forward(True)},
    Mode.RECORD: {"hit": Forward(True), "exhausted": Forward(True), "none": Forward(True)},
    Mode.LIVE: {"hit": Forward(False), "exhausted": Forward(False), "none": Forward(False)},
}


@pytest.mark.parametrize("found", FOUND)
@pytest.mark.parametrize("mode", TABLE, ids=str)
def test_each_mode_against_each_lookup_result(mode: Mode, found: str) -> None:
    looked: list[bool] = []

    def lookup() -> Found:
        looked.append(True)
        return FOUND[found]

    action = decide(mode, None, lookup)
    expected = TABLE[mode][found]
    if isinstance(expected, str):
        assert isinstance(action, Miss)
        assert expected.split(":")[1] in action.reason
        assert "allow_repeats" in action.reason or found == "none"
    else:  # named tuples: equal contents of another type compare equal, so check the type
        assert type(action) is type(expected) and action == expected
    # record and live never advance a replay cursor; the modes that play always ask
    assert looked == ([True] if mode.reads else [])


@pytest.mark.parametrize("mode", TABLE, ids=str)
def test_a_scheduled_fault_takes_the_request_before_anything_is_looked_up(mode: Mode) -> None:
    def lookup() -> Found:
        raise AssertionError("a faulted request must not advance the cursor")

    fault = object()
    action = decide(mode, fault, lookup)
    assert type(action) is InjectFault and action.fault is fault


def test_results_and_actions_are_immutable_values() -> None:
    with pytest.raises(AttributeError):
        Hit(ITEM).interaction = ITEM  # type: ignore[misc]
    assert Replay(ITEM) == Replay(ITEM) and Forward(True) != Forward(False)
