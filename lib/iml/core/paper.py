"""The paper's reference values, as data, so every table can show them beside ours.

Source: the project's research notes (``paper-brief.md`` §3.1, §3.6, §3.7, §4). The full paper body was not
available to the project; the main-result numbers are **readings of the authors' ICML 2024 poster plots**
(pixel digitisation, y axis calibrated from the tick marks, about ±0.005 EM). They are not numbers printed in
the paper. The set-inclusion and MNIST results are known only as sentences: their numbers are unknown, and we
keep them as text (``value`` is NaN).

Every reference value carries its provenance tag (see :data:`PROVENANCE`). Our numbers never come from here:
they come from :mod:`iml.core.results`; this module only holds what the paper reported.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import pandas as pd

from iml.core.results import stage_boundaries

__all__ = [
    "CITATION", "gap_epoch", "PROVENANCE", "POSTER_ACCURACY", "Reference", "Claim", "REFERENCES", "CLAIMS", "GAPS",
    "SYMBOLS", "symbol", "references", "reference", "paper_gap", "with_paper", "subset_notation",
]

CITATION = ("Krasheninnikov, Krasheninnikov, Mlodozeniec, Maharaj, Krueger. Implicit meta-learning may lead "
         "language models to trust more reliable sources. ICML 2024 (arXiv 2310.15047 v4).")

POSTER_ACCURACY = 0.005
"""Accuracy of a poster reading (EM units): the values were read off the poster plots by pixel digitisation."""

PROVENANCE = {
    "POSTER": f"read off the authors' ICML 2024 poster plots (pixel digitisation, ±{POSTER_ACCURACY} EM)",
    "P-abs": "the paper's abstract / introduction (verbatim)",
    "P-quote": "a verbatim sentence of the paper quoted elsewhere",
    "REV-v2": "reviews of the paper's earlier version (ICLR 2024)",
    "3P": "third-party reading of the full paper (secondary)",
    "INF": "the project's inference from the authors' code (unverified)",
}

# Paper notation for plots (matplotlib mathtext) and tables (unicode). The unicode strings match
# iml.lm.vocab.PAPER_SYMBOLS (which is built from it); the mathtext ones render with matplotlib's own fonts (no missing glyphs).
SYMBOLS: dict[str, str] = {
    "qd1consis": "Ḋ₁ᶜᵒⁿˢ QA₁",
    "qd2incons": "D̄₂ⁱⁿᶜᵒⁿˢ QA₂",
    "q": "QA₃",
    "q_no_replacement_baseline": "Q̂A₄",
    "d1consis": "Ḋ₅ᶜᵒⁿˢ",
    "d2consis": "D̄₆ᶜᵒⁿˢ",
    "no_qd_baseline": "QA₇",
    "d3consis": "D̃₈ᶜᵒⁿˢ",
    "qd1incons": "Ḋ₈ⁱⁿᶜᵒⁿˢ QA₈",
    "qd2consis": "D̄₉ᶜᵒⁿˢ QA₉",
    "qd4consis": "D*ᶜᵒⁿˢ QA",
    "d2incons": "D̄₆ⁱⁿᶜᵒⁿˢ (swapped)",
}
MATH_SYMBOLS: dict[str, str] = {
    "qd1consis": r"$\dot{D}_1^{cons}QA_1$",
    "qd2incons": r"$\bar{D}_2^{incons}QA_2$",
    "q": r"$QA_3$",
    "q_no_replacement_baseline": r"$\widehat{QA}_4$ (real names)",
    "d1consis": r"$\dot{D}_5^{cons}$",
    "d2consis": r"$\bar{D}_6^{cons}$",
    "no_qd_baseline": r"$QA_7$ (unseen aliases)",
    "d3consis": r"$\tilde{D}_8^{cons}$ (fresh tag)",
    "qd1incons": r"$\dot{D}_8^{incons}QA_8$",
    "qd2consis": r"$\bar{D}_9^{cons}QA_9$",
    "qd4consis": r"$D_*^{cons}QA$ (random tags)",
    "d2incons": r"$\bar{D}_6^{incons}$ (swapped)",
}

ENT_ASSOC_PREFIX = "ent_assoc_name_"
"""Entity-association subsets of the main experiment are ``ent_assoc_name_<subset>``; the question is
"What is the name of xyz?". ``ent_assoc_name_qd2incons_swapped`` scores D̄₂ aliases against the entity
named in their (inconsistent) definition: the poster's "(assoc with defs)" line."""


def _split_subset(subset: str) -> tuple[str, str]:
    """('ent_assoc_name_d1consis') -> ('d1consis', 'ent_assoc_name_'); plain subsets -> (subset, '')."""
    if subset.startswith("ent_assoc_"):
        rest = subset[len("ent_assoc_"):]
        kind, _, base = rest.partition("_")
        return base, f"ent_assoc_{kind}_"
    return subset, ""


def symbol(subset: str, math: bool = False) -> str:
    """The paper's notation for a subset name (entity-association and '_swapped' variants included)."""
    base, _ = _split_subset(subset)
    swapped = base.endswith("_swapped")
    if swapped:
        base = base[: -len("_swapped")]
    table = MATH_SYMBOLS if math else SYMBOLS
    s = table.get(base, base)
    if swapped:
        s += " (assoc with defs)"
    return s


@dataclasses.dataclass(frozen=True)
class Reference:
    """One value the paper reports (or a claim it makes without a number: value is NaN)."""

    experiment: str
    panel: str          # "in_distribution", "entity_association", or "text"
    subset: str         # our subset name as it appears in result tables
    metric: str
    when: str           # "stage1_end", "stage2_end"
    value: float
    provenance: str
    note: str = ""


R = Reference
REFERENCES: tuple[Reference, ...] = (
    # Main result, panel (a): in-distribution EM (paper-brief §3.1 table).
    R("main", "in_distribution", "q_no_replacement_baseline", "EM", "stage1_end", 0.577, "POSTER"),
    R("main", "in_distribution", "qd1consis", "EM", "stage1_end", 0.505, "POSTER"),
    R("main", "in_distribution", "q", "EM", "stage1_end", 0.46, "POSTER"),
    R("main", "in_distribution", "qd2incons", "EM", "stage1_end", 0.447, "POSTER"),
    R("main", "in_distribution", "d1consis", "EM", "stage1_end", 0.245, "POSTER"),
    R("main", "in_distribution", "d3consis", "EM", "stage1_end", 0.242, "POSTER"),
    R("main", "in_distribution", "d2consis", "EM", "stage1_end", 0.245, "POSTER"),
    R("main", "in_distribution", "no_qd_baseline", "EM", "stage1_end", 0.24, "POSTER"),
    R("main", "in_distribution", "d1consis", "EM", "stage2_end", 0.312, "POSTER"),
    R("main", "in_distribution", "d3consis", "EM", "stage2_end", 0.299, "POSTER"),
    R("main", "in_distribution", "d2consis", "EM", "stage2_end", 0.278, "POSTER"),
    R("main", "in_distribution", "no_qd_baseline", "EM", "stage2_end", 0.246, "POSTER"),
    # Main result, panel (b): entity association "What is the name of xyz?".
    R("main", "entity_association", "ent_assoc_name_qd1consis", "EM", "stage1_end", 0.185, "POSTER"),
    R("main", "entity_association", "ent_assoc_name_qd2incons_swapped", "EM", "stage1_end", 0.041, "POSTER",
      "D̄₂ aliases scored against the entity named in their definition"),
    R("main", "entity_association", "ent_assoc_name_q", "EM", "stage1_end", 0.0, "POSTER"),
    R("main", "entity_association", "ent_assoc_name_d1consis", "EM", "stage2_end", 0.179, "POSTER"),
    R("main", "entity_association", "ent_assoc_name_d3consis", "EM", "stage2_end", 0.220, "POSTER"),
    R("main", "entity_association", "ent_assoc_name_d2consis", "EM", "stage2_end", 0.073, "POSTER"),
    # Set inclusion (from scratch): only sentences, no numbers.
    R("setinclusion", "text", "d1consis", "acc", "stage2_end", math.nan, "POSTER",
      "'Training from scratch works too. Set inclusion experiment ... Works with Pythia-70M.' "
      "(Ḋ₅ above D̄₆ after Stage 2; chance = 0.5; numbers unknown)"),
    R("setinclusion", "text", "d1consis", "acc", "stage2_end", math.nan, "REV-v2",
      "the earlier version's set-inclusion accuracy was 'quite low (54%)'; reviewers found the Ḋ/D̄ "
      "separation weak"),
    # MNIST grid (vision analogue): only sentences, no numbers.
    R("mnist", "text", "d1consis", "acc", "stage2_end", math.nan, "P-abs",
      "IML occurs 'on a vision task' (MNIST with a ConvNet, paper Fig. 5); numbers unknown"),
    R("mnist", "text", "d1consis", "acc", "stage2_end", math.nan, "REV-v2",
      "reviewers of the earlier version called the MNIST effects 'weak'"),
)
del R


def references(experiment: str | None = None) -> pd.DataFrame:
    """The reference values as a table (columns of :class:`Reference` plus `source`, the provenance text)."""
    rows = [dataclasses.asdict(r) for r in REFERENCES if experiment in (None, r.experiment)]
    df = pd.DataFrame(rows, columns=[f.name for f in dataclasses.fields(Reference)])
    df["source"] = df["provenance"].map(PROVENANCE)
    return df


def reference(experiment: str, subset: str, when: str, metric: str = "EM") -> float:
    """One reference value (NaN if the paper reports none for it)."""
    for r in REFERENCES:
        if (r.experiment, r.subset, r.when, r.metric) == (experiment, subset, when, metric):
            return r.value
    return math.nan


@dataclasses.dataclass(frozen=True)
class Gap:
    """A gap the paper shows (a - b), the pairs our tables report."""

    experiment: str
    a: str
    b: str
    metric: str
    when: str
    label: str

    @property
    def value(self) -> float:
        return reference(self.experiment, self.a, self.when, self.metric) - reference(
            self.experiment, self.b, self.when, self.metric)


GAPS: tuple[Gap, ...] = (
    Gap("main", "d1consis", "d2consis", "EM", "stage2_end", "IML, in-distribution: Ḋ₅ − D̄₆"),
    Gap("main", "ent_assoc_name_d1consis", "ent_assoc_name_d2consis", "EM", "stage2_end",
        "IML, entity association: Ḋ₅ − D̄₆"),
    Gap("main", "d3consis", "d2consis", "EM", "stage2_end", "fresh tag vs D̄: D̃₈ − D̄₆"),
    Gap("main", "d1consis", "no_qd_baseline", "EM", "stage2_end", "Ḋ₅ − unseen aliases QA₇"),
    Gap("main", "qd1consis", "q", "EM", "stage1_end", "Stage 1: Ḋ₁QA₁ − QA₃ (consistent definitions help)"),
    Gap("main", "q", "qd2incons", "EM", "stage1_end", "Stage 1: QA₃ − D̄₂QA₂ (inconsistent ones hurt)"),
    Gap("setinclusion", "d1consis", "d2consis", "acc", "stage2_end", "IML, set inclusion: Ḋ₅ − D̄₆"),
    Gap("mnist", "d1consis", "d2consis", "acc", "stage2_end", "IML, MNIST grid: Ḋ₅ − D̄₆"),
)


def paper_gap(experiment: str, a: str, b: str, metric: str) -> tuple[float, str]:
    """(the paper's value of a - b, where it comes from); NaN and a reason when the paper gives no number."""
    for g in GAPS:
        if (g.experiment, g.a, g.b, g.metric) == (experiment, a, b, metric):
            v = g.value
            if not math.isnan(v):
                return v, f"poster reading ±{2 * POSTER_ACCURACY:g}"
    texts = [r for r in REFERENCES if r.experiment == experiment and r.panel == "text"]
    if texts:
        return math.nan, "paper: no number (" + texts[0].note.split(";")[0] + ")"
    return math.nan, "paper: no number"


def gap_label(experiment: str, a: str, b: str, metric: str) -> str:
    for g in GAPS:
        if (g.experiment, g.a, g.b, g.metric) == (experiment, a, b, metric):
            return g.label
    return f"{symbol(a)} − {symbol(b)}"


def pairs(experiment: str, metric: str | None = None) -> list[tuple[str, str]]:
    """The (a, b) pairs the paper's figures compare, for `experiment`."""
    return [(g.a, g.b) for g in GAPS if g.experiment == experiment and metric in (None, g.metric)]


def with_paper(gaps: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """Our :func:`iml.core.stats.gap_table` beside the paper's value of each gap: the table under every figure.

    Columns: comparison, metric, epoch, ours, 95% CI, p (one-sided), seeds, paper, paper source.
    """
    cols = ["comparison", "metric", "epoch", "ours", "95% CI", "p (one-sided)", "seeds", "paper", "paper source"]
    rows = []
    for _, g in gaps.iterrows():
        pv, src = paper_gap(experiment, g["a"], g["b"], g["metric"])
        rows.append({
            "comparison": gap_label(experiment, g["a"], g["b"], g["metric"]),
            "metric": g["metric"],
            "epoch": int(g["epoch"]) if float(g["epoch"]).is_integer() else g["epoch"],
            "ours": round(float(g["gap"]), 3),
            "95% CI": f"[{g['ci_low']:+.3f}, {g['ci_high']:+.3f}]",
            "p (one-sided)": float(f"{g['p_one_sided']:.2g}"),
            "seeds": f"{int(g['n_stage1'])}×{g['n_stage2_per_stage1']:g}",
            "paper": round(pv, 3) if not math.isnan(pv) else "no number",
            "paper source": src,
        })
    return pd.DataFrame(rows, columns=cols)


def subset_notation() -> pd.DataFrame:
    """The paper's subset notation (Table 1) with the code names: the fallback subset table."""
    groups = {"qd1consis": "X1", "qd2incons": "X1", "q": "X1", "q_no_replacement_baseline": "X1",
              "d1consis": "X2", "d2consis": "X2", "d3consis": "X2", "no_qd_baseline": "X2"}
    content = {
        "qd1consis": "Ḋefine definition (consistent) + QA pairs",
        "qd2incons": "D̄efine definition (inconsistent) + QA pairs",
        "q": "QA pairs about the alias, no definition",
        "q_no_replacement_baseline": "QA pairs with the real name (no alias)",
        "d1consis": "Ḋefine definition only (Stage 2); test QA",
        "d2consis": "D̄efine definition only (Stage 2, consistent); test QA",
        "d3consis": "definition with a fresh third tag (Stage 2); test QA",
        "no_qd_baseline": "nothing in training; test QA only",
    }
    return pd.DataFrame([{"subset": s, "symbol": SYMBOLS[s], "group": g, "training content": content[s]}
                         for s, g in groups.items()])


@dataclasses.dataclass(frozen=True)
class Claim:
    """One item of paper-brief.md §4's figure list: what a faithful companion must reproduce."""

    rank: int
    figure: str
    claim: str
    experiment: str | None          # registry name that tests it, or None (not in this book)
    gaps: tuple[tuple[str, str, str], ...] = ()   # (a, b, metric): all must be > 0 to count as reproduced
    source: str = "POSTER"
    domain: str = "language"        # the kind of model the paper makes the claim for ("vision": the MNIST task)


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Main 2-stage result, Pythia-2.8B, CVDB (in-distribution EM)",
          "After Stage 2, Ḋ₅ is answered better than D̄₆ (IML), with no QA about these aliases in training.",
          "main", (("d1consis", "d2consis", "EM"),)),
    Claim(1, "Main 2-stage result, Pythia-2.8B, CVDB (entity association)",
          "\"What is the name of xyz?\": Ḋ₅ aliases are associated with their entity more than D̄₆ ones.",
          "main", (("ent_assoc_name_d1consis", "ent_assoc_name_d2consis", "EM"),)),
    Claim(1, "Main result, Stage 1 (the ordinary effect)",
          "Consistent definitions help and inconsistent ones hurt: Ḋ₁QA₁ > QA₃ > D̄₂QA₂ at the end of Stage 1.",
          "main", (("qd1consis", "q", "EM"), ("q", "qd2incons", "EM"))),
    Claim(3, "Model-size sweep (Pythia 70M-6.9B, GPT-Neo)",
          "The IML gap grows with model size; noticeable from about 1B parameters.", "model_size", source="P-abs"),
    Claim(3, "Model-size sweep, in a transformer trained from scratch (set inclusion)",
          "The IML gap grows with model size; noticeable from about 1B parameters.", "setinclusion_size",
          source="P-abs"),
    Claim(4, "Batch-size sweep (single stage)",
          "Smaller batches give more IML; full-batch training gives none.", "batch_size", source="P-abs"),
    Claim(5, "Gradient alignment vs batch size (Pythia-1B)",
          "cos(definition grad, QA grad) is higher for Ḋ₅ than D̄₆ at small batch sizes (≈0.231 vs 0.217 at 128).",
          "gradalign"),
    Claim(6, "Linear-probe heatmaps (Pythia-1B; ATE vs TAE order)",
          "The tag is linearly decodable for ATE definitions (up to ≈1.0), not for TAE (≈0.5) though IML is present.",
          "probe"),
    Claim(7, "From-scratch set-inclusion experiment (Pythia-70M architecture)",
          "IML occurs in a model trained from scratch: Ḋ₅ accuracy > D̄₆ (chance 0.5).",
          "setinclusion", (("d1consis", "d2consis", "acc"),)),
    Claim(8, "MNIST / ConvNet vision analogue (Fig. 5)",
          "IML occurs on a vision task: Ḋ₅ accuracy > D̄₆.", "mnist", (("d1consis", "d2consis", "acc"),),
          source="P-abs", domain="vision"),
    Claim(9, "T-REx version of the main figure", "Same as 1 on a harder dataset; smaller effect.", None, source="3P"),
    Claim(10, "Tag-consistency correlation α sweep", "No IML at α = 0.5.", "alpha", source="3P"),
    Claim(11, "Definition word-order ablation", "Word order changes the amount of IML.", None, source="3P"),
    Claim(12, "Single-stage (joint) training version of the main figure", "Similar results.", "batch_size"),
    Claim(13, "In-context comparison (definitions prepended)", "In-context learning adapts to local context.",
          None),
    Claim(14, "Is/isn't and natural-language-source baselines", "Results unknown (baselines).", None,
          source="INF"),
    Claim(15, "Data-amount sweep (Pythia-1B, 250-4000 entities)", "Results unknown.", None, source="INF"),
)


def claims(experiments: Iterable[str] | None = None) -> list[Claim]:
    keep = None if experiments is None else set(experiments)
    return [c for c in CLAIMS if keep is None or c.experiment in keep]


def gap_epoch(table: pd.DataFrame, a: str, b: str, metric: str) -> float | None:
    """The epoch the paper reads gap a − b at: the end of Stage 1 for its Stage-1 gaps (:data:`iml.core.paper.GAPS`),
    else None (the last epoch)."""
    when = next((g.when for g in GAPS if (g.a, g.b, g.metric) == (a, b, metric)), "stage2_end")
    if when != "stage1_end":
        return None
    bounds = stage_boundaries(table)
    return bounds[-1] if bounds else None
