"""Every result says where it ran: the CPU model and the kernel level torch dispatched to."""
import os
import subprocess
import sys

import torch

from iml.core import env, files


def test_environment_records_the_cpu_and_its_kernels():
    info = env.environment_info()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu_model"]  # from /proc/cpuinfo on Linux
    assert {"mkl", "mkldnn", "mkl_version", "onednn_version", "aten_cpu_capability_env"} <= set(info)


def test_a_forced_kernel_level_is_recorded():
    code = "import json, sys; sys.path.insert(0, 'lib'); from iml.core import env; print(json.dumps(env.cpu_info()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=files.ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "ATEN_CPU_CAPABILITY": "default"}).stdout
    assert '"cpu_capability": "DEFAULT"' in out and '"aten_cpu_capability_env": "default"' in out


def test_compiled_code_is_cached_per_kernel_level(monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "placeholder")  # so teardown restores the real value
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    env.separate_compile_cache()
    level = torch.backends.cpu.get_cpu_capability().lower()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"].endswith(f"_{level}")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/mine")
    env.separate_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/somewhere/mine"  # a user's choice is kept
