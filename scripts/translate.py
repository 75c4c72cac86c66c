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
as everywhere in this project. Warnings go to stderr, the output to stdout. --input takes any readable path (a
file, /dev/stdin, a named pipe); a closed stdin or stdout (`<&-`, `>&-`) is an error before the model is loaded;
a reader that stops reading (`| head -1`) ends the run quietly with status 141, as it ends Unix tools (SIGPIPE).
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.translate --help")

import logging
import math
import os
import sys
from contextlib import nullcontext
from pathlib import Path

from datadir import lines

from .cli import (ScriptError, add_beam, add_precision, add_threads, main_guard, nonnegative_float, nonnegative_int,
                  parser, positive_int)
from .rundir import check_data_dir

logger = logging.getLogger("scripts.translate")
BASE2 = math.log(2)
SIGPIPE_STATUS = 141  # 128 + SIGPIPE: what a shell reports for a tool that its reader stopped


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
    add_threads(p)
    return p


def open_input(name):
    """(the binary stream of --input, its name in warnings): stdin for '-', else any readable path (a file,
    /dev/stdin, a named pipe); a ScriptError for a closed stdin, a missing path, a directory or an unreadable file.
    A closed stdout is an error here too, before the model is loaded."""
    if sys.stdout is None:
        raise ScriptError("standard output is closed (`>&-`): the translations are written to it")
    if name == "-":
        if sys.stdin is None:
            raise ScriptError("standard input is closed (`<&-`): give the text on stdin or with --input FILE")
        return nullcontext(sys.stdin.buffer), "<stdin>"
    if Path(name).is_dir():
        raise ScriptError(f"--input is a directory, expected a file: {name}")
    if not Path(name).exists():
        raise ScriptError(f"input file not found: {name}")
    try:
        return open(name, "rb"), name
    except OSError as e:
        raise ScriptError(f"cannot read {name}: {e.strerror or e}") from None


def raw_lines(stream, name):
    """The lines of a binary stream as they come, ended as datadir.lines ends them (a first line without "\\n" is
    the whole input: with CRs, old-Mac line ends); a ScriptError when reading fails (EIO, EISDIR, ...)."""
    lines_in, first = iter(stream), True
    while True:
        try:
            raw = next(lines_in, None)
        except OSError as e:
            raise ScriptError(f"cannot read {name}: {e.strerror or e}") from None
        if raw is None:
            return
        if first and lines.line_end(raw) == b"\r":
            yield from raw.removesuffix(b"\r").split(b"\r")
            return
        first = False
        yield raw


def numbered_lines(stream, name):
    """(line number, its text or None for a bad line) of a binary stream, read as lines come; a warning for each
    bad line."""
    for number, raw in enumerate(raw_lines(stream, name), 1):
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


def load_hub(args):
    """The model through cgc_fairseq.hub; its ValueError (an empty, truncated or non-fairseq checkpoint, another
    data dir's, a bad option) a ScriptError."""
    from cgc_fairseq.hub import from_pretrained

    options = {k: v for k, v in (("max_len_a", args.max_len_a), ("max_len_b", args.max_len_b),
                                 ("batch_size", args.batch_size)) if v is not None}
    try:
        return from_pretrained(args.path, data=args.data, beam=args.beam, lenpen=args.lenpen,
                               precision=args.precision, threads=args.threads, **options)
    except (ValueError, FileNotFoundError) as e:
        raise ScriptError(str(e))


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    check_data_dir(args.data)
    if not Path(args.path).is_file():
        raise ScriptError(f"checkpoint not found: {args.path}")
    stream, name = open_input(args.input)
    with stream as lines_in:
        hub = load_hub(args)
        try:
            translate(hub, lines_in, name, args.buffer_size)
        except BrokenPipeError:  # the reader stopped reading (`| head -1`): end quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's last flush goes nowhere
            return SIGPIPE_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
