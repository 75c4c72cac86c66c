"""--cgc-norm: the context encoding's norm (latent, batch, channels, none) and what each keeps of the context."""
import pytest
import torch

from cgc_fairseq.context_gate import ContextGate, sentence_pooling
from tests.helpers import TINY, build, build_from_args, gates, parse, randomize_gates, tokens

NORMS = ["latent", "batch", "channels", "none"]


def encodings(gate, x, pooling):
    """The context encoding of one forward pass as its norm standardises it (no affine map, no ReLU)."""
    gate.record_encoding = True
    with torch.no_grad():
        gate(x, pooling)
    gate.record_encoding = False
    return gate.last_encoding


@pytest.mark.parametrize("norm", NORMS)
def test_a_sentence_alone_gets_the_gate_it_gets_in_its_batch(norm):
    """In evaluation every norm is per sentence (batch: the running statistics), so batching changes nothing."""
    model = build("cgc_lightconv_small", *TINY, "--cgc-norm", norm).eval()
    randomize_gates(model)
    vocab = model.encoder.dictionary
    src, lengths = tokens(vocab, 3, 8, seed=3)
    prev, _ = tokens(vocab, 3, 6, seed=4, left_pad=False)
    n = lengths[1].item()
    with torch.no_grad():
        batched = model(src, lengths, prev)[0][1]
        alone = model(src[1:2, -n:], lengths[1:2], prev[1:2])[0][0]
    assert (batched - alone).abs().max() < 1e-5


def test_batch_norm_trains_on_batch_statistics_and_evaluates_on_running_ones():
    gate = ContextGate(8, 2, 3, norm="batch")
    x = torch.randn(6, 4, 8) * 3 + 1
    pooling = sentence_pooling(x, None, gate.bins)
    gate.train()
    trained = encodings(gate, x, pooling).view(2, 4, 8, 1, 2)  # both branches: B x C x 1 x d each
    # training: each channel normalised over the batch and the d values
    assert torch.allclose(trained.mean((1, 3, 4)), torch.zeros(2, 8), atol=1e-5)
    assert gate.encode_norm.running_mean.abs().sum() > 0  # the running statistics moved
    gate.eval()
    alone = encodings(gate, x[:, :1], pooling[:, :1])
    assert torch.allclose(alone, encodings(gate, x, pooling).view(2, 4, 8, 1, 2)[:, :1].flatten(), atol=1e-6)


def test_batch_norm_follows_the_authors_structure():
    """Two norms on the encoding (one per branch), a norm on the interaction's output, and no biases."""
    gate = ContextGate(8, 2, 7, norm="batch")
    norms = [m for m in gate.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [8, 8, 2]
    biases = [gate.encode.bias, gate.interact_bias, gate.decode_in.bias, gate.decode_out.bias]
    assert all(b is None for b in biases)
    latent = ContextGate(8, 2, 7)
    assert all(b is not None for b in (latent.encode.bias, latent.interact_bias, latent.decode_in.bias))


def test_latent_norm_leaves_one_bit_per_channel_when_the_kernel_is_3_and_channels_keeps_more():
    """K = 3, d = 2: a LayerNorm over two values standardises them to (+1, -1) or (-1, +1); the others keep more."""
    torch.manual_seed(0)
    x = torch.randn(9, 5, 8) * torch.linspace(1, 4, 8)
    at_one = {}
    for norm in ("latent", "channels", "none"):
        gate = ContextGate(8, 2, 3, norm=norm)
        randomize_gates(gate)
        e = encodings(gate, x, sentence_pooling(x, None, gate.bins))
        at_one[norm] = ((e.abs() - 1).abs() < 0.01).float().mean().item()
    assert at_one["latent"] > 0.95 and at_one["channels"] < 0.1 and at_one["none"] < 0.1


@pytest.mark.parametrize("norm", ["channels", "none"])
def test_prefix_context_norms_stay_causal_per_row(norm):
    """channels/none normalise one context row at a time: the prefix gate at t depends on positions <= t only."""
    gate = ContextGate(8, 2, 7, norm=norm)
    randomize_gates(gate)
    x = torch.randn(10, 2, 8)
    changed = x.clone()
    changed[6:] += 1
    with torch.no_grad():
        a, b = gate.causal_gate(x), gate.causal_gate(changed)
    assert torch.equal(a[:6], b[:6]) and not torch.allclose(a[6:], b[6:])


def test_batch_norm_with_a_prefix_decoder_context_is_refused():
    with pytest.raises(ValueError, match="--cgc-norm batch needs a whole-sentence context"):
        build("cgc_lightconv_small", *TINY, "--cgc-norm", "batch", "--cgc-decoder-context", "prefix")
    model = build("cgc_lightconv_small", *TINY, "--cgc-norm", "batch", "--cgc-decoder-context", "prefix",
                  "--cgc-where", "encoder")  # the encoder's context is the whole sentence
    assert {g.norm for g in gates(model)} == {"batch"}


def test_a_norm_for_a_context_without_an_encoding_is_refused():
    with pytest.raises(ValueError, match="--cgc-norm channels applies to --cgc-context pool only"):
        build("cgc_lightconv_small", *TINY, "--cgc-norm", "channels", "--cgc-context", "static")


def test_the_default_and_old_args_are_the_latent_norm():
    assert {g.norm for g in gates(build("cgc_lightconv_small", *TINY))} == {"latent"}
    args = parse("cgc_lightconv_small", *TINY)
    del args.cgc_norm  # a checkpoint saved before the option
    assert {g.norm for g in gates(build_from_args("cgc_lightconv_small", args))} == {"latent"}
