"""data-bin-prep, Multi30k end to end on the real (small) corpus from the shared
copy: counts, agreement with the release's own tok/ files, a data-bin that
fairseq-train opens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREPARE = REPO / "data-bin-prep" / "prepare.py"
M30K = REPO.parent / "shared" / "data" / "multi30k-de-en"

pytestmark = [pytest.mark.slow,  # the prep end to end: make test only
              pytest.mark.skipif(not (M30K / "raw").is_dir(), reason=f"shared Multi30k copy not found at {M30K}")]


@pytest.fixture(scope="module")
def m30k(tmp_path_factory):
    out = tmp_path_factory.mktemp("m30k") / "multi30k.de-en"
    r = subprocess.run(
        [sys.executable, str(PREPARE), "multi30k", "--raw", str(M30K), "--out", str(out),
         "--vocab-size", "2000"],
        capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def lines(p: Path) -> int:
    return p.read_bytes().count(b"\n")


def test_counts_and_layout(m30k):
    out, r = m30k
    expected = {"train": 29000, "valid": 1014, "test": 1000, "test1": 1000}
    m = json.loads((out / "manifest.json").read_text())
    assert {s: v["lines"] for s, v in m["splits"].items()} == expected
    assert {s: v["source"] for s, v in m["splits"].items()} == {
        "train": "train", "valid": "val", "test": "test_2016_flickr", "test1": "test_2017_flickr"}
    for s, n in expected.items():
        for l in ("de", "en"):
            assert lines(out / "tok" / f"{s}.{l}") == n
            assert (out / f"{s}.de-en.{l}.bin").is_file() and (out / f"{s}.de-en.{l}.idx").is_file()
            if s != "train":
                assert lines(out / "raw" / f"{s}.{l}") == n
    assert not (out / "raw" / "train.de").exists()
    assert m["vocab_size"] == 2000 and m["tokenizer"]["normalize_punct"] is True
    assert m["tokenizer"]["pipeline"] == ["lowercase", "normalize_punct", "moses_tokenize"]
    assert len(m["inputs"]) == 8 and len(m["outputs"]) > 30
    raw0 = (out / "raw" / "test.en").read_text().split("\n")[0]
    assert raw0[0].isupper()  # untouched cased reference
    for s in expected:
        assert s in r.stdout  # the count table


def test_agreement_with_release_tok(m30k):
    out, r = m30k
    m = json.loads((out / "manifest.json").read_text())
    for split in ("train", "valid", "test", "test1"):
        for l in ("de", "en"):
            rep = m["fidelity"][split][l]
            print(f"Multi30k {split}.{l}: {rep['identical']}/{rep['lines']} ({100 * rep['share']:.3f}%)")
            assert rep["share"] == 1.0, rep["examples"]


def test_fairseq_train_opens_it(m30k, tmp_path):
    out, _ = m30k
    cmd = [
        sys.executable, "-m", "fairseq_cli.train", str(out),
        "--task", "translation", "--source-lang", "de", "--target-lang", "en",
        "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
        "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
        "--encoder-ffn-embed-dim", "16", "--decoder-ffn-embed-dim", "16",
        "--encoder-attention-heads", "1", "--decoder-attention-heads", "1",
        "--max-tokens", "500", "--max-update", "1", "--cpu", "--no-save",
        "--optimizer", "adam", "--lr", "1e-4", "--criterion", "cross_entropy",
        "--disable-validation", "--num-workers", "0", "--log-format", "simple",
        "--save-dir", str(tmp_path / "ckpt"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    log = r.stdout + r.stderr
    assert "[de] dictionary:" in log and "29000 examples" in log
