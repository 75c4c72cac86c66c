"""The GPU check (`make gpu-check`): the plugin's model tests, the benchmark and a short race on a CUDA device, in
about 9 minutes, everything under one output dir.

    python -m scripts.gpu_check --out runs/gpu-check [--data data-bin/multi30k.de-en]

On a machine with CUDA (torch.cuda.is_available()):
  1 tests  tests/test_device.py on cuda (CGC_TEST_DEVICE=cuda): encoder left-pad invariance, causality, incremental
           == full with a beam reorder, ungated == fairseq's conv; fp32 and under fp16 and bf16 autocast
  2 bench  scripts/bench.py --device cuda at the iwslt size: LightConv and DynamicConv (fairseq's and --no-cgc),
           CGC-LightConv (prefix, source, static) and CGC-DynamicConv, fp32 and bf16
  3 race   scripts/race.py on --data: lightconv_small, the four CGC-LightConv variants of the decisive race (prefix,
           prefix with nn.Linear's init, source, static), dynamicconv_small, cgc_dynamicconv_small; 1 seed,
           --race-updates updates, bf16, all runs at once on the card
Without CUDA it says so in one line, then runs the same steps as a dry run on the CPU with tiny sizes (the tests in
fp32 and bf16, a tiny bench, a tiny race of two models) and exits 0 when they pass.
Each step's output goes to OUT/STEP.log; OUT/gpu_check.json records the device, each step's command, exit status
and time, and where its results are (OUT/bench/bench.md, OUT/race/race.md). A step that fails does not stop the
others; the exit status is 1 when any failed.
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.gpu_check --help")

import os
import subprocess
import sys
import time
from pathlib import Path

from clitools.files import ensure_dir, write_json

from .cli import REPO, ScriptError, command_line, log, main_guard, parser, positive_int, script_command, versions
from .rundir import check_data_dir

BENCH_MODELS = ["lightconv", "nocgc_lightconv", "cgc_lightconv", "cgc_lightconv_source", "cgc_lightconv_static",
                "dynamicconv", "nocgc_dynamicconv", "cgc_dynamicconv"]
RACE_MODELS = ["lightconv_small", "cgc_lightconv_prefix=cgc_lightconv_small --cgc-decoder-context prefix",
               "cgc_lightconv_init=cgc_lightconv_small --cgc-decoder-context prefix --cgc-init-std pytorch",
               "cgc_lightconv_source=cgc_lightconv_small --cgc-decoder-context source",
               "cgc_lightconv_static=cgc_lightconv_small --cgc-context static",
               "dynamicconv_small", "cgc_dynamicconv_small"]


def steps(args, cuda):
    """[(name, command, env, timeout seconds)] of the check, full size on CUDA, tiny on the CPU."""
    out, data = args.out, str(args.data)
    if cuda:
        bench = ["--sizes", "iwslt", "--models", *BENCH_MODELS, "--precisions", "fp32", "bf16", "--device", "cuda",
                 "--repeats", 3]
        race = ["--models", *RACE_MODELS, "--seeds", 1, "--max-update", args.race_updates, "--curve-every",
                max(args.race_updates // 3, 1), "--precision", "bf16", "--jobs", len(RACE_MODELS)]
        device, timeouts = "cuda", (120, 180, 300)
    else:
        from cgc_fairseq.precision import native_bf16  # the race's bf16 would be refused on a CPU without it

        bench = ["--sizes", "small", "--tiny", "--models", "lightconv", "cgc_lightconv", "--precisions", "fp32",
                 "bf16", "--device", "cpu", "--repeats", 1, "--warmup", 1, "--steps", 1, "--max-tokens", 500,
                 "--decode-sentences", 4, "--decode-len", 4, "--long-decode-len", 12]
        race = ["--models", "lightconv_small", "cgc_lightconv_small", "--seeds", 1, "--preset", "tiny",
                "--max-update", 4, "--save-every", 2, "--curve-every", 4, "--average", 2, "--max-len-b", 12,
                "--splits", "valid", "--gate-sentences", 2, "--precision", "bf16" if native_bf16("cpu") else "fp32"]
        device, timeouts = "cpu", (600, 600, 600)
    tests = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_device.py",
             "--junitxml", str(out / "tests.xml")]
    if not cuda:  # make test runs all of tests/test_device.py on the CPU already; the dry run shows the step works
        tests += ["-k", "cgc_lightconv_small or ungated"]
    return [("tests", tests, {"CGC_TEST_DEVICE": device}, timeouts[0]),
            ("bench", [*script_command("bench"), "--data", data, "--out", str(out / "bench"), *map(str, bench)], {},
             timeouts[1]),
            ("race", [*script_command("race"), "--data", data, "--out", str(out / "race"), *map(str, race)], {},
             timeouts[2])]


def run_step(name, cmd, env, timeout, out):
    """Run one step, its output to OUT/NAME.log; its record (exit status, seconds)."""
    log(f"{name}: {' '.join(cmd[:4])} ... (log: {out / f'{name}.log'})")
    start = time.time()
    with open(out / f"{name}.log", "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, **env), cwd=REPO,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    seconds = round(time.time() - start, 1)
    log(f"{name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {seconds:.0f} s")
    return {"command": cmd, "env": env, "timeout_seconds": timeout, "exit": rc, "seconds": seconds,
            "log": str(out / f"{name}.log")}


def device_info():
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False}
    props = torch.cuda.get_device_properties(0)
    return {"cuda": True, "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
            "capability": list(torch.cuda.get_device_capability(0)), "cuda_version": torch.version.cuda,
            "devices": torch.cuda.device_count()}


def build_parser():
    p = parser("gpu_check", __doc__)
    p.add_argument("--out", type=Path, required=True, help="output dir (logs, bench/, race/, gpu_check.json)")
    p.add_argument("--data", type=Path, default=REPO / "data-bin" / "multi30k.de-en",
                   help="data dir of the race and the bench (default: %(default)s)")
    p.add_argument("--race-updates", type=positive_int, default=600, help="updates per race run on CUDA "
                                                                        "(default: %(default)s)")
    return p


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    check_data_dir(args.data)
    args.data, args.out = args.data.resolve(), args.out.resolve()
    info = device_info()
    if info["cuda"]:
        log(f"CUDA device: {info['name']} ({info['memory_gb']} GB, {info['devices']} device(s))")
    else:
        log("no CUDA device here: a dry run of the same steps on the CPU with tiny sizes")
    ensure_dir(args.out)
    report = {"device": info, "dry_run": not info["cuda"], "command": command_line(), "versions": versions(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": {}}
    for name, cmd, env, timeout in steps(args, info["cuda"]):
        report["steps"][name] = run_step(name, cmd, env, timeout, args.out)
        write_json(args.out / "gpu_check.json", report)
    failed = [name for name, step in report["steps"].items() if step["exit"] != 0]
    log(f"results: {args.out / 'bench' / 'bench.md'}, {args.out / 'race' / 'race.md'}; record: "
        f"{args.out / 'gpu_check.json'}")
    if failed:
        raise ScriptError(f"gpu check: {', '.join(failed)} failed; see {', '.join(f'{n}.log' for n in failed)} "
                          f"in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
