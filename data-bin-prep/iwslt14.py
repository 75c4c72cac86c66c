"""IWSLT'14 De-En, mirroring fairseq's examples/translation/prepare-iwslt14.sh.

1. train.tags.de-en.{de,en}: drop lines containing ``<url>``, ``<talkid>``,
   ``<keywords>``; remove ``<title>``, ``</title>``, ``<description>``,
   ``</description>``. Dev/test XML: keep ``<seg id`` lines, strip the tags,
   ``’`` -> ``'``.
2. Moses tokenization + lowercasing (``TOKENIZER``, as
   ``tokenizer.perl -l L | lowercase.perl``).
3. clean-corpus-n.perl -ratio 1.5 ... 1 175 (on the tokenized, cased train
   text, before lowercasing -- as the script does).
4. valid = every 23rd cleaned training line, train = the rest; test =
   dev2010 + dev2012 + tst2010 + tst2011 + tst2012.
Then the shared tail (pipeline.py): sentencepiece, fairseq binaries, manifest.
The release's files and how they are found or downloaded: iwslt14_release.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Sequence

import pipeline
from clitools.files import read_lines
from common import PrepError, Steps, find_file, log, read_input, write_lines
from datadir import layout
from datadir.layout import LANGS
from iwslt14_release import TEST_SETS, TRAIN_FILES, URL, is_standard, obtain_release, xml_name

HELP = "IWSLT'14 De-En (prepare-iwslt14.sh split)"
RAW_DIR = "iwslt14-de-en"  # the default --raw, under ../shared/data
RAW_HELP = " -- a directory, or the release's de-en.tgz"
VOCAB_SIZE = 10000

STANDARD_COUNTS = {"train": 160239, "valid": 7283, "test": 6750}

CLEAN = {"ratio": 1.5, "min": 1, "max": 175, "max_word_length": 1000}
VALID_EVERY = 23

DROP_TRAIN_LINES = ("<url>", "<talkid>", "<keywords>")
STRIP_TRAIN_TAGS = ("<title>", "</title>", "<description>", "</description>")



# tokenizer.perl -l L | lowercase.perl, as datadir.moses settings (recorded in manifest.json)
TOKENIZER = {
    "pipeline": ["moses_tokenize", "lowercase"],
    "normalize_punct": False,
    "normalize_punct_options": None,
    "escape": True,
    "aggressive_dash_splits": False,
    "lowercase": True,
    "lowercase_first": False,
    # current Moses tokenizer.perl always splits a period ending the last word (sacremoses 0.2.0 does not)
    "split_final_period": True,
    "normalize_with_newline": False,
    "detokenize": {"unescape": True},
    "calls": [
        "t = MosesTokenizer(lang)  # + split_final_period, see datadir.moses",
        "s = t.tokenize(s, aggressive_dash_splits=False, escape=True, return_str=True)",
        "s = s.lower()",
    ],
    "detokenize_call": "MosesDetokenizer(lang).detokenize(s.split(), unescape=True, return_str=True)",
}


def add_arguments(parser) -> None:
    """This corpus's own options."""
    parser.add_argument("--url", default=URL,
                        help="where to download de-en.tgz when --raw lacks the training files (default: %(default)s)")
    parser.add_argument("--eval-only", action="store_true",
                        help="only the dev/test XML -> tok/test, raw/test (no train, spm, binaries); "
                             "reports agreement with RAW/tokenized/test.* when present")
    parser.add_argument("--no-count-check", action="store_true",
                        help=f"warn instead of failing when the standard release does not give {STANDARD_COUNTS}")


def prepare(args) -> dict:
    """The whole recipe into args.out; returns the manifest."""
    t0 = time.time()
    out = args.out
    steps = Steps(out, args.force)
    files, origin = obtain_release(args.raw, out, args.url, args.eval_only)
    log(f"IWSLT'14 release: {origin}")
    inputs = pipeline.hash_inputs(files)
    standard = is_standard(files)
    settings_key = {"tokenizer": TOKENIZER}

    def do_test():  # test = dev2010 + dev2012 + tst2010 + tst2011 + tst2012
        per = {l: [] for l in LANGS}
        raws = {l: [] for l in LANGS}
        for s in TEST_SETS:
            segs = {l: extract_segs(read_input(files[xml_name(s, l)])) for l in LANGS}
            pipeline.check_pair(segs["de"][0], segs["en"][0], str(files[xml_name(s, "de")]),
                                str(files[xml_name(s, "en")]))
            for l in LANGS:
                per[l] += segs[l][0]
                raws[l] += segs[l][1]
        tok = pipeline.tokenize_pair(per, TOKENIZER, args.workers, "test")
        for l in LANGS:
            write_lines(layout.raw_file(out, "test", l), raws[l])
            write_lines(layout.tok_file(out, "test", l), tok[l])

    test_inputs = {k: v["sha256"] for k, v in inputs.items() if k.endswith(".xml")}
    steps.run("test-text", {"inputs": test_inputs, **settings_key},
              pipeline.paths(out, layout.TOK, ["test"]) + pipeline.paths(out, layout.RAW, ["test"]), do_test)
    # per-set line counts, for per-set evaluation
    test_sets = {s: sum("<seg id" in l for l in read_lines(files[xml_name(s, "de")])) for s in TEST_SETS}

    clean_stats = {}
    if not args.eval_only:
        def do_train():
            lines = {l: filter_train(read_input(files[TRAIN_FILES[l]])) for l in LANGS}
            pipeline.check_pair(lines["de"], lines["en"], str(files[TRAIN_FILES["de"]]) + " (after tag filtering)",
                                str(files[TRAIN_FILES["en"]]))
            # The script cleans the tokenized *cased* text, then lowercases. Lowercasing
            # never creates or removes whitespace, so cleaning the tokenized+lowercased
            # text keeps exactly the same pairs and gives the same lines.
            tok = pipeline.tokenize_pair(lines, TOKENIZER, args.workers, "train")
            keep, de_c, en_c = clean_corpus(tok["de"], tok["en"], CLEAN["ratio"], CLEAN["min"], CLEAN["max"],
                                            CLEAN["max_word_length"])
            clean_stats.update(before=len(tok["de"]), after=len(keep))
            cleaned = {"de": de_c, "en": en_c}
            tr, va = split_valid(len(keep))
            for l in LANGS:
                write_lines(layout.raw_file(out, "valid", l), (lines[l][keep[i]].strip() for i in va))
                write_lines(layout.tok_file(out, "valid", l), (cleaned[l][i] for i in va))
                write_lines(layout.tok_file(out, "train", l), (cleaned[l][i] for i in tr))

        train_inputs = {k: v["sha256"] for k, v in inputs.items() if k.startswith("train.")}
        steps.run("train-text", {"inputs": train_inputs, "clean": CLEAN, "every": VALID_EVERY, **settings_key},
                  pipeline.paths(out, layout.TOK, ["train", "valid"]) + pipeline.paths(out, layout.RAW, ["valid"]),
                  do_train)

    splits = ["test"] if args.eval_only else ["train", "valid", "test"]
    check_counts(out, splits, standard, args.no_count_check)
    if not args.eval_only:
        pipeline.finish(args, out, steps, splits)

    raw_root = args.raw if args.raw is not None and Path(args.raw).is_dir() else None
    fidelity = {}
    if raw_root is not None:
        for split in ("test",) if args.eval_only else ("test", "valid"):
            refs = {l: find_file([raw_root / "tokenized", raw_root], f"{split}.{l}") for l in LANGS}
            if all(refs.values()):
                fidelity[split] = pipeline.fidelity(out, refs, split)

    sources = {
        "train": "train.tags.de-en, cleaned, lines NR%23!=0",
        "valid": "train.tags.de-en, cleaned, lines NR%23==0",
        "test": "+".join(TEST_SETS),
    }
    extra = {
        "release": origin,
        "standard_release": standard,
        "test_sets": test_sets,
        "cleaning": {**CLEAN, "valid_every": VALID_EVERY, **clean_stats},
        "fidelity": fidelity,
    }
    return pipeline.write_manifest(args, out, TOKENIZER, {s: sources[s] for s in splits}, inputs, extra, t0, steps)


def check_counts(out: Path, splits: list[str], standard: bool, no_count_check: bool) -> None:
    """de/en line counts agree; a split that is not the standard size fails for the standard release, else warns."""
    for s in splits:
        n = len(read_lines(layout.tok_file(out, s, "de")))
        if n != len(read_lines(layout.tok_file(out, s, "en"))):
            raise PrepError(f"line-count mismatch between {layout.tok_file(out, s, 'de')} and {s}.en")
        expected = STANDARD_COUNTS[s]
        if n != expected:
            msg = f"{s} has {n} lines, the standard IWSLT'14 split has {expected}"
            if standard and not no_count_check:
                raise PrepError(msg + " (standard release detected; --no-count-check to accept)")
            log(f"warning: {msg}" + ("" if standard else " (not the standard release)"))


def filter_train(lines: Sequence[str]) -> list[str]:
    """grep -v '<url>' | grep -v '<talkid>' | grep -v '<keywords>' | sed (strip tags)."""
    out = []
    for line in lines:
        if any(tag in line for tag in DROP_TRAIN_LINES):
            continue
        for tag in STRIP_TRAIN_TAGS:
            line = line.replace(tag, "")
        out.append(line)
    return out


_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_CLOSE = re.compile(r"\s*</seg>\s*")


def extract_segs(lines: Sequence[str]) -> tuple[list[str], list[str]]:
    """grep '<seg id' | sed (strip tags) | sed s/’/'/ .

    Returns (text for the tokenizer, untouched text with only tags/edge spaces removed).
    """
    to_tok, raw = [], []
    for line in lines:
        if "<seg id" not in line:
            continue
        line = _SEG_CLOSE.sub("", _SEG_OPEN.sub("", line))
        raw.append(line.strip())
        to_tok.append(line.replace("\u2019", "'"))
    return to_tok, raw


_WS = re.compile(r"\s+")


def _clean_ws(s: str) -> str:
    # clean-corpus-n.perl: s/\|//g; s/\s+/ /g; s/^ //; s/ $//
    return _WS.sub(" ", s.replace("|", "")).strip(" ")


def clean_corpus(
    src: Sequence[str], tgt: Sequence[str], ratio=1.5, min_len=1, max_len=175, max_word_length=1000
) -> tuple[list[int], list[str], list[str]]:
    """clean-corpus-n.perl -ratio R corpus de en out MIN MAX (no factors, no -lc).

    Returns the kept 0-based indices and the whitespace-normalised kept lines.
    """
    if len(src) != len(tgt):
        raise PrepError(f"clean: {len(src)} de lines vs {len(tgt)} en lines")
    long_word = re.compile(r"[^\s|]{%d}" % (max_word_length + 1))
    keep, out_s, out_t = [], [], []
    for i, (f, e) in enumerate(zip(src, tgt)):
        f, e = _clean_ws(f), _clean_ws(e)
        if not f or not e:
            continue
        fc, ec = len(f.split(" ")), len(e.split(" "))
        if ec > max_len or fc > max_len or ec < min_len or fc < min_len:
            continue
        if ec / fc > ratio or fc / ec > ratio:
            continue
        if long_word.search(e) or long_word.search(f):
            continue
        keep.append(i)
        out_s.append(f)
        out_t.append(e)
    return keep, out_s, out_t


def split_valid(n: int, every: int = VALID_EVERY) -> tuple[list[int], list[int]]:
    """awk NR%23==0 -> valid, else train (NR is 1-based). Returns (train_idx, valid_idx)."""
    valid = [i for i in range(n) if (i + 1) % every == 0]
    train = [i for i in range(n) if (i + 1) % every != 0]
    return train, valid
