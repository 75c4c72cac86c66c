#!/usr/bin/env bash
# Start (or continue) the converged race (rule.txt) from its pinned worktree, then its DynamicConv race:
#   bash docs/results/race_converged/start.sh --detach            # from /work/main; log: runs/race-converged/queue.log
#   JOBS=1 THREADS=2 bash docs/results/race_converged/start.sh --detach   # one run at a time on both cores
#   bash docs/results/race_converged/start.sh --report   # main's race.md of both races' finished runs, and, once
#       a race has finished, decision.json and .md (decide.py: the rule's claims), under docs/results/race_converged/
# On a fresh machine it first makes what the race needs: the venv and data-bin (make), the tag and its worktree.
# The LightConv race runs JOBS runs at a time (default 2), THREADS torch threads each (default 1). With one thread
# per run, when exactly its last run is left, the DynamicConv race takes the idle core (--jobs 1); when the LightConv
# race ends, the DynamicConv race goes on with JOBS at a time (it resumes from its checkpoint_last.pt, losing at most
# 200 updates of one run). Each race logs to its OUT/race.log. Every minute, keep.sh copies newly finished runs'
# small files under docs/results/race_converged/ (commit them).
set -euo pipefail
cd /work/main
LIGHT=runs/race-converged DYN=runs/race-converged-dynamicconv
NORM=$(python3 -c "import json; print(json.load(open('docs/results/norm_screen/choice.json'))['choice'])")
V="--cgc-decoder-context source --cgc-init-std 0.01"
MODELS=(lightconv=lightconv_small "cgc=cgc_lightconv_small $V --cgc-norm $NORM"
        "cgc_static=cgc_lightconv_small --cgc-context static --cgc-init-std 0.01")
PAIRS=(cgc:lightconv cgc:cgc_static cgc_static:lightconv)
if [ "$NORM" != latent ]; then
  MODELS+=("cgc_latent=cgc_lightconv_small $V --cgc-norm latent")
  PAIRS+=(cgc:cgc_latent cgc_latent:lightconv)
fi
SEEDS=(1 2 3)
DYN_MODELS=(dynamicconv=dynamicconv_small "cgc=cgc_dynamicconv_small $V --cgc-norm $NORM") DYN_PAIRS=(cgc:dynamicconv)
BUDGET=(--seeds "${SEEDS[@]}" --patience 5 --validate-every 200 --max-update 6000 --average 5 --curve-every 400
        --precision fp32)
JOBS=${JOBS:-2} THREADS=${THREADS:-1}
# runs finished under the given OUTs (0 for an OUT not made yet)
finished() { { find "$@" -path '*/seed*/summary.json' 2>/dev/null || true; } | wc -l; }
if [ "${1:-}" = --report ]; then  # main's report of the finished runs (the race's own is its tag's)
  report() {  # OUT, the folder under docs/results/race_converged/, then race.py's --models and --pairs
    local out=$1 dest=docs/results/race_converged/$2; shift 2
    [ "$(finished "$out")" -gt 0 ] || return 0
    .venv/bin/python -m scripts.race --data data-bin/multi30k.de-en --out "$out" "${BUDGET[@]}" --threads "$THREADS" \
      --jobs "$JOBS" --report-only "$@" > /dev/null
    mkdir -p "$dest" && cp "$out/race.json" "$out/race.md" "$out/curves.png" "$dest/"
    echo "$dest/race.md"
  }
  report $LIGHT lightconv --models "${MODELS[@]}" --pairs "${PAIRS[@]}"
  report $DYN dynamicconv --models "${DYN_MODELS[@]}" --pairs "${DYN_PAIRS[@]}"
  cd docs/results/race_converged
  python3 decide.py . lightconv/race.json $([ -f dynamicconv/race.json ] && echo dynamicconv/race.json) > /dev/null &&
    echo docs/results/race_converged/decision.{json,md} || echo "no decision (see above)"
  exit 0
fi
running() { [ -f "$1/race.pid" ] && kill -0 "$(tr -dc 0-9 < "$1/race.pid")" 2>/dev/null; }
if running $LIGHT || running $DYN; then echo "error: a race is running already (its race.pid under runs/)" >&2; exit 1; fi
if [ "${1:-}" = --detach ]; then
  mkdir -p $LIGHT
  # bash reads a script as it runs: the queue runs a copy, so that editing this one is safe
  cp --remove-destination "$0" $LIGHT/queue.sh
  setsid nohup bash $LIGHT/queue.sh >> $LIGHT/queue.log 2>&1 < /dev/null &
  echo "race queue running in the background, pid $!; log: /work/main/$LIGHT/queue.log"
  exit 0
fi
say() { echo "[$(date -u +%H:%M:%S)] $*"; }
TAG=race-converged-v4 TAG_COMMIT=a174204f2b9a WT=/work/race-converged-wt
make -s setup >/dev/null
[ -f data-bin/multi30k.de-en/manifest.json ] || { say "making data-bin"; make -s prep-multi30k >/dev/null; }
git rev-parse -q --verify "refs/tags/$TAG" >/dev/null || git tag "$TAG" "$TAG_COMMIT"
[ -d "$WT" ] || git worktree add "$WT" "$TAG" >/dev/null
if [ "$(git -C "$WT" rev-parse HEAD)" != "$(git rev-parse "$TAG^{commit}")" ]; then  # no race runs from it (above)
  [ -z "$(git -C "$WT" status --porcelain)" ] || { say "error: $WT has local changes"; exit 1; }
  git -C "$WT" checkout -q --detach "$TAG" && say "$WT moved to $TAG"
fi
# a fresh machine: the finished runs kept in git are reused as finished
mkdir -p $LIGHT $DYN
if [ -d docs/results/race_converged/runs ]; then cp -an docs/results/race_converged/runs/. $LIGHT/; fi
if [ -d docs/results/race_converged/runs-dynamicconv ]; then cp -an docs/results/race_converged/runs-dynamicconv/. $DYN/; fi
race() {  # OUT, then race.py's flags; run it with & (it replaces that subshell; the EXIT trap stops it)
  local out=$1; shift
  cd "$WT"
  exec /work/main/.venv/bin/python -m scripts.race --data /work/main/data-bin/multi30k.de-en \
    --out "/work/main/$out" "${BUDGET[@]}" --threads "$THREADS" "$@" >> "/work/main/$out/race.log" 2>&1
}
dynamicconv_race() {  # --jobs N
  race $DYN --models "${DYN_MODELS[@]}" --pairs "${DYN_PAIRS[@]}" --jobs "$1"
}
trap 'exit 143' TERM INT
trap 'kill $(jobs -p) 2>/dev/null || true; bash docs/results/race_converged/keep.sh' EXIT
bash docs/results/race_converged/keep.sh; kept=$(finished $LIGHT $DYN)  # a run that finished while no queue ran
keep_new() {  # keep.sh when a run has finished since the last call
  local now; now=$(finished $LIGHT $DYN)
  if [ "$now" != "$kept" ]; then bash docs/results/race_converged/keep.sh && say "kept the finished runs ($now)"; kept=$now; fi
}

say "LightConv race -> $LIGHT"
race $LIGHT --models "${MODELS[@]}" --pairs "${PAIRS[@]}" --jobs "$JOBS" & light=$!
runs=$(( ${#MODELS[@]} * ${#SEEDS[@]} )) dyn=
while kill -0 $light 2>/dev/null; do
  keep_new
  light_finished=$(finished $LIGHT)
  if [ -z "$dyn" ] && [ "$THREADS" = 1 ] && [ "$JOBS" -gt 1 ] && [ "$light_finished" -eq $((runs - 1)) ]; then
    say "LightConv: $light_finished of $runs runs finished; DynamicConv race on the idle core (--jobs 1) -> $DYN"
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
  while running $DYN; do sleep 1; done  # its lock
fi
say "DynamicConv race (--jobs $JOBS) -> $DYN"
dynamicconv_race "$JOBS" & dyn=$!
while kill -0 $dyn 2>/dev/null; do keep_new; sleep 60 & wait $!; done
if ! wait $dyn; then
  say "error: the DynamicConv race failed (see $DYN/race.log)"
  exit 1
fi
say "DynamicConv race done: $DYN/race.md"
