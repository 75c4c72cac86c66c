"""What the scripts read from a run dir and a data dir: fairseq's JSON train.log (losses, wall-clock, valid BLEU of
RUN/valid_bleu/), the checkpoints found by name, whether an output is older than its inputs, and the checks that a
data dir has what a script needs. The data dir's file names are datadir.layout's.

A run dir (scripts/train.py): RUN/train.log, RUN/train.json, RUN/checkpoints/, and what later steps add
(RUN/average.pt, RUN/eval/, RUN/valid_bleu/, RUN/plots/, RUN/summary.json).
"""
from __future__ import annotations

import calendar
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from clitools.files import read_json
from datadir import layout

from .cli import ScriptError

EPOCH = re.compile(r"^checkpoint(\d+)\.pt$")  # checkpointE.pt, saved at the end of epoch E
UPDATE = re.compile(r"^checkpoint_\d+_(\d+)\.pt$")  # checkpoint_E_U.pt, saved at update U (--save-interval-updates)
LOG_RECORDS = ("train_inner", "valid", "train")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \| ")  # fairseq's log line prefix
SESSION_START = "| fairseq.trainer | Preparing to load checkpoint "  # right after the trainer (its clock) starts
RESUMED = re.compile(r"\| fairseq\.trainer \| Loaded checkpoint .* @ (\d+) updates\)")
SAVED = re.compile(r"\| fairseq\.checkpoint_utils \| Saved checkpoint .* @ (\d+) updates")


def read_log(path):
    """fairseq --log-format json output -> {"train_inner": [...], "valid": [...], "train": [...]} of dicts of floats.

    Each record's "wall" is the run's training clock (s), rebuilt from the lines' timestamps because fairseq's own
    reads 0 after a resume (its stopwatch comes back from the checkpoint unstarted). The clock is the one fairseq
    saves in checkpoints (previous_training_time): a session resumed from the checkpoint of update U goes on from
    the time that checkpoint was saved, and the killed session's records after U are dropped (redone, not counted
    twice).
    """
    out = {tag: [] for tag in LOG_RECORDS}
    saved = {}  # update -> clock when its checkpoint was saved
    start = offset = None
    for line in Path(path).read_text(errors="replace").splitlines():
        clock = None  # an unstamped line keeps fairseq's wall
        if stamp := STAMP.match(line):
            now = calendar.timegm(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S"))
            if SESSION_START in line:
                start, offset = now, 0.0
            elif resumed := RESUMED.search(line):
                updates = int(resumed.group(1))
                offset = saved.get(updates) or 0.0
                for recs in out.values():
                    recs[:] = [r for r in recs if (_updates(r) or 0) <= updates]
            if start is not None:
                clock = offset + now - start
            if saved_at := SAVED.search(line):
                saved[int(saved_at.group(1))] = clock
        for tag in out:
            marker = f"| {tag} | "
            i = line.find(marker)
            if i >= 0:
                try:
                    rec = json.loads(line[i + len(marker):])
                except json.JSONDecodeError:
                    continue
                rec = {k: _num(v) for k, v in rec.items()}
                if clock is not None:
                    rec["wall"] = clock
                out[tag].append(rec)
    return out


def _updates(record):
    return next((record[k] for k in ("num_updates", "valid_num_updates", "train_num_updates") if k in record), None)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def wall_at(train, updates):
    """Training wall-clock (s) at an update count: that of the last train_inner record at or before it."""
    best = None
    for u, wall, _ in train:
        if updates is not None and u <= updates and (best is None or u >= best[0]):
            best = (u, wall)
    return best[1] if best else None


def run_curves(run_dir):
    """{train: [(updates, wall_s, loss)], valid: [(updates, wall_s, loss)], bleu: [(updates, wall_s, bleu)]}."""
    run_dir = Path(run_dir)
    logfile = run_dir / "train.log"
    if not logfile.is_file():
        raise ScriptError(f"no training log: {logfile}")
    recs = read_log(logfile)
    train = [(r["num_updates"], r["wall"], r["loss"]) for r in recs["train_inner"] if "loss" in r]
    valid, bleu = [], []
    for r in recs["valid"]:
        wall = wall_at(train, r.get("valid_num_updates"))
        valid.append((r.get("valid_num_updates"), wall, r.get("valid_loss")))
        if "valid_bleu" in r:
            bleu.append((r.get("valid_num_updates"), wall, r["valid_bleu"]))
    if not bleu:
        for res in sorted((run_dir / "valid_bleu").glob("*/results.json")):
            d = json.loads(res.read_text())
            c = d.get("checkpoint", {})
            if c.get("num_updates") is not None:
                bleu.append((c["num_updates"], c.get("training_seconds"), d["bleu_tokenized"]))
    bleu.sort(key=lambda x: x[0])
    return {"train": train, "valid": valid, "bleu": bleu}


def training_seconds(curves):
    """Training wall-clock (s) at the last train record (None when there is none): see read_log's clock."""
    return curves["train"][-1][1] if curves["train"] else None


def numbered_checkpoints(ckpt_dir, pattern):
    """[(number, path)] of the checkpoints whose names match pattern (EPOCH or UPDATE), oldest first."""
    return sorted((int(m.group(1)), p) for p in Path(ckpt_dir).glob("checkpoint*.pt") if (m := pattern.match(p.name)))


def kept_checkpoints(ckpt_dir):
    """[(updates or epoch, path)]: the update checkpoints when there are any, else the epoch checkpoints."""
    return numbered_checkpoints(ckpt_dir, UPDATE) or numbered_checkpoints(ckpt_dir, EPOCH)


def stale(target, sources):
    """Whether target is missing or older than any of sources."""
    target = Path(target)
    return not target.exists() or any(Path(s).stat().st_mtime > target.stat().st_mtime for s in sources)


def check_data_dir(data):
    """A fairseq data dir of our layout: exists, has the dictionaries. Returns the manifest (or {})."""
    data = Path(data)
    if not data.is_dir():
        raise ScriptError(f"data dir not found: {data}")
    for lang in layout.LANGS:
        if not layout.dictionary_file(data, lang).exists():
            raise ScriptError(f"{data} is not a fairseq data dir (missing {layout.dictionary_file(data, lang).name})")
    manifest = layout.manifest_file(data)
    return read_json(manifest) if manifest.exists() else {}


def check_split(data, split):
    if not layout.binary_file(data, split, layout.SRC).exists():
        have = layout.binarized_splits(data)
        raise ScriptError(f"unknown split {split!r} in {data} (have: {', '.join(have) or 'none'})")


def split_sizes(data, split):
    """{lang: tokens of each sentence (EOS included, numpy)} of a binarized split, from fairseq's index files."""
    from fairseq.data import data_utils

    sizes = {}
    for lang in layout.LANGS:
        dataset = data_utils.load_indexed_dataset(str(layout.binary_prefix(data, split, lang)), None)
        sizes[lang] = dataset.sizes.copy()  # a view of a memory map that is closed with the dataset object
    return sizes


@contextmanager
def locked(directory, what):
    """One `what` (train, race) at a time in directory: DIR/WHAT.pid holds the running one's pid, made atomically
    (O_EXCL); a lock whose process has ended is taken over. A ScriptError names the running one."""
    lock = Path(directory) / f"{what}.pid"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, IndexError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # its process has ended: a killed run's
                continue
            raise ScriptError(f"another {what} (pid {pid}) is running in {directory}; wait for it or kill it")
    else:
        raise ScriptError(f"cannot take the lock {lock}")
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


# how long a run trains and where its checkpoints go (RUN/checkpoints, wherever the run dir is): not what it is
NOT_IDENTITY = ("--max-update", "--stop-time-hours", "--keep-last-epochs", "--save-dir")


def identity(fairseq_command):
    """What a training run is, from its fairseq-train command (data dir, arch, seed, preset flags, precision, model
    options): {flag: value} of every option but the budget and the save dir (NOT_IDENTITY), the data dir under
    "DATA"."""
    words = [str(w) for w in fairseq_command]
    out = {"DATA": words[0]} if words and not words[0].startswith("-") else {}
    i = len(out)
    while i < len(words):
        flag, value = words[i], None
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            value, i = words[i + 1], i + 1
        if flag not in NOT_IDENTITY:
            out[flag] = value
        i += 1
    return out


def identity_difference(before, now):
    """The first option in which two identity() dicts differ, as words ('--seed 1, not 2'), or None."""
    for key in [*before, *(k for k in now if k not in before)]:
        if before.get(key) != now.get(key):
            name = "the data dir" if key == "DATA" else key
            return f"{name} {before.get(key, '(not given)')}, not {now.get(key, '(not given)')}"
    return None
