"""What only the data preparation needs on top of clitools (the one-line error, atomic files, strict JSON, reading
lines, versions: shared with scripts/): its name for the error, its log line, its temporary names, finding raw
files, hashes, finished-step stamps, its versions record and the count table.

Nothing in data-bin-prep imports ``cgc_fairseq`` or ``scripts/``: the data
preparation is usable on its own (it shares only ``datadir`` and ``clitools`` with them).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

from clitools import files, record
from clitools.command import UserError
from clitools.command import log as _log
from clitools.files import read_lines
from datadir import lines as text_lines

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"  # where the raw releases are looked for by default
STAMP_DIR = ".prep"  # per-step "done" stamps live in OUT/.prep/<step>.json
MODULES = ("sentencepiece", "sacremoses", "fairseq", "torch", "tqdm")  # what versions() records

PrepError = UserError  # a user-facing error: one line naming the culprit; prepare.py prints it, exit status 2


def log(msg: str) -> None:
    """The prep's log line: the message alone, on stderr (stdout gets the summary)."""
    _log(msg, stderr=True, stamp=False)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

COMPRESSED_SUFFIXES = ("", ".xz", ".gz")  # what clitools.files.read_bytes decompresses


def find_file(dirs: Sequence[Path], name: str) -> Path | None:
    """First of DIR/NAME, DIR/NAME.xz, DIR/NAME.gz over ``dirs`` that exists."""
    for d in dirs:
        for suffix in COMPRESSED_SUFFIXES:
            p = Path(d) / (name + suffix)
            if p.is_file():
                return p
    return None


def read_input(path: Path) -> list[str]:
    """read_lines of a raw input file, which must have text (not empty, not blank lines only)."""
    lines = read_lines(path)
    if not text_lines.has_text(lines):
        raise PrepError(f"{path}: no text (the file is empty or has only blank lines)")
    return lines


# --------------------------------------------------------------------------
# Writing: clitools.files' atomic writes under the prep's temporary names, .NAME.tmpPID (hidden, this run's own;
# outdir.remove_stale_tmp removes a killed run's)
# --------------------------------------------------------------------------


def tmp_name(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_path(path: Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success, remove it on failure."""
    return files.atomic_path(path, tmp_name=tmp_name)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line)
                f.write("\n")


def write_json(path: Path, obj) -> None:
    """obj as strict JSON (a nan or infinite float becomes null), written atomically."""
    files.write_json(path, obj, tmp_name=tmp_name)


# --------------------------------------------------------------------------
# Steps: a step is finished when its stamp exists, its key matches and its outputs are what it recorded (their
# sha256, checked before skipping: a 0-byte file a full disk left, or a file changed since, runs the step again).
# The stamp is written last, after every output was renamed.
# --------------------------------------------------------------------------


class Steps:
    def __init__(self, out: Path, force: bool = False):
        self.out = Path(out)
        self.force = force
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def _stamp(self, name: str) -> Path:
        return self.out / STAMP_DIR / f"{name}.json"

    def _hashes(self, outputs: Sequence[Path]) -> dict[str, str] | None:
        """{output (relative to OUT): its sha256}; None when an output is missing."""
        if not all(Path(p).is_file() for p in outputs):
            return None
        return {str(Path(p).relative_to(self.out) if Path(p).is_relative_to(self.out) else p): files.sha256_file(p)
                for p in outputs}

    def done(self, name: str, key: dict, outputs: Sequence[Path]) -> bool:
        if self.force:
            return False
        try:
            stamp = json.loads(self._stamp(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(stamp, dict) or stamp.get("key") != _jsonable(key):
            return False
        current = self._hashes(outputs)
        if current is None:
            return False
        if "outputs" not in stamp:  # a stamp of an older prep: non-empty outputs are all it can check
            return all(Path(p).stat().st_size > 0 for p in outputs)
        return stamp["outputs"] == current

    def run(self, name: str, key: dict, outputs: Sequence[Path], fn: Callable[[], object]):
        """Run ``fn`` unless the step is finished; return whether it ran. A dict ``fn`` returns is kept in the
        stamp (``result``), with the sha256 of the outputs."""
        if self.done(name, key, outputs):
            log(f"[skip] {name}: already done (use --force to redo)")
            self.skipped.append(name)
            return False
        stamp = self._stamp(name)
        with files.writing(stamp):
            stamp.unlink(missing_ok=True)  # outputs are about to change
        log(f"[step] {name}")
        result = fn()
        recorded = self._hashes(outputs)
        if recorded is None:  # a bug in this code, not a user error
            raise RuntimeError(f"step {name} did not produce {[str(p) for p in outputs if not Path(p).is_file()]}")
        write_json(stamp, {"key": _jsonable(key), "outputs": recorded, "finished": now(),
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
    """Python's version and the installed versions of the prep's packages (MODULES), for manifest.json."""
    return record.versions(MODULES)


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
