"""The experiments the CLI and the book know, by name.

Each experiment module exposes the same small interface, so `iml run`, `iml list` and the notebooks
treat them alike:

* ``EXPERIMENT``: its name (the folder under ``results/``);
* ``Config``: its dataclass config (paper defaults), built with :func:`iml.core.config.from_dict`;
* ``PRESETS``: preset name (``smoke``, ``cpu``, ``gpu``, ``paper``) -> dict of config overrides;
* ``make_config(preset="cpu", overrides=None) -> Config``;
* ``run(config, *, root=None, force=False, progress=True) -> iml.core.results.Result``: reuses finished
  results whose config hash matches and computes what is missing (resuming finished units).
"""
from __future__ import annotations

import importlib

EXPERIMENTS: dict[str, str] = {
    "main": "iml.lm.experiment",
    "setinclusion": "iml.scratch.set_inclusion",
    "mnist": "iml.mnist.grid",
    "gradalign": "iml.mnist.gradient_alignment",
    "probe": "iml.mnist.probes",
}


def get(name: str):
    """The module of experiment `name` (raises ValueError listing the known ones)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])


def preset_of(name: str, config) -> str | None:
    """The preset of experiment `name` whose config hashes like `config` (a dict or dataclass), or None.

    Results do not store the preset they were made with (a preset is just a named config); this recovers it
    for captions, so a figure can say "cpu preset" only when the config really is that preset's.
    """
    from iml.core.config import config_hash

    return preset_of_hash(name, config_hash(config))


def preset_of_hash(name: str, want: str) -> str | None:
    """The preset of experiment `name` whose config hash is `want`, or None."""
    from iml.core.config import config_hash

    mod = get(name)
    for preset in mod.PRESETS:
        try:
            if config_hash(mod.make_config(preset)) == want:
                return preset
        except Exception:  # noqa: BLE001 - e.g. a preset that needs a local checkpoint path
            continue
    return None
