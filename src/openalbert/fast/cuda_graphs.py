"""CUDA graphs for GPU inference: each batch shape's forward is captured once and then replayed.

At batch 1 and small batches an ALBERT forward on a GPU is bound by kernel launches, not by the tensor
cores: a few hundred kernels of microseconds each, every one launched from Python. A CUDA graph records
them once and launches them all in one call. Inputs are padded to a length bucket (16, 32, 64, 128, 256,
512), so one graph serves every length up to its bucket; outputs at the real positions are the model's
own (padding is masked out of attention), and are returned at the inputs' length.

    fast = cuda_graphs(AlbertModel.from_pretrained(d, dtype="float16", device="cuda"))
    out = fast(input_ids=ids, attention_mask=mask)   # the model's output, its tensors copied out
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from openalbert.modeling import cut_to_length

LENGTHS = (16, 32, 64, 128, 256, 512)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class CUDAGraphModel:
    """A model's forward, replayed from CUDA graphs: one per (batch size, length bucket), captured on first
    use (`max_graphs` at most; shapes beyond that, longer inputs or other arguments run the model as usual).

    The model's attention is set to the padded path ("sdpa"): skipping padding needs the lengths on the
    host, which a graph cannot read back.
    """

    def __init__(
        self, model: torch.nn.Module, lengths: tuple[int, ...] = LENGTHS, max_graphs: int = 64
    ) -> None:
        if next(model.parameters()).device.type != "cuda":
            raise ValueError("CUDA graphs need a model on a CUDA device: from_pretrained(..., device='cuda')")
        model.set_attn_implementation("sdpa")
        self.model = model.eval()
        limit = model.config.max_position_embeddings
        self.lengths = tuple(sorted({min(n, limit) for n in lengths}))
        self.max_graphs = max_graphs
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], Any]] = {}
        self.pool = None  # one memory pool, shared by every graph

    def __getattr__(self, name: str) -> Any:  # device, dtype, save_pretrained...: the model's
        if "model" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["model"], name)

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **other: Any,
    ) -> Any:
        if other.get("return_dict") is True:  # what the graphs give anyway
            del other["return_dict"]
        B, T = input_ids.shape if input_ids.dim() == 2 else (0, 0)
        key = (B, next((n for n in self.lengths if n >= T), None))
        uncaptured = key not in self.graphs and len(self.graphs) >= self.max_graphs
        # multiple choice, labels, attention maps, longer inputs, more shapes than max_graphs: the model
        if other or input_ids.dim() != 2 or key[1] is None or uncaptured:
            return self.model(input_ids, attention_mask, token_type_ids, **other)
        # The checks a graph cannot make (ids in range), on the real inputs, before any padding.
        getattr(self.model, "albert", self.model)._check_inputs(input_ids, None, token_type_ids, None)
        if key not in self.graphs:
            self.graphs[key] = self._capture(*key)
        graph, static, out = self.graphs[key]
        static["input_ids"].zero_()[:, :T].copy_(input_ids)
        mask, types = static["attention_mask"].zero_(), static["token_type_ids"].zero_()
        if attention_mask is None:
            mask[:, :T] = 1
        else:
            mask[:, :T].copy_(attention_mask)
        if token_type_ids is not None:
            types[:, :T].copy_(token_type_ids)
        graph.replay()
        return _cut(out, T)

    @torch.inference_mode(False)  # the buffers are refilled in place on every call, in inference mode or not
    @torch.no_grad()
    def _capture(self, B: int, T: int) -> tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], Any]:
        device = next(self.model.parameters()).device
        static = {name: torch.zeros((B, T), dtype=torch.long, device=device) for name in INPUTS}
        static["attention_mask"].fill_(1)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as capture wants
            for _ in range(2):
                self.model(**static, return_dict=True)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.model(**static, return_dict=True)
        self.pool = graph.pool()
        return graph, static, out


def _cut(out: Any, T: int) -> Any:
    """The graph's output at the inputs' length, copied out of the graph's memory (the next replay
    overwrites it)."""

    def copy(x: Any) -> Any:
        return tuple(copy(v) for v in x) if isinstance(x, tuple) else x.clone() if x is not None else None

    fields = dataclasses.fields(out)
    return dataclasses.replace(
        out, **{f.name: copy(cut_to_length(f.name, getattr(out, f.name), T)) for f in fields}
    )


def cuda_graphs(model: torch.nn.Module, **kwargs: Any) -> CUDAGraphModel:
    """`model` (any openalbert class, on a CUDA device) replayed from CUDA graphs: `CUDAGraphModel`."""
    return CUDAGraphModel(model, **kwargs)
