"""scripts/bench.py: a tiny run on the synthetic data dir (every model, JSON/markdown/PNG, ratios that follow from
the raw timings, forced decoding length), the iwslt-size configs, and the one-line errors."""
import json
import statistics

import pytest
import torch

from scripts import bench, bench_models
from tests.run_scripts import check_error, script

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast

MODELS = ["transformer", "lightconv", "dynamicconv", "cgc_lightconv", "cgc_dynamicconv", "nocgc_lightconv",
          "nocgc_dynamicconv", "cgc_lightconv_source", "cgc_lightconv_static"]
PRECISION_MODELS = ["lightconv", "cgc_lightconv"]  # the second run: these in fp32 and bf16
DECODE = {"sentences": 5, "len": 4, "long": 52}
# issue 13's targets, gated / ungated: train time per token, decode speed, parameters, peak memory
TARGETS = {"prefix": (1.15, 0.90, 1.001, 1.10), "source": (1.05, 0.95, 1.001, 1.05), "static": (1.02, 0.98, 1.0001, 1.02)}


@pytest.fixture(scope="module")
def benched(tmp_path_factory, synthetic_data):
    root = tmp_path_factory.mktemp("bench")
    data = synthetic_data
    out = root / "out"
    script("bench", "--data", data, "--out", out, "--sizes", "small", "--tiny", "--repeats", 2, "--warmup", 1,
           "--steps", 1, "--max-tokens", 500, "--models", *MODELS, "--decode-sentences", DECODE["sentences"], "--decode-len",
           DECODE["len"], "--threads", 1, "--device", "cpu")
    script("bench", "--data", data, "--out", root / "bf16", "--sizes", "small", "--tiny", "--repeats", 2, "--warmup", 1,
           "--steps", 1, "--max-tokens", 500, "--models", *PRECISION_MODELS, "--precisions", "fp32", "bf16",
           "--decode-sentences", DECODE["sentences"], "--decode-len", DECODE["len"], "--long-decode-len",
           DECODE["long"], "--threads", 1, "--device", "cpu")
    return {"data": data, "out": out, "report": json.loads((out / "bench.json").read_text()),
            "bf16": json.loads((root / "bf16" / "bench.json").read_text()), "bf16_md": (root / "bf16" / "bench.md").read_text()}


def test_report(benched):
    report, out = benched["report"], benched["out"]
    assert list(report["sizes"]) == ["small"] and list(report["sizes"]["small"]["models"]) == MODELS
    assert report["machine"]["torch_threads"] == 1 and report["versions"]["torch"] and "scripts.bench" in report["command"]
    assert report["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["settings"]["beam"] == 4  # every decode's beam, evaluate.py's too
    tokens = report["data"]["train_target_tokens"]
    assert tokens == sum(b["target_tokens"] for b in report["data"]["train_batches"]) > 0
    convs = {}
    for name, m in report["sizes"]["small"]["models"].items():
        assert m["parameters"] > 0 and m["memory"]["peak_mb"] > 0 and m["memory"]["steps_mb"] >= 0
        assert len(m["train_seconds"]) == len(m["decode_seconds"]) == 2 and min(m["train_seconds"]) > 0
        t = m["train_tokens_per_second"]
        assert t["runs"] == pytest.approx([tokens / s for s in m["train_seconds"]])
        assert t["median"] == pytest.approx(statistics.median(t["runs"])) and t["best"] == max(t["runs"])
        d = m["decode_sentences_per_second"]
        assert d["median"] == pytest.approx(statistics.median(DECODE["sentences"] / s for s in m["decode_seconds"]))
        # every hypothesis is exactly --decode-len tokens + EOS, whatever the (untrained) model
        assert m["decode_tokens"] == [DECODE["sentences"] * (DECODE["len"] + 1)] * 2
        convs[name] = m["conv"]
    assert convs == {"transformer": None, "lightconv": "LightweightConv1dTBC", "dynamicconv": "DynamicConv_scripatable",
                     "cgc_lightconv": "GatedLightweightConv1dTBC", "cgc_dynamicconv": "GatedDynamicConv1dTBC",
                     "nocgc_lightconv": "GatedLightweightConv1dTBC", "nocgc_dynamicconv": "GatedDynamicConv1dTBC",
                     "cgc_lightconv_source": "GatedLightweightConv1dTBC",
                     "cgc_lightconv_static": "GatedLightweightConv1dTBC"}
    md = (out / "bench.md").read_text()
    for label in ("Transformer", "CGC-LightConv / LightConv |", "CGC-DynamicConv / DynamicConv |",
                  "CGC-LightConv / LightConv (plugin, --no-cgc)"):
        assert label in md
    assert (out / "bench.png").stat().st_size > 10_000
    assert not list(out.glob("*.tmp"))


def test_ratios_follow_from_the_raw_numbers(benched):
    size = benched["report"]["sizes"]["small"]
    models, ratios = size["models"], size["ratios"]
    assert set(ratios) == {"cgc_lightconv/lightconv", "cgc_dynamicconv/dynamicconv",
                           "cgc_lightconv/nocgc_lightconv", "cgc_dynamicconv/nocgc_dynamicconv",
                           "cgc_lightconv_source/lightconv", "cgc_lightconv_source/nocgc_lightconv",
                           "cgc_lightconv_static/lightconv", "cgc_lightconv_static/nocgc_lightconv"}
    for pair, r in ratios.items():
        assert pair == f"{r['gated']}/{r['ungated']}"
        g, u = models[r["gated"]], models[r["ungated"]]
        med = lambda m, key: statistics.median(m[key]["runs"])  # noqa: E731
        expect = {"train_time_per_token": med(u, "train_tokens_per_second") / med(g, "train_tokens_per_second"),
                  "decode_speed": med(g, "decode_sentences_per_second") / med(u, "decode_sentences_per_second"),
                  "parameters": g["parameters"] / u["parameters"],
                  "peak_memory": g["memory"]["peak_mb"] / u["memory"]["peak_mb"]}
        for key, value in expect.items():
            assert r[key] == pytest.approx(value)
        variant = r["gated"].rpartition("_")[2] if r["gated"].endswith(("_source", "_static")) else "prefix"
        train, decode, params, memory = TARGETS[variant]
        assert r["variant"] == variant
        assert r["pass"] == {"train_time_per_token": expect["train_time_per_token"] <= train,
                             "decode_speed": expect["decode_speed"] >= decode,
                             "parameters": expect["parameters"] <= params, "peak_memory": expect["peak_memory"] <= memory}
        assert r["parameters"] > 1  # the gate adds parameters
        best = lambda m, key: max(m[key]["runs"])  # noqa: E731
        assert r["best"]["train_time_per_token"] == pytest.approx(
            best(u, "train_tokens_per_second") / best(g, "train_tokens_per_second"))
        assert r["best"]["decode_speed"] == pytest.approx(
            best(g, "decode_sentences_per_second") / best(u, "decode_sentences_per_second"))


def test_variants_build_their_decoder_gate(benched):
    """The variants' fairseq flags: source context and the static control; the static gate adds H x K per conv."""
    models = benched["report"]["sizes"]["small"]["models"]
    assert "--cgc-decoder-context" in models["cgc_lightconv_source"]["fairseq_args"]
    assert "--cgc-context" in models["cgc_lightconv_static"]["fairseq_args"]
    assert models["cgc_lightconv_static"]["parameters"] < models["cgc_lightconv"]["parameters"]


def test_bf16_entries_and_their_speedups_follow_from_the_raw_numbers(benched):
    size = benched["bf16"]["sizes"]["small"]
    assert list(size["models"]) == ["lightconv", "lightconv@bf16", "cgc_lightconv", "cgc_lightconv@bf16"]
    assert size["models"]["cgc_lightconv@bf16"]["precision"] == "bf16"
    assert set(size["ratios"]) == {"cgc_lightconv/lightconv", "cgc_lightconv@bf16/lightconv@bf16"}
    for key, r in size["precision_ratios"].items():
        fast, slow = size["models"][key], size["models"][r["model"]]
        med = lambda m, k: statistics.median(m[k]["runs"])  # noqa: E731
        assert r["train_speedup"] == pytest.approx(med(fast, "train_tokens_per_second")
                                                   / med(slow, "train_tokens_per_second"))
        assert r["pass"]["train_speedup"] == (r["train_speedup"] >= 1.5)
        assert r["pass"]["decode_speedup"] == (r["decode_speedup"] >= 1.5)
    assert set(size["precision_ratios"]) == {"lightconv@bf16", "cgc_lightconv@bf16"}
    assert "## Lower precision vs fp32" in benched["bf16_md"] and "CGC-LightConv [bf16]" in benched["bf16_md"]


def test_long_decode_times_every_step(benched):
    """One time per decoder step (the forced length + EOS), per position, and the growth its variant allows."""
    size = benched["bf16"]["sizes"]["small"]
    for key, m in size["models"].items():
        long = m["long_decode"]
        assert len(long["step_seconds_median"]) == DECODE["long"] + 1 and min(long["step_seconds_median"]) > 0
        assert len(m["long_decode_step_seconds"]) == 2  # one per round
        at = long["seconds_per_token_at"]
        assert list(at) == ["10", "50"]  # 100 lies beyond these 52 tokens
        assert at["10"] == pytest.approx(statistics.fmean(long["step_seconds_median"][7:12]))
        assert at["50"] == pytest.approx(statistics.fmean(long["step_seconds_median"][47:52]))
        growth = size["long_decode"][key]
        assert growth["growth"] == pytest.approx(at["50"] / at["10"])
        assert growth["target"] == (1.5 if key.startswith("cgc_") else None)
        assert growth["pass"] == (None if growth["target"] is None else growth["growth"] <= 1.5)
    assert "## Long outputs" in benched["bf16_md"]


def test_rerender_from_json(benched, tmp_path):
    script("bench", "--data", "unused", "--out", tmp_path, "--from-json", benched["out"] / "bench.json")
    assert (tmp_path / "bench.md").read_text() == (benched["out"] / "bench.md").read_text()
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_configs():
    """The fairseq arch and conv type of every model at both sizes; one recipe, shared embeddings, for all."""
    args = bench.build_parser().parse_args(["--data", "unused", "--out", "unused"])
    want = {("small", "lightconv"): ("lightconv_small", "lightweight"),
            ("small", "cgc_dynamicconv"): ("cgc_dynamicconv_small", "dynamic"),
            ("iwslt", "lightconv"): ("lightconv_iwslt_de_en", "lightweight"),
            ("iwslt", "dynamicconv"): ("lightconv_iwslt_de_en", "dynamic"),
            ("iwslt", "cgc_lightconv"): ("cgc_lightconv_iwslt_de_en", "lightweight"),
            ("iwslt", "cgc_dynamicconv"): ("cgc_dynamicconv_iwslt_de_en", "dynamic"),
            ("iwslt", "nocgc_lightconv"): ("cgc_lightconv_iwslt_de_en", "lightweight")}
    for (size, model), (arch, conv) in want.items():
        cfg = bench_models.model_config(args, size, model)[0].model
        assert (cfg.arch, cfg.encoder_conv_type, cfg.decoder_conv_type) == (arch, conv, conv)
        assert cfg.share_all_embeddings and cfg.encoder_embed_dim == (256 if size == "small" else 512)
    assert bench_models.model_config(args, "small", "nocgc_dynamicconv")[0].model.no_cgc
    assert not bench_models.model_config(args, "small", "cgc_dynamicconv")[0].model.no_cgc
    small = bench_models.model_config(args, "small", "transformer")[0].model
    assert (small.arch, small.encoder_embed_dim, small.encoder_ffn_embed_dim, small.encoder_layers,
            small.decoder_layers, small.encoder_attention_heads) == ("transformer_iwslt_de_en", 256, 1024, 3, 3, 4)
    assert bench_models.model_config(args, "iwslt", "transformer")[0].model.encoder_layers == 6


def test_errors(benched, tmp_path):
    data = benched["data"]
    check_error(script("bench", "--data", tmp_path / "missing", "--out", tmp_path / "o", check=False),
                "data dir not found", "missing")
    check_error(script("bench", "--data", data, "--out", tmp_path / "o", "--models", "lstm", check=False),
                "invalid choice: 'lstm'")
    check_error(script("bench", "--data", data, "--out", tmp_path / "o", "--sizes", "huge", check=False),
                "invalid choice: 'huge'")
    check_error(script("bench", "--data", data, "--out", tmp_path / "o", "--decode-split", "dev", check=False),
                "unknown split 'dev'")
    for args, needle in ((["--warmup", "-1"], "--warmup: must be >= 0"),
                         (["--long-decode-len", "-1"], "--long-decode-len: must be >= 0"),
                         (["--precisions", "fp16"], "invalid choice: 'fp16'")):
        check_error(script("bench", "--data", data, "--out", tmp_path / "o", *args, check=False), needle)
    assert not (tmp_path / "o").exists()
