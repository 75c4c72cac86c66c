"""Is a race's difference real: sacrebleu's paired bootstrap (Koehn 2004) of each seed pair's test translations, and
the t confidence interval of the seed-paired deltas (Clark et al. 2011: the seeds are the optimizer's noise)."""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from clitools.files import read_json, read_lines

RESAMPLES = 1000
# Student's t, two-sided 95%: the 0.975 quantile for 1..10 degrees of freedom (a race has 2-5 seeds)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t_interval(deltas):
    """The 95% confidence interval (t, n - 1 degrees of freedom) of the mean of deltas: (low, high), or None for
    fewer than two deltas or more than 11."""
    n = len(deltas)
    if n < 2 or n - 1 not in T975:
        return None
    half = T975[n - 1] * statistics.stdev(deltas) / math.sqrt(n)
    mean = statistics.fmean(deltas)
    return mean - half, mean + half


def paired_bootstrap(model_hyps, baseline_hyps, refs, resamples=RESAMPLES):
    """sacreBLEU (lowercase, as scripts/evaluate.py scores it) of both systems on the same resampled test sets:
    {model, baseline: corpus scores, delta, p_value (of no difference), model_ci, baseline_ci (95%, half-widths),
    resamples, signature}. Seeded (sacrebleu's SACREBLEU_SEED, 12345), so it repeats exactly."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    if not len(model_hyps) == len(baseline_hyps) == len(refs):
        raise ValueError(f"{len(model_hyps)} and {len(baseline_hyps)} hypotheses for {len(refs)} references")
    test = PairedTest([("baseline", baseline_hyps), ("model", model_hyps)], {"BLEU": BLEU(lowercase=True)},
                      references=[refs], test_type="bs", n_samples=resamples)
    signatures, results = test()
    base, model = results["BLEU"]
    return {"model": round(model.score, 2), "baseline": round(base.score, 2),
            "delta": round(model.score - base.score, 2), "p_value": round(model.p_value, 4),
            "model_ci": round(model.ci, 2), "baseline_ci": round(base.ci, 2), "resamples": resamples,
            "signature": str(signatures["BLEU"])}


def detokenized(results_path):
    """(hypotheses, raw references) of a scripts/evaluate.py output dir: its hyp.detok.en and the references its
    results.json names (None without raw references)."""
    reference = read_json(results_path)["files"].get("reference_raw")
    if not reference:
        return None
    return read_lines(results_path.parent / "hyp.detok.en"), read_lines(reference)


def bootstrap_pairs(model_runs, baseline_runs, splits, name="average"):
    """{split: {seed: paired_bootstrap()}} of two models' runs ({seed: summary}) where both scored the split with
    the checkpoint `name` (RUN/eval/NAME.SPLIT)."""
    out = {}
    for split in splits:
        for seed in sorted(set(model_runs) & set(baseline_runs)):
            paths = [Path(runs[seed]["run_dir"]) / "eval" / f"{name}.{split}" / "results.json"
                     for runs in (model_runs, baseline_runs)]
            if not all(p.is_file() and (p.parent / "hyp.detok.en").is_file() for p in paths):  # kept without them
                continue
            model, baseline = map(detokenized, paths)
            if model is None or baseline is None:  # no raw references: no sacreBLEU
                continue
            out.setdefault(split, {})[seed] = paired_bootstrap(model[0], baseline[0], model[1])
    return out
