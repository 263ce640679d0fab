"""The one prepared GPU script runs every job end to end at the smoke preset on CPU (what the GPU run will do,
at seconds' scale), packs the result folders, and records each job's outcome."""
import json
import os
import subprocess
import sys
import tarfile

from iml.io import ROOT


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


def test_gpu_script_reports_a_failing_job(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_run.py"), "--out", str(out), "--preset", "smoke",
                        "--device", "cpu", "--only", "mnist", "--set", "mnist:n_seeds=-1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1
    job = json.loads((out / "summary.json").read_text())["jobs"][0]
    assert not job["ok"] and "n_seeds" in job["error"]
