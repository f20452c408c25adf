"""Train a new ALBERT SentencePiece vocabulary from raw text.

Settings follow the released ALBERT vocabulary (google-research/albert README): a unigram model,
`<pad>` = 0, `<unk>` = 1, control symbols `[CLS]` `[SEP]` `[MASK]` (ids 2-4), no BOS/EOS pieces,
the user-defined symbols `( ) " - . – £ €`, character coverage 0.99995, and training text that has
gone through ALBERT's own normalisation first (whitespace collapsed, quotes, accents stripped,
lower-cased), so that the pieces are learnt on exactly what the tokenizer will feed SentencePiece.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from openalbert.tokenizer import AlbertTokenizer, normalize_for_training

ALBERT_USER_SYMBOLS = ("(", ")", '"', "-", ".", "\u2013", "\u00a3", "\u20ac")
CONTROL_SYMBOLS = ("[CLS]", "[SEP]", "[MASK]")
# SentencePiece skips longer lines silently; long paragraphs are cut at a space below this.
MAX_LINE_BYTES = 16384


def check_corpus_file(path: str | Path) -> Path:
    """`path` as a Path, if it is a text file: a directory, a missing file or a binary one is named."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"corpus {path} is a directory; pass the text files in it")
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    with path.open("rb") as f:
        if b"\0" in f.read(8192):  # as grep and git tell binary files: text holds no NUL bytes
            raise ValueError(
                f"corpus {path} looks like a binary file (it holds NUL bytes); a corpus is UTF-8 text"
            )
    return path


def _lines(files: Iterable[str | os.PathLike], do_lower_case: bool, keep_accents: bool) -> Iterable[str]:
    # The tokenizer's own normalisation, exactly as encoding applies it to text between special tokens.
    for path in files:
        # A stray invalid byte costs one replaced character, as in prepare-data.
        with open(check_corpus_file(path), encoding="utf-8", errors="replace") as f:
            for raw in f:
                line = normalize_for_training(raw, do_lower_case, True, keep_accents)
                while len(line.encode("utf-8")) > MAX_LINE_BYTES:
                    cut = line.rfind(" ", 0, MAX_LINE_BYTES // 4)
                    cut = cut if cut > 0 else MAX_LINE_BYTES // 4
                    yield line[:cut]
                    line = line[cut:].lstrip()
                if line:
                    yield line


def train_tokenizer(
    files: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    vocab_size: int = 30000,
    *,
    do_lower_case: bool = True,
    keep_accents: bool = False,
    user_defined_symbols: Sequence[str] = ALBERT_USER_SYMBOLS,
    character_coverage: float = 0.99995,
    input_sentence_size: int = 10_000_000,
    num_threads: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> AlbertTokenizer:
    """Train a unigram SentencePiece vocabulary with ALBERT's settings and save a tokenizer directory.

    `output_dir` receives spiece.model, tokenizer_config.json and special_tokens_map.json (and
    tokenizer.json), which AlbertTokenizer and transformers' AlbertTokenizer both load. A directory that
    already holds a vocabulary (a model trained with it may depend on it) is replaced only with `overwrite`.
    """
    import sentencepiece as spm

    if not files:
        raise FileNotFoundError("training text not found: no files given")
    files = [check_corpus_file(f) for f in files]  # (a directory, a missing or a binary file, named)
    reserved = 2 + len(CONTROL_SYMBOLS) + len(user_defined_symbols)
    if vocab_size <= reserved:
        raise ValueError(f"vocab_size {vocab_size} must exceed the {reserved} reserved pieces")
    if not overwrite and (Path(output_dir) / "spiece.model").exists():
        raise FileExistsError(
            f"{output_dir} already holds a tokenizer (spiece.model); pass overwrite=True (--overwrite) to "
            "replace it, or choose another directory"
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir) as tmp:
        text = Path(tmp) / "normalised.txt"
        n = 0
        with open(text, "w", encoding="utf-8") as out:
            for line in tqdm(
                _lines(files, do_lower_case, keep_accents),
                desc="normalising",
                unit=" lines",
                disable=not progress,
            ):
                out.write(line + "\n")
                n += 1
        if n == 0:
            raise ValueError(f"the training text in {[str(f) for f in files]} is empty")
        prefix = Path(tmp) / "spiece"
        try:
            spm.SentencePieceTrainer.train(
                input=str(text),
                model_prefix=str(prefix),
                model_type="unigram",
                vocab_size=vocab_size,
                pad_id=0,
                pad_piece="<pad>",
                unk_id=1,
                unk_piece="<unk>",
                bos_id=-1,
                eos_id=-1,
                control_symbols=list(CONTROL_SYMBOLS),
                user_defined_symbols=list(user_defined_symbols),
                character_coverage=character_coverage,
                input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True,
                max_sentence_length=MAX_LINE_BYTES,
                num_threads=num_threads or min(os.cpu_count() or 1, 8),
                minloglevel=1 if progress else 2,
            )
        except RuntimeError as e:
            # SentencePiece reports user errors (too large a vocabulary for the text) as RuntimeError.
            raise ValueError(f"SentencePiece training failed: {str(e).strip()}") from None
        model_file = output_dir / "spiece.model"
        os.replace(prefix.with_suffix(".model"), model_file)
    # ALBERT's 512 positions as the limit, as the released ALBERT tokenizers declare it
    tokenizer = AlbertTokenizer(
        model_file, do_lower_case=do_lower_case, keep_accents=keep_accents, model_max_length=512
    )
    tokenizer.save_pretrained(output_dir)
    return tokenizer
