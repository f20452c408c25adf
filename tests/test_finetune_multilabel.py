"""Multi-label text classification: fine-tuned from the embedded model on lists of labels (JSONL) or on
names joined in a text column (CSV), it learns which topics a text mentions, and the pipeline scores each
label with a sigmoid."""

from __future__ import annotations

import json
import random

import pytest
import torch

import openalbert
from openalbert.cli import main
from openalbert.finetuning.data import DataError
from openalbert.finetuning.run import finetune

TOPICS = {
    "sport": ["football", "match", "goal", "team"],
    "music": ["song", "guitar", "concert", "band"],
    "food": ["bread", "soup", "dinner", "cheese"],
}
FILLER = ["the", "a", "we", "saw", "today", "with", "friends", "and", "then", "it", "was", "nice"]
RUN = dict(device="cpu", progress=False, num_threads=1)


def examples(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """Texts mentioning zero to three topics, each with the list of those topics."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topics = [t for t in TOPICS if rng.random() < 0.45]
        words = rng.sample(FILLER, 6) + [rng.choice(TOPICS[t]) for t in topics]
        rng.shuffle(words)
        out.append((" ".join(words), topics))
    return out


def test_multi_label_from_lists_learns_the_topics(tmp_path):
    for name, n, seed in (("train", 160, 0), ("validation", 60, 1)):
        rows = [json.dumps({"text": text, "label": topics}) for text, topics in examples(n, seed)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "model"
    result = finetune("text-classification", openalbert.DEFAULT_MODEL, tmp_path / "train.jsonl",
                      tmp_path / "validation.jsonl", out, epochs=8, learning_rate=1e-3, batch_size=16,
                      max_length=32, **RUN)  # fmt: skip
    # 8 epochs: with 4, three seeds in four ended at micro-F1 0.84-0.87, still rising; with 8 four of four
    # ended at 0.98 or more.
    assert result.metric == "eval_f1_micro"
    assert {"eval_f1_micro", "eval_f1_macro", "eval_exact_match", "eval_loss"} <= set(result.metrics)
    assert result.metrics["eval_f1_micro"] > 0.9, result.metrics
    config = openalbert.AlbertConfig.from_pretrained(out)
    assert config.problem_type == "multi_label_classification" and sorted(config.label2id) == sorted(TOPICS)
    classify = openalbert.pipeline("text-classification", model=out)
    # top_k in the call: as in transformers, a lone string's labels are then not wrapped in a list
    scores = {d["label"]: d["score"] for d in classify("we had soup and then a concert", top_k=None)}
    assert scores["food"] > 0.5 and scores["music"] > 0.5 and scores["sport"] < 0.5, scores
    model = openalbert.AlbertForSequenceClassification.from_pretrained(out)
    tok = openalbert.AlbertTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tok(["the match and the goal"], return_tensors="pt")).logits[0]
    assert logits.sigmoid()[config.label2id["sport"]] > 0.5


def test_multi_label_from_joined_names_on_the_command_line(tmp_path, capsys):
    for name, n, seed in (("train", 120, 2), ("validation", 40, 3)):
        lines = ["text\ttopics"] + [f"{text}\t{'|'.join(topics)}" for text, topics in examples(n, seed)]
        (tmp_path / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "cli"
    code = main(["finetune", "text-classification", "--model", openalbert.DEFAULT_MODEL, "--train",
                 str(tmp_path / "train.tsv"), "--validation", str(tmp_path / "validation.tsv"), "--output", str(out),
                 "--label-column", "topics", "--problem-type", "multi_label_classification", "--label-separator",
                 "|", "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--lr", "1e-3", "--device", "cpu",
                 "--no-progress", "--threads", "1"])  # fmt: skip
    assert code == 0
    config = openalbert.AlbertConfig.from_pretrained(out)
    assert config.problem_type == "multi_label_classification" and sorted(config.label2id) == sorted(TOPICS)
    record = json.loads((out / "eval_results.json").read_text())
    assert record["metric"] == "eval_f1_micro" and record["problem_type"] == "multi_label_classification"
    assert 0 <= record["best_evaluation"]["eval_f1_micro"] <= 1


def test_multi_label_input_errors(tmp_path):
    rows = [json.dumps({"text": "a ball", "label": ["sport"]}), json.dumps({"text": "soup", "label": "food"})]
    (tmp_path / "mixed.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="must be a list, as other rows' are"):
        finetune("text-classification", openalbert.DEFAULT_MODEL, tmp_path / "mixed.jsonl", tmp_path / "mixed.jsonl",
                 tmp_path / "x", max_length=32, **RUN)  # fmt: skip
    good = [json.dumps({"text": "a ball", "label": ["sport"]}), json.dumps({"text": "soup", "label": []})]
    unseen = [json.dumps({"text": "a song", "label": ["music"]})]
    (tmp_path / "good.jsonl").write_text("\n".join(good) + "\n")
    (tmp_path / "unseen.jsonl").write_text("\n".join(unseen) + "\n")
    with pytest.raises(DataError, match="label 'music' does not occur in the training data"):
        finetune("text-classification", openalbert.DEFAULT_MODEL, tmp_path / "good.jsonl", tmp_path / "unseen.jsonl",
                 tmp_path / "x", max_length=32, **RUN)  # fmt: skip
    with pytest.raises(DataError, match="only multi_label_classification takes"):
        finetune("text-classification", openalbert.DEFAULT_MODEL, tmp_path / "good.jsonl", tmp_path / "good.jsonl",
                 tmp_path / "x", problem_type="single_label_classification", max_length=32, **RUN)  # fmt: skip
