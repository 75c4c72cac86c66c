"""Context-gated LightConv / DynamicConv: fairseq's TBC convolutions with the kernel W' = W (.) G.

  LightConv:   W  = softmax(W_h)               H x K, one kernel per head, shared by all positions
  DynamicConv: W  = softmax(Linear(x_t))_h     T x H x K, predicted per position
  CGC:         W' = W (.) G,  G = ContextGate(context(x)),  optionally renormalised over K (--cgc-renorm)

The full pass turns the (per position) kernels into band matrices and does one bmm, as fairseq's
_forward_expanded does; incremental decoding convolves the last K inputs kept in the incremental state.
With the gate switched off the result equals fairseq's LightweightConv1dTBC / DynamicConv1dTBC.
"""
from dataclasses import dataclass

import torch
from fairseq import utils
from fairseq.modules import DynamicConv1dTBC, LightweightConv1dTBC

from .context_gate import ContextGate, causal_pooling, sentence_pooling


@dataclass
class GateConfig:
    context: str = "pool"  # "pool" (paper) or "mean" (ablation)
    gate: str = "head"  # "head" (H x K) or "channel" (C x K)
    renorm: bool = False  # renormalise W' over the kernel positions


def band_conv(x, kernel, padding_l):
    """y[t] = sum_k kernel[t, k] * x[t + k - padding_l], as one bmm with band matrices.

    x: T x B x C; kernel: (B*G) x T x K, one kernel per group of C/G channels and per position -> T x B x C.
    """
    T, B, C = x.shape
    BG, _, K = kernel.shape
    x = x.reshape(T, BG, C * B // BG).transpose(0, 1)  # (B*G) x T x R
    # No branch on T (fairseq's _forward_expanded narrows the kernel when T < K; the T x T band is the same either
    # way), so that torch.export keeps T dynamic (cgc_fairseq/export.py).
    band = kernel.new_zeros(BG, T, T + K - 1)
    band.as_strided((BG, T, K), (T * (T + K - 1), T + K, 1)).copy_(kernel)  # row t holds kernel[t] at t..t+K-1
    band = band.narrow(2, padding_l, T)  # (B*G) x T x T
    return torch.bmm(band, x).transpose(0, 1).reshape(T, B, C)


class ContextGatedConv:
    """Mixin over fairseq's LightweightConv1dTBC / DynamicConv1dTBC (which own the parameters, the weight
    dropout and the input buffer of incremental decoding). Subclasses give `base_kernel` and `conv_bias`."""

    def init_context_gate(self, causal, gate_config):
        self.causal = causal  # decoder: the context of step t uses positions <= t only
        self.renorm = gate_config is not None and gate_config.renorm
        self.context_gate = (
            ContextGate(self.input_size, self.num_heads, self.kernel_size, gate_config.context, gate_config.gate)
            if gate_config is not None
            else None
        )
        self.padding_mask = None  # encoder: B x T, set by the encoder for the length of a forward pass
        self.record_gates = False  # keep the last gate in `last_gate` (for plots)
        self.last_gate = None

    @classmethod
    def like(cls, conv, causal, gate_config):
        """A gated conv with the hyper-parameters of a fairseq conv (fresh parameters)."""
        return cls(
            conv.input_size,
            kernel_size=conv.kernel_size,
            padding_l=conv.padding_l,
            num_heads=conv.num_heads,
            weight_dropout=conv.weight_dropout_module.p,
            weight_softmax=conv.weight_softmax,
            causal=causal,
            gate_config=gate_config,
        )

    def forward(self, x, incremental_state=None):
        """x: T x B x C (T = 1 in incremental decoding) -> T x B x C."""
        T, B, C = x.shape
        kernel = self.base_kernel(x)  # N x B' x H x K (N, B' = 1 when shared)
        if self.context_gate is not None:
            gate = self.context_gate(*self.context(x, incremental_state))  # N x B x (H|C) x K
            if self.record_gates:
                self.last_gate = gate.detach()
            if gate.size(2) != kernel.size(2):  # per-channel gate: every channel gets its own kernel
                kernel = kernel.repeat_interleave(C // self.num_heads, dim=2)
            kernel = kernel * gate  # W' = W (.) G
            if self.renorm:
                kernel = kernel / kernel.sum(-1, keepdim=True)
        G, K = kernel.size(2), kernel.size(3)
        kernel = kernel.expand(T, B, G, K).reshape(T, B * G, K).transpose(0, 1)  # (B*G) x T x K
        kernel = self.weight_dropout_module(kernel)  # DropConnect on the kernel taps
        if incremental_state is not None:
            out = self._step(x, kernel, incremental_state)
        else:
            out = band_conv(x, kernel, self.padding_l)
        if self.conv_bias is not None:
            out = out + self.conv_bias.view(1, 1, -1)
        return out

    def context(self, x, incremental_state):
        """(inputs, pooling weights) of the context: N = 1 row for the encoder, one row per decoder position."""
        bins = self.context_gate.bins
        if not self.causal:
            return x, sentence_pooling(x, self.padding_mask, bins)
        if incremental_state is not None:  # pool the history of inputs, kept in the incremental state
            history = utils.get_incremental_state(self, incremental_state, "context_history")
            x = x if history is None else torch.cat([history, x], dim=0)
            utils.set_incremental_state(self, incremental_state, "context_history", x)
            step = torch.full((1,), x.size(0) - 1, dtype=torch.long, device=x.device)
            return x, causal_pooling(step, bins, x.size(0))
        return x, causal_pooling(torch.arange(x.size(0), device=x.device), bins, x.size(0))

    def _step(self, x, kernel, incremental_state):
        """One decoding step: x 1 x B x C, kernel (B*G) x 1 x K, over the last K inputs."""
        _, B, C = x.shape
        buffer = self._get_input_buffer(incremental_state)
        window = x.unsqueeze(3) if buffer is None else torch.cat([buffer, x.unsqueeze(3)], dim=3)
        if self.kernel_size > 1:
            self._set_input_buffer(incremental_state, window[:, :, :, -self.kernel_size + 1 :])
        width = window.size(3)
        BG = kernel.size(0)
        out = torch.bmm(window.reshape(BG, C * B // BG, width), kernel[:, 0, -width:].unsqueeze(2))
        return out.view(1, B, C)

    def reorder_incremental_state(self, incremental_state, new_order):
        super().reorder_incremental_state(incremental_state, new_order)
        history = utils.get_incremental_state(self, incremental_state, "context_history")
        if history is not None:
            utils.set_incremental_state(self, incremental_state, "context_history", history.index_select(1, new_order))


class GatedLightweightConv1dTBC(ContextGatedConv, LightweightConv1dTBC):
    """LightConv with a context gate: W' = softmax(W) (.) G."""

    def __init__(self, input_size, kernel_size=1, padding_l=None, num_heads=1, weight_dropout=0.0,
                 weight_softmax=False, bias=False, causal=False, gate_config=None):
        super().__init__(input_size, kernel_size, padding_l, num_heads, weight_dropout, weight_softmax, bias)
        self.init_context_gate(causal, gate_config)

    @property
    def conv_bias(self):
        return self.bias

    def base_kernel(self, x):
        weight = self.weight.view(1, 1, self.num_heads, self.kernel_size)
        return utils.softmax(weight, dim=-1).type_as(weight) if self.weight_softmax else weight


class GatedDynamicConv1dTBC(ContextGatedConv, DynamicConv1dTBC):
    """DynamicConv with a context gate: W'_t = softmax(Linear(x_t)) (.) G_t."""

    def __init__(self, input_size, kernel_size=1, padding_l=None, num_heads=1, weight_dropout=0.0,
                 weight_softmax=False, causal=False, gate_config=None):
        super().__init__(input_size, kernel_size, padding_l, num_heads, weight_dropout, weight_softmax)
        self.init_context_gate(causal, gate_config)

    def base_kernel(self, x):
        T, B, _ = x.shape
        weight = self.weight_linear(x).view(T, B, self.num_heads, self.kernel_size)
        return torch.softmax(weight, dim=-1) if self.weight_softmax else weight
