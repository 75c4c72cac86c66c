"""The file layout of a data dir (data-bin-prep/README.md): the one place that spells its file names.

    DATA/{split}.de-en.{lang}.{bin,idx}, DATA/dict.{lang}.txt   fairseq-preprocess binaries and dictionaries
    DATA/spm.model, DATA/spm.vocab                               the joint sentencepiece model
    DATA/tok/{split}.{lang}    Moses-tokenized lowercased text (the tokenized-BLEU reference)
    DATA/raw/{split}.{lang}    untouched cased sentences of the eval splits (the sacreBLEU reference)
    DATA/spm/{split}.{lang}    sentencepiece pieces (what was binarized)
    DATA/manifest.json         splits, counts, tokenizer settings, hashes, versions
"""
import hashlib
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


def dictionary_size(data, lang):
    """The entries of DATA/dict.LANG.txt as fairseq loads it: its 4 special symbols and one per line."""
    with open(dictionary_file(data, lang), encoding="utf-8") as f:
        return 4 + sum(1 for line in f if line.strip())


def check_dictionaries(model_state, data, checkpoint):
    """ValueError unless a checkpoint's embeddings (its model state dict) have a row per entry of DATA's
    dictionaries: a model trained on another data dir fails here, not with a tensor size mismatch in fairseq."""
    for side, lang in (("encoder", SRC), ("decoder", TGT)):
        weight = model_state.get(f"{side}.embed_tokens.weight")
        if weight is not None and weight.shape[0] != (size := dictionary_size(data, lang)):
            raise ValueError(f"checkpoint {checkpoint} was trained with a {weight.shape[0]}-word dictionary, {data} "
                             f"has {size} ({dictionary_file(data, lang).name}): not the data dir it was trained on")


def check_tokenization_files(data):
    """The files that decide how text is tokenized (spm.model, the dictionaries) checked against the sha256 that
    DATA/manifest.json recorded when the data prep wrote them: FileNotFoundError without a manifest (the tokenizer
    settings would silently default), ValueError naming a file that changed (e.g. another corpus's spm.model)."""
    manifest = read_manifest(data)
    if not manifest:
        raise FileNotFoundError(f"no {MANIFEST} in the data dir {data}: it records how the data prep tokenized "
                                f"(make one with data-bin-prep/prepare.py)")
    recorded = manifest.get("outputs") or {}
    for path in (spm_model(data), *(dictionary_file(data, lang) for lang in LANGS)):
        want = recorded.get(path.name)
        if want is not None and hashlib.sha256(path.read_bytes()).hexdigest() != want:
            raise ValueError(f"{path} is not the file {manifest_file(data)} recorded (sha256 differs): this data "
                             f"dir's tokenization files were replaced; rerun data-bin-prep/prepare.py")
