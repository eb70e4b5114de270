"""The ``llmreplay`` command: read, review, check, convert and tidy cassettes, and serve
them over HTTP (``llmreplay serve``, in ``_serve_run``).

Exit codes: 0 fine, 1 a finding (``verify`` found a problem, ``diff`` found a difference),
2 bad usage or an unreadable input (a missing path, a file that is not a cassette).
Folders are searched by content: every file that is a cassette counts, whatever its name
(``*.llmreplay`` files written through the vcrpy bridge too). ``--json`` gives
machine-readable output where a machine would read it. Long runs over many cassettes show
progress on a terminal only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import _inspect
from ._errors import CassetteError, LLMReplayError
from ._format import FORMAT_VERSION, Interaction
from ._layout import project_cassette_dir
from ._match import KeySpec, RequestView, closest
from ._scrub import DEFAULT_FILTER_QUERY
from ._version import __version__

DEFAULT_PICKLE_URL = "https://api.openai.com/v1/chat/completions"  # _pickle_import's default

# Written by the pytest plugin (pytest_plugin.PLAYED_DIR / PLAYED_FILE), beside the cassettes.
PLAYED_FILE = ".llmreplay/played.json"
_OLD_PLAYED_FILE = ".llmreplay-played.json"  # where earlier versions wrote it


class _Progress:
    """``[3/97] name`` on stderr, rewritten in place; silent when stderr is not a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() and total > 1

    def step(self, index: int, label: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\x1b[K[{index}/{self.total}] {label}"[:120])
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n" if args.json else text)


def _spec() -> KeySpec:
    return KeySpec.build(None, (), DEFAULT_FILTER_QUERY)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


# -- commands ----------------------------------------------------------------------------


def _existing(name: str) -> Path:
    """``name`` as a path, or a ``CassetteError`` (exit 2) when nothing is there."""
    path = Path(name)
    if not path.exists():
        raise CassetteError(path, "no such file or folder", hint="Check the path.")
    return path


def _each_cassette(root: Path) -> Iterator[tuple[Path, list[Interaction] | LLMReplayError]]:
    """Every cassette under ``root`` with its interactions, or the error that stopped it
    loading; with progress on a terminal."""
    paths = list(_inspect.cassettes(root))
    progress = _Progress(len(paths))
    try:
        for index, path in enumerate(paths, 1):
            progress.step(index, str(path))
            try:
                loaded: list[Interaction] | LLMReplayError = _inspect.load(path)
            except LLMReplayError as exc:
                loaded = exc
            yield path, loaded
    finally:
        progress.done()


def cmd_ls(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for path, items in _each_cassette(_existing(args.dir)):
        if isinstance(items, LLMReplayError):
            rows.append({"path": str(path), "error": str(items)})
            continue
        stat = path.stat()
        rows.append(
            {
                "path": str(path),
                "interactions": len(items),
                "endpoints": sorted({_inspect.endpoint(i) for i in items}),
                "models": sorted({m for i in items if (m := _inspect.model(i))}),
                "bytes": stat.st_size,
                "age_seconds": round(time.time() - stat.st_mtime),
            }
        )
    lines = []
    for row in rows:
        if "error" in row:
            lines.append(f"{row['path']}  ERROR {row['error']}")
            continue
        lines.append(
            f"{row['path']}  {row['interactions']} interaction(s)  {row['bytes']:,} B  "
            f"{_age(row['age_seconds'])} old  {', '.join(row['endpoints'])}"
            + (f"  [{', '.join(row['models'])}]" if row["models"] else "")
        )
    _out(args, rows, "\n".join(lines) + ("\n" if lines else ""))
    return 2 if any("error" in r for r in rows) else 0


def cmd_show(args: argparse.Namespace) -> int:
    items = _inspect.load(_existing(args.cassette))
    if args.key:
        items = [i for i in items if i.key.startswith(args.key)]
        if not items:
            sys.stderr.write(f"llmreplay: no interaction with a key starting {args.key!r}\n")
            return 1
    data = [_inspect.render(i) for i in items]
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return 0


def _by_key(items: list[Interaction]) -> dict[str, list[Interaction]]:
    grouped: dict[str, list[Interaction]] = {}
    for item in items:
        grouped.setdefault(item.key, []).append(item)
    return grouped


def _view(item: Interaction) -> RequestView:
    request = item.request
    return RequestView(request.method, request.url, request.headers, request.body)


def _edits(
    old: dict[str, list[Interaction]], new: dict[str, list[Interaction]]
) -> dict[str, tuple[str, str]]:
    """For each request only in ``new``, its counterpart only in ``old`` (same method and
    path, the closest body) with the difference, as a miss shows it: the request was edited."""
    gone = {key: items[0] for key, items in old.items() if key not in new}
    found: dict[str, tuple[str, str]] = {}
    for key in sorted(new.keys() - old.keys()):
        item = new[key][0]
        views = {
            k: _view(o) for k, o in gone.items() if _inspect.endpoint(o) == _inspect.endpoint(item)
        }
        nearest = closest(_view(item), list(views.values()), _spec()) if views else None
        if nearest is not None:
            was = next(k for k, v in views.items() if v is nearest[0])
            found[key] = (was, nearest[1])
            del gone[was]
    return found


def cmd_diff(args: argparse.Namespace) -> int:
    old = _by_key(_inspect.load(_existing(args.a)))
    new = _by_key(_inspect.load(_existing(args.b)))
    edits = _edits(old, new)
    replaced = {was for was, _ in edits.values()}
    changes: list[dict[str, Any]] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key, []), new.get(key, [])
        sample = (after or before)[0]
        extra: dict[str, Any] = {}
        if key in replaced:
            continue
        if key in edits:
            change = "edited"
            before = old[edits[key][0]]
            extra = {"was": edits[key][0], "diff": edits[key][1]}
        elif not before or not after:
            change = "added" if after else "removed"
        elif [i.response.content for i in before] != [i.response.content for i in after] or [
            i.response.status for i in before
        ] != [i.response.status for i in after]:
            change = "changed"
        else:
            continue
        changes.append(
            {
                "change": change,
                "key": key,
                "endpoint": _inspect.endpoint(sample),
                "model": _inspect.model(sample),
                "count": [len(before), len(after)],
                **extra,
            }
        )
    mark = {"added": "+", "removed": "-", "changed": "~", "edited": "*"}
    text = "".join(
        f"{mark[c['change']]} {c['endpoint']}  key {c['key'][:16]}"
        + (f" (was {c['was'][:16]})" if c["change"] == "edited" else "")
        + (f"  [{c['model']}]" if c["model"] else "")
        + (f"  ({c['count'][0]} -> {c['count'][1]} responses)" if c["change"] == "changed" else "")
        + "\n"
        + (
            "    request edited (- before, + after):\n"
            + "".join(f"      {line}\n" for line in c["diff"].splitlines())
            if c["change"] == "edited"
            else ""
        )
        for c in changes
    )
    _out(args, changes, text or "no differences\n")
    return 1 if changes else 0


def cmd_verify(args: argparse.Namespace) -> int:
    problems: list[dict[str, Any]] = []
    checked = 0
    for path, items in _each_cassette(_existing(args.dir)):
        checked += 1
        if isinstance(items, LLMReplayError):
            problems.append({"path": str(path), "problem": str(items)})
            continue
        for number, item in enumerate(items):
            try:  # what `show` would print: verify fails on anything it cannot show
                json.dumps(_inspect.render(item), ensure_ascii=False)
            except Exception as exc:  # any failure at all is the finding
                problem = f"it cannot be shown ({type(exc).__name__}: {str(exc)[:200]})"
                problems.append({"path": str(path), "interaction": number, "problem": problem})
            for problem in _inspect.unchecked(item):
                problems.append({"path": str(path), "interaction": number, "problem": problem})
            for where, what, excerpt in _inspect.secrets_in(item):
                problems.append(
                    {
                        "path": str(path),
                        "interaction": number,
                        "problem": f"{where} holds what looks like {what} ({excerpt})",
                    }
                )
    text = "".join(
        f"{p['path']}"
        + (f" interaction {p['interaction']}" if "interaction" in p else "")
        + f": {p['problem']}\n"
        for p in problems
    )
    if not checked:  # a typo'd or empty folder must not pass CI as "no problems"
        problems.append({"path": str(args.dir), "problem": "no cassette found here"})
        text += f"{args.dir}: no cassette found here\n"
    summary = f"verified {checked} cassette(s), format version {FORMAT_VERSION}: "
    summary += f"{len(problems)} problem(s)\n" if problems else "no problems\n"
    _out(args, {"cassettes": checked, "problems": problems}, text + summary)
    return 1 if problems else 0


def _vcr_missing(command: str) -> bool:
    """Whether vcrpy or PyYAML is missing (then say which extra to install)."""
    try:
        import vcr  # noqa: F401 - only to say which extra is missing, before any work
        import yaml  # noqa: F401
    except ImportError:
        sys.stderr.write(
            f"llmreplay: {command} reads vcrpy cassettes with vcrpy and PyYAML, which are "
            "not installed: pip install 'pytest-llmreplay[vcr]'\n"
        )
        return True
    return False


def cmd_import_vcr(args: argparse.Namespace) -> int:
    from . import _vcr_import

    if _vcr_missing("import-vcr"):
        return 2
    for name in args.inputs:
        _existing(name)
    deserializer = _vcr_import.load_deserializer(args.deserializer) if args.deserializer else None
    out = Path(args.output)
    pairs = _vcr_import.sources(args.inputs, out)
    progress = _Progress(len(pairs))
    outcome = _vcr_import.convert(
        pairs, deserializer=deserializer, overwrite=args.overwrite, progress=progress.step
    )
    progress.done()
    text = "".join(f"skipped {s['path']}: {s['reason']}\n" for s in outcome.skipped)
    text += f"imported {len(outcome.imported)} cassette(s) ({outcome.interactions} interactions)"
    text += f" into {out}; skipped {len(outcome.skipped)}\n"
    _out(args, {"imported": outcome.imported, "skipped": outcome.skipped}, text)
    return 1 if outcome.skipped else 0


def cmd_merge(args: argparse.Namespace) -> int:
    from . import _merge

    result = _merge.merge(
        _existing(args.base), _existing(args.ours), _existing(args.theirs), prefer=args.prefer
    )
    out = Path(args.output or args.ours)
    _merge.write(result, out)
    text = "".join(
        f"conflict: {c['request']}  key {c['key'][:16]}: both sides recorded it differently "
        f"(answers base/ours/theirs: {c['answers']['base']}/{c['answers']['ours']}/"
        f"{c['answers']['theirs']}); kept {c['kept']}'s\n"
        for c in result.conflicts
    )
    text += (
        f"merged into {out}: {len(result.items)} interaction(s), "
        f"{len(result.from_theirs)} key(s) from theirs, {len(result.conflicts)} conflict(s)\n"
    )
    if result.conflicts and args.prefer is None:
        text += (
            "resolve: keep this result (git add), or re-run with --prefer theirs, or re-record "
            "the conflicting tests\n"
        )
    data = {
        "output": str(out),
        "interactions": len(result.items),
        "from_theirs": result.from_theirs,
        "conflicts": result.conflicts,
    }
    _out(args, data, text)
    return 1 if result.conflicts and args.prefer is None else 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from . import _migrate, _migrate_report

    if _vcr_missing("migrate"):
        return 2
    if args.rewrite_markers and not args.write:
        sys.stderr.write("llmreplay: --rewrite-markers changes files: give --write too\n")
        return 2
    report = _migrate.migrate(
        _existing(args.tests_dir),
        write=args.write,
        rewrite_markers=args.rewrite_markers,
        matching=args.matching,
        overwrite=args.overwrite,
        run=not args.no_run,
    )
    _out(args, report.as_dict(), _migrate_report.render(report))
    return 1 if report.refused or report.errors else 0


def cmd_import_pickle(args: argparse.Namespace) -> int:
    from ._pickle_import import convert

    result = convert(Path(args.cache), Path(args.output), trust=args.trust, url=args.url)
    text = "".join(f"skipped {key}: {why}\n" for key, why in result.skipped)
    text += f"converted {result.interactions} interaction(s) into {args.output}"
    text += f"; skipped {len(result.skipped)}\n"
    data = {"interactions": result.interactions, "skipped": [list(s) for s in result.skipped]}
    _out(args, data, text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    data = {
        "format": "llmreplay-cassette",
        "version": FORMAT_VERSION,
        "interactions": [_inspect.render(i) for i in _inspect.load(_existing(args.cassette))],
    }
    if args.format == "yaml":
        try:
            import yaml
        except ImportError:  # pragma: no cover - depends on the environment
            sys.stderr.write(
                "llmreplay: --format yaml needs PyYAML: pip install 'pytest-llmreplay[vcr]'\n"
            )
            return 2
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ._serve_run import run_cli  # uvicorn is imported only when a server starts

    return run_cli(args)


def cmd_textconv(args: argparse.Namespace) -> int:
    sys.stdout.write(_inspect.textconv(_inspect.load(_existing(args.cassette))))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from ._cassette import Cassette

    record = _existing(args.dir) / PLAYED_FILE
    if not record.is_file() and (Path(args.dir) / _OLD_PLAYED_FILE).is_file():
        record = Path(args.dir) / _OLD_PLAYED_FILE
    if not record.is_file():
        sys.stderr.write(
            f"llmreplay: {record} not found: run the test suite in replay or auto mode first; "
            "the pytest plugin writes there what each cassette played\n"
        )
        return 2
    played: dict[str, list[list[Any]]] = json.loads(record.read_text(encoding="utf-8"))
    removed_total, report = 0, []
    for name, entries in sorted(played.items()):
        path = Path(args.dir) / name
        if not path.is_file():
            continue
        keep = {(key, index) for key, index in entries}
        removed = Cassette(path, mode="replay").prune(keep, dry_run=args.dry_run)
        if removed:
            removed_total += removed
            report.append({"cassette": str(path), "removed": removed})
    verb = "would remove" if args.dry_run else "removed"
    text = "".join(f"{r['cassette']}: {verb} {r['removed']}\n" for r in report)
    text += f"{verb} {removed_total} unplayed interaction(s) from {len(report)} cassette(s)\n"
    _out(args, {"dry_run": args.dry_run, "cassettes": report}, text)
    return 0


# -- wiring ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmreplay",
        description="Read, review, check, convert, tidy and serve llmreplay cassettes.",
    )
    parser.add_argument("--version", action="version", version=f"llmreplay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, func: Any, help: str, json_flag: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = command("ls", cmd_ls, "list cassettes: interactions, endpoints, models, size, age", True)
    _folder_argument(p)
    p = command("show", cmd_show, "print interactions as readable JSON (bodies decoded)")
    p.add_argument("cassette")
    p.add_argument("--key", help="only interactions whose key starts with this")
    p = command("diff", cmd_diff, "what changed between two cassettes, by request key", True)
    p.add_argument("a")
    p.add_argument("b")
    p = command(
        "verify", cmd_verify, "check every cassette loads and holds no credentials (for CI)", True
    )
    _folder_argument(p)
    p = command(
        "import-vcr", cmd_import_vcr, "convert vcrpy cassettes (YAML/JSON) to llmreplay", True
    )
    p.add_argument("inputs", nargs="+", metavar="FILE|DIR")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument(
        "--deserializer",
        metavar="MODULE:FUNCTION",
        help="read files a custom vcrpy serializer wrote: the function takes the file's text "
        "and returns vcrpy's cassette dict",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p = command(
        "migrate",
        cmd_migrate,
        "move a pytest-recording (vcrpy) project onto llmreplay: a report, or --write",
        True,
    )
    p.add_argument("tests_dir", nargs="?", default="tests", metavar="TESTS_DIR")
    p.add_argument("--write", action="store_true", help="do it (default: a dry-run report)")
    p.add_argument(
        "--rewrite-markers",
        action="store_true",
        help="with --write: @pytest.mark.vcr -> @pytest.mark.llmreplay where it has no arguments",
    )
    p.add_argument(
        "--matching",
        choices=("vcrpy", "llmreplay"),
        default="vcrpy",
        help="keep vcrpy's default matching (no body) for tests that rely on it (default), "
        "or take llmreplay's (body-keyed; re-record the stale tests)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace cassettes already there")
    p.add_argument(
        "--no-run", action="store_true", help="do not run the suite to count stale recordings"
    )
    p = command(
        "import-pickle",
        cmd_import_pickle,
        "convert a TinyTroupe pickle cache once (data only, never code; needs --trust)",
        True,
    )
    p.add_argument("cache", metavar="CACHE")
    p.add_argument("-o", "--output", required=True, metavar="CACHE.msgpack")
    p.add_argument("--trust", action="store_true", help="you made this cache and vouch for it")
    p.add_argument("--url", default=DEFAULT_PICKLE_URL, help="the chat URL the calls went to")
    p = command("export", cmd_export, "write a readable JSON or YAML copy of a cassette")
    p.add_argument("cassette")
    p.add_argument("--format", choices=("json", "yaml"), default="json")
    p.add_argument("-o", "--output", metavar="FILE")
    p = command("prune", cmd_prune, "remove interactions the last test run did not play", True)
    _folder_argument(p)
    p.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    p = command(
        "merge",
        cmd_merge,
        "three-way merge of a cassette by request key (a git merge driver: exit 1 on conflict)",
        True,
    )
    p.add_argument("base", metavar="BASE")
    p.add_argument("ours", metavar="OURS")
    p.add_argument("theirs", metavar="THEIRS")
    p.add_argument("-o", "--output", metavar="OUT", help="where to write (default: OURS)")
    p.add_argument(
        "--prefer",
        choices=("ours", "theirs"),
        help="the side that wins a key both sides recorded differently (then exit 0)",
    )
    p = command("textconv", cmd_textconv, "stable text of a cassette, for git diff")
    p.add_argument("cassette")
    p = command(
        "serve",
        cmd_serve,
        "an HTTP endpoint over cassettes for subprocesses, containers, any language",
    )
    from ._serve_run import add_arguments

    add_arguments(p)
    return parser


def _folder_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        nargs="?",
        default=None,
        help="default: the project's cassette folder (ini llm_cassette_dir, as the plugin)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 fine, 1 a finding, 2 bad input)."""
    args = _parser().parse_args(argv)
    if args.func in (cmd_ls, cmd_verify, cmd_prune) and args.dir is None:
        args.dir = str(project_cassette_dir(Path.cwd()))
    try:
        code: int = args.func(args)
    except LLMReplayError as exc:
        sys.stderr.write(f"llmreplay: {exc}\n")
        return 2
    except OSError as exc:  # e.g. an output file that cannot be written
        sys.stderr.write(f"llmreplay: {exc.filename or ''}: {exc.strerror or exc}\n")
        return 2
    return code
