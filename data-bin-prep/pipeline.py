"""The tail every corpus recipe shares: its outputs' paths, parallel tokenization of a de/en pair, sentencepiece
training and encoding, fairseq-preprocess, the manifest and the printed summary.

A recipe (iwslt14.py, multi30k.py) writes DIR/tok/ and DIR/raw/, then calls finish() and write_manifest().
A sentence longer than the models' positions (datadir.values.MAX_POSITIONS, EOS included) is truncated to them in
DIR/spm/ (what is binarized), with a warning; manifest.json["truncated"] lists the lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import common
import outdir
import text
from clitools.files import read_lines, sha256_file
from common import PrepError, Steps, log, write_lines
from datadir import layout, values
from datadir.layout import LANGS
from datadir.lines import has_text

SPM_DEFAULTS = {
    "model_type": "bpe",
    "character_coverage": 1.0,
    # every training sentence, in file order: deterministic for a given input
    "input_sentence_size": 0,
    "shuffle_input_sentence": False,
    "hard_vocab_limit": False,  # tiny corpora (tests) may not reach vocab_size
    "max_sentence_length": 65536,
    "split_digits": False,
}


def paths(out: Path, kind: str, splits, langs=LANGS) -> list[Path]:
    """DIR/KIND/SPLIT.LANG for every split and language (KIND: layout.TOK, RAW or SPM)."""
    return [layout.text_file(out, kind, s, l) for s in splits for l in langs]


def hash_inputs(files: dict[str, Path]) -> dict[str, dict]:
    return {name: {"path": str(p), "sha256": sha256_file(p)} for name, p in sorted(files.items())}


def hashes(files) -> dict[str, str]:
    return {str(p): sha256_file(p) for p in files}


def tokenize_pair(lines: dict[str, list[str]], settings: dict, workers: int, what: str):
    return {l: text.tokenize_lines(lines[l], l, settings, workers, desc=f"tokenize {what}.{l}") for l in LANGS}


def check_pair(a: list, b: list, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise PrepError(f"line-count mismatch: {name_a} has {len(a)} lines, {name_b} has {len(b)}")


def fidelity(out: Path, refs: dict[str, Path | None], split: str) -> dict:
    """Agreement of tok/{split}.{l} with a reference tokenization."""
    report = {}
    for l, ref in refs.items():
        ours = layout.tok_file(out, split, l)
        if ref is None or not ours.is_file():
            continue
        r = common.compare_lines(read_lines(ours), read_lines(ref))
        r["reference"] = str(ref)
        report[l] = r
    return report


def train_spm(inputs: Sequence[Path], out_dir: Path, vocab_size: int, threads: int) -> dict:
    """Train one joint sentencepiece model; writes OUT/spm.model and OUT/spm.vocab."""
    import sentencepiece as spm

    for p in inputs:
        if not has_text(read_lines(p)):
            raise PrepError(f"{p}: no training text (every training pair was empty or cleaned away)")
    tmpdir = outdir.run_tmp_dir(out_dir, "spm")
    # sentencepiece splits its input on commas: the inputs relative to its folder (../tok/train.de), free of OUT's
    # name, so that an OUT with a comma is read right (and the model records the same paths wherever OUT is)
    inputs = ",".join(relative_to(p, tmpdir) for p in inputs)
    try:
        options = dict(SPM_DEFAULTS, vocab_size=int(vocab_size), num_threads=int(threads))
        # from inside this run's own folder, so the model records the same prefix ("spm") whichever run made it
        try:
            with contextlib.chdir(tmpdir):
                spm.SentencePieceTrainer.train(input=inputs, model_prefix="spm", minloglevel=2, **options)
        except (RuntimeError, OSError) as e:
            raise PrepError(f"sentencepiece training failed: {str(e).splitlines()[0]}") from None
        check_spm_model(tmpdir / layout.SPM_MODEL, out_dir / layout.SPM_MODEL)
        for name in (layout.SPM_VOCAB, layout.SPM_MODEL):
            outdir.move_in(tmpdir / name, out_dir / name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return options


def relative_to(path: Path, folder: Path) -> str:
    """path as seen from folder (a run's scratch folder in OUT, where a tool runs): ../tok/train.de; a PrepError for
    a comma even there (a tok/ linked to a folder with a comma), which the tools would split the path at."""
    relative = os.path.relpath(Path(path).resolve(), Path(folder).resolve())
    if "," in relative:
        raise PrepError(f"{path}: a comma in its path, where sentencepiece and fairseq-preprocess split paths")
    return relative


def check_spm_model(model: Path, final: Path) -> None:
    """A PrepError naming the model's final path unless sentencepiece's model loads: on a full disk sentencepiece
    writes an empty or cut model and says nothing."""
    import sentencepiece as spm

    size = model.stat().st_size if model.is_file() else 0
    try:
        if size == 0:
            raise RuntimeError("empty")
        spm.SentencePieceProcessor(model_file=str(model))
    except (RuntimeError, OSError):
        raise PrepError(f"cannot write {final}: sentencepiece wrote an incomplete model ({size} bytes; is the disk "
                        f"full?)") from None


def spm_encode_file(model: Path, src: Path, dst: Path, threads: int) -> list[int]:
    """Encode a tokenized text file into space-separated pieces, each line cut to the models' positions (EOS
    included); returns the numbers of the lines cut, after a warning naming them."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    lines = read_lines(src)
    pieces = sp.encode(lines, out_type=str, num_threads=int(threads)) if lines else []
    keep = values.MAX_POSITIONS - 1  # + EOS
    cut = [i + 1 for i, p in enumerate(pieces) if len(p) > keep]
    if cut:
        log("warning: " + values.truncated(f"{src} {values.listing(cut)}"))
    write_lines(dst, (" ".join(p[:keep]) for p in pieces))
    return cut


def fairseq_preprocess(out: Path, trainpref: Path, validpref: Path, testprefs: Sequence[Path],
                       workers: int) -> list[Path]:
    """Binarize with a joined dictionary; fairseq files land in ``out``.

    Runs in a temporary directory and moves the results in afterwards, so an interrupted run leaves no
    finished-looking binaries.
    """
    tmpdir = outdir.run_tmp_dir(out, "bin")
    # run inside this run's own folder with --destdir ., so preprocess.log is the same whichever run made it
    # the prefixes relative to that folder, as for sentencepiece: fairseq splits --testpref on commas
    cmd = [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", layout.SRC, "--target-lang", layout.TGT,
           "--trainpref", relative_to(trainpref, tmpdir), "--validpref", relative_to(validpref, tmpdir),
           "--testpref", ",".join(relative_to(p, tmpdir) for p in testprefs), "--destdir", ".",
           "--joined-dictionary", "--workers", str(max(1, int(workers)))]
    try:
        log("  $ " + " ".join(cmd[2:]))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmpdir)
        if proc.returncode != 0:
            lines = [l for l in proc.stdout.splitlines() if l.strip()]
            last = lines[-1].strip() if lines else "no output"
            raise PrepError(f"fairseq-preprocess failed (exit {proc.returncode}): {last[:300]}")
        produced = sorted(p for p in tmpdir.iterdir() if p.is_file())
        moved = []
        # dictionaries last: binaries + dicts are only "done" with the stamp anyway
        for p in sorted(produced, key=lambda p: p.name.startswith("dict.")):
            outdir.move_in(p, out / p.name)
            moved.append(out / p.name)
        return moved
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def finish(args, out: Path, steps: Steps, splits: list[str]) -> None:
    """sentencepiece training, encoding, fairseq-preprocess of tok/ (the steps spm, encode, binarize)."""
    train_tok = paths(out, layout.TOK, ["train"])
    spm_model = layout.spm_model(out)
    steps.run("spm", {"inputs": hashes(train_tok), "vocab_size": args.vocab_size, "options": SPM_DEFAULTS},
              [spm_model, out / layout.SPM_VOCAB], lambda: train_spm(train_tok, out, args.vocab_size, args.workers))

    tok_files = paths(out, layout.TOK, splits)
    spm_files = paths(out, layout.SPM, splits)

    def do_encode():
        from tqdm import tqdm

        cut = {dst.name: spm_encode_file(spm_model, src, dst, args.workers)
               for src, dst in tqdm(list(zip(tok_files, spm_files)), desc="spm encode", leave=False)}
        return {"truncated": {name: lines for name, lines in cut.items() if lines}}  # kept in the step's stamp

    steps.run("encode", {"model": sha256_file(spm_model), "inputs": hashes(tok_files)}, spm_files, do_encode)

    tests = [s for s in splits if s.startswith("test")]
    bin_files = [layout.binary_file(out, s, l, ext) for s in splits for l in LANGS for ext in ("bin", "idx")]
    bin_files += [layout.dictionary_file(out, l) for l in LANGS]
    spm_prefix = lambda split: out / layout.SPM / split  # noqa: E731
    steps.run("binarize", {"inputs": hashes(spm_files), "tests": tests}, bin_files,
              lambda: fairseq_preprocess(out, spm_prefix("train"), spm_prefix("valid"),
                                         [spm_prefix(t) for t in tests], args.workers))


def _mode(args) -> str:
    return "eval-only" if getattr(args, "eval_only", False) else "full"


def write_manifest(args, out: Path, tokenizer: dict, split_sources: dict, inputs: dict, extra: dict,
                   t0: float, steps: Steps) -> dict:
    """DIR/manifest.json (kept as it is when no step ran); returns it."""
    path = layout.manifest_file(out)
    if not steps.ran and path.is_file() and not args.force:
        try:  # nothing changed: keep the manifest of the run that made the outputs
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("corpus") == args.corpus and old.get("mode") == _mode(args):
                log("[skip] manifest: outputs unchanged")
                old["steps"] = {"ran": [], "skipped": steps.skipped}
                old["elapsed_s"] = round(time.time() - t0, 1)
                return old
        except ValueError:
            pass
    splits, rows = {}, []
    for s, source in split_sources.items():
        n = len(read_lines(layout.tok_file(out, s, layout.SRC)))
        splits[s] = {"source": source, "lines": n}
        row = {"split": s, "source": source if len(source) < 40 else source[:37] + "...", "lines": n}
        for l in LANGS:
            row[f"tok.{l}"] = common.count_tokens(layout.tok_file(out, s, l))
            sp = layout.text_file(out, layout.SPM, s, l)
            row[f"spm.{l}"] = common.count_tokens(sp) if sp.is_file() else "-"
        rows.append(row)
    outputs = {
        str(p.relative_to(out)): sha256_file(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != layout.MANIFEST
        and not any(part.startswith(".") for part in p.relative_to(out).parts)
        and p.relative_to(out).parts[0] != "orig"
    }
    eval_only = _mode(args) == "eval-only"
    manifest = {
        "corpus": args.corpus,
        "mode": _mode(args),
        "splits": splits,
        "vocab_size": None if eval_only else args.vocab_size,
        "spm_model_type": None if eval_only else SPM_DEFAULTS["model_type"],
        "spm_options": None if eval_only else SPM_DEFAULTS,
        "tokenizer": dict(tokenizer),
        "max_positions": values.MAX_POSITIONS,
        "truncated": steps.result("encode").get("truncated", {}),  # spm/ file -> lines cut to max_positions
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())},
        **extra,
        "inputs": inputs,
        "outputs": outputs,
        "counts": rows,
        "versions": common.versions(),
        "steps": {"ran": steps.ran, "skipped": steps.skipped},
        "elapsed_s": round(time.time() - t0, 1),
        "created": common.now(),
    }
    common.write_json(path, manifest)
    return manifest


def print_summary(manifest: dict) -> None:
    cols = ["split", "source", "lines", "tok.de", "tok.en", "spm.de", "spm.en"]
    print(common.format_table(manifest["counts"], cols))
    for split, rep in manifest.get("fidelity", {}).items():
        for l, r in rep.items():
            print(f"agreement tok/{split}.{l} vs {r['reference']}: "
                  f"{r['identical']}/{r['lines']} identical lines ({100 * r['share']:.2f}%)")
    print(f"manifest: {manifest['options']['out']}/{layout.MANIFEST} "
          f"({manifest['elapsed_s']} s; ran: {', '.join(manifest['steps']['ran']) or 'nothing'})")
