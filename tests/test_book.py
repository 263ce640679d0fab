"""iml.report.notebook, iml.report.claims, iml.report.html_check and iml.core.paper on fake results: claims page,
comparison tables, explorer, headline lookup, offline HTML check."""
import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from iml.report import claims, html_check, notebook, plots
from iml.core import paper
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
