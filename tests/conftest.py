"""Test-wide settings: one torch thread (two threads on a busy 2-core box can be 40x slower),
no hub access, and result folders redirected to a temporary directory."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from iml.core.env import capability_problem  # noqa: E402



def pytest_configure(config):
    """Forced kernels this CPU lacks: every test would die of SIGILL, so stop with one line instead."""
    if (problem := capability_problem()) is not None:
        pytest.exit(problem, returncode=2)

try:
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def results_root(tmp_path):
    """A throwaway results/ root for tests that write result files."""
    d = tmp_path / "results"
    d.mkdir()
    return d
