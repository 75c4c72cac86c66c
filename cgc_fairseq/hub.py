"""Load a trained model from Python and translate raw text, through fairseq's from_pretrained machinery.

    from cgc_fairseq.hub import from_pretrained
    de2en = from_pretrained("runs/demo-multi30k-cgc_lightconv_small", "average.pt", "data-bin/multi30k.de-en")
    de2en.translate("Ein Mann fährt Fahrrad.")   # -> 'a man rides a bike.' (lowercased, detokenized)

The models read lowercased, Moses-tokenized sentencepiece pieces (data-bin-prep/prepare.py). fairseq's own `moses`
tokenizer does not lowercase, so this module registers the tokenizer `moses_lc`: the data preparation's own
tokenizer (datadir.moses: lowercase, optionally Moses punctuation normalisation, Moses tokenization with escaping),
its settings read from the data dir's manifest.json; decode is the Moses detokenizer (case is not restored).

What translate() takes (AutocastHubInterface): a str, or a list or tuple of str, each one sentence as a line of
datadir.lines (a "\n" at its end ends it, a "\n" inside it is a ValueError, other line breaks are spaces); anything
else is a TypeError. A sentence longer than the model's source positions (1024 tokens with EOS) is truncated to
them with a logged warning. beam, lenpen and the other generation options follow datadir.values' rules (ValueError
`beam: must be >= 1, got 0`, the words of the scripts' `--beam`); beam defaults to from_pretrained's.
"""
import difflib
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fairseq.data.encoders import register_tokenizer
from fairseq.dataclass import FairseqDataclass
from fairseq.hub_utils import GeneratorHubInterface

from datadir import layout, lines, values

from .precision import autocast, check_precision, fp32_logits

logger = logging.getLogger(__name__)

# the rules of the generation options a caller may give (fairseq's names)
GENERATION_RULES = {"beam": values.positive_int, "lenpen": values.finite_float, "nbest": values.positive_int,
                    "max_len_a": values.nonnegative_float, "max_len_b": values.nonnegative_int,
                    "min_len": values.positive_int, "unkpen": values.finite_float,
                    "temperature": values.positive_float,
                    "max_tokens": values.positive_int, "batch_size": values.positive_int}
# what fairseq's GeneratorHubInterface.generate takes besides the generation config's fields
GENERATE_ARGUMENTS = {"skip_invalid_size_inputs", "inference_step_args", "prefix_allowed_tokens_fn"}


@dataclass
class MosesLowercaseConfig(FairseqDataclass):
    source_lang: str = field(default="de", metadata={"help": "source language"})
    target_lang: str = field(default="en", metadata={"help": "target language"})
    moses_lc_manifest: str = field(default="", metadata={"help": "data dir manifest.json with the 'tokenizer' "
                                                                 "settings of the data preparation"})
    moses_lc_normalize_punct: bool = field(default=False, metadata={"help": "Moses punctuation normalisation "
                                                                            "(when no manifest)"})


def manifest_settings(path):
    """The 'tokenizer' settings of a data dir's manifest.json (path: the file or its dir); {} when absent."""
    if not path:
        return {}
    path = Path(path)
    if path.is_dir():
        path = layout.manifest_file(path)
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get("tokenizer") or {})


@register_tokenizer("moses_lc", dataclass=MosesLowercaseConfig)
class MosesLowercaseTokenizer:
    """Lowercasing Moses tokenizer (encode) and Moses detokenizer (decode), as the data preparation does."""

    def __init__(self, cfg):
        from datadir import moses  # sacremoses: only when the tokenizer is used

        settings = manifest_settings(cfg.moses_lc_manifest)
        if not settings:
            settings = {"normalize_punct": cfg.moses_lc_normalize_punct}
        self.tokenize = moses.Tokenizer(cfg.source_lang, settings)
        self.detokenize = moses.Detokenizer(cfg.target_lang)

    def encode(self, x: str) -> str:
        return self.tokenize(lines.clean(x))  # fairseq-interactive's lines, as datadir.lines reads them

    def decode(self, x: str) -> str:
        return self.detokenize(x)


def checked(options, known=None):
    """Generation options checked by their rules (ValueError naming the option; None means fairseq's default), and,
    given the names `known`, a TypeError for any other name (a misspelt option would be ignored)."""
    unknown = sorted(set(options) - set(known)) if known is not None else []
    if unknown:
        near = difflib.get_close_matches(unknown[0], list(known), n=1)
        raise TypeError(f"unknown generation option {unknown[0]!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    options = {k: v if v is None or k not in GENERATION_RULES else values.check(k, GENERATION_RULES[k], v)
               for k, v in options.items()}
    a, b, least = (options.get(k) for k in ("max_len_a", "max_len_b", "min_len"))
    if a == 0 and b is not None and b < (least or 1):  # fairseq: an AssertionError deep in the search
        raise ValueError(f"max_len_b: {b} with max_len_a 0 leaves no room for a hypothesis of min_len {least or 1}")
    if least is not None and least >= values.MAX_POSITIONS:
        raise ValueError(f"min_len: {least} is not below the models' {values.MAX_POSITIONS} target positions")
    return options


def sentence_list(sentences):
    """A str, or a list or tuple of str, as a list of lines (datadir.lines.one_line); TypeError for anything else."""
    if isinstance(sentences, str):
        sentences = [sentences]
    elif not isinstance(sentences, (list, tuple)):
        raise TypeError(f"translate: expected a str or a list of str, got {type(sentences).__name__}")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"translate: sentence {i} is of type {type(s).__name__}, expected a str")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: sentencepiece's C++ would fail on it
            raise ValueError(f"sentence {i}: not valid Unicode at character {e.start} ({e.reason})") from None
    return [lines.one_line(s, f"sentence {i}") for i, s in enumerate(sentences)]


class AutocastHubInterface(GeneratorHubInterface):
    """fairseq's GeneratorHubInterface whose generation runs in a compute precision (cgc_fairseq/precision.py),
    with checked inputs (see the module's docstring)."""

    def __init__(self, cfg, task, models, precision="fp32"):
        super().__init__(cfg, task, models)
        check_precision(precision, self.device)  # fails here, not at the first translation
        self.precision = precision
        if precision != "fp32":
            for model in self.models:
                fp32_logits(model)
        self.source_positions = self.max_positions[0]
        if cfg.dataset.max_tokens is not None and cfg.dataset.max_tokens < self.source_positions:
            cfg.dataset.max_tokens = self.source_positions  # a batch holds the longest sentence the model takes

    def translate(self, sentences, beam=None, verbose=False, **kwargs):
        return self.sample(sentences, beam, verbose, **kwargs)

    def sample(self, sentences, beam=None, verbose=False, **kwargs):
        """fairseq's sample (a str -> a str, a list -> a list), with checked sentences, beam and options."""
        texts = sentence_list(sentences)
        tokens = [self.fit(self.encode(text), f"sentence {i}") for i, text in enumerate(texts)]
        out = [self.decode(hypos[0]["tokens"]) for hypos in self.generate(tokens, beam, verbose, **kwargs)]
        return out[0] if isinstance(sentences, str) else out

    def fit(self, tokens, where):
        """An encoded sentence (ending in EOS) cut to the model's source positions, with a warning naming `where`
        when it is cut."""
        if len(tokens) <= self.source_positions:
            return tokens
        logger.warning(values.truncated(where, self.source_positions))
        return torch.cat([tokens[: self.source_positions - 1], tokens.new_tensor([self.src_dict.eos()])])

    def score(self, sentences, **kwargs):
        raise NotImplementedError("score: fairseq's hub scores language-model sentences, not translations; score a "
                                  "source with its reference by fairseq-generate --score-reference")

    def generate(self, tokenized_sentences, beam=None, verbose=False, **kwargs):
        beam = self.cfg.generation.beam if beam is None else beam
        kwargs = checked({"beam": beam, **kwargs}, known={*self.cfg.generation.keys(), *GENERATE_ARGUMENTS})
        if not len(tokenized_sentences):
            return []
        with autocast(self.precision, self.device), warnings.catch_warnings():
            # fairseq's batches ask for pinned memory, which torch cannot give without an accelerator: no news
            warnings.filterwarnings("ignore", message=".*'pin_memory' argument is set as true but no accelerator")
            return super().generate(tokenized_sentences, verbose=verbose, **kwargs)


def check_checkpoint(path):
    """ValueError unless path is a complete fairseq checkpoint (a model state and its config), read memory-mapped."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # empty, truncated, not a torch file, or holding what weights_only refuses
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or not (state.get("cfg")
                                                                                        or state.get("args")):
        raise ValueError(f"{path}: not a fairseq checkpoint (no model state and config)")


def check_dictionaries(checkpoint, data):
    """ValueError when the checkpoint's dictionaries are not DATA's (datadir.layout's words); read memory-mapped."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not readable this way: leave the error to fairseq
        return
    layout.check_dictionaries(state.get("model") or {}, data, checkpoint)


def from_pretrained(model_dir, checkpoint_file="average.pt", data=None, beam=4, lenpen=1.0, precision="fp32",
                    threads=None, **kwargs):
    """A fairseq GeneratorHubInterface (`.translate(text)`, `.sample`, `.models`) for a checkpoint trained on a
    data dir of data-bin-prep/prepare.py: sentencepiece from DATA/spm.model, tokenizer `moses_lc` with the
    settings of DATA/manifest.json (which must be there, and must have recorded the spm.model and dictionaries
    that DATA holds). model_dir may also be the checkpoint file itself. precision: "fp32" or "bf16"
    (generation under torch.autocast; the weights stay fp32). beam, lenpen and the generation and batching options
    in kwargs (max_len_b, max_tokens, batch_size, ...) are checked (ValueError); max_tokens (default: the
    checkpoint's) is raised to the model's source positions when lower. A checkpoint trained on another data dir
    is a ValueError naming both dictionary sizes. threads: torch's CPU threads (torch.set_num_threads, for the
    process), by default the cores this process may run on."""
    from fairseq import hub_utils

    kwargs = checked({"beam": beam, "lenpen": lenpen, **kwargs})
    torch.set_num_threads(values.check("threads", values.positive_int, threads) if threads is not None
                          else len(os.sched_getaffinity(0)))

    model_dir = Path(model_dir)
    if model_dir.is_file():
        model_dir, checkpoint_file = model_dir.parent, model_dir.name
    if not (model_dir / checkpoint_file).is_file():
        raise FileNotFoundError(f"checkpoint not found: {model_dir / checkpoint_file}")
    data = Path(data) if data is not None else model_dir
    if not layout.spm_model(data).is_file():
        raise FileNotFoundError(f"no {layout.SPM_MODEL} in the data dir {data}")
    check_checkpoint(model_dir / checkpoint_file)
    layout.check_tokenization_files(data)
    try:
        loaded = hub_utils.from_pretrained(
            str(model_dir.resolve()), checkpoint_file=checkpoint_file, data_name_or_path=str(data.resolve()),
            bpe="sentencepiece", sentencepiece_model=str(layout.spm_model(data).resolve()), tokenizer="moses_lc",
            moses_lc_manifest=str(layout.manifest_file(data).resolve()), source_lang="de", target_lang="en",
            user_dir=str(Path(__file__).resolve().parent), **kwargs)
    except RuntimeError:  # e.g. a tensor size mismatch: say so when it is another data dir's checkpoint
        check_dictionaries(model_dir / checkpoint_file, data)
        raise
    return AutocastHubInterface(loaded["args"], loaded["task"], loaded["models"], precision).eval()
