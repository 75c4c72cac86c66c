"""A command's files: output paths checked before any work is done, every output written under a temporary name
and renamed when complete (nothing looks finished before it is; a failure removes it, or keeps it as NAME.failed),
a write that fails -- a full disk, a read-only or forbidden folder -- one `cannot write PATH: reason` (writing()),
text read as datadir.lines defines a line (plain, .gz or .xz), and JSON: written strict (no NaN or Infinity), read
with a one-line error. Every error is a UserError."""
from __future__ import annotations

import errno
import gzip
import hashlib
import json
import lzma
import os
from contextlib import contextmanager, suppress
from pathlib import Path

from datadir import lines, values

from .command import UserError

KEEP_SUFFIX = (".png", ".pt2")  # the writer (matplotlib, torch.export) goes by the suffix: STEM.tmp.SUFFIX
# what writing data meets (write() and close() name no file): a full disk or quota, a too large file, a failing device
DATA_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
# and what making, opening or renaming the file meets (naming it): a read-only or forbidden folder, a too long name
WRITE_ERRNOS = DATA_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.EMLINK, errno.ETXTBSY}


def _named(what, message):
    return f"{what}: {message}" if what else message


def check_output_dir(path, what=None):
    """UserError when an output dir, or a folder above it, is a file; `what` (e.g. "--out") names the option."""
    for p in (Path(path), *Path(path).parents):
        if p.exists() and not p.is_dir():
            raise UserError(_named(what, f"output path is a file, expected a directory: {p}"))


def check_output_file(path, what=None):
    """UserError when an output file is a directory or a folder above it is a file."""
    if Path(path).is_dir():
        raise UserError(_named(what, f"output path is a directory, expected a file: {path}"))
    check_output_dir(Path(path).parent, what)


def ensure_dir(path, what=None):
    """check_output_dir(path), then create it (and the folders above it); returns it."""
    path = Path(path)
    check_output_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(_named(what, f"cannot create output directory {path}: {e.strerror}")) from None
    return path


def tmp_name(path):
    """The temporary name of an output: NAME.tmp next to it, or STEM.tmp.SUFFIX for KEEP_SUFFIX."""
    path = Path(path)
    return path.with_name(f"{path.stem}.tmp{path.suffix}" if path.suffix in KEEP_SUFFIX else f"{path.name}.tmp")


def failed_path(path):
    """Where atomic_path(keep_failed=True) leaves what a failed block wrote: NAME.failed."""
    path = Path(path)
    return path.with_name(f"{path.name}.failed")


@contextmanager
def writing(path, *also):
    """Turn an OSError of writing `path` into the UserError `cannot write PATH: reason`: one of WRITE_ERRNOS (ENOSPC,
    EROFS, EACCES, ...) naming `path` or one of `also` (its temporary names), or one of DATA_ERRNOS naming no file
    (a write() on a full disk). Any other OSError (reading an input in the block) passes through as it is."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            ours = e.errno in DATA_ERRNOS
        else:
            ours = e.errno in WRITE_ERRNOS and isinstance(e.filename, (str, bytes, os.PathLike)) and \
                Path(os.fsdecode(e.filename)) in {Path(p) for p in (path, *also)}
        if ours:
            raise UserError(f"cannot write {path}: {e.strerror or e}") from None
        raise


@contextmanager
def atomic_path(path, keep_failed=False, tmp_name=tmp_name):
    """Yield a temporary name next to `path` (tmp_name(path)), its folder created; rename it onto `path` when the
    block succeeds, remove it when the block fails (keep_failed: rename it to failed_path(path), for inspection).
    A write that fails is writing()'s one-line UserError."""
    path = Path(path)
    ensure_dir(path.parent)
    if path.is_dir():
        raise UserError(f"output path is a directory, expected a file: {path}")
    tmp = tmp_name(path)
    try:
        with writing(path, tmp):
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):  # the error that stopped the block is the one to report
            if keep_failed and tmp.exists():
                os.replace(tmp, failed_path(path))
            else:
                tmp.unlink(missing_ok=True)
        raise
    if keep_failed:
        failed_path(path).unlink(missing_ok=True)  # an earlier failure's, now out of date


def write_atomic(path, text, tmp_name=tmp_name):
    """text (UTF-8) to path, atomically."""
    with atomic_path(path, tmp_name=tmp_name) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj, tmp_name=tmp_name):
    """obj as strict JSON (a nan or infinite float becomes null), written atomically."""
    write_atomic(path, json.dumps(values.json_safe(obj), indent=2, ensure_ascii=False, default=str,
                                  allow_nan=False) + "\n", tmp_name)


def read_json(path):
    """The JSON in a file, with a one-line error when it is missing, unreadable or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


def read_bytes(path):
    """A whole input file, decompressing .xz and .gz."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"missing input file: {path}")
    if path.is_dir():
        raise UserError(f"input is a directory, expected a file: {path}")
    try:
        if path.name.endswith(".xz"):
            with lzma.open(path) as f:
                return f.read()
        if path.name.endswith(".gz"):
            with gzip.open(path) as f:
                return f.read()
        return path.read_bytes()
    except (lzma.LZMAError, OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e}") from None


def read_lines(path):
    """The lines of a UTF-8 text file as datadir.lines defines them (split at "\\n", other line breaks become
    spaces, BOMs dropped); non-UTF-8 bytes and NULs are a UserError naming the file and the line."""
    try:
        return lines.decode(read_bytes(path), path)
    except lines.TextError as e:
        raise UserError(str(e)) from None


def sha256_file(path):
    """The sha256 of a file's bytes, read a MiB at a time (what a manifest or a result records of its inputs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
