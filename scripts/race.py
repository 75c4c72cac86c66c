#!/usr/bin/env python3
"""Same-budget BLEU race: ungated LightConv/DynamicConv vs their context-gated versions, several seeds each.

    python scripts/race.py --data data-bin/multi30k.de-en --out runs/race --detach   # background; log in OUT/race.log
    python scripts/race.py --data data-bin/multi30k.de-en --out runs/race --report-only
    python scripts/race.py ... --models lightconv_small "cgc-channel=cgc_lightconv_small --cgc-gate channel"

Every run (model x seed) is scripts/train.py --preset small with the same budget, --max-update updates (equal
updates, not equal wall-clock: the budget does not depend on how busy the cores are; each run's training
wall-clock is reported beside it), then: average of the last --average update checkpoints (a fixed rule: nothing
is selected on test); tokenized BLEU, detokenized sacreBLEU and chrF of the average on valid, test and test1
(Multi30k: test_2016_flickr and test_2017_flickr), beam 4; valid BLEU of the checkpoints at every --curve-every
updates (the curves; hypotheses capped at 1.2 x source length + 10); gate statistics of the gated models on --gate-sentences valid sentences.
--jobs runs at a time, one thread each. A run's finished steps are reused, an interrupted training resumes from
its checkpoint_last.pt, so rerunning the same command continues a killed race. Each gated model is compared
with the ungated conv of its kind (the arch without cgc_, no extra flags), seed by seed.

A model is ARCH or LABEL=ARCH FLAGS (one quoted word; FLAGS go to fairseq-train).
OUT gets one dir per run (LABEL/seedS: train.log, train.json, race.log, eval/, valid_bleu/, gate_stats.json,
summary.json) and race.json, race.md, curves.png for the whole race.
"""
from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from average import UPDATE  # noqa: E402
from script_utils import (REPO, SCRIPTS, Parser, ScriptError, check_data_dir, check_split, command_line,  # noqa: E402
                          cpu_model, log, main_guard, positive_int, read_json, run, versions, write_atomic, write_json)

PY = sys.executable
DEFAULT_MODELS = ["lightconv_small", "cgc_lightconv_small", "dynamicconv_small", "cgc_dynamicconv_small"]
METRICS = ("bleu_tokenized", "sacrebleu", "chrf")
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


def baseline_of(model, models):
    """The ungated model of the same kind: arch without the cgc_ prefix and no extra flags."""
    if not model["arch"].startswith("cgc_"):
        return None
    want = model["arch"][len("cgc_"):]
    return next((m for m in models if m["arch"] == want and not m["flags"]), None)


def update_checkpoints(ckpt_dir):
    """[(updates, path)] of checkpoint_E_U.pt (average.py's UPDATE pattern), oldest first."""
    return sorted((int(m.group(1)), p) for p in ckpt_dir.glob("checkpoint_*_*.pt")
                  if (m := UPDATE.match(p.name)))


def save_flags(args):
    if args.save_every is None:
        return []  # the preset's (small: every 50 updates, the last 6 kept)
    return ["--save-interval-updates", str(args.save_every), "--keep-interval-updates", "20"]


def evaluate(ckpt, split, out, logfile, args, cap=None):
    if cap is None:
        cap = ["--max-len-a", "0", "--max-len-b", str(args.max_len_b)] if args.max_len_b else []
    run([PY, str(SCRIPTS / "evaluate.py"), "--checkpoint", str(ckpt), "--data", str(args.data), "--split", split,
         "--out", str(out), "--reuse", "--quiet", "--threads", "1", *cap],
        stdout_path=logfile, append=True, echo=False, what=f"evaluate.py {split} ({out})")
    return read_json(out / "results.json")


def gate_stats(checkpoint, data, n):
    """Per gated layer: mean and spread of G on n valid sentences (teacher forced). `spread` = mean over the
    gate's entries of their std across sentences (encoder) or across positions and sentences (decoder): 0 means
    a constant gate, i.e. no context dependence."""
    import numpy as np
    import plots

    got = plots.collect_gates(checkpoint, data, "valid", n)
    if got is None:
        return None
    _, enc, dec = got
    out = {}
    for side, per_sentence in (("encoder", enc), ("decoder", dec)):
        for layer in range(len(per_sentence[0])):
            if per_sentence[0][layer] is None:
                continue
            # encoder: n x H x K; decoder: (sum of T) x H x K
            g = (np.stack([s[layer] for s in per_sentence]) if side == "encoder"
                 else np.concatenate([s[layer] for s in per_sentence]))
            out[f"{side}.{layer}"] = {
                "mean": float(g.mean()), "std": float(g.std()), "min": float(g.min()), "max": float(g.max()),
                "saturated_low": float((g < 0.05).mean()), "saturated_high": float((g > 0.95).mean()),
                "spread": float(g.std(axis=0).mean()),
            }
    return out


def run_one(model, seed, args):
    """Train, average, evaluate one model x seed; returns its summary (reused when already done)."""
    run_dir = args.out / model["label"] / f"seed{seed}"
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = read_json(summary_path)
        if summary.get("max_update") == args.max_update:
            return summary
    logfile = run_dir / "race.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log(f"start {model['label']} seed {seed} -> {run_dir}")
    run([PY, str(SCRIPTS / "train.py"), "--preset", args.preset, "--arch", model["arch"], "--seed", str(seed),
         "--data", str(args.data), "--run-dir", str(run_dir), "--max-update", str(args.max_update),
         "--budget-minutes", "0", "--threads", "1", *save_flags(args), *model["flags"]],
        stdout_path=logfile, append=True, echo=False, what=f"train.py ({run_dir})")
    train = read_json(run_dir / "train.json")
    ckpts = update_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise ScriptError(f"{run_dir}: training saved no update checkpoint")
    average = run_dir / "average.pt"
    inputs = [p for _, p in ckpts[-args.average:]]
    if not average.exists() or any(p.stat().st_mtime > average.stat().st_mtime for p in inputs):
        run([PY, str(SCRIPTS / "average.py"), "--inputs", *map(str, inputs), "--out", str(average)],
            stdout_path=logfile, append=True, echo=False, what="average.py")
    scores = {split: evaluate(average, split, run_dir / "eval" / f"average.{split}", logfile, args)
              for split in args.splits}
    for updates, ckpt in ckpts:
        if updates % args.curve_every == 0:
            evaluate(ckpt, "valid", run_dir / "valid_bleu" / ckpt.stem, logfile, args, cap=CURVE_CAP)
    stats = None
    if model["arch"].startswith("cgc_") and args.gate_sentences:
        stats = gate_stats(average, args.data, args.gate_sentences)
        write_json(run_dir / "gate_stats.json", stats)
    last = scores[args.splits[0]]["checkpoint"]
    summary = {
        "label": model["label"], "arch": model["arch"], "flags": model["flags"], "seed": seed,
        "max_update": args.max_update, "updates": last.get("num_updates"),
        "training_wall_seconds": train.get("wall_seconds"), "parameters": scores[args.splits[0]]["parameters"],
        "averaged": [p.name for p in inputs],
        "scores": {split: {k: r[k] for k in METRICS} | {"split_source": r.get("split_source")}
                   for split, r in scores.items()},
        "gate_stats": stats, "run_dir": str(run_dir), "race_step_seconds": round(time.time() - t0, 1),
    }
    write_json(summary_path, summary)
    log(f"done  {model['label']} seed {seed}: " + ", ".join(
        f"{split} {r['bleu_tokenized']:.2f}" for split, r in summary["scores"].items()))
    return summary


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


def aggregate(models, summaries, splits):
    """Per model: mean +- std (over seeds) of every score; per gated model: seed-paired deltas to its baseline."""
    by_model = {}
    for m in models:
        runs = [s for s in summaries if s["label"] == m["label"]]
        by_model[m["label"]] = {
            "arch": m["arch"], "flags": m["flags"], "seeds": [s["seed"] for s in runs],
            "parameters": runs[0]["parameters"] if runs else None,
            "training_minutes": mean_std([s["training_wall_seconds"] / 60 for s in runs
                                          if s["training_wall_seconds"]]),
            "scores": {split: {k: mean_std([s["scores"][split][k] for s in runs]) for k in METRICS}
                       for split in splits},
            "last_checkpoint_valid_bleu": mean_std([s.get("last_checkpoint_valid_bleu") for s in runs]),
            "last_valid_loss": mean_std([s.get("last_valid_loss") for s in runs]),
        }
    pairs = []
    for m in models:
        base = baseline_of(m, models)
        if base is None:
            continue
        g = {s["seed"]: s for s in summaries if s["label"] == m["label"]}
        b = {s["seed"]: s for s in summaries if s["label"] == base["label"]}
        seeds = sorted(set(g) & set(b))
        pair = {"gated": m["label"], "baseline": base["label"], "seeds": seeds, "delta": {}}
        for split in splits:
            for k in ("bleu_tokenized", "sacrebleu"):
                deltas = [g[s]["scores"][split][k] - b[s]["scores"][split][k] for s in seeds
                          if g[s]["scores"][split][k] is not None and b[s]["scores"][split][k] is not None]
                d = mean_std(deltas)
                if d is not None:
                    noise = max((by_model[label]["scores"][split][k] or {}).get("std") or 0.0
                                for label in (m["label"], base["label"]))
                    # "beats by more than the seed noise": the mean gain exceeds the larger seed std of the two
                    d |= {"seed_noise": noise, "beyond_noise": len(deltas) > 1 and d["mean"] > noise}
                pair["delta"][f"{split}.{k}"] = d
        for key in ("last_checkpoint_valid_bleu", "last_valid_loss"):
            pair["delta"][key] = mean_std([g[s][key] - b[s][key] for s in seeds
                                           if g[s].get(key) is not None and b[s].get(key) is not None])
        pairs.append(pair)
    return by_model, pairs


def fmt(ms, digits=2):
    if ms is None:
        return "n/a"
    if ms["std"] is None:
        return f"{ms['mean']:.{digits}f} (n=1)"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def markdown(report):
    splits = report["splits"]
    sources = report["split_sources"]
    head = ["model", "params", "train min"] + [f"{s} ({sources.get(s) or s}) {k}" for s in splits
                                               for k in ("tok BLEU", "sacreBLEU")] + ["last ckpt valid tok BLEU*", "last valid loss*"]
    lines = [f"Budget: {report['budget']}. Mean ± std over seeds {report['seeds']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in report["models"].items():
        cells = [label, f"{m['parameters']:,}" if m["parameters"] else "n/a", fmt(m["training_minutes"], 1)]
        cells += [fmt(m["scores"][s][k]) for s in splits for k in ("bleu_tokenized", "sacrebleu")]
        cells += [fmt(m["last_checkpoint_valid_bleu"]), fmt(m["last_valid_loss"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Scores of the average of the last checkpoints (the fixed rule), except *: the last checkpoint "
              "alone: valid BLEU from the curve (hypotheses capped at 1.2 x source + 10 tokens) and fairseq's valid loss "
              "(label-smoothed cross-entropy, base 2; lower is better)."]
    if report["pairs"]:
        lines += ["", "Seed-paired difference, gated − ungated (mean ± std of the per-seed differences; "
                  "'beyond noise' = mean gain larger than the larger seed std of the two models):", "",
                  "| gated vs ungated | " + " | ".join(f"{s} {k}" for s in splits for k in ("tok", "sacre"))
                  + " | last ckpt valid tok* | last valid loss* |", "|---|" + "---|" * (2 * len(splits) + 2)]
        for p in report["pairs"]:
            cells = []
            for s in splits:
                for k in ("bleu_tokenized", "sacrebleu"):
                    d = p["delta"].get(f"{s}.{k}")
                    cells.append("n/a" if d is None else
                                 f"{d['mean']:+.2f}" + (f" ± {d['std']:.2f}" if d["std"] is not None else "")
                                 + (" (beyond noise)" if d["beyond_noise"] else ""))
            for key, digits in (("last_checkpoint_valid_bleu", 2), ("last_valid_loss", 3)):
                d = p["delta"][key]
                cells.append("n/a" if d is None else f"{d['mean']:+.{digits}f}"
                             + (f" ± {d['std']:.{digits}f}" if d["std"] else ""))
            lines.append(f"| {p['gated']} vs {p['baseline']} | " + " | ".join(cells) + " |")
    gates = report.get("gate_stats")
    if gates:
        lines += ["", "Gate statistics of the averaged gated models (valid sentences; mean over seeds): "
                  "mean G, fraction < 0.05 / > 0.95, spread = std of each gate entry across inputs/positions.", "",
                  "| model | layer | mean | min | max | <0.05 | >0.95 | spread |", "|---|---|---|---|---|---|---|---|"]
        for label, layers in gates.items():
            for layer, s in layers.items():
                lines.append(f"| {label} | {layer} | {s['mean']:.3f} | {s['min']:.3f} | {s['max']:.3f} | "
                             f"{s['saturated_low']:.3f} | {s['saturated_high']:.3f} | {s['spread']:.3f} |")
    return "\n".join(lines) + "\n"


def mean_gate_stats(summaries):
    out = {}
    for s in summaries:
        for layer, st in (s.get("gate_stats") or {}).items():
            out.setdefault(s["label"], {}).setdefault(layer, []).append(st)
    return {label: {layer: {k: statistics.fmean(d[k] for d in sts) for k in sts[0]} for layer, sts in layers.items()}
            for label, layers in out.items()}


def plot_race(models, summaries, out):
    """Valid loss and valid BLEU vs updates and vs training wall-clock; one colour per model, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plots

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(models):
        for j, s in enumerate(x for x in summaries if x["label"] == m["label"]):
            curves = plots.run_curves(s["run_dir"])
            for row, key in ((0, "valid"), (1, "bleu")):
                for col, xi, scale in ((0, 0, 1.0), (1, 1, 1 / 60)):
                    pts = [(p[xi], p[2]) for p in curves[key] if p[xi] is not None and p[2] is not None]
                    axes[row, col].plot([x * scale for x, _ in pts], [y for _, y in pts], "o-", ms=3, lw=1,
                                        color=colours[i % len(colours)], label=m["label"] if j == 0 else None)
    for col, xl in ((0, "updates"), (1, "training wall-clock (min)")):
        axes[0, col].set(xlabel=xl, ylabel="valid loss (label-smoothed CE, base 2)")
        axes[1, col].set(xlabel=xl, ylabel="valid BLEU (tokenized, beam 4)")
        for row in (0, 1):
            axes[row, col].grid(alpha=0.3)
            axes[row, col].legend(fontsize=8)
    fig.tight_layout()
    plots.save_fig(fig, out)


def last_checkpoint_valid_bleu(summary):
    """Valid BLEU (tokenized; the curve's capped decoding) of the run's last checkpoint, from its curve."""
    for res in Path(summary["run_dir"]).glob("valid_bleu/*/results.json"):
        r = read_json(res)
        if r.get("checkpoint", {}).get("num_updates") == summary["updates"]:
            return r["bleu_tokenized"]
    return None


def last_valid_loss(summary):
    """fairseq's valid loss (label-smoothed, base 2) at the run's last update, from its train.log."""
    import plots

    at_end = [loss for updates, _, loss in plots.run_curves(summary["run_dir"])["valid"]
              if updates == summary["updates"]]
    return at_end[-1] if at_end else None


def training_seconds(summary):
    """Training wall-clock from train.log: fairseq's `wall` restarts at 0 when a killed run resumes, so the
    sessions' last values are summed (updates redone after a resume count: they were spent)."""
    import plots

    total, last = 0.0, 0.0
    for _, wall, _ in plots.run_curves(summary["run_dir"])["train"]:
        if wall < last:  # a resumed session
            total += last
        last = wall
    return total + last or summary.get("training_wall_seconds")


def report(models, summaries, args, missing):
    for s in summaries:
        s["training_wall_seconds"] = training_seconds(s)
        s["last_checkpoint_valid_bleu"] = last_checkpoint_valid_bleu(s)
        s["last_valid_loss"] = last_valid_loss(s)
    by_model, pairs = aggregate(models, summaries, args.splits)
    sources = {}
    for s in summaries:
        for split, r in s["scores"].items():
            sources.setdefault(split, r.get("split_source"))
    rep = {
        "budget": f"{args.max_update} updates per run ({args.preset} preset of scripts/train.py, one thread, "
                  f"{args.jobs} runs at a time), average of the last {args.average} update checkpoints, beam 4",
        "max_update": args.max_update, "seeds": args.seeds, "splits": args.splits, "split_sources": sources,
        "models": by_model, "pairs": pairs, "gate_stats": mean_gate_stats(summaries), "missing_runs": missing,
        "runs": summaries, "data": str(args.data), "command": command_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "versions": versions(),
    }
    write_json(args.out / "race.json", rep)
    md = markdown(rep)
    if missing:
        md += f"\nNot finished (yet): {', '.join(missing)}\n"
    write_atomic(args.out / "race.md", md)
    if summaries:
        plot_race(models, summaries, args.out / "curves.png")
    print(md, flush=True)
    return rep


def detach(argv, out):
    """Rerun this command in the background (own session, survives the terminal), output to OUT/race.log."""
    out.mkdir(parents=True, exist_ok=True)
    logfile = out / "race.log"
    argv = [a for a in argv if a != "--detach"]
    with open(logfile, "a") as f:
        proc = subprocess.Popen([PY, str(Path(__file__).resolve()), *argv], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO)
    log(f"race running in the background, pid {proc.pid}; log: {logfile}; report when done: {out / 'race.md'}")


def take_lock(out):
    """One race per OUT dir: OUT/race.pid names the running one."""
    lock = out / "race.pid"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip())
            os.kill(pid, 0)
            raise ScriptError(f"another race (pid {pid}) is running in {out}; wait for it or kill it")
        except (ValueError, ProcessLookupError):
            pass
    write_atomic(lock, f"{os.getpid()}\n")
    return lock


def build_parser():
    p = Parser.from_doc("race.py", __doc__)
    p.add_argument("--data", type=Path, default=REPO / "data-bin" / "multi30k.de-en", help="default: %(default)s")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "race", help="default: %(default)s")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="default: %(default)s")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="default: %(default)s")
    p.add_argument("--max-update", type=positive_int, default=300, help="the budget, per run (default: %(default)s)")
    p.add_argument("--jobs", type=positive_int, default=2, help="runs at a time (default: %(default)s)")
    p.add_argument("--average", type=positive_int, default=3, help="average the last N update checkpoints "
                                                                     "(default: %(default)s)")
    p.add_argument("--curve-every", type=positive_int, default=100,
                   help="valid BLEU of the checkpoints at multiples of this many updates (default: %(default)s)")
    p.add_argument("--save-every", type=positive_int,
                   help="checkpoint every N updates (default: the preset's; small: 50)")
    p.add_argument("--splits", nargs="+", default=["valid", "test", "test1"],
                   help="scored splits of the averaged model, if present in --data (default: %(default)s)")
    p.add_argument("--gate-sentences", type=int, default=100, help="valid sentences for gate statistics "
                                                                  "(0: none; default: %(default)s)")
    p.add_argument("--max-len-b", type=positive_int, help="cap on hypothesis length (fairseq's; default 200)")
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
    args.splits = [s for s in args.splits if (args.data / f"{s}.de-en.de.bin").exists()]
    for split in args.splits:
        check_split(args.data, split)
    models = [parse_model(s) for s in args.models]
    labels = [m["label"] for m in models]
    if len(set(labels)) != len(labels):
        raise ScriptError(f"--models: duplicate labels in {labels}")
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
    args.out.mkdir(parents=True, exist_ok=True)
    lock = take_lock(args.out)
    try:
        write_json(args.out / "race_config.json", {"models": models, "args": {k: str(v) if isinstance(v, Path) else v
                                                                           for k, v in vars(args).items()},
                                                   "command": command_line(), "versions": versions()})
        log(f"race: {len(jobs)} runs ({', '.join(labels)} x seeds {args.seeds}), {args.max_update} updates each, "
            f"{args.jobs} at a time -> {args.out}")
        failures = []

        def guarded(job):
            try:
                return run_one(*job, args)
            except ScriptError as e:
                log(f"FAILED {job[0]['label']} seed {job[1]}: {e}")
                failures.append(f"{job[0]['label']}/seed{job[1]}: {e}")
                return None

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            summaries = [s for s in pool.map(guarded, jobs) if s is not None]
        missing = [f"{m['label']}/seed{s}" for (m, s), p in zip(jobs, done_paths) if not p.exists()]
        report(models, summaries, args, missing)
    finally:
        lock.unlink(missing_ok=True)
    if failures:
        raise ScriptError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
