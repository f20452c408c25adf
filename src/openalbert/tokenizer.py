"""ALBERT's tokenizer: the original text normalisation + SentencePiece, batched, with character offsets.

Reproduces google-research/albert `tokenization.py` with a SentencePiece model, which is also what
transformers 4.57.1's slow `AlbertTokenizer` computes: special tokens written in the text are split out,
the rest is lower-cased, whitespace-collapsed, `` and '' become ", accents are stripped (NFKD, combining
marks dropped), SentencePiece encodes it, and a piece such as "▁9," is re-split into "▁9" ",".
Sequences are built as `[CLS] A [SEP] B [SEP]` with token_type_ids 0/1.

Speed comes from doing the normalisation with whole-string str methods and handing the whole batch to
SentencePiece's threaded batch encoder; offsets are tracked only when asked for. Offsets follow the
conventions of transformers' fast tokenizer (a piece that starts with "▁" covers the space before it,
a literal `[MASK]` covers the whitespace it swallows), so code written against one works with the other.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import inspect
import json
import os
import re
import struct
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import sentencepiece as spm

from openalbert.config import refuse_upload

SPIECE_UNDERLINE = "\u2581"
VOCAB_NAME = "spiece.model"
# transformers' "no limit" for model_max_length (what a tokenizer made from a vocabulary file has), and the
# size above which a limit counts as none.
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_NAME = "special_tokens_map.json"
TOKENIZER_JSON_NAME = "tokenizer.json"
ADDED_TOKENS_NAME = "added_tokens.json"  # the tokens add_tokens() made, for transformers' slow tokenizers
TOKENIZER_FILES = [
    VOCAB_NAME,
    TOKENIZER_CONFIG_NAME,
    SPECIAL_TOKENS_MAP_NAME,
    TOKENIZER_JSON_NAME,
    ADDED_TOKENS_NAME,
]
# The special tokens a tokenizer names (add_special_tokens sets them; additional_special_tokens lists the rest).
_NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Whitespace as Rust's regex `\s` (Unicode White_Space) sees it: transformers' fast tokenizer extends the
# span of an lstrip token such as [MASK] over these. Python's str.isspace also counts \x1c-\x1f.
_WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_NON_SPACE_RUN = re.compile(r"\S+")  # \S follows str.isspace, exactly what str.split() splits on
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_TRUNCATIONS = ("longest_first", "only_first", "only_second")


@lru_cache(maxsize=1)
def _combining_marks() -> re.Pattern[str]:
    """A character class of every code point with a non-zero canonical combining class."""
    marks = [c for c in range(sys.maxunicode + 1) if unicodedata.combining(chr(c))]
    ranges, start, prev = [], marks[0], marks[0]
    for c in marks[1:] + [-1]:
        if c != prev + 1:
            ranges.append(re.escape(chr(start)) + ("-" + re.escape(chr(prev)) if prev > start else ""))
            start = c
        prev = c
    return re.compile("[" + "".join(ranges) + "]")


@lru_cache(maxsize=1)
def _python_whitespace() -> str:
    """Every character str.split() splits on."""
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


@lru_cache(maxsize=1)
def _whitespace_table() -> np.ndarray:
    """A boolean lookup table: is code point i whitespace to str.split()."""
    chars = _python_whitespace()
    table = np.zeros(max(map(ord, chars)) + 1, dtype=bool)
    table[[ord(c) for c in chars]] = True
    return table


@lru_cache(maxsize=65536)
def _strip_accents_char(c: str) -> str:
    return "".join(d for d in unicodedata.normalize("NFKD", c) if not unicodedata.combining(d))


def _lower_each(text: str) -> str:
    # transformers lower-cases the text outside special tokens one character at a time, so a final
    # capital sigma becomes "σ", never the context-dependent "ς" that str.lower() gives for a whole word.
    if text.isascii():
        return text.lower()
    return text.replace("\u03a3", "\u03c3").lower()


def preprocess_text(
    text: str, do_lower_case: bool = True, remove_space: bool = True, keep_accents: bool = False
) -> str:
    """ALBERT's text normalisation before SentencePiece: collapse whitespace, `` and '' to ", strip accents, lower."""
    if remove_space:
        text = " ".join(text.split())
    text = text.replace("``", '"').replace("''", '"')
    if not keep_accents and not text.isascii():
        text = _combining_marks().sub("", unicodedata.normalize("NFKD", text))
    if do_lower_case:
        text = text.lower()
    return text


def normalize_for_training(
    text: str, do_lower_case: bool = True, remove_space: bool = True, keep_accents: bool = False
) -> str:
    """A line of training text as the encoder will see it (lower-cased per character first, as at encode time)."""
    return preprocess_text(
        _lower_each(text) if do_lower_case else text, do_lower_case, remove_space, keep_accents
    )


@dataclass(frozen=True)
class SpecialToken:
    """A token matched in the text before SentencePiece runs (a special token, or one added by `add_tokens`):
    its text, id, and whether it swallows whitespace on its left/right when matched."""

    content: str
    id: int
    lstrip: bool = False
    rstrip: bool = False
    # False for a token added by add_tokens(special_tokens=False): never skipped in decoding
    special: bool = True
    # matched only between spaces (or the text's ends), as transformers' AddedToken(single_word=True)
    single_word: bool = False
    # transformers' AddedToken.normalized; None: what it defaults to (not special)
    normalized: bool | None = None

    @property
    def is_normalized(self) -> bool:
        return not self.special if self.normalized is None else self.normalized

    @property
    def pattern(self) -> str:
        """The regular expression that finds the token in a text."""
        escaped = re.escape(self.content)
        return f"(?<![^ ]){escaped}(?![^ ])" if self.single_word else escaped


class CharSpan(NamedTuple):
    """Characters [start, end) of the original text (as transformers' CharSpan)."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """Tokens [start, end) of an encoded row (as transformers' TokenSpan)."""

    start: int
    end: int


@dataclass(frozen=True)
class _Row:
    """One output row: the input it comes from and the token ranges [lo, hi) of its first and second text."""

    sample: int
    a: tuple[int, int]
    b: tuple[int, int] | None = None


class _Layout:
    """How the rows of a BatchEncoding were cut from its inputs, with what their word ids and character
    offsets are worked out from on first use (offsets cost a second pass over the text).

    A pickled layout leaves its tokenizer behind: what was not worked out before is then unavailable.
    """

    def __init__(
        self,
        tokenizer: AlbertTokenizer,
        texts: list[list[Any]],
        ids: list[list[list[int]]],
        offsets: list[list[list[tuple[int, int]]]] | None,
        words: list[list[list[int]]] | None,
        rows: list[_Row],
        specials: bool,
        left_padded: bool,
    ) -> None:
        self.tokenizer: AlbertTokenizer | None = tokenizer
        self.texts, self.ids = texts, ids  # [sequence][sample]: sequence 0 the texts, 1 the text pairs
        self._offsets, self._words = offsets, words
        self.split_words = words is not None
        self.rows, self.specials, self.left_padded = rows, specials, left_padded

    def __getstate__(self) -> dict[str, Any]:
        if self._offsets is not None and self.tokenizer is not None:
            self._all_words()  # cheap once the offsets are known
        return self.__dict__ | {"tokenizer": None}

    def _needs_tokenizer(self, what: str) -> AlbertTokenizer:
        if self.tokenizer is None:
            raise ValueError(
                f"this encoding was pickled before its {what} were worked out; call the method before "
                "pickling, or encode with return_offsets_mapping=True"
            )
        return self.tokenizer

    def _all_offsets(self) -> list[list[list[tuple[int, int]]]]:
        if self._offsets is None:
            tokenizer = self._needs_tokenizer("character offsets")
            self._offsets = [tokenizer._encode_batch(t, self.split_words, True)[1] for t in self.texts]  # type: ignore[misc]
        return self._offsets  # type: ignore[return-value]

    def _all_words(self) -> list[list[list[int]]]:
        if self._words is None:
            tokenizer = self._needs_tokenizer("word ids")
            self._words = [
                [tokenizer._word_ids(t, i, o) for t, i, o in zip(texts, ids, offsets)]
                for texts, ids, offsets in zip(self.texts, self.ids, self._all_offsets())
            ]
        return self._words

    def offsets(self, sequence: int, sample: int) -> list[tuple[int, int]]:
        """Character spans of every token of one input text (in its word, for split words)."""
        return self._all_offsets()[sequence][sample]

    def words(self, sequence: int, sample: int) -> list[int]:
        """Word index of every token of one input text."""
        return self._all_words()[sequence][sample]


class BatchEncoding(dict):
    """The tokenizer's output: a dict of model inputs that also allows attribute access and `.to(device)`.

    Like transformers' fast tokenizers' encodings it maps tokens to their text, words and characters
    (`sequence_ids`, `word_ids`, `tokens`, `token_to_chars`, `char_to_token`, `word_to_tokens` ...), one
    row at a time, also for the windows of `return_overflowing_tokens`.
    """

    def __init__(self, data: dict[str, Any], layout: _Layout | None = None):
        super().__init__(data)
        self._layout = layout

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def encodings(self) -> None:
        """None, as a slow tokenizer's: there are no `tokenizers` Encodings (word_ids() and the other
        methods work from the layout instead)."""
        return None

    def __getstate__(self) -> dict[str, Any]:
        return {"data": dict(self), "layout": self._layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.update(state["data"])
        self._layout = state["layout"]

    @property
    def data(self) -> dict[str, Any]:
        return dict(self)

    @property
    def is_fast(self) -> bool:
        """False, as the tokenizer's `is_fast` (its token-to-text mappings are here all the same)."""
        return False

    def convert_to_tensors(
        self, tensor_type: str | None = None, prepend_batch_axis: bool = False
    ) -> BatchEncoding:
        """Make the rows 'pt', 'np', 'tf' or 'jax' arrays in place (None leaves them); returns self."""
        if tensor_type is not None:
            kind = getattr(tensor_type, "value", tensor_type)  # transformers' TensorType enum too
            self.update(_to_tensors(dict(self), kind, prepend_batch_axis))
        return self

    @property
    def n_sequences(self) -> int | None:
        """2 for an encoding of text pairs, 1 for single texts, None when unknown (not made by __call__)."""
        if self._layout is None:
            return None
        return len(self._layout.texts)

    def to(self, device: Any) -> BatchEncoding:
        """Move every tensor to `device` (torch tensors only); returns self."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self

    def _layout_or_raise(self) -> _Layout:
        if self._layout is None:
            raise ValueError(
                "token-to-text mappings exist only on the output of AlbertTokenizer.__call__ (not pad() or a dict)"
            )
        return self._layout

    def _width(self, batch_index: int, content: int) -> int:
        input_ids = self.get("input_ids")
        if input_ids is None:
            return content
        if hasattr(input_ids, "shape"):  # a tensor always has a batch axis
            return int(input_ids.shape[-1])
        return len(input_ids[batch_index] if input_ids and isinstance(input_ids[0], list) else input_ids)

    def _spread(self, batch_index: int, first: Callable[[int], Sequence[Any]]) -> list[Any]:
        """Per token of a row: first(sequence)'s values over the tokens of that text, None elsewhere."""
        layout = self._layout_or_raise()
        row = layout.rows[batch_index]
        edge = [None] if layout.specials else []
        out = edge + list(first(0)[row.a[0] : row.a[1]]) + edge
        if row.b is not None:
            out += list(first(1)[row.b[0] : row.b[1]]) + edge
        padding = [None] * (self._width(batch_index, len(out)) - len(out))
        return padding + out if layout.left_padded else out + padding

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per token: 0 for the first text, 1 for the second, None for special and padding tokens."""
        layout = self._layout_or_raise()
        sample = layout.rows[batch_index].sample
        return self._spread(batch_index, lambda seq: [seq] * len(layout.ids[seq][sample]))

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per token: the index of its word in its text (None for special and padding tokens).

        Words are the fast tokenizer's: the given words with is_split_into_words=True; otherwise runs
        split at whitespace, with special, added and symbol tokens (such as "(" or ".") words of their own.
        """
        layout = self._layout_or_raise()
        sample = layout.rows[batch_index].sample
        return self._spread(batch_index, lambda seq: layout.words(seq, sample))

    def _offsets(self, batch_index: int) -> list[tuple[int, int] | None]:
        layout = self._layout_or_raise()
        sample = layout.rows[batch_index].sample
        return self._spread(batch_index, lambda seq: layout.offsets(seq, sample))

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The pieces of a row, special and padding tokens included."""
        layout = self._layout_or_raise()
        ids = self["input_ids"]
        row = ids[batch_index] if hasattr(ids, "shape") or (ids and isinstance(ids[0], list)) else ids
        return layout._needs_tokenizer("tokens").convert_ids_to_tokens(_id_list(row))  # type: ignore[return-value]

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """Which text (0 or 1) a token comes from; None for special and padding tokens."""
        batch_index, token_index = _batch_and_index(batch_or_token_index, token_index)
        return self.sequence_ids(batch_index)[token_index]

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """The word a token belongs to; None for special and padding tokens."""
        batch_index, token_index = _batch_and_index(batch_or_token_index, token_index)
        return self.word_ids(batch_index)[token_index]

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        """The characters of its text a token covers; None for special and padding tokens."""
        batch_index, token_index = _batch_and_index(batch_or_token_index, token_index)
        span = self._offsets(batch_index)[token_index]
        return CharSpan(*span) if span is not None else None

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """The first token of a row whose span holds character `char_index` of text `sequence_index`."""
        batch_index, char_index = _batch_and_index(batch_or_char_index, char_index)
        sequences = self.sequence_ids(batch_index)
        for k, span in enumerate(self._offsets(batch_index)):
            if span is not None and sequences[k] == sequence_index and span[0] <= char_index < span[1]:
                return k
        return None

    def char_to_word(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """The word holding character `char_index` of text `sequence_index`, if a token of the row covers it."""
        batch_index, char_index = _batch_and_index(batch_or_char_index, char_index)
        token = self.char_to_token(batch_index, char_index, sequence_index)
        return None if token is None else self.word_ids(batch_index)[token]

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> TokenSpan | None:
        """The tokens of a row that make up word `word_index` of text `sequence_index`; None if it has none."""
        batch_index, word_index = _batch_and_index(batch_or_word_index, word_index)
        sequences = self.sequence_ids(batch_index)
        hits = [
            k
            for k, word in enumerate(self.word_ids(batch_index))
            if word == word_index and sequences[k] == sequence_index
        ]
        return TokenSpan(hits[0], hits[-1] + 1) if hits else None

    def word_to_chars(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> CharSpan | None:
        """The characters a word's tokens in this row cover; None if the row holds none of it."""
        batch_index, word_index = _batch_and_index(batch_or_word_index, word_index)
        tokens = self.word_to_tokens(batch_index, word_index, sequence_index)
        if tokens is None:
            return None
        offsets = self._offsets(batch_index)
        return CharSpan(offsets[tokens.start][0], offsets[tokens.end - 1][1])  # type: ignore[index]


def _batch_and_index(batch_or_index: int, index: int | None) -> tuple[int, int]:
    """transformers' convention: f(i) means row 0, index i; f(b, i) row b, index i."""
    return (0, batch_or_index) if index is None else (batch_or_index, index)


class AlbertTokenizer:
    """ALBERT's SentencePiece tokenizer with the transformers call surface (`tok(texts, padding=True, ...)`).

    `is_fast` is False (this is not a `tokenizers` library tokenizer), yet what code written for the fast
    tokenizer asks for is here: offsets, windows with a stride (return_overflowing_tokens), lists of
    words (is_split_into_words) and the word ids and spans of `BatchEncoding`.
    """

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    is_fast = False

    def __init__(
        self,
        vocab_file: str | os.PathLike | bytes,
        do_lower_case: bool = True,
        remove_space: bool = True,
        keep_accents: bool = False,
        model_max_length: int = VERY_LARGE_INTEGER,
        unk_token: str | Any = "<unk>",
        sep_token: str | Any = "[SEP]",
        pad_token: str | Any = "<pad>",
        cls_token: str | Any = "[CLS]",
        mask_token: str | Any = "[MASK]",
        bos_token: str | Any = "[CLS]",
        eos_token: str | Any = "[SEP]",
        mask_lstrip: bool = True,
        clean_up_tokenization_spaces: bool = False,
        num_threads: int | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        sp_model_kwargs: dict[str, Any] | None = None,
        split_special_tokens: bool = False,
        additional_special_tokens: Sequence[str | Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """The named special tokens may be transformers AddedTokens (their lstrip/rstrip... kept) and may be
        new to the vocabulary: they then get the ids after it, in transformers' order (bos, eos, unk, sep,
        pad, cls, mask, then `additional_special_tokens`). Other keyword arguments that transformers'
        tokenizer takes are kept in `init_kwargs` and change nothing."""
        self.init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        self.init_kwargs |= kwargs
        # SentencePiece's encoding options, e.g. {"enable_sampling": True, "alpha": 0.1, "nbest_size": -1} for
        # subword regularisation in training, as transformers takes them
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        # transformers' option: special and added tokens written in a text are read as text, not matched
        self.split_special_tokens = bool(split_special_tokens)
        if isinstance(vocab_file, bytes):  # a serialised model, e.g. rebuilt from tokenizer.json
            path, self.vocab_file = Path("<model proto>"), None
            self._sp = _load_sentencepiece(vocab_file, "the given model proto", self.sp_model_kwargs)
        else:
            path = Path(vocab_file)
            if not path.is_file():
                raise FileNotFoundError(f"SentencePiece model {path} does not exist")
            self.vocab_file = path
            self._sp = _load_sentencepiece(path.read_bytes(), str(path), self.sp_model_kwargs)
        self.name_or_path = ""  # from_pretrained's argument, as transformers keeps it
        if kwargs.get("model_input_names") is not None:  # what a call returns unless it says
            self.model_input_names = list(kwargs["model_input_names"])
        self.do_lower_case = do_lower_case
        self.remove_space = remove_space
        self.keep_accents = keep_accents
        self.model_max_length = model_max_length
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.padding_side = _side(padding_side, "padding_side")
        self.truncation_side = _side(truncation_side, "truncation_side")
        self._warned_long = False
        self.num_threads = num_threads if num_threads is not None else min(os.cpu_count() or 1, 8)
        given = {name: self.init_kwargs[name] for name in _NAMED_SPECIALS}
        for name, value in given.items():
            setattr(self, name, _special_content(name, value))

        n = self._sp.get_piece_size()
        self._pieces = [self._sp.id_to_piece(i) for i in range(n)]
        self._piece_ids = {p: i for i, p in enumerate(self._pieces)}
        self._specials: dict[str, SpecialToken] = {}
        self._added: dict[int, SpecialToken] = {}  # add_tokens(): new ids past the SentencePiece model's, and
        self._added_ids: dict[str, int] = {}  # pieces registered as unsplittable, by content
        # Special tokens beyond the named ones, as transformers lists them (add_special_tokens, add_tokens).
        self._additional: list[str] = []
        for name in _NAMED_SPECIALS:
            content, value = getattr(self, name), given[name]
            if content in self._specials:
                continue
            settings = {"lstrip": mask_lstrip and name == "mask_token"} | _token_settings(value)
            if content in self._piece_ids:
                self._specials[content] = SpecialToken(content, self._piece_ids[content], **settings)
            else:  # new to the vocabulary, as transformers adds it
                self._register(SpecialToken(content, len(self), **settings))
        self.additional_special_tokens = list(additional_special_tokens or [])  # (indexes the specials)
        # What SentencePiece's normaliser does to a character (see _char_kind), cached.
        self._kinds: dict[str, int] = {c: 0 for c in map(chr, range(0x21, 0x7F))} | {" ": 1}
        self._kind_table = _KindTable(self._char_kind)
        # Whitespace (to str.split) that SentencePiece does not turn into a space: the offsets need care there.
        odd = [c for c in _python_whitespace() if self._char_kind(c) != 1]
        self._odd_space = re.compile("[" + "".join(map(re.escape, odd)) + "]" if odd else "(?!)")
        # Ids of pieces like "▁9," that the digit-comma rule re-splits; a text without them needs no pieces.
        self._comma_ids = frozenset(
            i for i, p in enumerate(self._pieces) if len(p) > 1 and p[-1] == "," and p[-2].isdigit()
        )
        try:  # newer SentencePiece releases return character offsets directly
            self._sp.encode(["a"], out_type="offset_mapping")
            self._has_offset_mapping = True
        except (ValueError, TypeError, AttributeError):
            self._has_offset_mapping = False

    @property
    def sp_model(self) -> spm.SentencePieceProcessor:
        """The SentencePiece processor, as transformers' slow tokenizer names it."""
        return self._sp

    def _index_specials(self) -> None:
        specials = self._specials
        # What decoding skips: the named special tokens and the additional ones (transformers' all_special_ids).
        self._special_by_id = {specials[c].id: specials[c] for c in self.all_special_tokens if c in specials}
        self._special_ids = frozenset(self._special_by_id)
        # Added tokens that decoding sets apart, space-separated from the text around them, as transformers
        # decodes them: not the named special tokens, nor additional ones from the vocabulary.
        additional = set(self.additional_special_tokens)
        self._apart_ids = frozenset(
            i
            for i, t in self._added.items()
            if i not in self._special_ids or (t.content in additional and i >= len(self._pieces))
        )
        # Longest first, so that the leftmost match is also the longest (as transformers' trie does).
        if self.split_special_tokens:  # nothing is matched whole: every text goes to SentencePiece as it is
            self._special_re, self._special_starts = re.compile("((?!))"), frozenset()
        else:
            alternatives = sorted(specials, key=len, reverse=True)
            self._special_re = re.compile("(" + "|".join(specials[s].pattern for s in alternatives) + ")")
            self._special_starts = frozenset(s[0] for s in specials)

    def add_tokens(self, new_tokens: str | Sequence[str], special_tokens: bool = False) -> int:
        """Add tokens that are matched whole in the text before SentencePiece runs, as transformers' (slow)
        AlbertTokenizer adds them: ordinary ones lower-cased (with do_lower_case), new ones given the ids
        after the vocabulary (`len(tokenizer)` grows; resize the model's embeddings to match), a piece already
        in the vocabulary kept at its id but no longer split. Returns how many new ids were made."""
        made = 0
        for token in [new_tokens] if isinstance(new_tokens, str) else new_tokens:
            content = getattr(token, "content", token)  # a transformers AddedToken, too, with its settings
            if not isinstance(content, str):
                raise TypeError(f"a token to add must be a str, got {type(content).__name__}")
            if not content or content in self._specials:  # (as given: "[CLS]" is not added again as "[cls]")
                continue
            special = special_tokens or bool(getattr(token, "special", False))
            if not special and getattr(token, "normalized", True) and self.do_lower_case:
                content = content.lower()
                if content in self._specials:
                    continue
            made += self._add_content(content, special, token)
            if special and content not in self.additional_special_tokens:
                self._additional.append(content)
        self._index_specials()
        return made

    def add_special_tokens(
        self, special_tokens_dict: dict[str, Any], replace_additional_special_tokens: bool = True
    ) -> int:
        """transformers' `add_special_tokens`: set named special tokens (`"pad_token": "<pad2>"`...) and
        `additional_special_tokens` (a list, replacing the current one unless told otherwise); tokens new to
        the vocabulary get the next ids, as with `add_tokens`. Returns how many new ids were made."""
        made = 0
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                values = [value] if isinstance(value, str) else list(value)
                contents = [getattr(v, "content", v) for v in values]
                before = [] if replace_additional_special_tokens else list(self.additional_special_tokens)
                made += self.add_tokens(contents, special_tokens=True)
                self.additional_special_tokens = before + [c for c in contents if c not in before]
            elif key in _NAMED_SPECIALS:
                content = _special_content(key, value)
                if content not in self._specials:
                    made += self._add_content(content, special=True)
                setattr(self, key, content)
            else:
                raise ValueError(
                    f"{key!r} is not a special token name; use one of {', '.join(_NAMED_SPECIALS)} "
                    "or additional_special_tokens"
                )
        self._index_specials()
        return made

    def _add_content(self, content: str, special: bool, given: Any = None) -> int:
        """Match `content` whole: at its piece's id, or at the next free id; 1 when an id was made. `given`:
        a transformers AddedToken whose lstrip, rstrip, single_word and normalized settings it takes."""
        token_id = self._piece_ids.get(content)
        self._register(
            SpecialToken(
                content,
                len(self) if token_id is None else token_id,
                special=special,
                **_token_settings(given),
            )
        )
        return int(token_id is None)

    def _register(self, token: SpecialToken) -> None:
        self._specials[token.content] = self._added[token.id] = token
        self._added_ids[token.content] = token.id

    def _load_added(self, directory: Path) -> None:
        """The tokens added to a saved tokenizer: tokenizer_config.json's added_tokens_decoder (or the older
        added_tokens.json), at their saved ids."""
        entries: dict[int, tuple[str, bool]] = {}
        settings: dict[int, dict[str, Any]] = {}
        config, legacy = directory / TOKENIZER_CONFIG_NAME, directory / ADDED_TOKENS_NAME
        if config.is_file():
            decoder = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
            entries = {int(i): (e["content"], bool(e.get("special", False))) for i, e in decoder.items()}
            settings = {int(i): _token_settings(e) for i, e in decoder.items()}
        if legacy.is_file() and not any(i >= len(self._pieces) for i in entries):
            try:
                added = json.loads(legacy.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{legacy} is not valid JSON ({e})") from None
            entries |= {int(i): (content, content in self.all_special_tokens) for content, i in added.items()}
        entries = {  # not [CLS], [MASK]...: the model's own
            i: e for i, e in entries.items() if not (e[0] in self._specials and self._specials[e[0]].id == i)
        }
        known = any(i < len(self._pieces) for i in entries)
        types = _piece_types(self._sp.serialized_model_proto()) if known else []
        for token_id, (content, special) in sorted(entries.items()):
            if token_id < len(types) and types[token_id] in (_CONTROL, _USER_DEFINED):
                continue  # a symbol of the SentencePiece model (transformers' fast tokenizer lists them)
            if token_id >= len(self._pieces) and token_id != len(self):
                raise ValueError(
                    f"{directory}: added token {content!r} has id {token_id}, but the next free id is {len(self)}"
                )
            self._register(SpecialToken(content, token_id, special=special, **settings.get(token_id, {})))
        self._index_specials()

    # ---- construction and saving ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> AlbertTokenizer:
        """Load from a directory (or hub id) holding spiece.model and optionally tokenizer_config.json.

        Without spiece.model, the SentencePiece model is rebuilt from a tokenizer.json that transformers
        converted from one. Keyword arguments override the settings read from the directory, except
        transformers' hub options (`revision`, `cache_dir`, `subfolder`...: `checkpoint.HUB_OPTIONS`). A path
        to a `.model` file is accepted too.
        """
        from openalbert.checkpoint import hub_options, resolve_path

        hub = hub_options(kwargs)
        path = Path(pretrained_model_name_or_path).expanduser()
        if path.is_file():
            tokenizer = cls(path, **kwargs)
            tokenizer.name_or_path = str(pretrained_model_name_or_path)
            return tokenizer
        path = resolve_path(pretrained_model_name_or_path, filenames=TOKENIZER_FILES, **hub)
        vocab: Path | bytes = path / VOCAB_NAME
        settings = _read_settings(path)
        if not vocab.is_file():  # type: ignore[union-attr]
            if not (path / TOKENIZER_JSON_NAME).is_file():
                raise FileNotFoundError(
                    f"{path} holds neither {VOCAB_NAME} nor {TOKENIZER_JSON_NAME}: a tokenizer directory needs one"
                )
            vocab, inferred = _model_from_tokenizer_json(path / TOKENIZER_JSON_NAME)
            settings = inferred | settings
        settings.update(kwargs)
        additional = settings.pop("additional_special_tokens", None)
        # A named token that add_special_tokens made (not a SentencePiece piece) exists only once the added
        # tokens are read: the defaults stand in for it until then.
        defaults = inspect.signature(cls).parameters
        custom = [k for k in _NAMED_SPECIALS if settings.get(k, defaults[k].default) != defaults[k].default]
        if custom:
            proto = vocab if isinstance(vocab, bytes) else vocab.read_bytes()
            sp = _load_sentencepiece(proto, str(path))
            unk = sp.id_to_piece(sp.unk_id())
            custom = [k for k in custom if settings[k] != unk and sp.piece_to_id(settings[k]) == sp.unk_id()]
        later = {k: settings.pop(k) for k in custom}
        tokenizer = cls(vocab, **settings)
        tokenizer.name_or_path = str(pretrained_model_name_or_path)
        tokenizer._load_added(path)
        if later or additional is not None:
            # (one named by the directory must be among its added tokens; one given here may be new, and is added)
            named = {k: v for k, v in later.items() if v not in tokenizer._specials and k not in kwargs}
            if named:
                raise ValueError(f"{path}: special tokens {named} are neither pieces nor added tokens")
            tokenizer.add_special_tokens(
                later | ({} if additional is None else {"additional_special_tokens": additional})
            )
        return tokenizer

    push_to_hub = refuse_upload

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        write_tokenizer_json: bool = True,
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
        push_to_hub: bool = False,
    ) -> list[Path]:
        """Write spiece.model, tokenizer_config.json, special_tokens_map.json (and tokenizer.json). As
        transformers takes them: `legacy_format=True` writes no tokenizer.json, `filename_prefix` is refused
        (the files must keep their names to be read), and `push_to_hub=True` says how to upload.

        transformers 4.57.1 loads the directory with AutoTokenizer, AlbertTokenizer and AlbertTokenizerFast.
        """
        if push_to_hub:
            self.push_to_hub()
        if filename_prefix:
            raise ValueError(
                f"filename_prefix={filename_prefix!r}: files saved under other names are not read back by "
                "from_pretrained; save into a directory of their own"
            )
        if legacy_format:
            write_tokenizer_json = False
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / VOCAB_NAME, out / TOKENIZER_CONFIG_NAME, out / SPECIAL_TOKENS_MAP_NAME]
        written[0].write_bytes(self._sp.serialized_model_proto())
        mask = self._specials[self.mask_token]

        def token_entry(t: SpecialToken) -> dict[str, Any]:
            return {"content": t.content, "lstrip": t.lstrip, "normalized": t.is_normalized, "rstrip": t.rstrip,
                    "single_word": t.single_word, "special": t.special}  # fmt: skip

        config = {
            "added_tokens_decoder": {str(t.id): token_entry(t) for t in sorted(self._specials.values(), key=lambda t: t.id)},
            "bos_token": self.bos_token,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "cls_token": self.cls_token,
            "do_lower_case": self.do_lower_case,
            "eos_token": self.eos_token,
            "keep_accents": self.keep_accents,
            "mask_token": self.mask_token,
            "model_max_length": self.model_max_length,
            "pad_token": self.pad_token,
            "remove_space": self.remove_space,
            "sep_token": self.sep_token,
            "sp_model_kwargs": self.sp_model_kwargs,
            "split_special_tokens": self.split_special_tokens,
            "tokenizer_class": "AlbertTokenizer",
            "unk_token": self.unk_token,
        }  # fmt: skip
        for side in ("padding_side", "truncation_side"):
            if getattr(self, side) != "right":
                config[side] = getattr(self, side)
        if self.model_input_names != type(self).model_input_names:
            config["model_input_names"] = list(self.model_input_names)
        special_map = {
            "bos_token": self.bos_token,
            "cls_token": self.cls_token,
            "eos_token": self.eos_token,
            "mask_token": {k: v for k, v in token_entry(mask).items() if k != "special"},
            "pad_token": self.pad_token,
            "sep_token": self.sep_token,
            "unk_token": self.unk_token,
        }
        if self.additional_special_tokens:
            config["additional_special_tokens"] = list(self.additional_special_tokens)
            special_map["additional_special_tokens"] = [
                {k: v for k, v in token_entry(self._specials[c]).items() if k != "special"}
                for c in self.additional_special_tokens
            ]
        new_ids = {t.content: t.id for t in self._added.values() if t.id >= len(self._pieces)}
        if new_ids:
            written.append(out / ADDED_TOKENS_NAME)
            text = json.dumps(new_ids, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            written[-1].write_text(text, encoding="utf-8")
        else:  # an earlier tokenizer's, saved in this directory: its tokens are not this one's
            (out / ADDED_TOKENS_NAME).unlink(missing_ok=True)
        written[1].write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written[2].write_text(json.dumps(special_map, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if write_tokenizer_json:
            written.append(out / TOKENIZER_JSON_NAME)
            self.to_tokenizers().save(str(written[-1]))
        else:  # (transformers' fast tokenizer would read an earlier one)
            (out / TOKENIZER_JSON_NAME).unlink(missing_ok=True)
        return written

    def to_tokenizers(self) -> Any:
        """A `tokenizers.Tokenizer` set up as transformers 4.57.1 converts this model for its fast tokenizer.

        It is what transformers' AlbertTokenizerFast runs; like that tokenizer it departs from the exact
        algorithm on some text (no digit-comma rule, user-defined symbols split before normalisation).
        """
        from tokenizers import (
            AddedToken,
            Regex,
            Tokenizer,
            decoders,
            models,
            normalizers,
            pre_tokenizers,
            processors,
        )

        sp = self._sp
        # Like transformers' converter, make "▁9,"-style pieces 100 nats less likely: an approximation of the
        # digit-comma rule that a tokenizers model cannot express.
        vocab = [
            (p, sp.get_score(i) - (100.0 if i in self._comma_ids else 0.0))
            for i, p in enumerate(self._pieces)
        ]
        tok = Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=False))
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if not self.keep_accents:
            steps += [normalizers.NFKD(), normalizers.StripAccents()]
        if self.do_lower_case:
            steps.append(normalizers.Lowercase())
        charsmap = _precompiled_charsmap(sp.serialized_model_proto())
        if charsmap:
            steps.append(normalizers.Precompiled(charsmap))
        steps.append(normalizers.Replace(Regex(" {2,}"), " "))
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
        cls, sep = self.cls_token, self.sep_token
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, self.cls_token_id), (sep, self.sep_token_id)],
        )
        added = []
        types = _piece_types(sp.serialized_model_proto())
        for i, piece in enumerate(self._pieces):
            if i in self._special_ids:
                t = self._special_by_id[i]
                added.append(
                    AddedToken(t.content, lstrip=t.lstrip, rstrip=t.rstrip, normalized=False, special=True)
                )
            elif types[i] in (_CONTROL, _USER_DEFINED):
                added.append(AddedToken(piece, normalized=False, special=types[i] == _CONTROL))
        tok.add_tokens(added)
        tok.add_tokens(  # add_tokens()'s, in id order, as transformers' fast tokenizer holds them
            [
                AddedToken(t.content, normalized=not t.special, special=t.special)
                for _, t in sorted(self._added.items())
            ]
        )
        return tok

    # ---- vocabulary -------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    def __len__(self) -> int:
        return len(self._pieces) + sum(1 for i in self._added if i >= len(self._pieces))

    def get_vocab(self) -> dict[str, int]:
        return dict(self._piece_ids) | self._added_ids

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        """The tokens matched whole before SentencePiece runs, by content: the special tokens and those that
        `add_tokens` registered (as transformers lists them)."""
        return {t.content: t.id for t in sorted(self._specials.values(), key=lambda t: t.id)}

    @property
    def unk_token_id(self) -> int:
        return self._specials[self.unk_token].id

    @property
    def sep_token_id(self) -> int:
        return self._specials[self.sep_token].id

    @property
    def pad_token_id(self) -> int:
        return self._specials[self.pad_token].id

    @property
    def cls_token_id(self) -> int:
        return self._specials[self.cls_token].id

    @property
    def mask_token_id(self) -> int:
        return self._specials[self.mask_token].id

    @property
    def bos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.bos_token)

    @property
    def eos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.eos_token)

    @property
    def pad_token_type_id(self) -> int:
        return 0

    @property
    def additional_special_tokens(self) -> list[str]:
        """The special tokens beyond the named ones (a copy: set the attribute, or add_special_tokens)."""
        return list(self._additional)

    @additional_special_tokens.setter
    def additional_special_tokens(self, tokens: Sequence[str | Any]) -> None:
        contents = [getattr(t, "content", t) for t in tokens]
        for token, content in zip(tokens, contents):
            if content not in self._specials:
                self._add_content(content, True, token)
        self._additional = list(dict.fromkeys(contents))
        self._index_specials()

    @property
    def all_special_tokens(self) -> list[str]:
        """The special tokens in transformers' order: bos, eos, unk, sep, pad, cls, mask, additional."""
        named = [getattr(self, name) for name in _NAMED_SPECIALS]
        return list(dict.fromkeys(named + self._additional))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]  # type: ignore[misc]

    @property
    def special_tokens_map(self) -> dict[str, str | list[str]]:
        extra = {"additional_special_tokens": list(self.additional_special_tokens)}
        named = {name: getattr(self, name) for name in _NAMED_SPECIALS}
        return named | (extra if self.additional_special_tokens else {})

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Piece(s) to id(s); a piece not in the vocabulary maps to the unknown token's id."""
        vocab = self.get_vocab() if self._added else self._piece_ids
        if isinstance(tokens, str):
            return vocab.get(tokens, self.unk_token_id)
        return [vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(
        self, ids: int | Iterable[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Id(s) to piece(s); ValueError names an id outside the vocabulary."""
        if isinstance(ids, (int, np.integer)):
            return self._piece(int(ids))
        return [self._piece(i) for i in _id_list(ids) if not (skip_special_tokens and i in self._special_ids)]

    def _piece(self, i: int) -> str:
        if not 0 <= i < len(self):
            raise ValueError(f"token id {i} is outside the vocabulary (0..{len(self) - 1})")
        return self._pieces[i] if i < len(self._pieces) else self._added[i].content

    # ---- words ------------------------------------------------------------------------------------------------

    @cached_property
    def _symbol_ids(self) -> frozenset[int]:
        """The vocabulary's user-defined symbols ( ) " - . and such, which SentencePiece always splits out."""
        types = _piece_types(self._sp.serialized_model_proto())
        return frozenset(i for i, kind in enumerate(types) if kind == _USER_DEFINED)

    def _word_ids(self, text: str, ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
        """Word index of each token of `text`, as transformers' fast tokenizer numbers words.

        A piece that starts with "▁" begins a word. A special or added token, or a symbol such as "(",
        is a word of its own when it is written as itself in the text: the fast tokenizer splits those out
        of the raw text before it looks for words (a '"' that was `` is part of its word).
        """
        apart = {i: (self._pieces[i], False) for i in self._symbol_ids}
        for t in self._specials.values():
            apart[t.id] = (t.content, not t.special and self.do_lower_case)  # added ones match lower-cased
        pieces, n = self._pieces, len(self._pieces)
        out: list[int] = []
        word, after_apart = -1, True
        for token_id, (start, end) in zip(ids, offsets):
            alone = False
            if token_id in apart:
                content, lower = apart[token_id]
                span = text[start:end].strip()
                alone = span == content or (lower and span.lower() == content)
            if alone or after_apart or (token_id < n and pieces[token_id][0] == SPIECE_UNDERLINE):
                word += 1
            out.append(word)
            after_apart = alone
        return out

    # ---- the algorithm ----------------------------------------------------------------------------------------

    def preprocess_text(self, text: str) -> str:
        """ALBERT's normalisation of a text with no special tokens in it (before SentencePiece)."""
        return preprocess_text(text, self.do_lower_case, self.remove_space, self.keep_accents)

    def _split(self, text: str) -> list[str | SpecialToken]:
        """Split out special tokens (after the per-character lower-casing) and normalise the rest."""
        if not isinstance(text, str):
            raise TokenizerInputError(f"text must be a str, not {type(text).__name__}")
        text = str(text)  # a str subclass (numpy.str_, from pandas or numpy arrays) as a plain str
        if not text.isascii():
            _check_surrogates(text)
        starts = self._special_starts
        if self.do_lower_case:
            if any(c in text for c in starts):
                parts = self._special_re.split(text)
                text = "".join(p if i % 2 else _lower_each(p) for i, p in enumerate(parts))
            else:
                text = _lower_each(text)
        if not any(c in text for c in starts):
            return [self.preprocess_text(text)]
        parts: list[Any] = self._special_re.split(text)  # odd indices hold the special tokens
        for i in range(1, len(parts), 2):
            token = parts[i] = self._specials[parts[i]]
            if token.lstrip and parts[i - 1]:
                parts[i - 1] = parts[i - 1].rstrip()
            if token.rstrip and parts[i + 1]:
                parts[i + 1] = parts[i + 1].lstrip()
        return [p if isinstance(p, SpecialToken) else self.preprocess_text(p) for p in parts if p]

    def _encode_normalized(self, texts: list[str]) -> list[list[int]]:
        """SentencePiece ids of normalised texts, with the digit-comma rule applied."""
        ids = self._sp.encode(texts, out_type=int, num_threads=self._threads(len(texts)))
        comma = self._comma_ids
        for k, row in enumerate(ids):
            if not comma.isdisjoint(row):
                ids[k] = [self._piece_ids.get(p, self.unk_token_id) for p in self._pieces_of(texts[k])]
        return ids

    def _threads(self, n: int) -> int:
        return 1 if n < 64 else self.num_threads

    def _pieces_of(self, normalized: str) -> list[str]:
        """Pieces of a normalised text with the digit-comma rule ("▁9," -> "▁9" ",") applied."""
        out: list[str] = []
        for piece in self._sp.encode(normalized, out_type=str):
            if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
                out += self._comma_split(piece)
            else:
                out.append(piece)
        return out

    def _comma_split(self, piece: str) -> list[str]:
        # From BERT's README: "9,9" should not become ["▁9,", "9"]; re-encode the digits without the comma.
        sub = self._sp.encode(piece[:-1].replace(SPIECE_UNDERLINE, ""), out_type=str)
        if piece[0] != SPIECE_UNDERLINE and sub[0][0] == SPIECE_UNDERLINE:
            sub = sub[1:] if len(sub[0]) == 1 else [sub[0][1:]] + sub[1:]
        return sub + [piece[-1]]

    def tokenize(
        self,
        text: str,
        pair: str | None = None,
        add_special_tokens: bool = False,
        split_special_tokens: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """The pieces of `text` (no [CLS]/[SEP]); unknown text appears as itself, as SentencePiece returns it.
        As transformers' fast tokenizer: with a `pair` or `add_special_tokens`, the tokens of the encoded
        input, special tokens included; other options go to the encoding."""
        if split_special_tokens is not None and bool(split_special_tokens) != self.split_special_tokens:
            other = self._with_split_specials(bool(split_special_tokens))
            return other.tokenize(text, pair, add_special_tokens, **kwargs)
        if pair is not None or add_special_tokens or kwargs:
            ids = self(text, pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]
            return self.convert_ids_to_tokens(ids)  # type: ignore[return-value]
        out: list[str] = []
        for part in self._split(text):
            if isinstance(part, SpecialToken):
                out.append(part.content)
            elif part:
                out += self._pieces_of(part)
        return out

    def _encode_texts(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids (no special tokens added) for each text; the whole batch goes to SentencePiece at once."""
        plans = [self._split(t) for t in texts]
        flat: list[str] = []
        for plan in plans:
            flat += [p for p in plan if type(p) is str]
        encoded = self._encode_normalized(flat) if flat else []
        out: list[list[int]] = []
        k = 0
        for plan in plans:
            if len(plan) == 1 and type(plan[0]) is str:
                out.append(encoded[k])
                k += 1
                continue
            row: list[int] = []
            for p in plan:
                if type(p) is str:
                    row += encoded[k]
                    k += 1
                else:
                    row.append(p.id)
            out.append(row)
        return out

    # ---- offsets ----------------------------------------------------------------------------------------------

    def _encode_texts_with_offsets(
        self, texts: Sequence[str]
    ) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """Ids and (start, end) character spans in each original text, for every token."""
        plans = [self._split_aligned(t) for t in texts]
        segments = [seg for plan in plans for seg in plan if not isinstance(seg, tuple)]
        spans = self._piece_spans([s.text for s in segments])
        all_ids, all_offsets = [], []
        k = 0
        for plan in plans:
            ids: list[int] = []
            offsets: list[tuple[int, int]] = []
            for seg in plan:
                if isinstance(seg, tuple):
                    token, start, end = seg
                    ids.append(token.id)
                    offsets.append((start, end))
                    continue
                row = spans[k]
                ids += [piece_id for piece_id, _, _, _ in row]
                offsets += self._original_spans(seg, row)
                k += 1
            all_ids.append(ids)
            all_offsets.append(offsets)
        return all_ids, all_offsets

    def _split_aligned(self, text: str) -> list[_Segment | tuple[SpecialToken, int, int]]:
        """Like `_split`, keeping for each normalised character the index of its source character."""
        if not isinstance(text, str):
            raise TokenizerInputError(f"text must be a str, not {type(text).__name__}")
        text = str(text)  # a str subclass (numpy.str_, from pandas or numpy arrays) as a plain str
        if not text.isascii():
            _check_surrogates(text)
        source: list[int] | None = None  # index in `text` of each character of the lowered text
        if self.do_lower_case:
            parts = self._special_re.split(text)
            lowered = [p if i % 2 else _lower_each(p) for i, p in enumerate(parts)]
            if "\u0130" in text:  # "İ".lower() is two characters; the only one that changes length
                source, pos = [], 0
                for i, (p, low) in enumerate(zip(parts, lowered)):
                    if i % 2 or len(p) == len(low):
                        source += range(pos, pos + len(p))
                    else:
                        for j, c in enumerate(p):
                            source += [pos + j] * len(_lower_each(c))
                    pos += len(p)
            lowered_text = "".join(lowered)
        else:
            lowered_text = text

        def orig(i: int) -> int:
            return source[i] if source is not None else i

        out: list[_Segment | tuple[SpecialToken, int, int]] = []
        pieces: list[Any] = []  # [text, start] or (token, start, end) in lowered coordinates
        pos = 0
        for m in self._special_re.finditer(lowered_text):
            pieces.append([lowered_text[pos : m.start()], pos])
            pieces.append((self._specials[m.group()], m.start(), m.end()))
            pos = m.end()
        pieces.append([lowered_text[pos:], pos])
        for i in range(1, len(pieces) - 1, 2):
            token, start, end = pieces[i]
            left, right = pieces[i - 1], pieces[i + 1]
            if token.lstrip:
                while start > left[1] and lowered_text[start - 1] in _WHITE_SPACE:
                    start -= 1
                left[0] = left[0].rstrip()
            if token.rstrip:
                while end < right[1] + len(right[0]) and lowered_text[end] in _WHITE_SPACE:
                    end += 1
                stripped = right[0].lstrip()
                right[1] += len(right[0]) - len(stripped)
                right[0] = stripped
            pieces[i] = (token, orig(start), orig(end - 1) + 1)
        for p in pieces:
            if isinstance(p, tuple):
                out.append(p)
            elif p[0]:
                shift = p[1]
                normalized, src = self._preprocess_aligned(p[0], shift)
                if source is not None:
                    src = [source[j] for j in src]
                # Leading whitespace is stripped, but the fast tokenizer lets the first piece's "▁" stand
                # for its last character; keep that index so the offsets agree.
                n_lead = len(p[0]) - len(p[0].lstrip())
                lead = (
                    orig(shift + self._space_source(p[0], 0, n_lead))
                    if n_lead and self.remove_space
                    else None
                )
                if lead is not None and self._char_kind(text[lead]) != 1:
                    lead = None
                bounds = (orig(shift), orig(shift + len(p[0]) - 1) + 1)
                out.append(_Segment(normalized, src, lead, text, bounds))
        return out

    def _preprocess_aligned(self, text: str, shift: int = 0) -> tuple[str, list[int]]:
        """`preprocess_text` plus, per output character, shift + the index of the input character it comes from.

        A collapsed whitespace run and a quote pair map to their last character, as transformers' fast
        tokenizer aligns them, so offsets agree with it.
        """
        if self._is_plain(text) and "``" not in text and "''" not in text:
            return (text.lower() if self.do_lower_case else text), list(range(shift, shift + len(text)))
        src: list[int] | None = None
        if self.remove_space and len(text) > 96:
            src = self._collapse_source(text, shift)
        if self.remove_space and src is not None:
            s = " ".join(text.split())
        elif self.remove_space:
            src = []
            prev_end = 0
            kinds = self._kinds
            for m in _NON_SPACE_RUN.finditer(text):
                start, end = m.span()
                if src:
                    k = start - 1
                    if kinds.get(text[k]) != 1:
                        k = self._space_source(text, prev_end, start)
                    elif text[k] == "\n" and k > prev_end and text[k - 1] == "\r":
                        k -= 1
                    src.append(k + shift)
                src += range(start + shift, end + shift)
                prev_end = end
            s = " ".join(text.split())
        else:
            s, src = text, list(range(shift, shift + len(text)))
        if "``" in s or "''" in s:
            for pair in ("``", "''"):
                out_chars, out_src, i = [], [], 0
                while True:
                    j = s.find(pair, i)
                    if j < 0:
                        break
                    out_chars.append(s[i:j] + '"')
                    out_src += src[i:j] + [src[j + 1]]
                    i = j + 2
                out_chars.append(s[i:])
                out_src += src[i:]
                s, src = "".join(out_chars), out_src
        if not self.keep_accents and not s.isascii():
            # Only characters that NFKD + mark stripping changes are spliced; each output character keeps
            # the source of the character it came from.
            out_chars, out_src, i = [], [], 0
            for m in _NON_ASCII.finditer(s):
                j, c = m.start(), m.group()
                d = _strip_accents_char(c)
                if d != c:
                    out_chars += (s[i:j], d)
                    out_src += src[i:j]
                    out_src += [src[j]] * len(d)
                    i = j + 1
            if out_chars:
                out_chars.append(s[i:])
                out_src += src[i:]
                s, src = "".join(out_chars), out_src
        if self.do_lower_case:
            lowered = s.lower()
            if len(lowered) != len(s):
                src = [k for c, k in zip(s, src) for _ in range(len(c.lower()))]
            s = lowered
        return s, src

    def _collapse_source(self, text: str, shift: int) -> list[int] | None:
        """Vectorised source indices of " ".join(text.split()) (None where whitespace needs care)."""
        if self._odd_space.search(text):
            return None
        try:
            cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        except UnicodeEncodeError:
            return None
        table = _whitespace_table()
        space = np.zeros(len(cp), dtype=bool)
        low = cp < len(table)
        space[low] = table[cp[low]]
        words = ~space
        if not words.any():
            return []
        # The joining space stands for the last character of its run (whitespace SentencePiece does not
        # make a space of was sent to the loop in _preprocess_aligned above).
        last_of_run = np.zeros(len(cp), dtype=bool)
        last_of_run[:-1] = space[:-1] & words[1:]
        last_of_run[: int(np.argmax(words))] = False
        runs = np.flatnonzero(last_of_run)
        crlf = (cp[runs] == 10) & (cp[runs - 1] == 13)
        if crlf.any():
            # "\r\n" is one character to the fast tokenizer, aligned with its "\r".
            keep_runs = runs.copy()
            keep_runs[crlf] -= 1
            last_of_run[runs] = False
            last_of_run[keep_runs] = True
        keep = words | last_of_run
        return (np.flatnonzero(keep) + shift).tolist()

    def _space_source(self, text: str, start: int, end: int) -> int:
        """The character of the whitespace run text[start:end] that the fast tokenizer's "▁" stands for.

        It collapses a run to its last character that becomes a space (not one that is dropped, like
        \x1f), and treats "\r\n" as one character aligned with the "\r".
        """
        k = end - 1
        while k >= start and self._char_kind(text[k]) != 1:
            k -= 1
        if k < start:
            return end - 1
        if text[k] == "\n" and k > start and text[k - 1] == "\r":
            k -= 1
        return k

    @staticmethod
    def _is_plain(text: str) -> bool:
        """Printable ASCII with single inner spaces: SentencePiece's normaliser leaves it as it is."""
        return (
            text.isascii()
            and text.isprintable()
            and "  " not in text
            and text[:1] != " "
            and text[-1:] != " "
        )

    def _piece_spans(self, texts: list[str]) -> list[list[tuple[int, int, int, str]]]:
        """(id, start, end, piece) per piece, spans in each normalised text, digit-comma rule applied."""
        out: list[list[tuple[int, int, int, str]] | None] = [None] * len(texts)
        pieces = self._sp.encode(texts, out_type=str, num_threads=self._threads(len(texts))) if texts else []
        hard: list[int] = []
        get, unk, comma = self._piece_ids.get, self.unk_token_id, self._comma_ids
        for k, (t, row) in enumerate(zip(texts, pieces)):
            # Where SentencePiece's normaliser changed nothing, its pieces spell "▁" + the text with spaces as
            # "▁", and piece i covers text[pos - 1 : pos + len - 1]; elsewhere ask it for its alignment.
            if not t or "".join(row) != SPIECE_UNDERLINE + t.replace(" ", SPIECE_UNDERLINE):
                hard.append(k)
                continue
            ends = list(accumulate(map(len, row)))
            ids = [get(p, unk) for p in row]
            if comma.isdisjoint(ids):
                out[k] = [(i, b - 1 if b else 0, e - 1, p) for i, p, b, e in zip(ids, row, [0] + ends, ends)]
            else:
                spans = [(p, b - 1 if b else 0, e - 1) for p, b, e in zip(row, [0] + ends, ends)]
                out[k] = self._apply_comma_rule(t, spans)
        if hard:
            for k, row in zip(hard, self._sp_offsets([texts[k] for k in hard])):
                if comma.isdisjoint([r[0] for r in row]):
                    out[k] = row
                else:
                    out[k] = self._apply_comma_rule(texts[k], [(p, b, e) for _, b, e, p in row])
        return out  # type: ignore[return-value]

    def _sp_offsets(self, texts: list[str]) -> list[list[tuple[int, int, int, str]]]:
        """SentencePiece's own (id, start, end, piece) character spans, for text its normaliser changes."""
        if self._has_offset_mapping:
            rows = self._sp.encode(texts, out_type="offset_mapping", num_threads=self._threads(len(texts)))
            return [[(i, b, e, p) for i, (b, e), p in zip(r["ids"], r["offsets"], r["pieces"])] for r in rows]
        out = []  # older SentencePiece: byte offsets from the proto
        for t in texts:
            proto = self._sp.encode(t, out_type="immutable_proto")
            starts = np.cumsum([0] + [len(c.encode()) for c in t])
            char_at = {int(b): i for i, b in enumerate(starts)}
            out.append([(p.id, char_at[p.begin], char_at[p.end], p.piece) for p in proto.pieces])
        return out

    def _apply_comma_rule(
        self, text: str, spans: list[tuple[str, int, int]]
    ) -> list[tuple[int, int, int, str]]:
        out = []
        ids = self._piece_ids
        unk = self.unk_token_id
        for piece, b, e in spans:
            if not (len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit()):
                out.append((ids.get(piece, unk), b, e, piece))
                continue
            # The sub-pieces share the piece's surface in order: a "▁" takes the blank characters before
            # the digits, each other character one kept character; the comma takes the rest.
            pos = b
            for sub in self._comma_split(piece)[:-1]:
                start = pos
                if sub[0] == SPIECE_UNDERLINE:
                    while pos < e and self._char_kind(text[pos]):
                        pos += 1
                for _ in sub.lstrip(SPIECE_UNDERLINE):
                    while pos < e - 1 and self._char_kind(text[pos]) == 2:
                        pos += 1
                    pos = min(pos + 1, max(e - 1, b))
                out.append((ids.get(sub, unk), start, pos, sub))
            out.append((ids.get(",", unk), pos, e, ","))
        return out

    def _char_kind(self, c: str) -> int:
        """0: kept by the normalisers; 1: SentencePiece turns it into a space; 2: a normaliser drops it.

        Drop means SentencePiece's character map removes it, or (when accents are stripped) it is a
        mark, which transformers' fast tokenizer removes even when its combining class is 0.
        """
        kind = self._kinds.get(c)
        if kind is None:
            if not self.keep_accents and unicodedata.category(c)[0] == "M":
                kind = 2
            else:
                probe = self._sp.normalize("a" + c + "a")
                kind = 1 if probe == "\u2581a\u2581a" else 2 if probe == "\u2581aa" else 0
            self._kinds[c] = kind
        return kind

    def _widen_unknown(self, seg: _Segment, start: int, end: int) -> tuple[int, int]:
        # Python's split() drops "\x85" as whitespace, but the fast tokenizer keeps it as text, where it
        # joins an adjacent unknown piece; widen the unknown piece's span the same way.
        text, (lo, hi) = seg.original, seg.bounds
        while end < hi and text[end].isspace() and self._char_kind(text[end]) == 0:
            end += 1
        while start > lo and text[start - 1].isspace() and self._char_kind(text[start - 1]) == 0:
            start -= 1
        return start, end

    def _original_spans(
        self, seg: _Segment, pieces: list[tuple[int, int, int, str]]
    ) -> list[tuple[int, int]]:
        """Map piece spans in a normalised segment to spans in the original text.

        Follows transformers' fast tokenizer: a "▁" stands for the last character that became that space
        (for the first piece: any whitespace stripped before it), and characters a normaliser drops
        are not part of any token.
        """
        text, src, original, char_kind = seg.text, seg.source, seg.original, self._char_kind
        if self._is_plain(text) and not self._odd_space.search(original, *seg.bounds):
            # Printable ASCII joined by single spaces that all stand for real whitespace: each piece
            # covers its own characters, a leading "▁" the space before it.
            out = [(src[b], src[e - 1] + 1) if b < e else (src[b], src[b] + 1) for _, b, e, _ in pieces]
            if out and seg.lead is not None:
                out[0] = (seg.lead, out[0][1] if pieces[0][2] > pieces[0][1] else seg.lead + 1)
            return out
        kinds = text.translate(self._kind_table)  # "0" kept, "1" becomes a space, "2" dropped
        if self._odd_space.search(original, *seg.bounds):
            # A space that joins words stands for its whitespace run; if the fast tokenizer drops that
            # character (\x0b, \x1c-\x1f) there is no space for it to align with. (A space can also
            # come from NFKD: "¨" is " " + U+0308.)
            patched = list(kinds)
            for k, c in enumerate(text):
                if c == " " and original[src[k]].isspace() and char_kind(original[src[k]]) != 1:
                    patched[k] = "2"
            kinds = "".join(patched)

        n = len(text)
        out = []
        unk = self.unk_token_id
        first = True
        for pid, b, e, piece in pieces:
            i = b
            while i < e and kinds[i] != "0":
                i += 1
            j = e
            while j > i and kinds[j - 1] == "2":
                j -= 1
            content = (src[i], src[j - 1] + 1) if i < j else None
            if piece[0] != SPIECE_UNDERLINE:
                first = False
                if content is None:
                    k = src[min(b, n - 1)]
                    content = self._widen_unknown(seg, k, k) if pid == unk else (k, k)
                    if content[0] == content[1]:
                        content = (k, k + 1)
                elif pid == unk:
                    content = self._widen_unknown(seg, *content)
                out.append(content)
                continue
            start = None
            if i > b and kinds[i - 1] == "1":
                start = src[i - 1]
            else:
                for k in range(i - 1, -1 if first else b - 1, -1):
                    if kinds[k] == "1":
                        start = src[k]
                        break
            if start is None and first:
                start = seg.lead
            first = False
            if start is None:
                if content is not None:
                    out.append(content)
                    continue
                k = e  # a lone "▁" added before the next kept character, which it takes
                while k < n and kinds[k] != "0":
                    k += 1
                k = min(k, n - 1)
                out.append((src[k], src[k] + 1))
                continue
            out.append((start, content[1] if content is not None else start + 1))
        return out

    # ---- the transformers call surface ------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[tuple[str, str]] | Sequence[Sequence[str]] | None = None,
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_target: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        text_pair_target: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Encode a text, a pair, or a batch of them (see `_encode`, whose options it takes), as transformers
        does; `text_target` (and `text_pair_target`) are encoded the same way and given as `labels`, or alone
        when there is no `text`. `split_special_tokens=` overrides the tokenizer's setting for this call."""
        split = kwargs.pop("split_special_tokens", None)
        if split is not None and bool(split) != self.split_special_tokens:
            return self._with_split_specials(bool(split))(
                text, text_pair, text_target, text_pair_target, *args, **kwargs
            )
        if text is None and text_target is None:
            raise ValueError("give the text to encode: text=..., or text_target=... for labels alone")
        encoded = self._encode(text, text_pair, *args, **kwargs) if text is not None else None
        if text_target is None:
            return encoded  # type: ignore[return-value]
        targets = self._encode(text_target, text_pair_target, *args, **kwargs)
        if encoded is None:
            return targets
        encoded["labels"] = targets["input_ids"]
        return encoded

    def _encode(
        self,
        text: str | Sequence[str] | Sequence[tuple[str, str]] | Sequence[Sequence[str]] | None = None,
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        _ids_given: bool = False,
    ) -> BatchEncoding:
        """Encode a text, a pair, or a batch of texts or pairs into model inputs, as transformers does.

        Returns input_ids, token_type_ids and attention_mask (lists, or 'pt'/'np' tensors), plus
        special_tokens_mask, offset_mapping and length when asked for. With return_overflowing_tokens a text
        too long for max_length becomes several rows, windows sharing `stride` tokens cut as transformers'
        fast tokenizer cuts them, and overflow_to_sample_mapping names the input of each row.
        is_split_into_words takes lists of words (one list, or a batch of them) instead of texts.
        """
        if _ids_given:  # token ids already made (prepare_for_model, encode_plus of tokens): one input
            if return_offsets_mapping:
                raise NotImplementedError("token ids have no character offsets: encode the text instead")
            firsts, seconds, batched = [text], None if text_pair is None else [text_pair], False
        else:
            firsts, seconds, batched = _parse_inputs(text, text_pair, is_split_into_words)
        pad_mode, trunc_mode, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of
        )
        left_padded = _side(padding_side or self.padding_side, "padding_side") == "left"
        if not isinstance(stride, int) or stride < 0:
            raise ValueError(f"stride must be an integer >= 0, got {stride!r}")
        texts = [firsts] if seconds is None else [firsts, seconds]
        encoded = [
            (t, None, None)
            if _ids_given
            else self._encode_batch(t, is_split_into_words, return_offsets_mapping)
            for t in texts
        ]
        ids = [e[0] for e in encoded]
        offsets = [e[1] for e in encoded] if return_offsets_mapping else None
        words = [e[2] for e in encoded] if is_split_into_words else None
        n_specials = len(texts) + 1 if add_special_tokens else 0  # [CLS] A [SEP] (B [SEP])
        rows = self._cut_rows(
            ids, trunc_mode, max_length, n_specials, stride if return_overflowing_tokens else None
        )
        data = self._assemble(
            rows,
            ids,
            offsets,  # type: ignore[arg-type]
            add_special_tokens,
            token_types=_wanted(return_token_type_ids, "token_type_ids", self.model_input_names),
            attention=_wanted(return_attention_mask, "attention_mask", self.model_input_names),
            special_mask=return_special_tokens_mask,
        )
        input_ids = data["input_ids"]
        target = _pad_target([len(r) for r in input_ids], pad_mode, max_length, pad_to_multiple_of)
        if target is not None:
            keys = _PADDED_KEYS + ("offset_mapping",)
            self._pad_rows(data, target, left_padded, keys)
        if return_length:  # the padded length, as transformers' fast tokenizer gives it
            data["length"] = [len(r) for r in data["input_ids"]]
        if return_overflowing_tokens:  # one row per window, so the output keeps its batch axis
            data["overflow_to_sample_mapping"] = [r.sample for r in rows]
        elif not batched:
            data = {key: value[0] for key, value in data.items()}
        longest = max((len(r) for r in input_ids), default=0)
        if verbose and not trunc_mode and longest > self.model_max_length and not self._warned_long:
            self._warned_long = True  # once per tokenizer, as transformers does
            import warnings

            warnings.warn(
                f"a sequence of {longest} tokens is longer than model_max_length {self.model_max_length};"
                " pass truncation=True to cut it",
                stacklevel=2,
            )
        if return_tensors is not None:
            data = _to_tensors(
                data, return_tensors, prepend_batch_axis=not batched and not return_overflowing_tokens
            )
        if _ids_given:  # no text to find words and spans in, as transformers' slow tokenizer has none
            return BatchEncoding(data)
        layout = _Layout(self, texts, ids, offsets, words, rows, add_special_tokens, left_padded)  # type: ignore[arg-type]
        return BatchEncoding(data, layout)

    def _with_split_specials(self, split: bool) -> AlbertTokenizer:
        """This tokenizer with `split_special_tokens` set otherwise (a shallow copy sharing the vocabulary),
        for one call that overrides it."""
        other = copy.copy(self)
        other.split_special_tokens = split
        other._index_specials()
        return other

    def _encode_batch(
        self, texts: Sequence[Any], split_words: bool, with_offsets: bool
    ) -> tuple[list[list[int]], list[list[tuple[int, int]]] | None, list[list[int]] | None]:
        """Ids (and offsets) of each text; or of each list of words, with the index of every token's word."""
        if not split_words:
            if with_offsets:
                ids, offsets = self._encode_texts_with_offsets(texts)
                return ids, offsets, None
            return self._encode_texts(texts), None, None
        flat = [word for words in texts for word in words]
        flat_ids, flat_offsets = (
            self._encode_texts_with_offsets(flat) if with_offsets else (self._encode_texts(flat), None)
        )
        ids: list[list[int]] = []
        offsets: list[list[tuple[int, int]]] = []
        words: list[list[int]] = []
        k = 0
        for sample in texts:
            ids.append([])
            offsets.append([])
            words.append([])
            for w in range(len(sample)):
                ids[-1] += flat_ids[k]
                words[-1] += [w] * len(flat_ids[k])
                if flat_offsets is not None:
                    offsets[-1] += flat_offsets[k]
                k += 1
        return ids, offsets if with_offsets else None, words

    def _cut_rows(
        self,
        ids: list[list[list[int]]],
        mode: str | None,
        max_length: int | None,
        n_specials: int,
        stride: int | None,
    ) -> list[_Row]:
        """The rows each input makes: one, truncated as the slow tokenizer truncates; or with a stride
        (return_overflowing_tokens), the windows the fast tokenizer cuts."""
        left = _side(self.truncation_side, "truncation_side") == "left"
        rows = []
        for k, first in enumerate(ids[0]):
            len_a, len_b = len(first), len(ids[1][k]) if len(ids) > 1 else None
            if stride is not None:
                windows = _overflow_windows(len_a, len_b, mode, max_length, n_specials, stride, left)
                rows += [_Row(k, a, b) for a, b in windows]
                continue
            keep_a, keep_b = len_a, len_b
            total = len_a + (len_b or 0) + n_specials
            if mode and max_length and total > max_length:
                keep_a, keep_b = _truncate(len_a, len_b, total - max_length, mode)
            b = None if len_b is None or keep_b is None else _kept(len_b, keep_b, left)
            rows.append(_Row(k, _kept(len_a, keep_a, left), b))
        return rows

    def _assemble(
        self,
        rows: list[_Row],
        ids: list[list[list[int]]],
        offsets: list[list[list[tuple[int, int]]]] | None,
        add_special_tokens: bool,
        token_types: bool,
        attention: bool,
        special_mask: bool,
    ) -> dict[str, list[Any]]:
        """The model inputs of each row: [CLS] A [SEP] (B [SEP]) from the row's ranges of the texts' ids."""
        specials = 1 if add_special_tokens else 0
        cls, sep = ([self.cls_token_id], [self.sep_token_id]) if specials else ([], [])
        data: dict[str, list[Any]] = {"input_ids": _lay_out(rows, ids, cls, sep)}
        spans = [(r.a[1] - r.a[0], -1 if r.b is None else r.b[1] - r.b[0]) for r in rows]
        if token_types:
            data["token_type_ids"] = [
                [0] * (la + 2 * specials) + [specials] * (lb + specials if lb >= 0 else 0) for la, lb in spans
            ]
        if attention:
            data["attention_mask"] = [[1] * len(r) for r in data["input_ids"]]
        if special_mask:
            data["special_tokens_mask"] = [
                [1] + [0] * la + [1] + ([0] * lb + [1] if lb >= 0 else [])
                if specials
                else [0] * (la + max(lb, 0))
                for la, lb in spans
            ]
        if offsets is not None:
            none = [(0, 0)] if specials else []
            data["offset_mapping"] = _lay_out(rows, offsets, none, none)
        return data

    def _pad_rows(self, data: dict[str, Any], target: int, left: bool, keys: Sequence[str]) -> None:
        """Pad the rows of `keys` in data to `target` tokens, on the left or the right."""
        fill = {"input_ids": self.pad_token_id, "token_type_ids": self.pad_token_type_id,
                "attention_mask": 0, "special_tokens_mask": 1, "offset_mapping": (0, 0)}  # fmt: skip
        for key in keys:
            if key in data:
                data[key] = [_padded(row, fill[key], target, left) for row in data[key]]

    def pad(
        self,
        encoded_inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad encoded inputs to the longest (or to max_length), as transformers' `tokenizer.pad` does.

        Takes one encoding, a dict of lists or a list of dicts (what DataCollatorWithPadding passes); pads
        input_ids, token_type_ids, attention_mask (made when missing) and special_tokens_mask, and leaves
        other keys such as labels as they are. Tensors in give tensors of the same kind out.
        """
        if isinstance(encoded_inputs, (list, tuple)):
            if not encoded_inputs or not isinstance(encoded_inputs[0], Mapping):
                raise TypeError("pad() takes a dict of lists or a non-empty list of dicts")
            data = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        elif isinstance(encoded_inputs, Mapping):
            data = dict(encoded_inputs)
        else:
            raise TypeError(
                f"pad() takes a dict of lists or a list of dicts, not {type(encoded_inputs).__name__}"
            )
        if "input_ids" not in data:
            raise ValueError(f"pad() needs input_ids among the inputs; they hold {list(data)}")
        kind = _framework(data["input_ids"])
        if kind is not None:
            data = {key: _to_python(value) for key, value in data.items()}
        ids = data["input_ids"]
        batched = bool(ids) and isinstance(ids[0], (list, tuple))
        if not batched:
            data = {key: [value] for key, value in data.items()}
        elif len({len(value) for value in data.values()}) > 1:
            raise ValueError(
                f"pad() needs one value per example for every key; got {[len(v) for v in data.values()]}"
            )
        pad_mode, _, max_length = self._strategies(padding, False, max_length, None)
        left = _side(padding_side or self.padding_side, "padding_side") == "left"
        if (
            _wanted(return_attention_mask, "attention_mask", self.model_input_names)
            and "attention_mask" not in data
        ):
            data["attention_mask"] = [[1] * len(r) for r in data["input_ids"]]
        target = _pad_target([len(r) for r in data["input_ids"]], pad_mode, max_length, pad_to_multiple_of)
        if target is not None:
            self._pad_rows(data, target, left, _PADDED_KEYS)
        if not batched:
            data = {key: value[0] for key, value in data.items()}
        kind = return_tensors or kind
        return BatchEncoding(_to_tensors(data, kind, prepend_batch_axis=False) if kind else data)

    def _strategies(
        self, padding: bool | str, truncation: bool | str | None, max_length: int | None, multiple: int | None
    ) -> tuple[str | None, str | None, int | None]:
        """Resolve padding/truncation arguments the way transformers does."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # transformers' default when only max_length is given
        if padding is True or padding == "longest":
            pad_mode: str | None = "longest"
        elif padding is False or padding is None or padding == "do_not_pad":
            pad_mode = None
        elif padding == "max_length":
            pad_mode = "max_length"
        else:
            raise ValueError(
                f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}"
            )
        if truncation is True:
            trunc_mode: str | None = "longest_first"
        elif truncation is False or truncation is None or truncation == "do_not_truncate":
            trunc_mode = None
        elif truncation in _TRUNCATIONS:
            trunc_mode = truncation  # type: ignore[assignment]
        else:
            raise ValueError(f"truncation must be True, False or one of {_TRUNCATIONS}, got {truncation!r}")
        if max_length is None and (pad_mode == "max_length" or trunc_mode):
            if self.model_max_length > LARGE_INTEGER:  # no limit: neither pad nor cut to one, as transformers
                import warnings

                for asked, on in (("padding", pad_mode == "max_length"), ("truncation", bool(trunc_mode))):
                    if on:
                        warnings.warn(
                            f"{asked} to max_length asked for, but no max_length is given and the tokenizer has "
                            f"no model_max_length: no {asked}",
                            stacklevel=3,
                        )
                pad_mode = None if pad_mode == "max_length" else pad_mode
                trunc_mode = None
            else:
                max_length = self.model_max_length
        if max_length is not None and max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        if trunc_mode and pad_mode and multiple and max_length and max_length % multiple:
            raise ValueError(f"max_length {max_length} is not a multiple of pad_to_multiple_of {multiple}")
        return pad_mode, trunc_mode, max_length

    def encode(
        self,
        text: str | Sequence[str] | Sequence[int],
        text_pair: str | Sequence[str] | Sequence[int] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> list[int] | Any:
        """The input ids of one text or pair; as in `encode_plus`, a text may also be its tokens or ids."""
        kwargs |= {"return_token_type_ids": False, "return_attention_mask": False}
        return self.encode_plus(
            text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
            max_length=max_length, stride=stride, padding_side=padding_side, return_tensors=return_tensors,
            **kwargs,
        )["input_ids"]  # fmt: skip

    def encode_plus(self, text: Any, text_pair: Any = None, **kwargs: Any) -> BatchEncoding:
        """One text or pair, as `__call__` encodes it (transformers v4's older name). As transformers' slow
        tokenizer reads them here, a list of str is the text's tokens (what `tokenize` gives; with
        is_split_into_words, its words) and a list of ints its ids: `encode(tokenize(x)) == encode(x)`."""
        if kwargs.get("is_split_into_words") or (isinstance(text, str) and not isinstance(text_pair, list)):
            return self(text, text_pair, **kwargs)
        ids = self._as_ids(text, "text")
        pair = None if text_pair is None else self._as_ids(text_pair, "text_pair")
        return self.prepare_for_model(ids, pair, prepend_batch_axis=True, **kwargs)

    def _as_ids(self, value: Any, name: str) -> list[int]:
        """A text, its tokens or its ids as ids (no special tokens added)."""
        if isinstance(value, str):
            return self._encode_texts([value])[0]
        if isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value):
            return self.convert_tokens_to_ids(list(value))  # type: ignore[return-value]
        if isinstance(value, (list, tuple)) and all(_is_int_like(i) for i in value):
            return [int(i) for i in value]
        raise TokenizerInputError(
            f"{name} must be a str, a list of tokens (str) or a list of token ids (int), got {value!r:.80}: "
            "see batch_encode_plus for a batch"
        )

    def prepare_for_model(
        self,
        ids: Sequence[int],
        pair_ids: Sequence[int] | None = None,
        prepend_batch_axis: bool = False,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Model inputs from token ids already made, as transformers' prepare_for_model: special tokens,
        truncation, padding and the other options of `__call__` (no offsets: there is no text). Tensors keep
        no batch axis unless `prepend_batch_axis`. Overflowing windows are rows, as `__call__` gives them."""
        for ignored in ("is_split_into_words", "split_special_tokens"):  # (the ids are made)
            kwargs.pop(ignored, None)
        kind = kwargs.pop("return_tensors", None)
        encoded = self._encode(
            self._as_ids(list(ids), "ids"),
            None if pair_ids is None else self._as_ids(list(pair_ids), "pair_ids"),
            _ids_given=True,
            **kwargs,
        )
        if kind is None:
            return encoded
        rows = bool(kwargs.get("return_overflowing_tokens"))
        return BatchEncoding(
            _to_tensors(dict(encoded), kind, prepend_batch_axis=prepend_batch_axis and not rows)
        )

    def batch_encode_plus(self, batch_text_or_text_pairs: Sequence[Any], **kwargs: Any) -> BatchEncoding:
        """A batch of texts or (text, pair) tuples, as `__call__` encodes it (transformers v4's older name)."""
        if isinstance(batch_text_or_text_pairs, str):
            raise TypeError("batch_encode_plus takes a list of texts or of (text, pair) tuples, not a str")
        return self(list(batch_text_or_text_pairs), **kwargs)

    @property
    def max_len_single_sentence(self) -> int:
        """model_max_length less [CLS] and [SEP]."""
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        """model_max_length less [CLS] and two [SEP]."""
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    @property
    def added_tokens_decoder(self) -> dict[int, SpecialToken]:
        """The tokens matched whole before SentencePiece, by id (transformers gives AddedTokens, with the same
        content, special, lstrip, rstrip, single_word and normalized)."""
        return {t.id: t for t in sorted(self._specials.values(), key=lambda t: t.id)}

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return [self._specials[t].id for t in self._additional]

    @property
    def all_special_tokens_extended(self) -> list[SpecialToken]:
        """`all_special_tokens` with their settings."""
        return [self._specials[t] for t in self.all_special_tokens if t in self._specials]

    @property
    def special_tokens_map_extended(self) -> dict[str, Any]:
        """`special_tokens_map` with each token's settings."""
        named: dict[str, Any] = {
            n: self._specials.get(getattr(self, n), getattr(self, n)) for n in _NAMED_SPECIALS
        }
        extra = [self._specials[t] for t in self._additional]
        return named | ({"additional_special_tokens": extra} if extra else {})

    chat_template = None

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(
            "ALBERT's tokenizer has no chat template (tokenizer.chat_template is None): it is not a chat model"
        )

    @contextlib.contextmanager
    def as_target_tokenizer(self) -> Iterator[None]:
        """transformers' older way to encode labels: the same tokenizer (use text_target= instead)."""
        yield

    def truncate_sequences(
        self,
        ids: list[int],
        pair_ids: list[int] | None = None,
        num_tokens_to_remove: int = 0,
        truncation_strategy: str = "longest_first",
        stride: int = 0,
    ) -> tuple[list[int], list[int] | None, list[int]]:
        """Remove `num_tokens_to_remove` ids as transformers' slow tokenizer does: the kept ids, the kept pair ids
        and the removed ones (with `stride` ids before them; none for a pair cut "longest_first")."""
        mode = str(getattr(truncation_strategy, "value", truncation_strategy))
        if mode not in ("longest_first", "only_first", "only_second"):
            raise ValueError(
                f"truncation_strategy must be longest_first, only_first or only_second, got {mode!r}"
            )
        if num_tokens_to_remove <= 0:
            return ids, pair_ids, []
        keep_a, keep_b = _truncate(
            len(ids), None if pair_ids is None else len(pair_ids), num_tokens_to_remove, mode
        )
        left = self.truncation_side == "left"
        cut_a, cut_b = _kept(len(ids), keep_a, left), _kept(len(pair_ids or []), keep_b or 0, left)
        overflow: list[int] = []
        source = {
            "only_first": ids,
            "only_second": pair_ids,
            "longest_first": ids if pair_ids is None else None,
        }[mode]  # (what the removed ids come from; a pair cut longest_first gives none)
        if source is not None and len(source) > num_tokens_to_remove:
            window = min(len(source), stride + num_tokens_to_remove)
            overflow = list(source[:window] if left else source[-window:])
        return (
            list(ids[cut_a[0] : cut_a[1]]),
            None if pair_ids is None else list(pair_ids[cut_b[0] : cut_b[1]]),
            overflow,
        )

    def get_added_vocab(self) -> dict[str, int]:
        """The tokens matched whole before SentencePiece (special and added ones), as transformers lists them."""
        return self.added_tokens_encoder

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str]:
        """Write the SentencePiece model alone ("[prefix-]spiece.model"); returns its path."""
        name = f"{filename_prefix}-{VOCAB_NAME}" if filename_prefix else VOCAB_NAME
        path = Path(save_directory) / name
        path.write_bytes(self._sp.serialized_model_proto())
        return (str(path),)

    def batch_encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text with [CLS] ... [SEP], no padding: the fastest path for many texts."""
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        return [cls + ids + sep for ids in self._encode_texts(texts)]

    def build_inputs_with_special_tokens(self, ids_a: list[int], ids_b: list[int] | None = None) -> list[int]:
        """`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`."""
        out = [self.cls_token_id] + ids_a + [self.sep_token_id]
        return out + ids_b + [self.sep_token_id] if ids_b is not None else out

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def get_special_tokens_mask(
        self, ids_a: list[int], ids_b: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 for a special token, 0 for a sequence token: of `ids_a` (and `ids_b`) as
        `build_inputs_with_special_tokens` lays them out, or, with `already_has_special_tokens`, of `ids_a`
        as it is."""
        if already_has_special_tokens:
            if ids_b is not None:
                raise ValueError("ids_b cannot be given when the ids already hold their special tokens")
            return [1 if i in self._special_ids else 0 for i in _id_list(ids_a)]
        mask = [1] + [0] * len(ids_a) + [1]
        return mask + [0] * len(ids_b) + [1] if ids_b is not None else mask

    def create_token_type_ids_from_sequences(
        self, ids_a: list[int], ids_b: list[int] | None = None
    ) -> list[int]:
        """Token types of `build_inputs_with_special_tokens(ids_a, ids_b)`: 0 up to the first [SEP], then 1."""
        first = [0] * (len(ids_a) + 2)
        return first + [1] * (len(ids_b) + 1) if ids_b is not None else first

    # ---- decoding ---------------------------------------------------------------------------------------------

    def decode(
        self,
        token_ids: int | Iterable[int] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        spaces_between_special_tokens: bool = True,
        **kwargs: Any,
    ) -> str:
        """Text of a sequence of ids; special tokens are written as themselves unless skipped. As in transformers'
        slow tokenizer, `spaces_between_special_tokens=False` joins added tokens to the text without spaces;
        other keyword arguments are taken and change nothing."""
        ids = [int(token_ids)] if isinstance(token_ids, (int, np.integer)) else _id_list(token_ids)
        n = len(self)
        for i in ids:
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside the vocabulary (0..{n - 1})")
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        # Added tokens set apart (_apart_ids) are joined with spaces; the rest is decoded run by run.
        texts, run = [], []
        for i in ids:
            if i in self._apart_ids:
                if run and (text := self._decode_run(run)):
                    texts.append(text)
                texts.append(self._added[i].content)
                run = []
            else:
                run.append(i)
        if run:
            texts.append(self._decode_run(run))
        text = (" " if spaces_between_special_tokens else "").join(texts)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        return _clean_up_spaces(text) if clean else text

    def _decode_run(self, ids: list[int]) -> str:
        """Text of ids without added tokens: SentencePiece's decoding, special tokens written as themselves."""
        return self.convert_tokens_to_string([self._piece(i) for i in ids])

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Text of a list of pieces, as the slow tokenizer joins them: SentencePiece decodes the runs between
        special tokens, which are written as themselves."""
        specials = set(self.all_special_tokens)
        out: list[str] = []
        run: list[str] = []
        prev_special = False
        for token in tokens:
            if token in specials:
                if not prev_special:
                    out.append(" ")
                out.append(self._sp.decode(run) + token)
                run, prev_special = [], True
            else:
                run.append(token)
                prev_special = False
        out.append(self._sp.decode(run))
        return "".join(out).strip()

    def batch_decode(
        self,
        sequences: Iterable[Iterable[int]] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """`decode` applied to each sequence."""
        return [
            self.decode(s, skip_special_tokens, clean_up_tokenization_spaces, **kwargs) for s in sequences
        ]

    def __repr__(self) -> str:
        return (
            f"AlbertTokenizer(vocab_file={str(self.vocab_file)!r}, vocab_size={self.vocab_size}, "
            f"do_lower_case={self.do_lower_case}, keep_accents={self.keep_accents}, "
            f"model_max_length={self.model_max_length})"
        )


class _KindTable(dict):
    """A str.translate table that maps each character to its `_char_kind` digit, filled on first sight."""

    def __init__(self, char_kind: Any) -> None:
        super().__init__()
        self._char_kind = char_kind

    def __missing__(self, code: int) -> str:
        value = self[code] = "012"[self._char_kind(chr(code))]
        return value


@dataclass
class _Segment:
    """A normalised stretch of text between special tokens, and the source index of each of its characters."""

    text: str
    source: list[int]
    lead: int | None = None  # source index of the last stripped leading whitespace character
    original: str = ""  # the whole original text
    bounds: tuple[int, int] = (0, 0)  # where the segment lies in it


def _truncate(len_a: int, len_b: int | None, remove: int, mode: str) -> tuple[int, int | None]:
    """How many ids of A and B to keep, as transformers 4.57.1's slow tokenizer truncates."""
    if mode == "only_first" or (mode == "longest_first" and len_b is None):
        # transformers leaves a sequence untruncated (and logs an error) when it cannot remove enough.
        return (len_a - remove, len_b) if len_a > remove else (len_a, len_b)
    if mode == "only_second":
        if len_b is not None and len_b > remove:
            return len_a, len_b - remove
        return len_a, len_b
    assert len_b is not None
    first = min(abs(len_b - len_a), remove)
    second = remove - first
    if len_a > len_b:
        cut_a, cut_b = first + second // 2, second - second // 2
    else:
        cut_a, cut_b = second // 2, first + second - second // 2
    return max(len_a - cut_a, 0), max(len_b - cut_b, 0)


def _kept(n: int, keep: int, left: bool) -> tuple[int, int]:
    """The range of n tokens that truncation to `keep` leaves, cutting on the left or the right."""
    return (n - keep, n) if left else (0, keep)


def stride_windows(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges [lo, hi) of windows of `size` tokens over n tokens, consecutive ones sharing `stride`."""
    if n <= size:
        return [(0, n)]
    out, lo = [], 0
    while True:
        hi = min(lo + size, n)
        out.append((lo, hi))
        if hi == n:
            return out
        lo += size - stride


def _cut(n: int, size: int, stride: int, left: bool) -> list[tuple[int, int]]:
    """Windows over n tokens as the fast tokenizer cuts them: from the end first when truncating on the left."""
    if n <= size:
        return [(0, n)]
    if size <= 0:
        raise ValueError("max_length leaves no room for the text to cut into windows; raise max_length")
    if stride >= size:
        raise ValueError(
            f"stride ({stride}) must be smaller than the {size} tokens each window holds (max_length less the "
            "special tokens and any text that is not cut); lower stride or raise max_length"
        )
    windows = stride_windows(n, size, stride)
    return [(n - hi, n - lo) for lo, hi in windows] if left else windows


def _pair_sizes(len_a: int, len_b: int, room: int) -> tuple[int, int]:
    """How many tokens of each text of a pair a window holds under longest_first, as the fast tokenizer
    shares the room: the shorter text whole if the longer one still gets as many, else half each."""
    short, long = sorted((len_a, len_b))
    long = short if short > room else max(short, room - short)
    if short + long > room:
        short, long = room // 2, room // 2 + room % 2
    return (short, long) if len_a <= len_b else (long, short)


def _overflow_windows(
    len_a: int,
    len_b: int | None,
    mode: str | None,
    max_length: int | None,
    n_specials: int,
    stride: int,
    left: bool,
) -> list[tuple[tuple[int, int], tuple[int, int] | None]]:
    """The (first text, second text) token ranges of the rows transformers' fast tokenizer makes of one input
    with return_overflowing_tokens: the side the truncation mode cuts, in windows of the room that is left."""
    whole_b = None if len_b is None else (0, len_b)
    room = (max_length or 0) - n_specials
    if not mode or not max_length or len_a + (len_b or 0) <= room:
        return [((0, len_a), whole_b)]
    if mode == "longest_first" and len_b is not None:
        size_a, size_b = _pair_sizes(len_a, len_b, room)
        wa, wb = _cut(len_a, size_a, stride, left), _cut(len_b, size_b, stride, left)
        # The fast tokenizer's order: the first windows; each later window of A with every window of B;
        # the first window of A with each later window of B.
        return [(wa[0], wb[0])] + [(a, b) for a in wa[1:] for b in wb] + [(wa[0], b) for b in wb[1:]]
    if mode == "only_second" and len_b is None:
        raise ValueError(
            "truncation='only_second' cuts the second text of a pair, and there is none; pass text_pair, or "
            "truncation=True for single texts"
        )
    second = mode == "only_second"
    cut = len_b if second else len_a
    size = cut - (len_a + (len_b or 0) - room)  # type: ignore[operator]
    if size <= 0:
        kept = "the first text and " if second else "the second text and " if len_b is not None else ""
        raise ValueError(
            f"max_length={max_length} leaves no room to cut the {'second' if second else 'first'} text into "
            f"windows: {kept}the {n_specials} special tokens take {max_length - size} tokens; raise max_length"
        )
    windows = _cut(cut, size, stride, left)  # type: ignore[arg-type]
    return [((0, len_a), w) for w in windows] if second else [(w, whole_b) for w in windows]


def _parse_inputs(text: Any, text_pair: Any, split_words: bool) -> tuple[list[Any], list[Any] | None, bool]:
    """(first texts, second texts or None, whether the input was a batch) from __call__'s text arguments."""
    if text is None:
        raise TokenizerInputError(
            "text must be a str, a list of str, or a list of (str, str) pairs, not NoneType"
        )
    if split_words:
        return _parse_words(text, text_pair)
    if isinstance(text, str):
        if text_pair is not None and not isinstance(text_pair, str):
            raise TokenizerInputError(
                f"text_pair must be a str when text is a str, not {type(text_pair).__name__}"
            )
        return [text], None if text_pair is None else [text_pair], False
    if not isinstance(text, (list, tuple)):
        raise TokenizerInputError(f"text must be a str or a list of str, not {type(text).__name__}")
    firsts = list(text)
    if text_pair is not None:
        if isinstance(text_pair, str) or len(text_pair) != len(firsts):
            raise ValueError(
                f"text_pair must be a list as long as text ({len(firsts)}), got {type(text_pair).__name__}"
            )
        return firsts, list(text_pair), True
    if firsts and all(isinstance(t, (tuple, list)) for t in firsts):
        for t in firsts:
            if len(t) != 2:
                raise ValueError(f"a pair must hold two texts, got {len(t)}")
        return [t[0] for t in firsts], [t[1] for t in firsts], True
    return firsts, None, True


def _parse_words(text: Any, text_pair: Any) -> tuple[list[Any], list[Any] | None, bool]:
    """_parse_inputs for is_split_into_words: a list of words, or a batch (list) of lists of words."""

    def lists(value: Any, name: str) -> tuple[list[list[Any]], bool]:
        if not isinstance(value, (list, tuple)):
            raise TokenizerInputError(
                f"with is_split_into_words=True, {name} must be a list of words or a list of such lists, "
                f"not {type(value).__name__}"
            )
        batched = bool(value) and isinstance(value[0], (list, tuple))
        if batched and not all(isinstance(words, (list, tuple)) for words in value):
            raise TokenizerInputError(f"{name} mixes lists of words with other values")
        return ([list(words) for words in value] if batched else [list(value)]), batched

    firsts, batched = lists(text, "text")
    if text_pair is None:
        return firsts, None, batched
    seconds, pair_batched = lists(text_pair, "text_pair")
    if pair_batched != batched or len(seconds) != len(firsts):
        raise ValueError(
            "text_pair must have text's shape: a list of words, or as many lists of words as text"
        )
    return firsts, seconds, batched


def _wanted(asked: bool | None, name: str, model_input_names: Sequence[str]) -> bool:
    """Whether a call returns `name`: as it asks, else as the tokenizer's model_input_names say."""
    return name in model_input_names if asked is None else bool(asked)


def _side(value: str, name: str) -> str:
    if value not in ("left", "right"):
        raise ValueError(f"{name} must be 'left' or 'right', got {value!r}")
    return value


_PADDED_KEYS = ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask")


def _pad_target(
    lengths: list[int], mode: str | None, max_length: int | None, multiple: int | None
) -> int | None:
    """The length rows are padded to: the longest or max_length, rounded up to a multiple; None for no padding."""
    if mode == "longest":
        target = max(lengths, default=0)
    elif mode == "max_length" and max_length is not None:
        target = max_length
    else:
        return None
    if multiple and target % multiple:
        target = (target // multiple + 1) * multiple
    return target


def _padded(row: Sequence[Any], value: Any, target: int, left: bool) -> list[Any]:
    row = list(row)
    if len(row) >= target:
        return row
    return [value] * (target - len(row)) + row if left else row + [value] * (target - len(row))


def _lay_out(
    rows: list[_Row], values: list[list[list[Any]]], start: list[Any], sep: list[Any]
) -> list[list[Any]]:
    """Per row: start + the row's range of its first text's values + sep (+ the second text's range + sep)."""
    first = values[0]
    out = []
    for r in rows:
        row = start + first[r.sample][r.a[0] : r.a[1]] + sep
        if r.b is not None:
            row += values[1][r.sample][r.b[0] : r.b[1]] + sep
        out.append(row)
    return out


class TokenizerInputError(TypeError, ValueError):
    """An input of the wrong kind: a TypeError, and the ValueError that transformers raises for it, so that
    code catching either catches it."""


def _is_int_like(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _special_content(name: str, value: Any) -> str:
    """The text of a named special token given as a str or a transformers AddedToken."""
    content = getattr(value, "content", value)
    if not isinstance(content, str) or not content:
        raise TypeError(f"{name} must be a non-empty str, got {content!r}")
    return content


def _token_settings(token: Any) -> dict[str, Any]:
    """The matching settings of a transformers AddedToken, or of its saved entry (a dict), that a
    SpecialToken keeps; none for a plain str."""
    get = token.get if isinstance(token, dict) else (lambda key, default=None: getattr(token, key, default))
    if token is None or isinstance(token, str):
        return {}
    return {"lstrip": bool(get("lstrip", False)), "rstrip": bool(get("rstrip", False)),
            "single_word": bool(get("single_word", False)), "normalized": get("normalized")}  # fmt: skip


def _id_list(ids: Any) -> list[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    return [int(i) for i in ids]


# Keys that hold token ids, masks and positions: int64 tensors. Others (labels) keep their type.
_INT_KEYS = frozenset(_PADDED_KEYS + ("offset_mapping", "length", "overflow_to_sample_mapping"))


def _to_tensors(data: dict[str, Any], kind: str, prepend_batch_axis: bool) -> dict[str, Any]:
    """Rows as 'pt' (torch), 'np' (numpy), 'tf' (TensorFlow) or 'jax' arrays, the ids as int64 (int32 under
    JAX's default of no 64-bit types)."""
    if kind not in _TENSOR_KINDS:
        raise ValueError(f"return_tensors must be 'pt', 'np', 'tf', 'jax' or None, got {kind!r}")
    if kind == "pt":
        import torch
    convert = _TENSOR_KINDS[kind]()
    out = {}
    for key, value in data.items():
        rows = [value] if prepend_batch_axis else value
        if (
            isinstance(rows, list)
            and rows
            and isinstance(rows[0], (list, tuple))
            and len({len(r) for r in rows}) > 1
        ):
            if kind == "np":  # an object array of rows, as transformers gives it
                ragged = np.empty(len(rows), dtype=object)
                ragged[:] = [np.asarray(r, dtype=np.int64 if key in _INT_KEYS else None) for r in rows]
                out[key] = ragged
                continue
            raise ValueError(
                f"cannot make a tensor of {key}: its rows have different lengths; pass padding=True (and "
                "truncation=True) to make them equal"
            )
        if key not in _INT_KEYS:
            out[key] = torch.tensor(rows) if kind == "pt" else convert(np.asarray(rows))
            continue
        array = np.asarray(rows, dtype=np.int64)
        if key == "offset_mapping" and array.size == 0:
            array = array.reshape(len(rows), -1, 2)
        out[key] = convert(array)
    return out


def _torch_from_numpy() -> Callable[[np.ndarray], Any]:
    import torch

    return torch.from_numpy


def _tf_constant() -> Callable[[np.ndarray], Any]:
    import tensorflow as tf

    return tf.constant


def _jax_array() -> Callable[[np.ndarray], Any]:
    import jax.numpy as jnp

    return jnp.asarray


# return_tensors -> a function that gives the converter from numpy (importing its framework only when asked)
_TENSOR_KINDS: dict[str, Callable[[], Callable[[np.ndarray], Any]]] = {
    "pt": _torch_from_numpy,
    "np": lambda: lambda array: array,
    "tf": _tf_constant,
    "jax": _jax_array,
}


def _framework(value: Any) -> str | None:
    """'pt' or 'np' when value, or its first row, is a torch tensor or a numpy array (what pad() returns)."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if type(value).__module__.split(".")[0] == "torch":
        return "pt"
    return "np" if isinstance(value, np.ndarray) else None


def _to_python(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    return value


def _clean_up_spaces(text: str) -> str:
    # Undo the spaces that word-level detokenisation leaves before punctuation and English contractions.
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):  # fmt: skip
        text = text.replace(before, after)
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_surrogates(text: str) -> None:
    m = _SURROGATE.search(text)
    if m:
        raise ValueError(
            f"text contains a lone surrogate U+{ord(m.group()):04X} at position {m.start()}, which is not valid"
            " Unicode; decode the bytes with errors='replace' or fix the source"
        )


def _load_sentencepiece(
    model: bytes, where: str, options: dict[str, Any] | None = None
) -> spm.SentencePieceProcessor:
    try:
        sp = spm.SentencePieceProcessor(**(options or {}))
    except TypeError as e:
        raise ValueError(
            f"sp_model_kwargs {options} are not SentencePiece's encoding options ({e})"
        ) from None
    try:
        sp.LoadFromSerializedProto(model)
    except (RuntimeError, OSError, ValueError) as e:
        raise ValueError(f"{where} is not a valid SentencePiece model ({e})") from None
    if sp.get_piece_size() == 0:
        raise ValueError(f"{where} is not a valid SentencePiece model (it holds no pieces)")
    return sp


def _read_settings(directory: Path) -> dict[str, Any]:
    """The tokenizer settings of tokenizer_config.json / special_tokens_map.json that this class uses."""
    settings: dict[str, Any] = {}
    for name in (SPECIAL_TOKENS_MAP_NAME, TOKENIZER_CONFIG_NAME):
        path = directory / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e})") from None
        flags = (
            "do_lower_case",
            "remove_space",
            "keep_accents",
            "clean_up_tokenization_spaces",
            "split_special_tokens",
        )
        for key in flags:
            if isinstance(data.get(key), bool):
                settings[key] = data[key]
        for key in ("padding_side", "truncation_side"):
            if data.get(key) in ("left", "right"):
                settings[key] = data[key]
        if isinstance(data.get("sp_model_kwargs"), dict):
            settings["sp_model_kwargs"] = data["sp_model_kwargs"]
        names = data.get("model_input_names")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            settings["model_input_names"] = names
        max_len = data.get("model_max_length")
        if isinstance(max_len, int) and max_len > 0:  # (1e30: no limit, as written by transformers)
            settings["model_max_length"] = max_len
        extra = data.get("additional_special_tokens")
        if isinstance(extra, list):
            settings["additional_special_tokens"] = [
                e.get("content") if isinstance(e, dict) else e for e in extra
            ]
        for key in _NAMED_SPECIALS:
            value = data.get(key)
            if isinstance(value, dict):
                if key == "mask_token" and isinstance(value.get("lstrip"), bool):
                    settings["mask_lstrip"] = value["lstrip"]
                value = value.get("content")
            if isinstance(value, str):
                settings[key] = value
        decoder = data.get("added_tokens_decoder")
        if isinstance(decoder, dict) and "mask_token" in settings:
            for entry in decoder.values():
                if isinstance(entry, dict) and entry.get("content") == settings["mask_token"]:
                    settings["mask_lstrip"] = bool(entry.get("lstrip", True))
    return settings


_CONTROL, _USER_DEFINED = 3, 4  # SentencePiece.Type values in the model proto


def _piece_types(model: bytes) -> list[int]:
    """The type (1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte) of every piece, from the proto."""
    types = []
    for field, value in _proto_fields(model):
        if field == 1:
            kind = 1
            for f, v in _proto_fields(value):
                if f == 3:
                    kind = v
            types.append(kind)
    return types


def _precompiled_charsmap(model: bytes) -> bytes:
    """The normaliser's precompiled character map (NormalizerSpec field 2) of a serialised ModelProto."""
    for field, value in _proto_fields(model):
        if field == 3:
            for f, v in _proto_fields(value):
                if f == 2:
                    return v
    return b""


def _model_from_tokenizer_json(path: Path) -> tuple[bytes, dict[str, Any]]:
    """A SentencePiece model rebuilt from a tokenizer.json of a converted Unigram model, and its settings.

    Piece types come from the added tokens (special: control, other: user-defined), the normaliser's
    character map from its Precompiled step, and the -100 that transformers' converter subtracts from
    "▁9,"-style pieces is given back.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        model = data["model"]
        vocab, unk_id = model["vocab"], model.get("unk_id")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a tokenizer.json with a model vocabulary ({e})") from None
    if model.get("type") != "Unigram" or unk_id is None:
        raise ValueError(
            f"{path} holds a {model.get('type')} model; an ALBERT tokenizer needs a Unigram one with <unk>"
        )
    normalizer = data.get("normalizer") or {}
    steps = (
        normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]
    )
    kinds = {step.get("type") for step in steps}
    charsmap = b"".join(
        base64.b64decode(step["precompiled_charsmap"]) for step in steps if step.get("type") == "Precompiled"
    )
    added = {t["id"]: t for t in data.get("added_tokens", []) if isinstance(t, dict) and "id" in t}
    pieces = []
    for i, (piece, score) in enumerate(vocab):
        kind = 2 if i == unk_id else (3 if added[i].get("special") else 4) if i in added else 1
        if kind == 1 and len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit() and score < -50:
            score += 100.0
        fields = _proto_bytes(1, piece.encode("utf-8")) + _proto_key(2, 5) + struct.pack("<f", score)
        pieces.append(_proto_bytes(1, fields + (_proto_varint(3, kind) if kind != 1 else b"")))
    pad_id = next((i for i, t in added.items() if t.get("content") == "<pad>"), -1)
    trainer = (
        _proto_varint(3, 1)  # UNIGRAM
        + _proto_varint(4, len(vocab))
        + b"".join(
            _proto_varint(field, value) for field, value in ((40, unk_id), (41, -1), (42, -1), (43, pad_id))
        )
    )
    norm = _proto_bytes(1, b"nmt_nfkc") + (_proto_bytes(2, charsmap) if charsmap else b"")
    norm += _proto_varint(3, 1) + _proto_varint(4, 1)  # add_dummy_prefix, remove_extra_whitespaces
    proto = b"".join(pieces) + _proto_bytes(2, trainer) + _proto_bytes(3, norm)
    settings = {"do_lower_case": "Lowercase" in kinds, "keep_accents": "StripAccents" not in kinds}
    return proto, settings


def _proto_key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers as 64-bit two's complement, as protobuf writes int32 fields
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _proto_varint(field: int, value: int) -> bytes:
    return _proto_key(field, 0) + _varint(value)


def _proto_bytes(field: int, value: bytes) -> bytes:
    return _proto_key(field, 2) + _varint(len(value)) + value


def _proto_fields(buf: bytes) -> Iterable[tuple[int, Any]]:
    """Top-level (field number, value) pairs of a protobuf message: a minimal wire-format reader."""
    pos, n = 0, len(buf)

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    while pos < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, varint()
        elif wire == 1:
            yield field, buf[pos : pos + 8]
            pos += 8
        elif wire == 2:
            length = varint()
            yield field, buf[pos : pos + length]
            pos += length
        elif wire == 5:
            yield field, buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
