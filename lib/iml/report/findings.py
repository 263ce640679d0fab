"""The book's findings, generated from the results when it is built: one row per claim and comparison.

:func:`forest_rows` turns the claims page's verdicts (:func:`iml.report.claims.claims_table`) and the comparisons
they rest on (the studies' ``power_rows``: mean over stage-1 seeds and 95% t-interval) into one table, with the
paper's value beside ours where it has one. From it come the intro's findings table
(:func:`findings_markdown`, ``book/executed/findings_table.md``), the forest plot
(:func:`iml.report.plots.forest`, ``book/executed/forest.png``) and the claims page's one-line results.
Nothing here is typed in by hand: a new result changes every one of them at the next build.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from iml import registry
from iml.core import files, paper, results as core_results
from iml.report import plots
from iml.report.fmt import fmt_interval, fmt_signed

__all__ = ["PAGES", "SHORT_TITLES", "fmt_signed", "fmt_interval", "evidence_results",
           "scale_short", "forest_rows", "primary_rows", "one_line", "badge", "page_link", "findings_markdown",
           "write_forest", "REPOSITORY_ENV", "BIBTEX", "repository_url", "about_markdown"]

PAGES = {"main": "main_result", "setinclusion": "set_inclusion", "mnist": "mnist_grid", "probe": "probes",
         "batch_size": "batch_size", "alpha": "alpha", "gradalign": "gradient_alignment", "model_size": "model_size",
         "setinclusion_size": "model_size"}
"""Study name -> the executed notebook page (``book/executed/<page>``) that shows it."""

SHORT_TITLES = {
    "Main 2-stage result, Pythia-2.8B, CVDB (in-distribution EM)": "Main result: IML, in-distribution",
    "Main 2-stage result, Pythia-2.8B, CVDB (entity association)": "Main result: IML, entity association",
    "Main result, Stage 1 (the ordinary effect)": "Main result: Stage 1",
    "Model-size sweep (Pythia 70M-6.9B, GPT-Neo)": "Model size (MNIST ConvNet)",
    "Model-size sweep, in a transformer trained from scratch (set inclusion)": "Model size (set inclusion)",
    "Batch-size sweep (single stage)": "Batch size",
    "Gradient alignment vs batch size (Pythia-1B)": "Gradient alignment",
    "Linear-probe heatmaps (Pythia-1B; ATE vs TAE order)": "Linear probes for the tag",
    "From-scratch set-inclusion experiment (Pythia-70M architecture)": "Set inclusion (from scratch)",
    "MNIST / ConvNet vision analogue (Fig. 5)": "MNIST grid (vision)",
    "T-REx version of the main figure": "T-REx version",
    "Tag-consistency correlation α sweep": "Tag reliability α",
    "Definition word-order ablation": "Definition word order",
    "Single-stage (joint) training version of the main figure": "Single-stage training",
    "In-context comparison (definitions prepended)": "In-context comparison",
    "Is/isn't and natural-language-source baselines": "Is/isn't baselines",
    "Data-amount sweep (Pythia-1B, 250-4000 entities)": "Data amount",
}
"""Short names of the claims (paper.CLAIMS figures) for the forest plot and the tables; a name, never a number."""

DARK_STATUSES = {"reproduced", "not reproduced", "null at our scale", "uninformative (floor/ceiling)"}
"""Statuses whose badge (colour :data:`iml.report.plots.STATUS_COLORS`) carries white text."""

def _title(claim: paper.Claim) -> str:
    return SHORT_TITLES.get(claim.figure, claim.figure)


def evidence_results(evidence: Any) -> list:
    """Every :class:`iml.core.results.Result` inside a study's evidence (a result, or lists/dicts/tuples of them)."""
    if isinstance(evidence, core_results.Result):
        return [evidence]
    if isinstance(evidence, Mapping):
        return [r for v in evidence.values() for r in evidence_results(v)]
    if isinstance(evidence, (list, tuple)):
        return [r for v in evidence for r in evidence_results(v)]
    return []


def _hardware(result) -> str:
    """The machines in a few words: the GPU, or the CPU model and its kernel level, for each pooled part."""
    def short(env):
        if env.get("gpu"):
            return str(env["gpu"]).replace("NVIDIA ", "")
        if not env:
            return "hardware not recorded"
        level = f", {env['cpu_capability']}" if env.get("cpu_capability") else ""
        return f"CPU {env.get('cpu_model') or 'model not recorded'}{level}"
    return " + ".join(dict.fromkeys(short(e) for e in core_results.environments(result.meta or {})))


_ARCH = {"mnist": "ConvNet", "gradalign": "ConvNet", "probe": "ConvNet", "setinclusion": "transformer"}


def _sweep_label(label: str, evidence: Any) -> str:
    if isinstance(evidence, Mapping) and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                                             for v in evidence.values()):
        return " + ".join(dict.fromkeys(v[0] for v in evidence.values())) + " sweeps"  # e.g. batch size's designs
    return str(label)


def scale_short(found: tuple[str, Any]) -> str:
    """A study's evidence in a few words: model, preset or sweep, seeds, hardware (all read from the results)."""
    label, evidence = found
    rs = evidence_results(evidence)
    if not rs:
        return str(label)
    models = list(dict.fromkeys(plots._model_text(r.config) for r in rs))
    arch = _ARCH.get(rs[0].experiment, "")
    model = (f"{arch} {models[0]}" if len(models) == 1 else f"{arch} at {len(models)} sizes").strip()
    n1 = sorted({plots._seed_counts(r.table)[0] for r in rs})
    n2 = sorted({plots._seed_counts(r.table)[1] for r in rs})
    seeds = f"{n1[0]}" if len(n1) == 1 else f"{n1[0]}–{n1[-1]}"
    if n2 and n2[-1] > 1:
        seeds += f"×{n2[-1]:g}"
    points = f", {len(rs)} points" if len(rs) > 1 else ""
    hw = ", ".join(dict.fromkeys(_hardware(r) for r in rs))
    return f"{model}; {_sweep_label(label, evidence)}{points}; {seeds} seeds{' a point' if len(rs) > 1 else ''}; {hw}"


_ROW = re.compile(r"^(?P<pre>[^(:]*?)(?: \((?P<par>[^)]*)\))?: (?P<rest>.*)$")


def _comparison_label(text: str) -> str:
    """A power row's comparison without its study prefix: ``main (gpu): IML, ...`` -> ``IML, ...``;
    ``batch size, single-stage (cpu-joint sweep): X`` -> ``single-stage: X``."""
    m = _ROW.match(text)
    if not m:
        return text
    pre, rest = m.group("pre"), m.group("rest")
    rest = re.sub(r" \(claim \d+\)$", "", rest)
    return f"{pre.split(', ', 1)[1]}: {rest}" if ", " in pre else rest


def _unit(study_name: str, label: str, claim: paper.Claim) -> str:
    if "slope" in label:
        return "acc/decade"
    if claim.gaps:
        return claim.gaps[0][2]
    return {"gradalign": "cos"}.get(study_name, "acc")


def _paper_value(study_name: str, claim: paper.Claim, label: str) -> tuple[float, str]:
    """(the paper's value of this comparison, in words); NaN where the paper gives no number for it."""
    for a, b, m in claim.gaps:
        if paper.gap_label(claim.experiment, a, b, m) in label:
            v, _ = paper.paper_gap(claim.experiment, a, b, m)
            if not math.isnan(v):
                return v, fmt_signed(v)
    if study_name == "gradalign":
        from iml.mnist.gradient_alignment import PAPER_COSINES

        bs = min(PAPER_COSINES)
        v = PAPER_COSINES[bs]["d1consis"] - PAPER_COSINES[bs]["d2consis"]
        return v, f"{fmt_signed(v)} (Pythia-1B cosines, batch {bs})"
    return math.nan, "no number"


def _claim_of(study_name: str, label: str) -> int | None:
    """The index in paper.CLAIMS of the claim a power row of `study_name` belongs to."""
    idx = [i for i, c in enumerate(paper.CLAIMS) if c.experiment == study_name]
    if len(idx) <= 1:
        return idx[0] if idx else None
    m = re.search(r"\(claim (\d+)\)$", label)
    if m:
        tagged = [i for i in idx if paper.CLAIMS[i].rank == int(m.group(1))]
        if tagged:
            return tagged[0]
    for i in idx:
        c = paper.CLAIMS[i]
        if c.gaps and any(paper.gap_label(c.experiment, a, b, mt) in label for a, b, mt in c.gaps):
            return i
    untagged = [i for i in idx if not paper.CLAIMS[i].gaps]  # e.g. batch size: claim 4, not the tagged claim 12
    return untagged[0] if untagged else idx[0]


COLUMNS = ["claim_index", "rank", "title", "claim", "study", "status", "comparison", "label", "unit", "gap",
           "ci_low", "ci_high", "seeds", "paper", "paper_text", "floor", "scale", "page", "note"]


def _forest_label(title: str, rank: int, comparison: str, several: bool) -> str:
    """A forest-plot row's label: the claim, and on a second line which of its comparisons (when it has several)."""
    comp = re.sub(r" \(.*\)$", "", re.sub(r", (acc|EM)$|^Stage 1: |^IML, ", "", comparison))
    comp = comp.replace("slope of the IML gap per decade of parameters", "slope per decade").replace("IML gap", "gap")
    return f"{title} ({rank})" + (f"\n{comp}" if several and comp else "")


def forest_rows(available: Mapping[str, tuple[str, Any]], table: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison a verdict rests on, and one per claim with none (e.g. not attempted), in the
    order of paper.CLAIMS. `table`: :func:`iml.report.claims.claims_table` of `available` (its statuses).
    Columns: :data:`COLUMNS` (gap, ci_low, ci_high NaN where there is no comparison; paper NaN where the paper
    gives no number; status: the claim's status on the claims page)."""
    by_claim: dict[int, list[dict]] = {}
    for name, study in registry.STUDIES.items():
        if name not in available:
            continue
        for r in study.power_rows(available[name]):
            i = _claim_of(name, r["comparison"])
            if i is not None:
                by_claim.setdefault(i, []).append({**r, "study": name})
    out = []
    for i, c in enumerate(paper.CLAIMS):
        t = table.iloc[i]
        scale = scale_short(available[c.experiment]) if c.experiment in available else ""
        base = {"claim_index": i, "rank": c.rank, "title": _title(c), "claim": c.claim, "study": c.experiment,
                "status": t["status"], "scale": scale, "page": PAGES.get(c.experiment) if scale else None}
        rows = by_claim.get(i, [])
        if not rows:
            note = ("no experiment in the book" if c.experiment not in registry.STUDIES else
                    "no finished result" if c.experiment not in available else "no gap; see its page")
            out.append({**base, "comparison": "", "label": f"{base['title']} ({c.rank})", "unit": "", "gap": math.nan, "ci_low": math.nan,
                        "ci_high": math.nan, "seeds": 0, "paper": math.nan, "paper_text": t["paper"],
                        "floor": "", "note": note})
            continue
        for r in rows:
            pv, ptxt = _paper_value(r["study"], c, r["comparison"])
            floor = r["floor"] if isinstance(r.get("floor"), str) else ""
            comp = _comparison_label(r["comparison"])
            out.append({**base, "comparison": comp, "label": _forest_label(base["title"], c.rank, comp, len(rows) > 1),
                        "unit": _unit(r["study"], r["comparison"], c), "gap": float(r["mean"]),
                        "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "seeds": int(r["seeds"]),
                        "paper": pv, "paper_text": ptxt, "floor": floor,
                        "note": f"both sides at the metric's {floor}" if floor else ""})
    return pd.DataFrame(out, columns=COLUMNS)


def primary_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The first comparison of each claim (the one its page leads with)."""
    return rows.groupby("claim_index", sort=True).head(1)


def one_line(group: pd.DataFrame, limit: int = 2) -> str:
    """A claim's result in one line: its comparisons (up to `limit`, each named when there are several) with
    their intervals, and the unit once."""
    parts, units = [], []
    for r in group.itertuples():
        if math.isnan(r.gap):
            parts.append(r.note)
            continue
        txt = f"{fmt_signed(r.gap)} {fmt_interval(r.ci_low, r.ci_high)}" + (f" (at the {r.floor})" if r.floor else "")
        name = r.label.split("\n", 1)[1] if "\n" in r.label else ""
        parts.append(f"{name}: {txt}" if len(group) > 1 and name else txt)
        units.append(r.unit)
    more = len(parts) - limit
    unit = " " + units[0] if units and len(set(units)) == 1 else ""
    if units and len(set(units)) > 1:
        parts = [f"{p} {u}" for p, u in zip(parts, units)]
    return "; ".join(parts[:limit]) + unit + (f"; {more} more in the plot" if more > 0 else "")


def badge(status: str) -> str:
    """The status as a coloured badge (inline HTML; the same colours as the forest plot)."""
    fill, ink = plots.STATUS_COLORS.get(status, "#bdbdbd"), "#ffffff" if status in DARK_STATUSES else "#000000"
    return (f'<span class="iml-badge" style="background:{fill};color:{ink};padding:0 0.4em;border-radius:0.3em;'
            f'white-space:nowrap">{status}</span>')


def page_link(page: str | None, text: str = "page") -> str:
    """A MyST link to an executed notebook page, absolute from the book root (works from any page)."""
    return f"{{doc}}`{text} </book/executed/{page}>`" if page else "–"


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def findings_markdown(rows: pd.DataFrame, attempted_only: bool = True) -> str:
    """The intro's findings table: claim, paper's value, ours with interval, scale, status; one row per claim
    that has a result (the claims without one are listed in a sentence under it)."""
    lines = ["| claim | paper | ours (95% CI) | scale | status |", "|---|---|---|---|---|"]
    poster = False
    skipped = []
    for _, g in rows.groupby("claim_index", sort=True):
        r = g.iloc[0]
        if attempted_only and r["study"] not in registry.STUDIES:
            skipped.append(f"{r['title']} ({r['rank']})")
            continue
        pvals = [p for p in g["paper_text"] if p and p != "no number"]
        poster = poster or (r["study"] == "main" and bool(pvals))
        ptxt = "; ".join(dict.fromkeys(pvals)) if pvals else "no number"
        ours = one_line(g)
        if g["gap"].isna().all() and r["status"] == "not attempted" and r["scale"]:
            ours = "no comparison the verdict can rest on (see its page)"
        title = f"{r['title']} ({r['rank']})"
        lines.append("| " + " | ".join(_cell(x) for x in (
            f"{page_link(r['page'], title)}" if r["page"] else title, ptxt, ours, r["scale"] or "–",
            badge(r["status"]))) + " |")
    out = "\n".join(lines)
    if poster:
        out += (f"\n\nThe paper's values for the main result are readings of the authors' poster plots (±"
                f"{paper.POSTER_ACCURACY:g} EM each value read, so ±{2 * paper.POSTER_ACCURACY:g} for a difference of "
                f"two); the paper gives no number for the others.")
    if skipped:
        out += ("\n\nNot attempted (no experiment in this book): " + ", ".join(skipped) + ".")
    return out


def write_forest(rows: pd.DataFrame, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Draw :func:`iml.report.plots.forest` of `rows` and save it as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # the build runs headless; a notebook's backend is left alone
    import matplotlib.pyplot as plt

    fig = plots.forest(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


REPOSITORY_ENV = "IML_REPOSITORY_URL"
"""The repository the published book names (the Pages workflow sets it from the GitHub context)."""

BIBTEX = """@inproceedings{krasheninnikov2024implicit,
  title     = {Implicit meta-learning may lead language models to trust more reliable sources},
  author    = {Krasheninnikov, Dmitrii and Krasheninnikov, Egor and Mlodozeniec, Bruno and Maharaj, Tegan and
               Krueger, David},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning (ICML)},
  series    = {Proceedings of Machine Learning Research},
  volume    = {235},
  year      = {2024},
  note      = {arXiv:2310.15047}
}"""


def repository_url() -> str | None:
    """$IML_REPOSITORY_URL, else the git remote ``origin`` as an https URL, else None."""
    url = os.environ.get(REPOSITORY_ENV, "").strip()
    if not url:
        try:
            url = subprocess.run(["git", "-C", str(files.ROOT), "config", "--get", "remote.origin.url"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            url = ""
    m = re.match(r"^git@([^:]+):(.+?)(\.git)?$", url)
    if m:
        url = f"https://{m.group(1)}/{m.group(2)}"
    url = re.sub(r"\.git$", "", url)
    return url if url.startswith("https://") else None


def about_markdown(url: str | None = None) -> str:
    """The intro's source, citation and licence section (the repository from :func:`repository_url`)."""
    url = url or repository_url()
    where = (f"The code, the committed results and this book's sources: <{url}>." if url else
             "The code, the committed results and this book's sources are in the git repository this copy was built "
             f"from (no remote was configured; the published site sets `${REPOSITORY_ENV}`).")
    return "\n".join([
        where, "",
        "**Cite the paper** (this book re-runs it; it is not the paper):", "", "```bibtex", BIBTEX, "```", "",
        "**Cite this book:** see `CITATION.cff` at the root of the repository (GitHub shows it as *Cite this "
        "repository*).", "",
        "**Licence:** MIT, for the code and the book's text; the data tables in `data/` carry their own licences "
        "(listed there)."])
