"""The one unit runner (iml.core.runner) and the one override dialect (iml.core.config.build), as every experiment
uses them: resume from finished units, recompute on force without deleting, shards, and one make_config signature."""
import dataclasses

import pandas as pd
import pytest

from iml import registry
from iml.core.config import ConfigError, apply_overrides, build, config_hash, parse_override
from iml.core.results import COLUMNS, ResultStore
from iml.core.runner import Job, as_config, run_units


@dataclasses.dataclass
class Cfg:
    n: int = 3
    lr: float = 0.1


def _table(seed: int, value: float) -> pd.DataFrame:
    return pd.DataFrame([(f"s{seed}", seed, 0, 1, 1, "d1consis", "acc", value)], columns=COLUMNS)


def _jobs(cfg, calls):
    def compute(seed):
        def run(todo):
            calls.append((seed, tuple(todo)))
            yield from ((u, _table(seed, 0.5), {"wall_time_s": 1.0}) for u in todo)
        return run
    return [Job((f"u{s}",), compute(s), key=s) for s in range(cfg.n)]


def test_a_finished_result_is_loaded_and_a_killed_run_resumes(results_root):
    cfg, calls = Cfg(), []
    store = ResultStore("toy", cfg, root=results_root)
    store.save_unit("u1", _table(1, 0.5), {})  # a unit a killed run had finished
    res = run_units("toy", cfg, _jobs(cfg, calls), root=results_root, progress=False)
    assert calls == [(0, ("u0",)), (2, ("u2",))]  # u1 is not recomputed
    assert res.meta["units"] == ["u0", "u1", "u2"] and res.meta["units_computed_last_run"] == ["u0", "u2"]
    calls.clear()
    again = run_units("toy", cfg, _jobs(cfg, calls), root=results_root, progress=False)
    assert calls == [] and again.hash == res.hash == config_hash(cfg)


def test_force_recomputes_every_unit_without_deleting_the_folder(results_root):
    cfg, calls = Cfg(), []
    run_units("toy", cfg, _jobs(cfg, calls), root=results_root, progress=False)
    stray = ResultStore("toy", cfg, root=results_root).dir / "units" / "other.csv"
    stray.write_text("kept")  # e.g. a unit another run of the same config is writing
    calls.clear()
    run_units("toy", cfg, _jobs(cfg, calls), root=results_root, force=True, progress=False)
    assert [c[0] for c in calls] == [0, 1, 2] and stray.read_text() == "kept"


def test_a_shard_writes_its_units_and_returns_none_until_all_are_done(results_root):
    cfg, calls = Cfg(), []
    assert run_units("toy", cfg, _jobs(cfg, calls), root=results_root, only=[0, 2], progress=False) is None
    assert [c[0] for c in calls] == [0, 2]
    res = run_units("toy", cfg, _jobs(cfg, calls), root=results_root, only=[1], progress=False)
    assert res is not None and [c[0] for c in calls] == [0, 2, 1]


def test_a_wrong_config_type_is_one_type_error_everywhere():
    assert as_config(Cfg, {"n": 2}, "toy") == Cfg(n=2)
    for name in registry.EXPERIMENTS:
        mod = registry.get(name)
        with pytest.raises(TypeError, match=f"{name}: config must be"):
            mod.run(Cfg(), progress=False)


def test_every_experiment_takes_the_same_make_config(tmp_path):
    """preset, dotted overrides and a YAML --config file, in that order, for every experiment."""
    keys = {"main": "seeds.n_stage1", "setinclusion": "n_seeds", "mnist": "n_seeds", "gradalign": "task.n_seeds",
            "probe": "task.n_seeds"}
    for name, key in keys.items():
        mod = registry.get(name)
        f = tmp_path / f"{name}.yaml"
        head, *rest = key.split(".")
        f.write_text(f"{head}: 3\n" if not rest else f"{head}:\n  {rest[0]}: 3\n")
        a = mod.make_config("smoke", config_file=f)
        b = mod.make_config("smoke", {key: 3})
        assert config_hash(a) == config_hash(b), name
        assert config_hash(mod.make_config("smoke", {key: 4}, config_file=f)) != config_hash(a)  # --set wins
        with pytest.raises(ConfigError, match="preset"):
            mod.make_config("no-such-preset")


def test_the_override_dialect():
    d = {"stages": [{"epochs": 3}, {"epochs": 5}], "data": {"num": 1, "x": {"y": 2}}}
    out = apply_overrides(d, {"stages.1.epochs": "1e-3", "data": {"x": {"z": 1}}})
    assert out["stages"][1]["epochs"] == 0.001  # YAML 1.1's string "1e-3" is a number
    assert out["data"] == {"num": 1, "x": {"y": 2, "z": 1}}  # a mapping is merged, not replaced
    assert d["stages"][1]["epochs"] == 5  # the input is not modified
    with pytest.raises(ConfigError, match="stages.x"):
        apply_overrides(d, {"stages.x.epochs": 1})
    with pytest.raises(ConfigError, match="stages.7"):
        apply_overrides(d, {"stages.7.epochs": 1})
    assert parse_override("a.b=1e-4") == ("a.b", 1e-4) and parse_override("a=[1, 2]") == ("a", [1, 2])
    assert build(Cfg, {"p": {"n": 5}}, "p", {"lr": "2e-1"}) == Cfg(n=5, lr=0.2)


def test_without_a_root_committed_results_are_read_and_new_ones_go_to_runs(tmp_path, monkeypatch):
    """A reader's ad-hoc run never writes into the committed results/: without a root, a result finished there is
    loaded (nothing written), anything else is computed into the git-ignored runs/, and load() finds both."""
    from iml.core import files, results

    committed, runs = tmp_path / "results", tmp_path / "runs"
    monkeypatch.setattr(files, "RESULTS_DIR", committed)
    monkeypatch.setattr(files, "RUNS_DIR", runs)
    done, calls = Cfg(n=1), []
    run_units("toy", done, _jobs(done, calls), root=committed, progress=False)  # a committed result
    before = sorted(p for p in committed.rglob("*"))
    res = run_units("toy", done, _jobs(done, calls), progress=False)
    assert res.dir.parent.parent == committed and len(calls) == 1 and sorted(committed.rglob("*")) == before
    new = Cfg(n=2)
    res = run_units("toy", new, _jobs(new, calls), progress=False)
    assert res.dir.parent.parent == runs and len(calls) == 3
    assert sorted(committed.rglob("*")) == before
    assert results.load("toy", new).dir == res.dir and results.load("toy", done).dir.parent.parent == committed
    forced = run_units("toy", done, _jobs(done, calls), progress=False, force=True)  # --force recomputes in runs/
    assert forced.dir.parent.parent == runs and sorted(committed.rglob("*")) == before


def test_shards_compute_disjoint_jobs_and_the_last_one_writes_the_result(results_root):
    cfg, calls = Cfg(n=5), []
    assert run_units("toy", cfg, _jobs(cfg, calls), root=results_root, progress=False, shard=(1, 2)) is None
    assert [s for s, _ in calls] == [1, 3]
    res = run_units("toy", cfg, _jobs(cfg, calls), root=results_root, progress=False, shard=(0, 2))
    assert [s for s, _ in calls] == [1, 3, 0, 2, 4] and res.meta["units"] == [f"u{s}" for s in range(5)]
    with pytest.raises(ConfigError, match="shard"):
        run_units("toy", Cfg(n=2), _jobs(Cfg(n=2), []), root=results_root, shard=(2, 2))


def test_iml_run_shard_equals_a_serial_run(tmp_path, capsys):
    """`iml run --shard I/N` (one SLURM array task each): the shards' result is the serial run's, row for row."""
    from iml import cli
    from iml.core import results

    args = ["run", "mnist", "--preset", "smoke", "--set", "group_size=1", "--quiet"]
    assert cli.main(args + ["--root", str(tmp_path / "serial")]) == 0
    assert cli.main(args + ["--root", str(tmp_path / "sharded"), "--shard", "1/2"]) == 0
    assert "shard 1/2 done" in capsys.readouterr().out
    assert cli.main(args + ["--root", str(tmp_path / "sharded"), "--shard", "0/2"]) == 0
    serial, sharded = (results.load_dir(next((tmp_path / r / "mnist").iterdir())) for r in ("serial", "sharded"))
    assert serial.hash == sharded.hash
    pd.testing.assert_frame_equal(serial.table, sharded.table)


def test_the_slurm_array_script_runs_one_shard_per_task(tmp_path):
    """scripts/slurm_array.sh as two array tasks would run it: the second task to finish writes the result."""
    import os
    import subprocess

    from iml.core import files, results

    script = files.ROOT / "scripts" / "slurm_array.sh"
    for task in (1, 0):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "2", "OMP_NUM_THREADS": "1"}
        out = subprocess.run(["bash", str(script), "mnist", "--preset", "smoke", "--set", "group_size=1", "--quiet",
                              "--root", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
    res = results.load_dir(next((tmp_path / "mnist").iterdir()))
    assert len(res.meta["units"]) == 2 and set(res.table["seed_stage1"]) == {0, 1}
    bad = subprocess.run(["bash", str(script), "mnist"], env={k: v for k, v in os.environ.items()
                                                             if not k.startswith("SLURM_")}, capture_output=True, text=True)
    assert bad.returncode != 0 and "SLURM_ARRAY_TASK_ID" in bad.stderr
