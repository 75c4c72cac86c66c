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
install=("$PY" -m pip install --no-index --no-deps --quiet .whl/*.whl)
"${install[@]}" > "$OUT/install.log" 2>&1 || "${install[@]}" --break-system-packages >> "$OUT/install.log" 2>&1 ||
  { tail -5 "$OUT/install.log" >&2; echo "error: installing .whl/ failed (log: $OUT/install.log)" >&2; exit 1; }
echo "bundle installed into $("$PY" -c 'import sys; print(sys.prefix)') in $(( $(date +%s) - start )) s"
exec "$PY" -m scripts.gpu_check --out "$OUT/gpu-check" --data data-bin/multi30k.de-en "$@"
