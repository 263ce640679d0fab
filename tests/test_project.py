"""The project's shape: the two README commands, CI calling exactly the test command, the conda wrapper, version
ranges in pyproject.toml with the exact tested versions in constraints.txt, the licence and the citation file."""
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
    assert pip == ["-c constraints.txt", "-e .[dev]"]
    assert "python=3.11" in env["dependencies"]


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string (``Foo_Bar[x]>=1`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version.strip() and not re.search(r"[<>=!~;, ]", version.strip()), \
                f"constraints.txt: {line!r} is not an exact pin"
            assert _name(name) not in pins, f"constraints.txt pins {name} twice"
            pins[_name(name)] = version.strip()
    return pins


def test_dependencies_are_ranges_and_constraints_pin_each_exactly():
    deps = PROJECT["project"]["dependencies"]
    assert not [d for d in deps if "==" in d or "===" in d], "exact pins belong in constraints.txt"
    extras = PROJECT["project"]["optional-dependencies"]
    pins = _constraints()
    own = _name(PROJECT["project"]["name"])
    wanted = {_name(d) for d in deps} | {_name(d) for reqs in extras.values() for d in reqs if _name(d) != own}
    assert not sorted(wanted - set(pins)), "every runtime and extra dependency needs its tested version pinned"
    assert pins["torch"] == "2.13.0" and "jupyter-book>=1.0.4,<2" in extras["book"]
    assert set(extras["dev"][0].split("[")[1].rstrip("]").split(",")) >= {"book", "gguf", "hf"}


def test_installed_versions_are_the_pinned_ones():
    """`make setup` installs with constraints.txt; a venv that drifted from it fails here (local labels such as
    torch's +cpu are ignored, as pip does)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = _constraints()
    runtime = {_name(d) for d in PROJECT["project"]["dependencies"]}
    for name in sorted(runtime):
        try:
            have = version(name)
        except PackageNotFoundError:
            continue  # not installed in this environment
        assert have.split("+")[0] == pins[name], f"{name} {have} installed, constraints.txt pins {pins[name]}"


def test_make_setup_installs_with_the_constraints():
    make = (ROOT / "Makefile").read_text()
    assert "pip install -q -c constraints.txt -e '.[dev]'" in make
    assert re.search(r"^\$\(STAMP\): pyproject.toml constraints.txt$", make, re.M)
    assert "setuptools>=77" in PROJECT["build-system"]["requires"][0]


def test_seaborn_is_gone_and_datasets_is_an_extra():
    deps = PROJECT["project"]["dependencies"]
    extras = PROJECT["project"]["optional-dependencies"]
    assert "seaborn" not in {_name(d) for d in deps} | {_name(d) for r in extras.values() for d in r}
    assert "datasets" not in {_name(d) for d in deps} and "datasets" in {_name(d) for d in extras["hf"]}
    code = [p for d in ("lib", "scripts", "benchmarks", "tests", "notebooks") for p in (ROOT / d).rglob("*")
            if p.suffix in (".py", ".ipynb")]
    assert code and not [p for p in code if re.search(r"(import|from) seaborn", p.read_text(errors="replace"))]


def test_cluster_requirements_are_lean():
    reqs = [l.split("#")[0].strip() for l in (ROOT / "requirements-cluster.txt").read_text().splitlines()]
    names = {_name(r) for r in reqs if r}
    assert {"torch", "transformers", "numpy", "pandas", "safetensors", "pyyaml", "scipy", "tqdm", "submitit"} <= names
    assert not names & {"jupyter-book", "papermill", "ipywidgets", "nbval", "matplotlib", "datasets", "pytest"}
    assert names <= set(_constraints()), "every cluster requirement has its tested version in constraints.txt"


def test_license_and_citation():
    lic = (ROOT / "LICENSE").read_text()
    assert lic.startswith("MIT License") and "Copyright (c) 2026 The IML companion authors" in lic
    assert PROJECT["project"]["license"] == "MIT"
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["authors"] and cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Implicit meta-learning may lead language models to trust more reliable sources"
    assert [a["family-names"] for a in paper["authors"]] == ["Krasheninnikov", "Krasheninnikov", "Mlodozeniec",
                                                              "Maharaj", "Krueger"]
    assert paper["year"] == 2024 and any("2310.15047" in i["value"] for i in paper["identifiers"])
    assert any("2310.15047" in i["value"] for r in cff["references"] for i in r["identifiers"])
