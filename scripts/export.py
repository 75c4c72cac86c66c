"""Export a trained cgc_lightconv checkpoint for inference with torch.export, and check it against the eager model.

    python -m scripts.export --checkpoint runs/small/average.pt --data data-bin/multi30k.de-en --out runs/small/export

Exported (cgc_fairseq/export.py), as torch.export ExportedPrograms with a dynamic batch size and lengths:
  OUT/encoder.pt2       src_tokens B x S (int64, left-padded, ending in EOS)
                        -> encoder_out S x B x C (float32), encoder_padding_mask B x S (bool)
  OUT/decoder.pt2       prev_output_tokens B x T (int64, starting with EOS), encoder_out, encoder_padding_mask
                        -> logits B x T x V (float32, before log-softmax): the full (teacher-forced) decoder pass
  OUT/decoder_step.pt2  last token B x 1, encoder_out, encoder_padding_mask, histories (a list: one t x B x Cc
                        tensor per decoder layer, t earlier steps, t = 0 first) -> logits B x V, histories with
                        t + 1 rows: one step of incremental decoding (beam search reorders the histories on dim 1)
Load with `torch.export.load(path).module()` (plain torch; neither fairseq nor cgc_fairseq needed). The token ids are
those of DATA/dict.{de,en}.txt.
Check: the first --sentences sentences of --split, batched as fairseq batches them (all of them, one alone, the
first three), through the saved-and-reloaded programs and through the eager model (full pass, and fairseq's
incremental decoding step by step through the reference); every max |diff| must be <= --tolerance, else nothing is
written.
Writes OUT/*.pt2 (as NAME.tmp.pt2, renamed after the check, removed when it fails) and OUT/export.json last (versions, shapes, dims,
special token ids, the check's diffs per batch).
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.export --help")

import sys
import time
from contextlib import ExitStack
from pathlib import Path

from clitools.files import atomic_path, check_output_dir, write_json
from datadir import layout

from .checkpoint import arg, load_for_data, model_args
from .cli import ScriptError, command_line, log, main_guard, nonnegative_float, parser, positive_int, versions
from .rundir import check_data_dir, check_split

FILES = ("encoder", "decoder", "decoder_step")
DIFFS = ("encoder_out", "logits", "step_logits")


def build_parser():
    p = parser("export", __doc__)
    p.add_argument("--checkpoint", required=True, help="a fairseq checkpoint of a cgc_lightconv arch")
    p.add_argument("--data", required=True, help="the data dir the model was trained on (dictionaries, the split)")
    p.add_argument("--out", required=True, help="output dir for the .pt2 files and export.json")
    p.add_argument("--split", default="valid", help="the split whose sentences the check uses (default: %(default)s)")
    p.add_argument("--sentences", type=positive_int, default=8, help="sentences checked, >= 1 (default: %(default)s)")
    p.add_argument("--tolerance", type=nonnegative_float, default=1e-4,
                   help="largest max |exported - eager| accepted, >= 0 (default: %(default)s)")
    return p


def check_arch(path, data):
    """The checkpoint's arch, which must be one of the cgc_lightconv model's, trained on data (ScriptError
    otherwise)."""
    state = load_for_data(path, data)
    margs = model_args(state)
    arch = arg(margs, "arch") if margs is not None else None
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    if ARCH_MODEL_NAME_REGISTRY.get(arch) != "cgc_lightconv":
        raise ScriptError(f"{path}: arch {arch!r} is not a cgc_lightconv arch; only those can be exported (fairseq's "
                          f"own LightConv/DynamicConv convs branch on the length in Python: fairseq issue #3267)")
    return arch


def check_batches(dataset, n):
    """fairseq batches of the first n sentences: all of them, the last one alone, the first three."""
    n = min(n, len(dataset))
    if n == 0:
        raise ScriptError("the split has no sentences to check the export on")
    groups = [list(range(n)), [n - 1], list(range(min(3, n)))]
    return [dataset.collater([dataset[i] for i in group]) for group in groups]


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    data, out, ckpt = Path(args.data), Path(args.out), Path(args.checkpoint)
    if not ckpt.is_file():
        raise ScriptError(f"checkpoint not found: {ckpt}")
    check_output_dir(out, "--out")
    check_data_dir(data)
    check_split(data, args.split)

    import torch
    from fairseq import checkpoint_utils

    from cgc_fairseq.export import EXAMPLE, check_exportable, compare, dims, export_model

    arch = check_arch(ckpt, data)
    log(f"loading {ckpt} ({arch})")
    try:
        [model], _cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)],
                                                                           arg_overrides={"data": str(data)})
    except Exception as e:  # a checkpoint that does not fit the data dir (dictionary sizes) and the like
        raise ScriptError(f"cannot build the model of {ckpt} on {data}: {str(e).splitlines()[0][:300]}")
    model = model.float().eval()
    try:
        check_exportable(model)
    except ValueError as e:
        raise ScriptError(f"{ckpt}: {e}")
    task.load_dataset(args.split)
    batches = check_batches(task.dataset(args.split), args.sentences)

    log("exporting the encoder, the decoder and the decoder step with torch.export")
    start = time.time()
    programs = export_model(model)
    export_seconds = time.time() - start
    with ExitStack() as stack:  # every file under its final name only when the check passes
        tmp = {name: stack.enter_context(atomic_path(out / f"{name}.pt2")) for name in FILES}
        for name in FILES:
            with open(tmp[name], "wb") as f:  # a Python file: a full disk is an OSError, not torch's RuntimeError
                torch.export.save(programs[name], f)
        loaded = {name: torch.export.load(tmp[name]).module() for name in FILES}  # check the files, not the memory
        checks = []
        for batch in batches:
            net = batch["net_input"]
            diff = compare(model, loaded, net["src_tokens"], net["prev_output_tokens"])
            checks.append({"batch": net["src_tokens"].size(0), "src_len": net["src_tokens"].size(1),
                           "tgt_len": net["prev_output_tokens"].size(1),
                           "padded": bool(net["src_tokens"].eq(model.encoder.padding_idx).any()),
                           **{f"{key}_max_abs_diff": diff[key] for key in DIFFS},
                           "padding_mask_equal": diff["padding_mask_equal"]})
        worst = {key: max(c[f"{key}_max_abs_diff"] for c in checks) for key in DIFFS}
        if max(worst.values()) > args.tolerance or not all(c["padding_mask_equal"] for c in checks):
            raise ScriptError(f"the exported model differs from the eager one: max |diff| "
                              f"{', '.join(f'{k} {v:.3g}' for k, v in worst.items())} (tolerance {args.tolerance:g})")

    d = dims(model)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    C, V = model.encoder.embed_tokens.embedding_dim, len(tgt_dict)
    histories = [["steps", "batch", layer.conv.input_size] for layer in model.decoder.layers]
    results = {
        "checkpoint": str(ckpt.resolve()), "arch": arch, "data": str(data.resolve()),
        "format": "torch.export ExportedProgram; torch.export.load(path).module()(*inputs)",
        "files": {name: {"path": str((out / f"{name}.pt2").resolve()),
                         "size_bytes": (out / f"{name}.pt2").stat().st_size} for name in FILES},
        "signature": {
            "encoder": {"inputs": {"src_tokens": ["batch", "src_len"]},
                        "outputs": {"encoder_out": ["src_len", "batch", C],
                                    "encoder_padding_mask": ["batch", "src_len"]}},
            "decoder": {"inputs": {"prev_output_tokens": ["batch", "tgt_len"], "encoder_out": ["src_len", "batch", C],
                                   "encoder_padding_mask": ["batch", "src_len"]},
                        "outputs": {"logits": ["batch", "tgt_len", V]}},
            "decoder_step": {"inputs": {"prev_output_tokens": ["batch", 1], "encoder_out": ["src_len", "batch", C],
                                        "encoder_padding_mask": ["batch", "src_len"], "histories": histories},
                             "outputs": {"logits": ["batch", V],
                                         "histories": [["steps + 1", *h[1:]] for h in histories]}},
        },
        "dims": {name: {"min": int(dim.min), "max": int(dim.max) if isinstance(dim.max, int) else None}
                 for name, dim in d.items()},
        "example_shapes": EXAMPLE,
        "dictionary": {"source": str(layout.dictionary_file(data, layout.SRC).resolve()),
                       "target": str(layout.dictionary_file(data, layout.TGT).resolve()),
                       "source_size": len(src_dict), "target_size": V, "pad": tgt_dict.pad(), "eos": tgt_dict.eos(),
                       "bos": tgt_dict.bos(), "unk": tgt_dict.unk()},
        "limitations": ["float32 on CPU as exported (no autocast)", "no search: the caller writes the greedy or "
                        "beam search loop around decoder_step", "decoder_step recomputes encoder attention's keys "
                        "and values at every step"],
        "check": {"split": args.split, "sentences": batches[0]["nsentences"], "batches": checks,
                  "max_abs_diff": worst, "tolerance": args.tolerance, "passed": True},
        "export_seconds": round(export_seconds, 2), "script_command": command_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(),
    }
    write_json(out / "export.json", results)
    log(f"exported to {out}: max |exported - eager| {', '.join(f'{k} {v:.3g}' for k, v in worst.items())} on "
        f"{len(checks)} batches of {args.split}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
