"""Attention over packed variable-length sequences on the CPU, by a small compiled kernel.

`packed_attention` is what `AlbertAttention` runs for CPU inference (absolute or "relative_key"
positions): the real tokens of a batch stay back to back, (N, 3C) in and (N, C) out, with no copy into a
padded layout. The kernel is `csrc/attention.c` (AVX-512F), or `csrc/avx2/attention.c` on CPUs with AVX2
and FMA but no AVX-512: fp32 arithmetic on fp32 or bf16 tensors, on PyTorch's OpenMP threads, built and
loaded by `cpu_kernels`. Where neither can be built or run (no compiler, no AVX2,
`OPENALBERT_CPU_KERNEL=0`), `available()` is False and the model keeps PyTorch's attention kernels.
"""

from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass

import torch

from openalbert import cpu_kernels


@dataclass(frozen=True)
class PackedSequences:
    """Where each sequence's tokens lie in the packed (N, ...) layout: rows start .. start + length - 1."""

    starts: torch.Tensor  # (S,) int64, CPU
    lengths: torch.Tensor  # (S,) int64, CPU, all > 0
    order: torch.Tensor  # (S,) int64: sequence indices, longest first (the kernel's work order)
    max_len: int

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor) -> PackedSequences:
        """Sequences of these lengths stored back to back; empty ones are left out."""
        lengths = lengths.to("cpu", torch.int64)
        starts = lengths.cumsum(0) - lengths
        keep = lengths > 0
        lengths, starts = lengths[keep].contiguous(), starts[keep].contiguous()
        order = lengths.argsort(descending=True, stable=True)
        return cls(starts, lengths, order, int(lengths.max()) if len(lengths) else 0)


def available() -> bool:
    """Whether the kernel runs here (built, or buildable now, for this CPU)."""
    return cpu_kernels.attention_library()[0] is not None


def status() -> str:
    """Where the kernel was built, or why it does not run here, in a few words (`openalbert info`)."""
    return cpu_kernels.attention_library()[1]


def refusal(position_embedding_type: str, head_dim: int) -> str | None:
    """Why the kernel cannot run a model of this kind, or None where it can (once built)."""
    if position_embedding_type not in ("absolute", "relative_key"):
        return f"{position_embedding_type} positions"
    if head_dim % 16:
        return f"heads of {head_dim}, not a multiple of 16"
    return None


def supports(qkv: torch.Tensor, head_dim: int, position_embedding_type: str) -> bool:
    """Whether `packed_attention` takes this (N, 3C) tensor of a model with these heads and positions:
    CPU, fp32 or bf16, no `refusal`, and the kernel built."""
    return (
        qkv.device.type == "cpu"
        and qkv.dtype in (torch.float32, torch.bfloat16)
        and qkv.dim() == 2
        and refusal(position_embedding_type, head_dim) is None
        and available()
    )


@functools.lru_cache(maxsize=64)
def uniform(batch: int, length: int) -> PackedSequences:
    """`batch` sequences of `length` tokens each (a batch with no padding), made once per shape."""
    return PackedSequences.from_lengths(torch.full((batch,), length))


def packed_attention(
    qkv: torch.Tensor,
    sequences: PackedSequences,
    num_heads: int,
    head_dim: int,
    relative: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim) + rel) v within each sequence, every head: (N, 3C) [q | k | v] ->
    (N, C). `relative` is the "relative_key" distance table (2P - 1, head_dim), row P - 1 + i - j for
    query i and key j of a sequence: rel[i, j] = q_i . table[P - 1 + i - j], added after the scaling."""
    library = cpu_kernels.attention_library()[0]
    if library is None:
        raise RuntimeError("the CPU attention kernel is not available here (see packed_attention.available)")
    C = num_heads * head_dim
    if qkv.dim() != 2 or qkv.shape[1] != 3 * C:
        raise ValueError(
            f"qkv must be (N, {3 * C}) for {num_heads} heads of {head_dim}, got {tuple(qkv.shape)}"
        )
    if sequences.lengths.numel() and int(sequences.starts[-1] + sequences.lengths[-1]) > qkv.shape[0]:
        raise ValueError(f"the sequences cover more rows than qkv has ({qkv.shape[0]})")
    table, center = None, 0
    if relative is not None:
        table = relative.detach().to("cpu", torch.float32).contiguous()
        center = (table.shape[0] - 1) // 2
        if table.shape != (2 * center + 1, head_dim) or sequences.max_len > center + 1:
            raise ValueError(
                f"the distance table {tuple(table.shape)} does not cover sequences of {sequences.max_len} "
                f"tokens with heads of {head_dim}"
            )
    qkv = qkv.contiguous()
    out = torch.empty(qkv.shape[0], C, dtype=qkv.dtype)
    if sequences.lengths.numel() == 0:
        return out
    failed = library.albert_packed_attention(
        ctypes.c_void_p(qkv.data_ptr()),
        ctypes.c_void_p(out.data_ptr()),
        int(qkv.dtype == torch.bfloat16),
        sequences.lengths.numel(),
        ctypes.c_void_p(sequences.starts.data_ptr()),
        ctypes.c_void_p(sequences.lengths.data_ptr()),
        ctypes.c_void_p(sequences.order.data_ptr()),
        num_heads,
        head_dim,
        sequences.max_len,
        ctypes.c_float(1 / math.sqrt(head_dim)),
        ctypes.c_void_p(None if table is None else table.data_ptr()),
        center,
        torch.get_num_threads(),
    )
    if failed:
        raise MemoryError("the CPU attention kernel could not allocate its buffers")
    return out
