"""Evaluation metrics of the fine-tuning tasks, written here so their exact semantics are ours to state.

Sentence tasks (GLUE-style): accuracy, F1 per class and macro-averaged, Matthews correlation, Pearson
and Spearman correlation. Token classification: entity-level precision / recall / F1 over BIO (IOB2)
chunks with the rules of CoNLL's `conlleval` (and seqeval's default mode): an `I-X` that does not
continue an `X` chunk starts one. Question answering: exact match and F1 over normalised answer words
as in the official SQuAD v1.1 / v2.0 evaluation script (lower case, no punctuation, no articles), an
empty prediction being the answer to an unanswerable question. Multiple choice: accuracy.

Accuracy, F1 and correlations are fractions in [0, 1] (correlations in [-1, 1]); the SQuAD numbers are
percentages in [0, 100], as the official script prints them.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


def _check_lengths(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; give one each")
    if not len(references):
        raise ValueError("no examples to score")


# ---- classification -------------------------------------------------------------------------------------


def accuracy(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Share of predictions equal to their reference."""
    _check_lengths(predictions, references)
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


def f1_per_class(
    predictions: Sequence[Hashable], references: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> dict[Hashable, dict[str, float]]:
    """Precision, recall, F1 and support of each label (0 where a ratio has no denominator).

    `labels` defaults to every label seen in either list, sorted.
    """
    _check_lengths(predictions, references)
    if labels is None:
        labels = sorted(set(references) | set(predictions), key=lambda x: (str(type(x)), x))
    tp: collections.Counter = collections.Counter()
    n_pred: collections.Counter = collections.Counter(predictions)
    n_true: collections.Counter = collections.Counter(references)
    for p, r in zip(predictions, references):
        if p == r:
            tp[r] += 1
    out = {}
    for label in labels:
        precision = tp[label] / n_pred[label] if n_pred[label] else 0.0
        recall = tp[label] / n_true[label] if n_true[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": n_true[label]}
    return out


def macro_f1(
    predictions: Sequence[Hashable], references: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> float:
    """Unweighted mean of the per-class F1 (scikit-learn's `f1_score(average="macro")`)."""
    per_class = f1_per_class(predictions, references, labels)
    return sum(v["f1"] for v in per_class.values()) / len(per_class)


def matthews_corrcoef(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004); 0 when it is undefined."""
    _check_lengths(predictions, references)
    labels = sorted(set(references) | set(predictions), key=lambda x: (str(type(x)), x))
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for p, r in zip(predictions, references):
        confusion[index[r], index[p]] += 1
    true_counts, pred_counts = confusion.sum(1), confusion.sum(0)
    correct, n = np.trace(confusion), confusion.sum()
    cov_pt = correct * n - pred_counts @ true_counts
    cov_pp = n * n - pred_counts @ pred_counts
    cov_tt = n * n - true_counts @ true_counts
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_pt / np.sqrt(cov_pp * cov_tt))


def pearson(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Pearson correlation; 0 when either side is constant, NaN when either holds inf or NaN."""
    _check_lengths(predictions, references)
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(references, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start of each run of equal values, in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    for lo, hi in zip(starts, ends):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2  # mean of the ranks lo+1 .. hi
    return ranks


def spearman(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of the average ranks; NaN when either side holds inf or NaN (which
    have no rank)."""
    _check_lengths(predictions, references)
    x, y = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    return pearson(_average_ranks(x), _average_ranks(y))


def classification_metrics(
    predictions: Sequence[Hashable], references: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> dict[str, Any]:
    """accuracy, f1_macro, matthews and `f1_per_class` ({label: {precision, recall, f1, support}}).
    f1_macro averages the classes that occur in the predictions or the references, as scikit-learn does;
    the per-class report has every label."""
    per_class = f1_per_class(predictions, references, labels)
    occurring = set(predictions) | set(references)
    present = [v["f1"] for label, v in per_class.items() if label in occurring]
    return {
        "accuracy": accuracy(predictions, references),
        "f1_macro": sum(present) / len(present) if present else 0.0,
        "matthews": matthews_corrcoef(predictions, references),
        "f1_per_class": per_class,
    }


def multi_label_metrics(
    predictions: Sequence[Sequence[Hashable]],
    references: Sequence[Sequence[Hashable]],
    labels: Sequence[Hashable],
) -> dict[str, float]:
    """Each example's set of labels against the reference set: f1_micro (over every (example, label)
    decision), f1_macro (the mean of each label's F1), exact_match (the whole set right; scikit-learn's
    subset accuracy)."""
    _check_lengths(predictions, references)
    pred, gold = [set(p) for p in predictions], [set(r) for r in references]
    tp = sum(len(p & g) for p, g in zip(pred, gold))
    n_pred, n_gold = sum(map(len, pred)), sum(map(len, gold))
    micro = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0
    per_label = []
    for label in labels:
        hits = sum(label in p and label in g for p, g in zip(pred, gold))
        total = sum(label in p for p in pred) + sum(label in g for g in gold)
        per_label.append(2 * hits / total if total else 0.0)
    return {
        "f1_micro": micro,
        "f1_macro": sum(per_label) / len(per_label) if per_label else 0.0,
        "exact_match": sum(p == g for p, g in zip(pred, gold)) / len(pred) if pred else 0.0,
    }


def regression_metrics(predictions: Sequence[float], references: Sequence[float]) -> dict[str, float]:
    """pearson, spearman, their mean (GLUE's STS-B score) and the mean squared error."""
    p, s = pearson(predictions, references), spearman(predictions, references)
    diff = np.asarray(predictions, dtype=np.float64) - np.asarray(references, dtype=np.float64)
    return {"pearson": p, "spearman": s, "pearson_spearman": (p + s) / 2, "mse": float((diff * diff).mean())}


# ---- entities (token classification) -------------------------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); a bare prefix ('B', 'I': chunking and keyphrase tags) is
    that prefix of an entity of no type, which seqeval calls '_'; another tag ('PER') is an inside tag."""
    if tag == "O" or not tag:
        return "O", ""
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIES":
        return tag[0], tag[2:]
    if tag in ("B", "I", "E", "S"):
        return tag, "_"
    return "I", tag


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks of one sentence's tags as (type, first, last) word indices, conlleval's rules.

    A chunk starts at B-X, S-X, or at I-X / E-X that does not continue an X chunk; it ends before O,
    B-, S-, or a tag of another type, and after E- / S-.
    """
    entities = []
    prev_prefix, prev_type, start = "O", "", -1
    for i, tag in enumerate([*tags, "O"]):  # the sentinel closes a chunk that runs to the end
        prefix, kind = _split_tag(tag)
        ends = prev_prefix != "O" and (prev_prefix in "ES" or prefix in "BSO" or (prev_type != kind))
        if ends:
            entities.append((prev_type, start, i - 1))
        begins = prefix != "O" and (prefix in "BS" or prev_prefix in "ESO" or prev_type != kind)
        if begins:
            start = i
        prev_prefix, prev_type = prefix, kind
    return entities


def entity_metrics(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Entity-level micro precision / recall / F1 over sentences of tags, and the same per entity type.

    Returns {"precision", "recall", "f1", "accuracy" (per tag), "per_type": {type: {precision, recall,
    f1, support}}}. A predicted entity counts only when its type and both boundaries match.
    """
    _check_lengths(predictions, references)
    true_by_type: collections.Counter = collections.Counter()
    pred_by_type: collections.Counter = collections.Counter()
    hit_by_type: collections.Counter = collections.Counter()
    correct_tags = total_tags = 0
    for k, (pred, gold) in enumerate(zip(predictions, references)):
        if len(pred) != len(gold):
            raise ValueError(f"sentence {k}: {len(pred)} predicted tags for {len(gold)} words")
        gold_entities, pred_entities = set(get_entities(gold)), set(get_entities(pred))
        for kind, _, _ in gold_entities:
            true_by_type[kind] += 1
        for kind, _, _ in pred_entities:
            pred_by_type[kind] += 1
        for kind, _, _ in gold_entities & pred_entities:
            hit_by_type[kind] += 1
        correct_tags += sum(p == g for p, g in zip(pred, gold))
        total_tags += len(gold)

    def prf(hits: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
        precision = hits / n_pred if n_pred else 0.0
        recall = hits / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1

    per_type = {}
    for kind in sorted(set(true_by_type) | set(pred_by_type)):
        p, r, f = prf(hit_by_type[kind], pred_by_type[kind], true_by_type[kind])
        per_type[kind] = {"precision": p, "recall": r, "f1": f, "support": true_by_type[kind]}
    p, r, f = prf(sum(hit_by_type.values()), sum(pred_by_type.values()), sum(true_by_type.values()))
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "accuracy": correct_tags / total_tags if total_tags else 0.0,
        "per_type": per_type,
    }


# ---- extractive QA (SQuAD) -------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """The SQuAD normalisation: lower case, drop ASCII punctuation and the articles a/an/the, squeeze spaces."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answer_f1(prediction: str, gold: str, version_2: bool = True) -> float:
    pred_words, gold_words = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if version_2 and (not pred_words or not gold_words):
        # No-answer on either side: full marks only when both are empty (v2.0; v1.1 scores no shared word 0).
        return float(pred_words == gold_words)
    common = collections.Counter(pred_words) & collections.Counter(gold_words)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_words), same / len(gold_words)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict[str, str], references: dict[str, Sequence[str]]) -> dict[str, float]:
    """Exact match and F1 (percent) of predicted answer texts against the gold answers of each question id.

    An empty gold list marks an unanswerable question (SQuAD v2): only the empty prediction scores.
    Each question scores its best gold answer. With both kinds present the result also has
    has_answer_* and no_answer_* parts. Every reference id needs a prediction. Without unanswerable
    questions the scores are the official v1.1 script's (it keeps gold answers that normalise to nothing,
    and scores F1 0 where no word is shared), else the v2.0 script's.
    """
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} question(s), e.g. {missing[:3]}")
    if not references:
        raise ValueError("no questions to score")
    version_2 = any(not golds for golds in references.values())
    exact, f1 = {}, {}
    for qid, golds in references.items():
        if version_2 or not golds:
            golds = [g for g in golds if normalize_answer(g)] or [""]
        pred = predictions[qid]
        exact[qid] = max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
        f1[qid] = max(_answer_f1(pred, g, version_2) for g in golds)

    def mean(values: list[float]) -> float:
        return 100.0 * sum(values) / len(values)

    out = {"exact_match": mean(list(exact.values())), "f1": mean(list(f1.values())), "total": len(references)}
    has = [qid for qid, golds in references.items() if any(normalize_answer(g) for g in golds)]
    has_set = set(has)
    no = [qid for qid in references if qid not in has_set]
    if has and no:
        out.update(
            has_answer_exact=mean([exact[q] for q in has]),
            has_answer_f1=mean([f1[q] for q in has]),
            no_answer_exact=mean([exact[q] for q in no]),
            no_answer_f1=mean([f1[q] for q in no]),
        )
    return out
