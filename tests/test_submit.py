"""`iml submit / status / finalize` (submitit, the `cluster` extra, which dev installs: without it these fail):
the shards' result equals a serial run's under the debug and the local executor, a cancelled job's missing units
are all a resubmission computes, a preempted job requeues itself and resumes, slurm's options reach the sbatch
script, planning computes nothing, and bad input is one line with exit code 2."""
import contextlib
import fcntl
import os
import pickle
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import submitit

from iml import cli, registry
from iml.core import files, runner, submit
from iml.core.config import to_dict
from iml.core.lock import LOCK_NAME, ResultLockedError, holder, result_lock
from iml.core.results import load_dir

MNIST = ["mnist", "--preset", "smoke", "--set", "group_size=1"]
SLOW = [*MNIST, "--set", "n_seeds=4", "--set", "stage1_epochs=40"]  # 4 units of ~1.5 s: a job can be stopped mid-run


def _result(root: Path):
    return load_dir(next((root / "mnist").iterdir()))


def _serial(root: Path, argv) -> pd.DataFrame:
    assert cli.main(["run", *argv, "--root", str(root), "--quiet"]) == 0
    return _result(root).table


def _config(argv):
    args = cli.build_parser().parse_args(["status", *argv])
    return cli._experiment_config(args)


def test_the_debug_executor_gives_the_serial_result(tmp_path, capsys):
    serial = _serial(tmp_path / "serial", MNIST)
    argv = [*MNIST, "--root", str(tmp_path / "r")]
    assert cli.main(["status", *argv]) == 0
    assert "units: 0 done, 2 missing (of 2)" in capsys.readouterr().out
    assert cli.main(["submit", *argv, "--executor", "debug", "--folder", str(tmp_path / "logs"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "submitted 2 job(s) to debug: shard(s) 0/2" in out and "1/2" in out and "result: " in out
    res = _result(tmp_path / "r")
    pd.testing.assert_frame_equal(res.table, serial)
    mod, cfg = _config(argv)
    assert res.meta["units"] == submit.plan(mod, cfg, tmp_path / "r").units == ["seeds0-0", "seeds1-1"]
    assert cli.main(["status", *argv]) == 0
    out = capsys.readouterr().out
    assert "units: 2 done, 0 missing (of 2)" in out and "result: finished" in out
    assert cli.main(["submit", *argv, "--executor", "debug"]) == 0  # finished: nothing is submitted
    assert "nothing to submit" in capsys.readouterr().out


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
        except (OSError, ValueError):
            continue
    return out


def _mtimes(store, units):
    return {u: (store.unit_path(u).stat().st_mtime_ns, store.unit_path(u).with_suffix(".json").stat().st_mtime_ns)
            for u in units}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the job's process in /proc")
def test_local_jobs_cancelled_or_preempted_resume_from_their_finished_units(tmp_path, capsys):
    """Two local jobs (shard 0: seeds 0 and 2, shard 1: seeds 1 and 3). Shard 1 is preempted (SIGUSR2) after its
    first unit: it checkpoints, is requeued and computes only seeds3. Shard 0 is cancelled after its first unit;
    resubmitting submits shard 0 alone, which computes only seeds2. The result is the serial run's."""
    serial = _serial(tmp_path / "serial", SLOW)
    root = tmp_path / "r"
    mod, cfg = _config(SLOW)
    sub = submit.submit(mod, cfg, executor="local", root=root, jobs=2, folder=tmp_path / "logs")
    store, (job0, job1) = sub.plan.store, [j for _, j in sub.jobs]
    assert [i for i, _ in sub.jobs] == [0, 1] and sub.n == 2
    try:
        cancelled = preempted = None
        deadline = time.time() + 150
        while cancelled is None or preempted is None:
            assert time.time() < deadline, "the local jobs did not finish a unit"
            if cancelled is None and store.unit_done("seeds0-0"):
                job0.cancel()
                cancelled = _mtimes(store, ["seeds0-0"])
            if preempted is None and store.unit_done("seeds1-1"):
                (task,) = _children(int(job1.job_id))
                os.kill(task, signal.SIGUSR2)
                preempted = _mtimes(store, ["seeds1-1"])
            time.sleep(0.02)
        assert job1.result() == {"shard": "1/2", "result": None}  # requeued, it finished its shard
    finally:
        job0.cancel()
    while job0.state == "RUNNING":
        time.sleep(0.05)
    log = job1.stderr()  # the same shard ran twice: seeds1 once, before the signal
    assert "this job is preempted" in log and log.count("unit seeds1-1 done") == 1 and "unit seeds3-3 done" in log
    assert _mtimes(store, ["seeds1-1"]) == preempted
    assert store.unit_done("seeds3-3") and not store.unit_done("seeds2-2"), "the cancel came too late to matter"
    assert _mtimes(store, ["seeds0-0"]) == cancelled

    argv = [*SLOW, "--root", str(root)]
    assert cli.main(["status", *argv]) == 0
    out = capsys.readouterr().out
    assert "units: 3 done, 1 missing (of 4)" in out and "missing: seeds2-2" in out and "computing now: no" in out
    assert "result: not written" in out
    assert cli.main(["finalize", *argv]) == 1
    assert "1 of 4 units are missing" in capsys.readouterr().err
    before = _mtimes(store, ["seeds0-0", "seeds1-1", "seeds3-3"])
    assert cli.main(["submit", *argv, "--executor", "local", "--jobs", "2", "--folder", str(tmp_path / "logs"),
                     "--wait", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "submitted 1 job(s) to local: shard(s) 0/2" in out and "(1 of 4 units missing)" in out
    assert _mtimes(store, before) == before
    pd.testing.assert_frame_equal(_result(root).table, serial)


def test_finalize_writes_a_result_the_last_shard_did_not(tmp_path, capsys):
    """Every unit done but no results.csv (the last shard was killed before it wrote it): finalize writes it through
    the runner (with the experiment's meta) and computes nothing; status says so before."""
    argv = [*MNIST, "--root", str(tmp_path)]
    for shard in ("0/2", "1/2"):
        assert cli.main(["run", *argv, "--shard", shard, "--quiet"]) == 0
    res = _result(tmp_path)
    for f in ("results.csv", "meta.json"):
        (res.dir / f).unlink()
    store = submit.plan(*_config(argv), tmp_path).store
    units = _mtimes(store, ["seeds0-0", "seeds1-1"])
    capsys.readouterr()
    assert cli.main(["status", *argv]) == 0
    assert "every unit is done: `iml finalize`" in capsys.readouterr().out
    assert cli.main(["finalize", *argv]) == 0
    again = _result(tmp_path)
    pd.testing.assert_frame_equal(again.table, res.table)
    assert again.meta["units_computed_last_run"] == [] and "seed_epochs_per_s" in again.meta
    assert _mtimes(store, units) == units


@pytest.mark.parametrize("name", list(registry.EXPERIMENTS))
def test_planning_computes_and_writes_nothing(name, tmp_path):
    mod = registry.get(name)
    p = submit.plan(mod, mod.make_config("smoke"), tmp_path)
    assert p.units and p.store.dir.parent.parent == tmp_path and list(tmp_path.iterdir()) == []
    st = submit.status(p)
    assert st["missing"] == p.units and st["running"] is None and not st["finished"]
    assert all(getattr(m, "run_units", runner.run_units) is runner.run_units  # put back
               for m in (mod, runner))


def test_the_job_is_picklable_and_requeues_itself():
    job = submit.ShardJob("iml.mnist.experiment", {"n_seeds": 2}, "/tmp/r", (1, 2))
    assert isinstance(job, submitit.helpers.Checkpointable) and pickle.loads(pickle.dumps(job)) == job
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.function is job
    assert delayed.args == () and delayed.kwargs == {}


def test_a_shard_waits_out_another_shards_instant_exclusive_hold_but_not_a_whole_run(tmp_path):
    """A shard takes the lock exclusively for an instant (to learn whether it is alone): a shard starting then gets
    in; a run holding the lock alone refuses it."""
    import threading

    ready, go = threading.Event(), threading.Event()

    def brief():
        fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        ready.set()
        go.wait()
        time.sleep(0.1)
        fcntl.flock(fd, fcntl.LOCK_SH)  # converting: not atomic (flock(2))
        time.sleep(0.3)
        os.close(fd)

    t = threading.Thread(target=brief)
    t.start()
    ready.wait()
    go.set()
    with result_lock(tmp_path, shared=True) as alone:
        assert not alone
    t.join()
    with result_lock(tmp_path):  # a whole run
        with pytest.raises(ResultLockedError, match="another run"):
            with result_lock(tmp_path, shared=True):
                pass


def test_the_lock_holder_is_read_without_writing(tmp_path):
    assert holder(tmp_path) is None  # no lock file: nobody
    (tmp_path / "units").mkdir()  # a folder with units stays, with its lock file
    with result_lock(tmp_path):
        before = (tmp_path / LOCK_NAME).read_bytes()
        assert holder(tmp_path) == f"run (pid {os.getpid()})"
        assert (tmp_path / LOCK_NAME).read_bytes() == before
    with result_lock(tmp_path, shared=True):
        assert holder(tmp_path) == "shards"
    assert holder(tmp_path) is None


def test_slurm_options_reach_the_sbatch_script(tmp_path, monkeypatch, capsys):
    """A fake srun/sbatch on PATH: `iml submit --executor slurm` writes one array of 2 tasks, 1 at a time, with
    the partition, time, GPUs, CPUs, memory and an extra option."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/sbatch.sh\necho "Submitted batch job 4242"\n')
    for f in ("srun", "sbatch"):
        (bin_dir / f).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert cli.main(["submit", *MNIST, "--root", str(tmp_path / "r"), "--executor", "slurm",
                     "--array-parallelism", "1", "--slurm-partition", "gpu", "--slurm-time", "90",
                     "--slurm-gpus-per-node", "1", "--slurm-cpus-per-task", "4", "--slurm-mem", "32G",
                     "--slurm-additional", "account=iml", "--folder", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    assert "shard(s) 0/2 (job 4242_0), 1/2 (job 4242_1)" in out
    script = (tmp_path / "sbatch.sh").read_text().splitlines()
    for line in ("--array=0-1%1", "--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=4",
                 "--mem=32G", "--account=iml", "--job-name=iml-mnist-"):
        assert any(s.startswith(f"#SBATCH {line}") for s in script), line
    assert sys.executable in "\n".join(script)
    assert not (tmp_path / "r" / "mnist").exists()  # nothing computed here


@pytest.mark.parametrize("extra,field", [
    (["--executor", "pbs"], "--executor: unknown executor 'pbs'"),
    (["--executor", "local", "--array-parallelism", "0"], "--array-parallelism"),
    (["--executor", "local", "--array-parallelism", "two"], "--array-parallelism"),
    (["--executor", "local", "--jobs", "-1"], "--jobs"),
    (["--executor", "local", "--slurm-time", "1.5"], "--slurm-time"),
    (["--executor", "local", "--slurm-additional", "account"], "--slurm-additional"),
    (["--executor", "slurm"], "--executor: slurm: Could not detect \"srun\""),
    (["--executor", "local", "--preset", "nope"], "preset: unknown preset 'nope'"),
])
def test_bad_submit_input_is_one_line(extra, field, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no srun
    assert cli.main(["submit", *MNIST, "--root", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iml: error: ") and field in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_without_submitit_submit_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    assert cli.main(["submit", *MNIST, "--root", str(tmp_path), "--executor", "local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'iml-companion[cluster]'" in err[0]
    assert cli.main(["status", *MNIST, "--root", str(tmp_path)]) == 0  # status needs no submitit


def _documented():
    """(page, command) for every `iml submit / status / finalize` the README and the book print (continued lines
    joined); tests/test_documented_commands.py checks the other commands."""
    out = []
    for page in [files.ROOT / "README.md", *sorted((files.ROOT / "book").glob("*.md"))]:
        text = page.read_text().replace("\\\n", " ")
        for m in re.finditer(r"(?:\.venv/bin/iml|(?<![\w./-])iml)\s+(submit|status|finalize)\b([^`\n#]*)", text):
            out.append((page.name, f"{m.group(1)} {m.group(2)}".strip()))
    return out


def test_documented_submit_commands_are_valid():
    commands = [(page, line) for page, line in _documented() if len(shlex.split(line)) > 1]
    assert {line.split()[0] for _, line in commands} >= {"submit", "status"}
    for page, line in commands:
        args = cli.build_parser().parse_args(shlex.split(line))
        try:
            cli._experiment_config(args)
        except Exception as e:  # noqa: BLE001 - a preset that needs a local checkpoint is fine
            assert "model.path" in str(e), f"{page}: {line!r}: {e}"
        if args.command == "submit":
            assert args.executor in submit.EXECUTORS, f"{page}: {line!r}"
            submit.executor_parameters(array_parallelism=args.array_parallelism, timeout_min=args.slurm_time,
                                       gpus_per_node=args.slurm_gpus_per_node, cpus_per_task=args.slurm_cpus_per_task,
                                       additional=dict(cli._key_value("--slurm-additional", s)
                                                       for s in args.slurm_additional))
