"""Moses-style tokenization + lowercasing, shared by data preparation and
(by copying the settings in ``SETTINGS`` / ``manifest.json["tokenizer"]``)
inference-time code.

Public API::

    tokenize(line, lang, corpus="iwslt14") -> str    # tokenized, lowercased, Moses-escaped
    detokenize(line, lang) -> str                     # Moses detokenizer, unescaping
    tokenize_lines(lines, lang, corpus, workers)      # parallel, with a progress bar

The per-corpus settings reproduce the scripts that made the references:

* ``iwslt14`` (fairseq ``prepare-iwslt14.sh``):
  ``tokenizer.perl -l L | lowercase.perl`` ->
  ``MosesTokenizer(L).tokenize(s, aggressive_dash_splits=False, escape=True,
  return_str=True)`` then ``.lower()``; plus the rule of current Moses
  ``tokenizer.perl`` that a period ending the *last* word is always split off
  (sacremoses 0.2.0 lacks it; ``split_final_period``).
* ``multi30k`` (the release's ``scripts/task1-tokenize.sh``):
  ``lowercase.perl | normalize-punctuation.perl -l L | tokenizer.perl -l L`` ->
  ``s.lower()``, ``MosesPunctNormalizer(L, perl_parity=True).normalize(s + "\n")``
  minus the ``"\n"`` (other options at sacremoses defaults: penn=True,
  norm_quote_commas=True, norm_numbers=True), then
  ``MosesTokenizer(L).tokenize(s, aggressive_dash_splits=False, escape=True,
  return_str=True)``. The release used an older Moses (3a0631a) that does
  not split the final period of e.g. ``st.`` -- so ``split_final_period`` is off.
"""

from __future__ import annotations

import multiprocessing as mp
import re
from typing import Sequence

from sacremoses import MosesDetokenizer, MosesPunctNormalizer, MosesTokenizer

SETTINGS: dict[str, dict] = {
    "iwslt14": {
        "pipeline": ["moses_tokenize", "lowercase"],
        "normalize_punct": False,
        "normalize_punct_options": None,
        "escape": True,
        "aggressive_dash_splits": False,
        "lowercase": True,
        "lowercase_first": False,
        "split_final_period": True,
        "normalize_with_newline": False,
        "detokenize": {"unescape": True},
        "calls": [
            "t = MosesTokenizer(lang)  # + split_final_period, see text._MosesTokenizer",
            "s = t.tokenize(s, aggressive_dash_splits=False, escape=True, return_str=True)",
            "s = s.lower()",
        ],
        "detokenize_call": "MosesDetokenizer(lang).detokenize(s.split(), unescape=True, return_str=True)",
    },
    "multi30k": {
        "pipeline": ["lowercase", "normalize_punct", "moses_tokenize"],
        "normalize_punct": True,
        "normalize_punct_options": {
            "penn": True,
            "norm_quote_commas": True,
            "norm_numbers": True,
            "pre_replace_unicode_punct": False,
            "post_remove_control_chars": False,
            "perl_parity": True,
        },
        # normalize-punctuation.perl sees each line with its "\n": its German rule
        # s/(\.+)"(\s*[^<])/"$1$2/ then also moves a sentence-final period
        # after the closing quote (`fabrik."` -> `fabrik".`). Reproduced by
        # normalizing line + "\n" and removing the "\n" again.
        "normalize_with_newline": True,
        "escape": True,
        "aggressive_dash_splits": False,
        "lowercase": True,
        "lowercase_first": True,
        "split_final_period": False,
        "detokenize": {"unescape": True},
        "calls": [
            "s = s.lower()",
            "s = MosesPunctNormalizer(lang, perl_parity=True).normalize(s + '\\n').removesuffix('\\n')",
            "s = MosesTokenizer(lang).tokenize(s, aggressive_dash_splits=False, escape=True, return_str=True)",
        ],
        "detokenize_call": "MosesDetokenizer(lang).detokenize(s.split(), unescape=True, return_str=True)",
    },
}

_FINAL_PERIOD = re.compile(r"^(\S+)\.$")


class _MosesTokenizer(MosesTokenizer):
    """sacremoses' tokenizer plus current tokenizer.perl's final-period rule:

    ``if ($i == scalar(@words)-1) { $word = $pre." ."; }`` -- "split last words
    independently as they are unlikely to be non-breaking prefixes". At this
    point multi-dots are still ``DOTDOTMULTI`` placeholders, so ``...`` is safe.
    """

    def __init__(self, lang: str, split_final_period: bool):
        super().__init__(lang=lang)
        self.split_final_period = split_final_period

    def handles_nonbreaking_prefixes(self, text):
        if self.split_final_period:
            tokens = text.split()
            if tokens:
                m = _FINAL_PERIOD.search(tokens[-1])
                if m:
                    tokens[-1] = m.group(1) + " ."
                    text = " ".join(tokens)
        return super().handles_nonbreaking_prefixes(text)


class Tokenizer:
    """Callable ``line -> tokenized lowercased line`` for one corpus + language."""

    def __init__(self, lang: str, corpus: str = "iwslt14"):
        if corpus not in SETTINGS:
            raise ValueError(f"unknown corpus {corpus!r}; expected one of {sorted(SETTINGS)}")
        self.lang = lang
        self.cfg = cfg = SETTINGS[corpus]
        self.tok = _MosesTokenizer(lang, cfg["split_final_period"])
        self.norm = (
            MosesPunctNormalizer(lang, **cfg["normalize_punct_options"])
            if cfg["normalize_punct"]
            else None
        )

    def __call__(self, line: str) -> str:
        cfg = self.cfg
        if cfg["lowercase"] and cfg["lowercase_first"]:
            line = line.lower()
        if self.norm is not None:
            if cfg["normalize_with_newline"]:
                line = self.norm.normalize(line + "\n").removesuffix("\n")
            else:
                line = self.norm.normalize(line)
        line = self.tok.tokenize(
            line,
            aggressive_dash_splits=cfg["aggressive_dash_splits"],
            escape=cfg["escape"],
            return_str=True,
        )
        if cfg["lowercase"] and not cfg["lowercase_first"]:
            line = line.lower()
        return line


_CACHE: dict[tuple, object] = {}


def tokenize(line: str, lang: str, corpus: str = "iwslt14") -> str:
    """Moses-tokenize and lowercase one line exactly as the data preparation does."""
    key = ("tok", lang, corpus)
    if key not in _CACHE:
        _CACHE[key] = Tokenizer(lang, corpus)
    return _CACHE[key](line)


def detokenize(line: str, lang: str) -> str:
    """Inverse of the Moses tokenization (case is not restored)."""
    key = ("detok", lang)
    if key not in _CACHE:
        _CACHE[key] = MosesDetokenizer(lang=lang)
    return _CACHE[key].detokenize(line.split(), unescape=True, return_str=True)


# ---- parallel --------------------------------------------------------------

_WORKER_TOK: Tokenizer | None = None


def _init_worker(lang: str, corpus: str) -> None:
    global _WORKER_TOK
    _WORKER_TOK = Tokenizer(lang, corpus)


def _work(chunk: list[str]) -> list[str]:
    return [_WORKER_TOK(l) for l in chunk]


def tokenize_lines(
    lines: Sequence[str], lang: str, corpus: str, workers: int = 1, desc: str | None = None
) -> list[str]:
    """Tokenize ``lines`` on ``workers`` processes with a tqdm progress bar."""
    from tqdm import tqdm

    chunk = 500
    chunks = [list(lines[i : i + chunk]) for i in range(0, len(lines), chunk)]
    out: list[str] = []
    bar = tqdm(total=len(lines), desc=desc or f"tokenize {lang}", unit="line",
               leave=False, mininterval=1.0)
    try:
        if workers <= 1 or len(chunks) <= 1:
            tok = Tokenizer(lang, corpus)
            for c in chunks:
                out.extend(tok(l) for l in c)
                bar.update(len(c))
        else:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp
            with ctx.Pool(workers, initializer=_init_worker, initargs=(lang, corpus)) as pool:
                for res in pool.imap(_work, chunks):
                    out.extend(res)
                    bar.update(len(res))
    finally:
        bar.close()
    return out
