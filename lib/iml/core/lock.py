"""One run computes a result folder at a time: an advisory lock (``flock``) on ``<result dir>/.lock``.

A second run of the same config is refused at once (:class:`ResultLockedError`) instead of computing every
unit again or, with ``--force``, overwriting the first one's. Shards of one config (``run_units(only=...)`` or
``shard=``, one per process) share the lock. The kernel releases it when its holder exits, even by ``kill -9``.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

__all__ = ["LOCK_NAME", "ResultLockedError", "result_lock", "holder"]

LOCK_NAME = ".lock"
"""The lock file in a result folder (git-ignored); it holds the pid of the run that took the lock last."""


class ResultLockedError(RuntimeError):
    """Another run holds the lock on a result folder: it is computing that result now."""


def _try(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _try_shared(fd: int, patience_s: float = 0.5) -> bool:
    """The shared lock, waiting up to `patience_s`: another shard holds the lock exclusively for an instant when it
    takes it (to learn whether it is alone) and while :func:`holder` looks; a whole run holds it for its duration."""
    end = time.monotonic() + patience_s
    while not _try(fd, fcntl.LOCK_SH):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def holder(folder: str | Path) -> str | None:
    """Who computes result folder `folder` now, writing nothing: None (nobody), "shards" (runs sharing the lock)
    or "run (pid N)" (one run holding it alone)."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try(fd, fcntl.LOCK_EX):
            return None
        if _try(fd, fcntl.LOCK_SH):
            return "shards"
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        return f"run (pid {pid})"
    finally:
        os.close(fd)


@contextlib.contextmanager
def result_lock(folder: str | Path, *, shared: bool = False) -> Iterator[bool]:
    """Hold the lock on result folder `folder` (created if need be) for the block: exclusively, or `shared`
    with other shards of the same config. Yields whether this run was alone when it took the lock (then any
    temporary file there is a killed run's leftover). Raises ResultLockedError at once if it is held."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        alone = _try(fd, fcntl.LOCK_EX)
        if not (_try_shared(fd) if shared else alone):
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ResultLockedError(f"{folder}: another run (pid {pid}) is computing this result now; wait for it "
                                    f"to finish or stop it, then run again")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield alone
        if alone:
            _remove_if_unused(folder)
    except BaseException:
        if _try(fd, fcntl.LOCK_EX):  # a run that failed before writing anything leaves nothing behind
            _remove_if_unused(folder)
        raise
    finally:
        os.close(fd)  # releases the lock


def _remove_if_unused(folder: Path) -> None:
    """Delete the lock file, and the folder and its experiment folder if that leaves them empty."""
    if [p.name for p in folder.iterdir()] == [LOCK_NAME]:
        (folder / LOCK_NAME).unlink()
        for d in (folder, folder.parent):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty
