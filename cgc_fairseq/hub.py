"""Load a trained model from Python and translate raw text, through fairseq's from_pretrained machinery.

    from cgc_fairseq.hub import from_pretrained
    de2en = from_pretrained("runs/demo-multi30k-cgc_lightconv_small", "average.pt", "data-bin/multi30k.de-en")
    de2en.translate("Ein Mann fährt Fahrrad.")   # -> 'a man rides a bike.' (lowercased, detokenized)

The models read lowercased, Moses-tokenized sentencepiece pieces (data-bin-prep/prepare.py). fairseq's own `moses`
tokenizer does not lowercase, so this module registers the tokenizer `moses_lc`: the data preparation's own
tokenizer (datadir.moses: lowercase, optionally Moses punctuation normalisation, Moses tokenization with escaping),
its settings read from the data dir's manifest.json; decode is the Moses detokenizer (case is not restored).
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

from fairseq.data.encoders import register_tokenizer
from fairseq.dataclass import FairseqDataclass
from fairseq.hub_utils import GeneratorHubInterface

from datadir import layout

from .precision import autocast


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
        return self.tokenize(x)

    def decode(self, x: str) -> str:
        return self.detokenize(x)


class AutocastHubInterface(GeneratorHubInterface):
    """fairseq's GeneratorHubInterface whose generation runs in a compute precision (cgc_fairseq/precision.py)."""

    def __init__(self, cfg, task, models, precision="fp32"):
        super().__init__(cfg, task, models)
        autocast(precision, "cpu")  # an unknown precision fails here, not at the first translation
        self.precision = precision

    def generate(self, *args, **kwargs):
        with autocast(self.precision, self.device):
            return super().generate(*args, **kwargs)


def from_pretrained(model_dir, checkpoint_file="average.pt", data=None, beam=4, lenpen=1.0, precision="fp32",
                    **kwargs):
    """A fairseq GeneratorHubInterface (`.translate(text)`, `.sample`, `.models`) for a checkpoint trained on a
    data dir of data-bin-prep/prepare.py: sentencepiece from DATA/spm.model, tokenizer `moses_lc` with the
    settings of DATA/manifest.json. model_dir may also be the checkpoint file itself. precision: "fp32" or "bf16"
    (generation under torch.autocast; the weights stay fp32)."""
    from fairseq import hub_utils

    model_dir = Path(model_dir)
    if model_dir.is_file():
        model_dir, checkpoint_file = model_dir.parent, model_dir.name
    if not (model_dir / checkpoint_file).is_file():
        raise FileNotFoundError(f"checkpoint not found: {model_dir / checkpoint_file}")
    data = Path(data) if data is not None else model_dir
    if not layout.spm_model(data).is_file():
        raise FileNotFoundError(f"no {layout.SPM_MODEL} in the data dir {data}")
    loaded = hub_utils.from_pretrained(
        str(model_dir.resolve()), checkpoint_file=checkpoint_file, data_name_or_path=str(data.resolve()),
        bpe="sentencepiece", sentencepiece_model=str(layout.spm_model(data).resolve()), tokenizer="moses_lc",
        moses_lc_manifest=str(layout.manifest_file(data).resolve()), source_lang="de", target_lang="en",
        user_dir=str(Path(__file__).resolve().parent), beam=beam, lenpen=lenpen, **kwargs)
    return AutocastHubInterface(loaded["args"], loaded["task"], loaded["models"], precision).eval()
