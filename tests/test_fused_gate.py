"""The fused gate kernel (cgc_fairseq/csrc/gate_core.cpp) against the gate's PyTorch ops: values and gradients of the
decoder's prefix gate, where each runs, gradcheck, and what a training step keeps."""
import pytest
import torch

from cgc_fairseq import fused_gate
from cgc_fairseq.context_gate import ContextGate, causal_pooling

pytestmark = pytest.mark.skipif(fused_gate.extension() is None, reason="the fused kernel could not be built here")


def gate_of(kernel_size, channels=16, heads=4, dtype=torch.float64, seed=0):
    gate = ContextGate(channels, heads, kernel_size).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in gate.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)
    return gate


def values_and_gradients(gate, x, fused, monkeypatch):
    """The decoder's prefix gate of a full pass and its gradients, by the kernel or by the PyTorch ops."""
    monkeypatch.setenv("CGC_FUSED_GATE", "1" if fused else "0")
    pooling = causal_pooling(torch.arange(x.size(0)), gate.bins, x.size(0))
    assert gate.fused(x, pooling) == fused
    out = gate.causal_gate(x)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return out, torch.autograd.grad((out * weights).sum(), [x, *gate.parameters()])


@pytest.mark.parametrize("T", [2, 9, 40])  # below and above the kernel widths
@pytest.mark.parametrize("kernel_size", [3, 5, 7, 15, 31])  # d = 2, 3 (a width without its own instance), 4, 8, 16
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_equals_the_pytorch_ops(T, kernel_size, dtype, monkeypatch):
    gate = gate_of(kernel_size, dtype=dtype)
    x = torch.randn(T, 3, 16, dtype=dtype, requires_grad=True)
    fused, fused_grads = values_and_gradients(gate, x, True, monkeypatch)
    ops, ops_grads = values_and_gradients(gate, x, False, monkeypatch)
    # fp32: LayerNorm over d = 2 is ill-conditioned (xhat = +-1), its gradients differ by up to ~3e-4 in fp32
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(fused, ops, rtol=0, atol=atol)
    for a, b in zip(fused_grads, ops_grads):
        torch.testing.assert_close(a, b, rtol=1e-9 if dtype == torch.float64 else 1e-3, atol=atol * 1e3)


def test_gradcheck():
    torch.manual_seed(0)
    B, H, R, T, N, d = 2, 2, 3, 5, 4, 3
    args = (torch.randn(B, H * R, T, dtype=torch.float64), torch.randn(T, N, d, dtype=torch.float64),
            torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64),
            torch.randn(d, dtype=torch.float64), torch.randn(H, 2, R, dtype=torch.float64))
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *a: fused_gate.PooledHeadReduction.apply(*a, 1e-5), args)


@pytest.mark.parametrize("fused", [True, False])
def test_a_training_step_keeps_nothing_of_the_context_encodings_size(fused, monkeypatch):
    """The prefix gate of a full pass: what autograd saves is far below one B x C x T x d tensor, kernel or not."""
    monkeypatch.setenv("CGC_FUSED_GATE", "1" if fused else "0")
    gate = gate_of(15, channels=128, dtype=torch.float32)
    x = torch.randn(40, 16, 128, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        gate.causal_gate(x)
    T, B, C = x.shape
    # measured: 0.30 of one (kernel: x, its B x C x T copy, the pooling weights), 0.22 (ops, in chunks); 3.6 (ops in
    # one go, as before the chunks)
    assert sum(saved) < B * C * T * (15 // 2 + 1) / 2
