"""The library's shape: sub-packages by concern, imports that point one way, no import loops, small modules.

``core`` knows no task; the tasks (``lm``, ``scratch``, ``mnist``) know ``core`` and never the book (``report``)
or the entry points (``registry``, ``cli``, ``verify``). Imports inside functions count.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib" / "iml"
MAX_LINES = 700
LAYER = {"core": 0, "lm": 1, "scratch": 1, "mnist": 1, "report": 2, "registry": 2, "verify": 3, "cli": 4,
         "__main__": 5}
"""A module may import modules of a lower layer, and of its own package; `report` may import `registry`."""


def module_name(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """The iml modules `path` imports anywhere (top level or inside functions), resolved to module names."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "iml"}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (write `from iml.<package> import ...`)"
            if not (node.module or "").startswith("iml"):
                continue
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in MODULES else node.module)
    return {m for m in out if m in MODULES and m != "iml"}


GRAPH = {m: imports(p) - {m} for m, p in MODULES.items()}


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "iml"


def test_no_import_loops():
    """Depth-first search over every module's imports, inside functions included: no cycle."""
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import loops: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if top(m) in LAYER))
def test_imports_point_down(module):
    me = top(module)
    bad = sorted(n for n in GRAPH[module] if top(n) in LAYER and top(n) != me and LAYER[top(n)] >= LAYER[me]
                 and not (me == "report" and top(n) == "registry"))
    assert not bad, f"{module} imports {bad}: {me} may import only lower layers ({LAYER})"


def test_core_knows_no_task():
    tasks = {"lm", "scratch", "mnist", "report", "registry", "cli", "verify"}
    bad = {m: sorted(n for n in GRAPH[m] if top(n) in tasks) for m in MODULES if top(m) == "core"}
    assert not {m: v for m, v in bad.items() if v}


def test_the_library_is_grouped_by_concern():
    flat = sorted(m for m in MODULES if m.count(".") == 1 and m not in (
        "iml.cli", "iml.registry", "iml.verify", "iml.__main__", "iml.core", "iml.lm", "iml.scratch", "iml.mnist",
        "iml.report"))
    assert not flat, f"modules outside a sub-package: {flat}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_700_lines(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{module}: {n} lines"


def test_a_loop_is_found():
    """The checker itself: a two-module loop written to a temporary graph is reported."""
    global GRAPH
    saved = GRAPH
    try:
        GRAPH = {**saved, "iml.core.stats": saved["iml.core.stats"] | {"iml.core.verdicts"}}
        with pytest.raises(AssertionError, match="import loops"):
            test_no_import_loops()
    finally:
        GRAPH = saved


def test_atomic_writes_temporary_files_are_git_ignored(tmp_path):
    """A process killed mid-write leaves `.<name>.XXXX.tmp` (iml.core.files.atomic_path): git must not see it."""
    import subprocess

    from iml.core import files

    if not (files.ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    probe = files.ROOT / "results" / ".results.csv.abcd1234.tmp"
    out = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=files.ROOT)
    assert out.returncode == 0, "add '.*.tmp' to .gitignore"
