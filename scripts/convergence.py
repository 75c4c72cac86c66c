"""Training to convergence, the converged race's budget: validate every `every` updates, stop when the valid loss has
not improved for `patience` validations, at most `max_update` updates.

fairseq's own --patience forgets its count when a run resumes (it lives in a function attribute, not in the
checkpoint), so an interrupted run would train longer than an uninterrupted one. Here the rule is a function of the
valid losses in RUN/train.log, and scripts/train.py runs in chunks, each up to the first update at which the rule
could stop: a run stops at the same update however often it was killed and resumed (fairseq reseeds every update
and restores the data iterator, so the chunks train what one run would). fairseq validates and names a checkpoint
at every N updates except at an epoch's last update: a chunk ends at each update that is both (fairseq's stop
validates and saves there) and its checkpoint_last.pt is copied to the numbered name.
"""
from __future__ import annotations

import math
import shutil

from clitools.files import atomic_path

from .cli import ScriptError
from .checkpoint import load_checkpoint
from .pipeline import train
from .rundir import UPDATE, numbered_checkpoints, read_log

NO_EPOCH_EVENTS = "1000000"  # epochs: no end-of-epoch validation or checkpoint, only the every-N-updates ones


def fairseq_flags(every, patience, average):
    """fairseq-train flags: a checkpoint and a validation every `every` updates, and no others; enough of them kept
    for an average of `average` checkpoints ending at the best, `patience` validations before the stop."""
    return ["--save-interval-updates", str(every), "--keep-interval-updates", str(patience + average),
            "--save-interval", NO_EPOCH_EVENTS, "--validate-interval", NO_EPOCH_EVENTS, "--no-epoch-checkpoints"]


def valid_losses(run_dir, every):
    """[(updates, valid loss)] of the run's validations at multiples of `every`, in order (a validation repeated
    after a resume counts once, the later record)."""
    log = run_dir / "train.log"
    if not log.is_file():
        return []
    by_update = {}
    for r in read_log(log)["valid"]:
        updates = int(r.get("valid_num_updates") or 0)
        if updates and updates % every == 0 and r.get("valid_loss") is not None:
            by_update[updates] = r["valid_loss"]
    return sorted(by_update.items())


def state(losses, patience, max_update):
    """What the rule says of the validations so far: {best_update, best_loss, last_update, since_best, stopped
    ("patience", "max_update" or None)}. An improvement is a strictly lower loss as logged (3 decimals)."""
    best_update = best_loss = None
    since_best = 0
    for updates, loss in losses:
        if best_loss is None or loss < best_loss:
            best_update, best_loss, since_best = updates, loss, 0
        else:
            since_best += 1
    last = losses[-1][0] if losses else 0
    stopped = "patience" if since_best >= patience else "max_update" if last >= max_update else None
    return {"best_update": best_update, "best_loss": best_loss, "last_update": last, "since_best": since_best,
            "stopped": stopped, "validations": len(losses)}


def epoch_updates(run_dir):
    """Updates per epoch (the same every epoch: fixed batches, reshuffled), once the first epoch has ended; else None."""
    log = run_dir / "train.log"
    if not log.is_file():
        return None
    recs = read_log(log)
    if not any((r.get("epoch") or 0) >= 2 for r in recs["train_inner"]):
        return None
    return max(int(r["train_num_updates"]) for r in recs["train"] if r.get("epoch") == 1 and r.get("train_num_updates"))


def next_stop(st, every, patience, max_update, epoch=None):
    """The next chunk's --max-update: the first update at which the rule could stop, or, before it, the next
    multiple of `every` that ends an epoch (while the epoch's length is unknown: the next multiple)."""
    target = min(max_update, st["last_update"] + every * (patience - st["since_best"]))
    both = every if epoch is None else math.lcm(epoch, every)
    return min(target, (st["last_update"] // both + 1) * both)


def number_the_last(run_dir, updates, strict=True):
    """Give the checkpoint of a chunk's last update its numbered name where fairseq gave it none (an epoch's end).
    Not strict (a rerun after a kill): nothing when checkpoint_last.pt is of another update (the update is redone)."""
    ckpts = run_dir / "checkpoints"
    if any(u == updates for u, _ in numbered_checkpoints(ckpts, UPDATE)):
        return
    last = ckpts / "checkpoint_last.pt"
    if not strict and not last.is_file():
        return
    saved = load_checkpoint(last, mmap=True)
    if saved["optimizer_history"][-1]["num_updates"] != updates:
        if not strict:
            return
        raise ScriptError(f"{last} is not the checkpoint of update {updates}")
    with atomic_path(ckpts / f"checkpoint_{saved['extra_state']['train_iterator']['epoch']}_{updates}.pt") as tmp:
        shutil.copyfile(last, tmp)


def train_to_convergence(data, run_dir, *flags, every, patience, average, max_update, logfile=None):
    """scripts/train.py in chunks (a chunk is a resume with a larger --max-update) until the rule stops; returns
    the rule's final state()."""
    if max_update % every:
        raise ScriptError(f"--max-update {max_update} is not a multiple of the validation interval {every}")
    while True:
        st = state(valid_losses(run_dir, every), patience, max_update)
        if st["last_update"]:  # a kill may have come between the last chunk's end and its numbering
            number_the_last(run_dir, st["last_update"], strict=False)
        if st["stopped"]:
            return st
        target = next_stop(st, every, patience, max_update, epoch_updates(run_dir))
        train(data, run_dir, *flags, *fairseq_flags(every, patience, average), "--max-update", target, logfile=logfile)
        after = valid_losses(run_dir, every)
        if not after or after[-1][0] != target:  # fairseq stopped early (another stopping flag): the rule cannot go on
            raise ScriptError(f"{run_dir}: training stopped before update {target} (see {run_dir / 'train.log'})")
        number_the_last(run_dir, target)
