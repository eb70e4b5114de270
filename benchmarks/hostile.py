"""How long the hostile-input defences take: the timing half of tests/test_hostile.py and
tests/test_match.py (the tests assert bounded *work*; seconds belong here).

    python benchmarks/hostile.py

Prints each case's time next to its goal and the ratio; exits 0 (a report, not a gate).
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmreplay._format import parse_json
from llmreplay._match import KeySpec, RequestView, closest, diff_lines

CHAT = "https://api.openai.com/v1/chat/completions"


def _view(body: object) -> RequestView:
    return RequestView(
        "POST", CHAT, [("content-type", "application/json")], json.dumps(body).encode()
    )


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    cases: list[tuple[str, float, Callable[[], object]]] = []
    for name, data in [
        ("JSON: unclosed string, 2 MB", b"[" * 200 + b'"' + b"a" * 2_000_000),
        ("JSON: escaped quotes, 2 MB", b"[" * 200 + b'"' + b'\\"' * 1_000_000),
        ("JSON: 2,000,000 open brackets", b"[" * 2_000_000),
        ("JSON: 200,000 deep", b"[" * 200_000 + b"]" * 200_000),
    ]:
        cases.append((name, 1.0, lambda d=data: parse_json(d)))
    bomb = gzip.compress(bytes(2**20), compresslevel=9) * 1024  # 1 MB -> 1 GiB
    bomb_view = RequestView("POST", CHAT, [("content-encoding", "gzip")], bomb)
    cases.append(("key of a 1 GiB gzip bomb", 5.0, lambda: KeySpec().key(bomb_view)))
    image = "A" * 200_000
    candidates = [
        _view({"m": [{"c": f"picture {n}"}], "image": str(n) + image}) for n in range(300)
    ]
    wanted = _view({"m": [{"c": "picture 7, in French"}], "image": "7" + image})
    cases.append(("closest of 300 x 200 KB", 0.5, lambda: closest(wanted, candidates, KeySpec())))
    before = [f"line {n}" for n in range(100_000)]
    after = list(before)
    after[70_000] = "changed"
    cases.append(("diff of 100,000 lines", 0.5, lambda: diff_lines(before, after)))

    sys.stdout.write(f"{'case':<34} {'seconds':>9} {'goal':>7} {'ratio':>7}\n")
    for name, goal, run in cases:
        seconds = min(_timed(run) for _ in range(3))
        sys.stdout.write(f"{name:<34} {seconds:>9.3f} {goal:>7.2f} {seconds / goal:>7.2f}\n")


if __name__ == "__main__":
    main()
