"""The training loop shared by pretraining and fine-tuning.

Model-agnostic: it trains any `nn.Module` whose `forward(**batch)` returns an object with `.loss`; an
optional `.metrics` dict of `(sum, count)` tensor pairs is accumulated and logged as `sum / count`.
It handles gradient accumulation, clipping, bf16 autocast, LAMB/AdamW with a linear schedule, steps
replayed from CUDA graphs (`cuda_graphs`), DistributedDataParallel or FSDP2 under `torchrun`, atomic
HF-format checkpoints with everything needed for an exact resume, SIGINT/SIGTERM (finish the step, save,
return), metrics in JSONL, a tqdm bar, periodic evaluation, the best checkpoint by a metric, early
stopping, and a PNG of the curves.

Layout of `output_dir`: `checkpoints/step-NNNNNNNN/` (model files + `trainer_state.pt`), `best/` when a
best metric is tracked, `metrics.jsonl`, `curves.png`, and the final model files at the top level.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from openalbert.checkpoint import as_device, current_umask
from openalbert.training.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_schedule

TRAINER_STATE = "trainer_state.pt"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
_CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


# ---- configuration and result --------------------------------------------------------------------------


class TrainingDiverged(ValueError):
    """The loss or the weights became inf or NaN. Nothing is saved from that step on; the checkpoints
    written before it hold finite weights to resume from."""


@dataclass
class TrainConfig:
    """Hyper-parameters and bookkeeping of one training run; `batch_size` is per process and micro-batch.

    The global batch is `batch_size * grad_accum * world_size`. Give `max_steps` or `num_epochs`.
    """

    output_dir: str | Path
    max_steps: int | None = None
    num_epochs: float | None = None
    stop_after: int | None = None  # pause at this step (checkpoint, resumable) without changing the schedule
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    # "linear" (transformers') or "polynomial" (the original ALBERT code's, decaying from step 0 with power
    # `poly_power`); see openalbert.training.optim.
    lr_schedule: str = "linear"
    poly_power: float = 1.0
    weight_decay: float = 0.01
    optimizer: str = "lamb"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    max_grad_norm: float | None = 1.0
    bf16: bool = False
    # On a GPU, replay each step from a CUDA graph (openalbert.fast.cuda_graph_train_step): batches of one
    # shape (pretraining's) then cost one launch a step instead of hundreds; one process, grad_accum 1.
    cuda_graphs: bool = False
    device: str = "auto"
    seed: int = 0
    drop_last: bool = True
    log_every: int = 1
    save_every: int | str = 0  # steps, or "epoch": after the step that ends each pass over the data
    keep_last: int = 3
    eval_every: int | str = 0  # steps, or "epoch" (with grad_accum, steps do not divide epochs evenly)
    eval_batch_size: int | None = None
    best_metric: str | None = None
    greater_is_better: bool = True
    early_stopping_patience: int | None = None
    resume: bool | str | Path = False
    overwrite: bool = False
    fsdp: bool = False
    find_unused_parameters: bool = False
    num_threads: int | None = None
    progress: bool = True
    plot: bool = True
    # What identifies the training data (a digest of the examples or files): a resume with other data is refused.
    data_id: str | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent value."""
        if self.max_steps is None and self.num_epochs is None:
            raise ValueError("give max_steps or num_epochs")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError(f"stop_after must be >= 1, got {self.stop_after}")
        if self.num_epochs is not None and self.num_epochs <= 0:
            raise ValueError(f"num_epochs must be > 0, got {self.num_epochs}")
        for name in ("batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("save_every", "eval_every"):
            value = getattr(self, name)
            if value != "epoch" and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a number of steps >= 0 or 'epoch', got {value!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {self.keep_last}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {SCHEDULES}")
        if self.poly_power <= 0:
            raise ValueError(f"poly_power must be > 0, got {self.poly_power}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.resume not in (False, None) and self.overwrite:
            raise ValueError(
                "resume continues the run in output_dir and overwrite starts it over: pass one of them"
            )
        if self.cuda_graphs and self.grad_accum != 1:
            raise ValueError(
                f"cuda_graphs replays one whole step a batch, so grad_accum must be 1 (got {self.grad_accum}); "
                "raise batch_size instead"
            )
        if self.max_grad_norm is not None and not self.max_grad_norm >= 0:  # (NaN too)
            # clipping to a negative norm flips every gradient: the loss then climbs without a word
            raise ValueError(f"max_grad_norm must be >= 0 (0 or None: no clipping), got {self.max_grad_norm}")


@dataclass
class TrainResult:
    """What a run did: the step it reached, whether a signal stopped it, and where things are."""

    step: int
    output_dir: Path
    interrupted: bool = False
    signal: int | None = None
    early_stopped: bool = False
    last_loss: float | None = None
    best_metric: float | None = None
    last_checkpoint: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when finished; 128 + signal number (130 for SIGINT, 143 for SIGTERM) when stopped by a signal."""
        return 128 + self.signal if self.interrupted and self.signal else 0


# ---- data order -----------------------------------------------------------------------------------------


class ResumableSampler:
    """Batches of example indices: a seeded permutation per epoch, strided over ranks, resumable mid-epoch.

    Rank `r` of `w` takes every `w`-th index of the epoch's permutation, so the union of the ranks' first
    batches is the first `batch_size * w` indices: the same global batch one process would draw with
    `batch_size * w`. `state_dict()` holds (epoch, position) so a restored sampler continues exactly.
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if num_examples < 1:
            raise ValueError("the dataset is empty")
        if drop_last and num_examples < batch_size * world_size:
            raise ValueError(
                f"the dataset has {num_examples} examples, fewer than one global batch "
                f"({batch_size} x {world_size} processes); lower the batch size"
            )
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.rank, self.world_size, self.shuffle, self.drop_last = rank, world_size, shuffle, drop_last
        if drop_last:
            self.per_rank = num_examples // world_size
            self.batches_per_epoch = self.per_rank // batch_size
        else:
            self.per_rank = math.ceil(num_examples / world_size)
            self.batches_per_epoch = math.ceil(self.per_rank / batch_size)
        self.epoch = 0
        self.position = 0  # batches already taken in this epoch
        self._shard: np.ndarray | None = None

    def _make_shard(self) -> np.ndarray:
        n = self.num_examples
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        )
        total = self.per_rank * self.world_size
        # drop_last trims the tail; otherwise pad by wrapping so every rank has the same number of batches.
        order = order[:total] if total <= n else np.concatenate([order, np.resize(order, total - n)])
        return order[self.rank :: self.world_size]

    def next_batch(self) -> list[int]:
        """The next batch of this rank's indices, moving to the next epoch when this one is used up."""
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._shard = None
        if self._shard is None:
            self._shard = self._make_shard()
        start = self.position * self.batch_size
        self.position += 1
        return self._shard[start : start + self.batch_size].tolist()

    @property
    def epoch_progress(self) -> float:
        """Epochs completed, fractional."""
        return self.epoch + self.position / self.batches_per_epoch

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_examples": self.num_examples,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue where `state` left off; a changed dataset size is an error, a changed world an estimate."""
        if state["num_examples"] != self.num_examples:
            raise ValueError(
                f"the checkpoint was trained on {state['num_examples']} examples but the dataset now has "
                f"{self.num_examples}; resume with the same data"
            )
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        old_global = state["world_size"] * state["batch_size"]
        if old_global != self.world_size * self.batch_size:
            # A different number of processes or batch size cannot continue the same order exactly:
            # keep the epoch and the share of it already seen.
            warnings.warn(
                f"resuming with a global batch of {self.world_size * self.batch_size} instead of "
                f"{old_global}: the data order continues approximately",
                stacklevel=2,
            )
            self.position = min(
                self.batches_per_epoch, self.position * old_global // (self.world_size * self.batch_size)
            )
        self._shard = None


def steps_per_epoch(num_examples: int, batch_size: int, grad_accum: int = 1, world_size: int = 1) -> int:
    """Optimizer steps in one pass over `num_examples` (last partial global batch dropped)."""
    return max(1, num_examples // world_size // batch_size // grad_accum)


def default_collate(examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack equally shaped per-example tensors (or numbers / numpy arrays) key by key."""
    batch: dict[str, torch.Tensor] = {}
    for key in examples[0]:
        values = [e[key] for e in examples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.as_tensor(np.asarray(values))
    return batch


def _fetch(dataset: Any, indices: list[int], collate_fn: Callable[[Sequence[Any]], Any]) -> dict[str, Any]:
    """The batch at `indices`; a dataset with `collate_batch` builds it in one go when the collate is default."""
    if collate_fn is default_collate and hasattr(dataset, "collate_batch"):
        return dataset.collate_batch(indices)
    getitems = getattr(dataset, "__getitems__", None)
    return collate_fn(getitems(indices) if getitems is not None else [dataset[i] for i in indices])


# ---- processes and devices ---------------------------------------------------------------------------------


@dataclass
class DistEnv:
    """This process's place in the job: rank, world size, device, and whether we created the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    created_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' picks CUDA when present; under torchrun a bare 'cuda' becomes this process's GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = as_device(device)  # an unknown device, or CUDA where there is none, is a ValueError that says so
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev


def setup_distributed(device: str = "auto") -> DistEnv:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK and join the process group (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    created = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        created = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, created_group=created)


# ---- checkpoints -----------------------------------------------------------------------------------------


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_dir_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling directory with `write(tmp)`, fsync it, then rename it onto `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    old: Path | None = None
    try:
        os.chmod(
            tmp, 0o777 & ~current_umask()
        )  # mkdtemp makes it private; a snapshot should read like any directory
        write(tmp)
        _fsync_tree(tmp)
        if final.exists():
            # rename() cannot replace a non-empty directory: move the old one aside first.
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not final.exists():
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoint_step(path: Path) -> int:
    m = _CHECKPOINT_RE.match(path.name)
    return int(m.group(1)) if m else -1


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under `output_dir/checkpoints`, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        m = _CHECKPOINT_RE.match(path.name)
        if m and (path / TRAINER_STATE).is_file():
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        # numpy's state holds an ndarray; plain lists keep trainer_state.pt loadable with weights_only=True.
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_module(module: nn.Module, directory: Path) -> None:
    """Default snapshot writer: `save_pretrained` when the module has it, else safetensors of its weights."""
    if hasattr(module, "save_pretrained"):
        module.save_pretrained(directory)
    else:
        from safetensors.torch import save_model

        save_model(module, str(directory / "model.safetensors"))


def _damaged(directory: Path, name: str, error: Exception) -> ValueError:
    """The error for a checkpoint file that cannot be read (a disk fault, a copy cut short)."""
    return ValueError(
        f"checkpoint {directory} is damaged: its {name} cannot be read ({type(error).__name__}: {error}); "
        "remove that checkpoint directory to resume from the one before it"
    )


def load_module(module: nn.Module, directory: Path) -> None:
    """Default snapshot reader: load `model.safetensors` into `module`.

    Keys that a `save_pretrained` dropped because they are tied to another tensor may be missing;
    any other missing or unexpected key is an error.
    """
    from safetensors.torch import load_file

    path = directory / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no model.safetensors in checkpoint {directory}")
    try:
        state = load_file(str(path))
    except Exception as e:  # (safetensors' own error type)
        raise _damaged(directory, "model.safetensors", e) from None
    params = module.state_dict(keep_vars=True)
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(params[k].shape)}"
        for k, v in state.items()
        if k in params and v.shape != params[k].shape
    ]
    if wrong:  # resumed with another --model or --config
        raise ValueError(
            f"checkpoint {directory} is of a model of another shape (checkpoint vs model: {', '.join(wrong[:2])}); "
            "resume with the model and config the run started with"
        )
    result = module.load_state_dict(state, strict=False)
    loaded_ptrs = {params[k].data_ptr() for k in state if k in params}
    untied = [k for k in result.missing_keys if params[k].data_ptr() not in loaded_ptrs]
    if untied or result.unexpected_keys:
        raise ValueError(
            f"checkpoint {directory} does not match the model: missing {untied[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


# ---- signals ---------------------------------------------------------------------------------------------------


class _StopOnSignal:
    """Turn the first SIGINT/SIGTERM into a flag the loop checks after each step; a second SIGINT aborts."""

    def __init__(self, enabled: bool, verbose: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.verbose = verbose
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.verbose:
            print(
                f"\nopenalbert: got {signal.Signals(signum).name}: finishing this step, saving a checkpoint, "
                "then stopping (again to abort)",
                file=sys.stderr,
            )

    def __enter__(self) -> _StopOnSignal:
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ---- the loop -----------------------------------------------------------------------------------------------------


SaveFn = Callable[[nn.Module, Path], None]


class Trainer:
    """One training run; `train()` is the functional entry point. See the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Any,
        config: TrainConfig,
        *,
        eval_dataset: Any | None = None,
        collate_fn: Callable[[Sequence[Any]], dict[str, torch.Tensor]] = default_collate,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        save_model: SaveFn = save_module,
        load_model: SaveFn = load_module,
        on_log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        config.validate()
        if not hasattr(train_dataset, "__len__") or not hasattr(train_dataset, "__getitem__"):
            raise ValueError("train_dataset must be map-style (define __len__ and __getitem__)")
        self.model, self.train_dataset, self.config = model, train_dataset, config
        self.eval_dataset, self.collate_fn, self.custom_evaluate = eval_dataset, collate_fn, evaluate
        self.save_model, self.load_model, self.on_log = save_model, load_model, on_log
        self.output_dir = Path(config.output_dir)

    # -- setup ---------------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.env = env = setup_distributed(cfg.device)
        if cfg.bf16 and env.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"bf16 was requested but {torch.cuda.get_device_name(env.device)} does not support it"
            )
        if self.eval_dataset is not None and len(self.eval_dataset) == 0:
            raise ValueError("the evaluation dataset is empty: give it examples, or train without one")
        self.sampler = ResumableSampler(
            len(self.train_dataset),
            cfg.batch_size,
            cfg.seed,
            env.rank,
            env.world_size,
            drop_last=cfg.drop_last,
        )
        if cfg.max_steps is not None:
            self.max_steps = cfg.max_steps
        else:
            self.max_steps = max(
                1, math.ceil(cfg.num_epochs * self.sampler.batches_per_epoch / cfg.grad_accum)
            )
        if cfg.warmup_steps > self.max_steps:
            raise ValueError(
                f"warmup_steps ({cfg.warmup_steps}) exceeds the number of steps ({self.max_steps})"
            )

        resume_dir = self._find_resume_dir()
        if env.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            for stale in (self.output_dir / CHECKPOINTS_DIR).glob(".*-step-*"):
                shutil.rmtree(stale, ignore_errors=True)  # debris of a save that was killed mid-write
        env.barrier()

        model = self.model.to(env.device)
        if resume_dir is not None:
            self.load_model(model, resume_dir)
        self.model = model
        self._save_template: nn.Module | None = None
        self.fsdp = cfg.fsdp and env.distributed
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            # Rank 0 keeps an unsharded CPU copy to write HF-format snapshots from the gathered weights.
            self._save_template = copy.deepcopy(model).cpu() if env.is_main else None
            fully_shard(model)
            self.wrapped = model
        elif env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [env.device.index] if env.device.type == "cuda" else None
            self.wrapped = DDP(model, device_ids=ids, find_unused_parameters=cfg.find_unused_parameters)
        else:
            self.wrapped = model
        self.optimizer = build_optimizer(
            model, cfg.optimizer, cfg.learning_rate, cfg.weight_decay, cfg.betas, cfg.eps
        )
        self.scheduler = build_schedule(
            self.optimizer, cfg.lr_schedule, cfg.warmup_steps, self.max_steps, cfg.poly_power
        )
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

        self.step = 0
        self.elapsed_before = 0.0
        self.best: float | None = None
        self.evals_without_improvement = 0
        self.stopped_early = False  # (early stopping ended the run: a resume trains no further)
        self.epoch_ended, self.evaluated_at = False, -1  # (the step of the last evaluation)
        # Training randomness (dropout) differs per rank; initialisation was done by the caller.
        seed = cfg.seed + env.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.resumed_from = resume_dir
        self._saved_window = None
        if resume_dir is not None:
            self._load_trainer_state(resume_dir)
            if self.step > self.max_steps:
                raise ValueError(
                    f"{resume_dir} is at step {self.step}, past this run's {self.max_steps} steps; give more steps "
                    "(max_steps / num_epochs) to train on from it"
                )
            if cfg.stop_after is not None and cfg.stop_after <= self.step < self.max_steps:
                raise ValueError(
                    f"stop_after ({cfg.stop_after}) is not past the checkpoint's step {self.step}; give a later "
                    "step, or leave it out to train to the end"
                )
        self.graphed = self._graphed_step() if cfg.cuda_graphs else None
        self.metrics_path = self.output_dir / METRICS_FILE
        if env.is_main:
            self._trim_metrics()

    def _graphed_step(self) -> Any:
        """The step replayed from CUDA graphs, after the optimizer's state is loaded (cuda_graphs)."""
        from openalbert.fast.cuda_graphs import CUDAGraphTrainStep

        if self.env.device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device; this run trains on {self.env.device.type}")
        if self.env.distributed:
            raise ValueError(
                "cuda_graphs runs in one process; train without torchrun, or without cuda_graphs"
            )
        return CUDAGraphTrainStep(
            self.wrapped,
            self.optimizer,
            autocast=torch.bfloat16 if self.config.bf16 else None,
            max_grad_norm=self.config.max_grad_norm or None,
        )

    def _find_resume_dir(self) -> Path | None:
        cfg = self.config
        existing = latest_checkpoint(self.output_dir)
        if cfg.resume is False or cfg.resume is None:
            if existing is not None and not cfg.overwrite:
                raise ValueError(
                    f"{self.output_dir} already holds checkpoints (newest {existing.name}); resume (--resume) to "
                    "continue that run, overwrite (--overwrite) to start over, or choose a new output directory"
                )
            if existing is not None:
                self.env.barrier()  # every rank has looked before rank 0 deletes
                if self.env.is_main:
                    shutil.rmtree(self.output_dir / CHECKPOINTS_DIR, ignore_errors=True)
            return None
        if cfg.resume is True:
            if existing is None and self.env.is_main:
                print(
                    f"openalbert: no checkpoint in {self.output_dir} yet; starting from scratch",
                    file=sys.stderr,
                )
            return existing
        path = Path(cfg.resume)
        if not (path / TRAINER_STATE).is_file():
            raise FileNotFoundError(f"{path} is not a checkpoint directory (no {TRAINER_STATE})")
        # The run goes on from this step: checkpoints of later steps belong to the history it replaces (kept,
        # they would be pruned before its own new ones, and a later resume would take them for its newest).
        step = _checkpoint_step(path)
        if step < 0:  # (a checkpoint directory renamed: its state says)
            step = int(torch.load(path / TRAINER_STATE, map_location="cpu", weights_only=True)["step"])
        later = [
            p
            for p in list_checkpoints(self.output_dir)
            if _checkpoint_step(p) > step and p.resolve() != path.resolve()
        ]
        if later:
            self.env.barrier()  # every rank has looked before rank 0 deletes
            if self.env.is_main:
                names = ", ".join(p.name for p in later)
                warnings.warn(
                    f"resuming from step {step}: the later checkpoints {names} are removed", stacklevel=3
                )
                for stale in later:
                    shutil.rmtree(stale, ignore_errors=True)
        return path

    def _load_trainer_state(self, directory: Path) -> None:
        try:
            state = torch.load(directory / TRAINER_STATE, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
            raise _damaged(directory, TRAINER_STATE, e) from None
        if bool(state.get("fsdp", False)) != self.fsdp:
            how = "with" if state.get("fsdp") else "without"
            raise ValueError(f"{directory} was written {how} FSDP; resume it the same way")
        saved = state.get("config") or {}
        if saved.get("data_id") and self.config.data_id and saved["data_id"] != self.config.data_id:
            raise ValueError(
                f"{directory} was trained on other data than this run's; resume with the data it was trained "
                "on, or start a new run (a new output directory) to train on this"
            )
        if saved.get("optimizer", self.config.optimizer) != self.config.optimizer:
            raise ValueError(
                f"{directory} was trained with {saved['optimizer']}; resume it with that optimizer "
                f"(--optimizer {saved['optimizer']}), or start a new run to train with {self.config.optimizer}"
            )
        # This run's hyper-parameters, which loading the optimizer's and scheduler's state would put back to
        # the checkpoint's: the peak learning rate (the scheduler's base), weight decay, betas and eps.
        base_lrs = list(self.scheduler.base_lrs)
        hyper = [
            {k: g[k] for k in ("weight_decay", "betas", "eps", "layer_adaptation") if k in g}
            for g in self.optimizer.param_groups
        ]
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            # The saved state is the full (unsharded) one; each rank keeps its own shard of it.
            opts = StateDictOptions(full_state_dict=True)
            set_optimizer_state_dict(self.wrapped, self.optimizer, state["optimizer"], options=opts)
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.step = int(state["step"])
        self.scheduler.base_lrs = base_lrs
        for i, (group, values) in enumerate(zip(self.optimizer.param_groups, hyper)):
            group.update(values)
            group["initial_lr"] = base_lrs[i]
            lr = base_lrs[i] * self.scheduler.lr_lambdas[i](self.scheduler.last_epoch)
            if isinstance(group["lr"], torch.Tensor):  # (a capturable optimizer's lr lives on the device)
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        saved = {"lr_schedule": "linear", "poly_power": 1.0, **saved}  # (checkpoints from before the options)
        schedule = ("max_steps", "num_epochs", "warmup_steps", "learning_rate", "lr_schedule", "poly_power")
        changed = [
            f"{name} {getattr(self.config, name)} instead of {saved[name]}"
            for name in (*schedule, "weight_decay")
            if name in saved and saved[name] != getattr(self.config, name)
        ]
        if changed:  # the schedule is a function of these, not part of the saved state
            warnings.warn(
                f"resuming with {', '.join(changed)}: the learning-rate schedule and weight decay from step "
                f"{self.step} on follow the new values",
                stacklevel=2,
            )
        others = [
            f"{name} {getattr(self.config, name)} instead of {saved[name]}"
            for name in ("grad_accum", "max_grad_norm", "bf16")  # (the sampler warns of another batch size)
            if name in saved and saved[name] != getattr(self.config, name)
        ]
        if others:
            warnings.warn(
                f"resuming with {', '.join(others)}: the steps from {self.step} on train with the new values",
                stacklevel=2,
            )
        if "seed" in saved and saved["seed"] != self.config.seed:
            warnings.warn(
                f"seed {self.config.seed} is not used: a resumed run goes on with the random streams of its "
                f"checkpoint (seed {saved['seed']})",
                stacklevel=2,
            )
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self._saved_window = state.get("window")
        self.best = state.get("best")
        self.evals_without_improvement = int(state.get("evals_without_improvement", 0))
        self.stopped_early = bool(state.get("stopped_early", False))
        every = self.config.eval_every  # (a checkpoint from before evaluated_at was kept: where it was due)
        due = isinstance(every, int) and every and self.step % every == 0
        self.evaluated_at = int(state.get("evaluated_at", self.step if due else -1))
        rngs = state["rng"]
        if len(rngs) == self.env.world_size:
            _set_rng_state(rngs[self.env.rank])
        else:
            warnings.warn(
                "resuming with a different number of processes: random streams restart", stacklevel=2
            )
        if self.env.is_main:  # (a line of its own, with or without the progress bar)
            print(f"openalbert: resumed from {directory} at step {self.step}", file=sys.stderr)

    def _trim_metrics(self) -> None:
        """Drop rows past the resumed step (logged after the last checkpoint of an interrupted run)."""
        path = self.metrics_path
        if not path.exists():
            return
        if self.step == 0:
            path.unlink()
            return
        rows = path.read_text().splitlines()

        # A pause's partial row holds the steps its checkpoint keeps as a window (which a checkpoint from before
        # windows lacks: its row stays).
        restored = self._saved_window is not None

        def keep(row: dict[str, Any]) -> bool:
            step = row.get("step", 0)
            return step < self.step or (step == self.step and not (row.get("partial") and restored))

        kept = []
        for n, line in enumerate(rows):
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                # (a row cut short by a crash mid-write: only the last can be; the checkpoint has its steps)
                if n != len(rows) - 1:
                    raise ValueError(f"{path}, line {n + 1}, is not a JSON row; fix or remove it") from None
                warnings.warn(
                    f"{path}: its last row was cut short (a crash mid-write); it is dropped", stacklevel=3
                )
                continue
            if row is not None and keep(row):
                kept.append(line)
        if len(kept) != len(rows):
            path.write_text("".join(r + "\n" for r in kept))

    # -- checkpointing --------------------------------------------------------------------------------------------

    def _gathered_model(self) -> nn.Module | None:
        """A module holding the full weights on rank 0 (None elsewhere); collective under FSDP."""
        if not self.fsdp:
            return self.model if self.env.is_main else None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(
            self.wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        if not self.env.is_main:
            return None
        self._save_template.load_state_dict(full)
        return self._save_template

    def _optimizer_state(self) -> dict[str, Any]:
        if not self.fsdp:
            state = self.optimizer.state_dict()
            for group in state["param_groups"]:
                # As an eager run saves it, so that a run resumes with or without CUDA graphs (which read
                # the rate from a tensor and make the optimizer capturable), on a GPU or not.
                group["lr"] = float(group["lr"])
                if "capturable" in group:
                    group["capturable"] = False
            return state
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.wrapped, self.optimizer, options=opts)

    def _diverged(self, what: str) -> None:
        last = latest_checkpoint(self.output_dir)
        then = (
            f"resume from its last checkpoint ({last.name}) in {self.output_dir}"
            if last is not None
            else "start again (no checkpoint was written before it)"
        )
        raise TrainingDiverged(
            f"training diverged by step {self.step}: {what}. Nothing was saved from here on; lower the learning "
            f"rate (or look for inf/NaN values in the data) and {then}"
        )

    def _refuse_non_finite_weights(self) -> None:
        """Before anything is written: weights that went inf or NaN between two logged steps are no model."""
        bad = torch.zeros((), device=self.env.device)
        for p in self.params:
            # (under FSDP a parameter is a DTensor: each rank checks its own shard, and the sum tells all)
            local = p.detach().to_local() if hasattr(p, "to_local") else p.detach()
            bad += (~torch.isfinite(local)).any()
        if self.env.distributed:
            dist.all_reduce(bad)
        if bad.item():
            self._diverged("some weights are inf or NaN")

    def save_checkpoint(self) -> Path:
        """Write `checkpoints/step-N` atomically (all ranks must call), then prune to `keep_last`."""
        env = self.env
        self._refuse_non_finite_weights()
        rngs = [None] * env.world_size
        if env.distributed:
            dist.all_gather_object(rngs, _rng_state())
        else:
            rngs = [_rng_state()]
        module = self._gathered_model()
        optim_state = self._optimizer_state()
        window = self._window_state()
        final = self.output_dir / CHECKPOINTS_DIR / f"step-{self.step:08d}"
        if env.is_main:
            state = {
                "version": 1,
                "step": self.step,
                "window": window,
                "optimizer": optim_state,
                "scheduler": self.scheduler.state_dict(),
                "sampler": self.sampler.state_dict(),
                "rng": rngs,
                "elapsed": self.elapsed_before + (time.perf_counter() - self.start_time),
                "best": self.best,
                "evals_without_improvement": self.evals_without_improvement,
                "evaluated_at": self.evaluated_at,
                "stopped_early": self.stopped_early,
                "fsdp": self.fsdp,
                "config": {
                    k: (str(v) if isinstance(v, Path) else v)
                    for k, v in dataclasses.asdict(self.config).items()
                },
            }

            def write(tmp: Path) -> None:
                self.save_model(module, tmp)
                torch.save(state, tmp / TRAINER_STATE)

            write_dir_atomically(final, write)
            for stale in list_checkpoints(self.output_dir)[: -self.config.keep_last]:
                shutil.rmtree(stale, ignore_errors=True)
        env.barrier()
        return final

    def _record_evaluation(self, checkpoint: Path | None) -> None:
        """Note in `checkpoint` (written before the run's last evaluation) that it was evaluated, and what
        that found: resuming the finished run then evaluates it no more."""
        if checkpoint is None or not self.env.is_main or not (checkpoint / TRAINER_STATE).is_file():
            return
        path = checkpoint / TRAINER_STATE
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["evaluated_at"], state["best"] = self.evaluated_at, self.best
        state["evals_without_improvement"] = self.evals_without_improvement
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _save_snapshot(self, directory: Path) -> None:
        """Write model files only (no trainer state) to `directory`, atomically; all ranks call."""
        self._refuse_non_finite_weights()
        module = self._gathered_model()
        if self.env.is_main:
            write_dir_atomically(directory, lambda tmp: self.save_model(module, tmp))
        self.env.barrier()

    def _export_final(self, source: Path) -> None:
        """Copy the final (or best) snapshot's model files to the top of output_dir, beside the metrics."""
        if not self.env.is_main:
            return
        staging = Path(tempfile.mkdtemp(prefix=".tmp-final-", dir=self.output_dir))
        try:
            for f in source.iterdir():
                if f.is_file() and f.name != TRAINER_STATE:
                    shutil.copy2(f, staging / f.name)
            _fsync_tree(staging)
            for f in staging.iterdir():
                os.replace(f, self.output_dir / f.name)
            _fsync_dir(self.output_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -- evaluation ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss and pooled `.metrics` over the eval dataset, prefixed `eval_` (collective)."""
        if self.custom_evaluate is not None:
            return self.custom_evaluate(self.model)
        env, cfg, ds = self.env, self.config, self.eval_dataset
        # Every rank runs the same number of forwards (FSDP needs it): a rank with one example fewer runs the
        # first example again in its place and counts nothing of that forward (its last batch lacks it, or is it).
        per_rank = math.ceil(len(ds) / env.world_size)
        positions = range(env.rank, per_rank * env.world_size, env.world_size)
        bs = cfg.eval_batch_size or cfg.batch_size
        # fully_shard works in place, so self.model is the FSDP module; DDP's wrapper is not needed here.
        module = self.model
        module.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
        counted = 0
        sums: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(positions), bs):
            idx = [p for p in positions[start : start + bs] if p < len(ds)]
            batch = self._to_device(_fetch(ds, idx or [0], self.collate_fn))
            with self._autocast():
                out = module(**batch)
            loss_sum += out.loss.detach().double() * len(idx)
            counted += len(idx)
            self._accumulate(sums, out, weight=1.0 if idx else 0.0)  # (every rank: the same metric names)
        module.train()
        names = list(sums)
        vec = torch.stack(
            [loss_sum, torch.tensor(float(counted), dtype=torch.float64, device=env.device)]
            + [t for n in names for t in sums[n]]
        )
        if env.distributed:
            dist.all_reduce(vec)
        values = vec.tolist()
        result = {"eval_loss": values[0] / values[1]}
        for i, name in enumerate(names):
            num, den = values[2 + 2 * i], values[3 + 2 * i]
            result[f"eval_{name}"] = num / den if den else float("nan")
        return result

    # -- the step ------------------------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=torch.bfloat16)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.env.device.type == "cpu":
            return batch
        return {k: v.to(self.env.device, non_blocking=True) for k, v in batch.items()}

    @staticmethod
    def _accumulate(sums: dict[str, list[torch.Tensor]], out: Any, weight: float = 1.0) -> None:
        for name, (num, den) in (getattr(out, "metrics", None) or {}).items():
            num, den = num.detach().double() * weight, torch.as_tensor(den).detach().double() * weight
            if name in sums:
                sums[name][0] += num
                sums[name][1] += den
            else:
                sums[name] = [num.clone(), den.clone()]

    def _micro_context(self, last: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
        if not self.env.distributed or last:
            if self.fsdp:
                self.wrapped.set_requires_gradient_sync(True)
            return contextlib.nullcontext()
        if self.fsdp:
            self.wrapped.set_requires_gradient_sync(False)
            return contextlib.nullcontext()
        return self.wrapped.no_sync()

    def _next_batch(self, window: dict[str, Any]) -> dict[str, torch.Tensor]:
        batch = self._to_device(_fetch(self.train_dataset, self.sampler.next_batch(), self.collate_fn))
        mask = batch.get("attention_mask")
        window["tokens"] += mask.sum() if mask is not None else next(iter(batch.values())).numel()
        window["micro"] += 1
        return batch

    def _train_step(self, window: dict[str, Any]) -> None:
        cfg = self.config
        if self.graphed is not None:
            # Forward, backward, clipping and the optimizer step in one replay; its loss, metrics and
            # gradient norm are the graph's own tensors, added here before the next replay overwrites them.
            window["loss"] += self.graphed(**self._next_batch(window)).double()
            self._accumulate(window["sums"], self.graphed.last_output)
            norm = self.graphed.last_grad_norm
        else:
            for micro in range(cfg.grad_accum):
                batch = self._next_batch(window)
                with self._micro_context(micro == cfg.grad_accum - 1):
                    with self._autocast():
                        out = self.wrapped(**batch)
                    loss = out.loss
                    (loss / cfg.grad_accum).backward()
                window["loss"] += loss.detach().double()
                self._accumulate(window["sums"], out)
            if cfg.max_grad_norm:
                norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
            if hasattr(norm, "full_tensor"):
                norm = norm.full_tensor()  # FSDP: a DTensor
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        window["grad_norm"] += norm.detach().double()
        window["steps"] += 1
        self.scheduler.step()
        self.step += 1

    def _new_window(self) -> dict[str, Any]:
        zero = torch.zeros((), dtype=torch.float64, device=self.env.device)
        return {
            "loss": zero.clone(),
            "grad_norm": zero.clone(),
            "tokens": zero.clone(),
            "micro": 0,
            "steps": 0,
            "sums": {},
            "t0": time.perf_counter(),
        }

    def _window_values(self, window: dict[str, Any]) -> tuple[list[str], list[float]]:
        """A window's sums over the ranks (one collective, one host transfer): its metrics' names, and the
        loss, grad norm and token sums followed by each metric's numerator and denominator."""
        names = list(window["sums"])
        vec = torch.stack(
            [window["loss"], window["grad_norm"], window["tokens"]]
            + [t for n in names for t in window["sums"][n]]
        )
        if self.env.distributed:
            dist.all_reduce(vec)
        return names, vec.tolist()

    def _window_state(self) -> dict[str, Any] | None:
        """The steps logged in no row yet, summed over the ranks (all must call), for a checkpoint: a run
        resumed from it logs them in the row they belong to, as the uninterrupted run does."""
        window = self.__dict__.get("window")
        if window is None or not window["steps"]:
            return None
        names, values = self._window_values(window)
        return {
            "values": values,
            "names": names,
            "micro": window["micro"],
            "steps": window["steps"],
            "seconds": time.perf_counter() - window["t0"],
        }

    def _restored_window(self, saved: dict[str, Any] | None) -> dict[str, Any]:
        """A window holding a checkpoint's unlogged steps (`_window_state`): on the first rank, as the sums of
        all; zeros on the others, so that the next row's sum over the ranks counts them once."""
        window = self._new_window()
        if not saved:
            return window
        keep = self.env.is_main
        values = [v if keep else 0.0 for v in saved["values"]]
        as_tensor = functools.partial(torch.tensor, dtype=torch.float64, device=self.env.device)
        window["loss"], window["grad_norm"], window["tokens"] = (as_tensor(v) for v in values[:3])
        window["sums"] = {
            name: [as_tensor(values[3 + 2 * i]), as_tensor(values[4 + 2 * i])]
            for i, name in enumerate(saved["names"])
        }
        window["micro"], window["steps"] = saved["micro"], saved["steps"]
        window["t0"] -= saved["seconds"]
        return window

    def _log_row(self, window: dict[str, Any], lr: float | torch.Tensor) -> dict[str, Any]:
        """Reduce the window over ranks with one collective and one host transfer; return the JSONL row."""
        env = self.env
        names, values = self._window_values(window)
        now = time.perf_counter()
        micro = window["micro"] * env.world_size
        row: dict[str, Any] = {
            "step": self.step,
            "epoch": round(self.sampler.epoch_progress, 4),
            "loss": values[0] / micro,
        }
        for i, name in enumerate(names):
            den = values[4 + 2 * i]
            row[name] = values[3 + 2 * i] / den if den else float("nan")
        if not math.isfinite(row["loss"]):
            self._diverged(f"the training loss is {row['loss']}")
        row["lr"] = float(lr)  # (a tensor where CUDA graphs read it)
        row["grad_norm"] = values[1] / env.world_size / window["steps"]
        row["tokens_per_s"] = values[2] / max(now - window["t0"], 1e-9)
        row["elapsed"] = round(self.elapsed_before + now - self.start_time, 3)
        return row

    def _append_metrics(self, row: dict[str, Any]) -> None:
        if self.env.is_main:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.on_log is not None:
            self.on_log(row)

    def _should_stop(self, flag: _StopOnSignal, logged: bool) -> bool:
        if not self.env.distributed:
            return flag.signum is not None
        if not logged:
            return False  # ranks agree only on logged steps: one host sync per logged step, as for metrics
        # Every rank must stop after the same step or the next collective hangs: agree on the flag.
        t = torch.tensor([flag.signum or 0], dtype=torch.int64, device=self.env.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if t.item() and flag.signum is None:
            flag.signum = int(t.item())
        return bool(t.item())

    def _due(self, every: int | str) -> bool:
        """Whether a periodic action (`every` steps, or "epoch") falls on this step."""
        if every == "epoch":
            return self.epoch_ended
        return bool(every) and self.step % every == 0

    def _maybe_evaluate(self, force: bool = False) -> bool:
        """Evaluate when due; track the best snapshot; return True when early stopping triggers."""
        cfg = self.config
        has_eval = self.eval_dataset is not None or self.custom_evaluate is not None
        if not has_eval or not (self._due(cfg.eval_every) or force):
            return False
        self.evaluated_at = self.step
        metrics = self.evaluate()
        self.last_eval = metrics
        self._append_metrics({"step": self.step, **metrics})
        if cfg.best_metric is None:
            self._report(metrics, improved=False)
            return False
        if cfg.best_metric not in metrics:
            raise ValueError(
                f"best_metric {cfg.best_metric!r} is not among the evaluation metrics {sorted(metrics)}"
            )
        value = metrics[cfg.best_metric]
        # A NaN score (a model that predicts NaN) is never the best.
        improved = math.isfinite(value) and (
            self.best is None or (value > self.best if cfg.greater_is_better else value < self.best)
        )
        self._report(metrics, improved)
        if improved:
            self.best = value
            self.evals_without_improvement = 0
            self._save_snapshot(self.output_dir / BEST_DIR)
        else:
            self.evals_without_improvement += 1
        return (
            cfg.early_stopping_patience is not None
            and self.evals_without_improvement >= cfg.early_stopping_patience
        )

    def _report(self, metrics: dict[str, Any], improved: bool) -> None:
        """One line on stderr per evaluation (above the progress bar, if any): its numbers (metrics.jsonl has
        them all)."""
        if not self.env.is_main:
            return
        from tqdm.auto import tqdm

        numbers = "  ".join(
            f"{k} {v:.4f}"
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        tqdm.write(f"step {self.step}  {numbers}{'  (best so far)' if improved else ''}", file=sys.stderr)

    def run(self) -> TrainResult:
        """Train to `max_steps` (or a signal, or early stopping); see the module docstring for outputs."""
        self.env = DistEnv()  # replaced first thing in _setup; the finally below needs it to exist
        try:
            self._setup()
            result = self._run()
            if self.env.created_group:
                # Leave together: a gloo process that tears down its group while its peer is still
                # connected can make the peer abort ("terminate called without an active exception").
                self.env.barrier()
            return result
        finally:
            if self.env.created_group:
                dist.destroy_process_group()

    def _run(self) -> TrainResult:
        cfg, env = self.config, self.env
        from tqdm.auto import tqdm

        self.start_time = time.perf_counter()
        self.last_eval: dict[str, float] = {}
        # (a resumed run that already reached its last step trains nothing and exports its checkpoint again)
        result = TrainResult(step=self.step, output_dir=self.output_dir, last_checkpoint=self.resumed_from)
        if self.resumed_from is not None and self.step == self.max_steps and env.is_main:
            print(f"openalbert: the run finished at step {self.step}; nothing left to train", file=sys.stderr)
        if self.stopped_early and env.is_main:
            print(
                f"openalbert: the run stopped early at step {self.step} ({self.evals_without_improvement} "
                "evaluations without improvement); nothing left to train",
                file=sys.stderr,
            )
        bar = tqdm(
            total=self.max_steps,
            initial=self.step,
            desc="train",
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not (cfg.progress and env.is_main),
        )
        self.wrapped.train()
        # (a resumed run picks up the steps its checkpoint took after the last row, to log them in theirs)
        self.window = window = self._restored_window(self._saved_window)
        last_row: dict[str, Any] = {}
        saved_at = self.step if self.step else -1  # a resumed run starts from a saved checkpoint
        limit = self.max_steps if cfg.stop_after is None else min(cfg.stop_after, self.max_steps)
        if self.stopped_early:
            limit, result.early_stopped = self.step, True
        with _StopOnSignal(enabled=True, verbose=env.is_main) as flag, bar:
            while self.step < limit:
                before = self.sampler.epoch_progress
                self._train_step(window)
                # whether this step took the last batch of an epoch (for eval_every / save_every "epoch")
                self.epoch_ended = math.floor(self.sampler.epoch_progress) > math.floor(before)
                bar.update(1)
                logged = self.step % cfg.log_every == 0 or self.step == self.max_steps
                if logged:
                    last_row = self._log_row(window, self.scheduler.get_last_lr()[0])
                    self._append_metrics(last_row)
                    bar.set_postfix(loss=f"{last_row['loss']:.4f}", lr=f"{last_row['lr']:.2e}", refresh=False)
                    self.window = window = self._new_window()
                stop_early = self._maybe_evaluate()
                self.stopped_early = stop_early  # (the checkpoint of this step records it)
                if self._due(cfg.save_every):
                    result.last_checkpoint = self.save_checkpoint()
                    saved_at = self.step
                if self._should_stop(flag, logged):
                    result.interrupted, result.signal = True, flag.signum
                    break
                if stop_early:
                    result.early_stopped = True
                    break
        if self.step < self.max_steps and not result.early_stopped:
            result.interrupted = True  # by a signal or by stop_after: resumable, no final export
        if window["steps"]:
            # Steps since the last row (a pause, a signal or early stopping between rows): log them too. A
            # pause's row is marked partial: its checkpoint keeps the steps, and a resumed run drops the row
            # and logs them in the row they belong to.
            last_row = self._log_row(window, self.scheduler.get_last_lr()[0])
            if result.interrupted:
                last_row["partial"] = True
            self._append_metrics(last_row)
        finished = not result.interrupted and not result.early_stopped
        if saved_at != self.step:  # before the last evaluation: one that fails then loses no training
            result.last_checkpoint = self.save_checkpoint()
        if (
            finished
            and (self.eval_dataset is not None or self.custom_evaluate is not None)
            and self.evaluated_at != self.step
        ):
            self._maybe_evaluate(force=True)
            self._record_evaluation(result.last_checkpoint)
        if not result.interrupted:
            best_dir = self.output_dir / BEST_DIR
            source = best_dir if cfg.best_metric and best_dir.is_dir() else result.last_checkpoint
            self._export_final(source)
        env.barrier()
        if env.is_main and cfg.plot:
            plot_curves(self.metrics_path, self.output_dir / CURVES_FILE)
        result.step = self.step
        result.last_loss = last_row.get("loss")
        result.best_metric = self.best
        result.metrics = {**last_row, **self.last_eval}
        return result


def train(
    model: nn.Module,
    train_dataset: Any,
    config: TrainConfig,
    *,
    eval_dataset: Any | None = None,
    collate_fn: Callable[[Sequence[Any]], dict[str, torch.Tensor]] = default_collate,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    save_model: SaveFn = save_module,
    load_model: SaveFn = load_module,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train `model` (forward(**batch) -> object with `.loss`) on a map-style dataset; see the module docstring.

    `save_model(module, dir)` / `load_model(module, dir)` write and read a snapshot's model files (default:
    `save_pretrained` / `model.safetensors`); `evaluate(module) -> metrics` replaces the default eval loss
    and runs on every rank; `on_log(row)` sees every metrics row on every rank. On SIGINT/SIGTERM the
    run finishes its step, saves a checkpoint and returns with `interrupted=True` (`exit_code` 130/143).
    """
    trainer = Trainer(
        model,
        train_dataset,
        config,
        eval_dataset=eval_dataset,
        collate_fn=collate_fn,
        evaluate=evaluate,
        save_model=save_model,
        load_model=load_model,
        on_log=on_log,
    )
    return trainer.run()


# ---- curves ------------------------------------------------------------------------------------------------------


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Plot the metrics.jsonl columns (losses, accuracies, learning rate, throughput) against step into a PNG."""
    metrics_path, png_path = Path(metrics_path), Path(png_path)
    if not metrics_path.is_file():
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn(
            "matplotlib is not installed (pip install openalbert[train]): no curves.png", stacklevel=2
        )
        return None
    rows = read_metrics(metrics_path)
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key in ("step", "epoch", "elapsed") or not isinstance(value, (int, float)):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(row["step"])
            ys.append(value)
    panels = {
        "loss": [k for k in series if k.endswith("loss")],
        "accuracy / metric": [k for k in series if k.startswith("eval_") and not k.endswith("loss")]
        + [k for k in series if k.endswith("accuracy") and not k.startswith("eval_")],
        "learning rate": [k for k in series if k == "lr"],
        "gradient norm": [k for k in series if k == "grad_norm"],
        "tokens / s": [k for k in series if k == "tokens_per_s"],
    }
    panels = {title: keys for title, keys in panels.items() if keys}
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels.items()):
        for key in dict.fromkeys(keys):
            xs, ys = series[key]
            if key.startswith("eval_"):
                ax.plot(xs, ys, "o-", label=key, linewidth=1, markersize=3)
                continue
            width = len(ys) // 50 if key != "lr" else 1
            if width < 2:
                ax.plot(xs, ys, "-", label=key, linewidth=1)
                continue
            # Per-step values are noisy: draw them faintly under a moving average.
            (line,) = ax.plot(xs, ys, "-", linewidth=0.5, alpha=0.3)
            smooth = np.convolve(ys, np.ones(width) / width, mode="valid")
            ax.plot(xs[width - 1 :], smooth, "-", color=line.get_color(), label=f"{key} (mean of {width})")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[-1, 0].set_xlabel("optimizer step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
