"""Degenerate inputs: no crash, and no NaN or inf in gates or outputs, in fp32 and under bf16 autocast on CPU."""
import pytest
import torch

from tests.helpers import build, randomize_gates

ONE_LAYER = ("--encoder-layers 1 --decoder-layers 1 --encoder-kernel-size-list [15] "
             "--decoder-kernel-size-list [15]").split()


def cases(vocab):
    pad, eos = vocab.pad(), vocab.eos()
    g = torch.Generator().manual_seed(0)
    words = lambda *shape: torch.randint(vocab.nspecial, len(vocab), shape, generator=g)  # noqa: E731
    return {
        "length 1": (torch.tensor([[eos]]), torch.tensor([[eos]])),
        "EOS-only source beside a long one": (torch.tensor([[pad] * 5 + [eos], [*words(5).tolist(), eos]]),
                                              torch.cat([torch.full((2, 1), eos), words(2, 3)], 1)),
        "1024-token source": (torch.cat([words(1, 1023), torch.tensor([[eos]])], 1), words(1, 1000)),
    }


@pytest.mark.parametrize("arch", ["cgc_lightconv_small", "cgc_dynamicconv_small"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_degenerate_inputs_stay_finite(arch, bf16):
    model = build(arch, *ONE_LAYER).eval()
    randomize_gates(model, std=2.0)
    convs = [layer.conv for layer in (*model.encoder.layers, *model.decoder.layers)]
    for conv in convs:
        conv.record_gates = True
    for name, (src, prev) in cases(model.encoder.dictionary).items():
        lengths = src.ne(model.encoder.dictionary.pad()).sum(1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(src, lengths, prev)[0]
        assert out.shape[:2] == prev.shape, name
        assert torch.isfinite(out).all(), name
        assert all(torch.isfinite(conv.last_gate).all() for conv in convs), name
