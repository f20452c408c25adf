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
