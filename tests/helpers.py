"""Shared helpers for the model tests: build fairseq models from command-line style arguments, no data needed."""
from pathlib import Path
from types import SimpleNamespace

import torch
from fairseq import options
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY

import cgc_fairseq  # noqa: F401  (registers the model and archs)
from cgc_fairseq.context_gate import ContextGate, StaticGate

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "cgc_fairseq")
TINY = ("--encoder-embed-dim 16 --decoder-embed-dim 16 --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 "
        "--encoder-attention-heads 4 --decoder-attention-heads 4 --encoder-layers 2 --decoder-layers 2 "
        "--encoder-kernel-size-list [3,7] --decoder-kernel-size-list [3,7]").split()


def dictionary(size=20):
    d = Dictionary()
    for i in range(size):
        d.add_symbol(f"w{i}")
    return d


def parse(arch, *extra):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, ["unused-data", "--arch", arch, "--user-dir", USER_DIR, *extra])


def build(arch, *extra, seed=0, vocab=None):
    """A model of `arch` (fairseq's own argument parsing and arch defaults) over a small joined dictionary."""
    args = parse(arch, *extra)
    torch.manual_seed(seed)
    return build_from_args(arch, args, vocab)


def build_from_args(arch, args, vocab=None):
    """A model of `arch` from an args namespace as given (e.g. a checkpoint's), over a small joined dictionary."""
    vocab = vocab or dictionary()
    task = SimpleNamespace(source_dictionary=vocab, target_dictionary=vocab)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, task)


def gates(model):
    return [m for m in model.modules() if isinstance(m, (ContextGate, StaticGate))]


def randomize_gates(model, std=0.5, seed=1):
    """Non-trivial gate weights: an untrained gate is near-constant and would hide bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in gates(model):
            for p in gate.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * std)


def tokens(vocab, batch, length, seed=0, left_pad=True):
    """Random sentences of lengths 1..length, each ending in EOS, padded to one tensor."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length
    out = torch.full((batch, length + 1), vocab.pad())
    for b, n in enumerate(lengths.tolist()):
        sent = torch.cat([torch.randint(vocab.nspecial, len(vocab), (n,), generator=g), torch.tensor([vocab.eos()])])
        if left_pad:
            out[b, out.size(1) - n - 1:] = sent
        else:
            out[b, : n + 1] = sent
    return out, lengths + 1
