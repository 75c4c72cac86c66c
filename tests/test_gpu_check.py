"""scripts/gpu_check.py without CUDA: one line says so, then a tiny CPU dry run of the same three steps passes
(the device tests, the bench with fp32 and bf16, a bf16 race) and leaves its record and results in OUT."""
import json

import pytest
import torch

from scripts import gpu_check
from tests.run_scripts import check_error, script

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the full check, not the dry run")
def test_dry_run_without_cuda(synthetic_data, tmp_path):
    out = tmp_path / "check"
    proc = script("gpu_check", "--out", out, "--data", synthetic_data)
    assert "no CUDA device here: a dry run" in proc.stdout
    record = json.loads((out / "gpu_check.json").read_text())
    assert record["dry_run"] and record["device"] == {"cuda": False}
    assert {name: step["exit"] for name, step in record["steps"].items()} == {"tests": 0, "bench": 0, "race": 0}
    assert record["steps"]["tests"]["env"] == {"CGC_TEST_DEVICE": "cpu"}
    assert " passed" in (out / "tests.log").read_text()
    bench = json.loads((out / "bench" / "bench.json").read_text())
    assert set(bench["sizes"]["small"]["models"]) == {"lightconv", "lightconv@bf16", "cgc_lightconv",
                                                      "cgc_lightconv@bf16"}
    race = json.loads((out / "race" / "race.json").read_text())
    assert set(race["models"]) == {"lightconv_small", "cgc_lightconv_small"} and not race["missing_runs"]


def test_cuda_steps_cover_the_issue(tmp_path):
    """On CUDA: every model property on cuda, the iwslt bench of the gated and ungated convs in fp32 and bf16, and
    the race models in bf16."""
    args = gpu_check.build_parser().parse_args(["--out", str(tmp_path)])
    names, (tests, bench, race), envs, timeouts = zip(*gpu_check.steps(args, cuda=True))
    assert names == ("tests", "bench", "race") and envs[0] == {"CGC_TEST_DEVICE": "cuda"} and "-k" not in tests
    assert "iwslt" in bench and "cuda" in bench and {"fp32", "bf16"} <= set(bench)
    assert set(gpu_check.BENCH_MODELS) <= set(bench)
    assert race[race.index("--precision") + 1] == "bf16"
    assert set(gpu_check.RACE_MODELS) <= set(race)
    assert sum(timeouts) <= 10 * 60  # the device tool's limit for one command


def test_missing_data_dir(tmp_path):
    check_error(script("gpu_check", "--out", tmp_path / "o", "--data", tmp_path / "none", check=False),
                "data dir not found")


def test_the_device_script_names_what_it_needs(tmp_path):
    """scripts/gpu_device.sh in a checkout without the bundle: one error line, exit 1, nothing installed."""
    import shutil
    import subprocess

    from tests.helpers import REPO

    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "gpu_device.sh", tmp_path / "scripts")
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "gpu_device.sh")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "error: carry .whl (make gpu-bundle) and data-bin/multi30k.de-en (make prep-multi30k)"]
    assert not (tmp_path / "out").exists()
