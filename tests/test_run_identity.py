"""A run dir is what its command made: a rerun that differs in anything but the budget is refused in one line, one
training at a time holds it, and a reused output is checked against what it was made from (train, evaluate, race)."""
import os
import shutil

import pytest

from tests.run_scripts import check_error, script

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_data):
    run = tmp_path_factory.mktemp("identity") / "run"
    script("train", "--data", synthetic_data, "--run-dir", run, "--preset", "tiny", "--max-update", 4, "--seed", 1)
    return run


@pytest.mark.parametrize("change, words", [(["--seed", 2], "--seed 1, not 2"),
                                           (["--lr", "1e-3"], "--lr 5e-3, not 1e-3"),
                                           (["--arch", "lightconv_small"], "--arch cgc_lightconv_small, not "
                                                                           "lightconv_small")])
def test_a_rerun_that_changes_what_is_trained_is_refused(run, synthetic_data, change, words):
    args = {"--seed": 1, **dict(zip(change[::2], change[1::2]))}
    proc = script("train", "--data", synthetic_data, "--run-dir", run, "--preset", "tiny", "--max-update", 4,
                  *[w for kv in args.items() for w in kv], check=False)
    check_error(proc, words, "--force")


def test_another_data_dir_is_refused_and_a_longer_budget_resumes(run, synthetic_data, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(synthetic_data, other)
    proc = script("train", "--data", other, "--run-dir", run, "--preset", "tiny", "--max-update", 4, "--seed", 1,
                  check=False)
    check_error(proc, "the data dir", str(other))
    resumed = script("train", "--data", synthetic_data, "--run-dir", run, "--preset", "tiny", "--max-update", 6,
                     "--seed", 1)
    assert "(resuming)" in resumed.stdout


def test_one_training_at_a_time(run, synthetic_data):
    (run / "train.pid").write_text(f"{os.getpid()}\n")  # a live process holds the run dir
    try:
        proc = script("train", "--data", synthetic_data, "--run-dir", run, "--preset", "tiny", "--max-update", 8,
                      "--seed", 1, check=False)
        check_error(proc, "another train", str(os.getpid()))
    finally:
        (run / "train.pid").unlink()


def test_evaluate_reuses_only_what_it_made_from_the_same_data(run, synthetic_data, tmp_path):
    ckpt = run / "checkpoints" / "checkpoint_last.pt"
    out = tmp_path / "eval"
    args = ("--checkpoint", ckpt, "--split", "test", "--out", out, "--reuse", "--max-len-b", 12)
    script("evaluate", "--data", synthetic_data, *args)
    assert "reusing" in script("evaluate", "--data", synthetic_data, *args).stdout
    other = tmp_path / "other"
    shutil.copytree(synthetic_data, other)
    reference = other / "tok" / "test.en"
    reference.write_text(reference.read_text().replace("a", "b"))  # the same dictionaries, other references
    assert "reusing" not in script("evaluate", "--data", other, *args).stdout


def test_a_race_with_a_seed_twice_is_refused(synthetic_data, tmp_path):
    proc = script("race", "--data", synthetic_data, "--out", tmp_path / "race", "--preset", "tiny", "--seeds", 1, 1,
                  check=False)
    check_error(proc, "--seeds: 1 given twice")
