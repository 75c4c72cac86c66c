"""End to end through fairseq's own command-line tools: preprocess, train (--user-dir), generate, interactive.

The task (tests/reverse_task.py, the `reverse_task` fixture): reverse a random sequence over 12 words. A model that
learned nothing scores far below the threshold; the identity (copy the source) is reported as the chance level.
"""
import math
import re

import pytest
import sacrebleu

from tests.helpers import USER_DIR
from tests.reverse_task import ARCH_FLAGS, run

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast

TRAIN_FLAGS = ("--dropout 0.0 --weight-dropout 0.0 --optimizer adam --lr 5e-3 --lr-scheduler inverse_sqrt "
               "--warmup-updates 50 --max-tokens 1000 --max-update 400 --seed 1 --cpu --num-workers 0 "
               "--no-epoch-checkpoints --required-batch-size-multiple 1 --log-format simple --log-interval 50").split()
MIN_BLEU = 60.0  # measured 99.7-100 after 400 updates for both variants; copying the source scores ~12


def hypotheses(output):
    """fairseq's H-<id> lines, in input order."""
    hyps = dict(re.findall(r"^H-(\d+)\t\S+\t(.*)$", output, flags=re.M))
    return [hyps[i] for i in sorted(hyps, key=int)]


@pytest.mark.parametrize("arch", ["cgc_lightconv_small", "cgc_dynamicconv_small"])
def test_train_generate_interactive(reverse_task, arch, capsys):
    data, save = reverse_task / "bin", reverse_task / arch
    run("fairseq-train", data, "--user-dir", USER_DIR, "--arch", arch, *ARCH_FLAGS, *TRAIN_FLAGS, "--save-dir", save)
    checkpoint = save / "checkpoint_last.pt"
    assert checkpoint.exists()

    out = run("fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint, "--gen-subset", "test",
              "--beam", "4", "--batch-size", "32", "--required-batch-size-multiple", "1", "--cpu")
    hyps = hypotheses(out)
    refs = (reverse_task / "test.tgt").read_text().splitlines()
    sources = (reverse_task / "test.src").read_text().splitlines()
    assert len(hyps) == len(refs)  # every sentence translated
    bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score
    chance = sacrebleu.corpus_bleu(sources, [refs], tokenize="none").score
    with capsys.disabled():
        print(f"\n{arch}: BLEU {bleu:.2f} (copying the source: {chance:.2f})")
    assert bleu > MIN_BLEU > 4 * chance

    out = run("fairseq-interactive", data, "--user-dir", USER_DIR, "--path", checkpoint, "--source-lang", "src",
              "--target-lang", "tgt", "--beam", "4", "--cpu", stdin="\n".join(sources[:5]) + "\n")
    assert hypotheses(out) == hyps[:5]

    # an empty line and unknown words: a hypothesis for each, finite scores
    out = run("fairseq-interactive", data, "--user-dir", USER_DIR, "--path", checkpoint, "--source-lang", "src",
              "--target-lang", "tgt", "--beam", "4", "--cpu", stdin="\nqqq w1 zzz w2\n")
    scores = re.findall(r"^H-\d+\t(\S+)\t", out, flags=re.M)
    assert len(scores) == 2 and all(math.isfinite(float(s)) for s in scores)
    assert "<unk>" in out  # the unknown words reached the model as <unk>
