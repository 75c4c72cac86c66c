"""The context gate's core as one fused CPU kernel (csrc/gate_core.cpp), for the head gate of the paper's design:

    out[b, h, p, n] = sum_r reduce[h, p, r] ReLU(LN(shift + sum_s M[s, n] x[b, h R + r, s]))    (B x H x P x N x d)

i.e. pooling (with W_e folded into the pooling weights M, shared by the batch: the decoder's prefix pooling), context
encoding and both channel reductions of a head,
one head of one sentence at a time (R x N x d), so the B x C x N x d context encoding is never held and a training
step keeps nothing of that size: the backward recomputes each head's (the PyTorch ops in ContextGate keep several
such tensors, or recompute them chunk by chunk). Built on first use by torch.utils.cpp_extension (cached in
~/.cache/torch_extensions; `make setup` builds it). Without a compiler, on another device or dtype, or with
CGC_FUSED_GATE=0, ContextGate runs its PyTorch ops instead (the reference the tests pin the kernel to).
"""
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)
SOURCE = Path(__file__).parent / "csrc" / "gate_core.cpp"
# -march=native: built on the machine that runs it; reassociation lets the row sums over d vectorise
FLAGS = ["-O3", "-march=native", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
_extension = None  # the built module, or False once building failed


def extension():
    """The compiled kernel (built on first use), or None where it cannot be had."""
    global _extension
    if _extension is None:
        try:
            from torch.utils.cpp_extension import load

            _extension = load(name="cgc_gate_core", sources=[str(SOURCE)], extra_cflags=FLAGS)
        except Exception as error:  # no compiler or headers: the PyTorch ops serve
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            logger.warning("cgc_fairseq: the fused gate kernel could not be built (%s); using PyTorch ops", message)
            _extension = False
    return _extension or None


def serves(x):
    """Whether the kernel can compute the gate of x (CPU, fp32/fp64, built, not switched off)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and os.environ.get("CGC_FUSED_GATE", "1") != "0" and extension() is not None)


class PooledHeadReduction(torch.autograd.Function):
    """x B x C x T, M T x N x d, shift/weight/bias d, reduce H x P x R -> B x H x P x N x d."""

    @staticmethod
    def forward(ctx, x, M, shift, weight, bias, reduce, eps):
        ctx.save_for_backward(x, M, shift, weight, bias, reduce)
        ctx.eps = eps
        return extension().forward(x, M, shift, weight, bias, reduce, eps)

    @staticmethod
    def backward(ctx, grad):
        x, M, shift, weight, bias, reduce = ctx.saved_tensors
        return (*extension().backward(grad, x, M, shift, weight, bias, reduce, ctx.eps), None)


def pooled_head_reduction(x, folded, shift, norm, reduce):
    """x T x B x C (a conv's input), folded N x 1 x d x T (W_e @ pooling weights shared by the batch), norm a
    LayerNorm(d), reduce H x P x R -> B x H x P x N x d."""
    return PooledHeadReduction.apply(x.permute(1, 2, 0).contiguous(), folded[:, 0].permute(2, 0, 1).contiguous(),
                                     shift, norm.weight, norm.bias, reduce, norm.eps)
