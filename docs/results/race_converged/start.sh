#!/usr/bin/env bash
# Start (or continue) the converged race (rule.txt) from its pinned worktree, then its DynamicConv race:
#   git worktree add ../race-converged-wt race-converged-v3       # once per machine
#   bash docs/results/race_converged/start.sh --detach            # from /work/main; log: runs/race-converged/queue.log
# The LightConv race runs 2 at a time. When only its last run is left, the DynamicConv race takes the idle core
# (--jobs 1); when the LightConv race ends, the DynamicConv race is restarted with --jobs 2 (it resumes from its
# checkpoint_last.pt, losing at most 200 updates of one run). Each race logs to its OUT/race.log.
set -euo pipefail
cd /work/main
LIGHT=runs/race-converged DYN=runs/race-converged-dynamicconv
if [ "${1:-}" = --detach ]; then
  mkdir -p $LIGHT
  setsid nohup bash "$0" >> $LIGHT/queue.log 2>&1 < /dev/null &
  echo "race queue running in the background, pid $!; log: /work/main/$LIGHT/queue.log"
  exit 0
fi
say() { echo "[$(date -u +%H:%M:%S)] $*"; }
# a fresh machine: the finished runs kept in git are reused as finished
mkdir -p $LIGHT $DYN
if [ -d docs/results/race_converged/runs ]; then cp -an docs/results/race_converged/runs/. $LIGHT/; fi
if [ -d docs/results/race_converged/runs-dynamicconv ]; then cp -an docs/results/race_converged/runs-dynamicconv/. $DYN/; fi
NORM=$(.venv/bin/python -c "import json; print(json.load(open('docs/results/norm_screen/choice.json'))['choice'])")
V="--cgc-decoder-context source --cgc-init-std 0.01"
MODELS=(lightconv=lightconv_small "cgc=cgc_lightconv_small $V --cgc-norm $NORM"
        "cgc_static=cgc_lightconv_small --cgc-context static --cgc-init-std 0.01")
PAIRS=(cgc:lightconv cgc:cgc_static cgc_static:lightconv)
if [ "$NORM" != latent ]; then
  MODELS+=("cgc_latent=cgc_lightconv_small $V --cgc-norm latent")
  PAIRS+=(cgc:cgc_latent cgc_latent:lightconv)
fi
SEEDS=(1 2 3)
BUDGET=(--seeds "${SEEDS[@]}" --patience 5 --validate-every 200 --max-update 6000 --average 5 --curve-every 400
        --precision fp32)
race() {  # OUT, then race.py's flags; run it with & (it replaces that subshell; the EXIT trap stops it)
  local out=$1; shift
  cd /work/race-converged-wt
  exec /work/main/.venv/bin/python -m scripts.race --data /work/main/data-bin/multi30k.de-en \
    --out "/work/main/$out" "${BUDGET[@]}" "$@" >> "/work/main/$out/race.log" 2>&1
}
dynamicconv_race() {  # --jobs N
  race $DYN --models dynamicconv=dynamicconv_small "cgc=cgc_dynamicconv_small $V --cgc-norm $NORM" --pairs cgc:dynamicconv \
    --jobs "$1"
}
trap 'exit 143' TERM INT
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

say "LightConv race -> $LIGHT"
race $LIGHT --models "${MODELS[@]}" --pairs "${PAIRS[@]}" --jobs 2 & light=$!
runs=$(( ${#MODELS[@]} * ${#SEEDS[@]} )) dyn=
while kill -0 $light 2>/dev/null; do
  finished=$(find $LIGHT -path '*/seed*/summary.json' | wc -l)
  if [ -z "$dyn" ] && [ "$finished" -ge $((runs - 1)) ]; then
    say "LightConv: $finished of $runs runs finished; DynamicConv race on the idle core (--jobs 1) -> $DYN"
    dynamicconv_race 1 & dyn=$!
  fi
  sleep 60 & wait $!
done
if ! wait $light; then
  say "error: the LightConv race failed (see $LIGHT/race.log); the queue stops"
  exit 1
fi
say "LightConv race done: $LIGHT/race.md"
if [ -n "$dyn" ]; then
  kill $dyn 2>/dev/null || true
  wait $dyn || true
  while [ -f $DYN/race.pid ] && kill -0 "$(cat $DYN/race.pid)" 2>/dev/null; do sleep 1; done  # its lock
fi
say "DynamicConv race (--jobs 2) -> $DYN"
dynamicconv_race 2 & dyn=$!
if ! wait $dyn; then
  say "error: the DynamicConv race failed (see $DYN/race.log)"
  exit 1
fi
say "DynamicConv race done: $DYN/race.md"
