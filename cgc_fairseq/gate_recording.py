"""The gates G of a model's context-gated convs, recorded during teacher-forced passes (for plots and statistics)."""
import numpy as np
import torch

from .context_gate import ContextGate


def gated_convs(layers):
    """Each layer's conv when it is context-gated, else None."""
    return [layer.conv if getattr(layer.conv, "context_gate", None) is not None else None for layer in layers]


def record_gates(model, pairs):
    """Run the model (in eval mode, no grad) on each (src_tokens 1 x S, prev_output_tokens 1 x T) pair with the convs'
    gate recording switched on. Returns (encoder, decoder, encodings): per pair, per layer, the gate as numpy
    (encoder: H x K, one per sentence; decoder: T x H x K, one per target position) or None for an ungated layer;
    encodings {"encoder": [...], "decoder": [...]}: per layer, every pair's context encoding as its norm
    standardises it (ContextGate.standardised), flat, or None (ungated, or a context without an encoding). None when
    the model has no gate at all."""
    encoder_convs, decoder_convs = gated_convs(model.encoder.layers), gated_convs(model.decoder.layers)
    convs = [c for c in encoder_convs + decoder_convs if c is not None]
    if not convs:
        return None
    model.eval()
    encoders = [c.context_gate for c in convs if isinstance(c.context_gate, ContextGate)]
    for conv in convs:
        conv.record_gates = True
    for gate in encoders:
        gate.record_encoding = True
    encoder, decoder = [], []
    encodings = {"encoder": [[] for _ in encoder_convs], "decoder": [[] for _ in decoder_convs]}
    try:
        with torch.no_grad():
            for src_tokens, prev_output_tokens in pairs:
                model(src_tokens, torch.tensor([src_tokens.size(1)]), prev_output_tokens)
                encoder.append([c.last_gate[0, 0].numpy() if c is not None else None for c in encoder_convs])
                decoder.append([c.last_gate[:, 0].numpy() if c is not None else None for c in decoder_convs])
                for side, side_convs in (("encoder", encoder_convs), ("decoder", decoder_convs)):
                    for kept, c in zip(encodings[side], side_convs):
                        if c is not None and getattr(c.context_gate, "last_encoding", None) is not None:
                            kept.append(c.context_gate.last_encoding.numpy())
    finally:
        for conv in convs:
            conv.record_gates, conv.last_gate = False, None
        for gate in encoders:
            gate.record_encoding, gate.last_encoding = False, None
    encodings = {side: [np.concatenate(kept) if kept else None for kept in layers]
                 for side, layers in encodings.items()}
    return encoder, decoder, encodings
