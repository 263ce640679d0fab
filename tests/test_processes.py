"""Processes and locks: a sweep's workers die with it, one run computes a result folder at a time (a second is
refused with one line, --force too, finished results load without the lock), and a killed run's temporary files
are removed by the next run."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from iml import cli, registry
from iml.core import files, runner
from iml.core.lock import LOCK_NAME, ResultLockedError, result_lock
from iml.core.results import COLUMNS, ResultStore, load
from iml.core.runner import Job, run_units
from iml.mnist import batch_size

HAVE_PROC = Path("/proc/self/stat").exists()

SWEEP_DRIVER = textwrap.dedent('''
    import os, sys, time, types
    from pathlib import Path
    from iml.core import sweep
    sys.modules["torch"] = types.SimpleNamespace(set_num_threads=lambda n: None)  # workers that need no real one

    OUT = Path(os.environ["IML_TEST_OUT"])
    if os.environ.get("IML_TEST_NO_PRCTL"):  # spawned workers run this too: the portable fallback alone
        sweep._kernel_kills_with_parent = lambda: False

    def slow_run(cfg, root=None, force=False, progress=True):
        (OUT / f"worker-{os.getpid()}").write_text("")
        time.sleep(60)

    if __name__ == "__main__":
        sweep.run_points(slow_run, "toy", [{"i": 0}, {"i": 1}], root=OUT / "results", workers=2, progress=False)
''')

LOCK_HOLDER = textwrap.dedent('''
    import sys, time
    from iml.core.lock import result_lock
    with result_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
''')


def _start_time(pid: int) -> str | None:
    """The process's start time (from /proc), or None if it is gone or a zombie (dead, not yet reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc")
@pytest.mark.parametrize("fallback", [False, True], ids=["prctl", "watcher-thread"])
def test_sweep_workers_die_when_the_sweep_is_killed(tmp_path, fallback):
    """kill -9 of a sweep's process leaves no worker computing on: within 10 s both are gone."""
    driver = tmp_path / "driver.py"
    driver.write_text(SWEEP_DRIVER)
    env = {**os.environ, "IML_TEST_OUT": str(tmp_path)}
    if fallback:
        env["IML_TEST_NO_PRCTL"] = "1"
    parent = subprocess.Popen([sys.executable, str(driver)], env=env, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        deadline = time.time() + 60
        while len(pids) < 2:
            assert parent.poll() is None, f"the sweep ended early: {parent.stderr.read()}"
            assert time.time() < deadline, "the sweep's workers did not start"
            time.sleep(0.1)
            pids = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        started = {pid: _start_time(pid) for pid in pids}
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 10
        while (left := [p for p, t in started.items() if t is not None and _start_time(p) == t]) \
                and time.time() < deadline:
            time.sleep(0.1)
        assert not left, f"workers {left} outlived the killed sweep"
    finally:
        parent.kill()
        parent.wait()
        for pid in pids:  # a failed check must not leave them behind either
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _table(seed: int) -> pd.DataFrame:
    return pd.DataFrame([(f"s{seed}", seed, 0, 1, 1, "d1consis", "acc", 0.5)], columns=COLUMNS)


def _jobs(calls: list, n: int = 3) -> list[Job]:
    def compute(seed):
        def run(todo):
            calls.append(seed)
            yield from ((u, _table(seed), {"wall_time_s": 1.0}) for u in todo)
        return run
    return [Job((f"u{s}",), compute(s), key=s) for s in range(n)]


CFG = {"n": 3}


def test_a_second_run_of_the_same_config_is_refused_until_the_first_one_ends(results_root):
    """Another process holds the lock: run_units raises ResultLockedError naming the folder and its pid, with
    --force too, and computes nothing; once that process is killed (-9: the kernel frees the lock) it runs."""
    folder = ResultStore("toy", CFG, root=results_root).dir
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        calls = []
        for force in (False, True):
            with pytest.raises(ResultLockedError, match=f"another run \\(pid {holder.pid}\\) is computing") as e:
                run_units("toy", CFG, _jobs(calls), root=results_root, force=force, progress=False)
            assert str(folder) in str(e.value) and isinstance(e.value, RuntimeError)
        assert calls == [] and (folder / LOCK_NAME).read_text().strip() == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()
    res = run_units("toy", CFG, _jobs(calls), root=results_root, progress=False)
    assert calls == [0, 1, 2] and res is not None and res.meta["units"] == ["u0", "u1", "u2"]


def test_the_command_line_says_so_in_one_line(results_root, capsys, monkeypatch):
    """`iml run` and `iml sweep` on a locked result folder: one `iml: error:` line, exit code 2; and `iml run`
    whose run() returns no result says so in one line too instead of crashing."""
    mod = registry.get("mnist")
    root = str(results_root)
    run_dir = ResultStore(mod.EXPERIMENT, mod.make_config("smoke"), root=root).dir
    sweep_dir = ResultStore(batch_size.EXPERIMENT, batch_size.configs("smoke")[0], root=root).dir
    for argv, folder in [(["run", "mnist", "--preset", "smoke"], run_dir),
                         (["run", "mnist", "--preset", "smoke", "--force"], run_dir),
                         (["sweep", "batch_size", "--sweep", "smoke"], sweep_dir)]:
        with result_lock(folder):
            assert cli.main([*argv, "--root", root, "--quiet"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("iml: error:") and f"pid {os.getpid()}" in err[0], argv
    monkeypatch.setattr(mod, "run", lambda *a, **k: None)
    assert cli.main(["run", "mnist", "--preset", "smoke", "--root", root, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iml: error:") and str(run_dir) in err[0]


def test_a_finished_result_loads_without_the_lock(results_root, monkeypatch):
    """Loading is read-only: it takes no lock, so a committed result loads from a read-only checkout."""
    calls = []
    res = run_units("toy", CFG, _jobs(calls), root=results_root, progress=False)

    def no_lock(*a, **k):
        raise AssertionError("loading took the lock")
    monkeypatch.setattr(runner, "result_lock", no_lock)
    assert run_units("toy", CFG, _jobs(calls), root=results_root, progress=False).hash == res.hash
    with pytest.raises(AssertionError, match="took the lock"):  # the check can fail: computing takes it
        run_units("toy", CFG, _jobs(calls), root=results_root, force=True, progress=False)
    monkeypatch.undo()
    if os.geteuid() == 0:
        return  # root ignores file modes: the read-only folder below would prove nothing
    dirs = [res.dir / "units", res.dir, res.dir.parent]
    try:
        for d in dirs:
            d.chmod(0o555)
        assert run_units("toy", CFG, _jobs(calls), root=results_root, progress=False).hash == res.hash
        assert load("toy", CFG, root=results_root).hash == res.hash and calls == [0, 1, 2]
    finally:
        for d in dirs:
            d.chmod(0o755)


def test_a_killed_runs_temporary_files_are_removed_when_a_run_takes_the_lock(results_root):
    """`.<name>.XXXX.tmp` files in the folder and its units/ are leftovers once the lock is held by one run alone:
    it deletes them. Shards of one config share the lock (and leave the files to the run that is alone), and a
    whole run is refused while a shard computes."""
    store = ResultStore("toy", CFG, root=results_root)
    store.save_unit("u1", _table(1), {})  # a unit the killed run had finished
    stale = [store.units_dir / ".u2.csv.k1ll3d.tmp", store.dir / ".results.csv.k1ll3d.tmp"]
    for p in stale:
        p.write_text("half")
    calls = []
    with result_lock(store.dir, shared=True):  # another shard of the same config is computing
        assert run_units("toy", CFG, _jobs(calls), root=results_root, only=[0], progress=False) is None
        assert calls == [0] and all(p.exists() for p in stale)
        with pytest.raises(ResultLockedError):
            run_units("toy", CFG, _jobs(calls), root=results_root, progress=False)
    res = run_units("toy", CFG, _jobs(calls), root=results_root, progress=False)
    assert calls == [0, 2] and res.meta["units"] == ["u0", "u1", "u2"]
    assert not any(p.exists() for p in stale) and not list(store.dir.rglob("*.tmp"))
    assert (store.units_dir / "u1.csv").exists()  # finished units are kept


def test_the_lock_file_is_git_ignored():
    """A result folder's `.lock` must not show up in `git status` of a checkout that computed results."""
    if not (files.ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    probe = files.ROOT / "results" / "toy" / "0123abcd" / LOCK_NAME
    assert subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=files.ROOT).returncode == 0
