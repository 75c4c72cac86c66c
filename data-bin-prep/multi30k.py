"""Multi30k task 1, De-En: the released splits, tokenized like the release's own ``tok/*.lc.norm.tok.*`` files
(the release's ``scripts/task1-tokenize.sh``: ``lowercase.perl | normalize-punctuation.perl -l L |
tokenizer.perl -l L``); the only cleaning is dropping training pairs with an empty side. Then the shared tail
(pipeline.py): sentencepiece, fairseq binaries, manifest.
"""

from __future__ import annotations

import time
from pathlib import Path

import pipeline
from clitools.files import read_lines
from common import SHARED, PrepError, Steps, find_file, log, read_input, write_lines
from datadir import layout
from datadir.layout import LANGS

HELP = "Multi30k task 1 De-En"
RAW_DIR = "multi30k-de-en"  # the default --raw, under ../shared/data
RAW_HELP = ""
VOCAB_SIZE = 8000

# fairseq split name -> release split name
SPLITS = {
    "train": "train",
    "valid": "val",
    "test": "test_2016_flickr",
    "test1": "test_2017_flickr",
}
STANDARD_COUNTS = {"train": 29000, "valid": 1014, "test": 1000, "test1": 1000}

# as datadir.moses settings (recorded in manifest.json). The release used an older Moses (3a0631a) that does not
# split the final period of e.g. "st.", so split_final_period is off.
TOKENIZER = {
    "pipeline": ["lowercase", "normalize_punct", "moses_tokenize"],
    "normalize_punct": True,
    "normalize_punct_options": {
        "penn": True,
        "norm_quote_commas": True,
        "norm_numbers": True,
        "pre_replace_unicode_punct": False,
        "post_remove_control_chars": False,
        "perl_parity": True,
    },
    # normalize-punctuation.perl sees each line with its "\n": its German rule
    # s/(\.+)"(\s*[^<])/"$1$2/ then also moves a sentence-final period
    # after the closing quote (`fabrik."` -> `fabrik".`). Reproduced by
    # normalizing line + "\n" and removing the "\n" again.
    "normalize_with_newline": True,
    "escape": True,
    "aggressive_dash_splits": False,
    "lowercase": True,
    "lowercase_first": True,
    "split_final_period": False,
    "detokenize": {"unescape": True},
    "calls": [
        "s = s.lower()",
        "s = MosesPunctNormalizer(lang, perl_parity=True).normalize(s + '\\n').removesuffix('\\n')",
        "s = MosesTokenizer(lang).tokenize(s, aggressive_dash_splits=False, escape=True, return_str=True)",
    ],
    "detokenize_call": "MosesDetokenizer(lang).detokenize(s.split(), unescape=True, return_str=True)",
}


def add_arguments(parser) -> None:
    """This corpus has no options of its own."""


def prepare(args) -> dict:
    """The whole recipe into args.out; returns the manifest."""
    t0 = time.time()
    out = args.out
    if args.raw is None:
        raise PrepError(f"no --raw given and the default {SHARED / RAW_DIR} does not exist")
    steps = Steps(out, args.force)
    files = locate(args.raw)
    inputs = pipeline.hash_inputs({p.name: p for p in files.values()})
    splits = list(SPLITS)
    dropped = {}

    def do_text():
        data = {}  # read and check every input before writing anything
        for split, release in SPLITS.items():
            data[split] = {l: read_input(files[(release, l)]) for l in LANGS}
            pipeline.check_pair(data[split]["de"], data[split]["en"],
                                str(files[(release, "de")]), str(files[(release, "en")]))
        for split, lines in data.items():
            tok = pipeline.tokenize_pair(lines, TOKENIZER, args.workers, split)
            if split == "train":
                keep, tok["de"], tok["en"] = drop_empty(tok["de"], tok["en"])
                dropped["train"] = len(lines["de"]) - len(keep)
            for l in LANGS:
                if split != "train":
                    write_lines(layout.raw_file(out, split, l), lines[l])
                write_lines(layout.tok_file(out, split, l), tok[l])

    steps.run("text", {"inputs": {k: v["sha256"] for k, v in inputs.items()}, "tokenizer": TOKENIZER,
                       "splits": SPLITS},
              pipeline.paths(out, layout.TOK, splits) + pipeline.paths(out, layout.RAW, splits[1:]), do_text)
    for s in splits:
        n = len(read_lines(layout.tok_file(out, s, "de")))
        if n != STANDARD_COUNTS[s]:
            log(f"warning: {s} has {n} lines, the Multi30k release has {STANDARD_COUNTS[s]}")

    pipeline.finish(args, out, steps, splits)

    fidelity = {}
    for split, release in SPLITS.items():
        refs = {l: reference(args.raw, release, l) for l in LANGS}
        if all(refs.values()):
            fidelity[split] = pipeline.fidelity(out, refs, split)
    extra = {"release": str(args.raw), "fidelity": fidelity,
             "cleaning": {"drop_empty_pairs": True, **({"dropped": dropped} if dropped else {})}}
    return pipeline.write_manifest(args, out, TOKENIZER, dict(SPLITS), inputs, extra, t0, steps)


def locate(root: Path) -> dict[tuple[str, str], Path]:
    """(release split, lang) -> raw file. Missing files raise PrepError."""
    root = Path(root)
    if not root.exists():
        raise PrepError(f"--raw path does not exist: {root}")
    if not root.is_dir():
        raise PrepError(f"--raw must be a directory with the Multi30k raw files: {root}")
    files = {}
    for split in SPLITS.values():
        for lang in LANGS:
            p = find_file([root / "raw", root], f"{split}.{lang}")
            if p is None:
                raise PrepError(
                    f"missing input file: {split}.{lang}[.gz|.xz] not found in {root} or {root / 'raw'}"
                )
            files[(split, lang)] = p
    return files


def reference(root: Path, split: str, lang: str) -> Path | None:
    """The release's own tokenized file, if present (for the agreement report)."""
    root = Path(root)
    return find_file([root / "tok", root], f"{split}.lc.norm.tok.{lang}")


def drop_empty(de: list[str], en: list[str]) -> tuple[list[int], list[str], list[str]]:
    """The only cleaning for Multi30k training data: drop pairs with an empty side."""
    keep = [i for i, (a, b) in enumerate(zip(de, en)) if a.strip() and b.strip()]
    return keep, [de[i] for i in keep], [en[i] for i in keep]
