"""Bad input, round three: a write that fails (a full disk, a read-only or forbidden folder) is one `cannot write
PATH: reason` error in every atomic writer (clitools.files, the prep's, average's, plots'), with nothing under the
final name and no temporary left; average refuses a checkpoint given twice; plots refuses a log without records.

A full disk is a real ENOSPC: the writer's temporary name is a link to /dev/full. A read-only folder is an
injected EROFS (the tests run as root, whom permissions do not stop), and a real one where `chattr +i` works."""
import builtins
import errno
import io
import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

import common
from clitools import files
from clitools.command import UserError
from scripts import average, plots
from tests.test_bad_input import refused

WRITERS = {  # name -> (write(path), its temporary name)
    "files.write_json": (lambda p: files.write_json(p, {"a": 1}), files.tmp_name),
    "files.write_atomic": (lambda p: files.write_atomic(p, "text\n"), files.tmp_name),
    "common.write_lines": (lambda p: common.write_lines(p, ["eins", "zwei"]), common.tmp_name),
    "common.write_json": (lambda p: common.write_json(p, {"a": 1}), common.tmp_name),
}


def full_disk(tmp):
    """Writes to tmp fail with ENOSPC, as on a full disk."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.symlink_to("/dev/full")


def read_only(monkeypatch, folder):
    """Creating a file in folder fails with EROFS, as in a read-only folder (open and io.open: what the writers and
    pathlib use)."""
    real = io.open

    def refuse(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).parent == folder and set(mode) & set("wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(file))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", refuse)
    monkeypatch.setattr(builtins, "open", refuse)


@pytest.mark.parametrize("name", WRITERS)
def test_full_disk_is_one_line(tmp_path, name):
    write, tmp_name = WRITERS[name]
    path = tmp_path / "out" / "file.txt"
    full_disk(tmp_name(path))
    with pytest.raises(UserError, match=f"^cannot write {re.escape(str(path))}: No space left on device$"):
        write(path)
    assert list(path.parent.iterdir()) == []  # neither the file nor its temporary name


@pytest.mark.parametrize("name", WRITERS)
def test_read_only_folder_is_one_line(tmp_path, monkeypatch, name):
    write, _ = WRITERS[name]
    path = tmp_path / "out" / "file.txt"
    path.parent.mkdir()
    with monkeypatch.context() as m:
        read_only(m, path.parent)
        with pytest.raises(UserError, match=f"^cannot write {re.escape(str(path))}: Read-only file system$"):
            write(path)
    assert list(path.parent.iterdir()) == []


def test_other_errors_pass_through(tmp_path):
    """An OSError that is not about the output (reading an input inside the block) is not called a write error."""
    with pytest.raises(FileNotFoundError):
        with files.atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text((tmp_path / "no-such-input").read_text())
    assert list(tmp_path.iterdir()) == []


def tiny_checkpoint(path, value):
    import torch

    torch.save({"model": {"w": torch.full((3,), float(value))}, "args": None}, path)
    return path


def test_average_full_disk(tmp_path, capsys):
    a, b = tiny_checkpoint(tmp_path / "a.pt", 1), tiny_checkpoint(tmp_path / "b.pt", 3)
    out = tmp_path / "avg.pt"
    full_disk(files.tmp_name(out))
    refused(average.main, ["--checkpoints", a, b, "--out", out], capsys, f"cannot write {out}: No space left")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]


@contextmanager
def immutable(folder):
    """chattr +i: a folder that even root cannot write into (EPERM); a skip where the file system has no such flag."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_average_into_a_folder_it_cannot_write(tmp_path, capsys):
    a, b = tiny_checkpoint(tmp_path / "a.pt", 1), tiny_checkpoint(tmp_path / "b.pt", 3)
    (tmp_path / "out").mkdir()
    with immutable(tmp_path / "out") as out:
        refused(average.main, ["--checkpoints", a, b, "--out", out / "avg.pt"], capsys,
                f"cannot write {out / 'avg.pt'}: Operation not permitted")
    assert list(out.iterdir()) == []


def test_average_refuses_a_checkpoint_given_twice(tmp_path, capsys):
    a, b = tiny_checkpoint(tmp_path / "a.pt", 1), tiny_checkpoint(tmp_path / "b.pt", 3)
    out = tmp_path / "avg.pt"
    refused(average.main, ["--checkpoints", a, a, b, "--out", out], capsys, f"--checkpoints: {a} is given twice")
    alias = tmp_path / "link.pt"  # the same file under another name
    alias.symlink_to(a)
    refused(average.main, ["--checkpoints", a, b, alias, "--out", out], capsys,
            f"{alias} (the same file as {a}) is given twice")
    assert not out.exists()
    assert average.main(["--checkpoints", str(a), str(b), "--out", str(out)]) == 0
    import torch

    assert torch.load(out, weights_only=True)["model"]["w"].tolist() == [2.0, 2.0, 2.0]


def test_plots_refuses_a_log_without_records(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("2024-01-01 00:00:00 | INFO | fairseq_cli.train | nothing logged yet\n")
    out = tmp_path / "plots"
    refused(plots.main, ["--runs", run, "--out", out], capsys, f"{run / 'train.log'}: no training records")
    assert not (out / "curves.png").exists()
