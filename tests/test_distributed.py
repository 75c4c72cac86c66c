"""Data-parallel training on 2 CPU processes (fairseq's own gloo engine, launched by scripts/ddp_cpu.py) against
one process with --update-freq 2: the same global batches, so the same losses."""
import json
import os
import subprocess
import sys

import pytest
from fairseq import checkpoint_utils

from tests.helpers import REPO, USER_DIR
from tests.reverse_task import ARCH_FLAGS, BIN

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast

FLAGS = ("--dropout 0.0 --weight-dropout 0.0 --optimizer adam --lr 5e-3 --lr-scheduler inverse_sqrt "
         "--warmup-updates 50 --max-tokens 1000 --max-update 20 --seed 1 --num-workers 0 --no-epoch-checkpoints "
         "--required-batch-size-multiple 1 --log-format json --log-interval 5").split()
TOLERANCE = 0.01  # measured: train loss 3.735 vs 3.735 at update 20, valid loss 3.678 vs 3.677


def train_inner(output):
    """{num_updates: record} of fairseq's JSON train_inner log lines."""
    records = [json.loads(line.split("| train_inner | ", 1)[1]) for line in output.splitlines()
               if "| train_inner | " in line]
    return {int(r["num_updates"]): r for r in records}


def test_two_cpu_ranks_match_one_process_with_update_freq_2(reverse_task, tmp_path):
    args = [str(reverse_task / "bin"), "--user-dir", USER_DIR, "--arch", "cgc_lightconv_small", *ARCH_FLAGS, *FLAGS]
    ddp = subprocess.run([sys.executable, "-m", "scripts.ddp_cpu", "--nproc", "2",
                          "--log-dir", str(tmp_path), "--", *args, "--save-dir", str(tmp_path / "ddp")],
                         capture_output=True, text=True, cwd=REPO)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "Traceback" not in (tmp_path / "rank-1.log").read_text()  # rank 1 exited 0 (ddp_cpu checks every rank)
    single = subprocess.run([str(BIN / "fairseq-train"), *args, "--cpu", "--update-freq", "2",
                             "--save-dir", str(tmp_path / "single")], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-3000:]

    ranks, one = train_inner(ddp.stdout + ddp.stderr), train_inner(single.stdout + single.stderr)
    assert sorted(ranks) == sorted(one) == [5, 10, 15, 20]
    for update in ranks:
        # the ranks communicated: each update saw both ranks' batches, as --update-freq 2 does
        assert ranks[update]["wpb"] == one[update]["wpb"]
        assert abs(float(ranks[update]["loss"]) - float(one[update]["loss"])) <= TOLERANCE
    [model], _ = checkpoint_utils.load_model_ensemble([str(tmp_path / "ddp" / "checkpoint_last.pt")],
                                                     arg_overrides={"data": str(reverse_task / "bin")})
    assert type(model).__name__ == "CGCLightConvModel"
