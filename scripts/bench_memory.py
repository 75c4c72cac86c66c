"""Peak memory of one benchmark model's training steps, measured in a fresh process (a process's peak RSS cannot
be reset): run_probe() starts `python -m scripts.bench_memory SETTINGS_JSON`, which prints one tagged JSON line.
CPU: peak RSS; GPU: torch.cuda.max_memory_allocated."""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.bench_memory --help")

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from .bench_models import Bench, Data, model_config, split_entry, sync
from .cli import REPO, ScriptError, quiet_logging, script_command, thread_env

PROBE_STEPS = 2
PROBE_TAG = "MEMORY_PROBE "  # the probe's result line: this tag, then JSON
SETTINGS = ("data", "max_tokens", "steps", "seed", "decode_split", "decode_sentences", "decode_len",
            "long_decode_sentences", "threads", "device", "tiny")  # of the benchmark's arguments, those the probe uses


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


def probe(args):
    """In this fresh process: build the model, run PROBE_STEPS train steps on the largest batch, print the peak."""
    import torch

    model, precision = split_entry(args.model)
    cfg, _ = model_config(args, args.size, model)
    data = Data(args, cfg)
    bench = Bench(cfg, data.task, args.device, args.decode_len, precision)
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
    """The memory of one entry (a model in a precision, bench_models.entry) of the benchmark's args at one size,
    measured in a fresh process."""
    settings = {key: getattr(args, key) for key in SETTINGS} | {"size": size, "model": model}
    proc = subprocess.run([*script_command("bench_memory"), json.dumps(settings, default=str)], capture_output=True,
                          text=True, env=dict(os.environ, **thread_env(args.threads)), cwd=REPO)
    line = next((l for l in proc.stdout.splitlines() if l.startswith(PROBE_TAG)), None)
    if proc.returncode != 0 or line is None:
        last = next((l for l in reversed(proc.stderr.splitlines()) if l.strip()), "no output")
        raise ScriptError(f"memory probe of {size}/{model} failed (exit {proc.returncode}): {last.strip()[:300]}")
    return json.loads(line[len(PROBE_TAG):])


if __name__ == "__main__":
    import torch

    quiet_logging()
    settings = SimpleNamespace(**json.loads(sys.argv[1]))
    torch.set_num_threads(settings.threads)
    probe(settings)
