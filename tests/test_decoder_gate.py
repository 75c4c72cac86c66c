"""The decoder gate's variants: the lean prefix path, the source context, the static control, the init, and
checkpoints saved before these options existed."""

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

from cgc_fairseq import context_gate
from cgc_fairseq.context_gate import ContextGate, causal_pooling
from tests.helpers import REPO, TINY, build, build_from_args, dictionary, gates, parse, randomize_gates, tokens

VARIANTS = ["cgc_lightconv_small", "cgc_dynamicconv_small"]


def randomized(gate, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in gate.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return gate


@pytest.mark.parametrize("gate_shape", ["head", "channel"])
@pytest.mark.parametrize("context", ["pool", "mean"])
@pytest.mark.parametrize("T", [3, 20])  # shorter and longer than the kernel
@pytest.mark.parametrize("fused", ["1", "0"])  # the fused kernel (head gate), or the PyTorch ops in chunks
def test_lean_prefix_gate_equals_the_full_causal_pooling(gate_shape, context, T, fused, monkeypatch):
    """causal_gate (fused, or chunks recomputed in backward) == forward over the T x bins x T causal pooling matrix;
    in float64, so that the comparison does not depend on rounding."""
    monkeypatch.setenv("CGC_FUSED_GATE", fused)
    monkeypatch.setattr(context_gate, "CHUNK_ELEMENTS", 2 * 3 * 16 * 4 * 2)  # a few positions per chunk
    gate = randomized(ContextGate(16, 4, 7, context=context, gate=gate_shape).double())
    g = torch.Generator().manual_seed(T)
    x = torch.randn(T, 3, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(T, 3, gate.groups, 7, generator=g, dtype=torch.float64)  # a function of the gate
    lean = gate.causal_gate(x)
    lean_grads = torch.autograd.grad((lean * weights).sum(), [x, *gate.parameters()])
    reference = gate(x, causal_pooling(torch.arange(T), gate.bins, T))
    reference_grads = torch.autograd.grad((reference * weights).sum(), [x, *gate.parameters()])
    torch.testing.assert_close(lean, reference, rtol=0, atol=1e-12)
    for a, b in zip(lean_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", [VARIANTS[0], pytest.param(VARIANTS[1], marks=pytest.mark.slow)])  # fast: one
def test_prefix_steps_from_running_sums_equal_the_full_pass_over_100_positions(arch):
    """Incremental "prefix" gates (running sums, beam reorders on indices) == the full pass, far past the kernel."""
    model = build(arch, *TINY, "--cgc-decoder-context", "prefix").eval()
    randomize_gates(model)
    vocab = model.encoder.dictionary
    src, lengths = tokens(vocab, 3, 7, seed=5)
    src, lengths = src.repeat_interleave(2, 0), lengths.repeat_interleave(2)  # a beam of 2 per sentence
    prev = torch.randint(vocab.nspecial, len(vocab), (6, 100), generator=torch.Generator().manual_seed(7))
    prev[:, 0] = vocab.eos()
    order = torch.tensor([1, 0, 2, 2, 5, 4])  # within each sentence's beam (fairseq's attention assumes it)
    with torch.no_grad():
        encoder_out, state, steps = model.encoder(src, lengths), {}, []
        for t in range(prev.size(1)):
            if t % 10 == 9:  # a beam step: swap and duplicate hypotheses
                encoder_out = model.encoder.reorder_encoder_out(encoder_out, order)
                model.decoder.reorder_incremental_state_scripting(state, order)
                prev, steps = prev[order], [s[order] for s in steps]
            steps.append(model.decoder(prev[:, : t + 1], encoder_out=encoder_out, incremental_state=state)[0])
        full = model.decoder(prev, encoder_out=encoder_out)[0]
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


def decoder_gates(model, src, lengths, prev):
    """The decoder convs' gates of one full pass, N x B x groups x K each."""
    convs = [layer.conv for layer in model.decoder.layers]
    for conv in convs:
        conv.record_gates = True
    with torch.no_grad():
        model(src, lengths, prev)
    return [conv.last_gate for conv in convs]


def source_context_model(arch):
    """A tiny model with the decoder's "source" context and random gates, and a batch (src left-padded)."""
    model = build(arch, *TINY, "--cgc-decoder-context", "source").eval()
    randomize_gates(model)
    vocab = model.encoder.dictionary
    src, lengths = tokens(vocab, 3, 8, seed=3)
    prev, _ = tokens(vocab, 3, 6, seed=4, left_pad=False)
    return model, vocab, src, lengths, prev


@pytest.mark.parametrize("arch", VARIANTS)
def test_source_context_is_one_gate_per_sentence_from_the_encoder_output(arch):
    model, vocab, src, lengths, prev = source_context_model(arch)
    base = decoder_gates(model, src, lengths, prev)
    assert all(g.shape[:2] == (1, 3) for g in base)  # the same gate at every target position
    other = prev.clone()
    other[:, 1:] = vocab.nspecial + (other[:, 1:] - vocab.nspecial + 1) % (len(vocab) - vocab.nspecial)
    assert all(torch.equal(a, b) for a, b in zip(base, decoder_gates(model, src, lengths, other)))  # target: no
    changed = src.clone()
    changed[0, -2] = vocab.nspecial + (changed[0, -2] - vocab.nspecial + 1) % (len(vocab) - vocab.nspecial)
    moved = decoder_gates(model, changed, lengths, prev)
    assert all(not torch.allclose(a[:, 0], b[:, 0]) for a, b in zip(base, moved))  # the source: yes
    assert all(torch.equal(a[:, 1:], b[:, 1:]) for a, b in zip(base, moved))  # and only its own sentence's


@pytest.mark.parametrize("arch", VARIANTS)
def test_source_context_ignores_extra_left_padding_of_the_source(arch):
    model, vocab, src, lengths, prev = source_context_model(arch)
    n = lengths[1].item()
    assert src[1, 0] == vocab.pad()
    with torch.no_grad():
        batched = model(src, lengths, prev)[0][1]
        alone = model(src[1:2, -n:], lengths[1:2], prev[1:2])[0][0]
    assert (batched - alone).abs().max() < 1e-5


@pytest.mark.parametrize("arch", VARIANTS)
def test_static_control_has_no_context_and_one_gate_for_every_input(arch):
    model = build(arch, *TINY, "--cgc-context", "static").eval()
    randomize_gates(model)
    assert gates(model) and all(name == "logits" for g in gates(model) for name, _ in g.named_parameters())
    assert all(not list(g.children()) for g in gates(model))
    vocab = model.encoder.dictionary
    first = decoder_gates(model, *tokens(vocab, 2, 8, seed=1), tokens(vocab, 2, 6, seed=2, left_pad=False)[0])
    second = decoder_gates(model, *tokens(vocab, 2, 5, seed=3), tokens(vocab, 2, 9, seed=4, left_pad=False)[0])
    assert all(torch.equal(a, b) and torch.equal(a[:, 0], a[:, 1]) for a, b in zip(first, second))
    static, ungated = (sum(p.numel() for p in build(arch, *TINY, *o).parameters())
                       for o in (["--cgc-context", "static"], ["--no-cgc"]))
    assert static - ungated == sum(g.logits.numel() for g in gates(model))


def gate_decoder_weights(model):
    return torch.cat([m.weight.flatten() for g in gates(model) for m in (g.decode_in, g.decode_out)])


def test_init_std_sets_the_gate_decoders_initial_weights():
    default = gate_decoder_weights(build("cgc_lightconv_small", *TINY))
    wide = gate_decoder_weights(build("cgc_lightconv_small", *TINY, "--cgc-init-std", "0.3"))
    assert 0.007 < default.std() < 0.013 and 0.21 < wide.std() < 0.39
    for gate in gates(build("cgc_lightconv_small", *TINY, "--cgc-init-std", "pytorch")):
        bound = (gate.kernel_size // 2 + 1) ** -0.5  # nn.Linear(d, K): U(-1/sqrt(d), 1/sqrt(d))
        for m in (gate.decode_in, gate.decode_out):
            assert m.weight.abs().max() <= bound and m.weight.std() > bound / 3 and m.bias.abs().max() > 0


@pytest.mark.parametrize("value", ["0", "-0.1", "nan", "inf", "wide"])
def test_init_std_refuses_a_bad_value(value, capsys):
    with pytest.raises(SystemExit):
        parse("cgc_lightconv_small", "--cgc-init-std", value)
    assert "--cgc-init-std" in capsys.readouterr().err


def test_source_context_with_a_channel_gate_needs_matching_widths():
    with pytest.raises(ValueError, match="--decoder-conv-dim"):
        build("cgc_lightconv_small", *TINY, "--cgc-decoder-context", "source", "--cgc-gate", "channel",
              "--decoder-conv-dim", "32")


@pytest.mark.parametrize("arch", VARIANTS)
def test_checkpoint_from_before_these_options_translates_as_before(arch):
    """tests/fixtures/main_b6de80d.pt: tiny models saved by main at b6de80d (args without the new options), with
    their outputs and beam-search hypotheses."""
    saved = torch.load(REPO / "tests/fixtures/main_b6de80d.pt", weights_only=False)[arch]
    assert not hasattr(saved["args"], "cgc_decoder_context")
    vocab = dictionary()
    model = build_from_args(arch, saved["args"], vocab)
    model.load_state_dict(saved["model"])  # strict: the same parameters
    model.eval()
    sample = {"net_input": {"src_tokens": saved["src_tokens"], "src_lengths": saved["src_lengths"]}}
    with torch.no_grad():
        logits = model(saved["src_tokens"], saved["src_lengths"], saved["prev_output_tokens"])[0]
        hypotheses = SequenceGenerator([model], vocab, beam_size=4, max_len_b=12).forward(sample)
    torch.testing.assert_close(logits, saved["logits"], rtol=0, atol=1e-5)
    assert [[h["tokens"].tolist() for h in sentence] for sentence in hypotheses] == [
        [h.tolist() for h in sentence] for sentence in saved["hypotheses"]]


@pytest.mark.parametrize("arch", VARIANTS)
def test_the_command_line_default_is_the_source_context_and_old_args_mean_prefix(arch):
    """The race's stage 1 chose --cgc-decoder-context source (docs/results/race_stage1); an args namespace without
    the option (a checkpoint from before it) still builds the prefix gate it was trained with."""
    def contexts(model):
        return {layer.conv.context_source for layer in model.decoder.layers}

    args = parse(arch, *TINY)
    assert args.cgc_decoder_context == "source"
    assert contexts(build(arch, *TINY)) == {"source"}
    del args.cgc_decoder_context
    assert contexts(build_from_args(arch, args)) == {"prefix"}
