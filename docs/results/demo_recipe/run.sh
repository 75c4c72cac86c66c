#!/usr/bin/env bash
# The demo-recipe screen (rule.txt): candidates A-D one after another, each a full demo run (seed 1, every core,
# 30 min of training) on an otherwise idle machine. Run from a worktree of the tagged commit, in the background:
#   git tag demo-recipe-v1 && git worktree add ../demo-recipe-wt demo-recipe-v1
#   cd ../demo-recipe-wt && nohup bash docs/results/demo_recipe/run.sh > /work/main/runs/demo-recipe/screen.log 2>&1 &
# A is the demo exactly as `make demo` runs it (it also prepares the data if missing: the re-measure of the README);
# B-D skip the per-checkpoint valid BLEU, which the choice does not use. A rerun skips a candidate with a summary.
# Then: python docs/results/demo_recipe/decide.py (valid scores only).
set -euo pipefail
MAIN=${MAIN:-/work/main}
PY=$MAIN/.venv/bin/python
OUT=$MAIN/runs/demo-recipe
DATA=$MAIN/data-bin/multi30k.de-en
mkdir -p "$OUT"
declare -A FLAGS=(
  [A]=""
  [B]="--no-valid-bleu --lr 2e-3 --warmup-updates 150"
  [C]="--no-valid-bleu --warmup-updates 150 --max-tokens 2000 --save-interval-updates 100"
  [D]="--no-valid-bleu --warmup-updates 150"
)
for c in ${CANDIDATES:-A B C D}; do
  [ -f "$OUT/$c/summary.json" ] && { echo "$c: done, skipping"; continue; }
  echo "$c: start $(date -u +%FT%TZ) flags: ${FLAGS[$c]}"
  t0=$(date +%s)
  # shellcheck disable=SC2086
  "$PY" -m scripts.demo --corpus multi30k --data "$DATA" --run-dir "$OUT/$c" ${FLAGS[$c]} \
    > "$OUT/$c.console.log" 2>&1
  echo "$c: end $(date -u +%FT%TZ) wall $(( $(date +%s) - t0 )) s"
done
