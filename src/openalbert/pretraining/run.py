"""The ALBERT pretraining run: MLM + sentence-order loss on prepared examples, through the shared loop.

`PretrainingObjective` wraps an `AlbertForPreTraining` (or an `AlbertForMaskedLM`) and computes the same
loss as its forward (mean MLM cross-entropy over predicted tokens + mean SOP cross-entropy) but runs the
last layer and the vocabulary projection only where the losses read them, about 15% of the tokens: on a
CPU the projection alone would otherwise cost as much as the whole encoder. It also reports MLM/SOP
losses and accuracies.
`pretrain()` builds the model from a preset or config, checks it against the data and tokenizer,
and hands everything to `openalbert.training.train`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from openalbert import cpu_kernels
from openalbert.training.loop import TrainConfig, TrainResult, load_module, train

DEFAULT_PRESET = "albert-base-v2"
# Peak learning rates: ALBERT's LAMB value (batch 4096), and a usual AdamW value for BERT-style pretraining.
DEFAULT_LEARNING_RATES = {"lamb": 1.76e-3, "adamw": 5e-4}


@dataclass
class PretrainingOutput:
    """The objective's loss and the (sum, count) pairs the loop logs."""

    loss: torch.Tensor
    metrics: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


class PretrainingObjective(nn.Module):
    """The MLM (+ SOP) loss of an `AlbertForPreTraining` or `AlbertForMaskedLM`, with the last layer and the
    vocabulary projection on the positions the losses read only.

    Same loss and gradients as the model's own forward with labels (mean MLM cross-entropy over the
    predicted tokens, plus mean SOP cross-entropy when `sentence_order_label` is given), but the last layer
    runs only at [CLS] and the masked positions (`AlbertModel(queries_at=...)`) and the vocabulary
    projection only at the masked ones, about 15% of the tokens. It also reports MLM/SOP losses and
    accuracies. A model without the `albert` and `predictions` submodules (and `sop_classifier` for SOP)
    gets its own forward.

    With `max_predictions` (at most that many masked tokens a sequence: the prepared data's
    max_predictions_per_seq) the last layer runs at a fixed number of positions, so the loss reads nothing
    back to the host and the step can be replayed from a CUDA graph (`TrainConfig.cuda_graphs`).
    """

    def __init__(self, model: nn.Module, max_predictions: int | None = None) -> None:
        super().__init__()
        if max_predictions is not None and max_predictions < 1:
            raise ValueError(f"max_predictions must be >= 1, got {max_predictions}")
        self.model = model
        self.max_predictions = max_predictions

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        sentence_order_label: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> PretrainingOutput:
        model = self.model
        with_sop = sentence_order_label is not None
        mask = labels != -100  # (B, T)
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        needed = ("albert", "predictions") + (("sop_classifier",) if with_sop else ())
        if all(hasattr(model, n) for n in needed):
            # The losses read the last layer at [CLS] and the masked positions only, so it runs only there.
            queries, picked = _loss_queries(mask, self.max_predictions)  # (B, R), (B, R) bool
            out = model.albert(**inputs, queries_at=queries, return_dict=True, **kwargs)
            fixed = self.max_predictions is not None
            if fixed:  # every row is projected; [CLS] and fillers get no target
                mlm_logits = model.predictions(out.last_hidden_state).flatten(0, 1)  # (B * R, V)
                targets = labels.gather(1, queries).where(picked, -100).flatten()  # (B * R,)
            else:
                # Boolean indexing syncs with a GPU once per micro-batch; on the CPU it is free.
                mlm_logits = model.predictions(out.last_hidden_state[picked])  # (M, V), in labels[mask] order
                targets = labels[mask]  # (M,)
            sop_logits = model.sop_classifier(out.pooler_output) if with_sop else None  # (B, 2)
        else:
            fixed = False
            targets = labels[mask]  # (M,)
            out = model(**inputs, return_dict=True, **kwargs)
            if with_sop and getattr(out, "sop_logits", None) is None:
                raise ValueError(
                    f"sentence_order_label given, but {type(model).__name__} has no sentence-order head; "
                    "pretrain an AlbertForPreTraining, or leave the SOP labels out for MLM alone"
                )
            mlm_logits = getattr(out, "prediction_logits", None)
            mlm_logits = (out.logits if mlm_logits is None else mlm_logits)[mask]
            sop_logits = out.sop_logits if with_sop else None
        count = mask.sum()
        if fixed:
            mlm_sum = F.cross_entropy(mlm_logits, targets, ignore_index=-100, reduction="sum")
        else:  # F.cross_entropy's, fused on the CPU
            mlm_sum = cpu_kernels.cross_entropy_sum(mlm_logits, targets)
        # clamp: a batch with no masked token contributes 0 instead of NaN.
        loss = mlm_sum / count.clamp(min=1)
        with torch.no_grad():
            # max().indices: the same first-maximum index as argmax, 4x faster on bf16 CPU logits.
            mlm_correct = (mlm_logits.max(-1).indices == targets).sum()
        metrics = {"mlm_loss": (mlm_sum.detach(), count), "mlm_accuracy": (mlm_correct, count)}
        if with_sop:
            sop_targets = sentence_order_label.view(-1)  # (B,)
            # (a fill, not a copy from the host: it can be captured in a CUDA graph)
            batch = torch.full((), sop_targets.numel(), device=sop_targets.device)
            sop_sum = F.cross_entropy(sop_logits.view(-1, 2), sop_targets, reduction="sum")
            loss = loss + sop_sum / batch
            with torch.no_grad():
                sop_correct = (sop_logits.argmax(-1) == sop_targets).sum()
            metrics |= {"sop_loss": (sop_sum.detach(), batch), "sop_accuracy": (sop_correct, batch)}
        return PretrainingOutput(loss=loss, metrics=metrics)


def _loss_queries(mask: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) masked positions -> the positions the losses read, (B, R): [CLS] (0) first, then each
    sequence's masked positions in order, then fillers (position 0 again); and (B, R) which are masked.
    R is 1 + the most masked positions of a sequence, or 1 + `width` where given (no host sync then;
    more masked positions than that are an error, checked where a value can be read back)."""
    counts = mask.sum(dim=1)  # (B,)
    if width is None:
        width = int(counts.max()) if mask.numel() else 0
    else:
        width = min(width, mask.shape[1])
        capturing = mask.is_cuda and torch.cuda.is_current_stream_capturing()
        most = int(counts.max()) if mask.numel() and not capturing else 0
        if most > width:
            raise ValueError(f"a sequence has {most} masked tokens, more than max_predictions ({width})")
    masked_first = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :width]  # (B, width)
    picked = torch.arange(width, device=mask.device) < counts[:, None]
    queries = torch.cat([torch.zeros_like(masked_first[:, :1]), masked_first.where(picked, 0)], dim=1)
    return queries, torch.cat([torch.zeros_like(picked[:, :1]), picked], dim=1)


# ---- checks and builders -------------------------------------------------------------------------------


def _check_same_preparation(
    data_dir: Path, corpus: Sequence[str | os.PathLike], dupe_factor: int, seed: int
) -> None:
    """ValueError when a resumed run names other corpus files or preparation options than its examples were
    made with (its sequence length is checked against the examples as any run's is)."""
    manifest = _read_data_manifest(data_dir)
    made = {
        "files": sorted(str(Path(f["path"]).resolve()) for f in manifest.get("corpus_files", [])),
        "dupe_factor": manifest.get("options", {}).get("dupe_factor"),
        "seed": manifest.get("options", {}).get("seed"),
    }
    asked = {
        "files": sorted(str(Path(f).resolve()) for f in corpus),
        "dupe_factor": dupe_factor,
        "seed": seed,
    }
    differ = [k for k in made if made[k] is not None and made[k] != asked[k]]
    if differ:
        shown = ", ".join(f"{k} {made[k]} (now {asked[k]})" for k in differ)
        raise ValueError(
            f"this run's examples in {data_dir} were prepared with {shown}; resume with the same corpus and "
            "options, or start a new run (a new --output) to train on other text"
        )


def _examples_digest(manifest: dict[str, Any]) -> str:
    """What identifies prepared examples (a resume on others is refused): their shards, the options they were
    made with and their counts, wherever the directory or its corpus now lies."""
    made = {key: manifest.get(key) for key in ("shards", "options", "stats", "max_seq_length", "vocab_size")}
    return hashlib.sha256(json.dumps(made, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_data_manifest(data_dir: Path) -> dict[str, Any]:
    from openalbert.pretraining.data import read_manifest

    return read_manifest(data_dir)


def resolve_config(
    config: Any | None,
    preset: str | None,
    init_from: str | Path | None,
    vocab_size: int | None,
    seq_len: int | None,
) -> Any:
    """The model config of a run: an explicit one must match the vocabulary; a preset takes its size.

    Raises ValueError naming the conflicting values (vocabulary size, sequence length).
    """
    from openalbert import AlbertConfig

    given = [name for name, v in (("config", config), ("preset", preset), ("init_from", init_from)) if v]
    if len(given) > 1:
        raise ValueError(f"give only one of config, preset and init_from (got {', '.join(given)})")
    if init_from is not None:
        config = AlbertConfig.from_pretrained(init_from)
    elif config is None:
        # A preset names an architecture; the vocabulary is whatever the tokenizer has.
        overrides = {"vocab_size": vocab_size} if vocab_size is not None else {}
        config = AlbertConfig.from_preset(preset or DEFAULT_PRESET, **overrides)
    elif isinstance(config, (str, Path)):
        if str(config).endswith(".json") and not Path(config).is_file():  # (not a hub id either)
            raise FileNotFoundError(f"config file {config} does not exist")
        config = AlbertConfig.from_pretrained(config)
    if vocab_size is not None and config.vocab_size != vocab_size:
        raise ValueError(
            f"the model's vocab_size is {config.vocab_size} but the tokenizer/data have {vocab_size} pieces; "
            "set vocab_size in the config to match (or use --preset, which takes the tokenizer's)"
        )
    if seq_len is not None and seq_len > config.max_position_embeddings:
        raise ValueError(
            f"sequences of {seq_len} tokens exceed the model's max_position_embeddings "
            f"({config.max_position_embeddings})"
        )
    return config


class _SnapshotWriter:
    """Writes a snapshot: the model in HF layout plus the tokenizer files, rendered once and copied after."""

    def __init__(self, tokenizer: Any | None, tokenizer_source: Path | None, output_dir: Path) -> None:
        self.tokenizer, self.tokenizer_source, self.output_dir = tokenizer, tokenizer_source, output_dir
        self._files: Path | None = None
        self._warned = False

    def _tokenizer_files(self) -> Path:
        if self._files is None:
            self._files = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=self.output_dir))
            # tokenizer.json takes seconds to build from a 30k vocabulary; copy it when the source has one,
            # otherwise leave it out (transformers builds the fast tokenizer from spiece.model).
            self.tokenizer.save_pretrained(self._files, write_tokenizer_json=False)
            source = self.tokenizer_source
            if source is not None and source.is_dir() and (source / "tokenizer.json").is_file():
                shutil.copy2(source / "tokenizer.json", self._files / "tokenizer.json")
        return self._files

    def __call__(self, module: nn.Module, directory: Path) -> None:
        module.model.save_pretrained(directory)
        if self.tokenizer is not None:
            for f in self._tokenizer_files().iterdir():
                shutil.copy2(f, directory / f.name)
        elif not self._warned:  # (at the first snapshot: a run refused before training warns of nothing)
            self._warned = True
            warnings.warn(
                f"no tokenizer given: the models saved in {self.output_dir} have no tokenizer files, which "
                "pipelines and fine-tuning need; pass the one the data was made with (tokenizer=, --tokenizer)",
                stacklevel=2,
            )

    def close(self) -> None:
        if self._files is not None:
            shutil.rmtree(self._files, ignore_errors=True)


def _load_objective(module: nn.Module, directory: Path) -> None:
    load_module(module.model, directory)


def _check_data_ids(dataset: Any, vocab_size: int, where: Path) -> None:
    """Fail early, naming the file, if the first examples hold ids the embedding cannot look up."""
    for i in range(min(len(dataset), 16)):
        top = int(dataset[i]["input_ids"].max())
        if top >= vocab_size:
            raise ValueError(
                f"{where}: example {i} holds token id {top}, beyond the model's vocab_size {vocab_size}; "
                "prepare the data with the same tokenizer as the model"
            )


# ---- the run ------------------------------------------------------------------------------------------------


def pretrain(
    data_dir: str | Path | None,
    output_dir: str | Path,
    config: Any | None = None,
    preset: str | None = None,
    *,
    tokenizer: str | Path | None = None,
    corpus: Sequence[str | Path] | None = None,
    seq_len: int | None = None,
    dupe_factor: int = 5,
    init_from: str | Path | None = None,
    max_steps: int = 10_000,
    stop_after: int | None = None,
    batch_size: int = 64,
    grad_accum: int = 1,
    learning_rate: float | None = None,
    warmup_steps: int | None = None,
    lr_schedule: str = "polynomial",
    poly_power: float = 1.0,
    optimizer: str = "lamb",
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 1.0,
    bf16: bool = False,
    cuda_graphs: bool = False,
    device: str = "auto",
    save_every: int = 1000,
    keep_last: int = 3,
    resume: bool | str | Path = False,
    overwrite: bool = False,
    eval_dir: str | Path | None = None,
    eval_every: int = 0,
    eval_batch_size: int | None = None,
    seed: int = 0,
    log_every: int = 1,
    fsdp: bool = False,
    num_threads: int | None = None,
    progress: bool = True,
    on_log: Any | None = None,
) -> TrainResult:
    """Pretrain `AlbertForPreTraining` (MLM + SOP) on the examples in `data_dir`; write to `output_dir`.

    The model comes from `config` (an AlbertConfig or a config.json path), a `preset` name (its
    vocab_size set from the tokenizer/data), or `init_from` (a model directory to continue). Give
    `corpus` (raw text files) instead of `data_dir` to prepare examples into `output_dir/data` first,
    with `tokenizer` and `seq_len`. `learning_rate` defaults to 1.76e-3 for LAMB and 5e-4 for AdamW;
    `warmup_steps` to 2.5% of `max_steps`, as in ALBERT; `lr_schedule` "polynomial" is the original's
    decay from step 0 (`poly_power` 1: linear), "linear" transformers' decay after warm-up. `stop_after` pauses the run at that step with a
    checkpoint, on the `max_steps` schedule (resume to continue). `cuda_graphs` replays each step from a
    CUDA graph on a GPU (the loss then runs at the data's max_predictions_per_seq positions a sequence).
    Returns the loop's TrainResult.
    """
    from openalbert import AlbertForPreTraining
    from openalbert.pretraining.data import PretrainingDataset

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"the output {output_dir} is a file; give a directory for the run (--output)")
    tok = None
    tokenizer_path = Path(tokenizer) if tokenizer is not None else None
    if tokenizer_path is None and init_from is not None and (Path(init_from) / "spiece.model").is_file():
        tokenizer_path = Path(init_from)  # (the model continued from brings its tokenizer)
    if tokenizer_path is not None:
        from openalbert.tokenizer import AlbertTokenizer

        if not tokenizer_path.exists():
            raise FileNotFoundError(f"tokenizer not found: {tokenizer_path}")
        tok = AlbertTokenizer.from_pretrained(tokenizer_path)

    if corpus:
        if data_dir is not None:
            raise ValueError("give either data_dir (prepared examples) or corpus (raw text), not both")
        if tok is None:
            raise ValueError(
                "preparing examples from a corpus needs a tokenizer (a directory with spiece.model)"
            )
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                "under torchrun, prepare the examples once first (`openalbert prepare-data`) and pass the "
                "directory as data_dir (--data)"
            )
        data_dir = output_dir / "data"
        # Preparation is deterministic, so a resumed run reuses the examples it made the first time; from the
        # same files and options (other ones would silently train on the old examples).
        if resume and (data_dir / "manifest.json").is_file():
            _check_same_preparation(data_dir, corpus, dupe_factor, seed)
        else:
            from openalbert.pretraining.data import prepare_pretraining_data

            prepare_pretraining_data(
                corpus, tok, data_dir, max_seq_length=seq_len or 128, dupe_factor=dupe_factor, seed=seed,
                progress=progress,
            )  # fmt: skip
    if data_dir is None:
        raise ValueError("give data_dir (prepared examples) or corpus (raw text files)")
    data_dir = Path(data_dir)
    manifest = _read_data_manifest(data_dir)
    data_vocab, data_len = int(manifest["vocab_size"]), int(manifest["max_seq_length"])
    if tok is not None and tok.vocab_size != data_vocab:
        raise ValueError(
            f"the tokenizer {tokenizer_path} has {tok.vocab_size} pieces but {data_dir} was made "
            f"with a {data_vocab}-piece vocabulary"
        )
    if seq_len is not None and seq_len != data_len:
        raise ValueError(f"seq_len {seq_len} differs from the {data_len} tokens per example in {data_dir}")
    model_config = resolve_config(config, preset, init_from, data_vocab, data_len)

    train_data = PretrainingDataset(data_dir)
    _check_data_ids(train_data, model_config.vocab_size, data_dir)
    if eval_every and eval_dir is None:  # (it was ignored without a word)
        raise ValueError("eval_every (--eval-every) evaluates on held-out examples: give them (--eval-data)")
    eval_data = None
    if eval_dir is not None:  # checked now, not after training has run
        eval_data = PretrainingDataset(eval_dir)
        _check_data_ids(eval_data, model_config.vocab_size, Path(eval_dir))
        eval_len = int(eval_data.manifest["max_seq_length"])
        if eval_len > model_config.max_position_embeddings:
            raise ValueError(
                f"{eval_dir} holds examples of {eval_len} tokens, more than the model's max_position_embeddings "
                f"({model_config.max_position_embeddings}); prepare it with a --max-seq-length that fits"
            )
        if int(eval_data.manifest["vocab_size"]) != data_vocab:
            raise ValueError(f"{eval_dir} uses a different vocabulary from {data_dir}")

    # The same seed gives the same initial weights in every process (DDP also broadcasts rank 0's).
    torch.manual_seed(seed)
    if init_from is not None:
        model = AlbertForPreTraining.from_pretrained(init_from)
    else:
        model = AlbertForPreTraining(model_config)
    # CUDA graphs need a loss of fixed shapes: the prepared examples mask at most this many tokens each.
    max_predictions = int(manifest["max_predictions_per_seq"]) if cuda_graphs else None
    objective = PretrainingObjective(model, max_predictions=max_predictions)

    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES.get(optimizer, 1e-3)
    if warmup_steps is None:
        warmup_steps = int(0.025 * max_steps)
    train_config = TrainConfig(
        output_dir=output_dir,
        max_steps=max_steps,
        stop_after=stop_after,
        batch_size=batch_size,
        grad_accum=grad_accum,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        lr_schedule=lr_schedule,
        poly_power=poly_power,
        weight_decay=weight_decay,
        optimizer=optimizer,
        max_grad_norm=max_grad_norm,
        bf16=bf16,
        cuda_graphs=cuda_graphs,
        device=device,
        seed=seed,
        log_every=log_every,
        save_every=save_every,
        keep_last=keep_last,
        eval_every=eval_every,
        eval_batch_size=eval_batch_size,
        resume=resume,
        overwrite=overwrite,
        fsdp=fsdp,
        num_threads=num_threads,
        progress=progress,
        data_id=_examples_digest(manifest),
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    writer = _SnapshotWriter(tok, tokenizer_path, output_dir)
    try:
        return train(
            objective,
            train_data,
            train_config,
            eval_dataset=eval_data,
            save_model=writer,
            load_model=_load_objective,
            on_log=on_log,
        )
    finally:
        writer.close()
