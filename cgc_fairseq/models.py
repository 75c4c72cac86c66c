"""The `cgc_lightconv` model: fairseq's LightConv model whose convolutions are context-gated, and its archs."""
from contextlib import contextmanager

from fairseq.models import register_model, register_model_architecture
from fairseq.models.lightconv import LightConvEncoder, LightConvModel, lightconv_iwslt_de_en

from .gated_conv import GateConfig, GatedDynamicConv1dTBC, GatedLightweightConv1dTBC

# The --cgc-* options' defaults: the command line's, and those of an args namespace that lacks them
CGC_DEFAULTS = {"cgc_context": "pool", "cgc_gate": "head", "cgc_renorm": False, "cgc_where": "both", "no_cgc": False}
GATED_CONV = {"lightweight": GatedLightweightConv1dTBC, "dynamic": GatedDynamicConv1dTBC}


def gate_config(args, side):
    """The gate for one side ("encoder"/"decoder"), or None when --no-cgc / --cgc-where leaves it ungated."""
    if args.no_cgc or args.cgc_where not in (side, "both"):
        return None
    return GateConfig(context=args.cgc_context, gate=args.cgc_gate, renorm=args.cgc_renorm)


def gate_layers(layers, conv_type, causal, config):
    """Swap each layer's fairseq conv for our conv of the same shape (gated unless config is None)."""
    for layer in layers:
        layer.conv = GATED_CONV[conv_type].like(layer.conv, causal, config)


@contextmanager
def convs_see_padding(layers, padding_mask):
    """Within the block, each layer's conv knows the source padding (B x T, or None), so that pads do not count in
    its context."""
    for layer in layers:
        layer.conv.padding_mask = padding_mask
    try:
        yield
    finally:
        for layer in layers:
            layer.conv.padding_mask = None


class CGCLightConvEncoder(LightConvEncoder):
    """LightConv encoder whose convs see the padding mask, so that pads do not count in the context."""

    def __init__(self, args, dictionary, embed_tokens):
        super().__init__(args, dictionary, embed_tokens)
        gate_layers(self.layers, args.encoder_conv_type, causal=False, config=gate_config(args, "encoder"))

    def forward(self, src_tokens, src_lengths=None):
        padding_mask = src_tokens.eq(self.padding_idx)
        with convs_see_padding(self.layers, padding_mask if padding_mask.any() else None):
            return super().forward(src_tokens, src_lengths)


@register_model("cgc_lightconv")
class CGCLightConvModel(LightConvModel):
    """LightConv / DynamicConv (Wu et al., 2019) with Context-Gated Convolution (Lin et al., 2020)."""

    @staticmethod
    def add_args(parser):
        LightConvModel.add_args(parser)
        group = parser.add_argument_group("Context-Gated Convolution")
        group.add_argument("--cgc-context", choices=["pool", "mean"], default=CGC_DEFAULTS["cgc_context"],
                           help="gate context: 'pool' pools the conv input to K bins over time (the paper); "
                                "'mean' uses one mean vector and a small MLP (ablation)")
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
        for name, default in CGC_DEFAULTS.items():
            setattr(args, name, getattr(args, name, default))
        base = LightConvModel.build_model(args, task)  # embeddings (shared or not), fairseq's decoder
        encoder = CGCLightConvEncoder(args, task.source_dictionary, base.encoder.embed_tokens)
        gate_layers(base.decoder.layers, args.decoder_conv_type, causal=True, config=gate_config(args, "decoder"))
        return cls(encoder, base.decoder)


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


def register_archs(model, prefix, size, preset):
    """Register {prefix}lightconv_{size} and {prefix}dynamicconv_{size} on `model`."""
    for conv_type, name in (("lightweight", "lightconv"), ("dynamic", "dynamicconv")):
        def arch(args, conv_type=conv_type):
            set_conv_type(args, conv_type)
            preset(args)

        register_model_architecture(model, f"{prefix}{name}_{size}")(arch)


register_archs("cgc_lightconv", "cgc_", "iwslt_de_en", lightconv_iwslt_de_en)  # cgc_{light,dynamic}conv_iwslt_de_en
register_archs("cgc_lightconv", "cgc_", "small", small)  # cgc_{light,dynamic}conv_small
register_archs("lightconv", "", "small", small)  # ungated baselines, fairseq's own code: {light,dynamic}conv_small
