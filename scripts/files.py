"""Writing a script's outputs so that nothing looks finished before it is (a temporary name, renamed when complete),
checking output paths before any work, reading text (datadir.lines) and JSON, writing JSON (strict: no NaN or
Infinity)."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from datadir import lines, values

from .cli import ScriptError


def failed_path(path):
    """Where atomic_path(keep_failed=True) leaves what a failed block wrote: NAME.failed."""
    path = Path(path)
    return path.with_name(f"{path.name}.failed")


@contextmanager
def atomic_path(path, enabled=True, keep_failed=False):
    """Yield a temporary name next to `path` (NAME.tmp, or STEM.tmp.SUFFIX where the suffix matters to the writer,
    e.g. .png/.pt2); rename it onto `path` when the block succeeds, remove it when the block fails (keep_failed:
    rename it to failed_path(path), for inspection). With path None, yield None; with enabled False, yield `path`
    itself."""
    if path is None or not enabled:
        yield path
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}" if path.suffix in (".png", ".pt2") else f"{path.name}.tmp")
    try:
        yield tmp
    except BaseException:
        if keep_failed and tmp.exists():
            os.replace(tmp, failed_path(path))
        else:
            tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    if keep_failed:
        failed_path(path).unlink(missing_ok=True)  # an earlier failure's, now out of date


def check_output_dir(path, what="--out"):
    """ScriptError when an output dir, or a folder above it, is a file (before any work is done)."""
    for p in (Path(path), *Path(path).parents):
        if p.exists() and not p.is_dir():
            raise ScriptError(f"{what}: output path is a file, expected a directory: {p}")


def check_output_file(path, what="--out"):
    """ScriptError when an output file is a directory or a folder above it is a file."""
    if Path(path).is_dir():
        raise ScriptError(f"{what}: output path is a directory, expected a file: {path}")
    check_output_dir(Path(path).parent, what)


def write_atomic(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj):
    """obj as strict JSON (a nan or infinite float becomes null), written atomically."""
    write_atomic(path, json.dumps(values.json_safe(obj), indent=2, ensure_ascii=False, default=str,
                                  allow_nan=False) + "\n")


def read_lines(path):
    """The lines of a text file as datadir.lines defines them, with a one-line error."""
    try:
        return lines.read(path)
    except lines.TextError as e:
        raise ScriptError(str(e))


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ScriptError(f"missing file: {path}")
    except json.JSONDecodeError as e:
        raise ScriptError(f"{path}: not valid JSON ({e})")
