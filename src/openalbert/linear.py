"""The model's linear layers and the activations they apply, and how their GEMMs run fast on the CPU.

`Linear` is nn.Linear (same parameters, same state-dict names) whose forward takes an activation and a
residual to fuse in. For CPU inference it runs on weights packed once: oneDNN's GEMMs on AVX-512 CPUs,
openalbert's own AVX2 kernel (`cpu_kernels.linear`) on CPUs without AVX-512 (`packer_for`). CPU training
under bf16 autocast on AVX-512 packs the weights of ALBERT's shared layers (`Linear.reused`) once per forward
pass instead (`autocast_linear`). On CPUs without bf16 or fp16 arithmetic, where PyTorch would emulate half-precision GEMMs 7-200x slower than fp32 ones,
half precision runs as fp32 GEMMs on the rounded operands (`emulated_half`, `HalfLinearInFp32`, and
`fp32_where_half_is_emulated` for attention's steps).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from openalbert import cpu_kernels


# Named functions, not lambdas: modules keep them as attributes, and torch.save(model) pickles them by name.
# The tanh GELU is cpu_kernels.gelu_tanh: F.gelu(x, approximate="tanh"), on a compiled kernel on the CPU.
def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _gelu_10(x: torch.Tensor) -> torch.Tensor:  # transformers' ClippedGELUActivation(-10, 10)
    return torch.clip(F.gelu(x), -10.0, 10.0)


def _relu2(x: torch.Tensor) -> torch.Tensor:
    return torch.square(F.relu(x))


def _leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.01)


def _laplace(x: torch.Tensor) -> torch.Tensor:  # MEGA's: the normal CDF at mean 0.707107, sd 0.282095
    return 0.5 * (1.0 + torch.erf((x - 0.707107) / (0.282095 * math.sqrt(2.0))))


ACT2FN: dict[str, Any] = {
    "gelu": F.gelu,
    "gelu_new": cpu_kernels.gelu_tanh,
    "gelu_fast": cpu_kernels.gelu_tanh,
    "gelu_pytorch_tanh": cpu_kernels.gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "mish": F.mish,
    "linear": _identity,
    "gelu_python": F.gelu,  # (the erf GELU written out, in transformers)
    "gelu_accurate": cpu_kernels.gelu_tanh,  # (the tanh GELU written out)
    "gelu_python_tanh": cpu_kernels.gelu_tanh,
    "gelu_10": _gelu_10,
    "relu6": F.relu6,
    "relu2": _relu2,
    "leaky_relu": _leaky_relu,
    "laplace": _laplace,
}


class Linear(nn.Linear):
    """nn.Linear (same parameters and state-dict names) that, for CPU inference, runs on pre-packed weights
    with the activation and residual add fused in: oneDNN's GEMMs with AVX-512 (1.2-1.4x faster than the
    plain GEMM there), openalbert's own kernel on AVX2 CPUs (fp32 arithmetic for fp32, bf16 and fp16
    tensors, `cpu_kernels.linear`; see packer_for).

    The packed copy serves eval mode only: it is made on first use, remade whenever the weight changes
    (in-place updates bump its version) and dropped by `train()`, since fused optimizers update
    weights without bumping their version. Training under half-precision autocast on a CPU that would
    emulate it runs fp32 GEMMs on the rounded operands instead (emulated_half).
    """

    # Whether the layer runs more than once per forward pass (a layer ALBERT shares across depth; set by
    # AlbertLayer). Under CPU bf16 autocast only such a weight is worth packing once per pass
    # (autocast_linear): for a weight used once, PyTorch's autocast GEMM is faster than packing it
    # (MLM decoder, 152 x 128 -> 30,000, forward and backward: 16.5 ms against 23.6 ms on a Zen 4 CPU).
    reused = False

    def forward(
        self, x: torch.Tensor, activation: str | None = None, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """activation(x W^T + b) + residual, the activation and the add fused where the packed GEMM can."""
        packer = None if self.training else packer_for(x, self.weight)
        if packer is not None:
            packed = pack_cached(self, packer, (self.weight,), lambda: PACK[packer](self.weight))
            return packed_linear(packer, x, packed, self.bias, activation, residual)
        if self.reused and self.bias is not None and autocast_packs_serve(x, self.weight):
            return activate_and_add(autocast_linear(self, x, (self,)), activation, residual)
        half = emulated_half(x, self.weight)
        if half is not None:
            out = HalfLinearInFp32.apply(x, self.weight, self.bias, half)
            return activate_and_add(out, activation, residual)
        return activate_and_add(F.linear(x, self.weight, self.bias), activation, residual)

    def train(self, mode: bool = True) -> Linear:
        # Fused optimizers update weights without bumping their version: drop the packed copy here.
        self.__dict__.pop("_pack_cache", None)
        return super().train(mode)

    def __getstate__(self) -> dict[str, Any]:
        return without_pack_cache(super().__getstate__())


def emulated_half(x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.dtype | None:
    """The half precision (bf16 or fp16) a GEMM on x would run in, under CPU autocast (or because x and
    `weight` are in it), where this CPU has no arithmetic for it and PyTorch emulates it
    (`cpu_kernels.emulates_bf16`, `emulates_fp16`); None elsewhere. The emulation is 7-200x slower than an
    fp32 GEMM (bf16 on Zen 3, albert-base shapes; 0.7 against 127 GFLOP/s for a backward one), a bf16
    training step 50x slower than fp32's, so such GEMMs run in fp32 instead (`HalfLinearInFp32`,
    `fp32_where_half_is_emulated`)."""
    if x.device.type != "cpu" or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return None
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
    else:
        dtype = x.dtype if weight is not None and x.dtype == weight.dtype else None
    emulates = {torch.bfloat16: cpu_kernels.emulates_bf16, torch.float16: cpu_kernels.emulates_fp16}.get(
        dtype
    )
    return dtype if emulates is not None and emulates() else None


class HalfLinearInFp32(torch.autograd.Function):
    """x W^T + b as a half-precision GEMM computes it (operands rounded to bf16 or fp16, products summed in
    fp32, a half-precision result), run as fp32 GEMMs, forward and backward, for CPUs without that
    arithmetic (emulated_half). Like autocast it keeps the rounded operands for the backward; unlike it,
    the gradients of fp32 operands (a weight shared by every layer) are summed in fp32."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, half: torch.dtype
    ) -> torch.Tensor:
        x16, w16 = x.to(half), weight.to(half)
        ctx.save_for_backward(x16, w16)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        with torch.autocast("cpu", enabled=False):
            out = F.linear(x16.float(), w16.float(), None if bias is None else bias.float())
        return out.to(half)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x16, w16 = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        g = grad.float().reshape(-1, grad.shape[-1])  # (rows, N)
        dx = dw = db = None
        with torch.autocast("cpu", enabled=False):
            if ctx.needs_input_grad[0]:
                dx = (g @ w16.float()).view(*grad.shape[:-1], w16.shape[1]).to(x_dtype)  # (..., K)
            if ctx.needs_input_grad[1]:
                dw = (g.T @ x16.reshape(-1, x16.shape[-1]).float()).to(w_dtype)  # (N, K)
            if b_dtype is not None and ctx.needs_input_grad[2]:
                db = g.sum(0).to(b_dtype)
        return dx, dw, db, None


def autocast_packs_serve(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a GEMM on x with autograd runs on packed bf16 weights (autocast_linear): CPU training under
    bf16 autocast where oneDNN has bf16 GEMMs with AVX-512."""
    return (
        _MKLDNN_BF16
        and _AVX512
        and x.device.type == "cpu"
        and x.numel() > 0
        and torch.is_grad_enabled()
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and weight.dtype == torch.float32
        and x.dtype in (torch.float32, torch.bfloat16)
        and not cpu_kernels.emulates_bf16()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def autocast_linear(owner: nn.Module, x: torch.Tensor, layers: tuple[nn.Linear, ...]) -> torch.Tensor:
    """x W^T + b under CPU bf16 autocast, for the weights of `layers` side by side (one GEMM for several
    projections of one input), with autocast's rounding: bf16 operands, fp32 sums, a bf16 result.

    ALBERT's layers share their weights, so what autocast redoes in every layer is done once per forward
    pass here and kept on `owner` (`_SharedWeights`): the bf16 copy of the weights, packed by oneDNN for the
    forward GEMM and, transposed, for the input's gradient. The weights' gradients are summed over the
    layers inside the GEMMs that make them (beta = 1, bf16 as autocast sums them), not by a separate add
    per layer."""
    params = tuple(t for layer in layers for t in (layer.weight, layer.bias))
    key = (_PASS[0], *((p._version, p.data_ptr()) for p in params))
    cache = owner.__dict__.get("_autocast_pack")
    # A pass's copy serves its layers until its backward has run (an optimizer's step follows, which may
    # change the weights without bumping their version: fused AdamW).
    if cache is None or cache[0] != key or cache[1][0].get("done"):
        shared: dict[str, Any] = {}
        with torch.autocast("cpu", enabled=False):
            w16, b16 = _SharedWeights.apply(shared, *params)
        with torch.no_grad():
            shared["packed"] = torch.ops.mkldnn._reorder_linear_weight(w16)
            shared["packed_t"] = torch.ops.mkldnn._reorder_linear_weight(w16.t().contiguous())
        cache = (key, (shared, w16, b16))
        owner.__dict__["_autocast_pack"] = cache
    shared, w16, b16 = cache[1]
    return _PackedLinear.apply(x, w16, b16, shared)


class _SharedWeights(torch.autograd.Function):
    """Weights and biases (w1, b1, w2, b2, ...) -> the weights stacked and the biases joined, in bf16, for
    one forward pass. Their gradients are not passed back by each `_PackedLinear` that uses them: those add
    theirs into `shared` ("dw", "db"), and this backward, which autograd runs after all of theirs, hands the
    sums to the parameters in fp32."""

    @staticmethod
    def forward(ctx: Any, shared: dict[str, Any], *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        ctx.shared, ctx.rows = shared, [w.shape[0] for w in params[::2]]
        w16 = torch.cat(params[::2]).to(torch.bfloat16)
        b16 = torch.cat(params[1::2]).to(torch.bfloat16)
        return w16, b16

    @staticmethod
    def backward(ctx: Any, *_: Any) -> tuple[torch.Tensor | None, ...]:
        ctx.shared["done"] = True
        dw, db = ctx.shared.pop("dw", None), ctx.shared.pop("db", None)
        if dw is None:
            return (None,) * (1 + 2 * len(ctx.rows))
        grads: list[torch.Tensor] = []
        for w, b in zip(dw.split(ctx.rows), db.split(ctx.rows)):
            grads += [w.float(), b]
        return (None, *grads)


class _PackedLinear(torch.autograd.Function):
    """autocast_linear's GEMMs: forward and the input's gradient on the packed weights; the weights'
    gradients summed into `shared` for `_SharedWeights`."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, w16: torch.Tensor, b16: torch.Tensor, shared: dict[str, Any]
    ) -> torch.Tensor:
        x16 = x.to(torch.bfloat16)
        ctx.save_for_backward(x16)
        ctx.shared, ctx.x_dtype, ctx.weights = shared, x.dtype, w16.grad_fn
        return torch.ops.mkldnn._linear_pointwise(x16, shared["packed"], b16, "none", [], "")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x16,) = ctx.saved_tensors
        shared = ctx.shared
        g = grad.to(torch.bfloat16).reshape(-1, grad.shape[-1])  # (rows, N)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.mkldnn._linear_pointwise(g, shared["packed_t"], None, "none", [], "")
            dx = dx.view(*grad.shape[:-1], dx.shape[-1]).to(ctx.x_dtype)
        # Only where this backward reaches the weights (not a torch.autograd.grad for the inputs alone).
        if ctx.weights is not None and torch._C._will_engine_execute_node(ctx.weights):
            x2, db = x16.reshape(-1, x16.shape[-1]), g.sum(0).float()  # a sum in fp32, rounded to bf16 once
            if "dw" in shared:
                shared["dw"].addmm_(g.t(), x2)
                shared["db"] += db
            else:
                shared["dw"], shared["db"] = g.t() @ x2, db
        return dx, None, None, None


def fp32_where_half_is_emulated(method: Any) -> Any:
    """An attention step (a method whose first argument is a tensor, its queries) run with autocast off and
    its floating-point tensors in fp32 where its GEMMs would be emulated in half precision (emulated_half):
    under half-precision autocast, or on half-precision queries (a model in bf16 or fp16). In the latter
    case its tensors come back in the queries' dtype."""

    @functools.wraps(method)
    def run(self: nn.Module, *args: Any) -> Any:
        queries = args[0]
        if emulated_half(queries, queries) is None:
            return method(self, *args)
        autocast = torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", enabled=False):
            wide = (a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
            out = method(self, *wide)
        if autocast:
            return out

        def narrow(t: Any) -> Any:
            return t.to(queries.dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

        return tuple(map(narrow, out)) if isinstance(out, tuple) else narrow(out)

    return run


def packed_linear(
    packer: str,
    x: torch.Tensor,
    packed: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None,
    residual: torch.Tensor | None,
) -> torch.Tensor:
    """activation(x W^T + b) + residual on weights packed by PACK[packer]."""
    if packer == "avx2":
        if activation is None or activation in cpu_kernels.LINEAR_ACTIVATIONS:
            return cpu_kernels.linear(x, packed, bias, activation, residual)
        return activate_and_add(cpu_kernels.linear(x, packed, bias), activation, residual)
    if x.dtype == torch.float16:
        # oneDNN has fp16 GEMMs only with AVX512-FP16 or AMX: widen, sum in fp32, round once
        bias, residual = (None if t is None else t.float() for t in (bias, residual))
        return packed_linear(packer, x.float(), packed, bias, activation, residual).half()
    op, algorithm = _FUSABLE.get(activation, ("none", ""))
    if residual is not None and activation is None:
        flat = x.reshape(-1, x.shape[-1])
        out = torch.ops.mkldnn._linear_pointwise.binary(
            flat, residual.reshape(flat.shape[0], -1), packed, bias, "add"
        )
        return out.view(residual.shape)
    out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, op, [], algorithm)
    return activate_and_add(out, activation if op == "none" else None, residual)


def activate_and_add(
    out: torch.Tensor, activation: str | None, residual: torch.Tensor | None
) -> torch.Tensor:
    """activation(out) + residual, each step skipped when None: the unfused end of a linear layer."""
    out = out if activation is None else ACT2FN[activation](out)
    return out if residual is None else residual + out


def activate_and_add_(
    out: torch.Tensor, activation: str | None, residual: torch.Tensor | None
) -> torch.Tensor:
    """activate_and_add, written over `out` (a new tensor the caller owns) where the result has its shape and
    dtype: no new buffer, whose first touch costs page faults (int8 layers, whose GEMM cannot fuse them)."""
    if activation is not None:
        act = ACT2FN[activation]
        out = cpu_kernels.gelu_tanh_(out) if act is cpu_kernels.gelu_tanh else act(out)
    if residual is None:
        return out
    if residual.shape != out.shape or torch.promote_types(out.dtype, residual.dtype) != out.dtype:
        return residual + out
    return out.add_(residual)


# Counts forward passes (AlbertModel.forward starts one): a cached pack re-reads its weights' contents once
# per pass, since ALBERT calls the same modules in every layer.
_PASS = [0]


def new_pass() -> None:
    _PASS[0] += 1


_PROBES: dict[tuple[Any, ...], torch.Tensor] = {}


def _probe(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Flat positions of a weight to compare: one in every row (at a column that moves from row to row) and
    one in every column (at a moving row), so an edit of any whole row or column is seen, as are scaling and
    replacing the whole tensor; up to 4096 spread positions of a vector. About rows + columns reads."""
    key = (shape, device)
    if key not in _PROBES:
        if len(shape) == 2:
            rows, cols = shape
            r, c = torch.arange(rows), torch.arange(cols)
            index = torch.cat([r * cols + (r * 7919) % cols, (c * 104729) % rows * cols + c])
        else:
            n = math.prod(shape)
            index = torch.arange(0, n, max(1, n // 4096))
        _PROBES[key] = index.to(device)
    return _PROBES[key]


def _fingerprint(params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The probed values of each tensor, as bytes: what an in-place write through `.data`, which bumps no
    version (PEFT's LoRA merge, new rows after resize_token_embeddings, weight surgery), changes."""
    return tuple(
        p.detach().reshape(-1).index_select(0, _probe(tuple(p.shape), p.device)).view(torch.uint8)
        for p in params
    )


def pack_cached(owner: nn.Module, packer: str, params: tuple[torch.Tensor, ...], build: Any) -> Any:
    """`build()` (weights packed by `packer`) kept on `owner`, remade when any of `params` changes: in-place
    updates bump a tensor's version; writes through `.data` do not, so once per forward pass (`new_pass`) a
    sample of the values is compared too. Dropped by `train()` (fused optimizers bump no version), so it
    serves eval mode only. Not a buffer: never saved, never moved."""
    key = (packer, *((None if p.is_inference() else p._version, p.data_ptr(), p.dtype) for p in params))
    cache = owner.__dict__.get("_pack_cache")  # (key, packed, fingerprint, pass checked)
    if cache is not None and cache[0] == key and cache[3] != _PASS[0]:
        same = all(torch.equal(a, b) for a, b in zip(_fingerprint(params), cache[2]))
        cache = (key, cache[1], cache[2], _PASS[0]) if same else None
    if cache is None or cache[0] != key:
        cache = (key, build(), _fingerprint(params), _PASS[0])
    owner.__dict__["_pack_cache"] = cache
    return cache[1]


def without_pack_cache(state: dict[str, Any]) -> dict[str, Any]:
    """A module's pickled state without its packed weights: an opaque oneDNN tensor that copy.deepcopy and
    torch.save cannot copy, and that is remade on first use anyway."""
    state.pop("_pack_cache", None)
    state.pop("_autocast_pack", None)
    return state


# packer -> how it packs a weight (N, K)
PACK = {
    "onednn": lambda weight: torch.ops.mkldnn._reorder_linear_weight(
        weight.detach().float() if weight.dtype == torch.float16 else weight.detach()
    ),
    "avx2": cpu_kernels.pack_linear,
}


# Activations oneDNN can fuse into the GEMM: name -> (its post-op, algorithm).
_FUSABLE = {
    "gelu": ("gelu", "none"),
    "gelu_new": ("gelu", "tanh"),
    "gelu_fast": ("gelu", "tanh"),
    "gelu_pytorch_tanh": ("gelu", "tanh"),
    "relu": ("relu", ""),
}


def packer_for(x: torch.Tensor, weight: torch.Tensor) -> str | None:
    """Which packed-weight GEMM serves this CPU inference call (no autograd through it): "avx2" (openalbert's
    kernel, fp32, bf16 or fp16, on CPUs without AVX-512 where it is built), "onednn" (fp32; fp16 in fp32
    arithmetic, where PyTorch's own fp16 GEMMs are emulated; bf16 where oneDNN has bf16 GEMMs; without
    AVX-512 only for small inputs, see PACKED_ROWS_WITHOUT_AVX512), or None: F.linear."""
    if (
        x.device.type != "cpu"
        or x.numel() == 0  # F.linear's edge cases (no rows, no inputs)
        or x.dtype != weight.dtype
        or (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
    ):
        return None
    if (
        weight.dtype in cpu_kernels.LINEAR_DTYPES
        and weight.shape[0] % 16 == 0
        and cpu_kernels.linear_available()
    ):
        return "avx2"
    if (
        _MKLDNN
        and (_AVX512 or x.numel() <= PACKED_ROWS_WITHOUT_AVX512 * x.shape[-1])
        and (
            weight.dtype in (torch.float32, torch.float16)
            or (weight.dtype == torch.bfloat16 and _MKLDNN_BF16)
        )
    ):
        return "onednn"
    return None


_MKLDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_AVX512 = cpu_kernels.has_avx512()
# On an AVX2 CPU (Zen 3), oneDNN's packed GEMMs with their fused GELU and residual add beat F.linear (MKL)
# plus PyTorch's elementwise ops only on few rows: albert-base fp32, 1 x 16-64 tokens 1.25-1.5x faster,
# 1 x 128 4% and 1 x 512 10% slower, a batch of 1,772 real tokens 5-18% slower (a noisy VM); they serve
# there where openalbert's own fp32 kernel is not built. With AVX-512 (Zen 4) they win at every size
# (1.2-1.4x per GEMM).
PACKED_ROWS_WITHOUT_AVX512 = 96
# oneDNN's bf16 GEMMs need AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT; elsewhere bf16 runs unpacked (PyTorch's
# own kernels), slowly but correctly.
_MKLDNN_BF16 = _MKLDNN and torch.ops.mkldnn._is_mkldnn_bf16_supported()
