"""What a data dir of data-bin-prep/prepare.py is, shared by the data preparation, the plugin's hub and the scripts:
its file layout (`layout`) and the Moses tokenization its text went through (`moses`).

Imports neither cgc_fairseq nor scripts/ nor data-bin-prep/, so every one of them may import it.
"""
