"""Translate raw text line by line as fairseq-interactive does. The flags are fairseq-interactive's, not the other
scripts': DATA positional (not --data), --path (not --checkpoint), --input, --beam, --lenpen, --max-len-a,
--max-len-b, --buffer-size, --batch-size (and --precision as in the other scripts). Unlike fairseq-interactive, a
bad line does not end the run: it gets a warning and an empty hypothesis, and the lines after it are translated.

    python -m scripts.translate data-bin/multi30k.de-en --path runs/demo-multi30k-cgc_lightconv_small/average.pt \\
        --beam 4 --buffer-size 64 < input.de > output.txt
    grep ^D- output.txt | cut -f3        # the translations, one line per input line

fairseq-interactive's output: for each input line N, in input order, S-N (the source as the model's pieces), H-N
(score, hypothesis in pieces), D-N (score, detokenized hypothesis) and P-N (the tokens' scores), scores in base 2.
The text is tokenized as the data was (DATA's manifest.json and spm.model, through cgc_fairseq.hub: no --tokenizer
or --bpe flags needed).
Lines are datadir.lines' (UTF-8, split at "\\n"; CR, other line breaks and byte-order marks as that module says).
A line that is not UTF-8 or holds a NUL gets a warning naming the file and line, and an empty hypothesis (score
-inf); a line longer than the model's source positions (1024 tokens with EOS) is truncated to them with a warning,
as everywhere in this project. Warnings go to stderr, the output to stdout.
"""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

from datadir import lines

from .cli import (ScriptError, add_beam, add_precision, main_guard, nonnegative_float, nonnegative_int, parser,
                  positive_int)
from .rundir import check_data_dir

logger = logging.getLogger("scripts.translate")
BASE2 = math.log(2)


def build_parser():
    p = parser("translate", __doc__)
    # fairseq-interactive's flags (DATA, --path, --input, ...), not the other scripts' --data and --checkpoint
    p.add_argument("data", help="the data dir the model was trained on (dictionaries, spm.model, manifest.json); "
                                "fairseq-interactive's DATA, the other scripts' --data")
    p.add_argument("--path", required=True, help="the checkpoint (fairseq-interactive's --path, the other scripts' "
                                                 "--checkpoint)")
    p.add_argument("--input", default="-", help="file to translate, '-' for stdin (default: %(default)s)")
    add_beam(p)
    p.add_argument("--max-len-a", type=nonnegative_float,
                   help="hypotheses at most a * source length + b tokens, a >= 0 (default: fairseq's, 0)")
    p.add_argument("--max-len-b", type=nonnegative_int, help="b >= 0 (default: fairseq's, 200)")
    p.add_argument("--buffer-size", type=positive_int, default=1,
                   help="lines read before translating them together, >= 1 (default: %(default)s; "
                        "e.g. 64 for a file)")
    p.add_argument("--batch-size", type=positive_int, help="sentences per batch, >= 1 (default: fairseq's)")
    add_precision(p, "decoding precision")
    return p


def numbered_lines(stream, name):
    """(line number, its text or None for a bad line) of a binary stream, read as lines come; a warning for each
    bad line."""
    for number, raw in enumerate(stream, 1):
        try:
            yield number, lines.decode_line(raw.removesuffix(b"\n"), f"{name} line {number}")
        except lines.TextError as e:
            logger.warning(f"{e}: an empty hypothesis in its place")
            yield number, None


def buffered(items, size):
    buffer = []
    for item in items:
        buffer.append(item)
        if len(buffer) == size:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def print_translation(n, hub, source, hypo):
    """fairseq-interactive's lines for input line n (0-based): S, H, D, P; empty with score -inf when no hypo."""
    score = float(hypo["score"]) / BASE2 if hypo else -math.inf
    print(f"S-{n}\t{hub.src_dict.string(source) if source is not None else ''}")
    print(f"H-{n}\t{score}\t{hub.string(hypo['tokens']) if hypo else ''}")
    print(f"D-{n}\t{score}\t{hub.decode(hypo['tokens']) if hypo else ''}")
    scores = (hypo["positional_scores"] / BASE2).tolist() if hypo else []
    print(f"P-{n}\t{' '.join(f'{s:.4f}' for s in scores)}", flush=True)


def translate(hub, stream, name, buffer_size):
    for chunk in buffered(numbered_lines(stream, name), buffer_size):
        sources = [None if text is None else hub.fit(hub.encode(text), f"{name} line {number}")
                   for number, text in chunk]
        good = [s for s in sources if s is not None]
        hypos = iter(hub.generate(good))
        for (number, _), source in zip(chunk, sources):
            print_translation(number - 1, hub, source, next(hypos)[0] if source is not None else None)


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    check_data_dir(args.data)
    if not Path(args.path).is_file():
        raise ScriptError(f"checkpoint not found: {args.path}")
    if args.input != "-" and not Path(args.input).is_file():
        raise ScriptError(f"input file not found: {args.input}")
    from cgc_fairseq.hub import from_pretrained

    options = {k: v for k, v in (("max_len_a", args.max_len_a), ("max_len_b", args.max_len_b),
                                 ("batch_size", args.batch_size)) if v is not None}
    try:
        hub = from_pretrained(args.path, data=args.data, beam=args.beam, lenpen=args.lenpen,
                              precision=args.precision, **options)
    except (ValueError, FileNotFoundError) as e:
        raise ScriptError(str(e))
    if args.input == "-":
        translate(hub, sys.stdin.buffer, "<stdin>", args.buffer_size)
    else:
        with open(args.input, "rb") as stream:
            translate(hub, stream, args.input, args.buffer_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
