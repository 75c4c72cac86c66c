"""torch.export of the encoder, the full decoder pass and the incremental decoder step (cgc_fairseq/export.py,
scripts/export.py): the programs, saved and reloaded, against the eager model at batch sizes and lengths other than the
export example's, with padding and a beam reordering; the refusals; the CLI on a tiny checkpoint."""
import io
import json

import pytest
import torch
from fairseq.data import indexed_dataset

from cgc_fairseq.export import EXAMPLE, compare, export_model
from scripts import export as export_script
from tests.helpers import TINY, build, dictionary, parse, randomize_gates, tokens

TOL = 1e-5  # measured max |exported - eager|: 0.0 for all three (the graphs run eager's ATen ops, one by one)
DIFFS = ("encoder_out", "logits", "step_logits")
ONE_LAYER = [*TINY, *"--encoder-layers 1 --decoder-layers 1 --encoder-kernel-size-list [7] "
                     "--decoder-kernel-size-list [7]".split()]  # later flags win: a cheaper export
# id: (arch, options); 2 layers (kernels 3, 7) or 1 (7); the decoder's "source" context reads the encoder output
PREFIX = ["--cgc-decoder-context", "prefix"]
VARIANTS = {"cgc_lightconv_small prefix": ("cgc_lightconv_small", [*TINY, *PREFIX]),
            "cgc_dynamicconv_small prefix": ("cgc_dynamicconv_small", [*ONE_LAYER, *PREFIX]),
            "cgc_lightconv_small source": ("cgc_lightconv_small", [*ONE_LAYER, "--cgc-decoder-context", "source"])}
# (batch, source words, target length): none is the example's (2, 13, 11; 5 earlier steps); batch 1, lengths 1 and
# lengths below the kernel width 7 (where fairseq's conv branches on T), padding in every batch of several sentences;
# a beam search's reordering (drop, duplicate) of the hypotheses before step 3 where the batch has 4 sentences
SIZES = [(1, 0, 1), (1, 6, 4), (5, 17, 3), (4, 9, 23)]
REORDER = (3, torch.tensor([2, 0, 0, 1, 3]))


def reload(program):
    buf = io.BytesIO()
    torch.export.save(program, buf)
    buf.seek(0)
    return torch.export.load(buf).module()


def batch(vocab, size, words, tgt_len, seed):
    """src_tokens (left-padded, ending in EOS; EOS alone for words=0) and prev_output_tokens (right-padded)."""
    if words == 0:
        src = torch.full((size, 1), vocab.eos())
    else:
        src, _ = tokens(vocab, size, words, seed=seed)
    prev, _ = tokens(vocab, size, tgt_len - 1, seed=seed + 1, left_pad=False) if tgt_len > 1 else (
        torch.full((size, 1), vocab.eos()), None)
    return src, prev


# the edit loop (make test-fast) exports the cheapest variant; make test all three
FAST_VARIANT = "cgc_lightconv_small source"


@pytest.fixture(scope="module", params=[pytest.param(v, marks=() if v == FAST_VARIANT else pytest.mark.slow)
                                        for v in VARIANTS])
def exported(request):
    arch, options = VARIANTS[request.param]
    model = build(arch, *options).eval()
    randomize_gates(model)
    return request.param, model, {name: reload(program) for name, program in export_model(model).items()}


def test_exported_equals_eager_at_other_sizes(exported, capsys):
    arch, model, programs = exported
    vocab = model.encoder.dictionary
    worst = dict.fromkeys(DIFFS, 0.0)
    for i, (size, words, tgt_len) in enumerate(SIZES):
        src, prev = batch(vocab, size, words, tgt_len, seed=10 * i)
        assert (size, tgt_len) != (EXAMPLE["batch"], EXAMPLE["tgt_len"]) and prev.size(1) == tgt_len
        assert size == 1 or src.eq(vocab.pad()).any() and prev.eq(vocab.pad()).any()
        diff = compare(model, programs, src, prev, reorder=REORDER if size == 4 else None)
        assert diff["padding_mask_equal"]
        for key in worst:
            worst[key] = max(worst[key], diff[key])
    with capsys.disabled():
        print(f"\n{arch}: max |exported - eager| " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    assert max(worst.values()) <= TOL


def test_the_comparison_sees_a_different_model(exported):
    """Negative control: the same programs against an eager model with other gate weights differ."""
    variant, model, programs = exported
    other = build(*VARIANTS[variant][:1], *VARIANTS[variant][1]).eval()
    randomize_gates(other, seed=2)
    src, prev = batch(model.encoder.dictionary, 3, 8, 9, seed=1)
    diff = compare(other, programs, src, prev)
    assert all(diff[key] > 1e-3 for key in DIFFS)


def test_longer_than_the_positions_is_refused(exported):
    _, model, programs = exported
    src = torch.full((1, model.encoder.max_positions() + 1), model.encoder.dictionary.eos())
    with pytest.raises(Exception, match="<= 1024"):
        programs["encoder"](src)


def test_fairseq_lightconv_is_refused():
    with pytest.raises(ValueError, match="only cgc_lightconv models"):
        export_model(build("lightconv_small", *TINY))


# ---- the CLI, in-process (the imports are already paid), on a tiny untrained checkpoint and a hand-made data dir


def data_dir(path, vocab, n=6):
    """dict.{de,en}.txt and a binarized valid split of n random sentences (lengths 2..12)."""
    path.mkdir()
    for lang in ("de", "en"):
        vocab.save(str(path / f"dict.{lang}.txt"))
    g = torch.Generator().manual_seed(0)
    for lang in ("de", "en"):
        prefix = str(path / f"valid.de-en.{lang}")
        builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(vocab))
        for _ in range(n):
            length = int(torch.randint(1, 12, (1,), generator=g))
            words = torch.randint(vocab.nspecial, len(vocab), (length,), generator=g)
            builder.add_item(torch.cat([words, torch.tensor([vocab.eos()])]).int())
        builder.finalize(prefix + ".idx")
    return path


def checkpoint(path, arch, vocab):
    model = build(arch, *ONE_LAYER, vocab=vocab)
    randomize_gates(model)
    args = parse(arch, *ONE_LAYER, "--source-lang", "de", "--target-lang", "en")
    torch.save({"args": args, "model": model.state_dict(), "extra_state": {},
                "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam",
                                       "lr_scheduler_state": {"best": None}, "num_updates": 0}]}, path)
    return path


@pytest.mark.slow  # a whole export and its check: make test only
def test_cli(tmp_path, capsys):
    vocab = dictionary()
    data = data_dir(tmp_path / "data", vocab)
    ckpt = checkpoint(tmp_path / "model.pt", "cgc_dynamicconv_small", vocab)
    out = tmp_path / "export"
    assert export_script.main(["--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--sentences", "5"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["decoder.pt2", "decoder_step.pt2", "encoder.pt2", "export.json"]
    res = json.loads((out / "export.json").read_text())
    assert res["arch"] == "cgc_dynamicconv_small" and res["check"]["passed"] and res["versions"]["torch"]
    assert [c["batch"] for c in res["check"]["batches"]] == [5, 1, 3]
    assert any(c["padded"] for c in res["check"]["batches"])
    assert max(res["check"]["max_abs_diff"].values()) <= TOL
    assert res["signature"]["decoder"]["outputs"]["logits"] == ["batch", "tgt_len", len(vocab)]
    # the files are usable on their own: two greedy steps give the last position of the full pass
    encoder, decoder, step = (torch.export.load(str(out / f"{name}.pt2")).module() for name in res["files"])
    src = torch.tensor([[vocab.pad(), 5, 6, vocab.eos()], [7, 8, 9, vocab.eos()]])
    encoder_out, padding_mask = encoder(src)
    histories = [torch.zeros(0, 2, h[2]) for h in res["signature"]["decoder_step"]["inputs"]["histories"]]
    tokens = torch.full((2, 1), vocab.eos())
    for _ in range(2):
        logits, histories = step(tokens[:, -1:], encoder_out, padding_mask, histories)
        no_pad = logits.index_fill(1, torch.tensor([vocab.pad()]), float("-inf"))  # as fairseq's search does
        tokens = torch.cat([tokens, no_pad.argmax(-1, keepdim=True)], dim=1)
    full = decoder(tokens[:, :2], encoder_out, padding_mask)
    assert full.shape == (2, 2, len(vocab)) and [h.size(0) for h in histories] == [2]
    assert (full[:, -1] - logits).abs().max() <= TOL

    capsys.readouterr()
    cases = {"checkpoint not found": ["--checkpoint", str(tmp_path / "nope.pt"), "--data", str(data)],
             "not a cgc_lightconv arch": ["--checkpoint", str(checkpoint(tmp_path / "fs.pt", "lightconv_small", vocab)),
                                          "--data", str(data)],
             "data dir not found": ["--checkpoint", str(ckpt), "--data", str(tmp_path / "nodata")],
             "unknown split 'test'": ["--checkpoint", str(ckpt), "--data", str(data), "--split", "test"]}
    for needle, argv in cases.items():
        assert export_script.main([*argv, "--out", str(tmp_path / "bad")]) == 1, needle
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("error: ") and needle in err[-1], (needle, err)
    assert not (tmp_path / "bad").exists()
