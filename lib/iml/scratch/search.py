"""The exploratory search for IML in the set-inclusion transformer, and its pre-registered confirmation.

Every configuration tried is a step of :data:`TRIED`, in the order tried, with the reason; each is an ordinary
``setinclusion`` result on the exploratory seeds (:data:`EXPLORATORY`), so :func:`summary` reads the whole search
(failures included) from the results. :data:`PREREGISTERED` fixes the chosen config, the hypothesis and a fresh seed
range before the confirmation runs (``iml sweep search --sweep confirm``). Design: book/design_notes.md.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from iml.core.config import ConfigError
from iml.core.stats import iml_gap
from iml.core.study import ExperimentStudy
from iml.core.sweep import finished_points, run_points
from iml.core.verdicts import MIN_SEEDS, judge_gap
from iml.scratch import set_inclusion as si

__all__ = ["EXPERIMENT", "EXPLORATORY", "Step", "TRIED", "PREREGISTERED", "SWEEPS", "configs", "run_sweep",
           "finished", "search_table", "confirmation_note", "summary", "table", "verdict", "POINTS", "point_label", "prepared", "SetInclusionStudy"]

EXPERIMENT = si.EXPERIMENT
BASE = "cpu"
"""Every step is the set-inclusion cpu preset with the step's overrides."""
EXPLORATORY = {"start_seed": 1000, "n_seeds": 10, "seeds_per_unit": 10}
"""Stage-1 seeds 1000-1009: used by the search only, never by a confirmation or a preset."""


@dataclasses.dataclass(frozen=True)
class Step:
    label: str
    overrides: Mapping[str, Any]
    why: str


TRIED: list[Step] = [
    Step("1 true + 1 false training question", {"n_train_true": 1, "n_train_false": 1},
         "with 6 true questions x is the one number common to them, so the QA alone identify x and a definition "
         "adds little; with one true question x is one of 4 numbers, and only a (reliable) definition says which"),
    Step("1 + 1 questions, 160 Stage-1 epochs", {"n_train_true": 1, "n_train_false": 1, "stage1_epochs": 160},
         "step 0 memorised its training QA (0.999) without generalising to held-out questions (qd1consis 0.528): "
         "held-out generalisation is a late, grokking-like transition, so train 4x longer (the baseline's cost)"),
    Step("2 true + 2 false training questions", {"n_train_true": 2, "n_train_false": 2},
         "between step 0 and the preset: x is still often ambiguous from two true questions (about 0.5 other "
         "candidates on average), and there are twice the QA to learn set membership from"),
    Step("the preset's questions, Stage-2 lr 2e-4", {"stage2_lr": 2e-4},
         "steps 0 and 2 generalised little to held-out questions (0.53, 0.55) and Stage 2 at the Stage-1 lr (2e-3) "
         "wrecked the QA skill (training QA 0.99 -> 0.76): keep the preset's Stage 1 (held-out 0.66 on seeds 0-19) "
         "and train Stage 2 10x more gently, so the new definitions land in circuits that still answer questions"),
    Step("4000 aliases, 2 + 2 questions", {"n_aliases": 4000, "n_train_true": 2, "n_train_false": 2},
         "steps 0-2 memorised their few training questions without learning set membership (held-out <= 0.55; "
         "4x longer training in step 1 did not help): 4x the aliases gives 4x the examples of the membership "
         "function while x stays ambiguous from two true questions"),
    Step("d_model 128, d_mlp 512 (4x the non-embedding parameters)", {"d_model": 128, "d_mlp": 512},
         "step 3 kept the QA skill through Stage 2 (training QA 0.94 -> 0.86) yet Ḋ₅ and D̄₆ stayed at chance "
         "(0.502 / 0.500): the new definitions are not used at all. The paper finds more IML in larger models"),
]
"""The search, in the order tried. Append, never edit or remove: the page shows every step."""

PREREGISTERED: dict[str, Any] | None = {
    "step": "d_model 128, d_mlp 512 (4x the non-embedding parameters)",
    "hypothesis": ("d1consis − d2consis > 0 (held-out accuracy) at the end of Stage 2, one-sided; reproduced when "
                   "its 95% t-interval over the 20 stage-1 seeds is above 0"),
    "seeds": {"start_seed": 5000, "n_seeds": 20},
}
"""Set (and committed) before the confirmation runs: {"step": label of the chosen step, "hypothesis": ..., "seeds":
{"start_seed", "n_seeds"}}; None while the search was going on. The choice rule, fixed before steps 4-5 finished:
the step with the largest exploratory IML gap (point estimate); it is confirmed on 20 fresh seeds even when no
step's interval is above 0, as a test of the most promising configuration the search found."""

SWEEPS = ("search", "confirm")
POINTS = "configurations"


def _overrides(step: Step, seeds: Mapping[str, Any]) -> dict:
    return {**step.overrides, **seeds}


def configs(sweep: str = "search", points=None, overrides: Mapping[str, Any] | None = None) -> list[si.Config]:
    """The search's configs on the exploratory seeds (``search``), or the pre-registered config on its fresh
    seeds (``confirm``); `overrides` apply to every config."""
    if sweep not in SWEEPS:
        raise ConfigError("sweep", f"must be one of {list(SWEEPS)}, got {sweep!r}")
    extra = dict(overrides or {})
    if sweep == "search":
        steps = TRIED if points is None else [TRIED[i] for i in points]
        return [si.make_config(BASE, {**_overrides(s, EXPLORATORY), **extra}) for s in steps]
    if PREREGISTERED is None:
        raise ConfigError("sweep", "no pre-registered confirmation yet (iml.scratch.search.PREREGISTERED is None)")
    step = next(s for s in TRIED if s.label == PREREGISTERED["step"])
    seeds = {**PREREGISTERED["seeds"], "seeds_per_unit": 10}
    if set(range(seeds["start_seed"], seeds["start_seed"] + seeds["n_seeds"])) & set(
            range(EXPLORATORY["start_seed"], EXPLORATORY["start_seed"] + EXPLORATORY["n_seeds"])):
        raise ConfigError("seeds", "the confirmation's seeds overlap the exploratory ones")
    return [si.make_config(BASE, {**_overrides(step, seeds), **extra})]


def cost(cfg: si.Config) -> float:
    """Stage-1 documents times epochs per seed, the order in which parallel workers take the points."""
    n_x1 = cfg.n_aliases * (cfg.frac_qd1consis + cfg.frac_qd2incons)
    return n_x1 * (cfg.n_train_true + cfg.n_train_false + 1) * cfg.stage1_epochs * cfg.n_seeds


def run_sweep(sweep: str = "search", points=None, overrides=None, *, root=None, force: bool = False,
              progress: bool = True, workers: int = 1) -> list:
    return run_points(si.run, EXPERIMENT, configs(sweep, points, overrides), root=root, force=force,
                      progress=progress, workers=workers, cost=cost)


def finished(sweep: str = "search", root=None, points=None) -> list | None:
    return finished_points(EXPERIMENT, configs(sweep, points), root)


def finished_steps(root=None) -> list[tuple[Step, Any]]:
    """(step, result or None) for every step of the search, in order: the search table shows unfinished ones too."""
    from iml.core.results import StaleResultError, load

    out = []
    for step, cfg in zip(TRIED, configs("search")):
        try:
            out.append((step, load(EXPERIMENT, cfg, root=root)))
        except (FileNotFoundError, StaleResultError):
            out.append((step, None))
    return out


def _level(t: pd.DataFrame, subset: str, epoch) -> float:
    v = t[(t.metric == "acc") & (t.subset == subset) & (t.epoch == epoch)]["value"]
    return float(v.mean()) if len(v) else math.nan


def row(result) -> dict:
    """The numbers of one step: Stage-1 effect qd1consis − qd2incons at the end of Stage 1, the IML gap
    d1consis − d2consis at the end of Stage 2 (t-intervals over stage-1 seeds), and the levels beside chance 0.5."""
    cfg, t = result.config, result.table
    e1, e2 = cfg["stage1_epochs"], cfg["stage1_epochs"] + cfg["stage2_epochs"]
    s1 = iml_gap(t, "qd1consis", "qd2incons", metric="acc", epoch=e1)
    g = iml_gap(t, "d1consis", "d2consis", metric="acc", epoch=e2)
    return {"stage1_gap": s1.gap, "stage1_ci": (s1.ci_low, s1.ci_high), "gap": g.gap, "ci": (g.ci_low, g.ci_high),
            "p": g.p_one_sided, "n_seeds": g.n_stage1, "status": judge_gap(g)[0],
            "qd1consis": _level(t, "qd1consis", e1), "qd2incons": _level(t, "qd2incons", e1),
            "d1consis": _level(t, "d1consis", e2), "d2consis": _level(t, "d2consis", e2),
            "wall_min": (sum(v for v in (result.meta.get("unit_wall_time_s") or {}).values() if v) / 60) or None,
            "config": result.hash}


def summary(results: Sequence) -> pd.DataFrame:
    return pd.DataFrame([row(r) for r in results])


def table(s: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as the page shows it."""
    ci = lambda c: [f"[{a:+.3f}, {b:+.3f}]" for a, b in s[c]]  # noqa: E731
    return pd.DataFrame({
        "Stage-1 effect Ḋ₁QA₁ − D̄₂QA₂": s["stage1_gap"].round(3), "its 95% CI": ci("stage1_ci"),
        "end of Stage 2: Ḋ₅ / D̄₆ acc (chance 0.5)": [f"{a:.3f} / {b:.3f}" for a, b in zip(s["d1consis"], s["d2consis"])],
        "IML gap Ḋ₅ − D̄₆": s["gap"].round(3), "IML 95% CI": ci("ci"), "seeds": s["n_seeds"],
        "core-min": s["wall_min"].round(1), "config": s["config"]})


def search_table(root=None) -> pd.DataFrame:
    """Every step tried, in order, with its numbers (or "not run yet")."""
    rows = []
    for i, (step, res) in enumerate(finished_steps(root)):
        base = {"#": i, "configuration": step.label,
                "overrides": ", ".join(f"{k}={v}" for k, v in step.overrides.items()) or "(the cpu preset)",
                "why": step.why}
        if res is None:
            rows.append({**base, "IML gap [95% CI]": "not run yet"})
            continue
        r = row(res)
        rows.append({**base, "Stage-1 effect [95% CI]": f"{r['stage1_gap']:+.3f} [{r['stage1_ci'][0]:+.3f}, "
                                                         f"{r['stage1_ci'][1]:+.3f}]",
                     "Ḋ₅ / D̄₆ after Stage 2": f"{r['d1consis']:.3f} / {r['d2consis']:.3f}",
                     "IML gap [95% CI]": f"{r['gap']:+.3f} [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]",
                     "seeds": r["n_seeds"], "core-min": None if r["wall_min"] is None else round(r["wall_min"], 1),
                     "config": r["config"]})
    t = pd.DataFrame(rows)
    for c in ("seeds", "core-min"):
        if c in t:
            t[c] = ["" if pd.isna(v) else (int(v) if c == "seeds" else v) for v in t[c]]
    return t.fillna("")


def verdict(results: Sequence) -> str:
    """A search finds, it does not confirm: only the pre-registered confirmation gives a verdict."""
    s = summary(results)
    if len(results) == 1 and PREREGISTERED is not None and results[0].config["start_seed"] == \
            PREREGISTERED["seeds"]["start_seed"]:
        r = s.iloc[0]
        return (f"**Pre-registered confirmation** ({r['n_seeds']} fresh stage-1 seeds, hypothesis: "
                f"{PREREGISTERED['hypothesis']}): IML gap {r['gap']:+.3f} [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}], "
                f"one-sided p = {r['p']:.2g}: **{r['status']}** (a verdict needs at least {MIN_SEEDS} seeds).")
    best = int(np.nanargmax(s["gap"].to_numpy())) if len(s) else None
    return ("**Exploratory search** (no verdict: the seeds were used to choose). "
            + (f"Largest gap so far: step {best}, {s['gap'].iloc[best]:+.3f}." if best is not None else ""))


def confirmation_note(root=None) -> str:
    """Markdown for the top of the set-inclusion page: the pre-registration and what the confirmation found."""
    if PREREGISTERED is None:
        return ("**No pre-registered confirmation yet.** The search below is exploratory (stage-1 seeds "
                f"{EXPLORATORY['start_seed']}-{EXPLORATORY['start_seed'] + EXPLORATORY['n_seeds'] - 1}); no step of it "
                "is a verdict, whatever its interval.")
    seeds = PREREGISTERED["seeds"]
    head = (f"**Pre-registered** (committed before it ran): configuration *{PREREGISTERED['step']}*, hypothesis "
            f"{PREREGISTERED['hypothesis']}, fresh stage-1 seeds {seeds['start_seed']}-"
            f"{seeds['start_seed'] + seeds['n_seeds'] - 1}.")
    rs = finished("confirm", root=root)
    if rs is None:
        return head + " **Not run yet** (`iml sweep search --sweep confirm`)."
    return head + " " + verdict(rs)


@dataclasses.dataclass(frozen=True)
class SetInclusionStudy(ExperimentStudy):
    """Claim 7 on the claims page: judged on the pre-registered confirmation once it has run (fresh seeds, a
    configuration chosen by the logged search), else on the largest finished preset result."""

    def find(self, roots):
        if PREREGISTERED is not None:
            for r in roots:
                rs = finished("confirm", root=r)
                if rs is not None:
                    return "pre-registered confirmation", rs[0]
        return super().find(roots)

    def judge_claim(self, claim, found):
        status, text, _ = super().judge_claim(claim, found)
        if found[0] != "pre-registered confirmation":
            return status, text, None
        seeds = PREREGISTERED["seeds"]
        return (status, f"pre-registered confirmation of the search's choice *{PREREGISTERED['step']}* on fresh "
                        f"seeds {seeds['start_seed']}-{seeds['start_seed'] + seeds['n_seeds'] - 1}: {text}",
                f"set-inclusion cpu preset + the chosen step's overrides, config {found[1].hash}")


def point_label(result) -> str:
    cfg = si.Config(**{k: v for k, v in result.config.items() if k in {f.name for f in dataclasses.fields(si.Config)}})
    for step, c in zip(TRIED, configs("search")):
        if c == cfg:
            return step.label
    return "pre-registered confirmation"


def prepared(sweep: str) -> str:
    return ("the search's steps on stage-1 seeds 1000-1009" if sweep == "search"
            else "the pre-registered config on its fresh seeds")
