"""CUDA graphs (openalbert.fast.cuda_graphs): replayed forwards equal the model's own at the real positions."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import TINY

import openalbert
from openalbert.fast import cuda_graphs

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
