"""Reading a fairseq checkpoint file safely: torch.load(weights_only=True) with only argparse.Namespace allow-listed,
the model config it holds, and whether it fits a data dir (its dictionaries)."""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

from datadir import layout

from .cli import ScriptError


def load_checkpoint(path, mmap=False):
    """torch.load(weights_only=True) of a fairseq checkpoint, with only argparse.Namespace allow-listed (mmap: the
    tensors memory-mapped, read only when used)."""
    import torch

    import cgc_fairseq  # noqa: F401  (registers the archs; allow-lists argparse.Namespace)

    path = Path(path)
    if not path.is_file():
        raise ScriptError(f"checkpoint not found: {path}")
    # add_safe_globals, not the safe_globals() context manager: on exit that one removes its entries even when they
    # were allow-listed before (by `import cgc_fairseq`), which breaks later fairseq loads in this process.
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise ScriptError(f"cannot load {path} with weights_only=True: {str(e).splitlines()[0]}")
    except (RuntimeError, EOFError) as e:
        raise ScriptError(f"cannot read checkpoint {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def model_args(state):
    """The model's config (argparse.Namespace or dict) from a loaded checkpoint."""
    cfg = state.get("cfg")
    if cfg is not None and cfg.get("model") is not None:
        return cfg["model"]
    return state.get("args")


def arg(ns, name, default=None):
    return ns.get(name, default) if isinstance(ns, dict) else getattr(ns, name, default)


def load_for_data(path, data):
    """load_checkpoint(path), and a ScriptError when its dictionaries are not those of the data dir `data`."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ScriptError(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    try:
        layout.check_dictionaries(state["model"], data, path)
    except ValueError as e:
        raise ScriptError(str(e))
    return state
