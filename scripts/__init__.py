"""The command-line scripts (train, average, evaluate, plots, demo, race, bench, export, translate, gpu_check,
ddp_cpu), run from the repo root as `python -m scripts.NAME`. They import each other as modules of this package, and
datadir, clitools (what they share with data-bin-prep/: errors, the main guard, atomic files, strict JSON, versions)
and cgc_fairseq; neither cgc_fairseq nor data-bin-prep/ imports them. Their options speak one vocabulary
(scripts/cli.py).
"""
