"""Same-budget BLEU race: ungated LightConv/DynamicConv vs their context-gated versions, several seeds each.

    python -m scripts.race --data data-bin/multi30k.de-en --out runs/race --detach   # background; log in OUT/race.log
    python -m scripts.race --data data-bin/multi30k.de-en --out runs/race --report-only
    python -m scripts.race ... --models lightconv_small "cgc-channel=cgc_lightconv_small --cgc-gate channel"
    python -m scripts.race ... --models fp32=cgc_lightconv_small "bf16=cgc_lightconv_small --precision bf16" \\
        --pairs bf16:fp32

Every run (model x seed) is scripts/train.py --preset small with the same budget, --max-update updates (equal
updates, not equal wall-clock: the budget does not depend on how busy the cores are; each run's training
wall-clock is reported beside it), then: average of the last --average update checkpoints (a fixed rule: nothing
is selected on test); tokenized BLEU, detokenized sacreBLEU and chrF of the average on valid, test and test1
(Multi30k: test_2016_flickr and test_2017_flickr), beam 4; valid BLEU of the checkpoints at every --curve-every
updates (the curves; hypotheses capped at 1.2 x source length + 10); gate statistics of the gated models on --gate-sentences valid sentences.
--jobs runs at a time, --threads torch threads each (default 1). A run's finished steps are reused, an interrupted
training resumes from its checkpoint_last.pt, so rerunning the same command continues a killed race. Each gated
model is compared with the ungated conv of its kind (the arch without cgc_, no extra flags), seed by seed, or, with
--pairs, each LABEL with its BASELINE. --precision bf16 trains and decodes every run under autocast (scripts/train.py).

A model is ARCH or LABEL=ARCH FLAGS (one quoted word; FLAGS go to fairseq-train).
OUT gets one dir per run (LABEL/seedS: train.log, train.json, race.log, eval/, valid_bleu/, gate_stats.json,
summary.json) and race.json, race.md, curves.png for the whole race (scripts/race_report.py). The steps of a run are
scripts/pipeline.py's, as in scripts/demo.py.
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.race --help")

import argparse
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clitools.files import ensure_dir, read_json, write_json
from datadir import layout

from . import convergence, pipeline
from .cli import (REPO, ScriptError, add_precision, command_line, end_children, log, main_guard, nonnegative_int,
                  parser, positive_int, script_command, versions)
from .race_report import METRICS, gate_stats, report
from .rundir import (UPDATE, check_data_dir, check_split, locked, numbered_checkpoints, run_curves,
                     training_seconds)

DEFAULT_MODELS = ["lightconv_small", "cgc_lightconv_small", "dynamicconv_small", "cgc_dynamicconv_small"]
# the curve's early checkpoints babble to fairseq's 200-token cap and take longer to decode than to train: cap the
# hypotheses at 1.2 x source + 10 tokens there (the final scores keep fairseq's cap)
CURVE_CAP = ["--max-len-a", "1.2", "--max-len-b", "10"]


def parse_model(spec):
    """'ARCH' or 'LABEL=ARCH FLAGS' -> {label, arch, flags}."""
    label, sep, rest = spec.partition("=")
    if not sep:
        label, rest = spec, spec
    words = shlex.split(rest)
    if not label.strip() or not words or "/" in label:
        raise ScriptError(f"--models: bad model {spec!r} (want ARCH or LABEL=ARCH [fairseq flags])")
    return {"label": label.strip(), "arch": words[0], "flags": words[1:]}


def parse_pair(text):
    model, sep, baseline = text.partition(":")
    if not sep or not model or not baseline:
        raise argparse.ArgumentTypeError(f"want LABEL:BASELINE, got {text!r}")
    return model, baseline


def save_flags(args):
    if args.save_every is None:
        return []  # the preset's (small: every 50 updates, the last 6 kept)
    return ["--save-interval-updates", str(args.save_every), "--keep-interval-updates", "20"]


def run_one(model, seed, args):
    """Train, average, evaluate one model x seed; returns its summary (reused when already done)."""
    run_dir = args.out / model["label"] / f"seed{seed}"
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = read_json(summary_path)
        made = {k: summary.get(k) for k in ("arch", "flags", "seed")}
        if made != {"arch": model["arch"], "flags": model["flags"], "seed": seed}:
            raise ScriptError(f"{run_dir} is a run of {made}, not of this model {model['label']!r} "
                              f"({model['arch']} {' '.join(model['flags'])}, seed {seed}): use another --out")
        rule = {"max_update": args.max_update, "patience": args.patience, "average": args.average,
                "validate_every": args.validate_every if args.patience else None}
        if all(summary.get(k, v) == v for k, v in rule.items()):  # an older summary lacks all but max_update
            return summary
    logfile = run_dir / "race.log"
    ensure_dir(run_dir)
    t0 = time.time()
    log(f"start {model['label']} seed {seed} -> {run_dir}")
    precision = ("--precision", args.precision)
    flags = ("--preset", args.preset, "--arch", model["arch"], "--seed", seed, "--no-budget", "--threads", args.threads,
             *precision, *model["flags"])
    stop = None
    if args.patience:  # to convergence: the average ends at the best validation
        stop = convergence.train_to_convergence(
            args.data, run_dir, *flags, every=args.validate_every, patience=args.patience, average=args.average,
            max_update=args.max_update, logfile=logfile)
        ckpts = [(u, p) for u, p in numbered_checkpoints(run_dir / "checkpoints", UPDATE) if u <= stop["best_update"]]
        if ckpts and ckpts[-1][0] != stop["best_update"]:
            raise ScriptError(f"{run_dir}: no checkpoint of the best validation (update {stop['best_update']})")
    else:
        pipeline.train(args.data, run_dir, *flags, "--max-update", args.max_update, *save_flags(args), logfile=logfile)
        ckpts = numbered_checkpoints(run_dir / "checkpoints", UPDATE)
    if not ckpts:
        raise ScriptError(f"{run_dir}: training saved no update checkpoint")
    average, inputs = pipeline.average(run_dir, ckpts, args.average, logfile=logfile)
    threads = ("--threads", args.threads, *precision)
    scored = {"average": average} | ({"best": ckpts[-1][1]} if stop else {})  # best: the best validation's
    scores_of = {name: {split: pipeline.evaluate(ckpt, args.data, split, run_dir / "eval" / f"{name}.{split}",
                                                 *threads, *pipeline.length_cap(args.max_len_b), logfile=logfile)[0]
                        for split in args.splits} for name, ckpt in scored.items()}
    scores = scores_of["average"]
    losses = {name: pipeline.loss(ckpt, args.data, args.splits, run_dir / "eval" / f"{name}.loss.json", *threads,
                                  logfile=logfile) for name, ckpt in scored.items()}
    for updates, ckpt in ckpts:
        if updates % args.curve_every == 0:
            pipeline.evaluate(ckpt, args.data, "valid", run_dir / "valid_bleu" / ckpt.stem, *threads, *CURVE_CAP,
                              logfile=logfile)
    chosen, chosen_scores = choose_on_valid(run_dir, scored, scores_of, args, threads, logfile)
    stats = None
    if model["arch"].startswith("cgc_") and args.gate_sentences:
        stats = gate_stats(average, args.data, args.gate_sentences)
        write_json(run_dir / "gate_stats.json", stats)
    last = scores[args.splits[0]]["checkpoint"]
    summary = {
        "label": model["label"], "arch": model["arch"], "flags": model["flags"], "seed": seed,
        "max_update": args.max_update, "patience": args.patience, "average": args.average,
        "validate_every": args.validate_every if args.patience else None,
        "updates": stop["last_update"] if stop else last.get("num_updates"),  # where training stopped
        "training_wall_seconds": training_seconds(run_curves(run_dir)),  # every session, from train.log
        "parameters": scores[args.splits[0]]["parameters"],
        "averaged": [p.name for p in inputs],
        "scores": {split: {k: r[k] for k in METRICS} | {"split_source": r.get("split_source")}
                   for split, r in scores.items()},
        "best_scores": {split: {k: r[k] for k in METRICS} for split, r in scores_of["best"].items()} if stop else None,
        "loss": losses, "stop": stop,
        "chosen_on_valid": chosen, "chosen_scores": chosen_scores,
        "gate_stats": stats, "run_dir": str(run_dir), "race_step_seconds": round(time.time() - t0, 1),
    }
    write_json(summary_path, summary)
    log(f"done  {model['label']} seed {seed}: " + ", ".join(
        f"{split} {r['bleu_tokenized']:.2f}" for split, r in summary["scores"].items()))
    return summary


def choose_on_valid(run_dir, scored, scores_of, args, flags, logfile):
    """The model the run would hand a user, by the demo's rule (pipeline.choose_on_valid: the average, the last or
    the best-valid checkpoint, on valid BLEU): (its name, its scores on every split). The checkpoints already
    scored ({name: checkpoint}, their scores_of) stand for their names (to convergence: the rule's best validation
    for fairseq's checkpoint_best.pt). The race's comparisons stay on the average (its fixed rule); this is
    reported beside them."""
    if "valid" not in args.splits:
        return None, None
    candidates = pipeline.candidates(run_dir, scored["average"]) | scored

    def evaluate(name, split):  # each candidate and split scored once
        return scores_of[name][split] if name in scores_of else pipeline.evaluate(
            candidates[name], args.data, split, run_dir / "eval" / f"{name}.{split}", *flags,
            *pipeline.length_cap(args.max_len_b), logfile=logfile)[0]

    valid = {name: evaluate(name, "valid") for name in candidates}
    chosen = pipeline.choose_on_valid({name: r["bleu_tokenized"] for name, r in valid.items()})
    chosen_scores = {split: valid[chosen] if split == "valid" else evaluate(chosen, split) for split in args.splits}
    return chosen, {split: {k: r[k] for k in METRICS} for split, r in chosen_scores.items()}


def detach(argv, out):
    """Rerun this command in the background (own session, survives the terminal), output to OUT/race.log."""
    ensure_dir(out)
    logfile = out / "race.log"
    argv = [a for a in argv if a != "--detach"]
    with open(logfile, "a") as f:
        proc = subprocess.Popen([*script_command("race"), *argv], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO)
    log(f"race running in the background, pid {proc.pid}; log: {logfile}; report when done: {out / 'race.md'}")


def build_parser():
    p = parser("race", __doc__)
    p.add_argument("--data", type=Path, default=REPO / "data-bin" / "multi30k.de-en", help="default: %(default)s")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "race", help="default: %(default)s")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="default: %(default)s")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[1, 2, 3], help="default: %(default)s")
    p.add_argument("--max-update", type=positive_int, default=300, help="the budget, per run (default: %(default)s)")
    p.add_argument("--patience", type=positive_int,
                   help="train to convergence: stop when valid loss has not improved for this many validations "
                        "(scripts/convergence.py), at most --max-update updates; average the last --average "
                        "validation checkpoints ending at the best, and score the best alone too (default: a fixed "
                        "budget of --max-update updates)")
    p.add_argument("--validate-every", type=positive_int, default=200,
                   help="with --patience: validate and checkpoint every N updates (default: %(default)s)")
    p.add_argument("--jobs", type=positive_int, default=2, help="runs at a time (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch threads per run, for training and scoring (default: %(default)s; --jobs x --threads "
                        "at most the cores: one run alone trains faster on all of them)")
    p.add_argument("--average", type=positive_int, default=3, help="average the last N update checkpoints "
                                                                     "(default: %(default)s)")
    p.add_argument("--curve-every", type=positive_int, default=100,
                   help="valid BLEU of the checkpoints at multiples of this many updates (default: %(default)s)")
    p.add_argument("--save-every", type=positive_int,
                   help="checkpoint every N updates (default: the preset's; small: 50)")
    p.add_argument("--splits", nargs="+", default=["valid", "test", "test1"],
                   help="scored splits of the averaged model, if present in --data (default: %(default)s)")
    p.add_argument("--gate-sentences", type=nonnegative_int, default=100, help="valid sentences for gate statistics "
                                                                  "(0: none; default: %(default)s)")
    p.add_argument("--max-len-b", type=positive_int, help="cap on hypothesis length (fairseq's; default 200)")
    p.add_argument("--pairs", nargs="+", type=parse_pair, metavar="LABEL:BASELINE",
                   help="the seed-paired comparisons (default: each gated model vs the ungated arch of its kind)")
    add_precision(p, "training and decoding precision of every run",
                  "; a model's own --precision flag overrides it for its training")
    p.add_argument("--preset", choices=["small", "tiny"], default="small",
                   help="scripts/train.py preset (default: %(default)s; tiny is for the tests)")
    p.add_argument("--detach", action="store_true", help="run in the background (log: OUT/race.log)")
    p.add_argument("--report-only", action="store_true", help="write race.json/race.md/curves.png from the finished "
                                                              "runs and exit")
    return p


@main_guard
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    check_data_dir(args.data)
    args.data = args.data.resolve()
    args.out = args.out.resolve()
    args.splits = [s for s in args.splits if layout.binary_file(args.data, s, layout.SRC).exists()]
    for split in args.splits:
        check_split(args.data, split)
    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:
        raise ScriptError(f"--seeds: {', '.join(map(str, repeated))} given twice (a seed's runs would be counted twice)")
    models = [parse_model(s) for s in args.models]
    labels = [m["label"] for m in models]
    if len(set(labels)) != len(labels):
        raise ScriptError(f"--models: duplicate labels in {labels}")
    unknown = sorted({label for pair in args.pairs or [] for label in pair} - set(labels))
    if unknown:
        raise ScriptError(f"--pairs: no model labelled {', '.join(unknown)} (models: {', '.join(labels)})")
    if args.patience and args.max_update % args.validate_every:
        raise ScriptError(f"--max-update {args.max_update} is not a multiple of --validate-every {args.validate_every}")
    if args.detach:
        detach(argv, args.out)
        return 0
    jobs = [(m, s) for s in args.seeds for m in models]  # seed-major: a pair's runs share the cores' load
    done_paths = [args.out / m["label"] / f"seed{s}" / "summary.json" for m, s in jobs]
    if args.report_only:
        summaries = [read_json(p) for p in done_paths if p.exists()]
        missing = [f"{m['label']}/seed{s}" for (m, s), p in zip(jobs, done_paths) if not p.exists()]
        report(models, summaries, args, missing)
        return 0
    ensure_dir(args.out)
    with locked(args.out, "race"):
        return race(args, models, labels, jobs, done_paths)


def race(args, models, labels, jobs, done_paths):
    """Run the jobs (args.jobs at a time), then the report; a kill or Ctrl-C ends every running fairseq process."""
    write_json(args.out / "race_config.json", {"models": models, "args": {k: str(v) if isinstance(v, Path) else v
                                                                       for k, v in vars(args).items()},
                                               "command": command_line(), "versions": versions()})
    log(f"race: {len(jobs)} runs ({', '.join(labels)} x seeds {args.seeds}), {args.max_update} updates each, "
        f"{args.jobs} at a time, {args.threads} thread(s) each -> {args.out}")
    failures = []

    def guarded(job):
        try:
            return run_one(*job, args)
        except ScriptError as e:
            log(f"FAILED {job[0]['label']} seed {job[1]}: {e}")
            failures.append(f"{job[0]['label']}/seed{job[1]}: {e}")
            return None

    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        summaries = [s for s in pool.map(guarded, jobs) if s is not None]
    except KeyboardInterrupt:  # the workers' children would run on: end them, and the queued jobs
        pool.shutdown(wait=False, cancel_futures=True)
        end_children()
        raise
    pool.shutdown()
    missing = [f"{m['label']}/seed{s}" for (m, s), p in zip(jobs, done_paths) if not p.exists()]
    report(models, summaries, args, missing)
    if failures:
        raise ScriptError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
