"""The command-line scripts (train, average, evaluate, plots, demo, race, bench, export, ddp_cpu), run from the repo
root as `python -m scripts.NAME`. They import each other as modules of this package; cgc_fairseq never imports them.
"""
