"""ONNX export of any openalbert model, ONNX Runtime int8 quantisation, and a small ONNX Runtime session.

The graph is traced by torch's TorchScript-based exporter in fp32 through the padded attention path
(every position computed, as transformers does), on a padded example batch so that the attention-mask
branch is in the graph. Inputs are `input_ids`, `attention_mask`, `token_type_ids` (int64) with dynamic
batch and sequence axes (multiple choice: batch, choices, sequence); outputs are named after the
model's output fields. The int8 model is the ONNX Runtime peer of the speed benchmarks.
Needs the `onnx` extra: `pip install openalbert[onnx]`.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from openalbert.config import CONFIG_NAME, AlbertConfig
from openalbert.fast.quantize import Int8Linear, has_vnni
from openalbert.modeling import AlbertPreTrainedModel

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
ONNX_NAME = "model.onnx"
ONNX_INT8_NAME = "model_int8.onnx"
# Fields of the output dataclasses that are not exported: the loss needs labels, the others are opt-in.
_NOT_EXPORTED = ("loss", "hidden_states", "attentions")
_PER_TOKEN_2D = ("start_logits", "end_logits")
# The opsets this model exports at with torch's TorchScript-based exporter: attention is
# scaled_dot_product_attention, which it exports from opset 14; it supports opsets up to 20 (torch 2.13: past
# that it warns and writes opset-20 graphs stamped with the newer number, past 23 it fails).
MIN_OPSET, MAX_OPSET = 14, 20


def _check_opset(opset: int) -> None:
    if not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET} (the ONNX opsets torch's exporter "
            f"writes this model in), got {opset!r}; pass one in that range, or leave the default 17"
        )


def _check_not_int8(model: nn.Module) -> None:
    # quantize_int8 may have been given the model or only its base model: look for its layers.
    if any(isinstance(module, Int8Linear) for module in model.modules()):
        raise ValueError(
            "this model was quantised to int8 (quantize_int8 / quantization='int8'), whose packed int8 "
            "weights torch's ONNX exporter cannot trace; export the fp32 model (loaded without quantization) "
            "and quantise the ONNX file instead: quantize_onnx_int8, or `openalbert export onnx --int8`"
        )


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{module} is needed for ONNX export and inference: pip install openalbert[onnx]"
        ) from e


# ---- export -----------------------------------------------------------------------------------------------


class _Exportable(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> the named output fields, as the tuple ONNX needs."""

    def __init__(self, model: AlbertPreTrainedModel, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        )
        return tuple(out[name] for name in self.names)


@contextmanager
def _export_ready(model: AlbertPreTrainedModel) -> Iterator[AlbertPreTrainedModel]:
    """The model as export needs it (fp32, CPU, eval mode, padded attention); the caller's model is left as
    it was. A model in another dtype or on another device is exported from a copy."""
    param = next(model.parameters())
    if param.dtype != torch.float32 or param.device.type != "cpu":
        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    modes = [(m, m.training) for m in model.modules()]
    # The unpadded attention path gathers real tokens by data-dependent indices, which a trace would
    # freeze to the example batch; the padded path is a fixed graph. Older models have no switch.
    base = getattr(model, model.base_model_prefix, model)
    previous = getattr(getattr(base, "encoder", None), "attn_implementation", None)
    switch = previous is not None and hasattr(model, "set_attn_implementation")
    try:
        model.eval()
        if switch:
            model.set_attn_implementation("sdpa")
        yield model
    finally:
        if switch:
            model.set_attn_implementation(previous)
        for module, training in modes:
            module.training = training


def _example_inputs(model: AlbertPreTrainedModel, seq_len: int) -> tuple[torch.Tensor, ...]:
    """A batch of two, the second padded: the mask branch is only traced when some position is masked."""
    from openalbert.heads import AlbertForMultipleChoice

    config = model.config
    shape = (2, 3, seq_len) if isinstance(model, AlbertForMultipleChoice) else (2, seq_len)
    input_ids = torch.arange(int(np.prod(shape))).reshape(shape) % (config.vocab_size - 1) + 1
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[1, ..., seq_len // 2 :] = 0
    token_type_ids = torch.zeros(shape, dtype=torch.long)
    if config.type_vocab_size > 1:
        token_type_ids[..., seq_len // 2 :] = 1
    return input_ids, attention_mask, token_type_ids


def _dynamic_axes(
    model: AlbertPreTrainedModel, outputs: dict[str, torch.Tensor]
) -> dict[str, dict[int, str]]:
    from openalbert.heads import AlbertForMultipleChoice

    choice = isinstance(model, AlbertForMultipleChoice)
    inputs = {0: "batch", 1: "choices", 2: "sequence"} if choice else {0: "batch", 1: "sequence"}
    axes = {name: dict(inputs) for name in INPUT_NAMES}
    for name, tensor in outputs.items():
        axes[name] = {0: "batch"}
        if choice:
            axes[name][1] = "choices"  # logits (B, N)
        elif tensor.dim() == 3 or name in _PER_TOKEN_2D:
            axes[name][1] = "sequence"  # (B, T, ...), start/end logits (B, T)
    return axes


def export_onnx(
    model: AlbertPreTrainedModel, path: str | os.PathLike, *, opset: int = 17, max_length: int | None = None
) -> Path:
    """Write `model` (AlbertModel or any head) to the ONNX file `path` in fp32; return the path.

    `max_length` is the sequence length of the example batch that is traced (default 16, at most
    max_position_embeddings); the exported graph takes any batch size and any length up to
    max_position_embeddings. The model itself is left in the mode and attention path it was in. `opset` is
    from MIN_OPSET to MAX_OPSET (14 to 20). A model quantised by `quantize_int8` is refused: export the fp32
    model, then `quantize_onnx_int8`.
    """
    _check_opset(opset)
    _check_not_int8(model)
    _require("onnx")
    config: AlbertConfig = model.config
    seq_len = max_length or min(16, config.max_position_embeddings)
    if not 2 <= seq_len <= config.max_position_embeddings:
        raise ValueError(f"max_length must be in [2, {config.max_position_embeddings}], got {seq_len}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _export_ready(model) as ready, torch.no_grad():
        args = _example_inputs(ready, seq_len)
        out = ready(*args, return_dict=True)  # (named outputs, whatever config.return_dict says)
        outputs = {name: out[name] for name in out if name not in _NOT_EXPORTED}
        with warnings.catch_warnings():
            # The trace freezes the Python-side input checks (expected). This exporter is deprecated in
            # favour of the torch.export-based one (which needs onnxscript) but is still in torch 2.13.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            torch.onnx.export(
                _Exportable(ready, list(outputs)).eval(),
                args,
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=list(outputs),
                dynamic_axes=_dynamic_axes(ready, outputs),
                opset_version=int(opset),
                do_constant_folding=True,
                dynamo=False,
            )
    return path


def export_onnx_dir(
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    opset: int = 17,
    max_length: int | None = None,
    int8: bool = False,
    reduce_range: bool | None = None,
) -> Path:
    """Export a checkpoint (directory, hub id, or the default model) to a self-contained folder.

    The folder gets `model.onnx` (the class named by config.json's `architectures`, else AlbertModel),
    the checkpoint's config.json and tokenizer files, and with `int8` also `model_int8.onnx` (with
    `reduce_range` as `quantize_onnx_int8` takes it).
    """
    from openalbert.checkpoint import resolve_path
    from openalbert.heads import MODEL_CLASSES
    from openalbert.modeling import AlbertModel
    from openalbert.tokenizer import TOKENIZER_FILES

    _check_opset(opset)  # before the model is loaded
    source = resolve_path(model)
    config = AlbertConfig.from_pretrained(source)
    architectures = config.extra.get("architectures") or []
    cls = MODEL_CLASSES.get(architectures[0], AlbertModel) if architectures else AlbertModel
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    export_onnx(cls.from_pretrained(source), output_dir / ONNX_NAME, opset=opset, max_length=max_length)
    own = output_dir.resolve() == source.resolve()  # (exported into the model's own directory)
    for name in (CONFIG_NAME, *TOKENIZER_FILES):
        target = output_dir / name
        if (source / name).is_file() and not (target.exists() and os.path.samefile(source / name, target)):
            shutil.copyfile(source / name, target)
        elif not own and not (source / name).is_file():
            target.unlink(missing_ok=True)  # an earlier export's, of another model
    if int8:
        quantize_onnx_int8(
            output_dir / ONNX_NAME, output_dir / ONNX_INT8_NAME, config=config, reduce_range=reduce_range
        )
    else:  # an earlier export's int8 model would not be this model's
        (output_dir / ONNX_INT8_NAME).unlink(missing_ok=True)
    return output_dir


# ---- int8 ---------------------------------------------------------------------------------------------------


def quantize_onnx_int8(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    config: AlbertConfig | None = None,
    reduce_range: bool | None = None,
) -> Path:
    """ONNX Runtime's int8 model of `src`: its BERT graph fusions, then dynamic int8 weight quantisation.

    The fusions (onnxruntime.transformers.optimizer, model_type "bert") need the head count and hidden
    size: from `config`, else from config.json beside `src`, else detected from the graph. On exports of
    this library they fuse SkipLayerNormalization (two per layer) and FastGelu; Attention (then
    QAttention) fuses only where the model builds its additive mask as `(1 - mask) * min` (ORT's BERT
    pattern), as modeling.py did before the unpadded path. Models with relative positions have no
    position embedding to add, which ORT's EmbedLayerNormalization assumes (it then reads out of range),
    so that fusion is left off for them. Weights are quantised to QInt8 per channel, activations
    dynamically at run time.

    `reduce_range` (ONNX Runtime's option) quantises the weights to 7 bits. Without VNNI, x86 int8 kernels
    sum pairs of uint8 x int8 products in int16, which 8-bit weights saturate; None (the default) chooses
    7 bits where this CPU has no VNNI (AVX512-VNNI or AVX-VNNI). A model quantised with 8 bits on a VNNI CPU
    loses accuracy on a CPU without it: pass True for a model that will run elsewhere.
    """
    onnx = _require("onnx")
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    src, dst = Path(src), Path(dst)
    if config is None and (src.parent / CONFIG_NAME).is_file():
        config = AlbertConfig.from_json_file(src.parent / CONFIG_NAME)
    heads, hidden = (config.num_attention_heads, config.hidden_size) if config is not None else (0, 0)
    options = FusionOptions("bert")
    # Without a config the position type is unknown: leave the embedding fusion off (a small loss at most).
    options.enable_embed_layer_norm = config is not None and config.position_embedding_type == "absolute"
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        fused = Path(tmp) / "fused.onnx"
        optimize_model(
            str(src), model_type="bert", num_heads=heads, hidden_size=hidden, optimization_options=options
        ).save_model_to_file(str(fused))
        with _quiet_root_logger():
            quantize_dynamic(
                fused,
                dst,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=not has_vnni() if reduce_range is None else reduce_range,
                # Shape inference cannot type the outputs of the fused (com.microsoft) nodes; they are fp32.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    return dst


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # quantize_dynamic logs a warning on the root logger advising a pre-processing step (shape inference
    # and graph optimisation) that the fusion step has already done.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# ---- inference ----------------------------------------------------------------------------------------------


class OnnxSession:
    """An ONNX Runtime CPU session on an exported model, with `run` taking and returning named arrays."""

    def __init__(self, path: str | os.PathLike, threads: int = 2) -> None:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(
        self,
        input_ids: Any,
        attention_mask: Any | None = None,
        token_type_ids: Any | None = None,
    ) -> dict[str, np.ndarray]:
        """Run on int arrays or tensors of shape (B, T) ((B, N, T) for multiple choice); missing masks
        and token types are all ones and all zeros."""
        input_ids = _int64(input_ids)
        attention_mask = np.ones_like(input_ids) if attention_mask is None else _int64(attention_mask)
        token_type_ids = np.zeros_like(input_ids) if token_type_ids is None else _int64(token_type_ids)
        feeds = dict(zip(INPUT_NAMES, (input_ids, attention_mask, token_type_ids)))
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))


def _int64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.int64)


def onnx_session(path: str | os.PathLike, threads: int = 2) -> OnnxSession:
    """An `OnnxSession` on `path` with `threads` intra-op threads and all graph optimisations."""
    return OnnxSession(path, threads)
