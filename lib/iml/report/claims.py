"""The "paper vs this book" page (``book/executed/claims.md``): every claim of the paper with its status.

:func:`best_results` finds the largest-scale finished result of each experiment, :func:`claims_table` judges
each claim on it (:mod:`iml.core.verdicts`), :func:`claims_markdown` and :func:`seed_counts_markdown` (the
:mod:`iml.core.power` table) write the page, :func:`write_claims` saves it (``python -m iml.report.build claims``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from iml import registry
from iml.core import files, paper, power, stats, verdicts
from iml.report import findings, plots
from iml.report.fmt import unsigned_zeros
from iml.report.notebook import EXECUTED_DIR, RESULTS_ENV

__all__ = ["best_results", "claims_table", "claims_markdown", "power_table", "seed_counts_markdown", "write_claims"]


def best_results(root: str | os.PathLike | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """study name -> (label, evidence): the largest-scale finished evidence of every study of the registry.

    Looks under `root`, $IML_RESULTS_ROOT and results/. `extra` maps study name -> (label, evidence) to use
    instead (e.g. a result just computed elsewhere).
    """
    roots = []
    for r in (root, os.environ.get(RESULTS_ENV), files.RESULTS_DIR):
        if r is not None and Path(r) not in roots:
            roots.append(Path(r))
    extra = dict(extra or {})
    out = {name: found for name, study in registry.STUDIES.items()
           if name not in extra and (found := study.find(roots)) is not None}
    return {**out, **extra}


def _scale(found) -> str:
    preset, res = found
    return f"{plots.preset_label(res) or preset + ' preset'}, config {res.hash}"


def _paper_values(claim, study) -> str:
    if study is not None and study.paper_note:
        return study.paper_note  # e.g. cosines, not a gap of paper.GAPS
    vals = [(a, b, paper.paper_gap(claim.experiment, a, b, m)[0]) for a, b, m in claim.gaps]
    return "; ".join(f"{paper.symbol(a)} − {paper.symbol(b)} ≈ {v:+.3f}" for a, b, v in vals if not math.isnan(v))


def claims_table(available: Mapping[str, tuple[str, Any]]) -> pd.DataFrame:
    """One row per claim of paper-brief §4's figure list with its status, computed from `available`.

    `available`: study name -> (label, evidence), e.g. from :func:`best_results`; each claim is judged by its
    study (:data:`iml.registry.STUDIES`) under the rules of :mod:`iml.core.verdicts`; *not attempted* when no
    evidence exists (or the book has no study for it).
    """
    rows = []
    for c in paper.CLAIMS:
        study = registry.STUDIES.get(c.experiment)
        status, evidence, scale = "not attempted", "", ""
        if study is None:
            evidence = "no experiment for this in the book"
        elif c.experiment not in available:
            evidence = f"no finished `{c.experiment}` result"
        else:
            status, evidence, scale = study.judge_claim(c, available[c.experiment])
            scale = scale if scale is not None else _scale(available[c.experiment])
        analogue = study is not None and c.domain == "language" and study.domain == "vision"
        rows.append({"#": c.rank, "figure": c.figure, "claim": c.claim,
                     "paper": _paper_values(c, study) or "no number", "status": verdicts.for_domain(status, analogue),
                     "tested on": _tested_on(c, study), "this book": evidence, "scale": scale, "source": c.source})
    return pd.DataFrame(rows)


def _tested_on(claim, study) -> str:
    if study is None:
        return "–"
    return study.tested_on + (" analogue" if claim.domain == "language" and study.domain == "vision" else "")


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _rules() -> str:
    return (f"Only the comparisons the paper makes are tested (each claim names them; nothing found by looking at other "
            f"numbers counts). **too few seeds** = fewer than {verdicts.MIN_SEEDS} stage-1 seeds, or fewer than the "
            f"measured spread asks for (the seed counts below); **uninformative (floor/ceiling)** = both sides of a "
            f"comparison at the metric's floor or ceiling, where a zero gap is no evidence; otherwise the 95% interval "
            f"({stats.METHOD}) decides: **reproduced** = every comparison the claim names above 0; "
            f"**not reproduced** = one below 0, or including 0 at the paper's scale; **null at our scale** = "
            f"including 0 at a smaller scale. **(analogue)** = a claim the paper makes for language models, "
            f"tested here only on the MNIST grid task: counted apart from a reproduction in a language model. "
            f"**not attempted** = no result. Paper values are poster readings (±{paper.POSTER_ACCURACY:g} EM for each "
            f"value read, so ±{2 * paper.POSTER_ACCURACY:g} for a difference of two; see `iml.core.paper`). The "
            f"methodology schematic (Fig. 2) is the design, drawn on the Method page, not a claim.")


def _one_line(row, rows) -> str:
    if rows is not None:
        g = rows[rows["claim_index"] == row.name]
        if len(g):
            return findings.one_line(g)
    first = str(row["this book"]).split("; ")[0]
    return first if len(first) <= 140 else first[:137] + "..."


def claims_markdown(table: pd.DataFrame, rows: pd.DataFrame | None = None, image: str | None = None) -> str:
    """The claims page: the forest plot (`image`, when given), a compact table (status badge, one-line result
    from `rows` = :func:`iml.report.findings.forest_rows`, link to its page), then each claim's reasoning in a
    collapsible block."""
    counts = table["status"].value_counts()
    lines = [
        "# Paper vs this book",
        "",
        "*This page is generated by `python -m iml.report.build claims` from the results available when the book "
        "was built; nothing on it is typed in by hand. Rerun `make book` after new results land.*",
        "",
    ]
    if image:
        lines += [f"```{{figure}} {image}", ":name: forest-claims", ":alt: forest plot of every claim's gap, with the "
                  "paper's value", ":width: 100%", "", "Every claim and comparison: our gap (mean over stage-1 seeds, "
                  "95% t-interval), the paper's value where it gives one, coloured by status.", "```", ""]
    lines += [
        "Summary: " + ", ".join(f"{s}: {int(counts.get(s, 0))}" for s in verdicts.STATUSES) + ".",
        "",
        "| # | claim | status | result (95% CI) | page |",
        "|---|---|---|---|---|",
    ]
    for i, r in table.iterrows():
        c = paper.CLAIMS[i] if i < len(paper.CLAIMS) else None
        page = findings.PAGES.get(c.experiment) if c is not None and r["scale"] else None
        lines.append("| " + " | ".join(_md_cell(x) for x in (
            r["#"], r["figure"], findings.badge(r["status"]), _one_line(r, rows),
            findings.page_link(page, "page"))) + " |")
    lines += ["", "## Status rules", "", _rules(), "", "## Claim by claim", "",
              "Each block holds the claim, the paper's value, what this book tested it on, the evidence in full and "
              "its scale.", ""]
    for i, r in table.iterrows():
        lines += [f"````{{dropdown}} {r['#']} · {_md_cell(r['figure'])}: {r['status']}", "",
                  f"**Claim.** {r['claim']}", "",
                  f"**Paper.** {r['paper']} (source: {paper.PROVENANCE.get(r['source'], r['source'])}).", "",
                  f"**Tested on.** {r['tested on']}.", "",
                  f"**This book.** {unsigned_zeros(str(r['this book'])) or '–'}", ""]
        if r["scale"]:
            lines += [f"**Scale.** {r['scale']}.", ""]
        lines += ["````", ""]
    lines += ["Sources: " + "; ".join(f"**{k}**: {v}" for k, v in paper.PROVENANCE.items()) + ".", ""]
    return "\n".join(lines)


def seed_counts_markdown(available) -> str:
    """The claims page's section on seed counts: :mod:`iml.core.power` for every comparison a verdict rests on."""
    return "\n".join([
        "## Seed counts by power", "",
        f"For every comparison a verdict rests on: the between-seed SD measured in the result, and the stage-1 seeds "
        f"a 95% t-interval needs for a half-width of a third of the effect the verdict is about (`iml.core.power`: the "
        f"paper's value where it has one, else the effect measured here; a trend or the α = 0.5 null is set against "
        f"the IML gap it would have to erase). Fewer than {verdicts.MIN_SEEDS} seeds never give a verdict; a result "
        f"with fewer seeds than needed here is *too few seeds*. Minutes: the result's units' summed wall time per "
        f"seed times the seeds needed, on the result's own hardware (one CPU thread a unit, or its GPU).", "",
        power.markdown(power_table(available)), ""])


def power_table(available: Mapping[str, tuple[str, Any]]) -> pd.DataFrame:
    """The seed-count table (:mod:`iml.core.power`) of every comparison the claims page judges."""
    return pd.DataFrame([row for name, study in registry.STUDIES.items() if name in available
                         for row in study.power_rows(available[name])])


def write_claims(path: str | os.PathLike = EXECUTED_DIR / "claims.md", available=None) -> Path:
    """Write the claims page and, beside it, what the intro includes: the findings table (``findings_table.md``),
    the forest plot (``forest.png``) and the repository/citation line (``about.md``)."""
    available = best_results() if available is None else available
    table = claims_table(available)
    rows = findings.forest_rows(available, table)
    out = Path(path).parent
    findings.write_forest(rows, out / "forest.png")
    files.write_text(out / "findings_table.md", findings.findings_markdown(rows) + "\n")
    files.write_text(out / "about.md", findings.about_markdown() + "\n")
    return files.write_text(path, claims_markdown(table, rows, "forest.png") + "\n" + seed_counts_markdown(available))

