"""Every figure notebook runs end to end at the smoke preset (papermill, results in a temp folder), the
strict book build works on those outputs and renders offline, and the nbval reference notebooks match.

Slow-ish: one papermill run of every notebook (shared by the tests below) and one strict Jupyter Book
build.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iml.report import build, claims, html_check, notebook
from iml.core import files, paper
from iml import registry
from iml.core import results

NOTEBOOK_EXPERIMENT = {"main_result": "main", "set_inclusion": "setinclusion", "mnist_grid": "mnist",
                       "batch_size": "mnist", "model_size": "mnist", "gradient_alignment": "gradalign",
                       "alpha": "mnist", "probes": "probe"}
SWEEP_NOTEBOOKS = {"batch_size": "iml.mnist.batch_size.run_sweep(", "model_size": "iml.mnist.model_size.run_sweep(",
                   "gradient_alignment": "iml.mnist.gradient_alignment.run_sweep(",
                   "alpha": "iml.mnist.alpha.run_sweep("}
"""Notebooks of a sweep over one experiment: they call the sweep's module instead of the registry."""
NOTEBOOKS = sorted(p.stem for p in build.NOTEBOOKS_DIR.glob("*.ipynb"))


def test_every_notebook_is_known():
    assert set(NOTEBOOKS) == set(NOTEBOOK_EXPERIMENT), "add new notebooks to NOTEBOOK_EXPERIMENT"


def _cells(nb_path):
    return json.loads(Path(nb_path).read_text())["cells"]


def test_notebooks_have_parameters_and_no_backend_switch():
    for name in NOTEBOOKS:
        cells = _cells(build.NOTEBOOKS_DIR / f"{name}.ipynb")
        params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, name
        src = "".join(params[0]["source"])
        for p in ('preset = "cpu"', "overrides = {}", "force = False"):
            assert p in src, (name, p)
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "matplotlib.use" not in code and "import matplotlib" not in code
        assert SWEEP_NOTEBOOKS.get(name, f'iml.registry.get("{NOTEBOOK_EXPERIMENT[name]}")') in code
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), f"{name}: commit without outputs"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """papermill every runnable notebook at the smoke preset; a fake committed gpu result for `main`
    exercises the headline branch. Returns (out_dir, {name: path}, results root)."""
    tmp = tmp_path_factory.mktemp("book")
    res_root, head_root, out = tmp / "results", tmp / "headline", tmp / "executed"
    names = list(NOTEBOOKS)
    if "main_result" in names:
        cfg = registry.get("main").make_config("gpu")
        store = results.ResultStore("main", cfg, root=head_root)
        store.save_unit("u0", notebook.fake_result("main").table)
        store.finalize(["u0"], meta={"preset": "gpu"})
    paths = build.run_notebooks("smoke", out, names, results_dir=res_root, headline_dir=head_root,
                               progress=False)
    return out, {p.stem: p for p in paths}, res_root


def _outputs(path):
    outs = []
    for c in _cells(path):
        for o in c.get("outputs", []):
            outs.append(o)
    return outs


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_at_smoke(executed, name):
    out, paths, res_root = executed
    outs = _outputs(paths[name])
    assert not [o for o in outs if o["output_type"] == "error"]
    pngs = [o for o in outs if "image/png" in o.get("data", {})]
    assert pngs, "no figure"
    md = "\n".join("".join(o["data"].get("text/markdown", "")) for o in outs if "data" in o)
    assert "Scale:" in md
    html_tables = [o for o in outs if "text/html" in o.get("data", {})]
    assert html_tables, "no comparison table"
    # the run went to the temp results root, not results/
    exp = NOTEBOOK_EXPERIMENT[name]
    assert any((res_root / exp).iterdir())
    if name == "main_result":
        assert "committed `gpu`-preset result" in md  # the fake committed result was found and shown
        assert len(pngs) >= 2  # the headline figure (fake committed gpu result) + this run's figure
        meta = json.loads(paths[name].read_text())["metadata"]
        state = meta["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        kinds = {v["model_name"] for v in state.values()}
        assert {"StackModel", "ToggleButtonsModel", "LinkModel", "HTMLModel"} <= kinds
    elif name == "batch_size":
        assert "No committed `gpu` sweep" in md and "No committed `gpu-joint` sweep" in md
        assert md.count("Verdict on this sweep") == 2  # the two-stage and the single-stage sweep
    elif name == "model_size":
        assert "No committed `gpu` sweep" in md and md.count("Verdict on this sweep") == 2  # transformer, ConvNet
        assert "- width 4, hidden 32 (3,850 parameters): Scale: mnist (smoke preset)" in md
        assert "- d_model 16, 1 layer(s) (3,312 non-embedding parameters): Scale: setinclusion" in md
    elif name == "alpha":
        assert "No committed `gpu` sweep" in md and md.count("**Verdict**") == 1
        assert "- α = 0.5: Scale: mnist" in md and "- α = 1: Scale: mnist (smoke preset)" in md
    elif name == "gradient_alignment":
        assert "No committed `gpu` sweep" in md and md.count("**Verdict**") == 1
        assert "- batch 8: Scale: gradalign" in md and "- batch 32: Scale: gradalign (smoke preset)" in md
    else:
        assert "No committed `gpu`-preset result" in md or "committed `gpu`-preset result" in md


@pytest.mark.slow
def test_book_builds_strict_and_renders_offline(executed, tmp_path):
    out, paths, res_root = executed
    if not (files.ROOT / "book" / "mnist_design.md").exists():
        pytest.skip("book/mnist_design.md (written by the MNIST helper) is in the toc but not there yet")
    if not (files.ROOT / "_vendor" / "widgets" / "embed-amd.js").exists():
        pytest.skip("widget JS not vendored: run `make vendor` (scripts/vendor_widgets.sh; needs npm once)")
    stage = build.stage_book(tmp_path / "src")
    dest = stage / "book" / "executed"
    dest.mkdir(parents=True)
    for p in paths.values():
        shutil.copy2(p, dest / p.name)
    claims.write_claims(dest / "claims.md", available=claims.best_results(root=res_root))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    jb = Path(sys.executable).with_name("jupyter-book")
    r = subprocess.run([str(jb), "build", str(stage), "--all", "-W", "-n", "--keep-going"], capture_output=True,
                       text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    html_dir = stage / "_build" / "html"
    checks = html_check.check_html(html_dir, screenshots=tmp_path / "shots", browser=html_check.chromium_binary() is not None,
                                   shoot=False)  # widths measured on every page; make check-html keeps the screenshots
    problems = [f"{c.page}: {p}" for c in checks for p in c.problems]
    assert not problems, problems
    page = (html_dir / "book" / "executed" / "main_result.html").read_text()
    assert "_static/widgets/embed-amd.js" in page and "cdn.jsdelivr" not in page
    claims_page = (html_dir / "book" / "executed" / "claims.html").read_text()
    assert claims_page.count("<details") == len(paper.CLAIMS) and "forest.png" in claims_page
    intro = (html_dir / "book" / "intro.html").read_text()
    assert "forest.png" in intro and "ours (95% CI)" in intro and "krasheninnikov2024implicit" in intro
    if html_check.chromium_binary() is None:
        pytest.skip("HTML built and offline-checked; chromium missing, so no render check (make test installs it)")


REFS = sorted(p for p in build.REFS_DIR.glob("*.ipynb")) if build.REFS_DIR.exists() else []


@pytest.mark.slow
def test_nbval_references(request):
    """Re-run the committed smoke-preset reference notebooks and compare their outputs (nbval).

    Skipped when pytest already collects them itself (``--nbval`` in addopts)."""
    if request.config.getoption("nbval", default=False):
        pytest.skip("pytest runs with --nbval: the reference notebooks are collected directly")
    if not REFS:
        pytest.skip("no reference notebooks in tests/notebooks/ (make refs)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                        "--nbval-current-env", "--nbval-sanitize-with", str(files.ROOT / "tests" / "sanitize.cfg"),
                        *map(str, REFS)], capture_output=True, text=True, cwd=files.ROOT, env=env, timeout=1800)
    assert r.returncode == 0, r.stdout[-6000:]
