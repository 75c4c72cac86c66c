"""Writing a script's outputs so that nothing looks finished before it is (a temporary name, renamed when complete),
and reading JSON with a one-line error."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from .cli import ScriptError


@contextmanager
def atomic_path(path, enabled=True, keep_failed=False):
    """Yield a temporary name next to `path` (NAME.tmp, or STEM.tmp.SUFFIX where the suffix matters to the writer,
    e.g. .png/.pt2); rename it onto `path` when the block succeeds, remove it when the block fails (keep_failed:
    leave it for inspection). With path None, yield None; with enabled False, yield `path` itself."""
    if path is None or not enabled:
        yield path
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}" if path.suffix in (".png", ".pt2") else f"{path.name}.tmp")
    try:
        yield tmp
    except BaseException:
        if not keep_failed:
            tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_atomic(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ScriptError(f"missing file: {path}")
    except json.JSONDecodeError as e:
        raise ScriptError(f"{path}: not valid JSON ({e})")
