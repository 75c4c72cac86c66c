"""The benchmark's models and their fairseq harness: the config of each model at each size (the recipe of a
scripts/train.py preset), the fixed batches, and one model with its criterion, optimizer, lr scheduler and beam search,
timed with the device synchronized."""
from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

from .cli import BEAM, USER_DIR, ScriptError
from .train import PRESETS

SIZES = {"small": "small", "iwslt": "paper"}  # size -> the scripts/train.py preset whose recipe it trains with
SMALL_TRANSFORMER = ["--encoder-embed-dim", "256", "--decoder-embed-dim", "256", "--encoder-ffn-embed-dim", "1024",
                     "--decoder-ffn-embed-dim", "1024", "--encoder-layers", "3", "--decoder-layers", "3",
                     "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]
CONV_ONLY = ("--weight-dropout", "--encoder-glu", "--decoder-glu")  # recipe flags (with a value) a transformer lacks
TINY = ["--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--decoder-ffn-embed-dim", "64", "--encoder-layers", "1", "--decoder-layers", "1",
        "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
TINY_CONV = ["--encoder-kernel-size-list", "[3]", "--decoder-kernel-size-list", "[3]"]
# the decoder gate's variants (cgc_KIND_VARIANT; plain cgc_KIND is prefix): their model flags, each explicit
VARIANTS = {"prefix": ["--cgc-decoder-context", "prefix"], "source": ["--cgc-decoder-context", "source"],
            "static": ["--cgc-context", "static"]}


def variant_of(model):
    """'cgc_lightconv_source' -> ('cgc_lightconv', 'source'); 'cgc_lightconv' -> ('cgc_lightconv', 'prefix');
    variant None for an ungated model."""
    base, _, last = model.rpartition("_")
    if model.startswith("cgc_") and last in VARIANTS:
        return base, last
    return model, "prefix" if model.startswith("cgc_") else None


def entry(model, precision):
    """The key of one benchmark entry: MODEL for fp32, MODEL@PRECISION otherwise."""
    return model if precision == "fp32" else f"{model}@{precision}"


def split_entry(key):
    model, _, precision = key.partition("@")
    return model, precision or "fp32"


def arch_and_flags(size, model, tiny):
    """fairseq --arch and flags of one benchmark model: the size's recipe, shared embeddings, the model's dims."""
    recipe = PRESETS[SIZES[size]]["flags"] + ["--share-all-embeddings"]
    model, variant = variant_of(model)
    if model == "transformer":
        recipe = [a for i, a in enumerate(recipe) if a not in CONV_ONLY and (i == 0 or recipe[i - 1] not in CONV_ONLY)]
        arch, flags = "transformer_iwslt_de_en", SMALL_TRANSFORMER if size == "small" else []
    elif model.startswith("nocgc_"):
        arch, flags = f"cgc_{model[len('nocgc_'):]}_{'small' if size == 'small' else 'iwslt_de_en'}", ["--no-cgc"]
    elif size == "small":
        arch, flags = f"{model}_small", []
    elif model in ("lightconv", "dynamicconv"):
        conv = "lightweight" if model == "lightconv" else "dynamic"  # fairseq's arch defaults to dynamic
        arch, flags = "lightconv_iwslt_de_en", ["--encoder-conv-type", conv, "--decoder-conv-type", conv]
    else:
        arch, flags = f"{model}_iwslt_de_en", []
    if tiny:
        flags = flags + TINY + ([] if model == "transformer" else TINY_CONV)
    return arch, recipe + flags + VARIANTS.get(variant, [])


def model_config(args, size, model):
    """fairseq's config (parsed as fairseq-train would) of one benchmark model."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    arch, flags = arch_and_flags(size, model, args.tiny)
    argv = [str(Path(args.data).resolve()), "--user-dir", USER_DIR, "--task", "translation", "--source-lang", "de",
            "--target-lang", "en", "--arch", arch, *flags, "--max-tokens", str(args.max_tokens),
            "--seed", str(args.seed)]
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv)), argv


def sync(device):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def timed(fn, device):
    """(seconds, fn()) with the device synchronized at both ends."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


class Data:
    """The task, the fixed training batches and the fixed decoding batches, on the device."""

    def __init__(self, args, cfg):
        import numpy as np
        from fairseq import tasks, utils
        from fairseq.data import data_utils

        self.task = tasks.setup_task(cfg.task)
        self.task.load_dataset("train")
        itr = self.task.get_batch_iterator(self.task.dataset("train"), max_tokens=args.max_tokens,
                                           max_positions=self.task.max_positions(), ignore_invalid_inputs=True,
                                           required_batch_size_multiple=1, seed=args.seed)
        self.train = list(islice(itr.next_epoch_itr(shuffle=True), args.steps))
        if len(self.train) < args.steps:
            raise ScriptError(f"--steps {args.steps}: split train has only {len(self.train)} batches of "
                              f"--max-tokens {args.max_tokens}")
        self.task.load_dataset(args.decode_split)
        ds = self.task.dataset(args.decode_split)
        if args.decode_sentences > len(ds):
            raise ScriptError(f"--decode-sentences {args.decode_sentences}: split {args.decode_split} has only "
                              f"{len(ds)} sentences")
        # the first N sentences, sorted by length and batched like fairseq-generate does
        order = np.argsort(ds.src_sizes[:args.decode_sentences], kind="stable")
        self.decode = [ds.collater([ds[int(i)] for i in batch])
                       for batch in data_utils.batch_by_size(order, ds.num_tokens, max_tokens=args.max_tokens)]
        # the long-output batch: the shortest --long-decode-sentences of them (the time is the decoder's)
        self.long = ds.collater([ds[int(i)] for i in order[:args.long_decode_sentences]])
        if args.device == "cuda":
            self.train = [utils.move_to_cuda(b) for b in self.train]
            self.decode = [utils.move_to_cuda(b) for b in self.decode]
            self.long = utils.move_to_cuda(self.long)
        self.train_tokens = sum(b["ntokens"] for b in self.train)
        self.decode_sentences = args.decode_sentences

    def describe(self):
        return {"train_batches": [{"sentences": b["nsentences"], "target_tokens": b["ntokens"],
                                   "source_shape": list(b["net_input"]["src_tokens"].shape),
                                   "target_shape": list(b["target"].shape)} for b in self.train],
                "train_target_tokens": self.train_tokens,
                "decode_batches": [list(b["net_input"]["src_tokens"].shape) for b in self.decode],
                "decode_sentences": self.decode_sentences}


def forced_length_generator(model, task, length):
    """fairseq's beam search whose hypotheses all have exactly `length` tokens + EOS (min_len = max_len)."""
    from fairseq.sequence_generator import SequenceGenerator

    return SequenceGenerator([model], task.target_dictionary, beam_size=BEAM, max_len_a=0, max_len_b=length,
                             min_len=length)


class Bench:
    """One model with its criterion, optimizer, lr scheduler and beam search, on the device, in one precision (the
    forward passes under cgc_fairseq.precision.autocast, as the translation_autocast task runs them)."""

    def __init__(self, cfg, task, device, decode_len, precision="fp32"):
        import torch
        from fairseq import optim
        from fairseq.optim.lr_scheduler import build_lr_scheduler

        torch.manual_seed(cfg.common.seed)
        self.task, self.device, self.precision = task, device, precision
        self.model = task.build_model(cfg.model).to(device)
        self.criterion = task.build_criterion(cfg.criterion).to(device)
        self.optimizer = optim.build_optimizer(cfg.optimizer, list(self.model.parameters()))
        self.scheduler = build_lr_scheduler(cfg.lr_scheduler, self.optimizer)
        self.updates = 0
        self.generator = forced_length_generator(self.model, task, decode_len)

    def parameters(self):
        return sum(p.numel() for p in self.model.parameters())

    def conv(self):
        """The class of the first encoder layer's conv (None for a transformer)."""
        layer = self.model.encoder.layers[0]
        return type(layer.conv).__name__ if hasattr(layer, "conv") else None

    def train_step(self, sample):
        from cgc_fairseq.precision import AutocastCall

        self.optimizer.zero_grad()
        criterion = AutocastCall(self.criterion, self.precision, self.device)  # the forward pass only
        self.task.train_step(sample, self.model, criterion, self.optimizer, self.updates)  # forward + backward
        self.optimizer.step()
        self.updates += 1
        self.scheduler.step_update(self.updates)

    def train(self, batches):
        for sample in batches:
            self.train_step(sample)

    def decode(self, batches, generator=None):
        """Beam search over the batches -> the number of tokens of the best hypotheses."""
        from cgc_fairseq.precision import autocast

        self.model.eval()
        with autocast(self.precision, self.device):
            return sum(hypos[0]["tokens"].numel() for sample in batches
                       for hypos in self.task.inference_step(generator or self.generator, [self.model], sample))

    def step_seconds(self, batches, length):
        """Beam search with hypotheses forced to `length` tokens: the seconds of each incremental decoder step
        (position 1 .. length + 1) per hypothesis (sentences x beam), summed over the batches."""
        decoder, per_step, calls = self.model.decoder, [0.0] * (length + 1), []
        forward = decoder.forward

        def timed_forward(*args, **kwargs):
            seconds, out = timed(lambda: forward(*args, **kwargs), self.device)
            calls.append(seconds / args[0].size(0))  # args[0]: the (sentences x beam) x t prefix tokens
            return out

        decoder.forward = timed_forward  # the instance attribute shadows the method; beam search calls it per step
        try:
            for sample in batches:
                calls.clear()
                self.decode([sample], forced_length_generator(self.model, self.task, length))
                for i, seconds in enumerate(calls[:length + 1]):
                    per_step[i] += seconds
        finally:
            del decoder.forward
        return per_step
