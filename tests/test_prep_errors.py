"""data-bin-prep: every kind of bad input gives a one-line ``error: ...`` naming
the culprit, exit status 2, no traceback, and no finished-looking output."""

from __future__ import annotations

import gzip
import io
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import common
import outdir
import pipeline

REPO = Path(__file__).resolve().parents[1]
PREPARE = REPO / "data-bin-prep" / "prepare.py"

SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr")


def run_prepare(*args):
    return subprocess.run([sys.executable, str(PREPARE), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    err_lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(err_lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert str(n) in err_lines[0], (n, err_lines[0])
    return err_lines[0]


def assert_nothing_finished(out: Path):
    """No output that looks finished: no text/binary/model/manifest/stamp files."""
    if not out.exists():
        return
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files == [], files


def fake_multi30k(root: Path, n=3, **override) -> Path:
    """A tiny Multi30k-like raw dir; override maps 'split.lang' -> bytes."""
    (root / "raw").mkdir(parents=True)
    for s in SPLITS:
        for l in ("de", "en"):
            data = override.get(f"{s}.{l}", "".join(f"Satz {i} {s} {l}.\n" for i in range(n)).encode())
            if data is None:
                continue
            with gzip.open(root / "raw" / f"{s}.{l}.gz", "wb") as f:
                f.write(data)
    return root


def test_missing_file(tmp_path):
    raw = fake_multi30k(tmp_path / "m", **{"val.en": None})
    out = tmp_path / "out"
    r = run_prepare("multi30k", "--raw", raw, "--out", out)
    assert_one_line_error(r, "missing input file", "val.en")
    assert_nothing_finished(out)


def test_missing_raw_dir(tmp_path):
    r = run_prepare("multi30k", "--raw", tmp_path / "nope", "--out", tmp_path / "out")
    assert_one_line_error(r, "--raw path does not exist", "nope")


def test_line_count_mismatch(tmp_path):
    raw = fake_multi30k(tmp_path / "m", **{"test_2016_flickr.en": b"only one line.\n"})
    out = tmp_path / "out"
    r = run_prepare("multi30k", "--raw", raw, "--out", out, "--workers", 1)
    assert_one_line_error(r, "line-count mismatch", "test_2016_flickr.de.gz", "test_2016_flickr.en.gz")
    assert_nothing_finished(out)


def test_non_utf8(tmp_path):
    raw = fake_multi30k(tmp_path / "m", **{"val.de": "gut\n".encode() + b"caf\xe9 latin-1\n"})
    out = tmp_path / "out"
    r = run_prepare("multi30k", "--raw", raw, "--out", out)
    assert_one_line_error(r, "val.de.gz", "not UTF-8", "line 2")
    assert_nothing_finished(out)


def test_output_path_is_a_file(tmp_path):
    raw = fake_multi30k(tmp_path / "m")
    out = tmp_path / "out"
    out.write_text("i am a file\n")
    r = run_prepare("multi30k", "--raw", raw, "--out", out)
    assert_one_line_error(r, "output path is a file", str(out))
    assert out.read_text() == "i am a file\n"
    r = run_prepare("multi30k", "--raw", raw, "--out", out / "sub")
    assert_one_line_error(r, "output path is a file", str(out))


def test_archive_not_the_release(tmp_path):
    bogus = tmp_path / "de-en.tgz"
    with tarfile.open(bogus, "w:gz") as tf:
        data = b"hello\n"
        info = tarfile.TarInfo("de-en/README")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    r = run_prepare("iwslt14", "--raw", bogus, "--out", out)
    assert_one_line_error(r, str(bogus), "is not the IWSLT'14 de-en release", "train.tags.de-en.de")
    assert_nothing_finished(out)
    notatar = tmp_path / "x.tgz"
    notatar.write_bytes(b"<html>404 not found</html>")
    r = run_prepare("iwslt14", "--raw", notatar, "--out", out)
    assert_one_line_error(r, str(notatar), "is not the IWSLT'14 de-en release")
    assert_nothing_finished(out)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more: connection refused, offline
    return port


def test_no_network_when_download_needed(tmp_path):
    empty = tmp_path / "raw"
    empty.mkdir()
    out = tmp_path / "out"
    url = f"http://127.0.0.1:{_closed_port()}/de-en.tgz"
    r = run_prepare("iwslt14", "--raw", empty, "--url", url, "--out", out)
    line = assert_one_line_error(r, "cannot download", url, "--eval-only")
    assert "refused" in line.lower() or "errno" in line.lower()
    assert_nothing_finished(out)


def test_eval_only_missing_xml(tmp_path):
    empty = tmp_path / "raw"
    empty.mkdir()
    r = run_prepare("iwslt14", "--raw", empty, "--eval-only", "--out", tmp_path / "out")
    assert_one_line_error(r, "missing input file", "IWSLT14.TED.dev2010.de-en.de.xml")


def test_bad_arguments(tmp_path):
    r = run_prepare("multi30k", "--vocab-size", "3", "--out", tmp_path / "o")
    assert_one_line_error(r, "--vocab-size")
    r = run_prepare("nosuchcorpus")
    assert_one_line_error(r, "nosuchcorpus")
    r = run_prepare("--help")
    assert r.returncode == 0 and "iwslt14" in r.stdout and "multi30k" in r.stdout
    r = run_prepare("iwslt14", "--help")
    assert r.returncode == 0 and "--eval-only" in r.stdout and "--url" in r.stdout


@pytest.mark.slow  # runs fairseq-preprocess: make test only
def test_fairseq_preprocess_failure_is_one_line(tmp_path):
    with pytest.raises(common.PrepError) as e:
        pipeline.fairseq_preprocess(tmp_path / "bin", tmp_path / "no" / "train",
                                  tmp_path / "no" / "valid", [tmp_path / "no" / "test"], 1)
    msg = str(e.value)
    assert msg.startswith("fairseq-preprocess failed (exit") and "\n" not in msg
    assert_nothing_finished(tmp_path / "bin")


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "tok" / "train.de"
    with pytest.raises(KeyboardInterrupt):
        with common.atomic_path(target) as tmp:
            tmp.write_text("half a fi")
            raise KeyboardInterrupt
    assert not target.exists() and list((tmp_path / "tok").iterdir()) == []
    # leftovers of a killed process (no chance to clean up) are removed on the next run
    stale = tmp_path / "tok" / ".train.de.tmp12345"
    stale.write_text("x")
    outdir.remove_stale_tmp(tmp_path)
    assert not stale.exists()


def test_step_not_done_without_stamp(tmp_path):
    steps = common.Steps(tmp_path)
    out_file = tmp_path / "a.txt"
    calls = []
    fn = lambda: (calls.append(1), common.write_lines(out_file, ["x"]))
    assert steps.run("a", {"k": 1}, [out_file], fn) is True
    assert steps.run("a", {"k": 1}, [out_file], fn) is False  # skipped
    assert steps.run("a", {"k": 2}, [out_file], fn) is True  # options changed
    (tmp_path / ".prep" / "a.json").unlink()  # e.g. killed between output and stamp
    assert steps.run("a", {"k": 2}, [out_file], fn) is True
    assert common.Steps(tmp_path, force=True).run("a", {"k": 2}, [out_file], fn) is True
    assert len(calls) == 4


def test_step_reruns_when_an_output_was_emptied_or_changed(tmp_path):
    """A step is done only while its outputs are what it recorded (sha256 in its stamp): a full disk's 0-byte file,
    or a file changed since, makes it run again. A stamp of an older prep (no outputs recorded) counts for non-empty
    outputs only."""
    steps, out_file, calls = common.Steps(tmp_path), tmp_path / "spm.model", []
    fn = lambda: (calls.append(1), common.write_lines(out_file, ["model"]))  # noqa: E731
    assert steps.run("spm", {"k": 1}, [out_file], fn) is True
    assert steps.run("spm", {"k": 1}, [out_file], fn) is False
    out_file.write_bytes(b"")  # what a full disk left
    assert steps.run("spm", {"k": 1}, [out_file], fn) is True and out_file.read_text() == "model\n"
    out_file.write_text("another model\n")
    assert steps.run("spm", {"k": 1}, [out_file], fn) is True
    assert steps.run("spm", {"k": 1}, [out_file], fn) is False
    stamp = tmp_path / ".prep" / "spm.json"
    stamp.write_text('{"key": {"k": 1}, "finished": "then"}')  # the stamp an older prep wrote
    assert steps.run("spm", {"k": 1}, [out_file], fn) is False
    stamp.write_text('{"key": {"k": 1}, "finished": "then"}')
    out_file.write_bytes(b"")
    assert steps.run("spm", {"k": 1}, [out_file], fn) is True and len(calls) == 4


def test_stale_sweep_removes_only_the_preps_leftovers(tmp_path):
    """The sweep of killed runs' leftovers removes .NAME.tmpPID of the names the prep writes, in its folders, and
    nothing else (a user's config/.env.tmpl, .notes.tmp, .x.tmp.bak are theirs)."""
    users = ["config/.env.tmpl", ".notes.tmp", ".x.tmp.bak", "tok/.train.de.tmp", "tok/.train.de.tmpx",
             "tok/old/.train.de.tmp12", "tok/.readme.tmp12", ".spm.model.tmp1x", "raw/.valid.fr.tmp3"]
    leftovers = ["tok/.train.de.tmp123", "raw/.test1.en.tmp9", "spm/.valid.de.tmp77", ".manifest.json.tmp5",
                 ".prep/.spm.json.tmp4", "orig/.de-en.tgz.tmp8", "orig/de-en/.train.tags.de-en.de.tmp2",
                 "orig/de-en/.IWSLT14.TED.dev2010.de-en.en.xml.tmp3", ".spm.tmp66/spm.model", ".bin.tmp7/x.bin"]
    for name in users + leftovers:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    outdir.remove_stale_tmp(tmp_path)
    assert [n for n in users if not (tmp_path / n).exists()] == []
    assert [n for n in leftovers if (tmp_path / n).exists()] == []
    assert not (tmp_path / ".spm.tmp66").exists() and not (tmp_path / ".bin.tmp7").exists()


def test_out_that_is_not_a_data_dir_is_refused(tmp_path):
    """A non-empty --out without manifest.json and not a prep run's (.prep/) is someone's folder: refused, and
    nothing in it touched."""
    raw, out = fake_multi30k(tmp_path / "m"), tmp_path / "project"
    (out / "config").mkdir(parents=True)
    (out / "config" / ".env.tmpl").write_text("KEY=\n")
    (out / "notes.txt").write_text("mine\n")
    r = run_prepare("multi30k", "--raw", raw, "--out", out, "--workers", 1)
    assert_one_line_error(r, f"--out {out} is not empty and not a data dir")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["config", "config/.env.tmpl", "notes.txt"]


def test_cr_line_ends():
    """A text with CRs and no "\\n" (old Mac files) has CR line ends; elsewhere a lone CR is a space, CRLF a line
    end."""
    from datadir import lines

    assert lines.decode(b"Ein Mann.\rZwei Hunde.\rDrei.\r", "x") == ["Ein Mann.", "Zwei Hunde.", "Drei."]
    assert lines.decode(b"a\rb", "x") == ["a", "b"]
    assert lines.decode(b"a\r\nb\rc\n", "x") == ["a", "b c"]
    with pytest.raises(lines.TextError, match=r"^x line 2: not UTF-8"):
        lines.decode(b"ok\r\xff\rok\r", "x")
