"""The output dir of a run of the data preparation: the lock that keeps a second run off it, this run's own
scratch folders, and the leftovers of killed runs (removed only under the lock)."""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from clitools.files import ensure_dir
from common import PrepError


def run_tmp_dir(parent: Path, name: str) -> Path:
    """This run's own empty scratch directory PARENT/.NAME.tmpPID."""
    d = ensure_dir(parent) / f".{name}.tmp{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    return d


LOCK = ".prep.lock"  # OUT/.prep.lock: the pid of the run preparing OUT


@contextmanager
def locked(out: Path):
    """Hold the lock on an output dir for a whole run: a second run on the same dir is refused with a PrepError
    naming the holder's pid. An flock, so a killed run's lock goes with it; the file is removed on release."""
    path = Path(out) / LOCK
    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise PrepError(f"{out} is being prepared by another run (pid {holder}; lock {path}): wait for it to "
                            f"finish or stop it") from None
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break  # not a file that the previous holder removed after we opened it
        except FileNotFoundError:
            pass
        f.close()
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        f.close()


def remove_stale_tmp(out: Path) -> None:
    """Delete leftovers of interrupted runs (``.NAME.tmpPID`` files, temp dirs); only under the lock."""
    if not out.is_dir():
        return
    for p in out.rglob(".*.tmp*"):
        if p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
