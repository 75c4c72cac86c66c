"""scripts/race.py on a tiny synthetic task: 2 models x 2 seeds, the report's numbers recomputed from the runs,
a rerun that reuses everything, and one-line errors."""
import json
import os
import statistics
from pathlib import Path

import pytest

from tests.run_scripts import script

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast

TINY = ["--preset", "tiny", "--max-update", "12", "--save-every", "4", "--curve-every", "4", "--average", "2",
        "--max-len-b", "24", "--gate-sentences", "3", "--seeds", "1", "2",
        "--models", "lightconv_small", "cgc_lightconv_small"]


def updates(checkpoint_name):
    """checkpoint_E_U(.pt) -> U"""
    return int(checkpoint_name.removesuffix(".pt").rsplit("_", 1)[1])


def race(*args):
    return script("race", *args, check=False, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=900)


@pytest.fixture(scope="module")
def raced(tmp_path_factory, synthetic_data):
    root = tmp_path_factory.mktemp("race")
    data = synthetic_data
    proc = race("--data", data, "--out", root / "out", *TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"data": data, "out": root / "out", "report": json.loads((root / "out" / "race.json").read_text())}


def test_report_matches_the_runs(raced):
    rep, out = raced["report"], raced["out"]
    assert rep["missing_runs"] == [] and len(rep["runs"]) == 4
    for label in ("lightconv_small", "cgc_lightconv_small"):
        runs = [json.loads((out / label / f"seed{s}" / "summary.json").read_text()) for s in (1, 2)]
        assert [r["updates"] for r in runs] == [12, 12]
        assert [updates(name) for name in runs[0]["averaged"]] == [8, 12]
        for split in ("valid", "test"):
            vals = [r["scores"][split]["bleu_tokenized"] for r in runs]
            got = rep["models"][label]["scores"][split]["bleu_tokenized"]
            assert got["mean"] == pytest.approx(statistics.fmean(vals))
            assert got["std"] == pytest.approx(statistics.stdev(vals))
        mine = [r for r in rep["runs"] if r["label"] == label]
        cpu = json.loads((out / label / "seed1" / "train.json").read_text())["machine"]["cpu"]
        assert all((r["cpu"], r["threads"]) == (cpu, 1) for r in mine)
        (group,) = rep["models"][label]["speed"]
        assert group == f"{cpu}, 1 thread(s)"
        speed = rep["models"][label]["speed"][group]
        # the log's clock ticks in seconds: a run under one second has no speed (a fast CI machine does 12 updates)
        per_hour = [r["updates"] * 3600 / r["training_wall_seconds"] for r in mine if r["training_wall_seconds"]]
        assert speed["runs"] == 2 and all(r["training_wall_seconds"] >= 0 for r in mine)
        assert (speed["updates_per_hour"] or {}).get("mean") == (pytest.approx(statistics.fmean(per_hour))
                                                                 if per_hour else None)
    (pair,) = rep["pairs"]
    assert (pair["gated"], pair["baseline"], pair["seeds"]) == ("cgc_lightconv_small", "lightconv_small", [1, 2])
    g = [rep["runs"][i] for i in range(4) if rep["runs"][i]["label"] == "cgc_lightconv_small"]
    b = [rep["runs"][i] for i in range(4) if rep["runs"][i]["label"] == "lightconv_small"]
    deltas = [x["scores"]["test"]["sacrebleu"] - y["scores"]["test"]["sacrebleu"] for x, y in zip(g, b)]
    assert pair["delta"]["test.sacrebleu"]["mean"] == pytest.approx(statistics.fmean(deltas))
    half = 12.706 * statistics.stdev(deltas) / 2 ** 0.5  # t(0.975, 1 degree of freedom)
    assert pair["delta"]["test.sacrebleu"]["ci95"] == pytest.approx([statistics.fmean(deltas) - half,
                                                                     statistics.fmean(deltas) + half])
    for seed, (x, y) in zip((1, 2), zip(g, b)):  # the bootstrap scores what evaluate.py scored
        boot = pair["paired_bootstrap"]["test"][str(seed)]
        assert boot["delta"] == pytest.approx(x["scores"]["test"]["sacrebleu"] - y["scores"]["test"]["sacrebleu"],
                                              abs=0.011) and 0 < boot["p_value"] <= 1
    for run in rep["runs"]:  # the average's teacher-forced loss, per split, from fairseq-validate
        made = json.loads((Path(run["run_dir"]) / "eval" / "average.loss.json").read_text())
        assert run["loss"]["average"] == made["losses"] and set(made["losses"]) == {"valid", "test"}
        assert made["losses"]["valid"]["loss"] > made["losses"]["valid"]["nll_loss"] > 0  # label smoothing adds
    for label in ("lightconv_small", "cgc_lightconv_small"):  # the demo's rule: the best candidate on valid
        run = out / label / "seed1"
        summary = json.loads((run / "summary.json").read_text())
        valid = {name: json.loads((run / "eval" / f"{name}.valid" / "results.json").read_text())["bleu_tokenized"]
                 for name in ("average", "last", "best")}
        assert summary["chosen_on_valid"] == max(valid, key=lambda n: (valid[n], n == "average"))
        assert summary["chosen_scores"]["valid"]["bleu_tokenized"] == valid[summary["chosen_on_valid"]]
    stats = rep["gate_stats"]["cgc_lightconv_small"]
    assert stats and all(0 < s["min"] <= s["mean"] <= s["max"] < 1 for s in stats.values())
    assert all(0 <= s["sentence_spread"] <= s["max"] - s["min"] and 0 <= s["encoding_at_unit"] <= 1
               for s in stats.values())
    assert "lightconv_small" not in rep["gate_stats"]
    for name in ("race.md", "curves.png", "race_config.json"):
        assert (out / name).stat().st_size > 0
    assert "± " in (out / "race.md").read_text() and "| last valid loss* |" in (out / "race.md").read_text()
    # the valid BLEU curve: checkpoints at multiples of --curve-every
    curve = out / "cgc_lightconv_small" / "seed1" / "valid_bleu"
    assert sorted(updates(p.name) for p in curve.iterdir()) == [4, 8, 12]  # every kept checkpoint (saved every 4)
    (last,) = [p for p in curve.iterdir() if updates(p.name) == 12]
    run = next(r for r in rep["runs"] if r["label"] == "cgc_lightconv_small" and r["seed"] == 1)
    assert run["last_checkpoint_valid_bleu"] == json.loads((last / "results.json").read_text())["bleu_tokenized"]


def test_rerun_reuses_everything(raced):
    proc = race("--data", raced["data"], "--out", raced["out"], *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "start " not in proc.stdout  # no run was redone
    assert json.loads((raced["out"] / "race.json").read_text())["models"] == raced["report"]["models"]


@pytest.mark.parametrize("args, needle", [
    (["--models", "cgc_lightconv_small", "x=cgc_lightconv_small", "x=lightconv_small"], "duplicate labels"),
    (["--models", "a/b=lightconv_small"], "bad model"),
    (["--max-update", "0"], "--max-update"),
    (["--seeds", "-1"], "--seeds: must be >= 0"),
    (["--gate-sentences", "-1"], "--gate-sentences: must be >= 0"),
    (["--precision", "fp16"], "--precision"),
    (["--threads", "0"], "--threads: must be >= 1"),
    (["--patience", "2", "--validate-every", "5", "--max-update", "12"], "not a multiple of --validate-every 5"),
])
def test_bad_input(raced, args, needle):
    proc = race("--data", raced["data"], "--out", raced["out"] / "bad", *args)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and needle in proc.stderr


def test_one_race_per_out_dir(raced, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "race.pid").write_text(f"{os.getpid()}\n")  # a live process holds the lock
    proc = race("--data", raced["data"], "--out", out, *TINY)
    assert proc.returncode != 0 and "another race" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "lightconv_small").exists()


def test_missing_data_dir(tmp_path):
    proc = race("--data", tmp_path / "nope", "--out", tmp_path / "out")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and str(tmp_path / "nope") in proc.stderr


@pytest.mark.parametrize("pairs, needle", [(["nope:lightconv_small"], "no model labelled nope"),
                                           (["lightconv_small"], "LABEL:BASELINE")])
def test_bad_pairs(raced, pairs, needle):
    proc = race("--data", raced["data"], "--out", raced["out"] / "bad", *TINY, "--pairs", *pairs)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and needle in proc.stderr


def test_pairs_choose_the_comparisons(raced):
    """--pairs A:B compares any two models (here the default pair the other way round): the deltas change sign."""
    proc = race("--data", raced["data"], "--out", raced["out"], *TINY, "--report-only",
                "--pairs", "lightconv_small:cgc_lightconv_small")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (pair,) = json.loads((raced["out"] / "race.json").read_text())["pairs"]
    (default,) = raced["report"]["pairs"]
    assert (pair["gated"], pair["baseline"]) == ("lightconv_small", "cgc_lightconv_small")
    for key in ("test.sacrebleu", "valid.bleu_tokenized", "last_valid_loss"):
        assert pair["delta"][key]["mean"] == pytest.approx(-default["delta"][key]["mean"])
    assert "| lightconv_small vs cgc_lightconv_small |" in (raced["out"] / "race.md").read_text()


CONVERGED = ["--preset", "tiny", "--max-update", "40", "--patience", "2", "--validate-every", "4", "--average", "2",
             "--curve-every", "4", "--max-len-b", "24", "--gate-sentences", "0", "--seeds", "1",
             "--models", "cgc_lightconv_small", "--splits", "valid", "test", "--jobs", "1", "--threads", "2"]


def test_to_convergence(tmp_path, synthetic_data):
    """--patience: each run stops where the rule applied to its logged valid losses says, the average ends at the
    best validation, the best checkpoint is scored too, the training time counts every session of a run, and the
    report says where the runs stopped and the threads they trained with."""
    from scripts.convergence import state, valid_losses

    out = tmp_path / "out"
    proc = race("--data", synthetic_data, "--out", out, *CONVERGED)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for label in ("cgc_lightconv_small",):
        run = out / label / "seed1"
        summary = json.loads((run / "summary.json").read_text())
        expected = state(valid_losses(run, 4), patience=2, max_update=40)
        assert summary["stop"] == expected and expected["stopped"] in ("patience", "max_update")
        assert [updates(n) for n in summary["averaged"]] == list(range(4, expected["best_update"] + 1, 4))[-2:]
        assert summary["best_scores"]["test"]["sacrebleu"] == json.loads(
            (run / "eval" / "best.test" / "results.json").read_text())["sacrebleu"]
        assert set(summary["loss"]) == {"average", "best"} and summary["updates"] == expected["last_update"]
        assert not list((run / "checkpoints").glob("checkpoint[0-9]*.pt"))  # no end-of-epoch checkpoints
    md = (out / "race.md").read_text()
    assert "| stopped at | best at |" in md and "| best valid loss* |" in md and "last valid loss*" not in md
    (run_record,) = json.loads((out / "race.json").read_text())["runs"]
    assert run_record["best_valid_loss"] == expected["best_loss"]
    assert 0 <= run_record["minutes_to_best"] <= run_record["training_wall_seconds"] / 60  # a clock in seconds
    assert summary["training_wall_seconds"] == pytest.approx(run_record["training_wall_seconds"])  # all sessions
    assert run_record["threads"] == 2 == json.loads((run / "train.json").read_text())["machine"]["threads"]
    assert (f"| cgc_lightconv_small | 1 | {run_record['cpu']} | 2 | {expected['last_update']} |"
            in md)
