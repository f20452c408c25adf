"""Inference and training speed: openalbert against transformers 4.57.1 and ONNX Runtime, in one run.

Every system loads the same checkpoint: an albert-base-v2 architecture (or --preset) with random weights,
made once by transformers (seed 0) and cached in --model-dir. Workloads:

- batch-1 latency at 16, 128 and 512 tokens (ms per call);
- a fixed-shape batch, 8 x 128 (ms per batch);
- variable lengths: 256 log-normal lengths (median 50, clipped to 8..128, seed 0) fed in arrival order in
  batches of 32, each padded to its longest sequence; the same padded tensors go to every system; the
  metric is useful (non-padding) tokens per second;
- a masked-LM training step, 8 x 128 with 15% of positions labelled: forward, backward, AdamW step, in
  fp32 and under bf16 autocast (ms per step). Every system steps with PyTorch's fused AdamW, the
  optimizer transformers 4.57.1's Trainer takes by default with torch >= 2.8 (and openalbert's trainers).

Systems alternate within each workload (the order rotates every round) and each number is the median of
the timed rounds with p10/p90, after warm-up: --repeats rounds, fewer where the slowest system's pass
would overrun --budget seconds (never fewer than --min-repeats). Every number has an accuracy gate:
last_hidden_state against transformers fp32 on the non-padding positions (max abs difference, mean
cosine); for the bf16 and int8 paths also fill-mask top-1 agreement with the same model in fp32, measured
on the embedded default model (trained; the random benchmark weights have nothing to agree on) over
128-token windows of real text.
--floor adds the CPU's measured GEMM throughput and the compute floor it implies for batch 1 x 128.

--device cuda runs the same harness on a GPU: models and batches are moved there once (untimed), every
timer waits for the GPU (torch.cuda.synchronize) at start and stop, fp32 is real fp32 (TF32 off), the
CPU-only rows (ONNX Runtime, int8) are skipped with a note, fp16 rows join the bf16 ones, the variable
workload has 1024 sequences, and the training step also runs at 64 x 128, with whole steps replayed from
CUDA graphs as rows of their own (openalbert.fast.cuda_graph_train_step). Every timed row then gets
useful tokens/s, the model TFLOP/s they imply (albert_flops, training_flops) and its model FLOPs
utilisation (MFU): against the GEMM peak measured on the GPU for the row's precision, and against the
datasheet's dense peak where the GPU is one the harness knows (mfu_vs_spec).

    python benchmarks/bench_speed.py --floor --output benchmarks/speed_results.json   # albert-base-v2
    python benchmarks/bench_speed.py --tiny --quick --threads 1                        # smoke run, seconds
    python benchmarks/bench_speed.py --device cuda --quick --repeats 10 --budget 10 --floor \
        --output benchmarks/speed_results_cuda.json                                    # GPU, 1-2 minutes

The JSON holds the machine, the settings, every system's status, the workloads, every measurement (with
its gate and its speed relative to transformers fp32), the ratios, the gates, the training results and
the floor; stdout gets the same as Markdown tables. Progress goes to stderr.

Variants are rows of INFERENCE_VARIANTS, FILL_MASK_VARIANTS and TRAIN_VARIANTS: adding one is one line.
A variant whose code does not exist yet (openalbert.fast, its ONNX export) is skipped with a note.
On a CPU without bf16 arithmetic (no AVX512_BF16 or AMX) the bf16 rows are skipped with a note, since
PyTorch emulates bf16 there, unless --systems names bf16.
"""

from __future__ import annotations

import argparse
import functools
import gc
import glob
import importlib
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import copy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import openalbert
from openalbert import cpu_kernels, packed_attention
from openalbert.pretraining.evaluate import masked_windows
from openalbert.pretraining.run import PretrainingObjective

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = REPO / "work_data" / "corpora" / "heldout" / "*.txt"
CACHE = Path("~/.cache/openalbert-bench").expanduser()
REFERENCE = "transformers fp32"
MASK_ID = 4  # [MASK] in ALBERT's vocabulary; the training benchmark's labelled positions carry it

# A tiny model for the smoke test: every code path, milliseconds per call.
TINY = dict(
    vocab_size=1000,
    embedding_size=32,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=512,
)
# The fields that define the architecture; a cached checkpoint must match them.
ARCH_FIELDS = (
    "vocab_size",
    "embedding_size",
    "hidden_size",
    "num_hidden_layers",
    "num_hidden_groups",
    "num_attention_heads",
    "intermediate_size",
    "inner_group_num",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
)

# Pass marks for the gates. They are the harness's choice (the issue asks for the numbers, not for
# limits): fp32 paths must agree to float rounding, bf16 and int8 within what those formats allow.
HIDDEN_GATES = {
    "fp32": {"max_abs_diff": 1e-3, "min_cosine": 0.99999},
    "bf16": {"min_cosine": 0.99},
    "fp16": {"min_cosine": 0.99},  # 3 more mantissa bits than bf16: the bf16 mark holds with room
    "int8": {"min_cosine": 0.95},
}
FILL_MASK_GATES = {"fp32": 0.995, "bf16": 0.95, "fp16": 0.95, "int8": 0.90}
TRAIN_GATES = {
    "fp32": {"max_loss_diff": 1e-3, "min_grad_cosine": 0.9999},
    "bf16 autocast": {"min_grad_cosine": 0.99},
}


# Rows for one device. ONNX Runtime runs its CPU execution provider here and int8 dynamic quantisation has
# CPU kernels only: on CUDA those rows are listed as skipped, with this reason. fp16 has no fast CPU GEMMs,
# so its rows exist on CUDA only and the CPU tables (and their JSON) stay as they were.
CPU_ONLY = {
    "openalbert int8": "int8 dynamic quantisation (openalbert.fast.quantize) has CPU kernels only",
    "openalbert int8 fallback": "int8 dynamic quantisation (openalbert.fast.quantize) has CPU kernels only",
    "onnxruntime fp32": "ONNX Runtime runs its CPU execution provider in this harness",
    "onnxruntime int8": "ONNX Runtime runs its CPU execution provider in this harness",
}
# Rows timed on the variable-length workload only, with the reason.
VARIABLE_ONLY = {
    "openalbert int8 fallback": "reruns a share of each batch's sequences, which a batch of 1 or 8 cannot "
    "show: timed on the variable-length workload only",
}
CUDA_ONLY = (
    "transformers fp16",
    "openalbert fp16",
    "openalbert bf16 unpadded",
    "openalbert fp16 unpadded",
    "openalbert bf16 graphs",
    "openalbert fp16 graphs",
    "openalbert fp32 graphs",
    "openalbert bf16 autocast graphs",
)

# Datasheet dense peaks (no sparsity), TFLOP/s, of the SXM H100 and H200 (one chip; the H200 has more and
# faster memory): bf16 and fp16 on the tensor cores, fp32 on the CUDA cores (the fp32 rows run with TF32
# off). PCIe and NVL boards run lower clocks and power, so they get no spec denominator.
SPEC_PEAK_TFLOPS = {"H100/H200 SXM": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}}
CUDA_GEMM_SHAPE = (8192, 8192, 8192)  # large enough that every precision runs at its peak
CPU = torch.device("cpu")


class Unavailable(Exception):
    """A variant whose code is not there yet (or whose optional dependency is missing): skipped, noted."""


# ---- machine -----------------------------------------------------------------------------------------------

# AMD cores by CPUID family and model range: (family, first model, last model) -> (core, vector datapath).
# Zen 4 runs each 512-bit instruction as two 256-bit halves, so its bf16 and int8 dot products do half the
# work per cycle of Zen 5's; a VM's "model name" often hides which one it is (here: "AMD EPYC").
AMD_CORES = {
    (0x19, 0x00, 0x0F): ("Zen 3", 256),
    (0x19, 0x10, 0x1F): ("Zen 4", 256),
    (0x19, 0x20, 0x5F): ("Zen 3", 256),
    (0x19, 0x60, 0x7F): ("Zen 4", 256),
    (0x19, 0xA0, 0xAF): ("Zen 4c", 256),
    (0x1A, 0x00, 0x4F): ("Zen 5", 512),
    (0x1A, 0x60, 0x7F): ("Zen 5", 512),
}


def amd_core(family: int, model: int) -> tuple[str, int] | None:
    """(core, vector datapath bits) of an AMD CPU, or None where the table does not know it."""
    for (fam, first, last), core in AMD_CORES.items():
        if fam == family and first <= model <= last:
            return core
    return None


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model, cores, the instruction-set flags that decide bf16/int8 speed, and library versions; on a
    CUDA device also the GPU (gpu_info)."""
    cpu, flags, cores = platform.processor() or platform.machine(), set(), set()
    processors, ident = 0, {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        physical = core = None
        for line in cpuinfo.read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor":
                processors += 1
            elif key == "model name":
                cpu = value
            elif key in ("vendor_id", "cpu family", "model") and key not in ident:
                ident[key] = value
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key == "physical id":
                physical = value
            elif key == "core id":
                core = value
                cores.add((physical, core))
    info: dict[str, Any] = {
        "cpu": cpu,
        "logical_cpus": processors or os.cpu_count(),
        "physical_cores": len(cores) or None,
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "flags": {
            f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
        },
        "cpu_family": int(ident["cpu family"]) if "cpu family" in ident else None,
        "cpu_model_number": int(ident["model"]) if "model" in ident else None,
        "core": None,
        "vector_datapath_bits": None,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "openalbert_cpu_attention": packed_attention.status(),  # where the kernel was built, or why not
        "openalbert_cpu_linear": cpu_kernels.linear_status(),  # the AVX2 GEMM kernel, likewise
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "openalbert": openalbert.__version__,
    }
    if ident.get("vendor_id") == "AuthenticAMD" and info["cpu_family"] is not None:
        core = amd_core(info["cpu_family"], info["cpu_model_number"] or 0)
        if core is not None:
            info["core"], info["vector_datapath_bits"] = core
    for name in ("transformers", "onnxruntime", "onnx"):
        try:
            info[name] = importlib.import_module(name).__version__
        except ImportError:
            info[name] = None
    if device is not None and device.type == "cuda":
        info["gpu"] = gpu_info(device)
    return info


def gpu_info(device: torch.device) -> dict[str, Any]:
    """The GPU's name, memory and compute capability, the CUDA torch was built with, and from nvidia-smi
    (where present) the driver, the power limit and the top clocks."""
    props = torch.cuda.get_device_properties(device)
    info: dict[str, Any] = {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "l2_cache_mib": round(getattr(props, "L2_cache_size", 0) / 2**20, 1) or None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "torch": torch.__version__,
        "driver": None,
    }
    smi = shutil.which("nvidia-smi")
    if smi is None:
        info["nvidia_smi"] = "not found"
        return info
    fields = ("name", "driver_version", "power.limit", "clocks.max.sm", "clocks.max.memory")
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        info["nvidia_smi"] = f"failed: {e}"
        return info
    rows = [[v.strip() for v in line.split(",")] for line in out.strip().splitlines()]
    rows = [r for r in rows if len(r) == len(fields)]
    # The GPU torch uses is the one of that name (indices can differ under CUDA_VISIBLE_DEVICES).
    row = next((r for r in rows if r[0] == props.name), rows[0] if rows else None)
    if row is None:
        info["nvidia_smi"] = f"unreadable: {out!r}"
        return info
    info.update(driver=row[1], power_limit=row[2], max_sm_clock=row[3], max_memory_clock=row[4])
    return info


def spec_peak(gpu_name: str) -> tuple[str, dict[str, float]] | None:
    """The datasheet's dense peak TFLOP/s per precision for a GPU the harness knows, by its name."""
    if any(board in gpu_name for board in ("PCIe", "NVL")):
        return None
    if "H100" in gpu_name or "H200" in gpu_name:
        return "H100/H200 SXM", SPEC_PEAK_TFLOPS["H100/H200 SXM"]
    return None


# ---- the model and the FLOP count --------------------------------------------------------------------------


def bench_config(preset: str, tiny: bool) -> openalbert.AlbertConfig:
    """The architecture under test: a named preset, or the smoke test's tiny model."""
    return openalbert.AlbertConfig(**TINY) if tiny else openalbert.AlbertConfig.from_preset(preset)


def ensure_model(directory: Path, config: openalbert.AlbertConfig) -> Path:
    """Make the random-weight checkpoint with transformers (seed 0) unless `directory` already holds it."""
    if (directory / "config.json").is_file():
        cached = openalbert.AlbertConfig.from_pretrained(directory)
        differ = {
            f: (getattr(cached, f), getattr(config, f))
            for f in ARCH_FIELDS
            if getattr(cached, f) != getattr(config, f)
        }
        if differ:
            raise SystemExit(
                f"{directory} holds another architecture (cached vs asked: {differ}); "
                "delete it or pass another --model-dir"
            )
        return directory
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.AlbertConfig(**{f: getattr(config, f) for f in ARCH_FIELDS})
    # The pretraining model holds the pooler as well as the MLM head, so both AlbertModel and
    # AlbertForMaskedLM load every weight from it and all systems run identical weights.
    model = transformers.AlbertForPreTraining(hf_config)
    model.save_pretrained(directory)
    return directory


def albert_flops(config: openalbert.AlbertConfig, batch: int, seq_len: int) -> dict[str, int]:
    """Matmul FLOPs (2 per multiply-add) of one AlbertModel forward, by part.

    Counted: the E -> H embedding projection; per layer the Q, K, V and output projections, the attention
    scores (Q K^T) and context (P V), and the two feed-forward matmuls; the pooler on [CLS]. A layer runs
    num_hidden_layers * inner_group_num times (weights are shared, work is not). Not counted: embedding
    lookups, biases, LayerNorm, softmax and GELU (a few percent at most).
    """
    tokens = batch * seq_len
    E, H, I = config.embedding_size, config.hidden_size, config.intermediate_size  # noqa: E741
    layers = config.num_hidden_layers * config.inner_group_num
    parts = {
        "embedding_projection": 2 * tokens * E * H,
        "qkv_projections": layers * 3 * 2 * tokens * H * H,
        "attention_scores": layers * 2 * batch * seq_len * seq_len * H,  # all heads: nh * T * T * hd
        "attention_context": layers * 2 * batch * seq_len * seq_len * H,
        "attention_output": layers * 2 * tokens * H * H,
        "feed_forward": layers * 2 * (2 * tokens * H * I),
        "pooler": 2 * batch * H * H,
    }
    parts["total"] = sum(parts.values())
    return parts


def training_flops(config: openalbert.AlbertConfig, batch: int, seq_len: int) -> int:
    """Matmul FLOPs of one masked-LM training step: the forward (AlbertModel and the MLM head's dense and
    decoder at every position, as AlbertForMaskedLM returns full logits) and a backward of twice that
    (gradients for the inputs and for the weights of every matmul)."""
    tokens = batch * seq_len
    E, H, V = config.embedding_size, config.hidden_size, config.vocab_size
    forward = albert_flops(config, batch, seq_len)["total"] + 2 * tokens * (H * E + E * V)
    return 3 * forward


def useful_flops(config: openalbert.AlbertConfig, lengths: list[int]) -> int:
    """Forward FLOPs of sequences of `lengths` without their padding: each counted at its own length."""
    return sum(albert_flops(config, 1, n)["total"] for n in lengths)


def mfu(flops: float, seconds: float, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation: the model's FLOPs done per second, as a fraction of a peak FLOP/s."""
    return flops / seconds / peak_flops_per_s


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gemm_floor(
    config: openalbert.AlbertConfig,
    shape: tuple[int, int, int],
    repeats: int,
    device: torch.device | str = "cpu",
    precisions: tuple[str, ...] = ("fp32", "bf16"),
) -> dict[str, Any]:
    """Best-of-N GEMM throughput per precision on `device`, and the compute floors it implies for batch
    1 x 128 inference and for the 8 x 128 masked-LM training step. On a GPU this is the measured peak
    that MFU divides by."""
    m, k, n = shape
    flops = albert_flops(config, 1, 128)
    train = training_flops(config, 8, 128)
    out: dict[str, Any] = {
        "gemm_shape": f"{m}x{k} @ {k}x{n}",
        "repeats": repeats,
        "model_flops_1x128": flops,
        "training_flops_8x128": train,
    }
    for precision in precisions:
        dtype = DTYPES[precision]
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        a @ b  # first call picks and prepares the kernel
        best = min(_seconds(lambda a=a, b=b: a @ b) for _ in range(repeats))
        gflops = 2 * m * k * n / best / 1e9
        out[precision] = {
            "gemm_gflops": gflops,
            "floor_ms_1x128": flops["total"] / (gflops * 1e9) * 1e3,
            "floor_ms_train_8x128": train / (gflops * 1e9) * 1e3,
        }
    return out


def _sync() -> None:
    """Wait for the GPU's queued work, so that a timer brackets it (kernels launch asynchronously); a run
    that never touched CUDA has nothing to wait for."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _seconds(fn: Callable[[], object]) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


# ---- inputs ------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """One padded batch, as torch tensors and as the int64 arrays ONNX Runtime takes (made once, untimed)."""

    tensors: dict[str, torch.Tensor]
    arrays: dict[str, np.ndarray] = field(init=False)
    mask: torch.Tensor = field(init=False)  # (B, T) bool, the real tokens
    useful_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.arrays = {k: v.numpy().astype(np.int64) for k, v in self.tensors.items()}
        self.mask = self.tensors["attention_mask"].bool()
        self.useful_tokens = int(self.mask.sum())

    def to(self, device: torch.device) -> Batch:
        """This batch with its torch tensors on `device`; the arrays (ONNX Runtime's) and the mask (the
        gates') stay on the CPU."""
        if device.type == "cpu":
            return self
        moved = copy(self)
        moved.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return moved

    @property
    def lengths(self) -> list[int]:
        """Each sequence's real tokens."""
        return self.mask.sum(dim=1).tolist()


def make_batch(lengths: list[int], vocab_size: int, gen: torch.Generator) -> Batch:
    """Random ids (no special ids) for sequences of `lengths`, padded to the longest with id 0 and mask 0."""
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, vocab_size, (n,), generator=gen)
        mask[row, :n] = 1
    return Batch({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})


def lognormal_lengths(n: int, median: float, lo: int, hi: int, sigma: float, seed: int) -> list[int]:
    """`n` sequence lengths from a log-normal with the given median, rounded and clipped to [lo, hi]."""
    draws = np.random.default_rng(seed).lognormal(math.log(median), sigma, n)
    return [int(x) for x in np.clip(np.round(draws), lo, hi)]


@dataclass
class Workload:
    name: str
    batches: list[Batch]
    unit: str  # "ms" per unit of work, or "tokens/s"
    description: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return self.unit.endswith("/s")

    @property
    def useful_tokens(self) -> int:
        return sum(b.useful_tokens for b in self.batches)

    def value(self, seconds: float) -> float:
        """A timed pass over all batches, in this workload's unit."""
        if self.unit == "tokens/s":
            return self.useful_tokens / seconds
        return seconds * 1e3


def inference_workloads(vocab_size: int, n_variable: int, seed: int) -> list[Workload]:
    gen = torch.Generator().manual_seed(seed)
    out = [
        Workload(
            f"b1x{t}", [make_batch([t], vocab_size, gen)], "ms", f"batch 1 x {t} tokens, latency per call"
        )
        for t in (16, 128, 512)
    ]
    out.append(Workload("b8x128", [make_batch([128] * 8, vocab_size, gen)], "ms", "batch 8 x 128, per batch"))
    lengths = lognormal_lengths(n_variable, median=50, lo=8, hi=128, sigma=0.5, seed=seed)
    batches = [make_batch(lengths[i : i + 32], vocab_size, gen) for i in range(0, len(lengths), 32)]
    useful = sum(lengths)
    padded = sum(b.mask.numel() for b in batches)
    out.append(
        Workload(
            f"var{n_variable}",
            batches,
            "tokens/s",
            f"{n_variable} log-normal lengths (median 50, 8..128) in arrival order, batches of 32 padded "
            "to their longest; useful tokens per second",
            {
                "sequences": n_variable,
                "batch_size": 32,
                "lognormal": {"median": 50, "sigma": 0.5, "min": 8, "max": 128, "seed": seed},
                "useful_tokens": useful,
                "padded_tokens": padded,
                "padding_fraction": 1 - useful / padded,
                "length_stats": {
                    "min": min(lengths),
                    "median": float(np.median(lengths)),
                    "mean": float(np.mean(lengths)),
                    "max": max(lengths),
                },
                "lengths": lengths,
            },
        )
    )
    return out


# ---- the systems -------------------------------------------------------------------------------------------


class Context:
    """What builders need: checkpoint paths, threads, the device, and ONNX exports made once per run."""

    def __init__(self, model_dir: Path, threads: int, workdir: Path, device: torch.device = CPU) -> None:
        self.model_dir = model_dir
        self.default_model_dir = _default_model_dir()
        self.threads = threads
        self.workdir = workdir
        self.device = device
        self._onnx: dict[tuple[str, bool], Path] = {}
        # The share of fill-mask inputs that `fallback_margin` reran on held-out text (fallback_gate).
        self.fallback_share: float | None = None

    def onnx_session(self, which: str, int8: bool) -> Any:
        """An ORT session on the bench model ("model", AlbertModel) or the default model ("mlm")."""
        onnx = _fast_onnx()
        try:
            return onnx.onnx_session(self._onnx_file(onnx, which, int8), threads=self.threads)
        except ImportError as e:  # onnx or onnxruntime not installed
            raise Unavailable(str(e)) from None

    def _onnx_file(self, onnx: Any, which: str, int8: bool) -> Path:
        """The exported (and, for int8, quantised) file, made once per run."""
        key = (which, int8)
        if key not in self._onnx:
            directory, cls = (
                (self.model_dir, openalbert.AlbertModel)
                if which == "model"
                else (self.default_model_dir, openalbert.AlbertForMaskedLM)
            )
            if int8:
                fp32 = self._onnx_file(onnx, which, False)
                config = openalbert.AlbertConfig.from_pretrained(directory)
                self._onnx[key] = onnx.quantize_onnx_int8(
                    fp32, self.workdir / f"{which}-int8.onnx", config=config
                )
            else:
                model = cls.from_pretrained(directory)
                self._onnx[key] = onnx.export_onnx(model, self.workdir / f"{which}-fp32.onnx")
        return self._onnx[key]


def _default_model_dir() -> Path:
    from openalbert.checkpoint import resolve_path

    return resolve_path(openalbert.DEFAULT_MODEL)


def _fast(name: str) -> Callable[..., Any]:
    """`openalbert.fast.<name>`, or Unavailable while that function has not landed."""
    try:
        module = importlib.import_module("openalbert.fast")
    except ImportError as e:
        raise Unavailable(f"openalbert.fast is not importable ({e})") from None
    if not hasattr(module, name):
        raise Unavailable(f"openalbert.fast.{name} does not exist yet")
    return getattr(module, name)


def _fast_onnx() -> Any:
    try:
        return importlib.import_module("openalbert.fast.onnx")
    except ImportError as e:
        raise Unavailable(f"openalbert.fast.onnx is not importable ({e})") from None


def _base(c: Context, **kwargs: Any) -> torch.nn.Module:
    return openalbert.AlbertModel.from_pretrained(c.model_dir, **kwargs)


def _openalbert_padded(c: Context, **kwargs: Any) -> torch.nn.Module:
    try:
        return _base(c, attn_implementation="sdpa", **kwargs)
    except TypeError as e:
        raise Unavailable(f"openalbert has no attn_implementation option yet ({e})") from None


def _graphed(c: Context, dtype: torch.dtype) -> Any:
    return _fast("cuda_graphs")(_base(c, dtype=dtype, device=c.device))


class RerunShare(torch.nn.Module):
    """What `fallback_margin` costs on the benchmark model: int8 on every sequence of a batch, then fp32 again
    on `share` of them (a seeded draw, cut to their own longest length), their outputs replacing int8's.
    The share is the one the fill-mask pipeline reran on held-out text with the trained default model
    (fallback_gate): the random benchmark weights have no near ties of their own to pick by. The draw is
    the same on every call, so every timed pass does the same work."""

    def __init__(self, low: torch.nn.Module, full: torch.nn.Module, share: float, seed: int = 0) -> None:
        super().__init__()
        self.low, self.full, self.share, self.seed = low, full, share, seed

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> Any:
        hidden = self.low(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        n = input_ids.shape[0]
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[: round(self.share * n)]
        if len(rows):
            width = int(attention_mask[rows].sum(-1).max())
            cut = lambda t: t[rows, :width]  # noqa: E731
            again = self.full(
                cut(input_ids), attention_mask=cut(attention_mask), token_type_ids=cut(token_type_ids)
            )
            hidden[rows, :width] = again.last_hidden_state
        return types.SimpleNamespace(last_hidden_state=hidden)


def _int8_fallback(c: Context) -> RerunShare:
    if c.fallback_share is None:
        raise Unavailable(
            "needs the share of inputs rerun, measured by the fill-mask fallback gate on real text"
        )
    return RerunShare(_fast("quantize_int8")(_base(c)), _base(c), c.fallback_share)


def _hf(name: str) -> Any:
    import transformers

    return getattr(transformers, name)


# name -> (precision, builder). A builder returns a torch module or an object with ONNX Runtime's
# `.run(input_ids, attention_mask, token_type_ids) -> dict`. The family is the first word of the name.
# A new openalbert.fast path is one row, skipped with a note until openalbert.fast has the function:
#     "openalbert compiled": ("fp32", lambda c: _fast("compile")(_base(c))),
INFERENCE_VARIANTS: dict[str, tuple[str, Callable[[Context], Any]]] = {
    "transformers fp32": (
        "fp32",
        lambda c: _hf("AlbertModel").from_pretrained(c.model_dir, dtype=torch.float32),
    ),
    "transformers bf16": (
        "bf16",
        lambda c: _hf("AlbertModel").from_pretrained(c.model_dir, dtype=torch.float32).to(torch.bfloat16),
    ),
    "transformers fp16": (
        "fp16",
        lambda c: _hf("AlbertModel").from_pretrained(c.model_dir, dtype=torch.float32).to(torch.float16),
    ),
    "openalbert fp32": ("fp32", lambda c: _base(c)),  # default options: unpadded attention ("auto")
    "openalbert fp32 padded": ("fp32", lambda c: _openalbert_padded(c)),
    "openalbert bf16": ("bf16", lambda c: _base(c, dtype=torch.bfloat16)),
    "openalbert fp16": ("fp16", lambda c: _base(c, dtype=torch.float16)),
    # On a GPU in half precision the default ("auto") computes the padding, which is cheap there; the
    # unpadded path beside it, so the choice stays measured.
    "openalbert bf16 unpadded": (
        "bf16",
        lambda c: _base(c, dtype=torch.bfloat16, attn_implementation="unpadded"),
    ),
    "openalbert fp16 unpadded": (
        "fp16",
        lambda c: _base(c, dtype=torch.float16, attn_implementation="unpadded"),
    ),
    # CUDA graphs: each batch shape's kernels launched at once (openalbert.fast.cuda_graphs)
    "openalbert bf16 graphs": ("bf16", lambda c: _graphed(c, torch.bfloat16)),
    "openalbert fp16 graphs": ("fp16", lambda c: _graphed(c, torch.float16)),
    "openalbert int8": ("int8", lambda c: _fast("quantize_int8")(_base(c))),
    # int8, and fp32 again on the share of sequences that the fill-mask pipeline's fallback_margin reran
    "openalbert int8 fallback": ("int8", lambda c: _int8_fallback(c)),
    "onnxruntime fp32": ("fp32", lambda c: c.onnx_session("model", int8=False)),
    "onnxruntime int8": ("int8", lambda c: c.onnx_session("model", int8=True)),
}

# The same names on the default (trained) masked-LM model, for fill-mask agreement with its fp32 self.
_MLM = openalbert.AlbertForMaskedLM
FILL_MASK_VARIANTS: dict[str, tuple[str, Callable[[Context], Any]]] = {
    "transformers fp32": (
        "fp32",
        lambda c: _hf("AlbertForMaskedLM").from_pretrained(c.default_model_dir, dtype=torch.float32),
    ),
    "transformers bf16": (
        "bf16",
        lambda c: (
            _hf("AlbertForMaskedLM")
            .from_pretrained(c.default_model_dir, dtype=torch.float32)
            .to(torch.bfloat16)
        ),
    ),
    "transformers fp16": (
        "fp16",
        lambda c: (
            _hf("AlbertForMaskedLM")
            .from_pretrained(c.default_model_dir, dtype=torch.float32)
            .to(torch.float16)
        ),
    ),
    "openalbert bf16": ("bf16", lambda c: _MLM.from_pretrained(c.default_model_dir, dtype=torch.bfloat16)),
    "openalbert fp16": ("fp16", lambda c: _MLM.from_pretrained(c.default_model_dir, dtype=torch.float16)),
    "openalbert int8": ("int8", lambda c: _fast("quantize_int8")(_MLM.from_pretrained(c.default_model_dir))),
    "onnxruntime fp32": ("fp32", lambda c: c.onnx_session("mlm", int8=False)),
    "onnxruntime int8": ("int8", lambda c: c.onnx_session("mlm", int8=True)),
}

# name -> (precision, builder of an AlbertForMaskedLM, bf16 autocast?)
TRAIN_VARIANTS: dict[str, tuple[str, Callable[[Context], Any], bool]] = {
    "transformers fp32": (
        "fp32",
        lambda c: _hf("AlbertForMaskedLM").from_pretrained(c.model_dir, dtype=torch.float32),
        False,
    ),
    "transformers bf16 autocast": (
        "bf16 autocast",
        lambda c: _hf("AlbertForMaskedLM").from_pretrained(c.model_dir, dtype=torch.float32),
        True,
    ),
    "openalbert fp32": ("fp32", lambda c: _MLM.from_pretrained(c.model_dir), False),
    "openalbert bf16 autocast": ("bf16 autocast", lambda c: _MLM.from_pretrained(c.model_dir), True),
    # openalbert's own training step (pretraining, `openalbert pretrain`): the same loss and gradients, with
    # the last layer and the vocabulary projection only where the loss reads them (PretrainingObjective)
    "openalbert objective bf16 autocast": (
        "bf16 autocast",
        lambda c: PretrainingObjective(_MLM.from_pretrained(c.model_dir)),
        True,
    ),
    # the whole step (forward, backward, AdamW) replayed from a CUDA graph: openalbert.fast.cuda_graph_train_step
    "openalbert fp32 graphs": ("fp32", lambda c: _MLM.from_pretrained(c.model_dir), False),
    "openalbert bf16 autocast graphs": ("bf16 autocast", lambda c: _MLM.from_pretrained(c.model_dir), True),
}
TRAIN_GRAPHS = ("openalbert fp32 graphs", "openalbert bf16 autocast graphs")


@dataclass
class System:
    name: str
    precision: str
    run: Callable[[Batch], Any]  # raw output: a tensor or an array
    info: dict[str, Any]


def _runner(obj: Any, output: str) -> Callable[[Batch], Any]:
    """Call a torch model or an ORT session on a Batch and pick `output` (last_hidden_state, logits)."""
    if isinstance(obj, torch.nn.Module) or not hasattr(obj, "run"):
        if isinstance(obj, torch.nn.Module):
            obj.eval()

        def run_torch(batch: Batch) -> Any:
            out = obj(**batch.tensors)
            return getattr(out, output) if hasattr(out, output) else out[0]

        return run_torch

    def run_ort(batch: Batch) -> Any:
        a = batch.arrays
        out = obj.run(a["input_ids"], a["attention_mask"], a["token_type_ids"])
        return out[output] if output in out else next(iter(out.values()))

    return run_ort


def _describe(obj: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"type": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    config = getattr(obj, "config", None)
    if getattr(config, "_attn_implementation", None) is not None:  # transformers
        info["attn_implementation"] = config._attn_implementation
    if isinstance(obj, torch.nn.Module):
        # openalbert keeps its attention path on the encoder module
        found = [
            m.attn_implementation
            for m in obj.modules()
            if isinstance(getattr(m, "attn_implementation", None), str)
        ]
        if found and "attn_implementation" not in info:
            info["attn_implementation"] = found[0]
        info["param_dtype"] = str(next(obj.parameters()).dtype).removeprefix("torch.")
    return info


def rows_for(table: dict[str, Any], device: str) -> list[str]:
    """The names of a variant table that belong on `device`: the CUDA-only rows leave the CPU's tables.
    (The CPU-only rows stay on CUDA's, to be listed as skipped: see `build_variant`.)"""
    return [name for name in table if device == "cuda" or name not in CUDA_ONLY]


def build_variant(table: dict[str, tuple[Any, ...]], name: str, ctx: Context) -> Any:
    """Build one row of a variant table on ctx.device: a torch model is moved there after loading; a
    CPU-only row raises Unavailable elsewhere."""
    if name in CPU_ONLY and ctx.device.type != "cpu":
        raise Unavailable(f"CPU only: {CPU_ONLY[name]}")
    obj = table[name][1](ctx)
    if isinstance(obj, torch.nn.Module) and ctx.device.type != "cpu":
        obj = obj.to(ctx.device)
    return obj


def build_systems(
    table: dict[str, tuple[str, Callable[[Context], Any]]], names: list[str], ctx: Context, output: str
) -> tuple[dict[str, System], dict[str, dict[str, Any]]]:
    """Build the chosen rows of a variant table; returns the systems and each row's status and note."""
    systems, status = {}, {}
    for name in names:
        precision = table[name][0]
        try:
            obj = build_variant(table, name, ctx)
        except Unavailable as e:
            status[name] = {
                "family": name.split()[0],
                "precision": precision,
                "status": "skipped",
                "note": str(e),
            }
            _log(f"  {name}: skipped ({e})")
            continue
        except Exception as e:  # a broken variant must not cost the whole run
            if name == REFERENCE:
                raise
            status[name] = {
                "family": name.split()[0],
                "precision": precision,
                "status": "failed",
                "note": repr(e),
            }
            _log(f"  {name}: FAILED to build ({e!r})")
            continue
        systems[name] = System(name, precision, _runner(obj, output), _describe(obj))
        status[name] = {
            "family": name.split()[0],
            "precision": precision,
            "status": "ok",
            "info": systems[name].info,
        }
    return systems, status


def _as_float(raw: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(raw)).float() if not isinstance(raw, torch.Tensor) else raw.float()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- timing ------------------------------------------------------------------------------------------------


@contextmanager
def _quiet_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass
class Rounds:
    """How many passes to run: warm-up, then timed rounds cut down so that a slow workload fits a budget."""

    repeats: int  # timed rounds at most
    warmup: int  # passes before timing, the first of which feeds the gates
    budget_s: float  # timed seconds per system and workload to aim for
    min_repeats: int  # timed rounds at least, whatever the budget

    def warm(self, run: Callable[[], object], first_s: float) -> float:
        """The warm-up passes after a first one that took `first_s`; returns the last pass's seconds."""
        spent = last = first_s
        for _ in range(self.warmup - 1):
            if spent > self.budget_s / 4:
                break  # a pass this long has warmed its kernels up within itself
            last = _seconds(run)
            spent += last
        return last

    def timed(self, pass_s: float) -> int:
        """Timed rounds for a workload whose slowest system takes `pass_s` per pass."""
        fit = int(self.budget_s / pass_s) if pass_s > 0 else self.repeats
        return max(1, min(self.repeats, max(self.min_repeats, fit)))


def time_rounds(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each runner over `repeats` rounds; the order rotates, so none always goes first."""
    names = list(runners)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    with _quiet_gc():
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                seconds[name].append(_seconds(runners[name]))
    return seconds


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
    }


# ---- the accuracy gates ------------------------------------------------------------------------------------


class HiddenGate:
    """Running max abs difference and mean cosine of hidden states against a reference, real tokens only."""

    def __init__(self) -> None:
        self.max_abs, self.cos_sum, self.tokens = 0.0, 0.0, 0

    def add(self, out: Any, ref: torch.Tensor, mask: torch.Tensor) -> None:
        """`out` on any device against `ref` and `mask` on the CPU."""
        a, b = _as_float(out).cpu()[mask], ref[mask]  # (N, H)
        self.max_abs = max(self.max_abs, float((a - b).abs().max()))
        self.cos_sum += float(F.cosine_similarity(a, b, dim=-1).sum())
        self.tokens += int(mask.sum())

    def result(self, precision: str) -> dict[str, Any]:
        mean_cos = self.cos_sum / self.tokens
        limits = HIDDEN_GATES.get(precision, {})
        ok = mean_cos >= limits.get("min_cosine", -1.0) and self.max_abs <= limits.get(
            "max_abs_diff", math.inf
        )
        return {"max_abs_diff": self.max_abs, "mean_cosine": mean_cos, "tokens": self.tokens, "pass": ok}


def _merge_gates(gates: list[dict[str, Any]], precision: str) -> dict[str, Any]:
    """One system's gate over all workloads: the worst max abs diff, the token-weighted mean cosine."""
    tokens = sum(g["tokens"] for g in gates)
    merged = HiddenGate()
    merged.max_abs = max(g["max_abs_diff"] for g in gates)
    merged.cos_sum = sum(g["mean_cosine"] * g["tokens"] for g in gates)
    merged.tokens = tokens
    return merged.result(precision) | {"thresholds": HIDDEN_GATES.get(precision, {})}


def run_inference(
    systems: dict[str, System], workloads: list[Workload], rounds: Rounds
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Time every system on every workload; the first warm-up pass also feeds the hidden-state gates."""
    rows, per_system_gates = [], {name: [] for name in systems}
    for wl in workloads:
        _log(f"workload {wl.name}: {wl.description}")
        with torch.inference_mode():
            reference = [_as_float(systems[REFERENCE].run(b)).cpu() for b in wl.batches]
            alive, gates, errors, pass_s, skipped = {}, {}, {}, {}, {}
            for name, system in systems.items():
                if name in VARIABLE_ONLY and not wl.name.startswith("var"):
                    skipped[name] = VARIABLE_ONLY[name]
                    continue
                run = lambda s=system, batches=wl.batches: [s.run(b) for b in batches]  # noqa: E731
                try:
                    gate = HiddenGate()
                    start = time.perf_counter()
                    for batch, ref in zip(wl.batches, reference):
                        gate.add(system.run(batch), ref, batch.mask)
                    pass_s[name] = rounds.warm(run, time.perf_counter() - start)
                except Exception as e:  # one broken path is reported, the rest still run
                    if name == REFERENCE:
                        raise
                    errors[name] = repr(e)
                    _log(f"  {name}: FAILED on {wl.name} ({e!r})")
                    continue
                gates[name] = gate.result(system.precision)
                per_system_gates[name].append(gates[name])
                alive[name] = run
            repeats = rounds.timed(max(pass_s.values()))
            seconds = time_rounds(alive, repeats)
        ref_value = float(np.median([wl.value(s) for s in seconds[REFERENCE]]))
        for name, system in systems.items():
            row: dict[str, Any] = {
                "workload": wl.name,
                "system": name,
                "precision": system.precision,
                "unit": wl.unit,
            }
            if name in errors:
                rows.append(row | {"error": errors[name]})
                continue
            if name in skipped:
                rows.append(row | {"skipped": skipped[name]})
                continue
            stats = summarize([wl.value(s) for s in seconds[name]])
            # > 1 means faster than the reference, whichever way the unit points
            speedup = stats["median"] / ref_value if wl.higher_is_better else ref_value / stats["median"]
            rows.append(
                row
                | stats
                | {
                    "samples": repeats,
                    f"speedup_vs_{REFERENCE.replace(' ', '_')}": speedup,
                    "gate": gates[name],
                }
            )
            _log(
                f"  {name:28s} {stats['median']:12.4g} {wl.unit}  x{speedup:.2f}  "
                f"cos {gates[name]['mean_cosine']:.6f}"
            )
    summary = {name: _merge_gates(g, systems[name].precision) for name, g in per_system_gates.items() if g}
    return rows, summary


# ---- fill-mask agreement on real text ------------------------------------------------------------------


def text_windows(tokenizer: Any, files: list[Path], seq_len: int, max_windows: int) -> list[list[int]]:
    """Up to `max_windows` windows of seq_len - 2 consecutive tokens, spread evenly over the files."""
    body, per_file = seq_len - 2, math.ceil(max_windows / len(files))
    windows = []
    for path in files:
        paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        stream: list[int] = []
        taken = 0
        for i in range(0, len(paragraphs), 64):  # tokenize only as much of a long file as is needed
            for ids in tokenizer(paragraphs[i : i + 64], add_special_tokens=False, verbose=False)[
                "input_ids"
            ]:
                stream.extend(ids)
            while len(stream) >= body and taken < per_file:
                windows.append(stream[:body])
                stream, taken = stream[body:], taken + 1
            if taken >= per_file:
                break
        if taken < per_file and len(stream) >= 8:
            windows.append(stream)
    return windows[:max_windows]


def masked_batches(
    tokenizer: Any, windows: list[list[int]], mask_prob: float, seed: int, batch_size: int = 16
) -> list[tuple[Batch, torch.Tensor, torch.Tensor]]:
    """[CLS] window [SEP] batches with `mask_prob` of each window's tokens replaced by [MASK] (seeded).

    Each item is (batch, chosen positions (B, T) bool, the hidden token ids at those positions).
    """
    return [
        (
            Batch({"input_ids": ids, "attention_mask": attention, "token_type_ids": torch.zeros_like(ids)}),
            chosen,
            targets,
        )
        for ids, attention, chosen, targets in masked_windows(
            tokenizer, windows, mask_prob=mask_prob, seed=seed, batch_size=batch_size
        )
    ]


def fill_mask_gate(
    names: list[str], ctx: Context, files: list[Path], max_windows: int, seed: int
) -> dict[str, Any]:
    """Top-1 agreement at masked positions between the default model in fp32 and each variant of it."""
    tokenizer = openalbert.AlbertTokenizer.from_pretrained(ctx.default_model_dir)
    windows = text_windows(tokenizer, files, 128, max_windows)
    if not windows:
        return {"skipped": f"no text in {[str(f) for f in files]}"}
    device = ctx.device
    batches = [
        (b.to(device), chosen.to(device), targets)
        for b, chosen, targets in masked_batches(tokenizer, windows, 0.15, seed)
    ]
    reference = openalbert.AlbertForMaskedLM.from_pretrained(ctx.default_model_dir).to(device)
    chosen_names = [n for n in FILL_MASK_VARIANTS if n in names]
    systems, status = build_systems(FILL_MASK_VARIANTS, chosen_names, ctx, "logits")
    result: dict[str, Any] = {
        "model": openalbert.DEFAULT_MODEL,
        "reference": "openalbert fp32 (the same model)",
        "text_files": [f.name for f in files],
        "windows": len(windows),
        "window_tokens": 128,
        "mask_prob": 0.15,
        "seed": seed,
        # the marks of the precisions this device's table holds
        "thresholds": {
            p: FILL_MASK_GATES[p]
            for p in dict.fromkeys(
                FILL_MASK_VARIANTS[n][0] for n in rows_for(FILL_MASK_VARIANTS, device.type)
            )
        },
        "systems": {},
    }
    with torch.inference_mode():
        ref_preds = [reference(**b.tensors).logits[chosen].argmax(-1).cpu() for b, chosen, _ in batches]
        targets = torch.cat([t for _, _, t in batches])
        ref_preds_all = torch.cat(ref_preds)
        result["masked_tokens"] = int(targets.numel())
        result["reference_accuracy"] = float((ref_preds_all == targets).float().mean())
        for name, entry in status.items():
            if name not in systems:
                result["systems"][name] = entry
                continue
            try:
                preds = torch.cat(
                    [_as_float(systems[name].run(b))[chosen].argmax(-1).cpu() for b, chosen, _ in batches]
                )
            except Exception as e:
                result["systems"][name] = entry | {"status": "failed", "note": repr(e)}
                _log(f"  fill-mask {name}: FAILED ({e!r})")
                continue
            agreement = float((preds == ref_preds_all).float().mean())
            result["systems"][name] = entry | {
                "agreement": agreement,
                "accuracy": float((preds == targets).float().mean()),
                "pass": agreement >= FILL_MASK_GATES.get(entry["precision"], 0.0),
            }
            _log(f"  fill-mask {name:26s} agreement {agreement:.4f}")
    return result


def masked_sentences(files: list[Path], n: int, seed: int) -> list[str]:
    """About n fill-mask inputs of real text: sentences of 6-60 words, an equal share from each file (drawn
    from its first 20,000 words, seeded), each with one word replaced by [MASK]."""
    rng = random.Random(seed)
    per_file, texts = math.ceil(n / len(files)), []
    for path in files:
        words = path.read_text(encoding="utf-8").split()[:20_000]
        sentences = [s for s in re.split(r"(?<=[.;:!?])\s+", " ".join(words)) if 6 <= len(s.split()) <= 60]
        for sentence in rng.sample(sentences, min(per_file, len(sentences))):
            tokens = sentence.split()
            k = rng.randrange(len(tokens))
            texts.append(" ".join(tokens[:k] + ["[MASK]"] + tokens[k + 1 :]))
    return texts[:n]


def fallback_gate(ctx: Context, files: list[Path], margin: float, n_inputs: int, seed: int) -> dict[str, Any]:
    """fill-mask as it is called, one [MASK] per input, on sentences of real text, with the default model:
    top-1 agreement with its fp32 pipeline for int8, for int8 with `fallback_margin` (which reruns in fp32
    every input whose two best logits int8 put within the margin) and for bf16, and the share of inputs
    the fallback reran (ctx.fallback_share, which the "openalbert int8 fallback" row then reruns on the
    benchmark model). Each pipeline's inputs/s, tokenisation included, are given for the record."""
    from openalbert.pipelines import pipeline

    texts = masked_sentences(files, n_inputs, seed)
    options = {
        "openalbert fp32": {},
        "openalbert int8": {"quantization": "int8"},
        "openalbert int8 fallback": {"quantization": "int8", "fallback_margin": margin},
        "openalbert bf16": {"dtype": "bfloat16"},
    }
    result: dict[str, Any] = {
        "model": openalbert.DEFAULT_MODEL,
        "reference": "openalbert fp32 (the same model and pipeline)",
        "text_files": [f.name for f in files],
        "inputs": len(texts),
        "input": "a sentence of 6-60 words with one word replaced by [MASK]",
        "fallback_margin": margin,
        "systems": {},
    }
    answers = {}
    for name, option in options.items():
        pipe = pipeline("fill-mask", model=ctx.default_model_dir, top_k=1, batch_size=32, **option)
        start = time.perf_counter()
        answers[name] = [r[0]["token"] for r in pipe.run(texts)]
        seconds = time.perf_counter() - start
        entry: dict[str, Any] = {"inputs_per_s": len(texts) / seconds}
        if name != "openalbert fp32":
            entry["agreement"] = float(
                np.mean([a == b for a, b in zip(answers[name], answers["openalbert fp32"])])
            )
        if pipe.fallback_model is not None:
            entry["rerun_share"] = pipe.fallback_counts["rerun"] / pipe.fallback_counts["inputs"]
            ctx.fallback_share = entry["rerun_share"]
        result["systems"][name] = entry
        _log(
            f"  fill-mask, one mask per input: {name:26s} "
            + ", ".join(f"{k} {v:.4g}" for k, v in entry.items())
        )
    return result


# ---- the training step -------------------------------------------------------------------------------------


def mlm_batch(vocab_size: int, batch: int, seq_len: int, seed: int) -> tuple[Batch, torch.Tensor]:
    """Random ids with 15% of positions labelled (their input replaced by [MASK]); the rest -100."""
    gen = torch.Generator().manual_seed(seed)
    inputs = make_batch([seq_len] * batch, vocab_size, gen)
    labelled = torch.rand(batch, seq_len, generator=gen) < 0.15
    labels = torch.where(
        labelled, inputs.tensors["input_ids"], torch.full_like(labelled, -100, dtype=torch.long)
    )
    inputs.tensors["input_ids"] = inputs.tensors["input_ids"].masked_fill(labelled, MASK_ID)
    return Batch(inputs.tensors), labels


def _loss(model: torch.nn.Module, batch: Batch, labels: torch.Tensor, autocast: bool) -> torch.Tensor:
    with torch.autocast(labels.device.type, dtype=torch.bfloat16, enabled=autocast):
        return model(**batch.tensors, labels=labels).loss


def _step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    labels: torch.Tensor,
    autocast: bool,
) -> None:
    optimizer.zero_grad(set_to_none=True)
    _loss(model, batch, labels, autocast).backward()
    optimizer.step()


def _train_gates(
    models: dict[str, tuple[torch.nn.Module, Any, bool, str]], batch: Batch, labels: torch.Tensor
) -> dict[str, dict[str, Any]]:
    """Loss and gradients of one step on `batch` against transformers fp32's, compared on the CPU in
    float64; the weights do not move."""
    grads: dict[str, dict[str, torch.Tensor]] = {}
    losses: dict[str, float] = {}
    for name, (model, _, autocast, _) in models.items():
        loss = _loss(model, batch, labels, autocast)
        loss.backward()
        losses[name] = float(loss)
        grads[name] = {  # an objective's parameters are its model's, under "model."
            k.removeprefix("model."): p.grad.cpu().double().clone()
            for k, p in model.named_parameters()
            if p.grad is not None
        }
        model.zero_grad(set_to_none=True)
    gates = {}
    for name, (_, _, _, precision) in models.items():
        common = sorted(set(grads[name]) & set(grads[REFERENCE]))
        a = torch.cat([grads[name][k].flatten() for k in common])
        b = torch.cat([grads[REFERENCE][k].flatten() for k in common])
        loss_diff = abs(losses[name] - losses[REFERENCE])
        cosine = float(F.cosine_similarity(a, b, dim=0))
        limits = TRAIN_GATES.get(precision, {})
        gates[name] = {
            "loss": losses[name],
            "loss_diff": loss_diff,
            "grad_cosine": cosine,
            "grad_tensors_compared": len(common),
            "pass": loss_diff <= limits.get("max_loss_diff", math.inf)
            and cosine >= limits.get("min_grad_cosine", -1),
            "thresholds": limits,
        }
    return gates


def run_training(
    names: list[str],
    ctx: Context,
    vocab_size: int,
    rounds: Rounds,
    seed: int,
    shapes: tuple[tuple[int, int], ...] = ((8, 128),),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """ms per AdamW step of each training variant at each (batch, seq_len) of `shapes`, gated by loss and
    gradient against transformers fp32 (the gates of the first shape are `gates`; with more shapes, all
    are in `gates_by_workload`)."""
    data = {}
    for size, seq_len in shapes:
        batch, labels = mlm_batch(vocab_size, size, seq_len, seed)
        data[f"train-mlm-{size}x{seq_len}"] = (batch.to(ctx.device), labels.to(ctx.device))
    models, status = {}, {}
    for name in [n for n in TRAIN_VARIANTS if n in names]:
        precision, _, autocast = TRAIN_VARIANTS[name]
        try:
            model = build_variant(TRAIN_VARIANTS, name, ctx).train()
        except Exception as e:
            if name == REFERENCE:
                raise
            skipped = isinstance(e, Unavailable)
            status[name] = {
                "precision": precision,
                "status": "skipped" if skipped else "failed",
                "note": str(e) if skipped else repr(e),
            }
            continue
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        models[name] = (model, optimizer, autocast, precision)
        status[name] = {"precision": precision, "status": "ok", "info": _describe(model)}

    # Gates: loss and gradients of a first step at every shape, before any weight moves.
    gates = {workload: _train_gates(models, batch, labels) for workload, (batch, labels) in data.items()}

    graphed = {
        name: _fast("cuda_graph_train_step")(
            model, optimizer, autocast=torch.bfloat16 if autocast else None, warmup=2
        )
        for name, (model, optimizer, autocast, _) in models.items()
        if name in TRAIN_GRAPHS
    }
    rows = []
    for workload, (batch, labels) in data.items():
        steps = {
            name: functools.partial(graphed[name], **batch.tensors, labels=labels)
            if name in graphed
            else functools.partial(_step, model, optimizer, batch, labels, autocast)
            for name, (model, optimizer, autocast, _) in models.items()
        }
        for name in graphed:  # the steps before the capture, and the capture, stay out of the timing
            for _ in range(graphed[name].warmup + 1):
                steps[name]()
        _log(f"workload {workload}: masked-LM step, forward + backward + AdamW")
        step_s = {name: rounds.warm(step, _seconds(step)) for name, step in steps.items()}
        repeats = rounds.timed(max(step_s.values()))
        seconds = time_rounds(steps, repeats)
        ref = float(np.median(seconds[REFERENCE]))
        for name, (_, _, _, precision) in models.items():
            stats = summarize([s * 1e3 for s in seconds[name]])
            speedup = ref * 1e3 / stats["median"]
            gate = gates[workload][name]
            rows.append(
                {"workload": workload, "system": name, "precision": precision, "unit": "ms"}
                | stats
                | {"samples": repeats, f"speedup_vs_{REFERENCE.replace(' ', '_')}": speedup, "gate": gate}
            )
            _log(
                f"  {name:28s} {stats['median']:12.4g} ms  x{speedup:.2f}  grad cos {gate['grad_cosine']:.6f}"
            )
    training: dict[str, Any] = {
        "systems": status,
        "optimizer": "torch.optim.AdamW(lr=1e-5, fused=True)",
        "gates": next(iter(gates.values())),
    }
    if len(gates) > 1:
        training["gates_by_workload"] = gates
    return rows, training


# ---- model FLOPs utilisation -------------------------------------------------------------------------------


def add_throughput(
    rows: list[dict[str, Any]],
    work: dict[str, tuple[int, int]],
    peaks: dict[str, float],
    spec: dict[str, float] | None,
) -> None:
    """Add to each timed row of a workload in `work` (name -> (useful tokens, model FLOPs) per pass): the
    useful tokens/s, the model TFLOP/s, the MFU against `peaks` (FLOP/s by precision; "bf16 autocast"
    counts as bf16) and, with `spec` (TFLOP/s by precision), the MFU against the datasheet. A row of a
    precision without a peak (int8) gets none of them."""
    for row in rows:
        precision = row["precision"].split()[0]
        if "median" not in row or row["workload"] not in work or precision not in peaks:
            continue
        tokens, flops = work[row["workload"]]
        # the median pass: ms per pass, or useful tokens/s (a monotone map of the same rounds)
        seconds = row["median"] / 1e3 if row["unit"] == "ms" else tokens / row["median"]
        row["tokens_per_s"] = tokens / seconds
        row["model_tflops"] = flops / seconds / 1e12
        row["mfu"] = mfu(flops, seconds, peaks[precision])
        if spec is not None:
            row["mfu_vs_spec"] = mfu(flops, seconds, spec[precision] * 1e12)


# ---- report ------------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def markdown(result: dict[str, Any]) -> str:
    """The tables for RESULTS.md: speed with speedups, training, and the accuracy gates."""
    key = f"speedup_vs_{REFERENCE.replace(' ', '_')}"
    m = result["machine"]
    lines = []
    if "gpu" in m:
        g = m["gpu"]
        lines += [
            f"Device: cuda, {g['name']} ({g['memory_gib']:.0f} GiB, compute capability "
            f"{g['compute_capability']}), CUDA {g['cuda']}, driver {g['driver']}; fp32 matmuls in fp32 "
            f"(float32_matmul_precision={result['settings'].get('float32_matmul_precision')}, TF32 off). "
            "The machine line is the host's.",
            "",
        ]
    lines += [
        f"Machine: {m['cpu']}{_core_note(m)}, {m['usable_cpus']} usable CPUs, "
        f"{result['settings']['threads']} threads; "
        f"torch {m['torch']}, transformers {m['transformers']}, onnxruntime {m['onnxruntime']}; "
        f"avx512_bf16={m['flags']['avx512_bf16']}, avx512_vnni={m['flags']['avx512_vnni']}, "
        f"amx_bf16={m['flags']['amx_bf16']}",
        "",
        f"Medians of n timed rounds (p10-p90 in the JSON); (xN) = speed relative to {REFERENCE} on the "
        "same workload, > 1 is faster.",
        "",
    ]
    inference = [r for r in result["measurements"] if not r["workload"].startswith("train")]
    workloads = list(dict.fromkeys(r["workload"] for r in inference))
    units = {w["name"]: w["unit"] for w in result["workloads"]}
    n = {r["workload"]: r["samples"] for r in result["measurements"] if "samples" in r}
    lines.append(
        "| system | precision | " + " | ".join(f"{w} ({units[w]}, n={n[w]})" for w in workloads) + " |"
    )
    lines.append("|---|---|" + "---:|" * len(workloads))
    for system in dict.fromkeys(r["system"] for r in inference):
        cells, precision = [], ""
        for w in workloads:
            row = next(r for r in inference if r["system"] == system and r["workload"] == w)
            precision = row["precision"]
            cells.append(
                "failed"
                if "error" in row
                else "-"
                if "skipped" in row
                else f"{_fmt(row['median'])} (x{row[key]:.2f})"
            )
        lines.append(f"| {system} | {precision} | " + " | ".join(cells) + " |")
    if any("mfu" in r for r in inference):
        lines += [
            "",
            "Useful tokens/s, model TFLOP/s and MFU against the measured GEMM peak of the row's precision "
            "(after the slash: against the datasheet's dense peak).",
            "",
            "| system | precision | " + " | ".join(workloads) + " |",
            "|---|---|" + "---:|" * len(workloads),
        ]
        for system in dict.fromkeys(r["system"] for r in inference):
            cells, precision = [], ""
            for w in workloads:
                row = next(r for r in inference if r["system"] == system and r["workload"] == w)
                precision = row["precision"]
                cells.append(_throughput_cell(row))
            lines.append(f"| {system} | {precision} | " + " | ".join(cells) + " |")

    training = [r for r in result["measurements"] if r["workload"].startswith("train")]
    for workload in dict.fromkeys(r["workload"] for r in training):
        group = [r for r in training if r["workload"] == workload]
        with_mfu = "mfu" in group[0]
        lines += [
            "",
            f"| training step, MLM {workload.removeprefix('train-mlm-')} (n={group[0]['samples']}) "
            f"| ms/step (p10-p90) | vs {REFERENCE} | loss diff | grad cosine |"
            + (" tokens/s, TFLOP/s, MFU |" if with_mfu else ""),
        ]
        lines.append("|---|---:|---:|---:|---:|" + ("---:|" if with_mfu else ""))
        for r in group:
            g = r["gate"]
            lines.append(
                f"| {r['system']} | {_fmt(r['median'])} ({_fmt(r['p10'])}-{_fmt(r['p90'])}) | x{r[key]:.2f} "
                f"| {g['loss_diff']:.2e} | {g['grad_cosine']:.6f} |"
                + (f" {_throughput_cell(r)} |" if with_mfu else "")
            )

    gates = result["gates"]
    fill = gates.get("fill_mask", {}).get("systems", {})
    lines += ["", "| accuracy gate | max abs diff | mean cosine | fill-mask top-1 agreement | pass |"]
    lines.append("|---|---:|---:|---:|---|")
    for system, g in gates["hidden_state"].items():
        f = fill.get(system, {})
        agreement = (
            f"{f['agreement']:.4f}"
            if "agreement" in f
            else ("reference" if system == "openalbert fp32" else "-")
        )
        ok = g["pass"] and f.get("pass", True)
        lines.append(
            f"| {system} | {g['max_abs_diff']:.2e} | {g['mean_cosine']:.6f} | {agreement} "
            f"| {'yes' if ok else 'NO'} |"
        )
    if "reference_accuracy" in gates.get("fill_mask", {}):
        fm = gates["fill_mask"]
        lines.append(
            f"\nFill-mask: {fm['model']} on {fm['windows']} windows of {fm['window_tokens']} tokens "
            f"({fm['masked_tokens']} masked); its fp32 top-1 accuracy is {fm['reference_accuracy']:.3f}."
        )
    fb = gates.get("fill_mask_fallback")
    if fb:
        lines += [
            "",
            f"| fill-mask, one [MASK] per input ({fb['inputs']} sentences; fallback_margin {fb['fallback_margin']:g}) "
            "| top-1 agreement with fp32 | inputs rerun in fp32 | pipeline inputs/s |",
            "|---|---:|---:|---:|",
        ]
        for system, e in fb["systems"].items():
            agreement = f"{e['agreement']:.4f}" if "agreement" in e else "reference"
            rerun = f"{e['rerun_share']:.1%}" if "rerun_share" in e else "-"
            lines.append(f"| {system} | {agreement} | {rerun} | {e['inputs_per_s']:.1f} |")
    floor = result.get("floor")
    if floor:
        lines.append(
            f"\nCompute floor, batch 1 x 128 ({floor['model_flops_1x128']['total'] / 1e9:.2f} GFLOP): "
            f"fp32 {floor['fp32']['floor_ms_1x128']:.3g} ms at {floor['fp32']['gemm_gflops']:.0f} GFLOP/s, "
            f"bf16 {floor['bf16']['floor_ms_1x128']:.3g} ms at {floor['bf16']['gemm_gflops']:.0f} GFLOP/s "
            f"(GEMM {floor['gemm_shape']}, best of {floor['repeats']})."
        )
        if "floor_ms_train_8x128" in floor["bf16"]:
            lines.append(
                f"Training step floor, MLM 8 x 128 ({floor['training_flops_8x128'] / 1e9:.0f} GFLOP): "
                f"fp32 {floor['fp32']['floor_ms_train_8x128']:,.0f} ms, "
                f"bf16 {floor['bf16']['floor_ms_train_8x128']:,.0f} ms."
            )
    peaks = result.get("mfu")
    if peaks:
        measured = ", ".join(f"{p} {t:.1f}" for p, t in peaks["measured_peak_tflops"].items())
        spec = peaks["spec_peak_tflops"]
        lines.append(
            f"\nMFU denominators: measured GEMM peaks ({peaks['gemm']}, best of {peaks['repeats']}) {measured} "
            "TFLOP/s; "
            + (
                f"datasheet ({peaks['spec']}) "
                + ", ".join(f"{p} {t:.0f}" for p, t in spec.items())
                + " TFLOP/s."
                if spec
                else "no datasheet peak known for this GPU."
            )
        )
    lines += targets_markdown(issue_targets(result))
    if result["notes"]:
        lines += ["", "Notes:"] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines)


# Issue #7's acceptance lines, as (what, threshold): judged from one run's result by issue_targets.
TARGETS = {
    "var64 fp32": ("openalbert fp32 useful tokens/s over transformers fp32's, outputs within 1e-4", 3.0),
    "var64 bf16": ("openalbert bf16 useful tokens/s over transformers fp32's", 6.0),
    "var64 int8": ("openalbert int8 useful tokens/s over ONNX Runtime int8's", 1.5),
    "int8 agreement": ("openalbert int8 fill-mask top-1 agreement with fp32 on real text", 0.99),
    "var64 int8 fallback": (
        "openalbert int8 with fp32 fallback (the share of inputs rerun at the margin) over ONNX Runtime int8",
        1.5,
    ),
    "int8 fallback agreement": (
        "openalbert int8 with fp32 fallback: fill-mask top-1 agreement with fp32 on real text, one [MASK] per input",
        0.99,
    ),
    "b1x128 bf16 floor": ("openalbert bf16 latency at 1 x 128 over the measured bf16 compute floor", 1.4),
    "training bf16": ("transformers bf16 autocast ms/step over openalbert's (MLM 8 x 128)", 1.5),
}


def issue_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of issue #7's acceptance lines (CPU runs; none for a GPU run) judged from this run: its measured
    value and whether it holds. `holds` is None where this run did not measure it, and for the bf16 lines
    on a CPU without bf16 arithmetic, where they say nothing of the issue's machine."""
    if "gpu" in result.get("machine", {}):
        return []
    ratios = result.get("ratios", {}).get("var64", {})
    medians = {
        (r["workload"], r["system"]): r["median"] for r in result.get("measurements", []) if "median" in r
    }
    fill = result.get("gates", {}).get("fill_mask", {}).get("systems", {})
    fallback = result.get("gates", {}).get("fill_mask_fallback", {}).get("systems", {})
    hidden = result.get("gates", {}).get("hidden_state", {})
    floor = (result.get("floor") or {}).get("bf16", {}).get("measured_over_floor_b1x128", {})

    def ratio(system: str, over: str) -> float | None:
        a, b = medians.get(("var64", system)), medians.get(("var64", over))
        return a / b if a and b else None

    values: dict[str, float | None] = {
        "var64 fp32": ratios.get("openalbert fp32"),
        "var64 bf16": ratios.get("openalbert bf16"),
        "var64 int8": ratio("openalbert int8", "onnxruntime int8"),
        "int8 agreement": fill.get("openalbert int8", {}).get("agreement"),
        "var64 int8 fallback": ratio("openalbert int8 fallback", "onnxruntime int8"),
        "int8 fallback agreement": fallback.get("openalbert int8 fallback", {}).get("agreement"),
        "b1x128 bf16 floor": floor.get("openalbert bf16"),
    }
    trained = {s: ms for (w, s), ms in medians.items() if w == "train-mlm-8x128"}
    ours = trained.get("openalbert objective bf16 autocast") or trained.get("openalbert bf16 autocast")
    theirs = trained.get("transformers bf16 autocast")
    values["training bf16"] = theirs / ours if ours and theirs else None

    flags = result.get("machine", {}).get("flags", {})
    bf16_native = flags.get("avx512_bf16") or flags.get("amx_bf16")
    targets = []
    for name, (what, threshold) in TARGETS.items():
        value = values[name]
        holds = None if value is None else value <= threshold if "floor" in name else value >= threshold
        if name == "var64 fp32" and holds:
            holds = hidden.get("openalbert fp32", {}).get("max_abs_diff", float("inf")) <= 1e-4
        note = ""
        if "bf16" in name and not bf16_native:
            holds, note = None, "not judged: this CPU has no bf16 arithmetic"
        targets.append(
            {
                "target": name,
                "what": what,
                "threshold": threshold,
                "value": value,
                "holds": holds,
                "note": note,
            }
        )
    return targets


def targets_markdown(targets: list[dict[str, Any]]) -> list[str]:
    """The table of issue_targets for RESULTS.md (nothing for a GPU run)."""
    if not targets:
        return []
    lines = ["", "| issue #7 target | measured | needed | holds |", "|---|---:|---:|---|"]
    for t in targets:
        unit = "" if "agreement" in t["target"] else "x"
        needed = f"{'<=' if 'floor' in t['target'] else '>='} {t['threshold']:g}{unit}"
        value = "-" if t["value"] is None else f"{t['value']:.4f}" if not unit else f"{t['value']:.2f}x"
        holds = t["note"] or {True: "yes", False: "no", None: "not measured"}[t["holds"]]
        lines.append(f"| {t['what']} | {value} | {needed} | {holds} |")
    return lines


def _core_note(machine: dict[str, Any]) -> str:
    """' (Zen 4, CPUID family 25 model 17, 256-bit vector datapath)' where the core is known."""
    if not machine.get("core"):
        return ""
    return (
        f" ({machine['core']}, CPUID family {machine['cpu_family']} model {machine['cpu_model_number']}, "
        f"{machine['vector_datapath_bits']}-bit vector datapath)"
    )


def _throughput_cell(row: dict[str, Any]) -> str:
    if "mfu" not in row:
        return "failed" if "error" in row else "-"
    spec = f" / {row['mfu_vs_spec']:.1%}" if "mfu_vs_spec" in row else ""
    return f"{_fmt(row['tokens_per_s'])} tok/s, {row['model_tflops']:.3g} TFLOP/s, {row['mfu']:.1%}{spec}"


# ---- main --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="albert-base-v2", help="architecture (openalbert.PRESETS)")
    parser.add_argument("--tiny", action="store_true", help="a tiny architecture, for the smoke test")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the torch systems run (default cpu). cuda: ONNX Runtime and int8 are skipped, fp16 rows "
        "join, 3 warm-up passes, 10 training steps, 1024 variable sequences, 200 text windows and a "
        "64 x 128 training step even with --quick, and MFU on every row",
    )
    parser.add_argument(
        "--model-dir", type=Path, help=f"random-weight checkpoint (default {CACHE}/<preset>-random)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument(
        "--repeats", type=int, help="timed rounds per inference workload (default 20; 3 quick)"
    )
    parser.add_argument(
        "--warmup", type=int, help="untimed passes per system and workload (default 3; 1 quick)"
    )
    parser.add_argument(
        "--train-repeats", type=int, help="timed training steps per system (default 10; 2 quick)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="timed seconds per system and workload to aim for: a workload whose slowest system needs "
        "longer per pass gets fewer rounds, never fewer than --min-repeats (default 60)",
    )
    parser.add_argument("--min-repeats", type=int, default=5, help="timed rounds at least (default 5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="few repeats, 64 variable sequences (on cuda: few repeats only)",
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        metavar="SUBSTRING",
        help=f"only systems whose name contains one of these ({REFERENCE} always runs); "
        f"names: {', '.join(INFERENCE_VARIANTS)}",
    )
    parser.add_argument("--no-training", action="store_true", help="skip the training-step benchmark")
    parser.add_argument(
        "--text", nargs="+", type=Path, help=f"real text for the fill-mask gate (default {DEFAULT_TEXT})"
    )
    parser.add_argument(
        "--gate-windows", type=int, help="128-token text windows for the fill-mask gate (default 200)"
    )
    parser.add_argument(
        "--fallback-margin",
        type=float,
        default=0.2,
        help="the int8 fill-mask pipeline's fallback_margin for the fallback gate and row (default 0.2)",
    )
    parser.add_argument(
        "--fallback-inputs",
        type=int,
        default=2000,
        help="one-mask sentences for the fallback gate (default 2000)",
    )
    parser.add_argument("--floor", action="store_true", help="measure GEMM throughput and the compute floor")
    parser.add_argument("--floor-repeats", type=int, default=10, help="GEMM calls, best of which counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "speed_results.json")
    args = parser.parse_args(argv)
    quick = args.quick
    # A GPU pass takes milliseconds, so --quick there keeps the warm-up and the training steps; and a GPU
    # needs more than a CPU's workload to be measured fairly: 32 batches of variable lengths and a training
    # batch of 64 as well as 8.
    cuda = args.device == "cuda"
    args.repeats = args.repeats or (3 if quick else 20)
    args.warmup = max(1, args.warmup or (1 if quick and not cuda else 3))  # the first pass feeds the gates
    args.train_repeats = args.train_repeats or (2 if quick and not cuda else 10)
    # 200 windows are about 3,800 masked tokens: one flip moves agreement by 0.03 points, not 0.3.
    args.gate_windows = args.gate_windows or 200
    args.n_variable = 1024 if cuda else 64 if quick else 256
    args.train_shapes = ((8, 128), (64, 128)) if cuda else ((8, 128),)
    if args.model_dir is None:
        args.model_dir = CACHE / (f"{args.preset}-tiny-random" if args.tiny else f"{args.preset}-random")
    return args


def _chosen(names: list[str], patterns: list[str] | None) -> list[str]:
    return [n for n in names if n == REFERENCE or patterns is None or any(p in n for p in patterns)]


def _without_emulated_bf16(
    names: list[str], patterns: list[str] | None, device: torch.device, notes: list[str]
) -> list[str]:
    """`names` without the other systems' bf16 rows where this CPU has no bf16 arithmetic: PyTorch emulates
    them, minutes per call (a transformers bf16 autocast training step of albert-base 8 x 128 takes about
    220 s on a Zen 3 CPU, 50x its fp32 step). openalbert's bf16 rows stay: they run in fp32 arithmetic there
    (cpu_kernels.linear, linear.HalfLinearInFp32). Asking for bf16 (--systems bf16) keeps them all."""
    if device.type != "cpu" or not cpu_kernels.emulates_bf16() or any("bf16" in p for p in patterns or ()):
        return names
    dropped = [n for n in names if "bf16" in n and not n.startswith("openalbert")]
    if dropped:
        notes.append(
            f"skipped {', '.join(dropped)}: this CPU has no bf16 arithmetic (AVX512_BF16 or AMX), so "
            "PyTorch emulates it; --systems bf16 times them anyway"
        )
    return [n for n in names if n not in dropped]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write the JSON to --output, print the Markdown tables; returns the result."""
    args = parse_args(argv)
    try:
        import transformers
    except ImportError:
        raise SystemExit(
            "the benchmark compares against transformers: pip install transformers==4.57.1"
        ) from None
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # load-time chatter of three libraries would bury the progress
            result = run_benchmark(args, sys.argv[1:] if argv is None else list(argv))
    finally:
        transformers.logging.set_verbosity(verbosity)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    _log(f"wrote {args.output}")
    return result


def run_benchmark(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Everything `main` does but the writing: the result dict that becomes the JSON."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit(f"--device cuda: torch {torch.__version__} sees no CUDA device")
        # fp32 rows run real fp32 GEMMs (no TF32), so that fp32 means the same on both devices.
        torch.set_float32_matmul_precision("highest")
    config = bench_config(args.preset, args.tiny)
    model_dir = ensure_model(args.model_dir, config)
    notes: list[str] = []
    result: dict[str, Any] = {
        "settings": {
            "argv": argv,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "threads": args.threads,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "train_repeats": args.train_repeats,
            "budget_s": args.budget,
            "min_repeats": args.min_repeats,
            "quick": args.quick,
            "seed": args.seed,
            "timer": "time.perf_counter; torch under inference_mode; system order rotates every round",
            "device": args.device,
        }
        | (
            {
                "timer": "time.perf_counter after torch.cuda.synchronize() at start and stop; torch under "
                "inference_mode; system order rotates every round",
                "float32_matmul_precision": torch.get_float32_matmul_precision(),
                "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                "variable_sequences": args.n_variable,
                "train_shapes": [list(shape) for shape in args.train_shapes],
            }
            if cuda
            else {}
        ),
        "machine": machine_info(device),
        "model": {
            "preset": "tiny" if args.tiny else args.preset,
            "dir": str(model_dir),
            "weights": "random (transformers AlbertForPreTraining, seed 0)",
            "config": {f: getattr(config, f) for f in ARCH_FIELDS},
            "flops_1x128": albert_flops(config, 1, 128)["total"],
        },
    }

    with tempfile.TemporaryDirectory(prefix="bench-speed-") as workdir:
        ctx = Context(model_dir, args.threads, Path(workdir), device)
        names = _chosen(rows_for(INFERENCE_VARIANTS, device.type), args.systems)
        names = _without_emulated_bf16(names, args.systems, device, notes)
        files = args.text or [Path(p) for p in sorted(glob.glob(str(DEFAULT_TEXT)))]
        fallback = None
        if "openalbert int8 fallback" in names and files and device.type == "cpu":
            _log(f"fill-mask fallback gate on {len(files)} text files")
            fallback = fallback_gate(ctx, files, args.fallback_margin, args.fallback_inputs, args.seed)
        _log(f"building systems from {model_dir} on {device}")
        systems, status = build_systems(INFERENCE_VARIANTS, names, ctx, "last_hidden_state")
        notes += [f"{n}: {s['status']}: {s['note']}" for n, s in status.items() if s["status"] != "ok"]
        workloads = inference_workloads(config.vocab_size, args.n_variable, args.seed)
        for wl in workloads:
            wl.batches = [b.to(device) for b in wl.batches]  # once, untimed
        rounds = Rounds(args.repeats, args.warmup, args.budget, args.min_repeats)
        rows, hidden_gates = run_inference(systems, workloads, rounds)
        result["systems"] = status
        result["workloads"] = [
            {
                "name": w.name,
                "unit": w.unit,
                "higher_is_better": w.higher_is_better,
                "description": w.description,
            }
            | (
                {"batch": w.batches[0].mask.shape[0], "seq_len": w.batches[0].mask.shape[1]}
                if len(w.batches) == 1
                else {}
            )
            | w.details
            for w in workloads
        ]
        result["gates"] = {"hidden_state": hidden_gates, "hidden_state_reference": REFERENCE}
        if fallback is not None:
            result["gates"]["fill_mask_fallback"] = fallback
        if files:
            _log(f"fill-mask gate on {len(files)} text files")
            result["gates"]["fill_mask"] = fill_mask_gate(names, ctx, files, args.gate_windows, args.seed)
            notes += [
                f"fill-mask {n}: {s['status']}: {s['note']}"
                for n, s in result["gates"]["fill_mask"].get("systems", {}).items()
                if s["status"] != "ok"
            ]
        else:
            result["gates"]["fill_mask"] = {"skipped": f"no --text given and nothing at {DEFAULT_TEXT}"}
            notes.append(f"fill-mask gate skipped: no --text given and nothing at {DEFAULT_TEXT}")
        if not args.no_training:
            train_rows, training = run_training(
                _without_emulated_bf16(
                    _chosen(rows_for(TRAIN_VARIANTS, device.type), args.systems), args.systems, device, notes
                ),
                ctx,
                config.vocab_size,
                Rounds(args.train_repeats, args.warmup, args.budget, args.min_repeats),
                args.seed,
                args.train_shapes,
            )
            rows += train_rows
            result["training"] = training
            notes += [
                f"training {n}: {s['status']}: {s['note']}"
                for n, s in training["systems"].items()
                if s["status"] != "ok"
            ]

    result["measurements"] = rows
    failures: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if "error" in row:
            failures.setdefault((row["system"], row["error"]), []).append(row["workload"])
    notes += [f"{system}: failed on {', '.join(w)}: {error}" for (system, error), w in failures.items()]
    key = f"speedup_vs_{REFERENCE.replace(' ', '_')}"
    result["ratios"] = {}
    for row in rows:
        if key in row:
            result["ratios"].setdefault(row["workload"], {})[row["system"]] = row[key]
    result["floor"] = None
    if cuda:
        # The GPU's peak per precision is MFU's denominator, so on CUDA it is measured with or without --floor.
        _log("GEMM peaks for MFU")
        floor = gemm_floor(config, CUDA_GEMM_SHAPE, args.floor_repeats, device, tuple(DTYPES))
        result["floor"] = floor
        spec = spec_peak(result["machine"]["gpu"]["name"])
        work = {
            wl.name: (wl.useful_tokens, useful_flops(config, [n for b in wl.batches for n in b.lengths]))
            for wl in workloads
        } | {f"train-mlm-{b}x{t}": (b * t, training_flops(config, b, t)) for b, t in args.train_shapes}
        peaks = {p: floor[p]["gemm_gflops"] * 1e9 for p in DTYPES}
        add_throughput(rows, work, peaks, spec[1] if spec else None)
        result["mfu"] = {
            "flops": "model matmul FLOPs (albert_flops, training_flops: a step is 3 forwards), real tokens "
            "only: each sequence of the variable workload counted at its own length",
            "gemm": floor["gemm_shape"],
            "repeats": floor["repeats"],
            "measured_peak_tflops": {p: peak / 1e12 for p, peak in peaks.items()},
            "spec": spec[0] if spec else None,
            "spec_peak_tflops": spec[1] if spec else None,
            "precision_peak": "fp32 rows: the fp32 peak (TF32 off); bf16 and bf16 autocast: bf16; fp16: fp16",
            "work": {name: {"useful_tokens": t, "model_flops": f} for name, (t, f) in work.items()},
        }
        if spec is None:
            notes.append(f"no datasheet peak known for {result['machine']['gpu']['name']}: no mfu_vs_spec")
    elif args.floor:
        _log("GEMM throughput for the compute floor")
        shape = (256, 64, 256) if args.tiny else (2048, 768, 3072)
        floor = gemm_floor(config, shape, 3 if args.quick else args.floor_repeats)
        result["floor"] = floor
    if args.floor:
        for precision in [p for p in DTYPES if p in floor]:
            measured = {
                r["system"]: r["median"]
                for r in rows
                if r["workload"] == "b1x128" and r["precision"] == precision and "median" in r
            }
            floor[precision]["measured_over_floor_b1x128"] = {
                s: ms / floor[precision]["floor_ms_1x128"] for s, ms in measured.items()
            }
            # The training step's precision is "bf16 autocast": its GEMMs run in bf16.
            trained = {
                r["system"]: r["median"]
                for r in rows
                if r["workload"] == "train-mlm-8x128" and r["precision"].split()[0] == precision
            }
            floor[precision]["measured_over_floor_train_8x128"] = {
                s: ms / floor[precision]["floor_ms_train_8x128"] for s, ms in trained.items()
            }
    result["notes"] = notes
    result["targets"] = issue_targets(result)
    return result


if __name__ == "__main__":
    main()
