"""The output dir of a run of the data preparation: what may be one (empty, a data dir or a prep run's), the lock
that keeps a second run off it, this run's own scratch folders, and the leftovers of killed runs (removed only under
the lock, by their exact names: nothing else in the dir is touched)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from clitools.files import ensure_dir, writing
from common import STAMP_DIR, PrepError
from datadir import layout

LOCK = ".prep.lock"  # OUT/.prep.lock: the pid of the run preparing OUT
TMP = re.compile(r"\.(?P<name>.+)\.tmp[0-9]+")  # common.tmp_name and run_tmp_dir: .NAME.tmpPID
_SPLIT_FILE = r"(train|valid|test[0-9]*)\.(de|en)"
# where the prep writes under a temporary name (a folder of OUT) -> the NAMEs it writes there
WRITTEN = {
    ".": re.compile(rf"{re.escape(layout.MANIFEST)}|spm|bin"),  # the manifest; run_tmp_dir's scratch folders
    layout.TOK: re.compile(_SPLIT_FILE),
    layout.RAW: re.compile(_SPLIT_FILE),
    layout.SPM: re.compile(_SPLIT_FILE),
    STAMP_DIR: re.compile(r"[a-z-]+\.json"),  # the steps' stamps
    "orig": re.compile(r"de-en\.tgz"),  # IWSLT'14's download
    "orig/de-en": re.compile(r"train\.tags\.de-en\.(de|en)|IWSLT14\.[A-Za-z0-9.]+\.de-en\.(de|en)\.xml"),
}


def check_out(out: Path) -> None:
    """A PrepError unless --out is empty, a data dir (manifest.json) or a prep run's (its stamps' folder .prep/ or
    its lock): a folder of something else is not written into."""
    out = Path(out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not any((out / name).exists() for name in (layout.MANIFEST, STAMP_DIR, LOCK)):
        raise PrepError(f"--out {out} is not empty and not a data dir (no {layout.MANIFEST}, no {STAMP_DIR}/ of a "
                        f"prep run): give a new or empty folder")


def start(out: Path) -> None:
    """Under the lock, before anything is written: mark OUT as a prep run's (OUT/.prep/, so that a rerun after a
    kill takes it for one), then remove killed runs' leftovers."""
    with writing(out / STAMP_DIR):
        (out / STAMP_DIR).mkdir(exist_ok=True)
    remove_stale_tmp(out)


def run_tmp_dir(parent: Path, name: str) -> Path:
    """This run's own empty scratch directory PARENT/.NAME.tmpPID."""
    d = ensure_dir(parent) / f".{name}.tmp{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    with writing(d):
        d.mkdir()
    return d


def move_in(src: Path, dst: Path) -> None:
    """os.replace(src, dst): a file of this run's scratch folder to its place in OUT."""
    with writing(dst, src):
        os.replace(src, dst)


@contextmanager
def locked(out: Path):
    """Hold the lock on an output dir for a whole run: a second run on the same dir is refused with a PrepError
    naming the holder's pid. An flock, so a killed run's lock goes with it; the file is removed on release."""
    path = Path(out) / LOCK
    while True:
        with writing(path):
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
        with writing(path):
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        f.close()


def remove_stale_tmp(out: Path) -> None:
    """Delete leftovers of interrupted runs: in the folders of WRITTEN, the .NAME.tmpPID files (and run_tmp_dir's
    folders) of the NAMEs the prep writes there; only under the lock."""
    for folder, names in WRITTEN.items():
        d = Path(out) / folder
        if not d.is_dir() or d.is_symlink():
            continue
        for p in d.iterdir():
            m = TMP.fullmatch(p.name)
            if m is None or not names.fullmatch(m.group("name")):
                continue
            with writing(p):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
