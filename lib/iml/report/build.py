"""Build the book: run the figure notebooks with papermill, write the claims page, check the static HTML.

Command line (what ``make notebooks`` / ``make refs`` / ``make check-html`` call)::

    python -m iml.report.build run --preset cpu        # papermill every notebooks/*.ipynb -> book/executed/*.ipynb,
                                                       # then write book/executed/claims.md
    python -m iml.report.build claims                  # only the "paper vs this book" page
    python -m iml.report.build refs                    # the nbval reference notebooks tests/notebooks/ (smoke)
    python -m iml.report.build check-html [_build/html]  # offline check, widths at 1400 px, screenshots
    python -m iml.report.build publish [_build/html]     # the self-contained site: _build/site + _build/site.tar.gz

Design: the notebooks in ``notebooks/`` are committed *without outputs*. papermill executes them with the
chosen preset into ``book/executed/`` (git-ignored), and Jupyter Book renders those executed copies with
``execute_notebooks: "off"``, so the book shows exactly the run papermill made and git stays clean.
The helpers the notebooks call are in :mod:`iml.report.notebook`, the claims page in :mod:`iml.report.claims`
and the HTML checks in :mod:`iml.report.html_check`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from iml.core import files
from iml.core.config import parse_override
from iml.report.claims import write_claims
from iml.report.html_check import check_html
from iml.report.notebook import EXECUTED_DIR, HEADLINE_ENV, RESULTS_ENV

__all__ = ["NOTEBOOKS_DIR", "EXECUTED_DIR", "notebook_paths", "run_notebooks", "tidy_parameters", "REFS_DIR",
           "REF_PARAMETERS", "make_refs", "slim_reference", "stage_book", "publish", "main"]

NOTEBOOKS_DIR = files.ROOT / "notebooks"
"""The figure notebooks, committed without outputs. (EXECUTED_DIR, where they are executed to, is defined in
:mod:`iml.report.notebook` so that :mod:`iml.report.claims` can use it without importing this module.)"""


# ------------------------------------------------------------------------------------------------
# Running the notebooks
# ------------------------------------------------------------------------------------------------

def notebook_paths(names: Iterable[str] | None = None) -> list[Path]:
    nbs = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    if names:
        want = set(names)
        nbs = [p for p in nbs if p.stem in want]
    return nbs


def run_notebooks(preset: str = "cpu", out_dir: str | os.PathLike = EXECUTED_DIR,
                  names: Iterable[str] | None = None, parameters: Mapping[str, Any] | None = None,
                  results_dir: str | os.PathLike | None = None, headline_dir: str | os.PathLike | None = None,
                  timeout: int | None = None, progress: bool = True) -> list[Path]:
    """papermill-execute notebooks/*.ipynb with ``preset`` (plus `parameters`) into `out_dir`.

    `results_dir` / `headline_dir` set $IML_RESULTS_ROOT / $IML_HEADLINE_ROOT for the kernels.
    Returns the executed notebook paths. Raises papermill's PapermillExecutionError on a failing cell.
    """
    import papermill as pm  # here, not at the top: papermill is an optional (book) dependency and slow to import

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_backup = {k: os.environ.get(k) for k in (RESULTS_ENV, HEADLINE_ENV, "OMP_NUM_THREADS")}
    if results_dir is not None:
        os.environ[RESULTS_ENV] = str(results_dir)
    if headline_dir is not None:
        os.environ[HEADLINE_ENV] = str(headline_dir)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    done = []
    try:
        for nb in notebook_paths(names):
            target = out / nb.name
            if progress:
                print(f"[iml.report.build] running {nb.relative_to(files.ROOT)} (preset={preset}) -> {target}", flush=True)
            pm.execute_notebook(str(nb), str(target), parameters={"preset": preset, **dict(parameters or {})},
                                kernel_name="python3", cwd=str(files.ROOT), progress_bar=False,
                                execution_timeout=timeout)
            tidy_parameters(target)
            done.append(target)
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return done


def _assignments(source: str) -> dict | None:
    """name -> value of a parameters cell's plain assignments (None when one is not a literal)."""
    import ast

    out = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return None
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            return None
    return out


def tidy_parameters(path: str | os.PathLike) -> Path:
    """Show an executed notebook's parameters once. papermill adds an ``injected-parameters`` cell after the
    notebook's own ``parameters`` cell: when every injected value equals the notebook's default, the injected
    cell is removed from the page (``remove-cell``); otherwise the injected values are what ran, so they stay and
    the notebook's own cell (its defaults and their comments) is collapsed (``hide-input``)."""
    path = Path(path)
    nb = json.loads(path.read_text())
    tagged = {t: c for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])
              if t in ("parameters", "injected-parameters")}
    own, injected = tagged.get("parameters"), tagged.get("injected-parameters")
    if own is None or injected is None:
        return path
    defaults, given = _assignments("".join(own["source"])), _assignments("".join(injected["source"]))
    same = defaults is not None and given is not None and all(k in defaults and defaults[k] == v
                                                              for k, v in given.items())
    cell, tag = (injected, "remove-cell") if same else (own, "hide-input")
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)
    files.write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path


REFS_DIR = files.ROOT / "tests" / "notebooks"
REF_PARAMETERS = {"results_root": "tmp", "headline_root": "none"}
"""Reference notebooks recompute the smoke run in a fresh temp folder and skip the committed-result lookup,
so re-running them under nbval gives the same outputs whatever results/ holds."""


def make_refs(out_dir: str | os.PathLike = REFS_DIR, names: Iterable[str] | None = None) -> list[Path]:
    """papermill the notebooks at the smoke preset into tests/notebooks/ (what `make refs` calls)."""
    paths = run_notebooks("smoke", out_dir, names, REF_PARAMETERS)
    for p in paths:
        slim_reference(p)
    return paths


def slim_reference(path: str | os.PathLike) -> Path:
    """Drop what nbval never compares from a reference notebook (images, widget state, outputs of
    `nbval-ignore-output` cells), so the committed references stay small."""
    path = Path(path)
    nb = json.loads(path.read_text())
    nb.get("metadata", {}).pop("widgets", None)
    for c in nb["cells"]:
        if c["cell_type"] != "code":
            continue
        if "nbval-ignore-output" in c.get("metadata", {}).get("tags", []):
            c["outputs"] = []
            continue
        for o in c.get("outputs", []):
            for k in ("image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"):
                o.get("data", {}).pop(k, None)
    files.write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path


def stage_book(dest: str | os.PathLike) -> Path:
    """Copy the book's sources (config, toc, pages, notebooks, vendored JS) into `dest` for a test build."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy2(files.ROOT / f, dest / f)
    shutil.copytree(files.ROOT / "book", dest / "book", ignore=shutil.ignore_patterns("executed"),
                    dirs_exist_ok=True)
    shutil.copytree(files.ROOT / "notebooks", dest / "notebooks", dirs_exist_ok=True)
    if (files.ROOT / "_vendor").exists():
        shutil.copytree(files.ROOT / "_vendor", dest / "_vendor", dirs_exist_ok=True)
    static = Path(__file__).resolve().parent / "static"  # the book's CSS (html_static_path in _config.yml)
    shutil.copytree(static, dest / "lib" / "iml" / "report" / "static", dirs_exist_ok=True)
    return dest


def publish(html_dir: str | os.PathLike = files.ROOT / "_build" / "html",
            out: str | os.PathLike = files.ROOT / "_build" / "site") -> tuple[Path, Path]:
    """The self-contained site (what the Pages workflow deploys): a copy of the built HTML, checked to load nothing
    from the network, with ``.nojekyll`` (so that a Pages site served from a branch keeps ``_static/``), and a
    tarball of it to serve from anywhere.
    Returns (site folder, tarball). Raises ValueError naming the pages that load external files."""
    import tarfile

    from iml.report.html_check import external_refs

    html_dir, out = Path(html_dir), Path(out)
    if not (html_dir / "index.html").exists():
        raise FileNotFoundError(f"{html_dir}/index.html not found: build the book first (make book)")
    ext = external_refs(html_dir)
    if ext:
        raise ValueError("pages load external files: " + "; ".join(f"{p}: {h[0]}" for p, h in ext.items()))
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html_dir, out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    (out / ".nojekyll").write_text("")
    tarball = out.with_suffix(".tar.gz")
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(out, arcname=out.name)
    return out, tarball


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m iml.report.build", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="papermill-execute every notebook, then write the claims page")
    r.add_argument("--preset", default="cpu")
    r.add_argument("--out", default=str(EXECUTED_DIR))
    r.add_argument("--only", nargs="*", help="notebook names (stems) to run")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=JSON",
                   help="extra notebook parameter, e.g. -p force=true")
    c = sub.add_parser("claims", help="write the 'paper vs this book' page")
    c.add_argument("--out", default=str(EXECUTED_DIR / "claims.md"))
    rf = sub.add_parser("refs", help="regenerate the nbval reference notebooks (tests/notebooks/, smoke preset)")
    rf.add_argument("--out", default=str(REFS_DIR))
    h = sub.add_parser("check-html", help="offline + headless-chromium checks of the built HTML")
    h.add_argument("html_dir", nargs="?", default=str(files.ROOT / "_build" / "html"))
    h.add_argument("--no-browser", action="store_true")
    pb = sub.add_parser("publish", help="copy the built HTML into a self-contained site folder and a tarball")
    pb.add_argument("html_dir", nargs="?", default=str(files.ROOT / "_build" / "html"))
    pb.add_argument("--out", default=str(files.ROOT / "_build" / "site"))
    args = ap.parse_args(argv)
    if args.cmd == "run":
        params = dict(parse_override(kv) for kv in args.param)
        run_notebooks(args.preset, args.out, args.only, params)
        path = write_claims(Path(args.out) / "claims.md")
        print(f"[iml.report.build] wrote {path}")
        return 0
    if args.cmd == "refs":
        for p in make_refs(args.out):
            print(f"[iml.report.build] wrote {p}")
        return 0
    if args.cmd == "claims":
        print(f"[iml.report.build] wrote {write_claims(args.out)}")
        return 0
    if args.cmd == "publish":
        site, tarball = publish(args.html_dir, args.out)
        print(f"[iml.report.build] wrote {site}/ and {tarball}")
        return 0
    if args.cmd == "check-html":
        bad = 0
        for chk in check_html(args.html_dir, browser=not args.no_browser):
            state = "ok" if not chk.problems else "FAIL"
            print(f"[{state}] {chk.page}" + (f"  (screenshot {chk.screenshot})" if chk.screenshot else ""))
            for pr in chk.problems:
                print(f"    - {pr}")
            bad += bool(chk.problems)
        return 1 if bad else 0
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
