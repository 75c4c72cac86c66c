"""Train a (context-gated) LightConv/DynamicConv translation model with fairseq-train, from a preset.

    python -m scripts.train --data data-bin/multi30k.de-en --run-dir runs/small --preset small --budget-minutes 30
    python -m scripts.train --data data-bin/iwslt14.de-en --run-dir runs/paper --preset paper \\
        --arch cgc_dynamicconv_iwslt_de_en
    python -m scripts.train ... --arch lightconv_small --max-update 2000 --lr 1e-3   # extra flags go to fairseq

Presets:
  paper  Wu et al. (2019) IWSLT'14 recipe for one GPU: *_iwslt_de_en archs, adam (0.9, 0.98), lr 5e-4, inverse_sqrt
         warm-up 4000 from 1e-7, weight decay 1e-4, dropout 0.3, attention/weight dropout 0.1, label smoothing 0.1,
         max-tokens 4000, 50k updates, GLU off, keep the last 10 epoch checkpoints.
  small  the *_small archs for a 2-core CPU: shared embeddings, adam (0.9, 0.98), lr 1.5e-3, inverse_sqrt warm-up
         300, dropout 0.3, weight dropout 0.1, label smoothing 0.1, max-tokens 4000; stops after --budget-minutes
         of training (fairseq --stop-time-hours, checkpoints are saved when it stops) or --max-update.
  tiny   a few-second model for the tests.

Any fairseq-train flag not known here passes through (and overrides the preset). fairseq's own
lightconv_iwslt_de_en defaults to DynamicConv; given that arch, this script adds --encoder-conv-type lightweight
--decoder-conv-type lightweight unless you pass a conv type yourself. The run dir gets train.log
(fairseq's JSON log), train.json (the exact fairseq command, preset, versions, status) and checkpoints/.
fairseq's log is echoed to the console too; with --quiet the console gets a progress line instead (updates, loss,
minutes left of the budget), at most one a minute.
Valid loss is logged after each epoch; valid BLEU is computed afterwards on the kept epoch checkpoints
(scripts/evaluate.py --split valid; scripts/demo.py does it), not with fairseq's --eval-bleu: that stores numpy
arrays in the checkpoints, which torch >= 2.6 refuses to load with weights_only=True (fairseq-generate and
resuming would fail).

A finished run with the same command is not retrained (--force retrains from scratch); a changed budget or
--max-update resumes from checkpoints/checkpoint_last.pt.
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.train --help")

import json
import shlex
import shutil
import sys
import time
import zipfile
from pathlib import Path

from clitools.files import atomic_path, check_output_dir, ensure_dir, read_json, write_json

from .cli import (USER_DIR, ScriptError, add_precision, add_threads, available_cores, command_line, fairseq_cli, log,
                  machine, main_guard, nonnegative_int, parser, positive_float, positive_int, precision_flags, run,
                  thread_env, versions)
from .rundir import check_data_dir, check_split, identity, identity_difference, locked

COMMON = ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr-scheduler", "inverse_sqrt",
          "--warmup-init-lr", "1e-07", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
          "--dropout", "0.3", "--weight-dropout", "0.1",
          # fairseq's batch_by_size drops a last batch whose size is not a multiple of this (8 by default): with 1,
          # validation sees every valid sentence
          "--required-batch-size-multiple", "1"]

PRESETS = {
    "paper": {
        "arch": "cgc_lightconv_iwslt_de_en",
        "max_update": 50000,
        "keep_last": 10,
        "flags": COMMON + ["--lr", "5e-4", "--warmup-updates", "4000", "--weight-decay", "0.0001",
                           "--attention-dropout", "0.1", "--encoder-glu", "0", "--decoder-glu", "0",
                           "--clip-norm", "0.0", "--max-tokens", "4000", "--stop-min-lr", "1e-09",
                           "--log-interval", "100"],
    },
    "small": {
        "arch": "cgc_lightconv_small",
        "max_update": 100000,  # a cap; the wall-clock budget normally stops it first
        "budget_minutes": 30.0,
        "keep_last": 6,
        "flags": COMMON + ["--share-all-embeddings", "--lr", "1.5e-3", "--warmup-updates", "300",
                           "--max-tokens", "4000", "--num-workers", "0", "--log-interval", "10",
                           # a 30-minute CPU run is ~3 epochs: average (and validate at) update checkpoints
                           "--save-interval-updates", "50", "--keep-interval-updates", "6"],
    },
    "tiny": {
        "arch": "cgc_lightconv_small",
        "max_update": 30,
        "keep_last": 3,
        "flags": COMMON + ["--share-all-embeddings", "--lr", "5e-3", "--warmup-updates", "5",
                           "--max-tokens", "400", "--num-workers", "0", "--log-interval", "2",
                           "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
                           "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
                           "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
                           "--encoder-layers", "2", "--decoder-layers", "1",
                           "--encoder-kernel-size-list", "[3,5]", "--decoder-kernel-size-list", "[3]"],
    },
}


def build_parser():
    p = parser("train", __doc__)
    p.add_argument("--data", required=True, help="fairseq data dir (from data-bin-prep/prepare.py)")
    # --run-dir, not --out: a run dir is the state of a resumable run (checkpoints/, train.json) that a rerun
    # continues, not an output written anew (demo.py's --run-dir likewise)
    p.add_argument("--run-dir", required=True, help="where train.log, train.json and checkpoints/ go")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small", help="default: %(default)s")
    p.add_argument("--arch", help="model arch (default: the preset's, cgc_lightconv_small / "
                                  "cgc_lightconv_iwslt_de_en); any registered arch, gated or baseline")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-minutes", type=positive_float,
                        help="stop after this much training wall-clock, > 0 (fairseq --stop-time-hours); default 30 "
                             "for 'small', none otherwise")
    budget.add_argument("--no-budget", action="store_true",
                        help="no wall-clock budget: train until --max-update (or fairseq's other stopping flags)")
    p.add_argument("--max-update", type=positive_int, help="update cap, >= 1 (default: the preset's)")
    p.add_argument("--keep-last", type=positive_int, help="epoch checkpoints to keep, >= 1 (default: the preset's)")
    p.add_argument("--seed", type=nonnegative_int, default=1, help="random seed, >= 0 (default: %(default)s)")
    add_precision(p, "training precision", "; fp32 optimizer state too; any arch")
    add_threads(p)
    p.add_argument("--force", action="store_true", help="delete the run dir's checkpoints and train from scratch")
    p.add_argument("--dry-run", action="store_true", help="print the fairseq-train command and exit")
    p.add_argument("--quiet", action="store_true",
                   help="a progress line a minute on the console instead of fairseq's log (which is in train.log)")
    return p


def check_arch(arch):
    import cgc_fairseq  # noqa: F401  (registers the cgc archs and the *_small baselines)
    from fairseq.models import ARCH_MODEL_REGISTRY

    if arch not in ARCH_MODEL_REGISTRY:
        near = sorted(a for a in ARCH_MODEL_REGISTRY if "conv" in a or a.startswith("transformer_iwslt"))
        raise ScriptError(f"unknown --arch {arch!r} (e.g. {', '.join(near)})")


def max_update(args):
    return args.max_update if args.max_update is not None else PRESETS[args.preset]["max_update"]


def budget_minutes(args):
    """The wall-clock budget in minutes: --budget-minutes, none with --no-budget, else the preset's (or none)."""
    if args.no_budget:
        return None
    return args.budget_minutes if args.budget_minutes is not None else PRESETS[args.preset].get("budget_minutes")


def fairseq_command(args, extra, save_dir):
    preset = PRESETS[args.preset]
    arch = args.arch or preset["arch"]
    cmd = [fairseq_cli("fairseq-train"), str(Path(args.data).resolve()), "--user-dir", USER_DIR,
           "--arch", arch, "--source-lang", "de", "--target-lang", "en", "--seed", str(args.seed),
           *preset["flags"], *precision_flags(args.precision),
           "--max-update", str(max_update(args)),
           "--save-dir", str(save_dir), "--keep-last-epochs", str(args.keep_last or preset["keep_last"]),
           "--log-format", "json"]
    budget = budget_minutes(args)
    if budget is not None:
        hours = f"{budget / 60:.6f}"
        if float(hours) == 0:  # fairseq reads --stop-time-hours 0 as no budget
            raise ScriptError(f"argument --budget-minutes: {budget:g} rounds to 0 hours in fairseq's --stop-time-hours "
                              f"(6 decimals), which fairseq reads as no budget")
        cmd += ["--stop-time-hours", hours]
    if arch == "lightconv_iwslt_de_en" and not any(a.startswith(("--encoder-conv-type", "--decoder-conv-type"))
                                                   for a in extra):
        # fairseq's lightconv_iwslt_de_en builds DynamicConv unless told otherwise; the name promises LightConv
        cmd += ["--encoder-conv-type", "lightweight", "--decoder-conv-type", "lightweight"]
    return cmd + list(extra), arch, budget


def intact(checkpoint):
    """A complete torch.save zip archive (every member's CRC checks out)."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def repair_resume_point(save_dir):
    """fairseq saves the first checkpoint name atomically but copies it to the others, checkpoint_last.pt
    included, with a plain file copy: a kill during that copy leaves a truncated checkpoint_last.pt that fairseq
    cannot resume from. Set it aside and resume from the newest intact checkpoint instead."""
    last = save_dir / "checkpoint_last.pt"
    if not last.exists() or intact(last):
        return
    last.replace(last.with_name("checkpoint_last.pt.corrupt"))
    kept = sorted((p for p in save_dir.glob("checkpoint*.pt") if intact(p)), key=lambda p: p.stat().st_mtime)
    if not kept:
        log(f"{last} was truncated (kept as checkpoint_last.pt.corrupt) and no intact checkpoint is left: "
            "training starts from scratch")
        return
    with atomic_path(last) as tmp:
        shutil.copyfile(kept[-1], tmp)
    log(f"{last} was truncated (kept as checkpoint_last.pt.corrupt); resuming from {kept[-1].name}")


class Progress:
    """Called with each line of fairseq-train's output: prints updates, loss and the minutes left of the budget from
    its train_inner records, at most once a minute (budget None: no minutes left; after a resume fairseq's `wall`
    no longer counts the run's time, though its budget stop does)."""

    EVERY_SECONDS = 60

    def __init__(self, budget_minutes):
        self.budget = budget_minutes
        self.printed = None

    def __call__(self, line):
        marker = "| train_inner | "
        if marker not in line or (self.printed is not None and time.time() - self.printed < self.EVERY_SECONDS):
            return
        try:
            record = json.loads(line.split(marker, 1)[1])
            updates, loss, wall = int(float(record["num_updates"])), float(record["loss"]), float(record["wall"])
        except (ValueError, KeyError):
            return
        left = f", {max(self.budget - wall / 60, 0):.1f} min left" if self.budget else ""
        log(f"update {updates}, loss {loss:.3f}{left}")
        self.printed = time.time()


@main_guard
def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    manifest = check_data_dir(args.data)
    for split in ("train", "valid"):
        check_split(args.data, split)
    run_dir = Path(args.run_dir)
    check_output_dir(run_dir, "--run-dir")
    save_dir = (run_dir / "checkpoints").resolve()
    cmd, arch, budget = fairseq_command(args, extra, save_dir)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    threads = args.threads or available_cores()
    meta_path = run_dir / "train.json"
    if meta_path.exists() and not args.force:
        meta = read_json(meta_path)
        if meta.get("status") == "done" and meta.get("fairseq_command") == cmd[1:]:
            log(f"training already finished in {run_dir} (train.json); --force retrains")
            return 0
        difference = identity_difference(identity(meta.get("fairseq_command") or []), identity(cmd[1:]))
        if difference and (save_dir / "checkpoint_last.pt").exists():  # it would resume another run's checkpoint
            raise ScriptError(f"{run_dir} holds a run trained with {difference}: only the budget may change on a "
                              f"rerun (another --run-dir, or --force to start afresh there)")
    check_arch(arch)
    ensure_dir(run_dir)
    with locked(run_dir, "train"):
        return train(args, run_dir, save_dir, cmd, arch, budget, threads, manifest, extra)


def train(args, run_dir, save_dir, cmd, arch, budget, threads, manifest, extra):
    """Train into run_dir (under its lock): a fresh start with --force, else a new run or a resumed one."""
    meta_path = run_dir / "train.json"
    if args.force and run_dir.exists():
        shutil.rmtree(save_dir, ignore_errors=True)
        for name in ("train.log", "train.json"):
            (run_dir / name).unlink(missing_ok=True)
    ensure_dir(run_dir)
    if save_dir.exists():
        repair_resume_point(save_dir)
    resumed = (save_dir / "checkpoint_last.pt").exists()
    meta = {"status": "running", "preset": args.preset, "arch": arch, "data": str(Path(args.data).resolve()),
            "corpus": manifest.get("corpus"), "budget_minutes": budget, "seed": args.seed,
            "precision": args.precision,
            "threads": threads, "machine": machine(threads), "max_update": max_update(args), "extra_flags": extra,
            "script_command": command_line(), "fairseq_command": cmd[1:],
            "fairseq_command_line": shlex.join(cmd),
            "resumed_from_checkpoint": resumed, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": versions()}
    write_json(meta_path, meta)
    log(f"training {arch} ({args.preset} preset{f', budget {budget:g} min' if budget else ''}) on {args.data}"
        f" -> {run_dir}{' (resuming)' if resumed else ''}")
    if not args.quiet:
        log("command: " + meta["fairseq_command_line"])
    try:
        seconds = run(cmd, stdout_path=run_dir / "train.log", append=True, what="fairseq-train",
                      env=thread_env(threads), echo=not args.quiet,
                      on_line=Progress(None if resumed else budget) if args.quiet else None)
    except (KeyboardInterrupt, ScriptError) as e:  # Ctrl-C, kill, a failed fairseq-train: fairseq-train has ended
        meta.update(status="killed" if isinstance(e, KeyboardInterrupt) else "failed",
                    finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_json(meta_path, meta)
        raise
    if not (save_dir / "checkpoint_last.pt").exists():
        raise ScriptError(f"fairseq-train finished but wrote no checkpoint in {save_dir}; see {run_dir / 'train.log'}")
    meta.update(status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_seconds=round(seconds, 1))
    write_json(meta_path, meta)
    log(f"training done in {seconds / 60:.1f} min; checkpoints in {save_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
