"""The IWSLT'14 De-En release: the files prepare-iwslt14.sh reads, and how to find them (a directory, the
release's de-en.tgz, or a download), checked to be the release.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from clitools.files import ensure_dir, read_bytes
from common import PrepError, atomic_path, find_file, log
from datadir.layout import LANGS

URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
ARCHIVE_NAME = "de-en.tgz"

TRAIN_FILES = {l: f"train.tags.de-en.{l}" for l in LANGS}
# order of prepare-iwslt14.sh's `cat` for the test split
TEST_SETS = [
    "IWSLT14.TED.dev2010",
    "IWSLT14.TEDX.dev2012",
    "IWSLT14.TED.tst2010",
    "IWSLT14.TED.tst2011",
    "IWSLT14.TED.tst2012",
]


def xml_name(test_set: str, lang: str) -> str:
    return f"{test_set}.de-en.{lang}.xml"


# sha256 of the standard release's dev/test XML files (../shared/data/iwslt14-de-en/SOURCE.md)
STANDARD_XML_SHA256 = {
    "IWSLT14.TED.dev2010.de-en.de.xml": "6bb2e8272bc49a4f19df2150a482a1b856fa6a2d6b289d3a80ac6b4ff66070fe",
    "IWSLT14.TED.dev2010.de-en.en.xml": "5c860ebb64d4ecdc65800c7ba59732d27cff8b296fa7eeafbcd4614a2c572700",
    "IWSLT14.TED.tst2010.de-en.de.xml": "5648c0a3a6e5eb3ab6fbdfbdeca69a20a1637a37361e337ab47418d71972880d",
    "IWSLT14.TED.tst2010.de-en.en.xml": "fa9ce190959320cb5a5a68358ad793e5863621f87a28e9f4312110ac5b842efc",
    "IWSLT14.TED.tst2011.de-en.de.xml": "a70163216273ab5622cbbb19fea6dfde42ab6d3ad70374444323e65f71837735",
    "IWSLT14.TED.tst2011.de-en.en.xml": "d350eac4cb6f0cf3e787c9e82b8074bdc7e58c4ca7d650c9b97de8a677068695",
    "IWSLT14.TED.tst2012.de-en.de.xml": "edf69bd9e41acd93e13d01f55a2906b7be0f69cd90a46e343294dfd3190db952",
    "IWSLT14.TED.tst2012.de-en.en.xml": "cd73e997ce078699863278daef06b9a226d1adbec4c3cac91a0894d7eab5c1f8",
    "IWSLT14.TEDX.dev2012.de-en.de.xml": "e818a77a43e18ec4726a698e5aa9c438e0cd4b82d4edd27286163bee44e85604",
    "IWSLT14.TEDX.dev2012.de-en.en.xml": "a5de03e0e18cf5ad4b2b4ba66f11510a8576fa1a7c172190860cabfd17bff99a",
}
def search_dirs(root: Path) -> list[Path]:
    """Where the release files may sit below ``root``."""
    root = Path(root)
    return [root, root / "raw", root / "de-en", root / "orig" / "de-en"]


def needed_names(eval_only: bool) -> list[str]:
    names = [xml_name(s, l) for s in TEST_SETS for l in LANGS]
    if not eval_only:
        names = [TRAIN_FILES[l] for l in LANGS] + names
    return names


def locate(root: Path, eval_only: bool) -> tuple[dict[str, Path], list[str]]:
    """Map release file name -> path found below ``root``; also the missing names."""
    found, missing = {}, []
    for name in needed_names(eval_only):
        p = find_file(search_dirs(root), name)
        if p is None:
            missing.append(name)
        else:
            found[name] = p
    return found, missing


def download(url: str, dest: Path, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``dest`` (temporary name, renamed when complete)."""
    from tqdm import tqdm

    log(f"downloading {url} -> {dest}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as f, tqdm(
                total=total, unit="B", unit_scale=True, desc="download", leave=False
            ) as bar:
                while True:
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
            if total is not None and tmp.stat().st_size != total:
                raise PrepError(
                    f"download of {url} truncated: {tmp.stat().st_size} of {total} bytes"
                )
    except urllib.error.HTTPError as e:
        raise PrepError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise PrepError(
            f"cannot download {url}: {reason} (no network? put the release files or "
            f"{ARCHIVE_NAME} in --raw, or use --eval-only)"
        ) from None
    return dest


def extract_release(archive: Path, dest: Path) -> dict[str, Path]:
    """Validate that ``archive`` is the IWSLT'14 de-en release; extract the needed files."""
    archive = Path(archive)
    names = needed_names(eval_only=False)
    try:
        tf = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise PrepError(
            f"{archive} is not the IWSLT'14 de-en release (not a tar archive: {e})"
        ) from None
    with tf:
        try:
            members = {
                os.path.basename(m.name): m
                for m in tf.getmembers()
                if m.isfile() and os.path.basename(m.name) in names
            }
        except (tarfile.TarError, OSError, EOFError) as e:
            raise PrepError(f"{archive} is not the IWSLT'14 de-en release (corrupt: {e})") from None
        missing = [n for n in names if n not in members]
        if missing:
            raise PrepError(
                f"{archive} is not the IWSLT'14 de-en release: it lacks "
                + ", ".join(missing[:3])
                + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            )
        ensure_dir(dest)
        out = {}
        for name in names:
            src = tf.extractfile(members[name])
            with atomic_path(dest / name) as tmp, open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            out[name] = dest / name
    return out


def obtain_release(raw: Path | None, out: Path, url: str, eval_only: bool) -> tuple[dict[str, Path], str]:
    """Return (file name -> path, description of where they came from)."""
    if raw is not None and Path(raw).is_file():  # an archive given directly
        archive = Path(raw)
        log(f"extracting {archive}")
        return extract_release(archive, out / "orig" / "de-en"), f"archive {archive}"
    if raw is not None and not Path(raw).exists():
        raise PrepError(f"--raw path does not exist: {raw}")
    if raw is not None:
        found, missing = locate(raw, eval_only)
        if not missing:
            return found, f"directory {raw}"
        if eval_only:
            raise PrepError(f"missing input file: {missing[0]} not found in {raw}")
    # previously extracted download?
    cache = out / "orig" / "de-en"
    found, missing = locate(cache, eval_only)
    if not missing:
        return found, f"extracted archive in {cache}"
    archive = out / "orig" / ARCHIVE_NAME
    if raw is not None and (Path(raw) / ARCHIVE_NAME).is_file():  # a tarball placed in --raw
        log(f"extracting {Path(raw) / ARCHIVE_NAME}")
        return extract_release(Path(raw) / ARCHIVE_NAME, cache), f"archive {Path(raw) / ARCHIVE_NAME}"
    if not archive.is_file():
        where = f"in {raw}" if raw is not None else "(no --raw)"
        log(f"IWSLT'14 training files not found {where}; fetching the release")
        download(url, archive)
    try:
        files = extract_release(archive, cache)
    except PrepError:
        archive.unlink(missing_ok=True)  # do not keep a bad download looking finished
        raise
    return files, f"archive {archive} (from {url})"


def is_standard(files: dict[str, Path]) -> bool:
    """True when every dev/test XML has the standard release's content (sha256)."""
    for name, digest in STANDARD_XML_SHA256.items():
        if name not in files or hashlib.sha256(read_bytes(files[name])).hexdigest() != digest:
            return False
    return True
