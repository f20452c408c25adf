"""add_tokens against transformers 4.57.1's (slow) AlbertTokenizer on the genuine vocabulary: the same ids,
pieces and decodings, saved directories that both read, and a model resized to the grown vocabulary."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import TINY_GENUINE_VOCAB, spiece_or_skip

import openalbert
from openalbert.tokenizer import AlbertTokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.needs_shared

TOKENS = ["NewTok", "foo_bar", "[NEW]", "ing", "[CLS]", "Zorblax", "zorblax", ""]  # "ing" is a piece already
TEXTS = [
    "Hello NewTok world newtok foo_bar!",
    "x[NEW]y <sp1>z",
    "A newtokfoo_barB.",
    "  NewTok  ",
    "<SP1> <sp1>",
    "sing a zorblax ing",
    "running [MASK] NEWTOK.",
]


@pytest.fixture
def pair():
    spiece = spiece_or_skip()
    theirs, ours = transformers.AlbertTokenizer(vocab_file=str(spiece)), AlbertTokenizer(spiece)
    for tok in (theirs, ours):
        assert tok.add_tokens(TOKENS) == 4 and tok.add_tokens(["<sp1>"], special_tokens=True) == 1
        assert len(tok) == 30005 and tok.vocab_size == 30000
    return theirs, ours


def test_added_tokens_encode_and_decode_as_transformers(pair):
    theirs, ours = pair
    for text in TEXTS:
        ids = theirs(text)["input_ids"]
        assert ours(text)["input_ids"] == ids, text
        assert ours.tokenize(text) == theirs.tokenize(text), text
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    assert ours.convert_tokens_to_ids(["newtok", "NewTok"]) == [30000, ours.unk_token_id]
    assert ours.convert_ids_to_tokens([30000, 30004]) == ["newtok", "<sp1>"]
    assert "<sp1>" in ours.all_special_tokens and ours.added_tokens_encoder["ing"] == 68
    # in a batch with offsets: an added token maps back to its span of the text, whatever its case
    enc = ours(TEXTS[:1], return_offsets_mapping=True)
    spans = [TEXTS[0][a:b] for a, b in enc["offset_mapping"][0]]
    assert spans[enc["input_ids"][0].index(30000)] == "NewTok"


def test_saved_added_tokens_are_read_both_ways(pair, tmp_path):
    theirs, ours = pair
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    assert (tmp_path / "ours" / "added_tokens.json").is_file()
    for reader, directory in (
        (transformers.AlbertTokenizer, "ours"),
        (AlbertTokenizer, "theirs"),
        (AlbertTokenizer, "ours"),
    ):
        loaded = reader.from_pretrained(tmp_path / directory)
        assert len(loaded) == 30005
        assert [loaded(t)["input_ids"] for t in TEXTS] == [theirs(t)["input_ids"] for t in TEXTS], directory
    fast = transformers.AlbertTokenizerFast.from_pretrained(tmp_path / "ours")  # from our tokenizer.json
    assert fast.convert_tokens_to_ids(["newtok", "<sp1>"]) == [30000, 30004]


def test_add_special_tokens_and_the_special_masks_as_transformers(tmp_path):
    spiece = spiece_or_skip()
    theirs, ours = transformers.AlbertTokenizer(vocab_file=str(spiece)), AlbertTokenizer(spiece)
    steps = [
        ({"additional_special_tokens": ["<x>", "<y>"]}, {}),
        ({"additional_special_tokens": ["<z>"]}, {}),  # replaces the list; <x> and <y> stay in the vocabulary
        ({"additional_special_tokens": ["<w>", "<z>"]}, {"replace_additional_special_tokens": False}),
        ({"pad_token": "<newpad>"}, {}),
        ({"sep_token": "[SEP]", "unk_token": "<unk>"}, {}),
    ]
    for tokens, options in steps:
        assert ours.add_special_tokens(tokens, **options) == theirs.add_special_tokens(tokens, **options)
        assert ours.additional_special_tokens == theirs.additional_special_tokens
        assert ours.all_special_tokens == theirs.all_special_tokens
        assert ours.all_special_ids == theirs.all_special_ids
    assert ours.pad_token_id == theirs.pad_token_id == 30004 and len(ours) == len(theirs)
    assert ours.added_tokens_encoder == theirs.added_tokens_encoder
    text = "a <x> b <z> <newpad> [MASK] c"
    ids = theirs(text, "pair <w>")["input_ids"]
    assert ours(text, "pair <w>")["input_ids"] == ids
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    a, b = ids[1:6], ids[7:9]
    for args in ((a,), (a, b)):
        assert ours.get_special_tokens_mask(*args) == theirs.get_special_tokens_mask(*args)
        assert ours.create_token_type_ids_from_sequences(
            *args
        ) == theirs.create_token_type_ids_from_sequences(*args)
    mask = ours.get_special_tokens_mask(ids, already_has_special_tokens=True)
    assert mask == theirs.get_special_tokens_mask(ids, already_has_special_tokens=True)
    with pytest.raises(ValueError, match="not a special token name"):
        ours.add_special_tokens({"foo_token": "<f>"})

    # Saved, each directory read by the other library: the same special tokens and ids.
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    for reader, directory in (
        (transformers.AlbertTokenizer, "ours"),
        (AlbertTokenizer, "theirs"),
        (AlbertTokenizer, "ours"),
    ):
        loaded = reader.from_pretrained(tmp_path / directory)
        assert loaded.all_special_tokens == theirs.all_special_tokens, directory
        assert loaded.pad_token_id == 30004 and loaded(text, "pair <w>")["input_ids"] == ids, directory
        assert loaded.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


def test_a_data_collator_masks_around_our_special_tokens():
    # transformers' collator asks the tokenizer which tokens are special when examples do not say.
    tokenizer = AlbertTokenizer(spiece_or_skip())
    collate = transformers.DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=0.99, return_tensors="pt"
    )
    torch.manual_seed(0)
    examples = [dict(tokenizer("hello world")), dict(tokenizer("a longer sentence here"))]
    labels = collate(examples)["labels"]
    for row, example in zip(labels, examples):
        n = len(example["input_ids"])
        assert row[0] == row[n - 1] == -100 and (row[n:] == -100).all()  # [CLS], [SEP], padding: never
        assert (row[1 : n - 1] != -100).all()  # every word piece was picked (p = 0.99)


def test_a_model_resized_to_the_added_tokens_fills_masks_with_them(tmp_path):
    tokenizer = AlbertTokenizer(spiece_or_skip())
    tokenizer.add_tokens(["Zorblax"])
    torch.manual_seed(0)
    model = openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY_GENUINE_VOCAB))
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    fill = openalbert.pipeline("fill-mask", model=str(tmp_path))
    out = fill("The zorblax is a [MASK].", targets=["zorblax", "cat"])
    assert {r["token_str"] for r in out} == {"zorblax", "cat"}
    assert fill.model.config.vocab_size == len(fill.tokenizer) == 30001


def test_added_token_settings_and_constructor_specials_as_transformers(tmp_path):
    # transformers' AddedToken settings: special=True makes an additional special token; normalized=False
    # keeps the case (matched as written); single_word matches between spaces only; all kept when saved.
    spiece = spiece_or_skip()
    AddedToken = transformers.AddedToken
    theirs, ours = transformers.AlbertTokenizer(vocab_file=str(spiece)), AlbertTokenizer(spiece)
    fast = transformers.AlbertTokenizerFast(vocab_file=str(spiece))
    for tok in (theirs, ours, fast):
        tok.add_tokens([AddedToken("<ent>", special=True), AddedToken("NewWord", normalized=False)])
        tok.add_tokens([AddedToken("qz", single_word=True)])
    assert ours.all_special_tokens == theirs.all_special_tokens and "<ent>" in ours.all_special_tokens
    ids = theirs.encode("x <ent> y")
    assert ours.encode("x <ent> y") == ids
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True) == "x y"
    assert ours.get_special_tokens_mask(
        ids, already_has_special_tokens=True
    ) == theirs.get_special_tokens_mask(ids, already_has_special_tokens=True)
    assert ours.convert_ids_to_tokens(30001) == theirs.convert_ids_to_tokens(30001) == "NewWord"
    # Matched as written, as the fast tokenizer matches it (the slow one lower-cases the text first and never
    # finds it); the lower-cased word is ordinary text in all three.
    assert 30001 in ours.encode("hello NewWord there") and 30001 in fast.encode("hello NewWord there")
    assert ours.encode("newword") == theirs.encode("newword") == fast.encode("newword")
    assert ours.decode([30001]) == theirs.decode([30001]) == "NewWord"
    # single_word: not inside "aqzb" (the slow tokenizer's split leaves "b" a word of its own: the fast one's
    # ids are the ones to match there)
    assert ours.encode("aqzb qz") == [i for i in fast.encode("aqzb qz") if i != 13]
    assert ours.encode("aqzb qz").count(30002) == 1 and ours.encode("qz") == theirs.encode("qz")
    for saved_by in (ours, theirs):
        saved_by.save_pretrained(tmp_path / type(saved_by).__module__)
        loaded = AlbertTokenizer.from_pretrained(tmp_path / type(saved_by).__module__)
        for text in ("x <ent> y", "hello NewWord there", "aqzb qz"):
            assert loaded.encode(text) == ours.encode(text), (saved_by, text)
        assert "<ent>" in loaded.all_special_tokens
    # The list it returns is a copy; setting it registers new tokens.
    ours.additional_special_tokens.append("<zz>")
    assert "<zz>" not in ours.all_special_tokens
    ours.additional_special_tokens = ["<ent>", "<zz>"]
    assert ours.encode("<zz>") == [2, len(ours) - 1, 3]


def test_constructor_special_tokens_as_transformers():
    spiece = spiece_or_skip()
    AddedToken = transformers.AddedToken
    kwargs = dict(
        pad_token="[PAD]",
        bos_token="<s>",
        additional_special_tokens=["<x>", "[CLS]"],
        mask_token=AddedToken("[MASK]", lstrip=False),
        legacy=False,  # an option transformers' tokenizers take and that changes nothing here
    )
    theirs, ours = transformers.AlbertTokenizer(str(spiece), **kwargs), AlbertTokenizer(spiece, **kwargs)
    assert ours.get_added_vocab() == theirs.get_added_vocab()
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.additional_special_tokens == theirs.additional_special_tokens == ["<x>", "[CLS]"]
    assert (len(ours), ours.pad_token_id, ours.bos_token_id) == (
        len(theirs),
        theirs.pad_token_id,
        theirs.bos_token_id,
    )
    for text in ("a <x> b [MASK] <s> c", "a[MASK]"):
        assert ours.encode(text) == theirs.encode(text), text
        ids = theirs.encode(text)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert ours.init_kwargs["legacy"] is False
