"""bf16 autocast (cgc_fairseq/precision.py): the translation_autocast task trains with fp32 weights and optimizer
state, bf16 forward passes agree with fp32 ones, the gate stays fp32 and inside (0, 1)."""
import io

import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
from fairseq.tasks.translation import TranslationTask

from cgc_fairseq.precision import (AutocastTranslationConfig, AutocastTranslationTask, autocast, check_precision,
                                  fp32_logits)
from tests.helpers import TINY, build, gates, parse, randomize_gates, tokens

ARCHS = ["cgc_lightconv_small", "cgc_dynamicconv_small", "lightconv_small"]  # fairseq's own conv too
# measured on tiny random models: max |bf16 - fp32| of the log-probabilities 0.017-0.026, of the probabilities
# 0.0023-0.0039; incremental vs full pass under bf16 < 1e-4
LOG_PROB_TOL, PROB_TOL, INCREMENTAL_TOL = 0.1, 0.01, 1e-3


def model_of(arch, *extra):
    model = build(arch, *TINY, *extra)
    if arch.startswith("cgc_"):
        randomize_gates(model)
    return model


def sample(vocab, seed):
    src, lengths = tokens(vocab, 4, 7, seed=seed)
    target, _ = tokens(vocab, 4, 6, seed=seed + 1, left_pad=False)
    prev = torch.roll(target, 1, dims=1)  # EOS first, as fairseq's collater shifts the target
    prev[:, 0] = vocab.eos()
    return {"net_input": {"src_tokens": src, "src_lengths": lengths, "prev_output_tokens": prev},
            "target": target, "ntokens": int(target.ne(vocab.pad()).sum())}


def adam(model):
    return FairseqAdam(FairseqAdamConfig(lr=[1e-3], adam_betas="(0.9, 0.98)"), list(model.parameters()))


@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_training_keeps_fp32_weights_and_optimizer_state(arch):
    model = model_of(arch)
    vocab = model.encoder.dictionary
    task = AutocastTranslationTask(AutocastTranslationConfig(precision="bf16"), vocab, vocab)
    criterion = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    optimizer = adam(model)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for update in range(4):
        optimizer.zero_grad()
        loss, _, _ = task.train_step(sample(vocab, update), model, criterion, optimizer, update)
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    state = [s for s in optimizer.optimizer.state.values()]
    assert state and all(t.dtype == torch.float32 for s in state for t in (s["exp_avg"], s["exp_avg_sq"]))
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()) if p.grad is not None)
    _, _, logged = task.valid_step(sample(vocab, 9), model, criterion)
    assert torch.isfinite(torch.tensor(float(logged["loss"])))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("context", ["prefix", "source"])
def test_bf16_forward_agrees_with_fp32_and_incremental_with_full(arch, context):
    if context == "source" and not arch.startswith("cgc_"):
        pytest.skip("the decoder's context is an option of the cgc archs")
    model = model_of(arch, *(["--cgc-decoder-context", context] if arch.startswith("cgc_") else [])).eval()
    batch = sample(model.encoder.dictionary, 1)["net_input"]
    with torch.no_grad():
        fp32 = model.get_normalized_probs(model(**batch), log_probs=True)
        with autocast("bf16", "cpu"):
            out = model(**batch)
            bf16 = model.get_normalized_probs(out, log_probs=True)
            encoder_out, state = model.encoder(batch["src_tokens"], batch["src_lengths"]), {}
            prev = batch["prev_output_tokens"]
            steps = [model.decoder(prev[:, : t + 1], encoder_out=encoder_out, incremental_state=state)
                     for t in range(prev.size(1))]
            incremental = torch.cat([model.get_normalized_probs(s, log_probs=True) for s in steps], dim=1)
    assert out[0].dtype == torch.bfloat16  # autocast is on
    real = prev.ne(model.decoder.dictionary.pad())  # pad positions: the full pass and the steps differ by design
    assert (bf16 - fp32).abs().max() < LOG_PROB_TOL and (bf16.exp() - fp32.exp()).abs().max() < PROB_TOL
    assert (incremental - bf16)[real].abs().max() < INCREMENTAL_TOL


def test_the_gate_stays_fp32_and_inside_0_1_under_bf16():
    model = build("cgc_lightconv_small", *TINY).eval()
    randomize_gates(model, std=0.02)
    with torch.no_grad():  # logits from about -12 to 12: a bf16 sigmoid rounds the top ones to exactly 1
        for gate in gates(model):
            gate.decode_out.bias.copy_(torch.linspace(-12, 12, gate.kernel_size))
    convs = [layer.conv for layer in (*model.encoder.layers, *model.decoder.layers)]
    for conv in convs:
        conv.record_gates = True
    with torch.no_grad(), autocast("bf16", "cpu"):
        model(**sample(model.encoder.dictionary, 2)["net_input"])
    assert all(c.last_gate.dtype == torch.float32 for c in convs)
    assert all(0 < c.last_gate.min() and c.last_gate.max() < 1 for c in convs)
    assert max(c.last_gate.max() for c in convs) > 1 - 2**-9  # the top would round to 1 in bf16


def test_a_model_trained_under_bf16_loads_and_runs_in_fp32_and_back():
    model = model_of("cgc_lightconv_small")
    vocab = model.encoder.dictionary
    task = AutocastTranslationTask(AutocastTranslationConfig(precision="bf16"), vocab, vocab)
    criterion = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    optimizer = adam(model)
    task.train_step(sample(vocab, 0), model, criterion, optimizer, 0)
    optimizer.step()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    loaded = build("cgc_lightconv_small", *TINY)
    loaded.load_state_dict(torch.load(buffer))
    batch = sample(vocab, 3)["net_input"]
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch)[0], loaded(**batch)[0])
        with autocast("bf16", "cpu"):
            assert torch.equal(model(**batch)[0], loaded(**batch)[0])


@pytest.mark.parametrize("value", ["fp16", "bfloat16", ""])
def test_a_bad_precision_is_refused_in_one_line(value, capsys):
    with pytest.raises(SystemExit):
        parse("cgc_lightconv_small", "--task", "translation_autocast", "--precision", value)
    assert "--precision" in capsys.readouterr().err
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        autocast(value, "cpu")



def test_the_vocabulary_logits_stay_fp32_under_bf16():
    """fp32_logits: the output projection outside autocast (bf16 logits cost BLEU in beam search), same numbers as
    an fp32 projection of the same features, the state_dict unchanged."""
    import copy

    model = model_of("cgc_lightconv_small").eval()
    plain = copy.deepcopy(model)
    fp32_logits(model)
    wrapped = model.decoder.output_projection.forward
    assert fp32_logits(model).decoder.output_projection.forward is wrapped  # applied once, however often asked
    assert model.state_dict().keys() == plain.state_dict().keys()
    batch = sample(model.encoder.dictionary, 3)["net_input"]
    features = []
    model.decoder.output_projection.register_forward_pre_hook(lambda module, args: features.append(args[0]))
    with torch.no_grad(), autocast("bf16", "cpu"):
        logits = model(**batch)[0]
        assert logits.dtype == torch.float32 and plain(**batch)[0].dtype == torch.bfloat16
    with torch.no_grad():
        torch.testing.assert_close(logits, plain.decoder.output_projection(features[0].float()))


def test_bf16_is_refused_on_a_cpu_without_native_bf16(monkeypatch):
    """Faked: a CPU with AVX2 only, where a bf16 matrix product is emulated (measured ~100x slower than fp32)."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    check_precision("fp32", "cpu")
    with pytest.raises(ValueError, match=r"precision bf16: this CPU \(CPU capability AVX2\) has no native bf16 .* "
                                         r"use fp32"):
        check_precision("bf16", "cpu")
    model = model_of("cgc_lightconv_small")
    monkeypatch.setattr(TranslationTask, "build_model", lambda self, cfg, from_checkpoint=False: model)
    vocab = model.encoder.dictionary
    task = AutocastTranslationTask(AutocastTranslationConfig(precision="bf16"), vocab, vocab)
    with pytest.raises(ValueError, match="no native bf16"):
        task.build_model(None)  # fairseq-train / fairseq-generate --task translation_autocast --precision bf16
