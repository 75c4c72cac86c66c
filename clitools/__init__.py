"""What the command-line tools share: scripts/ (`python -m scripts.NAME`) and data-bin-prep/
(`python data-bin-prep/prepare.py`). `command`: the one-line error (UserError), the parser whose errors are one line
too, the main guard that turns them into an exit status, the log line. `files`: output paths checked before any work,
atomic writes (a temporary name, renamed when complete), text read as datadir.lines defines a line, strict JSON.
`record`: the versions a command records in the JSON it writes.

Imports only the standard library and datadir: never cgc_fairseq, scripts/ or data-bin-prep/, so both tools may
import it (the plugin has no need to).
"""
