"""The properties a (gated) model has on every device and in every precision, measured: the encoder ignores extra
left padding, the decoder is causal, incremental decoding with a beam reorder equals the full pass, and the ungated
conv equals fairseq's. Each returns the differences it measured; the tests (test_models.py on the CPU in fp32,
test_device.py on CGC_TEST_DEVICE under autocast) hold them to their tolerances. Call them under torch.no_grad()
and, for a lower precision, under autocast."""
import torch

from cgc_fairseq.gated_conv import GatedDynamicConv1dTBC, GatedLightweightConv1dTBC
from tests.helpers import tokens


def left_pad_difference(model, device="cpu"):
    """max |encoder output of a left-padded sentence in a batch - the same sentence alone|."""
    vocab = model.encoder.dictionary
    src, lengths = (t.to(device) for t in tokens(vocab, 3, 8, seed=3))
    n = lengths[1].item()
    assert src[1, 0] == vocab.pad()
    batched = model.encoder(src, lengths)["encoder_out"][0][-n:, 1]
    single = model.encoder(src[1:2, -n:], lengths[1:2])["encoder_out"][0][:, 0]
    return (batched - single).abs().max().item()


def decode_full(model, src, lengths, prev):
    enc = model.encoder(src, lengths)
    return model.decoder(prev, encoder_out=enc)[0]


def causality(model, device="cpu"):
    """Changing the target token at t in (1, 5, 9): (max change of the outputs before t, min over t of the max change
    at t). A causal decoder gives 0 for the first and > 0 for the second."""
    vocab = model.encoder.dictionary
    src, lengths = (t.to(device) for t in tokens(vocab, 2, 6, seed=4))
    prev = torch.randint(vocab.nspecial, len(vocab), (2, 10), generator=torch.Generator().manual_seed(6)).to(device)
    base = decode_full(model, src, lengths, prev)
    before, at = 0.0, float("inf")
    for t in (1, 5, 9):
        changed = prev.clone()
        changed[:, t] = (changed[:, t] - vocab.nspecial + 1) % (len(vocab) - vocab.nspecial) + vocab.nspecial
        out = decode_full(model, src, lengths, changed)
        before = max(before, (out[:, :t] - base[:, :t]).abs().max().item())
        at = min(at, (out[:, t] - base[:, t]).abs().max().item())
    return before, at


def incremental_difference(model, device="cpu"):
    """max |incremental decoding (a beam reorder after 5 steps: reorder, drop, duplicate) - the full pass|."""
    vocab = model.encoder.dictionary
    src, lengths = (t.to(device) for t in tokens(vocab, 3, 7, seed=5))
    prev = torch.randint(vocab.nspecial, len(vocab), (3, 12), generator=torch.Generator().manual_seed(7)).to(device)
    prev[:, 0] = vocab.eos()
    new_order = torch.tensor([2, 0, 0, 1], device=device)
    switch = 5
    enc = model.encoder(src, lengths)
    state, steps = {}, []
    for t in range(prev.size(1)):
        if t == switch:
            enc = model.encoder.reorder_encoder_out(enc, new_order)
            model.decoder.reorder_incremental_state_scripting(state, new_order)
            prev = prev[new_order]
            steps = [s[new_order] for s in steps]
        steps.append(model.decoder(prev[:, : t + 1], encoder_out=enc, incremental_state=state)[0])
    full = model.decoder(prev, encoder_out=enc)[0]
    return (torch.cat(steps, dim=1) - full).abs().max().item()


def reference_pair(cls, causal, kernel_size, gate_config=None, device="cpu"):
    """fairseq's conv and ours built like it, with the same weights, in eval mode."""
    from fairseq.modules import DynamicConv1dTBC, LightweightConv1dTBC

    reference = {GatedLightweightConv1dTBC: LightweightConv1dTBC, GatedDynamicConv1dTBC: DynamicConv1dTBC}[cls]
    padding_l = kernel_size - 1 if causal else kernel_size // 2
    ref = reference(16, kernel_size, padding_l=padding_l, num_heads=4, weight_softmax=True, weight_dropout=0.1)
    ours = cls.like(ref, causal, gate_config)
    ours.load_state_dict(ref.state_dict(), strict=False)
    return ref.to(device).eval(), ours.to(device).eval()


def ungated_difference(cls, causal, T, device="cpu"):
    """max |our ungated conv - fairseq's| on random input of length T."""
    torch.manual_seed(0)
    ref, ours = reference_pair(cls, causal, kernel_size=7, device=device)
    x = torch.randn(T, 3, 16, device=device)
    return (ours(x) - ref(x)).abs().max().item()
