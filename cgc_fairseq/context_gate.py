"""The context gate of Context-Gated Convolution (Lin et al., ECCV 2020), carried from 2D to 1D.

Paper (2D, kernel c_out x c_in x k x k)        here (1D, kernel H x K, shared by the R = C/H channels of a head)
  pool the input to k x k                        pool the input over time to K bins (adaptive average pooling)
  E = ReLU(BN(pool(X) W_e)), W_e: k^2 -> d       E = ReLU(LN(pool(x) W_e)),  W_e: K -> d, d = K//2 + 1, shared by channels
  O = grouped 1x1 conv c_in -> c_out on E        O = grouped Linear C -> H (head gate) or C -> C (channel gate) on E
  G = sigmoid(E W_d1 (+) O W_d2)                 G = sigmoid(mean_head(E) W_d1 + O W_d2), W_d: d -> K, shared

Changes from the paper: LayerNorm over d instead of BatchNorm (batch statistics would mix sentences and break
incremental decoding); the input-channel branch is averaged over the channels of a head (the kernel of a head is
shared by its channels, and mean(E) W_d1 == mean(E W_d1) since W_d1 is linear).

Context sources:
  encoder: the whole sentence, non-pad positions only;
  decoder: causal, the context of step t pools positions <= t only, from prefix sums S[j] = sum_{tau < j} x[tau].
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

GATE_INIT_STD = 0.01  # decoders start near zero, so an untrained gate is ~ sigmoid(0) = 0.5 everywhere


def prefix_sums(x):
    """x: T x B x C -> S: (T+1) x B x C with S[j] = sum of x[:j] (S[0] = 0)."""
    return torch.cat([x.new_zeros(1, *x.shape[1:]), torch.cumsum(x, dim=0)], dim=0)


def bin_bounds(lengths, bins):
    """Bins of adaptive_avg_pool1d over `lengths` positions: [floor(i L / K), ceil((i+1) L / K)), i < K."""
    i = torch.arange(bins, device=lengths.device)
    lengths = lengths.unsqueeze(-1)
    return (i * lengths) // bins, ((i + 1) * lengths + bins - 1) // bins


def pool_bins(sums, start, end):
    """Bin means from prefix sums. sums: (T+1) x B x C; start, end: N x B x K indices into sums -> N x B x C x K."""
    N, B, K = start.shape
    C = sums.size(2)
    flat = sums.reshape(-1, C)  # row j * B + b holds S[j, b]
    batch = torch.arange(B, device=sums.device).view(1, B, 1)

    def rows(idx):
        return flat.index_select(0, (idx * B + batch).reshape(-1)).view(N, B, K, C)

    width = (end - start).clamp(min=1).unsqueeze(-1).to(sums.dtype)
    return ((rows(end) - rows(start)) / width).permute(0, 1, 3, 2)


def sentence_context(x, padding_mask, bins):
    """Encoder context: x (T x B x C) pooled to `bins` bins over the non-pad positions -> 1 x B x C x bins."""
    T, B, _ = x.shape
    if padding_mask is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
        offset = torch.zeros_like(lengths)
    else:
        real = ~padding_mask  # B x T; fairseq pads on one side, so the real tokens are contiguous
        x = x.masked_fill(padding_mask.t().unsqueeze(-1), 0)
        lengths = real.sum(1)
        offset = real.long().argmax(1)  # first real position (> 0 for left padding)
    start, end = bin_bounds(lengths, bins)
    return pool_bins(prefix_sums(x), (start + offset[:, None]).unsqueeze(0), (end + offset[:, None]).unsqueeze(0))


def causal_context(sums, steps, bins):
    """Decoder context: for each step t in `steps`, pool the prefix x[0..t] to `bins` bins -> len(steps) x B x C x bins.

    sums: prefix sums (T'+1) x B x C covering at least positions 0..max(steps).
    """
    start, end = bin_bounds(steps + 1, bins)  # N x bins
    B = sums.size(1)
    return pool_bins(sums, start.unsqueeze(1).expand(-1, B, -1), end.unsqueeze(1).expand(-1, B, -1))


class ContextGate(nn.Module):
    """G = sigmoid(...) with the kernel's shape, from a pooled context.

    context="pool": the paper's design (module docstring). context="mean": ablation; one mean vector per
    sentence/prefix through a small MLP (C -> d -> G*K).
    gate="head": one gate per head (H x K, like LightConv's kernel); gate="channel": one per channel (C x K).
    """

    def __init__(self, channels, num_heads, kernel_size, context="pool", gate="head"):
        super().__init__()
        assert context in ("pool", "mean") and gate in ("head", "channel")
        assert channels % num_heads == 0
        self.channels, self.num_heads, self.kernel_size = channels, num_heads, kernel_size
        self.context, self.gate = context, gate
        self.bins = kernel_size if context == "pool" else 1
        self.groups = num_heads if gate == "head" else channels  # gate rows
        d = kernel_size // 2 + 1
        R = channels // num_heads
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
            nn.init.normal_(m.weight, std=GATE_INIT_STD)
            nn.init.zeros_(m.bias)

    def forward(self, pooled):
        """pooled: N x B x C x bins -> G: N x B x groups x K, in (0, 1)."""
        N, B, C, _ = pooled.shape
        H, K = self.num_heads, self.kernel_size
        if self.context == "mean":
            hidden = F.relu(self.mean_hidden(pooled.squeeze(-1)))  # N x B x d
            return torch.sigmoid(self.decode_out(hidden).view(N, B, self.groups, K))
        E = F.relu(self.encode_norm(self.encode(pooled)))  # N x B x C x d
        E_heads = E.view(N, B, H, C // H, -1)  # N x B x H x R x d
        O = torch.matmul(self.interact, E_heads) + self.interact_bias  # N x B x H x (1|R) x d
        if self.gate == "head":
            logits = self.decode_in(E_heads.mean(3)) + self.decode_out(O.squeeze(3))  # N x B x H x K
        else:
            logits = self.decode_in(E) + self.decode_out(O.reshape(N, B, C, -1))  # N x B x C x K
        return torch.sigmoid(logits)

    def extra_repr(self):
        return f"context={self.context}, gate={self.gate}, bins={self.bins}"
