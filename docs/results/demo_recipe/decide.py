"""The demo-recipe screen's choice (rule.txt), on valid scores only: runs/demo-recipe/{A,B,C,D}/summary.json ->
docs/results/demo_recipe/choice.json.

    python docs/results/demo_recipe/decide.py [--runs runs/demo-recipe] [--margin 0.5]
"""
import argparse
import json
import platform
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLAGS = {"A": [], "B": ["--lr", "2e-3", "--warmup-updates", "150"],
         "C": ["--warmup-updates", "150", "--max-tokens", "2000", "--save-interval-updates", "100"],
         "D": ["--warmup-updates", "150"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=HERE.parents[2] / "runs" / "demo-recipe")
    p.add_argument("--margin", type=float, default=0.5, help="a non-A candidate must beat A by more than this")
    args = p.parse_args()
    rows = {}
    for name in FLAGS:
        f = args.runs / name / "summary.json"
        if not f.exists():
            raise SystemExit(f"error: {f} is missing: run run.sh to the end first")
        s = json.loads(f.read_text())
        if s["train_flags"] != FLAGS[name]:
            raise SystemExit(f"error: {f} was trained with {s['train_flags']}, not candidate {name}'s {FLAGS[name]}")
        rows[name] = {"flags": s["train_flags"], "chosen": s["chosen"],
                      "valid_bleu_tokenized": s["valid"][s["chosen"]]["bleu_tokenized"],
                      "valid_bleu_tokenized_all": {k: v["bleu_tokenized"] for k, v in s["valid"].items()},
                      "updates": s["updates"], "training_minutes": round(s["training_wall_seconds"] / 60, 2),
                      "threads": s["threads"], "machine": s["machine"]}
    best = max(rows, key=lambda n: rows[n]["valid_bleu_tokenized"])
    other = max((n for n in rows if n != "A"), key=lambda n: rows[n]["valid_bleu_tokenized"])
    a, o = rows["A"]["valid_bleu_tokenized"], rows[other]["valid_bleu_tokenized"]
    winner = other if o > a + args.margin else "A"
    verdict = (f"{other} wins on seed 1 ({o:.2f} > A {a:.2f} + {args.margin}): seed 2 of A and {other} decides"
               if winner != "A" else
               f"A stays on seed 1: the best other candidate, {other} ({o:.2f}), does not beat A ({a:.2f}) by more "
               f"than {args.margin}")
    out = {"rule": "rule.txt", "margin": args.margin, "candidates": rows, "best_on_valid": best,
           "winner_seed1": winner, "verdict": verdict, "python": platform.python_version()}
    (HERE / "choice.json").write_text(json.dumps(out, indent=2) + "\n")
    for n, r in rows.items():
        print(f"{n}  valid tok BLEU {r['valid_bleu_tokenized']:6.2f} ({r['chosen']})  {r['updates']} updates  "
              f"{r['training_minutes']} min  {' '.join(r['flags'])}")
    print(verdict)


if __name__ == "__main__":
    main()
