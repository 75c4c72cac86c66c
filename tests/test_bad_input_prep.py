"""Bad input to data-bin-prep, round two (issue 12): a lock on --out, one definition of a line (datadir.lines) for
the raw files, empty or blank inputs named, NULs refused, sentences longer than the models' positions truncated
with a warning, options refused at parse time in datadir.values' words."""
from __future__ import annotations

import json
import os

import pytest

import outdir
from tests.test_prep_errors import assert_nothing_finished, assert_one_line_error, fake_multi30k, run_prepare

LONG = 1100  # words: more pieces than the models' 1024 positions


def test_second_run_on_the_same_out_is_refused(tmp_path):
    """While a run holds --out, another one is refused naming the holder's pid, and leaves the holder's scratch
    folder alone (the stale-temp cleanup of today's main removed it under the running prep's feet)."""
    raw, out = fake_multi30k(tmp_path / "m"), tmp_path / "out"
    out.mkdir()
    with outdir.locked(out):
        scratch = outdir.run_tmp_dir(out, "spm")
        r = run_prepare("multi30k", "--raw", raw, "--out", out, "--workers", 1)
        assert_one_line_error(r, f"{out} is being prepared by another run (pid {os.getpid()}")
        assert scratch.is_dir() and scratch.name == f".spm.tmp{os.getpid()}"  # this run's own name
        scratch.rmdir()
    assert list(out.iterdir()) == []  # the lock goes with its holder


def test_empty_or_blank_training_files_are_named(tmp_path):
    blank = b"\n  \n\t\n"
    raw = fake_multi30k(tmp_path / "m", **{"train.de": blank, "train.en": blank})
    r = run_prepare("multi30k", "--raw", raw, "--out", tmp_path / "out", "--workers", 1)
    assert_one_line_error(r, "train.de.gz", "no text (the file is empty or has only blank lines)")
    assert_nothing_finished(tmp_path / "out")
    # text in both files, but no pair with text on both sides: nothing left to train sentencepiece on
    raw = fake_multi30k(tmp_path / "m2", **{"train.de": b"Ein Mann.\n\n\n", "train.en": b"\nA man.\n\n"})
    r = run_prepare("multi30k", "--raw", raw, "--out", tmp_path / "out2", "--workers", 1)
    assert_one_line_error(r, "tok/train.de", "no training text")


def test_nul_is_refused_naming_file_and_line(tmp_path):
    raw = fake_multi30k(tmp_path / "m", **{"val.de": b"gut\nNUL\x00da\ndrei\n"})
    r = run_prepare("multi30k", "--raw", raw, "--out", tmp_path / "out", "--workers", 1)
    assert_one_line_error(r, "val.de.gz line 2", "NUL")
    assert_nothing_finished(tmp_path / "out")


@pytest.mark.slow  # the prep end to end: make test only
def test_lines_normalised_and_over_long_truncated(tmp_path):
    """A BOM, CRLF, a lone CR and U+2028 in a raw file: the raw reference, the tokenized file and the binaries agree
    line for line whatever reads them; a test sentence longer than 1024 tokens is truncated to them with a warning
    naming it, and recorded in the manifest."""
    weird = "\ufeffEin Mann.\r\nZwei\u2028Hunde.\r\nDrei\rKatzen.\n".encode()
    long = ("Ein Satz.\n" + "Mann " * LONG + "\nDrei.\n").encode()
    raw = fake_multi30k(tmp_path / "m", **{"val.de": weird, "test_2016_flickr.de": long})
    out = tmp_path / "out"
    r = run_prepare("multi30k", "--raw", raw, "--out", out, "--workers", 1, "--vocab-size", 60)
    assert r.returncode == 0, r.stderr[-2000:]
    valid = (out / "raw" / "valid.de").read_text(encoding="utf-8")
    assert valid.splitlines() == valid.split("\n")[:-1] == ["Ein Mann.", "Zwei Hunde.", "Drei Katzen."]
    assert len((out / "tok" / "valid.de").read_text().splitlines()) == 3
    assert f"{out / 'tok' / 'test.de'} line 2: longer than 1024 tokens" in r.stderr
    pieces = [len(line.split()) for line in (out / "spm" / "test.de").read_text().splitlines()]
    assert pieces[1] == 1023 and len(pieces) == 3  # + EOS: the models' 1024 positions
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["truncated"] == {"test.de": [2]} and manifest["max_positions"] == 1024
    assert not list(out.rglob(".*.tmp*")) and not (out / outdir.LOCK).exists()


def test_options_refused_at_parse_time(tmp_path):
    r = run_prepare("multi30k", "--workers", 0, "--out", tmp_path / "o")
    assert_one_line_error(r, "argument --workers: must be >= 1, got 0")
    r = run_prepare("multi30k", "--vocab-size", "7", "--out", tmp_path / "o")
    assert_one_line_error(r, "argument --vocab-size: must be >= 8, got 7")
    assert not (tmp_path / "o").exists()
