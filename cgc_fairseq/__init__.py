"""cgc_fairseq: Context-Gated Convolution (Lin et al., ECCV 2020) for fairseq's LightConv / DynamicConv.

Use with `--user-dir cgc_fairseq`. Importing registers the `cgc_lightconv` model and its archs, the
`translation_autocast` task (--precision bf16) and the `moses_lc` tokenizer.
"""
import argparse

import torch

# torch >= 2.6 loads checkpoints with weights_only=True; fairseq checkpoints hold an argparse.Namespace.
torch.serialization.add_safe_globals([argparse.Namespace])

from . import models  # noqa: E402,F401  (registers the model and archs)
from . import hub  # noqa: E402,F401  (registers the `moses_lc` tokenizer)
from . import precision  # noqa: E402,F401  (registers the `translation_autocast` task)
