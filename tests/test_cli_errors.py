"""The command line's errors a user causes: one line each, naming the path or option and what to do,
exit status 2 (from the QA pass of session 25; before, Python's [Errno n] messages or a wrong hint)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from openalbert.cli import main

MODEL = "openalbert/albert-small-en"  # the embedded model: no download, a tokenizer beside it


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"openalbert {argv[0]}: error: ") and "Errno" not in err
    return err


def test_paths_of_the_wrong_kind_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "corpus.txt"
    a_file.write_text("Some text.\n")
    (tmp_path / "empty").mkdir()
    assert "empty holds no config.json: it is not a model directory" in error_of(
        ["info", str(tmp_path / "empty")], capsys
    )
    assert "corpus.txt is a file; a directory was expected" in error_of(
        ["export", "onnx", MODEL, "--output", str(a_file)], capsys
    )
    assert "corpus.txt is a file; a directory was expected" in error_of(
        ["train-tokenizer", "--input", str(a_file), "--output", str(a_file), "--vocab-size", "50"], capsys
    )
    finetune = ["finetune", "text-classification", "--model", MODEL, "--output", str(tmp_path / "out")]
    assert "max_length must be in [8," in error_of(
        [*finetune, "--train", str(a_file), "--validation", str(a_file), "--max-length", "0"], capsys
    )  # (0 was read as "the default")
    pretrain = ["pretrain", "--output", str(tmp_path / "run"), "--max-steps", "1"]
    from openalbert.pretraining.run import resolve_config

    # (it was "model 'missing.json' was not found locally or on the hub")
    with pytest.raises(FileNotFoundError, match="config file missing.json does not exist"):
        resolve_config("missing.json", None, None, None, None)
    assert "is a file, not prepared examples: pass raw text as --corpus" in error_of(
        [*pretrain, "--data", str(a_file)], capsys
    )


def test_a_data_file_that_is_not_utf8_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_bytes(b"\xffword\tO\n")
    argv = ["finetune", "token-classification", "--model", MODEL, "--output", str(tmp_path / "out"),
            "--train", str(bad), "--validation", str(bad)]  # fmt: skip
    assert "bad.conll is not UTF-8 text (byte 0xff cannot be read)" in error_of(argv, capsys)


def test_a_directory_given_as_training_data_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "data.csv"
    good.write_text("text,label\ngood,pos\nbad,neg\n")
    argv = ["finetune", "text-classification", "--model", MODEL, "--output", str(tmp_path / "out"),
            "--train", str(tmp_path), "--validation", str(good)]  # fmt: skip
    assert "is a directory; pass the file in it" in error_of(argv, capsys)


def test_warnings_print_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from openalbert import cli

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        line = cli._one_line_warning(UserWarning("an answer fits in no window"), UserWarning, "x.py", 3)
    assert line == "openalbert: warning: an answer fits in no window\n"
