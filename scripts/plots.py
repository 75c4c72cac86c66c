#!/usr/bin/env python3
"""Training curves from fairseq's JSON logs, and gate heat maps of a context-gated model, as PNG.

    python scripts/plots.py --runs runs/cgc runs/baseline --out runs/plots
    python scripts/plots.py --runs runs/cgc --checkpoint runs/cgc/average.pt --data data-bin/multi30k.de-en --out runs/plots

curves.png   train/valid loss and valid BLEU, vs updates and vs training wall-clock, one line per run (label: the
             run dir's name, or --labels). Loss from RUN/train.log (train_inner/valid records); valid BLEU from
             the valid records when fairseq logged valid_bleu, else from RUN/valid_bleu/*/results.json (written by
             scripts/demo.py: scripts/evaluate.py --split valid on each kept epoch checkpoint).
gates_encoder.png  for --sentences sentences of --split: the gate G (in (0, 1)) of every encoder layer, heads x
             kernel positions (the encoder gate is one per sentence).
gates_decoder.png  the same for the decoder, over time: one row per target position (the reference, teacher
             forced), heads side by side (kernel positions within each head; the last tap is the current token).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from script_utils import Parser, ScriptError, check_data_dir, check_split, log, main_guard  # noqa: E402


def read_log(path):
    """fairseq --log-format json output -> {"train_inner": [...], "valid": [...], "train": [...]} of dicts of floats."""
    out = {"train_inner": [], "valid": [], "train": []}
    for line in Path(path).read_text(errors="replace").splitlines():
        for tag in out:
            marker = f"| {tag} | "
            i = line.find(marker)
            if i >= 0:
                try:
                    rec = json.loads(line[i + len(marker):])
                except json.JSONDecodeError:
                    continue
                out[tag].append({k: _num(v) for k, v in rec.items()})
    return out


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def wall_at(train, updates):
    """Training wall-clock (s) at an update count: that of the last train_inner record at or before it."""
    best = None
    for u, wall, _ in train:
        if updates is not None and u <= updates and (best is None or u >= best[0]):
            best = (u, wall)
    return best[1] if best else None


def run_curves(run_dir):
    """{train: [(updates, wall_s, loss)], valid: [(updates, wall_s, loss)], bleu: [(updates, wall_s, bleu)]}."""
    run_dir = Path(run_dir)
    logfile = run_dir / "train.log"
    if not logfile.is_file():
        raise ScriptError(f"no training log: {logfile}")
    recs = read_log(logfile)
    train = [(r["num_updates"], r["wall"], r["loss"]) for r in recs["train_inner"] if "loss" in r]
    valid, bleu = [], []
    for r in recs["valid"]:
        wall = wall_at(train, r.get("valid_num_updates"))
        valid.append((r.get("valid_num_updates"), wall, r.get("valid_loss")))
        if "valid_bleu" in r:
            bleu.append((r.get("valid_num_updates"), wall, r["valid_bleu"]))
    if not bleu:
        for res in sorted((run_dir / "valid_bleu").glob("*/results.json")):
            d = json.loads(res.read_text())
            c = d.get("checkpoint", {})
            if c.get("num_updates") is not None:
                bleu.append((c["num_updates"], c.get("training_seconds"), d["bleu_tokenized"]))
    bleu.sort(key=lambda x: x[0])
    return {"train": train, "valid": valid, "bleu": bleu}


def plot_curves(runs, labels, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for (run, curves), label in zip(runs, labels):
        for col, xi, xscale in ((0, 0, 1.0), (1, 1, 1 / 60)):
            ax = axes[0, col]
            pts = [(p[xi], p[2]) for p in curves["train"] if p[xi] is not None]
            line = ax.plot([x * xscale for x, _ in pts], [y for _, y in pts], label=f"{label} train", lw=1)[0]
            pts = [(p[xi], p[2]) for p in curves["valid"] if p[xi] is not None]
            ax.plot([x * xscale for x, _ in pts], [y for _, y in pts], "o--", color=line.get_color(),
                    label=f"{label} valid")
            pts = [(p[xi], p[2]) for p in curves["bleu"] if p[xi] is not None]
            axes[1, col].plot([x * xscale for x, _ in pts], [y for _, y in pts], "o-", color=line.get_color(),
                              label=label)
    for col, xl in ((0, "updates"), (1, "training wall-clock (min)")):
        axes[0, col].set(xlabel=xl, ylabel="loss (label-smoothed CE, base 2)", title=f"loss vs {xl.split(' (')[0]}")
        axes[1, col].set(xlabel=xl, ylabel="valid BLEU (tokenized, beam 4)", title=f"valid BLEU vs {xl.split(' (')[0]}")
        for row in (0, 1):
            axes[row, col].grid(alpha=0.3)
            if axes[row, col].lines:
                axes[row, col].legend(fontsize=8)
    fig.tight_layout()
    save_fig(fig, out)


def save_fig(fig, out):
    import os

    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)


def gated_convs(layers):
    return [layer.conv if getattr(layer.conv, "context_gate", None) is not None else None for layer in layers]


def collect_gates(checkpoint, data, split, n):
    """Run the model on the first n sentences of split (reference as decoder input) with gate recording.
    Returns (sentences [(src_pieces, tgt_pieces)], enc [[H x K per layer]], dec [[T x H x K per layer]])."""
    import sentencepiece as spm
    import torch
    from fairseq import checkpoint_utils

    import cgc_fairseq  # noqa: F401  (registers the archs, allow-lists argparse.Namespace)

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)],
                                                                       arg_overrides={"data": str(data)})
    model = models[0].eval()
    enc_convs, dec_convs = gated_convs(model.encoder.layers), gated_convs(model.decoder.layers)
    if not any(enc_convs) and not any(dec_convs):
        return None
    sp = spm.SentencePieceProcessor(model_file=str(Path(data) / "spm.model"))
    src_lines = (Path(data) / "tok" / f"{split}.de").read_text().splitlines()[:n]
    tgt_lines = (Path(data) / "tok" / f"{split}.en").read_text().splitlines()[:n]
    for conv in filter(None, enc_convs + dec_convs):
        conv.record_gates = True
    sentences, enc, dec = [], [], []
    sd, td = task.source_dictionary, task.target_dictionary
    with torch.no_grad():
        for s, t in zip(src_lines, tgt_lines):
            sp_s, sp_t = sp.encode(s, out_type=str), sp.encode(t, out_type=str)
            src = sd.encode_line(" ".join(sp_s), add_if_not_exist=False).long().unsqueeze(0)
            tgt = td.encode_line(" ".join(sp_t), add_if_not_exist=False).long()
            prev = torch.cat([tgt.new_tensor([td.eos()]), tgt[:-1]]).unsqueeze(0)
            model(src, torch.tensor([src.size(1)]), prev)
            enc.append([c.last_gate[0, 0].numpy() if c is not None else None for c in enc_convs])
            dec.append([c.last_gate[:, 0].numpy() if c is not None else None for c in dec_convs])
            sentences.append((sp_s + ["</s>"], ["</s>"] + sp_t))
    for conv in filter(None, enc_convs + dec_convs):
        conv.record_gates, conv.last_gate = False, None
    return sentences, enc, dec


def plot_gates(sentences, gates, out, side):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = len(gates[0])
    rows = len(sentences)
    height = 2.4 if side == "encoder" else 4.0
    fig, axes = plt.subplots(rows, layers, figsize=(max(3.8 * layers, 7), height * rows + 0.6), squeeze=False,
                             constrained_layout=True)
    im = None
    for r, ((src, tgt), per_layer) in enumerate(zip(sentences, gates)):
        for l, g in enumerate(per_layer):
            ax = axes[r, l]
            if g is None:
                ax.text(0.5, 0.5, "ungated", ha="center", va="center")
                ax.set_axis_off()
                continue
            if side == "encoder":  # H x K
                im = ax.imshow(g, vmin=0, vmax=1, cmap="viridis", aspect="auto")
                K = g.shape[1]
                ax.set(xlabel="kernel tap (offset from the token)", ylabel="head")
                ax.set_xticks(range(K))
                ax.set_xticklabels([str(k - K // 2) for k in range(K)], fontsize=7)
                ax.set_yticks(range(g.shape[0]))
            else:  # T x H x K -> T x (H*K)
                T, H, K = g.shape
                im = ax.imshow(g.reshape(T, H * K), vmin=0, vmax=1, cmap="viridis", aspect="auto")
                for h in range(1, H):
                    ax.axvline(h * K - 0.5, color="white", lw=1)
                if H * K <= 32:
                    ax.set_xticks(range(H * K))
                    ax.set_xticklabels([str(k - K + 1) for _ in range(H) for k in range(K)], fontsize=5)
                ax.set(xlabel=f"{H} heads | taps -{K - 1}..0", ylabel="decoder input token")
                if T <= 40:
                    ax.set_yticks(range(T))
                    ax.set_yticklabels(tgt[:T], fontsize=6)
            title = f"{side} layer {l} (K={g.shape[-1]})"
            if l == 0:
                text = " ".join(src if side == "encoder" else tgt)
                title = f"sentence {r}: {text[:60]}{'...' if len(text) > 60 else ''}\n{title}"
            ax.set_title(title, fontsize=7, loc="left")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="gate value")
    save_fig(fig, out)
    return np.mean([g.mean() for per in gates for g in per if g is not None])


def build_parser():
    p = Parser.from_doc("plots.py", __doc__)
    p.add_argument("--runs", nargs="*", default=[], help="run dirs of scripts/train.py (with train.log)")
    p.add_argument("--labels", nargs="*", help="one label per run (default: the run dirs' names)")
    p.add_argument("--checkpoint", help="a context-gated model for the gate heat maps")
    p.add_argument("--data", help="its data dir (with --checkpoint)")
    p.add_argument("--split", default="test", help="sentences for the heat maps (default: %(default)s)")
    p.add_argument("--sentences", type=int, default=3, help="how many (default: %(default)s)")
    p.add_argument("--out", required=True, help="output dir for the PNGs")
    return p


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    if not args.runs and not args.checkpoint:
        raise ScriptError("nothing to plot: give --runs and/or --checkpoint")
    if args.labels and len(args.labels) != len(args.runs):
        raise ScriptError(f"--labels has {len(args.labels)} names for {len(args.runs)} runs")
    out = Path(args.out)
    written = []
    if args.runs:
        runs = [(r, run_curves(r)) for r in args.runs]
        labels = args.labels or [Path(r).resolve().name for r in args.runs]
        plot_curves(runs, labels, out / "curves.png")
        written.append(out / "curves.png")
    if args.checkpoint:
        if not args.data:
            raise ScriptError("--checkpoint needs --data")
        if not Path(args.checkpoint).is_file():
            raise ScriptError(f"checkpoint not found: {args.checkpoint}")
        check_data_dir(args.data)
        check_split(args.data, args.split)
        got = collect_gates(args.checkpoint, args.data, args.split, args.sentences)
        if got is None:
            log(f"{args.checkpoint} has no context gates (an ungated model): no gate heat maps")
        else:
            sentences, enc, dec = got
            for side, gates in (("encoder", enc), ("decoder", dec)):
                if any(g is not None for per in gates for g in per):
                    mean = plot_gates(sentences, gates, out / f"gates_{side}.png", side)
                    written.append(out / f"gates_{side}.png")
                    log(f"{side} gates: mean {mean:.3f}")
    for w in written:
        log(f"wrote {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
