#!/usr/bin/env bash
# Keep the converged race's finished runs in git: train.log, the JSON records and the test splits' detokenized
# hypotheses (the paired bootstrap reads them), not checkpoints
set -euo pipefail
mkdir -p /work/main/docs/results/race_converged/runs
cd /work/main/runs/race-converged
for s in */seed*/summary.json; do
  [ -f "$s" ] || continue
  d=${s%/summary.json}
  find "$d" -path '*/checkpoints' -prune -o \( -name '*.json' -o -name train.log -o -path '*/eval/*.test*/hyp.detok.en' \) -print |
    xargs cp --parents -t /work/main/docs/results/race_converged/runs/
done
