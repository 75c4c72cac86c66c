"""The gated conv against fairseq's reference convs, and the context pooling against torch's adaptive pooling."""
import pytest
import torch
import torch.nn.functional as F
from fairseq.modules import DynamicConv_scripatable

from cgc_fairseq.context_gate import causal_pooling, pool, sentence_pooling
from cgc_fairseq.gated_conv import GateConfig, GatedDynamicConv1dTBC, GatedLightweightConv1dTBC
from tests.properties import reference_pair, ungated_difference

@pytest.mark.parametrize("cls", [GatedLightweightConv1dTBC, GatedDynamicConv1dTBC])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 4, 20])
def test_ungated_equals_fairseq_exactly(cls, causal, T):
    with torch.no_grad():
        assert ungated_difference(cls, causal, T) == 0


@pytest.mark.parametrize("causal", [False, True])
def test_ungated_dynamic_matches_the_conv_fairseqs_model_builds(causal):
    """fairseq's lightconv model builds DynamicConv_scripatable (always unfolded): same numbers up to rounding."""
    torch.manual_seed(0)
    ref = DynamicConv_scripatable(16, 7, padding_l=6 if causal else 3, num_heads=4, weight_softmax=True).eval()
    ours = GatedDynamicConv1dTBC.like(ref, causal, None).eval()
    ours.load_state_dict(ref.state_dict(), strict=False)
    x = torch.randn(10, 3, 16)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [GatedLightweightConv1dTBC, GatedDynamicConv1dTBC])
@pytest.mark.parametrize("causal", [False, True])
def test_gate_of_ones_equals_fairseq(cls, causal, monkeypatch):
    """The gated code path (context, gate, W (.) G) with G forced to 1 must reduce to fairseq's conv."""
    torch.manual_seed(0)
    ref, ours = reference_pair(cls, causal, kernel_size=5, gate_config=GateConfig())
    monkeypatch.setattr(ours, "gate", lambda x, incremental_state: torch.ones(1, x.size(1), 4, 5))
    x = torch.randn(9, 2, 16)
    assert torch.equal(ours(x), ref(x))
    monkeypatch.undo()
    assert not torch.allclose(ours(x), ref(x))  # the real gate does change the kernel


@pytest.mark.parametrize("cls", [GatedLightweightConv1dTBC, GatedDynamicConv1dTBC])
def test_incremental_step_equals_full_pass(cls):
    torch.manual_seed(0)
    _, ours = reference_pair(cls, causal=True, kernel_size=5, gate_config=GateConfig(gate="channel", renorm=True))
    x = torch.randn(12, 3, 16)
    state = {}
    steps = torch.cat([ours(x[t : t + 1], incremental_state=state) for t in range(12)])
    assert (steps - ours(x)).abs().max() < 1e-5


def test_sentence_context_is_adaptive_pooling_of_the_real_tokens():
    torch.manual_seed(0)
    T, B, C, K = 11, 3, 5, 7
    x = torch.randn(T, B, C)
    lengths = [11, 4, 2]  # shorter than, and longer than, the number of bins
    mask = torch.ones(B, T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, T - n :] = False  # left padding, as fairseq pads sources
    pooled = pool(sentence_pooling(x, mask, K), x)[:, :, 0]  # B x C x K
    for b, n in enumerate(lengths):
        expected = F.adaptive_avg_pool1d(x[T - n :, b].t().unsqueeze(0), K)[0]
        torch.testing.assert_close(pooled[b], expected)


def test_causal_context_pools_the_prefix_only():
    torch.manual_seed(0)
    T, B, C, K = 9, 2, 3, 4
    x = torch.randn(T, B, C)
    pooled = pool(causal_pooling(torch.arange(T), K, T), x)  # B x C x T x K
    for t in range(T):
        expected = F.adaptive_avg_pool1d(x[: t + 1].permute(1, 2, 0), K)
        torch.testing.assert_close(pooled[:, :, t], expected)
