"""A synthetic task for fairseq's own command-line tools: reverse a random sequence over 12 words (train 3000, valid
and test 100 pairs), binarized by fairseq-preprocess; the tiny gated model flags that learn it."""
import os
import random
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
ARCH_FLAGS = ("--encoder-embed-dim 32 --decoder-embed-dim 32 --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 "
              "--encoder-layers 2 --decoder-layers 2 --encoder-kernel-size-list [3,5] --decoder-kernel-size-list [3,5] "
              "--encoder-attention-heads 4 --decoder-attention-heads 4 --share-all-embeddings").split()


def run(*cmd, stdin=None):
    """Run a fairseq console script (fairseq-train, ...) of this venv; its stdout."""
    # one thread: a tiny model gains nothing from more, and oversubscribed cores slow it down many times over
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], input=stdin, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout


def make_reverse_task(root):
    """ROOT/{train,valid,test}.{src,tgt} and their binaries in ROOT/bin."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(12)]
    for split, n in (("train", 3000), ("valid", 100), ("test", 100)):
        src = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(n)]
        (root / f"{split}.src").write_text("\n".join(src) + "\n")
        (root / f"{split}.tgt").write_text("\n".join(" ".join(s.split()[::-1]) for s in src) + "\n")
    run("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--joined-dictionary",
        "--trainpref", root / "train", "--validpref", root / "valid", "--testpref", root / "test",
        "--destdir", root / "bin", "--workers", "1")
    return root
