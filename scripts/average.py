"""Average the parameters of the last N checkpoints into one checkpoint (like fairseq's average_checkpoints.py).

    python -m scripts.average --checkpoint-dir runs/small/checkpoints --last 5 --out runs/small/checkpoints/average.pt
    python -m scripts.average --checkpoints a.pt b.pt c.pt --out avg.pt

fairseq's scripts/average_checkpoints.py fails on torch >= 2.6 (torch.load defaults to weights_only=True and a
fairseq checkpoint holds an argparse.Namespace). This one loads with weights_only=True and allow-lists exactly
argparse.Namespace (what cgc_fairseq allow-lists on import); weights_only is never turned off.
Floating-point tensors are averaged in float64 and cast back; other tensors must be equal in all checkpoints (a
BatchNorm's num_batches_tracked counter is the newest checkpoint's).
The result keeps the newest checkpoint's config and training state, without the optimizer state, and is
written under a temporary name and renamed when complete.
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.average --help")

import sys
from pathlib import Path

from clitools.files import atomic_path, check_output_file

from .checkpoint import load_checkpoint
from .cli import ScriptError, log, main_guard, parser, positive_int
from .rundir import EPOCH, UPDATE, numbered_checkpoints


def last_checkpoints(directory, n, updates=False):
    """The last n epoch checkpoints (checkpointE.pt) of a save dir, or update checkpoints (checkpoint_E_U.pt)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ScriptError(f"checkpoint dir not found: {directory}")
    found = numbered_checkpoints(directory, UPDATE if updates else EPOCH)
    if not found:
        kind = "checkpoint_E_U.pt" if updates else "checkpointE.pt"
        raise ScriptError(f"no {kind} checkpoints in {directory}")
    if len(found) < n:
        log(f"warning: asked for the last {n} checkpoints, {directory} has {len(found)}; averaging those")
    return [p for _, p in found[-n:]]


def average_states(paths):
    """Load the checkpoints and return (newest state with the averaged model, n)."""
    import torch

    total, first_model, state = None, None, None
    for path in paths:
        state = load_checkpoint(path)
        model = state.get("model")
        if not isinstance(model, dict):
            raise ScriptError(f"{path}: not a fairseq checkpoint (no 'model' state dict)")
        if total is None:
            first_model = model
            total = {k: v.double().clone() if v.is_floating_point() else v for k, v in model.items()}
            continue
        if model.keys() != total.keys():
            diff = sorted(set(model) ^ set(total))[:3]
            raise ScriptError(f"{path}: parameters differ from {paths[0]} (e.g. {', '.join(diff)})")
        for k, v in model.items():
            if v.shape != total[k].shape:
                raise ScriptError(f"{path}: {k} has shape {tuple(v.shape)}, {paths[0]} has {tuple(total[k].shape)}")
            if v.is_floating_point():
                total[k] += v.double()
            elif k.endswith(".num_batches_tracked"):  # a BatchNorm's counter (--cgc-norm batch): the newest's
                total[k] = v
            elif not torch.equal(v, total[k]):
                raise ScriptError(f"{path}: non-float tensor {k} differs from {paths[0]}")
    n = len(paths)
    state["model"] = {k: (v / n).to(first_model[k].dtype) if first_model[k].is_floating_point() else v
                      for k, v in total.items()}
    state["last_optimizer_state"] = None  # not needed to translate; a 3x smaller file
    state["averaged_from"] = [str(p) for p in paths]
    return state


def save(state, out):
    """torch.save through a Python file, so that a full disk or a read-only folder is an OSError that atomic_path
    names (torch.save(state, path) raises a RuntimeError of its C++ writer instead)."""
    import torch

    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def check_once(paths):
    """ScriptError when --checkpoints names a file twice (under one name or two, e.g. a link): it would count
    twice in the average."""
    seen = {}  # (device, inode) -> the first name given
    for p in paths:
        st = p.stat()
        first = seen.setdefault((st.st_dev, st.st_ino), p)
        if first is not p:
            twice = str(p) if str(p) == str(first) else f"{p} (the same file as {first})"
            raise ScriptError(f"--checkpoints: {twice} is given twice; give each checkpoint once")


def build_parser():
    p = parser("average", __doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint-dir", help="a save dir: average its last --last epoch checkpoints")
    src.add_argument("--checkpoints", nargs="+", help="the checkpoint files to average, each once")
    p.add_argument("--last", type=positive_int, default=5, help="how many of the newest checkpoints (default: %(default)s)")
    p.add_argument("--update-checkpoints", action="store_true",
                   help="with --checkpoint-dir: use checkpoint_E_U.pt (--save-interval-updates) instead of "
                        "checkpointE.pt")
    p.add_argument("--out", required=True, help="the averaged checkpoint to write")
    return p


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    check_output_file(args.out, "--out")
    paths = ([Path(p) for p in args.checkpoints] if args.checkpoints
             else last_checkpoints(args.checkpoint_dir, args.last, args.update_checkpoints))
    for p in paths:
        if p.is_dir() and args.checkpoints:
            raise ScriptError(f"--checkpoints takes checkpoint files, {p} is a directory (its last --last "
                              f"checkpoints: --checkpoint-dir {p})")
        if not p.is_file():
            raise ScriptError(f"checkpoint not found: {p}")
    check_once(paths)
    log(f"averaging {len(paths)} checkpoints: {', '.join(p.name for p in paths)}")
    state = average_states(paths)
    save(state, args.out)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
