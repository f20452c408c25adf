"""Vocabulary training: ALBERT's SentencePiece settings, and a result that transformers 4.57.1 loads and agrees with."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import sentencepiece as spm

from openalbert.cli import main
from openalbert.tokenizer import AlbertTokenizer
from openalbert.vocab import ALBERT_USER_SYMBOLS, train_tokenizer
from test_tokenizer import adversarial_texts, real_texts

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def training_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About half a megabyte of real English (standard-library docstrings) and some non-ASCII lines."""
    docs, unicode_texts = real_texts()
    path = tmp_path_factory.mktemp("text") / "train.txt"
    path.write_text(
        "\n".join(docs[:2000] + unicode_texts[:300]) + "\nCAFÉ Crème ``Quoted''\n", encoding="utf-8"
    )
    return path


@pytest.fixture(scope="module")
def trained(training_text: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[AlbertTokenizer, Path]:
    out = tmp_path_factory.mktemp("vocab")
    return train_tokenizer([training_text], out, vocab_size=1000, progress=False), out


def test_albert_settings(trained: tuple[AlbertTokenizer, Path]) -> None:
    tok, out = trained
    assert {p.name for p in out.iterdir()} >= {
        "spiece.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    sp = spm.SentencePieceProcessor(model_file=str(out / "spiece.model"))
    assert sp.get_piece_size() == tok.vocab_size == 1000
    head = [sp.id_to_piece(i) for i in range(5 + len(ALBERT_USER_SYMBOLS))]
    assert head == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", *ALBERT_USER_SYMBOLS]
    assert [sp.is_control(i) for i in (0, 2, 3, 4)] == [True] * 4 and sp.is_unknown(1)
    assert (sp.bos_id(), sp.eos_id(), sp.pad_id(), sp.unk_id()) == (-1, -1, 0, 1)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )


def test_pieces_are_learnt_on_normalised_text(trained: tuple[AlbertTokenizer, Path]) -> None:
    # The text had capitals, accents and `` '' quotes; none may survive into the pieces.
    tok, _ = trained
    pieces = [tok.convert_ids_to_tokens(i) for i in range(13, tok.vocab_size)]
    assert not [p for p in pieces if p != p.lower()]
    assert not [p for p in pieces if any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", p))]
    assert "``" not in "".join(pieces) and "''" not in "".join(pieces)


@pytest.mark.filterwarnings("ignore:a sequence of")
def test_transformers_loads_it_and_agrees(trained: tuple[AlbertTokenizer, Path]) -> None:
    tok, out = trained
    docs, unicode_texts = real_texts()
    texts = (
        docs[2000:2300] + unicode_texts[300:500] + adversarial_texts(300, ["word", "Text", "NUMBERS"], seed=7)
    )
    slow = transformers.AutoTokenizer.from_pretrained(str(out), use_fast=False)
    assert type(slow).__name__ == "AlbertTokenizer" and slow.vocab_size == 1000
    assert tok(texts, return_special_tokens_mask=True) == slow(texts, return_special_tokens_mask=True).data
    ids = tok(texts)["input_ids"]
    assert [tok.decode(i) for i in ids[:200]] == [slow.decode(i) for i in ids[:200]]
    fast = transformers.AutoTokenizer.from_pretrained(str(out))
    assert type(fast).__name__ == "AlbertTokenizerFast"
    converted = transformers.AlbertTokenizerFast(vocab_file=str(out / "spiece.model"))
    assert fast(texts)["input_ids"] == converted(texts)["input_ids"]
    assert (
        AlbertTokenizer.from_pretrained(out)(texts, truncation=True)["input_ids"]
        == tok(texts, truncation=True)["input_ids"]
    )


def test_cli(training_text: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-vocab"
    assert (
        main(["train-tokenizer", "--input", str(training_text), "--output", str(out), "--vocab-size", "1200"])
        == 0
    )
    assert AlbertTokenizer.from_pretrained(out).vocab_size == 1200
    assert main(["train-tokenizer", "--input", str(tmp_path / "missing.txt"), "--output", str(out)]) == 2
    assert "missing.txt" in capsys.readouterr().err
    too_big = [
        "train-tokenizer",
        "--input",
        str(training_text),
        "--output",
        str(out),
        "--vocab-size",
        "200000",
    ]
    # a directory that holds a tokenizer is refused (its vocabulary was silently replaced), unless told
    assert main(too_big) == 2
    assert "already holds a tokenizer" in capsys.readouterr().err
    assert main([*too_big, "--overwrite"]) == 2
    assert "Vocabulary size too high" in capsys.readouterr().err
    tok = AlbertTokenizer.from_pretrained(out)
    tok.add_tokens(["NewWord"])
    tok.save_pretrained(out)
    assert (out / "added_tokens.json").is_file()
    replace = ["train-tokenizer", "--input", str(training_text), "--output", str(out), "--vocab-size", "1100"]
    assert main([*replace, "--overwrite"]) == 0
    # the earlier tokenizer's added tokens are gone with it (they made the directory unreadable)
    assert not (out / "added_tokens.json").exists() and len(AlbertTokenizer.from_pretrained(out)) == 1100


def test_errors(training_text: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_tokenizer([tmp_path / "nope.txt"], tmp_path / "out")
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer([training_text], tmp_path / "out", vocab_size=10)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer([empty], tmp_path / "out", vocab_size=100, progress=False)
    # a directory is named as such, as pretrain names it (before: "training text not found: ['dir']")
    with pytest.raises(ValueError, match="is a directory; pass the text files in it"):
        train_tokenizer([tmp_path], tmp_path / "out", vocab_size=100, progress=False)
