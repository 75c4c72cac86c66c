"""Kill and resume: SIGKILL a training run once a checkpoint exists, resume it, and end where an uninterrupted run
ends; a truncated checkpoint_last.pt (what a kill during fairseq's non-atomic copy leaves) is set aside."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO
from tests.run_scripts import script

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast

TRAIN = ("--preset", "tiny", "--max-update", 40, "--save-interval-updates", 10)
TOLERANCE = 1e-3  # measured: killed after update 10 or 20, the resumed run ends at 40 with the same valid loss (4.718 = 4.718 as logged)


def final_valid(run):
    """(num_updates, loss) of the last validation in the run's JSON log."""
    records = [json.loads(line.split("| valid | ", 1)[1]) for line in (run / "train.log").read_text().splitlines()
               if "| valid | " in line]
    return int(records[-1]["valid_num_updates"]), float(records[-1]["valid_loss"])


@pytest.fixture(scope="module")
def uninterrupted(synthetic_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted")
    script("train", "--data", synthetic_data, "--run-dir", run, *TRAIN)
    return run


def test_sigkill_then_resume_matches_an_uninterrupted_run(synthetic_data, uninterrupted, tmp_path):
    data = synthetic_data
    run = tmp_path / "killed"
    last = run / "checkpoints" / "checkpoint_last.pt"
    proc = subprocess.Popen([sys.executable, "-m", "scripts.train", "--data", str(data), "--run-dir", str(run),
                             *map(str, TRAIN)], start_new_session=True, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # train.py and its fairseq-train child
    proc.wait()
    assert json.loads((run / "train.json").read_text())["status"] == "running"  # not marked done

    resumed = script("train", "--data", data, "--run-dir", run, *TRAIN)
    assert "(resuming)" in resumed.stdout + resumed.stderr
    updates, loss = final_valid(run)
    expected_updates, expected_loss = final_valid(uninterrupted)
    assert updates == expected_updates == 40
    assert abs(loss - expected_loss) <= TOLERANCE, (loss, expected_loss)


def test_truncated_checkpoint_last_is_set_aside(synthetic_data, uninterrupted, tmp_path):
    data = synthetic_data
    import shutil

    run = tmp_path / "truncated"
    shutil.copytree(uninterrupted, run)
    last = run / "checkpoints" / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    proc = script("train", "--data", data, "--run-dir", run, "--preset", "tiny", "--max-update", 50,
                  "--save-interval-updates", 10)
    assert "was truncated" in proc.stdout + proc.stderr
    assert (run / "checkpoints" / "checkpoint_last.pt.corrupt").exists()
    assert final_valid(run)[0] == 50
