"""Whole runs of data-bin-prep, round three: a full disk is one `cannot write PATH` line and no step stamped done
(the prep's writers and sentencepiece's model, which sentencepiece leaves empty without a word), a stamped output
emptied since makes its step run again, a rerun leaves a user's files in --out alone, old-Mac CR line ends are
line ends, and an --out with a comma (sentencepiece and fairseq-preprocess split their paths on commas) works."""
from __future__ import annotations

import json

import pytest

import common
import outdir
import prepare
from clitools.files import sha256_file
from tests.test_prep_errors import fake_multi30k, run_prepare

pytestmark = pytest.mark.slow  # whole runs of the prep

ARGS = ("--workers", 1, "--vocab-size", 60)


def prepare_here(capsys, raw, out):
    """prepare.py's main in this process (so that a test can make its writes fail); (exit status, stderr)."""
    status = prepare.main(["multi30k", "--raw", str(raw), "--out", str(out), *map(str, ARGS)])
    return status, capsys.readouterr().err


def assert_error_line(err, *needles):
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_full_disk_writing_text(tmp_path, capsys, monkeypatch):
    raw, out = fake_multi30k(tmp_path / "m"), tmp_path / "out"
    real = common.tmp_name

    def on_a_full_disk(path):
        tmp = real(path)
        if path.name == "train.en":
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.symlink_to("/dev/full")
        return tmp

    monkeypatch.setattr(common, "tmp_name", on_a_full_disk)
    status, err = prepare_here(capsys, raw, out)
    assert status == 2
    assert_error_line(err, f"error: cannot write {out / 'tok' / 'train.en'}: No space left on device")
    assert not (out / ".prep" / "text.json").exists() and not (out / "tok" / "train.en").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()
    status, err = prepare_here(capsys, raw, out)  # the disk has room again: the run finishes
    assert status == 0, err
    assert (out / "manifest.json").is_file()


def test_full_disk_under_sentencepiece(tmp_path, capsys, monkeypatch):
    """sentencepiece on a full disk writes an empty model and says nothing: the prep checks the model it wrote."""
    import sentencepiece

    def empty_model(**kwargs):  # what sentencepiece leaves on a full disk (no error)
        for suffix in (".model", ".vocab"):
            open(kwargs["model_prefix"] + suffix, "wb").close()

    raw, out = fake_multi30k(tmp_path / "m"), tmp_path / "out"
    monkeypatch.setattr(sentencepiece.SentencePieceTrainer, "train", empty_model)
    status, err = prepare_here(capsys, raw, out)
    assert status == 2
    assert_error_line(err, f"error: cannot write {out / 'spm.model'}: sentencepiece wrote an incomplete model")
    assert not (out / "spm.model").exists() and not (out / ".prep" / "spm.json").exists()
    assert (out / ".prep" / "text.json").exists()  # the steps before are done
    monkeypatch.undo()
    status, err = prepare_here(capsys, raw, out)
    assert status == 0 and "[skip] text" in err and "[step] spm" in err, err


def test_stamped_output_emptied_and_users_files(tmp_path):
    """A rerun after a stamped output was emptied (a full disk under an older prep) or changed redoes its step; the
    files of the user in --out (anything that is not the prep's own .NAME.tmpPID) survive the rerun."""
    raw, out = fake_multi30k(tmp_path / "m"), tmp_path / "out"
    r = run_prepare("multi30k", "--raw", raw, "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    model = (out / "spm.model").read_bytes()
    (out / "spm.model").write_bytes(b"")
    (out / "tok" / "valid.de").write_text("changed\n")
    mine = [out / "config" / ".env.tmpl", out / "tok" / ".notes.tmp", out / ".spm.model.tmp.bak"]
    for p in mine:
        p.parent.mkdir(exist_ok=True)
        p.write_text("mine\n")
    r = run_prepare("multi30k", "--raw", raw, "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[step] text" in r.stderr and "[step] spm" in r.stderr
    assert (out / "spm.model").read_bytes() == model and len((out / "tok" / "valid.de").read_text().split("\n")) == 4
    assert all(p.read_text() == "mine\n" for p in mine)
    stamp = json.loads((out / ".prep" / "spm.json").read_text())
    assert stamp["outputs"]["spm.model"] == sha256_file(out / "spm.model")
    r = run_prepare("multi30k", "--raw", raw, "--out", out, *ARGS)
    assert "ran: nothing" in r.stdout, r.stdout


def test_old_mac_line_ends(tmp_path):
    cr = {f"{s}.{l}": "".join(f"Satz {i} {s} {l}.\r" for i in range(3)).encode()
          for s in ("train", "val", "test_2016_flickr", "test_2017_flickr") for l in ("de", "en")}
    raw, out = fake_multi30k(tmp_path / "m", **cr), tmp_path / "out"
    r = run_prepare("multi30k", "--raw", raw, "--out", out, *ARGS)
    assert r.returncode == 0 and "longer than" not in r.stderr, r.stderr[-2000:]  # not one 1023-token line
    for split in ("train", "valid", "test", "test1"):
        assert len((out / "tok" / f"{split}.de").read_text().splitlines()) == 3
    assert (out / "raw" / "valid.en").read_text().splitlines() == [f"Satz {i} val en." for i in range(3)]


def test_comma_in_out(tmp_path):
    raw, out = fake_multi30k(tmp_path / "m"), tmp_path / "a,b" / "multi30k"
    r = run_prepare("multi30k", "--raw", raw, "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["test1"]["lines"] == 3 and (out / "test1.de-en.en.bin").is_file()
    assert not (out / outdir.LOCK).exists()

