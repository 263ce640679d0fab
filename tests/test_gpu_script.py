"""The one prepared GPU script runs every job end to end at the smoke preset on CPU (what the GPU run will do,
at seconds' scale), packs the result folders, and records each job's outcome."""
import json
import os
import subprocess
import sys
import tarfile

from iml.core.files import ROOT


def test_gpu_script_at_smoke_scale(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"), OMP_NUM_THREADS="1", IML_GIT_REVISION="test-rev")
    p = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_run.py"), "--out", str(out), "--preset", "smoke",
                        "--device", "cpu", "--only", "setinclusion,mnist"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    jobs = summary["jobs"]
    assert [j["experiment"] for j in jobs] == ["setinclusion", "mnist", "setinclusion"]
    assert all(j["ok"] for j in jobs)
    assert jobs[0]["config"]["loss_on"] == "answer" and jobs[2]["config"]["loss_on"] == "all"
    with tarfile.open(out / "results.tgz") as tar:
        names = tar.getnames()
    for j in jobs:
        rel = j["result_dir"].removeprefix("results/")
        assert f"results/{rel}/results.csv" in names and f"results/{rel}/meta.json" in names
    meta = json.loads((out / j["result_dir"] / "meta.json").read_text())
    assert meta["git_revision"] == "test-rev"


def test_gpu_script_runs_the_sweeps(tmp_path):
    """The sweep jobs: the batch-size sweeps give one MNIST result per batch size and design, the
    gradient-alignment sweep one gradalign result per batch size, the α sweep one MNIST result per α; all packed."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"), OMP_NUM_THREADS="1", IML_GIT_REVISION="test-rev")
    p = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_run.py"), "--out", str(out), "--preset", "smoke",
                        "--device", "cpu", "--only", "batch_size,gradalign,alpha"], capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    job, ga, al = json.loads((out / "summary.json").read_text())["jobs"]
    assert al["experiment"] == "alpha" and al["ok"] and sorted(m["alpha"] for m in al["meta"].values()) == [0.5, 1]
    assert job["experiment"] == "batch_size" and job["ok"] and len(job["result_dirs"]) == 4
    assert sorted((m["joint"], m["batch_size"]) for m in job["meta"].values()) == [
        (False, 8), (False, 32), (True, 8), (True, 32)]  # both designs
    assert ga["experiment"] == "gradalign" and ga["ok"] and all(d.startswith("results/gradalign/")
                                                                for d in ga["result_dirs"])
    assert sorted(m["batch_size"] for m in ga["meta"].values()) == [8, 32]
    with tarfile.open(out / "results.tgz") as tar:
        names = tar.getnames()
    assert all(f"{d}/results.csv" in names for d in job["result_dirs"] + ga["result_dirs"] + al["result_dirs"])


def test_gpu_script_reports_a_failing_job(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_run.py"), "--out", str(out), "--preset", "smoke",
                        "--device", "cpu", "--only", "mnist", "--set", "mnist:n_seeds=-1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1
    job = json.loads((out / "summary.json").read_text())["jobs"][0]
    assert not job["ok"] and "n_seeds" in job["error"]


def test_gpu_script_main_over_workers_with_a_deadline(tmp_path):
    """--workers splits the main experiment's stage-1 seeds over processes; a deadline that leaves time
    for one seed per process keeps the first seeds and saves them as the config with that many seeds."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"), OMP_NUM_THREADS="1", IML_GIT_REVISION="test-rev")
    p = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_run.py"), "--out", str(out), "--preset", "smoke",
                        "--device", "cpu", "--only", "main", "--workers", "2", "--deadline", "1",
                        "--set", "main:seeds.n_stage1=4", "--set", "main:data.num_ents=24",
                        "--set", "main:stages.0.epochs=2", "--set", "main:stages.1.epochs=1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    job = json.loads((out / "summary.json").read_text())["jobs"][0]
    assert job["ok"] and job["workers"] == 2 and job["planned_n_stage1"] == 4
    meta = json.loads((out / job["result_dir"] / "meta.json").read_text())
    cfg = json.loads((out / job["result_dir"] / "config.json").read_text())
    # each process finished its first seed (0 and 1) and started no second one past the deadline
    assert cfg["seeds"]["n_stage1"] == 2 and meta["planned_n_stage1"] == 4 and meta["workers"] == 2
    assert meta["git_revision"] == "test-rev"
    with tarfile.open(out / "results.tgz") as tar:
        assert f"{job['result_dir']}/results.csv" in tar.getnames()


def test_gpu_session_calls_at_smoke_scale(tmp_path):
    """scripts/gpu_session.sh: call one starts MNIST in the background and returns; call two starts the main
    experiment in the background over worker processes and packs what exists when its wait ends (here at
    once: exit 4, still running); call three waits again and packs the finished run. $OUT holds at most 8
    plain files (what the device tool brings back)."""
    out, stash = tmp_path / "out", tmp_path / "stash"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, GPU_PRESET="smoke", GPU_DEVICE="cpu",
               GPU_STASH=str(stash), GPU_CARRY=str(tmp_path / "nothing"), GPU_ONE_WAIT="0", GPU_BG_WAIT="300",
               OUT=str(out), IML_GIT_REVISION="rev-one",
               GPU_SET="--set main:seeds.n_stage1=2 --set main:data.num_ents=24 --set main:stages.0.epochs=2 "
                       "--set main:stages.1.epochs=1")
    script = str(ROOT / "scripts/gpu_session.sh")
    one = subprocess.run(["bash", script, "one"], capture_output=True, text=True, env=env, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    assert "torch" in one.stdout
    two = subprocess.run(["bash", script, "two", "rev-two", "600", "2"], capture_output=True, text=True,
                         env={**env, "GPU_WAIT": "0"}, timeout=600)
    assert two.returncode == 4 and "still running" in two.stdout, two.stdout[-2000:] + two.stderr[-2000:]
    assert (out / "results.tgz").exists()
    for f in out.iterdir():
        f.unlink()  # $OUT is emptied before each call
    three = subprocess.run(["bash", script, "three"], capture_output=True, text=True,
                           env={**env, "GPU_WAIT": "500"}, timeout=600)
    assert three.returncode == 0 and "main finished (exit 0)" in three.stdout, three.stdout[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert all((out / f).is_file() for f in files) and len(files) <= 8, files
    assert {"results.tgz", "summary.json", "bg_summary.json", "workers.log", "main.log", "bg.log"} <= set(files)
    with tarfile.open(out / "results.tgz") as tar:
        metas = {n.split("/")[1]: json.load(tar.extractfile(n)) for n in tar.getnames() if n.endswith("meta.json")}
    assert set(metas) == {"main", "mnist"}
    assert metas["main"]["git_revision"] == "rev-two" and metas["main"]["workers"] == 2
    assert metas["mnist"]["git_revision"] == "rev-one"


def test_gpu_script_resumes_committed_units(tmp_path):
    """Units of the same config committed under results/ (a run cut short) are reused, not recomputed:
    the next GPU session computes only the missing seeds."""
    committed, out = tmp_path / "committed", tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"), OMP_NUM_THREADS="1", IML_GIT_REVISION="test-rev")
    sets = ["--set", "main:data.num_ents=24", "--set", "main:stages.0.epochs=2", "--set", "main:stages.1.epochs=1",
            "--set", "main:seeds.n_stage1=2"]
    first = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_run.py"), "--out", str(tmp_path / "o1"),
                            "--preset", "smoke", "--device", "cpu", "--only", "main", *sets],
                           capture_output=True, text=True, env={**env, "IML_GIT_REVISION": "rev-old"}, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    rel = json.loads((tmp_path / "o1" / "summary.json").read_text())["jobs"][0]["result_dir"]
    done = tmp_path / "o1" / rel
    # "commit" only seed 0's units, marked so that a recomputation would show
    dst = committed / "main" / done.name / "units"
    dst.mkdir(parents=True)
    for f in (done / "units").glob("s0-*"):
        text = f.read_text()
        (dst / f.name).write_text(text.replace('"device"', '"marker": "committed", "device"') if f.suffix == ".json"
                                  else text)
    (committed / "main" / done.name / "config.json").write_text((done / "config.json").read_text())
    p = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_run.py"), "--out", str(out), "--preset", "smoke",
                        "--device", "cpu", "--only", "main", "--workers", "2", "--deadline", "300",
                        "--resume-from", str(committed), *sets],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    job = json.loads((out / "summary.json").read_text())["jobs"][0]
    assert job["result_dir"] == rel and job["resumed_from"]
    units = out / rel / "units"
    assert json.loads((units / "s0-0.json").read_text())["marker"] == "committed"  # reused
    assert "marker" not in json.loads((units / "s1-0.json").read_text())  # computed here
    meta = json.loads((out / rel / "meta.json").read_text())
    assert meta["unit_git_revisions"] == {"s0-0": "rev-old", "s1-0": "test-rev"}  # who computed what
    assert meta["units_resumed"] == ["s0-0"]  # so wall_time_s is read as the time of s1-0 alone
    # a finished result is only loaded again: its meta keeps the revision and machine that made it
    again = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_run.py"), "--out", str(tmp_path / "o3"),
                            "--preset", "smoke", "--device", "cpu", "--only", "main", "--workers", "2",
                            "--resume-from", str(out / "results"), *sets],
                           capture_output=True, text=True, env={**env, "IML_GIT_REVISION": "rev-later"},
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "o3" / rel / "meta.json").read_text()) == meta


def test_gpu_session_learning_rate_probe_at_smoke_scale(tmp_path):
    """probe-lr runs one short main-experiment run per learning rate, in parallel, and packs them."""
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, GPU_PROBE_PRESET="smoke", GPU_DEVICE="cpu",
               GPU_STASH=str(tmp_path / "stash"), OUT=str(out),
               GPU_SET="--set main:seeds.n_stage1=1 --set main:data.num_ents=24 --set main:stages.0.epochs=2 "
                       "--set main:stages.1.epochs=1")
    p = subprocess.run(["bash", str(ROOT / "scripts/gpu_session.sh"), "probe-lr", "0.001 0.003", "rev-p"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert {f.name for f in out.iterdir()} == {"probe_results.tgz", "probe.log"}
    with tarfile.open(out / "probe_results.tgz") as tar:
        cfgs = [json.load(tar.extractfile(n)) for n in tar.getnames() if n.endswith("/config.json")]
        metas = [json.load(tar.extractfile(n)) for n in tar.getnames() if n.endswith("/meta.json")]
    assert sorted(c["stages"][0]["lr"] for c in cfgs) == [0.001, 0.003]
    assert all(m["git_revision"] == "rev-p" for m in metas) and len(metas) == 2


def test_gpu_session_background_only(tmp_path):
    """A session without the main run: `one` starts GPU_BG (here set inclusion, one loss setting) and
    `wait` collects it once finished."""
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, GPU_PRESET="smoke", GPU_DEVICE="cpu",
               GPU_STASH=str(tmp_path / "stash"), GPU_CARRY=str(tmp_path / "nothing"), GPU_ONE_WAIT="0",
               OUT=str(out), IML_GIT_REVISION="rev-bg", GPU_BG="setinclusion",
               GPU_SET="--set setinclusion:loss_on=answer")
    script = str(ROOT / "scripts/gpu_session.sh")
    one = subprocess.run(["bash", script, "one"], capture_output=True, text=True, env=env, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    w = subprocess.run(["bash", script, "wait"], capture_output=True, text=True, env={**env, "GPU_WAIT": "500"},
                       timeout=600)
    assert w.returncode == 0 and "background job finished (exit 0)" in w.stdout, w.stdout[-2000:]
    with tarfile.open(out / "results.tgz") as tar:
        cfgs = [json.load(tar.extractfile(n)) for n in tar.getnames() if n.endswith("/config.json")]
    assert [c["loss_on"] for c in cfgs] == ["answer"]  # both set-inclusion jobs are this one config
    assert not (out / "summary.json").exists() and (out / "bg_summary.json").exists()
