"""The Moses tokenization of the data preparation, driven by the settings it records in manifest.json["tokenizer"]:
lowercasing, optional Moses punctuation normalisation, Moses tokenization with escaping; and its inverse.

    tokenize = Tokenizer("de", settings)   # settings: a corpus recipe's TOKENIZER, or a manifest's "tokenizer"
    tokenize("Ein Mann fährt Fahrrad.")    # -> 'ein mann fährt fahrrad .'
    Detokenizer("en")("a man &apos;s bike .")   # -> "a man's bike." (case is not restored)

Used by data-bin-prep (to make the data) and by cgc_fairseq.hub (to read new input the same way).
"""
import re

from sacremoses import MosesDetokenizer, MosesPunctNormalizer, MosesTokenizer

# what a setting means when a manifest does not name it
DEFAULTS = {"lowercase": True, "lowercase_first": True, "normalize_punct": False, "normalize_punct_options": None,
            "normalize_with_newline": True, "escape": True, "aggressive_dash_splits": False,
            "split_final_period": False}
_FINAL_PERIOD = re.compile(r"^(\S+)\.$")


class _FinalPeriodTokenizer(MosesTokenizer):
    """sacremoses' tokenizer plus current tokenizer.perl's rule that a period ending the *last* word is always split
    off (`if ($i == scalar(@words)-1) { $word = $pre." ."; }`; sacremoses 0.2.0 lacks it). At this point multi-dots
    are still DOTDOTMULTI placeholders, so "..." stays whole."""

    def __init__(self, lang, split_final_period):
        super().__init__(lang=lang)
        self.split_final_period = split_final_period

    def handles_nonbreaking_prefixes(self, text):
        if self.split_final_period:
            words = text.split()
            if words and (m := _FINAL_PERIOD.search(words[-1])):
                words[-1] = m.group(1) + " ."
                text = " ".join(words)
        return super().handles_nonbreaking_prefixes(text)


class Tokenizer:
    """Callable line -> tokenized (lowercased, escaped) line for one language and one set of settings."""

    def __init__(self, lang, settings):
        self.settings = s = {**DEFAULTS, **settings}
        self.tokenizer = _FinalPeriodTokenizer(lang, s["split_final_period"])
        self.normalizer = (MosesPunctNormalizer(lang=lang, **(s["normalize_punct_options"] or {}))
                           if s["normalize_punct"] else None)

    def __call__(self, line):
        s = self.settings
        if s["lowercase"] and s["lowercase_first"]:
            line = line.lower()
        if self.normalizer is not None:
            # normalize-punctuation.perl sees each line with its "\n" (its German quote rule depends on it)
            line = (self.normalizer.normalize(line + "\n").removesuffix("\n") if s["normalize_with_newline"]
                    else self.normalizer.normalize(line))
        line = self.tokenizer.tokenize(line, aggressive_dash_splits=s["aggressive_dash_splits"], escape=s["escape"],
                                       return_str=True)
        if s["lowercase"] and not s["lowercase_first"]:
            line = line.lower()
        return line


class Detokenizer:
    """Callable tokenized line -> detokenized, unescaped line (Moses; case is not restored)."""

    def __init__(self, lang):
        self.detokenizer = MosesDetokenizer(lang=lang)

    def __call__(self, line):
        return self.detokenizer.detokenize(line.split(), unescape=True, return_str=True)
