"""A fabricated IWSLT'14 De-En release for the prep's tests: TED-like train.tags files with the tags the recipe
drops, and dev/test XML of every test set, small enough to run the whole pipeline in seconds."""
from __future__ import annotations

import tarfile
from pathlib import Path

import iwslt14  # data-bin-prep/iwslt14.py (pytest's pythonpath)


N_TALKS = 8
SENTS_PER_TALK = 16


def fabricate_pairs():
    """(de, en, kept_by_cleaning) in file order, plus the header lines of each talk."""
    rows = []  # (de_line, en_line, kind) kind in {"drop_tag", "keep", "clean_drop"}
    for t in range(N_TALKS):
        rows.append((f"<url>http://www.ted.com/talks/lang/de/t{t}.html</url>",
                     f"<url>http://www.ted.com/talks/t{t}.html</url>", "drop_tag"))
        rows.append((f"<keywords>talks, kw{t}</keywords>", f"<keywords>talks, kw{t}</keywords>", "drop_tag"))
        rows.append((f"<talkid>{t}</talkid>", f"<talkid>{t}</talkid>", "drop_tag"))
        rows.append((f"<title>Titel Vortrag{t}</title>", f"<title>Title talk{t}</title>", "keep"))
        rows.append((f"<description>Beschreibung des Vortrags{t}.</description>",
                     f"<description>Description of talk{t}.</description>", "keep"))
        for s in range(SENTS_PER_TALK):
            k = t * SENTS_PER_TALK + s
            if k == 5:  # too long (> 175 tokens)
                rows.append((" ".join(["lang"] * 180) + f" lang{k}", " ".join(["long"] * 180), "clean_drop"))
            elif k == 9:  # ratio > 1.5
                rows.append((f"Kurz{k} .", f"This is a much longer English line{k} .", "clean_drop"))
            elif k == 13:  # empty / blank pair
                rows.append(("   ", "", "clean_drop"))
            elif k == 17:  # exactly ratio 1.5 (2 vs 3 tokens): kept
                rows.append((f"Ja{k}!", f"Yes{k} indeed!", "keep"))
            elif k == 21:  # apostrophes untouched in train; Moses escapes
                rows.append((f"Das ist „Anna’s“ Haus{k} & Garten.",
                             f"That's Anna’s house{k} & garden.", "keep"))
            else:
                rows.append((f"Das ist Satz{k}, den Sie hier sehen.",
                             f"This is sentence{k}, which you see here.", "keep"))
    return rows


# per test set: number of segments
TEST_SIZES = dict(zip(iwslt14.TEST_SETS, [2, 3, 4, 5, 6]))


def fabricate_xml(test_set: str, lang: str) -> str:
    n = TEST_SIZES[test_set]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<mteval>",
        f'<{"srcset" if lang == "de" else "refset"} setid="{test_set}" srclang="german">',
        '<doc docid="1" genre="lectures">',
        "<url>http://www.ted.com/talks/x.html</url>",
        "<description>Nicht im Test.</description>" if lang == "de" else "<description>Not in test.</description>",
        "<talkid>1</talkid>",
        "<title>Nicht im Test</title>" if lang == "de" else "<title>Not in test</title>",
    ]
    for i in range(n):
        body = (f"Segment {i} von {test_set}, Max’ Idee." if lang == "de"
                else f"Segment {i} of {test_set}, Max’ idea.")
        lines.append(f'<seg id="{i + 1}"> {body} </seg>')
    lines += ["</doc>", "</srcset>" if lang == "de" else "</refset>", "</mteval>"]
    return "\n".join(lines) + "\n"


def write_release(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = fabricate_pairs()
    for i, l in enumerate(("de", "en")):
        (root / f"train.tags.de-en.{l}").write_text("\n".join(r[i] for r in rows) + "\n", encoding="utf-8")
        for s in iwslt14.TEST_SETS:
            (root / iwslt14.xml_name(s, l)).write_text(fabricate_xml(s, l), encoding="utf-8")
    return root


def make_tgz(src_dir: Path, dest: Path, prefix="de-en") -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        for p in sorted(src_dir.iterdir()):
            tf.add(p, arcname=f"{prefix}/{p.name}")
    return dest
