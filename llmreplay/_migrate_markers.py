"""``llmreplay migrate --rewrite-markers``: ``@pytest.mark.vcr`` -> ``@pytest.mark.llmreplay``.

Optional (under the pytest-recording compatibility layer the ``vcr`` marker works as is)
and careful: the source is tokenized, so a marker named in a string or a comment is never
touched, and only a marker without arguments (``pytest.mark.vcr`` or ``pytest.mark.vcr()``)
is rewritten, since llmreplay's marker takes no extra cassettes and other option names.
Every other use is reported with the reason it was left.
"""

from __future__ import annotations

import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

NEW = "pytest.mark.llmreplay"


@dataclass(frozen=True)
class Use:
    """One ``pytest.mark.vcr`` in a file: where, and whether (or why not) it is rewritten."""

    path: str
    line: int
    text: str
    rewritable: bool
    reason: str = ""


def _uses(source: str) -> list[tuple[int, int, int, int, bool]]:
    """``(line, start column, end line, end column, rewritable)`` of each marker use."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.NL, tokenize.COMMENT)
    ]
    found = []
    for i in range(len(tokens) - 4):
        names = [t.string for t in tokens[i : i + 5]]
        if names != ["pytest", ".", "mark", ".", "vcr"]:
            continue
        if i and tokens[i - 1].string == ".":  # something.pytest.mark.vcr: not ours to read
            continue
        end = tokens[i + 4]
        after = tokens[i + 5] if i + 5 < len(tokens) else None
        rewritable = after is None or after.string not in ("(", ".")
        if after is not None and after.string == "(":
            closing = tokens[i + 6] if i + 6 < len(tokens) else None
            if closing is not None and closing.string == ")":
                end, rewritable = closing, True
        found.append((tokens[i].start[0], tokens[i].start[1], end.end[0], end.end[1], rewritable))
    return found


def scan(path: Path) -> list[Use]:
    """Every ``pytest.mark.vcr`` in the file at ``path``."""
    source = path.read_text(encoding="utf-8")
    try:
        found = _uses(source)
    except (tokenize.TokenError, SyntaxError) as exc:
        return [Use(str(path), 0, "", False, f"the file does not tokenize ({exc})")]
    lines = source.splitlines()
    return [
        Use(
            str(path),
            line,
            lines[line - 1].strip(),
            rewritable,
            "" if rewritable else "it has arguments (extra cassettes or vcrpy options)",
        )
        for line, _, _, _, rewritable in found
    ]


def rewrite(path: Path) -> int:
    """Rewrite the argument-less markers in ``path`` in place; returns how many."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    done = 0
    for line, column, end_line, end_column, rewritable in reversed(_uses(source)):
        if not rewritable or end_line != line:
            continue
        text = lines[line - 1]
        lines[line - 1] = text[:column] + NEW + text[end_column:]
        done += 1
    if done:
        path.write_text("".join(lines), encoding="utf-8")
    return done
