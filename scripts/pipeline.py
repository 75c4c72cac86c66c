"""The steps after data preparation, as demo.py and race.py run them: train (scripts/train.py), average the last
checkpoints (scripts/average.py), translate and score (scripts/evaluate.py), the teacher-forced loss
(scripts/loss.py). Each step is a subprocess whose output goes to the console or, with a logfile, is appended to it;
each reuses what is already done."""
from __future__ import annotations

from clitools.files import read_json

from .checkpoint import load_checkpoint
from .cli import ScriptError, log, run, script_command
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
    """RUN/average.pt of the last n of checkpoints ([(number, path)], oldest first), remade unless it is the average
    of exactly these (its record `averaged_from`) and newer than them; returns (its path, the averaged paths)."""
    inputs = [p for _, p in checkpoints[-n:]]
    out = run_dir / "average.pt"
    if stale(out, inputs) or averaged_from(out) != [str(p) for p in inputs]:
        script("average", "--checkpoints", *inputs, "--out", out, logfile=logfile)
    else:
        log(f"{out} is the average of the same checkpoints and newer than them; reusing")
    return out, inputs


def averaged_from(checkpoint):
    """The checkpoints an average of scripts/average.py was made from (None for another file or none)."""
    try:
        return load_checkpoint(checkpoint, mmap=True).get("averaged_from")
    except ScriptError:  # not there, not readable: remade
        return None


CANDIDATES = ("average", "last", "best")  # the average of the last N, checkpoint_last.pt, checkpoint_best.pt


def candidates(run_dir, average_checkpoint):
    """{name: checkpoint} of the models a run can hand its user (CANDIDATES; best: fairseq's best valid loss), those
    that exist."""
    paths = {"average": average_checkpoint, "last": run_dir / "checkpoints" / "checkpoint_last.pt",
             "best": run_dir / "checkpoints" / "checkpoint_best.pt"}
    return {name: path for name, path in paths.items() if path.is_file()}


def choose_on_valid(valid_bleu):
    """The model a run hands its user, chosen on valid only: of {name: valid tokenized BLEU}, the highest; a tie goes
    to the earlier of CANDIDATES (the average first). Nothing of test enters the choice."""
    return max(valid_bleu, key=lambda name: (valid_bleu[name], -CANDIDATES.index(name)))


def evaluate(checkpoint, data, split, out, *flags, logfile=None):
    """Translate and score split into out (reused when done with the same checkpoint and options); returns
    (OUT/results.json, whether it was reused)."""
    results = out / "results.json"
    before = results.stat().st_mtime_ns if results.exists() else None
    script("evaluate", "--checkpoint", checkpoint, "--data", data, "--split", split, "--out", out, "--reuse",
           "--quiet", *flags, logfile=logfile, what=f"{split}, {out}")
    return read_json(results), results.stat().st_mtime_ns == before


def loss(checkpoint, data, splits, out, *flags, logfile=None):
    """The teacher-forced loss of checkpoint on splits into the JSON file out (scripts/loss.py; reused when made of the
    same checkpoint, data and splits); returns its {split: {loss, nll_loss}}."""
    script("loss", "--checkpoint", checkpoint, "--data", data, "--splits", *splits, "--out", out, "--reuse", *flags,
           logfile=logfile, what=f"loss, {out}")
    return read_json(out)["losses"]
