"""Dynamic int8 quantisation of ALBERT's shared layer.

ALBERT runs one group of weights through every layer, so quantising that group (7M weights for
albert-base, 7 MB in int8) makes every layer's GEMMs int8: weights are quantised once, per output
channel; activations per call, per tensor (dynamic quantisation), with the few input channels that a
calibration on random ids finds far above the others split into copies (`Int8Linear`, `calibrate`; on
the default model about 40% fewer fill-mask answers differ from fp32's, benchmarks/RESULTS.md). On CPUs
with VNNI the int8 GEMMs run about twice as fast as fp32 ones. The embeddings, the pooler and the heads
stay in fp32, so the vocabulary projection of fill-mask is not quantised.

A quantised model is for inference: it has no gradients and `save_pretrained` refuses it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from openalbert import cpu_kernels
from openalbert.linear import Linear, activate_and_add_
from openalbert.modeling import AlbertAttention, AlbertModel, AlbertPreTrainedModel


class Int8Linear(nn.Module):
    """A `Linear` run as a dynamic int8 GEMM, with the same call (activation, residual).

    Given several linears that read the same input (a layer's queries, keys and values), it is one GEMM
    whose output holds theirs side by side: the input is quantised once, with the scale each of them
    would have chosen for it, so the result equals theirs concatenated, bit for bit.

    `input_range` (each input channel's largest magnitude, from `calibrate`) splits outlier channels. One
    input channel far above the others would set the per-tensor activation scale alone: in the default
    model's LayerNorm outputs one channel reaches 14-22 where the others stay under 10, so every other
    channel gets less than half of the int8 levels it could have. Such a channel enters the GEMM as
    several copies, each carrying an equal share of it against a copy of its weight column (outlier
    channel splitting, Zhao et al., 2019): the product is unchanged and the activation scale follows the
    other channels."""

    def __init__(self, *linears: nn.Linear, input_range: torch.Tensor | None = None) -> None:
        super().__init__()
        self.in_features = linears[0].in_features
        self.out_features = sum(linear.out_features for linear in linears)
        weight = torch.cat([linear.weight.detach().float().cpu() for linear in linears])
        self._split = None
        if input_range is not None:
            channels, copies = outlier_channels(input_range)
            if len(channels):
                extra = torch.arange(len(channels)).repeat_interleave(copies - 1)  # one per added copy
                self._split = (channels, 1.0 / copies.float(), extra)
                weight = torch.cat([weight, weight[:, channels[extra]]], dim=1)
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
        if self.training and torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError(
                "an int8-quantised model is for inference: its int8 GEMMs pass no gradient, so the encoder "
                "would not train; train the fp32 model (from_pretrained without quantization) and quantise after"
            )
        shape, dtype = x.shape, x.dtype
        x = x.reshape(-1, shape[-1]).float()
        if self._split is not None:  # each outlier channel as copies of an equal share of it
            channels, share, extra = self._split
            shares = x[:, channels] * share
            x = torch.cat([x, shares[:, extra]], dim=1)
            x[:, channels] = shares
        out = torch.ops.quantized.linear_dynamic(x, self._packed, False)  # a new tensor: add to it in place
        return activate_and_add_(out.view(*shape[:-1], self.out_features).to(dtype), activation, residual)

    def extra_repr(self) -> str:
        split = "" if self._split is None else f", {len(self._split[2])} outlier copies"
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 dynamic{split}"


def outlier_channels(input_range: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input channels whose largest magnitude is over twice the 99th percentile of all channels' (the
    5th largest of 384, the 2nd of 100 or fewer), and how many copies bring each down to that percentile (at
    most 16)."""
    typical = input_range.float().quantile(0.99, interpolation="lower").clamp_min(1e-12)
    channels = (input_range > 2 * typical).nonzero().flatten()
    return channels, (input_range[channels] / typical).ceil().long().clamp(max=16)


def channel_scales(weight: torch.Tensor) -> torch.Tensor:
    """The int8 step of each output channel (row) of a weight: its largest magnitude maps to 127, or to 63
    where PyTorch's int8 GEMMs have no VNNI (see `weight_levels`)."""
    return (weight.abs().amax(dim=1) / weight_levels()).clamp_min(1e-12)


def quantize_int8(model: AlbertPreTrainedModel) -> AlbertPreTrainedModel:
    """Replace every linear layer of the encoder (the shared layer groups and the E -> H map) by an
    `Int8Linear`, in place, and return the model, in eval mode. CPU only. Each attention layer also gets
    one `Int8Linear` for its queries, keys and values together (`qkv`), which serves wherever they are
    computed for every position; `query`, `key` and `value` stay for attention at a few positions. Outlier
    input channels are found by `calibrate` and split (see Int8Linear). A model quantised before is
    returned as it is."""
    if model.__dict__.get("_quantized") == "int8":
        return model
    if model.device.type != "cpu":
        raise ValueError(f"int8 dynamic quantisation runs on the CPU; the model is on {model.device}")
    _select_engine()
    base = getattr(model, model.base_model_prefix, model)
    encoder = base.encoder
    ranges = calibrate(base)
    for module in list(encoder.modules()):
        if isinstance(module, AlbertAttention):  # one GEMM for its queries, keys and values (its _qkv)
            inputs = ranges[module]
            for projection in (module.query, module.key, module.value):
                ranges[projection] = inputs
            module.qkv = Int8Linear(module.query, module.key, module.value, input_range=inputs)
    for module in list(encoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Linear):
                setattr(module, name, Int8Linear(child, input_range=ranges.get(child)))
    model.eval()
    model.__dict__["_quantized"] = "int8"
    return model


def calibrate(base: AlbertModel, length: int = 64, seed: int = 0) -> dict[nn.Module, torch.Tensor]:
    """The largest magnitude of each input channel of every linear layer of the encoder, and of each
    attention layer's input (its queries', keys' and values'), over one sequence of `length` random token
    ids. ALBERT's outlier channels belong to the model, not to the text: on the default model random ids
    find the one that real text finds (the feed-forward input's channel 129, at 19 where text takes it to
    22 and no other channel past 10)."""
    length = min(length, base.config.max_position_embeddings)
    ids = torch.randint(base.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(seed))
    ranges: dict[nn.Module, torch.Tensor] = {}

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().float()
        largest = x.reshape(-1, x.shape[-1]).abs().amax(dim=0)
        ranges[module] = largest if module not in ranges else torch.maximum(ranges[module], largest)

    watched = [m for m in base.encoder.modules() if isinstance(m, (Linear, AlbertAttention))]
    hooks = [m.register_forward_pre_hook(record) for m in watched]
    was_training = base.training
    try:
        with torch.no_grad():
            base.eval()(ids.to(base.device))
    finally:
        for hook in hooks:
            hook.remove()
        base.train(was_training)
    return ranges


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
