"""Building the fused gate kernel: the CGC_FUSED_GATE switch, a build lock left by a killed build, and a build name
that carries the CPU (cgc_fairseq/fused_gate.py)."""
import logging
import os
import time

import pytest
import torch

from cgc_fairseq import fused_gate

X = torch.zeros(3, 2, 4)


@pytest.mark.parametrize("value", ["0", "off", "OFF", "false", "no"])
def test_the_switch_turns_the_kernel_off(value, monkeypatch):
    monkeypatch.setenv("CGC_FUSED_GATE", value)
    assert not fused_gate.serves(X)


@pytest.mark.parametrize("value", ["1", "on", "true", "yes", " Yes "])
def test_the_switch_turns_the_kernel_on(value, monkeypatch):
    monkeypatch.setenv("CGC_FUSED_GATE", value)
    assert fused_gate.enabled()


@pytest.mark.parametrize("value", ["2", "disable", ""])
def test_a_misspelt_switch_is_an_error(value, monkeypatch):
    monkeypatch.setenv("CGC_FUSED_GATE", value)
    with pytest.raises(ValueError, match="CGC_FUSED_GATE=.*expected one of 1, on, true, yes, 0, off, false, no"):
        fused_gate.serves(X)


def test_a_stale_build_lock_falls_back_to_the_pytorch_ops_with_a_warning(tmp_path, monkeypatch, caplog):
    """A killed first build leaves BUILD_DIR/lock behind; torch's load would wait for it forever."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(fused_gate, "_extension", None)
    lock = tmp_path / f"cgc_gate_core_{fused_gate.cpu_tag()}" / "lock"
    lock.parent.mkdir()
    lock.touch()
    old = time.time() - fused_gate.STALE_LOCK_SECONDS - 5
    os.utime(lock, (old, old))
    start = time.time()
    with caplog.at_level(logging.WARNING):
        assert fused_gate.extension() is None
    assert time.time() - start < 5 and "build lock" in caplog.text and str(lock) in caplog.text


def test_the_build_name_carries_the_cpu():
    avx2 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2\n"
    amx = "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16\n"
    assert fused_gate.cpu_tag(avx2) != fused_gate.cpu_tag(amx)
    assert fused_gate.cpu_tag(avx2 * 2) == fused_gate.cpu_tag(avx2)  # one line per core: the same CPU
