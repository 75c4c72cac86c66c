#!/usr/bin/env bash
# The GPU check on the lent machine, in one call (docs/usage.md gives the call): installs the wheels of .whl/
# (`make gpu-bundle`) with pip --no-index, then runs scripts/gpu_check.py on data-bin/multi30k.de-en; everything it
# writes goes under $OUT (the device tool's output folder; here: runs/gpu-device). Extra arguments go to gpu_check.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-device}
PY=${PYTHON:-python3}
VENV=${TMPDIR:-/tmp}/cgc-gpu-venv
[ -d .whl ] && [ -f data-bin/multi30k.de-en/manifest.json ] ||
  { echo "error: carry .whl (make gpu-bundle) and data-bin/multi30k.de-en (make prep-multi30k)" >&2; exit 1; }
mkdir -p "$OUT"
start=$(date +%s)
# a venv over the image's packages keeps them as they are; where that venv cannot see the image's torch (the image
# is itself a venv) or cannot be made, the wheels go into the image's environment
if "$PY" -m venv --system-site-packages "$VENV" 2>/dev/null && "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  PY=$VENV/bin/python
fi
# every wheel with its dependencies (a missing one fails here), but fairseq-fixed's torchaudio and scikit-learn
pip_install() { "$PY" -m pip install --no-index --find-links .whl --quiet "$@"; }
install() { pip_install --no-deps .whl/fairseq_fixed-*.whl "$@" &&
            pip_install $(ls .whl/*.whl | grep -v /fairseq_fixed-) "$@"; }
{ install || install --break-system-packages; } > "$OUT/install.log" 2>&1 ||
  { tail -5 "$OUT/install.log" >&2; echo "error: installing .whl/ failed (log: $OUT/install.log)" >&2; exit 1; }
echo "bundle installed into $("$PY" -c 'import sys; print(sys.prefix)') in $(( $(date +%s) - start )) s"
# fairseq imports scikit-learn and scipy when it is imported, for tasks the check never runs (audio classification,
# sentence prediction); they would take 44 MiB, more than the call has room for. Where the image lacks them, stand-ins
# on PYTHONPATH let that import pass; any use of them raises ImportError naming the stand-in.
STANDINS=${TMPDIR:-/tmp}/cgc-gpu-standins
"$PY" - "$STANDINS" <<'PY'
import importlib.util, pathlib, sys
body = ('"""A stand-in of scripts/gpu_device.sh: not installed here."""\n'
        'def __getattr__(name):\n'
        '    if name.startswith("__"):\n'
        '        raise AttributeError(name)\n'
        '    def missing(*args, **kwargs):\n'
        '        raise ImportError(f"{__name__}.{name}: not installed (a stand-in of scripts/gpu_device.sh)")\n'
        '    return missing\n')
root = pathlib.Path(sys.argv[1])
for package, module in (("sklearn", "metrics"), ("scipy", "stats")):
    if importlib.util.find_spec(package) is None:
        (root / package).mkdir(parents=True, exist_ok=True)
        for name in ("__init__", module):
            (root / package / f"{name}.py").write_text(body)
        print(f"stand-in for {package} (not in the image)")
PY
export PYTHONPATH=$STANDINS${PYTHONPATH:+:$PYTHONPATH}
exec "$PY" -m scripts.gpu_check --out "$OUT/gpu-check" --data data-bin/multi30k.de-en "$@"
