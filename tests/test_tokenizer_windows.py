"""The fast-tokenizer API of AlbertTokenizer against transformers 4.57.1: windows with a stride
(return_overflowing_tokens), lists of words (is_split_into_words), word ids and token/char/word spans,
pad() under transformers' own data collators, left padding and truncation, convert_tokens_to_string.

Windows, word ids and spans are compared row by row with AlbertTokenizerFast on texts where its ids equal
the slow tokenizer's (ours equal the slow one's everywhere: tests/test_tokenizer.py) and its offsets ours;
ids of lists of words, truncation without windows and pad() are compared with the slow tokenizer.
"""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from conftest import spiece_or_skip
from openalbert.tokenizer import AlbertTokenizer, BatchEncoding, CharSpan, TokenSpan
from test_tokenizer import corpus

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.needs_shared


@pytest.fixture(scope="module")
def tok() -> AlbertTokenizer:
    return AlbertTokenizer(spiece_or_skip())


@pytest.fixture(scope="module")
def slow():
    return transformers.AlbertTokenizer(vocab_file=str(spiece_or_skip()), model_max_length=512)


@pytest.fixture(scope="module")
def fast():
    return transformers.AlbertTokenizerFast(vocab_file=str(spiece_or_skip()), model_max_length=512)


def _agreeing(texts: list[str], tok: AlbertTokenizer, slow, fast) -> list[str]:
    """The texts whose ids the fast tokenizer gives as the slow one does, with our offsets."""
    theirs = fast(texts, return_offsets_mapping=True)
    ids = slow(texts)["input_ids"]
    ours = tok(texts, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    return [
        t
        for i, t in enumerate(texts)
        if theirs["input_ids"][i] == ids[i] and theirs["offset_mapping"][i] == ours[i]
    ]


@pytest.fixture(scope="module")
def agreed(tok: AlbertTokenizer, slow, fast) -> list[str]:
    return _agreeing(corpus(), tok, slow, fast)


@pytest.fixture(scope="module")
def questions(agreed: list[str], fast) -> list[str]:
    short = [t for t in agreed if 3 < len(fast(t)["input_ids"]) < 24]
    return random.Random(0).sample(short, 24)


@pytest.fixture(scope="module")
def contexts(agreed: list[str], tok: AlbertTokenizer, slow, fast) -> list[str]:
    """Long texts (over 100 tokens): a dozen agreeing texts joined, where the joins agree too."""
    rng = random.Random(1)
    joined = [" ".join(rng.sample(agreed, 12)) for _ in range(60)]
    long = [t for t in _agreeing(joined, tok, slow, fast) if len(slow(t)["input_ids"]) > 100]
    assert len(long) >= 24
    return long[:24]


def _plain(value):
    """Nested lists of numbers, whatever the containers (tensors, arrays, tuples)."""
    value = value.tolist() if hasattr(value, "tolist") else value
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def assert_rows_equal(ours: BatchEncoding, theirs) -> None:
    """Every value, and every row's sequence ids and word ids, as the fast tokenizer gives them."""
    assert {key: _plain(value) for key, value in ours.items()} == {
        key: _plain(v) for key, v in theirs.items()
    }
    ids = _plain(theirs["input_ids"])
    for i in range(len(ids) if isinstance(ids[0], list) else 1):
        assert ours.sequence_ids(i) == theirs.sequence_ids(i), i
        assert ours.word_ids(i) == theirs.word_ids(i), i


def windows_equal(tok: AlbertTokenizer, fast, *texts, **kwargs) -> tuple[BatchEncoding, object]:
    """Both tokenizers' windows (with offsets) of the same input, compared row by row."""
    kwargs = dict(return_overflowing_tokens=True, return_offsets_mapping=True) | kwargs
    ours, theirs = tok(*texts, **kwargs), fast(*texts, **kwargs)
    assert_rows_equal(ours, theirs)
    return ours, theirs


# ---- word ids and spans -------------------------------------------------------------------------------------


def test_word_ids_equal_the_fast_tokenizers(tok: AlbertTokenizer, fast, agreed: list[str]) -> None:
    assert len(agreed) > 1000
    ours, theirs = tok(agreed), fast(agreed)
    bad = [t for i, t in enumerate(agreed) if ours.word_ids(i) != theirs.word_ids(i)]
    assert not bad, f"{len(bad)} texts have other word ids, e.g. {bad[0]!r}"
    firsts, seconds = agreed[:300], agreed[300:600]
    for kwargs in ({}, {"add_special_tokens": False}, {"padding": True}):
        ours, theirs = tok(firsts, seconds, **kwargs), fast(firsts, seconds, **kwargs)
        for i in range(len(firsts)):
            assert ours.word_ids(i) == theirs.word_ids(i), (kwargs, i)
            assert ours.sequence_ids(i) == theirs.sequence_ids(i), (kwargs, i)
    # A symbol written as itself is a word of its own; a '"' made of `` is part of its word.
    assert tok("Hello ( big ) world [MASK] .").word_ids() == [None, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, None]
    assert tok("say ``hi'' now").word_ids() == [None, 0, 1, 1, 1, 1, 2, None]


def test_spans_equal_the_fast_tokenizers(tok: AlbertTokenizer, fast, agreed: list[str]) -> None:
    texts = [t for t in agreed if 1 not in fast(t)["input_ids"]][:120]  # no <unk>: see tokens() below
    firsts, seconds = texts[:60], texts[60:]
    ours, theirs = tok(firsts, seconds, padding=True), fast(firsts, seconds, padding=True)
    for i, (first, second) in enumerate(zip(firsts, seconds)):
        assert ours.tokens(i) == theirs.tokens(i)
        for t in range(len(theirs["input_ids"][i])):
            assert ours.token_to_chars(i, t) == theirs.token_to_chars(i, t), (i, t)
            assert ours.token_to_word(i, t) == theirs.token_to_word(i, t), (i, t)
            assert ours.token_to_sequence(i, t) == theirs.token_to_sequence(i, t), (i, t)
        for seq, text in enumerate((first, second)):
            for c in range(len(text) + 1):
                assert ours.char_to_token(i, c, seq) == theirs.char_to_token(i, c, seq), (i, seq, c)
                assert ours.char_to_word(i, c, seq) == theirs.char_to_word(i, c, seq), (i, seq, c)
            words = {w for w, s in zip(theirs.word_ids(i), theirs.sequence_ids(i)) if s == seq}
            for w in words | {len(words) + 5}:
                assert ours.word_to_tokens(i, w, seq) == theirs.word_to_tokens(i, w, seq), (i, seq, w)
            for w in words:
                assert ours.word_to_chars(i, w, seq) == theirs.word_to_chars(i, w, seq), (i, seq, w)
    single = tok("the big dog")  # one input: the index alone means row 0
    assert single.token_to_chars(2) == CharSpan(3, 7) and single.token_to_chars(2).end == 7
    assert single.word_to_tokens(1) == TokenSpan(2, 3) and single.word_to_tokens(1).start == 2
    assert single.token_to_chars(0) is None and single.token_to_word(-1) is None
    assert single.n_sequences == 1 and tok("a", "b").n_sequences == 2
    # Unknown text: the fast tokenizer's tokens() shows the text itself, ours the vocabulary piece.
    assert tok("a ~").tokens() == ["[CLS]", "▁a", "▁", "<unk>", "[SEP]"]
    assert fast("a ~").tokens() == ["[CLS]", "▁a", "▁", "~", "[SEP]"]


def test_split_into_words_equals_the_transformers_tokenizers(
    tok: AlbertTokenizer, slow, fast, agreed: list[str]
) -> None:
    texts = corpus()[::3]
    words = [t.split() for t in texts if t.split()]  # (the slow tokenizer fails on an empty list)
    kwargs = dict(is_split_into_words=True, return_special_tokens_mask=True)
    ours = tok(words, return_offsets_mapping=True, verbose=False, **kwargs)
    expected = slow(words, **kwargs)
    for key in expected:
        assert ours[key] == expected[key], key
    theirs = fast(words, return_offsets_mapping=True, **kwargs)
    normalize = fast.backend_tokenizer.normalizer.normalize_str
    compared = 0
    for i, sample in enumerate(words):
        if theirs["input_ids"][i] != expected["input_ids"][i]:
            continue
        assert ours.word_ids(i) == theirs.word_ids(i), sample
        # tokenizers shifts the offsets of a word that starts with a character its normaliser deletes
        # (a bug tests/test_tokenizer.py describes); the rest must agree.
        if all(normalize(w[:1]) for w in sample):
            compared += 1
            assert ours["offset_mapping"][i] == theirs["offset_mapping"][i], sample
    assert compared > 500

    # One list, a pair of lists, a batch of pairs; with padding, truncation and windows.
    sample, other = agreed[0].split(), ["New York", "", "is", "[MASK]", "big."]
    for args, extra in (
        ((sample,), {}),
        ((sample, other), {"padding": "max_length", "max_length": 40, "truncation": True}),
        (([sample, other], [other, sample]), {"padding": True}),
        (
            ([sample, other],),
            {"truncation": True, "max_length": 9, "stride": 2, "return_overflowing_tokens": True},
        ),
    ):
        ours = tok(*args, is_split_into_words=True, return_offsets_mapping=True, **extra)
        assert_rows_equal(ours, fast(*args, is_split_into_words=True, return_offsets_mapping=True, **extra))
    assert tok(other, is_split_into_words=True).word_ids() == [None, 0, 0, 2, 3, 4, 4, None]
    with pytest.raises(TypeError, match="list of words"):
        tok("a text", is_split_into_words=True)
    with pytest.raises(ValueError, match="shape"):
        tok([["a"], ["b"]], ["c"], is_split_into_words=True)


# ---- windows (return_overflowing_tokens) --------------------------------------------------------------------


def _positions(enc, answers: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The answer's first and last token in each window, or (0, 0) where the window misses it: the
    standard question-answering preprocessing (transformers' run_qa recipe) as users write it."""
    offsets = enc.pop("offset_mapping")
    samples = enc.pop("overflow_to_sample_mapping")
    out = []
    for i, row in enumerate(offsets):
        start_char, end_char = answers[samples[i]]
        context = [k for k, s in enumerate(enc.sequence_ids(i)) if s == 1]
        first, last = context[0], context[-1]
        if not (row[first][0] <= start_char and row[last][1] >= end_char):
            out.append((0, 0))
            continue
        start = next(k for k in context if row[k][1] > start_char)
        end = next(k for k in reversed(context) if row[k][0] < end_char)
        out.append((start, end))
    return out


@pytest.mark.parametrize("max_length, stride", [(48, 0), (48, 12), (96, 32), (200, 64)])
def test_question_answering_windows_equal_the_fast_tokenizers(
    tok: AlbertTokenizer, fast, questions: list[str], contexts: list[str], max_length: int, stride: int
) -> None:
    ours, theirs = windows_equal(
        tok,
        fast,
        questions,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_special_tokens_mask=True,
        padding="max_length",
    )
    assert len(theirs["input_ids"]) > len(contexts)  # windows were cut
    rng = random.Random(max_length)
    answers = []
    for c in contexts:
        start = rng.randrange(len(c) - 30)
        answers.append((start, start + rng.randrange(1, 30)))
    assert _positions(ours, answers) == _positions(theirs, answers)


@pytest.mark.parametrize("truncation", [True, "longest_first", "only_first"])
def test_windows_of_single_texts_equal_the_fast_tokenizers(
    tok: AlbertTokenizer, fast, questions: list[str], contexts: list[str], truncation
) -> None:
    texts = contexts[:8] + questions[:8]
    for max_length in (5, 9, 33):
        for stride in (0, 1, 2):
            kwargs = dict(truncation=truncation, max_length=max_length, stride=stride)
            windows_equal(tok, fast, texts, **kwargs)
            windows_equal(tok, fast, texts[0], **kwargs)  # one text: the rows keep their batch axis
    windows_equal(tok, fast, texts, truncation=True, max_length=20, stride=4, padding=True)
    # Without truncation every input is one row; max_length alone truncates (as transformers).
    windows_equal(tok, fast, texts)
    windows_equal(tok, fast, texts, max_length=20, stride=4)


def test_windows_of_pairs_equal_the_fast_tokenizers(
    tok: AlbertTokenizer, fast, questions: list[str], contexts: list[str]
) -> None:
    # longest_first cuts both texts of a pair and pairs every window of one with every window of the other.
    for max_length, stride in ((24, 0), (40, 3), (64, 10)):
        kwargs = dict(truncation="longest_first", max_length=max_length, stride=stride)
        windows_equal(tok, fast, contexts[:6], contexts[6:12], **kwargs)
        windows_equal(tok, fast, questions[:6], contexts[:6], **kwargs)
        kwargs = dict(truncation="only_first", max_length=max_length + 24, stride=stride)
        windows_equal(tok, fast, contexts[:6], questions[:6], **kwargs)


@pytest.mark.parametrize("kind", ["pt", "np"])
def test_windows_as_tensors(
    tok: AlbertTokenizer, fast, questions: list[str], contexts: list[str], kind: str
) -> None:
    kwargs = dict(
        truncation="only_second",
        max_length=64,
        stride=16,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
        return_tensors=kind,
    )
    ours, theirs = tok(questions[:5], contexts[:5], **kwargs), fast(questions[:5], contexts[:5], **kwargs)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert type(ours[key]) is type(theirs[key]) and ours[key].dtype == theirs[key].dtype, key
        assert ours[key].shape == theirs[key].shape and (ours[key] == theirs[key]).all(), key
    assert ours.word_ids(3) == theirs.word_ids(3)
    kwargs = dict(
        truncation=True, max_length=30, stride=5, return_overflowing_tokens=True, return_tensors=kind
    )
    single, expected = tok(contexts[0], padding=True, **kwargs), fast(contexts[0], padding=True, **kwargs)
    assert single["input_ids"].shape == expected["input_ids"].shape and single["input_ids"].shape[0] > 1
    if kind == "pt":  # ragged windows: refused, as transformers refuses them
        with pytest.raises(ValueError, match="padding"):
            tok(contexts[0], **kwargs)
        with pytest.raises(ValueError):
            fast(contexts[0], **kwargs)
    else:  # for numpy, arrays of objects, as transformers makes them
        ragged, expected = tok(contexts[0], **kwargs)["input_ids"], fast(contexts[0], **kwargs)["input_ids"]
        assert ragged.dtype == expected.dtype == object
        assert [r.tolist() for r in ragged] == [r.tolist() for r in expected]


def test_window_errors_are_clear(
    tok: AlbertTokenizer, fast, questions: list[str], contexts: list[str]
) -> None:
    question, context = questions[0], contexts[0]
    question_length = len(tok(question, add_special_tokens=False)["input_ids"])
    room = 48 - 3 - question_length
    for stride in (room, room + 5):
        kwargs = dict(truncation="only_second", max_length=48, stride=stride, return_overflowing_tokens=True)
        with pytest.raises(ValueError, match=rf"stride \({stride}\) must be smaller than the {room} tokens"):
            tok(question, context, **kwargs)
        with pytest.raises(BaseException, match="stride"):  # transformers: a PanicException from Rust
            fast(question, context, **kwargs)
    kwargs = dict(truncation=True, max_length=10, stride=8, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride"):
        tok(context, **kwargs)
    assert tok("short", **kwargs)["input_ids"] == fast("short", **kwargs)["input_ids"]  # nothing to cut: fine
    # The question fills the window (transformers raises too).
    kwargs = dict(truncation="only_first", max_length=question_length + 3, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="no room"):
        tok(context, question, **kwargs)
    with pytest.raises(Exception, match="too short"):
        fast(context, question, **kwargs)
    with pytest.raises(ValueError, match="text_pair"):
        tok(context, truncation="only_second", max_length=20, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="no room"):
        tok(context, truncation=True, max_length=2, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="stride"):
        tok(context, truncation=True, max_length=20, stride=-1, return_overflowing_tokens=True)


# ---- sides ---------------------------------------------------------------------------------------------------


def test_left_truncation_and_padding_equal_transformers(
    tok: AlbertTokenizer, questions: list[str], contexts: list[str], agreed: list[str]
) -> None:
    vocab = str(spiece_or_skip())
    left = AlbertTokenizer(vocab, truncation_side="left")
    slow_left = transformers.AlbertTokenizer(vocab_file=vocab, truncation_side="left")
    fast_left = transformers.AlbertTokenizerFast(vocab_file=vocab, truncation_side="left")
    firsts, seconds = agreed[:40], agreed[40:80]
    for truncation in (True, "only_first", "only_second", "longest_first"):
        kwargs = dict(truncation=truncation, max_length=12, return_special_tokens_mask=True)
        assert left(firsts, seconds, **kwargs) == slow_left(firsts, seconds, **kwargs).data
    windows_equal(left, fast_left, questions, contexts, truncation="only_second", max_length=40, stride=5)

    fast = transformers.AlbertTokenizerFast(vocab_file=vocab)
    kwargs = dict(padding=True, return_offsets_mapping=True, return_special_tokens_mask=True)
    ours = tok(firsts[:20], seconds[:20], padding_side="left", **kwargs)
    assert_rows_equal(ours, fast(firsts[:20], seconds[:20], padding_side="left", **kwargs))
    assert ours["attention_mask"][0][0] == 0 or ours["attention_mask"][1][0] == 0  # some row was padded
    padded_left = AlbertTokenizer(vocab, padding_side="left")
    assert padded_left(firsts[:20], padding=True) == tok(firsts[:20], padding=True, padding_side="left")
    for bad in ({"padding_side": "middle"}, {"truncation_side": "up"}):
        with pytest.raises(ValueError, match="'left' or 'right'"):
            AlbertTokenizer(vocab, **bad)
    with pytest.raises(ValueError, match="padding_side"):
        tok("a", padding_side="top")


def test_sides_are_saved_and_read(tmp_path) -> None:
    left = AlbertTokenizer(spiece_or_skip(), padding_side="left", truncation_side="left")
    left.save_pretrained(tmp_path, write_tokenizer_json=False)
    again = AlbertTokenizer.from_pretrained(tmp_path)
    assert (again.padding_side, again.truncation_side) == ("left", "left")
    theirs = transformers.AlbertTokenizer.from_pretrained(str(tmp_path))
    assert (theirs.padding_side, theirs.truncation_side) == ("left", "left")


# ---- pad() and transformers' data collators ----------------------------------------------------------------


def _features(enc, labels: list) -> list[dict]:
    return [{key: value[i] for key, value in enc.items()} | {"label": labels[i]} for i in range(len(labels))]


def _equal(ours, theirs) -> None:
    assert ours.keys() == theirs.keys()
    for key in theirs:
        a, b = ours[key], theirs[key]
        if isinstance(b, torch.Tensor):
            assert isinstance(a, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), key
        elif isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), key
        else:
            assert a == b, key


def test_pad_under_data_collator_with_padding(tok: AlbertTokenizer, slow, agreed: list[str]) -> None:
    from transformers import DataCollatorWithPadding

    texts = agreed[:16]
    ours = _features(tok(texts, truncation=True, max_length=48), list(range(16)))
    theirs = _features(slow(texts, truncation=True, max_length=48), list(range(16)))
    assert ours == theirs
    for options in (
        {},
        {"pad_to_multiple_of": 8},
        {"padding": "max_length", "max_length": 64},
        {"return_tensors": "np"},
    ):
        batch = DataCollatorWithPadding(tokenizer=tok, **options)(ours)
        _equal(batch, DataCollatorWithPadding(tokenizer=slow, **options)(theirs))
        assert "labels" in batch and "label" not in batch
    # Float labels (regression) stay floats; other keys stay as they are; a dict of lists; tensors in.
    floats = [dict(f, label=float(f["label"]) / 3) for f in ours]
    _equal(DataCollatorWithPadding(tok)(floats), DataCollatorWithPadding(slow)(floats))
    enc = tok(texts[:4], return_special_tokens_mask=True)
    data = dict(enc) | {"labels": [[1, 2], [3], [], [4, 5, 6]]}
    _equal(tok.pad(data), slow.pad(dict(data)))
    _equal(tok.pad(data, padding_side="left"), slow.pad(dict(data), padding_side="left"))
    one = {key: value[0] for key, value in data.items()}
    _equal(tok.pad(one, pad_to_multiple_of=16), slow.pad(dict(one), pad_to_multiple_of=16))
    rows = [{"input_ids": ids} for ids in enc["input_ids"]]
    tensors = [{"input_ids": torch.tensor(ids)} for ids in enc["input_ids"]]
    _equal(tok.pad(tensors), slow.pad(rows, return_tensors="pt"))  # tensors in: tensors out
    _equal(tok.pad(tensors, return_tensors="np"), slow.pad(rows, return_tensors="np"))
    with pytest.raises(ValueError, match="input_ids"):
        tok.pad([{"label": 1}])
    with pytest.raises(ValueError):
        tok.pad(data, return_tensors="pt")  # ragged labels cannot be a tensor (transformers raises too)
    with pytest.raises(ValueError, match="only on the output"):
        tok.pad(data).word_ids()


def _aligned_labels(enc, tags: list[list[int]]) -> list[list[int]]:
    """transformers' token-classification recipe: a word's tag on its first token, -100 elsewhere."""
    out = []
    for i, word_tags in enumerate(tags):
        labels, previous = [], None
        for word in enc.word_ids(i):
            labels.append(-100 if word is None or word == previous else word_tags[word])
            previous = word
        out.append(labels)
    return out


def test_token_classification_recipe_and_collator(
    tok: AlbertTokenizer, slow, fast, agreed: list[str]
) -> None:
    from transformers import DataCollatorForTokenClassification

    words = [t.split() for t in agreed[:60] if t.split()]
    pairs = zip(
        words,
        slow(words, is_split_into_words=True)["input_ids"],
        fast(words, is_split_into_words=True)["input_ids"],
    )
    sentences = [w for w, expected, theirs in pairs if theirs == expected][:32]  # where the fast one agrees
    tags = [[len(w) % 5 for w in words] for words in sentences]
    kwargs = dict(is_split_into_words=True, truncation=True, max_length=32)
    ours, theirs = tok(sentences, **kwargs), fast(sentences, **kwargs)
    labels = _aligned_labels(ours, tags)
    assert labels == _aligned_labels(theirs, tags)
    assert ours["input_ids"] == theirs["input_ids"]
    features = [{"input_ids": ids, "labels": lab} for ids, lab in zip(ours["input_ids"], labels)]
    for options in ({}, {"pad_to_multiple_of": 8}):
        expected = DataCollatorForTokenClassification(tokenizer=slow, **options)(features)
        _equal(DataCollatorForTokenClassification(tokenizer=tok, **options)(features), expected)
    left = AlbertTokenizer(spiece_or_skip(), padding_side="left")
    slow_left = transformers.AlbertTokenizer(vocab_file=str(spiece_or_skip()), padding_side="left")
    _equal(
        DataCollatorForTokenClassification(left)(features),
        DataCollatorForTokenClassification(slow_left)(features),
    )


# ---- the rest -----------------------------------------------------------------------------------------------


def test_convert_tokens_to_string_equals_the_slow_tokenizers(tok: AlbertTokenizer, slow) -> None:
    texts = corpus()[::4]
    for ids in slow(texts)["input_ids"]:
        tokens = slow.convert_ids_to_tokens(ids)
        assert tok.convert_tokens_to_string(tokens) == slow.convert_tokens_to_string(tokens), tokens
    odd = [
        "▁hello",
        "[MASK]",
        "▁wor",
        "ld",
        "[SEP]",
        "<pad>",
        "not-a-piece",
        "▁",
        "<unk>",
        ",",
        "[CLS]",
        "[CLS]",
        "▁b",
    ]
    assert tok.convert_tokens_to_string(odd) == slow.convert_tokens_to_string(odd)
    assert tok.convert_tokens_to_string([]) == ""
    added, slow_added = (
        AlbertTokenizer(spiece_or_skip()),
        transformers.AlbertTokenizer(vocab_file=str(spiece_or_skip())),
    )
    for tokenizer in (added, slow_added):
        tokenizer.add_tokens(["NewTok"])
        tokenizer.add_tokens(["[NEW]"], special_tokens=True)
    for tokens, text in ((["▁a", "newtok", "▁b"], "anewtok b"), (["▁a", "[NEW]", "▁c"], "a[NEW]c")):
        assert added.convert_tokens_to_string(tokens) == slow_added.convert_tokens_to_string(tokens) == text


def test_is_fast_and_pickled_encodings(tok: AlbertTokenizer) -> None:
    assert tok.is_fast is False
    texts = ["the big dog", "a (small) cat [MASK]"]
    enc = tok(texts, ["one", "two"], return_offsets_mapping=True)
    words = [enc.word_ids(i) for i in range(2)]
    again = pickle.loads(pickle.dumps(enc))
    assert again == enc and [again.word_ids(i) for i in range(2)] == words
    assert again.sequence_ids(1) == enc.sequence_ids(1) and again.token_to_chars(1, 3) == CharSpan(2, 3)
    plain = pickle.loads(pickle.dumps(tok(texts)))
    assert plain.sequence_ids(0) == [None, 0, 0, 0, None]
    with pytest.raises(ValueError, match="pickled before its word ids"):
        plain.word_ids(0)
    assert len(pickle.dumps(tok(texts))) < 2000  # the tokenizer does not travel with its encodings
