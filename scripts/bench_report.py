"""The benchmark's report: each CGC model's ratios to the ungated conv of its kind against the targets, and
OUT/bench.md (the tables), OUT/bench.png (the ratios) and OUT/bench.json."""
from __future__ import annotations

from .bench_memory import PROBE_STEPS
from .bench_models import BEAM
from .files import atomic_path, write_atomic, write_json

LABELS = {"transformer": "Transformer", "lightconv": "LightConv", "dynamicconv": "DynamicConv",
          "cgc_lightconv": "CGC-LightConv", "cgc_dynamicconv": "CGC-DynamicConv",
          "nocgc_lightconv": "LightConv (plugin, --no-cgc)", "nocgc_dynamicconv": "DynamicConv (plugin, --no-cgc)"}
# (gated, ungated): the headline compares with fairseq's own conv; the plugin's conv with the gate switched off
# (--no-cgc: same band-matrix code, no gate) isolates what the gate itself costs
PAIRS = [("cgc_lightconv", "lightconv"), ("cgc_dynamicconv", "dynamicconv"),
         ("cgc_lightconv", "nocgc_lightconv"), ("cgc_dynamicconv", "nocgc_dynamicconv")]
TARGETS = {"train_time_per_token": ("<=", 1.05), "decode_speed": (">=", 0.95), "parameters": ("<=", 1.001),
           "peak_memory": ("<=", 1.10)}
TARGET_TEXT = {"train_time_per_token": "train time/token <= 1.05x", "decode_speed": "decode speed >= 0.95x",
               "parameters": "parameters <= +0.1%", "peak_memory": "peak memory <= 1.10x"}


def ratios(results):
    """CGC / the ungated conv of the same kind, from the medians, with PASS/MISS against TARGETS; keyed
    'gated/ungated'."""
    out = {}
    for gated, ungated in PAIRS:
        if gated not in results or ungated not in results:
            continue
        g, u = results[gated], results[ungated]
        train, decode = "train_tokens_per_second", "decode_sentences_per_second"
        values = {"train_time_per_token": u[train]["median"] / g[train]["median"],
                  "decode_speed": g[decode]["median"] / u[decode]["median"],
                  "parameters": g["parameters"] / u["parameters"],
                  "peak_memory": g["memory"]["peak_mb"] / u["memory"]["peak_mb"]}
        # the best round of each (least disturbed by other load on a shared machine), beside the medians
        best = {"train_time_per_token": u[train]["best"] / g[train]["best"],
                "decode_speed": g[decode]["best"] / u[decode]["best"]}
        out[f"{gated}/{ungated}"] = {"gated": gated, "ungated": ungated, **values, "best": best,
                      "steps_memory": (g["memory"]["steps_mb"] / u["memory"]["steps_mb"]
                                       if u["memory"]["steps_mb"] > 0 else None),
                      "pass": {k: (v <= TARGETS[k][1] if TARGETS[k][0] == "<=" else v >= TARGETS[k][1])
                               for k, v in values.items()}}
    return out


def fmt_ratio(ratios, key):
    """One ratio of ratios (or '-' when there are none) with PASS/MISS."""
    if ratios is None:
        return "-"
    value = ratios[key]
    text = f"{(value - 1) * 100:+.2f}%" if key == "parameters" else f"{value:.3f}x"
    best = f" (best {ratios['best'][key]:.3f}x)" if key in ratios.get("best", {}) else ""
    return f"{text} {'PASS' if ratios['pass'][key] else 'MISS'}{best}"


def markdown(report):
    s, m = report["settings"], report["machine"]
    mem = "peak GPU MB (max allocated)" if s["device"] == "cuda" else "peak RSS MB"
    lines = ["# CGC benchmark", "",
             f"{report['date']}; {m['gpu'] or m['cpu']}; device {s['device']}, {m['torch_threads']} torch thread(s), "
             f"{m['cores']} cores, load average at start {m['load_average'][0]:.2f}.",
             f"Train: {s['steps']} batches of split train (--max-tokens {s['max_tokens']}, "
             f"{report['data']['train_target_tokens']} target tokens), forward + backward + adam step. Decode: "
             f"{s['decode_sentences']} sentences of {s['decode_split']}, beam {BEAM}, every hypothesis "
             f"{s['decode_len']} tokens + EOS. Median (best) of {s['repeats']} interleaved rounds after "
             f"{s['warmup']} warm-up steps. Memory: {PROBE_STEPS} train steps on the largest batch, one fresh process "
             f"per model (+steps: over the high-water mark before the first step).", "",
             "## CGC vs the ungated conv of the same kind and size", "",
             "| size | pair | " + " | ".join(TARGET_TEXT.values()) + " |", "| --- | --- |" + " --- |" * len(TARGETS)]
    for size, res in report["sizes"].items():
        for r in res["ratios"].values():
            lines.append(f"| {size} | {LABELS[r['gated']]} / {LABELS[r['ungated']]} | "
                         + " | ".join(fmt_ratio(r, k) for k in TARGETS) + " |")
    if not any(res["ratios"] for res in report["sizes"].values()):
        lines.append("| (none: --models has no cgc_* model with its ungated conv) |" + " |" * (len(TARGETS) + 1))
    for size, res in report["sizes"].items():
        lines += ["", f"## {size}" + (" (tiny test models)" if s["tiny"] else ""), "",
                  f"| model | params | train tok/s | time/token vs ungated | {mem} (+steps) | vs ungated | "
                  "decode sent/s | vs ungated |", "| --- |" + " ---: |" * 7]
        for model, r in res["models"].items():
            q = res["ratios"].get(f"{model}/{model[len('cgc_'):]}")
            t, d = r["train_tokens_per_second"], r["decode_sentences_per_second"]
            params = f"{r['parameters']:,}" + (f" ({fmt_ratio(q, 'parameters')})" if q else "")
            lines.append(f"| {LABELS[model]} (`{r['arch']}`) | {params} | {t['median']:.0f} ({t['best']:.0f}) | "
                         f"{fmt_ratio(q, 'train_time_per_token')} | {r['memory']['peak_mb']:.0f} "
                         f"(+{r['memory']['steps_mb']:.0f}) | {fmt_ratio(q, 'peak_memory')} | "
                         f"{d['median']:.2f} ({d['best']:.2f}) | {fmt_ratio(q, 'decode_speed')} |")
        convs = [f"{LABELS[model]} `{r['conv']}`" for model, r in res["models"].items() if r["conv"]]
        lines += ["", f"Conv modules: {', '.join(convs)}."] if convs else []
    if "small" in report["sizes"] and "transformer" in report["sizes"]["small"]["models"] and not s["tiny"]:
        lines += ["", "The small Transformer is fairseq's transformer_iwslt_de_en at the small conv models' dims "
                      "(d=256, ffn 1024, 3+3 layers, 4 heads)."]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(report, out):
    """The ratios as % change vs the ungated conv, one panel per measure, with the target lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(size, r) for size, res in report["sizes"].items() for r in res["ratios"].values()]
    names = [f"{size}: {LABELS[r['gated']]} / {'--no-cgc' if r['ungated'].startswith('nocgc_') else 'fairseq'}"
             for size, r in pairs]
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(4.5 * len(TARGETS), 1.2 + 0.45 * len(pairs)), sharey=True)
    axes[0].invert_yaxis()  # the first pair on top (the y axis is shared)
    for ax, key in zip(axes, TARGETS):
        values = [(r[key] - 1) * 100 for _, r in pairs]
        ax.barh(range(len(pairs)), values, color=["tab:green" if r["pass"][key] else "tab:red" for _, r in pairs])
        for i, v in enumerate(values):
            ax.annotate(f"{v:+.2f}%" if key == "parameters" else f"{v:+.1f}%", (v, i), ha="left" if v >= 0 else "right", va="center", fontsize=7)
        ax.axvline((TARGETS[key][1] - 1) * 100, color="black", linestyle="--", label=f"target {TARGETS[key][0]}")
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(range(len(pairs)), names, fontsize=8)
        ax.set_title(TARGET_TEXT[key], fontsize=10)
        ax.set_xlabel("% vs the ungated conv")
        ax.legend(fontsize=7)
    fig.suptitle(f"CGC vs ungated ({report['settings']['device']}, median of {report['settings']['repeats']})")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_outputs(report, out):
    """bench.md, bench.png, bench.json in out (each under a temporary name, then renamed); the table to stdout."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    write_atomic(out / "bench.md", text)
    plot(report, out / "bench.png")
    write_json(out / "bench.json", report)
    print(text)
