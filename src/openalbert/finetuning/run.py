"""The fine-tuning run: read and check the data, add the task's head to a pretrained model, train it with
the loop shared with pretraining, evaluate each epoch with the task's metric and keep the best model.

`finetune()` does everything that can fail on bad input (reading, label checks, tokenising) before the
first step. The output directory ends up holding the best checkpoint as a complete model (config with
id2label / label2id, weights, tokenizer files) that `openalbert.pipeline(task, model=DIR)` and
transformers load, beside `metrics.jsonl`, `curves.png` and `eval_results.json`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from openalbert.finetuning import data as D
from openalbert.finetuning import metrics as M
from openalbert.training.loop import (
    METRICS_FILE,
    TrainConfig,
    TrainResult,
    latest_checkpoint,
    read_metrics,
    train,
)

# Longest input per task when the caller does not say (QA contexts are long; the others are sentences).
DEFAULT_MAX_LENGTH = {"question-answering": 384}
# The validation number that picks the best checkpoint, without its "eval_" prefix.
DEFAULT_METRIC = {
    "text-classification": "accuracy",
    "token-classification": "f1",
    "question-answering": "f1",
    "multiple-choice": "accuracy",
}
# What each evaluation reports (with an "eval_" prefix); any of them can choose the best checkpoint.
METRICS = {
    "text-classification": ("accuracy", "f1_macro", "matthews", "loss"),
    "regression": ("pearson_spearman", "pearson", "spearman", "mse", "loss"),
    "multi-label": ("f1_micro", "f1_macro", "exact_match", "loss"),
    "token-classification": ("f1", "precision", "recall", "accuracy", "loss"),
    "question-answering": (
        "f1",
        "exact_match",
        "has_answer_f1",
        "has_answer_exact",
        "no_answer_f1",
        "no_answer_exact",
    ),
    "multiple-choice": ("accuracy", "loss"),
}
LOWER_IS_BETTER = ("loss", "mse")
RESULTS_FILE = "eval_results.json"
# text-classification's kinds (config.problem_type)
PROBLEM_TYPES = ("single_label_classification", "regression", "multi_label_classification")


@dataclass
class FinetuneResult:
    """Where the model went, the metric that chose it and the full evaluation of the chosen checkpoint."""

    output_dir: Path
    metric: str
    best: float | None
    metrics: dict[str, Any]
    train: TrainResult
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.train.exit_code


# ---- the task: data, head and evaluation in one place ------------------------------------------------------


@dataclass
class _Task:
    """What `finetune` needs from a task: features, the model config, and `evaluate(model) -> metrics`."""

    model_class: type
    train_features: list[dict[str, Any]]
    config_updates: dict[str, Any]
    evaluate: Callable[[nn.Module], dict[str, Any]]
    default_metric: str
    summary: dict[str, Any]


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _first_process() -> bool:
    """Whether this process reports and writes: the only one, or rank 0 under torchrun (read from the
    environment, as the process group exists only while the loop trains)."""
    return int(os.environ.get("RANK", "0")) == 0


def _features_digest(features: Sequence[dict[str, Any]]) -> str:
    """What identifies the training features (a resume on other data or preparation is refused)."""
    digest = hashlib.sha256()
    for feature in features:
        digest.update(json.dumps(feature, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _gather(local: list[tuple[int, Any]]) -> dict[int, Any]:
    """Merge (index, value) pairs computed on every rank."""
    _, world = _dist()
    if world == 1:
        return dict(local)
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, local)
    return {i: v for part in parts for i, v in part}


_MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


@torch.no_grad()
def predict(
    model: nn.Module,
    features: Sequence[dict[str, Any]],
    collate: Callable[[Sequence[dict[str, Any]]], dict[str, torch.Tensor]],
    keep: Callable[[Any, int, dict[str, Any]], Any],
    batch_size: int,
    bf16: bool = False,
    progress: bool | None = None,
) -> list[Any]:
    """Run `model` over features (split over the ranks, batched by length) and return, in order,
    `keep(output, row_in_batch, feature)` for each feature. `progress` shows a bar on the first rank (by
    default where `finetune` was asked for progress)."""
    from tqdm.auto import tqdm

    progress = _PROGRESS.get() if progress is None else progress
    rank, world = _dist()
    device = next(model.parameters()).device
    mine = sorted(range(rank, len(features), world), key=lambda i: len(features[i]["input_ids"]))
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    local = []
    starts = range(0, len(mine), batch_size)
    bar = tqdm(
        starts, desc="evaluate", unit="batch", leave=False, file=sys.stderr, disable=not progress or rank
    )
    try:
        for start in bar:
            idx = mine[start : start + batch_size]
            # (the model's inputs alone: labels and what a task keeps beside them, QA's offsets, are not batched)
            batch = collate([{k: v for k, v in features[i].items() if k in _MODEL_INPUTS} for i in idx])
            inputs = {k: v.to(device) for k, v in batch.items()}
            with autocast:
                out = model(**inputs, return_dict=True)
            local += [(i, keep(out, row, features[i])) for row, i in enumerate(idx)]
    finally:
        model.train(was_training)
    merged = _gather(local)
    return [merged[i] for i in range(len(features))]


# Whether evaluations inside `finetune` show a bar: set there, read by `predict`, so that the task builders
# below need not pass it through.
_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "openalbert_finetune_progress", default=False
)


def _prefixed(metrics: dict[str, Any]) -> dict[str, Any]:
    return {f"eval_{k}": v for k, v in metrics.items()}


def _text_classification(
    train_path: Path, validation_path: Path, tokenizer: Any, max_length: int, collate: Callable, batch_size: int,
    bf16: bool, text_column: str | None, text_pair_column: str | None, label_column: str, problem_type: str | None,
    label_separator: str = ",", model_labels: dict[str, int] | None = None,
) -> _Task:  # fmt: skip
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    # Names joined in a text label column are split only where multi-label is asked for.
    separator = label_separator if problem_type == "multi_label_classification" else None
    train_data = D.read_text_classification(train_path, **columns, label_separator=separator)
    # The validation file must have the columns found in the training file.
    text, pair, label = train_data.columns
    val_data = D.read_text_classification(validation_path, text, pair, label, separator)
    if problem_type is None:
        problem_type = (
            "multi_label_classification"
            if train_data.is_multi
            else "regression"
            if train_data.is_float
            else "single_label_classification"
        )
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")
    if problem_type == "multi_label_classification":
        return _multi_label(train_data, val_data, tokenizer, max_length, collate, batch_size, bf16)
    if train_data.is_multi:
        raise D.DataError(
            f"{train_data.path}: the labels are lists, which only multi_label_classification takes"
        )
    regression = problem_type == "regression"
    label2id = None
    if regression:
        for data in (train_data, val_data):
            for i, value in enumerate(data.labels):
                try:
                    float(value)
                except ValueError:
                    raise D.DataError(
                        f"{data.where(i)}: regression needs numeric labels, got {value!r}"
                    ) from None
        train_data.labels = [float(v) for v in train_data.labels]
        val_data.labels = [float(v) for v in val_data.labels]
        config = {"id2label": {0: "LABEL_0"}, "label2id": {"LABEL_0": 0}, "problem_type": "regression"}
    else:
        train_data.labels = [D.label_name(v) for v in train_data.labels]
        val_data.labels = [D.label_name(v) for v in val_data.labels]
        label2id = _same_labels(D.build_label_map(train_data.labels), model_labels)
        if len(label2id) < 2:
            raise D.DataError(
                f"{train_data.path}: every example has the label {train_data.labels[0]!r}; need two or more"
            )
        D.check_labels(val_data.labels, label2id, val_data.where)
        config = _label_config(label2id, "single_label_classification")
    train_features = D.classification_features(train_data, tokenizer, label2id, max_length)
    val_features = D.classification_features(val_data, tokenizer, label2id, max_length)
    names = list(label2id) if label2id else []

    def evaluate(model: nn.Module) -> dict[str, Any]:
        logits = torch.stack(
            predict(model, val_features, collate, lambda o, r, f: o.logits[r].float().cpu(), batch_size, bf16)
        )
        if regression:
            preds = logits[:, 0]
            gold = torch.tensor(val_data.labels)
            result = M.regression_metrics(preds.tolist(), gold.tolist())
            return _prefixed({"loss": float(F.mse_loss(preds, gold)), **result})
        gold = torch.tensor([f["labels"] for f in val_features])
        result = M.classification_metrics(
            [names[i] for i in logits.argmax(-1).tolist()], val_data.labels, names
        )
        per_class = result.pop("f1_per_class")
        return _prefixed({"loss": float(F.cross_entropy(logits, gold)), **result, "per_class": per_class})

    summary = {"labels": names, "train_examples": len(train_features), "validation_examples": len(val_features),
               "problem_type": problem_type, "columns": list(train_data.columns)}  # fmt: skip
    metric = "pearson_spearman" if regression else "accuracy"
    return _Task(
        _model_class("AlbertForSequenceClassification"), train_features, config, evaluate, metric, summary
    )


def _describe(summary: dict[str, Any]) -> str:
    """What was read, in words: examples (and the model inputs they became, where a long one spans several),
    labels."""
    parts = []
    for split in ("train", "validation"):
        n, windows = summary[f"{split}_examples"], summary.get(f"{split}_windows")
        spans = f" in {windows:,} inputs" if windows not in (None, n) else ""
        parts.append(f"{n:,} {'training' if split == 'train' else 'validation'} examples{spans}")
    if "labels" in summary:
        parts.append(f"{len(summary['labels'])} labels" if summary["labels"] else "regression")
    return ", ".join(parts)


def _label_config(label2id: dict[str, int], problem_type: str) -> dict[str, Any]:
    return {
        "id2label": {i: name for name, i in label2id.items()},
        "label2id": dict(label2id),
        "problem_type": problem_type,
    }


def _multi_label(
    train_data: D.ClassificationData, val_data: D.ClassificationData, tokenizer: Any, max_length: int,
    collate: Callable, batch_size: int, bf16: bool,
) -> _Task:  # fmt: skip
    """Any number of labels per text (a tuple of names each); one sigmoid per label (binary cross-entropy),
    a label predicted where its probability is > 0.5."""
    label2id = D.build_label_map([name for names in train_data.labels for name in names])
    if not label2id:
        raise D.DataError(f"{train_data.path}: no example has a label; multi-label data needs some")
    for i, names in enumerate(val_data.labels):
        D.check_labels(names, label2id, lambda _, i=i: val_data.where(i))
    names = list(label2id)
    config = _label_config(label2id, "multi_label_classification")
    train_features = D.classification_features(train_data, tokenizer, label2id, max_length)
    val_features = D.classification_features(val_data, tokenizer, label2id, max_length)

    def evaluate(model: nn.Module) -> dict[str, Any]:
        logits = torch.stack(
            predict(model, val_features, collate, lambda o, r, f: o.logits[r].float().cpu(), batch_size, bf16)
        )
        gold = torch.tensor([f["labels"] for f in val_features])
        chosen = [[names[j] for j in row.nonzero().flatten().tolist()] for row in logits > 0]
        result = M.multi_label_metrics(chosen, val_data.labels, names)
        return _prefixed({"loss": float(F.binary_cross_entropy_with_logits(logits, gold)), **result})

    summary = {"labels": names, "train_examples": len(train_features), "validation_examples": len(val_features),
               "problem_type": "multi_label_classification", "columns": list(train_data.columns)}  # fmt: skip
    return _Task(
        _model_class("AlbertForSequenceClassification"), train_features, config, evaluate, "f1_micro", summary
    )


def _token_classification(
    train_path: Path, validation_path: Path, tokenizer: Any, max_length: int, collate: Callable, batch_size: int,
    bf16: bool, label_all_tokens: bool, label_names: Sequence[str] | None = None,
    model_labels: dict[str, int] | None = None,
) -> _Task:  # fmt: skip
    train_data = D.read_token_classification(train_path)
    val_data = D.read_token_classification(validation_path)
    if label_names:
        train_data, val_data = D.named_tags(train_data, label_names), D.named_tags(val_data, label_names)
        label2id = {name: i for i, name in enumerate(label_names)}  # the given order: the data's ids
    else:
        D.refuse_integer_tags(train_data)
        label2id = _same_labels(D.tag_map(train_data), model_labels)
    D.check_tags(val_data, label2id)
    id2label = {i: t for t, i in label2id.items()}
    train_features = D.token_features(train_data, tokenizer, label2id, max_length, label_all_tokens).features
    val = D.token_features(val_data, tokenizer, label2id, max_length, label_all_tokens=False)

    def keep(out: Any, row: int, feature: dict[str, Any]) -> torch.Tensor:
        n = len(feature["input_ids"])
        return out.logits[row, :n].float().cpu()

    def evaluate(model: nn.Module) -> dict[str, Any]:
        logits = predict(model, val.features, collate, keep, batch_size, bf16)
        best = [lg.argmax(-1).tolist() for lg in logits]
        preds = [[id2label[best[f][p]] for f, p in positions] for positions in val.word_positions]
        losses = [
            F.cross_entropy(lg, torch.tensor(feature["labels"]), reduction="sum")
            for lg, feature in zip(logits, val.features)
        ]
        n_labelled = sum(sum(1 for x in f["labels"] if x != -100) for f in val.features)
        result = M.entity_metrics(preds, val_data.tags)
        per_type = result.pop("per_type")
        return _prefixed({"loss": float(sum(losses)) / max(1, n_labelled), **result, "per_type": per_type})

    config = {"id2label": id2label, "label2id": dict(label2id), "problem_type": None}
    summary = {"labels": list(label2id), "train_examples": len(train_data.words),
               "train_windows": len(train_features), "validation_examples": len(val_data.words),
               "validation_windows": len(val.features), "label_all_tokens": label_all_tokens}  # fmt: skip
    return _Task(
        _model_class("AlbertForTokenClassification"), train_features, config, evaluate, "f1", summary
    )


def _same_labels(label2id: dict[str, int], model_labels: dict[str, int] | None) -> dict[str, int]:
    """The model's own label ids where it was fine-tuned on the same labels (its head is then kept as it
    is, as transformers' example scripts do); otherwise `label2id`."""
    if model_labels and set(model_labels) == set(label2id):
        return dict(sorted(model_labels.items(), key=lambda item: item[1]))
    return label2id


def _question_answering(
    train_path: Path, validation_path: Path, tokenizer: Any, max_length: int, batch_size: int, bf16: bool,
    doc_stride: int, max_question_length: int, max_answer_length: int,
) -> _Task:  # fmt: skip
    train_examples = D.read_squad(train_path)
    val_examples = D.read_squad(validation_path)
    train_features = D.qa_features(train_examples, tokenizer, max_length, doc_stride, max_question_length)
    # The validation windows are the pipeline's; answers are read from them as transformers' run_qa.py reads
    # them (D.qa_predictions), so that the scores compare with its.
    val_features = D.qa_features(
        val_examples, tokenizer, max_length, doc_stride, max_question_length, training=False
    )
    impossible = any(ex.is_impossible for ex in train_examples + val_examples)
    collate = D.pad_collate(tokenizer.pad_token_id)

    def keep(out: Any, row: int, feature: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        n = len(feature["input_ids"])
        return out.start_logits[row, :n].float().cpu().numpy(), out.end_logits[row, :n].float().cpu().numpy()

    def evaluate(model: nn.Module) -> dict[str, Any]:
        logits = predict(model, val_features, collate, keep, batch_size, bf16)
        predictions = D.qa_predictions(val_examples, val_features, logits, max_answer_length, impossible)
        references = {ex.id: [text for text, _ in ex.answers] for ex in val_examples}
        result = M.squad_metrics(predictions, references)
        result.pop("total")
        return _prefixed(result)

    config = {
        "id2label": {0: "LABEL_0", 1: "LABEL_1"},
        "label2id": {"LABEL_0": 0, "LABEL_1": 1},
        "problem_type": None,
    }
    summary = {"train_examples": len(train_examples), "train_windows": len(train_features),
               "validation_examples": len(val_examples), "version_2": impossible, "doc_stride": doc_stride,
               "validation_answerable": sum(not ex.is_impossible for ex in val_examples),
               "validation_unanswerable": sum(ex.is_impossible for ex in val_examples)}  # fmt: skip
    return _Task(_model_class("AlbertForQuestionAnswering"), train_features, config, evaluate, "f1", summary)


def _multiple_choice(
    train_path: Path, validation_path: Path, tokenizer: Any, max_length: int, collate: Callable, batch_size: int,
    bf16: bool,
) -> _Task:  # fmt: skip
    train_examples = D.read_multiple_choice(train_path)
    val_examples = D.read_multiple_choice(validation_path)  # (the model scores any number of choices)
    train_features = D.choice_features(train_examples, tokenizer, max_length)
    val_features = D.choice_features(val_examples, tokenizer, max_length)

    def evaluate(model: nn.Module) -> dict[str, Any]:
        # Each feature is a (N, T) block; the batch size counts items, as in training.
        logits = torch.stack(
            predict(model, val_features, collate, lambda o, r, f: o.logits[r].float().cpu(), batch_size, bf16)
        )
        gold = torch.tensor([ex.label for ex in val_examples])
        return _prefixed(
            {
                "loss": float(F.cross_entropy(logits, gold)),
                "accuracy": M.accuracy(logits.argmax(-1).tolist(), gold.tolist()),
            }
        )

    config = {
        "id2label": {0: "LABEL_0", 1: "LABEL_1"},
        "label2id": {"LABEL_0": 0, "LABEL_1": 1},
        "problem_type": None,
    }
    summary = {"train_examples": len(train_features), "validation_examples": len(val_features),
               "num_choices": len(train_examples[0].choices)}  # fmt: skip
    return _Task(
        _model_class("AlbertForMultipleChoice"), train_features, config, evaluate, "accuracy", summary
    )


def _model_class(name: str) -> type:
    from openalbert.heads import MODEL_CLASSES

    return MODEL_CLASSES[name]


# ---- writing snapshots ---------------------------------------------------------------------------------------


class _ModelWriter:
    """Writes a snapshot: the model in HF layout plus the tokenizer files (rendered once, then copied)."""

    def __init__(self, tokenizer: Any, tokenizer_dir: Path | None) -> None:
        self.tokenizer, self.tokenizer_dir = tokenizer, tokenizer_dir
        self._files: Path | None = None

    def _tokenizer_files(self) -> Path:
        if self._files is None:
            self._files = Path(tempfile.mkdtemp(prefix="openalbert-tokenizer-"))
            # tokenizer.json takes seconds to build from a 30k vocabulary: copy the source's when it has one.
            self.tokenizer.save_pretrained(self._files, write_tokenizer_json=False)
            source = self.tokenizer_dir
            if source is not None and (source / "tokenizer.json").is_file():
                shutil.copy2(source / "tokenizer.json", self._files / "tokenizer.json")
        return self._files

    def __call__(self, module: nn.Module, directory: Path) -> None:
        module.save_pretrained(directory)
        for f in self._tokenizer_files().iterdir():
            shutil.copy2(f, directory / f.name)

    def close(self) -> None:
        if self._files is not None:
            shutil.rmtree(self._files, ignore_errors=True)


# ---- the run --------------------------------------------------------------------------------------------------


def finetune(
    task: str,
    model: str | os.PathLike,
    train_file: str | os.PathLike,
    validation_file: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    tokenizer: str | os.PathLike | Any | None = None,
    epochs: float = 3.0,
    learning_rate: float = 3e-5,
    batch_size: int = 32,
    eval_batch_size: int | None = None,
    max_length: int | None = None,
    seed: int = 42,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str = "label",
    problem_type: str | None = None,
    label_separator: str = ",",
    label_all_tokens: bool = False,
    label_names: Sequence[str] | None = None,
    doc_stride: int | None = None,
    max_question_length: int = 64,
    max_answer_length: int = 30,
    metric: str | None = None,
    early_stopping_patience: int | None = None,
    grad_accum: int = 1,
    warmup_ratio: float = 0.1,
    lr_schedule: str = "linear",
    poly_power: float = 1.0,
    weight_decay: float = 0.01,
    optimizer: str = "adamw",
    max_grad_norm: float | None = 1.0,
    bf16: bool = False,
    device: str = "auto",
    resume: bool | str | os.PathLike = False,
    overwrite: bool = False,
    log_every: int = 10,
    num_threads: int | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune `model` (a directory, hub id or openalbert.DEFAULT_MODEL) for `task` and write the best
    checkpoint by the validation `metric` to `output_dir`.

    Tasks: text-classification (CSV/TSV/JSONL/Parquet; float labels mean regression, lists of labels or
    problem_type="multi_label_classification" with `label_separator`-joined names mean multi-label),
    token-classification (CoNLL or JSONL tokens/tags), question-answering (SQuAD v1/v2 JSON or JSONL),
    multiple-choice (JSONL context/question/choices/label). Evaluates after every epoch; stops early
    after `early_stopping_patience` evaluations without improvement. `max_length` defaults to 128
    (384 for question-answering), capped by the model's positions; `doc_stride` to 128, or half of
    `max_length` where that is less. Token-classification tags that are integers (as `datasets` exports
    them) need their names, in id order, in `label_names` ("O", "B-PER", ...), so that entities can be
    scored. An existing, non-empty `output_dir` is refused unless `resume` or `overwrite`. Raises DataError
    (a ValueError) naming the file and line of bad input before training starts.
    """
    from openalbert import AlbertConfig
    from openalbert.checkpoint import resolve_path
    from openalbert.pipelines.base import _quiet_loading, load_tokenizer

    if task not in D.TASKS:
        raise ValueError(f"unknown task {task!r}; fine-tuning supports {', '.join(D.TASKS)}")
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    if batch_size < 1 or grad_accum < 1:
        raise ValueError(f"batch_size and grad_accum must be >= 1, got {batch_size} and {grad_accum}")
    if task == "question-answering" and min(max_question_length, max_answer_length) < 1:
        raise ValueError(
            f"max_question_length and max_answer_length must be >= 1, got {max_question_length} and "
            f"{max_answer_length}"
        )
    model_dir = resolve_path(model)
    out = Path(output_dir)
    if out.resolve() == Path(model_dir).resolve():
        raise ValueError(f"the output directory {out} holds the model being fine-tuned; write to another one")
    if out.is_dir() and any(out.iterdir()) and not (resume or overwrite) and latest_checkpoint(out) is None:
        raise ValueError(
            f"{out} exists and is not empty; write to a new directory, or pass overwrite (--overwrite) to write "
            "into it"
        )
    config = AlbertConfig.from_pretrained(model_dir)
    if max_length is None:
        max_length = min(DEFAULT_MAX_LENGTH.get(task, 128), config.max_position_embeddings)
    if not 8 <= max_length <= config.max_position_embeddings:
        raise ValueError(
            f"max_length must be in [8, {config.max_position_embeddings}] (the model's max_position_embeddings), "
            f"got {max_length}"
        )
    if doc_stride is None:  # (a default of 128 would not fit the windows of a model with fewer positions)
        doc_stride = min(128, max_length // 2)
    tokenizer_dir = None
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        tokenizer_dir = model_dir if tokenizer is None else Path(tokenizer)
        tok = load_tokenizer(tokenizer_dir)
    else:
        tok = tokenizer
    if tok.vocab_size > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tok.vocab_size} pieces but the model only {config.vocab_size} embeddings"
        )

    train_path, val_path = Path(train_file), Path(validation_file)
    eval_bs = eval_batch_size or batch_size
    collate = D.pad_collate(tok.pad_token_id)
    # A model fine-tuned before keeps its label ids for the same labels (not transformers' default names).
    # (From id2label, which setting it keeps current, where label2id can be left stale, in transformers too.)
    ids = {name: i for i, name in config.id2label.items()}
    model_labels = ids if ids != {f"LABEL_{i}": i for i in range(len(ids))} else None
    if task == "text-classification":
        spec = _text_classification(train_path, val_path, tok, max_length, collate, eval_bs, bf16, text_column,
                                    text_pair_column, label_column, problem_type, label_separator,
                                    model_labels)  # fmt: skip
    elif task == "token-classification":
        spec = _token_classification(
            train_path,
            val_path,
            tok,
            max_length,
            collate,
            eval_bs,
            bf16,
            label_all_tokens,
            label_names,
            model_labels,
        )
    elif task == "question-answering":
        spec = _question_answering(train_path, val_path, tok, max_length, eval_bs, bf16, doc_stride,
                                   max_question_length, max_answer_length)  # fmt: skip
    else:
        spec = _multiple_choice(train_path, val_path, tok, max_length, collate, eval_bs, bf16)

    metric = (metric or spec.default_metric).removeprefix("eval_")
    kind = {"regression": "regression", "multi_label_classification": "multi-label"}
    known = METRICS[kind.get(spec.summary.get("problem_type"), task)]
    if metric not in known:
        raise ValueError(f"metric {metric!r} is not reported for {task}; choose one of {', '.join(known)}")
    kinds = {"has_answer": "validation_answerable", "no_answer": "validation_unanswerable"}
    for prefix, count in kinds.items():
        if metric.startswith(prefix) and not spec.summary.get(count):
            raise ValueError(
                f"metric {metric!r} needs {count.split('_')[1]} questions, and {val_path} has none"
            )
    metric_key = f"eval_{metric}"
    if _first_process():  # (with or without the progress bars)
        print(f"openalbert: {task}: {_describe(spec.summary)}; best model by {metric_key}", file=sys.stderr)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    n_train = len(spec.train_features)
    # Every example every epoch: the last batch may be smaller (as transformers' Trainer), not dropped.
    batches_per_epoch = math.ceil(math.ceil(n_train / world) / batch_size)
    steps_per_epoch = max(1, batches_per_epoch // grad_accum)
    total_steps = max(1, math.ceil(epochs * batches_per_epoch / grad_accum))

    # The head is initialised from the seed, so every process (and every rerun) starts from the same weights.
    data = config.to_dict()
    data.pop("architectures", None)
    data.update(spec.config_updates)
    head_config = AlbertConfig.from_dict(data)
    torch.manual_seed(seed)
    with _quiet_loading():
        net, info = spec.model_class.from_pretrained(
            model_dir, config=head_config, ignore_mismatched_sizes=True, output_loading_info=True
        )
    if info["mismatched_keys"] and _first_process():
        # a head of another shape (another label set) is not fine-tuned further: it starts afresh
        print(
            f"openalbert: {model_dir}'s {', '.join(info['mismatched_keys'])} do not fit this task's head "
            f"({head_config.num_labels} labels): initialised afresh",
            file=sys.stderr,
        )

    history: list[dict[str, Any]] = []

    def evaluate(module: nn.Module) -> dict[str, Any]:
        token = _PROGRESS.set(progress)
        try:
            result = spec.evaluate(module)
        finally:
            _PROGRESS.reset(token)
        history.append(result)
        return result

    train_config = TrainConfig(
        output_dir=output_dir,
        num_epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        learning_rate=learning_rate,
        warmup_steps=int(warmup_ratio * total_steps),
        lr_schedule=lr_schedule,
        poly_power=poly_power,
        weight_decay=weight_decay,
        optimizer=optimizer,
        max_grad_norm=max_grad_norm,
        bf16=bf16,
        device=device,
        seed=seed,
        drop_last=False,
        log_every=min(log_every, steps_per_epoch),
        save_every="epoch",
        keep_last=1,
        eval_every="epoch",  # at the step that ends each epoch, also when grad_accum does not divide it
        best_metric=metric_key,
        greater_is_better=not metric_key.endswith(LOWER_IS_BETTER),
        early_stopping_patience=early_stopping_patience,
        resume=resume,
        overwrite=overwrite,
        num_threads=num_threads,
        progress=progress,
        data_id=_features_digest(spec.train_features),
    )
    writer = _ModelWriter(tok, tokenizer_dir)
    try:
        result = train(
            net,
            D.FeatureDataset(spec.train_features),
            train_config,
            collate_fn=collate,
            evaluate=evaluate,
            save_model=writer,
            on_log=on_log,
        )
    finally:
        writer.close()

    metrics_file = out / METRICS_FILE
    if metrics_file.is_file():
        # Every evaluation of the run, also those before a resume (this process saw only the later ones):
        # the loop logs each as a row of metrics.jsonl, with its step.
        history = [row for row in read_metrics(metrics_file) if metric_key in row]
    greater = train_config.greater_is_better
    scored = [
        h for h in history if isinstance(h.get(metric_key), (int, float)) and math.isfinite(h[metric_key])
    ]
    best_eval = (max if greater else min)(scored, key=lambda h: h[metric_key]) if scored else {}
    # The loop has left the process group by now: RANK tells which process writes.
    if _first_process() and not result.interrupted:
        record = {
            "task": task,
            "model": str(model),
            "metric": metric_key,
            "best": result.best_metric,
            "best_evaluation": best_eval,
            "evaluations": history,
            "steps": result.step,
            "early_stopped": result.early_stopped,
            "newly_initialised": sorted(info["missing_keys"] + info["mismatched_keys"]),
            **spec.summary,
        }
        (out / RESULTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return FinetuneResult(out, metric_key, result.best_metric, best_eval, result, history)
