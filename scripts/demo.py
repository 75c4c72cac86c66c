"""The main job (`make demo`): prepare data, train cgc_lightconv_small for a bounded budget, average, evaluate,
plot, print a summary. A rerun reuses every finished step.

    python -m scripts.demo [--budget-minutes 30] [--corpus auto|iwslt14|multi30k] [--data DIR] [--run-dir DIR]
    python -m scripts.demo --run-dir runs/demo-warmup150 --warmup-updates 150   # extra flags go to fairseq-train

Corpus (--corpus auto): IWSLT'14 De-En when a local copy of the full release (the train.tags.de-en.* training
files, or de-en.tgz) is found under ../shared/data/iwslt14-de-en or --iwslt14-raw; otherwise the local
Multi30k copy (the network is never used when a local copy serves). The data dir is made by
`python data-bin-prep/prepare.py CORPUS --out DIR` when DIR/manifest.json is missing.
Steps (scripts/pipeline.py): 1 data, 2 train (scripts/train.py --preset small; extend with a larger
--budget-minutes: training resumes), 3 average the last --average checkpoints (scripts/average.py; the update
checkpoints of the small preset, every 50 updates, else the epoch checkpoints), 4 valid BLEU of each kept
checkpoint and of the candidates: the average, checkpoint_last.pt and checkpoint_best.pt (fairseq's best valid
loss); the one with the highest valid BLEU is the model the demo hands you (scripts/pipeline.py, as the race
chooses), 5 test BLEU of the chosen one and, beside it, of the others (scripts/evaluate.py), 6 plots of the chosen
one (scripts/plots.py). Flags the demo does not know go to fairseq-train after the preset's (scripts/train.py).
The console gets the step headers, a progress line during training and the summary; the full logs go to the run
dir (RUN_DIR/demo.log: data preparation, averaging, evaluation, plots; RUN_DIR/train.log: fairseq-train).
RUN_DIR/summary.json holds the numbers and paths printed at the end.
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.demo --help")

import sys
import time
from pathlib import Path

from clitools.files import read_json, write_json
from datadir import layout

from . import pipeline
from .cli import (BEAM, REPO, ScriptError, add_precision, add_threads, log, main_guard, parser, positive_float,
                  positive_int, run)
from .race_report import METRICS
from .rundir import kept_checkpoints

SHARED = REPO.parent / "shared" / "data"


def find_iwslt14(paths):
    """A local full IWSLT'14 release: a dir holding train.tags.de-en.{de,en} (at most 2 levels down) or de-en.tgz."""
    for base in paths:
        base = Path(base)
        if base.is_file() and base.name.endswith(".tgz"):
            return base
        if not base.is_dir():
            continue
        for pattern in ("train.tags.de-en.de", "*/train.tags.de-en.de", "*/*/train.tags.de-en.de"):
            for hit in base.glob(pattern):
                if hit.with_suffix(".en").exists():
                    return hit.parent
        for pattern in ("de-en.tgz", "*/de-en.tgz"):
            for hit in base.glob(pattern):
                return hit
    return None


def choose_corpus(args):
    """(corpus, raw path or None, reason)."""
    candidates = [p for p in (args.iwslt14_raw, SHARED / "iwslt14-de-en") if p]
    if args.corpus in ("auto", "iwslt14"):
        found = find_iwslt14(candidates)
        if found:
            return "iwslt14", found, f"a local full IWSLT'14 release was found at {found}"
        if args.corpus == "iwslt14":
            return "iwslt14", args.iwslt14_raw, ("--corpus iwslt14 given but no local full release found in "
                                                 f"{', '.join(map(str, candidates))}; prepare.py may download it")
        why = (f"no local full IWSLT'14 release (train.tags.de-en.* or de-en.tgz) in "
               f"{', '.join(map(str, candidates))} -- only its dev/test sets are there -- so the local Multi30k "
               f"copy is used (no download)")
        return "multi30k", None, why
    return "multi30k", None, "--corpus multi30k"


def step(n, title):
    log(f"===== step {n}/6: {title} =====")


def ensure_data(corpus, raw, data, explicit, logfile):
    """Prepare the data dir with data-bin-prep/prepare.py (its output to logfile) unless it is there already."""
    manifest = layout.manifest_file(data)
    if manifest.exists() and layout.binary_file(data, "test", layout.SRC).exists():
        m = read_json(manifest)
        if m.get("corpus") not in (None, corpus) and explicit:
            log(f"note: --data {data} holds {m.get('corpus')!r}; using it as given")
        elif m.get("corpus") not in (None, corpus):
            raise ScriptError(f"{data} holds {m.get('corpus')!r}, not {corpus!r}; pass another --data")
        log(f"data ready: {data} ({layout.MANIFEST} exists; reusing)")
        return
    cmd = [sys.executable, str(REPO / "data-bin-prep" / "prepare.py"), corpus, "--out", str(data)]
    if raw is not None:
        cmd += ["--raw", str(raw)]
    log(f"preparing {data} (log: {logfile})")
    seconds = run(cmd, stdout_path=logfile, append=True, echo=False, what="data-bin-prep/prepare.py")
    if not manifest.exists():
        raise ScriptError(f"data preparation finished without {manifest}")
    log(f"data ready: {data} ({seconds:.0f} s)")


def reusing(reused):
    return " (reusing results.json)" if reused else ""


def build_parser():
    p = parser("demo", __doc__)
    p.add_argument("--budget-minutes", type=positive_float, default=30.0,
                   help="training wall-clock budget (default: %(default)s); a larger value on a rerun resumes")
    p.add_argument("--corpus", choices=["auto", "iwslt14", "multi30k"], default="auto", help="default: %(default)s")
    p.add_argument("--iwslt14-raw", type=Path, help="a local IWSLT'14 release (dir with train.tags.* or de-en.tgz)")
    p.add_argument("--data", type=Path, help="data dir (default: data-bin/CORPUS.de-en)")
    # --run-dir, not --out: the resumable run of scripts/train.py and the steps after it (train.py's --run-dir)
    p.add_argument("--run-dir", type=Path, help="run dir (default: runs/demo-CORPUS-ARCH)")
    p.add_argument("--arch", default="cgc_lightconv_small", help="default: %(default)s")
    p.add_argument("--average", type=positive_int, default=3, help="average the last N kept checkpoints (default: %(default)s)")
    p.add_argument("--split", default="test", help="evaluation split (default: %(default)s)")
    p.add_argument("--preset", choices=["small", "tiny"], default="small",
                   help="training preset of scripts/train.py (default: %(default)s; tiny is for the tests)")
    add_precision(p, "training and decoding precision")
    add_threads(p)
    p.add_argument("--max-len-b", type=positive_int, help="cap on hypothesis length for decoding (fairseq's; default 200)")
    p.add_argument("--no-valid-bleu", action="store_true", help="skip step 4 (valid BLEU per kept checkpoint)")
    return p


@main_guard
def main(argv=None):
    args, train_flags = build_parser().parse_known_args(argv)
    train_flags = [a for a in train_flags if a != "--"]
    t0 = time.time()
    step(1, "data")
    corpus, raw, why = choose_corpus(args)
    log(f"corpus: {corpus} -- {why}")
    data = (args.data or REPO / "data-bin" / f"{corpus}.de-en").resolve()
    run_dir = (args.run_dir or REPO / "runs" / f"demo-{corpus}-{args.arch}").resolve()
    logfile = run_dir / "demo.log"
    ensure_data(corpus, raw, data, explicit=args.data is not None, logfile=logfile)
    ckpt_dir = run_dir / "checkpoints"

    step(2, f"train {args.arch} ({args.precision}, budget {args.budget_minutes:g} min of training)")
    precision = ["--precision", args.precision]
    threads = ["--threads", args.threads] if args.threads else []  # else each step's default: every core
    train_meta = pipeline.train(data, run_dir, "--preset", args.preset, "--arch", args.arch, "--budget-minutes",
                                args.budget_minutes, *precision, *threads, "--quiet", *train_flags)
    gen = pipeline.length_cap(args.max_len_b) + precision + threads

    step(3, f"average the last {args.average} checkpoints")
    kept = kept_checkpoints(ckpt_dir)
    if not kept:
        raise ScriptError(f"no checkpoint to average in {ckpt_dir}: the budget ended before the first save; "
                          f"rerun with a larger --budget-minutes")
    average, avg_inputs = pipeline.average(run_dir, kept, args.average, logfile=logfile)
    log(f"{average.name}: the average of {', '.join(p.name for p in avg_inputs)}")

    if not args.no_valid_bleu:
        step(4, f"valid BLEU of the kept checkpoints ({', '.join(p.name for _, p in kept)}) and the candidates")
        for _, p in kept:
            r, reused = pipeline.evaluate(p, data, "valid", run_dir / "valid_bleu" / p.stem, *gen, logfile=logfile)
            log(f"{p.name}: valid tokenized BLEU {r['bleu_tokenized']:.2f}{reusing(reused)}")
    else:
        step(4, "valid BLEU of the candidates (per kept checkpoint: skipped, --no-valid-bleu)")
    candidates = pipeline.candidates(run_dir, average)
    valid = {name: score(name, ckpt, data, "valid", run_dir, gen, logfile) for name, ckpt in candidates.items()}
    chosen = pipeline.choose_on_valid({name: r["bleu_tokenized"] for name, r in valid.items()})
    log(f"chosen on valid: {LABELS[chosen]} ({valid[chosen]['bleu_tokenized']:.2f})")

    step(5, f"translate and score {args.split}: {LABELS[chosen]} (chosen on valid), the others beside it")
    results = {name: score(name, ckpt, data, args.split, run_dir, gen, logfile) for name, ckpt in candidates.items()}

    step(6, "plots")
    plots = run_dir / "plots"
    pipeline.script("plots", "--runs", run_dir, "--labels", args.arch, "--checkpoint", candidates[chosen],
                    "--data", data, "--split", args.split, "--out", plots, logfile=logfile)
    pngs = [str(p) for p in sorted(plots.glob("*.png"))]

    result, last = results[chosen], results["last"]
    split_src = result.get("split_source") or args.split
    summary = {
        "corpus": corpus, "corpus_reason": why, "data_bin": str(data), "arch": args.arch,
        "parameters": result["parameters"], "budget_minutes": args.budget_minutes, "precision": args.precision,
        "train_flags": train_flags,
        "threads": train_meta.get("threads"), "machine": train_meta.get("machine"),
        "training_wall_seconds": train_meta.get("wall_seconds"), "updates": last["checkpoint"]["num_updates"],
        "epochs_started": last["checkpoint"]["epoch"], "averaged": [p.name for p in avg_inputs], "split": args.split,
        "split_source": split_src, "chosen": chosen, "chosen_by": "the highest valid tokenized BLEU",
        "valid": {name: {k: r[k] for k in METRICS} for name, r in valid.items()},
        "result": {k: result[k] for k in METRICS},
        **{name: {k: r[k] for k in METRICS} for name, r in results.items()},
        "sacrebleu_signature": result["scores"]["sacrebleu"]["signature"] if result["scores"]["sacrebleu"] else None,
        "tokenized_bleu_signature": result["scores"]["bleu_tokenized"]["signature"],
        "decode_sentences_per_second": result["decode"].get("sentences_per_second"),
        "results_json": {name: r["results_json"] for name, r in results.items()},
        "pngs": pngs, "demo_wall_seconds_this_invocation": round(time.time() - t0, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(run_dir / "summary.json", summary)
    print_summary(summary, args, valid, results, len(avg_inputs), logfile, run_dir, t0)
    return 0


LABELS = {"average": "the average", "last": "checkpoint_last", "best": "checkpoint_best"}


def score(name, checkpoint, data, split, run_dir, gen, logfile):
    """scripts/evaluate.py of one candidate on one split (reused when done): its results.json, and where it is."""
    out = run_dir / "eval" / f"{name}.{split}"
    r, reused = pipeline.evaluate(checkpoint, data, split, out, *gen, logfile=logfile)
    log(f"{checkpoint.name}: {split} tokenized BLEU {r['bleu_tokenized']:.2f}{reusing(reused)}")
    return r | {"results_json": str(out / "results.json")}


def print_summary(summary, args, valid, results, averaged, logfile, run_dir, t0):
    chosen = summary["chosen"]
    machine = summary.get("machine") or {}
    print("\n" + "=" * 78)
    print(f"corpus      {summary['corpus']} ({summary['corpus_reason']})")
    print(f"model       {args.arch} ({args.precision}), {summary['parameters']:,} parameters, {summary['updates']} "
          f"updates, stopped in epoch {summary['epochs_started']}, training "
          f"{(summary['training_wall_seconds'] or 0) / 60:.1f} min (budget {args.budget_minutes:g} min)")
    print(f"machine     {machine.get('cpu')} ({machine.get('cpu_capability')}), {summary['threads']} threads")
    print(f"the model, chosen on valid tokenized BLEU: {LABELS[chosen]}")
    print(f"{'':26} valid tok BLEU | {summary['split']} ({summary['split_source']}), beam {BEAM}:")
    for name, r in results.items():
        label = f"average of last {averaged}" if name == "average" else LABELS[name]
        sb = f"{r['sacrebleu']:.2f}" if r["sacrebleu"] is not None else "n/a"
        ch = f"{r['chrf']:.2f}" if r["chrf"] is not None else "n/a"
        mark = "*" if name == chosen else " "
        print(f"{mark} {label:<24} {valid[name]['bleu_tokenized']:6.2f}         | tokenized BLEU "
              f"{r['bleu_tokenized']:6.2f} | detok. sacreBLEU {sb} | chrF {ch}")
    print(f"sacreBLEU signature: {summary['sacrebleu_signature']}")
    print(f"results:    {results[chosen]['results_json']} (and beside it)")
    for p in summary["pngs"]:
        print(f"plot:       {p}")
    print(f"summary:    {run_dir / 'summary.json'}")
    print(f"logs:       {logfile}, {run_dir / 'train.log'}")
    print(f"demo wall-clock (this invocation): {(time.time() - t0) / 60:.1f} min")
    print("=" * 78)


if __name__ == "__main__":
    sys.exit(main())
