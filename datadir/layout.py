"""The file layout of a data dir (data-bin-prep/README.md): the one place that spells its file names.

    DATA/{split}.de-en.{lang}.{bin,idx}, DATA/dict.{lang}.txt   fairseq-preprocess binaries and dictionaries
    DATA/spm.model, DATA/spm.vocab                               the joint sentencepiece model
    DATA/tok/{split}.{lang}    Moses-tokenized lowercased text (the tokenized-BLEU reference)
    DATA/raw/{split}.{lang}    untouched cased sentences of the eval splits (the sacreBLEU reference)
    DATA/spm/{split}.{lang}    sentencepiece pieces (what was binarized)
    DATA/manifest.json         splits, counts, tokenizer settings, hashes, versions
"""
import json
from pathlib import Path

SRC, TGT = "de", "en"
LANGS = (SRC, TGT)
MANIFEST = "manifest.json"
SPM_MODEL = "spm.model"
SPM_VOCAB = "spm.vocab"
TOK, RAW, SPM = "tok", "raw", "spm"  # the text dirs


def text_file(data, kind, split, lang):
    """DATA/KIND/SPLIT.LANG, KIND one of TOK, RAW, SPM."""
    return Path(data) / kind / f"{split}.{lang}"


def tok_file(data, split, lang):
    return text_file(data, TOK, split, lang)


def raw_file(data, split, lang):
    return text_file(data, RAW, split, lang)


def manifest_file(data):
    return Path(data) / MANIFEST


def spm_model(data):
    return Path(data) / SPM_MODEL


def dictionary_file(data, lang):
    return Path(data) / f"dict.{lang}.txt"


def binary_prefix(data, split, lang):
    """DATA/SPLIT.de-en.LANG: + .bin / .idx are fairseq's binaries of one side of a split."""
    return Path(data) / f"{split}.{SRC}-{TGT}.{lang}"


def binary_file(data, split, lang, ext="bin"):
    return Path(data) / f"{split}.{SRC}-{TGT}.{lang}.{ext}"


def binarized_splits(data):
    """The splits with binaries, sorted."""
    return sorted({p.name.split(".")[0] for p in Path(data).glob(f"*.{SRC}-{TGT}.{SRC}.bin")})


def read_manifest(data):
    """DATA/manifest.json as a dict; {} when there is none."""
    path = manifest_file(data)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
