"""token-classification beyond one window and on pre-split words, against transformers 4.57.1's pipeline:
`stride` windows merged as it merges them, `is_split_into_words` with a `delimiter`, and the deprecated
`grouped_entities` / `ignore_subwords`."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY_GENUINE_VOCAB, spiece_or_skip
from tests.test_pipelines import NER_LABELS, assert_matches

from openalbert.pipelines import pipeline

transformers = pytest.importorskip("transformers")
pytestmark = [pytest.mark.needs_shared, pytest.mark.filterwarnings("ignore::UserWarning")]

# About 170 tokens: with 40-token sequences, windows of 38 that share `stride` tokens.
LONG = " ".join(
    [
        "My name is Wolfgang Amadeus and I live in Berlin near the Brandenburg Gate.",
        "Sarah Connor moved from Los Angeles to Paris with John and Kyle last year.",
        "The committee met Angela Merkel in Hamburg and later visited Munich and Vienna.",
        "Marie Curie worked in Warsaw before she studied physics in Paris with Pierre.",
    ]
    * 2
)
WORDS = ["Angela", "Merkel", "visited", "New", "York", "with", "Barack", "Obama", "yesterday"]


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ner")
    torch.manual_seed(0)
    config = transformers.AlbertConfig(**TINY_GENUINE_VOCAB, id2label=dict(enumerate(NER_LABELS)))
    model = transformers.AlbertForTokenClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20)
        model.classifier.bias.copy_(torch.tensor([0.6, 0.0, 0.5, 0.0, 0.5]))
    model.save_pretrained(directory)
    spiece = spiece_or_skip()
    transformers.AlbertTokenizerFast(vocab_file=str(spiece), model_max_length=40).save_pretrained(directory)
    return directory


def theirs(directory: Path):
    transformers.logging.set_verbosity_error()
    return transformers.pipeline("token-classification", model=str(directory), device="cpu")


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
@pytest.mark.parametrize("stride", [0, 12])
def test_stride_windows_merge_as_transformers(tagger, strategy, stride) -> None:
    reference = theirs(tagger)(LONG, aggregation_strategy=strategy, stride=stride)
    ours = pipeline("token-classification", model=tagger)
    result = ours(LONG, aggregation_strategy=strategy, stride=stride)
    assert_matches(result, reference)
    assert result[-1]["end"] > len(LONG) - 20  # the end of the text was tagged, not cut off
    # several windows, as a list too, and with a batch that mixes them with short texts
    assert_matches(
        ours([LONG, "I live in Berlin"], aggregation_strategy=strategy, stride=stride)[0], reference
    )


def test_without_stride_a_long_text_is_cut_with_a_warning(tagger, caplog) -> None:
    ours = pipeline("token-classification", model=tagger)
    with caplog.at_level(logging.WARNING):
        result = ours(LONG, aggregation_strategy="simple")
    assert "pass stride=" in caplog.text
    assert_matches(result, theirs(tagger)(LONG, aggregation_strategy="simple"))


def test_long_pre_split_words_get_the_pipelines_warning_alone(tagger, caplog) -> None:
    ours = pipeline("token-classification", model=tagger)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        ours(LONG.split(), is_split_into_words=True)
    assert "pass stride=" in caplog.text
    assert not [w for w in raised if "model_max_length" in str(w.message)]  # not the tokenizer's as well


@pytest.mark.parametrize("strategy", ["none", "simple", "first"])
@pytest.mark.parametrize("delimiter", [None, " - "])
def test_split_into_words_as_transformers(tagger, strategy, delimiter) -> None:
    options = {"aggregation_strategy": strategy, "is_split_into_words": True}
    if delimiter is not None:
        options["delimiter"] = delimiter
    ours = pipeline("token-classification", model=tagger)
    reference = theirs(tagger)
    assert_matches(ours(WORDS, **options), reference(WORDS, **options))
    batch = [WORDS, WORDS[:4]]
    assert_matches(ours(batch, **options), reference(batch, **options))


def test_deprecated_grouping_options_and_errors(tagger) -> None:
    ours, reference = pipeline("token-classification", model=tagger), theirs(tagger)
    for grouped, subwords in [(True, False), (True, True), (False, True)]:
        options = {"grouped_entities": grouped, "ignore_subwords": subwords}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert_matches(ours(LONG[:80], **options), reference(LONG[:80], **options))
    with pytest.raises(ValueError, match="aggregation_strategy other than"):
        ours(LONG, stride=8, aggregation_strategy="none")
    # left out, every window's tokens come back, overlapping ones merged, as in transformers (before: refused)
    assert_matches(ours(LONG, stride=8), reference(LONG, stride=8))
    with pytest.raises(ValueError, match="stride must be an int"):
        ours(LONG, stride=38, aggregation_strategy="simple")
    with pytest.raises(TypeError, match="needs is_split_into_words"):
        ours([WORDS])
