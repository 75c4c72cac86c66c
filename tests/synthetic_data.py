"""A synthetic word-for-word German -> English task as a data dir in the layout of data-bin-prep/prepare.py
(binaries, dictionaries, spm.model, tok/, raw/, manifest.json): train 400, valid 20, test 30 sentences."""
import json
import random
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent

# A word-for-word German -> English task; cased raw text with attached punctuation, like a real corpus.
LEXICON = {
    "ein": "a", "eine": "a", "der": "the", "die": "the", "das": "the", "mann": "man", "frau": "woman",
    "kind": "child", "hund": "dog", "katze": "cat", "fährt": "rides", "sieht": "sees", "hält": "holds",
    "fahrrad": "bike", "ball": "ball", "rot": "red", "blau": "blue", "groß": "big", "klein": "small",
    "und": "and", "mit": "with", "im": "in the", "park": "park", "wasser": "water", "läuft": "runs",
}


def sentence_pair(rng):
    n = rng.randint(3, 8)
    words = [rng.choice(sorted(LEXICON)) for _ in range(n)]
    de = " ".join(words)
    en = " ".join(LEXICON[w] for w in words)
    punct = rng.choice([".", ".", "!", "?"])
    return de[0].upper() + de[1:] + punct, en[0].upper() + en[1:] + punct


def make_data_dir(out, sizes=(("train", 400), ("valid", 20), ("test", 30))):
    """A data dir in the layout of data-bin-prep/prepare.py (binaries, dicts, spm.model, tok/, raw/, manifest)."""
    import sentencepiece as spm
    from sacremoses import MosesTokenizer

    rng = random.Random(0)
    out = Path(out)
    for sub in ("raw", "tok", "spm"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    toks = {lang: MosesTokenizer(lang) for lang in ("de", "en")}
    manifest = {"corpus": "synthetic", "splits": {}, "vocab_size": 120,
                "tokenizer": {"pipeline": ["lowercase", "moses_tokenize"], "normalize_punct": False, "escape": True,
                              "lowercase": True, "lowercase_first": True, "aggressive_dash_splits": False,
                              "split_final_period": False}}
    for split, n in sizes:
        pairs = [sentence_pair(rng) for _ in range(n)]
        manifest["splits"][split] = {"source": f"synthetic-{split}", "lines": n}
        for i, lang in enumerate(("de", "en")):
            raw = [p[i] for p in pairs]
            tok = [toks[lang].tokenize(s.lower(), escape=True, return_str=True) for s in raw]
            if split != "train":
                (out / "raw" / f"{split}.{lang}").write_text("\n".join(raw) + "\n")
            (out / "tok" / f"{split}.{lang}").write_text("\n".join(tok) + "\n")
    spm.SentencePieceTrainer.train(
        input=[str(out / "tok" / f"train.{l}") for l in ("de", "en")], model_prefix=str(out / "spm"),
        vocab_size=120, model_type="bpe", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    for split, _ in sizes:
        for lang in ("de", "en"):
            lines = (out / "tok" / f"{split}.{lang}").read_text().splitlines()
            (out / "spm" / f"{split}.{lang}").write_text(
                "\n".join(" ".join(sp.encode(l, out_type=str)) for l in lines) + "\n")
    subprocess.run([str(BIN / "fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
                    "--joined-dictionary", "--workers", "1", "--destdir", str(out),
                    *[a for split, _ in sizes for a in (f"--{'train' if split == 'train' else split}pref",
                                                       str(out / "spm" / split))]],
                   check=True, capture_output=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out
