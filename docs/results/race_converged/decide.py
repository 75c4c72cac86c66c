"""Apply the converged race's rule (rule.txt) to its race.json files, the LightConv race's and the DynamicConv race's:

    python docs/results/race_converged/decide.py LIGHT/race.json [DYN/race.json] > decision.json
    python docs/results/race_converged/decide.py --markdown LIGHT/race.json [DYN/race.json] > decision.md

For every seed-paired comparison in them (model vs baseline) and test split: "helps" iff the sacreBLEU delta's 95% t
interval is above 0, the NLL delta's is below 0, and the paired bootstrap gives p < 0.05 with the model ahead on a
majority of the seeds (2 of 3, 3 of 5); "hurts" the same with the signs reversed; else "no difference shown". The
verdict is test's (test_2016_flickr); test1 (test_2017_flickr) is the check, and a verdict that holds on one test set
only says so. "more_seeds": a 95% interval's bound nearest 0 lies within one std of the per-seed deltas of 0, so the
rule adds seeds 4 and 5 to both models (with 3 seeds only).
"""
import json
import sys

DECIDING, CHECK = "test", "test1"
QUESTIONS = {  # (race, model, baseline) -> the question of the rule's claim
    ("lightconv", "cgc", "lightconv"): "Does CGC help LightConv?",
    ("lightconv", "cgc", "cgc_static"): "Is it the context?",
    ("lightconv", "cgc", "cgc_latent"): "Does the screen's fix matter at convergence?",
    ("dynamicconv", "cgc", "dynamicconv"): "Does CGC help DynamicConv?",
}


def verdict(pair, split):
    """The rule's three tests of one comparison on one split, and what they make."""
    bleu, nll = pair["delta"][f"{split}.sacrebleu"], pair["delta"][f"{split}.nll_loss"]
    seeds = (pair.get("paired_bootstrap") or {}).get(split, {})
    need = len(bleu["values"]) // 2 + 1
    ahead = sum(r["delta"] > 0 and r["p_value"] < 0.05 for r in seeds.values())
    behind = sum(r["delta"] < 0 and r["p_value"] < 0.05 for r in seeds.values())
    (b_low, b_high), (n_low, n_high) = bleu["ci95"], nll["ci95"]
    if b_low > 0 and n_high < 0 and ahead >= need:
        says = "helps"
    elif b_high < 0 and n_low > 0 and behind >= need:
        says = "hurts"
    else:
        says = "no difference shown"
    near = {name: abs(min(d["ci95"], key=abs)) <= d["std"] for name, d in (("sacrebleu", bleu), ("nll", nll))}
    return {"verdict": says, "seeds": len(bleu["values"]),
            "sacrebleu_delta": {k: bleu[k] for k in ("mean", "std", "ci95", "values")},
            "nll_delta": {k: nll[k] for k in ("mean", "std", "ci95", "values")},
            "bootstrap": {seed: {k: r[k] for k in ("delta", "p_value")} for seed, r in sorted(seeds.items())},
            "significant_seeds": {"model_ahead": ahead, "model_behind": behind, "needed": need},
            "bound_within_one_std_of_0": near}


def decide(race, report):
    out = []
    for pair in report["pairs"]:
        tests = {split: verdict(pair, split) for split in (DECIDING, CHECK)}
        decided, check = tests[DECIDING]["verdict"], tests[CHECK]["verdict"]
        out.append({
            "race": race, "model": pair["gated"], "baseline": pair["baseline"],
            "question": QUESTIONS.get((race, pair["gated"], pair["baseline"])),  # None: reported beside
            "verdict": decided, f"{CHECK}_verdict": check,  # rule: a claim on one test set only is reported as such
            "more_seeds": tests[DECIDING]["seeds"] < 5 and any(tests[DECIDING]["bound_within_one_std_of_0"].values()),
            "splits": tests,
        })
    return out


def markdown(decisions):
    """One row per comparison and test split: the verdict and the three tests it rests on."""
    def delta(d, digits):
        return f"{d['mean']:+.{digits}f} [{d['ci95'][0]:+.{digits}f}, {d['ci95'][1]:+.{digits}f}]"

    lines = ["| race | model vs baseline | question | split | verdict | sacreBLEU Δ [95% t CI] | NLL Δ [95% t CI] | "
             "bootstrap per seed: Δ (p) | more seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for d in decisions:
        for split, t in d["splits"].items():
            seeds = "; ".join(f"{seed}: {r['delta']:+.2f} ({r['p_value']:.3f})" for seed, r in t["bootstrap"].items())
            lines.append(f"| {d['race']} | {d['model']} vs {d['baseline']} | {d['question'] or '(beside)'} | {split} | "
                         f"{t['verdict']} | {delta(t['sacrebleu_delta'], 2)} | {delta(t['nll_delta'], 3)} | {seeds} | "
                         + ("yes" if split == DECIDING and d["more_seeds"] else "") + " |")
    return "\n".join(lines) + "\n"


def main(paths, as_markdown):
    decisions = []
    for race, path in zip(("lightconv", "dynamicconv"), paths):
        report = json.load(open(path))
        if report["missing_runs"]:
            raise SystemExit(f"error: {path} is not finished: {', '.join(report['missing_runs'])} missing")
        decisions += decide(race, report)
    if as_markdown:
        sys.stdout.write(markdown(decisions))
        return
    json.dump({"rule": "docs/results/race_converged/rule.txt", "decided_on": DECIDING, "check": CHECK,
               "decisions": decisions}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--markdown"]
    if not 1 <= len(args) <= 2:
        raise SystemExit("usage: decide.py [--markdown] LIGHT/race.json [DYN/race.json]")
    main(args, "--markdown" in sys.argv[1:])
