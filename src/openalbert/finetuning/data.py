"""Reading fine-tuning data and turning it into model inputs, for the four task families.

Readers check every record before any training starts and raise `DataError` naming the file and the
line (or, in a SQuAD JSON file, the record's path) of the first bad one. Tables (CSV, TSV, JSONL,
Parquet) are read with pandas, SQuAD JSON with the json module.

Feature builders produce plain dicts of lists that `pad_collate` pads into a batch. The sequences are
built as the pipelines build them at inference time (`[CLS] a [SEP] b [SEP]`, the same truncation and
the same question-answering windows), so a fine-tuned model sees at prediction time what it saw in
training.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import io
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openalbert.pipelines.base import truncate_pair
from openalbert.pipelines.multiple_choice import choice_prompt
from openalbert.tokenizer import stride_windows

TASKS = ("text-classification", "token-classification", "question-answering", "multiple-choice")
ALIGNMENTS = ("first", "all")
# Column names tried, in order, when the caller does not name the text columns.
TEXT_COLUMNS = ("text", "sentence", "sentence1", "premise", "question", "question1", "content", "review")
PAIR_COLUMNS = ("text_pair", "sentence2", "hypothesis", "question2", "answer")
# Two-text layouts of common data sets (GLUE's QNLI, SuperGLUE's BoolQ, SNLI...), as (first, second): found
# before single columns, so that neither text of a pair is left out.
TEXT_PAIRS = (
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("question", "passage"),
    ("text", "text_pair"),
    ("question", "answer"),
)


class DataError(ValueError):
    """A fine-tuning file that cannot be used; the message names the file and the line or record."""


Tokenizer = Any
Feature = dict[str, Any]


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "fine-tuning reads its data with pandas: pip install 'openalbert[finetune]'"
        ) from None
    return pandas


def _names_undecodable_files(read: Callable[..., Any]) -> Callable[..., Any]:
    """`read(path, ...)` with a file that is not UTF-8 named in a DataError (Python's message names none)."""

    @functools.wraps(read)
    def wrapper(path: str | Path, *args: Any, **kwargs: Any) -> Any:
        try:
            return read(path, *args, **kwargs)
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} cannot be read); save it as UTF-8"
            ) from None

    return wrapper


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"data file {path} is a directory; pass the file in it")
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    return path


# ---- tables ---------------------------------------------------------------------------------------------


@dataclass
class Table:
    """Rows read by pandas, and where each row came from (for error messages)."""

    path: Path
    frame: Any  # pandas.DataFrame
    lines: list[int] | None  # file line of each row, when the format has lines
    as_written: bool = False  # CSV/TSV: every cell is the text in the file, nothing is parsed as a number

    def where(self, row: int) -> str:
        if self.lines is None:
            return f"{self.path} (row {row})"
        return f"{self.path}, line {self.lines[row]}"


def _table_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"),
                         (".json", "jsonl"), (".parquet", "parquet"), (".pq", "parquet")):  # fmt: skip
        if name.endswith(suffix):
            return kind
    raise DataError(f"{path}: unknown table format; use .csv, .tsv, .jsonl or .parquet")


def _jsonl_lines(path: Path) -> list[int]:
    with open(path, encoding="utf-8") as f:
        return [i for i, line in enumerate(f, 1) if line.strip()]


def _bad_json_line(path: Path) -> str:
    """The first line of a JSON-lines file that does not hold a JSON object, for the error message."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                return f"{path}, line {i}: not valid JSON ({e.msg})"
            if not isinstance(value, dict):
                return f"{path}, line {i}: expected a JSON object, got {type(value).__name__}"
    return f"{path}: cannot be read as JSON lines"


@_names_undecodable_files
def read_table(path: str | Path) -> Table:
    """Read a CSV (header row), TSV (header row, no quoting), JSON-lines, JSON-array or Parquet file with
    pandas. CSV and TSV cells stay the text they are ("008" is not the number 8); JSON and Parquet values
    keep their types, as plain Python values (Parquet's arrays become lists)."""
    pd = _pandas()

    path = _check_file(path)
    kind = _table_format(path)
    try:
        if kind == "jsonl" and _starts_with(path, "["):
            frame, lines = pd.DataFrame.from_records(_json_array(path)), None
        elif kind == "jsonl":
            try:
                frame = pd.read_json(path, lines=True, dtype=False)
            except ValueError:
                raise DataError(_bad_json_line(path)) from None
            lines = _jsonl_lines(path)
            if len(lines) != len(frame):
                raise DataError(_bad_json_line(path))
        elif kind == "parquet":
            frame, lines = pd.read_parquet(path), None
            for column in frame.columns:  # (numeric columns hold no arrays: only object ones are mapped)
                if frame[column].dtype == np.dtype(object):
                    frame[column] = frame[column].map(_plain)
        else:
            # Only an empty cell is missing: a text "NA" or "null" is text. GLUE's TSVs are unquoted.
            options = {"sep": "\t", "quoting": csv.QUOTE_NONE} if kind == "tsv" else {}
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig", **options
            )
            lines = [i + 2 for i in range(len(frame))]  # one record per line after the header
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ImportError) as e:
        raise DataError(f"{path}: cannot be read as {kind}: {e}") from None
    if len(frame) == 0:
        raise DataError(f"{path} holds no examples")
    return Table(path, frame, lines, as_written=kind in ("csv", "tsv"))


def _starts_with(path: Path, char: str) -> bool:
    """Whether the file's first character that is not white space is `char`."""
    with open(path, encoding="utf-8-sig") as f:
        while chunk := f.read(4096):
            if stripped := chunk.lstrip():
                return stripped[0] == char
    return False


def _json_array(path: Path) -> list[dict[str, Any]]:
    """A JSON file holding one array of objects (transformers' and pandas' `to_json(orient="records")`)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path} (row {i}): expected a JSON object, got {type(record).__name__}")
    return records


def _plain(value: Any) -> Any:
    """A Parquet cell as JSON would give it: numpy arrays as lists, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ---- text classification ------------------------------------------------------------------------------


@dataclass
class ClassificationData:
    """Texts (and optional second texts) with their labels: strings, floats for regression, or tuples of
    strings where the label column holds lists (multi-label)."""

    path: Path
    texts: list[str]
    pairs: list[str] | None
    labels: list[Any]
    is_float: bool
    where: Callable[[int], str]
    columns: tuple[str, str | None, str] = ("text", None, "label")
    is_multi: bool = False


def _pick_column(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str,
                 path: Path, exclude: Sequence[str] = ()) -> str | None:  # fmt: skip
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{path}: no {what} column {wanted!r}; the columns are {list(columns)}")
        return wanted
    return next((c for c in candidates if c in columns and c not in exclude), None)


def read_text_classification(
    path: str | Path,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_separator: str | None = None,
) -> ClassificationData:
    """Read a table of texts (or text pairs) and labels; column names are detected when not given.

    A float label column (pandas dtype float) marks a regression task; a column of lists (JSONL, Parquet)
    a multi-label one, each label a tuple of class names, as is a text column split at `label_separator`
    when it is given (an empty cell: no label); any other label becomes a class name (its string form).
    Missing texts or labels are errors naming the line.
    """
    table = read_table(path)
    frame, where = table.frame, table.where
    columns = [str(c) for c in frame.columns]
    if label_column not in columns:
        raise DataError(f"{table.path}: no label column {label_column!r}; the columns are {columns}")
    if text_column is None and text_pair_column is None:
        text_column, text_pair_column = next((p for p in TEXT_PAIRS if set(p) <= set(columns)), (None, None))
    text = _pick_column(columns, text_column, TEXT_COLUMNS, "text", table.path)
    if text is None:
        raise DataError(
            f"{table.path}: no text column found among {columns}; name it with text_column (--text-column)"
        )
    pair = _pick_column(columns, text_pair_column, PAIR_COLUMNS, "text-pair", table.path, exclude=[text])
    labels = frame[label_column]
    if table.as_written and label_separator is None:
        # A CSV's labels are class names as written, unless every one is a number and some has a decimal
        # point or an exponent: then the task is regression, as pandas' type inference would decide.
        numbers = _pandas().to_numeric(labels, errors="coerce")
        if (numbers.notna() == labels.notna()).all() and _pandas().api.types.is_float_dtype(numbers.dtype):
            labels = numbers
    is_multi = any(isinstance(v, (list, tuple, np.ndarray)) for v in labels)
    if label_separator is not None and not is_multi:
        labels = [
            () if _missing(v) else [n for n in str(v).split(label_separator) if n.strip()] for v in labels
        ]
        is_multi = True
    for i, value in enumerate(labels):
        if is_multi and not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(
                f"{where(i)}: the label ({label_column!r}) must be a list, as other rows' are; got {value!r}"
            )
        if not is_multi and (_missing(value) or (isinstance(value, str) and not value.strip())):
            raise DataError(f"{where(i)}: the label ({label_column!r}) is missing")
    is_float = not is_multi and _pandas().api.types.is_float_dtype(getattr(labels, "dtype", None))
    if is_multi:
        out_labels: list[Any] = [tuple(label_name(v) for v in value) for value in labels]
    else:
        out_labels = [float(v) for v in labels] if is_float else [label_name(v) for v in labels]
        for i, value in enumerate(out_labels if is_float else ()):
            if not math.isfinite(value):
                raise DataError(
                    f"{where(i)}: the label ({label_column!r}) is {value}; a regression target is a finite number"
                )
    texts_by_column = []
    for name in (text, pair):
        if name is None:
            texts_by_column.append(None)
            continue
        values = []
        for i, value in enumerate(frame[name]):
            if _missing(value):
                raise DataError(f"{where(i)}: the text ({name!r}) is missing")
            values.append(str(value))
        texts_by_column.append(values)
    return ClassificationData(
        table.path,
        texts_by_column[0],
        texts_by_column[1],
        out_labels,
        is_float,
        where,
        (text, pair, label_column),
        is_multi,
    )


def label_name(value: Any) -> str:
    """A label as a class name: 1, 1.0 and "1" all become "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _sort_labels(labels: set[str]) -> list[str]:
    """Numbers in numeric order (so 0..K-1 keep their ids), then strings alphabetically."""

    def key(label: str) -> tuple[int, float, str]:
        try:
            return 0, float(label), label
        except ValueError:
            return 1, 0.0, label

    return sorted(labels, key=key)


def build_label_map(train_labels: Sequence[str]) -> dict[str, int]:
    """label -> id over the training labels (numbers numerically, then names alphabetically)."""
    return {label: i for i, label in enumerate(_sort_labels(set(train_labels)))}


def check_labels(labels: Sequence[str], label2id: dict[str, int], where: Callable[[int], str]) -> None:
    """Raise DataError at the first label that the training data never had."""
    for i, label in enumerate(labels):
        if label not in label2id:
            shown = ", ".join(list(label2id)[:20])
            raise DataError(f"{where(i)}: label {label!r} does not occur in the training data ({shown})")


def _pair_ids(
    tokenizer: Tokenizer, first: list[int], second: list[int] | None
) -> tuple[list[int], list[int]]:
    """[CLS] first [SEP] (second [SEP]) and its segment ids."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids = [cls, *first, sep]
    types = [0] * len(ids)
    if second is not None:
        ids += [*second, sep]
        types += [1] * (len(second) + 1)
    return ids, types


def _encode(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def classification_features(
    data: ClassificationData, tokenizer: Tokenizer, label2id: dict[str, int] | None, max_length: int
) -> list[Feature]:
    """One feature per row, the pair cut as the text-classification pipeline cuts it; float labels when
    `label2id` is None (regression)."""
    firsts = _encode(tokenizer, data.texts)
    seconds = _encode(tokenizer, data.pairs) if data.pairs is not None else None
    budget = max_length - 2 - (seconds is not None)
    features = []
    for i, label in enumerate(data.labels):
        a, b = truncate_pair(firsts[i], seconds[i] if seconds is not None else None, budget)
        ids, types = _pair_ids(tokenizer, a, b)
        if label2id is None:
            target: Any = float(label)
        elif isinstance(label, tuple):  # multi-label: one 0/1 target per class
            target = [float(name in label) for name in label2id]
        else:
            target = label2id[label]
        features.append({"input_ids": ids, "token_type_ids": types, "labels": target})
    return features


# ---- token classification ----------------------------------------------------------------------------


@dataclass
class TaggedSentences:
    """Sentences as words with one tag each, and the line each sentence starts on."""

    path: Path
    words: list[list[str]]
    tags: list[list[str]]
    lines: list[int]

    def where(self, i: int) -> str:
        return f"{self.path}, line {self.lines[i]}"

    def __iter__(self):
        return iter(zip(self.words, self.tags))

    def __len__(self) -> int:
        return len(self.words)


@_names_undecodable_files
def read_conll(path: str | Path) -> TaggedSentences:
    """Read CoNLL-style text: one `token TAB tag` per line (the tag in the last column; spaces separate
    columns when no tab is present), a blank line between sentences, `-DOCSTART-` lines skipped."""
    pd = _pandas()

    path = _check_file(path)
    # A line of only spaces or tabs is a sentence break too, as datasets' CoNLL loaders read it.
    with open(path, encoding="utf-8") as f:
        text = "".join(line if line.strip() else "\n" for line in f)
    first = next((line for line in text.splitlines() if line.strip()), "")
    sep = "\t" if "\t" in first else " "
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, header=None, quoting=csv.QUOTE_NONE, skip_blank_lines=False,
                            keep_default_na=False, dtype=str, engine="python")  # fmt: skip
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not CoNLL columns ({e})") from None
    if frame.shape[1] < 2:
        raise DataError(
            f"{path}, line 1: expected a token and a tag separated by a tab, got {first.strip()!r}"
        )
    rows = frame.fillna("").to_numpy()
    words: list[list[str]] = []
    tags: list[list[str]] = []
    lines: list[int] = []
    current_w: list[str] = []
    current_t: list[str] = []
    for i, row in enumerate(rows):
        token = row[0].strip()
        filled = [c for c in row[1:] if c.strip()]
        if not token and not filled:
            if current_w:
                words.append(current_w)
                tags.append(current_t)
                current_w, current_t = [], []
            continue
        if token.startswith("-DOCSTART-"):
            continue
        if not token or not filled:
            raise DataError(
                f"{path}, line {i + 1}: expected a token and a tag, got {sep.join(row).strip()!r}"
            )
        if not current_w:
            lines.append(i + 1)
        current_w.append(token)
        current_t.append(filled[-1].strip())
    if current_w:
        words.append(current_w)
        tags.append(current_t)
    if not words:
        raise DataError(f"{path} holds no sentences")
    return TaggedSentences(path, words, tags, lines)


@_names_undecodable_files
def read_token_jsonl(
    path: str | Path, tokens_key: str = "tokens", tags_key: str | None = None
) -> TaggedSentences:
    """Read records (JSON lines, a JSON array or Parquet) with a list of words (`tokens`) and a list of tags
    (`tags`, `ner_tags` or `labels`)."""
    table = read_table(path)
    columns = [str(c) for c in table.frame.columns]
    if tokens_key not in columns:
        raise DataError(f"{table.path}: no {tokens_key!r} field; the fields are {columns}")
    if tags_key is None:
        tags_key = next((k for k in ("tags", "ner_tags", "labels", "pos_tags") if k in columns), None)
        if tags_key is None:
            raise DataError(
                f"{table.path}: no tags field (tags, ner_tags or labels); the fields are {columns}"
            )
    words, tags = [], []
    for i, (w, t) in enumerate(zip(table.frame[tokens_key], table.frame[tags_key])):
        if not isinstance(w, list) or not isinstance(t, list):
            raise DataError(f"{table.where(i)}: {tokens_key!r} and {tags_key!r} must be lists")
        if len(w) != len(t):
            raise DataError(f"{table.where(i)}: {len(w)} tokens but {len(t)} tags")
        if not w:
            raise DataError(f"{table.where(i)}: the sentence has no tokens")
        words.append([str(x) for x in w])
        tags.append([label_name(x) for x in t])
    return TaggedSentences(table.path, words, tags, list(table.lines or range(1, len(words) + 1)))


@_names_undecodable_files
def read_token_classification(path: str | Path) -> TaggedSentences:
    """CoNLL text (.conll, .txt, .tsv, .bio, ...), or records of words and tags in JSON lines, a JSON array
    (.jsonl, .json) or Parquet (.parquet), by the file name."""
    if Path(path).name.lower().endswith((".jsonl", ".json", ".ndjson", ".parquet", ".pq")):
        return read_token_jsonl(path)
    return read_conll(path)


def tag_map(sentences: TaggedSentences) -> dict[str, int]:
    """tag -> id: "O" first, then entity types with B- before I-, then any other tag."""
    found = {t for tags in sentences.tags for t in tags}

    def key(tag: str) -> tuple[int, str, str]:
        if tag == "O":
            return 0, "", ""
        if len(tag) > 2 and tag[1] == "-":
            return 1, tag[2:], tag[0]
        return 2, tag, ""

    return {t: i for i, t in enumerate(sorted(found, key=key))}


def refuse_integer_tags(sentences: TaggedSentences) -> None:
    """Raise DataError where every tag is an integer (`datasets`' ClassLabel ids): which one is "O" and which
    start entities is not in the file, so entity scores would be wrong."""
    found = {t for tags in sentences.tags for t in tags}
    if found and all(t.lstrip("-").isdigit() for t in found):
        raise DataError(
            f"{sentences.path}: the tags are integers ({', '.join(sorted(found, key=int)[:5])}...); give their "
            "names in id order with label_names (--label-names O,B-PER,I-PER,...) so entities can be scored"
        )


def named_tags(sentences: TaggedSentences, names: Sequence[str]) -> TaggedSentences:
    """`sentences` with integer tags replaced by `names[tag]`; tags that are names already stay."""
    known = set(names)

    def name(tag: str, i: int) -> str:
        if tag in known:
            return tag
        if tag.isdigit() and int(tag) < len(names):
            return names[int(tag)]
        raise DataError(
            f"{sentences.where(i)}: tag {tag!r} is neither one of the label names nor an id of one"
        )

    tags = [[name(t, i) for t in row] for i, row in enumerate(sentences.tags)]
    return dataclasses.replace(sentences, tags=tags)


def check_tags(sentences: TaggedSentences, label2id: dict[str, int]) -> None:
    """Raise DataError at the first sentence with a tag the training data never had."""
    for i, tags in enumerate(sentences.tags):
        for tag in tags:
            if tag not in label2id:
                raise DataError(
                    f"{sentences.where(i)}: tag {tag!r} does not occur in the training data "
                    f"({', '.join(label2id)})"
                )


@dataclass
class TokenFeatures:
    """Model inputs (a sentence longer than max_length spans several), and for each sentence where each of
    its words was put: (feature index, position of its first piece)."""

    features: list[Feature]
    word_positions: list[list[tuple[int, int]]] = field(default_factory=list)


def token_features(
    sentences: TaggedSentences,
    tokenizer: Tokenizer,
    label2id: dict[str, int],
    max_length: int,
    label_all_tokens: bool = False,
) -> TokenFeatures:
    """Word-level tags -> piece-level labels: the first piece of a word carries its tag, the others -100,
    or with `label_all_tokens` the same tag (the I- form of a B- tag, when the data has one).

    A sentence longer than `max_length` pieces goes on in a further input from the word that did not fit,
    so every word is trained on and scored (only a single word longer than a whole input loses its last
    pieces)."""
    flat = [w for words in sentences.words for w in words]
    pieces = _encode(tokenizer, flat)
    unk = tokenizer.unk_token_id
    inside = {i: label2id.get("I-" + t[2:], i) for t, i in label2id.items() if t.startswith("B-")}
    out = TokenFeatures([])
    k = 0
    budget = max_length - 2

    def close(ids: list[int], labels: list[int]) -> None:
        full, types = _pair_ids(tokenizer, ids, None)
        out.features.append({"input_ids": full, "token_type_ids": types, "labels": [-100, *labels, -100]})

    for tags in sentences.tags:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[tuple[int, int]] = []
        for tag in tags:
            # A word SentencePiece drops entirely (a lone control character) still needs a position.
            word_ids = (pieces[k] or [unk])[:budget]
            k += 1
            if ids and len(ids) + len(word_ids) > budget:
                close(ids, labels)
                ids, labels = [], []
            label = label2id[tag]
            positions.append((len(out.features), len(ids) + 1))  # +1 for [CLS]
            rest = inside.get(label, label) if label_all_tokens else -100
            ids += word_ids
            labels += [label] + [rest] * (len(word_ids) - 1)
        close(ids, labels)
        out.word_positions.append(positions)
    return out


# ---- question answering --------------------------------------------------------------------------------


@dataclass
class QAExample:
    """One question about one context; `answers` are (text, character start), empty when unanswerable."""

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]
    where: str

    @property
    def is_impossible(self) -> bool:
        return not self.answers


def _qa_answers(record: dict[str, Any], where: str, context: str) -> list[tuple[str, int]]:
    answers = record.get("answers", [])
    if isinstance(answers, dict):  # the HF datasets layout: {"text": [...], "answer_start": [...]}
        texts, starts = answers.get("text", []), answers.get("answer_start", [])
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataError(f"{where}: answers.text and answers.answer_start must be lists of one length")
        answers = [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]
    if not isinstance(answers, list):
        raise DataError(f"{where}: answers must be a list, got {type(answers).__name__}")
    out = []
    for answer in answers:
        if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
            raise DataError(f'{where}: an answer needs "text" and "answer_start", got {answer!r:.80}')
        text, start = answer["text"], answer["answer_start"]
        if not isinstance(text, str) or not text:
            raise DataError(f"{where}: an answer text must be a non-empty string, got {text!r:.40}")
        if (
            isinstance(start, bool)
            or not isinstance(start, int)
            or not 0 <= start <= len(context) - len(text)
        ):
            raise DataError(
                f"{where}: answer_start {start!r} is outside the context ({len(context)} characters)"
            )
        if context[start : start + len(text)] != text:
            found = context[start : start + len(text)]
            raise DataError(
                f"{where}: the answer {text!r:.60} is not at answer_start {start} (found {found!r:.60})"
            )
        out.append((text, start))
    impossible = record.get("is_impossible", False)
    if impossible and out:
        raise DataError(f"{where}: is_impossible is true but the question has answers")
    if not impossible and not out and "is_impossible" not in record and "answers" not in record:
        raise DataError(f'{where}: no "answers" (mark an unanswerable question with "is_impossible": true)')
    return out


def _qa_example(record: Any, where: str, context: str | None = None) -> QAExample:
    if not isinstance(record, dict):
        raise DataError(f"{where}: a question must be a JSON object, got {type(record).__name__}")
    if context is None:
        context = record.get("context")
    for key, value in (("question", record.get("question")), ("context", context)):
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: {key!r} is missing or empty")
    qid = record.get("id", where)
    return QAExample(str(qid), record["question"], context, _qa_answers(record, where, context), where)


@_names_undecodable_files
def read_squad(path: str | Path) -> list[QAExample]:
    """Read SQuAD v1.1 / v2.0 JSON (`data[].paragraphs[].qas[]`), or records of
    `{id, question, context, answers}` (answers as a list of {text, answer_start} or HF's dict of lists) in
    JSON lines, a JSON array or Parquet: what `datasets`' `to_json` and `to_parquet` write."""
    path = _check_file(path)
    name = path.name.lower()
    records = name.endswith((".jsonl", ".ndjson", ".parquet", ".pq")) or (
        name.endswith(".json") and not _starts_with(path, "{")
    )
    if not records:
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":
                raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
            records = True  # one object per line: JSON lines named .json, as datasets' to_json writes them
    if records:
        table = read_table(path)
        examples = []
        for i, record in enumerate(table.frame.to_dict("records")):
            record = {k: v for k, v in record.items() if not _missing(v)}
            examples.append(_qa_example(record, table.where(i)))
    else:
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise DataError(
                f'{path}: a SQuAD file is a JSON object with a "data" list of articles (or give records of '
                "id, question, context and answers as JSON lines, a JSON array or Parquet)"
            )
        examples = []
        for a, article in enumerate(data["data"]):
            paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
            if not isinstance(paragraphs, list):
                raise DataError(f'{path}: data[{a}] needs a "paragraphs" list')
            for p, paragraph in enumerate(paragraphs):
                at = f"{path}: data[{a}].paragraphs[{p}]"
                if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                    raise DataError(f'{at} needs "context" and a "qas" list')
                context = paragraph.get("context")
                if not isinstance(context, str) or not context.strip():
                    raise DataError(f'{at}: "context" is missing or empty')
                for q, record in enumerate(paragraph["qas"]):
                    examples.append(_qa_example(record, f"{at}.qas[{q}]", context))
    if not examples:
        raise DataError(f"{path} holds no questions")
    seen: dict[str, str] = {}
    for ex in examples:
        if ex.id in seen:
            raise DataError(f"{ex.where}: question id {ex.id!r} is used twice (first at {seen[ex.id]})")
        seen[ex.id] = ex.where
    return examples


def qa_features(
    examples: Sequence[QAExample],
    tokenizer: Tokenizer,
    max_length: int,
    doc_stride: int,
    max_question_length: int = 64,
    training: bool = True,
) -> list[Feature]:
    """Windows of `max_length` tokens over each context (consecutive windows sharing `doc_stride` context
    tokens, as the pipeline cuts them) with the answer's first and last token; a window without the
    whole answer, and an unanswerable question, point at [CLS] (index 0). Without `training`, each window
    also has its example's index (`example`) and each token's character span in the context, None outside
    it (`offsets`), for `qa_predictions`. Warns about answerable questions that no window holds whole:
    trained as unanswerable (`training`), or, in validation data, answers no window can give whole."""
    questions = _encode(tokenizer, [ex.question for ex in examples])
    enc = tokenizer([ex.context for ex in examples], add_special_tokens=False, return_offsets_mapping=True)
    features, lost = [], []
    rows = zip(examples, questions, enc["input_ids"], enc["offset_mapping"])
    for k, (ex, question, context, offsets) in enumerate(rows):
        question = question[:max_question_length]
        budget = max_length - len(question) - 3
        if budget < 1:
            raise ValueError(f"max_length {max_length} leaves no room for the context of {ex.where}")
        if len(context) > budget and doc_stride >= budget:
            raise ValueError(
                f"doc_stride ({doc_stride}) must be smaller than the context room of a window ({budget} "
                f"tokens = max_length {max_length} - question - 3); lower doc_stride"
            )
        first = len(question) + 2
        found = False
        for lo, hi in stride_windows(len(context), budget, doc_stride):
            ids, types = _pair_ids(tokenizer, question, list(context[lo:hi]))
            start = end = 0
            if ex.answers:
                text, char_start = ex.answers[0]
                char_end = char_start + len(text)
                inside = [t for t in range(lo, hi) if offsets[t][1] > char_start and offsets[t][0] < char_end]
                if inside and offsets[lo][0] <= char_start and offsets[hi - 1][1] >= char_end:
                    start, end = first + inside[0] - lo, first + inside[-1] - lo
                    found = True
            feature = {
                "input_ids": ids,
                "token_type_ids": types,
                "start_positions": start,
                "end_positions": end,
            }
            if not training:  # what `qa_predictions` reads an answer with: the context's spans, by token
                feature["example"] = k
                feature["offsets"] = [None] * first + [tuple(o) for o in offsets[lo:hi]] + [None]
            features.append(feature)
        if ex.answers and not found:
            lost.append(ex.where)
    if lost:
        fate = "they are trained as unanswerable" if training else "they can only be answered cut short"
        warnings.warn(
            f"{len(lost)} of {sum(not ex.is_impossible for ex in examples)} answerable questions have no window "
            f"that holds their whole answer (the first: {lost[0]}); {fate}. An answer "
            f"longer than doc_stride ({doc_stride} tokens) can cross every window's edge: raise doc_stride or "
            "max_length",
            stacklevel=2,
        )
    return features


def qa_predictions(
    examples: Sequence[QAExample],
    features: Sequence[Feature],
    logits: Sequence[tuple[np.ndarray, np.ndarray]],
    max_answer_length: int,
    version_2: bool,
    n_best: int = 20,
) -> dict[str, str]:
    """Each example's answer (by id) from its windows' (start, end) logits, as transformers' run_qa.py reads
    them (`postprocess_qa_predictions`): in each window the `n_best` best starts and ends make the spans that
    lie in the context, end not before start, at most `max_answer_length` tokens, scored start + end logit;
    the best span of all windows is the answer. With `version_2` the lowest [CLS] score of the windows is
    the null answer, "" where it beats the best span."""
    windows: dict[int, list[tuple[Feature, np.ndarray, np.ndarray]]] = collections.defaultdict(list)
    for feature, (start, end) in zip(features, logits):
        windows[feature["example"]].append((feature, np.asarray(start), np.asarray(end)))
    answers = {}
    for k, ex in enumerate(examples):
        null: float | None = None
        spans: list[tuple[float, str]] = []
        for feature, start, end in windows[k]:
            offsets = feature["offsets"]
            score = float(start[0] + end[0])
            null = score if null is None else min(null, score)
            ends = np.argsort(end)[::-1][:n_best]
            for s in np.argsort(start)[::-1][:n_best]:
                for e in ends:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    spans.append((float(start[s] + end[e]), ex.context[offsets[s][0] : offsets[e][1]]))
        # run_qa's ranking: the n_best spans (and the null answer among them where it ranks), best first
        ranked = sorted(spans + ([(null, "")] if version_2 else []), key=lambda x: x[0], reverse=True)[
            :n_best
        ]
        best = next(((score, text) for score, text in ranked if text), (0.0, "empty"))  # (its stand-in)
        if version_2:
            answers[ex.id] = "" if null is not None and null - best[0] > 0.0 else best[1]
        else:
            answers[ex.id] = best[1]
    return answers


# ---- multiple choice -----------------------------------------------------------------------------------


@dataclass
class ChoiceExample:
    """A prompt (context and question joined by a space) with its candidate answers and the right one."""

    prompt: str
    choices: list[str]
    label: int
    where: str


@_names_undecodable_files
def read_multiple_choice(path: str | Path) -> list[ChoiceExample]:
    """Read JSON lines (or a table with a list column) of {context (optional), question, choices, label};
    label is the index of the right choice or its text. Every item needs the same number of choices."""
    table = read_table(path)
    columns = [str(c) for c in table.frame.columns]
    for key in ("question", "choices", "label"):
        if key not in columns:
            raise DataError(f"{table.path}: no {key!r} field; the fields are {columns}")
    examples: list[ChoiceExample] = []
    for i, record in enumerate(table.frame.to_dict("records")):
        where = table.where(i)
        context = record.get("context")
        context = "" if _missing(context) else context
        question, choices, label = record["question"], record["choices"], record["label"]
        if hasattr(choices, "tolist"):
            choices = choices.tolist()  # Parquet gives arrays
        if not isinstance(question, str) or not isinstance(context, str):
            raise DataError(f"{where}: question and context must be strings")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise DataError(f"{where}: choices must be a list of at least two strings")
        if isinstance(label, str) and label in choices:
            label = choices.index(label)
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(choices):
            raise DataError(f"{where}: label {label!r} is not the index of one of the {len(choices)} choices")
        if examples and len(choices) != len(examples[0].choices):
            raise DataError(
                f"{where}: {len(choices)} choices where the first item has {len(examples[0].choices)}; "
                "every item needs the same number"
            )
        prompt = choice_prompt(question, context)
        examples.append(ChoiceExample(prompt, list(choices), int(label), where))
    return examples


def choice_features(
    examples: Sequence[ChoiceExample], tokenizer: Tokenizer, max_length: int
) -> list[Feature]:
    """For each item, one `[CLS] prompt [SEP] choice [SEP]` row per choice (cut as the pipeline cuts them)."""
    prompts = _encode(tokenizer, [ex.prompt for ex in examples])
    choices = _encode(tokenizer, [c for ex in examples for c in ex.choices])
    features, k = [], 0
    for ex, prompt in zip(examples, prompts):
        rows = [
            _pair_ids(tokenizer, *truncate_pair(prompt, choices[k + j], max_length - 3))
            for j in range(len(ex.choices))
        ]
        k += len(ex.choices)
        features.append(
            {"input_ids": [r[0] for r in rows], "token_type_ids": [r[1] for r in rows], "labels": ex.label}
        )
    return features


# ---- batches --------------------------------------------------------------------------------------------


class FeatureDataset(torch.utils.data.Dataset):
    """A list of features as a map-style dataset."""

    def __init__(self, features: list[Feature]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> Feature:
        return self.features[i]


def pad_collate(pad_token_id: int) -> Callable[[Sequence[Feature]], dict[str, torch.Tensor]]:
    """A collate function padding each batch to its longest row: ids with `pad_token_id`, segment ids
    and the attention mask with 0, list labels with -100 (multi-label targets, float lists, as they are);
    nested rows (multiple choice) as (B, N, T)."""

    def collate(features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        nested = isinstance(features[0]["input_ids"][0], list)
        rows = [r for f in features for r in f["input_ids"]] if nested else [f["input_ids"] for f in features]
        width = max(len(r) for r in rows)

        def pad(seqs: list[list[int]], value: int) -> torch.Tensor:
            return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)

        types = (
            [r for f in features for r in f["token_type_ids"]]
            if nested
            else [f["token_type_ids"] for f in features]
        )
        batch = {
            "input_ids": pad(rows, pad_token_id),
            "token_type_ids": pad(types, 0),
            "attention_mask": pad([[1] * len(r) for r in rows], 0),
        }
        if nested:
            n = len(features[0]["input_ids"])
            batch = {k: v.view(len(features), n, width) for k, v in batch.items()}  # (B, N, T)
        for key in features[0]:
            if key in batch:
                continue
            values = [f[key] for f in features]
            if isinstance(values[0], list) and values[0] and isinstance(values[0][0], float):
                batch[key] = torch.tensor(values)  # multi-label targets: (B, num_labels), never padded
            elif isinstance(values[0], list):
                batch[key] = pad(values, -100)
            else:
                batch[key] = torch.tensor(
                    values, dtype=torch.float32 if isinstance(values[0], float) else torch.long
                )
        return batch

    return collate
