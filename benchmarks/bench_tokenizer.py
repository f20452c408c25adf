"""Tokenization speed: openalbert's AlbertTokenizer against transformers' fast and slow AlbertTokenizer.

All three use the same vocabulary and real text: paragraphs and whole docstrings of Python's standard
library, and the paragraphs with accents, CJK, emoji, odd whitespace and numbers spliced in. Each row is
the best of --repeats runs over the whole set, in texts per second.

    python benchmarks/bench_tokenizer.py --vocab ../shared/data/albert-30k/spiece.model \
        --output benchmarks/tokenizer_speed.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import random
import sysconfig
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from openalbert.tokenizer import AlbertTokenizer

ODD = [
    "café",
    "naïve",
    "Ωμέγα",
    "的一是",
    "日本語",
    "한국어",
    "😀",
    "👍🏽",
    "1,000,000",
    "9,",
    "``quoted''",
    "\u3000",
    "\xa0",
    "\t",
    "ﬁ",
    "½",
]


def texts_from_stdlib(limit: int) -> dict[str, list[str]]:
    """Three text sets: docstring paragraphs, whole docstrings, and paragraphs with odd fragments spliced in."""
    lib = Path(sysconfig.get_paths()["stdlib"])  # not sys.prefix: in a venv that holds no standard library
    docs = []
    for path in sorted(lib.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    docs.append(doc)
    paragraphs = [p for d in docs for p in d.split("\n\n") if len(p.strip()) > 20]
    rng = random.Random(0)
    spliced = []
    for p in paragraphs[:limit]:
        for _ in range(3):
            at = rng.randrange(len(p) + 1)
            p = p[:at] + rng.choice(ODD) + p[at:]
        spliced.append(p)
    return {"paragraphs": paragraphs[:limit], "documents": docs[:limit], "unicode": spliced}


def best_rate(fn: Callable[[], object], n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vocab",
        default=str(
            Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "albert-30k" / "spiece.model"
        ),
    )
    parser.add_argument("--limit", type=int, default=5000, help="texts per set")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-slow", action="store_true", help="skip transformers' slow tokenizer")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    import transformers

    transformers.logging.set_verbosity_error()
    ours = AlbertTokenizer(args.vocab)
    fast = transformers.AlbertTokenizerFast(vocab_file=args.vocab, model_max_length=512)
    slow = None if args.no_slow else transformers.AlbertTokenizer(vocab_file=args.vocab, model_max_length=512)
    sets = texts_from_stdlib(args.limit)

    modes: dict[str, dict] = {
        "ids": {},
        "ids, batches of 32": {"batch": 32},
        "ids + offsets": {"return_offsets_mapping": True},
        "pad+truncate 128, pt": {
            "padding": True,
            "truncation": True,
            "max_length": 128,
            "return_tensors": "pt",
        },
    }
    rows = []
    for set_name, texts in sets.items():
        mean_chars = sum(map(len, texts)) / len(texts)
        for mode, kwargs in modes.items():
            kwargs = dict(kwargs)
            batch = kwargs.pop("batch", len(texts))
            rates = {}
            for name, tok in (("openalbert", ours), ("transformers fast", fast), ("transformers slow", slow)):
                if tok is None or (name == "transformers slow" and kwargs.get("return_offsets_mapping")):
                    continue  # the slow tokenizer has no offsets

                def run(tok=tok, kwargs=kwargs, batch=batch, texts=texts) -> None:
                    for i in range(0, len(texts), batch):
                        tok(texts[i : i + batch], **kwargs)

                repeats = 1 if name == "transformers slow" else args.repeats
                rates[name] = best_rate(run, len(texts), repeats)
            rows.append(
                {"texts": set_name, "n": len(texts), "mean_chars": round(mean_chars), "mode": mode, **rates}
            )
            speedup = rates["openalbert"] / rates["transformers fast"]
            shown = "  ".join(f"{k}: {v:9.0f}/s" for k, v in rates.items())
            print(f"{set_name:10s} {mode:22s} {shown}  (x{speedup:.2f} vs fast)", flush=True)

    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    machine = {
        "cpu": cpu,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "transformers": transformers.__version__,
        "tokenizers": __import__("tokenizers").__version__,
        "sentencepiece": __import__("sentencepiece").__version__,
    }
    if args.output:
        args.output.write_text(json.dumps({"machine": machine, "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
