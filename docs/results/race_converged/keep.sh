#!/usr/bin/env bash
# Keep the converged races' finished runs in git: train.log, the JSON records and the test splits' detokenized
# hypotheses (the paired bootstrap reads them), not checkpoints. start.sh restores them on a fresh machine.
set -euo pipefail
keep() {  # the race's OUT under runs/, the folder under docs/results/race_converged/
  [ -d "/work/main/runs/$1" ] || return 0
  mkdir -p "/work/main/docs/results/race_converged/$2"
  cd "/work/main/runs/$1"
  for s in */seed*/summary.json; do
    [ -f "$s" ] || continue
    d=${s%/summary.json}
    find "$d" -path '*/checkpoints' -prune -o \( -name '*.json' -o -name train.log -o -path '*/eval/*.test*/hyp.detok.en' \) -print |
      xargs cp --parents -t "/work/main/docs/results/race_converged/$2/"
  done
}
keep race-converged runs
keep race-converged-dynamicconv runs-dynamicconv
