"""What a sweep's notebook says about its points: one scale caption per point, and the headline note (the
committed sweep, or plainly that there is none and the command that makes it)."""
from __future__ import annotations

from types import ModuleType
from typing import Sequence

from iml import registry
from iml.report.plots import scale_caption

__all__ = ["scale_note", "headline_note"]


def scale_note(study: ModuleType, results: Sequence) -> str:
    """Markdown: one line per point of a sweep of `study`, ``- <point label>: <its scale caption>``."""
    return "\n".join(f"- {study.point_label(r)}: {scale_caption(r)}" for r in results)


def headline_note(study: ModuleType, committed: Sequence | None, sweep: str = "gpu") -> str:
    """Markdown under a sweep page's headline heading: the committed `sweep` of `study`, or that there is none,
    what it would compute and the command that runs it."""
    name = next(n for n, m in registry.SWEEPS.items() if m is study)
    folder = f"results/{study.EXPERIMENT}/"
    if not committed:
        return (f"**No committed `{sweep}` sweep yet.** It is prepared ({study.prepared(sweep)}); run it on a GPU "
                f"with `.venv/bin/python -m iml sweep {name} --sweep {sweep}` plus `--root results` (on a bare GPU "
                f"box without the venv, `PYTHONPATH=lib python -m iml` in place of `.venv/bin/python -m iml`) and "
                f"commit `{folder}`. The cpu runs on this page are what a CPU budget shows.")
    return (f"**Headline: committed `{sweep}` sweep** ({len(committed)} {study.POINTS}, "
            f"{', '.join(r.hash for r in committed)} under `{folder}`).\n\n" + scale_note(study, committed))
