"""Running scripts/ as a user does (`python -m scripts.NAME` from the repo root), and the one-line error check."""
import subprocess
import sys

from tests.helpers import REPO


def script(name, *args, check=True, **kwargs):
    """python -m scripts.NAME ARGS from the repo root; its CompletedProcess (an AssertionError with its output when
    check and it failed). kwargs go to subprocess.run (env, timeout)."""
    proc = subprocess.run([sys.executable, "-m", f"scripts.{name}", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def check_error(proc, *needles):
    """A one-line `error: ...` naming the problem, non-zero exit, no traceback."""
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert err and err[-1].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in err[-1], err[-1]
