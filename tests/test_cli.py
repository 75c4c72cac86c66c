"""The scripts' shared command line (scripts/cli.py): bf16 refused where the CPU has no native bf16, a single job's
threads, and a script run as a file."""
import os
import subprocess
import sys

import pytest
import torch

from scripts import cli, evaluate, train, translate
from tests.helpers import REPO


def test_bf16_is_refused_in_one_line_on_a_cpu_without_native_bf16(monkeypatch, capsys):
    """Faked: an AVX2-only CPU, where a bf16 matrix product is emulated (measured ~100x slower than fp32)."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    required = {train: ["--data", "D", "--run-dir", "R"], evaluate: ["--data", "D", "--checkpoint", "C", "--out", "O"],
                translate: ["D", "--path", "C"]}
    for script, given in required.items():
        with pytest.raises(SystemExit) as exit_:
            script.build_parser().parse_known_args([*given, "--precision", "bf16"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "argument --precision: precision bf16: this CPU (CPU capability AVX2) " \
                                      "has no native bf16" in err and "use fp32" in err
        assert script.build_parser().parse_known_args([*given, "--precision", "fp32"])[0].precision == "fp32"


def test_a_single_job_uses_the_cores_it_may_run_on():
    assert cli.available_cores() == len(os.sched_getaffinity(0))
    record = cli.machine(cli.available_cores())
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["threads"] == record["cores"] == cli.available_cores()


@pytest.mark.parametrize("name", ["train", "evaluate", "average", "translate", "demo", "race", "plots", "bench",
                                  "export", "ddp_cpu", "gpu_check", "bench_memory"])
def test_a_script_run_as_a_file_says_how_to_run_it(name):
    proc = subprocess.run([sys.executable, f"scripts/{name}.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: run it as a module from the repo root: python -m scripts.{name} --help"
