"""The `cgc_lightconv` model: fairseq's LightConv model whose convolutions are context-gated, and its archs."""
import argparse
import math

from fairseq.models import lightconv, register_model, register_model_architecture
from fairseq.models.lightconv import LightConvDecoder, LightConvEncoder, LightConvModel, lightconv_iwslt_de_en
from fairseq.models.transformer import TransformerModelBase

from .context_gate import NORMS
from .gated_conv import GateConfig, GatedDynamicConv1dTBC, GatedLightweightConv1dTBC, conv_inputs

# What an args namespace without an option means (checkpoints saved before it existed): the code of that time,
# GateConfig's defaults, gated on both sides
CGC_BEFORE_OPTIONS = {f"cgc_{name}": getattr(GateConfig, name)
                      for name in ("context", "norm", "gate", "renorm", "init_std", "decoder_context")}
CGC_BEFORE_OPTIONS |= {"cgc_where": "both", "no_cgc": False}
# The --cgc-* options' command-line defaults: the same, but the decoder's context that the race chose
# (docs/results/race_stage1)
CGC_DEFAULTS = CGC_BEFORE_OPTIONS | {"cgc_decoder_context": "source"}
GATED_CONV = {"lightweight": GatedLightweightConv1dTBC, "dynamic": GatedDynamicConv1dTBC}


def init_std(value):
    """--cgc-init-std: a positive, finite standard deviation or "pytorch"."""
    if value == "pytorch":
        return value
    try:
        std = float(value)
    except ValueError:
        std = math.nan
    if not (math.isfinite(std) and std > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number or 'pytorch', got {value!r}")
    return std


def gate_config(args, side):
    """The gate for one side ("encoder"/"decoder"), or None when --no-cgc / --cgc-where leaves it ungated."""
    if args.no_cgc or args.cgc_where not in (side, "both"):
        return None
    config = GateConfig(context=args.cgc_context, norm=args.cgc_norm, gate=args.cgc_gate, renorm=args.cgc_renorm,
                        init_std=args.cgc_init_std, decoder_context=args.cgc_decoder_context,
                        source_channels=args.encoder_embed_dim)
    if config.norm != "latent" and config.context != "pool":
        raise ValueError(f"--cgc-norm {config.norm} applies to --cgc-context pool only, not {config.context}")
    if side == "decoder" and config.norm == "batch" and config.decoder_context == "prefix":
        raise ValueError("--cgc-norm batch needs a whole-sentence context: with --cgc-decoder-context prefix, batch "
                         "statistics over all positions would let later target positions shape the normalisation "
                         "of earlier ones in training (use --cgc-decoder-context source, or --cgc-where encoder)")
    if side == "decoder" and config.decoder_context == "source" and config.context != "static":
        if args.encoder_embed_dim % args.decoder_attention_heads:
            raise ValueError(f"--cgc-decoder-context source: the encoder's {args.encoder_embed_dim} channels do not "
                             f"split into the decoder's {args.decoder_attention_heads} heads")
        if config.gate == "channel" and args.encoder_embed_dim != args.decoder_conv_dim:
            raise ValueError(f"--cgc-decoder-context source with --cgc-gate channel needs --encoder-embed-dim "
                             f"({args.encoder_embed_dim}) == --decoder-conv-dim ({args.decoder_conv_dim})")
    return config


def gate_layers(layers, conv_type, causal, config):
    """Swap each layer's fairseq conv for our conv of the same shape (gated unless config is None)."""
    for layer in layers:
        layer.conv = GATED_CONV[conv_type].like(layer.conv, causal, config)


class CGCLightConvEncoder(LightConvEncoder):
    """LightConv encoder with context-gated convs, which see the padding mask so that pads do not count in the
    context.

    Args:
        args (argparse.Namespace): the model's options (fairseq's LightConv ones and the --cgc-* ones)
        dictionary (~fairseq.data.Dictionary): the source dictionary
        embed_tokens (torch.nn.Embedding): the input embedding
    """

    def __init__(self, args, dictionary, embed_tokens):
        super().__init__(args, dictionary, embed_tokens)
        gate_layers(self.layers, args.encoder_conv_type, causal=False, config=gate_config(args, "encoder"))

    def forward(self, src_tokens, src_lengths=None):
        """
        Args:
            src_tokens (LongTensor): B x S source tokens
            src_lengths (LongTensor, optional): B source lengths

        Returns:
            fairseq's LightConv encoder output: encoder_out S x B x C, encoder_padding_mask B x S (or None)
        """
        padding_mask = src_tokens.eq(self.padding_idx)
        with conv_inputs(self.layers, padding_mask=padding_mask if padding_mask.any() else None):
            return super().forward(src_tokens, src_lengths)


class CGCLightConvDecoder(LightConvDecoder):
    """LightConv decoder with context-gated (causal) convs, which are handed the encoder output for
    --cgc-decoder-context source.

    Args:
        args (argparse.Namespace): the model's options
        dictionary (~fairseq.data.Dictionary): the target dictionary
        embed_tokens (torch.nn.Embedding): the output embedding
    """

    def __init__(self, args, dictionary, embed_tokens):
        super().__init__(args, dictionary, embed_tokens)
        gate_layers(self.layers, args.decoder_conv_type, causal=True, config=gate_config(args, "decoder"))

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, src_lengths=None):
        """
        Args:
            prev_output_tokens (LongTensor): B x T previous tokens (teacher forcing), or the last one in
                incremental decoding
            encoder_out (dict, optional): the encoder's output (the context of the "source" gate)
            incremental_state (dict, optional): the incremental decoding state

        Returns:
            (B x T x V logits, fairseq's extra outputs)
        """
        source = None
        if encoder_out is not None and encoder_out["encoder_out"]:
            padding_mask = encoder_out.get("encoder_padding_mask") or [None]
            source = (encoder_out["encoder_out"][0], padding_mask[0])
        with conv_inputs(self.layers, source=source):
            return super().forward(prev_output_tokens, encoder_out, incremental_state, src_lengths)


def build_embeddings(args, src_dict, tgt_dict):
    """The encoder's and the decoder's embeddings by LightConvModel.build_model's rules (--share-all-embeddings),
    each built by fairseq's build_embedding."""
    def embedding(dictionary, dim, path):
        return TransformerModelBase.build_embedding(args, dictionary, dim, path)

    if not args.share_all_embeddings:
        return (embedding(src_dict, args.encoder_embed_dim, args.encoder_embed_path),
                embedding(tgt_dict, args.decoder_embed_dim, args.decoder_embed_path))
    if src_dict != tgt_dict:
        raise RuntimeError("--share-all-embeddings requires a joined dictionary")
    if args.encoder_embed_dim != args.decoder_embed_dim:
        raise RuntimeError("--share-all-embeddings requires --encoder-embed-dim to match --decoder-embed-dim")
    if args.decoder_embed_path and args.decoder_embed_path != args.encoder_embed_path:
        raise RuntimeError("--share-all-embeddings not compatible with --decoder-embed-path")
    args.share_decoder_input_output_embed = True
    shared = embedding(src_dict, args.encoder_embed_dim, args.encoder_embed_path)
    return shared, shared


@register_model("cgc_lightconv")
class CGCLightConvModel(LightConvModel):
    """LightConv / DynamicConv (Wu et al., 2019) with Context-Gated Convolution (Lin et al., 2020).

    Args:
        encoder (CGCLightConvEncoder): the encoder
        decoder (CGCLightConvDecoder): the decoder

    The model's own options are the --cgc-* ones (add_args); their command-line defaults are CGC_DEFAULTS, and an
    args namespace without one (a checkpoint saved before the option existed) means CGC_BEFORE_OPTIONS.
    """
    @staticmethod
    def add_args(parser):
        LightConvModel.add_args(parser)
        group = parser.add_argument_group("Context-Gated Convolution")
        group.add_argument("--cgc-context", choices=["pool", "mean", "static"], default=CGC_DEFAULTS["cgc_context"],
                           help="gate context: 'pool' pools the context to K bins over time (the paper); "
                                "'mean' uses one mean vector and a small MLP (ablation); 'static' uses no context "
                                "at all, G = sigmoid(a learned H x K parameter) (the control)")
        group.add_argument("--cgc-decoder-context", choices=["prefix", "source"],
                           default=CGC_DEFAULTS["cgc_decoder_context"],
                           help="the decoder gate's context: 'source' (default) pools the encoder output of the "
                                "sentence being translated (one gate per sentence and layer); 'prefix' pools the conv "
                                "input at positions <= t (causal, one gate per position; decodes ~0.7x as fast)")
        group.add_argument("--cgc-norm", choices=NORMS, default=CGC_DEFAULTS["cgc_norm"],
                           help="--cgc-context pool: the norm of the context encoding before its ReLU: 'latent' "
                                "(default) a LayerNorm over each channel's d latent values; 'batch' the authors' 2D "
                                "code (BatchNorm over the batch, one per branch, BatchNorm + ReLU after the channel "
                                "interaction, no biases; not with a prefix decoder context); 'channels' a LayerNorm "
                                "over all channels x d values of a context; 'none' no norm")
        group.add_argument("--cgc-init-std", type=init_std, default=CGC_DEFAULTS["cgc_init_std"], metavar="STD",
                           help="std of the gate decoders' initial weights (biases start at 0; small values start "
                                "every gate near 0.5 with little input dependence), or 'pytorch' for nn.Linear's "
                                "default initialisation (as the authors' 2D code)")
        group.add_argument("--cgc-gate", choices=["head", "channel"], default=CGC_DEFAULTS["cgc_gate"],
                           help="gate shape: one H x K gate shared by the channels of a head, "
                                "or one C x K gate (a kernel per channel)")
        group.add_argument("--cgc-renorm", action="store_true", default=CGC_DEFAULTS["cgc_renorm"],
                           help="renormalise the gated kernel W (.) G to sum to 1 over the kernel positions")
        group.add_argument("--cgc-where", choices=["encoder", "decoder", "both"], default=CGC_DEFAULTS["cgc_where"],
                           help="which side's convolutions are gated")
        group.add_argument("--no-cgc", action="store_true", default=CGC_DEFAULTS["no_cgc"],
                           help="no gate anywhere (our conv code, ungated: equals fairseq's LightConv)")

    @classmethod
    def build_model(cls, args, task):
        for name, default in CGC_BEFORE_OPTIONS.items():
            setattr(args, name, getattr(args, name, default))
        lightconv.base_architecture(args)  # options of older checkpoints, as LightConvModel.build_model does
        args.max_source_positions = getattr(args, "max_source_positions", 1024)
        args.max_target_positions = getattr(args, "max_target_positions", 1024)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        encoder_embed, decoder_embed = build_embeddings(args, src_dict, tgt_dict)
        encoder = CGCLightConvEncoder(args, src_dict, encoder_embed)
        return cls(encoder, CGCLightConvDecoder(args, tgt_dict, decoder_embed))


def set_conv_type(args, conv_type):
    # The arch name decides: LightConvModel.add_args defaults --*-conv-type to "dynamic", so a getattr default
    # would silently build DynamicConv.
    args.encoder_conv_type = args.decoder_conv_type = conv_type


def small(args):
    """CPU preset: d=256, ffn 1024, 4 heads, 3+3 layers, kernels 3,7,15; the rest as lightconv_iwslt_de_en."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 256)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 256)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 1024)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 1024)
    args.encoder_layers = getattr(args, "encoder_layers", 3)
    args.decoder_layers = getattr(args, "decoder_layers", 3)
    args.encoder_kernel_size_list = getattr(args, "encoder_kernel_size_list", [3, 7, 15])
    args.decoder_kernel_size_list = getattr(args, "decoder_kernel_size_list", [3, 7, 15])
    lightconv_iwslt_de_en(args)


@register_model_architecture("cgc_lightconv", "cgc_lightconv_iwslt_de_en")
def cgc_lightconv_iwslt_de_en(args):
    set_conv_type(args, "lightweight")
    lightconv_iwslt_de_en(args)


@register_model_architecture("cgc_lightconv", "cgc_dynamicconv_iwslt_de_en")
def cgc_dynamicconv_iwslt_de_en(args):
    set_conv_type(args, "dynamic")
    lightconv_iwslt_de_en(args)


@register_model_architecture("cgc_lightconv", "cgc_lightconv_small")
def cgc_lightconv_small(args):
    set_conv_type(args, "lightweight")
    small(args)


@register_model_architecture("cgc_lightconv", "cgc_dynamicconv_small")
def cgc_dynamicconv_small(args):
    set_conv_type(args, "dynamic")
    small(args)


# the ungated baselines at the small size, fairseq's own model and convs
@register_model_architecture("lightconv", "lightconv_small")
def lightconv_small(args):
    set_conv_type(args, "lightweight")
    small(args)


@register_model_architecture("lightconv", "dynamicconv_small")
def dynamicconv_small(args):
    set_conv_type(args, "dynamic")
    small(args)
