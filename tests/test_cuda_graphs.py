"""CUDA graphs (openalbert.fast.cuda_graphs): replayed forwards equal the model's own at the real positions;
replayed training steps equal the same steps run as usual."""

from __future__ import annotations

import contextlib

import pytest
import torch
from tests.conftest import TINY

import openalbert
from openalbert.fast import cuda_graph_train_step, cuda_graphs
from openalbert.training.optim import Lamb

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _model(head: str, dtype: torch.dtype = torch.float32, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    labels = 2 if head == "AlbertForQuestionAnswering" else 3  # QA's two labels are start and end
    config = openalbert.AlbertConfig(**TINY | {"num_labels": labels} | overrides)
    return getattr(openalbert, head)(config).to(device="cuda", dtype=dtype).eval()


def _batch(B: int, T: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, TINY["vocab_size"], (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    if B > 1:
        mask[1, T // 2 :] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, T // 3 :] = 1
    return {"input_ids": ids.cuda(), "attention_mask": mask.cuda(), "token_type_ids": types.cuda()}


def test_a_cpu_model_is_refused():
    model = openalbert.AlbertModel(openalbert.AlbertConfig(**TINY))
    with pytest.raises(ValueError, match="need a model on a CUDA device"):
        cuda_graphs(model)


@cuda
@pytest.mark.parametrize(
    ("head", "field", "dtype", "position"),
    [
        ("AlbertModel", "last_hidden_state", torch.float32, "absolute"),
        ("AlbertModel", "pooler_output", torch.float32, "relative_key"),
        ("AlbertForMaskedLM", "logits", torch.float16, "absolute"),
        ("AlbertForSequenceClassification", "logits", torch.bfloat16, "absolute"),
        ("AlbertForQuestionAnswering", "start_logits", torch.float32, "relative_key_query"),
    ],
)
def test_replays_equal_the_model_at_the_real_positions(head, field, dtype, position):
    model = _model(head, dtype, position_embedding_type=position)
    fast = cuda_graphs(model)
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    for B, T in ((1, 5), (1, 9), (3, 11), (3, 16), (2, 40)):
        batch = _batch(B, T, seed=T)
        with torch.inference_mode():
            expected, got = getattr(model(**batch), field), getattr(fast(**batch), field)
        assert got.shape == expected.shape
        real = batch["attention_mask"].bool()
        if got.dim() >= 2 and got.shape[1] == T:
            got, expected = got[real], expected[real]
        torch.testing.assert_close(got.float(), expected.float(), atol=tolerance, rtol=0)
    assert sorted(fast.graphs) == [(1, 16), (2, 64), (3, 16)]  # lengths 5 and 9 share one graph


@cuda
def test_outputs_are_copies_and_other_calls_run_the_model():
    model = _model("AlbertForMaskedLM")
    fast = cuda_graphs(model, max_graphs=1)
    first = fast(**_batch(1, 7, seed=1)).logits
    kept = first.clone()
    fast(**_batch(1, 7, seed=2))  # the same graph, replayed on other inputs
    torch.testing.assert_close(first, kept, atol=0, rtol=0)
    # beyond max_graphs, with labels, or longer than the model's positions: the model itself
    batch = _batch(2, 20)
    torch.testing.assert_close(fast(**batch).logits, model(**batch).logits, atol=1e-5, rtol=0)
    assert fast(**batch, labels=batch["input_ids"]).loss is not None
    assert len(fast.graphs) == 1
    bad = _batch(1, 7)
    bad["input_ids"][0, 3] = TINY["vocab_size"]
    with pytest.raises(ValueError, match="input_ids holds 99"):
        fast(**bad)


# ---- training steps ----------------------------------------------------------------------------------------


def test_a_training_step_needs_a_capturable_optimizer_and_a_gpu_model():
    model = openalbert.AlbertForMaskedLM(openalbert.AlbertConfig(**TINY))
    with pytest.raises(ValueError, match="cannot step inside a CUDA graph"):
        cuda_graph_train_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="fp16 autocast needs loss scaling"):
        cuda_graph_train_step(model, torch.optim.AdamW(model.parameters()), autocast=torch.float16)
    for optimizer in (torch.optim.AdamW(model.parameters()), Lamb(model.parameters())):  # capturable ones
        with pytest.raises(ValueError, match="need a model on a CUDA device"):
            cuda_graph_train_step(model, optimizer)


def _training_pair(
    head: str = "AlbertForMaskedLM",
    dropout: float = 0.0,
    lr: float = 1e-3,
    optimizer: str = "adamw",
    **overrides,
):
    """Two equal models on the GPU with fused AdamW (or LAMB) and a decaying schedule: one for the graphed
    steps, one for steps run as usual."""
    pairs = []
    for _ in range(2):
        config = {
            "hidden_dropout_prob": dropout,
            "attention_probs_dropout_prob": dropout,
            "classifier_dropout_prob": dropout,
        } | overrides
        model = _model(head, **config).train()
        model.set_attn_implementation("sdpa")  # the graphs' path: both run the same kernels
        if optimizer == "adamw":
            opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
        else:
            opt = Lamb(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + s))
        pairs.append((model, opt, schedule))
    return pairs


def _labelled(B: int, T: int, seed: int, head: str = "AlbertForMaskedLM") -> dict[str, torch.Tensor]:
    batch = _batch(B, T, seed)
    if head == "AlbertForMaskedLM":
        labels = batch["input_ids"].clone()
        labels[:, ::3] = -100
        labels[batch["attention_mask"] == 0] = -100  # padding: its outputs differ between attention paths
    else:
        labels = torch.arange(B, device="cuda") % 3
    return batch | {"labels": labels}


def _usual_step(model, optimizer, batch, autocast, max_grad_norm):
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=autocast) if autocast else contextlib.nullcontext():
        loss = model(**batch).loss
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return loss.detach()


@cuda
@pytest.mark.parametrize(
    ("head", "autocast", "optimizer", "tolerance"),
    [
        ("AlbertForMaskedLM", None, "adamw", 1e-5),
        ("AlbertForMaskedLM", torch.bfloat16, "adamw", 1e-3),
        ("AlbertForMaskedLM", None, "lamb", 1e-5),
        ("AlbertForSequenceClassification", None, "adamw", 1e-5),
    ],
)
def test_graphed_training_steps_equal_the_usual_steps(head, autocast, optimizer, tolerance):
    (graphed, g_opt, g_sched), (usual, u_opt, u_sched) = _training_pair(head, optimizer=optimizer)
    step = cuda_graph_train_step(graphed, g_opt, autocast=autocast, max_grad_norm=0.5, warmup=2, max_graphs=1)
    # shape (3, 16) is captured after two steps; (2, 24) stays eager beyond max_graphs
    shapes = [(3, 16)] * 4 + [(2, 24)] * 3 + [(3, 16)] * 2
    for i, (B, T) in enumerate(shapes):
        batch = _labelled(B, T, seed=i, head=head)
        got = step(**batch)
        assert float(step.lrs[0]) == pytest.approx(
            1e-3 / (1 + i)
        )  # the schedule's rate, where graphs read it
        expected = _usual_step(usual, u_opt, batch, autocast, 0.5)
        torch.testing.assert_close(got, expected, atol=tolerance, rtol=0)
        g_sched.step()
        u_sched.step()
    assert list(step.graphs) == [
        (
            ("attention_mask", (3, 16), torch.int64),
            ("input_ids", (3, 16), torch.int64),
            ("labels", (3, 16) if head == "AlbertForMaskedLM" else (3,), torch.int64),
            ("token_type_ids", (3, 16), torch.int64),
        )
    ]
    for (name, a), b in zip(graphed.named_parameters(), usual.parameters()):
        torch.testing.assert_close(a, b, atol=tolerance, rtol=0, msg=name)
    assert step.last_grad_norm is not None and float(step.last_grad_norm) > 0


@cuda
def test_dropout_draws_new_masks_on_every_replay():
    (model, optimizer, _), _ = _training_pair(dropout=0.3, lr=0.0)  # lr 0: only dropout changes the loss
    step = cuda_graph_train_step(model, optimizer, warmup=1)
    batch = _labelled(2, 16, seed=0)
    losses = [float(step(**batch)) for _ in range(4)]  # eager, capture + replay, replay, replay
    assert len(step.graphs) == 1
    assert len(set(losses[1:])) == 3, losses
