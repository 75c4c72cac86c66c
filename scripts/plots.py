"""Training curves from fairseq's JSON logs, and gate heat maps of a context-gated model, as PNG.

    python -m scripts.plots --runs runs/cgc runs/baseline --out runs/plots
    python -m scripts.plots --runs runs/cgc --checkpoint runs/cgc/average.pt --data data-bin/multi30k.de-en --out runs/plots

curves.png   train/valid loss and valid BLEU, vs updates and vs training wall-clock, one line per run (label: the
             run dir's name, or --labels). Loss from RUN/train.log (train_inner/valid records); valid BLEU from
             the valid records when fairseq logged valid_bleu, else from RUN/valid_bleu/*/results.json (written by
             scripts/demo.py: scripts/evaluate.py --split valid on each kept epoch checkpoint).
gates_encoder.png  the gates G (in (0, 1)) of every encoder layer, heads x kernel positions: first the mean gate over
             the first 100 sentences of --split, then, for each of --sentences sentences, its gate minus that mean
             (one symmetric colour scale: a blank row means the context changed nothing for that sentence).
gates_decoder.png  the same for the decoder, over time: one row per target position (the reference, teacher
             forced), heads side by side (kernel positions within each head; the last tap is the current token).
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.plots --help")

import sys
from pathlib import Path

from clitools.files import atomic_path, check_output_dir, read_lines
from datadir import layout

from .checkpoint import load_for_data
from .cli import BEAM, ScriptError, log, main_guard, parser, positive_int
from .rundir import check_data_dir, check_split, run_curves


MEAN_SENTENCES = 100  # the heat maps' mean gate: over this many sentences of the split (or --sentences if more)


def plot_curves(series, out, with_train=True):
    """Loss (top) and valid BLEU (bottom) vs updates (left) and training wall-clock (right), as a PNG. series:
    [(label or None, run_curves(run), colour or None)], one line per entry (label None: no legend entry); the train
    loss too when with_train."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for label, curves, colour in series:
        for col, xi, xscale in ((0, 0, 1.0), (1, 1, 1 / 60)):
            def draw(ax, key, style, name, colour):
                pts = [(p[xi], p[2]) for p in curves[key] if p[xi] is not None and p[2] is not None]
                return ax.plot([x * xscale for x, _ in pts], [y for _, y in pts], style, color=colour, label=name,
                               lw=1, ms=3)[0]

            if with_train:
                colour = draw(axes[0, col], "train", "-", label and f"{label} train", colour).get_color()
            valid = draw(axes[0, col], "valid", "o--" if with_train else "o-",
                         label and (f"{label} valid" if with_train else label), colour)
            draw(axes[1, col], "bleu", "o-", label, valid.get_color())
    loss = "loss (label-smoothed CE, base 2)" if with_train else "valid loss (label-smoothed CE, base 2)"
    for col, xl in ((0, "updates"), (1, "training wall-clock (min)")):
        axes[0, col].set(xlabel=xl, ylabel=loss, title=f"loss vs {xl.split(' (')[0]}")
        axes[1, col].set(xlabel=xl, ylabel=f"valid BLEU (tokenized, beam {BEAM})",
                         title=f"valid BLEU vs {xl.split(' (')[0]}")
        for row in (0, 1):
            axes[row, col].grid(alpha=0.3)
            if axes[row, col].get_legend_handles_labels()[0]:
                axes[row, col].legend(fontsize=8)
    fig.tight_layout()
    save_fig(fig, out)


def save_fig(fig, out):
    import matplotlib.pyplot as plt

    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def collect_gates(checkpoint, data, split, n):
    """The gates of a model on the first n sentences of split (the reference as decoder input): (sentences
    [(src_pieces, tgt_pieces)], encoder gates, decoder gates, encodings) as cgc_fairseq.gate_recording.record_gates
    gives them; None for an ungated model."""
    import sentencepiece as spm
    import torch
    from fairseq import checkpoint_utils

    from cgc_fairseq.gate_recording import record_gates

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)],
                                                                       arg_overrides={"data": str(data)})
    sp = spm.SentencePieceProcessor(model_file=str(layout.spm_model(data)))
    src_lines, tgt_lines = (read_lines(layout.tok_file(data, split, lang))[:n] for lang in layout.LANGS)
    sd, td = task.source_dictionary, task.target_dictionary
    sentences, pairs = [], []
    for s, t in zip(src_lines, tgt_lines):
        sp_s, sp_t = sp.encode(s, out_type=str), sp.encode(t, out_type=str)
        src = sd.encode_line(" ".join(sp_s), add_if_not_exist=False).long().unsqueeze(0)
        tgt = td.encode_line(" ".join(sp_t), add_if_not_exist=False).long()
        pairs.append((src, torch.cat([tgt.new_tensor([td.eos()]), tgt[:-1]]).unsqueeze(0)))
        sentences.append((sp_s + ["</s>"], ["</s>"] + sp_t))
    gates = record_gates(models[0], pairs)
    return None if gates is None else (sentences, *gates)


def mean_gates(gates):
    """Per layer, the mean gate over sentences (and a decoder's positions): H x K, or None for an ungated layer."""
    import numpy as np

    return [None if per[0] is None else np.mean([g.reshape(-1, *g.shape[-2:]).mean(0) for g in per], axis=0)
            for per in zip(*gates)]


def plot_gates(sentences, gates, mean, over, out, side):
    """Row 0: each layer's mean gate `mean` over `over` sentences (heads x kernel taps); then, per sentence, its gate
    minus the mean (encoder: H x K; decoder: one row per target position), on one symmetric colour scale, so that
    what the context changes from sentence to sentence is what the picture shows. Returns the largest |deviation|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = len(mean)
    height = 2.4 if side == "encoder" else 4.0
    fig, axes = plt.subplots(1 + len(sentences), layers, figsize=(max(3.8 * layers, 7), 2.4 + height * len(sentences)),
                             squeeze=False, constrained_layout=True)
    deviations = [[None if g is None else g - m for g, m in zip(per_layer, mean)] for per_layer in gates]
    scale = max([np.abs(d).max() for per in deviations for d in per if d is not None] + [1e-6])
    shown = None
    for l, m in enumerate(mean):
        if m is None:
            for ax in axes[:, l]:
                ax.text(0.5, 0.5, "ungated", ha="center", va="center")
                ax.set_axis_off()
            continue
        H, K = m.shape
        shown = axes[0, l].imshow(m.reshape(1, H * K) if side == "decoder" else m, vmin=0, vmax=1, cmap="viridis",
                                  aspect="auto")
        axes[0, l].set_title(f"{side} layer {l} (K={K}): mean gate over {over} sentences", fontsize=7, loc="left")
        label_taps(axes[0, l], H, K, side)
        if side == "decoder":
            axes[0, l].set_yticks([])
        for r, ((src, tgt), per_layer) in enumerate(zip(sentences, deviations), start=1):
            ax, d = axes[r, l], per_layer[l]
            im = ax.imshow(d if side == "encoder" else d.reshape(d.shape[0], H * K), vmin=-scale, vmax=scale,
                           cmap="RdBu_r", aspect="auto")
            label_taps(ax, H, K, side)
            if side == "decoder" and d.shape[0] == 1:  # the "source" context: one gate per sentence
                ax.set_yticks([])
                ax.set_ylabel("the sentence's gate")
            elif side == "decoder":
                ax.set_ylabel("decoder input token")
                if d.shape[0] <= 40:
                    ax.set_yticks(range(d.shape[0]))
                    ax.set_yticklabels(tgt[: d.shape[0]], fontsize=6)
            text = " ".join(src if side == "encoder" else tgt)
            title = f"gate - mean, max |.| {np.abs(d).max():.3f}"
            if l == 0:
                title = f"sentence {r - 1}: {text[:60]}{'...' if len(text) > 60 else ''}\n{title}"
            ax.set_title(title, fontsize=7, loc="left")
    if shown is not None:
        fig.colorbar(shown, ax=axes[0].tolist(), shrink=0.8, label="mean gate")
        fig.colorbar(im, ax=axes[1:].ravel().tolist(), shrink=0.6, label="gate - mean gate")
    save_fig(fig, out)
    return scale


def label_taps(ax, H, K, side):
    if side == "encoder":  # H x K
        ax.set(xlabel="kernel tap (offset from the token)", ylabel="head")
        ax.set_xticks(range(K))
        ax.set_xticklabels([str(k - K // 2) for k in range(K)], fontsize=7)
        ax.set_yticks(range(H))
        return
    for h in range(1, H):  # heads side by side
        ax.axvline(h * K - 0.5, color="white", lw=1)
    if H * K <= 32:
        ax.set_xticks(range(H * K))
        ax.set_xticklabels([str(k - K + 1) for _ in range(H) for k in range(K)], fontsize=5)
    ax.set_xlabel(f"{H} heads | taps -{K - 1}..0")


def curves_of(run):
    """run_curves(run), a ScriptError naming its train.log when the log has no record to plot (no train_inner or
    valid line: a run that has not logged yet, or not fairseq's --log-format json)."""
    curves = run_curves(run)
    if not curves["train"] and not curves["valid"]:
        raise ScriptError(f"{Path(run) / 'train.log'}: no training records (no train_inner or valid line of "
                          f"fairseq's --log-format json): nothing to plot")
    return curves


def build_parser():
    p = parser("plots", __doc__)
    p.add_argument("--runs", nargs="*", default=[], help="run dirs of scripts/train.py (with train.log)")
    p.add_argument("--labels", nargs="*", help="one label per run (default: the run dirs' names)")
    p.add_argument("--checkpoint", help="a context-gated model for the gate heat maps")
    p.add_argument("--data", help="its data dir (with --checkpoint)")
    p.add_argument("--split", default="test", help="sentences for the heat maps (default: %(default)s)")
    p.add_argument("--sentences", type=positive_int, default=3, help="how many, >= 1 (default: %(default)s)")
    p.add_argument("--out", required=True, help="output dir for the PNGs")
    return p


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.runs and not args.checkpoint:
        raise ScriptError("nothing to plot: give --runs and/or --checkpoint")
    if args.labels and len(args.labels) != len(args.runs):
        raise ScriptError(f"--labels has {len(args.labels)} names for {len(args.runs)} runs")
    out = Path(args.out)
    check_output_dir(out, "--out")
    written = []
    if args.runs:
        labels = args.labels or [Path(r).resolve().name for r in args.runs]
        plot_curves([(label, curves_of(r), None) for label, r in zip(labels, args.runs)], out / "curves.png")
        written.append(out / "curves.png")
    if args.checkpoint:
        if not args.data:
            raise ScriptError("--checkpoint needs --data")
        if not Path(args.checkpoint).is_file():
            raise ScriptError(f"checkpoint not found: {args.checkpoint}")
        check_data_dir(args.data)
        check_split(args.data, args.split)
        load_for_data(args.checkpoint, args.data)  # the data dir's dictionaries, before fairseq builds the model
        got = collect_gates(args.checkpoint, args.data, args.split, max(args.sentences, MEAN_SENTENCES))
        if got is None:
            log(f"{args.checkpoint} has no context gates (an ungated model): no gate heat maps")
        else:
            sentences, enc, dec, _ = got
            n = args.sentences
            for side, gates in (("encoder", enc), ("decoder", dec)):
                if any(g is not None for per in gates for g in per):
                    mean = mean_gates(gates)
                    scale = plot_gates(sentences[:n], gates[:n], mean, len(gates), out / f"gates_{side}.png", side)
                    written.append(out / f"gates_{side}.png")
                    overall = sum(float(m.mean()) for m in mean if m is not None) / sum(m is not None for m in mean)
                    log(f"{side} gates: mean {overall:.3f}, largest deviation of a shown sentence {scale:.3f}")
    for w in written:
        log(f"wrote {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
