#!/usr/bin/env bash
# keep the screen's finished runs (new ones only): their train.log and JSON, not checkpoints or hypotheses
set -euo pipefail
cd /work/main/runs/norm-screen
for label in cgc cgc_batch cgc_channels cgc_none; do
  for s in $label/seed*/summary.json; do
    [ -f "$s" ] || continue
    d=${s%/summary.json}
    [ "$label" = cgc ] && [ "$d" != cgc/seed1 ] && continue  # stage 2's copies are kept there already
    find "$d" -path '*/checkpoints' -prune -o \( -name '*.json' -o -name train.log \) -print |
      xargs cp --parents -t /work/main/docs/results/norm_screen/runs/
  done
done
