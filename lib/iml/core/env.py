"""The machine a result was made on (git revision, packages, CPU model and kernel level) and the device
a run uses. Two machines that differ here may train to different floats, so every result records them."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from iml.core.config import ConfigError
from iml.core.files import ROOT


def resolve_device(name: str = "auto", field: str = "device"):
    """``auto`` -> cuda when available, else cpu; an explicit device that this machine lacks is a ConfigError
    naming `field`."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(field, f"not a torch device: {name!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(field, f"{name!r} requested but this machine has no CUDA device; use auto or cpu")
    return dev


def git_revision(root: Path = ROOT) -> str:
    """`<sha>` or `<sha>-dirty`; 'unknown' outside a git checkout (e.g. on the GPU machine copy)."""
    env_rev = os.environ.get("IML_GIT_REVISION")
    if env_rev:
        return env_rev
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_info() -> dict:
    """Package versions and hardware, recorded next to every result."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    for mod in ("torch", "transformers", "datasets", "tokenizers", "numpy", "pandas"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing package is just not recorded
            info[mod] = None
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
        else:
            info["gpu"] = None
    except Exception:  # noqa: BLE001
        pass
    info.update(cpu_info())
    return info


_NEEDS = {"avx512": "avx512f", "avx2": "avx2"}


def capability_problem(want: str | None = None, flags: list[str] | None = None) -> str | None:
    """Why ``ATEN_CPU_CAPABILITY`` (or `want`) cannot work on this CPU (or one with `flags`): it asks for kernels
    the CPU lacks, and torch would die with "Illegal instruction" at the first one. None if it can."""
    want = (want if want is not None else os.environ.get("ATEN_CPU_CAPABILITY") or "").lower()
    flag = _NEEDS.get(want)
    if flags is None:
        try:
            flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                          if ln.startswith("flags")), None)
        except OSError:
            return None
    if flag is None or flags is None or flag in flags:
        return None
    return (f"ATEN_CPU_CAPABILITY={want} asks for {want.upper()} kernels, but this CPU has no {flag}; "
            f"use {'avx2 or default' if 'avx2' in flags else 'default'}")


def cpu_info() -> dict:
    """The CPU and the kernels torch dispatches to on it: two machines that differ here may train to
    different floats (see the Reproduce page), so every result records them."""
    info: dict[str, Any] = {"cpu_model": None, "cpu_id": None, "cpu_capability": None,
                            "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY")}
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            if not line.strip():
                break  # the first processor is enough
            fields.setdefault(k.strip(), v.strip())
        info["cpu_model"] = fields.get("model name")
        # a virtual machine may name every generation "AMD EPYC": family/model/stepping and the widest SIMD
        # tell two such CPUs apart (they may train to different floats)
        simd = [f for f in ("avx512f", "avx2") if f in fields.get("flags", "").split()]
        info["cpu_id"] = (f"{fields.get('vendor_id')} family {fields.get('cpu family')} model {fields.get('model')} "
                          f"stepping {fields.get('stepping')} {'+'.join(simd) or 'no-avx2'}")
    except OSError:
        info["cpu_model"] = platform.processor() or None
    try:
        import torch

        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["mkl"] = bool(torch.backends.mkl.is_available())
        info["mkldnn"] = bool(torch.backends.mkldnn.is_available())
        build = torch.__config__.show()
        for key, pat in (("mkl_version", r"Intel\(R\) (?:oneAPI )?Math Kernel Library Version ([\w.]+)"),
                         ("onednn_version", r"(?:oneDNN|MKL-DNN) v([\w.]+)"),
                         ("openmp", r"OpenMP (\d+)")):
            m = re.search(pat, build)
            info[key] = m.group(1) if m else None
    except Exception:  # noqa: BLE001 - no torch: just not recorded
        pass
    return info


def separate_compile_cache() -> None:
    """Give torch.compile a code cache per CPU kernel level (unless TORCHINDUCTOR_CACHE_DIR is set): inductor's
    default cache in /tmp is shared across kernel levels and CPUs, and reusing code generated for another
    level crashed the process (Reproduce page)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return
    level = (cpu_info().get("cpu_capability") or "unknown").lower()
    user = os.environ.get("USER") or str(os.getuid())
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"torchinductor_{user}_{level}")
