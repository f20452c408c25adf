"""What every task pipeline shares: loading a model that has the task's head, tokenising with character
offsets, and running many inputs in batches of similar length.

A task subclass says how one input becomes model rows (`_preprocess`), what to keep from the model's
output for each row (`_forward`), and how those rows become the answer (`_postprocess`). The base class
sorts all rows of a call by length, pads each batch only to its own longest row, and puts the results back
in input order, so a list of mixed lengths wastes little compute on padding.

With `fallback_margin`, a reduced-precision model (int8, bf16, fp16) answers first and every input whose
answer it nearly tied (the task's `_margin` below the margin) is run again by an fp32 copy of the model,
so the answers are fp32's where reduced precision could have changed them.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import json
import logging
import math
import os
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from openalbert.checkpoint import DEFAULT_MODEL, DEFAULT_MODEL_DIR, as_device, as_dtype, resolve_weights
from openalbert.config import CONFIG_NAME
from openalbert.modeling import AlbertPreTrainedModel, cut_to_length

# A tokenizer with transformers' call surface (openalbert.tokenizer.AlbertTokenizer in practice).
Tokenizer = Any

TOKENIZER_FILES = ("spiece.model", "tokenizer.json")


# Where a pipeline's model comes from: PyTorch (the library's own classes), TensorFlow or JAX/Flax.
FRAMEWORKS = {"pt": "", "tf": "TF", "flax": "Flax"}  # framework -> class-name prefix
_MODULES = {"tf": "openalbert.modeling_tf", "flax": "openalbert.modeling_flax"}


class PipelineException(ValueError):
    """An input a pipeline cannot handle (fill-mask's text without a mask): transformers' class of the same
    name, with its `task` and `model`, and a ValueError."""

    def __init__(self, task: str, model: str, reason: str) -> None:
        super().__init__(reason)
        self.task, self.model = task, model


def framework_of(model: Any) -> str:
    """The framework of an openalbert model object: "tf", "flax" or "pt" (PyTorch)."""
    module = type(model).__module__
    return next((fw for fw, name in _MODULES.items() if module == name), "pt")


class ForeignModel:
    """A TensorFlow or Flax model as the pipelines see a PyTorch one: a call on torch tensors that returns
    torch tensors (on the CPU), with its config; the task code is the same for every framework.

    A Flax model is compiled once per input shape, so batches are padded to a multiple of `LENGTH_STEP`
    tokens: a few shapes serve every length (a first pass over a file of mixed lengths ran 2x faster, a
    second about 1.5x slower than with exact lengths). TensorFlow runs eagerly, as transformers' did (a
    tf.function was no faster here).
    """

    LENGTH_STEP = 16

    def __init__(self, model: Any, missing_weights: list[str] | None = None) -> None:
        self.model = model
        self.config = model.config
        self.device = torch.device("cpu")
        self.missing_weights = missing_weights or []

    def eval(self) -> ForeignModel:
        return self  # both frameworks run without dropout unless told to train

    def __call__(self, return_dict: bool = True, **batch: torch.Tensor) -> types.SimpleNamespace:
        # return_dict is taken as the PyTorch classes take it: the answer always is an object with fields
        T = batch["input_ids"].shape[-1]
        width = min(-(-T // self.LENGTH_STEP) * self.LENGTH_STEP, self.config.max_position_embeddings)
        # Right padding: ids, mask and segments 0, so the padded keys are masked out of attention.
        padded = {
            k: torch.nn.functional.pad(v, (0, max(width - T, 0))).cpu().numpy() for k, v in batch.items()
        }
        out = self.model(**padded)
        return types.SimpleNamespace(**{k: _to_torch(cut_to_length(k, _to_numpy(out[k]), T)) for k in out})


def _own_tokenizer(tokenizer: Any) -> Any:
    """transformers' slow AlbertTokenizer, as its users pass it, as openalbert's (the same ids, and the
    character offsets that the slow one cannot give): saved and read back, settings and added tokens kept."""
    if type(tokenizer).__module__.startswith("transformers.") and not getattr(tokenizer, "is_fast", True):
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            tokenizer.save_pretrained(directory)
            return load_tokenizer(directory)
    return tokenizer


def _refuse_pytorch_options(framework: str, *options: Any) -> None:
    if any(option is not None and option is not False for option in options):
        raise ValueError(
            f"device=, dtype=, quantization=, cuda_graphs= and fallback_margin= apply to PyTorch models; a {framework} "
            "model runs where its framework places it, in the precision it was built with"
        )


def _to_numpy(value: Any) -> Any:
    return tuple(_to_numpy(v) for v in value) if isinstance(value, tuple) else np.asarray(value)


def _to_torch(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_to_torch(v) for v in value)
    return torch.from_numpy(np.array(value, dtype=np.float32))


@dataclass
class Feature:
    """One row for the model: token ids and segment ids, plus what postprocessing needs (`meta`)."""

    input_ids: list[int]
    token_type_ids: list[int]
    meta: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    """Base class: `pipe(inputs, **params)` for one input or a list; `pipe.run(list, errors=...)` for streams."""

    task: ClassVar[str] = ""
    model_class: ClassVar[type[AlbertPreTrainedModel]]
    # Weight-name prefixes a usable checkpoint may lack (everything else must be in the checkpoint).
    optional_weights: ClassVar[tuple[str, ...]] = ()
    # What the head is, for the error raised when a checkpoint lacks it.
    head_description: ClassVar[str] = ""
    # Whether a line of `openalbert run` input is a JSON object (`parse_line`); a blank one is then skipped,
    # while a text task reads it as the empty text.
    json_input: ClassVar[bool] = False

    def __init__(
        self,
        model: AlbertPreTrainedModel,
        tokenizer: Tokenizer,
        *,
        device: torch.device | str | int | None = None,
        dtype: torch.dtype | str | None = None,
        batch_size: int | None = None,
        quantization: str | None = None,
        cuda_graphs: bool = False,
        fallback_margin: float | None = None,
        **params: Any,
    ) -> None:
        inner = model.model if isinstance(model, ForeignModel) else model
        framework = framework_of(inner)
        wanted = FRAMEWORKS[framework] + self.model_class.__name__
        if not (isinstance(inner, self.model_class) if framework == "pt" else type(inner).__name__ == wanted):
            got = f"{type(inner).__module__}.{type(inner).__name__}"
            hint = (
                "; pass openalbert's class or a checkpoint directory"
                if got.startswith("transformers.")
                else ""
            )
            raise TypeError(f"the {self.task} pipeline needs openalbert's {wanted}, got {got}{hint}")
        if tokenizer is None:
            raise ValueError(f"the {self.task} pipeline needs a tokenizer; pass tokenizer=")
        tokenizer = _own_tokenizer(tokenizer)
        if framework != "pt":
            _refuse_pytorch_options(framework, device, dtype, quantization, cuda_graphs, fallback_margin)
            model = model if isinstance(model, ForeignModel) else ForeignModel(model)
        device, dtype = as_device(device), as_dtype(dtype, model.config)
        self.fallback_model = None
        if fallback_margin is not None:
            self._check_fallback(model, fallback_margin, dtype, quantization)
            self.fallback_model = copy.deepcopy(model).to(device=device, dtype=torch.float32).eval()
        self.fallback_margin = fallback_margin
        self.fallback_counts = {"inputs": 0, "rerun": 0}
        if device is not None or dtype is not None:
            model = model.to(device=device, dtype=dtype)
        if quantization is not None:
            from openalbert.fast.quantize import apply_quantization

            model = apply_quantization(model, quantization)
        self.model = model.eval()
        if cuda_graphs:  # each batch shape's forward captured once and replayed (a GPU model)
            from openalbert.fast.cuda_graphs import CUDAGraphModel

            self.model = CUDAGraphModel(self.model)
        self.tokenizer = tokenizer
        self.binary_output = False  # (transformers' attribute, for its command line; kept, never read)
        self.batch_size = _check_batch_size(8 if batch_size is None else batch_size)
        self._params = params
        # Checked here, to fail at construction on a bad default rather than at the first call, and once: a
        # call that adds no parameter reuses them (and repeats none of their warnings, as in transformers).
        self._defaults = self.check_params(**params)

    @property
    def dtype(self) -> torch.dtype | None:
        """The model's dtype (transformers' pipelines have it, also as `torch_dtype`)."""
        return getattr(self.model, "dtype", None) if self.framework == "pt" else None

    torch_dtype = dtype

    @property
    def framework(self) -> str:
        """The model's framework: "pt", "tf" or "flax"."""
        return framework_of(self.model.model if isinstance(self.model, ForeignModel) else self.model)

    def predict(self, inputs: Any, **params: Any) -> Any:
        """The pipeline's call (transformers' scikit-learn-style name)."""
        return self(inputs, **params)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the model and its tokenizer into one directory, which `pipeline(task, model=dir)` loads."""
        model = self.model.model if isinstance(self.model, ForeignModel) else self.model
        model.save_pretrained(save_directory)
        self.tokenizer.save_pretrained(save_directory)

    # ---- loading ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        tokenizer: Tokenizer | str | os.PathLike | None = None,
        *,
        device: torch.device | str | int | None = None,
        dtype: torch.dtype | str | None = None,
        framework: str = "pt",
        hub: dict[str, Any] | None = None,
        loading: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Pipeline:
        """Load the checkpoint with this task's head (in `framework`: "pt", "tf" or "flax") and refuse it
        when the head's weights are missing. `hub`: the download's options (revision, token); `loading`: more
        keywords of the model's from_pretrained (config, attn_implementation...)."""
        directory = _model_directory(name_or_path, **(hub or {}))
        # With fallback_margin the model is converted to `dtype` after its fp32 copy is taken from the checkpoint.
        fallback = kwargs.get("fallback_margin") is not None
        if fallback and (loading or {}).get("quantization") is not None:
            # (the pipeline quantises after taking the fp32 copy that reruns near ties)
            loading = dict(loading)  # type: ignore[arg-type]
            kwargs["quantization"] = loading.pop("quantization")
        model = load_head(
            cls, directory, device=device, dtype=None if fallback else dtype, framework=framework, **(loading or {})
        )  # fmt: skip
        if fallback:
            kwargs["dtype"] = dtype
        if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(directory if tokenizer is None else tokenizer)
        return cls(model, tokenizer, **kwargs)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- running ---------------------------------------------------------------------------------------------

    def __call__(
        self, inputs: Any, *, batch_size: int | None = None, num_workers: int | None = None, **params: Any
    ) -> Any:
        """Run one input or a list; the output mirrors transformers' pipeline for the same task. A generator
        (any one-pass iterator) or a torch Dataset of inputs gives an iterator of results, as there.
        `num_workers` (transformers' DataLoader workers) changes nothing: inputs are prepared in this process."""
        del num_workers
        checked = self._call_params(params)
        if isinstance(inputs, (Iterator, torch.utils.data.Dataset)):
            return self._stream(
                inputs, checked, _check_batch_size(self.batch_size if batch_size is None else batch_size)
            )
        items, single = self._as_items(inputs)
        if not items:
            return []  # (an empty list of inputs, as transformers answers it)
        results = self._run(items, checked, batch_size, "raise", False)
        return self._format(inputs, results, single, params)

    def run(
        self,
        inputs: Sequence[Any],
        *,
        batch_size: int | None = None,
        errors: Literal["raise", "return"] = "raise",
        progress: bool = False,
        **params: Any,
    ) -> list[Any]:
        """Run a list of inputs and return one result per input, as `pipe(one_input)` would give it.

        With errors="return", an input that cannot be processed (no [MASK], a malformed QA dict...) gets
        its exception in place of a result and the others still run.
        """
        checked = self._call_params(params)
        return self._run_checked(list(inputs), checked, params, batch_size, errors, progress)

    def _stream(self, inputs: Any, checked: dict[str, Any], batch_size: int) -> Iterator[Any]:
        """Each input's result as an element of `pipe(list)` (transformers' iterators yield no single-input
        wrapping), computed one batch of inputs at a time: a lazy or endless source is read only as far as
        its results are taken. A Dataset with a length is read by index up to it."""
        if isinstance(inputs, torch.utils.data.Dataset) and hasattr(inputs, "__len__"):
            source = (inputs[i] for i in range(len(inputs)))
        else:
            source = iter(inputs)
        while chunk := list(itertools.islice(source, batch_size)):
            yield from self._run(chunk, checked, batch_size, "raise", False)

    def _call_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The checked parameters of a call: the pipeline's defaults with the call's `params` on top."""
        if not params:
            return self._defaults
        return self.check_params(**self._merge_params(params))

    def _merge_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The pipeline's default parameters overridden by a call's, before they are checked."""
        return {**self._params, **params}

    def _run_checked(
        self,
        items: list[Any],
        checked: dict[str, Any],
        call_params: dict[str, Any],
        batch_size: int | None = None,
        errors: Literal["raise", "return"] = "raise",
        progress: bool = False,
    ) -> list[Any]:
        """`run` with parameters already checked by `_call_params`: a stream checks them once, not per chunk
        (a warning such as fill-mask's about a target word then shows once)."""
        results = self._run(items, checked, batch_size, errors, progress)
        return [
            r if isinstance(r, Exception) else self._format(x, [r], True, call_params)
            for x, r in zip(items, results)
        ]

    def _run(
        self,
        items: list[Any],
        params: dict[str, Any],
        batch_size: int | None,
        errors: str,
        progress: bool,
    ) -> list[Any]:
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        results: list[Any] = [None] * len(items)
        checked: list[Any] = [None] * len(items)
        rows: list[Feature] = []
        owner: list[int] = []
        for i, item in enumerate(items):
            try:
                checked[i] = self._check_input(item)
                features = self._preprocess(checked[i], params)
                self._check_lengths(features)
            except (ValueError, TypeError, KeyError) as e:
                if errors == "raise":
                    raise
                results[i] = e
                continue
            rows.extend(features)
            owner.extend([i] * len(features))
        batch_size = _check_batch_size(self.batch_size if batch_size is None else batch_size)
        outputs = self._forward_sorted(self.model, rows, batch_size, progress)
        if self.fallback_model is not None:
            self._rerun_near_ties(rows, owner, outputs, params, batch_size)
        grouped: dict[int, tuple[list[Feature], list[Any]]] = {}
        for i, row, out in zip(owner, rows, outputs):
            grouped.setdefault(i, ([], []))
            grouped[i][0].append(row)
            grouped[i][1].append(out)
        for i, item in enumerate(checked):
            if not isinstance(results[i], Exception):
                feats, outs = grouped.get(i, ([], []))
                results[i] = self._postprocess(item, feats, outs, params)
        return results

    def _rerun_near_ties(
        self,
        rows: list[Feature],
        owner: list[int],
        outputs: list[Any],
        params: dict[str, Any],
        batch_size: int,
    ) -> None:
        """Replace, in `outputs`, the rows of every input whose margin is below `fallback_margin` by the fp32
        model's outputs."""
        by_input: dict[int, list[int]] = {}
        for k, i in enumerate(owner):
            by_input.setdefault(i, []).append(k)
        again = [
            k
            for ks in by_input.values()
            if self._margin([rows[k] for k in ks], [outputs[k] for k in ks], params) < self.fallback_margin
            for k in ks
        ]
        self.fallback_counts["inputs"] += len(by_input)
        self.fallback_counts["rerun"] += len({owner[k] for k in again})
        if again:
            for k, out in zip(
                again, self._forward_sorted(self.fallback_model, [rows[k] for k in again], batch_size, False)
            ):
                outputs[k] = out

    def _check_fallback(
        self, model: Any, margin: float, dtype: torch.dtype | None, quantization: str | None
    ) -> None:
        if type(self)._margin is Pipeline._margin:
            raise ValueError(
                f"fallback_margin applies to tasks whose answer is a choice (fill-mask, text-classification, "
                f"token-classification, multiple-choice), not to {self.task}"
            )
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
            raise ValueError(f"fallback_margin must be a number >= 0 (a logit gap), got {margin!r}")
        if model.__dict__.get("_quantized"):
            raise ValueError(
                "fallback_margin reruns near ties on an fp32 copy of the model, and this model is int8 already: "
                "pass the fp32 model (or checkpoint) with quantization='int8', and the pipeline quantises it"
            )
        reduced = quantization is not None or (dtype or model.dtype) in (torch.bfloat16, torch.float16)
        if not reduced:
            raise ValueError(
                "fallback_margin reruns a reduced-precision model's near ties in fp32; this model runs in fp32: "
                "add quantization='int8' or dtype='bfloat16'/'float16' (openalbert run: --quantize int8, --dtype "
                "bfloat16)"
            )

    def _forward_sorted(self, model: Any, rows: list[Feature], batch_size: int, progress: bool) -> list[Any]:
        """Run rows shortest first in padded batches through `model`; return their outputs in the original
        order."""
        from tqdm.auto import tqdm

        order = sorted(range(len(rows)), key=lambda k: len(rows[k].input_ids))
        outputs: list[Any] = [None] * len(rows)
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        with torch.inference_mode():
            for batch in tqdm(batches, desc=self.task, unit="batch", disable=not progress, leave=False):
                features = [rows[k] for k in batch]
                for k, out in zip(batch, self._forward(model, self._collate(features), features)):
                    outputs[k] = out
        return outputs

    def _collate(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        """Right-pad a batch to its longest row: pad id, attention 0, segment 0."""
        width = max(len(f.input_ids) for f in features)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(features), width), pad, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        types = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f.input_ids)
            ids[i, :n] = torch.tensor(f.input_ids)
            mask[i, :n] = 1
            types[i, :n] = torch.tensor(f.token_type_ids)
        device = self.device
        return {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "token_type_ids": types.to(device),
        }

    def _check_lengths(self, features: list[Feature]) -> None:
        limit = self.config.max_position_embeddings
        for f in features:
            if len(f.input_ids) > limit:
                raise ValueError(
                    f"the input is {len(f.input_ids)} tokens long, more than the model's limit of {limit} "
                    "(max_position_embeddings); shorten it"
                )

    def check_params(self, **params: Any) -> dict[str, Any]:
        """Validate call parameters and fill in defaults: TypeError names an unknown one, ValueError a bad value."""
        known = inspect.signature(self._check_params).parameters
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise TypeError(
                f"the {self.task} pipeline got unknown parameters {unknown}; it takes {sorted(known) or 'none'}"
            )
        return self._check_params(**params)

    # ---- what a task defines -------------------------------------------------------------------------------

    def _check_params(self) -> dict[str, Any]:
        """The task's parameters, as keyword arguments with defaults -> the validated parameter dict."""
        return {}

    def _as_items(self, inputs: Any) -> tuple[list[Any], bool]:
        """Split the call's input into a list of items and whether it was a single one."""
        if isinstance(inputs, (list, tuple)):
            return list(inputs), False
        return [inputs], True

    def _check_input(self, item: Any) -> Any:
        if not isinstance(item, str):
            raise TypeError(f"the {self.task} pipeline takes text (str), got {type(item).__name__}")
        return item

    def _preprocess(self, item: Any, params: dict[str, Any]) -> list[Feature]:
        raise NotImplementedError

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], features: list[Feature]) -> list[Any]:
        """`model`'s output for each row of the batch: the pipeline's model, or its fp32 copy."""
        raise NotImplementedError

    def _margin(self, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> float:
        """How far one input's answer is from changing, as a gap between logits (the smallest one where it
        has several choices): with `fallback_margin`, an input below it is run again in fp32. A task whose
        answer is no choice leaves this undefined and refuses `fallback_margin`."""
        raise NotImplementedError

    def _postprocess(
        self, item: Any, features: list[Feature], outputs: list[Any], params: dict[str, Any]
    ) -> Any:
        raise NotImplementedError

    def _format(self, inputs: Any, results: list[Any], single: bool, call_params: dict[str, Any]) -> Any:
        """Shape the per-item results as transformers returns them for `inputs` (single input vs list)."""
        return results[0] if single else results

    @classmethod
    def parse_line(cls, line: str) -> Any:
        """One line of `openalbert run` input -> one pipeline input (plain text by default)."""
        return line

    # ---- tokenising ---------------------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids and character offsets of each text, without special tokens."""
        # verbose=False: a text longer than the model is the task's to cut or window, not a tokenizer warning.
        enc = self.tokenizer(
            list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return [
            (list(ids), [(int(a), int(b)) for a, b in offsets])
            for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"])
        ]

    def _build(
        self, first: list[int], second: list[int] | None = None, *, special_tokens: bool = True, **meta: Any
    ) -> Feature:
        """[CLS] first [SEP] (second [SEP]), segment ids 0 then 1, as ALBERT was trained; without
        `special_tokens`, first (second) alone, as the fast tokenizer gives them."""
        tok = self.tokenizer
        cls, sep = ([tok.cls_token_id], [tok.sep_token_id]) if special_tokens else ([], [])
        ids = [*cls, *first, *sep]
        types = [0] * len(ids)
        if second is not None:
            ids += [*second, *sep]
            types += [1] * (len(second) + len(sep))
        return Feature(ids, types, meta)

    def _max_length(self) -> int:
        """The longest sequence the model takes: the tokenizer's limit capped by the position table."""
        limit = self.config.max_position_embeddings
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        return min(limit, tok_limit) if isinstance(tok_limit, int) and tok_limit > 0 else limit


# ---- helpers shared by the tasks ------------------------------------------------------------------------


def top_two_gap(logits: torch.Tensor) -> float:
    """The smallest gap between the best and second-best logit over the rows of `logits` (..., choices);
    infinite when there are fewer than two choices or no rows."""
    if logits.shape[-1] < 2 or logits.numel() == 0:
        return math.inf
    best = logits.float().topk(2, dim=-1).values
    return float((best[..., 0] - best[..., 1]).min())


def json_line(line: str, opener: str) -> Any:
    """The JSON value of an `openalbert run` line that starts with `opener` ("{", "["), or None where it
    holds none (the line is then plain text)."""
    if not line.startswith(opener):
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def tokenizer_options(options: dict[str, Any] | None, name: str, allowed: Sequence[str]) -> dict[str, Any]:
    """transformers' tokenizer keywords that a pipeline takes (in `name`: tokenize_kwargs, tokenizer_kwargs):
    the `allowed` ones, a TypeError naming any other."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(allowed[:-1]) + f" and {allowed[-1]}"
        raise TypeError(f"{name} takes {listed} here, not {unknown}")
    return options


def check_max_length(max_length: Any, minimum: int, why: str) -> None:
    """A ValueError for a max_length that is not an int of at least `minimum` (`why`: what must fit)."""
    if max_length is not None and (not is_int(max_length) or max_length < minimum):
        raise ValueError(f"max_length must be an int >= {minimum} ({why}), got {max_length!r}")


def truncate_pair(
    first: list[Any], second: list[Any] | None, budget: int, mode: str = "longest_first"
) -> tuple[list[Any], list[Any] | None]:
    """Cut tokens off the end of the longer sequence (the second on a tie) until both fit in `budget`, as
    transformers' "longest_first"; with "only_first" or "only_second", off that sequence of a pair alone (a
    ValueError when the other leaves it no room)."""
    if budget < 0:
        raise ValueError(f"max_length is too small to hold the special tokens (budget {budget})")
    if second is None:
        return first[:budget], None
    if mode in ("only_first", "only_second"):
        texts = [first, second]
        cut, kept = (0, 1) if mode == "only_first" else (1, 0)
        if len(texts[kept]) >= budget and len(first) + len(second) > budget:
            raise ValueError(
                f"truncation={mode!r} cannot fit this input: the text it leaves whole holds {len(texts[kept])} "
                f"tokens, where the pair has room for {budget}; use truncation='longest_first'"
            )
        texts[cut] = texts[cut][: budget - len(texts[kept])]
        return texts[0], texts[1]
    n1, n2 = len(first), len(second)
    while n1 + n2 > budget:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    return first[:n1], second[:n2]


def tokens_to_string(tokens: list[str]) -> str:
    """Join SentencePiece tokens into text: '▁' becomes a space, dropped in the first token."""
    out = []
    for i, tok in enumerate(tokens):
        out.append(tok.replace("\u2581", "") if i == 0 else tok.replace("\u2581", " "))
    return "".join(out)


def is_int(value: Any) -> bool:
    """Whether `value` is an int and not a bool: bool is a subclass of int, and top_k=True is no count."""
    return isinstance(value, int) and not isinstance(value, bool)


_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def as_bool(name: str, value: Any, default: bool) -> bool:
    """A boolean parameter from a bool, 1/0 or a word (true/false, yes/no, on/off, any case); None means
    `default`, as transformers reads None. Strict because a bare string from the command line would
    otherwise pass as true: bool("no") is True."""
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if is_int(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
    raise ValueError(f"{name} must be a boolean (true/false, yes/no, on/off or 1/0), got {value!r}")


def _check_batch_size(batch_size: int) -> int:
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


# ---- loading -------------------------------------------------------------------------------------------


def _model_directory(name_or_path: str | os.PathLike, **hub: Any) -> Path:
    """Resolve a model name; say which files are missing when the embedded default model is incomplete."""
    if str(name_or_path) == DEFAULT_MODEL:
        needed = (CONFIG_NAME, "model.safetensors", "spiece.model")
        missing = [name for name in needed if not (DEFAULT_MODEL_DIR / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"the embedded default model {DEFAULT_MODEL} is not installed: {', '.join(missing)} missing "
                f"from {DEFAULT_MODEL_DIR}; pass a model directory or hub id (--model)"
            )
        return DEFAULT_MODEL_DIR
    return resolve_weights(name_or_path, **hub)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence the loader's missing-weight warnings: load_head reports what matters as an error."""
    logger = logging.getLogger("openalbert")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_head(
    pipeline_class: type[Pipeline],
    directory: str | os.PathLike,
    *,
    device: torch.device | str | int | None = None,
    dtype: torch.dtype | str | None = None,
    framework: str = "pt",
    **options: Any,
) -> AlbertPreTrainedModel | ForeignModel:
    """Build the task's model from a checkpoint, in `framework` (`options`: more keywords of its
    from_pretrained); ValueError if the checkpoint lacks the task's head."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {sorted(FRAMEWORKS)}, got {framework!r}")
    try:
        with _quiet_loading():
            if framework == "pt":
                cls = pipeline_class.model_class
                model, info = cls.from_pretrained(
                    directory, dtype=dtype, device=device, output_loading_info=True, **options
                )
            else:
                _refuse_pytorch_options(framework, device, dtype)
                import importlib

                module = importlib.import_module(_MODULES[framework])
                cls = getattr(module, FRAMEWORKS[framework] + pipeline_class.model_class.__name__)
                model, info = cls.from_pretrained(directory, output_loading_info=True, **options)
    except ValueError as e:
        raise ValueError(f"{directory} cannot be used for {pipeline_class.task}: {e}") from None
    missing = [k for k in info["missing_keys"] if not k.startswith(pipeline_class.optional_weights)]
    if missing:
        arch = model.config.extra.get("architectures") or ["(not recorded)"]
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ValueError(
            f"{directory} has no {pipeline_class.head_description} for {pipeline_class.task}: the checkpoint "
            f"(architectures {', '.join(arch)}) lacks {shown}; use a checkpoint trained for this task"
        )
    if framework != "pt":
        return ForeignModel(model, list(info["missing_keys"]))
    model.missing_weights = list(info["missing_keys"])  # the optional weights that were absent
    return model


def load_tokenizer(name_or_path: str | os.PathLike) -> Tokenizer:
    """openalbert's AlbertTokenizer from a model directory (or anything its from_pretrained accepts)."""
    path = Path(name_or_path)
    if path.is_dir() and not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"no tokenizer in {path}: expected {' or '.join(TOKENIZER_FILES)}; pass tokenizer= (a directory "
            "or an AlbertTokenizer)"
        )
    from openalbert.tokenizer import AlbertTokenizer

    return AlbertTokenizer.from_pretrained(name_or_path)
