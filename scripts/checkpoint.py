"""Reading a fairseq checkpoint file safely: torch.load(weights_only=True) with only argparse.Namespace allow-listed,
and the model config it holds."""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

from .cli import ScriptError


def load_checkpoint(path):
    """torch.load(weights_only=True) of a fairseq checkpoint, with only argparse.Namespace allow-listed."""
    import torch

    import cgc_fairseq  # noqa: F401  (registers the archs; allow-lists argparse.Namespace)

    path = Path(path)
    if not path.is_file():
        raise ScriptError(f"checkpoint not found: {path}")
    # add_safe_globals, not the safe_globals() context manager: on exit that one removes its entries even when they
    # were allow-listed before (by `import cgc_fairseq`), which breaks later fairseq loads in this process.
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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
