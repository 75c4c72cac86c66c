"""The `translation_autocast` task: fairseq's translation task whose forward passes can run under bf16 autocast.

    fairseq-train DATA --user-dir cgc_fairseq --task translation_autocast --precision bf16 --cpu ...
    fairseq-generate DATA --user-dir cgc_fairseq --task translation_autocast --precision bf16 ...

fairseq's own --bf16 does not serve on CPU (with --cpu it takes the XLA device path) and casts the weights;
here the weights and the optimizer state stay fp32 and only the forward passes (training loss, validation,
generation) run under torch.autocast on the model's device: matrix products in bf16 (AMX on these CPUs), while
what is numerically delicate stays fp32 (the vocabulary logits, fairseq's softmax over them and the loss, the
kernel softmax, the context gate: cgc_fairseq/context_gate.py). It works for any model, fairseq's own lightconv
archs included; backward runs outside autocast, in the dtypes the forward chose.
"""
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

PRECISIONS = ["fp32", "bf16"]


def native_bf16(device):
    """Whether `device` multiplies bf16 matrices natively: a CPU with AVX512-BF16 or AMX (oneDNN's test), a GPU
    that supports bf16. Without, a bf16 product is emulated: measured ~100x slower than fp32 on an AVX2-only CPU."""
    device = torch.device(device)
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return True


def check_precision(precision, device):
    """ValueError for an unknown precision, or for bf16 on a device without native bf16 (where fp32 is faster)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and not native_bf16(device):
        device = torch.device(device)
        what = (f"CPU capability {torch.backends.cpu.get_cpu_capability()}" if device.type == "cpu"
                else torch.cuda.get_device_name(device) if device.type == "cuda" else device.type)
        raise ValueError(f"precision bf16: this {device.type.upper()} ({what}) has no native bf16 matrix products, "
                         f"so bf16 runs many times slower than fp32 here; use fp32")


def autocast(precision, device):
    """The context a forward pass runs in: torch.autocast to bf16 on `device`, or nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    if precision != "bf16":
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


class AutocastCall:
    """A callable (a criterion) whose calls run under autocast."""

    def __init__(self, fn, precision, device):
        self.fn, self.precision, self.device = fn, precision, device

    def __call__(self, *args, **kwargs):
        with autocast(self.precision, self.device):
            return self.fn(*args, **kwargs)


def fp32_logits(model):
    """The decoder's output projection (the vocabulary logits) runs in fp32 under autocast: bf16's 8-bit mantissa
    rounds logits of size ~10 by ~0.05, too coarse for the softmax, the loss and the beam's ranking (measured:
    decoding one fp32 checkpoint under bf16 with bf16 logits cost 0.85 test BLEU). The module and its state_dict
    stay as they are."""
    projection = getattr(getattr(model, "decoder", None), "output_projection", None)
    if projection is not None and "forward" not in vars(projection):  # once: the task and the hub may both ask
        linear = projection.forward

        def forward(x):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return linear(x.float())

        projection.forward = forward
    return model


def device_of(model):
    return next(model.parameters()).device


@dataclass
class AutocastTranslationConfig(TranslationConfig):
    precision: ChoiceEnum(PRECISIONS) = field(
        default="fp32",
        metadata={"help": "compute precision of the forward passes: bf16 runs them under torch.autocast "
                          "(fp32 weights and optimizer state; softmax, loss and context gate in fp32)"},
    )


@register_task("translation_autocast", dataclass=AutocastTranslationConfig)
class AutocastTranslationTask(TranslationTask):
    """fairseq's translation task with --precision for training, validation and generation."""

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        check_precision(self.cfg.precision, device_of(model))
        return model if self.cfg.precision == "fp32" else fp32_logits(model)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        criterion = AutocastCall(criterion, self.cfg.precision, device_of(model))  # forward only, not backward
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        with autocast(self.cfg.precision, device_of(model)):
            return super().valid_step(sample, model, criterion)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        with autocast(self.cfg.precision, device_of(models[0])):
            return super().inference_step(generator, models, sample, prefix_tokens, constraints)
