"""cgc_fairseq.hub's `moses_lc` tokenizer: the data preparation's tokenization, from the manifest's settings.
(Translation through from_pretrained is tested in test_scripts.py, on the model trained there.)"""
import hashlib
import importlib
import json
from types import SimpleNamespace

import pytest
import torch
from text import tokenize_lines  # data-bin-prep/text.py (pytest's pythonpath)

from cgc_fairseq.hub import AutocastHubInterface, MosesLowercaseTokenizer, checked, from_pretrained, sentence_list
from datadir import layout
from datadir.moses import Tokenizer

SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im \"Schnee\" -- und rennen!",
             "Das ist's: 3,5 km über die Brücke...", "Eine Frau (mit Hut) läuft.", "Kinder spielen  im   Park."]


def tokenizer(tmp_path, settings, lang="de"):
    (tmp_path / "manifest.json").write_text(json.dumps({"tokenizer": settings}))
    return MosesLowercaseTokenizer(SimpleNamespace(source_lang=lang, target_lang="en",
                                                   moses_lc_manifest=str(tmp_path), moses_lc_normalize_punct=False))


def test_encode_lowercases_and_escapes(tmp_path):
    tok = tokenizer(tmp_path, {"lowercase": True, "escape": True, "normalize_punct": False})
    assert tok.encode("Ein Mann fährt Fahrrad.") == "ein mann fährt fahrrad ."
    assert tok.encode('Er sagt "Hallo"') == "er sagt &quot; hallo &quot;"
    assert tok.decode("a man rides a bike &apos;s .") == "a man rides a bike's."


@pytest.mark.parametrize("corpus", ["multi30k", "iwslt14"])
def test_same_as_data_preparation(tmp_path, corpus):
    """With a corpus's manifest settings the hub tokenizes exactly as data-bin-prep does: its recipe's settings,
    through the tokenizer of its parallel tokenization."""
    recipe = importlib.import_module(corpus)  # data-bin-prep/CORPUS.py
    ours = tokenizer(tmp_path, recipe.TOKENIZER, lang="de")
    assert ours.encode(SENTENCES[0]) == tokenize_lines(SENTENCES[:1], "de", recipe.TOKENIZER)[0]
    theirs = Tokenizer("de", recipe.TOKENIZER)
    for s in SENTENCES:
        assert ours.encode(s) == theirs(s), s


def test_from_pretrained_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        from_pretrained(tmp_path, "nope.pt", tmp_path)
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="spm.model"):
        from_pretrained(tmp_path / "model.pt", data=tmp_path)


@pytest.mark.parametrize("content, words", [(b"", "not a readable checkpoint"),
                                             (b"PK\x03\x04 cut short", "not a readable checkpoint"),
                                             ({"weights": [1, 2]}, "not a fairseq checkpoint")])
def test_from_pretrained_refuses_what_is_not_a_fairseq_checkpoint(tmp_path, content, words):
    (tmp_path / "spm.model").write_bytes(b"")
    if isinstance(content, bytes):
        (tmp_path / "model.pt").write_bytes(content)
    else:
        torch.save(content, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=words):
        from_pretrained(tmp_path / "model.pt", data=tmp_path)


def test_a_truncated_checkpoint_is_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(1000)}, "args": None, "cfg": {"x": 1}}, tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "spm.model").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        from_pretrained(tmp_path / "model.pt", data=tmp_path)


GENERATION = {"beam", "lenpen", "max_len_a", "max_len_b", "min_len", "temperature", "nbest"}


@pytest.mark.parametrize("options, error, words", [
    ({"beem": 1}, TypeError, "unknown generation option 'beem' \\(did you mean 'beam'\\?\\)"),
    ({"max_len_a": 0, "max_len_b": 0}, ValueError, "max_len_b: 0 with max_len_a 0 leaves no room"),
    ({"max_len_a": 0, "max_len_b": 2, "min_len": 3}, ValueError, "max_len_b: 2 with max_len_a 0"),
    ({"min_len": 5000}, ValueError, "min_len: 5000 is not below"),
    ({"temperature": 0}, ValueError, "temperature: must be > 0, got 0"),
])
def test_generation_options_are_checked_together(options, error, words):
    with pytest.raises(error, match=words):
        checked(options, known=GENERATION)
    assert checked({"max_len_a": 0, "max_len_b": 3, "min_len": 3}, known=GENERATION)["max_len_b"] == 3


def test_a_lone_surrogate_is_refused_before_sentencepiece():
    with pytest.raises(ValueError, match="sentence 1: not valid Unicode at character 3"):
        sentence_list(["Ein Mann.", "Ein\ud800 Hund."])


def test_score_says_what_to_use_instead():
    with pytest.raises(NotImplementedError, match="--score-reference"):
        AutocastHubInterface.score(None, "Ein Mann.")


def test_the_tokenization_files_must_be_the_ones_the_manifest_recorded(tmp_path):
    """Without the manifest the tokenizer settings would default; another corpus's spm.model would tokenize
    differently (e.g. „Fahrrad“ -> <unk>): both are refused by name."""
    files = {"spm.model": b"model", "dict.de.txt": b"a 1\n", "dict.en.txt": b"b 1\n"}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(FileNotFoundError, match="no manifest.json in the data dir"):
        layout.check_tokenization_files(tmp_path)
    recorded = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    (tmp_path / "manifest.json").write_text(json.dumps({"outputs": recorded}))
    layout.check_tokenization_files(tmp_path)
    (tmp_path / "spm.model").write_bytes(b"another corpus's model")
    with pytest.raises(ValueError, match="spm.model is not the file .*manifest.json recorded"):
        layout.check_tokenization_files(tmp_path)
