"""The steps after data preparation, as demo.py and race.py run them: train (scripts/train.py), average the last
checkpoints (scripts/average.py), translate and score (scripts/evaluate.py). Each step is a subprocess whose output
goes to the console or, with a logfile, is appended to it; each reuses what is already done."""
from __future__ import annotations

from clitools.files import read_json

from .cli import log, run, script_command
from .rundir import stale


def script(name, *args, logfile=None, what=None):
    """Run scripts/NAME.py with args; its output to the console, or appended to logfile."""
    run([*script_command(name), *map(str, args)], stdout_path=logfile, append=True, echo=logfile is None,
        what=f"scripts/{name}.py" + (f" ({what})" if what else ""))


def length_cap(max_len_b):
    """fairseq-generate flags that cap hypotheses at max_len_b tokens (none: fairseq's default cap)."""
    return ["--max-len-a", "0", "--max-len-b", str(max_len_b)] if max_len_b else []


def train(data, run_dir, *flags, logfile=None):
    """Train into run_dir (a finished run is reused, an interrupted one resumes); returns RUN/train.json."""
    script("train", "--data", data, "--run-dir", run_dir, *flags, logfile=logfile, what=run_dir)
    return read_json(run_dir / "train.json")


def average(run_dir, checkpoints, n, logfile=None):
    """RUN/average.pt of the last n of checkpoints ([(number, path)], oldest first), remade only when older than
    them; returns (its path, the averaged paths)."""
    inputs = [p for _, p in checkpoints[-n:]]
    out = run_dir / "average.pt"
    if stale(out, inputs):
        script("average", "--checkpoints", *inputs, "--out", out, logfile=logfile)
    else:
        log(f"{out} is newer than its inputs; reusing")
    return out, inputs


def evaluate(checkpoint, data, split, out, *flags, logfile=None):
    """Translate and score split into out (reused when done with the same checkpoint and options); returns
    (OUT/results.json, whether it was reused)."""
    results = out / "results.json"
    before = results.stat().st_mtime_ns if results.exists() else None
    script("evaluate", "--checkpoint", checkpoint, "--data", data, "--split", split, "--out", out, "--reuse",
           "--quiet", *flags, logfile=logfile, what=f"{split}, {out}")
    return read_json(results), results.stat().st_mtime_ns == before
