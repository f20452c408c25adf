"""resize_token_embeddings against transformers 4.57.1's: the same shapes and kept weights, the MLM decoder and
its bias following, and checkpoints that both libraries read after it."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import TINY

import openalbert

transformers = pytest.importorskip("transformers")
V = TINY["vocab_size"]


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = transformers.AlbertForMaskedLM(transformers.AlbertConfig(**TINY))
    with torch.no_grad():
        model.predictions.bias.normal_()  # a trained-looking bias, so that keeping it shows
    model.save_pretrained(tmp_path / "theirs")
    return tmp_path / "theirs"


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize(
    ("size", "multiple", "expected"),
    [(V - 10, None, V - 10), (V + 7, None, V + 7), (None, 64, 128), (V + 7, 8, 112)],
)
def test_resizing_keeps_what_transformers_keeps(checkpoint, tmp_path, size, multiple, expected):
    ours = openalbert.AlbertForMaskedLM.from_pretrained(checkpoint)
    theirs = transformers.AlbertForMaskedLM.from_pretrained(checkpoint).eval()
    for model in (ours, theirs):
        embedding = model.resize_token_embeddings(size, pad_to_multiple_of=multiple, mean_resizing=False)
        assert embedding.num_embeddings == expected == model.config.vocab_size
    kept = min(expected, V)
    ids = torch.randint(0, kept, (2, 9), generator=torch.Generator().manual_seed(1))
    mine, reference = _logits(ours, ids), _logits(theirs, ids)
    assert mine.shape == reference.shape == (2, 9, expected)
    # the kept vocabulary's scores are the same; new tokens' depend on their random rows
    torch.testing.assert_close(mine[..., :kept], reference[..., :kept], atol=1e-5, rtol=0)
    assert ours.predictions.decoder.weight is ours.get_input_embeddings().weight
    assert ours.predictions.decoder.bias is ours.predictions.bias
    torch.testing.assert_close(ours.predictions.bias[kept:], torch.zeros(expected - kept))
    # saved after resizing: read back by both libraries with the same scores
    ours.save_pretrained(tmp_path / "ours")
    for reloaded in (
        openalbert.AlbertForMaskedLM.from_pretrained(tmp_path / "ours"),
        transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "ours").eval(),
    ):
        torch.testing.assert_close(_logits(reloaded, ids), mine, atol=1e-5, rtol=0)


def test_mean_resizing_leaves_the_predictions_where_they_were(checkpoint):
    model = openalbert.AlbertForMaskedLM.from_pretrained(checkpoint)
    old = model.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(V + 3)
    added = model.get_input_embeddings().weight[V:].detach()
    torch.testing.assert_close(added, old.mean(0).expand(3, -1), atol=1e-3, rtol=0)
    assert model.resize_token_embeddings() is model.get_input_embeddings()  # nothing asked: nothing done
    bare = openalbert.AlbertModel.from_pretrained(checkpoint)  # a model without a decoder resizes too
    assert bare.resize_token_embeddings(V + 1).num_embeddings == V + 1 == bare.config.vocab_size
    with pytest.raises(ValueError, match="pad_to_multiple_of must be a positive int"):
        model.resize_token_embeddings(V, pad_to_multiple_of=0)


def test_an_untied_decoder_is_resized_too(tmp_path):
    # tie_word_embeddings=False (config.json): the decoder has rows of its own. Before, its weight kept the old
    # size and the next forward pass failed inside oneDNN.
    torch.manual_seed(0)
    transformers.AlbertForMaskedLM(
        transformers.AlbertConfig(**TINY, tie_word_embeddings=False)
    ).save_pretrained(tmp_path / "untied")
    model = openalbert.AlbertForMaskedLM.from_pretrained(tmp_path / "untied").eval()
    ids = torch.randint(5, TINY["vocab_size"], (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids).logits
    decoder = model.get_output_embeddings().weight.detach().clone()
    model.resize_token_embeddings(TINY["vocab_size"] + 4)
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.shape == (TINY["vocab_size"] + 4, TINY["embedding_size"])
    assert torch.equal(model.get_output_embeddings().weight[: TINY["vocab_size"]], decoder)
    with torch.no_grad():
        after = model(ids).logits
    torch.testing.assert_close(after[..., : TINY["vocab_size"]], before, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "resized")
    theirs = transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "resized").eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, after, atol=1e-5, rtol=1e-5)


def test_a_config_given_to_from_pretrained_stays_the_callers(tmp_path):
    # transformers copies it. Before, the overrides were written into it and two models loaded with it shared
    # one config: resizing one changed the other's vocab_size, whose save then wrote an unreadable checkpoint.
    openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY)).save_pretrained(tmp_path / "mlm")
    config = openalbert.AlbertConfig.from_pretrained(tmp_path / "mlm")
    one = openalbert.AlbertForMaskedLM.from_pretrained(
        tmp_path / "mlm", config=config, output_hidden_states=True
    )
    two = openalbert.AlbertForMaskedLM.from_pretrained(tmp_path / "mlm", config=config)
    assert one.config is not config and two.config is not one.config and not config.output_hidden_states
    one.resize_token_embeddings(TINY["vocab_size"] + 5)
    assert two.config.vocab_size == config.vocab_size == TINY["vocab_size"]
    two.save_pretrained(tmp_path / "two")
    assert (
        openalbert.AlbertForMaskedLM.from_pretrained(tmp_path / "two").config.vocab_size == TINY["vocab_size"]
    )
