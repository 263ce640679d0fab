"""The iml command: help, list, run (load path), show, and one-line errors with exit code 2."""
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
    assert main(["show", result_dir]) == 0
    shown = capsys.readouterr().out
    assert "d1consis" in shown and "qd1consis" in shown
    assert main(["show", str(tmp_path)]) == 2
