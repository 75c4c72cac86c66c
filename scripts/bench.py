#!/usr/bin/env python3
"""Benchmarks: what CGC costs in training speed, decoding speed, parameters and peak memory.

    python scripts/bench.py --data data-bin/multi30k.de-en --out runs/bench
    python scripts/bench.py --data data-bin/multi30k.de-en --out runs/bench-gpu --sizes small iwslt --device cuda

Models (--models) at two sizes (--sizes), all with shared embeddings (one joint dictionary):
  small  lightconv_small, dynamicconv_small (fairseq's own code, ungated), cgc_lightconv_small,
         cgc_dynamicconv_small (d=256, ffn 1024, 4 heads, 3+3 layers, kernels 3,7,15) and a transformer of the same
         dims: fairseq's transformer_iwslt_de_en with d=256, ffn 1024, 3+3 layers, 4 heads
  iwslt  fairseq's lightconv_iwslt_de_en with --*-conv-type lightweight (LightConv) or dynamic (DynamicConv),
         cgc_lightconv_iwslt_de_en, cgc_dynamicconv_iwslt_de_en (d=512, 7+6 layers), transformer_iwslt_de_en
The training recipe is that of scripts/train.py's preset (small: 'small', iwslt: 'paper'), run by fairseq's task
(translation), criterion (label_smoothed_cross_entropy), optimizer (adam) and lr scheduler (inverse_sqrt).

Measured in one process, models interleaved: each model warms up (--warmup train steps and one decoding batch),
then in each of --repeats rounds every model runs in turn (the order rotated by one each round):
  train   target tokens/s of forward + backward + optimizer step over the same --steps batches of split train
          (--max-tokens, order fixed by --seed), for every model
  decode  sentences/s of fairseq's SequenceGenerator, beam 5, on the first --decode-sentences sentences of
          --decode-split (batched by --max-tokens). Every hypothesis is exactly --decode-len tokens + EOS
          (min_len = max_len_b = --decode-len, max_len_a = 0): untrained models stop at random lengths or babble to
          the max length, which would measure their babbling, not their speed
  memory  in a fresh subprocess per model (a process's peak RSS cannot be reset), as many at a time as there are
          cores, before the timings: 2 train steps on the largest (padded) of the batches. CPU: peak RSS; GPU:
          torch.cuda.max_memory_allocated. Also the steps' increase over the high-water mark before the first step
          (imports, data, model)
  params  parameters (tied embeddings counted once)
Reported: per model the median (and best) over the rounds; for CGC the ratio to the ungated conv of the same kind
and size (medians), against the targets: train time per token <= 1.05x, decode speed >= 0.95x, parameters
<= +0.1%, peak memory <= 1.10x. On GPU every timing is bracketed by torch.cuda.synchronize().
Writes OUT/bench.json (raw timings, medians, ratios, the machine, command, versions), OUT/bench.md (the tables)
and OUT/bench.png (the ratios and the targets), each under a temporary name, then renamed.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_utils import (USER_DIR, Parser, ScriptError, check_data_dir, check_split, command_line,  # noqa: E402
                          cpu_model, log, main_guard, positive_int, versions, write_atomic, write_json)
from train import PRESETS  # noqa: E402

LABELS = {"transformer": "Transformer", "lightconv": "LightConv", "dynamicconv": "DynamicConv",
          "cgc_lightconv": "CGC-LightConv", "cgc_dynamicconv": "CGC-DynamicConv",
          "nocgc_lightconv": "LightConv (plugin, --no-cgc)", "nocgc_dynamicconv": "DynamicConv (plugin, --no-cgc)"}
DEFAULT_MODELS = ["transformer", "lightconv", "dynamicconv", "cgc_lightconv", "cgc_dynamicconv"]
# (gated, ungated): the headline compares with fairseq's own conv; the plugin's conv with the gate switched off
# (--no-cgc: same band-matrix code, no gate) isolates what the gate itself costs
PAIRS = [("cgc_lightconv", "lightconv"), ("cgc_dynamicconv", "dynamicconv"),
         ("cgc_lightconv", "nocgc_lightconv"), ("cgc_dynamicconv", "nocgc_dynamicconv")]
SIZES = {"small": "small", "iwslt": "paper"}  # size -> the scripts/train.py preset whose recipe it trains with
SMALL_TRANSFORMER = ["--encoder-embed-dim", "256", "--decoder-embed-dim", "256", "--encoder-ffn-embed-dim", "1024",
                     "--decoder-ffn-embed-dim", "1024", "--encoder-layers", "3", "--decoder-layers", "3",
                     "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]
CONV_ONLY = ("--weight-dropout", "--encoder-glu", "--decoder-glu")  # recipe flags (with a value) a transformer lacks
TINY = ["--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--decoder-ffn-embed-dim", "64", "--encoder-layers", "1", "--decoder-layers", "1",
        "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
TINY_CONV = ["--encoder-kernel-size-list", "[3]", "--decoder-kernel-size-list", "[3]"]
TARGETS = {"train_time_per_token": ("<=", 1.05), "decode_speed": (">=", 0.95), "parameters": ("<=", 1.001),
           "peak_memory": ("<=", 1.10)}
TARGET_TEXT = {"train_time_per_token": "train time/token <= 1.05x", "decode_speed": "decode speed >= 0.95x",
               "parameters": "parameters <= +0.1%", "peak_memory": "peak memory <= 1.10x"}
BEAM = 5
PROBE_STEPS = 2
PROBE_TAG = "MEMORY_PROBE "  # the probe subprocess's result line: this tag, then JSON


def arch_and_flags(size, model, tiny):
    """fairseq --arch and flags of one benchmark model: the size's recipe, shared embeddings, the model's dims."""
    recipe = PRESETS[SIZES[size]]["flags"] + ["--share-all-embeddings"]
    if model == "transformer":
        recipe = [a for i, a in enumerate(recipe) if a not in CONV_ONLY and (i == 0 or recipe[i - 1] not in CONV_ONLY)]
        arch, flags = "transformer_iwslt_de_en", SMALL_TRANSFORMER if size == "small" else []
    elif model.startswith("nocgc_"):
        arch, flags = f"cgc_{model[len('nocgc_'):]}_{'small' if size == 'small' else 'iwslt_de_en'}", ["--no-cgc"]
    elif size == "small":
        arch, flags = f"{model}_small", []
    elif model in ("lightconv", "dynamicconv"):
        conv = "lightweight" if model == "lightconv" else "dynamic"  # fairseq's arch defaults to dynamic
        arch, flags = "lightconv_iwslt_de_en", ["--encoder-conv-type", conv, "--decoder-conv-type", conv]
    else:
        arch, flags = f"{model}_iwslt_de_en", []
    if tiny:
        flags = flags + TINY + ([] if model == "transformer" else TINY_CONV)
    return arch, recipe + flags


def model_config(args, size, model):
    """fairseq's config (parsed as fairseq-train would) of one benchmark model."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    arch, flags = arch_and_flags(size, model, args.tiny)
    argv = [str(Path(args.data).resolve()), "--user-dir", USER_DIR, "--task", "translation", "--source-lang", "de",
            "--target-lang", "en", "--arch", arch, *flags, "--max-tokens", str(args.max_tokens),
            "--seed", str(args.seed)]
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv)), argv


def sync(device):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def timed(fn, device):
    """(seconds, fn()) with the device synchronized at both ends."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


class Data:
    """The task, the fixed training batches and the fixed decoding batches, on the device."""

    def __init__(self, args, cfg):
        import numpy as np
        from fairseq import tasks, utils
        from fairseq.data import data_utils

        self.task = tasks.setup_task(cfg.task)
        self.task.load_dataset("train")
        itr = self.task.get_batch_iterator(self.task.dataset("train"), max_tokens=args.max_tokens,
                                           max_positions=self.task.max_positions(), ignore_invalid_inputs=True,
                                           required_batch_size_multiple=1, seed=args.seed)
        self.train = list(islice(itr.next_epoch_itr(shuffle=True), args.steps))
        if len(self.train) < args.steps:
            raise ScriptError(f"--steps {args.steps}: split train has only {len(self.train)} batches of "
                              f"--max-tokens {args.max_tokens}")
        self.task.load_dataset(args.decode_split)
        ds = self.task.dataset(args.decode_split)
        if args.decode_sentences > len(ds):
            raise ScriptError(f"--decode-sentences {args.decode_sentences}: split {args.decode_split} has only "
                              f"{len(ds)} sentences")
        # the first N sentences, sorted by length and batched like fairseq-generate does
        order = np.argsort(ds.src_sizes[:args.decode_sentences], kind="stable")
        self.decode = [ds.collater([ds[int(i)] for i in batch])
                       for batch in data_utils.batch_by_size(order, ds.num_tokens, max_tokens=args.max_tokens)]
        if args.device == "cuda":
            self.train = [utils.move_to_cuda(b) for b in self.train]
            self.decode = [utils.move_to_cuda(b) for b in self.decode]
        self.train_tokens = sum(b["ntokens"] for b in self.train)
        self.decode_sentences = args.decode_sentences

    def describe(self):
        return {"train_batches": [{"sentences": b["nsentences"], "target_tokens": b["ntokens"],
                                   "source_shape": list(b["net_input"]["src_tokens"].shape),
                                   "target_shape": list(b["target"].shape)} for b in self.train],
                "train_target_tokens": self.train_tokens,
                "decode_batches": [list(b["net_input"]["src_tokens"].shape) for b in self.decode],
                "decode_sentences": self.decode_sentences}


class Bench:
    """One model with its criterion, optimizer, lr scheduler and beam search, on the device."""

    def __init__(self, cfg, task, device, decode_len):
        import torch
        from fairseq import optim
        from fairseq.optim.lr_scheduler import build_lr_scheduler
        from fairseq.sequence_generator import SequenceGenerator

        torch.manual_seed(cfg.common.seed)
        self.task = task
        self.model = task.build_model(cfg.model).to(device)
        self.criterion = task.build_criterion(cfg.criterion).to(device)
        self.optimizer = optim.build_optimizer(cfg.optimizer, list(self.model.parameters()))
        self.scheduler = build_lr_scheduler(cfg.lr_scheduler, self.optimizer)
        self.updates = 0
        # min_len = max_len: every hypothesis has exactly decode_len tokens + EOS
        self.generator = SequenceGenerator([self.model], task.target_dictionary, beam_size=BEAM, max_len_a=0,
                                           max_len_b=decode_len, min_len=decode_len)

    def parameters(self):
        return sum(p.numel() for p in self.model.parameters())

    def conv(self):
        """The class of the first encoder layer's conv (None for a transformer)."""
        layer = self.model.encoder.layers[0]
        return type(layer.conv).__name__ if hasattr(layer, "conv") else None

    def train_step(self, sample):
        self.optimizer.zero_grad()
        self.task.train_step(sample, self.model, self.criterion, self.optimizer, self.updates)  # forward + backward
        self.optimizer.step()
        self.updates += 1
        self.scheduler.step_update(self.updates)

    def train(self, batches):
        for sample in batches:
            self.train_step(sample)

    def decode(self, batches):
        """Beam search over the batches -> the number of tokens of the best hypotheses."""
        self.model.eval()
        return sum(hypos[0]["tokens"].numel() for sample in batches
                   for hypos in self.task.inference_step(self.generator, [self.model], sample))


def peak_rss():
    """This process's peak resident set size in bytes: Linux's VmHWM (per address space, so it starts afresh at exec;
    getrusage's ru_maxrss keeps the parent's high-water mark across fork + exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_probe(args):
    """In this fresh process: build the model, run PROBE_STEPS train steps on the largest batch, print the peak."""
    import torch

    size, model = args.sizes[0], args.models[0]
    cfg, _ = model_config(args, size, model)
    data = Data(args, cfg)
    bench = Bench(cfg, data.task, args.device, args.decode_len)
    largest = max(data.train, key=lambda b: b["net_input"]["src_tokens"].numel() + b["target"].numel())
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else peak_rss()
    for _ in range(PROBE_STEPS):
        bench.train_step(largest)
    sync(args.device)
    peak = torch.cuda.max_memory_allocated() if cuda else peak_rss()
    print(PROBE_TAG + json.dumps({"measure": "cuda_max_allocated" if cuda else "peak_rss", "steps": PROBE_STEPS,
                                  "batch_target_shape": list(largest["target"].shape),
                                  "peak_mb": peak / 2**20, "before_steps_mb": before / 2**20,
                                  "steps_mb": (peak - before) / 2**20}), flush=True)


def run_probe(args, size, model):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--data", args.data, "--out", args.out, "--sizes", size,
           "--models", model, "--max-tokens", str(args.max_tokens), "--steps", str(args.steps),
           "--seed", str(args.seed), "--decode-split", args.decode_split,
           "--decode-sentences", str(args.decode_sentences), "--threads", str(args.threads),
           "--device", args.device, "--memory-probe"] + (["--tiny"] if args.tiny else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((l for l in proc.stdout.splitlines() if l.startswith(PROBE_TAG)), None)
    if proc.returncode != 0 or line is None:
        last = next((l for l in reversed(proc.stderr.splitlines()) if l.strip()), "no output")
        raise ScriptError(f"memory probe of {size}/{model} failed (exit {proc.returncode}): {last.strip()[:300]}")
    return json.loads(line[len(PROBE_TAG):])


def summary(values):
    return {"runs": values, "median": statistics.median(values), "best": max(values)}


def bench_size(args, size, data):
    """Warm up every model of one size, then time them interleaved -> {model: results}."""
    benches, results = {}, {}
    for model in args.models:
        cfg, argv = model_config(args, size, model)
        benches[model] = bench = Bench(cfg, data.task, args.device, args.decode_len)
        results[model] = {"arch": cfg.model.arch, "fairseq_args": argv[1:], "parameters": bench.parameters(),
                          "conv": bench.conv(), "train_seconds": [], "decode_seconds": [], "decode_tokens": []}
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
    for res in results.values():
        res["train_tokens_per_second"] = summary([data.train_tokens / s for s in res["train_seconds"]])
        res["decode_sentences_per_second"] = summary([data.decode_sentences / s for s in res["decode_seconds"]])
    return results


def ratios(results):
    """CGC / the ungated conv of the same kind, from the medians, with PASS/MISS against TARGETS; keyed
    'gated/ungated'."""
    out = {}
    for gated, ungated in PAIRS:
        if gated not in results or ungated not in results:
            continue
        g, u = results[gated], results[ungated]
        train, decode = "train_tokens_per_second", "decode_sentences_per_second"
        values = {"train_time_per_token": u[train]["median"] / g[train]["median"],
                  "decode_speed": g[decode]["median"] / u[decode]["median"],
                  "parameters": g["parameters"] / u["parameters"],
                  "peak_memory": g["memory"]["peak_mb"] / u["memory"]["peak_mb"]}
        # the best round of each (least disturbed by other load on a shared machine), beside the medians
        best = {"train_time_per_token": u[train]["best"] / g[train]["best"],
                "decode_speed": g[decode]["best"] / u[decode]["best"]}
        out[f"{gated}/{ungated}"] = {"gated": gated, "ungated": ungated, **values, "best": best,
                      "steps_memory": (g["memory"]["steps_mb"] / u["memory"]["steps_mb"]
                                       if u["memory"]["steps_mb"] > 0 else None),
                      "pass": {k: (v <= TARGETS[k][1] if TARGETS[k][0] == "<=" else v >= TARGETS[k][1])
                               for k, v in values.items()}}
    return out


def machine(device):
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None, "load_average": os.getloadavg()}


def fmt_ratio(ratios, key):
    """One ratio of ratios (or '-' when there are none) with PASS/MISS."""
    if ratios is None:
        return "-"
    value = ratios[key]
    text = f"{(value - 1) * 100:+.2f}%" if key == "parameters" else f"{value:.3f}x"
    best = f" (best {ratios['best'][key]:.3f}x)" if key in ratios.get("best", {}) else ""
    return f"{text} {'PASS' if ratios['pass'][key] else 'MISS'}{best}"


def markdown(report):
    s, m = report["settings"], report["machine"]
    mem = "peak GPU MB (max allocated)" if s["device"] == "cuda" else "peak RSS MB"
    lines = ["# CGC benchmark", "",
             f"{report['date']}; {m['gpu'] or m['cpu']}; device {s['device']}, {m['torch_threads']} torch thread(s), "
             f"{m['cores']} cores, load average at start {m['load_average'][0]:.2f}.",
             f"Train: {s['steps']} batches of split train (--max-tokens {s['max_tokens']}, "
             f"{report['data']['train_target_tokens']} target tokens), forward + backward + adam step. Decode: "
             f"{s['decode_sentences']} sentences of {s['decode_split']}, beam {BEAM}, every hypothesis "
             f"{s['decode_len']} tokens + EOS. Median (best) of {s['repeats']} interleaved rounds after "
             f"{s['warmup']} warm-up steps. Memory: {PROBE_STEPS} train steps on the largest batch, one fresh process "
             f"per model (+steps: over the high-water mark before the first step).", "",
             "## CGC vs the ungated conv of the same kind and size", "",
             "| size | pair | " + " | ".join(TARGET_TEXT.values()) + " |", "| --- | --- |" + " --- |" * len(TARGETS)]
    for size, res in report["sizes"].items():
        for r in res["ratios"].values():
            lines.append(f"| {size} | {LABELS[r['gated']]} / {LABELS[r['ungated']]} | "
                         + " | ".join(fmt_ratio(r, k) for k in TARGETS) + " |")
    if not any(res["ratios"] for res in report["sizes"].values()):
        lines.append("| (none: --models has no cgc_* model with its ungated conv) |" + " |" * (len(TARGETS) + 1))
    for size, res in report["sizes"].items():
        lines += ["", f"## {size}" + (" (tiny test models)" if s["tiny"] else ""), "",
                  f"| model | params | train tok/s | time/token vs ungated | {mem} (+steps) | vs ungated | "
                  "decode sent/s | vs ungated |", "| --- |" + " ---: |" * 7]
        for model, r in res["models"].items():
            q = res["ratios"].get(f"{model}/{model[len('cgc_'):]}")
            t, d = r["train_tokens_per_second"], r["decode_sentences_per_second"]
            params = f"{r['parameters']:,}" + (f" ({fmt_ratio(q, 'parameters')})" if q else "")
            lines.append(f"| {LABELS[model]} (`{r['arch']}`) | {params} | {t['median']:.0f} ({t['best']:.0f}) | "
                         f"{fmt_ratio(q, 'train_time_per_token')} | {r['memory']['peak_mb']:.0f} "
                         f"(+{r['memory']['steps_mb']:.0f}) | {fmt_ratio(q, 'peak_memory')} | "
                         f"{d['median']:.2f} ({d['best']:.2f}) | {fmt_ratio(q, 'decode_speed')} |")
        convs = [f"{LABELS[model]} `{r['conv']}`" for model, r in res["models"].items() if r["conv"]]
        lines += ["", f"Conv modules: {', '.join(convs)}."] if convs else []
    if "small" in report["sizes"] and "transformer" in report["sizes"]["small"]["models"] and not s["tiny"]:
        lines += ["", "The small Transformer is fairseq's transformer_iwslt_de_en at the small conv models' dims "
                      "(d=256, ffn 1024, 3+3 layers, 4 heads)."]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(report, out):
    """The ratios as % change vs the ungated conv, one panel per measure, with the target lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(size, r) for size, res in report["sizes"].items() for r in res["ratios"].values()]
    names = [f"{size}: {LABELS[r['gated']]} / {'--no-cgc' if r['ungated'].startswith('nocgc_') else 'fairseq'}"
             for size, r in pairs]
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(4.5 * len(TARGETS), 1.2 + 0.45 * len(pairs)), sharey=True)
    axes[0].invert_yaxis()  # the first pair on top (the y axis is shared)
    for ax, key in zip(axes, TARGETS):
        values = [(r[key] - 1) * 100 for _, r in pairs]
        ax.barh(range(len(pairs)), values, color=["tab:green" if r["pass"][key] else "tab:red" for _, r in pairs])
        for i, v in enumerate(values):
            ax.annotate(f"{v:+.2f}%" if key == "parameters" else f"{v:+.1f}%", (v, i), ha="left" if v >= 0 else "right", va="center", fontsize=7)
        ax.axvline((TARGETS[key][1] - 1) * 100, color="black", linestyle="--", label=f"target {TARGETS[key][0]}")
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(range(len(pairs)), names, fontsize=8)
        ax.set_title(TARGET_TEXT[key], fontsize=10)
        ax.set_xlabel("% vs the ungated conv")
        ax.legend(fontsize=7)
    fig.suptitle(f"CGC vs ungated ({report['settings']['device']}, median of {report['settings']['repeats']})")
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, out)


def build_parser():
    p = Parser.from_doc("bench.py", __doc__)
    p.add_argument("--data", required=True, help="fairseq data dir (from data-bin-prep/prepare.py)")
    p.add_argument("--out", required=True, help="output dir for bench.json, bench.md, bench.png")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES), help="default: small iwslt")
    p.add_argument("--models", nargs="+", choices=list(LABELS), default=DEFAULT_MODELS,
                   help="default: %(default)s; nocgc_*: the plugin's conv with --no-cgc (the gate's own cost)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed train steps per model first (default: %(default)s)")
    p.add_argument("--steps", type=positive_int, default=4, help="train batches per round (default: %(default)s)")
    p.add_argument("--max-tokens", type=positive_int, default=4000, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=1, help="model init and batch order (default: %(default)s)")
    p.add_argument("--decode-split", default="test", help="default: %(default)s")
    p.add_argument("--decode-sentences", type=positive_int, default=200, help="default: %(default)s")
    p.add_argument("--decode-len", type=positive_int, default=30, help="tokens per hypothesis (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    p.add_argument("--tiny", action="store_true", help="tiny models (d=32, 1+1 layers; for the tests)")
    p.add_argument("--from-json", help="only re-render bench.md / bench.png (ratios recomputed) from this bench.json")
    p.add_argument("--remeasure-memory", action="store_true",
                   help="with --from-json: run the memory probes again (that run's settings) before re-rendering")
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)  # internal: see memory_probe()
    return p


def write_outputs(report, out):
    """bench.md, bench.png, bench.json in out (each under a temporary name, then renamed); the table to stdout."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    write_atomic(out / "bench.md", text)
    plot(report, out / "bench.png")
    write_json(out / "bench.json", report)
    print(text)


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
        for res in report["sizes"].values():
            res["ratios"] = ratios(res["models"])
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
    check_data_dir(args.data)
    for split in ("train", args.decode_split):
        check_split(args.data, split)
    if args.warmup < 0:
        raise ScriptError(f"--warmup must be >= 0, got {args.warmup}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ScriptError("--device cuda: torch sees no CUDA device")
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    for name in ("fairseq", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.memory_probe:
        memory_probe(args)
        return 0

    start = time.time()
    out = Path(args.out)
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command_line(argv),
              "machine": machine(args.device), "versions": versions(),
              "settings": {k: getattr(args, k) for k in ("sizes", "models", "repeats", "warmup", "steps", "max_tokens",
                                                         "seed", "decode_split", "decode_sentences", "decode_len",
                                                         "threads", "device", "tiny")} | {"beam": BEAM},
              "targets": {k: {"op": op, "value": v} for k, (op, v) in TARGETS.items()}, "sizes": {}}
    data = Data(args, model_config(args, args.sizes[0], args.models[0])[0])
    report["data"] = {"path": str(Path(args.data).resolve()), **data.describe()}
    workers = min(len(args.models), os.cpu_count() or 1)
    for size in args.sizes:
        log(f"{size}: memory probes of {', '.join(args.models)} (a fresh process each, {workers} at a time)")
        with ThreadPoolExecutor(workers) as pool:  # untimed: the probes may share the cores
            memory = dict(zip(args.models, pool.map(lambda model: run_probe(args, size, model), args.models)))
        results = bench_size(args, size, data)
        for model, res in results.items():
            res["memory"] = memory[model]
        report["sizes"][size] = {"models": results, "ratios": ratios(results)}
        gc.collect()  # the size's models are gone; free them before the next size's
        if args.device == "cuda":
            torch.cuda.empty_cache()
    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_seconds"] = round(time.time() - start, 1)
    write_outputs(report, out)
    log(f"done in {report['wall_seconds'] / 60:.1f} min -> {out}/bench.json, bench.md, bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
