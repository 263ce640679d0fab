"""The iml command: help, list, run (load path), show, and one-line errors with exit code 2."""
import re
import subprocess
import sys

import pytest

from iml.cli import main

TINY = ["--set", "data.num_ents=24", "--set", "stages.0.epochs=2", "--set", "stages.1.epochs=1",
        "--set", "seeds.n_stage1=1", "--set", "eval.sets=[test_d1consis,test_d2consis,test_qd1consis,test_qd2incons]"]


def test_help_works_without_heavy_imports():
    out = subprocess.run([sys.executable, "-m", "iml", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "run" in out.stdout and "show" in out.stdout
    for sub in ("run", "list", "show"):
        with pytest.raises(SystemExit) as e:
            main([sub, "--help"])
        assert e.value.code == 0


def test_list_shows_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "main" in out and "smoke" in out and "paper" in out


def test_bad_set_key_names_the_field(capsys):
    assert main(["run", "main", "--preset", "smoke", "--set", "data.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "data.bogus" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_value_and_unknown_preset_and_experiment(capsys):
    assert main(["run", "main", "--preset", "smoke", "--set", "stages.0.epochs=abc"]) == 2
    assert "stages[0].epochs" in capsys.readouterr().err
    assert main(["run", "main", "--preset", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["run", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert main(["run", "main", "--preset", "smoke", "--config", "/nonexistent.yaml"]) == 2
    assert "config" in capsys.readouterr().err
    assert main(["run", "main", "--preset", "paper"]) == 2
    assert "model.path" in capsys.readouterr().err


def test_run_then_show(tmp_path, capsys):
    root = str(tmp_path / "res")
    assert main(["run", "main", "--preset", "smoke", *TINY, "--root", root, "--quiet"]) == 0
    out = capsys.readouterr().out
    result_dir = out.split("result: ")[1].split()[0]
    assert re.search(r"^computed 1 unit in \d+ s$", out, re.M)  # what it did: computed, or only loaded
    assert main(["run", "main", "--preset", "smoke", *TINY, "--root", root, "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"loaded existing result {result_dir}: computed nothing")
    assert main(["show", result_dir]) == 0
    shown = capsys.readouterr().out
    assert "d1consis" in shown and "qd1consis" in shown
    assert main(["show", str(tmp_path)]) == 2
    capsys.readouterr()
    assert main(["show", result_dir, "--epoch", "999"]) == 2  # an epoch the result does not have: say so
    err = capsys.readouterr().err
    assert "--epoch 999: the result has no such epoch" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("experiment", ["mnist", "setinclusion", "probe"])
def test_every_experiment_reads_a_config_file_and_refuses_a_list(experiment, tmp_path, capsys):
    """One make_config for all: a YAML --config works everywhere; a YAML list is one line naming the file."""
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    assert main(["run", experiment, "--preset", "smoke", "--config", str(bad), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "config:" in err and "mapping" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA message")
@pytest.mark.parametrize("experiment,key", [("mnist", "device"), ("probe", "task.device"),
                                            ("main", "train.device")])
def test_a_missing_cuda_device_is_one_line_naming_the_field(experiment, key, tmp_path, capsys):
    extra = TINY if experiment == "main" else []
    assert main(["run", experiment, "--preset", "smoke", *extra, "--set", f"{key}=cuda", "--root", str(tmp_path),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{key}:" in err and "CUDA" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("results.csv"))  # nothing finalized


def test_an_infinite_learning_rate_is_refused(capsys):
    assert main(["run", "main", "--preset", "smoke", "--set", "stages.0.lr=.inf"]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and "finite" in err


def test_forced_kernels_the_cpu_lacks_are_one_line_not_a_crash(monkeypatch, capsys):
    """ATEN_CPU_CAPABILITY=avx512 on a CPU without AVX-512 kills torch with SIGILL at the first kernel: say so."""
    from iml.core import env

    zen3 = ["fpu", "sse2", "avx", "avx2", "fma"]
    assert "no avx512f" in env.capability_problem("avx512", zen3) and "avx2 or default" in env.capability_problem(
        "avx512", zen3)
    assert env.capability_problem("avx512", zen3 + ["avx512f"]) is None
    assert env.capability_problem("default", zen3) is None and env.capability_problem("", zen3) is None
    monkeypatch.setattr(env, "capability_problem", lambda: "ATEN_CPU_CAPABILITY=avx512 asks for AVX512 kernels")
    assert main(["list"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_iml_list_describes_every_preset(capsys):
    """Every preset of every experiment has its one-line description in `iml list`, and every sweep is listed."""
    from iml import registry

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, mod in registry.EXPERIMENTS.items():
        for preset in mod.PRESETS:
            assert mod.PRESET_NOTES.get(preset), f"{name} preset {preset} has no note"
            assert f"    {preset:<14} {mod.PRESET_NOTES[preset]}" in out
    for name in registry.SWEEPS:
        assert f"    {name}" in out


def test_show_gives_the_paper_notation_and_value_beside_ours(capsys):
    """`iml show` names each comparison in the paper's notation and prints the paper's value (or says it has
    none) beside ours: the committed gpu headline's entity-association EM gap, which the paper reads as +0.11."""
    from iml.core import files, paper

    assert main(["show", str(files.RESULTS_DIR / "main" / "48307769fd7a")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "comparison" in lines[1] and lines[1].rstrip().endswith("paper")
    row = next(ln for ln in lines if "ent_assoc_name_d1consis" in ln and " EM " in ln)
    want = paper.paper_gap("main", "ent_assoc_name_d1consis", "ent_assoc_name_d2consis", "EM")[0]
    assert row.split()[-1] == f"{want:+.2f}"
    assert f"{paper.symbol('d1consis')} − {paper.symbol('d2consis')}" in row
    assert any(ln.rstrip().endswith("no number") for ln in lines[2:])
