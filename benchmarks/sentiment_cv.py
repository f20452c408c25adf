"""Fine-tuned ALBERT vs TF-IDF + logistic regression, cross-validated over all 4,000 Pang & Lee sentences.

finetune_sentiment.py scores both on one fixed test split of 388 sentences, where one standard error is
2.3 points. Here every sentence is tested once: the sentences are cut into K folds by a hash of their
text; for fold k, fold k is the test set, fold k+1 the validation set (the baseline's `C` and ALBERT's
epoch are chosen on it, as in finetune_sentiment.py) and the other K-2 folds the training set. With
--restarts N each fold is fine-tuned N times (seeds SEED..SEED+N-1) and the run best on the validation
fold is kept, as finetune_sentiment.py does; the first seed alone is scored too. The K test predictions
of each method are pooled and compared sentence by sentence (exact McNemar), and per fold (mean
difference and its standard error). Each fine-tuning run is saved as it ends (OUTPUT/fold-K/run-SEED.json)
and reused by a rerun with the same settings, so an interrupted run resumes where it stopped. Results go
to OUTPUT/results.json and as Markdown to stdout.

    python benchmarks/sentiment_cv.py --folds 10 --epochs 3 --learning-rate 2e-4 --max-length 64 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_sentiment import finetuned, mcnemar, tfidf_baseline  # noqa: E402


def fold_of(text: str, folds: int) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"sentim-cv").digest()
    return int.from_bytes(digest, "big") * folds >> 64


SETTINGS = ("model", "folds", "epochs", "learning_rate", "batch_size", "max_length", "bf16")


def cached_run(args: argparse.Namespace, seed: int, out: Path, paths: dict[str, Path]) -> dict:
    """One fine-tuning run of one fold, read back from OUTPUT/fold-K/run-SEED.json when the settings match."""
    saved = out / f"run-{seed}.json"
    settings = {name: str(getattr(args, name)) for name in SETTINGS}
    if saved.exists():
        record = json.loads(saved.read_text())
        if record.get("settings") == settings:
            return record
    record = finetuned(args, seed, out / "model", paths["train"], paths["validation"], paths["test"])
    record["settings"] = settings
    partial = saved.with_suffix(".json.tmp")  # renamed into place: an interruption leaves no half file
    partial.write_text(json.dumps(record) + "\n")
    partial.replace(saved)
    return record


def accuracy(predictions: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(predictions, gold)) / len(gold)


def main() -> int:
    import pandas as pd

    from openalbert.checkpoint import DEFAULT_MODEL
    from openalbert.finetuning.datasets import fetch_dataset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--output", type=Path, default=Path("runs/finetune-bench/sentiment-cv"))
    p.add_argument("--cache-dir")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--restarts", type=int, default=1, help="fine-tuning runs per fold; the best on validation is kept"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.folds < 3:
        p.error("--folds must be at least 3 (a test, a validation and a training fold)")
    if args.restarts < 1:
        p.error(f"--restarts must be at least 1, got {args.restarts}")
    args.device_index = None if args.device == "cpu" else args.device

    files = fetch_dataset("sentiment", args.cache_dir)
    data = pd.concat([pd.read_csv(files[s]) for s in ("train", "validation", "test")], ignore_index=True)
    data["fold"] = [fold_of(t, args.folds) for t in data["text"]]
    folds, gold, albert, first, baseline = [], [], [], [], []
    for k in range(args.folds):
        out = args.output / f"fold-{k}"
        out.mkdir(parents=True, exist_ok=True)
        role = pd.Series("train", index=data.index)
        role[data["fold"] == k] = "test"
        role[data["fold"] == (k + 1) % args.folds] = "validation"
        paths = {name: out / f"{name}.csv" for name in ("train", "validation", "test")}
        for name, path in paths.items():
            data.loc[role == name, ["text", "label"]].to_csv(path, index=False)
        base = tfidf_baseline(paths["train"], paths["validation"], paths["test"])
        runs = [cached_run(args, args.seed + i, out, paths) for i in range(args.restarts)]
        tuned = max(runs, key=lambda r: r["validation_accuracy"])  # the first of equals
        labels = pd.read_csv(paths["test"])["label"].tolist()
        gold += labels
        albert += tuned["predictions"]
        first += runs[0]["predictions"]
        baseline += base["predictions"]
        folds.append({
            "fold": k, "test": len(labels), "albert_test": tuned["test_accuracy"],
            "albert_validation": tuned["validation_accuracy"], "albert_seed": tuned["seed"],
            "albert_runs_test": [r["test_accuracy"] for r in runs], "tfidf_test": base["test_accuracy"],
            "tfidf_validation": base["validation_accuracy"], "C": base["C"],
            "train_seconds": sum(r["train_seconds"] for r in runs),
        })  # fmt: skip
        print(
            f"fold {k}: ALBERT {tuned['test_accuracy']:.4f}, TF-IDF+LR {base['test_accuracy']:.4f}",
            flush=True,
        )

    n = len(gold)
    diffs = [f["albert_test"] - f["tfidf_test"] for f in folds]
    mean = sum(diffs) / len(diffs)
    se = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) ** 0.5
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": str(args.model),
        "sentences": n,
        "restarts": args.restarts,
        "albert_accuracy": accuracy(albert, gold),
        "tfidf_accuracy": accuracy(baseline, gold),
        "paired_test": mcnemar(gold, albert, baseline),
        "first_seed_only": {"accuracy": accuracy(first, gold), "paired_test": mcnemar(gold, first, baseline)},
        "fold_difference": {"mean": mean, "standard_error": se},
        "folds": folds,
    }
    (args.output / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        "| fold | sentences | ALBERT validation / test | TF-IDF+LR validation / test |\n|---|---:|---:|---:|"
    )
    for f in folds:
        print(f"| {f['fold']} | {f['test']} | {f['albert_validation']:.4f} / {f['albert_test']:.4f} | "
              f"{f['tfidf_validation']:.4f} / {f['tfidf_test']:.4f} |")  # fmt: skip
    paired = record["paired_test"]
    print(f"\nPooled over {n} sentences: ALBERT {record['albert_accuracy']:.4f}, TF-IDF+LR "
          f"{record['tfidf_accuracy']:.4f}; only ALBERT right {paired['only_albert_right']}, only TF-IDF+LR "
          f"right {paired['only_baseline_right']}, McNemar p = {paired['p_value']:.3g}; per-fold difference "
          f"{mean * 100:+.2f} +- {se * 100:.2f} points; "
          f"{sum(f['train_seconds'] for f in folds):.0f} s of fine-tuning")  # fmt: skip
    if args.restarts > 1:
        single = record["first_seed_only"]
        print(f"Seed {args.seed} alone in every fold: ALBERT {single['accuracy']:.4f}, McNemar p = "
              f"{single['paired_test']['p_value']:.3g}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
