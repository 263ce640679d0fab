"""iml.report.notebook, iml.report.claims, iml.report.html_check and iml.core.paper on fake results: claims page,
comparison tables, explorer, headline lookup, offline HTML check."""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from iml.report import claims, html_check, notebook, plots
from iml.core import files, paper
from iml.core import results, study
from iml.core import verdicts  # noqa: E402


def test_paper_reference_values_have_provenance():
    df = paper.references("main")
    assert (df["provenance"] == "POSTER").all()
    assert df["source"].str.contains("±0.005").all()
    assert paper.reference("main", "d1consis", "stage2_end") == pytest.approx(0.312)
    assert paper.reference("main", "ent_assoc_name_d2consis", "stage2_end") == pytest.approx(0.073)
    v, src = paper.paper_gap("main", "d1consis", "d2consis", "EM")
    assert v == pytest.approx(0.034) and "poster" in src
    v, src = paper.paper_gap("setinclusion", "d1consis", "d2consis", "acc")
    assert math.isnan(v) and "no number" in src
    assert paper.references("mnist")["value"].isna().all()


def test_symbols():
    assert paper.symbol("d1consis") == "Ḋ₅ᶜᵒⁿˢ"
    assert paper.symbol("ent_assoc_name_qd2incons_swapped").endswith("(assoc with defs)")
    assert paper.symbol("ent_assoc_name_d2consis", math=True) == r"$\bar{D}_6^{cons}$"


def test_comparison_table_beside_paper():
    r = notebook.fake_result("main", gap=0.1)
    t = notebook.comparison(r)
    row = t[t["comparison"].str.startswith("IML, in-distribution")].iloc[0]
    assert row["paper"] == pytest.approx(0.034)
    assert row["ours"] > 0.05
    assert row["seeds"] == "3×2"
    stage1 = t[t["comparison"].str.startswith("Stage 1")]
    assert set(stage1["epoch"]) == {4}  # stage-1 gaps at the last stage-1 epoch
    t2 = notebook.comparison(notebook.fake_result("setinclusion"))
    assert list(t2["comparison"]) == ["IML, set inclusion: Ḋ₅ − D̄₆"] and (t2["paper"] == "no number").all()


@pytest.mark.parametrize("gap,preset,seeds,status", [
    (0.1, "cpu", 10, "reproduced"),
    (0.1, "smoke", 9, "too few seeds"),  # a verdict needs 10 stage-1 seeds, however clear the gap
    (0.0, "cpu", 10, "null at our scale"),
    (0.0, "paper", 10, "not reproduced"),
    (-0.1, "cpu", 10, "not reproduced"),
])
def test_claims_status_is_computed(gap, preset, seeds, status):
    r = notebook.fake_result("main", gap=gap, n_stage1=seeds)
    t = claims.claims_table({"main": (preset, r)})
    row = t[t["figure"].str.contains("in-distribution EM")].iloc[0]
    assert row["status"] == status
    assert preset in row["scale"]
    assert "+0.034" in row["paper"]


def test_a_gap_at_the_floor_is_uninformative_not_null():
    r = notebook.fake_result("main", gap=0.1, n_stage1=10)
    ea = r.table["subset"].str.startswith("ent_assoc")
    r.table.loc[ea, "value"] = 0.0  # every entity-association question unanswered: EM 0 on both sides
    t = claims.claims_table({"main": ("cpu", r)})
    row = t[t["figure"].str.contains("entity association")].iloc[0]
    assert row["status"] == "uninformative (floor/ceiling)" and "floor" in row["this book"]


def test_an_mnist_result_reproduces_a_language_model_claim_only_as_an_analogue(monkeypatch):
    mnist = notebook.fake_result("mnist", gap=0.1, n_stage1=10)
    t = claims.claims_table({"mnist": ("cpu", mnist)})
    vision = t[t["#"] == 8].iloc[0]
    assert vision["status"] == "reproduced"  # the paper's own vision claim: a reproduction proper
    assert not any("schematic" in f.lower() for f in t["figure"])  # the design is not a claim
    lm_claim = paper.Claim(99, "a language-model figure", "IML", "mnist", (("d1consis", "d2consis", "acc"),))
    monkeypatch.setattr(paper, "CLAIMS", paper.CLAIMS + (lm_claim,))
    t = claims.claims_table({"mnist": ("cpu", mnist)})
    assert t[t["#"] == 99].iloc[0]["status"] == "reproduced (analogue)"
    md = claims.claims_markdown(t)
    assert "reproduced (analogue): 1" in md and "reproduced: 1," in md


def test_claims_not_attempted_without_results():
    t = claims.claims_table({})
    assert len(t) == len(paper.CLAIMS)
    assert set(t["status"]) <= set(verdicts.STATUSES)
    assert (t.loc[t["figure"].str.contains("set-inclusion"), "status"] == "not attempted").all()
    md = claims.claims_markdown(t)
    assert md.startswith("# Paper vs this book")
    assert md.count("\n| ") == len(t) + 1  # header + one row per claim


def test_write_claims(tmp_path):
    p = claims.write_claims(tmp_path / "claims.md", available={"setinclusion": ("cpu", notebook.fake_result("setinclusion"))})
    text = p.read_text()
    assert "| 7 | From-scratch set-inclusion" in text and "reproduced" in text


def test_verdict_words():
    assert "**reproduced**" in notebook.verdict(notebook.fake_result("main", gap=0.1, n_stage1=10))
    assert "**too few seeds**" in notebook.verdict(notebook.fake_result("main", gap=0.1, n_stage1=2))
    assert "4 planned comparisons" in notebook.verdict(notebook.fake_result("main", gap=0.1, n_stage1=10))
    assert "No claim" in notebook.verdict(notebook.fake_result("main"), "unknown")


def test_explorer_precomputes_every_view():
    w = pytest.importorskip("ipywidgets")
    r = notebook.fake_result("main", n_stage1=2, n_stage2=1)
    box = notebook.explorer(r, max_seeds=2)
    metrics, views, seeds = notebook.explorer_views(r, 2)
    assert metrics == ["EM", "F1"] and len(views) == 3 and len(seeds) == 3
    stack = box.children[2]
    assert isinstance(stack, w.Stack) and len(stack.children) == 2
    leaf = stack.children[0].children[0]
    assert len(leaf.children) == 3 and 'src="data:image/png;base64,' in leaf.children[0].value
    # every selector is linked client-side (jslink), not through Python callbacks
    assert len(box._iml_links) == 1 + 2 + 2 * 3
    assert all(isinstance(l, w.widget_link.Link) for l in box._iml_links)


def test_results_root(monkeypatch, tmp_path):
    monkeypatch.delenv(notebook.RESULTS_ENV, raising=False)
    assert notebook.results_root() is None
    monkeypatch.setenv(notebook.RESULTS_ENV, str(tmp_path))
    assert notebook.results_root() == tmp_path
    t = notebook.results_root("tmp")
    assert t.exists() and t != tmp_path


def _store_fake(root, name, preset):
    from iml import registry

    cfg = registry.get(name).make_config(preset)
    store = results.ResultStore(name, cfg, root=root)
    store.save_unit("u0", notebook.fake_result(name).table)
    store.finalize(["u0"], meta={"preset": preset})
    return store


def test_headline_lookup(tmp_path):
    pytest.importorskip("iml.lm.experiment")
    assert notebook.headline("main", root=tmp_path) is None
    assert "No committed `gpu`-preset result" in notebook.headline_note(None, "main", root=tmp_path)
    assert "disabled" in notebook.headline_note(None, "main", root="none")
    store = _store_fake(tmp_path, "main", "gpu")
    h = notebook.headline("main", root=tmp_path)
    assert h is not None and h.hash == store.hash
    assert "committed `gpu`-preset result" in notebook.headline_note(h, "main")
    # best_results picks the largest preset present
    avail = claims.best_results(root=tmp_path)
    assert avail["main"][0] == "gpu"


def test_headline_shows_a_gpu_run_cut_short_by_its_deadline(tmp_path):
    """A run of the gpu config that kept only its first seeds (finalize_completed) is the headline,
    and says that it was cut short."""
    pytest.importorskip("iml.lm.experiment")
    from iml.lm import experiment
    from iml.core.config import config_hash

    planned = experiment.make_config("gpu")
    cut = experiment.make_config("gpu", {"seeds.n_stage1": 3})
    store = results.ResultStore("main", cut, root=tmp_path)
    store.save_unit("u0", notebook.fake_result("main").table)
    store.finalize(["u0"], meta={"planned_n_stage1": 10, "planned_config_hash": config_hash(planned)})
    other = results.ResultStore("main", experiment.make_config("gpu", {"seeds.n_stage1": 4}), root=tmp_path)
    other.save_unit("u0", notebook.fake_result("main").table)
    other.finalize(["u0"], meta={"planned_n_stage1": 10, "planned_config_hash": "0123456789ab"})  # another plan
    h = notebook.headline("main", root=tmp_path)
    assert h is not None and h.hash == store.hash
    note = notebook.headline_note(h, "main")
    assert "3 of the 10 planned stage-1 seeds" in note and "gpu preset, cut to 3 of 10" in note


def test_a_meta_claiming_another_plan_is_not_the_headline(tmp_path):
    """A cpu-preset result whose meta.json is edited to name the gpu preset's hash as its plan is not presented
    as the gpu headline: the claim is recomputed from its config (results.cut_from)."""
    pytest.importorskip("iml.lm.experiment")
    from iml.lm import experiment
    from iml.core.config import config_hash

    cpu = experiment.make_config("cpu")
    store = results.ResultStore("main", cpu, root=tmp_path)
    store.save_unit("u0", notebook.fake_result("main").table)
    gpu_hash = config_hash(experiment.make_config("gpu"))
    store.finalize(["u0"], meta={"planned_n_stage1": 10, "planned_config_hash": gpu_hash})
    assert notebook.headline("main", root=tmp_path) is None
    assert results.cut_from(results.load_dir(store.dir)) is None
    assert plots.preset_label(results.load_dir(store.dir)) == "cpu"


def test_external_refs(tmp_path):
    (tmp_path / "a.html").write_text(
        '<script src="https://cdn.jsdelivr.net/npm/x.js"></script><script src="_static/ok.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/x.css"><a href="https://arxiv.org/abs/2310.15047">p</a>'
        '<link rel="canonical" href="https://example.org/">')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.html").write_text('<img src="../_images/f.png">')
    refs = html_check.external_refs(tmp_path)
    assert list(refs) == ["a.html"]
    assert len(refs["a.html"]) == 2  # the CDN script and the protocol-relative stylesheet; not <a>, not canonical


def test_check_page_dom():
    good = ('<div class="iml-explorer"><div class="widget-toggle-buttons"></div>'
            '<img class="iml-explorer-view" src="data:image/png;base64,AAA"></div>')
    assert html_check.check_page_dom(good, expect_widgets=True) == []
    fallback = '<pre>VBox(children=(HBox(...)))</pre><img src="x.png">'
    probs = html_check.check_page_dom(fallback, expect_widgets=True)
    assert any("did not render" in p for p in probs)
    assert html_check.check_page_dom("<p>no figures</p>", expect_widgets=False)


def test_single_stage1_seed_is_never_reproduced():
    fake = notebook.fake_result("setinclusion")
    one = fake.table[fake.table["seed_stage1"] == fake.table["seed_stage1"].min()]
    res = results.Result(fake.experiment, fake.hash, fake.dir, one, fake.config, fake.meta)
    status, txt = study.gap_claim(res, "d1consis", "d2consis", "acc", None, "cpu")
    assert status == "too few seeds" and "a verdict needs at least 10" in txt


def test_committed_gpu_results_are_the_current_gpu_presets():
    """The committed H200 results stay the headlines: changing a gpu preset (or code that a config hash
    covers) without rerunning it would silently drop them from the book. The main run is also resumable:
    its planned folder holds the finished seeds' units under the current gpu config."""
    from iml.lm import experiment
    from iml.core.config import config_hash
    from iml.core.files import RESULTS_DIR

    for name in ("main", "mnist"):
        assert notebook.headline(name, root=RESULTS_DIR) is not None, f"committed {name} gpu result no longer found"
    planned = RESULTS_DIR / "main" / config_hash(experiment.make_config("gpu"))
    if (planned / "units").exists():
        assert len(list((planned / "units").glob("s*-*.csv"))) >= 2


# ------------------------------------------------------------------------------------------------
# Findings first, the claims page, tables, parameters, publishing (issue #18)
# ------------------------------------------------------------------------------------------------

def _available(gap):
    return {"main": ("gpu", notebook.fake_result("main", gap=gap, n_stage1=10)),
            "mnist": ("cpu", notebook.fake_result("mnist", gap=0.1, n_stage1=10))}


def test_the_findings_table_is_generated_from_the_results():
    from iml.report import findings

    def table_for(gap):
        av = _available(gap)
        rows = findings.forest_rows(av, claims.claims_table(av))
        return rows, findings.findings_markdown(rows)

    rows, md = table_for(0.1)
    ind = rows[rows["title"] == "Main result: IML, in-distribution"].iloc[0]
    assert md.splitlines()[0] == "| claim | paper | ours (95% CI) | scale | status |"
    assert findings.fmt_interval(ind["ci_low"], ind["ci_high"]) in md and ">reproduced</span>" in md
    assert "| +0.034 |" in md and "so ±0.01 for a difference of two" in md
    assert "fake-gptneox, hidden_size=64; gpu; 10×2 seeds; CPU" in md  # the scale, read from the result
    assert "{doc}`Main result: IML, in-distribution (1) </book/executed/main_result>`" in md
    assert "Not attempted (no experiment in this book): T-REx version (9)" in md
    rows2, md2 = table_for(-0.1)  # another result, another table
    ind2 = rows2[rows2["title"] == "Main result: IML, in-distribution"].iloc[0]
    assert ind2["gap"] < 0 < ind["gap"] and md2 != md
    assert findings.fmt_signed(ind2["gap"]) in md2 and ">not reproduced</span>" in md2


def test_signed_zero_is_printed_as_zero():
    from iml.report import findings

    assert findings.fmt_signed(-0.0001) == "0.000" and findings.fmt_signed(0.0) == "0.000"
    assert findings.fmt_signed(-0.009) == "\u22120.009" and findings.fmt_signed(0.0341) == "+0.034"
    assert findings.fmt_interval(-0.0004, 0.016) == "[0.000, +0.016]"


def test_write_claims_writes_what_the_intro_includes(tmp_path):
    p = claims.write_claims(tmp_path / "claims.md", available=_available(0.1))
    for name in ("findings_table.md", "forest.png", "about.md"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "forest.png").read_bytes()[:4] == b"\x89PNG"
    text = p.read_text()
    assert text.index("```{figure} forest.png") < text.index("| # | claim | status |")  # the picture heads the page
    about = (tmp_path / "about.md").read_text()
    assert "@inproceedings{krasheninnikov2024implicit" in about and "CITATION.cff" in about and "MIT" in about


def test_the_claims_page_scans():
    """A compact table (status badge, one-line result, link), the long reasoning in one collapsible block each."""
    from iml.report import findings

    av = _available(0.1)
    t = claims.claims_table(av)
    md = claims.claims_markdown(t, findings.forest_rows(av, t), "forest.png")
    table = [l for l in md.splitlines() if l.startswith("| ") and not l.startswith("| comparison")]
    assert len(table) == len(paper.CLAIMS) + 1 and table[0] == "| # | claim | status | result (95% CI) | page |"
    assert max(len(l) for l in table) < 900  # one line of result per claim, not the whole evidence
    assert md.count("````{dropdown}") == md.count("\n````\n") == len(paper.CLAIMS)
    row = next(l for l in table if "in-distribution EM" in l)
    assert 'class="iml-badge"' in row and "{doc}`page </book/executed/main_result>`" in row
    assert "both sides of a comparison at the metric's floor" in md  # the rules stay on the page


def test_intro_includes_the_generated_findings():
    intro = (files.ROOT / "book" / "intro.md").read_text()
    assert intro.index("```{include} executed/findings_table.md") < intro.index("## The question")
    assert "```{figure} executed/forest.png" in intro and "```{include} executed/about.md" in intro


def test_table_helper():
    import pandas as pd

    df = pd.DataFrame({"α": [0.5, 1.0], "IML gap Ḋ₅ − D̄₆": [-0.139, 0.0], "IML 95% CI": ["[-1.198, +0.920]",
                       "[-0.000, +0.000]"], "p (one-sided)": [0.83, 0.0001], "cos gap": [0.0085, 0.0054],
                       "core-min": [4.0, 13.2], "config": ["7d3b72917946", "04c57319dafe"],
                       "paper": ["no number", "no number"]})
    t = notebook.table(df)
    assert t.columns == ["α", "IML gap Ḋ₅ − D̄₆", "IML 95% CI", "p (one-sided)", "cos gap", "core-min"]
    assert t.rows[0] == ["0.5", "-0.139", "[-1.198, +0.920]", "0.830", "+0.0085", "4.0"]
    assert t.rows[1] == ["1", "0.000", "[0.000, 0.000]", "<0.001", "+0.0054", "13.2"]
    assert t.notes == ["paper (every row): no number", "config: 0.5 → 7d3b72917946; 1 → 04c57319dafe"]
    h = t._repr_html_()
    assert '<td title="config 7d3b72917946">0.5</td>' in h and "<th>config</th>" not in h
    assert repr(t).split()[0] == "α" and "\n0 " not in repr(t)  # no index column
    wide = notebook.table(pd.DataFrame({f"column {i}": [0.1 * i, 0.2] for i in range(14)}))._repr_html_()
    assert wide.count("<table") == 2 and wide.count("<th>column 0</th>") == 2  # split, each led by the label
    shown = notebook.table(notebook.comparison(notebook.fake_result("main", gap=0.1)))
    assert shown.columns[:3] == ["comparison", "epoch", "ours"]
    assert any("±0.005 per value read, so ±0.01 for this difference" in n for n in shown.notes)
    assert all(r[0] and "..." not in r[0] for r in shown.rows)  # labels whole


def test_the_parameters_show_once(tmp_path):
    import json

    from iml.report import build

    def nb(injected):
        cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": ['preset = "cpu"  # smoke | cpu\n',
                                                                                         "force = False"]},
                 {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": injected},
                 {"cell_type": "code", "metadata": {}, "source": ["x = 1"]}]
        p = tmp_path / "nb.ipynb"
        p.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        build.tidy_parameters(p)
        return [c["metadata"].get("tags", []) for c in json.loads(p.read_text())["cells"]]

    assert nb(['# Parameters\npreset = "cpu"\n']) == [["parameters"], ["injected-parameters", "remove-cell"], []]
    assert nb(['# Parameters\npreset = "gpu"\n']) == [["parameters", "hide-input"], ["injected-parameters"], []]
    assert nb(['results_root = "tmp"\n']) == [["parameters", "hide-input"], ["injected-parameters"], []]


def test_plumbing_cells_are_hidden():
    import json

    for p in sorted((files.ROOT / "notebooks").glob("*.ipynb")):
        for c in json.loads(p.read_text())["cells"]:
            if c["cell_type"] != "code":
                continue
            tags = c.get("metadata", {}).get("tags", [])
            assert ("parameters" in tags) != ("hide-input" in tags), (p.name, "".join(c["source"])[:60])


def test_publish_makes_a_self_contained_site(tmp_path):
    import tarfile

    from iml.report import build

    html = tmp_path / "html"
    (html / "_static").mkdir(parents=True)
    (html / "index.html").write_text('<script src="_static/a.js"></script>')
    (html / "_static" / "a.js").write_text("")
    site, tarball = build.publish(html, tmp_path / "site")
    assert (site / "index.html").exists() and (site / ".nojekyll").exists()
    assert "site/_static/a.js" in tarfile.open(tarball).getnames()
    (html / "index.html").write_text('<script src="https://cdn.example/x.js"></script>')
    with pytest.raises(ValueError, match="cdn.example"):
        build.publish(html, tmp_path / "site2")


def test_the_pages_workflow_passes_its_linter():
    import shutil
    import subprocess
    import sys

    import yaml

    wf = files.ROOT / ".github" / "workflows" / "book.yml"
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is missing: pip install -e '.[dev]'"
    r = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(wf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = yaml.safe_load(wf.read_text())["jobs"]
    steps = jobs["build"]["steps"]
    runs = [s.get("run") for s in steps if "run" in s]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert runs == ["make book", "make publish"]  # the README's command, then the site make publish checks
    assert {"actions/checkout", "actions/setup-python", "actions/upload-pages-artifact"} <= set(uses)
    assert next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))["with"]["python-version"] == "3.11"
    assert next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))["with"]["path"] == \
        "_build/site"
    assert jobs["deploy"]["steps"][0]["uses"].startswith("actions/deploy-pages")
    assert "publish:" in (files.ROOT / "Makefile").read_text()


def test_the_download_button_is_off():
    import yaml

    cfg = yaml.safe_load((files.ROOT / "_config.yml").read_text())
    assert cfg["html"]["use_download_button"] is False
    # jupyter-book 1.x passes html.use_download_button to nothing; the theme reads html_theme_options
    assert cfg["sphinx"]["config"]["html_theme_options"]["use_download_button"] is False
    assert cfg["sphinx"]["recursive_update"] is True
    assert "MIT" in cfg["html"]["extra_footer"]


def test_overflow_problems():
    base = {"viewport": 1400, "column": [300, 1120], "page_width": 1400, "height": 3000}
    item = {"what": "table.dataframe", "text": "a table", "left": 300, "width": 800, "scroll_width": 800,
            "client_width": 800, "overflow_x": "visible", "clipper": None, "clip_left": None, "clip_right": None,
            "clip_overflow": None, "clip_deliberate": False, "natural_width": None}
    assert html_check.overflow_problems({**base, "items": [{**item, "right": 1100}]}) == []
    wide = html_check.overflow_problems({**base, "items": [{**item, "right": 1300, "width": 1000}]})
    assert len(wide) == 1 and "past the content column 300..1120" in wide[0]
    scrolled = {**item, "right": 1300, "width": 1000, "clipper": "div.output", "clip_left": 300, "clip_right": 1100,
                "clip_overflow": "auto"}
    assert "needs a sideways scroll" in html_check.overflow_problems({**base, "items": [scrolled]})[0]
    assert html_check.overflow_problems({**base, "items": [{**scrolled, "clip_deliberate": True}]}) == []
    cut = {**scrolled, "clip_overflow": "hidden", "clip_deliberate": True}
    assert "cut off" in html_check.overflow_problems({**base, "items": [cut]})[0]
    assert "scrolls sideways" in html_check.overflow_problems({**base, "page_width": 1600, "items": []})[0]
    code = {**item, "what": "pre", "right": 1100, "scroll_width": 1300, "client_width": 800, "overflow_x": "auto"}
    assert "needs a sideways scroll" in html_check.overflow_problems({**base, "items": [code]})[0]
    assert html_check.overflow_problems(None)  # a page where the measurement did not run fails


def test_explorer_offers_every_seed_of_the_result():
    """The headline's explorer offers its own stage-1 seeds (all ten, as its table has them), not a fixed range."""
    r = notebook.fake_result("main", n_stage1=10, n_stage2=1)
    r.table["seed_stage1"] += 600
    _, _, labels = notebook.explorer_views(r)
    assert labels[0] == "mean over the 10 stage-1 seeds (95% CI)"
    assert labels[1:] == [f"stage-1 seed {s}" for s in range(600, 610)]
    assert notebook.explorer_seeds(r, 3) == [600, 601, 602]
