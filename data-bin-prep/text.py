"""Moses-tokenize many lines on several processes, with a progress bar: datadir.moses.Tokenizer with a corpus
recipe's TOKENIZER settings (the one implementation, shared with cgc_fairseq.hub)."""

from __future__ import annotations

import multiprocessing as mp
import signal
from typing import Sequence

from datadir.moses import Tokenizer

CHUNK = 500
_worker_tokenizer: Tokenizer | None = None


def _init_worker(lang: str, settings: dict) -> None:
    """A forked worker: SIGTERM (how the pool ends its workers) ends it, not the handler of clitools' guard that it
    inherits (a Terminated traceback per worker); Ctrl-C is the main process's to handle."""
    global _worker_tokenizer
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_tokenizer = Tokenizer(lang, settings)


def _work(chunk: list[str]) -> list[str]:
    return [_worker_tokenizer(l) for l in chunk]


def tokenize_lines(lines: Sequence[str], lang: str, settings: dict, workers: int = 1,
                   desc: str | None = None) -> list[str]:
    """Tokenize ``lines`` on ``workers`` processes with a tqdm progress bar."""
    from tqdm import tqdm

    chunks = [list(lines[i : i + CHUNK]) for i in range(0, len(lines), CHUNK)]
    out: list[str] = []
    bar = tqdm(total=len(lines), desc=desc or f"tokenize {lang}", unit="line", leave=False, mininterval=1.0)
    try:
        if workers <= 1 or len(chunks) <= 1:
            tokenize = Tokenizer(lang, settings)
            for c in chunks:
                out.extend(tokenize(l) for l in c)
                bar.update(len(c))
        else:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp
            with ctx.Pool(workers, initializer=_init_worker, initargs=(lang, settings)) as pool:
                for res in pool.imap(_work, chunks):
                    out.extend(res)
                    bar.update(len(res))
    finally:
        bar.close()
    return out
