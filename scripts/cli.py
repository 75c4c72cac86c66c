"""What every script's command line shares on top of clitools (the one-line errors, the main guard, the log line,
shared with data-bin-prep/): the parser of scripts/NAME.py, the one vocabulary of its options (--precision, --beam
and the numeric types), subprocesses with a clear error, the thread settings of a process, and the record of where
it ran (command line, versions, CPU).

The vocabulary: --data a data dir, --checkpoint a checkpoint file (--checkpoints several), --out what the script
writes, --seed/--seeds, --split/--splits, --precision (add_precision), --beam (add_beam: BEAM for every decode). A
script that mirrors a fairseq tool keeps that tool's flags instead (translate.py: fairseq-interactive's).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from clitools import record
from clitools.command import Parser, UserError, guard, log  # noqa: F401  (log: the scripts' log line)
from clitools.files import atomic_path, ensure_dir, failed_path
from datadir import values

REPO = Path(__file__).resolve().parent.parent
USER_DIR = str(REPO / "cgc_fairseq")  # absolute: fairseq imports it by path, and checkpoints record it
BIN = Path(sys.executable).parent  # fairseq-train etc. live next to the interpreter of the venv
ScriptError = UserError  # a user-facing error: one `error: ...` line, exit status 1 (main_guard)
PR_SET_PDEATHSIG = 1  # prctl(2)
MODULES = ("torch", "fairseq", "sacrebleu", "sentencepiece", "sacremoses", "numpy", "matplotlib")  # in versions()


def parser(name, doc):
    """The parser of scripts/NAME.py: its description is the docstring's first paragraph, its epilog the rest."""
    return Parser.from_doc(f"python -m scripts.{name}", doc)


PRECISIONS = ("fp32", "bf16")  # cgc_fairseq.precision.PRECISIONS (not imported here: it loads torch and fairseq)
PRECISION_HELP = ("fp32, or bf16: the forward passes under torch.autocast, fp32 weights (the plugin's "
                  "translation_autocast task)")


def fast_precision(value):
    """The argparse type of --precision: bf16 only where the device the job runs on (CUDA when there is one, else the
    CPU) has native bf16; elsewhere it runs many times slower than fp32 (cgc_fairseq.precision.check_precision)."""
    if value == "bf16":
        import torch

        from cgc_fairseq.precision import check_precision

        try:
            check_precision(value, "cuda" if torch.cuda.is_available() else "cpu")
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return value


def add_precision(p, what, note="", several=False):
    """--precision (several: --precisions, one or more, for the bench: not refused where slow) on parser p,
    PRECISIONS, default fp32; its help says what it sets (`what`), then PRECISION_HELP, then the script's note."""
    if several:
        return p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32"],  # the bench measures
                              help=f"{what}: {PRECISION_HELP}{note} (default: %(default)s)")
    return p.add_argument("--precision", choices=PRECISIONS, default="fp32", type=fast_precision,
                          help=f"{what}: {PRECISION_HELP}{note} (default: %(default)s)")


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

BEAM = 4  # the beam of every decode: evaluate.py (so demo.py's and race.py's), translate.py, the bench's


def add_beam(p):
    """--beam (default BEAM) and --lenpen on parser p."""
    p.add_argument("--beam", type=positive_int, default=BEAM, help="beam size, >= 1 (default: %(default)s)")
    p.add_argument("--lenpen", type=finite_float, default=1.0, help="length penalty, finite (default: %(default)s)")


def quiet_logging():
    """Log warnings and errors only (the scripts print their own lines). Before fairseq is imported: its wav2vec2
    module calls logging.basicConfig(level=DEBUG) on import, which then does nothing (else every library's DEBUG
    lines, matplotlib's among them, would reach the console)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# main(argv) -> exit code, with quiet_logging(); a ScriptError becomes one `error:` line and exit 1, Ctrl-C a short note
main_guard = guard(status=1, setup=quiet_logging)


def script_command(name):
    """The command that runs scripts/NAME.py (as a module of this package) with this interpreter."""
    return [sys.executable, "-m", f"scripts.{name}"]


def fairseq_cli(name):
    """Path of a fairseq console script (fairseq-train, ...) next to this interpreter, else on PATH."""
    path = BIN / name
    return str(path) if path.exists() else name


def available_cores():
    """The cores this process may run on (its CPU affinity): the threads a single job uses unless told."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this OS
        return os.cpu_count() or 1


def add_threads(p):
    """--threads on parser p: a single job's torch threads, default available_cores()."""
    return p.add_argument("--threads", type=positive_int,
                          help=f"CPU threads for torch (OMP/MKL_NUM_THREADS), >= 1 (default: the cores this process "
                               f"may run on, {available_cores()} here)")


def thread_env(threads):
    """The environment that gives a child process `threads` CPU threads for torch ({} for torch's default)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}


def machine(threads):
    """The CPU a result was made on, for its JSON: the model, torch's CPU capability (the vector instructions its
    kernels use: AVX2, AVX512, ...), the cores this process may run on and the torch threads the job used."""
    import torch

    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": available_cores(), "threads": threads}


def log_target(stdout_path, append):
    """(the context that yields the file a command's output goes to, the log an error names) for run()."""
    if stdout_path is None:
        return nullcontext(os.devnull), None
    if append:
        ensure_dir(Path(stdout_path).parent)
        return nullcontext(stdout_path), stdout_path
    return atomic_path(stdout_path, keep_failed=True), failed_path(stdout_path)


def die_with_parent():
    """In a child, before it runs: Linux sends it SIGTERM when the thread that started it ends, however it ends
    (even killed with SIGKILL), so that no fairseq process outlives the script that started it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


RUNNING = set()  # the children of run() that have not ended, for end_children()


def end_children():
    """SIGTERM every child of run() still running (a race's workers' fairseq processes, on its main thread's kill)."""
    for proc in list(RUNNING):
        if proc.poll() is None:
            proc.terminate()


@contextmanager
def child(cmd, env):
    """The child process of run(), output piped; ended (SIGTERM, then SIGKILL after 10 s) if the block is left
    before it exits: an exception, Ctrl-C or the script's own SIGTERM (clitools.command.Terminated)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1,
                            cwd=REPO, preexec_fn=die_with_parent if sys.platform == "linux" else None)
    RUNNING.add(proc)
    try:
        yield proc
    finally:
        RUNNING.discard(proc)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


def run(cmd, *, stdout_path=None, append=False, echo=True, env=None, what=None, on_line=None):
    """Run cmd (a list) from the repo root. stdout (+stderr) is streamed to the console when echo, to stdout_path
    when given (written under a temp name, renamed when the command succeeds, left as NAME.failed when it fails; or
    appended to, with append=True, for a live log), and line by line to on_line when given. Raises ScriptError naming
    the command and the log on a non-zero exit. Returns the elapsed seconds."""
    what = what or Path(cmd[0]).name
    full_env = dict(os.environ, **(env or {}))
    start = time.time()
    tail = []
    target, kept = log_target(stdout_path, append)
    try:
        with target as path, open(path, "a" if append else "w") as out, child(cmd, full_env) as proc:
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
    """Python, the machine, the scripts' packages (MODULES) and the git commit, for the JSON a script writes."""
    return record.versions(MODULES, machine=True, repo=REPO)


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
