"""The model properties (tests/properties.py) on CGC_TEST_DEVICE (default cpu; `make gpu-check` sets cuda) in
fp32 and under autocast: cpu bf16; cuda fp16 and bf16. The CUDA path runs the gate's PyTorch ops (the fused
kernel is CPU-only)."""
import os
from contextlib import nullcontext

import pytest
import torch

from cgc_fairseq.gated_conv import GatedDynamicConv1dTBC, GatedLightweightConv1dTBC
from tests.helpers import TINY, build, randomize_gates
from tests.properties import causality, incremental_difference, left_pad_difference, ungated_difference

DEVICE = os.environ.get("CGC_TEST_DEVICE", "cpu")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ["fp32", "bf16"] + (["fp16"] if DEVICE == "cuda" else [])
# max |difference| allowed: fp32 as the CPU tests; autocast on tiny random models (measured on the CPU under bf16:
# left pad ~1e-2, incremental vs full ~1e-2; fp16 has 3 more mantissa bits than bf16)
TOL = {"fp32": 1e-5, "bf16": 0.1, "fp16": 0.02}
GATES = [["--cgc-decoder-context", "prefix"], ["--cgc-decoder-context", "source"], ["--cgc-context", "static"]]
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")


def precision(name):
    if DTYPES[name] is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(DEVICE).type, dtype=DTYPES[name])


@pytest.fixture(params=[(arch, gate, p) for arch in ("cgc_lightconv_small", "cgc_dynamicconv_small")
                        for gate in GATES for p in PRECISIONS], ids=lambda p: " ".join([p[0], *p[1], p[2]]))
def case(request):
    arch, gate, name = request.param
    model = build(arch, *TINY, *gate).eval()
    randomize_gates(model)
    return model.to(DEVICE), name


def test_encoder_ignores_extra_left_padding(case):
    model, name = case
    with torch.no_grad(), precision(name):
        assert left_pad_difference(model, DEVICE) < TOL[name]


def test_decoder_is_causal(case):
    model, name = case
    with torch.no_grad(), precision(name):
        before, at = causality(model, DEVICE)
    assert before <= (0 if name == "fp32" else TOL[name] / 10) and at > TOL[name] / 10


def test_incremental_equals_full_with_a_beam_reorder(case):
    model, name = case
    with torch.no_grad(), precision(name):
        assert incremental_difference(model, DEVICE) < TOL[name]


@pytest.mark.parametrize("cls", [GatedLightweightConv1dTBC, GatedDynamicConv1dTBC])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", PRECISIONS)
def test_ungated_equals_fairseq(cls, causal, name):
    with torch.no_grad(), precision(name):
        diff = ungated_difference(cls, causal, 20, DEVICE)
    assert diff <= (0 if name == "fp32" and DEVICE == "cpu" else TOL[name])
