"""Context-gated LightConv / DynamicConv: fairseq's TBC convolutions with the kernel W' = W (.) G.

  LightConv:   W  = softmax(W_h)               H x K, one kernel per head, shared by all positions
  DynamicConv: W  = softmax(Linear(x_t))_h     T x H x K, predicted per position
  CGC:         W' = W (.) G,  G = ContextGate(context),  optionally renormalised over K (--cgc-renorm)

The context: the encoder's conv input (whole sentence); the decoder's conv input up to each position ("prefix") or
the encoder output of the sentence being translated ("source", one gate per sentence); none for context="static".

The full pass turns the (per position) kernels into band matrices and does one bmm, as fairseq's
_forward_expanded does; incremental decoding convolves the last K inputs kept in the incremental state.
With the gate switched off the result equals fairseq's LightweightConv1dTBC / DynamicConv1dTBC.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional, Union

import torch
from fairseq import utils
from fairseq.modules import DynamicConv1dTBC, LightweightConv1dTBC

from .context_gate import (GATE_INIT_STD, ContextGate, StaticGate, causal_pooling, running_sum_pooling,
                           sentence_pooling)


@dataclass
class GateConfig:
    """The gate of one side's convs. The defaults are the code before each --cgc-* option existed (models.py: what
    a checkpoint's args without the option mean); the command line's defaults are models.CGC_DEFAULTS."""

    context: str = "pool"  # "pool" (paper), "mean" (ablation) or "static" (no context: the control)
    norm: str = "latent"  # context="pool": the context encoding's norm (ContextGate)
    gate: str = "head"  # "head" (H x K) or "channel" (C x K)
    renorm: bool = False  # renormalise W' over the kernel positions
    init_std: Union[float, str] = GATE_INIT_STD  # the gate decoders' initial weights, or "pytorch"
    decoder_context: str = "prefix"  # decoder: "prefix" (causal, per position) or "source" (encoder output)
    source_channels: Optional[int] = None  # decoder_context="source": the encoder output's channels


@contextmanager
def conv_inputs(layers, **inputs):
    """Give each layer's conv the extra inputs of one forward pass (padding_mask, source), then take them back."""
    for layer in layers:
        for name, value in inputs.items():
            setattr(layer.conv, name, value)
    try:
        yield
    finally:
        for layer in layers:
            for name in inputs:
                setattr(layer.conv, name, None)


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
        # where the context comes from: "sentence" (encoder), "prefix" or "source" (decoder)
        self.context_source = "sentence" if not causal else getattr(gate_config, "decoder_context", None)
        self.context_gate = None
        if gate_config is not None and gate_config.context == "static":
            groups = self.num_heads if gate_config.gate == "head" else self.input_size
            self.context_gate = StaticGate(groups, self.kernel_size, gate_config.init_std)
        elif gate_config is not None:
            channels = gate_config.source_channels if self.context_source == "source" else self.input_size
            self.context_gate = ContextGate(channels, self.num_heads, self.kernel_size, gate_config.context,
                                            gate_config.gate, gate_config.init_std, gate_config.norm)
        self.padding_mask = None  # encoder: B x T, set by the encoder for the length of a forward pass
        self.source = None  # decoder, "source" context: (encoder_out S x B x C, its padding mask B x S or None)
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
            gate = self.gate(x, incremental_state)  # N x B x (H|C) x K
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

    def gate(self, x, incremental_state):
        """G: N x B x (H|C) x K; N = T for the decoder's "prefix" context in a full pass, else 1."""
        gate = self.context_gate
        if isinstance(gate, StaticGate):
            return gate(x.size(1))
        if self.context_source == "sentence":
            return gate(x, sentence_pooling(x, self.padding_mask, gate.bins))
        if self.context_source == "source":
            return self.source_gate(incremental_state)
        if incremental_state is None:
            return gate.causal_gate(x)
        history = utils.get_incremental_state(self, incremental_state, "context_history")
        if history is not None:  # an explicit history of inputs (cgc_fairseq/export.py): pool it whole
            x = torch.cat([history, x], dim=0)
            step = torch.full((1,), x.size(0) - 1, dtype=torch.long, device=x.device)
            return gate(x, causal_pooling(step, gate.bins, x.size(0)))
        return self.prefix_step_gate(x, incremental_state)

    def prefix_step_gate(self, x, incremental_state):
        """The "prefix" gate of one incremental step, 1 x B x (H|C) x K, from running sums of the conv inputs: each bin
        of the history's pooling is a difference of two sums, so a step costs the same however long the history.
        State: `context_sums` (capacity x columns x C, fp32; row j = sum of the first j inputs, written once) and
        `context_rows` (j + 1 x B: the column of row j that each current hypothesis reads; a beam reorder permutes
        these indices only)."""
        sums = utils.get_incremental_state(self, incremental_state, "context_sums")
        rows = utils.get_incremental_state(self, incremental_state, "context_rows")
        B, C = x.shape[1:]
        if sums is None:
            sums = x.new_zeros(16, B, C, dtype=torch.float32)
            rows = torch.arange(B, device=x.device).unsqueeze(0)
        t = rows.size(0)  # inputs so far, this one included after the update
        if t == sums.size(0):  # full: double the capacity
            sums = torch.cat([sums, torch.zeros_like(sums)])
        if B > sums.size(1):  # more hypotheses than columns (a reorder that duplicates more than it drops)
            sums = torch.cat([sums, sums.new_zeros(sums.size(0), B - sums.size(1), C)], dim=1)
        sums[t, :B] = sums[t - 1, rows[t - 1]] + x[0].float()
        rows = torch.cat([rows, torch.arange(B, device=x.device).unsqueeze(0)])
        utils.set_incremental_state(self, incremental_state, "context_sums", sums)
        utils.set_incremental_state(self, incremental_state, "context_rows", rows)
        return self.context_gate(*running_sum_pooling(sums, rows, self.context_gate.bins))

    def source_gate(self, incremental_state):
        """The "source" context's gate, 1 x B x (H|C) x K: once per sentence (kept in the incremental state)."""
        if incremental_state is not None:
            cached = utils.get_incremental_state(self, incremental_state, "source_gate")
            if cached is not None:
                return cached
        if self.source is None:
            raise ValueError("a decoder conv with --cgc-decoder-context source needs the encoder output")
        encoder_out, padding_mask = self.source
        gate = self.context_gate(encoder_out, sentence_pooling(encoder_out, padding_mask, self.context_gate.bins))
        if incremental_state is not None:
            utils.set_incremental_state(self, incremental_state, "source_gate", gate)
        return gate

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
        for key in ("context_rows", "source_gate"):  # both have the batch in dim 1
            value = utils.get_incremental_state(self, incremental_state, key)
            if value is not None:
                utils.set_incremental_state(self, incremental_state, key, value.index_select(1, new_order))


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
        return torch.softmax(weight.float(), dim=-1) if self.weight_softmax else weight  # fp32 under autocast
