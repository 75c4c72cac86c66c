"""Shared machinery of the data preparation: errors, safe file I/O, step
bookkeeping, versions and the count table.

Nothing in data-bin-prep imports ``cgc_fairseq`` or ``scripts/``: the data
preparation is usable on its own (it shares only ``datadir`` with them).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import lzma
import os
import platform
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"  # where the raw releases are looked for by default
STAMP_DIR = ".prep"  # per-step "done" stamps live in OUT/.prep/<step>.json


class PrepError(Exception):
    """A user-facing error: the message is one line naming the culprit."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

COMPRESSED_SUFFIXES = ("", ".xz", ".gz")


def find_file(dirs: Sequence[Path], name: str) -> Path | None:
    """First of DIR/NAME, DIR/NAME.xz, DIR/NAME.gz over ``dirs`` that exists."""
    for d in dirs:
        for suffix in COMPRESSED_SUFFIXES:
            p = Path(d) / (name + suffix)
            if p.is_file():
                return p
    return None


def read_bytes(path: Path) -> bytes:
    """Whole file, transparently decompressing ``.xz`` / ``.gz``."""
    path = Path(path)
    if not path.exists():
        raise PrepError(f"missing input file: {path}")
    if path.is_dir():
        raise PrepError(f"input is a directory, expected a file: {path}")
    try:
        if path.name.endswith(".xz"):
            with lzma.open(path) as f:
                return f.read()
        if path.name.endswith(".gz"):
            with gzip.open(path) as f:
                return f.read()
        return path.read_bytes()
    except (lzma.LZMAError, OSError, EOFError) as e:
        raise PrepError(f"cannot read {path}: {e}") from None


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file, split on ``\\n`` only (as Perl/sed do).

    Non-UTF-8 bytes raise a :class:`PrepError` naming the file and the line.
    A trailing newline does not produce an extra empty line.
    """
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = data.count(b"\n", 0, e.start) + 1
        raise PrepError(
            f"{path}: not UTF-8 (byte 0x{data[e.start]:02x} at line {line_no})"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Writing: everything goes to a temporary name first and is renamed at the end
# --------------------------------------------------------------------------


def ensure_dir(path: Path) -> Path:
    path = Path(path)
    for p in [path, *path.parents]:
        if p.exists() and not p.is_dir():
            raise PrepError(f"output path is a file, expected a directory: {p}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrepError(f"cannot create output directory {path}: {e.strerror}") from None
    return path


def tmp_name(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    ensure_dir(path.parent)
    if path.is_dir():
        raise PrepError(f"output path is a directory, expected a file: {path}")
    tmp = tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_lines(path: Path, lines: Iterable[str]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line)
                f.write("\n")


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def remove_stale_tmp(out: Path) -> None:
    """Delete leftovers of interrupted runs (``.NAME.tmpPID`` files, temp dirs)."""
    if not out.is_dir():
        return
    for p in out.rglob(".*.tmp*"):
        if p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------
# Steps: a step is finished when its stamp exists, its key matches and all its
# outputs exist. The stamp is written last, after every output was renamed.
# --------------------------------------------------------------------------


class Steps:
    def __init__(self, out: Path, force: bool = False):
        self.out = Path(out)
        self.force = force
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def _stamp(self, name: str) -> Path:
        return self.out / STAMP_DIR / f"{name}.json"

    def done(self, name: str, key: dict, outputs: Sequence[Path]) -> bool:
        if self.force:
            return False
        stamp = self._stamp(name)
        if not stamp.is_file() or not all(Path(p).is_file() for p in outputs):
            return False
        try:
            return json.loads(stamp.read_text(encoding="utf-8")).get("key") == _jsonable(key)
        except (OSError, ValueError):
            return False

    def run(self, name: str, key: dict, outputs: Sequence[Path], fn: Callable[[], object]):
        """Run ``fn`` unless the step is finished; return whether it ran."""
        if self.done(name, key, outputs):
            log(f"[skip] {name}: already done (use --force to redo)")
            self.skipped.append(name)
            return False
        stamp = self._stamp(name)
        if stamp.exists():
            stamp.unlink()  # outputs are about to change
        log(f"[step] {name}")
        fn()
        missing = [str(p) for p in outputs if not Path(p).is_file()]
        if missing:  # a bug in this code, not a user error
            raise RuntimeError(f"step {name} did not produce {missing}")
        write_json(stamp, {"key": _jsonable(key), "finished": now()})
        self.ran.append(name)
        return True


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def versions() -> dict:
    v = {"python": platform.python_version()}
    for mod in ("sentencepiece", "sacremoses", "fairseq", "torch", "tqdm"):
        try:
            from importlib.metadata import version

            dist = {"fairseq": "fairseq-fixed"}.get(mod, mod)
            try:
                v[mod] = version(dist)
            except Exception:
                v[mod] = version(mod)
        except Exception:
            v[mod] = None
    return v


def count_tokens(path: Path) -> int:
    return sum(len(l.split()) for l in read_lines(path))


def format_table(rows: list[dict], columns: Sequence[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    fmt = lambda vals: "  ".join(
        str(v).rjust(w) if isinstance(v, int) else str(v).ljust(w) for v, w in zip(vals, widths)
    )
    out = [fmt(columns), "  ".join("-" * w for w in widths)]
    out += [fmt([r.get(c, "") for c in columns]) for r in rows]
    return "\n".join(out)


def compare_lines(ours: Sequence[str], ref: Sequence[str], examples: int = 5) -> dict:
    """Share of identical lines between our output and a reference."""
    n = min(len(ours), len(ref))
    diffs = [i for i in range(n) if ours[i] != ref[i]]
    return {
        "lines": len(ref),
        "our_lines": len(ours),
        "identical": n - len(diffs),
        "share": round((n - len(diffs)) / len(ref), 6) if ref else 1.0,
        "examples": [
            {"line": i + 1, "ours": ours[i], "reference": ref[i]} for i in diffs[:examples]
        ],
    }


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
