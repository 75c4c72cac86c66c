#!/usr/bin/env python3
"""Raw parallel data -> fairseq binaries (sentencepiece, joined dictionary).

    python data-bin-prep/prepare.py iwslt14  [--raw PATH] --out DIR [--vocab-size 10000]
    python data-bin-prep/prepare.py iwslt14  --eval-only --out DIR      # dev/test XML only
    python data-bin-prep/prepare.py multi30k [--raw PATH] --out DIR [--vocab-size 8000]

Output (DIR): fairseq-preprocess binaries + dict.{de,en}.txt, spm.model/.vocab,
tok/{split}.{de,en} (tokenized lowercased text), raw/{split}.{de,en} (untouched
cased eval references), spm/{split}.{de,en} (pieces), manifest.json.
Finished steps are skipped unless --force (a step is finished while its
outputs are what its stamp recorded); every file is written under a
temporary name and renamed when complete. DIR must be new, empty, a data dir
or a prep run's. A run holds a lock on DIR (DIR/.prep.lock): a second run on
the same DIR is refused while it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import common
import iwslt14
import multi30k
import outdir
import pipeline
from clitools.command import Parser, guard
from clitools.files import ensure_dir
from common import REPO, SHARED
from datadir import values

# a corpus is a recipe module (HELP, RAW_DIR, RAW_HELP, VOCAB_SIZE, add_arguments, prepare) and a line here
CORPORA = {"iwslt14": iwslt14, "multi30k": multi30k}


def build_parser() -> Parser:
    p = Parser.from_doc("prepare.py", __doc__)  # one-line errors, exit status 2
    sub = p.add_subparsers(dest="corpus", required=True, metavar="{" + ",".join(CORPORA) + "}",
                           parser_class=Parser)
    for corpus, recipe in CORPORA.items():
        sp = sub.add_parser(corpus, help=recipe.HELP)
        default_raw = SHARED / recipe.RAW_DIR
        sp.add_argument("--raw", type=Path, default=default_raw if default_raw.exists() else None,
                        help=f"raw release (default: {default_raw} when it exists){recipe.RAW_HELP}")
        sp.add_argument("--out", type=Path, default=REPO / "data-bin" / f"{corpus}.de-en",
                        help="output directory (default: %(default)s)")
        sp.add_argument("--vocab-size", type=values.argument_type(values.at_least(8)), default=recipe.VOCAB_SIZE,
                        help="joint sentencepiece vocabulary size, >= 8 (default: %(default)s)")
        sp.add_argument("--workers", type=values.argument_type(values.positive_int), default=common.default_workers(),
                        help="processes for tokenization / threads for spm / fairseq "
                             "workers, >= 1 (default: all cores = %(default)s)")
        sp.add_argument("--force", action="store_true", help="redo finished steps")
        recipe.add_arguments(sp)
    return p


@guard(status=2, interrupted="interrupted (no partial output is left looking finished)")
def main(argv=None) -> int:
    """A PrepError (clitools' UserError) ends the run with its one `error: ...` line and exit status 2."""
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no tqdm monitor thread: tokenization forks worker processes
    ensure_dir(args.out)
    outdir.check_out(args.out)  # empty, a data dir or a prep run's: not a folder of something else
    with outdir.locked(args.out):
        outdir.start(args.out)
        manifest = CORPORA[args.corpus].prepare(args)
    pipeline.print_summary(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
