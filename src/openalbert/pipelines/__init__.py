"""Task pipelines: `pipeline(task, model=...)` returns a callable that takes text and returns answers.

The tasks and their outputs follow transformers' (v4) pipelines of the same name, so code written for
`transformers.pipeline("fill-mask", ...)` runs unchanged; multiple-choice, which transformers lacks, has
an output of its own (see multiple_choice.py).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from openalbert.checkpoint import DEFAULT_MODEL, as_device, placement
from openalbert.pipelines.base import Feature, Pipeline, PipelineException, load_head, load_tokenizer
from openalbert.pipelines.feature_extraction import FeatureExtractionPipeline
from openalbert.pipelines.fill_mask import FillMaskPipeline
from openalbert.pipelines.multiple_choice import MultipleChoicePipeline
from openalbert.pipelines.question_answering import QuestionAnsweringPipeline
from openalbert.pipelines.text_classification import TextClassificationPipeline
from openalbert.pipelines.token_classification import TokenClassificationPipeline

TASKS: dict[str, type[Pipeline]] = {
    cls.task: cls
    for cls in (
        FillMaskPipeline,
        TextClassificationPipeline,
        TokenClassificationPipeline,
        QuestionAnsweringPipeline,
        MultipleChoicePipeline,
        FeatureExtractionPipeline,
    )
}
# transformers' other names for the same tasks.
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}


def pipeline_class(task: str) -> type[Pipeline]:
    """The pipeline class of a task name (aliases such as "ner" accepted)."""
    name = ALIASES.get(task, task)
    if name not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {sorted(TASKS)} (aliases {sorted(ALIASES)})")
    return TASKS[name]


def pipeline(
    task: str,
    model: str | os.PathLike | Any | None = None,
    tokenizer: Any | None = None,
    device: torch.device | str | int | None = None,
    dtype: torch.dtype | str | None = None,
    framework: str | None = None,
    torch_dtype: torch.dtype | str | None = None,
    device_map: Any = None,
    *,
    config: Any = None,
    model_kwargs: dict[str, Any] | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    use_fast: bool | None = None,
    trust_remote_code: bool | None = None,
    binary_output: bool = False,
    **kwargs: Any,
) -> Pipeline:
    """Build the pipeline for `task` from a model name, directory or model object.

    `model=None` means the embedded default model, for fill-mask and feature-extraction. `device` takes "cpu",
    "cuda", "cuda:1" or an index (-1 = CPU); `dtype` "float32", "bfloat16", "float16" or a torch dtype.
    Other keyword arguments (`batch_size`, `top_k`, `aggregation_strategy`...) become the defaults of
    every call. `framework` ("pt", "tf" or "flax") says which classes load a model named by path or hub id
    (default PyTorch); a model object's own framework is used as it is. `torch_dtype` and `device_map` are
    dtype and device by transformers' names (`checkpoint.placement`).

    As in transformers, a model loaded by name takes `config` and `model_kwargs` (its from_pretrained's
    keywords, e.g. {"attn_implementation": "sdpa"}), and the hub's `revision` and `token`. `use_fast` and
    `trust_remote_code` change nothing (one tokenizer: the slow one's ids, with offsets; no remote code);
    `binary_output` is kept as the pipeline's attribute.
    """
    del use_fast, trust_remote_code
    cls = pipeline_class(task)
    hub = {k: v for k, v in (("revision", revision), ("token", token)) if v is not None}
    loading = dict(model_kwargs or {}) | ({"config": config} if config is not None else {})
    dtype, device = placement(dtype, device, torch_dtype=torch_dtype, device_map=device_map)
    device = as_device(device)  # a device this machine lacks is reported as such, before any loading
    if model is None:
        if cls not in (FillMaskPipeline, FeatureExtractionPipeline):
            raise ValueError(
                f"{cls.task} needs a model (model= / --model): the embedded default model {DEFAULT_MODEL} "
                "has no fine-tuned head for it"
            )
        model = DEFAULT_MODEL
    if isinstance(model, (str, os.PathLike)):
        pipe = cls.from_pretrained(
            model, tokenizer, device=device, dtype=dtype, framework=framework or "pt", hub=hub, loading=loading,
            **kwargs,
        )  # fmt: skip
        pipe.binary_output, pipe.task = binary_output, task  # (the name asked for, as transformers keeps it)
        return pipe
    if loading or hub:
        raise ValueError(
            "config=, model_kwargs=, revision= and token= apply to a model loaded by name; this one is built"
        )
    if tokenizer is None:
        raise ValueError(
            "a model object needs its tokenizer: pass tokenizer= (an AlbertTokenizer or a directory)"
        )
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer)
    pipe = cls(model, tokenizer, device=device, dtype=dtype, **kwargs)
    pipe.binary_output, pipe.task = binary_output, task
    return pipe


__all__ = [
    "ALIASES",
    "TASKS",
    "FeatureExtractionPipeline",
    "Feature",
    "FillMaskPipeline",
    "MultipleChoicePipeline",
    "Pipeline",
    "PipelineException",
    "QuestionAnsweringPipeline",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "load_head",
    "load_tokenizer",
    "pipeline",
    "pipeline_class",
]
