"""``iml verify RESULT_DIR``: recompute some units of a committed result and compare them with it.

The sampled units are recomputed by the experiment's own ``run`` in a temporary results root that holds
copies of the result's other units, so ``run`` resumes and computes only the sampled ones (no hook needed,
no config or result hash touched). Outcomes: *bitwise equal*; *numbers differ, statistically the same*
(every verdict gap's 95% CI overlaps the committed one and keeps its status); *verdict differs*.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iml import registry
from iml.core import env, files, paper
from iml.core.stats import iml_gap
from iml.mnist.gradient_alignment import with_derived
from iml.mnist.grid import LAYERS
from iml.core.config import ConfigError, config_hash, from_dict
from iml.core.results import COLUMNS, ResultStore, StaleResultError, load_dir

__all__ = ["BITWISE", "STATISTICAL", "VERDICT", "ROWS", "EXIT_CODES", "verify", "verdict_gaps",
           "sample_units", "parse_units", "format_report"]

BITWISE = "bitwise equal"
STATISTICAL = "numbers differ, statistically the same"
VERDICT = "verdict differs"
ROWS = "rows differ"
"""The recomputed unit has other rows (runs, epochs, subsets or metrics) than the committed one."""
EXIT_CODES = {BITWISE: 0, STATISTICAL: 0, VERDICT: 1, ROWS: 1}
KEY = [c for c in COLUMNS if c != "value"]


def parse_units(text: str | int | None) -> int | None:
    """``--units``: a positive number of units, or ``all`` (None)."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return None
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise ConfigError("--units", f"must be a positive integer or 'all', got {text!r}") from None
    if n < 1:
        raise ConfigError("--units", f"must be a positive integer or 'all', got {text!r}")
    return n


def sample_units(units: list[str], n: int | None, seed: int = 0) -> list[str]:
    """A deterministic sample of `n` of `units` (all if `n` is None or >= their number), in their order."""
    if n is None or n >= len(units):
        return list(units)
    pick = np.random.default_rng(seed).choice(len(units), size=n, replace=False)
    return [units[i] for i in sorted(int(i) for i in pick)]


# ----------------------------------------------------------------------------------------------
# The gaps a result's verdict uses
# ----------------------------------------------------------------------------------------------

def _probe_table(table: pd.DataFrame) -> pd.DataFrame:
    """The probe rows with the metric as the subset, so a layer's probe and its control pair like subsets."""
    t = table[table["metric"].astype(str).str.startswith("probe_")]
    return t.assign(subset=t["metric"], metric="probe")


def verdict_gaps(experiment: str, config: dict, table: pd.DataFrame) -> list[dict]:
    """The gaps (label, a, b, metric, epoch, view) whose CIs decide `experiment`'s verdict.

    `view` names a transform of the table (``raw``, ``gradalign`` derived metrics, ``probe`` rows). The
    paper's gaps (:data:`iml.core.paper.GAPS`) where it has some; gradient alignment's verdict quantity; for the
    probe, each layer's probe minus its shuffled-tag control after Stage 1, and the IML gap.
    """

    out = []
    for g in paper.GAPS:
        if g.experiment == experiment:
            out.append(dict(label=g.label, a=g.a, b=g.b, metric=g.metric, epoch=paper.gap_epoch(table, g.a, g.b, g.metric),
                            view="raw"))
    if out:
        return out
    if experiment == "gradalign":
        end = float(config["task"]["stage1_epochs"])
        for m in ("grad_cos_change", "grad_cos"):
            out.append(dict(label="gradient alignment Ḋ₅ − D̄₆, end of Stage 1", a="d1consis", b="d2consis", metric=m,
                            epoch=end, view="gradalign"))
    elif experiment == "probe":
        end = float(config["task"]["stage1_epochs"])

        for layer in LAYERS:
            out.append(dict(label=f"probe {layer} − shuffled control, end of Stage 1", a=f"probe_{layer}",
                            b=f"probe_{layer}_shuffled", metric="probe", epoch=end, view="probe"))
        out.append(dict(label="IML, MNIST grid: Ḋ₅ − D̄₆", a="d1consis", b="d2consis", metric="acc", epoch=None,
                        view="raw"))
    else:  # an experiment without claimed gaps: the IML gap in its first accuracy-like metric
        metric = next((m for m in ("EM", "acc") if m in set(table["metric"])), None)
        if metric:
            out.append(dict(label="IML: Ḋ₅ − D̄₆", a="d1consis", b="d2consis", metric=metric, epoch=None,
                            view="raw"))
    return out


def _view(table: pd.DataFrame, view: str, cache: dict) -> pd.DataFrame:
    if view not in cache:
        if view == "gradalign":

            cache[view] = with_derived(table)
        elif view == "probe":
            cache[view] = _probe_table(table)
        else:
            cache[view] = table
    return cache[view]


def _status(lo: float, hi: float) -> str:
    if not (lo == lo and hi == hi):
        return "no CI"
    return "above 0" if lo > 0 else "below 0" if hi < 0 else "includes 0"


def _gap(table: pd.DataFrame, spec: dict, cache: dict) -> dict:

    try:
        g = iml_gap(_view(table, spec["view"], cache), spec["a"], spec["b"], spec["metric"], spec["epoch"])
    except ValueError as e:
        return {"status": "missing", "error": str(e)}
    return {"gap": float(g.gap), "ci_low": float(g.ci_low), "ci_high": float(g.ci_high),
            "epoch": float(g.epoch), "n_stage1": int(g.n_stage1), "status": _status(g.ci_low, g.ci_high)}


def _overlap(a: dict, b: dict) -> bool:
    if "ci_low" not in a or "ci_low" not in b:
        return a.get("status") == b.get("status")
    nan_a = math.isnan(a["ci_low"]) or math.isnan(a["ci_high"])
    nan_b = math.isnan(b["ci_low"]) or math.isnan(b["ci_high"])
    if nan_a or nan_b:
        return nan_a and nan_b
    return a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]


# ----------------------------------------------------------------------------------------------
# Comparing tables
# ----------------------------------------------------------------------------------------------

def _same_keys(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b):
        return False
    return all((a[c].astype(str).to_numpy() == b[c].astype(str).to_numpy()).all() for c in KEY)


def compare_values(committed: pd.DataFrame, recomputed: pd.DataFrame) -> dict:
    """Row-by-row comparison of two unit tables: n values, how many differ (NaN equals NaN), max |diff|."""
    if not _same_keys(committed, recomputed):
        return {"same_rows": False, "n_committed": len(committed), "n_recomputed": len(recomputed)}
    x = committed["value"].to_numpy(float)
    y = recomputed["value"].to_numpy(float)
    both_nan = np.isnan(x) & np.isnan(y)
    differ = ~((x == y) | both_nan)
    d = np.abs(x - y)[differ & np.isfinite(x) & np.isfinite(y)]
    return {"same_rows": True, "n": int(len(x)), "n_differ": int(differ.sum()),
            "max_abs_diff": float(d.max()) if len(d) else (math.inf if differ.any() else 0.0)}


# ----------------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------------

def _cpu(info: dict | None) -> dict:
    info = info or {}
    return {"cpu_model": info.get("cpu_model") or "unknown", "cpu_capability": info.get("cpu_capability") or "unknown",
            "aten_cpu_capability_env": info.get("aten_cpu_capability_env"), "gpu": info.get("gpu"),
            "torch": info.get("torch"), "torch_threads": info.get("torch_threads")}


ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
           "MKL_CBWR")
"""Variables that cap the instruction set of torch's own kernels (ATen), of oneDNN (convolutions) and of MKL."""


def _isa_env() -> dict:
    return {k: os.environ[k] for k in ISA_ENV if os.environ.get(k)}


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _clean(x: Any) -> Any:
    """JSON-safe: NaN and infinities become None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _open(result_dir: str | Path):
    d = Path(result_dir)
    if not d.exists():
        raise ConfigError("RESULT", f"no such folder: {d}")
    if not d.is_dir():
        raise ConfigError("RESULT", f"not a folder: {d}")
    missing = [f for f in ("config.json", "results.csv", "meta.json") if not (d / f).is_file()]
    if missing:
        raise ConfigError("RESULT", f"{d} is not a finished result folder (no {', '.join(missing)})")
    experiment = d.resolve().parent.name
    try:
        mod = registry.get(experiment)
    except ValueError as e:
        raise ConfigError("RESULT", f"{d}: {e}") from None
    try:
        res = load_dir(d)
    except (FileNotFoundError, StaleResultError, ValueError) as e:
        raise ConfigError("RESULT", str(e)) from None
    try:
        cfg = from_dict(mod.Config, res.config)
    except ConfigError as e:
        raise ConfigError("RESULT", f"{d}: its config no longer builds with this code ({e})") from None
    if config_hash(cfg) != res.hash:
        raise ConfigError("RESULT", f"{d}: its config rebuilds to hash {config_hash(cfg)}, not {res.hash}")
    store = ResultStore(experiment, res.config, root=d.parent.parent)
    units = list(res.meta.get("units") or store.done_units())
    if not units:
        raise ConfigError("RESULT", f"{d} lists no units to recompute")
    absent = [u for u in units if not store.unit_done(u)]
    if absent:
        raise ConfigError("RESULT", f"{d}: unit file(s) missing: {', '.join(absent[:5])}")
    return mod, res, cfg, units


def verify(result_dir: str | Path, units: int | None = 1, seed: int = 0, root: str | Path | None = None,
           threads: int | None = None, progress: bool = False) -> dict:
    """Recompute a deterministic sample of `units` units (None: all) of a result and compare; the report.

    Raises ConfigError on bad input. `root` (kept afterwards) must not hold this result yet; by default a
    temporary folder is used and removed. `threads`: torch threads (default: the committed result's).
    """
    import torch

    t0 = time.time()
    if units is not None:
        parse_units(units)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError("--threads", f"must be a positive integer, got {threads!r}")
    mod, res, cfg, all_units = _open(result_dir)
    picked = sample_units(all_units, units, seed)
    src = Path(result_dir)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="iml-verify-") if root is None else None
    work = Path(tmp_ctx.name) if tmp_ctx else Path(root)
    committed_store = ResultStore(res.experiment, res.config, root=src.parent.parent)
    store = ResultStore(res.experiment, res.config, root=work)
    dst = store.dir
    if dst.exists() and any(dst.iterdir()):
        raise ConfigError("--root", f"{dst} already exists; give an empty results root")
    committed_env = res.meta.get("environment") or {}
    want_threads = threads or committed_env.get("torch_threads")
    old_threads = torch.get_num_threads()
    try:
        store.units_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "config.json", dst / "config.json")
        for u in all_units:
            if u in picked:
                continue
            for suffix in (".csv", ".json"):
                p = committed_store.unit_path(u).with_suffix(suffix)
                if p.exists():
                    shutil.copy2(p, store.unit_path(u).with_suffix(suffix))
        if want_threads:
            torch.set_num_threads(int(want_threads))
        t_run, c_run = time.time(), time.process_time()
        try:
            mod.run(cfg, root=work, progress=progress)
        except FileNotFoundError as e:  # e.g. a pretrained model's local checkpoint that is not here
            raise ConfigError("RESULT", f"cannot recompute {res.experiment}/{res.hash} here: {e}") from None
        run_s, run_cpu_s = time.time() - t_run, time.process_time() - c_run
        used_threads = torch.get_num_threads()
        per_unit, n, n_differ, max_diff, same_rows = {}, 0, 0, 0.0, True
        for u in picked:
            c = compare_values(committed_store.load_unit(u), store.load_unit(u))
            per_unit[u] = c
            if not c["same_rows"]:
                same_rows = False
                continue
            n += c["n"]
            n_differ += c["n_differ"]
            max_diff = max(max_diff, c["max_abs_diff"])
        committed = pd.read_csv(src / "results.csv")
        recomputed = pd.read_csv(dst / "results.csv")
        concat = pd.concat([committed_store.load_unit(u) for u in all_units], ignore_index=True)
        consistent = compare_values(committed, concat)
        consistent = bool(consistent["same_rows"] and consistent["n_differ"] == 0)
        gaps = []
        if same_rows:
            cache_c, cache_r = {}, {}
            for spec in verdict_gaps(res.experiment, res.config, committed):
                gc, gr = _gap(committed, spec, cache_c), _gap(recomputed, spec, cache_r)
                gaps.append({**spec, "committed": gc, "recomputed": gr, "overlap": _overlap(gc, gr),
                             "same_status": gc["status"] == gr["status"]})
    finally:
        torch.set_num_threads(old_threads)
        if tmp_ctx:
            tmp_ctx.cleanup()
    if not same_rows:
        outcome = ROWS
    elif not all(g["overlap"] and g["same_status"] for g in gaps):
        outcome = VERDICT
    elif n_differ == 0 and consistent:
        outcome = BITWISE
    else:
        outcome = STATISTICAL
    return {
        "result": str(src), "experiment": res.experiment, "config_hash": res.hash, "outcome": outcome,
        "exit_code": EXIT_CODES[outcome], "units_total": len(all_units), "units_checked": picked, "seed": seed,
        "values": {"n": n, "n_differ": n_differ, "share_differ": (n_differ / n) if n else None,
                   "max_abs_diff": max_diff},
        "per_unit": per_unit, "results_csv_matches_units": consistent, "gaps": gaps,
        "committed": {**_cpu(committed_env), "git_revision": res.meta.get("git_revision"),
                      "unit_git_revisions": {u: (res.meta.get("unit_git_revisions") or {}).get(u) for u in picked}},
        "verify": {**_cpu({**env.cpu_info(), "torch": torch.__version__, "gpu": _gpu_name()}),
                   "torch_threads": used_threads, "git_revision": env.git_revision(), "isa_env": _isa_env()},
        "recompute_wall_s": round(run_s, 2), "recompute_cpu_s": round(run_cpu_s, 2),
        "wall_s": round(time.time() - t0, 2),
        "root": None if tmp_ctx else str(work),
    }


def _fmt(g: dict) -> str:
    if "ci_low" not in g:
        return g["status"]
    return f"{g['gap']:+.4f} [{g['ci_low']:+.4f}, {g['ci_high']:+.4f}] {g['status']}"


def format_report(r: dict) -> str:
    """The one-line outcome, then the details."""
    v = r["values"]
    head = f"{r['experiment']}/{r['config_hash']}: {r['outcome'].upper()}"
    lines = [head + f" ({len(r['units_checked'])} of {r['units_total']} units recomputed: "
                    f"{', '.join(r['units_checked'])})"]
    if r["outcome"] == ROWS:
        for u, c in r["per_unit"].items():
            if not c["same_rows"]:
                lines.append(f"  unit {u}: {c['n_recomputed']} rows recomputed vs {c['n_committed']} committed, or "
                             f"other keys (the code that makes them changed?)")
    else:
        share = v["share_differ"]
        lines.append(f"  values: {v['n_differ']} of {v['n']} differ ({100 * (share or 0):.2f}%), "
                     f"max |diff| {v['max_abs_diff']:.3g}")
    if not r["results_csv_matches_units"]:
        lines.append("  note: the committed results.csv is not the concatenation of its unit files")
    c, w = r["committed"], r["verify"]
    lines.append(f"  committed on: {c['cpu_model']}, kernels {c['cpu_capability']}, torch {c['torch'] or 'unknown'}, "
                 f"{c['torch_threads'] or '?'} thread(s){', GPU ' + c['gpu'] if c['gpu'] else ''}")
    forced = " ".join(f"{k}={x}" for k, x in (w.get("isa_env") or {}).items())
    lines.append(f"  verified on:  {w['cpu_model']}, kernels {w['cpu_capability']}"
                 f"{f' ({forced})' if forced else ''}, torch {w['torch']}, "
                 f"{w['torch_threads']} thread(s)")
    for g in r["gaps"]:
        mark = "same" if g["overlap"] and g["same_status"] else "DIFFERENT"
        lines.append(f"  gap {g['label']} ({g['metric']}): committed {_fmt(g['committed'])} | recomputed "
                     f"{_fmt(g['recomputed'])} -> {mark}")
    lines.append(f"  wall {r['wall_s']:.1f} s (recompute {r['recompute_wall_s']:.1f} s, "
                 f"cpu {r['recompute_cpu_s']:.1f} s)")
    return "\n".join(lines)


def write_report(path: str | Path, report: dict) -> Path:
    return files.write_json(path, _clean(json.loads(json.dumps(report, default=str))))


def main(result_dir: str, units: Any = "1", seed: int = 0, root: str | None = None, out: str | None = None,
         threads: int | None = None, progress: bool = False) -> int:
    """The CLI body: print the report, write it to `out` if given; the exit code (ConfigError propagates)."""
    r = verify(result_dir, parse_units(units), seed=seed, root=root, threads=threads, progress=progress)
    print(format_report(r))
    if out:
        write_report(out, r)
    return r["exit_code"]
