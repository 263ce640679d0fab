"""The project's shape: the two README commands, CI calling exactly the test command, the conda wrapper."""
import re
import tomllib

import yaml

from iml.core.files import ROOT


def test_readme_first_commands_are_make_book_and_make_test():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    cmds = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert cmds[:2] == ["make book", "make test"]


def test_ci_runs_the_readme_test_command():
    lines = [l.strip() for l in (ROOT / ".ci/run").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert "make test" in lines


def test_environment_yml_wraps_the_pip_install():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert pip == ["-e .[dev]"]
    assert "python=3.11" in env["dependencies"]


def test_pinned_torch_and_book_versions():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in deps["dependencies"]
    assert any(d.startswith("jupyter-book>=1.0.4,<2") for d in deps["optional-dependencies"]["book"])
