"""One model across ranks: ``torchrun --nproc_per_node=2`` (gloo, CPU) takes the steps of one process with
grad_accum=2, a resume file works across ranks, and ``iml run main`` under torchrun writes the result of one
process (rank 0 writes, rank 1 computes alongside; both exit 0). One launch of tests/ddp_worker.py does all three."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import ddp_worker
from iml.core.config import ConfigError
from iml.lm import distributed
from iml.lm.experiment import make_config, run
from iml.lm.train import StageConfig, train_stage

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "TOKENIZERS_PARALLELISM": "false"}
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(Path(ddp_worker.__file__)), str(out)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out, p.stdout


def _close(a: dict, b: dict):
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.allclose(a["state"][k], b["state"][k], atol=1e-6, rtol=0), k
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-9)
    assert a["lrs"] == b["lrs"] and a["steps"] == b["steps"] and a["tokens"] == b["tokens"]


def test_two_ranks_take_the_steps_of_one_process_with_grad_accum_2(two_ranks):
    out, _ = two_ranks
    ddp = torch.load(out / "stage.pt")
    one = ddp_worker.stage()
    assert (ddp["world_size"], one["world_size"]) == (2, 1) and ddp["steps"] == 6
    _close(ddp, one)
    _close(torch.load(out / "resumed.pt"), ddp)  # stopped after 3 steps, continued from the step-2 file


def test_iml_run_under_torchrun_writes_the_one_process_result(two_ranks, tmp_path):
    out, stdout = two_ranks
    cfg = make_config("smoke", ddp_worker.RUN_SETS)
    one = run(cfg, root=tmp_path, progress=False)
    folder = out / "results" / "main" / one.dir.name  # the same config hash
    assert stdout.count(f"result: {folder}") == 2  # both ranks: rank 0 wrote it, rank 1 got it from rank 0
    ddp = pd.read_csv(folder / "results.csv")
    mine = pd.read_csv(one.dir / "results.csv")
    pd.testing.assert_frame_equal(ddp.drop(columns="value"), mine.drop(columns="value"))
    assert ddp.value.to_numpy() == pytest.approx(mine.value.to_numpy(), rel=1e-5, abs=1e-6)
    assert not (folder / "checkpoints").exists()


def test_grad_accum_must_be_shared_out_evenly(monkeypatch):
    """Under torchrun (here: pretended) a step's micro-batches are dealt out to the ranks: 1 on 2 ranks is refused,
    by train_stage and by the experiment before it computes anything."""
    monkeypatch.setattr(distributed, "init", lambda device_type="cpu": True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(ConfigError, match="grad_accum"):
        train_stage(torch.nn.Linear(2, 2), None, [{"text": "x"}], StageConfig(batch_size=4, grad_accum=1),
                    progress=False)
    with pytest.raises(ConfigError, match=r"stages\[0\]\.grad_accum.*batch_size 8 x grad_accum 2"):
        run(make_config("smoke", {"data.num_ents": 24}), progress=False)
