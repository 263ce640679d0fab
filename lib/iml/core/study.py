"""What the claims page asks of a study, and the study of a plain experiment.

A study answers for the claims of ``iml.core.paper.CLAIMS`` whose ``experiment`` is its `name`:

* ``find(roots) -> (label, evidence) | None``: its largest-scale finished evidence (a preset's result, or a sweep);
* ``judge_claim(claim, found) -> (status, text, scale | None)``: the claim's status by :mod:`iml.core.verdicts`;
* ``power_rows(found) -> list[dict]``: the comparisons the verdict rests on, sized by :mod:`iml.core.power`;
* ``domain`` ("language" / "vision"), ``tested_on`` and ``paper_note`` (the paper's value when it is not a gap).

:class:`ExperimentStudy` serves the experiments judged on one result; the sweep modules
(``iml.mnist.batch_size``, ``alpha``, ``gradient_alignment``) implement the same names themselves.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Protocol, Sequence

from iml.core import paper, power, results, verdicts
from iml.core.config import config_hash
from iml.core.stats import paired_differences, per_seed_means

__all__ = ["Study", "ExperimentStudy", "PRESET_ORDER", "find_result", "gap_claim"]

PRESET_ORDER = ("paper", "gpu", "cpu", "smoke")
"""Presets from largest to smallest scale: the claims page uses the largest finished one."""


class Study(Protocol):
    name: str
    domain: str
    tested_on: str
    paper_note: str | None

    def find(self, roots: Sequence[Path]) -> tuple[str, Any] | None: ...

    def judge_claim(self, claim: paper.Claim, found: tuple[str, Any]) -> tuple[str, str, str | None]: ...

    def power_rows(self, found: tuple[str, Any]) -> list[dict]: ...


def find_result(name: str, cfg, root) -> results.Result | None:
    """The finished result of `cfg` under `root`, else the one of a run of `cfg` cut short by its deadline
    (its finished seeds saved as a smaller config whose meta names `cfg`'s hash and whose config is `cfg`'s with fewer
    seeds, :func:`iml.core.results.cut_from`; the one with most rows), else None."""
    try:
        return results.load(name, cfg, root=root)
    except (FileNotFoundError, results.StaleResultError):
        pass
    want, found = config_hash(cfg), []
    for meta_path in sorted((Path(root) / name).glob("*/meta.json")):
        try:
            if json.loads(meta_path.read_text()).get("planned_config_hash") == want:
                res = results.load_dir(meta_path.parent)
                if results.cut_from(res) == want:  # recomputed: the meta's claim alone is not trusted
                    found.append(res)
        except (OSError, ValueError, FileNotFoundError, results.StaleResultError):
            continue
    return max(found, key=lambda res: len(res.table)) if found else None


def gap_claim(result, a: str, b: str, metric: str, epoch, preset: str) -> tuple[str, str]:
    """(status, evidence) of one paper gap a − b in `result` (found at `preset`)."""
    try:
        status, g, need = verdicts.gap_status(result.table, a, b, metric, epoch, paper_scale=preset == "paper",
                                              paper_value=paper.paper_gap(result.experiment, a, b, metric)[0])
    except ValueError as e:
        return "not attempted", f"no {metric} rows for {a}/{b} ({e})"
    txt = (f"{paper.symbol(a)} − {paper.symbol(b)} = {g.gap:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}] "
           f"({metric}, epoch {g.epoch:g}, {g.n_stage1}×{g.n_stage2_per_stage1:g} seeds)")
    if status == "too few seeds":
        txt += f" ({verdicts.seeds_note(g.n_stage1, need)})"
    elif status == "uninformative (floor/ceiling)":
        txt += f" (both sides at the metric's {verdicts.at_bound(result.table, a, b, metric, g.epoch)})"
    return status, txt


@dataclasses.dataclass(frozen=True)
class ExperimentStudy:
    """A study judged on the largest-scale finished preset result of one experiment module: by the gaps its
    claims name, or by `judge_result(result) -> (status, text)` when the claim is not a gap (the probes)."""
    module: ModuleType
    domain: str
    tested_on: str
    judge_result: Callable[[Any], tuple[str, str]] | None = None
    paper_note: str | None = None

    @property
    def name(self) -> str:
        return self.module.EXPERIMENT

    def find(self, roots: Sequence[Path]) -> tuple[str, Any] | None:
        for preset in PRESET_ORDER:
            if preset not in self.module.PRESETS:
                continue
            try:
                cfg = self.module.make_config(preset)
            except Exception:  # noqa: BLE001 - e.g. a preset that needs a local checkpoint path
                continue
            for r in roots:
                found = find_result(self.name, cfg, r)
                if found is not None:
                    return preset, found
        return None

    def judge_claim(self, claim: paper.Claim, found: tuple[str, Any]) -> tuple[str, str, str | None]:
        preset, res = found
        if self.judge_result is not None:
            return (*self.judge_result(res), None)
        sts, evs = [], []
        for a, b, m in claim.gaps:
            s, e = gap_claim(res, a, b, m, paper.gap_epoch(res.table, a, b, m), preset)
            sts.append(s)
            evs.append(e)
        return verdicts.worst(sts), "; ".join(evs), None

    def power_rows(self, found: tuple[str, Any]) -> list[dict]:
        if self.judge_result is not None:
            return []
        preset, result = found
        rows = []
        for c in paper.CLAIMS:
            if c.experiment != self.name:
                continue
            for a, b, m in c.gaps:
                try:
                    d = paired_differences(result.table, a, b, m, paper.gap_epoch(result.table, a, b, m))
                except ValueError:
                    continue
                x, pv = per_seed_means(d), paper.paper_gap(self.name, a, b, m)[0]
                rows.append(power.row(f"{self.name} ({preset}): {paper.gap_label(self.name, a, b, m)}, {m}", x,
                                      power.own(x, pv), "paper" if pv == pv else "this result",
                                      power.seconds_per_seed(result),
                                      verdicts.at_bound(result.table, a, b, m, d.attrs["epoch"])))
        return rows
