"""Batch-size sweep on the MNIST grid task: does a smaller batch give more IML?

The paper's claim (ii) (abstract): "larger models and smaller batch sizes tend to give more IML", and, as
others quote it, full-batch training eliminates it. The authors' sweep fine-tunes Pythia-1B/2.8B in a single
stage at batch sizes 16 to 32768 with epochs that grow with the batch so that training converges
(paper-brief.md 3.4); no numbers were published. A language-model sweep is beyond our CPU budget, but the
MNIST grid task shows IML on a CPU in minutes (``iml.mnist.grid``), so this module runs *that* task at
several batch sizes. Everything except the batch size and the epoch counts is the MNIST preset.

Design choices, because the paper leaves them open for a vision task:

* two designs: the book's two-stage MNIST task, where the batch size applies to both stages (Stage 2 has
  only the X2 definitions, e.g. 18 images at the cpu scale, so batches of 32 or more make Stage 2
  full-batch), and the single-stage ``*-joint`` sweeps, the authors' sweep design, where the X2 definitions
  are trained together with the X1 data (``iml.mnist.grid.Config.joint``);
* like the authors, larger batches get more epochs (``epoch_factor``) so that Stage 1 still converges;
  fewer optimizer steps remain for larger batches either way, so the summary reports the steps and the
  Stage-1 accuracies beside each gap: a gap that shrinks because Stage 1 did not converge is not the claim;
* the learning rate is the preset's at every batch size (the authors' sweep configs set none, so theirs
  was the Hugging Face default throughout);
* seeds are the same numbers at every batch size, so each seed's aliases, label grids and initial weights
  are shared and the batch sizes can be compared seed by seed (:func:`trend`).

Each point is an ordinary MNIST result (``results/mnist/<hash>``), so finished points are reused, and the
sweep's cpu point at batch 32 is the MNIST cpu preset itself.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from iml.mnist import grid as mnist_grid
from iml.core.config import ConfigError
from iml.core.results import ResultStore
from iml.core.stats import iml_gap, paired_differences, seed_interval
from iml.core.verdicts import MIN_SEEDS, judge, judge_gap, own_effect, seeds_note

__all__ = ["JOINT", "SWEEPS", "DESIGNS", "configs", "run", "finished", "sweep_name", "find_sweeps", "summary", "table",
           "trend", "seed_paired_difference", "run_points", "finished_points", "find_largest", "is_full_batch",
           "verdict", "verdict_status", "claim_status", "scale_note", "point_notes", "sweep_headline",
           "headline_note", "sweep_main"]

JOINT = {"joint": True, "stage2_epochs": 0}
"""MNIST overrides of the single-stage sweeps (``iml.mnist.grid.Config.joint``)."""

SWEEPS: dict[str, dict[str, Any]] = {
    # (batch size, epoch factor): the MNIST preset's stage epochs times the factor. The last point is
    # full-batch training (a batch larger than the data is all of it: 336 stage-1 examples at the cpu scale,
    # ~670 at the gpu scale). The authors gave their full-batch runs 7-8x the epochs of their smallest
    # batches (Pythia-1B: 240 vs 30); we give 4x.
    "smoke": dict(preset="smoke", points=[(8, 1.0), (32, 1.0)]),
    "cpu": dict(preset="cpu", overrides={"n_seeds": 10}, points=[(8, 1.0), (32, 1.0), (128, 2.0), (512, 4.0)]),
    "gpu": dict(preset="gpu", points=[(8, 1.0), (32, 1.0), (128, 2.0), (1024, 4.0)]),
    # single stage, as in the authors' sweep: the X2 definitions train together with the X1 data
    "smoke-joint": dict(preset="smoke", overrides=JOINT, points=[(8, 1.0), (32, 1.0)]),
    "cpu-joint": dict(preset="cpu", overrides={**JOINT, "n_seeds": 10},
                      points=[(8, 1.0), (32, 1.0), (128, 2.0), (512, 4.0)]),
    "gpu-joint": dict(preset="gpu", overrides=JOINT, points=[(8, 1.0), (32, 1.0), (128, 2.0), (1024, 4.0)]),
}
"""Sweep presets. The cpu sweeps have 10 seeds a point, the fewest a verdict takes (the seed-count table on the
Reproduce page shows what a third of the effect would need); their batch-32 point is the MNIST cpu preset at
10 seeds, which is also the α sweep's α = 1 point. With the results committed the book only loads them."""


def configs(sweep: str = "cpu", points: Sequence[Sequence[float]] | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[mnist_grid.Config]:
    """One MNIST config per (batch size, epoch factor) point of `sweep` (or the given `points`)."""
    if sweep not in SWEEPS:
        raise ConfigError("sweep", f"must be one of {sorted(SWEEPS)}, got {sweep!r}")
    spec = SWEEPS[sweep]
    pts = [tuple(p) for p in (points if points is not None else spec["points"])]
    if not pts:
        raise ConfigError("points", "needs at least one (batch size, epoch factor) point")
    for p in pts:
        if len(p) != 2 or not float(p[0]).is_integer() or p[0] < 1 or not (p[1] > 0 and math.isfinite(p[1])):
            raise ConfigError("points", f"each point is (batch size >= 1, epoch factor > 0), got {p!r}")
    if len({int(p[0]) for p in pts}) != len(pts):
        raise ConfigError("points", f"batch sizes must differ, got {[int(p[0]) for p in pts]}")
    for key in ("batch_size", "stage1_epochs", "stage2_epochs"):
        if key in (overrides or {}):
            raise ConfigError(key, "is set by the sweep's points; change the points instead")
    fixed = {**spec.get("overrides", {}), **dict(overrides or {})}
    base = mnist_grid.make_config(spec["preset"], fixed)
    out = []
    for bs, factor in sorted(pts):
        out.append(mnist_grid.make_config(spec["preset"], {
            **fixed, "batch_size": int(bs),
            "stage1_epochs": int(round(base.stage1_epochs * factor)),
            "stage2_epochs": int(round(base.stage2_epochs * factor))}))
    return out


def run(sweep: str = "cpu", points=None, overrides=None, *, root=None, force: bool = False,
        progress: bool = True, workers: int = 1) -> list:
    """Run (or load) every point of the sweep; returns their results, smallest batch first.

    ``workers > 1`` computes unfinished points in that many processes at once (one torch thread each on a
    CPU; the points are independent results, each written atomically), longest first."""
    return run_points(mnist_grid.__name__, configs(sweep, points, overrides), root=root, force=force,
                      progress=progress, workers=workers)


def _epochs(cfg) -> int:
    task = getattr(cfg, "task", cfg)  # an MNIST config, or a config that wraps one (iml.mnist.gradient_alignment)
    return task.stage1_epochs + task.stage2_epochs


def run_points(module: str, cfgs: Sequence, *, root=None, force: bool = False, progress: bool = True,
               workers: int = 1) -> list:
    """``run`` of experiment module `module` (e.g. "iml.mnist.grid") for every config, in order; with
    ``workers > 1`` the unfinished ones are first computed in that many spawned processes, longest first."""
    import importlib

    mod = importlib.import_module(module)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be an integer >= 1, got {workers!r}")
    todo = [c for c in cfgs if force or not ResultStore(mod.EXPERIMENT, c, root=root).is_complete()]
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        todo.sort(key=lambda c: -_epochs(c))
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn")) as pool:
            for f in [pool.submit(_run_point, module, c, root, force) for c in todo]:
                f.result()  # re-raises a point's error here
        force = False  # computed just now
    return [mod.run(c, root=root, force=force, progress=progress) for c in cfgs]


def _run_point(module: str, cfg, root, force: bool) -> str:
    import importlib

    import torch

    torch.set_num_threads(1)
    return importlib.import_module(module).run(cfg, root=root, force=force, progress=False).hash


def finished(sweep: str = "gpu", root=None, points=None) -> list | None:
    """The finished results of every point of `sweep` under `root`, or None if any point is missing
    (a sweep is shown whole or not at all). `root` None: results/; a book's "none" is handled by the caller."""
    return finished_points(mnist_grid.EXPERIMENT, configs(sweep, points), root)


def find_largest(finished_fn, roots: Sequence, names: Sequence[str] = ("gpu", "cpu")) -> tuple[str, list] | None:
    """(sweep name, results) of the first of `names` (largest scale first) that ``finished_fn(name, root)`` finds
    finished under any of `roots`, or None."""
    for name in names:
        for r in roots:
            rs = finished_fn(name, r)
            if rs is not None:
                return name, rs
    return None


def finished_points(experiment: str, cfgs: Sequence, root=None) -> list | None:
    """The finished results of `experiment` for every config, or None if any is missing or stale."""
    from iml.core import results as results_mod

    out = []
    for c in cfgs:
        try:
            out.append(results_mod.load(experiment, c, root=root))
        except (FileNotFoundError, results_mod.StaleResultError):
            return None
    return out


def _steps(result, stage: int) -> int | None:
    """Optimizer steps of one seed in `stage` (1 or 2), from the examples per epoch the run recorded."""
    cfg = result.config
    key, ep = (("stage1_examples", "stage1_epochs") if stage == 1 else ("stage2_examples", "stage2_epochs"))
    units = result.meta.get("units") or []
    n = result.meta.get(key)
    if n is None and units:
        import json

        extra = result.dir / "units" / f"{units[0]}.json"
        if extra.exists():
            n = json.loads(extra.read_text()).get(key)
    if n is None:
        return None
    n = int(np.max(n)) if isinstance(n, (list, tuple)) else int(n)
    return math.ceil(n / cfg["batch_size"]) * cfg[ep]


def summary(results: Sequence) -> pd.DataFrame:
    """One row per batch size (numbers): the IML gap Ḋ₅ − D̄₆ with its CI, the Stage-1 effect with its CI,
    and what training did (epochs, optimizer steps per seed, Stage-1 held-out accuracies), so that
    convergence can be judged beside each gap. :func:`table` formats it for reading."""
    rows = []
    for r in results:
        cfg, t = r.config, r.table
        e1 = cfg["stage1_epochs"]
        g = iml_gap(t, "d1consis", "d2consis", metric="acc")
        s1 = iml_gap(t, "qd1consis", "qd2incons", metric="acc", epoch=e1)
        end1 = t[(t.metric == "acc") & (t.epoch == e1)].groupby("subset").value.mean()
        rows.append({
            "batch_size": cfg["batch_size"], "stage1_epochs": e1, "stage2_epochs": cfg["stage2_epochs"],
            "stage1_steps": _steps(r, 1), "stage2_steps": _steps(r, 2),
            "stage1_acc_qd1consis": float(end1.get("qd1consis", np.nan)),
            "stage1_acc_qd2incons": float(end1.get("qd2incons", np.nan)),
            "gap": g.gap, "ci_low": g.ci_low, "ci_high": g.ci_high, "p_one_sided": g.p_one_sided,
            "stage1_gap": s1.gap, "stage1_ci_low": s1.ci_low, "stage1_ci_high": s1.ci_high,
            "n_seeds": g.n_stage1, "config": r.hash,
        })
    return pd.DataFrame(rows)


def table(summary_frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as the book shows it: rounded, CIs as intervals, the paper's symbols."""
    s = summary_frame
    ci = lambda lo, hi: [f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(s[lo], s[hi])]  # noqa: E731
    return pd.DataFrame({
        "batch size": s["batch_size"],
        "epochs (stage 1 + 2)": [f"{a} + {b}" for a, b in zip(s["stage1_epochs"], s["stage2_epochs"])],
        "steps per seed (stage 1 + 2)": [f"{a} + {b}" for a, b in zip(s["stage1_steps"], s["stage2_steps"])],
        "end of stage 1: Ḋ₁QA₁ acc": s["stage1_acc_qd1consis"].round(3),
        "end of stage 1: D̄₂QA₂ acc": s["stage1_acc_qd2incons"].round(3),
        "stage-1 gap Ḋ₁QA₁ − D̄₂QA₂": s["stage1_gap"].round(3),
        "stage-1 95% CI": ci("stage1_ci_low", "stage1_ci_high"),
        "IML gap Ḋ₅ − D̄₆": s["gap"].round(3),
        "IML 95% CI": ci("ci_low", "ci_high"),
        "p (one-sided)": [float(f"{p:.2g}") for p in s["p_one_sided"]],
        "seeds": s["n_seeds"], "config": s["config"],
        "paper": "no number",
    })


def _per_seed_gap(result) -> pd.Series:
    d = paired_differences(result.table, "d1consis", "d2consis", "acc")
    return d.groupby("seed_stage1")["diff"].mean()


def trend(small, large, level: float = 0.95) -> dict:
    """Gap at the smaller batch minus gap at the larger one, paired by stage-1 seed (same aliases and
    initial weights), with a t-interval over seeds and the one-sided p for "smaller batch, more IML"."""
    out = seed_paired_difference(_per_seed_gap(small), _per_seed_gap(large), level)
    return {"small": small.config["batch_size"], "large": large.config["batch_size"], **out}


def seed_paired_difference(a: pd.Series, b: pd.Series, level: float = 0.95) -> dict:
    """mean(a − b) over the stage-1 seeds both series hold (index: seed), with a t-interval over seeds and
    the one-sided p for a − b > 0: dict(diff, ci_low, ci_high, p_one_sided, n_seeds)."""
    common = a.index.intersection(b.index)
    if len(common) < 2:
        raise ValueError(f"the two results share {len(common)} stage-1 seed(s); a trend needs at least 2")
    iv = seed_interval((a[common] - b[common]).to_numpy(), level)
    return {"diff": iv.mean, "ci_low": iv.ci_low, "ci_high": iv.ci_high, "p_one_sided": iv.p_one_sided,
            "n_seeds": iv.n, "sd": iv.sd}


def verdict(results: Sequence) -> str:
    """Markdown: the claim's test on these results (smallest vs largest batch, seed-paired), with a status
    like the claims page's: *reproduced* when the difference's 95% CI is above 0."""
    status, text = verdict_status(results)
    return (f"**Verdict on this sweep** (2 planned comparisons; a 95% interval above 0 with at least {MIN_SEEDS} "
            f"seeds counts as reproduced): the paper's claim \"smaller batches give "
            f"more IML; full-batch training gives none\": **{status}**. {text}")


def is_full_batch(result) -> bool:
    """Whether Stage 1 of `result` took one optimizer step per epoch (the batch held all its examples)."""
    steps = _steps(result, 1)
    return steps is not None and steps == result.config["stage1_epochs"]


def verdict_status(results: Sequence) -> tuple[str, str]:
    """(status, evidence) for paper claim 4 from a finished sweep (the claims page uses it too), by the
    rules of :mod:`iml.core.verdicts` (two planned comparisons: the trend and the full-batch gap).

    The claim has two parts. *Smaller batches, more IML*: the seed-paired gap difference between the
    smallest and the largest batch (:func:`trend`), reproduced when its 95% CI is above 0, not reproduced
    when below. *Full batch, none*: when the largest batch is full-batch training and its own IML gap has a
    CI above 0, that part is contradicted (not reproduced), whatever the trend.
    """
    rs = sorted(results, key=lambda r: r.config["batch_size"])
    if len(rs) < 2:
        return "not attempted", "a trend needs at least two batch sizes"
    t = trend(rs[0], rs[-1])
    text = (f"IML gap at batch {t['small']} minus gap at batch {t['large']} = {t['diff']:+.3f} "
            f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] (held-out accuracy, {t['n_seeds']} seeds paired, "
            f"one-sided p = {t['p_one_sided']:.2g}).")
    g_small = iml_gap(rs[0].table, "d1consis", "d2consis", metric="acc")
    status, need = judge(t["ci_low"], t["ci_high"], t["n_seeds"], t["sd"], own_effect(g_small))
    text += {"reproduced": "", "not reproduced": " The larger batch gave more IML.",
             "null at our scale": " The difference's CI includes 0.",
             "too few seeds": f" Too few seeds: {seeds_note(t['n_seeds'], need)}; the trend is set against the "
                              f"smallest batch's IML gap, {g_small.gap:+.3f}."}[status]
    if is_full_batch(rs[-1]) and status != "too few seeds":
        g = iml_gap(rs[-1].table, "d1consis", "d2consis", metric="acc")
        text += (f" Full-batch training (batch {t['large']}) gave an IML gap of {g.gap:+.3f} "
                 f"[{g.ci_low:+.3f}, {g.ci_high:+.3f}]")
        if judge_gap(g)[0] == "reproduced":
            status, text = "not reproduced", text + ": IML without minibatch noise, against the claim's second part."
        else:
            text += "."
    return status, text


DESIGNS = {"single-stage": ("gpu-joint", "cpu-joint"), "two-stage": ("gpu", "cpu")}
"""Sweep names per design, largest scale first (the claims page shows the largest finished one)."""


def sweep_name(preset: str, design: str) -> str:
    """The sweep of `design` ("two-stage" or "single-stage") at `preset` (smoke, cpu, gpu)."""
    if design not in DESIGNS:
        raise ConfigError("design", f"must be one of {sorted(DESIGNS)}, got {design!r}")
    name = preset + ("-joint" if design == "single-stage" else "")
    if name not in SWEEPS:
        raise ConfigError("preset", f"no {design} sweep at {preset!r}; sweeps: {sorted(SWEEPS)}")
    return name


def find_sweeps(roots: Sequence) -> dict[str, tuple[str, list]]:
    """design -> (sweep name, results) of the largest finished sweep of each design under any of `roots`."""
    out = {}
    for design, names in DESIGNS.items():
        for name in names:
            rs = next((rs for r in roots if (rs := finished(name, r)) is not None), None)
            if rs is not None:
                out[design] = (name, rs)
                break
    return out


def claim_status(rank: int, sweeps: Mapping[str, tuple[str, list]]) -> tuple[str, str, str]:
    """(status, evidence, scale) on the claims page for paper claim 4 (batch size) or 12 (single-stage
    training), from :func:`find_sweeps`. Claim 4's status is the single-stage sweep's when there is one,
    because the authors' sweep is single-stage; the two-stage sweep's verdict is listed beside it."""
    def scale_of(name, rs):
        return f"{name} sweep, batch sizes {', '.join(str(r.config['batch_size']) for r in rs)}"

    if rank == 4:
        parts = [(d, *sweeps[d]) for d in ("single-stage", "two-stage") if d in sweeps]
        if not parts:
            return "not attempted", "no finished batch-size sweep", ""
        verdicts = [(d, name, rs, *verdict_status(rs)) for d, name, rs in parts]
        evidence = " ".join(f"MNIST grid analogue, {d} ({st}): {ev}" for d, _, _, st, ev in verdicts)
        return verdicts[0][3], evidence, "; ".join(scale_of(name, rs) for _, name, rs, _, _ in verdicts)
    if rank == 12:
        if "single-stage" not in sweeps:
            return "not attempted", "no finished single-stage sweep", ""
        name, rs = sweeps["single-stage"]
        bs = mnist_grid.make_config(SWEEPS[name]["preset"]).batch_size
        r = next((r for r in rs if r.config["batch_size"] == bs), rs[0])
        g = iml_gap(r.table, "d1consis", "d2consis", metric="acc")
        return (judge_gap(g)[0],
                f"MNIST grid analogue, one stage at the preset's batch {r.config['batch_size']}: Ḋ₅ − D̄₆ = "
                f"{g.gap:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}] (held-out accuracy, {g.n_stage1} seeds)",
                f"{name} sweep, config {r.hash}")
    raise ValueError(f"the batch-size sweeps test claims 4 and 12, not {rank}")


def scale_note(results: Sequence) -> str:
    """Markdown: the scale of every point (iml.report.plots.scale_caption), one line each."""
    return point_notes(results, lambda r: f"batch {r.config['batch_size']}")


def point_notes(results: Sequence, label) -> str:
    """Markdown: one line per result of a sweep, ``- <label(result)>: <its scale caption>``."""
    from iml.report.plots import scale_caption

    return "\n".join(f"- {label(r)}: {scale_caption(r)}" for r in results)


def sweep_headline(committed: Sequence | None, sweep: str, prepared: str, command: str, folder: str,
                   points: str, notes: str) -> str:
    """Markdown under a sweep page's headline heading: the committed `sweep` (its `points`, e.g. "4 batch sizes",
    and its `notes`), or plainly that there is none, what is `prepared` and the `command` that runs it."""
    if not committed:
        return (f"**No committed `{sweep}` sweep yet.** It is prepared ({prepared}); run it on a GPU with "
                f"`PYTHONPATH=lib {command}` and commit `{folder}`. The runs below are what a CPU budget shows.")
    return (f"**Headline: committed `{sweep}` sweep** ({points}, {', '.join(r.hash for r in committed)} under "
            f"`{folder}`).\n\n" + notes)


def headline_note(committed: Sequence | None, sweep: str = "gpu") -> str:
    prepared = (f"MNIST {SWEEPS[sweep]['preset']} preset, batch sizes "
                + ", ".join(str(p[0]) for p in SWEEPS[sweep]["points"]))
    return sweep_headline(committed, sweep, prepared, f"python -m iml.mnist.batch_size --sweep {sweep}", "results/mnist/",
                          f"{len(committed or [])} batch sizes", scale_note(committed or []))


def sweep_main(argv, description: str, module, run_fn, extra_args=()) -> int:
    """The command line of a sweep module: ``--sweep`` (one of ``module.SWEEPS``), ``--set KEY=VALUE`` (MNIST
    overrides), ``--root``, ``--workers``, ``--quiet`` and `extra_args` (argparse (flags, kwargs) pairs, passed on
    by dest). ``run_fn(sweep, overrides, root=, progress=, workers=, **extra)`` returns the results, printed as
    ``module.table(module.summary(results))`` and ``module.verdict(results)``. Bad input (a ConfigError) is one
    line on stderr and exit status 2."""
    import argparse

    from iml.core.config import parse_override

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--sweep", default="cpu", choices=sorted(module.SWEEPS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="MNIST override (JSON value)")
    ap.add_argument("--root", default=None, help="results root (default: results/)")
    ap.add_argument("--workers", type=int, default=1, help="points computed at once in separate processes")
    ap.add_argument("--quiet", action="store_true")
    for flags, kw in extra_args:
        ap.add_argument(*flags, **kw)
    args = ap.parse_args(argv)
    extra = {kw.get("dest") or flags[0].lstrip("-").replace("-", "_"): getattr(
        args, kw.get("dest") or flags[0].lstrip("-").replace("-", "_")) for flags, kw in extra_args}
    try:
        overrides = dict(parse_override(kv) for kv in args.set)
        rs = run_fn(args.sweep, overrides, root=args.root, progress=not args.quiet, workers=args.workers, **extra)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(module.table(module.summary(rs)).to_string(index=False))
    print(module.verdict(rs))
    return 0


def main(argv=None) -> int:
    """``PYTHONPATH=lib python -m iml.mnist.batch_size --sweep gpu [--root DIR]``: run a sweep, print its table."""
    return sweep_main(argv, "Run the MNIST batch-size sweep and print its summary.", sys.modules[__name__],
                      lambda sweep, overrides, **kw: run(sweep, None, overrides, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
