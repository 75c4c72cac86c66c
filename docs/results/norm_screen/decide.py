"""Apply the screen's rule (rule.txt) to its race.json: python docs/results/norm_screen/decide.py RACE_JSON > choice.json"""
import json
import statistics
import sys

NORMS = {"cgc_batch": "batch", "cgc_channels": "channels", "cgc_none": "none"}


def sentence_spread(run):
    """S of one run: the smallest sentence_spread over its gated layers (None without gate statistics)."""
    spreads = [s["sentence_spread"] for s in (run.get("gate_stats") or {}).values() if s.get("sentence_spread") is not None]
    return min(spreads) if spreads else None


def main(path):
    runs = json.load(open(path))["runs"]
    by = {}
    for r in runs:
        by.setdefault(r["label"], {})[r["seed"]] = r
    cgc = by["cgc"]
    out = {"cgc": {"V": {s: r["last_valid_loss"] for s, r in sorted(cgc.items())},
                   "S": sentence_spread(cgc[1])}}
    verdicts = {}
    for label, norm in NORMS.items():
        runs_n = by.get(label, {})
        seeds = sorted(set(runs_n) & set(cgc))
        v_n = [runs_n[s]["last_valid_loss"] for s in seeds]
        v_c = [cgc[s]["last_valid_loss"] for s in seeds]
        noise = max(statistics.stdev(v_n), statistics.stdev(v_c)) if len(seeds) > 1 else None
        dv = statistics.fmean(a - b for a, b in zip(v_n, v_c))
        s_n = statistics.fmean(x for s in seeds if (x := sentence_spread(runs_n[s])) is not None)
        verdict = None if noise is None else "better" if dv < -noise else "tied" if abs(dv) <= noise else "worse"
        verdicts[norm] = {"seeds": seeds, "V": v_n, "mean_V": statistics.fmean(v_n),
                          "std_V": statistics.stdev(v_n) if len(v_n) > 1 else None, "dV": dv, "noise": noise,
                          "S": s_n, "verdict": verdict}
    better = [n for n, v in verdicts.items() if v["verdict"] == "better"]
    tied = [n for n, v in verdicts.items() if v["verdict"] == "tied" and v["S"] >= 0.05]
    if better:
        best = min(better, key=lambda n: verdicts[n]["mean_V"])
        close = [n for n in better if abs(verdicts[n]["mean_V"] - verdicts[best]["mean_V"])
                 <= max(verdicts[n]["std_V"], verdicts[best]["std_V"])]
        choice, step = max(close, key=lambda n: verdicts[n]["S"]), 1
    elif tied:
        choice, step = max(tied, key=lambda n: verdicts[n]["S"]), 2
    else:
        choice, step = "latent", 3
    out |= {"norms": verdicts, "choice": choice, "rule_step": step}
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
