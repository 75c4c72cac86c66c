"""data-bin-prep, IWSLT'14: a fabricated release through the whole pipeline
(downloaded from a local http.server, and read from a directory), and the real
dev/test XML from the shared copy against prepare-iwslt14.sh's output."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import iwslt14
import multi30k
from datadir.moses import Detokenizer, Tokenizer
from tests.iwslt14_fabricated import TEST_SIZES, fabricate_pairs, make_tgz, write_release

REPO = Path(__file__).resolve().parents[1]
PREPARE = REPO / "data-bin-prep" / "prepare.py"
SHARED = REPO.parent / "shared" / "data"
RECIPES = {"iwslt14": iwslt14, "multi30k": multi30k}


def tokenize(line, lang, corpus="iwslt14"):
    """A line as the data preparation tokenizes it for a corpus."""
    return Tokenizer(lang, RECIPES[corpus].TOKENIZER)(line)


def run_prepare(*args, timeout=600):
    return subprocess.run(
        [sys.executable, str(PREPARE), *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
    )


def read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory):
    """A local http.server on 127.0.0.1 serving a directory (never the internet)."""
    d = tmp_path_factory.mktemp("served")
    handler = functools.partial(_Quiet, directory=str(d))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield d, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("release") / "de-en")


@pytest.fixture(scope="module")
def downloaded_run(tmp_path_factory, release, http_dir):
    """Full pipeline where the release is fetched from the local server."""
    served, base = http_dir
    make_tgz(release, served / "de-en.tgz")
    empty = tmp_path_factory.mktemp("no-train")  # --raw without the release files
    out = tmp_path_factory.mktemp("run") / "iwslt14"
    r = run_prepare("iwslt14", "--raw", empty, "--url", f"{base}/de-en.tgz", "--out", out,
                    "--vocab-size", 120, "--workers", 2)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def expected_splits():
    rows = fabricate_pairs()
    kept = [r for r in rows if r[2] == "keep"]
    strip = lambda s: s.replace("<title>", "").replace("</title>", "").replace(
        "<description>", "").replace("</description>", "")
    kept = [(strip(a), strip(b)) for a, b, _ in kept]
    valid = [kept[i] for i in range(len(kept)) if (i + 1) % 23 == 0]
    train = [kept[i] for i in range(len(kept)) if (i + 1) % 23 != 0]
    return train, valid


@pytest.mark.slow  # the prep end to end: make test only
def test_fabricated_release_end_to_end(downloaded_run):
    out, r = downloaded_run
    train, valid = expected_splits()
    assert len(valid) == len(train + valid) // 23 >= 5
    for split, pairs in (("train", train), ("valid", valid)):
        for j, l in enumerate(("de", "en")):
            expect = [tokenize(p[j], l, "iwslt14") for p in pairs]
            assert read(out / "tok" / f"{split}.{l}") == expect, (split, l)
    # raw/valid: the untouched cased lines (tags stripped), aligned with tok/valid
    for j, l in enumerate(("de", "en")):
        assert read(out / "raw" / f"valid.{l}") == [p[j].strip() for p in valid]

    # tag stripping / dropping and cleaning
    train_de = (out / "tok" / "train.de").read_text() + (out / "tok" / "valid.de").read_text()
    train_en = (out / "tok" / "train.en").read_text() + (out / "tok" / "valid.en").read_text()
    for bad in ("<", "&lt;", "http", "talkid", "keywords", "kw3", "title&gt;", "description&gt;"):
        assert bad not in train_de and bad not in train_en, bad
    assert "titel vortrag3" in train_de and "title talk3" in train_en
    assert "beschreibung des vortrags3 ." in train_de
    assert "lang5" not in train_de and "kurz9" not in train_de  # length and ratio
    assert "ja17 !" in train_de and "yes17 indeed !" in train_en  # ratio exactly 1.5 kept
    assert "anna ’ s" in train_en and "&amp;" in train_en  # no ’ replacement in train
    assert "" not in read(out / "tok" / "train.de")

    # test = dev2010 + dev2012 + tst2010 + tst2011 + tst2012, segments only, ’ -> '
    test_de = read(out / "tok" / "test.de")
    assert len(test_de) == sum(TEST_SIZES.values())
    order = [line.split(" von ")[1].split(" ,")[0] for line in test_de]
    assert order == [s.lower() for s in iwslt14.TEST_SETS for _ in range(TEST_SIZES[s])]
    assert all("max &apos; idee ." in line for line in test_de)
    assert read(out / "raw" / "test.en")[0] == f"Segment 0 of {iwslt14.TEST_SETS[0]}, Max’ idea."

    # sentencepiece + fairseq binaries
    for name in ["spm.model", "spm.vocab", "dict.de.txt", "dict.en.txt"] + [
        f"{s}.de-en.{l}.{e}" for s in ("train", "valid", "test") for l in ("de", "en") for e in ("bin", "idx")
    ]:
        assert (out / name).is_file(), name
    assert (out / "dict.de.txt").read_bytes() == (out / "dict.en.txt").read_bytes()  # joined
    assert not (out / "test1.de-en.de.bin").exists()
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(out / "dict.de.txt"))
    for split in ("train", "valid", "test"):
        ds = data_utils.load_indexed_dataset(str(out / f"{split}.de-en.en"), d)
        assert len(ds) == len(read(out / "tok" / f"{split}.en"))
    spm_line = read(out / "spm" / "test.en")[0]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    assert sp.decode(spm_line.split()) == read(out / "tok" / "test.en")[0]

    # manifest, warnings, count table
    m = json.loads((out / "manifest.json").read_text())
    assert m["corpus"] == "iwslt14" and m["standard_release"] is False
    assert {s: v["lines"] for s, v in m["splits"].items()} == {
        "train": len(train), "valid": len(valid), "test": sum(TEST_SIZES.values())}
    assert m["vocab_size"] == 120 and m["spm_model_type"] == "bpe"
    assert m["tokenizer"]["escape"] is True and m["tokenizer"]["lowercase"] is True
    assert m["tokenizer"]["normalize_punct"] is False
    assert "train.tags.de-en.de" in m["inputs"] and len(m["inputs"]["train.tags.de-en.de"]["sha256"]) == 64
    assert "train.de-en.de.bin" in m["outputs"] and "spm.model" in m["outputs"]
    assert {"python", "sentencepiece", "sacremoses", "fairseq", "torch"} <= set(m["versions"])
    assert m["cleaning"]["ratio"] == 1.5 and m["cleaning"]["max"] == 175
    assert "warning: train has" in r.stderr and "not the standard release" in r.stderr
    assert "downloading" in r.stderr and (out / "orig" / "de-en.tgz").is_file()
    assert "split" in r.stdout and "valid" in r.stdout  # the count table
    assert not list(out.rglob(".*.tmp*"))


@pytest.mark.slow  # the prep end to end: make test only
def test_rerun_skips_and_force_redoes(downloaded_run):
    out, _ = downloaded_run
    before = (out / "manifest.json").read_text()
    r = run_prepare("iwslt14", "--raw", out / "nowhere-but-cached", "--out", out, "--vocab-size", 120)
    # --raw must exist
    assert r.returncode == 2 and "--raw path does not exist" in r.stderr
    r = run_prepare("iwslt14", "--raw", out / "orig" / "de-en.tgz", "--out", out, "--vocab-size", 120)
    assert r.returncode == 0, r.stderr
    assert "ran: nothing" in r.stdout
    for step in ("test-text", "train-text", "spm", "encode", "binarize", "manifest"):
        assert f"[skip] {step}:" in r.stderr, step
    assert (out / "manifest.json").read_text() == before  # kept as the run that made the outputs
    m = json.loads(before)
    mtime = (out / "tok" / "train.de").stat().st_mtime_ns
    r = run_prepare("iwslt14", "--raw", out / "orig" / "de-en.tgz", "--out", out,
                    "--vocab-size", 120, "--force")
    assert r.returncode == 0, r.stderr
    assert "[skip]" not in r.stderr and (out / "tok" / "train.de").stat().st_mtime_ns != mtime
    # deterministic: same outputs again
    assert json.loads((out / "manifest.json").read_text())["outputs"] == m["outputs"]


@pytest.mark.slow  # the prep end to end: make test only
def test_release_directory_gives_same_text(downloaded_run, release, tmp_path):
    out, _ = downloaded_run
    r = run_prepare("iwslt14", "--raw", release, "--eval-only", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    for l in ("de", "en"):
        assert read(tmp_path / "o" / "tok" / f"test.{l}") == read(out / "tok" / f"test.{l}")
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["mode"] == "eval-only" and list(m["splits"]) == ["test"]
    assert not (tmp_path / "o" / "spm.model").exists()


@pytest.mark.skipif(not (SHARED / "iwslt14-de-en" / "raw").is_dir(),
                    reason=f"shared IWSLT'14 copy not found at {SHARED / 'iwslt14-de-en'}")
@pytest.mark.slow  # the prep end to end: make test only
def test_standard_release_counts_are_asserted(tmp_path, release):
    """Real (standard) dev/test XML + a small fabricated train: the count mismatch is an error."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in (SHARED / "iwslt14-de-en" / "raw").glob("*.xml.xz"):
        (raw / p.name).symlink_to(p)
    for l in ("de", "en"):
        (raw / f"train.tags.de-en.{l}").symlink_to(release / f"train.tags.de-en.{l}")
    out = tmp_path / "out"
    r = run_prepare("iwslt14", "--raw", raw, "--out", out, "--vocab-size", 200)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: train has" in r.stderr and "standard IWSLT'14 split has 160239" in r.stderr
    assert "--no-count-check" in r.stderr
    assert not (out / "manifest.json").exists() and not (out / "spm.model").exists()
    r = run_prepare("iwslt14", "--raw", raw, "--out", out, "--vocab-size", 200, "--no-count-check")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warning: train has" in r.stderr
    assert "[skip] test-text" in r.stderr and "[skip] train-text" in r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["standard_release"] is True and m["splits"]["test"]["lines"] == 6750
    assert m["fidelity"] == {}  # no tokenized/ reference next to this --raw
    for s_ in ("train", "valid", "test"):
        assert (out / f"{s_}.de-en.de.bin").is_file()

# --------------------------------------------------------------------------


def test_clean_corpus_like_perl():
    src = ["a b", "a", " x  y ", "", "a " * 176, "w" * 1001, "a b c"]
    tgt = ["a b c", "a b", "x y", "z", "b", "v", "d|e f"]
    keep, s, t = iwslt14.clean_corpus(src, tgt)
    # 2/3 ratio 1.5 kept; 1 vs 2 = 2.0 dropped; whitespace normalised; empty, long, long word dropped
    assert keep == [0, 2, 6]
    assert s == ["a b", "x y", "a b c"] and t == ["a b c", "x y", "de f"]


def test_split_every_23rd():
    train, valid = iwslt14.split_valid(100)
    assert valid == [22, 45, 68, 91]
    assert len(train) == 96 and not set(train) & set(valid)
    assert len(iwslt14.split_valid(160239 + 7283)[1]) == 7283


def test_seg_extraction():
    lines = ['<doc docid="1">', '<title>T</title>', '<seg id="12">  Max’ Idee. </seg>  ', "<seg>x</seg>"]
    to_tok, raw = iwslt14.extract_segs(lines)
    assert to_tok == ["Max' Idee."] and raw == ["Max’ Idee."]
    assert iwslt14.filter_train(["<url>u</url>", "<title>T</title>", "x <talkid>1</talkid>", "ok"]) == ["T", "ok"]


def test_tokenize_detokenize():
    assert tokenize("Hello, it's Mr. Smith's \"U.S.\" car.", "en") == \
        "hello , it &apos;s mr. smith &apos;s &quot; u.s. &quot; car ."
    assert tokenize("Das kostet 5 € usw.", "de") == "das kostet 5 € usw ."  # final period split
    assert tokenize("Ein „Test“.", "de", "multi30k") == "ein &quot; test &quot; ."
    assert Detokenizer("en")("hello , it &apos;s a &quot; test &quot; .") == 'hello, it\'s a "test".'


# --------------------------------------------------------------------------
# the real dev/test XML (shared copy) vs. prepare-iwslt14.sh's output
# --------------------------------------------------------------------------

IWSLT_SHARED = SHARED / "iwslt14-de-en"


@pytest.mark.skipif(not (IWSLT_SHARED / "raw").is_dir(),
                    reason=f"shared IWSLT'14 copy not found at {IWSLT_SHARED}")
def test_real_test_split_matches_prepare_iwslt14(tmp_path):
    import lzma

    out = tmp_path / "iwslt-eval"
    r = run_prepare("iwslt14", "--raw", IWSLT_SHARED, "--eval-only", "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["standard_release"] is True
    assert m["splits"]["test"]["lines"] == 6750
    assert m["test_sets"] == dict(zip(iwslt14.TEST_SETS, [887, 1165, 1565, 1433, 1700]))
    for l in ("de", "en"):
        ref = lzma.open(IWSLT_SHARED / "tokenized" / f"test.{l}.xz").read()
        ours = (out / "tok" / f"test.{l}").read_bytes()
        rep = m["fidelity"]["test"][l]
        print(f"IWSLT'14 test.{l}: {rep['identical']}/{rep['lines']} identical ({100 * rep['share']:.3f}%)")
        assert rep["lines"] == 6750
        assert ours == ref  # byte for byte
    assert len(read(out / "raw" / "test.en")) == 6750
