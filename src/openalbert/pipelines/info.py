"""Describe a checkpoint without building the model (the engine of `openalbert info`): its configuration,
parameter count, the tasks its weights can serve, and its files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from openalbert.checkpoint import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, load_state_dict
from openalbert.config import CONFIG_NAME, AlbertConfig
from openalbert.pipelines.base import _model_directory

# Which architecture's classifier serves which task (the classifier weights alone do not say).
_CLASSIFIER_TASKS = {
    "AlbertForSequenceClassification": "text-classification",
    "AlbertForTokenClassification": "token-classification",
    "AlbertForMultipleChoice": "multiple-choice",
}


def model_info(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready summary of a model directory, hub id or the embedded default model."""
    directory = _model_directory(name_or_path)
    config = AlbertConfig.from_json_file(directory / CONFIG_NAME)
    shapes = _weight_shapes(directory)
    architectures = list(config.extra.get("architectures") or [])
    params = sum(_numel(s) for k, s in shapes.items() if not k.endswith(("position_ids", "token_type_ids")))
    embeddings = sum(_numel(s) for k, s in shapes.items() if k.endswith("_embeddings.weight"))
    tasks = ["feature-extraction"]
    if any(".predictions." in f".{k}" for k in shapes):
        tasks.insert(0, "fill-mask")
    if any(k.startswith("qa_outputs.") for k in shapes):
        tasks.append("question-answering")
    if any(k.startswith("classifier.") for k in shapes):
        tasks += [_CLASSIFIER_TASKS[a] for a in architectures if a in _CLASSIFIER_TASKS]
    info: dict[str, Any] = {
        "path": str(directory),
        "architectures": architectures,
        "config": {
            "vocab_size": config.vocab_size,
            "embedding_size": config.embedding_size,
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_hidden_groups": config.num_hidden_groups,
            "inner_group_num": config.inner_group_num,
            "num_attention_heads": config.num_attention_heads,
            "intermediate_size": config.intermediate_size,
            "hidden_act": config.hidden_act,
            "max_position_embeddings": config.max_position_embeddings,
            "dtype": config.extra.get("dtype") or config.extra.get("torch_dtype") or "float32",
        },
        "parameters": params,
        "embedding_parameters": embeddings,
        "tasks": tasks,
        "files": {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()},
    }
    if any(t in tasks for t in ("text-classification", "token-classification")):
        info["labels"] = {str(k): v for k, v in config.id2label.items()}
    info["cpu_attention"] = _cpu_attention(config)
    info["cpu_fp32"] = _cpu_linear()
    info["cpu_bf16"], info["cpu_int8"] = _cpu_precisions()
    return info


def _cpu_precisions() -> tuple[str, str]:
    """What bf16 weights and `quantization="int8"` do on this CPU, in words."""
    from openalbert import cpu_kernels
    from openalbert.fast.quantize import weight_levels

    native = cpu_kernels.cpu_flags() & cpu_kernels.BF16_FLAGS
    if cpu_kernels.emulates_bf16() and cpu_kernels.linear_available():
        bf16 = (
            "about float32's speed, in fp32 arithmetic (no AVX512_BF16 or AMX): inference on the "
            "compiled AVX2 kernel, training (autocast or bf16 weights) on fp32 GEMMs"
        )
    elif cpu_kernels.emulates_bf16():
        bf16 = (
            "emulated by PyTorch for inference (no AVX512_BF16 or AMX): several times slower than float32; "
            "training (autocast or bf16 weights) on fp32 GEMMs"
        )
    elif native:
        bf16 = f"native ({', '.join(sorted(f.upper() for f in native))})"
    else:
        bf16 = "unknown (no x86 CPU flags readable)"
    vnni = weight_levels() == 127
    int8 = "8-bit weights (AVX512-VNNI)" if vnni else "7-bit weights (no AVX512-VNNI: 8 bits would saturate)"
    return bf16, int8


def _cpu_linear() -> str:
    """Which GEMMs fp32 CPU inference runs on here, in words."""
    from openalbert import cpu_kernels, linear

    if cpu_kernels.has_avx512():
        return "oneDNN's GEMMs on packed weights (AVX-512)"
    if cpu_kernels.linear_available():
        return f"compiled AVX2 GEMM kernel, {cpu_kernels.linear_status()}"
    return (
        f"PyTorch's GEMMs, oneDNN's packed weights for up to {linear.PACKED_ROWS_WITHOUT_AVX512} rows "
        f"(compiled AVX2 GEMM kernel {cpu_kernels.linear_status()})"
    )


def _cpu_attention(config: AlbertConfig) -> str:
    """Which attention CPU inference runs for this model here: the compiled kernel, or PyTorch's and why."""
    from openalbert import packed_attention

    refusal = packed_attention.refusal(config.position_embedding_type, config.head_dim)
    if refusal is not None:
        return f"PyTorch's kernels ({refusal})"
    if packed_attention.available():
        return f"compiled kernel, {packed_attention.status()}"
    return f"PyTorch's kernels (compiled kernel {packed_attention.status()})"


def format_model_info(info: dict[str, Any]) -> str:
    """The summary as a few aligned lines of text."""
    c = info["config"]
    lines = [
        f"model         {info['path']}",
        f"architecture  {', '.join(info['architectures']) or '(not recorded)'}",
        f"size          vocab {c['vocab_size']}, embedding {c['embedding_size']}, hidden {c['hidden_size']}, "
        f"{c['num_hidden_layers']} layers ({c['num_hidden_groups']} shared group(s) of {c['inner_group_num']}), "
        f"{c['num_attention_heads']} heads, FFN {c['intermediate_size']}",
        f"              {c['hidden_act']}, max {c['max_position_embeddings']} positions, stored as {c['dtype']}",
        f"parameters    {info['parameters']:,} ({info['embedding_parameters']:,} in embeddings)",
        f"tasks         {', '.join(info['tasks'])}",
    ]
    if "labels" in info:
        lines.append(f"labels        {', '.join(f'{k}={v}' for k, v in info['labels'].items())}")
    if "cpu_attention" in info:
        lines.append(f"cpu attention {info['cpu_attention']}")
    if "cpu_fp32" in info:
        lines.append(f"cpu fp32      {info['cpu_fp32']}")
    if "cpu_bf16" in info:
        lines.append(f"cpu bf16      {info['cpu_bf16']}")
        lines.append(f"cpu int8      {info['cpu_int8']}")
    lines.append("files")
    width = max((len(name) for name in info["files"]), default=0)
    lines += [f"  {name:<{width}}  {_human(size):>9}" for name, size in info["files"].items()]
    return "\n".join(lines)


def _weight_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the safetensors headers (no weights read), else from the loaded state dict."""
    files = []
    if (directory / SAFE_WEIGHTS_NAME).is_file():
        files = [directory / SAFE_WEIGHTS_NAME]
    elif (directory / SAFE_WEIGHTS_INDEX_NAME).is_file():
        index = json.loads((directory / SAFE_WEIGHTS_INDEX_NAME).read_text())
        files = [directory / shard for shard in sorted(set(index["weight_map"].values()))]
    if files:
        from safetensors import safe_open

        shapes: dict[str, tuple[int, ...]] = {}
        for path in files:
            try:
                with safe_open(path, framework="pt") as f:
                    shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})  # noqa: SIM118
            except Exception as e:
                raise ValueError(f"{path} is corrupt or truncated ({type(e).__name__}: {e})") from None
        return shapes
    return {k: tuple(v.shape) for k, v in load_state_dict(directory).items()}  # .bin, TF or Flax weights


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
