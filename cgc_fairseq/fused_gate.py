"""The context gate's core as one fused CPU kernel (csrc/gate_core.cpp), for the head gate of the paper's design:

    out[b, h, p, n] = sum_r reduce[h, p, r] ReLU(LN(shift + sum_s M[s, n] x[b, h R + r, s]))    (B x H x P x N x d)

i.e. pooling (with W_e folded into the pooling weights M, shared by the batch: the decoder's prefix pooling), context
encoding and both channel reductions of a head,
one head of one sentence at a time (R x N x d), so the B x C x N x d context encoding is never held and a training
step keeps nothing of that size: the backward recomputes each head's (the PyTorch ops in ContextGate keep several
such tensors, or recompute them chunk by chunk). Built on first use by torch.utils.cpp_extension (cached in
~/.cache/torch_extensions under a name that carries the CPU's features; `make setup` builds it). Without a
compiler, on another device or dtype, with CGC_FUSED_GATE=0/off/false/no, or when a killed build left its lock,
ContextGate runs its PyTorch ops instead (the reference the tests pin the kernel to).
"""
import hashlib
import logging
import os
import platform
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)
SOURCE = Path(__file__).parent / "csrc" / "gate_core.cpp"
# -march=native: built for the machine that runs it (the build's name carries the CPU); reassociation lets the row
# sums over d vectorise
FLAGS = ["-O3", "-march=native", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
STALE_LOCK_SECONDS = 300  # a build lock older than this was left by a killed build
SWITCH = {"1": True, "on": True, "true": True, "yes": True, "0": False, "off": False, "false": False, "no": False}
_extension = None  # the built module, or False once building failed


def cpu_tag(cpuinfo=None):
    """A short name for this CPU's instruction set (a hash of /proc/cpuinfo's model and flags): a -march=native build
    is only reused on CPUs with the same features, e.g. in a home folder shared by cluster nodes."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = platform.processor()
    lines = sorted({line.strip() for line in cpuinfo.splitlines() if line.startswith(("model name", "flags"))})
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:12]


def enabled():
    """CGC_FUSED_GATE: unset, 1/on/true/yes uses the kernel; 0/off/false/no switches it off; anything else is an
    error."""
    value = os.environ.get("CGC_FUSED_GATE", "1").strip().lower()
    if value not in SWITCH:
        raise ValueError(f"CGC_FUSED_GATE={os.environ['CGC_FUSED_GATE']!r}: expected one of {', '.join(SWITCH)}")
    return SWITCH[value]


def build_lock_is_stale(name):
    """Wait while another process builds the kernel; True when its lock is older than STALE_LOCK_SECONDS (torch's
    own wait would never end)."""
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(name, False)) / "lock"
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return False
        if age > STALE_LOCK_SECONDS:
            logger.warning("cgc_fairseq: the fused gate kernel's build lock %s is %.0f s old (a killed build?); using "
                           "PyTorch ops (delete the lock to build the kernel)", lock, age)
            return True
        time.sleep(1)


def extension():
    """The compiled kernel (built on first use), or None where it cannot be had."""
    global _extension
    if _extension is None:
        name = f"cgc_gate_core_{cpu_tag()}"
        try:
            from torch.utils.cpp_extension import load

            _extension = False if build_lock_is_stale(name) else load(name=name, sources=[str(SOURCE)],
                                                                     extra_cflags=FLAGS)
        except Exception as error:  # no compiler or headers: the PyTorch ops serve
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            logger.warning("cgc_fairseq: the fused gate kernel could not be built (%s); using PyTorch ops", message)
            _extension = False
    return _extension or None


def serves(x):
    """Whether the kernel can compute the gate of x (CPU, fp32/fp64, switched on, built)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and enabled()
            and extension() is not None)


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
