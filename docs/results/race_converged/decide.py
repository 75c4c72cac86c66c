"""Apply the converged race's rule (rule.txt) to its race.json files, the LightConv race's and the DynamicConv race's:

    python docs/results/race_converged/decide.py OUT_DIR LIGHT/race.json [DYN/race.json]

writes OUT_DIR/decision.json and decision.md (a race with runs missing is listed as unfinished, not decided).
For every seed-paired comparison (model vs baseline) and test split: "helps" iff the sacreBLEU delta's 95% t
interval is above 0, the NLL delta's is below 0, and the paired bootstrap gives p < 0.05 with the model ahead on a
majority of the seeds (2 of 3, 3 of 5); "hurts" the same with the signs reversed; else "no difference shown". The
verdict is test's (test_2016_flickr); test1 (test_2017_flickr) is the check ("holds_on": the test sets where the
model helps or hurts). "more_seeds" (the rule's claims only, with 3 seeds): a 95% interval's bound nearest 0 lies
within one std of the per-seed deltas of 0, so the rule adds seeds 4 and 5 to both models.
"""
import json
import os
import sys
from pathlib import Path

DECIDING, CHECK = "test", "test1"
QUESTIONS = {  # (race, model, baseline) -> the question of the rule's claim
    ("lightconv", "cgc", "lightconv"): "Does CGC help LightConv?",
    ("lightconv", "cgc", "cgc_static"): "Is it the context?",
    ("lightconv", "cgc", "cgc_latent"): "Does the screen's fix matter at convergence?",
    ("dynamicconv", "cgc", "dynamicconv"): "Does CGC help DynamicConv?",
}


def checked(pair, split):
    """The two deltas and the bootstrap of one comparison and split, refused when the rule cannot be applied."""
    name = f"{pair['gated']} vs {pair['baseline']}, {split}"
    deltas = [pair["delta"].get(f"{split}.{k}") for k in ("sacrebleu", "nll_loss")]
    if any(d is None or d.get("ci95") is None or d.get("std") is None for d in deltas):
        raise SystemExit(f"error: {name}: a delta without a 95% interval (fewer than 2 seed pairs, or no score)")
    boot = (pair.get("paired_bootstrap") or {}).get(split, {})
    if set(boot) != {str(seed) for seed in pair["seeds"]}:
        raise SystemExit(f"error: {name}: the paired bootstrap has seeds {sorted(boot)}, the pair {pair['seeds']}")
    return (*deltas, boot)


def verdict(pair, split):
    """The rule's three tests of one comparison on one split, and what they make."""
    bleu, nll, seeds = checked(pair, split)
    need = len(pair["seeds"]) // 2 + 1
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
    return {"verdict": says, "seeds": len(pair["seeds"]),
            "sacrebleu_delta": {k: bleu[k] for k in ("mean", "std", "ci95", "values")},
            "nll_delta": {k: nll[k] for k in ("mean", "std", "ci95", "values")},
            "bootstrap": {seed: {k: r[k] for k in ("delta", "p_value")} for seed, r in sorted(seeds.items())},
            "significant_seeds": {"model_ahead": ahead, "model_behind": behind, "needed": need},
            "bound_within_one_std_of_0": near}


def decide(race, report):
    out = []
    for pair in report["pairs"]:
        tests = {split: verdict(pair, split) for split in (DECIDING, CHECK)}
        question = QUESTIONS.get((race, pair["gated"], pair["baseline"]))  # None: reported beside, not a claim
        out.append({
            "race": race, "model": pair["gated"], "baseline": pair["baseline"], "question": question,
            "verdict": tests[DECIDING]["verdict"],
            "holds_on": [split for split, t in tests.items() if t["verdict"] != "no difference shown"],
            "more_seeds": question is not None and tests[DECIDING]["seeds"] < 5
            and any(tests[DECIDING]["bound_within_one_std_of_0"].values()),
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
            only = f" ({split} only)" if d["holds_on"] == [split] else ""
            more = "yes" if split == DECIDING and d["more_seeds"] else ""
            lines.append(f"| {d['race']} | {d['model']} vs {d['baseline']} | {d['question'] or '(beside)'} | {split} | "
                         f"{t['verdict']}{only} | {delta(t['sacrebleu_delta'], 2)} | {delta(t['nll_delta'], 3)} | "
                         f"{seeds} | {more} |")
    return "\n".join(lines) + "\n"


def write(path, text):
    """All or nothing: a reader never finds a half-written decision."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(out, paths):
    decisions, unfinished = [], {}
    if not out.is_dir():
        raise SystemExit(f"error: OUT_DIR {out} is not a directory")
    for race, path in zip(("lightconv", "dynamicconv"), paths):
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: {path}: not a readable race.json ({e})")
        if report["missing_runs"]:
            unfinished[race] = report["missing_runs"]
        else:
            decisions += decide(race, report)
    if not decisions:
        raise SystemExit(f"error: no race is finished: {unfinished}")
    md = markdown(decisions) + "".join(f"\nNot decided, the {race} race is not finished: {', '.join(missing)}\n"
                                       for race, missing in unfinished.items())
    write(out / "decision.json", json.dumps({"rule": "docs/results/race_converged/rule.txt", "decided_on": DECIDING,
                                             "check": CHECK, "decisions": decisions, "unfinished": unfinished},
                                            indent=2) + "\n")
    write(out / "decision.md", md)
    print(md, end="")


if __name__ == "__main__":
    if not 2 <= len(sys.argv) - 1 <= 3:
        raise SystemExit("usage: decide.py OUT_DIR LIGHT/race.json [DYN/race.json]")
    main(Path(sys.argv[1]), sys.argv[2:])
