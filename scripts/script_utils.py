"""Shared helpers for the scripts in scripts/ (run as `python scripts/X.py`; this dir is put on sys.path).

One-line errors (`error: ...`, exit 1, no traceback), subprocesses with a clear error, atomic writes
(temp name + rename), versions, the data dir's manifest.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
USER_DIR = str(REPO / "cgc_fairseq")  # absolute: fairseq imports it by path, and checkpoints record it
BIN = Path(sys.executable).parent  # fairseq-train etc. live next to the interpreter of the venv


class ScriptError(Exception):
    """A user-facing error: printed as one `error: ...` line, exit status 1."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse's default prints the usage too)."""

    @classmethod
    def from_doc(cls, prog, doc):
        """A parser whose description is the docstring's first paragraph and whose epilog is the rest."""
        description, epilog = doc.split("\n\n", 1)
        return cls(prog=prog, description=description, epilog=epilog,
                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def positive_int(text):
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main_guard(main):
    """Run main(argv) -> exit code; ScriptError becomes one `error:` line, Ctrl-C a short note."""

    def wrapped(argv=None):
        try:
            return main(argv) or 0
        except ScriptError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr, flush=True)
            return 130

    return wrapped


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fairseq_cli(name):
    """Path of a fairseq console script (fairseq-train, ...) next to this interpreter, else on PATH."""
    path = BIN / name
    return str(path) if path.exists() else name


def run(cmd, *, stdout_path=None, append=False, echo=True, env=None, what=None):
    """Run cmd (a list). stdout (+stderr) is streamed to the console when echo, and to stdout_path when given
    (written under a temp name, renamed when the command succeeds; or appended to, with append=True, for a live
    log). Raises ScriptError naming the command and the log on a non-zero exit. Returns the elapsed seconds."""
    what = what or Path(cmd[0]).name
    full_env = dict(os.environ, **(env or {}))
    start = time.time()
    tmp = None
    out = None
    if stdout_path is not None:
        stdout_path = Path(stdout_path)
        stdout_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = stdout_path if append else stdout_path.with_name(stdout_path.name + ".tmp")
        out = open(tmp, "a" if append else "w")
    tail = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
                                bufsize=1)
        for line in proc.stdout:
            if out is not None:
                out.write(line)
                out.flush()
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
            tail = (tail + [line.rstrip("\n")])[-15:]
        rc = proc.wait()
    except FileNotFoundError:
        raise ScriptError(f"{what}: command not found: {cmd[0]}")
    finally:
        if out is not None:
            out.close()
    if rc != 0:
        where = f"; log: {tmp}" if tmp else ""
        last = next((l for l in reversed(tail) if l.strip()), "")
        if not echo and tail:
            sys.stderr.write("\n".join(tail) + "\n")
        raise ScriptError(f"{what} failed (exit {rc}){where}: {last.strip()[:300]}")
    if tmp is not None and not append:
        os.replace(tmp, stdout_path)
    return time.time() - start


def write_atomic(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def versions():
    out = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    for mod in ("torch", "fairseq", "sacrebleu", "sentencepiece", "sacremoses", "numpy", "matplotlib"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # not installed / no __version__: record that, don't fail
            out[mod] = None
    try:
        out["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                           text=True, timeout=10).stdout.strip() or None
    except Exception:
        out["git_commit"] = None
    return out


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (None where there is none, e.g. not Linux)."""
    try:
        return next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), None)
    except OSError:
        return None


def command_line(argv=None):
    return shlex.join([sys.executable, *(sys.argv if argv is None else argv)])


def check_data_dir(data):
    """A fairseq data dir of our layout: exists, has the dictionaries. Returns the manifest (or {})."""
    data = Path(data)
    if not data.is_dir():
        raise ScriptError(f"data dir not found: {data}")
    for name in ("dict.de.txt", "dict.en.txt"):
        if not (data / name).exists():
            raise ScriptError(f"{data} is not a fairseq data dir (missing {name})")
    manifest = data / "manifest.json"
    return read_json(manifest) if manifest.exists() else {}


def check_split(data, split, src="de", tgt="en"):
    data = Path(data)
    if not (data / f"{split}.{src}-{tgt}.{src}.bin").exists():
        have = sorted({p.name.split(".")[0] for p in data.glob(f"*.{src}-{tgt}.{src}.bin")})
        raise ScriptError(f"unknown split {split!r} in {data} (have: {', '.join(have) or 'none'})")


def safe_globals():
    """What fairseq checkpoints hold besides tensors and builtins: argparse.Namespace (cgc_fairseq allow-lists
    it on import). Returns the list."""
    import cgc_fairseq  # noqa: F401  (registers archs; allow-lists argparse.Namespace)

    return [argparse.Namespace]


def load_checkpoint(path):
    """torch.load(weights_only=True) of a fairseq checkpoint, with only argparse.Namespace allow-listed."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ScriptError(f"checkpoint not found: {path}")
    # add_safe_globals, not the safe_globals() context manager: on exit that one removes its entries even when they
    # were allow-listed before (by `import cgc_fairseq`), which breaks later fairseq loads in this process.
    torch.serialization.add_safe_globals(safe_globals())
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ScriptError(f"cannot load {path} with weights_only=True: {str(e).splitlines()[0]}")
    except (RuntimeError, EOFError) as e:
        raise ScriptError(f"cannot read checkpoint {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def model_args(state):
    """The model's config (argparse.Namespace or dict) from a loaded checkpoint."""
    cfg = state.get("cfg")
    if cfg is not None and cfg.get("model") is not None:
        return cfg["model"]
    return state.get("args")


def arg(ns, name, default=None):
    return ns.get(name, default) if isinstance(ns, dict) else getattr(ns, name, default)
