"""The benchmark's report: each CGC model's ratios to the ungated conv of its kind against the targets, and
OUT/bench.md (the tables), OUT/bench.png (the ratios) and OUT/bench.json."""
from __future__ import annotations

from clitools.files import atomic_path, write_atomic, write_json

from .bench_memory import PROBE_STEPS
from .bench_models import VARIANTS, entry, split_entry, variant_of
from .cli import BEAM

KINDS = {"lightconv": "LightConv", "dynamicconv": "DynamicConv"}
VARIANT_TEXT = {"prefix": "", "source": " (source)", "static": " (static)"}
LABELS = {"transformer": "Transformer", **KINDS,
          **{f"cgc_{kind}{'' if v == 'prefix' else '_' + v}": f"CGC-{name}{VARIANT_TEXT[v]}"
             for kind, name in KINDS.items() for v in VARIANTS},
          **{f"nocgc_{kind}": f"{name} (plugin, --no-cgc)" for kind, name in KINDS.items()}}
# each gated model against the ungated conv of its kind twice: fairseq's own conv (the headline) and the plugin's conv
# with the gate switched off (--no-cgc: same band-matrix code, no gate), which isolates what the gate itself costs.
# Targets per decoder-gate variant (issue 13): ratio gated / ungated
TARGETS = {
    "prefix": {"train_time_per_token": ("<=", 1.15), "decode_speed": (">=", 0.90), "parameters": ("<=", 1.001),
               "peak_memory": ("<=", 1.10)},
    "source": {"train_time_per_token": ("<=", 1.05), "decode_speed": (">=", 0.95), "parameters": ("<=", 1.001),
               "peak_memory": ("<=", 1.05)},
    "static": {"train_time_per_token": ("<=", 1.02), "decode_speed": (">=", 0.98), "parameters": ("<=", 1.0001),
               "peak_memory": ("<=", 1.02)},
}
MEASURES = {"train_time_per_token": "train time/token", "decode_speed": "decode speed", "parameters": "parameters",
            "peak_memory": "peak memory"}
# bf16 / fp32 of the same model (issue 14): training tokens/s per size, decoding sentences/s
PRECISION_TARGETS = {"train_speedup": {"small": 1.5, "iwslt": 2.0}, "decode_speedup": 1.5}
# long outputs: seconds per token at these positions; the last over the first at most this much (issue 13)
LONG_DECODE_POSITIONS = (10, 50, 100)
LONG_DECODE_TARGETS = {"prefix": 1.5, "source": 1.10, "static": 1.10}


def label(key):
    model, precision = split_entry(key)
    return LABELS[model] + ("" if precision == "fp32" else f" [{precision}]")


def passes(value, target):
    op, bound = target
    return value <= bound if op == "<=" else value >= bound


def ratios(results):
    """Each CGC entry / the ungated conv of its kind in the same precision, from the medians, with PASS/MISS
    against its variant's TARGETS; keyed 'gated/ungated' (entry keys)."""
    out = {}
    for gated, g in results.items():
        model, precision = split_entry(gated)
        base, variant = variant_of(model)
        if variant is None:
            continue
        kind = base[len("cgc_"):]
        for ungated in (entry(kind, precision), entry(f"nocgc_{kind}", precision)):
            if ungated not in results:
                continue
            u = results[ungated]
            train, decode = "train_tokens_per_second", "decode_sentences_per_second"
            values = {"train_time_per_token": u[train]["median"] / g[train]["median"],
                      "decode_speed": g[decode]["median"] / u[decode]["median"],
                      "parameters": g["parameters"] / u["parameters"],
                      "peak_memory": g["memory"]["peak_mb"] / u["memory"]["peak_mb"]}
            # the best round of each (least disturbed by other load on a shared machine), beside the medians
            best = {"train_time_per_token": u[train]["best"] / g[train]["best"],
                    "decode_speed": g[decode]["best"] / u[decode]["best"]}
            targets = TARGETS[variant]
            out[f"{gated}/{ungated}"] = {
                "gated": gated, "ungated": ungated, "variant": variant, "precision": precision, **values,
                "best": best, "targets": {k: list(t) for k, t in targets.items()},
                "steps_memory": (g["memory"]["steps_mb"] / u["memory"]["steps_mb"]
                                 if u["memory"]["steps_mb"] > 0 else None),
                "pass": {k: passes(v, targets[k]) for k, v in values.items()}}
    return out


def precision_ratios(results, size):
    """Per model measured in fp32 and another precision: that precision's speed / fp32's, with PASS/MISS."""
    out = {}
    for key, r in results.items():
        model, precision = split_entry(key)
        fp32 = results.get(model)
        if precision == "fp32" or fp32 is None:
            continue
        train = r["train_tokens_per_second"]["median"] / fp32["train_tokens_per_second"]["median"]
        decode = r["decode_sentences_per_second"]["median"] / fp32["decode_sentences_per_second"]["median"]
        targets = {"train_speedup": PRECISION_TARGETS["train_speedup"].get(size),
                   "decode_speedup": PRECISION_TARGETS["decode_speedup"]}
        out[key] = {"model": model, "precision": precision, "train_speedup": train, "decode_speedup": decode,
                    "peak_memory": r["memory"]["peak_mb"] / fp32["memory"]["peak_mb"], "targets": targets,
                    "pass": {k: None if t is None else v >= t
                             for k, v, t in (("train_speedup", train, targets["train_speedup"]),
                                             ("decode_speedup", decode, targets["decode_speedup"]))}}
    return out


def long_decode_growth(results):
    """Per entry with long-output timings: seconds per token at each position, the last / the first, PASS/MISS
    against its variant's bound (ungated entries: reported, no target)."""
    out = {}
    for key, r in results.items():
        at = (r.get("long_decode") or {}).get("seconds_per_token_at")
        if not at:
            continue
        first, last = at[min(at, key=int)], at[max(at, key=int)]
        variant = variant_of(split_entry(key)[0])[1]
        bound = LONG_DECODE_TARGETS.get(variant)
        out[key] = {"seconds_per_token_at": at, "growth": last / first, "target": bound,
                    "pass": None if bound is None else last / first <= bound}
    return out


def analyse(results, size):
    """Everything the report derives from one size's raw results."""
    return {"ratios": ratios(results), "precision_ratios": precision_ratios(results, size),
            "long_decode": long_decode_growth(results)}


def fmt_ratio(ratios, key):
    """One ratio of ratios (or '-' when there are none) with PASS/MISS and its target."""
    if ratios is None:
        return "-"
    value, (op, bound) = ratios[key], ratios["targets"][key]
    if key == "parameters":
        text, target = f"{(value - 1) * 100:+.2f}%", f"{op} {(bound - 1) * 100:+.2g}%"
    else:
        text, target = f"{value:.3f}x", f"{op} {bound:g}x"
    best = f" (best {ratios['best'][key]:.3f}x)" if key in ratios.get("best", {}) else ""
    return f"{text} {'PASS' if ratios['pass'][key] else 'MISS'} ({target}){best}"


def fmt_check(value, target, passed):
    return f"{value:.2f}x" + ("" if target is None else f" {'PASS' if passed else 'MISS'} (>= {target:g}x)")


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
             f"per model (+steps: over the high-water mark before the first step). Precisions: "
             f"{', '.join(s.get('precisions', ['fp32']))} (bf16: forward passes under torch.autocast, fp32 weights).",
             "", "## CGC vs the ungated conv of the same kind, size and precision", "",
             "| size | pair | " + " | ".join(MEASURES.values()) + " |", "| --- | --- |" + " --- |" * len(MEASURES)]
    for size, res in report["sizes"].items():
        for r in res["ratios"].values():
            lines.append(f"| {size} | {label(r['gated'])} / {label(r['ungated'])} | "
                         + " | ".join(fmt_ratio(r, k) for k in MEASURES) + " |")
    if not any(res["ratios"] for res in report["sizes"].values()):
        lines.append("| (none: --models has no cgc_* model with its ungated conv) |" + " |" * (len(MEASURES) + 1))
    precision = [(size, r) for size, res in report["sizes"].items() for r in res.get("precision_ratios", {}).values()]
    if precision:
        lines += ["", "## Lower precision vs fp32, same model and size", "",
                  "| size | model | precision | train tok/s | decode sent/s | peak memory |", "|" + " --- |" * 6]
        for size, r in precision:
            lines.append(f"| {size} | {LABELS[r['model']]} | {r['precision']} / fp32 | "
                         f"{fmt_check(r['train_speedup'], r['targets']['train_speedup'], r['pass']['train_speedup'])} | "
                         f"{fmt_check(r['decode_speedup'], r['targets']['decode_speedup'], r['pass']['decode_speedup'])}"
                         f" | {r['peak_memory']:.2f}x |")
    long = [(size, key, r) for size, res in report["sizes"].items() for key, r in res.get("long_decode", {}).items()]
    if long:
        positions = sorted({int(p) for _, _, r in long for p in r["seconds_per_token_at"]})
        lines += ["", f"## Long outputs: decoder time per generated token (ms), hypotheses forced to "
                      f"{s['long_decode_len']} tokens", "",
                  "| size | model | " + " | ".join(f"at {p}" for p in positions) + f" | {positions[-1]} / {positions[0]} |",
                  "| --- | --- |" + " ---: |" * (len(positions) + 1)]
        for size, key, r in long:
            growth = f"{r['growth']:.2f}x" + ("" if r["target"] is None else
                                              f" {'PASS' if r['pass'] else 'MISS'} (<= {r['target']:g}x)")
            lines.append(f"| {size} | {label(key)} | "
                         + " | ".join(f"{r['seconds_per_token_at'][str(p)] * 1e3:.3f}" for p in positions)
                         + f" | {growth} |")
    for size, res in report["sizes"].items():
        lines += ["", f"## {size}" + (" (tiny test models)" if s["tiny"] else ""), "",
                  f"| model | params | train tok/s | time/token vs ungated | {mem} (+steps) | vs ungated | "
                  "decode sent/s | vs ungated |", "| --- |" + " ---: |" * 7]
        for key, r in res["models"].items():
            model, precision = split_entry(key)
            base, variant = variant_of(model)
            q = res["ratios"].get(f"{key}/{entry(base[len('cgc_'):], precision)}") if variant else None
            t, d = r["train_tokens_per_second"], r["decode_sentences_per_second"]
            params = f"{r['parameters']:,}" + (f" ({fmt_ratio(q, 'parameters')})" if q else "")
            lines.append(f"| {label(key)} (`{r['arch']}`) | {params} | {t['median']:.0f} ({t['best']:.0f}) | "
                         f"{fmt_ratio(q, 'train_time_per_token')} | {r['memory']['peak_mb']:.0f} "
                         f"(+{r['memory']['steps_mb']:.0f}) | {fmt_ratio(q, 'peak_memory')} | "
                         f"{d['median']:.2f} ({d['best']:.2f}) | {fmt_ratio(q, 'decode_speed')} |")
        convs = sorted({f"{LABELS[split_entry(key)[0]]} `{r['conv']}`" for key, r in res["models"].items()
                        if r["conv"]})
        lines += ["", f"Conv modules: {', '.join(convs)}."] if convs else []
    if "small" in report["sizes"] and "transformer" in report["sizes"]["small"]["models"] and not s["tiny"]:
        lines += ["", "The small Transformer is fairseq's transformer_iwslt_de_en at the small conv models' dims "
                      "(d=256, ffn 1024, 3+3 layers, 4 heads)."]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(report, out):
    """The ratios as % change vs the ungated conv, one panel per measure; each bar's target as a black tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(size, r) for size, res in report["sizes"].items() for r in res["ratios"].values()]
    names = [f"{size}: {label(r['gated'])} / {'--no-cgc' if r['ungated'].startswith('nocgc_') else 'fairseq'}"
             for size, r in pairs]
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.5 * len(MEASURES), 1.2 + 0.4 * max(len(pairs), 1)),
                             sharey=True)
    axes[0].invert_yaxis()  # the first pair on top (the y axis is shared)
    for ax, key in zip(axes, MEASURES):
        values = [(r[key] - 1) * 100 for _, r in pairs]
        ax.barh(range(len(pairs)), values, color=["tab:green" if r["pass"][key] else "tab:red" for _, r in pairs])
        for i, v in enumerate(values):
            ax.annotate(f"{v:+.2f}%" if key == "parameters" else f"{v:+.1f}%", (v, i),
                        ha="left" if v >= 0 else "right", va="center", fontsize=7)
        ax.scatter([(r["targets"][key][1] - 1) * 100 for _, r in pairs], range(len(pairs)), marker="|", s=200,
                   color="black", label="target", zorder=3)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(range(len(pairs)), names, fontsize=8)
        ax.set_title(MEASURES[key], fontsize=10)
        ax.set_xlabel("% vs the ungated conv")
        ax.legend(fontsize=7)
    fig.suptitle(f"CGC vs ungated ({report['settings']['device']}, median of {report['settings']['repeats']})")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_outputs(report, out, quiet=False):
    """bench.md, bench.png, bench.json in out (each under a temporary name, then renamed); the tables to stdout
    unless quiet."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    write_atomic(out / "bench.md", text)
    plot(report, out / "bench.png")
    write_json(out / "bench.json", report)
    if not quiet:
        print(text)
