"""ALBERT pretraining examples: sentence-order pairs with whole-word n-gram masking, written as shards.

The recipe is that of google-research/albert `create_pretraining_data.py` (Lan et al., 2019, section
4.1): documents are split into sentences, sentences into SentencePiece tokens; consecutive sentences
are packed into a segment pair [CLS] A [SEP] B [SEP] of at most max_seq_length tokens (a shorter target
with probability short_seq_prob), and A and B swap places for half of the pairs (sentence-order label
1 = swapped). Then whole words are masked in n-grams of n <= max_ngram words with p(n) proportional to
1/n, about masked_lm_prob of the tokens but at most max_predictions_per_seq, each replaced by [MASK]
80% of the time, a random token 10%, itself 10%.

Where we differ from the original, on purpose: every draw comes from a generator seeded by (seed,
shard, dupe), so the output is reproducible (the original's n-gram draw used numpy's global state); the
short target length is drawn per pair rather than per document (our documents range from a paragraph
to a whole address); a chunk holding a single sentence is cut in two at a word boundary instead of
pairing it with a random document, which would make no sense for sentence order; a sentence longer
than half a segment is cut at word boundaries so no text is thrown away by truncation; n-grams never
cross from A into B; the masked share is counted on the text tokens, not [CLS]/[SEP]; random
replacements never draw a special token. A word is, as in the original, a piece that starts one (it
begins with "▁" or "<", is one punctuation mark, or holds anything but English letters and punctuation:
digits, other scripts) and the pieces after it that do not; with whole_word_mask off (the original's
--do_whole_word_mask=False), every piece is one.

The corpus is streamed: documents are read, sentence-split (with a cache, since splitting is the slow
step), tokenized and grouped into input shards of bounded size; each input shard becomes one output
shard directory of .npy arrays, memory-mapped by `PretrainingDataset`.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from openalbert.vocab import check_corpus_file

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "openalbert-pretraining-examples"
FORMAT_VERSION = 1
SPLITTER_VERSION = "pysbd-chunked-1"


class PieceTokenizer(Protocol):
    """The tokenizer surface the example generator needs (openalbert's or transformers' AlbertTokenizer)."""

    cls_token_id: int
    sep_token_id: int
    pad_token_id: int
    mask_token_id: int
    vocab_size: int

    def tokenize(self, text: str) -> list[str]: ...

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]: ...


@dataclass(frozen=True)
class ExampleOptions:
    """How pairs are built and masked; the defaults are those of the original's data generation, except
    max_seq_length: 128 (at which 20 predictions are 15% of the tokens) where the original and the paper use
    512 (where the 20 predictions are about 4%)."""

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    max_ngram: int = 3
    whole_word_mask: bool = True  # False: every piece is a word of its own (BERT's original token masking)
    random_replace_prob: float = 0.1
    keep_prob: float = 0.1

    def __post_init__(self) -> None:
        if not 8 <= self.max_seq_length <= 32767:
            raise ValueError(f"max_seq_length must be in [8, 32767], got {self.max_seq_length}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if not 1 <= self.max_predictions_per_seq <= self.max_seq_length:
            raise ValueError(
                f"max_predictions_per_seq must be in [1, max_seq_length={self.max_seq_length}], "
                f"got {self.max_predictions_per_seq}"
            )
        if not 1 <= self.max_ngram <= 10:
            raise ValueError(f"max_ngram must be in [1, 10], got {self.max_ngram}")
        if (
            self.random_replace_prob < 0
            or self.keep_prob < 0
            or self.random_replace_prob + self.keep_prob > 1
        ):
            raise ValueError(
                f"random_replace_prob ({self.random_replace_prob}) and keep_prob ({self.keep_prob}) "
                "must be >= 0 and sum to at most 1"
            )

    @property
    def max_num_tokens(self) -> int:
        return self.max_seq_length - 3  # room for [CLS], [SEP], [SEP]


@dataclass
class ExampleStats:
    """Counts gathered while generating, written to the manifest (and checked by the tests)."""

    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    examples: int = 0
    swapped: int = 0
    text_tokens: int = 0
    masked: int = 0
    replaced_mask: int = 0
    replaced_random: int = 0
    replaced_keep: int = 0
    ngram_counts: list[int] = field(default_factory=list)
    ngram_drawn: list[int] = field(default_factory=list)

    def add(self, other: ExampleStats) -> None:
        for name, value in asdict(other).items():
            if isinstance(value, list):
                setattr(self, name, _add_lists(getattr(self, name), value))
            else:
                setattr(self, name, getattr(self, name) + value)


def _add_lists(a: list[int], b: list[int]) -> list[int]:
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n)]


def derive_rng(seed: int, *keys: int) -> random.Random:
    """A `random.Random` whose state depends only on (seed, *keys), independent of any global state."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(4, dtype=np.uint32)
    return random.Random(int.from_bytes(state.tobytes(), "little"))


# ---------------------------------------------------------------------------------------------------
# Reading documents and splitting sentences.


def iter_documents(path: str | Path) -> Iterator[list[str]]:
    """Documents of a corpus file as lists of paragraphs.

    A `.jsonl` file holds one JSON object per line with the document in its "text" field (paragraphs
    separated by newlines); any other file is plain text with one document per blank-line-separated
    block and one paragraph per line.
    """
    path = check_corpus_file(path)
    # A stray invalid byte in a large scraped corpus costs one replaced character, not the run.
    with path.open(encoding="utf-8", errors="replace") as f:
        if path.suffix == ".jsonl":
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(
                        f"{path}:{lineno}: expected a JSON object with a 'text' field ({e})"
                    ) from e
                paras = [p.strip() for p in str(text).split("\n") if p.strip()]
                if paras:
                    yield paras
            return
        doc: list[str] = []
        for line in f:
            line = line.strip()
            if line:
                doc.append(line)
            elif doc:
                yield doc
                doc = []
        if doc:
            yield doc


# A cut that is almost surely a sentence end: two lower-case letters, a full stop, space, a capital.
_SAFE_BREAK = re.compile(r"(?<=[a-z]{2}[.!?])\s+(?=[A-Z])")


class SentenceSplitter:
    """English sentence splitting with pysbd, fed paragraph-sized pieces.

    pysbd's cost grows faster than linearly with the length of its input, and some of our documents
    are one 50 kB line (the State of the Union transcripts), so long paragraphs are first cut at
    unambiguous sentence ends into pieces of about `chunk_chars`; pysbd decides everything else.
    """

    def __init__(self, chunk_chars: int = 1000) -> None:
        try:
            import pysbd
        except ImportError as e:  # pragma: no cover - pysbd is in the train extra
            raise ImportError("sentence splitting needs pysbd: pip install 'openalbert[train]'") from e
        self._segmenter = pysbd.Segmenter(language="en", clean=False)
        self.chunk_chars = chunk_chars

    def _chunks(self, text: str) -> list[str]:
        if len(text) <= 2 * self.chunk_chars:
            return [text]
        chunks, start = [], 0
        for m in _SAFE_BREAK.finditer(text):
            if m.start() - start >= self.chunk_chars:
                chunks.append(text[start : m.start()])
                start = m.end()
        chunks.append(text[start:])
        return chunks

    def split(self, paragraph: str) -> list[str]:
        """The sentences of one paragraph, stripped, none empty."""
        out: list[str] = []
        for chunk in self._chunks(paragraph):
            try:
                pieces = self._segmenter.segment(chunk)
            except Exception:  # noqa: BLE001 - a rule-based splitter can trip on odd text; keep it whole
                pieces = [chunk]
            out.extend(s for s in (p.strip() for p in pieces) if s)
        return out


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where sentence-split corpora are cached: $OPENALBERT_CACHE/sentences or ~/.cache/openalbert/sentences."""
    root = os.environ.get("OPENALBERT_CACHE") or Path.home() / ".cache" / "openalbert"
    return Path(root) / "sentences"


def iter_sentence_documents(
    path: str | Path, splitter: SentenceSplitter | None = None, cache_dir: str | Path | None = None
) -> Iterator[list[str]]:
    """Documents of a corpus file as lists of sentences, read from or written to a cache keyed by content."""
    path = check_corpus_file(path)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{_file_digest(path)[:32]}-{SPLITTER_VERSION}.txt"
        if cache.exists():
            # One sentence per line, a blank line after each document.
            yield from iter_documents(cache)
            return
    splitter = splitter or SentenceSplitter()
    tmp = None
    writer = None
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # A unique name: the same file may be streamed twice at once (listed twice, or two processes).
        fd, name = tempfile.mkstemp(dir=cache.parent, prefix=cache.stem, suffix=".tmp")
        tmp = Path(name)
        writer = os.fdopen(fd, "w", encoding="utf-8")
    complete = False
    try:
        for paras in iter_documents(path):
            sentences = [s for p in paras for s in splitter.split(p)]
            if not sentences:
                continue
            if writer is not None:
                writer.write("\n".join(s.replace("\n", " ") for s in sentences) + "\n\n")
            yield sentences
        complete = True
    finally:
        if writer is not None and tmp is not None and cache is not None:
            writer.close()
            if complete:
                tmp.replace(cache)
            else:
                tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------
# Tokens.


@dataclass(frozen=True)
class _Ids:
    """The ids example building needs; small and picklable, so shards can be built in worker processes."""

    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    vocab_size: int
    special_ids: frozenset[int]


class _Tokens:
    """Wraps a tokenizer: ids and word-start flags per sentence, and the special ids."""

    def __init__(self, tokenizer: PieceTokenizer) -> None:
        self.tokenizer = tokenizer
        cls_id, sep_id = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)
        pad_id, mask_id = int(tokenizer.pad_token_id), int(tokenizer.mask_token_id)
        specials = {cls_id, sep_id, pad_id, mask_id}
        unk = getattr(tokenizer, "unk_token_id", None)
        if unk is not None:
            specials.add(int(unk))
        self.ids = _Ids(cls_id, sep_id, pad_id, mask_id, int(tokenizer.vocab_size), frozenset(specials))
        self._starts: dict[str, bool] = {}  # starts_word of each piece seen
        if max(specials) >= self.ids.vocab_size:
            raise ValueError(f"tokenizer has a special id >= its vocab_size {self.ids.vocab_size}")

    def encode(self, sentence: str) -> tuple[np.ndarray, np.ndarray]:
        pieces = self.tokenizer.tokenize(sentence)
        ids = np.asarray(self.tokenizer.convert_tokens_to_ids(pieces), dtype=np.int32)
        known = self._starts
        for p in pieces:
            if p not in known:
                known[p] = starts_word(p)
        starts = np.fromiter((known[p] for p in pieces), dtype=bool, count=len(pieces))
        return ids, starts


# The original's word rule (create_pretraining_data.py, _is_start_piece_sp): the pieces that start a word.
_PUNCTUATION = frozenset('!"#$%&()*+,-./:;?@[\\]^_`{|}~')
_CONTINUING = frozenset("abcdefghijklmnopqrstuvwxyz") | _PUNCTUATION


def starts_word(piece: str) -> bool:
    """Whether a SentencePiece piece starts a word for whole-word masking: it begins with "▁" (or "<"), is
    one punctuation mark, or holds a character other than English letters and punctuation (a digit,
    another script), each of which the original treats as a word of its own."""
    return (
        piece.startswith(("▁", "<"))
        or piece in _PUNCTUATION
        or not all(c.lower() in _CONTINUING for c in piece)
    )


def _cut_long_sentence(
    ids: np.ndarray, starts: np.ndarray, limit: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut a sentence longer than `limit` pieces into consecutive parts, at word starts where possible."""
    parts = []
    i, n = 0, len(ids)
    while n - i > limit:
        window = np.flatnonzero(starts[i + 1 : i + limit + 1])
        j = i + 1 + int(window[-1]) if len(window) else i + limit
        parts.append((ids[i:j], starts[i:j]))
        i = j
    parts.append((ids[i:], starts[i:]))
    return parts


# ---------------------------------------------------------------------------------------------------
# Pairs and masking.

Segment = tuple[list[int], list[bool]]


def create_pairs_from_document(
    sentences: Sequence[tuple[np.ndarray, np.ndarray]], options: ExampleOptions, rng: random.Random
) -> list[tuple[Segment, Segment, int]]:
    """Pack consecutive sentences into (A, B, swapped) pairs of at most max_seq_length - 3 tokens."""
    max_tokens = options.max_num_tokens
    pairs: list[tuple[Segment, Segment, int]] = []

    def target_length() -> int:
        if rng.random() < options.short_seq_prob:
            return rng.randint(2, max_tokens)
        return max_tokens

    target = target_length()
    chunk: list[tuple[np.ndarray, np.ndarray]] = []
    length = 0
    for i, sentence in enumerate(sentences):
        chunk.append(sentence)
        length += len(sentence[0])
        if i < len(sentences) - 1 and length < target:
            continue
        ids = np.concatenate([s[0] for s in chunk]).tolist()
        starts = np.concatenate([s[1] for s in chunk]).tolist()
        if len(chunk) >= 2:
            a_sentences = rng.randint(1, len(chunk) - 1)
            cut = sum(len(s[0]) for s in chunk[:a_sentences])
        else:
            # One sentence: cut it at a word start so both halves are real, ordered text.
            cuts = [j for j in range(1, len(ids)) if starts[j]] or list(range(1, len(ids)))
            cut = rng.choice(cuts) if cuts else 0
        chunk, length = [], 0
        target = target_length()
        if cut <= 0 or cut >= len(ids):
            continue
        a, b = (ids[:cut], starts[:cut]), (ids[cut:], starts[cut:])
        swapped = int(rng.random() < 0.5)
        if swapped:
            a, b = b, a
        _truncate_pair(a, b, max_tokens, rng)
        pairs.append((a, b, swapped))
    return pairs


def _truncate_pair(a: Segment, b: Segment, max_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment, from its front or its back at random, until the pair fits."""
    while len(a[0]) + len(b[0]) > max_tokens:
        ids, starts = a if len(a[0]) > len(b[0]) else b
        if rng.random() < 0.5:
            del ids[0], starts[0]
        else:
            ids.pop()
            starts.pop()


def mask_whole_word_ngrams(
    ids: list[int],
    starts: list[bool],
    segments: Sequence[tuple[int, int]],
    options: ExampleOptions,
    rng: random.Random,
    mask_id: int,
    vocab_size: int,
    special_ids: frozenset[int],
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Mask whole-word n-grams in `ids` (modified in place).

    `segments` are the [start, end) spans of the text segments; a word starts at a piece flagged in
    `starts` or at the start of a segment, and an n-gram never leaves its segment. Returns (positions,
    labels, sizes of the n-grams masked, sizes drawn before any cut or fallback, kinds) with kinds 0 = [MASK],
    1 = random token, 2 = kept. The masked sizes lean to 1 more than the drawn ones (p(n) ∝ 1/n)
    because, as in the original, a long n-gram that overlaps an earlier one is dropped and one that
    overflows the budget falls back to a shorter one.
    """
    words: list[list[int]] = []
    segment_end: list[int] = []  # for each word, the index one past the last word of its segment
    for start, end in segments:
        first = len(words)
        for pos in range(start, end):
            if pos == start or starts[pos] or not options.whole_word_mask:
                words.append([pos])
            else:
                words[-1].append(pos)
        segment_end.extend([len(words)] * (len(words) - first))
    num_text = sum(end - start for start, end in segments)
    budget = min(options.max_predictions_per_seq, max(1, int(round(num_text * options.masked_lm_prob))))
    cum_weights = list(np.cumsum([1.0 / n for n in range(1, options.max_ngram + 1)]))
    sizes = list(range(1, options.max_ngram + 1))

    order = list(range(len(words)))
    rng.shuffle(order)
    covered: set[int] = set()
    chosen: list[int] = []
    ngram_sizes: list[int] = []
    drawn: list[int] = []
    for w in order:
        if len(chosen) >= budget:
            break
        n = rng.choices(sizes, cum_weights=cum_weights)[0]
        drawn.append(n)
        # As in the original, the size is drawn from all of them and the n-gram then cut at the end of the
        # words (here: of its segment), so a word near the end is masked longer more often than 1/n says.
        n = min(n, segment_end[w] - w)
        # As in the original, an n-gram that overflows the budget falls back to a shorter one.
        while n > 0 and len(chosen) + sum(len(words[k]) for k in range(w, w + n)) > budget:
            n -= 1
        if n == 0:
            continue
        positions = [p for k in range(w, w + n) for p in words[k]]
        if any(p in covered for p in positions):
            continue
        covered.update(positions)
        chosen.extend(positions)
        ngram_sizes.append(n)

    chosen.sort()
    labels = [ids[p] for p in chosen]
    kinds = []
    p_mask = 1.0 - options.random_replace_prob - options.keep_prob
    for p in chosen:
        r = rng.random()
        if r < p_mask:
            ids[p] = mask_id
            kinds.append(0)
        elif r < p_mask + options.random_replace_prob:
            token = rng.randrange(vocab_size)
            while token in special_ids:
                token = rng.randrange(vocab_size)
            ids[p] = token
            kinds.append(1)
        else:
            kinds.append(2)
    return chosen, labels, ngram_sizes, drawn, kinds


# ---------------------------------------------------------------------------------------------------
# Shards.


class _ShardWriter:
    """Collects examples of one shard as fixed-width rows and writes them as .npy files."""

    def __init__(self, options: ExampleOptions, vocab_size: int, pad_id: int) -> None:
        self.options = options
        self.pad_id = pad_id
        self.id_dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
        self.rows: dict[str, list[np.ndarray]] = {k: [] for k in ("input_ids", "mlm_positions", "mlm_ids")}
        self.lengths: list[tuple[int, int]] = []
        self.sop: list[int] = []

    def add(
        self, ids: list[int], a_length: int, positions: list[int], labels: list[int], swapped: int
    ) -> None:
        T, P = self.options.max_seq_length, self.options.max_predictions_per_seq
        row = np.full(T, self.pad_id, dtype=self.id_dtype)
        row[: len(ids)] = ids
        pos = np.full(P, -1, dtype=np.int16)
        pos[: len(positions)] = positions
        lab = np.zeros(P, dtype=self.id_dtype)
        lab[: len(labels)] = labels
        self.rows["input_ids"].append(row)
        self.rows["mlm_positions"].append(pos)
        self.rows["mlm_ids"].append(lab)
        self.lengths.append((a_length, len(ids)))
        self.sop.append(swapped)

    def __len__(self) -> int:
        return len(self.sop)

    def write(self, directory: Path, order: np.ndarray) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        arrays = {name: np.stack(rows) for name, rows in self.rows.items()}
        arrays["lengths"] = np.asarray(self.lengths, dtype=np.int16).reshape(-1, 2)
        arrays["sentence_order_label"] = np.asarray(self.sop, dtype=np.int8)
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array[order])
        if directory.exists():
            shutil.rmtree(directory)
        tmp.replace(directory)


def _build_shard(
    shard_index: int,
    documents: list[list[tuple[np.ndarray, np.ndarray]]],
    tokens: _Ids,
    options: ExampleOptions,
    dupe_factor: int,
    seed: int,
    directory: Path,
) -> tuple[int, ExampleStats]:
    writer = _ShardWriter(options, tokens.vocab_size, tokens.pad_id)
    stats = ExampleStats(ngram_counts=[0] * options.max_ngram, ngram_drawn=[0] * options.max_ngram)
    for dupe in range(dupe_factor):
        rng = derive_rng(seed, shard_index, dupe)
        for doc in documents:
            for (a_ids, a_starts), (b_ids, b_starts), swapped in create_pairs_from_document(
                doc, options, rng
            ):
                ids = [tokens.cls_id, *a_ids, tokens.sep_id, *b_ids, tokens.sep_id]
                starts = [True, *a_starts, True, *b_starts, True]
                a_end = 1 + len(a_ids)
                segments = [(1, a_end), (a_end + 1, a_end + 1 + len(b_ids))]
                positions, labels, ngrams, drawn, kinds = mask_whole_word_ngrams(
                    ids, starts, segments, options, rng, tokens.mask_id, tokens.vocab_size, tokens.special_ids
                )
                writer.add(ids, a_end + 1, positions, labels, swapped)
                stats.examples += 1
                stats.swapped += swapped
                stats.text_tokens += len(a_ids) + len(b_ids)
                stats.masked += len(positions)
                stats.replaced_mask += kinds.count(0)
                stats.replaced_random += kinds.count(1)
                stats.replaced_keep += kinds.count(2)
                for n in ngrams:
                    stats.ngram_counts[n - 1] += 1
                for n in drawn:
                    stats.ngram_drawn[n - 1] += 1
    if len(writer):
        # Shuffle within the shard so that a sequential reader does not see one document at a time.
        order = np.random.default_rng(
            np.random.SeedSequence([seed, shard_index, dupe_factor, 1])
        ).permutation(len(writer))
        writer.write(directory, order)
    return len(writer), stats


def _interleave(files: list[Path], splitter: SentenceSplitter, cache: Path) -> Iterator[list[str]]:
    """Documents of all files, mixed in proportion to file size: always from the least-consumed file.

    Mixing keeps every shard (and any prefix of the shards) a sample of all sources, without a shuffle
    that would need the whole corpus in memory; it is deterministic, so seeds stay tied to the data.
    """
    streams = [iter_sentence_documents(f, splitter, cache) for f in files]
    sizes = [max(1, f.stat().st_size) for f in files]
    consumed = [0] * len(files)
    live = set(range(len(files)))
    while live:
        k = min(live, key=lambda i: (consumed[i] / sizes[i], i))
        sentences = next(streams[k], None)
        if sentences is None:
            live.discard(k)
            continue
        consumed[k] += sum(len(s) + 1 for s in sentences) + 1
        yield sentences


def prepare_pretraining_data(
    corpus_files: Iterable[str | Path],
    tokenizer: PieceTokenizer,
    output_dir: str | Path,
    max_seq_length: int = 128,
    dupe_factor: int = 5,
    seed: int = 12345,
    shard_size: int = 100_000,
    short_seq_prob: float = 0.1,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    max_ngram: int = 3,
    whole_word_mask: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    workers: int = 1,
) -> dict[str, Any]:
    """Turn raw text files into shards of ALBERT pretraining examples in `output_dir`; return the manifest.

    Each shard holds about `shard_size` examples (`dupe_factor` differently masked passes over the
    same documents); the result depends only on the files, the tokenizer and the arguments, not on
    `workers`, the processes that build shards while this one reads and tokenizes the text.
    Sentence-split text is cached under `cache_dir` (default: `default_cache_dir()`).
    """
    options = ExampleOptions(
        max_seq_length=max_seq_length,
        short_seq_prob=short_seq_prob,
        masked_lm_prob=masked_lm_prob,
        max_predictions_per_seq=max_predictions_per_seq,
        max_ngram=max_ngram,
        whole_word_mask=whole_word_mask,
    )
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    files = [Path(f) for f in corpus_files]
    if not files:
        raise ValueError("no corpus files given")
    for f in files:
        check_corpus_file(f)
    tokens = _Tokens(tokenizer)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Old shards would be picked up by nothing (the manifest lists shards) but would waste space.
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for old in out.glob("shard_*"):
        if old.is_dir():
            shutil.rmtree(old)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    from tqdm.auto import tqdm

    # Input shards are cut by token count, so the cut points, and hence the seeds, depend only on the data.
    shard_tokens = max(1, shard_size // dupe_factor) * options.max_num_tokens
    long_limit = max(1, options.max_num_tokens // 2)
    splitter = SentenceSplitter()
    total = ExampleStats(ngram_counts=[0] * max_ngram, ngram_drawn=[0] * max_ngram)
    shards: list[dict[str, Any]] = []
    buffer: list[list[tuple[np.ndarray, np.ndarray]]] = []
    buffered = built = 0  # built: input shards cut so far, each one's index (and seed) and name
    # Shards being built by workers, oldest first; results are recorded in shard order.
    pending: collections.deque[tuple[str, Future]] = collections.deque()

    def record(name: str, result: tuple[int, ExampleStats]) -> None:
        count, stats = result
        total.add(stats)
        if count:
            shards.append({"name": name, "num_examples": count})
        bar.set_postfix(examples=total.examples)

    def flush() -> None:
        nonlocal buffer, buffered, built
        name = f"shard_{built:05d}"
        job = (built, buffer, tokens.ids, options, dupe_factor, seed, out / name)
        buffer, buffered, built = [], 0, built + 1
        if pool is None:
            record(name, _build_shard(*job))
            return
        pending.append((name, pool.submit(_build_shard, *job)))
        while len(pending) > 2 * workers:  # bound the documents held in memory
            done, future = pending.popleft()
            record(done, future.result())

    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:
            # spawn, not fork: the parent may hold torch's thread pools, which a fork can deadlock
            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        bar = stack.enter_context(
            tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True, disable=not progress)
        )
        bar.set_description("examples")
        for sentences in _interleave(files, splitter, cache):
            doc = []
            for sentence in sentences:
                ids, starts = tokens.encode(sentence)
                if len(ids) == 0:
                    continue
                doc.extend(
                    _cut_long_sentence(ids, starts, long_limit) if len(ids) > long_limit else [(ids, starts)]
                )
            total.documents += 1
            total.sentences += len(sentences)
            total.tokens += sum(len(s[0]) for s in doc)
            bar.update(sum(len(s.encode("utf-8")) + 1 for s in sentences) + 1)
            if doc:
                buffer.append(doc)
                buffered += sum(len(s[0]) for s in doc)
            if buffered >= shard_tokens:
                flush()
        if buffer:
            flush()
        while pending:
            done, future = pending.popleft()
            record(done, future.result())

    if not sum(s["num_examples"] for s in shards):
        raise ValueError(
            f"the corpus ({', '.join(map(str, files))}) gave no pretraining examples: {total.documents} "
            f"documents, {total.tokens} tokens read"
        )
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "num_examples": sum(s["num_examples"] for s in shards),
        "max_seq_length": max_seq_length,
        "max_predictions_per_seq": max_predictions_per_seq,
        "shards": shards,
        "special_ids": {
            "pad": tokens.ids.pad_id,
            "cls": tokens.ids.cls_id,
            "sep": tokens.ids.sep_id,
            "mask": tokens.ids.mask_id,
        },
        "vocab_size": tokens.ids.vocab_size,
        "options": {**asdict(options), "dupe_factor": dupe_factor, "seed": seed, "shard_size": shard_size},
        "sentence_splitter": SPLITTER_VERSION,
        "corpus_files": [{"path": str(f), "bytes": f.stat().st_size} for f in files],
        "stats": asdict(total),
    }
    tmp = out / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out / MANIFEST_NAME)
    return manifest


def read_manifest(data_dir: str | Path) -> dict[str, Any]:
    """The manifest of a directory written by `prepare_pretraining_data`, checked for format."""
    path = Path(data_dir) / MANIFEST_NAME
    if Path(data_dir).is_file():
        raise NotADirectoryError(
            f"{data_dir} is a file, not prepared examples: pass raw text as --corpus (pretrain prepares it), "
            "or run `openalbert prepare-data` on it first"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `openalbert prepare-data` to create {data_dir}")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is not an {FORMAT_NAME} v{FORMAT_VERSION} manifest "
            f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})"
        )
    return manifest


class PretrainingDataset(torch.utils.data.Dataset):
    """The examples written by `prepare_pretraining_data`, as dicts of AlbertForPreTraining's inputs.

    Each item has `input_ids`, `attention_mask`, `token_type_ids`, `labels` (-100 where nothing is
    predicted) of shape [max_seq_length] and a scalar `sentence_order_label`, all int64. Shards are
    memory-mapped on first use, so a DataLoader worker only touches the pages it reads.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.manifest = read_manifest(self.data_dir)
        self.max_seq_length = int(self.manifest["max_seq_length"])
        self.pad_token_id = int(self.manifest["special_ids"]["pad"])
        counts = [int(s["num_examples"]) for s in self.manifest["shards"]]
        self._names = [s["name"] for s in self.manifest["shards"]]
        self._ends = np.cumsum(counts)
        self._maps: dict[int, dict[str, np.ndarray]] = {}
        self._positions = np.arange(self.max_seq_length)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened in each worker rather than pickled.
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._maps:
            directory = self.data_dir / self._names[k]
            names = ("input_ids", "lengths", "mlm_positions", "mlm_ids", "sentence_order_label")
            self._maps[k] = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in names}
        return self._maps[k]

    def collate_batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The items at `indices` stacked into one batch, read shard by shard with array indexing.

        Equal to collating `[self[i] for i in indices]`, without building a dict of tensors per
        example: at GPU batch sizes the per-example path costs more than the training step.
        """
        n = len(self)
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        index = np.where(index < 0, index + n, index)
        outside = (index < 0) | (index >= n)
        if outside.any():
            bad = int(index[outside][0])
            raise IndexError(f"example index {bad} out of range for {n} examples")
        shard = np.searchsorted(self._ends, index, side="right")
        row = index - np.concatenate([[0], self._ends[:-1]])[shard]
        size, width = len(index), self.max_seq_length
        predictions = int(self.manifest["max_predictions_per_seq"])
        input_ids = np.empty((size, width), dtype=np.int64)
        lengths = np.empty((size, 2), dtype=np.int64)
        positions = np.empty((size, predictions), dtype=np.int64)
        targets = np.empty((size, predictions), dtype=np.int64)
        order = np.empty(size, dtype=np.int64)
        for k in np.unique(shard):
            take = np.nonzero(shard == k)[0]
            maps, rows = self._shard(int(k)), row[take]
            input_ids[take] = maps["input_ids"][rows]
            lengths[take] = maps["lengths"][rows]
            positions[take] = maps["mlm_positions"][rows]
            targets[take] = maps["mlm_ids"][rows]
            order[take] = maps["sentence_order_label"][rows]
        in_text = self._positions < lengths[:, 1:]
        labels = np.full((size, width), -100, dtype=np.int64)
        example, slot = np.nonzero(positions >= 0)
        labels[example, positions[example, slot]] = targets[example, slot]
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(in_text.astype(np.int64)),
            "token_type_ids": torch.from_numpy(
                ((self._positions >= lengths[:, :1]) & in_text).astype(np.int64)
            ),
            "labels": torch.from_numpy(labels),
            "sentence_order_label": torch.from_numpy(order),
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.collate_batch([index]).items()}
