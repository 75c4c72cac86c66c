"""Model-level properties of the cgc_lightconv archs: conv types, padding, causality, incremental decoding."""
import pytest
import torch
from fairseq.modules import DynamicConv_scripatable, LightweightConv1dTBC

from cgc_fairseq.gated_conv import GatedDynamicConv1dTBC, GatedLightweightConv1dTBC
from tests.helpers import TINY, build, dictionary, gates, randomize_gates, tokens
from tests.properties import causality, incremental_difference, left_pad_difference

ARCH_CONV = {
    "cgc_lightconv_iwslt_de_en": GatedLightweightConv1dTBC,
    "cgc_dynamicconv_iwslt_de_en": GatedDynamicConv1dTBC,
    "cgc_lightconv_small": GatedLightweightConv1dTBC,
    "cgc_dynamicconv_small": GatedDynamicConv1dTBC,
    "lightconv_small": LightweightConv1dTBC,
    "dynamicconv_small": DynamicConv_scripatable,  # what fairseq's lightconv model builds on CPU
}
VARIANTS = ["cgc_lightconv_small", "cgc_dynamicconv_small"]
# every combination of the decoder's context, the context and the gate shape, and renormalisation once
GATES = [["--cgc-decoder-context", source,
           *(["--cgc-context", context] if context != "pool" else []),
           *(["--cgc-gate", gate] if gate != "head" else [])]
         for source in ("prefix", "source") for context in ("pool", "mean", "static") for gate in ("head", "channel")]
GATES.append(["--cgc-renorm"])
# the context encoding's other norms (batch needs the whole-sentence "source" context in the decoder)
NORM_GATES = [["--cgc-decoder-context", source, "--cgc-norm", norm]
              for source in ("prefix", "source") for norm in ("batch", "channels", "none")
              if (source, norm) != ("prefix", "batch")]
GATES += NORM_GATES


@pytest.fixture(params=[(arch, gate) for arch in VARIANTS for gate in GATES],
                ids=lambda p: " ".join([p[0], *p[1]]))
def model(request):
    """A tiny gated model (each variant and gate option) with random, non-trivial gate weights, in eval mode."""
    arch, gate = request.param
    model = build(arch, *TINY, *gate).eval()
    randomize_gates(model)
    return model


def convs(model):
    return [layer.conv for layer in (*model.encoder.layers, *model.decoder.layers)]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ARCH_CONV)
def test_arch_builds_the_conv_its_name_says(arch):
    model = build(arch, *(TINY if "iwslt" not in arch else []))
    assert {type(conv) for conv in convs(model)} == {ARCH_CONV[arch]}
    gated = arch.startswith("cgc_")
    assert all((getattr(conv, "context_gate", None) is not None) == gated for conv in convs(model))
    assert [conv.causal for conv in convs(model) if gated] in ([], [False] * len(model.encoder.layers) + [True] * len(
        model.decoder.layers))


@pytest.mark.parametrize("arch", [a for a in ARCH_CONV if a.startswith("cgc_")])
def test_gate_parameter_overhead_is_a_rounding_error(arch, capsys):
    vocab = dictionary(10000)  # a realistic joined vocabulary
    gated, ungated = n_params(build(arch, vocab=vocab)), n_params(build(arch, "--no-cgc", vocab=vocab))
    overhead = (gated - ungated) / ungated
    with capsys.disabled():
        print(f"\n{arch}: {gated:,} parameters, gate {gated - ungated:,} (+{100 * overhead:.3f}%)")
    assert 0 < overhead < 0.001


def test_where_and_no_cgc_choose_the_gated_side():
    enc = build("cgc_lightconv_small", *TINY, "--cgc-where", "encoder")
    assert [c.context_gate is not None for c in convs(enc)] == [True, True, False, False]
    dec = build("cgc_lightconv_small", *TINY, "--cgc-where", "decoder")
    assert [c.context_gate is not None for c in convs(dec)] == [False, False, True, True]
    assert not gates(build("cgc_lightconv_small", *TINY, "--no-cgc"))


@pytest.mark.parametrize("arch", VARIANTS)
@pytest.mark.parametrize("gate", [["--cgc-decoder-context", "prefix"], ["--cgc-decoder-context", "source"],
                                  ["--cgc-context", "static"], *NORM_GATES], ids=str)
def test_gradients_reach_every_gate_parameter(arch, gate):
    model = build(arch, *TINY, *gate)  # default (untrained) initialisation, as training starts
    model.train()
    vocab = model.encoder.dictionary
    src, src_lengths = tokens(vocab, 4, 9, seed=1)
    prev, _ = tokens(vocab, 4, 7, seed=2, left_pad=False)
    out, _ = model(src, src_lengths, prev)
    out.logsumexp(-1).sum().backward()
    params = [p for g in gates(model) for p in g.parameters()]
    assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_encoder_output_ignores_extra_left_padding(model):
    with torch.no_grad():
        assert left_pad_difference(model) < 1e-5


def test_decoder_is_causal(model):
    with torch.no_grad():
        before, at = causality(model)
    assert before == 0 and at > 1e-6


def test_incremental_decoding_equals_full_forward_with_beam_reorder(model, request, capsys):
    with torch.no_grad():
        diff = incremental_difference(model)
    with capsys.disabled():
        print(f"\n{request.node.callspec.id}: max |incremental - full| = {diff:.2e}")
    assert diff < 1e-5
