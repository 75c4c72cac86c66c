"""The gates G of a model's context-gated convs, recorded during teacher-forced passes (for plots and statistics)."""
import torch


def gated_convs(layers):
    """Each layer's conv when it is context-gated, else None."""
    return [layer.conv if getattr(layer.conv, "context_gate", None) is not None else None for layer in layers]


def record_gates(model, pairs):
    """Run the model (in eval mode, no grad) on each (src_tokens 1 x S, prev_output_tokens 1 x T) pair with the convs'
    gate recording switched on. Returns (encoder, decoder): per pair, per layer, the gate as numpy (encoder: H x K,
    one per sentence; decoder: T x H x K, one per target position) or None for an ungated layer; None when the model
    has no gate at all."""
    encoder_convs, decoder_convs = gated_convs(model.encoder.layers), gated_convs(model.decoder.layers)
    convs = [c for c in encoder_convs + decoder_convs if c is not None]
    if not convs:
        return None
    model.eval()
    for conv in convs:
        conv.record_gates = True
    encoder, decoder = [], []
    try:
        with torch.no_grad():
            for src_tokens, prev_output_tokens in pairs:
                model(src_tokens, torch.tensor([src_tokens.size(1)]), prev_output_tokens)
                encoder.append([c.last_gate[0, 0].numpy() if c is not None else None for c in encoder_convs])
                decoder.append([c.last_gate[:, 0].numpy() if c is not None else None for c in decoder_convs])
    finally:
        for conv in convs:
            conv.record_gates, conv.last_gate = False, None
    return encoder, decoder
