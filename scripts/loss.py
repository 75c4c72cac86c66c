"""Teacher-forced loss of a checkpoint on splits of its data dir, with fairseq's own validation (fairseq-validate).

    python -m scripts.loss --checkpoint runs/small/average.pt --data data-bin/multi30k.de-en \\
        --splits valid test test1 --out runs/small/eval/average.loss.json

Per split: `loss`, the training criterion's (the small and paper presets: label-smoothed cross-entropy, 0.1) and
`nll_loss`, the negative log-likelihood of the reference, both per target token in base 2, as fairseq logs them
(3 decimals). Lower is better; unlike BLEU, no search is involved, so the seed noise is small. Writes OUT (JSON:
the losses, the checkpoint, the fairseq command, versions); --reuse does nothing when OUT is from the same
checkpoint file, data dir, splits and precision.
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.loss --help")

import json
import sys
import time
from pathlib import Path

from clitools.files import read_json, write_json
from datadir import layout

from .cli import (USER_DIR, ScriptError, add_precision, add_threads, available_cores, command_line, fairseq_cli, log,
                  machine, main_guard, parser, positive_int, precision_flags, run, thread_env, versions)
from .rundir import check_data_dir, check_split

RECORD = " | INFO | "  # fairseq-validate's JSON log line: "... | INFO | test | {"test_loss": "4.229", ...}"


def build_parser():
    p = parser("loss", __doc__)
    p.add_argument("--checkpoint", required=True, help="a fairseq checkpoint")
    p.add_argument("--data", required=True, help="the data dir the model was trained on")
    p.add_argument("--splits", nargs="+", default=["valid", "test"], help="default: %(default)s")
    p.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    p.add_argument("--max-tokens", type=positive_int, default=4000, help="tokens per batch (default: %(default)s)")
    add_threads(p)
    add_precision(p, "precision of the forward pass")
    p.add_argument("--reuse", action="store_true",
                   help="do nothing when OUT is from the same checkpoint, data, splits and precision")
    return p


def parse_losses(text, splits):
    """fairseq-validate's --log-format json output -> {split: {"loss": float, "nll_loss": float}}."""
    out = {}
    for line in text.splitlines():
        head, sep, record = line.partition(RECORD)
        subset, _, payload = record.partition(" | ")
        if sep and subset in splits and payload.startswith("{"):
            r = json.loads(payload)
            out[subset] = {"loss": float(r[f"{subset}_loss"]), "nll_loss": float(r[f"{subset}_nll_loss"])}
    missing = [s for s in splits if s not in out]
    if missing:
        raise ScriptError(f"fairseq-validate reported no loss for {', '.join(missing)}")
    return out


def identity(ckpt, data, splits):
    st = ckpt.stat()
    return {"path": str(ckpt.resolve()), "size_bytes": st.st_size, "mtime": st.st_mtime,
            "data": str(data.resolve()), "splits": list(splits)}


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    data, ckpt = Path(args.data), Path(args.checkpoint)
    check_data_dir(data)
    for split in args.splits:
        check_split(data, split)
    if not ckpt.is_file():
        raise ScriptError(f"checkpoint not found: {ckpt}")
    made_of = identity(ckpt, data, args.splits) | {"precision": args.precision}
    if args.reuse and args.out.is_file() and read_json(args.out).get("made_of") == made_of:
        log(f"reusing {args.out}")
        return 0
    threads = args.threads or available_cores()
    cmd = [fairseq_cli("fairseq-validate"), str(data.resolve()), "--user-dir", USER_DIR, "--path", str(ckpt),
           "--task", "translation", "--source-lang", layout.SRC, "--target-lang", layout.TGT,
           "--valid-subset", ",".join(args.splits), "--max-tokens", str(args.max_tokens), "--log-format", "json",
           "--required-batch-size-multiple", "1", *precision_flags(args.precision)]  # every sentence, not a multiple
    lines = []
    run(cmd, echo=False, on_line=lines.append, what="fairseq-validate", env=thread_env(threads))
    losses = parse_losses("".join(lines), args.splits)
    write_json(args.out, {"losses": losses, "made_of": made_of, "threads": threads, "machine": machine(threads),
                          "fairseq_command": cmd[1:], "script_command": command_line(),
                          "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()})
    log(", ".join(f"{s}: loss {r['loss']:.3f}, nll {r['nll_loss']:.3f}" for s, r in losses.items()) + f" -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
