"""The experiments and sweeps the CLI and the book know, by name.

An experiment module (a result folder ``results/<EXPERIMENT>/<hash>`` per config) has ``EXPERIMENT``, ``Config``,
``PRESETS`` (preset -> overrides), ``make_config(preset, overrides=None, config_file=None)`` and
``run(config, *, root=None, force=False, progress=True)`` (:func:`iml.core.runner.run_units` underneath).
A sweep module (points that are ordinary results of one experiment, :mod:`iml.core.sweep`) has ``EXPERIMENT``,
``SWEEPS``, ``configs(sweep, points=None, overrides=None)``, ``run_sweep(sweep, points=None, overrides=None, *,
root, force, progress, workers)``, ``finished``, ``summary``, ``table``, ``verdict``, ``point_label`` and
``prepared``. A study (:data:`STUDIES`) is what the claims page judges a claim on: an experiment's largest
finished preset, or a sweep.
"""
from __future__ import annotations

from types import ModuleType

from iml.core.config import config_hash
from iml.core.study import ExperimentStudy, Study
from iml.lm import experiment as main_experiment
from iml.mnist import alpha, batch_size, gradient_alignment, model_size, probes
from iml.mnist import experiment as mnist_experiment
from iml.scratch import model_size as setinclusion_size
from iml.scratch import search, set_inclusion

EXPERIMENTS: dict[str, ModuleType] = {
    "main": main_experiment,
    "setinclusion": set_inclusion,
    "mnist": mnist_experiment,
    "gradalign": gradient_alignment,
    "probe": probes,
}

SWEEPS: dict[str, ModuleType] = {
    "batch_size": batch_size,
    "alpha": alpha,
    "gradalign": gradient_alignment,
    "model_size": model_size,
    "setinclusion_size": setinclusion_size,
    "search": search,
}


STUDIES: dict[str, Study] = {
    "main": ExperimentStudy(main_experiment, "language", "pretrained language model"),
    "setinclusion": search.SetInclusionStudy(set_inclusion, "language", "transformer trained from scratch"),
    "mnist": ExperimentStudy(mnist_experiment, "vision", "MNIST grid (ConvNet)"),
    "probe": ExperimentStudy(probes, "vision", "MNIST grid (ConvNet)", judge_result=probes.verdict_status),
    "batch_size": batch_size,
    "alpha": alpha,
    "gradalign": gradient_alignment,
    "model_size": model_size,
    "setinclusion_size": setinclusion_size,
}
"""What the claims page judges each claim on (``iml.core.paper.Claim.experiment`` -> study, :mod:`iml.core.study`),
in the order its power table lists them."""


def get(name: str) -> ModuleType:
    """The module of experiment `name` (raises ValueError listing the known ones)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def sweep(name: str) -> ModuleType:
    """The module of sweep `name` (raises ValueError listing the known ones)."""
    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r}; known: {', '.join(SWEEPS)}")
    return SWEEPS[name]


def preset_of(name: str, config) -> str | None:
    """The preset of experiment `name` whose config hashes like `config` (a dict or dataclass), or None.

    Results do not store the preset they were made with (a preset is just a named config); this recovers it
    for captions, so a figure can say "cpu preset" only when the config really is that preset's.
    """
    return preset_of_hash(name, config_hash(config))


def preset_of_hash(name: str, want: str) -> str | None:
    """The preset of experiment `name` whose config hash is `want`, or None."""
    mod = get(name)
    for preset in mod.PRESETS:
        try:
            if config_hash(mod.make_config(preset)) == want:
                return preset
        except Exception:  # noqa: BLE001 - e.g. a preset that needs a local checkpoint path
            continue
    return None
