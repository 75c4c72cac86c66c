#!/usr/bin/env python3
"""The main job (`make demo`): prepare data, train cgc_lightconv_small for a bounded budget, average, evaluate,
plot, print a summary. A rerun reuses every finished step.

    python scripts/demo.py [--budget-minutes 30] [--corpus auto|iwslt14|multi30k] [--data-bin DIR] [--run-dir DIR]

Corpus (--corpus auto): IWSLT'14 De-En when a local copy of the full release (the train.tags.de-en.* training
files, or de-en.tgz) is found under ../shared/data/iwslt14-de-en or --iwslt14-raw; otherwise the local
Multi30k copy (the network is never used when a local copy serves). The data dir is made by
`python data-bin-prep/prepare.py CORPUS --out DIR` when DIR/manifest.json is missing.
Steps: 1 data, 2 train (scripts/train.py --preset small; extend with a larger --budget-minutes: training resumes),
3 average the last --average checkpoints (scripts/average.py; the update checkpoints of the small preset, every
50 updates, else the epoch checkpoints), 4 valid BLEU of each kept checkpoint,
5 test BLEU of the averaged and the last checkpoint (scripts/evaluate.py), 6 plots (scripts/plots.py).
RUN_DIR/summary.json holds the numbers and paths printed at the end.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_utils import REPO, SCRIPTS, Parser, ScriptError, log, main_guard, read_json, run, write_json  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
PY = sys.executable


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


def ensure_data(corpus, raw, data_bin, explicit):
    manifest = data_bin / "manifest.json"
    if manifest.exists() and (data_bin / "test.de-en.de.bin").exists():
        m = read_json(manifest)
        if m.get("corpus") not in (None, corpus) and explicit:
            log(f"note: --data-bin {data_bin} holds {m.get('corpus')!r}; using it as given")
        elif m.get("corpus") not in (None, corpus):
            raise ScriptError(f"{data_bin} holds {m.get('corpus')!r}, not {corpus!r}; pass another --data-bin")
        log(f"data ready: {data_bin} (manifest.json exists; reusing)")
        return
    cmd = [PY, str(REPO / "data-bin-prep" / "prepare.py"), corpus, "--out", str(data_bin)]
    if raw is not None:
        cmd += ["--raw", str(raw)]
    log("preparing data: " + " ".join(cmd))
    run(cmd, what="data-bin-prep/prepare.py")
    if not manifest.exists():
        raise ScriptError(f"data preparation finished without {manifest}")


def kept_checkpoints(ckpt_dir):
    """[(updates or epoch, path)]: the update checkpoints (checkpoint_E_U.pt, --save-interval-updates) when there
    are any, else the epoch checkpoints (checkpointE.pt); oldest first."""
    for pattern in (r"^checkpoint_\d+_(\d+)\.pt$", r"^checkpoint(\d+)\.pt$"):
        pat = re.compile(pattern)
        found = sorted((int(m.group(1)), p) for p in ckpt_dir.glob("checkpoint*.pt") if (m := pat.match(p.name)))
        if found:
            return found
    return []


def stale(target, sources):
    return not target.exists() or any(s.stat().st_mtime > target.stat().st_mtime for s in sources)


def build_parser():
    p = Parser.from_doc("demo.py", __doc__)
    p.add_argument("--budget-minutes", type=float, default=30.0,
                   help="training wall-clock budget (default: %(default)s); a larger value on a rerun resumes")
    p.add_argument("--corpus", choices=["auto", "iwslt14", "multi30k"], default="auto", help="default: %(default)s")
    p.add_argument("--iwslt14-raw", type=Path, help="a local IWSLT'14 release (dir with train.tags.* or de-en.tgz)")
    p.add_argument("--data-bin", type=Path, help="data dir (default: data-bin/CORPUS.de-en)")
    p.add_argument("--run-dir", type=Path, help="run dir (default: runs/demo-CORPUS-ARCH)")
    p.add_argument("--arch", default="cgc_lightconv_small", help="default: %(default)s")
    p.add_argument("--average", type=int, default=3, help="average the last N kept checkpoints (default: %(default)s)")
    p.add_argument("--split", default="test", help="evaluation split (default: %(default)s)")
    p.add_argument("--preset", choices=["small", "tiny"], default="small",
                   help="training preset of scripts/train.py (default: %(default)s; tiny is for the tests)")
    p.add_argument("--max-len-b", type=int, help="cap on hypothesis length for decoding (fairseq's; default 200)")
    p.add_argument("--no-valid-bleu", action="store_true", help="skip step 4 (valid BLEU per kept checkpoint)")
    return p


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    t0 = time.time()
    step(1, "data")
    corpus, raw, why = choose_corpus(args)
    log(f"corpus: {corpus} -- {why}")
    data_bin = (args.data_bin or REPO / "data-bin" / f"{corpus}.de-en").resolve()
    ensure_data(corpus, raw, data_bin, explicit=args.data_bin is not None)
    run_dir = (args.run_dir or REPO / "runs" / f"demo-{corpus}-{args.arch}").resolve()
    ckpt_dir = run_dir / "checkpoints"

    step(2, f"train {args.arch} (budget {args.budget_minutes:g} min of training)")
    run([PY, str(SCRIPTS / "train.py"), "--preset", args.preset, "--arch", args.arch, "--data", str(data_bin),
         "--run-dir", str(run_dir), "--budget-minutes", str(args.budget_minutes)], what="scripts/train.py")
    train_meta = read_json(run_dir / "train.json")

    gen = ["--max-len-a", "0", "--max-len-b", str(args.max_len_b)] if args.max_len_b else []

    step(3, f"average the last {args.average} checkpoints")
    epochs = kept_checkpoints(ckpt_dir)
    if not epochs:
        raise ScriptError(f"no checkpoint to average in {ckpt_dir}: the budget ended before the first save; "
                          f"rerun with a larger --budget-minutes")
    avg_inputs = [p for _, p in epochs[-args.average:]]
    average = run_dir / "average.pt"
    if stale(average, avg_inputs):
        run([PY, str(SCRIPTS / "average.py"), "--inputs", *map(str, avg_inputs), "--out", str(average)],
            what="scripts/average.py")
    else:
        log(f"{average} is newer than its inputs; reusing")

    if not args.no_valid_bleu:
        step(4, f"valid BLEU of the kept checkpoints ({', '.join(p.name for _, p in epochs)})")
        for _, p in epochs:
            run([PY, str(SCRIPTS / "evaluate.py"), "--checkpoint", str(p), "--data", str(data_bin), "--split", "valid",
                 "--out", str(run_dir / "valid_bleu" / p.stem), "--reuse", "--quiet", *gen], what="scripts/evaluate.py")
    else:
        step(4, "valid BLEU per checkpoint: skipped (--no-valid-bleu)")

    step(5, f"translate and score {args.split}")
    results = {}
    for name, ckpt in (("average", average), ("last", ckpt_dir / "checkpoint_last.pt")):
        out = run_dir / "eval" / f"{name}.{args.split}"
        run([PY, str(SCRIPTS / "evaluate.py"), "--checkpoint", str(ckpt), "--data", str(data_bin), "--split",
             args.split, "--out", str(out), "--reuse", "--quiet", *gen], what="scripts/evaluate.py")
        results[name] = read_json(out / "results.json") | {"results_json": str(out / "results.json")}

    step(6, "plots")
    plots = run_dir / "plots"
    run([PY, str(SCRIPTS / "plots.py"), "--runs", str(run_dir), "--labels", args.arch, "--checkpoint", str(average),
         "--data", str(data_bin), "--split", args.split, "--out", str(plots)], what="scripts/plots.py")
    pngs = [str(p) for p in sorted(plots.glob("*.png"))]

    avg, last = results["average"], results["last"]
    split_src = avg.get("split_source") or args.split
    summary = {
        "corpus": corpus, "corpus_reason": why, "data_bin": str(data_bin), "arch": args.arch,
        "parameters": avg["parameters"], "budget_minutes": args.budget_minutes,
        "training_wall_seconds": train_meta.get("wall_seconds"), "updates": last["checkpoint"]["num_updates"],
        "epochs_started": last["checkpoint"]["epoch"], "averaged": [p.name for p in avg_inputs], "split": args.split,
        "split_source": split_src,
        "average": {k: avg[k] for k in ("bleu_tokenized", "sacrebleu", "chrf")},
        "last": {k: last[k] for k in ("bleu_tokenized", "sacrebleu", "chrf")},
        "sacrebleu_signature": avg["scores"]["sacrebleu"]["signature"] if avg["scores"]["sacrebleu"] else None,
        "tokenized_bleu_signature": avg["scores"]["bleu_tokenized"]["signature"],
        "decode_sentences_per_second": avg["decode"].get("sentences_per_second"),
        "results_json": {"average": avg["results_json"], "last": last["results_json"]},
        "pngs": pngs, "demo_wall_seconds_this_invocation": round(time.time() - t0, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(run_dir / "summary.json", summary)
    print("\n" + "=" * 78)
    print(f"corpus      {corpus} ({why})")
    print(f"model       {args.arch}, {avg['parameters']:,} parameters, {summary['updates']} updates, "
          f"stopped in epoch {summary['epochs_started']}, training {(summary['training_wall_seconds'] or 0) / 60:.1f} min "
          f"(budget {args.budget_minutes:g} min)")
    print(f"{args.split} ({split_src}), beam 4:")
    for name, r in (("average of last " + str(len(avg_inputs)), avg),
                    ("checkpoint_last", last)):
        sb = f"{r['sacrebleu']:.2f}" if r["sacrebleu"] is not None else "n/a"
        ch = f"{r['chrf']:.2f}" if r["chrf"] is not None else "n/a"
        print(f"  {name:<24} tokenized BLEU {r['bleu_tokenized']:6.2f} | detok. sacreBLEU {sb} | chrF {ch}")
    print(f"sacreBLEU signature: {summary['sacrebleu_signature']}")
    print(f"results:    {avg['results_json']}")
    print(f"            {last['results_json']}")
    for p in pngs:
        print(f"plot:       {p}")
    print(f"summary:    {run_dir / 'summary.json'}")
    print(f"demo wall-clock (this invocation): {(time.time() - t0) / 60:.1f} min")
    print("=" * 78)
    return 0


if __name__ == "__main__":
    sys.exit(main())
