"""Atomic file writes and provenance: nothing half-written ever lands under `results/`.

Every writer here writes to a temporary file in the target directory and `os.replace`s it into place,
so a killed process leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (lib/iml/io.py -> repo). Notebooks use this instead of relative paths."""

DATA_DIR = ROOT / "data"
RESULTS_DIR = ROOT / "results"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


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


def cpu_info() -> dict:
    """The CPU and the kernels torch dispatches to on it: two machines that differ here may train to
    different floats (see the Reproduce page), so every result records them."""
    info: dict[str, Any] = {"cpu_model": None, "cpu_capability": None,
                            "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY")}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
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
