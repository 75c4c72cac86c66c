#!/usr/bin/env bash
# Start (or continue) the norm screen: restore stage 2's reference runs, then the race from the pinned worktree.
set -euo pipefail
cd /work/main
mkdir -p runs/norm-screen
for run in lightconv/seed1 lightconv/seed2 lightconv/seed3 cgc/seed2 cgc/seed3 \
           cgc_static/seed1 cgc_static/seed2 cgc_static/seed3; do
  if [ ! -f runs/norm-screen/$run/summary.json ]; then
    mkdir -p runs/norm-screen/$run && cp -a docs/results/race_stage2/runs/$run/. runs/norm-screen/$run/
    .venv/bin/python - runs/norm-screen/$run <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1]).resolve()
for name in ("summary.json",):
    p = run / name
    d = json.loads(p.read_text())
    d["run_dir"] = str(run)
    p.write_text(json.dumps(d, indent=2) + "\n")
PY
  fi
done
# restore this screen's own kept runs (a later session, fresh machine)
if [ -d docs/results/norm_screen/runs ]; then cp -an docs/results/norm_screen/runs/. runs/norm-screen/; fi
V="--cgc-decoder-context source --cgc-init-std 0.01"
cd /work/norm-wt
/work/main/.venv/bin/python -m scripts.race --data /work/main/data-bin/multi30k.de-en --out /work/main/runs/norm-screen \
  --seeds 1 2 3 --max-update 1000 --curve-every 200 --save-every 50 --precision fp32 \
  --models lightconv=lightconv_small "cgc=cgc_lightconv_small $V" \
    "cgc_static=cgc_lightconv_small --cgc-context static --cgc-init-std 0.01" \
    "cgc_batch=cgc_lightconv_small $V --cgc-norm batch" "cgc_channels=cgc_lightconv_small $V --cgc-norm channels" \
    "cgc_none=cgc_lightconv_small $V --cgc-norm none" \
  --pairs cgc_batch:cgc cgc_channels:cgc cgc_none:cgc cgc_batch:cgc_static cgc_channels:cgc_static \
    cgc_none:cgc_static cgc:lightconv "$@"
