"""The statistics of the sentiment benchmark scripts: the paired test and the cross-validation folds."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    if name not in sys.modules:
        sys.path.insert(0, str(BENCHMARKS))  # sentiment_cv imports finetune_sentiment by name
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_mcnemar_counts_only_the_sentences_one_side_gets_right():
    mcnemar = _load("finetune_sentiment").mcnemar
    gold = ["pos", "pos", "neg", "neg", "pos", "neg"]
    albert = ["pos", "neg", "neg", "pos", "pos", "pos"]  # right on 0, 2, 4
    baseline = ["neg", "neg", "neg", "neg", "pos", "pos"]  # right on 2, 3, 4
    result = mcnemar(gold, albert, baseline)
    assert (result["only_albert_right"], result["only_baseline_right"]) == (1, 1)
    assert result["p_value"] == pytest.approx(1.0)
    # 9 discordant sentences all one way: two-sided exact p = 2 / 2**9.
    many = mcnemar(["a"] * 9, ["a"] * 9, ["b"] * 9)
    assert many == {"only_albert_right": 9, "only_baseline_right": 0, "p_value": pytest.approx(2 / 2**9)}
    assert mcnemar(["a"], ["a"], ["a"])["p_value"] == 1.0  # no discordant sentence


def test_cross_validation_folds_are_stable_and_even():
    fold_of = _load("sentiment_cv").fold_of
    texts = [f"sentence number {i} ." for i in range(5000)]
    folds = [fold_of(t, 10) for t in texts]
    assert folds == [fold_of(t, 10) for t in texts] and set(folds) == set(range(10))
    assert all(400 <= n <= 600 for n in Counter(folds).values())


def test_cross_validation_reuses_a_saved_run_only_with_the_same_settings(tmp_path, monkeypatch):
    cv = _load("sentiment_cv")
    calls = []

    def fake_finetuned(args, seed, output, train, validation, test):
        calls.append((seed, args.learning_rate))
        return {"seed": seed, "validation_accuracy": 0.5, "test_accuracy": 0.5, "predictions": ["pos"]}

    monkeypatch.setattr(cv, "finetuned", fake_finetuned)
    paths = {name: tmp_path / f"{name}.csv" for name in ("train", "validation", "test")}
    args = SimpleNamespace(model="m", folds=10, epochs=3.0, learning_rate=2e-4, batch_size=32, max_length=64,
                           bf16=False)  # fmt: skip
    first = cv.cached_run(args, 7, tmp_path, paths)
    again = cv.cached_run(args, 7, tmp_path, paths)
    assert calls == [(7, 2e-4)] and again == first  # read back, not retrained
    args.learning_rate = 1e-4
    cv.cached_run(args, 7, tmp_path, paths)
    assert calls == [(7, 2e-4), (7, 1e-4)]  # other settings: trained again
    assert cv.cached_run(args, 8, tmp_path, paths)["seed"] == 8 and len(calls) == 3
