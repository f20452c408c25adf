"""Every pipeline against transformers 4.57.1's pipeline of the same task, on tiny random checkpoints that
transformers saved with the genuine ALBERT vocabulary: same tokens, labels and character spans, scores
within 1e-5. Multiple-choice, which transformers has no pipeline for, is checked against its model."""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.conftest import TINY_GENUINE_VOCAB, spiece_or_skip

import openalbert
from openalbert.pipelines import PipelineException, pipeline

transformers = pytest.importorskip("transformers")
pytestmark = [
    pytest.mark.needs_shared,
    # transformers' own deprecation noise, from inside its pipelines.
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Passing a list of SQuAD:FutureWarning"),
]

CONFIG = TINY_GENUINE_VOCAB
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]

# Texts on which transformers' fast tokenizer (the oracle's) and ours give the same ids: the two
# differ on purpose elsewhere (ours follows the original algorithm; see the tokenizer tests).
MASKED = "Plants create [MASK] through a process known as photosynthesis."
TWO_MASKS = "The [MASK] of France is [MASK] ."
NER_TEXT = "My name is Wolfgang Amadeus and I live in Berlin, near the Brandenburg Gate; Zoë's café is nice."
CONTEXT = (
    "The Eiffel Tower is a wrought iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. "
    "Locally nicknamed La dame de fer, it was constructed as the centerpiece of the 1889 World's Fair, and "
    "to crown the centennial anniversary of the French Revolution. Although initially criticised by some of "
    "France's leading artists and intellectuals for its design, it has since become a global cultural icon "
    "of France and one of the most recognisable structures in the world."
)
QUESTION = "Who designed the tower?"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One checkpoint directory per head, written by transformers, with the tokenizer beside it."""
    spiece = spiece_or_skip()
    root = tmp_path_factory.mktemp("pipelines")
    tokenizer = transformers.AlbertTokenizerFast(vocab_file=str(spiece))
    out = {}
    heads = {
        "AlbertForMaskedLM": {},
        "AlbertForSequenceClassification": {"id2label": {0: "NEG", 1: "POS", 2: "NEU"}},
        "AlbertForTokenClassification": {"id2label": dict(enumerate(NER_LABELS))},
        "AlbertForQuestionAnswering": {},
        "AlbertForMultipleChoice": {},
    }
    for head, extra in heads.items():
        torch.manual_seed(0)
        model = getattr(transformers, head)(transformers.AlbertConfig(**CONFIG, **extra)).eval()
        with torch.no_grad():
            # A random model is near-uniform; spread its outputs so rankings and entity groups mean something.
            if head == "AlbertForMaskedLM":
                model.predictions.bias.normal_(0, 2)
            elif head == "AlbertForSequenceClassification":
                model.classifier.bias.copy_(torch.tensor([0.2, -0.3, 0.1]))
            elif head == "AlbertForTokenClassification":
                model.classifier.weight.mul_(20)
                model.classifier.bias.copy_(torch.tensor([0.6, 0.0, 0.5, 0.0, 0.5]))
            elif head == "AlbertForQuestionAnswering":
                model.qa_outputs.weight.mul_(10)
        out[head] = root / head
        model.save_pretrained(out[head])
        tokenizer.save_pretrained(out[head])
    return out


@pytest.fixture(scope="module")
def reference():
    """transformers.pipeline(task, model=dir), built once per (task, dir)."""
    cache: dict[tuple[str, Path], Any] = {}

    def get(task: str, directory: Path) -> Any:
        if (task, directory) not in cache:
            transformers.logging.set_verbosity_error()
            cache[task, directory] = transformers.pipeline(task, model=str(directory), device="cpu")
        return cache[task, directory]

    return get


def assert_matches(ours: Any, theirs: Any, path: str = "result") -> None:
    """Same structure, keys in the same order, equal strings and ints, floats within 1e-5."""
    if isinstance(theirs, (np.floating, np.integer)):
        theirs = theirs.item()
    if isinstance(theirs, float):
        assert isinstance(ours, float), f"{path}: {ours!r} is not a float"
        assert abs(ours - theirs) <= 1e-5, f"{path}: {ours} vs {theirs}"
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), f"{path}: {ours!r} vs {theirs!r}"
        for key in theirs:
            assert_matches(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{path}: {ours!r} vs {theirs!r}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_matches(a, b, f"{path}[{i}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, f"{path}: {ours!r} vs {theirs!r}"


def test_texts_tokenize_alike(models: dict[str, Path]) -> None:
    # The comparisons below are only meaningful where the oracle's tokenizer and ours agree.
    ours = openalbert.pipeline("fill-mask", model=models["AlbertForMaskedLM"]).tokenizer
    theirs = transformers.AutoTokenizer.from_pretrained(models["AlbertForMaskedLM"])
    for text in (MASKED, TWO_MASKS, NER_TEXT, CONTEXT, QUESTION):
        a = ours(text, return_offsets_mapping=True)
        b = theirs(text, return_offsets_mapping=True)
        assert a["input_ids"] == b["input_ids"], text
        assert [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]], text


# ---- fill-mask --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs, params",
    [
        (MASKED, {}),
        (MASKED, {"top_k": 3}),
        (TWO_MASKS, {"top_k": 2}),
        ("Hello [MASK]!", {"targets": ["paris", "london", "Rome", "▁berlin"]}),
        (TWO_MASKS, {"targets": ["paris", "capital"], "top_k": 1}),
        ([MASKED, "Hello [MASK]!", TWO_MASKS], {"top_k": 2}),
        ([MASKED], {}),
        (MASKED, {"top_k": None}),  # transformers' default
        (TWO_MASKS, {"top_k": 0}),
        ([], {}),
    ],
)
def test_fill_mask(models, reference, inputs: Any, params: dict) -> None:
    directory = models["AlbertForMaskedLM"]
    ours = pipeline("fill-mask", model=directory, batch_size=2)
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        theirs = reference("fill-mask", directory)(inputs, **params)
        assert_matches(ours(inputs, **params), theirs)


def test_transformers_pipeline_options_a_slow_tokenizer_and_long_texts(models, reference) -> None:
    # Before: pipeline() refused config, model_kwargs, revision, token, use_fast, trust_remote_code and
    # binary_output; a call refused num_workers; transformers' slow tokenizer failed at the first call; and
    # fill-mask had no tokenizer_kwargs, so a text past 512 tokens could not be cut.
    directory = models["AlbertForMaskedLM"]
    config = openalbert.AlbertConfig.from_pretrained(directory)
    fill = pipeline("fill-mask", model=directory, config=config, model_kwargs={"attn_implementation": "sdpa"},
                    revision="main", token=False, use_fast=True, trust_remote_code=False, binary_output=True)  # fmt: skip
    assert fill.model.albert.encoder.attn_implementation == "sdpa" and fill.model.config is not config
    assert fill.binary_output and fill.dtype == fill.torch_dtype == torch.float32
    slow = transformers.AlbertTokenizer.from_pretrained(directory)
    by_object = pipeline(
        "fill-mask", model=openalbert.AlbertForMaskedLM.from_pretrained(directory), tokenizer=slow
    )
    long = MASKED + " word" * 600
    options = {"tokenizer_kwargs": {"truncation": True, "max_length": 64}}
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        theirs = reference("fill-mask", directory)
        assert_matches(fill(MASKED, num_workers=2), theirs(MASKED))
        assert_matches(by_object(MASKED), theirs(MASKED))
        assert_matches(fill(long, **options), theirs(long, **options))
    with pytest.raises(ValueError, match="apply to a model loaded by name"):
        pipeline(
            "fill-mask", model=by_object.model, tokenizer=slow, model_kwargs={"attn_implementation": "sdpa"}
        )


def test_older_spellings_and_tokenizer_options_of_transformers_pipelines(models, reference) -> None:
    # Before, refused: QA's topk=, padding=, X= and data=; text-classification's truncation="only_first" /
    # "only_second" and a ClassificationFunction member as function_to_apply.
    from transformers.pipelines.text_classification import ClassificationFunction

    qa = pipeline("question-answering", model=models["AlbertForQuestionAnswering"])
    item = {"question": QUESTION, "context": CONTEXT}
    classify = pipeline("text-classification", model=models["AlbertForSequenceClassification"])
    long = " ".join(["word"] * 60)
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        theirs = reference("question-answering", models["AlbertForQuestionAnswering"])
        window = {"max_seq_len": 64, "doc_stride": 16}
        for args, options in (((item,), {"topk": 2}), ((item,), {"padding": True}), ((), {"X": item}),
                              ((), {"data": item})):  # fmt: skip
            assert_matches(qa(*args, **options, **window), theirs(*args, **options, **window), str(options))
        theirs = reference("text-classification", models["AlbertForSequenceClassification"])
        for text, options in (
            ({"text": "a b", "text_pair": long}, {"truncation": "only_second", "max_length": 16}),
            ({"text": long, "text_pair": "c d"}, {"truncation": "only_first", "max_length": 16}),
            ("nice", {"function_to_apply": ClassificationFunction.SIGMOID}),
        ):
            assert_matches(classify(text, **options), theirs(text, **options), str(options))
    with pytest.raises(ValueError, match="truncation='only_first' cannot fit this input"):
        classify({"text": "a", "text_pair": long}, truncation="only_first", max_length=16)


def test_a_special_token_in_a_context_is_a_word_of_its_own(models, reference) -> None:
    # as in transformers' fast tokenizer's words; before, [MASK] was widened into the word before it
    qa = pipeline("question-answering", model=models["AlbertForQuestionAnswering"])
    options = {"question": "who", "context": "Felix [MASK] lives here", "top_k": 3, "max_answer_len": 1}
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        assert_matches(
            qa(**options), reference("question-answering", models["AlbertForQuestionAnswering"])(**options)
        )


def test_an_unknown_piece_stays_in_its_word(models, reference) -> None:
    # l’Opéra is l <unk> oper a in both tokenizers; the <unk> was counted as a word of its own, so answers
    # began mid-word ('Opéra yesterday.' where transformers answers ' l’Opéra yesterday.')
    qa = pipeline("question-answering", model=models["AlbertForQuestionAnswering"])
    for context in ("We met at l’Opéra yesterday.", "a ☃☃ x ☃y z☃ end"):
        options = {"question": "Where?", "context": context, "top_k": 5}
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            theirs = reference("question-answering", models["AlbertForQuestionAnswering"])(**options)
        assert_matches(qa(**options), theirs)


def test_fill_mask_without_a_mask(models) -> None:
    fill = pipeline("fill-mask", model=models["AlbertForMaskedLM"])
    with pytest.raises(ValueError, match=r"no \[MASK\] in the input 'no mask here'"):
        fill("no mask here")
    with pytest.raises(PipelineException) as caught:  # transformers' class for it, and a ValueError
        fill("no mask here")
    assert (caught.value.task, caught.value.model) == ("fill-mask", "albert")
    results = fill.run(["a [MASK] b", "no mask here", "c [MASK]"], errors="return", top_k=1)
    assert isinstance(results[1], ValueError)
    assert [r[0]["token"] for r in (results[0], results[2])] == [fill("a [MASK] b")[0]["token"]] + [
        fill("c [MASK]")[0]["token"]
    ]


# ---- text classification ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"top_k": 2},
        {"top_k": None},
        {"top_k": 1, "function_to_apply": "sigmoid"},
        {"function_to_apply": "none"},
        {"top_k": 0},
    ],
)
@pytest.mark.parametrize(
    "inputs",
    [
        "I love it",
        ["I love it", "meh", "this is a longer sentence than the others"],
        {"text": "I do", "text_pair": "so do I"},
        {"text": "I do", "text_pair": None},  # a single text, as transformers reads it
        [],
    ],
    ids=["one", "list", "pair", "pair-none", "none"],
)
def test_text_classification(models, reference, inputs: Any, params: dict) -> None:
    directory = models["AlbertForSequenceClassification"]
    ours = pipeline("text-classification", model=directory)
    assert_matches(ours(inputs, **params), reference("text-classification", directory)(inputs, **params))


@pytest.mark.parametrize(
    "at_construction, in_call",
    [
        ({"top_k": None}, {}),
        ({"top_k": 2}, {}),
        ({"top_k": 2}, {"top_k": 1}),
        ({"top_k": 1}, {"function_to_apply": "sigmoid"}),
        ({}, {"return_all_scores": True}),
        ({}, {"return_all_scores": False}),
        ({"return_all_scores": True}, {}),
        ({"return_all_scores": True}, {"top_k": 1}),
        ({"return_all_scores": False}, {"return_all_scores": True}),
        ({"top_k": 2}, {"return_all_scores": False}),
        ({"top_k": 2}, {"return_all_scores": True}),
        ({}, {"return_all_scores": True, "top_k": 2}),
    ],
)
def test_text_classification_top_k_and_return_all_scores(
    models, at_construction: dict, in_call: dict
) -> None:
    # transformers checks the pipeline's parameters and the call's apart, then merges them; whether a lone
    # string's result is wrapped in a list depends on the call's own top_k alone.
    directory = models["AlbertForSequenceClassification"]
    inputs = ["I love it", ["I love it", "meh"], {"text": "I do", "text_pair": "so do I"}]

    def answers(build: Any) -> tuple[list[Any], bool]:
        """The pipeline's answers to `inputs`, and whether it warned that return_all_scores is deprecated."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe = build("text-classification", **at_construction)
            results = [pipe(x, **in_call) for x in inputs]
        return results, any("`return_all_scores` is now deprecated" in str(w.message) for w in caught)

    theirs, they_warned = answers(
        lambda task, **kw: transformers.pipeline(task, model=str(directory), device="cpu", **kw)
    )
    ours, we_warned = answers(lambda task, **kw: pipeline(task, model=directory, **kw))
    assert_matches(ours, theirs)
    assert we_warned == they_warned


def test_a_configs_return_all_scores_is_the_default(models, tmp_path) -> None:
    # An older checkpoint's config.json may hold return_all_scores; transformers takes it for a call without.
    directory = tmp_path / "all-scores"
    shutil.copytree(models["AlbertForSequenceClassification"], directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"return_all_scores": True}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # return_all_scores is deprecated
        theirs = transformers.pipeline("text-classification", model=str(directory), device="cpu")("I love it")
        ours = pipeline("text-classification", model=directory)("I love it")
    assert len(ours[0]) == 3
    assert_matches(ours, theirs)


def test_text_classification_takes_the_tokenizer_options_transformers_forwards(models, reference) -> None:
    directory = models["AlbertForSequenceClassification"]
    ours, theirs = (
        pipeline("text-classification", model=directory),
        reference("text-classification", directory),
    )
    texts = [
        "I love it, and so does everyone I know",
        {"text": "I do not", "text_pair": "but they really do"},
    ]
    for options in (
        {"truncation": True},
        {"truncation": True, "max_length": 6},
        {"max_length": 7},
        {"padding": True},
        {"add_special_tokens": False},
        {"return_token_type_ids": False},
        {"add_special_tokens": False, "return_token_type_ids": False, "truncation": True, "max_length": 5},
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers: max_length without truncation
            assert_matches(ours(texts, **options), theirs(texts, **options))
    with pytest.raises(ValueError, match="pass truncation=True"):
        ours("word " * 600, truncation=False)
    with pytest.raises(ValueError, match="no tokens"):
        ours("", add_special_tokens=False)


def test_pipeline_object_api_as_transformers(models, tmp_path) -> None:
    clf = pipeline("text-classification", model=models["AlbertForSequenceClassification"])
    assert clf.framework == "pt" and clf.predict("I love it") == clf("I love it")
    clf.save_pretrained(tmp_path / "saved")
    assert pipeline("text-classification", model=tmp_path / "saved")("I love it") == clf("I love it")
    theirs = transformers.pipeline("text-classification", model=str(tmp_path / "saved"), device="cpu")
    assert_matches(clf(["I love it"]), theirs(["I love it"]))
    alias = pipeline("sentiment-analysis", model=tmp_path / "saved")
    assert alias.task == transformers.pipeline("sentiment-analysis", model=str(tmp_path / "saved")).task


def test_a_transformers_model_object_is_named_as_such(models) -> None:
    theirs = transformers.AlbertForSequenceClassification.from_pretrained(
        models["AlbertForSequenceClassification"]
    )
    with pytest.raises(
        TypeError, match="got transformers.models.albert.*pass openalbert's class or a checkpoint"
    ):
        pipeline("text-classification", model=theirs, tokenizer=models["AlbertForSequenceClassification"])


def test_fill_mask_takes_a_number_as_a_target_word(models) -> None:
    # `openalbert run --param targets=1990` reads the value as JSON: the number 1990
    fill = pipeline("fill-mask", model=models["AlbertForMaskedLM"])
    assert fill(MASKED, targets=1990) == fill(MASKED, targets="1990")
    assert fill(MASKED, targets=[1990, "year"]) == fill(MASKED, targets=["1990", "year"])


def test_text_from_numpy_and_pandas_is_text(models, reference) -> None:
    # numpy.str_ (what a pandas column or a numpy array of strings holds) is a str
    directory = models["AlbertForSequenceClassification"]
    text = np.str_("I love it")
    assert_matches(
        pipeline("text-classification", model=directory)(text),
        reference("text-classification", directory)(text),
    )


# ---- token classification ---------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification(models, reference, strategy: str) -> None:
    directory = models["AlbertForTokenClassification"]
    ours = pipeline("token-classification", model=directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers warns that SentencePiece has no word markers
        theirs = reference("token-classification", directory)(NER_TEXT, aggregation_strategy=strategy)
    result = ours(NER_TEXT, aggregation_strategy=strategy)
    assert_matches(result, theirs)
    for entity in result:
        # Character spans index the text the user passed (accents and all).
        assert 0 <= entity["start"] < entity["end"] <= len(NER_TEXT)
    if strategy != "none":
        assert any(" " in NER_TEXT[e["start"] : e["end"]].strip() for e in result), "no multi-word entity"
        assert len(result) < len(ours(NER_TEXT)), "grouping merged nothing"


def test_token_classification_list_and_ignore_labels(models, reference) -> None:
    directory = models["AlbertForTokenClassification"]
    texts = [NER_TEXT, "I live in Berlin"]
    ours = pipeline("token-classification", model=directory, aggregation_strategy="simple")
    theirs = reference("token-classification", directory)
    assert_matches(ours(texts), theirs(texts, aggregation_strategy="simple"))
    assert_matches(
        ours(texts, ignore_labels=[]), theirs(texts, aggregation_strategy="simple", ignore_labels=[])
    )
    # one label as a str, as `openalbert run --param ignore_labels=PER` gives it: that label, not its letters
    assert any(e["entity_group"] == "PER" for e in ours(texts)[0])
    assert_matches(
        ours(texts, ignore_labels="PER"), theirs(texts, aggregation_strategy="simple", ignore_labels=["PER"])
    )


def test_token_classification_offset_mapping(models, reference) -> None:
    # Spans given with offset_mapping replace the tokenizer's, as in transformers (here shifted by one, as for
    # a text the user cut a prefix from); a batch gives one list of spans per input.
    directory = models["AlbertForTokenClassification"]
    tokenizer = transformers.AlbertTokenizerFast.from_pretrained(directory)
    texts = ["John Smith lives in Paris", "I live in Berlin"]
    spans = [
        [
            (a + 1, b + 1) if b else (a, b)
            for a, b in tokenizer(t, return_offsets_mapping=True)["offset_mapping"]
        ]
        for t in texts
    ]
    ours = pipeline("token-classification", model=directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for strategy in ("none", "simple"):
            theirs = reference("token-classification", directory)(
                texts[0], offset_mapping=spans[0], aggregation_strategy=strategy
            )
            result = ours(texts[0], offset_mapping=spans[0], aggregation_strategy=strategy)
            assert_matches(result, theirs)
            assert result and all(e["start"] > 0 for e in result)
        # (transformers gives every input of a batch the first input's spans; each gets its own here)
        batch = ours(texts, offset_mapping=spans)
        assert_matches(batch, [ours(text, offset_mapping=s) for text, s in zip(texts, spans)])
        assert batch[1] != ours(texts[1])
    with pytest.raises(ValueError, match="holds 3 spans; tokenizer.text. gives 7 tokens"):
        ours(texts[0], offset_mapping=spans[0][:3])
    with pytest.raises(ValueError, match="the spans of 1 inputs for 2 inputs"):
        ours(texts, offset_mapping=spans[0])
    with pytest.raises(TypeError, match="list of .start, end. character spans"):
        ours(texts[0], offset_mapping="0-4")
    with pytest.raises(ValueError, match="has its own"):
        ours(["John", "Smith"], is_split_into_words=True, offset_mapping=spans[0])


# ---- question answering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"max_seq_len": 64, "doc_stride": 16},
        {"max_seq_len": 48, "doc_stride": 20, "top_k": 5},
        {"max_seq_len": 64, "doc_stride": 32, "top_k": 3, "handle_impossible_answer": True},
        {"max_seq_len": 40, "doc_stride": 10, "top_k": 4, "max_answer_len": 3},
        {"max_seq_len": 64, "top_k": 10, "align_to_words": False},
        {"max_seq_len": 128, "top_k": 2},
    ],
)
def test_question_answering_long_context(models, reference, params: dict) -> None:
    directory = models["AlbertForQuestionAnswering"]
    ours = pipeline("question-answering", model=directory)
    windows = ours._preprocess({"question": QUESTION, "context": CONTEXT}, ours.check_params(**params))
    assert len(windows) > 1, "the context must be longer than max_seq_len"
    theirs = reference("question-answering", directory)(question=QUESTION, context=CONTEXT, **params)
    result = ours(question=QUESTION, context=CONTEXT, **params)
    assert_matches(result, theirs)
    for answer in result if isinstance(result, list) else [result]:
        assert CONTEXT[answer["start"] : answer["end"]] == answer["answer"]


def test_question_answering_input_forms(models, reference) -> None:
    directory = models["AlbertForQuestionAnswering"]
    ours = pipeline("question-answering", model=directory, max_seq_len=64, doc_stride=16)
    theirs = reference("question-answering", directory)
    pairs = [
        {"question": QUESTION, "context": CONTEXT},
        {"question": "When?", "context": "In 1889 it was built."},
    ]
    assert_matches(ours(pairs), theirs(pairs, max_seq_len=64, doc_stride=16))
    assert_matches(ours(pairs[:1]), theirs(pairs[:1], max_seq_len=64, doc_stride=16))
    questions = [QUESTION, "When was it built?"]
    assert_matches(
        ours(question=questions, context=CONTEXT),
        theirs(question=questions, context=CONTEXT, max_seq_len=64, doc_stride=16),
    )
    with pytest.raises(KeyError, match="context"):
        ours({"question": "Who?"})
    # two strings: question, context
    assert_matches(ours(QUESTION, CONTEXT), theirs(QUESTION, CONTEXT, max_seq_len=64, doc_stride=16))
    # transformers' SquadExamples, made by its create_sample; ours makes the dicts
    samples = theirs.create_sample(questions, [CONTEXT, CONTEXT])
    assert_matches(ours(samples), theirs(samples, max_seq_len=64, doc_stride=16))
    assert ours.create_sample(questions, CONTEXT) == [{"question": q, "context": CONTEXT} for q in questions]
    assert ours([]) == theirs([]) == []
    # None is the default of top_k, max_answer_len and max_question_len, as there
    defaults = {"top_k": None, "max_answer_len": None, "max_question_len": None}
    assert_matches(ours(pairs[1], **defaults), theirs(pairs[1], max_seq_len=64, doc_stride=16, **defaults))


# ---- feature extraction ---------------------------------------------------------------------------------


def test_feature_extraction(models, reference) -> None:
    directory = models["AlbertForMaskedLM"]
    ours = pipeline("feature-extraction", model=directory)
    theirs = reference("feature-extraction", directory)
    texts = ["Hello world", NER_TEXT, MASKED]
    for inputs in (texts[0], texts):
        a, b = ours(inputs), theirs(inputs)
        assert len(a) == len(b)
        for x, y in zip(a if isinstance(inputs, list) else [a], b if isinstance(inputs, list) else [b]):
            torch.testing.assert_close(torch.tensor(x), torch.tensor(y), atol=1e-5, rtol=0)
    hidden = torch.tensor(theirs(NER_TEXT))[0]  # (T, H)
    torch.testing.assert_close(
        torch.tensor(ours(NER_TEXT, pooling="mean")), hidden.mean(0), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(torch.tensor(ours(NER_TEXT, pooling="cls")), hidden[0], atol=1e-5, rtol=0)
    assert ours(NER_TEXT, return_tensors=True).shape == (1, hidden.shape[0], CONFIG["hidden_size"])
    # A masked-LM checkpoint carries no pooler weights: pooling="pooler" would be random, so it is refused.
    with pytest.raises(ValueError, match="no trained pooler"):
        ours(NER_TEXT, pooling="pooler")
    pooled = pipeline("feature-extraction", model=models["AlbertForSequenceClassification"])
    reference_model = transformers.AlbertModel.from_pretrained(models["AlbertForSequenceClassification"])
    enc = transformers.AutoTokenizer.from_pretrained(directory)(NER_TEXT, return_tensors="pt")
    with torch.no_grad():
        expected = reference_model(**enc).pooler_output[0]
    torch.testing.assert_close(torch.tensor(pooled(NER_TEXT, pooling="pooler")), expected, atol=1e-5, rtol=0)
    # the tokenizer options transformers takes in tokenize_kwargs
    for options in ({"truncation": True}, {"truncation": True, "max_length": 6}, {"padding": True},
                    {"add_special_tokens": False}, {"return_token_type_ids": False},
                    {"return_attention_mask": False, "max_length": 8, "truncation": True}):  # fmt: skip
        a, b = ours(NER_TEXT, tokenize_kwargs=options), theirs(NER_TEXT, tokenize_kwargs=options)
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="truncation given twice"):
        ours(NER_TEXT, truncation=True, tokenize_kwargs={"truncation": True})


# ---- multiple choice -------------------------------------------------------------------------------------


def test_multiple_choice(models) -> None:
    directory = models["AlbertForMultipleChoice"]
    ours = pipeline("multiple-choice", model=directory)
    prompt, choices = "The cat sat on the", ["mat.", "moon in the night sky.", "idea of justice."]
    reference_model = transformers.AlbertForMultipleChoice.from_pretrained(directory).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    enc = tokenizer([prompt] * len(choices), choices, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = reference_model(**{k: v[None] for k, v in enc.items()}).logits[0].softmax(-1)
    result = ours({"prompt": prompt, "choices": choices})
    assert [r["score"] for r in result] == sorted((r["score"] for r in result), reverse=True)
    assert sorted(r["index"] for r in result) == [0, 1, 2]
    for r in result:
        assert r["choice"] == choices[r["index"]]
        assert abs(r["score"] - float(expected[r["index"]])) <= 1e-5
    assert ours(prompt, choices=choices, top_k=1) == result[:1]
    two = ours([{"prompt": prompt, "choices": choices}, {"prompt": "Yes or no?", "choices": ["yes", "no"]}])
    assert_matches(two[0], result)
    assert len(two[1]) == 2 and abs(sum(r["score"] for r in two[1]) - 1) < 1e-6


# ---- parameters ------------------------------------------------------------------------------------------


def test_a_bool_is_not_a_count(models) -> None:
    # bool is an int subclass: top_k=True must be refused, not read as 1 or handed to torch.topk.
    pair = {"question": QUESTION, "context": CONTEXT}
    choices = {"prompt": "The cat sat on the", "choices": ["mat.", "moon."]}
    cases = [
        ("fill-mask", "AlbertForMaskedLM", MASKED, {"top_k": True}),
        ("text-classification", "AlbertForSequenceClassification", "Hi", {"top_k": True}),
        ("question-answering", "AlbertForQuestionAnswering", pair, {"top_k": True}),
        ("question-answering", "AlbertForQuestionAnswering", pair, {"max_answer_len": True}),
        ("question-answering", "AlbertForQuestionAnswering", pair, {"doc_stride": False}),
        ("multiple-choice", "AlbertForMultipleChoice", choices, {"top_k": True}),
    ]
    for task, head, inputs, params in cases:
        pipe = pipeline(task, model=models[head])
        with pytest.raises(ValueError, match=f"{next(iter(params))} must be"):
            pipe(inputs, **params)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        pipeline("fill-mask", model=models["AlbertForMaskedLM"], batch_size=True)


def test_boolean_parameters_take_words(models) -> None:
    # `openalbert run --param handle_impossible_answer=no` hands the pipeline the string "no".
    qa = pipeline("question-answering", model=models["AlbertForQuestionAnswering"], top_k=30)
    item = {"question": "Who wrote it?", "context": "Jane wrote it."}
    off, on = qa(item, handle_impossible_answer=False), qa(item, handle_impossible_answer=True)
    assert len(on) == len(off) + 1 and any(a["answer"] == "" and a["score"] > 0 for a in on)
    for word in ("no", "OFF", "false", 0, None):
        assert qa(item, handle_impossible_answer=word) == off, word
    for word in ("yes", "On", "TRUE", 1):
        assert qa(item, handle_impossible_answer=word) == on, word
    assert qa(item, align_to_words="off") == qa(item, align_to_words=False)
    with pytest.raises(ValueError, match="handle_impossible_answer must be a boolean .*got 'maybe'"):
        qa(item, handle_impossible_answer="maybe")
    with pytest.raises(ValueError, match="align_to_words must be a boolean .*got 2"):
        qa(item, align_to_words=2)
    features = pipeline("feature-extraction", model=models["AlbertForMaskedLM"])
    assert isinstance(features("Hi", return_tensors="no"), list)
    assert isinstance(features("Hi", return_tensors="yes"), torch.Tensor)
    long_text = "word " * 200  # more than the 128 positions, less than the tokenizer's 512
    assert len(features(long_text, truncation="longest_first")[0]) == CONFIG["max_position_embeddings"]
    with pytest.raises(ValueError, match="tokens long"):
        features(long_text, truncation="off")


def test_a_default_parameter_is_checked_once(models, caplog) -> None:
    # Checked at construction; the calls that add no parameter reuse it, so its warning shows once.
    with caplog.at_level(logging.WARNING, logger="openalbert"):
        fill = pipeline("fill-mask", model=models["AlbertForMaskedLM"], targets=["Rome", "paris"])
        fill(MASKED)
        fill([MASKED, TWO_MASKS])
    assert sum("'Rome' is not in the vocabulary" in r.getMessage() for r in caplog.records) == 1


# ---- batching, devices, loading ----------------------------------------------------------------------------


def test_batching_by_length_keeps_order_and_results(models) -> None:
    texts = [NER_TEXT, "Hi", CONTEXT, "I live in Berlin", MASKED, "a b c"]
    one = pipeline("token-classification", model=models["AlbertForTokenClassification"], batch_size=1)
    many = pipeline("token-classification", model=models["AlbertForTokenClassification"], batch_size=4)
    assert_matches(many(texts), one(texts))
    assert_matches(many(texts), [one(t) for t in texts])


def test_a_generator_or_dataset_gives_an_iterator_read_a_batch_at_a_time(models, reference) -> None:
    texts = [
        MASKED,
        TWO_MASKS,
        "Paris is the [MASK] of France.",
        "The [MASK] sat on the mat.",
        "[MASK] is here.",
    ]
    pulled: list[str] = []

    def source():
        for text in texts:
            pulled.append(text)
            yield text

    pipe = pipeline("fill-mask", model=models["AlbertForMaskedLM"], batch_size=2)
    results = pipe(source(), top_k=2)
    assert not isinstance(results, list) and pulled == []  # nothing is read before a result is asked for
    first = next(results)
    assert len(pulled) == 2  # one batch
    rest = list(results)
    theirs = reference("fill-mask", models["AlbertForMaskedLM"])
    assert_matches([first, *rest], list(theirs((t for t in texts), top_k=2)))
    assert_matches([first, *rest], [pipe(t, top_k=2) for t in texts])

    class Texts(torch.utils.data.Dataset):  # as transformers' KeyDataset over a datasets.Dataset
        def __init__(self, texts: list[str]) -> None:
            self.texts = dict(enumerate(texts))  # read by index up to its length, not until an IndexError

        def __len__(self) -> int:
            return len(self.texts)

        def __getitem__(self, i: int) -> str:
            return self.texts[i]

    assert_matches(list(pipe(Texts(texts), top_k=2)), [first, *rest])
    # Each item's result is an element of pipe(list): text-classification's lone-string list is not added.
    for task, head, inputs in (
        ("text-classification", "AlbertForSequenceClassification", [MASKED, NER_TEXT, "Hi"]),
        ("token-classification", "AlbertForTokenClassification", [NER_TEXT, "I live in Berlin"]),
    ):
        ours = pipeline(task, model=models[head], batch_size=2)
        expected = list(reference(task, models[head])(t for t in inputs))
        assert_matches(list(ours(t for t in inputs)), expected)
        assert_matches(list(ours(Texts(inputs))), expected)
    with pytest.raises(ValueError, match="batch_size"):  # when called, not at the first result
        pipe(source(), batch_size=0)


def test_dtype_and_device(models) -> None:
    fill = pipeline("fill-mask", model=models["AlbertForMaskedLM"], device="cpu", dtype="bfloat16")
    assert fill.model.dtype == torch.bfloat16 and fill.device.type == "cpu"
    full = pipeline("fill-mask", model=models["AlbertForMaskedLM"], device=-1)
    low, high = fill(MASKED, top_k=1)[0], full(MASKED, top_k=1)[0]
    assert low["token"] == high["token"] and abs(low["score"] - high["score"]) < 0.05


def test_model_object_and_errors(models) -> None:
    mlm = openalbert.AlbertForMaskedLM.from_pretrained(models["AlbertForMaskedLM"])
    fill = pipeline("fill-mask", model=mlm, tokenizer=models["AlbertForMaskedLM"])
    assert (
        fill(MASKED)[0]["token"]
        == pipeline("fill-mask", model=models["AlbertForMaskedLM"])(MASKED)[0]["token"]
    )
    with pytest.raises(ValueError, match="tokenizer"):
        pipeline("fill-mask", model=mlm)
    with pytest.raises(ValueError, match="unknown task 'translation'"):
        pipeline("translation", model=models["AlbertForMaskedLM"])
    with pytest.raises(
        ValueError, match=r"no masked-LM head.*AlbertForSequenceClassification.*predictions\."
    ):
        pipeline("fill-mask", model=models["AlbertForSequenceClassification"])
    with pytest.raises(ValueError, match="no question-answering head"):
        pipeline("question-answering", model=models["AlbertForMaskedLM"])
    with pytest.raises(ValueError, match="cannot be used for multiple-choice"):
        pipeline("multiple-choice", model=models["AlbertForSequenceClassification"])
    with pytest.raises(ValueError, match="top_k must be an integer >= 0"):
        fill(MASKED, top_k=-1)
    with pytest.raises(TypeError, match="unknown parameters"):
        fill(MASKED, aggregation_strategy="simple")
    with pytest.raises(ValueError, match="needs a model"):
        pipeline("text-classification")


def test_default_model(models) -> None:
    from openalbert.checkpoint import DEFAULT_MODEL_DIR

    if (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        assert pipeline("fill-mask")(MASKED, top_k=2)[0]["sequence"]
    else:
        with pytest.raises(FileNotFoundError, match="model.safetensors"):
            pipeline("fill-mask")


class _quiet:
    """Silence transformers' and openalbert's target warnings for the duration of a block."""

    def __enter__(self) -> None:
        self.levels = [(lg, lg.level) for lg in map(logging.getLogger, ("openalbert", "transformers"))]
        for lg, _ in self.levels:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for lg, level in self.levels:
            lg.setLevel(level)


# ---- TensorFlow and Flax models ------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_tf_and_flax_models_give_every_pipeline_pytorchs_answers(models, framework) -> None:
    pytest.importorskip({"tf": "tensorflow", "flax": "flax"}[framework])
    choices = {
        "prompt": "The cat sat on the",
        "choices": ["mat.", "moon in the night sky.", "idea of justice."],
    }
    cases = [
        ("fill-mask", "AlbertForMaskedLM", [MASKED, TWO_MASKS], {"top_k": 3}),
        ("text-classification", "AlbertForSequenceClassification", [NER_TEXT, "Hi"], {"top_k": None}),
        (
            "token-classification",
            "AlbertForTokenClassification",
            NER_TEXT,
            {"aggregation_strategy": "simple"},
        ),
        (
            "question-answering",
            "AlbertForQuestionAnswering",
            {"question": QUESTION, "context": CONTEXT},
            {"top_k": 2},
        ),
        ("multiple-choice", "AlbertForMultipleChoice", choices, {}),
        ("feature-extraction", "AlbertForSequenceClassification", NER_TEXT, {"pooling": "pooler"}),
    ]
    for task, head, inputs, params in cases:
        expected = pipeline(task, model=models[head])(inputs, **params)
        got = pipeline(task, model=models[head], framework=framework)(inputs, **params)
        assert got and not isinstance(got, (type(None),))
        assert_matches(got, expected, task)
    # a model object is run in its own framework; a head the checkpoint lacks is refused as for PyTorch
    module = importlib.import_module(f"openalbert.modeling_{framework}")
    prefix = {"tf": "TF", "flax": "Flax"}[framework]
    mlm = getattr(module, f"{prefix}AlbertForMaskedLM").from_pretrained(models["AlbertForMaskedLM"])
    fill = pipeline("fill-mask", model=mlm, tokenizer=models["AlbertForMaskedLM"])
    assert_matches(fill(MASKED), pipeline("fill-mask", model=models["AlbertForMaskedLM"])(MASKED))
    with pytest.raises(ValueError, match="has no .* for question-answering"):
        pipeline("question-answering", model=models["AlbertForMaskedLM"], framework=framework)
    with pytest.raises(ValueError, match="no trained pooler"):
        pipeline("feature-extraction", model=models["AlbertForMaskedLM"], framework=framework)(
            "Hi", pooling="pooler"
        )
    with pytest.raises(
        ValueError,
        match="device=, dtype=, quantization=, cuda_graphs= and fallback_margin= apply to PyTorch models",
    ):
        pipeline("fill-mask", model=mlm, tokenizer=models["AlbertForMaskedLM"], dtype="bfloat16")
    with pytest.raises(TypeError, match=f"needs openalbert's {prefix}AlbertForSequenceClassification"):
        pipeline("text-classification", model=mlm, tokenizer=models["AlbertForMaskedLM"])
    with pytest.raises(ValueError, match="framework must be one of"):
        pipeline("fill-mask", model=models["AlbertForMaskedLM"], framework="jax")
