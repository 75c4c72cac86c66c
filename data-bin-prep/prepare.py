#!/usr/bin/env python3
"""Raw parallel data -> fairseq binaries (sentencepiece, joined dictionary).

    python data-bin-prep/prepare.py iwslt14  [--raw PATH] --out DIR [--vocab-size 10000]
    python data-bin-prep/prepare.py iwslt14  --eval-only --out DIR      # dev/test XML only
    python data-bin-prep/prepare.py multi30k [--raw PATH] --out DIR [--vocab-size 8000]

Output (DIR): fairseq-preprocess binaries + dict.{de,en}.txt, spm.model/.vocab,
tok/{split}.{de,en} (tokenized lowercased text), raw/{split}.{de,en} (untouched
cased eval references), spm/{split}.{de,en} (pieces), manifest.json.
Finished steps are skipped unless --force; every file is written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402
import iwslt14  # noqa: E402
import multi30k  # noqa: E402
import text  # noqa: E402
from common import LANGS, PrepError, Steps, log, read_lines, write_lines  # noqa: E402

REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
DEFAULT_RAW = {"iwslt14": SHARED / "iwslt14-de-en", "multi30k": SHARED / "multi30k-de-en"}
DEFAULT_VOCAB = {"iwslt14": 10000, "multi30k": 8000}
EVAL_SPLITS = ("valid", "test", "test1")


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints usage too)
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="prepare.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = p.add_subparsers(dest="corpus", required=True, metavar="{iwslt14,multi30k}",
                           parser_class=_Parser)

    def common_opts(sp, corpus):
        default_raw = DEFAULT_RAW[corpus]
        sp.add_argument(
            "--raw", type=Path, default=default_raw if default_raw.exists() else None,
            help=f"raw release (default: {default_raw} when it exists)"
            + (" -- a directory, or the release's de-en.tgz" if corpus == "iwslt14" else ""),
        )
        sp.add_argument("--out", type=Path, default=REPO / "data-bin" / f"{corpus}.de-en",
                        help="output directory (default: %(default)s)")
        sp.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB[corpus],
                        help="joint sentencepiece vocabulary size (default: %(default)s)")
        sp.add_argument("--workers", type=int, default=common.default_workers(),
                        help="processes for tokenization / threads for spm / fairseq "
                             "workers (default: all cores = %(default)s)")
        sp.add_argument("--force", action="store_true", help="redo finished steps")

    sp = sub.add_parser("iwslt14", help="IWSLT'14 De-En (prepare-iwslt14.sh split)")
    common_opts(sp, "iwslt14")
    sp.add_argument("--url", default=iwslt14.URL,
                    help="where to download de-en.tgz when --raw lacks the training files "
                         "(default: %(default)s)")
    sp.add_argument("--eval-only", action="store_true",
                    help="only the dev/test XML -> tok/test, raw/test (no train, spm, binaries); "
                         "reports agreement with RAW/tokenized/test.* when present")
    sp.add_argument("--no-count-check", action="store_true",
                    help="warn instead of failing when the standard release does not give "
                         f"{iwslt14.STANDARD_COUNTS}")
    sp = sub.add_parser("multi30k", help="Multi30k task 1 De-En")
    common_opts(sp, "multi30k")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no tqdm monitor thread: tokenization forks worker processes
    try:
        if args.vocab_size < 8:
            raise PrepError(f"--vocab-size must be at least 8, got {args.vocab_size}")
        if args.workers < 1:
            raise PrepError(f"--workers must be at least 1, got {args.workers}")
        common.ensure_dir(args.out)
        common.remove_stale_tmp(args.out)
        if args.corpus == "iwslt14":
            manifest = prepare_iwslt14(args)
        else:
            manifest = prepare_multi30k(args)
    except PrepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (no partial output is left looking finished)", file=sys.stderr)
        return 130
    print_summary(manifest)
    return 0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _paths(out: Path, kind: str, splits, langs=LANGS) -> list[Path]:
    return [out / kind / f"{s}.{l}" for s in splits for l in langs]


def _hash_inputs(files: dict[str, Path]) -> dict[str, dict]:
    return {
        name: {"path": str(p), "sha256": common.sha256_file(p)} for name, p in sorted(files.items())
    }


def _hashes(paths) -> dict[str, str]:
    return {str(p): common.sha256_file(p) for p in paths}


def _tokenize_pair(lines: dict[str, list[str]], corpus: str, workers: int, what: str):
    return {
        l: text.tokenize_lines(lines[l], l, corpus, workers, desc=f"tokenize {what}.{l}")
        for l in LANGS
    }


def _check_pair(a: list, b: list, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise PrepError(f"line-count mismatch: {name_a} has {len(a)} lines, {name_b} has {len(b)}")


def _fidelity(out: Path, refs: dict[str, Path | None], split: str) -> dict:
    """Agreement of tok/{split}.{l} with a reference tokenization."""
    report = {}
    for l, ref in refs.items():
        ours_p = out / "tok" / f"{split}.{l}"
        if ref is None or not ours_p.is_file():
            continue
        r = common.compare_lines(read_lines(ours_p), read_lines(ref))
        r["reference"] = str(ref)
        report[l] = r
    return report


def _finish(args, out: Path, steps: Steps, splits: list[str], corpus: str) -> dict:
    """spm training, encoding, fairseq-preprocess (shared by both corpora)."""
    train_tok = _paths(out, "tok", ["train"])
    spm_model = out / "spm.model"
    spm_info = {}

    def do_spm():
        spm_info["options"] = common.train_spm(train_tok, out, args.vocab_size, args.workers)

    steps.run(
        "spm",
        {"inputs": _hashes(train_tok), "vocab_size": args.vocab_size, "options": common.SPM_DEFAULTS},
        [out / "spm.model", out / "spm.vocab"],
        do_spm,
    )

    tok_files = _paths(out, "tok", splits)
    spm_files = _paths(out, "spm", splits)

    def do_encode():
        from tqdm import tqdm

        for src, dst in tqdm(list(zip(tok_files, spm_files)), desc="spm encode", leave=False):
            common.spm_encode_file(spm_model, src, dst, args.workers)

    steps.run("encode", {"model": common.sha256_file(spm_model), "inputs": _hashes(tok_files)},
              spm_files, do_encode)

    tests = [s for s in splits if s.startswith("test")]
    bin_files = [
        out / f"{s}.de-en.{l}.{ext}" for s in splits for l in LANGS for ext in ("bin", "idx")
    ] + [out / f"dict.{l}.txt" for l in LANGS]

    def do_bin():
        common.fairseq_preprocess(
            out, out / "spm" / "train", out / "spm" / "valid", [out / "spm" / t for t in tests],
            args.workers,
        )

    steps.run("binarize", {"inputs": _hashes(spm_files), "tests": tests}, bin_files, do_bin)
    return {"spm_files": spm_files, "bin_files": bin_files}


def _manifest(args, out: Path, corpus: str, split_sources: dict, inputs: dict, extra: dict,
              t0: float, steps: Steps) -> dict:
    path = out / "manifest.json"
    if not steps.ran and path.is_file() and not args.force:
        try:  # nothing changed: keep the manifest of the run that made the outputs
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("corpus") == corpus and old.get("mode") == (
                    "eval-only" if getattr(args, "eval_only", False) else "full"):
                log("[skip] manifest: outputs unchanged")
                old["steps"] = {"ran": [], "skipped": steps.skipped}
                old["elapsed_s"] = round(time.time() - t0, 1)
                return old
        except ValueError:
            pass
    splits = {}
    rows = []
    for s, source in split_sources.items():
        n = len(read_lines(out / "tok" / f"{s}.de"))
        splits[s] = {"source": source, "lines": n}
        row = {"split": s, "source": source if len(source) < 40 else source[:37] + "...", "lines": n}
        for l in LANGS:
            row[f"tok.{l}"] = common.count_tokens(out / "tok" / f"{s}.{l}")
            sp = out / "spm" / f"{s}.{l}"
            row[f"spm.{l}"] = common.count_tokens(sp) if sp.is_file() else "-"
        rows.append(row)
    skip = {"manifest.json"}
    outputs = {
        str(p.relative_to(out)): common.sha256_file(p)
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and p.name not in skip
        and not any(part.startswith(".") for part in p.relative_to(out).parts)
        and p.relative_to(out).parts[0] != "orig"
    }
    tok_cfg = dict(text.SETTINGS[corpus])
    manifest = {
        "corpus": corpus,
        "mode": "eval-only" if getattr(args, "eval_only", False) else "full",
        "splits": splits,
        "vocab_size": None if getattr(args, "eval_only", False) else args.vocab_size,
        "spm_model_type": None if getattr(args, "eval_only", False) else common.SPM_DEFAULTS["model_type"],
        "spm_options": None if getattr(args, "eval_only", False) else common.SPM_DEFAULTS,
        "tokenizer": tok_cfg,
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in sorted(vars(args).items())
        },
        **extra,
        "inputs": inputs,
        "outputs": outputs,
        "counts": rows,
        "versions": common.versions(),
        "steps": {"ran": steps.ran, "skipped": steps.skipped},
        "elapsed_s": round(time.time() - t0, 1),
        "created": common.now(),
    }
    common.write_json(out / "manifest.json", manifest)
    return manifest


def print_summary(manifest: dict) -> None:
    cols = ["split", "source", "lines", "tok.de", "tok.en", "spm.de", "spm.en"]
    print(common.format_table(manifest["counts"], cols))
    for split, rep in manifest.get("fidelity", {}).items():
        for l, r in rep.items():
            print(f"agreement tok/{split}.{l} vs {r['reference']}: "
                  f"{r['identical']}/{r['lines']} identical lines ({100 * r['share']:.2f}%)")
    print(f"manifest: {manifest['options']['out']}/manifest.json "
          f"({manifest['elapsed_s']} s; ran: {', '.join(manifest['steps']['ran']) or 'nothing'})")


# --------------------------------------------------------------------------
# IWSLT'14
# --------------------------------------------------------------------------


def prepare_iwslt14(args) -> dict:
    t0 = time.time()
    out = args.out
    steps = Steps(out, args.force)
    files, origin = iwslt14.obtain_release(args.raw, out, args.url, args.eval_only)
    log(f"IWSLT'14 release: {origin}")
    inputs = _hash_inputs(files)
    standard = iwslt14.is_standard(files)
    settings_key = {"tokenizer": text.SETTINGS["iwslt14"]}

    # ---- test = dev2010 + dev2012 + tst2010 + tst2011 + tst2012 -----------
    test_sets = {}

    def do_test():
        per = {l: [] for l in LANGS}
        raws = {l: [] for l in LANGS}
        for s in iwslt14.TEST_SETS:
            segs = {}
            for l in LANGS:
                name = iwslt14.xml_name(s, l)
                segs[l] = iwslt14.extract_segs(read_lines(files[name]))
            _check_pair(segs["de"][0], segs["en"][0], str(files[iwslt14.xml_name(s, "de")]),
                        str(files[iwslt14.xml_name(s, "en")]))
            for l in LANGS:
                per[l] += segs[l][0]
                raws[l] += segs[l][1]
        tok = _tokenize_pair(per, "iwslt14", args.workers, "test")
        for l in LANGS:
            write_lines(out / "raw" / f"test.{l}", raws[l])
            write_lines(out / "tok" / f"test.{l}", tok[l])

    test_inputs = {k: v["sha256"] for k, v in inputs.items() if k.endswith(".xml")}
    steps.run("test-text", {"inputs": test_inputs, **settings_key},
              _paths(out, "tok", ["test"]) + _paths(out, "raw", ["test"]), do_test)
    for s in iwslt14.TEST_SETS:  # per-set line counts, for per-set evaluation
        test_sets[s] = sum("<seg id" in l for l in read_lines(files[iwslt14.xml_name(s, "de")]))

    # ---- train / valid ---------------------------------------------------
    clean_stats = {}
    if not args.eval_only:
        def do_train():
            lines = {}
            for l in LANGS:
                lines[l] = iwslt14.filter_train(read_lines(files[iwslt14.TRAIN_FILES[l]]))
            _check_pair(lines["de"], lines["en"], str(files[iwslt14.TRAIN_FILES["de"]]) + " (after tag filtering)",
                        str(files[iwslt14.TRAIN_FILES["en"]]))
            # The script cleans the tokenized *cased* text, then lowercases. Lowercasing
            # never creates or removes whitespace, so cleaning the tokenized+lowercased
            # text keeps exactly the same pairs and gives the same lines.
            tok = _tokenize_pair(lines, "iwslt14", args.workers, "train")
            keep, de_c, en_c = iwslt14.clean_corpus(
                tok["de"], tok["en"], iwslt14.CLEAN["ratio"], iwslt14.CLEAN["min"],
                iwslt14.CLEAN["max"], iwslt14.CLEAN["max_word_length"])
            clean_stats.update(before=len(tok["de"]), after=len(keep))
            cleaned = {"de": de_c, "en": en_c}
            tr, va = iwslt14.split_valid(len(keep))
            for l in LANGS:
                write_lines(out / "raw" / f"valid.{l}", (lines[l][keep[i]].strip() for i in va))
                write_lines(out / "tok" / f"valid.{l}", (cleaned[l][i] for i in va))
                write_lines(out / "tok" / f"train.{l}", (cleaned[l][i] for i in tr))

        train_inputs = {k: v["sha256"] for k, v in inputs.items() if k.startswith("train.")}
        steps.run("train-text", {"inputs": train_inputs, "clean": iwslt14.CLEAN,
                                 "every": iwslt14.VALID_EVERY, **settings_key},
                  _paths(out, "tok", ["train", "valid"]) + _paths(out, "raw", ["valid"]), do_train)

    splits = ["test"] if args.eval_only else ["train", "valid", "test"]
    counts = {s: len(read_lines(out / "tok" / f"{s}.de")) for s in splits}
    for s, n in counts.items():
        if counts[s] != len(read_lines(out / "tok" / f"{s}.en")):
            raise PrepError(f"line-count mismatch between {out}/tok/{s}.de and {s}.en")
        expected = iwslt14.STANDARD_COUNTS[s]
        if n != expected:
            msg = f"{s} has {n} lines, the standard IWSLT'14 split has {expected}"
            if standard and not args.no_count_check:
                raise PrepError(msg + " (standard release detected; --no-count-check to accept)")
            log(f"warning: {msg}" + ("" if standard else " (not the standard release)"))

    if not args.eval_only:
        _finish(args, out, steps, splits, "iwslt14")

    raw_root = args.raw if args.raw is not None and Path(args.raw).is_dir() else None
    fidelity = {}
    if raw_root is not None:
        refs = {l: common.find_file([raw_root / "tokenized", raw_root], f"test.{l}") for l in LANGS}
        if all(refs.values()):
            fidelity["test"] = _fidelity(out, refs, "test")
        refs = {l: common.find_file([raw_root / "tokenized", raw_root], f"valid.{l}") for l in LANGS}
        if all(refs.values()) and not args.eval_only:
            fidelity["valid"] = _fidelity(out, refs, "valid")

    sources = {
        "train": "train.tags.de-en, cleaned, lines NR%23!=0",
        "valid": "train.tags.de-en, cleaned, lines NR%23==0",
        "test": "+".join(iwslt14.TEST_SETS),
    }
    extra = {
        "release": origin,
        "standard_release": standard,
        "test_sets": test_sets,
        "cleaning": {**iwslt14.CLEAN, "valid_every": iwslt14.VALID_EVERY, **clean_stats},
        "fidelity": fidelity,
    }
    return _manifest(args, out, "iwslt14", {s: sources[s] for s in splits}, inputs, extra, t0, steps)


# --------------------------------------------------------------------------
# Multi30k
# --------------------------------------------------------------------------


def prepare_multi30k(args) -> dict:
    t0 = time.time()
    out = args.out
    if args.raw is None:
        raise PrepError(f"no --raw given and the default {DEFAULT_RAW['multi30k']} does not exist")
    steps = Steps(out, args.force)
    files = multi30k.locate(args.raw)
    inputs = _hash_inputs({p.name: p for p in files.values()})
    splits = list(multi30k.SPLITS)
    dropped = {}

    def do_text():
        data = {}  # read and check every input before writing anything
        for split, release in multi30k.SPLITS.items():
            data[split] = {l: read_lines(files[(release, l)]) for l in LANGS}
            _check_pair(data[split]["de"], data[split]["en"],
                        str(files[(release, "de")]), str(files[(release, "en")]))
        for split, lines in data.items():
            tok = _tokenize_pair(lines, "multi30k", args.workers, split)
            if split == "train":
                keep, tok["de"], tok["en"] = multi30k.drop_empty(tok["de"], tok["en"])
                dropped["train"] = len(lines["de"]) - len(keep)
            for l in LANGS:
                if split != "train":
                    write_lines(out / "raw" / f"{split}.{l}", lines[l])
                write_lines(out / "tok" / f"{split}.{l}", tok[l])

    steps.run("text", {"inputs": {k: v["sha256"] for k, v in inputs.items()}, "tokenizer": text.SETTINGS["multi30k"], "splits": multi30k.SPLITS},
              _paths(out, "tok", splits) + _paths(out, "raw", splits[1:]), do_text)
    for s in splits:
        n = len(read_lines(out / "tok" / f"{s}.de"))
        if n != multi30k.STANDARD_COUNTS[s]:
            log(f"warning: {s} has {n} lines, the Multi30k release has {multi30k.STANDARD_COUNTS[s]}")

    _finish(args, out, steps, splits, "multi30k")

    fidelity = {}
    for split, release in multi30k.SPLITS.items():
        refs = {l: multi30k.reference(args.raw, release, l) for l in LANGS}
        if all(refs.values()):
            fidelity[split] = _fidelity(out, refs, split)
    extra = {"release": str(args.raw), "fidelity": fidelity,
             "cleaning": {"drop_empty_pairs": True, **({"dropped": dropped} if dropped else {})}}
    return _manifest(args, out, "multi30k", dict(multi30k.SPLITS), inputs, extra, t0, steps)


if __name__ == "__main__":
    sys.exit(main())
