"""Killing a script ends its fairseq child: SIGTERM (`kill PID`) and SIGKILL of scripts/train.py, and SIGTERM of
scripts/evaluate.py; the run says it was killed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast


def start(name, *args):
    return subprocess.Popen([sys.executable, "-m", f"scripts.{name}", *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def children(pid):
    """The pids of a process's children (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def wait_for(condition, seconds=120):
    end = time.time() + seconds
    while time.time() < end:
        if condition():
            return True
        time.sleep(0.5)
    return False


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")  # a zombie has ended


def training(run):
    return (run / "train.log").exists() and "train_inner" in (run / "train.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_train_ends_fairseq_train(synthetic_data, tmp_path, sig):
    run = tmp_path / "run"
    proc = start("train", "--data", synthetic_data, "--run-dir", run, "--preset", "tiny", "--max-update", 100000,
                 "--threads", 1)
    try:
        assert wait_for(lambda: training(run)), "fairseq-train did not start"
        (fairseq,) = children(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert wait_for(lambda: not alive(fairseq), 30), "fairseq-train outlived scripts/train.py"
    finally:
        proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and err.strip().splitlines()[-1] == "error: killed (SIGTERM)"
        assert "Traceback" not in err
        assert json.loads((run / "train.json").read_text())["status"] == "killed"


def test_killing_evaluate_ends_fairseq_generate(synthetic_data, tmp_path):
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "scripts.train", "--data", str(synthetic_data), "--run-dir", str(run),
                    "--preset", "tiny", "--max-update", "4"], cwd=REPO, check=True, capture_output=True)
    proc = start("evaluate", "--checkpoint", run / "checkpoints" / "checkpoint_last.pt", "--data", synthetic_data,
                 "--split", "test", "--out", tmp_path / "eval", "--max-len-b", 200, "--threads", 1)
    try:
        assert wait_for(lambda: children(proc.pid)), "fairseq-generate did not start"
        (generate,) = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert wait_for(lambda: not alive(generate), 30), "fairseq-generate outlived scripts/evaluate.py"
    finally:
        proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err
    assert not (tmp_path / "eval" / "results.json").exists()
