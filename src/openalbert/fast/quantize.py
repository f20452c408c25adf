"""Dynamic int8 quantisation of ALBERT's shared layer.

ALBERT runs one group of weights through every layer, so quantising that group (7M weights for
albert-base, 7 MB in int8) makes every layer's GEMMs int8: weights are quantised once, per output
channel; activations per call, per tensor (dynamic quantisation). On CPUs with VNNI the int8 GEMMs
run about twice as fast as fp32 ones. The embeddings, the pooler and the heads stay in fp32, so the
vocabulary projection of fill-mask is not quantised.

A quantised model is for inference: it has no gradients and `save_pretrained` refuses it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from openalbert import cpu_kernels
from openalbert.linear import Linear, activate_and_add
from openalbert.modeling import AlbertAttention, AlbertPreTrainedModel


class Int8Linear(nn.Module):
    """A `Linear` run as a dynamic int8 GEMM, with the same call (activation, residual).

    Given several linears that read the same input (a layer's queries, keys and values), it is one GEMM
    whose output holds theirs side by side: the input is quantised once, with the scale each of them
    would have chosen for it, so the result equals theirs concatenated, bit for bit."""

    def __init__(self, *linears: nn.Linear) -> None:
        super().__init__()
        self.in_features = linears[0].in_features
        self.out_features = sum(linear.out_features for linear in linears)
        weight = torch.cat([linear.weight.detach().float().cpu() for linear in linears])
        scale = channel_scales(weight).double()
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        biases = [linear.bias for linear in linears]
        bias = None if biases[0] is None else torch.cat([b.detach().float().cpu() for b in biases])
        with warnings.catch_warnings():  # torch marks its quantised tensor types as deprecated
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def forward(
        self, x: torch.Tensor, activation: str | None = None, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        shape = x.shape
        out = torch.ops.quantized.linear_dynamic(x.reshape(-1, shape[-1]).float(), self._packed, False)
        return activate_and_add(out.view(*shape[:-1], self.out_features).to(x.dtype), activation, residual)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 dynamic"


def channel_scales(weight: torch.Tensor) -> torch.Tensor:
    """The int8 step of each output channel (row) of a weight: its largest magnitude maps to 127, or to 63
    where PyTorch's int8 GEMMs have no VNNI (see `weight_levels`)."""
    return (weight.abs().amax(dim=1) / weight_levels()).clamp_min(1e-12)


def quantize_int8(model: AlbertPreTrainedModel) -> AlbertPreTrainedModel:
    """Replace every linear layer of the encoder (the shared layer groups and the E -> H map) by an
    `Int8Linear`, in place, and return the model, in eval mode. CPU only. Each attention layer also gets
    one `Int8Linear` for its queries, keys and values together (`qkv`), which serves wherever they are
    computed for every position; `query`, `key` and `value` stay for attention at a few positions."""
    if model.device.type != "cpu":
        raise ValueError(f"int8 dynamic quantisation runs on the CPU; the model is on {model.device}")
    _select_engine()
    base = getattr(model, model.base_model_prefix, model)
    encoder = base.encoder
    for module in list(encoder.modules()):
        if isinstance(module, AlbertAttention):  # one GEMM for its queries, keys and values (its _qkv)
            module.qkv = Int8Linear(module.query, module.key, module.value)
    for module in list(encoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Linear):
                setattr(module, name, Int8Linear(child))
    model.eval()
    model.__dict__["_quantized"] = "int8"
    return model


def apply_quantization(model: AlbertPreTrainedModel, quantization: str | None) -> AlbertPreTrainedModel:
    """The `quantization=` option of `from_pretrained` and `pipeline`: None leaves the model as it is."""
    if quantization is None:
        return model
    if quantization != "int8":
        raise ValueError(f"quantization must be 'int8' or None, got {quantization!r}")
    return quantize_int8(model)


def weight_levels() -> int:
    """The largest int8 weight. Without VNNI, x86 int8 GEMMs sum pairs of uint8 x int8 products in int16,
    which saturates (2 x 255 x 127 > 32767): 7-bit weights keep it exact, as ONNX Runtime's reduce_range
    does. Halving the weights' resolution costs less than halving the activations' (per tensor, the larger
    error): on a Zen 3 CPU, fill-mask top-1 agreement with fp32 of 93.2% against 89.0% (tests/test_quantize,
    the default model; 8-bit both ways on a VNNI CPU: about 96%). PyTorch's int8 GEMMs (fbgemm) use VNNI in
    their AVX-512 kernels only, so a CPU with AVX-VNNI alone (256-bit, e.g. Alder Lake) gets 7 bits too."""
    return 127 if "avx512_vnni" in cpu_kernels.cpu_flags() else 63


def has_vnni() -> bool:
    """Whether this CPU has int8 dot products with int32 sums (AVX512-VNNI or AVX-VNNI), which ONNX
    Runtime's kernels use."""
    return bool(cpu_kernels.cpu_flags() & {"avx512_vnni", "avx_vnni"})


def _select_engine() -> None:
    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "onednn"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            return
    raise RuntimeError(f"this torch build has no x86 int8 engine (it has {', '.join(engines)})")
