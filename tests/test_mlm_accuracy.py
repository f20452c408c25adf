"""masked_token_accuracy counts exactly the masked positions and scores top-1 guesses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tests.conftest import spiece_or_skip

from openalbert.pretraining.evaluate import masked_token_accuracy
from openalbert.tokenizer import AlbertTokenizer

TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want "
    "of a wife. However little known the feelings or views of such a man may be on his first entering a "
    "neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered "
    "the rightful property of some one or other of their daughters.\n\n"
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, and "
    "nothing particular to interest me on shore, I thought I would sail about a little and see the watery part "
    "of the world."
)


class AlwaysGuess(torch.nn.Module):
    """A 'model' that predicts the same token everywhere."""

    def __init__(self, token_id: int, vocab_size: int) -> None:
        super().__init__()
        self.token_id, self.vocab_size = token_id, vocab_size
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        logits[..., self.token_id] = 1.0
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("word", ["the", "a", "of"])
def test_accuracy_of_a_constant_guess_is_that_tokens_share_of_masked_tokens(tmp_path, word):
    tok = AlbertTokenizer(spiece_or_skip())
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    guess = tok.convert_tokens_to_ids("\u2581" + word)
    # Everything is masked (mask_prob near 1), so the expected share is that of the word in the text.
    result = masked_token_accuracy(
        AlwaysGuess(guess, tok.vocab_size), tok, [path], mask_prob=0.999, seq_len=32, progress=False
    )
    ids = [i for doc in TEXT.split("\n\n") for i in tok(doc, add_special_tokens=False)["input_ids"]]
    assert result["tokens"] == len(ids)
    assert result["masked_tokens"] == len(ids)
    assert result["accuracy"] == pytest.approx(ids.count(guess) / len(ids))


def test_share_masked_and_seeded(tmp_path):
    tok = AlbertTokenizer(spiece_or_skip())
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    model = AlwaysGuess(tok.convert_tokens_to_ids("\u2581the"), tok.vocab_size)
    a = masked_token_accuracy(model, tok, [path], seq_len=32, seed=1, progress=False)
    b = masked_token_accuracy(model, tok, [path], seq_len=32, seed=1, progress=False)
    assert a == b
    assert 0.12 <= a["masked_tokens"] / a["tokens"] <= 0.18
    with pytest.raises(ValueError, match="mask_prob"):
        masked_token_accuracy(model, tok, [path], mask_prob=0.0)
