"""Translate a split with fairseq-generate and score it: tokenized BLEU, detokenized sacreBLEU, chrF.

    python -m scripts.evaluate --checkpoint runs/small/average.pt --data data-bin/multi30k.de-en --split test \\
        --out runs/small/eval/average.test

Decoding: fairseq-generate, beam 4, length penalty 1 (--beam, --lenpen; other fairseq-generate flags pass through),
sentencepiece removed (--post-process sentencepiece), hypotheses put back in input order (by sentence id).
Scores (sacrebleu, with signatures):
  bleu_tokenized  the lowercased Moses-tokenized hypothesis vs DATA/tok/SPLIT.en, tokenize=none: the number
                  papers report on IWSLT'14 (LightConv 34.8, DynamicConv 35.2, CGC 35.21)
  sacrebleu       the sacremoses-detokenized hypothesis vs the untouched DATA/raw/SPLIT.en, lowercase=True
  chrf            chrF on the same pair as sacrebleu, lowercase=True
Writes OUT/results.json (scores, signatures, corpus, split, arch, parameters, checkpoint, decode time, versions),
OUT/hyp.tok.en and OUT/hyp.detok.en (one line per source line, input order) and OUT/generate.txt (fairseq's
output). Every file is written under a temporary name and renamed when complete; results.json comes last. When
fairseq-generate fails, its output is left as OUT/generate.txt.failed and nothing else is written.
Sentences longer than the model's positions (1024 tokens with EOS for every arch here): a source is truncated to
them (fairseq's --truncate-source) and a reference that long, which fairseq-generate cannot take, gets an empty
hypothesis; both with a warning, listed in results.json["over_long"]. A checkpoint trained on another data dir is
refused (its dictionary sizes).
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.evaluate --help")

import re
import sys
import time
from pathlib import Path

from clitools.files import check_output_dir, ensure_dir, read_json, read_lines, sha256_file, write_atomic, write_json
from datadir import layout, values
from datadir.moses import Detokenizer

from .checkpoint import arg, load_for_data, model_args
from .cli import (USER_DIR, ScriptError, add_beam, add_precision, add_threads, available_cores, command_line,
                  fairseq_cli, log, machine, main_guard, parser, positive_int, precision_flags, run, thread_env,
                  versions)
from .rundir import check_data_dir, check_split, split_sizes

TRANSLATED = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s \(([\d.]+) sentences/s, "
                        r"([\d.]+) tokens/s\)")


def parse_generate(text):
    """fairseq-generate output -> ({id: hypothesis}, {id: source}, timing dict or None). Ids are input line numbers;
    the batches come in length order, so the caller sorts by id."""
    hyps, srcs = {}, {}
    for line in text.splitlines():
        if line.startswith("H-"):
            head, _score, hyp = (line.split("\t", 2) + ["", ""])[:3]
            hyps[int(head[2:])] = hyp
        elif line.startswith("S-"):
            head, src = (line.split("\t", 1) + [""])[:2]
            srcs[int(head[2:])] = src
    timing = None
    m = TRANSLATED.search(text)
    if m:
        timing = {"sentences": int(m.group(1).replace(",", "")), "tokens": int(m.group(2).replace(",", "")),
                  "seconds": float(m.group(3)), "sentences_per_second": float(m.group(4)),
                  "tokens_per_second": float(m.group(5))}
    return hyps, srcs, timing


def in_order(by_id, n, what):
    """[by_id[0], ..., by_id[n - 1]]; ScriptError when an id is missing."""
    missing = [i for i in range(n) if i not in by_id]
    if missing or len(by_id) != n:
        raise ScriptError(f"fairseq-generate returned {len(by_id)} {what} for {n} input lines "
                          f"(missing ids e.g. {missing[:5]})")
    return [by_id[i] for i in range(n)]


def score(hyps_tok, refs_tok, hyps_detok, refs_raw):
    from sacrebleu.metrics import BLEU, CHRF

    out = {}
    bleu = BLEU(tokenize="none", force=True)  # tokenized on purpose: no "forgot to detokenize" warning
    s = bleu.corpus_score(hyps_tok, [refs_tok])
    out["bleu_tokenized"] = {"score": round(s.score, 2), "signature": str(bleu.get_signature()), "text": str(s),
                             "reference": "tok"}
    if refs_raw is not None:
        bleu = BLEU(lowercase=True)
        s = bleu.corpus_score(hyps_detok, [refs_raw])
        out["sacrebleu"] = {"score": round(s.score, 2), "signature": str(bleu.get_signature()), "text": str(s),
                            "reference": "raw"}
        chrf = CHRF(lowercase=True)
        s = chrf.corpus_score(hyps_detok, [refs_raw])
        out["chrf"] = {"score": round(s.score, 2), "signature": str(chrf.get_signature()), "text": str(s),
                       "reference": "raw"}
    else:
        out["sacrebleu"] = out["chrf"] = None
    return out


def checkpoint_info(path, data):
    from cgc_fairseq.models import CGC_DEFAULTS  # the --cgc-* options

    state = load_for_data(path, data)
    margs = model_args(state)
    tied = set()  # fairseq's names of the copies of tied weights (one parameter in the model)
    if arg(margs, "share_all_embeddings"):
        tied |= {"decoder.embed_tokens.weight", "decoder.output_projection.weight"}
    elif arg(margs, "share_decoder_input_output_embed"):
        tied.add("decoder.output_projection.weight")
    params = sum(v.numel() for k, v in state["model"].items()
                 if k not in tied and not k.endswith(("_float_tensor", ".version")))
    hist = state.get("optimizer_history") or [{}]
    extra = state.get("extra_state") or {}
    return {"path": str(Path(path).resolve()), "size_bytes": Path(path).stat().st_size,
            "mtime": Path(path).stat().st_mtime, "arch": arg(margs, "arch"), "parameters": params,
            "num_updates": hist[-1].get("num_updates"),
            "epoch": (extra.get("train_iterator") or {}).get("epoch"),
            "training_seconds": extra.get("previous_training_time"),
            "averaged_from": state.get("averaged_from"),
            "positions": [int(arg(margs, f"max_{side}_positions") or values.MAX_POSITIONS)
                          for side in ("source", "target")],
            "model": {k: arg(margs, k) for k in ("encoder_conv_type", "decoder_conv_type", "encoder_embed_dim",
                                                   "encoder_layers", "decoder_layers", *CGC_DEFAULTS)}}


def build_parser():
    p = parser("evaluate", __doc__)
    p.add_argument("--checkpoint", required=True, help="a fairseq checkpoint (e.g. from average.py)")
    p.add_argument("--data", required=True, help="the data dir the model was trained on")
    p.add_argument("--split", default="test", help="test, valid, test1, ... (default: %(default)s)")
    p.add_argument("--out", required=True, help="output dir for results.json and the hypotheses")
    add_beam(p)
    p.add_argument("--max-tokens", type=positive_int, default=4000,
                   help="tokens per batch, at least the longest sentence's (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, help="sentences per batch, >= 1 (default: fairseq's)")
    add_threads(p)
    add_precision(p, "decoding precision")
    p.add_argument("--reuse", action="store_true",
                   help="do nothing when OUT/results.json is from the same checkpoint file, split and options")
    p.add_argument("--quiet", action="store_true", help="don't echo fairseq-generate's output")
    return p


def over_long(data, split, positions, max_tokens):
    """fairseq-generate's flags for the sentences of split longer than the model's (source, target) positions, with
    a warning for each kind: a source is truncated (--truncate-source), a reference that long gets an empty
    hypothesis (fairseq-generate cannot take its pair). Returns (flags, truncated, skipped), the 0-based lines;
    ScriptError when max_tokens cannot hold the longest pair fairseq batches."""
    sizes = split_sizes(data, split)
    truncated = (sizes[layout.SRC] > positions[0]).nonzero()[0].tolist()
    skipped = (sizes[layout.TGT] > positions[1]).nonzero()[0].tolist()
    batched = sizes[layout.TGT] <= positions[1]
    longest = max(int(sizes[layout.SRC][batched].clip(max=positions[0]).max(initial=0)),
                  int(sizes[layout.TGT][batched].max(initial=0)))
    if max_tokens < longest:
        raise ScriptError(f"argument --max-tokens: {max_tokens} is less than the longest sentence of {split} "
                          f"({longest} tokens)")
    flags = []
    if truncated:
        log("warning: " + values.truncated(f"{split}: source {values.listing([i + 1 for i in truncated])}",
                                         positions[0]))
        flags += ["--truncate-source"]
    if skipped:
        log(f"warning: {split}: reference {values.listing([i + 1 for i in skipped])}: longer than {positions[1]} "
            f"tokens (the model's maximum, EOS included), fairseq-generate cannot take the pair: an empty "
            f"hypothesis in its place")
        flags += ["--skip-invalid-size-inputs-valid-test"]
    if flags:  # the task's limits as the model's (fairseq's defaults are 1024)
        flags += ["--max-source-positions", str(positions[0]), "--max-target-positions", str(positions[1])]
    return flags, truncated, skipped


@main_guard
def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    data, out = Path(args.data), Path(args.out)
    check_output_dir(out, "--out")
    manifest = check_data_dir(data)
    check_split(data, args.split)
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise ScriptError(f"checkpoint not found: {ckpt}")
    ref_tok_path, ref_raw_path, src_tok_path = (layout.tok_file(data, args.split, layout.TGT),
                                                layout.raw_file(data, args.split, layout.TGT),
                                                layout.tok_file(data, args.split, layout.SRC))
    if not ref_tok_path.is_file():
        raise ScriptError(f"missing tokenized reference {ref_tok_path}")
    options = {"beam": args.beam, "lenpen": args.lenpen, "max_tokens": args.max_tokens,
               "batch_size": args.batch_size, "precision": args.precision, "extra_flags": extra}
    threads = args.threads or available_cores()
    references = {str(p): sha256_file(p) for p in (ref_tok_path, ref_raw_path, src_tok_path) if p.is_file()}
    results_path = out / "results.json"
    if args.reuse and results_path.exists():
        old = read_json(results_path)
        st = ckpt.stat()
        if (old.get("checkpoint", {}).get("path") == str(ckpt.resolve()) and old.get("split") == args.split
                and old["checkpoint"].get("mtime") == st.st_mtime and old["checkpoint"].get("size_bytes") == st.st_size
                and old.get("options") == options and old.get("data") == str(data.resolve())
                and old.get("references_sha256") == references):
            log(f"reusing {results_path}")
            return 0
    info = checkpoint_info(ckpt, data)
    refs_tok = read_lines(ref_tok_path)
    refs_raw = read_lines(ref_raw_path) if ref_raw_path.is_file() else None
    if refs_raw is not None and len(refs_raw) != len(refs_tok):
        raise ScriptError(f"{ref_raw_path} has {len(refs_raw)} lines, {ref_tok_path} has {len(refs_tok)}")
    fit, truncated, skipped = over_long(data, args.split, info["positions"], args.max_tokens)
    cmd = [fairseq_cli("fairseq-generate"), str(data.resolve()), "--user-dir", USER_DIR, "--path", str(ckpt),
           "--source-lang", layout.SRC, "--target-lang", layout.TGT, "--gen-subset", args.split, "--beam", str(args.beam),
           "--lenpen", str(args.lenpen), "--max-tokens", str(args.max_tokens), "--post-process", "sentencepiece",
           "--seed", "1", "--required-batch-size-multiple", "1", *fit]  # fairseq drops a last batch not a multiple of 8
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    cmd += precision_flags(args.precision) + extra
    ensure_dir(out)
    log(f"translating {args.split} ({len(refs_tok)} lines) with {ckpt} (beam {args.beam}, lenpen {args.lenpen})")
    wall = run(cmd, stdout_path=out / "generate.txt", echo=not args.quiet, what="fairseq-generate",
               env=thread_env(threads))
    hyps_by_id, srcs_by_id, timing = parse_generate((out / "generate.txt").read_text())
    empty = dict.fromkeys(skipped, "")
    hyps = in_order({**empty, **hyps_by_id}, len(refs_tok), "hypotheses")
    srcs = in_order({**empty, **srcs_by_id}, len(refs_tok), "sources")
    detokenize = Detokenizer(layout.TGT)
    hyps_detok = [detokenize(h) for h in hyps]
    write_atomic(out / "hyp.tok.en", "\n".join(hyps) + "\n")
    write_atomic(out / "hyp.detok.en", "\n".join(hyps_detok) + "\n")
    # the ids are input line numbers: the sources in id order must be DATA/tok/SPLIT.de (up to <unk>)
    src_check = None
    if src_tok_path.is_file():
        src_ref = read_lines(src_tok_path)
        src_check = {"lines": len(srcs), "identical_to_tok_source": sum(a == b for a, b in zip(srcs, src_ref))}
    scores = score(hyps, refs_tok, hyps_detok, refs_raw)
    split_info = (manifest.get("splits") or {}).get(args.split, {})
    results = {
        "corpus": manifest.get("corpus"), "split": args.split, "split_source": split_info.get("source"),
        "sentences": len(hyps), "arch": info["arch"], "parameters": info["parameters"], "checkpoint": info,
        "scores": scores,
        "bleu_tokenized": scores["bleu_tokenized"]["score"],
        "sacrebleu": scores["sacrebleu"]["score"] if scores["sacrebleu"] else None,
        "chrf": scores["chrf"]["score"] if scores["chrf"] else None,
        "decode": {"wall_seconds": round(wall, 2), **(timing or {}),
                   "wall_sentences_per_second": round(len(hyps) / wall, 2) if wall > 0 else None},
        "options": options, "threads": threads, "machine": machine(threads), "references_sha256": references,
        "source_order_check": src_check,
        "over_long": {"positions": info["positions"], "truncated_sources": [i + 1 for i in truncated],
                      "skipped_references": [i + 1 for i in skipped]},
        "files": {"hypotheses_tokenized": str((out / "hyp.tok.en").resolve()),
                  "hypotheses_detokenized": str((out / "hyp.detok.en").resolve()),
                  "reference_tokenized": str(ref_tok_path.resolve()),
                  "reference_raw": str(ref_raw_path.resolve()) if refs_raw is not None else None,
                  "generate_output": str((out / "generate.txt").resolve())},
        "data": str(data.resolve()), "fairseq_command": cmd[1:], "script_command": command_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(),
    }
    write_json(results_path, results)
    sb = f", sacreBLEU {results['sacrebleu']:.2f}, chrF {results['chrf']:.2f}" if results["sacrebleu"] is not None else ""
    log(f"{args.split}: tokenized BLEU {results['bleu_tokenized']:.2f}{sb} "
        f"({len(hyps)} sentences, {wall:.1f} s) -> {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
