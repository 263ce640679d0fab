"""iml.report.notebook.parameters: the figure notebooks' parameters as papermill passes them (text) or as Python."""
import json
from pathlib import Path

import pytest

from iml.core.config import ConfigError
from iml.report import notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("overrides, expected", [
    ({}, {}),
    ({"seeds.n_stage1": 3}, {"seeds.n_stage1": 3}),
    (None, {}),
    ("", {}),
    ("  ", {}),
    ('{"seeds.n_stage1": 3}', {"seeds.n_stage1": 3}),                     # JSON text (papermill -p)
    ('{"n_seeds": 2, "draws": 1, "at": "all"}', {"n_seeds": 2, "draws": 1, "at": "all"}),
    ("n_seeds: 2\nlr: 1e-3", {"n_seeds": 2, "lr": "1e-3"}),                # YAML text; make_config fixes 1e-3
    ("{task.n_seeds: 2, stages: [3, 4]}", {"task.n_seeds": 2, "stages": [3, 4]}),
])
def test_overrides(overrides, expected):
    preset, got, force = notebook.parameters("cpu", overrides, False)
    assert (preset, got, force) == ("cpu", expected, False) and type(got) is dict


@pytest.mark.parametrize("force, expected", [
    (False, False), (True, True), ("false", False), ("False", False), ("FALSE", False), ("no", False),
    ("0", False), (0, False), ("true", True), ("True", True), ("yes", True), (" YES ", True), ("1", True), (1, True),
])
def test_force(force, expected):
    assert notebook.parameters("cpu", {}, force)[2] is expected


@pytest.mark.parametrize("args, field", [
    (("cpu", "[1, 2]", False), "overrides"),        # YAML, but not a mapping
    (("cpu", "seeds.n_stage1=3", False), "overrides"),  # a plain word: not a mapping
    (("cpu", '{"a": 1', False), "overrides"),       # not valid JSON/YAML
    (("cpu", ["a"], False), "overrides"),
    (("cpu", 3, False), "overrides"),
    (("cpu", {}, "maybe"), "force"),
    (("cpu", {}, ""), "force"),
    (("cpu", {}, 2), "force"),
    (("cpu", {}, None), "force"),
    (("", {}, False), "preset"),
    ((None, {}, False), "preset"),
    ((1, {}, False), "preset"),
])
def test_bad_values_name_the_parameter(args, field):
    with pytest.raises(ConfigError) as ei:
        notebook.parameters(*args)
    assert ei.value.field == field and str(ei.value).startswith(field + ": ") and "\n" not in str(ei.value)


def test_overrides_parameter_names_its_field():
    assert notebook.overrides_parameter('{"n_seeds": 1}', "lm_overrides") == {"n_seeds": 1}
    with pytest.raises(ConfigError) as ei:
        notebook.overrides_parameter("[1]", "lm_overrides")
    assert ei.value.field == "lm_overrides"


def test_text_overrides_reach_make_config():
    from iml import registry

    _, overrides, _ = notebook.parameters("smoke", '{"seeds.n_stage1": 3}', "false")
    assert registry.get("main").make_config("smoke", overrides).seeds.n_stage1 == 3


def test_every_notebook_passes_its_parameters_through_the_helper():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        code = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        src = next(src for src in code if "force=force" in src)  # the cell that uses the parameters
        call = "preset, overrides, force = iml.report.notebook.parameters(preset, overrides, force)"
        first_use = min(src.index(k) for k in ("make_config(", "run_sweep(") if k in src)
        assert call in src and src.index(call) < first_use, path.name
