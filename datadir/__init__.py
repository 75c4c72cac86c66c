"""What a data dir of data-bin-prep/prepare.py is, shared by the data preparation, the plugin's hub and the scripts:
its file layout (`layout`), the Moses tokenization its text went through (`moses`), what a line of text is (`lines`)
and the rules values follow (`values`: numeric options, the longest sentence, strict JSON).

Imports neither cgc_fairseq nor scripts/ nor data-bin-prep/, so every one of them may import it.
"""
