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
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Sequence

from datadir import lines as text_lines
from datadir import values

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
    """The lines of a UTF-8 file as ``datadir.lines`` defines them (split at ``\\n``,
    other line breaks become spaces, BOMs dropped). Non-UTF-8 bytes and NULs raise
    a :class:`PrepError` naming the file and the line."""
    try:
        return text_lines.decode(read_bytes(path), path)
    except text_lines.TextError as e:
        raise PrepError(str(e)) from None


def read_input(path: Path) -> list[str]:
    """read_lines of a raw input file, which must have text (not empty, not blank lines only)."""
    lines = read_lines(path)
    if not text_lines.has_text(lines):
        raise PrepError(f"{path}: no text (the file is empty or has only blank lines)")
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
    """obj as strict JSON (a nan or infinite float becomes null), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values.json_safe(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                       encoding="utf-8")


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
        """Run ``fn`` unless the step is finished; return whether it ran. A dict ``fn`` returns is kept in the
        stamp (``result``)."""
        if self.done(name, key, outputs):
            log(f"[skip] {name}: already done (use --force to redo)")
            self.skipped.append(name)
            return False
        stamp = self._stamp(name)
        if stamp.exists():
            stamp.unlink()  # outputs are about to change
        log(f"[step] {name}")
        result = fn()
        missing = [str(p) for p in outputs if not Path(p).is_file()]
        if missing:  # a bug in this code, not a user error
            raise RuntimeError(f"step {name} did not produce {missing}")
        write_json(stamp, {"key": _jsonable(key), "finished": now(),
                           **({"result": result} if isinstance(result, dict) else {})})
        self.ran.append(name)
        return True


    def result(self, name: str) -> dict:
        """What a finished step's function returned ({} when nothing, or not finished)."""
        try:
            return json.loads(self._stamp(name).read_text(encoding="utf-8")).get("result") or {}
        except (OSError, ValueError):
            return {}


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
