#!/usr/bin/env bash
# Start (or continue) the converged race (rule.txt) from its pinned worktree: git worktree add ../race-converged-wt
# race-converged-v3; then, from /work/main: bash docs/results/race_converged/start.sh --detach
set -euo pipefail
cd /work/main
mkdir -p runs/race-converged
# a fresh machine: the finished runs kept in git are reused as finished
if [ -d docs/results/race_converged/runs ]; then cp -an docs/results/race_converged/runs/. runs/race-converged/; fi
NORM=$(.venv/bin/python -c "import json; print(json.load(open('docs/results/norm_screen/choice.json'))['choice'])")
V="--cgc-decoder-context source --cgc-init-std 0.01"
MODELS=(lightconv=lightconv_small "cgc=cgc_lightconv_small $V --cgc-norm $NORM"
        "cgc_static=cgc_lightconv_small --cgc-context static --cgc-init-std 0.01")
PAIRS=(cgc:lightconv cgc:cgc_static cgc_static:lightconv)
if [ "$NORM" != latent ]; then
  MODELS+=("cgc_latent=cgc_lightconv_small $V --cgc-norm latent")
  PAIRS+=(cgc:cgc_latent cgc_latent:lightconv)
fi
cd /work/race-converged-wt
/work/main/.venv/bin/python -m scripts.race --data /work/main/data-bin/multi30k.de-en --out /work/main/runs/race-converged \
  --seeds 1 2 3 --patience 5 --validate-every 200 --max-update 6000 --average 5 --curve-every 400 --precision fp32 \
  --models "${MODELS[@]}" --pairs "${PAIRS[@]}" "$@"
