"""Multi30k task 1, De-En: the released splits, tokenized like the release's
own ``tok/*.lc.norm.tok.*`` files (``text.py``, corpus ``multi30k``)."""

from __future__ import annotations

from pathlib import Path

from common import LANGS, PrepError, find_file

# fairseq split name -> release split name
SPLITS = {
    "train": "train",
    "valid": "val",
    "test": "test_2016_flickr",
    "test1": "test_2017_flickr",
}
STANDARD_COUNTS = {"train": 29000, "valid": 1014, "test": 1000, "test1": 1000}


def search_dirs(root: Path) -> list[Path]:
    root = Path(root)
    return [root / "raw", root]


def locate(root: Path) -> dict[tuple[str, str], Path]:
    """(release split, lang) -> raw file. Missing files raise PrepError."""
    root = Path(root)
    if not root.exists():
        raise PrepError(f"--raw path does not exist: {root}")
    if not root.is_dir():
        raise PrepError(f"--raw must be a directory with the Multi30k raw files: {root}")
    files = {}
    for split in SPLITS.values():
        for lang in LANGS:
            p = find_file(search_dirs(root), f"{split}.{lang}")
            if p is None:
                raise PrepError(
                    f"missing input file: {split}.{lang}[.gz|.xz] not found in {root} or {root / 'raw'}"
                )
            files[(split, lang)] = p
    return files


def reference(root: Path, split: str, lang: str) -> Path | None:
    """The release's own tokenized file, if present (for the agreement report)."""
    root = Path(root)
    return find_file([root / "tok", root], f"{split}.lc.norm.tok.{lang}")


def drop_empty(de: list[str], en: list[str]) -> tuple[list[int], list[str], list[str]]:
    """The only cleaning for Multi30k training data: drop pairs with an empty side."""
    keep = [i for i, (a, b) in enumerate(zip(de, en)) if a.strip() and b.strip()]
    return keep, [de[i] for i in keep], [en[i] for i in keep]
