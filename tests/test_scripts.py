"""scripts/: a tiny synthetic run through train -> average -> evaluate -> plots, the hub interface, and the
one-line errors. One module-scoped fixture trains once on the session's synthetic data dir; everything else reuses it."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from cgc_fairseq.precision import native_bf16
from scripts import average, bench, demo, evaluate, export, plots, race, rundir, train, translate
from scripts.checkpoint import load_checkpoint
from scripts.cli import ScriptError
from tests.run_scripts import check_error, script

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast

SHORT = ("--max-len-a", 0, "--max-len-b", 24)  # a barely trained model may babble to fairseq's 200 tokens
SCRIPTS = ("train", "average", "evaluate", "plots", "demo", "translate", "race", "bench", "export", "gpu_check",
           "ddp_cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_data):
    """Synthetic data dir; tiny training for 3 epochs; average of the last 2; evaluation (twice, with different
    batch orders); plots. Everything the tests below look at."""
    root = tmp_path_factory.mktemp("scripts")
    data = synthetic_data
    run = root / "run"
    script("train", "--data", data, "--run-dir", run, "--preset", "tiny", "--max-update", 1000, "--max-epoch", 3)
    ckpts = run / "checkpoints"
    script("average", "--checkpoint-dir", ckpts, "--last", 2, "--out", run / "average.pt")
    script("evaluate", "--checkpoint", run / "average.pt", "--data", data, "--split", "test", "--out",
           run / "eval", "--quiet", *SHORT)
    script("evaluate", "--checkpoint", run / "average.pt", "--data", data, "--split", "test", "--out",
           run / "eval_bs1", "--batch-size", 1, "--quiet", *SHORT)
    script("evaluate", "--checkpoint", ckpts / "checkpoint3.pt", "--data", data, "--split", "valid", "--out",
           run / "valid_bleu" / "checkpoint3", "--quiet", *SHORT)
    script("plots", "--runs", run, "--checkpoint", run / "average.pt", "--data", data, "--out", run / "plots",
           "--sentences", 2)
    return {"data": data, "run": run, "ckpts": ckpts}


def test_train_run_dir(trained):
    run = trained["run"]
    meta = json.loads((run / "train.json").read_text())
    assert meta["status"] == "done" and meta["arch"] == "cgc_lightconv_small" and meta["preset"] == "tiny"
    assert "--log-format" in meta["fairseq_command"] and meta["versions"]["fairseq"]
    assert "--max-epoch" in meta["extra_flags"]  # unknown flags pass through to fairseq-train
    # no --threads given: the run used the cores it may run on, and says on which CPU
    assert meta["threads"] == meta["machine"]["threads"] == len(os.sched_getaffinity(0))
    assert meta["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert sorted(p.name for p in trained["ckpts"].glob("checkpoint?.pt")) == [
        "checkpoint1.pt", "checkpoint2.pt", "checkpoint3.pt"]
    # a finished run is not retrained
    proc = script("train", "--data", trained["data"], "--run-dir", run, "--preset", "tiny", "--max-update", 1000,
                  "--max-epoch", 3)
    assert "already finished" in proc.stdout


def test_average_is_the_mean(trained):
    ckpts = trained["ckpts"]
    a, b = (load_checkpoint(ckpts / f"checkpoint{i}.pt")["model"] for i in (2, 3))
    avg = load_checkpoint(trained["run"] / "average.pt")
    assert avg["averaged_from"] == [str(ckpts / "checkpoint2.pt"), str(ckpts / "checkpoint3.pt")]
    assert avg["model"].keys() == a.keys()
    for k, v in avg["model"].items():
        assert v.dtype == a[k].dtype
        if v.is_floating_point():
            torch.testing.assert_close(v, (a[k].double() + b[k].double()).div(2).to(v.dtype), rtol=0, atol=1e-7)
        else:
            assert torch.equal(v, a[k])


def test_evaluate_results(trained):
    from sacrebleu import corpus_bleu, corpus_chrf

    from datadir.moses import Detokenizer

    data, out = trained["data"], trained["run"] / "eval"
    res = json.loads((out / "results.json").read_text())
    for key in ("bleu_tokenized", "sacrebleu", "chrf", "scores", "corpus", "split", "arch", "parameters",
                "checkpoint", "decode", "versions", "options"):
        assert key in res, key
    assert res["corpus"] == "synthetic" and res["split"] == "test" and res["arch"] == "cgc_lightconv_small"
    assert res["options"]["beam"] == 4 and res["options"]["lenpen"] == 1.0
    from fairseq import checkpoint_utils

    [model], _ = checkpoint_utils.load_model_ensemble([str(trained["run"] / "average.pt")],
                                                     arg_overrides={"data": str(data)})
    assert res["parameters"] == sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    assert res["decode"]["sentences"] == 30 and res["decode"]["sentences_per_second"] > 0
    assert "tok:none" in res["scores"]["bleu_tokenized"]["signature"]
    assert "case:lc" in res["scores"]["sacrebleu"]["signature"] and "tok:13a" in res["scores"]["sacrebleu"]["signature"]
    hyp_tok = (out / "hyp.tok.en").read_text().splitlines()
    hyp_detok = (out / "hyp.detok.en").read_text().splitlines()
    ref_tok = (data / "tok" / "test.en").read_text().splitlines()
    ref_raw = (data / "raw" / "test.en").read_text().splitlines()
    # one hypothesis per test line, none empty; the detokenized file is the tokenized one detokenized
    assert len(hyp_tok) == len(hyp_detok) == len(ref_tok) == len(ref_raw) == res["sentences"] == 30
    assert all(h.strip() for h in hyp_tok), hyp_tok
    detokenize = Detokenizer("en")
    assert hyp_detok == [detokenize(h) for h in hyp_tok]
    # every score is sacrebleu's, recomputed here from the written hypotheses and the data dir's references
    assert res["bleu_tokenized"] == round(corpus_bleu(hyp_tok, [ref_tok], tokenize="none").score, 2)
    assert res["sacrebleu"] == round(corpus_bleu(hyp_detok, [ref_raw], lowercase=True).score, 2)
    chrf = corpus_chrf([h.lower() for h in hyp_detok], [[r.lower() for r in ref_raw]]).score
    assert res["chrf"] == round(chrf, 2)
    assert [res["scores"][k]["score"] for k in ("bleu_tokenized", "sacrebleu", "chrf")] == [
        res["bleu_tokenized"], res["sacrebleu"], res["chrf"]]


def test_hypotheses_in_input_order(trained):
    """fairseq-generate batches by length; the sources of the output, in id order, are the input lines, and a
    different batching (batch size 1) gives the same hypotheses line by line."""
    run = trained["run"]
    for name in ("eval", "eval_bs1"):
        check = json.loads((run / name / "results.json").read_text())["source_order_check"]
        assert check == {"lines": 30, "identical_to_tok_source": 30}
    assert (run / "eval" / "hyp.tok.en").read_text() == (run / "eval_bs1" / "hyp.tok.en").read_text()


def test_parse_generate_sorts_by_id():
    text = "\n".join(["S-2\tc", "H-2\t-0.1\tz", "S-0\ta", "H-0\t-0.2\tx", "S-1\tb", "H-1\t-0.3\t",
                      "Translated 3 sentences (9 tokens) in 0.5s (6.00 sentences/s, 18.00 tokens/s)"])
    hyps, srcs, timing = evaluate.parse_generate(text)
    assert evaluate.in_order(hyps, 3, "hypotheses") == ["x", "", "z"]
    assert evaluate.in_order(srcs, 3, "sources") == ["a", "b", "c"]
    assert timing["sentences"] == 3 and timing["sentences_per_second"] == 6.0
    with pytest.raises(ScriptError, match="returned 3 hypotheses for 4"):
        evaluate.in_order(hyps, 4, "hypotheses")


RESUMED_LOG = """\
2026-12-02 00:00:00 | INFO | fairseq.trainer | Preparing to load checkpoint /r/checkpoints/checkpoint_last.pt
2026-12-02 00:00:00 | INFO | fairseq.trainer | No existing checkpoint found /r/checkpoints/checkpoint_last.pt
2026-12-02 00:01:40 | INFO | train_inner | {"loss": "5.0", "num_updates": "10", "wall": "100"}
2026-12-02 00:01:50 | INFO | valid | {"valid_loss": "4.9", "valid_num_updates": "10"}
2026-12-02 00:02:00 | INFO | fairseq.checkpoint_utils | Saved checkpoint /r/checkpoints/checkpoint_1_10.pt \
(epoch 1 @ 10 updates, score 4.9) (writing took 0.1 seconds)
2026-12-02 00:03:40 | INFO | train_inner | {"loss": "4.8", "num_updates": "20", "wall": "220"}
2026-12-02 05:00:00 | INFO | fairseq.trainer | Preparing to load checkpoint /r/checkpoints/checkpoint_last.pt
2026-12-02 05:00:01 | INFO | fairseq.trainer | Loaded checkpoint /r/checkpoints/checkpoint_last.pt (epoch 1 @ 10 updates)
2026-12-02 05:01:41 | INFO | train_inner | {"loss": "4.7", "num_updates": "20", "wall": "0"}
2026-12-02 05:03:21 | INFO | train_inner | {"loss": "4.6", "num_updates": "30", "wall": "0"}
"""


def test_the_training_clock_goes_on_from_the_resumed_checkpoint(tmp_path):
    (tmp_path / "train.log").write_text(RESUMED_LOG)  # killed after update 20, resumed from update 10's checkpoint
    curves = rundir.run_curves(tmp_path)
    assert curves["train"] == [(10, 100, 5.0), (20, 221, 4.7), (30, 321, 4.6)]  # saved at 120 s, then 101 and 201 s
    assert curves["valid"] == [(10, 100, 4.9)]
    assert rundir.training_seconds(curves) == 321


def test_plots(trained):
    out = trained["run"] / "plots"
    for name in ("curves.png", "gates_encoder.png", "gates_decoder.png"):
        assert (out / name).stat().st_size > 10_000, name
    curves = rundir.run_curves(trained["run"])
    assert len(curves["train"]) >= 3 and len(curves["valid"]) == 3 and len(curves["bleu"]) == 1
    assert all(w is not None for _, w, _ in curves["valid"])


def test_hub_translates(trained):
    from cgc_fairseq.hub import from_pretrained

    model = from_pretrained(trained["run"], "average.pt", trained["data"])
    out = model.translate("Ein Mann fährt Fahrrad.")
    assert isinstance(out, str) and out.strip()
    assert out == out.lower()  # the model speaks lowercased text
    assert model.tokenizer.encode("Ein Mann fährt Fahrrad.") == "ein mann fährt fahrrad ."
    assert len(model.translate(["Der Hund läuft!", "Eine Katze."])) == 2


def test_errors(trained, tmp_path):
    data, run = trained["data"], trained["run"]
    check_error(script("evaluate", "--checkpoint", tmp_path / "nope.pt", "--data", data, "--out", tmp_path / "e",
                       check=False), "checkpoint not found", "nope.pt")
    check_error(script("evaluate", "--checkpoint", run / "average.pt", "--data", data, "--split", "dev",
                       "--out", tmp_path / "e", check=False), "unknown split 'dev'")
    check_error(script("train", "--data", tmp_path / "missing", "--run-dir", tmp_path / "r", check=False),
                "data dir not found", "missing")
    check_error(script("train", "--data", data, "--run-dir", tmp_path / "r", "--arch", "lightconv_huge",
                       check=False), "unknown --arch 'lightconv_huge'")
    check_error(script("average", "--checkpoint-dir", tmp_path, "--out", tmp_path / "a.pt", check=False),
                "no checkpointE.pt checkpoints")
    check_error(script("average", "--checkpoints", tmp_path, "--out", tmp_path / "a.pt", check=False),
                f"{tmp_path} is a directory", f"--checkpoint-dir {tmp_path}")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    check_error(script("average", "--checkpoints", tmp_path / "bad.pt", "--out", tmp_path / "a.pt", check=False),
                "bad.pt")
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "e" / "results.json").exists()
    check_error(script("plots", "--runs", tmp_path, "--out", tmp_path / "p", check=False), "train.log")
    for args, needle in ((["--average", 0], "--average: must be >= 1"), (["--budget-minutes", 0], "must be > 0"),
                         (["--max-len-b", 0], "--max-len-b: must be >= 1"), (["--precision", "fp16"], "--precision")):
        check_error(script("demo", "--data", data, "--run-dir", tmp_path / "d", *args, check=False), needle)
    assert not (tmp_path / "d").exists()


def test_help():
    for name in SCRIPTS:
        proc = script(name, "--help")
        assert proc.stdout.startswith(f"usage: python -m scripts.{name} ") and "options:" in proc.stdout, name


def test_one_vocabulary():
    """--data a data dir, --checkpoint a checkpoint file (--checkpoints several), --out what a script writes, one
    --precision and one beam for every decode; translate.py speaks fairseq-interactive's flags, and says so first."""
    def parse(module, *argv):
        return vars(module.build_parser().parse_args([str(a) for a in argv]))

    for module in (evaluate, export):
        args = parse(module, "--checkpoint", "c.pt", "--data", "d", "--out", "o")
        assert (args["checkpoint"], args["data"], args["out"]) == ("c.pt", "d", "o")
    assert parse(plots, "--checkpoint", "c.pt", "--data", "d", "--out", "o")["data"] == "d"
    assert parse(demo, "--data", "d")["data"] == Path("d")
    assert parse(average, "--checkpoints", "a.pt", "b.pt", "--out", "o")["checkpoints"] == ["a.pt", "b.pt"]
    assert parse(race, "--seeds", 4, 5, "--splits", "test")["seeds"] == [4, 5]
    for module, argv in ((demo, ["--data-bin", "d"]), (average, ["--inputs", "a.pt", "--out", "o"])):
        with pytest.raises(SystemExit):  # the old names are gone
            parse(module, *argv)
    defaults = {name: parse(module, *argv)["precision"]
                for name, module, argv in (("train", train, ["--data", "d", "--run-dir", "r"]), ("demo", demo, []),
                                           ("race", race, []), ("translate", translate, ["d", "--path", "c.pt"]),
                                           ("evaluate", evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"]))}
    assert set(defaults.values()) == {"fp32"}
    assert parse(bench, "--data", "d", "--out", "o")["precisions"] == ["fp32"]
    beams = {parse(evaluate, "--checkpoint", "c", "--data", "d", "--out", "o")["beam"],
             parse(translate, "d", "--path", "c.pt")["beam"]}
    assert beams == {4}
    args = parse(translate, "d", "--path", "c.pt", "--input", "in.de")
    assert (args["data"], args["path"], args["input"]) == ("d", "c.pt", "in.de")
    help_text = translate.build_parser().format_help()
    description = help_text.split("\n\n")[1]  # after the usage: the first thing the help says
    assert "fairseq-interactive's" in description and "--path (not --checkpoint)" in description


def test_demo_corpus_choice(tmp_path, monkeypatch):
    """The corpus the inputs imply: IWSLT'14 where a full release is found (--iwslt14-raw or the shared copy),
    else Multi30k; --corpus overrides."""
    monkeypatch.setattr(demo, "SHARED", tmp_path / "shared")  # no shared copy of the release
    release = tmp_path / "iwslt" / "de-en"
    release.mkdir(parents=True)
    assert demo.find_iwslt14([tmp_path / "iwslt"]) is None
    (release / "train.tags.de-en.de").write_text("x\n")
    (release / "train.tags.de-en.en").write_text("x\n")
    assert demo.find_iwslt14([tmp_path / "iwslt"]) == release
    choose = lambda *argv: demo.choose_corpus(demo.build_parser().parse_args([str(a) for a in argv]))  # noqa: E731
    corpus, raw, why = choose("--iwslt14-raw", tmp_path / "nothing")
    assert (corpus, raw) == ("multi30k", None) and str(tmp_path / "nothing") in why
    corpus, raw, why = choose("--iwslt14-raw", tmp_path / "iwslt")
    assert (corpus, raw) == ("iwslt14", release) and str(release) in why
    assert choose("--iwslt14-raw", tmp_path / "iwslt", "--corpus", "multi30k")[:2] == ("multi30k", None)
    corpus, raw, why = choose("--iwslt14-raw", tmp_path / "nothing", "--corpus", "iwslt14")
    assert (corpus, raw) == ("iwslt14", tmp_path / "nothing") and "may download" in why
    shared = tmp_path / "shared2"
    shutil.copytree(tmp_path / "iwslt", shared / "iwslt14-de-en")
    monkeypatch.setattr(demo, "SHARED", shared)  # the release as the shared copy
    assert choose()[:2] == ("iwslt14", shared / "iwslt14-de-en" / "de-en")


def test_demo_end_to_end_and_rerun_reuses(trained, tmp_path):
    """scripts/demo.py on the synthetic data dir (tiny preset): summary, results and PNGs; a rerun reuses every
    finished step; flags it does not know go to fairseq-train."""
    args = ("--data", trained["data"], "--run-dir", tmp_path / "demo", "--preset", "tiny", "--budget-minutes",
            0.4, "--average", 2, "--max-len-b", 24)
    first = script("demo", *args, "--clip-norm", 0.5)
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["train_flags"] == ["--clip-norm", "0.5"]
    assert json.loads((tmp_path / "demo" / "train.json").read_text())["fairseq_command"][-2:] == ["--clip-norm", "0.5"]
    assert "synthetic" in first.stdout and "tokenized BLEU" in first.stdout and "sacreBLEU" in first.stdout
    for name in ("average", "last", "best"):  # the scores of the results.json files it names
        results = json.loads(Path(summary["results_json"][name]).read_text())
        assert summary[name] == {k: results[k] for k in ("bleu_tokenized", "sacrebleu", "chrf")}, name
    # the reported model is the candidate with the best valid BLEU (the average on a tie), not the best on test
    valid = {name: r["bleu_tokenized"] for name, r in summary["valid"].items()}
    assert summary["chosen"] == max(("average", "last", "best"), key=lambda n: (valid[n], n == "average"))
    assert summary["result"] == summary[summary["chosen"]]
    for path in (*summary["results_json"].values(), *summary["pngs"]):
        assert Path(path).is_file(), path
    assert {Path(p).name for p in summary["pngs"]} == {"curves.png", "gates_encoder.png", "gates_decoder.png"}
    assert list((tmp_path / "demo" / "valid_bleu").glob("*/results.json"))
    check_error(script("demo", *args, check=False), "only the budget may change")  # another fairseq command
    second = script("demo", *args, "--clip-norm", 0.5)
    assert "training already finished" in second.stdout and "the same checkpoints and newer than them" in second.stdout
    assert second.stdout.count("reusing ") >= 3  # data, average, evaluations
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["average"] == summary["average"]
    # another N: the average is remade
    script("demo", *args[:-4], "--average", 1, "--max-len-b", 24, "--clip-norm", 0.5)
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["averaged"] == summary["averaged"][-1:]


@pytest.mark.skipif(not native_bf16("cpu"), reason="bf16 is refused on a CPU without native bf16")
def test_bf16_through_train_evaluate_and_the_hub(trained, tmp_path):
    """--precision bf16: train.py trains with the translation_autocast task (fp32 checkpoint), evaluate.py and the
    hub decode under autocast; the scripts' choices are the plugin's."""
    from cgc_fairseq.hub import from_pretrained
    from cgc_fairseq.precision import PRECISIONS
    from scripts.cli import PRECISIONS as SCRIPT_PRECISIONS

    assert list(SCRIPT_PRECISIONS) == PRECISIONS
    data, run = trained["data"], tmp_path / "bf16"
    script("train", "--data", data, "--run-dir", run, "--preset", "tiny", "--max-update", 4, "--precision", "bf16")
    meta = json.loads((run / "train.json").read_text())
    assert meta["precision"] == "bf16"
    assert "translation_autocast" in meta["fairseq_command"]
    state = load_checkpoint(run / "checkpoints" / "checkpoint_last.pt")
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    script("evaluate", "--checkpoint", run / "checkpoints" / "checkpoint_last.pt", "--data", data, "--split", "test",
           "--out", run / "eval", "--quiet", "--precision", "bf16", *SHORT)
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results["options"]["precision"] == "bf16" and "translation_autocast" in results["fairseq_command"]
    from sacrebleu import corpus_bleu

    hyps = (run / "eval" / "hyp.tok.en").read_text().splitlines()
    refs = (data / "tok" / "test.en").read_text().splitlines()
    assert results["sentences"] == len(hyps) == len(refs) == 30
    assert results["bleu_tokenized"] == round(corpus_bleu(hyps, [refs], tokenize="none").score, 2)
    hub = from_pretrained(trained["run"], "average.pt", data, precision="bf16")
    sentences = ["Ein Mann fährt Fahrrad.", "Der Hund läuft!"]
    out = hub.translate(sentences)
    assert len(out) == 2 and all(isinstance(s, str) and s.strip() for s in out)
    projection = hub.models[0].decoder.output_projection
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the vocabulary logits stay fp32 under bf16 autocast
        logits = projection(torch.randn(3, projection.in_features))
    assert logits.dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        from_pretrained(trained["run"], "average.pt", data, precision="fp16")
    check_error(script("train", "--data", data, "--run-dir", tmp_path / "r", "--precision", "fp16", check=False),
                "--precision")
    check_error(script("evaluate", "--checkpoint", trained["run"] / "average.pt", "--data", data, "--out",
                       tmp_path / "e", "--precision", "half", check=False), "--precision")
