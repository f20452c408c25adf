"""The ALBERT encoder in plain PyTorch, read top to bottom.

ALBERT (Lan et al., 2019, arXiv:1909.11942) is BERT with two parameter savings:
  1. a factorised embedding: tokens -> E (128) -> a linear map to the hidden size H;
  2. cross-layer sharing: `num_hidden_layers` layers run through only `num_hidden_groups` groups of
     weights (one group in every released checkpoint), each group holding `inner_group_num` layers.
References: google-research/albert `modeling.py` (the original) and transformers 4.57.1
`modeling_albert.py` (the numeric oracle). Module and parameter names follow transformers so that a
state dict moves between the two libraries without conversion. Its linear layers are `linear.Linear`:
nn.Linear with the activation and residual add fused in, and the CPU's fast GEMMs behind it (linear.py).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from openalbert import linear, packed_attention
from openalbert.config import (
    NO_UPLOAD,
    AlbertConfig,
    check_albert_config,
    converts_foreign_configs,
    refuse_upload,
)
from openalbert.linear import Linear

# ---- outputs -----------------------------------------------------------------------------------------


class ModelOutput(OrderedDict):
    """The base of the output dataclasses (PyTorch's and TensorFlow's here, Flax's in modeling_flax): like
    transformers' ModelOutput, an ordered dict of the fields that are not None, so `out.logits`,
    `out["logits"]`, `out[0]`, `dict(out)` and `**out` all work.

    Being a mapping is what lets other code carry an output through: tf.function, Keras 2's saving and
    tf.nest, DataParallel's gather and transformers' Trainer rebuild it as `type(out)(pairs)`, so the first
    field also takes a dict or (name, value) pairs; torch.export and torch.compile flatten it through the
    pytree registration below. Integer indexing and `to_tuple()` skip fields that are None.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        torch.utils._pytree.register_pytree_node(
            cls,
            _flatten_output,
            functools.partial(_unflatten_output, cls),
            serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
            flatten_with_keys_fn=_flatten_output_with_keys,
        )

    def __post_init__(self) -> None:
        names = [f.name for f in fields(self)]
        first = getattr(self, names[0])
        if all(getattr(self, name) is None for name in names[1:]) and (pairs := _as_pairs(first)) is not None:
            object.__setattr__(self, names[0], None)  # (object's: Flax's outputs are frozen dataclasses)
            for key, value in pairs:
                if key not in names:
                    raise TypeError(f"{type(self).__name__} has no field {key!r}; its fields are {names}")
                object.__setattr__(self, key, value)
        self._sync()

    def _sync(self) -> None:
        """Make the dict's entries the fields that are not None, in field order."""
        OrderedDict.clear(self)
        for f in fields(self):
            if (value := getattr(self, f.name)) is not None:
                OrderedDict.__setitem__(self, f.name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in self.__dataclass_fields__:
            self._sync()

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.__dataclass_fields__:
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            return OrderedDict.__getitem__(self, key)
        return self.to_tuple()[key]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from its fields (pickle, copy, deepcopy), not from dict entries set one by one
        return type(self), tuple(getattr(self, f.name) for f in fields(self))

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"a {type(self).__name__} holds its fields: set them by name, e.g. out.logits = ...")

    __delitem__ = pop = popitem = setdefault = update = clear = _refuse


def _as_pairs(value: Any) -> list[tuple[str, Any]] | None:
    """The (name, value) pairs an output is rebuilt from, when its first field holds them (else None)."""
    if value is None or hasattr(value, "shape"):  # a tensor or array: the field's own value
        return None
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, Iterator):  # tf.nest and dm-tree rebuild a mapping from a generator of pairs
        value = list(value)
    elif not isinstance(value, (list, tuple)):
        return None
    if all(isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) for p in value):
        return [tuple(p) for p in value]
    return None


def _flatten_output(out: ModelOutput) -> tuple[list[Any], list[str]]:
    return list(out.values()), list(out.keys())


def _flatten_output_with_keys(out: ModelOutput) -> tuple[list[tuple[Any, Any]], list[str]]:
    return [(torch.utils._pytree.MappingKey(k), v) for k, v in out.items()], list(out.keys())


def _unflatten_output(cls: type[ModelOutput], values: Iterable[Any], keys: list[str]) -> ModelOutput:
    return cls(**dict(zip(keys, values)))


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# ---- embeddings ---------------------------------------------------------------------------------------


class AlbertEmbeddings(nn.Module):
    """Word + token-type (+ absolute position) embeddings of size E, then LayerNorm and dropout."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.embedding_size)
        if config.position_embedding_type != "absolute":
            # Kept for the checkpoint layout, never read: a trainable weight that gets no gradient stops
            # DistributedDataParallel ("parameters that were not used in producing loss").
            self.position_embeddings.weight.requires_grad_(False)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_embedding_type = config.position_embedding_type

    def forward(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        # With relative positions the original adds no absolute position embedding at all.
        if self.position_embedding_type == "absolute":
            if position_ids is None:
                position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)[None]
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))  # (B, T, E)


# ---- attention and the shared layer -------------------------------------------------------------------

ATTN_IMPLEMENTATIONS = ("auto", "unpadded", "sdpa", "eager")


def unpads_by_default(device: torch.device, dtype: torch.dtype) -> bool:
    """What "auto" attention does with a padded batch: skip the padding, except for half precision on a
    GPU (half-precision weights, or fp32 weights under half-precision autocast, as in training). There the
    GEMMs are so fast that the unpadded path's extra launches and host syncs cost more than the padding
    saves (H200, variable-length workload: padded 473k useful tokens/s in bf16 against 209k unpadded; in
    fp32 unpadded wins, 134k against 91k; benchmarks/RESULTS.md). Nor under torch.compile or torch.export:
    where the real tokens are is a value, and a traced graph's shapes may not depend on values."""
    if torch.compiler.is_compiling():
        return False
    if device.type != "cuda":
        return True
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
    return dtype not in (torch.float16, torch.bfloat16)


@dataclass
class Unpadded:
    """Where the real tokens of a padded batch are, so that the layers skip the padding.

    The encoder then holds (N, C) hidden states, N = real tokens in the batch, in row-major order.
    Only the score/context step of attention, a small part of the work, sees padding: sequences are
    sorted by length into a few groups, each padded to its own longest length (`groups`).
    """

    index: torch.Tensor  # (N,) flat positions of the real tokens in the (B * T) padded layout
    compact: torch.Tensor  # (N,) their flat positions in the grouped layout
    groups: list[tuple[int, int, int, torch.Tensor | None]]  # (offset, rows, length, key mask or None)
    batch: int
    seq_len: int
    sequences: packed_attention.PackedSequences  # each sequence's rows in (N, C), for the CPU kernel
    _buffer: torch.Tensor | None = None

    @classmethod
    def from_mask(cls, keep: torch.Tensor, dtype: torch.dtype, max_groups: int = 8) -> Unpadded:
        B, T = keep.shape
        lengths = keep.sum(dim=1).cpu()  # the grouping is bookkeeping: done on the CPU, moved once
        order = lengths.argsort(stable=True)
        sorted_lengths = lengths[order].tolist()
        n_groups = min(max_groups, B)
        bounds = [B * g // n_groups for g in range(n_groups + 1)]
        groups, offset = [], 0
        start_of_row = torch.empty(B, dtype=torch.long)  # where each sequence begins in the grouped layout
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            rows, width = hi - lo, sorted_lengths[hi - 1]
            members = order[lo:hi]
            start_of_row[members] = offset + torch.arange(rows) * width
            mask = None
            if sorted_lengths[lo] != width:
                real = torch.arange(width)[None, :] < lengths[members][:, None]  # (rows, width)
                mask = _key_mask(real, dtype).to(keep.device)
            groups.append((offset, rows, width, mask))
            offset += rows * width
        flat = keep.reshape(-1)
        rank = keep.cumsum(dim=1) - 1  # each real token's place among its sequence's real tokens
        compact = (start_of_row.to(keep.device)[:, None] + rank).reshape(-1)[flat]
        sequences = packed_attention.PackedSequences.from_lengths(lengths)
        return cls(flat.nonzero().squeeze(1), compact, groups, B, T, sequences)

    @property
    def compact_size(self) -> int:
        offset, rows, width, _ = self.groups[-1]
        return offset + rows * width

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (N, C)."""
        return x.reshape(self.batch * self.seq_len, -1)[self.index]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (B, T, C), zeros at the padding."""
        out = x.new_zeros(self.batch * self.seq_len, x.shape[-1]).index_copy_(0, self.index, x)
        return out.view(self.batch, self.seq_len, -1)

    def to_compact(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (compact_size, C), zeros at the padding (finite, so masked keys add exact zeros)."""
        shape = (self.compact_size, x.shape[-1])
        if torch.is_grad_enabled():
            return x.new_zeros(shape).index_copy_(0, self.compact, x)
        # Without autograd, every layer writes into one buffer: its padding stays zero.
        if self._buffer is None or self._buffer.shape != shape or self._buffer.dtype != x.dtype:
            self._buffer = x.new_zeros(shape)
        return self._buffer.index_copy_(0, self.compact, x)


# Scores of at most this many elements (fp32) are written out for CPU training: 128 MB per layer call.
_EAGER_SCORES_LIMIT = 2**25


class AlbertAttention(nn.Module):
    """Multi-head self-attention with the output projection, residual and LayerNorm (post-LN)."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads  # fewer once heads are pruned (prune_heads)
        self.pruned_heads: set[int] = set()
        self.head_dim = config.head_dim
        h = config.hidden_size
        self.query = Linear(h, h)
        self.key = Linear(h, h)
        self.value = Linear(h, h)
        self.dense = Linear(h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.attention_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_embedding_type = config.position_embedding_type
        self.max_position_embeddings = config.max_position_embeddings
        self.attn_implementation = "auto"
        if self.position_embedding_type != "absolute":
            # One vector per signed distance -(P-1)..(P-1), shared by all heads (Shaw et al., 2018).
            self.distance_embedding = nn.Embedding(2 * config.max_position_embeddings - 1, self.head_dim)

    # transformers' names of these sizes, which head-analysis tools read
    @property
    def num_attention_heads(self) -> int:
        return self.num_heads

    @property
    def attention_head_size(self) -> int:
        return self.head_dim

    @property
    def all_head_size(self) -> int:
        return self.num_heads * self.head_dim

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        unpadded: Unpadded | None = None,
        queries_at: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C) -> (B, T, C); with `queries_at` (B, R) positions, only those queries: (B, R, C)."""
        if unpadded is not None:
            return self._unpadded(hidden_states, unpadded), None
        if queries_at is not None:
            return self._at(hidden_states, attention_mask, queries_at), None
        B, T, _ = hidden_states.shape
        C = self.num_heads * self.head_dim  # the hidden size, unless heads were pruned
        qkv = self._qkv(hidden_states)  # (B, T, 3C)
        probs = None
        no_padding = attention_mask is None and head_mask is None and not output_attentions
        if no_padding and self._kernel_serves(qkv.view(B * T, 3 * C)):
            context = packed_attention.packed_attention(
                qkv.view(B * T, 3 * C),
                packed_attention.uniform(B, T),
                self.num_heads,
                self.head_dim,
                self._distance_table(),
            ).view(B, T, C)
        else:
            # split, not unbind: its backward writes the three gradients into one (B, T, 3C) in one pass
            heads = (x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2) for x in qkv.split(C, -1))
            q, k, v = heads  # 3 x (B, nh, T, hd)
            mask = self._with_positions(q, k, attention_mask)
            if output_attentions or head_mask is not None or self.attn_implementation == "eager":
                context, probs = self._eager(q, k, v, mask, head_mask)
            else:
                context = self._attend(q, k, v, mask)
            context = context.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.LayerNorm(_add_residual(self.dense, context, hidden_states, self.output_dropout)), probs

    def prune_heads(self, heads: Iterable[int]) -> None:
        """Remove these heads (indices among the original config.num_attention_heads) from the projections:
        the query, key and value rows and the output's columns of each go. transformers' numbering: a head
        pruned before keeps its original index."""
        drop = set(heads) - self.pruned_heads
        if not drop:
            return
        # The original indices of the current heads, in the order their rows stand in the projections.
        alive = [h for h in range(self.num_heads + len(self.pruned_heads)) if h not in self.pruned_heads]
        kept = [i for i, h in enumerate(alive) if h not in drop]
        if not kept:
            raise ValueError("pruning would remove every head of a layer; keep at least one")
        rows = torch.cat([torch.arange(self.head_dim) + i * self.head_dim for i in kept])
        for name in ("query", "key", "value"):
            setattr(self, name, _cut_linear(getattr(self, name), rows, dim=0))
        self.dense = _cut_linear(self.dense, rows, dim=1)
        self.num_heads = len(kept)
        self.pruned_heads |= drop
        self.__dict__.pop("_pack_cache", None)  # the packed q|k|v weights are stale

    def _at(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, queries_at: torch.Tensor
    ) -> torch.Tensor:
        """Attention for the queries at `queries_at` (B, R) only, over every key: (B, R, C). Training
        needs the last layer only where a loss reads it (masked tokens, [CLS])."""
        B, T, H = hidden_states.shape
        residual = hidden_states.gather(1, queries_at[..., None].expand(-1, -1, H))  # (B, R, H)

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, nh, L, hd)
            return x.view(B, -1, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = (
            heads(self.query(residual)),
            heads(self.key(hidden_states)),
            heads(self.value(hidden_states)),
        )
        context = self._attend(q, k, v, self._with_positions(q, k, attention_mask, queries_at))
        context = context.transpose(1, 2).reshape(B, -1, self.num_heads * self.head_dim)  # (B, R, C)
        return self.LayerNorm(_add_residual(self.dense, context, residual, self.output_dropout))

    def _unpadded(self, hidden_states: torch.Tensor, unpadded: Unpadded) -> torch.Tensor:
        """Attention over the real tokens only: (N, C) in, (N, C) out, N = tokens in the whole batch.

        For CPU inference with absolute or "relative_key" positions, the compiled kernel of
        `packed_attention` works on the packed tokens directly; otherwise sequences are grouped by length
        and padded within each group.
        """
        C = self.num_heads * self.head_dim
        qkv = self._qkv(hidden_states)  # (N, 3C)
        if self._kernel_serves(qkv):
            context = packed_attention.packed_attention(
                qkv, unpadded.sequences, self.num_heads, self.head_dim, self._distance_table()
            )
            return self.LayerNorm(_add_residual(self.dense, context, hidden_states, self.output_dropout))
        qkv = unpadded.to_compact(qkv)  # (compact_size, 3C)
        dtype = qkv.dtype
        if qkv.device.type == "cpu":
            # The CPU kernels (flash for inference, the written-out form for training) are faster in fp32
            # than in bf16, and scores are accumulated in fp32 anyway. Unpadded's CPU masks are fp32.
            qkv = qkv.to(torch.promote_types(dtype, torch.float32))
        contexts = []
        for offset, rows, width, mask in unpadded.groups:
            group = qkv[offset : offset + rows * width].view(rows, width, 3, self.num_heads, self.head_dim)
            q, k, v = group.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (rows, nh, width, hd)
            mask = self._with_positions(q, k, mask)  # every row of a group starts at position 0
            contexts.append(self._attend(q, k, v, mask).transpose(1, 2).reshape(rows * width, C))
        context = torch.cat(contexts)[unpadded.compact].to(dtype)  # (N, C)
        return self.LayerNorm(_add_residual(self.dense, context, hidden_states, self.output_dropout))

    def _kernel_serves(self, qkv: torch.Tensor) -> bool:
        """Whether the compiled CPU kernel (`packed_attention`) runs this call: CPU inference with absolute
        or "relative_key" positions under "auto" or "unpadded", outside tracing and compilation, where the
        kernel was built."""
        return (
            self.attn_implementation in ("auto", "unpadded")
            and self._dropout_p() == 0
            and not (torch.is_grad_enabled() and qkv.requires_grad)
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and packed_attention.supports(qkv, self.head_dim, self.position_embedding_type)
        )

    def _distance_table(self) -> torch.Tensor | None:
        return self.distance_embedding.weight if self.position_embedding_type == "relative_key" else None

    @linear.fp32_where_half_is_emulated
    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """softmax(q k^T / sqrt(d) + mask) v for (B, nh, T, hd) inputs.

        On the CPU with autograd, the fused kernel's backward is slow for short sequences (ALBERT's
        usual 128 tokens: 1.6x the time of the written-out form), so the scores are written out in
        fp32 there while they stay small (under autocast its matmuls take autocast's dtype, whatever the
        inputs', so they get no fp32 copies); everywhere else the fused kernel runs. On the CPU half precision
        runs in fp32 (except under "sdpa", which keeps PyTorch's kernel in the model's dtype where the CPU
        has that arithmetic, see linear.fp32_where_half_is_emulated): PyTorch's CPU
        kernels accumulate the scores in fp32 anyway and are faster on fp32 inputs (albert-base bf16 on a
        Zen 3 CPU, 1 x 512 tokens: 1.10 s a pass with bf16 attention, 0.76 s with fp32).
        """
        B, nh, T, _ = q.shape
        wide = torch.promote_types(q.dtype, torch.float32)  # bf16 -> fp32; fp64 stays
        if q.device.type == "cpu" and torch.is_grad_enabled() and B * nh * T * T <= _EAGER_SCORES_LIMIT:
            dtype = v.dtype
            if not torch.is_autocast_enabled("cpu"):
                q, k, v = q.to(wide), k.to(wide), v.to(wide)
            return self._eager(q, k, v, mask, None)[0].to(dtype)
        if q.device.type == "cpu" and wide != q.dtype and self.attn_implementation != "sdpa":
            mask = mask if mask is None or mask.dtype == torch.bool else mask.to(wide)
            return self._attend(q.to(wide), k.to(wide), v.to(wide), mask).to(v.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self._dropout_p())

    @linear.fp32_where_half_is_emulated
    def _with_positions(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        mask: torch.Tensor | None,
        queries_at: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The additive mask plus, with relative positions, their scores (B, nh, L, T) for keys at positions
        0..T-1 and queries at 0..L-1, or at `queries_at` (B, L). As in the original, these are added after
        the 1/sqrt(d) scaling of q k^T."""
        if self.position_embedding_type == "absolute":
            return mask
        keys = torch.arange(k.shape[2], device=q.device)
        queries = torch.arange(q.shape[2], device=q.device) if queries_at is None else queries_at
        distance = queries[..., None] - keys + self.max_position_embeddings - 1  # (L, T) or (B, L, T)
        rel = self.distance_embedding(distance).to(q.dtype)  # (L, T, hd) or (B, L, T, hd)
        b = "" if queries_at is None else "b"  # one table for every sequence, or one per sequence
        scores = torch.einsum(f"bhld,{b}lrd->bhlr", q, rel)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + torch.einsum(f"bhrd,{b}lrd->bhlr", k, rel)
        return scores if mask is None else scores + mask.to(scores.dtype)

    def _qkv(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Queries, keys and values side by side (..., 3C): one GEMM on packed weights where it can, or on
        the int8 one that `quantize_int8` gives the layer."""
        if "qkv" in self._modules:
            return self.qkv(hidden_states)
        projections = (self.query, self.key, self.value)
        plain = all(type(p) is Linear for p in projections)  # not replaced by a quantised layer
        if (
            plain
            and self.query.reused
            and all(p.bias is not None for p in projections)
            and linear.autocast_packs_serve(hidden_states, self.query.weight)
        ):
            return linear.autocast_linear(self, hidden_states, projections)
        packer = linear.packer_for(hidden_states, self.query.weight) if plain and not self.training else None
        if packer is not None:
            params = tuple(t for p in projections for t in (p.weight, p.bias))
            packed, bias = linear.pack_cached(
                self,
                packer,
                params,
                lambda: (
                    linear.PACK[packer](torch.cat([p.weight for p in projections])),
                    torch.cat([p.bias for p in projections]).detach(),
                ),
            )
            return linear.packed_linear(packer, hidden_states, packed, bias, None, None)
        return torch.cat([p(hidden_states) for p in projections], dim=-1)

    def train(self, mode: bool = True) -> AlbertAttention:
        self.__dict__.pop("_pack_cache", None)  # see Linear.train
        return super().train(mode)

    def __getstate__(self) -> dict[str, Any]:
        return linear.without_pack_cache(super().__getstate__())

    def _dropout_p(self) -> float:
        return self.attention_dropout.p if self.training else 0.0

    @linear.fp32_where_half_is_emulated
    def _eager(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attention_mask: torch.Tensor | None,
        head_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention written out, for attention maps and head masks (and CPU training, see _attend)."""
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, nh, T, T)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = self.attention_dropout(scores.softmax(dim=-1))
        if head_mask is not None:
            probs = probs * head_mask
        return probs @ v, probs


class AlbertLayer(nn.Module):
    """One transformer layer: attention, then a feed-forward block with residual and LayerNorm."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        # Made in transformers' order, so parameters (and an optimizer's state by index) come in its order.
        self.full_layer_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = AlbertAttention(config)
        self.ffn = Linear(config.hidden_size, config.intermediate_size)
        self.ffn_output = Linear(config.intermediate_size, config.hidden_size)
        self.hidden_act = config.hidden_act
        # The original applies dropout to the feed-forward output; transformers defines it but skips it.
        # It is the identity in eval mode and for every v2 checkpoint (dropout 0), so parity holds.
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        if config.num_hidden_layers > config.num_hidden_groups:  # each layer of a group runs several times
            a = self.attention
            for layer in (a.query, a.key, a.value, a.dense, self.ffn, self.ffn_output):
                layer.reused = True

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        unpadded: Unpadded | None = None,
        queries_at: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, H) -> (B, T, H), or (B, R, H) at the positions `queries_at` (B, R) only."""
        attended, probs = self.attention(
            hidden_states, attention_mask, head_mask, output_attentions, unpadded, queries_at
        )
        ffn = self.ffn(attended, self.hidden_act)
        return self.full_layer_layer_norm(_add_residual(self.ffn_output, ffn, attended, self.dropout)), probs


def _add_residual(
    layer: nn.Module, x: torch.Tensor, residual: torch.Tensor, dropout: nn.Dropout
) -> torch.Tensor:
    """residual + dropout(layer(x)); the add is fused into the GEMM when dropout is off."""
    if dropout.training and dropout.p > 0:
        return residual + dropout(layer(x))
    return layer(x, residual=residual)


class AlbertLayerGroup(nn.Module):
    """`inner_group_num` layers with their own weights, run in sequence; a group is the unit of sharing."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.albert_layers = nn.ModuleList(AlbertLayer(config) for _ in range(config.inner_group_num))


class AlbertTransformer(nn.Module):
    """Map E -> H, then run `num_hidden_layers` layers through the shared groups."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding_hidden_mapping_in = Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = nn.ModuleList(
            AlbertLayerGroup(config) for _ in range(config.num_hidden_groups)
        )
        self.gradient_checkpointing = False
        self.attn_implementation = "auto"

    def forward(
        self,
        embeddings: torch.Tensor,
        attention_mask: torch.Tensor | None,
        head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        unpadded: Unpadded | None = None,
        queries_at: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """With `unpadded`, the layers see only real tokens (N, H); outputs come back padded (B, T, H).
        With `queries_at` (B, R) positions, the last layer runs only there: its output is (B, R, H); with
        both, `attention_mask` is the padded batch's key mask, for that last layer."""
        cfg = self.config
        last = (cfg.num_hidden_layers - 1, len(self.albert_layer_groups[-1].albert_layers) - 1)
        layer_unpadded = unpadded
        if unpadded is not None:
            embeddings = unpadded.unpad(embeddings)  # (N, E)
        hidden = self.embedding_hidden_mapping_in(embeddings)  # (B, T, H) or (N, H)
        all_hidden = [hidden] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for i in range(cfg.num_hidden_layers):
            # The whole of ALBERT's cross-layer sharing: layer i reuses the weights of group g.
            group = self.albert_layer_groups[cfg.group_of(i)]
            layer_head_mask = None if head_mask is None else head_mask[i]
            for j, layer in enumerate(group.albert_layers):
                at = queries_at if (i, j) == last else None
                if at is not None and layer_unpadded is not None:
                    # the last layer picks its queries from the padded layout (`attention_mask` masks it)
                    hidden, layer_unpadded = unpadded.pad(hidden), None
                if self.gradient_checkpointing and self.training:
                    hidden, probs = torch.utils.checkpoint.checkpoint(
                        layer,
                        hidden,
                        attention_mask,
                        layer_head_mask,
                        output_attentions,
                        layer_unpadded,
                        at,
                        use_reentrant=False,
                    )
                else:
                    hidden, probs = layer(
                        hidden, attention_mask, layer_head_mask, output_attentions, layer_unpadded, at
                    )
                if all_attentions is not None:
                    all_attentions.append(probs)
            if all_hidden is not None:
                all_hidden.append(hidden)
        if unpadded is not None:  # back to (B, T, H); the last layer's (B, R, H) under queries_at already is
            hidden = hidden if hidden.dim() == 3 else unpadded.pad(hidden)
            if all_hidden is not None:
                all_hidden = [h if h.dim() == 3 else unpadded.pad(h) for h in all_hidden]
        return (
            hidden,
            tuple(all_hidden) if all_hidden is not None else None,
            tuple(all_attentions) if all_attentions is not None else None,
        )


# ---- the base class every ALBERT model shares -----------------------------------------------------------


class AlbertPreTrainedModel(nn.Module):
    """Weight initialisation, `from_pretrained`/`save_pretrained` and helpers shared by all ALBERT models."""

    base_model_prefix = "albert"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # Weights that are the same tensor as another and are therefore not written to disk.
    _tied_weights_keys: tuple[str, ...] = ()

    @converts_foreign_configs
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        check_albert_config(config)
        config.validate()
        self.config = config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:  # (each head reads its own config argument too)
            cls.__init__ = converts_foreign_configs(cls.__init__)  # type: ignore[method-assign]

    def post_init(self) -> None:
        """Initialise every weight as the original does, tie the MLM decoder to the embeddings, and prune
        the heads that config.pruned_heads names (a pruned checkpoint's shapes)."""
        self.apply(self._init_weights)
        self.tie_weights()
        if self.config.pruned_heads:
            self._prune_base(self.config.pruned_heads)

    def prune_heads(self, heads_to_prune: dict[int, list[int]]) -> None:
        """Remove attention heads, as transformers' `prune_heads`: {layer: [head, ...]}, where a layer is
        numbered across the shared groups' inner layers (group = layer // inner_group_num), so with one
        shared group layer 0 is the one layer every application uses. Recorded in config.pruned_heads,
        which save_pretrained writes and from_pretrained applies again."""
        for layer, heads in heads_to_prune.items():
            merged = set(self.config.pruned_heads.get(int(layer), [])) | {int(h) for h in heads}
            self.config.pruned_heads[int(layer)] = sorted(merged)
        self._prune_base(heads_to_prune)

    def _prune_base(self, heads_to_prune: dict[int, list[int]]) -> None:
        base = self.base_model
        inner = self.config.inner_group_num
        for layer, heads in heads_to_prune.items():
            group, index = divmod(int(layer), inner)
            if group >= self.config.num_hidden_groups:
                raise ValueError(
                    f"layer {layer} is beyond the {self.config.num_hidden_groups * inner} shared layers "
                    "(num_hidden_groups x inner_group_num) that heads can be pruned in"
                )
            base.encoder.albert_layer_groups[group].albert_layers[index].attention.prune_heads(
                int(h) for h in heads
            )

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def tie_weights(self) -> None:
        """Share the output embedding with the input embedding (no-op for heads without a decoder)."""
        output = self.get_output_embeddings()
        if output is not None and self.config.extra.get("tie_word_embeddings", True):
            output.weight = self.get_input_embeddings().weight

    def get_input_embeddings(self) -> nn.Embedding:
        base = self.base_model
        return base.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        base = self.base_model
        base.embeddings.word_embeddings = value

    def get_output_embeddings(self) -> nn.Linear | None:
        return None

    def resize_token_embeddings(
        self,
        new_num_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        mean_resizing: bool = True,
    ) -> nn.Embedding:
        """Grow or shrink the vocabulary to `new_num_tokens` (rounded up to a multiple of
        `pad_to_multiple_of`), as transformers does: old rows are kept, rows past the end dropped, and new
        rows are the old rows' mean plus a tiny noise (`mean_resizing`, so that the new tokens do not move
        the MLM head's predictions) or normal(0, initializer_range). The MLM decoder follows, its bias padded
        with zeros, and config.vocab_size is updated. Returns the new input embedding."""
        old = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return old
        size = old.num_embeddings if new_num_tokens is None else new_num_tokens
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0:
                raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
            size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
        if size <= 0:
            raise ValueError(
                f"the vocabulary must keep at least one token, got new_num_tokens={new_num_tokens}"
            )
        new = nn.Embedding(
            size, old.embedding_dim, old.padding_idx, device=old.weight.device, dtype=old.weight.dtype
        )
        self._init_weights(new)
        _keep_rows(new.weight, old.weight, mean_resizing)
        kept, added = min(size, old.num_embeddings), max(size - old.num_embeddings, 0)
        self.set_input_embeddings(new)
        self.config.vocab_size = size
        output = self.get_output_embeddings()
        if output is not None:
            head = self.predictions
            bias = head.bias.detach()
            head.bias = nn.Parameter(torch.cat([bias[:kept], bias.new_zeros(added)]))
            output.out_features = size
            self.tie_weights()
            # a decoder of its own (tie_word_embeddings=False) is resized as the embedding was
            if output.weight.shape[0] != size:
                rows = torch.empty(size, output.in_features, device=bias.device, dtype=output.weight.dtype)
                nn.init.normal_(rows, std=self.config.initializer_range)
                _keep_rows(rows, output.weight, mean_resizing)
                output.weight = nn.Parameter(rows)
        return new

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None
    ) -> None:
        """Recompute each layer in the backward pass, trading compute for activation memory. transformers'
        `gradient_checkpointing_kwargs` are accepted; the recomputation is always the non-reentrant kind,
        which the shared layer (the same weights in every layer) needs."""
        self.base_model.encoder.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.encoder.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(self.base_model.encoder.gradient_checkpointing)

    @property
    def base_model(self) -> nn.Module:
        """The encoder (`AlbertModel`) of a head, or the model itself."""
        return getattr(self, self.base_model_prefix, self)

    @property
    def name_or_path(self) -> str:
        """What `from_pretrained` loaded the model from (config `_name_or_path`, as transformers keeps it)."""
        return str(self.config.extra.get("_name_or_path", ""))

    def enable_input_require_grads(self) -> None:
        """Make the input embeddings' output require grad, so that gradient checkpointing has something
        to differentiate when the embeddings are frozen (adapters, LoRA), as transformers' method does."""

        def require_grad(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        self.__dict__["_require_grads_hook"] = self.get_input_embeddings().register_forward_hook(require_grad)

    def disable_input_require_grads(self) -> None:
        hook = self.__dict__.pop("_require_grads_hook", None)
        if hook is not None:
            hook.remove()

    # ---- transformers' PreTrainedModel helpers, for code written against them ----------------------------

    push_to_hub = refuse_upload

    config_class = AlbertConfig

    @classmethod
    def can_generate(cls) -> bool:
        return False  # an encoder: no generate()

    def init_weights(self) -> None:
        """Initialise every weight afresh and tie the MLM decoder, as transformers' `init_weights`."""
        self.apply(self._init_weights)
        self.tie_weights()

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """transformers' dummy batch (its DUMMY_INPUTS) for tracing and tests."""
        return {"input_ids": torch.tensor([[7, 6, 0, 0, 1], [1, 2, 3, 0, 0], [0, 0, 0, 4, 5]])}

    def get_extended_attention_mask(
        self,
        attention_mask: torch.Tensor,
        input_shape: tuple[int, ...],
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """A (B, T) or (B, T, T) mask of 1 = attend as the additive mask transformers' eager attention adds to
        the scores: (B, 1, 1, T) or (B, 1, T, T), 0 where attended and the dtype's minimum elsewhere."""
        del input_shape, device  # (an encoder: no causal mask to build)
        if attention_mask.dim() not in (2, 3):
            raise ValueError(
                f"attention_mask must be (B, T) or (B, T, T), got shape {tuple(attention_mask.shape)}"
            )
        dtype = dtype or self.dtype
        mask = attention_mask[:, None] if attention_mask.dim() == 3 else attention_mask[:, None, None]
        return (1.0 - mask.to(dtype)) * torch.finfo(dtype).min

    def invert_attention_mask(self, encoder_attention_mask: torch.Tensor) -> torch.Tensor:
        return self.get_extended_attention_mask(encoder_attention_mask, tuple(encoder_attention_mask.shape))

    def get_head_mask(
        self, head_mask: torch.Tensor | None, num_hidden_layers: int, is_attention_chunked: bool = False
    ) -> torch.Tensor | list[None]:
        """transformers' head mask per layer: (layers, B, heads, 1, 1) from a (heads,) or (layers, heads)
        mask of 1 = keep, or [None] * layers without one."""
        if head_mask is None:
            return [None] * num_hidden_layers
        if head_mask.dim() == 1:
            head_mask = head_mask[None, None, :, None, None].expand(num_hidden_layers, -1, -1, -1, -1)
        elif head_mask.dim() == 2:
            head_mask = head_mask[:, None, :, None, None]
        if head_mask.dim() != 5:
            raise ValueError(f"head_mask must be (heads,), (layers, heads) or 5-D, got {head_mask.dim()}-D")
        head_mask = head_mask.to(self.dtype)
        return head_mask.unsqueeze(-1) if is_attention_chunked else head_mask

    def warn_if_padding_and_no_attention_mask(
        self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> None:
        """Warn, once, where padding is attended because no attention mask was given."""
        pad = self.config.pad_token_id
        if input_ids is None or attention_mask is not None or pad is None or self.__dict__.get("_warned_pad"):
            return
        if (input_ids[:, [-1, 0]] == pad).any():
            self.__dict__["_warned_pad"] = True
            warnings.warn(
                "the input_ids hold padding and no attention_mask was given: the padding is attended; pass "
                "the attention_mask the tokenizer returns",
                stacklevel=2,
            )

    def get_memory_footprint(self, return_buffers: bool = True) -> int:
        """Bytes of the parameters (and buffers), tied weights once."""
        tensors = {id(t): t for t in self.parameters()}
        if return_buffers:
            tensors |= {id(t): t for t in self.buffers()}
        return sum(t.nbytes for t in tensors.values())

    def set_attn_implementation(self, name: str) -> None:
        """Choose how attention runs: "unpadded" (padded batches skip their padding, whose outputs are
        then zeros), "sdpa" (every position computed by PyTorch's kernel, as transformers does), "eager",
        or "auto" (the default: "unpadded", but "sdpa" for half-precision weights on a GPU;
        `unpads_by_default`). Only the outputs at padding positions differ between them. For CPU
        inference with absolute or "relative_key" positions, "auto" and "unpadded" run the compiled
        kernel of `packed_attention` where it could be built."""
        if name not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {name!r}"
            )
        for module in self.modules():
            if isinstance(module, (AlbertTransformer, AlbertAttention)):
                module.attn_implementation = name

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Count distinct parameters (tied weights once), optionally only those that train and without the
        embedding tables."""
        params = {id(p): p for p in self.parameters() if p.requires_grad or not only_trainable}
        if exclude_embeddings:
            for m in self.modules():
                if isinstance(m, nn.Embedding):
                    params.pop(id(m.weight), None)
        return sum(p.numel() for p in params.values())

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | None,
        *,
        config: AlbertConfig | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | int | None = None,
        strict: bool = False,
        attn_implementation: str | None = None,
        quantization: str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        device_map: Any = None,
        low_cpu_mem_usage: bool | None = None,
        **config_overrides: Any,
    ) -> AlbertPreTrainedModel:
        """Load a model from a local directory, the HF cache, or the hub (see `openalbert.checkpoint`).

        `attn_implementation`: see `set_attn_implementation`. `quantization="int8"`: dynamic int8 GEMMs
        in the shared layer, for CPU inference (`openalbert.fast.quantize`). As in transformers, other
        keyword arguments set config fields (`output_hidden_states=True`, `num_labels=5`) or go to the hub
        download (`revision`, `cache_dir`, `local_files_only`, `token`, `subfolder`, `force_download`);
        `variant="fp16"` reads model.fp16.safetensors (or pytorch_model.fp16.bin) as transformers does;
        `state_dict=` gives the weights instead (with `name_or_path` None, with `config=`);
        `torch_dtype` and `device_map` are dtype and device by transformers' names (`checkpoint.placement`);
        `low_cpu_mem_usage` is accepted and always on: the model is built without memory or random
        initialisation and takes the checkpoint's tensors; only weights the checkpoint lacks are initialised.
        """
        from openalbert.checkpoint import load_pretrained, placement

        dtype, device = placement(dtype, device, torch_dtype=torch_dtype, device_map=device_map)
        model = load_pretrained(
            cls,
            pretrained_model_name_or_path,
            config=config,
            dtype=dtype,
            device=device,
            strict=strict,
            **config_overrides,
        )
        loaded = model[0] if isinstance(model, tuple) else model
        if attn_implementation is not None:
            loaded.set_attn_implementation(attn_implementation)
        if quantization is not None:
            from openalbert.fast.quantize import apply_quantization

            apply_quantization(loaded, quantization)
        return model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        safe_serialization: bool = True,
        max_shard_size: int | str = "5GB",
        state_dict: dict[str, torch.Tensor] | None = None,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        variant: str | None = None,
        save_function: Any = None,
    ) -> Path:
        """Write config.json and model.safetensors (tied weights once, sharded above `max_shard_size`;
        pytorch_model.bin, or its shards, with `safe_serialization=False`) that transformers loads. As in
        transformers, `state_dict` is written instead of the model's, a process other than the main one
        (`is_main_process=False`, in distributed training) writes nothing, a `variant` ("fp16") names the
        weights model.fp16.safetensors (from_pretrained(variant="fp16") reads them), and `save_function`
        writes the `.bin` files in torch.save's place. Nothing is uploaded (`push_to_hub=True` says how
        to)."""
        from openalbert.checkpoint import save_pretrained

        if push_to_hub:
            raise ValueError(NO_UPLOAD)
        if not is_main_process:
            return Path(save_directory)
        return save_pretrained(
            self,
            save_directory,
            safe_serialization=safe_serialization,
            max_shard_size=max_shard_size,
            state_dict=state_dict,
            variant=variant,
            save_function=save_function,
        )


# ---- the bare model -----------------------------------------------------------------------------------------


class AlbertModel(AlbertPreTrainedModel):
    """The ALBERT encoder: hidden states for every token and a pooled [CLS] vector."""

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = AlbertTransformer(config)
        self.pooler = Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.pooler_activation = nn.Tanh() if add_pooling_layer else None
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        queries_at: torch.Tensor | None = None,
    ) -> BaseModelOutputWithPooling | tuple[torch.Tensor, ...]:
        """transformers' AlbertModel.forward, plus `queries_at` (an openalbert extension, for training
        losses that read a few positions): (B, R) positions at which alone the last layer runs, so that
        last_hidden_state is (B, R, H) and the pooler reads the first of them (put [CLS], position 0, first)."""
        shape = self._check_inputs(input_ids, inputs_embeds, token_type_ids, position_ids)
        linear.new_pass()  # packed weights re-check their contents once per pass (linear.pack_cached)
        output_attentions, output_hidden_states, return_dict = self.config.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        if queries_at is not None:
            _check_queries(queries_at, shape, head_mask, output_attentions)
        if token_type_ids is None:
            token_type_ids = torch.zeros(shape, dtype=torch.long, device=device)
        embeddings = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        keep = _keep_mask(attention_mask, shape, device)
        mask = unpadded = None
        if keep is not None:
            if self._can_unpad(keep, head_mask, output_attentions, embeddings.dtype):
                attention_dtype = torch.float32 if keep.device.type == "cpu" else embeddings.dtype
                unpadded = Unpadded.from_mask(keep, attention_dtype)
            if unpadded is None or queries_at is not None:
                mask = _key_mask(keep, embeddings.dtype)
        hidden, all_hidden, all_attentions = self.encoder(
            embeddings,
            mask,
            _expand_head_mask(head_mask, self.config, embeddings.dtype),
            bool(output_attentions),
            bool(output_hidden_states),
            unpadded,
            queries_at,
        )
        pooled = self.pooler_activation(self.pooler(hidden[:, 0])) if self.pooler is not None else None
        if return_dict is False:  # the pooler's place is kept when there is none, as in transformers
            return (hidden, pooled, *(x for x in (all_hidden, all_attentions) if x is not None))
        return BaseModelOutputWithPooling(hidden, pooled, all_hidden, all_attentions)

    def _can_unpad(
        self,
        keep: torch.Tensor,
        head_mask: torch.Tensor | None,
        output_attentions: bool | None,
        dtype: torch.dtype,
    ) -> bool:
        """Skip padding when asked ("unpadded") or where it pays ("auto", see `unpads_by_default`), unless
        attention maps or head masks need the full square, or a sequence starts with padding (the pooler
        reads position 0, which must be computed). Relative positions count padding in between real
        tokens, so with them only right padding is skipped."""
        implementation = self.encoder.attn_implementation
        return (
            (
                implementation == "unpadded"
                or (implementation == "auto" and unpads_by_default(keep.device, dtype))
            )
            and not output_attentions
            and head_mask is None
            and bool(keep[:, 0].all())
            and (
                self.config.position_embedding_type == "absolute"
                or bool((keep.cummin(dim=1).values == keep).all())
            )
        )

    def _check_inputs(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
    ) -> torch.Size:
        """Turn the inputs a user can get wrong into ValueErrors that name the value and the limit."""
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1]
        if len(shape) != 2:
            raise ValueError(f"input_ids must have shape (batch, sequence), got {tuple(shape)}")
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"empty batch: input shape is {tuple(shape)}")
        check_length(shape[1], cfg)
        for name, ids, limit in (
            ("input_ids", input_ids, cfg.vocab_size),
            ("token_type_ids", token_type_ids, cfg.type_vocab_size),
            ("position_ids", position_ids, cfg.max_position_embeddings),
        ):
            if ids is None or ids.is_floating_point() or _capturing(ids):
                continue
            check_id_range(name, int(ids.min()), int(ids.max()), limit)
        return shape


# The input errors every framework's classes name the same way (the Flax and TF ones call these too).


def check_length(length: int, config: AlbertConfig) -> None:
    if length > config.max_position_embeddings:
        raise ValueError(
            f"sequence length {length} exceeds max_position_embeddings ({config.max_position_embeddings}); "
            "truncate the input (tokenizer truncation=True, max_length=...)"
        )


def check_id_range(name: str, lo: int, hi: int, limit: int) -> None:
    if lo < 0 or hi >= limit:
        raise ValueError(f"{name} holds {lo if lo < 0 else hi}, outside the valid range [0, {limit - 1}]")


def _check_queries(
    queries_at: torch.Tensor,
    shape: torch.Size,
    head_mask: torch.Tensor | None,
    output_attentions: bool | None,
) -> None:
    if head_mask is not None or output_attentions:
        raise ValueError("queries_at cannot be combined with head_mask or output_attentions")
    if queries_at.dim() != 2 or queries_at.shape[0] != shape[0] or queries_at.is_floating_point():
        raise ValueError(f"queries_at must be integer positions (batch, R), got {tuple(queries_at.shape)}")
    if (
        queries_at.numel()
        and not _capturing(queries_at)
        and (int(queries_at.min()) < 0 or int(queries_at.max()) >= shape[1])
    ):
        raise ValueError(f"queries_at holds positions outside [0, {shape[1] - 1}]")


def _keep_mask(
    attention_mask: torch.Tensor | None, shape: torch.Size, device: torch.device
) -> torch.Tensor | None:
    """(B, T) 0/1 mask -> bool (B, T) of the real tokens; None when nothing is masked (faster kernels)."""
    if attention_mask is None:
        return None
    if attention_mask.shape != shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {tuple(shape)}")
    keep = attention_mask.to(device) != 0
    return keep if _capturing(keep) or not bool(keep.all()) else None


# Outputs with a position axis: every (B, T, X) tensor, and these (B, T) ones.
_PER_POSITION = ("start_logits", "end_logits")


def cut_to_length(name: str, x: Any, T: int) -> Any:
    """Output field `name` of a model run on inputs padded past length T, at length T (tuples of hidden
    states too); fields without a position axis (pooled, per-sequence logits) as they are. Torch, numpy or
    other arrays: what CUDA graphs and the pipelines' Flax and TF models give back after padding."""
    if isinstance(x, tuple):
        return tuple(cut_to_length(name, v, T) for v in x)
    if x is None or not (x.ndim == 3 or name in _PER_POSITION):
        return x
    return x[:, :T]


def _keep_rows(new: torch.Tensor, old: torch.Tensor, mean_resizing: bool) -> None:
    """Fill the freshly initialised table `new` (the new vocabulary size) with `old`'s first rows; the rows
    it adds, with mean resizing, are drawn around the mean of `old`'s (else they keep their initialisation)."""
    kept, added = min(len(new), len(old)), max(len(new) - len(old), 0)
    with torch.no_grad():
        new[:kept] = old[:kept]
        if added and mean_resizing:
            new[-added:] = _around_the_mean(old, added).to(new.dtype)


def _around_the_mean(table: torch.Tensor, rows: int) -> torch.Tensor:
    """`rows` samples of N(mean, 1e-9 covariance) of a table's rows (transformers' mean resizing): the mean
    row, and only the mean where that covariance is not positive definite."""
    table = table.detach().double()
    mean = table.mean(0)
    centred = table - mean
    covariance = 1e-9 * centred.T @ centred / table.shape[0]
    try:
        dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance)
    except (ValueError, RuntimeError):  # not positive definite (fewer rows than columns, say)
        return mean[None].expand(rows, -1).float()
    return dist.sample((rows,)).float()


def _capturing(t: torch.Tensor) -> bool:
    """Whether no value may be read back to the host: a CUDA graph is being captured
    (openalbert.fast.cuda_graphs, whose value checks run before its inputs are filled), or torch.compile or
    torch.export is tracing, where a read breaks the graph or fails. The value checks and shortcuts are
    skipped then."""
    return torch.compiler.is_compiling() or (t.is_cuda and torch.cuda.is_current_stream_capturing())


def _key_mask(real: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) bool of the real keys -> (B, 1, 1, T) additive mask, written as BERT writes it, which
    ONNX Runtime's attention fusion recognises."""
    return (1.0 - real.to(dtype)[:, None, None, :]) * torch.finfo(dtype).min


def _cut_linear(layer: Linear, index: torch.Tensor, dim: int) -> Linear:
    """A copy of `layer` keeping only the output rows (dim 0) or input columns (dim 1) at `index`."""
    weight = layer.weight.detach().index_select(dim, index.to(layer.weight.device))  # a new tensor
    bias = layer.bias
    if bias is not None:
        bias = (bias.detach()[index.to(bias.device)] if dim == 0 else bias.detach()).clone()
    out = Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    out.reused = layer.reused
    out = out.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


def _expand_head_mask(
    head_mask: torch.Tensor | None, config: AlbertConfig, dtype: torch.dtype
) -> torch.Tensor | None:
    """(nh,) or (L, nh) head mask -> (L, 1, nh, 1, 1), one row per layer application."""
    if head_mask is None:
        return None
    # One weight per head a layer has: with pruned heads (config.pruned_heads), the heads left, where every
    # layer has as many left (transformers multiplies the mask onto the remaining heads too).
    layers = config.num_hidden_groups * config.inner_group_num
    left = {config.num_attention_heads - len(config.pruned_heads.get(i, ())) for i in range(layers)}
    uneven = len(left) > 1
    heads = config.num_attention_heads if uneven else left.pop()
    if head_mask.dim() == 1:
        head_mask = head_mask[None].expand(config.num_hidden_layers, -1)
    if head_mask.shape != (config.num_hidden_layers, heads) or uneven:
        pruned = f" (the heads left after pruning {dict(config.pruned_heads)})" if config.pruned_heads else ""
        raise ValueError(
            f"head_mask must have shape ({heads},) or ({config.num_hidden_layers}, {heads}){pruned}, got "
            f"{tuple(head_mask.shape)}"
            + ("; the layers have different numbers of heads left" if uneven else "")
        )
    return head_mask.to(dtype)[:, None, :, None, None]
