"""Benchmarks: what CGC costs in training speed, decoding speed, parameters and peak memory.

    python -m scripts.bench --data data-bin/multi30k.de-en --out runs/bench
    python -m scripts.bench --data data-bin/multi30k.de-en --out runs/bench-gpu --sizes small iwslt --device cuda

Models (--models) at two sizes (--sizes), all with shared embeddings (one joint dictionary):
  small  lightconv_small, dynamicconv_small (fairseq's own code, ungated), cgc_lightconv_small,
         cgc_dynamicconv_small (d=256, ffn 1024, 4 heads, 3+3 layers, kernels 3,7,15) and a transformer of the same
         dims: fairseq's transformer_iwslt_de_en with d=256, ffn 1024, 3+3 layers, 4 heads
  iwslt  fairseq's lightconv_iwslt_de_en with --*-conv-type lightweight (LightConv) or dynamic (DynamicConv),
         cgc_lightconv_iwslt_de_en, cgc_dynamicconv_iwslt_de_en (d=512, 7+6 layers), transformer_iwslt_de_en
The training recipe is that of scripts/train.py's preset (small: 'small', iwslt: 'paper'), run by fairseq's task
(translation), criterion (label_smoothed_cross_entropy), optimizer (adam) and lr scheduler (inverse_sqrt).

Decoder-gate variants: cgc_lightconv / cgc_dynamicconv the `prefix` context (--cgc-decoder-context prefix);
cgc_KIND_source (--cgc-decoder-context source, the default) and cgc_KIND_static (--cgc-context static, the
no-context control) the others.
--precisions fp32 bf16 measures every model in each precision (bf16: the forward passes under torch.autocast, fp32
weights, as the translation_autocast task trains; an entry MODEL@bf16).

Measured in one process, models interleaved: each model warms up (--warmup train steps and one decoding batch),
then in each of --repeats rounds every model runs in turn (the order rotated by one each round):
  train   target tokens/s of forward + backward + optimizer step over the same --steps batches of split train
          (--max-tokens, order fixed by --seed), for every model
  decode  sentences/s of fairseq's SequenceGenerator, beam 4 (every decode's), on the first --decode-sentences
          sentences of --decode-split (batched by --max-tokens). Every hypothesis is exactly --decode-len tokens + EOS
          (min_len = max_len_b = --decode-len, max_len_a = 0): untrained models stop at random lengths or babble to
          the max length, which would measure their babbling, not their speed
  memory  in a fresh subprocess per model (a process's peak RSS cannot be reset), as many at a time as there are
          cores, before the timings: 2 train steps on the largest (padded) of the batches. CPU: peak RSS; GPU:
          torch.cuda.max_memory_allocated. Also the steps' increase over the high-water mark before the first step
          (imports, data, model)
  params  parameters (tied embeddings counted once)
  long    after the rounds, --repeats times per model: beam search on the --long-decode-sentences shortest of
          the decoded sentences with hypotheses forced to --long-decode-len tokens; the seconds of each
          incremental decoder step per hypothesis (median over the rounds), reported at positions 10, 50 and 100
Reported: per model the median (and best) over the rounds; for CGC the ratio to the ungated conv of the same kind,
size and precision (medians), against its variant's targets (scripts/bench_report.py TARGETS; prefix: train time
per token <= 1.15x, decode speed >= 0.90x, parameters <= +0.1%, peak memory <= 1.10x); bf16 / fp32 speed per
model (targets: training >= 1.5x small, >= 2.0x iwslt; decoding >= 1.5x); the long outputs' time per token at the
last position over the first (prefix <= 1.5x; source, static <= 1.1x). On GPU every timing is bracketed by
torch.cuda.synchronize().
Writes OUT/bench.json (raw timings, medians, ratios, the machine, command, versions), OUT/bench.md (the tables)
and OUT/bench.png (the ratios and the targets), each under a temporary name, then renamed.
Here: the timing loop and the command line; the models and fairseq harness in scripts/bench_models.py, the memory
probe in scripts/bench_memory.py, the ratios, tables and plot in scripts/bench_report.py.
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.bench --help")

import gc
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, islice
from pathlib import Path

from .bench_memory import run_probe
from .bench_models import SIZES, Bench, Data, entry, model_config, split_entry, timed
from .bench_report import LABELS, LONG_DECODE_POSITIONS, PRECISION_TARGETS, TARGETS, analyse, write_outputs
from .cli import (BEAM, ScriptError, add_precision, command_line, log, main_guard, nonnegative_int, parser,
                  positive_int, versions)
from .cli import machine as cli_machine
from .rundir import check_data_dir, check_split

DEFAULT_MODELS = ["transformer", "lightconv", "dynamicconv", "cgc_lightconv", "cgc_dynamicconv"]


def summary(values):
    return {"runs": values, "median": statistics.median(values), "best": max(values)}


def entries(args):
    """The benchmark's entries: every model in every precision (bench_models.entry keys)."""
    return [entry(model, precision) for model in args.models for precision in args.precisions]


def per_position(step_seconds, positions):
    """Mean seconds per hypothesis of the decoder steps around each position (+-2, within the output)."""
    n = len(step_seconds)
    return {str(p): statistics.fmean(step_seconds[max(p - 3, 0):min(p + 2, n)]) for p in positions if p <= n}


def bench_size(args, size, data):
    """Warm up every entry of one size, then time them interleaved -> {entry: results}."""
    benches, results = {}, {}
    for key in entries(args):
        model, precision = split_entry(key)
        cfg, argv = model_config(args, size, model)
        benches[key] = bench = Bench(cfg, data.task, args.device, args.decode_len, precision)
        results[key] = {"model": model, "precision": precision, "arch": cfg.model.arch, "fairseq_args": argv[1:],
                        "parameters": bench.parameters(), "conv": bench.conv(), "train_seconds": [],
                        "decode_seconds": [], "decode_tokens": []}
    for model, bench in benches.items():
        log(f"{size}: warm-up {model} ({args.warmup} train steps, 1 decoding batch)")
        bench.train(islice(cycle(data.train), args.warmup))
        bench.decode(data.decode[:1])
    names = list(benches)
    for r in range(args.repeats):
        for model in names[r % len(names):] + names[:r % len(names)]:
            seconds, _ = timed(lambda: benches[model].train(data.train), args.device)
            results[model]["train_seconds"].append(seconds)
            seconds, tokens = timed(lambda: benches[model].decode(data.decode), args.device)
            results[model]["decode_seconds"].append(seconds)
            results[model]["decode_tokens"].append(tokens)
        log(f"{size}: round {r + 1}/{args.repeats}: " + ", ".join(
            f"{m} {data.train_tokens / results[m]['train_seconds'][-1]:.0f} tok/s, "
            f"{data.decode_sentences / results[m]['decode_seconds'][-1]:.1f} sent/s" for m in names))
    if args.long_decode_len:
        log(f"{size}: long outputs ({args.long_decode_len} tokens, {data.long['nsentences']} sentences), "
            "seconds per decoder step")
        for r in range(args.repeats):
            for model in names[r % len(names):] + names[:r % len(names)]:
                steps = benches[model].step_seconds([data.long], args.long_decode_len)
                results[model].setdefault("long_decode_step_seconds", []).append(steps)
    for res in results.values():
        res["train_tokens_per_second"] = summary([data.train_tokens / s for s in res["train_seconds"]])
        res["decode_sentences_per_second"] = summary([data.decode_sentences / s for s in res["decode_seconds"]])
        if "long_decode_step_seconds" in res:  # median over the rounds, step by step
            median = [statistics.median(steps) for steps in zip(*res["long_decode_step_seconds"])]
            res["long_decode"] = {"length": args.long_decode_len, "sentences": data.long["nsentences"],
                                  "step_seconds_median": median,
                                  "seconds_per_token_at": per_position(median, LONG_DECODE_POSITIONS)}
    return results


def machine(device):
    import torch

    record = cli_machine(torch.get_num_threads())  # cpu, cpu_capability, cores (affinity), threads
    return record | {"torch_threads": record["threads"], "device": device,
                     "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
                     "load_average": os.getloadavg()}


def build_parser():
    p = parser("bench", __doc__)
    p.add_argument("--data", required=True, help="fairseq data dir (from data-bin-prep/prepare.py)")
    p.add_argument("--out", required=True, help="output dir for bench.json, bench.md, bench.png")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES), help="default: small iwslt")
    p.add_argument("--models", nargs="+", choices=list(LABELS), default=DEFAULT_MODELS,
                   help="default: %(default)s; nocgc_*: the plugin's conv with --no-cgc (the gate's own cost)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed rounds (default: %(default)s)")
    p.add_argument("--warmup", type=nonnegative_int, default=2,
                   help="untimed train steps per model first (default: %(default)s)")
    p.add_argument("--steps", type=positive_int, default=4, help="train batches per round (default: %(default)s)")
    p.add_argument("--max-tokens", type=positive_int, default=4000, help="default: %(default)s")
    p.add_argument("--seed", type=nonnegative_int, default=1, help="model init and batch order (default: %(default)s)")
    p.add_argument("--decode-split", default="test", help="default: %(default)s")
    p.add_argument("--decode-sentences", type=positive_int, default=200, help="default: %(default)s")
    p.add_argument("--decode-len", type=positive_int, default=30, help="tokens per hypothesis (default: %(default)s)")
    p.add_argument("--long-decode-len", type=nonnegative_int, default=100,
                   help="decoder step times with hypotheses forced to this many tokens (0: skip; default: %(default)s)")
    p.add_argument("--long-decode-sentences", type=positive_int, default=10,
                   help="the shortest sentences of the decoded ones, for the long outputs (default: %(default)s)")
    add_precision(p, "every model in each precision", several=True)
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    p.add_argument("--tiny", action="store_true", help="tiny models (d=32, 1+1 layers; for the tests)")
    p.add_argument("--from-json", help="only re-render bench.md / bench.png (ratios recomputed) from this bench.json")
    p.add_argument("--remeasure-memory", action="store_true",
                   help="with --from-json: run the memory probes again (that run's settings) before re-rendering")
    return p




def render(path, out, memory_args=None):
    """bench.md / bench.png (and bench.json, ratios recomputed) from an earlier run's bench.json; with memory_args,
    the memory probes are run again (with that run's settings) first."""
    try:
        report = json.loads(Path(path).read_text())
        if memory_args is not None:
            settings = report["settings"]
            for key in ("max_tokens", "steps", "seed", "decode_split", "decode_sentences", "threads", "device", "tiny"):
                setattr(memory_args, key, settings[key])
            memory_args.data = report["data"]["path"]
            for size, res in report["sizes"].items():
                for model, r in res["models"].items():
                    r["memory"] = run_probe(memory_args, size, model)
                    log(f"{size}/{model}: peak {r['memory']['peak_mb']:.0f} MB (+{r['memory']['steps_mb']:.0f})")
            report["memory_remeasured"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for size, res in report["sizes"].items():
            res |= analyse(res["models"], size)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScriptError(f"--from-json {path}: not a bench.json of this script ({type(e).__name__}: {e})")
    write_outputs(report, out)
    return 0


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.from_json:
        return render(args.from_json, Path(args.out), args if args.remeasure_memory else None)
    args.sizes, args.models = list(dict.fromkeys(args.sizes)), list(dict.fromkeys(args.models))
    args.precisions = list(dict.fromkeys(args.precisions))
    check_data_dir(args.data)
    for split in ("train", args.decode_split):
        check_split(args.data, split)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ScriptError("--device cuda: torch sees no CUDA device")
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)

    start = time.time()
    out = Path(args.out)
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command_line(),
              "machine": machine(args.device), "versions": versions(),
              "settings": {k: getattr(args, k) for k in ("sizes", "models", "repeats", "warmup", "steps", "max_tokens",
                                                         "seed", "decode_split", "decode_sentences", "decode_len",
                                                         "long_decode_len", "long_decode_sentences", "precisions",
                                                         "threads", "device", "tiny")} | {"beam": BEAM},
              "targets": {"gated_vs_ungated": TARGETS, "precision": PRECISION_TARGETS}, "sizes": {}}
    data = Data(args, model_config(args, args.sizes[0], args.models[0])[0])
    report["data"] = {"path": str(Path(args.data).resolve()), **data.describe()}
    keys = entries(args)
    workers = min(len(keys), os.cpu_count() or 1)
    for size in args.sizes:
        log(f"{size}: memory probes of {', '.join(keys)} (a fresh process each, {workers} at a time)")
        with ThreadPoolExecutor(workers) as pool:  # untimed: the probes may share the cores
            memory = dict(zip(keys, pool.map(lambda key: run_probe(args, size, key), keys)))
        results = bench_size(args, size, data)
        for model, res in results.items():
            res["memory"] = memory[model]
        report["sizes"][size] = {"models": results, **analyse(results, size)}
        report["machine"]["load_average_end"] = os.getloadavg()
        report["wall_seconds"] = round(time.time() - start, 1)
        write_outputs(report, out, quiet=size != args.sizes[-1])  # each size's results kept as soon as they exist
        gc.collect()  # the size's models are gone; free them before the next size's
        if args.device == "cuda":
            torch.cuda.empty_cache()
    log(f"done in {report['wall_seconds'] / 60:.1f} min -> {out}/bench.json, bench.md, bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
