"""openalbert's compiled CPU kernels: how they are built and loaded; the GELU and the MLM loss of training;
fp32 linear layers on AVX2 CPUs.

Two libraries, each built once per machine and source version with the system C compiler (`$CC`, else
`cc`) into `~/.cache/openalbert/kernels` (or `$OPENALBERT_CACHE/kernels`), and loaded with ctypes; both
run on PyTorch's OpenMP threads:
- "avx512": `csrc/*.c` with `vector.h` (AVX-512F, fp32 arithmetic on fp32 or bf16 tensors):
  `attention.c` (see `packed_attention`), `gelu.c` and `cross_entropy.c`;
- "avx2": `csrc/avx2/*.c` with `avx2/avx2.h`, for inference on CPUs with AVX2, FMA and F16C but no
  AVX-512 (fp32 arithmetic on fp32, bf16 or fp16 tensors): `fp32.c`, GEMMs with the bias, GELU and
  residual add fused (where oneDNN's packed weights lose to them; see linear.Linear) and the GELU
  alone, and `attention.c`, the packed attention kernel in AVX2.
Where one cannot be built or run (no compiler, not this CPU, `OPENALBERT_CPU_KERNEL=0`), PyTorch's kernels
serve, with one warning when a build failed.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

CSRC = Path(__file__).parent / "csrc"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")

# name -> (restype, argtypes) of every function the library exports
_SIGNATURES: dict[str, tuple[type, list[type]]] = {
    "albert_packed_attention": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64]
        + [ctypes.c_void_p] * 3
        + [ctypes.c_int64] * 3
        + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int],
    ),
    "albert_gelu_tanh": (
        None,
        [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int],
    ),
    "albert_gelu_tanh_backward": (
        None,
        [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_int, ctypes.c_int],
    ),
    "albert_cross_entropy": (
        None,
        [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int],
    ),
    "albert_cross_entropy_backward": (
        None,
        [ctypes.c_void_p] * 5 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int],
    ),
}


_AVX2_SIGNATURES: dict[str, tuple[type, list[type]]] = {
    "albert_packed_attention": _SIGNATURES["albert_packed_attention"],
    "albert_linear": (ctypes.c_int, [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 3 + [ctypes.c_int] * 3),
    "albert_gelu_tanh_fp32": (None, [ctypes.c_void_p] * 2 + [ctypes.c_int64, ctypes.c_int]),
}


def available() -> bool:
    """Whether the AVX-512 kernels (attention, GELU, MLM loss) run here (built, or buildable now)."""
    return library() is not None


def status() -> str:
    """Where the AVX-512 kernels were built, or why they do not run here, in a few words (`openalbert info`)."""
    return _load("avx512")[1]


def library() -> ctypes.CDLL | None:
    """The loaded AVX-512 kernels, or None where they do not run here."""
    return _load("avx512")[0]


def attention_library() -> tuple[ctypes.CDLL | None, str]:
    """The library whose `albert_packed_attention` serves this CPU (the AVX-512 one, else the AVX2 one where
    that serves: see linear_available), or None, and where it was built or why none runs, in a few words."""
    if has_avx512() or not has_avx2():
        return _load("avx512")
    return _load("avx2")


# ---- GELU (tanh approximation) ------------------------------------------------------------------------------


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), as F.gelu(x, approximate="tanh"): on the compiled
    kernel for fp32/bf16 CPU tensors (forward and backward, 3-5x faster than PyTorch's here), on the AVX2
    one for fp32 inference where that serves (see linear_available), on PyTorch's elsewhere and while
    tracing, compiling or under torch.func transforms."""
    if _kernel_takes(x):
        return _GeluTanh.apply(x)
    if x.dtype == torch.float32 and not (torch.is_grad_enabled() and x.requires_grad) and _avx2_takes(x):
        x = x.contiguous()
        return _gelu_avx2(x, torch.empty_like(x))
    return F.gelu(x, approximate="tanh")


def gelu_tanh_(x: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(x) written over x, with no new buffer, where a compiled kernel serves a contiguous tensor
    outside autograd; a new tensor elsewhere. For outputs the caller owns: a large new buffer costs page
    faults on first touch (a forward pass of int8 albert-base takes about 100k of them)."""
    if x.is_contiguous() and not (torch.is_grad_enabled() and x.requires_grad):
        if _kernel_takes(x):
            return _elementwise("albert_gelu_tanh", x, x, out=x)
        if x.dtype == torch.float32 and _avx2_takes(x):
            return _gelu_avx2(x, x)
    return gelu_tanh(x)


def _gelu_avx2(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The AVX2 kernel's GELU of contiguous fp32 `x` into `out` (x itself for in place)."""
    _load("avx2")[0].albert_gelu_tanh_fp32(*_pointers(x, out), x.numel(), torch.get_num_threads())
    return out


def _kernel_takes(x: torch.Tensor) -> bool:
    return x.dtype in (torch.float32, torch.bfloat16) and _outside_transforms(x) and available()


def _avx2_takes(x: torch.Tensor) -> bool:
    return _outside_transforms(x) and linear_available()


def _outside_transforms(x: torch.Tensor) -> bool:
    """A CPU tensor outside tracing, compilation and torch.func transforms (vmap, grad, jvp: PyTorch's
    kernels have their rules)."""
    return (
        x.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()
    )


def _pointers(*tensors: torch.Tensor) -> list[ctypes.c_void_p]:
    return [ctypes.c_void_p(t.data_ptr()) for t in tensors]


def _elementwise(
    name: str, out_like: torch.Tensor, *inputs: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Run the kernel `name` over contiguous copies of `inputs` (one dtype) into a new tensor, or into `out`
    (contiguous; an input itself for in place, as the kernels read each element before writing it)."""
    inputs = tuple(t.contiguous() for t in inputs)
    out = torch.empty(out_like.shape, dtype=out_like.dtype) if out is None else out
    getattr(library(), name)(
        *_pointers(*inputs, out),
        out.numel(),
        int(out.dtype == torch.bfloat16),
        torch.get_num_threads(),
    )
    return out


class _GeluTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _elementwise("albert_gelu_tanh", x, x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # create_graph=True (grad mode on here) needs a differentiable backward: PyTorch's has one
        if torch.is_grad_enabled() or grad.dtype != x.dtype or not _kernel_takes(grad):
            return torch.ops.aten.gelu_backward(grad, x, approximate="tanh")
        return _elementwise("albert_gelu_tanh_backward", x, grad, x)


# ---- cross-entropy over a vocabulary -------------------------------------------------------------------------


def cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy(logits, targets, reduction="sum") for (M, V) logits and (M,) targets in [0, V): on
    the compiled kernel for fp32/bf16 CPU logits (one pass each way, in fp32, as autocast computes it; the
    loss is fp32), on PyTorch's elsewhere (and for targets out of range, which it reports)."""
    if (
        _kernel_takes(logits)
        and logits.dim() == 2
        and targets.shape == logits.shape[:1]
        and not targets.is_floating_point()
        and (targets.numel() == 0 or (int(targets.min()) >= 0 and int(targets.max()) < logits.shape[1]))
    ):
        return _CrossEntropySum.apply(logits, targets)
    return F.cross_entropy(logits, targets, reduction="sum")


class _CrossEntropySum(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, logits: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        logits, targets = logits.contiguous(), targets.to(torch.int64).contiguous()
        rows, vocab = logits.shape
        loss = torch.empty(rows, dtype=torch.float32)
        lse = torch.empty(rows, dtype=torch.float32)
        library().albert_cross_entropy(
            *_pointers(logits, targets, loss, lse),
            rows,
            vocab,
            int(logits.dtype == torch.bfloat16),
            torch.get_num_threads(),
        )
        ctx.save_for_backward(logits, targets, lse)
        return loss.sum()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, targets, lse = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: PyTorch's ops, which have derivatives
            p = logits.float().softmax(-1) - F.one_hot(targets, logits.shape[1])
            return (grad * p).to(logits.dtype), None
        rows, vocab = logits.shape
        per_row = grad.float().expand(rows).contiguous()
        dx = torch.empty_like(logits)
        library().albert_cross_entropy_backward(
            *_pointers(logits, targets, lse, per_row, dx),
            rows,
            vocab,
            int(logits.dtype == torch.bfloat16),
            torch.get_num_threads(),
        )
        return dx, None


# ---- fp32 linear layers on AVX2 CPUs ------------------------------------------------------------------------

# Activations the "avx2" linear kernel applies itself: name -> its code there.
LINEAR_ACTIVATIONS = {"gelu_new": 1, "gelu_fast": 1, "gelu_pytorch_tanh": 1, "relu": 2}
# The element types it reads and writes: dtype -> its code there (avx2.h's F32, BF16, F16).
LINEAR_DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


def linear_available() -> bool:
    """Whether the "avx2" linear kernel runs here: a CPU with AVX2 and FMA and no AVX-512, where it was built
    (on AVX-512 CPUs oneDNN's packed GEMMs are faster)."""
    return not has_avx512() and _load("avx2")[0] is not None


def linear_status() -> str:
    """Where the "avx2" linear kernel was built, or why it does not run here, in a few words."""
    return "not used (oneDNN serves AVX-512 CPUs)" if has_avx512() else _load("avx2")[1]


def pack_linear(weight: torch.Tensor) -> torch.Tensor:
    """An nn.Linear weight (N, K), N a multiple of 16, fp32, bf16 or fp16, as `linear` reads it: panels of 16
    output columns, k-major, (N / 16, K, 16) fp32 (half precision widens exactly)."""
    n, k = weight.shape
    return weight.detach().float().reshape(n // 16, 16, k).transpose(1, 2).contiguous()  # (N/16, K, 16)


def linear(
    x: torch.Tensor,
    packed: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """activation(x W^T + bias) + residual on the "avx2" kernel, for CPU inference: x (..., K) fp32, bf16 or
    fp16, `packed` from `pack_linear`, `activation` None or one of LINEAR_ACTIVATIONS (others are the
    caller's). The output has x's dtype; in half precision the sums, bias, activation and residual add are
    fp32, rounded once, as a half-precision GEMM with fp32 accumulation rounds them."""
    if x.dtype not in LINEAR_DTYPES:
        raise TypeError(f"the linear kernel takes float32, bfloat16 or float16 inputs, not {x.dtype}")
    k = x.shape[-1]
    n = packed.shape[0] * packed.shape[2]
    flat = x.reshape(math.prod(x.shape[:-1]), k).contiguous()  # (rows, K)
    out = torch.empty(flat.shape[0], n, dtype=x.dtype)
    extra = None if residual is None else residual.to(x.dtype).reshape(flat.shape[0], n).contiguous()
    bias = None if bias is None else bias.detach().float().contiguous()
    code = 0 if activation is None else LINEAR_ACTIVATIONS[activation]
    fails = _load("avx2")[0].albert_linear(
        *_pointers(flat, packed),
        None if bias is None else ctypes.c_void_p(bias.data_ptr()),
        None if extra is None else ctypes.c_void_p(extra.data_ptr()),
        ctypes.c_void_p(out.data_ptr()),
        flat.shape[0],
        n,
        k,
        code,
        LINEAR_DTYPES[x.dtype],
        torch.get_num_threads(),
    )
    if fails == -2:
        raise ValueError("the linear kernel needs at least one input feature")
    if fails:
        raise MemoryError(f"no memory for a copy of a {tuple(flat.shape)} input to a linear layer")
    return out.view(*x.shape[:-1], n)


# ---- building and loading -----------------------------------------------------------------------------------


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them (/proc/cpuinfo); empty where they cannot be read."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return frozenset()
    return frozenset(
        flag for line in lines if line.split(":")[0].strip() == "flags" for flag in line.split(":")[1].split()
    )


# The x86 flags of bf16 arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def has_avx512() -> bool:
    """Whether PyTorch runs this CPU's AVX-512 code paths (which the compiled kernels need)."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def emulates_bf16() -> bool:
    """Whether this is an x86 CPU without bf16 arithmetic (BF16_FLAGS), where PyTorch widens bf16 GEMMs to
    fp32 in software; False where the flags cannot be read."""
    return _x86_without(BF16_FLAGS)


# The x86 flags of fp16 arithmetic (Sapphire Rapids and later; no AMD CPU so far).
FP16_FLAGS = frozenset({"avx512_fp16", "amx_fp16"})


def emulates_fp16() -> bool:
    """Whether this is an x86 CPU without fp16 arithmetic (FP16_FLAGS), where PyTorch widens fp16 GEMMs to
    fp32 in software; False where the flags cannot be read."""
    return _x86_without(FP16_FLAGS)


def _x86_without(arithmetic: frozenset[str]) -> bool:
    """Whether this is an x86 CPU (AVX2 at least) with none of the `arithmetic` flags."""
    flags = cpu_flags()
    return "avx2" in flags and not flags & arithmetic


def warn_if_emulated_bf16(device: torch.device, what: str) -> None:
    """Warn that `what` (bf16 weights where the AVX2 linear kernel does not serve inference) will be slow
    where `device` is an x86 CPU without bf16 arithmetic (AVX512_BF16 or AMX): PyTorch then widens every
    bf16 GEMM to fp32 in software, several times slower than fp32 itself (about 6x for an albert-base
    forward on a Zen 3 CPU). Training does not need it: modeling runs its GEMMs in fp32 there."""
    if device.type == "cpu" and emulates_bf16():
        _warn_once(
            f"{what} on a CPU without bf16 arithmetic (AVX512_BF16 or AMX): PyTorch emulates it, several "
            "times slower than float32; float32 is the fast choice on this machine"
        )


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The stacklevel of the first frame outside this package: the user's call."""
    package = str(Path(__file__).parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def has_avx2() -> bool:
    """Whether this CPU runs AVX2, FMA and F16C code (the "avx2" kernels), as PyTorch and Linux see it."""
    capable = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512", "AVX512_BF16")
    return capable and {"fma", "f16c"} <= cpu_flags()


class _Library(NamedTuple):
    """One of the compiled libraries: how it is built, where it runs, what it exports."""

    sources: str  # glob under csrc
    flags: tuple[str, ...]  # compiler flags beside FLAGS
    needs: str  # the instruction set, in words
    runs_here: Callable[[], bool]
    signatures: dict[str, tuple[type, list[type]]]
    serves: str  # what falls back to PyTorch's kernels without it, in words


_LIBRARIES = {
    "avx512": _Library(
        "*.c", ("-mavx512f",), "AVX-512", has_avx512, _SIGNATURES, "attention, GELU and the MLM loss"
    ),
    "avx2": _Library(
        "avx2/*.c",
        ("-mavx2", "-mfma", "-mf16c"),
        "AVX2, FMA and F16C in /proc/cpuinfo",
        has_avx2,
        _AVX2_SIGNATURES,
        "linear layers, attention and GELU",
    ),
}


@functools.cache
def _load(kind: str) -> tuple[ctypes.CDLL | None, str]:
    """The loaded library of `kind` (None where it does not run here) and `status()`'s words for it."""
    library = _LIBRARIES[kind]
    if os.environ.get("OPENALBERT_CPU_KERNEL", "1") == "0":
        return None, "off (OPENALBERT_CPU_KERNEL=0)"
    if not library.runs_here():
        capability = torch.backends.cpu.get_cpu_capability()
        return None, f"not for this CPU (it needs {library.needs}; PyTorch sees {capability})"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "not built: no C compiler (cc, gcc or $CC)"  # no warning: PyTorch's kernels serve
    try:
        path = _build(compiler, kind, sorted(CSRC.glob(library.sources)), (*FLAGS, *library.flags))
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as e:
        warnings.warn(
            f"openalbert could not build its CPU kernels ({e}); {library.serves} run on PyTorch's kernels. "
            "Set OPENALBERT_CPU_KERNEL=0 to skip the attempt.",
            RuntimeWarning,
            stacklevel=_caller_level(),
        )
        return None, f"not built: {e}"
    for name, (restype, argtypes) in library.signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib, f"built at {path}"


def _build(compiler: str, kind: str, sources: list[Path], flags: tuple[str, ...]) -> Path:
    """Compile `sources` into the cache, once per sources, headers, flags, compiler and CPU; return the
    path."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    parts = [p.read_bytes() for p in sorted({*sources, *CSRC.rglob("*.h")})]
    key = hashlib.sha256(
        b"\0".join([*parts, " ".join(flags).encode(), version.encode(), _cpu_id().encode()])
    ).hexdigest()[:16]
    directory = _cache_dir()
    target = directory / f"kernels-{kind}-{key}.so"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run(
            [compiler, *flags, f"-I{CSRC}", *map(str, sources), "-o", str(built)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise OSError(f"{compiler} failed: {result.stderr.strip()[-500:]}")
        os.replace(built, target)  # atomic: a concurrent build of the same key writes the same file
    return target


def _cache_dir() -> Path:
    root = os.environ.get("OPENALBERT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openalbert"
    )
    return Path(root) / "kernels"


def _cpu_id() -> str:
    """The CPU's model and flags: -march=native code built on one CPU may not run on another."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return torch.backends.cpu.get_cpu_capability()
    wanted = ("model name", "flags")
    return "\n".join(dict.fromkeys(line for line in lines if line.split(":")[0].strip() in wanted))
