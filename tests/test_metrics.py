"""Fine-tuning metrics: hand-checked numbers, and scikit-learn / scipy / seqeval as references when installed."""

from __future__ import annotations

import random

import pytest

from openalbert.finetuning.metrics import (
    accuracy,
    classification_metrics,
    entity_metrics,
    f1_per_class,
    get_entities,
    macro_f1,
    matthews_corrcoef,
    multi_label_metrics,
    normalize_answer,
    pearson,
    regression_metrics,
    spearman,
    squad_metrics,
)


def test_accuracy_f1_and_matthews_by_hand():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    per = f1_per_class(["a", "a", "b", "c"], ["a", "b", "b", "c"])
    assert per["a"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert per["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert per["c"]["f1"] == 1.0
    assert macro_f1(["a", "a", "b", "c"], ["a", "b", "b", "c"]) == pytest.approx(7 / 9)
    # TP=2 FP=1 TN=2 FN=0: (2*2 - 1*0) / sqrt(3*2*3*2) = 2/3
    assert matthews_corrcoef([1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(2 / 3)
    assert matthews_corrcoef([1, 1, 1], [0, 1, 0]) == 0.0  # one predicted class: undefined -> 0
    m = classification_metrics(["a", "a", "b", "c"], ["a", "b", "b", "c"])
    assert m["accuracy"] == 0.75 and m["f1_macro"] == pytest.approx(7 / 9)
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        accuracy([1, 2, 3], [1, 2])


def test_correlations_by_hand():
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / (2 * 114 / 9) ** 0.5)
    # ties share ranks: x -> 1, 2.5, 2.5, 4
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / 22.5**0.5)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0
    r = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert r["mse"] == pytest.approx(1 / 3) and r["spearman"] == pytest.approx(1.0)
    # A diverged model's NaN predictions have no rank and no correlation: NaN, never a perfect score.
    nan = float("nan")
    for predictions in ([nan] * 4, [1.0, nan, 3.0, 4.0], [1.0, float("inf"), 3.0, 4.0]):
        r = regression_metrics(predictions, [1.0, 2.0, 3.0, 4.0])
        assert all(r[k] != r[k] for k in ("pearson", "spearman", "pearson_spearman")), (predictions, r)


def test_against_scikit_learn_and_scipy():
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed")
    rng = random.Random(0)
    for _ in range(20):
        n, k = rng.randint(5, 60), rng.randint(2, 5)
        y = [rng.randrange(k) for _ in range(n)]
        p = [t if rng.random() < 0.6 else rng.randrange(k) for t in y]
        assert accuracy(p, y) == pytest.approx(sklearn_metrics.accuracy_score(y, p))
        assert macro_f1(p, y) == pytest.approx(
            sklearn_metrics.f1_score(y, p, average="macro", zero_division=0)
        )
        assert matthews_corrcoef(p, y) == pytest.approx(sklearn_metrics.matthews_corrcoef(y, p))
        # every training label given, one of which never occurs here: scikit-learn's macro over those that do
        with_unseen = classification_metrics(p, y, labels=[*range(k), 99])
        assert with_unseen["f1_macro"] == pytest.approx(
            sklearn_metrics.f1_score(y, p, average="macro", zero_division=0)
        )
        assert 99 in with_unseen["f1_per_class"]
        labels = sorted(set(y) | set(p))
        f1s = sklearn_metrics.f1_score(y, p, average=None, labels=labels, zero_division=0)
        assert [v["f1"] for v in f1_per_class(p, y).values()] == pytest.approx(list(f1s))
        a = [rng.choice([0.0, 1.0, 2.5, rng.random()]) for _ in range(n)]
        b = [x + rng.random() for x in a]
        assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0])
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0])


def test_multi_label_against_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")
    rng = random.Random(1)
    names = ["a", "b", "c", "d"]
    for _ in range(20):
        n = rng.randint(3, 40)
        gold = [[x for x in names if rng.random() < 0.4] for _ in range(n)]
        pred = [[x for x in names if (x in g) != (rng.random() < 0.25)] for g in gold]
        Y = [[int(x in g) for x in names] for g in gold]
        P = [[int(x in p) for x in names] for p in pred]
        got = multi_label_metrics(pred, gold, names)
        assert got["f1_micro"] == pytest.approx(
            sklearn_metrics.f1_score(Y, P, average="micro", zero_division=0)
        )
        assert got["f1_macro"] == pytest.approx(
            sklearn_metrics.f1_score(Y, P, average="macro", zero_division=0)
        )
        assert got["exact_match"] == pytest.approx(sklearn_metrics.accuracy_score(Y, P))


def test_entities_follow_conlleval_rules():
    assert get_entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    # An I- tag after O starts an entity; a B- always starts a new one; a type change splits.
    assert get_entities(["O", "I-PER", "I-PER", "B-PER"]) == [("PER", 1, 2), ("PER", 3, 3)]
    assert get_entities(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]
    assert get_entities(["B-geo-loc", "I-geo-loc"]) == [("geo-loc", 0, 1)]
    assert get_entities(["O", "O"]) == []
    m = entity_metrics([["B-PER", "I-PER", "O", "B-ORG"]], [["B-PER", "I-PER", "O", "B-LOC"]])
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (0.5, 0.5, 0.5, 0.75)
    assert m["per_type"]["PER"]["f1"] == 1.0 and m["per_type"]["LOC"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1
    }  # fmt: skip
    # A wrong boundary is a miss on both sides.
    m = entity_metrics([["B-PER", "O"]], [["B-PER", "I-PER"]])
    assert m["f1"] == 0.0 and m["accuracy"] == 0.5


def test_entities_against_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics", reason="seqeval is not installed")
    rng = random.Random(1)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-MISC"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in gold]
    m = entity_metrics(pred, gold)
    assert m["f1"] == pytest.approx(seqeval.f1_score(gold, pred))
    assert m["precision"] == pytest.approx(seqeval.precision_score(gold, pred))
    assert m["recall"] == pytest.approx(seqeval.recall_score(gold, pred))
    # tags without a type (chunking, keyphrases: B I O); a bare B read as the type "B" split B I I in two
    assert get_entities(["B", "I", "I", "O", "B"]) == [("_", 0, 2), ("_", 4, 4)]
    for tags in (["O", "B", "I"], ["O", "B", "I", "E", "S"]):
        gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
        pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in gold]
        assert entity_metrics(pred, gold)["f1"] == pytest.approx(seqeval.f1_score(gold, pred)), tags


def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("an apple a day") == "apple day"
    m = squad_metrics({"q1": "the cat"}, {"q1": ["a cat sat"]})
    assert m["exact_match"] == 0.0 and m["f1"] == pytest.approx(100 * 2 / 3)
    # The best of several gold answers counts.
    assert squad_metrics({"q": "Paris"}, {"q": ["in Paris", "paris"]})["exact_match"] == 100.0
    m = squad_metrics(
        {"a": "", "b": "x", "c": "Denver Broncos", "d": ""},
        {"a": [], "b": [], "c": ["Denver Broncos"], "d": ["Broncos"]},
    )
    assert m["exact_match"] == 50.0 and m["f1"] == 50.0
    assert m["no_answer_exact"] == 50.0 and m["has_answer_exact"] == 50.0 and m["total"] == 4
    with pytest.raises(ValueError, match="no prediction"):
        squad_metrics({}, {"q": ["x"]})
    # v1.1 (no unanswerable question) keeps a gold answer that normalises to nothing ("the"), where v2.0
    # drops it: the official scripts' rules. (v2.0's was used for both before: EM 0 here.)
    v1 = squad_metrics({"q": "", "r": "a"}, {"q": ["the", "Eiffel tower"], "r": ["the"]})
    assert (v1["exact_match"], v1["f1"]) == (100.0, 0.0)  # v1.1's F1: no word shared scores 0
    v2 = squad_metrics({"q": "", "r": "a", "s": ""}, {"q": ["the", "Eiffel tower"], "r": ["the"], "s": []})
    assert v2["exact_match"] == pytest.approx(100 * 2 / 3) and v2["f1"] == pytest.approx(100 * 2 / 3)
