"""Fine-tuned ALBERT vs TF-IDF + logistic regression on Pang & Lee's movie-review sentences.

Both are trained on the same training split and scored on the same held-out test split (see
openalbert.finetuning.datasets: 4,000 sentences, about 80/10/10 by a hash of the text). The baseline's
regularisation and the fine-tuned model's checkpoint are both chosen on the validation split, so the
test split is touched once by each. With --restarts N the fine-tuning runs N times (seeds SEED..SEED+N-1)
and the run best on validation is kept, as BERT did on small data sets; every run's numbers are recorded
too. The kept model and the baseline are then compared sentence by sentence on the test split (an exact
McNemar test: how many sentences only one of them gets right). Results go to OUTPUT/results.json and are
printed as Markdown (benchmarks/FINETUNE.md records the runs).

    python benchmarks/finetune_sentiment.py --model DIR [--epochs 3 --learning-rate 3e-5 --restarts 5 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def tfidf_baseline(train: Path, validation: Path, test: Path) -> dict:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression; C picked on the validation split."""
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    tr, va, te = (pd.read_csv(p) for p in (train, validation, test))
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_tr = vectorizer.fit_transform(tr["text"])
    x_va, x_te = vectorizer.transform(va["text"]), vectorizer.transform(te["text"])
    best = None
    for c in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(x_tr, tr["label"])
        acc = float((clf.predict(x_va) == va["label"]).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    val_acc, c, clf = best
    predicted = clf.predict(x_te).tolist()
    test_acc = float((pd.Series(predicted) == te["label"]).mean())
    return {"validation_accuracy": val_acc, "test_accuracy": test_acc, "C": c,
            "seconds": round(time.perf_counter() - start, 2), "predictions": predicted}  # fmt: skip


def finetuned(
    args: argparse.Namespace, seed: int, output: Path, train: Path, validation: Path, test: Path
) -> dict:
    """Fine-tune with openalbert, then score the kept (best-on-validation) checkpoint on the test split."""
    import pandas as pd

    from openalbert import pipeline
    from openalbert.finetuning import finetune

    start = time.perf_counter()
    result = finetune(
        "text-classification", args.model, train, validation, output, epochs=args.epochs,
        learning_rate=args.learning_rate, batch_size=args.batch_size, max_length=args.max_length, seed=seed,
        device=args.device, num_threads=args.threads, overwrite=True, bf16=args.bf16,
    )  # fmt: skip
    train_seconds = time.perf_counter() - start
    if result.train.interrupted:
        raise SystemExit(result.exit_code)
    te = pd.read_csv(test)
    start = time.perf_counter()
    classify = pipeline("text-classification", model=output, device=args.device_index)
    predicted = [p["label"] for p in classify(te["text"].tolist(), batch_size=64)]
    test_acc = float((pd.Series(predicted) == te["label"]).mean())
    return {
        "seed": seed,
        "model_dir": str(output),
        "validation_accuracy": result.best,
        "test_accuracy": test_acc,
        "steps": result.train.step,
        "train_seconds": round(train_seconds, 1),
        "predict_seconds": round(time.perf_counter() - start, 1),
        "evaluations": [h.get("eval_accuracy") for h in result.history],
        "predictions": predicted,
    }


def mcnemar(gold: list[str], first: list[str], second: list[str]) -> dict:
    """Sentences only `first` gets right, only `second` does, and the exact two-sided McNemar p-value."""
    from scipy.stats import binomtest

    only_first = sum(a == g != b for g, a, b in zip(gold, first, second))
    only_second = sum(b == g != a for g, a, b in zip(gold, first, second))
    discordant = only_first + only_second
    p = binomtest(only_first, discordant, 0.5).pvalue if discordant else 1.0
    return {"only_albert_right": only_first, "only_baseline_right": only_second, "p_value": float(p)}


def main() -> int:
    from openalbert.checkpoint import DEFAULT_MODEL
    from openalbert.finetuning.datasets import fetch_dataset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help="pretrained model directory (default: embedded model)"
    )
    p.add_argument("--output", type=Path, default=Path("benchmark-finetune-sentiment"))
    p.add_argument("--cache-dir", help="where the data set is built (default ~/.cache/openalbert/finetuning)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--learning-rate", type=float, default=3e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--restarts", type=int, default=1, help="fine-tuning runs; the best on validation is kept")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-baseline", action="store_true")
    args = p.parse_args()
    if args.restarts < 1:
        p.error(f"--restarts must be at least 1, got {args.restarts}")
    args.device_index = None if args.device == "cpu" else args.device
    args.output.mkdir(parents=True, exist_ok=True)

    files = fetch_dataset("sentiment", args.cache_dir)
    import pandas as pd

    sizes = {split: len(pd.read_csv(path)) for split, path in files.items()}
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": str(args.model),
        "data": {"files": {k: str(v) for k, v in files.items()}, "examples": sizes},
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    if not args.skip_baseline:
        record["tfidf_logreg"] = tfidf_baseline(files["train"], files["validation"], files["test"])
        print(f"TF-IDF + logistic regression: test accuracy {record['tfidf_logreg']['test_accuracy']:.4f}")
    runs = []
    for i in range(args.restarts):
        output = args.output / ("model" if args.restarts == 1 else f"model-{i}")
        runs.append(
            finetuned(args, args.seed + i, output, files["train"], files["validation"], files["test"])
        )
        print(f"fine-tuned ALBERT, seed {args.seed + i}: validation {runs[-1]['validation_accuracy']:.4f}, "
              f"test {runs[-1]['test_accuracy']:.4f}")  # fmt: skip
    kept = max(runs, key=lambda r: r["validation_accuracy"])  # the first of equals
    record["albert"] = {**kept, "restarts": len(runs)}
    if len(runs) > 1:
        record["albert_runs"] = [{k: v for k, v in r.items() if k != "predictions"} for r in runs]
    if "tfidf_logreg" in record:
        gold = pd.read_csv(files["test"])["label"].tolist()
        record["paired_test"] = mcnemar(gold, kept["predictions"], record["tfidf_logreg"]["predictions"])
    (args.output / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    base = record.get("tfidf_logreg", {})
    tests = [r["test_accuracy"] for r in runs]
    print("| model | ALBERT validation / test acc (kept run) | test acc, mean of runs | TF-IDF+LR validation / test"
          " | paired test | train s |")  # fmt: skip
    paired = record.get("paired_test", {})
    print(f"| {args.model} | {kept['validation_accuracy']:.4f} / {kept['test_accuracy']:.4f} | "
          f"{sum(tests) / len(tests):.4f} ({len(tests)} runs) | {base.get('validation_accuracy', float('nan')):.4f} / "
          f"{base.get('test_accuracy', float('nan')):.4f} | {paired.get('only_albert_right', '-')} vs "
          f"{paired.get('only_baseline_right', '-')}, p = {paired.get('p_value', float('nan')):.3f} | "
          f"{sum(r['train_seconds'] for r in runs):.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
