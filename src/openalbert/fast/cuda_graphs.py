"""CUDA graphs on a GPU: each batch shape's forward (inference) or training step is captured once and then
replayed.

At batch 1 and small batches an ALBERT forward on a GPU is bound by kernel launches, not by the tensor
cores: a few hundred kernels of microseconds each, every one launched from Python. A CUDA graph records
them once and launches them all in one call. Inputs are padded to a length bucket (16, 32, 64, 128, 256,
512), so one graph serves every length up to its bucket; outputs at the real positions are the model's
own (padding is masked out of attention), and are returned at the inputs' length.

    fast = cuda_graphs(AlbertModel.from_pretrained(d, dtype="float16", device="cuda"))
    out = fast(input_ids=ids, attention_mask=mask)   # the model's output, its tensors copied out

A training step (forward with the model's loss, backward, clipping, optimizer step) is bound by launches
too at the batch sizes ALBERT is fine-tuned at: `CUDAGraphTrainStep` replays the whole step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
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


class CUDAGraphTrainStep:
    """One training step of a model on a GPU, replayed from a CUDA graph: the forward with the model's own
    loss (from `labels`), the backward, gradient clipping (`max_grad_norm`) and the optimizer step.

        step = CUDAGraphTrainStep(model, torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True),
                                  autocast=torch.bfloat16, max_grad_norm=1.0)
        for batch in loader:
            loss = step(**batch)   # on the GPU; float(loss) waits for the step
            scheduler.step()       # schedules work: the graph reads the learning rate from a tensor

    Every call is one optimizer step on its batch. The first `warmup` calls of each input shape run as
    usual (on a side stream, as capture wants); the next one captures the step and replays it, and so do
    all later calls of that shape. Shapes beyond `max_graphs` always run as usual. Each graph keeps its
    own memory (activations and gradients of its shape).

    The optimizer must be able to step inside a graph (`capturable`: Adam, AdamW, openalbert's Lamb); it
    is set here, and the step counts of steps taken before (a resumed run) move to the GPU. Learning rates
    become 0-d tensors on the GPU; other hyperparameters are read once, at capture. The model's attention
    is set to "sdpa", as for inference graphs, and a loss that reads values back to the host (boolean
    indexing, `.item()`) cannot be captured. bf16 autocast works; fp16 would need loss scaling.

    The gradients live in each graph's memory and are overwritten by its next replay: the parameters'
    `.grad` are not kept up to date (after a second shape has run they point elsewhere), and there is no
    gradient accumulation across calls. `last_output` (the model's output) and `last_grad_norm` (the total
    gradient norm before clipping) are the last step's: after a replay, the graph's own tensors, which the
    next call overwrites.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        autocast: torch.dtype | None = None,
        max_grad_norm: float | None = None,
        warmup: int = 3,
        max_graphs: int = 4,
    ) -> None:
        for group in optimizer.param_groups:
            if "capturable" not in group:
                raise ValueError(
                    f"{type(optimizer).__name__} cannot step inside a CUDA graph (it has no capturable "
                    "option); use torch.optim.AdamW(..., fused=True), Adam or openalbert's Lamb"
                )
        if autocast == torch.float16:
            raise ValueError(
                "fp16 autocast needs loss scaling, which a graphed step does not do; use bfloat16"
            )
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not params or params[0].device.type != "cuda":
            raise ValueError("CUDA graphs need a model on a CUDA device: from_pretrained(..., device='cuda')")
        if max_grad_norm is not None and max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        if warmup < 1:  # the optimizer's state must exist before capture, or every replay would reset it
            raise ValueError(f"warmup must be >= 1 (steps before the capture), got {warmup}")
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("sdpa")
        elif hasattr(getattr(model, "model", None), "set_attn_implementation"):  # an objective around a model
            model.model.set_attn_implementation("sdpa")
        device = params[0].device
        self.lrs = []  # the tensors the graphs read the learning rates from
        for group in optimizer.param_groups:
            group["capturable"] = True
            lr = group["lr"]
            group["lr"] = lr.to(device) if torch.is_tensor(lr) else torch.tensor(float(lr), device=device)
            self.lrs.append(group["lr"])
        for state in optimizer.state.values():  # steps taken before (a resumed run): the count moves over
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(device)
        self.model, self.optimizer, self.params = model, optimizer, params
        self.autocast, self.max_grad_norm = autocast, max_grad_norm
        self.warmup, self.max_graphs = warmup, max_graphs
        self.side = torch.cuda.Stream(device)  # where the steps before a capture run, as capture wants
        self.calls: dict[tuple, int] = {}
        # input shapes -> (graph, its input buffers, the model's output, the gradient norm)
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], Any, torch.Tensor]] = {}
        self.last_grad_norm: torch.Tensor | None = None
        self.last_output: Any = None

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        for name, value in inputs.items():
            if not torch.is_tensor(value):
                raise TypeError(
                    f"a graphed training step takes tensors only; {name} is {type(value).__name__}"
                )
        device = self.params[0].device
        inputs = {name: value.to(device, non_blocking=True) for name, value in inputs.items()}
        self._refresh_learning_rates()
        key = tuple((name, tuple(v.shape), v.dtype) for name, v in sorted(inputs.items()))
        if key in self.graphs:
            graph, static, out, norm = self.graphs[key]
            for name, value in inputs.items():
                static[name].copy_(value, non_blocking=True)
            graph.replay()
            self.last_output, self.last_grad_norm = out, norm
            return _loss_of(out).detach().clone()  # the next replay overwrites the graph's own
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.calls[key] <= self.warmup or len(self.graphs) >= self.max_graphs:
            return self._eager(inputs)
        self.graphs[key] = self._capture(inputs)
        return self(**inputs)

    def _refresh_learning_rates(self) -> None:
        """A scheduler that assigned a number instead of filling the tensor: the graph reads the tensor."""
        for group, lr in zip(self.optimizer.param_groups, self.lrs):
            if group["lr"] is not lr:
                lr.fill_(float(group["lr"]))
                group["lr"] = lr

    def _context(self) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        # no cast cache: cached casts made during capture would not outlive it
        return torch.autocast("cuda", dtype=self.autocast, cache_enabled=False)

    def _step(self, inputs: dict[str, torch.Tensor]) -> tuple[Any, torch.Tensor]:
        """Forward, backward, clipping and the optimizer step; the model's output and the gradient norm."""
        with self._context():
            out = self.model(**inputs)
        loss = _loss_of(out)
        if loss is None:
            raise ValueError(f"{type(self.model).__name__} returned no loss: pass labels")
        loss.backward()
        if self.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm, foreach=True)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        self.optimizer.step()
        return out, norm

    def _eager(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        current = torch.cuda.current_stream(self.params[0].device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side), warnings.catch_warnings():
            # capturable=True outside a graph is what these steps are for
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            self.optimizer.zero_grad(set_to_none=True)
            self.last_output, self.last_grad_norm = self._step(inputs)
        current.wait_stream(self.side)
        return _loss_of(self.last_output).detach()

    def _capture(
        self, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], Any, torch.Tensor]:
        static = {name: value.clone() for name, value in inputs.items()}
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward makes the gradients in its memory
        torch.cuda.synchronize(self.params[0].device)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                out, norm = self._step(static)
        except RuntimeError as e:
            raise RuntimeError(
                f"the training step of {type(self.model).__name__} could not be captured as a CUDA graph; a "
                f"step that reads values back to the host (boolean indexing, .item()) cannot be: {e}"
            ) from e
        return graph, static, out, norm


def _loss_of(out: Any) -> torch.Tensor | None:
    return out["loss"] if isinstance(out, dict) else out.loss


def cuda_graph_train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, **kwargs: Any
) -> CUDAGraphTrainStep:
    """The training step of `model` and `optimizer` on a GPU, replayed from CUDA graphs:
    `CUDAGraphTrainStep`."""
    return CUDAGraphTrainStep(model, optimizer, **kwargs)
