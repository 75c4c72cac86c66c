"""The converged race's pieces without training: the stopping rule (scripts/convergence.py) and its chunks, the
significance measures (scripts/significance.py) and fairseq-validate's output (scripts/loss.py)."""
import statistics

import pytest

from scripts import convergence, loss, significance


def test_the_rule_stops_after_patience_validations_without_a_lower_loss():
    losses = [(200, 5.0), (400, 4.5), (600, 4.6), (800, 4.5), (1000, 4.7)]  # 4.5 again is no improvement
    st = convergence.state(losses, patience=3, max_update=6000)
    assert (st["best_update"], st["best_loss"], st["since_best"], st["stopped"]) == (400, 4.5, 3, "patience")
    assert convergence.state(losses[:4], patience=3, max_update=6000)["stopped"] is None
    assert convergence.state(losses[:2], patience=3, max_update=400)["stopped"] == "max_update"
    assert convergence.state([], patience=3, max_update=400)["last_update"] == 0


def test_a_chunk_ends_where_the_rule_could_first_stop():
    st = convergence.state([(200, 5.0), (400, 4.5), (600, 4.6)], patience=5, max_update=6000)
    assert convergence.next_stop(st, every=200, patience=5, max_update=6000, epoch=130) == 600 + 4 * 200
    assert convergence.next_stop(st, every=200, patience=5, max_update=1000, epoch=130) == 1000
    assert convergence.next_stop(convergence.state([], 5, 6000), every=200, patience=5, max_update=6000,
                                 epoch=130) == 1000
    # an update that is a multiple of 200 and ends an epoch of 130 (2600) ends a chunk; an unknown epoch: every 200
    st = convergence.state([(2000, 4.0), (2200, 3.9)], patience=5, max_update=6000)
    assert convergence.next_stop(st, every=200, patience=5, max_update=6000, epoch=130) == 2600
    assert convergence.next_stop(st, every=200, patience=5, max_update=6000) == 2400


def test_chunks_train_until_the_rule_stops_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    """A fake training that logs a validation every 200 updates up to its --max-update (as fairseq does from a
    resume): the run stops at the update the rule names, in chunks, and a second call trains nothing."""
    curve = {200: 5.0, 400: 4.4, 600: 4.5, 800: 4.3, 1000: 4.6, 1200: 4.5, 1400: 4.4, 1600: 4.35}
    done, targets = [], []

    def fake_train(data, run_dir, *flags, logfile=None):
        target = int(flags[flags.index("--max-update") + 1])
        targets.append(target)
        done.extend(u for u in curve if (done[-1] if done else 0) < u <= target)

    monkeypatch.setattr(convergence, "train", fake_train)
    monkeypatch.setattr(convergence, "epoch_updates", lambda run_dir: 130)
    monkeypatch.setattr(convergence, "number_the_last", lambda run_dir, updates, strict=True: None)
    monkeypatch.setattr(convergence, "valid_losses", lambda run_dir, every: [(u, curve[u]) for u in done])
    st = convergence.train_to_convergence("DATA", tmp_path, every=200, patience=4, average=5, max_update=6000)
    assert (st["best_update"], st["last_update"], st["stopped"]) == (800, 1600, "patience")
    assert targets == [800, 1600]
    convergence.train_to_convergence("DATA", tmp_path, every=200, patience=4, average=5, max_update=6000)
    assert targets == [800, 1600]


def test_a_training_that_stops_short_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(convergence, "train", lambda *a, **k: None)
    monkeypatch.setattr(convergence, "epoch_updates", lambda run_dir: None)
    monkeypatch.setattr(convergence, "valid_losses", lambda run_dir, every: [])
    with pytest.raises(convergence.ScriptError, match="stopped before update 200"):
        convergence.train_to_convergence("DATA", tmp_path, every=200, patience=5, average=5, max_update=6000)


def test_valid_losses_read_the_log_once_per_validation(tmp_path):
    """A validation logged again after a resume from its checkpoint counts once; other updates' are not the rule's."""
    stamp = "2026-12-03 10:00:0{} | INFO | "
    rows = [stamp.format(0) + 'fairseq_cli.train | {"task": "translation"}',
            stamp.format(1) + 'valid | {"epoch": 1, "valid_loss": "5.1", "valid_num_updates": "200"}',
            stamp.format(2) + 'valid | {"epoch": 1, "valid_loss": "5.0", "valid_num_updates": "250"}',
            stamp.format(3) + 'valid | {"epoch": 2, "valid_loss": "4.9", "valid_num_updates": "400"}',
            stamp.format(4) + 'valid | {"epoch": 2, "valid_loss": "4.8", "valid_num_updates": "400"}']
    (tmp_path / "train.log").write_text("\n".join(rows) + "\n")
    assert convergence.valid_losses(tmp_path, 200) == [(200, 5.1), (400, 4.8)]


def test_t_interval_is_the_textbook_one():
    deltas = [0.1, 0.3, 0.2]  # mean 0.2, sd 0.1, n 3: 0.2 +- 4.303 * 0.1 / sqrt(3)
    low, high = significance.t_interval(deltas)
    assert low == pytest.approx(0.2 - 4.303 * statistics.stdev(deltas) / 3 ** 0.5) and high == pytest.approx(
        0.2 + 0.24843, abs=1e-4)
    assert significance.t_interval([0.5]) is None


def test_the_paired_bootstrap_tells_a_real_difference_from_none():
    refs = [f"a man number {i} rides a red bike down the hill" for i in range(60)]
    garbled = [" ".join(reversed(r.split())) for r in refs]
    even = [g if i % 2 == 0 else r for i, (r, g) in enumerate(zip(refs, garbled))]  # as good as odd, not the same
    odd = [r if i % 2 == 0 else g for i, (r, g) in enumerate(zip(refs, garbled))]
    alike = significance.paired_bootstrap(even, odd, refs, resamples=200)
    assert abs(alike["delta"]) < 1 and alike["p_value"] > 0.2
    better = significance.paired_bootstrap(refs, garbled, refs, resamples=200)
    assert better["delta"] > 50 and better["p_value"] < 0.01 and better["resamples"] == 200
    with pytest.raises(ValueError):
        significance.paired_bootstrap(refs[:3], garbled, refs)


def test_fairseq_validate_output_is_parsed_per_split():
    text = ("2026-12-03 16:40:32 | INFO | valid | {\"valid_loss\": \"4.21\", \"valid_nll_loss\": \"2.615\"}\n"
            "2026-12-03 16:40:32 | INFO | fairseq.data.data_utils | loaded 1,000 examples\n"
            "2026-12-03 16:40:39 | INFO | test | {\"test_loss\": \"4.229\", \"test_nll_loss\": \"2.634\"}\n")
    assert loss.parse_losses(text, ["valid", "test"]) == {"valid": {"loss": 4.21, "nll_loss": 2.615},
                                                          "test": {"loss": 4.229, "nll_loss": 2.634}}
    with pytest.raises(loss.ScriptError, match="no loss for test1"):
        loss.parse_losses(text, ["valid", "test1"])
