"""Data-parallel fairseq-train on CPU cores: N processes, fairseq's own torch.distributed engine (gloo).

    python -m scripts.ddp_cpu --nproc 2 -- data-bin/multi30k.de-en --user-dir cgc_fairseq --arch cgc_lightconv_small ...

Each rank runs `fairseq-train ARGS --cpu --distributed-backend gloo --distributed-world-size N
--distributed-rank R --distributed-init-method tcp://127.0.0.1:PORT --distributed-no-spawn --ddp-backend legacy_ddp`
with --threads threads. What we found with fairseq 0.12 on CPU: `--distributed-world-size 2` alone asserts (it wants
CUDA devices); `torchrun ... fairseq-train --cpu` runs independent single-process copies; the default pytorch_ddp
backend fails on CPU modules (it passes device_ids=[0]; a fairseq change, not a plugin one). The global batch is
N x --max-tokens (words per batch double with 2 ranks, updates per epoch halve): the single-process equivalent is
--update-freq N. Rank 0 writes to stdout (and the checkpoints); rank R > 0 to --log-dir/rank-R.log.

GPU, one node: `fairseq-train ARGS` (fairseq spawns one process per visible GPU). Several nodes: on each node
`torchrun --nnodes M --nproc_per_node G --node_rank I --master_addr HOST --master_port PORT
$(which fairseq-train) ARGS --distributed-world-size M*G`.
"""
from __future__ import annotations

if not __package__:  # run as a file: the relative imports below need the package
    raise SystemExit("error: run it as a module from the repo root: python -m scripts.ddp_cpu --help")

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .cli import ScriptError, fairseq_cli, log, main_guard, parser, positive_int, thread_env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_parser():
    p = parser("ddp_cpu", __doc__)
    p.add_argument("--nproc", type=positive_int, default=2, help="processes (ranks); default %(default)s")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads per rank; default %(default)s")
    p.add_argument("--port", type=int, help="rendezvous port on 127.0.0.1 (default: a free one)")
    # --log-dir, not --out: only the logs of ranks > 0 go there (rank 0 writes to stdout, fairseq-train's own
    # --save-dir gets the checkpoints)
    p.add_argument("--log-dir", type=Path, default=Path("."), help="where ranks > 0 log; default %(default)s")
    p.add_argument("fairseq_args", nargs="+", help="fairseq-train arguments (after --)")
    return p


@main_guard
def main(argv=None):
    args = build_parser().parse_args(argv)
    data = Path(args.fairseq_args[0])
    if not data.is_dir():  # else every rank dies with fairseq's traceback
        raise ScriptError(f"data dir not found: {data} (the first fairseq-train argument)")
    port = args.port or free_port()
    env = {**os.environ, **thread_env(args.threads)}
    args.log_dir.mkdir(parents=True, exist_ok=True)
    procs, logs = [], []
    for rank in range(args.nproc):
        cmd = [fairseq_cli("fairseq-train"), *args.fairseq_args, "--cpu", "--distributed-backend", "gloo",
               "--distributed-world-size", str(args.nproc), "--distributed-rank", str(rank),
               "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
               "--ddp-backend", "legacy_ddp"]
        out = None if rank == 0 else open(args.log_dir / f"rank-{rank}.log", "w")
        logs.append(out)
        procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None))
    log(f"{args.nproc} ranks on tcp://127.0.0.1:{port}, {args.threads} thread(s) each")
    try:
        while any(p.poll() is None for p in procs):
            failed = [r for r, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:  # one rank died: the others would wait for it forever
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                raise ScriptError(f"rank {failed[0]} exited with status {procs[failed[0]].returncode}"
                                  + (f"; see {args.log_dir / f'rank-{failed[0]}.log'}" if failed[0] else ""))
            time.sleep(0.2)
    finally:
        for out in logs:
            if out:
                out.close()
    codes = [p.returncode for p in procs]
    if any(codes):
        rank = next(r for r, c in enumerate(codes) if c)
        raise ScriptError(f"rank {rank} exited with status {codes[rank]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
