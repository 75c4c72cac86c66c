"""The context gate of Context-Gated Convolution (Lin et al., ECCV 2020), carried from 2D to 1D.

Paper (2D, kernel c_out x c_in x k x k)        here (1D, kernel H x K, shared by the R = C/H channels of a head)
  pool the input to k x k                        pool the input over time to K bins (adaptive average pooling)
  E = ReLU(BN(pool(X) W_e)), W_e: k^2 -> d       E = ReLU(LN(pool(x) W_e)),  W_e: K -> d, d = K//2 + 1, shared by channels
  O = grouped 1x1 conv c_in -> c_out on E        O = grouped Linear C -> H (head gate) or C -> C (channel gate) on E
  G = sigmoid(E W_d1 (+) O W_d2)                 G = sigmoid(mean_head(E) W_d1 + O W_d2), W_d: d -> K, shared

Changes from the paper: LayerNorm over d instead of BatchNorm (batch statistics would mix sentences and break
incremental decoding); the input-channel branch is averaged over the channels of a head (the kernel of a head is
shared by its channels, and mean(E) W_d1 == mean(E W_d1) since W_d1 is linear).

Context sources, as pooling matrices over time (weights N x bins x T, so pool(x) = weights @ x):
  encoder: the whole sentence, non-pad positions only (N = 1);
  decoder, "prefix": causal, row t pools the conv inputs at positions <= t only (N = T; in incremental decoding one
    row over the history). A training step keeps no B x C x T x d tensor for the backward pass: the fused kernel
    (fused_gate.py) never holds one, and the PyTorch ops run in chunks recomputed in the backward (`causal_gate`);
  decoder, "source": the encoder output of the sentence being translated, pooled as the encoder pools (N = 1).
Control: context="static", G = sigmoid(a learned groups x K parameter), no input at all.

Precision: the gate is computed in fp32 even under bf16 autocast (pooling sums, LayerNorm statistics, sigmoid: a
bf16 sigmoid rounds to exactly 1 from logit ~5.5 on); only the gated convolution's product runs in bf16.
"""
from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import fused_gate

GATE_INIT_STD = 0.01  # decoders start near zero, so an untrained gate is ~ sigmoid(0) = 0.5 everywhere
CHUNK_ELEMENTS = 1 << 22  # causal_gate: B x C x positions x d elements of one chunk (16 MiB in fp32)


def bin_bounds(lengths, bins):
    """Bins of adaptive_avg_pool1d over `lengths` positions: [floor(i L / K), ceil((i+1) L / K)), i < K."""
    i = torch.arange(bins, device=lengths.device)
    lengths = lengths.unsqueeze(-1)
    return (i * lengths) // bins, ((i + 1) * lengths + bins - 1) // bins


def pooling_weights(lengths, bins, size, offset=0):
    """Adaptive average pooling as a matrix: (..., bins, size), row i = 1/|bin i| on the positions of bin i.

    lengths (...): positions pooled, starting at `offset` (a number or a tensor like lengths)."""
    start, end = bin_bounds(lengths, bins)
    if torch.is_tensor(offset):
        offset = offset.unsqueeze(-1)
    position = torch.arange(size, device=lengths.device)
    inside = (position >= (start + offset).unsqueeze(-1)) & (position < (end + offset).unsqueeze(-1))
    return inside.float() / (end - start).clamp(min=1).unsqueeze(-1)


def sentence_pooling(x, padding_mask, bins):
    """Encoder: pool the whole sentence, non-pad positions only -> 1 x B x bins x T weights."""
    T, B, _ = x.shape
    if padding_mask is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
        offset = 0
    else:
        real = ~padding_mask  # B x T; fairseq pads on one side, so the real tokens are contiguous
        lengths = real.sum(1)
        offset = real.long().argmax(1)  # first real position (> 0 for left padding)
    return pooling_weights(lengths, bins, T, offset).unsqueeze(0)


def causal_pooling(steps, bins, size):
    """Decoder: the context of step t pools positions 0..t only -> len(steps) x 1 x bins x size weights."""
    return pooling_weights(steps + 1, bins, size).unsqueeze(1)


def pool(weights, x):
    """weights N x B' x J x T (B' = 1 or B), x T x B x C -> B x C x N x J, the layout the gate computes in."""
    N, shared, J, T = weights.shape
    B, C = x.shape[1:]
    weights = weights.to(x.dtype)
    if shared == 1 and N == 1:  # one row (incremental step): (J x T) @ (T x B C) runs faster than the transpose
        return torch.mm(weights.view(J, T), x.reshape(T, B * C)).t().view(B, C, 1, J)
    if shared == 1:  # decoder: the same weights for the whole batch, one (B C x T) @ (T x N J) product
        return torch.mm(x.reshape(T, B * C).t(), weights.view(N * J, T).t()).view(B, C, N, J)
    assert N == 1  # encoder: weights per sentence
    return torch.bmm(x.permute(1, 2, 0), weights[0].transpose(1, 2)).view(B, C, 1, J)


def init_gate_decoder(linear, init_std):
    """N(0, init_std) weights and a zero bias; init_std="pytorch" keeps nn.Linear's default (the authors' 2D code)."""
    if init_std != "pytorch":
        nn.init.normal_(linear.weight, std=init_std)
        nn.init.zeros_(linear.bias)


class ContextGate(nn.Module):
    """G = sigmoid(...) with the kernel's shape, from a pooled context.

    context="pool": the paper's design (module docstring). context="mean": ablation; one mean vector per
    sentence/prefix through a small MLP (C -> d -> G*K). context="static": the no-context control,
    G = sigmoid(a learned groups x K parameter), the same for every input.
    gate="head": one gate per head (H x K, like LightConv's kernel); gate="channel": one per channel (C x K).
    init_std: std of the gate decoders' initial weights (biases start at 0), or "pytorch" for nn.Linear's default.
    """

    def __init__(self, channels, num_heads, kernel_size, context="pool", gate="head", init_std=GATE_INIT_STD):
        super().__init__()
        assert context in ("pool", "mean", "static") and gate in ("head", "channel")
        assert channels % num_heads == 0
        self.channels, self.num_heads, self.kernel_size = channels, num_heads, kernel_size
        self.context, self.gate = context, gate
        self.bins = kernel_size if context == "pool" else 1
        self.groups = num_heads if gate == "head" else channels  # gate rows
        d = kernel_size // 2 + 1
        R = channels // num_heads
        if context == "static":
            self.logits = nn.Parameter(torch.empty(self.groups, kernel_size))
            if init_std == "pytorch":  # as the bias of a gate decoder d -> K
                nn.init.uniform_(self.logits, -d**-0.5, d**-0.5)
            else:
                nn.init.normal_(self.logits, std=init_std)
            return
        if context == "pool":
            self.encode = nn.Linear(kernel_size, d)  # context encoding, shared over channels
            self.encode_norm = nn.LayerNorm(d)
            # channel interacting: grouped (per head) linear over channels, R -> 1 or R -> R
            out_per_head = 1 if gate == "head" else R
            self.interact = nn.Parameter(torch.empty(num_heads, out_per_head, R))
            self.interact_bias = nn.Parameter(torch.zeros(num_heads, out_per_head, 1))
            nn.init.normal_(self.interact, std=R**-0.5)
            self.decode_in = nn.Linear(d, kernel_size)  # gate decoding, input-channel branch
            self.decode_out = nn.Linear(d, kernel_size)  # gate decoding, output branch
            decoders = (self.decode_in, self.decode_out)
        else:
            self.mean_hidden = nn.Linear(channels, d)
            self.decode_out = nn.Linear(d, self.groups * kernel_size)
            decoders = (self.decode_out,)
        for m in decoders:
            init_gate_decoder(m, init_std)

    def constant(self, batch):
        """context="static": G, 1 x batch x groups x K."""
        return torch.sigmoid(self.logits).expand(1, batch, self.groups, self.kernel_size)

    def forward(self, x, pooling):
        """x: T x B x C; pooling: N x B' x bins x T weights -> G: N x B x groups x K, in (0, 1)."""
        return torch.sigmoid(self.logits_of(x, pooling))

    def causal_gate(self, x):
        """G of every prefix of x (row t pools x[:t + 1]): forward(x, causal_pooling(arange(T), bins, T)). The fused
        kernel keeps nothing of size B x C x T x d for the backward pass; the PyTorch ops, under autograd, run in
        chunks of positions, each seeing only the prefix it needs and recomputed in the backward pass."""
        T, B, C = x.shape
        pooling = causal_pooling(torch.arange(T, device=x.device), self.bins, T)
        recompute = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        if not recompute or self.fused(x, pooling):
            return self(x, pooling)
        chunk = max(1, CHUNK_ELEMENTS // (B * C * (self.kernel_size // 2 + 1)))
        logits = []
        for start in range(0, T, chunk):
            end = min(T, start + chunk)
            pooling = causal_pooling(torch.arange(start, end, device=x.device), self.bins, end)
            logits.append(checkpoint(self.logits_of, x[:end], pooling, use_reentrant=False))
        return torch.sigmoid(torch.cat(logits))

    def fused(self, x, pooling):
        """Whether the fused kernel computes this gate: the paper's head gate over several context rows pooled alike
        for the batch (a decoder's full pass, where the B x C x N x d context encoding is the cost), on CPU, not
        while exporting. One row per sentence (encoder, incremental step) runs faster as the PyTorch ops."""
        N, shared = pooling.shape[:2]
        return (N > 1 and shared == 1 and self.context == "pool" and self.gate == "head"
                and not torch.compiler.is_compiling() and fused_gate.serves(x))

    def logits_of(self, x, pooling):
        """The gate before the sigmoid, in fp32 (or fp64): N x B x groups x K."""
        autocasting = torch.is_autocast_enabled(x.device.type)
        with torch.autocast(x.device.type, enabled=False) if autocasting else nullcontext():
            x = x if x.dtype == torch.float64 else x.float()
            return self.fp32_logits(x, pooling.to(x.dtype))

    def fp32_logits(self, x, pooling):
        H, K = self.num_heads, self.kernel_size
        if self.context == "mean":
            mean = pool(pooling, x).squeeze(-1).transpose(1, 2)  # B x N x C
            B, N, _ = mean.shape
            hidden = F.relu(self.mean_hidden(mean))  # B x N x d
            return self.decode_out(hidden).view(B, N, self.groups, K).transpose(0, 1)
        folded = torch.matmul(self.encode.weight, pooling)  # N x B' x d x T: W_e folded into the pooling weights
        # context encoding E = ReLU(LN(pool(x) W_e)), then channel interacting
        if self.gate == "head":  # both reductions over a head's channels at once: interact and the mean
            R = self.channels // H
            reduce = torch.cat([self.interact, self.interact.new_full((H, 1, R), 1 / R)], dim=1)  # H x 2 x R
            if self.fused(x, pooling):
                both = fused_gate.pooled_head_reduction(x, folded, self.encode.bias, self.encode_norm, reduce)
            else:
                E = F.relu(self.encode_norm(pool(folded, x) + self.encode.bias))  # B x C x N x d
                B, C, N, d = E.shape
                both = torch.matmul(reduce, E.view(B, H, R, N * d)).view(B, H, 2, N, d)
            O = both[:, :, 0] + self.interact_bias  # channel interacting
            return (self.decode_in(both[:, :, 1]) + self.decode_out(O)).permute(2, 0, 1, 3)  # N x B x H x K
        E = F.relu(self.encode_norm(pool(folded, x) + self.encode.bias))
        B, C, N, d = E.shape
        O = torch.matmul(self.interact, E.view(B, H, C // H, N * d)) + self.interact_bias  # channel interacting
        logits = self.decode_in(E) + self.decode_out(O.view(B, C, N, d))
        return logits.permute(2, 0, 1, 3)  # gate decoding: N x B x C x K

    def extra_repr(self):
        return f"context={self.context}, gate={self.gate}, bins={self.bins}"
