"""cgc_fairseq.hub's `moses_lc` tokenizer: the data preparation's tokenization, from the manifest's settings.
(Translation through from_pretrained is tested in test_scripts.py, on the model trained there.)"""
import importlib
import json
from types import SimpleNamespace

import pytest
from text import tokenize_lines  # data-bin-prep/text.py (pytest's pythonpath)

from cgc_fairseq.hub import MosesLowercaseTokenizer, from_pretrained
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
