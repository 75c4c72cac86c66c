"""What every script's command line shares: one-line errors (`error: ...`, exit 1, no traceback), the argument
parser, log lines, subprocesses with a clear error, the thread settings of a process, and the record of where it
ran (command line, versions, CPU).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from datadir import values

REPO = Path(__file__).resolve().parent.parent
USER_DIR = str(REPO / "cgc_fairseq")  # absolute: fairseq imports it by path, and checkpoints record it
BIN = Path(sys.executable).parent  # fairseq-train etc. live next to the interpreter of the venv


class ScriptError(Exception):
    """A user-facing error: printed as one `error: ...` line, exit status 1."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (argparse's default prints the usage too)."""

    @classmethod
    def from_doc(cls, name, doc):
        """The parser of scripts/NAME.py: its description is the docstring's first paragraph, its epilog the rest."""
        description, epilog = doc.split("\n\n", 1)
        return cls(prog=f"python -m scripts.{name}", description=description, epilog=epilog,
                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


PRECISIONS = ("fp32", "bf16")  # cgc_fairseq.precision.PRECISIONS (not imported here: it loads torch and fairseq)


def precision_flags(precision):
    """fairseq flags for a compute precision: the plugin's translation_autocast task for bf16
    (cgc_fairseq/precision.py), nothing for fp32 (fairseq's translation task as it is)."""
    return [] if precision == "fp32" else ["--task", "translation_autocast", "--precision", precision]


# argparse types of datadir.values' rules (one-line errors in the rules' words, the same as the hub's)
positive_int = values.argument_type(values.positive_int)
nonnegative_int = values.argument_type(values.nonnegative_int)
finite_float = values.argument_type(values.finite_float)
positive_float = values.argument_type(values.positive_float)
nonnegative_float = values.argument_type(values.nonnegative_float)


def quiet_logging():
    """Log warnings and errors only (the scripts print their own lines). Before fairseq is imported: its wav2vec2
    module calls logging.basicConfig(level=DEBUG) on import, which then does nothing (else every library's DEBUG
    lines, matplotlib's among them, would reach the console)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main_guard(main):
    """Run main(argv) -> exit code, with quiet_logging(); ScriptError becomes one `error:` line, Ctrl-C a short
    note."""

    def wrapped(argv=None):
        quiet_logging()
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


def script_command(name):
    """The command that runs scripts/NAME.py (as a module of this package) with this interpreter."""
    return [sys.executable, "-m", f"scripts.{name}"]


def fairseq_cli(name):
    """Path of a fairseq console script (fairseq-train, ...) next to this interpreter, else on PATH."""
    path = BIN / name
    return str(path) if path.exists() else name


def thread_env(threads):
    """The environment that gives a child process `threads` CPU threads for torch ({} for torch's default)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}


def run(cmd, *, stdout_path=None, append=False, echo=True, env=None, what=None, on_line=None):
    """Run cmd (a list) from the repo root. stdout (+stderr) is streamed to the console when echo, to stdout_path
    when given (written under a temp name, renamed when the command succeeds, left as NAME.failed when it fails; or
    appended to, with append=True, for a live log), and line by line to on_line when given. Raises ScriptError naming
    the command and the log on a non-zero exit. Returns the elapsed seconds."""
    from .files import atomic_path, failed_path

    what = what or Path(cmd[0]).name
    full_env = dict(os.environ, **(env or {}))
    start = time.time()
    tail = []
    if stdout_path is not None:
        Path(stdout_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(stdout_path, enabled=not append, keep_failed=True) as path:
            kept = None if path is None else stdout_path if append else failed_path(stdout_path)
            with open(path if path is not None else os.devnull, "a" if append else "w") as out:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=full_env, bufsize=1, cwd=REPO)
                for line in proc.stdout:
                    out.write(line)
                    out.flush()
                    if echo:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    if on_line is not None:
                        on_line(line)
                    tail = (tail + [line.rstrip("\n")])[-15:]
                rc = proc.wait()
                if rc != 0:
                    where = f"; log: {kept}" if kept else ""
                    last = next((l for l in reversed(tail) if l.strip()), "")
                    if not echo and tail:
                        sys.stderr.write("\n".join(tail) + "\n")
                    raise ScriptError(f"{what} failed (exit {rc}){where}: {last.strip()[:300]}")
    except FileNotFoundError:
        raise ScriptError(f"{what}: command not found: {cmd[0]}")
    return time.time() - start


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


def command_line():
    """This process's command line, in the form that runs it again from the repo root (`python -m scripts.NAME`)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = ["-m", spec.name] if spec is not None and spec.name != "__main__" else sys.argv[:1]
    return shlex.join([sys.executable, *program, *sys.argv[1:]])
