"""The context gate of Context-Gated Convolution (Lin et al., ECCV 2020), carried from 2D to 1D.

Paper (2D, kernel c_out x c_in x k x k)        here (1D, kernel H x K, shared by the R = C/H channels of a head)
  pool the input to k x k                        pool the input over time to K bins (adaptive average pooling)
  E = ReLU(BN(pool(X) W_e)), W_e: k^2 -> d       E = ReLU(LN(pool(x) W_e)),  W_e: K -> d, d = K//2 + 1, shared by channels
  O = grouped 1x1 conv c_in -> c_out on E        O = grouped Linear C -> H (head gate) or C -> C (channel gate) on E
  G = sigmoid(E W_d1 (+) O W_d2)                 G = sigmoid(mean_head(E) W_d1 + O W_d2), W_d: d -> K, shared

Changes from the paper: the norm (--cgc-norm, ContextGate) is by default a LayerNorm over d ("latent") instead of
the authors' BatchNorm ("batch"), which needs a whole-sentence context: over a decoder prefix, batch statistics of
all positions would let later target positions shape earlier ones in training; the input-channel branch is
averaged over the channels of a head (the kernel of a head is shared by its channels, and mean(E) W_d1 ==
mean(E W_d1) since W_d1 is linear).

Context sources, as pooling matrices over time (weights N x bins x T, so pool(x) = weights @ x):
  encoder: the whole sentence, non-pad positions only (N = 1);
  decoder, "prefix": causal, row t pools the conv inputs at positions <= t only (N = T; in incremental decoding one
    row, read from running sums: `running_sum_pooling`). A training step keeps no B x C x T x d tensor for the backward pass: the fused kernel
    (fused_gate.py) never holds one, and the PyTorch ops run in chunks recomputed in the backward (`causal_gate`);
  decoder, "source": the encoder output of the sentence being translated, pooled as the encoder pools (N = 1).
Control (StaticGate): context="static", G = sigmoid(a learned groups x K parameter), no input at all.

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


def running_sum_pooling(sums, rows, bins):
    """The pooling of the last of t = rows.size(0) - 1 inputs' prefix from running sums (row j: the sum of the first
    j inputs; rows[j]: the column of row j for each current sentence) -> (inputs U x B x C, weights 1 x 1 x K x U)
    for ContextGate: bin i = (sum[end_i] - sum[start_i]) / (end_i - start_i), read from the U <= min(t + 1, 2K)
    distinct bin edges, so a step never reads more than the history and at most 2K rows however long it grows."""
    start, end = bin_bounds(torch.tensor(rows.size(0) - 1, device=sums.device), bins)
    edges, where = torch.unique(torch.cat([end, start]), return_inverse=True)  # U rows; bin i: where[i], where[K + i]
    inputs = sums[edges.unsqueeze(1), rows[edges]]  # U x B x C
    size = (end - start).clamp(min=1).float()
    weights = sums.new_zeros(bins, edges.numel())
    weights[torch.arange(bins), where[:bins]] += 1 / size
    weights[torch.arange(bins), where[bins:]] -= 1 / size  # start == end never happens: bins are never empty
    return inputs, weights.view(1, 1, bins, -1)


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
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)


NORMS = ("latent", "batch", "channels", "none")


def encoding_norm(norm, channels, d):
    """The norm of the context encoding (B x C x N x d) that --cgc-norm names, as a module (see ContextGate)."""
    if norm == "latent":
        return nn.LayerNorm(d)
    if norm == "batch":
        return nn.BatchNorm1d(channels)
    if norm == "channels":
        return nn.LayerNorm([channels, d])
    return nn.Identity()


class ContextGate(nn.Module):
    """G = sigmoid(...) with the kernel's shape, from a pooled context.

    context="pool": the paper's design (module docstring), in three steps named as in the paper:
      E = context_encoding(...)   B x C x N x d       ReLU(norm(pool(x) W_e))
      O = channel_interacting(E)  B x H x P x N x d   grouped linear over the R channels of a head (P = 1 or R)
      G = sigmoid(gate_decoding(E, O))                 E W_d1 (head gate: averaged over the head) + O W_d2
    norm (--cgc-norm) of the encoding: "latent" LayerNorm over each channel's d values (with biases);
      "batch" the authors' 2D code: BatchNorm1d(C) (statistics over the batch and d in training, running statistics
      in evaluation), one for each branch (E for gate decoding, E' for channel interacting), BatchNorm + ReLU after
      the channel interaction, no biases in W_e, the interaction and W_d (needs a whole-sentence context);
      "channels" LayerNorm over all C x d values of one context row (keeps the channels' relative magnitudes);
      "none" no norm before the ReLU.
    context="mean": ablation; one mean vector per sentence/prefix through a small MLP (C -> d -> G*K).
    The no-context control is StaticGate.
    gate="head": one gate per head (H x K, like LightConv's kernel); gate="channel": one per channel (C x K).
    init_std: std of the gate decoders' initial weights (biases start at 0), or "pytorch" for nn.Linear's default.
    """

    def __init__(self, channels, num_heads, kernel_size, context="pool", gate="head", init_std=GATE_INIT_STD,
                 norm="latent"):
        super().__init__()
        assert context in ("pool", "mean") and gate in ("head", "channel") and norm in NORMS
        assert channels % num_heads == 0
        self.channels, self.num_heads, self.kernel_size = channels, num_heads, kernel_size
        self.context, self.gate, self.norm = context, gate, norm
        self.bins = kernel_size if context == "pool" else 1
        self.groups = num_heads if gate == "head" else channels  # gate rows
        self.record_encoding = False  # keep the standardised context encoding in `last_encoding` (for statistics)
        self.last_encoding = None
        d = kernel_size // 2 + 1
        R = channels // num_heads
        if context == "pool":
            bias = norm != "batch"  # the authors' ce, ci, gd and gd2 have none (their BatchNorms shift)
            self.encode = nn.Linear(kernel_size, d, bias=bias)  # context encoding, shared over channels
            self.encode_norm = encoding_norm(norm, channels, d)
            # channel interacting: grouped (per head) linear over channels, R -> 1 or R -> R
            out_per_head = 1 if gate == "head" else R
            self.interact = nn.Parameter(torch.empty(num_heads, out_per_head, R))
            self.interact_bias = nn.Parameter(torch.zeros(num_heads, out_per_head, 1)) if bias else None
            nn.init.normal_(self.interact, std=R**-0.5)
            if norm == "batch":
                self.interact_in_norm = nn.BatchNorm1d(channels)  # the authors' ci_bn2: E' for channel interacting
                self.interact_norm = nn.BatchNorm1d(num_heads * out_per_head)  # their ci_bn, on O
            self.decode_in = nn.Linear(d, kernel_size, bias=bias)  # gate decoding, input-channel branch
            self.decode_out = nn.Linear(d, kernel_size, bias=bias)  # gate decoding, output branch
            decoders = (self.decode_in, self.decode_out)
        else:
            self.mean_hidden = nn.Linear(channels, d)
            self.decode_out = nn.Linear(d, self.groups * kernel_size)
            decoders = (self.decode_out,)
        for m in decoders:
            init_gate_decoder(m, init_std)

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
        """Whether the fused kernel computes this gate: the paper's head gate with the "latent" norm over several
        context rows pooled alike for the batch (a decoder's full pass, where the B x C x N x d context encoding is
        the cost), on CPU, not while exporting or recording. One row per sentence (encoder, incremental step) runs
        faster as the PyTorch ops."""
        N, shared = pooling.shape[:2]
        return (N > 1 and shared == 1 and self.context == "pool" and self.gate == "head" and self.norm == "latent"
                and not self.record_encoding and not torch.compiler.is_compiling() and fused_gate.serves(x))

    def logits_of(self, x, pooling):
        """The gate before the sigmoid, in fp32 (or fp64): N x B x groups x K."""
        autocasting = torch.is_autocast_enabled(x.device.type)
        with torch.autocast(x.device.type, enabled=False) if autocasting else nullcontext():
            x = x if x.dtype == torch.float64 else x.float()
            pooling = pooling.to(x.dtype)
            if self.context == "mean":
                return self.mean_logits(x, pooling)
            if self.fused(x, pooling):
                return self.fused_logits(x, pooling)
            norms = (self.encode_norm, self.interact_in_norm) if self.norm == "batch" else (self.encode_norm,)
            E, *separate = self.context_encoding(x, pooling, norms)  # "batch": E' of its own for the interaction
            return self.gate_decoding(E, self.channel_interacting(separate[0] if separate else E))

    def context_encoding(self, x, pooling, norms):
        """E = ReLU(norm(pool(x) W_e (+ b_e))) for each norm (one per branch): B x C x N x d each. W_e is folded into
        the pooling weights (pool(x) W_e = (W_e pooling) x: d rows to pool instead of K)."""
        encoded = pool(torch.matmul(self.encode.weight, pooling), x)
        if self.encode.bias is not None:
            encoded = encoded + self.encode.bias
        if self.record_encoding:
            self.last_encoding = torch.cat([self.standardised(norm, encoded).detach().flatten() for norm in norms])
        return [F.relu(self.normalise(norm, encoded)) for norm in norms]

    def normalise(self, norm, encoded):
        """One of the norms of --cgc-norm on B x C x N x d."""
        B, C, N, d = encoded.shape
        if self.norm == "batch":  # BatchNorm1d(C): per channel, over the batch and the N x d values
            return norm(encoded.reshape(B, C, N * d)).view(B, C, N, d)
        if self.norm == "channels":  # LayerNorm([C, d]) over each context row
            return norm(encoded.transpose(1, 2)).transpose(1, 2).contiguous()
        return norm(encoded)  # "latent": LayerNorm(d); "none": identity

    def standardised(self, norm, encoded):
        """The norm's statistics applied without its affine map (how much of the context survives; "none": the
        encoding itself): B x C x N x d."""
        if self.norm == "none":
            return encoded
        if self.norm == "batch":
            dims = (0, 2, 3)
            mean, var = ((encoded.mean(dims), encoded.var(dims, unbiased=False)) if norm.training
                         else (norm.running_mean, norm.running_var))
            return (encoded - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + norm.eps)
        if self.norm == "channels":
            return F.layer_norm(encoded.transpose(1, 2), norm.normalized_shape, eps=norm.eps).transpose(1, 2)
        return F.layer_norm(encoded, norm.normalized_shape, eps=norm.eps)

    def channel_interacting(self, E):
        """O = the grouped linear over the R channels of each head: B x C x N x d -> B x H x P x N x d."""
        B, C, N, d = E.shape
        H = self.num_heads
        O = torch.matmul(self.interact, E.view(B, H, C // H, N * d))  # B x H x P x N d
        if self.interact_bias is not None:
            O = O + self.interact_bias
        if self.norm == "batch":  # the authors' BatchNorm + ReLU over the output channels
            O = F.relu(self.interact_norm(O.view(B, -1, N * d)))
        return O.view(B, H, -1, N, d)

    def gate_decoding(self, E, O):
        """The gate's logits E W_d1 + O W_d2: N x B x groups x K. The head gate's input-channel branch averages E over
        the head's channels (their kernel is shared; mean(E) W_d1 == mean(E W_d1))."""
        B, C, N, d = E.shape
        H = self.num_heads
        if self.gate == "head":
            E, O = E.view(B, H, C // H, N, d).mean(2), O[:, :, 0]  # B x H x N x d
        else:
            O = O.view(B, C, N, d)
        return (self.decode_in(E) + self.decode_out(O)).permute(2, 0, 1, 3)

    def fused_logits(self, x, pooling):
        """gate_decoding(E, channel_interacting(E)) of the head gate by the fused kernel, which reduces E over each
        head's channels twice at once (the interaction and the mean) without holding E."""
        H, R = self.num_heads, self.channels // self.num_heads
        folded = torch.matmul(self.encode.weight, pooling)
        reduce = torch.cat([self.interact, self.interact.new_full((H, 1, R), 1 / R)], dim=1)  # H x 2 x R
        both = fused_gate.pooled_head_reduction(x, folded, self.encode.bias, self.encode_norm, reduce)
        O = both[:, :, 0] + self.interact_bias  # B x H x N x d
        return (self.decode_in(both[:, :, 1]) + self.decode_out(O)).permute(2, 0, 1, 3)

    def mean_logits(self, x, pooling):
        """context="mean": one mean vector per context row through C -> d -> groups x K."""
        mean = pool(pooling, x).squeeze(-1).transpose(1, 2)  # B x N x C
        B, N, _ = mean.shape
        hidden = F.relu(self.mean_hidden(mean))  # B x N x d
        return self.decode_out(hidden).view(B, N, self.groups, self.kernel_size).transpose(0, 1)

    def extra_repr(self):
        norm = f", norm={self.norm}" if self.context == "pool" else ""
        return f"context={self.context}, gate={self.gate}, bins={self.bins}{norm}"


class StaticGate(nn.Module):
    """The no-context control (--cgc-context static): G = sigmoid(a learned groups x K parameter), the same for every
    input; init_std as ContextGate's ("pytorch": uniform like the bias of a gate decoder d -> K)."""

    def __init__(self, groups, kernel_size, init_std=GATE_INIT_STD):
        super().__init__()
        self.logits = nn.Parameter(torch.empty(groups, kernel_size))
        if init_std == "pytorch":
            bound = (kernel_size // 2 + 1) ** -0.5
            nn.init.uniform_(self.logits, -bound, bound)
        else:
            nn.init.normal_(self.logits, std=init_std)

    def forward(self, batch):
        """G: 1 x batch x groups x K."""
        return torch.sigmoid(self.logits).expand(1, batch, *self.logits.shape)
