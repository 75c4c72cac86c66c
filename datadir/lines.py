"""One definition of a line, for every place text enters: the data preparation's raw files, the references
scripts/evaluate.py and scripts/plots.py read, scripts/translate.py's input, the hub's sentences and the `moses_lc`
tokenizer of fairseq's own tools.

A text is UTF-8: other bytes are refused, naming the file and the line. A line ends at "\\n", and "\\r\\n" ends it
too. A text with CRs and no "\\n" at all has old-Mac line ends: there "\\r" ends a line (line_end; a corpus file
of one line with CRs inside it is far less likely than a CR-terminated one). Inside a line, every other character
that some reader takes for a line break -- CR, VT, FF, FS, GS, RS, NEL, U+2028, U+2029: Python's str.splitlines
breaks at all of them, fairseq's text-mode readers at CR -- becomes a space, so every reader downstream sees the
same lines (and the raw references and the tokenized files agree line for line). A byte-order mark (U+FEFF) is
dropped wherever it is. A NUL is refused: a file with NULs is binary or UTF-16, not UTF-8 text. For the hub a str
is one line: one "\\n" (or "\\r\\n") at its end ends it, a "\\n" inside it is refused (one sentence per str).
"""
import re
from pathlib import Path

BREAKS = "\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # line breaks to some reader, other than "\n"
BOM = "\ufeff"
_BREAK = re.compile(f"[{re.escape(BREAKS)}]")


class TextError(ValueError):
    """Text that is not a line of UTF-8 text; the message says where (file and line, or which sentence)."""


def clean(line):
    """A line's text (without its "\\n") as every reader sees it: a final CR dropped, other breaks spaces, BOMs
    dropped."""
    return _BREAK.sub(" ", line.removesuffix("\r")).replace(BOM, "")


def normalise(line, where):
    """clean(line), and a TextError naming `where` for a NUL."""
    if "\0" in line:
        raise TextError(f"{where}: a NUL character (not a UTF-8 text file; UTF-16?)")
    return clean(line)


def decode_line(raw, where):
    """One line's bytes (without "\\n") -> its normalised text; TextError naming `where` (e.g. "FILE line 3")."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextError(f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x})") from None
    return normalise(text, where)


def line_end(data):
    """The line end of a file's bytes: b"\\n", or b"\\r" when it has CRs and no "\\n" (old Mac line ends)."""
    return b"\r" if b"\r" in data and b"\n" not in data else b"\n"


def decode(data, name):
    """A file's bytes -> its lines (a final line end ends the last line, it starts no other; line_end says which);
    TextError naming the file and the line."""
    if line_end(data) == b"\r":
        data = data.replace(b"\r", b"\n")  # a CR is never part of a multi-byte UTF-8 character
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:  # line by line, for the message naming the line
        for number, raw in enumerate(data.split(b"\n"), 1):
            decode_line(raw, f"{name} line {number}")
    text_lines = clean(text.replace("\r\n", "\n")).split("\n")  # clean() of every line at once
    if text_lines[-1] == "":
        text_lines.pop()
    return text_lines


def read(path):
    """The lines of a text file (plain; data-bin-prep/common.py also reads compressed ones)."""
    return decode(Path(path).read_bytes(), path)


def one_line(text, where):
    """A str given as one sentence (the hub): one "\\n" or "\\r\\n" at its end is its end; TextError for a "\\n"
    inside it or a NUL."""
    text = text.removesuffix("\n")
    if "\n" in text:
        raise TextError(f"{where}: a line break inside the sentence (one sentence per str: give a list with one str "
                        f"per line)")
    return normalise(text, where)


def has_text(lines):
    """Whether any line has more than whitespace."""
    return any(line.strip() for line in lines)
