"""Export a cgc_lightconv model for inference with torch.export: the encoder, the full (teacher-forced) decoder pass and
one step of incremental decoding, as ExportedPrograms with a dynamic batch size and dynamic lengths.

    from cgc_fairseq.export import export_model
    programs = export_model(model)                        # {"encoder", "decoder", "decoder_step"}; model in eval mode
    torch.export.save(programs["encoder"], "encoder.pt2") # (scripts/export.py does this from a checkpoint)

    encoder = torch.export.load("encoder.pt2").module()   # plain torch: neither fairseq nor cgc_fairseq needed
    encoder_out, padding_mask = encoder(src_tokens)       # B x S (padded as fairseq pads) -> S x B x C, B x S
    logits = decoder(prev_output_tokens, encoder_out, padding_mask)   # B x T -> B x T x V (before log-softmax)
    histories = [torch.zeros(0, B, Cc) for _ in range(decoder_layers)]  # incremental decoding: no step yet
    logits, histories = decoder_step(tokens[:, -1:], encoder_out, padding_mask, histories)   # B x V, t+1 rows each

The wrappers below run the model's own layers; what they do differently from fairseq's forward (same numbers:
tests/test_export.py compares them with the eager model):
  - the padding mask is always computed and passed on (the eager encoder drops an all-False mask; masking nothing,
    and pooling a whole sentence with the mask, give the same numbers);
  - positions are read from the module's table (fairseq's sinusoidal forward goes through torch.onnx's
    shape_as_tensor, which torch.export cannot trace);
  - src_lengths is not an input: like the eager model, the encoder finds the padding from the pad tokens;
  - the incremental state is explicit tensors (ExportableDecoderStep), not a dict keyed by module ids.

fairseq's own LightConv / DynamicConv convs (archs lightconv_*, dynamicconv_*) branch in Python on the length
(`if K > T and P == K - 1` in _forward_expanded; fairseq issue #3267), which export would freeze at the example's
length: they are refused. Our convs (cgc_lightconv archs, gated or --no-cgc) have no such branch.
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from fairseq import utils
from fairseq.modules import SinusoidalPositionalEmbedding

from .gated_conv import ContextGatedConv, conv_inputs

# example sizes (steps: the earlier steps of a decoder step), >= 2 since export specialises sizes 0 and 1
EXAMPLE = {"batch": 2, "src_len": 13, "tgt_len": 11, "steps": 5}


def positions(embed_positions, tokens):
    """fairseq's positional embedding of a full pass, B x T -> B x T x C, in a form torch.export can trace."""
    if isinstance(embed_positions, SinusoidalPositionalEmbedding):
        index = utils.make_positions(tokens, embed_positions.padding_idx)
        return embed_positions.weights.index_select(0, index.view(-1)).view(tokens.size(0), tokens.size(1), -1)
    return embed_positions(tokens)  # learned positions: exportable as they are


def position_table(embed_positions):
    """The table of positional embeddings (row pad + i: position i), sinusoidal or learned."""
    if isinstance(embed_positions, SinusoidalPositionalEmbedding):
        return embed_positions.weights
    return embed_positions.weight


def max_length(embed_positions, max_positions):
    """The longest input: the model's max positions, and no more than the sinusoidal table holds (the eager module
    grows its table on demand; an exported program cannot)."""
    if isinstance(embed_positions, SinusoidalPositionalEmbedding):
        return min(max_positions, embed_positions.weights.size(0) - embed_positions.padding_idx - 1)
    return max_positions


def decoder_input(decoder, tokens, pos):
    """LightConvDecoder.forward's head: the embedded tokens B x T (projected to the layers' width), plus the positional
    embeddings pos (B x T x C or broadcastable; None without), after dropout -> T x B x C."""
    x = decoder.embed_scale * decoder.embed_tokens(tokens)
    if decoder.project_in_dim is not None:
        x = decoder.project_in_dim(x)
    if pos is not None:
        x = x + pos
    return decoder.dropout_module(x).transpose(0, 1)


def decoder_output(decoder, x):
    """LightConvDecoder.forward's tail: the last layer's T x B x C -> logits B x T x V (before log-softmax)."""
    if decoder.layer_norm is not None:
        x = decoder.layer_norm(x)
    x = x.transpose(0, 1)
    if decoder.project_out_dim is not None:
        x = decoder.project_out_dim(x)
    return decoder.output_projection(x)


class ExportableEncoder(nn.Module):
    """src_tokens (B x S) -> (encoder_out S x B x C, encoder_padding_mask B x S): CGCLightConvEncoder.forward."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, src_tokens):
        e = self.encoder
        x = e.embed_scale * e.embed_tokens(src_tokens)
        if e.embed_positions is not None:
            x = x + positions(e.embed_positions, src_tokens)
        x = e.dropout_module(x).transpose(0, 1)  # T x B x C
        padding_mask = src_tokens.eq(e.padding_idx)
        with conv_inputs(e.layers, padding_mask=padding_mask):
            for layer in e.layers:
                x = layer(x, padding_mask)
        if e.layer_norm is not None:
            x = e.layer_norm(x)
        return x, padding_mask


class ExportableDecoder(nn.Module):
    """(prev_output_tokens B x T, encoder_out S x B x C, encoder_padding_mask B x S) -> logits B x T x V:
    LightConvDecoder.forward without incremental state."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, prev_output_tokens, encoder_out, encoder_padding_mask):
        d = self.decoder
        pos = positions(d.embed_positions, prev_output_tokens) if d.embed_positions is not None else None
        x = decoder_input(d, prev_output_tokens, pos)
        with conv_inputs(d.layers, source=(encoder_out, encoder_padding_mask)):
            for layer in d.layers:
                x, _ = layer(x, encoder_out, encoder_padding_mask, None)
        return decoder_output(d, x)


class ExportableDecoderStep(nn.Module):
    """One step of incremental decoding, with the state as explicit tensors:
    (prev_output_tokens B x 1: the last token, encoder_out S x B x C, encoder_padding_mask B x S, histories: one
    t x B x Cc tensor per decoder layer, the conv inputs of the t earlier steps; t = 0 at the first step)
    -> (logits B x V, the histories with this step's row appended: (t + 1) x B x Cc each).

    The history is the whole state of a context-gated conv: the gate pools it, and the conv's buffer is its last K - 1
    rows (zero rows before the first token: the taps that see them add 0). Beam search reorders the histories (and
    encoder_out, encoder_padding_mask) along dim 1 (dim 0 for the mask). Encoder attention's keys and values are
    recomputed from encoder_out at every step (eager decoding keeps them in the state), and so is the gate of a
    "source" decoder context (eager decoding computes it once per sentence)."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, prev_output_tokens, encoder_out, encoder_padding_mask, histories: List[torch.Tensor]):
        d = self.decoder
        t = histories[0].size(0)  # earlier steps
        # position t + 1 (fairseq: pad + the prefix length)
        pos = (position_table(d.embed_positions)[d.embed_positions.padding_idx + t + 1].view(1, 1, -1)
               if d.embed_positions is not None else None)
        x = decoder_input(d, prev_output_tokens, pos)  # 1 x B x C
        state: Dict[str, Dict[str, Optional[torch.Tensor]]] = {}
        new_histories: List[torch.Tensor] = []
        for layer, history in zip(d.layers, histories):
            conv = layer.conv
            utils.set_incremental_state(conv, state, "context_history", history)
            K = conv.kernel_size
            if K > 1:  # the last K - 1 inputs, 1 x B x Cc x (K - 1), zeros before the first step
                padded = torch.cat([history.new_zeros(K - 1, history.size(1), history.size(2)), history])
                conv._set_input_buffer(state, padded.narrow(0, t, K - 1).permute(1, 2, 0).unsqueeze(0))
            inputs: List[torch.Tensor] = []  # this step's conv input (an ungated conv keeps no history of its own)
            hook = conv.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
            try:
                with conv_inputs([layer], source=(encoder_out, encoder_padding_mask)):
                    x, _ = layer(x, encoder_out, encoder_padding_mask, state)
            finally:
                hook.remove()
            new_histories.append(torch.cat([history, inputs[0]], dim=0))
        return decoder_output(d, x)[:, 0], new_histories


def check_exportable(model):
    """Raise ValueError unless every conv of the model is ours (no length branch) and there is no adaptive softmax."""
    layers = [*getattr(model.encoder, "layers", []), *getattr(model.decoder, "layers", [])]
    if not layers or not all(isinstance(getattr(layer, "conv", None), ContextGatedConv) for layer in layers):
        kinds = sorted({type(getattr(layer, "conv", layer)).__name__ for layer in layers}) or [type(model).__name__]
        raise ValueError(f"only cgc_lightconv models can be exported (their convs have no Python branch on the "
                         f"length); this model has {', '.join(kinds)} (fairseq issue #3267)")
    if getattr(model.decoder, "adaptive_softmax", None) is not None:
        raise ValueError("a decoder with an adaptive softmax is not supported")


def example_inputs(model, batch=EXAMPLE["batch"], src_len=EXAMPLE["src_len"], tgt_len=EXAMPLE["tgt_len"], seed=0):
    """Random sentences (the last one padded) of the given sizes: src_tokens B x S (left-padded, ending in EOS) and
    prev_output_tokens B x T (starting with EOS, right-padded), as fairseq's collater makes them."""
    src_dict, tgt_dict = model.encoder.dictionary, model.decoder.dictionary
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(src_dict.nspecial, len(src_dict), (batch, src_len), generator=g)
    src[:, -1] = src_dict.eos()
    src[-1, : src_len // 2] = src_dict.pad()
    prev = torch.randint(tgt_dict.nspecial, len(tgt_dict), (batch, tgt_len), generator=g)
    prev[:, 0] = tgt_dict.eos()
    prev[-1, tgt_len // 2 + 1:] = tgt_dict.pad()
    return src, prev


def dims(model):
    """The dynamic dims: batch (>= 1), src_len and tgt_len (1 .. the model's max positions), steps (the earlier steps
    of incremental decoding, 0 .. tgt_len max - 1)."""
    from torch.export import Dim

    tgt_max = max_length(model.decoder.embed_positions, model.decoder.max_positions())
    return {"batch": Dim("batch", min=1),
            "src_len": Dim("src_len", min=1, max=max_length(model.encoder.embed_positions,
                                                             model.encoder.max_positions())),
            "tgt_len": Dim("tgt_len", min=1, max=tgt_max),
            "steps": Dim("steps", min=0, max=tgt_max - 1)}


def empty_histories(model, batch):
    """The decoder step's state before the first step: one 0 x B x Cc tensor per decoder layer."""
    return [torch.zeros(0, batch, layer.conv.input_size) for layer in model.decoder.layers]


def export_model(model, src_tokens=None, prev_output_tokens=None, steps=EXAMPLE["steps"]):
    """{"encoder", "decoder", "decoder_step"}: ExportedPrograms of a cgc_lightconv model (put in eval mode). The
    example inputs only set the dtypes; sizes are dynamic (defaults: example_inputs(model), `steps` earlier steps)."""
    from torch.export import export

    check_exportable(model)
    model.eval()
    if src_tokens is None or prev_output_tokens is None:
        src_tokens, prev_output_tokens = example_inputs(model)
    d = dims(model)
    B, S = {0: d["batch"]}, {0: d["batch"], 1: d["src_len"]}  # dynamic dims of B x ... and B x S tensors
    encoder_out_dims = {0: d["src_len"], 1: d["batch"]}
    encoder = ExportableEncoder(model.encoder).eval()
    decoder, step = ExportableDecoder(model.decoder).eval(), ExportableDecoderStep(model.decoder).eval()
    histories = [h.new_zeros(steps, *h.shape[1:]) for h in empty_histories(model, src_tokens.size(0))]
    with torch.no_grad():
        programs = {"encoder": export(encoder, (src_tokens,), dynamic_shapes=(S,))}
        encoder_out, padding_mask = encoder(src_tokens)
        programs["decoder"] = export(decoder, (prev_output_tokens, encoder_out, padding_mask),
                                     dynamic_shapes=({0: d["batch"], 1: d["tgt_len"]}, encoder_out_dims, S))
        programs["decoder_step"] = export(
            step, (prev_output_tokens[:, :1], encoder_out, padding_mask, histories),
            dynamic_shapes=(B, encoder_out_dims, S, [{0: d["steps"], 1: d["batch"]}] * len(histories)))
    return programs


def compare(model, programs, src_tokens, prev_output_tokens, reorder=None):
    """Max |exported - eager| on one batch: encoder_out, the logits of the full decoder pass, and those of incremental
    decoding step by step through prev_output_tokens (against fairseq's incremental decoding); and whether the
    padding masks agree. programs: {"encoder", "decoder", "decoder_step"} callables (an ExportedProgram's .module());
    reorder: (step, new_order), a beam search's reordering of the hypotheses before that step."""
    model.eval()
    encoder, decoder, step = programs["encoder"], programs["decoder"], programs["decoder_step"]
    with torch.no_grad():
        lengths = src_tokens.ne(model.encoder.padding_idx).sum(1)
        eager_enc = model.encoder(src_tokens, lengths)
        eager_logits = model.decoder(prev_output_tokens, encoder_out=eager_enc)[0]
        encoder_out, padding_mask = encoder(src_tokens)
        logits = decoder(prev_output_tokens, encoder_out, padding_mask)
        diff = {"encoder_out": (encoder_out - eager_enc["encoder_out"][0]).abs().max().item(),
                "logits": (logits - eager_logits).abs().max().item(),
                "padding_mask_equal": torch.equal(padding_mask, src_tokens.eq(model.encoder.padding_idx))}
        state, histories, prev, steps = {}, empty_histories(model, src_tokens.size(0)), prev_output_tokens, []
        for t in range(prev_output_tokens.size(1)):
            if reorder is not None and t == reorder[0]:
                order = reorder[1]
                eager_enc = model.encoder.reorder_encoder_out(eager_enc, order)
                model.decoder.reorder_incremental_state_scripting(state, order)
                encoder_out, padding_mask = encoder_out.index_select(1, order), padding_mask.index_select(0, order)
                histories = [h.index_select(1, order) for h in histories]
                prev, steps = prev[order], [(a[order], b[order]) for a, b in steps]
            eager = model.decoder(prev[:, : t + 1], encoder_out=eager_enc, incremental_state=state)[0][:, -1]
            exported, histories = step(prev[:, t: t + 1], encoder_out, padding_mask, histories)
            steps.append((exported, eager))
    diff["step_logits"] = max((a - b).abs().max().item() for a, b in steps)
    return diff
