"""The race's report: gate statistics of a run, mean ± std over seeds, seed-paired deltas of each gated model to its
ungated baseline, and OUT/race.json, race.md and curves.png from the runs' summaries and logs."""
from __future__ import annotations

import os
import statistics
import time

from pathlib import Path

from clitools.files import read_json, write_atomic, write_json

from .cli import BEAM, command_line, cpu_model, versions
from .plots import collect_gates, plot_curves
from .rundir import run_curves, training_seconds, wall_at
from .significance import bootstrap_pairs, t_interval

METRICS = ("bleu_tokenized", "sacrebleu", "chrf")
LOSSES = ("loss", "nll_loss")  # scripts/loss.py's, of the average
UNIT = 0.01  # gate_stats: a standardised encoding value within this of +-1 counts as one bit


def baseline_of(model, models):
    """The ungated model of the same kind: arch without the cgc_ prefix and no extra flags."""
    if not model["arch"].startswith("cgc_"):
        return None
    want = model["arch"][len("cgc_"):]
    return next((m for m in models if m["arch"] == want and not m["flags"]), None)


def gate_stats(checkpoint, data, n):
    """Per gated layer: mean and spread of G on n valid sentences (teacher forced). `spread` = mean over the
    gate's entries of their std across sentences (encoder) or across positions and sentences (decoder): 0 means
    a constant gate, i.e. no context dependence. `sentence_spread` = the same across sentences only (a decoder
    sentence's gate averaged over its positions first). `encoding_at_unit` = the fraction of the context encoding's
    values that its norm standardises to within UNIT of +-1 (1.0: one bit per value; None without an encoding)."""
    import numpy as np

    got = collect_gates(checkpoint, data, "valid", n)
    if got is None:
        return None
    _, enc, dec, encodings = got
    out = {}
    for side, per_sentence in (("encoder", enc), ("decoder", dec)):
        for layer in range(len(per_sentence[0])):
            if per_sentence[0][layer] is None:
                continue
            # encoder: n x H x K; decoder: (sum of T) x H x K
            g = (np.stack([s[layer] for s in per_sentence]) if side == "encoder"
                 else np.concatenate([s[layer] for s in per_sentence]))
            sentences = np.stack([s[layer] if side == "encoder" else s[layer].mean(0) for s in per_sentence])
            encoding = encodings[side][layer]
            out[f"{side}.{layer}"] = {
                "mean": float(g.mean()), "std": float(g.std()), "min": float(g.min()), "max": float(g.max()),
                "saturated_low": float((g < 0.05).mean()), "saturated_high": float((g > 0.95).mean()),
                "spread": float(g.std(axis=0).mean()), "sentence_spread": float(sentences.std(axis=0).mean()),
                "encoding_at_unit": None if encoding is None else float((np.abs(np.abs(encoding) - 1) < UNIT).mean()),
            }
    return out


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


def comparisons(models, pairs=None):
    """[(model, baseline)]: the given LABEL:BASELINE pairs, else each gated model with the ungated model of its kind."""
    if pairs:
        by_label = {m["label"]: m for m in models}
        return [(by_label[a], by_label[b]) for a, b in pairs]
    return [(m, base) for m in models if (base := baseline_of(m, models)) is not None]


def aggregate(models, summaries, splits, pairs=None):
    """Per model: mean +- std (over seeds) of every score; per compared model (comparisons()): seed-paired deltas to
    its baseline."""
    by_model = {}
    for m in models:
        runs = [s for s in summaries if s["label"] == m["label"]]
        by_model[m["label"]] = {
            "arch": m["arch"], "flags": m["flags"], "seeds": [s["seed"] for s in runs],
            "parameters": runs[0]["parameters"] if runs else None,
            "speed": speed(runs),
            "scores": {split: {k: mean_std([s["scores"][split][k] for s in runs]) for k in METRICS}
                       for split in splits},
            "last_checkpoint_valid_bleu": mean_std([s.get("last_checkpoint_valid_bleu") for s in runs]),
            "last_valid_loss": mean_std([s.get("last_valid_loss") for s in runs]),
            "best_valid_loss": mean_std([s.get("best_valid_loss") for s in runs]),
            "loss": {split: {k: mean_std([s["loss"]["average"][split][k] for s in runs if s.get("loss")])
                             for k in LOSSES} for split in splits},
            "stopped_at": mean_std([s["stop"]["last_update"] for s in runs if s.get("stop")]),
            "best_update": mean_std([s["stop"]["best_update"] for s in runs if s.get("stop")]),
        }
    compared = []
    for m, base in comparisons(models, pairs):
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
            for k in LOSSES:
                pair["delta"][f"{split}.{k}"] = mean_std(
                    [g[s]["loss"]["average"][split][k] - b[s]["loss"]["average"][split][k] for s in seeds
                     if g[s].get("loss") and b[s].get("loss")])
        for key in ("last_checkpoint_valid_bleu", "last_valid_loss", "best_valid_loss"):
            pair["delta"][key] = mean_std([g[s][key] - b[s][key] for s in seeds
                                           if g[s].get(key) is not None and b[s].get(key) is not None])
        pair["delta"] = {key: with_interval(d) for key, d in pair["delta"].items()}
        pair["paired_bootstrap"] = bootstrap_pairs(g, b, [s for s in splits if s != "valid"])
        compared.append(pair)
    return by_model, compared


def updates_per_hour(run):
    """A run's training speed (None without a training clock)."""
    if run["training_wall_seconds"] and run.get("updates"):
        return run["updates"] * 3600 / run["training_wall_seconds"]
    return None


def speed_group(run):
    """The CPU and threads of a run ("CPU, N threads"): speeds are comparable within one group only."""
    return f"{run.get('cpu') or 'unknown CPU'}, {run.get('threads') or '?'} thread(s)"


def speed(runs):
    """Per speed_group(): runs, training minutes, updates per hour and, to
    convergence, the training minutes to the best validation, each mean +- std over those runs."""
    out = {}
    for group in dict.fromkeys(map(speed_group, runs)):
        these = [r for r in runs if speed_group(r) == group]
        out[group] = {"runs": len(these),
                      "training_minutes": mean_std([r["training_wall_seconds"] / 60 for r in these
                                                    if r["training_wall_seconds"]]),
                      "updates_per_hour": mean_std([updates_per_hour(r) for r in these]),
                      "minutes_to_best": mean_std([r.get("minutes_to_best") for r in these])}
    return out


def with_interval(d):
    """A delta's mean_std() with its 95% t confidence interval added (ci95: [low, high] or None)."""
    if d is not None and "ci95" not in d:
        d["ci95"] = t_interval(d["values"])
    return d


def fmt(ms, digits=2):
    if ms is None:
        return "n/a"
    if ms["std"] is None:
        return f"{ms['mean']:.{digits}f} (n=1)"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def validation_columns(report):
    """The starred columns, [(key, header, digits)], and their footnote: to convergence, fairseq's valid loss at the
    rule's best validation; with a fixed budget, the last checkpoint's valid BLEU and loss."""
    if report["to_convergence"]:
        return [("best_valid_loss", "best valid loss*", 3)], (
            "*: fairseq's valid loss (label-smoothed cross-entropy, base 2; lower is better) at the best validation, "
            "the one the stopping rule names.")
    return [("last_checkpoint_valid_bleu", "last ckpt valid tok BLEU*", 2),
            ("last_valid_loss", "last valid loss*", 3)], (
        "*: the last checkpoint alone: valid BLEU from the curve (hypotheses capped at 1.2 x source + 10 tokens) and "
        "fairseq's valid loss (label-smoothed cross-entropy, base 2; lower is better).")


def markdown(report):
    splits = report["splits"]
    sources = report["split_sources"]
    starred, footnote = validation_columns(report)
    head = ["model", "params"] + [f"{s} ({sources.get(s) or s}) {k}" for s in splits
                                  for k in ("tok BLEU", "sacreBLEU")] + [header for _, header, _ in starred]
    lines = [f"Budget: {report['budget']}. Mean ± std over seeds {report['seeds']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in report["models"].items():
        cells = [label, f"{m['parameters']:,}" if m["parameters"] else "n/a"]
        cells += [fmt(m["scores"][s][k]) for s in splits for k in ("bleu_tokenized", "sacrebleu")]
        cells += [fmt(m[key], digits) for key, _, digits in starred]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Scores of the average of checkpoints (the budget's fixed rule, above), except {footnote}"]
    if report["pairs"]:
        lines += ["", "Seed-paired difference, model − baseline (mean ± std of the per-seed differences; "
                  "'beyond noise' = mean gain larger than the larger seed std of the two models):", "",
                  "| model vs baseline | " + " | ".join(f"{s} {k}" for s in splits for k in ("tok", "sacre"))
                  + " | " + " | ".join(header for _, header, _ in starred) + " |",
                  "|---|" + "---|" * (2 * len(splits) + len(starred))]
        for p in report["pairs"]:
            cells = []
            for s in splits:
                for k in ("bleu_tokenized", "sacrebleu"):
                    d = p["delta"].get(f"{s}.{k}")
                    cells.append("n/a" if d is None else
                                 f"{d['mean']:+.2f}" + (f" ± {d['std']:.2f}" if d["std"] is not None else "")
                                 + (" (beyond noise)" if d["beyond_noise"] else ""))
            for key, _, digits in starred:
                d = p["delta"][key]
                cells.append("n/a" if d is None else f"{d['mean']:+.{digits}f}"
                             + (f" ± {d['std']:.{digits}f}" if d["std"] else ""))
            lines.append(f"| {p['gated']} vs {p['baseline']} | " + " | ".join(cells) + " |")
    lines += loss_table(report) + significance_table(report) + speed_tables(report)
    gates = report.get("gate_stats")
    if gates:
        lines += ["", "Gate statistics of the averaged gated models (valid sentences; mean over seeds): "
                  "mean G, fraction < 0.05 / > 0.95, spread = std of each gate entry across inputs/positions, "
                  "sentence spread = across sentences (a decoder sentence's gate averaged over its positions), "
                  f"at ±1 = fraction of the context encoding's standardised values within {UNIT} of ±1 "
                  "(1.0: one bit each).", "",
                  "| model | layer | mean | min | max | <0.05 | >0.95 | spread | sentence spread | at ±1 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]

        def cell(value):
            return "n/a" if value is None else f"{value:.3f}"

        for label, layers in gates.items():
            for layer, s in layers.items():
                lines.append(f"| {label} | {layer} | " + " | ".join(cell(s.get(k)) for k in (
                    "mean", "min", "max", "saturated_low", "saturated_high", "spread", "sentence_spread",
                    "encoding_at_unit")) + " |")
    return "\n".join(lines) + "\n"


def interval(d, digits):
    if d is None:
        return "n/a"
    ci = f" [{d['ci95'][0]:+.{digits}f}, {d['ci95'][1]:+.{digits}f}]" if d.get("ci95") else ""
    return f"{d['mean']:+.{digits}f}{ci}"


def loss_table(report):
    """Where the runs stopped (to convergence) and the average's teacher-forced NLL per split."""
    splits, models = report["splits"], report["models"]
    if not any(m["loss"][s]["nll_loss"] for m in models.values() for s in splits):
        return []
    lines = ["", "The average's teacher-forced NLL per target token (base 2, fairseq-validate; lower is better)"
             + (", and where the runs stopped (the last validation) and their best validation" if any(
                 m["stopped_at"] for m in models.values()) else "") + ":", "",
             "| model | stopped at | best at | " + " | ".join(f"{s} NLL" for s in splits) + " |",
             "|---|---|---|" + "---|" * len(splits)]
    for label, m in models.items():
        lines.append(f"| {label} | {fmt(m['stopped_at'], 0)} | {fmt(m['best_update'], 0)} | "
                     + " | ".join(fmt(m["loss"][s]["nll_loss"], 3) for s in splits) + " |")
    return lines


def significance_table(report):
    """Per comparison and test split: the seed-paired deltas with their 95% t interval, and the paired bootstrap's
    p-value of each seed pair."""
    rows = [(p, split) for p in report["pairs"] for split in p.get("paired_bootstrap") or {}]
    if not rows:
        return []
    lines = ["", "Significance: seed-paired delta, model − baseline, mean [95% t confidence interval over seeds]; "
             "paired bootstrap of sacreBLEU (sacrebleu, 1000 resamples) per seed: delta (p-value).", "",
             "| model vs baseline | split | sacreBLEU Δ | NLL Δ | bootstrap per seed |", "|---|---|---|---|---|"]
    for p, split in rows:
        seeds = "; ".join(f"seed {seed}: {r['delta']:+.2f} (p={r['p_value']:.3f})"
                          for seed, r in sorted(p["paired_bootstrap"][split].items()))
        lines.append(f"| {p['gated']} vs {p['baseline']} | {split} | {interval(p['delta'].get(f'{split}.sacrebleu'), 2)}"
                     f" | {interval(p['delta'].get(f'{split}.nll_loss'), 3)} | {seeds} |")
    return lines


def speed_tables(report):
    """Each run's CPU, where it stopped and how fast it trained; then per model and CPU, mean +- std."""
    lines = ["", "Runs: the CPU and torch threads each trained with, where training stopped, the best validation, "
             "training minutes to it and in all, updates per hour.", "",
             "| model | seed | CPU | threads | stopped at | best at | min to best | train min | updates/h |",
             "|---|---|---|---|---|---|---|---|---|"]

    def num(value, digits=0):
        return "n/a" if value is None else f"{value:.{digits}f}"

    for r in report["runs"]:
        stop = r.get("stop") or {}
        lines.append(f"| {r['label']} | {r['seed']} | {r.get('cpu') or 'unknown'} | {r.get('threads') or 'n/a'} | "
                     f"{num(stop.get('last_update', r.get('updates')))} | {num(stop.get('best_update'))} | "
                     f"{num(r.get('minutes_to_best'), 1)} | "
                     f"{num(r['training_wall_seconds'] and r['training_wall_seconds'] / 60, 1)} | "
                     f"{num(updates_per_hour(r))} |")
    lines += ["", "Speed per model, CPU and threads (speeds are comparable within one such group only):", "",
              "| model | CPU, threads | runs | updates/h | min to best | train min |", "|---|---|---|---|---|---|"]
    for label, m in report["models"].items():
        for group, sp in m["speed"].items():
            lines.append(f"| {label} | {group} | {sp['runs']} | {fmt(sp['updates_per_hour'], 0)} | "
                         f"{fmt(sp['minutes_to_best'], 1)} | {fmt(sp['training_minutes'], 1)} |")
    return lines


def run_machine(run_dir):
    """(CPU model, torch threads) a run trained with, from its train.json (None for what it does not say)."""
    train = Path(run_dir) / "train.json"
    meta = read_json(train) if train.is_file() else {}
    return (meta.get("machine") or {}).get("cpu"), meta.get("threads")


def mean_gate_stats(summaries):
    out = {}
    for s in summaries:
        for layer, st in (s.get("gate_stats") or {}).items():
            out.setdefault(s["label"], {}).setdefault(layer, []).append(st)
    def mean(values):  # a statistic some runs lack (older runs, a context without an encoding) averages the rest
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else None

    return {label: {layer: {k: mean(d.get(k) for d in sts) for k in {k for d in sts for k in d}}
                    for layer, sts in layers.items()} for label, layers in out.items()}


def plot_race(models, summaries, curves, out):
    """Valid loss and valid BLEU vs updates and vs training wall-clock; one colour per model, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    series = [(m["label"] if j == 0 else None, curves[s["run_dir"]], colours[i % len(colours)])
              for i, m in enumerate(models) for j, s in enumerate(x for x in summaries if x["label"] == m["label"])]
    plot_curves(series, out, with_train=False)


def value_at(points, updates):
    """The value of the last (updates, wall, value) point at the given update count (None when there is none)."""
    return next((value for u, _, value in reversed(points) if u == updates), None)


def budget(args):
    how = (f"({args.preset} preset of scripts/train.py, {args.threads} thread(s) per run, {args.jobs} runs at a "
           "time)")
    if args.patience:
        return (f"to convergence {how}: validation every {args.validate_every} updates, stop after {args.patience} "
                f"without a lower valid loss, at most {args.max_update} updates; the average of the last "
                f"{args.average} validation checkpoints ending at the best; beam {BEAM}")
    return f"{args.max_update} updates per run {how}, average of the last {args.average} update checkpoints, beam {BEAM}"


def report(models, summaries, args, missing):
    curves = {s["run_dir"]: run_curves(s["run_dir"]) for s in summaries}  # each train.log read once
    for s in summaries:
        c = curves[s["run_dir"]]
        s["training_wall_seconds"] = training_seconds(c) or s.get("training_wall_seconds")
        s["last_checkpoint_valid_bleu"] = value_at(c["bleu"], s["updates"])
        s["last_valid_loss"] = value_at(c["valid"], s["updates"])
        s["best_valid_loss"] = (s.get("stop") or {}).get("best_loss")
        s["cpu"], s["threads"] = run_machine(s["run_dir"])
        best = (s.get("stop") or {}).get("best_update")
        wall = wall_at(c["train"], best) if best is not None else None
        s["minutes_to_best"] = wall / 60 if wall is not None else None
    by_model, pairs = aggregate(models, summaries, args.splits, args.pairs)
    sources = {}
    for s in summaries:
        for split, r in s["scores"].items():
            sources.setdefault(split, r.get("split_source"))
    rep = {
        "budget": budget(args),
        "max_update": args.max_update, "to_convergence": bool(args.patience), "seeds": args.seeds,
        "splits": args.splits, "split_sources": sources,
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
        plot_race(models, summaries, curves, args.out / "curves.png")
    print(md, flush=True)
    return rep
