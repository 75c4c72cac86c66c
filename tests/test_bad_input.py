"""Bad input, round two (issue 12): every numeric option refused at parse time in the words of datadir.values (the
hub's ValueErrors in the same words), output paths checked before any work, no *.tmp left by a failure, strict
JSON, a checkpoint of another data dir named as such, sentences longer than the model's positions truncated with
a warning (evaluate, the hub, scripts/translate.py), and a bad line of translate.py's input a warning and an empty
hypothesis. One tiny model, trained once on the session's synthetic data dir."""
import json
import logging
import shutil
import subprocess
import sys

import pytest

from cgc_fairseq.hub import MosesLowercaseTokenizer
from clitools.files import write_json
from datadir import lines
from scripts import average, evaluate, export, plots, train, translate
from tests.helpers import REPO
from tests.reverse_task import BIN
from tests.run_scripts import check_error, script

pytestmark = pytest.mark.slow  # trains or runs the scripts: make test, not make test-fast

SHORT = ("--max-len-a", 0, "--max-len-b", 5)  # a barely trained model babbles; short hypotheses are enough here
LONG = 1100  # words, each 1-2 pieces: longer than the model's 1024 positions


def strict(text):
    """json.loads that refuses NaN and Infinity, as strict parsers do."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))


@pytest.fixture(scope="module")
def model(tmp_path_factory, synthetic_data):
    run = tmp_path_factory.mktemp("bad_input") / "run"
    script("train", "--data", synthetic_data, "--run-dir", run, "--preset", "tiny", "--max-update", 20, "--quiet")
    return run / "checkpoints" / "checkpoint_last.pt"


def refused(main, argv, capsys, *needles):
    """main(argv) stops with one `error: ...` line (argparse's exit 2 or a ScriptError's 1) naming the needles."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc not in (0, None) and len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], err[0]


BAD_OPTIONS = [  # (script, its other arguments, option, value, the rule's words)
    (train, ["--data", "d", "--run-dir", "r"], "--budget-minutes", "0", "must be > 0, got 0"),
    (train, ["--data", "d", "--run-dir", "r"], "--budget-minutes", "-5", "must be > 0, got -5"),
    (train, ["--data", "d", "--run-dir", "r"], "--budget-minutes", "nan", "must be a finite number, got nan"),
    (train, ["--data", "d", "--run-dir", "r"], "--max-update", "0", "must be >= 1, got 0"),
    (train, ["--data", "d", "--run-dir", "r"], "--max-update", "-3", "must be >= 1, got -3"),
    (train, ["--data", "d", "--run-dir", "r"], "--keep-last", "0", "must be >= 1, got 0"),
    (train, ["--data", "d", "--run-dir", "r"], "--seed", "-1", "must be >= 0, got -1"),
    (train, ["--data", "d", "--run-dir", "r"], "--threads", "0", "must be >= 1, got 0"),
    (evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--lenpen", "nan", "must be a finite number"),
    (evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--lenpen", "inf", "must be a finite number"),
    (evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--beam", "0", "must be >= 1, got 0"),
    (evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--beam", "-1", "must be >= 1, got -1"),
    (evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--beam", "2.5", "must be an integer"),
    (evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--max-tokens", "0", "must be >= 1, got 0"),
    (evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--batch-size", "0", "must be >= 1, got 0"),
    (evaluate, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--threads", "-2", "must be >= 1, got -2"),
    (export, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--tolerance", "nan", "must be a finite number"),
    (export, ["--checkpoint", "c", "--data", "d", "--out", "o"], "--tolerance", "-1", "must be >= 0, got -1"),
    (plots, ["--out", "o"], "--sentences", "0", "must be >= 1, got 0"),
    (translate, ["d", "--path", "c"], "--beam", "0", "must be >= 1, got 0"),
    (translate, ["d", "--path", "c"], "--lenpen", "-inf", "must be a finite number"),
    (translate, ["d", "--path", "c"], "--buffer-size", "0", "must be >= 1, got 0"),
    (translate, ["d", "--path", "c"], "--max-len-b", "-1", "must be >= 0, got -1"),
]


@pytest.mark.parametrize("module, argv, option, value, words", BAD_OPTIONS,
                         ids=[f"{m.__name__.split('.')[-1]} {o} {v}" for m, _, o, v, _ in BAD_OPTIONS])
def test_numeric_options_refused_at_parse_time(capsys, module, argv, option, value, words):
    refused(module.main, [*argv, f"{option}={value}"], capsys, f"argument {option}: {words}")


def test_train_budget(capsys, synthetic_data, tmp_path):
    """--no-budget is the explicit "no budget" (what race.py asks for); a budget too small for fairseq's 6 decimals
    of hours (which would read as none) is refused."""
    args = ["--data", synthetic_data, "--run-dir", tmp_path / "r", "--preset", "small", "--dry-run"]
    assert train.main([*map(str, args), "--no-budget", "--max-update", "12"]) == 0
    cmd = capsys.readouterr().out.split()
    assert "--stop-time-hours" not in cmd and cmd[cmd.index("--max-update") + 1] == "12"
    refused(train.main, [*args, "--budget-minutes", "1e-5"], capsys, "--budget-minutes", "no budget")
    refused(train.main, [*args, "--budget-minutes", "5", "--no-budget"], capsys, "not allowed with")


def test_output_paths_checked_first(capsys, synthetic_data, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for main, argv in ((evaluate.main, ["--checkpoint", afile, "--data", synthetic_data, "--out", afile]),
                       (evaluate.main, ["--checkpoint", afile, "--data", synthetic_data, "--out", afile / "sub"]),
                       (train.main, ["--data", synthetic_data, "--run-dir", afile, "--dry-run"]),
                       (export.main, ["--checkpoint", afile, "--data", synthetic_data, "--out", afile]),
                       (plots.main, ["--runs", tmp_path, "--out", afile])):
        refused(main, argv, capsys, "output path is a file, expected a directory", str(afile))
    refused(average.main, ["--checkpoints", afile, "--out", tmp_path], capsys, "output path is a directory")
    assert afile.read_text() == "mine\n"


def test_json_is_strict(tmp_path):
    import common  # data-bin-prep/common.py: clitools' writer under the prep's temporary names

    for write in (write_json, common.write_json):
        write(tmp_path / "x.json", {"nan": float("nan"), "inf": [float("inf")], "ok": 1.5})
        assert strict((tmp_path / "x.json").read_text()) == {"nan": None, "inf": [None], "ok": 1.5}


def test_evaluate_max_tokens_below_the_longest_sentence(model, synthetic_data, tmp_path, capsys):
    refused(evaluate.main, ["--checkpoint", model, "--data", synthetic_data, "--out", tmp_path / "e", "--max-tokens",
                            5], capsys, "argument --max-tokens: 5 is less than the longest sentence of test (")
    assert not (tmp_path / "e").exists()


def test_evaluate_failure_leaves_no_tmp(model, synthetic_data, tmp_path):
    out = tmp_path / "e"
    check_error(script("evaluate", "--checkpoint", model, "--data", synthetic_data, "--out", out, "--quiet",
                       "--no-such-fairseq-flag", check=False), "fairseq-generate failed", "generate.txt.failed")
    assert sorted(p.name for p in out.iterdir()) == ["generate.txt.failed"]  # no *.tmp, no results.json


def other_data_dir(synthetic_data, root):
    """The synthetic data dir with 3 more words in its dictionaries: not the one the model was trained on."""
    data = root / "other"
    shutil.copytree(synthetic_data, data)
    for lang in ("de", "en"):
        with open(data / f"dict.{lang}.txt", "a") as f:
            f.write("xa 1\nxb 1\nxc 1\n")
    return data


def test_dictionary_mismatch_named(model, synthetic_data, tmp_path, capsys):
    from cgc_fairseq.hub import from_pretrained

    other = other_data_dir(synthetic_data, tmp_path)
    n = 4 + sum(1 for _ in open(synthetic_data / "dict.de.txt"))  # fairseq's special symbols and the words
    words = f"was trained with a {n}-word dictionary, {other} has {n + 3}"
    check_error(script("evaluate", "--checkpoint", model, "--data", other, "--out", tmp_path / "e", check=False),
                words)
    refused(export.main, ["--checkpoint", model, "--data", other, "--out", tmp_path / "x"], capsys, words)
    with pytest.raises(ValueError, match=words):
        from_pretrained(model, data=other)


def long_data_dir(synthetic_data, root):
    """The synthetic data dir whose test split is 3 pairs: line 2's source and line 3's reference longer than the
    model's 1024 positions, binarized with its dictionaries (as a data dir of an older prep could be)."""
    import sentencepiece as spm

    data = root / "long"
    shutil.copytree(synthetic_data, data)
    pairs = [("ein mann .", "a man ."), (" ".join(["mann"] * LONG), "a man ."), ("ein hund .", " ".join(["man"] * LONG))]
    sp = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    for i, lang in enumerate(("de", "en")):
        text = "".join(pair[i] + "\n" for pair in pairs)
        (data / "tok" / f"test.{lang}").write_text(text)
        (data / "raw" / f"test.{lang}").write_text(text)
        (root / f"test.{lang}").write_text("".join(" ".join(sp.encode(p[i], out_type=str)) + "\n" for p in pairs))
    subprocess.run([str(BIN / "fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en", "--srcdict",
                    data / "dict.de.txt", "--tgtdict", data / "dict.en.txt", "--testpref", root / "test",
                    "--destdir", root / "bin", "--workers", "1"], check=True, capture_output=True)
    for f in (root / "bin").glob("test.*"):
        shutil.copy(f, data / f.name)
    return data


def test_evaluate_over_long_sentences(model, synthetic_data, tmp_path):
    """A source longer than the model's positions is truncated, a reference that long gets an empty hypothesis:
    both with a warning and listed in results.json, and every line keeps its place."""
    data, out = long_data_dir(synthetic_data, tmp_path), tmp_path / "e"
    proc = script("evaluate", "--checkpoint", model, "--data", data, "--out", out, "--quiet", *SHORT)
    assert "test: source line 2: longer than 1024 tokens" in proc.stdout
    assert "test: reference line 3: longer than 1024 tokens" in proc.stdout
    results = strict((out / "results.json").read_text())
    assert results["over_long"] == {"positions": [1024, 1024], "truncated_sources": [2], "skipped_references": [3]}
    hyps = (out / "hyp.tok.en").read_text().split("\n")
    assert len(hyps) == 4 and hyps[2] == "" and hyps[3] == ""  # 3 lines; line 3 empty


def test_hub_checks_its_arguments(model, synthetic_data, caplog):
    from cgc_fairseq.hub import from_pretrained

    hub = from_pretrained(model, data=synthetic_data, max_len_a=0, max_len_b=5)
    with pytest.raises(ValueError, match="^beam: must be >= 1, got 0$"):  # the words of evaluate.py's --beam
        hub.translate("Ein Mann.", beam=0)
    with pytest.raises(ValueError, match="^lenpen: must be a finite number, got nan$"):
        hub.translate("Ein Mann.", lenpen=float("nan"))
    with pytest.raises(ValueError, match="^beam: must be >= 1, got -1$"):
        from_pretrained(model, data=synthetic_data, beam=-1)
    for bad, words in ((None, "a str or a list of str, got NoneType"), (5, "a str or a list of str, got int"),
                       (["Ein Mann.", 3], "sentence 1 is of type int")):
        with pytest.raises(TypeError, match=words):
            hub.translate(bad)
    with pytest.raises(ValueError, match="sentence 0: a line break inside the sentence"):
        hub.translate("Ein Mann.\nEine Frau.")
    with pytest.raises(ValueError, match="sentence 1: a NUL character"):
        hub.translate(["Ein Mann.", "Ein\0Mann."])
    assert hub.translate([]) == []
    assert hub.translate("\ufeffEin Mann.\r\n") == hub.translate("Ein Mann.")  # a line: its end, a BOM dropped
    with caplog.at_level(logging.WARNING, logger="cgc_fairseq.hub"):
        out = hub.translate(["Ein Mann.", " ".join(["Mann"] * LONG)])
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert "sentence 1: longer than 1024 tokens (the model's maximum, EOS included): truncated" in caplog.text


def test_moses_lc_tokenizer_reads_lines_as_datadir(tmp_path):
    """fairseq-interactive's --tokenizer moses_lc sees the line as datadir.lines defines it (BOM, breaks)."""
    from types import SimpleNamespace

    tok = MosesLowercaseTokenizer(SimpleNamespace(source_lang="de", target_lang="en", moses_lc_manifest="",
                                                  moses_lc_normalize_punct=False))
    assert tok.encode("\ufeffEin Mann\u2028fährt\rRad.") == tok.encode("Ein Mann fährt Rad.")


def test_translate_bad_lines_get_empty_hypotheses(model, synthetic_data):
    """scripts/translate.py (the README's way to translate a file): invalid UTF-8, a NUL, an over-long line -- a
    warning each, an empty hypothesis for the first two, the run goes on; output in fairseq-interactive's format."""
    text = (b"Ein Mann.\n" b"caf\xe9 latin-1\n" b"Der\x00Hund.\n" + " ".join(["Mann"] * LONG).encode() + b"\n"
            + "\ufeffEin Mann.\r\n".encode())
    proc = subprocess.run([sys.executable, "-m", "scripts.translate", synthetic_data, "--path", model,
                           *map(str, ("--buffer-size", 2, *SHORT))], input=text, capture_output=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert "<stdin> line 2: not UTF-8 (byte 0xe9): an empty hypothesis in its place" in err
    assert "<stdin> line 3: a NUL character" in err and "<stdin> line 4: longer than 1024 tokens" in err
    assert "Traceback" not in err
    hyps = dict(line.split("\t", 1) for line in out.splitlines() if line.startswith("D-"))
    assert sorted(hyps) == [f"D-{i}" for i in range(5)]
    assert hyps["D-1"] == hyps["D-2"] == "-inf\t" and hyps["D-3"] != "-inf\t"
    sources = dict(line.split("\t", 1) for line in out.splitlines() if line.startswith("S-"))
    assert sources["S-4"] == sources["S-0"]  # the BOM and the CR are not part of the line


def test_lines_definition():
    assert lines.decode(b"a\r\nb\rc\n\xef\xbb\xbfd\xe2\x80\xa8e\x0cf\n\ng", "x") == ["a", "b c", "d e f", "", "g"]
    with pytest.raises(lines.TextError, match=r"^x line 2: not UTF-8 \(byte 0xff\)$"):
        lines.decode(b"ok\n\xff\n", "x")
    with pytest.raises(lines.TextError, match="^x line 3: a NUL character"):
        lines.decode(b"ok\n\nno\x00\n", "x")
    assert lines.one_line("Hallo\r\n", "s") == "Hallo"


def test_translate_refusals_are_one_line(synthetic_data, tmp_path):
    """An empty, truncated or non-fairseq checkpoint: one error line each (the hub's ValueError)."""
    import torch

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1000)}, other)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(other.read_bytes()[:2000])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for checkpoint in (empty, truncated, other):
        check_error(script("translate", synthetic_data, "--path", checkpoint, input="Ein Mann.\n", check=False),
                    str(checkpoint))


def test_translate_closed_stdin_or_stdout(model, synthetic_data):
    """`<&-` / `>&-`: one error line, before the model is loaded."""
    for redirect, words in (("<&-", "standard input is closed"), (">&-", "standard output is closed")):
        closed = subprocess.run(["bash", "-c", f'exec "$0" -m scripts.translate "$@" {redirect}', sys.executable,
                                 synthetic_data, "--path", model], capture_output=True, text=True, cwd=REPO)
        check_error(closed, words)


def test_translate_input_a_device_and_a_reader_that_stops(model, synthetic_data):
    """--input /dev/stdin is a readable file though not a regular one, its CR line ends line ends; `| head -1` (the
    reader closes the pipe) ends the run quietly, as Unix tools do."""
    # a lone surrogate (not UTF-8) on line 2, old-Mac line ends (CR)
    text = b"Ein Mann.\r" + "\ud800".encode("utf-8", "surrogatepass") + b"\rEin Hund.\r"
    proc = subprocess.run([sys.executable, "-m", "scripts.translate", synthetic_data, "--path", model, "--input",
                           "/dev/stdin", *map(str, SHORT)], input=text, capture_output=True, cwd=REPO)
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert "/dev/stdin line 2: not UTF-8 (byte 0xed): an empty hypothesis in its place" in err
    assert [line.split("\t")[0] for line in proc.stdout.decode().splitlines() if line.startswith("D-")] == \
        ["D-0", "D-1", "D-2"]
    head = subprocess.Popen([sys.executable, "-m", "scripts.translate", synthetic_data, "--path", model,
                             *map(str, SHORT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO)
    head.stdin.write(b"Ein Mann.\n")
    head.stdin.flush()
    assert head.stdout.readline().startswith(b"S-0\t")
    head.stdout.close()  # what `| head -1` does after its line
    head.stdin.write(b"Ein Hund.\n" * 3)
    head.stdin.close()
    err = head.stderr.read().decode()
    assert head.wait(timeout=300) in (0, 141) and "Traceback" not in err and "Exception" not in err, err[-2000:]
